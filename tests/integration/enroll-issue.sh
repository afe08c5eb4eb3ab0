#!/bin/sh
# kmsd issues: an accepted reply (queued by `vaulttool queue-reply`, which
# does what kmsmilter does) makes kmsd generate and escrow the encryption
# key, issue the certificates and mail a PKCS#12 to the enrolled address
# through a real SMTP server (Postfix's smtp-sink). The file is opened with
# openssl, NSS's pk12util (modern profile) and gpgsm (legacy profile); a
# CSR's signing key and an ephemeral signing key are nowhere in a dump;
# re-enrollment keeps the key history and recovery returns all of it; PIN
# mode; kmsd killed while issuing; two kmsd on one queue.
. "$top_srcdir/tests/lib.sh"
[ -x /usr/sbin/smtp-sink ] || bail "smtp-sink not found: install postfix (contrib/install-deps.sh does)"
pg_start
start_sink mail
CONF=$T/kms.conf
write_password "$T/pw" 'issue test password'

# mkconf [ENROLLMENT-LINES...]: the configuration with those [enrollment] keys
mkconf() {
	write_config "$CONF" "$(printf '[mail]\nsubmit = smtp://127.0.0.1:%s\nfrom = kms@example.org\n[ca]\ncrl_url = http://pki.example.org/kms.crl\n[enrollment]\n' "$PORT"; printf '%s\n' "$@")"
	kmsd_config "$CONF" "$T/pw"
}
mkconf "key_type = rsa2048"
"$KMSCTL" -c "$CONF" init --password-file "$T/pw" >/dev/null || bail "init failed"
"$KMSCTL" -c "$CONF" ca show --pem >"$T/ca.pem" || bail "ca show failed"

KPIDS=
start_kmsd() { # start_kmsd LOG
	"$KMSD" -c "$CONF" -f 2>>"$1" &
	KPIDS="$KPIDS $!"; bg_pids="$bg_pids $!"
}
stop_kmsd() { # exit status 0 also means no sanitizer report in ASan builds
	local p rc
	for p in $KPIDS; do
		kill -TERM "$p" 2>/dev/null; wait "$p" 2>/dev/null; rc=$?
		is "$rc" 0 "kmsd stops cleanly (exit 0)"
	done
	KPIDS=
}
req_status() { psql_kms "SELECT status FROM requests WHERE id = $1"; }
req_finished() { s=$(req_status "$1"); [ "$s" = done ] || [ "$s" = failed ]; }
# token ADDR [recover]: a fresh out-of-band token for ADDR
token() {
	"$KMSCTL" -c "$CONF" ${2:-enroll} --deliver out-of-band "$1" >"$T/tok.out" 2>"$T/tok.err" || { cat "$T/tok.err" >&2; return 1; }
	sed -n 's/^Token: //p' "$T/tok.out"
}
# reply ADDR TOKEN [CSR]: what kmsmilter does with an accepted reply
reply() { "$VAULTTOOL" -c "$CONF" -p "$T/pw" queue-reply "$@"; }
# p12_mail ADDR SUBJECT-RE: the newest mail (by mtime: smtp-sink names files by the
# second) to ADDR whose subject matches
p12_mail() { grep -l -i "^To: $1" "$T"/mail/* 2>/dev/null | xargs -r grep -l "^Subject: $2" | xargs -r ls -t | head -1; }
p12_count() { grep -l -i "^To: $1" "$T"/mail/* 2>/dev/null | xargs -r grep -l "^Subject: $2" | wc -l; }
# extract MAIL OUT: the application/pkcs12 part; prints its file name
extract() {
	python3 - "$1" "$2" <<'EOF'
import email, sys
from email import policy
m = email.message_from_binary_file(open(sys.argv[1], 'rb'), policy=policy.default)
parts = [p for p in m.walk() if p.get_content_type() == 'application/pkcs12']
assert len(parts) == 1, 'want one application/pkcs12 part, got %d' % len(parts)
open(sys.argv[2], 'wb').write(parts[0].get_payload(decode=True))
print(parts[0].get_filename())
EOF
}
pubkey_of_key() { openssl pkey -in "$1" -pubout 2>/dev/null; }
pubkey_of_cert() { openssl x509 -in "$1" -noout -pubkey 2>/dev/null; }
# split_pem FILE PREFIX: PREFIX1.pem, PREFIX2.pem... one PEM block each
split_pem() { awk -v p="$2" '/-----BEGIN/{n++} n{print > (p n ".pem")}' "$1"; }
# hex of the RSA private exponent of KEY, lower case, no leading zeros
priv_exponent() {
	openssl pkey -in "$1" -noout -text 2>/dev/null |
	    awk '/^privateExponent:/{on=1; next} /^[a-zA-Z]/{on=0} on' | tr -d ' :\n' | sed 's/^0*//'
}
der_hex() { openssl pkey -in "$1" -outform DER 2>/dev/null | od -An -v -tx1 | tr -d ' \n'; }
dump() { "$PG_BINDIR/pg_dump" -h "$PGSOCK" -U kmsdba --data-only kms >"$T/dump.sql"; }
not_in_dump() { # not_in_dump HEX DESC
	if [ ${#1} -lt 64 ]; then not_ok "$2 (no key material to look for)"; return; fi
	if grep -qi -- "$1" "$T/dump.sql"; then not_ok "$2"; else ok "$2"; fi
}

# --- enrollment, modern profile ----------------------------------------------
TOK=$(token alice@example.org)
[ -n "$TOK" ] || bail "no token for alice"
RID=$(reply alice@example.org "$TOK") || bail "queue-reply failed"
# the reply came from someone else: the PKCS#12 must still go to alice
psql_kms "UPDATE requests SET payload = jsonb_set(payload, '{reply_from}', '\"mallory@evil.example\"') WHERE id = $RID"
is "$(psql_kms "SELECT t.status FROM tokens t JOIN users u ON u.id = t.user_id WHERE u.address = 'alice@example.org'")" used "queue-reply marks the token used"
start_kmsd "$T/kmsd.log"
wait_for 60 req_finished "$RID"
is "$(req_status "$RID")" done "kmsd does the enroll request"
F=$(p12_mail alice@example.org "Your S/MIME key and certificates")
[ -n "$F" ] && ok "a PKCS#12 mail to the enrolled address" || bail "no PKCS#12 mail to alice: $(tail -5 "$T/kmsd.log")"
is "$(grep -l -i '^To: mallory' "$T"/mail/* 2>/dev/null | wc -l)" 0 "nothing goes to the reply's sender"
like "$F" "^From: kms@example.org" "From is [mail] from"
is "$(extract "$F" "$T/alice.p12")" "smime-alice@example.org.p12" "attachment smime-ADDRESS.p12 of type application/pkcs12"
like "$F" "protected with a password: the token of your reply" "the mail says the password is the token"
like "$F" "gpgsm --import" "the mail has import instructions"
check "openssl opens the PKCS#12 with the token" openssl pkcs12 -in "$T/alice.p12" -passin "pass:$TOK" -nodes -info -out "$T/alice.pem"
like "$T/err" "PKCS7 Encrypted data: PBES2, PBKDF2, AES-256-CBC" "modern profile: PBES2 with AES-256-CBC"
like "$T/alice.pem" "friendlyName: alice@example.org \(encryption [0-9]{4}-[0-9]{2}-[0-9]{2}\)" "friendly name names address, usage and date"
expect_exit 1 "a wrong password does not open it" openssl pkcs12 -in "$T/alice.p12" -passin "pass:$(echo "$TOK" | tr -d -)" -nodes -out /dev/null
openssl pkcs12 -in "$T/alice.p12" -passin "pass:$TOK" -nocerts -nodes -out "$T/alice.key" 2>/dev/null
openssl pkcs12 -in "$T/alice.p12" -passin "pass:$TOK" -clcerts -nokeys -out "$T/alice.crt" 2>/dev/null
openssl pkcs12 -in "$T/alice.p12" -passin "pass:$TOK" -cacerts -nokeys -out "$T/alice-ca.pem" 2>/dev/null
is "$(grep -c 'BEGIN PRIVATE KEY' "$T/alice.key")" 1 "one key (signing_key = none)"
is "$(pubkey_of_key "$T/alice.key")" "$(pubkey_of_cert "$T/alice.crt")" "the key matches the encryption certificate"
check "the certificate verifies to the CA for smimeencrypt" openssl verify -purpose smimeencrypt -CAfile "$T/ca.pem" "$T/alice.crt"
check "the CA certificate is in the file" cmp "$(openssl x509 -in "$T/ca.pem" -outform DER | od -An -tx1 >"$T/a"; echo "$T/a")" "$(openssl x509 -in "$T/alice-ca.pem" -outform DER | od -An -tx1 >"$T/b"; echo "$T/b")"
openssl x509 -in "$T/alice.crt" -noout -text >"$T/alice.txt"
like "$T/alice.txt" "URI:http://pki.example.org/kms.crl" "CRL distribution point from [ca] crl_url"
like "$T/alice.txt" "email:alice@example.org" "SAN is the enrolled address"
like "$T/alice.txt" "Public-Key: \(2048 bit\)" "[enrollment] key_type = rsa2048"
like "$T/kmsd.log" "request $RID: generating rsa2048 encryption key for alice@example.org" "kmsd logs the key generation"
unlike "$T/kmsd.log" "$TOK" "the token is not in kmsd's log"
is "$(psql_kms "SELECT count(*) FROM certificates c JOIN users u ON u.id = c.user_id WHERE u.address = 'alice@example.org' AND c.source = 'issued' AND c.usage = 'encryption' AND c.status = 'valid'")" 1 "the encryption certificate is recorded"
is "$(psql_kms "SELECT c.sha256 FROM certificates c JOIN users u ON u.id = c.user_id WHERE u.address = 'alice@example.org'")" "$(openssl x509 -in "$T/alice.crt" -outform DER | sha256sum | cut -d' ' -f1)" "the recorded certificate is the mailed one"
ROW=$(psql_kms "SELECT e.id FROM escrowed_keys e JOIN users u ON u.id = e.user_id JOIN certificates c ON c.id = e.certificate_id WHERE u.address = 'alice@example.org' AND e.key_type = 'rsa2048'")
[ -n "$ROW" ] && ok "the key is escrowed with its certificate" || not_ok "the key is escrowed with its certificate"
check "the escrowed key opens" "$VAULTTOOL" -c "$CONF" -p "$T/pw" recover "${ROW:-0}"
cp "$T/out" "$T/alice-escrow.key"
is "$(der_hex "$T/alice-escrow.key")" "$(der_hex "$T/alice.key")" "the escrowed key is the key in the PKCS#12"
is "$(psql_kms "SELECT count(*) FROM requests WHERE id = $RID AND NOT payload ? 'sealed_password'")" 1 "the sealed password is dropped from the done request"
dump
CERTHEX=$(openssl x509 -in "$T/alice.crt" -outform DER | od -An -v -tx1 | tr -d ' \n')
grep -qi -- "$CERTHEX" "$T/dump.sql" && ok "control: the dump search finds the certificate's DER" || not_ok "control: the dump search finds the certificate's DER"
not_in_dump "$(priv_exponent "$T/alice.key")" "the encryption key's private exponent is not in a dump (only sealed)"
mkdir "$T/nss"
certutil -N -d "sql:$T/nss" --empty-password >/dev/null 2>&1
check "NSS pk12util imports the modern profile" pk12util -i "$T/alice.p12" -d "sql:$T/nss" -W "$TOK" -K ""
like "$T/out" "PKCS12 IMPORT SUCCESSFUL" "pk12util: import successful"
certutil -K -d "sql:$T/nss" >"$T/nsskeys" 2>&1
like "$T/nsskeys" "rsa .*alice@example.org \(encryption" "certutil -K lists alice's encryption key"

# --- legacy profile: gpgsm ----------------------------------------------------
stop_kmsd
mkconf "key_type = rsa2048" "p12_profile = legacy"
start_kmsd "$T/kmsd.log"
TOK=$(token bob@example.org)
RID=$(reply bob@example.org "$TOK")
wait_for 60 req_finished "$RID"
is "$(req_status "$RID")" done "legacy: the request is done"
extract "$(p12_mail bob@example.org "Your S/MIME key and certificates")" "$T/bob.p12" >/dev/null
check "legacy: openssl opens it" openssl pkcs12 -legacy -in "$T/bob.p12" -passin "pass:$TOK" -nodes -info -out /dev/null
like "$T/err" "pbeWithSHA1And3-KeyTripleDES-CBC" "legacy: 3DES with SHA-1"
if command -v gpgsm >/dev/null && command -v gpgconf >/dev/null; then
	mkdir -m 700 "$T/gh"
	echo allow-loopback-pinentry >"$T/gh/gpg-agent.conf"
	printf '%s\n' "$TOK" >"$T/bob.pw"
	check "gpgsm imports the legacy profile" env GNUPGHOME="$T/gh" timeout 120 gpgsm --batch --pinentry-mode loopback --passphrase-fd 0 --disable-dirmngr --import "$T/bob.p12" <"$T/bob.pw"
	like "$T/err" "secret keys imported: 1" "gpgsm: one secret key imported"
	env GNUPGHOME="$T/gh" gpgsm --batch --with-colons --list-secret-keys >"$T/gsk" 2>&1
	like "$T/gsk" "bob@example.org" "gpgsm lists bob's secret key"
	env GNUPGHOME="$T/gh" gpgconf --kill all 2>/dev/null
else
	ok "# SKIP gpgsm not installed"
fi

# --- a CSR for the signing key --------------------------------------------------
openssl req -new -newkey rsa:2048 -nodes -keyout "$T/carol-sign.key" -subj "/CN=whatever" -outform DER -out "$T/carol.csr" 2>/dev/null
TOK=$(token carol@example.org)
RID=$(reply carol@example.org "$TOK" "$T/carol.csr")
wait_for 60 req_finished "$RID"
is "$(req_status "$RID")" done "CSR: the request is done"
extract "$(p12_mail carol@example.org "Your S/MIME key and certificates")" "$T/carol.p12" >/dev/null
openssl pkcs12 -legacy -in "$T/carol.p12" -passin "pass:$TOK" -nocerts -nodes -out "$T/carol.key" 2>/dev/null
openssl pkcs12 -legacy -in "$T/carol.p12" -passin "pass:$TOK" -nokeys -out "$T/carol-certs.pem" 2>/dev/null
is "$(grep -c 'BEGIN PRIVATE KEY' "$T/carol.key")" 1 "CSR: only the encryption key is in the file"
split_pem "$T/carol-certs.pem" "$T/cc"
CSRPUB=$(openssl req -in "$T/carol.csr" -inform DER -pubkey -noout)
SIGN=
for c in "$T"/cc*.pem; do
	[ "$(pubkey_of_cert "$c")" = "$CSRPUB" ] && SIGN=$c
done
[ -n "$SIGN" ] && ok "CSR: a certificate for the CSR's public key is in the file" || not_ok "CSR: a certificate for the CSR's public key is in the file"
check "CSR: it verifies to the CA for smimesign" openssl verify -purpose smimesign -CAfile "$T/ca.pem" "${SIGN:-/dev/null}"
openssl x509 -in "${SIGN:-/dev/null}" -noout -text >"$T/sign.txt" 2>&1
like "$T/sign.txt" "email:carol@example.org" "CSR: the certificate names the enrolled address, not the CSR's subject"
unlike "$T/sign.txt" "whatever" "CSR: the CSR's subject is ignored"
is "$(psql_kms "SELECT count(*) FROM certificates c JOIN users u ON u.id = c.user_id WHERE u.address = 'carol@example.org' AND c.usage = 'signing'")" 1 "CSR: the signing certificate is recorded"
is "$(psql_kms "SELECT count(*) FROM escrowed_keys e JOIN users u ON u.id = e.user_id WHERE u.address = 'carol@example.org'")" 1 "CSR: only the encryption key is escrowed"

# --- ephemeral signing key ----------------------------------------------------------
stop_kmsd
mkconf "key_type = rsa2048" "signing_key = ephemeral"
start_kmsd "$T/kmsd.log"
TOK=$(token dave@example.org)
RID=$(reply dave@example.org "$TOK")
wait_for 60 req_finished "$RID"
is "$(req_status "$RID")" done "ephemeral: the request is done"
F=$(p12_mail dave@example.org "Your S/MIME key and certificates")
extract "$F" "$T/dave.p12" >/dev/null
like "$F" "the service keeps no copy of" "ephemeral: the mail says the signing key is not kept"
openssl pkcs12 -in "$T/dave.p12" -passin "pass:$TOK" -nocerts -nodes -out "$T/dave-keys.pem" 2>/dev/null
openssl pkcs12 -in "$T/dave.p12" -passin "pass:$TOK" -clcerts -nokeys -out "$T/dave-certs.pem" 2>/dev/null
is "$(grep -c 'BEGIN PRIVATE KEY' "$T/dave-keys.pem")" 2 "ephemeral: two keys in the file"
split_pem "$T/dave-keys.pem" "$T/dk"
split_pem "$T/dave-certs.pem" "$T/dc"
for c in "$T"/dc*.pem; do
	if openssl x509 -in "$c" -noout -ext keyUsage 2>/dev/null | grep -q "Digital Signature"; then DSIGN=$c; else DENC=$c; fi
done
for k in "$T"/dk*.pem; do
	[ "$(pubkey_of_key "$k")" = "$(pubkey_of_cert "${DSIGN:-/dev/null}")" ] && DSKEY=$k
	[ "$(pubkey_of_key "$k")" = "$(pubkey_of_cert "${DENC:-/dev/null}")" ] && DEKEY=$k
done
[ -n "${DSKEY:-}" ] && ok "ephemeral: the signing key matches the signing certificate" || not_ok "ephemeral: the signing key matches the signing certificate"
[ "${DEKEY:-}" = "$T/dk1.pem" ] && ok "ephemeral: the encryption key comes first" || not_ok "ephemeral: the encryption key comes first (${DEKEY:-none})"
check "ephemeral: the signing certificate verifies for smimesign" openssl verify -purpose smimesign -CAfile "$T/ca.pem" "${DSIGN:-/dev/null}"
is "$(psql_kms "SELECT count(*) FROM escrowed_keys e JOIN users u ON u.id = e.user_id WHERE u.address = 'dave@example.org'")" 1 "ephemeral: only the encryption key is escrowed"
dump
not_in_dump "$(priv_exponent "${DSKEY:-/dev/null}")" "ephemeral: the signing key's private exponent is in no table"
not_in_dump "$(der_hex "${DSKEY:-/dev/null}")" "ephemeral: the signing key's DER is in no table"
not_in_dump "$(priv_exponent "$T/carol-sign.key")" "CSR: the signing key's private exponent is in no table"
not_in_dump "$(der_hex "$T/carol-sign.key")" "CSR: the signing key's DER is in no table"
not_in_dump "$(priv_exponent "${DEKEY:-/dev/null}")" "ephemeral: the encryption key's private exponent is not in clear either"

# --- re-enrollment keeps the history; recovery returns all of it ----------------------
printf 'old secret\n' >"$T/old.txt"
openssl cms -encrypt -binary -aes256 -in "$T/old.txt" -out "$T/old.p7m" "$T/alice.crt" 2>/dev/null
stop_kmsd
mkconf "key_type = rsa2048"
start_kmsd "$T/kmsd.log"
TOK=$(token alice@example.org)
RID=$(reply alice@example.org "$TOK")
wait_for 60 req_finished "$RID"
is "$(req_status "$RID")" done "re-enrollment is done"
is "$(psql_kms "SELECT count(*) FROM escrowed_keys e JOIN users u ON u.id = e.user_id WHERE u.address = 'alice@example.org' AND e.certificate_id IS NOT NULL")" 2 "re-enrollment: two escrowed keys (history kept)"
is "$(p12_count alice@example.org "Your S/MIME key and certificates")" 2 "re-enrollment: a second PKCS#12 mail"
extract "$(p12_mail alice@example.org "Your S/MIME key and certificates")" "$T/alice2.p12" >/dev/null
openssl pkcs12 -in "$T/alice2.p12" -passin "pass:$TOK" -clcerts -nokeys -out "$T/alice2.crt" 2>/dev/null

check "kmsctl recover alice" "$KMSCTL" -c "$CONF" recover --deliver out-of-band alice@example.org
RTOK=$(sed -n 's/^Token: //p' "$T/out")
is "$(psql_kms "SELECT purpose FROM tokens t JOIN users u ON u.id = t.user_id WHERE u.address = 'alice@example.org' AND t.status = 'pending'")" recover "a recovery token is pending"
RID=$(reply alice@example.org "$RTOK")
is "$(psql_kms "SELECT kind FROM requests WHERE id = ${RID:-0}")" recover "the reply queues a recover request"
wait_for 60 req_finished "${RID:-0}"
is "$(req_status "${RID:-0}")" done "kmsd does the recover request"
F=$(p12_mail alice@example.org "Your recovered S/MIME keys")
[ -n "$F" ] && ok "a recovery mail to alice" || not_ok "a recovery mail to alice"
like "${F:-/dev/null}" "^with 2 encryption key" "the mail counts the keys"
extract "${F:-/dev/null}" "$T/rec.p12" >/dev/null
openssl pkcs12 -in "$T/rec.p12" -passin "pass:$RTOK" -nocerts -nodes -out "$T/rec-keys.pem" 2>/dev/null
is "$(grep -c 'BEGIN PRIVATE KEY' "$T/rec-keys.pem")" 2 "recovery: both keys"
split_pem "$T/rec-keys.pem" "$T/rec-k"
is "$(pubkey_of_key "$T/rec-k1.pem")" "$(pubkey_of_cert "$T/alice2.crt")" "recovery: the newest key first"
is "$(pubkey_of_key "$T/rec-k2.pem")" "$(pubkey_of_cert "$T/alice.crt")" "recovery: then the old one"
check "recovery: the old key decrypts mail encrypted to the old certificate" openssl cms -decrypt -in "$T/old.p7m" -recip "$T/alice.crt" -inkey "$T/rec-k2.pem" -out "$T/old.out"
check "recovery: the decrypted text is the original" cmp "$T/old.txt" "$T/old.out"
is "$(psql_kms "SELECT count(*) FROM escrowed_keys e JOIN users u ON u.id = e.user_id WHERE u.address = 'alice@example.org'")" 2 "recovery escrows nothing new"

# refusals: kmsctl, and kmsd for a request that can never succeed
token erin@example.org >/dev/null
expect_exit 1 "kmsctl recover refuses a user without escrowed key" "$KMSCTL" -c "$CONF" recover erin@example.org
like "$T/err" "erin@example.org: no escrowed key to recover" "and says why"
one_line "$T/err" "in one line"
expect_exit 1 "kmsctl recover refuses an unknown address" "$KMSCTL" -c "$CONF" recover nobody@example.org
like "$T/err" "nobody@example.org: no such user" "and says why"
is "$(psql_kms "SELECT count(*) FROM tokens WHERE purpose = 'recover' AND status = 'pending'")" 0 "no recovery token was made for them"
TOK=$(token erin@example.org)
psql_kms "UPDATE tokens SET purpose = 'recover' WHERE status = 'pending' AND user_id = (SELECT id FROM users WHERE address = 'erin@example.org')"
RID=$(reply erin@example.org "$TOK")
TOK=$(token frank@example.org)
RID2=$(reply frank@example.org "$TOK")
wait_for 60 req_finished "$RID2"
is "$(req_status "$RID")" failed "kmsd fails a recover request for a user without keys"
like "$(psql_kms "SELECT last_error FROM requests WHERE id = $RID" >"$T/lerr"; echo "$T/lerr")" "erin@example.org has no escrowed key to recover" "with a one-line error"
is "$(req_status "$RID2")" done "and the queue moves on"

# --- PIN mode -------------------------------------------------------------------------
stop_kmsd
mkconf "key_type = rsa2048" "p12_password = pin"
start_kmsd "$T/kmsd.log"
check "pin mode: kmsctl enroll prints a PIN" "$KMSCTL" -c "$CONF" enroll --deliver out-of-band grace@example.org
TOK=$(sed -n 's/^Token: //p' "$T/out")
PIN=$(sed -n 's/^PIN: //p' "$T/out")
echo "$PIN" | grep -Eq '^[A-Z2-7]{5}(-[A-Z2-7]{5}){3}$' && ok "pin mode: PIN of 20 base32 characters (100 bits) in groups" || not_ok "pin mode: PIN format ($PIN)"
is "$(psql_kms "SELECT count(*) FROM tokens t JOIN users u ON u.id = t.user_id WHERE u.address = 'grace@example.org' AND t.sealed_pin IS NOT NULL")" 1 "pin mode: the PIN is stored sealed on the token"
check "pin mode: --json has a pin field" "$KMSCTL" -c "$CONF" enroll --json heidi@example.org
check "pin mode: JSON pin" python3 -c 'import json,sys; u=json.load(open(sys.argv[1]))["users"][0]; assert len(u["pin"])==23 and "token" not in u, u' "$T/out"
RID=$(reply grace@example.org "$TOK")
wait_for 60 req_finished "$RID"
is "$(req_status "$RID")" done "pin mode: the request is done"
F=$(p12_mail grace@example.org "Your S/MIME key and certificates")
extract "$F" "$T/grace.p12" >/dev/null
like "$F" "the PIN your administrator gave you" "pin mode: the mail asks for the PIN"
check "pin mode: the PKCS#12 opens with the PIN" openssl pkcs12 -in "$T/grace.p12" -passin "pass:$PIN" -nodes -out /dev/null
expect_exit 1 "pin mode: not with the token" openssl pkcs12 -in "$T/grace.p12" -passin "pass:$TOK" -nodes -out /dev/null
is "$(psql_kms "SELECT count(*) FROM tokens t JOIN users u ON u.id = t.user_id WHERE u.address = 'grace@example.org' AND t.sealed_pin IS NOT NULL")" 0 "pin mode: the sealed PIN is dropped once used"
unlike "$T/kmsd.log" "$PIN" "pin mode: the PIN is not in kmsd's log"
dump
unlike "$T/dump.sql" "$PIN|$(echo "$PIN" | tr -d -)" "pin mode: the PIN is not in a dump"

# --- a long key history (P-256 keys) comes in files of 16 keys ---------------------------
stop_kmsd
mkconf "key_type = p256"
start_kmsd "$T/kmsd.log"
for i in $(seq 1 17); do
	TOK=$(token kim@example.org)
	RID=$(reply kim@example.org "$TOK")
done
wait_for 60 req_finished "$RID"
is "$(psql_kms "SELECT count(*) FROM escrowed_keys e JOIN users u ON u.id = e.user_id WHERE u.address = 'kim@example.org' AND e.key_type = 'p256'")" 17 "17 enrollments: 17 escrowed P-256 keys"
extract "$(p12_mail kim@example.org "Your S/MIME key and certificates")" "$T/kim-last.p12" >/dev/null
openssl pkcs12 -in "$T/kim-last.p12" -passin "pass:$TOK" -clcerts -nokeys -out "$T/kim-last.crt" 2>/dev/null
RTOK=$(token kim@example.org recover)
RID=$(reply kim@example.org "$RTOK")
wait_for 60 req_finished "$RID"
is "$(req_status "$RID")" done "recovery of 17 keys is done"
is "$(p12_count kim@example.org "Your recovered S/MIME keys for kim@example.org (file [12] of 2)")" 2 "in two mails, file 1 of 2 and 2 of 2"
: >"$T/kim-pubs"
for part in 1 2; do
	F=$(p12_mail kim@example.org "Your recovered S/MIME keys for kim@example.org (file $part of 2)")
	is "$(extract "${F:-/dev/null}" "$T/kim$part.p12")" "smime-kim@example.org-$part.p12" "file $part: its own attachment name"
	openssl pkcs12 -in "$T/kim$part.p12" -passin "pass:$RTOK" -nocerts -nodes -out "$T/kim$part-keys.pem" 2>/dev/null
	rm -f "$T"/kk*.pem
	split_pem "$T/kim$part-keys.pem" "$T/kk"
	for k in "$T"/kk*.pem; do pubkey_of_key "$k" | tr -d '\n' >>"$T/kim-pubs"; echo >>"$T/kim-pubs"; done
	[ $part = 1 ] && is "$(pubkey_of_key "$T/kk1.pem")" "$(pubkey_of_cert "$T/kim-last.crt")" "file 1 starts with the newest key"
done
is "$(grep -c . "$T/kim-pubs")" 17 "17 keys in the two files (16 + 1)"
is "$(sort -u "$T/kim-pubs" | grep -c .)" 17 "all different"

# --- kmsd killed while issuing ---------------------------------------------------------
stop_kmsd
mkconf "key_type = rsa4096"
TOK=$(token ivan@example.org)
RID=$(reply ivan@example.org "$TOK")
: >"$T/kill.log"
start_kmsd "$T/kill.log"
wait_for 60 grep -q "generating rsa4096 encryption key for ivan@example.org" "$T/kill.log"
kill -KILL $KPIDS; wait $KPIDS 2>/dev/null; KPIDS=
is "$(req_status "$RID")" queued "killed while generating: the request is still queued"
is "$(psql_kms "SELECT count(*) FROM certificates c JOIN users u ON u.id = c.user_id WHERE u.address = 'ivan@example.org'")" 0 "killed: no certificate"
start_kmsd "$T/kmsd.log"
wait_for 90 req_finished "$RID"
is "$(req_status "$RID")" done "after a restart the request completes"
is "$(psql_kms "SELECT count(*) FROM certificates c JOIN users u ON u.id = c.user_id WHERE u.address = 'ivan@example.org'")" 1 "exactly one certificate"
is "$(psql_kms "SELECT count(*) FROM escrowed_keys e JOIN users u ON u.id = e.user_id WHERE u.address = 'ivan@example.org'")" 1 "exactly one escrowed key"
is "$(p12_count ivan@example.org "Your S/MIME key and certificates")" 1 "exactly one PKCS#12 mail"
stop_kmsd

# --- two kmsd, one queue --------------------------------------------------------------------
mkconf "key_type = rsa2048"
: >"$T/ids"
for u in u1 u2 u3 u4 u5 u6; do
	TOK=$(token $u@many.example.org)
	reply $u@many.example.org "$TOK" >>"$T/ids"
done
: >"$T/k1.log"; : >"$T/k2.log"
start_kmsd "$T/k1.log"
start_kmsd "$T/k2.log"
all_done() { [ "$(psql_kms "SELECT count(*) FROM requests r JOIN users u ON u.id = r.user_id WHERE u.address LIKE '%@many.example.org' AND r.kind = 'enroll' AND r.status = 'done'")" = 6 ]; }
wait_for 90 all_done
is "$(psql_kms "SELECT count(*) FROM requests r JOIN users u ON u.id = r.user_id WHERE u.address LIKE '%@many.example.org' AND r.kind = 'enroll' AND r.status = 'done' AND r.attempts = 1")" 6 "two kmsd: six requests done, each on its first attempt"
is "$(psql_kms "SELECT count(*) FROM certificates c JOIN users u ON u.id = c.user_id WHERE u.address LIKE '%@many.example.org' GROUP BY u.id HAVING count(*) = 1" | wc -l)" 6 "two kmsd: one certificate per user"
is "$(psql_kms "SELECT count(*) FROM escrowed_keys e JOIN users u ON u.id = e.user_id WHERE u.address LIKE '%@many.example.org'")" 6 "two kmsd: six escrowed keys"
n=0
for u in u1 u2 u3 u4 u5 u6; do
	[ "$(p12_count $u@many.example.org "Your S/MIME key and certificates")" = 1 ] && n=$((n + 1))
done
is "$n" 6 "two kmsd: exactly one PKCS#12 mail per user"
done_lines=0
for id in $(cat "$T/ids"); do
	c=$(cat "$T/k1.log" "$T/k2.log" | grep -c "request $id (enroll) done")
	[ "$c" = 1 ] && done_lines=$((done_lines + 1))
done
is "$done_lines" 6 "two kmsd: each request logged done exactly once"
diag "kmsd 1 did $(grep -c '(enroll) done' "$T/k1.log"), kmsd 2 did $(grep -c '(enroll) done' "$T/k2.log")"
stop_kmsd
done_testing
