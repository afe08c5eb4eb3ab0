#!/bin/sh
# quickstart.sh: on a fresh Debian 12 machine, install what is missing,
# build kmsmilter, start a private PostgreSQL vault under ./state (a socket
# directory, no TCP, no system service), initialise it with a generated
# startup password kept in a 0600 file, start kmsd and kmsmilter, show the
# main job working once (an enrollment round trip: token mail into a local
# SMTP sink, the reply through kmsmilter, the PKCS#12 back; then a message
# to the new user encrypted by kmsmilter and read with her key), and print
# the line for Postfix's main.cf.
#
#   contrib/quickstart.sh         set up and start (again) everything
#   contrib/quickstart.sh stop    stop the daemons and the private cluster
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
# KMS_STATE, KMS_BUILD, KMS_MILTER_PORT, KMS_DEMO_SMTP_PORT move the state
# directory, the build directory and the two ports (the test suite runs this
# script in a temporary directory with an existing build).
state=${KMS_STATE:-$top/state}
port=${KMS_MILTER_PORT:-8891}
sinkport=${KMS_DEMO_SMTP_PORT:-2525}
build=${KMS_BUILD:-$top/build}
pgdir=$state/pg
sock=$pgdir/sock

as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
pgbin() { for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && b=$d; done; echo "$b"; }
# stop_pid FILE: stop the daemon named in FILE and wait until it is gone.
stop_pid() {
	[ -f "$1" ] || return 0
	p=$(cat "$1")
	if kill "$p" 2>/dev/null; then
		n=0; while kill -0 "$p" 2>/dev/null && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
	fi
	rm -f "$1"
}

if [ "${1:-}" = stop ]; then
	stop_pid "$state/kmsmilter.pid"; stop_pid "$state/kmsd.pid"; stop_pid "$state/sink.pid"
	[ -d "$pgdir/data" ] && as_pg "$(pgbin)/pg_ctl" -D "$pgdir/data" -w stop >/dev/null 2>&1
	echo "stopped (state kept in $state; remove it to start over)"
	exit 0
fi

echo "== installing missing packages"
"$top/contrib/install-deps.sh" || exit 1
PG_BINDIR=$(pgbin)

echo "== building"
# build output is logged in the state directory, never in a build
# directory we did not make (KMS_BUILD: make distcheck's must stay clean)
mkdir -p "$state" && chmod 0711 "$state"
mklog=$state/make.out
cd "$top" || exit 1
[ -x configure ] || autoreconf -fi >/dev/null || exit 1
mkdir -p "$build" && cd "$build" || exit 1
[ -f Makefile ] || "$top/configure" >"$state/configure.out" 2>&1 || { tail -20 "$state/configure.out"; exit 1; }
make -j"$(nproc)" >"$mklog" 2>&1 || { tail -30 "$mklog"; exit 1; }
KMSCTL=$build/keyvault/kmsctl

echo "== private PostgreSQL vault in $pgdir"
mkdir -p "$state" && chmod 0711 "$state"
if [ ! -d "$pgdir/data" ]; then
	mkdir -p "$sock"
	[ "$(id -u)" = 0 ] && chown -R postgres "$pgdir"
	as_pg "$PG_BINDIR/initdb" -D "$pgdir/data" -U kmsdba --auth=trust -E UTF8 --no-instructions \
		>"$state/initdb.log" 2>&1 || { cat "$state/initdb.log"; exit 1; }
fi
if ! as_pg "$PG_BINDIR/pg_ctl" -D "$pgdir/data" status >/dev/null 2>&1; then
	as_pg "$PG_BINDIR/pg_ctl" -D "$pgdir/data" -l "$pgdir/server.log" -w \
		-o "-k $sock -c listen_addresses= -c unix_socket_permissions=0700" start >/dev/null ||
		{ cat "$pgdir/server.log"; exit 1; }
fi
"$PG_BINDIR/psql" -h "$sock" -U kmsdba -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = 'kms'" |
	grep -q 1 || "$PG_BINDIR/createdb" -h "$sock" -U kmsdba kms || exit 1

conf=$state/kmsmilter.conf
if [ ! -f "$conf" ]; then
	cat >"$conf" <<CONF
# Written by contrib/quickstart.sh; see kmsmilter.conf(5).
[vault]
dsn = host=$sock dbname=kms user=kmsdba

[milter]
socket = inet:$port@127.0.0.1
pid_file = $state/kmsmilter.pid
enroll_address = kms-enroll@example.org

[kms]
startup_password_file = $state/startup.pw
pid_file = $state/kmsd.pid

# The demo below: kmsd mails to a local SMTP sink (Postfix's smtp-sink)
# that writes each message to $state/demo-mail. For real use, point this
# at your MTA and set from to the KMS address of your domain.
[mail]
submit = smtp://127.0.0.1:$sinkport
from = kms@example.org
CONF
fi
if [ ! -f "$state/startup.pw" ]; then
	(umask 077; openssl rand -base64 24 >"$state/startup.pw")
fi

echo "== kmsctl init"
if "$KMSCTL" -c "$conf" status >/dev/null 2>&1; then
	echo "vault already initialised"
else
	"$KMSCTL" -c "$conf" init --password-file "$state/startup.pw" || exit 1
fi

echo "== starting kmsd and kmsmilter (logs in $state/*.log)"
stop_pid "$state/kmsmilter.pid"; stop_pid "$state/kmsd.pid"
nohup "$build/keyvault/kmsd" -c "$conf" -f >>"$state/kmsd.log" 2>&1 &
nohup "$build/milter/kmsmilter" -c "$conf" -f >>"$state/kmsmilter.log" 2>&1 &
n=0
while [ $n -lt 50 ]; do
	"$KMSCTL" -c "$conf" status --json 2>/dev/null | grep -q '"workers" : 1' &&
		grep -q "listening on" "$state/kmsmilter.log" && break
	sleep 0.2; n=$((n + 1))
done

echo "== kmsctl status"
"$KMSCTL" -c "$conf" status || exit 1
grep -q "listening on" "$state/kmsmilter.log" || { tail -5 "$state/kmsmilter.log"; exit 1; }

# --- the main job, once, on this machine ----------------------------------
# An administrator enrolls demo@example.org; kmsd mails the token (into the
# SMTP sink); the user's reply passes through kmsmilter (miltertest plays
# the MTA, as Postfix would); kmsd issues her key and certificate and mails
# them as a PKCS#12, which opens with the token.
echo "== enrollment demo: kmsctl enroll demo@example.org"
mail=$state/demo-mail
rm -rf "$mail"; mkdir -p "$mail"
stop_pid "$state/sink.pid"
[ "$(id -u)" = 0 ] && chown nobody "$mail" && sinkuser="-u nobody" || sinkuser=
/usr/sbin/smtp-sink $sinkuser -d "$mail/%Y%m%d%H%M%S." "127.0.0.1:$sinkport" 10 \
	>"$state/sink.log" 2>&1 &
echo $! >"$state/sink.pid"
# wait_file N: until the sink holds N messages (60 s at most)
wait_file() {
	n=0; while [ "$(ls "$mail" | wc -l)" -lt "$1" ] && [ $n -lt 600 ]; do sleep 0.1; n=$((n + 1)); done
	[ "$(ls "$mail" | wc -l)" -ge "$1" ]
}
"$KMSCTL" -c "$conf" enroll demo@example.org || exit 1
wait_file 1 || { echo "no token mail arrived; see $state/kmsd.log"; exit 1; }
tokmail=$(ls "$mail"/* | head -1)
token=$(sed -n 's/^Token: \([A-Z0-9-]*\)\r\{0,1\}$/\1/p' "$tokmail" | head -1)
echo "token mail for demo@example.org: $(grep -m1 '^Subject:' "$tokmail")"
echo "   (its line 'Token: ${token%%-*}-...' is what the user keeps in her reply)"

echo "== the user replies to kms-enroll@example.org; kmsmilter consumes the token"
{
	printf 'From: demo@example.org\r\nTo: kms-enroll@example.org\r\n'
	printf 'Subject: Re: certificate\r\n\r\nPlease enroll me.\r\n\r\n'
	sed '1,/^\r*$/d; s/^/> /' "$tokmail"
} >"$state/demo-reply.eml"
miltertest -D "sock=inet:$port@127.0.0.1" -D "file=$state/demo-reply.eml" \
	-D from=demo@example.org -D rcpt=kms-enroll@example.org -D expect=discard \
	-s "$top/tests/milter-reply.lua" >"$state/demo-miltertest.log" 2>&1 ||
	{ cat "$state/demo-miltertest.log"; tail -5 "$state/kmsmilter.log"; exit 1; }
echo "kmsmilter accepted the reply and discarded it (it was for the KMS only)"

echo "== kmsd issues the key and mails the PKCS#12"
wait_file 2 || { echo "no PKCS#12 mail arrived; see $state/kmsd.log"; exit 1; }
p12mail=$(ls -t "$mail"/* | head -1)
python3 - "$p12mail" "$state/demo.p12" <<'PY' || exit 1
import email, sys
from email import policy
m = email.message_from_binary_file(open(sys.argv[1], "rb"), policy=policy.default)
p = [p for p in m.walk() if p.get_content_type() == "application/pkcs12"][0]
open(sys.argv[2], "wb").write(p.get_payload(decode=True))
print("mail to %s: %s, attachment %s" % (m["To"], m["Subject"], p.get_filename()))
PY
openssl pkcs12 -in "$state/demo.p12" -passin "pass:$token" -clcerts -nokeys 2>/dev/null |
	openssl x509 -noout -subject -ext subjectAltName -enddate || exit 1
"$KMSCTL" -c "$conf" ca show --pem >"$state/ca.pem" &&
	openssl pkcs12 -in "$state/demo.p12" -passin "pass:$token" -clcerts -nokeys 2>/dev/null |
	openssl verify -CAfile "$state/ca.pem" || exit 1
echo "The PKCS#12 opened with the token; the certificate verifies to the vault's CA."
echo "Its private key is escrowed, sealed, in the vault: kmsctl recover demo@example.org"

# --- outbound encryption, once --------------------------------------------
# A message to demo@example.org asks for encryption with the trigger header;
# bench/milter-load plays the MTA (it applies the milter's changes as an MTA
# would and writes the result), and demo's key from her PKCS#12 reads it.
echo "== encryption demo: a message to demo@example.org with 'X-KMS-Encrypt: yes'"
make -C "$build" bench/milter-load >>"$mklog" 2>&1 || { tail -20 "$mklog"; exit 1; }
{
	printf 'From: boss@example.org\r\nTo: demo@example.org\r\nSubject: quarterly figures\r\n'
	printf 'X-KMS-Encrypt: yes\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n'
	printf 'Only demo@example.org can read this.\r\n'
} >"$state/demo-plain.eml"
rm -f "$state/demo-encrypted.eml"
"$build/bench/milter-load" -s "inet:$port@127.0.0.1" -n 1 -f boss@example.org \
	-r demo@example.org -e accept -o "$state/demo-encrypted.eml" "$state/demo-plain.eml" \
	>"$state/demo-milter-load.log" 2>&1 && [ -s "$state/demo-encrypted.eml" ] ||
	{ cat "$state/demo-milter-load.log"; tail -5 "$state/kmsmilter.log"; exit 1; }
grep -i -E '^(Content-Type|X-KMS-Info):' "$state/demo-encrypted.eml" | sed 's/^/   /'
openssl pkcs12 -in "$state/demo.p12" -passin "pass:$token" -nodes -nocerts 2>/dev/null \
	>"$state/demo.key" && chmod 600 "$state/demo.key"
openssl cms -decrypt -in "$state/demo-encrypted.eml" -inkey "$state/demo.key" \
	-out "$state/demo-decrypted.txt" || exit 1
echo "decrypted with demo's key from her PKCS#12:"
sed 's/^/   /' "$state/demo-decrypted.txt"
rm -f "$state/demo.key"
echo
echo "kmsmilter is listening. Add to Postfix's main.cf:"
echo "  smtpd_milters = inet:127.0.0.1:$port"
echo "  non_smtpd_milters = inet:127.0.0.1:$port"
echo "  milter_default_action = accept"
echo
echo "The startup password is in $state/startup.pw (mode 0600): keep a copy offline."
echo "Stop everything with: contrib/quickstart.sh stop"
