#!/bin/sh
# Certificates and capabilities harvested by kmsmilter, driven through the
# real milter protocol by miltertest, from messages signed at test time by
# independent implementations: openssl cms, a signer on the OpenSSL
# library announcing AES-GCM and RSAES-OAEP, NSS cmsutil (Thunderbird's
# library) and gpgsm - detached and opaque, RSA and P-256 - plus broken and
# hostile messages. Each message must pass unchanged, and what
# `kmsctl cert list --json` shows must match what its signer announced.
. "$top_srcdir/tests/lib.sh"
command -v miltertest >/dev/null || bail "miltertest not installed (Debian: miltertest)"
pg_start
CONF=$T/kms.conf
write_config "$CONF" "$(printf '[log]\nlevel = debug')"
PORT=$(free_port)
sed -i "s|^socket = .*|socket = inet:$PORT@127.0.0.1\ndsn = host=$PGSOCK dbname=kms user=kms_milter\ntrust_refresh = 1s\nsystem_trust = no\nmax_message_size = 2m\nspool_memory = 64k\nseen_refresh = 0|" "$CONF"
write_password "$T/pw" 'harvest test password'
"$KMSCTL" -c "$CONF" init --password-file "$T/pw" >/dev/null || bail "init failed"

SMIME_SIGNER="$top_builddir/tests/smime-signer" sh "$top_srcdir/tests/peers/make-signed.sh" "$T/msgs" >"$T/make.log" 2>&1 ||
	{ cat "$T/make.log"; bail "tests/peers/make-signed.sh failed"; }
check "the test CA goes into the trust list" "$KMSCTL" -c "$CONF" ctl add "$T/msgs/ca.pem"
check "ctl list --json shows it" "$KMSCTL" -c "$CONF" ctl list --json
check "  ... with its fingerprint" python3 -c '
import json,sys,subprocess
d=json.load(open(sys.argv[1])); fp=subprocess.run(["openssl","x509","-in",sys.argv[2],"-outform","DER"],capture_output=True).stdout
import hashlib; assert [x["sha256"] for x in d]==[hashlib.sha256(fp).hexdigest()], d' "$T/out" "$T/msgs/ca.pem"

start_milter "$CONF" "$T/milter.log"

reset_certs() { psql_kms "SET client_min_messages = warning; TRUNCATE certificates, certificate_addresses, capabilities CASCADE"; }

while IFS="	" read -r name peer form keytype; do
	[ -f "$T/msgs/$name.eml" ] || { not_ok "$name: message missing"; continue; }
	reset_certs
	: >"$T/milter.log.cut"
	before=$(wc -l <"$T/milter.log")
	check "$name ($peer, $form, $keytype): accepted unchanged through the milter protocol" \
		miltertest -D sock="inet:$PORT@127.0.0.1" -D file="$T/msgs/$name.eml" -s "$top_srcdir/tests/milter-send.lua"
	"$KMSCTL" -c "$CONF" cert list --json >"$T/certs.json"
	check "$name: kmsctl cert list --json matches what the signer announced" \
		python3 "$top_srcdir/tests/check-harvest.py" "$T/certs.json" "$T/msgs/$name.expect"
	tail -n +"$((before + 1))" "$T/milter.log" >"$T/milter.log.cut"
	unlike "$T/milter.log.cut" "AddressSanitizer|runtime error|Assertion" "$name: no sanitizer report"
	case $(sed -n 's/^status: //p' "$T/msgs/$name.expect" | head -1) in
	bad-signature) like "$T/milter.log.cut" "bad signature by .*: nothing stored" "$name: the bad signature is logged" ;;
	trusted|untrusted-chain|expired) like "$T/milter.log.cut" "harvested [0-9]+ signers? into the vault" "$name: the harvest is logged" ;;
	esac
done <"$T/msgs/index.txt"

kill -0 "$MPID" 2>/dev/null && ok "kmsmilter survived every message" || not_ok "kmsmilter survived every message"
kill -TERM "$MPID"; wait "$MPID"; rc=$?
is "$rc" 0 "kmsmilter exits 0 on SIGTERM (under ASan: no leak at exit)"
unlike "$T/milter.log" "LeakSanitizer|AddressSanitizer|runtime error" "no sanitizer report in the milter log"
done_testing
