/*
 * NAME
 *	audit - hash-chained, MACed audit log (see audit.h)
 * SECURITY
 *	The audit key lives in a KmsSecret only while entries are MACed or
 *	verified. Details are built by callers from ids, serials, addresses
 *	and counts; nothing here adds secret text.
 */
#include "autoconfig.h"
#include "audit.h"

#include <string.h>
#include <syslog.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "common/log.h"

G_DEFINE_QUARK(kms-audit-error-quark, kms_audit_error)

/* UTC with microseconds: the text the hash covers (see audit.h). */
#define AT_TEXT(t) "to_char(" t " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

static char *proc_actor;
static gboolean proc_with_role;
static gboolean proc_syslog;

void
kms_audit_set_actor(const char *actor, gboolean with_role, gboolean syslog_mirror)
{
	g_free(proc_actor);
	proc_actor = g_strdup(actor);
	proc_with_role = with_role;
	proc_syslog = syslog_mirror;
}

static void
put_u32(EVP_MD_CTX *md, guint32 v)
{
	guint8 b[4] = {v >> 24, v >> 16, v >> 8, v};

	EVP_DigestUpdate(md, b, 4);
}

static void
put_text(EVP_MD_CTX *md, const char *s)
{
	size_t n = s ? strlen(s) : 0;

	put_u32(md, (guint32)n);
	if (n)
		EVP_DigestUpdate(md, s, n);
}

void
kms_audit_hash(const guint8 prev[KMS_AUDIT_HASH_LEN], gint64 id, const char *at,
    const char *actor, const char *action, const char *detail,
    guint8 out[KMS_AUDIT_HASH_LEN])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	guint8 idb[8];
	unsigned int len = KMS_AUDIT_HASH_LEN;

	for (int i = 0; i < 8; i++)
		idb[i] = (guint8)((guint64)id >> (56 - 8 * i));
	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	EVP_DigestUpdate(md, prev, KMS_AUDIT_HASH_LEN);
	EVP_DigestUpdate(md, idb, sizeof(idb));
	put_text(md, at);
	put_text(md, actor);
	put_text(md, action);
	put_text(md, detail);
	EVP_DigestFinal_ex(md, out, &len);
	EVP_MD_CTX_free(md);
}

static gboolean
mac_of(const KmsSecret *key, const guint8 *hash, guint8 out[KMS_AUDIT_HASH_LEN])
{
	unsigned int len = KMS_AUDIT_HASH_LEN;

	return HMAC(EVP_sha256(), key->data, (int)key->len, hash, KMS_AUDIT_HASH_LEN, out,
	    &len) != NULL && len == KMS_AUDIT_HASH_LEN;
}

KmsSecret *
kms_audit_key(KmsVault *v, GError **err)
{
	return kms_vault_derive_key(v, KMS_AUDIT_KEY_LABEL, err);
}

/* Copy of OBJ with every string member made valid UTF-8 (hostile text). */
static char *
detail_text(JsonObject *obj)
{
	g_autoptr(JsonObject) copy = json_object_new();
	g_autoptr(JsonNode) root = json_node_new(JSON_NODE_OBJECT);
	g_autoptr(JsonGenerator) g = json_generator_new();
	g_autoptr(GList) members = obj ? json_object_get_members(obj) : NULL;

	for (GList *m = members; m; m = m->next) {
		JsonNode *n = json_object_get_member(obj, m->data);

		if (JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING) {
			g_autofree char *v = g_utf8_make_valid(json_node_get_string(n), -1);

			json_object_set_string_member(copy, m->data, v);
		} else
			json_object_set_member(copy, m->data, json_node_copy(n));
	}
	json_node_set_object(root, copy);
	json_generator_set_root(g, root);
	return json_generator_to_data(g, NULL);
}

static gboolean append(PGconn *c, const char *actor, gboolean with_role, const char *action,
    const char *detail_json, GError **err);

gboolean
kms_audit_append(PGconn *c, const char *action, JsonObject *detail, GError **err)
{
	g_autofree char *text = detail_text(detail);

	return append(c, NULL, proc_with_role, action, text, err);
}

gboolean
kms_audit_append_as(PGconn *c, const char *actor, const char *action, JsonObject *detail,
    GError **err)
{
	g_autofree char *text = detail_text(detail);

	return append(c, actor, FALSE, action, text, err);
}

gboolean
kms_audit_append_json(PGconn *c, const char *action, const char *detail_json, GError **err)
{
	return append(c, NULL, proc_with_role, action, detail_json, err);
}

static gboolean
append(PGconn *c, const char *actor, gboolean with_role, const char *action,
    const char *detail_json, GError **err)
{
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	g_autoptr(PGresult) r = NULL;
	g_autoptr(GBytes) prev_b = NULL;
	guint8 prev[KMS_AUDIT_HASH_LEN] = {0}, hash[KMS_AUDIT_HASH_LEN];
	const char *at, *detail, *act;
	gint64 id;

	if (actor == NULL)
		actor = proc_actor ? proc_actor : g_get_prgname() ? g_get_prgname() : "unknown";
	kms_db_param_int(&p, KMS_AUDIT_LOCK);
	if (!kms_db_exec(c, "SELECT pg_advisory_xact_lock($1)", &p, err))
		return FALSE;
	/* (a new statement: its snapshot sees what the lock holder committed) */
	kms_db_param_text(&p, detail_json ? detail_json : "{}");
	kms_db_param_text(&p, with_role ? "t" : "f");
	kms_db_param_text(&p, actor);
	r = kms_db_run(c, "SELECT coalesce((SELECT max(id) FROM audit), 0),"
	    " (SELECT hash FROM audit ORDER BY id DESC LIMIT 1), " AT_TEXT("clock_timestamp()") ","
	    " $1::jsonb::text,"
	    " CASE WHEN $2::boolean THEN $3 || ' (db role ' || current_user || ')' ELSE $3 END",
	    &p, err);
	if (r == NULL)
		return FALSE;
	id = kms_db_get_int(r, 0, 0) + 1;
	prev_b = kms_db_get_bytes(r, 0, 1);
	if (id > 1) {
		if (prev_b == NULL || g_bytes_get_size(prev_b) != KMS_AUDIT_HASH_LEN) {
			g_set_error(err, KMS_AUDIT_ERROR, KMS_AUDIT_ERROR_BROKEN,
			    "audit entry %" G_GINT64_FORMAT " has no valid hash: cannot chain",
			    id - 1);
			return FALSE;
		}
		memcpy(prev, g_bytes_get_data(prev_b, NULL), KMS_AUDIT_HASH_LEN);
	}
	at = PQgetvalue(r, 0, 2);
	detail = PQgetvalue(r, 0, 3);
	act = PQgetvalue(r, 0, 4);
	kms_audit_hash(prev, id, at, act, action, detail, hash);

	kms_db_param_int(&p, id);
	kms_db_param_text(&p, at);
	kms_db_param_text(&p, act);
	kms_db_param_text(&p, action);
	kms_db_param_text(&p, detail);
	kms_db_param_bytes(&p, prev, sizeof(prev));
	kms_db_param_bytes(&p, hash, sizeof(hash));
	if (!kms_db_exec(c, "INSERT INTO audit (id, at, actor, action, detail, prev_hash, hash)"
	    " VALUES ($1, $2::timestamptz, $3, $4, $5::jsonb, $6, $7)", &p, err))
		return FALSE;
	/* (a batch of 1,000 tokens makes a long detail: the table has it all) */
	if (proc_syslog)
		syslog(LOG_MAIL | LOG_INFO, "audit %" G_GINT64_FORMAT ": %s: %s %.900s%s", id, act,
		    action, detail, strlen(detail) > 900 ? "..." : "");
	else
		kms_info("audit %" G_GINT64_FORMAT ": %s: %s %.900s%s", id, act, action, detail,
		    strlen(detail) > 900 ? "..." : "");
	return TRUE;
}

/* One row as read for checking. */
typedef struct {
	gint64 id;
	const char *at, *actor, *action, *detail;
	GBytes *prev, *hash, *mac;
} Row;

#define ROW_COLUMNS "id, " AT_TEXT("at") "," \
	" actor, action, detail::text, prev_hash, hash, mac"

static void
row_get(const PGresult *r, int i, Row *row)
{
	row->id = kms_db_get_int(r, i, 0);
	row->at = PQgetvalue(r, i, 1);
	row->actor = PQgetvalue(r, i, 2);
	row->action = PQgetvalue(r, i, 3);
	row->detail = PQgetvalue(r, i, 4);
	row->prev = kms_db_get_bytes(r, i, 5);
	row->hash = kms_db_get_bytes(r, i, 6);
	row->mac = kms_db_get_bytes(r, i, 7);
}

static void
row_clear(Row *row)
{
	g_clear_pointer(&row->prev, g_bytes_unref);
	g_clear_pointer(&row->hash, g_bytes_unref);
	g_clear_pointer(&row->mac, g_bytes_unref);
}

static gboolean
is_hash(GBytes *b)
{
	return b != NULL && g_bytes_get_size(b) == KMS_AUDIT_HASH_LEN;
}

/* Does ROW follow an entry with id EXPECT_ID - 1 and hash PREV? NULL when
 * it does, else what is wrong (static text or g_free'd into *FREEME). */
static const char *
row_problem(const Row *row, gint64 expect_id, const guint8 *prev, char **freeme)
{
	guint8 h[KMS_AUDIT_HASH_LEN];

	if (!is_hash(row->hash) || !is_hash(row->prev))
		return "has no hash (written outside the audit chain)";
	kms_audit_hash(g_bytes_get_data(row->prev, NULL), row->id, row->at, row->actor,
	    row->action, row->detail, h);
	if (CRYPTO_memcmp(h, g_bytes_get_data(row->hash, NULL), sizeof(h)) != 0)
		return "content does not match its hash (edited)";
	if (CRYPTO_memcmp(prev, g_bytes_get_data(row->prev, NULL), KMS_AUDIT_HASH_LEN) != 0)
		return "previous-hash link broken (an entry before it was deleted or inserted)";
	if (row->id != expect_id) {
		*freeme = g_strdup_printf("entries %" G_GINT64_FORMAT "..%" G_GINT64_FORMAT
		    " are missing before it (deleted, chain recomputed)", expect_id, row->id - 1);
		return *freeme;
	}
	return NULL;
}

gboolean
kms_audit_mac_pending(PGconn *c, const KmsSecret *key, gint64 *high, guint *n, GError **err)
{
	static gint64 warned;	/* kmsd is single-threaded: log each bad entry once */
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	g_autoptr(PGresult) r = NULL;
	guint8 prev[KMS_AUDIT_HASH_LEN] = {0};
	gint64 first;
	guint done = 0;

	if (n)
		*n = 0;
	if (!kms_db_begin(c, err))
		return FALSE;
	r = kms_db_run(c, "SELECT " ROW_COLUMNS " FROM audit WHERE id >="
	    " (SELECT min(id) FROM audit WHERE mac IS NULL) - 1 ORDER BY id LIMIT 1001",
	    NULL, err);
	if (r == NULL)
		goto fail;
	if (PQntuples(r) == 0 || (PQntuples(r) == 1 && !PQgetisnull(r, 0, 7))) {
		kms_db_rollback(c);
		return TRUE;
	}
	/* kmsd MACs in id order: an entry without a MAC before one with was
	 * put in (or stripped) later */
	for (int i = 1; i < PQntuples(r); i++)
		if (!PQgetisnull(r, i, 7)) {
			gint64 bad = kms_db_get_int(r, PQgetisnull(r, 0, 7) ? 0 : 1, 0);

			if (warned != bad)
				kms_err("audit: TAMPERING: entry %" G_GINT64_FORMAT ": has no MAC"
				    " although later entries have (inserted, or its MAC removed);"
				    " nothing is MACed", bad);
			warned = bad;
			kms_db_rollback(c);
			return TRUE;
		}
	first = 0;
	for (int i = 0; i < PQntuples(r); i++) {
		Row row = {0};
		g_autofree char *freeme = NULL;
		const char *problem;
		guint8 m[KMS_AUDIT_HASH_LEN];

		row_get(r, i, &row);
		if (row.mac != NULL) {
			/* the MACed entry before the first one without: chain on
			 * from it only if its MAC is ours */
			if (!is_hash(row.hash) || g_bytes_get_size(row.mac) != sizeof(m) ||
			    !mac_of(key, g_bytes_get_data(row.hash, NULL), m) ||
			    CRYPTO_memcmp(m, g_bytes_get_data(row.mac, NULL), sizeof(m)) != 0) {
				if (warned != row.id)
					kms_err("audit: TAMPERING: entry %" G_GINT64_FORMAT ": MAC does not"
					    " verify; later entries are not MACed", row.id);
				warned = row.id;
				row_clear(&row);
				break;
			}
			memcpy(prev, g_bytes_get_data(row.hash, NULL), sizeof(prev));
			first = row.id + 1;
			row_clear(&row);
			continue;
		}
		if (first == 0)
			first = row.id == 1 ? 1 : -1;	/* -1: its predecessor is missing */
		if (first < 0) {
			problem = "previous-hash link broken (an entry before it was deleted or inserted)";
		} else if (row.id <= *high) {
			problem = "its MAC was removed (this kmsd MACed it before)";
		} else
			problem = row_problem(&row, first, prev, &freeme);
		if (problem) {
			if (warned != row.id)
				kms_err("audit: TAMPERING: entry %" G_GINT64_FORMAT ": %s; it and later"
				    " entries are not MACed", row.id, problem);
			warned = row.id;
			row_clear(&row);
			break;
		}
		if (!mac_of(key, g_bytes_get_data(row.hash, NULL), m)) {
			row_clear(&row);
			g_set_error(err, KMS_AUDIT_ERROR, KMS_AUDIT_ERROR_FAILED, "cannot compute a MAC");
			goto fail;
		}
		kms_db_param_int(&p, row.id);
		kms_db_param_bytes(&p, m, sizeof(m));
		if (!kms_db_exec(c, "UPDATE audit SET mac = $2 WHERE id = $1 AND mac IS NULL", &p,
		    err)) {
			row_clear(&row);
			goto fail;
		}
		memcpy(prev, g_bytes_get_data(row.hash, NULL), sizeof(prev));
		first = row.id + 1;
		if (row.id > *high)
			*high = row.id;
		done++;
		row_clear(&row);
	}
	if (!kms_db_commit(c, err))
		goto fail;
	if (n)
		*n = done;
	return TRUE;
fail:
	kms_db_rollback(c);
	return FALSE;
}

void
kms_audit_report_clear(KmsAuditReport *r)
{
	g_clear_pointer(&r->problem, g_free);
	memset(r, 0, sizeof(*r));
}

gboolean
kms_audit_verify(PGconn *c, const KmsSecret *key, KmsAuditReport *rep, GError **err)
{
	guint8 prev[KMS_AUDIT_HASH_LEN] = {0};
	gint64 last = 0, first_unmaced = 0;
	gboolean more = TRUE;

	memset(rep, 0, sizeof(*rep));
	/* one snapshot for the whole walk */
	if (!kms_db_exec(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", NULL, err))
		return FALSE;
	while (more && rep->bad_id == 0) {
		KmsDbParams p = KMS_DB_PARAMS_INIT;
		g_autoptr(PGresult) r = NULL;

		kms_db_param_int(&p, last);
		r = kms_db_run(c, "SELECT " ROW_COLUMNS " FROM audit WHERE id > $1 ORDER BY id"
		    " LIMIT 5000", &p, err);
		if (r == NULL) {
			kms_db_rollback(c);
			return FALSE;
		}
		more = PQntuples(r) == 5000;
		for (int i = 0; i < PQntuples(r) && rep->bad_id == 0; i++) {
			Row row = {0};
			g_autofree char *freeme = NULL;
			const char *problem;
			guint8 m[KMS_AUDIT_HASH_LEN];

			row_get(r, i, &row);
			problem = row_problem(&row, last + 1, prev, &freeme);
			if (problem == NULL && row.mac == NULL && first_unmaced == 0)
				first_unmaced = row.id;
			else if (problem == NULL && row.mac != NULL && first_unmaced != 0) {
				/* kmsd MACs in id order: a hole is an entry put in later */
				row.id = first_unmaced;
				problem = "has no MAC although later entries have (inserted, or its MAC"
				    " removed)";
			} else if (problem == NULL && row.mac != NULL && key != NULL) {
				if (g_bytes_get_size(row.mac) != sizeof(m) ||
				    !mac_of(key, g_bytes_get_data(row.hash, NULL), m) ||
				    CRYPTO_memcmp(m, g_bytes_get_data(row.mac, NULL), sizeof(m)) != 0)
					problem = "MAC does not verify (recomputed by someone without the"
					    " vault key)";
				else
					rep->maced++;
			}
			if (problem) {
				rep->bad_id = row.id;
				rep->problem = g_strdup(problem);
			} else {
				rep->entries++;
				if (row.mac == NULL)
					rep->unmaced++;
				memcpy(prev, g_bytes_get_data(row.hash, NULL), sizeof(prev));
				last = row.id;
			}
			row_clear(&row);
		}
	}
	kms_db_rollback(c);
	return TRUE;
}
