/*
 * NAME
 *	outbound - the vault side of encrypting one message: policies,
 *	certificates, negotiation
 * DESCRIPTION
 *	The one code path shared by kmsctl negotiate and kmsmilter's
 *	encryption job, in three steps so that the milter can stop early:
 *
 *	kms_outbound_policies() resolves the sender's policy (header,
 *	subject_tag, algorithms ... come from it, policy.h) and each
 *	distinct recipient's (compared without case; the first spelling is
 *	kept), all in one statement (kms_policy_resolve_many());
 *	kms_outbound_level() is then the message's encrypt level.
 *
 *	kms_outbound_certificates() looks up each recipient's usable
 *	encryption certificate (recipients.h, with that recipient's
 *	allow_untrusted) into found, the others into missing, and the
 *	sender's own certificate (with the sender's allow_untrusted) when
 *	the sender is not a recipient anyway: the gateway encrypts to it
 *	so the sender can read what was sent; it never counts as a
 *	recipient for the mixed-recipient rules. One statement for them
 *	all (kms_recipient_lookup_many()).
 *
 *	So a message costs two statements in the vault, however many
 *	recipients it has.
 *
 *	kms_outbound_negotiate() runs kms_negotiate() over found (and the
 *	sender's certificate when WITH_SENDER) under the sender's policy.
 * SECURITY
 *	Public data and administrator settings; works with the kms_milter
 *	role. Addresses are data only.
 * DIAGNOSTICS
 *	GError in KMS_DB_ERROR (KMS_DB_ERROR_RETRY: transient), KMS_POLICY_ERROR
 *	or KMS_NEGOTIATE_ERROR.
 */
#ifndef KMS_OUTBOUND_H
#define KMS_OUTBOUND_H

#include <glib.h>
#include <libpq-fe.h>

#include "keyvault/policy.h"
#include "keyvault/recipients.h"
#include "smime/negotiate.h"

typedef struct {
	char *from;			/* sender as given; NULL: none */
	KmsPolicy *sender_policy;	/* the sender's (global without sender) */
	GPtrArray *rcpts;		/* char *: distinct recipients, input spelling */
	GPtrArray *policies;		/* KmsPolicy *: one per rcpts entry */
	gboolean from_listed;		/* the sender is one of the recipients */
	/* after kms_outbound_certificates() */
	GPtrArray *found;		/* KmsRecipient *, in rcpts order */
	GPtrArray *missing;		/* char *: recipients without a usable certificate */
	KmsRecipient *sender;		/* the sender's own when not listed, or NULL */
} KmsOutbound;

/* Resolve the policies of FROM (may be NULL) and the N RCPTS. NULL with
 * *err on a database error or an invalid policy value. */
KmsOutbound *kms_outbound_policies(PGconn *c, const KmsConfig *cfg, const char *from,
    const char *const *rcpts, gsize n, GError **err);

/* The message's encrypt level (kms_policy_message()). */
KmsEncryptLevel kms_outbound_level(const KmsOutbound *o, gboolean triggered);

/* Look up the certificates (see DESCRIPTION). FALSE with *err on a
 * database error; found, missing and sender are then left as they were. */
gboolean kms_outbound_certificates(PGconn *c, KmsOutbound *o, GError **err);

/* SHA-256 of the sender's own certificate (as recipient or not), or NULL. */
const char *kms_outbound_sender_sha(const KmsOutbound *o);

/* Negotiate over found (+ the sender's certificate when WITH_SENDER);
 * as kms_negotiate(). An empty found is KMS_NEGOTIATE_ERROR_INVALID. */
KmsNegotiateResult *kms_outbound_negotiate(const KmsOutbound *o, gboolean with_sender,
    GPtrArray **blockers, GError **err);

KmsOutbound *kms_outbound_free(KmsOutbound *o);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KmsOutbound, kms_outbound_free)

#endif
