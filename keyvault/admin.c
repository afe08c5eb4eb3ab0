/*
 * NAME
 *	admin - administrators, signatures and approvals (see admin.h)
 */
#include "autoconfig.h"
#include "admin.h"

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "keyvault/db.h"
#include "keyvault/seal.h"

G_DEFINE_QUARK(kms-admin-error-quark, kms_admin_error)

const char *const kms_operation_names[KMS_OP_COUNT] = {
	"recover", "export", "import", "admin-change", "revoke", "policy-change",
};

int
kms_operation_of_kind(const char *kind)
{
	static const struct { const char *kind; KmsOperation op; } map[] = {
		{"recover-start", KMS_OP_RECOVER}, {"export", KMS_OP_EXPORT},
		{"import", KMS_OP_IMPORT}, {"admin-add", KMS_OP_ADMIN_CHANGE},
		{"admin-remove", KMS_OP_ADMIN_CHANGE}, {"approvals-set", KMS_OP_ADMIN_CHANGE},
		{"revoke", KMS_OP_REVOKE}, {"policy-set", KMS_OP_POLICY_CHANGE},
	};

	for (gsize i = 0; i < G_N_ELEMENTS(map); i++)
		if (strcmp(kind, map[i].kind) == 0)
			return (int)map[i].op;
	return -1;
}

static char *
kms_hex_encode(const guint8 *b, gsize n)
{
	static const char digits[] = "0123456789abcdef";
	char *s = g_malloc(n * 2 + 1);

	for (gsize i = 0; i < n; i++) {
		s[2 * i] = digits[b[i] >> 4];
		s[2 * i + 1] = digits[b[i] & 15];
	}
	s[n * 2] = '\0';
	return s;
}

/* --- length-prefixed message building ------------------------------------ */

static void
put_u64(GByteArray *m, guint64 v)
{
	guint8 b[8];

	for (int i = 7; i >= 0; i--, v >>= 8)
		b[i] = (guint8)(v & 0xff);
	g_byte_array_append(m, b, 8);
}

static void
put_str(GByteArray *m, const void *s, gsize len)
{
	guint8 b[4] = {(guint8)(len >> 24), (guint8)(len >> 16), (guint8)(len >> 8), (guint8)len};

	g_byte_array_append(m, b, 4);
	g_byte_array_append(m, s, (guint)len);
}

static void
put_cstr(GByteArray *m, const char *s)
{
	put_str(m, s, strlen(s));
}

static gboolean
hmac(const KmsSecret *key, const GByteArray *m, guint8 out[32], GError **err)
{
	unsigned int len = 32;

	if (HMAC(EVP_sha256(), key->data, (int)key->len, m->data, m->len, out, &len) == NULL) {
		g_set_error(err, KMS_ADMIN_ERROR, KMS_ADMIN_ERROR_FAILED, "HMAC failed");
		return FALSE;
	}
	return TRUE;
}

/* --- approval policy ------------------------------------------------------ */

void
kms_approval_policy_default(KmsApprovalPolicy *p)
{
	for (int i = 0; i < KMS_OP_COUNT; i++)
		p->need[i] = 1;
}

gboolean
kms_approval_policy_parse(KmsApprovalPolicy *p, const char *text, GError **err)
{
	g_auto(GStrv) items = g_strsplit_set(text, ", \t\n", -1);

	for (char **it = items; *it; it++) {
		const char *eq = strchr(*it, '=');
		char *end;
		long n;
		int op = -1;

		if (**it == '\0')
			continue;
		if (eq == NULL) {
			g_set_error(err, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
			    "'%s': want OPERATION=COUNT", *it);
			return FALSE;
		}
		for (int i = 0; i < KMS_OP_COUNT; i++)
			if (strlen(kms_operation_names[i]) == (gsize)(eq - *it) &&
			    strncmp(*it, kms_operation_names[i], (gsize)(eq - *it)) == 0)
				op = i;
		if (op < 0) {
			g_set_error(err, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
			    "'%.*s': unknown operation (recover, export, import, admin-change, revoke,"
			    " policy-change)",
			    (int)(eq - *it), *it);
			return FALSE;
		}
		n = strtol(eq + 1, &end, 10);
		if (eq[1] == '\0' || *end != '\0' || n < 1 || n > 9) {
			g_set_error(err, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
			    "'%s': the count must be a number from 1 to 9", *it);
			return FALSE;
		}
		p->need[op] = (int)n;
	}
	return TRUE;
}

char *
kms_approval_policy_format(const KmsApprovalPolicy *p)
{
	GString *s = g_string_new(NULL);

	for (int i = 0; i < KMS_OP_COUNT; i++)
		g_string_append_printf(s, "%s%s=%d", i ? "," : "", kms_operation_names[i], p->need[i]);
	return g_string_free(s, FALSE);
}

static gboolean
policy_mac(const KmsSecret *key, const char *counts, guint8 mac[32], GError **err)
{
	g_autoptr(GByteArray) m = g_byte_array_new();

	put_cstr(m, "kmsmilter-approvals-v1");
	put_cstr(m, counts);
	return hmac(key, m, mac, err);
}

gboolean
kms_approval_policy_read(PGconn *c, KmsApprovalPolicy *p, GError **err)
{
	g_autoptr(PGresult) r = kms_db_run(c, "SELECT counts FROM approval_policy WHERE id = 1",
	    NULL, err);

	kms_approval_policy_default(p);
	if (r == NULL)
		return FALSE;
	return PQntuples(r) == 0 || kms_approval_policy_parse(p, PQgetvalue(r, 0, 0), err);
}

gboolean
kms_approval_policy_load(PGconn *c, const KmsSecret *key, KmsApprovalPolicy *p, GError **err)
{
	g_autoptr(PGresult) r = kms_db_run(c, "SELECT counts, mac FROM approval_policy WHERE id = 1",
	    NULL, err);
	g_autoptr(GBytes) stored = NULL;
	guint8 mac[32];

	if (r == NULL)
		return FALSE;
	if (PQntuples(r) == 0) {
		g_set_error(err, KMS_ADMIN_ERROR, KMS_ADMIN_ERROR_REFUSED,
		    "the approval policy is missing from the vault");
		return FALSE;
	}
	stored = kms_db_get_bytes(r, 0, 1);
	if (!policy_mac(key, PQgetvalue(r, 0, 0), mac, err))
		return FALSE;
	if (g_bytes_get_size(stored) != 32 || CRYPTO_memcmp(mac, g_bytes_get_data(stored, NULL), 32)) {
		g_set_error(err, KMS_ADMIN_ERROR, KMS_ADMIN_ERROR_REFUSED,
		    "the approval policy in the vault was not written by kmsmilter (MAC mismatch)");
		return FALSE;
	}
	kms_approval_policy_default(p);
	return kms_approval_policy_parse(p, PQgetvalue(r, 0, 0), err);
}

gboolean
kms_approval_policy_store(PGconn *c, const KmsSecret *key, const KmsApprovalPolicy *p,
    GError **err)
{
	g_autofree char *counts = kms_approval_policy_format(p);
	KmsDbParams q = KMS_DB_PARAMS_INIT;
	guint8 mac[32];

	if (!policy_mac(key, counts, mac, err))
		return FALSE;
	kms_db_param_text(&q, counts);
	kms_db_param_bytes(&q, mac, sizeof(mac));
	return kms_db_exec(c, "INSERT INTO approval_policy (id, counts, mac) VALUES (1, $1, $2)"
	    " ON CONFLICT (id) DO UPDATE SET counts = $1, mac = $2, changed_at = now()", &q, err);
}

/* --- administrators ------------------------------------------------------- */

KmsAdmin *
kms_admin_free(KmsAdmin *a)
{
	if (a) {
		g_free(a->name);
		EVP_PKEY_free(a->key);
		g_free(a);
	}
	return NULL;
}

gboolean
kms_admin_mac(const KmsSecret *key, gint64 id, const char *name, const guint8 *pub, gsize pub_len,
    guint8 mac[32], GError **err)
{
	g_autoptr(GByteArray) m = g_byte_array_new();

	put_cstr(m, "kmsmilter-admin-v1");
	put_u64(m, (guint64)id);
	put_cstr(m, name);
	put_str(m, pub, pub_len);
	return hmac(key, m, mac, err);
}

static KmsSealContext
admin_ctx(gint64 id)
{
	KmsSealContext ctx = {"admins", "sealed_private", id, 1};

	return ctx;
}

/* Seal the 32-byte private key RAW for row ID under PASSWORD. */
static GBytes *
seal_private(const KmsSecret *raw, gint64 id, const KmsSecret *password, guint32 t, guint32 m,
    KmsKdfParams *kdf, GError **err)
{
	g_autoptr(KmsSecret) kek = NULL;
	KmsSealContext ctx = admin_ctx(id);

	if (!kms_kdf_params_new(kdf, t, m, err) || (kek = kms_kdf_derive(password, kdf, err)) == NULL)
		return NULL;
	return kms_seal(kek, &ctx, raw->data, raw->len, err);
}

static gboolean
crypto_fail(GError **err, const char *what)
{
	g_set_error(err, KMS_ADMIN_ERROR, KMS_ADMIN_ERROR_FAILED, "%s failed", what);
	return FALSE;
}

gboolean
kms_admin_create(PGconn *c, const char *name, const KmsSecret *password, guint32 t, guint32 m,
    const char *created_by, const KmsSecret *admins_key, gint64 *id, char **pubkey_hex,
    GError **err)
{
	EVP_PKEY_CTX *kc = EVP_PKEY_CTX_new_from_name(NULL, "ED25519", NULL);
	EVP_PKEY *pk = NULL;
	g_autoptr(KmsSecret) raw = kms_secret_new(32);
	g_autoptr(GBytes) sealed = NULL;
	g_autoptr(PGresult) r = NULL;
	KmsDbParams q = KMS_DB_PARAMS_INIT;
	KmsKdfParams kdf;
	guint8 pub[KMS_ADMIN_PUBKEY_LEN], mac[32];
	size_t len = sizeof(pub), rlen = raw->len;
	gboolean ok = FALSE;

	if (name == NULL || *name == '\0' || strlen(name) > 64 ||
	    strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@-")
	    != strlen(name)) {
		EVP_PKEY_CTX_free(kc);
		g_set_error(err, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
		    "administrator names are 1 to 64 letters, digits and . _ @ -");
		return FALSE;
	}
	if (kc == NULL || EVP_PKEY_keygen_init(kc) <= 0 || EVP_PKEY_keygen(kc, &pk) <= 0 ||
	    EVP_PKEY_get_raw_public_key(pk, pub, &len) != 1 || len != sizeof(pub) ||
	    EVP_PKEY_get_raw_private_key(pk, raw->data, &rlen) != 1 || rlen != raw->len) {
		crypto_fail(err, "Ed25519 key generation");
		goto out;
	}
	if ((r = kms_db_run(c, "SELECT nextval('admins_id_seq')", NULL, err)) == NULL)
		goto out;
	*id = kms_db_get_int(r, 0, 0);
	if ((sealed = seal_private(raw, *id, password, t, m, &kdf, err)) == NULL)
		goto out;
	if (admins_key && !kms_admin_mac(admins_key, *id, name, pub, sizeof(pub), mac, err))
		goto out;
	kms_db_param_int(&q, *id);
	kms_db_param_text(&q, name);
	kms_db_param_bytes(&q, pub, sizeof(pub));
	kms_db_param_bytes(&q, g_bytes_get_data(sealed, NULL), g_bytes_get_size(sealed));
	if (admins_key)
		kms_db_param_bytes(&q, mac, sizeof(mac));
	else
		kms_db_param_text(&q, NULL);
	kms_db_param_bytes(&q, kdf.salt, sizeof(kdf.salt));
	kms_db_param_int(&q, kdf.t_cost);
	kms_db_param_int(&q, kdf.m_cost_kib);
	kms_db_param_int(&q, kdf.parallelism);
	kms_db_param_text(&q, created_by);
	if (!kms_db_exec(c, "INSERT INTO admins (id, name, public_key, sealed_private, mac, kdf_salt,"
	    " kdf_t_cost, kdf_m_cost_kib, kdf_parallelism, created_by)"
	    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)", &q, err)) {
		if (err && *err && strstr((*err)->message, "admins_name_key")) {
			g_clear_error(err);
			g_set_error(err, KMS_ADMIN_ERROR, KMS_ADMIN_ERROR_REFUSED,
			    "an administrator named %s exists already", name);
		}
		goto out;
	}
	if (pubkey_hex)
		*pubkey_hex = kms_hex_encode(pub, sizeof(pub));
	ok = TRUE;
out:
	EVP_PKEY_free(pk);
	EVP_PKEY_CTX_free(kc);
	return ok;
}

KmsAdmin *
kms_admin_login(PGconn *c, const char *name, const KmsSecret *password, GError **err)
{
	KmsDbParams q = KMS_DB_PARAMS_INIT;
	g_autoptr(PGresult) r = NULL;
	g_autoptr(GBytes) sealed = NULL, salt = NULL, pubb = NULL;
	g_autoptr(KmsSecret) kek = NULL, raw = NULL;
	g_autoptr(GError) e = NULL;
	KmsKdfParams kdf;
	KmsSealContext ctx;
	KmsAdmin *a;
	guint8 pub[KMS_ADMIN_PUBKEY_LEN];
	size_t len = sizeof(pub);

	kms_db_param_text(&q, name);
	r = kms_db_run(c, "SELECT id, public_key, sealed_private, kdf_salt, kdf_t_cost,"
	    " kdf_m_cost_kib, kdf_parallelism, mac IS NOT NULL FROM admins WHERE name = $1", &q, err);
	if (r == NULL)
		return NULL;
	if (PQntuples(r) == 0) {
		g_set_error(err, KMS_ADMIN_ERROR, KMS_ADMIN_ERROR_AUTH,
		    "administrator %s: unknown name or wrong passphrase", name);
		return NULL;
	}
	salt = kms_db_get_bytes(r, 0, 3);
	if (g_bytes_get_size(salt) != sizeof(kdf.salt)) {
		g_set_error(err, KMS_ADMIN_ERROR, KMS_ADMIN_ERROR_AUTH,
		    "administrator %s: the stored key is damaged", name);
		return NULL;
	}
	memcpy(kdf.salt, g_bytes_get_data(salt, NULL), sizeof(kdf.salt));
	kdf.t_cost = (guint32)kms_db_get_int(r, 0, 4);
	kdf.m_cost_kib = (guint32)kms_db_get_int(r, 0, 5);
	kdf.parallelism = (guint32)kms_db_get_int(r, 0, 6);
	/* the row is not trusted: no cost beyond what [kms] kdf_* allows */
	if (kdf.t_cost < 1 || kdf.t_cost > 100 || kdf.m_cost_kib < 8 ||
	    kdf.m_cost_kib > 4u * 1024 * 1024 || kdf.parallelism < 1 || kdf.parallelism > 16) {
		g_set_error(err, KMS_ADMIN_ERROR, KMS_ADMIN_ERROR_AUTH,
		    "administrator %s: the stored key's KDF parameters are out of range", name);
		return NULL;
	}
	ctx = admin_ctx(kms_db_get_int(r, 0, 0));
	sealed = kms_db_get_bytes(r, 0, 2);
	if ((kek = kms_kdf_derive(password, &kdf, err)) == NULL)
		return NULL;
	raw = kms_unseal(kek, &ctx, g_bytes_get_data(sealed, NULL), g_bytes_get_size(sealed), &e);
	if (raw == NULL) {
		g_set_error(err, KMS_ADMIN_ERROR, KMS_ADMIN_ERROR_AUTH,
		    "administrator %s: unknown name or wrong passphrase", name);
		return NULL;
	}
	a = g_new0(KmsAdmin, 1);
	a->id = ctx.row_id;
	a->name = g_strdup(name);
	a->authenticated = strcmp(PQgetvalue(r, 0, 7), "t") == 0;
	a->key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, raw->data, raw->len);
	pubb = kms_db_get_bytes(r, 0, 1);
	if (a->key == NULL || EVP_PKEY_get_raw_public_key(a->key, pub, &len) != 1 ||
	    len != g_bytes_get_size(pubb) || memcmp(pub, g_bytes_get_data(pubb, NULL), len) != 0) {
		g_set_error(err, KMS_ADMIN_ERROR, KMS_ADMIN_ERROR_AUTH,
		    "administrator %s: the private key does not match the public key", name);
		return kms_admin_free(a);
	}
	return a;
}

gboolean
kms_admin_passwd(PGconn *c, const KmsAdmin *a, const KmsSecret *new_password, guint32 t,
    guint32 m, GError **err)
{
	g_autoptr(KmsSecret) raw = kms_secret_new(32);
	g_autoptr(GBytes) sealed = NULL;
	KmsDbParams q = KMS_DB_PARAMS_INIT;
	KmsKdfParams kdf;
	size_t rlen = raw->len;

	if (EVP_PKEY_get_raw_private_key(a->key, raw->data, &rlen) != 1 || rlen != raw->len)
		return crypto_fail(err, "reading the Ed25519 key");
	if ((sealed = seal_private(raw, a->id, new_password, t, m, &kdf, err)) == NULL)
		return FALSE;
	kms_db_param_int(&q, a->id);
	kms_db_param_bytes(&q, g_bytes_get_data(sealed, NULL), g_bytes_get_size(sealed));
	kms_db_param_bytes(&q, kdf.salt, sizeof(kdf.salt));
	kms_db_param_int(&q, kdf.t_cost);
	kms_db_param_int(&q, kdf.m_cost_kib);
	kms_db_param_int(&q, kdf.parallelism);
	return kms_db_exec(c, "UPDATE admins SET sealed_private = $2, kdf_salt = $3, kdf_t_cost = $4,"
	    " kdf_m_cost_kib = $5, kdf_parallelism = $6 WHERE id = $1", &q, err);
}

gboolean
kms_admin_authenticate_row(PGconn *c, const KmsSecret *key, gint64 id, const char *name,
    const char *pubkey_hex, GError **err)
{
	KmsDbParams q = KMS_DB_PARAMS_INIT;
	g_autoptr(PGresult) r = NULL;
	g_autoptr(GBytes) pub = NULL;
	g_autofree char *hex = NULL;
	guint8 mac[32];

	kms_db_param_int(&q, id);
	if ((r = kms_db_run(c, "SELECT name, public_key FROM admins WHERE id = $1 FOR UPDATE", &q,
	    err)) == NULL)
		return FALSE;
	if (PQntuples(r) == 1) {
		pub = kms_db_get_bytes(r, 0, 1);
		hex = kms_hex_encode(g_bytes_get_data(pub, NULL), g_bytes_get_size(pub));
	}
	if (hex == NULL || strcmp(PQgetvalue(r, 0, 0), name) != 0 || strcmp(hex, pubkey_hex) != 0) {
		g_set_error(err, KMS_ADMIN_ERROR, KMS_ADMIN_ERROR_REFUSED,
		    "the admins row %" G_GINT64_FORMAT " is not the one the request names", id);
		return FALSE;
	}
	if (!kms_admin_mac(key, id, name, g_bytes_get_data(pub, NULL), g_bytes_get_size(pub), mac,
	    err))
		return FALSE;
	kms_db_params_clear(&q);
	kms_db_param_int(&q, id);
	kms_db_param_bytes(&q, mac, sizeof(mac));
	return kms_db_exec(c, "UPDATE admins SET mac = $2 WHERE id = $1", &q, err);
}

/* The verified public key of admin ID into PUB (32 bytes) and its name;
 * FALSE when the row is missing or its mac does not verify. */
static gboolean
admin_verified(PGconn *c, const KmsSecret *key, gint64 id, guint8 pub[KMS_ADMIN_PUBKEY_LEN],
    char **name)
{
	KmsDbParams q = KMS_DB_PARAMS_INIT;
	g_autoptr(PGresult) r = NULL;
	g_autoptr(GBytes) pk = NULL, stored = NULL;
	guint8 mac[32];

	kms_db_param_int(&q, id);
	r = kms_db_run(c, "SELECT name, public_key, mac FROM admins WHERE id = $1", &q, NULL);
	if (r == NULL || PQntuples(r) != 1 || PQgetisnull(r, 0, 2))
		return FALSE;
	pk = kms_db_get_bytes(r, 0, 1);
	stored = kms_db_get_bytes(r, 0, 2);
	if (g_bytes_get_size(pk) != KMS_ADMIN_PUBKEY_LEN || g_bytes_get_size(stored) != 32 ||
	    !kms_admin_mac(key, id, PQgetvalue(r, 0, 0), g_bytes_get_data(pk, NULL),
		KMS_ADMIN_PUBKEY_LEN, mac, NULL) ||
	    CRYPTO_memcmp(mac, g_bytes_get_data(stored, NULL), 32) != 0)
		return FALSE;
	memcpy(pub, g_bytes_get_data(pk, NULL), KMS_ADMIN_PUBKEY_LEN);
	if (name)
		*name = g_strdup(PQgetvalue(r, 0, 0));
	return TRUE;
}

gboolean
kms_admin_count_valid(PGconn *c, const KmsSecret *key, int *n, GError **err)
{
	g_autoptr(PGresult) r = kms_db_run(c, "SELECT id FROM admins WHERE mac IS NOT NULL", NULL,
	    err);
	guint8 pub[KMS_ADMIN_PUBKEY_LEN];

	if (r == NULL)
		return FALSE;
	*n = 0;
	for (int i = 0; i < PQntuples(r); i++)
		if (admin_verified(c, key, kms_db_get_int(r, i, 0), pub, NULL))
			(*n)++;
	return TRUE;
}

gboolean
kms_admin_sign(const KmsAdmin *a, const guint8 digest[KMS_ADMIN_DIGEST_LEN],
    guint8 sig[KMS_ADMIN_SIG_LEN], GError **err)
{
	EVP_MD_CTX *mc = EVP_MD_CTX_new();
	size_t len = KMS_ADMIN_SIG_LEN;
	gboolean ok = mc && EVP_DigestSignInit(mc, NULL, NULL, NULL, a->key) == 1 &&
	    EVP_DigestSign(mc, sig, &len, digest, KMS_ADMIN_DIGEST_LEN) == 1 &&
	    len == KMS_ADMIN_SIG_LEN;

	EVP_MD_CTX_free(mc);
	return ok || crypto_fail(err, "Ed25519 signing");
}

gboolean
kms_admin_verify(const guint8 *pub, gsize pub_len, const guint8 digest[KMS_ADMIN_DIGEST_LEN],
    const guint8 *sig, gsize sig_len)
{
	EVP_PKEY *pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, pub_len);
	EVP_MD_CTX *mc = EVP_MD_CTX_new();
	gboolean ok = pk && mc && sig_len == KMS_ADMIN_SIG_LEN &&
	    EVP_DigestVerifyInit(mc, NULL, NULL, NULL, pk) == 1 &&
	    EVP_DigestVerify(mc, sig, sig_len, digest, KMS_ADMIN_DIGEST_LEN) == 1;

	EVP_MD_CTX_free(mc);
	EVP_PKEY_free(pk);
	return ok;
}

/* --- requests and votes --------------------------------------------------- */

/* Request ID's row, read once: kind, payload::text, requested_by (0:
 * none), signing-time expiry (epoch), signature, whether it has expired;
 * and its DIGEST. NULL with *err when there is no such request. */
static PGresult *
request_row(PGconn *c, gint64 id, guint8 digest[KMS_ADMIN_DIGEST_LEN], GError **err)
{
	KmsDbParams q = KMS_DB_PARAMS_INIT;
	PGresult *r;
	g_autoptr(GByteArray) m = g_byte_array_new();

	kms_db_param_int(&q, id);
	r = kms_db_run(c, "SELECT kind, payload::text, coalesce(requested_by, 0),"
	    " floor(extract(epoch FROM expires_at))::bigint, signature,"
	    " floor(extract(epoch FROM expires_at))::bigint < floor(extract(epoch FROM now()))"
	    " FROM requests WHERE id = $1", &q, err);
	if (r == NULL)
		return NULL;
	if (PQntuples(r) == 0) {
		PQclear(r);
		g_set_error(err, KMS_ADMIN_ERROR, KMS_ADMIN_ERROR_REFUSED, "no request %" G_GINT64_FORMAT,
		    id);
		return NULL;
	}
	put_cstr(m, "kmsmilter-request-v1");
	put_u64(m, (guint64)id);
	put_cstr(m, PQgetvalue(r, 0, 0));
	put_cstr(m, PQgetvalue(r, 0, 1));
	put_u64(m, (guint64)kms_db_get_int(r, 0, 2));
	put_u64(m, (guint64)kms_db_get_int(r, 0, 3));
	SHA256(m->data, m->len, digest);
	return r;
}

gboolean
kms_request_digest(PGconn *c, gint64 id, guint8 digest[KMS_ADMIN_DIGEST_LEN], GError **err)
{
	PGresult *r = request_row(c, id, digest, err);

	PQclear(r);
	return r != NULL;
}

void
kms_vote_digest(const guint8 request_digest[KMS_ADMIN_DIGEST_LEN], const char *decision,
    gint64 admin_id, guint8 out[KMS_ADMIN_DIGEST_LEN])
{
	g_autoptr(GByteArray) m = g_byte_array_new();

	put_cstr(m, "kmsmilter-vote-v1");
	put_str(m, request_digest, KMS_ADMIN_DIGEST_LEN);
	put_cstr(m, decision);
	put_u64(m, (guint64)admin_id);
	SHA256(m->data, m->len, out);
}

gboolean
kms_request_submit(PGconn *c, const KmsAdmin *a, const char *kind, JsonObject *payload,
    gint64 user_id, gint64 ttl, gint64 *id, gboolean *pending, GError **err)
{
	g_autoptr(JsonGenerator) g = json_generator_new();
	g_autoptr(JsonNode) root = json_node_new(JSON_NODE_OBJECT);
	g_autofree char *text = NULL;
	g_autoptr(PGresult) r = NULL;
	KmsDbParams q = KMS_DB_PARAMS_INIT;
	KmsApprovalPolicy pol;
	int op = kms_operation_of_kind(kind);
	guint8 digest[KMS_ADMIN_DIGEST_LEN], sig[KMS_ADMIN_SIG_LEN];

	if (!kms_approval_policy_read(c, &pol, err))
		return FALSE;
	*pending = op >= 0 && pol.need[op] >= 2;
	if ((*pending || op == KMS_OP_ADMIN_CHANGE) && a == NULL) {
		g_set_error(err, KMS_ADMIN_ERROR, KMS_ADMIN_ERROR_REFUSED,
		    "%s needs an administrator: give --admin NAME (and --admin-password-file)", kind);
		return FALSE;
	}
	json_node_set_object(root, payload);
	json_generator_set_root(g, root);
	text = json_generator_to_data(g, NULL);
	kms_db_param_text(&q, kind);
	kms_db_param_text(&q, *pending ? "awaiting-approval" : "queued");
	if (user_id > 0)
		kms_db_param_int(&q, user_id);
	else
		kms_db_param_text(&q, NULL);
	kms_db_param_text(&q, text);
	kms_db_param_int(&q, ttl);
	if (a) {
		kms_db_param_int(&q, a->id);
		kms_db_param_text(&q, a->name);
	} else {
		kms_db_param_text(&q, NULL);
		kms_db_param_text(&q, NULL);
	}
	r = kms_db_run(c, "INSERT INTO requests (kind, status, user_id, payload, expires_at,"
	    " requested_by, requester) VALUES ($1, $2, $3, $4::jsonb,"
	    " now() + make_interval(secs => $5), $6, $7) RETURNING id", &q, err);
	if (r == NULL)
		return FALSE;
	*id = kms_db_get_int(r, 0, 0);
	if (a) {
		if (!kms_request_digest(c, *id, digest, err) || !kms_admin_sign(a, digest, sig, err))
			return FALSE;
		kms_db_params_clear(&q);
		kms_db_param_int(&q, *id);
		kms_db_param_bytes(&q, sig, sizeof(sig));
		if (!kms_db_exec(c, "UPDATE requests SET signature = $2 WHERE id = $1", &q, err))
			return FALSE;
	}
	return kms_db_exec(c, "NOTIFY kms_requests", NULL, err);
}

void
kms_approval_result_clear(KmsApprovalResult *r)
{
	g_clear_pointer(&r->detail, g_free);
}

gboolean
kms_approval_check(PGconn *c, const KmsSecret *key, gint64 id, gboolean ignore_expiry,
    KmsApprovalResult *res, GError **err)
{
	KmsDbParams q = KMS_DB_PARAMS_INIT;
	g_autoptr(PGresult) r = NULL, v = NULL;
	g_autoptr(GBytes) sig = NULL;
	g_autoptr(GString) why = g_string_new(NULL);
	g_autofree char *requester = NULL;
	KmsApprovalPolicy pol;
	guint8 digest[KMS_ADMIN_DIGEST_LEN], pub[KMS_ADMIN_PUBKEY_LEN];
	gint64 by;
	int op;

	memset(res, 0, sizeof(*res));
	if ((r = request_row(c, id, digest, err)) == NULL)
		return FALSE;
	op = kms_operation_of_kind(PQgetvalue(r, 0, 0));
	if (op < 0) {
		res->state = KMS_APPROVAL_APPROVED;
		return TRUE;
	}
	if (!kms_approval_policy_load(c, key, &pol, err))
		return FALSE;
	res->need = pol.need[op];
	by = kms_db_get_int(r, 0, 2);
	res->state = KMS_APPROVAL_INVALID;
	if (by == 0) {
		/* nobody signed: only an operation that needs no administrator */
		if (res->need >= 2 || op == KMS_OP_ADMIN_CHANGE) {
			res->detail = g_strdup("no administrator signed the request");
			return TRUE;
		}
		res->state = KMS_APPROVAL_APPROVED;
		return TRUE;
	}
	sig = PQgetisnull(r, 0, 4) ? NULL : kms_db_get_bytes(r, 0, 4);
	if (!admin_verified(c, key, by, pub, &requester)) {
		res->detail = g_strdup_printf("the requesting administrator (id %" G_GINT64_FORMAT
		    ") is not a valid administrator", by);
		return TRUE;
	}
	if (sig == NULL || !kms_admin_verify(pub, sizeof(pub), digest, g_bytes_get_data(sig, NULL),
	    g_bytes_get_size(sig))) {
		res->detail = g_strdup_printf("the request's signature by %s does not verify",
		    requester);
		return TRUE;
	}
	if (res->need <= 1) {
		res->state = KMS_APPROVAL_APPROVED;
		return TRUE;
	}
	kms_db_param_int(&q, id);
	v = kms_db_run(c, "SELECT admin_id, admin_name, decision, signature FROM approvals"
	    " WHERE request_id = $1 ORDER BY at, admin_id", &q, err);
	if (v == NULL)
		return FALSE;
	for (int i = 0; i < PQntuples(v); i++) {
		gint64 aid = kms_db_get_int(v, i, 0);
		const char *dec = PQgetvalue(v, i, 2);
		g_autoptr(GBytes) vs = kms_db_get_bytes(v, i, 3);
		g_autofree char *vname = NULL;
		guint8 vd[KMS_ADMIN_DIGEST_LEN], vpub[KMS_ADMIN_PUBKEY_LEN];

		if (aid == by) {
			g_string_append_printf(why, "%s%s's own vote ignored", why->len ? "; " : "",
			    requester);
			continue;
		}
		if (!admin_verified(c, key, aid, vpub, &vname)) {
			g_string_append_printf(why, "%svote of \"%s\" ignored: not a valid administrator",
			    why->len ? "; " : "", PQgetvalue(v, i, 1));
			continue;
		}
		kms_vote_digest(digest, dec, aid, vd);
		if (!kms_admin_verify(vpub, sizeof(vpub), vd, g_bytes_get_data(vs, NULL),
		    g_bytes_get_size(vs))) {
			g_string_append_printf(why, "%svote of %s ignored: bad signature",
			    why->len ? "; " : "", vname);
			continue;
		}
		if (strcmp(dec, "reject") == 0) {
			res->state = KMS_APPROVAL_REJECTED;
			g_string_append_printf(why, "%srejected by %s", why->len ? "; " : "", vname);
			res->detail = g_strdup(why->str);
			return TRUE;
		}
		res->have++;
	}
	if (res->have >= res->need)
		res->state = KMS_APPROVAL_APPROVED;
	else if (!ignore_expiry && strcmp(PQgetvalue(r, 0, 5), "t") == 0)
		res->state = KMS_APPROVAL_EXPIRED;
	else
		res->state = KMS_APPROVAL_WAITING;
	res->detail = why->len ? g_strdup(why->str) : NULL;
	return TRUE;
}
