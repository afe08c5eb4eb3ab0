#!/bin/sh
# The README's first command, contrib/quickstart.sh, run as a newcomer would
# (but in a temporary state directory, on free ports, with this build): it
# must start the vault and the daemons, carry one enrollment round trip
# (token mail, reply through kmsmilter, PKCS#12 opened with the token and
# verified against the CA) and one message encrypted by kmsmilter and read
# with the new user's key; then `quickstart.sh stop` stops everything.
. "$top_srcdir/tests/lib.sh"
[ -x /usr/sbin/smtp-sink ] || bail "smtp-sink not found: install postfix (contrib/install-deps.sh does)"
command -v miltertest >/dev/null || bail "miltertest not installed"
QS_ENV="KMS_STATE=$T/state KMS_BUILD=$top_builddir KMS_MILTER_PORT=$(free_port) KMS_DEMO_SMTP_PORT=$(free_port)"
extra_cleanup="env $QS_ENV sh '$top_srcdir/contrib/quickstart.sh' stop >/dev/null 2>&1"

check "contrib/quickstart.sh runs to the end" env $QS_ENV sh "$top_srcdir/contrib/quickstart.sh"
cp "$T/out" "$T/qs.out"
like "$T/qs.out" "^kmsd: +1 live worker" "kmsd is running"
like "$T/qs.out" "^token mail for demo@example.org: Subject: " "the token mail reaches the SMTP sink"
like "$T/qs.out" "kmsmilter accepted the reply and discarded it" "the reply is consumed by kmsmilter"
like "$T/qs.out" "^mail to demo@example.org: .*attachment smime-demo@example.org.p12" "the PKCS#12 mail arrives"
like "$T/qs.out" "^stdin: OK" "its certificate verifies against the vault's CA"
like "$T/qs.out" "X-KMS-Info: encrypted aes256-cbc for 1 recipient" "the demo message is encrypted by kmsmilter"
like "$T/qs.out" "^ +Only demo@example.org can read this\." "and decrypts with demo's key"
like "$T/state/kmsmilter.log" "listening on" "kmsmilter logged its start"
unlike "$T/state/demo-encrypted.eml" "Only demo@example.org" "the encrypted message holds no clear text"
unlike "$T/state/demo-encrypted.eml" "^X-KMS-Encrypt:" "the trigger header is gone"
check "quickstart.sh stop" env $QS_ENV sh "$top_srcdir/contrib/quickstart.sh" stop
extra_cleanup=
n=0; while [ -f "$T/state/kmsd.pid" ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
[ ! -f "$T/state/kmsd.pid" ] && [ ! -f "$T/state/kmsmilter.pid" ] && ok "the daemons are stopped" ||
	not_ok "the daemons are stopped"
done_testing
