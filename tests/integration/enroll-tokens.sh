#!/bin/sh
# kmsctl enroll: one-time tokens stored only as hashes, token mails queued
# for kmsd (encrypted to its queue key), sent by kmsd through a real SMTP
# server (Postfix's smtp-sink) when it runs; out-of-band delivery; requests
# that wait while kmsd is down, retries while the MTA is down, expiry.
. "$top_srcdir/tests/lib.sh"
[ -x /usr/sbin/smtp-sink ] || bail "smtp-sink not found: install postfix (contrib/install-deps.sh does)"
pg_start
start_sink mail
CONF=$T/kms.conf
write_password "$T/pw" 'enroll test password'
write_config "$CONF" "$(printf '[mail]\nsubmit = smtp://127.0.0.1:%s\nfrom = kms@example.org\n[enrollment]\ntoken_ttl = 7d' "$PORT")"
kmsd_config "$CONF" "$T/pw"
"$KMSCTL" -c "$CONF" init --password-file "$T/pw" >/dev/null || bail "init failed"

# token_hash(TOKEN): what the vault must hold for a printed token
token_hash() { python3 -c '
import hashlib,sys; t=sys.argv[1].replace("-","").upper()
print(hashlib.sha256(b"kmsmilter-token-v1\0"+t.encode()).hexdigest())' "$1"; }
db_hash() { psql_kms "SELECT encode(t.token_hash,'hex') FROM tokens t JOIN users u ON u.id=t.user_id WHERE lower(u.address)=lower('$1') AND t.status='pending'"; }
mails_to() { grep -l -i "^To: $1" "$T"/mail/* 2>/dev/null; }
wait_mails() { # wait_mails N: until N mails are in the sink (10 s at most)
	n=0; while [ "$(ls "$T"/mail | wc -l)" -lt "$1" ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
}

check "enroll two users while kmsd is down" "$KMSCTL" -c "$CONF" enroll alice@example.org Bob@Example.ORG
like "$T/out" "enrolled 2 addresses, 0 failed" "enroll prints a summary"
unlike "$T/out" "Token:" "in mail mode no token is shown to the administrator"
is "$(psql_kms "SELECT count(*) FROM tokens WHERE status = 'pending' AND length(token_hash) = 32")" 2 "two tokens stored as 32-byte hashes"
is "$(psql_kms "SELECT address FROM users ORDER BY id" | tr '\n' ' ')" "alice@example.org Bob@example.org " "addresses stored with the domain in lower case"
check "status shows the waiting requests" "$KMSCTL" -c "$CONF" status --json
check "queue depth 2 and an age" python3 -c 'import json,sys; q=json.load(open(sys.argv[1]))["queue"]; assert q["depth"]==2 and q["oldest_age_seconds"] is not None, q' "$T/out"
is "$(ls "$T/mail" | wc -l)" 0 "no mail goes out while kmsd is down"

"$KMSD" -c "$CONF" -f 2>"$T/kmsd.log" &
KPID=$!; bg_pids="$bg_pids $KPID"
wait_mails 2
is "$(ls "$T/mail" | wc -l)" 2 "kmsd sends both token mails when it starts"
for a in alice@example.org bob@example.org; do
	f=$(mails_to "$a")
	[ -n "$f" ] && ok "a mail to $a" || { not_ok "a mail to $a"; continue; }
	like "$f" "^From: kms@example.org" "$a: From is [mail] from"
	like "$f" "^Reply-To: kms-enroll@example.org" "$a: Reply-To is the enroll address"
	like "$f" "^Subject: Your S/MIME certificate for " "$a: the subject from the template"
	TOKEN=$(sed -n 's/^Token: \([A-Z2-7-]*\).*/\1/p' "$f" | tr -d '\r')
	echo "$TOKEN" | grep -Eq '^[A-Z2-7]{5}(-[A-Z2-7]{5}){4}$' && ok "$a: Token line in five base32 groups" || not_ok "$a: Token line in five base32 groups ($TOKEN)"
	is "$(token_hash "$TOKEN")" "$(db_hash "$a")" "$a: the vault holds the hash of the mailed token"
	echo "$TOKEN" >>"$T/tokens"
done
[ "$(sort -u "$T/tokens" | wc -l)" = 2 ] && ok "the tokens differ" || not_ok "the tokens differ"
is "$(psql_kms "SELECT count(*) FROM requests WHERE status = 'done' AND NOT payload ? 'sealed_token'")" 2 "requests done, the sealed token dropped"
"$PG_BINDIR/pg_dump" -h "$PGSOCK" -U kmsdba kms >"$T/dump.sql"
for t in $(cat "$T/tokens"); do
	unlike "$T/dump.sql" "$t|$(echo "$t" | tr -d -)" "no mailed token in a pg_dump"
done
unlike "$T/kmsd.log" "$(head -1 "$T/tokens")" "no token in kmsd's log"

# out of band: the administrator gets the token, the mail does not have it
check "enroll --deliver out-of-band" "$KMSCTL" -c "$CONF" enroll --deliver out-of-band carol@example.org
OOB=$(sed -n 's/^Token: //p' "$T/out")
is "$(token_hash "$OOB")" "$(db_hash carol@example.org)" "the printed token is the one the vault holds"
wait_mails 3
f=$(mails_to carol@example.org)
like "$f" "XXXXX-XXXXX" "the out-of-band mail explains the reply"
unlike "$f" "$OOB" "and does not contain the token"

# re-enrolling cancels the previous token; --json; a bad address
OLD=$(db_hash alice@example.org)
check "re-enroll alice, with a bad address among others, --json" sh -c "'$KMSCTL' -c '$CONF' enroll --json alice@example.org 'not an address' dave@example.org; test \$? = 1"
check "JSON: 2 enrolled, 1 failed naming the address" python3 -c '
import json,sys; d=json.load(open(sys.argv[1])); assert d["enrolled"]==2 and d["failed"]==1, d
assert any(u.get("address")=="not an address" and "error" in u for u in d["users"]), d' "$T/out"
is "$(psql_kms "SELECT status FROM tokens WHERE encode(token_hash,'hex') = '$OLD'")" cancelled "alice's old token is cancelled"
is "$(psql_kms "SELECT count(*) FROM tokens t JOIN users u ON u.id=t.user_id WHERE u.address='alice@example.org' AND t.status='pending'")" 1 "one live token per user"

# the MTA goes away: the request waits with its error, then goes out
kill "$(echo $bg_pids | awk '{print $1}')" 2>/dev/null
sleep 0.3
check "enroll erin while the MTA is down" "$KMSCTL" -c "$CONF" enroll erin@example.org
n=0; while [ $n -lt 50 ] && [ "$(psql_kms "SELECT attempts FROM requests r JOIN users u ON u.id=r.user_id WHERE u.address='erin@example.org'")" = 0 ]; do sleep 0.2; n=$((n + 1)); done
is "$(psql_kms "SELECT r.status FROM requests r JOIN users u ON u.id=r.user_id WHERE u.address='erin@example.org'")" queued "the request stays queued"
like "$T/kmsd.log" "failed, will retry: cannot send mail via smtp://127.0.0.1:$PORT" "kmsd logs the failure and retries"

# expiry: a request that waited too long is expired with a mail to the user
kill -TERM "$KPID"; wait "$KPID"
is "$?" 0 "kmsd stops cleanly"
psql_kms "UPDATE requests SET expires_at = now() - interval '1 minute' WHERE status = 'queued'"
OLDPORT=$PORT
start_sink mail2
sed -i "s|smtp://127.0.0.1:$OLDPORT|smtp://127.0.0.1:$PORT|" "$CONF"
"$KMSD" -c "$CONF" -f 2>>"$T/kmsd.log" &
KPID=$!; bg_pids="$bg_pids $KPID"
n=0; while [ $n -lt 100 ] && ! grep -qs "expired" "$T"/mail2/* ; do sleep 0.1; n=$((n + 1)); done
f=$(grep -l -i "^To: erin@example.org" "$T"/mail2/* 2>/dev/null)
like "${f:-/dev/null}" "^Subject: Your key management request expired" "the user is told the request expired"
is "$(psql_kms "SELECT r.status FROM requests r JOIN users u ON u.id=r.user_id WHERE u.address='erin@example.org'")" expired "the request is expired, not sent"
like "$T/kmsd.log" "request [0-9]+ \(mail\) for erin@example.org expired unprocessed" "kmsd logs the expiry"

# a thousand addresses from a file
seq 1 1000 | sed 's/^/user/; s/$/@bulk.example.org/' >"$T/users.txt"
check "enroll --file with 1000 addresses" "$KMSCTL" -c "$CONF" enroll --deliver out-of-band --file "$T/users.txt"
is "$(grep -c '^Token: ' "$T/out")" 1000 "1000 tokens printed"
is "$(psql_kms "SELECT count(*) FROM users WHERE address LIKE '%@bulk.example.org'")" 1000 "1000 users"
is "$(psql_kms "SELECT count(*) FROM tokens t JOIN users u ON u.id = t.user_id WHERE u.address LIKE '%@bulk.example.org' AND t.status = 'pending'")" 1000 \
	"1000 pending tokens, one per user"
is "$(psql_kms "SELECT count(*) FROM requests r JOIN users u ON u.id = r.user_id WHERE u.address LIKE '%@bulk.example.org' AND r.kind = 'mail'")" 1000 \
	"1000 mail requests queued"
# the same user twice in one batch, spelt differently: one live token
printf 'twice@example.org\n<Twice@Example.org>\nonce@example.org\n' >"$T/twice.txt"
check "enroll --file naming one user twice in one batch" "$KMSCTL" -c "$CONF" enroll --file "$T/twice.txt"
is "$(psql_kms "SELECT count(*) FROM tokens t JOIN users u ON u.id = t.user_id WHERE lower(u.address) = 'twice@example.org' AND t.status = 'pending'")" 1 \
	"the user named twice has one live token"
is "$(psql_kms "SELECT count(*) FROM users WHERE lower(address) IN ('twice@example.org', 'once@example.org')")" 2 \
	"and one user row"
kill -TERM "$KPID"; wait "$KPID"
done_testing
