/*
 * Unit tests for keyvault/shamir.c: any M of N shares recombine the
 * secret and fewer do not; shares print and parse back; check values
 * catch one changed bit and a share of another set; the KEK depends on
 * the secret and the set id.
 */
#include "autoconfig.h"

#include <string.h>

#include "keyvault/shamir.h"

static KmsSecret *
random_secret(void)
{
	KmsSecret *s = kms_secret_new(KMS_SHARE_LEN);

	g_assert_true(kms_random(s->data, s->len, NULL));
	return s;
}

/* Every 3-subset of 5 shares gives the secret back; every 2-subset not. */
static void
test_any_three_of_five(void)
{
	g_autoptr(KmsSecret) secret = random_secret();
	g_autoptr(GError) e = NULL;
	g_autoptr(GPtrArray) shares = kms_shamir_split(secret, 5, 3, &e);
	guint good = 0, bad = 0;

	g_assert_no_error(e);
	g_assert_cmpuint(shares->len, ==, 5);
	for (guint a = 0; a < 5; a++)
		for (guint b = a + 1; b < 5; b++) {
			KmsShare *two[2] = {shares->pdata[a], shares->pdata[b]};
			g_autoptr(KmsSecret) s2 = kms_shamir_combine(two, 2, NULL);

			g_assert_nonnull(s2);
			bad += memcmp(s2->data, secret->data, KMS_SHARE_LEN) != 0;
			for (guint c = b + 1; c < 5; c++) {
				/* in a shuffled order: the numbers, not positions, count */
				KmsShare *three[3] = {shares->pdata[c], shares->pdata[a], shares->pdata[b]};
				g_autoptr(KmsSecret) s3 = kms_shamir_combine(three, 3, NULL);

				g_assert_nonnull(s3);
				good += memcmp(s3->data, secret->data, KMS_SHARE_LEN) == 0;
			}
		}
	g_assert_cmpuint(good, ==, 10);
	g_assert_cmpuint(bad, ==, 10);
}

static void
test_split_limits(void)
{
	g_autoptr(KmsSecret) secret = random_secret();
	g_autoptr(GError) e = NULL;

	g_assert_null(kms_shamir_split(secret, 5, 1, &e));
	g_assert_error(e, KMS_SHAMIR_ERROR, KMS_SHAMIR_ERROR_FAILED);
	g_clear_error(&e);
	g_assert_null(kms_shamir_split(secret, 2, 3, &e));
	g_clear_error(&e);
	g_assert_null(kms_shamir_split(secret, 256, 3, &e));
	g_clear_error(&e);
	{
		g_autoptr(GPtrArray) s = kms_shamir_split(secret, 255, 255, &e);

		g_assert_no_error(e);
		g_assert_cmpuint(((KmsShare *)s->pdata[254])->index, ==, 255);
	}
}

static void
test_format_parse(void)
{
	g_autoptr(KmsSecret) secret = random_secret();
	g_autoptr(GPtrArray) shares = kms_shamir_split(secret, 12, 2, NULL);
	const KmsShare *s = shares->pdata[11];
	g_autoptr(KmsSecret) text = kms_share_format(s);
	g_autofree char *line = g_strdup_printf("Share 12/12: %s\n", (const char *)text->data);
	g_autofree char *upper = g_ascii_strup((const char *)text->data, -1);
	g_autoptr(GError) e = NULL;
	g_autoptr(KmsShare) p1 = NULL, p2 = NULL, p3 = NULL;

	g_assert_cmpuint(text->len, ==, 3 + 2 * KMS_SHARE_LEN);
	g_assert_true(g_str_has_prefix((const char *)text->data, "12-"));
	p1 = kms_share_parse((const char *)text->data, text->len, &e);
	g_assert_no_error(e);
	g_assert_cmpuint(p1->index, ==, 12);
	g_assert_cmpmem(p1->value->data, KMS_SHARE_LEN, s->value->data, KMS_SHARE_LEN);
	p2 = kms_share_parse(line, strlen(line), &e);
	g_assert_no_error(e);
	g_assert_cmpmem(p2->value->data, KMS_SHARE_LEN, s->value->data, KMS_SHARE_LEN);
	p3 = kms_share_parse(upper, strlen(upper), &e);
	g_assert_no_error(e);
	g_assert_cmpmem(p3->value->data, KMS_SHARE_LEN, s->value->data, KMS_SHARE_LEN);

	for (guint i = 0; i < 6; i++) {
		static const char *junk[] = {"", "3", "0-00", "256-00",
		    "3-0000000000000000000000000000000000000000000000000000000000000000ff",
		    "3-000000000000000000000000000000000000000000000000000000000000000g"};
		g_autoptr(KmsShare) j = kms_share_parse(junk[i], strlen(junk[i]), &e);

		g_assert_null(j);
		g_assert_error(e, KMS_SHAMIR_ERROR, KMS_SHAMIR_ERROR_FORMAT);
		g_clear_error(&e);
	}
}

/* A share set as kms_vault_shares_create stores it. */
static KmsShareSet *
make_set(GPtrArray *shares, guint threshold)
{
	KmsShareSet *set = g_new0(KmsShareSet, 1);
	guint8 *checks = g_malloc(shares->len * KMS_SHARE_CHECK_LEN);

	set->threshold = threshold;
	set->count = shares->len;
	g_assert_true(kms_random(set->set_id, sizeof(set->set_id), NULL));
	for (guint i = 0; i < shares->len; i++)
		kms_share_check_value(set->set_id, shares->pdata[i], checks + i * KMS_SHARE_CHECK_LEN);
	set->checks = g_bytes_new_take(checks, shares->len * KMS_SHARE_CHECK_LEN);
	return set;
}

static void
test_check_values(void)
{
	g_autoptr(KmsSecret) secret = random_secret();
	g_autoptr(GPtrArray) shares = kms_shamir_split(secret, 5, 3, NULL);
	g_autoptr(GPtrArray) other = kms_shamir_split(secret, 5, 3, NULL);
	g_autoptr(KmsShareSet) set = make_set(shares, 3);
	g_autoptr(GError) e = NULL;
	KmsShare *s = shares->pdata[3];

	for (guint i = 0; i < 5; i++) {
		g_assert_true(kms_share_set_check(set, shares->pdata[i], &e));
		g_assert_no_error(e);
	}
	s->value->data[7] ^= 0x10;
	g_assert_false(kms_share_set_check(set, s, &e));
	g_assert_error(e, KMS_SHAMIR_ERROR, KMS_SHAMIR_ERROR_MISMATCH);
	g_assert_cmpstr(e->message, ==, "does not match share 4 of this vault");
	g_clear_error(&e);
	s->value->data[7] ^= 0x10;
	/* the same secret split again: other shares, refused */
	g_assert_false(kms_share_set_check(set, other->pdata[1], &e));
	g_assert_cmpstr(e->message, ==, "does not match share 2 of this vault");
	g_clear_error(&e);
	/* the right value under another number */
	s->index = 2;
	g_assert_false(kms_share_set_check(set, s, &e));
	g_clear_error(&e);
	s->index = 9;
	g_assert_false(kms_share_set_check(set, s, &e));
	g_assert_cmpstr(e->message, ==, "share 9 does not belong to this vault (it has 5 shares)");
	s->index = 4;
}

static void
test_kek(void)
{
	g_autoptr(KmsSecret) a = random_secret(), b = random_secret();
	guint8 id1[KMS_SHARE_SET_ID_LEN] = {1}, id2[KMS_SHARE_SET_ID_LEN] = {2};
	g_autoptr(KmsSecret) k1 = kms_shamir_kek(a, id1, NULL), k1b = kms_shamir_kek(a, id1, NULL);
	g_autoptr(KmsSecret) k2 = kms_shamir_kek(a, id2, NULL), k3 = kms_shamir_kek(b, id1, NULL);

	g_assert_cmpmem(k1->data, k1->len, k1b->data, k1b->len);
	g_assert_cmpint(memcmp(k1->data, k2->data, 32), !=, 0);
	g_assert_cmpint(memcmp(k1->data, k3->data, 32), !=, 0);
	g_assert_cmpint(memcmp(k1->data, a->data, 32), !=, 0);
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/shamir/any-3-of-5", test_any_three_of_five);
	g_test_add_func("/shamir/split-limits", test_split_limits);
	g_test_add_func("/shamir/format-parse", test_format_parse);
	g_test_add_func("/shamir/check-values", test_check_values);
	g_test_add_func("/shamir/kek", test_kek);
	return g_test_run();
}
