/*
 * NAME
 *	mailer - build a MIME message and submit it to the MTA over SMTP
 * DESCRIPTION
 *	kms_mail_build() writes an RFC 5322 / MIME message with CRLF line
 *	ends and no line over 998 octets: Date, From, To, Subject,
 *	Message-ID <random@domain-of-from>, MIME-Version, the caller's extra
 *	headers, then multipart/mixed with a text/plain; charset=utf-8 part
 *	(7bit when the text is ASCII with short lines, else quoted-printable)
 *	and, when given, a base64 attachment. Non-ASCII subjects (and ASCII
 *	ones that look like encoded words) are RFC 2047 encoded words.
 *	kms_mail_submit() hands a built message to the MTA with libcurl
 *	(smtp:// or smtps://, connect timeout 10 s, total 60 s, no signals:
 *	safe in threads); kms_mail_send() does both. By default each
 *	submission has its own connection (connect, EHLO, ..., QUIT); a
 *	KmsMailConnection in KmsMailer.keep keeps it open for the next one
 *	instead (one idle over 20 s is not reused: MTAs drop idle
 *	clients); a kept connection the server has closed meanwhile is
 *	replaced without the caller noticing and without sending any
 *	message twice.
 * SECURITY
 *	No header is ever built from unchecked text: line breaks in an
 *	address, the subject, the attachment's name or type are refused as
 *	header injection; extra headers must be well-formed lines and cannot
 *	replace the headers set here. A user name and password in the URL
 *	never appear in error messages. The message may carry a PKCS#12 file:
 *	it is the caller's to protect; this module keeps no copy.
 * DIAGNOSTICS
 *	GError in KMS_MAILER_ERROR, one line. Submission failures name the
 *	server (URL without credentials), curl's error and the SMTP reply
 *	code when there was one: "cannot send mail via smtp://127.0.0.1:25:
 *	Failed sending data to the peer: ... (SMTP 552)".
 */
#ifndef KMS_MAILER_H
#define KMS_MAILER_H

#include <glib.h>

#define KMS_MAILER_ERROR (kms_mailer_error_quark())
GQuark kms_mailer_error_quark(void);

typedef enum {
	KMS_MAILER_ERROR_INVALID,	/* refused input: injection, bad address, not UTF-8 */
	KMS_MAILER_ERROR_SEND,		/* the SMTP submission failed */
} KmsMailerError;

/* An SMTP connection kept open between submissions; opaque. */
typedef struct KmsMailConnection KmsMailConnection;

typedef struct {
	const char *url;	/* smtp://host:port or smtps://host:port */
	const char *from;	/* envelope sender and From: header (bare address) */
	/* when non-NULL (borrowed), the SMTP connection is kept open between
	 * submissions through it; one thread at a time. NULL: a connection
	 * per submission */
	KmsMailConnection *keep;
} KmsMailer;

/* A connection to keep, not yet connected (the first submission through
 * it connects); the caller frees it with kms_mail_connection_free(). */
KmsMailConnection *kms_mail_connection_new(void);
/* Close KC's connection, if open, politely (QUIT, its reply awaited for 5 s
 * at most); KC stays usable, and the next submission connects again. */
void kms_mail_connection_close(KmsMailConnection *kc);
/* Close KC's connection, if open, politely (QUIT) and free KC (NULL is
 * fine); returns NULL. */
KmsMailConnection *kms_mail_connection_free(KmsMailConnection *kc);

/* The message for TO (bare address), as bytes ready to submit. SUBJECT and
 * BODY_TEXT are UTF-8 (any line ends). ATTACHMENT may be NULL; then NAME
 * and TYPE are ignored (TYPE NULL: application/octet-stream).
 * EXTRA_HEADERS is NULL or complete header lines ("Reply-To: x@y\r\n").
 * *MESSAGE_ID_OUT (if not NULL) receives "<...@domain>" (g_free). */
GBytes *kms_mail_build(const char *from, const char *to, const char *subject,
    const char *body_text, const char *attachment_name, const char *attachment_type,
    GBytes *attachment, const char *extra_headers, char **message_id_out, GError **err);

/* Submit MESSAGE (from kms_mail_build) from M->from to TO at M->url. */
gboolean kms_mail_submit(const KmsMailer *m, const char *to, GBytes *message, GError **err);

/* Submit MESSAGE (any RFC 5322 bytes, CRLF) to the N bare addresses TO in
 * one transaction; M->from NULL or "" is the null sender <>. */
gboolean kms_mail_submit_many(const KmsMailer *m, const char *const *to, gsize n,
    GBytes *message, GError **err);

/* kms_mail_build, then kms_mail_submit. */
gboolean kms_mail_send(const KmsMailer *m, const char *to, const char *subject,
    const char *body_text, const char *attachment_name, const char *attachment_type,
    GBytes *attachment, const char *extra_headers, char **message_id_out, GError **err);

#endif
