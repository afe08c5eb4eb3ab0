/*
 * NAME
 *	shamir - M-of-N unseal shares of the vault key (libgfshare)
 * DESCRIPTION
 *	kmsctl init --shares N --threshold M (or kmsctl rekey) makes a random
 *	256-bit unseal secret, splits it with libgfshare (Shamir's scheme in
 *	GF(2^8)) into N shares numbered 1..N of which any M recombine it, and
 *	wraps the vault key a second time under
 *	  KEK = HKDF-SHA256(ikm = unseal secret, salt = set id,
 *	                    info = "kmsmilter-vault-shares-v1")
 *	(AES-256-GCM bound to vault_shares.wrapped_key, row 1, key version).
 *	The table vault_shares keeps the threshold, the share count, a random
 *	16-byte set id and, per share, the check value
 *	  SHA-256("kmsmilter-share-v1" || set id || share number || share)
 *	so that a mistyped, corrupted or foreign share is refused as soon as it
 *	is entered, naming the share number it claims. The check values say
 *	nothing about the secret: each share is 256 bits that look random to
 *	anyone holding fewer than M of them.
 *
 *	A share is written "I-HEX": its number I, a dash, and 64 hexadecimal
 *	digits (spaces ignored, either case). kmsctl prints each once
 *	("Share 3/5: 3-...") or writes it to a file of its own (mode 0600).
 *
 *	Unsealing kmsd with shares (kmsd.c, kmsctl_unseal.c): kmsd started
 *	without a startup password on a vault that has shares makes an
 *	ephemeral X25519 key pair, publishes the public half in
 *	unseal_sessions and waits. kmsctl unseal checks the share against the
 *	check values, encrypts it to each waiting kmsd with kms_queue_seal()
 *	(label "unseal-share", the unseal_shares row id) and inserts it; kmsd
 *	opens it, checks it again, counts distinct valid shares and, once M
 *	are there, recombines the secret, unwraps the vault key, wipes the
 *	shares and its ephemeral key and starts working.
 * SECURITY
 *	Shares and the unseal secret live in KmsSecret (secure heap) and are
 *	wiped after use. libgfshare draws its polynomial coefficients from
 *	gfshare_fill_rand, which this module points at OpenSSL's
 *	RAND_priv_bytes, never the library's random() default; libgfshare
 *	wipes its own buffers when a context is freed. The check values let a
 *	database administrator tell which shares were entered, not their value.
 *	Who controls the database can substitute its own public key in
 *	unseal_sessions; kmsd logs the fingerprint of its key and kmsctl unseal
 *	prints the fingerprint it encrypts to (and --fingerprint insists on one).
 * DIAGNOSTICS
 *	GError in KMS_SHAMIR_ERROR with one line that never holds share text.
 */
#ifndef KMS_SHAMIR_H
#define KMS_SHAMIR_H

#include <glib.h>

#include "common/secret.h"

#define KMS_SHAMIR_ERROR (kms_shamir_error_quark())
GQuark kms_shamir_error_quark(void);

typedef enum {
	KMS_SHAMIR_ERROR_FAILED,	/* crypto library failure */
	KMS_SHAMIR_ERROR_FORMAT,	/* not "I-HEX" */
	KMS_SHAMIR_ERROR_MISMATCH,	/* does not match this vault's share I */
	KMS_SHAMIR_ERROR_TOO_FEW,	/* fewer than the threshold */
	KMS_SHAMIR_ERROR_NONE,		/* the vault has no shares */
} KmsShamirErrorCode;

#define KMS_SHARE_LEN 32	/* bytes of share = bytes of the unseal secret */
#define KMS_SHARE_SET_ID_LEN 16
#define KMS_SHARE_CHECK_LEN 32
#define KMS_SHARES_MAX 255

/* One share: its number (1..255) and value. */
typedef struct {
	guint8 index;
	KmsSecret *value;	/* KMS_SHARE_LEN bytes */
} KmsShare;

KmsShare *kms_share_free(KmsShare *s);	/* wipes; returns NULL */
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KmsShare, kms_share_free)
/* The same as a GDestroyNotify, for GPtrArrays of shares. */
void kms_share_destroy(gpointer share);

/* Parse "I-HEX" (surrounding and inner spaces ignored). */
KmsShare *kms_share_parse(const char *text, gsize len, GError **err);
/* Read a share from FILE, or prompt on the terminal when FILE is NULL. */
KmsShare *kms_share_read(const char *file, const char *prompt, GError **err);
/* "I-HEX" as a secret (NUL-terminated text). */
KmsSecret *kms_share_format(const KmsShare *s);

/* Split SECRET (KMS_SHARE_LEN bytes) into N shares numbered 1..N, any M
 * of which recombine it (2 <= M <= N <= 255). Returns a GPtrArray of
 * KmsShare owning them (freed with kms_share_free). */
GPtrArray *kms_shamir_split(const KmsSecret *secret, guint n, guint m, GError **err);
/* Recombine the secret from COUNT shares of distinct numbers. With fewer
 * than the threshold the result is a wrong secret, which the key wrap
 * then refuses: callers count shares first. */
KmsSecret *kms_shamir_combine(KmsShare *const *shares, guint count, GError **err);

/* The check value of share S in set SET_ID. */
void kms_share_check_value(const guint8 set_id[KMS_SHARE_SET_ID_LEN], const KmsShare *s,
    guint8 out[KMS_SHARE_CHECK_LEN]);
/* The key that wraps the vault key, from the unseal secret. */
KmsSecret *kms_shamir_kek(const KmsSecret *secret, const guint8 set_id[KMS_SHARE_SET_ID_LEN],
    GError **err);

/* The public description of a vault's share set (vault_shares row). */
typedef struct {
	guint threshold;
	guint count;
	int key_version;
	guint8 set_id[KMS_SHARE_SET_ID_LEN];
	GBytes *checks;		/* count * KMS_SHARE_CHECK_LEN bytes */
	GBytes *wrapped_key;
	char *created_at;	/* ISO 8601 UTC */
} KmsShareSet;

KmsShareSet *kms_share_set_free(KmsShareSet *set);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KmsShareSet, kms_share_set_free)

/* Does S belong to SET? KMS_SHAMIR_ERROR_MISMATCH names the share number:
 * "does not match share 4 of this vault" (or "this vault has 5 shares"). */
gboolean kms_share_set_check(const KmsShareSet *set, const KmsShare *s, GError **err);

/* Fingerprint of an unseal session's public key (32 bytes): the first 8
 * bytes of its SHA-256 as 16 hexadecimal digits. Caller g_free()s. */
char *kms_unseal_fingerprint(const guint8 *pub, gsize len);

#endif
