/*
 * NAME
 *	crlpub - publishing the internal CA's CRL
 * DESCRIPTION
 *	kmsd builds a CRL from the revocations table, signs it with the CA
 *	key, stores it in the active ca row (crl, crl_number,
 *	crl_next_update, so kmsctl crl can print it without the vault key)
 *	and writes it to [ca] crl_dir as DER and PEM. It does so for each
 *	"crl" request (queued by kmsctl revoke; several waiting requests
 *	collapse into one CRL) and, from kms_crl_maintain() on kmsd's
 *	timer, when the vault holds no CRL yet or the current one is past
 *	half of its lifetime, so relying parties never see it expire.
 *
 *	Which revocations belong on the CRL: every revoked certificate of
 *	source "issued" whose DER names this CA as its issuer by the rules
 *	of X509_check_issued (issuer name equals the CA's subject and the
 *	authority key identifier matches the CA's key). That holds across
 *	changes to how names are rendered as text, and keeps a retired CA's
 *	certificates off its successor's CRL.
 *
 *	The CRL number and the stored CRL change only with the ca row locked
 *	(SELECT ... FOR UPDATE), so two kmsd never sign the same number. The
 *	files are written from the committed row only (kms_crl_maintain), so
 *	a CRL whose transaction failed never reaches crl_dir.
 * SECURITY
 *	Opens the CA key (unsealed vault) for signing and frees it at once.
 *	CRLs are public: files are mode 0644.
 * DIAGNOSTICS
 *	GError; log lines name the CRL number, its entries and the file.
 */
#ifndef KMS_CRLPUB_H
#define KMS_CRLPUB_H

#include <glib.h>
#include <libpq-fe.h>

#include "keyvault/worker.h"

/* A "crl" request ID, in the caller's transaction: sign the next CRL and
 * store it; mark the other waiting "crl" requests done. The files follow
 * at the next kms_crl_maintain(), after the caller commits. */
gboolean kms_work_crl(KmsWorker *w, gint64 id, GError **err);

/* kmsd's timer (and after each batch of requests): publish a new CRL
 * when none exists, the current one is past half of its lifetime, or
 * "crl" requests expired unprocessed; then make [ca] crl_dir hold the
 * CRL stored in the vault. Runs its own transactions. *published (may be
 * NULL) gets the number of a CRL signed or written now, else 0. */
gboolean kms_crl_maintain(KmsWorker *w, gint64 *published, GError **err);

/* The file name the CRL gets in crl_dir: the last path segment of
 * CRL_URL when it has one, else "kms.crl". g_free. */
char *kms_crl_basename(const char *crl_url);

/* Revoke the N issued certificates IDS (SERIALS and ADDRESSES for the
 * audit entry) with REASON by BY, queue a "crl" request (TTL seconds) and
 * wake kmsd, in the caller's transaction. A certificate that is no longer
 * issued and valid is refused (KMS_DB_ERROR_QUERY naming its serial). */
gboolean kms_revoke_apply(PGconn *db, guint n, const gint64 *ids, const char *const *serials,
    const char *const *addresses, const char *reason, const char *by, gint64 ttl,
    GError **err);

#endif
