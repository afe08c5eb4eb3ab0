/*
 * NAME
 *	token - one-time tokens: generation, normalisation, hashing and
 *	finding them in replies (see token.h)
 * SECURITY
 *	Token characters are only ever written into KmsSecret buffers; the
 *	random bytes they come from are wiped. The finder is a single forward
 *	scan over the bytes with bounded look-ahead: no regular expressions,
 *	no backtracking, so hostile mail costs linear time.
 */
#include "autoconfig.h"
#include "token.h"

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

/* RFC 4648 base32 alphabet, no padding. */
static const char alphabet[32] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

#define GROUPS 5
#define GROUP_LEN 5

/* Domain separation: a token hash can never equal a hash computed for any
 * other purpose; the NUL ends the label. */
static const char hash_label[] = "kmsmilter-token-v1";

/* Longest run of separators (dashes, blanks, one line break after a dash,
 * quote marks) accepted between two groups of a token. */
#define SEPARATOR_MAX 32

KmsSecret *
kms_token_new(GError **err)
{
	g_autoptr(KmsSecret) raw = kms_secret_new(KMS_TOKEN_CHARS);
	KmsSecret *t = kms_secret_new(KMS_TOKEN_PRINTED_LEN);
	size_t i, o = 0;

	if (!kms_random(raw->data, raw->len, err))
		return kms_secret_free(t);
	/* One byte per character: 256 is a multiple of 32, so the low five
	 * bits are uniform and the token carries 25 * 5 = 125 bits. */
	for (i = 0; i < KMS_TOKEN_CHARS; i++) {
		if (i > 0 && i % GROUP_LEN == 0)
			t->data[o++] = '-';
		t->data[o++] = (unsigned char)alphabet[raw->data[i] & 0x1f];
	}
	g_assert(o == KMS_TOKEN_PRINTED_LEN);
	return t;
}

/* The normalised character for C (upper case; 0, 1, 8 read as O, I, B),
 * or 0 when C cannot be part of a token. */
static unsigned char
token_char(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c;
	if (c >= 'a' && c <= 'z')
		return (unsigned char)(c - 'a' + 'A');
	if (c >= '2' && c <= '7')
		return c;
	switch (c) {
	case '0':
		return 'O';
	case '1':
		return 'I';
	case '8':
		return 'B';
	default:
		return 0;
	}
}

KmsSecret *
kms_token_normalize(const char *input, gsize len)
{
	KmsSecret *t;
	gsize i, n = 0;

	if (input == NULL)
		return NULL;
	t = kms_secret_new(KMS_TOKEN_CHARS);
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)input[i];
		unsigned char k;

		if (c == '-' || c == ' ' || c == '\t' || c == '\r' || c == '\n')
			continue;
		k = token_char(c);
		if (k == 0 || n == KMS_TOKEN_CHARS)
			return kms_secret_free(t);
		t->data[n++] = k;
	}
	if (n != KMS_TOKEN_CHARS)
		return kms_secret_free(t);
	return t;
}

/* A token has 125 bits of entropy, so guessing a token from its hash costs
 * about 2^124 hash evaluations: a fast hash is enough, and a slow password
 * hash (Argon2) would only let hostile replies burn CPU. The label keeps
 * these hashes apart from any other SHA-256 in the vault. */
void
kms_token_hash(const KmsSecret *normalized_token, guint8 out[KMS_TOKEN_HASH_LEN])
{
	EVP_MD_CTX *ctx;
	unsigned int n = 0;

	g_return_if_fail(normalized_token != NULL && normalized_token->len == KMS_TOKEN_CHARS);
	ctx = EVP_MD_CTX_new();
	if (ctx == NULL
	    || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1
	    || EVP_DigestUpdate(ctx, hash_label, sizeof(hash_label)) != 1
	    || EVP_DigestUpdate(ctx, normalized_token->data, KMS_TOKEN_CHARS) != 1
	    || EVP_DigestFinal_ex(ctx, out, &n) != 1
	    || n != KMS_TOKEN_HASH_LEN)
		g_error("SHA-256 failed while hashing a token");
	EVP_MD_CTX_free(ctx);
}

gboolean
kms_token_equal(const guint8 *a, const guint8 *b)
{
	return CRYPTO_memcmp(a, b, KMS_TOKEN_HASH_LEN) == 0;
}

/* --- finding tokens in a reply -------------------------------------------- */

/* Letters and digits make words; a group is a whole word. */
static gboolean
is_word(unsigned char c)
{
	return g_ascii_isalnum(c);
}

/* When the word at POS is exactly GROUP_LEN token characters, write them
 * (normalised) to OUT and return TRUE. Looks at most GROUP_LEN + 1 bytes. */
static gboolean
take_group(const char *t, gsize len, gsize pos, unsigned char *out)
{
	gsize i;

	if (len - pos < GROUP_LEN)
		return FALSE;
	for (i = 0; i < GROUP_LEN; i++)
		if ((out[i] = token_char((unsigned char)t[pos + i])) == 0)
			return FALSE;
	return pos + GROUP_LEN == len || !is_word((unsigned char)t[pos + GROUP_LEN]);
}

/* Skip the separator between two groups starting at POS: dashes and blanks;
 * after a dash, one line break followed by a quote prefix ("> > ") so that
 * "ABCDE-FGHIJ-\n> KLMNO-..." still joins. Returns the position of the next
 * word, or 0 when what follows is no separator. At most SEPARATOR_MAX bytes. */
static gsize
skip_separator(const char *t, gsize len, gsize pos)
{
	gsize start = pos;
	gboolean dash = FALSE, newline = FALSE;

	while (pos < len && pos - start < SEPARATOR_MAX) {
		unsigned char c = (unsigned char)t[pos];

		if (c == '-')
			dash = TRUE;
		else if (c == ' ' || c == '\t')
			;
		else if (c == '>' && newline)
			;
		else if ((c == '\n' || c == '\r') && dash && !newline) {
			newline = TRUE;
			if (c == '\r' && pos + 1 < len && t[pos + 1] == '\n')
				pos++;
		} else
			break;
		pos++;
	}
	if (pos == start || pos >= len || !is_word((unsigned char)t[pos]))
		return 0;
	return pos;
}

/* Five groups of five joined by separators, the first at POS: the
 * normalised token in OUT and TRUE. Bounded look-ahead. */
static gboolean
take_grouped(const char *t, gsize len, gsize pos, unsigned char *out)
{
	int g;

	for (g = 0; g < GROUPS; g++) {
		if (g > 0 && (pos = skip_separator(t, len, pos)) == 0)
			return FALSE;
		if (!take_group(t, len, pos, out + g * GROUP_LEN))
			return FALSE;
		pos += GROUP_LEN;
	}
	return TRUE;
}

/* Append CAND to FOUND unless it is already there; takes CAND. */
static void
add_candidate(GPtrArray *found, KmsSecret *cand)
{
	guint i;

	for (i = 0; i < found->len; i++) {
		const KmsSecret *s = g_ptr_array_index(found, i);

		if (CRYPTO_memcmp(s->data, cand->data, KMS_TOKEN_CHARS) == 0) {
			kms_secret_free(cand);
			return;
		}
	}
	g_ptr_array_add(found, cand);
}

/* GDestroyNotify for a KmsSecret in a GPtrArray. */
static void
secret_destroy(gpointer p)
{
	kms_secret_free(p);
}

GPtrArray *
kms_token_find(const char *text, gsize len, guint max)
{
	GPtrArray *found = g_ptr_array_new_with_free_func(secret_destroy);
	KmsSecret *cand = NULL;
	gsize i = 0;

	if (text == NULL)
		return found;
	/* Visit every word once; a five-letter word may start a grouped
	 * token, a 25-letter word may be a token typed without dashes. Each
	 * grouped attempt looks ahead a bounded distance, so the whole scan
	 * is linear in LEN. A successful match does not skip ahead: in
	 * "token ABCDE FGHIJ ..." the real token starts at the next word. */
	while (i < len && found->len < max) {
		gsize start, wlen;

		if (!is_word((unsigned char)text[i])) {
			i++;
			continue;
		}
		start = i;
		while (i < len && is_word((unsigned char)text[i]))
			i++;
		wlen = i - start;
		if (wlen != GROUP_LEN && wlen != KMS_TOKEN_CHARS)
			continue;
		if (cand == NULL)
			cand = kms_secret_new(KMS_TOKEN_CHARS);
		if (wlen == KMS_TOKEN_CHARS) {
			gsize k;

			for (k = 0; k < KMS_TOKEN_CHARS; k++)
				if ((cand->data[k] = token_char((unsigned char)text[start + k])) == 0)
					break;
			if (k < KMS_TOKEN_CHARS)
				continue;
		} else if (!take_grouped(text, len, start, cand->data))
			continue;
		add_candidate(found, cand);
		cand = NULL;
	}
	kms_secret_free(cand);
	return found;
}
