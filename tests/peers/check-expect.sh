#!/bin/sh
# NAME
#	check-expect.sh - prove that make-signed.sh's fixtures are what they claim
# SYNOPSIS
#	tests/peers/check-expect.sh OUTDIR
# DESCRIPTION
#	For every message in OUTDIR/index.txt, checks NAME.expect with the
#	openssl CLI alone (no project code, no smime-signer):
#	  trusted	verifies with -CAfile ca.pem
#	  expired	fails with ca.pem for expiry only: passes with -no_check_time
#	  untrusted-chain  fails with ca.pem, passes with -noverify
#	  bad-signature	the CMS parses and carries the signer, but even
#		-noverify fails (the signature does not match the content)
#	  none		unsigned: no signed entity; garbage/truncated: no CMS
#		parses; nested-100: a real, verifiable signature more than 20
#		multipart levels down
#	and, where the .expect lists them, the signer certificate's SHA-256
#	and SAN addresses, and the SMIMECapabilities and key preference as
#	decoded from `openssl asn1parse` (an independent decoder from
#	smime-signer --describe, which wrote the measured expectations).
#	Output is TAP; exit 1 when anything does not hold.
set -u
if [ $# -ne 1 ]; then
	echo "usage: $0 OUTDIR" >&2
	exit 2
fi
O=$(cd "$1" && pwd) || exit 2
if [ ! -f "$O/index.txt" ] || [ ! -f "$O/ca.pem" ]; then
	echo "$O: no index.txt/ca.pem (run make-signed.sh)" >&2
	exit 2
fi
LC_ALL=C
export LC_ALL
T=$(mktemp -d /tmp/check-expect.XXXXXX) || exit 1
trap 'rm -rf "$T"' EXIT
trap 'exit 1' INT TERM HUP

n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $*"; }
check() { if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1"; echo "#   want: $2"; echo "#    got: $3"; fi; }

sha256_of_cert() { openssl x509 -in "$1" -outform DER | openssl dgst -sha256 -r | cut -d' ' -f1; }
emails_of_cert() {
	openssl x509 -in "$1" -noout -ext subjectAltName 2>/dev/null |
	    awk 'NR > 1 { n = split($0, a, ","); for (i = 1; i <= n; i++) {
		s = a[i]; gsub(/^[ \t]+|[ \t]+$/, "", s)
		if (s !~ /^email:/) continue
		s = substr(s, 7); at = index(s, "@")
		if (at) s = substr(s, 1, at) tolower(substr(s, at + 1))
		print s } }'
}
field() { grep "^$2:" "$1" | sed "s/^$2: //"; }

# The signed entity of a message: from the last multipart/signed or
# pkcs7-mime Content-Type line to the end (the outer parts' closing
# boundaries that follow are ignored by OpenSSL's S/MIME reader).
signed_entity() {
	awk '{ l[NR] = $0 }
	    tolower($0) ~ /^content-type: *(multipart\/signed|application\/(x-)?pkcs7-mime)/ { s = NR }
	    END { if (!s) exit 1; printf "MIME-Version: 1.0\r\n"; for (i = s; i <= NR; i++) print l[i] }' "$1"
}

# SMIMECapabilities (smime/capabilities.h names) and the key preference
# serial, from asn1parse of a DER SignedData with one signer.
asn1_attrs() {
	openssl asn1parse -inform DER -in "$1" | awk '
	function hex2dec(h,   i, v) { v = 0; h = toupper(h)
		for (i = 1; i <= length(h); i++) v = v * 16 + index("0123456789ABCDEF", substr(h, i, 1)) - 1
		return v }
	function capname(o, p, h) {
		if (o ~ /^aes-[0-9]+-(cbc|gcm)$/) { sub(/^aes-/, "aes", o); return o }
		if (o == "rc2-cbc") return p == "" ? o : o "-" hex2dec(p)
		if (o == "rsaesOaep") return (h == "" || h == "sha1") ? "rsaes-oaep" : "rsaes-oaep-" tolower(h)
		if (o == "rsaEncryption") return "rsa-encryption"
		return tolower(o) }
	function flush() { if (oid != "") { caps = caps (ncap++ ? "," : "") capname(oid, par, hash) }
		oid = ""; par = ""; hash = ""; nel = 0; inhash = 0 }
	{
		if (!match($0, /d= *[0-9]+/)) next
		d = substr($0, RSTART + 2, RLENGTH - 2) + 0
		rest = $0; sub(/^.*(prim|cons): */, "", rest)
		type = rest; val = ""
		if ((c = index(rest, ":")) > 0) { type = substr(rest, 1, c - 1); val = substr(rest, c + 1) }
		sub(/ +$/, "", type)
		if (mode == "caps") {
			if (d == base && type == "SET" && !seen) { seen = 1; next }
			if (!seen || d <= base) { flush(); mode = ""; if (seen) havecaps = 1 }
			else if (d == base + 2) { flush() }
			else if (d == base + 3) { nel++; if (nel == 1) oid = val
				else if (type == "INTEGER") par = val }
			else if (d == base + 4) inhash = (type == "cont [ 0 ]")
			else if (d == base + 6 && inhash && type == "OBJECT" && hash == "") hash = val
			if (mode == "caps") next
		}
		if (mode == "pref") {
			if (d == base && type == "SET" && !seen) { seen = 1; next }
			if (!seen || d <= base) mode = ""
			else { if (d == base + 2 && type == "INTEGER" && serial == "") serial = val; next }
		}
		if (type == "OBJECT" && val == "S/MIME Capabilities" && !havecaps) {
			mode = "caps"; base = d; seen = 0; caps = ""; ncap = 0; oid = "" }
		else if (type == "OBJECT" && val == "id-smime-aa-encrypKeyPref" && serial == "") {
			mode = "pref"; base = d; seen = 0 }
	}
	END {
		if (mode == "caps") { flush(); havecaps = 1 }
		print "capabilities: " (havecaps ? caps : "-")
		print "key_preference_serial: " (serial == "" ? "-" : serial)
	}'
}

# cert_by_serial DER SERIALHEX: SHA-256 of the CMS certificate with that serial.
cert_by_serial() {
	openssl pkcs7 -inform DER -in "$1" -print_certs 2>/dev/null |
	    awk -v d="$T/c" '/BEGIN CERT/ { f = sprintf("%s%03d.pem", d, ++k) } f { print > f } /END CERT/ { close(f); f = "" }'
	for c in "$T"/c*.pem; do
		[ -f "$c" ] || continue
		s=$(openssl x509 -in "$c" -noout -serial | sed 's/^serial=//')
		if [ "$s" = "$2" ]; then sha256_of_cert "$c"; fi
	done | sort -u	# NSS carries the signer twice when it is also the preference
	rm -f "$T"/c*.pem
}
certs_in() {
	openssl pkcs7 -inform DER -in "$1" -print_certs 2>/dev/null |
	    awk -v d="$T/c" '/BEGIN CERT/ { f = sprintf("%s%03d.pem", d, ++k) } f { print > f } /END CERT/ { close(f); f = "" }'
	for c in "$T"/c*.pem; do [ -f "$c" ] && sha256_of_cert "$c"; done
	rm -f "$T"/c*.pem
}
# verify ENTITY OPTIONS...: openssl cms -verify. Not -binary: OpenSSL 3.0's
# S/MIME reader then changes the signed part's line ends; the canonical
# (CRLF) text mode is what S/MIME specifies, and the fixtures are CRLF.
verify() {
	v=$1
	shift
	openssl cms -verify -in "$v" -out /dev/null -purpose smimesign "$@" >"$T/verify.out" 2>&1
}

for f in "$O"/*.eml; do
	b=${f##*/}
	grep -q "^${b%.eml}	" "$O/index.txt" || not_ok "${b%.eml}: not in index.txt"
done

while IFS='	' read -r name peer form _keytype; do
	e=$O/$name.expect
	m=$O/$name.eml
	if [ ! -f "$m" ] || [ ! -f "$e" ]; then not_ok "$name: .eml and .expect exist"; continue; fi
	status=$(field "$e" status)
	if [ -n "$(awk '!/\r$/ { print NR; exit }' "$m")" ]; then not_ok "$name: CRLF line ends"; fi
	have_entity=yes
	signed_entity "$m" >"$T/entity" || have_entity=no
	have_cms=no
	if [ $have_entity = yes ] && openssl cms -cmsout -in "$T/entity" -outform DER -out "$T/cms.der" >/dev/null 2>&1; then
		have_cms=yes
	fi
	case $status in
	trusted|expired|untrusted-chain)
		[ $have_cms = yes ] || { not_ok "$name ($peer $form): no CMS found"; continue; }
		case $status in
		trusted)
			if verify "$T/entity" -CAfile "$O/ca.pem"; then ok "$name: trusted: verifies with ca.pem"
			else not_ok "$name: trusted: verifies with ca.pem"; sed 's/^/#   /' "$T/verify.out" | head -5; fi ;;
		expired)
			if verify "$T/entity" -CAfile "$O/ca.pem"; then not_ok "$name: expired: fails with ca.pem"
			elif grep -q 'certificate has expired' "$T/verify.out"; then ok "$name: expired: fails with ca.pem (certificate has expired)"
			else not_ok "$name: expired: fails for expiry"; sed 's/^/#   /' "$T/verify.out" | head -5; fi
			if verify "$T/entity" -CAfile "$O/ca.pem" -no_check_time; then ok "$name: expired: verifies without the time check"
			else not_ok "$name: expired: verifies without the time check"; fi ;;
		untrusted-chain)
			if verify "$T/entity" -CAfile "$O/ca.pem"; then not_ok "$name: untrusted-chain: fails with ca.pem"
			else ok "$name: untrusted-chain: fails with ca.pem ($(grep -o 'Verify error:.*' "$T/verify.out" | head -1))"; fi ;;
		esac
		if verify "$T/entity" -noverify -signer "$T/signer.pem"; then
			ok "$name: signature verifies (-noverify)"
			check "$name: signer_sha256" "$(field "$e" signer_sha256)" "$(sha256_of_cert "$T/signer.pem")"
			check "$name: addresses" "$(field "$e" address)" "$(emails_of_cert "$T/signer.pem")"
		else
			not_ok "$name: signature verifies (-noverify)"
		fi
		asn1_attrs "$T/cms.der" >"$T/attrs"
		check "$name: capabilities (asn1parse)" "$(field "$e" capabilities)" "$(field "$T/attrs" capabilities)"
		serial=$(field "$T/attrs" key_preference_serial)
		if [ "$serial" = - ]; then kp=-; else kp=$(cert_by_serial "$T/cms.der" "$serial"); fi
		check "$name: key_preference (asn1parse)" "$(field "$e" key_preference)" "$kp"
		;;
	bad-signature)
		[ $have_cms = yes ] || { not_ok "$name: bad-signature: the CMS parses"; continue; }
		if verify "$T/entity" -noverify; then not_ok "$name: bad-signature: fails even with -noverify"
		else ok "$name: bad-signature: fails even with -noverify ($(grep -o -i -m1 'content verify error\|digest failure\|signature failure' "$T/verify.out" | head -1))"; fi
		want=$(field "$e" signer_sha256)
		if certs_in "$T/cms.der" | grep -qx "$want"; then ok "$name: the CMS carries the signer $want"
		else not_ok "$name: the CMS carries the signer $want"; fi
		grep -q '^capabilities:' "$e" && not_ok "$name: no capabilities line for bad-signature"
		;;
	none)
		case $form in
		unsigned)
			if [ $have_entity = no ]; then ok "$name: none: no signed entity"
			else not_ok "$name: none: no signed entity"; fi ;;
		garbage-signature|truncated-cms)
			if [ $have_entity = yes ] && [ $have_cms = no ]; then ok "$name: none: signature part present, no CMS parses"
			else not_ok "$name: none: signature part present, no CMS parses"; fi ;;
		nested-*)
			depth=$(awk 'tolower($0) ~ /^content-type: *multipart\/mixed/ { n++ } END { print n + 0 }' "$m")
			if [ "$depth" -gt 20 ]; then ok "$name: none: signed part below $depth multipart levels (limit 20)"
			else not_ok "$name: none: nested deeper than 20 (found $depth)"; fi
			if [ $have_cms = yes ] && verify "$T/entity" -CAfile "$O/ca.pem"; then
				ok "$name: the deep signature itself is valid"
			else not_ok "$name: the deep signature itself is valid"; fi ;;
		*) not_ok "$name: status none for unknown form $form" ;;
		esac
		if [ "$(grep -c . "$e")" = 1 ]; then ok "$name: .expect is the status line only"
		else not_ok "$name: .expect is the status line only"; fi
		;;
	*) not_ok "$name: unknown status '$status'" ;;
	esac
done <"$O/index.txt"

echo "1..$n"
[ $failed -eq 0 ] || { echo "# $failed of $n checks failed" >&2; exit 1; }
exit 0
