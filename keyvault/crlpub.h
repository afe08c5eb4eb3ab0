/*
 * NAME
 *	crlpub - publishing the internal CA's CRL
 * DESCRIPTION
 *	kmsd builds a CRL from the revocations table, signs it with the CA
 *	key, stores it in the ca row (crl, crl_number, crl_next_update, so
 *	kmsctl crl can print it without the vault key) and writes it to
 *	[ca] crl_dir as DER and PEM. It does so for each "crl" request
 *	(queued by kmsctl revoke) and again before nextUpdate.
 * SECURITY
 *	Opens the CA key (unsealed vault) and wipes it.
 * DIAGNOSTICS
 *	GError; log lines name the CRL number and file.
 */
#ifndef KMS_CRLPUB_H
#define KMS_CRLPUB_H

#include <glib.h>

#include "keyvault/worker.h"

/* A "crl" request ID, in the caller's transaction. */
gboolean kms_work_crl(KmsWorker *w, gint64 id, GError **err);

#endif
