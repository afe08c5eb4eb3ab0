/*
 * NAME
 *	admin - KMS administrators, their signatures, and M-of-N approvals
 * DESCRIPTION
 *	An administrator is a row of the admins table holding a name, an
 *	Ed25519 public key and the private key sealed (AES-256-GCM, associated
 *	data admins.sealed_private and the row id) under a key derived with
 *	Argon2id from the administrator's own passphrase. kmsctl opens it to
 *	sign what the administrator asks for (kms_admin_login).
 *
 *	A row counts only when its mac verifies:
 *	  mac = HMAC-SHA256(admins key, "kmsmilter-admin-v1" || id || name ||
 *	                    public_key),  admins key = HKDF(vault key,
 *	                    "kmsmilter-admins-v1"),
 *	(id 8 bytes big-endian, each string a 4-byte big-endian length then
 *	its bytes). Only a holder of the vault key makes one: kmsctl init for
 *	the first administrator, kmsd for the others (request 'admin-add').
 *	A row inserted or edited by SQL is ignored by kmsd, whatever it claims.
 *
 *	How many approvals each operation needs is one row of approval_policy,
 *	"recover=2,export=1,...", MACed the same way under the admins key with
 *	"kmsmilter-approvals-v1". kmsd treats a missing or unverifiable row as
 *	"nothing gated may run". A count N <= 1 lets the requesting
 *	administrator act alone; N >= 2 needs N approvals by N distinct
 *	administrators other than the requester (EJBCA's rules: one valid
 *	rejection ends the request, nobody approves twice or their own
 *	request, requests expire).
 *
 *	A request (the requests table) made by an administrator carries
 *	requested_by and an Ed25519 signature over
 *	  SHA-256("kmsmilter-request-v1" || id || kind || payload::text ||
 *	          requested_by || floor(epoch of expires_at))
 *	and each approval or rejection a signature over
 *	  SHA-256("kmsmilter-vote-v1" || request digest || decision || admin id).
 *	kmsd checks them all before it acts (kms_approval_check).
 * SECURITY
 *	Private keys live in secure memory only while kmsctl signs. kmsctl
 *	cannot check MACs (no vault key): its refusals are for the operator's
 *	benefit; kmsd's checks are what hold against a database superuser.
 * DIAGNOSTICS
 *	GError in KMS_ADMIN_ERROR, KMS_DB_ERROR or KMS_SEAL_ERROR.
 */
#ifndef KMS_ADMIN_H
#define KMS_ADMIN_H

#include <glib.h>
#include <json-glib/json-glib.h>
#include <libpq-fe.h>
#include <openssl/evp.h>

#include "common/secret.h"
#include "keyvault/vault.h"

#define KMS_ADMIN_ERROR (kms_admin_error_quark())
GQuark kms_admin_error_quark(void);

typedef enum {
	KMS_ADMIN_ERROR_AUTH,		/* unknown administrator or wrong passphrase */
	KMS_ADMIN_ERROR_REFUSED,	/* the operation is not allowed */
	KMS_ADMIN_ERROR_FAILED,		/* crypto library failure */
} KmsAdminError;

#define KMS_ADMINS_KEY_LABEL "kmsmilter-admins-v1"
#define KMS_ADMIN_PUBKEY_LEN 32
#define KMS_ADMIN_SIG_LEN 64
#define KMS_ADMIN_DIGEST_LEN 32

/* Operations whose approval count can be set, in canonical order. */
typedef enum {
	KMS_OP_RECOVER, KMS_OP_EXPORT, KMS_OP_IMPORT, KMS_OP_ADMIN_CHANGE, KMS_OP_REVOKE,
	KMS_OP_POLICY_CHANGE, KMS_OP_COUNT
} KmsOperation;
extern const char *const kms_operation_names[KMS_OP_COUNT];
/* The operation a request kind is gated by, or -1 when none. */
int kms_operation_of_kind(const char *kind);

typedef struct {
	int need[KMS_OP_COUNT];
} KmsApprovalPolicy;

/* Every count 1. */
void kms_approval_policy_default(KmsApprovalPolicy *p);
/* Parse "op=N,op=N" or space separated (unknown op, N outside 1..9:
 * G_OPTION_ERROR_BAD_VALUE); operations not named keep their value. */
gboolean kms_approval_policy_parse(KmsApprovalPolicy *p, const char *text, GError **err);
/* Canonical "recover=N,export=N,import=N,admin-change=N,revoke=N,
 * policy-change=N"; g_free. */
char *kms_approval_policy_format(const KmsApprovalPolicy *p);
/* Read the row without verifying it (kmsctl): FALSE with *err on a
 * database error; a missing row gives the defaults. */
gboolean kms_approval_policy_read(PGconn *c, KmsApprovalPolicy *p, GError **err);
/* Read and verify the row under ADMINS_KEY (kmsd); KMS_ADMIN_ERROR_REFUSED
 * when it is missing or its MAC does not verify. */
gboolean kms_approval_policy_load(PGconn *c, const KmsSecret *admins_key, KmsApprovalPolicy *p,
    GError **err);
/* Write the row with its MAC (caller's transaction). */
gboolean kms_approval_policy_store(PGconn *c, const KmsSecret *admins_key,
    const KmsApprovalPolicy *p, GError **err);

/* An administrator opened by its passphrase (kmsctl). */
typedef struct {
	gint64 id;
	char *name;
	gboolean authenticated;		/* the row has a mac (kmsctl cannot check it) */
	EVP_PKEY *key;			/* Ed25519 private key */
} KmsAdmin;
KmsAdmin *kms_admin_free(KmsAdmin *a);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KmsAdmin, kms_admin_free)

/* Make a key pair for NAME sealed under PASSWORD (Argon2id T passes, M
 * KiB) and insert its row in the caller's transaction; with ADMINS_KEY
 * (kmsctl init) the row gets its mac at once, else mac stays NULL until
 * kmsd adds it. *ID gets the row id; *PUBKEY_HEX (may be NULL) the key. */
gboolean kms_admin_create(PGconn *c, const char *name, const KmsSecret *password, guint32 t,
    guint32 m, const char *created_by, const KmsSecret *admins_key, gint64 *id,
    char **pubkey_hex, GError **err);
/* Open NAME's private key with PASSWORD. KMS_ADMIN_ERROR_AUTH for an
 * unknown name or a wrong passphrase (the same message for both). */
KmsAdmin *kms_admin_login(PGconn *c, const char *name, const KmsSecret *password, GError **err);
/* Reseal A's private key under NEW_PASSWORD. */
gboolean kms_admin_passwd(PGconn *c, const KmsAdmin *a, const KmsSecret *new_password,
    guint32 t, guint32 m, GError **err);
/* The mac of an admins row. */
gboolean kms_admin_mac(const KmsSecret *admins_key, gint64 id, const char *name,
    const guint8 *pub, gsize pub_len, guint8 mac[32], GError **err);
/* Set the mac of row ID after checking NAME and PUBKEY_HEX match it. */
gboolean kms_admin_authenticate_row(PGconn *c, const KmsSecret *admins_key, gint64 id,
    const char *name, const char *pubkey_hex, GError **err);
/* Number of administrators whose row verifies under ADMINS_KEY. */
gboolean kms_admin_count_valid(PGconn *c, const KmsSecret *admins_key, int *n, GError **err);

/* Sign/verify 32-byte digests. */
gboolean kms_admin_sign(const KmsAdmin *a, const guint8 digest[KMS_ADMIN_DIGEST_LEN],
    guint8 sig[KMS_ADMIN_SIG_LEN], GError **err);
gboolean kms_admin_verify(const guint8 *pub, gsize pub_len, const guint8 digest[KMS_ADMIN_DIGEST_LEN],
    const guint8 *sig, gsize sig_len);

/* The request digest (see above) of request ID as stored; *KIND etc. may
 * be NULL. FALSE with *err when there is no such request. */
gboolean kms_request_digest(PGconn *c, gint64 id, guint8 digest[KMS_ADMIN_DIGEST_LEN],
    GError **err);
void kms_vote_digest(const guint8 request_digest[KMS_ADMIN_DIGEST_LEN], const char *decision,
    gint64 admin_id, guint8 out[KMS_ADMIN_DIGEST_LEN]);

/* kmsctl: insert a request of KIND for A (may be NULL when no
 * administrator acts and the operation needs none), signed by A, in status
 * 'awaiting-approval' when POLICY gates it with N >= 2, else 'queued'; wake
 * kmsd. TTL seconds. *PENDING tells which. In the caller's transaction. */
gboolean kms_request_submit(PGconn *c, const KmsAdmin *a, const char *kind, JsonObject *payload,
    gint64 user_id, gint64 ttl, gint64 *id, gboolean *pending, GError **err);

typedef enum {
	KMS_APPROVAL_WAITING,		/* not enough valid approvals yet */
	KMS_APPROVAL_APPROVED,		/* enough (or none needed) */
	KMS_APPROVAL_REJECTED,		/* a valid rejection */
	KMS_APPROVAL_EXPIRED,		/* past its signed expiry, not approved */
	KMS_APPROVAL_INVALID,		/* unsigned, bad signature, unknown requester */
} KmsApprovalState;

typedef struct {
	KmsApprovalState state;
	int have, need;
	char *detail;			/* why (ignored votes, who rejected); g_free */
} KmsApprovalResult;
void kms_approval_result_clear(KmsApprovalResult *r);

/* kmsd: decide request ID (KIND) from the verified policy, the verified
 * requester and the verified votes. IGNORE_EXPIRY: for a check made after
 * the fact (the recovery a token of an approved request leads to). */
gboolean kms_approval_check(PGconn *c, const KmsSecret *admins_key, gint64 id,
    gboolean ignore_expiry, KmsApprovalResult *res, GError **err);

#endif
