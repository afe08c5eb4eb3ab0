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

static void
free_policy(gpointer p)
{
	kms_policy_free(p);
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
	g_ptr_array_unref(o->rcpts);
	g_ptr_array_unref(o->policies);
	g_ptr_array_unref(o->found);
	g_ptr_array_unref(o->missing);
	kms_recipient_free(o->sender);
	g_free(o);
	return NULL;
}

KmsOutbound *
kms_outbound_policies(PGconn *c, const KmsConfig *cfg, const char *from,
    const char *const *rcpts, gsize n, GError **err)
{
	g_autoptr(KmsOutbound) o = g_new0(KmsOutbound, 1);

	o->from = g_strdup(from);
	o->rcpts = g_ptr_array_new_with_free_func(g_free);
	o->policies = g_ptr_array_new_with_free_func(free_policy);
	o->found = g_ptr_array_new_with_free_func(free_recipient);
	o->missing = g_ptr_array_new_with_free_func(g_free);
	/* the sender's policy decides how; without a sender, the global one */
	if ((o->sender_policy = kms_policy_resolve(c, cfg, NULL, from, err)) == NULL)
		return NULL;
	for (gsize i = 0; i < n; i++) {
		gboolean dup = FALSE;
		KmsPolicy *rp;

		for (guint j = 0; j < o->rcpts->len && !dup; j++)
			dup = same_address(rcpts[i], g_ptr_array_index(o->rcpts, j));
		if (dup)
			continue;
		if (from && same_address(rcpts[i], from))
			o->from_listed = TRUE;
		if ((rp = kms_policy_resolve(c, cfg, NULL, rcpts[i], err)) == NULL)
			return NULL;
		g_ptr_array_add(o->rcpts, g_strdup(rcpts[i]));
		g_ptr_array_add(o->policies, rp);
	}
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
	for (guint i = 0; i < o->rcpts->len; i++) {
		const char *a = g_ptr_array_index(o->rcpts, i);
		const KmsPolicy *rp = g_ptr_array_index(o->policies, i);
		KmsRecipient *r = NULL;

		if (!kms_recipient_lookup(c, a, rp->allow_untrusted, &r, err))
			return FALSE;
		if (r == NULL)
			g_ptr_array_add(o->missing, g_strdup(a));
		else
			g_ptr_array_add(o->found, r);
	}
	if (o->from && !o->from_listed &&
	    !kms_recipient_lookup(c, o->from, o->sender_policy->allow_untrusted, &o->sender, err))
		return FALSE;
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
