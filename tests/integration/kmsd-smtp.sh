#!/bin/sh
# kmsd's SMTP connection to the MTA: the mails of one burst of requests
# share one connection (no connect, EHLO and QUIT per mail), kmsd closes it
# with QUIT once its queue is empty (an idle kmsd holds no smtpd process of
# the MTA), and the next burst opens a new one. The server is
# tests/smtp-log.py, which logs every connection and transaction.
. "$top_srcdir/tests/lib.sh"
command -v python3 >/dev/null || bail "python3 not found"
pg_start
start_smtp_log keep
CONF=$T/kms.conf
write_password "$T/pw" 'kmsd smtp test password'
write_config "$CONF" "$(printf '[mail]\nsubmit = smtp://127.0.0.1:%s\nfrom = kms@example.org\n' "$PORT")"
kmsd_config "$CONF" "$T/pw"
"$KMSCTL" -c "$CONF" init --password-file "$T/pw" >/dev/null || bail "init failed"

# events_reached WHAT N: the server logged N WHAT events or more
events_reached() { [ "$(events keep "$1")" -ge "$2" ]; }

seq 1 5 | sed 's/^/u/; s/$/@example.org/' >"$T/users"
check "enroll 5 users while kmsd is down (5 token mails wait)" "$KMSCTL" -c "$CONF" enroll --file "$T/users"
"$KMSD" -c "$CONF" -f 2>"$T/kmsd.log" &
KPID=$!; bg_pids="$bg_pids $KPID"
wait_for 20 events_reached quit 1
is "$(events keep data)" 5 "kmsd sends the 5 token mails"
is "$(events keep connect)" 1 "over one connection"
is "$(grep -c '^1 data$' "$T/keep/log")" 5 "  ... all 5 on connection 1"
is "$(events keep quit)" 1 "and says QUIT once the queue is empty"
is "$(grep -c '^1 mail$' "$T/keep/log")" 5 "one MAIL transaction per mail"
for n in 1 2 3 4 5; do
	grep -l -i "^To: u$n@example.org" "$T"/keep/msg.* >/dev/null 2>&1 || not_ok "u$n's mail arrived"
done
is "$(grep -l -i '^To: u[1-5]@example.org' "$T"/keep/msg.* | wc -l)" 5 "each user got one mail"

check "enroll one more user later" "$KMSCTL" -c "$CONF" enroll u6@example.org
wait_for 20 events_reached quit 2
is "$(events keep data)" 6 "the sixth mail is sent"
is "$(events keep connect)" 2 "on a new connection (the first was closed when kmsd went idle)"
is "$(grep -c '^2 data$' "$T/keep/log")" 1 "  ... connection 2 carried it"
is "$(events keep quit)" 2 "and is closed again"

kill -TERM "$KPID"; wait "$KPID"; rc=$?
is "$rc" 0 "kmsd stops cleanly"
unlike "$T/kmsd.log" "AddressSanitizer|runtime error|LeakSanitizer" "no sanitizer report in kmsd's log"
done_testing
