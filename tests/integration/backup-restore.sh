#!/bin/sh
# Backup and restore: kmsctl backup writes one encrypted snapshot (no
# certificate, key or address readable in the file); the database is
# dropped and created again; a wrong backup password, a truncated file, a
# flipped byte, a dropped chunk and a file that is no backup are refused
# with exit 1 and leave the database empty; the correct password restores
# every table row for row; a database that is not empty is refused; kmsd
# refuses a wrong startup password and unseals with the old one; the
# pre-backup user recovers the pre-backup key; the revocation made before
# the backup is still in the CRL kmsd signs afterwards; the sequences
# continue (a new enrollment gets new ids).
. "$top_srcdir/tests/lib.sh"
[ -x /usr/sbin/smtp-sink ] || bail "smtp-sink not found: install postfix (contrib/install-deps.sh does)"
pg_start
start_sink mail
CONF=$T/kms.conf
CRLDIR=$T/crl
mkdir "$CRLDIR"
CRL=$CRLDIR/kms.crl
write_password "$T/pw" 'backup test startup password'
write_password "$T/bpw" 'backup test backup password'
write_password "$T/wrong" 'not the right password'
write_config "$CONF" "$(printf '[mail]\nsubmit = smtp://127.0.0.1:%s\nfrom = kms@example.org\n[ca]\ncrl_dir = %s\ncrl_url = http://pki.example.org/kms.crl\n[enrollment]\nkey_type = p256\n' "$PORT" "$CRLDIR")"
kmsd_config "$CONF" "$T/pw"
"$KMSCTL" -c "$CONF" init --password-file "$T/pw" >/dev/null || bail "init failed"
"$KMSCTL" -c "$CONF" ca show --pem >"$T/ca.pem" || bail "ca show failed"

KPID=
start_kmsd() { # start_kmsd [CONF]
	"$KMSD" -c "${1:-$CONF}" -f 2>>"$T/kmsd.log" &
	KPID=$!; bg_pids="$bg_pids $KPID"
}
stop_kmsd() {
	local rc
	kill -TERM "$KPID" 2>/dev/null; wait "$KPID" 2>/dev/null; rc=$?
	is "$rc" 0 "kmsd stops cleanly (exit 0)"
	KPID=
}
req_status() { psql_kms "SELECT status FROM requests WHERE id = $1"; }
req_finished() { s=$(req_status "$1"); [ "$s" = done ] || [ "$s" = failed ]; }
token() { # token ADDR [recover]
	"$KMSCTL" -c "$CONF" ${2:-enroll} --deliver out-of-band "$1" >"$T/tok.out" 2>"$T/tok.err" || { cat "$T/tok.err" >&2; return 1; }
	sed -n 's/^Token: //p' "$T/tok.out"
}
reply() { "$VAULTTOOL" -c "$CONF" -p "$T/pw" queue-reply "$@"; }
p12_mail() { grep -l -i "^To: $1" "$T"/mail/* 2>/dev/null | xargs -r grep -l "^Subject: $2" | xargs -r ls -t | head -1; }
extract() { # extract MAIL OUT: the application/pkcs12 part
	python3 - "$1" "$2" <<'EOF'
import email, sys
from email import policy
m = email.message_from_binary_file(open(sys.argv[1], 'rb'), policy=policy.default)
parts = [p for p in m.walk() if p.get_content_type() == 'application/pkcs12']
assert len(parts) == 1, 'want one application/pkcs12 part, got %d' % len(parts)
open(sys.argv[2], 'wb').write(parts[0].get_payload(decode=True))
EOF
}
crlnum() { # the crlNumber of the published DER CRL, decimal
	n=$(openssl crl -inform DER -in "$CRL" -noout -crlnumber 2>/dev/null | sed -n 's/^crlNumber=0x//p')
	printf '%d\n' "0x${n:-0}"
}
crl_at_least() { [ "$(crlnum)" -ge "$1" ]; }
hexof() { od -An -v -tx1 "$@" | tr -d ' \n'; }
serial_of() { openssl x509 -in "$1" -noout -serial | sed 's/^serial=//'; }
relations() { psql_kms "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'"; }
TABLES="schema_version vault_seal vault_shares ca users tokens certificates certificate_addresses capabilities escrowed_keys revocations trust_list policy requests admins approvals approval_policy audit queue_key transport_keys imported_bundles"
# fingerprint: every row of every backed-up table, as text, in a stable order
fingerprint() {
	for t in $TABLES; do
		[ "$(psql_kms "SELECT to_regclass('public.$t') IS NULL")" = t ] && continue
		# audit: without the entries backup and restore append themselves
		# and the MACs kmsd adds meanwhile (audit.sh tests the log)
		w=; c=x; [ "$t" = audit ] && w="WHERE action NOT IN ('backup', 'restore')" c="(id, at, actor, action, detail, hash)"
		printf '%s %s\n' "$t" "$(psql_kms "SELECT count(*) || ':' || coalesce(md5(string_agg($c::text, '|' ORDER BY $c::text)), '') FROM $t x $w")"
	done
}

# --- a vault with an escrowed key and a revocation -----------------------------
start_kmsd
wait_for 30 crl_at_least 1 || bail "kmsd published no CRL: $(tail -5 "$T/kmsd.log")"
TOK=$(token alice@example.org)
RID=$(reply alice@example.org "$TOK") || bail "queue-reply failed"
wait_for 60 req_finished "$RID"
is "$(req_status "$RID")" done "alice is enrolled before the backup"
extract "$(p12_mail alice@example.org "Your S/MIME key and certificates")" "$T/alice.p12" || bail "no PKCS#12 for alice"
openssl pkcs12 -in "$T/alice.p12" -passin "pass:$TOK" -nocerts -nodes -out "$T/alice.key" 2>/dev/null
openssl pkcs12 -in "$T/alice.p12" -passin "pass:$TOK" -clcerts -nokeys -out "$T/alice.crt" 2>/dev/null
ALICEPUB=$(openssl x509 -in "$T/alice.crt" -noout -pubkey)
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T/user.key" 2>/dev/null
openssl pkey -in "$T/user.key" -pubout -out "$T/user.pub" 2>/dev/null
for u in bob carol; do
	"$VAULTTOOL" -c "$CONF" -p "$T/pw" issue-record encryption $u@example.org "$T/user.pub" >"$T/$u.pem" ||
		bail "vaulttool issue-record $u failed"
done
BOBSER=$(serial_of "$T/bob.pem")
CAROLSER=$(serial_of "$T/carol.pem")
check "kmsctl revoke --serial (bob) before the backup" "$KMSCTL" -c "$CONF" revoke --serial "$BOBSER"
wait_for 30 crl_at_least 2
openssl crl -inform DER -in "$CRL" -noout -text >"$T/crl-before.txt" 2>&1
like "$T/crl-before.txt" "Serial Number: $BOBSER" "the CRL before the backup lists bob"
"$VAULTTOOL" -c "$CONF" -p "$T/pw" ca-key >"$T/ca.key" 2>/dev/null
"$KMSCTL" -c "$CONF" cert list --json >"$T/certs-before.json" || bail "cert list failed"
MAXUSER=$(psql_kms "SELECT max(id) FROM users")
MAXCERT=$(psql_kms "SELECT max(id) FROM certificates")

# --- backup ------------------------------------------------------------------------
expect_exit 2 "kmsctl backup without --out is a usage error" "$KMSCTL" -c "$CONF" backup --password-file "$T/bpw"
check "kmsctl backup --out F --password-file K (kmsd running)" "$KMSCTL" -c "$CONF" backup --out "$T/vault.bak" --password-file "$T/bpw"
like "$T/out" "^backup of database kms written to .*vault.bak: 2[01] tables, [0-9]+ rows" "it reports what it wrote"
fingerprint >"$T/fp-before"
is "$(stat -c %a "$T/vault.bak")" 600 "the backup file is mode 0600"
is "$(head -c 10 "$T/vault.bak")" KMSBACKUP1 "it starts with the KMSBACKUP1 header"
is "$(ls "$T" | grep -c 'vault.bak.')" 0 "no temporary file is left"
hexof "$T/vault.bak" >"$T/bak.hex"
"$PG_BINDIR/pg_dump" -h "$PGSOCK" -U kmsdba --data-only kms | grep -v '^--' >"$T/dump.sql"
CERTHEX=$(openssl x509 -in "$T/alice.crt" -outform DER | hexof)
CAHEX=$(openssl x509 -in "$T/ca.pem" -outform DER | hexof)
grep -qi -- "$CERTHEX" "$T/dump.sql" && ok "control: pg_dump holds alice's certificate DER" || not_ok "control: pg_dump holds alice's certificate DER"
not_in_backup() { # not_in_backup HEX DESC
	if [ ${#1} -lt 64 ]; then not_ok "$2 (nothing to look for)"; return; fi
	if grep -qi -- "$1" "$T/bak.hex"; then not_ok "$2"; else ok "$2"; fi
}
not_in_backup "$CERTHEX" "alice's certificate DER is not in the backup"
not_in_backup "$CAHEX" "the CA certificate DER is not in the backup"
not_in_backup "$(openssl pkey -in "$T/alice.key" -outform DER 2>/dev/null | hexof)" "alice's escrowed key (PKCS#8 DER) is not in the backup"
not_in_backup "$(openssl pkey -in "$T/ca.key" -outform DER 2>/dev/null | hexof)" "the CA key (PKCS#8 DER) is not in the backup"
if grep -qa "example.org" "$T/vault.bak"; then not_ok "no address in clear in the backup"; else ok "no address in clear in the backup"; fi
# a second, padded backup spans three 1 MiB chunks
psql_kms "INSERT INTO policy (scope, name, key, value) VALUES ('domain', 'padding.invalid', 'padding', repeat('x', 2500000))"
check "a backup of a larger vault" "$KMSCTL" -c "$CONF" backup --out "$T/big.bak" --password-file "$T/bpw"
psql_kms "DELETE FROM policy WHERE name = 'padding.invalid'"
stop_kmsd

# --- drop the database -----------------------------------------------------------
"$PG_BINDIR/dropdb" -h "$PGSOCK" -U kmsdba kms || bail "dropdb failed"
"$PG_BINDIR/createdb" -h "$PGSOCK" -U kmsdba kms || bail "createdb failed"
is "$(relations)" 0 "the new database is empty"

# --- refusals --------------------------------------------------------------------
expect_exit 2 "kmsctl restore without a file is a usage error" "$KMSCTL" -c "$CONF" restore --password-file "$T/bpw"
expect_exit 1 "a wrong backup password is refused" "$KMSCTL" -c "$CONF" restore "$T/vault.bak" --password-file "$T/wrong"
like "$T/err" "wrong backup password" "it says so"
one_line "$T/err" "in one line"
is "$(relations)" 0 "the database is still empty"
SIZE=$(stat -c %s "$T/vault.bak")
head -c $((SIZE - 7)) "$T/vault.bak" >"$T/trunc.bak"
expect_exit 1 "a truncated backup is refused" "$KMSCTL" -c "$CONF" restore "$T/trunc.bak" --password-file "$T/bpw"
like "$T/err" "truncated" "it says so"
is "$(relations)" 0 "the database is still empty"
flip() { # flip IN OUT OFFSET
	python3 -c 'import sys; d=bytearray(open(sys.argv[1],"rb").read()); d[int(sys.argv[3])]^=0x20; open(sys.argv[2],"wb").write(d)' "$@"
}
flip "$T/vault.bak" "$T/flip.bak" $((SIZE / 2))
expect_exit 1 "a backup with one flipped byte is refused" "$KMSCTL" -c "$CONF" restore "$T/flip.bak" --password-file "$T/bpw"
is "$(relations)" 0 "the database is still empty"
flip "$T/vault.bak" "$T/flip.bak" 20
expect_exit 1 "a backup with a flipped header byte is refused" "$KMSCTL" -c "$CONF" restore "$T/flip.bak" --password-file "$T/bpw"
HDR=52
CH=$((4 + 1048576 + 16))
BIGSIZE=$(stat -c %s "$T/big.bak")
[ "$BIGSIZE" -gt $((HDR + 2 * CH)) ] && ok "the larger backup has three chunks" || not_ok "the larger backup has three chunks ($BIGSIZE bytes)"
head -c $((HDR + CH)) "$T/big.bak" >"$T/trunc.bak"
expect_exit 1 "a backup cut at a chunk boundary is refused" "$KMSCTL" -c "$CONF" restore "$T/trunc.bak" --password-file "$T/bpw"
like "$T/err" "damaged or truncated: chunk 0 does not authenticate|wrong backup password, or the file is damaged" "the last chunk left is not marked last"
{ head -c $((HDR + CH)) "$T/big.bak"; tail -c +$((HDR + 2 * CH + 1)) "$T/big.bak"; } >"$T/drop.bak"
expect_exit 1 "a backup with its middle chunk dropped is refused" "$KMSCTL" -c "$CONF" restore "$T/drop.bak" --password-file "$T/bpw"
like "$T/err" "chunk 1 does not authenticate" "it names the chunk"
is "$(relations)" 0 "the database is still empty after all that"
expect_exit 1 "a file that is no backup is refused" "$KMSCTL" -c "$CONF" restore "$T/pw" --password-file "$T/bpw"
like "$T/err" "not a kmsmilter backup" "it says so"
check "the three-chunk backup restores" "$KMSCTL" -c "$CONF" restore "$T/big.bak" --password-file "$T/bpw"
is "$(psql_kms "SELECT length(value) FROM policy WHERE name = 'padding.invalid'")" 2500000 "with its 2.5 MB row intact"
"$PG_BINDIR/dropdb" -h "$PGSOCK" -U kmsdba kms && "$PG_BINDIR/createdb" -h "$PGSOCK" -U kmsdba kms || bail "dropdb/createdb failed"

# --- restore -----------------------------------------------------------------------
check "kmsctl restore F --password-file K" "$KMSCTL" -c "$CONF" restore "$T/vault.bak" --password-file "$T/bpw"
like "$T/out" "^database kms restored from .*vault.bak \(backup of [0-9-]+T[0-9:]+Z\): 2[01] tables" "it reports the restore"
fingerprint >"$T/fp-after"
check "every table holds the same rows as before the backup" cmp "$T/fp-before" "$T/fp-after"
cmp -s "$T/fp-before" "$T/fp-after" || diag "$(diff "$T/fp-before" "$T/fp-after")"
expect_exit 1 "restoring into a database that holds a vault is refused" "$KMSCTL" -c "$CONF" restore "$T/vault.bak" --password-file "$T/bpw"
like "$T/err" "already holds a vault" "it says so"
"$PG_BINDIR/createdb" -h "$PGSOCK" -U kmsdba other || bail "createdb other failed"
PGDATABASE_KMS=other psql_kms "CREATE TABLE unrelated (x int)"
sed "s|dbname=kms|dbname=other|" "$CONF" >"$T/other.conf"
expect_exit 1 "restoring into a database with other tables is refused" "$KMSCTL" -c "$T/other.conf" restore "$T/vault.bak" --password-file "$T/bpw"
like "$T/err" "is not empty" "it says so"
is "$(PGDATABASE_KMS=other psql_kms "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'")" 1 "and leaves it alone"

# --- kmsd after the restore --------------------------------------------------------
sed "s|^startup_password_file = .*|startup_password_file = $T/wrong|" "$CONF" >"$T/wrong.conf"
: >"$T/kmsd.log"
expect_exit 1 "kmsd refuses a wrong startup password" timeout 30 "$KMSD" -c "$T/wrong.conf" -f
start_kmsd
wait_for 30 grep -q "vault unsealed" "$T/kmsd.log"
like "$T/kmsd.log" "vault unsealed" "kmsd unseals the restored vault with the old startup password"
check "kmsctl cert list after the restore" "$KMSCTL" -c "$CONF" cert list --json
check "it lists the same certificates as before the backup" python3 -c '
import json, sys
key = lambda c: (c["id"], c["sha256"], c["status"], c["source"])
a = sorted(map(key, json.load(open(sys.argv[1])))); b = sorted(map(key, json.load(open(sys.argv[2]))))
assert a == b and len(a) == 3, (a, b)' "$T/certs-before.json" "$T/out"

# recovery of the pre-backup key
check "kmsctl recover alice (the pre-backup user)" "$KMSCTL" -c "$CONF" recover --deliver out-of-band alice@example.org
RTOK=$(sed -n 's/^Token: //p' "$T/out")
RID=$(reply alice@example.org "$RTOK")
wait_for 60 req_finished "${RID:-0}"
is "$(req_status "${RID:-0}")" done "kmsd does the recover request"
F=$(p12_mail alice@example.org "Your recovered S/MIME keys")
extract "${F:-/dev/null}" "$T/rec.p12" && ok "a recovery mail with a PKCS#12" || not_ok "a recovery mail with a PKCS#12"
openssl pkcs12 -in "$T/rec.p12" -passin "pass:$RTOK" -nocerts -nodes -out "$T/rec.key" 2>/dev/null
is "$(openssl pkey -in "$T/rec.key" -pubout 2>/dev/null)" "$ALICEPUB" "the recovered key is the pre-backup key"
is "$(openssl pkey -in "$T/rec.key" -outform DER 2>/dev/null | hexof)" "$(openssl pkey -in "$T/alice.key" -outform DER 2>/dev/null | hexof)" "byte for byte"

# the revocation made before the backup, in the CRLs after it
check "kmsctl crl after the restore" "$KMSCTL" -c "$CONF" crl
openssl crl -in "$T/out" -noout -text >"$T/crl-stored.txt" 2>&1
like "$T/crl-stored.txt" "Serial Number: $BOBSER" "the stored CRL lists bob's pre-backup revocation"
N=$(crlnum)
check "kmsctl revoke --serial (carol) after the restore" "$KMSCTL" -c "$CONF" revoke --serial "$CAROLSER"
wait_for 30 crl_at_least $((N + 1))
is "$(crlnum)" $((N + 1)) "kmsd signs the next CRL number"
check "the new CRL verifies against the restored CA" openssl crl -inform DER -in "$CRL" -CAfile "$T/ca.pem" -noout
openssl crl -inform DER -in "$CRL" -noout -text >"$T/crl-after.txt" 2>&1
like "$T/crl-after.txt" "Serial Number: $BOBSER" "the CRL kmsd signs after the restore still lists bob"
like "$T/crl-after.txt" "Serial Number: $CAROLSER" "and carol, revoked after it"
expect_exit 2 "openssl verify rejects bob's certificate with that CRL" \
	openssl verify -crl_check -CAfile "$T/ca.pem" -CRLfile "$CRL.pem" "$T/bob.pem"

# sequences continue
TOK=$(token dave@example.org)
RID=$(reply dave@example.org "$TOK")
wait_for 60 req_finished "${RID:-0}"
is "$(req_status "${RID:-0}")" done "a new enrollment after the restore is done"
is "$(psql_kms "SELECT u.id > $MAXUSER AND c.id > $MAXCERT FROM users u JOIN certificates c ON c.user_id = u.id WHERE u.address = 'dave@example.org'")" t "with new user and certificate ids"
unlike "$T/kmsd.log" "duplicate key" "no duplicate key error"
stop_kmsd
done_testing
