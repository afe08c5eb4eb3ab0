/*
 * NAME
 *	vaulttool - test driver for the vault library (not installed)
 * SYNOPSIS
 *	vaulttool -c CONF -p PWFILE escrow ADDRESS KEY.pem   (prints the row id)
 *	vaulttool -c CONF -p PWFILE recover ROW_ID           (prints the key PEM)
 *	vaulttool -c CONF -p PWFILE ca-key                   (prints the CA key PEM)
 *	vaulttool -c CONF -p PWFILE issue encryption|signing ADDRESS PUB.pem
 *	vaulttool -c CONF -p PWFILE issue-record encryption|signing ADDRESS PUB.pem
 *	    (issue also records the certificate as issued to ADDRESS's user,
 *	    creating the users row if needed, as kmsd's enrollment does)
 *	vaulttool -c CONF -p PWFILE queue-reply ADDRESS TOKEN [CSR.der]
 *	    (what kmsmilter does with an accepted reply: marks the pending
 *	    token used and queues the enroll or recover request with the
 *	    password sealed to the queue key; prints the request id)
 *	vaulttool -c CONF -p PWFILE queue-reply -
 *	    (the same for each "ADDRESS TOKEN" line on standard input, in one
 *	    process: the benchmark queues hundreds)
 *	vaulttool -c CONF -p PWFILE open-password REQUEST_ID
 *	    (prints the PKCS#12 password sealed in an enroll or recover
 *	    request's payload, as kmsd opens it)
 *	vaulttool -c CONF -s SHARE1 -s SHARE2 ... COMMAND ...
 *	    (unseals with Shamir shares read from files instead of -p)
 * DESCRIPTION
 *	Lets the integration tests exercise sealing through the real vault
 *	API in separate processes ("restart the process") before kmsd's
 *	enrollment exists, and obtain the CA key legitimately through the
 *	unsealed API for the dump test.
 */
#include "autoconfig.h"

#include <stdio.h>
#include <string.h>

#include <json-glib/json-glib.h>
#include <openssl/pem.h>

#include "common/config.h"
#include "common/token.h"
#include "keyvault/certstore.h"
#include "keyvault/queuekey.h"
#include "keyvault/vaultca.h"
#include "smime/x509util.h"

static int
fail(const GError *e)
{
	fprintf(stderr, "vaulttool: %s\n", e ? e->message : "failed");
	return 1;
}

static int
escrow(KmsVault *v, const char *address, const char *keyfile)
{
	g_autoptr(GError) e = NULL;
	g_autoptr(KmsSecret) p8 = NULL;
	g_autoptr(GBytes) sealed = NULL;
	g_autoptr(PGresult) r = NULL;
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	PGconn *db = kms_vault_db(v);
	FILE *f = fopen(keyfile, "r");
	EVP_PKEY *key = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
	gint64 uid, id;

	if (f)
		fclose(f);
	if (key == NULL) {
		fprintf(stderr, "vaulttool: cannot read %s\n", keyfile);
		return 1;
	}
	p8 = kms_key_to_pkcs8(key, &e);
	EVP_PKEY_free(key);
	if (p8 == NULL || !kms_db_begin(db, &e))
		return fail(e);
	kms_db_param_text(&p, address);
	r = kms_db_run(db, "INSERT INTO users (address) VALUES ($1)"
	    " ON CONFLICT (lower(address)) DO UPDATE SET address = excluded.address RETURNING id",
	    &p, &e);
	if (r == NULL)
		return fail(e);
	uid = kms_db_get_int(r, 0, 0);
	if (!kms_vault_next_id(v, "escrowed_keys", &id, &e))
		return fail(e);
	sealed = kms_vault_seal(v, "escrowed_keys", "sealed_key", id, p8->data, p8->len, &e);
	if (sealed == NULL)
		return fail(e);
	kms_db_param_int(&p, id);
	kms_db_param_int(&p, uid);
	kms_db_param_int(&p, kms_vault_key_version(v));
	kms_db_param_bytes(&p, g_bytes_get_data(sealed, NULL), g_bytes_get_size(sealed));
	if (!kms_db_exec(db, "INSERT INTO escrowed_keys (id, user_id, key_type, key_version,"
	    " sealed_key) VALUES ($1, $2, 'test', $3, $4)", &p, &e) || !kms_db_commit(db, &e))
		return fail(e);
	printf("%" G_GINT64_FORMAT "\n", id);
	return 0;
}

static int
print_key(const KmsSecret *p8)
{
	g_autoptr(GError) e = NULL;
	EVP_PKEY *key = kms_key_from_pkcs8(p8, &e);

	if (key == NULL)
		return fail(e);
	PEM_write_PrivateKey(stdout, key, NULL, NULL, 0, NULL, NULL);
	EVP_PKEY_free(key);
	return 0;
}

static int
recover(KmsVault *v, const char *row)
{
	g_autoptr(GError) e = NULL;
	g_autoptr(PGresult) r = NULL;
	g_autoptr(GBytes) blob = NULL;
	g_autoptr(KmsSecret) p8 = NULL;
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	gint64 id = g_ascii_strtoll(row, NULL, 10);

	kms_db_param_int(&p, id);
	r = kms_db_run(kms_vault_db(v),
	    "SELECT key_version, sealed_key FROM escrowed_keys WHERE id = $1", &p, &e);
	if (r == NULL)
		return fail(e);
	if (PQntuples(r) != 1) {
		fprintf(stderr, "vaulttool: no escrowed key %s\n", row);
		return 1;
	}
	blob = kms_db_get_bytes(r, 0, 1);
	p8 = kms_vault_open_value(v, "escrowed_keys", "sealed_key", id,
	    (int)kms_db_get_int(r, 0, 0), blob, &e);
	return p8 ? print_key(p8) : fail(e);
}

static int
ca_key(KmsVault *v)
{
	g_autoptr(GError) e = NULL;
	KmsVaultCa *ca = kms_vault_ca_load(v, &e);
	EVP_PKEY *key = ca ? kms_vault_ca_key(v, ca, &e) : NULL;
	int rc = key ? 0 : fail(e);

	if (key)
		PEM_write_PrivateKey(stdout, key, NULL, NULL, 0, NULL, NULL);
	EVP_PKEY_free(key);
	kms_vault_ca_free(ca);
	return rc;
}

/* Record CERT as issued to ADDRESS (users row created when missing). */
static gboolean
record_issued(KmsVault *v, X509 *cert, const char *usage, const char *address, GError **err)
{
	PGconn *db = kms_vault_db(v);
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	g_autoptr(PGresult) r = NULL;

	if (!kms_db_begin(db, err))
		return FALSE;
	kms_db_param_text(&p, address);
	r = kms_db_run(db, "INSERT INTO users (address) VALUES ($1)"
	    " ON CONFLICT (lower(address)) DO UPDATE SET address = users.address RETURNING id",
	    &p, err);
	if (r == NULL || kms_certstore_add_issued(db, cert, usage, kms_db_get_int(r, 0, 0),
	    err) == 0 || !kms_db_commit(db, err)) {
		kms_db_rollback(db);
		return FALSE;
	}
	return TRUE;
}

static int
issue(KmsVault *v, const KmsConfig *cfg, const char *profile, const char *address,
    const char *pubfile, gboolean record)
{
	g_autoptr(GError) e = NULL;
	KmsVaultCa *ca = kms_vault_ca_load(v, &e);
	EVP_PKEY *cakey = ca ? kms_vault_ca_key(v, ca, &e) : NULL;
	FILE *f = fopen(pubfile, "r");
	EVP_PKEY *pub = f ? PEM_read_PUBKEY(f, NULL, NULL, NULL) : NULL;
	KmsIssueParams ip = {
		strcmp(profile, "signing") == 0 ? KMS_PROFILE_SIGNING : KMS_PROFILE_ENCRYPTION,
		address, NULL, (int)kms_config_get_int(cfg, "ca", "cert_days"),
		kms_config_get(cfg, "ca", "crl_url"),
	};
	X509 *cert = NULL;
	int rc = 1;

	if (f)
		fclose(f);
	if (cakey == NULL)
		rc = fail(e);
	else if (pub == NULL)
		fprintf(stderr, "vaulttool: cannot read public key %s\n", pubfile);
	else if ((cert = kms_ca_issue(ca->cert, cakey, pub, &ip, &e)) == NULL)
		rc = fail(e);
	else if (record && !record_issued(v, cert, profile, address, &e))
		rc = fail(e);
	else {
		PEM_write_X509(stdout, cert);
		rc = 0;
	}
	X509_free(cert);
	EVP_PKEY_free(pub);
	EVP_PKEY_free(cakey);
	kms_vault_ca_free(ca);
	return rc;
}

/* Accept TOKEN of ADDRESS's pending token as kmsmilter would and queue
 * the request (payload of sql/001_initial.sql), CSR optional. */
static int
queue_reply(KmsVault *v, const KmsConfig *cfg, const char *address, const char *token,
    const char *csrfile)
{
	g_autoptr(GError) e = NULL;
	g_autoptr(KmsSecret) norm = kms_token_normalize(token, strlen(token));
	g_autoptr(KmsSecret) printed = kms_secret_new(KMS_TOKEN_PRINTED_LEN);
	g_autoptr(PGresult) r = NULL, q = NULL;
	g_autoptr(GBytes) sealed = NULL;
	g_autoptr(JsonBuilder) b = json_builder_new();
	g_autoptr(JsonGenerator) gen = json_generator_new();
	g_autoptr(JsonNode) root = NULL;
	g_autofree char *csr = NULL, *sealed64 = NULL, *csr64 = NULL, *payload = NULL;
	gsize csrlen = 0;
	guint8 hash[KMS_TOKEN_HASH_LEN], pub[KMS_QUEUE_KEY_LEN];
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	PGconn *db = kms_vault_db(v);
	gint64 tid, uid, rid;
	const char *purpose;

	if (norm == NULL) {
		fprintf(stderr, "vaulttool: not a token\n");
		return 1;
	}
	for (size_t i = 0, o = 0; i < KMS_TOKEN_CHARS; i++) {
		if (i > 0 && i % 5 == 0)
			printed->data[o++] = '-';
		printed->data[o++] = norm->data[i];
	}
	if (csrfile && !g_file_get_contents(csrfile, &csr, &csrlen, &e))
		return fail(e);
	kms_token_hash(norm, hash);
	if (!kms_queue_key_public(db, pub, &e) || !kms_db_begin(db, &e))
		return fail(e);
	kms_db_param_text(&p, address);
	kms_db_param_bytes(&p, hash, sizeof(hash));
	r = kms_db_run(db, "SELECT t.id, t.user_id, t.purpose FROM tokens t JOIN users u"
	    " ON u.id = t.user_id WHERE lower(u.address) = lower($1) AND t.token_hash = $2"
	    " AND t.status = 'pending' AND t.expires_at > now() FOR UPDATE OF t", &p, &e);
	if (r == NULL)
		return fail(e);
	if (PQntuples(r) != 1) {
		fprintf(stderr, "vaulttool: no pending token for %s matches\n", address);
		return 1;
	}
	tid = kms_db_get_int(r, 0, 0);
	uid = kms_db_get_int(r, 0, 1);
	purpose = PQgetvalue(r, 0, 2);
	kms_db_param_int(&p, tid);
	q = kms_db_run(db, "UPDATE tokens SET status = 'used', used_at = now() WHERE id = $1"
	    " RETURNING nextval(pg_get_serial_sequence('requests', 'id'))", &p, &e);
	if (q == NULL)
		return fail(e);
	rid = kms_db_get_int(q, 0, 0);
	sealed = kms_queue_seal(pub, "p12-password", rid, printed->data, printed->len, &e);
	if (sealed == NULL)
		return fail(e);
	sealed64 = g_base64_encode(g_bytes_get_data(sealed, NULL), g_bytes_get_size(sealed));
	json_builder_begin_object(b);
	json_builder_set_member_name(b, "token_id");
	json_builder_add_int_value(b, tid);
	json_builder_set_member_name(b, "sealed_password");
	json_builder_add_string_value(b, sealed64);
	if (csr && strcmp(purpose, "enroll") == 0) {
		csr64 = g_base64_encode((const guchar *)csr, csrlen);
		json_builder_set_member_name(b, "csr");
		json_builder_add_string_value(b, csr64);
	}
	json_builder_set_member_name(b, "reply_from");
	json_builder_add_string_value(b, address);
	json_builder_set_member_name(b, "auth");
	json_builder_add_null_value(b);
	json_builder_set_member_name(b, "queue_id");
	json_builder_add_string_value(b, "VAULTTOOL");
	json_builder_end_object(b);
	root = json_builder_get_root(b);
	json_generator_set_root(gen, root);
	payload = json_generator_to_data(gen, NULL);
	kms_db_param_int(&p, rid);
	kms_db_param_text(&p, purpose);
	kms_db_param_int(&p, uid);
	kms_db_param_text(&p, payload);
	kms_db_param_int(&p, kms_config_get_int(cfg, "kms", "request_ttl"));
	if (!kms_db_exec(db, "INSERT INTO requests (id, kind, user_id, payload, expires_at)"
	    " VALUES ($1, $2, $3, $4::jsonb, now() + $5 * interval '1 second')", &p, &e) ||
	    !kms_db_exec(db, "NOTIFY kms_requests", NULL, &e) || !kms_db_commit(db, &e))
		return fail(e);
	printf("%" G_GINT64_FORMAT "\n", rid);
	return 0;
}

/* Open payload.sealed_password of request ID with the queue key. */
static int
open_password(KmsVault *v, const char *id)
{
	g_autoptr(GError) e = NULL;
	g_autoptr(PGresult) r = NULL;
	g_autoptr(KmsSecret) priv = NULL, pw = NULL;
	g_autofree guchar *blob = NULL;
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	gint64 rid = g_ascii_strtoll(id, NULL, 10);
	gsize len = 0;

	kms_db_param_int(&p, rid);
	r = kms_db_run(kms_vault_db(v), "SELECT payload->>'sealed_password' FROM requests"
	    " WHERE id = $1", &p, &e);
	if (r == NULL)
		return fail(e);
	if (PQntuples(r) != 1 || PQgetisnull(r, 0, 0)) {
		fprintf(stderr, "vaulttool: no sealed password in request %s\n", id);
		return 1;
	}
	blob = g_base64_decode(PQgetvalue(r, 0, 0), &len);
	if ((priv = kms_queue_key_private(v, &e)) == NULL ||
	    (pw = kms_queue_open(priv, "p12-password", rid, blob, len, &e)) == NULL)
		return fail(e);
	printf("%.*s\n", (int)pw->len, (const char *)pw->data);
	return 0;
}

/* queue_reply() for each "ADDRESS TOKEN" line of standard input. */
static int
queue_replies(KmsVault *v, const KmsConfig *cfg)
{
	char line[512];

	while (fgets(line, sizeof(line), stdin)) {
		g_auto(GStrv) f = g_strsplit_set(g_strstrip(line), " \t", 2);
		int rc;

		if (f[0] == NULL || *f[0] == '\0')
			continue;
		if (f[1] == NULL) {
			fprintf(stderr, "vaulttool: want ADDRESS TOKEN lines\n");
			return 2;
		}
		if ((rc = queue_reply(v, cfg, f[0], g_strstrip(f[1]), NULL)) != 0)
			return rc;
	}
	return 0;
}

/* Unseal with the shares in FILES (vault.h: checked, duplicates once). */
static gboolean
unseal_shares(KmsVault *v, char **files, GError **err)
{
	g_autoptr(GPtrArray) shares = g_ptr_array_new_with_free_func(kms_share_destroy);

	for (char **f = files; *f; f++) {
		KmsShare *s = kms_share_read(*f, NULL, err);

		if (s == NULL)
			return FALSE;
		g_ptr_array_add(shares, s);
	}
	return kms_vault_unseal_shares(v, (KmsShare *const *)shares->pdata, shares->len, err);
}

int
main(int argc, char **argv)
{
	g_autofree char *conf = NULL, *pwfile = NULL;
	g_auto(GStrv) share_files = NULL;
	const GOptionEntry entries[] = {
		{"share-file", 's', 0, G_OPTION_ARG_FILENAME_ARRAY, &share_files,
		 "unseal with this share (repeat)", "FILE"},
		{"config", 'c', 0, G_OPTION_ARG_FILENAME, &conf, "configuration", "FILE"},
		{"password-file", 'p', 0, G_OPTION_ARG_FILENAME, &pwfile, "startup password", "FILE"},
		G_OPTION_ENTRY_NULL
	};
	g_autoptr(GOptionContext) oc = g_option_context_new("COMMAND ...");
	g_autoptr(GError) e = NULL;
	g_autoptr(KmsSecret) pw = NULL;
	KmsConfig *cfg = NULL;
	KmsVault *v = NULL;
	int rc = 2;

	kms_secmem_init();
	g_option_context_add_main_entries(oc, entries, NULL);
	if (!g_option_context_parse(oc, &argc, &argv, &e) || conf == NULL || argc < 2) {
		fprintf(stderr, "usage: vaulttool -c CONF -p PWFILE COMMAND ...\n");
		return 2;
	}
	if ((cfg = kms_config_load(conf, &e)) == NULL ||
	    (!share_files &&
		(pw = kms_password_read(pwfile, "Startup password: ", FALSE, &e)) == NULL) ||
	    (v = kms_vault_connect(kms_config_get(cfg, "vault", "dsn"), "vaulttool", &e)) == NULL ||
	    (!share_files && !kms_vault_unseal(v, pw, &e)) ||
	    (share_files && !unseal_shares(v, share_files, &e))) {
		rc = fail(e);
		goto out;
	}
	if (strcmp(argv[1], "escrow") == 0 && argc == 4)
		rc = escrow(v, argv[2], argv[3]);
	else if (strcmp(argv[1], "recover") == 0 && argc == 3)
		rc = recover(v, argv[2]);
	else if (strcmp(argv[1], "ca-key") == 0 && argc == 2)
		rc = ca_key(v);
	else if (strcmp(argv[1], "issue") == 0 && argc == 5)
		rc = issue(v, cfg, argv[2], argv[3], argv[4], FALSE);
	else if (strcmp(argv[1], "issue-record") == 0 && argc == 5)
		rc = issue(v, cfg, argv[2], argv[3], argv[4], TRUE);
	else if (strcmp(argv[1], "queue-reply") == 0 && argc == 3 && strcmp(argv[2], "-") == 0)
		rc = queue_replies(v, cfg);
	else if (strcmp(argv[1], "queue-reply") == 0 && (argc == 4 || argc == 5))
		rc = queue_reply(v, cfg, argv[2], argv[3], argc == 5 ? argv[4] : NULL);
	else if (strcmp(argv[1], "open-password") == 0 && argc == 3)
		rc = open_password(v, argv[2]);
	else
		fprintf(stderr, "vaulttool: unknown command or arguments\n");
out:
	kms_vault_close(v);
	kms_config_free(cfg);
	return rc;
}
