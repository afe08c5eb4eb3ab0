#!/bin/sh
# Revocation and CRL publishing: kmsd publishes an (empty) CRL when it
# starts, kmsctl revoke (by address, by serial in any spelling) queues a
# CRL update that kmsd signs and writes to [ca] crl_dir at once (DER and
# PEM, named after [ca] crl_url, mode 0644 whatever the umask), the real
# OpenSSL verifier rejects a revoked certificate and accepts a valid one,
# the CRL number only grows, refusals exit 1 (usage errors 2), the CRL is
# re-signed before nextUpdate, a missing file is rewritten, requests wait
# while kmsd is down (also past their expiry) and collapse into one CRL,
# and two kmsd never sign the same CRL number.
# Certificates come from the real CA through tests/vaulttool issue-record
# (sign with the vault's CA key, record as issued to the user).
. "$top_srcdir/tests/lib.sh"
pg_start
CONF=$T/kms.conf
CRLDIR=$T/crl
mkdir "$CRLDIR"
CRL=$CRLDIR/example.crl
write_password "$T/pw" 'revoke test password'
write_config "$CONF" "$(printf '[ca]\ncrl_dir = %s\ncrl_url = http://pki.example.org/ca/example.crl\ncrl_days = 7' "$CRLDIR")"
sed -i "s|^\[kms\]|[kms]\nstartup_password_file = $T/pw|" "$CONF"
"$KMSCTL" -c "$CONF" init --password-file "$T/pw" >/dev/null || bail "init failed"
"$KMSCTL" -c "$CONF" ca show --pem >"$T/ca.pem" || bail "ca show failed"

# crlnum FILE: the crlNumber of the DER CRL FILE in decimal (0 if none)
crlnum() {
	n=$(openssl crl -inform DER -in "$1" -noout -crlnumber 2>/dev/null | sed -n 's/^crlNumber=0x//p')
	printf '%d\n' "0x${n:-0}"
}
# wait_crl N: until the published CRL's number is at least N (15 s at most)
wait_crl() {
	i=0; while [ "$(crlnum "$CRL")" -lt "$1" ] && [ $i -lt 150 ]; do sleep 0.1; i=$((i + 1)); done
}
start_kmsd() { # [LOG-SUFFIX [CONF]]
	(umask 077; exec "$KMSD" -c "${2:-$CONF}" -f) 2>>"$T/kmsd${1:-}.log" &
	KPID=$!; bg_pids="$bg_pids $KPID"
}
stop_kmsd() { kill -TERM "$KPID"; wait "$KPID"; }
serial_of() { openssl x509 -in "$1" -noout -serial | sed 's/^serial=//'; }
# issue NAME USAGE ADDRESS: a certificate recorded as issued, in $T/NAME.pem
issue() {
	"$VAULTTOOL" -c "$CONF" -p "$T/pw" issue-record "$2" "$3" "$T/user.pub" >"$T/$1.pem" ||
		bail "vaulttool issue-record $1 failed"
}
crl_requests() { psql_kms "SELECT count(*) FROM requests WHERE kind = 'crl' AND status = '$1'"; }

expect_exit 1 "kmsctl crl before any CRL exists" "$KMSCTL" -c "$CONF" crl
like "$T/err" "no CRL published yet: is kmsd running\?" "it says so"

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T/user.key" 2>/dev/null
openssl pkey -in "$T/user.key" -pubout -out "$T/user.pub"
issue alice-enc encryption alice@example.org
issue alice-sign signing Alice@Example.org
issue bob-enc encryption bob@example.org
issue bob-sign signing bob@example.org
issue carol-enc encryption carol@example.org
issue dave-enc encryption dave@example.org
issue erin-enc encryption erin@example.org
is "$(psql_kms "SELECT count(*) FROM certificates WHERE source = 'issued' AND status = 'valid' AND user_id IS NOT NULL")" 7 "vaulttool issue-record records 7 issued certificates with their users"

# --- first start: an empty CRL --------------------------------------------
start_kmsd
wait_crl 1
[ -f "$CRL" ] && [ -f "$CRL.pem" ] && ok "kmsd publishes example.crl and example.crl.pem at start (name from crl_url)" ||
	{ not_ok "kmsd publishes example.crl and example.crl.pem at start"; diag "$(ls -la "$CRLDIR"; cat "$T/kmsd.log")"; }
is "$(crlnum "$CRL")" 1 "the first CRL is number 1"
is "$(stat -c %a "$CRL") $(stat -c %a "$CRL.pem")" "644 644" "CRL files are mode 0644 although kmsd runs with umask 077"
check "the DER CRL verifies against the CA" openssl crl -inform DER -in "$CRL" -CAfile "$T/ca.pem" -noout
like "$T/err" "verify OK" "openssl says verify OK"
check "the PEM CRL verifies against the CA" openssl crl -in "$CRL.pem" -CAfile "$T/ca.pem" -noout
openssl crl -inform DER -in "$CRL" -noout -text >"$T/crl1.txt"
like "$T/crl1.txt" "No Revoked Certificates" "the first CRL lists nothing"
check "the DER and PEM files hold the same CRL" sh -c "openssl crl -in '$CRL.pem' -outform DER | cmp -s - '$CRL'"
is "$(psql_kms "SELECT crl_number, crl_next_update BETWEEN now() + interval '6 days 23 hours' AND now() + interval '7 days 1 minute' FROM ca WHERE status = 'active'")" "1|t" "the ca row holds number 1 and nextUpdate in crl_days = 7 days"
check "kmsctl status --json" "$KMSCTL" -c "$CONF" status --json
check "status shows CRL 1 and its nextUpdate" python3 -c '
import json,sys; c=json.load(open(sys.argv[1]))["crl"]
assert c["number"]==1 and c["next_update"].endswith("Z"), c' "$T/out"
check "kmsctl crl --out F.crl" "$KMSCTL" -c "$CONF" crl --out "$T/got.crl"
check "kmsctl crl --out writes the published DER file" cmp "$T/got.crl" "$CRL"
check "kmsctl crl prints the published PEM" "$KMSCTL" -c "$CONF" crl
check "... identical to example.crl.pem" cmp "$T/out" "$CRL.pem"

# --- both still valid ---------------------------------------------------------
check "before revocation alice's certificate passes openssl verify -crl_check" \
	openssl verify -crl_check -CAfile "$T/ca.pem" -CRLfile "$CRL.pem" "$T/alice-enc.pem"

# --- revoke by address ---------------------------------------------------------
check "kmsctl revoke ADDR --reason keyCompromise" "$KMSCTL" -c "$CONF" revoke --reason keycompromise ALICE@example.org
for c in alice-enc alice-sign; do
	s=$(serial_of "$T/$c.pem" | tr A-F a-f | sed 's/^0*//')
	like "$T/out" "revoked serial 0*$s \((encryption|signing)\) of alice@example.org, reason keyCompromise" "revoke names $c by serial and usage"
done
like "$T/out" "^CRL update queued$" "revoke says the CRL update is queued"
wait_crl 2
is "$(crlnum "$CRL")" 2 "kmsd publishes CRL 2 promptly"
openssl crl -inform DER -in "$CRL" -noout -text >"$T/crl2.txt"
for c in alice-enc alice-sign; do
	like "$T/crl2.txt" "Serial Number: $(serial_of "$T/$c.pem")" "CRL 2 lists $c"
done
is "$(grep -c 'Key Compromise' "$T/crl2.txt")" 2 "both entries carry reason keyCompromise"
check "CRL 2 verifies against the CA" openssl crl -inform DER -in "$CRL" -CAfile "$T/ca.pem" -noout
expect_exit 2 "openssl verify -crl_check rejects alice's revoked certificate" \
	openssl verify -crl_check -CAfile "$T/ca.pem" -CRLfile "$CRL.pem" "$T/alice-enc.pem"
like "$T/err" "certificate revoked" "... with 'certificate revoked'"
check "openssl verify -crl_check accepts bob's valid certificate" \
	openssl verify -crl_check -CAfile "$T/ca.pem" -CRLfile "$CRL.pem" "$T/bob-enc.pem"
is "$(psql_kms "SELECT string_agg(c.status || ':' || r.reason || ':' || r.revoked_by, ',') FROM certificates c JOIN revocations r ON r.certificate_id = c.id")" \
	"revoked:keyCompromise:$(id -un),revoked:keyCompromise:$(id -un)" "revocations rows and certificate status"
is "$(crl_requests done) $(crl_requests queued)" "1 0" "the crl request is done"

# --- revoke by serial, written with colons, upper case and leading zeros ---------
BOBSER=$(serial_of "$T/bob-enc.pem")
SPELLED=00$(echo "$BOBSER" | sed 's/../&:/g; s/:$//')
check "kmsctl revoke --serial 00:AB:CD:... (colons, leading zeros)" "$KMSCTL" -c "$CONF" revoke --serial "$SPELLED"
like "$T/out" "\(encryption\) of bob@example.org, reason unspecified" "only bob's encryption certificate"
wait_crl 3
is "$(crlnum "$CRL")" 3 "CRL 3 published"
openssl crl -inform DER -in "$CRL" -noout -text >"$T/crl3.txt"
like "$T/crl3.txt" "Serial Number: $BOBSER" "CRL 3 lists bob's encryption certificate"
is "$(grep -c 'Serial Number:' "$T/crl3.txt")" 3 "CRL 3 has three entries"
is "$(grep -c 'CRL Reason Code' "$T/crl3.txt")" 2 "unspecified is written without a reason code (RFC 5280)"
expect_exit 2 "bob's revoked encryption certificate fails openssl verify -crl_check" \
	openssl verify -crl_check -CAfile "$T/ca.pem" -CRLfile "$CRL.pem" "$T/bob-enc.pem"
like "$T/err" "certificate revoked" "... with 'certificate revoked'"
check "bob's signing certificate still verifies" \
	openssl verify -crl_check -CAfile "$T/ca.pem" -CRLfile "$CRL.pem" "$T/bob-sign.pem"

# --- refusals --------------------------------------------------------------------
NREQ=$(psql_kms "SELECT count(*) FROM requests")
expect_exit 1 "revoking alice again exits 1" "$KMSCTL" -c "$CONF" revoke alice@example.org
like "$T/err" "alice@example.org: every certificate issued to this address is already revoked; nothing revoked" "... saying they are already revoked"
one_line "$T/err" "... in one line"
expect_exit 1 "revoking bob's serial again exits 1" "$KMSCTL" -c "$CONF" revoke --serial "$BOBSER"
like "$T/err" "is already revoked" "... already revoked"
expect_exit 1 "an unknown serial exits 1" "$KMSCTL" -c "$CONF" revoke --serial 0123456789abcdef
like "$T/err" "no certificate with serial 0123456789abcdef" "... naming the serial"
expect_exit 1 "an unknown address exits 1" "$KMSCTL" -c "$CONF" revoke nobody@example.org
like "$T/err" "nobody@example.org: unknown address" "... naming the address"
expect_exit 1 "a known and an unknown address: exit 1" "$KMSCTL" -c "$CONF" revoke carol@example.org nobody@example.org
is "$(psql_kms "SELECT c.status FROM certificates c JOIN users u ON u.id = c.user_id WHERE u.address = 'carol@example.org'")" valid "... and nothing is revoked (one transaction)"
expect_exit 2 "an unknown reason is a usage error (exit 2)" "$KMSCTL" -c "$CONF" revoke --reason stolen carol@example.org
like "$T/err" "unknown reason 'stolen'" "... naming the reason"
expect_exit 2 "removeFromCRL is refused (exit 2)" "$KMSCTL" -c "$CONF" revoke --reason removeFromCRL carol@example.org
expect_exit 2 "a serial that is not hex is a usage error" "$KMSCTL" -c "$CONF" revoke --serial xyz
expect_exit 2 "revoke without arguments is a usage error" "$KMSCTL" -c "$CONF" revoke
# a harvested certificate (recorded as kmsmilter records one from signed mail)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/h.key" -out "$T/h.pem" \
	-subj "/CN=Harvested/emailAddress=harry@other.example" -addext subjectAltName=email:harry@other.example \
	-set_serial 0x4242 -days 30 2>/dev/null
HDER=$(openssl x509 -in "$T/h.pem" -outform DER | od -An -v -tx1 | tr -d ' \n')
HSHA=$(openssl x509 -in "$T/h.pem" -outform DER | sha256sum | cut -c1-64)
psql_kms "WITH c AS (INSERT INTO certificates (source, usage, status, sha256, serial, subject, issuer, not_before, not_after, der)
	VALUES ('harvested', 'signing', 'untrusted-chain', '$HSHA', '4242', 'CN=Harvested', 'CN=Harvested', now(), now() + interval '30 days', '\\x$HDER') RETURNING id)
	INSERT INTO certificate_addresses SELECT id, 'harry@other.example' FROM c"
expect_exit 1 "a harvested certificate's serial cannot be revoked here" "$KMSCTL" -c "$CONF" revoke --serial 42:42
like "$T/err" "harvested certificate issued by CN=Harvested, not by this CA" "... and it says why"
expect_exit 1 "an address with only harvested certificates cannot be revoked" "$KMSCTL" -c "$CONF" revoke harry@other.example
like "$T/err" "only harvested certificates" "... and it says why"
is "$(psql_kms "SELECT count(*) FROM requests")" "$NREQ" "refusals queue no CRL request"
sleep 1.2
is "$(crlnum "$CRL")" 3 "and no new CRL appears"

# --- kmsctl crl --out in all forms ------------------------------------------------
check "kmsctl crl --out F.pem" "$KMSCTL" -c "$CONF" crl --out "$T/got.pem"
check "... equals the published PEM" cmp "$T/got.pem" "$CRL.pem"
check "kmsctl crl --der --out F" "$KMSCTL" -c "$CONF" crl --der --out "$T/got.bin"
like "$T/out" "^CRL 3 written to .*got.bin \(DER\)" "... and names the CRL number and format"
check "... equals the published DER" cmp "$T/got.bin" "$CRL"
expect_exit 2 "kmsctl crl with an argument is a usage error" "$KMSCTL" -c "$CONF" crl extra

# --- re-signed before nextUpdate; a lost file is rewritten ----------------------------
psql_kms "UPDATE ca SET crl_next_update = now() + interval '1 minute' WHERE status = 'active'"
wait_crl 4
is "$(crlnum "$CRL")" 4 "past half of its lifetime the CRL is re-signed (CRL 4) at the next heartbeat"
is "$(psql_kms "SELECT crl_next_update > now() + interval '6 days' FROM ca WHERE status = 'active'")" t "... with a fresh nextUpdate"
is "$(openssl crl -inform DER -in "$CRL" -noout -text | grep -c 'Serial Number:')" 3 "... still listing the three revoked certificates"
rm -f "$CRL.pem"
i=0; while [ ! -f "$CRL.pem" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
check "a deleted PEM file is written again" test -f "$CRL.pem"
check "... holding CRL 4, not a new number" sh -c "openssl crl -in '$CRL.pem' -noout -crlnumber | grep -qx 'crlNumber=0x04'"
echo garbage >"$CRL"
i=0; while [ "$(crlnum "$CRL")" != 4 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
is "$(crlnum "$CRL")" 4 "a damaged DER file is replaced by the vault's CRL"
is "$(psql_kms "SELECT crl_number FROM ca WHERE status = 'active'")" 4 "the vault's number did not move for that"

# --- kmsd down: the request waits, also past its expiry ---------------------------------
stop_kmsd
is "$?" 0 "kmsd stops cleanly"
check "revoke carol while kmsd is down" "$KMSCTL" -c "$CONF" revoke --reason superseded carol@example.org
like "$T/out" "no kmsd is running: it publishes the CRL when it starts" "revoke says no kmsd is running"
is "$(crl_requests queued)" 1 "the crl request waits"
psql_kms "UPDATE requests SET expires_at = now() - interval '1 minute' WHERE kind = 'crl' AND status = 'queued'"
sleep 1.2
is "$(crlnum "$CRL")" 4 "no CRL while kmsd is down"
start_kmsd
wait_crl 5
is "$(crlnum "$CRL")" 5 "kmsd publishes when it starts, even for a request past its expiry"
like "$T/kmsd.log" "CRL 5 signed: 4 revoked certificates" "kmsd logs the CRL it signed"
openssl crl -inform DER -in "$CRL" -noout -text >"$T/crl5.txt"
like "$T/crl5.txt" "Serial Number: $(serial_of "$T/carol-enc.pem")" "carol's certificate is listed"
like "$T/crl5.txt" "Superseded" "with reason superseded"
i=0; while [ "$(crl_requests queued)" != 0 ] && [ $i -lt 30 ]; do sleep 0.1; i=$((i + 1)); done
is "$(crl_requests queued)" 0 "the expired request is marked done"

# --- several requests collapse into one CRL ---------------------------------------------
stop_kmsd
check "revoke dave while kmsd is down" "$KMSCTL" -c "$CONF" revoke dave@example.org
check "revoke bob's signing certificate by serial while kmsd is down" "$KMSCTL" -c "$CONF" revoke --serial "$(serial_of "$T/bob-sign.pem" | tr A-F a-f)"
is "$(crl_requests queued)" 2 "two crl requests wait"
start_kmsd
wait_crl 6
i=0; while [ "$(crl_requests queued)" != 0 ] && [ $i -lt 30 ]; do sleep 0.1; i=$((i + 1)); done
sleep 1.2
is "$(crlnum "$CRL")" 6 "both are published in one CRL (6)"
is "$(crl_requests queued)" 0 "both requests are done"
is "$(openssl crl -inform DER -in "$CRL" -noout -text | grep -c 'Serial Number:')" 6 "CRL 6 has six entries"
check "CRL 6 verifies against the CA" openssl crl -inform DER -in "$CRL" -CAfile "$T/ca.pem" -noout

# --- two kmsd never sign the same number --------------------------------------------------
# (the second with another crl_days: they must not take turns re-signing)
KPID1=$KPID
sed 's/^crl_days = 7$/crl_days = 30/' "$CONF" >"$T/kms2.conf"
start_kmsd 2 "$T/kms2.conf"
sleep 0.5
for n in 1 2 3 4 5 6; do
	issue extra$n encryption "extra$n@example.org"
done
for n in 1 2 3 4 5 6; do
	"$KMSCTL" -c "$CONF" revoke "extra$n@example.org" >/dev/null || not_ok "revoke extra$n"
	psql_kms "UPDATE ca SET crl_next_update = now() + interval '1 minute' WHERE status = 'active'"
done
i=0; while [ "$(crl_requests queued)" != 0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
sleep 1.5
LAST=$(psql_kms "SELECT crl_number FROM ca WHERE status = 'active'")
wait_crl "$LAST"
cat "$T/kmsd.log" "$T/kmsd2.log" | sed -n 's/.*CRL \([0-9]*\) signed.*/\1/p' | sort -n >"$T/numbers"
is "$(sort -u "$T/numbers" | wc -l)" "$(wc -l <"$T/numbers")" "two kmsd: every CRL number was signed once ($(tr '\n' ' ' <"$T/numbers"))"
is "$(tail -1 "$T/numbers")" "$LAST" "the highest number signed is the vault's"
is "$(crlnum "$CRL")" "$LAST" "crl_dir holds the newest CRL"
is "$(openssl crl -inform DER -in "$CRL" -noout -text | grep -c 'Serial Number:')" 12 "it lists all twelve revoked certificates"
sleep 3
is "$(psql_kms "SELECT crl_number FROM ca WHERE status = 'active'")" "$LAST" "kmsd with crl_days 7 and 30 do not re-sign in turns"
stop_kmsd
KPID=$KPID1
stop_kmsd
unlike "$T/kmsd.log" "PRIVATE KEY" "no key material in kmsd's log"
done_testing
