#!/bin/sh
# Import under approvals (import=2): two vaults (databases kms and kmsb in
# one private cluster), each with its kmsd; B is created with an
# administrator (alice) and gets two more (bob, carol). u1 goes from A to
# B: in B, kmsctl import prints a request and imports nothing; one
# approval -> still nothing; the second -> kmsd imports; kmsctl import
# --report ID BUNDLE then writes BUNDLE.implog. --report refuses another
# file (other SHA-256), a request that is not done (awaiting approval,
# failed with kmsd's reason, rejected), a request of another kind and an
# unknown id.
. "$top_srcdir/tests/lib.sh"
[ -x /usr/sbin/smtp-sink ] || bail "smtp-sink not found: install postfix (contrib/install-deps.sh does)"
pg_start
start_sink mail
"$PG_BINDIR/createdb" -h "$PGSOCK" -U kmsdba kmsb || bail "createdb kmsb failed"
for a in alice bob carol; do write_password "$T/$a.pw" "passphrase of $a, long enough"; done
# mkconf NAME DB [INIT-OPTIONS...]: $T/NAME.conf for database DB, initialised
mkconf() {
	local name=$1 db=$2; shift 2
	write_password "$T/$name.pw" "import-approvals startup password $name"
	write_config "$T/$name.conf" "$(printf '[mail]\nsubmit = smtp://127.0.0.1:%s\nfrom = kms@example.org\n[ca]\nsubject = CN=Vault %s CA\n[enrollment]\nkey_type = p256\n' "$PORT" "$name")"
	sed -i "s|dbname=kms |dbname=$db |" "$T/$name.conf"
	kmsd_config "$T/$name.conf" "$T/$name.pw"
	"$KMSCTL" -c "$T/$name.conf" init --password-file "$T/$name.pw" "$@" >/dev/null || bail "init $name failed"
}
mkconf a kms
mkconf b kmsb --admin alice --admin-password-file "$T/alice.pw"
A=$T/a.conf B=$T/b.conf

as() { # as ADMIN kmsctl-args... (in vault B)
	local a=$1; shift
	"$KMSCTL" -c "$B" --admin "$a" --admin-password-file "$T/$a.pw" "$@"
}
psql_b() { PGDATABASE_KMS=kmsb psql_kms "$1"; }
req_is() { [ "$(PGDATABASE_KMS=$1 psql_kms "SELECT status FROM requests WHERE id = $2")" = "$3" ]; }
status_b() { psql_b "SELECT status FROM requests WHERE id = ${1:-0}"; }
reqid() { sed -n 's/^Request: //p' "$1"; }
ready() { grep -q "worker .* ready" "$T/kmsd-$1.log"; }
has_transport_key() { [ "$(PGDATABASE_KMS=$1 psql_kms "SELECT count(*) FROM transport_keys")" = 1 ]; }
admin_active() { [ "$(psql_b "SELECT count(*) FROM admins WHERE name = '$1' AND mac IS NOT NULL")" = 1 ]; }
users_b() { psql_b "SELECT count(*) FROM users WHERE address = 'u1@example.org'"; }
keys_b() { psql_b "SELECT count(*) FROM escrowed_keys e JOIN users u ON u.id = e.user_id WHERE u.address = 'u1@example.org'"; }

KPIDS=
for n in a b; do
	"$KMSD" -c "$T/$n.conf" -f 2>>"$T/kmsd-$n.log" &
	KPIDS="$KPIDS $!"; bg_pids="$bg_pids $!"
done
for n in a b; do
	wait_for 60 ready "$n" || bail "kmsd $n did not start: $(tail -3 "$T/kmsd-$n.log")"
done
wait_for 60 has_transport_key kms || bail "kmsd a made no transport key: $(tail -3 "$T/kmsd-a.log")"
wait_for 60 has_transport_key kmsb || bail "kmsd b made no transport key: $(tail -3 "$T/kmsd-b.log")"

# --- vault B: three administrators, import=2 ---------------------------------------
for a in bob carol; do
	as alice admin add "$a" --password-file "$T/$a.pw" >"$T/add.out" 2>&1 || { cat "$T/add.out"; bail "admin add $a failed"; }
	wait_for 30 admin_active "$a" || bail "kmsd did not accept $a: $(tail -3 "$T/kmsd-b.log")"
done
as alice policy approvals set import=2 >"$T/pol.out" 2>&1 || bail "approvals set import=2 failed: $(cat "$T/pol.out")"
POL=$(reqid "$T/pol.out")
wait_for 30 req_is kmsb "${POL:-0}" done || bail "import=2 not in force: $(tail -3 "$T/kmsd-b.log")"
ok "vault B has alice, bob and carol, and import=2"

# --- vault A: u1 with an escrowed key, exported to B --------------------------------
"$KMSCTL" -c "$A" enroll --deliver out-of-band u1@example.org >"$T/tok.out" 2>"$T/tok.err" || bail "enroll failed"
TOK=$(sed -n 's/^Token: //p' "$T/tok.out")
RID=$("$VAULTTOOL" -c "$A" -p "$T/a.pw" queue-reply u1@example.org "$TOK") || bail "queue-reply failed"
wait_for 60 req_is kms "${RID:-0}" done || bail "enrollment not done: $(tail -5 "$T/kmsd-a.log")"
"$KMSCTL" -c "$B" transport-cert --out "$T/b.crt" >"$T/tc.out" || bail "transport-cert failed"
FPB8=$(sed -n 's/^Fingerprint: //p' "$T/tc.out" | cut -c1-8)
"$KMSCTL" -c "$A" export u1@example.org --to "$T/b.crt" --fingerprint "$FPB8" --out "$T/u1.bundle" >"$T/ex.out" 2>&1 ||
	bail "export from A failed: $(cat "$T/ex.out")"
SHA=$(sha256sum "$T/u1.bundle" | cut -c1-64)

# --- import=2: the request waits -----------------------------------------------------
expect_exit 1 "under import=2, import needs an administrator" "$KMSCTL" -c "$B" import "$T/u1.bundle"
check "import=2: kmsctl import exits 0" as alice import "$T/u1.bundle"
ID=$(reqid "$T/out")
like "$T/out" "^Request: [0-9]+$" "it prints the request id"
like "$T/out" "waits for approvals; once done: kmsctl import --report ${ID:-X} $T/u1.bundle\$" \
	"and the follow-up command"
[ -e "$T/u1.bundle.implog" ] && not_ok "no .implog yet" || ok "no .implog yet"
is "$(status_b "$ID")" awaiting-approval "the request awaits approval"
is "$(users_b)" 0 "u1 is not in vault B"
expect_exit 1 "--report before any approval is refused" "$KMSCTL" -c "$B" import --report "${ID:-0}" "$T/u1.bundle"
like "$T/err" "import request ${ID:-X} still waits for approvals" "it says the request waits"
one_line "$T/err" "in one line"
[ -e "$T/u1.bundle.implog" ] && not_ok "and writes no .implog" || ok "and writes no .implog"

check "bob approves" as bob approve "${ID:-0}"
like "$T/out" "1 of 2 approvals" "his is the first of two"
sleep 3
is "$(status_b "$ID")" awaiting-approval "one approval: the request still waits"
is "$(users_b)" 0 "one approval: u1 is still not in vault B"
expect_exit 1 "--report after one approval is refused" "$KMSCTL" -c "$B" import --report "${ID:-0}" "$T/u1.bundle"

check "carol approves" as carol approve "${ID:-0}"
wait_for 60 req_is kmsb "${ID:-0}" done
is "$(status_b "$ID")" done "the second approval makes kmsd import"
is "$(users_b)" 1 "u1 is in vault B"
is "$(keys_b)" 1 "with her escrowed key"
is "$(psql_b "SELECT count(*) FROM requests WHERE id = ${ID:-0} AND result IS NOT NULL")" 0 \
	"kmsd cleared the bundle from the request"

# --- --report ------------------------------------------------------------------------
cp "$T/u1.bundle" "$T/other.bundle" && printf 'x' >>"$T/other.bundle"
expect_exit 1 "--report with another file is refused" "$KMSCTL" -c "$B" import --report "${ID:-0}" "$T/other.bundle"
like "$T/err" "other.bundle is not the bundle of import request ${ID:-X} \(its SHA-256 is [0-9a-f]{16}\.\.\., the request's bundle has $(echo "$SHA" | cut -c1-16)\.\.\.\)" \
	"it names both SHA-256s"
one_line "$T/err" "in one line"
[ -e "$T/other.bundle.implog" ] && not_ok "no .implog for the other file" || ok "no .implog for the other file"
expect_exit 1 "--report of an unknown request is refused" "$KMSCTL" -c "$B" import --report 999999 "$T/u1.bundle"
like "$T/err" "no request 999999" "it says so"
expect_exit 1 "--report of a request of another kind is refused" "$KMSCTL" -c "$B" import --report "${POL:-0}" "$T/u1.bundle"
like "$T/err" "request ${POL:-X} is an approvals-set request, not an import" "it names the kind"
expect_exit 2 "--report with a non-numeric id is a usage error" "$KMSCTL" -c "$B" import --report x1 "$T/u1.bundle"
expect_exit 2 "--report with --source-fingerprint is a usage error" \
	"$KMSCTL" -c "$B" import --report "${ID:-0}" --source-fingerprint 0123456789 "$T/u1.bundle"
[ -e "$T/u1.bundle.implog" ] && not_ok "none of these wrote an .implog" || ok "none of these wrote an .implog"

check "kmsctl import --report ID BUNDLE" "$KMSCTL" -c "$B" import --report "${ID:-0}" "$T/u1.bundle"
like "$T/out" "^imported bundle [0-9a-f-]+ from the vault with transport certificate [0-9a-f]{8}: 1 user, 1 key; report $T/u1.bundle.implog\$" \
	"it prints the import summary"
one_line "$T/out" "in one line"
like "$T/u1.bundle.implog" "^user u1@example.org \(new user\): 1 key\(s\) imported, 0 already held" \
	"the .implog names the user"
like "$T/u1.bundle.implog" "^request: ${ID:-X}\$" "and the request"
like "$T/u1.bundle.implog" "^bundle file: $T/u1.bundle \(sha256 $SHA\)\$" "and the bundle's SHA-256"
like "$T/u1.bundle.implog" "^source transport certificate: $(PGDATABASE_KMS=kms psql_kms "SELECT sha256 FROM transport_keys WHERE status = 'active'")\$" \
	"and the source vault"
unlike "$T/u1.bundle.implog" "PRIVATE|MII" "and no key material"

# --- requests that are not done --------------------------------------------------------
python3 -c 'import sys; d=bytearray(open(sys.argv[1],"rb").read()); d[len(d)-40]^=1; open(sys.argv[2],"wb").write(d)' \
	"$T/u1.bundle" "$T/damaged.bundle"
as alice import "$T/damaged.bundle" >"$T/dmg.out" 2>&1
FID=$(reqid "$T/dmg.out")
as bob approve "${FID:-0}" >/dev/null 2>&1
as carol approve "${FID:-0}" >/dev/null 2>&1
wait_for 60 req_is kmsb "${FID:-0}" failed
is "$(status_b "$FID")" failed "an approved damaged bundle fails in kmsd"
expect_exit 1 "--report of a failed import is refused" "$KMSCTL" -c "$B" import --report "${FID:-0}" "$T/damaged.bundle"
like "$T/err" "import request ${FID:-X} failed: nothing was imported: .*(does not decrypt|signature)" \
	"with kmsd's reason"
one_line "$T/err" "in one line"
is "$(psql_b "SELECT count(*) FROM requests WHERE id = ${FID:-0} AND result IS NOT NULL")" 0 \
	"the failed request keeps no copy of the bundle"
[ -e "$T/damaged.bundle.implog" ] && not_ok "and no .implog" || ok "and no .implog"

as alice import "$T/damaged.bundle" >"$T/rej.out" 2>&1
JID=$(reqid "$T/rej.out")
as bob reject "${JID:-0}" --comment "not this one" >/dev/null 2>&1
wait_for 30 req_is kmsb "${JID:-0}" rejected
expect_exit 1 "--report of a rejected import is refused" "$KMSCTL" -c "$B" import --report "${JID:-0}" "$T/damaged.bundle"
like "$T/err" "import request ${JID:-X} was rejected" "it says so"
is "$(psql_b "SELECT count(*) FROM requests WHERE id = ${JID:-0} AND result IS NOT NULL")" 0 \
	"the rejected request keeps no copy of the bundle"

is "$(keys_b)" 1 "vault B still holds one key of u1"
check "kmsctl audit verify (vault B)" "$KMSCTL" -c "$B" audit verify
for p in $KPIDS; do
	kill -TERM "$p" 2>/dev/null; wait "$p" 2>/dev/null; rc=$?
	is "$rc" 0 "kmsd stops cleanly (exit 0)"
done
done_testing
