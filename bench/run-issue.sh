#!/bin/bash
# run-issue.sh - kmsd's key issuance rate against openssl genpkey (issue 4)
#
#   bench/run-issue.sh [-r ROUNDS] [-n N_RSA3072] [-p N_P256] [-C CA_KEY_TYPE]
#                      [-t "KEY_TYPES"] [-o FILE]
#
# Uses the programs in $top_builddir (default: build/; builds kmsd, kmsctl
# and tests/vaulttool there when missing), a private PostgreSQL cluster and
# Postfix's smtp-sink (tests/lib.sh). For each key type (rsa3072, p256)
# and round:
#   - kmsd side: N users get out-of-band tokens (kmsctl enroll --file), the
#     token mails are marked done (they are not what is measured), and one
#     `vaulttool queue-reply -` process queues N enroll requests exactly as
#     kmsmilter does for accepted replies (token used, password sealed to
#     the queue key). The requests are held (status 'running', which no
#     kmsd picks up; 'awaiting-approval' would go through the approval
#     check, and an ungated enroll would start at once),
#     kmsd is started with [enrollment] key_type = TYPE (log level info, as
#     deployed) and waits until it is ready (vault unsealed); then the requests are released with one
#     UPDATE and NOTIFY, and the time runs until all N are done: key
#     generation, CA signature, certificate and escrow rows, sealing,
#     PKCS#12 (modern profile), mail to smtp-sink, commit.
#   - openssl side: `openssl genpkey` of the same key type N times in a row
#     (one process each, output to /dev/null).
# Both sides run one after the other (order swapped every other round) and
# are single-threaded. The ratio is kmsd's rate over openssl's; the medians
# of the per-round figures are reported, with kmsd's CPU time per request.
# -C: the CA's own key type ([ca] key_type at kmsctl init; default
# rsa3072, the default of kmsmilter.conf); -t: the user key types to run
# (default "rsa3072 p256").
# Prints a Markdown section (also written to FILE with -o); raw figures in
# $top_builddir/bench/issue-last-run/.
# Defaults: 3 rounds, N = 60 (rsa3072: the time of one RSA key varies
# widely, 20 gave rounds from 0.73 to 1.12) and 200 (p256). About 6 minutes.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
: "${top_builddir:=$top/build}"
top_srcdir=$top
export top_srcdir top_builddir

ROUNDS=3
NRSA=60
NEC=200
OUT=
CATYPE=rsa3072
TYPES="rsa3072 p256"
CMDLINE="bench/run-issue.sh $*"
while getopts "r:n:p:o:C:t:" opt; do
	case $opt in
	r) ROUNDS=$OPTARG ;;
	n) NRSA=$OPTARG ;;
	p) NEC=$OPTARG ;;
	o) OUT=$OPTARG ;;
	C) CATYPE=$OPTARG ;;
	t) TYPES=$OPTARG ;;
	*) echo "usage: bench/run-issue.sh [-r ROUNDS] [-n N_RSA3072] [-p N_P256] [-C CA_KEY_TYPE]" \
	    "[-t KEY_TYPES] [-o FILE]" >&2; exit 2 ;;
	esac
done
# always through make (incremental): a program left from an older tree
# would measure older code
make -C "$top_builddir" keyvault/kmsd keyvault/kmsctl tests/vaulttool >/dev/null || exit 1
RAW=$top_builddir/bench/issue-last-run
rm -rf "$RAW"; mkdir -p "$RAW"

. "$top/tests/lib.sh"
pg_start
start_sink mail
CONF=$T/kms.conf
write_password "$T/pw" 'benchmark password'
mkconf() { # mkconf KEY_TYPE
	write_config "$CONF" "$(printf '[mail]\nsubmit = smtp://127.0.0.1:%s\nfrom = kms@example.org\n[enrollment]\nkey_type = %s\n[ca]\nkey_type = %s\n' "$PORT" "$1" "$CATYPE")"
	kmsd_config "$CONF" "$T/pw"
}
mkconf rsa3072
"$KMSCTL" -c "$CONF" init --password-file "$T/pw" >/dev/null || bail "kmsctl init failed"
TCK=$(getconf CLK_TCK)
now() { date +%s.%N; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
count_done() { psql_kms "SELECT count(*) FROM requests WHERE kind = 'enroll' AND status = 'done' AND payload->>'queue_id' = 'VAULTTOOL' AND user_id IN (SELECT id FROM users WHERE address LIKE '%@$1')"; }

# kmsd_side TYPE N ROUND: prints "seconds cpu_seconds"
kmsd_side() {
	local type=$1 n=$2 dom="r$3-$1.bench.example.org" t0 t1 c0 c1 kpid i=0
	mkconf "$type"
	seq 1 "$n" | sed "s/^/u/; s/\$/@$dom/" >"$T/users"
	"$KMSCTL" -c "$CONF" enroll --deliver out-of-band --file "$T/users" 2>/dev/null |
	    awk '/^Token: /{print a, $2; next} {a=$1}' >"$T/pairs"
	psql_kms "UPDATE requests SET status = 'done' WHERE kind = 'mail' AND status = 'queued'"
	"$VAULTTOOL" -c "$CONF" -p "$T/pw" queue-reply - <"$T/pairs" >/dev/null || bail "queue-reply failed"
	psql_kms "UPDATE requests SET status = 'running' WHERE status = 'queued'"
	"$KMSD" -c "$CONF" -f 2>"$RAW/kmsd-$type-$3.log" &
	kpid=$!; bg_pids="$bg_pids $kpid"
	until grep -q "ready" "$RAW/kmsd-$type-$3.log"; do
		i=$((i + 1)); [ $i -gt 300 ] && { echo "kmsd did not start" >&2; kill "$kpid"; exit 1; }
		sleep 0.1
	done
	[ "$(count_done "$dom")" = 0 ] || bail "requests were done before the clock started"
	c0=$(cpu_ticks "$kpid"); t0=$(now)
	psql_kms "UPDATE requests SET status = 'queued' WHERE status = 'running'; NOTIFY kms_requests"
	i=0
	until [ "$(count_done "$dom")" = "$n" ]; do
		i=$((i + 1)); [ $i -gt 12000 ] && { echo "kmsd did not finish" >&2; kill "$kpid"; exit 1; }
		sleep 0.05
	done
	t1=$(now); c1=$(cpu_ticks "$kpid")
	kill -TERM "$kpid"; wait "$kpid" 2>/dev/null
	rm -f "$T"/mail/*
	echo "$t0 $t1 $c0 $c1 $TCK" | awk '{printf "%.3f %.3f\n", $2 - $1, ($4 - $3) / $5}'
}
# openssl_side TYPE N: prints seconds
openssl_side() {
	local opts t0 t1
	case $1 in
	rsa3072) opts="-algorithm RSA -pkeyopt rsa_keygen_bits:3072" ;;
	p256) opts="-algorithm EC -pkeyopt ec_paramgen_curve:P-256" ;;
	esac
	t0=$(now)
	for _ in $(seq 1 "$2"); do openssl genpkey $opts -out /dev/null 2>/dev/null; done
	t1=$(now)
	echo "$t0 $t1" | awk '{printf "%.3f\n", $2 - $1}'
}

LOAD_BEFORE=$(cut -d" " -f1-3 /proc/loadavg)
for type in $TYPES; do
	[ $type = rsa3072 ] && n=$NRSA || n=$NEC
	for r in $(seq 1 "$ROUNDS"); do
		if [ $((r % 2)) = 1 ]; then
			k=$(kmsd_side $type "$n" "$r"); o=$(openssl_side $type "$n")
		else
			o=$(openssl_side $type "$n"); k=$(kmsd_side $type "$n" "$r")
		fi
		[ -n "$k" ] && [ -n "$o" ] || bail "round $r of $type failed (logs in $RAW)"
		echo "$type $n $r $k $o" | tee -a "$RAW/raw.txt" >&2
	done
done
LOAD_AFTER=$(cut -d" " -f1-3 /proc/loadavg)

python3 - "$RAW/raw.txt" "$CMDLINE" "$(nproc)" "$(lscpu | sed -n 's/^Model name: *//p' | head -1)" \
    "$LOAD_BEFORE" "$LOAD_AFTER" "$(openssl version)" "$CATYPE" >"$RAW/section.md" <<'EOF'
import sys, statistics, datetime
raw, cmd, ncpu, model, lb, la, ossl, ca = sys.argv[1:9]
rows = {}
for line in open(raw):
    t, n, r, ks, kc, os_ = line.split()
    rows.setdefault(t, []).append((int(n), float(ks), float(kc), float(os_)))
now = datetime.datetime.utcnow().strftime('%Y-%m-%d %H:%M UTC')
print(f"### Results: {now} (machine clock)\n")
print(f"Command: `{cmd.strip()}` on {ncpu} cores ({model}), {ossl}; load average "
      f"before {lb}, after {la}; the CA's key: {ca}. Medians of "
      f"{len(next(iter(rows.values())))} rounds.\n")
print("| key type | N | kmsd: requests/s | kmsd CPU ms/request | openssl genpkey: keys/s | ratio kmsd/openssl | ratios per round |")
print("|---|---:|---:|---:|---:|---:|---|")
for t, rs in rows.items():
    n = rs[0][0]
    kr = [n / ks for (_, ks, _, _) in rs]
    kc = [1000 * kc / n for (_, _, kc, _) in rs]
    orr = [n / o for (_, _, _, o) in rs]
    ratio = [a / b for a, b in zip(kr, orr)]
    print(f"| {t} | {n} | {statistics.median(kr):.2f} | {statistics.median(kc):.1f} | "
          f"{statistics.median(orr):.2f} | **{statistics.median(ratio):.2f}** | "
          + ", ".join(f"{x:.2f}" for x in ratio) + " |")
EOF
cat "$RAW/section.md"
[ -n "$OUT" ] && cp "$RAW/section.md" "$OUT"
exit 0
