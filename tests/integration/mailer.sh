#!/bin/sh
# SMTP submission (common/mailer.c) through tests/mailtool to Postfix's
# smtp-sink: what arrives has the right envelope and headers, the body and
# attachment come back byte for byte, lines are CRLF and short, non-ASCII
# subjects are RFC 2047 encoded; header injection is refused before
# anything is sent; an unreachable or refusing server gives one line that
# names it (without credentials). Mails through a kept connection
# (mailtool --count) share one TCP connection; one the server closed is
# replaced, and a mail is never sent twice. No database.
. "$top_srcdir/tests/lib.sh"

MAILTOOL="$top_builddir/tests/mailtool"
SINK=/usr/sbin/smtp-sink
[ -x "$SINK" ] || bail "smtp-sink not found ($SINK): install postfix (contrib/install-deps.sh does)"
[ -x "$MAILTOOL" ] || bail "$MAILTOOL not built (make check builds it)"
command -v python3 >/dev/null || bail "python3 not found"

# dump_of MSGID: the dump file holding MSGID, waiting up to 5 s.
dump_of() {
	local i=0 f
	while [ $i -lt 50 ]; do
		f=$(grep -l -F "Message-ID: $1" "$T"/dump/* 2>/dev/null | head -1)
		[ -n "$f" ] && { echo "$f"; return 0; }
		sleep 0.1
		i=$((i + 1))
	done
	echo "$T/dump/none-with-$1"
	return 1
}

dumps() { ls "$T/dump" | wc -l; }

cat >"$T/check.py" <<'EOF'
# check.py WHAT ARGS...: one property of a message dumped by smtp-sink
# (DUMP) or saved by mailtool --save (SAVED). Exit 1 with the reason.
import datetime, email, email.policy, email.utils, os, sys

def arg(i):
    return os.fsencode(sys.argv[i]).decode("utf-8")

def fail(why):
    print(why)
    sys.exit(1)

def dump(path):
    """smtp-sink's envelope records, and the message as received."""
    lines = open(path, "rb").read().split(b"\n")
    env, i = {}, 0
    while not lines[i].startswith(b"Received:"):
        k, v = lines[i].decode().split(": ", 1)
        env.setdefault(k, []).append(v)
        i += 1
    i += 1
    while lines[i].startswith(b"\t"):
        i += 1
    return env, b"\n".join(lines[i:])

def message(path):
    return email.message_from_bytes(dump(path)[1], policy=email.policy.default)

what = sys.argv[1]
if what == "envelope":
    env, _ = dump(arg(2))
    if env.get("X-Mail-Args") != ["<%s>" % arg(3)] or env.get("X-Rcpt-Args") != ["<%s>" % arg(4)]:
        fail("envelope %r" % env)
elif what == "same":
    # the sink stores LF line ends and adds an empty line
    _, got = dump(arg(2))
    saved = open(arg(3), "rb").read()
    if got != saved.replace(b"\r\n", b"\n") + b"\n":
        fail("received message differs from the one built")
elif what == "lines":
    data = open(arg(2), "rb").read()
    if not data.endswith(b"\r\n") or data.count(b"\n") != data.count(b"\r\n") \
            or data.count(b"\r") != data.count(b"\r\n"):
        fail("not all line ends are CRLF")
    lines = data.split(b"\r\n")
    if max(len(l) for l in lines) > 998:
        fail("line longer than 998 octets")
    if any(b >= 0x80 for b in data):
        fail("8-bit octets in the message")
    head = lines[:lines.index(b"")]
    if max(len(l) for l in head) > 78:
        fail("header line longer than 78: %r" % max(head, key=len))
elif what == "headers":
    m = message(arg(2))
    want = {"From": arg(3), "To": arg(4), "Subject": arg(5), "Message-ID": arg(6),
            "MIME-Version": "1.0", "Auto-Submitted": "auto-generated"}
    if len(sys.argv) > 7:
        want["Reply-To"] = arg(7)
    for k, v in want.items():
        if len(m.get_all(k, [])) != 1 or str(m[k]) != v:
            fail("%s: got %r, want %r" % (k, m.get_all(k), v))
    date = email.utils.parsedate_to_datetime(m["Date"])
    if abs((datetime.datetime.now(datetime.timezone.utc) - date).total_seconds()) > 300:
        fail("Date %r is not now" % m["Date"])
    if m.get_content_type() != "multipart/mixed" or m.defects:
        fail("content type %s, defects %r" % (m.get_content_type(), m.defects))
elif what == "raw-subject":
    _, raw = dump(arg(2))
    head = raw.split(b"\n\n", 1)[0].decode("ascii")
    subj = [l for l in head.split("\n") if l.startswith("Subject:")][0]
    if arg(3) not in subj:
        fail("Subject line %r lacks %r" % (subj, arg(3)))
elif what == "body":
    parts = list(message(arg(2)).iter_parts())
    text = parts[0]
    want = open(arg(3), "rb").read().decode("utf-8").replace("\r\n", "\n")
    if text.get_content_type() != "text/plain" or text.get_content_charset() != "utf-8":
        fail("text part is %s; charset=%s" % (text.get_content_type(), text.get_content_charset()))
    if text["Content-Transfer-Encoding"] != arg(4):
        fail("text part encoding %s, want %s" % (text["Content-Transfer-Encoding"], arg(4)))
    if text.get_content().replace("\r\n", "\n") != want:
        fail("body differs: %r" % text.get_content()[:200])
    if len(parts) != int(arg(5)):
        fail("%d parts, want %s" % (len(parts), arg(5)))
elif what == "attachment":
    a = list(message(arg(2)).iter_parts())[1]
    if a.get_content_type() != arg(4) or a.get_filename() != arg(5) \
            or a.get_content_disposition() != "attachment" \
            or a["Content-Transfer-Encoding"] != "base64":
        fail("attachment headers: %s" % a.items())
    if a.get_payload(decode=True) != open(arg(3), "rb").read():
        fail("attachment bytes differ")
else:
    fail("unknown check " + what)
EOF
ck() { python3 "$T/check.py" "$@"; }

start_sink dump
SINKPORT=$PORT
URL="smtp://127.0.0.1:$SINKPORT"

# --- a mail with an attachment --------------------------------------------
printf 'Hello Alice,\n\nyour key is attached.\n.\n.dot at the start\nFrom here\ntrailing blanks   \n\ttab\nGr\303\274\303\237e \342\234\223\n' >"$T/body"
python3 -c 'print("long " * 300)' >>"$T/body"
printf 'Token: ABCDE-FGHIJ-KLMNO-PQRST-UVWXY\nno final newline' >>"$T/body"
head -c 3000 /dev/urandom >"$T/alice.p12"
printf '\000\r\n\r\n.\r\n' >>"$T/alice.p12"
check "mail with attachment is sent" "$MAILTOOL" --url "$URL" --from kms@example.org \
	--to alice@example.org --subject "Your encryption key" --body-file "$T/body" \
	--attach "$T/alice.p12" --attach-type application/x-pkcs12 --attach-name alice.p12 \
	--header "Reply-To: kms-enroll@example.org" --save "$T/saved1"
like "$T/out" '^<[0-9a-f]{32}@example\.org>$' "Message-ID printed, random at the sender's domain"
id1=$(cat "$T/out")
d1=$(dump_of "$id1")
check "the sink received it" test -f "$d1"
check "envelope sender and recipient" ck envelope "$d1" kms@example.org alice@example.org
check "what arrived is what was built" ck same "$d1" "$T/saved1"
check "all lines CRLF, none over 998, headers within 78, 7-bit" ck lines "$T/saved1"
check "From, To, Subject, Date, Message-ID, MIME-Version, Reply-To" \
	ck headers "$d1" kms@example.org alice@example.org "Your encryption key" "$id1" kms-enroll@example.org
check "body text exact (quoted-printable)" ck body "$d1" "$T/body" quoted-printable 2
check "attachment decodes to the same bytes" ck attachment "$d1" "$T/alice.p12" application/x-pkcs12 alice.p12

# --- plain ASCII, no attachment ---------------------------------------------
printf 'Reply to this mail.\n\nToken: ABCDE-FGHIJ-KLMNO-PQRST-UVWXY\n' >"$T/ascii"
long="Enrollment for alice@example.org: reply to this mail to receive your encryption key and certificate"
check "ASCII mail without attachment is sent" "$MAILTOOL" --url "$URL" --from kms@example.org \
	--to alice@example.org --subject "$long" --body-file "$T/ascii" --save "$T/saved2"
id2=$(cat "$T/out")
d2=$(dump_of "$id2")
check "ASCII body goes 7bit and exact, one part" ck body "$d2" "$T/ascii" 7bit 1
check "long ASCII subject folded and read back" ck headers "$d2" kms@example.org alice@example.org "$long" "$id2"
check "folded message lines CRLF and short" ck lines "$T/saved2"
check "plain ASCII subject is not encoded" ck raw-subject "$d2" "Subject: Enrollment for"

# --- non-ASCII subject -------------------------------------------------------
utf="Schl$(printf '\303\274')ssel f$(printf '\303\274')r Alice $(printf '\342\234\223') $(printf '\346\227\245\346\234\254\350\252\236') - ein recht langer Betreff, der mehrere encoded words braucht"
check "non-ASCII subject is sent" "$MAILTOOL" --url "$URL" --from kms@example.org \
	--to alice@example.org --subject "$utf" --body-file "$T/ascii" --save "$T/saved3"
id3=$(cat "$T/out")
d3=$(dump_of "$id3")
check "it arrives RFC 2047 encoded" ck raw-subject "$d3" "=?UTF-8?B?"
check "and decodes back to the same text" ck headers "$d3" kms@example.org alice@example.org "$utf" "$id3"
check "encoded subject lines within 78" ck lines "$T/saved3"
check "ASCII subject that looks encoded is encoded" "$MAILTOOL" --url "$URL" --from kms@example.org \
	--to alice@example.org --subject "=?UTF-8?B?SGk=?= literally" --body-file "$T/ascii"
id4=$(cat "$T/out")
check "and reads back literally" ck headers "$(dump_of "$id4")" kms@example.org alice@example.org \
	"=?UTF-8?B?SGk=?= literally" "$id4"

# --- header injection: refused, nothing sent ---------------------------------
before=$(dumps)
crlf=$(printf '\r\nBcc: mallory@example.org')
expect_exit 1 "CR LF in the subject is refused" "$MAILTOOL" --url "$URL" --from kms@example.org \
	--to alice@example.org --subject "Hello${crlf}" --body-file "$T/ascii"
like "$T/err" "^mailtool: line break in the subject refused \(header injection\)$" "and says why"
one_line "$T/err" "in one line"
expect_exit 1 "LF alone in the subject is refused" "$MAILTOOL" --url "$URL" --from kms@example.org \
	--to alice@example.org --subject "$(printf 'Hello\nBcc: mallory@example.org')" --body-file "$T/ascii"
expect_exit 1 "CR LF in the recipient is refused" "$MAILTOOL" --url "$URL" --from kms@example.org \
	--to "alice@example.org${crlf}" --subject "Hello" --body-file "$T/ascii"
like "$T/err" "line break in the To address .* refused \(header injection\)" "and names the To address"
one_line "$T/err" "in one line"
expect_exit 1 "CR LF in the sender is refused" "$MAILTOOL" --url "$URL" --from "kms@example.org${crlf}" \
	--to alice@example.org --subject "Hello" --body-file "$T/ascii"
expect_exit 1 "an injected line in an extra header is refused" "$MAILTOOL" --url "$URL" \
	--from kms@example.org --to alice@example.org --subject "Hello" --body-file "$T/ascii" \
	--header "Reply-To: x@example.org${crlf}"
expect_exit 1 "an extra header replacing To is refused" "$MAILTOOL" --url "$URL" \
	--from kms@example.org --to alice@example.org --subject "Hello" --body-file "$T/ascii" \
	--header "To: mallory@example.org"
like "$T/err" 'extra header "To" refused' "and says which"
expect_exit 1 "CR LF in the attachment name is refused" "$MAILTOOL" --url "$URL" \
	--from kms@example.org --to alice@example.org --subject "Hello" --body-file "$T/ascii" \
	--attach "$T/alice.p12" --attach-name "a.p12${crlf}"
expect_exit 1 "a quote in the attachment name is refused" "$MAILTOOL" --url "$URL" \
	--from kms@example.org --to alice@example.org --subject "Hello" --body-file "$T/ascii" \
	--attach "$T/alice.p12" --attach-name 'a".p12'
expect_exit 1 "a display name as address is refused" "$MAILTOOL" --url "$URL" \
	--from kms@example.org --to "Alice <alice@example.org>" --subject "Hello" --body-file "$T/ascii"
printf 'bad \377 byte\n' >"$T/latin1"
expect_exit 1 "a body that is not UTF-8 is refused" "$MAILTOOL" --url "$URL" \
	--from kms@example.org --to alice@example.org --subject "Hello" --body-file "$T/latin1"
check "a later good mail still goes through" "$MAILTOOL" --url "$URL" --from kms@example.org \
	--to alice@example.org --subject "after" --body-file "$T/ascii"
dump_of "$(cat "$T/out")" >/dev/null
is "$(dumps)" "$((before + 1))" "nothing was sent for the refused mails"
cat "$T"/dump/* >"$T/all-dumps"
unlike "$T/all-dumps" "mallory" "no injected recipient anywhere"

# --- several mails through one kept connection -----------------------------
before=$(dumps)
check "3 mails through one kept connection are sent" "$MAILTOOL" --url "$URL" \
	--from kms@example.org --to alice@example.org --subject "kept" --body-file "$T/ascii" \
	--count 3
is "$(grep -c '^<' "$T/out")" 3 "each one reported"
id5=$(head -1 "$T/out")
i=0
while [ "$(dumps)" -lt $((before + 3)) ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
is "$(dumps)" "$((before + 3))" "all 3 arrived at smtp-sink"
is "$(grep -l -F "Message-ID: $id5" "$T"/dump/* | wc -l)" 3 "all 3 are that mail"

# kept MODE DESC: 3 mails through one kept connection to smtp-log.py in MODE.
kept() {
	start_smtp_log "$1"
	check "$2" "$MAILTOOL" --url "smtp://127.0.0.1:$PORT" --from kms@example.org \
		--to alice@example.org --subject "kept $1" --body-file "$T/ascii" --count 3 \
		--save "$T/saved-$1"
}

kept keep "3 mails through one kept connection (counting server)"
is "$(events keep connect)" 1 "over one TCP connection"
is "$(events keep data)" 3 "in 3 transactions"
is "$(events keep quit)" 1 "closed with QUIT at the end"
check "the third arrived byte for byte" cmp "$T/keep/msg.1.3" "$T/saved-keep"

kept close "a kept connection the server closed after each mail is replaced"
is "$(events close data)" 3 "each mail arrived once"
is "$(events close connect)" 3 "on a new connection each"

kept drop-mail "a kept connection found dead only at MAIL is replaced"
is "$(events drop-mail dropped)" 2 "(the server dropped it twice)"
is "$(events drop-mail data)" 3 "each mail arrived exactly once"
is "$(events drop-mail connect)" 3 "the one lost at MAIL sent again on a new connection"
check "that one byte for byte" cmp "$T/drop-mail/msg.3.1" "$T/saved-drop-mail"

start_smtp_log drop-data
expect_exit 1 "a connection lost after the message was sent fails" "$MAILTOOL" \
	--url "smtp://127.0.0.1:$PORT" --from kms@example.org --to alice@example.org \
	--subject "kept drop-data" --body-file "$T/ascii" --count 3
like "$T/err" "^mailtool: mail 2 of 3: cannot send mail via smtp://127\.0\.0\.1:$PORT: " \
	"at the second mail, naming the server"
one_line "$T/err" "in one line"
is "$(events drop-data lost)" 1 "(the server took it and closed)"
is "$(events drop-data connect)" 1 "not sent again: the server may have it"

# --- unreachable and refusing servers ----------------------------------------
closed=$(free_port)
expect_exit 1 "a closed port fails" "$MAILTOOL" --url "smtp://127.0.0.1:$closed" \
	--from kms@example.org --to alice@example.org --subject "Hello" --body-file "$T/ascii"
like "$T/err" "^mailtool: cannot send mail via smtp://127\.0\.0\.1:$closed: " "naming the URL"
one_line "$T/err" "in one line"
expect_exit 1 "credentials in the URL" "$MAILTOOL" --url "smtp://kmsuser:s3cretpw@127.0.0.1:$closed" \
	--from kms@example.org --to alice@example.org --subject "Hello" --body-file "$T/ascii"
like "$T/err" "via smtp://127\.0\.0\.1:$closed: " "are left out of the message"
unlike "$T/err" "s3cretpw|kmsuser" "never shown"
expect_exit 1 "a password holding / and @" "$MAILTOOL" --url "smtp://kmsuser:s3c/ret@pw@127.0.0.1:$closed" \
	--from kms@example.org --to alice@example.org --subject "Hello" --body-file "$T/ascii"
unlike "$T/err" "s3c|ret|kmsuser" "is never shown either"
one_line "$T/err" "in one line"
expect_exit 1 "a non-SMTP URL is refused" "$MAILTOOL" --url "file:///etc/passwd" \
	--from kms@example.org --to alice@example.org --subject "Hello" --body-file "$T/ascii"
like "$T/err" "want smtp://host:port" "and says what is wanted"
start_sink refuse -f RCPT
expect_exit 1 "a refused recipient fails" "$MAILTOOL" --url "smtp://127.0.0.1:$PORT" \
	--from kms@example.org --to alice@example.org --subject "Hello" --body-file "$T/ascii"
like "$T/err" "cannot send mail via smtp://127\.0\.0\.1:$PORT: .*\(SMTP 5[0-9][0-9]\)$" \
	"naming the server and the SMTP reply code"
one_line "$T/err" "in one line"

done_testing
