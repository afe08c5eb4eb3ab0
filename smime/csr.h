/*
 * NAME
 *	csr - PKCS#10 certificate requests from enrollment replies
 * DESCRIPTION
 *	Pure OpenSSL code: no database, no milter. A user may send a PKCS#10
 *	request for her signing key with her enrollment reply, pasted as a
 *	PEM block or attached (DER or PEM). kms_csr_parse() accepts one
 *	request and checks what the CA relies on: the signature verifies with
 *	the request's own key (proof of possession), the key is RSA of 2048 to
 *	8192 bits or EC on P-256 or P-384, the signature hash is SHA-256 or
 *	stronger. The subject and any requested extensions are ignored: the
 *	CA names the certificate after the enrolled address itself.
 *	kms_csr_find_pem() finds the first PEM block in text.
 * SECURITY
 *	Input is hostile mail: sizes are bounded (KMS_CSR_MAX_SIZE) before
 *	any parse.
 * DIAGNOSTICS
 *	GError in KMS_CSR_ERROR, one line, fit to quote in an SMTP reply.
 */
#ifndef KMS_CSR_H
#define KMS_CSR_H

#include <glib.h>
#include <openssl/x509.h>

#define KMS_CSR_ERROR (kms_csr_error_quark())
GQuark kms_csr_error_quark(void);

typedef enum {
	KMS_CSR_ERROR_INVALID,	/* not a PKCS#10 request, or too big */
	KMS_CSR_ERROR_SIGNATURE,/* proof of possession failed */
	KMS_CSR_ERROR_WEAK,	/* key type/size or hash not accepted */
} KmsCsrError;

#define KMS_CSR_MAX_SIZE (16 * 1024)

/* Parse LEN bytes at DATA: DER, or PEM ("CERTIFICATE REQUEST" or "NEW
 * CERTIFICATE REQUEST"), and check it as described above. Caller frees
 * with X509_REQ_free. */
X509_REQ *kms_csr_parse(const guint8 *data, gsize len, GError **err);

/* The first "-----BEGIN [NEW ]CERTIFICATE REQUEST-----" ... END block in
 * LEN bytes of TEXT, as a new string (g_free), or NULL. Lines may carry a
 * quoting prefix ("> ") which is removed. */
char *kms_csr_find_pem(const char *text, gsize len);

/* DER of REQ (g_bytes_unref). */
GBytes *kms_csr_to_der(X509_REQ *req);

#endif
