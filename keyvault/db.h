/*
 * NAME
 *	db - thin helpers over libpq for the vault
 * DESCRIPTION
 *	Connections, parameterised statements only (PQexecParams), results
 *	mapped to GError. Errors are told apart three ways, as lookups must
 *	be: success, a refusal (KMS_DB_ERROR_QUERY) and "try again"
 *	(KMS_DB_ERROR_RETRY: SQLSTATE class 08 connection loss, 40001
 *	serialization failure, 40P01 deadlock, 57P01 admin shutdown).
 * SECURITY
 *	SQL text is always constant; values travel as parameters. Error
 *	messages carry libpq's text, which never includes a password.
 */
#ifndef KMS_DB_H
#define KMS_DB_H

#include <glib.h>
#include <libpq-fe.h>

#define KMS_DB_ERROR (kms_db_error_quark())
GQuark kms_db_error_quark(void);

typedef enum {
	KMS_DB_ERROR_CONNECT,	/* cannot reach or log in to the server */
	KMS_DB_ERROR_QUERY,	/* statement refused (constraint, privilege...) */
	KMS_DB_ERROR_RETRY,	/* transient: connection lost, serialization */
} KmsDbError;

#define KMS_DB_MAX_PARAMS 16

/* Parameters for one statement; fill with kms_db_param_*, then kms_db_run
 * (which releases what the params own). */
typedef struct {
	int n;
	const char *values[KMS_DB_MAX_PARAMS];
	int lengths[KMS_DB_MAX_PARAMS];
	int formats[KMS_DB_MAX_PARAMS];
	char *owned[KMS_DB_MAX_PARAMS];
} KmsDbParams;

#define KMS_DB_PARAMS_INIT { 0 }

void kms_db_param_text(KmsDbParams *p, const char *text);	/* NULL: SQL NULL; borrowed */
void kms_db_param_int(KmsDbParams *p, gint64 v);
void kms_db_param_bytes(KmsDbParams *p, const void *data, gsize len);	/* borrowed */
/* A one-dimensional array of the N ITEMS (an item may be NULL: SQL
 * NULL) as a text literal, each element quoted; cast it in the SQL
 * ($1::text[], $2::boolean[]). The literal is owned by P. */
void kms_db_param_array(KmsDbParams *p, const char *const *items, gsize n);
void kms_db_params_clear(KmsDbParams *p);

/* Connect with DSN; application_name is set to APP. Caller PQfinish()es. */
PGconn *kms_db_connect(const char *dsn, const char *app, GError **err);

/* Run SQL with P (may be NULL). Returns the result of a successful
 * statement (caller PQclear()s), or NULL with *err. */
PGresult *kms_db_run(PGconn *c, const char *sql, KmsDbParams *p, GError **err);
/* Same, for statements whose result is not needed. */
gboolean kms_db_exec(PGconn *c, const char *sql, KmsDbParams *p, GError **err);
/* kms_db_run() of a SELECT that runs on every message: prepared as NAME on
 * first use on C (outside a transaction), then run with PQexecPrepared, so
 * the server parses and plans it once per connection. Which connections
 * (and server processes: a reconnect prepares again) hold which
 * statement is remembered under a mutex, so pooled connections may be
 * used from any thread. Any failure of the prepared path falls back to
 * kms_db_run(), which reports errors. NAME is constant and unique per SQL. */
PGresult *kms_db_run_prepared(PGconn *c, const char *name, const char *sql, KmsDbParams *p,
    GError **err);

/* Run a constant multi-statement script (schema files) with PQexec.
 * Never pass text that contains a value from outside the program. */
gboolean kms_db_exec_script(PGconn *c, const char *script, GError **err);

gboolean kms_db_begin(PGconn *c, GError **err);
gboolean kms_db_commit(PGconn *c, GError **err);
void kms_db_rollback(PGconn *c);

/* Decode a bytea value in text result format; caller g_bytes_unref()s. */
GBytes *kms_db_get_bytes(const PGresult *r, int row, int col);
gint64 kms_db_get_int(const PGresult *r, int row, int col);
/* Borrowed from R; NULL when the value is SQL NULL. */
const char *kms_db_get_text(const PGresult *r, int row, int col);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(PGresult, PQclear)

#endif
