/*
 * NAME
 *	db - libpq helpers (see db.h)
 */
#include "autoconfig.h"
#include "db.h"

#include <string.h>

G_DEFINE_QUARK(kms-db-error-quark, kms_db_error)

void
kms_db_param_text(KmsDbParams *p, const char *text)
{
	g_assert(p->n < KMS_DB_MAX_PARAMS);
	p->values[p->n] = text;
	p->lengths[p->n] = 0;
	p->formats[p->n] = 0;
	p->n++;
}

void
kms_db_param_int(KmsDbParams *p, gint64 v)
{
	char *s = g_strdup_printf("%" G_GINT64_FORMAT, v);

	g_assert(p->n < KMS_DB_MAX_PARAMS);
	p->owned[p->n] = s;
	kms_db_param_text(p, s);
}

void
kms_db_param_bytes(KmsDbParams *p, const void *data, gsize len)
{
	g_assert(p->n < KMS_DB_MAX_PARAMS && len <= G_MAXINT);
	p->values[p->n] = data;
	p->lengths[p->n] = (int)len;
	p->formats[p->n] = 1;
	p->n++;
}

/*
 * Array literal syntax: every element in double quotes, with a double
 * quote or a backslash escaped by a backslash, so that braces, commas,
 * spaces and the word NULL in a hostile address stay data; only the
 * unquoted NULL written for a NULL item is SQL NULL.
 */
void
kms_db_param_array(KmsDbParams *p, const char *const *items, gsize n)
{
	GString *s = g_string_new("{");

	g_assert(p->n < KMS_DB_MAX_PARAMS);
	for (gsize i = 0; i < n; i++) {
		if (i > 0)
			g_string_append_c(s, ',');
		if (items[i] == NULL) {
			g_string_append(s, "NULL");
			continue;
		}
		g_string_append_c(s, '"');
		for (const char *c = items[i]; *c; c++) {
			if (*c == '"' || *c == '\\')
				g_string_append_c(s, '\\');
			g_string_append_c(s, *c);
		}
		g_string_append_c(s, '"');
	}
	g_string_append_c(s, '}');
	p->owned[p->n] = g_string_free(s, FALSE);
	kms_db_param_text(p, p->owned[p->n]);
}

void
kms_db_params_clear(KmsDbParams *p)
{
	for (int i = 0; i < p->n; i++)
		g_clear_pointer(&p->owned[i], g_free);
	p->n = 0;
}

/* libpq messages end in newlines and may span lines; make them one line. */
static char *
one_line(const char *msg)
{
	g_auto(GStrv) parts = g_strsplit(msg ? msg : "unknown error", "\n", -1);
	GString *s = g_string_new(NULL);

	for (int i = 0; parts[i]; i++) {
		char *t = g_strstrip(parts[i]);

		if (*t == '\0')
			continue;
		if (s->len)
			g_string_append(s, "; ");
		g_string_append(s, t);
	}
	return g_string_free(s, FALSE);
}

PGconn *
kms_db_connect(const char *dsn, const char *app, GError **err)
{
	const char *keys[] = {"dbname", "application_name", "connect_timeout", NULL};
	const char *vals[] = {dsn, app, "10", NULL};
	PQconninfoOption *opts = PQconninfoParse(dsn, NULL);
	PGconn *c;

	/* a connect_timeout in the DSN wins over our 10 s default */
	for (PQconninfoOption *o = opts; o && o->keyword; o++)
		if (strcmp(o->keyword, "connect_timeout") == 0 && o->val && *o->val)
			keys[2] = NULL;
	PQconninfoFree(opts);
	c = PQconnectdbParams(keys, vals, 1);

	if (c == NULL || PQstatus(c) != CONNECTION_OK) {
		g_autofree char *m = one_line(c ? PQerrorMessage(c) : "out of memory");

		g_set_error(err, KMS_DB_ERROR, KMS_DB_ERROR_CONNECT,
		    "cannot connect to the vault database: %s", m);
		PQfinish(c);
		return NULL;
	}
	return c;
}

static int
classify(const PGresult *r, PGconn *c)
{
	const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;

	if (PQstatus(c) != CONNECTION_OK)
		return KMS_DB_ERROR_RETRY;
	if (state == NULL)
		return KMS_DB_ERROR_QUERY;
	if (strncmp(state, "08", 2) == 0 || strcmp(state, "40001") == 0 ||
	    strcmp(state, "40P01") == 0 || strcmp(state, "57P01") == 0)
		return KMS_DB_ERROR_RETRY;
	return KMS_DB_ERROR_QUERY;
}

/* Set *err from a failed result R (may be NULL). */
static void
set_result_error(PGconn *c, const PGresult *r, GError **err)
{
	g_autofree char *m = one_line(r ? PQresultErrorMessage(r) : PQerrorMessage(c));

	g_set_error(err, KMS_DB_ERROR, classify(r, c), "vault database: %s", m);
}

gboolean
kms_db_exec_script(PGconn *c, const char *script, GError **err)
{
	PGresult *r = PQexec(c, script);
	ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
	gboolean ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;

	if (!ok)
		set_result_error(c, r, err);
	PQclear(r);
	return ok;
}

PGresult *
kms_db_run(PGconn *c, const char *sql, KmsDbParams *p, GError **err)
{
	PGresult *r;
	ExecStatusType st;

	r = PQexecParams(c, sql, p ? p->n : 0, NULL, p ? p->values : NULL,
	    p ? p->lengths : NULL, p ? p->formats : NULL, 0);
	if (p)
		kms_db_params_clear(p);
	st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
		return r;
	set_result_error(c, r, err);
	PQclear(r);
	return NULL;
}

static GMutex prepared_lock;
static GHashTable *prepared;	/* "PGconn pointer/name" -> backend pid */

static gboolean
is_prepared(PGconn *c, const char *name)
{
	g_autofree char *key = g_strdup_printf("%p/%s", (void *)c, name);
	gboolean yes;

	g_mutex_lock(&prepared_lock);
	yes = prepared && GPOINTER_TO_INT(g_hash_table_lookup(prepared, key)) == PQbackendPID(c);
	g_mutex_unlock(&prepared_lock);
	return yes;
}

static void
set_prepared(PGconn *c, const char *name, gboolean yes)
{
	char *key = g_strdup_printf("%p/%s", (void *)c, name);

	g_mutex_lock(&prepared_lock);
	if (prepared == NULL)
		prepared = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	if (yes)
		g_hash_table_insert(prepared, key, GINT_TO_POINTER(PQbackendPID(c)));
	else {
		g_hash_table_remove(prepared, key);
		g_free(key);
	}
	g_mutex_unlock(&prepared_lock);
}

PGresult *
kms_db_run_prepared(PGconn *c, const char *name, const char *sql, KmsDbParams *p, GError **err)
{
	PGresult *r;

	if (!is_prepared(c, name) && PQtransactionStatus(c) == PQTRANS_IDLE) {
		r = PQprepare(c, name, sql, 0, NULL);
		if (r && PQresultStatus(r) == PGRES_COMMAND_OK)
			set_prepared(c, name, TRUE);
		PQclear(r);
	}
	if (is_prepared(c, name)) {
		r = PQexecPrepared(c, name, p ? p->n : 0, p ? p->values : NULL, p ? p->lengths : NULL,
		    p ? p->formats : NULL, 0);
		if (r && PQresultStatus(r) == PGRES_TUPLES_OK) {
			if (p)
				kms_db_params_clear(p);
			return r;
		}
		/* gone (DEALLOCATE, another server process): prepare again next time */
		PQclear(r);
		set_prepared(c, name, FALSE);
	}
	return kms_db_run(c, sql, p, err);
}

gboolean
kms_db_exec(PGconn *c, const char *sql, KmsDbParams *p, GError **err)
{
	PGresult *r = kms_db_run(c, sql, p, err);

	PQclear(r);
	return r != NULL;
}

gboolean
kms_db_begin(PGconn *c, GError **err)
{
	return kms_db_exec(c, "BEGIN", NULL, err);
}

gboolean
kms_db_commit(PGconn *c, GError **err)
{
	return kms_db_exec(c, "COMMIT", NULL, err);
}

void
kms_db_rollback(PGconn *c)
{
	PQclear(PQexec(c, "ROLLBACK"));
}

GBytes *
kms_db_get_bytes(const PGresult *r, int row, int col)
{
	size_t len;
	unsigned char *u;
	GBytes *b;

	if (PQgetisnull(r, row, col))
		return NULL;
	u = PQunescapeBytea((const unsigned char *)PQgetvalue(r, row, col), &len);
	if (u == NULL)
		return NULL;
	b = g_bytes_new(u, len);
	PQfreemem(u);
	return b;
}

gint64
kms_db_get_int(const PGresult *r, int row, int col)
{
	return g_ascii_strtoll(PQgetvalue(r, row, col), NULL, 10);
}

const char *
kms_db_get_text(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}
