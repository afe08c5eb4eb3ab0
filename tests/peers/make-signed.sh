#!/bin/sh
# NAME
#	make-signed.sh - S/MIME signed test mail made by the real peers
# SYNOPSIS
#	tests/peers/make-signed.sh OUTDIR
# DESCRIPTION
#	Generates, at test time and never committed, a test PKI and signed
#	messages made by independent implementations, so the harvester can
#	be tested against what real clients send:
#	  openssl-cms	the `openssl cms -sign` CLI (OpenSSL 3)
#	  openssl-lib	tests/smime-signer.c on the OpenSSL library (announces
#			AES-GCM / RSAES-OAEP, which no CLI here can)
#	  nss-cmsutil	NSS's cmsutil (Thunderbird's library)
#	  gpgsm		GnuPG's gpgsm
#	plus negative cases. In OUTDIR:
#	  ca.pem ca.key		test root (RSA-3072); the trust store is ca.pem only
#	  root2.pem root2.key	a second root (RSA-2048) that is never trusted
#	  NAME.pem NAME.key	end-entity certificates (EKU emailProtection):
#	    alice-rsa	 RSA-2048 signer, alice@example.org
#			 (digitalSignature,nonRepudiation,keyEncipherment)
#	    alice-enc	 RSA-2048 encryption only (keyEncipherment),
#			 alice@example.org: the key preference target
#	    carol-ec	 P-256 signer (digitalSignature,keyAgreement),
#			 carol@example.org and carol.smith@example.net
#	    bob-rsa	 RSA-2048 signer, bob@example.org
#	    dave-expired RSA-2048, valid 2020-01-01..2021-01-01, dave@example.org
#	    eve-untrusted RSA-2048 from root2, eve@example.org
#	  NAME.p12		alice-rsa, alice-enc, carol-ec as PKCS#12 (empty
#				password): OpenSSL 3's default profile, and
#				NAME-legacy.p12 made with -legacy
#	  NAME.eml NAME.expect	each message and what a harvester must find:
#	      status: trusted|untrusted-chain|expired|bad-signature|none
#	      address: ...		(per SAN rfc822Name; not for none)
#	      capabilities: a,b,c|-	(not for none/bad-signature)
#	      key_preference: HEX|-	(not for none/bad-signature)
#	      signer_sha256: HEX	(not for none)
#	  index.txt		NAME<TAB>peer<TAB>form<TAB>key-type
#	  peer-facts.txt	what each peer announced and could not do
#	  work/			intermediate files and the tools' log
#	Expectations for messages from the external peers (capabilities,
#	key preference) are measured from the CMS each peer produced, with
#	smime-signer --describe; for openssl-lib messages they are what was
#	asked for. tests/peers/check-expect.sh re-checks everything with the
#	openssl CLI alone.
# ENVIRONMENT
#	SMIME_SIGNER	a prebuilt tests/smime-signer; else it is compiled
#			from tests/smime-signer.c into OUTDIR with ${CC:-cc}.
# EXIT STATUS
#	0 when every message was made; 1 with a message on stderr otherwise
#	(2 on usage errors). Agents started for gpgsm are killed on exit.
set -u

if [ $# -ne 1 ] || [ -z "$1" ]; then
	echo "usage: $0 OUTDIR" >&2
	exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$1" || exit 1
O=$(cd "$1" && pwd)
W=$O/work
LOG=$W/log.txt
LC_ALL=C
TZ=UTC
export LC_ALL TZ
# gpgsm 2.2 crashes on EC PKCS#12 (see peer-facts.txt): no core files.
# shellcheck disable=SC3045
ulimit -c 0 2>/dev/null
umask 022

GH=
GH_TMP=
die() {
	echo "make-signed.sh: $*" >&2
	if [ -s "$LOG" ]; then
		echo "--- last lines of $LOG:" >&2
		tail -15 "$LOG" >&2
	fi
	exit 1
}
# shellcheck disable=SC2317
cleanup() {
	if [ -n "$GH" ] && [ -d "$GH" ]; then
		GNUPGHOME=$GH gpgconf --kill all >/dev/null 2>&1
	fi
	[ -n "$GH_TMP" ] && rm -rf "$GH_TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

need() {
	command -v "$1" >/dev/null 2>&1 ||
		die "peer tool '$1' is missing (Debian 12: apt-get install $2)"
}
need openssl openssl
need certutil libnss3-tools
need pk12util libnss3-tools
need cmsutil libnss3-tools
need gpgsm gpgsm
need gpgconf gpgconf
need gpg-agent gpg-agent
need awk mawk
TIMEOUT=
command -v timeout >/dev/null 2>&1 && TIMEOUT="timeout 30"

# A previous run's output is replaced, not mixed with this one.
rm -rf "$W" "$O/pki" "$O/nssdb" "$O/gnupg"
rm -f "$O"/*.eml "$O"/*.expect "$O"/*.pem "$O"/*.key "$O"/*.p12 \
	"$O/index.txt" "$O/peer-facts.txt"
mkdir -p "$W" || exit 1
: >"$LOG"
FACTS=$O/peer-facts.txt
: >"$FACTS"
: >"$O/index.txt"
fact() { printf '%s\n' "$@" >>"$FACTS"; }
run() { "$@" >>"$LOG" 2>&1 || die "failed: $*"; }

# --- smime-signer -----------------------------------------------------------
if [ -n "${SMIME_SIGNER:-}" ]; then
	SIGNER=$SMIME_SIGNER
	[ -x "$SIGNER" ] || die "SMIME_SIGNER=$SIGNER is not executable"
else
	src=$here/../smime-signer.c
	[ -f "$src" ] || die "cannot find $src (or set SMIME_SIGNER)"
	need "${CC:-cc}" gcc
	if command -v pkg-config >/dev/null 2>&1 && pkg-config --exists openssl; then
		ossl=$(pkg-config --cflags --libs openssl)
	else
		ossl=-lcrypto
	fi
	SIGNER=$O/smime-signer
	# shellcheck disable=SC2086
	${CC:-cc} -O1 -o "$SIGNER" "$src" $ossl >>"$LOG" 2>&1 ||
		die "cannot compile $src (needs libssl-dev)"
fi

# --- helpers ----------------------------------------------------------------
crlf() { awk '{ sub(/\r$/, ""); printf "%s\r\n", $0 }'; }
sha256_of_cert() { openssl x509 -in "$1" -outform DER | openssl dgst -sha256 -r | cut -d' ' -f1; }
# rfc822Names of a certificate's SAN, one a line, in certificate order.
emails_of_cert() {
	openssl x509 -in "$1" -noout -ext subjectAltName 2>/dev/null |
	    awk 'NR > 1 { n = split($0, a, ","); for (i = 1; i <= n; i++) {
		s = a[i]; gsub(/^[ \t]+|[ \t]+$/, "", s)
		if (s ~ /^email:/) print substr(s, 7) } }'
}
# The certificate file in OUTDIR whose DER has SHA-256 $1.
cert_named() {
	for c in "$O"/*.pem; do
		if [ "$(sha256_of_cert "$c")" = "$1" ]; then
			basename "$c"
			return
		fi
	done
	echo "(not one of the generated certificates)"
}
# cms_shape DER: digest algorithm, signed attributes in encoded order, and
# the certificates carried (file names), for peer-facts.txt.
cms_shape() {
	openssl asn1parse -inform DER -in "$1" >"$W/shape.txt" 2>>"$LOG" || return
	dg=$(awk -F: '/OBJECT/ && $NF ~ /^sha|^md5/ { print $NF; exit }' "$W/shape.txt")
	at=$(awk -F: '/OBJECT/ { v = $NF } /OBJECT/ && v ~ /^(contentType|signingTime|messageDigest|S\/MIME Capabilities|id-smime-aa-encrypKeyPref|1\.3\.6\.1\.4\.1\.311\.16\.4)$/ { printf "%s%s", (n++ ? ", " : ""), v }' "$W/shape.txt")
	openssl pkcs7 -inform DER -in "$1" -print_certs 2>>"$LOG" |
	    awk -v d="$W/shape-cert" '/BEGIN CERT/ { f = sprintf("%s%03d.pem", d, ++k) } f { print > f } /END CERT/ { close(f); f = "" }'
	cs=
	for c in "$W"/shape-cert*.pem; do
		[ -f "$c" ] || continue
		cs="$cs${cs:+, }$(cert_named "$(sha256_of_cert "$c")")"
		rm -f "$c"
	done
	echo "digest $dg; signed attributes in encoded order: $at; certificates: $cs"
}
DATE=$(date -u '+%a, %d %b %Y %H:%M:%S +0000')

# header NAME FROM: the RFC 5322 header of message NAME, CRLF.
header() {
	printf 'From: %s\r\nTo: Recipient <recipient@example.net>\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%s@peers.kmsmilter.test>\r\nMIME-Version: 1.0\r\n' \
	    "$2" "$1" "$DATE" "$1"
}
# content NAME TEXT: the MIME entity that gets signed, CRLF. Its last
# line is the one neg-tampered-rsa changes.
content() {
	printf 'Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\nThis is %s.\r\n%s\r\nAmount: 100 EUR\r\n' "$1" "$2"
}
# An S/MIME entity written by OpenSSL, without its MIME-Version line
# (header supplies it), all line ends CRLF.
entity() { awk 'NR == 1 && /^MIME-Version:/ { next } { print }' | crlf; }

# wrap_detached CONTENT DER BOUNDARY: multipart/signed around CONTENT (the
# exact bytes that were signed) and the DER signature.
wrap_detached() {
	printf 'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256; boundary="%s"\r\n\r\n' "$3"
	printf 'This is a cryptographically signed message in MIME format.\r\n\r\n--%s\r\n' "$3"
	cat "$1"
	printf '\r\n--%s\r\n' "$3"
	printf 'Content-Type: application/pkcs7-signature; name="smime.p7s"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename="smime.p7s"\r\nContent-Description: S/MIME Cryptographic Signature\r\n\r\n'
	openssl base64 -e -in "$2" | crlf
	printf '\r\n--%s--\r\n' "$3"
}
# wrap_opaque DER: application/pkcs7-mime signed-data.
wrap_opaque() {
	printf 'Content-Type: application/pkcs7-mime; smime-type=signed-data; name="smime.p7m"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename="smime.p7m"\r\n\r\n'
	openssl base64 -e -in "$1" | crlf
}

# index NAME PEER FORM KEYTYPE
index() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$O/index.txt"; }

# expect_measured NAME STATUS DER: .expect from the CMS itself (what the
# peer really announced), keeping the lines STATUS calls for.
expect_measured() {
	"$SIGNER" --describe <"$3" >"$W/$1.describe" 2>>"$LOG" ||
		die "cannot describe the CMS of $1"
	if grep -Eq 'unresolved|invalid' "$W/$1.describe"; then
		die "the CMS of $1 names something it does not carry: $(tr '\n' ' ' <"$W/$1.describe")"
	fi
	{
		echo "status: $2"
		case $2 in
		none) ;;
		bad-signature) grep -E '^(address|signer_sha256):' "$W/$1.describe" ;;
		*) cat "$W/$1.describe" ;;
		esac
	} >"$O/$1.expect"
}
# expect_known NAME STATUS CERT CAPS KEYPREF-CERT|-: .expect from what was
# asked of smime-signer.
expect_known() {
	{
		echo "status: $2"
		emails_of_cert "$3" | sed 's/^/address: /'
		echo "capabilities: $4"
		if [ "$5" = - ]; then echo "key_preference: -"; else
			echo "key_preference: $(sha256_of_cert "$5")"; fi
		echo "signer_sha256: $(sha256_of_cert "$3")"
	} >"$O/$1.expect"
}
expect_none() { echo "status: none" >"$O/$1.expect"; }
# The DER CMS of an S/MIME message (signature part or opaque body).
cms_der() { openssl cms -cmsout -in "$1" -outform DER -out "$2" >>"$LOG" 2>&1 || die "cannot read the CMS back from $1"; }
caps_of() { grep '^capabilities:' "$1" | head -1 | sed 's/^capabilities: //'; }
keypref_of() { grep '^key_preference:' "$1" | head -1 | sed 's/^key_preference: //'; }

# --- PKI --------------------------------------------------------------------
P=$O/pki
mkdir -p "$P" || exit 1
cat >"$P/req.cnf" <<EOF
[req]
distinguished_name = dn
[dn]
EOF

# mkca NAME CN FIRST-SERIAL: a self-signed root for NAME.key and its
# `openssl ca` state.
mkca() {
	mkdir -p "$P/$1/newcerts"
	: >"$P/$1/index.txt"
	echo "$3" >"$P/$1/serial"
	cat >"$P/$1/ca.cnf" <<EOF
[ca]
default_ca = ca_section
[ca_section]
dir = $P/$1
database = \$dir/index.txt
new_certs_dir = \$dir/newcerts
serial = \$dir/serial
certificate = $O/$1.pem
private_key = $O/$1.key
default_md = sha256
policy = policy_any
unique_subject = no
email_in_dn = no
copy_extensions = none
[policy_any]
organizationName = optional
commonName = supplied
EOF
	run openssl req -config "$P/req.cnf" -new -x509 -key "$O/$1.key" -out "$O/$1.pem" \
	    -days 3650 -subj "/O=kmsmilter tests/CN=$2" \
	    -addext "basicConstraints=critical,CA:TRUE" \
	    -addext "keyUsage=critical,keyCertSign,cRLSign" \
	    -addext "subjectKeyIdentifier=hash"
}

# issue CA NAME KEYUSAGE SAN [STARTDATE ENDDATE]: NAME.pem for NAME.key.
issue() {
	run openssl req -config "$P/req.cnf" -new -key "$O/$2.key" -out "$P/$2.csr" \
	    -subj "/O=kmsmilter tests/CN=$2"
	cat >"$P/$2.ext" <<EOF
[ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,$3
extendedKeyUsage = emailProtection
subjectAltName = $4
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
	if [ $# -ge 6 ]; then
		validity="-startdate $5 -enddate $6"
	else
		validity="-days 825"
	fi
	# shellcheck disable=SC2086
	run openssl ca -batch -notext -config "$P/$1/ca.cnf" -in "$P/$2.csr" \
	    -out "$O/$2.pem" -extfile "$P/$2.ext" -extensions ext $validity
}

# p12 NAME: NAME.p12 (OpenSSL 3 default: PBES2, AES-256-CBC, HMAC-SHA256)
# and NAME-legacy.p12 (-legacy: 3DES/RC2-40, HMAC-SHA1), empty password.
p12() {
	run openssl pkcs12 -export -in "$O/$1.pem" -inkey "$O/$1.key" -certfile "$O/ca.pem" \
	    -name "$1" -passout pass: -out "$O/$1.p12"
	run openssl pkcs12 -export -legacy -in "$O/$1.pem" -inkey "$O/$1.key" -certfile "$O/ca.pem" \
	    -name "$1" -passout pass: -out "$O/$1-legacy.p12"
}

# genkey NAME rsa:BITS|ec: NAME.key, in the background (RSA key generation
# is most of this script's run time).
genkey() {
	case $2 in
	rsa:*) openssl genpkey -algorithm RSA -pkeyopt "rsa_keygen_bits:${2#rsa:}" -out "$O/$1.key" ;;
	ec) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$O/$1.key" ;;
	esac >>"$W/genkey-$1.log" 2>&1 &
}
genkey ca rsa:3072
genkey root2 rsa:2048
genkey alice-rsa rsa:2048
genkey alice-enc rsa:2048
genkey carol-ec ec
genkey bob-rsa rsa:2048
genkey dave-expired rsa:2048
genkey eve-untrusted rsa:2048
wait
for k in ca root2 alice-rsa alice-enc carol-ec bob-rsa dave-expired eve-untrusted; do
	[ -s "$O/$k.key" ] || { cat "$W/genkey-$k.log" >>"$LOG"; die "cannot generate $k.key"; }
done

KU_RSA=digitalSignature,nonRepudiation,keyEncipherment
KU_EC=digitalSignature,keyAgreement
mkca ca "kmsmilter Test Root CA" 1000
mkca root2 "Untrusted Other Root CA" 2000
issue ca alice-rsa "$KU_RSA" "email:alice@example.org"
issue ca alice-enc keyEncipherment "email:alice@example.org"
issue ca carol-ec "$KU_EC" "email:carol@example.org,email:carol.smith@example.net"
issue ca bob-rsa "$KU_RSA" "email:bob@example.org"
issue ca dave-expired "$KU_RSA" "email:dave@example.org" 20200101000000Z 20210101000000Z
issue root2 eve-untrusted "$KU_RSA" "email:eve@example.org"
p12 alice-rsa
p12 alice-enc
p12 carol-ec

fact "# Facts measured by tests/peers/make-signed.sh on $(uname -srm), $DATE" \
    "# (capability names as in smime/capabilities.h; certificates by file name)" ""

# --- a) openssl cms -sign -----------------------------------------------------
fact "openssl: $(openssl version)"
# ossl_sign NAME FROM CERT KEY OPTIONS...: signs NAME's content with the CLI.
ossl_sign() {
	name=$1 from=$2 cert=$3 key=$4
	shift 4
	content "$name" "Signed with openssl cms -sign." >"$W/$name.content"
	openssl cms -sign -binary -md sha256 -in "$W/$name.content" -signer "$O/$cert.pem" \
	    -inkey "$O/$key.key" "$@" -out "$W/$name.smime" 2>>"$LOG" ||
		die "openssl cms -sign failed for $name"
	{ header "$name" "$from"; entity <"$W/$name.smime"; } >"$O/$name.eml"
	cms_der "$O/$name.eml" "$W/$name.p7s"
}
ossl_sign openssl-detached-rsa "Alice <alice@example.org>" alice-rsa alice-rsa
expect_measured openssl-detached-rsa trusted "$W/openssl-detached-rsa.p7s"
index openssl-detached-rsa openssl-cms detached rsa-2048
fact "openssl cms -sign announces (RSA): $(caps_of "$O/openssl-detached-rsa.expect")" \
    "openssl cms -sign CMS: $(cms_shape "$W/openssl-detached-rsa.p7s")"

ossl_sign openssl-detached-ec "Carol <carol@example.org>" carol-ec carol-ec
expect_measured openssl-detached-ec trusted "$W/openssl-detached-ec.p7s"
index openssl-detached-ec openssl-cms detached ec-p256
fact "openssl cms -sign announces (EC): $(caps_of "$O/openssl-detached-ec.expect")"

ossl_sign openssl-opaque-rsa "Alice <alice@example.org>" alice-rsa alice-rsa -nodetach
expect_measured openssl-opaque-rsa trusted "$W/openssl-opaque-rsa.p7s"
index openssl-opaque-rsa openssl-cms opaque rsa-2048

ossl_sign openssl-nosmimecap-rsa "Alice <alice@example.org>" alice-rsa alice-rsa -nosmimecap
expect_measured openssl-nosmimecap-rsa trusted "$W/openssl-nosmimecap-rsa.p7s"
index openssl-nosmimecap-rsa openssl-cms detached-nosmimecap rsa-2048
fact "openssl cms -sign -nosmimecap announces: $(caps_of "$O/openssl-nosmimecap-rsa.expect")" \
    "openssl cms -sign key preference: $(keypref_of "$O/openssl-detached-rsa.expect") (never adds one)"

# The same signature as old-style application/x-pkcs7-signature (Outlook).
ossl_sign openssl-detached-xpkcs7-rsa "Alice <alice@example.org>" alice-rsa alice-rsa
sed 's#application/pkcs7-signature#application/x-pkcs7-signature#g' \
    "$O/openssl-detached-xpkcs7-rsa.eml" >"$W/x.eml" || die "sed failed"
mv "$W/x.eml" "$O/openssl-detached-xpkcs7-rsa.eml"
expect_measured openssl-detached-xpkcs7-rsa trusted "$W/openssl-detached-xpkcs7-rsa.p7s"
index openssl-detached-xpkcs7-rsa openssl-cms detached-x-pkcs7 rsa-2048

# --- b) smime-signer on the OpenSSL library ----------------------------------
# lib_sign NAME FROM CERT CAPS KEYPREF|- [--opaque]
lib_sign() {
	name=$1 from=$2 cert=$3 caps=$4 pref=$5
	shift 5
	content "$name" "Signed with smime-signer (OpenSSL library), capabilities $caps." >"$W/$name.content"
	set -- --cert "$O/$cert.pem" --key "$O/$cert.key" --caps "$caps" "$@"
	[ "$pref" != - ] && set -- "$@" --keypref "$O/$pref.pem"
	"$SIGNER" "$@" <"$W/$name.content" >"$W/$name.smime" 2>>"$LOG" ||
		die "smime-signer failed for $name"
	{ header "$name" "$from"; entity <"$W/$name.smime"; } >"$O/$name.eml"
	if [ "$pref" = - ]; then
		expect_known "$name" trusted "$O/$cert.pem" "$caps" -
	else
		expect_known "$name" trusted "$O/$cert.pem" "$caps" "$O/$pref.pem"
	fi
}
lib_sign lib-detached-gcm-oaep-keypref-rsa "Alice <alice@example.org>" alice-rsa \
    aes256-gcm,aes128-gcm,aes256-cbc,rsaes-oaep alice-enc
index lib-detached-gcm-oaep-keypref-rsa openssl-lib detached rsa-2048
lib_sign lib-detached-gcm-ec "Carol <carol@example.org>" carol-ec aes128-gcm,aes256-cbc -
index lib-detached-gcm-ec openssl-lib detached ec-p256
# OAEP with SHA-256 parameters, RC2 with its key size, an OID OpenSSL does
# not know (1.3.6.1.4.1.32473: RFC 5612's example enterprise number).
lib_sign lib-opaque-oaep256-rsa "Alice <alice@example.org>" alice-rsa \
    aes256-gcm,aes192-cbc,rsaes-oaep-sha256,rsaes-oaep,rc2-cbc-128,1.3.6.1.4.1.32473.1 - --opaque
index lib-opaque-oaep256-rsa openssl-lib opaque rsa-2048

# --- c) NSS cmsutil ------------------------------------------------------------
N=$O/nssdb
mkdir -p "$N"
run certutil -N -d "sql:$N" --empty-password
run certutil -A -d "sql:$N" -n kms-test-ca -t C,C,C -i "$O/ca.pem"
for n in alice-rsa carol-ec; do
	if pk12util -i "$O/$n.p12" -d "sql:$N" -W '' >>"$LOG" 2>&1; then
		fact "pk12util (NSS): imports OpenSSL 3's default PKCS#12 ($n.p12, PBES2/AES-256-CBC, HMAC-SHA256): yes"
	else
		fact "pk12util (NSS): imports OpenSSL 3's default PKCS#12 ($n.p12): NO, used $n-legacy.p12"
		run pk12util -i "$O/$n-legacy.p12" -d "sql:$N" -W ''
	fi
done
fact "NSS: $(dpkg-query -W -f '${Package} ${Version}' libnss3 2>/dev/null || echo 'version unknown')"

# nss_sign NAME FROM NICK detached|opaque CMSUTIL-OPTIONS...
nss_sign() {
	name=$1 from=$2 nick=$3 form=$4
	shift 4
	content "$name" "Signed with NSS cmsutil -S -N $nick -P -G $*." >"$W/$name.content"
	if [ "$form" = detached ]; then set -- -T "$@"; fi
	cmsutil -S -N "$nick" -P -G "$@" -d "sql:$N" -i "$W/$name.content" \
	    -o "$W/$name.p7s" >>"$LOG" 2>&1 || die "cmsutil -S failed for $name"
	if [ "$form" = detached ]; then
		{ header "$name" "$from"; wrap_detached "$W/$name.content" "$W/$name.p7s" "=_nss_$name"; } >"$O/$name.eml"
	else
		{ header "$name" "$from"; wrap_opaque "$W/$name.p7s"; } >"$O/$name.eml"
	fi
	expect_measured "$name" trusted "$W/$name.p7s"
}
ms_keypref() {
	if openssl asn1parse -inform DER -in "$1" | grep -q ':1.3.6.1.4.1.311.16.4$'; then
		echo yes; else echo no; fi
}
# -Y wants a certificate whose private key is in the database: with the
# certificate alone cmsutil refuses (recorded), so alice-enc.p12 goes in.
run certutil -A -d "sql:$N" -n alice-enc -t ,, -i "$O/alice-enc.pem"
content nss-probe "cmsutil -Y probe" >"$W/nss-probe.content"
if cmsutil -S -N alice-rsa -P -G -T -Y alice-enc -d "sql:$N" -i "$W/nss-probe.content" \
    -o "$W/nss-probe.p7s" >"$W/nss-probe.txt" 2>&1; then
	fact "cmsutil -Y with only the certificate (no private key) of alice-enc: accepted"
else
	fact "cmsutil -Y with only the certificate (no private key) of alice-enc: refused:" \
	    "$(grep 'cmsutil:' "$W/nss-probe.txt" | sed 's/^/    /')"
fi
run certutil -D -d "sql:$N" -n alice-enc
run pk12util -i "$O/alice-enc.p12" -d "sql:$N" -W ''
nss_sign nss-detached-rsa "Alice <alice@example.org>" alice-rsa detached -Y alice-enc
index nss-detached-rsa nss-cmsutil detached rsa-2048
nss_sign nss-detached-ec "Carol <carol@example.org>" carol-ec detached
index nss-detached-ec nss-cmsutil detached ec-p256
nss_sign nss-opaque-rsa "Alice <alice@example.org>" alice-rsa opaque
index nss-opaque-rsa nss-cmsutil opaque rsa-2048
k1=$(keypref_of "$O/nss-detached-rsa.expect")
k2=$(keypref_of "$O/nss-opaque-rsa.expect")
k3=$(keypref_of "$O/nss-detached-ec.expect")
fact "cmsutil -P announces (RSA): $(caps_of "$O/nss-detached-rsa.expect")" \
    "cmsutil -P announces (EC): $(caps_of "$O/nss-detached-ec.expect")" \
    "cmsutil -Y alice-enc key preference names: $(cert_named "$k1")" \
    "cmsutil without -Y (RSA signer) key preference names: $(cert_named "$k2")" \
    "cmsutil without -Y (EC signer) key preference names: $(cert_named "$k3")" \
    "cmsutil also adds Microsoft's key preference (1.3.6.1.4.1.311.16.4): $(ms_keypref "$W/nss-detached-rsa.p7s")" \
    "cmsutil -Y alice-enc CMS: $(cms_shape "$W/nss-detached-rsa.p7s")" \
    "cmsutil without -Y CMS: $(cms_shape "$W/nss-opaque-rsa.p7s")"

# --- d) gpgsm -------------------------------------------------------------------
GH=$O/gnupg
if [ ${#GH} -gt 80 ]; then
	# gpg-agent's socket lives in GNUPGHOME; a unix socket path is short.
	GH_TMP=$(mktemp -d /tmp/kms-gnupg.XXXXXX) || die "mktemp failed"
	GH=$GH_TMP
fi
{ mkdir -p "$GH" && chmod 700 "$GH"; } || die "cannot create $GH"
GNUPGHOME=$GH
export GNUPGHOME
echo allow-loopback-pinentry >"$GH/gpg-agent.conf"
# shellcheck disable=SC2086
G() { $TIMEOUT gpgsm --batch --pinentry-mode loopback --passphrase '' "$@"; }
fact "gpgsm: $(gpgsm --version | head -1)"
G --import "$O/ca.pem" >>"$LOG" 2>&1 || die "gpgsm cannot import ca.pem"
fpr=$(gpgsm --with-colons --list-keys 2>>"$LOG" | awk -F: '$1 == "fpr" { print $10; exit }')
[ -n "$fpr" ] || die "gpgsm does not list the imported CA"
echo "$fpr S" >"$GH/trustlist.txt"

if G --import "$O/alice-rsa.p12" >"$W/gpgsm-import-default.txt" 2>&1 &&
    ! grep -q 'error' "$W/gpgsm-import-default.txt"; then
	fact "gpgsm: imports OpenSSL 3's default PKCS#12 (alice-rsa.p12): yes"
else
	fact "gpgsm: imports OpenSSL 3's default PKCS#12 (alice-rsa.p12): NO:" \
	    "$(grep 'gpgsm:' "$W/gpgsm-import-default.txt" | sed 's/^/    /')"
fi
G --import "$O/alice-rsa-legacy.p12" >>"$LOG" 2>&1 || die "gpgsm cannot import alice-rsa-legacy.p12"
G --list-secret-keys alice@example.org >>"$LOG" 2>&1 ||
	die "gpgsm has no secret key for alice@example.org after importing alice-rsa-legacy.p12"
fact "gpgsm: imports alice-rsa-legacy.p12 (openssl pkcs12 -export -legacy): yes"

SIGNOPTS="--disable-crl-checks --disable-dirmngr --include-certs -1"
# gpgsm_sign NAME FROM detached|opaque
gpgsm_sign() {
	name=$1 from=$2 form=$3
	content "$name" "Signed with gpgsm." >"$W/$name.content"
	if [ "$form" = detached ]; then op=--detach-sign; else op=--sign; fi
	# shellcheck disable=SC2086
	G $SIGNOPTS -u alice@example.org $op -o "$W/$name.p7s" "$W/$name.content" \
	    >>"$LOG" 2>&1 || die "gpgsm $op failed for $name"
	if [ "$form" = detached ]; then
		{ header "$name" "$from"; wrap_detached "$W/$name.content" "$W/$name.p7s" "=_gpgsm_$name"; } >"$O/$name.eml"
	else
		{ header "$name" "$from"; wrap_opaque "$W/$name.p7s"; } >"$O/$name.eml"
	fi
	expect_measured "$name" trusted "$W/$name.p7s"
}
gpgsm_sign gpgsm-detached-rsa "Alice <alice@example.org>" detached
index gpgsm-detached-rsa gpgsm detached rsa-2048
gpgsm_sign gpgsm-opaque-rsa "Alice <alice@example.org>" opaque
index gpgsm-opaque-rsa gpgsm opaque rsa-2048
fact "gpgsm announces (RSA): $(caps_of "$O/gpgsm-detached-rsa.expect")" \
    "gpgsm key preference: $(keypref_of "$O/gpgsm-detached-rsa.expect")" \
    "gpgsm --include-certs -1 CMS: $(cms_shape "$W/gpgsm-detached-rsa.p7s")"

# gpgsm and EC: expected to fail; what failed, and how, is the fact.
G --import "$O/carol-ec-legacy.p12" >"$W/gpgsm-ec-import.txt" 2>&1
rc=$?
fact "gpgsm: import of an EC (P-256) PKCS#12 (carol-ec-legacy.p12): exit $rc:" \
    "$(grep -E 'gpgsm:|fault' "$W/gpgsm-ec-import.txt" | sed 's/^/    /')"
content gpgsm-ec "gpgsm EC attempt" >"$W/gpgsm-ec.content"
# shellcheck disable=SC2086
if G $SIGNOPTS -u carol@example.org --detach-sign -o "$W/gpgsm-ec.p7s" \
    "$W/gpgsm-ec.content" >"$W/gpgsm-ec-sign.txt" 2>&1; then
	fact "gpgsm: signing with the EC signer carol@example.org: SUCCEEDED (gpgsm can sign with EC here)"
else
	fact "gpgsm: signing with the EC signer carol@example.org: FAILED:" \
	    "$(grep 'gpgsm:' "$W/gpgsm-ec-sign.txt" | sed 's/^/    /')"
fi
# The EC key itself in gpg-agent (made by gpg), offered to gpgsm to sign a
# certificate request: shows the signing limitation apart from PKCS#12.
if command -v gpg >/dev/null 2>&1; then
	$TIMEOUT gpg --batch --pinentry-mode loopback --passphrase '' \
	    --quick-gen-key 'EC Test <ec-test@example.org>' nistp256 sign never >>"$LOG" 2>&1
	grip=$(gpg --with-colons --with-keygrip -K ec-test@example.org 2>>"$LOG" |
	    awk -F: '$1 == "grp" { print $10; exit }')
	if [ -n "$grip" ]; then
		printf 'Key-Type: RSA\nKey-Grip: %s\nKey-Usage: sign\nName-DN: CN=EC Test\nName-Email: ec-test@example.org\n' \
		    "$grip" >"$W/gpgsm-ec-req.txt"
		if G --gen-key "$W/gpgsm-ec-req.txt" >"$W/gpgsm-ec.csr" 2>"$W/gpgsm-ec-req.err"; then
			fact "gpgsm: signing a certificate request with an ECDSA P-256 key in gpg-agent: SUCCEEDED"
		else
			fact "gpgsm: signing a certificate request with an ECDSA P-256 key in gpg-agent: FAILED:" \
			    "$(grep 'gpgsm:' "$W/gpgsm-ec-req.err" | sed 's/^/    /')"
		fi
	fi
fi
GNUPGHOME=$GH gpgconf --kill all >/dev/null 2>&1

# --- e) negative and structural cases --------------------------------------------
# Tampered: one byte of the signed body changed after signing.
ossl_sign neg-tampered-rsa "Alice <alice@example.org>" alice-rsa alice-rsa
sed 's/^Amount: 100 EUR/Amount: 900 EUR/' "$O/neg-tampered-rsa.eml" >"$W/t.eml"
cmp -s "$O/neg-tampered-rsa.eml" "$W/t.eml" && die "tampering did not change neg-tampered-rsa"
mv "$W/t.eml" "$O/neg-tampered-rsa.eml"
expect_measured neg-tampered-rsa bad-signature "$W/neg-tampered-rsa.p7s"
index neg-tampered-rsa openssl-cms tampered rsa-2048

# Garbage where the signature should be.
content neg-garbage-signature "Amount: 100 EUR" >"$W/neg-garbage-signature.content"
awk 'BEGIN { for (i = 0; i < 700; i++) printf "%c", 33 + (i * 7) % 90 }' >"$W/garbage.bin"
{ header neg-garbage-signature "Alice <alice@example.org>"
  wrap_detached "$W/neg-garbage-signature.content" "$W/garbage.bin" "=_garbage"; } >"$O/neg-garbage-signature.eml"
expect_none neg-garbage-signature
index neg-garbage-signature none garbage-signature none

# Truncated CMS: the first half of a real signature.
ossl_sign neg-truncated-cms "Alice <alice@example.org>" alice-rsa alice-rsa
size=$(wc -c <"$W/neg-truncated-cms.p7s")
head -c $((size / 2)) "$W/neg-truncated-cms.p7s" >"$W/half.der"
{ header neg-truncated-cms "Alice <alice@example.org>"
  wrap_detached "$W/neg-truncated-cms.content" "$W/half.der" "=_truncated"; } >"$O/neg-truncated-cms.eml"
expect_none neg-truncated-cms
index neg-truncated-cms openssl-cms truncated-cms rsa-2048

# nest NAME DEPTH: a signed entity at the bottom of DEPTH multipart/mixed.
nest() {
	ossl_sign "$1" "Alice <alice@example.org>" alice-rsa alice-rsa
	# the signed entity: the message minus its RFC 5322 header fields
	awk 'body || /^Content-Type:/ { body = 1; print }' "$O/$1.eml" >"$W/$1.entity"
	{
		header "$1" "Alice <alice@example.org>"
		i=1
		while [ $i -le "$2" ]; do
			printf 'Content-Type: multipart/mixed; boundary="=_level%03d"\r\n\r\n--=_level%03d\r\n' $i $i
			i=$((i + 1))
		done
		cat "$W/$1.entity"
		i=$2
		while [ "$i" -ge 1 ]; do
			printf '\r\n--=_level%03d--\r\n' "$i"
			i=$((i - 1))
		done
	} >"$W/$1.nested"
	mv "$W/$1.nested" "$O/$1.eml"
}
nest neg-deep-nesting 100
expect_none neg-deep-nesting
index neg-deep-nesting openssl-cms nested-100 rsa-2048
nest nested-5-rsa 5
expect_measured nested-5-rsa trusted "$W/nested-5-rsa.p7s"
index nested-5-rsa openssl-cms nested-5 rsa-2048

# Not signed at all.
{ header neg-unsigned "Alice <alice@example.org>"; content neg-unsigned "Nothing signed here."; } >"$O/neg-unsigned.eml"
expect_none neg-unsigned
index neg-unsigned none unsigned none

# Expired signer (valid 2020-01-01 .. 2021-01-01).
ossl_sign neg-expired-rsa "Dave <dave@example.org>" dave-expired dave-expired
expect_measured neg-expired-rsa expired "$W/neg-expired-rsa.p7s"
index neg-expired-rsa openssl-cms detached rsa-2048

# Signer from root2, which is never trusted; root2 travels in the CMS, so a
# harvester that trusts any self-signed root it is handed fails here.
ossl_sign neg-untrusted-root-rsa "Eve <eve@example.org>" eve-untrusted eve-untrusted -certfile "$O/root2.pem"
expect_measured neg-untrusted-root-rsa untrusted-chain "$W/neg-untrusted-root-rsa.p7s"
index neg-untrusted-root-rsa openssl-cms detached rsa-2048

# From says alice, the certificate says bob: only bob is harvested.
ossl_sign san-mismatch-rsa "Alice <alice@example.org>" bob-rsa bob-rsa
expect_measured san-mismatch-rsa trusted "$W/san-mismatch-rsa.p7s"
index san-mismatch-rsa openssl-cms detached rsa-2048

# A signed message forwarded as an attachment (message/rfc822).
ossl_sign forwarded-inner "Alice <alice@example.org>" alice-rsa alice-rsa
{
	header forwarded-rsa "Frank <frank@example.org>"
	printf 'Content-Type: multipart/mixed; boundary="=_fwd"\r\n\r\n--=_fwd\r\n'
	printf 'Content-Type: text/plain; charset=us-ascii\r\n\r\nForwarding the signed message below.\r\n\r\n--=_fwd\r\n'
	printf 'Content-Type: message/rfc822\r\nContent-Disposition: attachment; filename="forwarded.eml"\r\n\r\n'
	cat "$O/forwarded-inner.eml"
	printf '\r\n--=_fwd--\r\n'
} >"$W/fwd.eml"
rm -f "$O/forwarded-inner.eml"
mv "$W/fwd.eml" "$O/forwarded-rsa.eml"
expect_measured forwarded-rsa trusted "$W/forwarded-inner.p7s"
index forwarded-rsa openssl-cms forwarded-rfc822 rsa-2048

# --- final checks --------------------------------------------------------------------
for f in "$O"/*.eml; do
	n=${f##*/}
	n=${n%.eml}
	[ -s "$O/$n.expect" ] || die "$n has no .expect"
	grep -q "^$n	" "$O/index.txt" || die "$n is not in index.txt"
	if [ -n "$(awk '!/\r$/ { print NR; exit }' "$f")" ]; then
		die "$n.eml has a line not ending in CRLF"
	fi
done
fact "" "gnupg home: $GH$( [ -n "$GH_TMP" ] && echo ' (temporary: OUTDIR path too long for the agent socket; removed)')"
echo "make-signed.sh: $(wc -l <"$O/index.txt") messages in $O"
exit 0
