/*
 * NAME
 *	callbacks - libmilter callbacks: collect, then decide at end of message
 * DESCRIPTION
 *	Connection context: created at connect, freed at close (close may come
 *	without connect). Message context: created at MAIL FROM, torn down by
 *	msg_reset() from MAIL FROM, abort, end of message and close. Messages
 *	that cannot carry S/MIME (top-level type neither multipart nor
 *	pkcs7-mime) are accepted at end of headers without reading the body;
 *	messages over [milter] max_message_size are accepted untouched.
 *	Except: a message that encryption may apply to (kms_encrypt_may_apply
 *	at end of headers: [policy] encrypt is not never, the vault holds
 *	policy overrides, or a trigger header or subject tag is present) is
 *	read to its end and handed to the encryption job after harvesting;
 *	when oversize it reaches the job too, which refuses it if policy
 *	requires encryption.
 *	A message to [milter] enroll_address is an enrollment or recovery
 *	reply: it is always read to the end (up to [enrollment]
 *	max_reply_size, else refused with 552 5.3.4) and handed to the reply
 *	job, which consumes its token; the enroll recipient is then removed
 *	(SMFIF_DELRCPT) and the message discarded when nobody else is left.
 * SECURITY
 *	Parses hostile mail in a process that holds no secret. No callback
 *	ever exits the process; every error becomes a verdict.
 */
#include "autoconfig.h"
#include "milter.h"

#include <string.h>

#include "common/log.h"

static KmsMessage *
msg_reset(KmsMessage *m)
{
	if (m == NULL)
		return NULL;
	kms_spool_free(m->spool);
	g_free(m->auth);
	if (m->enroll_rcpts)
		g_ptr_array_unref(m->enroll_rcpts);
	if (m->rcpt_list)
		g_ptr_array_unref(m->rcpt_list);
	if (m->hdr_names)
		g_ptr_array_unref(m->hdr_names);
	if (m->hdr_values)
		g_ptr_array_unref(m->hdr_values);
	g_free(m->reply_text);
	g_free(m->qid);
	g_free(m->from);
	g_free(m->content_type);
	g_free(m);
	return NULL;
}

static KmsConnection *
conn_of(SMFICTX *ctx)
{
	return smfi_getpriv(ctx);
}

/* The connection context, made at option negotiation (or at connect with
 * an MTA that does not negotiate). */
static KmsConnection *
conn_get(SMFICTX *ctx)
{
	KmsConnection *c = smfi_getpriv(ctx);

	if (c == NULL) {
		c = g_new0(KmsConnection, 1);
		c->state = kms_state_acquire();
		smfi_setpriv(ctx, c);
	}
	return c;
}

/* Go on without a reply where the MTA agreed to expect none (SMFIP_NR_*):
 * half the round trips of a message. */
static sfsistat
go_on(const KmsConnection *c, unsigned long nr_flag)
{
	return c && (c->noreply & nr_flag) ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}

/* Case-insensitive "pkcs7" in LEN bytes at P: every S/MIME content type
 * (application/pkcs7-signature, -mime, x-pkcs7-...) contains it, so a
 * message without it anywhere needs no MIME parse. */
static gboolean
has_pkcs7(const guint8 *p, gsize len)
{
	for (gsize i = 0; i + 5 <= len; i++)
		if ((p[i] | 0x20) == 'p' && g_ascii_strncasecmp((const char *)p + i, "pkcs7", 5) == 0)
			return TRUE;
	return FALSE;
}

/* Look for "pkcs7" in a chunk, also across the boundary with the last
 * four bytes of the previous one. */
static void
scan_pkcs7(KmsMessage *m, const guint8 *p, gsize len)
{
	guint8 joint[8];
	gsize n = MIN(len, 4);

	if (m->smime_hint)
		return;
	memcpy(joint, m->tail, m->tail_len);
	memcpy(joint + m->tail_len, p, n);
	if (has_pkcs7(joint, m->tail_len + n) || has_pkcs7(p, len)) {
		m->smime_hint = TRUE;
		return;
	}
	if (len >= 4) {
		memcpy(m->tail, p + len - 4, 4);
		m->tail_len = 4;
	} else {
		gsize keep = MIN(m->tail_len, 4 - len);

		memmove(m->tail, m->tail + m->tail_len - keep, keep);
		memcpy(m->tail + keep, p, len);
		m->tail_len = keep + len;
	}
}

/* Copy of a macro's value (libmilter's memory is not ours to keep). */
static char *
macro(SMFICTX *ctx, const char *name)
{
	const char *v = smfi_getsymval(ctx, (char *)name);

	return v ? g_strdup(v) : NULL;
}

static sfsistat
kms_verdict_to_sfsistat(SMFICTX *ctx, const KmsMessage *m, KmsVerdict v)
{
	switch (v) {
	case KMS_VERDICT_TEMPFAIL:
		smfi_setreply(ctx, "451", "4.3.0", "key vault temporarily unavailable, try again later");
		return SMFIS_TEMPFAIL;
	case KMS_VERDICT_REJECT:
		if (m && m->reply_code && m->reply_text)
			smfi_setreply(ctx, (char *)m->reply_code, (char *)m->reply_xcode, m->reply_text);
		return SMFIS_REJECT;
	case KMS_VERDICT_DISCARD:
		return SMFIS_DISCARD;
	case KMS_VERDICT_ACCEPT:
	default:
		return SMFIS_ACCEPT;
	}
}

static sfsistat
cb_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2,
    unsigned long f3, unsigned long *pf0, unsigned long *pf1, unsigned long *pf2,
    unsigned long *pf3)
{
	KmsConnection *c = conn_get(ctx);
	const unsigned long nr = SMFIP_NR_CONN | SMFIP_NR_MAIL | SMFIP_NR_RCPT | SMFIP_NR_HDR |
	    SMFIP_NR_BODY;

	/* a consumed enrollment reply loses its enroll recipient; encryption
	 * replaces body and content headers and, with mixed = split, removes
	 * the recipients that get a plain copy */
	*pf0 = f0 & (SMFIF_DELRCPT | SMFIF_CHGBODY | SMFIF_CHGHDRS | SMFIF_ADDHDRS);
	c->actions = *pf0;
	/* keep header values exactly as sent (leading space included), skip
	 * stages with nothing to learn, and answer only where it matters */
	*pf1 = f1 & (SMFIP_HDR_LEADSPC | SMFIP_NOHELO | SMFIP_NOUNKNOWN | SMFIP_NODATA | nr);
	c->noreply = *pf1 & nr;
	c->leadspc = (*pf1 & SMFIP_HDR_LEADSPC) != 0;
	*pf2 = *pf3 = 0;
	return SMFIS_CONTINUE;
}

static sfsistat
cb_connect(SMFICTX *ctx, char *host, struct sockaddr *addr)
{
	KmsConnection *c = conn_get(ctx);

	g_free(c->client);
	c->client = g_strdup(host ? host : "unknown");
	return go_on(c, SMFIP_NR_CONN);
}

static sfsistat
cb_envfrom(SMFICTX *ctx, char **argv)
{
	KmsConnection *c = conn_of(ctx);
	KmsMessage *m;

	if (c == NULL)
		return SMFIS_CONTINUE;
	c->msg = msg_reset(c->msg);
	m = c->msg = g_new0(KmsMessage, 1);
	m->qid = macro(ctx, "i");
	if (m->qid == NULL)
		m->qid = g_strdup("NOQUEUE");
	m->from = g_strdup(argv && argv[0] ? argv[0] : "<>");
	m->auth = macro(ctx, "{auth_authen}");
	m->enroll_rcpts = g_ptr_array_new_with_free_func(g_free);
	m->rcpt_list = g_ptr_array_new_with_free_func(g_free);
	m->hdr_names = g_ptr_array_new_with_free_func(g_free);
	m->hdr_values = g_ptr_array_new_with_free_func(g_free);
	m->spool = kms_spool_new(c->state->spool_memory, c->state->max_message_size,
	    c->state->temp_dir);
	return go_on(c, SMFIP_NR_MAIL);
}

/* Runs also with SMFIP_NR_RCPT (only the reply is skipped). The enroll
 * recipient is kept exactly as the MTA wrote it, for smfi_delrcpt. */
static sfsistat
cb_envrcpt(SMFICTX *ctx, char **argv)
{
	KmsConnection *c = conn_of(ctx);
	KmsMessage *m = c ? c->msg : NULL;

	if (m != NULL && argv && argv[0]) {
		m->rcpts++;
		g_ptr_array_add(m->rcpt_list, g_strdup(argv[0]));
		if (kms_state_is_enroll_rcpt(c->state, argv[0]))
			g_ptr_array_add(m->enroll_rcpts, g_strdup(argv[0]));
	}
	return go_on(c, SMFIP_NR_RCPT);
}

static gboolean
is_reply(const KmsMessage *m)
{
	return m->enroll_rcpts && m->enroll_rcpts->len > 0;
}

/* Count LEN more bytes of a reply; past max_reply_size it is refused
 * at the end and nothing more is kept. */
static gboolean
reply_grows(const KmsConnection *c, KmsMessage *m, gsize len)
{
	if (!is_reply(m))
		return TRUE;
	m->size += len;
	if (m->size > c->state->max_reply_size)
		m->reply_too_big = TRUE;
	return !m->reply_too_big;
}

static const char *
qid_of(const KmsMessage *m)
{
	return m && m->qid ? m->qid : "NOQUEUE";
}

/* Append to the spool; on overflow mark the message oversize. */
static gboolean
spool(KmsMessage *m, const void *data, gsize len)
{
	g_autoptr(GError) e = NULL;

	if (m->oversize)
		return FALSE;
	if (kms_spool_append(m->spool, data, len, &e))
		return TRUE;
	m->oversize = TRUE;
	if (e)
		kms_log(LOG_ERR, qid_of(m), "%s: message passed through unexamined", e->message);
	return FALSE;
}

static sfsistat
cb_header(SMFICTX *ctx, char *name, char *value)
{
	KmsConnection *c = conn_of(ctx);
	KmsMessage *m = c ? c->msg : NULL;
	g_autofree char *line = NULL;

	if (m == NULL)
		return go_on(c, SMFIP_NR_HDR);
	if (m->content_type == NULL && g_ascii_strcasecmp(name, "Content-Type") == 0)
		m->content_type = g_strdup(value);
	g_ptr_array_add(m->hdr_names, g_strdup(name));
	g_ptr_array_add(m->hdr_values, g_strdup(value));
	if (!m->trigger_seen && kms_encrypt_trigger_header(c->state, name, value))
		m->trigger_seen = TRUE;
	line = g_strconcat(name, ":", value, "\r\n", NULL);
	if (!reply_grows(c, m, strlen(line)))
		return go_on(c, SMFIP_NR_HDR);
	if (!m->smime_hint && has_pkcs7((const guint8 *)value, strlen(value)))
		m->smime_hint = TRUE;
	spool(m, line, strlen(line));
	return go_on(c, SMFIP_NR_HDR);
}

/* Could a message of this top-level type hold an S/MIME signature? */
static gboolean
may_hold_smime(const char *ct)
{
	g_autofree char *t = NULL;

	if (ct == NULL)
		return FALSE;	/* text/plain by default */
	t = g_strstrip(g_ascii_strdown(ct, -1));
	return g_str_has_prefix(t, "multipart/") || g_str_has_prefix(t, "application/pkcs7-mime") ||
	    g_str_has_prefix(t, "application/x-pkcs7-mime");
}

static sfsistat
cb_eoh(SMFICTX *ctx)
{
	KmsConnection *c = conn_of(ctx);
	KmsMessage *m = c ? c->msg : NULL;

	if (m == NULL)
		return SMFIS_CONTINUE;
	/* a reply is read whatever its type: the token is in plain text;
	 * a message that may have to be encrypted is read to its end */
	m->may_encrypt = kms_encrypt_may_apply(c, m);
	if (!is_reply(m) && !may_hold_smime(m->content_type) && !m->may_encrypt) {
		c->msg = msg_reset(c->msg);
		return SMFIS_ACCEPT;
	}
	spool(m, "\r\n", 2);
	m->body_offset = kms_spool_size(m->spool);
	m->headers_done = TRUE;
	return SMFIS_CONTINUE;
}

static sfsistat
cb_body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{
	KmsConnection *c = conn_of(ctx);
	KmsMessage *m = c ? c->msg : NULL;
	gboolean was_oversize;

	if (m == NULL || m->oversize || m->reply_too_big || !reply_grows(c, m, len))
		return go_on(c, SMFIP_NR_BODY);
	scan_pkcs7(m, chunk, len);
	was_oversize = m->oversize;
	if (!spool(m, chunk, len) && !was_oversize) {
		char *qid = macro(ctx, "i");

		if (qid) {
			g_free(m->qid);
			m->qid = qid;
		}
		/* a reply that cannot be kept cannot be examined: refused at the end */
		if (is_reply(m)) {
			m->reply_too_big = TRUE;
			return go_on(c, SMFIP_NR_BODY);
		}
		/* a spool write error was logged by spool() already */
		if (kms_spool_full(m->spool))
			kms_log(LOG_NOTICE, qid_of(m),
			    "message larger than max_message_size (%zu bytes): %s",
			    c->state->max_message_size, m->may_encrypt ?
			    "not examined, encryption policy decides at the end" :
			    "passed through untouched");
		/* without a reply to give, wait for the end of the message;
		 * so also when policy may require encryption (refused there,
		 * never passed in clear) */
		if (c->noreply & SMFIP_NR_BODY)
			return SMFIS_NOREPLY;
		if (m->may_encrypt)
			return SMFIS_CONTINUE;
		c->msg = msg_reset(c->msg);
		return SMFIS_ACCEPT;
	}
	return go_on(c, SMFIP_NR_BODY);
}

/* A reply's token was consumed: remove the enroll recipients, discard
 * the message when nobody else is left, else go on with harvesting for
 * the others. */
static KmsVerdict
reply_done(SMFICTX *ctx, KmsConnection *c, KmsMessage *m)
{
	KmsVerdict v;

	for (guint i = 0; i < m->enroll_rcpts->len; i++) {
		char *r = g_ptr_array_index(m->enroll_rcpts, i);

		if (smfi_delrcpt(ctx, r) != MI_SUCCESS)
			kms_log(LOG_WARNING, qid_of(m), "cannot remove the enroll recipient"
			    " (the MTA did not allow SMFIF_DELRCPT)");
	}
	if (m->rcpts <= m->enroll_rcpts->len)
		return KMS_VERDICT_DISCARD;
	v = kms_job_harvest(c, m);
	if (v == KMS_VERDICT_TEMPFAIL) {
		/* the token is spent: deferring now would refuse the retry */
		kms_log(LOG_NOTICE, qid_of(m), "enrollment reply: accepted for the other recipients"
		    " although harvesting failed");
		v = KMS_VERDICT_ACCEPT;
	}
	return v;
}

static sfsistat
cb_eom(SMFICTX *ctx)
{
	KmsConnection *c = conn_of(ctx);
	KmsMessage *m = c ? c->msg : NULL;
	KmsVerdict v;
	sfsistat r;
	char *qid;

	if (m == NULL)
		return SMFIS_ACCEPT;
	/* Postfix may send the queue id only now */
	if ((qid = macro(ctx, "i")) != NULL) {
		g_free(m->qid);
		m->qid = qid;
	}
	if (is_reply(m)) {
		v = kms_job_reply(c, m);
		if (v == KMS_VERDICT_ACCEPT)
			v = reply_done(ctx, c, m);
	} else
		v = kms_job_harvest(c, m);
	/* harvested first: the message may carry the sender's certificate */
	if (v == KMS_VERDICT_ACCEPT && m->may_encrypt)
		v = kms_job_encrypt(ctx, c, m);
	r = kms_verdict_to_sfsistat(ctx, m, v);
	c->msg = msg_reset(c->msg);
	return r;
}

static sfsistat
cb_abort(SMFICTX *ctx)
{
	KmsConnection *c = conn_of(ctx);

	if (c)
		c->msg = msg_reset(c->msg);
	return SMFIS_CONTINUE;
}

static sfsistat
cb_close(SMFICTX *ctx)
{
	KmsConnection *c = conn_of(ctx);

	if (c == NULL)
		return SMFIS_CONTINUE;
	msg_reset(c->msg);
	kms_state_release(c->state);
	g_free(c->client);
	g_free(c);
	smfi_setpriv(ctx, NULL);
	return SMFIS_CONTINUE;
}

struct smfiDesc kms_milter_desc = {
	.xxfi_name = "kmsmilter",
	.xxfi_version = SMFI_VERSION,
	.xxfi_flags = SMFIF_DELRCPT | SMFIF_CHGBODY | SMFIF_CHGHDRS | SMFIF_ADDHDRS,
	.xxfi_connect = cb_connect,
	.xxfi_envfrom = cb_envfrom,
	.xxfi_envrcpt = cb_envrcpt,
	.xxfi_header = cb_header,
	.xxfi_eoh = cb_eoh,
	.xxfi_body = cb_body,
	.xxfi_eom = cb_eom,
	.xxfi_abort = cb_abort,
	.xxfi_close = cb_close,
	.xxfi_negotiate = cb_negotiate,
};
