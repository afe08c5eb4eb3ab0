#!/bin/sh
# End to end through a real Postfix on loopback. A private Postfix instance
# (its own config, queue and data directories under $T, SMTP on a free
# 127.0.0.1 port, no chroot, nothing of /etc/postfix or port 25 touched)
# runs kmsmilter as its smtpd milter with milter_default_action = tempfail
# and delivers example.org to a maildir under $T. Through it go two unsigned
# messages (plain text, and a multipart the milter reads to its end) and an
# S/MIME signed one (made here with the openssl CLI by a test CA that is put
# on the vault's trust list). Delivered mail must be intact (same header
# lines in order, byte-identical body, signature still valid); the signer's
# certificate and capabilities must be harvested into the vault with the
# Postfix queue id in the milter's log; unsigned mail leaves nothing behind. With kmsmilter stopped Postfix must answer 4xx, which shows
# the milter really is in the path; restarted, it harvests the same message
# again to the same result.
. "$top_srcdir/tests/lib.sh"
. "$top_srcdir/tests/postfix.sh"

# maildir_has N: at least N messages delivered.
maildir_has() { [ "$(find "$T/mail/user/new" -type f 2>/dev/null | wc -l)" -ge "$1" ]; }
# exited PID: the child PID has exited (gone, or a zombie waiting for wait)
exited() { [ ! -r "/proc/$1/stat" ] || [ "$(sed 's/.*) //' "/proc/$1/stat" | cut -d' ' -f1)" = Z ]; }
# stop_milter: SIGTERM to kmsmilter, SIGKILL after 30 s; its exit status in rc
stop_milter() {
	kill -TERM "$MPID"
	wait_for 30 exited "$MPID" || { diag "kmsmilter ignored SIGTERM for 30 s"; kill -KILL "$MPID"; }
	wait "$MPID"; rc=$?
}
set -- $(python3 -c '
import socket
a, b = socket.socket(), socket.socket()
a.bind(("127.0.0.1", 0)); b.bind(("127.0.0.1", 0))
print(a.getsockname()[1], b.getsockname()[1])')
SMTPPORT=$1 MILTERPORT=$2
diag "SMTP on 127.0.0.1:$SMTPPORT, milter on 127.0.0.1:$MILTERPORT"

# --- vault -----------------------------------------------------------------
pg_start
CONF=$T/kms.conf
write_config "$CONF" "$(printf '[log]\nlevel = debug')"
sed -i "s|^socket = .*|socket = inet:$MILTERPORT@127.0.0.1|" "$CONF"
write_password "$T/pw" 'postfix end-to-end startup password'
check "kmsctl init creates the vault" "$KMSCTL" -c "$CONF" init --password-file "$T/pw"

# --- a test CA, a signer, and the messages -----------------------------------
cat >"$T/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
x509_extensions = ca
[dn]
CN = kmsmilter postfix-e2e test CA
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[signer]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = emailProtection
subjectAltName = email:signer@example.org
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
openssl req -x509 -config "$T/openssl.cnf" -newkey rsa:2048 -nodes -days 30 \
	-keyout "$T/ca.key" -out "$T/ca.pem" >"$T/openssl.log" 2>&1 || bail "cannot make the test CA"
openssl req -new -config "$T/openssl.cnf" -subj "/CN=Test Signer" -newkey rsa:2048 -nodes \
	-keyout "$T/signer.key" -out "$T/signer.csr" >>"$T/openssl.log" 2>&1 &&
openssl x509 -req -in "$T/signer.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -set_serial 2 -days 30 \
	-extfile "$T/openssl.cnf" -extensions signer -out "$T/signer.pem" >>"$T/openssl.log" 2>&1 ||
	bail "cannot make the signer certificate"
SIGNER_SHA=$(openssl x509 -in "$T/signer.pem" -outform DER | sha256sum | cut -d' ' -f1)

# The signed content: a multipart with a line that SMTP must dot-stuff.
cat >"$T/content" <<'EOF'
Content-Type: multipart/mixed; boundary="kms-e2e-inner"

--kms-e2e-inner
Content-Type: text/plain; charset=us-ascii

Hello from the Postfix end-to-end test.
. this line starts with a dot
..and this one with two

--kms-e2e-inner
Content-Type: text/plain; charset=us-ascii; name="note.txt"
Content-Disposition: attachment; filename="note.txt"

A second part.
--kms-e2e-inner--
EOF
openssl cms -sign -in "$T/content" -signer "$T/signer.pem" -inkey "$T/signer.key" \
	-out "$T/signed.mime" 2>>"$T/openssl.log" || bail "openssl cms -sign failed"
# openssl writes the signed part with CRLF and the rest with LF; a mailbox
# holds LF only, so the message sent is all LF (swaks sends CRLF on the wire).
{
	printf 'From: Test Signer <signer@example.org>\n'
	printf 'To: user@example.org\n'
	printf 'Subject: signed through Postfix\n'
	printf 'Date: %s\n' "$(LC_ALL=C date -R)"
	printf 'Message-ID: <e2e-signed.%s@example.org>\n' "$$"
	tr -d '\r' <"$T/signed.mime"
} >"$T/signed.eml"
check "the signed message verifies before it is sent" \
	openssl cms -verify -CAfile "$T/ca.pem" -in "$T/signed.eml" -out /dev/null
{
	printf 'From: someone@example.net\n'
	printf 'To: user@example.org\n'
	printf 'Subject: plain through Postfix\n'
	printf 'Date: %s\n' "$(LC_ALL=C date -R)"
	printf 'Message-ID: <e2e-plain.%s@example.org>\n' "$$"
	printf '\nJust text, no signature.\n'
} >"$T/plain.eml"
{
	printf 'From: someone@example.net\n'
	printf 'To: user@example.org\n'
	printf 'Subject: unsigned multipart through Postfix\n'
	printf 'Date: %s\n' "$(LC_ALL=C date -R)"
	printf 'Message-ID: <e2e-multi.%s@example.org>\n' "$$"
	printf 'MIME-Version: 1.0\n'
	cat "$T/content"
} >"$T/multi.eml"
sed 's/e2e-plain\./e2e-refused./' "$T/plain.eml" >"$T/refused.eml"

check "the test CA goes on the trust list" "$KMSCTL" -c "$CONF" ctl add "$T/ca.pem"

# --- kmsmilter, first: Postfix asks it about every connection, even a probe --
"$KMSMILTER" -c "$CONF" -f 2>"$T/milter.log" &
MPID=$!; bg_pids="$bg_pids $MPID"
wait_for 10 grep -q "listening on" "$T/milter.log"
like "$T/milter.log" "listening on inet:$MILTERPORT@127.0.0.1" "kmsmilter listens on 127.0.0.1:$MILTERPORT"

# --- a private Postfix -------------------------------------------------------
postfix_setup "$SMTPPORT" "$MILTERPORT" user@example.org

check "postfix check accepts the private configuration" "$POSTFIX" -c "$PF" check
is "$(cat "$T/out" "$T/err")" "" "and has nothing to warn about"
postfix_start
ok "postfix listens on 127.0.0.1:$SMTPPORT"

# send NAME: submit $T/NAME.eml through Postfix; swaks' transcript in $T/NAME.swaks.
# swaks appends CRLF.CRLF to the data as given, so a file ending in a newline
# would arrive with one empty line more: it gets the file without its last
# newline. (swaks also replaces %TOKENS% and a literal backslash-n in the
# data; the messages here have neither.)
send() {
	head -c -1 "$T/$1.eml" >"$T/$1.data"
	swaks --server 127.0.0.1 --port "$SMTPPORT" --helo client.example.net \
		--from sender@example.net --to user@example.org --timeout 60 \
		--data "@$T/$1.data" >"$T/$1.swaks" 2>&1
}
# queue_id MSGID: the Postfix queue id of the last message with MSGID, from
# Postfix's log (cleanup logs "QUEUEID: message-id=<MSGID>").
queue_id() {
	sed -n "s/^.* postfix\/cleanup\[[0-9]*\]: \([0-9A-Za-z]*\): message-id=<$1>.*/\1/p" "$T/postfix.log" | tail -1
}
# delivered MSGID: the maildir file(s) holding MSGID
delivered() { grep -l -F "Message-ID: <$1>" "$T"/mail/user/new/* 2>/dev/null; }
# body FILE: everything after the first empty line
body() { sed '1,/^$/d' "$1"; }
header() { sed '/^$/q' "$1" | sed '$d'; }

# --- unsigned messages: plain text, and a multipart the milter reads through --
n=0
for kind in plain multi; do
	n=$((n + 1))
	ID=e2e-$kind.$$@example.org
	check "swaks delivers the unsigned $kind message (250)" send $kind
	like "$T/$kind.swaks" "^<[-~]* +250 .*queued as" "Postfix queued it"
	wait_for 30 maildir_has $n
	delivered "$ID" >"$T/$kind.files"
	one_line "$T/$kind.files" "the unsigned $kind message is in the maildir"
	body "$T/$kind.eml" >"$T/$kind.body"
	body "$(head -1 "$T/$kind.files")" >"$T/delivered.body"
	check "its body arrived byte-identical" cmp "$T/$kind.body" "$T/delivered.body"
	wait_for 10 sh -c "grep -q 'message-id=<$ID>' '$T/postfix.log'"
	QID=$(queue_id "$ID")
	[ -n "$QID" ] && ok "Postfix logged its queue id ($QID)" || not_ok "Postfix logged its queue id"
	grep -F "${QID:-no queue id}: " "$T/milter.log" >"$T/$kind.milterlog"
	unlike "$T/$kind.milterlog" "(error|warning|critical|alert|emergency):" \
		"no error or warning in the milter's log for the unsigned $kind message"
	unlike "$T/$kind.milterlog" "signer|harvest" "and nothing harvested"
done
check "kmsctl cert list --json" "$KMSCTL" -c "$CONF" cert list --json
check "the unsigned messages left no certificate behind" python3 -c '
import json,sys; d=json.load(open(sys.argv[1])); assert [c for c in d if c["source"]=="harvested"]==[], d' "$T/out"

# --- the signed message ------------------------------------------------------
SIGNED_ID=e2e-signed.$$@example.org
check "swaks delivers the signed message (250)" send signed
like "$T/signed.swaks" "^<[-~]* +250 .*queued as" "Postfix queued the signed message"
wait_for 30 maildir_has 3
delivered "$SIGNED_ID" >"$T/signed.files"
one_line "$T/signed.files" "the signed message is in the maildir"
DELIVERED=$(head -1 "$T/signed.files")
body "$T/signed.eml" >"$T/sent.body"
body "$DELIVERED" >"$T/delivered.body"
check "the delivered body is byte-identical to the body sent" cmp "$T/sent.body" "$T/delivered.body"
header "$T/signed.eml" >"$T/sent.head"
header "$DELIVERED" >"$T/delivered.head"
tail -n "$(wc -l <"$T/sent.head")" "$T/delivered.head" >"$T/delivered.tail"
check "all header lines sent are still there, in order, after those Postfix prepended" \
	cmp "$T/sent.head" "$T/delivered.tail"
check "the delivered message still verifies with openssl cms" \
	openssl cms -verify -CAfile "$T/ca.pem" -in "$DELIVERED" -out /dev/null

wait_for 10 sh -c "grep -q 'message-id=<$SIGNED_ID>' '$T/postfix.log'"
SIGNED_QID=$(queue_id "$SIGNED_ID")
[ -n "$SIGNED_QID" ] && ok "Postfix logged the signed message's queue id ($SIGNED_QID)" ||
	not_ok "Postfix logged the signed message's queue id"
like "$T/signed.swaks" "queued as ${SIGNED_QID:-no queue id}\$" "it is the queue id swaks was told"
like "$T/milter.log" "${SIGNED_QID:-no queue id}: signer signer@example\.org certificate $(echo "$SIGNER_SHA" | cut -c1-16): trusted" \
	"kmsmilter logged the trusted signer under the Postfix queue id"
grep -F "${SIGNED_QID:-no queue id}: " "$T/milter.log" >"$T/signed.milterlog"
unlike "$T/signed.milterlog" "(error|warning|critical|alert|emergency):" "no error or warning in the milter's log for the signed message"

check "kmsctl cert list --json" "$KMSCTL" -c "$CONF" cert list --json
cp "$T/out" "$T/certs1.json"
check "the signer's certificate was harvested: trusted, its address, capabilities from aes256-cbc" python3 -c '
import json,sys
d=json.load(open(sys.argv[1])); sha=sys.argv[2]
h=[c for c in d if c["source"]=="harvested"]
assert len(h)==1, h
c=h[0]
assert c["sha256"]==sha, (c["sha256"], sha)
assert c["status"]=="trusted", c
assert c["addresses"]==["signer@example.org"], c
caps=c["capabilities"]
assert isinstance(caps, list) and caps and caps[0]=="aes256-cbc", caps' "$T/certs1.json" "$SIGNER_SHA"
# What the signature announces, read independently from OpenSSL's printout of
# the delivered message's CMS: the SMIMECapabilities OIDs in order, RC2 with
# its key size (a hex INTEGER after the OID), names as kmsctl writes them.
openssl cms -cmsout -print -in "$DELIVERED" >"$T/cms.txt" 2>&1
check "they are the capabilities the signature announces, in its order" python3 -c '
import json,re,sys
t=open(sys.argv[2]).read()
sec=t.split("S/MIME Capabilities",1)[1].split("signatureAlgorithm",1)[0]
want=[]
for m in re.finditer(r"d=2 .*?(OBJECT|INTEGER) +:(\S+)", sec):
    kind,val=m.groups()
    if kind=="OBJECT":
        want.append(re.sub(r"^aes-(\d+)", r"aes\1", val))
    elif want and want[-1]=="rc2-cbc":
        want[-1]="rc2-cbc-%d" % int(val,16)
got=[c for c in json.load(open(sys.argv[1])) if c["source"]=="harvested"][0]["capabilities"]
assert want and got==want, (got, want)' "$T/certs1.json" "$T/cms.txt"

# --- milter down: Postfix must tempfail ----------------------------------------
stop_milter
is "$rc" 0 "kmsmilter stops on SIGTERM"
wait_for 10 sh -c "! python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", $MILTERPORT), 1)'"
COUNT=$(find "$T/mail/user/new" -type f | wc -l)
PFLINES=$(wc -l <"$T/postfix.log")
send refused; rc=$?
[ "$rc" != 0 ] && ok "with kmsmilter down swaks fails (exit $rc)" || not_ok "with kmsmilter down swaks fails"
like "$T/refused.swaks" "^<\*\* +4[0-9][0-9] " "Postfix answers 4xx (milter_default_action = tempfail)"
unlike "$T/refused.swaks" "^<\*\* +5[0-9][0-9] " "and never 5xx"
# Postfix's own words, among the log lines written since that send
pflog_since() { tail -n +$((PFLINES + 1)) "$T/postfix.log" >"$T/postfix.new"; grep -q "$1" "$T/postfix.new"; }
wait_for 10 pflog_since "milter-reject"
like "$T/postfix.new" "connect to Milter service inet:127\.0\.0\.1:$MILTERPORT: Connection refused" \
	"Postfix logged that it could not reach the milter"
like "$T/postfix.new" "milter-reject: .* 451 4\.7\.1 " "and that it answered 451 because of it"
sleep 1
is "$(find "$T/mail/user/new" -type f | wc -l)" "$COUNT" "nothing was delivered while the milter was down"

# --- restarted, the same message is harvested again to the same result ---------
"$KMSMILTER" -c "$CONF" -f 2>"$T/milter2.log" &
MPID=$!; bg_pids="$bg_pids $MPID"
wait_for 10 grep -q "listening on" "$T/milter2.log"
like "$T/milter2.log" "listening on inet:$MILTERPORT@127.0.0.1" "kmsmilter restarted"
check "swaks delivers the signed message again (250)" send signed
wait_for 30 maildir_has $((COUNT + 1))
is "$(delivered "$SIGNED_ID" | wc -l)" 2 "the second copy is in the maildir"
wait_for 10 sh -c "[ \$(grep -c 'message-id=<$SIGNED_ID>' '$T/postfix.log') -ge 2 ]"
SIGNED_QID2=$(queue_id "$SIGNED_ID")
[ -n "$SIGNED_QID2" ] && [ "$SIGNED_QID2" != "$SIGNED_QID" ] &&
	ok "the second copy has its own queue id ($SIGNED_QID2)" || not_ok "the second copy has its own queue id"
like "$T/milter2.log" "${SIGNED_QID2:-no queue id}: signer signer@example\.org certificate $(echo "$SIGNER_SHA" | cut -c1-16): trusted" \
	"the restarted kmsmilter logged the signer under the new queue id"
bad=
for f in $(delivered "$SIGNED_ID"); do
	body "$f" | cmp -s "$T/sent.body" - || bad="$bad $f"
done
is "$bad" "" "both delivered copies have the body sent"
check "kmsctl cert list --json" "$KMSCTL" -c "$CONF" cert list --json
cp "$T/out" "$T/certs2.json"
check "the second harvest: still one certificate, same capabilities, seen again" python3 -c '
import json,sys
one=[c for c in json.load(open(sys.argv[1])) if c["source"]=="harvested"]
two=[c for c in json.load(open(sys.argv[2])) if c["source"]=="harvested"]
assert len(one)==1 and len(two)==1, (one, two)
a,b=one[0],two[0]
for k in ("id","sha256","status","addresses","capabilities","first_seen"):
    assert a[k]==b[k], (k, a[k], b[k])
assert b["last_seen"]>a["last_seen"], (a["last_seen"], b["last_seen"])' "$T/certs1.json" "$T/certs2.json"

stop_milter
is "$rc" 0 "the restarted kmsmilter stops on SIGTERM"
unlike "$T/postfix.log" "(fatal|panic):" "no fatal error in Postfix's log"
grep -v "warning: connect to Milter service inet:127.0.0.1:$MILTERPORT: Connection refused" \
	"$T/postfix.log" >"$T/postfix.other"
unlike "$T/postfix.other" "(warning|error):" "no warning in Postfix's log but the refused milter connections"
cat "$T/milter.log" "$T/milter2.log" | grep -v "warning: running as root" >"$T/milter.all"
unlike "$T/milter.all" "(error|warning|critical|alert|emergency):" "no error or warning anywhere in kmsmilter's log"
unlike "$T/milter.all" "Sanitizer|runtime error:" "no sanitizer report from kmsmilter (ASan builds)"
done_testing
