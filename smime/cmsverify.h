/*
 * NAME
 *	cmsverify - verify one CMS SignedData for harvest (internal to smime/)
 * DESCRIPTION
 *	kms_cms_harvest() checks every signer of a SignedData found by
 *	harvest.c: the signature over the content, then the signer's chain,
 *	and reads the signer's addresses, signing time, capabilities and
 *	encryption key preference into the harvest result.
 * SECURITY
 *	The CMS comes from hostile mail; see harvest.h for the limits.
 * DIAGNOSTICS
 *	Problem lines in the result, prefixed with the part they concern.
 */
#ifndef KMS_CMSVERIFY_H
#define KMS_CMSVERIFY_H

#include "harvest.h"

#include <openssl/cms.h>

/* State shared by the signatures of one message. */
typedef struct {
	const KmsHarvestOptions *opts;	/* borrowed */
	X509_STORE *store;		/* opts->trust, or an empty store */
	gboolean own_store;		/* store is ours to free */
	KmsHarvestResult *result;	/* borrowed: signers, certs, problems */
	GHashTable *seen;		/* GBytes: DER of result->certs */
} KmsCmsHarvest;

/* Set up H for one message; FALSE (with a problem line in R) when OpenSSL
 * cannot allocate. Release with kms_cms_harvest_clear. */
gboolean kms_cms_harvest_init(KmsCmsHarvest *h, const KmsHarvestOptions *o,
    KmsHarvestResult *r);
void kms_cms_harvest_clear(KmsCmsHarvest *h);

/*
 * Verify the SignedData CMS (borrowed). CONTENT: the detached content in
 * canonical form, NULL for encapsulated content. WHERE names the part in
 * problem lines ("part 1.2"). When ECONTENT is not NULL and the CMS
 * encapsulates id-data, *ECONTENT gets that content (g_bytes_unref),
 * whether or not a signer verified.
 */
void kms_cms_harvest(KmsCmsHarvest *h, CMS_ContentInfo *cms, GBytes *content,
    GBytes **econtent, const char *where);

/* Add a problem line to R (at most a fixed number per message). */
void kms_harvest_problem(KmsHarvestResult *r, const char *fmt, ...)
    G_GNUC_PRINTF(2, 3);

/* Free one signer entry; for GPtrArray free functions. */
void kms_harvest_signer_free(gpointer signer);

#endif
