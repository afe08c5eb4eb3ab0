/*
 * NAME
 *	seal - authenticated encryption of vault secrets, password key wrap
 * DESCRIPTION
 *	Every secret column is sealed with AES-256-GCM under the vault key.
 *	The associated data binds the ciphertext to where it lives: table,
 *	column, row id and vault-key version, so a ciphertext copied into
 *	another row or column no longer opens. A sealed blob is
 *	  version(1) = 1 || nonce(12) || ciphertext || tag(16).
 *	The vault key itself is sealed the same way under a key derived from
 *	the startup password with Argon2id (parameters kept beside the wrap).
 * SECURITY
 *	Holds secrets. Nonces are 96 random bits per seal (a vault seals far
 *	fewer than 2^32 values under one key). Failures say only "does not
 *	open" - never which byte or why.
 * DIAGNOSTICS
 *	GError in KMS_SEAL_ERROR.
 */
#ifndef KMS_SEAL_H
#define KMS_SEAL_H

#include <glib.h>

#include "common/secret.h"

#define KMS_SEAL_ERROR (kms_seal_error_quark())
GQuark kms_seal_error_quark(void);

typedef enum {
	KMS_SEAL_ERROR_FAILED,		/* crypto library failure */
	KMS_SEAL_ERROR_OPEN,		/* authentication failed: wrong key or moved */
	KMS_SEAL_ERROR_FORMAT,		/* not a sealed blob */
} KmsSealError;

#define KMS_VAULT_KEY_LEN 32
#define KMS_SEAL_OVERHEAD (1 + 12 + 16)
#define KMS_KDF_SALT_LEN 16

/* Where a sealed value lives; all of it is authenticated. */
typedef struct {
	const char *table;
	const char *column;
	gint64 row_id;
	int key_version;
} KmsSealContext;

/* Argon2id parameters, stored with the wrapped key. */
typedef struct {
	guint32 t_cost;		/* passes */
	guint32 m_cost_kib;	/* memory in KiB */
	guint32 parallelism;
	unsigned char salt[KMS_KDF_SALT_LEN];
} KmsKdfParams;

/* Fresh parameters: random salt, T passes, M KiB, parallelism 1. */
gboolean kms_kdf_params_new(KmsKdfParams *p, guint32 t_cost, guint32 m_cost_kib, GError **err);

/* Key-encryption key from PASSWORD (32 bytes); caller frees. */
KmsSecret *kms_kdf_derive(const KmsSecret *password, const KmsKdfParams *p, GError **err);

/* Seal PT under KEY for CTX. Returns a new GBytes blob. */
GBytes *kms_seal(const KmsSecret *key, const KmsSealContext *ctx,
    const unsigned char *pt, size_t len, GError **err);

/* Open BLOB under KEY for CTX; the plaintext lands in secure memory.
 * KMS_SEAL_ERROR_OPEN when the key is wrong or the blob was moved. */
KmsSecret *kms_unseal(const KmsSecret *key, const KmsSealContext *ctx,
    const unsigned char *blob, size_t len, GError **err);

#endif
