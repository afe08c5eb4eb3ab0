/*
 * NAME
 *	test-crl - unit tests for smime/crl.c
 * DESCRIPTION
 *	CRLs of an RSA-3072 and a P-256 CA made with smime/ca.c, checked by
 *	the openssl CLI (crl -text, crl -verify, verify -crl_check against
 *	revoked and unrevoked certificates) and parsed back with OpenSSL
 *	for the fields the CLI does not show exactly (times, order,
 *	extensions); the files kms_crl_write publishes, their mode and
 *	their replacement.
 * SECURITY
 *	Test keys only, in memory; certificates and CRLs go to a private
 *	temporary directory that each test removes.
 */
#include "smime/ca.h"
#include "smime/crl.h"
#include "smime/x509util.h"
#include "tests/unit/testutil.h"

#include <string.h>
#include <sys/stat.h>

#include <glib/gstdio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#define CRL_NUMBER	424242
#define DAYS		7
#define ISSUED		3

G_DEFINE_AUTOPTR_CLEANUP_FUNC(X509, X509_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(X509_CRL, X509_CRL_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(EVP_PKEY, EVP_PKEY_free)

/* A CA and three certificates it issued, made once per key type. */
typedef struct {
	KmsKeyType type;
	EVP_PKEY *key;
	X509 *cert;
	EVP_PKEY *user_key;		/* shared by the issued certificates */
	X509 *issued[ISSUED];
	char *serial[ISSUED];		/* kms_x509_serial_hex */
} Ca;

static Ca rsa_ca = {.type = KMS_KEY_RSA3072};
static Ca p256_ca = {.type = KMS_KEY_P256};

/* C, its certificates made on first use. */
static Ca *
ca_get(Ca *c)
{
	g_autoptr(GError) err = NULL;

	if (c->key)
		return c;
	c->key = kms_key_generate(c->type, &err);
	g_assert_no_error(err);
	c->cert = kms_ca_make_root(c->key, "CN=Test CRL CA, O=Example", 365,
	    &err);
	g_assert_no_error(err);
	c->user_key = kms_key_generate(KMS_KEY_RSA2048, &err);
	g_assert_no_error(err);
	for (int i = 0; i < ISSUED; i++) {
		g_autofree char *addr = g_strdup_printf("user%d@example.org",
		    i);
		KmsIssueParams p = {KMS_PROFILE_ENCRYPTION, addr, NULL, 30,
		    "http://pki.example.org/kms.crl"};

		c->issued[i] = kms_ca_issue(c->cert, c->key, c->user_key, &p,
		    &err);
		g_assert_no_error(err);
		c->serial[i] = kms_x509_serial_hex(c->issued[i]);
	}
	return c;
}

/* Free what ca_get made. */
static void
ca_clear(Ca *c)
{
	for (int i = 0; i < ISSUED; i++) {
		X509_free(c->issued[i]);
		g_free(c->serial[i]);
	}
	X509_free(c->cert);
	EVP_PKEY_free(c->key);
	EVP_PKEY_free(c->user_key);
}

/* Write CERT as PEM to DIR/NAME. */
static void
write_cert(const char *dir, const char *name, X509 *cert)
{
	g_autoptr(GError) err = NULL;
	g_autofree char *path = g_build_filename(dir, name, NULL);
	g_autofree char *pem = kms_x509_to_pem(cert);

	g_file_set_contents(path, pem, -1, &err);
	g_assert_no_error(err);
}

/* Build a CRL of C or fail the test; caller frees. */
static X509_CRL *
build(Ca *c, const KmsRevoked *r, guint n, gint64 number)
{
	g_autoptr(GError) err = NULL;
	X509_CRL *crl = kms_crl_build(c->cert, c->key, r, n, number, DAYS,
	    &err);

	g_assert_no_error(err);
	g_assert_nonnull(crl);
	return crl;
}

/* Publish CRL as DIR/crl and DIR/crl.pem, and the CA as DIR/ca.pem. */
static void
publish(const char *dir, Ca *c, X509_CRL *crl)
{
	g_autoptr(GError) err = NULL;

	g_assert_true(kms_crl_write(crl, dir, "crl", &err));
	g_assert_no_error(err);
	write_cert(dir, "ca.pem", c->cert);
}

/* Assert `openssl crl -CAfile ca.pem -verify` accepts DIR/crl (DER). */
static void
assert_crl_verifies(const char *dir)
{
	const char *argv[] = {"openssl", "crl", "-inform", "DER", "-in",
	    "crl", "-CAfile", "ca.pem", "-noout", "-verify", NULL};
	g_autofree char *out = NULL;

	if (!test_run(dir, argv, &out) || !strstr(out, "verify OK"))
		g_error("openssl crl -verify: got \"%s\", want \"verify OK\"",
		    g_strstrip(out));
}

/* Assert what `openssl verify -crl_check` with DIR/crl.pem says about
 * CERT: "certificate revoked" when REVOKED, else OK. */
static void
assert_verify(const char *dir, X509 *cert, gboolean revoked)
{
	const char *argv[] = {"openssl", "verify", "-crl_check", "-CAfile",
	    "ca.pem", "-CRLfile", "crl.pem", "leaf.pem", NULL};
	const char *want = revoked ? "certificate revoked" : "leaf.pem: OK";
	g_autofree char *out = NULL;
	g_autofree char *serial = kms_x509_serial_hex(cert);

	write_cert(dir, "leaf.pem", cert);
	if (test_run(dir, argv, &out) == revoked || !strstr(out, want))
		g_error("openssl verify -crl_check of serial %s: got \"%s\", "
		    "want \"%s\" and %s", serial, g_strstrip(out), want,
		    revoked ? "a failure" : "exit 0");
}

/* Revoke 2 of 3 certificates: openssl shows them, verifies the CRL, and
 * refuses exactly the revoked certificates. */
static void
test_two_of_three(gconstpointer data)
{
	Ca *c = ca_get((Ca *) data);
	g_autoptr(TestDir) dir = test_dir_new("test-crl");
	KmsRevoked r[] = {
		{c->serial[2], time(NULL) - 3600, CRL_REASON_KEY_COMPROMISE},
		{c->serial[0], time(NULL) - 60, CRL_REASON_SUPERSEDED},
	};
	g_autoptr(X509_CRL) crl = build(c, r, G_N_ELEMENTS(r), CRL_NUMBER);
	const char *text[] = {"openssl", "crl", "-in", "crl.pem", "-noout",
	    "-text", NULL};
	g_autofree char *out = NULL;
	g_autofree char *up0 = g_ascii_strup(c->serial[0], -1);
	g_autofree char *up2 = g_ascii_strup(c->serial[2], -1);
	g_autofree char *up1 = g_ascii_strup(c->serial[1], -1);
	const char *want[] = {"Version 2 (0x1)", "Key Compromise",
	    "Superseded", "X509v3 CRL Number: \n                424242",
	    "X509v3 Authority Key Identifier", up0, up2,
	    c->type == KMS_KEY_P256 ? "ecdsa-with-SHA256" :
	    "sha256WithRSAEncryption"};

	publish(dir, c, crl);
	g_assert_true(test_run(dir, text, &out));
	for (size_t i = 0; i < G_N_ELEMENTS(want); i++)
		if (!strstr(out, want[i]))
			g_error("openssl crl -text: got \"%s\", want \"%s\"",
			    out, want[i]);
	if (strstr(out, up1))
		g_error("openssl crl -text: got \"%s\", want no serial %s",
		    out, up1);
	assert_crl_verifies(dir);
	assert_verify(dir, c->issued[0], TRUE);
	assert_verify(dir, c->issued[2], TRUE);
	assert_verify(dir, c->issued[1], FALSE);
}

/* A CRL without entries verifies, and so does every certificate. */
static void
test_empty(gconstpointer data)
{
	Ca *c = ca_get((Ca *) data);
	g_autoptr(TestDir) dir = test_dir_new("test-crl");
	g_autoptr(X509_CRL) crl = build(c, NULL, 0, 1);
	const char *text[] = {"openssl", "crl", "-in", "crl.pem", "-noout",
	    "-text", NULL};
	g_autofree char *out = NULL;

	publish(dir, c, crl);
	g_assert_true(test_run(dir, text, &out));
	if (!strstr(out, "No Revoked Certificates."))
		g_error("openssl crl -text: got \"%s\", want \"No Revoked "
		    "Certificates.\"", out);
	assert_crl_verifies(dir);
	for (int i = 0; i < ISSUED; i++)
		assert_verify(dir, c->issued[i], FALSE);
}

/* Seconds from T to the ASN1_TIME AT (negative: AT is earlier). */
static long
seconds_from(time_t t, const ASN1_TIME *at)
{
	ASN1_TIME *from = ASN1_TIME_set(NULL, t);
	int day = 0, sec = 0;

	g_assert_nonnull(from);
	g_assert_cmpint(ASN1_TIME_diff(&day, &sec, from, at), ==, 1);
	ASN1_TIME_free(from);
	return (long) day * 86400 + sec;
}

/* Reason code extension of entry REV, or CRL_REASON_NONE without one. */
static int
entry_reason(X509_REVOKED *rev)
{
	int crit = 0;
	ASN1_ENUMERATED *e = X509_REVOKED_get_ext_d2i(rev, NID_crl_reason,
	    &crit, NULL);
	int reason = e ? (int) ASN1_ENUMERATED_get(e) : CRL_REASON_NONE;

	g_assert_true(e == NULL || crit == 0);
	ASN1_ENUMERATED_free(e);
	return reason;
}

/* Fields parsed back: version, times, number, AKI, entries sorted by
 * serial with their dates, and reason codes only where they say more
 * than "unspecified". */
static void
test_fields(void)
{
	Ca *c = ca_get(&p256_ca);
	time_t now = time(NULL);
	/* Given in descending order, with leading zeros and in capitals. */
	KmsRevoked r[] = {
		{"7fffffffffffffffffffffffffffffff", now - 5000,
		    CRL_REASON_CESSATION_OF_OPERATION},
		{"00ABCDEF", now - 4000, CRL_REASON_UNSPECIFIED},
		{"0100", now - 3000, CRL_REASON_NONE},
		{"ff", now - 2000, CRL_REASON_AA_COMPROMISE},
	};
	const int want_order[] = {3, 2, 1, 0};	/* ff < 0100 < ... */
	g_autoptr(X509_CRL) crl = build(c, r, G_N_ELEMENTS(r),
	    G_GINT64_CONSTANT(1) << 40);
	STACK_OF(X509_REVOKED) *revs = X509_CRL_get_REVOKED(crl);
	ASN1_INTEGER *number = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL,
	    NULL);
	AUTHORITY_KEYID *akid = X509_CRL_get_ext_d2i(crl,
	    NID_authority_key_identifier, NULL, NULL);
	long next = seconds_from(now + DAYS * 86400,
	    X509_CRL_get0_nextUpdate(crl));
	long this = seconds_from(now, X509_CRL_get0_lastUpdate(crl));
	int64_t got_number = 0;

	g_assert_cmpint(X509_CRL_get_version(crl), ==, X509_CRL_VERSION_2);
	if (labs(next) > 60 || labs(this) > 60)
		g_error("nextUpdate/thisUpdate: got now+%d days %+lds and now "
		    "%+lds, want both within 60 s", DAYS, next, this);
	g_assert_nonnull(number);
	g_assert_cmpint(ASN1_INTEGER_get_int64(&got_number, number), ==, 1);
	g_assert_cmpint(got_number, ==, G_GINT64_CONSTANT(1) << 40);
	g_assert_nonnull(akid);
	g_assert_cmpint(ASN1_OCTET_STRING_cmp(akid->keyid,
	    X509_get0_subject_key_id(c->cert)), ==, 0);
	g_assert_cmpint(X509_CRL_verify(crl, c->key), ==, 1);
	g_assert_cmpint(sk_X509_REVOKED_num(revs), ==, G_N_ELEMENTS(r));
	for (int i = 0; i < sk_X509_REVOKED_num(revs); i++) {
		X509_REVOKED *rev = sk_X509_REVOKED_value(revs, i);
		const KmsRevoked *w = &r[want_order[i]];
		BIGNUM *bn = ASN1_INTEGER_to_BN(
		    X509_REVOKED_get0_serialNumber(rev), NULL);
		char *hex = BN_bn2hex(bn);
		int want_reason = w->reason == CRL_REASON_UNSPECIFIED ?
		    CRL_REASON_NONE : w->reason;

		if (g_ascii_strtoull(hex, NULL, 16) !=
		    g_ascii_strtoull(w->serial_hex, NULL, 16))
			g_error("entry %d: got serial %s, want %s", i, hex,
			    w->serial_hex);
		g_assert_cmpint(seconds_from(w->revoked_at,
		    X509_REVOKED_get0_revocationDate(rev)), ==, 0);
		if (entry_reason(rev) != want_reason)
			g_error("entry %d (%s): got reason %d, want %d", i, hex,
			    entry_reason(rev), want_reason);
		OPENSSL_free(hex);
		BN_free(bn);
	}
	ASN1_INTEGER_free(number);
	AUTHORITY_KEYID_free(akid);
}

/* Names of all RFC 5280 reasons parse in any case and name themselves
 * back; anything else is refused. */
static void
test_reason_names(void)
{
	const char *names[] = {"unspecified", "keyCompromise", "cACompromise",
	    "affiliationChanged", "superseded", "cessationOfOperation",
	    "certificateHold", "removeFromCRL", "privilegeWithdrawn",
	    "aACompromise"};
	const int codes[] = {0, 1, 2, 3, 4, 5, 6, 8, 9, 10};
	int reason = -7;

	for (size_t i = 0; i < G_N_ELEMENTS(names); i++) {
		g_autofree char *up = g_ascii_strup(names[i], -1);

		g_assert_true(kms_crl_reason_parse(names[i], &reason));
		g_assert_cmpint(reason, ==, codes[i]);
		g_assert_true(kms_crl_reason_parse(up, &reason));
		g_assert_cmpint(reason, ==, codes[i]);
		g_assert_cmpstr(kms_crl_reason_name(codes[i]), ==, names[i]);
	}
	reason = -7;
	g_assert_false(kms_crl_reason_parse("key-compromise", &reason));
	g_assert_false(kms_crl_reason_parse("", &reason));
	g_assert_false(kms_crl_reason_parse(NULL, &reason));
	g_assert_cmpint(reason, ==, -7);
	g_assert_null(kms_crl_reason_name(7));
	g_assert_null(kms_crl_reason_name(CRL_REASON_NONE));
}

/* Bad serials, reasons, dates, numbers, validity and CA are refused. */
static void
test_refuses_bad_input(void)
{
	Ca *c = ca_get(&p256_ca);
	Ca *other = ca_get(&rsa_ca);
	time_t now = time(NULL);
	const struct {
		const char *what;
		KmsRevoked r[2];
		guint n;
		gboolean no_list;
		gint64 number;
		int days;
		X509 *ca_cert;
		EVP_PKEY *ca_key;
		const char *want;
	} cases[] = {
		{"serial not hex", {{"12xy", now, -1}}, 1, FALSE, 1, 1,
		    NULL, NULL, "entry 1: serial \"12xy\" is not a hex number"},
		{"negative serial", {{"-1", now, -1}}, 1, FALSE, 1, 1,
		    NULL, NULL, "not a hex number"},
		{"empty serial", {{"", now, -1}}, 1, FALSE, 1, 1,
		    NULL, NULL, "not a hex number"},
		{"no serial", {{NULL, now, -1}}, 1, FALSE, 1, 1,
		    NULL, NULL, "serial \"(null)\""},
		{"serial zero", {{"000", now, -1}}, 1, FALSE, 1, 1,
		    NULL, NULL, "is zero"},
		{"serial of 21 octets", {{"8000000000000000000000000000000000"
		    "000000", now, -1}}, 1, FALSE, 1, 1,
		    NULL, NULL, "longer than 20 octets"},
		{"same serial twice", {{"0abc", now, -1}, {"ABC", now, 1}}, 2,
		    FALSE, 1, 1, NULL, NULL, "serial 0ABC is listed twice"},
		{"reason 7", {{"1", now, 7}}, 1, FALSE, 1, 1,
		    NULL, NULL, "unknown reason code"},
		{"reason 11", {{"1", now, 11}}, 1, FALSE, 1, 1,
		    NULL, NULL, "unknown reason code"},
		{"removeFromCRL", {{"1", now, CRL_REASON_REMOVE_FROM_CRL}}, 1,
		    FALSE, 1, 1, NULL, NULL, "only belongs in a delta CRL"},
		{"date before 1970", {{"1", -5, -1}}, 1, FALSE, 1, 1,
		    NULL, NULL, "before 1970"},
		{"negative CRL number", {{"1", now, -1}}, 1, FALSE, -1, 1,
		    NULL, NULL, "want a number >= 0"},
		{"zero days", {{"1", now, -1}}, 1, FALSE, 1, 0,
		    NULL, NULL, "1 to 3650 days"},
		{"entries without a list", {{"1", now, -1}}, 1, TRUE, 1, 1,
		    NULL, NULL, "1 entries but no list"},
		{"key of another CA", {{"1", now, -1}}, 1, FALSE, 1, 1,
		    NULL, other->key, "the CA key does not match"},
		{"certificate without cRLSign", {{"1", now, -1}}, 1, FALSE, 1,
		    1, c->issued[0], c->user_key, "key usage excludes cRLSign"},
	};

	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_autoptr(GError) err = NULL;
		g_autoptr(X509_CRL) crl = kms_crl_build(
		    cases[i].ca_cert ? cases[i].ca_cert : c->cert,
		    cases[i].ca_key ? cases[i].ca_key : c->key,
		    cases[i].no_list ? NULL : cases[i].r, cases[i].n,
		    cases[i].number,
		    cases[i].days, &err);

		if (crl || !g_error_matches(err, KMS_CRL_ERROR,
		    KMS_CRL_ERROR_INVALID) || !strstr(err->message,
		    cases[i].want))
			g_error("%s: got %s, want KMS_CRL_ERROR_INVALID with "
			    "\"%s\"", cases[i].what, err ? err->message :
			    "a CRL", cases[i].want);
		g_assert_cmpint(ERR_peek_error(), ==, 0);
	}
}

/* Read DIR/NAME and assert its mode is 0644; g_free. */
static char *
read_published(const char *dir, const char *name, gsize *len)
{
	g_autoptr(GError) err = NULL;
	g_autofree char *path = g_build_filename(dir, name, NULL);
	GStatBuf st;
	char *data = NULL;

	g_assert_cmpint(g_stat(path, &st), ==, 0);
	if ((st.st_mode & 07777) != 0644)
		g_error("%s: got mode %04o, want 0644", name,
		    (unsigned) (st.st_mode & 07777));
	g_file_get_contents(path, &data, len, &err);
	g_assert_no_error(err);
	return data;
}

/* Assert DIR holds exactly crl and crl.pem, both CRL number NUMBER. */
static void
assert_published(const char *dir, long number)
{
	gsize der_len = 0, pem_len = 0;
	g_autofree char *der = read_published(dir, "crl", &der_len);
	g_autofree char *pem = read_published(dir, "crl.pem", &pem_len);
	const unsigned char *p = (const unsigned char *) der;
	g_autoptr(X509_CRL) from_der = d2i_X509_CRL(NULL, &p, (long) der_len);
	BIO *bio = BIO_new_mem_buf(pem, (int) pem_len);
	g_autoptr(X509_CRL) from_pem = PEM_read_bio_X509_CRL(bio, NULL, NULL,
	    NULL);
	ASN1_INTEGER *n = NULL;
	GDir *d = g_dir_open(dir, 0, NULL);
	int files = 0;

	BIO_free(bio);
	g_assert_nonnull(from_der);
	g_assert_nonnull(from_pem);
	g_assert_true(p == (const unsigned char *) der + der_len);
	g_assert_cmpint(X509_CRL_cmp(from_der, from_pem), ==, 0);
	n = X509_CRL_get_ext_d2i(from_der, NID_crl_number, NULL, NULL);
	g_assert_cmpint(ASN1_INTEGER_get(n), ==, number);
	ASN1_INTEGER_free(n);
	while (d && g_dir_read_name(d))
		files++;
	g_dir_close(d);
	if (files != 2)
		g_error("directory after writing: got %d files, want crl and "
		    "crl.pem only (a temporary file left?)", files);
}

/* kms_crl_write publishes DER and PEM, 0644 under umask 077, replaces
 * them on the next run, and refuses bad names and directories. */
static void
test_write(void)
{
	Ca *c = ca_get(&p256_ca);
	g_autoptr(TestDir) dir = test_dir_new("test-crl");
	g_autoptr(X509_CRL) first = build(c, NULL, 0, 1);
	g_autoptr(X509_CRL) second = build(c, NULL, 0, 2);
	g_autofree char *missing = g_build_filename(dir, "missing", NULL);
	const char *bad[] = {"", "a/b", "..", "."};
	g_autoptr(GError) err = NULL;
	mode_t old = umask(077);

	g_assert_true(kms_crl_write(first, dir, "crl", &err));
	g_assert_no_error(err);
	assert_published(dir, 1);
	g_assert_true(kms_crl_write(second, dir, "crl", &err));
	g_assert_no_error(err);
	umask(old);
	assert_published(dir, 2);
	for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
		g_assert_false(kms_crl_write(second, dir, bad[i], &err));
		g_assert_error(err, KMS_CRL_ERROR, KMS_CRL_ERROR_INVALID);
		g_clear_error(&err);
	}
	g_assert_false(kms_crl_write(second, missing, "crl", &err));
	g_assert_error(err, KMS_CRL_ERROR, KMS_CRL_ERROR_IO);
	if (!strstr(err->message, missing))
		g_error("write to a missing directory: got \"%s\", want the "
		    "path %s/crl named", err->message, missing);
	assert_published(dir, 2);
}

/* Register the tests; the CAs are freed at the end. */
int
main(int argc, char **argv)
{
	int rc;

	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/crl/reason/rfc5280-names-parse-in-any-case",
	    test_reason_names);
	g_test_add_data_func("/crl/rsa3072/two-of-three-revoked-openssl-"
	    "verify-refuses-them", &rsa_ca, test_two_of_three);
	g_test_add_data_func("/crl/p256/two-of-three-revoked-openssl-"
	    "verify-refuses-them", &p256_ca, test_two_of_three);
	g_test_add_data_func("/crl/rsa3072/empty-crl-verifies", &rsa_ca,
	    test_empty);
	g_test_add_data_func("/crl/p256/empty-crl-verifies", &p256_ca,
	    test_empty);
	g_test_add_func("/crl/build/number-times-aki-sorted-entries-reasons",
	    test_fields);
	g_test_add_func("/crl/build/refuses-bad-input", test_refuses_bad_input);
	g_test_add_func("/crl/write/der-and-pem-0644-replaced-atomically",
	    test_write);
	rc = g_test_run();
	ca_clear(&rsa_ca);
	ca_clear(&p256_ca);
	return rc;
}
