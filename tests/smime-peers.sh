# Four S/MIME peers built at test time, sourced after tests/lib.sh: a test
# CA and, for each of gcm nss cms gpg, a key, a certificate for
# NAME@partner.test issued by that CA and a message signed by the peer's
# own implementation, from NAME@partner.test to boss@example.org:
#   gcm  the OpenSSL-library signer tests/smime-signer (announces AES-GCM
#        and RSAES-OAEP)
#   cms  openssl cms -sign (OpenSSL's fixed CBC/3DES/RC2/DES list)
#   nss  NSS cmsutil -S -P (aes256-cbc, aes128-cbc, 3DES, RC2, DES)
#   gpg  gpgsm (aes128-cbc, 3DES)
# Harvesting those messages through kmsmilter records each peer's
# certificate and capabilities. The peers also decrypt with their own
# implementation: peer_decrypt NAME IN OUT.
#
#   peers_make [KEY...]   $P/ca.pem, $P/NAME.{key,pem,eml}; extra KEYs
#                         (RSA 2048) are made as $P/KEY.key alongside
#   peer_decrypt NAME IN OUT   IN: a whole message; OUT: the plaintext
#                         entity; 0 when NAME's implementation decrypts it
# Needs openssl certutil pk12util cmsutil gpgsm gpgconf. Sets P, N (the NSS
# database), GH (gpgsm's home; killed in peers_cleanup, which callers add
# to extra_cleanup).

P=$T/pki
crlf() { awk '{ sub(/\r$/, ""); printf "%s\r\n", $0 }'; }
sha_of() { openssl x509 -in "$1" -outform DER | openssl dgst -sha256 -r | cut -d' ' -f1; }

peers_cleanup() {
	[ -n "${GH:-}" ] || return 0
	GNUPGHOME=$GH gpgconf --kill all >/dev/null 2>&1
	rm -rf "$GH"
}

G() { GNUPGHOME=$GH timeout 30 gpgsm --batch --pinentry-mode loopback --passphrase '' "$@"; }

peers_make() {
	local k n serial=100 fpr
	mkdir -p "$P"
	for k in ca gcm nss cms gpg "$@"; do
		openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$P/$k.key" 2>/dev/null &
	done
	wait
	openssl req -new -x509 -key "$P/ca.key" -out "$P/ca.pem" -days 30 -subj "/O=kmsmilter tests/CN=Peers Test CA" \
		-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null ||
		bail "cannot make the test CA"
	for n in gcm nss cms gpg; do
		serial=$((serial + 1))
		printf 'basicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature,keyEncipherment\nextendedKeyUsage = emailProtection\nsubjectAltName = email:%s@partner.test\n' "$n" >"$P/$n.ext"
		openssl req -new -key "$P/$n.key" -subj "/O=kmsmilter tests/CN=$n" 2>/dev/null |
		openssl x509 -req -CA "$P/ca.pem" -CAkey "$P/ca.key" -set_serial "$serial" -days 30 \
			-extfile "$P/$n.ext" -out "$P/$n.pem" 2>/dev/null || bail "cannot issue $n.pem"
	done
	# OpenSSL library: AES-GCM and RSAES-OAEP announced
	peer_content gcm >"$P/gcm.content"
	{ peer_header gcm; "$top_builddir/tests/smime-signer" --cert "$P/gcm.pem" --key "$P/gcm.key" \
		--caps aes256-gcm,aes128-gcm,aes256-cbc,aes128-cbc,rsaes-oaep <"$P/gcm.content" | crlf; } >"$P/gcm.eml" ||
		bail "smime-signer failed"
	# openssl cms -sign
	peer_content cms >"$P/cms.content"
	{ peer_header cms; openssl cms -sign -binary -md sha256 -in "$P/cms.content" -signer "$P/cms.pem" \
		-inkey "$P/cms.key" | crlf; } >"$P/cms.eml" || bail "openssl cms -sign failed"
	# NSS cmsutil -P
	N=$P/nssdb
	mkdir -p "$N"
	openssl pkcs12 -export -in "$P/nss.pem" -inkey "$P/nss.key" -name nss -passout pass: -out "$P/nss.p12" &&
		certutil -N -d "sql:$N" --empty-password >/dev/null 2>&1 &&
		certutil -A -d "sql:$N" -n ca -t C,C,C -i "$P/ca.pem" >/dev/null 2>&1 &&
		pk12util -i "$P/nss.p12" -d "sql:$N" -W '' >/dev/null 2>&1 || bail "cannot set up the NSS database"
	peer_content nss >"$P/nss.content"
	cmsutil -S -N nss -P -G -T -d "sql:$N" -i "$P/nss.content" -o "$P/nss.p7s" >"$P/nss.log" 2>&1 ||
		bail "cmsutil -S failed: $(cat "$P/nss.log")"
	{ peer_header nss; peer_detached "$P/nss.content" "$P/nss.p7s"; } >"$P/nss.eml"
	# gpgsm (its home is short: gpg-agent's socket lives there)
	GH=$(mktemp -d /tmp/kms-peers-gnupg.XXXXXX) || bail "mktemp failed"
	echo allow-loopback-pinentry >"$GH/gpg-agent.conf"
	openssl pkcs12 -export -legacy -in "$P/gpg.pem" -inkey "$P/gpg.key" -certfile "$P/ca.pem" -name gpg \
		-passout pass: -out "$P/gpg.p12" 2>/dev/null || bail "cannot make gpg.p12"
	G --import "$P/ca.pem" >"$P/gpg.log" 2>&1 && G --import "$P/gpg.p12" >>"$P/gpg.log" 2>&1 ||
		bail "gpgsm import failed: $(tail -5 "$P/gpg.log")"
	fpr=$(GNUPGHOME=$GH gpgsm --with-colons --list-keys 2>/dev/null | awk -F: '$1 == "fpr" { print $10; exit }')
	echo "$fpr S" >"$GH/trustlist.txt"
	peer_content gpg >"$P/gpg.content"
	G --disable-crl-checks --disable-dirmngr --include-certs -1 -u gpg@partner.test --detach-sign \
		-o "$P/gpg.p7s" "$P/gpg.content" >>"$P/gpg.log" 2>&1 || bail "gpgsm --detach-sign failed: $(tail -5 "$P/gpg.log")"
	{ peer_header gpg; peer_detached "$P/gpg.content" "$P/gpg.p7s"; } >"$P/gpg.eml"
}

peer_content() { printf 'Content-Type: text/plain; charset=us-ascii\r\n\r\nSigned by %s.\r\n' "$1"; }
peer_header() { printf 'From: <%s@partner.test>\r\nTo: <boss@example.org>\r\nSubject: signed by %s\r\nMessage-ID: <%s@peers.test>\r\n' "$1" "$1" "$1"; }
# peer_detached CONTENT DER: multipart/signed around CONTENT and the signature.
peer_detached() {
	printf 'MIME-Version: 1.0\r\nContent-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256; boundary="=_b"\r\n\r\n--=_b\r\n'
	cat "$1"
	printf '\r\n--=_b\r\nContent-Type: application/pkcs7-signature; name="smime.p7s"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
	openssl base64 -e -in "$2" | crlf
	printf '\r\n--=_b--\r\n'
}

# peer_der IN OUT: the CMS (DER) of the whole S/MIME message IN.
peer_der() {
	awk 'b { print } /^\r?$/ { b = 1 }' "$1" | tr -d '\r' | base64 -d >"$2"
}

peer_decrypt() {
	local name=$1 in=$2 out=$3
	peer_der "$in" "$out.der" || return 1
	case $name in
	gcm|cms) openssl cms -decrypt -inform DER -in "$out.der" -recip "$P/$name.pem" -inkey "$P/$name.key" \
		-out "$out" 2>"$out.err" ;;
	nss) cmsutil -D -d "sql:$N" -i "$out.der" -o "$out" >"$out.err" 2>&1 ;;
	# gpgsm exits 2 when it has no key for some of the recipientInfos,
	# even when it decrypted with its own: its status line tells
	gpg) G --disable-crl-checks --disable-dirmngr --status-fd 1 --decrypt -o "$out" "$out.der" >"$out.status" 2>"$out.err"
		grep -q "^\[GNUPG:\] DECRYPTION_OKAY" "$out.status" ;;
	*) openssl cms -decrypt -inform DER -in "$out.der" -inkey "$P/$name.key" -out "$out" 2>"$out.err" ;;
	esac
}
