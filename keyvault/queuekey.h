/*
 * NAME
 *	queuekey - hand secrets to kmsd through the request queue
 * DESCRIPTION
 *	kmsctl enroll makes a token that only the user may learn, but the mail
 *	carrying it is sent later by kmsd. kmsctl has no vault key, so it
 *	encrypts the token to kmsd's queue key: an X25519 key pair made at
 *	kmsctl init whose public half is stored in clear and whose private
 *	half is sealed under the vault key. A sealed blob is
 *	  version(1) = 1 || ephemeral public key(32) || nonce(12) || ct || tag(16)
 *	with the AES-256-GCM key derived by HKDF-SHA256 from the X25519 shared
 *	secret (salt: both public keys), and the label and request id as
 *	associated data, so a blob moved to another request does not open.
 * SECURITY
 *	Holds secrets on the kmsd side (the private key, the opened token).
 * DIAGNOSTICS
 *	GError in KMS_SEAL_ERROR.
 */
#ifndef KMS_QUEUEKEY_H
#define KMS_QUEUEKEY_H

#include <glib.h>

#include "common/secret.h"
#include "keyvault/vault.h"

#define KMS_QUEUE_KEY_LEN 32

/* At kmsctl init (unsealed vault, caller's transaction): make the pair. */
gboolean kms_queue_key_create(KmsVault *v, GError **err);
/* The public key (anyone with the admin role may read it). */
gboolean kms_queue_key_public(PGconn *c, guint8 pub[KMS_QUEUE_KEY_LEN], GError **err);
/* The private key (unsealed vault). */
KmsSecret *kms_queue_key_private(KmsVault *v, GError **err);

/* Encrypt PT to PUB for LABEL/ID. */
GBytes *kms_queue_seal(const guint8 pub[KMS_QUEUE_KEY_LEN], const char *label, gint64 id,
    const guint8 *pt, gsize len, GError **err);
/* Open a blob with PRIV for LABEL/ID; the plaintext is a secret. */
KmsSecret *kms_queue_open(const KmsSecret *priv, const char *label, gint64 id,
    const guint8 *blob, gsize len, GError **err);

#endif
