/*
 * NAME
 *	state - configuration snapshots with reference counts (see state.h)
 */
#include "autoconfig.h"
#include "state.h"

#include <string.h>

#include "common/log.h"
#include "keyvault/certstore.h"

static GMutex current_lock;
static KmsMilterState *current;

/* Reference counting through GLib's atomic refcounted boxes. */
KmsMilterState *
kms_state_new(KmsConfig *cfg)
{
	KmsMilterState *s = g_atomic_rc_box_new0(KmsMilterState);

	s->cfg = cfg;
	s->max_message_size = (gsize)kms_config_get_int(cfg, "milter", "max_message_size");
	s->spool_memory = (gsize)kms_config_get_int(cfg, "milter", "spool_memory");
	s->temp_dir = kms_config_get(cfg, "milter", "temp_dir");
	s->tempfail_on_db_error = strcmp(kms_config_get(cfg, "milter", "on_db_error"), "tempfail") == 0;
	s->max_depth = (guint)kms_config_get_int(cfg, "milter", "max_depth");
	s->trust_refresh_us = kms_config_get_int(cfg, "milter", "trust_refresh") * G_USEC_PER_SEC;
	s->system_trust = kms_config_get_bool(cfg, "milter", "system_trust");
	s->pool = kms_db_pool_new(kms_config_dsn(cfg, "milter"), "kmsmilter",
	    (guint)kms_config_get_int(cfg, "milter", "db_connections"),
	    kms_config_get_int(cfg, "milter", "db_timeout") * G_USEC_PER_SEC);
	g_mutex_init(&s->trust_lock);
	return s;
}

static void
state_clear(gpointer data)
{
	KmsMilterState *s = data;

	X509_STORE_free(s->trust);
	kms_db_pool_free(s->pool);
	kms_config_free(s->cfg);
	g_mutex_clear(&s->trust_lock);
}

void
kms_state_release(KmsMilterState *s)
{
	if (s)
		g_atomic_rc_box_release_full(s, state_clear);
}

void
kms_state_install(KmsMilterState *s)
{
	KmsMilterState *old;

	g_mutex_lock(&current_lock);
	old = current;
	current = s;
	g_mutex_unlock(&current_lock);
	kms_state_release(old);
}

KmsMilterState *
kms_state_acquire(void)
{
	KmsMilterState *s;

	g_mutex_lock(&current_lock);
	s = current ? g_atomic_rc_box_acquire(current) : NULL;
	g_mutex_unlock(&current_lock);
	return s;
}

void
kms_state_shutdown(void)
{
	kms_state_install(NULL);
}

X509_STORE *
kms_state_trust(KmsMilterState *s, const char *qid)
{
	X509_STORE *st;
	gint64 now = g_get_monotonic_time();

	g_mutex_lock(&s->trust_lock);
	if (s->trust == NULL || now - s->trust_loaded_at >= s->trust_refresh_us) {
		g_autoptr(GError) e = NULL;
		PGconn *c = kms_db_pool_get(s->pool, &e);
		guint anchors = 0;
		X509_STORE *fresh = c ? kms_trust_load(c, s->system_trust, &anchors, &e) : NULL;

		kms_db_pool_put(s->pool, c);
		if (fresh) {
			X509_STORE_free(s->trust);
			s->trust = fresh;
			kms_log(LOG_DEBUG, qid, "trust store loaded: %u certificates from the vault%s",
			    anchors, s->system_trust ? " and the system's roots" : "");
		} else {
			kms_log(LOG_WARNING, qid, "cannot refresh the trust store: %s%s", e->message,
			    s->trust ? " (keeping the previous one)" : "");
		}
		/* retry a failed load after another period, not per message; but
		 * soon when there is no store at all yet */
		s->trust_loaded_at = now;
		if (s->trust == NULL && s->trust_refresh_us > 5 * G_USEC_PER_SEC)
			s->trust_loaded_at = now - s->trust_refresh_us + 5 * G_USEC_PER_SEC;
	}
	st = s->trust;
	if (st)
		X509_STORE_up_ref(st);
	g_mutex_unlock(&s->trust_lock);
	return st;
}
