/*
 * NAME
 *	reply - token consumption for enrollment and recovery replies (see reply.h)
 */
#include "autoconfig.h"
#include "reply.h"

#include <string.h>

#include <json-glib/json-glib.h>
#include <openssl/crypto.h>

#include "common/secret.h"
#include "common/token.h"
#include "keyvault/audit.h"
#include "keyvault/db.h"
#include "keyvault/queuekey.h"

/* What one matched token row says, in the order of preference when a
 * reply holds several known tokens: a usable one wins. */
typedef struct {
	KmsReplyStatus status;
	gint64 id, user_id;
	char *purpose, *address;
} Match;

static void
match_clear(Match *m)
{
	g_clear_pointer(&m->purpose, g_free);
	g_clear_pointer(&m->address, g_free);
}

const char *
kms_reply_status_name(KmsReplyStatus s)
{
	switch (s) {
	case KMS_REPLY_OK:		return "token accepted";
	case KMS_REPLY_WRONG_SENDER:	return "sender is not the enrolled address";
	case KMS_REPLY_LOCKED:		return "token locked";
	case KMS_REPLY_EXPIRED:		return "token expired";
	case KMS_REPLY_USED:		return "token already used or cancelled";
	case KMS_REPLY_BAD_TOKEN:	return "unknown token";
	case KMS_REPLY_BAD_CSR:		return "certificate request refused";
	case KMS_REPLY_RETRY:		return "vault unreachable";
	case KMS_REPLY_ERROR:
	default:			return "error";
	}
}

void
kms_reply_result_clear(KmsReplyResult *res)
{
	g_clear_pointer(&res->address, g_free);
	g_clear_pointer(&res->purpose, g_free);
	res->request_id = 0;
	res->with_csr = FALSE;
}

static gboolean
sender_may(const KmsReplyParams *p, const char *address)
{
	for (const char *const *i = p->identities; i && *i; i++)
		if (g_ascii_strcasecmp(*i, address) == 0)
			return TRUE;
	return FALSE;
}

/* Look CAND up (row locked). FALSE with *err on a database error; a
 * candidate the vault does not know leaves M->status KMS_REPLY_BAD_TOKEN. */
static gboolean
lookup(PGconn *c, const KmsReplyParams *p, const KmsSecret *cand, Match *m, GError **err)
{
	KmsDbParams q = KMS_DB_PARAMS_INIT;
	guint8 hash[KMS_TOKEN_HASH_LEN];
	g_autoptr(PGresult) r = NULL;
	g_autoptr(GBytes) stored = NULL;
	const char *status;
	gint64 attempts;

	m->status = KMS_REPLY_BAD_TOKEN;
	kms_token_hash(cand, hash);
	kms_db_param_bytes(&q, hash, sizeof(hash));
	r = kms_db_run(c, "SELECT t.id, t.user_id, t.purpose, t.token_hash, t.status, t.attempts,"
	    " t.expires_at <= now(), u.address"
	    " FROM tokens t JOIN users u ON u.id = t.user_id"
	    " WHERE t.token_hash = $1 FOR UPDATE OF t", &q, err);
	OPENSSL_cleanse(hash, sizeof(hash));
	if (r == NULL)
		return FALSE;
	if (PQntuples(r) != 1)
		return TRUE;
	/* the index found the row; the decision rests on a constant-time compare */
	stored = kms_db_get_bytes(r, 0, 3);
	kms_token_hash(cand, hash);
	if (stored == NULL || g_bytes_get_size(stored) != KMS_TOKEN_HASH_LEN ||
	    !kms_token_equal(g_bytes_get_data(stored, NULL), hash)) {
		OPENSSL_cleanse(hash, sizeof(hash));
		return TRUE;
	}
	OPENSSL_cleanse(hash, sizeof(hash));
	m->id = kms_db_get_int(r, 0, 0);
	m->user_id = kms_db_get_int(r, 0, 1);
	m->purpose = g_strdup(kms_db_get_text(r, 0, 2));
	status = kms_db_get_text(r, 0, 4);
	attempts = kms_db_get_int(r, 0, 5);
	m->address = g_strdup(kms_db_get_text(r, 0, 7));
	if (strcmp(status, "used") == 0 || strcmp(status, "cancelled") == 0)
		m->status = KMS_REPLY_USED;
	else if (strcmp(status, "locked") == 0 || attempts >= p->max_attempts)
		m->status = KMS_REPLY_LOCKED;
	else if (strcmp(status, "expired") == 0 || g_strcmp0(kms_db_get_text(r, 0, 6), "t") == 0)
		m->status = KMS_REPLY_EXPIRED;
	else if (!sender_may(p, m->address))
		m->status = KMS_REPLY_WRONG_SENDER;
	else
		m->status = KMS_REPLY_OK;
	return TRUE;
}

/* One more attempt on token ID, locking it at max_attempts. */
static gboolean
count_token(PGconn *c, const KmsReplyParams *p, gint64 id, GError **err)
{
	KmsDbParams q = KMS_DB_PARAMS_INIT;

	kms_db_param_int(&q, id);
	kms_db_param_int(&q, p->max_attempts);
	return kms_db_exec(c, "UPDATE tokens SET attempts = attempts + 1,"
	    " status = CASE WHEN attempts + 1 >= $2 THEN 'locked' ELSE status END"
	    " WHERE id = $1 AND status = 'pending'", &q, err);
}

/* An unknown token: one more attempt on each pending token of the
 * addresses the sender may act for. */
static gboolean
count_sender(PGconn *c, const KmsReplyParams *p, GError **err)
{
	for (const char *const *i = p->identities; i && *i; i++) {
		KmsDbParams q = KMS_DB_PARAMS_INIT;

		kms_db_param_text(&q, *i);
		kms_db_param_int(&q, p->max_attempts);
		if (!kms_db_exec(c, "UPDATE tokens SET attempts = attempts + 1,"
		    " status = CASE WHEN attempts + 1 >= $2 THEN 'locked' ELSE status END"
		    " WHERE status = 'pending' AND user_id IN"
		    " (SELECT id FROM users WHERE lower(address) = lower($1))", &q, err))
			return FALSE;
	}
	return TRUE;
}

/* The canonical printed form "XXXXX-XXXXX-XXXXX-XXXXX-XXXXX" of a
 * normalised token, in a secret (the PKCS#12 password in token mode). */
static KmsSecret *
printed(const KmsSecret *norm)
{
	KmsSecret *s = kms_secret_new(KMS_TOKEN_PRINTED_LEN);
	gsize o = 0;

	for (gsize i = 0; i < KMS_TOKEN_CHARS; i++) {
		if (i > 0 && i % 5 == 0)
			s->data[o++] = '-';
		s->data[o++] = norm->data[i];
	}
	return s;
}

static void
add_text(JsonBuilder *b, const char *name, const char *value)
{
	json_builder_set_member_name(b, name);
	if (value == NULL)
		json_builder_add_null_value(b);
	else {
		g_autofree char *v = g_utf8_make_valid(value, -1);

		json_builder_add_string_value(b, v);
	}
}

/* The request's payload as JSON text (g_free). */
static char *
payload(const KmsReplyParams *p, const Match *m, GBytes *sealed, gboolean with_csr)
{
	g_autoptr(JsonBuilder) b = json_builder_new();
	g_autoptr(JsonGenerator) g = json_generator_new();
	g_autoptr(JsonNode) root = NULL;
	g_autofree char *sp = g_base64_encode(g_bytes_get_data(sealed, NULL), g_bytes_get_size(sealed));

	json_builder_begin_object(b);
	json_builder_set_member_name(b, "token_id");
	json_builder_add_int_value(b, m->id);
	json_builder_set_member_name(b, "sealed_password");
	json_builder_add_string_value(b, sp);
	if (with_csr) {
		g_autofree char *csr = g_base64_encode(g_bytes_get_data(p->csr, NULL),
		    g_bytes_get_size(p->csr));

		json_builder_set_member_name(b, "csr");
		json_builder_add_string_value(b, csr);
	}
	add_text(b, "reply_from", p->reply_from ? p->reply_from : "");
	add_text(b, "auth", p->auth);
	add_text(b, "queue_id", p->queue_id ? p->queue_id : "NOQUEUE");
	json_builder_end_object(b);
	root = json_builder_get_root(b);
	json_generator_set_root(g, root);
	return json_generator_to_data(g, NULL);
}

/* Consume the token of M (selected FOR UPDATE) with normalised value
 * NORM: mark it used and queue the request. */
static gboolean
consume(PGconn *c, const KmsReplyParams *p, const Match *m, const KmsSecret *norm,
    KmsReplyResult *res, GError **err)
{
	KmsDbParams q = KMS_DB_PARAMS_INIT;
	g_autoptr(PGresult) r = NULL;
	g_autoptr(KmsSecret) pw = NULL;
	g_autoptr(GBytes) sealed = NULL;
	g_autofree char *json = NULL;
	guint8 pub[KMS_QUEUE_KEY_LEN];
	gboolean with_csr = p->csr != NULL && strcmp(m->purpose, "enroll") == 0;
	gint64 rid;

	kms_db_param_int(&q, m->id);
	if (!kms_db_exec(c, "UPDATE tokens SET status = 'used', used_at = now() WHERE id = $1",
	    &q, err))
		return FALSE;
	r = kms_db_run(c, "SELECT nextval(pg_get_serial_sequence('requests', 'id'))", NULL, err);
	if (r == NULL)
		return FALSE;
	rid = kms_db_get_int(r, 0, 0);
	if (!kms_queue_key_public(c, pub, err))
		return FALSE;
	pw = printed(norm);
	sealed = kms_queue_seal(pub, "p12-password", rid, pw->data, pw->len, err);
	if (sealed == NULL)
		return FALSE;
	json = payload(p, m, sealed, with_csr);
	kms_db_param_int(&q, rid);
	kms_db_param_text(&q, m->purpose);
	kms_db_param_int(&q, m->user_id);
	kms_db_param_text(&q, json);
	kms_db_param_int(&q, p->request_ttl);
	if (!kms_db_exec(c, "INSERT INTO requests (id, kind, user_id, payload, expires_at)"
	    " VALUES ($1, $2, $3, $4::jsonb, now() + $5 * interval '1 second')", &q, err))
		return FALSE;
	if (!kms_db_exec(c, "NOTIFY kms_requests", NULL, err))
		return FALSE;
	res->request_id = rid;
	res->with_csr = with_csr;
	return TRUE;
}

/* The audit entry of a decided reply (audit.h): a consumed token, or a
 * failed authentication with its reason. Token ids only, never tokens. */
static gboolean
audit_reply(PGconn *c, const KmsReplyParams *p, const Match *m, const KmsReplyResult *res,
    GError **err)
{
	g_autoptr(JsonObject) d = json_object_new();

	if (m->status != KMS_REPLY_BAD_TOKEN) {
		json_object_set_string_member(d, "address", m->address);
		json_object_set_string_member(d, "purpose", m->purpose);
		json_object_set_int_member(d, "token_id", m->id);
	}
	json_object_set_string_member(d, "sender", p->reply_from ? p->reply_from : "");
	json_object_set_string_member(d, "auth", p->auth);
	json_object_set_string_member(d, "queue_id", p->queue_id ? p->queue_id : "NOQUEUE");
	if (m->status == KMS_REPLY_OK) {
		json_object_set_int_member(d, "request_id", res->request_id);
		return kms_audit_append_as(c, "kmsmilter", "reply accepted", d, err);
	}
	json_object_set_string_member(d, "reason", kms_reply_status_name(m->status));
	return kms_audit_append_as(c, "kmsmilter", "failed authentication", d, err);
}

/* The whole decision inside an open transaction. FALSE on a database or
 * sealing error; otherwise *STATUS is the verdict and COMMIT is due
 * unless *ROLLBACK. */
static gboolean
decide(PGconn *c, const KmsReplyParams *p, KmsReplyResult *res, KmsReplyStatus *status,
    gboolean *rollback, GError **err)
{
	Match best = { .status = KMS_REPLY_BAD_TOKEN };
	const KmsSecret *best_token = NULL;
	gboolean ok = TRUE;

	*rollback = FALSE;
	for (guint i = 0; p->candidates && i < p->candidates->len && ok; i++) {
		const KmsSecret *cand = g_ptr_array_index(p->candidates, i);
		Match m = { 0 };

		if (cand == NULL || cand->len != KMS_TOKEN_CHARS)
			continue;
		ok = lookup(c, p, cand, &m, err);
		if (ok && m.status < best.status) {
			match_clear(&best);
			best = m;
			best_token = cand;
		} else
			match_clear(&m);
	}
	if (!ok) {
		match_clear(&best);
		return FALSE;
	}
	if (best.status != KMS_REPLY_BAD_TOKEN) {
		res->address = g_strdup(best.address);
		res->purpose = g_strdup(best.purpose);
	}
	switch (best.status) {
	case KMS_REPLY_OK:
		if (p->csr_error != NULL && strcmp(best.purpose, "enroll") == 0) {
			/* the user fixes the CSR and sends the same token again */
			best.status = KMS_REPLY_BAD_CSR;
			*rollback = TRUE;
			break;
		}
		ok = consume(c, p, &best, best_token, res, err);
		break;
	case KMS_REPLY_WRONG_SENDER:
		ok = count_token(c, p, best.id, err);
		break;
	case KMS_REPLY_BAD_TOKEN:
		ok = count_sender(c, p, err);
		break;
	default:
		break;
	}
	if (ok && !*rollback)
		ok = audit_reply(c, p, &best, res, err);
	*status = best.status;
	match_clear(&best);
	return ok;
}

static KmsReplyStatus
failed(const GError *e)
{
	if (e && (g_error_matches(e, KMS_DB_ERROR, KMS_DB_ERROR_RETRY) ||
	    g_error_matches(e, KMS_DB_ERROR, KMS_DB_ERROR_CONNECT)))
		return KMS_REPLY_RETRY;
	return KMS_REPLY_ERROR;
}

KmsReplyStatus
kms_reply_consume(PGconn *c, const KmsReplyParams *p, KmsReplyResult *res, GError **err)
{
	KmsReplyStatus status = KMS_REPLY_ERROR;
	gboolean rollback = FALSE;
	GError *e = NULL;

	memset(res, 0, sizeof(*res));
	if (!kms_db_begin(c, &e))
		goto fail;
	if (!decide(c, p, res, &status, &rollback, &e)) {
		kms_db_rollback(c);
		goto fail;
	}
	if (rollback) {
		kms_db_rollback(c);
		return status;
	}
	if (!kms_db_commit(c, &e))
		goto fail;
	return status;
fail:
	status = failed(e);
	res->request_id = 0;
	res->with_csr = FALSE;
	g_propagate_error(err, e);
	return status;
}
