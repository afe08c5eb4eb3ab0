#!/bin/sh
# Administrators and M-of-N approvals (issue 6): kmsctl init --admin makes
# the first administrator; others are added through kmsd; with recover=2
# a recovery waits for two approvals by other administrators: one approval
# -> no mail; the requester approving, the same administrator twice, an
# administrators row inserted by SQL (its "approval" is ignored by kmsd),
# a rejected and an expired request are refused; the second valid approval
# makes kmsd mail the recovery token, and the reply gets the PKCS#12. A
# recovery token inserted by SQL, and an approval policy edited by SQL,
# recover nothing.
. "$top_srcdir/tests/lib.sh"
[ -x /usr/sbin/smtp-sink ] || bail "smtp-sink not found: install postfix (contrib/install-deps.sh does)"
pg_start
start_sink mail
CONF=$T/kms.conf
write_password "$T/pw" 'admins test startup password'
for a in alice bob carol dave; do write_password "$T/$a.pw" "passphrase of $a, long enough"; done
write_password "$T/wrong" 'not the passphrase'
write_config "$CONF" "$(printf '[mail]\nsubmit = smtp://127.0.0.1:%s\nfrom = kms@example.org\n[enrollment]\nkey_type = p256\n' "$PORT")"
kmsd_config "$CONF" "$T/pw"
sed -i "s|^heartbeat = .*|heartbeat = 1s|" "$CONF"

K() { "$KMSCTL" -c "$CONF" "$@"; }
as() { # as ADMIN kmsctl-args...
	local a=$1; shift
	"$KMSCTL" -c "$CONF" --admin "$a" --admin-password-file "$T/$a.pw" "$@"
}
req_status() { psql_kms "SELECT status FROM requests WHERE id = $1"; }
req_is() { [ "$(req_status "$1")" = "$2" ]; }
admin_active() { [ "$(psql_kms "SELECT count(*) FROM admins WHERE name = '$1' AND mac IS NOT NULL")" = 1 ]; }
mails_to() { grep -l -i "^To: $1" "$T"/mail/* 2>/dev/null | xargs -r grep -l "^Subject: $2" | wc -l; }
has_mail() { [ "$(mails_to "$1" "$2")" -ge 1 ]; }
reqid() { sed -n 's/^Request: //p' "$1"; }
reply() { "$VAULTTOOL" -c "$CONF" -p "$T/pw" queue-reply "$@"; }

out=$(K init --password-file "$T/pw" --admin alice --admin-password-file "$T/alice.pw") || bail "init failed"
echo "$out" >"$T/init.out"
like "$T/init.out" "first administrator: alice" "init --admin names the first administrator"
is "$(psql_kms "SELECT count(*) FROM admins WHERE name = 'alice' AND mac IS NOT NULL AND length(public_key) = 32")" 1 \
	"alice's row has an Ed25519 public key and a MAC"
is "$(psql_kms "SELECT count(*) FROM admins WHERE position(decode('$(printf 'passphrase of alice' | od -An -tx1 | tr -d ' \n')', 'hex') IN sealed_private) > 0")" 0 \
	"the passphrase is not stored"
is "$(psql_kms "SELECT counts FROM approval_policy")" "recover=1,export=1,import=1,admin-change=1,revoke=1,policy-change=1" \
	"init writes the default approval policy"

"$KMSD" -c "$CONF" -f 2>>"$T/kmsd.log" &
KPID=$!; bg_pids="$bg_pids $KPID"

# --- authentication --------------------------------------------------------------
expect_exit 1 "a wrong passphrase is refused" "$KMSCTL" -c "$CONF" --admin alice --admin-password-file "$T/wrong" admin list --json
expect_exit 1 "an unknown administrator is refused" "$KMSCTL" -c "$CONF" --admin nobody --admin-password-file "$T/wrong" requests list
K --admin alice --admin-password-file "$T/wrong" approve 1 2>"$T/err"
like "$T/err" "unknown name or wrong passphrase" "the refusal does not say which of the two was wrong"
is "$(psql_kms "SELECT count(*) FROM audit WHERE action = 'admin authentication failed' AND detail->>'admin' = 'alice'")" 2 \
	"each failed authentication is in the audit log"
expect_exit 1 "adding an administrator needs one" K admin add bob --password-file "$T/bob.pw"

# --- adding administrators through kmsd ------------------------------------------------
for a in bob carol dave; do
	as alice admin add "$a" --password-file "$T/$a.pw" >"$T/add.out" 2>&1 || { cat "$T/add.out"; bail "admin add $a failed"; }
	wait_for 30 admin_active "$a" || bail "kmsd did not accept $a: $(tail -3 "$T/kmsd.log")"
done
ok "kmsd accepted bob, carol and dave (admin-change=1)"
K admin list --json >"$T/admins.json"
is "$(python3 -c "import json,sys; print(' '.join(a['name']+':'+a['status'] for a in json.load(open(sys.argv[1]))))" "$T/admins.json")" \
	"alice:active bob:active carol:active dave:active" "admin list shows four active administrators"
as bob admin passwd --new-password-file "$T/wrong" >/dev/null && write_password "$T/bob.pw" 'not the passphrase'
expect_exit 0 "bob acts with his new passphrase" as bob requests list
# the administrator from the environment, then from [admin] in the configuration
expect_exit 0 "KMS_ADMIN and KMS_ADMIN_PASSWORD_FILE name the administrator" \
	env KMS_ADMIN=carol KMS_ADMIN_PASSWORD_FILE="$T/carol.pw" "$KMSCTL" -c "$CONF" requests list
expect_exit 1 "... and a wrong passphrase there is refused" \
	env KMS_ADMIN=carol KMS_ADMIN_PASSWORD_FILE="$T/wrong" "$KMSCTL" -c "$CONF" requests list
cp "$CONF" "$T/dave.conf"
printf '[admin]\nname = dave\npassword_file = %s\n' "$T/dave.pw" >>"$T/dave.conf"
expect_exit 0 "[admin] name and password_file name the administrator" "$KMSCTL" -c "$T/dave.conf" requests list
expect_exit 1 "--admin overrides [admin] name (and its passphrase file is not carol's)" \
	"$KMSCTL" -c "$T/dave.conf" --admin carol requests list

# --- the approval policy ---------------------------------------------------------------
expect_exit 2 "an unknown operation is a usage error" as alice policy approvals set launch=2
as alice policy approvals set recover=2 >"$T/pol.out" || bail "approvals set failed"
R=$(reqid "$T/pol.out")
wait_for 30 req_is "$R" done || bail "approvals-set not done: $(tail -3 "$T/kmsd.log")"
is "$(K policy approvals show --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["recover"])')" 2 "recover=2 is in force"

# --- a user with an escrowed key ----------------------------------------------------------
K enroll --deliver out-of-band u1@example.org >"$T/tok.out" || bail "enroll failed"
TOK=$(sed -n 's/^Token: //p' "$T/tok.out")
RID=$(reply u1@example.org "$TOK") || bail "queue-reply failed"
wait_for 60 req_is "$RID" done || bail "enrollment not done: $(tail -5 "$T/kmsd.log")"

# --- recover=2 --------------------------------------------------------------------------
expect_exit 1 "under approvals, recover needs an administrator" K recover u1@example.org
as alice recover u1@example.org >"$T/rec.out" || bail "recover failed: $(cat "$T/rec.out")"
R=$(reqid "$T/rec.out")
like "$T/rec.out" "waits for approvals" "kmsctl recover prints a request waiting for approvals"
expect_exit 1 "the requester cannot approve her own request" as alice approve "$R"
as bob approve "$R" >"$T/ap.out"
like "$T/ap.out" "1 of 2 approvals" "bob's approval is the first of two"
sleep 3
is "$(req_status "$R")" awaiting-approval "one approval: the request still waits"
is "$(mails_to u1@example.org 'Recovery of your S/MIME keys')" 0 "one approval: no recovery mail"
expect_exit 1 "bob cannot approve twice" as bob approve "$R"
K requests list --json >"$T/rl.json"
is "$(python3 -c "import json,sys; r=[x for x in json.load(open(sys.argv[1])) if x['id']==$R][0]; print(r['kind'], r['requester'], ','.join(r['approved_by']), r['needed'])" "$T/rl.json")" \
	"recover-start alice bob 2" "requests list shows who asked, who approved and how many are needed"

# an administrators row made by SQL (carol's key and passphrase, another
# name, a MAC copied from carol's row) signs validly but kmsd ignores it
psql_kms "INSERT INTO admins (name, public_key, sealed_private, mac, kdf_salt, kdf_t_cost, kdf_m_cost_kib, kdf_parallelism)
	SELECT 'mallory', public_key, sealed_private, mac, kdf_salt, kdf_t_cost, kdf_m_cost_kib, kdf_parallelism FROM admins WHERE name = 'carol'" >/dev/null
psql_kms "UPDATE admins SET sealed_private = (SELECT sealed_private FROM admins WHERE name = 'carol') WHERE name = 'mallory'" >/dev/null
# the sealed key is bound to carol's row id: mallory cannot even open it
expect_exit 1 "a row copied by SQL does not open under another id" \
	"$KMSCTL" -c "$CONF" --admin mallory --admin-password-file "$T/carol.pw" approve "$R"
# so forge the vote directly with carol's real signature on another admin id
psql_kms "INSERT INTO approvals (request_id, admin_id, admin_name, decision, signature)
	SELECT $R, (SELECT id FROM admins WHERE name = 'mallory'), 'mallory', 'approve', decode(repeat('00', 64), 'hex')" >/dev/null
psql_kms "NOTIFY kms_requests" >/dev/null
sleep 3
is "$(req_status "$R")" awaiting-approval "an approval by a row inserted with SQL does not count"
is "$(mails_to u1@example.org 'Recovery of your S/MIME keys')" 0 "... and no recovery mail went out"
like "$T/kmsd.log" "vote of \"mallory\" ignored: not a valid administrator" "kmsd logs the ignored vote"

as carol approve "$R" >"$T/ap2.out" 2>&1 || bail "carol's approval failed: $(cat "$T/ap2.out")"
wait_for 30 req_is "$R" done || bail "the approved recovery did not run: $(tail -5 "$T/kmsd.log")"
wait_for 30 has_mail u1@example.org 'Recovery of your S/MIME keys'
is "$(mails_to u1@example.org 'Recovery of your S/MIME keys')" 1 "second approval: the recovery token mail goes out"
M=$(grep -l -i "^To: u1@example.org" "$T"/mail/* | xargs grep -l "^Subject: Recovery of your S/MIME keys" | head -1)
RTOK=$(sed -n 's/^Token: //p' "$M" | tr -d '\r')
RR=$(reply u1@example.org "$RTOK") || bail "queue-reply of the recovery failed"
wait_for 60 req_is "$RR" done
is "$(req_status "$RR")" done "the user's reply to the approved recovery is served"
wait_for 30 has_mail u1@example.org 'Your recovered S/MIME keys'
is "$(mails_to u1@example.org 'Your recovered S/MIME keys')" 1 "the PKCS#12 of the recovered keys is mailed"
is "$(psql_kms "SELECT count(*) FROM audit WHERE action = 'request approved' AND (detail->>'request_id')::int = $R")" 1 \
	"the approval is in the audit log"

# --- rejection ----------------------------------------------------------------------------
as alice recover u1@example.org >"$T/rec2.out"
R2=$(reqid "$T/rec2.out")
as dave reject "$R2" --comment "not without a ticket" >/dev/null || bail "reject failed"
wait_for 30 req_is "$R2" rejected
is "$(req_status "$R2")" rejected "one rejection ends the request"
as carol approve "$R2" 2>"$T/err"; rc=$?
is "$rc" 1 "a rejected request cannot be approved"
like "$T/err" "was rejected" "... and kmsctl says why"

# --- expiry ------------------------------------------------------------------------------------
printf '[admin]\napproval_ttl = 2s\n' >>"$CONF"
as alice recover u1@example.org >"$T/rec3.out"
R3=$(reqid "$T/rec3.out")
sleep 3
as bob approve "$R3" 2>"$T/err"; rc=$?
is "$rc" 1 "an expired request cannot be approved"
like "$T/err" "expired" "... and kmsctl says it expired"
wait_for 30 req_is "$R3" expired
is "$(req_status "$R3")" expired "kmsd marks it expired"
sed -i '/^approval_ttl = 2s$/d' "$CONF"

# --- export=2: the bundle is made only after two approvals ---------------------------------
as alice policy approvals set export=2 >"$T/pol2.out" || bail "approvals set export=2 failed"
wait_for 30 req_is "$(reqid "$T/pol2.out")" done || bail "export=2 not in force"
# the target: another vault's transport certificate (an RSA-3072 key and
# self-signed certificate, as kmsd makes them, made here with openssl)
openssl req -x509 -newkey rsa:3072 -nodes -keyout "$T/other.key" -out "$T/self.crt" -days 30 \
	-subj "/CN=other vault transport" 2>/dev/null || bail "openssl req failed"
FP=$(openssl x509 -in "$T/self.crt" -outform DER | sha256sum | cut -c1-8)
keys_u1() { psql_kms "SELECT count(*) FROM escrowed_keys e JOIN users u ON u.id = e.user_id WHERE u.address = 'u1@example.org'"; }
expect_exit 1 "under approvals, export needs an administrator" K export u1@example.org --to "$T/self.crt" --fingerprint "$FP" --out "$T/u1.bundle"
as alice export u1@example.org --to "$T/self.crt" --fingerprint "$FP" --out "$T/u1.bundle" >"$T/ex.out" 2>&1
is "$?" 0 "export=2: kmsctl export prints a request and exits 0"
EX=$(reqid "$T/ex.out")
as bob approve "$EX" >/dev/null
sleep 3
is "$(req_status "$EX")" awaiting-approval "export=2, one approval: the export waits"
is "$(keys_u1)" 1 "... and the key is still in the vault"
as dave approve "$EX" >/dev/null
wait_for 60 req_is "$EX" done
is "$(req_status "$EX")" done "the second approval runs the export"
[ "$(req_status "$EX")" = done ] || diag "$(psql_kms "SELECT last_error FROM requests WHERE id = $EX")"
is "$(keys_u1)" 0 "... which removed the key from this vault"
check "the requester fetches the bundle afterwards" as alice export --fetch "$EX" --out "$T/u1.bundle"
test -s "$T/u1.bundle" && ok "the bundle is written" || not_ok "the bundle is written"
check "the bundle opens with the target's key (openssl cms -decrypt)" \
	openssl cms -decrypt -inform DER -in "$T/u1.bundle" -inkey "$T/other.key" -recip "$T/self.crt" -out "$T/u1.signed"

# --- SQL cannot bypass the approvals ---------------------------------------------------------
# a recovery token made by SQL (u2's used enrollment token turned into a
# pending recovery token), then the reply
K enroll --deliver out-of-band u2@example.org >"$T/tok2.out"
TOK2=$(sed -n 's/^Token: //p' "$T/tok2.out")
RID2=$(reply u2@example.org "$TOK2"); wait_for 60 req_is "$RID2" done
psql_kms "UPDATE tokens SET purpose = 'recover', status = 'pending', used_at = NULL WHERE id = (SELECT max(id) FROM tokens WHERE user_id = (SELECT id FROM users WHERE address = 'u2@example.org'))" >/dev/null
RB=$(reply u2@example.org "$TOK2") || bail "queue-reply of the forged recovery failed"
wait_for 60 req_is "$RB" failed
is "$(req_status "$RB")" failed "a recovery token that no approved request made recovers nothing"
psql_kms "SELECT last_error FROM requests WHERE id = $RB" >"$T/le"
like "$T/le" "comes from no approved request" "... and the request says why"
is "$(mails_to u2@example.org 'Your recovered S/MIME keys')" 0 "... and no key is mailed"

# --- revoke=2 and policy-change=2 --------------------------------------------------------------
as alice policy approvals set revoke=2 policy-change=2 >"$T/pol3.out" || bail "approvals set revoke=2 failed"
wait_for 30 req_is "$(reqid "$T/pol3.out")" done || bail "revoke=2 not in force"
revoked_u2() { psql_kms "SELECT count(*) FROM certificates c JOIN users u ON u.id = c.user_id WHERE u.address = 'u2@example.org' AND c.status = 'revoked'"; }
expect_exit 1 "under approvals, revoke needs an administrator" K revoke u2@example.org
as alice revoke u2@example.org >"$T/rv.out" 2>&1
is "$?" 0 "revoke=2: kmsctl revoke prints a request and exits 0"
RV=$(reqid "$T/rv.out")
as bob approve "$RV" >/dev/null
sleep 3
is "$(revoked_u2)" 0 "revoke=2, one approval: the certificate is still valid"
as carol approve "$RV" >/dev/null
wait_for 30 req_is "$RV" done
is "$(req_status "$RV")" done "the second approval runs the revocation"
is "$(revoked_u2)" 1 "... and u2's certificate is revoked"
is "$(psql_kms "SELECT revoked_by FROM revocations r JOIN certificates c ON c.id = r.certificate_id JOIN users u ON u.id = c.user_id WHERE u.address = 'u2@example.org'")" alice \
	"... recorded as revoked by the requester"
dom_encrypt() { psql_kms "SELECT coalesce((SELECT value FROM policy WHERE scope = 'domain' AND name = 'example.org' AND key = 'encrypt'), 'none')"; }
as alice policy set --domain example.org encrypt=required >"$T/ps.out" 2>&1
PS=$(reqid "$T/ps.out")
like "$T/ps.out" "waits for approvals" "policy-change=2: kmsctl policy set prints a request"
as dave approve "$PS" >/dev/null
sleep 3
is "$(dom_encrypt)" none "policy-change=2, one approval: the policy is unchanged"
as bob approve "$PS" >/dev/null
wait_for 30 req_is "$PS" done
is "$(dom_encrypt)" required "the second approval changes the policy"

# an approval policy edited by SQL: kmsd refuses gated work
psql_kms "UPDATE approval_policy SET counts = 'recover=1,export=1,import=1,admin-change=1'" >/dev/null
K recover --deliver out-of-band u2@example.org >"$T/tok3.out" || bail "ungated recover failed"
TOK3=$(sed -n 's/^Token: //p' "$T/tok3.out")
RC=$(reply u2@example.org "$TOK3")
wait_for 60 req_is "$RC" failed
is "$(req_status "$RC")" failed "with the approval policy edited by SQL, kmsd recovers nothing"
psql_kms "SELECT last_error FROM requests WHERE id = $RC" >"$T/le"
like "$T/le" "MAC mismatch" "... naming the forged policy"
unlike "$T/kmsd.log" "$TOK" "no token in kmsd's log"
K audit verify --password-file "$T/pw" >/dev/null
is "$?" 0 "the audit log verifies"
done_testing
