/*
 * Unit tests for keyvault/seal.c: AES-256-GCM sealing bound to its
 * location, and Argon2id password wrapping.
 */
#include "autoconfig.h"

#include <string.h>

#include "keyvault/seal.h"

static KmsSecret *
random_key(void)
{
	KmsSecret *k = kms_secret_new(KMS_VAULT_KEY_LEN);

	g_assert_true(kms_random(k->data, k->len, NULL));
	return k;
}

static const unsigned char secret_text[] = "-----BEGIN PRIVATE KEY----- not really";

static GBytes *
seal_at(const KmsSecret *k, const char *table, const char *column, gint64 row, int version)
{
	KmsSealContext ctx = {table, column, row, version};
	g_autoptr(GError) e = NULL;
	GBytes *b = kms_seal(k, &ctx, secret_text, sizeof(secret_text), &e);

	g_assert_no_error(e);
	return b;
}

static gboolean
opens_at(const KmsSecret *k, GBytes *blob, const char *table, const char *column,
    gint64 row, int version)
{
	KmsSealContext ctx = {table, column, row, version};
	g_autoptr(GError) e = NULL;
	g_autoptr(KmsSecret) pt = kms_unseal(k, &ctx, g_bytes_get_data(blob, NULL),
	    g_bytes_get_size(blob), &e);

	if (pt == NULL) {
		g_assert_error(e, KMS_SEAL_ERROR, KMS_SEAL_ERROR_OPEN);
		return FALSE;
	}
	g_assert_cmpmem(pt->data, pt->len, secret_text, sizeof(secret_text));
	return TRUE;
}

static void
test_round_trip(void)
{
	g_autoptr(KmsSecret) k = random_key();
	g_autoptr(GBytes) b = seal_at(k, "escrowed_keys", "sealed_key", 7, 1);

	g_assert_cmpuint(g_bytes_get_size(b), ==, sizeof(secret_text) + KMS_SEAL_OVERHEAD);
	g_assert_null(memmem(g_bytes_get_data(b, NULL), g_bytes_get_size(b), "PRIVATE", 7));
	g_assert_true(opens_at(k, b, "escrowed_keys", "sealed_key", 7, 1));
}

static void
test_fresh_nonce_each_time(void)
{
	g_autoptr(KmsSecret) k = random_key();
	g_autoptr(GBytes) a = seal_at(k, "t", "c", 1, 1);
	g_autoptr(GBytes) b = seal_at(k, "t", "c", 1, 1);

	g_assert_false(g_bytes_equal(a, b));
}

static void
test_bound_to_location(void)
{
	g_autoptr(KmsSecret) k = random_key();
	g_autoptr(GBytes) b = seal_at(k, "escrowed_keys", "sealed_key", 7, 1);

	g_assert_false(opens_at(k, b, "escrowed_keys", "sealed_key", 8, 1));
	g_assert_false(opens_at(k, b, "escrowed_keys", "sealed_private", 7, 1));
	g_assert_false(opens_at(k, b, "ca", "sealed_key", 7, 1));
	g_assert_false(opens_at(k, b, "escrowed_keys", "sealed_key", 7, 2));
	/* fields must not run together: table "ab"+column "c" != "a"+"bc" */
	{
		g_autoptr(GBytes) c = seal_at(k, "ab", "c", 1, 1);

		g_assert_false(opens_at(k, c, "a", "bc", 1, 1));
	}
}

static void
test_wrong_key_and_tamper(void)
{
	g_autoptr(KmsSecret) k = random_key();
	g_autoptr(KmsSecret) other = random_key();
	g_autoptr(GBytes) b = seal_at(k, "t", "c", 1, 1);
	gsize n = g_bytes_get_size(b);
	g_autofree guchar *raw = g_memdup2(g_bytes_get_data(b, NULL), n);

	g_assert_false(opens_at(other, b, "t", "c", 1, 1));
	for (gsize i = 1; i < n; i += 7) {
		g_autoptr(GBytes) t = NULL;

		raw[i] ^= 0x01;
		t = g_bytes_new(raw, n);
		if (opens_at(k, t, "t", "c", 1, 1))
			g_error("a blob with byte %" G_GSIZE_FORMAT " flipped still opens", i);
		raw[i] ^= 0x01;
	}
}

static void
test_not_a_blob(void)
{
	g_autoptr(KmsSecret) k = random_key();
	g_autoptr(GError) e = NULL;
	KmsSealContext ctx = {"t", "c", 1, 1};
	const unsigned char junk[] = {2, 1, 2, 3};

	g_assert_null(kms_unseal(k, &ctx, junk, sizeof(junk), &e));
	g_assert_error(e, KMS_SEAL_ERROR, KMS_SEAL_ERROR_FORMAT);
}

static void
test_kdf_password_wrap(void)
{
	g_autoptr(KmsSecret) pw = kms_secret_dup((const guchar *)"correct horse", 13);
	g_autoptr(KmsSecret) bad = kms_secret_dup((const guchar *)"correct horsE", 13);
	g_autoptr(KmsSecret) vk = random_key();
	g_autoptr(KmsSecret) kek1 = NULL, kek2 = NULL, kek3 = NULL, opened = NULL;
	g_autoptr(GBytes) w = NULL;
	g_autoptr(GError) e = NULL;
	KmsKdfParams p, p2;
	KmsSealContext ctx = {"vault_seal", "wrapped_key", 1, 1};

	/* small parameters: the test checks the construction, not the cost */
	g_assert_true(kms_kdf_params_new(&p, 1, 1024, NULL));
	kek1 = kms_kdf_derive(pw, &p, &e);
	g_assert_no_error(e);
	kek2 = kms_kdf_derive(pw, &p, &e);
	g_assert_cmpmem(kek1->data, kek1->len, kek2->data, kek2->len);
	p2 = p;
	p2.salt[0] ^= 1;
	kek3 = kms_kdf_derive(pw, &p2, &e);
	g_assert_true(memcmp(kek1->data, kek3->data, kek1->len) != 0);

	w = kms_seal(kek1, &ctx, vk->data, vk->len, &e);
	g_assert_no_error(e);
	opened = kms_unseal(kek2, &ctx, g_bytes_get_data(w, NULL), g_bytes_get_size(w), &e);
	g_assert_no_error(e);
	g_assert_cmpmem(opened->data, opened->len, vk->data, vk->len);
	{
		g_autoptr(KmsSecret) badkek = kms_kdf_derive(bad, &p, &e);
		g_autoptr(KmsSecret) none = kms_unseal(badkek, &ctx, g_bytes_get_data(w, NULL),
		    g_bytes_get_size(w), &e);

		g_assert_null(none);
		g_assert_error(e, KMS_SEAL_ERROR, KMS_SEAL_ERROR_OPEN);
	}
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	kms_secmem_init();
	g_test_add_func("/seal/round-trip", test_round_trip);
	g_test_add_func("/seal/fresh-nonce-each-seal", test_fresh_nonce_each_time);
	g_test_add_func("/seal/bound-to-table-column-row-version", test_bound_to_location);
	g_test_add_func("/seal/wrong-key-and-tampering-fail", test_wrong_key_and_tamper);
	g_test_add_func("/seal/not-a-sealed-blob", test_not_a_blob);
	g_test_add_func("/seal/argon2id-wrap-of-vault-key", test_kdf_password_wrap);
	return g_test_run();
}
