#!/bin/sh
# The daemons start from the configuration, serve, and stop cleanly on
# SIGTERM: kmsmilter speaks the milter protocol (driven by miltertest) and
# accepts mail unchanged; kmsd registers as a live worker.
. "$top_srcdir/tests/lib.sh"
command -v miltertest >/dev/null || bail "miltertest not installed (Debian: miltertest)"
pg_start
CONF=$T/kms.conf
write_config "$CONF" "$(printf '[log]\nlevel = debug')"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sed -i "s|^socket = .*|socket = inet:$PORT@127.0.0.1|" "$CONF"

"$KMSMILTER" -c "$CONF" -f 2>"$T/milter.log" &
MPID=$!; bg_pids="$bg_pids $MPID"
n=0; while [ $n -lt 50 ] && ! grep -q "listening on" "$T/milter.log"; do sleep 0.1; n=$((n + 1)); done
like "$T/milter.log" "listening on inet:$PORT@127.0.0.1" "kmsmilter listens on the configured socket"

cat >"$T/accept.lua" <<'LUA'
conn = mt.connect("inet:" .. port .. "@127.0.0.1")
if conn == nil then error("mt.connect() failed") end
if mt.conninfo(conn, "client.example.org", "192.0.2.1") ~= nil then error("conninfo failed") end
if mt.mailfrom(conn, "alice@example.org") ~= nil then error("mailfrom failed") end
if mt.rcptto(conn, "bob@example.org") ~= nil then error("rcptto failed") end
if mt.header(conn, "From", "alice@example.org") ~= nil then error("header failed") end
if mt.header(conn, "Subject", "hello") ~= nil then error("header failed") end
if mt.eoh(conn) ~= nil then error("eoh failed") end
if mt.bodystring(conn, "plain text\r\n") ~= nil then error("body failed") end
if mt.eom(conn) ~= nil then error("eom failed") end
if mt.getreply(conn) ~= SMFIR_ACCEPT and mt.getreply(conn) ~= SMFIR_CONTINUE then error("not accepted") end
if mt.eom_check(conn, MT_HDRADD) or mt.eom_check(conn, MT_BODYCHANGE) then error("message was modified") end
mt.disconnect(conn)
LUA
check "miltertest: an unsigned message is accepted unchanged" miltertest -D port="$PORT" -s "$T/accept.lua"
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
