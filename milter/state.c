/*
 * NAME
 *	state - configuration snapshots with reference counts (see state.h)
 */
#include "autoconfig.h"
#include "state.h"

#include <string.h>

#include "common/address.h"
#include "common/log.h"
#include "keyvault/certstore.h"
#include "keyvault/db.h"

static GMutex current_lock;
static KmsMilterState *current;

/* Read the auth map at PATH: "login address" per line, blank lines and
 * "#" comments skipped; logins compare case-insensitively, one login may
 * map to several addresses. NULL with *err naming FILE:LINE. */
static GHashTable *
auth_map_load(const char *path, GError **err)
{
	g_autofree char *text = NULL;
	g_auto(GStrv) lines = NULL;
	g_autoptr(GHashTable) map = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
	    (GDestroyNotify)g_ptr_array_unref);

	if (!g_file_get_contents(path, &text, NULL, err))
		return NULL;
	lines = g_strsplit(text, "\n", -1);
	for (guint i = 0; lines[i]; i++) {
		char *l = g_strstrip(lines[i]);
		g_auto(GStrv) f = NULL;
		g_autofree char *addr = NULL;
		GPtrArray *a;
		char *login;
		guint n = 0;

		if (*l == '\0' || *l == '#')
			continue;
		f = g_strsplit_set(l, " \t", -1);
		for (guint k = 0; f[k]; k++)
			if (*f[k] != '\0')
				f[n++] = f[k];
			else
				g_free(f[k]);
		f[n] = NULL;
		if (n != 2 || (addr = kms_address_normalize(f[1], -1)) == NULL) {
			g_set_error(err, G_FILE_ERROR, G_FILE_ERROR_INVAL,
			    "%s:%u: want \"login address\"", path, i + 1);
			return NULL;
		}
		login = g_ascii_strdown(f[0], -1);
		if ((a = g_hash_table_lookup(map, login)) == NULL) {
			a = g_ptr_array_new_with_free_func(g_free);
			g_hash_table_insert(map, g_strdup(login), a);
		}
		g_free(login);
		g_ptr_array_add(a, g_steal_pointer(&addr));
	}
	return g_steal_pointer(&map);
}

static void
state_enrollment(KmsMilterState *s, KmsConfig *cfg)
{
	const char *map = kms_config_get(cfg, "enrollment", "auth_map");
	const char *ea = kms_config_get(cfg, "milter", "enroll_address");

	s->enroll_address = ea ? kms_address_normalize(ea, -1) : NULL;
	s->max_reply_size = (gsize)kms_config_get_int(cfg, "enrollment", "max_reply_size");
	s->require_auth = kms_config_get_bool(cfg, "enrollment", "require_auth");
	s->max_attempts = kms_config_get_int(cfg, "enrollment", "max_attempts");
	s->request_ttl = kms_config_get_int(cfg, "kms", "request_ttl");
	if (map != NULL) {
		g_autoptr(GError) e = NULL;

		s->auth_map = auth_map_load(map, &e);
		if (s->auth_map == NULL) {
			s->auth_map_error = g_strdup(e->message);
			kms_log(LOG_ERR, NULL, "[enrollment] auth_map: %s: replies that need it are deferred",
			    e->message);
		}
	}
}

gboolean
kms_state_is_enroll_rcpt(const KmsMilterState *s, const char *rcpt)
{
	g_autofree char *a = NULL;

	if (s == NULL || s->enroll_address == NULL || rcpt == NULL)
		return FALSE;
	a = kms_address_normalize(rcpt, -1);
	return a != NULL && g_ascii_strcasecmp(a, s->enroll_address) == 0;
}

char **
kms_state_auth_identities(const KmsMilterState *s, const char *login)
{
	GPtrArray *v = g_ptr_array_new();
	g_autofree char *self = login ? kms_address_normalize(login, -1) : NULL;

	if (self)
		g_ptr_array_add(v, g_steal_pointer(&self));
	if (login && s->auth_map) {
		g_autofree char *key = g_ascii_strdown(login, -1);
		GPtrArray *a = g_hash_table_lookup(s->auth_map, key);

		for (guint i = 0; a && i < a->len; i++)
			g_ptr_array_add(v, g_strdup(g_ptr_array_index(a, i)));
	}
	g_ptr_array_add(v, NULL);
	return (char **)g_ptr_array_free(v, FALSE);
}

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
	s->seen_refresh_us = kms_config_get_int(cfg, "milter", "seen_refresh") * G_USEC_PER_SEC;
	s->seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
	g_mutex_init(&s->seen_lock);
	g_mutex_init(&s->trust_lock);
	state_enrollment(s, cfg);
	s->submit_url = kms_config_get(cfg, "mail", "submit");
	{
		g_autoptr(GError) e = NULL;

		s->global_policy = kms_policy_resolve(NULL, cfg, NULL, NULL, &e);
		if (s->global_policy == NULL)
			kms_log(LOG_ERR, NULL, "[policy]: %s: every message is examined for encryption",
			    e->message);
	}
	return s;
}

static void
state_clear(gpointer data)
{
	KmsMilterState *s = data;

	X509_STORE_free(s->trust);
	g_hash_table_destroy(s->seen);
	g_free(s->enroll_address);
	if (s->auth_map)
		g_hash_table_destroy(s->auth_map);
	g_free(s->auth_map_error);
	kms_policy_free(s->global_policy);
	g_mutex_clear(&s->seen_lock);
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

/* Bound on remembered signatures; the table starts afresh when full. */
#define SEEN_MAX 20000

gboolean
kms_state_seen(KmsMilterState *s, const char *key)
{
	gint64 *at;
	gboolean fresh;

	if (s->seen_refresh_us == 0)
		return FALSE;
	g_mutex_lock(&s->seen_lock);
	at = g_hash_table_lookup(s->seen, key);
	fresh = at && g_get_monotonic_time() - *at < s->seen_refresh_us;
	g_mutex_unlock(&s->seen_lock);
	return fresh;
}

void
kms_state_seen_add(KmsMilterState *s, const char *key)
{
	gint64 now = g_get_monotonic_time();

	if (s->seen_refresh_us == 0)
		return;
	g_mutex_lock(&s->seen_lock);
	if (g_hash_table_size(s->seen) >= SEEN_MAX)
		g_hash_table_remove_all(s->seen);
	g_hash_table_replace(s->seen, g_strdup(key), g_memdup2(&now, sizeof(now)));
	g_mutex_unlock(&s->seen_lock);
}

X509_STORE *
kms_state_trust(KmsMilterState *s, const char *qid, guint *generation)
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
			s->trust_generation++;
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
	if (generation)
		*generation = s->trust_generation;
	g_mutex_unlock(&s->trust_lock);
	return st;
}

/* What the vault said about policy overrides: kept across reloads (the
 * vault's content does not depend on the configuration snapshot). */
static GMutex policy_lock;
static gboolean policy_rows, policy_known;
static gint64 policy_checked_at;	/* monotonic us; 0: never */

gboolean
kms_state_policy_rows(KmsMilterState *s, const char *qid)
{
	gint64 now = g_get_monotonic_time();
	gboolean rows;

	g_mutex_lock(&policy_lock);
	if (policy_checked_at == 0 || now - policy_checked_at >= s->trust_refresh_us) {
		g_autoptr(GError) e = NULL;
		PGconn *c = kms_db_pool_get(s->pool, &e);
		PGresult *r = c ? kms_db_run(c, "SELECT EXISTS (SELECT 1 FROM policy)", NULL, &e) : NULL;

		if (r != NULL) {
			policy_rows = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
			policy_known = TRUE;
			policy_checked_at = now;
			PQclear(r);
		} else {
			/* keep the last answer, as the trust store does; never
			 * known: every message is examined at its end. Ask
			 * again in 5 s, not per message */
			kms_log(LOG_WARNING, qid, "cannot read the policy overrides: %s%s", e->message,
			    policy_known ? " (keeping the last answer)" : "");
			if (!policy_known)
				policy_rows = TRUE;
			policy_checked_at = now - s->trust_refresh_us +
			    MIN(s->trust_refresh_us, 5 * G_USEC_PER_SEC);
		}
		kms_db_pool_put(s->pool, c);
	}
	rows = policy_rows;
	g_mutex_unlock(&policy_lock);
	return rows;
}
