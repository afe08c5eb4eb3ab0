/*
 * NAME
 *	ca - keys, the internal certification authority, S/MIME certificates
 * DESCRIPTION
 *	Pure OpenSSL code: no database, no milter. Generates key pairs, makes
 *	the self-signed root or a CSR for a subordinate CA, checks a CA chain
 *	an administrator installs, and issues S/MIME certificates by profile.
 * SECURITY
 *	Callers own the EVP_PKEYs they pass; private keys are never printed
 *	or put in error messages. Serial numbers carry 127 random bits.
 * DIAGNOSTICS
 *	GError in KMS_CA_ERROR; messages are one line and name the failing
 *	certificate (by subject) or check.
 */
#ifndef KMS_CA_H
#define KMS_CA_H

#include <glib.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#define KMS_CA_ERROR (kms_ca_error_quark())
GQuark kms_ca_error_quark(void);

typedef enum {
	KMS_CA_ERROR_FAILED,	/* OpenSSL failure (reason in message) */
	KMS_CA_ERROR_INVALID,	/* bad input from the caller or the admin */
	KMS_CA_ERROR_CHAIN,	/* a chain check failed (message names the link) */
} KmsCaError;

typedef enum {
	KMS_KEY_RSA2048,
	KMS_KEY_RSA3072,
	KMS_KEY_RSA4096,
	KMS_KEY_P256,
} KmsKeyType;

/* "rsa2048", "rsa3072", "rsa4096", "p256". FALSE on an unknown name. */
gboolean kms_key_type_parse(const char *name, KmsKeyType *out);
const char *kms_key_type_name(KmsKeyType t);

/* New key pair; caller frees with EVP_PKEY_free. */
EVP_PKEY *kms_key_generate(KmsKeyType t, GError **err);

/* Parse "CN=x, O=y" or "/CN=x/O=y" into a new X509_NAME (caller frees).
 * The comma form is RFC 4514 text (most specific first, so it round-trips
 * through kms_x509_name_text); the slash form is OpenSSL's -subj order:
 * "CN=x, O=y" and "/O=y/CN=x" are the same name. Whitespace around types
 * and values is trimmed; a backslash escapes the next character. Known
 * attribute types only (CN O OU C L ST street postalCode DC serialNumber
 * title GN SN pseudonym UID emailAddress organizationIdentifier). */
X509_NAME *kms_name_parse(const char *dn, GError **err);

/* Self-signed root CA certificate for KEY with SUBJECT, valid DAYS from now
 * (basicConstraints critical CA:TRUE, keyUsage keyCertSign+cRLSign critical,
 * subject key identifier). Caller frees. */
X509 *kms_ca_make_root(EVP_PKEY *key, const char *subject, int days, GError **err);

/* CSR for a subordinate CA (requests basicConstraints CA:TRUE and the CA
 * key usages). Caller frees. */
X509_REQ *kms_ca_make_csr(EVP_PKEY *key, const char *subject, GError **err);

/*
 * Check a CA certificate an administrator wants to install for KEY.
 * CA_CERT: the certificate signed by the parent; CHAIN: its issuers up to
 * and including a self-signed root (may be NULL/empty when CA_CERT is self-
 * signed). Checks: CA_CERT's public key is KEY's; each certificate is a CA
 * (basicConstraints CA:TRUE, keyCertSign); link by link the issuer name of
 * one equals the subject name of the next and the signature verifies with
 * the next one's key; the last is self-signed; every certificate is valid
 * now and at least CERT_DAYS days into the future. On failure the message
 * names the link ("link 2 (CN=...): issuer CN=a does not match ...").
 * Also refused: keys or signatures under 112-bit security (RSA < 2048,
 * SHA-1; a root's self-signature is not judged), pathLenConstraint
 * violations, a CA_CERT without cRLSign (it signs our CRLs), certificates
 * after the self-signed root. Link 1 is CA_CERT, link 2 the first of CHAIN.
 */
gboolean kms_ca_check_chain(EVP_PKEY *key, X509 *ca_cert, STACK_OF(X509) *chain,
    int cert_days, GError **err);

typedef enum {
	KMS_PROFILE_ENCRYPTION,	/* keyEncipherment (RSA) / keyAgreement (EC) */
	KMS_PROFILE_SIGNING,	/* digitalSignature + nonRepudiation */
} KmsCertProfile;

typedef struct {
	KmsCertProfile profile;
	const char *address;	/* rfc822Name in SAN and emailAddress-free CN */
	const char *common_name;/* NULL: the address */
	int days;		/* validity, capped at the CA's notAfter */
	const char *crl_url;	/* CRL distribution point, NULL for none */
} KmsIssueParams;

/* Issue an S/MIME certificate for PUBKEY signed by CA_KEY/CA_CERT: EKU
 * emailProtection, SAN rfc822Name, AKI/SKI, CDP when crl_url, serial of
 * 127 random bits (positive, >= 64 bits as required). Caller frees.
 * KMS_CA_ERROR_INVALID when the address is not ASCII local@domain, the
 * CN is longer than 64 characters, PUBKEY is neither RSA nor EC, CA_KEY
 * does not match CA_CERT, or CA_CERT has expired. Note: OpenSSL 3.0's
 * "smimeencrypt" purpose check wants keyEncipherment, so it refuses EC
 * encryption certificates (keyAgreement) although CMS uses them fine. */
X509 *kms_ca_issue(X509 *ca_cert, EVP_PKEY *ca_key, EVP_PKEY *pubkey,
    const KmsIssueParams *p, GError **err);

#endif
