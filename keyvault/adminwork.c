/*
 * NAME
 *	adminwork - kmsd's side of administrators and approvals (adminwork.h)
 */
#include "autoconfig.h"
#include "adminwork.h"

#include <string.h>

#include <json-glib/json-glib.h>

#include "common/log.h"
#include "keyvault/admin.h"
#include "keyvault/audit.h"
#include "keyvault/crlpub.h"
#include "keyvault/db.h"
#include "keyvault/enroll.h"
#include "keyvault/issue.h"
#include "keyvault/policy.h"

static gboolean
audit_request(PGconn *db, const char *action, gint64 id, const char *kind, const char *detail,
    GError **err)
{
	g_autoptr(JsonObject) d = json_object_new();

	json_object_set_int_member(d, "request_id", id);
	json_object_set_string_member(d, "kind", kind);
	if (detail)
		json_object_set_string_member(d, "detail", detail);
	return kms_audit_append(db, action, d, err);
}

guint
kms_worker_approvals(KmsWorker *w)
{
	PGconn *db = kms_vault_db(w->vault);
	g_autoptr(KmsSecret) key = kms_vault_derive_key(w->vault, KMS_ADMINS_KEY_LABEL, NULL);
	g_autoptr(PGresult) r = NULL;
	g_autoptr(GError) e = NULL;
	guint changed = 0;

	if (key == NULL)
		return 0;
	if ((r = kms_db_run(db, "SELECT id, kind FROM requests WHERE status = 'awaiting-approval'"
	    " ORDER BY id", NULL, &e)) == NULL) {
		kms_warn("approvals: %s", e->message);
		return 0;
	}
	for (int i = 0; i < PQntuples(r); i++) {
		gint64 id = kms_db_get_int(r, i, 0);
		const char *kind = PQgetvalue(r, i, 1);
		KmsApprovalResult res;
		KmsDbParams q = KMS_DB_PARAMS_INIT;
		g_autoptr(PGresult) locked = NULL;
		const char *status = NULL, *action = NULL;

		g_clear_error(&e);
		kms_db_param_int(&q, id);
		if (!kms_db_begin(db, &e) ||
		    (locked = kms_db_run(db, "SELECT 1 FROM requests WHERE id = $1 AND"
			" status = 'awaiting-approval' FOR UPDATE SKIP LOCKED", &q, &e)) == NULL ||
		    PQntuples(locked) == 0 || !kms_approval_check(db, key, id, FALSE, &res, &e)) {
			if (e)
				kms_warn("request %" G_GINT64_FORMAT ": approvals: %s", id, e->message);
			kms_db_rollback(db);
			continue;
		}
		switch (res.state) {
		case KMS_APPROVAL_APPROVED:
			status = "queued", action = "request approved";
			break;
		case KMS_APPROVAL_REJECTED:
			status = "rejected", action = "request rejected";
			break;
		case KMS_APPROVAL_EXPIRED:
			status = "expired", action = "request expired";
			break;
		case KMS_APPROVAL_INVALID:
			status = "failed", action = "request refused";
			break;
		case KMS_APPROVAL_WAITING:
			break;
		}
		if (status == NULL) {
			if (res.detail)
				kms_info("request %" G_GINT64_FORMAT " (%s): %d of %d approvals; %s", id,
				    kind, res.have, res.need, res.detail);
			kms_db_rollback(db);
			kms_approval_result_clear(&res);
			continue;
		}
		kms_db_params_clear(&q);
		kms_db_param_int(&q, id);
		kms_db_param_text(&q, status);
		kms_db_param_text(&q, res.detail);
		/* a request that will not run keeps no bundle (an import's) */
		if (!kms_db_exec(db, "UPDATE requests SET status = $2, last_error = $3,"
		    " finished_at = CASE WHEN $2 = 'queued' THEN NULL ELSE now() END,"
		    " result = CASE WHEN $2 = 'queued' THEN result END WHERE id = $1",
		    &q, &e) ||
		    (strcmp(status, "rejected") == 0 && strcmp(kind, "admin-add") == 0 &&
		     !kms_db_exec(db, "DELETE FROM admins WHERE mac IS NULL AND id ="
			 " (SELECT (payload->>'admin_id')::bigint FROM requests WHERE id = $1)",
			 &q, &e)) ||
		    !audit_request(db, action, id, kind, res.detail, &e) || !kms_db_commit(db, &e)) {
			kms_warn("request %" G_GINT64_FORMAT ": %s", id, e->message);
			kms_db_rollback(db);
		} else {
			kms_info("request %" G_GINT64_FORMAT " (%s): %s%s%s", id, kind, action,
			    res.detail ? ": " : "", res.detail ? res.detail : "");
			changed++;
		}
		kms_approval_result_clear(&res);
	}
	return changed;
}

gboolean
kms_work_authorize(KmsWorker *w, gint64 id, const char *kind, GError **err)
{
	g_autoptr(KmsSecret) key = kms_vault_derive_key(w->vault, KMS_ADMINS_KEY_LABEL, err);
	g_autoptr(GError) e = NULL;
	KmsApprovalResult res;
	gboolean ok;

	if (key == NULL)
		return FALSE;
	if (!kms_approval_check(kms_vault_db(w->vault), key, id, FALSE, &res, &e)) {
		if (g_error_matches(e, KMS_ADMIN_ERROR, KMS_ADMIN_ERROR_REFUSED))
			return kms_refuse(err, "request %" G_GINT64_FORMAT " (%s) refused: %s", id, kind,
			    e->message);
		g_propagate_error(err, g_steal_pointer(&e));
		return FALSE;
	}
	ok = res.state == KMS_APPROVAL_APPROVED;
	if (!ok)
		kms_refuse(err, "request %" G_GINT64_FORMAT " (%s) is not approved (%d of %d)%s%s", id, kind,
		    res.have, res.need, res.detail ? ": " : "", res.detail ? res.detail : "");
	kms_approval_result_clear(&res);
	return ok;
}

gboolean
kms_work_recover_allowed(KmsWorker *w, gint64 request_id, gint64 token_id, GError **err)
{
	PGconn *db = kms_vault_db(w->vault);
	g_autoptr(KmsSecret) key = kms_vault_derive_key(w->vault, KMS_ADMINS_KEY_LABEL, err);
	g_autoptr(PGresult) r = NULL;
	g_autoptr(GError) e = NULL;
	KmsDbParams q = KMS_DB_PARAMS_INIT;
	KmsApprovalPolicy pol;
	KmsApprovalResult res;
	gint64 origin;
	gboolean ok;

	if (key == NULL)
		return FALSE;
	if (!kms_approval_policy_load(db, key, &pol, &e))
		return kms_refuse(err, "request %" G_GINT64_FORMAT ": no recovery: %s", request_id,
		    e->message);
	if (pol.need[KMS_OP_RECOVER] <= 1)
		return TRUE;
	kms_db_param_int(&q, token_id);
	if ((r = kms_db_run(db, "SELECT coalesce(t.request_id, 0) FROM tokens t"
	    " JOIN requests s ON s.id = t.request_id AND s.kind = 'recover-start'"
	    " AND s.status = 'done' WHERE t.id = $1 AND t.purpose = 'recover'", &q, err)) == NULL)
		return FALSE;
	if (PQntuples(r) == 0 || (origin = kms_db_get_int(r, 0, 0)) == 0)
		return kms_refuse(err, "request %" G_GINT64_FORMAT ": recovery needs %d approvals and token"
		    " %" G_GINT64_FORMAT " comes from no approved request", request_id,
		    pol.need[KMS_OP_RECOVER], token_id);
	if (!kms_approval_check(db, key, origin, TRUE, &res, err))
		return FALSE;
	ok = res.state == KMS_APPROVAL_APPROVED;
	if (!ok)
		kms_refuse(err, "request %" G_GINT64_FORMAT ": the recovery request %" G_GINT64_FORMAT
		    " behind token %" G_GINT64_FORMAT " is not approved (%d of %d)", request_id,
		    origin, token_id, res.have, res.need);
	kms_approval_result_clear(&res);
	return ok;
}

/* Every gated count must stay reachable: N >= 2 needs N administrators
 * besides a requester. */
static gboolean
reachable(const KmsApprovalPolicy *p, int admins, GError **err)
{
	for (int i = 0; i < KMS_OP_COUNT; i++)
		if (p->need[i] >= 2 && p->need[i] > admins - 1)
			return kms_refuse(err, "%s=%d needs %d administrators besides the requester; %d"
			    " administrator%s would remain", kms_operation_names[i], p->need[i],
			    p->need[i], admins, admins == 1 ? "" : "s");
	return TRUE;
}

static gboolean
do_recover_start(KmsWorker *w, gint64 id, JsonObject *o, GError **err)
{
	PGconn *db = kms_vault_db(w->vault);
	const char *address = json_object_get_string_member_with_default(o, "address", "");
	KmsEnrollParams p = {0};
	g_autoptr(KmsSecret) tok = NULL;
	g_autofree char *stored = NULL;
	g_autoptr(GError) e = NULL;
	KmsDbParams q = KMS_DB_PARAMS_INIT;

	if (g_strcmp0(kms_config_get(w->cfg, "enrollment", "p12_password"), "pin") == 0)
		return kms_refuse(err, "request %" G_GINT64_FORMAT ": an approved recovery cannot hand a"
		    " PIN to anyone ([enrollment] p12_password = pin); use token", id);
	p.purpose = "recover";
	p.token_ttl = kms_config_get_int(w->cfg, "enrollment", "token_ttl");
	p.request_ttl = kms_config_get_int(w->cfg, "kms", "request_ttl");
	p.deliver_mail = TRUE;
	if (!kms_queue_key_public(db, p.queue_pub, err))
		return FALSE;
	if (!kms_enroll_can_recover(db, address, &e) ||
	    !kms_enroll_user(db, &p, address, &tok, &stored, &e)) {
		if (e->domain == KMS_DB_ERROR)
			return g_propagate_error(err, g_steal_pointer(&e)), FALSE;
		return kms_refuse(err, "request %" G_GINT64_FORMAT ": %s: %s", id, address, e->message);
	}
	kms_db_param_int(&q, id);
	kms_db_param_text(&q, stored);
	if (!kms_db_exec(db, "UPDATE tokens SET request_id = $1 WHERE id = (SELECT t.id FROM tokens t"
	    " JOIN users u ON u.id = t.user_id WHERE lower(u.address) = lower($2)"
	    " AND t.purpose = 'recover' AND t.status = 'pending' ORDER BY t.id DESC LIMIT 1)", &q, err))
		return FALSE;
	kms_info("request %" G_GINT64_FORMAT ": recovery token for %s queued", id, stored);
	return audit_request(db, "recovery started", id, "recover-start", stored, err);
}

/* An approved revocation: the certificates kmsctl found, still valid. */
static gboolean
do_revoke(KmsWorker *w, gint64 id, JsonObject *o, GError **err)
{
	JsonArray *ta = json_object_has_member(o, "targets") ?
	    json_object_get_array_member(o, "targets") : NULL;
	guint n = ta ? json_array_get_length(ta) : 0;
	g_autofree gint64 *ids = g_new0(gint64, n + 1);
	g_autofree const char **serials = g_new0(const char *, n + 1);
	g_autofree const char **addresses = g_new0(const char *, n + 1);
	g_autoptr(PGresult) r = NULL;
	g_autoptr(GError) e = NULL;
	KmsDbParams q = KMS_DB_PARAMS_INIT;

	if (n == 0)
		return kms_refuse(err, "request %" G_GINT64_FORMAT ": nothing to revoke", id);
	for (guint i = 0; i < n; i++) {
		JsonNode *node = json_array_get_element(ta, i);
		JsonObject *t = JSON_NODE_HOLDS_OBJECT(node) ? json_node_get_object(node) : NULL;

		if (t == NULL)
			return kms_refuse(err, "request %" G_GINT64_FORMAT ": bad target", id);
		ids[i] = json_object_get_int_member_with_default(t, "id", 0);
		serials[i] = json_object_get_string_member_with_default(t, "serial", "?");
		addresses[i] = json_object_get_string_member_with_default(t, "address", "");
	}
	kms_db_param_int(&q, id);
	if ((r = kms_db_run(kms_vault_db(w->vault), "SELECT coalesce(requester, 'kmsd')"
	    " FROM requests WHERE id = $1", &q, err)) == NULL)
		return FALSE;
	if (!kms_revoke_apply(kms_vault_db(w->vault), n, ids, serials, addresses,
	    json_object_get_string_member_with_default(o, "reason", "unspecified"),
	    PQgetvalue(r, 0, 0), kms_config_get_int(w->cfg, "kms", "request_ttl"), &e))
		return e->domain == KMS_DB_ERROR && e->code == KMS_DB_ERROR_QUERY ?
		    kms_refuse(err, "request %" G_GINT64_FORMAT ": %s", id, e->message) :
		    (g_propagate_error(err, g_steal_pointer(&e)), FALSE);
	kms_info("request %" G_GINT64_FORMAT ": %u certificate%s revoked", id, n, n == 1 ? "" : "s");
	return TRUE;
}

/* An approved policy change: {scope, name, keys: [...], values: [... | null]}. */
static gboolean
do_policy_set(KmsWorker *w, gint64 id, JsonObject *o, GError **err)
{
	PGconn *db = kms_vault_db(w->vault);
	const char *scope = json_object_get_string_member_with_default(o, "scope", "");
	const char *name = json_object_get_string_member_with_default(o, "name", "");
	JsonArray *keys = json_object_has_member(o, "keys") ?
	    json_object_get_array_member(o, "keys") : NULL;
	JsonArray *values = json_object_has_member(o, "values") ?
	    json_object_get_array_member(o, "values") : NULL;
	g_autoptr(JsonObject) d = json_object_new();
	g_autoptr(JsonObject) kv = json_object_new();

	if (keys == NULL || values == NULL || json_array_get_length(keys) !=
	    json_array_get_length(values) || (strcmp(scope, "domain") != 0 &&
	    strcmp(scope, "user") != 0))
		return kms_refuse(err, "request %" G_GINT64_FORMAT ": malformed policy change", id);
	for (guint i = 0; i < json_array_get_length(keys); i++) {
		const char *k = json_array_get_string_element(keys, i);
		JsonNode *vn = json_array_get_element(values, i);
		const char *val = JSON_NODE_HOLDS_NULL(vn) ? NULL : json_node_get_string(vn);
		g_autofree char *canon = NULL;
		g_autoptr(GError) e = NULL;
		gboolean removed;

		if (k == NULL || (val && *val && !kms_policy_check(k, val, &canon, &e)))
			return kms_refuse(err, "request %" G_GINT64_FORMAT ": %s", id,
			    e ? e->message : "bad key");
		if (!kms_policy_set(db, scope, name, k, val, &removed, err))
			return FALSE;
		json_object_set_string_member(kv, k, val);
	}
	json_object_set_string_member(d, "scope", scope);
	json_object_set_string_member(d, "name", name);
	json_object_set_object_member(d, "values", json_object_ref(kv));
	json_object_set_int_member(d, "request_id", id);
	kms_info("request %" G_GINT64_FORMAT ": policy of %s %s changed", id, scope, name);
	return kms_audit_append(db, "policy set", d, err);
}

gboolean
kms_work_admin(KmsWorker *w, gint64 id, const char *kind, const char *payload, GError **err)
{
	PGconn *db = kms_vault_db(w->vault);
	g_autoptr(JsonParser) parser = json_parser_new();
	g_autoptr(KmsSecret) key = NULL;
	JsonObject *o;
	JsonNode *root;
	int admins;

	if (!kms_work_authorize(w, id, kind, err))
		return FALSE;
	if (!json_parser_load_from_data(parser, payload, -1, NULL) ||
	    (root = json_parser_get_root(parser)) == NULL || !JSON_NODE_HOLDS_OBJECT(root))
		return kms_refuse(err, "request %" G_GINT64_FORMAT ": the payload is not a JSON object", id);
	o = json_node_get_object(root);
	if (strcmp(kind, "recover-start") == 0)
		return do_recover_start(w, id, o, err);
	if (strcmp(kind, "revoke") == 0)
		return do_revoke(w, id, o, err);
	if (strcmp(kind, "policy-set") == 0)
		return do_policy_set(w, id, o, err);
	if ((key = kms_vault_derive_key(w->vault, KMS_ADMINS_KEY_LABEL, err)) == NULL ||
	    !kms_admin_count_valid(db, key, &admins, err))
		return FALSE;
	if (strcmp(kind, "admin-add") == 0) {
		const char *name = json_object_get_string_member_with_default(o, "name", "");
		g_autoptr(GError) e = NULL;

		if (!kms_admin_authenticate_row(db, key,
		    json_object_get_int_member_with_default(o, "admin_id", 0), name,
		    json_object_get_string_member_with_default(o, "public_key", ""), &e))
			return e->domain == KMS_ADMIN_ERROR ?
			    kms_refuse(err, "request %" G_GINT64_FORMAT ": %s", id, e->message) :
			    (g_propagate_error(err, g_steal_pointer(&e)), FALSE);
		kms_info("request %" G_GINT64_FORMAT ": administrator %s added", id, name);
		return audit_request(db, "admin added", id, kind, name, err);
	}
	if (strcmp(kind, "admin-remove") == 0) {
		const char *name = json_object_get_string_member_with_default(o, "name", "");
		KmsApprovalPolicy pol;
		KmsDbParams q = KMS_DB_PARAMS_INIT;
		g_autoptr(PGresult) r = NULL;

		if (!kms_approval_policy_load(db, key, &pol, err) || !reachable(&pol, admins - 1, err))
			return FALSE;
		if (admins <= 1)
			return kms_refuse(err, "request %" G_GINT64_FORMAT ": %s is the last administrator",
			    id, name);
		kms_db_param_text(&q, name);
		if ((r = kms_db_run(db, "DELETE FROM admins WHERE name = $1 RETURNING id", &q, err)) == NULL)
			return FALSE;
		if (PQntuples(r) == 0)
			return kms_refuse(err, "request %" G_GINT64_FORMAT ": no administrator %s", id, name);
		kms_info("request %" G_GINT64_FORMAT ": administrator %s removed", id, name);
		return audit_request(db, "admin removed", id, kind, name, err);
	}
	if (strcmp(kind, "approvals-set") == 0) {
		KmsApprovalPolicy pol;
		g_autoptr(GError) e = NULL;
		g_autofree char *counts = NULL;

		if (!kms_approval_policy_load(db, key, &pol, err))
			return FALSE;
		if (!kms_approval_policy_parse(&pol, json_object_get_string_member_with_default(o,
		    "counts", ""), &e))
			return kms_refuse(err, "request %" G_GINT64_FORMAT ": %s", id, e->message);
		if (!reachable(&pol, admins, err) || !kms_approval_policy_store(db, key, &pol, err))
			return FALSE;
		counts = kms_approval_policy_format(&pol);
		kms_info("request %" G_GINT64_FORMAT ": approvals now %s", id, counts);
		return audit_request(db, "approvals set", id, kind, counts, err);
	}
	return kms_refuse(err, "request %" G_GINT64_FORMAT ": unknown kind %s", id, kind);
}
