/*
 * NAME
 *	x509util - small helpers around OpenSSL X.509 objects
 * DESCRIPTION
 *	Fingerprints, names and times as text, DER/PEM conversions. Results
 *	are newly allocated (g_free / OpenSSL free as documented per function).
 * SECURITY
 *	Public data only.
 */
#ifndef KMS_X509UTIL_H
#define KMS_X509UTIL_H

#include <glib.h>
#include <openssl/x509.h>

/* SHA-256 of the DER, lowercase hex without colons; g_free. */
char *kms_x509_sha256_hex(X509 *cert);
/* RFC 2253 form of a name ("CN=a,O=b"); g_free. */
char *kms_x509_name_text(const X509_NAME *name);
/* ISO 8601 UTC ("2026-11-22T02:39:43Z"); g_free. NULL on a bad time. */
char *kms_asn1_time_iso8601(const ASN1_TIME *t);
/* Serial number as lowercase hex; g_free. */
char *kms_x509_serial_hex(X509 *cert);
/* DER encoding; g_bytes_unref. */
GBytes *kms_x509_to_der(X509 *cert);
/* Exactly one certificate, no trailing bytes; NULL otherwise. X509_free. */
X509 *kms_x509_from_der(const void *der, gsize len);
/* PEM text of CERT; g_free. */
char *kms_x509_to_pem(X509 *cert);
/* Every certificate in a PEM file, in order (other PEM blocks skipped);
 * NULL with *err (KMS_CA_ERROR_INVALID, naming the file) when it cannot be
 * read, a certificate is corrupt, or there is none.
 * Free with sk_X509_pop_free(sk, X509_free). */
STACK_OF(X509) *kms_x509_read_pem_file(const char *path, GError **err);

/* rfc822Name entries of the subjectAltName (domain lower-cased), or the
 * emailAddress of the subject when there is none. g_ptr_array_unref. */
GPtrArray *kms_x509_email_addresses(X509 *cert);

/* Verify CERT's chain to TRUST (may be NULL: nothing trusted) with
 * UNTRUSTED intermediates for PURPOSE (X509_PURPOSE_*, or -1 for none) at
 * NOW (0: the current time). Returns X509_V_OK or the X509_V_ERR code of
 * the failure; *detail (may be NULL) gets its text, g_free. */
int kms_x509_verify_chain(X509_STORE *trust, X509 *cert, STACK_OF(X509) *untrusted,
    int purpose, time_t now, char **detail);

#endif
