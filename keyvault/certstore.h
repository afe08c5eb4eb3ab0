/*
 * NAME
 *	certstore - public certificates in the vault: harvested and trusted
 * DESCRIPTION
 *	Records what harvesting found (certificates, their addresses, the
 *	capabilities each signer announced, with history by signing time),
 *	builds the trust store for harvested chains (system roots, the
 *	certificate trust list, the internal CA), and manages the trust list.
 * SECURITY
 *	Public data only; usable with the kms_milter role. All values travel
 *	as statement parameters.
 * DIAGNOSTICS
 *	GError in KMS_DB_ERROR or KMS_CA_ERROR.
 */
#ifndef KMS_CERTSTORE_H
#define KMS_CERTSTORE_H

#include <time.h>

#include <glib.h>
#include <libpq-fe.h>
#include <openssl/x509.h>

#include "smime/harvest.h"

/* Record R in one transaction. Signers with a bad signature are skipped;
 * certificates that are not signers get the status of their own chain in
 * TRUST. RECEIVED stands in for a missing signing time. *STORED (may be
 * NULL) gets the number of signers recorded. On a transient error
 * (KMS_DB_ERROR_RETRY) the caller may retry once. */
gboolean kms_certstore_record(PGconn *c, const KmsHarvestResult *r, X509_STORE *trust,
    time_t received, guint *stored, GError **err);

/* Trust store for harvested chains: the trust list, the active internal
 * CA and its chain, and with SYSTEM the OpenSSL default paths. *ANCHORS
 * (may be NULL) gets the number of vault certificates added. */
X509_STORE *kms_trust_load(PGconn *c, gboolean system, guint *anchors, GError **err);

/* Record a certificate the internal CA issued to USER_ID for USAGE
 * ("encryption" or "signing"), status valid, with its SAN addresses, in
 * the caller's transaction. Returns the new row id, 0 with *err. */
gint64 kms_certstore_add_issued(PGconn *c, X509 *cert, const char *usage, gint64 user_id,
    GError **err);

/* Trust list: add the certificate (a CA) at DER; remove by fingerprint. */
gboolean kms_ctl_add(PGconn *c, X509 *cert, const char *added_by, gboolean *existed, GError **err);
gboolean kms_ctl_remove(PGconn *c, const char *sha256, gboolean *found, GError **err);

#endif
