/*
 * NAME
 *	kmsctl status - is the vault there, who works it, what waits
 * DESCRIPTION
 *	Exit 0 whenever the vault answers (also with no kmsd running), 1 when
 *	it cannot be reached or holds no vault.
 * SECURITY
 *	Reads public state only; needs no password.
 */
#include "autoconfig.h"
#include "kmsctl.h"

#include <stdio.h>
#include <string.h>

#include "keyvault/vaultca.h"
#include "smime/x509util.h"

int
kmsctl_cmd_status(KmsCtl *ctl, int argc, char **argv)
{
	gboolean json = FALSE;
	const GOptionEntry entries[] = {
		{"json", 0, 0, G_OPTION_ARG_NONE, &json, "one JSON document on stdout", NULL},
		G_OPTION_ENTRY_NULL
	};
	g_autoptr(GError) e = NULL;
	g_autoptr(PGresult) w = NULL, q = NULL, crl = NULL;
	g_autofree char *seal = NULL, *na = NULL;
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	KmsVaultCa *ca = NULL;
	KmsVault *v;
	int rc, version;
	gint64 workers, depth, days_left = 0;
	const char *oldest;

	if ((rc = kmsctl_parse(ctl, &argc, &argv, entries, "",
	    "Show the state of the vault.")) != KMSCTL_OK)
		return rc;
	if ((v = kmsctl_connect(ctl)) == NULL)
		return KMSCTL_FAIL;
	if (!kms_vault_schema_version(v, &version, &e) ||
	    (seal = kms_vault_seal_info(v, &e)) == NULL) {
		rc = kmsctl_fail_error(e);
		goto out;
	}
	/* A worker is live when it beat within three heartbeat periods. */
	kms_db_param_int(&p, 3 * kms_config_get_int(ctl->cfg, "kms", "heartbeat"));
	w = kms_db_run(kms_vault_db(v),
	    "SELECT count(*) FROM workers WHERE heartbeat_at > now() - $1 * interval '1 second'",
	    &p, &e);
	if (w == NULL) {
		rc = kmsctl_fail_error(e);
		goto out;
	}
	q = kms_db_run(kms_vault_db(v),
	    "SELECT count(*), extract(epoch FROM now() - min(created_at))::bigint"
	    " FROM requests WHERE status = 'queued'", NULL, &e);
	if (q == NULL) {
		rc = kmsctl_fail_error(e);
		goto out;
	}
	workers = kms_db_get_int(w, 0, 0);
	depth = kms_db_get_int(q, 0, 0);
	oldest = kms_db_get_text(q, 0, 1);
	ca = kms_vault_ca_load(v, &e);
	if (ca == NULL) {
		rc = kmsctl_fail_error(e);
		goto out;
	}
	/* the last CRL kmsd published (crlpub.h) */
	crl = kms_db_run(kms_vault_db(v), "SELECT crl_number, to_char(crl_next_update AT TIME ZONE"
	    " 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM ca WHERE status = 'active'"
	    " AND crl IS NOT NULL", NULL, &e);
	if (crl == NULL) {
		rc = kmsctl_fail_error(e);
		goto out;
	}
	if (ca->cert) {
		int days = 0, secs = 0;

		na = kms_asn1_time_iso8601(X509_get0_notAfter(ca->cert));
		ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(ca->cert));
		days_left = days;
	}

	if (json) {
		g_autoptr(JsonBuilder) b = json_builder_new();

		json_builder_begin_object(b);
		json_builder_set_member_name(b, "vault");
		json_builder_add_string_value(b, "ok");
		json_builder_set_member_name(b, "database");
		json_builder_add_string_value(b, PQdb(kms_vault_db(v)));
		json_builder_set_member_name(b, "schema_version");
		json_builder_add_int_value(b, version);
		json_builder_set_member_name(b, "seal");
		json_builder_add_string_value(b, seal);
		json_builder_set_member_name(b, "workers");
		json_builder_add_int_value(b, workers);
		json_builder_set_member_name(b, "queue");
		json_builder_begin_object(b);
		json_builder_set_member_name(b, "depth");
		json_builder_add_int_value(b, depth);
		json_builder_set_member_name(b, "oldest_age_seconds");
		if (oldest)
			json_builder_add_int_value(b, g_ascii_strtoll(oldest, NULL, 10));
		else
			json_builder_add_null_value(b);
		json_builder_end_object(b);
		json_builder_set_member_name(b, "ca");
		json_builder_begin_object(b);
		json_builder_set_member_name(b, "status");
		json_builder_add_string_value(b, ca->status);
		json_builder_set_member_name(b, "subject");
		json_builder_add_string_value(b, ca->subject);
		json_builder_set_member_name(b, "key_type");
		json_builder_add_string_value(b, ca->key_type);
		json_builder_set_member_name(b, "not_after");
		if (na)
			json_builder_add_string_value(b, na);
		else
			json_builder_add_null_value(b);
		json_builder_set_member_name(b, "days_left");
		if (na)
			json_builder_add_int_value(b, days_left);
		else
			json_builder_add_null_value(b);
		json_builder_end_object(b);
		json_builder_set_member_name(b, "crl");
		if (PQntuples(crl) > 0) {
			json_builder_begin_object(b);
			json_builder_set_member_name(b, "number");
			json_builder_add_int_value(b, kms_db_get_int(crl, 0, 0));
			json_builder_set_member_name(b, "next_update");
			json_builder_add_string_value(b, PQgetvalue(crl, 0, 1));
			json_builder_end_object(b);
		} else
			json_builder_add_null_value(b);
		json_builder_end_object(b);
		kmsctl_print_json(b);
	} else {
		printf("vault:    ok, database %s, schema version %d\n", PQdb(kms_vault_db(v)), version);
		printf("seal:     %s\n", seal);
		printf("kmsd:     %" G_GINT64_FORMAT " live worker%s\n", workers, workers == 1 ? "" : "s");
		if (oldest)
			printf("queue:    %" G_GINT64_FORMAT " queued, oldest %s s\n", depth, oldest);
		else
			printf("queue:    empty\n");
		if (na)
			printf("CA:       %s (%s), valid until %s (%" G_GINT64_FORMAT " days left)%s\n",
			    ca->subject, ca->key_type, na, days_left,
			    days_left < 30 ? " - RENEW SOON" : "");
		else
			printf("CA:       %s (%s), pending: waiting for kmsctl ca install\n",
			    ca->subject, ca->key_type);
		if (PQntuples(crl) > 0)
			printf("CRL:      number %s, next update %s\n", PQgetvalue(crl, 0, 0),
			    PQgetvalue(crl, 0, 1));
		else
			printf("CRL:      none published yet\n");
	}
	rc = KMSCTL_OK;
out:
	kms_vault_ca_free(ca);
	kms_vault_close(v);
	return rc;
}
