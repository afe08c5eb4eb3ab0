/*
 * NAME
 *	crl - certificate revocation lists of the internal CA
 * DESCRIPTION
 *	Pure OpenSSL code: no database, no milter. Builds a v2 CRL (RFC 5280
 *	section 5) from the revoked serial numbers the caller lists, signs
 *	it with the CA key, and publishes it as DER and PEM files that
 *	replace the previous ones atomically.
 * SECURITY
 *	The CA key is only handed to OpenSSL's signing and comparison
 *	functions. CRLs are public: files are written mode 0644.
 * DIAGNOSTICS
 *	GError in KMS_CRL_ERROR, one line, naming the entry or file.
 */
#ifndef KMS_CRL_H
#define KMS_CRL_H

#include <time.h>

#include <glib.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#define KMS_CRL_ERROR (kms_crl_error_quark())
GQuark kms_crl_error_quark(void);

typedef enum {
	KMS_CRL_ERROR_FAILED,	/* OpenSSL failure (reason in message) */
	KMS_CRL_ERROR_INVALID,	/* bad input from the caller */
	KMS_CRL_ERROR_IO,	/* a file could not be written */
} KmsCrlError;

/* One revoked certificate; borrowed from the caller. */
typedef struct {
	const char *serial_hex;	/* positive serial, hex digits only (any
				 * case, leading zeros allowed, at most 20
				 * octets), e.g. kms_x509_serial_hex() */
	time_t revoked_at;	/* revocationDate */
	int reason;		/* CRL_REASON_* (openssl/x509v3.h), or
				 * CRL_REASON_NONE (-1) for none */
} KmsRevoked;

/* Reason code for an RFC 5280 name, any case: unspecified keyCompromise
 * cACompromise affiliationChanged superseded cessationOfOperation
 * certificateHold removeFromCRL privilegeWithdrawn aACompromise.
 * FALSE on an unknown name. */
gboolean kms_crl_reason_parse(const char *name, int *reason);
/* The RFC 5280 name of REASON; a static string, NULL when unknown. */
const char *kms_crl_reason_name(int reason);

/*
 * A v2 CRL issued by CA_CERT and signed with CA_KEY (SHA-256; RSA or EC):
 * thisUpdate now, nextUpdate DAYS (>= 1) later, authorityKeyIdentifier
 * (CA_CERT's subject key identifier, else the SHA-1 of its key),
 * cRLNumber CRL_NUMBER (>= 0; the caller keeps it increasing), and the N
 * entries of REVOKED sorted by serial number, each with a reasonCode
 * extension unless its reason is none or unspecified (RFC 5280 5.3.1:
 * absent rather than unspecified). KMS_CRL_ERROR_INVALID on a bad
 * serial, a duplicate serial, an unknown reason, removeFromCRL (only for
 * delta CRLs), a revocation date before 1970, a CA key that does not
 * match CA_CERT, or a CA_CERT whose key usage excludes cRLSign.
 * Caller frees with X509_CRL_free.
 */
X509_CRL *kms_crl_build(X509 *ca_cert, EVP_PKEY *ca_key, const KmsRevoked *revoked,
    guint n, gint64 crl_number, int days, GError **err);

/*
 * Write CRL to DIR/BASENAME (DER) and DIR/BASENAME.pem, each through a
 * temporary file in DIR that is flushed to disk and renamed over the
 * old one, mode 0644 whatever the umask: a reader sees the old CRL or
 * the new one, never a part. BASENAME is a plain file name (no '/').
 * The DER file is replaced first; on failure *err names the file and
 * no temporary file is left behind.
 */
gboolean kms_crl_write(X509_CRL *crl, const char *dir, const char *basename,
    GError **err);

#endif
