/*
 * NAME
 *	test-harvest - unit tests for smime/harvest.c, smime/cmsverify.c and
 *	smime/capabilities.c
 * DESCRIPTION
 *	A CA and signer certificates (RSA and P-256, with and without SAN
 *	email) are made with the openssl CLI in a private temporary
 *	directory; messages are signed with `openssl cms -sign` (detached and
 *	opaque) and with the OpenSSL library where the CLI cannot (AES-GCM
 *	and RSAES-OAEP capabilities, SMIMEEncryptionKeyPreference, a bad
 *	second signer). The harvest results are checked field by field;
 *	hostile shapes (deep nesting, many parts, broken CMS) must give
 *	problem lines, never crashes.
 * SECURITY
 *	Test keys live only in the temporary directory, removed at the end.
 */
#include "smime/capabilities.h"
#include "smime/harvest.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

G_DEFINE_AUTOPTR_CLEANUP_FUNC(KmsHarvestResult, kms_harvest_result_free)

#define DAY	(24 * 60 * 60)

/* What `openssl cms -sign` (OpenSSL 3.0) announces when not told
 * -nosmimecap, in its order. */
static const char *const openssl_cli_caps[] = {"aes256-cbc", "aes192-cbc",
    "aes128-cbc", "des-ede3-cbc", "rc2-cbc-128", "rc2-cbc-64", "des-cbc",
    "rc2-cbc-40", NULL};

/* What the library-built signer announces. */
static const char *const library_caps[] = {"aes256-gcm", "aes128-gcm",
    "aes256-cbc", "rsaes-oaep-sha256", NULL};

/* Keys, certificates and CLI-signed messages shared by the tests. */
static struct {
	char *dir;		/* temporary directory holding the files */
	X509 *ca;
	X509_STORE *store;	/* trusts ca */
	X509 *bob;		/* RSA, SAN bob@EXAMPLE.Org, subject robert@ */
	EVP_PKEY *bob_key;
	X509 *carol;		/* P-256, SAN carol@example.org */
	EVP_PKEY *carol_key;
	X509 *bob_enc;		/* bob's encryption certificate */
} fx;

/* Run openssl with the NULL-terminated arguments in the fixture
 * directory; fail the test unless it exits 0. */
static void
openssl(const char *first, ...)
{
	g_autoptr(GPtrArray) argv = g_ptr_array_new();
	g_autoptr(GError) err = NULL;
	g_autofree char *out = NULL;
	g_autofree char *errs = NULL;
	const char *a;
	va_list ap;
	int status;

	g_ptr_array_add(argv, (char *) "openssl");
	va_start(ap, first);
	for (a = first; a; a = va_arg(ap, const char *))
		g_ptr_array_add(argv, (char *) a);
	va_end(ap);
	g_ptr_array_add(argv, NULL);
	g_spawn_sync(fx.dir, (char **) argv->pdata, NULL, G_SPAWN_SEARCH_PATH,
	    NULL, NULL, &out, &errs, &status, &err);
	g_assert_no_error(err);
	if (!g_spawn_check_wait_status(status, NULL))
		g_error("openssl %s: got \"%s%s\", want exit 0", first, out,
		    errs);
}

/* Path of NAME in the fixture directory; g_free. */
static char *
fx_path(const char *name)
{
	return g_build_filename(fx.dir, name, NULL);
}

/* Write TEXT to NAME in the fixture directory. */
static void
write_text(const char *name, const char *text)
{
	g_autofree char *path = fx_path(name);

	g_assert_true(g_file_set_contents(path, text, -1, NULL));
}

/* Contents of NAME in the fixture directory; g_free. */
static char *
read_text(const char *name)
{
	g_autofree char *path = fx_path(name);
	g_autoptr(GError) err = NULL;
	char *text = NULL;

	g_file_get_contents(path, &text, NULL, &err);
	g_assert_no_error(err);
	return text;
}

/* Read the certificate in NAME. */
static X509 *
read_cert(const char *name)
{
	g_autofree char *path = fx_path(name);
	BIO *b = BIO_new_file(path, "r");
	X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;

	BIO_free(b);
	g_assert_nonnull(x);
	return x;
}

/* Read the private key in NAME. */
static EVP_PKEY *
read_key(const char *name)
{
	g_autofree char *path = fx_path(name);
	BIO *b = BIO_new_file(path, "r");
	EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;

	BIO_free(b);
	g_assert_nonnull(k);
	return k;
}

/* Issue NAME.pem (key NAME.key of KEYSPEC, -pkeyopt EC unless NULL) under
 * the CA with SUBJECT and the extension lines EXT. */
static void
make_leaf(const char *name, const char *keyspec, const char *ec,
    const char *subject, const char *serial, const char *ext)
{
	g_autofree char *key = g_strconcat(name, ".key", NULL);
	g_autofree char *csr = g_strconcat(name, ".csr", NULL);
	g_autofree char *pem = g_strconcat(name, ".pem", NULL);
	g_autofree char *extf = g_strconcat(name, ".ext", NULL);

	write_text(extf, ext);
	if (ec)
		openssl("req", "-newkey", keyspec, "-pkeyopt", ec, "-nodes",
		    "-keyout", key, "-out", csr, "-subj", subject, NULL);
	else
		openssl("req", "-newkey", keyspec, "-nodes", "-keyout", key,
		    "-out", csr, "-subj", subject, NULL);
	openssl("x509", "-req", "-in", csr, "-CA", "ca.pem", "-CAkey",
	    "ca.key", "-set_serial", serial, "-days", "30", "-sha256",
	    "-extfile", extf, "-out", pem, NULL);
}

#define SIGN_EXT "basicConstraints=CA:FALSE\n" \
	"keyUsage=critical,digitalSignature,nonRepudiation\n" \
	"extendedKeyUsage=emailProtection\nsubjectKeyIdentifier=hash\n" \
	"authorityKeyIdentifier=keyid\n"

/* Make the CA, the signers and the CLI-signed messages once. */
static void
fixture_setup(void)
{
	g_autoptr(GError) err = NULL;

	fx.dir = g_dir_make_tmp("test-harvest-XXXXXX", &err);
	g_assert_no_error(err);
	openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
	    "ca.key", "-out", "ca.pem", "-subj", "/CN=Harvest Test CA",
	    "-days", "3650", "-addext", "basicConstraints=critical,CA:TRUE",
	    "-addext", "keyUsage=critical,keyCertSign,cRLSign", NULL);
	make_leaf("bob", "rsa:2048", NULL,
	    "/CN=Bob/emailAddress=robert@example.org", "2",
	    SIGN_EXT "subjectAltName=email:bob@EXAMPLE.Org\n");
	make_leaf("carol", "ec", "ec_paramgen_curve:P-256", "/CN=Carol", "3",
	    SIGN_EXT "subjectAltName=email:carol@example.org\n");
	make_leaf("dave", "ec", "ec_paramgen_curve:P-256",
	    "/CN=Dave/emailAddress=Dave@Example.NET", "4", SIGN_EXT);
	make_leaf("bobenc", "rsa:2048", NULL, "/CN=Bob encryption", "5",
	    "basicConstraints=CA:FALSE\nkeyUsage=critical,keyEncipherment\n"
	    "extendedKeyUsage=emailProtection\nsubjectKeyIdentifier=hash\n"
	    "subjectAltName=email:bob@example.org\n");
	fx.ca = read_cert("ca.pem");
	fx.bob = read_cert("bob.pem");
	fx.bob_key = read_key("bob.key");
	fx.carol = read_cert("carol.pem");
	fx.carol_key = read_key("carol.key");
	fx.bob_enc = read_cert("bobenc.pem");
	fx.store = X509_STORE_new();
	g_assert_cmpint(X509_STORE_add_cert(fx.store, fx.ca), ==, 1);

	write_text("part.txt", "Content-Type: text/plain; charset=us-ascii\n\n"
	    "hello world\n");
	openssl("cms", "-sign", "-in", "part.txt", "-signer", "bob.pem",
	    "-inkey", "bob.key", "-from", "alice@example.org", "-to",
	    "rcpt@example.org", "-subject", "signed", "-out", "det.eml", NULL);
	openssl("cms", "-sign", "-in", "part.txt", "-signer", "bob.pem",
	    "-inkey", "bob.key", "-out", "det-bare.eml", NULL);
	openssl("cms", "-sign", "-in", "part.txt", "-signer", "bob.pem",
	    "-inkey", "bob.key", "-nosmimecap", "-out", "det-nocap.eml", NULL);
	openssl("cms", "-sign", "-in", "part.txt", "-signer", "bob.pem",
	    "-inkey", "bob.key", "-certfile", "ca.pem", "-out", "det-ca.eml",
	    NULL);
	openssl("cms", "-sign", "-in", "part.txt", "-signer", "bob.pem",
	    "-inkey", "bob.key", "-nodetach", "-out", "opaque.eml", NULL);
	openssl("cms", "-sign", "-in", "part.txt", "-signer", "carol.pem",
	    "-inkey", "carol.key", "-out", "det-carol.eml", NULL);
	openssl("cms", "-sign", "-in", "part.txt", "-signer", "dave.pem",
	    "-inkey", "dave.key", "-out", "det-dave.eml", NULL);
	/* Opaque signature by carol around bob's detached one. */
	openssl("cms", "-sign", "-in", "det-bare.eml", "-signer", "carol.pem",
	    "-inkey", "carol.key", "-nodetach", "-out", "opaque-nested.eml",
	    NULL);
}

/* Remove the fixture directory and free the objects. */
static void
fixture_teardown(void)
{
	GDir *d = g_dir_open(fx.dir, 0, NULL);
	const char *name;

	while (d && (name = g_dir_read_name(d)) != NULL) {
		g_autofree char *path = fx_path(name);

		g_unlink(path);
	}
	if (d)
		g_dir_close(d);
	g_rmdir(fx.dir);
	g_free(fx.dir);
	X509_free(fx.ca);
	X509_free(fx.bob);
	X509_free(fx.carol);
	X509_free(fx.bob_enc);
	EVP_PKEY_free(fx.bob_key);
	EVP_PKEY_free(fx.carol_key);
	X509_STORE_free(fx.store);
}

/* Harvest TEXT with default options and TRUST (NULL: nothing trusted). */
static KmsHarvestResult *
harvest(const char *text, X509_STORE *trust)
{
	KmsHarvestOptions o;

	kms_harvest_options_init(&o);
	o.trust = trust;
	return kms_harvest(&o, text, strlen(text));
}

/* Replace every FROM in TEXT by TO; g_free. */
static char *
replace(const char *text, const char *from, const char *to)
{
	g_auto(GStrv) parts = g_strsplit(text, from, -1);

	g_assert_cmpuint(g_strv_length(parts), >, 1);
	return g_strjoinv(to, parts);
}

/* Assert that R has exactly one signer with STATUS; return it. */
static KmsHarvestSigner *
one_signer(KmsHarvestResult *r, KmsSignerStatus status)
{
	KmsHarvestSigner *s;

	if (r->signers->len != 1)
		g_error("signers: got %u, want 1 (first problem: %s)",
		    r->signers->len, r->problems->len ?
		    (char *) r->problems->pdata[0] : "none");
	s = g_ptr_array_index(r->signers, 0);
	if (s->status != status)
		g_error("status: got %s (%s), want %s",
		    kms_signer_status_name(s->status),
		    s->detail ? s->detail : "no detail",
		    kms_signer_status_name(status));
	return s;
}

/* Assert that some problem line of R contains WANT. */
static void
assert_problem(KmsHarvestResult *r, const char *want)
{
	GString *all = g_string_new(NULL);

	for (guint i = 0; i < r->problems->len; i++) {
		if (strstr(g_ptr_array_index(r->problems, i), want)) {
			g_string_free(all, TRUE);
			return;
		}
		g_string_append_printf(all, "\"%s\" ",
		    (char *) g_ptr_array_index(r->problems, i));
	}
	g_error("problems: got %s, want one containing \"%s\"",
	    all->len ? all->str : "none", want);
}

/* Assert that the string array GOT equals the NULL-terminated WANT. */
static void
assert_strings(const char *what, GPtrArray *got, const char *const *want)
{
	g_autofree char *want_text = g_strjoinv(",", (char **) want);
	g_autoptr(GString) got_text = g_string_new(NULL);

	for (guint i = 0; got && i < got->len; i++)
		g_string_append_printf(got_text, "%s%s", i ? "," : "",
		    (char *) g_ptr_array_index(got, i));
	if (strcmp(got_text->str, want_text) != 0)
		g_error("%s: got \"%s\", want \"%s\"", what, got_text->str,
		    want_text);
}

/* A CLI-signed message, maybe edited, and what harvesting it must give. */
typedef struct {
	const char *path;
	const char *file;		/* in the fixture directory */
	const char *from, *to;		/* replace FROM by TO first (or NULL) */
	int days_later;			/* verify this many days from now */
	KmsSignerStatus status;
	const char *detail;		/* NULL: none, "*": any */
	const char *address;		/* the one address wanted */
	const char *const *caps;	/* NULL: no SMIMECapabilities */
} CliCase;

static const CliCase cli_cases[] = {
	{"/harvest/detached/rsa-signer-trusted-with-ca-in-store", "det.eml",
	 NULL, NULL, 0, KMS_SIGNER_TRUSTED, NULL, "bob@example.org",
	 openssl_cli_caps},
	{"/harvest/capabilities/openssl-cli-default-list", "det.eml", NULL,
	 NULL, 0, KMS_SIGNER_TRUSTED, NULL, "bob@example.org",
	 openssl_cli_caps},
	{"/harvest/detached/p256-signer-trusted", "det-carol.eml", NULL, NULL,
	 0, KMS_SIGNER_TRUSTED, NULL, "carol@example.org", openssl_cli_caps},
	{"/harvest/detached/expired-when-verified-after-not-after", "det.eml",
	 NULL, NULL, 40, KMS_SIGNER_EXPIRED, "certificate has expired",
	 "bob@example.org", openssl_cli_caps},
	{"/harvest/detached/one-byte-tampered-is-bad-signature", "det.eml",
	 "hello world", "hello wOrld", 0, KMS_SIGNER_BAD_SIGNATURE, "*",
	 "bob@example.org", openssl_cli_caps},
	{"/harvest/detached/x-pkcs7-signature-recognised", "det.eml",
	 "application/pkcs7-signature", "application/x-pkcs7-signature", 0,
	 KMS_SIGNER_TRUSTED, NULL, "bob@example.org", openssl_cli_caps},
	/* From: says alice@, the subject robert@: the SAN wins. */
	{"/harvest/addresses/from-san-not-from-header", "det.eml", NULL, NULL,
	 0, KMS_SIGNER_TRUSTED, NULL, "bob@example.org", openssl_cli_caps},
	{"/harvest/addresses/subject-email-without-san", "det-dave.eml", NULL,
	 NULL, 0, KMS_SIGNER_TRUSTED, NULL, "Dave@example.net",
	 openssl_cli_caps},
	{"/harvest/capabilities/absent-with-nosmimecap", "det-nocap.eml", NULL,
	 NULL, 0, KMS_SIGNER_TRUSTED, NULL, "bob@example.org", NULL},
	{"/harvest/opaque/signed-data-trusted", "opaque.eml", NULL, NULL, 0,
	 KMS_SIGNER_TRUSTED, NULL, "bob@example.org", openssl_cli_caps},
	{"/harvest/opaque/p7m-name-without-smime-type", "opaque.eml",
	 " smime-type=signed-data;", "", 0, KMS_SIGNER_TRUSTED, NULL,
	 "bob@example.org", openssl_cli_caps},
};

/* Harvest one CliCase and check every field of its single signer; the
 * capability lists assert exactly what `openssl cms -sign` announces. */
static void
test_cli_case(gconstpointer data)
{
	const CliCase *c = data;
	const char *const want_addr[] = {c->address, NULL};
	g_autofree char *msg = read_text(c->file);
	g_autofree char *edited = c->from ? replace(msg, c->from, c->to) :
	    g_strdup(msg);
	g_autoptr(KmsHarvestResult) r = NULL;
	time_t now = time(NULL);
	KmsHarvestOptions o;
	KmsHarvestSigner *s;

	kms_harvest_options_init(&o);
	o.trust = fx.store;
	o.now = c->days_later ? now + c->days_later * DAY : 0;
	r = kms_harvest(&o, edited, strlen(edited));
	s = one_signer(r, c->status);
	g_assert_cmpuint(r->signatures, ==, 1);
	g_assert_cmpuint(r->problems->len, ==, 0);
	if (c->detail == NULL || strcmp(c->detail, "*") != 0)
		g_assert_cmpstr(s->detail, ==, c->detail);
	else
		g_assert_nonnull(s->detail);
	assert_strings("addresses", s->addresses, want_addr);
	g_assert_cmpint(s->has_capabilities, ==, c->caps != NULL);
	if (c->caps)
		assert_strings("capabilities", s->capabilities, c->caps);
	else
		g_assert_cmpuint(s->capabilities->len, ==, 0);
	g_assert_cmpint(s->signing_time, >, now - 3600);
	g_assert_cmpint(s->signing_time, <=, now);
	g_assert_null(s->key_preference);
	/* Only a verified signature makes its certificates harvestable. */
	if (c->status == KMS_SIGNER_BAD_SIGNATURE)
		g_assert_cmpint(sk_X509_num(r->certs), ==, 0);
	else {
		g_assert_cmpint(sk_X509_num(r->certs), ==, 1);
		g_assert_cmpint(X509_cmp(sk_X509_value(r->certs, 0), s->cert),
		    ==, 0);
	}
}

/* Without the CA in the store (none at all, or an empty one) the
 * signature still verifies but the chain does not. */
static void
test_detached_untrusted(void)
{
	g_autofree char *msg = read_text("det.eml");
	X509_STORE *empty = X509_STORE_new();
	KmsHarvestResult *r;
	KmsHarvestSigner *s;

	for (int i = 0; i < 2; i++) {
		r = harvest(msg, i ? empty : NULL);
		s = one_signer(r, KMS_SIGNER_UNTRUSTED_CHAIN);
		g_assert_cmpstr(s->detail, ==, "unable to get local issuer "
		    "certificate");
		/* The signature held: its certificates are harvested. */
		g_assert_cmpint(sk_X509_num(r->certs), ==, 1);
		kms_harvest_result_free(r);
	}
	X509_STORE_free(empty);
}

/* The same message with only LF, and with only CRLF, line ends. */
static void
test_detached_line_ends(void)
{
	g_autofree char *msg = read_text("det.eml");
	g_auto(GStrv) lines = NULL;
	g_autofree char *lf = NULL;
	g_autofree char *crlf = NULL;
	GString *s = g_string_new(NULL);

	for (const char *p = msg; *p; p++)
		if (*p != '\r')
			g_string_append_c(s, *p);
	lf = g_string_free(s, FALSE);
	lines = g_strsplit(lf, "\n", -1);
	crlf = g_strjoinv("\r\n", lines);
	g_assert_null(strchr(lf, '\r'));
	for (int i = 0; i < 2; i++) {
		g_autoptr(KmsHarvestResult) r = harvest(i ? crlf : lf,
		    fx.store);

		one_signer(r, KMS_SIGNER_TRUSTED);
	}
}

/* A bare signer info to hang attributes on (detached, nothing signed). */
static CMS_ContentInfo *
partial_cms(CMS_SignerInfo **si)
{
	CMS_ContentInfo *cms = CMS_sign(NULL, NULL, NULL, NULL,
	    CMS_PARTIAL | CMS_DETACHED | CMS_BINARY);

	g_assert_nonnull(cms);
	*si = CMS_add1_signer(cms, fx.bob, fx.bob_key, EVP_sha256(),
	    CMS_NOSMIMECAP | CMS_BINARY);
	g_assert_nonnull(*si);
	return cms;
}

/* Names survive kms_capabilities_add_to_signer and _from_signer, in
 * order; unknown names and too many names are refused. */
static void
test_capabilities_round_trip(void)
{
	static const char *const names[] = {"aes256-gcm", "aes192-gcm",
	    "aes128-gcm", "aes256-cbc", "aes192-cbc", "aes128-cbc",
	    "des-ede3-cbc", "des-cbc", "rc2-cbc-128", "rc2-cbc-64",
	    "rc2-cbc-40", "rsaes-oaep", "rsaes-oaep-sha256",
	    "rsaes-oaep-sha512", "rsa-encryption", "1.2.3.4.5", NULL};
	static const char *const bad[] = {"aes512-cbc", "rc2-cbc-0",
	    "rsaes-oaep-md5", "rc2-cbc-x"};
	static const char *const empty[] = {NULL};
	const char *many[KMS_CAPABILITIES_MAX + 2];
	CMS_SignerInfo *si;
	CMS_ContentInfo *cms = partial_cms(&si);
	g_autoptr(GPtrArray) got = NULL;
	GPtrArray *none;

	g_assert_null(kms_capabilities_from_signer(si));
	for (int i = 0; i < 2; i++) {	/* the second call replaces */
		g_autoptr(GError) err = NULL;

		g_assert_true(kms_capabilities_add_to_signer(si, names, &err));
		g_assert_no_error(err);
	}
	g_assert_cmpint(CMS_signed_get_attr_by_NID(si, NID_SMIMECapabilities,
	    CMS_signed_get_attr_by_NID(si, NID_SMIMECapabilities, -1)), <, 0);
	got = kms_capabilities_from_signer(si);
	assert_strings("capabilities", got, names);
	for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
		g_autoptr(GError) err = NULL;
		const char *one[] = {bad[i], NULL};

		if (kms_capabilities_add_to_signer(si, one, &err))
			g_error("%s: got accepted, want refused", bad[i]);
		g_assert_error(err, KMS_CAPABILITIES_ERROR,
		    KMS_CAPABILITIES_ERROR_UNKNOWN);
	}
	for (int i = 0; i < KMS_CAPABILITIES_MAX + 1; i++)
		many[i] = "aes128-cbc";
	many[KMS_CAPABILITIES_MAX + 1] = NULL;
	{
		g_autoptr(GError) err = NULL;

		g_assert_false(kms_capabilities_add_to_signer(si, many, &err));
		g_assert_error(err, KMS_CAPABILITIES_ERROR,
		    KMS_CAPABILITIES_ERROR_FAILED);
	}
	/* An empty list is present but empty. */
	g_assert_true(kms_capabilities_add_to_signer(si, empty, NULL));
	none = kms_capabilities_from_signer(si);
	g_assert_nonnull(none);
	g_assert_cmpuint(none->len, ==, 0);
	g_ptr_array_unref(none);
	CMS_ContentInfo_free(cms);
}

typedef enum {
	PREF_NONE,
	PREF_ISSUER_SERIAL,	/* [0] IMPLICIT IssuerAndSerialNumber */
	PREF_KEY_ID,		/* [2] subjectAltKeyIdentifier */
	PREF_MICROSOFT,		/* 1.3.6.1.4.1.311.16.4 IssuerAndSerialNumber */
	PREF_NOT_INCLUDED,	/* names bob_enc, which is not in the CMS */
} PrefKind;

/* DER of TAG (class XCLASS, constructed when CONS) around BODY/LEN;
 * OPENSSL_free. */
static unsigned char *
der_wrap(int cons, int tag, int xclass, const unsigned char *body, int len,
    int *outlen)
{
	int total = ASN1_object_size(cons, len, tag);
	unsigned char *der = OPENSSL_malloc((size_t) total), *p = der;

	ASN1_put_object(&p, cons, len, tag, xclass);
	memcpy(p, body, (size_t) len);
	*outlen = total;
	return der;
}

/* Add an encryption key preference of KIND naming bob_enc to SI. */
static void
add_key_preference(CMS_SignerInfo *si, PrefKind kind)
{
	unsigned char *name = NULL, *serial = NULL, *der;
	int nlen = i2d_X509_NAME(X509_get_issuer_name(fx.bob_enc), &name);
	int slen = i2d_ASN1_INTEGER(X509_get0_serialNumber(fx.bob_enc),
	    &serial);
	unsigned char *is = g_malloc((size_t) (nlen + slen));
	const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(fx.bob_enc);
	ASN1_OBJECT *ms = OBJ_txt2obj("1.3.6.1.4.1.311.16.4", 1);
	int len, ok;

	memcpy(is, name, (size_t) nlen);
	memcpy(is + nlen, serial, (size_t) slen);
	if (kind == PREF_KEY_ID)
		der = der_wrap(0, 2, V_ASN1_CONTEXT_SPECIFIC,
		    ASN1_STRING_get0_data(ski), ASN1_STRING_length(ski), &len);
	else if (kind == PREF_MICROSOFT)
		der = der_wrap(1, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL, is,
		    nlen + slen, &len);
	else
		der = der_wrap(1, 0, V_ASN1_CONTEXT_SPECIFIC, is, nlen + slen,
		    &len);
	if (kind == PREF_MICROSOFT)
		ok = CMS_signed_add1_attr_by_OBJ(si, ms, V_ASN1_SEQUENCE, der,
		    len);
	else {
		/* A context tag: an "other" value kept in its DER form. */
		ASN1_STRING *value = ASN1_STRING_new();
		X509_ATTRIBUTE *attr;

		g_assert_true(ASN1_STRING_set(value, der, len));
		attr = X509_ATTRIBUTE_create(NID_id_smime_aa_encrypKeyPref,
		    V_ASN1_OTHER, value);
		g_assert_nonnull(attr);
		ok = CMS_signed_add1_attr(si, attr);
		X509_ATTRIBUTE_free(attr);
	}
	g_assert_true(ok);
	ASN1_OBJECT_free(ms);
	OPENSSL_free(der);
	OPENSSL_free(name);
	OPENSSL_free(serial);
	g_free(is);
}

/*
 * Sign CONTENT (canonical, detached) with the library as bob announcing
 * library_caps and key preference KIND; with BAD_SECOND, carol signs too
 * and bob's signature value is then damaged. Caller frees.
 */
static CMS_ContentInfo *
library_sign(const char *content, PrefKind kind, gboolean bad_second)
{
	CMS_SignerInfo *si, *si2 = NULL;
	CMS_ContentInfo *cms = partial_cms(&si);
	g_autoptr(GError) err = NULL;
	BIO *in;

	g_assert_true(kms_capabilities_add_to_signer(si, library_caps, &err));
	g_assert_no_error(err);
	if (kind != PREF_NONE)
		add_key_preference(si, kind);
	if (kind != PREF_NOT_INCLUDED)
		g_assert_true(CMS_add1_cert(cms, fx.bob_enc));
	if (bad_second) {
		si2 = CMS_add1_signer(cms, fx.carol, fx.carol_key, EVP_sha256(),
		    CMS_BINARY);
		g_assert_nonnull(si2);
	}
	in = BIO_new_mem_buf(content, -1);
	g_assert_cmpint(CMS_final(cms, in, NULL, CMS_DETACHED | CMS_BINARY),
	    ==, 1);
	BIO_free(in);
	if (bad_second) {
		ASN1_OCTET_STRING *sig = CMS_SignerInfo_get0_signature(si);

		sig->data[sig->length / 2] ^= 0x01;
	}
	return cms;
}

/* Detached multipart/signed text of CMS over CONTENT, as OpenSSL writes
 * it; g_free. */
static char *
smime_text(CMS_ContentInfo *cms, const char *content)
{
	BIO *in = BIO_new_mem_buf(content, -1);
	BIO *out = BIO_new(BIO_s_mem());
	char *data;
	long len;
	char *text;

	/* REUSE_DIGEST: copy the content as is instead of signing again. */
	g_assert_cmpint(SMIME_write_CMS(out, cms, in, CMS_DETACHED |
	    CMS_BINARY | CMS_REUSE_DIGEST), ==, 1);
	len = BIO_get_mem_data(out, &data);
	text = g_strndup(data, (gsize) len);
	BIO_free(in);
	BIO_free(out);
	return text;
}

#define LIB_CONTENT "Content-Type: text/plain; charset=UTF-8\r\n\r\n" \
	"signed by the library\r\n"

/* AES-GCM/OAEP capabilities, the key preference (in each encoding) and
 * the signing time of a library-built signer. */
static void
test_library_key_preference(gconstpointer data)
{
	PrefKind kind = GPOINTER_TO_INT(data);
	CMS_ContentInfo *cms = library_sign(LIB_CONTENT, kind, FALSE);
	g_autofree char *msg = smime_text(cms, LIB_CONTENT);
	g_autoptr(KmsHarvestResult) r = harvest(msg, fx.store);
	KmsHarvestSigner *s = one_signer(r, KMS_SIGNER_TRUSTED);
	time_t now = time(NULL);

	assert_strings("capabilities", s->capabilities, library_caps);
	g_assert_cmpint(s->signing_time, >, now - 3600);
	g_assert_cmpint(s->signing_time, <=, now);
	if (kind == PREF_NOT_INCLUDED) {
		g_assert_null(s->key_preference);
		assert_problem(r, "encryption key preference names no "
		    "certificate");
		g_assert_cmpint(sk_X509_num(r->certs), ==, 1);
	} else {
		g_assert_nonnull(s->key_preference);
		g_assert_cmpint(X509_cmp(s->key_preference, fx.bob_enc), ==, 0);
		g_assert_cmpuint(r->problems->len, ==, 0);
		g_assert_cmpint(sk_X509_num(r->certs), ==, 2);
	}
	CMS_ContentInfo_free(cms);
}

/* Two signers, bob's damaged: each is reported on its own (DER sorts the
 * SET OF SignerInfo, so they are told apart by certificate), and the good
 * one makes the certificates harvestable. */
static void
test_library_two_signers_one_bad(void)
{
	CMS_ContentInfo *cms = library_sign(LIB_CONTENT, PREF_NONE, TRUE);
	g_autofree char *msg = smime_text(cms, LIB_CONTENT);
	g_autoptr(KmsHarvestResult) r = harvest(msg, fx.store);
	KmsHarvestSigner *bob = NULL, *carol = NULL;

	g_assert_cmpuint(r->signers->len, ==, 2);
	for (guint i = 0; i < r->signers->len; i++) {
		KmsHarvestSigner *s = g_ptr_array_index(r->signers, i);

		if (X509_cmp(s->cert, fx.bob) == 0)
			bob = s;
		else if (X509_cmp(s->cert, fx.carol) == 0)
			carol = s;
	}
	g_assert_nonnull(bob);
	g_assert_nonnull(carol);
	g_assert_cmpstr(kms_signer_status_name(bob->status), ==,
	    "bad-signature");
	g_assert_cmpstr(kms_signer_status_name(carol->status), ==, "trusted");
	g_assert_cmpint(sk_X509_num(r->certs), ==, 3);
	CMS_ContentInfo_free(cms);
}

/* max_signers: only the first is examined, with a problem line. */
static void
test_limits_max_signers(void)
{
	CMS_ContentInfo *cms = library_sign(LIB_CONTENT, PREF_NONE, TRUE);
	g_autofree char *msg = smime_text(cms, LIB_CONTENT);
	g_autoptr(KmsHarvestResult) r = NULL;
	KmsHarvestOptions o;

	kms_harvest_options_init(&o);
	o.trust = fx.store;
	o.max_signers = 1;
	r = kms_harvest(&o, msg, strlen(msg));
	g_assert_cmpuint(r->signers->len, ==, 1);
	assert_problem(r, "2 signers: only the first 1 examined");
	CMS_ContentInfo_free(cms);
}

#define TB_ALT "Content-Type: multipart/alternative;\r\n" \
	" boundary=\"------------alt0123456789\"\r\n\r\n" \
	"This is a multi-part message in MIME format.\r\n" \
	"--------------alt0123456789\r\n" \
	"Content-Type: text/plain; charset=UTF-8; format=flowed\r\n" \
	"Content-Transfer-Encoding: 7bit\r\n\r\nHi Bob, \r\n\r\n" \
	"--------------alt0123456789\r\n" \
	"Content-Type: text/html; charset=UTF-8\r\n" \
	"Content-Transfer-Encoding: 7bit\r\n\r\n<p>Hi Bob,</p>\r\n" \
	"--------------alt0123456789--\r\n"

/* Thunderbird's shape: CRLF throughout, folded headers, a multipart as
 * the signed content, a blank line before the delimiter. */
static void
test_thunderbird_style(void)
{
	CMS_ContentInfo *cms = library_sign(TB_ALT, PREF_ISSUER_SERIAL, FALSE);
	unsigned char *der = NULL;
	int len = i2d_CMS_ContentInfo(cms, &der);
	g_autofree char *b64 = g_base64_encode(der, (gsize) len);
	g_autoptr(GString) msg = g_string_new(
	    "Message-ID: <1@example.org>\r\n"
	    "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
	    "MIME-Version: 1.0\r\nFrom: Alice <alice@example.org>\r\n"
	    "To: carol@example.org\r\nSubject: tb\r\n"
	    "Content-Type: multipart/signed;\r\n"
	    " protocol=\"application/pkcs7-signature\";\r\n"
	    " micalg=sha-256; boundary=\"------------ms010203040506\"\r\n\r\n"
	    "This is a cryptographically signed message in MIME format.\r\n\r\n"
	    "--------------ms010203040506\r\n" TB_ALT "\r\n"
	    "--------------ms010203040506\r\n"
	    "Content-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\n"
	    "Content-Transfer-Encoding: base64\r\n"
	    "Content-Disposition: attachment; filename=\"smime.p7s\"\r\n"
	    "Content-Description: S/MIME Cryptographic Signature\r\n\r\n");
	g_autoptr(KmsHarvestResult) r = NULL;
	KmsHarvestSigner *s;

	for (size_t i = 0, n = strlen(b64); i < n; i += 72)
		g_string_append_printf(msg, "%.72s\r\n", b64 + i);
	g_string_append(msg, "\r\n--------------ms010203040506--\r\n\r\n");
	r = harvest(msg->str, fx.store);
	s = one_signer(r, KMS_SIGNER_TRUSTED);
	g_assert_nonnull(s->key_preference);
	OPENSSL_free(der);
	CMS_ContentInfo_free(cms);
}

/* Opaque signature around a detached one: both signers are found. */
static void
test_opaque_nested(void)
{
	g_autofree char *msg = read_text("opaque-nested.eml");
	g_autoptr(KmsHarvestResult) r = harvest(msg, fx.store);
	KmsHarvestSigner *outer, *inner;

	g_assert_cmpuint(r->signatures, ==, 2);
	g_assert_cmpuint(r->signers->len, ==, 2);
	outer = g_ptr_array_index(r->signers, 0);
	inner = g_ptr_array_index(r->signers, 1);
	g_assert_cmpint(X509_cmp(outer->cert, fx.carol), ==, 0);
	g_assert_cmpint(X509_cmp(inner->cert, fx.bob), ==, 0);
	g_assert_cmpint(outer->status, ==, KMS_SIGNER_TRUSTED);
	g_assert_cmpint(inner->status, ==, KMS_SIGNER_TRUSTED);
	g_assert_cmpint(sk_X509_num(r->certs), ==, 2);
}

/* A signed message forwarded as message/rfc822 in multipart/mixed. */
static void
test_nested_rfc822(void)
{
	g_autofree char *inner = read_text("det.eml");
	g_autofree char *msg = g_strconcat("From: fwd@example.org\n"
	    "Subject: fwd\nMIME-Version: 1.0\n"
	    "Content-Type: multipart/mixed; boundary=\"outer\"\n\n"
	    "--outer\nContent-Type: text/plain\n\nsee attached\n\n"
	    "--outer\nContent-Type: message/rfc822\n"
	    "Content-Disposition: attachment\n\n", inner, "\n--outer--\n",
	    NULL);
	g_autoptr(KmsHarvestResult) r = harvest(msg, fx.store);

	one_signer(r, KMS_SIGNER_TRUSTED);
}

/* A signed part inside multipart/mixed inside multipart/alternative. */
static void
test_nested_mixed_in_alternative(void)
{
	g_autofree char *part = read_text("det-bare.eml");
	g_autofree char *msg = g_strconcat("From: a@example.org\n"
	    "MIME-Version: 1.0\n"
	    "Content-Type: multipart/alternative; boundary=\"alt\"\n\n"
	    "--alt\nContent-Type: text/plain\n\nplain\n"
	    "--alt\nContent-Type: multipart/mixed; boundary=\"mix\"\n\n"
	    "--mix\nContent-Type: text/plain\n\nfirst\n--mix\n", part,
	    "\n--mix--\n--alt--\n", NULL);
	g_autoptr(KmsHarvestResult) r = harvest(msg, fx.store);

	one_signer(r, KMS_SIGNER_TRUSTED);
}

/* DEPTH nested multipart/mixed levels around INNER; g_free. */
static char *
nested(int depth, const char *inner)
{
	GString *s = g_string_new("MIME-Version: 1.0\n");

	for (int i = 0; i < depth; i++)
		g_string_append_printf(s, "Content-Type: multipart/mixed; "
		    "boundary=\"b%d\"\n\n--b%d\n", i, i);
	g_string_append(s, inner);
	for (int i = depth - 1; i >= 0; i--)
		g_string_append_printf(s, "\n--b%d--\n", i);
	return g_string_free(s, FALSE);
}

/* 100 levels: a problem line, the signature beyond the limit unseen,
 * found when the limit allows. */
static void
test_nested_too_deep(void)
{
	g_autofree char *part = read_text("det-bare.eml");
	g_autofree char *msg = nested(100, part);
	g_autoptr(KmsHarvestResult) r = harvest(msg, fx.store);
	g_autoptr(KmsHarvestResult) r2 = NULL;
	KmsHarvestOptions o;

	g_assert_cmpuint(r->signers->len, ==, 0);
	assert_problem(r, "nesting deeper than 20 levels: rest not examined");
	kms_harvest_options_init(&o);
	o.trust = fx.store;
	o.max_depth = 200;
	r2 = kms_harvest(&o, msg, strlen(msg));
	one_signer(r2, KMS_SIGNER_TRUSTED);
}

/* Far beyond GMime's own limit: still no crash. */
static void
test_nested_extreme(void)
{
	g_autofree char *msg = nested(3000, "Content-Type: text/plain\n\nx\n");
	g_autoptr(KmsHarvestResult) r = harvest(msg, fx.store);

	g_assert_cmpuint(r->signers->len, ==, 0);
	assert_problem(r, "nesting deeper than");
}

/* 1500 parts: max_parts (1000) stops the walk with a problem line. */
static void
test_limits_max_parts(void)
{
	GString *s = g_string_new("MIME-Version: 1.0\n"
	    "Content-Type: multipart/mixed; boundary=\"p\"\n\n");
	g_autoptr(KmsHarvestResult) r = NULL;
	g_autofree char *msg = NULL;

	for (int i = 0; i < 1500; i++)
		g_string_append_printf(s, "--p\nContent-Type: text/plain\n\n"
		    "%d\n", i);
	g_string_append(s, "--p--\n");
	msg = g_string_free(s, FALSE);
	r = harvest(msg, fx.store);
	assert_problem(r, "more than 1000 MIME parts: rest not examined");
}

/* A CMS bigger than max_cms_size is not decoded. */
static void
test_limits_max_cms_size(void)
{
	g_autofree char *msg = read_text("det.eml");
	g_autoptr(KmsHarvestResult) r = NULL;
	KmsHarvestOptions o;

	kms_harvest_options_init(&o);
	o.max_cms_size = 100;
	r = kms_harvest(&o, msg, strlen(msg));
	g_assert_cmpuint(r->signatures, ==, 1);
	g_assert_cmpuint(r->signers->len, ==, 0);
	assert_problem(r, "CMS part larger than 100 bytes");
}

/* The base64 body of the signature part in the CLI message, as the
 * message text before it, the body, and the text after. */
static void
split_signature(const char *msg, char **head, char **body, char **tail)
{
	const char *p = strstr(msg, "filename=\"smime.p7s\"\n\n");
	const char *end;

	g_assert_nonnull(p);
	p += strlen("filename=\"smime.p7s\"\n\n");
	end = strstr(p, "\n\n");
	g_assert_nonnull(end);
	*head = g_strndup(msg, (gsize) (p - msg));
	*body = g_strndup(p, (gsize) (end - p));
	*tail = g_strdup(end);
}

/* Broken signature parts give no signer and a problem line. */
static void
test_garbage_signature(gconstpointer data)
{
	const char *kind = data;
	g_autofree char *msg = read_text("det.eml");
	g_autofree char *head = NULL, *body = NULL, *tail = NULL, *bad = NULL;
	g_autoptr(KmsHarvestResult) r = NULL;
	const char *want;

	split_signature(msg, &head, &body, &tail);
	if (strcmp(kind, "truncated") == 0) {
		body[strlen(body) / 2] = '\0';
		want = "not a CMS structure";
	} else if (strcmp(kind, "garbage-base64") == 0) {
		g_free(body);
		body = g_strdup("!!!! this is *not* base64 at all ~~~~\n"
		    "MIIBogus====\n");
		want = "not a CMS structure";
	} else {
		body[0] = '\0';
		want = "CMS part is empty";
	}
	bad = g_strconcat(head, body, tail, NULL);
	r = harvest(bad, fx.store);
	g_assert_cmpuint(r->signatures, ==, 1);
	g_assert_cmpuint(r->signers->len, ==, 0);
	g_assert_cmpint(sk_X509_num(r->certs), ==, 0);
	assert_problem(r, want);
}

/* Input that is not mail at all. */
static void
test_garbage_not_mime(void)
{
	static const char *const inputs[] = {"", "\n", "\0\0\0",
	    "Content-Type: multipart/signed\n\n--\n--\n",
	    "Content-Type: multipart/signed; boundary=x; "
	    "protocol=application/pkcs7-signature\n\n--x\n\n--x\n\n--x--\n",
	    "Content-Type: application/pkcs7-mime; smime-type=signed-data\n"
	    "Content-Transfer-Encoding: base64\n\nMAA=\n"};

	for (size_t i = 0; i < G_N_ELEMENTS(inputs); i++) {
		g_autoptr(KmsHarvestResult) r = harvest(inputs[i], NULL);

		g_assert_cmpuint(r->signers->len, ==, 0);
	}
	{
		g_autoptr(KmsHarvestResult) r = kms_harvest(NULL, "\0\0\0", 3);

		g_assert_cmpuint(r->signers->len, ==, 0);
	}
}

/* The same signed part twice: two signatures, certificates once. */
static void
test_certs_deduplicated(void)
{
	g_autofree char *part = read_text("det-ca.eml");
	g_autofree char *msg = g_strconcat("MIME-Version: 1.0\n"
	    "Content-Type: multipart/mixed; boundary=\"twice\"\n\n--twice\n",
	    part, "\n--twice\n", part, "\n--twice--\n", NULL);
	g_autoptr(KmsHarvestResult) r = harvest(msg, fx.store);

	g_assert_cmpuint(r->signatures, ==, 2);
	g_assert_cmpuint(r->signers->len, ==, 2);
	/* The CMS certificate SET is DER-sorted: order is not asserted. */
	g_assert_cmpint(sk_X509_num(r->certs), ==, 2);
	g_assert_cmpint(X509_cmp(sk_X509_value(r->certs, 0), fx.bob) == 0 ||
	    X509_cmp(sk_X509_value(r->certs, 1), fx.bob) == 0, ==, 1);
	g_assert_cmpint(X509_cmp(sk_X509_value(r->certs, 0), fx.ca) == 0 ||
	    X509_cmp(sk_X509_value(r->certs, 1), fx.ca) == 0, ==, 1);
}

/* kms_harvest_fd reads a file from its start, leaves the offset and the
 * descriptor alone; a pipe works too. */
static void
test_fd(void)
{
	g_autofree char *path = fx_path("det.eml");
	g_autofree char *msg = read_text("det.eml");
	KmsHarvestOptions o;
	KmsHarvestResult *r;
	int fd = open(path, O_RDONLY);
	int p[2];

	g_assert_cmpint(fd, >=, 0);
	g_assert_cmpint(lseek(fd, 10, SEEK_SET), ==, 10);
	kms_harvest_options_init(&o);
	o.trust = fx.store;
	r = kms_harvest_fd(&o, fd);
	one_signer(r, KMS_SIGNER_TRUSTED);
	kms_harvest_result_free(r);
	g_assert_cmpint(lseek(fd, 0, SEEK_CUR), ==, 10);
	g_assert_cmpint(fcntl(fd, F_GETFD), !=, -1);
	close(fd);

	g_assert_cmpint(pipe(p), ==, 0);
	g_assert_cmpint(write(p[1], msg, strlen(msg)), ==,
	    (gssize) strlen(msg));
	close(p[1]);
	r = kms_harvest_fd(&o, p[0]);
	one_signer(r, KMS_SIGNER_TRUSTED);
	kms_harvest_result_free(r);
	close(p[0]);

	r = kms_harvest_fd(&o, -1);
	assert_problem(r, "cannot read the message");
	kms_harvest_result_free(r);
}

/* Status names are the documented strings. */
static void
test_status_names(void)
{
	g_assert_cmpstr(kms_signer_status_name(KMS_SIGNER_TRUSTED), ==,
	    "trusted");
	g_assert_cmpstr(kms_signer_status_name(KMS_SIGNER_UNTRUSTED_CHAIN), ==,
	    "untrusted-chain");
	g_assert_cmpstr(kms_signer_status_name(KMS_SIGNER_EXPIRED), ==,
	    "expired");
	g_assert_cmpstr(kms_signer_status_name(KMS_SIGNER_BAD_SIGNATURE), ==,
	    "bad-signature");
}

static const struct {
	const char *path;
	GTestFunc func;
} tests[] = {
	{"/harvest/status-names", test_status_names},
	{"/harvest/detached/untrusted-chain-without-ca",
	 test_detached_untrusted},
	{"/harvest/detached/lf-only-and-crlf-both-verify",
	 test_detached_line_ends},
	{"/harvest/capabilities/names-round-trip-in-order",
	 test_capabilities_round_trip},
	{"/harvest/library/two-signers-one-bad-reported-separately",
	 test_library_two_signers_one_bad},
	{"/harvest/library/thunderbird-style-crlf-multipart-content",
	 test_thunderbird_style},
	{"/harvest/opaque/around-detached-finds-both-signers",
	 test_opaque_nested},
	{"/harvest/nesting/signed-message-as-rfc822-attachment",
	 test_nested_rfc822},
	{"/harvest/nesting/signed-part-in-mixed-in-alternative",
	 test_nested_mixed_in_alternative},
	{"/harvest/nesting/100-levels-stop-at-limit-with-problem",
	 test_nested_too_deep},
	{"/harvest/nesting/3000-levels-no-crash", test_nested_extreme},
	{"/harvest/limits/max-parts-problem", test_limits_max_parts},
	{"/harvest/limits/max-cms-size-problem", test_limits_max_cms_size},
	{"/harvest/limits/max-signers-problem", test_limits_max_signers},
	{"/harvest/garbage/not-mime-no-crash", test_garbage_not_mime},
	{"/harvest/certs/deduplicated-across-signatures",
	 test_certs_deduplicated},
	{"/harvest/fd/file-and-pipe", test_fd},
};

/* Register the tests around one fixture. */
int
main(int argc, char **argv)
{
	static const struct {
		const char *path;
		PrefKind kind;
	} prefs[] = {
		{"/harvest/library/caps-time-key-preference-issuer-serial",
		 PREF_ISSUER_SERIAL},
		{"/harvest/library/key-preference-subject-key-id", PREF_KEY_ID},
		{"/harvest/library/key-preference-microsoft-oid",
		 PREF_MICROSOFT},
		{"/harvest/library/key-preference-not-in-message-is-null",
		 PREF_NOT_INCLUDED},
	};
	static const char *const garbage[] = {"truncated", "garbage-base64",
	    "empty"};
	int rc;

	g_test_init(&argc, &argv, NULL);
	fixture_setup();
	for (size_t i = 0; i < G_N_ELEMENTS(cli_cases); i++)
		g_test_add_data_func(cli_cases[i].path, &cli_cases[i],
		    test_cli_case);
	for (size_t i = 0; i < G_N_ELEMENTS(tests); i++)
		g_test_add_func(tests[i].path, tests[i].func);
	for (size_t i = 0; i < G_N_ELEMENTS(prefs); i++)
		g_test_add_data_func(prefs[i].path,
		    GINT_TO_POINTER(prefs[i].kind),
		    test_library_key_preference);
	for (size_t i = 0; i < G_N_ELEMENTS(garbage); i++) {
		g_autofree char *path = g_strdup_printf("/harvest/garbage/"
		    "%s-signature-no-signer-with-problem", garbage[i]);

		g_test_add_data_func(path, garbage[i], test_garbage_signature);
	}
	rc = g_test_run();
	fixture_teardown();
	return rc;
}
