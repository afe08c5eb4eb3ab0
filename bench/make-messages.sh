#!/bin/sh
# make-messages.sh DIR [COUNT]: test messages for the harvest benchmark,
# made at run time with the openssl CLI (nothing is shipped):
#   DIR/ca.pem, ca.key         a test root CA (RSA-2048)
#   DIR/signer.pem, signer.key a signer issued by it (RSA-2048, SAN
#                              bench-signer@example.org, emailProtection)
#   DIR/signed/N.eml           ~10 KB multipart/signed, detached SHA-256
#                              signature carrying the chain (signer + CA)
#                              and openssl's default SMIMECapabilities
#   DIR/plain/N.eml            ~10 KB unsigned text/plain
#   DIR/mixed/N.eml            ~10 KB unsigned multipart/mixed (text and a
#                              base64 attachment)
# COUNT messages of each kind (default 4), each with different content.
set -eu
dir=${1:?usage: make-messages.sh DIR [COUNT]}
count=${2:-4}
mkdir -p "$dir/signed" "$dir/plain" "$dir/mixed"
cd "$dir"

# --- PKI ---------------------------------------------------------------------
cat >pki.cnf <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[signer_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, nonRepudiation, keyEncipherment
extendedKeyUsage = emailProtection
subjectAltName = email:bench-signer@example.org
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 30 \
	-subj "/O=kmsmilter bench/CN=Bench Test CA" -config pki.cnf -extensions ca_ext 2>/dev/null
openssl req -new -newkey rsa:2048 -nodes -keyout signer.key -out signer.csr \
	-subj "/O=kmsmilter bench/CN=Bench Signer/emailAddress=bench-signer@example.org" \
	-config pki.cnf 2>/dev/null
openssl x509 -req -in signer.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out signer.pem \
	-days 30 -extfile pki.cnf -extensions signer_ext 2>/dev/null
rm -f signer.csr ca.srl

# text BYTES SEED: lines of pseudo-words, about BYTES bytes
text() {
	awk -v n="$1" -v seed="$2" 'BEGIN {
		srand(seed); total = 0; line = "";
		while (total < n) {
			w = "";
			len = 2 + int(rand() * 8);
			for (i = 0; i < len; i++) w = w sprintf("%c", 97 + int(rand() * 26));
			if (length(line) + length(w) + 1 > 72) { print line; total += length(line) + 1; line = w }
			else line = (line == "" ? w : line " " w);
		}
		if (line != "") print line;
	}'
}

headers() {	# headers N KIND
	printf 'Date: %s\n' "$(LC_ALL=C date -u '+%a, %d %b %Y %H:%M:%S +0000')"
	printf 'Message-ID: <bench-%s-%s@example.org>\n' "$2" "$1"
	printf 'From: Bench Signer <bench-signer@example.org>\n'
	printf 'To: Bench Recipient <bench-rcpt@example.org>\n'
	printf 'Subject: kmsmilter harvest benchmark, %s message %s\n' "$2" "$1"
	printf 'MIME-Version: 1.0\n'
}

i=1
while [ "$i" -le "$count" ]; do
	# signed: the MIME entity is signed as it is (canonical CRLF form)
	{
		printf 'Content-Type: text/plain; charset=us-ascii\n'
		printf 'Content-Transfer-Encoding: 7bit\n\n'
		text 6200 "$i"
	} >entity.txt
	{
		printf 'Date: %s\n' "$(LC_ALL=C date -u '+%a, %d %b %Y %H:%M:%S +0000')"
		printf 'Message-ID: <bench-signed-%s@example.org>\n' "$i"
		openssl cms -sign -in entity.txt -signer signer.pem -inkey signer.key -certfile ca.pem \
			-md sha256 -from "Bench Signer <bench-signer@example.org>" \
			-to "Bench Recipient <bench-rcpt@example.org>" \
			-subject "kmsmilter harvest benchmark, signed message $i"
	} >"signed/$i.eml"

	{
		headers "$i" plain
		printf 'Content-Type: text/plain; charset=us-ascii\n'
		printf 'Content-Transfer-Encoding: 7bit\n\n'
		text 9800 "$((i + 1000))"
	} >"plain/$i.eml"

	b="=_bench_boundary_$i"
	{
		headers "$i" mixed
		printf 'Content-Type: multipart/mixed; boundary="%s"\n\n' "$b"
		printf 'This is a multi-part message in MIME format.\n\n--%s\n' "$b"
		printf 'Content-Type: text/plain; charset=us-ascii\n\n'
		text 2800 "$((i + 2000))"
		printf '\n--%s\n' "$b"
		printf 'Content-Type: application/octet-stream; name="data-%s.bin"\n' "$i"
		printf 'Content-Disposition: attachment; filename="data-%s.bin"\n' "$i"
		printf 'Content-Transfer-Encoding: base64\n\n'
		openssl rand 5000 | openssl base64 -e
		printf '\n--%s--\n' "$b"
	} >"mixed/$i.eml"
	i=$((i + 1))
done
rm -f entity.txt pki.cnf
