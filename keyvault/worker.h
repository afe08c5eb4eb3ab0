/*
 * NAME
 *	worker - kmsd's request processing
 * DESCRIPTION
 *	Requests wait in the requests table. A worker claims the oldest one
 *	with SELECT ... FOR UPDATE SKIP LOCKED, so several kmsd can share one
 *	vault without doing anything twice; does it; and marks it done in the
 *	same transaction. A request that fails (the MTA is down) stays queued
 *	with its attempt count and last error and is tried again later; one
 *	that waited past its expires_at is expired with a mail to the user.
 *	Kinds: "mail" (token mails, here), "enroll" and "recover" (issue.h),
 *	"crl" (crlpub.h).
 *	A request its handler refuses for good (KMS_ISSUE_ERROR_REFUSED,
 *	issue.h) is marked failed with its error, so it blocks no queue.
 * SECURITY
 *	Holds the vault's queue key; opens queued tokens only to write them
 *	into the user's mail.
 * DIAGNOSTICS
 *	Log lines name the request id, kind and address, never a token.
 */
#ifndef KMS_WORKER_H
#define KMS_WORKER_H

#include <glib.h>

#include "common/config.h"
#include "common/mailer.h"
#include "common/secret.h"
#include "keyvault/vault.h"

typedef struct {
	KmsVault *vault;	/* unsealed (borrowed) */
	const KmsConfig *cfg;	/* borrowed */
	KmsSecret *queue_priv;	/* owned */
	KmsMailer mailer;
} KmsWorker;

/* Load the queue key; FALSE with *err when the vault has none. */
gboolean kms_worker_init(KmsWorker *w, KmsVault *v, const KmsConfig *cfg, GError **err);
void kms_worker_clear(KmsWorker *w);

/* Render template NAME (mailtemplates.h, or its file in [enrollment]
 * template_dir) with VARS (name, value, ..., NULL) and mail it to TO with
 * Reply-To the enroll address and an optional attachment. */
gboolean kms_worker_send(KmsWorker *w, const char *name, const char *to, const char *const *vars,
    const char *attachment_name, const char *attachment_type, GBytes *attachment,
    GError **err);

/* Claim and do one request. *did is FALSE when none was waiting. A failed
 * request is recorded and FALSE returned with *err. */
gboolean kms_worker_run_one(KmsWorker *w, gboolean *did, GError **err);
/* Expire requests past their time, telling the users; returns how many. */
guint kms_worker_expire(KmsWorker *w);

#endif
