#!/bin/sh
# Harvesting rules through the real milter protocol: capability history by
# signing time (an older signature never overwrites newer data), one row per
# certificate however often it is seen, messages spooled to a file, the
# hard size limit, and what happens to mail when the vault is down
# (on_db_error = accept, then tempfail).
. "$top_srcdir/tests/lib.sh"
command -v miltertest >/dev/null || bail "miltertest not installed (Debian: miltertest)"
SIGNER="$top_builddir/tests/smime-signer"
pg_start
CONF=$T/kms.conf
write_config "$CONF" "$(printf '[log]\nlevel = info')"
PORT=$(free_port)
sed -i "s|^socket = .*|socket = inet:$PORT@127.0.0.1\ndsn = host=$PGSOCK dbname=kms user=kms_milter\nsystem_trust = no\nmax_message_size = 1m\nspool_memory = 16k\ndb_timeout = 2s\nseen_refresh = 0|" "$CONF"
write_password "$T/pw" 'rules test password'
"$KMSCTL" -c "$CONF" init --password-file "$T/pw" >/dev/null || bail "init failed"

# a CA and a signer, trusted through the trust list
cd "$T" || bail "no temp dir"
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -subj "/CN=Rules Test CA" -days 30 \
	-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null || bail "CA"
openssl req -new -newkey rsa:2048 -nodes -keyout s.key -out s.csr -subj "/CN=Sam" 2>/dev/null || bail "CSR"
printf 'subjectAltName=email:sam@example.org\nextendedKeyUsage=emailProtection\nkeyUsage=digitalSignature,keyEncipherment\n' >ext
openssl x509 -req -in s.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out s.pem -days 30 -extfile ext 2>/dev/null || bail "cert"
"$KMSCTL" -c "$CONF" ctl add ca.pem >/dev/null || bail "ctl add"
SHA=$(openssl x509 -in s.pem -outform DER | sha256sum | cut -c1-64)

# sign NAME CAPS [BODY-BYTES]: a message from sam with these capabilities
sign() {
	{
		printf 'Content-Type: text/plain\r\n\r\nhello from sam\r\n'
		[ -n "${3:-}" ] && head -c "$3" /dev/zero | tr '\0' 'x' | fold -w 76 | sed 's/$/\r/'
	} >"$1.content"
	{
		printf 'From: Sam <sam@example.org>\r\nTo: rcpt@example.org\r\nSubject: %s\r\n' "$1"
		"$SIGNER" --cert s.pem --key s.key --caps "$2" <"$1.content"
	} >"$1.eml" || bail "smime-signer failed"
}
send() { miltertest -D sock="inet:$PORT@127.0.0.1" -D file="$1" ${2:+-D expect=$2} -s "$top_srcdir/tests/milter-send.lua"; }
caps() { "$KMSCTL" -c "$CONF" cert list --json | python3 -c '
import json,sys; c=[x for x in json.load(sys.stdin) if x["sha256"]==sys.argv[1]]
print(",".join(c[0]["capabilities"] or []) if c else "NONE")' "$SHA"; }

sign older aes128-cbc
sleep 1.2	# signingTime has one-second resolution
sign newer aes256-gcm,aes256-cbc
sleep 1.2
sign newest aes128-gcm

start_milter "$CONF" "$T/milter.log"

check "the newer signature is harvested" send newer.eml
is "$(caps)" "aes256-gcm,aes256-cbc" "capabilities are the newer signature's"
check "an older signature arrives afterwards" send older.eml
is "$(caps)" "aes256-gcm,aes256-cbc" "the older signature did not overwrite newer data"
is "$(psql_kms "SELECT count(*) FROM capabilities")" 2 "both announcements are kept as history"
check "the newest signature arrives" send newest.eml
is "$(caps)" "aes128-gcm" "the newest signature's capabilities win"
FIRST=$(psql_kms "SELECT last_seen FROM certificates WHERE sha256 = '$SHA'")
sleep 1
check "the same message again" send newest.eml
is "$(psql_kms "SELECT count(*) FROM certificates WHERE sha256 = '$SHA'")" 1 "the certificate is stored once"
is "$(psql_kms "SELECT count(*) FROM capabilities")" 3 "a repeated signature adds no history row"
[ "$(psql_kms "SELECT last_seen > '$FIRST' FROM certificates WHERE sha256 = '$SHA'")" = t ] &&
	ok "last_seen moves on" || not_ok "last_seen moves on"
is "$(psql_kms "SELECT status FROM certificates WHERE sha256 = '$SHA'")" trusted "status trusted through the trust list"

# seen_refresh: a signature recorded lately is not written again
sed -i 's/^seen_refresh = 0$/seen_refresh = 1h/' "$CONF"
kill -HUP "$MPID"
n=0; while [ $n -lt 50 ] && [ "$(grep -c 'configuration reloaded' "$T/milter.log")" -lt 1 ]; do sleep 0.1; n=$((n + 1)); done
check "with seen_refresh = 1h the message is recorded once more" send newest.eml
SEEN=$(psql_kms "SELECT last_seen FROM certificates WHERE sha256 = '$SHA'")
sleep 1
check "and sent again" send newest.eml
is "$(psql_kms "SELECT last_seen FROM certificates WHERE sha256 = '$SHA'")" "$SEEN" "the vault was not written for a signature just recorded"
sed -i 's/^seen_refresh = 1h$/seen_refresh = 0/' "$CONF"
kill -HUP "$MPID"
n=0; while [ $n -lt 50 ] && [ "$(grep -c 'configuration reloaded' "$T/milter.log")" -lt 2 ]; do sleep 0.1; n=$((n + 1)); done

# bigger than spool_memory (16k): spooled to an unlinked file, still harvested
psql_kms "SET client_min_messages = warning; TRUNCATE certificates, certificate_addresses, capabilities CASCADE"
sign spooled aes256-cbc 200000
check "a 200 KB signed message (spooled to a file) is accepted" send spooled.eml
is "$(caps)" "aes256-cbc" "and harvested"
ls -la /proc/$MPID/fd 2>/dev/null | grep -q 'kmsmilter\.' && not_ok "no spool file left open" || ok "no spool file left open"

# bigger than max_message_size (1m): passed through untouched, logged
psql_kms "SET client_min_messages = warning; TRUNCATE certificates, certificate_addresses, capabilities CASCADE"
sign huge aes256-cbc 1200000
check "a message over max_message_size is accepted" send huge.eml
like "$T/milter.log" "message larger than max_message_size \(1048576 bytes\): passed through untouched" "and the documented line is logged"
is "$(caps)" NONE "and nothing was harvested from it"

# the vault goes away: on_db_error = accept (default) lets mail through
pg_stop
check "vault down, on_db_error = accept: the signed message is accepted" send newest.eml
like "$T/milter.log" "cannot record harvested certificates: .*; message accepted \(on_db_error = accept\)" "and the failure is logged"
sed -i "s|^system_trust = no|system_trust = no\non_db_error = tempfail|" "$CONF"
kill -HUP "$MPID"
n=0; while [ $n -lt 50 ] && [ "$(grep -c 'configuration reloaded' "$T/milter.log")" -lt 3 ]; do sleep 0.1; n=$((n + 1)); done
check "vault down, on_db_error = tempfail: the signed message gets 451" send newest.eml tempfail
like "$T/milter.log" "message deferred \(on_db_error = tempfail\)" "and the deferral is logged"
check "an unsigned message is still accepted with the vault down" send "$top_srcdir/tests/integration/harvest-rules.sh"
kill -0 "$MPID" 2>/dev/null && ok "kmsmilter still runs" || not_ok "kmsmilter still runs"
kill -TERM "$MPID"; wait "$MPID"; rc=$?
is "$rc" 0 "kmsmilter exits 0 on SIGTERM (under ASan: no leak at exit)"
unlike "$T/milter.log" "LeakSanitizer|AddressSanitizer|runtime error" "no sanitizer report in the milter log"
done_testing
