/*
 * NAME
 *	issue - enrollment and recovery (see issue.h)
 */
#include "autoconfig.h"
#include "issue.h"

#include "keyvault/db.h"

gboolean
kms_work_enroll(KmsWorker *w, gint64 id, const char *kind, const char *payload,
    gint64 user_id, const char *address, GError **err)
{
	(void)w; (void)payload; (void)user_id; (void)address;
	g_set_error(err, KMS_DB_ERROR, KMS_DB_ERROR_QUERY,
	    "request %" G_GINT64_FORMAT ": %s is not implemented yet", id, kind);
	return FALSE;
}
