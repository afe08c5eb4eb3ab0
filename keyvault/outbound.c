/*
 * NAME
 *	outbound - policies, certificates and negotiation for one message
 *	(see outbound.h)
 */
#include "autoconfig.h"
#include "outbound.h"

static void
free_recipient(gpointer p)
{
	kms_recipient_free(p);
}

static gboolean
same_address(const char *a, const char *b)
{
	return g_ascii_strcasecmp(a, b) == 0;
}

KmsOutbound *
kms_outbound_free(KmsOutbound *o)
{
	if (o == NULL)
		return NULL;
	g_free(o->from);
	kms_policy_free(o->sender_policy);
	/* NULL when the policies could not be resolved */
	g_clear_pointer(&o->rcpts, g_ptr_array_unref);
	g_clear_pointer(&o->policies, g_ptr_array_unref);
	g_clear_pointer(&o->found, g_ptr_array_unref);
	g_clear_pointer(&o->missing, g_ptr_array_unref);
	kms_recipient_free(o->sender);
	g_free(o);
	return NULL;
}

KmsOutbound *
kms_outbound_policies(PGconn *c, const KmsConfig *cfg, const char *from,
    const char *const *rcpts, gsize n, GError **err)
{
	g_autoptr(KmsOutbound) o = g_new0(KmsOutbound, 1);
	g_autoptr(GPtrArray) scopes = g_ptr_array_new();
	GPtrArray *p;

	o->from = g_strdup(from);
	o->rcpts = g_ptr_array_new_with_free_func(g_free);
	o->found = g_ptr_array_new_with_free_func(free_recipient);
	o->missing = g_ptr_array_new_with_free_func(g_free);
	for (gsize i = 0; i < n; i++) {
		gboolean dup = FALSE;

		for (guint j = 0; j < o->rcpts->len && !dup; j++)
			dup = same_address(rcpts[i], g_ptr_array_index(o->rcpts, j));
		if (dup)
			continue;
		if (from && same_address(rcpts[i], from))
			o->from_listed = TRUE;
		g_ptr_array_add(o->rcpts, g_strdup(rcpts[i]));
	}
	/* the sender's policy decides how; without a sender, the global one */
	g_ptr_array_add(scopes, (gpointer)from);
	for (guint i = 0; i < o->rcpts->len; i++)
		g_ptr_array_add(scopes, g_ptr_array_index(o->rcpts, i));
	p = kms_policy_resolve_many(c, cfg, (const char *const *)scopes->pdata, scopes->len, err);
	if (p == NULL)
		return NULL;
	o->sender_policy = g_ptr_array_steal_index(p, 0);
	o->policies = p;
	return g_steal_pointer(&o);
}

KmsEncryptLevel
kms_outbound_level(const KmsOutbound *o, gboolean triggered)
{
	return kms_policy_message(o->sender_policy, (KmsPolicy *const *)o->policies->pdata,
	    o->policies->len, triggered);
}

gboolean
kms_outbound_certificates(PGconn *c, KmsOutbound *o, GError **err)
{
	guint n = o->rcpts->len;
	gboolean with_from = o->from && !o->from_listed;
	g_autofree const char **a = g_new(const char *, n + 1);
	g_autofree gboolean *untrusted = g_new(gboolean, n + 1);
	g_autofree KmsRecipient **r = g_new0(KmsRecipient *, n + 1);

	for (guint i = 0; i < n; i++) {
		const KmsPolicy *rp = g_ptr_array_index(o->policies, i);

		a[i] = g_ptr_array_index(o->rcpts, i);
		untrusted[i] = rp->allow_untrusted;
	}
	/* the sender's own, under the sender's policy */
	a[n] = o->from;
	untrusted[n] = o->sender_policy->allow_untrusted;
	if (!kms_recipient_lookup_many(c, a, untrusted, n + (with_from ? 1 : 0), r, err))
		return FALSE;
	for (guint i = 0; i < n; i++) {
		if (r[i] == NULL)
			g_ptr_array_add(o->missing, g_strdup(a[i]));
		else
			g_ptr_array_add(o->found, r[i]);
	}
	if (with_from)
		o->sender = r[n];
	return TRUE;
}

const char *
kms_outbound_sender_sha(const KmsOutbound *o)
{
	if (o->sender)
		return o->sender->sha256;
	for (guint i = 0; o->from && i < o->found->len; i++) {
		const KmsRecipient *r = g_ptr_array_index(o->found, i);

		if (same_address(r->address, o->from))
			return r->sha256;
	}
	return NULL;
}

KmsNegotiateResult *
kms_outbound_negotiate(const KmsOutbound *o, gboolean with_sender, GPtrArray **blockers,
    GError **err)
{
	g_autofree KmsNegotiateRecipient *in = g_new0(KmsNegotiateRecipient, o->found->len + 1);
	KmsNegotiatePolicy np;
	gsize n = 0;

	if (blockers)
		*blockers = NULL;
	if (o->found->len == 0) {
		g_set_error(err, KMS_NEGOTIATE_ERROR, KMS_NEGOTIATE_ERROR_INVALID,
		    "no recipient with a usable encryption certificate");
		return NULL;
	}
	for (guint i = 0; i < o->found->len; i++)
		kms_recipient_negotiate_input(g_ptr_array_index(o->found, i), &in[n++]);
	if (with_sender && o->sender)
		kms_recipient_negotiate_input(o->sender, &in[n++]);
	kms_policy_negotiate_policy(o->sender_policy, &np);
	return kms_negotiate(in, n, &np, blockers, err);
}
