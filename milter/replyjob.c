/*
 * NAME
 *	replyjob - enrollment and recovery replies in the milter
 * DESCRIPTION
 *	A message to [milter] enroll_address is a user's reply to a token
 *	mail. The spooled message is parsed with GMime (at most [milter]
 *	max_depth levels and MAX_PARTS parts); every text part (text/ anything), decoded and
 *	converted to UTF-8, is searched for tokens (kms_token_find: quoted,
 *	any case, with or without dashes; at most MAX_CANDIDATES). The
 *	first PKCS#10 request found is taken for the signing certificate: a
 *	PEM block in a text part, or an attachment named *.p10, *.csr, *.req
 *	or typed application/pkcs10 (DER or PEM). The sender's identity is
 *	the envelope sender, or with [enrollment] require_auth the SMTP AUTH
 *	login ({auth_authen}) and what [enrollment] auth_map maps it to.
 *	kms_reply_consume() (keyvault/reply.h) then decides in one
 *	transaction. The verdict: token consumed -> ACCEPT (the caller
 *	removes the enroll recipient); refused -> 550 5.7.0 with the reason;
 *	too big -> 552 5.3.4; vault unreachable -> 451 4.3.0, so the MTA
 *	retries and nothing is lost.
 * SECURITY
 *	Everything here is hostile. The decoded text holding the token is
 *	wiped when done; the token is never logged nor quoted in a reply.
 *	Sender and login are logged with unprintable bytes replaced.
 * DIAGNOSTICS
 *	One line per reply: queue id, sender, enrolled address, outcome.
 */
#include "autoconfig.h"
#include "milter.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <gmime/gmime.h>
#include <openssl/crypto.h>
#include <openssl/x509.h>

#include "common/address.h"
#include "common/log.h"
#include "common/token.h"
#include "keyvault/db.h"
#include "keyvault/reply.h"
#include "smime/csr.h"

#define MAX_CANDIDATES	8	/* tokens looked up per reply */
#define MAX_PARTS	200	/* MIME parts examined per reply */

typedef struct {
	guint max_depth;
	guint parts;
	gsize max_text;		/* bound on the decoded text kept */
	GString *text;		/* decoded text parts, for the token search */
	GBytes *csr;		/* the first CSR found (PEM or DER), or NULL */
} Scan;

typedef struct {
	GMimeObject *obj;
	guint depth;
} Item;

/* S with bytes outside printable ASCII (and '%', which sendmail would
 * expand in a reply) replaced, cut at MAX: fit for a log line or an SMTP
 * reply. g_free. */
static char *
printable(const char *s, gsize max)
{
	GString *o = g_string_new(NULL);

	for (; s && *s && o->len < max; s++)
		g_string_append_c(o, (guchar)*s < 0x20 || (guchar)*s >= 0x7f || *s == '%' ? '?' : *s);
	return g_string_free(o, FALSE);
}

static gboolean
has_suffix_nocase(const char *s, const char *suffix)
{
	gsize n = strlen(s), k = strlen(suffix);

	return n >= k && g_ascii_strcasecmp(s + n - k, suffix) == 0;
}

static gboolean
is_csr_part(GMimeObject *obj)
{
	GMimeContentType *ct = g_mime_object_get_content_type(obj);
	const char *name = g_mime_part_get_filename(GMIME_PART(obj));

	if (ct && (g_mime_content_type_is_type(ct, "application", "pkcs10") ||
	    g_mime_content_type_is_type(ct, "application", "x-pkcs10")))
		return TRUE;
	return name && (has_suffix_nocase(name, ".p10") || has_suffix_nocase(name, ".csr") ||
	    has_suffix_nocase(name, ".req"));
}

/* The decoded content of PART (transfer encoding undone). */
static GBytes *
part_bytes(GMimePart *part)
{
	GMimeDataWrapper *content = g_mime_part_get_content(part);
	GMimeStream *out;
	GByteArray *a;
	GBytes *b = NULL;

	if (content == NULL)
		return NULL;
	out = g_mime_stream_mem_new();
	if (g_mime_data_wrapper_write_to_stream(content, out) >= 0) {
		a = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(out));
		b = g_bytes_new(a->data, a->len);
	}
	g_object_unref(out);
	return b;
}

static void
scan_leaf(Scan *sc, GMimeObject *obj)
{
	char *text;
	gsize len;

	if (is_csr_part(obj)) {
		if (sc->csr == NULL)
			sc->csr = part_bytes(GMIME_PART(obj));
		return;
	}
	if (!GMIME_IS_TEXT_PART(obj))
		return;
	if ((text = g_mime_text_part_get_text(GMIME_TEXT_PART(obj))) == NULL)
		return;
	len = strlen(text);
	if (sc->csr == NULL) {
		char *pem = kms_csr_find_pem(text, len);

		if (pem)
			sc->csr = g_bytes_new_take(pem, strlen(pem));
	}
	if (sc->text->len < sc->max_text) {
		g_string_append_len(sc->text, text, (gssize)MIN(len, sc->max_text - sc->text->len));
		g_string_append_c(sc->text, '\n');
	}
	OPENSSL_cleanse(text, len);
	g_free(text);
}

/* Walk the tree under TOP in document order, depth and parts bounded. */
static void
scan_tree(Scan *sc, GMimeObject *top)
{
	GArray *stack = g_array_new(FALSE, FALSE, sizeof(Item));
	Item it = { top, 0 };

	g_array_append_val(stack, it);
	while (stack->len > 0 && sc->parts < MAX_PARTS) {
		it = g_array_index(stack, Item, stack->len - 1);
		g_array_set_size(stack, stack->len - 1);
		sc->parts++;
		if (it.obj == NULL || it.depth > sc->max_depth)
			continue;
		if (GMIME_IS_MESSAGE_PART(it.obj)) {
			GMimeMessage *m = g_mime_message_part_get_message(GMIME_MESSAGE_PART(it.obj));
			Item in = { m ? g_mime_message_get_mime_part(m) : NULL, it.depth + 1 };

			g_array_append_val(stack, in);
		} else if (GMIME_IS_MULTIPART(it.obj)) {
			int n = g_mime_multipart_get_count(GMIME_MULTIPART(it.obj));

			for (int i = n - 1; i >= 0 && stack->len < MAX_PARTS; i--) {
				Item in = { g_mime_multipart_get_part(GMIME_MULTIPART(it.obj), i),
				    it.depth + 1 };

				g_array_append_val(stack, in);
			}
		} else if (GMIME_IS_PART(it.obj))
			scan_leaf(sc, it.obj);
	}
	g_array_unref(stack);
}

/* The spooled message in a new array (from memory or the spool file). */
static GByteArray *
spooled(const KmsMessage *msg)
{
	GByteArray *a = g_byte_array_new();
	int fd = kms_spool_fd(msg->spool);
	guint8 buf[65536];
	off_t off = 0;
	ssize_t n;

	if (fd < 0) {
		g_byte_array_append(a, kms_spool_memory(msg->spool), (guint)kms_spool_size(msg->spool));
		return a;
	}
	while ((n = pread(fd, buf, sizeof(buf), off)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			g_byte_array_unref(a);
			return NULL;
		}
		g_byte_array_append(a, buf, (guint)n);
		off += n;
	}
	return a;
}

/* Parse the reply and fill SC. FALSE when it is no MIME message at all. */
static gboolean
scan_message(const KmsMessage *msg, Scan *sc)
{
	GByteArray *a = spooled(msg);
	GMimeStream *stream;
	GMimeParser *parser;
	GMimeMessage *m;

	if (a == NULL)
		return FALSE;
	stream = g_mime_stream_mem_new_with_byte_array(a);	/* owns A */
	parser = g_mime_parser_new_with_stream(stream);
	g_mime_parser_set_format(parser, GMIME_FORMAT_MESSAGE);
	m = g_mime_parser_construct_message(parser, NULL);
	g_object_unref(parser);
	if (m != NULL) {
		scan_tree(sc, g_mime_message_get_mime_part(m));
		g_object_unref(m);
	}
	/* the raw reply holds the token too */
	OPENSSL_cleanse(a->data, a->len);
	g_object_unref(stream);
	return m != NULL;
}

static KmsVerdict
reject(KmsMessage *msg, const char *code, const char *xcode, const char *text)
{
	msg->reply_code = code;
	msg->reply_xcode = xcode;
	g_free(msg->reply_text);
	msg->reply_text = printable(text, 400);
	return KMS_VERDICT_REJECT;
}

/* The one log line of a reply. */
static void
log_reply(int prio, const KmsMessage *msg, const char *address, const char *purpose,
    const char *outcome)
{
	g_autofree char *from = printable(msg->from, 200);
	g_autofree char *auth = msg->auth ? printable(msg->auth, 200) : NULL;

	kms_log(prio, msg->qid, "%s reply from %s%s%s%s: address %s: %s",
	    purpose ? purpose : "enrollment", from, auth ? " (auth " : "", auth ? auth : "",
	    auth ? ")" : "", address ? address : "-", outcome);
}

/* Check a found CSR: DER in *DER, or the reason it was refused (g_free). */
static char *
check_csr(GBytes *raw, GBytes **der)
{
	g_autoptr(GError) e = NULL;
	X509_REQ *req;

	*der = NULL;
	req = kms_csr_parse(g_bytes_get_data(raw, NULL), g_bytes_get_size(raw), &e);
	if (req == NULL)
		return g_strdup(e ? e->message : "not a PKCS#10 request");
	*der = kms_csr_to_der(req);
	X509_REQ_free(req);
	return *der ? NULL : g_strdup("cannot encode the certificate request");
}

/* The addresses the sender may act for, or NULL with a verdict in *V. */
static char **
identities(KmsConnection *conn, KmsMessage *msg, KmsVerdict *v)
{
	KmsMilterState *st = conn->state;

	if (st->require_auth) {
		if (msg->auth == NULL || *msg->auth == '\0') {
			log_reply(LOG_NOTICE, msg, NULL, NULL, "refused: not authenticated");
			*v = reject(msg, "550", "5.7.0", "authentication required: send your reply"
			    " over an authenticated SMTP session");
			return NULL;
		}
		if (st->auth_map_error) {
			log_reply(LOG_ERR, msg, NULL, NULL, "deferred: [enrollment] auth_map unreadable");
			*v = KMS_VERDICT_TEMPFAIL;
			return NULL;
		}
		return kms_state_auth_identities(st, msg->auth);
	} else {
		char *self = kms_address_normalize(msg->from, -1);
		char **ids = g_new0(char *, 2);

		ids[0] = self;
		return ids;
	}
}

static KmsVerdict
verdict(KmsConnection *conn, KmsMessage *msg, KmsReplyStatus s, const KmsReplyResult *res,
    const char *csr_error, const GError *e)
{
	const char *addr = res->address, *purpose = res->purpose;
	g_autofree char *why = NULL;

	switch (s) {
	case KMS_REPLY_OK:
		why = g_strdup_printf("token accepted, %s request %" G_GINT64_FORMAT " queued%s",
		    purpose, res->request_id, res->with_csr ? " with a certificate request" : "");
		log_reply(LOG_INFO, msg, addr, purpose, why);
		return KMS_VERDICT_ACCEPT;
	case KMS_REPLY_RETRY:
	case KMS_REPLY_ERROR:
		why = g_strdup_printf("deferred: %s", e ? e->message : kms_reply_status_name(s));
		log_reply(LOG_ERR, msg, addr, purpose, why);
		return KMS_VERDICT_TEMPFAIL;
	case KMS_REPLY_BAD_CSR:
		why = g_strdup_printf("refused: certificate request: %s", csr_error);
		log_reply(LOG_NOTICE, msg, addr, purpose, why);
		g_free(why);
		why = g_strdup_printf("certificate request refused: %s (the token was not used;"
		    " send a valid request or none)", csr_error);
		return reject(msg, "550", "5.7.0", why);
	default:
		break;
	}
	why = g_strdup_printf("refused: %s", kms_reply_status_name(s));
	log_reply(LOG_NOTICE, msg, addr, purpose, why);
	switch (s) {
	case KMS_REPLY_WRONG_SENDER:
		return reject(msg, "550", "5.7.0", conn->state->require_auth ?
		    "authenticated user is not the enrolled address" :
		    "sender is not the enrolled address: reply from the address the token was sent for");
	case KMS_REPLY_LOCKED:
		return reject(msg, "550", "5.7.0", "token locked after too many attempts:"
		    " ask your administrator for a new one");
	case KMS_REPLY_EXPIRED:
		return reject(msg, "550", "5.7.0", "token expired: ask your administrator for a new one");
	case KMS_REPLY_USED:
		return reject(msg, "550", "5.7.0", "token already used or cancelled");
	case KMS_REPLY_BAD_TOKEN:
	default:
		return reject(msg, "550", "5.7.0", "token unknown: check the token you were sent");
	}
}

KmsVerdict
kms_job_reply(KmsConnection *conn, KmsMessage *msg)
{
	KmsMilterState *st = conn->state;
	Scan sc = { 0 };
	KmsReplyParams p = { 0 };
	KmsReplyResult res = { 0 };
	KmsReplyStatus s = KMS_REPLY_ERROR;
	KmsVerdict v = KMS_VERDICT_TEMPFAIL;
	g_autoptr(GError) e = NULL;
	g_autoptr(GPtrArray) cands = NULL;
	g_autoptr(GBytes) der = NULL;
	g_autofree char *csr_error = NULL, *from = NULL;
	g_auto(GStrv) ids = NULL;

	if (msg->reply_too_big || msg->oversize || !msg->headers_done) {
		g_autofree char *why = g_strdup_printf("message too large for an enrollment reply"
		    " (limit %zu bytes): send the token in a short reply", st->max_reply_size);

		log_reply(LOG_NOTICE, msg, NULL, NULL, "refused: larger than max_reply_size");
		return reject(msg, "552", "5.3.4", why);
	}
	if ((ids = identities(conn, msg, &v)) == NULL)
		return v;
	sc.max_depth = st->max_depth;
	sc.max_text = st->max_reply_size;
	sc.text = g_string_new(NULL);
	scan_message(msg, &sc);
	cands = kms_token_find(sc.text->str, sc.text->len, MAX_CANDIDATES);
	OPENSSL_cleanse(sc.text->str, sc.text->len);
	g_string_free(sc.text, TRUE);
	if (sc.csr) {
		csr_error = check_csr(sc.csr, &der);
		g_bytes_unref(sc.csr);
	}
	if (cands->len == 0) {
		log_reply(LOG_NOTICE, msg, NULL, NULL, "refused: no token found");
		return reject(msg, "550", "5.7.0", "no token found in the reply: quote the line"
		    " \"Token: ...\" of the mail you were sent");
	}

	p.candidates = cands;
	p.identities = (const char *const *)ids;
	from = kms_address_normalize(msg->from, -1);
	p.reply_from = from ? from : msg->from;
	p.auth = msg->auth;
	p.csr = der;
	p.csr_error = csr_error;
	p.queue_id = msg->qid;
	p.max_attempts = st->max_attempts;
	p.request_ttl = st->request_ttl;
	/* a connection found broken is replaced once */
	for (int attempt = 0; attempt < 2; attempt++) {
		PGconn *c;

		g_clear_error(&e);
		kms_reply_result_clear(&res);
		c = kms_db_pool_get(st->pool, &e);
		if (c == NULL)
			s = g_error_matches(e, KMS_DB_ERROR, KMS_DB_ERROR_RETRY) ||
			    g_error_matches(e, KMS_DB_ERROR, KMS_DB_ERROR_CONNECT) ?
			    KMS_REPLY_RETRY : KMS_REPLY_ERROR;
		else
			s = kms_reply_consume(c, &p, &res, &e);
		kms_db_pool_put(st->pool, c);
		if (s != KMS_REPLY_RETRY || c == NULL)
			break;
	}
	v = verdict(conn, msg, s, &res, csr_error, e);
	kms_reply_result_clear(&res);
	return v;
}
