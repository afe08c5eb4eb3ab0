/*
 * NAME
 *	spool - a message held by kmsmilter while the MTA sends it
 * DESCRIPTION
 *	Bytes are kept in memory up to a threshold, then moved to an unlinked
 *	temporary file; past a hard limit the spool refuses more and the
 *	message is passed through untouched.
 * SECURITY
 *	Holds hostile mail, never secrets. The temporary file has no name on
 *	disk (unlinked at creation) and mode 0600.
 */
#ifndef KMS_SPOOL_H
#define KMS_SPOOL_H

#include <glib.h>

typedef struct kms_spool KmsSpool;

/* MEMORY: bytes kept in memory; LIMIT: hard limit; DIR: for the file. */
KmsSpool *kms_spool_new(gsize memory, gsize limit, const char *dir);
KmsSpool *kms_spool_free(KmsSpool *s);

/* Append; FALSE when the limit would be passed (the spool is then full and
 * keeps refusing) or the file cannot be written (*err set). */
gboolean kms_spool_append(KmsSpool *s, const void *data, gsize len, GError **err);
gsize kms_spool_size(const KmsSpool *s);
gboolean kms_spool_full(const KmsSpool *s);

/* The bytes when held in memory (borrowed), else NULL. */
const guint8 *kms_spool_memory(const KmsSpool *s);
/* The file descriptor when spooled to a file (borrowed), else -1. */
int kms_spool_fd(const KmsSpool *s);

#endif
