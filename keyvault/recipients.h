/*
 * NAME
 *	recipients - a recipient's encryption certificate and capabilities
 * DESCRIPTION
 *	kms_recipient_lookup() answers for one address, three ways: found,
 *	not found (no usable certificate), or an error (KMS_DB_ERROR_RETRY
 *	is transient: tempfail, never send in clear).
 *	kms_recipient_lookup_many() answers the same for every address of a
 *	message, each with its own allow_untrusted, in one statement;
 *	kms_recipient_lookup() is its case of one address.
 *
 *	The certificate is usable when it is valid now (not_before <= now <
 *	not_after), not in revocations, has an RSA or EC public key, allows
 *	key transport (keyUsage, if present, has keyEncipherment for RSA,
 *	keyAgreement for EC; extendedKeyUsage, if present, has
 *	emailProtection or anyExtendedKeyUsage) and is either
 *	  issued by us: source issued, status valid, usage encryption or
 *	  both; or
 *	  harvested: status trusted, or untrusted-chain when ALLOW_UNTRUSTED
 *	  (never expired or any other status).
 *	Among the usable ones, in this order (per address, only the first
 *	20 that pass the vault's checks are parsed for the key checks):
 *	  1. the certificate named by the newest (signing time)
 *	     SMIMEEncryptionKeyPreference announced by the address;
 *	  2. the newest (not_before, then newest row) certificate carrying
 *	     the address in its subjectAltName.
 *
 *	Capabilities: the algorithms of the newest (signing time) harvested
 *	signature by the address, whichever certificate signed it - they
 *	describe the client that reads the mail. When that signature
 *	announced none, or the address never signed (our own users'
 *	issued certificates, until they send signed mail), capabilities is
 *	NULL: unknown, the policy's unknown_capabilities apply.
 *	capabilities_source is "harvested YYYY-MM-DDTHH:MM:SSZ" (the
 *	signing time) or "none".
 * SECURITY
 *	Read-only; works with the kms_milter role (SELECT on certificates,
 *	certificate_addresses, capabilities, revocations). Values from
 *	hostile mail (capability names) are returned as data only.
 * DIAGNOSTICS
 *	GError in KMS_DB_ERROR.
 */
#ifndef KMS_RECIPIENTS_H
#define KMS_RECIPIENTS_H

#include <glib.h>
#include <libpq-fe.h>
#include <openssl/x509.h>

#include "smime/negotiate.h"

typedef struct {
	char *address;			/* as asked for */
	X509 *cert;			/* owned */
	char *sha256;			/* lowercase hex */
	gint64 cert_id;			/* certificates.id */
	char *source;			/* "issued" or "harvested" */
	char *status;			/* valid, trusted, untrusted-chain */
	gboolean key_preference;	/* chosen as the address's key preference */
	KmsNegotiateKeyKind key_kind;
	char **capabilities;		/* NULL-terminated; NULL: unknown */
	char *capabilities_source;	/* "harvested ISO-TIME" or "none" */
} KmsRecipient;

/* Look up ADDRESS (compared case-insensitively). TRUE with *out set
 * (free with kms_recipient_free) when found, TRUE with *out NULL when no
 * certificate is usable, FALSE with *err on a database error. */
gboolean kms_recipient_lookup(PGconn *c, const char *address, gboolean allow_untrusted,
    KmsRecipient **out, GError **err);
/* Look up the N ADDRESSES, address I with ALLOW_UNTRUSTED[I]: TRUE with
 * OUT[I] (N slots, caller's) set to its recipient (free each with
 * kms_recipient_free) or NULL when no certificate is usable; FALSE with
 * *err and every OUT[I] NULL on a database error. */
gboolean kms_recipient_lookup_many(PGconn *c, const char *const *addresses,
    const gboolean *allow_untrusted, gsize n, KmsRecipient **out, GError **err);

KmsRecipient *kms_recipient_free(KmsRecipient *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KmsRecipient, kms_recipient_free)

/* Fill N (borrowing R's strings) for kms_negotiate(). */
void kms_recipient_negotiate_input(const KmsRecipient *r, KmsNegotiateRecipient *n);

#endif
