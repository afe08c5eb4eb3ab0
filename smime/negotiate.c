/*
 * NAME
 *	negotiate - choose the content-encryption algorithm (see negotiate.h)
 * DESCRIPTION
 *	Each recipient is reduced to a bit mask over the six policy
 *	algorithms, so the choice is an AND over the recipients followed by
 *	a walk down the administrator's list: linear in the recipients and
 *	independent of their order. Messages are built afterwards from the
 *	masks, naming recipients in input order.
 * SECURITY
 *	Recipient capability names are only compared (g_ascii_strcasecmp)
 *	with the fixed tables below; messages contain fixed names, and the
 *	addresses, digests and sources the caller passed in.
 * DIAGNOSTICS
 *	GError in KMS_NEGOTIATE_ERROR.
 */
#include "negotiate.h"

#include <string.h>

G_DEFINE_QUARK(kms-negotiate-error-quark, kms_negotiate_error)

#define NAMES_MAX	5	/* recipients named per list in a message */

/* The algorithms a policy may allow; the index is the bit in a mask. */
static const struct {
	const char *name;
	gboolean gcm;
} algs[] = {
	{"aes256-gcm", TRUE},
	{"aes128-gcm", TRUE},
	{"aes256-cbc", FALSE},
	{"aes192-cbc", FALSE},
	{"aes128-cbc", FALSE},
	{"des-ede3-cbc", FALSE},
};
#define N_ALGS	G_N_ELEMENTS(algs)

/* OAEP hashes in the order we pick them, with the capability naming each. */
static const struct {
	const char *hash;
	const char *capability;
} oaeps[] = {
	{"sha256", "rsaes-oaep-sha256"},
	{"sha1", "rsaes-oaep"},
	{"sha1", "rsaes-oaep-sha1"},
	{"sha384", "rsaes-oaep-sha384"},
	{"sha512", "rsaes-oaep-sha512"},
	{"sha224", "rsaes-oaep-sha224"},
};

static const char *const default_unknown[] = {"aes256-cbc", NULL};

/* Index of NAME in algs, -1 when it is not one of them. */
static int
alg_index(const char *name)
{
	for (gsize i = 0; i < N_ALGS; i++)
		if (g_ascii_strcasecmp(name, algs[i].name) == 0)
			return (int) i;
	return -1;
}

gboolean
kms_negotiate_algorithm_known(const char *name)
{
	return name != NULL && alg_index(name) >= 0;
}

gboolean
kms_negotiate_parse_key_transport(const char *name, KmsKeyTransportPolicy *out)
{
	if (name == NULL)
		return FALSE;
	if (g_ascii_strcasecmp(name, "rsa-pkcs1") == 0)
		*out = KMS_KEY_TRANSPORT_RSA_PKCS1;
	else if (g_ascii_strcasecmp(name, "rsa-oaep-if-announced") == 0)
		*out = KMS_KEY_TRANSPORT_RSA_OAEP_IF_ANNOUNCED;
	else
		return FALSE;
	return TRUE;
}

/* Mask of the known algorithms among NAMES; unknown names are ignored. */
static guint
names_mask(const char *const *names)
{
	guint mask = 0;
	int i;

	for (; *names != NULL; names++)
		if ((i = alg_index(*names)) >= 0)
			mask |= 1u << i;
	return mask;
}

/* The OAEP hash CAPS announce (see oaeps), or NULL. */
static const char *
oaep_hash(const char *const *caps)
{
	if (caps == NULL)
		return NULL;
	for (gsize i = 0; i < G_N_ELEMENTS(oaeps); i++)
		for (const char *const *c = caps; *c != NULL; c++)
			if (g_ascii_strcasecmp(*c, oaeps[i].capability) == 0)
				return oaeps[i].hash;
	return NULL;
}

/* Append the algorithm names of MASK, in table order, joined by SEP. */
static void
append_mask(GString *s, guint mask, const char *sep)
{
	gboolean first = TRUE;

	for (gsize i = 0; i < N_ALGS; i++) {
		if ((mask & (1u << i)) == 0)
			continue;
		g_string_append_printf(s, "%s%s", first ? "" : sep, algs[i].name);
		first = FALSE;
	}
}

/* What we know about a recipient */
typedef struct {
	guint mask;		/* supported policy algorithms */
	gboolean assumed;	/* never announced */
	gboolean empty;		/* announced an empty list */
} Known;

/* Append the addresses of recipients IDX[0..count), at most NAMES_MAX,
 * with why each supports what it supports when WHY. */
static void
append_names(GString *s, const KmsNegotiateRecipient *rcpts, const Known *known,
    const gsize *idx, gsize count, guint unknown_mask, gboolean why)
{
	for (gsize k = 0; k < count && k < NAMES_MAX; k++) {
		const Known *kn = &known[idx[k]];

		g_string_append_printf(s, "%s%s", k ? ", " : "", rcpts[idx[k]].address);
		if (!why)
			continue;
		if (kn->assumed && unknown_mask == 0)
			g_string_append(s, " (capabilities unknown, none assumed)");
		else if (kn->assumed) {
			g_string_append(s, " (capabilities unknown, assumed ");
			append_mask(s, unknown_mask, "/");
			g_string_append_c(s, ')');
		} else if (kn->empty)
			g_string_append(s, " (announced an empty list)");
		else if (kn->mask == 0)
			g_string_append(s, " (announced no known algorithm)");
		else {
			g_string_append(s, " (announced ");
			append_mask(s, kn->mask, "/");
			g_string_append_c(s, ')');
		}
	}
	if (count > NAMES_MAX)
		g_string_append_printf(s, " and %" G_GSIZE_FORMAT " more", count - NAMES_MAX);
}

/* Indices of the recipients lacking algorithm A, in input order. */
static GArray *
lacking(const Known *known, gsize n, int a)
{
	GArray *out = g_array_new(FALSE, FALSE, sizeof(gsize));

	for (gsize i = 0; i < n; i++)
		if ((known[i].mask & (1u << a)) == 0)
			g_array_append_val(out, i);
	return out;
}

static gboolean
same_indices(const GArray *a, const GArray *b)
{
	return a->len == b->len &&
	    memcmp(a->data, b->data, a->len * sizeof(gsize)) == 0;
}

/* "A, B are not supported by X; C is not supported by Y" for the
 * algorithms ORDER[0..m) (consecutive ones with the same recipients
 * lacking them are grouped). Sets *first to the lacking set of ORDER[0]
 * when FIRST is not NULL. */
static void
append_lacks(GString *s, const KmsNegotiateRecipient *rcpts, const Known *known,
    gsize n, const int *order, gsize m, guint unknown_mask, GArray **first)
{
	GArray *group = NULL;
	gsize group_start = 0;

	for (gsize k = 0; k <= m; k++) {
		GArray *cur = k < m ? lacking(known, n, order[k]) : NULL;

		if (group != NULL && (cur == NULL || !same_indices(group, cur))) {
			if (group_start > 0)
				g_string_append(s, "; ");
			for (gsize j = group_start; j < k; j++)
				g_string_append_printf(s, "%s%s", j > group_start ? ", " : "",
				    algs[order[j]].name);
			g_string_append(s, k - group_start > 1 ? " are" : " is");
			g_string_append(s, " not supported by ");
			append_names(s, rcpts, known, (const gsize *) (void *) group->data,
			    group->len, unknown_mask, FALSE);
			if (first != NULL && group_start == 0)
				*first = g_array_ref(group);
			g_array_unref(group);
			group = NULL;
		}
		if (cur == NULL)
			break;
		if (group == NULL) {
			group = cur;
			group_start = k;
		} else
			g_array_unref(cur);
	}
}

/* Append "; capabilities unknown for X, assumed Y" when someone was assumed. */
static void
append_assumed(GString *s, const KmsNegotiateRecipient *rcpts, const Known *known,
    gsize n, guint unknown_mask)
{
	g_autoptr(GArray) idx = g_array_new(FALSE, FALSE, sizeof(gsize));

	for (gsize i = 0; i < n; i++)
		if (known[i].assumed)
			g_array_append_val(idx, i);
	if (idx->len == 0)
		return;
	g_string_append(s, "; capabilities unknown for ");
	append_names(s, rcpts, known, (const gsize *) (void *) idx->data, idx->len,
	    unknown_mask, FALSE);
	g_string_append(s, ", assumed ");
	append_mask(s, unknown_mask, "/");
}

/* Check POLICY, fill ORDER (deduplicated indices, *m of them) and the
 * mask assumed for unknown recipients. */
static gboolean
read_policy(const KmsNegotiatePolicy *policy, int *order, gsize *m,
    guint *unknown_mask, GError **err)
{
	const char *const *unknown;
	guint seen = 0;
	int a;

	*m = 0;
	if (policy == NULL || policy->algorithms == NULL || policy->algorithms[0] == NULL) {
		g_set_error(err, KMS_NEGOTIATE_ERROR, KMS_NEGOTIATE_ERROR_INVALID,
		    "the policy allows no encryption algorithm");
		return FALSE;
	}
	if (policy->key_transport != KMS_KEY_TRANSPORT_RSA_PKCS1 &&
	    policy->key_transport != KMS_KEY_TRANSPORT_RSA_OAEP_IF_ANNOUNCED) {
		g_set_error(err, KMS_NEGOTIATE_ERROR, KMS_NEGOTIATE_ERROR_INVALID,
		    "invalid key transport policy %d", (int) policy->key_transport);
		return FALSE;
	}
	for (const char *const *p = policy->algorithms; *p != NULL; p++) {
		if ((a = alg_index(*p)) < 0) {
			g_set_error(err, KMS_NEGOTIATE_ERROR, KMS_NEGOTIATE_ERROR_INVALID,
			    "policy algorithms: unknown algorithm \"%s\" (allowed: "
			    "aes256-gcm aes128-gcm aes256-cbc aes192-cbc aes128-cbc "
			    "des-ede3-cbc)", *p);
			return FALSE;
		}
		if (seen & (1u << a))
			continue;
		seen |= 1u << a;
		order[(*m)++] = a;
	}
	unknown = policy->unknown_capabilities ? policy->unknown_capabilities : default_unknown;
	for (const char *const *p = unknown; *p != NULL; p++)
		if (alg_index(*p) < 0) {
			g_set_error(err, KMS_NEGOTIATE_ERROR, KMS_NEGOTIATE_ERROR_INVALID,
			    "policy unknown_capabilities: unknown algorithm \"%s\"", *p);
			return FALSE;
		}
	*unknown_mask = names_mask(unknown);
	return TRUE;
}

/* The result's entry for R under POLICY. */
static KmsNegotiateChoice *
choice_new(const KmsNegotiateRecipient *r, const Known *kn, const KmsNegotiatePolicy *policy)
{
	KmsNegotiateChoice *c = g_new0(KmsNegotiateChoice, 1);
	const char *hash = NULL;

	c->address = g_strdup(r->address);
	c->certificate = g_strdup(r->certificate);
	c->assumed = kn->assumed;
	if (r->capabilities_source != NULL)
		c->capabilities_source = g_strdup(r->capabilities_source);
	else
		c->capabilities_source = g_strdup(kn->assumed ? "none" : "announced");
	if (r->key_kind == KMS_NEGOTIATE_KEY_EC) {
		c->transport = KMS_NEGOTIATE_ECDH;
		c->key_transport = g_strdup("ecdh");
	} else if (policy->key_transport == KMS_KEY_TRANSPORT_RSA_OAEP_IF_ANNOUNCED &&
	    (hash = oaep_hash(r->capabilities)) != NULL) {
		c->transport = KMS_NEGOTIATE_RSA_OAEP;
		c->key_transport = g_strdup("rsaes-oaep");
		c->oaep_hash = g_strdup(hash);
	} else {
		c->transport = KMS_NEGOTIATE_RSA_PKCS1;
		c->key_transport = g_strdup("rsa-pkcs1");
	}
	return c;
}

static void
choice_free(gpointer p)
{
	KmsNegotiateChoice *c = p;

	g_free(c->address);
	g_free(c->certificate);
	g_free(c->key_transport);
	g_free(c->oaep_hash);
	g_free(c->capabilities_source);
	g_free(c);
}

KmsNegotiateResult *
kms_negotiate_result_free(KmsNegotiateResult *r)
{
	if (r == NULL)
		return NULL;
	g_free(r->algorithm);
	if (r->recipients != NULL)
		g_ptr_array_unref(r->recipients);
	g_free(r->reason);
	g_free(r);
	return NULL;
}

/* Copy the addresses of recipients IDX into a new array. */
static GPtrArray *
addresses(const KmsNegotiateRecipient *rcpts, const GArray *idx)
{
	GPtrArray *out = g_ptr_array_new_with_free_func(g_free);

	for (guint k = 0; k < idx->len; k++)
		g_ptr_array_add(out, g_strdup(rcpts[g_array_index(idx, gsize, k)].address));
	return out;
}

/* The refusal: blockers (support nothing allowed) or who lacks what. */
static void
refuse(const KmsNegotiateRecipient *rcpts, const Known *known, gsize n,
    const int *order, gsize m, guint allowed, guint unknown_mask,
    GPtrArray **blockers, GError **err)
{
	g_autoptr(GString) s = g_string_new(NULL);
	g_autoptr(GArray) none = g_array_new(FALSE, FALSE, sizeof(gsize));
	GArray *first = NULL;

	for (gsize i = 0; i < n; i++)
		if ((known[i].mask & allowed) == 0)
			g_array_append_val(none, i);
	if (none->len > 0) {
		g_string_append(s, "no allowed algorithm (");
		for (gsize k = 0; k < m; k++)
			g_string_append_printf(s, "%s%s", k ? ", " : "", algs[order[k]].name);
		g_string_append(s, ") is supported by ");
		append_names(s, rcpts, known, (const gsize *) (void *) none->data,
		    none->len, unknown_mask, TRUE);
		first = g_array_ref(none);
	} else {
		g_string_append_printf(s, "no allowed algorithm is supported by all %"
		    G_GSIZE_FORMAT " recipients: ", n);
		append_lacks(s, rcpts, known, n, order, m, unknown_mask, &first);
	}
	g_set_error(err, KMS_NEGOTIATE_ERROR, KMS_NEGOTIATE_ERROR_NO_COMMON, "%s", s->str);
	if (blockers != NULL)
		*blockers = addresses(rcpts, first);
	g_array_unref(first);
}

KmsNegotiateResult *
kms_negotiate(const KmsNegotiateRecipient *rcpts, gsize n,
    const KmsNegotiatePolicy *policy, GPtrArray **blockers, GError **err)
{
	int order[N_ALGS];
	gsize m, k;
	guint unknown_mask, common = (1u << N_ALGS) - 1, allowed = 0;
	g_autofree Known *known = NULL;
	KmsNegotiateResult *res;
	GString *s;

	if (blockers != NULL)
		*blockers = NULL;
	if (!read_policy(policy, order, &m, &unknown_mask, err))
		return NULL;
	if (rcpts == NULL || n == 0) {
		g_set_error(err, KMS_NEGOTIATE_ERROR, KMS_NEGOTIATE_ERROR_INVALID,
		    "no recipients");
		return NULL;
	}
	known = g_new0(Known, n);
	for (gsize i = 0; i < n; i++) {
		if (rcpts[i].address == NULL || rcpts[i].address[0] == '\0') {
			g_set_error(err, KMS_NEGOTIATE_ERROR, KMS_NEGOTIATE_ERROR_INVALID,
			    "recipient %" G_GSIZE_FORMAT " has no address", i + 1);
			return NULL;
		}
		if (rcpts[i].key_kind != KMS_NEGOTIATE_KEY_RSA &&
		    rcpts[i].key_kind != KMS_NEGOTIATE_KEY_EC) {
			g_set_error(err, KMS_NEGOTIATE_ERROR, KMS_NEGOTIATE_ERROR_INVALID,
			    "%s: invalid key kind %d", rcpts[i].address,
			    (int) rcpts[i].key_kind);
			return NULL;
		}
		if (rcpts[i].capabilities == NULL) {
			known[i].assumed = TRUE;
			known[i].mask = unknown_mask;
		} else {
			known[i].empty = rcpts[i].capabilities[0] == NULL;
			known[i].mask = names_mask(rcpts[i].capabilities);
		}
		common &= known[i].mask;
	}
	for (k = 0; k < m; k++) {
		allowed |= 1u << order[k];
		if (common & (1u << order[k]))
			break;
	}
	if (k == m) {
		refuse(rcpts, known, n, order, m, allowed, unknown_mask, blockers, err);
		return NULL;
	}

	res = g_new0(KmsNegotiateResult, 1);
	res->algorithm = g_strdup(algs[order[k]].name);
	res->authenveloped = algs[order[k]].gcm;
	res->recipients = g_ptr_array_new_full((guint) n, choice_free);
	for (gsize i = 0; i < n; i++)
		g_ptr_array_add(res->recipients, choice_new(&rcpts[i], &known[i], policy));

	s = g_string_new(res->algorithm);
	g_string_append(s, ": ");
	if (k == 0) {
		gboolean any_assumed = FALSE;

		for (gsize i = 0; i < n; i++)
			any_assumed |= known[i].assumed;
		g_string_append_printf(s, "first allowed algorithm %s by ",
		    any_assumed ? "supported" : "announced");
		if (n == 1)
			g_string_append(s, rcpts[0].address);
		else
			g_string_append_printf(s, "all %" G_GSIZE_FORMAT " recipients", n);
	} else
		append_lacks(s, rcpts, known, n, order, k, unknown_mask, NULL);
	append_assumed(s, rcpts, known, n, unknown_mask);
	res->reason = g_string_free(s, FALSE);
	return res;
}
