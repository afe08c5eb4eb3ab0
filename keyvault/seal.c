/*
 * NAME
 *	seal - AES-256-GCM sealing with location-bound associated data,
 *	Argon2id key derivation (see seal.h)
 * SECURITY
 *	Plaintexts only ever live in KmsSecret buffers; intermediate stack
 *	copies are cleansed.
 */
#include "autoconfig.h"
#include "seal.h"

#include <string.h>

#include <argon2.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

G_DEFINE_QUARK(kms-seal-error-quark, kms_seal_error)

#define SEAL_VERSION 1
#define NONCE_LEN 12
#define TAG_LEN 16

/* Associated data: a label, then each field NUL-terminated, so no two
 * different locations can produce the same bytes. */
static GBytes *
seal_aad(const KmsSealContext *ctx)
{
	GString *s = g_string_new("kmsmilter-seal-v1");

	g_string_append_c(s, '\0');
	g_string_append(s, ctx->table);
	g_string_append_c(s, '\0');
	g_string_append(s, ctx->column);
	g_string_append_c(s, '\0');
	g_string_append_printf(s, "%" G_GINT64_FORMAT, ctx->row_id);
	g_string_append_c(s, '\0');
	g_string_append_printf(s, "%d", ctx->key_version);
	g_string_append_c(s, '\0');
	return g_string_free_to_bytes(s);
}

gboolean
kms_kdf_params_new(KmsKdfParams *p, guint32 t_cost, guint32 m_cost_kib, GError **err)
{
	p->t_cost = t_cost;
	p->m_cost_kib = m_cost_kib;
	p->parallelism = 1;
	return kms_random(p->salt, sizeof(p->salt), err);
}

KmsSecret *
kms_kdf_derive(const KmsSecret *password, const KmsKdfParams *p, GError **err)
{
	KmsSecret *kek = kms_secret_new(KMS_VAULT_KEY_LEN);
	int rc;

	rc = argon2id_hash_raw(p->t_cost, p->m_cost_kib, p->parallelism,
	    password->data, password->len, p->salt, sizeof(p->salt),
	    kek->data, kek->len);
	if (rc != ARGON2_OK) {
		g_set_error(err, KMS_SEAL_ERROR, KMS_SEAL_ERROR_FAILED,
		    "Argon2id key derivation failed: %s", argon2_error_message(rc));
		return kms_secret_free(kek);
	}
	return kek;
}

GBytes *
kms_seal(const KmsSecret *key, const KmsSealContext *ctx, const unsigned char *pt,
    size_t len, GError **err)
{
	g_autoptr(GBytes) aad = seal_aad(ctx);
	EVP_CIPHER_CTX *c = NULL;
	unsigned char *out;
	int n, fin;
	gsize aadlen;
	const unsigned char *a = g_bytes_get_data(aad, &aadlen);

	g_return_val_if_fail(key->len == KMS_VAULT_KEY_LEN, NULL);
	if (len > G_MAXINT - KMS_SEAL_OVERHEAD) {
		g_set_error(err, KMS_SEAL_ERROR, KMS_SEAL_ERROR_FAILED, "value too large to seal");
		return NULL;
	}
	out = g_malloc(len + KMS_SEAL_OVERHEAD);
	out[0] = SEAL_VERSION;
	if (!kms_random(out + 1, NONCE_LEN, err))
		goto fail;
	c = EVP_CIPHER_CTX_new();
	if (c == NULL
	    || EVP_EncryptInit_ex2(c, EVP_aes_256_gcm(), key->data, out + 1, NULL) != 1
	    || EVP_EncryptUpdate(c, NULL, &n, a, (int)aadlen) != 1
	    || EVP_EncryptUpdate(c, out + 1 + NONCE_LEN, &n, pt, (int)len) != 1
	    || EVP_EncryptFinal_ex(c, out + 1 + NONCE_LEN + n, &fin) != 1
	    || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN,
		out + 1 + NONCE_LEN + len) != 1) {
		g_set_error(err, KMS_SEAL_ERROR, KMS_SEAL_ERROR_FAILED, "AES-256-GCM sealing failed");
		goto fail;
	}
	EVP_CIPHER_CTX_free(c);
	return g_bytes_new_take(out, len + KMS_SEAL_OVERHEAD);
fail:
	EVP_CIPHER_CTX_free(c);
	g_free(out);
	return NULL;
}

KmsSecret *
kms_unseal(const KmsSecret *key, const KmsSealContext *ctx, const unsigned char *blob,
    size_t len, GError **err)
{
	g_autoptr(GBytes) aad = NULL;
	EVP_CIPHER_CTX *c = NULL;
	KmsSecret *pt;
	size_t ctlen;
	int n, fin;
	gsize aadlen;
	const unsigned char *a;

	g_return_val_if_fail(key->len == KMS_VAULT_KEY_LEN, NULL);
	if (len < KMS_SEAL_OVERHEAD || blob[0] != SEAL_VERSION || len > G_MAXINT) {
		g_set_error(err, KMS_SEAL_ERROR, KMS_SEAL_ERROR_FORMAT,
		    "%s.%s of row %" G_GINT64_FORMAT " is not a sealed value",
		    ctx->table, ctx->column, ctx->row_id);
		return NULL;
	}
	aad = seal_aad(ctx);
	a = g_bytes_get_data(aad, &aadlen);
	ctlen = len - KMS_SEAL_OVERHEAD;
	pt = kms_secret_new(ctlen);
	c = EVP_CIPHER_CTX_new();
	if (c == NULL
	    || EVP_DecryptInit_ex2(c, EVP_aes_256_gcm(), key->data, blob + 1, NULL) != 1
	    || EVP_DecryptUpdate(c, NULL, &n, a, (int)aadlen) != 1
	    || EVP_DecryptUpdate(c, pt->data, &n, blob + 1 + NONCE_LEN, (int)ctlen) != 1
	    || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN,
		(void *)(blob + 1 + NONCE_LEN + ctlen)) != 1
	    || EVP_DecryptFinal_ex(c, pt->data + n, &fin) != 1) {
		g_set_error(err, KMS_SEAL_ERROR, KMS_SEAL_ERROR_OPEN,
		    "%s.%s of row %" G_GINT64_FORMAT " does not open with this vault key "
		    "(wrong key, or the value was altered or moved)",
		    ctx->table, ctx->column, ctx->row_id);
		EVP_CIPHER_CTX_free(c);
		return kms_secret_free(pt);
	}
	EVP_CIPHER_CTX_free(c);
	return pt;
}
