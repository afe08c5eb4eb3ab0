#!/bin/bash
# run-enroll.sh - bulk enrollment: kmsctl enroll --file with many addresses (issue 4)
#
#   bench/run-enroll.sh [-r RUNS] [-n ADDRESSES] [-o FILE] [-k KMSCTL] [-b]
#
# Builds the project (in build/, or $top_builddir), writes ADDRESSES
# distinct addresses (user000001.n1@dept01.example.org ..., over 50
# domains), starts a private PostgreSQL cluster (tests/lib.sh pg_start,
# then fsync switched back on: the commits are real) and, RUNS rounds, on
# a fresh database each time (kmsctl init):
#   enroll    `kmsctl enroll --file users.txt` in mail mode, kmsd not
#             running: per address a user, a token (hash only) and a queued
#             'mail' request carrying the token sealed to kmsd's queue key.
#             Afterwards the vault must hold exactly ADDRESSES users,
#             ADDRESSES pending tokens (one per user) and ADDRESSES queued
#             'mail' requests with a sealed token; the script fails loudly
#             otherwise.
#   baseline  the same rows written by psql with set-based SQL (\copy of
#             the address file, then one INSERT ... SELECT per table, one
#             transaction): no crypto, no per-address logic, the least the
#             database has to do to store what enroll stores (same tables,
#             indexes, constraints, jsonb payloads of the same size).
# Enroll and baseline alternate order every other round. Measured: wall
# time, CPU time of the client (kmsctl or psql, /usr/bin/time) and of the
# PostgreSQL server (postmaster, its children and reaped children, from
# /proc). Medians over the rounds; the ratio enroll ÷ baseline is taken per
# round. -k measures another kmsctl binary (e.g. an older build) against
# the same cluster. Prints a Markdown section (also to FILE with -o); raw
# results are kept in $top_builddir/bench/last-enroll/. -b: build only.
# Defaults: 3 rounds of 100,000 addresses; about 2 minutes.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
: "${top_builddir:=$top/build}"
top_srcdir=$top
export top_srcdir top_builddir

RUNS=3
N=100000
OUT=
CTL=
BUILD_ONLY=no
CMDLINE="bench/run-enroll.sh $*"
LOAD_BEFORE=$(cut -d" " -f1-3 /proc/loadavg)
while getopts "r:n:o:k:b" opt; do
	case $opt in
	r) RUNS=$OPTARG ;;
	n) N=$OPTARG ;;
	o) OUT=$OPTARG ;;
	k) CTL=$OPTARG ;;
	b) BUILD_ONLY=yes ;;
	*) echo "usage: bench/run-enroll.sh [-r RUNS] [-n ADDRESSES] [-o FILE] [-k KMSCTL] [-b]" >&2; exit 2 ;;
	esac
done
case $OUT in ''|/*) ;; *) OUT=$PWD/$OUT ;; esac
[ -x /usr/bin/time ] || { echo "run-enroll: /usr/bin/time is needed (apt-get install time)" >&2; exit 1; }

# --- build -------------------------------------------------------------------
if [ ! -f "$top_builddir/Makefile" ]; then
	(cd "$top" && { [ -x configure ] || autoreconf -fi >/dev/null; }) || exit 1
	mkdir -p "$top_builddir" &&
		(cd "$top_builddir" && "$top/configure" >configure.out 2>&1) ||
		{ echo "run-enroll: configure failed (see $top_builddir/configure.out)" >&2; exit 1; }
fi
make -C "$top_builddir" -j"$(nproc 2>/dev/null || echo 2)" >"$top_builddir/bench-make.out" 2>&1 ||
	{ tail -30 "$top_builddir/bench-make.out"; echo "run-enroll: build failed" >&2; exit 1; }
[ "$BUILD_ONLY" = yes ] && { echo "built $top_builddir/keyvault/kmsctl"; exit 0; }

. "$top/tests/lib.sh"
[ -n "$CTL" ] && KMSCTL=$CTL
KEEP=$top_builddir/bench/last-enroll
rm -rf "$KEEP" && mkdir -p "$KEEP"
say() { printf '%s\n' "$*" >&2; }
die() { say "run-enroll: FAILED: $*"; exit 1; }

# --- addresses, cluster --------------------------------------------------------
awk -v n="$N" 'BEGIN { for (i = 1; i <= n; i++) printf "user%06d.n%d@dept%02d.example.org\n", i, i % 7, i % 50 }' >"$T/users.txt"
[ "$(sort -u "$T/users.txt" | wc -l)" = "$N" ] || die "the address file does not hold $N distinct addresses"

say "starting PostgreSQL..."
pg_start >/dev/null
psql_kms "ALTER SYSTEM SET fsync = on" && psql_kms "SELECT pg_reload_conf()" >/dev/null || die "cannot switch fsync on"
write_password "$T/pw" 'bench startup password'
HZ=$(getconf CLK_TCK)
PGPID=$(head -1 "$PGDIR/data/postmaster.pid")
# pg_ticks: CPU clock ticks of the server: the postmaster with its reaped
# children (cutime, cstime) and the children alive now
pg_ticks() {
	local p s f
	f=$(cat "/proc/$PGPID/stat") || return 1
	f=${f##*) }
	set -- $f
	s=$((${12} + ${13} + ${14} + ${15}))
	for p in $(ps -o pid= --ppid "$PGPID"); do
		f=$(cat "/proc/$p/stat" 2>/dev/null) || continue
		f=${f##*) }
		set -- $f
		s=$((s + ${12} + ${13}))
	done
	echo "$s"
}
# no_backend DB: wait until no backend of DB is left (so its CPU is in the
# postmaster's cutime), 10 s at most
no_backend() {
	local i=0
	while ps -o args= --ppid "$PGPID" | grep -q " $1 "; do
		i=$((i + 1))
		[ $i -gt 100 ] && { say "a backend of $1 is still there"; return 1; }
		sleep 0.1
	done
}
# fresh DB: a new database with the vault schema; writes $T/DB.conf
fresh() {
	"$PG_BINDIR/createdb" -h "$PGSOCK" -U kmsdba "$1" || die "createdb $1"
	printf '[vault]\ndsn = host=%s dbname=%s user=kmsdba\n' "$PGSOCK" "$1" >"$T/$1.conf"
	"$KMSCTL" -c "$T/$1.conf" init --password-file "$T/pw" >"$KEEP/init-$1.log" 2>&1 ||
		{ cat "$KEEP/init-$1.log"; die "kmsctl init ($1)"; }
	# the database settles before the clock starts
	PGDATABASE_KMS=$1 psql_kms "CHECKPOINT" >/dev/null
}
q() { PGDATABASE_KMS=$1 psql_kms "$2"; }

cat >"$T/baseline.sql" <<'EOF'
CREATE TEMP TABLE x (i bigserial, a text);
\copy x (a) FROM 'users.txt'
BEGIN;
INSERT INTO users (address) SELECT a FROM x ORDER BY i;
INSERT INTO tokens (user_id, purpose, token_hash, expires_at)
	SELECT id, 'enroll', sha256(int8send(id)), now() + interval '7 days' FROM users ORDER BY id;
-- the payload kmsctl writes: template, token id, expiry, and a 90-byte
-- sealed token in base64 (120 characters)
INSERT INTO requests (kind, user_id, payload, expires_at)
	SELECT 'mail', user_id, jsonb_build_object('template', 'enroll', 'token_id', id,
	    'expires', to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI "UTC"'),
	    'sealed_token', translate(encode(sha256(token_hash) || sha256(int8send(-id))
	    || substr(token_hash, 1, 26), 'base64'), E'\n', '')),
	    now() + interval '1 day'
	FROM tokens ORDER BY id;
NOTIFY kms_requests;
COMMIT;
EOF

# verify DB: exactly N users, N pending tokens (one per user), N queued mails
verify() {
	local got
	got=$(q "$1" "SELECT (SELECT count(*) FROM users) || ' ' ||
		(SELECT count(*) FROM tokens WHERE status = 'pending' AND purpose = 'enroll') || ' ' ||
		(SELECT count(DISTINCT user_id) FROM tokens WHERE status = 'pending') || ' ' ||
		(SELECT count(*) FROM requests WHERE kind = 'mail' AND status = 'queued'
		    AND payload ? 'sealed_token' AND payload->>'sealed_token' IS NOT NULL) || ' ' ||
		(SELECT count(DISTINCT user_id) FROM requests WHERE kind = 'mail')")
	[ "$got" = "$N $N $N $N $N" ] ||
		die "$1: users, pending tokens, users with a pending token, queued mails with a sealed token, users with a mail: $got (want $N each)"
}

RAW=$KEEP/results.txt
: >"$RAW"
# measure KIND ROUND: one timed run, one line in $RAW:
# KIND ROUND wall_s client_user_s client_sys_s pg_cpu_s
measure() {
	local kind=$1 r=$2 db=${1}_r$2 p0 p1 t
	fresh "$db"
	no_backend "$db"
	p0=$(pg_ticks)
	case $kind in
	enroll)
		/usr/bin/time -f '%e %U %S' -o "$KEEP/time-$db" \
			"$KMSCTL" -c "$T/$db.conf" enroll --file "$T/users.txt" >"$KEEP/out-$db" 2>"$KEEP/err-$db" ||
			{ tail -5 "$KEEP/err-$db"; die "kmsctl enroll ($db)"; }
		grep -q "^enrolled $N addresses, 0 failed" "$KEEP/out-$db" || die "kmsctl enroll ($db): $(cat "$KEEP/out-$db")"
		# not a terminal: no progress line at all
		[ -s "$KEEP/err-$db" ] && die "kmsctl enroll wrote to stderr ($db): $(head -c 300 "$KEEP/err-$db")"
		;;
	baseline)
		(cd "$T" && /usr/bin/time -f '%e %U %S' -o "$KEEP/time-$db" \
			"$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$PGSOCK" -U kmsdba -d "$db" -f baseline.sql \
			>"$KEEP/out-$db" 2>&1) || { cat "$KEEP/out-$db"; die "baseline SQL ($db)"; }
		;;
	esac
	no_backend "$db"
	p1=$(pg_ticks)
	verify "$db"
	t=$(tail -1 "$KEEP/time-$db")
	echo "$kind $r $t $(awk -v d=$((p1 - p0)) -v hz="$HZ" 'BEGIN { printf "%.2f", d / hz }')" >>"$RAW"
	say "round $r $kind: wall, user, sys, PostgreSQL CPU (s): $t $(tail -1 "$RAW" | cut -d' ' -f6)"
	"$PG_BINDIR/dropdb" -h "$PGSOCK" -U kmsdba "$db" || die "dropdb $db"
}

for r in $(seq 1 "$RUNS"); do
	if [ $((r % 2)) = 1 ]; then
		measure enroll "$r"; measure baseline "$r"
	else
		measure baseline "$r"; measure enroll "$r"
	fi
done

# --- report -------------------------------------------------------------------------
med() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# col KIND EXPR: median over rounds of an awk expression of the fields
# (w wall, u user, s sys, p PostgreSQL)
col() { awk -v k="$1" '$1 == k { w = $3; u = $4; s = $5; p = $6; print '"$2"' }' "$RAW" | med; }
range() { awk -v k="$1" '$1 == k { v = $3 + 0; if (lo == "" || v < lo) lo = v; if (v > hi) hi = v }
	END { printf "%.2f–%.2f\n", lo, hi }' "$RAW"; }
# ratio EXPR: enroll ÷ baseline per round, "median (min–max)"
ratio() {
	join <(awk '$1 == "enroll" { w = $3; u = $4; s = $5; p = $6; print $2, '"$1"' }' "$RAW" | sort) \
		<(awk '$1 == "baseline" { w = $3; u = $4; s = $5; p = $6; print $2, '"$1"' }' "$RAW" | sort) |
		awk '{ print ($3 > 0 ? $2 / $3 : 0) }' | sort -n |
		awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
			printf "%.1f (%.1f–%.1f)\n", m, v[1], v[NR] }'
}
WALL=$(col enroll w)
GOAL=$(awk -v w="$WALL" 'BEGIN { print (w < 60 ? "✓ met" : "✗ missed") }')
CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
PGVER=$("$PG_BINDIR/postgres" --version | awk '{ print $3 }')
{
	echo "### Run of $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo
	echo "- command: \`$CMDLINE\`$([ -n "$CTL" ] && echo " (kmsctl: $CTL)")"
	echo "- machine: nproc $(nproc), $CPU_MODEL, $(uname -sr); load average before the run: $LOAD_BEFORE"
	echo "- software: $(openssl version | cut -d' ' -f1-2), PostgreSQL $PGVER (private cluster, fsync on, defaults otherwise)"
	echo "- $RUNS rounds, each on a fresh database (\`kmsctl init\`), $N addresses; medians, range in parentheses"
	echo
	echo "| run | wall s | client CPU s (user + sys) | PostgreSQL CPU s | µs wall per address |"
	echo "|---|---:|---:|---:|---:|"
	echo "| \`kmsctl enroll --file\` (mail mode) | **$WALL** ($(range enroll)) | $(col enroll 'u + s') ($(col enroll u) + $(col enroll s)) | $(col enroll p) | $(col enroll "int(w * 1e6 / $N + 0.5)") |"
	echo "| baseline: the same rows by set-based SQL (psql) | $(col baseline w) ($(range baseline)) | $(col baseline 'u + s') | $(col baseline p) | $(col baseline "int(w * 1e6 / $N + 0.5)") |"
	echo
	echo "| ratio enroll ÷ baseline (per round) | wall | PostgreSQL CPU |"
	echo "|---|---:|---:|"
	echo "| | $(ratio w) | $(ratio p) |"
	echo
	echo "Goal: $N addresses in < 60 s: **$GOAL** (median $WALL s). After every enroll run the vault"
	echo "held exactly $N users, $N pending tokens (one per user) and $N queued 'mail' requests with"
	echo "a sealed token, and kmsctl wrote nothing to stderr (no progress line when it is not a terminal)."
} >"$KEEP/report.md"
cat "$KEEP/report.md"
[ -n "$OUT" ] && cp "$KEEP/report.md" "$OUT"
exit 0
