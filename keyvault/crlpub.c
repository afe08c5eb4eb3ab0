/*
 * NAME
 *	crlpub - CRL publishing (see crlpub.h)
 */
#include "autoconfig.h"
#include "crlpub.h"

#include "keyvault/db.h"

gboolean
kms_work_crl(KmsWorker *w, gint64 id, GError **err)
{
	(void)w;
	g_set_error(err, KMS_DB_ERROR, KMS_DB_ERROR_QUERY,
	    "request %" G_GINT64_FORMAT ": crl is not implemented yet", id);
	return FALSE;
}
