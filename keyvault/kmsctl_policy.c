/*
 * NAME
 *	kmsctl policy, kmsctl negotiate - encryption policy and what it
 *	decides for a message
 * SYNOPSIS
 *	kmsctl policy show [--domain D | --user ADDR] [--json]
 *	kmsctl policy set --domain D | --user ADDR KEY=VALUE ...
 *	kmsctl policy unset --domain D | --user ADDR KEY ...
 *	kmsctl negotiate [--from S] --rcpt A [--rcpt B ...] [--json]
 * DESCRIPTION
 *	policy show prints the effective value of every key and where it
 *	comes from (config, domain, user); without --domain/--user also the
 *	overrides stored in the vault. policy set stores overrides, all or
 *	nothing, each checked as the configuration file is; KEY= (empty)
 *	removes the override, as unset does.
 *
 *	negotiate looks up every recipient's encryption certificate and
 *	capabilities (recipients.h) and runs the negotiation (negotiate.h)
 *	under the sender's policy (policy.h), without sending anything.
 *	With --from the sender's own certificate, when there is one, is a
 *	recipient too (marked "sender": the gateway encrypts to it so the
 *	sender can read what was sent); a sender without one is noted,
 *	not an error.
 * SECURITY
 *	Public data and administrator settings only.
 * DIAGNOSTICS
 *	Exit 1 naming the recipients without a usable certificate, or the
 *	recipients that block every allowed algorithm; 2 on usage errors.
 */
#include "autoconfig.h"
#include "kmsctl.h"

#include <stdio.h>
#include <string.h>

#include "keyvault/audit.h"
#include "keyvault/db.h"
#include "keyvault/outbound.h"
#include "keyvault/policy.h"

/* --domain/--user: exactly one or none (ALLOW_GLOBAL). */
static int
scope_of(const char *cmd, const char *domain, const char *user, gboolean allow_global)
{
	if (domain && user) {
		fprintf(stderr, "kmsctl policy %s: --domain and --user exclude each other\n", cmd);
		return KMSCTL_USAGE;
	}
	if (!allow_global && !domain && !user) {
		fprintf(stderr, "kmsctl policy %s: the global policy is [policy] in the configuration"
		    " file; give --domain D or --user ADDR\n", cmd);
		return KMSCTL_USAGE;
	}
	return KMSCTL_OK;
}

static void
member_text(JsonBuilder *b, const char *name, const char *v)
{
	json_builder_set_member_name(b, name);
	if (v)
		json_builder_add_string_value(b, v);
	else
		json_builder_add_null_value(b);
}

/* "domain example.org" / "user a@b" / "config". g_free. */
static char *
origin_text(const KmsPolicy *p, KmsPolicyKey k)
{
	switch (p->source[k]) {
	case KMS_POLICY_FROM_DOMAIN:
		return g_strdup_printf("domain %s", p->domain);
	case KMS_POLICY_FROM_USER:
		return g_strdup_printf("user %s", p->address);
	default:
		return g_strdup("config");
	}
}

static int
policy_show(KmsCtl *ctl, int argc, char **argv)
{
	g_autofree char *domain = NULL, *user = NULL;
	gboolean json = FALSE;
	const GOptionEntry entries[] = {
		{"domain", 0, 0, G_OPTION_ARG_STRING, &domain, "the policy of this domain", "D"},
		{"user", 0, 0, G_OPTION_ARG_STRING, &user, "the policy of this address", "ADDR"},
		{"json", 0, 0, G_OPTION_ARG_NONE, &json, "one JSON document on stdout", NULL},
		G_OPTION_ENTRY_NULL
	};
	g_autoptr(GError) e = NULL;
	g_autoptr(KmsPolicy) p = NULL;
	g_autoptr(PGresult) ov = NULL;
	KmsVault *v;
	int rc;

	if ((rc = kmsctl_parse(ctl, &argc, &argv, entries, "",
	    "Show the effective encryption policy and where each value comes from.")) != KMSCTL_OK)
		return rc;
	if (argc > 1) {
		fprintf(stderr, "kmsctl policy show: unexpected argument '%s'\n", argv[1]);
		return KMSCTL_USAGE;
	}
	if ((rc = scope_of("show", domain, user, TRUE)) != KMSCTL_OK)
		return rc;
	if ((v = kmsctl_connect(ctl)) == NULL)
		return KMSCTL_FAIL;
	p = kms_policy_resolve(kms_vault_db(v), ctl->cfg, domain, user, &e);
	if (p && !domain && !user)
		ov = kms_db_run(kms_vault_db(v), "SELECT scope, name, key, value, to_char(changed_at"
		    " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM policy"
		    " ORDER BY scope, name, key", NULL, &e);
	kms_vault_close(v);
	if (p == NULL || (!domain && !user && ov == NULL))
		return kmsctl_fail_error(e);

	if (json) {
		g_autoptr(JsonBuilder) b = json_builder_new();

		json_builder_begin_object(b);
		member_text(b, "scope", user ? "user" : domain ? "domain" : "global");
		member_text(b, "name", user ? p->address : p->domain);
		json_builder_set_member_name(b, "policy");
		json_builder_begin_object(b);
		for (int k = 0; k < KMS_POLICY_N_KEYS; k++) {
			json_builder_set_member_name(b, kms_policy_key_name(k));
			json_builder_begin_object(b);
			member_text(b, "value", p->value[k]);
			member_text(b, "source", kms_policy_source_name(p->source[k]));
			json_builder_end_object(b);
		}
		json_builder_end_object(b);
		if (ov) {
			json_builder_set_member_name(b, "overrides");
			json_builder_begin_array(b);
			for (int i = 0; i < PQntuples(ov); i++) {
				json_builder_begin_object(b);
				member_text(b, "scope", PQgetvalue(ov, i, 0));
				member_text(b, "name", PQgetvalue(ov, i, 1));
				member_text(b, "key", PQgetvalue(ov, i, 2));
				member_text(b, "value", PQgetvalue(ov, i, 3));
				member_text(b, "changed_at", PQgetvalue(ov, i, 4));
				json_builder_end_object(b);
			}
			json_builder_end_array(b);
		}
		json_builder_end_object(b);
		kmsctl_print_json(b);
		return KMSCTL_OK;
	}
	if (user)
		printf("policy for user %s\n", p->address);
	else if (domain)
		printf("policy for domain %s\n", p->domain);
	else
		printf("global policy ([policy] in %s)\n", kms_config_path(ctl->cfg));
	for (int k = 0; k < KMS_POLICY_N_KEYS; k++) {
		g_autofree char *o = origin_text(p, k);

		printf("  %-21s %-40s (%s)\n", kms_policy_key_name(k), p->value[k], o);
	}
	if (ov) {
		printf("overrides in the vault:%s\n", PQntuples(ov) ? "" : " none");
		for (int i = 0; i < PQntuples(ov); i++)
			printf("  %s %s: %s = %s (%s)\n", PQgetvalue(ov, i, 0), PQgetvalue(ov, i, 1),
			    PQgetvalue(ov, i, 2), PQgetvalue(ov, i, 3), PQgetvalue(ov, i, 4));
	}
	return KMSCTL_OK;
}

/* set (UNSET FALSE: KEY=VALUE arguments) and unset (KEY arguments). */
static int
policy_change(KmsCtl *ctl, int argc, char **argv, gboolean unset)
{
	const char *cmd = unset ? "unset" : "set";
	g_autofree char *domain = NULL, *user = NULL;
	const GOptionEntry entries[] = {
		{"domain", 0, 0, G_OPTION_ARG_STRING, &domain, "override for this domain", "D"},
		{"user", 0, 0, G_OPTION_ARG_STRING, &user, "override for this address", "ADDR"},
		G_OPTION_ENTRY_NULL
	};
	g_autoptr(GError) e = NULL;
	g_autoptr(GPtrArray) keys = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GPtrArray) values = g_ptr_array_new_with_free_func(g_free);
	g_autofree char *name = NULL;
	const char *scope;
	KmsVault *v;
	PGconn *db;
	int rc;

	if ((rc = kmsctl_parse(ctl, &argc, &argv, entries, unset ? "KEY ..." : "KEY=VALUE ...",
	    unset ? "Remove domain or user policy overrides." :
	    "Set domain or user policy overrides (KEY= removes one).")) != KMSCTL_OK)
		return rc;
	if ((rc = scope_of(cmd, domain, user, FALSE)) != KMSCTL_OK)
		return rc;
	if (argc < 2) {
		fprintf(stderr, "usage: kmsctl policy %s --domain D | --user ADDR %s\n", cmd,
		    unset ? "KEY ..." : "KEY=VALUE ...");
		return KMSCTL_USAGE;
	}
	scope = domain ? "domain" : "user";
	if ((name = kms_policy_scope_name(domain ? domain : user, domain != NULL, &e)) == NULL)
		return kmsctl_fail_error(e);
	/* check everything before touching the vault */
	for (int i = 1; i < argc; i++) {
		const char *eq = strchr(argv[i], '=');
		g_autofree char *key = eq ? g_strndup(argv[i], (gsize)(eq - argv[i])) : g_strdup(argv[i]);
		g_autofree char *canon = NULL;

		if (unset ? eq != NULL : eq == NULL) {
			fprintf(stderr, "kmsctl policy %s: expected %s, not '%s'\n", cmd,
			    unset ? "KEY" : "KEY=VALUE", argv[i]);
			return KMSCTL_USAGE;
		}
		if (!unset && eq[1] != '\0' && !kms_policy_check(key, eq + 1, &canon, &e))
			return kmsctl_fail_error(e);
		if ((unset || eq[1] == '\0') && !kms_policy_check(key, "none", &canon, &e) &&
		    e->code == KMS_POLICY_ERROR_KEY)
			return kmsctl_fail_error(e);
		g_clear_error(&e);
		g_ptr_array_add(keys, g_steal_pointer(&key));
		g_ptr_array_add(values, unset ? NULL : g_strdup(eq + 1));
	}
	if ((v = kmsctl_connect(ctl)) == NULL)
		return KMSCTL_FAIL;
	db = kms_vault_db(v);
	if (!kms_db_begin(db, &e)) {
		kms_vault_close(v);
		return kmsctl_fail_error(e);
	}
	{
		/* gated by policy-change (admin.h): kmsd makes the change once approved */
		KmsApprovalPolicy pol;

		if (!kms_approval_policy_read(db, &pol, &e)) {
			kms_db_rollback(db);
			kms_vault_close(v);
			return kmsctl_fail_error(e);
		}
		if (pol.need[KMS_OP_POLICY_CHANGE] >= 2) {
			g_autoptr(JsonObject) pl = json_object_new();
			g_autoptr(JsonArray) ka = json_array_new();
			g_autoptr(JsonArray) va = json_array_new();
			gint64 rid;
			gboolean pending;

			for (guint i = 0; i < keys->len; i++) {
				const char *val = g_ptr_array_index(values, i);

				json_array_add_string_element(ka, g_ptr_array_index(keys, i));
				if (val)
					json_array_add_string_element(va, val);
				else
					json_array_add_null_element(va);
			}
			json_object_set_string_member(pl, "scope", scope);
			json_object_set_string_member(pl, "name", name);
			json_object_set_array_member(pl, "keys", json_array_ref(ka));
			json_object_set_array_member(pl, "values", json_array_ref(va));
			if (!kmsctl_request(ctl, db, "policy-set", pl, &rid, &pending, &e) ||
			    !kms_db_commit(db, &e)) {
				kms_db_rollback(db);
				kms_vault_close(v);
				return kmsctl_fail_error(e);
			}
			kms_vault_close(v);
			printf("Request: %" G_GINT64_FORMAT "\nthe policy change waits for approvals"
			    " (kmsctl approve %" G_GINT64_FORMAT ")\n", rid, rid);
			return KMSCTL_OK;
		}
	}
	for (guint i = 0; i < keys->len; i++) {
		gboolean removed;

		if (!kms_policy_set(db, scope, name, g_ptr_array_index(keys, i),
		    g_ptr_array_index(values, i), &removed, &e)) {
			kms_db_rollback(db);
			kms_vault_close(v);
			return kmsctl_fail_error(e);
		}
	}
	{
		g_autoptr(JsonObject) d = json_object_new();
		g_autoptr(JsonObject) kv = json_object_new();

		for (guint i = 0; i < keys->len; i++)
			json_object_set_string_member(kv, g_ptr_array_index(keys, i),
			    g_ptr_array_index(values, i));
		json_object_set_string_member(d, "scope", scope);
		json_object_set_string_member(d, "name", name);
		json_object_set_object_member(d, "values", json_object_ref(kv));
		if (!kms_audit_append(db, unset ? "policy unset" : "policy set", d, &e)) {
			kms_db_rollback(db);
			kms_vault_close(v);
			return kmsctl_fail_error(e);
		}
	}
	if (!kms_db_commit(db, &e)) {
		kms_vault_close(v);
		return kmsctl_fail_error(e);
	}
	kms_vault_close(v);
	for (guint i = 0; i < keys->len; i++) {
		const char *val = g_ptr_array_index(values, i);
		g_autofree char *canon = NULL;

		if (val && *val && kms_policy_check(g_ptr_array_index(keys, i), val, &canon, NULL))
			printf("%s %s: %s = %s\n", scope, name, (char *)g_ptr_array_index(keys, i), canon);
		else
			printf("%s %s: %s override removed\n", scope, name,
			    (char *)g_ptr_array_index(keys, i));
	}
	return KMSCTL_OK;
}

int
kmsctl_cmd_policy(KmsCtl *ctl, int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "show") == 0)
		return policy_show(ctl, argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "set") == 0)
		return policy_change(ctl, argc - 1, argv + 1, FALSE);
	if (argc >= 2 && strcmp(argv[1], "unset") == 0)
		return policy_change(ctl, argc - 1, argv + 1, TRUE);
	if (argc >= 2 && strcmp(argv[1], "approvals") == 0)
		return kmsctl_cmd_approvals(ctl, argc - 1, argv + 1);
	fprintf(stderr, "usage: kmsctl policy show [--domain D | --user ADDR] [--json]\n"
	    "       kmsctl policy set --domain D | --user ADDR KEY=VALUE ...\n"
	    "       kmsctl policy unset --domain D | --user ADDR KEY ...\n"
	    "       kmsctl policy approvals show [--json] | set OPERATION=COUNT ...\n");
	return KMSCTL_USAGE;
}

/* --- negotiate --------------------------------------------------------------- */

static gboolean
same_address(const char *a, const char *b)
{
	return g_ascii_strcasecmp(a, b) == 0;
}

static void
print_result(const KmsNegotiateResult *res, const char *from, const char *sender_sha,
    KmsEncryptLevel level, gboolean json)
{
	if (json) {
		g_autoptr(JsonBuilder) b = json_builder_new();

		json_builder_begin_object(b);
		member_text(b, "algorithm", res->algorithm);
		member_text(b, "content_type", res->authenveloped ? "authEnveloped-data" :
		    "enveloped-data");
		member_text(b, "encrypt", kms_policy_encrypt_name(level));
		json_builder_set_member_name(b, "recipients");
		json_builder_begin_array(b);
		for (guint i = 0; i < res->recipients->len; i++) {
			KmsNegotiateChoice *c = g_ptr_array_index(res->recipients, i);

			json_builder_begin_object(b);
			member_text(b, "address", c->address);
			member_text(b, "certificate", c->certificate);
			member_text(b, "key_transport", c->key_transport);
			if (c->oaep_hash)
				member_text(b, "oaep_hash", c->oaep_hash);
			member_text(b, "capabilities_source", c->capabilities_source);
			json_builder_set_member_name(b, "assumed");
			json_builder_add_boolean_value(b, c->assumed);
			json_builder_set_member_name(b, "sender");
			json_builder_add_boolean_value(b, from != NULL && same_address(c->address, from));
			json_builder_end_object(b);
		}
		json_builder_end_array(b);
		if (from) {
			json_builder_set_member_name(b, "sender");
			json_builder_begin_object(b);
			member_text(b, "address", from);
			member_text(b, "certificate", sender_sha);
			json_builder_end_object(b);
		}
		member_text(b, "reason", res->reason);
		json_builder_end_object(b);
		kmsctl_print_json(b);
		return;
	}
	printf("algorithm: %s (%s)\n", res->algorithm, res->authenveloped ? "authEnveloped-data" :
	    "enveloped-data");
	printf("encrypt policy for this message: %s\n", kms_policy_encrypt_name(level));
	for (guint i = 0; i < res->recipients->len; i++) {
		KmsNegotiateChoice *c = g_ptr_array_index(res->recipients, i);

		printf("  %s%s: certificate %s, %s%s%s, capabilities %s%s\n", c->address,
		    from && same_address(c->address, from) ? " (sender)" : "",
		    c->certificate ? c->certificate : "-", c->key_transport,
		    c->oaep_hash ? " " : "", c->oaep_hash ? c->oaep_hash : "",
		    c->capabilities_source, c->assumed ? " (assumed)" : "");
	}
	if (from && sender_sha == NULL)
		printf("sender %s has no usable encryption certificate: not encrypted to the sender\n",
		    from);
	printf("reason: %s\n", res->reason);
}

int
kmsctl_cmd_negotiate(KmsCtl *ctl, int argc, char **argv)
{
	g_autofree char *from = NULL;
	g_auto(GStrv) rcpts = NULL;
	gboolean json = FALSE;
	const GOptionEntry entries[] = {
		{"from", 0, 0, G_OPTION_ARG_STRING, &from,
		 "the sender (its policy applies; its own certificate is a recipient too)", "S"},
		{"rcpt", 0, 0, G_OPTION_ARG_STRING_ARRAY, &rcpts, "a recipient (repeat)", "A"},
		{"json", 0, 0, G_OPTION_ARG_NONE, &json, "one JSON document on stdout", NULL},
		G_OPTION_ENTRY_NULL
	};
	g_autoptr(GError) e = NULL;
	g_autoptr(KmsOutbound) o = NULL;
	g_autoptr(KmsNegotiateResult) res = NULL;
	g_autoptr(GPtrArray) blockers = NULL;
	KmsVault *v;
	int rc;

	if ((rc = kmsctl_parse(ctl, &argc, &argv, entries, "",
	    "Show how a message to these recipients would be encrypted (nothing is sent).")) !=
	    KMSCTL_OK)
		return rc;
	if (argc > 1 || rcpts == NULL || rcpts[0] == NULL) {
		if (argc > 1)
			fprintf(stderr, "kmsctl negotiate: unexpected argument '%s'\n", argv[1]);
		fprintf(stderr, "usage: kmsctl negotiate [--from S] --rcpt A [--rcpt B ...] [--json]\n");
		return KMSCTL_USAGE;
	}
	if ((v = kmsctl_connect(ctl)) == NULL)
		return KMSCTL_FAIL;
	o = kms_outbound_policies(kms_vault_db(v), ctl->cfg, from, (const char *const *)rcpts,
	    g_strv_length(rcpts), &e);
	if (o == NULL || !kms_outbound_certificates(kms_vault_db(v), o, &e))
		goto failed;
	kms_vault_close(v);
	v = NULL;
	if (o->missing->len) {
		g_autofree char *list = NULL;

		g_ptr_array_add(o->missing, NULL);
		list = g_strjoinv(", ", (char **)o->missing->pdata);
		return kmsctl_fail("no usable encryption certificate for %s", list);
	}
	res = kms_outbound_negotiate(o, TRUE, &blockers, &e);
	if (res == NULL)
		return kmsctl_fail_error(e);
	print_result(res, from, kms_outbound_sender_sha(o), kms_outbound_level(o, FALSE), json);
	return KMSCTL_OK;
failed:
	kms_vault_close(v);
	return kmsctl_fail_error(e);
}
