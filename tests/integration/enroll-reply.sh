#!/bin/sh
# Enrollment and recovery replies consumed by kmsmilter, through the real
# milter protocol (miltertest + tests/milter-reply.lua) against a private
# PostgreSQL: a token found anywhere in the reply (quoted, lower case,
# without dashes) is consumed and an enroll/recover request queued with the
# password sealed to kmsd; the enroll recipient is removed (message
# discarded when it was the only one); every refusal has its SMTP reply
# (550 5.7.0, 552 5.3.4 for an oversized reply, 451 4.3.0 with the vault
# down); attempts are limited; CSRs pasted or attached reach the request;
# SMTP AUTH binding with an auth_map; no token ever reaches the log.
. "$top_srcdir/tests/lib.sh"
command -v miltertest >/dev/null || bail "miltertest not installed (Debian: miltertest)"
command -v openssl >/dev/null || bail "openssl not installed"
pg_start
CONF=$T/kms.conf
MPORT=$(free_port)
write_config "$CONF" "$(printf '[log]\nlevel = info\n[mail]\nsubmit = smtp://127.0.0.1:9\nfrom = kms@example.org\n[enrollment]\nmax_reply_size = 1m')"
sed -i "s|^socket = .*|socket = inet:$MPORT@127.0.0.1\nenroll_address = kms-enroll@example.org\ndsn = host=$PGSOCK dbname=kms user=kms_milter\nsystem_trust = no\ndb_timeout = 2s|" "$CONF"
write_password "$T/pw" 'reply test password'
"$KMSCTL" -c "$CONF" init --password-file "$T/pw" >/dev/null || bail "init failed"
start_milter "$CONF" "$T/milter.log"
grep -q "listening on" "$T/milter.log" || bail "kmsmilter did not start: $(cat "$T/milter.log")"
cd "$T" || bail "no temp dir"

# enroll ADDR: an out-of-band enrollment; prints the token as printed
enroll() {
	"$KMSCTL" -c "$CONF" enroll --deliver out-of-band "$1" >"$T/enroll.out" 2>&1 || { cat "$T/enroll.out" >&2; return 1; }
	t=$(sed -n 's/^Token: \([A-Z2-7-]*\).*/\1/p' "$T/enroll.out")
	echo "$t" >>"$T/all-tokens"
	echo "$t"
}
lower_nodash() { echo "$1" | tr -d - | tr 'A-Z' 'a-z'; }
# tok_status ADDR: status/attempts of ADDR's newest token
tok_status() { psql_kms "SELECT t.status || '/' || t.attempts FROM tokens t JOIN users u ON u.id = t.user_id WHERE lower(u.address) = lower('$1') ORDER BY t.id DESC LIMIT 1"; }
# last_request ADDR: id of the newest enroll/recover request of ADDR
last_request() { psql_kms "SELECT r.id FROM requests r JOIN users u ON u.id = r.user_id WHERE lower(u.address) = lower('$1') AND r.kind IN ('enroll', 'recover') ORDER BY r.id DESC LIMIT 1"; }
payload() { psql_kms "SELECT payload::text FROM requests WHERE id = $1"; }
# mail FILE FROM BODY: a plain-text reply
mail() {
	printf 'From: <%s>\nTo: kms-enroll@example.org\nSubject: Re: Your S/MIME certificate\nContent-Type: text/plain; charset=utf-8\n\n%s\n' "$2" "$3" >"$1"
}
# send FILE [-D k=v ...]: through the milter; output in $T/out
send() {
	f=$1; shift
	miltertest -D sock="inet:$MPORT@127.0.0.1" -D file="$f" "$@" -s "$top_srcdir/tests/milter-reply.lua"
}
# refuse FILE TEXT [-D k=v ...]: the milter answers 550 5.7.0 TEXT
refuse() {
	f=$1 txt=$2; shift 2
	send "$f" -D expect=reject -D code=550 -D xcode=5.7.0 -D text="$txt" "$@"
}
USED="token already used or cancelled"
UNKNOWN="token unknown: check the token you were sent"
NOTOKEN='no token found in the reply: quote the line "Token: ..." of the mail you were sent'
EXPIRED="token expired: ask your administrator for a new one"
SENDER="sender is not the enrolled address: reply from the address the token was sent for"
LOCKED="token locked after too many attempts: ask your administrator for a new one"
AUTHREQ="authentication required: send your reply over an authenticated SMTP session"
AUTHUSER="authenticated user is not the enrolled address"
reload() { # reload N: SIGHUP, wait for the Nth "configuration reloaded"
	kill -HUP "$MPID"
	n=0; while [ $n -lt 50 ] && [ "$(grep -c 'configuration reloaded' "$T/milter.log")" -lt "$1" ]; do sleep 0.1; n=$((n + 1)); done
}

# --- success: quoted, lower case, no dashes; the only recipient ----------
A=$(enroll alice@example.org) || bail "enroll alice"
mail alice.eml alice@example.org "$(printf 'Hello,\n\nhere is my reply.\n\nOn Monday KMS wrote:\n> Welcome to S/MIME.\n> Token: %s\n> Reply to this mail.\n' "$(lower_nodash "$A")")"
check "a reply with alice's token (quoted, lower case, no dashes) is discarded" \
	send alice.eml -D from='<alice@example.org>' -D expect=discard -D deleted=kms-enroll@example.org
like "$T/out" "^deleted: kms-enroll@example.org" "the enroll recipient is removed"
is "$(tok_status alice@example.org)" "used/0" "alice's token is used"
RA=$(last_request alice@example.org)
is "$(psql_kms "SELECT kind || ' ' || status FROM requests WHERE id = '$RA'")" "enroll queued" "an enroll request is queued"
payload "$RA" >"$T/pa"
check "payload: token_id, sealed_password, reply_from, auth null, queue_id, no csr" python3 -c '
import json,sys; p=json.load(open(sys.argv[1]))
assert p["token_id"] == int(sys.argv[2]), p
assert len(p["sealed_password"]) > 40 and p["reply_from"] == "alice@example.org", p
assert p["auth"] is None and p["queue_id"] == "4ReplyQ1d" and "csr" not in p, p' "$T/pa" \
	"$(psql_kms "SELECT t.id FROM tokens t JOIN users u ON u.id = t.user_id WHERE u.address = 'alice@example.org'")"
unlike "$T/pa" "$A|$(echo "$A" | tr -d -)|$(lower_nodash "$A")" "the payload does not hold the token in clear"
check "the sealed password opens (queue key) to the token as printed" "$VAULTTOOL" -c "$CONF" -p "$T/pw" open-password "$RA"
is "$(cat "$T/out")" "$A" "and it is the canonical printed token"
like "$T/milter.log" "4ReplyQ1d: enroll reply from <alice@example.org>: address alice@example.org: token accepted, enroll request $RA queued" "one log line: queue id, sender, address, outcome"

# --- refusals ---------------------------------------------------------
check "the same reply again: 550" refuse alice.eml "$USED" -D from=alice@example.org -D deleted=none
B=$(enroll bob@example.org) || bail "enroll bob"
mail wrong.eml bob@example.org "Token: AAAAA-BBBBB-CCCCC-DDDDD-EEEEE"
check "a wrong token: 550 token unknown" refuse wrong.eml "$UNKNOWN" -D from=bob@example.org -D deleted=none
is "$(tok_status bob@example.org)" "pending/1" "the wrong token counts one attempt on bob's token"
mail notoken.eml bob@example.org "I lost the token, sorry."
check "a reply without any token: 550" refuse notoken.eml "$NOTOKEN" -D from=bob@example.org
is "$(tok_status bob@example.org)" "pending/1" "a reply without a token counts no attempt"

C=$(enroll carol@example.org) || bail "enroll carol"
psql_kms "UPDATE tokens SET expires_at = now() - interval '1 hour' WHERE user_id = (SELECT id FROM users WHERE address = 'carol@example.org')"
mail carol.eml carol@example.org "Token: $C"
check "an expired token: 550" refuse carol.eml "$EXPIRED" -D from=carol@example.org
is "$(tok_status carol@example.org)" "pending/0" "the expired token is not consumed"

D=$(enroll dave@example.org) || bail "enroll dave"
mail dave.eml mallory@example.net "Token: $D"
check "dave's token from another envelope sender: 550" refuse dave.eml "$SENDER" -D from=mallory@example.net
like "$T/milter.log" "reply from mallory@example.net: address dave@example.org: refused: sender is not the enrolled address" "logged as wrong sender"
is "$(tok_status dave@example.org)" "pending/1" "the wrong sender counts an attempt and consumes nothing"
check "the same token from dave (upper-case address) is then accepted" send dave.eml -D from='<DAVE@Example.ORG>' \
	-D rcpt='<KMS-Enroll@Example.ORG>' -D expect=discard -D deleted='<KMS-Enroll@Example.ORG>'
is "$(tok_status dave@example.org)" "used/1" "dave's token is used"

# --- attempts: 50 wrong replies lock the token ---------------------------
E=$(enroll erin@example.org) || bail "enroll erin"
mail erin-wrong.eml erin@example.org "Token: QQQQQ-QQQQQ-QQQQQ-QQQQQ-QQQQQ"
i=0; fails=0
while [ $i -lt 50 ]; do
	refuse erin-wrong.eml "$UNKNOWN" -D from=erin@example.org >/dev/null 2>&1 || fails=$((fails + 1))
	i=$((i + 1))
done
is "$fails" 0 "50 wrong tokens from erin: fifty 550s"
is "$(tok_status erin@example.org)" "locked/50" "erin's token is locked after 50 attempts"
mail erin.eml erin@example.org "Token: $E"
check "the right token is then refused: locked" refuse erin.eml "$LOCKED" -D from=erin@example.org
is "$(tok_status erin@example.org)" "locked/50" "and stays locked"

# --- an oversized reply: 552, token untouched ----------------------------
F=$(enroll frank@example.org) || bail "enroll frank"
{
	printf 'From: <frank@example.org>\nTo: kms-enroll@example.org\nSubject: big\nMIME-Version: 1.0\n'
	printf 'Content-Type: multipart/mixed; boundary="b1"\n\n--b1\nContent-Type: text/plain\n\nsee attachment\n'
	printf -- '--b1\nContent-Type: text/plain; name="big.txt"\nContent-Disposition: attachment; filename="big.txt"\n\n'
	printf 'Token: %s\n' "$F"
	head -c 21000000 /dev/zero | tr '\0' 'x' | fold -w 76
	printf '\n--b1--\n'
} >big.eml
[ "$(wc -c <big.eml)" -gt 20971520 ] && ok "a reply of $(wc -c <big.eml) bytes" || not_ok "big reply built"
check "a reply over max_reply_size: 552 5.3.4" send big.eml -D from=frank@example.org -D expect=reject -D code=552 -D xcode=5.3.4 \
	-D text="message too large for an enrollment reply (limit 1048576 bytes): send the token in a short reply"
is "$(tok_status frank@example.org)" "pending/0" "frank's token is still pending"

# --- the vault goes down: 451, then the same reply succeeds -------------
mail frank.eml frank@example.org "Token: $F"
pg_stop
check "vault down: 451 4.3.0" send frank.eml -D from=frank@example.org -D expect=tempfail -D code=451 -D xcode=4.3.0 \
	-D text="key vault temporarily unavailable, try again later"
like "$T/milter.log" "reply from frank@example.org: address -: deferred: " "the deferral is logged"
as_pg "$PG_BINDIR/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/server.log" -w -t 60 \
	-o "-k $PGSOCK -c listen_addresses= -c fsync=off -c unix_socket_permissions=0700" start >/dev/null || bail "pg restart"
pg_running=1
is "$(tok_status frank@example.org)" "pending/0" "nothing was consumed while the vault was down"
check "vault back: the same reply is accepted" send frank.eml -D from=frank@example.org -D expect=discard -D deleted=kms-enroll@example.org
is "$(tok_status frank@example.org)" "used/0" "frank's token is used"

# --- CSRs -----------------------------------------------------------------
openssl req -new -newkey rsa:2048 -nodes -subj /CN=x -keyout g.key -out g.csr 2>/dev/null || bail "openssl req"
openssl req -in g.csr -outform DER -out g.der || bail "CSR to DER"
G=$(enroll grace@example.org) || bail "enroll grace"
mail grace.eml grace@example.org "$(printf 'Token: %s\n\nMy request:\n\n%s\n' "$G" "$(cat g.csr)")"
check "a reply with a pasted PEM CSR is accepted" send grace.eml -D from=grace@example.org -D expect=discard
check "payload.csr is the CSR's DER" python3 -c '
import json,sys,base64; p=json.loads(sys.argv[1])
assert base64.b64decode(p["csr"]) == open(sys.argv[2],"rb").read(), "csr differs"' "$(payload "$(last_request grace@example.org)")" g.der

# attach ADDR TOKEN FILE NAME TYPE: a multipart reply with FILE attached in base64
attach() {
	printf 'From: <%s>\nTo: kms-enroll@example.org\nSubject: Re: enrollment\nMIME-Version: 1.0\n' "$1"
	printf 'Content-Type: multipart/mixed; boundary="xyz"\n\n--xyz\nContent-Type: text/plain; charset=us-ascii\nContent-Transfer-Encoding: quoted-printable\n\n'
	printf '> Token: %s\n\n--xyz\nContent-Type: %s; name="%s"\nContent-Disposition: attachment; filename="%s"\nContent-Transfer-Encoding: base64\n\n' "$2" "$5" "$4" "$4"
	base64 -w 76 "$3"
	printf '\n--xyz--\n'
}
H=$(enroll heidi@example.org) || bail "enroll heidi"
attach heidi@example.org "$H" g.csr request.csr application/octet-stream >heidi.eml
check "a reply with a .csr attachment (PEM) is accepted" send heidi.eml -D from=heidi@example.org -D expect=discard
check "payload.csr is the CSR's DER" python3 -c '
import json,sys,base64; p=json.loads(sys.argv[1])
assert base64.b64decode(p["csr"]) == open(sys.argv[2],"rb").read(), "csr differs"' "$(payload "$(last_request heidi@example.org)")" g.der

# a broken signature: flip the last byte (inside the signature) of the DER
python3 -c 'import sys; d=bytearray(open(sys.argv[1],"rb").read()); d[-1]^=0x55; open(sys.argv[2],"wb").write(d)' g.der bad.der
I=$(enroll ivan@example.org) || bail "enroll ivan"
attach ivan@example.org "$I" bad.der request.p10 application/pkcs10 >ivan-bad.eml
send ivan-bad.eml -D from=ivan@example.org -D expect=reject >/dev/null 2>&1
like "$T/milter.log" "address ivan@example.org: refused: certificate request: " "the CSR's problem is logged"
WHY=$(sed -n 's/.*address ivan@example.org: refused: certificate request: //p' "$T/milter.log" | head -1)
check "a CSR with a broken signature: 550 5.7.0 with the reason ($WHY)" refuse ivan-bad.eml \
	"certificate request refused: $WHY (the token was not used; send a valid request or none)" -D from=ivan@example.org
is "$(tok_status ivan@example.org)" "pending/0" "ivan's token is not consumed"
attach ivan@example.org "$I" g.der request.p10 application/pkcs10 >ivan.eml
check "the same token with a good DER .p10 is accepted" send ivan.eml -D from=ivan@example.org -D expect=discard
check "payload.csr is the DER" python3 -c '
import json,sys,base64; p=json.loads(sys.argv[1])
assert base64.b64decode(p["csr"]) == open(sys.argv[2],"rb").read(), "csr differs"' "$(payload "$(last_request ivan@example.org)")" g.der

# --- recovery tokens --------------------------------------------------------
J=$(enroll judy@example.org) || bail "enroll judy"
psql_kms "UPDATE tokens SET purpose = 'recover' WHERE user_id = (SELECT id FROM users WHERE address = 'judy@example.org') AND status = 'pending'"
attach judy@example.org "$J" g.csr request.csr application/octet-stream >judy.eml
check "a reply with a recovery token is accepted" send judy.eml -D from=judy@example.org -D expect=discard
RJ=$(last_request judy@example.org)
is "$(psql_kms "SELECT kind || ' ' || status || ' ' || (payload ? 'csr') FROM requests WHERE id = '$RJ'")" "recover queued false" \
	"a recover request is queued, without the CSR"

# --- another recipient in the same transaction ------------------------------
K=$(enroll ken@example.org) || bail "enroll ken"
mail ken.eml ken@example.org "Token: $K"
check "enroll address and bob: accepted for bob" send ken.eml -D from=ken@example.org \
	-D rcpt=bob@example.org,kms-enroll@example.org -D expect=accept -D deleted=kms-enroll@example.org
unlike "$T/out" "^deleted: bob@example.org" "bob stays a recipient"
is "$(tok_status ken@example.org)" "used/0" "ken's token is used"
mail plain.eml someone@example.org "nothing to see, Token: $K"
check "a plain message to bob alone is accepted at end of headers" send plain.eml -D from=someone@example.org -D rcpt=bob@example.org
like "$T/out" "^reply: early-accept" "without reading its body"

# --- require_auth with an auth_map ---------------------------------------------
printf '# login address\njdoe   laura@example.org\n' >"$T/authmap"
sed -i "s|^\[enrollment\]|[enrollment]\nrequire_auth = yes\nauth_map = $T/authmap|" "$CONF"
reload 1
L=$(enroll laura@example.org) || bail "enroll laura"
M=$(enroll mike@example.org) || bail "enroll mike"
mail laura.eml laura@example.org "Token: $L"
check "require_auth, no {auth_authen}: 550" refuse laura.eml "$AUTHREQ" -D from=laura@example.org
is "$(tok_status laura@example.org)" "pending/0" "laura's token is untouched"
check "require_auth, login jdoe mapped to laura: accepted" send laura.eml -D from=someone@example.net -D auth=jdoe -D expect=discard
is "$(tok_status laura@example.org)" "used/0" "laura's token is used"
check "payload.auth is the login" python3 -c 'import json,sys; p=json.loads(sys.argv[1]); assert p["auth"]=="jdoe" and p["reply_from"]=="someone@example.net", p' \
	"$(payload "$(last_request laura@example.org)")"
mail mike.eml mike@example.org "Token: $M"
check "require_auth, login jdoe with mike's token (right envelope sender): 550" refuse mike.eml "$AUTHUSER" -D from=mike@example.org -D auth=jdoe
EVIL='"x\",\"csr\":\"AAAA\\"@evil.example'
check "require_auth, login equal to the address (any case), hostile envelope sender: accepted" \
	send mike.eml -D from="$EVIL" -D auth=Mike@Example.org -D expect=discard
is "$(tok_status mike@example.org)" "used/1" "mike's token is used"
check "the hostile sender is a JSON string in the payload, nothing injected" python3 -c '
import json,sys; p=json.loads(sys.argv[1]); assert p["reply_from"]==sys.argv[2] and "csr" not in p and p["auth"]=="Mike@Example.org", p' \
	"$(payload "$(last_request mike@example.org)")" "$EVIL"

# --- no token in the log ------------------------------------------------------
fails=0
for t in $(cat "$T/all-tokens"); do
	for form in "$t" "$(echo "$t" | tr -d -)" "$(lower_nodash "$t")"; do
		grep -qi -- "$form" "$T/milter.log" && fails=$((fails + 1))
	done
done
is "$fails" 0 "no token (printed or normalised, any case) in the milter log ($(wc -l <"$T/all-tokens") tokens)"
like "$T/milter.log" "enroll reply from" "(the log does have the reply lines)"

kill -TERM "$MPID"; wait "$MPID"; rc=$?
is "$rc" 0 "kmsmilter exits 0 on SIGTERM (under ASan: no leak at exit)"
unlike "$T/milter.log" "LeakSanitizer|AddressSanitizer|runtime error" "no sanitizer report in the milter log"
done_testing
