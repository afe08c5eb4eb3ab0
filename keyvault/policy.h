/*
 * NAME
 *	policy - the encryption policy in effect for an address or a message
 * DESCRIPTION
 *	Eight keys, each with a global default in the [policy] section of
 *	the configuration, overridable in the vault (table policy) per
 *	domain and per user:
 *	  encrypt		never | if-possible | required
 *	  header		trigger header name ("HEADER: yes" asks for
 *				encryption); none: no trigger header
 *	  subject_tag		trigger subject tag; none: no trigger tag
 *	  algorithms		allowed content encryption, preference order
 *	  unknown_capabilities	assumed for recipients who never announced
 *				capabilities; none: such recipients block
 *	  key_transport		rsa-pkcs1 | rsa-oaep-if-announced
 *	  allow_untrusted	yes: harvested certificates with an untrusted
 *				chain may be encrypted to
 *	  mixed			split | plain | reject (if-possible only)
 *	Resolution per key: the user row (the address, compared in lower
 *	case) wins over the domain row (the part after the last '@', lower
 *	case, exact match: no parent domains) which wins over the config.
 *	kms_policy_resolve_many() resolves every address of a message with
 *	one statement (the rows of all their domains and users at once,
 *	each applied to every address it concerns) and reads the config
 *	once; kms_policy_resolve() is its case of one scope.
 *
 *	For one message (kms_policy_message()):
 *	  encrypt	the strictest of the sender's and every recipient's
 *			(never < if-possible < required): a domain that
 *			must only receive encrypted mail is honoured
 *			whoever writes to it; a trigger makes it required
 *			(a user who asked for encryption is never sent in
 *			clear silently);
 *	  header, subject_tag, algorithms, unknown_capabilities,
 *	  key_transport, mixed
 *			the sender's: the sending organisation decides how
 *			its mail is protected (the negotiation already
 *			adapts to what each recipient can read);
 *	  allow_untrusted
 *			each recipient's own, when its certificate is
 *			looked up (it is a statement about that
 *			recipient's certificates).
 *	mixed defaults to plain: if-possible promises encryption only when
 *	every recipient can read it, so plain delivery keeps that promise
 *	and needs no re-injection; split (encrypted where possible, a plain
 *	copy re-injected for the rest) and reject are opt-in.
 * SECURITY
 *	Values come from the administrator (config, kmsctl). Every value,
 *	also one read back from the vault, is checked with the same rules
 *	as the configuration file (kms_config_check()) plus header-name and
 *	line-break checks; an invalid row is an error, never a silent
 *	default. Works with the kms_milter role (SELECT on policy).
 * DIAGNOSTICS
 *	GError in KMS_POLICY_ERROR (invalid key, value or scope) or
 *	KMS_DB_ERROR, one line naming the key and the value's origin.
 */
#ifndef KMS_POLICY_H
#define KMS_POLICY_H

#include <glib.h>
#include <libpq-fe.h>

#include "common/config.h"
#include "smime/negotiate.h"

#define KMS_POLICY_ERROR (kms_policy_error_quark())
GQuark kms_policy_error_quark(void);

typedef enum {
	KMS_POLICY_ERROR_KEY,		/* unknown key */
	KMS_POLICY_ERROR_VALUE,		/* bad value (config, argument or vault row) */
	KMS_POLICY_ERROR_SCOPE,		/* bad domain or address */
} KmsPolicyError;

typedef enum {
	KMS_ENCRYPT_NEVER,
	KMS_ENCRYPT_IF_POSSIBLE,
	KMS_ENCRYPT_REQUIRED,
} KmsEncryptLevel;

typedef enum {
	KMS_MIXED_SPLIT,
	KMS_MIXED_PLAIN,
	KMS_MIXED_REJECT,
} KmsMixedPolicy;

/* Where a value came from. */
typedef enum {
	KMS_POLICY_FROM_CONFIG,
	KMS_POLICY_FROM_DOMAIN,
	KMS_POLICY_FROM_USER,
} KmsPolicySource;

typedef enum {
	KMS_POLICY_ENCRYPT,
	KMS_POLICY_HEADER,
	KMS_POLICY_SUBJECT_TAG,
	KMS_POLICY_ALGORITHMS,
	KMS_POLICY_UNKNOWN_CAPABILITIES,
	KMS_POLICY_KEY_TRANSPORT,
	KMS_POLICY_ALLOW_UNTRUSTED,
	KMS_POLICY_MIXED,
	KMS_POLICY_N_KEYS
} KmsPolicyKey;

typedef struct {
	char *domain;			/* lower case; NULL for the global policy */
	char *address;			/* lower case; NULL unless resolved for a user */
	/* typed values */
	KmsEncryptLevel encrypt;
	char *header;			/* NULL: no trigger header */
	char *subject_tag;		/* NULL: no trigger tag */
	char **algorithms;		/* NULL-terminated, canonical names */
	char **unknown_capabilities;	/* NULL-terminated; {NULL} for none */
	KmsKeyTransportPolicy key_transport;
	gboolean allow_untrusted;
	KmsMixedPolicy mixed;
	/* per key (KmsPolicyKey): canonical text and origin */
	char *value[KMS_POLICY_N_KEYS];
	KmsPolicySource source[KMS_POLICY_N_KEYS];
} KmsPolicy;

/* Name of key K ("encrypt" ...), of a source ("config", "domain",
 * "user"), of an encryption level ("never" ...). Static strings. */
const char *kms_policy_key_name(KmsPolicyKey k);
const char *kms_policy_source_name(KmsPolicySource s);
const char *kms_policy_encrypt_name(KmsEncryptLevel l);

/* Check KEY=VALUE; *canonical (g_free) gets the form stored (lists
 * without spaces, yes/no, names in lower case where case does not
 * matter). FALSE with KMS_POLICY_ERROR. */
gboolean kms_policy_check(const char *key, const char *value, char **canonical, GError **err);

/* Check and lower-case a scope name: a domain (DOMAIN TRUE) or an
 * address. g_free; NULL with KMS_POLICY_ERROR_SCOPE. */
char *kms_policy_scope_name(const char *name, gboolean domain, GError **err);

/* The policy in effect: with ADDRESS for that user (its domain taken
 * from it), else with DOMAIN for that domain, else the global policy
 * (C may then be NULL: config only). Caller frees with
 * kms_policy_free(). NULL with *err (an invalid value anywhere,
 * a database error: KMS_DB_ERROR_RETRY is transient). */
KmsPolicy *kms_policy_resolve(PGconn *c, const KmsConfig *cfg, const char *domain,
    const char *address, GError **err);
/* The policies of the N ADDRESSES (an element may be NULL: the global
 * policy), each as kms_policy_resolve() of that address, in one
 * statement (see DESCRIPTION). N KmsPolicy * in ADDRESSES order; the
 * caller g_ptr_array_unref()s the array, which frees them. NULL with
 * *err as kms_policy_resolve(); an invalid address is reported before
 * the vault is asked. */
GPtrArray *kms_policy_resolve_many(PGconn *c, const KmsConfig *cfg,
    const char *const *addresses, gsize n, GError **err);
KmsPolicy *kms_policy_free(KmsPolicy *p);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KmsPolicy, kms_policy_free)

/* Set KEY of the domain or user NAME (SCOPE "domain" or "user") to
 * VALUE, or remove the override when VALUE is NULL or empty; checked as
 * kms_policy_check(). *removed (may be NULL) tells whether a row went
 * away. In the caller's transaction, if any. */
gboolean kms_policy_set(PGconn *c, const char *scope, const char *name, const char *key,
    const char *value, gboolean *removed, GError **err);

/* The negotiation policy of P, borrowing P's strings. */
void kms_policy_negotiate_policy(const KmsPolicy *p, KmsNegotiatePolicy *out);

/* The encryption level of one message (see DESCRIPTION): the strictest
 * of SENDER (may be NULL) and the N RCPTS, required when TRIGGERED. */
KmsEncryptLevel kms_policy_message(const KmsPolicy *sender, KmsPolicy *const *rcpts, gsize n,
    gboolean triggered);

#endif
