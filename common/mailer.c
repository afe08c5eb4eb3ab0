/*
 * NAME
 *	mailer - MIME message building and SMTP submission (see mailer.h)
 * DESCRIPTION
 *	The message is written by hand rather than with GMime so that every
 *	byte is known: CRLF everywhere, folded or encoded headers under 78
 *	columns, quoted-printable and base64 lines of 76. libcurl does the
 *	SMTP dialogue, including dot-stuffing.
 * SECURITY
 *	Every header value is checked before it is written; see mailer.h.
 */
#include "autoconfig.h"
#include "mailer.h"

#include <stdarg.h>
#include <string.h>

#include <curl/curl.h>

#include "common/secret.h"

G_DEFINE_QUARK(kms-mailer-error-quark, kms_mailer_error)

#define LINE_OCTETS_MAX 998	/* RFC 5322 2.1.1 */
#define FOLD_AT 78		/* RFC 5322: lines SHOULD be no longer */
#define QP_LINE 76		/* RFC 2045 6.7 */
#define B64_LINE 76		/* RFC 2045 6.8 */
#define EW_BYTES 39		/* UTF-8 bytes per encoded word: 52 base64 chars */
#define ADDRESS_MAX 320
#define NAME_MAX_LEN 200
#define SHOWN_MAX 80		/* bytes of a refused value quoted in a message */

#define CONNECT_TIMEOUT 10L
#define TOTAL_TIMEOUT 60L
#define KEEP_IDLE_MAX 20L	/* s; MTAs drop idle clients (Postfix: 300 s, 10 s under stress) */

/* Headers set here that extra headers may not repeat. */
static const char *const reserved_headers[] = {
	"From", "To", "Cc", "Bcc", "Subject", "Date", "Message-ID", "MIME-Version",
	"Sender", "Return-Path", "Auto-Submitted", NULL,
};

/* Set a KMS_MAILER_ERROR_INVALID error; returns FALSE. */
static gboolean G_GNUC_PRINTF(2, 3)
invalid(GError **err, const char *fmt, ...)
{
	g_autofree char *msg = NULL;
	va_list ap;

	va_start(ap, fmt);
	msg = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	g_set_error_literal(err, KMS_MAILER_ERROR, KMS_MAILER_ERROR_INVALID, msg);
	return FALSE;
}

/* S escaped (C-style) and cut to SHOWN_MAX bytes, for an error message. */
static char *
shown(const char *s)
{
	g_autofree char *cut = g_strndup(s, SHOWN_MAX);

	return g_strescape(cut, NULL);
}

/* TRUE when S is a bare ASCII address usable in a header and in MAIL FROM
 * or RCPT TO; WHAT names it in the error. */
static gboolean
check_address(const char *what, const char *s, GError **err)
{
	const char *p, *at;

	if (s == NULL || *s == '\0')
		return invalid(err, "no %s address", what);
	if (strpbrk(s, "\r\n") != NULL) {
		g_autofree char *x = shown(s);

		return invalid(err, "line break in the %s address \"%s\" refused (header injection)",
		    what, x);
	}
	for (p = s; *p != '\0'; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f
		    || strchr("<>()[],;:\"\\", *p) != NULL)
			break;
	at = strrchr(s, '@');
	if (*p != '\0' || strlen(s) > ADDRESS_MAX || at == NULL || at == s || at[1] == '\0'
	    || strchr(s, '@') != at) {
		g_autofree char *x = shown(s);

		return invalid(err, "invalid %s address \"%s\": want a bare address such as "
		    "alice@example.org", what, x);
	}
	return TRUE;
}

/* TRUE when S is UTF-8 text for one header line: no line break (header
 * injection), no other control character but tab. */
static gboolean
check_header_text(const char *what, const char *s, GError **err)
{
	const char *p;

	if (!g_utf8_validate(s, -1, NULL))
		return invalid(err, "the %s is not UTF-8", what);
	if (strpbrk(s, "\r\n") != NULL)
		return invalid(err, "line break in the %s refused (header injection)", what);
	for (p = s; *p != '\0'; p++)
		if (((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f)
			return invalid(err, "control character in the %s refused", what);
	return TRUE;
}

/* TRUE when S is type/subtype, both RFC 2045 tokens. */
static gboolean
mime_type_ok(const char *s)
{
	const char *slash = strchr(s, '/'), *p;

	if (slash == NULL || slash == s || slash[1] == '\0')
		return FALSE;
	for (p = s; *p != '\0'; p++)
		if (p != slash && !g_ascii_isalnum(*p) && strchr("!#$&^_.+-", *p) == NULL)
			return FALSE;
	return TRUE;
}

/* LEN random bytes as lower-case hex appended to OUT. */
static gboolean
append_random_hex(GString *out, gsize len, GError **err)
{
	guint8 buf[32];
	gsize i;

	g_assert(len <= sizeof(buf));
	if (!kms_random(buf, len, err))
		return FALSE;
	for (i = 0; i < len; i++)
		g_string_append_printf(out, "%02x", buf[i]);
	return TRUE;
}

/* "Date: " with the local time in RFC 5322 form (English names, numeric
 * zone), independent of the locale. */
static void
append_date(GString *out)
{
	static const char *const days[] = { "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun" };
	static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
		"Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	g_autoptr(GDateTime) now = g_date_time_new_now_local();
	gint64 off = g_date_time_get_utc_offset(now) / G_TIME_SPAN_MINUTE;
	char sign = off < 0 ? '-' : '+';

	if (off < 0)
		off = -off;
	g_string_append_printf(out, "Date: %s, %02d %s %04d %02d:%02d:%02d %c%02d%02d\r\n",
	    days[g_date_time_get_day_of_week(now) - 1], g_date_time_get_day_of_month(now),
	    months[g_date_time_get_month(now) - 1], g_date_time_get_year(now),
	    g_date_time_get_hour(now), g_date_time_get_minute(now),
	    g_date_time_get_second(now), sign, (int)(off / 60), (int)(off % 60));
}

/* "Subject: S" as RFC 2047 encoded words of whole UTF-8 characters, one
 * per line (decoders ignore the folding white space between them). */
static void
append_encoded_subject(GString *out, const char *s)
{
	const char *p = s, *q, *next, *end = s + strlen(s);

	g_string_append(out, "Subject:");
	while (p < end) {
		g_autofree char *b64 = NULL;

		for (q = p; q < end; q = next) {
			next = g_utf8_next_char(q);
			if (next - p > EW_BYTES)
				break;
		}
		b64 = g_base64_encode((const guchar *)p, (gsize)(q - p));
		g_string_append_printf(out, "%s=?UTF-8?B?%s?=", p == s ? " " : "\r\n ", b64);
		p = q;
	}
	g_string_append(out, "\r\n");
}

/* "Subject: S" for printable ASCII, folded before white space to stay
 * within FOLD_AT columns where words allow. FALSE (OUT partly written)
 * when a word is too long for any line. */
static gboolean
append_folded_subject(GString *out, const char *s)
{
	const char *p = s, *seg;
	gsize col = strlen("Subject: ");
	gboolean word;

	g_string_append(out, "Subject: ");
	while (*p != '\0') {
		seg = p;
		while (*p == ' ' || *p == '\t')
			p++;
		word = *p != '\0';
		while (*p != '\0' && *p != ' ' && *p != '\t')
			p++;
		if (col + (gsize)(p - seg) > FOLD_AT && seg > s && word) {
			g_string_append(out, "\r\n");
			col = 0;
		}
		g_string_append_len(out, seg, p - seg);
		col += (gsize)(p - seg);
		if (col > LINE_OCTETS_MAX)
			return FALSE;
	}
	g_string_append(out, "\r\n");
	return TRUE;
}

/* The Subject header: plain and folded when ASCII, else encoded words.
 * ASCII text holding "=?" is encoded too, so it reads back as written. */
static void
append_subject(GString *out, const char *s)
{
	gsize start = out->len;
	const char *p;

	for (p = s; *p != '\0'; p++)
		if ((unsigned char)*p >= 0x80)
			break;
	if (*p == '\0' && strstr(s, "=?") == NULL && append_folded_subject(out, s))
		return;
	g_string_truncate(out, start);
	append_encoded_subject(out, s);
}

/* Check the caller's extra header lines and append them with CRLF ends. */
static gboolean
append_extra_headers(GString *out, const char *extra, GError **err)
{
	g_auto(GStrv) lines = NULL;
	gboolean seen = FALSE;
	gsize i, k, n;
	const char *colon, *p;

	if (extra == NULL)
		return TRUE;
	lines = g_strsplit(extra, "\n", -1);
	for (i = 0; lines[i] != NULL; i++) {
		char *l = lines[i];

		n = strlen(l);
		if (n > 0 && l[n - 1] == '\r')
			l[--n] = '\0';
		if (n == 0 && lines[i + 1] == NULL)
			break;
		if (n == 0)
			return invalid(err, "blank line in the extra headers refused (header injection)");
		if (strchr(l, '\r') != NULL)
			return invalid(err, "line break in an extra header refused (header injection)");
		for (p = l; *p != '\0'; p++)
			if (((unsigned char)*p < 0x20 && *p != '\t') || (unsigned char)*p >= 0x7f)
				return invalid(err, "extra header line %zu is not printable ASCII", i + 1);
		if (n > LINE_OCTETS_MAX)
			return invalid(err, "extra header line %zu is longer than %d octets",
			    i + 1, LINE_OCTETS_MAX);
		if (l[0] == ' ' || l[0] == '\t') {
			if (!seen)
				return invalid(err, "extra headers start with a continuation line");
		} else {
			colon = strchr(l, ':');
			if (colon == NULL || colon == l || strcspn(l, " \t") < (gsize)(colon - l))
				return invalid(err, "extra header line %zu is not \"Name: value\"", i + 1);
			for (k = 0; reserved_headers[k] != NULL; k++)
				if (strlen(reserved_headers[k]) == (gsize)(colon - l)
				    && g_ascii_strncasecmp(l, reserved_headers[k], (gsize)(colon - l)) == 0)
					break;
			if (reserved_headers[k] != NULL || g_ascii_strncasecmp(l, "Content-", 8) == 0)
				return invalid(err, "extra header \"%.*s\" refused: the mailer sets it",
				    (int)MIN(colon - l, SHOWN_MAX), l);
			seen = TRUE;
		}
		g_string_append(out, l);
		g_string_append(out, "\r\n");
	}
	return TRUE;
}

/* S with every line end (CRLF, LF or a lone CR) as CRLF. */
static GString *
crlf_text(const char *s)
{
	GString *o = g_string_sized_new(strlen(s) + strlen(s) / 32 + 2);
	const char *p;

	for (p = s; *p != '\0'; p++) {
		if (*p == '\r' || *p == '\n') {
			g_string_append(o, "\r\n");
			if (p[0] == '\r' && p[1] == '\n')
				p++;
		} else
			g_string_append_c(o, *p);
	}
	return o;
}

/* TRUE when CRLF text T may go as 7bit: ASCII, lines within the limit. */
static gboolean
is_7bit(const GString *t)
{
	gsize i, col = 0;

	for (i = 0; i < t->len; i++) {
		if ((unsigned char)t->str[i] >= 0x80)
			return FALSE;
		if (t->str[i] == '\r') {
			i++;
			col = 0;
		} else if (++col > LINE_OCTETS_MAX)
			return FALSE;
	}
	return TRUE;
}

/* CRLF text T as quoted-printable (RFC 2045 6.7): hard line breaks kept,
 * soft breaks keep lines within QP_LINE, trailing blanks encoded. */
static void
append_qp(GString *out, const GString *t)
{
	gsize i, col = 0, plen;
	gboolean enc, at_eol;

	for (i = 0; i < t->len; i++) {
		unsigned char c = (unsigned char)t->str[i];

		if (c == '\r') {
			g_string_append(out, "\r\n");
			i++;
			col = 0;
			continue;
		}
		at_eol = i + 1 == t->len || t->str[i + 1] == '\r';
		enc = c == '=' || c >= 0x7f || (c < 0x20 && c != '\t')
		    || ((c == ' ' || c == '\t') && at_eol);
		plen = enc ? 3 : 1;
		if (col + plen > QP_LINE - 1) {
			g_string_append(out, "=\r\n");
			col = 0;
		}
		if (enc)
			g_string_append_printf(out, "=%02X", c);
		else
			g_string_append_c(out, (char)c);
		col += plen;
	}
}

/* DATA as base64 lines of B64_LINE, CRLF between lines. */
static void
append_base64(GString *out, GBytes *data)
{
	gsize len, off, blen;
	const guchar *d = g_bytes_get_data(data, &len);
	g_autofree char *b64 = g_base64_encode(d, len);

	blen = strlen(b64);
	for (off = 0; off < blen; off += B64_LINE) {
		if (off > 0)
			g_string_append(out, "\r\n");
		g_string_append_len(out, b64 + off, (gssize)MIN(B64_LINE, blen - off));
	}
}

/* TRUE when NAME is a file name that can be quoted in a header as is. */
static gboolean
plain_file_name(const char *name)
{
	const char *p;

	if (*name == '\0' || strlen(name) > NAME_MAX_LEN)
		return FALSE;
	for (p = name; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f || *p == '"' || *p == '\\')
			return FALSE;
	return TRUE;
}

/* Check everything kms_mail_build() writes into headers. TYPE is NULL
 * without an attachment; else *TYPE NULL becomes application/octet-stream. */
static gboolean
check_inputs(const char *from, const char *to, const char *subject, const char *body_text,
    const char *name, const char **type, GError **err)
{
	if (!check_address("From", from, err) || !check_address("To", to, err))
		return FALSE;
	if (subject == NULL)
		return invalid(err, "no subject");
	if (!check_header_text("subject", subject, err))
		return FALSE;
	if (body_text == NULL || !g_utf8_validate(body_text, -1, NULL))
		return invalid(err, "the body text is missing or not UTF-8");
	if (type == NULL)
		return TRUE;
	if (*type == NULL)
		*type = "application/octet-stream";
	if (name == NULL)
		return invalid(err, "the attachment has no file name");
	if (strpbrk(name, "\r\n") != NULL)
		return invalid(err, "line break in the attachment name refused (header injection)");
	if (!plain_file_name(name))
		return invalid(err, "the attachment name must be 1 to %d printable ASCII "
		    "characters without quotes or backslashes", NAME_MAX_LEN);
	if (!mime_type_ok(*type)) {
		g_autofree char *x = shown(*type);

		return invalid(err, "invalid attachment type \"%s\": want type/subtype", x);
	}
	return TRUE;
}

GBytes *
kms_mail_build(const char *from, const char *to, const char *subject,
    const char *body_text, const char *attachment_name, const char *attachment_type,
    GBytes *attachment, const char *extra_headers, char **message_id_out, GError **err)
{
	g_autoptr(GString) msg = NULL;
	g_autoptr(GString) text = NULL;
	g_autoptr(GString) part = NULL;
	g_autoptr(GString) msgid = NULL;
	g_autoptr(GString) boundary = NULL;
	gboolean seven;

	if (!check_inputs(from, to, subject, body_text, attachment_name,
	    attachment != NULL ? &attachment_type : NULL, err))
		return NULL;

	/* the text part, encoded before the boundary is chosen */
	text = crlf_text(body_text);
	seven = is_7bit(text);
	part = g_string_sized_new(text->len + text->len / 8 + 64);
	g_string_append_printf(part, "Content-Type: text/plain; charset=utf-8\r\n"
	    "Content-Transfer-Encoding: %s\r\n\r\n", seven ? "7bit" : "quoted-printable");
	if (seven)
		g_string_append_len(part, text->str, (gssize)text->len);
	else
		append_qp(part, text);
	/* "=_" never occurs in quoted-printable or base64; in 7bit text the
	 * random boundary is checked anyway */
	boundary = g_string_new(NULL);
	do {
		g_string_assign(boundary, "=_kms_");
		if (!append_random_hex(boundary, 12, err))
			return NULL;
	} while (strstr(part->str, boundary->str) != NULL);

	msgid = g_string_new("<");
	if (!append_random_hex(msgid, 16, err))
		return NULL;
	g_string_append_printf(msgid, "@%s>", strrchr(from, '@') + 1);

	/* room for the base64 with its line ends: no copy left behind by growth */
	msg = g_string_sized_new(part->len + 2048
	    + (attachment != NULL ? g_bytes_get_size(attachment) / 10 * 14 + 16 : 0));
	append_date(msg);
	g_string_append_printf(msg, "From: %s\r\nTo: %s\r\n", from, to);
	append_subject(msg, subject);
	g_string_append_printf(msg, "Message-ID: %s\r\nMIME-Version: 1.0\r\n"
	    "Auto-Submitted: auto-generated\r\n", msgid->str);
	if (!append_extra_headers(msg, extra_headers, err))
		return NULL;
	g_string_append_printf(msg, "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n"
	    "This is a multi-part message in MIME format.\r\n--%s\r\n",
	    boundary->str, boundary->str);
	g_string_append_len(msg, part->str, (gssize)part->len);
	if (attachment != NULL) {
		g_string_append_printf(msg, "\r\n--%s\r\n"
		    "Content-Type: %s; name=\"%s\"\r\n"
		    "Content-Transfer-Encoding: base64\r\n"
		    "Content-Disposition: attachment; filename=\"%s\"\r\n\r\n",
		    boundary->str, attachment_type, attachment_name, attachment_name);
		append_base64(msg, attachment);
	}
	g_string_append_printf(msg, "\r\n--%s--\r\n", boundary->str);

	if (message_id_out != NULL)
		*message_id_out = g_string_free(g_steal_pointer(&msgid), FALSE);
	return g_string_free_to_bytes(g_steal_pointer(&msg));
}

/* --- submission ------------------------------------------------------------ */

/* The message being uploaded by curl's read callback. */
typedef struct {
	const guint8 *data;
	gsize len;
	gsize pos;
	gboolean asked;		/* curl asked for the message (DATA was accepted): set
				 * before any byte of it goes */
} Upload;

/* A kept connection lives in the connection cache of its easy handle. */
struct KmsMailConnection {
	CURL *c;		/* NULL until the first submission */
};

/* CURLOPT_READFUNCTION: the next piece of the message. */
static size_t
upload_read(char *buf, size_t size, size_t nitems, void *userp)
{
	Upload *u = userp;
	size_t n = MIN(size * nitems, u->len - u->pos);

	u->asked = TRUE;
	memcpy(buf, u->data + u->pos, n);
	u->pos += n;
	return n;
}

/* curl_global_init, once per process (not thread-safe by itself). */
static gpointer
curl_init_once(gpointer unused)
{
	return GINT_TO_POINTER((int)curl_global_init(CURL_GLOBAL_DEFAULT));
}

KmsMailConnection *
kms_mail_connection_new(void)
{
	/* the handle waits for the first submission, after curl_global_init */
	return g_new0(KmsMailConnection, 1);
}

/* Seconds to wait for the reply to QUIT when a kept connection closes
 * (curl's own default is 120 s, and its total timeout does not apply). */
#define QUIT_TIMEOUT 5L

void
kms_mail_connection_close(KmsMailConnection *kc)
{
	if (kc == NULL || kc->c == NULL)
		return;
	curl_easy_setopt(kc->c, CURLOPT_SERVER_RESPONSE_TIMEOUT, QUIT_TIMEOUT);
	curl_easy_cleanup(kc->c);	/* QUIT on a connection still open */
	kc->c = NULL;
}

KmsMailConnection *
kms_mail_connection_free(KmsMailConnection *kc)
{
	if (kc == NULL)
		return NULL;
	kms_mail_connection_close(kc);
	g_free(kc);
	return NULL;
}

/* KC's handle, made on first use, with the last submission's options gone
 * but its connection kept (curl_easy_reset keeps live connections). */
static CURL *
kept_handle(KmsMailConnection *kc)
{
	if (kc->c == NULL)
		kc->c = curl_easy_init();
	else
		curl_easy_reset(kc->c);
	return kc->c;
}

/* TRUE when transfer RC failed as one does on a kept connection the server
 * closed meanwhile (a race with curl's check that it is still alive),
 * before curl asked for any of the message U: the server cannot have it,
 * so one more try on a new connection cannot deliver it twice. */
static gboolean
stale_connection(CURL *c, CURLcode rc, const Upload *u)
{
	long connects = -1;

	if (rc != CURLE_SEND_ERROR && rc != CURLE_RECV_ERROR && rc != CURLE_GOT_NOTHING)
		return FALSE;
	/* 0: no new connection for this transfer, so it used a kept one */
	if (curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &connects) != CURLE_OK || connects != 0)
		return FALSE;
	return !u->asked;
}

/* URL without any "user:password@" (all up to the last '@' goes, so a
 * password holding '/' or '@' cannot show), escaped, for messages. */
static char *
url_shown(const char *url)
{
	const char *host = strstr(url, "://"), *at = strrchr(url, '@');
	g_autofree char *plain = NULL;

	host = host != NULL ? host + 3 : url;
	if (at == NULL || at < host)
		plain = g_strdup(url);
	else
		plain = g_strdup_printf("%.*s%s", (int)(host - url), url, at + 1);
	return g_strescape(plain, NULL);
}

gboolean
kms_mail_submit(const KmsMailer *m, const char *to, GBytes *message, GError **err)
{
	g_return_val_if_fail(m != NULL && m->from != NULL, FALSE);
	if (!check_address("From", m->from, err))
		return FALSE;
	return kms_mail_submit_many(m, &to, 1, message, err);
}

gboolean
kms_mail_submit_many(const KmsMailer *m, const char *const *to, gsize n, GBytes *message,
    GError **err)
{
	static GOnce once = G_ONCE_INIT;
	g_autofree char *where = NULL;
	g_autofree char *from_arg = NULL;
	char detail[CURL_ERROR_SIZE] = "", *p;
	struct curl_slist *rcpt = NULL;
	Upload up = { 0 };
	CURLcode rc;
	CURL *c;
	long code = 0;

	g_return_val_if_fail(m != NULL && m->url != NULL && message != NULL, FALSE);
	if (m->from != NULL && *m->from != '\0' && !check_address("From", m->from, err))
		return FALSE;
	if (n == 0)
		return invalid(err, "no To address");
	for (gsize i = 0; i < n; i++)
		if (!check_address("To", to[i], err))
			return FALSE;
	where = url_shown(m->url);
	if (g_ascii_strncasecmp(m->url, "smtp://", 7) != 0
	    && g_ascii_strncasecmp(m->url, "smtps://", 8) != 0)
		return invalid(err, "mail submission URL %s: want smtp://host:port or "
		    "smtps://host:port", where);
	if (GPOINTER_TO_INT(g_once(&once, curl_init_once, NULL)) != CURLE_OK
	    || (c = m->keep != NULL ? kept_handle(m->keep) : curl_easy_init()) == NULL) {
		g_set_error(err, KMS_MAILER_ERROR, KMS_MAILER_ERROR_SEND,
		    "cannot send mail via %s: libcurl failed to initialise", where);
		return FALSE;
	}
	from_arg = g_strdup_printf("<%s>", m->from ? m->from : "");
	for (gsize i = 0; i < n; i++) {
		g_autofree char *to_arg = g_strdup_printf("<%s>", to[i]);

		rcpt = curl_slist_append(rcpt, to_arg);
	}
	up.data = g_bytes_get_data(message, &up.len);

	curl_easy_setopt(c, CURLOPT_URL, m->url);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
#else
	curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_SMTP | CURLPROTO_SMTPS));
#endif
	curl_easy_setopt(c, CURLOPT_MAIL_FROM, from_arg);
	curl_easy_setopt(c, CURLOPT_MAIL_RCPT, rcpt);
	curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(c, CURLOPT_READFUNCTION, upload_read);
	curl_easy_setopt(c, CURLOPT_READDATA, &up);
	curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)up.len);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, TOTAL_TIMEOUT);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, detail);
#if LIBCURL_VERSION_NUM >= 0x074100
	if (m->keep != NULL)
		curl_easy_setopt(c, CURLOPT_MAXAGE_CONN, KEEP_IDLE_MAX);
#endif

	rc = curl_easy_perform(c);
	if (m->keep != NULL && stale_connection(c, rc, &up)) {
		detail[0] = '\0';
		curl_easy_setopt(c, CURLOPT_FRESH_CONNECT, 1L);
		rc = curl_easy_perform(c);
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	if (m->keep != NULL)
		curl_easy_reset(c);	/* the handle outlives DETAIL, UP and RCPT */
	else
		curl_easy_cleanup(c);
	curl_slist_free_all(rcpt);
	if (rc == CURLE_OK)
		return TRUE;

	for (p = detail; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	g_strstrip(detail);
	{
		const char *what = curl_easy_strerror(rc);
		g_autofree char *smtp = code > 0 ? g_strdup_printf(" (SMTP %ld)", code) : g_strdup("");

		/* curl's detail usually repeats its error string: say it once */
		if (*detail != '\0' && strstr(detail, what) == NULL)
			g_set_error(err, KMS_MAILER_ERROR, KMS_MAILER_ERROR_SEND,
			    "cannot send mail via %s: %s: %s%s", where, what, detail, smtp);
		else
			g_set_error(err, KMS_MAILER_ERROR, KMS_MAILER_ERROR_SEND,
			    "cannot send mail via %s: %s%s", where, *detail ? detail : what, smtp);
	}
	return FALSE;
}

gboolean
kms_mail_send(const KmsMailer *m, const char *to, const char *subject,
    const char *body_text, const char *attachment_name, const char *attachment_type,
    GBytes *attachment, const char *extra_headers, char **message_id_out, GError **err)
{
	g_autoptr(GBytes) msg = NULL;
	g_autofree char *msgid = NULL;

	g_return_val_if_fail(m != NULL, FALSE);
	msg = kms_mail_build(m->from, to, subject, body_text, attachment_name, attachment_type,
	    attachment, extra_headers, &msgid, err);
	if (msg == NULL || !kms_mail_submit(m, to, msg, err))
		return FALSE;
	if (message_id_out != NULL)
		*message_id_out = g_steal_pointer(&msgid);
	return TRUE;
}
