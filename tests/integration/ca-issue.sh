#!/bin/sh
# The internal CA made by kmsctl init issues S/MIME certificates that the
# real OpenSSL verifier accepts for their purpose: encryption certificates
# for smimeencrypt, signing certificates for smimesign, for RSA and P-256
# subject keys under an RSA-3072 root and under a P-256 root.
. "$top_srcdir/tests/lib.sh"
pg_start
"$PG_BINDIR/createdb" -h "$PGSOCK" -U kmsdba kms_ec || bail "createdb failed"
write_password "$T/pw" 'ca issue test password'

write_config "$T/rsa.conf" "$(printf '[ca]\nsubject = CN=Example KMS CA, O=Example Org\ncrl_url = http://pki.example.org/kms.crl')"
DSN="host=$PGSOCK dbname=kms_ec user=kmsdba"
write_config "$T/ec.conf" "$(printf '[ca]\nkey_type = p256\ncrl_url = http://pki.example.org/ec.crl')"

for ca in rsa ec; do
	check "$ca: kmsctl init" "$KMSCTL" -c "$T/$ca.conf" init --password-file "$T/pw"
	check "$ca: kmsctl ca show --pem" "$KMSCTL" -c "$T/$ca.conf" ca show --pem
	cp "$T/out" "$T/$ca-ca.pem"
	check "$ca: the CA certificate is self-signed and verifies" openssl verify -CAfile "$T/$ca-ca.pem" "$T/$ca-ca.pem"
	check "$ca: kmsctl ca show --json" "$KMSCTL" -c "$T/$ca.conf" ca show --json
	check "$ca: JSON names an active CA with a 64-hex fingerprint" python3 -c '
import json,sys,re; d=json.load(open(sys.argv[1]))
assert d["status"]=="active", d
assert re.fullmatch("[0-9a-f]{64}", d["certificate"]["sha256"]), d' "$T/out"
done
like "$T/rsa-ca.pem" "BEGIN CERTIFICATE" "the RSA CA PEM is a certificate"
openssl x509 -in "$T/rsa-ca.pem" -noout -subject -nameopt RFC2253 >"$T/subj"
like "$T/subj" "^subject=CN=Example KMS CA,O=Example Org$" "the configured subject is used (RFC 4514 order)"
openssl x509 -in "$T/ec-ca.pem" -noout -text >"$T/ec-ca.txt"
like "$T/ec-ca.txt" "ASN1 OID: prime256v1" "[ca] key_type = p256 gives a P-256 CA"

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/rsa-user.key" 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T/ec-user.key" 2>/dev/null
for k in rsa ec; do openssl pkey -in "$T/$k-user.key" -pubout -out "$T/$k-user.pub"; done

for ca in rsa ec; do
	for k in rsa ec; do
		for prof in encryption signing; do
			tag="$ca CA, $k key, $prof"
			check "$tag: issued" "$VAULTTOOL" -c "$T/$ca.conf" -p "$T/pw" issue "$prof" "user-$k@example.org" "$T/$k-user.pub"
			cp "$T/out" "$T/cert.pem"
			if [ $prof = encryption ]; then purpose=smimeencrypt; other=smimesign; else purpose=smimesign; other=smimeencrypt; fi
			openssl x509 -in "$T/cert.pem" -noout -text >"$T/cert.txt"
			if [ $k = ec ] && [ $prof = encryption ]; then
				# RFC 5480 allows keyAgreement, not keyEncipherment, on EC keys;
				# OpenSSL's smimeencrypt purpose insists on keyEncipherment, so
				# it refuses a correct EC encryption certificate. Show that fact,
				# then show the certificate works: chain verifies, CMS round trip.
				like "$T/cert.txt" "Key Agreement" "$tag: keyUsage keyAgreement (RFC 5480)"
				unlike "$T/cert.txt" "Key Encipherment" "$tag: no keyEncipherment on an EC key"
				expect_exit 2 "$tag: openssl's smimeencrypt purpose refuses keyAgreement-only EC certificates" openssl verify -purpose "$purpose" -CAfile "$T/$ca-ca.pem" "$T/cert.pem"
				check "$tag: the chain verifies" openssl verify -CAfile "$T/$ca-ca.pem" "$T/cert.pem"
			else
				check "$tag: openssl verify -purpose $purpose" openssl verify -purpose "$purpose" -CAfile "$T/$ca-ca.pem" "$T/cert.pem"
			fi
			expect_exit 2 "$tag: openssl verify -purpose $other refuses it" openssl verify -purpose "$other" -CAfile "$T/$ca-ca.pem" "$T/cert.pem"
			if [ $prof = encryption ]; then
				printf 'secret for %s\n' "$k" >"$T/msg.txt"
				openssl cms -encrypt -binary -aes256 -in "$T/msg.txt" -out "$T/msg.p7m" "$T/cert.pem" 2>"$T/cms.err"
				check "$tag: openssl cms decrypts a message encrypted to it" openssl cms -decrypt -in "$T/msg.p7m" -recip "$T/cert.pem" -inkey "$T/$k-user.key" -out "$T/msg.out"
				check "$tag: the decrypted text is the original" cmp "$T/msg.txt" "$T/msg.out"
			else
				printf 'signed by %s\n' "$k" >"$T/msg.txt"
				openssl cms -sign -in "$T/msg.txt" -signer "$T/cert.pem" -inkey "$T/$k-user.key" -out "$T/msg.p7s" 2>"$T/cms.err"
				check "$tag: openssl cms -verify -purpose smimesign accepts a signature" openssl cms -verify -purpose smimesign -CAfile "$T/$ca-ca.pem" -in "$T/msg.p7s" -out "$T/msg.out"
			fi
			like "$T/cert.txt" "email:user-$k@example.org" "$tag: SAN rfc822Name"
			like "$T/cert.txt" "E-mail Protection" "$tag: EKU emailProtection"
			like "$T/cert.txt" "URI:http://pki.example.org/$ca.crl|URI:http://pki.example.org/kms.crl" "$tag: CRL distribution point from the config"
			SERIAL=$(openssl x509 -in "$T/cert.pem" -noout -serial | cut -d= -f2)
			[ ${#SERIAL} -ge 16 ] && ok "$tag: serial has at least 64 bits ($SERIAL)" || not_ok "$tag: serial has at least 64 bits ($SERIAL)"
			echo "$SERIAL" >>"$T/serials"
		done
	done
done
is "$(sort "$T/serials" | uniq -d | wc -l)" 0 "all serials differ"
done_testing
