# Shared shell helpers for the integration tests: TAP output, a private
# PostgreSQL cluster per test (initdb + pg_ctl on a socket directory, no
# TCP), configuration and password files. Sourced, never run.
#
# Every test script: . "$top_srcdir/tests/lib.sh"; pg_start; ...; done_testing

set -u

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${top_builddir:=$top_srcdir}"
KMSCTL="$top_builddir/keyvault/kmsctl"
KMSD="$top_builddir/keyvault/kmsd"
KMSMILTER="$top_builddir/milter/kmsmilter"
VAULTTOOL="$top_builddir/tests/vaulttool"

if [ -z "${PG_BINDIR:-}" ]; then
	for d in /usr/lib/postgresql/*/bin; do
		[ -x "$d/initdb" ] && PG_BINDIR=$d
	done
fi

T=$(mktemp -d /tmp/kmstest.XXXXXX)
chmod 0711 "$T"
tap_n=0
tap_failed=0
pg_running=
bg_pids=
extra_cleanup=	# shell code a test wants run first at exit (e.g. stopping a daemon)

cleanup() {
	[ -n "$extra_cleanup" ] && eval "$extra_cleanup"
	for p in $bg_pids; do
		kill "$p" 2>/dev/null
	done
	[ -n "$pg_running" ] && pg_stop
	rm -rf "$T"
}
trap cleanup EXIT
trap "exit 1" INT TERM HUP PIPE

# --- TAP -------------------------------------------------------------------
ok() { tap_n=$((tap_n + 1)); echo "ok $tap_n - $*"; }
not_ok() { tap_n=$((tap_n + 1)); tap_failed=$((tap_failed + 1)); echo "not ok $tap_n - $*"; }
diag() { printf '%s\n' "$@" | sed 's/^/# /'; }
done_testing() { echo "1..$tap_n"; exit 0; }
skip_all() { echo "1..0 # SKIP $*"; exit 0; }
bail() { echo "Bail out! $*"; exit 1; }

# check DESC CMD...: passes when CMD exits 0. Its stdout and stderr land in
# $T/out and $T/err once it has finished, so CMD may read the previous ones.
check() {
	local desc=$1 rc; shift
	"$@" >"$T/out.new" 2>"$T/err.new"; rc=$?
	mv "$T/out.new" "$T/out"; mv "$T/err.new" "$T/err"
	if [ "$rc" = 0 ]; then ok "$desc"; else
		not_ok "$desc"; diag "command: $*" "exit: $rc"; diag "$(cat "$T/out" "$T/err" | head -20)"
	fi
}

# expect_exit CODE DESC CMD...: passes when CMD exits with CODE; its stderr
# is kept in $T/err and stdout in $T/out for further checks.
expect_exit() {
	local want=$1 desc=$2 got; shift 2
	"$@" >"$T/out.new" 2>"$T/err.new"; got=$?
	mv "$T/out.new" "$T/out"; mv "$T/err.new" "$T/err"
	if [ "$got" = "$want" ]; then ok "$desc"; else
		not_ok "$desc"; diag "command: $*" "exit $got, want $want"; diag "$(cat "$T/out" "$T/err" | head -20)"
	fi
}

# like FILE REGEX DESC: passes when FILE has a line matching REGEX (grep -E).
like() {
	if grep -Eq -- "$2" "$1"; then ok "$3"; else
		not_ok "$3"; diag "no line matching /$2/ in:"; diag "$(head -20 "$1")"
	fi
}
unlike() {
	if grep -Eq -- "$2" "$1"; then
		not_ok "$3"; diag "unexpected line matching /$2/:"; diag "$(grep -E -- "$2" "$1" | head -5)"
	else ok "$3"; fi
}
# one_line FILE DESC: FILE holds exactly one non-empty line.
one_line() {
	local n; n=$(grep -c . "$1")
	if [ "$n" = 1 ]; then ok "$2"; else not_ok "$2"; diag "$n lines:"; diag "$(head -10 "$1")"; fi
}
is() { if [ "$1" = "$2" ]; then ok "$3"; else not_ok "$3"; diag "got '$1', want '$2'"; fi; }

# --- PostgreSQL -------------------------------------------------------------
# initdb refuses to run as root; then the cluster runs as an unprivileged
# account and root still reaches the socket.
as_pg() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u "$PG_USER" -- "$@"
	else
		"$@"
	fi
}

pg_start() {
	[ -x "$PG_BINDIR/initdb" ] || bail "initdb not found (install postgresql; PG_BINDIR=$PG_BINDIR)"
	PG_USER=postgres
	id -u "$PG_USER" >/dev/null 2>&1 || PG_USER=nobody
	PGDIR=$T/pg
	PGSOCK=$PGDIR/sock
	mkdir -p "$PGSOCK"
	[ "$(id -u)" = 0 ] && chown -R "$PG_USER" "$PGDIR"
	as_pg "$PG_BINDIR/initdb" -D "$PGDIR/data" -U kmsdba --auth=trust -E UTF8 \
		--no-instructions >"$PGDIR/initdb.log" 2>&1 || { cat "$PGDIR/initdb.log"; bail "initdb failed"; }
	as_pg "$PG_BINDIR/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/server.log" -w -t 60 \
		-o "-k $PGSOCK -c listen_addresses= -c fsync=off -c unix_socket_permissions=0700" \
		start >/dev/null || { cat "$PGDIR/server.log"; bail "pg_ctl start failed"; }
	pg_running=1
	"$PG_BINDIR/createdb" -h "$PGSOCK" -U kmsdba kms || bail "createdb failed"
	DSN="host=$PGSOCK dbname=kms user=kmsdba"
}

pg_stop() {
	as_pg "$PG_BINDIR/pg_ctl" -D "$PGDIR/data" -m immediate -w stop >/dev/null 2>&1
	pg_running=
}

# psql_kms SQL: run SQL in the vault database as the superuser, quietly.
psql_kms() {
	"$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -At -h "$PGSOCK" -U kmsdba -d "${PGDATABASE_KMS:-kms}" -c "$1"
}

# log_statements LEVEL: set the cluster's log_statement (none, all...) and
# wait until new sessions see it (the server logs into $PGDIR/server.log).
log_statements() {
	local i=0
	psql_kms "ALTER SYSTEM SET log_statement = '$1'" && psql_kms "SELECT pg_reload_conf()" >/dev/null ||
		return 1
	until [ "$(psql_kms "SHOW log_statement")" = "$1" ]; do
		i=$((i + 1))
		[ $i -gt 50 ] && return 1
		sleep 0.1
	done
}
# log_mark: where the server log ends now, for
# logged_count MARK REGEX: how many statements run since MARK match REGEX
# (grep -E on their text as log_statement = all logs them).
log_mark() { wc -l <"$PGDIR/server.log"; }
logged_count() {
	tail -n +"$(($1 + 1))" "$PGDIR/server.log" | grep -cE "LOG: +(statement|execute [^:]*): .*$2"
}

# write_config FILE [EXTRA-INI]: a configuration for the private cluster.
write_config() {
	{
		printf '[vault]\ndsn = %s\n' "$DSN"
		printf '[milter]\nsocket = unix:%s/milter.sock\n' "$T"
		printf '[kms]\nheartbeat = 1s\n'
		printf '%s\n' "${2:-}"
	} >"$1"
}

# kmsd_config CONF PASSWORD_FILE: add to a write_config file what kmsd
# needs: the enroll address its mails name, its startup password file.
kmsd_config() {
	sed -i "s|^\[milter\]|[milter]\nenroll_address = kms-enroll@example.org|; s|^\[kms\]|[kms]\nstartup_password_file = $2|" "$1"
}

# wait_for SECONDS CMD...: until CMD succeeds (output dropped), polling
# every 0.1 s; 1 when it still fails after SECONDS.
wait_for() {
	local n=0 max=$(($1 * 10)); shift
	until "$@" >/dev/null 2>&1; do
		n=$((n + 1)); [ $n -ge $max ] && return 1; sleep 0.1
	done
}

# free_port: a TCP port on 127.0.0.1 nobody listens on right now.
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_milter CONF LOG: run kmsmilter in the foreground in the background,
# wait until it listens; sets MPID.
start_milter() {
	"$KMSMILTER" -c "$1" -f 2>"$2" &
	MPID=$!
	bg_pids="$bg_pids $MPID"
	n=0
	while [ $n -lt 100 ] && ! grep -q "listening on" "$2"; do sleep 0.1; n=$((n + 1)); done
}

# start_sink NAME [OPTIONS...]: an smtp-sink dumping into $T/NAME; sets PORT.
start_sink() {
	local name=$1 i=0; shift
	mkdir "$T/$name"
	PORT=$(free_port)
	if [ "$(id -u)" = 0 ]; then
		chown nobody "$T/$name"
		set -- -u nobody "$@"
	fi
	"${SINK:-/usr/sbin/smtp-sink}" "$@" -d "$T/$name/%Y%m%d%H%M%S." "127.0.0.1:$PORT" 10 >"$T/$name.log" 2>&1 &
	bg_pids="$bg_pids $!"
	until python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 1)" 2>/dev/null; do
		i=$((i + 1))
		[ $i -gt 50 ] && bail "smtp-sink did not start: $(cat "$T/$name.log")"
		sleep 0.1
	done
}

# write_password FILE PASSWORD: one line, mode 0600.
# start_smtp_log MODE: tests/smtp-log.py in MODE, logging into $T/MODE (a
# new directory); sets PORT.
start_smtp_log() {
	local i=0
	mkdir "$T/$1"
	PORT=$(free_port)
	python3 "$top_srcdir/tests/smtp-log.py" "$1" "$PORT" "$T/$1" 2>"$T/$1.err" &
	bg_pids="$bg_pids $!"
	until grep -q "^0 listening$" "$T/$1/log" 2>/dev/null; do
		i=$((i + 1))
		[ $i -gt 50 ] && bail "smtp-log.py did not start: $(cat "$T/$1.err")"
		sleep 0.1
	done
}
# events MODE WHAT: how many WHAT events the smtp-log.py in MODE logged.
events() { grep -c " $2\$" "$T/$1/log"; }

write_password() {
	(umask 077; printf '%s\n' "$2" >"$1")
}
