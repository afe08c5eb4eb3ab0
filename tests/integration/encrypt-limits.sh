#!/bin/sh
# Outbound encryption at its limits, through a real Postfix: a 10 MB
# message and 100 recipients encrypted within [milter] max_message_size;
# a message over the limit refused (552 5.3.4) when its encryption is
# required and delivered as it is when only if-possible; a plaintext body
# labelled application/pkcs7-mime is encrypted, not taken as encrypted;
# malformed MIME encrypted as opaque bytes; the vault down: 451 4.3.0 for
# a triggered message, on_db_error = accept for the rest. The recipients'
# certificates are issued by the vault (one test key for all of them).
. "$top_srcdir/tests/lib.sh"
. "$top_srcdir/tests/postfix.sh"
for t in openssl python3 base64; do
	command -v "$t" >/dev/null || bail "$t not installed"
done
extra_cleanup=postfix_stop

pg_start
CONF=$T/kms.conf
SMTPPORT=$(free_port); MILTERPORT=$(free_port)
write_config "$CONF" "$(printf '[mail]\nsubmit = smtp://127.0.0.1:%s\nfrom = kms@example.org\n[policy]\nmixed = plain' "$SMTPPORT")"
sed -i "s|^socket = .*|socket = inet:$MILTERPORT@127.0.0.1\ndsn = host=$PGSOCK dbname=kms user=kms_milter\ntrust_refresh = 1s\nsystem_trust = no\nmax_message_size = 12m\nspool_memory = 256k\ndb_timeout = 2s|" "$CONF"
write_password "$T/pw" 'limits test password'
"$KMSCTL" -c "$CONF" init --password-file "$T/pw" >/dev/null || bail "init failed"

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/r.key" 2>/dev/null &&
	openssl pkey -in "$T/r.key" -pubout -out "$T/r.pub" 2>/dev/null || bail "cannot make the test key"
RCPTS=; ADDRS=
i=1
while [ $i -le 100 ]; do
	ADDRS="$ADDRS r$i@example.org"
	RCPTS="$RCPTS${RCPTS:+,}r$i@example.org"
	i=$((i + 1))
done
t0=$(date +%s)
for a in $ADDRS; do
	"$VAULTTOOL" -c "$CONF" -p "$T/pw" issue-record encryption "$a" "$T/r.pub" >"$T/r.pem" || bail "issue-record $a failed"
done
diag "100 certificates issued in $(( $(date +%s) - t0 )) s"
check "policy: example.org requires encryption" "$KMSCTL" -c "$CONF" policy set --domain example.org encrypt=required
check "policy: other.test if-possible" "$KMSCTL" -c "$CONF" policy set --domain other.test encrypt=if-possible

start_milter "$CONF" "$T/milter.log"
grep -q "listening on" "$T/milter.log" || bail "kmsmilter does not start: $(cat "$T/milter.log")"
postfix_setup "$SMTPPORT" "$MILTERPORT" $ADDRS plain@other.test
cat >>"$PF/main.cf" <<EOF
virtual_mailbox_domains = example.org, other.test
message_size_limit = 40000000
EOF
postfix_start

# mk NAME SIZE [HEADER-LINE]: a text message of about SIZE bytes of body
mk() {
	{
		printf 'From: <sender@outside.test>\r\nTo: <team@example.org>\r\nSubject: %s\r\n' "$1"
		printf 'Message-ID: <%s.%s@outside.test>\r\n' "$1" "$$"
		[ -n "${3:-}" ] && printf '%s\r\n' "$3"
		printf 'MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nStart of %s.\r\n' "$1"
		head -c $(($2 * 3 / 4)) /dev/urandom | base64 -w 76 | sed 's/$/\r/'
		printf 'End of %s.\r\n' "$1"
	} >"$T/$1.data"
}
send() {
	swaks --server 127.0.0.1 --port "$SMTPPORT" --helo client.example.org --from sender@outside.test \
		--to "$2" --timeout 120 --data "@$T/$1.data" >"$T/$1.swaks" 2>&1
}
newest() { ls -t "$T/mail/$1/new"/* 2>/dev/null | head -1; }
has_mails() { [ "$(maildir_count "$1")" -ge "$2" ]; }
der_of() { awk 'b { print } /^\r?$/ { b = 1 }' "$1" | tr -d '\r' | base64 -d >"$2"; }
decrypt() { der_of "$1" "$T/x.der" && openssl cms -decrypt -inform DER -in "$T/x.der" -inkey "$T/r.key" -out "$2"; }
# body FILE: the body of a message (after the first empty line), LF ends,
# without empty lines (swaks adds one at the end)
body() { awk 'b { print } /^\r?$/ { b = 1 }' "$1" | tr -d '\r' | sed '/^$/d'; }

# --- 10 MB -----------------------------------------------------------------------
mk big 10000000
t0=$(date +%s)
send big r1@example.org
like "$T/big.swaks" "^<[-~]* +250 " "a 10 MB message under required: accepted"
if wait_for 60 has_mails r1 1; then
	diag "10 MB: accepted and delivered in $(( $(date +%s) - t0 )) s"
	M=$(newest r1)
	like "$M" "^X-KMS-Info: encrypted aes256-cbc for 1 recipient" "  ... encrypted"
	check "  ... decrypts" decrypt "$M" "$T/big.out"
	is "$(body "$T/big.out" | openssl dgst -sha256 -r)" "$(body "$T/big.data" | openssl dgst -sha256 -r)" "  ... to the same 10 MB body"
else
	not_ok "the 10 MB message was delivered"
fi

# --- 100 recipients ------------------------------------------------------------------
mk many 2000
send many "$RCPTS"
like "$T/many.swaks" "^<[-~]* +250 " "100 recipients: accepted"
all_there() { for a in $ADDRS; do has_mails "${a%%@*}" 1 || return 1; done; [ "$(maildir_count r1)" -ge 2 ]; }
if wait_for 60 all_there; then
	ok "  ... delivered to all 100"
	M=$(newest r100)
	like "$M" "^X-KMS-Info: encrypted aes256-cbc for 100 recipients" "  ... encrypted for 100 recipients"
	check "  ... r100 decrypts" decrypt "$M" "$T/many.out"
	like "$T/many.out" "^Start of many\." "  ... the original text"
else
	not_ok "  ... delivered to all 100"
fi

# --- over max_message_size ---------------------------------------------------------
mk huge 13000000
send huge r2@example.org
like "$T/huge.swaks" "^<[-~*]* +552 5\.3\.4 " "over max_message_size, encryption required: 552 5.3.4"
is "$(maildir_count r2)" 1 "  ... not delivered (r2 has only the 100-recipient message)"
mk huge2 13000000
send huge2 plain@other.test
like "$T/huge2.swaks" "^<[-~]* +250 " "over max_message_size, if-possible: accepted"
wait_for 60 has_mails plain 1 && like "$(newest plain)" "^Start of huge2\." "  ... delivered as it is (the recipient has no certificate anyway)"

# --- a plaintext body labelled as encrypted --------------------------------------------
{ printf 'From: <sender@outside.test>\r\nTo: <r3@example.org>\r\nSubject: fake\r\nMIME-Version: 1.0\r\n'
  printf 'Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\nContent-Transfer-Encoding: base64\r\n\r\n'
  printf 'This is not CMS at all.\r\n' | base64 | sed 's/$/\r/'; } >"$T/fake.data"
send fake r3@example.org
if wait_for 30 has_mails r3 2; then
	M=$(newest r3)
	like "$M" "^X-KMS-Info: encrypted aes256-cbc for 1 recipient" "a plaintext body labelled pkcs7-mime is encrypted under required"
	check "  ... decrypts to the labelled entity" decrypt "$M" "$T/fake.out"
	like "$T/fake.out" "^Content-Type: application/pkcs7-mime; smime-type=enveloped-data" "  ... its own headers inside"
else
	not_ok "a plaintext body labelled pkcs7-mime was delivered"
fi

# --- malformed MIME ------------------------------------------------------------------
{ printf 'From: <sender@outside.test>\r\nTo: <r4@example.org>\r\nSubject: broken\r\nMIME-Version: 1.0\r\n'
  printf 'Content-Type: multipart/mixed; boundary=\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
  printf -- '--\r\n--=_never closed\r\nContent-Type: application/pkcs7-signature\r\n\r\n=ZZ=\r\n'
  head -c 3000 /dev/urandom | tr -d '\000\r\n' | fold -w 70 | sed 's/$/\r/'; } >"$T/broken.data"
send broken r4@example.org
like "$T/broken.swaks" "^<[-~]* +250 " "malformed MIME (duplicate Content-Type, no boundary, binary) under required: accepted"
if wait_for 30 has_mails r4 2; then
	M=$(newest r4)
	like "$M" "^X-KMS-Info: encrypted" "  ... encrypted as opaque content"
	is "$(grep -c '^Content-Type:' "$M")" 1 "  ... both Content-Type headers replaced by one"
	check "  ... decrypts" decrypt "$M" "$T/broken.out"
	is "$(grep -c '^Content-Type:' "$T/broken.out")" 3 "  ... both original Content-Type headers inside (and the part's)"
fi
kill -0 "$MPID" 2>/dev/null && ok "kmsmilter is still running" || not_ok "kmsmilter is still running"

# --- the vault down ----------------------------------------------------------------
pg_stop
sleep 1.5	# past trust_refresh: the policy rows are asked again
{ printf 'From: <sender@outside.test>\r\nTo: <plain@other.test>\r\nSubject: trigger\r\nX-KMS-Encrypt: yes\r\n\r\nhello\r\n'; } >"$T/down1.data"
send down1 plain@other.test
like "$T/down1.swaks" "^<[-~*]* +451 4\.3\.0 " "vault down, trigger: 451 4.3.0"
{ printf 'From: <sender@outside.test>\r\nTo: <plain@other.test>\r\nSubject: no trigger\r\n\r\nhello\r\n'; } >"$T/down2.data"
send down2 plain@other.test
like "$T/down2.swaks" "^<[-~]* +250 " "vault down, no trigger, global encrypt = never: on_db_error = accept"
like "$T/milter.log" "vault unavailable .*delivered as it is \(on_db_error = accept\)" "  ... logged"

kill -TERM "$MPID"; wait "$MPID"; rc=$?
is "$rc" 0 "kmsmilter exits 0 on SIGTERM"
unlike "$T/milter.log" "AddressSanitizer|runtime error" "no sanitizer report in the milter log"
done_testing
