/*
 * NAME
 *	reply - consume a token from an enrollment or recovery reply
 * DESCRIPTION
 *	kms_reply_consume() runs in kmsmilter (database role kms_milter, no
 *	vault key). Given the candidate tokens found in a reply and who sent
 *	it, it decides in one transaction: each candidate is looked up by
 *	hash (row locked), the stored hash compared in constant time, and
 *	the token checked for being pending, unexpired, not locked and bound
 *	to the sender. On success the token is marked used and an "enroll"
 *	or "recover" request is queued for kmsd, carrying the token as
 *	printed sealed to the queue key (label "p12-password", the request's
 *	id) and the signing CSR if any; the same transaction notifies
 *	kms_requests. A reply whose candidates are all unknown counts one
 *	attempt against the sender's pending tokens; a valid token from the
 *	wrong sender counts one against that token; either locks a token at
 *	max_attempts. A locked token is refused even when presented right.
 * SECURITY
 *	Tokens arrive normalised in KmsSecret buffers; the printed form is
 *	rebuilt in one and wiped. Neither a token nor its hash is ever put in
 *	an error message. Sender and AUTH login are hostile text: they reach
 *	the payload through json-glib only, made valid UTF-8 first.
 * DIAGNOSTICS
 *	KmsReplyStatus says what the sender is told. KMS_REPLY_RETRY (vault
 *	unreachable, transient failure) and KMS_REPLY_ERROR set *err.
 */
#ifndef KMS_REPLY_H
#define KMS_REPLY_H

#include <glib.h>
#include <libpq-fe.h>

typedef enum {
	KMS_REPLY_OK,		/* token consumed, request queued */
	KMS_REPLY_WRONG_SENDER,	/* valid token, sender not its address */
	KMS_REPLY_LOCKED,	/* too many attempts */
	KMS_REPLY_EXPIRED,
	KMS_REPLY_USED,		/* already used, or cancelled by a newer one */
	KMS_REPLY_BAD_TOKEN,	/* no candidate is a token of the vault */
	KMS_REPLY_BAD_CSR,	/* valid token but the CSR was refused: not consumed */
	KMS_REPLY_RETRY,	/* vault unreachable: try again later (*err) */
	KMS_REPLY_ERROR,	/* anything else (*err) */
} KmsReplyStatus;

typedef struct {
	GPtrArray *candidates;		/* of KmsSecret: normalised tokens (borrowed) */
	const char *const *identities;	/* addresses the sender may act for (NULL-terminated) */
	const char *reply_from;		/* envelope sender, for the payload */
	const char *auth;		/* SMTP AUTH login, or NULL */
	GBytes *csr;			/* DER of a checked CSR, or NULL */
	const char *csr_error;		/* why the CSR sent was refused, or NULL */
	const char *queue_id;		/* the MTA's queue id */
	gint64 max_attempts;		/* [enrollment] max_attempts */
	gint64 request_ttl;		/* [kms] request_ttl, seconds */
} KmsReplyParams;

typedef struct {
	char *address;		/* the token's address when a token matched (g_free) */
	char *purpose;		/* "enroll" or "recover" when a token matched (g_free) */
	gint64 request_id;	/* the queued request on KMS_REPLY_OK */
	gboolean with_csr;	/* the request carries the CSR */
} KmsReplyResult;

/* Check and consume, in its own transaction on C (which must be idle).
 * *RES is filled as far as known; release with kms_reply_result_clear. */
KmsReplyStatus kms_reply_consume(PGconn *c, const KmsReplyParams *p, KmsReplyResult *res,
    GError **err);
void kms_reply_result_clear(KmsReplyResult *res);

/* A short name of S for log lines ("ok", "bad token", ...). Static. */
const char *kms_reply_status_name(KmsReplyStatus s);

#endif
