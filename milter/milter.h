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

#endif
