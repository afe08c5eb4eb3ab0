#!/bin/sh
# Vault round trip: init seals a vault key under the startup password; a
# secret sealed by one process is opened by another with the right password;
# a wrong password fails with one clear line; kmsctl passwd rewraps so the
# old password fails and the new one opens the data sealed before.
. "$top_srcdir/tests/lib.sh"
pg_start
CONF=$T/kms.conf
write_config "$CONF"
write_password "$T/pw" 'first startup password'
write_password "$T/pw2" 'second, longer startup password'
write_password "$T/bad" 'not the password'

check "kmsctl init creates the vault" "$KMSCTL" -c "$CONF" init --password-file "$T/pw"
like "$T/out" "^vault created in database kms" "init reports the database"
like "$T/out" "^internal root CA: CN=kmsmilter internal CA \(rsa3072\), valid until 20" "init reports the CA"

expect_exit 1 "a second init is refused" "$KMSCTL" -c "$CONF" init --password-file "$T/pw"
like "$T/err" "already holds a vault" "the refusal says why"
one_line "$T/err" "the refusal is one line"

check "kmsctl status answers" "$KMSCTL" -c "$CONF" status
like "$T/out" "^kmsd: +0 live workers" "status shows no kmsd"
check "kmsctl status --json answers" "$KMSCTL" -c "$CONF" status --json
check "status JSON parses, schema 2, 0 workers, CA active" python3 -c '
import json,sys; d=json.load(open(sys.argv[1]))
assert d["vault"]=="ok" and d["schema_version"]==2 and d["workers"]==0, d
assert d["queue"]["depth"]==0 and d["queue"]["oldest_age_seconds"] is None, d
assert d["ca"]["status"]=="active" and d["ca"]["days_left"]>3600, d' "$T/out"

# seal in one process, open in another
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/alice.key" 2>/dev/null
openssl pkey -in "$T/alice.key" -out "$T/alice.canon" 2>/dev/null
check "a key is escrowed through the vault API" "$VAULTTOOL" -c "$CONF" -p "$T/pw" escrow alice@example.org "$T/alice.key"
ROW=$(cat "$T/out")
check "another process opens it with the password" "$VAULTTOOL" -c "$CONF" -p "$T/pw" recover "$ROW"
check "the opened key is the escrowed one" cmp "$T/out" "$T/alice.canon"
KEYHEX=$(openssl pkey -in "$T/alice.key" -outform DER | od -An -tx1 -v | tr -d ' \n')
psql_kms "SELECT encode(sealed_key, 'hex') FROM escrowed_keys" >"$T/sealed.hex"
unlike "$T/sealed.hex" "$(echo "$KEYHEX" | cut -c200-263)" "the escrowed_keys row holds no clear key material"

expect_exit 1 "the wrong password cannot open it" "$VAULTTOOL" -c "$CONF" -p "$T/bad" recover "$ROW"
like "$T/err" "wrong startup password" "wrong password: clear message"
one_line "$T/err" "wrong password: one line"

# kmsd refuses a wrong password and runs with the right one
write_config "$T/kmsd-bad.conf" "$(printf '[log]\nlevel = info')"
sed -i "s|^\[kms\]|[kms]\nstartup_password_file = $T/bad|" "$T/kmsd-bad.conf"
expect_exit 1 "kmsd refuses to run with a wrong startup password" "$KMSD" -c "$T/kmsd-bad.conf" -f
like "$T/err" "wrong startup password" "kmsd says the password is wrong"

# passwd: wrong old password changes nothing
expect_exit 1 "passwd with a wrong old password is refused" "$KMSCTL" -c "$CONF" passwd --old-password-file "$T/bad" --new-password-file "$T/pw2"
like "$T/err" "wrong startup password" "passwd names the wrong password"
check "after the refused passwd the old password still works" "$VAULTTOOL" -c "$CONF" -p "$T/pw" recover "$ROW"

SALT_BEFORE=$(psql_kms "SELECT encode(kdf_salt,'hex') || encode(wrapped_key,'hex') FROM vault_seal")
SEALED_BEFORE=$(psql_kms "SELECT md5(string_agg(encode(sealed_key,'hex'), ',' ORDER BY id)) FROM (SELECT id, sealed_key FROM escrowed_keys UNION ALL SELECT -id, sealed_key FROM ca) s")
check "kmsctl passwd changes the password" "$KMSCTL" -c "$CONF" passwd --old-password-file "$T/pw" --new-password-file "$T/pw2"
like "$T/out" "startup password changed" "passwd confirms"
SALT_AFTER=$(psql_kms "SELECT encode(kdf_salt,'hex') || encode(wrapped_key,'hex') FROM vault_seal")
SEALED_AFTER=$(psql_kms "SELECT md5(string_agg(encode(sealed_key,'hex'), ',' ORDER BY id)) FROM (SELECT id, sealed_key FROM escrowed_keys UNION ALL SELECT -id, sealed_key FROM ca) s")
[ "$SALT_BEFORE" != "$SALT_AFTER" ] && ok "the wrap (salt and wrapped key) changed" || not_ok "the wrap (salt and wrapped key) changed"
is "$SEALED_AFTER" "$SEALED_BEFORE" "nothing else was re-encrypted"

expect_exit 1 "the old password no longer opens the vault" "$VAULTTOOL" -c "$CONF" -p "$T/pw" recover "$ROW"
like "$T/err" "wrong startup password" "old password: clear message"
check "the new password opens data sealed before the change" "$VAULTTOOL" -c "$CONF" -p "$T/pw2" recover "$ROW"
check "and it is still the same key" cmp "$T/out" "$T/alice.canon"
check "the CA key opens with the new password" "$VAULTTOOL" -c "$CONF" -p "$T/pw2" ca-key

# kmsd with the right password: a live worker, then a clean stop
write_config "$T/kmsd.conf"
sed -i "s|^\[kms\]|[kms]\nstartup_password_file = $T/pw2|" "$T/kmsd.conf"
"$KMSD" -c "$T/kmsd.conf" -f 2>"$T/kmsd.log" &
KPID=$!; bg_pids="$bg_pids $KPID"
n=0; while [ $n -lt 50 ]; do
	[ "$(psql_kms 'SELECT count(*) FROM workers')" = 1 ] && break
	sleep 0.2; n=$((n + 1))
done
check "kmsctl status counts the running kmsd" "$KMSCTL" -c "$CONF" status --json
check "one live worker" python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))["workers"]==1' "$T/out"
kill -TERM "$KPID"; wait "$KPID"; rc=$?
is "$rc" 0 "kmsd exits 0 on SIGTERM"
is "$(psql_kms 'SELECT count(*) FROM workers')" 0 "kmsd deregistered on exit"
like "$T/kmsd.log" "vault unsealed" "kmsd logged that it unsealed"
unlike "$T/kmsd.log" "second, longer" "kmsd never logged the password"
done_testing
