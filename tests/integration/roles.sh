#!/bin/sh
# kmsctl init creates the three roles; kms_milter (the role of the process
# that parses hostile mail) cannot read any sealed column, while it can
# read and record public certificates. kms_service (kmsd) can read what it
# needs to unseal.
. "$top_srcdir/tests/lib.sh"
pg_start
CONF=$T/kms.conf
write_config "$CONF"
write_password "$T/pw" 'roles test password'
"$KMSCTL" -c "$CONF" init --password-file "$T/pw" >/dev/null || bail "init failed"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T/k.key" 2>/dev/null
"$VAULTTOOL" -c "$CONF" -p "$T/pw" escrow erin@example.org "$T/k.key" >/dev/null || bail "escrow failed"

as_role() { # as_role ROLE SQL
	"$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -At -h "$PGSOCK" -U "$1" -d kms -c "$2"
}
for r in kms_milter kms_service kms_admin; do
	is "$(psql_kms "SELECT count(*) FROM pg_roles WHERE rolname = '$r'")" 1 "role $r exists"
done

for q in "SELECT sealed_key FROM escrowed_keys" "SELECT * FROM escrowed_keys" \
	"SELECT sealed_key FROM ca" "SELECT wrapped_key FROM vault_seal" \
	"SELECT sealed_private FROM admins" "SELECT sealed_private FROM queue_key" \
	"SELECT sealed_pin FROM tokens" "SELECT * FROM tokens" \
	"UPDATE escrowed_keys SET key_type = 'x'" "DELETE FROM audit"; do
	expect_exit 1 "kms_milter is refused: $q" as_role kms_milter "$q"
	like "$T/err" "permission denied" "  ... with permission denied"
done
check "kms_milter reads certificates" as_role kms_milter "SELECT count(*) FROM certificates"
check "kms_milter reads token hashes to check replies" as_role kms_milter "SELECT token_hash, status FROM tokens"
check "kms_milter reads the queue key's public half" as_role kms_milter "SELECT public_key FROM queue_key"
check "kms_milter records a harvested certificate" as_role kms_milter \
	"INSERT INTO certificates (source, status, sha256, serial, subject, issuer, not_before, not_after, der) VALUES ('harvested', 'trusted', repeat('a', 64), '01', 'CN=x', 'CN=y', now(), now(), '\\x00')"
check "kms_milter queues a request" as_role kms_milter \
	"INSERT INTO requests (kind, expires_at) VALUES ('enroll', now() + interval '1 day')"
check "kms_service reads sealed keys (it holds the vault key)" as_role kms_service "SELECT count(*) FROM escrowed_keys"
is "$(cat "$T/out")" 1 "  ... and sees the escrowed row"
check "kms_service reads the wrapped vault key" as_role kms_service "SELECT count(*) FROM vault_seal"

# the daemons' DSNs: kmsd runs as kms_service through [kms] dsn
write_config "$T/svc.conf" "$(printf '[log]\nlevel = info')"
sed -i "s|^\[kms\]|[kms]\ndsn = host=$PGSOCK dbname=kms user=kms_service\nstartup_password_file = $T/pw|" "$T/svc.conf"
"$KMSD" -c "$T/svc.conf" -f 2>"$T/kmsd.log" &
KPID=$!; bg_pids="$bg_pids $KPID"
n=0; while [ $n -lt 50 ] && ! grep -qs "ready" "$T/kmsd.log"; do sleep 0.2; n=$((n + 1)); done
like "$T/kmsd.log" "ready" "kmsd unseals and runs as kms_service"
is "$(psql_kms "SELECT count(*) FROM pg_stat_activity WHERE usename = 'kms_service' AND application_name = 'kmsd'")" 1 "kmsd is connected as kms_service"
kill -TERM "$KPID"; wait "$KPID"
is "$?" 0 "kmsd stops cleanly"
done_testing
