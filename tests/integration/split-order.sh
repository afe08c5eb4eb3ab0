#!/bin/sh
# mixed = split never leaves a plain copy out for a message the MTA does
# not take: kmsmilter makes its changes (recipients removed, headers, the
# encrypted body) first and submits the plain copy last. A milter client
# plays the MTA: once it reads everything (the copy goes to an smtp-sink,
# the encrypted body and the removal come back), once it goes away right
# after end of message (the changes cannot be made, the message is
# deferred and no copy is submitted; a retry then submits exactly one),
# once going away after the changes but before the verdict (the copy is
# out; the retry of the same message is not copied again, a message with
# another Message-ID is), and once with the submission server down
# (deferred, nothing out).
. "$top_srcdir/tests/lib.sh"
for t in openssl python3; do
	command -v "$t" >/dev/null || bail "$t not installed"
done

pg_start
start_sink sink
CONF=$T/kms.conf
write_config "$CONF" "$(printf '[mail]\nsubmit = smtp://127.0.0.1:%s\nfrom = kms@example.org\n[log]\nlevel = info' "$PORT")"
sed -i "s|^socket = .*|&\ndsn = host=$PGSOCK dbname=kms user=kms_milter|" "$CONF"
write_password "$T/pw" 'split order test password'
"$KMSCTL" -c "$CONF" init --password-file "$T/pw" >/dev/null || bail "init failed"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/r.key" 2>/dev/null &&
	openssl pkey -in "$T/r.key" -pubout -out "$T/r.pub" 2>/dev/null || bail "cannot make the test key"
"$VAULTTOOL" -c "$CONF" -p "$T/pw" issue-record encryption r1@example.org "$T/r.pub" >/dev/null ||
	bail "issue-record failed"
check "policy: example.org if-possible" "$KMSCTL" -c "$CONF" policy set --domain example.org encrypt=if-possible
check "policy: mixed = split" "$KMSCTL" -c "$CONF" policy set --domain outside.test mixed=split
start_milter "$CONF" "$T/milter.log"
grep -q "listening on" "$T/milter.log" || bail "kmsmilter does not start: $(cat "$T/milter.log")"

mk() {	# mk NAME [KB]: a message from sender@outside.test to r1@ and nocert@
	{
		printf 'From: <sender@outside.test>\r\nTo: <r1@example.org>, <nocert@example.org>\r\n'
		printf 'Subject: %s\r\nMessage-ID: <%s.%s@outside.test>\r\n' "$1" "$1" "$$"
		printf 'Content-Type: text/plain\r\n\r\nThe text of %s.\r\n' "$1"
		head -c $((${2:-0} * 768)) /dev/urandom | base64 -w 76 | sed 's/$/\r/'
	} >"$T/$1.eml"
}
client() {	# client NAME [OPTION...]
	local name=$1; shift
	python3 "$top_srcdir/tests/milter-client.py" "unix:$T/milter.sock" --from '<sender@outside.test>' \
		--rcpt '<r1@example.org>' --rcpt '<nocert@example.org>' "$@" "$T/$name.eml"
}
copies() { grep -l "^Subject: $1" "$T"/sink/* 2>/dev/null | wc -l; }
copies_are() { [ "$(copies "$1")" = "$2" ]; }

# 1. the MTA reads the replies: encrypted for r1, nocert removed, one copy
mk m1
check "split: the milter client gets its reply" client m1
like "$T/out" '^1 a/.*-' "  ... accept after removing a recipient"
like "$T/out" '^1 a/.*b' "  ... and replacing the body"
wait_for 10 copies_are m1 1
is "$(copies m1)" 1 "  ... one plain copy submitted"
like "$T/milter.log" "split: plain copy submitted for 1 recipient" "  ... logged"

# 2. the MTA goes away after end of message, before it read the changes:
# the encrypted body (1.4 MB) does not fit in the socket's buffer, so
# kmsmilter is still writing it when the client closes, and fails
mk m2 1024
check "the client closes after end of message" client m2 --close-after-eom 2
wait_for 10 grep -q "it could not be rewritten" "$T/milter.log"
like "$T/milter.log" "message deferred: it could not be rewritten \(no plain copy was submitted\)" \
	"  ... the message is deferred, no copy submitted (logged)"
sleep 1
is "$(copies m2)" 0 "  ... and the sink got no plain copy"
kill -0 "$MPID" 2>/dev/null
is "$?" 0 "  ... kmsmilter still runs"
check "the MTA's retry of the same message" client m2
like "$T/out" '^1 a/.*b' "  ... is encrypted"
wait_for 10 copies_are m2 1
is "$(copies m2)" 1 "  ... and its plain copy submitted once"

# 3. the MTA goes away after the changes, before the verdict: the copy is
# out and the MTA defers the message; its retry is not copied again
mk m4
check "the client closes before the verdict" client m4 --close-after-body
like "$T/out" "closed after .*b" "  ... after the encrypted body"
wait_for 10 copies_are m4 1
is "$(copies m4)" 1 "  ... the plain copy was submitted"
check "the MTA's retry of that message" client m4
like "$T/out" '^1 a/.*-.*b' "  ... is encrypted for r1, nocert removed"
wait_for 10 grep -q "plain copy of this message was submitted before: not submitted again" "$T/milter.log"
like "$T/milter.log" "plain copy of this message was submitted before: not submitted again" "  ... and its copy is not submitted again (logged)"
sleep 1
is "$(copies m4)" 1 "  ... one plain copy in all"
sed 's/^Message-ID: <m4\./Message-ID: <m4b./' "$T/m4.eml" >"$T/m4b.eml"
check "the same text under another Message-ID" client m4b
wait_for 10 copies_are m4 2
is "$(copies m4)" 2 "  ... is another message: its copy is submitted"

# 3. the submission server is down: deferred, nothing submitted
sed -i "s|^submit = .*|submit = smtp://127.0.0.1:$(free_port)|" "$CONF"
kill -HUP "$MPID"
wait_for 10 grep -q "configuration reloaded" "$T/milter.log"
mk m3
check "split with the submission server down" client m3
like "$T/out" '^1 (t|y/[^ ]* 4[0-9][0-9] )' "  ... the message is deferred (tempfail)"
like "$T/milter.log" "split: cannot submit the plain copy: .*message deferred" "  ... logged"
is "$(copies m3)" 0 "  ... nothing submitted"

kill -TERM "$MPID"; wait "$MPID"; rc=$?
is "$rc" 0 "kmsmilter exits 0 on SIGTERM"
unlike "$T/milter.log" "AddressSanitizer|runtime error|LeakSanitizer" "no sanitizer report in the milter log"
done_testing
