#!/bin/sh
# The enrollment loop end to end, with every part real: a private Postfix
# (tests/postfix.sh) runs kmsmilter as its milter and delivers example.org
# to maildirs; kmsd submits its mails to that Postfix. kmsctl enroll ->
# the token mail arrives in alice's maildir -> a reply quoting it goes to
# the enroll address through Postfix (swaks) -> kmsmilter consumes the
# token and the reply reaches no mailbox -> kmsd issues and mails the
# PKCS#12 -> it opens with the token, its key matches the encryption
# certificate, the chain verifies to the CA, NSS's pk12util imports it
# (modern profile); bob gets the legacy profile, which gpgsm 2.2 imports.
# Then a message encrypted with `openssl cms` to alice's certificate is
# decrypted with the key from the PKCS#12 that `kmsctl recover` brings.
. "$top_srcdir/tests/lib.sh"
. "$top_srcdir/tests/postfix.sh"
for p in openssl pk12util certutil gpgsm gpgconf python3; do
	command -v $p >/dev/null || bail "$p not installed (contrib/install-deps.sh installs it)"
done

set -- $(python3 -c '
import socket
a, b = socket.socket(), socket.socket()
a.bind(("127.0.0.1", 0)); b.bind(("127.0.0.1", 0))
print(a.getsockname()[1], b.getsockname()[1])')
SMTPPORT=$1 MILTERPORT=$2

pg_start
CONF=$T/kms.conf
write_password "$T/pw" 'enrollment end-to-end password'
write_config "$CONF" "$(printf '[mail]\nsubmit = smtp://127.0.0.1:%s\nfrom = kms@example.org\n[ca]\ncrl_url = http://pki.example.org/kms.crl' "$SMTPPORT")"
sed -i "s|^socket = .*|socket = inet:$MILTERPORT@127.0.0.1|" "$CONF"
kmsd_config "$CONF" "$T/pw"
"$KMSCTL" -c "$CONF" init --password-file "$T/pw" >/dev/null || bail "kmsctl init failed"
"$KMSCTL" -c "$CONF" ca show --pem >"$T/ca.pem" || bail "kmsctl ca show failed"

"$KMSMILTER" -c "$CONF" -f 2>"$T/milter.log" &
MPID=$!; bg_pids="$bg_pids $MPID"
wait_for 10 grep -q "listening on" "$T/milter.log" || bail "kmsmilter does not start"
postfix_setup "$SMTPPORT" "$MILTERPORT" alice@example.org bob@example.org kms-enroll@example.org
postfix_start
start_kmsd() {
	"$KMSD" -c "$1" -f 2>>"$T/kmsd.log" &
	KPID=$!; bg_pids="$bg_pids $KPID"
}
start_kmsd "$CONF"

# newest USER: the newest message in USER's maildir
newest() { ls -t "$T/mail/$1/new"/* 2>/dev/null | head -1; }
has_mails() { [ "$(maildir_count "$1")" -ge "$2" ]; }
# reply USER MAIL NAME: USER answers MAIL (quoting it whole) to the enroll
# address through Postfix; swaks' transcript in $T/NAME.swaks
reply() {
	{
		printf 'From: %s@example.org\nTo: kms-enroll@example.org\n' "$1"
		printf 'Subject: Re: certificate\nDate: %s\n' "$(LC_ALL=C date -R)"
		printf 'Message-ID: <reply-%s.%s@example.org>\n\nHere is my answer.\n\n' "$3" "$$"
		sed '1,/^$/d; s/^/> /' "$2"
	} | sed 's/$/\r/' | head -c -2 >"$T/$3.data"
	swaks --server 127.0.0.1 --port "$SMTPPORT" --helo client.example.org \
		--from "$1@example.org" --to kms-enroll@example.org --timeout 60 \
		--data "@$T/$3.data" >"$T/$3.swaks" 2>&1
}
# p12_of MAIL OUT: the PKCS#12 attachment of MAIL into OUT
p12_of() {
	python3 - "$1" "$2" <<'PY'
import email, sys
from email import policy
m = email.message_from_binary_file(open(sys.argv[1], "rb"), policy=policy.default)
parts = [p for p in m.walk() if p.get_content_type() in ("application/pkcs12", "application/x-pkcs12")]
assert len(parts) == 1, [p.get_content_type() for p in m.walk()]
open(sys.argv[2], "wb").write(parts[0].get_payload(decode=True))
PY
}
token_of() { sed -n 's/^Token: \([A-Z0-9-]*\)\r\{0,1\}$/\1/p' "$1" | head -1; }

# --- alice: the token mail ----------------------------------------------------
check "kmsctl enroll alice" "$KMSCTL" -c "$CONF" enroll alice@example.org
wait_for 60 has_mails alice 1
TOKMAIL=$(newest alice)
[ -n "$TOKMAIL" ] && ok "the token mail reached alice's maildir through Postfix" ||
	{ not_ok "the token mail reached alice's maildir through Postfix"; cat "$T/kmsd.log"; done_testing; }
like "$TOKMAIL" "^From: .*kms@example\.org" "it comes from the KMS address"
like "$TOKMAIL" "^Reply-To: kms-enroll@example\.org" "its Reply-To is the enroll address"
TOKEN=$(token_of "$TOKMAIL")
case $TOKEN in
?????-?????-?????-?????-?????) ok "it carries the token on its own line" ;;
*) not_ok "it carries the token on its own line (got '$TOKEN')" ;;
esac

# --- alice replies ------------------------------------------------------------
check "alice's reply is accepted by Postfix (250)" reply alice "$TOKMAIL" alice1
like "$T/alice1.swaks" "^<[-~]* +250 " "with a 250"
wait_for 120 has_mails alice 2
P12MAIL=$(newest alice)
[ "$P12MAIL" != "$TOKMAIL" ] && ok "a second mail arrives for alice: her PKCS#12" ||
	{ not_ok "a second mail arrives for alice: her PKCS#12"; tail -20 "$T/kmsd.log" "$T/milter.log" | sed 's/^/# /'; }
is "$(maildir_count kms-enroll)" 0 "the reply itself reached no mailbox"
like "$T/milter.log" "alice@example\.org" "kmsmilter logged the reply"
check "the PKCS#12 is attached" p12_of "$P12MAIL" "$T/alice.p12"
check "openssl opens it with the token" openssl pkcs12 -in "$T/alice.p12" -passin "pass:$TOKEN" \
	-nodes -out "$T/alice.pem"
expect_exit 1 "and not with another password" openssl pkcs12 -in "$T/alice.p12" \
	-passin pass:XXXXX-XXXXX-XXXXX-XXXXX-XXXXX -nodes -out /dev/null
openssl pkey -in "$T/alice.pem" -out "$T/alice.key" 2>/dev/null
openssl pkcs12 -in "$T/alice.p12" -passin "pass:$TOKEN" -clcerts -nokeys -out "$T/alice.crt" 2>/dev/null
is "$(openssl pkey -in "$T/alice.key" -pubout 2>/dev/null | sha256sum)" \
	"$(openssl x509 -in "$T/alice.crt" -noout -pubkey 2>/dev/null | sha256sum)" \
	"the key in it matches the encryption certificate"
like "$T/alice.crt" "BEGIN CERTIFICATE" "the certificate is in it"
check "the chain verifies to the CA for S/MIME" openssl verify -CAfile "$T/ca.pem" \
	-purpose smimeencrypt "$T/alice.crt"
openssl x509 -in "$T/alice.crt" -noout -ext subjectAltName,crlDistributionPoints >"$T/alice.ext" 2>&1
like "$T/alice.ext" "email:alice@example\.org" "it names alice's address"
like "$T/alice.ext" "URI:http://pki\.example\.org/kms\.crl" "it carries the CRL distribution point"

mkdir "$T/nss"
certutil -N -d "sql:$T/nss" --empty-password >/dev/null 2>&1
check "NSS pk12util imports the modern PKCS#12 with the token" \
	pk12util -i "$T/alice.p12" -d "sql:$T/nss" -W "$TOKEN" -K ""
like "$T/out" "PKCS12 IMPORT SUCCESSFUL" "pk12util says so"
check "certutil lists alice's key" certutil -K -d "sql:$T/nss"
like "$T/out" "rsa" "an RSA key is in the NSS database"

# --- replaying the same reply does nothing more -------------------------------
reply alice "$TOKMAIL" alice2
like "$T/alice2.swaks" "^<[-~*]* +550 5\.7\.0 " "the same token a second time: 550 5.7.0"
is "$(psql_kms "SELECT count(*) FROM certificates WHERE source = 'issued'")" 1 \
	"still exactly one certificate issued"

# --- bob: legacy profile for gpgsm -------------------------------------------
kill "$KPID"; wait "$KPID" 2>/dev/null
sed 's/^\[enrollment\]/[enrollment]\np12_profile = legacy/' "$CONF" >"$T/legacy.conf"
grep -q '^p12_profile = legacy' "$T/legacy.conf" || printf '[enrollment]\np12_profile = legacy\n' >>"$T/legacy.conf"
start_kmsd "$T/legacy.conf"
check "kmsctl enroll bob" "$KMSCTL" -c "$CONF" enroll bob@example.org
wait_for 60 has_mails bob 1
BOBTOK=$(newest bob)
check "bob's reply is accepted (250)" reply bob "$BOBTOK" bob1
wait_for 120 has_mails bob 2
check "bob's PKCS#12 is attached" p12_of "$(newest bob)" "$T/bob.p12"
mkdir -m 0700 "$T/gh"
echo allow-loopback-pinentry >"$T/gh/gpg-agent.conf"
token_of "$BOBTOK" >"$T/bob.pw"
GNUPGHOME=$T/gh check "gpgsm 2.2 imports the legacy PKCS#12 with the token" \
	timeout 120 gpgsm --batch --pinentry-mode loopback --passphrase-fd 0 --disable-dirmngr \
	--import "$T/bob.p12" <"$T/bob.pw"
GNUPGHOME=$T/gh gpgsm --batch --with-colons --list-secret-keys >"$T/gpgsm.keys" 2>&1
like "$T/gpgsm.keys" "bob@example\.org" "gpgsm holds bob's secret key"
GNUPGHOME=$T/gh gpgconf --kill all >/dev/null 2>&1

# --- recovery: an old message to alice opens with the recovered key ----------
printf 'Content-Type: text/plain\r\n\r\nfor alice only\r\n' >"$T/secret.txt"
openssl cms -encrypt -aes256 -in "$T/secret.txt" -out "$T/secret.p7m" "$T/alice.crt" ||
	bail "openssl cms -encrypt failed"
check "kmsctl recover alice" "$KMSCTL" -c "$CONF" recover alice@example.org
wait_for 60 has_mails alice 3
RECTOK=$(newest alice)
like "$RECTOK" "^Token: " "the recovery token mail arrives"
check "alice's recovery reply is accepted (250)" reply alice "$RECTOK" alice3
wait_for 120 has_mails alice 4
check "the recovery PKCS#12 is attached" p12_of "$(newest alice)" "$T/recovered.p12"
check "it opens with the recovery token" openssl pkcs12 -in "$T/recovered.p12" \
	-passin "pass:$(token_of "$RECTOK")" -nodes -nocerts -out "$T/recovered.key"
check "the recovered key decrypts the message" openssl cms -decrypt -in "$T/secret.p7m" \
	-inkey "$T/recovered.key" -out "$T/secret.out"
like "$T/secret.out" "for alice only" "to the original text"

# --- no secret in any log -------------------------------------------------------
for tok in "$TOKEN" "$(token_of "$BOBTOK")" "$(token_of "$RECTOK")"; do
	bare=$(echo "$tok" | tr -d -)
	if grep -q -i -e "$tok" -e "$bare" "$T/milter.log" "$T/kmsd.log" "$T/postfix.log"; then
		not_ok "token ${tok%%-*}... appears in a log"
	else
		ok "token ${tok%%-*}... appears in no log (milter, kmsd, Postfix)"
	fi
done
done_testing
