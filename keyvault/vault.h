/*
 * NAME
 *	vault - the PostgreSQL key vault: schema, sealed vault key, secrets
 * DESCRIPTION
 *	A KmsVault is one database connection plus, once unsealed, the vault
 *	key in secure memory. kms_vault_create() applies the schema (sql/,
 *	compiled in), creates the roles and seals a new random vault key
 *	under the startup password. Secret columns are sealed with
 *	kms_vault_seal() and opened with kms_vault_open_value(), which bind
 *	them to table, column, row id and key version (seal.h).
 * SECURITY
 *	Holds the vault key after kms_vault_unseal(); kms_vault_close() wipes
 *	it. A wrong password fails authentication of the wrapped key and
 *	leaves nothing changed.
 * DIAGNOSTICS
 *	GError in KMS_VAULT_ERROR, KMS_DB_ERROR or KMS_SEAL_ERROR.
 */
#ifndef KMS_VAULT_H
#define KMS_VAULT_H

#include <glib.h>
#include <libpq-fe.h>

#include "common/secret.h"
#include "keyvault/db.h"
#include "keyvault/seal.h"
#include "keyvault/shamir.h"

#define KMS_VAULT_ERROR (kms_vault_error_quark())
GQuark kms_vault_error_quark(void);

typedef enum {
	KMS_VAULT_ERROR_NOT_INITIALIZED,
	KMS_VAULT_ERROR_EXISTS,
	KMS_VAULT_ERROR_PASSWORD,	/* wrong startup password */
	KMS_VAULT_ERROR_SEALED,		/* operation needs the unsealed key */
	KMS_VAULT_ERROR_SCHEMA,		/* schema newer/older than this program */
} KmsVaultErrorCode;

/* The schema version this program writes and understands. */
#define KMS_SCHEMA_VERSION 2

typedef struct kms_vault KmsVault;

/* Connect to DSN (APP: application_name). Caller closes. */
KmsVault *kms_vault_connect(const char *dsn, const char *app, GError **err);
/* Wipe the key, close the connection; returns NULL. */
KmsVault *kms_vault_close(KmsVault *v);
/* Borrowed connection for the vault's own statements. */
PGconn *kms_vault_db(KmsVault *v);

/* Does the database hold a vault? (schema_version table present) */
gboolean kms_vault_exists(KmsVault *v, gboolean *exists, GError **err);
/* Schema version of an existing vault. */
gboolean kms_vault_schema_version(KmsVault *v, int *version, GError **err);

/* Apply the compiled-in schema and roles (sql/) on DB, in the caller's
 * transaction: what kmsctl init and kmsctl restore start from. */
gboolean kms_vault_apply_schema(PGconn *db, GError **err);

/* Inside the caller's transaction: apply schema and roles, make and seal a
 * new vault key under PASSWORD with Argon2id (T passes, M KiB), and leave
 * the vault unsealed. Refuses a database that already holds a vault.
 * PASSWORD NULL: no password wrap (the caller adds shares). */
gboolean kms_vault_create(KmsVault *v, const KmsSecret *password, guint32 t_cost,
    guint32 m_cost_kib, GError **err);

/* Unwrap the vault key with PASSWORD. KMS_VAULT_ERROR_PASSWORD if wrong. */
gboolean kms_vault_unseal(KmsVault *v, const KmsSecret *password, GError **err);
gboolean kms_vault_is_unsealed(const KmsVault *v);

/* Rewrap the vault key under NEW_PW (fresh salt) in one transaction after
 * checking OLD_PW. Nothing else is re-encrypted. */
gboolean kms_vault_change_password(KmsVault *v, const KmsSecret *old_pw,
    const KmsSecret *new_pw, guint32 t_cost, guint32 m_cost_kib, GError **err);

/* Shamir unseal (shamir.h). Inside the caller's transaction, on an
 * unsealed vault: make a new unseal secret, split it into N shares of
 * threshold M, wrap the vault key under it (replacing any earlier share
 * set, whose shares then stop working). Returns the shares (KmsShare). */
GPtrArray *kms_vault_shares_create(KmsVault *v, guint n, guint m, GError **err);
/* The vault's share set in *SET, or NULL when it has none. */
gboolean kms_vault_share_set(KmsVault *v, KmsShareSet **set, GError **err);
/* Unseal with COUNT shares: each is checked (KMS_SHAMIR_ERROR_MISMATCH
 * names the first wrong one), a share given twice counts once, fewer
 * distinct shares than the threshold is KMS_SHAMIR_ERROR_TOO_FEW. */
gboolean kms_vault_unseal_shares(KmsVault *v, KmsShare *const *shares, guint count,
    GError **err);
/* Does the vault have a startup password wrap (vault_seal row)? */
gboolean kms_vault_has_password(KmsVault *v, gboolean *has, GError **err);

/* Current vault-key version (sealed values record it). */
int kms_vault_key_version(const KmsVault *v);

/* Seal PT for TABLE.COLUMN of ROW_ID under the current key version. */
GBytes *kms_vault_seal(KmsVault *v, const char *table, const char *column, gint64 row_id,
    const unsigned char *pt, gsize len, GError **err);
/* Open a sealed value read from TABLE.COLUMN of ROW_ID. */
KmsSecret *kms_vault_open_value(KmsVault *v, const char *table, const char *column,
    gint64 row_id, int key_version, GBytes *blob, GError **err);

/* A 32-byte key for one purpose, HKDF-SHA256(vault key, info = LABEL),
 * e.g. the audit log's MAC key (audit.h). KMS_VAULT_ERROR_SEALED when the
 * vault is sealed. Caller frees. */
KmsSecret *kms_vault_derive_key(KmsVault *v, const char *label, GError **err);

/* Next id of TABLE's bigserial (to bind a sealed value before insert). */
gboolean kms_vault_next_id(KmsVault *v, const char *table, gint64 *id, GError **err);

/* Description of the seal for status output: caller g_free()s. */
char *kms_vault_seal_info(KmsVault *v, GError **err);

#endif
