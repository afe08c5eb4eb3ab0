#!/bin/sh
# Export/import between vaults: three vaults (databases kms, kmsb, kmsc in
# one private cluster), each with its kmsd. In vault A alice is enrolled
# twice (key history of two); a message is encrypted to her OLD
# certificate. A wrong --fingerprint exports nothing. alice goes from A to
# B: the bundle is mode 0600, holds no key in clear, A's keys are deleted,
# her certificates are revoked and on A's CRL; B imports the bundle once
# (a second time is refused), B recovers both keys by token mail and the
# old one decrypts the old message. A bundle made for vault C, and a
# damaged bundle, are refused by B.
. "$top_srcdir/tests/lib.sh"
[ -x /usr/sbin/smtp-sink ] || bail "smtp-sink not found: install postfix (contrib/install-deps.sh does)"
pg_start
start_sink mail
for db in kmsb kmsc; do
	"$PG_BINDIR/createdb" -h "$PGSOCK" -U kmsdba $db || bail "createdb $db failed"
done
mkdir "$T/crl"
# mkconf NAME DB: $T/NAME.conf for database DB, startup password $T/NAME.pw
mkconf() {
	write_password "$T/$1.pw" "export test password $1"
	write_config "$T/$1.conf" "$(printf '[mail]\nsubmit = smtp://127.0.0.1:%s\nfrom = kms@example.org\n[ca]\ncrl_url = http://pki.example.org/kms.crl\nsubject = CN=Vault %s CA\n[enrollment]\nkey_type = p256\n' "$PORT" "$1")"
	sed -i "s|dbname=kms |dbname=$2 |" "$T/$1.conf"
	kmsd_config "$T/$1.conf" "$T/$1.pw"
	"$KMSCTL" -c "$T/$1.conf" init --password-file "$T/$1.pw" >/dev/null || bail "init $1 failed"
}
mkconf a kms
sed -i "s|^\[ca\]|[ca]\ncrl_dir = $T/crl|" "$T/a.conf"
mkconf b kmsb
mkconf c kmsc
A=$T/a.conf B=$T/b.conf C=$T/c.conf
psql_db() { PGDATABASE_KMS=$1 psql_kms "$2"; }

KPIDS=
start_kmsd() { # start_kmsd NAME
	"$KMSD" -c "$T/$1.conf" -f 2>>"$T/kmsd-$1.log" &
	KPIDS="$KPIDS $!"; bg_pids="$bg_pids $!"
}
req_finished() { s=$(psql_db "$1" "SELECT status FROM requests WHERE id = $2"); [ "$s" = done ] || [ "$s" = failed ]; }
token() { # token CONF ADDR [recover]
	"$KMSCTL" -c "$1" ${3:-enroll} --deliver out-of-band "$2" >"$T/tok.out" 2>"$T/tok.err" || { cat "$T/tok.err" >&2; return 1; }
	sed -n 's/^Token: //p' "$T/tok.out"
}
reply() { # reply NAME ADDR TOKEN
	"$VAULTTOOL" -c "$T/$1.conf" -p "$T/$1.pw" queue-reply "$2" "$3"
}
newest_mail() { grep -l -i "^To: $1" "$T"/mail/* 2>/dev/null | xargs -r grep -l "^Subject: $2" | xargs -r ls -t | head -1; }
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
# enroll NAME ADDR OUT: enroll ADDR in vault NAME; OUT.crt and OUT.key from the PKCS#12
enroll() {
	local tok rid n
	n=$(ls "$T/mail" | wc -l)
	tok=$(token "$T/$1.conf" "$2") || return 1
	rid=$(reply "$1" "$2" "$tok") || return 1
	wait_for 60 req_finished "$(dbof "$1")" "$rid"
	wait_for 10 more_mail_than "$n"
	sleep 1.1	# smtp-sink names files by the second: keep mails apart
	extract "$(newest_mail "$2" "Your S/MIME key and certificates")" "$3.p12" || return 1
	openssl pkcs12 -in "$3.p12" -passin "pass:$tok" -clcerts -nokeys -out "$3.crt" 2>/dev/null &&
	    openssl pkcs12 -in "$3.p12" -passin "pass:$tok" -nocerts -nodes -out "$3.key" 2>/dev/null
}
dbof() { case $1 in a) echo kms;; b) echo kmsb;; c) echo kmsc;; esac; }
hexof() { od -An -v -tx1 "$@" | tr -d ' \n'; }
serial_of() { openssl x509 -in "$1" -noout -serial | sed 's/^serial=//'; }
keys_of() { psql_db "$1" "SELECT count(*) FROM escrowed_keys e JOIN users u ON u.id = e.user_id WHERE u.address = '$2'"; }

more_mail_than() { [ "$(ls "$T/mail" | wc -l)" -gt "$1" ]; }
has_transport_key() { [ "$(psql_db "$(dbof "$1")" "SELECT count(*) FROM transport_keys")" = 1 ]; }
start_kmsd a
start_kmsd b
start_kmsd c
for n in a b c; do
	wait_for 60 grep -q "worker .* ready" "$T/kmsd-$n.log" || bail "kmsd $n did not start: $(tail -3 "$T/kmsd-$n.log")"
	# the transport key is made right after "ready"
	wait_for 60 has_transport_key "$n" || bail "kmsd $n made no transport key: $(tail -3 "$T/kmsd-$n.log")"
done

# --- vault A: alice with two keys, bob with one ------------------------------------
enroll a alice@example.org "$T/alice1" || bail "first enrollment of alice failed"
printf 'a secret from long ago\n' >"$T/old.txt"
openssl cms -encrypt -binary -aes256 -in "$T/old.txt" -out "$T/old.p7m" "$T/alice1.crt" 2>/dev/null ||
	bail "openssl cms -encrypt to alice's first certificate failed"
enroll a alice@example.org "$T/alice2" || bail "second enrollment of alice failed"
enroll a bob@example.org "$T/bob" || bail "enrollment of bob failed"
is "$(keys_of kms alice@example.org)" 2 "vault A escrows two keys of alice"
[ "$(serial_of "$T/alice1.crt")" != "$(serial_of "$T/alice2.crt")" ] && ok "two different certificates" || not_ok "two different certificates"

# --- transport certificates ---------------------------------------------------------
check "kmsctl transport-cert --out (vault B)" "$KMSCTL" -c "$B" transport-cert --out "$T/b.crt"
FPB=$(sed -n 's/^Fingerprint: //p' "$T/out")
is "$FPB" "$(openssl x509 -in "$T/b.crt" -outform DER | sha256sum | cut -c1-64)" "it prints the certificate's SHA-256 as Fingerprint:"
check "the transport certificate is RSA-3072" sh -c "openssl x509 -in '$T/b.crt' -noout -text | grep -q 'Public-Key: (3072 bit)'"
check "kmsctl transport-cert (vault C) prints PEM" "$KMSCTL" -c "$C" transport-cert
sed -n '/BEGIN CERT/,/END CERT/p' "$T/out" >"$T/c.crt"
FPC=$(sed -n 's/^Fingerprint: //p' "$T/out")
check "which openssl reads" openssl x509 -in "$T/c.crt" -noout
FPB8=$(echo "$FPB" | cut -c1-8 | tr a-f A-F)
FPC8=$(echo "$FPC" | cut -c1-8)

# --- a wrong fingerprint exports nothing ----------------------------------------------
NREQ=$(psql_db kms "SELECT count(*) FROM requests WHERE kind = 'export'")
expect_exit 1 "export with a wrong --fingerprint is refused" "$KMSCTL" -c "$A" export alice@example.org --to "$T/b.crt" --fingerprint 0badf00d --out "$T/wrong.bundle"
like "$T/err" "fingerprint mismatch: .*b.crt has SHA-256 fingerprint $(echo "$FPB" | cut -c1-8).*says 0badf00d; nothing exported" "it names both fingerprints"
one_line "$T/err" "in one line"
[ -e "$T/wrong.bundle" ] && not_ok "no bundle file is written" || ok "no bundle file is written"
is "$(psql_db kms "SELECT count(*) FROM requests WHERE kind = 'export'")" "$NREQ" "no export request is queued"
is "$(keys_of kms alice@example.org)" 2 "alice's keys are still in A"
expect_exit 2 "export without --out is a usage error" "$KMSCTL" -c "$A" export alice@example.org --to "$T/b.crt" --fingerprint "$FPB8"
expect_exit 1 "export of an unknown address is refused" "$KMSCTL" -c "$A" export nobody@example.org --to "$T/b.crt" --fingerprint "$FPB8" --out "$T/nobody.bundle"
like "$T/err" "export refused: nobody@example.org: unknown address" "with kmsd's reason"
[ -e "$T/nobody.bundle" ] && not_ok "and no bundle file" || ok "and no bundle file"

# --- export alice from A to B ---------------------------------------------------------
check "kmsctl export alice --to B's certificate --fingerprint (upper case)" "$KMSCTL" -c "$A" export alice@example.org --to "$T/b.crt" --fingerprint "$FPB8" --out "$T/alice.bundle"
like "$T/out" "exported 1 user with 2 keys to the vault with transport certificate $(echo "$FPB" | cut -c1-8)" "it reports users, keys and target"
is "$(stat -c %a "$T/alice.bundle" 2>/dev/null)" 600 "the bundle is mode 0600"
like "$T/alice.bundle.explog" "^user alice@example.org: 2 escrowed key\(s\) exported and removed here, 2 certificate\(s\) revoked" "the .explog names the user and counts"
like "$T/alice.bundle.explog" "certificate serial 0*$(serial_of "$T/alice1.crt" | tr A-F a-f | sed 's/^0*//')" "and the serials"
unlike "$T/alice.bundle.explog" "PRIVATE|MII" "and no key material"
is "$(psql_db kms "SELECT count(*) FROM requests WHERE kind = 'export' AND result IS NOT NULL")" 0 "the bundle is cleared from the request once written"
check "the bundle is CMS enveloped data" sh -c "openssl cms -cmsout -inform DER -in '$T/alice.bundle' -print | grep -q 'authEnvelopedData\|envelopedData'"
BUNDLEHEX=$(hexof "$T/alice.bundle")
for k in alice1 alice2; do
	KEYHEX=$(openssl pkey -in "$T/$k.key" -outform DER 2>/dev/null | hexof)
	P8HEX=$(openssl pkcs8 -topk8 -nocrypt -in "$T/$k.key" -outform DER 2>/dev/null | hexof)
	if [ ${#KEYHEX} -lt 64 ]; then not_ok "$k's key DER to look for"; continue; fi
	case $BUNDLEHEX in
	*"$KEYHEX"*|*"$P8HEX"*) not_ok "the bundle holds no PKCS#8 of $k's key in clear";;
	*) ok "the bundle holds no PKCS#8 of $k's key in clear";;
	esac
done
is "$(keys_of kms alice@example.org)" 0 "A no longer holds alice's keys"
is "$(psql_db kms "SELECT status FROM users WHERE address = 'alice@example.org'")" exported "A marks alice exported"
is "$(psql_db kms "SELECT count(*) FROM certificates c JOIN users u ON u.id = c.user_id WHERE u.address = 'alice@example.org' AND c.status = 'valid'")" 0 "A revoked every certificate of alice"
is "$(psql_db kms "SELECT string_agg(DISTINCT reason, ',') FROM revocations")" superseded "with reason superseded"
is "$(keys_of kms bob@example.org)" 1 "bob's key stays in A"
is "$(psql_db kms "SELECT count(*) FROM audit WHERE action = 'keys exported' AND detail->>'address' = 'alice@example.org'")" 1 "A's audit log records the export"
crl_lists() { openssl crl -inform DER -in "$T/crl/kms.crl" -noout -text 2>/dev/null | grep -q "Serial Number: $1"; }
S1=$(serial_of "$T/alice1.crt") S2=$(serial_of "$T/alice2.crt")
wait_for 30 crl_lists "$S1"
check "A's CRL lists alice's old certificate" crl_lists "$S1"
check "and her newer one" crl_lists "$S2"
"$KMSCTL" -c "$A" ca show --pem >"$T/ca-a.pem"
expect_exit 2 "openssl verify -crl_check rejects alice's old certificate" openssl verify -crl_check -CAfile "$T/ca-a.pem" -CRLfile "$T/crl/kms.crl.pem" "$T/alice1.crt"
like "$T/err" "certificate revoked" "as revoked"
expect_exit 1 "exporting alice again is refused" "$KMSCTL" -c "$A" export alice@example.org --to "$T/b.crt" --fingerprint "$FPB8" --out "$T/again.bundle"
like "$T/err" "alice@example.org was already exported" "it says so"
expect_exit 1 "export over an existing file is refused" "$KMSCTL" -c "$A" export bob@example.org --to "$T/b.crt" --fingerprint "$FPB8" --out "$T/alice.bundle"
is "$(keys_of kms bob@example.org)" 1 "and exports nothing"

# --- a bundle for vault C, a damaged bundle ----------------------------------------------
check "export bob to vault C" "$KMSCTL" -c "$A" export bob@example.org --to "$T/c.crt" --fingerprint "$FPC8" --out "$T/bob-for-c.bundle"
expect_exit 1 "vault B refuses a bundle made for vault C" "$KMSCTL" -c "$B" import "$T/bob-for-c.bundle"
like "$T/err" "import refused: .*not for this vault.*this vault's transport certificate has fingerprint $(echo "$FPB" | cut -c1-8)" "it says the bundle is for another vault"
one_line "$T/err" "in one line"
is "$(psql_db kmsb "SELECT count(*) FROM users WHERE address = 'bob@example.org'")" 0 "B imported nothing of bob"
python3 -c 'import sys; d=bytearray(open(sys.argv[1],"rb").read()); d[len(d)-40]^=1; open(sys.argv[2],"wb").write(d)' "$T/alice.bundle" "$T/damaged.bundle"
expect_exit 1 "vault B refuses a damaged bundle" "$KMSCTL" -c "$B" import "$T/damaged.bundle"
like "$T/err" "import refused: .*(does not decrypt|signature)" "it says why"
expect_exit 1 "vault B refuses the bundle with a wrong --source-fingerprint" "$KMSCTL" -c "$B" import "$T/alice.bundle" --source-fingerprint 00000000
like "$T/err" "source fingerprint mismatch" "it says so"
is "$(psql_db kmsb "SELECT count(*) FROM imported_bundles")" 0 "B has imported no bundle yet"
is "$(psql_db kmsb "SELECT count(*) FROM requests WHERE kind = 'import' AND result IS NOT NULL")" 0 "refused bundles are not left in the requests"

# --- import into B -----------------------------------------------------------------------
FPA=$("$KMSCTL" -c "$A" transport-cert | sed -n 's/^Fingerprint: //p')
check "kmsctl import (vault B)" "$KMSCTL" -c "$B" import "$T/alice.bundle" --source-fingerprint "$(echo "$FPA" | cut -c1-12)"
like "$T/out" "imported bundle .* from the vault with transport certificate $(echo "$FPA" | cut -c1-8): 1 user, 2 keys" "it reports the import"
like "$T/alice.bundle.implog" "^user alice@example.org \(new user\): 2 key\(s\) imported" "the .implog names the user"
like "$T/alice.bundle.implog" "^source transport certificate: $FPA" "and the source"
is "$(keys_of kmsb alice@example.org)" 2 "B escrows alice's two keys"
is "$(psql_db kmsb "SELECT count(*) FROM escrowed_keys e JOIN certificates c ON c.id = e.certificate_id JOIN users u ON u.id = e.user_id WHERE u.address = 'alice@example.org'")" 2 "each with its certificate"
is "$(psql_db kmsb "SELECT users || ' ' || keys FROM imported_bundles")" "1 2" "imported_bundles records the bundle"
is "$(psql_db kmsb "SELECT count(*) FROM audit WHERE action = 'keys imported'")" 1 "B's audit log records the import"
expect_exit 1 "importing the same bundle again is refused" "$KMSCTL" -c "$B" import "$T/alice.bundle"
like "$T/err" "import refused: bundle [0-9a-f-]+ was already imported on [0-9]{4}-[0-9]{2}-[0-9]{2}" "it names the bundle and the date"
is "$(keys_of kmsb alice@example.org)" 2 "still two keys in B"

expect_exit 2 "export with both addresses and --all is a usage error" "$KMSCTL" -c "$C" export --all x@example.org --to "$T/b.crt" --fingerprint "$FPB8" --out "$T/all.bundle"
expect_exit 1 "export --all of a vault without escrowed keys is refused" "$KMSCTL" -c "$C" export --all --to "$T/b.crt" --fingerprint "$FPB8" --out "$T/all.bundle"
like "$T/err" "no user holds an escrowed key: nothing to export" "it says so"

# --- B recovers the old key; it decrypts the old message -------------------------------
check "kmsctl recover alice (vault B)" "$KMSCTL" -c "$B" recover --deliver out-of-band alice@example.org
RTOK=$(sed -n 's/^Token: //p' "$T/out")
RID=$(reply b alice@example.org "$RTOK")
wait_for 60 req_finished kmsb "${RID:-0}"
is "$(psql_db kmsb "SELECT status FROM requests WHERE id = ${RID:-0}")" done "B's kmsd does the recovery"
wait_for 10 test -n "$(newest_mail alice@example.org "Your recovered S/MIME keys")"
extract "$(newest_mail alice@example.org "Your recovered S/MIME keys")" "$T/rec.p12" && ok "a recovery mail with a PKCS#12" || not_ok "a recovery mail with a PKCS#12"
openssl pkcs12 -in "$T/rec.p12" -passin "pass:$RTOK" -nocerts -nodes -out "$T/rec-keys.pem" 2>/dev/null
is "$(grep -c 'BEGIN PRIVATE KEY' "$T/rec-keys.pem")" 2 "it holds both keys"
awk -v p="$T/rec-k" '/-----BEGIN/{n++} n{print > (p n ".pem")}' "$T/rec-keys.pem"
for k in "$T"/rec-k*.pem; do
	openssl cms -decrypt -binary -in "$T/old.p7m" -recip "$T/alice1.crt" -inkey "$k" -out "$T/old.out" 2>/dev/null && break
done
check "the recovered old key decrypts the message encrypted to the old certificate" cmp "$T/old.txt" "$T/old.out"
check "kmsctl audit verify (vault A)" "$KMSCTL" -c "$A" audit verify
check "kmsctl audit verify (vault B)" "$KMSCTL" -c "$B" audit verify

for n in a b c; do
	unlike "$T/kmsd-$n.log" "will retry|cannot make the transport" "kmsd $n logged no failed attempt"
done
for p in $KPIDS; do
	kill -TERM "$p" 2>/dev/null; wait "$p" 2>/dev/null; rc=$?
	is "$rc" 0 "kmsd stops cleanly (exit 0)"
done
psql_db kms "DELETE FROM workers"
expect_exit 1 "with no kmsd, export gives up after --timeout" "$KMSCTL" -c "$A" export carol@example.org --to "$T/b.crt" --fingerprint "$FPB8" --out "$T/late.bundle" --timeout 2
like "$T/err" "no kmsd answered request [0-9]+ within 2 s .*cancelled" "it says so"
is "$(psql_db kms "SELECT status FROM requests WHERE kind = 'export' ORDER BY id DESC LIMIT 1")" failed "and the request is cancelled, not left for a later kmsd"
done_testing
