/*
 * NAME
 *	harvest - find S/MIME signatures in a message and what they announce
 * DESCRIPTION
 *	kms_harvest() parses one RFC 5322 message with GMime, finds every
 *	S/MIME signature - multipart/signed with application/pkcs7-signature
 *	or application/x-pkcs7-signature, and opaque application/pkcs7-mime
 *	(or x-pkcs7-mime) with smime-type=signed-data - also inside other
 *	multiparts and attached message/rfc822 parts, down to a depth limit.
 *	For each signer it verifies the signature over the canonical (CRLF)
 *	content, then the signer's chain against a caller-supplied trust
 *	store, and reports the signer certificate, the other certificates in
 *	the CMS, the signer's rfc822Name addresses (never the From header),
 *	the signing time, the SMIMECapabilities in the signer's order and the
 *	certificate named by SMIMEEncryptionKeyPreference.
 * SECURITY
 *	Input is hostile mail. Limits on depth, parts, CMS size and signers
 *	are enforced; nothing here writes anywhere or holds a secret. Parse
 *	errors are reported as problems, never as crashes or lost mail.
 * DIAGNOSTICS
 *	Problems are short lines for the log (no message content).
 */
#ifndef KMS_HARVEST_H
#define KMS_HARVEST_H

#include <glib.h>
#include <time.h>
#include <openssl/x509.h>

typedef enum {
	KMS_SIGNER_TRUSTED,		/* signature and chain verify */
	KMS_SIGNER_UNTRUSTED_CHAIN,	/* signature verifies, chain does not */
	KMS_SIGNER_EXPIRED,		/* signature verifies, certificate expired */
	KMS_SIGNER_BAD_SIGNATURE,	/* signature does not verify: never stored */
} KmsSignerStatus;

/* "trusted", "untrusted-chain", "expired", "bad-signature" */
const char *kms_signer_status_name(KmsSignerStatus s);

typedef struct {
	KmsSignerStatus status;
	char *detail;		/* why not trusted (X509 verify text), or NULL */
	X509 *cert;		/* signer certificate (owned) */
	GPtrArray *addresses;	/* char *: rfc822Names of the SAN, lower-cased domain */
	gint64 signing_time;	/* seconds since the epoch, -1 when absent */
	gboolean has_capabilities;	/* SMIMECapabilities attribute present */
	GPtrArray *capabilities;	/* char *: names (smime/capabilities.h), in order;
					 * empty, never NULL, when absent */
	X509 *key_preference;	/* certificate named by SMIMEEncryptionKeyPreference,
				 * found among the CMS certificates; NULL if absent */
} KmsHarvestSigner;

typedef struct {
	guint signatures;	/* S/MIME signature parts found */
	GPtrArray *signers;	/* KmsHarvestSigner *, including bad ones */
	STACK_OF(X509) *certs;	/* every certificate carried by the verified
				 * CMS structures (signers included), de-duplicated */
	GPtrArray *problems;	/* char *: one log line each, e.g. "nesting
				 * deeper than 20 levels: rest not examined" */
} KmsHarvestResult;

typedef struct {
	X509_STORE *trust;	/* roots: system + trust list + internal CA (borrowed;
				 * X509_STORE is safe to share between threads) */
	guint max_depth;	/* MIME nesting limit (default 20) */
	guint max_parts;	/* parts examined per message (default 1000) */
	gsize max_cms_size;	/* largest signature/opaque part decoded (default 10 MiB) */
	guint max_signers;	/* signers per CMS (default 10) */
	time_t now;		/* verification time, 0: the current time */
} KmsHarvestOptions;

/* Defaults as documented above; trust NULL. */
void kms_harvest_options_init(KmsHarvestOptions *o);

/* Harvest a whole message (headers and body, LF or CRLF line ends).
 * Never fails: a message that cannot be parsed yields no signers and a
 * problem line. O NULL: the defaults. Caller frees with
 * kms_harvest_result_free. */
KmsHarvestResult *kms_harvest(const KmsHarvestOptions *o, const void *msg, gsize len);
/* Same, reading the message from FD (e.g. a spool file) from its start
 * into memory; a regular file's offset is left unchanged, FD stays open. */
KmsHarvestResult *kms_harvest_fd(const KmsHarvestOptions *o, int fd);

KmsHarvestResult *kms_harvest_result_free(KmsHarvestResult *r);

#endif
