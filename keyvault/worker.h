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
#include "keyvault/vaultca.h"

typedef struct {
	KmsVault *vault;	/* unsealed (borrowed) */
	const KmsConfig *cfg;	/* borrowed */
	KmsSecret *queue_priv;	/* owned */
	KmsMailer mailer;	/* its keep is owned: one SMTP connection kept open */
	/* kms_worker_ca(): the CA row's version ("ID/XMIN") and what was
	 * parsed and opened from it; owned */
	char *ca_version;
	KmsVaultCa *ca;
	EVP_PKEY *ca_key;
} KmsWorker;

/* Load the queue key; FALSE with *err when the vault has none. Call
 * kms_worker_clear() either way. */
gboolean kms_worker_init(KmsWorker *w, KmsVault *v, const KmsConfig *cfg, GError **err);
/* Free what W owns and QUIT its SMTP connection; W zeroed but never
 * initialised is fine too. */
void kms_worker_clear(KmsWorker *w);

/* Render template NAME (mailtemplates.h, or its file in [enrollment]
 * template_dir) with VARS (name, value, ..., NULL) and mail it to TO with
 * Reply-To the enroll address and an optional attachment. */
gboolean kms_worker_send(KmsWorker *w, const char *name, const char *to, const char *const *vars,
    const char *attachment_name, const char *attachment_type, GBytes *attachment,
    GError **err);

/*
 * The vault's current CA, as kms_vault_ca_load() chooses it; NULL with
 * *err when there is none. It belongs to W and stays valid until the next
 * call. It is parsed once per version of the CA row (kms_vault_ca_version:
 * every UPDATE of the row, such as a new CRL or a re-sealing, makes a new
 * version), not once per request; one small SELECT per call checks the
 * version.
 */
const KmsVaultCa *kms_worker_ca(KmsWorker *w, GError **err);
/* The private key of the CA the last kms_worker_ca() returned, opened at
 * the first call for that CA; NULL with *err when it cannot be. W's. */
EVP_PKEY *kms_worker_ca_key(KmsWorker *w, GError **err);

/* Claim and do one request. *did is FALSE when none was waiting. A failed
 * request is recorded and FALSE returned with *err. */
gboolean kms_worker_run_one(KmsWorker *w, gboolean *did, GError **err);
/* Expire requests past their time, telling the users; returns how many. */
guint kms_worker_expire(KmsWorker *w);

#endif
