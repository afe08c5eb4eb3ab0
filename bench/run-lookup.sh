#!/bin/bash
# run-lookup.sh - latency of the outbound decision (certificate and
# capability lookup, policies, negotiation) with 1,000,000 certificates in
# the vault (issue 5)
#
#   bench/run-lookup.sh [-r ROUNDS] [-n SAMPLES] [-a ADDRESSES] [-b BENCH] [-o FILE]
#
# Uses the programs in $top_builddir (default: build/; builds kmsctl and
# bench/lookup-bench there, make being incremental) and a private PostgreSQL cluster
# (tests/lib.sh: fsync off, defaults otherwise). Steps:
#   1. kmsctl init; a bench CA and a pool of 200 real leaf certificates
#      made with the openssl CLI (160 RSA-2048 with keyEncipherment, 40
#      P-256 with keyAgreement, 6 keys in all, emailProtection).
#   2. Generated rows (set-based SQL, generate_series), for ADDRESSES
#      addresses uI@dJ.bench.test (J = I % 1000; default 500,000):
#      - 1 + I % 3 certificates per address (~2 * ADDRESSES in all), the
#        newest last. Addresses with I % 5 == 0 are our own users (domains
#        d0, d5, ...): issued certificates, usage encryption / signing
#        alternating, the oldest of three revoked (status revoked and a
#        revocations row) and 2 % of the newest revoked too. The others
#        are harvested: 70 % trusted, 20 % untrusted-chain, 10 % expired
#        (by a hash of the row). The DER column holds one of the 200 pool
#        certificates (reused across rows: recipients.c parses it for the
#        key and its usage); sha256 is a unique fake digest per row.
#      - certificate_addresses: one per certificate.
#      - capabilities: every harvested address and 30 % of the own users
#        signed 1 to 4 times (30 days apart), each with one of six
#        announcement lists like the peers send (OpenSSL library with
#        AES-GCM + RSAES-OAEP, openssl cms, NSS, gpgsm, Outlook-like, none
#        announced); 10 % of them name their oldest certificate in an
#        SMIMEEncryptionKeyPreference.
#      - policy: algorithms for 100 domains (GCM first), allow_untrusted
#        for 5,000 users.
#      then ANALYZE, EXPLAIN ANALYZE of recipients.c's and policy.c's
#      statements for the four addresses of one message (kept in the raw
#      directory and printed).
#   3. bench/lookup-bench with the kms_milter role on the unix socket:
#      ROUNDS rounds of SAMPLES interleaved samples of SELECT 1, one
#      recipient lookup, and the whole decision for messages to 1, 3 and
#      10 recipients (5 % unknown addresses).
# -b BENCH: also measure another lookup-bench binary (e.g. linked with an
# older keyvault/recipients.c) on the same data, right after, for a
# before/after comparison.
# Prints a Markdown section (also written to FILE with -o); raw figures in
# $top_builddir/bench/lookup-last-run/. Defaults: 3 rounds of 5,000; about
# 4 minutes, a third of it generating the rows.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
: "${top_builddir:=$top/build}"
top_srcdir=$top
export top_srcdir top_builddir

ROUNDS=3
SAMPLES=5000
NADDR=500000
OUT=
BASE=
CMDLINE="bench/run-lookup.sh $*"
while getopts "r:n:a:b:o:" opt; do
	case $opt in
	r) ROUNDS=$OPTARG ;;
	n) SAMPLES=$OPTARG ;;
	a) NADDR=$OPTARG ;;
	b) BASE=$OPTARG ;;
	o) OUT=$OPTARG ;;
	*) echo "usage: bench/run-lookup.sh [-r ROUNDS] [-n SAMPLES] [-a ADDRESSES] [-b BENCH] [-o FILE]" >&2; exit 2 ;;
	esac
done
# always through make: a bench program is not part of "all", and one left
# from an older tree would measure older code
make -C "$top_builddir" keyvault/kmsctl bench/lookup-bench >/dev/null || exit 1
RAW=$top_builddir/bench/lookup-last-run
rm -rf "$RAW"; mkdir -p "$RAW"

. "$top/tests/lib.sh"
pg_start
CONF=$T/kms.conf
write_config "$CONF"
# kmsmilter's role for the measured connection
sed -i "s|^socket = .*|&\ndsn = host=$PGSOCK dbname=kms user=kms_milter|" "$CONF"
write_password "$T/pw" 'benchmark password'
"$KMSCTL" -c "$CONF" init --password-file "$T/pw" >/dev/null || bail "kmsctl init failed"

# --- 1. the certificate pool ---------------------------------------------------------
P=$T/pool; mkdir -p "$P"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$P/ca.key" \
    -out "$P/ca.pem" -subj "/CN=Bench CA" -days 3650 2>/dev/null || bail "bench CA"
for k in 1 2 3 4; do openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$P/rsa$k.key" 2>/dev/null; done
for k in 1 2; do openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$P/ec$k.key" 2>/dev/null; done
printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=emailProtection\n' >"$P/rsa.ext"
printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyAgreement\nextendedKeyUsage=emailProtection\n' >"$P/ec.ext"
{
	echo "CREATE TABLE bench_der (pn integer PRIMARY KEY, der bytea NOT NULL);"
	for n in $(seq 0 199); do
		if [ "$n" -lt 160 ]; then key=$P/rsa$((n % 4 + 1)).key ext=$P/rsa.ext
		else key=$P/ec$((n % 2 + 1)).key ext=$P/ec.ext; fi
		openssl req -new -key "$key" -subj "/CN=pool $n/emailAddress=pool$n@bench.test" 2>/dev/null |
		    openssl x509 -req -CA "$P/ca.pem" -CAkey "$P/ca.key" -set_serial $((1000 + n)) \
			-days 3650 -extfile "$ext" -outform DER -out "$P/c.der" 2>/dev/null || bail "pool certificate $n"
		echo "INSERT INTO bench_der VALUES ($n, decode('$(base64 -w0 "$P/c.der")', 'base64'));"
	done
} >"$P/pool.sql"
"$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$PGSOCK" -U kmsdba -d kms -f "$P/pool.sql" || bail "pool load"

# --- 2. generated rows ------------------------------------------------------------
now() { date +%s.%N; }
t0=$(now)
cat >"$RAW/generate.sql" <<EOF
\set ON_ERROR_STOP 1
BEGIN;
-- rows are generated consistent; skip per-row foreign-key triggers
SET LOCAL session_replication_role = replica;
CREATE TEMP TABLE g AS
  SELECT i, k, n, (i % 5 = 0) AS own, (i - 1) * 3 + k + 1 AS id,
    'u' || i || '@d' || (i % 1000) || '.bench.test' AS address,
    abs(hashint4(i * 4 + k)) % 100 AS h
  FROM generate_series(1, $NADDR) AS i, LATERAL (SELECT 1 + i % 3 AS n) AS nn,
    LATERAL generate_series(0, nn.n - 1) AS k;
INSERT INTO certificates (id, source, usage, status, sha256, serial, subject, issuer,
    not_before, not_after, der, first_seen, last_seen)
  SELECT id,
    CASE WHEN own THEN 'issued' ELSE 'harvested' END,
    CASE WHEN NOT own THEN 'both' WHEN k % 2 = 1 THEN 'signing' ELSE 'encryption' END,
    CASE WHEN own THEN
      CASE WHEN (n = 3 AND k = 0) OR (k = n - 1 AND abs(hashint4(i)) % 50 = 0) THEN 'revoked' ELSE 'valid' END
    WHEN h < 70 THEN 'trusted' WHEN h < 90 THEN 'untrusted-chain' ELSE 'expired' END,
    md5(i || '/' || k) || md5(k || '/' || i),
    to_hex(id), 'CN=' || address, 'CN=Bench CA ' || (i % 20),
    now() - (n - k) * interval '200 days',
    CASE WHEN NOT own AND h >= 90 THEN now() - interval '1 day'
      ELSE now() - (n - k) * interval '200 days' + interval '730 days' END,
    p.der, now() - (n - k) * interval '200 days', now()
  FROM g JOIN bench_der p ON p.pn = g.id % 200;
INSERT INTO certificate_addresses (certificate_id, address) SELECT id, address FROM g;
INSERT INTO revocations (certificate_id, reason, revoked_at, revoked_by)
  SELECT c.id, 'superseded', now() - interval '10 days', 'bench'
  FROM certificates c WHERE c.status = 'revoked';
-- signatures: 1..4 per signing address, the newest first (j = 0)
INSERT INTO capabilities (certificate_id, address, signing_time, algorithms, key_preference, seen_at)
  SELECT (a.i - 1) * 3 + (j % a.n) + 1, a.address,
    now() - j * interval '30 days' - (a.i % 86400) * interval '1 second',
    CASE abs(hashint4(a.i + j)) % 6
      WHEN 0 THEN ARRAY['aes256-gcm','aes128-gcm','aes256-cbc','aes192-cbc','aes128-cbc','rsaes-oaep']
      WHEN 1 THEN ARRAY['aes256-cbc','aes192-cbc','aes128-cbc','des-ede3-cbc','rc2-cbc-128','rc2-cbc-64','des-cbc','rc2-cbc-40']
      WHEN 2 THEN ARRAY['aes256-cbc','aes128-cbc','des-ede3-cbc','rc2-cbc-128','rc2-cbc-64','rc2-cbc-40','des-cbc']
      WHEN 3 THEN ARRAY['aes128-cbc','des-ede3-cbc','rsa-encryption']
      WHEN 4 THEN ARRAY['aes256-cbc','aes128-cbc','des-ede3-cbc']
      ELSE NULL END,
    CASE WHEN j = 0 AND abs(hashint4(a.i + 99)) % 10 = 0 THEN (a.i - 1) * 3 + 1 END,
    now() - j * interval '30 days'
  FROM (SELECT DISTINCT i, n, address, own FROM g WHERE k = 0) a,
    LATERAL generate_series(0, abs(hashint4(a.i + 7)) % 4) AS j
  WHERE NOT a.own OR abs(hashint4(a.i + 3)) % 10 < 3;
INSERT INTO policy (scope, name, key, value)
  SELECT 'domain', 'd' || d || '.bench.test', 'algorithms', 'aes256-gcm,aes128-gcm,aes256-cbc,aes128-cbc'
  FROM generate_series(0, 999, 10) AS d;
INSERT INTO policy (scope, name, key, value)
  SELECT 'user', 'u' || i || '@d' || (i % 1000) || '.bench.test', 'allow_untrusted', 'yes'
  FROM generate_series(7, $NADDR, GREATEST($NADDR / 5000, 1)) AS i;
SELECT setval('certificates_id_seq', (SELECT max(id) FROM certificates));
DROP TABLE bench_der;
COMMIT;
ANALYZE;
EOF
"$PG_BINDIR/psql" -X -q -h "$PGSOCK" -U kmsdba -d kms -f "$RAW/generate.sql" >"$RAW/generate.log" 2>&1 ||
    { cat "$RAW/generate.log"; bail "generating rows failed"; }
t1=$(now)
LOAD_S=$(echo "$t0 $t1" | awk '{printf "%.0f", $2 - $1}')
COUNTS=$(psql_kms "SELECT (SELECT count(*) FROM certificates) || ' certificates, ' ||
    (SELECT count(*) FROM certificate_addresses) || ' certificate addresses, ' ||
    (SELECT count(*) FROM capabilities) || ' capabilities rows (' ||
    (SELECT count(*) FROM capabilities WHERE key_preference IS NOT NULL) || ' with a key preference), ' ||
    (SELECT count(*) FROM revocations) || ' revocations, ' ||
    (SELECT count(*) FROM policy) || ' policy rows; ' ||
    pg_size_pretty(pg_database_size('kms')) || ' database'")
echo "loaded in ${LOAD_S} s: $COUNTS" >&2

# --- EXPLAIN ANALYZE of the statements, for one message ---------------------------
# recipients.c's certificate statement and policy.c's policy statement as
# kmsmilter runs them: prepared, after enough executions for the plan cache
# to settle, for the four addresses of one message; then how often each was
# planned generic and custom (custom after the first five: planned again on
# every execution).
A=u4711@d711.bench.test
extract() { # the C string constant $2 of keyvault/$1 as SQL
	python3 - "$top/keyvault/$1" "$2" <<'PY'
import re, sys
src, name = sys.argv[1:3]
text = open(src).read()
body = text[text.index("static const char %s[] =" % name):]
body = body[body.index("=") + 1:body.index(";\n")]
body = body.replace("G_STRINGIFY(MAX_CANDIDATES)", '"20"')
print("".join(bytes(m, "ascii").decode("unicode_escape") for m in re.findall(r'"((?:[^"\\]|\\.)*)"', body)))
PY
}
MSG="{$A,u4712@d712.bench.test,nobody5@d5.bench.test,u4715@d715.bench.test}"
{
	echo "\\o /dev/null"
	echo "PREPARE cert(text[], boolean[]) AS $(extract recipients.c cert_query);"
	echo "PREPARE pol(text[], text[]) AS $(extract policy.c rows_query);"
	for i in 1 2 3 4 5 6 7 8; do
		echo "EXECUTE cert('{u$((i * 13))@d$((i * 13)).bench.test,u$((i * 17))@d$((i * 17)).bench.test}', '{f,t}');"
		echo "EXECUTE pol('{d$((i * 13)).bench.test,d$((i * 17)).bench.test}', '{u$((i * 13))@d$((i * 13)).bench.test}');"
	done
	echo "\\o"
	echo "\\echo -- recipients.c cert_query, prepared (kms_recipient_certs), for a message to 3 + its sender"
	echo "EXPLAIN (ANALYZE, COSTS OFF, SUMMARY ON) EXECUTE cert('$MSG', '{f,f,f,f}');"
	echo "\\echo -- policy.c rows_query, prepared (kms_policy_rows_any): the domains and users of that message"
	echo "EXPLAIN (ANALYZE, COSTS OFF, SUMMARY ON) EXECUTE pol('{d711.bench.test,d712.bench.test,d5.bench.test,d715.bench.test}', '$MSG');"
	echo "\\echo -- plans: statement|generic|custom"
	echo "SELECT name, generic_plans, custom_plans FROM pg_prepared_statements ORDER BY name;"
} | "$PG_BINDIR/psql" -X -q -At -h "$PGSOCK" -U kms_milter -d kms >"$RAW/explain.txt" 2>&1
grep -qi "seq scan on \(certificates\|certificate_addresses\|capabilities\|revocations\)" "$RAW/explain.txt" &&
    echo "WARNING: a sequential scan on a big table, see $RAW/explain.txt" >&2
grep -Eq "^(cert|pol)\|[0-9]+\|([6-9]|[1-9][0-9])$" "$RAW/explain.txt" &&
    echo "WARNING: a statement is planned again on every execution, see $RAW/explain.txt" >&2

# --- 3. measure -------------------------------------------------------------------
LOAD_BEFORE=$(cut -d" " -f1-3 /proc/loadavg)
"$top_builddir/bench/lookup-bench" -c "$CONF" -r "$ROUNDS" -n "$SAMPLES" -N "$NADDR" \
    >"$RAW/raw.txt" 2>"$RAW/bench.err" || { cat "$RAW/bench.err"; bail "lookup-bench failed"; }
if [ -n "$BASE" ]; then
	"$BASE" -c "$CONF" -r "$ROUNDS" -n "$SAMPLES" -N "$NADDR" \
	    >"$RAW/raw-base.txt" 2>"$RAW/bench-base.err" || { cat "$RAW/bench-base.err"; bail "$BASE failed"; }
fi
LOAD_AFTER=$(cut -d" " -f1-3 /proc/loadavg)

python3 - "$RAW/raw.txt" "$RAW/raw-base.txt" "$BASE" "$CMDLINE" "$(nproc)" "$(lscpu | sed -n 's/^Model name: *//p' | head -1)" \
    "$LOAD_BEFORE" "$LOAD_AFTER" "$("$PG_BINDIR/postgres" --version)" "$COUNTS" "$LOAD_S" \
    "$RAW/explain.txt" >"$RAW/section.md" <<'EOF'
import sys, statistics, datetime, re
import os
raw, rawbase, base, cmd, ncpu, model, lb, la, pgv, counts, load_s, explain = sys.argv[1:13]
def load(path):
    rows = {}
    for line in open(path):
        d = dict(kv.split("=", 1) for kv in line.split())
        rows.setdefault(d["kind"], []).append({k: float(v) for k, v in d.items() if k not in ("kind",)})
    return rows
rows = load(raw)
med = lambda kind, key: statistics.median(r[key] for r in rows[kind])
rounds = len(rows["select1"])
now = datetime.datetime.utcnow().strftime('%Y-%m-%d %H:%M UTC')
print(f"### Results: {now} (machine clock)\n")
print(f"- command: `{cmd.strip()}`")
print(f"- machine: {ncpu} cores ({model}); load average before {lb}, after {la}")
print(f"- {pgv.strip()}, private cluster on a unix socket (fsync off, defaults otherwise); "
      f"the bench connects as kms_milter like kmsmilter")
print(f"- vault: {counts}; generated and analysed in {load_s} s")
print(f"- {rounds} rounds of {int(rows['select1'][0]['samples'])} interleaved samples per kind; "
      "medians over the rounds of each round's percentile, in µs\n")
def tables():
    print("| what (unit) | p50 | p90 | **p99** | max | mean | p99 per round | found | p99 < 1 ms |")
    print("|---|---:|---:|---:|---:|---:|---|---:|---|")
    label = {"select1": "`SELECT 1` round trip (floor)", "lookup": "one recipient lookup (per recipient)"}
    for kind in rows:
        name = label.get(kind, f"message to {kind[3:]} recipient{'s' if kind != 'msg1' else ''} + sender (per message)")
        found = f"{med(kind, 'found'):.0%}" if "found" in rows[kind][0] else ""
        goal = "" if kind == "select1" else ("yes" if med(kind, "p99") < 1000 else "**no**")
        print(f"| {name} | {med(kind,'p50'):.0f} | {med(kind,'p90'):.0f} | **{med(kind,'p99'):.0f}** | "
              f"{med(kind,'max'):.0f} | {med(kind,'mean'):.0f} | "
              + ", ".join(f"{r['p99']:.0f}" for r in rows[kind]) + f" | {found} | {goal} |")
    print()
    print("| message of K recipients | p50 per message | p50 per recipient | p99 per recipient | policies p50 | certificates p50 | negotiate p50 | negotiated | p50 ÷ SELECT 1 p50 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    s1 = med("select1", "p50")
    for kind in rows:
        if not kind.startswith("msg"):
            continue
        k = int(kind[3:])
        print(f"| {k} | {med(kind,'p50'):.0f} | {med(kind,'p50')/k:.0f} | {med(kind,'p99')/k:.0f} | "
              f"{med(kind,'policies_p50'):.0f} | {med(kind,'certificates_p50'):.0f} | "
              f"{med(kind,'negotiate_p50'):.1f} | {med(kind,'negotiated'):.0%} | {med(kind,'p50')/s1:.1f} |")
    print()
tables()
if base and os.path.exists(rawbase):
    rows = load(rawbase)
    print(f"The same samples (same seed, same data, right after) with `{base}`:\n")
    tables()
ex = open(explain).read()
times = re.findall(r"Execution Time: ([0-9.]+) ms", ex)
plans = re.findall(r"Planning Time: ([0-9.]+) ms", ex)
print("EXPLAIN ANALYZE (the four addresses of one message; full plans in `bench/lookup-last-run/explain.txt`): "
      "planning " + ", ".join(f"{p} ms" for p in plans) + "; execution "
      + ", ".join(f"{t} ms" for t in times) + " (certificate statement, policy statement).")
seq = re.findall(r"Seq Scan on (\w+)", ex)
print(f"Sequential scans: {', '.join(sorted(set(seq))) if seq else 'none'}.")
EOF
cat "$RAW/section.md"
[ -n "$OUT" ] && cp "$RAW/section.md" "$OUT"
exit 0
