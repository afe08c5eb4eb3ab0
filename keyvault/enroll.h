/*
 * NAME
 *	enroll - enrollment tokens and the requests that mail them
 * DESCRIPTION
 *	kms_enroll_user() registers an address (creating the user if new),
 *	makes a one-time token bound to it, stores only the token's hash, and
 *	queues a "mail" request for kmsd carrying the token encrypted to the
 *	queue key (queuekey.h). With DELIVER_MAIL false the token is only
 *	returned, for the administrator to hand over in person, and the
 *	queued mail explains how to reply without it. A pending token of the
 *	same purpose for the address is cancelled: one live token per user.
 * SECURITY
 *	The token exists in clear only in the returned KmsSecret and inside
 *	kmsd while it writes the mail.
 * DIAGNOSTICS
 *	GError in KMS_DB_ERROR, KMS_SEAL_ERROR or G_OPTION_ERROR (bad address).
 */
#ifndef KMS_ENROLL_H
#define KMS_ENROLL_H

#include <glib.h>
#include <libpq-fe.h>

#include "common/secret.h"
#include "keyvault/queuekey.h"

typedef struct {
	const char *purpose;		/* "enroll" or "recover" */
	gint64 token_ttl;		/* seconds */
	gint64 request_ttl;		/* seconds a queued mail waits for kmsd */
	gboolean deliver_mail;		/* token in the mail, else out of band */
	guint8 queue_pub[KMS_QUEUE_KEY_LEN];
} KmsEnrollParams;

/* Inside the caller's transaction. *TOKEN gets the printed token (caller
 * frees); *NORMALIZED_ADDRESS (may be NULL) the address as stored. */
gboolean kms_enroll_user(PGconn *c, const KmsEnrollParams *p, const char *address,
    KmsSecret **token, char **normalized_address, GError **err);

#endif
