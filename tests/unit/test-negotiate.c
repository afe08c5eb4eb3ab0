/*
 * NAME
 *	test-negotiate - algorithm negotiation (smime/negotiate.h)
 * DESCRIPTION
 *	The recipient profiles are what the real peers announce in their
 *	SMIMECapabilities (measured: an OpenSSL-library signer, openssl cms
 *	-sign, NSS cmsutil, gpgsm 2.2), plus the odd cases (nothing known,
 *	an empty announcement, an EC key, mixed case and duplicates). Beside
 *	the examples, every subset of the profiles is run under
 *	several policies, in several orders, and compared with a brute-force
 *	reference written here independently of the library's bit masks.
 */
#include "autoconfig.h"

#include <string.h>

#include "smime/negotiate.h"

typedef struct {
	const char *label;
	const char *address;
	KmsNegotiateKeyKind kind;
	const char *const *caps;
} Profile;

static const char *const caps_ossl_lib[] = {"aes256-gcm", "aes192-gcm", "aes128-gcm",
    "aes256-cbc", "aes192-cbc", "aes128-cbc", "rsaes-oaep-sha256", "rsaes-oaep", NULL};
static const char *const caps_nss[] = {"aes256-cbc", "aes128-cbc", "des-ede3-cbc",
    "rc2-cbc-128", "rc2-cbc-64", "des-cbc", "rc2-cbc-40", NULL};
static const char *const caps_ossl_cli[] = {"aes256-cbc", "aes192-cbc", "aes128-cbc",
    "des-ede3-cbc", "rc2-cbc-128", "rc2-cbc-64", "des-cbc", "rc2-cbc-40", NULL};
static const char *const caps_gpgsm[] = {"aes128-cbc", "des-ede3-cbc", NULL};
static const char *const caps_ec[] = {"AES128-GCM", "aes256-cbc", "Aes256-Cbc",
    "1.2.3.4", "rsaes-oaep", NULL};
static const char *const caps_empty[] = {NULL};
static const char *const caps_legacy[] = {"des-ede3-cbc", "rc2-cbc-40", NULL};

static const Profile profiles[] = {
	{"openssl-lib", "alice@example.org", KMS_NEGOTIATE_KEY_RSA, caps_ossl_lib},
	{"nss", "bob@example.org", KMS_NEGOTIATE_KEY_RSA, caps_nss},
	{"openssl-cli", "carol@example.org", KMS_NEGOTIATE_KEY_RSA, caps_ossl_cli},
	{"gpgsm", "dave@example.org", KMS_NEGOTIATE_KEY_RSA, caps_gpgsm},
	{"unknown", "erin@example.org", KMS_NEGOTIATE_KEY_RSA, NULL},
	{"ec", "frank@example.org", KMS_NEGOTIATE_KEY_EC, caps_ec},
	{"empty", "grace@example.org", KMS_NEGOTIATE_KEY_RSA, caps_empty},
	{"legacy", "heidi@example.org", KMS_NEGOTIATE_KEY_RSA, caps_legacy},
};
#define N_PROFILES G_N_ELEMENTS(profiles)
enum { ALICE, BOB, CAROL, DAVE, ERIN, FRANK, GRACE, HEIDI };

static const char *const gcm_first[] = {"aes256-gcm", "aes128-gcm", "aes256-cbc",
    "aes128-cbc", NULL};

/* The input recipient for profile P, with a made-up digest. */
static KmsNegotiateRecipient
rcpt(int p)
{
	KmsNegotiateRecipient r = {
		.address = profiles[p].address,
		.certificate = profiles[p].label,
		.key_kind = profiles[p].kind,
		.capabilities = profiles[p].caps,
		.capabilities_source = NULL,
	};
	return r;
}

static KmsNegotiateChoice *
choice(KmsNegotiateResult *r, guint i)
{
	g_assert_cmpuint(i, <, r->recipients->len);
	return g_ptr_array_index(r->recipients, i);
}

/* --- the reference: plain string comparisons ---------------------------- */

static gboolean
in_list(const char *const *list, const char *name)
{
	for (; list != NULL && *list != NULL; list++)
		if (g_ascii_strcasecmp(*list, name) == 0)
			return TRUE;
	return FALSE;
}

static const char *const *
unknown_of(const KmsNegotiatePolicy *pol)
{
	static const char *const dflt[] = {"aes256-cbc", NULL};

	return pol->unknown_capabilities ? pol->unknown_capabilities : dflt;
}

static gboolean
ref_supports(const KmsNegotiateRecipient *r, const KmsNegotiatePolicy *pol, const char *alg)
{
	return in_list(r->capabilities ? r->capabilities : unknown_of(pol), alg);
}

static gboolean
ref_all_support(const KmsNegotiateRecipient *r, gsize n, const KmsNegotiatePolicy *pol,
    const char *alg)
{
	for (gsize i = 0; i < n; i++)
		if (!ref_supports(&r[i], pol, alg))
			return FALSE;
	return TRUE;
}

/* Index in pol->algorithms of the reference choice, -1 for none. */
static int
ref_choose(const KmsNegotiateRecipient *r, gsize n, const KmsNegotiatePolicy *pol)
{
	for (int k = 0; pol->algorithms[k] != NULL; k++)
		if (ref_all_support(r, n, pol, pol->algorithms[k]))
			return k;
	return -1;
}

static gboolean
ref_supports_none(const KmsNegotiateRecipient *r, const KmsNegotiatePolicy *pol)
{
	for (int k = 0; pol->algorithms[k] != NULL; k++)
		if (ref_supports(r, pol, pol->algorithms[k]))
			return FALSE;
	return TRUE;
}

/* Expected blockers: those supporting nothing allowed, else those lacking
 * the first choice; in input order. */
static GPtrArray *
ref_blockers(const KmsNegotiateRecipient *r, gsize n, const KmsNegotiatePolicy *pol)
{
	GPtrArray *out = g_ptr_array_new();

	for (gsize i = 0; i < n; i++)
		if (ref_supports_none(&r[i], pol))
			g_ptr_array_add(out, (gpointer) r[i].address);
	if (out->len > 0)
		return out;
	for (gsize i = 0; i < n; i++)
		if (!ref_supports(&r[i], pol, pol->algorithms[0]))
			g_ptr_array_add(out, (gpointer) r[i].address);
	return out;
}

/* Expected key transport name and OAEP hash of R. */
static const char *
ref_transport(const KmsNegotiateRecipient *r, const KmsNegotiatePolicy *pol,
    const char **hash)
{
	*hash = NULL;
	if (r->key_kind == KMS_NEGOTIATE_KEY_EC)
		return "ecdh";
	if (pol->key_transport == KMS_KEY_TRANSPORT_RSA_PKCS1)
		return "rsa-pkcs1";
	if (in_list(r->capabilities, "rsaes-oaep-sha256"))
		*hash = "sha256";
	else if (in_list(r->capabilities, "rsaes-oaep") ||
	    in_list(r->capabilities, "rsaes-oaep-sha1"))
		*hash = "sha1";
	else if (in_list(r->capabilities, "rsaes-oaep-sha384"))
		*hash = "sha384";
	else if (in_list(r->capabilities, "rsaes-oaep-sha512"))
		*hash = "sha512";
	else if (in_list(r->capabilities, "rsaes-oaep-sha224"))
		*hash = "sha224";
	return *hash ? "rsaes-oaep" : "rsa-pkcs1";
}

/* Run R under POL and check every invariant against the reference.
 * Returns the result (or NULL on refusal) and *blockers. */
static KmsNegotiateResult *
check_one(const KmsNegotiateRecipient *r, gsize n, const KmsNegotiatePolicy *pol,
    GPtrArray **blockers_out)
{
	g_autoptr(GError) e = NULL;
	GPtrArray *blockers = NULL;
	KmsNegotiateResult *res = kms_negotiate(r, n, pol, &blockers, &e);
	int want = ref_choose(r, n, pol);

	if (want < 0) {
		g_autoptr(GPtrArray) exp = ref_blockers(r, n, pol);

		if (res != NULL)
			g_error("got %s (%s), want a refusal", res->algorithm, res->reason);
		g_assert_error(e, KMS_NEGOTIATE_ERROR, KMS_NEGOTIATE_ERROR_NO_COMMON);
		g_assert_nonnull(blockers);
		g_assert_cmpuint(blockers->len, ==, exp->len);
		g_assert_cmpuint(exp->len, >, 0);
		for (guint i = 0; i < exp->len; i++) {
			g_assert_cmpstr(g_ptr_array_index(blockers, i), ==,
			    g_ptr_array_index(exp, i));
			/* the first five are named in the message */
			if (i < 5)
				g_assert_nonnull(strstr(e->message, g_ptr_array_index(exp, i)));
		}
		if (exp->len > 5) {
			g_autofree char *more = g_strdup_printf(" and %u more", exp->len - 5);

			g_assert_nonnull(strstr(e->message, more));
		}
		g_assert_null(strchr(e->message, '\n'));
		*blockers_out = blockers;
		return NULL;
	}
	g_assert_no_error(e);
	g_assert_null(blockers);
	g_assert_nonnull(res);
	/* allowed, supported by all, no earlier preference supported by all */
	g_assert_true(in_list(pol->algorithms, res->algorithm));
	g_assert_cmpstr(res->algorithm, ==, pol->algorithms[want]);
	g_assert_true(ref_all_support(r, n, pol, res->algorithm));
	for (int k = 0; k < want; k++)
		g_assert_false(ref_all_support(r, n, pol, pol->algorithms[k]));
	g_assert_cmpint(res->authenveloped, ==, strstr(res->algorithm, "-gcm") != NULL);
	g_assert_true(g_str_has_prefix(res->reason, res->algorithm));
	g_assert_null(strchr(res->reason, '\n'));
	if (want == 0)
		g_assert_nonnull(strstr(res->reason, "first allowed algorithm"));
	else {
		/* the reason names who lacks the first choice */
		g_assert_nonnull(strstr(res->reason, pol->algorithms[0]));
		for (gsize i = 0; i < n; i++)
			if (!ref_supports(&r[i], pol, pol->algorithms[0]))
				g_assert_nonnull(strstr(res->reason, r[i].address));
	}
	g_assert_cmpuint(res->recipients->len, ==, n);
	for (gsize i = 0; i < n; i++) {
		KmsNegotiateChoice *c = choice(res, (guint) i);
		const char *hash, *kt = ref_transport(&r[i], pol, &hash);

		g_assert_cmpstr(c->address, ==, r[i].address);
		g_assert_cmpstr(c->certificate, ==, r[i].certificate);
		g_assert_cmpstr(c->key_transport, ==, kt);
		g_assert_cmpstr(c->oaep_hash, ==, hash);
		g_assert_cmpint(c->transport, ==, strcmp(kt, "ecdh") == 0 ?
		    KMS_NEGOTIATE_ECDH : strcmp(kt, "rsa-pkcs1") == 0 ?
		    KMS_NEGOTIATE_RSA_PKCS1 : KMS_NEGOTIATE_RSA_OAEP);
		g_assert_cmpint(c->assumed, ==, r[i].capabilities == NULL);
		g_assert_cmpstr(c->capabilities_source, ==,
		    r[i].capabilities ? "announced" : "none");
	}
	*blockers_out = NULL;
	return res;
}

/* --- the examples ------------------------------------------------ */

static const KmsNegotiatePolicy gcm_policy = {
	.algorithms = gcm_first,
	.key_transport = KMS_KEY_TRANSPORT_RSA_OAEP_IF_ANNOUNCED,
};

static void
test_gcm_openssl_alone(void)
{
	KmsNegotiateRecipient r[] = {rcpt(ALICE)};
	g_autoptr(GError) e = NULL;
	g_autoptr(KmsNegotiateResult) res = kms_negotiate(r, 1, &gcm_policy, NULL, &e);

	g_assert_no_error(e);
	g_assert_cmpstr(res->algorithm, ==, "aes256-gcm");
	g_assert_true(res->authenveloped);
	g_assert_cmpstr(choice(res, 0)->key_transport, ==, "rsaes-oaep");
	g_assert_cmpint(choice(res, 0)->transport, ==, KMS_NEGOTIATE_RSA_OAEP);
	g_assert_cmpstr(choice(res, 0)->oaep_hash, ==, "sha256");
	g_assert_cmpstr(res->reason, ==,
	    "aes256-gcm: first allowed algorithm announced by alice@example.org");
}

static void
test_gcm_openssl_plus_nss(void)
{
	KmsNegotiateRecipient r[] = {rcpt(ALICE), rcpt(BOB)};
	g_autoptr(GError) e = NULL;
	g_autoptr(KmsNegotiateResult) res = NULL;

	r[1].capabilities_source = "harvested 2026-11-20T10:00:00Z";
	res = kms_negotiate(r, 2, &gcm_policy, NULL, &e);
	g_assert_no_error(e);
	g_assert_cmpstr(res->algorithm, ==, "aes256-cbc");
	g_assert_false(res->authenveloped);
	g_assert_cmpstr(choice(res, 0)->key_transport, ==, "rsaes-oaep");
	g_assert_cmpstr(choice(res, 1)->key_transport, ==, "rsa-pkcs1");
	g_assert_null(choice(res, 1)->oaep_hash);
	g_assert_cmpstr(choice(res, 1)->capabilities_source, ==,
	    "harvested 2026-11-20T10:00:00Z");
	g_assert_cmpstr(choice(res, 1)->certificate, ==, "nss");
	g_assert_cmpstr(res->reason, ==,
	    "aes256-cbc: aes256-gcm, aes128-gcm are not supported by bob@example.org");
}

static void
test_openssl_cli_and_gpgsm(void)
{
	KmsNegotiateRecipient r[] = {rcpt(ALICE), rcpt(BOB), rcpt(CAROL), rcpt(DAVE)};
	g_autoptr(GError) e = NULL;
	g_autoptr(KmsNegotiateResult) res = kms_negotiate(r, 3, &gcm_policy, NULL, &e);

	/* without gpgsm: aes256-cbc; with it: aes128-cbc */
	g_assert_no_error(e);
	g_assert_cmpstr(res->algorithm, ==, "aes256-cbc");
	g_assert_cmpstr(choice(res, 2)->key_transport, ==, "rsa-pkcs1");
	res = kms_negotiate_result_free(res);
	res = kms_negotiate(r, 4, &gcm_policy, NULL, &e);
	g_assert_no_error(e);
	g_assert_cmpstr(res->algorithm, ==, "aes128-cbc");
	g_assert_cmpstr(res->reason, ==, "aes128-cbc: aes256-gcm, aes128-gcm are not "
	    "supported by bob@example.org, carol@example.org, dave@example.org; "
	    "aes256-cbc is not supported by dave@example.org");
}

static void
test_gpgsm_refused(void)
{
	static const char *const no128[] = {"aes256-gcm", "aes256-cbc", NULL};
	KmsNegotiatePolicy pol = {.algorithms = no128,
	    .key_transport = KMS_KEY_TRANSPORT_RSA_OAEP_IF_ANNOUNCED};
	KmsNegotiateRecipient r[] = {rcpt(ALICE), rcpt(DAVE), rcpt(BOB)};
	g_autoptr(GError) e = NULL;
	g_autoptr(GPtrArray) blockers = NULL;
	KmsNegotiateResult *res = kms_negotiate(r, 3, &pol, &blockers, &e);

	g_assert_null(res);
	g_assert_error(e, KMS_NEGOTIATE_ERROR, KMS_NEGOTIATE_ERROR_NO_COMMON);
	g_assert_cmpstr(e->message, ==, "no allowed algorithm (aes256-gcm, aes256-cbc) "
	    "is supported by dave@example.org (announced aes128-cbc/des-ede3-cbc)");
	g_assert_cmpuint(blockers->len, ==, 1);
	g_assert_cmpstr(g_ptr_array_index(blockers, 0), ==, "dave@example.org");
}

static void
test_unknown_assumed(void)
{
	KmsNegotiateRecipient r[] = {rcpt(ALICE), rcpt(ERIN)};
	g_autoptr(GError) e = NULL;
	g_autoptr(KmsNegotiateResult) res = kms_negotiate(r, 2, &gcm_policy, NULL, &e);

	g_assert_no_error(e);
	g_assert_cmpstr(res->algorithm, ==, "aes256-cbc");
	g_assert_true(choice(res, 1)->assumed);
	g_assert_false(choice(res, 0)->assumed);
	g_assert_cmpstr(choice(res, 1)->capabilities_source, ==, "none");
	g_assert_cmpstr(choice(res, 1)->key_transport, ==, "rsa-pkcs1");
	g_assert_cmpstr(res->reason, ==, "aes256-cbc: aes256-gcm, aes128-gcm are not "
	    "supported by erin@example.org; capabilities unknown for erin@example.org, "
	    "assumed aes256-cbc");
}

static void
test_unknown_first_choice(void)
{
	static const char *const cbc[] = {"aes256-cbc", "aes128-cbc", NULL};
	KmsNegotiatePolicy pol = {.algorithms = cbc};
	KmsNegotiateRecipient r[] = {rcpt(ERIN), rcpt(CAROL)};
	g_autoptr(GError) e = NULL;
	g_autoptr(KmsNegotiateResult) res = kms_negotiate(r, 2, &pol, NULL, &e);

	g_assert_no_error(e);
	g_assert_cmpstr(res->reason, ==, "aes256-cbc: first allowed algorithm supported "
	    "by all 2 recipients; capabilities unknown for erin@example.org, assumed "
	    "aes256-cbc");
}

static void
test_ec_gets_ecdh(void)
{
	KmsNegotiateRecipient r[] = {rcpt(FRANK)};
	g_autoptr(GError) e = NULL;
	g_autoptr(KmsNegotiateResult) res = kms_negotiate(r, 1, &gcm_policy, NULL, &e);

	/* it announced rsaes-oaep too: irrelevant for an EC key */
	g_assert_no_error(e);
	g_assert_cmpstr(res->algorithm, ==, "aes128-gcm");
	g_assert_cmpstr(choice(res, 0)->key_transport, ==, "ecdh");
	g_assert_cmpint(choice(res, 0)->transport, ==, KMS_NEGOTIATE_ECDH);
	g_assert_null(choice(res, 0)->oaep_hash);
}

static void
test_pkcs1_policy_never_oaep(void)
{
	KmsNegotiatePolicy pol = {.algorithms = gcm_first,
	    .key_transport = KMS_KEY_TRANSPORT_RSA_PKCS1};
	KmsNegotiateRecipient r[] = {rcpt(ALICE), rcpt(FRANK)};
	g_autoptr(GError) e = NULL;
	g_autoptr(KmsNegotiateResult) res = kms_negotiate(r, 2, &pol, NULL, &e);

	g_assert_no_error(e);
	g_assert_cmpstr(res->algorithm, ==, "aes128-gcm");
	g_assert_cmpstr(choice(res, 0)->key_transport, ==, "rsa-pkcs1");
	g_assert_null(choice(res, 0)->oaep_hash);
	g_assert_cmpstr(choice(res, 1)->key_transport, ==, "ecdh");
}

/* --- details -------------------------------------------------------------- */

static void
test_oaep_variants(void)
{
	static const struct {
		const char *caps[4];
		const char *kt, *hash;
	} cases[] = {
		{{"aes256-cbc", "rsaes-oaep", NULL}, "rsaes-oaep", "sha1"},
		{{"aes256-cbc", "RSAES-OAEP-SHA256", NULL}, "rsaes-oaep", "sha256"},
		{{"rsaes-oaep", "aes256-cbc", "rsaes-oaep-sha256"}, "rsaes-oaep", "sha256"},
		{{"aes256-cbc", "rsaes-oaep-sha512", NULL}, "rsaes-oaep", "sha512"},
		{{"aes256-cbc", "rsaes-oaep-sha512", "rsaes-oaep-sha384"}, "rsaes-oaep", "sha384"},
		{{"aes256-cbc", "rsaes-oaep-invalid", NULL}, "rsa-pkcs1", NULL},
		{{"aes256-cbc", "rsa-encryption", NULL}, "rsa-pkcs1", NULL},
		{{"aes256-cbc", "rsaes-oaepx", NULL}, "rsa-pkcs1", NULL},
	};

	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		KmsNegotiateRecipient r = {.address = "x@example.org",
		    .capabilities = cases[i].caps};
		g_autoptr(GError) e = NULL;
		g_autoptr(KmsNegotiateResult) res = kms_negotiate(&r, 1, &gcm_policy, NULL, &e);

		g_assert_no_error(e);
		g_assert_cmpstr(choice(res, 0)->key_transport, ==, cases[i].kt);
		g_assert_cmpstr(choice(res, 0)->oaep_hash, ==, cases[i].hash);
	}
}

static void
test_case_and_duplicates(void)
{
	static const char *const pol_algs[] = {"AES256-GCM", "aes128-CBC", "aes256-gcm", NULL};
	static const char *const caps[] = {"Aes128-Cbc", "AES128-CBC", "aes128-cbc",
	    "x", "", "aes256-gcmx", NULL};
	KmsNegotiatePolicy pol = {.algorithms = pol_algs};
	KmsNegotiateRecipient r = {.address = "x@example.org", .capabilities = caps};
	g_autoptr(GError) e = NULL;
	g_autoptr(KmsNegotiateResult) res = kms_negotiate(&r, 1, &pol, NULL, &e);

	g_assert_no_error(e);
	g_assert_cmpstr(res->algorithm, ==, "aes128-cbc");	/* canonical case */
	/* the duplicate aes256-gcm in the policy is reported once */
	g_assert_cmpstr(res->reason, ==,
	    "aes128-cbc: aes256-gcm is not supported by x@example.org");
}

static void
test_recipient_order_ignored(void)
{
	/* the recipient prefers aes128-cbc; the administrator's order wins */
	static const char *const caps[] = {"aes128-cbc", "aes256-cbc", NULL};
	static const char *const pol_algs[] = {"aes256-cbc", "aes128-cbc", NULL};
	KmsNegotiatePolicy pol = {.algorithms = pol_algs};
	KmsNegotiateRecipient r = {.address = "x@example.org", .capabilities = caps};
	g_autoptr(GError) e = NULL;
	g_autoptr(KmsNegotiateResult) res = kms_negotiate(&r, 1, &pol, NULL, &e);

	g_assert_no_error(e);
	g_assert_cmpstr(res->algorithm, ==, "aes256-cbc");
}

static void
test_empty_announcement_blocks(void)
{
	KmsNegotiateRecipient r[] = {rcpt(ALICE), rcpt(GRACE), rcpt(ERIN)};
	g_autoptr(GError) e = NULL;
	g_autoptr(GPtrArray) blockers = NULL;

	g_assert_null(kms_negotiate(r, 3, &gcm_policy, &blockers, &e));
	g_assert_error(e, KMS_NEGOTIATE_ERROR, KMS_NEGOTIATE_ERROR_NO_COMMON);
	g_assert_cmpstr(e->message, ==, "no allowed algorithm (aes256-gcm, aes128-gcm, "
	    "aes256-cbc, aes128-cbc) is supported by grace@example.org (announced an "
	    "empty list)");
	g_assert_cmpuint(blockers->len, ==, 1);
}

static void
test_no_common_names_first_choice(void)
{
	/* gcm-only and cbc-only recipients: each supports something */
	static const char *const gcm_only[] = {"aes256-gcm", NULL};
	static const char *const cbc_only[] = {"aes256-cbc", NULL};
	static const char *const pol_algs[] = {"aes256-gcm", "aes256-cbc", NULL};
	KmsNegotiatePolicy pol = {.algorithms = pol_algs};
	KmsNegotiateRecipient r[] = {
		{.address = "g@example.org", .capabilities = gcm_only},
		{.address = "c1@example.org", .capabilities = cbc_only},
		{.address = "c2@example.org", .capabilities = cbc_only},
	};
	g_autoptr(GError) e = NULL;
	g_autoptr(GPtrArray) blockers = NULL;

	g_assert_null(kms_negotiate(r, 3, &pol, &blockers, &e));
	g_assert_error(e, KMS_NEGOTIATE_ERROR, KMS_NEGOTIATE_ERROR_NO_COMMON);
	g_assert_cmpstr(e->message, ==, "no allowed algorithm is supported by all 3 "
	    "recipients: aes256-gcm is not supported by c1@example.org, c2@example.org; "
	    "aes256-cbc is not supported by g@example.org");
	g_assert_cmpuint(blockers->len, ==, 2);
	g_assert_cmpstr(g_ptr_array_index(blockers, 0), ==, "c1@example.org");
	g_assert_cmpstr(g_ptr_array_index(blockers, 1), ==, "c2@example.org");
}

static void
test_3des_only_when_listed(void)
{
	static const char *const with3des[] = {"aes256-cbc", "des-ede3-cbc", NULL};
	static const char *const only3des[] = {"des-ede3-cbc", NULL};
	static const char *const assume3des[] = {"des-ede3-cbc", NULL};
	KmsNegotiateRecipient legacy[] = {rcpt(HEIDI)}, unknown[] = {rcpt(ERIN)};
	KmsNegotiatePolicy pol = {.algorithms = gcm_first};
	g_autoptr(GError) e = NULL;
	g_autoptr(GPtrArray) blockers = NULL;
	g_autoptr(KmsNegotiateResult) res = NULL;

	/* not listed: refused, though the recipient announced it */
	g_assert_null(kms_negotiate(legacy, 1, &pol, &blockers, &e));
	g_assert_error(e, KMS_NEGOTIATE_ERROR, KMS_NEGOTIATE_ERROR_NO_COMMON);
	g_clear_error(&e);
	g_clear_pointer(&blockers, g_ptr_array_unref);
	pol.algorithms = with3des;
	res = kms_negotiate(legacy, 1, &pol, NULL, &e);
	g_assert_no_error(e);
	g_assert_cmpstr(res->algorithm, ==, "des-ede3-cbc");
	res = kms_negotiate_result_free(res);
	/* listed but never assumed for an unknown recipient ... */
	pol.algorithms = only3des;
	g_assert_null(kms_negotiate(unknown, 1, &pol, &blockers, &e));
	g_assert_error(e, KMS_NEGOTIATE_ERROR, KMS_NEGOTIATE_ERROR_NO_COMMON);
	g_assert_nonnull(strstr(e->message, "erin@example.org (capabilities unknown, "
	    "assumed aes256-cbc)"));
	g_clear_error(&e);
	/* ... unless unknown_capabilities says so */
	pol.unknown_capabilities = assume3des;
	res = kms_negotiate(unknown, 1, &pol, NULL, &e);
	g_assert_no_error(e);
	g_assert_cmpstr(res->algorithm, ==, "des-ede3-cbc");
}

static void
test_assume_nothing(void)
{
	static const char *const nothing[] = {NULL};
	KmsNegotiatePolicy pol = {.algorithms = gcm_first, .unknown_capabilities = nothing};
	KmsNegotiateRecipient r[] = {rcpt(ERIN)};
	g_autoptr(GError) e = NULL;
	g_autoptr(GPtrArray) blockers = NULL;

	g_assert_null(kms_negotiate(r, 1, &pol, &blockers, &e));
	g_assert_error(e, KMS_NEGOTIATE_ERROR, KMS_NEGOTIATE_ERROR_NO_COMMON);
	g_assert_nonnull(strstr(e->message, "(capabilities unknown, none assumed)"));
}

static void
test_many_recipients(void)
{
	KmsNegotiateRecipient r[100];
	g_autofree char *addrs = g_malloc(100 * 32);
	g_autoptr(GError) e = NULL;
	g_autoptr(GPtrArray) blockers = NULL;
	g_autoptr(KmsNegotiateResult) res = NULL;

	for (int i = 0; i < 100; i++) {
		g_snprintf(addrs + i * 32, 32, "user%d@example.org", i);
		r[i] = rcpt(i % 2 ? BOB : ALICE);
		r[i].address = addrs + i * 32;
	}
	res = kms_negotiate(r, 100, &gcm_policy, NULL, &e);
	g_assert_no_error(e);
	g_assert_cmpstr(res->algorithm, ==, "aes256-cbc");
	g_assert_cmpstr(res->reason, ==, "aes256-cbc: aes256-gcm, aes128-gcm are not "
	    "supported by user1@example.org, user3@example.org, user5@example.org, "
	    "user7@example.org, user9@example.org and 45 more");
	for (int i = 0; i < 100; i++)
		r[i] = rcpt(GRACE), r[i].address = addrs + i * 32;
	g_assert_null(kms_negotiate(r, 100, &gcm_policy, &blockers, &e));
	g_assert_error(e, KMS_NEGOTIATE_ERROR, KMS_NEGOTIATE_ERROR_NO_COMMON);
	g_assert_true(g_str_has_suffix(e->message, " and 95 more"));
	g_assert_cmpuint(blockers->len, ==, 100);	/* all of them, not 5 */
}

static void
test_invalid_input(void)
{
	static const char *const empty[] = {NULL};
	static const char *const bad[] = {"aes256-cbc", "rc2-cbc-40", NULL};
	static const char *const gcm192[] = {"aes192-gcm", NULL};
	KmsNegotiateRecipient r[] = {rcpt(ALICE), rcpt(BOB)};
	KmsNegotiatePolicy pol = {.algorithms = gcm_first};
	GPtrArray *blockers = (GPtrArray *) 1;
	GError *e = NULL;

#define REFUSED(R, N, P, WHAT) do { \
	g_assert_null(kms_negotiate((R), (N), (P), &blockers, &e)); \
	g_assert_error(e, KMS_NEGOTIATE_ERROR, KMS_NEGOTIATE_ERROR_INVALID); \
	if (strstr(e->message, (WHAT)) == NULL) \
		g_error("got \"%s\", want \"%s\"", e->message, (WHAT)); \
	g_assert_null(blockers); \
	g_clear_error(&e); \
} while (0)

	REFUSED(r, 0, &pol, "no recipients");
	REFUSED(NULL, 2, &pol, "no recipients");
	REFUSED(r, 2, NULL, "allows no encryption algorithm");
	pol.algorithms = NULL;
	REFUSED(r, 2, &pol, "allows no encryption algorithm");
	pol.algorithms = empty;
	REFUSED(r, 2, &pol, "allows no encryption algorithm");
	pol.algorithms = bad;
	REFUSED(r, 2, &pol, "unknown algorithm \"rc2-cbc-40\"");
	pol.algorithms = gcm192;	/* not among the six a policy may list */
	REFUSED(r, 2, &pol, "unknown algorithm \"aes192-gcm\"");
	pol.algorithms = gcm_first;
	pol.unknown_capabilities = bad;
	REFUSED(r, 2, &pol, "unknown_capabilities: unknown algorithm \"rc2-cbc-40\"");
	pol.unknown_capabilities = NULL;
	pol.key_transport = 7;
	REFUSED(r, 2, &pol, "invalid key transport");
	pol.key_transport = KMS_KEY_TRANSPORT_RSA_PKCS1;
	r[1].address = NULL;
	REFUSED(r, 2, &pol, "recipient 2 has no address");
	r[1].address = "";
	REFUSED(r, 2, &pol, "recipient 2 has no address");
	r[1].address = "bob@example.org";
	r[1].key_kind = 9;
	REFUSED(r, 2, &pol, "bob@example.org: invalid key kind");
#undef REFUSED
}

static void
test_helpers(void)
{
	KmsKeyTransportPolicy kt = 99;

	g_assert_true(kms_negotiate_algorithm_known("AES256-GCM"));
	g_assert_true(kms_negotiate_algorithm_known("des-ede3-cbc"));
	g_assert_false(kms_negotiate_algorithm_known("aes192-gcm"));
	g_assert_false(kms_negotiate_algorithm_known("des-cbc"));
	g_assert_false(kms_negotiate_algorithm_known(NULL));
	g_assert_true(kms_negotiate_parse_key_transport("rsa-pkcs1", &kt));
	g_assert_cmpint(kt, ==, KMS_KEY_TRANSPORT_RSA_PKCS1);
	g_assert_true(kms_negotiate_parse_key_transport("RSA-OAEP-IF-ANNOUNCED", &kt));
	g_assert_cmpint(kt, ==, KMS_KEY_TRANSPORT_RSA_OAEP_IF_ANNOUNCED);
	g_assert_false(kms_negotiate_parse_key_transport("rsa-oaep", &kt));
	g_assert_false(kms_negotiate_parse_key_transport(NULL, &kt));
	g_assert_null(kms_negotiate_result_free(NULL));
}

/* --- exhaustive ------------------------------------------------------------ */

static const char *const pol_default[] = {"aes256-cbc", "aes128-cbc", "aes256-gcm",
    "aes128-gcm", NULL};
static const char *const pol_3des[] = {"aes256-gcm", "aes256-cbc", "des-ede3-cbc", NULL};
static const char *const pol_gcm256[] = {"aes256-gcm", NULL};
static const char *const pol_reversed[] = {"des-ede3-cbc", "aes128-cbc", "aes192-cbc",
    "aes256-cbc", "aes128-gcm", "aes256-gcm", NULL};
static const char *const pol_192[] = {"aes192-cbc", "aes128-cbc", "aes192-cbc", NULL};
static const char *const unk_128_3des[] = {"aes128-cbc", "des-ede3-cbc", NULL};
static const char *const unk_none[] = {NULL};
static const char *const unk_gcm[] = {"AES256-GCM", "aes128-gcm", NULL};

static const KmsNegotiatePolicy policies[] = {
	{gcm_first, NULL, KMS_KEY_TRANSPORT_RSA_OAEP_IF_ANNOUNCED},
	{pol_default, NULL, KMS_KEY_TRANSPORT_RSA_PKCS1},
	{pol_3des, unk_128_3des, KMS_KEY_TRANSPORT_RSA_OAEP_IF_ANNOUNCED},
	{pol_gcm256, unk_none, KMS_KEY_TRANSPORT_RSA_OAEP_IF_ANNOUNCED},
	{pol_reversed, unk_gcm, KMS_KEY_TRANSPORT_RSA_OAEP_IF_ANNOUNCED},
	{pol_192, NULL, KMS_KEY_TRANSPORT_RSA_PKCS1},
};

/* Compare two outcomes of the same recipients in different orders. */
static void
same_outcome(KmsNegotiateResult *a, GPtrArray *ba, KmsNegotiateResult *b, GPtrArray *bb)
{
	g_assert_cmpint(a == NULL, ==, b == NULL);
	if (a == NULL) {
		g_assert_cmpuint(ba->len, ==, bb->len);
		for (guint i = 0; i < ba->len; i++)
			g_assert_true(g_ptr_array_find_with_equal_func(bb,
			    g_ptr_array_index(ba, i), g_str_equal, NULL));
		return;
	}
	g_assert_cmpstr(a->algorithm, ==, b->algorithm);
	for (guint i = 0; i < a->recipients->len; i++) {
		KmsNegotiateChoice *ca = choice(a, i), *cb = NULL;

		for (guint j = 0; j < b->recipients->len; j++)
			if (strcmp(choice(b, j)->address, ca->address) == 0)
				cb = choice(b, j);
		g_assert_nonnull(cb);
		g_assert_cmpstr(ca->key_transport, ==, cb->key_transport);
		g_assert_cmpstr(ca->oaep_hash, ==, cb->oaep_hash);
	}
}

static void
test_exhaustive(void)
{
	guint runs = 0, refusals = 0, chosen[8] = {0};

	for (gsize p = 0; p < G_N_ELEMENTS(policies); p++)
		for (guint set = 1; set < (1u << N_PROFILES); set++) {
			KmsNegotiateRecipient fwd[N_PROFILES], rev[N_PROFILES], rot[N_PROFILES];
			gsize n = 0;
			KmsNegotiateResult *a, *b, *c;
			GPtrArray *ba, *bb, *bc;

			for (gsize i = 0; i < N_PROFILES; i++)
				if (set & (1u << i))
					fwd[n++] = rcpt((int) i);
			for (gsize i = 0; i < n; i++) {
				rev[i] = fwd[n - 1 - i];
				rot[i] = fwd[(i + 1) % n];
			}
			a = check_one(fwd, n, &policies[p], &ba);
			b = check_one(rev, n, &policies[p], &bb);
			c = check_one(rot, n, &policies[p], &bc);
			same_outcome(a, ba, b, bb);
			same_outcome(a, ba, c, bc);
			if (a == NULL)
				refusals++;
			else
				for (int k = 0; policies[p].algorithms[k] != NULL; k++)
					if (strcmp(policies[p].algorithms[k], a->algorithm) == 0) {
						chosen[k]++;
						break;
					}
			runs += 3;
			kms_negotiate_result_free(a);
			kms_negotiate_result_free(b);
			kms_negotiate_result_free(c);
			if (ba != NULL)
				g_ptr_array_unref(ba);
			if (bb != NULL)
				g_ptr_array_unref(bb);
			if (bc != NULL)
				g_ptr_array_unref(bc);
		}
	/* the sweep exercised both outcomes and more than the first choice */
	g_assert_cmpuint(runs, ==, 3 * G_N_ELEMENTS(policies) * ((1u << N_PROFILES) - 1));
	g_assert_cmpuint(refusals, >, 0);
	g_assert_cmpuint(chosen[0], >, 0);
	g_assert_cmpuint(chosen[1], >, 0);
	g_assert_cmpuint(chosen[2], >, 0);
	g_test_message("%u negotiations, %u refusals", runs, refusals);
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/negotiate/issue/gcm-policy-openssl-recipient-alone-aes256-gcm-oaep",
	    test_gcm_openssl_alone);
	g_test_add_func("/negotiate/issue/plus-nss-recipient-aes256-cbc-nss-pkcs1",
	    test_gcm_openssl_plus_nss);
	g_test_add_func("/negotiate/issue/openssl-cli-then-gpgsm-aes128-cbc",
	    test_openssl_cli_and_gpgsm);
	g_test_add_func("/negotiate/issue/policy-without-aes128-refuses-naming-gpgsm",
	    test_gpgsm_refused);
	g_test_add_func("/negotiate/issue/unknown-recipient-assumed-aes256-cbc",
	    test_unknown_assumed);
	g_test_add_func("/negotiate/issue/unknown-recipient-first-choice-reason",
	    test_unknown_first_choice);
	g_test_add_func("/negotiate/issue/ec-recipient-ecdh", test_ec_gets_ecdh);
	g_test_add_func("/negotiate/issue/rsa-pkcs1-policy-never-oaep",
	    test_pkcs1_policy_never_oaep);
	g_test_add_func("/negotiate/oaep/hash-variants", test_oaep_variants);
	g_test_add_func("/negotiate/names/case-insensitive-duplicates-unknown-ignored",
	    test_case_and_duplicates);
	g_test_add_func("/negotiate/names/recipient-order-does-not-decide",
	    test_recipient_order_ignored);
	g_test_add_func("/negotiate/refuse/empty-announcement-blocks",
	    test_empty_announcement_blocks);
	g_test_add_func("/negotiate/refuse/no-common-names-who-lacks-first-choice",
	    test_no_common_names_first_choice);
	g_test_add_func("/negotiate/refuse/3des-only-when-listed-or-assumed",
	    test_3des_only_when_listed);
	g_test_add_func("/negotiate/refuse/assume-nothing-blocks-unknown",
	    test_assume_nothing);
	g_test_add_func("/negotiate/many/100-recipients-names-capped",
	    test_many_recipients);
	g_test_add_func("/negotiate/invalid/refused", test_invalid_input);
	g_test_add_func("/negotiate/helpers", test_helpers);
	g_test_add_func("/negotiate/exhaustive/subsets-policies-orders-vs-reference",
	    test_exhaustive);
	return g_test_run();
}
