/*
 * NAME
 *	issue - kmsd's enrollment and recovery requests
 * DESCRIPTION
 *	An "enroll" request (queued by kmsmilter when a reply's token was
 *	consumed) makes the user's encryption key, escrows it sealed in the
 *	vault (a new row every time: the key history is never overwritten),
 *	issues the encryption certificate, a signing certificate for the
 *	public key of the reply's PKCS#10 request or for an ephemeral key
 *	([enrollment] signing_key), and mails a PKCS#12 to the enrolled
 *	address. A "recover" request mails one PKCS#12 holding every
 *	escrowed key of the user with its certificate, newest first.
 *	The PKCS#12 password is the token of the reply (sealed to the queue
 *	key in the payload) or, with [enrollment] p12_password = pin, the
 *	PIN kmsctl printed for the administrator (sealed on the token row).
 *	Everything happens in the worker's transaction and the mail is sent
 *	last; the worker commits after the handler returned TRUE. A failure
 *	rolls back to a savepoint taken on entry, so nothing half done
 *	survives even though the worker commits its attempt count.
 * SECURITY
 *	Opens the CA key, escrowed keys and the PKCS#12 password; wipes
 *	them. Signing keys (ephemeral) exist only in memory and in the
 *	mailed PKCS#12. The mail goes to the enrolled address, never to the
 *	reply's sender.
 * DIAGNOSTICS
 *	GError; messages name the request and address, never a secret.
 *	KMS_ISSUE_ERROR_REFUSED marks a request that can never succeed
 *	(no escrowed key to recover, a corrupt payload): the worker fails it
 *	for good instead of retrying it.
 */
#ifndef KMS_ISSUE_H
#define KMS_ISSUE_H

#include <glib.h>

#include "keyvault/worker.h"

#define KMS_ISSUE_ERROR (kms_issue_error_quark())
GQuark kms_issue_error_quark(void);

typedef enum {
	KMS_ISSUE_ERROR_REFUSED,	/* permanent: retrying cannot help */
} KmsIssueError;

/* Do request ID of KIND ("enroll" or "recover") with its PAYLOAD (JSON
 * text) for USER_ID / ADDRESS, in the caller's transaction. */
/* Set *ERR to a KMS_ISSUE_ERROR_REFUSED refusal (the request can never
 * succeed: the worker fails it) and return FALSE. */
gboolean kms_refuse(GError **err, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
gboolean kms_work_enroll(KmsWorker *w, gint64 id, const char *kind, const char *payload,
    gint64 user_id, const char *address, GError **err);

#endif
