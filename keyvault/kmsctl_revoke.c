/*
 * NAME
 *	kmsctl revoke, kmsctl crl - revocation and the CRL
 * SYNOPSIS
 *	kmsctl revoke [--reason R] [--json] ADDR... | --serial S...
 *	kmsctl crl [--out FILE] [--der]
 * DESCRIPTION
 *	revoke marks certificates the internal CA issued as revoked: for an
 *	address every valid one issued to that user (encryption and
 *	signing), for --serial that one. All arguments are revoked in one
 *	transaction with a "crl" request for kmsd, or none is: any argument
 *	that matches nothing (unknown address or serial, already revoked,
 *	a harvested certificate) refuses the whole command with one line.
 *	crl prints the CRL kmsd published last, as stored in the vault.
 * SECURITY
 *	Needs no startup password: kmsd signs the CRL. Public data only.
 */
#include "autoconfig.h"
#include "kmsctl.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "keyvault/audit.h"
#include "keyvault/crlpub.h"
#include "smime/crl.h"

/* One certificate to revoke. */
typedef struct {
	gint64 id;
	char *serial;
	char *usage;
	char *address;
	char *subject;
} Target;

static void
target_free(gpointer data)
{
	Target *t = data;

	g_free(t->serial);
	g_free(t->usage);
	g_free(t->address);
	g_free(t->subject);
	g_free(t);
}

/* Lower-case hex without colons and leading zeros; NULL when S is not a
 * hex serial. g_free. */
static char *
normalize_serial(const char *s)
{
	GString *out = g_string_new(NULL);

	for (; *s; s++) {
		if (*s == ':')
			continue;
		if (!g_ascii_isxdigit(*s)) {
			g_string_free(out, TRUE);
			return NULL;
		}
		if (out->len == 0 && *s == '0')
			continue;
		g_string_append_c(out, g_ascii_tolower(*s));
	}
	if (out->len == 0 || out->len > 40) {	/* zero, or more than 20 octets */
		g_string_free(out, TRUE);
		return NULL;
	}
	return g_string_free(out, FALSE);
}

/* Add the rows of R (id, serial, usage, address, subject[, source,
 * status]) not yet in SEEN; with CHECK only issued, valid ones. */
static void
add_targets(GPtrArray *targets, GHashTable *seen, const PGresult *r, gboolean check)
{
	for (int i = 0; i < PQntuples(r); i++) {
		Target *t;
		gint64 id = kms_db_get_int(r, i, 0);

		if (g_hash_table_contains(seen, &id) || (check &&
		    (strcmp(PQgetvalue(r, i, 5), "issued") != 0 ||
		    strcmp(PQgetvalue(r, i, 6), "valid") != 0)))
			continue;
		t = g_new0(Target, 1);
		t->id = id;
		t->serial = g_strdup(PQgetvalue(r, i, 1));
		t->usage = g_strdup(PQgetvalue(r, i, 2));
		t->address = g_strdup(PQgetvalue(r, i, 3));
		t->subject = g_strdup(PQgetvalue(r, i, 4));
		g_hash_table_add(seen, g_memdup2(&t->id, sizeof(t->id)));
		g_ptr_array_add(targets, t);
	}
}

/* The valid certificates issued to ADDRESS, locked; when there is none,
 * FALSE with *err saying why. */
static gboolean
find_address(PGconn *db, const char *address, GPtrArray *targets, GHashTable *seen,
    GError **err)
{
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	g_autoptr(PGresult) r = NULL, d = NULL;
	gint64 issued, harvested;

	kms_db_param_text(&p, address);
	r = kms_db_run(db, "SELECT c.id, c.serial, coalesce(c.usage, ''), u.address, c.subject"
	    " FROM certificates c JOIN users u ON u.id = c.user_id"
	    " WHERE lower(u.address) = lower($1) AND c.source = 'issued' AND c.status = 'valid'"
	    " ORDER BY c.id FOR UPDATE OF c", &p, err);
	if (r == NULL)
		return FALSE;
	if (PQntuples(r) > 0) {
		add_targets(targets, seen, r, FALSE);
		return TRUE;
	}
	/* nothing to revoke: tell the administrator why */
	kms_db_param_text(&p, address);
	d = kms_db_run(db, "SELECT"
	    " (SELECT count(*) FROM certificates c JOIN users u ON u.id = c.user_id"
	    "  WHERE lower(u.address) = lower($1) AND c.source = 'issued'),"
	    " (SELECT count(*) FROM certificates c WHERE c.source = 'harvested' AND EXISTS"
	    "  (SELECT 1 FROM certificate_addresses a WHERE a.certificate_id = c.id"
	    "   AND lower(a.address) = lower($1))),"
	    " EXISTS (SELECT 1 FROM users WHERE lower(address) = lower($1))", &p, err);
	if (d == NULL)
		return FALSE;
	issued = kms_db_get_int(d, 0, 0);
	harvested = kms_db_get_int(d, 0, 1);
	if (issued > 0)
		g_set_error(err, KMS_DB_ERROR, KMS_DB_ERROR_QUERY,
		    "%s: every certificate issued to this address is already revoked", address);
	else if (harvested > 0)
		g_set_error(err, KMS_DB_ERROR, KMS_DB_ERROR_QUERY,
		    "%s: only harvested certificates (from signed mail) are known for this"
		    " address; they were not issued by this CA and only their issuer can revoke"
		    " them", address);
	else if (strcmp(PQgetvalue(d, 0, 2), "t") == 0)
		g_set_error(err, KMS_DB_ERROR, KMS_DB_ERROR_QUERY,
		    "%s: no certificate has been issued to this address", address);
	else
		g_set_error(err, KMS_DB_ERROR, KMS_DB_ERROR_QUERY, "%s: unknown address", address);
	return FALSE;
}

/* The issued, valid certificate with serial SERIAL (normalized), locked. */
static gboolean
find_serial(PGconn *db, const char *shown, const char *serial, GPtrArray *targets,
    GHashTable *seen, GError **err)
{
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	g_autoptr(PGresult) r = NULL;
	int valid = -1, revoked = -1, harvested = -1;

	kms_db_param_text(&p, serial);
	r = kms_db_run(db, "SELECT c.id, c.serial, coalesce(c.usage, ''),"
	    " coalesce(u.address, (SELECT min(a.address) FROM certificate_addresses a"
	    "  WHERE a.certificate_id = c.id), ''), c.subject, c.source, c.status, c.issuer"
	    " FROM certificates c LEFT JOIN users u ON u.id = c.user_id"
	    " WHERE ltrim(lower(c.serial), '0') = $1 ORDER BY c.id FOR UPDATE OF c", &p, err);
	if (r == NULL)
		return FALSE;
	for (int i = 0; i < PQntuples(r); i++) {
		gboolean issued = strcmp(PQgetvalue(r, i, 5), "issued") == 0;

		if (issued && strcmp(PQgetvalue(r, i, 6), "valid") == 0 && valid < 0)
			valid = i;
		else if (issued && revoked < 0)
			revoked = i;
		else if (!issued && harvested < 0)
			harvested = i;
	}
	if (valid >= 0) {
		add_targets(targets, seen, r, TRUE);
		return TRUE;
	}
	if (revoked >= 0)
		g_set_error(err, KMS_DB_ERROR, KMS_DB_ERROR_QUERY,
		    "serial %s (%s) is already revoked", shown, PQgetvalue(r, revoked, 4));
	else if (harvested >= 0)
		g_set_error(err, KMS_DB_ERROR, KMS_DB_ERROR_QUERY,
		    "serial %s is a harvested certificate issued by %s, not by this CA;"
		    " only its issuer can revoke it", shown, PQgetvalue(r, harvested, 7));
	else
		g_set_error(err, KMS_DB_ERROR, KMS_DB_ERROR_QUERY,
		    "no certificate with serial %s", shown);
	return FALSE;
}

/* Revoke TARGETS with REASON (crlpub.h), in the caller's transaction; when
 * the approval policy gates revoke, submit a request for it instead and set
 * *REQUEST (admin.h). */
static gboolean
revoke_targets(KmsCtl *ctl, PGconn *db, GPtrArray *targets, const char *reason,
    gint64 *request, GError **err)
{
	g_autofree gint64 *ids = g_new0(gint64, targets->len + 1);
	g_autofree const char **serials = g_new0(const char *, targets->len + 1);
	g_autofree const char **addresses = g_new0(const char *, targets->len + 1);
	KmsApprovalPolicy pol;

	*request = 0;
	for (guint i = 0; i < targets->len; i++) {
		Target *t = g_ptr_array_index(targets, i);

		ids[i] = t->id;
		serials[i] = t->serial;
		addresses[i] = t->address;
	}
	if (!kms_approval_policy_read(db, &pol, err))
		return FALSE;
	if (pol.need[KMS_OP_REVOKE] >= 2) {
		g_autoptr(JsonObject) p = json_object_new();
		g_autoptr(JsonArray) ta = json_array_new();
		gboolean pending;

		for (guint i = 0; i < targets->len; i++) {
			JsonObject *o = json_object_new();

			json_object_set_int_member(o, "id", ids[i]);
			json_object_set_string_member(o, "serial", serials[i]);
			json_object_set_string_member(o, "address", addresses[i] ? addresses[i] : "");
			json_array_add_object_element(ta, o);
		}
		json_object_set_array_member(p, "targets", json_array_ref(ta));
		json_object_set_string_member(p, "reason", reason);
		return kmsctl_request(ctl, db, "revoke", p, request, &pending, err);
	}
	return kms_revoke_apply(db, targets->len, ids, serials, addresses, reason,
	    ctl->admin ? ctl->admin->name : g_get_user_name(),
	    kms_config_get_int(ctl->cfg, "kms", "request_ttl"), err);
}

/* Is a kmsd alive (heartbeat within three periods)? */
static gboolean
kmsd_alive(PGconn *db, const KmsConfig *cfg)
{
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	g_autoptr(PGresult) r = NULL;

	kms_db_param_int(&p, 3 * kms_config_get_int(cfg, "kms", "heartbeat"));
	r = kms_db_run(db, "SELECT count(*) FROM workers"
	    " WHERE heartbeat_at > now() - $1 * interval '1 second'", &p, NULL);
	return r == NULL || kms_db_get_int(r, 0, 0) > 0;
}

static void
print_json(GPtrArray *targets, const char *reason, gboolean alive)
{
	g_autoptr(JsonBuilder) b = json_builder_new();

	json_builder_begin_object(b);
	json_builder_set_member_name(b, "revoked");
	json_builder_begin_array(b);
	for (guint i = 0; i < targets->len; i++) {
		Target *t = g_ptr_array_index(targets, i);

		json_builder_begin_object(b);
		json_builder_set_member_name(b, "id");
		json_builder_add_int_value(b, t->id);
		json_builder_set_member_name(b, "serial");
		json_builder_add_string_value(b, t->serial);
		json_builder_set_member_name(b, "usage");
		json_builder_add_string_value(b, t->usage);
		json_builder_set_member_name(b, "address");
		json_builder_add_string_value(b, t->address);
		json_builder_set_member_name(b, "subject");
		json_builder_add_string_value(b, t->subject);
		json_builder_set_member_name(b, "reason");
		json_builder_add_string_value(b, reason);
		json_builder_end_object(b);
	}
	json_builder_end_array(b);
	json_builder_set_member_name(b, "crl_update");
	json_builder_add_string_value(b, "queued");
	json_builder_set_member_name(b, "kmsd_running");
	json_builder_add_boolean_value(b, alive);
	json_builder_end_object(b);
	kmsctl_print_json(b);
}

int
kmsctl_cmd_revoke(KmsCtl *ctl, int argc, char **argv)
{
	g_auto(GStrv) serials = NULL;
	g_autofree char *reason_arg = NULL;
	gboolean json = FALSE;
	const GOptionEntry entries[] = {
		{"serial", 0, 0, G_OPTION_ARG_STRING_ARRAY, &serials,
		 "the certificate with this serial number (hex; repeatable)", "S"},
		{"reason", 0, 0, G_OPTION_ARG_STRING, &reason_arg,
		 "RFC 5280 reason: unspecified (default), keyCompromise, affiliationChanged,"
		 " superseded, cessationOfOperation, certificateHold, privilegeWithdrawn, ...", "R"},
		{"json", 0, 0, G_OPTION_ARG_NONE, &json, "one JSON document on stdout", NULL},
		G_OPTION_ENTRY_NULL
	};
	g_autoptr(GError) e = NULL;
	g_autoptr(GPtrArray) targets = g_ptr_array_new_with_free_func(target_free);
	g_autoptr(GHashTable) seen = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free,
	    NULL);
	g_autoptr(GPtrArray) norm = g_ptr_array_new_with_free_func(g_free);
	const char *reason;
	KmsVault *v;
	PGconn *db;
	gboolean alive;
	gint64 request;
	int rc, code = CRL_REASON_UNSPECIFIED;

	if ((rc = kmsctl_parse(ctl, &argc, &argv, entries, "ADDR... | --serial S",
	    "Revoke the certificates the internal CA issued to users, or one by serial."))
	    != KMSCTL_OK)
		return rc;
	if (argc < 2 && serials == NULL) {
		fprintf(stderr, "usage: kmsctl revoke [--reason R] [--json] ADDR... | --serial S\n");
		return KMSCTL_USAGE;
	}
	if (reason_arg && !kms_crl_reason_parse(reason_arg, &code)) {
		fprintf(stderr, "kmsctl revoke: unknown reason '%s' (RFC 5280 names: unspecified,"
		    " keyCompromise, cACompromise, affiliationChanged, superseded,"
		    " cessationOfOperation, certificateHold, privilegeWithdrawn, aACompromise)\n",
		    reason_arg);
		return KMSCTL_USAGE;
	}
	if (code == CRL_REASON_REMOVE_FROM_CRL) {
		fprintf(stderr, "kmsctl revoke: removeFromCRL only belongs in a delta CRL;"
		    " a revocation cannot be undone\n");
		return KMSCTL_USAGE;
	}
	reason = kms_crl_reason_name(code);
	for (int i = 0; serials && serials[i]; i++) {
		char *s = normalize_serial(serials[i]);

		if (s == NULL) {
			fprintf(stderr, "kmsctl revoke: '%s' is not a serial number (hex digits,"
			    " colons allowed)\n", serials[i]);
			return KMSCTL_USAGE;
		}
		g_ptr_array_add(norm, s);
	}
	if ((v = kmsctl_connect(ctl)) == NULL)
		return KMSCTL_FAIL;
	db = kms_vault_db(v);
	if (!kms_db_begin(db, &e))
		goto failed;
	for (int i = 1; i < argc; i++)
		if (!find_address(db, argv[i], targets, seen, &e))
			goto failed;
	for (guint i = 0; i < norm->len; i++)
		if (!find_serial(db, serials[i], g_ptr_array_index(norm, i), targets, seen, &e))
			goto failed;
	if (!revoke_targets(ctl, db, targets, reason, &request, &e) || !kms_db_commit(db, &e))
		goto failed;
	if (request) {
		for (guint i = 0; i < targets->len; i++) {
			Target *t = g_ptr_array_index(targets, i);

			printf("serial %s of %s\n", t->serial, *t->address ? t->address : t->subject);
		}
		printf("Request: %" G_GINT64_FORMAT "\nthe revocation waits for approvals"
		    " (kmsctl approve %" G_GINT64_FORMAT ")\n", request, request);
		kms_vault_close(v);
		return KMSCTL_OK;
	}
	alive = kmsd_alive(db, ctl->cfg);
	if (json)
		print_json(targets, reason, alive);
	else {
		for (guint i = 0; i < targets->len; i++) {
			Target *t = g_ptr_array_index(targets, i);

			printf("revoked serial %s (%s) of %s, reason %s\n", t->serial,
			    *t->usage ? t->usage : "no usage", *t->address ? t->address : t->subject,
			    reason);
		}
		printf("CRL update queued%s\n", alive ? "" :
		    " (no kmsd is running: it publishes the CRL when it starts)");
	}
	kms_vault_close(v);
	return KMSCTL_OK;
failed:
	kms_db_rollback(db);
	kms_vault_close(v);
	return kmsctl_fail("%s; nothing revoked", e->message);
}

int
kmsctl_cmd_crl(KmsCtl *ctl, int argc, char **argv)
{
	g_autofree char *out = NULL;
	gboolean der_out = FALSE;
	const GOptionEntry entries[] = {
		{"out", 0, 0, G_OPTION_ARG_FILENAME, &out,
		 "write to FILE (DER when it ends in .crl or .der, else PEM)", "FILE"},
		{"der", 0, 0, G_OPTION_ARG_NONE, &der_out, "DER instead of PEM", NULL},
		G_OPTION_ENTRY_NULL
	};
	g_autoptr(GError) e = NULL;
	g_autoptr(PGresult) r = NULL;
	g_autoptr(GBytes) der = NULL;
	const unsigned char *d;
	X509_CRL *crl = NULL;
	BIO *bio = NULL;
	KmsVault *v;
	int rc;

	if ((rc = kmsctl_parse(ctl, &argc, &argv, entries, "",
	    "Print the CRL kmsd published last (PEM on stdout).")) != KMSCTL_OK)
		return rc;
	if (argc > 1) {
		fprintf(stderr, "kmsctl crl: unexpected argument '%s'\n", argv[1]);
		return KMSCTL_USAGE;
	}
	if (out && (g_str_has_suffix(out, ".crl") || g_str_has_suffix(out, ".der")))
		der_out = TRUE;
	if (der_out && out == NULL && isatty(STDOUT_FILENO)) {
		fprintf(stderr, "kmsctl crl: --der writes binary data; use --out FILE\n");
		return KMSCTL_USAGE;
	}
	if ((v = kmsctl_connect(ctl)) == NULL)
		return KMSCTL_FAIL;
	r = kms_db_run(kms_vault_db(v), "SELECT crl, crl_number FROM ca"
	    " WHERE status = 'active' AND crl IS NOT NULL", NULL, &e);
	kms_vault_close(v);
	if (r == NULL)
		return kmsctl_fail_error(e);
	if (PQntuples(r) == 0)
		return kmsctl_fail("no CRL published yet: is kmsd running?");
	der = kms_db_get_bytes(r, 0, 0);
	d = g_bytes_get_data(der, NULL);
	if ((crl = d2i_X509_CRL(NULL, &d, (long)g_bytes_get_size(der))) == NULL) {
		ERR_clear_error();
		return kmsctl_fail("the CRL stored in the vault does not parse");
	}
	if (der_out) {
		if (out)
			rc = g_file_set_contents(out, g_bytes_get_data(der, NULL),
			    (gssize)g_bytes_get_size(der), &e) ? KMSCTL_OK : kmsctl_fail_error(e);
		else
			rc = fwrite(g_bytes_get_data(der, NULL), 1, g_bytes_get_size(der), stdout)
			    == g_bytes_get_size(der) ? KMSCTL_OK : kmsctl_fail("cannot write stdout");
	} else {
		char *pem;
		long len;

		bio = BIO_new(BIO_s_mem());
		if (bio == NULL || !PEM_write_bio_X509_CRL(bio, crl) ||
		    (len = BIO_get_mem_data(bio, &pem)) <= 0)
			rc = kmsctl_fail("cannot encode the CRL");
		else if (out)
			rc = g_file_set_contents(out, pem, len, &e) ? KMSCTL_OK : kmsctl_fail_error(e);
		else
			rc = fwrite(pem, 1, (size_t)len, stdout) == (size_t)len ? KMSCTL_OK :
			    kmsctl_fail("cannot write stdout");
	}
	if (rc == KMSCTL_OK && out)
		printf("CRL %s written to %s (%s)\n", PQgetvalue(r, 0, 1), out,
		    der_out ? "DER" : "PEM");
	ERR_clear_error();
	BIO_free(bio);
	X509_CRL_free(crl);
	return rc;
}
