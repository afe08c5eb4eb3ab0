/*
 * NAME
 *	negotiate - choose the content-encryption algorithm for a message
 * DESCRIPTION
 *	A pure function: no database, no OpenSSL, no clock. kms_negotiate()
 *	takes every recipient of one message, each with what it is known to
 *	support, and the administrator's [policy], and decides how the
 *	message is to be encrypted, or refuses.
 *
 *	Content encryption. The policy lists the allowed algorithms in the
 *	administrator's order of preference, from aes256-gcm aes128-gcm
 *	aes256-cbc aes192-cbc aes128-cbc des-ede3-cbc (names as in
 *	capabilities.h, case-insensitive, canonical lower case in output).
 *	A recipient that announced SMIMECapabilities (capabilities != NULL)
 *	supports exactly the names it announced - an empty announcement
 *	supports nothing. A recipient that never announced any supports only
 *	the policy's unknown_capabilities (default aes256-cbc: NSS and gpgsm
 *	2.2 cannot read AES-GCM, see DESIGN.md). The chosen algorithm is the
 *	first in the administrator's order that every recipient supports.
 *	Names are matched exactly, ignoring case; duplicates and names that
 *	are not allowed content-encryption algorithms (rc2-cbc-40, des-cbc,
 *	aes192-gcm, rsaes-oaep, OIDs ...) are ignored. The order of a
 *	recipient's own list never matters: RFC 8551 2.5.2 makes it the
 *	signer's preference, but the administrator's order decides here.
 *	3DES is chosen only when the policy lists des-ede3-cbc, and is
 *	assumed for unknown recipients only when unknown_capabilities names
 *	it. An AES-GCM result means AuthEnvelopedData (RFC 5083, with the
 *	AES-GCM parameters of RFC 5084): the caller builds authEnveloped-data
 *	for it (result->authenveloped) and enveloped-data otherwise.
 *
 *	Key transport, per recipient: an EC certificate gets "ecdh"
 *	(ECDH key agreement, RFC 5753); an RSA certificate gets "rsaes-oaep"
 *	(RFC 8017, RFC 3560) only when the policy is rsa-oaep-if-announced
 *	and that recipient announced rsaes-oaep or rsaes-oaep-HASH, else
 *	"rsa-pkcs1" (PKCS#1 v1.5). The OAEP hash is sha256 when the
 *	recipient announced rsaes-oaep-sha256, else sha1 (the RFC 3560
 *	default) when it announced plain rsaes-oaep, else the first of
 *	sha384, sha512, sha224 it announced.
 *
 *	The result does not depend on the order of the recipients, apart
 *	from the order of names in messages and of result->recipients (both
 *	follow the input). The reason is one line, e.g. "aes256-cbc:
 *	aes256-gcm, aes128-gcm are not supported by bob@example.org".
 *
 *	Refusal (KMS_NEGOTIATE_ERROR_NO_COMMON) when no allowed algorithm is
 *	supported by every recipient. The message names the blockers: the
 *	recipients that support none of the allowed algorithms, or, when
 *	each supports one but no single algorithm is common, the recipients
 *	lacking the administrator's first choice (then, for each further
 *	allowed algorithm, who lacks it). Invalid input (no recipient, no
 *	allowed algorithm, a name outside the six in the policy, a recipient
 *	without an address) is KMS_NEGOTIATE_ERROR_INVALID.
 * SECURITY
 *	Capability names come from hostile mail but are only compared with
 *	fixed names; no input name is ever copied into a message except the
 *	recipient addresses, the certificate digests and the sources the
 *	caller supplies. Long recipient lists are shortened in messages
 *	("and 97 more").
 * DIAGNOSTICS
 *	GError in KMS_NEGOTIATE_ERROR, one line, fit for a 550 reply and for
 *	kmsctl negotiate.
 */
#ifndef KMS_NEGOTIATE_H
#define KMS_NEGOTIATE_H

#include <glib.h>

#define KMS_NEGOTIATE_ERROR (kms_negotiate_error_quark())
GQuark kms_negotiate_error_quark(void);

typedef enum {
	KMS_NEGOTIATE_ERROR_INVALID,	/* bad input from the caller */
	KMS_NEGOTIATE_ERROR_NO_COMMON,	/* no allowed algorithm supported by all */
} KmsNegotiateError;

/* The kind of public key in a recipient's certificate. */
typedef enum {
	KMS_NEGOTIATE_KEY_RSA,
	KMS_NEGOTIATE_KEY_EC,
} KmsNegotiateKeyKind;

/* [policy] key_transport. */
typedef enum {
	KMS_KEY_TRANSPORT_RSA_PKCS1,		/* "rsa-pkcs1": never OAEP */
	KMS_KEY_TRANSPORT_RSA_OAEP_IF_ANNOUNCED,/* "rsa-oaep-if-announced" */
} KmsKeyTransportPolicy;

/* What a recipient's key is wrapped with. */
typedef enum {
	KMS_NEGOTIATE_ECDH,
	KMS_NEGOTIATE_RSA_PKCS1,
	KMS_NEGOTIATE_RSA_OAEP,
} KmsNegotiateTransport;

/* One recipient; every pointer is borrowed for the call only. */
typedef struct {
	const char *address;		/* required */
	const char *certificate;	/* SHA-256 hex of the certificate, carried
					 * through to the result; may be NULL */
	KmsNegotiateKeyKind key_kind;
	const char *const *capabilities;/* NULL-terminated names in the signer's
					 * order; NULL: never announced;
					 * {NULL}: announced nothing */
	const char *capabilities_source;/* e.g. "harvested 2026-11-20T10:00:00Z",
					 * "issued"; NULL: "none" when
					 * capabilities is NULL, else "announced" */
} KmsNegotiateRecipient;

typedef struct {
	const char *const *algorithms;	/* NULL-terminated, preference order */
	const char *const *unknown_capabilities;/* NULL-terminated; NULL: the
					 * default {"aes256-cbc"}; {NULL}: assume
					 * nothing (unknown recipients block) */
	KmsKeyTransportPolicy key_transport;
} KmsNegotiatePolicy;

/* One recipient of the result (the JSON "recipients" objects). */
typedef struct {
	char *address;
	char *certificate;		/* NULL when the input had none */
	KmsNegotiateTransport transport;
	char *key_transport;		/* "ecdh", "rsa-pkcs1" or "rsaes-oaep" */
	char *oaep_hash;		/* "sha1", "sha256" ... for rsaes-oaep, else NULL */
	char *capabilities_source;
	gboolean assumed;		/* supports unknown_capabilities (never announced) */
} KmsNegotiateChoice;

typedef struct {
	char *algorithm;		/* e.g. "aes256-cbc" */
	gboolean authenveloped;		/* AES-GCM: build AuthEnvelopedData */
	GPtrArray *recipients;		/* KmsNegotiateChoice *, in input order */
	char *reason;			/* one line */
} KmsNegotiateResult;

/* Decide for the N recipients RCPTS under POLICY (see DESCRIPTION).
 * NULL with *err on refusal or invalid input; then, when BLOCKERS is not
 * NULL and the error is NO_COMMON, *blockers gets the addresses named as
 * blocking (char *, input order; g_ptr_array_unref), else NULL. Caller
 * frees the result with kms_negotiate_result_free(). */
KmsNegotiateResult *kms_negotiate(const KmsNegotiateRecipient *rcpts, gsize n,
    const KmsNegotiatePolicy *policy, GPtrArray **blockers, GError **err);

/* Free R and everything in it; returns NULL. */
KmsNegotiateResult *kms_negotiate_result_free(KmsNegotiateResult *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KmsNegotiateResult, kms_negotiate_result_free)

/* TRUE when NAME (any case) is one of the six allowed policy algorithms. */
gboolean kms_negotiate_algorithm_known(const char *name);

/* "rsa-pkcs1" / "rsa-oaep-if-announced" (any case) to *out; FALSE on
 * anything else. */
gboolean kms_negotiate_parse_key_transport(const char *name, KmsKeyTransportPolicy *out);

#endif
