#!/bin/sh
# The daemons start from the configuration, serve, and stop cleanly on
# SIGTERM: kmsmilter speaks the milter protocol (driven by miltertest) and
# accepts mail unchanged; kmsd registers as a live worker.
. "$top_srcdir/tests/lib.sh"
command -v miltertest >/dev/null || bail "miltertest not installed (Debian: miltertest)"
pg_start
CONF=$T/kms.conf
write_config "$CONF" "$(printf '[log]\nlevel = debug')"
PORT=$(free_port)
sed -i "s|^socket = .*|socket = inet:$PORT@127.0.0.1|" "$CONF"

start_milter "$CONF" "$T/milter.log"
like "$T/milter.log" "listening on inet:$PORT@127.0.0.1" "kmsmilter listens on the configured socket"

printf 'From: alice@example.org\r\nTo: bob@example.org\r\nSubject: hello\r\n\r\nplain text\r\n' >"$T/plain.eml"
printf 'From: alice@example.org\r\nTo: bob@example.org\r\nSubject: parts\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\none\r\n--b1--\r\n' >"$T/multi.eml"
send() { miltertest -D sock="inet:$PORT@127.0.0.1" -D file="$1" -s "$top_srcdir/tests/milter-send.lua"; }
check "miltertest: an unsigned plain message is accepted unchanged" send "$T/plain.eml"
check "miltertest: an unsigned multipart message is accepted unchanged" send "$T/multi.eml"

# SIGHUP: a valid file is swapped in, an invalid one refused; it keeps serving
sed -i 's/^level = debug$/level = info/' "$CONF"
kill -HUP "$MPID"
n=0; while [ $n -lt 50 ] && ! grep -q "configuration reloaded" "$T/milter.log"; do sleep 0.1; n=$((n + 1)); done
like "$T/milter.log" "configuration reloaded from $CONF" "SIGHUP reloads the configuration"
kill -0 "$MPID" 2>/dev/null && ok "kmsmilter still runs after SIGHUP" || not_ok "kmsmilter still runs after SIGHUP"
check "it still serves after the reload" send "$T/multi.eml"
cp "$CONF" "$T/good.conf"
printf '[bogus]\nkey = 1\n' >>"$CONF"
kill -HUP "$MPID"
n=0; while [ $n -lt 50 ] && ! grep -q "reload refused" "$T/milter.log"; do sleep 0.1; n=$((n + 1)); done
like "$T/milter.log" "reload refused, keeping the running configuration: .*kms.conf:[0-9]+: unknown section \[bogus\]" "an invalid file is refused with file:line"
check "and it still serves with the old configuration" send "$T/multi.eml"
cp "$T/good.conf" "$CONF"
kill -TERM "$MPID"; wait "$MPID"; rc=$?
is "$rc" 0 "kmsmilter exits 0 on SIGTERM"

# unix socket form
sed -i "s|^socket = .*|socket = unix:$T/milter.sock|" "$CONF"
"$KMSMILTER" -c "$CONF" -f 2>"$T/milter2.log" &
MPID=$!; bg_pids="$bg_pids $MPID"
n=0; while [ $n -lt 50 ] && [ ! -S "$T/milter.sock" ]; do sleep 0.1; n=$((n + 1)); done
[ -S "$T/milter.sock" ] && ok "kmsmilter listens on a unix socket" || not_ok "kmsmilter listens on a unix socket"
kill -TERM "$MPID"; wait "$MPID"; rc=$?
is "$rc" 0 "kmsmilter on a unix socket exits 0 on SIGTERM"

# a socket it cannot open
sed -i "s|^socket = .*|socket = unix:$T/no/such/dir/milter.sock|" "$CONF"
expect_exit 1 "kmsmilter exits 1 when it cannot open its socket" "$KMSMILTER" -c "$CONF" -f
like "$T/err" "cannot listen on unix:$T/no/such/dir/milter.sock" "and names the socket"
done_testing
