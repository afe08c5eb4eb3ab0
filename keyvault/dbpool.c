/*
 * NAME
 *	dbpool - bounded connection pool (see dbpool.h)
 */
#include "autoconfig.h"
#include "dbpool.h"

#include "keyvault/db.h"

struct kms_db_pool {
	char *dsn;
	char *app;
	guint max;
	guint open;		/* connections in use or idle */
	gint64 timeout_us;
	GQueue idle;
	GMutex lock;
	GCond freed;
};

KmsDbPool *
kms_db_pool_new(const char *dsn, const char *app, guint max, gint64 timeout_us)
{
	KmsDbPool *p = g_new0(KmsDbPool, 1);

	p->dsn = g_strdup(dsn);
	p->app = g_strdup(app);
	p->max = max ? max : 1;
	p->timeout_us = timeout_us;
	g_queue_init(&p->idle);
	g_mutex_init(&p->lock);
	g_cond_init(&p->freed);
	return p;
}

PGconn *
kms_db_pool_get(KmsDbPool *p, GError **err)
{
	gint64 deadline = g_get_monotonic_time() + p->timeout_us;
	PGconn *c = NULL;

	g_mutex_lock(&p->lock);
	for (;;) {
		c = g_queue_pop_head(&p->idle);
		if (c != NULL || p->open < p->max)
			break;
		if (!g_cond_wait_until(&p->freed, &p->lock, deadline)) {
			g_mutex_unlock(&p->lock);
			g_set_error(err, KMS_DB_ERROR, KMS_DB_ERROR_RETRY,
			    "all %u vault connections busy for %" G_GINT64_FORMAT " s",
			    p->max, p->timeout_us / G_USEC_PER_SEC);
			return NULL;
		}
	}
	if (c == NULL)
		p->open++;	/* reserve the slot, connect outside the lock */
	g_mutex_unlock(&p->lock);
	if (c != NULL && PQstatus(c) != CONNECTION_OK) {
		PQreset(c);
		if (PQstatus(c) == CONNECTION_OK)
			return c;
		kms_db_pool_put(p, c);
		g_set_error(err, KMS_DB_ERROR, KMS_DB_ERROR_CONNECT,
		    "cannot reconnect to the vault database");
		return NULL;
	}
	if (c == NULL) {
		c = kms_db_connect(p->dsn, p->app, err);
		if (c == NULL) {
			g_mutex_lock(&p->lock);
			p->open--;
			g_cond_signal(&p->freed);
			g_mutex_unlock(&p->lock);
		}
	}
	return c;
}

void
kms_db_pool_put(KmsDbPool *p, PGconn *c)
{
	if (c == NULL)
		return;
	g_mutex_lock(&p->lock);
	if (PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) == PQTRANS_IDLE)
		g_queue_push_head(&p->idle, c);
	else {
		PQfinish(c);
		p->open--;
	}
	g_cond_signal(&p->freed);
	g_mutex_unlock(&p->lock);
}

KmsDbPool *
kms_db_pool_free(KmsDbPool *p)
{
	PGconn *c;

	if (p == NULL)
		return NULL;
	while ((c = g_queue_pop_head(&p->idle)) != NULL)
		PQfinish(c);
	g_mutex_clear(&p->lock);
	g_cond_clear(&p->freed);
	g_free(p->dsn);
	g_free(p->app);
	g_free(p);
	return NULL;
}
