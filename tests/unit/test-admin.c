/*
 * Unit tests for the database-free parts of keyvault/admin.c: approval
 * counts parse, refuse and print canonically; request kinds map to their
 * operation; an administrators-row MAC depends on the key, the id, the
 * name and the public key; a vote digest on the request, the decision and
 * the administrator; an Ed25519 signature verifies only for its digest,
 * its key and unaltered.
 */
#include "autoconfig.h"

#include <string.h>

#include <openssl/evp.h>

#include "keyvault/admin.h"

static void
test_policy_parse(void)
{
	KmsApprovalPolicy p;
	g_autofree char *s = NULL;
	g_autoptr(GError) e = NULL;

	kms_approval_policy_default(&p);
	s = kms_approval_policy_format(&p);
	g_assert_cmpstr(s, ==, "recover=1,export=1,import=1,admin-change=1,revoke=1,policy-change=1");
	g_clear_pointer(&s, g_free);
	g_assert_true(kms_approval_policy_parse(&p, "recover=2, export=3 admin-change=4", &e));
	g_assert_no_error(e);
	s = kms_approval_policy_format(&p);
	g_assert_cmpstr(s, ==, "recover=2,export=3,import=1,admin-change=4,revoke=1,policy-change=1");
	/* the canonical text parses back to the same counts */
	{
		KmsApprovalPolicy q;

		kms_approval_policy_default(&q);
		g_assert_true(kms_approval_policy_parse(&q, s, NULL));
		g_assert_cmpmem(&p, sizeof(p), &q, sizeof(q));
	}
	static const char *const bad[] = {
		"launch=2", "recover", "recover=", "recover=0", "recover=10", "recover=2x",
		"recover=-1", "=2", "recovery=2", "admin=2",
	};
	for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
		KmsApprovalPolicy q;
		g_autoptr(GError) be = NULL;

		kms_approval_policy_default(&q);
		g_assert_false(kms_approval_policy_parse(&q, bad[i], &be));
		g_assert_error(be, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE);
	}
}

static void
test_kinds(void)
{
	g_assert_cmpint(kms_operation_of_kind("recover-start"), ==, KMS_OP_RECOVER);
	g_assert_cmpint(kms_operation_of_kind("export"), ==, KMS_OP_EXPORT);
	g_assert_cmpint(kms_operation_of_kind("import"), ==, KMS_OP_IMPORT);
	g_assert_cmpint(kms_operation_of_kind("admin-add"), ==, KMS_OP_ADMIN_CHANGE);
	g_assert_cmpint(kms_operation_of_kind("admin-remove"), ==, KMS_OP_ADMIN_CHANGE);
	g_assert_cmpint(kms_operation_of_kind("approvals-set"), ==, KMS_OP_ADMIN_CHANGE);
	g_assert_cmpint(kms_operation_of_kind("revoke"), ==, KMS_OP_REVOKE);
	g_assert_cmpint(kms_operation_of_kind("policy-set"), ==, KMS_OP_POLICY_CHANGE);
	/* the user's own requests are never gated */
	g_assert_cmpint(kms_operation_of_kind("recover"), ==, -1);
	g_assert_cmpint(kms_operation_of_kind("enroll"), ==, -1);
	g_assert_cmpint(kms_operation_of_kind("mail"), ==, -1);
	g_assert_cmpint(kms_operation_of_kind("crl"), ==, -1);
}

static void
test_row_mac(void)
{
	g_autoptr(KmsSecret) k1 = kms_secret_new(32), k2 = kms_secret_new(32);
	guint8 pub[32] = {1, 2, 3}, pub2[32] = {1, 2, 4};
	guint8 m[32], m2[32];

	g_assert_true(kms_random(k1->data, k1->len, NULL) && kms_random(k2->data, k2->len, NULL));
	g_assert_true(kms_admin_mac(k1, 7, "carol", pub, sizeof(pub), m, NULL));
	g_assert_true(kms_admin_mac(k1, 7, "carol", pub, sizeof(pub), m2, NULL));
	g_assert_cmpmem(m, 32, m2, 32);
	g_assert_true(kms_admin_mac(k2, 7, "carol", pub, sizeof(pub), m2, NULL));
	g_assert_true(memcmp(m, m2, 32) != 0);		/* another vault key */
	g_assert_true(kms_admin_mac(k1, 8, "carol", pub, sizeof(pub), m2, NULL));
	g_assert_true(memcmp(m, m2, 32) != 0);		/* the row copied to another id */
	g_assert_true(kms_admin_mac(k1, 7, "mallory", pub, sizeof(pub), m2, NULL));
	g_assert_true(memcmp(m, m2, 32) != 0);		/* renamed */
	g_assert_true(kms_admin_mac(k1, 7, "carol", pub2, sizeof(pub2), m2, NULL));
	g_assert_true(memcmp(m, m2, 32) != 0);		/* another key */
	/* length-prefixed: moving a character between name and key changes it */
	g_assert_true(kms_admin_mac(k1, 7, "caro", (const guint8 *)"l", 1, m, NULL));
	g_assert_true(kms_admin_mac(k1, 7, "carol", (const guint8 *)"", 0, m2, NULL));
	g_assert_true(memcmp(m, m2, 32) != 0);
}

static void
test_signatures(void)
{
	KmsAdmin a = {.id = 3, .name = (char *)"bob"}, b = {.id = 4, .name = (char *)"dave"};
	guint8 rd[32], rd2[32], vd[32], vd2[32], sig[KMS_ADMIN_SIG_LEN], pub[32], pubb[32];
	size_t len = sizeof(pub);

	a.key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	b.key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	g_assert_nonnull(a.key);
	g_assert_nonnull(b.key);
	g_assert_true(EVP_PKEY_get_raw_public_key(a.key, pub, &len) == 1 && len == 32);
	g_assert_true(EVP_PKEY_get_raw_public_key(b.key, pubb, &len) == 1 && len == 32);
	memset(rd, 0x42, sizeof(rd));
	memset(rd2, 0x43, sizeof(rd2));
	kms_vote_digest(rd, "approve", a.id, vd);
	kms_vote_digest(rd, "approve", a.id, vd2);
	g_assert_cmpmem(vd, 32, vd2, 32);
	kms_vote_digest(rd, "reject", a.id, vd2);
	g_assert_true(memcmp(vd, vd2, 32) != 0);
	kms_vote_digest(rd, "approve", b.id, vd2);
	g_assert_true(memcmp(vd, vd2, 32) != 0);
	kms_vote_digest(rd2, "approve", a.id, vd2);
	g_assert_true(memcmp(vd, vd2, 32) != 0);

	g_assert_true(kms_admin_sign(&a, vd, sig, NULL));
	g_assert_true(kms_admin_verify(pub, sizeof(pub), vd, sig, sizeof(sig)));
	g_assert_false(kms_admin_verify(pub, sizeof(pub), vd2, sig, sizeof(sig)));
	g_assert_false(kms_admin_verify(pubb, sizeof(pubb), vd, sig, sizeof(sig)));
	g_assert_false(kms_admin_verify(pub, sizeof(pub), vd, sig, sizeof(sig) - 1));
	sig[10] ^= 1;
	g_assert_false(kms_admin_verify(pub, sizeof(pub), vd, sig, sizeof(sig)));
	g_assert_false(kms_admin_verify(pub, 31, vd, sig, sizeof(sig)));
	EVP_PKEY_free(a.key);
	EVP_PKEY_free(b.key);
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/admin/policy-parse", test_policy_parse);
	g_test_add_func("/admin/kinds", test_kinds);
	g_test_add_func("/admin/row-mac", test_row_mac);
	g_test_add_func("/admin/signatures", test_signatures);
	return g_test_run();
}
