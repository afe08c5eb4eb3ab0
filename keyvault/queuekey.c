/*
 * NAME
 *	queuekey - X25519 + HKDF-SHA256 + AES-256-GCM to kmsd (see queuekey.h)
 * SECURITY
 *	Shared secrets and derived keys are cleansed after use; the private
 *	key lives in a KmsSecret.
 */
#include "autoconfig.h"
#include "queuekey.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

#define QK_VERSION 1
#define NONCE_LEN 12
#define TAG_LEN 16
#define HDR_LEN (1 + KMS_QUEUE_KEY_LEN + NONCE_LEN)

static gboolean
fail(GError **err, const char *what)
{
	ERR_clear_error();
	g_set_error(err, KMS_SEAL_ERROR, KMS_SEAL_ERROR_FAILED, "%s", what);
	return FALSE;
}

/* X25519(priv, peer) -> HKDF-SHA256 -> 32-byte AES key in KEY. */
static gboolean
derive(EVP_PKEY *priv, const guint8 *peer_pub, const guint8 *eph_pub, const guint8 *static_pub,
    guint8 key[32])
{
	EVP_PKEY *peer = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, peer_pub,
	    KMS_QUEUE_KEY_LEN);
	EVP_PKEY_CTX *dc = peer ? EVP_PKEY_CTX_new(priv, NULL) : NULL;
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	EVP_KDF_CTX *kc = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
	guint8 shared[32], salt[2 * KMS_QUEUE_KEY_LEN];
	size_t slen = sizeof(shared);
	OSSL_PARAM params[5];
	gboolean ok = FALSE;

	memcpy(salt, eph_pub, KMS_QUEUE_KEY_LEN);
	memcpy(salt + KMS_QUEUE_KEY_LEN, static_pub, KMS_QUEUE_KEY_LEN);
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, shared, sizeof(shared));
	params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, salt, sizeof(salt));
	params[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO,
	    (char *)"kmsmilter-queue-v1", strlen("kmsmilter-queue-v1"));
	params[4] = OSSL_PARAM_construct_end();
	if (dc && EVP_PKEY_derive_init(dc) == 1 && EVP_PKEY_derive_set_peer(dc, peer) == 1 &&
	    EVP_PKEY_derive(dc, shared, &slen) == 1 && slen == sizeof(shared) && kc &&
	    EVP_KDF_derive(kc, key, 32, params) == 1)
		ok = TRUE;
	OPENSSL_cleanse(shared, sizeof(shared));
	EVP_KDF_CTX_free(kc);
	EVP_KDF_free(kdf);
	EVP_PKEY_CTX_free(dc);
	EVP_PKEY_free(peer);
	ERR_clear_error();
	return ok;
}

static GBytes *
aad_for(const char *label, gint64 id)
{
	GString *s = g_string_new("kmsmilter-queue-v1");

	g_string_append_c(s, '\0');
	g_string_append(s, label);
	g_string_append_c(s, '\0');
	g_string_append_printf(s, "%" G_GINT64_FORMAT, id);
	return g_string_free_to_bytes(s);
}

GBytes *
kms_queue_seal(const guint8 pub[KMS_QUEUE_KEY_LEN], const char *label, gint64 id,
    const guint8 *pt, gsize len, GError **err)
{
	EVP_PKEY *eph = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
	g_autoptr(GBytes) aad = aad_for(label, id);
	EVP_CIPHER_CTX *c = NULL;
	guint8 key[32], *out = NULL;
	size_t plen = KMS_QUEUE_KEY_LEN;
	int n, fin;
	gsize alen;
	const guint8 *a = g_bytes_get_data(aad, &alen);
	GBytes *res = NULL;

	if (len > G_MAXINT - HDR_LEN - TAG_LEN) {
		fail(err, "value too large to seal");
		goto out;
	}
	out = g_malloc(HDR_LEN + len + TAG_LEN);
	out[0] = QK_VERSION;
	if (eph == NULL || EVP_PKEY_get_raw_public_key(eph, out + 1, &plen) != 1 ||
	    !kms_random(out + 1 + KMS_QUEUE_KEY_LEN, NONCE_LEN, err) ||
	    !derive(eph, pub, out + 1, pub, key)) {
		if (err && *err == NULL)
			fail(err, "cannot derive a key for the queue");
		goto out;
	}
	c = EVP_CIPHER_CTX_new();
	if (c == NULL ||
	    EVP_EncryptInit_ex2(c, EVP_aes_256_gcm(), key, out + 1 + KMS_QUEUE_KEY_LEN, NULL) != 1 ||
	    EVP_EncryptUpdate(c, NULL, &n, a, (int)alen) != 1 ||
	    EVP_EncryptUpdate(c, out + HDR_LEN, &n, pt, (int)len) != 1 ||
	    EVP_EncryptFinal_ex(c, out + HDR_LEN + n, &fin) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN, out + HDR_LEN + len) != 1) {
		fail(err, "cannot encrypt for the queue");
		goto out;
	}
	res = g_bytes_new_take(g_steal_pointer(&out), HDR_LEN + len + TAG_LEN);
out:
	OPENSSL_cleanse(key, sizeof(key));
	EVP_CIPHER_CTX_free(c);
	EVP_PKEY_free(eph);
	g_free(out);
	return res;
}

KmsSecret *
kms_queue_open(const KmsSecret *priv, const char *label, gint64 id, const guint8 *blob,
    gsize len, GError **err)
{
	EVP_PKEY *pk = NULL;
	g_autoptr(GBytes) aad = NULL;
	EVP_CIPHER_CTX *c = NULL;
	KmsSecret *pt = NULL;
	guint8 key[32], mypub[KMS_QUEUE_KEY_LEN];
	size_t plen = sizeof(mypub);
	gsize clen, alen;
	const guint8 *a;
	int n, fin;

	if (len < HDR_LEN + TAG_LEN || blob[0] != QK_VERSION || len > G_MAXINT) {
		g_set_error(err, KMS_SEAL_ERROR, KMS_SEAL_ERROR_FORMAT,
		    "request %" G_GINT64_FORMAT ": not a queue-sealed value", id);
		return NULL;
	}
	pk = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, priv->data, priv->len);
	if (pk == NULL || EVP_PKEY_get_raw_public_key(pk, mypub, &plen) != 1 ||
	    !derive(pk, blob + 1, blob + 1, mypub, key)) {
		EVP_PKEY_free(pk);
		fail(err, "cannot derive the queue key");
		return NULL;
	}
	aad = aad_for(label, id);
	a = g_bytes_get_data(aad, &alen);
	clen = len - HDR_LEN - TAG_LEN;
	pt = kms_secret_new(clen);
	c = EVP_CIPHER_CTX_new();
	if (c == NULL ||
	    EVP_DecryptInit_ex2(c, EVP_aes_256_gcm(), key, blob + 1 + KMS_QUEUE_KEY_LEN, NULL) != 1 ||
	    EVP_DecryptUpdate(c, NULL, &n, a, (int)alen) != 1 ||
	    EVP_DecryptUpdate(c, pt->data, &n, blob + HDR_LEN, (int)clen) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN, (void *)(blob + HDR_LEN + clen)) != 1 ||
	    EVP_DecryptFinal_ex(c, pt->data + n, &fin) != 1) {
		g_set_error(err, KMS_SEAL_ERROR, KMS_SEAL_ERROR_OPEN,
		    "request %" G_GINT64_FORMAT ": the queued secret does not open (altered or moved)",
		    id);
		pt = kms_secret_free(pt);
	}
	OPENSSL_cleanse(key, sizeof(key));
	EVP_CIPHER_CTX_free(c);
	EVP_PKEY_free(pk);
	ERR_clear_error();
	return pt;
}

gboolean
kms_queue_key_create(KmsVault *v, GError **err)
{
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
	g_autoptr(KmsSecret) priv = kms_secret_new(KMS_QUEUE_KEY_LEN);
	g_autoptr(GBytes) sealed = NULL;
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	guint8 pub[KMS_QUEUE_KEY_LEN];
	size_t l1 = priv->len, l2 = sizeof(pub);
	gboolean ok;

	ok = k && EVP_PKEY_get_raw_private_key(k, priv->data, &l1) == 1 &&
	    EVP_PKEY_get_raw_public_key(k, pub, &l2) == 1;
	EVP_PKEY_free(k);
	if (!ok)
		return fail(err, "cannot make the queue key");
	sealed = kms_vault_seal(v, "queue_key", "sealed_private", 1, priv->data, priv->len, err);
	if (sealed == NULL)
		return FALSE;
	kms_db_param_bytes(&p, pub, sizeof(pub));
	kms_db_param_int(&p, kms_vault_key_version(v));
	kms_db_param_bytes(&p, g_bytes_get_data(sealed, NULL), g_bytes_get_size(sealed));
	return kms_db_exec(kms_vault_db(v), "INSERT INTO queue_key (id, public_key, key_version,"
	    " sealed_private) VALUES (1, $1, $2, $3)", &p, err);
}

gboolean
kms_queue_key_public(PGconn *c, guint8 pub[KMS_QUEUE_KEY_LEN], GError **err)
{
	g_autoptr(PGresult) r = kms_db_run(c, "SELECT public_key FROM queue_key WHERE id = 1",
	    NULL, err);
	g_autoptr(GBytes) b = NULL;

	if (r == NULL)
		return FALSE;
	b = PQntuples(r) == 1 ? kms_db_get_bytes(r, 0, 0) : NULL;
	if (b == NULL || g_bytes_get_size(b) != KMS_QUEUE_KEY_LEN) {
		g_set_error(err, KMS_VAULT_ERROR, KMS_VAULT_ERROR_NOT_INITIALIZED,
		    "the vault has no queue key");
		return FALSE;
	}
	memcpy(pub, g_bytes_get_data(b, NULL), KMS_QUEUE_KEY_LEN);
	return TRUE;
}

KmsSecret *
kms_queue_key_private(KmsVault *v, GError **err)
{
	g_autoptr(PGresult) r = kms_db_run(kms_vault_db(v),
	    "SELECT key_version, sealed_private FROM queue_key WHERE id = 1", NULL, err);
	g_autoptr(GBytes) b = NULL;
	KmsSecret *k;

	if (r == NULL)
		return NULL;
	if (PQntuples(r) != 1) {
		g_set_error(err, KMS_VAULT_ERROR, KMS_VAULT_ERROR_NOT_INITIALIZED,
		    "the vault has no queue key");
		return NULL;
	}
	b = kms_db_get_bytes(r, 0, 1);
	k = kms_vault_open_value(v, "queue_key", "sealed_private", 1, (int)kms_db_get_int(r, 0, 0),
	    b, err);
	if (k && k->len != KMS_QUEUE_KEY_LEN) {
		g_set_error(err, KMS_VAULT_ERROR, KMS_VAULT_ERROR_NOT_INITIALIZED,
		    "the queue key has the wrong length");
		k = kms_secret_free(k);
	}
	return k;
}
