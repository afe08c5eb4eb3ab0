/*
 * NAME
 *	x509util - small helpers around OpenSSL X.509 objects (see x509util.h)
 * DESCRIPTION
 *	Text and encoding conversions used for messages, JSON output and the
 *	vault. Nothing here verifies anything.
 * SECURITY
 *	Public data only; a PEM file may come from an administrator and is
 *	parsed by OpenSSL's PEM reader, certificate by certificate.
 * DIAGNOSTICS
 *	kms_x509_read_pem_file() reports in KMS_CA_ERROR (INVALID), naming
 *	the file. The others return NULL on failure and clear OpenSSL's
 *	error queue.
 */
#include "x509util.h"
#include "ca.h"

#include <limits.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>

/* Lowercase hex of LEN bytes at DATA; g_free. */
static char *
hex_lower(const unsigned char *data, size_t len)
{
	static const char digits[] = "0123456789abcdef";
	char *out = g_malloc(len * 2 + 1);

	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[data[i] >> 4];
		out[2 * i + 1] = digits[data[i] & 0x0f];
	}
	out[len * 2] = '\0';
	return out;
}

/* Copy the contents of memory BIO B into a new string; g_free. */
static char *
bio_text(BIO *b)
{
	char *data;
	long len = BIO_get_mem_data(b, &data);

	return len >= 0 ? g_strndup(data, (gsize) len) : NULL;
}

/* Certificate fingerprint as stored in the vault and shown to users. */
char *
kms_x509_sha256_hex(X509 *cert)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len;

	if (cert == NULL || X509_digest(cert, EVP_sha256(), md, &len) != 1) {
		ERR_clear_error();
		return NULL;
	}
	return hex_lower(md, len);
}

/* RFC 2253 text of NAME, UTF-8 kept as is rather than \XX-escaped. */
char *
kms_x509_name_text(const X509_NAME *name)
{
	BIO *b;
	char *text = NULL;

	if (name == NULL || (b = BIO_new(BIO_s_mem())) == NULL) {
		ERR_clear_error();
		return NULL;
	}
	if (X509_NAME_print_ex(b, name, 0,
	    XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0)
		text = bio_text(b);
	BIO_free(b);
	ERR_clear_error();
	return text;
}

/* ISO 8601 UTC form of T for JSON and messages. */
char *
kms_asn1_time_iso8601(const ASN1_TIME *t)
{
	struct tm tm;

	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1) {
		ERR_clear_error();
		return NULL;
	}
	return g_strdup_printf("%04d-%02d-%02dT%02d:%02d:%02dZ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	    tm.tm_min, tm.tm_sec);
}

/* Serial number in the form kmsctl prints and accepts (lowercase hex). */
char *
kms_x509_serial_hex(X509 *cert)
{
	BIGNUM *bn;
	char *hex = NULL;
	char *out = NULL;

	if (cert == NULL ||
	    (bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL))
	    == NULL) {
		ERR_clear_error();
		return NULL;
	}
	if ((hex = BN_bn2hex(bn)) != NULL)
		out = g_ascii_strdown(hex, -1);
	OPENSSL_free(hex);
	BN_free(bn);
	ERR_clear_error();
	return out;
}

/* DER encoding of CERT. */
GBytes *
kms_x509_to_der(X509 *cert)
{
	unsigned char *buf;
	unsigned char *p;
	int len;

	if (cert == NULL || (len = i2d_X509(cert, NULL)) <= 0) {
		ERR_clear_error();
		return NULL;
	}
	p = buf = g_malloc((gsize) len);
	if (i2d_X509(cert, &p) != len) {
		ERR_clear_error();
		g_free(buf);
		return NULL;
	}
	return g_bytes_new_take(buf, (gsize) len);
}

/* Decode exactly one DER certificate of LEN bytes; trailing data is an
 * error. Caller frees with X509_free. */
X509 *
kms_x509_from_der(const void *der, gsize len)
{
	const unsigned char *p = der;
	X509 *cert;

	if (der == NULL || len == 0 || len > LONG_MAX)
		return NULL;
	cert = d2i_X509(NULL, &p, (long) len);
	if (cert && p != (const unsigned char *) der + len) {
		X509_free(cert);
		cert = NULL;
	}
	ERR_clear_error();
	return cert;
}

/* PEM text of CERT. */
char *
kms_x509_to_pem(X509 *cert)
{
	BIO *b;
	char *text = NULL;

	if (cert == NULL || (b = BIO_new(BIO_s_mem())) == NULL) {
		ERR_clear_error();
		return NULL;
	}
	if (PEM_write_bio_X509(b, cert) == 1)
		text = bio_text(b);
	BIO_free(b);
	ERR_clear_error();
	return text;
}

/* Read every certificate of a PEM file, in file order. Caller frees with
 * sk_X509_pop_free(sk, X509_free). */
STACK_OF(X509) *
kms_x509_read_pem_file(const char *path, GError **err)
{
	g_autoptr(GError) ferr = NULL;
	g_autofree char *data = NULL;
	g_autofree char *name = NULL;
	STACK_OF(X509) *certs;
	gsize len;
	X509 *cert;
	unsigned long e;
	BIO *b = NULL;

	if (!g_file_get_contents(path, &data, &len, &ferr)) {
		g_set_error(err, KMS_CA_ERROR, KMS_CA_ERROR_INVALID, "%s",
		    ferr->message);
		return NULL;
	}
	name = g_filename_display_name(path);
	if (len > INT_MAX || (b = BIO_new_mem_buf(data, (int) len)) == NULL ||
	    (certs = sk_X509_new_null()) == NULL) {
		BIO_free(b);
		ERR_clear_error();
		g_set_error(err, KMS_CA_ERROR, KMS_CA_ERROR_INVALID,
		    "%s: cannot read", name);
		return NULL;
	}
	while ((cert = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
		if (!sk_X509_push(certs, cert)) {
			X509_free(cert);
			break;
		}
	BIO_free(b);
	/* The reader ends with "no start line" at the end of the data;
	 * anything else is a broken certificate. */
	e = ERR_peek_last_error();
	if (cert != NULL || (e && !(ERR_GET_LIB(e) == ERR_LIB_PEM &&
	    ERR_GET_REASON(e) == PEM_R_NO_START_LINE))) {
		const char *reason = e ? ERR_reason_error_string(e) : NULL;

		g_set_error(err, KMS_CA_ERROR, KMS_CA_ERROR_INVALID,
		    "%s: certificate %d: %s", name, sk_X509_num(certs) + 1,
		    reason ? reason : "out of memory");
		sk_X509_pop_free(certs, X509_free);
		ERR_clear_error();
		return NULL;
	}
	ERR_clear_error();
	if (sk_X509_num(certs) == 0) {
		g_set_error(err, KMS_CA_ERROR, KMS_CA_ERROR_INVALID,
		    "%s: no certificate found", name);
		sk_X509_pop_free(certs, X509_free);
		return NULL;
	}
	return certs;
}
