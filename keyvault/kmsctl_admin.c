/*
 * NAME
 *	kmsctl admin, requests, approve, reject, policy approvals
 * SYNOPSIS
 *	kmsctl [--admin NAME --admin-password-file F] admin add NAME [--password-file F]
 *	kmsctl ... admin remove NAME | admin list [--json] | admin passwd [--new-password-file F]
 *	kmsctl ... requests list [--all] [--json]
 *	kmsctl ... approve ID [--comment TEXT] | reject ID [--comment TEXT]
 *	kmsctl ... policy approvals show [--json] | set OPERATION=COUNT ...
 * DESCRIPTION
 *	Administrators and M-of-N approvals (admin.h). The command acts as the
 *	administrator named by --admin (global option), else KMS_ADMIN, else
 *	[admin] name; the passphrase comes from --admin-password-file, else
 *	KMS_ADMIN_PASSWORD_FILE, else [admin] password_file, else a prompt.
 *
 *	admin add makes the new administrator's key pair here (sealed under
 *	the passphrase given with --password-file) and asks kmsd to accept it
 *	(request 'admin-add', gated by admin-change); until kmsd has, the new
 *	administrator is listed as pending and cannot act. The very first
 *	administrator of a vault made without --admin is added with the
 *	startup password instead (--vault-password-file), since no
 *	administrator exists to ask.
 *
 *	An operation whose count is 2 or more prints "Request: ID" and waits
 *	for that many approvals by other administrators (kmsctl approve ID);
 *	one rejection ends it. kmsctl refuses the obvious mistakes (approving
 *	one's own request, twice, a rejected or expired request); kmsd checks
 *	every signature again before it acts.
 * SECURITY
 *	Passphrases come from files or the terminal; the private key is open
 *	only while this command signs.
 */
#include "autoconfig.h"
#include "kmsctl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyvault/audit.h"
#include "keyvault/db.h"
#include "keyvault/enroll.h"

gboolean
kmsctl_admin(KmsCtl *ctl, KmsVault *v, gboolean required, KmsAdmin **out)
{
	const char *name = ctl->admin_name, *pwfile = ctl->admin_password_file;
	g_autoptr(GError) e = NULL;
	g_autoptr(KmsSecret) pw = NULL;
	g_autofree char *prompt = NULL, *actor = NULL;
	KmsAdmin *a;

	*out = ctl->admin;
	if (ctl->admin)
		return TRUE;
	if (kmsctl_config(ctl) == NULL)
		return FALSE;
	if (name == NULL && (name = g_getenv("KMS_ADMIN")) != NULL && *name == '\0')
		name = NULL;
	if (name == NULL)
		name = kms_config_get(ctl->cfg, "admin", "name");
	if (name == NULL) {
		if (required)
			kmsctl_fail("this needs an administrator: --admin NAME (or KMS_ADMIN, or"
			    " [admin] name)");
		return !required;
	}
	if (pwfile == NULL && (pwfile = g_getenv("KMS_ADMIN_PASSWORD_FILE")) != NULL &&
	    *pwfile == '\0')
		pwfile = NULL;
	if (pwfile == NULL)
		pwfile = kms_config_get(ctl->cfg, "admin", "password_file");
	prompt = g_strdup_printf("Passphrase of administrator %s: ", name);
	if ((pw = kms_password_read(pwfile, prompt, FALSE, &e)) == NULL) {
		kmsctl_fail_error(e);
		return FALSE;
	}
	if ((a = kms_admin_login(kms_vault_db(v), name, pw, &e)) == NULL) {
		if (g_error_matches(e, KMS_ADMIN_ERROR, KMS_ADMIN_ERROR_AUTH)) {
			g_autoptr(JsonObject) d = json_object_new();

			json_object_set_string_member(d, "admin", name);
			kmsctl_audit_alone(v, "admin authentication failed", d);
		}
		kmsctl_fail_error(e);
		return FALSE;
	}
	if (!a->authenticated) {
		kmsctl_fail("administrator %s is not active yet: kmsd has not accepted it", name);
		kms_admin_free(a);
		return FALSE;
	}
	actor = g_strdup_printf("admin %s", a->name);
	kms_audit_set_actor(actor, TRUE, TRUE);
	*out = ctl->admin = a;
	return TRUE;
}

gboolean
kmsctl_init_admins(KmsCtl *ctl, KmsVault *v, const char *name, const char *pwfile,
    GError **err)
{
	g_autoptr(KmsSecret) key = kms_vault_derive_key(v, KMS_ADMINS_KEY_LABEL, err);
	g_autoptr(KmsSecret) pw = NULL;
	g_autofree char *prompt = NULL;
	KmsApprovalPolicy pol;
	gint64 id;

	kms_approval_policy_default(&pol);
	if (key == NULL || !kms_approval_policy_store(kms_vault_db(v), key, &pol, err))
		return FALSE;
	if (name == NULL)
		return TRUE;
	prompt = g_strdup_printf("Passphrase of the new administrator %s: ", name);
	if ((pw = kms_password_read(pwfile, prompt, TRUE, err)) == NULL)
		return FALSE;
	if (!kms_admin_create(kms_vault_db(v), name, pw,
	    (guint32)kms_config_get_int(ctl->cfg, "kms", "kdf_passes"),
	    (guint32)(kms_config_get_int(ctl->cfg, "kms", "kdf_memory") / 1024), g_get_user_name(),
	    key, &id, NULL, err))
		return FALSE;
	{
		g_autoptr(JsonObject) d = json_object_new();

		json_object_set_string_member(d, "admin", name);
		return kms_audit_append(kms_vault_db(v), "admin added", d, err);
	}
}

gboolean
kmsctl_request(KmsCtl *ctl, PGconn *db, const char *kind, JsonObject *payload,
    gint64 *id, gboolean *pending, GError **err)
{
	return kms_request_submit(db, ctl->admin, kind, payload, 0,
	    kms_config_get_int(ctl->cfg, "admin", "approval_ttl"), id, pending, err);
}

/* Print what submitting request ID did. */
static void
print_request(gint64 id, gboolean pending, const char *what)
{
	printf("Request: %" G_GINT64_FORMAT "\n", id);
	if (pending)
		printf("%s waits for approvals (kmsctl approve %" G_GINT64_FORMAT ")\n", what, id);
	else
		printf("%s queued for kmsd\n", what);
}

/* --- admin add|remove|list|passwd ---------------------------------------- */

static int
admin_add(KmsCtl *ctl, int argc, char **argv)
{
	g_autofree char *pwfile = NULL, *vaultpw = NULL, *pub = NULL, *prompt = NULL;
	const GOptionEntry entries[] = {
		{"password-file", 0, 0, G_OPTION_ARG_FILENAME, &pwfile,
		 "file holding the new administrator's passphrase (else prompt)", "FILE"},
		{"vault-password-file", 0, 0, G_OPTION_ARG_FILENAME, &vaultpw,
		 "first administrator of a vault without any: the startup password", "FILE"},
		G_OPTION_ENTRY_NULL
	};
	g_autoptr(GError) e = NULL;
	KmsAdmin *me = NULL;
	g_autoptr(KmsSecret) pw = NULL, key = NULL;
	g_autoptr(PGresult) r = NULL;
	KmsVault *v;
	PGconn *db;
	gint64 id, rid;
	gboolean pending, first;
	int rc;

	if ((rc = kmsctl_parse(ctl, &argc, &argv, entries, "NAME",
	    "Add an administrator (accepted by kmsd once approved).")) != KMSCTL_OK)
		return rc;
	if (argc != 2) {
		fprintf(stderr, "usage: kmsctl admin add NAME [--password-file F]\n");
		return KMSCTL_USAGE;
	}
	if ((v = kmsctl_connect(ctl)) == NULL)
		return KMSCTL_FAIL;
	db = kms_vault_db(v);
	if ((r = kms_db_run(db, "SELECT count(*) = 0 FROM admins WHERE mac IS NOT NULL", NULL,
	    &e)) == NULL) {
		rc = kmsctl_fail_error(e);
		goto out;
	}
	first = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
	if (first) {
		/* nobody to ask: the startup password stands in */
		if (!kmsctl_unseal(ctl, v, vaultpw)) {
			rc = KMSCTL_FAIL;
			goto out;
		}
		if ((key = kms_vault_derive_key(v, KMS_ADMINS_KEY_LABEL, &e)) == NULL) {
			rc = kmsctl_fail_error(e);
			goto out;
		}
	} else if (!kmsctl_admin(ctl, v, TRUE, &me)) {
		rc = KMSCTL_FAIL;
		goto out;
	}
	prompt = g_strdup_printf("Passphrase of the new administrator %s: ", argv[1]);
	if ((pw = kms_password_read(pwfile, prompt, TRUE, &e)) == NULL) {
		rc = kmsctl_fail_error(e);
		goto out;
	}
	if (!kms_db_begin(db, &e) ||
	    !kms_admin_create(db, argv[1], pw, (guint32)kms_config_get_int(ctl->cfg, "kms",
		"kdf_passes"), (guint32)(kms_config_get_int(ctl->cfg, "kms", "kdf_memory") / 1024),
		me ? me->name : g_get_user_name(), key, &id, &pub, &e))
		goto failed;
	if (first) {
		g_autoptr(JsonObject) d = json_object_new();

		json_object_set_string_member(d, "admin", argv[1]);
		if (!kms_audit_append(db, "admin added", d, &e) || !kms_db_commit(db, &e))
			goto failed;
		printf("administrator %s added\n", argv[1]);
		rc = KMSCTL_OK;
		goto out;
	}
	{
		g_autoptr(JsonObject) p = json_object_new();
		g_autoptr(JsonObject) d = json_object_new();

		json_object_set_int_member(p, "admin_id", id);
		json_object_set_string_member(p, "name", argv[1]);
		json_object_set_string_member(p, "public_key", pub);
		if (!kmsctl_request(ctl, db, "admin-add", p, &rid, &pending, &e))
			goto failed;
		json_object_set_int_member(d, "request_id", rid);
		json_object_set_string_member(d, "admin", argv[1]);
		if (!kms_audit_append(db, "admin add requested", d, &e) || !kms_db_commit(db, &e))
			goto failed;
	}
	print_request(rid, pending, "adding the administrator");
	rc = KMSCTL_OK;
	goto out;
failed:
	kms_db_rollback(db);
	rc = kmsctl_fail_error(e);
out:
	kms_vault_close(v);
	return rc;
}

static int
admin_remove(KmsCtl *ctl, int argc, char **argv)
{
	g_autoptr(GError) e = NULL;
	KmsAdmin *me = NULL;
	g_autoptr(JsonObject) p = json_object_new();
	KmsVault *v;
	PGconn *db;
	gint64 rid;
	gboolean pending;
	int rc;

	if ((rc = kmsctl_parse(ctl, &argc, &argv, NULL, "NAME",
	    "Remove an administrator (done by kmsd once approved).")) != KMSCTL_OK)
		return rc;
	if (argc != 2) {
		fprintf(stderr, "usage: kmsctl admin remove NAME\n");
		return KMSCTL_USAGE;
	}
	if ((v = kmsctl_connect(ctl)) == NULL)
		return KMSCTL_FAIL;
	db = kms_vault_db(v);
	if (!kmsctl_admin(ctl, v, TRUE, &me)) {
		kms_vault_close(v);
		return KMSCTL_FAIL;
	}
	json_object_set_string_member(p, "name", argv[1]);
	if (!kms_db_begin(db, &e) ||
	    !kmsctl_request(ctl, db, "admin-remove", p, &rid, &pending, &e) ||
	    !kms_db_commit(db, &e)) {
		kms_db_rollback(db);
		rc = kmsctl_fail_error(e);
	} else {
		print_request(rid, pending, "removing the administrator");
		rc = KMSCTL_OK;
	}
	kms_vault_close(v);
	return rc;
}

static int
admin_list(KmsCtl *ctl, int argc, char **argv)
{
	gboolean json = FALSE;
	const GOptionEntry entries[] = {
		{"json", 0, 0, G_OPTION_ARG_NONE, &json, "one JSON document", NULL},
		G_OPTION_ENTRY_NULL
	};
	g_autoptr(GError) e = NULL;
	g_autoptr(PGresult) r = NULL;
	KmsVault *v;
	int rc;

	if ((rc = kmsctl_parse(ctl, &argc, &argv, entries, "", "List the administrators.")) !=
	    KMSCTL_OK)
		return rc;
	if ((v = kmsctl_connect(ctl)) == NULL)
		return KMSCTL_FAIL;
	r = kms_db_run(kms_vault_db(v), "SELECT name, CASE WHEN mac IS NULL THEN 'pending' ELSE"
	    " 'active' END, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
	    " coalesce(created_by, ''), encode(public_key, 'hex') FROM admins ORDER BY id", NULL, &e);
	kms_vault_close(v);
	if (r == NULL)
		return kmsctl_fail_error(e);
	if (json) {
		g_autoptr(JsonBuilder) b = json_builder_new();

		json_builder_begin_array(b);
		for (int i = 0; i < PQntuples(r); i++) {
			json_builder_begin_object(b);
			json_builder_set_member_name(b, "name");
			json_builder_add_string_value(b, PQgetvalue(r, i, 0));
			json_builder_set_member_name(b, "status");
			json_builder_add_string_value(b, PQgetvalue(r, i, 1));
			json_builder_set_member_name(b, "created_at");
			json_builder_add_string_value(b, PQgetvalue(r, i, 2));
			json_builder_set_member_name(b, "created_by");
			json_builder_add_string_value(b, PQgetvalue(r, i, 3));
			json_builder_set_member_name(b, "public_key");
			json_builder_add_string_value(b, PQgetvalue(r, i, 4));
			json_builder_end_object(b);
		}
		json_builder_end_array(b);
		kmsctl_print_json(b);
	} else {
		for (int i = 0; i < PQntuples(r); i++)
			printf("%-20s %-8s %s (by %s)\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
			    PQgetvalue(r, i, 2), PQgetvalue(r, i, 3));
		if (PQntuples(r) == 0)
			printf("no administrators\n");
	}
	return KMSCTL_OK;
}

static int
admin_passwd(KmsCtl *ctl, int argc, char **argv)
{
	g_autofree char *newf = NULL;
	const GOptionEntry entries[] = {
		{"new-password-file", 0, 0, G_OPTION_ARG_FILENAME, &newf,
		 "file holding the new passphrase (else prompt)", "FILE"},
		G_OPTION_ENTRY_NULL
	};
	g_autoptr(GError) e = NULL;
	KmsAdmin *me = NULL;
	g_autoptr(KmsSecret) pw = NULL;
	KmsVault *v;
	PGconn *db;
	int rc;

	if ((rc = kmsctl_parse(ctl, &argc, &argv, entries, "",
	    "Change the acting administrator's passphrase.")) != KMSCTL_OK)
		return rc;
	if ((v = kmsctl_connect(ctl)) == NULL)
		return KMSCTL_FAIL;
	db = kms_vault_db(v);
	if (!kmsctl_admin(ctl, v, TRUE, &me)) {
		kms_vault_close(v);
		return KMSCTL_FAIL;
	}
	if ((pw = kms_password_read(newf, "New passphrase: ", TRUE, &e)) == NULL ||
	    !kms_db_begin(db, &e) ||
	    !kms_admin_passwd(db, me, pw, (guint32)kms_config_get_int(ctl->cfg, "kms", "kdf_passes"),
		(guint32)(kms_config_get_int(ctl->cfg, "kms", "kdf_memory") / 1024), &e) ||
	    !kms_audit_append(db, "admin passphrase changed", NULL, &e) || !kms_db_commit(db, &e)) {
		kms_db_rollback(db);
		rc = kmsctl_fail_error(e);
	} else {
		printf("passphrase of %s changed\n", me->name);
		rc = KMSCTL_OK;
	}
	kms_vault_close(v);
	return rc;
}

int
kmsctl_cmd_admin(KmsCtl *ctl, int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "add") == 0)
		return admin_add(ctl, argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "remove") == 0)
		return admin_remove(ctl, argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "list") == 0)
		return admin_list(ctl, argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "passwd") == 0)
		return admin_passwd(ctl, argc - 1, argv + 1);
	fprintf(stderr, "usage: kmsctl admin add NAME [--password-file F]\n"
	    "       kmsctl admin remove NAME\n"
	    "       kmsctl admin list [--json]\n"
	    "       kmsctl admin passwd [--new-password-file F]\n");
	return KMSCTL_USAGE;
}

/* --- requests list ---------------------------------------------------------- */

int
kmsctl_cmd_requests(KmsCtl *ctl, int argc, char **argv)
{
	gboolean json = FALSE, all = FALSE;
	const GOptionEntry entries[] = {
		{"json", 0, 0, G_OPTION_ARG_NONE, &json, "one JSON document", NULL},
		{"all", 0, 0, G_OPTION_ARG_NONE, &all,
		 "also requests of administrators that no longer wait (last 100)", NULL},
		G_OPTION_ENTRY_NULL
	};
	g_autoptr(GError) e = NULL;
	g_autoptr(PGresult) r = NULL;
	KmsApprovalPolicy pol;
	KmsVault *v;
	int rc;

	if (argc < 2 || strcmp(argv[1], "list") != 0) {
		fprintf(stderr, "usage: kmsctl requests list [--all] [--json]\n");
		return KMSCTL_USAGE;
	}
	argc--, argv++;
	if ((rc = kmsctl_parse(ctl, &argc, &argv, entries, "",
	    "Requests waiting for approvals, with who approved and who may still.")) != KMSCTL_OK)
		return rc;
	if ((v = kmsctl_connect(ctl)) == NULL)
		return KMSCTL_FAIL;
	if (!kms_approval_policy_read(kms_vault_db(v), &pol, &e)) {
		kms_vault_close(v);
		return kmsctl_fail_error(e);
	}
	r = kms_db_run(kms_vault_db(v), all ?
	    "SELECT r.id, r.kind, r.status, coalesce(r.requester, ''), r.payload::text,"
	    " to_char(r.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
	    " coalesce((SELECT string_agg(a.admin_name, ',' ORDER BY a.at) FROM approvals a"
	    "  WHERE a.request_id = r.id AND a.decision = 'approve'), ''),"
	    " coalesce((SELECT string_agg(a.admin_name, ',' ORDER BY a.at) FROM approvals a"
	    "  WHERE a.request_id = r.id AND a.decision = 'reject'), ''), coalesce(r.last_error, '')"
	    " FROM requests r WHERE r.requested_by IS NOT NULL OR r.status = 'awaiting-approval'"
	    " ORDER BY r.id DESC LIMIT 100" :
	    "SELECT r.id, r.kind, r.status, coalesce(r.requester, ''), r.payload::text,"
	    " to_char(r.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
	    " coalesce((SELECT string_agg(a.admin_name, ',' ORDER BY a.at) FROM approvals a"
	    "  WHERE a.request_id = r.id AND a.decision = 'approve'), ''),"
	    " coalesce((SELECT string_agg(a.admin_name, ',' ORDER BY a.at) FROM approvals a"
	    "  WHERE a.request_id = r.id AND a.decision = 'reject'), ''), coalesce(r.last_error, '')"
	    " FROM requests r WHERE r.status = 'awaiting-approval' ORDER BY r.id", NULL, &e);
	kms_vault_close(v);
	if (r == NULL)
		return kmsctl_fail_error(e);
	if (json) {
		g_autoptr(JsonBuilder) b = json_builder_new();

		json_builder_begin_array(b);
		for (int i = 0; i < PQntuples(r); i++) {
			int op = kms_operation_of_kind(PQgetvalue(r, i, 1));
			g_auto(GStrv) ok = g_strsplit(PQgetvalue(r, i, 6), ",", -1);
			g_autoptr(JsonParser) jp = json_parser_new();

			json_builder_begin_object(b);
			json_builder_set_member_name(b, "id");
			json_builder_add_int_value(b, kms_db_get_int(r, i, 0));
			json_builder_set_member_name(b, "kind");
			json_builder_add_string_value(b, PQgetvalue(r, i, 1));
			json_builder_set_member_name(b, "status");
			json_builder_add_string_value(b, PQgetvalue(r, i, 2));
			json_builder_set_member_name(b, "requester");
			json_builder_add_string_value(b, PQgetvalue(r, i, 3));
			json_builder_set_member_name(b, "expires_at");
			json_builder_add_string_value(b, PQgetvalue(r, i, 5));
			json_builder_set_member_name(b, "needed");
			json_builder_add_int_value(b, op >= 0 && pol.need[op] >= 2 ? pol.need[op] : 0);
			json_builder_set_member_name(b, "approved_by");
			json_builder_begin_array(b);
			for (char **s = ok; *s; s++)
				if (**s)
					json_builder_add_string_value(b, *s);
			json_builder_end_array(b);
			json_builder_set_member_name(b, "rejected_by");
			json_builder_add_string_value(b, PQgetvalue(r, i, 7));
			json_builder_set_member_name(b, "detail");
			json_builder_add_string_value(b, PQgetvalue(r, i, 8));
			if (json_parser_load_from_data(jp, PQgetvalue(r, i, 4), -1, NULL)) {
				json_builder_set_member_name(b, "payload");
				json_builder_add_value(b, json_node_copy(json_parser_get_root(jp)));
			}
			json_builder_end_object(b);
		}
		json_builder_end_array(b);
		kmsctl_print_json(b);
		return KMSCTL_OK;
	}
	if (PQntuples(r) == 0)
		printf("no request waits for approval\n");
	for (int i = 0; i < PQntuples(r); i++) {
		int op = kms_operation_of_kind(PQgetvalue(r, i, 1));

		printf("%" G_GINT64_FORMAT "  %s  %s  by %s  %s  approvals %s (%d needed)%s%s  expires %s\n",
		    kms_db_get_int(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2),
		    PQgetvalue(r, i, 3), PQgetvalue(r, i, 4),
		    *PQgetvalue(r, i, 6) ? PQgetvalue(r, i, 6) : "none",
		    op >= 0 && pol.need[op] >= 2 ? pol.need[op] : 0,
		    *PQgetvalue(r, i, 7) ? "  rejected by " : "", PQgetvalue(r, i, 7),
		    PQgetvalue(r, i, 5));
	}
	return KMSCTL_OK;
}

/* --- approve / reject -------------------------------------------------------- */

static int
vote(KmsCtl *ctl, int argc, char **argv, const char *decision)
{
	g_autofree char *comment = NULL;
	const GOptionEntry entries[] = {
		{"comment", 0, 0, G_OPTION_ARG_STRING, &comment, "why (kept with the vote)", "TEXT"},
		G_OPTION_ENTRY_NULL
	};
	gboolean approve = strcmp(decision, "approve") == 0;
	g_autoptr(GError) e = NULL;
	KmsAdmin *me = NULL;
	g_autoptr(PGresult) r = NULL, n = NULL;
	KmsDbParams q = KMS_DB_PARAMS_INIT;
	KmsApprovalPolicy pol;
	guint8 digest[KMS_ADMIN_DIGEST_LEN], vd[KMS_ADMIN_DIGEST_LEN], sig[KMS_ADMIN_SIG_LEN];
	KmsVault *v;
	PGconn *db;
	gint64 id;
	char *end;
	int rc, op;

	if ((rc = kmsctl_parse(ctl, &argc, &argv, entries, "ID", approve ?
	    "Approve a request waiting for approvals." :
	    "Reject a request: it ends at once.")) != KMSCTL_OK)
		return rc;
	if (argc != 2 || (id = g_ascii_strtoll(argv[1], &end, 10)) <= 0 || *end != '\0') {
		fprintf(stderr, "usage: kmsctl %s ID [--comment TEXT]\n", argv[0]);
		return KMSCTL_USAGE;
	}
	if ((v = kmsctl_connect(ctl)) == NULL)
		return KMSCTL_FAIL;
	db = kms_vault_db(v);
	if (!kmsctl_admin(ctl, v, TRUE, &me)) {
		rc = KMSCTL_FAIL;
		goto out;
	}
	kms_db_param_int(&q, id);
	kms_db_param_int(&q, me->id);
	if (!kms_db_begin(db, &e) || !kms_approval_policy_read(db, &pol, &e) ||
	    (r = kms_db_run(db, "SELECT kind, status, coalesce(requested_by, 0), expires_at <= now(),"
		" (SELECT decision FROM approvals WHERE request_id = $1 AND admin_id = $2),"
		" coalesce(requester, '') FROM requests WHERE id = $1 FOR UPDATE", &q, &e)) == NULL)
		goto failed;
	if (PQntuples(r) == 0) {
		kms_db_rollback(db);
		rc = kmsctl_fail("no request %" G_GINT64_FORMAT, id);
		goto out;
	}
	if (strcmp(PQgetvalue(r, 0, 1), "awaiting-approval") != 0) {
		const char *st = PQgetvalue(r, 0, 1);

		kms_db_rollback(db);
		rc = kmsctl_fail("request %" G_GINT64_FORMAT " %s", id,
		    strcmp(st, "rejected") == 0 ? "was rejected: it cannot be approved any more" :
		    strcmp(st, "expired") == 0 ? "expired before it was approved" :
		    "does not wait for approvals");
		goto out;
	}
	if (strcmp(PQgetvalue(r, 0, 3), "t") == 0) {
		kms_db_rollback(db);
		rc = kmsctl_fail("request %" G_GINT64_FORMAT " expired before it was approved", id);
		goto out;
	}
	if (kms_db_get_int(r, 0, 2) == me->id) {
		kms_db_rollback(db);
		rc = kmsctl_fail("request %" G_GINT64_FORMAT " is your own: another administrator"
		    " must %s it", id, decision);
		goto out;
	}
	if (!PQgetisnull(r, 0, 4)) {
		kms_db_rollback(db);
		rc = kmsctl_fail("you have already %s request %" G_GINT64_FORMAT,
		    strcmp(PQgetvalue(r, 0, 4), "approve") == 0 ? "approved" : "rejected", id);
		goto out;
	}
	if (!kms_request_digest(db, id, digest, &e))
		goto failed;
	kms_vote_digest(digest, decision, me->id, vd);
	if (!kms_admin_sign(me, vd, sig, &e))
		goto failed;
	kms_db_params_clear(&q);
	kms_db_param_int(&q, id);
	kms_db_param_int(&q, me->id);
	kms_db_param_text(&q, me->name);
	kms_db_param_text(&q, decision);
	kms_db_param_text(&q, comment);
	kms_db_param_bytes(&q, sig, sizeof(sig));
	if (!kms_db_exec(db, "INSERT INTO approvals (request_id, admin_id, admin_name, decision,"
	    " comment, signature) VALUES ($1, $2, $3, $4, $5, $6)", &q, &e))
		goto failed;
	{
		g_autoptr(JsonObject) d = json_object_new();

		json_object_set_int_member(d, "request_id", id);
		json_object_set_string_member(d, "kind", PQgetvalue(r, 0, 0));
		if (!kms_audit_append(db, approve ? "request approval" : "request rejection", d, &e))
			goto failed;
	}
	kms_db_params_clear(&q);
	kms_db_param_int(&q, id);
	if ((n = kms_db_run(db, "SELECT count(*) FROM approvals WHERE request_id = $1 AND"
	    " decision = 'approve'", &q, &e)) == NULL || !kms_db_exec(db, "NOTIFY kms_requests",
	    NULL, &e) || !kms_db_commit(db, &e))
		goto failed;
	op = kms_operation_of_kind(PQgetvalue(r, 0, 0));
	if (approve)
		printf("approved request %" G_GINT64_FORMAT " (%s by %s): %s of %d approvals\n", id,
		    PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 5), PQgetvalue(n, 0, 0),
		    op >= 0 ? pol.need[op] : 0);
	else
		printf("rejected request %" G_GINT64_FORMAT " (%s by %s)\n", id, PQgetvalue(r, 0, 0),
		    PQgetvalue(r, 0, 5));
	rc = KMSCTL_OK;
	goto out;
failed:
	kms_db_rollback(db);
	rc = kmsctl_fail_error(e);
out:
	kms_vault_close(v);
	return rc;
}

int
kmsctl_cmd_approve(KmsCtl *ctl, int argc, char **argv)
{
	return vote(ctl, argc, argv, "approve");
}

int
kmsctl_cmd_reject(KmsCtl *ctl, int argc, char **argv)
{
	return vote(ctl, argc, argv, "reject");
}

/* --- policy approvals show|set -------------------------------------------- */

int
kmsctl_cmd_approvals(KmsCtl *ctl, int argc, char **argv)
{
	gboolean json = FALSE;
	const GOptionEntry entries[] = {
		{"json", 0, 0, G_OPTION_ARG_NONE, &json, "one JSON document", NULL},
		G_OPTION_ENTRY_NULL
	};
	gboolean set = argc >= 2 && strcmp(argv[1], "set") == 0;
	g_autoptr(GError) e = NULL;
	KmsAdmin *me = NULL;
	g_autofree char *counts = NULL;
	KmsApprovalPolicy pol;
	KmsVault *v;
	PGconn *db;
	int rc;

	if (argc < 2 || (!set && strcmp(argv[1], "show") != 0)) {
		fprintf(stderr, "usage: kmsctl policy approvals show [--json]\n"
		    "       kmsctl policy approvals set OPERATION=COUNT ...  (recover, export, import,"
		    " admin-change; 1 to 9)\n");
		return KMSCTL_USAGE;
	}
	argc--, argv++;
	if ((rc = kmsctl_parse(ctl, &argc, &argv, set ? NULL : entries, set ? "OPERATION=COUNT..." : "",
	    "Approvals each operation needs (2 or more: that many other administrators).")) !=
	    KMSCTL_OK)
		return rc;
	if (set && argc < 2) {
		fprintf(stderr, "usage: kmsctl policy approvals set OPERATION=COUNT ...\n");
		return KMSCTL_USAGE;
	}
	if ((v = kmsctl_connect(ctl)) == NULL)
		return KMSCTL_FAIL;
	db = kms_vault_db(v);
	if (!kms_approval_policy_read(db, &pol, &e)) {
		rc = kmsctl_fail_error(e);
		goto out;
	}
	if (!set) {
		if (json) {
			g_autoptr(JsonBuilder) b = json_builder_new();

			json_builder_begin_object(b);
			for (int i = 0; i < KMS_OP_COUNT; i++) {
				json_builder_set_member_name(b, kms_operation_names[i]);
				json_builder_add_int_value(b, pol.need[i]);
			}
			json_builder_end_object(b);
			kmsctl_print_json(b);
		} else
			for (int i = 0; i < KMS_OP_COUNT; i++)
				printf("%-13s %d\n", kms_operation_names[i], pol.need[i]);
		rc = KMSCTL_OK;
		goto out;
	}
	{
		g_autofree char *joined = g_strjoinv(",", argv + 1);
		g_autoptr(JsonObject) p = json_object_new();
		gint64 rid;
		gboolean pending;

		if (!kms_approval_policy_parse(&pol, joined, &e)) {
			kms_vault_close(v);
			fprintf(stderr, "kmsctl policy approvals set: %s\n", e->message);
			return KMSCTL_USAGE;
		}
		if (!kmsctl_admin(ctl, v, TRUE, &me)) {
			rc = KMSCTL_FAIL;
			goto out;
		}
		counts = kms_approval_policy_format(&pol);
		json_object_set_string_member(p, "counts", counts);
		if (!kms_db_begin(db, &e) ||
		    !kmsctl_request(ctl, db, "approvals-set", p, &rid, &pending, &e) ||
		    !kms_db_commit(db, &e)) {
			kms_db_rollback(db);
			rc = kmsctl_fail_error(e);
			goto out;
		}
		print_request(rid, pending, counts);
		rc = KMSCTL_OK;
	}
out:
	kms_vault_close(v);
	return rc;
}

/* --- recover under approvals ------------------------------------------------ */

int
kmsctl_recover_gated(KmsCtl *ctl, KmsVault *v, GPtrArray *addrs, const char *deliver,
    gboolean json)
{
	g_autoptr(GError) e = NULL;
	KmsAdmin *me = NULL;
	g_autoptr(JsonBuilder) b = NULL;
	KmsApprovalPolicy pol;
	PGconn *db = kms_vault_db(v);
	int failed = 0;

	if (!kms_approval_policy_read(db, &pol, &e))
		return kmsctl_fail_error(e);
	if (pol.need[KMS_OP_RECOVER] < 2)
		return -1;
	if (deliver && strcmp(deliver, "mail") != 0)
		return kmsctl_fail("recovery needs %d approvals here: the token goes by mail once"
		    " approved (--deliver out-of-band is not available)", pol.need[KMS_OP_RECOVER]);
	if (!kmsctl_admin(ctl, v, TRUE, &me))
		return KMSCTL_FAIL;
	if (json) {
		b = json_builder_new();
		json_builder_begin_array(b);
	}
	for (guint i = 0; i < addrs->len; i++) {
		const char *addr = g_ptr_array_index(addrs, i);
		g_autoptr(GError) ae = NULL;
		g_autoptr(JsonObject) p = json_object_new();
		g_autoptr(JsonObject) d = json_object_new();
		gint64 rid;
		gboolean pending, ok;

		json_object_set_string_member(p, "address", addr);
		json_object_set_string_member(d, "address", addr);
		ok = kms_db_begin(db, &ae) && kms_enroll_can_recover(db, addr, &ae) &&
		    kmsctl_request(ctl, db, "recover-start", p, &rid, &pending, &ae);
		if (ok) {
			json_object_set_int_member(d, "request_id", rid);
			ok = kms_audit_append(db, "recovery requested", d, &ae) && kms_db_commit(db, &ae);
		}
		if (!ok) {
			kms_db_rollback(db);
			failed++;
			fprintf(stderr, "kmsctl: %s: %s\n", addr, ae ? ae->message : "failed");
			continue;
		}
		if (json) {
			json_builder_begin_object(b);
			json_builder_set_member_name(b, "address");
			json_builder_add_string_value(b, addr);
			json_builder_set_member_name(b, "request");
			json_builder_add_int_value(b, rid);
			json_builder_end_object(b);
		} else {
			printf("%s\n", addr);
			print_request(rid, pending, "the recovery");
		}
	}
	if (json) {
		json_builder_end_array(b);
		kmsctl_print_json(b);
	}
	return failed ? KMSCTL_FAIL : KMSCTL_OK;
}
