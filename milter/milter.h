/*
 * NAME
 *	milter - kmsmilter's connection and message contexts, and its jobs
 * DESCRIPTION
 *	callbacks.c collects what libmilter hands over into these contexts
 *	and, at end of message, runs one function per job. Jobs return a
 *	KmsVerdict; kms_verdict_to_sfsistat() is the one place it becomes a
 *	libmilter status.
 * SECURITY
 *	Everything in a KmsMessage is hostile input.
 */
#ifndef KMS_MILTER_H
#define KMS_MILTER_H

#include <glib.h>
#include <libmilter/mfapi.h>

#include "milter/spool.h"
#include "milter/state.h"

typedef enum {
	KMS_VERDICT_ACCEPT,	/* deliver as it is */
	KMS_VERDICT_TEMPFAIL,	/* 451 4.3.0: try again later */
	KMS_VERDICT_REJECT,	/* KmsMessage.reply_code/xcode/text */
	KMS_VERDICT_DISCARD,	/* accept and deliver to nobody */
} KmsVerdict;

typedef struct {
	char *qid;		/* MTA queue id, "NOQUEUE" until known */
	char *from;		/* envelope sender */
	char *content_type;	/* top-level Content-Type value */
	KmsSpool *spool;	/* headers, blank line, body (CRLF) */
	gboolean headers_done;
	gboolean oversize;
	gboolean smime_hint;	/* "pkcs7" seen in a header or the body */
	guint8 tail[4];		/* last bytes of the previous body chunk */
	gsize tail_len;
	/* enrollment and recovery replies */
	char *auth;		/* {auth_authen} at MAIL FROM, or NULL */
	guint rcpts;		/* envelope recipients seen */
	GPtrArray *enroll_rcpts;/* recipients that are the enroll address, as the MTA wrote them */
	gsize size;		/* header and body bytes seen */
	gboolean reply_too_big;	/* a reply over [enrollment] max_reply_size */
	/* a REJECT verdict's SMTP reply (static code strings, text g_free) */
	const char *reply_code, *reply_xcode;
	char *reply_text;
} KmsMessage;

typedef struct {
	KmsMilterState *state;	/* configuration snapshot for this connection */
	char *client;		/* host name the MTA gave */
	unsigned long noreply;	/* SMFIP_NR_* the MTA agreed to */
	KmsMessage *msg;
} KmsConnection;

/* The callback table for smfi_register. */
extern struct smfiDesc kms_milter_desc;

/* harvestjob.c: harvest certificates from the message (modifies nothing). */
KmsVerdict kms_job_harvest(KmsConnection *conn, KmsMessage *msg);

/* replyjob.c: consume the token of a message sent to the enroll address.
 * ACCEPT means the token was consumed and the caller removes the enroll
 * recipients; REJECT and TEMPFAIL refuse the whole message. */
KmsVerdict kms_job_reply(KmsConnection *conn, KmsMessage *msg);

#endif
