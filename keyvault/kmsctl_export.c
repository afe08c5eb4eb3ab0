/*
 * NAME
 *	kmsctl transport-cert, export, import - moving users between vaults
 * SYNOPSIS
 *	kmsctl transport-cert [--out FILE]
 *	kmsctl export ADDR... | --all --to TARGET.crt --fingerprint FIRST8HEX --out BUNDLE
 *	kmsctl export --fetch ID --out BUNDLE
 *	kmsctl import BUNDLE [--source-fingerprint HEX]
 *	kmsctl import --report ID BUNDLE
 * DESCRIPTION
 *	transport-cert prints this vault's transport certificate (PEM) and
 *	its SHA-256 fingerprint, for the administrator of a source vault.
 *	export checks the target certificate against the fingerprint the
 *	administrator was told out of band (its first 8 hex digits at
 *	least, any case), queues an "export" request for kmsd (export.h) and
 *	waits for it; then writes the bundle kmsd left in requests.result to
 *	BUNDLE (mode 0600, never over an existing file), clears that column
 *	and writes the report BUNDLE.explog. import queues an "import"
 *	request carrying the bundle (requests.result; its SHA-256 in the
 *	payload), waits, and writes BUNDLE.implog. An export or import the
 *	approval policy holds prints its request id and exits; once kmsd has
 *	done it, export --fetch writes the bundle and import --report writes
 *	BUNDLE.implog (BUNDLE must be the file the request carried: its
 *	SHA-256 is compared with the payload's). A request kmsd refuses
 *	ends the command with exit 1 and kmsd's reason. When no kmsd answers
 *	within --timeout seconds the request is cancelled (a row kmsd is
 *	working on cannot be: then its outcome is waited for).
 * SECURITY
 *	No startup password: kmsd opens the keys. The bundle is encrypted to
 *	the target vault; kmsctl only moves it. Reports hold addresses,
 *	serials and counts.
 */
#include "autoconfig.h"
#include "kmsctl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "common/secret.h"
#include "smime/ca.h"
#include "smime/x509util.h"

#define WAIT_DEFAULT 120
#define BUNDLE_MAX (512 * 1024 * 1024)

/* Member NAME of O when it is an array, else NULL (borrowed). */
static JsonArray *
array_member(JsonObject *o, const char *name)
{
	JsonNode *n = o ? json_object_get_member(o, name) : NULL;

	return n && JSON_NODE_HOLDS_ARRAY(n) ? json_node_get_array(n) : NULL;
}

/* A certificate from FILE, PEM or DER; NULL with *err. X509_free. */
static X509 *
read_cert(const char *file, GError **err)
{
	g_autofree char *data = NULL;
	gsize len;
	STACK_OF(X509) *sk;
	X509 *x;

	if (!g_file_get_contents(file, &data, &len, err))
		return NULL;
	if ((x = kms_x509_from_der(data, len)) != NULL)
		return x;
	if ((sk = kms_x509_read_pem_file(file, err)) == NULL)
		return NULL;
	x = sk_X509_shift(sk);
	sk_X509_pop_free(sk, X509_free);
	return x;
}

/* "ab:CD 12" -> "abcd12"; NULL when not hex. g_free. */
static char *
normalize_hex(const char *s)
{
	GString *o = g_string_new(NULL);

	for (; *s; s++) {
		if (*s == ':' || *s == ' ')
			continue;
		if (!g_ascii_isxdigit(*s)) {
			g_string_free(o, TRUE);
			return NULL;
		}
		g_string_append_c(o, g_ascii_tolower(*s));
	}
	return g_string_free(o, FALSE);
}

/*
 * Create request KIND with PAYLOAD and DATA (requests.result, may be
 * NULL) and wake kmsd; *id gets its row, *queued whether kmsd may run it
 * now. Signed by the acting administrator and gated by the approval
 * policy (kmsctl_request).
 */
static gboolean
submit_request(KmsCtl *ctl, PGconn *db, const char *kind, JsonObject *payload, GBytes *data,
    gint64 *id, gboolean *queued, GError **err)
{
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	gboolean pending;

	/* the payload carries the bundle's SHA-256: the signatures cover it */
	if (!kms_db_begin(db, err) ||
	    !kmsctl_request(ctl, db, kind, payload, id, &pending, err))
		goto failed;
	if (data) {
		kms_db_param_int(&p, *id);
		kms_db_param_bytes(&p, g_bytes_get_data(data, NULL), g_bytes_get_size(data));
		if (!kms_db_exec(db, "UPDATE requests SET result = $2 WHERE id = $1", &p, err))
			goto failed;
	}
	if (!kms_db_commit(db, err))
		goto failed;
	*queued = !pending;
	return TRUE;
failed:
	kms_db_rollback(db);
	return FALSE;
}

/* Wait up to TIMEOUT seconds for request ID to finish; *status (g_free)
 * and *why (last_error, g_free) get its outcome. A request still queued
 * at the end is cancelled ("failed"). */
static gboolean
wait_request(PGconn *db, gint64 id, int timeout, char **status, char **why, GError **err)
{
	gint64 end = g_get_monotonic_time() + (gint64)timeout * G_USEC_PER_SEC;
	gboolean told = FALSE;

	for (;;) {
		KmsDbParams p = KMS_DB_PARAMS_INIT;
		g_autoptr(PGresult) r = NULL;
		const char *s;

		kms_db_param_int(&p, id);
		if ((r = kms_db_run(db, "SELECT status, coalesce(last_error, ''),"
		    " (SELECT count(*) FROM workers WHERE heartbeat_at > now() - interval '1 minute')"
		    " FROM requests WHERE id = $1", &p, err)) == NULL)
			return FALSE;
		s = PQgetvalue(r, 0, 0);
		if (strcmp(s, "queued") != 0 && strcmp(s, "running") != 0) {
			*status = g_strdup(s);
			*why = g_strdup(PQgetvalue(r, 0, 1));
			return TRUE;
		}
		if (!told && kms_db_get_int(r, 0, 2) == 0) {
			fprintf(stderr, "kmsctl: no kmsd is running; waiting up to %d s for one to do"
			    " request %" G_GINT64_FORMAT "\n", timeout, id);
			told = TRUE;
		}
		if (g_get_monotonic_time() >= end)
			break;
		g_usleep(G_USEC_PER_SEC / 5);
	}
	{
		/* blocks while a kmsd holds the row, then sees its outcome */
		KmsDbParams p = KMS_DB_PARAMS_INIT;
		g_autoptr(PGresult) r = NULL;
		g_autofree char *msg = g_strdup_printf("cancelled by kmsctl: no kmsd did it within"
		    " %d s", timeout);

		kms_db_param_int(&p, id);
		kms_db_param_text(&p, msg);
		if ((r = kms_db_run(db, "UPDATE requests SET status = 'failed', finished_at = now(),"
		    " last_error = $2, result = NULL WHERE id = $1 AND status = 'queued'"
		    " RETURNING id", &p, err)) == NULL)
			return FALSE;
		if (PQntuples(r) == 1) {
			*status = g_strdup("failed");
			*why = g_strdup_printf("no kmsd answered request %" G_GINT64_FORMAT " within %d s"
			    " (is kmsd running?); the request was cancelled", id, timeout);
			return TRUE;
		}
	}
	{
		/* a kmsd finished it meanwhile (or holds it: say so) */
		KmsDbParams p = KMS_DB_PARAMS_INIT;
		g_autoptr(PGresult) r = NULL;

		kms_db_param_int(&p, id);
		if ((r = kms_db_run(db, "SELECT status, coalesce(last_error, '') FROM requests"
		    " WHERE id = $1", &p, err)) == NULL)
			return FALSE;
		*status = g_strdup(PQgetvalue(r, 0, 0));
		*why = *PQgetvalue(r, 0, 1) ? g_strdup(PQgetvalue(r, 0, 1)) :
		    g_strdup_printf("request %" G_GINT64_FORMAT " is still %s", id, *status);
		return TRUE;
	}
}

/* Write DATA to a new FILE (never over an existing one) with MODE. */
static gboolean
write_new_file(const char *file, const void *data, gsize len, int mode, GError **err)
{
	int fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	const char *p = data;

	if (fd < 0) {
		g_set_error(err, G_FILE_ERROR, g_file_error_from_errno(errno), "cannot create %s: %s",
		    file, g_strerror(errno));
		return FALSE;
	}
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			goto fail;
		p += n;
		len -= (gsize)n;
	}
	if (fsync(fd) != 0)
		goto fail;
	if (close(fd) != 0) {
		fd = -1;
		goto fail;
	}
	return TRUE;
fail:
	g_set_error(err, G_FILE_ERROR, g_file_error_from_errno(errno), "cannot write %s: %s", file,
	    g_strerror(errno));
	if (fd >= 0)
		close(fd);
	unlink(file);
	return FALSE;
}

/* The report kmsd left in request ID's payload; NULL when none. */
static JsonObject *
request_report(PGconn *db, gint64 id, JsonParser *parser, GError **err)
{
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	g_autoptr(PGresult) r = NULL;
	JsonNode *root;

	kms_db_param_int(&p, id);
	if ((r = kms_db_run(db, "SELECT coalesce(payload->'report', '{}')::text FROM requests"
	    " WHERE id = $1", &p, err)) == NULL)
		return NULL;
	if (PQntuples(r) != 1 || !json_parser_load_from_data(parser, PQgetvalue(r, 0, 0), -1, err))
		return NULL;
	root = json_parser_get_root(parser);
	return JSON_NODE_HOLDS_OBJECT(root) ? json_node_get_object(root) : NULL;
}

static char *
now_iso(void)
{
	g_autoptr(GDateTime) dt = g_date_time_new_now_utc();

	return g_date_time_format(dt, "%Y-%m-%dT%H:%M:%SZ");
}

/* Write TEXT to FILE (a report: public, overwritten). */
static void
write_log(const char *file, GString *text)
{
	g_autoptr(GError) e = NULL;

	if (!g_file_set_contents(file, text->str, (gssize)text->len, &e))
		fprintf(stderr, "kmsctl: warning: %s\n", e->message);
}

/* kmsctl transport-cert [--out FILE] */
int
kmsctl_cmd_transport_cert(KmsCtl *ctl, int argc, char **argv)
{
	g_autofree char *out = NULL, *pem = NULL, *sha = NULL;
	const GOptionEntry entries[] = {
		{"out", 'o', 0, G_OPTION_ARG_FILENAME, &out, "write the certificate (PEM) to FILE",
		 "FILE"},
		G_OPTION_ENTRY_NULL
	};
	g_autoptr(GError) e = NULL;
	g_autoptr(PGresult) r = NULL;
	g_autoptr(GBytes) der = NULL;
	KmsVault *v;
	X509 *x;
	int rc;

	if ((rc = kmsctl_parse(ctl, &argc, &argv, entries, "",
	    "Print this vault's transport certificate, which other vaults export to.")) != KMSCTL_OK)
		return rc;
	if (argc > 1) {
		fprintf(stderr, "kmsctl transport-cert: unexpected argument '%s'\n", argv[1]);
		return KMSCTL_USAGE;
	}
	if ((v = kmsctl_connect(ctl)) == NULL)
		return KMSCTL_FAIL;
	r = kms_db_run(kms_vault_db(v), "SELECT certificate FROM transport_keys"
	    " WHERE status = 'active'", NULL, &e);
	kms_vault_close(v);
	if (r == NULL)
		return kmsctl_fail_error(e);
	if (PQntuples(r) == 0)
		return kmsctl_fail("this vault has no transport key yet: kmsd makes one when it"
		    " starts");
	der = kms_db_get_bytes(r, 0, 0);
	if ((x = kms_x509_from_der(g_bytes_get_data(der, NULL), g_bytes_get_size(der))) == NULL)
		return kmsctl_fail("the transport certificate stored in the vault does not parse");
	pem = kms_x509_to_pem(x);
	sha = kms_x509_sha256_hex(x);
	X509_free(x);
	if (out) {
		if (!g_file_set_contents(out, pem, -1, &e))
			return kmsctl_fail_error(e);
		printf("transport certificate written to %s\n", out);
	} else
		fputs(pem, stdout);
	printf("Fingerprint: %s\n", sha);
	printf("(give the source vault's administrator the certificate, and the fingerprint by"
	    " another channel: kmsctl export --fingerprint %.8s)\n", sha);
	return KMSCTL_OK;
}

/* Write BUNDLE from request ID, clear the column, write BUNDLE.explog. */
static int
fetch_bundle(PGconn *db, gint64 id, const char *out)
{
	g_autoptr(GError) e = NULL;
	g_autoptr(PGresult) r = NULL;
	g_autoptr(GBytes) bundle = NULL;
	g_autoptr(JsonParser) parser = json_parser_new();
	g_autoptr(GString) log = g_string_new(NULL);
	g_autofree char *logfile = NULL, *now = NULL;
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	JsonObject *rep;
	JsonArray *users;
	gint64 revoked = 0;

	kms_db_param_int(&p, id);
	if ((r = kms_db_run(db, "SELECT result, status FROM requests WHERE id = $1 AND kind = 'export'",
	    &p, &e)) == NULL)
		return kmsctl_fail_error(e);
	if (PQntuples(r) == 0)
		return kmsctl_fail("no export request %" G_GINT64_FORMAT, id);
	if (strcmp(PQgetvalue(r, 0, 1), "done") != 0)
		return kmsctl_fail("export request %" G_GINT64_FORMAT " is %s, not done", id,
		    PQgetvalue(r, 0, 1));
	if (PQgetisnull(r, 0, 0))
		return kmsctl_fail("export request %" G_GINT64_FORMAT " holds no bundle any more"
		    " (it was written out before)", id);
	bundle = kms_db_get_bytes(r, 0, 0);
	if (!write_new_file(out, g_bytes_get_data(bundle, NULL), g_bytes_get_size(bundle), 0600,
	    &e))
		return kmsctl_fail("%s; the bundle stays in request %" G_GINT64_FORMAT ": kmsctl"
		    " export --fetch %" G_GINT64_FORMAT " --out FILE", e->message, id, id);
	kms_db_param_int(&p, id);
	if (!kms_db_exec(db, "UPDATE requests SET result = NULL WHERE id = $1", &p, &e))
		fprintf(stderr, "kmsctl: warning: cannot clear request %" G_GINT64_FORMAT
		    "'s copy of the bundle: %s\n", id, e->message);
	if ((rep = request_report(db, id, parser, &e)) == NULL)
		return kmsctl_fail("bundle written to %s, but request %" G_GINT64_FORMAT " has no"
		    " report", out, id);
	users = array_member(rep, "users");
	now = now_iso();
	g_string_append_printf(log, "kmsmilter export log\nwritten: %s\nbundle file: %s\n"
	    "bundle id: %s\nrequest: %" G_GINT64_FORMAT "\nsource transport certificate: %s\n"
	    "target transport certificate: %s\nusers: %u\nkeys: %" G_GINT64_FORMAT "\n"
	    "revocation reason: %s\n", now, out,
	    json_object_get_string_member_with_default(rep, "bundle_id", "?"), id,
	    json_object_get_string_member_with_default(rep, "source", "?"),
	    json_object_get_string_member_with_default(rep, "target", "?"),
	    users ? json_array_get_length(users) : 0,
	    json_object_get_int_member_with_default(rep, "keys", 0),
	    json_object_get_string_member_with_default(rep, "revocation_reason", "?"));
	for (guint i = 0; users && i < json_array_get_length(users); i++) {
		JsonObject *u = json_array_get_object_element(users, i);
		JsonArray *certs = array_member(u, "certificates");

		g_string_append_printf(log, "user %s: %" G_GINT64_FORMAT " escrowed key(s) exported"
		    " and removed here, %" G_GINT64_FORMAT " certificate(s) revoked\n",
		    json_object_get_string_member_with_default(u, "address", "?"),
		    json_object_get_int_member_with_default(u, "keys", 0),
		    json_object_get_int_member_with_default(u, "revoked", 0));
		revoked += json_object_get_int_member_with_default(u, "revoked", 0);
		for (guint k = 0; certs && k < json_array_get_length(certs); k++) {
			JsonObject *c = json_array_get_object_element(certs, k);

			g_string_append_printf(log, "  certificate serial %s (%s), sha256 %s, was %s\n",
			    json_object_get_string_member_with_default(c, "serial", "?"),
			    json_object_get_string_member_with_default(c, "usage", "?"),
			    json_object_get_string_member_with_default(c, "sha256", "?"),
			    json_object_get_string_member_with_default(c, "was", "?"));
		}
	}
	logfile = g_strconcat(out, ".explog", NULL);
	write_log(logfile, log);
	printf("exported %u user%s with %" G_GINT64_FORMAT " key%s to the vault with transport"
	    " certificate %.8s: bundle %s (id %s), report %s\n", users ? json_array_get_length(users)
	    : 0, users && json_array_get_length(users) == 1 ? "" : "s",
	    json_object_get_int_member_with_default(rep, "keys", 0),
	    json_object_get_int_member_with_default(rep, "keys", 0) == 1 ? "" : "s",
	    json_object_get_string_member_with_default(rep, "target", "?"), out,
	    json_object_get_string_member_with_default(rep, "bundle_id", "?"), logfile);
	printf("their keys are no longer held here; %" G_GINT64_FORMAT " certificate%s revoked"
	    " (CRL update queued)\n", revoked, revoked == 1 ? "" : "s");
	return KMSCTL_OK;
}

/* kmsctl export ADDR... | --all --to CERT --fingerprint HEX --out BUNDLE */
int
kmsctl_cmd_export(KmsCtl *ctl, int argc, char **argv)
{
	g_autofree char *to = NULL, *fp_arg = NULL, *out = NULL, *fp = NULL, *sha = NULL;
	g_autofree char *status = NULL, *why = NULL, *b64 = NULL;
	gboolean all = FALSE;
	gint64 fetch = 0, id;
	int timeout = WAIT_DEFAULT;
	const GOptionEntry entries[] = {
		{"all", 0, 0, G_OPTION_ARG_NONE, &all, "every user holding an escrowed key", NULL},
		{"to", 0, 0, G_OPTION_ARG_FILENAME, &to,
		 "the target vault's transport certificate (kmsctl transport-cert there)", "CERT"},
		{"fingerprint", 0, 0, G_OPTION_ARG_STRING, &fp_arg,
		 "the start (8 hex digits at least) of its SHA-256 fingerprint, as the target's"
		 " administrator read it to you", "HEX"},
		{"out", 'o', 0, G_OPTION_ARG_FILENAME, &out, "write the bundle to FILE (new)", "FILE"},
		{"timeout", 0, 0, G_OPTION_ARG_INT, &timeout,
		 "seconds to wait for kmsd (default 120)", "S"},
		{"fetch", 0, 0, G_OPTION_ARG_INT64, &fetch,
		 "write out the bundle of an export request that is done", "ID"},
		G_OPTION_ENTRY_NULL
	};
	g_autoptr(GError) e = NULL;
	g_autoptr(JsonObject) payload = json_object_new();
	g_autoptr(JsonArray) addrs = json_array_new();
	unsigned char rnd[16];
	char bundle_id[40];
	KmsVault *v;
	X509 *target;
	gboolean queued;
	int rc;

	if ((rc = kmsctl_parse(ctl, &argc, &argv, entries, "ADDR... | --all",
	    "Export users and their key history to another vault; they leave this one."))
	    != KMSCTL_OK)
		return rc;
	if (out == NULL || (fetch == 0 && (to == NULL || fp_arg == NULL ||
	    (argc < 2) == !all)) || timeout < 1) {
		fprintf(stderr, "usage: kmsctl export ADDR... | --all --to CERT --fingerprint HEX"
		    " --out BUNDLE\n       kmsctl export --fetch ID --out BUNDLE\n");
		return KMSCTL_USAGE;
	}
	if (g_file_test(out, G_FILE_TEST_EXISTS))
		return kmsctl_fail("%s exists; refusing to overwrite it%s", out,
		    fetch ? "" : "; nothing exported");
	if (fetch) {
		if ((v = kmsctl_connect(ctl)) == NULL)
			return KMSCTL_FAIL;
		rc = fetch_bundle(kms_vault_db(v), fetch, out);
		kms_vault_close(v);
		return rc;
	}
	if ((fp = normalize_hex(fp_arg)) == NULL || strlen(fp) < 8 || strlen(fp) > 64) {
		fprintf(stderr, "kmsctl export: --fingerprint wants 8 to 64 hex digits, got '%s'\n",
		    fp_arg);
		return KMSCTL_USAGE;
	}
	if ((target = read_cert(to, &e)) == NULL)
		return kmsctl_fail("%s: not a certificate (%s); nothing exported", to,
		    e ? e->message : "no certificate");
	sha = kms_x509_sha256_hex(target);
	{
		GBytes *der = kms_x509_to_der(target);

		b64 = g_base64_encode(g_bytes_get_data(der, NULL), g_bytes_get_size(der));
		g_bytes_unref(der);
	}
	X509_free(target);
	if (strncmp(sha, fp, strlen(fp)) != 0)
		return kmsctl_fail("fingerprint mismatch: %s has SHA-256 fingerprint %.*s..., --fingerprint"
		    " says %s; nothing exported", to, (int)strlen(fp), sha, fp);
	if (!kms_random(rnd, sizeof(rnd), &e))
		return kmsctl_fail_error(e);
	g_snprintf(bundle_id, sizeof(bundle_id), "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
	    "%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6],
	    rnd[7], rnd[8], rnd[9], rnd[10], rnd[11], rnd[12], rnd[13], rnd[14], rnd[15]);
	for (int i = 1; i < argc; i++)
		json_array_add_string_element(addrs, argv[i]);
	json_object_set_string_member(payload, "bundle_id", bundle_id);
	json_object_set_boolean_member(payload, "all", all);
	json_object_set_array_member(payload, "addresses", json_array_ref(addrs));
	json_object_set_string_member(payload, "target_certificate", b64);
	json_object_set_string_member(payload, "fingerprint", fp);
	if ((v = kmsctl_connect(ctl)) == NULL)
		return KMSCTL_FAIL;
	if (!submit_request(ctl, kms_vault_db(v), "export", payload, NULL, &id, &queued, &e)) {
		rc = kmsctl_fail("%s; nothing exported", e->message);
		goto out;
	}
	if (!queued) {
		printf("Request: %" G_GINT64_FORMAT "\nthe export waits for approvals; once done:"
		    " kmsctl export --fetch %" G_GINT64_FORMAT " --out %s\n", id, id, out);
		rc = KMSCTL_OK;
		goto out;
	}
	if (!wait_request(kms_vault_db(v), id, timeout, &status, &why, &e)) {
		rc = kmsctl_fail("%s (request %" G_GINT64_FORMAT ")", e->message, id);
		goto out;
	}
	if (strcmp(status, "done") != 0)
		rc = kmsctl_fail("export refused: %s; nothing exported", *why ? why : status);
	else
		rc = fetch_bundle(kms_vault_db(v), id, out);
out:
	kms_vault_close(v);
	return rc;
}

/* FILE read whole as a bundle; NULL with *err. g_bytes_unref. */
static GBytes *
read_bundle(const char *file, GError **err)
{
	struct stat st;
	char *data;
	gsize len;

	if (stat(file, &st) != 0) {
		int saved = errno;

		g_set_error(err, G_FILE_ERROR, g_file_error_from_errno(saved), "%s: %s", file,
		    g_strerror(saved));
		return NULL;
	}
	if (st.st_size > BUNDLE_MAX) {
		g_set_error(err, G_FILE_ERROR, G_FILE_ERROR_FAILED, "%s: larger than %d MiB, not a"
		    " bundle", file, BUNDLE_MAX >> 20);
		return NULL;
	}
	if (!g_file_get_contents(file, &data, &len, err))
		return NULL;
	return g_bytes_new_take(data, len);
}

/*
 * Write FILE.implog from the report kmsd left in import request ID (done)
 * and print the summary; SHA is FILE's SHA-256. The direct import and
 * import --report both end here.
 */
static int
write_import_report(PGconn *db, gint64 id, const char *file, const char *sha)
{
	g_autoptr(GError) e = NULL;
	g_autoptr(JsonParser) parser = json_parser_new();
	g_autoptr(GString) log = g_string_new(NULL);
	g_autofree char *logfile = NULL, *now = NULL;
	JsonObject *rep;
	JsonArray *users;

	if ((rep = request_report(db, id, parser, &e)) == NULL)
		return kmsctl_fail("imported, but request %" G_GINT64_FORMAT " has no report", id);
	users = array_member(rep, "users");
	now = now_iso();
	g_string_append_printf(log, "kmsmilter import log\nwritten: %s\nbundle file: %s (sha256 %s)\n"
	    "bundle id: %s\nrequest: %" G_GINT64_FORMAT "\nsource transport certificate: %s\n"
	    "target transport certificate: %s\nusers: %u\nkeys imported: %" G_GINT64_FORMAT "\n"
	    "keys already held: %" G_GINT64_FORMAT "\n", now, file, sha,
	    json_object_get_string_member_with_default(rep, "bundle_id", "?"), id,
	    json_object_get_string_member_with_default(rep, "source", "?"),
	    json_object_get_string_member_with_default(rep, "target", "?"),
	    users ? json_array_get_length(users) : 0,
	    json_object_get_int_member_with_default(rep, "keys", 0),
	    json_object_get_int_member_with_default(rep, "already_held", 0));
	for (guint i = 0; users && i < json_array_get_length(users); i++) {
		JsonObject *u = json_array_get_object_element(users, i);
		JsonArray *serials = array_member(u, "serials");

		g_string_append_printf(log, "user %s (%s): %" G_GINT64_FORMAT " key(s) imported, %"
		    G_GINT64_FORMAT " already held; certificates:",
		    json_object_get_string_member_with_default(u, "address", "?"),
		    json_object_get_boolean_member_with_default(u, "new_user", FALSE) ? "new user" :
		    "existing user", json_object_get_int_member_with_default(u, "keys", 0),
		    json_object_get_int_member_with_default(u, "already_held", 0));
		for (guint k = 0; serials && k < json_array_get_length(serials); k++)
			g_string_append_printf(log, " %s", json_array_get_string_element(serials, k));
		g_string_append_c(log, '\n');
	}
	logfile = g_strconcat(file, ".implog", NULL);
	write_log(logfile, log);
	printf("imported bundle %s from the vault with transport certificate %.8s: %u user%s,"
	    " %" G_GINT64_FORMAT " key%s; report %s\n",
	    json_object_get_string_member_with_default(rep, "bundle_id", "?"),
	    json_object_get_string_member_with_default(rep, "source", "?"),
	    users ? json_array_get_length(users) : 0,
	    users && json_array_get_length(users) == 1 ? "" : "s",
	    json_object_get_int_member_with_default(rep, "keys", 0),
	    json_object_get_int_member_with_default(rep, "keys", 0) == 1 ? "" : "s", logfile);
	return KMSCTL_OK;
}

/* What an import request in STATUS (not done) is doing, for a refusal. */
static const char *
not_done_phrase(const char *status)
{
	if (strcmp(status, "awaiting-approval") == 0)
		return "still waits for approvals (kmsctl requests list)";
	if (strcmp(status, "queued") == 0 || strcmp(status, "running") == 0)
		return "is approved but kmsd has not done it yet (is kmsd running?)";
	if (strcmp(status, "failed") == 0)
		return "failed: nothing was imported";
	if (strcmp(status, "rejected") == 0)
		return "was rejected: nothing was imported";
	if (strcmp(status, "expired") == 0)
		return "expired before it was approved: nothing was imported";
	return "is not done";
}

/*
 * kmsctl import --report ID BUNDLE: the .implog of an import request
 * that waited for approvals, once kmsd has done it. BUNDLE must be the
 * file the request carried (same SHA-256), so the report names it.
 */
static int
report_import(PGconn *db, gint64 id, const char *file)
{
	g_autoptr(GError) e = NULL;
	g_autoptr(GBytes) bundle = NULL;
	g_autoptr(PGresult) r = NULL;
	g_autofree char *sha = NULL;
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	const char *kind, *status, *why, *want;

	if ((bundle = read_bundle(file, &e)) == NULL)
		return kmsctl_fail_error(e);
	sha = g_compute_checksum_for_bytes(G_CHECKSUM_SHA256, bundle);
	kms_db_param_int(&p, id);
	r = kms_db_run(db, "SELECT kind, status, coalesce(last_error, ''),"
	    " coalesce(payload->>'bundle_sha256', '') FROM requests WHERE id = $1", &p, &e);
	if (r == NULL)
		return kmsctl_fail_error(e);
	if (PQntuples(r) == 0)
		return kmsctl_fail("no request %" G_GINT64_FORMAT, id);
	kind = PQgetvalue(r, 0, 0);
	status = PQgetvalue(r, 0, 1);
	why = PQgetvalue(r, 0, 2);
	want = PQgetvalue(r, 0, 3);
	if (strcmp(kind, "import") != 0)
		return kmsctl_fail("request %" G_GINT64_FORMAT " is %s %s request, not an import",
		    id, *kind && strchr("aeiou", *kind) ? "an" : "a", kind);
	if (strcmp(sha, want) != 0)
		return kmsctl_fail("%s is not the bundle of import request %" G_GINT64_FORMAT
		    " (its SHA-256 is %.16s..., the request's bundle has %.16s...);"
		    " no report written", file, id, sha, *want ? want : "none");
	if (strcmp(status, "done") != 0)
		return kmsctl_fail("import request %" G_GINT64_FORMAT " %s%s%s; no report written",
		    id, not_done_phrase(status), *why ? ": " : "", why);
	return write_import_report(db, id, file, sha);
}

/* kmsctl import BUNDLE [--source-fingerprint HEX] | --report ID BUNDLE */
int
kmsctl_cmd_import(KmsCtl *ctl, int argc, char **argv)
{
	g_autofree char *src_arg = NULL, *src = NULL, *status = NULL, *why = NULL;
	g_autofree char *sha = NULL, *base = NULL, *report_arg = NULL;
	int timeout = WAIT_DEFAULT;
	const GOptionEntry entries[] = {
		{"source-fingerprint", 0, 0, G_OPTION_ARG_STRING, &src_arg,
		 "refuse the bundle unless the source vault's transport certificate starts so", "HEX"},
		{"timeout", 0, 0, G_OPTION_ARG_INT, &timeout,
		 "seconds to wait for kmsd (default 120)", "S"},
		{"report", 0, 0, G_OPTION_ARG_STRING, &report_arg,
		 "write BUNDLE.implog for import request ID that waited for approvals", "ID"},
		G_OPTION_ENTRY_NULL
	};
	g_autoptr(GError) e = NULL;
	g_autoptr(JsonObject) payload = json_object_new();
	g_autoptr(GBytes) bundle = NULL;
	KmsVault *v;
	gboolean queued;
	guint64 report = 0;
	gint64 id;
	int rc;

	if ((rc = kmsctl_parse(ctl, &argc, &argv, entries, "BUNDLE",
	    "Import users and their key history from a bundle another vault exported.")) != KMSCTL_OK)
		return rc;
	if (argc != 2 || timeout < 1 || (report_arg && (src_arg ||
	    !g_ascii_string_to_unsigned(report_arg, 10, 1, G_MAXINT64, &report, NULL)))) {
		fprintf(stderr, "usage: kmsctl import BUNDLE [--source-fingerprint HEX]\n"
		    "       kmsctl import --report ID BUNDLE\n");
		return KMSCTL_USAGE;
	}
	if (src_arg && ((src = normalize_hex(src_arg)) == NULL || strlen(src) < 8)) {
		fprintf(stderr, "kmsctl import: --source-fingerprint wants 8 to 64 hex digits\n");
		return KMSCTL_USAGE;
	}
	if (report_arg) {
		if ((v = kmsctl_connect(ctl)) == NULL)
			return KMSCTL_FAIL;
		rc = report_import(kms_vault_db(v), (gint64)report, argv[1]);
		kms_vault_close(v);
		return rc;
	}
	if ((bundle = read_bundle(argv[1], &e)) == NULL)
		return kmsctl_fail_error(e);
	sha = g_compute_checksum_for_bytes(G_CHECKSUM_SHA256, bundle);
	base = g_path_get_basename(argv[1]);
	json_object_set_string_member(payload, "file", base);
	json_object_set_int_member(payload, "size", (gint64)g_bytes_get_size(bundle));
	json_object_set_string_member(payload, "bundle_sha256", sha);
	if (src)
		json_object_set_string_member(payload, "source_fingerprint", src);
	if ((v = kmsctl_connect(ctl)) == NULL)
		return KMSCTL_FAIL;
	if (!submit_request(ctl, kms_vault_db(v), "import", payload, bundle, &id, &queued, &e)) {
		rc = kmsctl_fail("%s; nothing imported", e->message);
		goto out;
	}
	if (!queued) {
		printf("Request: %" G_GINT64_FORMAT "\nthe import waits for approvals; once done:"
		    " kmsctl import --report %" G_GINT64_FORMAT " %s\n", id, id, argv[1]);
		rc = KMSCTL_OK;
		goto out;
	}
	if (!wait_request(kms_vault_db(v), id, timeout, &status, &why, &e)) {
		rc = kmsctl_fail("%s (request %" G_GINT64_FORMAT ")", e->message, id);
		goto out;
	}
	if (strcmp(status, "done") != 0) {
		KmsDbParams p = KMS_DB_PARAMS_INIT;

		kms_db_param_int(&p, id);
		(void)kms_db_exec(kms_vault_db(v), "UPDATE requests SET result = NULL WHERE id = $1",
		    &p, NULL);
		rc = kmsctl_fail("import refused: %s; nothing imported", *why ? why : status);
		goto out;
	}
	rc = write_import_report(kms_vault_db(v), id, argv[1], sha);
out:
	kms_vault_close(v);
	return rc;
}
