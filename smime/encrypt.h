/*
 * NAME
 *	encrypt - S/MIME enveloped-data and authEnveloped-data for a message
 * DESCRIPTION
 *	Pure OpenSSL code: no database, no milter, no policy. The caller has
 *	negotiated the algorithm and the key transport of each recipient
 *	(negotiate.h) and found each recipient's certificate; this module
 *	builds the protected MIME entity and encrypts it.
 *
 *	The inner entity (RFC 8551 3.1, 3.3) is the original message's
 *	content headers (every Content-* field, folding kept; "Content-Type:
 *	text/plain; charset=us-ascii" first when there is no Content-Type),
 *	a blank line and the body, in canonical form: every bare LF becomes
 *	CRLF. MIME-Version and the routing headers (From, To, Subject,
 *	Received ...) stay outside. A signed message (multipart/signed or
 *	application/pkcs7-mime signed-data) is wrapped whole, so its
 *	signature stays valid inside; its body is not otherwise re-encoded
 *	(CMS carries binary content, RFC 8551 3.1.2).
 *
 *	kms_smime_encrypt() encrypts the entity with OpenSSL's CMS: AES-CBC
 *	and 3DES give EnvelopedData (smime-type=enveloped-data), AES-GCM
 *	gives AuthEnvelopedData (RFC 5083/5084, smime-type=
 *	authEnveloped-data). Each RSA recipient gets KeyTransRecipientInfo
 *	with PKCS#1 v1.5 or RSAES-OAEP (RFC 3560; MGF1 with the same hash,
 *	no label); each EC recipient gets KeyAgreeRecipientInfo (RFC 5753,
 *	OpenSSL's defaults: ephemeral-static ECDH, X9.63 KDF with SHA-1, AES
 *	key wrap of the content key's size). The result is the new content
 *	headers and the base64 body (76-column lines, CRLF) that replace the
 *	message's own; the caller keeps the routing headers and must make
 *	sure the outer message says MIME-Version: 1.0.
 *
 *	kms_smime_is_encrypted() tells from a Content-Type value whether a
 *	message is already encrypted, so that it is never encrypted twice.
 * SECURITY
 *	Only public keys are used here. Messages are plaintext to the
 *	gateway anyway; error messages name certificates by subject and
 *	algorithms by name, never content. The entity size is bounded by the
 *	caller before anything is copied.
 * DIAGNOSTICS
 *	GError in KMS_ENCRYPT_ERROR, one line, naming the recipient (by
 *	number and certificate subject) that was refused.
 */
#ifndef KMS_ENCRYPT_H
#define KMS_ENCRYPT_H

#include <glib.h>
#include <openssl/x509.h>

#include "negotiate.h"

#define KMS_ENCRYPT_ERROR (kms_encrypt_error_quark())
GQuark kms_encrypt_error_quark(void);

typedef enum {
	KMS_ENCRYPT_ERROR_FAILED,	/* OpenSSL failure (reason in message) */
	KMS_ENCRYPT_ERROR_INVALID,	/* bad input from the caller */
	KMS_ENCRYPT_ERROR_TOO_LARGE,	/* entity over the caller's limit */
} KmsEncryptError;

/* One recipient; everything borrowed for the call only. */
typedef struct {
	X509 *cert;			/* RSA or EC public key */
	KmsNegotiateTransport transport;/* ECDH for EC, PKCS1/OAEP for RSA */
	const char *oaep_hash;		/* RSA_OAEP: sha1 sha224 sha256 sha384
					 * sha512 (any case); NULL: sha1 */
} KmsEncryptRecipient;

/* One header field of the result. */
typedef struct {
	char *name;			/* e.g. "Content-Type" */
	char *value;			/* unfolded, no CRLF */
} KmsEncryptHeader;

typedef struct {
	GPtrArray *headers;		/* KmsEncryptHeader *, in order:
					 * Content-Type, Content-Transfer-
					 * Encoding, Content-Disposition,
					 * [Content-Description] */
	GBytes *body;			/* base64 of the DER, lines of 76
					 * characters, each ending CRLF */
	gboolean authenveloped;		/* AuthEnvelopedData (AES-GCM) */
	gsize der_size;			/* size of the DER before base64 */
} KmsEncrypted;

/*
 * Build the inner entity from N header fields (NAMES[i]: VALUES[i], as an
 * MTA hands them to a milter: the value without the separator's leading
 * space, folding as LF or CRLF kept) and the BODY of BODY_LEN bytes. Only
 * the Content-* fields are kept, in their order. NULL with
 * KMS_ENCRYPT_ERROR_TOO_LARGE when the entity would exceed MAX bytes (0:
 * no limit), KMS_ENCRYPT_ERROR_INVALID on an empty field name or one
 * holding a colon, space or control character. Caller g_bytes_unref()s.
 */
GBytes *kms_smime_entity_from_headers(const char *const *names,
    const char *const *values, gsize n, const void *body, gsize body_len,
    gsize max, GError **err);

/*
 * The same from a whole RFC 5322 message MSG of LEN bytes (LF or CRLF
 * line ends): fields up to the first empty line, the rest is the body.
 * A message without an empty line is all header; a line that is neither
 * a field nor a continuation is taken as the start of the body, as
 * MTAs do.
 */
GBytes *kms_smime_entity_from_message(const void *msg, gsize len, gsize max,
    GError **err);

/* TRUE when a header field named NAME goes inside the entity (Content-*,
 * any case); the caller removes those from the outer message. */
gboolean kms_smime_is_content_header(const char *name);

/*
 * Encrypt ENTITY (canonical, from the functions above; at most MAX bytes,
 * 0: no limit) for the N recipients RCPTS with ALGORITHM (aes256-gcm
 * aes128-gcm aes256-cbc aes192-cbc aes128-cbc des-ede3-cbc, any case).
 * DESCRIPTION, when not NULL, becomes a Content-Description header (one
 * line of printable ASCII, at most 200 characters).
 * KMS_ENCRYPT_ERROR_INVALID: no recipient, unknown algorithm, missing
 * certificate, a key neither RSA nor EC, a transport that does not fit
 * the key (OAEP or PKCS#1 for EC, ECDH for RSA), an unknown OAEP hash, a
 * bad description; _TOO_LARGE: ENTITY over MAX; _FAILED: OpenSSL.
 * Caller frees with kms_encrypted_free().
 */
KmsEncrypted *kms_smime_encrypt(GBytes *entity,
    const KmsEncryptRecipient *rcpts, gsize n, const char *algorithm,
    const char *description, gsize max, GError **err);

/* Free E and everything in it; returns NULL. */
KmsEncrypted *kms_encrypted_free(KmsEncrypted *e);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KmsEncrypted, kms_encrypted_free)

/* The headers of E as text: "Name: value\r\n" each; g_free. */
char *kms_encrypted_headers_text(const KmsEncrypted *e);

/*
 * Is a message with this Content-Type VALUE (folding and comments
 * allowed) already encrypted? TRUE for application/pkcs7-mime or
 * application/x-pkcs7-mime with smime-type enveloped-data or
 * authEnveloped-data, or without an smime-type parameter but with a name
 * ending in .p7m (older clients, RFC 2311). FALSE for every other type
 * (multipart/signed, signed-data, certs-only, compressed-data, an
 * smime-type we do not know, no name): such messages are wrapped whole.
 * NULL is FALSE.
 */
gboolean kms_smime_is_encrypted(const char *content_type);

#endif
