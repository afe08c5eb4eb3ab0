#!/bin/bash
# run-encrypt.sh - encryption throughput through the milter protocol (issue 5)
#
#   bench/run-encrypt.sh [-r RUNS] [-t SECONDS] [-c CONNECTIONS] [-o FILE] [-b] [-P]
#
# Builds what it needs (the project in build/, or $top_builddir, and the
# bench programs into $top_builddir/bench/), makes a 50 KB text/plain
# message, starts a private PostgreSQL cluster (tests/lib.sh), `kmsctl
# init`, issues an RSA-2048 encryption certificate (a key of its own each)
# for r1, r2 and r3@example.org with tests/vaulttool issue-record (what
# kmsd's enrollment records) and sets `kmsctl policy set --domain
# example.org encrypt=required`. Then it starts
#   kmsmilter          ([log] level = warning) on a unix socket and on TCP
#   kmsmilter "before" the same program built from milter/kmsmilter.c as
#                      it was before TCP_NODELAY was set on the listening
#                      socket (the parent of the commit that added it, or
#                      HEAD while the change is not committed), linked with
#                      the same objects and libraries, on TCP
# and drives each with bench/milter-load: the message from
# <bench-sender@outside.test> to the three recipients (no certificate for
# the sender, so exactly 3 recipient infos), once with 1 connection and
# once with CONNECTIONS connections, SECONDS per run. The milter answers
# each message with SMFIR_REPLBODY (the base64 CMS), header changes and
# additions, then its verdict; milter-load counts them, and the first
# message's edited result is decrypted once with r1's key and compared with
# the original entity.
#
# The floor: bench/null-milter -R, on a unix socket with kmsmilter's
# protocol flags, makes the same header changes and replaces the body with
# the very CMS body kmsmilter produced (read from the checked message):
# the protocol's cost with no encryption, vault or parsing at all.
#
# bench/encrypt-inproc encrypts the same message to the same three
# certificates in-process with kms_smime_encrypt() (the library function
# kmsmilter calls, entity included) and with raw CMS_encrypt(), with 1 and
# CONNECTIONS threads. RUNS rounds; runs that are compared follow each
# other (order reversed every other round); ratios are taken per round
# and their median is reported, by throughput and by CPU time per message
# (milter + PostgreSQL + driver processes, from /proc and getrusage).
#
# Prints a Markdown section (also written to FILE with -o); raw results
# and logs are kept in $top_builddir/bench/last-encrypt/. -b: build only.
# -P: afterwards, where the time goes: every SQL statement of 3 messages
# (PostgreSQL's log with log_min_duration_statement = 0, last-encrypt/
# sql-per-message.txt), and kmsmilter and PostgreSQL profiled with perf
# under load (last-encrypt/perf-*.txt).
# Defaults: 5 rounds of 2 s, CONNECTIONS = nproc. About 3 minutes.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
: "${top_builddir:=$top/build}"
top_srcdir=$top
export top_srcdir top_builddir

RUNS=5
SECS=2
CONNS=$(nproc 2>/dev/null || echo 2)
OUT=
BUILD_ONLY=no
PROFILE=no
CMDLINE="bench/run-encrypt.sh $*"
LOAD_BEFORE=$(cut -d" " -f1-3 /proc/loadavg)
while getopts "r:t:c:o:bP" opt; do
	case $opt in
	r) RUNS=$OPTARG ;;
	t) SECS=$OPTARG ;;
	c) CONNS=$OPTARG ;;
	o) OUT=$OPTARG ;;
	b) BUILD_ONLY=yes ;;
	P) PROFILE=yes ;;
	*) echo "usage: bench/run-encrypt.sh [-r RUNS] [-t SECONDS] [-c CONNECTIONS] [-o FILE] [-b] [-P]" >&2; exit 2 ;;
	esac
done
case $OUT in ''|/*) ;; *) OUT=$PWD/$OUT ;; esac

# --- build -------------------------------------------------------------------
B=$top_builddir/bench
BEFORE_REV=
build() {
	local jobs pkgs cf mk rev libs cflags
	jobs=$(nproc 2>/dev/null || echo 2)
	if [ ! -f "$top_builddir/Makefile" ]; then
		(cd "$top" && { [ -x configure ] || autoreconf -fi >/dev/null; }) || return 1
		mkdir -p "$top_builddir" &&
			(cd "$top_builddir" && "$top/configure" >configure.out 2>&1) ||
			{ echo "run-encrypt: configure failed (see $top_builddir/configure.out)" >&2; return 1; }
	fi
	{ make -C "$top_builddir" -j"$jobs" all && make -C "$top_builddir" -j"$jobs" tests/vaulttool; } >"$top_builddir/bench-make.out" 2>&1 ||
		{ tail -30 "$top_builddir/bench-make.out"; echo "run-encrypt: build failed" >&2; return 1; }
	mkdir -p "$B"
	pkgs="glib-2.0 gmime-3.0 libssl libcrypto libpq"
	cf="-O2 -g -Wall -Wextra -Wno-unused-parameter"
	gcc $cf -pthread -o "$B/milter-load" "$here/milter-load.c" &&
	gcc $cf -pthread -o "$B/null-milter" "$here/null-milter.c" -lmilter &&
	gcc $cf -I"$top" -I"$top_builddir" $(pkg-config --cflags $pkgs) -o "$B/encrypt-inproc" \
		"$here/encrypt-inproc.c" "$top_builddir/smime/libkmssmime.a" \
		"$top_builddir/common/libkmscommon.a" $(pkg-config --libs $pkgs) ||
		{ echo "run-encrypt: cannot build the bench programs" >&2; return 1; }
	# kmsmilter before the TCP_NODELAY change: its main file from git,
	# everything else as built now
	rev=$(git -C "$top" log -n 1 --format=%H -S TCP_NODELAY -- milter/kmsmilter.c 2>/dev/null)
	if [ -n "$rev" ]; then BEFORE_REV=$(git -C "$top" rev-parse --short "$rev^"); else BEFORE_REV=$(git -C "$top" rev-parse --short HEAD); fi
	git -C "$top" show "$BEFORE_REV:milter/kmsmilter.c" >"$B/kmsmilter-before.c" 2>/dev/null ||
		{ echo "run-encrypt: cannot read milter/kmsmilter.c at $BEFORE_REV" >&2; return 1; }
	if grep -q TCP_NODELAY "$B/kmsmilter-before.c"; then
		echo "run-encrypt: milter/kmsmilter.c at $BEFORE_REV already sets TCP_NODELAY" >&2; return 1
	fi
	mk=$B/print.mk
	printf 'print-libs: ; @echo $(KMS_LIBS) $(GMIME_LIBS) $(MILTER_LIBS)\nprint-cflags: ; @echo $(DEFS) $(DEFAULT_INCLUDES) $(AM_CPPFLAGS) $(CPPFLAGS) $(AM_CFLAGS) $(CFLAGS)\n' >"$mk"
	libs=$(make -s -C "$top_builddir" -f Makefile -f "$mk" print-libs) &&
	cflags=$(make -s -C "$top_builddir" -f Makefile -f "$mk" print-cflags) &&
	(cd "$top_builddir" && gcc $cflags -I"$top/milter" -o "$B/kmsmilter-before" "$B/kmsmilter-before.c" \
		milter/callbacks.o milter/harvestjob.o milter/replyjob.o milter/encryptjob.o milter/spool.o \
		milter/state.o $libs) ||
		{ echo "run-encrypt: cannot build kmsmilter-before" >&2; return 1; }
}
build || exit 1
[ "$BUILD_ONLY" = yes ] && { echo "built $B/milter-load $B/encrypt-inproc $B/kmsmilter-before (milter/kmsmilter.c of $BEFORE_REV)"; exit 0; }

. "$top/tests/lib.sh"
LOAD=$B/milter-load
INPROC=$B/encrypt-inproc
KEEP=$B/last-encrypt
rm -rf "$KEEP" && mkdir -p "$KEEP"
say() { printf '%s\n' "$*" >&2; }

# --- message, vault, certificates ------------------------------------------------
say "making the message, the vault and three certificates..."
MSG=$T/msg.eml
{
	printf 'From: Bench Sender <bench-sender@outside.test>\r\nTo: r1@example.org, r2@example.org, r3@example.org\r\n'
	printf 'Subject: a 50 KB message\r\nMessage-ID: <bench.%s@outside.test>\r\nDate: %s\r\n' "$$" "$(date -R)"
	printf 'MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n'
	# 50 KB of text lines (base64 of random bytes: incompressible, 76 columns)
	head -c 37800 /dev/urandom | base64 -w 76 | sed 's/$/\r/'
} >"$MSG"
MSGSIZE=$(wc -c <"$MSG")

pg_start >/dev/null
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
kms_conf() {	# kms_conf FILE SOCKET LEVEL
	{
		printf '[vault]\ndsn = %s\n' "$DSN"
		printf '[milter]\nsocket = %s\ndsn = host=%s dbname=kms user=kms_milter\n' "$2" "$PGSOCK"
		printf '[log]\nlevel = %s\n' "$3"
	} >"$1"
}
kms_conf "$T/admin.conf" "unix:$T/admin.sock" warning
write_password "$T/pw" 'bench startup password'
"$KMSCTL" -c "$T/admin.conf" init --password-file "$T/pw" >"$T/init.log" 2>&1 || { cat "$T/init.log"; bail "kmsctl init failed"; }
CERTS=
for i in 1 2 3; do
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/r$i.key" 2>/dev/null &&
		openssl pkey -in "$T/r$i.key" -pubout -out "$T/r$i.pub" 2>/dev/null || bail "cannot make key $i"
	"$VAULTTOOL" -c "$T/admin.conf" -p "$T/pw" issue-record encryption "r$i@example.org" "$T/r$i.pub" >"$T/r$i.pem" 2>>"$T/init.log" ||
		{ cat "$T/init.log"; bail "issue-record r$i failed"; }
	CERTS="$CERTS -C $T/r$i.pem"
done
"$KMSCTL" -c "$T/admin.conf" policy set --domain example.org encrypt=required >>"$T/init.log" 2>&1 ||
	{ cat "$T/init.log"; bail "kmsctl policy set failed"; }
RCPTS="-r <r1@example.org> -r <r2@example.org> -r <r3@example.org>"
FROM="<bench-sender@outside.test>"

declare -A SOCK PID
start_kms() {	# NAME SOCKET [PROGRAM]
	kms_conf "$T/$1.conf" "$2" warning
	"${3:-$KMSMILTER}" -c "$T/$1.conf" -f 2>"$T/$1.log" &
	PID[$1]=$!; SOCK[$1]=$2; bg_pids="$bg_pids $!"
}
wait_ready() {	# TARGET...
	local t n
	for t in "$@"; do
	n=0
	until "$LOAD" -s "${SOCK[$t]}" -n 1 -e accept -f "$FROM" $RCPTS "$MSG" >/dev/null 2>&1; do
		n=$((n + 1))
		[ $n -ge 100 ] && { cat "$T/$t.log"; bail "$t does not answer on ${SOCK[$t]}"; }
		kill -0 "${PID[$t]}" 2>/dev/null || { cat "$T/$t.log"; bail "$t died"; }
		sleep 0.1
	done
	done
}
start_kms kms-unix "unix:$T/kms.sock"
start_kms kms-tcp "inet:$(free_port)@127.0.0.1"
start_kms kms-tcp-before "inet:$(free_port)@127.0.0.1" "$B/kmsmilter-before"
wait_ready kms-unix kms-tcp kms-tcp-before

# --- the result, checked once --------------------------------------------------------
say "checking one encrypted message..."
CHECK=ok
"$LOAD" -s "${SOCK[kms-tcp]}" -n 1 -e accept -f "$FROM" $RCPTS -o "$KEEP/encrypted.eml" "$MSG" >"$KEEP/check-load.txt" 2>&1 || CHECK="milter-load failed"
grep -q '^X-KMS-Info: encrypted aes256-cbc for 3 recipients' "$KEEP/encrypted.eml" 2>/dev/null || CHECK="no X-KMS-Info for 3 recipients"
grep -q '^Content-Type: application/pkcs7-mime; *smime-type=enveloped-data' "$KEEP/encrypted.eml" 2>/dev/null || CHECK="not application/pkcs7-mime enveloped-data"
awk 'b { print } /^\r?$/ { b = 1 }' "$KEEP/encrypted.eml" | tr -d '\r' | base64 -d >"$KEEP/encrypted.der" 2>/dev/null
for i in 1 2 3; do
	openssl cms -decrypt -inform DER -in "$KEEP/encrypted.der" -inkey "$T/r$i.key" -out "$KEEP/decrypted-r$i.txt" 2>>"$KEEP/check.err" ||
		CHECK="r$i cannot decrypt"
done
# the new body as the MTA got it, for the replaying null-milter
awk 'b { print } /^\r?$/ { b = 1 }' "$KEEP/encrypted.eml" >"$KEEP/replay-body.txt"
[ -s "$KEEP/replay-body.txt" ] || CHECK="no body in the encrypted message"
# the entity: the original's Content-* fields, a blank line, the body (CRLF)
{ grep -i '^Content-' "$MSG"; printf '\r\n'; awk 'b { print } /^\r?$/ { b = 1 }' "$MSG"; } >"$KEEP/entity.txt"
cmp -s "$KEEP/entity.txt" "$KEEP/decrypted-r1.txt" || CHECK="r1's plaintext differs from the original entity"
RIS=$(openssl cms -cmsout -print -inform DER -in "$KEEP/encrypted.der" 2>/dev/null | grep -c 'd.ktri:')
[ "$RIS" = 3 ] || CHECK="$RIS recipient infos, not 3"
say "  check: $CHECK"
[ "$CHECK" = ok ] || bail "the encrypted message is wrong: $CHECK"

# the floor: a milter that makes the same changes from a ready body
KMS_PROT=$("$LOAD" -v -s "${SOCK[kms-unix]}" -n 1 -e accept -f "$FROM" $RCPTS "$MSG" 2>&1 |
	sed -n 's/.* protocol \(0x[0-9a-f]*\)$/\1/p' | head -1)
[ -n "$KMS_PROT" ] || bail "cannot read kmsmilter's protocol flags"
"$B/null-milter" -p "unix:$T/replay.sock" -P "$KMS_PROT" -R "$KEEP/replay-body.txt" 2>"$T/replay.log" &
PID[replay]=$!; SOCK[replay]=unix:$T/replay.sock; bg_pids="$bg_pids $!"
wait_ready replay

# --- measurements ----------------------------------------------------------------
HZ=$(getconf CLK_TCK)
PGPID=$(head -1 "$PGDIR/data/postmaster.pid")
ticks() {	# ticks PID...: user+system clock ticks (all threads, dead ones included)
	local p s=0 f
	for p in "$@"; do
		f=$(cat "/proc/$p/stat" 2>/dev/null) || continue
		f=${f##*) }
		set -- $f
		s=$((s + ${12} + ${13}))
	done
	echo $s
}
pg_ticks() { ticks "$PGPID" $(ps -o pid= --ppid "$PGPID"); }
RAW=$KEEP/results.txt
: >"$RAW"

# run_load TARGET CONNS: one run, one line in $RAW
run_load() {
	local t=$1 c=$2 m0 p0 m1 p1 line n
	m0=$(ticks "${PID[$t]}"); p0=$(pg_ticks)
	line=$("$LOAD" -s "${SOCK[$t]}" -c "$c" -t "$SECS" -w 3 -e accept -f "$FROM" $RCPTS -k "$MSG" 2>>"$KEEP/load-errors.txt" | grep '^result:')
	m1=$(ticks "${PID[$t]}"); p1=$(pg_ticks)
	[ -n "$line" ] || { say "milter-load gave no result for $t"; echo "FAILED $t $c" >>"$KEEP/load-errors.txt"; return 1; }
	echo "$t $c $line" >>"$KEEP/load-lines.txt"
	grep -q ' unexpected=0 errors=0' <<<"$line" || echo "UNEXPECTED $t $c: $line" >>"$KEEP/load-errors.txt"
	n=$(sed 's/.* messages=\([0-9]*\).*/\1/' <<<"$line")
	grep -q " modified=$n mods=[0-9]* replbody=[1-9]" <<<"$line" || echo "NOT ENCRYPTED $t $c: $line" >>"$KEEP/load-errors.txt"
	awk -v t="$t:$c" -v line="$line" -v hz="$HZ" -v m=$((m1 - m0)) -v p=$((p1 - p0)) -v R="$ROUND" 'BEGIN {
		n = split(line, f, " "); for (i = 1; i <= n; i++) { split(f[i], kv, "="); v[kv[1]] = kv[2] }
		printf "load %s %s %.0f %.0f %s %s %s\n", t, v["rate"], m * 1e6 / hz / v["messages"],
			p * 1e6 / hz / v["messages"], v["driver_cpu_us"], v["p50_ms"], R }' >>"$RAW"
}
# inproc_run MODE: one line per thread count in $RAW
inproc_run() {
	"$INPROC" -m "$1" $CERTS -j "$CONNS" -t "$SECS" -w 20 -k "$MSG" 2>>"$KEEP/inproc-errors.txt" |
		sed -n "s/^result: mode=\([a-z]*\) threads=\([0-9]*\) .* rate=\([0-9.]*\) cpu_us=\([0-9.]*\).*/\1:\2 \3 \4 $ROUND/p" |
		awk '{ print "inproc", $0 }' >>"$RAW"
}
reverse() { local out= w; for w in "$@"; do out="$w $out"; done; echo $out; }

say "measuring: $RUNS rounds of ${SECS} s per run, 1 and $CONNS connections..."
for ROUND in $(seq 1 "$RUNS"); do
	say "  round $ROUND/$RUNS"
	order="kms-unix:1 kms-tcp:1 kms-tcp-before:1 replay:1 kms-unix:$CONNS kms-tcp:$CONNS kms-tcp-before:$CONNS replay:$CONNS inproc:kms inproc:raw"
	[ $((ROUND % 2)) = 0 ] && order=$(reverse $order)
	for x in $order; do
		case $x in
		inproc:*) inproc_run "${x#inproc:}" ;;
		*) run_load "${x%:*}" "${x##*:}" ;;
		esac
	done
done

# --- optional profile ------------------------------------------------------------
if [ "$PROFILE" = yes ]; then
	say "profiling: SQL statements of 3 messages..."
	SLOG=$PGDIR/server.log
	psql_kms "ALTER SYSTEM SET log_min_duration_statement = 0" && psql_kms "SELECT pg_reload_conf()" >/dev/null
	sleep 0.5
	start=$(wc -l <"$SLOG")
	"$LOAD" -s "${SOCK[kms-unix]}" -n 3 -e accept -f "$FROM" $RCPTS "$MSG" >/dev/null 2>&1
	sleep 0.3
	psql_kms "ALTER SYSTEM RESET log_min_duration_statement" && psql_kms "SELECT pg_reload_conf()" >/dev/null
	tail -n +"$((start + 1))" "$SLOG" | grep -E 'duration: ' |
		sed -E 's/.*duration: ([0-9.]+) ms +(statement|execute [^:]*|parse [^:]*|bind [^:]*): */\1 ms  \2: /' \
		>"$KEEP/sql-per-message.txt"
	if command -v perf >/dev/null; then
		for who in kmsmilter postgres; do
			say "profiling $who under load..."
			case $who in
			kmsmilter) pids=${PID[kms-unix]} ;;
			*) pids=$(ps -o pid= --ppid "$PGPID" | tr -d ' ' | paste -sd,) ;;
			esac
			perf record -q --call-graph dwarf,32768 -F 499 -p "$pids" -o "$KEEP/perf-$who.data" -- sleep 4 >/dev/null 2>&1 &
			ppid=$!
			sleep 0.5
			"$LOAD" -s "${SOCK[kms-unix]}" -c "$CONNS" -t 3 -e accept -f "$FROM" $RCPTS "$MSG" >"$KEEP/perf-$who-load.txt" 2>&1
			wait $ppid
			perf report -i "$KEEP/perf-$who.data" --no-children --sort dso,symbol --stdio -g none 2>/dev/null |
				grep -E '^ +[0-9]' | head -40 >"$KEEP/perf-$who.txt"
			perf report -i "$KEEP/perf-$who.data" --children --sort symbol --stdio -g none 2>/dev/null |
				grep -E '^ +[0-9]' | head -60 >"$KEEP/perf-$who-children.txt"
			rm -f "$KEEP/perf-$who.data"
		done
	fi
fi
for t in kms-unix kms-tcp kms-tcp-before; do cp "$T/$t.log" "$KEEP/"; done

# --- report -------------------------------------------------------------------------
med() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# col SPEC FIELD: median of a field (load: 3 rate 4 milter µs 5 pg µs 6 driver µs 7 p50;
# inproc: 3 rate 4 cpu µs)
col() { awk -v s="$1" -v f="$2" '$2 == s { print $f }' "$RAW" | med; }
range() { awk -v s="$1" '$2 == s { v = $3 + 0; if (lo == "" || v < lo) lo = v; if (v > hi) hi = v }
	END { if (lo == "") print "-"; else printf "%.0f–%.0f\n", lo, hi }' "$RAW"; }
cpu() { awk -v s="$1" '$1 == "load" && $2 == s { print $4 + $5 + $6 }' "$RAW" | med; }
# vals SPEC MODE: "ROUND VALUE" per run (MODE rate, or cpu: µs per message,
# milter + PostgreSQL + driver for the milters)
vals() {
	awk -v s="$1" -v mode="$2" '$2 == s { if ($1 == "inproc") print $5, (mode == "rate" ? $3 : $4);
		else print $8, (mode == "rate" ? $3 : $4 + $5 + $6) }' "$RAW"
}
# rr NUM DEN MODE: NUM ÷ DEN per round (for cpu: DEN's CPU ÷ NUM's, so that
# higher is better in both), as "median (min–max)"
rr() {
	join <(vals "$1" "$3" | sort -k1,1) <(vals "$2" "$3" | sort -k1,1) |
		awk -v mode="$3" '{ if (mode == "rate") print ($3 > 0 ? $2 / $3 : 0); else print ($2 > 0 ? $3 / $2 : 0) }' |
		sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) { print "-"; exit }
			m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
			printf "%.2f (%.2f–%.2f)\n", m, v[1], v[NR] }'
}
mark() { awk -v r="$1" -v g="$2" 'BEGIN { split(r, w, " "); if (r == "-") print "-"; else if (g == "") print r; else if (w[1] + 0 >= g) print "**" w[1] "** ✓ " w[2]; else print "**" w[1] "** ✗ " w[2] }'; }

CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
PGVER=$("$PG_BINDIR/postgres" --version | awk '{ print $3 }')
MILTERVER=$(dpkg-query -W -f '${Version}' libmilter1.0.1 2>/dev/null || echo "?")
MODS=$(awk '$2 == 1 { print; exit }' "$KEEP/load-lines.txt" | tr ' ' '\n' |
	awk -F= '$1 ~ /^(replbody|chgheader|addheader|insheader|delrcpt)$/ { printf "%s%s %s", sep, $1, $2; sep = ", " } $1 == "messages" { n = $2 } END { printf " for %s messages", n }')
{
	echo "### Run of $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo
	echo "- command: \`$CMDLINE\`"
	echo "- machine: nproc $(nproc), $CPU_MODEL, $(uname -sr); load average before the run: $LOAD_BEFORE"
	echo "- software: $(openssl version | cut -d' ' -f1-2), libmilter $MILTERVER, PostgreSQL $PGVER, GMime $(pkg-config --modversion gmime-3.0)"
	echo "- one text/plain message of $MSGSIZE bytes to 3 recipients, each with an issued RSA-2048 certificate"
	echo "  (vaulttool issue-record), policy example.org encrypt = required: aes256-cbc, PKCS#1 v1.5"
	echo "- $RUNS interleaved rounds of $SECS s per run; medians (min–max over the rounds)"
	echo "- \"before\": kmsmilter with milter/kmsmilter.c of $BEFORE_REV (no TCP_NODELAY), same objects otherwise"
	echo "- the first message's result, edited as an MTA would from the milter's replies and decrypted with"
	echo "  each recipient's key (openssl cms) and compared with the original entity: **$CHECK**;"
	echo "  modifications counted by milter-load in one run (1 connection, round 1, with warm-up): $MODS"
	echo
	echo "| what | socket | connections | msg/s (median) | min–max | milter CPU µs/msg | PostgreSQL CPU µs/msg | driver CPU µs/msg | p50 latency ms |"
	echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
	for c in 1 $CONNS; do
		[ "$c" = 1 ] || [ "$CONNS" != 1 ] || continue
		for t in kms-unix kms-tcp kms-tcp-before replay; do
			case $t in
			kms-unix) name=kmsmilter; so=unix ;;
			kms-tcp) name=kmsmilter; so=tcp ;;
			kms-tcp-before) name="kmsmilter before (no TCP_NODELAY)"; so=tcp ;;
			replay) name="null-milter -R: the same changes from a ready body (no crypto, no vault)"; so=unix ;;
			esac
			echo "| $name | $so | $c | $(col "$t:$c" 3) | $(range "$t:$c") | $(col "$t:$c" 4) | $(col "$t:$c" 5) | $(col "$t:$c" 6) | $(col "$t:$c" 7) |"
		done
	done
	for c in 1 $CONNS; do
		[ "$c" = 1 ] || [ "$CONNS" != 1 ] || continue
		echo "| in-process kms_smime_encrypt() | – | $c thread(s) | $(col "kms:$c" 3) | $(range "kms:$c") | $(col "kms:$c" 4) | – | – | |"
		echo "| in-process raw CMS_encrypt() | – | $c thread(s) | $(col "raw:$c" 3) | $(range "raw:$c") | $(col "raw:$c" 4) | – | – | |"
	done
	echo
	echo "Ratios per round between runs that followed each other, median (min–max). *Throughput*:"
	echo "messages/s ÷ messages/s. *CPU*: the same ratio from CPU time per message (milter + PostgreSQL +"
	echo "driver for the milter, the encrypting threads in-process): what it would be on a machine that is"
	echo "CPU-bound and not shared with the load driver and the database."
	echo
	echo "| ratio | goal | throughput, $CONNS conn. | CPU, $CONNS conn. | throughput, 1 conn. | CPU, 1 conn. |"
	echo "|---|---|---|---|---|---|"
	for so in unix tcp; do
		echo "| kmsmilter $so ÷ in-process kms_smime_encrypt() | ≥ 0.8 | $(mark "$(rr kms-$so:$CONNS kms:$CONNS rate)" 0.8) | $(mark "$(rr kms-$so:$CONNS kms:$CONNS cpu)" 0.8) | $(mark "$(rr kms-$so:1 kms:1 rate)" 0.8) | $(mark "$(rr kms-$so:1 kms:1 cpu)" 0.8) |"
	done
	for so in unix tcp; do
		echo "| kmsmilter $so ÷ in-process raw CMS_encrypt() | – | $(rr kms-$so:$CONNS raw:$CONNS rate) | $(rr kms-$so:$CONNS raw:$CONNS cpu) | $(rr kms-$so:1 raw:1 rate) | $(rr kms-$so:1 raw:1 cpu) |"
	done
	echo "| kmsmilter tcp ÷ kmsmilter unix | ≥ 0.8 | $(mark "$(rr kms-tcp:$CONNS kms-unix:$CONNS rate)" 0.8) | $(rr kms-tcp:$CONNS kms-unix:$CONNS cpu) | $(mark "$(rr kms-tcp:1 kms-unix:1 rate)" 0.8) | $(rr kms-tcp:1 kms-unix:1 cpu) |"
	echo "| kmsmilter before, tcp ÷ kmsmilter unix | – | $(rr kms-tcp-before:$CONNS kms-unix:$CONNS rate) | $(rr kms-tcp-before:$CONNS kms-unix:$CONNS cpu) | $(rr kms-tcp-before:1 kms-unix:1 rate) | $(rr kms-tcp-before:1 kms-unix:1 cpu) |"
	echo "| null-milter -R ÷ in-process kms_smime_encrypt(): the protocol alone | – | $(rr replay:$CONNS kms:$CONNS rate) | $(rr replay:$CONNS kms:$CONNS cpu) | $(rr replay:1 kms:1 rate) | $(rr replay:1 kms:1 cpu) |"
	echo "| null-milter -R ÷ in-process raw CMS_encrypt(): the protocol alone | – | $(rr replay:$CONNS raw:$CONNS rate) | $(rr replay:$CONNS raw:$CONNS cpu) | $(rr replay:1 raw:1 rate) | $(rr replay:1 raw:1 cpu) |"
	echo "| kmsmilter unix ÷ null-milter -R | – | $(rr kms-unix:$CONNS replay:$CONNS rate) | $(rr kms-unix:$CONNS replay:$CONNS cpu) | $(rr kms-unix:1 replay:1 rate) | $(rr kms-unix:1 replay:1 cpu) |"
	echo "| in-process kms_smime_encrypt() ÷ raw CMS_encrypt() | – | $(rr kms:$CONNS raw:$CONNS rate) | $(rr kms:$CONNS raw:$CONNS cpu) | $(rr kms:1 raw:1 rate) | $(rr kms:1 raw:1 cpu) |"
	if [ -s "$KEEP/load-errors.txt" ] || [ -s "$KEEP/inproc-errors.txt" ] || [ "$CHECK" != ok ]; then
		echo
		echo "**Errors during the run** (see $KEEP):"
		echo '```'
		cat "$KEEP/load-errors.txt" "$KEEP/inproc-errors.txt" "$KEEP/check.err" 2>/dev/null | head -20
		echo '```'
	fi
} >"$KEEP/report.md"
cat "$KEEP/report.md"
[ -n "$OUT" ] && cp "$KEEP/report.md" "$OUT"
{ [ -s "$KEEP/load-errors.txt" ] || [ "$CHECK" != ok ]; } && exit 1
exit 0
