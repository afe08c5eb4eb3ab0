#!/bin/sh
# kmsctl policy and kmsctl negotiate on real harvested data: four signers
# with their own addresses - the OpenSSL-library signer tests/smime-signer
# (announces AES-GCM and RSAES-OAEP), NSS cmsutil, openssl cms -sign and
# gpgsm - sign messages at test time that go through kmsmilter (miltertest)
# into the vault; then the algorithm and per-recipient key transport that
# kmsctl negotiate chooses under domain and user policy overrides, the
# refusals (blocking recipient, no usable certificate), one policy and
# one certificate statement per message (each recipient with its own
# allow_untrusted, at most 20 candidates per address), issued
# certificates and revocation (a revoked certificate is never chosen), and
# the same answers with the kms_milter role.
. "$top_srcdir/tests/lib.sh"
command -v miltertest >/dev/null || bail "miltertest not installed (Debian: miltertest)"
for t in openssl certutil pk12util cmsutil gpgsm gpgconf python3; do
	command -v "$t" >/dev/null || bail "$t not installed"
done
pg_start
CONF=$T/kms.conf
write_config "$CONF"
PORT=$(free_port)
sed -i "s|^socket = .*|socket = inet:$PORT@127.0.0.1\ndsn = host=$PGSOCK dbname=kms user=kms_milter\ntrust_refresh = 1s\nsystem_trust = no\nseen_refresh = 0|" "$CONF"
write_password "$T/pw" 'negotiate test password'
"$KMSCTL" -c "$CONF" init --password-file "$T/pw" >/dev/null || bail "init failed"

# --- a test PKI and one signed message per peer (tests/smime-peers.sh) -----------
. "$top_srcdir/tests/smime-peers.sh"
extra_cleanup=peers_cleanup
peers_make user1 user2

# --- harvest them through kmsmilter ---------------------------------------------
check "the test CA goes into the trust list" "$KMSCTL" -c "$CONF" ctl add "$P/ca.pem"
start_milter "$CONF" "$T/milter.log"
for n in gcm nss cms gpg; do
	check "$n: signed message harvested through the milter protocol" \
		miltertest -D sock="inet:$PORT@127.0.0.1" -D file="$P/$n.eml" -s "$top_srcdir/tests/milter-send.lua"
done
is "$(psql_kms "SELECT string_agg(DISTINCT lower(address), ',' ORDER BY lower(address)) FROM capabilities")" \
	"cms@partner.test,gcm@partner.test,gpg@partner.test,nss@partner.test" "capabilities of the four signers are in the vault"

# K ARGS: kmsctl, its stdout also kept in $T/doc for J.
# J FILE PYTHON-EXPR: the expression on the JSON document d (r: its
# recipients by address) must be true.
K() { "$KMSCTL" -c "$CONF" "$@" >"$T/doc"; k_rc=$?; cat "$T/doc"; return $k_rc; }
J() {
	python3 -c 'import json,sys
d=json.load(open(sys.argv[1]))
r={x["address"]:x for x in d.get("recipients",[])}
ok=eval(sys.argv[2])
sys.exit(0 if ok else 1)' "$@"
}
NEG() { K negotiate --json --from boss@example.org "$@"; }
GCM=$(sha_of "$P/gcm.pem")

# --- config default order (aes256-cbc first) ---------------------------------------
check "negotiate gcm@ under the default policy" NEG --rcpt gcm@partner.test
check "  ... aes256-cbc (the config's first choice), OAEP for the signer that announced it" \
	J "$T/doc" 'd["algorithm"]=="aes256-cbc" and r["gcm@partner.test"]["key_transport"]=="rsaes-oaep"'
check "  ... the harvested certificate, capabilities source 'harvested TIME'" \
	J "$T/doc" 'r["gcm@partner.test"]["certificate"]=="'"$GCM"'" and r["gcm@partner.test"]["capabilities_source"].startswith("harvested 20")'
check "  ... the sender has no certificate: noted, not an error" \
	J "$T/doc" 'd["sender"]=={"address":"boss@example.org","certificate":None} and len(d["recipients"])==1'

# --- domain policy of the sender prefers GCM ----------------------------------------
check "policy set --domain example.org algorithms=GCM first" \
	"$KMSCTL" -c "$CONF" policy set --domain example.org "algorithms=aes256-gcm, aes128-gcm,aes256-cbc,aes128-cbc"
like "$T/out" "^domain example.org: algorithms = aes256-gcm,aes128-gcm,aes256-cbc,aes128-cbc$" "  ... stored in canonical form"
check "GCM+OAEP recipient alone" NEG --rcpt gcm@partner.test
check "  ... aes256-gcm, authEnveloped-data, rsaes-oaep" \
	J "$T/doc" 'd["algorithm"]=="aes256-gcm" and d["content_type"]=="authEnveloped-data" and r["gcm@partner.test"]["key_transport"]=="rsaes-oaep"'
check "+ NSS recipient" NEG --rcpt gcm@partner.test --rcpt nss@partner.test
check "  ... aes256-cbc; rsa-pkcs1 for NSS, still rsaes-oaep for the GCM signer" \
	J "$T/doc" 'd["algorithm"]=="aes256-cbc" and r["nss@partner.test"]["key_transport"]=="rsa-pkcs1" and r["gcm@partner.test"]["key_transport"]=="rsaes-oaep"'
check "  ... the reason names the NSS recipient" J "$T/doc" '"nss@partner.test" in d["reason"]'
check "+ openssl cms recipient" NEG --rcpt gcm@partner.test --rcpt nss@partner.test --rcpt cms@partner.test
check "  ... aes256-cbc" J "$T/doc" 'd["algorithm"]=="aes256-cbc" and len(d["recipients"])==3'
check "+ gpgsm recipient" NEG --rcpt gcm@partner.test --rcpt nss@partner.test --rcpt cms@partner.test --rcpt GPG@partner.test
check "  ... aes128-cbc (gpgsm announces no AES-256), rsa-pkcs1 for gpgsm" \
	J "$T/doc" 'd["algorithm"]=="aes128-cbc" and r["GPG@partner.test"]["key_transport"]=="rsa-pkcs1"'
check "text output" "$KMSCTL" -c "$CONF" negotiate --from boss@example.org --rcpt gcm@partner.test --rcpt gpg@partner.test
like "$T/out" "^algorithm: aes128-cbc \(enveloped-data\)$" "  ... names the algorithm"
like "$T/out" "^sender boss@example.org has no usable encryption certificate" "  ... and the sender without certificate"

# --- one statement for the policies, one for the certificates, per message --------
# (2 + 2N before: one of each per address)
check "the test cluster logs every statement" log_statements all
M=$(log_mark)
check "negotiate from boss@ to three recipients, one of them spelled twice" \
	NEG --rcpt gcm@partner.test --rcpt nss@partner.test --rcpt cms@partner.test --rcpt GCM@partner.test
is "$(logged_count "$M" "FROM policy WHERE")" 1 "  ... one policy statement for the sender and the three recipients"
is "$(logged_count "$M" "FROM certificates c WHERE")" 1 "  ... one certificate statement for the three recipients and the sender"
check "  ... the same answer: three recipients, aes256-cbc, the sender without certificate" \
	J "$T/doc" 'sorted(r)==["cms@partner.test","gcm@partner.test","nss@partner.test"] and d["algorithm"]=="aes256-cbc" and d["sender"]["certificate"] is None'
# each address's own allow_untrusted in that one statement: two recipients
# of one domain with untrusted chains, one of them allowing those
psql_kms "UPDATE certificates c SET status = 'untrusted-chain' FROM certificate_addresses a
	WHERE a.certificate_id = c.id AND lower(a.address) IN ('nss@partner.test', 'cms@partner.test')"
check "policy set --user nss@partner.test allow_untrusted=yes" \
	"$KMSCTL" -c "$CONF" policy set --user nss@partner.test allow_untrusted=yes
M=$(log_mark)
expect_exit 1 "cms@ and nss@ with untrusted chains, nss@ allows them: exit 1" \
	NEG --rcpt cms@partner.test --rcpt nss@partner.test --rcpt gcm@partner.test
like "$T/err" "no usable encryption certificate for cms@partner.test$" "  ... no usable certificate for cms@ (partner.test's default)"
unlike "$T/err" "nss@partner.test|gcm@partner.test" "  ... nss@ (its user policy) and gcm@ have one"
is "$(logged_count "$M" "FROM certificates c WHERE")" 1 "  ... in one certificate statement"
check "policy set --user nss@partner.test allow_untrusted= (removed)" \
	"$KMSCTL" -c "$CONF" policy set --user nss@partner.test allow_untrusted=
psql_kms "UPDATE certificates c SET status = 'trusted' FROM certificate_addresses a
	WHERE a.certificate_id = c.id AND lower(a.address) IN ('nss@partner.test', 'cms@partner.test')"
# a hostile sender got 25 newer certificates that do not parse harvested for
# cms@ (whose signature names no key preference, which would come first):
# at most 20 are examined for it, and they take no place of another's
is "$(psql_kms "SELECT count(*) FROM capabilities WHERE lower(address) = 'cms@partner.test' AND key_preference IS NOT NULL")" 0 \
	"cms@ announced no key preference"
psql_kms "WITH c AS (INSERT INTO certificates (source, usage, status, sha256, serial, subject, issuer,
	not_before, not_after, der) SELECT 'harvested', 'both', 'trusted', md5('flood' || i) || md5(i || 'flood'),
	'f' || i, 'CN=Flood', 'CN=Flood', now(), now() + interval '1 day', '\\x00' FROM generate_series(1, 25) AS i
	RETURNING id) INSERT INTO certificate_addresses SELECT id, 'cms@partner.test' FROM c"
expect_exit 1 "cms@ (first) behind 25 unparseable certificates: exit 1" \
	NEG --rcpt cms@partner.test --rcpt gcm@partner.test --rcpt nss@partner.test
like "$T/err" "no usable encryption certificate for cms@partner.test$" "  ... no usable certificate among the 20 newest of cms@"
unlike "$T/err" "gcm@partner.test|nss@partner.test" "  ... gcm@ and nss@ after it still have theirs"
psql_kms "DELETE FROM certificates WHERE issuer = 'CN=Flood'"
check "cms@ without the flood" NEG --rcpt cms@partner.test --rcpt gcm@partner.test
check "  ... its certificate again" J "$T/doc" 'r["cms@partner.test"]["certificate"]=="'"$(sha_of "$P/cms.pem")"'"'
check "the test cluster logs no statement again" log_statements none

# --- a user override beats the domain: no aes128-cbc -> gpgsm blocks -------------------
check "policy set --user boss@example.org algorithms=aes256-gcm,aes256-cbc" \
	"$KMSCTL" -c "$CONF" policy set --user Boss@Example.org algorithms=aes256-gcm,aes256-cbc
expect_exit 1 "without aes128-cbc the four recipients have no common algorithm: exit 1" \
	NEG --rcpt gcm@partner.test --rcpt nss@partner.test --rcpt cms@partner.test --rcpt gpg@partner.test
like "$T/err" "gpg@partner.test" "  ... naming the gpgsm recipient"
unlike "$T/err" "nss@partner.test|cms@partner.test" "  ... and not the others"
check "the three others still negotiate aes256-cbc" NEG --rcpt gcm@partner.test --rcpt nss@partner.test --rcpt cms@partner.test
check "  ... aes256-cbc" J "$T/doc" 'd["algorithm"]=="aes256-cbc"'
check "policy show --user --json" K policy show --user boss@example.org --json
check "  ... shows each value's source: user, domain, config" \
	J "$T/doc" 'd["scope"]=="user" and d["name"]=="boss@example.org" and d["policy"]["algorithms"]=={"value":"aes256-gcm,aes256-cbc","source":"user"} and d["policy"]["encrypt"]=={"value":"never","source":"config"} and d["policy"]["unknown_capabilities"]["value"]=="aes256-cbc"'
check "policy show --user (text)" "$KMSCTL" -c "$CONF" policy show --user boss@example.org
like "$T/out" "^  algorithms +aes256-gcm,aes256-cbc +\(user boss@example.org\)$" "  ... algorithms from the user"
like "$T/out" "^  mixed +plain +\(config\)$" "  ... mixed from the config (default plain)"
check "policy set --user: key_transport=rsa-pkcs1, algorithms= (removed)" \
	"$KMSCTL" -c "$CONF" policy set --user boss@example.org key_transport=rsa-pkcs1 algorithms=
like "$T/out" "algorithms override removed" "  ... says the override is gone"
check "GCM recipient under key_transport=rsa-pkcs1" NEG --rcpt gcm@partner.test
check "  ... aes256-gcm again (domain algorithms), now with rsa-pkcs1" \
	J "$T/doc" 'd["algorithm"]=="aes256-gcm" and r["gcm@partner.test"]["key_transport"]=="rsa-pkcs1"'
check "policy show --domain example.org --json" K policy show --domain example.org --json
check "  ... algorithms from the domain, key_transport from the config" \
	J "$T/doc" 'd["policy"]["algorithms"]["source"]=="domain" and d["policy"]["key_transport"]=={"value":"rsa-oaep-if-announced","source":"config"}'
check "policy show (global) --json lists the overrides" K policy show --json
check "  ... two overrides, global values from the config" \
	J "$T/doc" 'sorted((o["scope"],o["name"],o["key"]) for o in d["overrides"])==[("domain","example.org","algorithms"),("user","boss@example.org","key_transport")] and all(v["source"]=="config" for v in d["policy"].values())'

# --- the strictest encrypt level of sender and recipients ------------------------
check "policy set --domain partner.test encrypt=required" "$KMSCTL" -c "$CONF" policy set --domain partner.test encrypt=required
check "negotiate to partner.test" NEG --rcpt nss@partner.test
check "  ... encrypt: required (the recipients' domain)" J "$T/doc" 'd["encrypt"]=="required"'

# --- validation --------------------------------------------------------------------
expect_exit 1 "unknown key refused" "$KMSCTL" -c "$CONF" policy set --domain example.org colour=blue
like "$T/err" "unknown policy key 'colour'" "  ... naming it"
expect_exit 1 "bad algorithm refused" "$KMSCTL" -c "$CONF" policy set --domain example.org algorithms=aes256-gcm,rc4
like "$T/err" "algorithms: unknown item 'rc4'" "  ... naming it"
expect_exit 1 "bad header name refused" "$KMSCTL" -c "$CONF" policy set --domain example.org "header=X Bad:"
expect_exit 1 "a bad pair refuses the whole command" "$KMSCTL" -c "$CONF" policy set --domain example.org encrypt=required mixed=sometimes
is "$(psql_kms "SELECT count(*) FROM policy WHERE name = 'example.org' AND key = 'encrypt'")" 0 "  ... nothing stored"
expect_exit 2 "policy set without --domain/--user is a usage error" "$KMSCTL" -c "$CONF" policy set encrypt=required
expect_exit 1 "a row edited by hand with a bad value is an error, not a default" \
	sh -c "\"$PG_BINDIR/psql\" -X -q -h \"$PGSOCK\" -U kmsdba -d kms -c \"INSERT INTO policy (scope, name, key, value) VALUES ('domain', 'bad.test', 'encrypt', 'maybe')\" && \"$KMSCTL\" -c \"$CONF\" policy show --domain bad.test"
like "$T/err" "vault policy of domain bad.test: encrypt" "  ... naming the row"

# --- no certificate ---------------------------------------------------------------
expect_exit 1 "unknown address: exit 1" NEG --rcpt gcm@partner.test --rcpt nobody@partner.test
like "$T/err" "no usable encryption certificate for nobody@partner.test" "  ... no usable encryption certificate for it"

# --- issued certificates, the sender, revocation -----------------------------------
for u in user1 user2; do
	openssl pkey -in "$P/$u.key" -pubout -out "$P/$u.pub" 2>/dev/null
	"$VAULTTOOL" -c "$CONF" -p "$T/pw" issue-record encryption boss@example.org "$P/$u.pub" >"$P/$u-issued.pem" ||
		bail "vaulttool issue-record failed"
	sleep 1	# a later not_before for user2
done
I1=$(sha_of "$P/user1-issued.pem"); I2=$(sha_of "$P/user2-issued.pem")
check "negotiate with the sender's issued certificates" NEG --rcpt gcm@partner.test
check "  ... the sender's newest issued certificate is a recipient, marked sender" \
	J "$T/doc" 'r["boss@example.org"]["certificate"]=="'"$I2"'" and r["boss@example.org"]["sender"] and d["sender"]["certificate"]=="'"$I2"'"'
check "  ... its capabilities are unknown (none): aes256-cbc assumed, not GCM" \
	J "$T/doc" 'r["boss@example.org"]["capabilities_source"]=="none" and r["boss@example.org"]["assumed"] and d["algorithm"]=="aes256-cbc"'
S2=$(openssl x509 -in "$P/user2-issued.pem" -noout -serial | cut -d= -f2)
check "kmsctl revoke --serial (the newest)" "$KMSCTL" -c "$CONF" revoke --serial "$S2"
check "negotiate after the revocation" NEG --rcpt gcm@partner.test
check "  ... the revoked certificate is not chosen, the older valid one is" \
	J "$T/doc" 'r["boss@example.org"]["certificate"]=="'"$I1"'"'
check "kmsctl revoke boss@example.org (all)" "$KMSCTL" -c "$CONF" revoke boss@example.org
expect_exit 1 "boss@ as a recipient with only revoked certificates: exit 1" \
	"$KMSCTL" -c "$CONF" negotiate --rcpt boss@example.org --rcpt gcm@partner.test
like "$T/err" "no usable encryption certificate for boss@example.org" "  ... no usable encryption certificate"
check "negotiate --from boss@ again" NEG --rcpt gcm@partner.test
check "  ... the sender has no certificate any more" J "$T/doc" 'd["sender"]["certificate"] is None and "boss@example.org" not in r'

# --- the kms_milter role reads the same -----------------------------------------
sed "s|^dsn = host=$PGSOCK dbname=kms user=kmsdba|dsn = host=$PGSOCK dbname=kms user=kms_milter|" "$CONF" >"$T/milter-role.conf"
check "negotiate as kms_milter" K -c "$T/milter-role.conf" negotiate --json --from boss@example.org \
	--rcpt gcm@partner.test --rcpt nss@partner.test
check "  ... same decision: aes256-cbc, the overrides read too (user key_transport, domain encrypt)" \
	J "$T/doc" 'd["algorithm"]=="aes256-cbc" and r["gcm@partner.test"]["key_transport"]=="rsa-pkcs1" and r["nss@partner.test"]["key_transport"]=="rsa-pkcs1" and d["encrypt"]=="required"'
expect_exit 1 "kms_milter cannot change policy" "$KMSCTL" -c "$T/milter-role.conf" policy set --domain example.org encrypt=required

kill -TERM "$MPID"; wait "$MPID"; rc=$?
is "$rc" 0 "kmsmilter exits 0 on SIGTERM"
[ "$rc" = 0 ] || diag "$(tail -40 "$T/milter.log")"
unlike "$T/milter.log" "AddressSanitizer|runtime error" "no sanitizer report in the milter log"
done_testing
