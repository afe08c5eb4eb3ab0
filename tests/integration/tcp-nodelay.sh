#!/bin/sh
# kmsmilter on TCP sets TCP_NODELAY on its listening socket (logged at
# start, not on a unix socket), so that an end of message answered with
# changes (replaced body, headers) and then the verdict does not wait for
# the MTA's delayed ACK (~40 ms a message without it). Measured from the
# outside with a milter protocol client in python over one connection:
# messages encrypted through TCP take about as long as through a unix
# socket to the same vault.
. "$top_srcdir/tests/lib.sh"
for t in openssl python3; do
	command -v "$t" >/dev/null || bail "$t not installed"
done

pg_start
write_password "$T/pw" 'nodelay test password'
write_config "$T/admin.conf" "$(printf '[log]\nlevel = info')"
"$KMSCTL" -c "$T/admin.conf" init --password-file "$T/pw" >/dev/null || bail "init failed"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/r.key" 2>/dev/null &&
	openssl pkey -in "$T/r.key" -pubout -out "$T/r.pub" 2>/dev/null || bail "cannot make the test key"
"$VAULTTOOL" -c "$T/admin.conf" -p "$T/pw" issue-record encryption r1@example.org "$T/r.pub" >"$T/r.pem" ||
	bail "issue-record failed"
check "policy: example.org requires encryption" "$KMSCTL" -c "$T/admin.conf" policy set --domain example.org encrypt=required

TCP=inet:$(free_port)@127.0.0.1
for so in tcp unix; do
	case $so in tcp) s=$TCP ;; *) s=unix:$T/milter.sock ;; esac
	{
		printf '[vault]\ndsn = %s\n' "$DSN"
		printf '[milter]\nsocket = %s\ndsn = host=%s dbname=kms user=kms_milter\n' "$s" "$PGSOCK"
		printf '[log]\nlevel = info\n'
	} >"$T/$so.conf"
	start_milter "$T/$so.conf" "$T/$so.log"
	grep -q "listening on" "$T/$so.log" || bail "kmsmilter does not start on $so: $(cat "$T/$so.log")"
	eval "PID_$so=\$MPID"
done
like "$T/tcp.log" "TCP_NODELAY set on the listening socket" "TCP: TCP_NODELAY set on the listening socket (logged)"
unlike "$T/tcp.log" "cannot set TCP_NODELAY" "  ... no warning"
unlike "$T/unix.log" "TCP_NODELAY" "unix socket: nothing about TCP_NODELAY"

# 30 messages to r1@example.org over one connection, each must come back
# encrypted (body replaced, then the verdict); the client prints the
# median time per message
{
	printf 'From: <sender@outside.test>\r\nTo: <r1@example.org>\r\nSubject: a message\r\n'
	printf 'Content-Type: text/plain\r\n\r\n'
	i=0
	while [ $i -lt 40 ]; do printf 'line %d of the message, some text to encrypt\r\n' $i; i=$((i + 1)); done
} >"$T/msg.eml"
client() { python3 "$top_srcdir/tests/milter-client.py" "$1" -n 30 --times --expect-body "$T/msg.eml"; }
check "30 messages encrypted through TCP" client "$TCP"
tcp_ms=$(cat "$T/out")
check "30 messages encrypted through the unix socket" client "unix:$T/milter.sock"
unix_ms=$(cat "$T/out")
diag "median per message: tcp $tcp_ms ms, unix $unix_ms ms"
check "TCP is not held back by the delayed ACK (median within 20 ms of the unix socket's)" \
	python3 -c 'import sys; t, u = float(sys.argv[1]), float(sys.argv[2]); sys.exit(0 if t < u + 20 else 1)' "$tcp_ms" "$unix_ms"
like "$T/tcp.log" "encryption: aes256-cbc for 1 recipient" "the milter logged the encryption"
for so in tcp unix; do
	eval "pid=\$PID_$so"
	kill -TERM "$pid"; wait "$pid"; rc=$?
	is "$rc" 0 "$so: kmsmilter exits 0 on SIGTERM"
	unlike "$T/$so.log" "AddressSanitizer|runtime error|LeakSanitizer" "$so: no sanitizer report in the milter log"
done
done_testing
