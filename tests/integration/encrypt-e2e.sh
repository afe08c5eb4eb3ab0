#!/bin/sh
# Outbound encryption end to end through a real Postfix: four peers
# (tests/smime-peers.sh: the OpenSSL-library signer announcing AES-GCM and
# RSAES-OAEP, openssl cms, NSS cmsutil, gpgsm) sign messages that kmsmilter
# harvests; then boss@example.org writes to them through Postfix with
# kmsmilter as its milter, and each peer decrypts what its maildir
# received with its own implementation. Shown: the algorithm and key
# transport chosen per combination (GCM+OAEP alone; CBC and PKCS#1 v1.5
# for NSS; one policy and one certificate statement for a message to
# four), trigger header and subject tag removed, the sender's own
# certificate as a recipient (a revoked one never), an already encrypted
# message not encrypted again, required with a missing certificate -> 550
# naming the address, mixed = split -> an encrypted and a plain delivery
# and no loop, mixed = plain and reject.
. "$top_srcdir/tests/lib.sh"
. "$top_srcdir/tests/postfix.sh"
command -v miltertest >/dev/null || bail "miltertest not installed (Debian: miltertest)"
for t in openssl certutil pk12util cmsutil gpgsm gpgconf python3 base64; do
	command -v "$t" >/dev/null || bail "$t not installed"
done
. "$top_srcdir/tests/smime-peers.sh"
extra_cleanup="postfix_stop; peers_cleanup"

pg_start
CONF=$T/kms.conf
SMTPPORT=$(free_port); MILTERPORT=$(free_port)
write_config "$CONF" "$(printf '[mail]\nsubmit = smtp://127.0.0.1:%s\nfrom = kms@example.org' "$SMTPPORT")"
sed -i "s|^socket = .*|socket = inet:$MILTERPORT@127.0.0.1\ndsn = host=$PGSOCK dbname=kms user=kms_milter\ntrust_refresh = 1s\nsystem_trust = no\nseen_refresh = 0|" "$CONF"
write_password "$T/pw" 'encrypt test password'
"$KMSCTL" -c "$CONF" init --password-file "$T/pw" >/dev/null || bail "init failed"
peers_make user1 user2

# --- harvest the peers' signed messages -----------------------------------------
check "the test CA goes into the trust list" "$KMSCTL" -c "$CONF" ctl add "$P/ca.pem"
start_milter "$CONF" "$T/milter.log"
grep -q "listening on" "$T/milter.log" || bail "kmsmilter does not start: $(cat "$T/milter.log")"
for n in gcm nss cms gpg; do
	miltertest -D sock="inet:$MILTERPORT@127.0.0.1" -D file="$P/$n.eml" -s "$top_srcdir/tests/milter-send.lua" \
		>"$T/mt.out" 2>&1 || bail "harvesting $n failed: $(cat "$T/mt.out")"
done
is "$(psql_kms "SELECT count(DISTINCT lower(address)) FROM capabilities")" 4 "the four peers' capabilities are in the vault"

postfix_setup "$SMTPPORT" "$MILTERPORT" boss@example.org gcm@partner.test nss@partner.test cms@partner.test \
	gpg@partner.test nocert@partner.test
cat >>"$PF/main.cf" <<EOF
virtual_mailbox_domains = example.org, partner.test
message_size_limit = 40000000
EOF
postfix_start

# the sender's organisation prefers AES-GCM
check "policy: example.org prefers GCM" "$KMSCTL" -c "$CONF" policy set --domain example.org \
	algorithms=aes256-gcm,aes128-gcm,aes256-cbc,aes128-cbc

# mk NAME SUBJECT [HEADER-LINE]: a plain message from boss@ into $T/NAME.data
mk() {
	{
		printf 'From: Boss <boss@example.org>\r\nTo: partners@partner.test\r\nSubject: %s\r\n' "$2"
		printf 'Date: %s\r\nMessage-ID: <%s.%s@example.org>\r\n' "$(LC_ALL=C date -R)" "$1" "$$"
		[ -n "${3:-}" ] && printf '%s\r\n' "$3"
		printf 'MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n'
		printf 'Secret plan number %s.\r\nLine two.\r\n' "$1"
	} >"$T/$1.data"
}
# send NAME RCPTS [FROM]: swaks' transcript in $T/NAME.swaks
send() {
	swaks --server 127.0.0.1 --port "$SMTPPORT" --helo client.example.org --from "${3:-boss@example.org}" \
		--to "$2" --timeout 60 --data "@$T/$1.data" >"$T/$1.swaks" 2>&1
}
newest() { ls -t "$T/mail/$1/new"/* 2>/dev/null | head -1; }
has_mails() { [ "$(maildir_count "$1")" -ge "$2" ]; }
# got USER N: wait for USER's Nth delivery, the newest then in $T/got
got() {
	wait_for 30 has_mails "$1" "$2" || { not_ok "no delivery #$2 to $1"; cat "$T/postfix.log" | tail -20; return 1; }
	cp "$(newest "$1")" "$T/got"
}
# hdr NAME FILE: the header's value (first occurrence)
hdr() { python3 -c 'import email,sys; from email import policy
m=email.message_from_binary_file(open(sys.argv[2],"rb"),policy=policy.compat32); v=m.get(sys.argv[1]); print("" if v is None else " ".join(v.split()))' "$1" "$2"; }
# kt FILE: the key transport of each recipientInfo ("oaep" or "pkcs1"), sorted
kt() { peer_der "$1" "$T/kt.der" && openssl cms -cmsout -inform DER -in "$T/kt.der" -print 2>/dev/null |
	sed -n 's/.*keyEncryptionAlgorithm:.*//; s/^ *algorithm: \(rsaesOaep\|rsaEncryption\) .*/\1/p' |
	sed 's/rsaesOaep/oaep/; s/rsaEncryption/pkcs1/' | sort | tr '\n' ' ' | sed 's/ $//'; }

# --- 1. the GCM+OAEP peer alone, trigger header -----------------------------------
mk m1 "quarterly plan" "X-KMS-Encrypt: yes"
send m1 gcm@partner.test
like "$T/m1.swaks" "^<[-~]* +250 " "trigger header: accepted by Postfix"
if got gcm 1; then
	like "$T/got" "^Content-Type: application/pkcs7-mime; .*smime-type=authEnveloped-data" "  ... application/pkcs7-mime authEnveloped-data"
	is "$(hdr X-KMS-Info "$T/got")" "encrypted aes256-gcm for 1 recipient" "  ... X-KMS-Info: encrypted aes256-gcm for 1 recipient"
	unlike "$T/got" "^X-KMS-Encrypt:" "  ... the trigger header is removed"
	unlike "$T/got" "Secret plan" "  ... no plaintext in the delivered message"
	is "$(grep -c '^MIME-Version:' "$T/got")" 1 "  ... one MIME-Version header"
	like "$T/got" "^Subject: quarterly plan" "  ... routing headers kept"
	is "$(kt "$T/got")" "oaep" "  ... RSAES-OAEP for the peer that announced it"
	check "  ... the OpenSSL peer decrypts it (openssl cms -decrypt)" peer_decrypt gcm "$T/got" "$T/m1.out"
	like "$T/m1.out" "^Secret plan number m1\." "  ... to the original text"
	like "$T/m1.out" "^Content-Type: text/plain; charset=us-ascii" "  ... with its content headers inside"
fi

# --- 2. + NSS, subject tag ------------------------------------------------------------
mk m2 "[secure] merger details"
send m2 gcm@partner.test,nss@partner.test
like "$T/m2.swaks" "^<[-~]* +250 " "subject tag, GCM + NSS peers: accepted"
if got nss 1 && cp "$T/got" "$T/m2.nss" && got gcm 2; then
	cmp -s "$T/got" "$T/m2.nss" || true
	is "$(hdr X-KMS-Info "$T/m2.nss")" "encrypted aes256-cbc for 2 recipients" "  ... aes256-cbc (NSS cannot read GCM) for 2 recipients"
	like "$T/m2.nss" "^Content-Type: application/pkcs7-mime; .*smime-type=enveloped-data" "  ... enveloped-data"
	is "$(hdr Subject "$T/m2.nss")" "merger details" "  ... the subject tag is cut from Subject"
	is "$(kt "$T/m2.nss")" "oaep pkcs1" "  ... OAEP for the GCM peer, PKCS#1 v1.5 for NSS"
	check "  ... NSS decrypts it (cmsutil -D)" peer_decrypt nss "$T/m2.nss" "$T/m2.out"
	like "$T/m2.out" "^Secret plan number m2\." "  ... to the original text"
	check "  ... the OpenSSL peer decrypts its copy" peer_decrypt gcm "$T/got" "$T/m2g.out"
fi

# --- 3. all four peers -------------------------------------------------------------
mk m3 "[SECURE] all hands"
log_statements all || bail "cannot turn on statement logging"
M=$(log_mark)
send m3 gcm@partner.test,nss@partner.test,cms@partner.test,gpg@partner.test
like "$T/m3.swaks" "^<[-~]* +250 " "all four peers: accepted"
is "$(logged_count "$M" "FROM policy WHERE")" 1 "  ... kmsmilter ran one policy statement for the sender and the four"
is "$(logged_count "$M" "FROM certificates c WHERE")" 1 "  ... and one certificate statement for the four and the sender"
log_statements none || bail "cannot turn off statement logging"
if got gpg 1; then
	is "$(hdr X-KMS-Info "$T/got")" "encrypted aes128-cbc for 4 recipients" "  ... aes128-cbc (gpgsm announces no AES-256) for 4"
	is "$(hdr Subject "$T/got")" "all hands" "  ... the tag is cut in any case"
	check "  ... gpgsm decrypts it (gpgsm --decrypt)" peer_decrypt gpg "$T/got" "$T/m3gpg.out"
	like "$T/m3gpg.out" "Secret plan number m3\." "  ... to the original text"
	got cms 1 && check "  ... openssl cms decrypts it" peer_decrypt cms "$T/got" "$T/m3cms.out"
	got nss 2 && check "  ... NSS decrypts it" peer_decrypt nss "$T/got" "$T/m3nss.out"
	got gcm 3 && check "  ... the OpenSSL-library peer decrypts it" peer_decrypt gcm "$T/got" "$T/m3gcm.out"
fi

# --- 4. a signed message is wrapped whole ------------------------------------------
{ printf 'From: <boss@example.org>\r\nTo: <cms@partner.test>\r\nSubject: signed and sealed\r\nX-KMS-Encrypt: YES\r\n'
  openssl cms -sign -binary -md sha256 -in "$P/cms.content" -signer "$P/cms.pem" -inkey "$P/cms.key" | crlf; } >"$T/m4.data"
send m4 cms@partner.test
if got cms 2; then
	check "signed message: encrypted, openssl cms decrypts" peer_decrypt cms "$T/got" "$T/m4.out"
	check "  ... the signature inside still verifies" openssl cms -verify -in "$T/m4.out" -CAfile "$P/ca.pem" -out /dev/null
fi

# --- 5. the sender's own certificate; a revoked one never --------------------------
for u in user1 user2; do
	openssl pkey -in "$P/$u.key" -pubout -out "$P/$u.pub" 2>/dev/null
	"$VAULTTOOL" -c "$CONF" -p "$T/pw" issue-record encryption boss@example.org "$P/$u.pub" >"$P/$u-issued.pem" ||
		bail "vaulttool issue-record failed"
	sleep 1
done
S2=$(openssl x509 -in "$P/user2-issued.pem" -noout -serial | cut -d= -f2)
check "revoke the sender's newest certificate" "$KMSCTL" -c "$CONF" revoke --serial "$S2"
mk m5 "for me too" "X-KMS-Encrypt: yes"
send m5 gcm@partner.test
if got gcm 4; then
	is "$(kt "$T/got" | wc -w)" 2 "sender with a certificate: two recipientInfos"
	is "$(hdr X-KMS-Info "$T/got")" "encrypted aes256-cbc for 1 recipient" "  ... the sender counts not as a recipient (its unknown capabilities: CBC)"
	peer_der "$T/got" "$T/m5.der"
	check "  ... the sender's valid (older) certificate is a recipient: user1's key decrypts" \
		openssl cms -decrypt -inform DER -in "$T/m5.der" -recip "$P/user1-issued.pem" -inkey "$P/user1.key" -out "$T/m5.out"
	like "$T/m5.out" "^Secret plan number m5\." "  ... to the text"
	expect_exit 4 "  ... the revoked certificate is not: no recipientInfo for it" \
		openssl cms -decrypt -inform DER -in "$T/m5.der" -recip "$P/user2-issued.pem" -inkey "$P/user2.key" -out /dev/null
fi
check "kmsctl revoke boss@example.org (all)" "$KMSCTL" -c "$CONF" revoke boss@example.org

# --- 6. already encrypted: not encrypted again --------------------------------------
{ printf 'From: <boss@example.org>\r\nTo: <gcm@partner.test>\r\nSubject: pre-encrypted\r\nX-KMS-Encrypt: yes\r\n'
  printf 'Secret plan number m6.\r\n' | openssl cms -encrypt -aes256 -recip "$P/gcm.pem" | crlf; } >"$T/m6.data"
send m6 gcm@partner.test
if got gcm 5; then
	unlike "$T/got" "^X-KMS-Info:" "already encrypted: no X-KMS-Info (not encrypted again)"
	unlike "$T/got" "^X-KMS-Encrypt:" "  ... the trigger header removed"
	check "  ... decrypts once to the text" peer_decrypt gcm "$T/got" "$T/m6.out"
	like "$T/m6.out" "^Secret plan number m6\." "  ... the original text"
fi

# --- 7. required with a missing certificate: 550 naming it ---------------------------
check "policy: partner.test requires encryption" "$KMSCTL" -c "$CONF" policy set --domain partner.test encrypt=required
sleep 1.2	# trust_refresh: the milter sees that policy rows exist (they did already)
mk m7 "no trigger, required by the recipients' domain"
send m7 gcm@partner.test,nocert@partner.test
like "$T/m7.swaks" "^<[-~*]* +550 5\.7\.1 .*nocert@partner\.test" "required + missing certificate: 550 5.7.1 naming nocert@partner.test"
unlike "$T/m7.swaks" "550 .*gcm@partner" "  ... not the recipient that has one"
mk m7b "required, all with certificates"
send m7b gcm@partner.test
got gcm 6 && like "$T/got" "^X-KMS-Info: encrypted aes256-gcm for 1 recipient" "required, all with certificates: encrypted without a trigger"

# --- 8. if-possible: mixed = plain (default), reject, split -----------------------------
check "policy: partner.test if-possible" "$KMSCTL" -c "$CONF" policy set --domain partner.test encrypt=if-possible
mk m8 "mixed plain"
send m8 gcm@partner.test,nocert@partner.test
like "$T/m8.swaks" "^<[-~]* +250 " "if-possible, mixed = plain: accepted"
got nocert 1 && like "$T/got" "^Secret plan number m8\." "  ... delivered in clear"
like "$T/milter.log" "no usable encryption certificate for nocert@partner.test: delivered as it is" "  ... and the log says why"
check "policy: boss@ mixed = reject" "$KMSCTL" -c "$CONF" policy set --user boss@example.org mixed=reject
mk m9 "mixed reject"
send m9 gcm@partner.test,nocert@partner.test
like "$T/m9.swaks" "^<[-~*]* +550 5\.7\.1 .*nocert@partner\.test" "mixed = reject: 550 5.7.1 naming the address"
check "policy: boss@ mixed = split" "$KMSCTL" -c "$CONF" policy set --user boss@example.org mixed=split
mk m10 "mixed split"
send m10 gcm@partner.test,nocert@partner.test
like "$T/m10.swaks" "^<[-~]* +250 " "mixed = split: accepted"
if got gcm 8 && cp "$T/got" "$T/m10.gcm" && got nocert 2; then
	is "$(hdr X-KMS-Info "$T/m10.gcm")" "encrypted aes256-gcm for 1 recipient" "  ... the encrypted message for the recipient with a certificate"
	check "  ... which decrypts" peer_decrypt gcm "$T/m10.gcm" "$T/m10.out"
	like "$T/got" "^Secret plan number m10\." "  ... a plain copy for the other"
	unlike "$T/got" "^X-KMS-Split:" "  ... its marker removed"
	like "$T/got" "^Subject: mixed split" "  ... the original headers"
fi
sleep 2
is "$(maildir_count nocert)" 2 "  ... exactly one plain copy (no loop)"
is "$(maildir_count gcm)" 8 "  ... exactly one encrypted delivery"
# a forged marker changes nothing
check "policy: partner.test required again" "$KMSCTL" -c "$CONF" policy set --domain partner.test encrypt=required
mk m11 "forged marker" "X-KMS-Split: 00112233445566778899aabbccddeeff"
send m11 nocert@partner.test
like "$T/m11.swaks" "^<[-~*]* +550 5\.7\.1 " "a forged X-KMS-Split marker does not bypass required: 550"

# --- 12. content headers: the first of each changed in place, the rest removed ------------
{
	printf 'From: Boss <boss@example.org>\r\nTo: gcm@partner.test\r\nSubject: content headers\r\n'
	printf 'Message-ID: <m12.%s@example.org>\r\nX-KMS-Info: forged by the client\r\n' "$$"
	printf 'MIME-Version: 1.0\r\nContent-Description: a description\r\nContent-Type: text/plain; charset=us-ascii\r\n'
	printf 'Content-Type: text/html\r\nContent-ID: <part.m12@example.org>\r\n\r\nSecret plan number m12.\r\n'
} >"$T/m12.data"
send m12 gcm@partner.test
like "$T/m12.swaks" "^<[-~]* +250 " "duplicate and extra content headers: accepted"
if got gcm 9; then
	is "$(grep -ci '^Content-Type:' "$T/got")" 1 "  ... one Content-Type"
	like "$T/got" "^Content-Type: application/pkcs7-mime; .*smime-type=authEnveloped-data" "  ... the CMS's"
	is "$(grep -ci '^MIME-Version:' "$T/got")" 1 "  ... one MIME-Version"
	is "$(grep -ci '^X-KMS-Info:' "$T/got")" 1 "  ... one X-KMS-Info"
	is "$(hdr X-KMS-Info "$T/got")" "encrypted aes256-gcm for 1 recipient" "  ... ours, not the client's"
	unlike "$T/got" "^Content-(Description|ID):" "  ... no other content header outside"
	is "$(grep -ci '^Content-Disposition:' "$T/got")" 1 "  ... one Content-Disposition"
	check "  ... which decrypts" peer_decrypt gcm "$T/got" "$T/m12.out"
	like "$T/m12.out" "^Content-Description: a description" "  ... with the content headers inside"
	like "$T/m12.out" "^Secret plan number m12\." "  ... and the text"
fi

kill -TERM "$MPID"; wait "$MPID"; rc=$?
is "$rc" 0 "kmsmilter exits 0 on SIGTERM"
unlike "$T/milter.log" "AddressSanitizer|runtime error" "no sanitizer report in the milter log"
done_testing
