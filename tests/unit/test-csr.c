/*
 * NAME
 *	test-csr - PKCS#10 requests from enrollment replies (smime/csr.h)
 * DESCRIPTION
 *	Requests are made here with the OpenSSL library and, for the peer's
 *	view, with the openssl command; each check names what a hostile or
 *	careless sender could do.
 */
#include "autoconfig.h"

#include <string.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "smime/ca.h"
#include "smime/csr.h"
#include "tests/unit/testutil.h"

/* A request for KEY signed with MD (NULL: the key's default). */
static X509_REQ *
make_req(EVP_PKEY *key, const EVP_MD *md)
{
	X509_REQ *r = X509_REQ_new();
	X509_NAME *n = X509_NAME_new();

	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"alice", -1, -1, 0);
	X509_REQ_set_subject_name(r, n);
	X509_NAME_free(n);
	X509_REQ_set_pubkey(r, key);
	g_assert_cmpint(X509_REQ_sign(r, key, md), >, 0);
	return r;
}

static GBytes *
to_pem(X509_REQ *r)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *p;
	long n;
	GBytes *out;

	PEM_write_bio_X509_REQ(b, r);
	n = BIO_get_mem_data(b, &p);
	out = g_bytes_new(p, (gsize)n);
	BIO_free(b);
	return out;
}

static EVP_PKEY *rsa2048, *p256;

static void
test_der_and_pem(void)
{
	X509_REQ *r = make_req(rsa2048, EVP_sha256()), *back;
	g_autoptr(GBytes) der = kms_csr_to_der(r), pem = to_pem(r);
	g_autoptr(GError) e = NULL;

	back = kms_csr_parse(g_bytes_get_data(der, NULL), g_bytes_get_size(der), &e);
	g_assert_no_error(e);
	g_assert_nonnull(back);
	g_assert_cmpint(EVP_PKEY_eq(X509_REQ_get0_pubkey(back), rsa2048), ==, 1);
	X509_REQ_free(back);
	back = kms_csr_parse(g_bytes_get_data(pem, NULL), g_bytes_get_size(pem), &e);
	g_assert_no_error(e);
	g_assert_cmpint(EVP_PKEY_eq(X509_REQ_get0_pubkey(back), rsa2048), ==, 1);
	X509_REQ_free(back);
	X509_REQ_free(r);
}

static void
test_ec(void)
{
	X509_REQ *r = make_req(p256, EVP_sha256()), *back;
	g_autoptr(GBytes) der = kms_csr_to_der(r);
	g_autoptr(GError) e = NULL;

	back = kms_csr_parse(g_bytes_get_data(der, NULL), g_bytes_get_size(der), &e);
	g_assert_no_error(e);
	X509_REQ_free(back);
	X509_REQ_free(r);
}

/* A request whose signature was made by another key: no proof of
 * possession of the key it asks a certificate for. */
static void
test_wrong_signer(void)
{
	g_autoptr(GError) e = NULL;
	EVP_PKEY *other = kms_key_generate(KMS_KEY_RSA2048, NULL);
	X509_REQ *r = make_req(rsa2048, EVP_sha256());
	g_autoptr(GBytes) der = NULL;

	/* swap the key after signing: the signature stays the old key's */
	X509_REQ_set_pubkey(r, other);
	der = kms_csr_to_der(r);
	g_assert_null(kms_csr_parse(g_bytes_get_data(der, NULL), g_bytes_get_size(der), &e));
	g_assert_error(e, KMS_CSR_ERROR, KMS_CSR_ERROR_SIGNATURE);
	g_assert_nonnull(strstr(e->message, "proof of possession"));
	X509_REQ_free(r);
	EVP_PKEY_free(other);
}

/* One flipped bit in the signature. */
static void
test_tampered(void)
{
	g_autoptr(GError) e = NULL;
	X509_REQ *r = make_req(rsa2048, EVP_sha256());
	g_autoptr(GBytes) der = kms_csr_to_der(r);
	gsize n = g_bytes_get_size(der);
	g_autofree guint8 *bad = g_memdup2(g_bytes_get_data(der, NULL), n);

	bad[n - 10] ^= 0x01;
	g_assert_null(kms_csr_parse(bad, n, &e));
	g_assert_error(e, KMS_CSR_ERROR, KMS_CSR_ERROR_SIGNATURE);
	X509_REQ_free(r);
}

static void
test_weak(void)
{
	g_autoptr(GError) e = NULL, e2 = NULL;
	EVP_PKEY *small = EVP_RSA_gen(1024);
	X509_REQ *r = make_req(small, EVP_sha256()), *s = make_req(rsa2048, EVP_sha1());
	g_autoptr(GBytes) der = kms_csr_to_der(r), der2 = kms_csr_to_der(s);

	g_assert_null(kms_csr_parse(g_bytes_get_data(der, NULL), g_bytes_get_size(der), &e));
	g_assert_error(e, KMS_CSR_ERROR, KMS_CSR_ERROR_WEAK);
	g_assert_nonnull(strstr(e->message, "1024"));
	g_assert_null(kms_csr_parse(g_bytes_get_data(der2, NULL), g_bytes_get_size(der2), &e2));
	g_assert_error(e2, KMS_CSR_ERROR, KMS_CSR_ERROR_WEAK);
	g_assert_nonnull(strstr(e2->message, "SHA1"));
	X509_REQ_free(r);
	X509_REQ_free(s);
	EVP_PKEY_free(small);
}

static void
test_garbage(void)
{
	X509_REQ *r = make_req(rsa2048, EVP_sha256());
	g_autoptr(GBytes) der = kms_csr_to_der(r);
	gsize n = g_bytes_get_size(der);
	g_autofree guint8 *longer = g_malloc0(n + 1);
	g_autofree guint8 *huge = g_malloc0(KMS_CSR_MAX_SIZE + 1);
	static const char junk[] = "-----BEGIN CERTIFICATE REQUEST-----\nnot base64\n"
	    "-----END CERTIFICATE REQUEST-----\n";
	GError *e = NULL;

	memcpy(longer, g_bytes_get_data(der, NULL), n);
	g_assert_null(kms_csr_parse(longer, n + 1, &e));	/* trailing byte */
	g_assert_error(e, KMS_CSR_ERROR, KMS_CSR_ERROR_INVALID);
	g_clear_error(&e);
	g_assert_null(kms_csr_parse(g_bytes_get_data(der, NULL), n - 1, &e));	/* truncated */
	g_assert_error(e, KMS_CSR_ERROR, KMS_CSR_ERROR_INVALID);
	g_clear_error(&e);
	g_assert_null(kms_csr_parse((const guint8 *)junk, strlen(junk), &e));
	g_assert_error(e, KMS_CSR_ERROR, KMS_CSR_ERROR_INVALID);
	g_clear_error(&e);
	g_assert_null(kms_csr_parse(huge, KMS_CSR_MAX_SIZE + 1, &e));
	g_assert_error(e, KMS_CSR_ERROR, KMS_CSR_ERROR_INVALID);
	g_assert_nonnull(strstr(e->message, "too large"));
	g_clear_error(&e);
	g_assert_null(kms_csr_parse(huge, 0, &e));
	g_assert_error(e, KMS_CSR_ERROR, KMS_CSR_ERROR_INVALID);
	g_clear_error(&e);
	X509_REQ_free(r);
}

/* A pasted request inside a quoted reply, with the old "NEW" label and
 * CRLF line ends, is found and parses to the same key. */
static void
test_find_pem_quoted(void)
{
	X509_REQ *r = make_req(rsa2048, EVP_sha256()), *back;
	g_autoptr(GBytes) pem = to_pem(r);
	g_autofree char *body = g_bytes_get_size(pem) ? g_strndup(g_bytes_get_data(pem, NULL),
	    g_bytes_get_size(pem)) : NULL;
	g_auto(GStrv) lines = g_strsplit(body, "\n", -1);
	GString *mail = g_string_new("Hello,\r\n\r\nToken below.\r\n");
	g_autofree char *found = NULL;
	g_autoptr(GError) e = NULL;

	for (int i = 0; lines[i] && *lines[i]; i++) {
		const char *l = lines[i];

		if (g_str_has_prefix(l, "-----BEGIN"))
			l = "-----BEGIN NEW CERTIFICATE REQUEST-----";
		else if (g_str_has_prefix(l, "-----END"))
			l = "-----END NEW CERTIFICATE REQUEST-----";
		g_string_append_printf(mail, "> > %s\r\n", l);
	}
	g_string_append(mail, "Regards\r\n");
	found = kms_csr_find_pem(mail->str, mail->len);
	g_assert_nonnull(found);
	g_assert_true(g_str_has_prefix(found, "-----BEGIN CERTIFICATE REQUEST-----\n"));
	back = kms_csr_parse((const guint8 *)found, strlen(found), &e);
	g_assert_no_error(e);
	g_assert_cmpint(EVP_PKEY_eq(X509_REQ_get0_pubkey(back), rsa2048), ==, 1);
	X509_REQ_free(back);
	X509_REQ_free(r);
	g_string_free(mail, TRUE);

	g_assert_null(kms_csr_find_pem("no request here\n", 16));
	/* a BEGIN without END is not a request */
	g_assert_null(kms_csr_find_pem("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n", 41));
}

/* What the openssl command writes (a user's likely tool) parses. */
static void
test_openssl_cli(void)
{
	g_autoptr(TestDir) dir = test_dir_new("csr");
	const char *argv[] = {"openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes",
	    "-keyout", "k.pem", "-subj", "/CN=alice", "-out", "r.pem", NULL};
	g_autofree char *out = NULL, *path = NULL, *pem = NULL;
	gsize n;
	X509_REQ *r;
	g_autoptr(GError) e = NULL;

	g_assert_true(test_run(dir, argv, &out));
	path = g_build_filename(dir, "r.pem", NULL);
	g_assert_true(g_file_get_contents(path, &pem, &n, NULL));
	r = kms_csr_parse((const guint8 *)pem, n, &e);
	g_assert_no_error(e);
	X509_REQ_free(r);
}

int
main(int argc, char **argv)
{
	int rc;

	g_test_init(&argc, &argv, NULL);
	rsa2048 = kms_key_generate(KMS_KEY_RSA2048, NULL);
	p256 = kms_key_generate(KMS_KEY_P256, NULL);
	g_test_add_func("/csr/der-and-pem", test_der_and_pem);
	g_test_add_func("/csr/ec", test_ec);
	g_test_add_func("/csr/wrong-signer", test_wrong_signer);
	g_test_add_func("/csr/tampered", test_tampered);
	g_test_add_func("/csr/weak", test_weak);
	g_test_add_func("/csr/garbage", test_garbage);
	g_test_add_func("/csr/find-pem-quoted", test_find_pem_quoted);
	g_test_add_func("/csr/openssl-cli", test_openssl_cli);
	rc = g_test_run();
	EVP_PKEY_free(rsa2048);
	EVP_PKEY_free(p256);
	return rc;
}
