/*
 * NAME
 *	test-ca - unit tests for smime/ca.c and smime/x509util.c
 * DESCRIPTION
 *	Keys, names, the root, CSRs, issued S/MIME certificates and chain
 *	checks. Issued certificates are verified by the real openssl CLI
 *	(verify, cms) in a temporary directory, and parsed back with OpenSSL
 *	to check each extension. Chains with faults are built here by a
 *	small test-only signer.
 * SECURITY
 *	Test keys live in memory and, for CMS round trips, in a private
 *	temporary directory that each test removes.
 */
#include "smime/ca.h"
#include "smime/x509util.h"
#include "tests/unit/testutil.h"

#include <string.h>
#include <time.h>

#include <glib/gstdio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

typedef STACK_OF(X509) X509Stack;

/* Free a certificate stack and its certificates. */
static void
x509_stack_free(X509Stack *sk)
{
	sk_X509_pop_free(sk, X509_free);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(X509, X509_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(X509_REQ, X509_REQ_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(X509_NAME, X509_NAME_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(EVP_PKEY, EVP_PKEY_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(X509Stack, x509_stack_free)

/* Write CERT, or else KEY's private half, as PEM to DIR/NAME. */
static void
write_pem(const char *dir, const char *name, X509 *cert, EVP_PKEY *key)
{
	g_autofree char *path = g_build_filename(dir, name, NULL);
	BIO *b = BIO_new_file(path, "w");

	g_assert_nonnull(b);
	g_assert_cmpint(cert ? PEM_write_bio_X509(b, cert) :
	    PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL), ==, 1);
	BIO_free(b);
}

/*
 * Assert that `openssl verify -x509_strict -CAfile root.pem [-untrusted
 * sub.pem] [-purpose PURPOSE] leaf.pem` in DIR accepts leaf.pem, or (!OK)
 * rejects it as unsuitable for PURPOSE.
 */
static void
assert_openssl(const char *dir, const char *purpose, gboolean sub,
    gboolean ok)
{
	const char *argv[12] = {"openssl", "verify", "-x509_strict",
	    "-CAfile", "root.pem"};
	const char *want = ok ? "leaf.pem: OK" :
	    "unsuitable certificate purpose";
	g_autofree char *out = NULL;
	int n = 5;

	if (purpose) {
		argv[n++] = "-purpose";
		argv[n++] = purpose;
	}
	if (sub) {
		argv[n++] = "-untrusted";
		argv[n++] = "sub.pem";
	}
	argv[n] = "leaf.pem";
	if (test_run(dir, argv, &out) != ok || strstr(out, want) == NULL)
		g_error("openssl verify -purpose %s: got \"%s\", want "
		    "\"%s\" and %s", purpose ? purpose : "(none)",
		    g_strstrip(out), want, ok ? "exit 0" : "a failure");
}

/* Encrypt to leaf.pem with `openssl cms` and decrypt with leaf.key. */
static void
assert_cms_round_trip(const char *dir)
{
	const char *enc[] = {"openssl", "cms", "-encrypt", "-binary",
	    "-aes256", "-in", "msg.txt", "-out", "msg.p7m", "leaf.pem", NULL};
	const char *dec[] = {"openssl", "cms", "-decrypt", "-in", "msg.p7m",
	    "-recip", "leaf.pem", "-inkey", "leaf.key", NULL};
	g_autofree char *path = g_build_filename(dir, "msg.txt", NULL);
	g_autofree char *out = NULL;
	g_autofree char *plain = NULL;

	g_assert_true(g_file_set_contents(path, "secret text\n", -1, NULL));
	if (!test_run(dir, enc, &out))
		g_error("openssl cms -encrypt: got \"%s\", want exit 0", out);
	if (!test_run(dir, dec, &plain))
		g_error("openssl cms -decrypt: got \"%s\", want exit 0", plain);
	g_assert_cmpstr(plain, ==, "secret text\n");
}

/* Keys are slow to make: each slot is generated once per run. */
static EVP_PKEY *key_cache[8];

/* The cached key in SLOT, of type T. Borrowed. */
static EVP_PKEY *
cached_key(int slot, KmsKeyType t)
{
	g_autoptr(GError) err = NULL;

	if (key_cache[slot] == NULL) {
		key_cache[slot] = kms_key_generate(t, &err);
		g_assert_no_error(err);
	}
	return key_cache[slot];
}

/* Slots: 0/1 CA keys, 2/3 subject keys, 4.. chain keys. */
#define CA_KEY(t)	cached_key((t) == KMS_KEY_P256, (t))
#define SUBJ_KEY(t)	cached_key(2 + ((t) == KMS_KEY_P256), (t))
#define CHAIN_KEY(n)	cached_key(4 + (n), KMS_KEY_P256)

/* -1 when CERT lacks extension NID, else whether it is critical. */
static int
ext_critical(X509 *cert, int nid)
{
	int i = X509_get_ext_by_NID(cert, nid, -1);

	return i < 0 ? -1 : X509_EXTENSION_get_critical(X509_get_ext(cert, i));
}

/* Parse a DN the test knows to be good. Caller frees. */
static X509_NAME *
name(const char *dn)
{
	g_autoptr(GError) err = NULL;
	X509_NAME *n = kms_name_parse(dn, &err);

	g_assert_no_error(err);
	return n;
}

/* Text of the attribute NID in N; g_free. */
static char *
name_attr(X509_NAME *n, int nid)
{
	char buf[256];

	if (X509_NAME_get_text_by_NID(n, nid, buf, sizeof(buf)) < 0)
		return NULL;
	return g_strdup(buf);
}

/* Test-only signer: certificate for PUBKEY named SUBJECT, valid from
 * FROM to TO days from now, signed by IKEY as ISSUER (NULL: self). BC
 * NULL: no basicConstraints or keyUsage. */
static X509 *
test_cert(EVP_PKEY *pubkey, X509_NAME *subject, X509 *issuer,
    EVP_PKEY *ikey, long from, long to, const char *bc, const char *ku)
{
	static long serial = 1000;
	X509 *cert = X509_new();
	X509V3_CTX ctx;
	const char *exts[][2] = {{"basicConstraints", bc},
	    {"keyUsage", ku}, {"subjectKeyIdentifier", "hash"},
	    {"authorityKeyIdentifier", "keyid:always"}};

	X509_set_version(cert, X509_VERSION_3);
	ASN1_INTEGER_set(X509_get_serialNumber(cert), serial++);
	X509_set_subject_name(cert, subject);
	X509_set_issuer_name(cert, issuer ? X509_get_subject_name(issuer) :
	    subject);
	X509_set_pubkey(cert, pubkey);
	X509_time_adj_ex(X509_getm_notBefore(cert), from, 0, NULL);
	X509_time_adj_ex(X509_getm_notAfter(cert), to, 0, NULL);
	X509V3_set_ctx(&ctx, issuer ? issuer : cert, cert, NULL, NULL, 0);
	for (size_t i = bc ? 0 : 2; i < G_N_ELEMENTS(exts); i++) {
		X509_EXTENSION *e = X509V3_EXT_nconf(NULL, &ctx, exts[i][0],
		    exts[i][1]);

		g_assert_nonnull(e);
		X509_add_ext(cert, e, -1);
		X509_EXTENSION_free(e);
	}
	g_assert_cmpint(X509_sign(cert, ikey, EVP_sha256()), >, 0);
	return cert;
}

/* Test-only CA: sign REQ under ISSUER/IKEY with the extensions it asks. */
static X509 *
sign_csr(X509_REQ *req, X509 *issuer, EVP_PKEY *ikey, long days)
{
	STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
	X509 *cert;

	g_assert_cmpint(X509_REQ_verify(req, X509_REQ_get0_pubkey(req)), ==, 1);
	g_assert_cmpint(sk_X509_EXTENSION_num(exts), ==, 2);
	cert = test_cert(X509_REQ_get0_pubkey(req),
	    X509_REQ_get_subject_name(req), issuer, ikey, 0, days, NULL, NULL);
	for (int i = 0; i < sk_X509_EXTENSION_num(exts); i++)
		X509_add_ext(cert, sk_X509_EXTENSION_value(exts, i), -1);
	g_assert_cmpint(X509_sign(cert, ikey, EVP_sha256()), >, 0);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	return cert;
}

/* Root made by kms_ca_make_root; caller frees. */
static X509 *
make_root(EVP_PKEY *key, const char *subject, int days)
{
	g_autoptr(GError) err = NULL;
	X509 *root = kms_ca_make_root(key, subject, days, &err);

	g_assert_no_error(err);
	g_assert_nonnull(root);
	return root;
}

/* Issue under CA with the given profile; caller frees. */
static X509 *
issue(X509 *ca, EVP_PKEY *ca_key, EVP_PKEY *pub, KmsCertProfile profile,
    const char *crl_url)
{
	KmsIssueParams p = {profile, "alice@example.org", NULL, 365, crl_url};
	g_autoptr(GError) err = NULL;
	X509 *cert = kms_ca_issue(ca, ca_key, pub, &p, &err);

	g_assert_no_error(err);
	g_assert_nonnull(cert);
	return cert;
}

/* Every key type name parses and maps back; unknown names fail. */
static void
test_key_type_names(void)
{
	static const char *names[] = {"rsa2048", "rsa3072", "rsa4096", "p256"};
	KmsKeyType t;

	for (size_t i = 0; i < G_N_ELEMENTS(names); i++) {
		g_assert_true(kms_key_type_parse(names[i], &t));
		g_assert_cmpstr(kms_key_type_name(t), ==, names[i]);
	}
	g_assert_false(kms_key_type_parse("rsa1024", &t));
	g_assert_false(kms_key_type_parse("", &t));
}

/* Each generated key has the type and size its name promises. */
static void
test_key_generate(gconstpointer data)
{
	KmsKeyType t = GPOINTER_TO_INT(data);
	g_autoptr(GError) err = NULL;
	g_autoptr(EVP_PKEY) key = kms_key_generate(t, &err);
	int want_bits = t == KMS_KEY_RSA2048 ? 2048 : t == KMS_KEY_RSA3072 ?
	    3072 : 256;

	g_assert_no_error(err);
	g_assert_nonnull(key);
	g_assert_cmpint(EVP_PKEY_get_base_id(key), ==,
	    t == KMS_KEY_P256 ? EVP_PKEY_EC : EVP_PKEY_RSA);
	g_assert_cmpint(EVP_PKEY_get_bits(key), ==, want_bits);
}

/* Both forms give one name; the comma form reads as RFC 4514 text. */
static void
test_name_forms(void)
{
	g_autoptr(X509_NAME) a = name("CN=Alice Example, O=Example Org, C=DE");
	g_autoptr(X509_NAME) b = name("/C=DE/O=Example Org/CN=Alice Example");
	g_autofree char *text = kms_x509_name_text(a);
	X509_NAME_ENTRY *first = X509_NAME_get_entry(a, 0);

	g_assert_cmpstr(text, ==, "CN=Alice Example,O=Example Org,C=DE");
	g_assert_cmpint(X509_NAME_entry_count(a), ==, 3);
	g_assert_cmpint(OBJ_obj2nid(X509_NAME_ENTRY_get_object(first)), ==,
	    NID_countryName);
	g_assert_cmpint(X509_NAME_cmp(a, b), ==, 0);
}

/* Escaped separators are data; whitespace around parts is trimmed. */
static void
test_name_escapes_and_spaces(void)
{
	g_autoptr(X509_NAME) a = name("  CN =  Doe\\, John ,O= Zoë Ltd\\\\ ");
	g_autoptr(X509_NAME) b = name("/CN=a\\/b/OU=x, y");
	g_autofree char *cn = name_attr(a, NID_commonName);
	g_autofree char *cn2 = name_attr(b, NID_commonName);
	g_autofree char *ou2 = name_attr(b, NID_organizationalUnitName);
	g_autofree char *text = kms_x509_name_text(a);

	g_assert_cmpstr(cn, ==, "Doe, John");
	g_assert_cmpstr(text, ==, "CN=Doe\\, John,O=Zoë Ltd\\\\");
	g_assert_cmpstr(cn2, ==, "a/b");
	g_assert_cmpstr(ou2, ==, "x, y");
}

/* Each bad name fails with a message saying what is wrong. */
static void
test_name_rejects_bad(void)
{
	static const char *bad[][2] = {
		{"CN=a, XYZ=b", "unknown attribute type \"XYZ\""},
		{"/CN=a/sha256=b", "unknown attribute type \"sha256\""},
		{"", "empty"}, {"   ", "empty"}, {"CN", "not TYPE=value"},
		{"CN=a,,O=b", "not TYPE=value"}, {"/CN=a/", "not TYPE=value"},
		{"CN=", "empty value"}, {"CN=a\\", "backslash at the end"},
		{"CN=a\\ , O=b", "ends in a backslash"},
		{"C=DEU", "C: string too long"},
	};

	for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
		g_autoptr(GError) err = NULL;
		g_autoptr(X509_NAME) n = kms_name_parse(bad[i][0], &err);

		g_assert_null(n);
		g_assert_error(err, KMS_CA_ERROR, KMS_CA_ERROR_INVALID);
		if (strstr(err->message, bad[i][1]) == NULL)
			g_error("\"%s\": got \"%s\", want \"%s\" in it",
			    bad[i][0], err->message, bad[i][1]);
	}
}

/* The root carries the CA extensions and openssl accepts it as an anchor. */
static void
test_root(gconstpointer data)
{
	KmsKeyType t = GPOINTER_TO_INT(data);
	EVP_PKEY *key = CA_KEY(t);
	g_autoptr(X509) root = make_root(key, "CN=Test Root, O=Example", 3650);
	g_autoptr(TestDir) dir = test_dir_new("test-ca");
	const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(root);
	const ASN1_OCTET_STRING *aki = X509_get0_authority_key_id(root);
	g_autofree char *subj = kms_x509_name_text(X509_get_subject_name(root));
	int days, secs;
	long left;

	g_assert_cmpstr(subj, ==, "CN=Test Root,O=Example");
	g_assert_cmpint(X509_get_version(root), ==, X509_VERSION_3);
	g_assert_cmpint(X509_verify(root, key), ==, 1);
	g_assert_cmpint(X509_get_signature_nid(root), ==, t == KMS_KEY_P256 ?
	    NID_ecdsa_with_SHA256 : NID_sha256WithRSAEncryption);
	g_assert_cmphex(X509_get_extension_flags(root) & EXFLAG_CA, ==,
	    EXFLAG_CA);
	g_assert_cmpint(ext_critical(root, NID_basic_constraints), ==, 1);
	g_assert_cmpint(ext_critical(root, NID_key_usage), ==, 1);
	g_assert_cmphex(X509_get_key_usage(root), ==, KU_KEY_CERT_SIGN |
	    KU_CRL_SIGN);
	g_assert_nonnull(ski);
	g_assert_nonnull(aki);
	g_assert_cmpint(ASN1_OCTET_STRING_cmp(ski, aki), ==, 0);
	g_assert_true(ASN1_TIME_diff(&days, &secs, NULL,
	    X509_get0_notAfter(root)));
	left = days * 86400L + secs;
	g_assert_cmpint(left, <=, 3650 * 86400L);
	g_assert_cmpint(left, >, 3650 * 86400L - 60);
	write_pem(dir, "root.pem", root, NULL);
	write_pem(dir, "leaf.pem", root, NULL);
	assert_openssl(dir, NULL, FALSE, TRUE);
}

/* The CSR verifies and asks for a SHA-256-signed CA certificate. */
static void
test_csr(void)
{
	EVP_PKEY *key = CHAIN_KEY(0);
	g_autoptr(GError) err = NULL;
	g_autoptr(X509_REQ) req = kms_ca_make_csr(key,
	    "CN=Intermediate, O=Example", &err);
	g_autoptr(X509) cert = NULL;
	g_autofree char *subj = NULL;

	g_assert_no_error(err);
	g_assert_cmpint(X509_REQ_verify(req, key), ==, 1);
	g_assert_cmpint(X509_REQ_get_signature_nid(req), ==,
	    NID_ecdsa_with_SHA256);
	subj = kms_x509_name_text(X509_REQ_get_subject_name(req));
	g_assert_cmpstr(subj, ==, "CN=Intermediate,O=Example");
	/* Self-sign it to read the requested extensions back. */
	cert = sign_csr(req, NULL, key, 30);
	g_assert_cmphex(X509_get_extension_flags(cert) & EXFLAG_CA, ==,
	    EXFLAG_CA);
	g_assert_cmpint(ext_critical(cert, NID_basic_constraints), ==, 1);
	g_assert_cmpint(ext_critical(cert, NID_key_usage), ==, 1);
	g_assert_cmphex(X509_get_key_usage(cert), ==, KU_KEY_CERT_SIGN |
	    KU_CRL_SIGN);
}

typedef struct {
	KmsKeyType ca;
	KmsKeyType subject;
	KmsCertProfile profile;
} IssueCase;

/*
 * openssl verify accepts the certificate for its profile's purpose and
 * refuses it for the other. OpenSSL 3.0's smimeencrypt purpose demands
 * keyEncipherment, so an EC (keyAgreement) encryption certificate fails
 * both S/MIME purposes there; it is verified without a purpose and shown
 * usable by a CMS round trip instead.
 */
static void
test_issue_openssl(gconstpointer data)
{
	const IssueCase *c = data;
	EVP_PKEY *ca_key = CA_KEY(c->ca);
	EVP_PKEY *pub = SUBJ_KEY(c->subject);
	g_autoptr(X509) root = make_root(ca_key, "CN=Test Root, O=Example",
	    3650);
	g_autoptr(X509) leaf = issue(root, ca_key, pub, c->profile,
	    "http://pki.example.org/kms.crl");
	g_autoptr(TestDir) dir = test_dir_new("test-ca");
	gboolean ec = c->subject == KMS_KEY_P256;

	write_pem(dir, "root.pem", root, NULL);
	write_pem(dir, "leaf.pem", leaf, NULL);
	assert_openssl(dir, NULL, FALSE, TRUE);
	if (c->profile == KMS_PROFILE_SIGNING) {
		assert_openssl(dir, "smimesign", FALSE, TRUE);
		assert_openssl(dir, "smimeencrypt", FALSE, FALSE);
		return;
	}
	assert_openssl(dir, "smimeencrypt", FALSE, !ec);
	assert_openssl(dir, "smimesign", FALSE, FALSE);
	write_pem(dir, "leaf.key", NULL, pub);
	assert_cms_round_trip(dir);
}

/* Each extension parses back with the value the profile promises. */
static void
test_issue_extensions(void)
{
	EVP_PKEY *ca_key = CA_KEY(KMS_KEY_P256);
	g_autoptr(X509) root = make_root(ca_key, "CN=Test Root", 3650);
	const char *url = "http://pki.example.org/a,b=c.crl";
	g_autoptr(X509) enc = issue(root, ca_key, SUBJ_KEY(KMS_KEY_RSA2048),
	    KMS_PROFILE_ENCRYPTION, url);
	g_autoptr(X509) ecc = issue(root, ca_key, SUBJ_KEY(KMS_KEY_P256),
	    KMS_PROFILE_ENCRYPTION, NULL);
	g_autoptr(X509) sig = issue(root, ca_key, SUBJ_KEY(KMS_KEY_P256),
	    KMS_PROFILE_SIGNING, NULL);
	GENERAL_NAMES *san = X509_get_ext_d2i(enc, NID_subject_alt_name, NULL,
	    NULL);
	CRL_DIST_POINTS *cdp = X509_get_ext_d2i(enc,
	    NID_crl_distribution_points, NULL, NULL);
	g_autofree char *cn = name_attr(X509_get_subject_name(enc),
	    NID_commonName);
	g_autofree char *issuer = kms_x509_name_text(
	    X509_get_issuer_name(enc));
	GENERAL_NAME *gn;
	DIST_POINT *dp;

	g_assert_cmpint(X509_get_version(enc), ==, X509_VERSION_3);
	g_assert_cmpint(X509_get_signature_nid(enc), ==,
	    NID_ecdsa_with_SHA256);
	g_assert_cmpstr(cn, ==, "alice@example.org");
	g_assert_cmpint(X509_NAME_entry_count(X509_get_subject_name(enc)), ==,
	    1);
	g_assert_cmpstr(issuer, ==, "CN=Test Root");
	g_assert_nonnull(san);
	g_assert_cmpint(sk_GENERAL_NAME_num(san), ==, 1);
	gn = sk_GENERAL_NAME_value(san, 0);
	g_assert_cmpint(gn->type, ==, GEN_EMAIL);
	g_assert_cmpstr((const char *) ASN1_STRING_get0_data(gn->d.rfc822Name),
	    ==, "alice@example.org");
	g_assert_cmphex(X509_get_extended_key_usage(enc), ==, XKU_SMIME);
	g_assert_nonnull(cdp);
	g_assert_cmpint(sk_DIST_POINT_num(cdp), ==, 1);
	dp = sk_DIST_POINT_value(cdp, 0);
	g_assert_cmpint(dp->distpoint->type, ==, 0);
	gn = sk_GENERAL_NAME_value(dp->distpoint->name.fullname, 0);
	g_assert_cmpint(gn->type, ==, GEN_URI);
	g_assert_cmpstr((const char *) ASN1_STRING_get0_data(
	    gn->d.uniformResourceIdentifier), ==, url);
	g_assert_cmphex(X509_get_extension_flags(enc) & (EXFLAG_BCONS |
	    EXFLAG_CA), ==, EXFLAG_BCONS);
	g_assert_cmpint(ext_critical(enc, NID_basic_constraints), ==, 1);
	g_assert_cmpint(ext_critical(enc, NID_key_usage), ==, 1);
	g_assert_cmphex(X509_get_key_usage(enc), ==, KU_KEY_ENCIPHERMENT);
	g_assert_cmphex(X509_get_key_usage(ecc), ==, KU_KEY_AGREEMENT);
	g_assert_cmphex(X509_get_key_usage(sig), ==, KU_DIGITAL_SIGNATURE |
	    KU_NON_REPUDIATION);
	g_assert_cmpint(ext_critical(ecc, NID_crl_distribution_points), ==, -1);
	g_assert_nonnull(X509_get0_subject_key_id(enc));
	g_assert_cmpint(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(enc),
	    X509_get0_subject_key_id(root)), ==, 0);
	GENERAL_NAMES_free(san);
	CRL_DIST_POINTS_free(cdp);
}

/* Serials are positive, 64 to 127 bits long, and differ. */
static void
test_issue_serials(void)
{
	EVP_PKEY *ca_key = CA_KEY(KMS_KEY_P256);
	g_autoptr(X509) root = make_root(ca_key, "CN=Test Root", 3650);
	g_autoptr(X509) a = issue(root, ca_key, SUBJ_KEY(KMS_KEY_P256),
	    KMS_PROFILE_SIGNING, NULL);
	g_autoptr(X509) b = issue(root, ca_key, SUBJ_KEY(KMS_KEY_P256),
	    KMS_PROFILE_SIGNING, NULL);
	BIGNUM *sa = ASN1_INTEGER_to_BN(X509_get0_serialNumber(a), NULL);
	BIGNUM *sb = ASN1_INTEGER_to_BN(X509_get0_serialNumber(b), NULL);
	BIGNUM *sr = ASN1_INTEGER_to_BN(X509_get0_serialNumber(root), NULL);

	g_assert_false(BN_is_negative(sa));
	g_assert_cmpint(BN_num_bits(sa), >=, 64);
	g_assert_cmpint(BN_num_bits(sa), <=, 127);
	g_assert_cmpint(BN_num_bits(sr), >=, 64);
	g_assert_cmpint(BN_cmp(sa, sb), !=, 0);
	BN_free(sa);
	BN_free(sb);
	BN_free(sr);
}

/* notAfter stops at the CA's; notBefore allows 5 minutes of skew; an
 * explicit common name replaces the address in the subject. */
static void
test_issue_validity_and_name(void)
{
	EVP_PKEY *ca_key = CA_KEY(KMS_KEY_P256);
	g_autoptr(X509) root = make_root(ca_key, "CN=Short Root", 30);
	KmsIssueParams p = {KMS_PROFILE_SIGNING, "bob@example.org",
	    "Bob Müller", 365, NULL};
	g_autoptr(GError) err = NULL;
	g_autoptr(X509) cert = kms_ca_issue(root, ca_key,
	    SUBJ_KEY(KMS_KEY_P256), &p, &err);
	g_autofree char *subj = NULL;
	int days, secs;

	g_assert_no_error(err);
	subj = kms_x509_name_text(X509_get_subject_name(cert));
	g_assert_cmpstr(subj, ==, "CN=Bob Müller");
	g_assert_cmpint(ASN1_TIME_compare(X509_get0_notAfter(cert),
	    X509_get0_notAfter(root)), ==, 0);
	g_assert_true(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(cert),
	    NULL));
	g_assert_cmpint(days, ==, 0);
	g_assert_cmpint(secs, >=, 300);
	g_assert_cmpint(secs, <, 330);
}

/* Bad addresses, names, days, CA keys and key types are refused. */
static void
test_issue_rejects_bad_input(void)
{
	EVP_PKEY *ca_key = CA_KEY(KMS_KEY_P256);
	g_autoptr(X509) root = make_root(ca_key, "CN=Test Root", 3650);
	g_autoptr(EVP_PKEY) ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	g_autofree char *cn65 = g_strnfill(65, 'x');
	static const char *addrs[] = {"alice", "a@b@c", "zoë@example.org",
	    "a b@example.org"};
	KmsIssueParams p = {KMS_PROFILE_SIGNING, "a@example.org", NULL, 30,
	    NULL};

	for (size_t i = 0; i < G_N_ELEMENTS(addrs) + 4; i++) {
		KmsIssueParams q = p;
		EVP_PKEY *k = ca_key, *pub = SUBJ_KEY(KMS_KEY_P256);
		g_autoptr(GError) err = NULL;
		g_autoptr(X509) cert = NULL;

		if (i < G_N_ELEMENTS(addrs))
			q.address = addrs[i];
		else if (i == G_N_ELEMENTS(addrs))
			q.common_name = cn65;
		else if (i == G_N_ELEMENTS(addrs) + 1)
			q.days = 0;
		else if (i == G_N_ELEMENTS(addrs) + 2)
			k = CA_KEY(KMS_KEY_RSA2048);	/* not the root's */
		else
			pub = ed;
		cert = kms_ca_issue(root, k, pub, &q, &err);
		if (cert != NULL)
			g_error("case %zu: got a certificate, want an error",
			    i);
		g_assert_error(err, KMS_CA_ERROR, KMS_CA_ERROR_INVALID);
	}
}

/* Root -> Intermediate, both made by this module, as an admin installs. */
typedef struct {
	X509 *root;
	X509 *sub;
	STACK_OF(X509) *chain;	/* the root alone */
} Chain;

static Chain good;

/* The good two-level chain, built once; borrowed. */
static Chain *
good_chain(void)
{
	g_autoptr(GError) err = NULL;
	g_autoptr(X509_REQ) req = NULL;

	if (good.sub)
		return &good;
	req = kms_ca_make_csr(CHAIN_KEY(0), "CN=Intermediate, O=Example", &err);
	g_assert_no_error(err);
	good.root = make_root(CHAIN_KEY(1), "CN=Test Root, O=Example", 3650);
	good.sub = sign_csr(req, good.root, CHAIN_KEY(1), 1825);
	good.chain = sk_X509_new_null();
	sk_X509_push(good.chain, X509_dup(good.root));
	return &good;
}

/* Assert that the chain check fails with exactly WANT. */
static void
assert_chain_error(EVP_PKEY *key, X509 *ca, STACK_OF(X509) *chain,
    int days, const char *want)
{
	g_autoptr(GError) err = NULL;

	g_assert_false(kms_ca_check_chain(key, ca, chain, days, &err));
	g_assert_error(err, KMS_CA_ERROR, KMS_CA_ERROR_CHAIN);
	g_assert_cmpstr(err->message, ==, want);
}

/* Assert that the good Intermediate under ROOT (consumed) fails with WANT. */
static void
assert_sub_under(X509 *root, const char *want)
{
	g_autoptr(X509Stack) chain = sk_X509_new_null();

	sk_X509_push(chain, root);
	assert_chain_error(CHAIN_KEY(0), good_chain()->sub, chain, 365, want);
}

/* Assert that Sub -> Middle -> Root with these constraints fails: WANT. */
static void
assert_three_levels(const char *root_bc, const char *mid_bc, const char *want)
{
	const char *ku = "keyCertSign,cRLSign";
	g_autoptr(X509_NAME) rn = name("CN=Root");
	g_autoptr(X509_NAME) mn = name("CN=Middle");
	g_autoptr(X509_NAME) sn = name("CN=Sub");
	X509 *root = test_cert(CHAIN_KEY(1), rn, NULL, CHAIN_KEY(1), 0, 3650,
	    root_bc, ku);
	X509 *mid = test_cert(CHAIN_KEY(2), mn, root, CHAIN_KEY(1), 0, 3650,
	    mid_bc, ku);
	g_autoptr(X509) sub = test_cert(CHAIN_KEY(0), sn, mid, CHAIN_KEY(2),
	    0, 3650, "critical,CA:TRUE", ku);
	g_autoptr(X509Stack) chain = sk_X509_new_null();

	sk_X509_push(chain, mid);
	sk_X509_push(chain, root);
	assert_chain_error(CHAIN_KEY(0), sub, chain, 365, want);
}

/* A good chain passes, and certificates issued under it verify. */
static void
test_chain_good(void)
{
	Chain *c = good_chain();
	g_autoptr(GError) err = NULL;
	g_autoptr(X509) leaf = NULL;
	g_autoptr(TestDir) dir = test_dir_new("test-ca");

	g_assert_true(kms_ca_check_chain(CHAIN_KEY(0), c->sub, c->chain, 365,
	    &err));
	g_assert_no_error(err);
	g_assert_true(kms_ca_check_chain(CHAIN_KEY(1), c->root, NULL, 365,
	    &err));
	g_assert_no_error(err);
	leaf = issue(c->sub, CHAIN_KEY(0), SUBJ_KEY(KMS_KEY_RSA2048),
	    KMS_PROFILE_ENCRYPTION, NULL);
	write_pem(dir, "root.pem", c->root, NULL);
	write_pem(dir, "sub.pem", c->sub, NULL);
	write_pem(dir, "leaf.pem", leaf, NULL);
	assert_openssl(dir, "smimeencrypt", TRUE, TRUE);
}

/* The CA certificate must carry the CA key. */
static void
test_chain_wrong_key(void)
{
	assert_chain_error(CHAIN_KEY(1), good_chain()->sub, good_chain()->chain,
	    365, "link 1 (CN=Intermediate,O=Example): the certificate's "
	    "public key is not the CA key");
}

/* Link 1's issuer must be the subject of link 2. */
static void
test_chain_name_mismatch(void)
{
	assert_sub_under(make_root(CHAIN_KEY(1), "CN=Other Root", 3650),
	    "link 1 (CN=Intermediate,O=Example): issuer CN=Test Root,"
	    "O=Example does not match the subject CN=Other Root of link 2");
}

/* A different root with the same name: the names link, the key does not. */
static void
test_chain_bad_signature(void)
{
	assert_sub_under(make_root(CHAIN_KEY(2), "CN=Test Root, O=Example",
	    3650), "link 1 (CN=Intermediate,O=Example): signature does not "
	    "verify with the key of CN=Test Root,O=Example");
}

/* Root -> Middle (CA:FALSE) -> Sub: link 2 is named. */
static void
test_chain_not_ca(void)
{
	assert_three_levels("critical,CA:TRUE", "critical,CA:FALSE",
	    "link 2 (CN=Middle): not a CA certificate (basicConstraints "
	    "CA:TRUE missing)");
}

/* A root with pathlen:0 cannot have our CA two levels below it. */
static void
test_chain_path_length(void)
{
	assert_three_levels("critical,CA:TRUE,pathlen:0", "critical,CA:TRUE",
	    "link 3 (CN=Root): path length constraint 0 allows fewer than "
	    "the 2 CA certificates below it");
}

/* A root expiring within CERT_DAYS is named with its notAfter. */
static void
test_chain_expires_too_soon(void)
{
	X509 *root = make_root(CHAIN_KEY(1), "CN=Test Root, O=Example", 200);
	g_autoptr(X509Stack) chain = sk_X509_new_null();
	g_autofree char *when = kms_asn1_time_iso8601(X509_get0_notAfter(root));
	g_autofree char *want = g_strdup_printf("link 2 (CN=Test Root,"
	    "O=Example): expires %s, before the 365 days user certificates "
	    "need", when);

	sk_X509_push(chain, X509_dup(root));
	g_assert_true(kms_ca_check_chain(CHAIN_KEY(0), good_chain()->sub,
	    chain, 100, NULL));
	assert_sub_under(root, want);
}

/* A chain must end in a self-signed root. */
static void
test_chain_missing_root(void)
{
	assert_chain_error(CHAIN_KEY(0), good_chain()->sub, NULL, 365,
	    "link 1 (CN=Intermediate,O=Example): not self-signed and no "
	    "certificate of its issuer CN=Test Root,O=Example follows");
}

/* A 1024-bit RSA CA is refused. */
static void
test_chain_weak_key(void)
{
	g_autoptr(EVP_PKEY) weak = EVP_PKEY_Q_keygen(NULL, NULL, "RSA",
	    (size_t) 1024);
	g_autoptr(X509) root = make_root(weak, "CN=Weak Root", 3650);

	assert_chain_error(weak, root, NULL, 365, "link 1 (CN=Weak Root): "
	    "RSA key of 1024 bits is too weak (112-bit security needed)");
}

/* Fingerprint and serial match what `openssl x509` prints; DER round
 * trips, and truncated or padded DER is refused. */
static void
test_x509util_matches_openssl(void)
{
	g_autoptr(X509) root = make_root(CA_KEY(KMS_KEY_P256), "CN=Test Root",
	    30);
	g_autoptr(TestDir) dir = test_dir_new("test-ca");
	const char *argv[] = {"openssl", "x509", "-noout", "-in", "root.pem",
	    "-fingerprint", "-sha256", "-serial", NULL};
	g_autofree char *out = NULL;
	g_autofree char *fp = kms_x509_sha256_hex(root);
	g_autofree char *serial = kms_x509_serial_hex(root);
	g_autofree char *want_fp = NULL;
	g_autofree char *want_serial = NULL;
	g_autofree char *lower = NULL;
	g_auto(GStrv) lines = NULL;
	g_auto(GStrv) bytes = NULL;
	g_autoptr(GBytes) der = kms_x509_to_der(root);
	g_autoptr(X509) back = NULL;
	g_autofree guchar *longer = NULL;
	gsize len;
	const guchar *data = g_bytes_get_data(der, &len);

	write_pem(dir, "root.pem", root, NULL);
	g_assert_true(test_run(dir, argv, &out));
	lower = g_ascii_strdown(out, -1);
	lines = g_strsplit(lower, "\n", -1);
	g_assert_true(g_str_has_prefix(lines[0], "sha256 fingerprint="));
	g_assert_true(g_str_has_prefix(lines[1], "serial="));
	bytes = g_strsplit(strchr(lines[0], '=') + 1, ":", -1);
	want_fp = g_strjoinv("", bytes);
	want_serial = g_strdup(strchr(lines[1], '=') + 1);
	g_assert_cmpstr(fp, ==, want_fp);
	g_assert_cmpuint(strlen(fp), ==, 64);
	g_assert_cmpstr(serial, ==, want_serial);
	back = kms_x509_from_der(data, len);
	g_assert_nonnull(back);
	g_assert_cmpint(X509_cmp(root, back), ==, 0);
	g_assert_null(kms_x509_from_der(data, len - 1));
	longer = g_malloc0(len + 1);
	memcpy(longer, data, len);
	g_assert_null(kms_x509_from_der(longer, len + 1));
}

/* GeneralizedTime and UTCTime print as ISO 8601; garbage is NULL. */
static void
test_x509util_time(void)
{
	static const char *times[][2] = {
		{"20270101000000Z", "2027-01-01T00:00:00Z"},
		{"491231235959Z", "2049-12-31T23:59:59Z"},	/* UTCTime */
	};
	ASN1_TIME *t = ASN1_TIME_new();

	for (size_t i = 0; i < G_N_ELEMENTS(times); i++) {
		g_autofree char *text = NULL;

		g_assert_true(ASN1_TIME_set_string(t, times[i][0]));
		text = kms_asn1_time_iso8601(t);
		g_assert_cmpstr(text, ==, times[i][1]);
	}
	g_assert_true(ASN1_STRING_set(t, "garbage", -1));
	g_assert_null(kms_asn1_time_iso8601(t));
	g_assert_null(kms_asn1_time_iso8601(NULL));
	ASN1_TIME_free(t);
}

/* All certificates are read in order; missing, empty or cut files fail. */
static void
test_x509util_pem_file(void)
{
	g_autoptr(X509) a = make_root(CA_KEY(KMS_KEY_P256), "CN=First", 30);
	g_autoptr(X509) b = make_root(CA_KEY(KMS_KEY_P256), "CN=Second", 30);
	g_autoptr(TestDir) dir = test_dir_new("test-ca");
	g_autofree char *pa = kms_x509_to_pem(a);
	g_autofree char *pb = kms_x509_to_pem(b);
	g_autofree char *both = g_strconcat("junk before\n", pa, pb, NULL);
	g_autofree char *path = g_build_filename(dir, "certs.pem", NULL);
	g_autofree char *empty = g_build_filename(dir, "empty.pem", NULL);
	g_autofree char *broken = g_build_filename(dir, "broken.pem", NULL);
	g_autofree char *cut = g_strndup(pa, strlen(pa) - 40);
	g_autofree char *missing = g_build_filename(dir, "missing.pem", NULL);
	const char *bad[] = {missing, empty, broken};
	g_autoptr(GError) err = NULL;
	g_autoptr(X509Stack) certs = NULL;

	g_assert_true(g_str_has_prefix(pa, "-----BEGIN CERTIFICATE-----\n"));
	g_assert_true(g_file_set_contents(path, both, -1, NULL));
	certs = kms_x509_read_pem_file(path, &err);
	g_assert_no_error(err);
	g_assert_cmpint(sk_X509_num(certs), ==, 2);
	g_assert_cmpint(X509_cmp(sk_X509_value(certs, 0), a), ==, 0);
	g_assert_cmpint(X509_cmp(sk_X509_value(certs, 1), b), ==, 0);

	g_assert_true(g_file_set_contents(empty, "no PEM here\n", -1, NULL));
	g_assert_true(g_file_set_contents(broken, cut, -1, NULL));
	for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
		g_autoptr(GError) e = NULL;
		g_autoptr(X509Stack) none = kms_x509_read_pem_file(bad[i], &e);

		g_assert_null(none);
		g_assert_error(e, KMS_CA_ERROR, KMS_CA_ERROR_INVALID);
		if (i == 1 &&
		    strstr(e->message, "no certificate found") == NULL)
			g_error("got \"%s\", want \"no certificate found\"",
			    e->message);
	}
}

static const struct {
	const char *path;
	GTestFunc func;
} tests[] = {
	{"/ca/key-type/parse-and-name", test_key_type_names},
	{"/ca/name/comma-and-slash-forms-agree", test_name_forms},
	{"/ca/name/escapes-and-spaces", test_name_escapes_and_spaces},
	{"/ca/name/rejects-unknown-type-and-malformed", test_name_rejects_bad},
	{"/ca/csr/requests-ca-and-verifies", test_csr},
	{"/ca/issue/extensions-parse-back", test_issue_extensions},
	{"/ca/issue/serials-random-and-long", test_issue_serials},
	{"/ca/issue/validity-capped-backdated-and-common-name",
	 test_issue_validity_and_name},
	{"/ca/issue/rejects-bad-input", test_issue_rejects_bad_input},
	{"/ca/chain/good-two-level-and-issued-cert-verifies", test_chain_good},
	{"/ca/chain/wrong-key", test_chain_wrong_key},
	{"/ca/chain/issuer-name-mismatch", test_chain_name_mismatch},
	{"/ca/chain/same-name-root-bad-signature", test_chain_bad_signature},
	{"/ca/chain/non-ca-certificate", test_chain_not_ca},
	{"/ca/chain/ca-expires-too-soon", test_chain_expires_too_soon},
	{"/ca/chain/missing-root", test_chain_missing_root},
	{"/ca/chain/path-length-exceeded", test_chain_path_length},
	{"/ca/chain/weak-rsa-key", test_chain_weak_key},
	{"/x509util/sha256-serial-der-match-openssl",
	 test_x509util_matches_openssl},
	{"/x509util/iso8601-time", test_x509util_time},
	{"/x509util/read-pem-file", test_x509util_pem_file},
};

/* Register the tests; keys and the good chain are freed at the end. */
int
main(int argc, char **argv)
{
	int rc;

	g_test_init(&argc, &argv, NULL);
	g_test_add_data_func("/ca/key/generate-rsa2048",
	    GINT_TO_POINTER(KMS_KEY_RSA2048), test_key_generate);
	g_test_add_data_func("/ca/key/generate-rsa3072",
	    GINT_TO_POINTER(KMS_KEY_RSA3072), test_key_generate);
	g_test_add_data_func("/ca/key/generate-p256",
	    GINT_TO_POINTER(KMS_KEY_P256), test_key_generate);
	g_test_add_data_func("/ca/root/rsa-has-ca-extensions-and-verifies",
	    GINT_TO_POINTER(KMS_KEY_RSA2048), test_root);
	g_test_add_data_func("/ca/root/p256-has-ca-extensions-and-verifies",
	    GINT_TO_POINTER(KMS_KEY_P256), test_root);
	for (int i = 0; i < 8; i++) {
		IssueCase *c = g_new(IssueCase, 1);
		g_autofree char *path = NULL;

		c->ca = i & 4 ? KMS_KEY_P256 : KMS_KEY_RSA2048;
		c->subject = i & 2 ? KMS_KEY_P256 : KMS_KEY_RSA2048;
		c->profile = i & 1 ? KMS_PROFILE_SIGNING :
		    KMS_PROFILE_ENCRYPTION;
		path = g_strdup_printf("/ca/issue/%s-%s-under-%s-ca-verifies-"
		    "with-openssl", i & 1 ? "signing" : "encryption",
		    i & 2 ? "p256" : "rsa", i & 4 ? "p256" : "rsa");
		g_test_add_data_func_full(path, c, test_issue_openssl, g_free);
	}
	for (size_t i = 0; i < G_N_ELEMENTS(tests); i++)
		g_test_add_func(tests[i].path, tests[i].func);
	rc = g_test_run();
	X509_free(good.root);
	X509_free(good.sub);
	sk_X509_pop_free(good.chain, X509_free);
	for (size_t i = 0; i < G_N_ELEMENTS(key_cache); i++)
		EVP_PKEY_free(key_cache[i]);
	return rc;
}
