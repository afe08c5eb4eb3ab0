/*
 * NAME
 *	kmsctl cert, kmsctl ctl - certificates in the vault, the trust list
 * SYNOPSIS
 *	kmsctl cert list [--address A] [--json]
 *	kmsctl cert show ID | --address A [--json] [--pem]
 *	kmsctl ctl add FILE.pem | remove SHA256 | list [--json]
 * DESCRIPTION
 *	cert lists issued and harvested certificates with their addresses, the
 *	capabilities their owner announced most recently (by signing time) and
 *	whether a signer named the certificate as its encryption preference.
 *	ctl manages the external roots trusted for harvested chains.
 * SECURITY
 *	Public data only.
 */
#include "autoconfig.h"
#include "kmsctl.h"

#include <stdio.h>
#include <string.h>

#include <openssl/pem.h>

#include "keyvault/audit.h"
#include "keyvault/certstore.h"
#include "smime/x509util.h"

#define ISO(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

/* One row per certificate; capabilities: the newest announcement that
 * concerns the certificate (as signer, or named as key preference). */
static const char cert_query[] =
    "SELECT c.id, c.source, c.status, c.subject, c.issuer,"
    " " ISO("c.not_before") ", " ISO("c.not_after") ", c.sha256,"
    " COALESCE((SELECT array_to_json(array_agg(a.address ORDER BY a.address))"
    "  FROM certificate_addresses a WHERE a.certificate_id = c.id), '[]')::text,"
    " (SELECT array_to_json(k.algorithms) FROM capabilities k"
    "  WHERE k.certificate_id = c.id OR k.key_preference = c.id"
    "  ORDER BY k.signing_time DESC, k.id DESC LIMIT 1)::text,"
    " EXISTS (SELECT 1 FROM capabilities k WHERE k.key_preference = c.id),"
    " " ISO("c.first_seen") ", " ISO("c.last_seen") ", c.serial, c.usage, c.status_detail,"
    " (SELECT " ISO("max(k.signing_time)") " FROM capabilities k"
    "  WHERE k.certificate_id = c.id OR k.key_preference = c.id), c.der"
    " FROM certificates c"
    " WHERE ($1::bigint IS NULL OR c.id = $1::bigint)"
    " AND ($2::text IS NULL OR EXISTS (SELECT 1 FROM certificate_addresses a"
    "  WHERE a.certificate_id = c.id AND lower(a.address) = lower($2::text)))"
    " ORDER BY c.id";

enum { C_ID, C_SOURCE, C_STATUS, C_SUBJECT, C_ISSUER, C_NB, C_NA, C_SHA, C_ADDRS, C_CAPS,
	C_KEYPREF, C_FIRST, C_LAST, C_SERIAL, C_USAGE, C_DETAIL, C_SIGNED, C_DER };

/* Add the JSON text at row/col as a member value (null when NULL). */
static void
add_json_text(JsonBuilder *b, const PGresult *r, int row, int col)
{
	g_autoptr(JsonParser) p = json_parser_new();
	const char *t = kms_db_get_text(r, row, col);

	if (t == NULL || !json_parser_load_from_data(p, t, -1, NULL)) {
		json_builder_add_null_value(b);
		return;
	}
	json_builder_add_value(b, json_node_copy(json_parser_get_root(p)));
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

static void
cert_json(JsonBuilder *b, const PGresult *r, int i)
{
	json_builder_begin_object(b);
	json_builder_set_member_name(b, "id");
	json_builder_add_int_value(b, kms_db_get_int(r, i, C_ID));
	member_text(b, "source", kms_db_get_text(r, i, C_SOURCE));
	member_text(b, "status", kms_db_get_text(r, i, C_STATUS));
	member_text(b, "status_detail", kms_db_get_text(r, i, C_DETAIL));
	member_text(b, "usage", kms_db_get_text(r, i, C_USAGE));
	member_text(b, "subject", kms_db_get_text(r, i, C_SUBJECT));
	member_text(b, "issuer", kms_db_get_text(r, i, C_ISSUER));
	member_text(b, "serial", kms_db_get_text(r, i, C_SERIAL));
	json_builder_set_member_name(b, "addresses");
	add_json_text(b, r, i, C_ADDRS);
	member_text(b, "not_before", kms_db_get_text(r, i, C_NB));
	member_text(b, "not_after", kms_db_get_text(r, i, C_NA));
	member_text(b, "sha256", kms_db_get_text(r, i, C_SHA));
	json_builder_set_member_name(b, "capabilities");
	add_json_text(b, r, i, C_CAPS);
	member_text(b, "capabilities_signed_at", kms_db_get_text(r, i, C_SIGNED));
	json_builder_set_member_name(b, "key_preference");
	json_builder_add_boolean_value(b, strcmp(PQgetvalue(r, i, C_KEYPREF), "t") == 0);
	member_text(b, "first_seen", kms_db_get_text(r, i, C_FIRST));
	member_text(b, "last_seen", kms_db_get_text(r, i, C_LAST));
	json_builder_end_object(b);
}

/* Every row of R as one JSON array on stdout. */
static void
print_certs_json(const PGresult *r)
{
	g_autoptr(JsonBuilder) b = json_builder_new();

	json_builder_begin_array(b);
	for (int i = 0; i < PQntuples(r); i++)
		cert_json(b, r, i);
	json_builder_end_array(b);
	kmsctl_print_json(b);
}

/* "a, b" from a JSON array text, for the plain listing. g_free. */
static char *
json_list_text(const char *t)
{
	g_autoptr(JsonParser) p = json_parser_new();
	GString *s = g_string_new(NULL);
	JsonArray *a;

	if (t && json_parser_load_from_data(p, t, -1, NULL) &&
	    JSON_NODE_HOLDS_ARRAY(json_parser_get_root(p))) {
		a = json_node_get_array(json_parser_get_root(p));
		for (guint i = 0; i < json_array_get_length(a); i++)
			g_string_append_printf(s, "%s%s", i ? ", " : "", json_array_get_string_element(a, i));
	}
	return g_string_free(s, FALSE);
}

static PGresult *
query_certs(PGconn *db, const char *id, const char *address, GError **err)
{
	KmsDbParams p = KMS_DB_PARAMS_INIT;

	kms_db_param_text(&p, id);
	kms_db_param_text(&p, address);
	return kms_db_run(db, cert_query, &p, err);
}

static int
cert_list(KmsCtl *ctl, int argc, char **argv)
{
	gboolean json = FALSE;
	g_autofree char *address = NULL;
	const GOptionEntry entries[] = {
		{"address", 0, 0, G_OPTION_ARG_STRING, &address, "only certificates for this address", "A"},
		{"json", 0, 0, G_OPTION_ARG_NONE, &json, "one JSON document on stdout", NULL},
		G_OPTION_ENTRY_NULL
	};
	g_autoptr(GError) e = NULL;
	g_autoptr(PGresult) r = NULL;
	KmsVault *v;
	int rc;

	if ((rc = kmsctl_parse(ctl, &argc, &argv, entries, "",
	    "List issued and harvested certificates.")) != KMSCTL_OK)
		return rc;
	if (argc > 1) {
		fprintf(stderr, "kmsctl cert list: unexpected argument '%s'\n", argv[1]);
		return KMSCTL_USAGE;
	}
	if ((v = kmsctl_connect(ctl)) == NULL)
		return KMSCTL_FAIL;
	r = query_certs(kms_vault_db(v), NULL, address, &e);
	if (r == NULL) {
		kms_vault_close(v);
		return kmsctl_fail_error(e);
	}
	if (json)
		print_certs_json(r);
	else {
		printf("%-6s %-9s %-15s %-20s %-16s %s\n", "ID", "SOURCE", "STATUS", "NOT AFTER",
		    "SHA256", "ADDRESSES");
		for (int i = 0; i < PQntuples(r); i++) {
			g_autofree char *addrs = json_list_text(kms_db_get_text(r, i, C_ADDRS));

			printf("%-6s %-9s %-15s %-20s %.16s %s\n", PQgetvalue(r, i, C_ID),
			    PQgetvalue(r, i, C_SOURCE), PQgetvalue(r, i, C_STATUS),
			    PQgetvalue(r, i, C_NA), PQgetvalue(r, i, C_SHA), addrs);
		}
	}
	kms_vault_close(v);
	return KMSCTL_OK;
}

static int
cert_show(KmsCtl *ctl, int argc, char **argv)
{
	gboolean json = FALSE, pem = FALSE;
	g_autofree char *address = NULL;
	const GOptionEntry entries[] = {
		{"address", 0, 0, G_OPTION_ARG_STRING, &address, "certificates for this address", "A"},
		{"json", 0, 0, G_OPTION_ARG_NONE, &json, "one JSON document on stdout", NULL},
		{"pem", 0, 0, G_OPTION_ARG_NONE, &pem, "print the certificates as PEM", NULL},
		G_OPTION_ENTRY_NULL
	};
	g_autoptr(GError) e = NULL;
	g_autoptr(PGresult) r = NULL;
	KmsVault *v;
	int rc;

	if ((rc = kmsctl_parse(ctl, &argc, &argv, entries, "ID | --address A",
	    "Show certificates in detail.")) != KMSCTL_OK)
		return rc;
	if ((argc == 2) == (address != NULL) || argc > 2 ||
	    (argc == 2 && strspn(argv[1], "0123456789") != strlen(argv[1]))) {
		fprintf(stderr, "usage: kmsctl cert show ID | --address A [--json] [--pem]\n");
		return KMSCTL_USAGE;
	}
	if ((v = kmsctl_connect(ctl)) == NULL)
		return KMSCTL_FAIL;
	r = query_certs(kms_vault_db(v), argc == 2 ? argv[1] : NULL, address, &e);
	kms_vault_close(v);
	if (r == NULL)
		return kmsctl_fail_error(e);
	if (PQntuples(r) == 0)
		return kmsctl_fail("no certificate %s%s", argc == 2 ? argv[1] : "for ",
		    argc == 2 ? "" : address);
	if (json && !pem) {	/* --pem wins, as in kmsctl ca show */
		print_certs_json(r);
		return KMSCTL_OK;
	}
	for (int i = 0; i < PQntuples(r); i++) {
		g_autofree char *addrs = json_list_text(kms_db_get_text(r, i, C_ADDRS));
		g_autofree char *caps = json_list_text(kms_db_get_text(r, i, C_CAPS));

		if (pem) {
			g_autoptr(GBytes) d = kms_db_get_bytes(r, i, C_DER);
			X509 *x = kms_x509_from_der(g_bytes_get_data(d, NULL), g_bytes_get_size(d));

			if (x)
				PEM_write_X509(stdout, x);
			X509_free(x);
			continue;
		}
		printf("%scertificate %s\n  source:       %s\n  status:       %s%s%s\n"
		    "  usage:        %s\n  subject:      %s\n  issuer:       %s\n  serial:       %s\n"
		    "  addresses:    %s\n  validity:     %s to %s\n  sha256:       %s\n"
		    "  capabilities: %s%s%s%s\n  key preference: %s\n  seen:         %s to %s\n",
		    i ? "\n" : "", PQgetvalue(r, i, C_ID), PQgetvalue(r, i, C_SOURCE),
		    PQgetvalue(r, i, C_STATUS), kms_db_get_text(r, i, C_DETAIL) ? " - " : "",
		    kms_db_get_text(r, i, C_DETAIL) ? PQgetvalue(r, i, C_DETAIL) : "",
		    kms_db_get_text(r, i, C_USAGE) ? PQgetvalue(r, i, C_USAGE) : "-",
		    PQgetvalue(r, i, C_SUBJECT), PQgetvalue(r, i, C_ISSUER), PQgetvalue(r, i, C_SERIAL),
		    addrs, PQgetvalue(r, i, C_NB), PQgetvalue(r, i, C_NA), PQgetvalue(r, i, C_SHA),
		    kms_db_get_text(r, i, C_CAPS) ? caps : "(none announced)",
		    kms_db_get_text(r, i, C_SIGNED) ? " (signed " : "",
		    kms_db_get_text(r, i, C_SIGNED) ? PQgetvalue(r, i, C_SIGNED) : "",
		    kms_db_get_text(r, i, C_SIGNED) ? ")" : "",
		    strcmp(PQgetvalue(r, i, C_KEYPREF), "t") == 0 ? "yes" : "no",
		    PQgetvalue(r, i, C_FIRST), PQgetvalue(r, i, C_LAST));
	}
	return KMSCTL_OK;
}

int
kmsctl_cmd_cert(KmsCtl *ctl, int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "list") == 0)
		return cert_list(ctl, argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "show") == 0)
		return cert_show(ctl, argc - 1, argv + 1);
	fprintf(stderr, "usage: kmsctl cert list [--address A] [--json] |"
	    " kmsctl cert show ID|--address A [--json] [--pem]\n");
	return KMSCTL_USAGE;
}

static int
ctl_add(KmsCtl *ctl, int argc, char **argv)
{
	g_autoptr(GError) e = NULL;
	STACK_OF(X509) *certs;
	KmsVault *v;
	int rc;

	if ((rc = kmsctl_parse(ctl, &argc, &argv, NULL, "FILE.pem",
	    "Trust the CA certificate(s) in FILE for harvested chains.")) != KMSCTL_OK)
		return rc;
	if (argc != 2) {
		fprintf(stderr, "usage: kmsctl ctl add FILE.pem\n");
		return KMSCTL_USAGE;
	}
	if ((certs = kms_x509_read_pem_file(argv[1], &e)) == NULL)
		return kmsctl_fail_error(e);
	if ((v = kmsctl_connect(ctl)) == NULL) {
		sk_X509_pop_free(certs, X509_free);
		return KMSCTL_FAIL;
	}
	rc = KMSCTL_OK;
	if (!kms_db_begin(kms_vault_db(v), &e))
		rc = kmsctl_fail_error(e);
	for (int i = 0; rc == KMSCTL_OK && i < sk_X509_num(certs); i++) {
		X509 *x = sk_X509_value(certs, i);
		g_autofree char *sha = kms_x509_sha256_hex(x);
		g_autofree char *subj = kms_x509_name_text(X509_get_subject_name(x));
		gboolean existed;

		g_autoptr(JsonObject) d = json_object_new();

		json_object_set_string_member(d, "sha256", sha);
		json_object_set_string_member(d, "subject", subj);
		if (!kms_ctl_add(kms_vault_db(v), x, g_get_user_name(), &existed, &e) ||
		    (!existed && !kms_audit_append(kms_vault_db(v), "ctl add", d, &e)))
			rc = kmsctl_fail_error(e);
		else
			printf("%s %s %s\n", existed ? "already trusted" : "trusted", sha, subj);
	}
	if (rc == KMSCTL_OK && !kms_db_commit(kms_vault_db(v), &e))
		rc = kmsctl_fail_error(e);
	if (rc != KMSCTL_OK)
		kms_db_rollback(kms_vault_db(v));
	sk_X509_pop_free(certs, X509_free);
	kms_vault_close(v);
	return rc;
}

static int
ctl_remove(KmsCtl *ctl, int argc, char **argv)
{
	g_autoptr(GError) e = NULL;
	gboolean found;
	KmsVault *v;
	int rc;

	if ((rc = kmsctl_parse(ctl, &argc, &argv, NULL, "SHA256",
	    "Stop trusting the certificate with this fingerprint.")) != KMSCTL_OK)
		return rc;
	if (argc != 2) {
		fprintf(stderr, "usage: kmsctl ctl remove SHA256\n");
		return KMSCTL_USAGE;
	}
	if ((v = kmsctl_connect(ctl)) == NULL)
		return KMSCTL_FAIL;
	{
		g_autoptr(JsonObject) d = json_object_new();
		PGconn *db = kms_vault_db(v);

		json_object_set_string_member(d, "sha256", argv[1]);
		if (!kms_db_begin(db, &e) || !kms_ctl_remove(db, argv[1], &found, &e) ||
		    (found && !kms_audit_append(db, "ctl remove", d, &e)) ||
		    (found && !kms_db_commit(db, &e))) {
			kms_db_rollback(db);
			rc = kmsctl_fail_error(e);
		} else if (!found) {
			kms_db_rollback(db);
			rc = kmsctl_fail("no trusted certificate with fingerprint %s", argv[1]);
		} else
			printf("removed %s\n", argv[1]);
	}
	kms_vault_close(v);
	return rc;
}

static int
ctl_list(KmsCtl *ctl, int argc, char **argv)
{
	gboolean json = FALSE;
	const GOptionEntry entries[] = {
		{"json", 0, 0, G_OPTION_ARG_NONE, &json, "one JSON document on stdout", NULL},
		G_OPTION_ENTRY_NULL
	};
	g_autoptr(GError) e = NULL;
	g_autoptr(PGresult) r = NULL;
	KmsVault *v;
	int rc;

	if ((rc = kmsctl_parse(ctl, &argc, &argv, entries, "",
	    "List the certificate trust list.")) != KMSCTL_OK)
		return rc;
	if ((v = kmsctl_connect(ctl)) == NULL)
		return KMSCTL_FAIL;
	r = kms_db_run(kms_vault_db(v), "SELECT id, sha256, subject, " ISO("added_at")
	    ", added_by, der FROM trust_list ORDER BY id", NULL, &e);
	kms_vault_close(v);
	if (r == NULL)
		return kmsctl_fail_error(e);
	if (json) {
		g_autoptr(JsonBuilder) b = json_builder_new();

		json_builder_begin_array(b);
		for (int i = 0; i < PQntuples(r); i++) {
			g_autoptr(GBytes) d = kms_db_get_bytes(r, i, 5);
			X509 *x = kms_x509_from_der(g_bytes_get_data(d, NULL), g_bytes_get_size(d));
			g_autofree char *na = x ? kms_asn1_time_iso8601(X509_get0_notAfter(x)) : NULL;

			json_builder_begin_object(b);
			json_builder_set_member_name(b, "id");
			json_builder_add_int_value(b, kms_db_get_int(r, i, 0));
			member_text(b, "sha256", PQgetvalue(r, i, 1));
			member_text(b, "subject", PQgetvalue(r, i, 2));
			member_text(b, "not_after", na);
			member_text(b, "added_at", PQgetvalue(r, i, 3));
			member_text(b, "added_by", kms_db_get_text(r, i, 4));
			json_builder_end_object(b);
			X509_free(x);
		}
		json_builder_end_array(b);
		kmsctl_print_json(b);
	} else
		for (int i = 0; i < PQntuples(r); i++)
			printf("%s  %s  (added %s)\n", PQgetvalue(r, i, 1), PQgetvalue(r, i, 2),
			    PQgetvalue(r, i, 3));
	return KMSCTL_OK;
}

int
kmsctl_cmd_ctl(KmsCtl *ctl, int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "add") == 0)
		return ctl_add(ctl, argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "remove") == 0)
		return ctl_remove(ctl, argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "list") == 0)
		return ctl_list(ctl, argc - 1, argv + 1);
	fprintf(stderr, "usage: kmsctl ctl add FILE.pem | remove SHA256 | list [--json]\n");
	return KMSCTL_USAGE;
}
