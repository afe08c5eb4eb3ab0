#!/bin/sh
# A ciphertext copied with SQL into another row or column must not open:
# the associated data binds each sealed value to table, column, row id and
# vault-key version.
. "$top_srcdir/tests/lib.sh"
pg_start
CONF=$T/kms.conf
write_config "$CONF"
write_password "$T/pw" 'row swap test password'
"$KMSCTL" -c "$CONF" init --password-file "$T/pw" >/dev/null || bail "init failed"

for u in alice bob; do
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T/$u.key" 2>/dev/null
	openssl pkey -in "$T/$u.key" -out "$T/$u.canon"
	"$VAULTTOOL" -c "$CONF" -p "$T/pw" escrow "$u@example.org" "$T/$u.key" >"$T/$u.row" || bail "escrow failed"
done
A=$(cat "$T/alice.row"); B=$(cat "$T/bob.row")

check "alice's key opens before the swap" "$VAULTTOOL" -c "$CONF" -p "$T/pw" recover "$A"
check "it is alice's key" cmp "$T/out" "$T/alice.canon"

psql_kms "UPDATE escrowed_keys SET sealed_key = (SELECT sealed_key FROM escrowed_keys WHERE id = $B) WHERE id = $A" \
	|| bail "SQL update failed"
expect_exit 1 "bob's ciphertext copied into alice's row does not open" "$VAULTTOOL" -c "$CONF" -p "$T/pw" recover "$A"
like "$T/err" "escrowed_keys.sealed_key of row $A does not open" "the error names table, column and row"
one_line "$T/err" "the error is one line"
unlike "$T/err" "BEGIN|PRIVATE" "the error holds no key material"
check "bob's own row still opens" "$VAULTTOOL" -c "$CONF" -p "$T/pw" recover "$B"
check "and gives bob's key" cmp "$T/out" "$T/bob.canon"

# the CA key's ciphertext moved into an escrow row (another table)
psql_kms "UPDATE escrowed_keys SET sealed_key = (SELECT sealed_key FROM ca LIMIT 1) WHERE id = $A" || bail "SQL update failed"
expect_exit 1 "the CA key's ciphertext moved into escrowed_keys does not open" "$VAULTTOOL" -c "$CONF" -p "$T/pw" recover "$A"

# swapping the ids of two rows (ciphertexts stay, ids move) breaks both
psql_kms "UPDATE escrowed_keys SET id = CASE WHEN id = $A THEN -1 ELSE id END; UPDATE escrowed_keys SET id = $A WHERE id = $B; UPDATE escrowed_keys SET id = $B WHERE id = -1" || bail "SQL id swap failed"
expect_exit 1 "a row renumbered by SQL does not open" "$VAULTTOOL" -c "$CONF" -p "$T/pw" recover "$A"

# claiming another key version does not open either
psql_kms "UPDATE escrowed_keys SET key_version = 2, id = id WHERE id = $B" || bail "SQL update failed"
expect_exit 1 "a value relabelled with another key version does not open" "$VAULTTOOL" -c "$CONF" -p "$T/pw" recover "$B"

# moving the wrapped vault key row's salt: the password no longer unwraps
psql_kms "UPDATE vault_seal SET kdf_salt = decode(repeat('00', 16), 'hex')" || bail "SQL update failed"
expect_exit 1 "a vault key wrap altered by SQL does not unwrap" "$VAULTTOOL" -c "$CONF" -p "$T/pw" ca-key
like "$T/err" "wrong startup password" "and says so"
done_testing
