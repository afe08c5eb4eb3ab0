/*
 * NAME
 *	dbpool - a bounded pool of vault connections for threaded callers
 * DESCRIPTION
 *	kmsmilter serves each SMTP connection in its own thread; they share
 *	at most MAX connections. A connection found broken when returned is
 *	closed; a new one is opened on demand.
 * SECURITY
 *	Connections use the caller's DSN (role kms_milter for kmsmilter).
 */
#ifndef KMS_DBPOOL_H
#define KMS_DBPOOL_H

#include <glib.h>
#include <libpq-fe.h>

typedef struct kms_db_pool KmsDbPool;

/* DSN and APP are copied. TIMEOUT_US: longest wait for a free slot. */
KmsDbPool *kms_db_pool_new(const char *dsn, const char *app, guint max, gint64 timeout_us);
/* Wait for a connection; NULL with *err (KMS_DB_ERROR_RETRY on timeout or
 * KMS_DB_ERROR_CONNECT) when none can be had. Return it with _put. */
PGconn *kms_db_pool_get(KmsDbPool *p, GError **err);
void kms_db_pool_put(KmsDbPool *p, PGconn *c);
/* Close idle connections and free; callers must have returned theirs. */
KmsDbPool *kms_db_pool_free(KmsDbPool *p);

#endif
