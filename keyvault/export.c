/*
 * NAME
 *	export - transport key, export and import requests (see export.h)
 * SECURITY
 *	The transport private key and each escrowed key are opened into
 *	KmsSecrets one at a time and freed at once; the bundle plaintext is an
 *	ordinary buffer wiped before it is freed (Bundle, wipe()). OpenSSL's
 *	memory BIOs clear their buffers when freed. Log lines, reports and
 *	audit entries name addresses, serials, bundle ids and fingerprints.
 */
#include "autoconfig.h"
#include "export.h"

#include <string.h>

#include <json-glib/json-glib.h>
#include <openssl/bn.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>

#include "common/log.h"
#include "keyvault/audit.h"
#include "keyvault/db.h"
#include "keyvault/issue.h"
#include "keyvault/vaultca.h"
#include "smime/ca.h"
#include "smime/x509util.h"

#define TRANSPORT_LOCK 0x6b6d737472616eLL	/* "kmstran": one key made at a time */
#define TRANSPORT_DAYS 3650
#define REVOKE_REASON "superseded"

/* This vault's active transport key pair; transport_clear() frees it. */
typedef struct {
	gint64 id;
	X509 *cert;
	char *sha256;
	EVP_PKEY *key;
} Transport;

static void
transport_clear(Transport *t)
{
	X509_free(t->cert);
	EVP_PKEY_free(t->key);
	g_free(t->sha256);
	memset(t, 0, sizeof(*t));
}

/* Member NAME of O when it is an array, else NULL (borrowed). */
static JsonArray *
array_member(JsonObject *o, const char *name)
{
	JsonNode *n = o ? json_object_get_member(o, name) : NULL;

	return n && JSON_NODE_HOLDS_ARRAY(n) ? json_node_get_array(n) : NULL;
}

/* A buffer that may hold key material: wiped, then freed. */
static void
wipe(GByteArray *b)
{
	if (b == NULL)
		return;
	OPENSSL_cleanse(b->data, b->len);
	g_byte_array_unref(b);
}


/* WHAT failed in OpenSSL: *err with the first queued reason. */
static gboolean
ossl_fail(GError **err, const char *what)
{
	unsigned long code = ERR_get_error();
	char buf[256] = "unknown reason";

	if (code)
		ERR_error_string_n(code, buf, sizeof(buf));
	ERR_clear_error();
	g_set_error(err, KMS_CA_ERROR, KMS_CA_ERROR_FAILED, "%s: %s", what, buf);
	return FALSE;
}

/* Append the 4-byte big-endian length N. */
static void
put_u32(GByteArray *b, guint32 n)
{
	guint8 be[4] = {n >> 24, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff};

	g_byte_array_append(b, be, 4);
}

static gboolean
get_u32(const guint8 *p, gsize len, gsize *off, guint32 *n)
{
	if (len - *off < 4)
		return FALSE;
	p += *off;
	*n = (guint32)p[0] << 24 | (guint32)p[1] << 16 | (guint32)p[2] << 8 | p[3];
	*off += 4;
	return TRUE;
}

/* --- the transport key pair ----------------------------------------------- */

static gboolean
add_ext(X509 *cert, int nid, const char *value, GError **err)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	int ok;

	X509V3_set_ctx(&ctx, cert, cert, NULL, NULL, 0);
	if ((ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value)) == NULL)
		return ossl_fail(err, "transport certificate extension");
	ok = X509_add_ext(cert, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? TRUE : ossl_fail(err, "transport certificate extension");
}

/* Self-signed transport certificate for KEY naming database DB. */
static X509 *
make_transport_cert(EVP_PKEY *key, const char *db, GError **err)
{
	X509 *cert = X509_new();
	X509_NAME *name = X509_NAME_new();
	BIGNUM *bn = BN_new();
	g_autofree char *ou = g_strdup_printf("vault %s", db);

	if (cert == NULL || name == NULL || bn == NULL ||
	    !X509_set_version(cert, X509_VERSION_3) ||
	    !BN_rand(bn, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) ||
	    !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) ||
	    !X509_gmtime_adj(X509_getm_notBefore(cert), -300) ||
	    !X509_time_adj_ex(X509_getm_notAfter(cert), TRANSPORT_DAYS, 0, NULL) ||
	    !X509_set_pubkey(cert, key) ||
	    !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
		(const unsigned char *)"kmsmilter transport key", -1, -1, 0) ||
	    !X509_NAME_add_entry_by_txt(name, "OU", MBSTRING_UTF8, (const unsigned char *)ou,
		-1, -1, 0) ||
	    !X509_set_subject_name(cert, name) || !X509_set_issuer_name(cert, name)) {
		ossl_fail(err, "making the transport certificate");
		goto fail;
	}
	if (!add_ext(cert, NID_basic_constraints, "critical,CA:FALSE", err) ||
	    !add_ext(cert, NID_key_usage, "critical,digitalSignature,keyEncipherment", err) ||
	    !add_ext(cert, NID_subject_key_identifier, "hash", err))
		goto fail;
	if (X509_sign(cert, key, EVP_sha256()) <= 0) {
		ossl_fail(err, "signing the transport certificate");
		goto fail;
	}
	BN_free(bn);
	X509_NAME_free(name);
	return cert;
fail:
	BN_free(bn);
	X509_NAME_free(name);
	X509_free(cert);
	return NULL;
}

/* In the caller's transaction: make the key pair unless one is active. */
static gboolean
ensure_in_tx(KmsVault *v, GError **err)
{
	PGconn *db = kms_vault_db(v);
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	g_autoptr(PGresult) r = NULL;
	g_autoptr(KmsSecret) p8 = NULL;
	g_autoptr(GBytes) sealed = NULL, der = NULL;
	g_autofree char *sha = NULL;
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	gint64 row;
	gboolean ok = FALSE;

	kms_db_param_int(&p, TRANSPORT_LOCK);
	if (!kms_db_exec(db, "SELECT pg_advisory_xact_lock($1)", &p, err) ||
	    (r = kms_db_run(db, "SELECT count(*) FROM transport_keys WHERE status = 'active'",
	    NULL, err)) == NULL)
		return FALSE;
	if (kms_db_get_int(r, 0, 0) > 0)
		return TRUE;
	kms_info("making this vault's transport key pair (RSA-3072)");
	if ((key = kms_key_generate(KMS_KEY_RSA3072, err)) == NULL ||
	    (cert = make_transport_cert(key, PQdb(db), err)) == NULL ||
	    (p8 = kms_key_to_pkcs8(key, err)) == NULL || !kms_vault_next_id(v, "transport_keys",
	    &row, err) || (sealed = kms_vault_seal(v, "transport_keys", "sealed_key", row,
	    p8->data, p8->len, err)) == NULL)
		goto out;
	der = kms_x509_to_der(cert);
	sha = kms_x509_sha256_hex(cert);
	kms_db_param_int(&p, row);
	kms_db_param_bytes(&p, g_bytes_get_data(der, NULL), g_bytes_get_size(der));
	kms_db_param_text(&p, sha);
	kms_db_param_int(&p, kms_vault_key_version(v));
	kms_db_param_bytes(&p, g_bytes_get_data(sealed, NULL), g_bytes_get_size(sealed));
	if (!kms_db_exec(db, "INSERT INTO transport_keys (id, certificate, sha256, key_version,"
	    " sealed_key) VALUES ($1, $2, $3, $4, $5)", &p, err))
		goto out;
	{
		g_autoptr(JsonObject) d = json_object_new();

		json_object_set_string_member(d, "sha256", sha);
		ok = kms_audit_append(db, "transport key created", d, err);
	}
	if (ok)
		kms_info("transport certificate %s", sha);
out:
	EVP_PKEY_free(key);
	X509_free(cert);
	return ok;
}

gboolean
kms_transport_ensure(KmsVault *v, GError **err)
{
	PGconn *db = kms_vault_db(v);

	if (!kms_db_begin(db, err))
		return FALSE;
	if (!ensure_in_tx(v, err) || !kms_db_commit(db, err)) {
		kms_db_rollback(db);
		return FALSE;
	}
	return TRUE;
}

/* The active transport key pair, made first if missing (caller's
 * transaction). */
static gboolean
transport_load(KmsVault *v, Transport *t, GError **err)
{
	PGconn *db = kms_vault_db(v);
	g_autoptr(PGresult) r = NULL;
	g_autoptr(GBytes) der = NULL, blob = NULL;
	g_autoptr(KmsSecret) p8 = NULL;

	if (!ensure_in_tx(v, err) || (r = kms_db_run(db, "SELECT id, certificate, key_version,"
	    " sealed_key FROM transport_keys WHERE status = 'active'", NULL, err)) == NULL)
		return FALSE;
	if (PQntuples(r) != 1)
		return kms_refuse(err, "this vault has no active transport key");
	t->id = kms_db_get_int(r, 0, 0);
	der = kms_db_get_bytes(r, 0, 1);
	blob = kms_db_get_bytes(r, 0, 3);
	if ((t->cert = kms_x509_from_der(g_bytes_get_data(der, NULL), g_bytes_get_size(der))) == NULL)
		return kms_refuse(err, "this vault's transport certificate is corrupt");
	t->sha256 = kms_x509_sha256_hex(t->cert);
	p8 = kms_vault_open_value(v, "transport_keys", "sealed_key", t->id,
	    (int)kms_db_get_int(r, 0, 2), blob, err);
	return p8 != NULL && (t->key = kms_key_from_pkcs8(p8, err)) != NULL;
}

/* --- export ----------------------------------------------------------------- */

/* One export request's working set. */
typedef struct {
	KmsWorker *w;
	PGconn *db;
	gint64 id;
	const char *bundle_id;
	Transport own;
	X509 *target;
	char *target_sha;
	GByteArray *keys;	/* count * (u32 n || PKCS#8): secret, wiped */
	guint nkeys;
	JsonBuilder *manifest;	/* users array being built */
	JsonBuilder *report;	/* users array being built */
	GArray *user_ids;	/* gint64 */
} Export;

/* Append user UID (ADDRESS)'s keys and certificates to the bundle; its
 * report entry too. Rows are locked until the commit. */
static gboolean
export_user(Export *x, gint64 uid, const char *address, const char *display, GError **err)
{
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	g_autoptr(PGresult) k = NULL, c = NULL;
	int revoked = 0;

	kms_db_param_int(&p, uid);
	k = kms_db_run(x->db, "SELECT e.id, e.key_type, e.key_version, e.sealed_key,"
	    " to_char(e.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), c.sha256"
	    " FROM escrowed_keys e LEFT JOIN certificates c ON c.id = e.certificate_id"
	    " WHERE e.user_id = $1 ORDER BY e.created_at, e.id FOR UPDATE OF e", &p, err);
	if (k == NULL)
		return FALSE;
	if (PQntuples(k) == 0)
		return kms_refuse(err, "%s has no escrowed key to export", address);
	kms_db_param_int(&p, uid);
	c = kms_db_run(x->db, "SELECT der, coalesce(usage, ''), serial, status, sha256"
	    " FROM certificates WHERE user_id = $1 AND source = 'issued' ORDER BY id FOR UPDATE",
	    &p, err);
	if (c == NULL)
		return FALSE;

	json_builder_begin_object(x->manifest);
	json_builder_set_member_name(x->manifest, "address");
	json_builder_add_string_value(x->manifest, address);
	json_builder_set_member_name(x->manifest, "display_name");
	if (display)
		json_builder_add_string_value(x->manifest, display);
	else
		json_builder_add_null_value(x->manifest);
	json_builder_set_member_name(x->manifest, "keys");
	json_builder_begin_array(x->manifest);
	for (int i = 0; i < PQntuples(k); i++) {
		gint64 row = kms_db_get_int(k, i, 0);
		g_autoptr(GBytes) blob = kms_db_get_bytes(k, i, 3);
		g_autoptr(KmsSecret) p8 = kms_vault_open_value(x->w->vault, "escrowed_keys",
		    "sealed_key", row, (int)kms_db_get_int(k, i, 2), blob, err);

		if (p8 == NULL)
			return FALSE;
		put_u32(x->keys, (guint32)p8->len);
		g_byte_array_append(x->keys, p8->data, (guint)p8->len);
		json_builder_begin_object(x->manifest);
		json_builder_set_member_name(x->manifest, "index");
		json_builder_add_int_value(x->manifest, x->nkeys++);
		json_builder_set_member_name(x->manifest, "key_type");
		json_builder_add_string_value(x->manifest, PQgetvalue(k, i, 1));
		json_builder_set_member_name(x->manifest, "escrowed_at");
		json_builder_add_string_value(x->manifest, PQgetvalue(k, i, 4));
		json_builder_set_member_name(x->manifest, "certificate");
		if (PQgetisnull(k, i, 5))
			json_builder_add_null_value(x->manifest);
		else
			json_builder_add_string_value(x->manifest, PQgetvalue(k, i, 5));
		json_builder_end_object(x->manifest);
	}
	json_builder_end_array(x->manifest);
	json_builder_set_member_name(x->manifest, "certificates");
	json_builder_begin_array(x->manifest);

	json_builder_begin_object(x->report);
	json_builder_set_member_name(x->report, "address");
	json_builder_add_string_value(x->report, address);
	json_builder_set_member_name(x->report, "keys");
	json_builder_add_int_value(x->report, PQntuples(k));
	json_builder_set_member_name(x->report, "certificates");
	json_builder_begin_array(x->report);
	for (int i = 0; i < PQntuples(c); i++) {
		g_autoptr(GBytes) der = kms_db_get_bytes(c, i, 0);
		g_autofree char *b64 = g_base64_encode(g_bytes_get_data(der, NULL),
		    g_bytes_get_size(der));
		gboolean valid = strcmp(PQgetvalue(c, i, 3), "valid") == 0;

		json_builder_begin_object(x->manifest);
		json_builder_set_member_name(x->manifest, "usage");
		json_builder_add_string_value(x->manifest, PQgetvalue(c, i, 1));
		json_builder_set_member_name(x->manifest, "der");
		json_builder_add_string_value(x->manifest, b64);
		json_builder_end_object(x->manifest);

		json_builder_begin_object(x->report);
		json_builder_set_member_name(x->report, "serial");
		json_builder_add_string_value(x->report, PQgetvalue(c, i, 2));
		json_builder_set_member_name(x->report, "usage");
		json_builder_add_string_value(x->report, PQgetvalue(c, i, 1));
		json_builder_set_member_name(x->report, "sha256");
		json_builder_add_string_value(x->report, PQgetvalue(c, i, 4));
		json_builder_set_member_name(x->report, "was");
		json_builder_add_string_value(x->report, PQgetvalue(c, i, 3));
		json_builder_end_object(x->report);
		revoked += valid;
	}
	json_builder_end_array(x->manifest);
	json_builder_end_object(x->manifest);
	json_builder_end_array(x->report);
	json_builder_set_member_name(x->report, "revoked");
	json_builder_add_int_value(x->report, revoked);
	json_builder_end_object(x->report);
	g_array_append_val(x->user_ids, uid);
	return TRUE;
}

/* The users to export: ADDRESSES (each must exist, not exported yet) or,
 * with ALL, every user still holding an escrowed key. */
static gboolean
export_users(Export *x, JsonArray *addresses, gboolean all, GError **err)
{
	g_autoptr(PGresult) r = NULL;

	if (all) {
		r = kms_db_run(x->db, "SELECT u.id, u.address, u.display_name FROM users u"
		    " WHERE u.status <> 'exported' AND EXISTS (SELECT 1 FROM escrowed_keys e"
		    "  WHERE e.user_id = u.id) ORDER BY u.id FOR UPDATE OF u", NULL, err);
		if (r == NULL)
			return FALSE;
		if (PQntuples(r) == 0)
			return kms_refuse(err, "no user holds an escrowed key: nothing to export");
		for (int i = 0; i < PQntuples(r); i++)
			if (!export_user(x, kms_db_get_int(r, i, 0), PQgetvalue(r, i, 1),
			    kms_db_get_text(r, i, 2), err))
				return FALSE;
		return TRUE;
	}
	for (guint i = 0; addresses && i < json_array_get_length(addresses); i++) {
		const char *a = json_array_get_string_element(addresses, i);
		KmsDbParams p = KMS_DB_PARAMS_INIT;
		g_autoptr(PGresult) u = NULL;

		if (a == NULL)
			return kms_refuse(err, "request %" G_GINT64_FORMAT ": bad address list", x->id);
		kms_db_param_text(&p, a);
		u = kms_db_run(x->db, "SELECT id, address, display_name, status FROM users"
		    " WHERE lower(address) = lower($1) FOR UPDATE", &p, err);
		if (u == NULL)
			return FALSE;
		if (PQntuples(u) == 0)
			return kms_refuse(err, "%s: unknown address", a);
		if (strcmp(PQgetvalue(u, 0, 3), "exported") == 0)
			return kms_refuse(err, "%s was already exported", PQgetvalue(u, 0, 1));
		for (guint j = 0; j < x->user_ids->len; j++)
			if (g_array_index(x->user_ids, gint64, j) == kms_db_get_int(u, 0, 0))
				goto next;
		if (!export_user(x, kms_db_get_int(u, 0, 0), PQgetvalue(u, 0, 1),
		    kms_db_get_text(u, 0, 2), err))
			return FALSE;
next:		;
	}
	if (x->user_ids->len == 0)
		return kms_refuse(err, "request %" G_GINT64_FORMAT " names no user", x->id);
	return TRUE;
}

/* DER of CMS into a new array. */
static GByteArray *
cms_der(CMS_ContentInfo *cms, GError **err)
{
	int len = i2d_CMS_ContentInfo(cms, NULL);
	GByteArray *b;
	unsigned char *p;

	if (len <= 0) {
		ossl_fail(err, "encoding the bundle");
		return NULL;
	}
	b = g_byte_array_sized_new((guint)len);
	g_byte_array_set_size(b, (guint)len);
	p = b->data;
	if (i2d_CMS_ContentInfo(cms, &p) != len) {
		wipe(b);
		ossl_fail(err, "encoding the bundle");
		return NULL;
	}
	return b;
}

/* Sign PT with our transport key and envelope it to the target. */
static GBytes *
seal_bundle(Export *x, GByteArray *pt, GError **err)
{
	BIO *in = BIO_new_mem_buf(pt->data, (int)pt->len);
	CMS_ContentInfo *sd = NULL, *env = NULL;
	CMS_RecipientInfo *ri;
	EVP_PKEY_CTX *pctx;
	GByteArray *signed_der = NULL, *out = NULL;
	GBytes *res = NULL;

	if (in == NULL || (sd = CMS_sign(x->own.cert, x->own.key, NULL, in,
	    CMS_BINARY | CMS_NOSMIMECAP)) == NULL) {
		ossl_fail(err, "signing the bundle");
		goto out;
	}
	if ((signed_der = cms_der(sd, err)) == NULL)
		goto out;
	BIO_free(in);
	in = BIO_new_mem_buf(signed_der->data, (int)signed_der->len);
	env = CMS_encrypt(NULL, NULL, EVP_aes_256_gcm(), CMS_BINARY | CMS_PARTIAL);
	if (in == NULL || env == NULL ||
	    (ri = CMS_add1_recipient_cert(env, x->target, CMS_KEY_PARAM)) == NULL ||
	    (pctx = CMS_RecipientInfo_get0_pkey_ctx(ri)) == NULL ||
	    EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_OAEP_PADDING) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_oaep_md(pctx, EVP_sha256()) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) <= 0 ||
	    CMS_final(env, in, NULL, CMS_BINARY) != 1) {
		ossl_fail(err, "encrypting the bundle to the target");
		goto out;
	}
	if ((out = cms_der(env, err)) == NULL)
		goto out;
	res = g_byte_array_free_to_bytes(out);
out:
	BIO_free(in);
	CMS_ContentInfo_free(sd);
	CMS_ContentInfo_free(env);
	wipe(signed_der);
	return res;
}

/* JSON text of B's root; g_free. */
static char *
builder_text(JsonBuilder *b)
{
	g_autoptr(JsonGenerator) g = json_generator_new();
	g_autoptr(JsonNode) root = json_builder_get_root(b);

	json_generator_set_root(g, root);
	return json_generator_to_data(g, NULL);
}

/* Remove the keys, mark the users exported, revoke their certificates,
 * queue a CRL, audit: the export's effect on this vault. */
static gboolean
export_effects(Export *x, GError **err)
{
	g_autofree char *by = g_strdup_printf("export to %.8s (request %" G_GINT64_FORMAT ")",
	    x->target_sha, x->id);

	for (guint i = 0; i < x->user_ids->len; i++) {
		gint64 uid = g_array_index(x->user_ids, gint64, i);
		KmsDbParams p = KMS_DB_PARAMS_INIT;
		g_autoptr(PGresult) del = NULL, rev = NULL, u = NULL;
		g_autoptr(JsonObject) d = json_object_new();
		g_autoptr(JsonArray) serials = json_array_new();

		kms_db_param_int(&p, uid);
		if ((del = kms_db_run(x->db, "DELETE FROM escrowed_keys WHERE user_id = $1"
		    " RETURNING id", &p, err)) == NULL)
			return FALSE;
		kms_db_param_int(&p, uid);
		if ((u = kms_db_run(x->db, "UPDATE users SET status = 'exported' WHERE id = $1"
		    " RETURNING address", &p, err)) == NULL)
			return FALSE;
		kms_db_param_int(&p, uid);
		kms_db_param_text(&p, REVOKE_REASON);
		kms_db_param_text(&p, by);
		rev = kms_db_run(x->db, "WITH r AS (UPDATE certificates SET status = 'revoked'"
		    "  WHERE user_id = $1 AND source = 'issued' AND status = 'valid'"
		    "  RETURNING id, serial),"
		    " i AS (INSERT INTO revocations (certificate_id, reason, revoked_by)"
		    "  SELECT id, $2, $3 FROM r)"
		    " SELECT serial FROM r ORDER BY id", &p, err);
		if (rev == NULL)
			return FALSE;
		for (int j = 0; j < PQntuples(rev); j++)
			json_array_add_string_element(serials, PQgetvalue(rev, j, 0));
		kms_info("request %" G_GINT64_FORMAT ": exported %d key%s of %s to %.8s, revoked %d"
		    " certificate%s", x->id, PQntuples(del), PQntuples(del) == 1 ? "" : "s",
		    PQgetvalue(u, 0, 0), x->target_sha, PQntuples(rev), PQntuples(rev) == 1 ? "" : "s");
		json_object_set_int_member(d, "request_id", x->id);
		json_object_set_string_member(d, "bundle_id", x->bundle_id);
		json_object_set_string_member(d, "address", PQgetvalue(u, 0, 0));
		json_object_set_int_member(d, "keys", PQntuples(del));
		json_object_set_array_member(d, "revoked", json_array_ref(serials));
		json_object_set_string_member(d, "reason", REVOKE_REASON);
		json_object_set_string_member(d, "target", x->target_sha);
		if (!kms_audit_append(x->db, "keys exported", d, err))
			return FALSE;
	}
	{
		KmsDbParams p = KMS_DB_PARAMS_INIT;

		kms_db_param_int(&p, kms_config_get_int(x->w->cfg, "kms", "request_ttl"));
		return kms_db_exec(x->db, "INSERT INTO requests (kind, user_id, expires_at)"
		    " VALUES ('crl', NULL, now() + $1::bigint * interval '1 second')", &p, err) &&
		    kms_db_exec(x->db, "NOTIFY kms_requests", NULL, err);
	}
}

/* Parse the export payload's target certificate and check what the
 * administrator saw: the fingerprint, RSA, not our own. */
static gboolean
export_target(Export *x, JsonObject *o, GError **err)
{
	const char *b64 = json_object_get_string_member_with_default(o, "target_certificate", "");
	const char *fp = json_object_get_string_member_with_default(o, "fingerprint", "");
	g_autofree guchar *der = NULL;
	gsize len;

	der = g_base64_decode(b64, &len);
	if (len == 0 || (x->target = kms_x509_from_der(der, len)) == NULL)
		return kms_refuse(err, "request %" G_GINT64_FORMAT ": the target certificate does not"
		    " parse", x->id);
	x->target_sha = kms_x509_sha256_hex(x->target);
	if (strlen(fp) < 8 || g_ascii_strncasecmp(x->target_sha, fp, strlen(fp)) != 0)
		return kms_refuse(err, "fingerprint mismatch: the target certificate's SHA-256 starts"
		    " %.8s, the request says %s", x->target_sha, fp);
	if (EVP_PKEY_get_base_id(X509_get0_pubkey(x->target)) != EVP_PKEY_RSA)
		return kms_refuse(err, "the target certificate (%.8s) has no RSA key: not a kmsmilter"
		    " transport certificate", x->target_sha);
	if (strcmp(x->target_sha, x->own.sha256) == 0)
		return kms_refuse(err, "the target certificate is this vault's own transport"
		    " certificate");
	return TRUE;
}

gboolean
kms_work_export(KmsWorker *w, gint64 id, const char *payload, GError **err)
{
	g_autoptr(JsonParser) parser = json_parser_new();
	g_autofree char *manifest_text = NULL, *report_text = NULL;
	g_autoptr(GBytes) bundle = NULL;
	GByteArray *pt = NULL;
	JsonNode *root;
	JsonObject *o;
	Export x = {0};
	gboolean ok = FALSE;

	if (!json_parser_load_from_data(parser, payload, -1, NULL) ||
	    (root = json_parser_get_root(parser)) == NULL || !JSON_NODE_HOLDS_OBJECT(root))
		return kms_refuse(err, "request %" G_GINT64_FORMAT ": the payload is not a JSON object", id);
	o = json_node_get_object(root);
	x.w = w;
	x.db = kms_vault_db(w->vault);
	x.id = id;
	x.bundle_id = json_object_get_string_member_with_default(o, "bundle_id", "");
	if (strlen(x.bundle_id) < 16 || strspn(x.bundle_id, "0123456789abcdef-") !=
	    strlen(x.bundle_id))
		return kms_refuse(err, "request %" G_GINT64_FORMAT ": bad bundle id", id);
	/* the worker commits its attempt count even when we fail */
	if (!kms_db_exec(x.db, "SAVEPOINT kms_export", NULL, err))
		return FALSE;
	x.keys = g_byte_array_new();
	x.user_ids = g_array_new(FALSE, FALSE, sizeof(gint64));
	x.manifest = json_builder_new();
	x.report = json_builder_new();
	if (!transport_load(w->vault, &x.own, err) || !export_target(&x, o, err))
		goto out;

	json_builder_begin_object(x.manifest);
	json_builder_set_member_name(x.manifest, "format");
	json_builder_add_string_value(x.manifest, KMS_BUNDLE_FORMAT);
	json_builder_set_member_name(x.manifest, "bundle_id");
	json_builder_add_string_value(x.manifest, x.bundle_id);
	json_builder_set_member_name(x.manifest, "source");
	json_builder_add_string_value(x.manifest, x.own.sha256);
	json_builder_set_member_name(x.manifest, "target");
	json_builder_add_string_value(x.manifest, x.target_sha);
	json_builder_set_member_name(x.manifest, "users");
	json_builder_begin_array(x.manifest);
	json_builder_begin_object(x.report);
	json_builder_set_member_name(x.report, "users");
	json_builder_begin_array(x.report);
	if (!export_users(&x, array_member(o, "addresses"),
	    json_object_get_boolean_member_with_default(o, "all", FALSE), err))
		goto out;
	json_builder_end_array(x.manifest);
	json_builder_end_object(x.manifest);
	json_builder_end_array(x.report);
	json_builder_set_member_name(x.report, "bundle_id");
	json_builder_add_string_value(x.report, x.bundle_id);
	json_builder_set_member_name(x.report, "source");
	json_builder_add_string_value(x.report, x.own.sha256);
	json_builder_set_member_name(x.report, "target");
	json_builder_add_string_value(x.report, x.target_sha);
	json_builder_set_member_name(x.report, "keys");
	json_builder_add_int_value(x.report, x.nkeys);
	json_builder_set_member_name(x.report, "revocation_reason");
	json_builder_add_string_value(x.report, REVOKE_REASON);
	json_builder_end_object(x.report);
	manifest_text = builder_text(x.manifest);
	report_text = builder_text(x.report);

	pt = g_byte_array_sized_new((guint)(strlen(manifest_text) + x.keys->len + 32));
	g_byte_array_append(pt, (const guint8 *)KMS_BUNDLE_MAGIC, strlen(KMS_BUNDLE_MAGIC));
	put_u32(pt, (guint32)strlen(manifest_text));
	g_byte_array_append(pt, (const guint8 *)manifest_text, (guint)strlen(manifest_text));
	put_u32(pt, x.nkeys);
	g_byte_array_append(pt, x.keys->data, x.keys->len);
	if ((bundle = seal_bundle(&x, pt, err)) == NULL || !export_effects(&x, err))
		goto out;
	{
		KmsDbParams p = KMS_DB_PARAMS_INIT;
		g_autoptr(JsonObject) d = json_object_new();

		kms_db_param_int(&p, id);
		kms_db_param_bytes(&p, g_bytes_get_data(bundle, NULL), g_bytes_get_size(bundle));
		kms_db_param_text(&p, report_text);
		json_object_set_int_member(d, "request_id", id);
		json_object_set_string_member(d, "bundle_id", x.bundle_id);
		json_object_set_int_member(d, "users", x.user_ids->len);
		json_object_set_int_member(d, "keys", x.nkeys);
		json_object_set_string_member(d, "target", x.target_sha);
		json_object_set_string_member(d, "source", x.own.sha256);
		ok = kms_db_exec(x.db, "UPDATE requests SET result = $2,"
		    " payload = payload || jsonb_build_object('report', $3::jsonb) WHERE id = $1",
		    &p, err) && kms_audit_append(x.db, "export", d, err);
	}
	if (ok)
		kms_info("request %" G_GINT64_FORMAT ": bundle %s: %u user%s, %u key%s for %.8s",
		    id, x.bundle_id, x.user_ids->len, x.user_ids->len == 1 ? "" : "s", x.nkeys,
		    x.nkeys == 1 ? "" : "s", x.target_sha);
out:
	if (!ok)
		kms_db_exec(x.db, "ROLLBACK TO SAVEPOINT kms_export", NULL, NULL);
	else
		ok = kms_db_exec(x.db, "RELEASE SAVEPOINT kms_export", NULL, err);
	wipe(pt);
	wipe(x.keys);
	g_array_unref(x.user_ids);
	g_object_unref(x.manifest);
	g_object_unref(x.report);
	X509_free(x.target);
	g_free(x.target_sha);
	transport_clear(&x.own);
	return ok;
}

/* --- import ----------------------------------------------------------------- */

/* One import request's working set. */
typedef struct {
	KmsWorker *w;
	PGconn *db;
	gint64 id;
	Transport own;
	BIO *signed_bio;	/* decrypted SignedData (cleared when freed) */
	BIO *pt_bio;		/* verified plaintext (cleared when freed) */
	char *source_sha;	/* the signer's certificate */
	const guint8 *keys;	/* into pt_bio: the key list */
	gsize keys_len;
	GArray *key_off;	/* gsize pairs: offset, length into keys */
	JsonParser *manifest;
	JsonBuilder *report;
	guint nkeys, skipped;
} Import;

/* Name the first key-transport recipient of RIS for an error message. */
static char *
recipient_text(STACK_OF(CMS_RecipientInfo) *ris)
{
	for (int i = 0; i < sk_CMS_RecipientInfo_num(ris); i++) {
		CMS_RecipientInfo *ri = sk_CMS_RecipientInfo_value(ris, i);
		ASN1_OCTET_STRING *kid = NULL;
		X509_NAME *issuer = NULL;
		ASN1_INTEGER *sno = NULL;

		if (CMS_RecipientInfo_type(ri) == CMS_RECIPINFO_TRANS &&
		    CMS_RecipientInfo_ktri_get0_signer_id(ri, &kid, &issuer, &sno) == 1 && issuer &&
		    sno) {
			BIGNUM *bn = ASN1_INTEGER_to_BN(sno, NULL);
			char *hex = bn ? BN_bn2hex(bn) : NULL;
			g_autofree char *name = kms_x509_name_text(issuer);
			char *s = g_strdup_printf("serial %s of %s", hex ? hex : "?", name);

			OPENSSL_free(hex);
			BN_free(bn);
			return s;
		}
	}
	return g_strdup("no key-transport recipient");
}

/* Decrypt BUNDLE with our transport key and verify the signature inside;
 * leaves the plaintext in i->pt_bio. */
static gboolean
import_open(Import *i, GBytes *bundle, GError **err)
{
	const unsigned char *d = g_bytes_get_data(bundle, NULL);
	CMS_ContentInfo *env, *sd = NULL;
	STACK_OF(CMS_RecipientInfo) *ris;
	STACK_OF(X509) *signers = NULL;
	const unsigned char *sp;
	char *sdata;
	long slen;
	int nid, match = 0;
	gboolean ok = FALSE;

	env = d2i_CMS_ContentInfo(NULL, &d, (long)g_bytes_get_size(bundle));
	nid = env ? OBJ_obj2nid(CMS_get0_type(env)) : NID_undef;
	if (nid != NID_pkcs7_enveloped && nid != NID_id_smime_ct_authEnvelopedData) {
		ERR_clear_error();
		CMS_ContentInfo_free(env);
		return kms_refuse(err, "the file is not a kmsmilter export bundle (no CMS enveloped data)");
	}
	ris = CMS_get0_RecipientInfos(env);
	for (int k = 0; k < sk_CMS_RecipientInfo_num(ris); k++) {
		CMS_RecipientInfo *ri = sk_CMS_RecipientInfo_value(ris, k);

		if (CMS_RecipientInfo_type(ri) == CMS_RECIPINFO_TRANS &&
		    CMS_RecipientInfo_ktri_cert_cmp(ri, i->own.cert) == 0)
			match = 1;
	}
	if (!match) {
		g_autofree char *who = recipient_text(ris);

		kms_refuse(err, "the bundle is not for this vault: it is encrypted to another transport"
		    " certificate (%s); this vault's transport certificate has fingerprint %.8s",
		    who, i->own.sha256);
		goto out;
	}
	i->signed_bio = BIO_new(BIO_s_mem());
	if (i->signed_bio == NULL ||
	    CMS_decrypt(env, i->own.key, i->own.cert, NULL, i->signed_bio, CMS_BINARY) != 1) {
		ERR_clear_error();
		kms_refuse(err, "the bundle does not decrypt with this vault's transport key (%.8s):"
		    " damaged, or made for another vault", i->own.sha256);
		goto out;
	}
	slen = BIO_get_mem_data(i->signed_bio, &sdata);
	sp = (const unsigned char *)sdata;
	sd = d2i_CMS_ContentInfo(NULL, &sp, slen);
	i->pt_bio = BIO_new(BIO_s_mem());
	if (sd == NULL || OBJ_obj2nid(CMS_get0_type(sd)) != NID_pkcs7_signed || i->pt_bio == NULL ||
	    CMS_verify(sd, NULL, NULL, NULL, i->pt_bio,
	    CMS_NO_SIGNER_CERT_VERIFY | CMS_BINARY) != 1) {
		ERR_clear_error();
		kms_refuse(err, "the bundle's signature does not verify: it was altered or not made by"
		    " a kmsmilter vault");
		goto out;
	}
	signers = CMS_get0_signers(sd);
	if (sk_X509_num(signers) != 1) {
		kms_refuse(err, "the bundle has %d signers, want one (the source vault)",
		    sk_X509_num(signers));
		goto out;
	}
	i->source_sha = kms_x509_sha256_hex(sk_X509_value(signers, 0));
	ok = TRUE;
out:
	sk_X509_free(signers);
	CMS_ContentInfo_free(sd);
	CMS_ContentInfo_free(env);
	return ok;
}

/* Split the plaintext into manifest and key list and check the manifest
 * against this vault and the signer. */
static gboolean
import_parse(Import *i, const char *want_source, GError **err)
{
	char *data;
	const guint8 *p;
	gsize len, off = strlen(KMS_BUNDLE_MAGIC);
	guint32 mlen, count;
	JsonObject *m;
	JsonNode *root;
	const char *s;

	len = (gsize)BIO_get_mem_data(i->pt_bio, &data);
	p = (const guint8 *)data;
	if (len < off || memcmp(p, KMS_BUNDLE_MAGIC, off) != 0 || !get_u32(p, len, &off, &mlen) ||
	    len - off < mlen)
		return kms_refuse(err, "the bundle's content is not a kmsmilter export");
	if (!json_parser_load_from_data(i->manifest, (const char *)p + off, mlen, NULL) ||
	    (root = json_parser_get_root(i->manifest)) == NULL || !JSON_NODE_HOLDS_OBJECT(root))
		return kms_refuse(err, "the bundle's manifest is not a JSON object");
	off += mlen;
	if (!get_u32(p, len, &off, &count))
		return kms_refuse(err, "the bundle's key list is truncated");
	i->keys = p + off;
	i->keys_len = len - off;
	for (guint32 k = 0, o = 0; k < count; k++) {
		gsize ko = o;
		guint32 kl;

		if (!get_u32(i->keys, i->keys_len, &ko, &kl) || i->keys_len - ko < kl)
			return kms_refuse(err, "the bundle's key list is truncated");
		gsize klen = kl;

		g_array_append_val(i->key_off, ko);
		g_array_append_val(i->key_off, klen);
		o = (guint32)(ko + kl);
	}
	m = json_node_get_object(root);
	s = json_object_get_string_member_with_default(m, "format", "");
	if (strcmp(s, KMS_BUNDLE_FORMAT) != 0)
		return kms_refuse(err, "unknown bundle format \"%s\"", s);
	s = json_object_get_string_member_with_default(m, "target", "");
	if (strcmp(s, i->own.sha256) != 0)
		return kms_refuse(err, "the bundle names target %.8s, this vault's transport certificate"
		    " is %.8s", s, i->own.sha256);
	s = json_object_get_string_member_with_default(m, "source", "");
	if (strcmp(s, i->source_sha) != 0)
		return kms_refuse(err, "the bundle names source %.8s but was signed by %.8s", s,
		    i->source_sha);
	if (want_source && *want_source && (strlen(want_source) < 8 ||
	    g_ascii_strncasecmp(i->source_sha, want_source, strlen(want_source)) != 0))
		return kms_refuse(err, "source fingerprint mismatch: the bundle was signed by %.8s, the"
		    " request says %s", i->source_sha, want_source);
	return TRUE;
}

/* Record certificate DER (base64) for user UID; *cid gets its row, *out
 * the parsed certificate (X509_free). */
static gboolean
import_cert(Import *i, gint64 uid, const char *b64, const char *usage, gint64 *cid,
    char **serial_out, X509 **out, GError **err)
{
	g_autofree guchar *der = NULL;
	g_autofree char *sha = NULL, *serial = NULL, *subj = NULL, *iss = NULL, *nb = NULL,
	    *na = NULL, *detail = NULL;
	g_autoptr(GPtrArray) addrs = NULL;
	g_autoptr(PGresult) r = NULL;
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	X509 *x;
	gsize len;

	der = g_base64_decode(b64 ? b64 : "", &len);
	if (len == 0 || (x = kms_x509_from_der(der, len)) == NULL)
		return kms_refuse(err, "a certificate in the bundle does not parse");
	sha = kms_x509_sha256_hex(x);
	serial = kms_x509_serial_hex(x);
	subj = kms_x509_name_text(X509_get_subject_name(x));
	iss = kms_x509_name_text(X509_get_issuer_name(x));
	nb = kms_asn1_time_iso8601(X509_get0_notBefore(x));
	na = kms_asn1_time_iso8601(X509_get0_notAfter(x));
	addrs = kms_x509_email_addresses(x);
	if (nb == NULL || na == NULL) {
		X509_free(x);
		return kms_refuse(err, "certificate %s in the bundle has unusable dates", serial);
	}
	detail = g_strdup_printf("imported from vault %.8s (bundle request %" G_GINT64_FORMAT
	    "); revoked by that vault when it exported", i->source_sha, i->id);
	kms_db_param_text(&p, *usage ? usage : NULL);
	kms_db_param_text(&p, detail);
	kms_db_param_text(&p, sha);
	kms_db_param_text(&p, serial);
	kms_db_param_text(&p, subj);
	kms_db_param_text(&p, iss);
	kms_db_param_text(&p, nb);
	kms_db_param_text(&p, na);
	kms_db_param_bytes(&p, der, len);
	kms_db_param_int(&p, uid);
	r = kms_db_run(i->db, "INSERT INTO certificates (source, usage, status, status_detail,"
	    " sha256, serial, subject, issuer, not_before, not_after, der, user_id)"
	    " VALUES ('issued', $1, 'revoked', $2, $3, $4, $5, $6, $7, $8, $9, $10)"
	    " ON CONFLICT (sha256) DO UPDATE SET last_seen = now(),"
	    "  user_id = coalesce(certificates.user_id, excluded.user_id) RETURNING id", &p, err);
	if (r == NULL) {
		X509_free(x);
		return FALSE;
	}
	*cid = kms_db_get_int(r, 0, 0);
	for (guint k = 0; k < addrs->len; k++) {
		kms_db_param_int(&p, *cid);
		kms_db_param_text(&p, g_ptr_array_index(addrs, k));
		if (!kms_db_exec(i->db, "INSERT INTO certificate_addresses (certificate_id, address)"
		    " VALUES ($1, $2) ON CONFLICT DO NOTHING", &p, err)) {
			X509_free(x);
			return FALSE;
		}
	}
	*serial_out = g_steal_pointer(&serial);
	*out = x;
	return TRUE;
}

/* Seal key INDEX of the bundle for user UID, linked to certificate CID
 * (0: none); *skipped when this vault already escrows that certificate's
 * key. */
static gboolean
import_key(Import *i, gint64 uid, gint64 index, const char *key_type, const char *at,
    gint64 cid, X509 *cert, gboolean *skipped, GError **err)
{
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	g_autoptr(KmsSecret) p8 = NULL;
	g_autoptr(GBytes) sealed = NULL;
	EVP_PKEY *key;
	gint64 row;

	*skipped = FALSE;
	if (index < 0 || (guint)index * 2 >= i->key_off->len)
		return kms_refuse(err, "the bundle's manifest names key %" G_GINT64_FORMAT
		    " that is not in it", index);
	if (cid) {
		g_autoptr(PGresult) r = NULL;

		kms_db_param_int(&p, cid);
		if ((r = kms_db_run(i->db, "SELECT 1 FROM escrowed_keys WHERE certificate_id = $1",
		    &p, err)) == NULL)
			return FALSE;
		if (PQntuples(r) > 0) {
			*skipped = TRUE;
			return TRUE;
		}
	}
	p8 = kms_secret_dup(i->keys + g_array_index(i->key_off, gsize, index * 2),
	    g_array_index(i->key_off, gsize, index * 2 + 1));
	if ((key = kms_key_from_pkcs8(p8, err)) == NULL)
		return FALSE;
	if (cert && X509_check_private_key(cert, key) != 1) {
		EVP_PKEY_free(key);
		ERR_clear_error();
		return kms_refuse(err, "key %" G_GINT64_FORMAT " of the bundle does not match its"
		    " certificate", index);
	}
	EVP_PKEY_free(key);
	if (!kms_vault_next_id(i->w->vault, "escrowed_keys", &row, err) ||
	    (sealed = kms_vault_seal(i->w->vault, "escrowed_keys", "sealed_key", row, p8->data,
	    p8->len, err)) == NULL)
		return FALSE;
	kms_db_param_int(&p, row);
	kms_db_param_int(&p, uid);
	if (cid)
		kms_db_param_int(&p, cid);
	else
		kms_db_param_text(&p, NULL);
	kms_db_param_text(&p, key_type);
	kms_db_param_int(&p, kms_vault_key_version(i->w->vault));
	kms_db_param_bytes(&p, g_bytes_get_data(sealed, NULL), g_bytes_get_size(sealed));
	kms_db_param_text(&p, at);
	return kms_db_exec(i->db, "INSERT INTO escrowed_keys (id, user_id, certificate_id, key_type,"
	    " key_version, sealed_key, created_at)"
	    " VALUES ($1, $2, $3::bigint, $4, $5, $6, coalesce($7::timestamptz, now()))", &p, err);
}

/* One user of the manifest: the users row, certificates, keys, audit. */
static gboolean
import_user(Import *i, JsonObject *u, const char *bundle_id, GError **err)
{
	const char *address = json_object_get_string_member_with_default(u, "address", NULL);
	JsonArray *certs = array_member(u, "certificates");
	JsonArray *keys = array_member(u, "keys");
	g_autoptr(GHashTable) pos = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	g_autoptr(GArray) cids = g_array_new(FALSE, FALSE, sizeof(gint64));
	g_autoptr(GPtrArray) x509s = g_ptr_array_new_with_free_func((GDestroyNotify)X509_free);
	g_autoptr(JsonArray) serials = json_array_new();
	g_autoptr(JsonObject) d = json_object_new();
	g_autoptr(PGresult) r = NULL;
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	guint nk = 0, skipped = 0;
	gint64 uid;

	if (address == NULL || certs == NULL || keys == NULL)
		return kms_refuse(err, "a user entry of the bundle's manifest is incomplete");
	kms_db_param_text(&p, address);
	kms_db_param_text(&p, json_object_get_string_member_with_default(u, "display_name", NULL));
	r = kms_db_run(i->db, "INSERT INTO users (address, display_name) VALUES ($1, $2)"
	    " ON CONFLICT (lower(address)) DO UPDATE SET status = CASE WHEN users.status ="
	    " 'exported' THEN 'active' ELSE users.status END RETURNING id, (xmax = 0)", &p, err);
	if (r == NULL)
		return FALSE;
	uid = kms_db_get_int(r, 0, 0);
	for (guint k = 0; k < json_array_get_length(certs); k++) {
		JsonObject *c = json_array_get_object_element(certs, k);
		const char *b64 = c ? json_object_get_string_member_with_default(c, "der", NULL) : NULL;
		g_autofree char *serial = NULL;
		gint64 cid = 0;
		X509 *x = NULL;

		if (c == NULL || !import_cert(i, uid, b64, json_object_get_string_member_with_default(c,
		    "usage", ""), &cid, &serial, &x, err))
			return FALSE;
		g_hash_table_insert(pos, kms_x509_sha256_hex(x), GUINT_TO_POINTER(k + 1));
		g_array_append_val(cids, cid);
		g_ptr_array_add(x509s, x);
		json_array_add_string_element(serials, serial);
	}
	for (guint k = 0; k < json_array_get_length(keys); k++) {
		JsonObject *ko = json_array_get_object_element(keys, k);
		const char *sha = ko ? json_object_get_string_member_with_default(ko, "certificate",
		    NULL) : NULL;
		guint at = sha ? GPOINTER_TO_UINT(g_hash_table_lookup(pos, sha)) : 0;
		gboolean skip;

		if (ko == NULL)
			return kms_refuse(err, "a key entry of the bundle's manifest is not an object");
		if (sha && at == 0)
			return kms_refuse(err, "%s: a key names certificate %.8s that is not in the bundle",
			    address, sha);
		if (!import_key(i, uid, json_object_get_int_member_with_default(ko, "index", -1),
		    json_object_get_string_member_with_default(ko, "key_type", "unknown"),
		    json_object_get_string_member_with_default(ko, "escrowed_at", NULL),
		    at ? g_array_index(cids, gint64, at - 1) : 0,
		    at ? g_ptr_array_index(x509s, at - 1) : NULL, &skip, err))
			return FALSE;
		if (skip)
			skipped++;
		else
			nk++;
	}
	i->nkeys += nk;
	i->skipped += skipped;
	kms_info("request %" G_GINT64_FORMAT ": imported %u key%s and %u certificate%s of %s"
	    " from %.8s%s", i->id, nk, nk == 1 ? "" : "s", json_array_get_length(certs),
	    json_array_get_length(certs) == 1 ? "" : "s", address, i->source_sha,
	    skipped ? " (some keys were already here)" : "");
	json_builder_begin_object(i->report);
	json_builder_set_member_name(i->report, "address");
	json_builder_add_string_value(i->report, address);
	json_builder_set_member_name(i->report, "new_user");
	json_builder_add_boolean_value(i->report, strcmp(PQgetvalue(r, 0, 1), "t") == 0);
	json_builder_set_member_name(i->report, "keys");
	json_builder_add_int_value(i->report, nk);
	json_builder_set_member_name(i->report, "already_held");
	json_builder_add_int_value(i->report, skipped);
	json_builder_set_member_name(i->report, "serials");
	json_builder_begin_array(i->report);
	for (guint k = 0; k < json_array_get_length(serials); k++)
		json_builder_add_string_value(i->report, json_array_get_string_element(serials, k));
	json_builder_end_array(i->report);
	json_builder_end_object(i->report);
	json_object_set_int_member(d, "request_id", i->id);
	json_object_set_string_member(d, "bundle_id", bundle_id);
	json_object_set_string_member(d, "address", address);
	json_object_set_int_member(d, "keys", nk);
	json_object_set_int_member(d, "already_held", skipped);
	json_object_set_array_member(d, "serials", json_array_ref(serials));
	json_object_set_string_member(d, "source", i->source_sha);
	return kms_audit_append(i->db, "keys imported", d, err);
}

/* Refuse a bundle id this vault imported before. */
static gboolean
import_once(Import *i, const char *bundle_id, GError **err)
{
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	g_autoptr(PGresult) r = NULL;

	kms_db_param_text(&p, bundle_id);
	r = kms_db_run(i->db, "SELECT to_char(imported_at AT TIME ZONE 'UTC',"
	    " 'YYYY-MM-DD HH24:MI:SS \"UTC\"') FROM imported_bundles WHERE bundle_id = $1", &p, err);
	if (r == NULL)
		return FALSE;
	if (PQntuples(r) > 0)
		return kms_refuse(err, "bundle %s was already imported on %s", bundle_id,
		    PQgetvalue(r, 0, 0));
	return TRUE;
}

gboolean
kms_work_import(KmsWorker *w, gint64 id, const char *payload, GError **err)
{
	g_autoptr(JsonParser) parser = json_parser_new();
	g_autoptr(PGresult) r = NULL;
	g_autoptr(GBytes) bundle = NULL;
	g_autofree char *report_text = NULL;
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	const char *want_source = NULL, *want_sha = NULL, *bundle_id;
	g_autofree char *sha = NULL;
	JsonNode *root;
	JsonObject *m;
	JsonArray *users;
	Import i = {0};
	gboolean ok = FALSE;

	if (json_parser_load_from_data(parser, payload, -1, NULL) &&
	    (root = json_parser_get_root(parser)) != NULL && JSON_NODE_HOLDS_OBJECT(root)) {
		want_source = json_object_get_string_member_with_default(json_node_get_object(root),
		    "source_fingerprint", NULL);
		want_sha = json_object_get_string_member_with_default(json_node_get_object(root),
		    "bundle_sha256", NULL);
	}
	i.w = w;
	i.db = kms_vault_db(w->vault);
	i.id = id;
	kms_db_param_int(&p, id);
	if ((r = kms_db_run(i.db, "SELECT result FROM requests WHERE id = $1", &p, err)) == NULL)
		return FALSE;
	if (PQntuples(r) != 1 || PQgetisnull(r, 0, 0))
		return kms_refuse(err, "request %" G_GINT64_FORMAT " carries no bundle", id);
	bundle = kms_db_get_bytes(r, 0, 0);
	/* the payload (what administrators sign) names the bundle it imports */
	sha = g_compute_checksum_for_bytes(G_CHECKSUM_SHA256, bundle);
	if (want_sha && strcmp(sha, want_sha) != 0)
		return kms_refuse(err, "request %" G_GINT64_FORMAT ": the bundle is not the one its"
		    " payload names (sha256 %.8s, want %.8s)", id, sha, want_sha);
	if (!kms_db_exec(i.db, "SAVEPOINT kms_import", NULL, err))
		return FALSE;
	i.key_off = g_array_new(FALSE, FALSE, sizeof(gsize));
	i.manifest = json_parser_new();
	i.report = json_builder_new();
	if (!transport_load(w->vault, &i.own, err) || !import_open(&i, bundle, err) ||
	    !import_parse(&i, want_source, err))
		goto out;
	m = json_node_get_object(json_parser_get_root(i.manifest));
	bundle_id = json_object_get_string_member_with_default(m, "bundle_id", "");
	users = array_member(m, "users");
	if (*bundle_id == '\0' || users == NULL) {
		kms_refuse(err, "the bundle's manifest has no bundle id or no users");
		goto out;
	}
	if (!import_once(&i, bundle_id, err))
		goto out;
	json_builder_begin_object(i.report);
	json_builder_set_member_name(i.report, "users");
	json_builder_begin_array(i.report);
	for (guint k = 0; k < json_array_get_length(users); k++) {
		JsonObject *u = json_array_get_object_element(users, k);

		if (u == NULL) {
			kms_refuse(err, "a user entry of the bundle's manifest is not an object");
			goto out;
		}
		if (!import_user(&i, u, bundle_id, err))
			goto out;
	}
	json_builder_end_array(i.report);
	json_builder_set_member_name(i.report, "bundle_id");
	json_builder_add_string_value(i.report, bundle_id);
	json_builder_set_member_name(i.report, "source");
	json_builder_add_string_value(i.report, i.source_sha);
	json_builder_set_member_name(i.report, "target");
	json_builder_add_string_value(i.report, i.own.sha256);
	json_builder_set_member_name(i.report, "keys");
	json_builder_add_int_value(i.report, i.nkeys);
	json_builder_set_member_name(i.report, "already_held");
	json_builder_add_int_value(i.report, i.skipped);
	json_builder_end_object(i.report);
	report_text = builder_text(i.report);
	kms_db_param_text(&p, bundle_id);
	kms_db_param_text(&p, i.source_sha);
	kms_db_param_int(&p, json_array_get_length(users));
	kms_db_param_int(&p, i.nkeys);
	kms_db_param_text(&p, report_text);
	if (!kms_db_exec(i.db, "INSERT INTO imported_bundles (bundle_id, source, users, keys, report)"
	    " VALUES ($1, $2, $3, $4, $5)", &p, err))
		goto out;
	kms_db_param_int(&p, id);
	kms_db_param_text(&p, report_text);
	if (!kms_db_exec(i.db, "UPDATE requests SET result = NULL,"
	    " payload = payload || jsonb_build_object('report', $2::jsonb) WHERE id = $1", &p, err))
		goto out;
	{
		g_autoptr(JsonObject) d = json_object_new();

		json_object_set_int_member(d, "request_id", id);
		json_object_set_string_member(d, "bundle_id", bundle_id);
		json_object_set_int_member(d, "users", json_array_get_length(users));
		json_object_set_int_member(d, "keys", i.nkeys);
		json_object_set_string_member(d, "source", i.source_sha);
		ok = kms_audit_append(i.db, "import", d, err);
	}
	if (ok)
		kms_info("request %" G_GINT64_FORMAT ": bundle %s from %.8s imported: %u user%s,"
		    " %u key%s", id, bundle_id, i.source_sha, json_array_get_length(users),
		    json_array_get_length(users) == 1 ? "" : "s", i.nkeys, i.nkeys == 1 ? "" : "s");
out:
	if (!ok)
		kms_db_exec(i.db, "ROLLBACK TO SAVEPOINT kms_import", NULL, NULL);
	else
		ok = kms_db_exec(i.db, "RELEASE SAVEPOINT kms_import", NULL, err);
	BIO_free(i.signed_bio);
	BIO_free(i.pt_bio);
	g_array_unref(i.key_off);
	g_object_unref(i.manifest);
	g_object_unref(i.report);
	g_free(i.source_sha);
	transport_clear(&i.own);
	return ok;
}
