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
	/* outbound encryption */
	GPtrArray *rcpt_list;	/* every envelope recipient, as the MTA wrote it */
	GPtrArray *hdr_names;	/* header fields in order (char *) */
	GPtrArray *hdr_values;	/* their values as the MTA gave them */
	gsize body_offset;	/* where the body starts in the spool */
	gboolean trigger_seen;	/* [policy] header or subject_tag present */
	gboolean may_encrypt;	/* decided at end of headers: examine at the end */
	/* a REJECT verdict's SMTP reply (static code strings, text g_free) */
	const char *reply_code, *reply_xcode;
	char *reply_text;
} KmsMessage;

typedef struct {
	KmsMilterState *state;	/* configuration snapshot for this connection */
	char *client;		/* host name the MTA gave */
	unsigned long noreply;	/* SMFIP_NR_* the MTA agreed to */
	unsigned long actions;	/* SMFIF_* the MTA allows */
	gboolean leadspc;	/* SMFIP_HDR_LEADSPC: values keep their leading space */
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

/* encryptjob.c: encrypt the message when policy or a trigger asks (it
 * may change headers and body, remove recipients, re-inject a plain copy
 * for some). */
KmsVerdict kms_job_encrypt(SMFICTX *ctx, KmsConnection *conn, KmsMessage *msg);

/* encryptjob.c: must the message be read to its end for encryption? At
 * end of headers, from the configuration and the cached policy state. */
gboolean kms_encrypt_may_apply(KmsConnection *conn, KmsMessage *msg);

/* encryptjob.c: does the header NAME: VALUE trigger encryption under the
 * global policy? (the sender's policy is checked again at the end) */
gboolean kms_encrypt_trigger_header(const KmsMilterState *st, const char *name,
    const char *value);

#endif
