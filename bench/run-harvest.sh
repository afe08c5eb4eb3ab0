#!/bin/bash
# run-harvest.sh - harvest throughput through the milter protocol (issue 3)
#
#   bench/run-harvest.sh [-r RUNS] [-t SECONDS] [-c CONNECTIONS] [-o FILE] [-b] [-P]
#
# Builds what it needs (the project in build/, or $top_builddir, and the
# bench programs into $top_builddir/bench/), makes ~10 KB test messages
# with the openssl CLI (bench/make-messages.sh), starts a private
# PostgreSQL cluster (tests/lib.sh), `kmsctl init`, puts the test CA on the
# trust list, then starts
#   kmsmilter   ([log] level = warning, the kms_milter role) on a unix socket
#               and on TCP, plus one on a unix socket with level = info
#   null-milter (bench/null-milter.c: accepts everything, reads every body)
#               on a unix socket and on TCP, negotiating the same protocol
#               flags as kmsmilter (asked with milter-load -v), so that both
#               hold the same conversation; and one with -N (the least
#               conversation a harvesting milter needs: no replies to
#               CONNECT, MAIL, headers, body chunks; no RCPT) for scale, and
#               a second identical one: its ratio to the first is the noise
#               of the method on this machine
# and drives each with bench/milter-load (CONNECTIONS connections, one
# thread each, SECONDS per run) for three sets of messages: signed
# (multipart/signed with chain), unsigned text/plain, unsigned
# multipart/mixed. bench/harvest-inproc does the same harvesting
# in-process (no protocol, no database) with 1 and with CONNECTIONS
# threads. RUNS rounds; in each, runs that are compared follow each other
# (order reversed every other round); ratios are taken per round and their
# median is reported, by throughput and by CPU time per message (milter,
# PostgreSQL and driver processes, from /proc).
#
# Every signed message makes kmsmilter write to the vault: the certificate
# upsert and its addresses (the same signer again: an update of last_seen)
# and the capabilities (inserted once per signing time, then found). That
# cost is part of the kmsmilter figures; PostgreSQL's CPU per message is
# shown beside them.
#
# Prints a Markdown section (also written to FILE with -o); raw results
# and logs are kept in $top_builddir/bench/last-run/. -b: build only.
# -P: afterwards, profile kmsmilter with perf under signed and under
# multipart/mixed load (last-run/perf-*.txt).
# Defaults: 5 rounds of 2 s, CONNECTIONS = nproc. About 4 minutes.
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
CMDLINE="bench/run-harvest.sh $*"
LOAD_BEFORE=$(cut -d" " -f1-3 /proc/loadavg)
while getopts "r:t:c:o:bP" opt; do
	case $opt in
	r) RUNS=$OPTARG ;;
	t) SECS=$OPTARG ;;
	c) CONNS=$OPTARG ;;
	o) OUT=$OPTARG ;;
	b) BUILD_ONLY=yes ;;
	P) PROFILE=yes ;;
	*) echo "usage: bench/run-harvest.sh [-r RUNS] [-t SECONDS] [-c CONNECTIONS] [-o FILE] [-b] [-P]" >&2; exit 2 ;;
	esac
done
case $OUT in ''|/*) ;; *) OUT=$PWD/$OUT ;; esac

# --- build -------------------------------------------------------------------
B=$top_builddir/bench
build() {
	local jobs pkgs cf
	jobs=$(nproc 2>/dev/null || echo 2)
	if [ ! -f "$top_builddir/Makefile" ]; then
		(cd "$top" && { [ -x configure ] || autoreconf -fi >/dev/null; }) || return 1
		mkdir -p "$top_builddir" &&
			(cd "$top_builddir" && "$top/configure" >configure.out 2>&1) ||
			{ echo "run-harvest: configure failed (see $top_builddir/configure.out)" >&2; return 1; }
	fi
	make -C "$top_builddir" -j"$jobs" >"$top_builddir/bench-make.out" 2>&1 ||
		{ tail -30 "$top_builddir/bench-make.out"; echo "run-harvest: build failed" >&2; return 1; }
	mkdir -p "$B"
	pkgs="glib-2.0 gmime-3.0 libssl libcrypto libpq"
	cf="-O2 -g -Wall -Wextra -Wno-unused-parameter"
	gcc $cf -pthread -o "$B/milter-load" "$here/milter-load.c" &&
	gcc $cf -pthread -o "$B/null-milter" "$here/null-milter.c" -lmilter &&
	gcc $cf -I"$top" -I"$top_builddir" $(pkg-config --cflags $pkgs) -o "$B/harvest-inproc" \
		"$here/harvest-inproc.c" "$top_builddir/smime/libkmssmime.a" \
		"$top_builddir/common/libkmscommon.a" $(pkg-config --libs $pkgs) ||
		{ echo "run-harvest: cannot build the bench programs" >&2; return 1; }
}
build || exit 1
[ "$BUILD_ONLY" = yes ] && { echo "built $B/milter-load $B/null-milter $B/harvest-inproc"; exit 0; }

. "$top/tests/lib.sh"
LOAD=$B/milter-load
NULLM=$B/null-milter
INPROC=$B/harvest-inproc
KEEP=$B/last-run
rm -rf "$KEEP" && mkdir -p "$KEEP"
say() { printf '%s\n' "$*" >&2; }

# --- messages, vault, daemons ----------------------------------------------------
say "making messages..."
"$here/make-messages.sh" "$T/msgs" 4 >"$T/make.log" 2>&1 || { cat "$T/make.log"; bail "make-messages.sh failed"; }
SIGNED=$(ls "$T"/msgs/signed/*.eml)
PLAIN=$(ls "$T"/msgs/plain/*.eml)
MIXED=$(ls "$T"/msgs/mixed/*.eml)

say "starting PostgreSQL..."
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
"$KMSCTL" -c "$T/admin.conf" ctl add "$T/msgs/ca.pem" >>"$T/init.log" 2>&1 || { cat "$T/init.log"; bail "kmsctl ctl add failed"; }

KMS_TCP=inet:$(free_port)@127.0.0.1
NULL_TCP=inet:$(free_port)@127.0.0.1
# target name, socket, pid
declare -A SOCK PID
start_kms() {	# NAME SOCKET LEVEL
	kms_conf "$T/$1.conf" "$2" "$3"
	"$KMSMILTER" -c "$T/$1.conf" -f 2>"$T/$1.log" &
	PID[$1]=$!; SOCK[$1]=$2; bg_pids="$bg_pids $!"
}
start_null() {	# NAME SOCKET NULL-MILTER-OPTIONS...
	local name=$1 sock=$2
	shift 2
	"$NULLM" -p "$sock" "$@" 2>"$T/$name.log" &
	PID[$name]=$!; SOCK[$name]=$sock; bg_pids="$bg_pids $!"
}
wait_ready() {	# TARGET...
	local t n
	for t in "$@"; do
	n=0
	until "$LOAD" -s "${SOCK[$t]}" -n 1 -e accept $PLAIN >/dev/null 2>&1; do
		n=$((n + 1))
		[ $n -ge 100 ] && { cat "$T/$t.log"; bail "$t does not answer on ${SOCK[$t]}"; }
		kill -0 "${PID[$t]}" 2>/dev/null || { cat "$T/$t.log"; bail "$t died"; }
		sleep 0.1
	done
	done
}
start_kms kms-unix "unix:$T/kms.sock" warning
start_kms kms-tcp "$KMS_TCP" warning
start_kms kms-unix-info "unix:$T/kms-info.sock" info
wait_ready kms-unix kms-tcp kms-unix-info
KMS_PROT=$("$LOAD" -v -s "${SOCK[kms-unix]}" -n 1 $PLAIN 2>&1 | sed -n 's/.* protocol \(0x[0-9a-f]*\)$/\1/p' | head -1)
[ -n "$KMS_PROT" ] || bail "cannot read kmsmilter's protocol flags"
start_null null-unix "unix:$T/null.sock" -P "$KMS_PROT"
start_null null-tcp "$NULL_TCP" -P "$KMS_PROT"
start_null null-unix2 "unix:$T/null2.sock" -P "$KMS_PROT"
start_null null-nr-unix "unix:$T/null-nr.sock" -N
wait_ready null-unix null-tcp null-nr-unix null-unix2
NR_PROT=$("$LOAD" -v -s "${SOCK[null-nr-unix]}" -n 1 $PLAIN 2>&1 | sed -n 's/.* protocol \(0x[0-9a-f]*\)$/\1/p' | head -1)

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

# run_load TARGET SET FILES...: one run, one line in $RAW
run_load() {
	local t=$1 set=$2 m0 p0 m1 p1 line rate n drv p50
	shift 2
	m0=$(ticks "${PID[$t]}"); p0=$(pg_ticks)
	line=$("$LOAD" -s "${SOCK[$t]}" -c "$CONNS" -t "$SECS" -w 3 -e accept -k "$@" 2>>"$KEEP/load-errors.txt" | grep '^result:')
	m1=$(ticks "${PID[$t]}"); p1=$(pg_ticks)
	[ -n "$line" ] || { say "milter-load gave no result for $t $set"; echo "FAILED $t $set" >>"$KEEP/load-errors.txt"; return 1; }
	n=$(sed 's/.* messages=\([0-9]*\).*/\1/' <<<"$line")
	rate=$(sed 's/.* rate=\([0-9.]*\).*/\1/' <<<"$line")
	drv=$(sed 's/.* driver_cpu_us=\([0-9.]*\).*/\1/' <<<"$line")
	p50=$(sed 's/.* p50_ms=\([0-9.]*\).*/\1/' <<<"$line")
	grep -q ' unexpected=0 errors=0' <<<"$line" || echo "UNEXPECTED $t $set: $line" >>"$KEEP/load-errors.txt"
	awk -v t="$t" -v s="$set" -v r="$rate" -v n="$n" -v hz="$HZ" -v m=$((m1 - m0)) -v p=$((p1 - p0)) \
		-v d="$drv" -v l="$p50" -v R="$ROUND" 'BEGIN { printf "load %s %s %s %.0f %.0f %s %s %s\n", t, s, r,
		m * 1e6 / hz / n, p * 1e6 / hz / n, d, l, R }' >>"$RAW"
}

say "measuring: $RUNS rounds of ${SECS} s per target, $CONNS connections..."
# Runs that are compared follow each other (kmsmilter, then its baseline),
# and the order is reversed every other round, so that both see the same
# background load; ratios are taken per round, then their median.
inproc_run() {
	"$INPROC" -a "$T/msgs/ca.pem" -j "$CONNS" -t "$SECS" -w 20 -e trusted -k $SIGNED 2>>"$KEEP/inproc-errors.txt" |
		sed -n "s/^result: threads=\([0-9]*\) .* rate=\([0-9.]*\) cpu_us=\([0-9.]*\).*/inproc \1 \2 \3 $ROUND/p" >>"$RAW"
}
reverse() { local out= w; for w in "$@"; do out="$w $out"; done; echo $out; }
for ROUND in $(seq 1 "$RUNS"); do
	say "  round $ROUND/$RUNS"
	signed_order="kms-unix inproc kms-tcp null-unix null-tcp null-nr-unix kms-unix-info"
	order="kms-unix null-unix null-unix2 kms-tcp null-tcp null-nr-unix"
	if [ $((ROUND % 2)) = 0 ]; then
		signed_order=$(reverse $signed_order)
		order=$(reverse $order)
	fi
	for t in $signed_order; do
		if [ "$t" = inproc ]; then inproc_run; else run_load "$t" signed $SIGNED; fi
	done
	for t in $order; do run_load "$t" plain $PLAIN; done
	for t in $order; do run_load "$t" mixed $MIXED; done
done

# --- optional profile ------------------------------------------------------------
if [ "$PROFILE" = yes ] && command -v perf >/dev/null; then
	for set in signed mixed; do
		say "profiling kmsmilter under $set load..."
		case $set in signed) files=$SIGNED ;; *) files=$MIXED ;; esac
		perf record -q --call-graph dwarf,32768 -F 499 -p "${PID[kms-unix]}" -o "$KEEP/perf-$set.data" \
			-- sleep 4 >/dev/null 2>&1 &
		ppid=$!
		sleep 0.5
		"$LOAD" -s "${SOCK[kms-unix]}" -c "$CONNS" -t 3 -e accept $files >"$KEEP/perf-$set-load.txt" 2>&1
		wait $ppid
		# inclusive share of the functions that tell where a message's time goes
		perf report -i "$KEEP/perf-$set.data" --children --sort symbol --stdio -g none 2>/dev/null |
			grep -E '^ +[0-9]' | grep -E 'mi_engine|mi_rd_cmd|mi_wr_cmd|cb_[a-z]+|kms_[a-z_]+|harvest_array|part_cms|d2i_CMS|OSSL_DECODER_CTX_new_for_pkey|X509_verify_cert|CMS_SignerInfo_verify|g_mime_parser_construct|upsert_cert|PQexecParams|PQgetResult|__poll|__writev|read$|malloc' |
			head -40 >"$KEEP/perf-$set.txt"
		rm -f "$KEEP/perf-$set.data"
	done
fi

# --- what the vault holds afterwards ---------------------------------------------
NCERT=$(psql_kms "SELECT count(*) FROM certificates")
NCAP=$(psql_kms "SELECT count(*) FROM capabilities" 2>/dev/null || echo "?")
for t in kms-unix kms-tcp kms-unix-info null-unix null-tcp null-nr-unix null-unix2; do cp "$T/$t.log" "$KEEP/"; done
# per-message lines start with the queue id milter-load sends (1xxxxxxx)
LOGLINES=$(cat "$T/kms-unix.log" "$T/kms-tcp.log" | grep -c '^kmsmilter: 1[0-9A-F]*: ')
INFOLINES=$(grep -c '^kmsmilter: 1[0-9A-F]*: ' "$T/kms-unix-info.log")

# --- report -------------------------------------------------------------------------
med() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col() {	# col TARGET SET FIELD(4=rate 5=milter cpu 6=pg cpu 7=driver cpu 8=p50)
	awk -v t="$1" -v s="$2" -v f="$3" '$1 == "load" && $2 == t && $3 == s { print $f }' "$RAW" | med
}
cpu() {	# cpu TARGET SET: median over runs of milter + PostgreSQL + driver CPU per message
	awk -v t="$1" -v s="$2" '$1 == "load" && $2 == t && $3 == s { print $5 + $6 + $7 }' "$RAW" | med
}
range() { awk -v t="$1" -v s="$2" '$1 == "load" && $2 == t && $3 == s { v = $4 + 0; if (lo == "" || v < lo) lo = v; if (v > hi) hi = v }
	END { if (lo == "") print "-"; else printf "%.0f–%.0f\n", lo, hi }' "$RAW"; }
inproc() { awk -v j="$1" -v f="$2" '$1 == "inproc" && $2 == j { print $f }' "$RAW" | med; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f\n", a / b }'; }
mark() { awk -v r="$1" -v g="$2" 'BEGIN { split(r, w, " "); if (r == "-") print "-"; else if (w[1] + 0 >= g) print "**" w[1] "** ✓ " w[2]; else print "**" w[1] "** ✗ " w[2] }'; }
# vals SPEC MODE: "ROUND VALUE" per run; SPEC is TARGET:SET or inproc:THREADS,
# MODE rate (messages/s) or cpu (µs per message: driver + milter + PostgreSQL)
vals() {
	awk -v spec="$1" -v mode="$2" 'BEGIN { split(spec, a, ":") }
	a[1] == "inproc" && $1 == "inproc" && $2 == a[2] { print $5, (mode == "rate" ? $3 : $4) }
	a[1] != "inproc" && $1 == "load" && $2 == a[1] && $3 == a[2] { print $9, (mode == "rate" ? $4 : $5 + $6 + $7) }' "$RAW"
}
# rr NUM DEN MODE: the ratio NUM ÷ DEN per round (for cpu: DEN's CPU ÷ NUM's,
# so that higher is better in both), as "median (min–max)"
rr() {
	join <(vals "$1" "$3" | sort -k1,1) <(vals "$2" "$3" | sort -k1,1) |
		awk -v mode="$3" '{ if (mode == "rate") print ($3 > 0 ? $2 / $3 : 0); else print ($2 > 0 ? $3 / $2 : 0) }' |
		sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) { print "-"; exit }
			m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
			printf "%.2f (%.2f–%.2f)\n", m, v[1], v[NR] }'
}

IN1=$(inproc 1 3); INN=$(inproc "$CONNS" 3); IN1CPU=$(inproc 1 4); INNCPU=$(inproc "$CONNS" 4)
[ "$CONNS" = 1 ] && { INN=$IN1; INNCPU=$IN1CPU; }
CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
PGVER=$("$PG_BINDIR/postgres" --version | awk '{ print $NF }')
MILTERVER=$(dpkg-query -W -f '${Version}' libmilter1.0.1 2>/dev/null || echo "?")
{
	echo "### Run of $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo
	echo "- command: \`$CMDLINE\`"
	echo "- machine: nproc $(nproc), $CPU_MODEL, $(uname -sr); load average before the run: $LOAD_BEFORE"
	echo "- software: $(openssl version | cut -d' ' -f1-2), libmilter $MILTERVER, PostgreSQL $PGVER, GMime $(pkg-config --modversion gmime-3.0)"
	echo "- $RUNS interleaved rounds of $SECS s per target, $CONNS connections (one thread each),"
	echo "- protocol flags negotiated: kmsmilter and null-milter $KMS_PROT, null-milter -N $NR_PROT"
	echo "  4 messages of each kind cycled (signed $(wc -c <"$T/msgs/signed/1.eml") B, plain $(wc -c <"$T/msgs/plain/1.eml") B, mixed $(wc -c <"$T/msgs/mixed/1.eml") B); medians"
	echo
	echo "| milter | socket | messages | msg/s (median) | min–max | milter CPU µs/msg | PostgreSQL CPU µs/msg | driver CPU µs/msg | p50 latency ms |"
	echo "|---|---|---|---:|---:|---:|---:|---:|---:|"
	for t in kms-unix kms-tcp null-unix null-tcp null-nr-unix null-unix2 kms-unix-info; do
		case $t in
		kms-unix) name="kmsmilter"; so=unix ;;
		kms-tcp) name="kmsmilter"; so=tcp ;;
		kms-unix-info) name="kmsmilter, log level info"; so=unix ;;
		null-unix) name="null-milter"; so=unix ;;
		null-tcp) name="null-milter"; so=tcp ;;
		null-nr-unix) name="null-milter -N (no-reply flags)"; so=unix ;;
		null-unix2) name="null-milter, a second one"; so=unix ;;
		esac
		for s in signed plain mixed; do
			[ "$(col "$t" "$s" 4)" = - ] && continue
			echo "| $name | $so | $s | $(col "$t" "$s" 4) | $(range "$t" "$s") | $(col "$t" "$s" 5) | $(col "$t" "$s" 6) | $(col "$t" "$s" 7) | $(col "$t" "$s" 8) |"
		done
	done
	echo "| in-process kms_harvest() | – | signed | $IN1 (1 thread) | | $IN1CPU | – | – | |"
	echo "| in-process kms_harvest() | – | signed | $INN ($CONNS threads) | | $INNCPU | – | – | |"
	echo
	echo "Ratios are taken per round between runs that followed each other, then the median over the"
	echo "rounds is given, with the range in parentheses. *Throughput*: messages/s ÷ messages/s. *CPU*:"
	echo "the same ratio derived from CPU time per message (driver + milter + PostgreSQL for the milters,"
	echo "the harvesting threads in-process): what the ratio would be on a machine that is CPU-bound and"
	echo "not shared; less sensitive to other load."
	echo
	echo "| ratio | goal | unix throughput | unix CPU | tcp throughput | tcp CPU |"
	echo "|---|---|---|---|---|---|"
	echo "| kmsmilter signed ÷ in-process ($CONNS threads) | ≥ 0.8 | $(mark "$(rr kms-unix:signed inproc:$CONNS rate)" 0.8) | $(mark "$(rr kms-unix:signed inproc:$CONNS cpu)" 0.8) | $(mark "$(rr kms-tcp:signed inproc:$CONNS rate)" 0.8) | $(mark "$(rr kms-tcp:signed inproc:$CONNS cpu)" 0.8) |"
	for s in plain mixed; do
		case $s in plain) d=text/plain ;; *) d=multipart/mixed ;; esac
		echo "| kmsmilter $d ÷ null-milter $d | ≥ 0.9 | $(mark "$(rr kms-unix:$s null-unix:$s rate)" 0.9) | $(mark "$(rr kms-unix:$s null-unix:$s cpu)" 0.9) | $(mark "$(rr kms-tcp:$s null-tcp:$s rate)" 0.9) | $(mark "$(rr kms-tcp:$s null-tcp:$s cpu)" 0.9) |"
	done
	for s in plain mixed; do
		echo "| null-milter ÷ an identical null-milter, $s (noise floor of the method) | – | $(rr null-unix:$s null-unix2:$s rate) | $(rr null-unix:$s null-unix2:$s cpu) | | |"
	done
	echo "| kmsmilter signed ÷ null-milter signed (for scale) | – | $(rr kms-unix:signed null-unix:signed rate) | $(rr kms-unix:signed null-unix:signed cpu) | $(rr kms-tcp:signed null-tcp:signed rate) | $(rr kms-tcp:signed null-tcp:signed cpu) |"
	echo "| null-milter ÷ null-milter -N, mixed (what the replies kmsmilter asks for cost) | – | $(rr null-unix:mixed null-nr-unix:mixed rate) | $(rr null-unix:mixed null-nr-unix:mixed cpu) | | |"
	echo "| kmsmilter signed, log level info ÷ warning | – | $(rr kms-unix-info:signed kms-unix:signed rate) | $(rr kms-unix-info:signed kms-unix:signed cpu) | | |"
	echo
	echo "After the run the vault held $NCERT harvested certificate row(s) and $NCAP capability row(s):"
	echo "kmsmilter ran with the default [milter] seen_refresh = 1h, so after the first message of a signer"
	echo "the vault is not written again for that signature: the figures are the steady state of a"
	echo "correspondent who signs every mail."
	echo "kmsmilter at level warning logged $LOGLINES line(s); at level info $INFOLINES."
	if [ -s "$KEEP/load-errors.txt" ] || [ -s "$KEEP/inproc-errors.txt" ]; then
		echo
		echo "**Errors during the run** (see $KEEP):"
		echo '```'
		cat "$KEEP/load-errors.txt" "$KEEP/inproc-errors.txt" | head -20
		echo '```'
	fi
} >"$KEEP/report.md"
cat "$KEEP/report.md"
[ -n "$OUT" ] && cp "$KEEP/report.md" "$OUT"
[ -s "$KEEP/load-errors.txt" ] && exit 1
exit 0
