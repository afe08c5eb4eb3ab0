#!/bin/sh
# quickstart.sh: on a fresh Debian 12 machine, install what is missing,
# build kmsmilter, start a private PostgreSQL vault under ./state (a socket
# directory, no TCP, no system service), initialise it with a generated
# startup password kept in a 0600 file, start kmsd and kmsmilter, show them
# working, and print the line for Postfix's main.cf.
#
#   contrib/quickstart.sh         set up and start (again) everything
#   contrib/quickstart.sh stop    stop the daemons and the private cluster
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
state=$top/state
port=${KMS_MILTER_PORT:-8891}
build=$top/build
pgdir=$state/pg
sock=$pgdir/sock

as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
pgbin() { for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && b=$d; done; echo "$b"; }
# stop_pid FILE: stop the daemon named in FILE and wait until it is gone.
stop_pid() {
	[ -f "$1" ] || return 0
	p=$(cat "$1")
	if kill "$p" 2>/dev/null; then
		n=0; while kill -0 "$p" 2>/dev/null && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
	fi
	rm -f "$1"
}

if [ "${1:-}" = stop ]; then
	stop_pid "$state/kmsmilter.pid"; stop_pid "$state/kmsd.pid"
	[ -d "$pgdir/data" ] && as_pg "$(pgbin)/pg_ctl" -D "$pgdir/data" -w stop >/dev/null 2>&1
	echo "stopped (state kept in $state; remove it to start over)"
	exit 0
fi

echo "== installing missing packages"
"$top/contrib/install-deps.sh" || exit 1
PG_BINDIR=$(pgbin)

echo "== building"
cd "$top" || exit 1
[ -x configure ] || autoreconf -fi >/dev/null || exit 1
mkdir -p "$build" && cd "$build" || exit 1
[ -f Makefile ] || "$top/configure" >configure.out 2>&1 || { tail -20 configure.out; exit 1; }
make -j"$(nproc)" >make.out 2>&1 || { tail -30 make.out; exit 1; }
KMSCTL=$build/keyvault/kmsctl

echo "== private PostgreSQL vault in $pgdir"
mkdir -p "$state" && chmod 0711 "$state"
if [ ! -d "$pgdir/data" ]; then
	mkdir -p "$sock"
	[ "$(id -u)" = 0 ] && chown -R postgres "$pgdir"
	as_pg "$PG_BINDIR/initdb" -D "$pgdir/data" -U kmsdba --auth=trust -E UTF8 --no-instructions \
		>"$state/initdb.log" 2>&1 || { cat "$state/initdb.log"; exit 1; }
fi
if ! as_pg "$PG_BINDIR/pg_ctl" -D "$pgdir/data" status >/dev/null 2>&1; then
	as_pg "$PG_BINDIR/pg_ctl" -D "$pgdir/data" -l "$pgdir/server.log" -w \
		-o "-k $sock -c listen_addresses= -c unix_socket_permissions=0700" start >/dev/null ||
		{ cat "$pgdir/server.log"; exit 1; }
fi
"$PG_BINDIR/psql" -h "$sock" -U kmsdba -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = 'kms'" |
	grep -q 1 || "$PG_BINDIR/createdb" -h "$sock" -U kmsdba kms || exit 1

conf=$state/kmsmilter.conf
if [ ! -f "$conf" ]; then
	cat >"$conf" <<CONF
# Written by contrib/quickstart.sh; see kmsmilter.conf(5).
[vault]
dsn = host=$sock dbname=kms user=kmsdba

[milter]
socket = inet:$port@127.0.0.1
pid_file = $state/kmsmilter.pid

[kms]
startup_password_file = $state/startup.pw
pid_file = $state/kmsd.pid
CONF
fi
if [ ! -f "$state/startup.pw" ]; then
	(umask 077; openssl rand -base64 24 >"$state/startup.pw")
fi

echo "== kmsctl init"
if "$KMSCTL" -c "$conf" status >/dev/null 2>&1; then
	echo "vault already initialised"
else
	"$KMSCTL" -c "$conf" init --password-file "$state/startup.pw" || exit 1
fi

echo "== starting kmsd and kmsmilter (logs in $state/*.log)"
stop_pid "$state/kmsmilter.pid"; stop_pid "$state/kmsd.pid"
nohup "$build/keyvault/kmsd" -c "$conf" -f >>"$state/kmsd.log" 2>&1 &
nohup "$build/milter/kmsmilter" -c "$conf" -f >>"$state/kmsmilter.log" 2>&1 &
n=0
while [ $n -lt 50 ]; do
	"$KMSCTL" -c "$conf" status --json 2>/dev/null | grep -q '"workers" : 1' &&
		grep -q "listening on" "$state/kmsmilter.log" && break
	sleep 0.2; n=$((n + 1))
done

echo "== kmsctl status"
"$KMSCTL" -c "$conf" status || exit 1
grep -q "listening on" "$state/kmsmilter.log" || { tail -5 "$state/kmsmilter.log"; exit 1; }
echo
echo "kmsmilter is listening. Add to Postfix's main.cf:"
echo "  smtpd_milters = inet:127.0.0.1:$port"
echo "  non_smtpd_milters = inet:127.0.0.1:$port"
echo "  milter_default_action = accept"
echo
echo "The startup password is in $state/startup.pw (mode 0600): keep a copy offline."
echo "Stop everything with: contrib/quickstart.sh stop"
