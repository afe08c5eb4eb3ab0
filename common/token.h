/*
 * NAME
 *	token - one-time enrollment and recovery tokens
 * DESCRIPTION
 *	A token is 25 characters of the RFC 4648 base32 alphabet (A-Z, 2-7),
 *	125 bits from the OS CSPRNG, printed as five groups of five separated
 *	by dashes: "ABCDE-FGHIJ-KLMNO-PQRST-UVWXY". Users may type it in any
 *	case, with or without dashes and spaces; kms_token_normalize() turns
 *	what they typed into the 25 upper-case characters, and
 *	kms_token_find() picks candidates out of a reply's text. The vault
 *	keeps only kms_token_hash() of the normalised form and compares
 *	hashes with kms_token_equal() in constant time.
 * SECURITY
 *	Tokens are secrets: every token, printed or normalised, lives in a
 *	KmsSecret (wiped when freed). Never log one, nor its hash.
 *	kms_token_find() reads hostile mail: it runs in linear time, never
 *	backtracks and returns at most MAX candidates.
 * DIAGNOSTICS
 *	kms_token_new() fails (GError in KMS_SECRET_ERROR) only when the
 *	random number generator does.
 */
#ifndef KMS_TOKEN_H
#define KMS_TOKEN_H

#include <glib.h>

#include "common/secret.h"

/* Characters of a normalised token, and of a printed one (with dashes). */
#define KMS_TOKEN_CHARS 25
#define KMS_TOKEN_PRINTED_LEN 29
#define KMS_TOKEN_HASH_LEN 32

/* A fresh token as printed ("XXXXX-XXXXX-XXXXX-XXXXX-XXXXX", len 29,
 * NUL-terminated); caller frees with kms_secret_free. */
KmsSecret *kms_token_new(GError **err);

/* The LEN bytes at INPUT as a normalised token (25 upper-case base32
 * characters, NUL-terminated), or NULL when they are not one. Dashes and
 * white space are dropped, letters upper-cased, and the digits that base32
 * lacks are read as the letters they resemble: 0 as O, 1 as I, 8 as B. */
KmsSecret *kms_token_normalize(const char *input, gsize len);

/* SHA-256 of a normalised token under a domain-separation label, into OUT. */
void kms_token_hash(const KmsSecret *normalized_token, guint8 out[KMS_TOKEN_HASH_LEN]);

/* TRUE when two token hashes are equal; constant time. */
gboolean kms_token_equal(const guint8 *a, const guint8 *b);

/* Normalised candidate tokens found in the LEN bytes of decoded plain TEXT
 * (a reply body: quoted or not, any case, with or without dashes, possibly
 * wrapped after a dash), in order of appearance, without duplicates, at
 * most MAX. A GPtrArray of KmsSecret that frees them. Callers should count
 * one attempt per reply, not per candidate. */
GPtrArray *kms_token_find(const char *text, gsize len, guint max);

#endif
