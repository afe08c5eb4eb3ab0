#!/bin/sh
# Subordinate CA: kmsctl init --ca-csr writes a request; a root made here
# with the openssl CLI signs it; kmsctl ca install checks the chain link by
# link (key, CA flags, names, signatures, validity) and names the bad link
# when it refuses; issued certificates then verify up to that root. A kmsd
# running across the install issues a waiting enrollment afterwards.
. "$top_srcdir/tests/lib.sh"
pg_start
CONF=$T/kms.conf
write_config "$CONF" "$(printf '[ca]\nsubject = CN=Example Issuing CA, O=Example\ncert_days = 365')"
write_password "$T/pw" 'subordinate test password'

cat >"$T/ca.ext" <<'EXT'
[ v3_ca ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EXT
mkroot() { # mkroot NAME SUBJECT DAYS
	openssl req -x509 -new -newkey rsa:3072 -nodes -keyout "$T/$1.key" -out "$T/$1.pem" \
		-subj "$2" -days "$3" -sha256 -extensions v3_ca -config "$T/ca.ext" 2>/dev/null ||
		bail "openssl could not make $1"
	# openssl req -x509 needs a distinguished_name section only with prompts
}
printf '[ req ]\ndistinguished_name = dn\n[ dn ]\n' >>"$T/ca.ext"
mkroot root "/O=Example/CN=Example Root CA" 7300
mkroot impostor "/O=Example/CN=Example Root CA" 7300
mkroot shortroot "/O=Example/CN=Short Root CA" 30
mkroot other "/O=Other/CN=Other Root CA" 7300

check "kmsctl init --ca-csr writes a request" "$KMSCTL" -c "$CONF" init --password-file "$T/pw" --ca-csr "$T/sub.csr"
like "$T/out" "kmsctl ca install" "init says what to do next"
check "the request is a valid PKCS#10 with its signature" openssl req -in "$T/sub.csr" -verify -noout
openssl req -in "$T/sub.csr" -noout -text >"$T/csr.txt"
like "$T/csr.txt" "CA:TRUE" "the request asks for CA:TRUE"
check "kmsctl status works while the CA is pending" "$KMSCTL" -c "$CONF" status
like "$T/out" "pending: waiting for kmsctl ca install" "status shows the CA pending"
expect_exit 1 "ca show --pem refuses while pending" "$KMSCTL" -c "$CONF" ca show --pem

sign() { # sign CSR CA OUT DAYS [copy]
	openssl x509 -req -in "$1" -CA "$T/$2.pem" -CAkey "$T/$2.key" -CAcreateserial -days "$4" \
		-sha256 -out "$3" ${5:+-copy_extensions copy} 2>/dev/null || bail "openssl could not sign with $2"
}
sign "$T/sub.csr" root "$T/sub.pem" 3650 copy
sign "$T/sub.csr" root "$T/sub-noca.pem" 3650
sign "$T/sub.csr" shortroot "$T/sub-short.pem" 3650 copy
openssl req -new -newkey rsa:2048 -nodes -keyout "$T/stranger.key" -subj "/CN=Stranger" -out "$T/stranger.csr" 2>/dev/null
sign "$T/stranger.csr" root "$T/stranger.pem" 3650

expect_exit 1 "a certificate for another key is refused" "$KMSCTL" -c "$CONF" ca install "$T/stranger.pem" "$T/root.pem"
like "$T/err" "public key is not" "and the error says it is not the CA key"
one_line "$T/err" "one line"
expect_exit 1 "a chain ending in an impostor root with the same name is refused" "$KMSCTL" -c "$CONF" ca install "$T/sub.pem" "$T/impostor.pem"
like "$T/err" "link 1.*signature" "and the error names link 1 and the signature"
expect_exit 1 "a chain with an unrelated root is refused" "$KMSCTL" -c "$CONF" ca install "$T/sub.pem" "$T/other.pem"
like "$T/err" "link 1.*(issuer|name)" "and the error names link 1 and the names"
expect_exit 1 "a signed certificate without CA:TRUE is refused" "$KMSCTL" -c "$CONF" ca install "$T/sub-noca.pem" "$T/root.pem"
like "$T/err" "CA" "and the error says it is not a CA"
expect_exit 1 "a root expiring before user certificates would is refused" "$KMSCTL" -c "$CONF" ca install "$T/sub-short.pem" "$T/shortroot.pem"
like "$T/err" "link 2 \(CN=Short Root CA" "and the error names link 2, the short root"
like "$T/err" "365" "and mentions the configured certificate lifetime"
expect_exit 1 "a chain that stops before a self-signed root is refused" "$KMSCTL" -c "$CONF" ca install "$T/sub.pem"
expect_exit 1 "a file without a certificate is refused" "$KMSCTL" -c "$CONF" ca install "$T/sub.csr"
like "$T/err" "sub.csr" "and names the file"

# --- kmsd running across the install: an enrollment waits while the CA is
# pending and is issued by the installed CA without a restart (kmsd keeps
# the CA it loaded until the CA's row changes)
start_sink mail
printf '[mail]\nsubmit = smtp://127.0.0.1:%s\nfrom = kms@example.org\n' "$PORT" >>"$CONF"
kmsd_config "$CONF" "$T/pw"
TOK=$("$KMSCTL" -c "$CONF" enroll --deliver out-of-band carol@example.org 2>"$T/tok.err" | sed -n 's/^Token: //p')
[ -n "$TOK" ] || bail "no token for carol: $(cat "$T/tok.err")"
RID=$("$VAULTTOOL" -c "$CONF" -p "$T/pw" queue-reply carol@example.org "$TOK") || bail "queue-reply failed"
"$KMSD" -c "$CONF" -f 2>"$T/kmsd.log" &
KPID=$!; bg_pids="$bg_pids $KPID"
# prints SQL WANT: the query prints WANT
prints() { [ "$(psql_kms "$1")" = "$2" ]; }
wait_for 30 prints "SELECT attempts >= 2 FROM requests WHERE id = ${RID:-0}" t
is "$(psql_kms "SELECT status FROM requests WHERE id = ${RID:-0}")" queued \
	"while the CA is pending, kmsd leaves the enrollment queued (tried twice)"
like "$T/kmsd.log" "no active CA" "  ... and says why"

check "the right chain is installed" "$KMSCTL" -c "$CONF" ca install "$T/sub.pem" "$T/root.pem"
like "$T/out" "installed with a chain of 1 certificate" "install confirms"
wait_for 30 prints "SELECT status FROM requests WHERE id = ${RID:-0}" done
is "$(psql_kms "SELECT status FROM requests WHERE id = ${RID:-0}")" done \
	"after the install the same kmsd issues it (no restart)"
psql_kms "SELECT encode(c.der, 'hex') FROM certificates c JOIN users u ON u.id = c.user_id
	WHERE lower(u.address) = 'carol@example.org' AND c.usage = 'encryption'" | xxd -r -p >"$T/carol.der"
openssl x509 -inform DER -in "$T/carol.der" -out "$T/carol.pem" 2>/dev/null
check "carol's certificate verifies to the root through the subordinate CA" \
	openssl verify -purpose smimeencrypt -CAfile "$T/root.pem" -untrusted "$T/sub.pem" "$T/carol.pem"
kill -TERM "$KPID"; wait "$KPID"; rc=$?
is "$rc" 0 "kmsd stops cleanly"
check "status shows the CA active" "$KMSCTL" -c "$CONF" status --json
check "JSON: active subordinate CA" python3 -c '
import json,sys; d=json.load(open(sys.argv[1]))["ca"]; assert d["status"]=="active" and d["days_left"]>=365, d' "$T/out"
check "ca show --pem prints the chain" "$KMSCTL" -c "$CONF" ca show --pem
is "$(grep -c 'BEGIN CERTIFICATE' "$T/out")" 2 "two certificates: the subordinate CA and the root"
expect_exit 1 "a second install is refused" "$KMSCTL" -c "$CONF" ca install "$T/sub.pem" "$T/root.pem"
like "$T/err" "no subordinate CA request is pending" "and says why"

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/user.key" 2>/dev/null
openssl pkey -in "$T/user.key" -pubout -out "$T/user.pub"
for prof in encryption signing; do
	[ $prof = encryption ] && purpose=smimeencrypt || purpose=smimesign
	check "a $prof certificate is issued by the subordinate CA" "$VAULTTOOL" -c "$CONF" -p "$T/pw" issue $prof dave@example.org "$T/user.pub"
	cp "$T/out" "$T/user-$prof.pem"
	check "it verifies to the external root (-purpose $purpose)" openssl verify -purpose $purpose -CAfile "$T/root.pem" -untrusted "$T/sub.pem" "$T/user-$prof.pem"
	expect_exit 2 "it does not verify against the impostor root" openssl verify -purpose $purpose -CAfile "$T/impostor.pem" -untrusted "$T/sub.pem" "$T/user-$prof.pem"
done
done_testing
