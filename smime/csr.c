/*
 * NAME
 *	csr - PKCS#10 requests from enrollment replies (see csr.h)
 */
#include "autoconfig.h"
#include "csr.h"

#include <string.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>

G_DEFINE_QUARK(kms-csr-error-quark, kms_csr_error)

static const char pem_begin[] = "-----BEGIN CERTIFICATE REQUEST-----";
static const char pem_begin_new[] = "-----BEGIN NEW CERTIFICATE REQUEST-----";
static const char pem_end[] = "-----END CERTIFICATE REQUEST-----";
static const char pem_end_new[] = "-----END NEW CERTIFICATE REQUEST-----";

static gboolean
looks_like_pem(const guint8 *data, gsize len)
{
	return g_strstr_len((const char *)data, (gssize)len, "-----BEGIN") != NULL;
}

static X509_REQ *
decode(const guint8 *data, gsize len, GError **err)
{
	X509_REQ *req = NULL;

	if (looks_like_pem(data, len)) {
		BIO *b = BIO_new_mem_buf(data, (int)len);

		/* accepts both labels: OpenSSL maps NEW CERTIFICATE REQUEST */
		if (b)
			req = PEM_read_bio_X509_REQ(b, NULL, NULL, NULL);
		BIO_free(b);
	} else {
		const unsigned char *p = data;

		req = d2i_X509_REQ(NULL, &p, (long)len);
		if (req && p != data + len) {
			X509_REQ_free(req);
			req = NULL;
		}
	}
	if (req == NULL)
		g_set_error(err, KMS_CSR_ERROR, KMS_CSR_ERROR_INVALID,
		    "the attached certificate request is not a valid PKCS#10 request");
	return req;
}

/* The request's key: RSA 2048..8192 bits, or EC on P-256 / P-384. */
static gboolean
check_key(EVP_PKEY *k, GError **err)
{
	char group[64] = "";
	size_t glen = 0;

	if (k == NULL) {
		g_set_error(err, KMS_CSR_ERROR, KMS_CSR_ERROR_INVALID,
		    "the certificate request carries no usable public key");
		return FALSE;
	}
	if (EVP_PKEY_is_a(k, "RSA")) {
		int bits = EVP_PKEY_get_bits(k);

		if (bits >= 2048 && bits <= 8192)
			return TRUE;
		g_set_error(err, KMS_CSR_ERROR, KMS_CSR_ERROR_WEAK,
		    "the certificate request's RSA key has %d bits; 2048 to 8192 are accepted", bits);
		return FALSE;
	}
	if (EVP_PKEY_is_a(k, "EC") &&
	    EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
	    &glen) == 1 && (strcmp(group, "prime256v1") == 0 || strcmp(group, "secp384r1") == 0))
		return TRUE;
	g_set_error(err, KMS_CSR_ERROR, KMS_CSR_ERROR_WEAK,
	    "the certificate request's key type is not accepted (RSA or EC P-256/P-384 only)");
	return FALSE;
}

/* Signed with SHA-256 or stronger (RSA PKCS#1 v1.5 or ECDSA). */
static gboolean
check_hash(X509_REQ *req, GError **err)
{
	int md = NID_undef, pk = NID_undef;

	if (OBJ_find_sigid_algs(X509_REQ_get_signature_nid(req), &md, &pk) &&
	    (md == NID_sha256 || md == NID_sha384 || md == NID_sha512))
		return TRUE;
	g_set_error(err, KMS_CSR_ERROR, KMS_CSR_ERROR_WEAK,
	    "the certificate request is signed with %s; SHA-256 or stronger is required",
	    md != NID_undef ? OBJ_nid2sn(md) : "an unsupported algorithm");
	return FALSE;
}

X509_REQ *
kms_csr_parse(const guint8 *data, gsize len, GError **err)
{
	X509_REQ *req;
	EVP_PKEY *k;

	if (len == 0 || len > KMS_CSR_MAX_SIZE) {
		g_set_error(err, KMS_CSR_ERROR, KMS_CSR_ERROR_INVALID,
		    "the certificate request is %s (at most %d bytes)",
		    len == 0 ? "empty" : "too large", KMS_CSR_MAX_SIZE);
		return NULL;
	}
	if ((req = decode(data, len, err)) == NULL)
		return NULL;
	k = X509_REQ_get0_pubkey(req);
	if (!check_key(k, err) || !check_hash(req, err)) {
		X509_REQ_free(req);
		return NULL;
	}
	if (X509_REQ_verify(req, k) != 1) {
		g_set_error(err, KMS_CSR_ERROR, KMS_CSR_ERROR_SIGNATURE,
		    "the certificate request's signature does not verify with its own key"
		    " (no proof of possession)");
		X509_REQ_free(req);
		return NULL;
	}
	return req;
}

/* LINE without its quoting prefix (any run of '>' and blanks). */
static const char *
unquote(const char *line)
{
	while (*line == '>' || *line == ' ' || *line == '\t')
		line++;
	return line;
}

char *
kms_csr_find_pem(const char *text, gsize len)
{
	g_autofree char *copy = g_strndup(text, len);
	g_auto(GStrv) lines = g_strsplit(copy, "\n", -1);
	GString *out = NULL;

	for (int i = 0; lines[i]; i++) {
		const char *l = unquote(g_strchomp(lines[i]));

		if (out == NULL) {
			if (strcmp(l, pem_begin) == 0 || strcmp(l, pem_begin_new) == 0)
				out = g_string_new(pem_begin);
			continue;
		}
		if (strcmp(l, pem_end) == 0 || strcmp(l, pem_end_new) == 0) {
			g_string_append_printf(out, "\n%s\n", pem_end);
			return g_string_free(out, FALSE);
		}
		if (out->len > 2 * KMS_CSR_MAX_SIZE)
			break;
		g_string_append_c(out, '\n');
		g_string_append(out, l);
	}
	if (out)
		g_string_free(out, TRUE);
	return NULL;
}

GBytes *
kms_csr_to_der(X509_REQ *req)
{
	unsigned char *der = NULL;
	int n = i2d_X509_REQ(req, &der);
	GBytes *b;

	if (n <= 0)
		return NULL;
	b = g_bytes_new(der, (gsize)n);
	OPENSSL_free(der);
	return b;
}
