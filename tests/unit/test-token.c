/*
 * Unit tests for common/token.c: the printed form of new tokens, their
 * uniqueness, normalisation of what users type, the hash, and finding
 * tokens in reply bodies (including hostile ones).
 */
#include "autoconfig.h"

#include <string.h>

#include "common/token.h"

#define B32 "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

static void
test_new_format(void)
{
	int n;

	for (n = 0; n < 200; n++) {
		g_autoptr(GError) e = NULL;
		g_autoptr(KmsSecret) t = kms_token_new(&e);
		size_t i;

		g_assert_no_error(e);
		g_assert_cmpuint(t->len, ==, KMS_TOKEN_PRINTED_LEN);
		g_assert_cmpuint(strlen((const char *)t->data), ==, KMS_TOKEN_PRINTED_LEN);
		for (i = 0; i < t->len; i++) {
			if (i % 6 == 5)
				g_assert_cmpint(t->data[i], ==, '-');
			else
				g_assert_nonnull(memchr(B32, t->data[i], 32));
		}
	}
}

static void
test_new_distinct(void)
{
	g_autoptr(GHashTable) seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	guint counts[32] = { 0 };
	int n, c;

	for (n = 0; n < 1000; n++) {
		g_autoptr(KmsSecret) t = kms_token_new(NULL);
		size_t i;

		g_assert_true(g_hash_table_add(seen, g_strdup((const char *)t->data)));
		for (i = 0; i < t->len; i++)
			if (t->data[i] != '-')
				counts[strchr(B32, t->data[i]) - B32]++;
	}
	g_assert_cmpuint(g_hash_table_size(seen), ==, 1000);
	/* 25,000 characters, ~781 each: every symbol of the alphabet is used,
	 * none wildly over- or under-represented (bounds are > 10 sigma). */
	for (c = 0; c < 32; c++) {
		g_assert_cmpuint(counts[c], >, 500);
		g_assert_cmpuint(counts[c], <, 1100);
	}
}

/* kms_token_normalize(IN) gives WANT (NULL: refused). */
static void
expect_norm(const char *in, const char *want)
{
	g_autoptr(KmsSecret) t = kms_token_normalize(in, strlen(in));

	if (want == NULL) {
		if (t != NULL)
			g_error("\"%s\" normalised to \"%s\", want refused", in, t->data);
		return;
	}
	if (t == NULL)
		g_error("\"%s\" refused, want \"%s\"", in, want);
	g_assert_cmpstr((const char *)t->data, ==, want);
	g_assert_cmpuint(t->len, ==, KMS_TOKEN_CHARS);
}

static void
test_normalize(void)
{
	const char *want = "ABCDEFGHIJKLMNOPQRSTUVWXY";

	expect_norm("ABCDE-FGHIJ-KLMNO-PQRST-UVWXY", want);
	expect_norm("abcde-fghij-klmno-pqrst-uvwxy", want);
	expect_norm("AbCdEfGhIjKlMnOpQrStUvWxY", want);
	expect_norm("ABCDE FGHIJ KLMNO PQRST UVWXY", want);
	expect_norm(" abcde - fghij\tklmno-pqrst uvwxy\r\n", want);
	expect_norm("A-B-C-D-E-F-G-H-I-J-K-L-M-N-O-P-Q-R-S-T-U-V-W-X-Y", want);
	expect_norm("22222-33333-44444-55555-67676", "2222233333444445555567676");
	/* digits base32 lacks read as the letters they resemble */
	expect_norm("ABCDE-FGH1J-KLMN0-PQRST-UVWXY", want);
	expect_norm("8BCDE-FGHIJ-KLMNO-PQRST-UVWXY", "BBCDEFGHIJKLMNOPQRSTUVWXY");
	expect_norm("ab8de-fgh1j-klmn0-pqrst-uvwxy", "ABBDEFGHIJKLMNOPQRSTUVWXY");
	/* wrong length */
	expect_norm("", NULL);
	expect_norm("-----", NULL);
	expect_norm("ABCDE-FGHIJ-KLMNO-PQRST-UVWX", NULL);
	expect_norm("ABCDE-FGHIJ-KLMNO-PQRST-UVWXYZ", NULL);
	expect_norm("ABCDE-FGHIJ-KLMNO-PQRST-UVWXY-ABCDE", NULL);
	/* characters outside the alphabet */
	expect_norm("ABCDE-FGHIJ-KLMNO-PQRST-UVWX9", NULL);
	expect_norm("ABCDE_FGHIJ_KLMNO_PQRST_UVWXY", NULL);
	expect_norm("ABCDE.FGHIJ.KLMNO.PQRST.UVWXY", NULL);
	expect_norm("ABCDE-FGHIJ-KLMNO-PQRST-UVWX\xc3\x9c", NULL);
	expect_norm("Token: ABCDE-FGHIJ-KLMNO-PQRST-UVWXY", NULL);
	{
		g_autoptr(KmsSecret) t = kms_token_normalize("ABCDE-FGHIJ\0KLMNO-PQRST-UVWXY", 29);

		g_assert_null(t);
		g_assert_null(kms_token_normalize(NULL, 0));
	}
}

/* A new token normalises to itself without the dashes. */
static void
test_new_normalizes(void)
{
	g_autoptr(KmsSecret) t = kms_token_new(NULL);
	g_autoptr(KmsSecret) n = kms_token_normalize((const char *)t->data, t->len);
	g_autofree char *lower = g_ascii_strdown((const char *)t->data, -1);
	g_autoptr(KmsSecret) l = kms_token_normalize(lower, strlen(lower));
	g_autofree char *nodash = g_strdup((const char *)t->data);
	guint8 h1[KMS_TOKEN_HASH_LEN], h2[KMS_TOKEN_HASH_LEN];
	char *p, *q;

	g_assert_nonnull(n);
	for (p = q = nodash; *p; p++)
		if (*p != '-')
			*q++ = *p;
	*q = '\0';
	g_assert_cmpstr((const char *)n->data, ==, nodash);
	kms_token_hash(n, h1);
	kms_token_hash(l, h2);
	g_assert_true(kms_token_equal(h1, h2));
}

static void
test_hash(void)
{
	g_autoptr(KmsSecret) a = kms_token_normalize("ABCDE-FGHIJ-KLMNO-PQRST-UVWXY", 29);
	g_autoptr(KmsSecret) a2 = kms_token_normalize("abcdefghijklmnopqrstuvwxy", 25);
	g_autoptr(KmsSecret) b = kms_token_normalize("ABCDE-FGHIJ-KLMNO-PQRST-UVWXZ", 29);
	guint8 ha[32], ha2[32], hb[32], again[32];
	g_autofree char *hex = NULL;
	GString *s = g_string_new(NULL);
	int i;

	kms_token_hash(a, ha);
	kms_token_hash(a, again);
	kms_token_hash(a2, ha2);
	kms_token_hash(b, hb);
	g_assert_cmpmem(ha, 32, again, 32);
	g_assert_true(kms_token_equal(ha, again));
	g_assert_true(kms_token_equal(ha, ha2));
	g_assert_false(kms_token_equal(ha, hb));
	/* stable across versions: this value is stored in vaults; it is
	 * SHA-256("kmsmilter-token-v1" NUL "ABCDEFGHIJKLMNOPQRSTUVWXY") */
	for (i = 0; i < 32; i++)
		g_string_append_printf(s, "%02x", ha[i]);
	hex = g_string_free(s, FALSE);
	{
		static const char msg[] = "kmsmilter-token-v1\0ABCDEFGHIJKLMNOPQRSTUVWXY";
		g_autofree char *want = g_compute_checksum_for_data(G_CHECKSUM_SHA256,
		    (const guchar *)msg, sizeof(msg) - 1);

		g_assert_cmpuint(sizeof(msg) - 1, ==, 19 + 25);
		g_assert_cmpstr(hex, ==, want);
	}
	/* differs from the plain SHA-256 of the token */
	{
		g_autofree char *plain = g_compute_checksum_for_string(G_CHECKSUM_SHA256,
		    "ABCDEFGHIJKLMNOPQRSTUVWXY", -1);

		g_assert_cmpstr(hex, !=, plain);
	}
}

/* kms_token_find over TEXT finds exactly the normalised tokens in WANT
 * (NULL-terminated), in order. */
static void
expect_find_len(const char *text, gsize len, guint max, const char *const *want)
{
	g_autoptr(GPtrArray) got = kms_token_find(text, len, max);
	guint i, n = g_strv_length((char **)want);

	for (i = 0; i < got->len && i < n; i++) {
		const KmsSecret *s = g_ptr_array_index(got, i);

		g_assert_cmpuint(s->len, ==, KMS_TOKEN_CHARS);
		g_assert_cmpstr((const char *)s->data, ==, want[i]);
	}
	if (got->len != n)
		g_error("found %u candidates in \"%.60s\", want %u", got->len, text, n);
}

static void
expect_find(const char *text, const char *const *want)
{
	expect_find_len(text, strlen(text), 10, want);
}

#define TOK "ABCDEFGHIJKLMNOPQRSTUVWXY"
#define TOK2 "QQQQQRRRRRSSSSS22222XXXXX"

static void
test_find_forms(void)
{
	static const char *const one[] = { TOK, NULL };
	static const char *const none[] = { NULL };

	expect_find("ABCDE-FGHIJ-KLMNO-PQRST-UVWXY", one);
	expect_find("Token: ABCDE-FGHIJ-KLMNO-PQRST-UVWXY\n", one);
	expect_find("Token: abcde-fghij-klmno-pqrst-uvwxy", one);
	expect_find("my token is abcdefghijklmnopqrstuvwxy, thanks", one);
	expect_find("code (ABCDE FGHIJ KLMNO PQRST UVWXY).", one);
	expect_find("ABCDE - FGHIJ - KLMNO - PQRST - UVWXY", one);
	expect_find("Hi,\r\n\r\nhere it is: AbCdE-fGhIj-KlMnO-pQrSt-UvWxY\r\n\r\nBob\r\n", one);
	/* confusable digits */
	expect_find("Token: ABCDE-FGH1J-KLMN0-PQRST-UVWXY", one);
	/* quoted reply, as mail clients produce them */
	expect_find("Thanks!\n\nOn Monday, KMS wrote:\n> Your enrollment token:\n"
	    "> Token: ABCDE-FGHIJ-KLMNO-PQRST-UVWXY\n> \n> Reply to this mail.\n", one);
	expect_find(">> > Token: ABCDE-FGHIJ-KLMNO-PQRST-UVWXY", one);
	/* wrapped after a dash, also inside a quote */
	expect_find("Token: ABCDE-FGHIJ-\nKLMNO-PQRST-UVWXY", one);
	expect_find("> Token: ABCDE-FGHIJ-\r\n> KLMNO-PQRST-UVWXY\r\n", one);
	expect_find("> > ABCDE-FGHIJ-KLMNO-\n> > PQRST-UVWXY", one);
	/* no candidates */
	expect_find("", none);
	expect_find("Thanks, I'd like my certificate please.", none);
	expect_find("ABCDE-FGHIJ-KLMNO-PQRST", none);
	expect_find("ABCDE-FGHIJ-KLMNO-PQRST-UVWX", none);
	expect_find("ABCDE-FGHIJ-KLMNO-PQRST-UVWX9", none);
	expect_find("ABCDE.FGHIJ.KLMNO.PQRST.UVWXY", none);
	expect_find("ABCDE-FGHIJ-KLMNO-PQRST-UVWXYZ", none);
	expect_find("ABCDEFGHIJKLMNOPQRSTUVWXYZ", none);
	expect_find("XABCDEFGHIJKLMNOPQRSTUVWXY", none);
	expect_find("abcdefghijklmnopqrstuvwx9", none);
	/* a line break joins only after a dash */
	expect_find("ABCDE FGHIJ KLMNO\nPQRST UVWXY", none);
	expect_find("ABCDE-FGHIJ-KLMNO-PQRST-UVWX\nY", none);
	/* two line breaks do not join */
	expect_find("ABCDE-FGHIJ-\n\nKLMNO-PQRST-UVWXY", none);
}

static void
test_find_several(void)
{
	static const char *const two[] = { TOK, TOK2, NULL };
	static const char *const dup[] = { TOK, NULL };
	static const char *const both[] = { "TOKENABCDEFGHIJKLMNOPQRST", TOK, NULL };

	expect_find("one: ABCDE-FGHIJ-KLMNO-PQRST-UVWXY and\n> qqqqq-rrrrr-sssss-22222-xxxxx\n", two);
	/* the same token twice, in different spellings, is one candidate */
	expect_find("ABCDE-FGHIJ-KLMNO-PQRST-UVWXY\n> abcdefghijklmnopqrstuvwxy\n"
	    "> > ABCDE FGHIJ KLMNO PQRST UVWXY", dup);
	/* a five-letter word before a space-separated token does not hide it */
	expect_find("my token ABCDE FGHIJ KLMNO PQRST UVWXY", both);
}

static void
test_find_max(void)
{
	GString *s = g_string_new(NULL);
	int i;

	for (i = 0; i < 100; i++)
		g_string_append_printf(s, "Token: AAAAA-BBBBB-CCCCC-DDDDD-%05d\n", 22222 + i);
	{
		g_autoptr(GPtrArray) all = kms_token_find(s->str, s->len, 1000);
		g_autoptr(GPtrArray) few = kms_token_find(s->str, s->len, 3);
		g_autoptr(GPtrArray) zero = kms_token_find(s->str, s->len, 0);

		/* 22222..22321: those made only of digits 2-7 are tokens */
		g_assert_cmpuint(all->len, >, 3);
		g_assert_cmpuint(few->len, ==, 3);
		g_assert_cmpuint(zero->len, ==, 0);
		g_assert_cmpstr((const char *)((KmsSecret *)few->pdata[0])->data, ==,
		    "AAAAABBBBBCCCCCDDDDD22222");
	}
	g_string_free(s, TRUE);
}

/* A megabyte of hostile input: near-miss groups, separators, quote marks
 * and NULs. The scan must finish (it is linear) and find what is there. */
static void
test_find_junk(void)
{
	gsize len = 1024 * 1024, i;
	char *junk = g_malloc(len);
	GRand *r = g_rand_new_with_seed(4711);
	static const char *const pieces[] = {
		"ABCDE-", "ABCDE ", "FGHIJ-\n> ", "-", " ", ">", "\n", "\r\n",
		"KLMNO", "ABCDEFGHIJKLMNOPQRSTUVWX", "9", "", "AAAAA-AAAAA-AAAAA-AAAAA-AAAA",
	};

	/* random bytes with NULs */
	for (i = 0; i < len; i++)
		junk[i] = (char)g_rand_int_range(r, 0, 256);
	{
		g_autoptr(GPtrArray) got = kms_token_find(junk, len, 10);

		g_assert_cmpuint(got->len, <=, 10);
	}
	/* near misses: pieces of tokens that never complete */
	for (i = 0; i < len;) {
		const char *p = pieces[g_rand_int_range(r, 0, G_N_ELEMENTS(pieces))];
		gsize n = MIN(strlen(p), len - i);

		memcpy(junk + i, p, n);
		i += n;
		if (i < len && g_rand_int_range(r, 0, 8) == 0)
			junk[i++] = '\0';
	}
	{
		g_autoptr(GPtrArray) got = kms_token_find(junk, len, 10);

		g_assert_cmpuint(got->len, <=, 10);
	}
	/* one long word, one long run of separators, a real token at the end */
	memset(junk, 'A', len / 2);
	memset(junk + len / 2, '-', len / 2);
	memcpy(junk + len - 40, " ABCDE-FGHIJ-KLMNO-PQRST-UVWXY ", 31);
	{
		static const char *const one[] = { TOK, NULL };

		expect_find_len(junk, len, 10, one);
	}
	/* all five-letter groups: every window is a candidate, bounded by max */
	for (i = 0; i + 6 <= len; i += 6)
		memcpy(junk + i, i % 12 ? "BBBBB-" : "AAAAA ", 6);
	{
		g_autoptr(GPtrArray) got = kms_token_find(junk, len, 5);

		g_assert_cmpuint(got->len, ==, 2);
	}
	g_rand_free(r);
	g_free(junk);
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/token/new/format", test_new_format);
	g_test_add_func("/token/new/distinct", test_new_distinct);
	g_test_add_func("/token/new/normalizes", test_new_normalizes);
	g_test_add_func("/token/normalize", test_normalize);
	g_test_add_func("/token/hash", test_hash);
	g_test_add_func("/token/find/forms", test_find_forms);
	g_test_add_func("/token/find/several", test_find_several);
	g_test_add_func("/token/find/max", test_find_max);
	g_test_add_func("/token/find/junk", test_find_junk);
	return g_test_run();
}
