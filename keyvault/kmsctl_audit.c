/*
 * NAME
 *	kmsctl audit - list and verify the audit log
 * SYNOPSIS
 *	kmsctl audit list [--since TIME] [--json]
 *	kmsctl audit verify [--password-file F]
 * DESCRIPTION
 *	list prints the entries, oldest first. verify recomputes every hash
 *	and chain link (audit.h); with the startup password (a file, or a
 *	prompt on a terminal) it also checks every MAC. Exit 0 when intact,
 *	1 naming the first bad entry.
 * SECURITY
 *	Read-only. The startup password only unwraps the vault key, from
 *	which the audit key is derived; both are wiped on exit.
 * DIAGNOSTICS
 *	"entry N: WHAT" on stderr for a broken log; exit 1.
 */
#include "autoconfig.h"
#include "kmsctl.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "keyvault/audit.h"

static int
audit_list(KmsCtl *ctl, int argc, char **argv)
{
	g_autofree char *since = NULL;
	gboolean json = FALSE;
	const GOptionEntry entries[] = {
		{"since", 0, 0, G_OPTION_ARG_STRING, &since,
		 "only entries at or after TIME: a timestamp (2025-01-31, '2025-01-31 12:00+00')"
		 " or a span back from now ('1 hour', '2 days')", "TIME"},
		{"json", 0, 0, G_OPTION_ARG_NONE, &json, "one JSON array on stdout", NULL},
		G_OPTION_ENTRY_NULL
	};
	g_autoptr(GError) e = NULL;
	g_autoptr(PGresult) r = NULL;
	g_autoptr(JsonBuilder) b = NULL;
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	KmsVault *v;
	int rc;

	if ((rc = kmsctl_parse(ctl, &argc, &argv, entries, "",
	    "List the audit log, oldest entry first.")) != KMSCTL_OK)
		return rc;
	if (argc > 1) {
		fprintf(stderr, "kmsctl audit list: unexpected argument '%s'\n", argv[1]);
		return KMSCTL_USAGE;
	}
	if ((v = kmsctl_connect(ctl)) == NULL)
		return KMSCTL_FAIL;
	/* a timestamp has a '-' (a date) or ':'; else a span back from now */
	kms_db_param_text(&p, since && strpbrk(since, "-:") ? since : NULL);
	kms_db_param_text(&p, since && !strpbrk(since, "-:") ? since : NULL);
	r = kms_db_run(kms_vault_db(v), "SELECT id, to_char(at AT TIME ZONE 'UTC',"
	    " 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), actor, action, detail::text, mac IS NOT NULL"
	    " FROM audit WHERE ($1::timestamptz IS NULL OR at >= $1::timestamptz)"
	    " AND ($2::interval IS NULL OR at >= now() - $2::interval) ORDER BY id", &p, &e);
	if (r == NULL) {
		kms_vault_close(v);
		return kmsctl_fail_error(e);
	}
	if (json) {
		b = json_builder_new();
		json_builder_begin_array(b);
	}
	for (int i = 0; i < PQntuples(r); i++) {
		if (!json) {
			printf("%s  %s  %s  %s  %s\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
			    PQgetvalue(r, i, 2), PQgetvalue(r, i, 3), PQgetvalue(r, i, 4));
			continue;
		}
		json_builder_begin_object(b);
		json_builder_set_member_name(b, "id");
		json_builder_add_int_value(b, kms_db_get_int(r, i, 0));
		json_builder_set_member_name(b, "at");
		json_builder_add_string_value(b, PQgetvalue(r, i, 1));
		json_builder_set_member_name(b, "actor");
		json_builder_add_string_value(b, PQgetvalue(r, i, 2));
		json_builder_set_member_name(b, "action");
		json_builder_add_string_value(b, PQgetvalue(r, i, 3));
		json_builder_set_member_name(b, "detail");
		{
			g_autoptr(JsonParser) jp = json_parser_new();

			if (json_parser_load_from_data(jp, PQgetvalue(r, i, 4), -1, NULL) &&
			    json_parser_get_root(jp) != NULL)
				json_builder_add_value(b, json_node_copy(json_parser_get_root(jp)));
			else
				json_builder_add_null_value(b);
		}
		json_builder_set_member_name(b, "maced");
		json_builder_add_boolean_value(b, g_strcmp0(PQgetvalue(r, i, 5), "t") == 0);
		json_builder_end_object(b);
	}
	if (json) {
		json_builder_end_array(b);
		kmsctl_print_json(b);
	}
	kms_vault_close(v);
	return KMSCTL_OK;
}

static int
audit_verify(KmsCtl *ctl, int argc, char **argv)
{
	g_autofree char *pwfile = NULL;
	const GOptionEntry entries[] = {
		{"password-file", 0, 0, G_OPTION_ARG_FILENAME, &pwfile,
		 "the startup password, to check the MACs too (else a prompt on a terminal;"
		 " without either only the chain is checked)", "FILE"},
		G_OPTION_ENTRY_NULL
	};
	g_autoptr(GError) e = NULL;
	g_autoptr(KmsSecret) key = NULL;
	KmsAuditReport rep;
	KmsVault *v;
	int rc;

	if ((rc = kmsctl_parse(ctl, &argc, &argv, entries, "",
	    "Check the audit log's hash chain (and, with the startup password, its MACs).")) !=
	    KMSCTL_OK)
		return rc;
	if (argc > 1) {
		fprintf(stderr, "kmsctl audit verify: unexpected argument '%s'\n", argv[1]);
		return KMSCTL_USAGE;
	}
	if ((v = kmsctl_connect(ctl)) == NULL)
		return KMSCTL_FAIL;
	if (pwfile != NULL || isatty(STDIN_FILENO)) {
		if (!kmsctl_unseal(ctl, v, pwfile)) {
			kms_vault_close(v);
			return KMSCTL_FAIL;
		}
		if ((key = kms_audit_key(v, &e)) == NULL) {
			kms_vault_close(v);
			return kmsctl_fail_error(e);
		}
	}
	if (!kms_audit_verify(kms_vault_db(v), key, &rep, &e)) {
		kms_vault_close(v);
		return kmsctl_fail_error(e);
	}
	kms_vault_close(v);
	if (rep.bad_id != 0) {
		rc = kmsctl_fail("audit log broken: entry %" G_GINT64_FORMAT ": %s (%" G_GINT64_FORMAT
		    " entries before it are intact)", rep.bad_id, rep.problem, rep.entries);
		kms_audit_report_clear(&rep);
		return rc;
	}
	if (key)
		printf("%" G_GINT64_FORMAT " entries, chain intact, %" G_GINT64_FORMAT
		    " MACs verified (%" G_GINT64_FORMAT " not yet MACed)\n", rep.entries, rep.maced,
		    rep.unmaced);
	else
		printf("%" G_GINT64_FORMAT " entries, chain intact; MACs not checked (no startup"
		    " password given; %" G_GINT64_FORMAT " not yet MACed)\n", rep.entries,
		    rep.unmaced);
	kms_audit_report_clear(&rep);
	return KMSCTL_OK;
}

int
kmsctl_cmd_audit(KmsCtl *ctl, int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "list") == 0)
		return audit_list(ctl, argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "verify") == 0)
		return audit_verify(ctl, argc - 1, argv + 1);
	fprintf(stderr, "usage: kmsctl audit list [--since TIME] [--json]\n"
	    "       kmsctl audit verify [--password-file F]\n");
	return KMSCTL_USAGE;
}

gboolean
kmsctl_audit_alone(KmsVault *v, const char *action, JsonObject *detail)
{
	g_autoptr(GError) e = NULL;
	PGconn *db = kms_vault_db(v);

	if (kms_db_begin(db, &e) && kms_audit_append(db, action, detail, &e) &&
	    kms_db_commit(db, &e))
		return TRUE;
	kms_db_rollback(db);
	fprintf(stderr, "kmsctl: warning: cannot write the audit entry (%s): %s\n", action,
	    e ? e->message : "unknown error");
	return FALSE;
}
