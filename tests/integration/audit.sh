#!/bin/sh
# The audit log (keyvault/audit.h): a scenario through the real programs
# (kmsctl init/enroll/revoke/policy, a failed and an accepted reply through
# kmsmilter over the milter protocol, kmsd issuing, publishing a CRL, MACing)
# leaves the expected entries in order with their actors; `kmsctl audit
# verify` passes with and without the startup password. Then, as the
# database superuser: an edited row, a deleted row, and a forged row
# inserted with the chain recomputed (an attacker who knows the algorithm
# but not the vault key) are each named by verify; kms_milter and
# kms_service cannot change or delete entries; no token or password is in
# the table or the logs.
. "$top_srcdir/tests/lib.sh"
[ -x /usr/sbin/smtp-sink ] || bail "smtp-sink not found: install postfix"
command -v miltertest >/dev/null || bail "miltertest not installed (Debian: miltertest)"
pg_start
start_sink mail
CONF=$T/kms.conf
MPORT=$(free_port)
PW='audit test password'
write_password "$T/pw" "$PW"
write_password "$T/bad" 'not the password'
write_config "$CONF" "$(printf '[log]\nlevel = info\n[mail]\nsubmit = smtp://127.0.0.1:%s\nfrom = kms@example.org\n[ca]\ncrl_url = http://pki.example.org/kms.crl\n[enrollment]\nkey_type = p256\n' "$PORT")"
sed -i "s|^socket = .*|socket = inet:$MPORT@127.0.0.1\nenroll_address = kms-enroll@example.org\ndsn = host=$PGSOCK dbname=kms user=kms_milter\nsystem_trust = no|; s|^\[kms\]|[kms]\nstartup_password_file = $T/pw|" "$CONF"
cd "$T" || bail "no temp dir"

"$KMSCTL" -c "$CONF" init --password-file "$T/pw" >/dev/null || bail "init failed"
"$KMSCTL" -c "$CONF" enroll --deliver out-of-band alice@example.org >"$T/enroll.out" 2>&1 || bail "enroll failed"
TOK=$(sed -n 's/^Token: //p' "$T/enroll.out")
[ -n "$TOK" ] || bail "no token"

start_milter "$CONF" "$T/milter.log"
grep -q "listening on" "$T/milter.log" || bail "kmsmilter did not start: $(cat "$T/milter.log")"
mail() { # mail FILE FROM BODY
	printf 'From: <%s>\nTo: kms-enroll@example.org\nSubject: Re: enrollment\nContent-Type: text/plain; charset=utf-8\n\n%s\n' "$2" "$3" >"$1"
}
send() { f=$1; shift; miltertest -D sock="inet:$MPORT@127.0.0.1" -D file="$f" "$@" -s "$top_srcdir/tests/milter-reply.lua" >"$T/mt.out" 2>&1; }
mail bad.eml alice@example.org "Token: AAAAA-BBBBB-CCCCC-DDDDD-EEEEE"
send bad.eml -D from='<alice@example.org>' -D expect=reject -D code=550 -D xcode=5.7.0 \
	-D text="token unknown: check the token you were sent" &&
	ok "a wrong token is refused by kmsmilter" || { not_ok "a wrong token is refused by kmsmilter"; diag "$(cat "$T/mt.out")"; }
mail good.eml alice@example.org "Token: $TOK"
send good.eml -D from='<alice@example.org>' -D expect=discard -D deleted=kms-enroll@example.org &&
	ok "alice's reply is accepted" || { not_ok "alice's reply is accepted"; diag "$(cat "$T/mt.out")"; }

KPID=
start_kmsd() { "$KMSD" -c "$CONF" -f 2>>"$T/kmsd.log" & KPID=$!; bg_pids="$bg_pids $KPID"; }
stop_kmsd() { kill -TERM "$KPID" 2>/dev/null; wait "$KPID" 2>/dev/null; is "$?" 0 "kmsd stops cleanly"; }
has_entry() { [ "$(psql_kms "SELECT count(*) FROM audit WHERE action = '$1'")" -ge "${2:-1}" ]; }
start_kmsd
wait_for 60 has_entry "certificates issued" && ok "kmsd issues alice's certificates" || bail "no issuance: $(tail -5 "$T/kmsd.log")"
check "kmsctl revoke alice" "$KMSCTL" -c "$CONF" revoke --reason keyCompromise alice@example.org
wait_for 30 has_entry "CRL published" 2 || not_ok "kmsd publishes a CRL after the revocation"
check "kmsctl policy set" "$KMSCTL" -c "$CONF" policy set --domain example.org "algorithms=aes256-cbc,aes128-cbc"
all_maced() { [ "$(psql_kms "SELECT count(*) FROM audit WHERE mac IS NULL")" = 0 ]; }
wait_for 10 all_maced && ok "kmsd MACs new entries while it runs" || not_ok "kmsd MACs new entries while it runs"
stop_kmsd
is "$(psql_kms "SELECT count(*) FROM audit WHERE mac IS NULL")" 0 "kmsd MACs its own 'stopped' entry before it exits"

# --- the entries ------------------------------------------------------------
check "kmsctl audit list --json" "$KMSCTL" -c "$CONF" audit list --json
cp "$T/out" "$T/list.json"
check "the expected actions in order, with their actors" python3 - "$T/list.json" "$(id -un)" <<'EOF'
import json, re, sys
rows = json.load(open(sys.argv[1]))
login = sys.argv[2]
want = [("init", r"^%s \(db role kmsdba\)$" % re.escape(login)),
	("enroll tokens issued", r"^%s \(db role kmsdba\)$" % re.escape(login)),
	("failed authentication", r"^kmsmilter$"),
	("reply accepted", r"^kmsmilter$"),
	("kmsd started", r"^kmsd@[^:]+:\d+$"),
	("certificates issued", r"^kmsd@"),
	("revoked", r"^%s " % re.escape(login)),
	("CRL published", r"^kmsd@"),
	("policy set", r"^%s " % re.escape(login)),
	("kmsd stopped", r"^kmsd@")]
i = 0
for r in rows:
	if i < len(want) and r["action"] == want[i][0]:
		assert re.search(want[i][1], r["actor"]), "%s: actor %r" % (r["action"], r["actor"])
		i += 1
assert i == len(want), "missing %r in %r" % (want[i][0], [(r["id"], r["action"]) for r in rows])
assert [r["id"] for r in rows] == list(range(1, len(rows) + 1)), "ids not 1..N"
by = {r["action"]: r["detail"] for r in rows}
assert by["failed authentication"]["reason"] == "unknown token", by["failed authentication"]
assert by["failed authentication"]["sender"] == "alice@example.org"
assert by["reply accepted"]["address"] == "alice@example.org" and by["reply accepted"]["token_id"] > 0
assert by["reply accepted"]["request_id"] > 0
assert by["enroll tokens issued"]["tokens"][0]["address"] == "alice@example.org"
assert len(by["certificates issued"]["serials"]) >= 1 and by["certificates issued"]["key_type"] == "p256"
assert by["revoked"]["reason"] == "keyCompromise" and by["revoked"]["addresses"][0] == "alice@example.org"
assert all(r["maced"] for r in rows)
EOF
check "kmsctl audit list (text)" "$KMSCTL" -c "$CONF" audit list --since '1 hour'
like "$T/out" "^1  [0-9-]{10}T[0-9:]{8}Z  .* init  " "text list: id, time, actor, action, detail"
check "audit list --since a future date" "$KMSCTL" -c "$CONF" audit list --since 2999-01-01
is "$(wc -c <"$T/out")" 0 "lists nothing"
check "audit verify without the password (chain only)" "$KMSCTL" -c "$CONF" audit verify
like "$T/out" "^[0-9]+ entries, chain intact; MACs not checked" "it says the MACs were not checked"
N=$(psql_kms "SELECT count(*) FROM audit")
check "audit verify with the startup password" "$KMSCTL" -c "$CONF" audit verify --password-file "$T/pw"
like "$T/out" "^$N entries, chain intact, $N MACs verified \(0 not yet MACed\)" "every MAC verifies"
expect_exit 1 "audit verify with a wrong password fails" "$KMSCTL" -c "$CONF" audit verify --password-file "$T/bad"
is "$(psql_kms "SELECT action FROM audit ORDER BY id DESC LIMIT 1")" "wrong startup password" "the wrong password is audited"
check "the chain still verifies (one entry not yet MACed)" "$KMSCTL" -c "$CONF" audit verify --password-file "$T/pw"
like "$T/out" "\(1 not yet MACed\)" "the newest entry waits for kmsd's MAC"

# --- privileges ---------------------------------------------------------------
as_role() { "$PG_BINDIR/psql" -X -q -At -h "$PGSOCK" -U "$1" -d kms -c "$2"; }
expect_exit 1 "kms_milter cannot UPDATE audit" as_role kms_milter "UPDATE audit SET actor = 'x' WHERE id = 1"
like "$T/err" "permission denied" "(permission denied)"
expect_exit 1 "kms_milter cannot DELETE from audit" as_role kms_milter "DELETE FROM audit WHERE id = 1"
expect_exit 1 "kms_milter cannot read audit details" as_role kms_milter "SELECT detail FROM audit"
expect_exit 1 "kms_service cannot change an entry's content" as_role kms_service "UPDATE audit SET detail = '{}' WHERE id = 1"
expect_exit 1 "kms_service cannot DELETE from audit" as_role kms_service "DELETE FROM audit WHERE id = 1"
expect_exit 1 "kms_admin cannot DELETE from audit" as_role kms_admin "DELETE FROM audit WHERE id = 1"
check "kms_service may set a MAC" as_role kms_service "UPDATE audit SET mac = mac WHERE id = 1"

# --- tampering as the superuser ------------------------------------------------
psql_kms "CREATE TABLE audit_save AS SELECT * FROM audit" || bail "cannot save the audit table"
restore() { psql_kms "DELETE FROM audit; INSERT INTO audit SELECT * FROM audit_save"; }
E=$(psql_kms "SELECT id FROM audit WHERE action = 'revoked'")
psql_kms "UPDATE audit SET detail = jsonb_set(detail, '{reason}', '\"superseded\"') WHERE id = $E"
expect_exit 1 "an edited entry fails verify (chain only)" "$KMSCTL" -c "$CONF" audit verify
like "$T/err" "entry $E: content does not match its hash \(edited\)" "verify names the edited entry $E"
restore
check "restored, the log verifies again" "$KMSCTL" -c "$CONF" audit verify --password-file "$T/pw"
psql_kms "UPDATE audit SET actor = 'someone else' WHERE id = 2"
expect_exit 1 "an edited actor fails verify" "$KMSCTL" -c "$CONF" audit verify
like "$T/err" "entry 2: content does not match" "verify names entry 2"
restore

D=$(psql_kms "SELECT id FROM audit WHERE action = 'reply accepted'")
psql_kms "DELETE FROM audit WHERE id = $D"
expect_exit 1 "a deleted entry fails verify" "$KMSCTL" -c "$CONF" audit verify
like "$T/err" "entry $((D + 1)): previous-hash link broken" "verify names the entry after the deleted one ($((D + 1)))"
restore

# forge: a row inserted before entry F, every later hash recomputed (no vault
# key: the MACs are guessed)
F=$E
cat >"$T/forge.py" <<'EOF'
import hashlib, os, struct, subprocess, sys
psql = sys.argv[1:6]
F = int(sys.argv[6])
def q(sql):
	return subprocess.run(psql + ["-c", sql], check=True, capture_output=True, text=True).stdout
def t(s):
	b = s.encode()
	return struct.pack(">I", len(b)) + b
def h(prev, id, at, actor, action, detail):
	return hashlib.sha256(prev + struct.pack(">q", id) + t(at) + t(actor) + t(action) + t(detail)).digest()
q("UPDATE audit SET id = id + 1000000 WHERE id >= %d" % F)
q("UPDATE audit SET id = id - 999999 WHERE id >= 1000000")
prev = bytes.fromhex(q("SELECT encode(hash, 'hex') FROM audit WHERE id = %d" % (F - 1)).strip())
at = q("SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM audit WHERE id = %d" % (F + 1)).strip()
detail = q("SELECT '{\"scope\": \"domain\", \"name\": \"example.org\"}'::jsonb::text").strip()
hh = h(prev, F, at, "kmsd@forged:1", "policy unset", detail)
q("INSERT INTO audit (id, at, actor, action, detail, prev_hash, hash, mac) VALUES (%d, '%s', 'kmsd@forged:1', 'policy unset', '%s', '\\x%s', '\\x%s', '\\x%s')"
  % (F, at, detail, prev.hex(), hh.hex(), os.urandom(32).hex()))
prev = hh
rows = q("SELECT id, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), actor, action, detail::text FROM audit WHERE id > %d ORDER BY id" % F)
for line in rows.splitlines():
	id, at, actor, action, detail = line.split("|", 4)
	hh = h(prev, int(id), at, actor, action, detail)
	q("UPDATE audit SET prev_hash = '\\x%s', hash = '\\x%s' WHERE id = %s" % (prev.hex(), hh.hex(), id))
	prev = hh
EOF
check "forge an entry and recompute the chain after it" python3 "$T/forge.py" "$PG_BINDIR/psql" -XqAt "-h$PGSOCK" -Ukmsdba -dkms "$F" ||
	diag "$(cat "$T/err")"
check "the recomputed chain passes the chain-only check" "$KMSCTL" -c "$CONF" audit verify
expect_exit 1 "the MAC check catches the forged entry" "$KMSCTL" -c "$CONF" audit verify --password-file "$T/pw"
like "$T/err" "entry $F: MAC does not verify \(recomputed by someone without the vault key\)" "verify names the first recomputed entry ($F)"
# kmsd does not MAC what follows a tampered entry
psql_kms "UPDATE audit SET mac = NULL WHERE id > $F"
start_kmsd
wait_for 10 grep -q "TAMPERING: entry" "$T/kmsd.log" && ok "kmsd logs the tampering" || not_ok "kmsd logs the tampering"
like "$T/kmsd.log" "TAMPERING: entry $F: MAC does not verify" "kmsd names the forged entry ($F)"
stop_kmsd
is "$(psql_kms "SELECT count(*) FROM audit WHERE id > $F AND mac IS NOT NULL AND action <> 'kmsd started' AND action <> 'kmsd stopped'")" 0 "kmsd MACs none of the recomputed entries"
restore

# --- no secrets -------------------------------------------------------------------
psql_kms "SELECT actor, action, detail::text FROM audit" >"$T/audit.txt"
NT=$(echo "$TOK" | tr -d -)
for s in "$TOK" "$NT" "$PW"; do
	if grep -qi -- "$s" "$T/audit.txt" "$T/milter.log" "$T/kmsd.log"; then not_ok "no token or password in the audit table or the logs ($s)"; else ok "no token or password in the audit table or the logs"; fi
done
like "$T/milter.log" "audit [0-9]+: kmsmilter: failed authentication" "kmsmilter mirrors its entries to its log"
like "$T/kmsd.log" "audit [0-9]+: kmsd@[^:]+:[0-9]+: certificates issued" "kmsd mirrors its entries to its log"
done_testing
