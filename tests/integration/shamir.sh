#!/bin/sh
# Shamir unseal: kmsctl init --shares 5 --threshold 3 prints five shares;
# every one of the 10 combinations of 3 shares opens the vault (the CA key),
# 2 shares do not, a share given twice counts once, a share with one changed
# digit or from another vault is refused naming its number. kmsd without a
# startup password waits sealed until three administrators have run kmsctl
# unseal, and stays sealed with two. Password mode still works beside
# shares; kmsctl rekey replaces the share set; kmsctl status shows the seal;
# kms_milter cannot read any share table; no share reaches a log.
. "$top_srcdir/tests/lib.sh"
pg_start
CONF=$T/kms.conf
write_config "$CONF" "$(printf '[log]\nlevel = info')"

check "init with 5 shares, threshold 3, no password" "$KMSCTL" -c "$CONF" init --shares 5 --threshold 3
cp "$T/out" "$T/init.out"
like "$T/init.out" "^sealed with 3 of 5 shares" "init says how the vault is sealed"
is "$(grep -Ec '^Share [1-5]/5: [1-5]-[0-9a-f]{64}$' "$T/init.out")" 5 "five shares printed, each with its number"
for i in 1 2 3 4 5; do
	sed -n "s|^Share $i/5: ||p" "$T/init.out" >"$T/s$i"
done
is "$(cat "$T"/s? | sort -u | wc -l)" 5 "the five shares differ"
is "$(cut -c1-2 "$T/s3")" "3-" "share 3 carries its number"
is "$(psql_kms 'SELECT count(*) FROM vault_seal')" 0 "no startup password wrap"
is "$(psql_kms "SELECT threshold || '/' || share_count FROM vault_shares")" "3/5" "vault_shares records 3 of 5"
psql_kms "SELECT encode(share_checks, 'hex') || encode(wrapped_key, 'hex') FROM vault_shares" >"$T/row.hex"
found=0
for i in 1 2 3 4 5; do grep -q "$(cut -c3-40 "$T/s$i")" "$T/row.hex" && found=1; done
is "$found" 0 "the vault stores no share"

check "status answers" "$KMSCTL" -c "$CONF" status
like "$T/out" "^seal: .*no startup password, shares: 3 of 5" "status shows the seal mode (3 of 5, no password)"

# --- the library through vaulttool: any 3 of 5, not 2 ----------------------
combos=0 opened=0
for a in 1 2 3 4 5; do for b in 1 2 3 4 5; do for c in 1 2 3 4 5; do
	[ "$a" -lt "$b" ] && [ "$b" -lt "$c" ] || continue
	combos=$((combos + 1))
	if "$VAULTTOOL" -c "$CONF" -s "$T/s$a" -s "$T/s$b" -s "$T/s$c" ca-key >"$T/ca.$a$b$c" 2>"$T/err" &&
	    grep -q "BEGIN PRIVATE KEY" "$T/ca.$a$b$c"; then
		opened=$((opened + 1))
	else
		diag "shares $a $b $c: $(cat "$T/err")"
	fi
done; done; done
is "$combos" 10 "there are 10 combinations of 3 of 5 shares"
is "$opened" 10 "every combination of 3 shares opens the CA key"
is "$(cat "$T"/ca.??? | md5sum)" "$(for i in 1 2 3 4 5 6 7 8 9 10; do cat "$T/ca.123"; done | md5sum)" "all 10 open the same key"
check "shares in another order open it too" "$VAULTTOOL" -c "$CONF" -s "$T/s5" -s "$T/s1" -s "$T/s3" ca-key

expect_exit 1 "2 shares do not unseal" "$VAULTTOOL" -c "$CONF" -s "$T/s2" -s "$T/s5" ca-key
like "$T/err" "2 distinct shares of the 3 needed" "  ... and say how many are missing"
expect_exit 1 "the same share twice counts once" "$VAULTTOOL" -c "$CONF" -s "$T/s1" -s "$T/s1" -s "$T/s4" ca-key
like "$T/err" "2 distinct shares of the 3 needed" "  ... 2 distinct, not 3"
check "4 shares (one more than needed) unseal" "$VAULTTOOL" -c "$CONF" -s "$T/s1" -s "$T/s2" -s "$T/s4" -s "$T/s5" ca-key

# share 2 with one hex digit changed
c=$(cut -c10 "$T/s2"); [ "$c" = 0 ] && r=1 || r=0
sed "s/^\(.\{9\}\)./\1$r/" "$T/s2" >"$T/bad2"
cmp -s "$T/s2" "$T/bad2" && bail "the corrupted share is unchanged"
is "$(wc -c <"$T/bad2")" "$(wc -c <"$T/s2")" "the corrupted share has the same length"
expect_exit 1 "a corrupted share is refused" "$VAULTTOOL" -c "$CONF" -s "$T/s1" -s "$T/bad2" -s "$T/s3" ca-key
like "$T/err" "does not match share 2 of this vault" "  ... naming its number"
printf '7-%s\n' "$(cut -c3- "$T/s1")" >"$T/s7"
expect_exit 1 "a share numbered beyond the set is refused" "$VAULTTOOL" -c "$CONF" -s "$T/s7" -s "$T/s2" -s "$T/s3" ca-key
like "$T/err" "share 7 does not belong to this vault \(it has 5 shares\)" "  ... saying so"
printf 'not a share\n' >"$T/junk"
expect_exit 1 "text that is no share is refused" "$VAULTTOOL" -c "$CONF" -s "$T/junk" -s "$T/s2" -s "$T/s3" ca-key
like "$T/err" "not a share" "  ... clearly"
write_password "$T/pw" 'a password this vault does not have'
expect_exit 1 "a shares-only vault has no startup password" "$VAULTTOOL" -c "$CONF" -p "$T/pw" ca-key
like "$T/err" "no startup password: it is unsealed with 3 of its 5 shares" "  ... and says how it opens"

# --- a second vault (another database): foreign shares, password mode ------
"$PG_BINDIR/createdb" -h "$PGSOCK" -U kmsdba kms2 || bail "createdb kms2 failed"
CONF2=$T/kms2.conf
write_config "$CONF2" "$(printf '[log]\nlevel = info')"
sed -i "s|dbname=kms |dbname=kms2 |" "$CONF2"
write_password "$T/pw2" 'second vault startup password'
mkdir "$T/shares2"
check "init with a password and shares into a directory" "$KMSCTL" -c "$CONF2" init --password-file "$T/pw2" --shares 5 --threshold 3 --share-dir "$T/shares2"
like "$T/out" "^sealed with the startup password and with 3 of 5 shares" "init says both wraps exist"
unlike "$T/out" "^Share " "no share is printed with --share-dir"
is "$(stat -c %a "$T/shares2/share-4")" 600 "share files are mode 0600"
like "$T/shares2/share-4" "^4-[0-9a-f]{64}$" "a share file holds one share"
expect_exit 1 "a share of another vault is refused" "$VAULTTOOL" -c "$CONF" -s "$T/s1" -s "$T/shares2/share-4" -s "$T/s3" ca-key
like "$T/err" "does not match share 4 of this vault" "  ... naming its number"
check "password mode still works beside shares" "$VAULTTOOL" -c "$CONF2" -p "$T/pw2" ca-key
cp "$T/out" "$T/ca2.pw"
check "the second vault's shares open it too" "$VAULTTOOL" -c "$CONF2" -s "$T/shares2/share-2" -s "$T/shares2/share-4" -s "$T/shares2/share-5" ca-key
check "... the same CA key" cmp "$T/out" "$T/ca2.pw"
check "status answers for the second vault" "$KMSCTL" -c "$CONF2" status
like "$T/out" "^seal: .*argon2id.*password set .*; shares: 3 of 5" "status shows password and shares"

# kmsd with a startup password file unseals at once, shares or not
cp "$CONF2" "$T/kmsd2.conf"
sed -i "s|^\[kms\]|[kms]\nstartup_password_file = $T/pw2|" "$T/kmsd2.conf"
"$KMSD" -c "$T/kmsd2.conf" -f 2>"$T/kmsd2.log" &
K2=$!; bg_pids="$bg_pids $K2"
n=0; while [ $n -lt 50 ] && ! grep -qs "ready" "$T/kmsd2.log"; do sleep 0.2; n=$((n + 1)); done
like "$T/kmsd2.log" "ready" "kmsd with a password file runs on a vault that also has shares"
kill -TERM "$K2"; wait "$K2"

# rekey: a new set replaces the old one
mkdir "$T/shares3"
check "rekey with the password: 3 shares, threshold 2" "$KMSCTL" -c "$CONF2" rekey --shares 3 --threshold 2 --password-file "$T/pw2" --share-dir "$T/shares3"
expect_exit 1 "old shares stop working after rekey" "$VAULTTOOL" -c "$CONF2" -s "$T/shares2/share-2" -s "$T/shares2/share-4" -s "$T/shares2/share-5" ca-key
like "$T/err" "does not match share 2 of this vault" "  ... refused by their check value"
check "two new shares open the vault" "$VAULTTOOL" -c "$CONF2" -s "$T/shares3/share-1" -s "$T/shares3/share-3" ca-key
check "... the same CA key" cmp "$T/out" "$T/ca2.pw"
expect_exit 2 "rekey wants a sane threshold" "$KMSCTL" -c "$CONF2" rekey --shares 2 --threshold 3 --password-file "$T/pw2"
expect_exit 2 "init wants a sane threshold" "$KMSCTL" -c "$CONF2" init --shares 3 --threshold 1

# --- kmsd waits sealed; three administrators run kmsctl unseal --------------
# kmsd as kms_service, kmsctl as kms_admin, as in production
cp "$CONF" "$T/kmsd.conf"
sed -i "s|^\[kms\]|[kms]\ndsn = host=$PGSOCK dbname=kms user=kms_service|" "$T/kmsd.conf"
cp "$CONF" "$T/admin.conf"
sed -i "s|user=kmsdba|user=kms_admin|" "$T/admin.conf"
CONF=$T/admin.conf
expect_exit 1 "kmsctl unseal with no kmsd waiting fails" "$KMSCTL" -c "$CONF" unseal --share-file "$T/s1"
like "$T/err" "no kmsd is waiting for shares" "  ... saying why"
"$KMSD" -c "$T/kmsd.conf" -f 2>"$T/kmsd.log" &
KPID=$!; bg_pids="$bg_pids $KPID"
n=0; while [ $n -lt 50 ] && ! grep -qs "sealed: waiting" "$T/kmsd.log"; do sleep 0.2; n=$((n + 1)); done
like "$T/kmsd.log" "sealed: waiting for 3 of 5 shares \(kmsctl unseal\); session key [0-9a-f]{16}" "kmsd without a password waits for 3 of 5 shares"
FP=$(sed -n 's/.*session key \([0-9a-f]*\).*/\1/p' "$T/kmsd.log" | head -1)
is "$(psql_kms "SELECT count(*) FROM unseal_sessions WHERE status = 'waiting'")" 1 "kmsd published one unseal session"

check "first administrator's share" "$KMSCTL" -c "$CONF" unseal --share-file "$T/s1"
like "$T/out" "^share 1 sent to kmsd .* \(session key $FP\)" "kmsctl names the session key it encrypts to"
like "$T/out" "^share accepted \(1 of 3\)" "share accepted (1 of 3)"
check "the same share again" "$KMSCTL" -c "$CONF" unseal --share-file "$T/s1"
like "$T/out" "share 1 was already entered \(1 of 3\)" "the same share twice counts once"
expect_exit 1 "a corrupted share is rejected" "$KMSCTL" -c "$CONF" unseal --share-file "$T/bad2"
like "$T/err" "share rejected: does not match share 2 of this vault" "  ... naming its number"
expect_exit 1 "a share from another vault is rejected" "$KMSCTL" -c "$CONF" unseal --share-file "$T/shares2/share-4"
like "$T/err" "share rejected: does not match share 4 of this vault" "  ... naming its number"
expect_exit 1 "a wrong session fingerprint sends nothing" "$KMSCTL" -c "$CONF" unseal --share-file "$T/s2" --fingerprint 0000000000000000
like "$T/err" "no waiting kmsd has session key 0000000000000000" "  ... saying so"
# kmsd checks too: a corrupted share sealed to it without kmsctl's check
# (X25519 + HKDF-SHA256 + AES-256-GCM as keyvault/queuekey.h describes)
queue_seal() { # queue_seal PUBHEX ID TEXT: the sealed blob in hex
	python3 -c '
import os,sys
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
pub = bytes.fromhex(sys.argv[1]); eph = X25519PrivateKey.generate()
ephpub = eph.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
shared = eph.exchange(X25519PublicKey.from_public_bytes(pub))
key = HKDF(hashes.SHA256(), 32, ephpub + pub, b"kmsmilter-queue-v1").derive(shared)
nonce = os.urandom(12)
aad = b"kmsmilter-queue-v1\0unseal-share\0" + sys.argv[2].encode()
print((b"\x01" + ephpub + nonce + AESGCM(key).encrypt(nonce, sys.argv[3].encode(), aad)).hex())' "$@"
}
SID=$(psql_kms "SELECT id FROM unseal_sessions WHERE status = 'waiting'")
PUB=$(psql_kms "SELECT encode(public_key, 'hex') FROM unseal_sessions WHERE id = $SID")
RID=$(psql_kms "SELECT nextval('unseal_shares_id_seq')")
psql_kms "INSERT INTO unseal_shares (id, session_id, sealed_share) VALUES ($RID, $SID, decode('$(queue_seal "$PUB" "$RID" "$(cat "$T/bad2")")', 'hex')); NOTIFY kms_unseal"
n=0; while [ $n -lt 50 ] && [ "$(psql_kms "SELECT status FROM unseal_shares WHERE id = $RID")" = pending ]; do sleep 0.1; n=$((n + 1)); done
is "$(psql_kms "SELECT status || ': ' || detail FROM unseal_shares WHERE id = $RID")" "rejected: does not match share 2 of this vault" "kmsd itself rejects a corrupted share, naming its number"
is "$(psql_kms "SELECT count(*) FROM unseal_shares WHERE id = $RID AND sealed_share IS NULL")" 1 "  ... and drops its ciphertext"
RID=$(psql_kms "SELECT nextval('unseal_shares_id_seq')")
psql_kms "INSERT INTO unseal_shares (id, session_id, sealed_share) VALUES ($RID, $SID, decode('$(queue_seal "$PUB" "$((RID + 1))" "$(cat "$T/s2")")', 'hex')); NOTIFY kms_unseal"
n=0; while [ $n -lt 50 ] && [ "$(psql_kms "SELECT status FROM unseal_shares WHERE id = $RID")" = pending ]; do sleep 0.1; n=$((n + 1)); done
is "$(psql_kms "SELECT status FROM unseal_shares WHERE id = $RID")" "rejected" "a share sealed for another row does not open (moved rows are refused)"
like "$T/kmsd.log" "share from kmsdba rejected: does not match share 2 of this vault" "kmsd logs the rejection by share number"
check "second administrator's share" "$KMSCTL" -c "$CONF" unseal --share-file "$T/s4" --fingerprint "$FP"
like "$T/out" "^share accepted \(2 of 3\)" "share accepted (2 of 3)"
sleep 2
unlike "$T/kmsd.log" "worker .* ready" "with 2 shares kmsd is still sealed"
is "$(psql_kms 'SELECT count(*) FROM workers')" 0 "  ... and does no work (no worker registered)"
kill -0 "$KPID" 2>/dev/null && ok "  ... and keeps waiting" || not_ok "  ... and keeps waiting"
check "third administrator's share" "$KMSCTL" -c "$CONF" unseal --share-file "$T/s5"
like "$T/out" "^vault unsealed" "the third share unseals"
n=0; while [ $n -lt 50 ] && ! grep -qs "ready" "$T/kmsd.log"; do sleep 0.2; n=$((n + 1)); done
like "$T/kmsd.log" "vault unsealed with 3 of 5 shares" "kmsd logs the unseal"
like "$T/kmsd.log" "worker .* ready" "kmsd reaches its working state"
n=0; while [ $n -lt 25 ] && [ "$(psql_kms 'SELECT count(*) FROM workers')" != 1 ]; do sleep 0.2; n=$((n + 1)); done
is "$(psql_kms 'SELECT count(*) FROM workers')" 1 "kmsd works (a live worker)"
is "$(psql_kms 'SELECT count(*) FROM unseal_shares WHERE sealed_share IS NOT NULL')" 0 "no sealed share is left in the vault"
is "$(psql_kms "SELECT count(*) FROM unseal_shares WHERE status <> 'rejected'")" 0 "kmsctl removed the rows it queued once answered"
like "$T/kmsd.log" "share from .* rejected: does not match share|share accepted from" "kmsd logs each share's outcome"
kill -TERM "$KPID"; wait "$KPID"
is "$?" 0 "kmsd stops cleanly"
is "$(psql_kms 'SELECT count(*) FROM unseal_sessions')" 0 "its unseal session is gone"

# stopped while sealed: exit 0, session removed
"$KMSD" -c "$T/kmsd.conf" -f 2>"$T/kmsd3.log" &
K3=$!; bg_pids="$bg_pids $K3"
n=0; while [ $n -lt 50 ] && ! grep -qs "sealed: waiting" "$T/kmsd3.log"; do sleep 0.2; n=$((n + 1)); done
check "one share to the new kmsd" "$KMSCTL" -c "$CONF" unseal --share-file "$T/s3"
like "$T/out" "share accepted \(1 of 3\)" "a restarted kmsd starts counting again"
kill -TERM "$K3"; wait "$K3"
is "$?" 0 "kmsd stopped while sealed exits 0"
is "$(psql_kms 'SELECT count(*) FROM unseal_sessions')" 0 "  ... and removes its session"

# rekey with shares: the vault stays shares-only
mkdir "$T/shares4"
check "rekey opened with 3 current shares" "$KMSCTL" -c "$CONF" rekey --shares 4 --threshold 2 --share-file "$T/s2" --share-file "$T/s3" --share-file "$T/s5" --share-dir "$T/shares4"
check "two of the new shares open it" "$VAULTTOOL" -c "$CONF" -s "$T/shares4/share-4" -s "$T/shares4/share-2" ca-key
check "... the same CA key" cmp "$T/out" "$T/ca.123"
expect_exit 1 "rekey with too few shares is refused" "$KMSCTL" -c "$CONF" rekey --shares 4 --threshold 2 --share-file "$T/shares4/share-1"
like "$T/err" "1 distinct share of the 2 needed" "  ... saying how many"

# --- roles and logs ---------------------------------------------------------
for q in "SELECT * FROM vault_shares" "SELECT * FROM unseal_sessions" "SELECT * FROM unseal_shares"; do
	expect_exit 1 "kms_milter is refused: $q" "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -At -h "$PGSOCK" -U kms_milter -d kms -c "$q"
done
leaked=0
for f in "$T"/s? "$T"/shares2/* "$T"/shares3/* "$T"/shares4/*; do
	h=$(cut -c3-40 "$f")
	grep -qs -- "$h" "$T"/kmsd*.log "$PGDIR/server.log" && { leaked=1; diag "share $f in a log"; }
done
is "$leaked" 0 "no share text in kmsd's or PostgreSQL's logs"
done_testing
