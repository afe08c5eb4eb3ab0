/*
 * NAME
 *	worker - claim, do and finish queued requests (see worker.h)
 */
#include "autoconfig.h"
#include "worker.h"

#include <string.h>

#include <json-glib/json-glib.h>

#include "common/log.h"
#include "common/template.h"
#include "keyvault/adminwork.h"
#include "keyvault/db.h"
#include "keyvault/crlpub.h"
#include "keyvault/export.h"
#include "keyvault/issue.h"
#include "keyvault/mailtemplates.h"
#include "keyvault/queuekey.h"

gboolean
kms_worker_init(KmsWorker *w, KmsVault *v, const KmsConfig *cfg, GError **err)
{
	memset(w, 0, sizeof(*w));
	w->vault = v;
	w->cfg = cfg;
	w->mailer.url = kms_config_get(cfg, "mail", "submit");
	w->mailer.from = kms_config_get(cfg, "mail", "from");
	/* one thread runs the worker: it may keep its SMTP connection open
	 * between mails rather than greet the MTA anew for each */
	w->mailer.keep = kms_mail_connection_new();
	w->queue_priv = kms_queue_key_private(v, err);
	return w->queue_priv != NULL;
}

static void
worker_ca_drop(KmsWorker *w)
{
	EVP_PKEY_free(w->ca_key);
	w->ca_key = NULL;
	w->ca = kms_vault_ca_free(w->ca);
	g_clear_pointer(&w->ca_version, g_free);
}

void
kms_worker_clear(KmsWorker *w)
{
	w->queue_priv = kms_secret_free(w->queue_priv);
	w->mailer.keep = kms_mail_connection_free(w->mailer.keep);
	worker_ca_drop(w);
}

const KmsVaultCa *
kms_worker_ca(KmsWorker *w, GError **err)
{
	g_autofree char *version = kms_vault_ca_version(w->vault, err);

	if (version == NULL)
		return NULL;
	if (w->ca == NULL || strcmp(version, w->ca_version) != 0) {
		/* read after the version: never older than what it names */
		worker_ca_drop(w);
		if ((w->ca = kms_vault_ca_load(w->vault, err)) == NULL)
			return NULL;
		w->ca_version = g_steal_pointer(&version);
	}
	return w->ca;
}

EVP_PKEY *
kms_worker_ca_key(KmsWorker *w, GError **err)
{
	g_return_val_if_fail(w->ca != NULL, NULL);
	if (w->ca_key == NULL)
		w->ca_key = kms_vault_ca_key(w->vault, w->ca, err);
	return w->ca_key;
}

gboolean
kms_worker_send(KmsWorker *w, const char *name, const char *to, const char *const *vars,
    const char *attachment_name, const char *attachment_type, GBytes *attachment,
    GError **err)
{
	const char *builtin = kms_mail_template_builtin(name);
	g_autofree char *text = NULL, *out = NULL, *subject = NULL, *body = NULL;
	g_autofree char *reply_to = NULL;
	const char *enroll = kms_config_get(w->cfg, "milter", "enroll_address");

	if (builtin == NULL) {
		g_set_error(err, KMS_TEMPLATE_ERROR, KMS_TEMPLATE_ERROR_UNKNOWN,
		    "no template named %s", name);
		return FALSE;
	}
	if (w->mailer.from == NULL) {
		g_set_error(err, KMS_MAILER_ERROR, KMS_MAILER_ERROR_INVALID,
		    "[mail] from is not set: kmsd cannot send mail");
		return FALSE;
	}
	text = kms_template_load(kms_config_get(w->cfg, "enrollment", "template_dir"), name,
	    builtin, err);
	if (text == NULL || (out = kms_template_render(text, vars, err)) == NULL ||
	    !kms_template_split(out, &subject, &body, err))
		return FALSE;
	if (enroll)
		reply_to = g_strdup_printf("Reply-To: %s\r\n", enroll);
	return kms_mail_send(&w->mailer, to, subject, body, attachment_name, attachment_type,
	    attachment, reply_to, NULL, err);
}

/* A "mail" request: the token mail of kmsctl enroll / recover. */
static gboolean
do_mail(KmsWorker *w, gint64 id, const char *payload, const char *address, GError **err)
{
	g_autoptr(JsonParser) p = json_parser_new();
	g_autoptr(KmsSecret) token = NULL;
	JsonObject *o;
	const char *tpl, *sealed, *expiry;
	const char *enroll = kms_config_get(w->cfg, "milter", "enroll_address");
	g_autofree char *local = NULL;

	if (!json_parser_load_from_data(p, payload, -1, err))
		return FALSE;
	o = json_node_get_object(json_parser_get_root(p));
	tpl = json_object_get_string_member_with_default(o, "template", "");
	sealed = json_object_get_string_member_with_default(o, "sealed_token", NULL);
	expiry = json_object_get_string_member_with_default(o, "expires", "");
	if (sealed) {
		gsize len;
		g_autofree guchar *blob = g_base64_decode(sealed, &len);

		token = kms_queue_open(w->queue_priv, "token-mail", id, blob, len, err);
		if (token == NULL)
			return FALSE;
	}
	local = g_strndup(address, strcspn(address, "@"));
	{
		const char *vars[] = {
			"address", address, "name", local, "expiry", expiry,
			"enroll_address", enroll ? enroll : "the enrollment address",
			"token", token ? (const char *)token->data : "", NULL
		};

		return kms_worker_send(w, tpl, address, vars, NULL, NULL, NULL, err);
	}
}

/* Do request ID of KIND; everything in the caller's transaction. */
static gboolean
do_request(KmsWorker *w, gint64 id, const char *kind, const char *payload, gint64 user_id,
    const char *address, GError **err)
{
	/* export and import run only when approved (adminwork.h) */
	if ((strcmp(kind, "export") == 0 || strcmp(kind, "import") == 0) &&
	    !kms_work_authorize(w, id, kind, err))
		return FALSE;
	if (strcmp(kind, "mail") == 0)
		return do_mail(w, id, payload, address, err);
	if (strcmp(kind, "enroll") == 0 || strcmp(kind, "recover") == 0)
		return kms_work_enroll(w, id, kind, payload, user_id, address, err);
	if (strcmp(kind, "crl") == 0)
		return kms_work_crl(w, id, err);
	if (strcmp(kind, "export") == 0)
		return kms_work_export(w, id, payload, err);
	if (strcmp(kind, "import") == 0)
		return kms_work_import(w, id, payload, err);
	if (strcmp(kind, "recover-start") == 0 || g_str_has_prefix(kind, "admin-") ||
	    strcmp(kind, "approvals-set") == 0 || strcmp(kind, "revoke") == 0 ||
	    strcmp(kind, "policy-set") == 0)
		return kms_work_admin(w, id, kind, payload, err);
	g_set_error(err, KMS_DB_ERROR, KMS_DB_ERROR_QUERY, "unknown request kind %s", kind);
	return FALSE;
}

gboolean
kms_worker_run_one(KmsWorker *w, gboolean *did, GError **err)
{
	PGconn *db = kms_vault_db(w->vault);
	g_autoptr(PGresult) r = NULL;
	g_autoptr(GError) e = NULL;
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	gint64 id;
	gboolean ok;

	*did = FALSE;
	if (!kms_db_begin(db, err))
		return FALSE;
	r = kms_db_run(db, "SELECT r.id, r.kind, r.payload::text, coalesce(u.address, ''),"
	    " coalesce(r.user_id, 0) FROM requests r LEFT JOIN users u ON u.id = r.user_id"
	    " WHERE r.status = 'queued' AND r.expires_at > now()"
	    " ORDER BY r.id FOR UPDATE OF r SKIP LOCKED LIMIT 1", NULL, err);
	if (r == NULL || PQntuples(r) == 0) {
		kms_db_rollback(db);
		return r != NULL;
	}
	*did = TRUE;
	id = kms_db_get_int(r, 0, 0);
	ok = do_request(w, id, PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2), kms_db_get_int(r, 0, 4),
	    PQgetvalue(r, 0, 3), &e);
	kms_db_param_int(&p, id);
	if (ok) {
		kms_info("request %" G_GINT64_FORMAT " (%s) done%s%s", id, PQgetvalue(r, 0, 1),
		    *PQgetvalue(r, 0, 3) ? " for " : "", PQgetvalue(r, 0, 3));
		ok = kms_db_exec(db, "UPDATE requests SET status = 'done', finished_at = now(),"
		    " attempts = attempts + 1, last_error = NULL,"
		    " payload = payload - 'sealed_token' - 'sealed_password' WHERE id = $1", &p, err) &&
		    kms_db_commit(db, err);
		if (!ok)
			kms_db_rollback(db);
		return ok;
	}
	if (g_error_matches(e, KMS_ISSUE_ERROR, KMS_ISSUE_ERROR_REFUSED)) {
		/* can never succeed: fail it for good, the queue moves on */
		kms_warn("request %" G_GINT64_FORMAT " for %s refused: %s", id,
		    PQgetvalue(r, 0, 3), e->message);
		kms_db_param_text(&p, e->message);
		if (!kms_db_exec(db, "UPDATE requests SET status = 'failed', finished_at = now(),"
		    " attempts = attempts + 1, last_error = $2, result = NULL,"
		    " payload = payload - 'sealed_token' - 'sealed_password' WHERE id = $1", &p, err) ||
		    !kms_db_commit(db, err)) {
			kms_db_rollback(db);
			return FALSE;
		}
		return TRUE;
	}
	kms_warn("request %" G_GINT64_FORMAT " for %s failed, will retry: %s", id,
	    PQgetvalue(r, 0, 3), e->message);
	kms_db_param_text(&p, e->message);
	if (!kms_db_exec(db, "UPDATE requests SET attempts = attempts + 1, last_error = $2"
	    " WHERE id = $1", &p, NULL) || !kms_db_commit(db, NULL))
		kms_db_rollback(db);
	g_propagate_error(err, g_steal_pointer(&e));
	return FALSE;
}

guint
kms_worker_expire(KmsWorker *w)
{
	g_autoptr(GError) e = NULL;
	g_autoptr(PGresult) r = kms_db_run(kms_vault_db(w->vault),
	    "UPDATE requests r SET status = 'expired', finished_at = now(),"
	    " payload = payload - 'sealed_token' - 'sealed_password'"
	    " FROM users u WHERE u.id = r.user_id AND r.status = 'queued' AND r.expires_at <= now()"
	    " RETURNING r.id, r.kind, u.address", NULL, &e);

	if (r == NULL) {
		kms_warn("cannot expire requests: %s", e->message);
		return 0;
	}
	for (int i = 0; i < PQntuples(r); i++) {
		const char *vars[] = {"address", PQgetvalue(r, i, 2), "kind", PQgetvalue(r, i, 1), NULL};
		g_autoptr(GError) me = NULL;

		kms_warn("request %s (%s) for %s expired unprocessed", PQgetvalue(r, i, 0),
		    PQgetvalue(r, i, 1), PQgetvalue(r, i, 2));
		if (!kms_worker_send(w, "expired", PQgetvalue(r, i, 2), vars, NULL, NULL, NULL, &me))
			kms_warn("cannot tell %s that request %s expired: %s", PQgetvalue(r, i, 2),
			    PQgetvalue(r, i, 0), me->message);
	}
	return (guint)PQntuples(r);
}
