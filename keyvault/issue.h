/*
 * NAME
 *	issue - kmsd's enrollment and recovery requests
 * DESCRIPTION
 *	An "enroll" request (queued by kmsmilter when a reply's token was
 *	consumed) makes the user's encryption key, escrows it sealed in the
 *	vault, issues the encryption certificate, a signing certificate from
 *	the reply's PKCS#10 request or for an ephemeral key, and mails a
 *	PKCS#12 to the enrolled address. A "recover" request mails a PKCS#12
 *	of every escrowed key of the user with its certificate. Everything
 *	happens in the worker's transaction, which commits only after the
 *	mail was accepted: a crash leaves nothing half done and the request
 *	queued.
 * SECURITY
 *	Opens escrowed keys, the CA key and the PKCS#12 password; wipes them.
 * DIAGNOSTICS
 *	GError; messages name the request and address, never a secret.
 */
#ifndef KMS_ISSUE_H
#define KMS_ISSUE_H

#include <glib.h>

#include "keyvault/worker.h"

/* Do request ID of KIND ("enroll" or "recover") with its PAYLOAD (JSON
 * text) for USER_ID / ADDRESS, in the caller's transaction. */
gboolean kms_work_enroll(KmsWorker *w, gint64 id, const char *kind, const char *payload,
    gint64 user_id, const char *address, GError **err);

#endif
