/*
 * NAME
 *	enroll - tokens and token mails for enrollment (see enroll.h)
 */
#include "autoconfig.h"
#include "enroll.h"

#include <string.h>

#include "common/address.h"
#include "common/token.h"
#include "keyvault/db.h"

/* Printed length of a PIN: four groups of five, 100 bits. */
#define PIN_PRINTED_LEN (4 * 5 + 3)

KmsSecret *
kms_pin_new(GError **err)
{
	g_autoptr(KmsSecret) t = kms_token_new(err);

	/* the first four groups of a fresh token: 20 characters of 5 random
	 * bits each; shorter than a token so that nobody mixes them up */
	return t ? kms_secret_dup(t->data, PIN_PRINTED_LEN) : NULL;
}

/* Make a PIN for token TID, sealed on its row; *PIN gets it. */
static gboolean
add_pin(PGconn *c, const KmsEnrollParams *p, gint64 tid, KmsSecret **pin, GError **err)
{
	KmsDbParams q = KMS_DB_PARAMS_INIT;
	g_autoptr(KmsSecret) s = kms_pin_new(err);
	g_autoptr(GBytes) sealed = NULL;

	if (s == NULL)
		return FALSE;
	sealed = kms_queue_seal(p->queue_pub, "p12-pin", tid, s->data, s->len, err);
	if (sealed == NULL)
		return FALSE;
	kms_db_param_int(&q, tid);
	kms_db_param_bytes(&q, g_bytes_get_data(sealed, NULL), g_bytes_get_size(sealed));
	if (!kms_db_exec(c, "UPDATE tokens SET sealed_pin = $2 WHERE id = $1", &q, err))
		return FALSE;
	*pin = g_steal_pointer(&s);
	return TRUE;
}

gboolean
kms_enroll_user(PGconn *c, const KmsEnrollParams *p, const char *address, KmsSecret **token,
    char **normalized_address, GError **err)
{
	KmsEnrollParams np = *p;

	np.with_pin = FALSE;
	return kms_enroll_user_pin(c, &np, address, token, NULL, normalized_address, err);
}

gboolean
kms_enroll_can_recover(PGconn *c, const char *address, GError **err)
{
	KmsDbParams q = KMS_DB_PARAMS_INIT;
	g_autofree char *addr = kms_address_normalize(address, -1);
	g_autoptr(PGresult) r = NULL;

	if (addr == NULL) {
		g_set_error(err, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
		    "'%s' is not a mail address", address);
		return FALSE;
	}
	kms_db_param_text(&q, addr);
	r = kms_db_run(c, "SELECT count(e.id) FROM users u"
	    " LEFT JOIN escrowed_keys e ON e.user_id = u.id AND e.certificate_id IS NOT NULL"
	    " WHERE lower(u.address) = lower($1) GROUP BY u.id", &q, err);
	if (r == NULL)
		return FALSE;
	if (PQntuples(r) == 0) {
		g_set_error(err, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
		    "no such user: nothing to recover");
		return FALSE;
	}
	if (kms_db_get_int(r, 0, 0) == 0) {
		g_set_error(err, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
		    "no escrowed key to recover");
		return FALSE;
	}
	return TRUE;
}

gboolean
kms_enroll_user_pin(PGconn *c, const KmsEnrollParams *p, const char *address, KmsSecret **token,
    KmsSecret **pin, char **normalized_address, GError **err)
{
	KmsDbParams q = KMS_DB_PARAMS_INIT;
	g_autofree char *addr = kms_address_normalize(address, -1);
	g_autoptr(KmsSecret) tok = NULL, norm = NULL, pinned = NULL;
	g_autoptr(PGresult) u = NULL, t = NULL, r = NULL;
	g_autoptr(GBytes) sealed = NULL;
	g_autofree char *payload = NULL, *b64 = NULL;
	guint8 hash[KMS_TOKEN_HASH_LEN];
	gint64 uid, tid, rid;

	*token = NULL;
	if (pin)
		*pin = NULL;
	g_return_val_if_fail(pin != NULL || !p->with_pin, FALSE);
	if (addr == NULL) {
		g_set_error(err, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
		    "'%s' is not a mail address", address);
		return FALSE;
	}
	if ((tok = kms_token_new(err)) == NULL)
		return FALSE;
	norm = kms_token_normalize((const char *)tok->data, tok->len);
	kms_token_hash(norm, hash);

	kms_db_param_text(&q, addr);
	u = kms_db_run(c, "INSERT INTO users (address) VALUES ($1)"
	    " ON CONFLICT (lower(address)) DO UPDATE SET status = 'active'"
	    " RETURNING id, address", &q, err);
	if (u == NULL)
		return FALSE;
	uid = kms_db_get_int(u, 0, 0);

	kms_db_param_int(&q, uid);
	kms_db_param_text(&q, p->purpose);
	if (!kms_db_exec(c, "UPDATE tokens SET status = 'cancelled' WHERE user_id = $1"
	    " AND purpose = $2 AND status = 'pending'", &q, err))
		return FALSE;
	kms_db_param_int(&q, uid);
	kms_db_param_text(&q, p->purpose);
	kms_db_param_bytes(&q, hash, sizeof(hash));
	kms_db_param_int(&q, p->token_ttl);
	t = kms_db_run(c, "INSERT INTO tokens (user_id, purpose, token_hash, expires_at)"
	    " VALUES ($1, $2, $3, now() + $4 * interval '1 second')"
	    " RETURNING id, to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI \"UTC\"')",
	    &q, err);
	if (t == NULL)
		return FALSE;
	tid = kms_db_get_int(t, 0, 0);
	if (p->with_pin && !add_pin(c, p, tid, &pinned, err))
		return FALSE;

	r = kms_db_run(c, "SELECT nextval(pg_get_serial_sequence('requests', 'id'))", NULL, err);
	if (r == NULL)
		return FALSE;
	rid = kms_db_get_int(r, 0, 0);
	if (p->deliver_mail) {
		sealed = kms_queue_seal(p->queue_pub, "token-mail", rid, tok->data, tok->len, err);
		if (sealed == NULL)
			return FALSE;
		b64 = g_base64_encode(g_bytes_get_data(sealed, NULL), g_bytes_get_size(sealed));
	}
	payload = g_strdup_printf("{\"template\": \"%s\", \"token_id\": %" G_GINT64_FORMAT
	    ", \"expires\": \"%s\", \"sealed_token\": %s%s%s}",
	    p->deliver_mail ? p->purpose : (strcmp(p->purpose, "enroll") == 0 ? "enroll-oob" : "recover-oob"),
	    tid, PQgetvalue(t, 0, 1), b64 ? "\"" : "", b64 ? b64 : "null", b64 ? "\"" : "");
	kms_db_param_int(&q, rid);
	kms_db_param_int(&q, uid);
	kms_db_param_text(&q, payload);
	kms_db_param_int(&q, p->request_ttl);
	if (!kms_db_exec(c, "INSERT INTO requests (id, kind, user_id, payload, expires_at)"
	    " VALUES ($1, 'mail', $2, $3::jsonb, now() + $4 * interval '1 second')", &q, err))
		return FALSE;
	if (normalized_address)
		*normalized_address = g_strdup(PQgetvalue(u, 0, 1));
	*token = g_steal_pointer(&tok);
	if (pin)
		*pin = g_steal_pointer(&pinned);
	return TRUE;
}

/* --- many addresses at once (kms_enroll_batch) ------------------------------
 * The same rows as kms_enroll_user(), five statements for the whole batch
 * instead of five per address: the values travel as array parameters (text
 * array literals: ids, hashes, normalised addresses and payloads that this
 * code made, never spliced into SQL). Keep the payload in step with
 * kms_enroll_user(). */

void
kms_enroll_item_clear(KmsEnrollItem *it)
{
	g_clear_pointer(&it->stored, g_free);
	g_clear_pointer(&it->token, kms_secret_free);
	g_clear_error(&it->error);
}

static void
arr_next(GString *a)
{
	g_string_append_c(a, a->len == 0 ? '{' : ',');
}

static const char *
arr_end(GString *a)
{
	if (a->len == 0)
		g_string_append_c(a, '{');
	g_string_append_c(a, '}');
	return a->str;
}

static void
arr_int(GString *a, gint64 v)
{
	arr_next(a);
	g_string_append_printf(a, "%" G_GINT64_FORMAT, v);
}

static void
arr_text(GString *a, const char *s)
{
	arr_next(a);
	g_string_append_c(a, '"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			g_string_append_c(a, '\\');
		g_string_append_c(a, *s);
	}
	g_string_append_c(a, '"');
}

static void
arr_bytes(GString *a, const guint8 *b, gsize n)
{
	static const char hex[] = "0123456789abcdef";

	arr_next(a);
	g_string_append(a, "\"\\\\x");
	for (gsize i = 0; i < n; i++) {
		g_string_append_c(a, hex[b[i] >> 4]);
		g_string_append_c(a, hex[b[i] & 0xf]);
	}
	g_string_append_c(a, '"');
}

/* Row R's column 0 is a 1-based position in the batch: the 0-based one, or
 * -1 when it is out of range. */
static int
batch_pos(const PGresult *r, int row, guint m)
{
	gint64 k = kms_db_get_int(r, row, 0) - 1;

	return k >= 0 && k < (gint64)m ? (int)k : -1;
}

gboolean
kms_enroll_batch(PGconn *c, const KmsEnrollParams *p, KmsEnrollItem *items, guint n,
    GError **err)
{
	KmsDbParams q = KMS_DB_PARAMS_INIT;
	g_autoptr(GHashTable) seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	g_autoptr(GPtrArray) addr = g_ptr_array_new_full(n, g_free);
	g_autoptr(GPtrArray) expires = g_ptr_array_new_full(n, g_free);
	g_autoptr(GString) uids = g_string_new(NULL), a = g_string_new(NULL), b = g_string_new(NULL);
	g_autoptr(PGresult) r = NULL;
	g_autofree guint8 *hash = g_new(guint8, (gsize)n * KMS_TOKEN_HASH_LEN);
	g_autofree gint64 *uid = g_new0(gint64, n), *tid = g_new0(gint64, n), *rid = g_new0(gint64, n);
	g_autofree guint *todo = g_new(guint, n);	/* batch position -> item */
	const char *template = p->deliver_mail ? p->purpose
	    : strcmp(p->purpose, "enroll") == 0 ? "enroll-oob" : "recover-oob";
	guint m = 0;

	if (p->with_pin) {
		g_set_error(err, KMS_DB_ERROR, KMS_DB_ERROR_QUERY, "PINs are made address by address");
		return FALSE;
	}
	for (guint i = 0; i < n; i++) {
		char *na = kms_address_normalize(items[i].address, -1);

		g_ptr_array_add(addr, na);
		if (na == NULL) {
			g_set_error(&items[i].error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
			    "'%s' is not a mail address", items[i].address);
			continue;
		}
		/* one user twice would be one upsert row twice: not batched */
		if (!g_hash_table_add(seen, g_ascii_strdown(na, -1))) {
			g_set_error(err, KMS_DB_ERROR, KMS_DB_ERROR_QUERY,
			    "two addresses of the batch name one user");
			goto fail;
		}
		todo[m++] = i;
	}
	if (m == 0)
		return TRUE;
	for (guint k = 0; k < m; k++) {
		KmsEnrollItem *it = &items[todo[k]];
		g_autoptr(KmsSecret) norm = NULL;

		if ((it->token = kms_token_new(err)) == NULL)
			goto fail;
		norm = kms_token_normalize((const char *)it->token->data, it->token->len);
		kms_token_hash(norm, hash + (gsize)k * KMS_TOKEN_HASH_LEN);
	}

	/* users, created or reactivated; positions come back with the rows */
	for (guint k = 0; k < m; k++)
		arr_text(a, g_ptr_array_index(addr, todo[k]));
	kms_db_param_text(&q, arr_end(a));
	r = kms_db_run(c, "WITH x AS (SELECT a, i FROM unnest($1::text[]) WITH ORDINALITY AS x (a, i)),"
	    " u AS (INSERT INTO users (address) SELECT a FROM x ORDER BY i"
	    " ON CONFLICT (lower(address)) DO UPDATE SET status = 'active' RETURNING id, address)"
	    " SELECT x.i, u.id, u.address FROM u JOIN x ON lower(x.a) = lower(u.address)", &q, err);
	if (r == NULL)
		goto fail;
	if (PQntuples(r) != (int)m)
		goto mismatch;
	for (int row = 0; row < (int)m; row++) {
		int k = batch_pos(r, row, m);

		if (k < 0 || uid[k] != 0)
			goto mismatch;
		uid[k] = kms_db_get_int(r, row, 1);
		items[todo[k]].stored = g_strdup(PQgetvalue(r, row, 2));
	}
	for (guint k = 0; k < m; k++)
		arr_int(uids, uid[k]);
	arr_end(uids);

	/* one live token per user: the pending ones go first */
	kms_db_param_text(&q, uids->str);
	kms_db_param_text(&q, p->purpose);
	if (!kms_db_exec(c, "UPDATE tokens SET status = 'cancelled' WHERE user_id = ANY ($1::bigint[])"
	    " AND purpose = $2 AND status = 'pending'", &q, err))
		goto fail;

	g_string_truncate(a, 0);
	for (guint k = 0; k < m; k++)
		arr_bytes(a, hash + (gsize)k * KMS_TOKEN_HASH_LEN, KMS_TOKEN_HASH_LEN);
	kms_db_param_text(&q, uids->str);
	kms_db_param_text(&q, arr_end(a));
	kms_db_param_text(&q, p->purpose);
	kms_db_param_int(&q, p->token_ttl);
	g_clear_pointer(&r, PQclear);
	r = kms_db_run(c, "WITH x AS (SELECT u, h, i FROM unnest($1::bigint[], $2::bytea[])"
	    " WITH ORDINALITY AS x (u, h, i)),"
	    " t AS (INSERT INTO tokens (user_id, purpose, token_hash, expires_at)"
	    " SELECT u, $3, h, now() + $4 * interval '1 second' FROM x ORDER BY i"
	    " RETURNING id, token_hash, expires_at)"
	    " SELECT x.i, t.id, to_char(t.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI \"UTC\"')"
	    " FROM t JOIN x ON x.h = t.token_hash", &q, err);
	if (r == NULL)
		goto fail;
	if (PQntuples(r) != (int)m)
		goto mismatch;
	g_ptr_array_set_size(expires, m);
	for (int row = 0; row < (int)m; row++) {
		int k = batch_pos(r, row, m);

		if (k < 0 || tid[k] != 0)
			goto mismatch;
		tid[k] = kms_db_get_int(r, row, 1);
		g_ptr_array_index(expires, k) = g_strdup(PQgetvalue(r, row, 2));
	}

	/* the request ids first: each sealed token is bound to its request */
	kms_db_param_int(&q, m);
	g_clear_pointer(&r, PQclear);
	r = kms_db_run(c, "SELECT nextval(pg_get_serial_sequence('requests', 'id'))"
	    " FROM generate_series(1, $1::integer)", &q, err);
	if (r == NULL)
		goto fail;
	if (PQntuples(r) != (int)m)
		goto mismatch;
	g_string_truncate(a, 0);
	for (guint k = 0; k < m; k++) {
		KmsEnrollItem *it = &items[todo[k]];
		g_autoptr(GBytes) sealed = NULL;
		g_autofree char *b64 = NULL, *payload = NULL;

		rid[k] = kms_db_get_int(r, (int)k, 0);
		if (p->deliver_mail) {
			sealed = kms_queue_seal(p->queue_pub, "token-mail", rid[k], it->token->data,
			    it->token->len, err);
			if (sealed == NULL)
				goto fail;
			b64 = g_base64_encode(g_bytes_get_data(sealed, NULL), g_bytes_get_size(sealed));
		}
		payload = g_strdup_printf("{\"template\": \"%s\", \"token_id\": %" G_GINT64_FORMAT
		    ", \"expires\": \"%s\", \"sealed_token\": %s%s%s}", template, tid[k],
		    (const char *)g_ptr_array_index(expires, k), b64 ? "\"" : "", b64 ? b64 : "null",
		    b64 ? "\"" : "");
		arr_int(a, rid[k]);
		arr_text(b, payload);
	}
	kms_db_param_text(&q, arr_end(a));
	kms_db_param_text(&q, uids->str);
	kms_db_param_text(&q, arr_end(b));
	kms_db_param_int(&q, p->request_ttl);
	if (!kms_db_exec(c, "INSERT INTO requests (id, kind, user_id, payload, expires_at)"
	    " SELECT r, 'mail', u, d::jsonb, now() + $4 * interval '1 second'"
	    " FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS x (r, u, d)", &q, err))
		goto fail;
	return TRUE;

mismatch:
	g_set_error(err, KMS_DB_ERROR, KMS_DB_ERROR_QUERY,
	    "the vault's answer does not match the batch");
fail:
	for (guint i = 0; i < n; i++)
		kms_enroll_item_clear(&items[i]);
	return FALSE;
}
