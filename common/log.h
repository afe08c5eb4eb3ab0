/*
 * NAME
 *	log - one logging module for all programs
 * DESCRIPTION
 *	Lines go to syslog, or to stderr when a program runs in the foreground
 *	(-f) or is a command-line tool. A queue id, when known, prefixes every
 *	line ("4XyZ12: message"), as in Postfix's own logs.
 * SECURITY
 *	Callers never pass key material, tokens or passwords. kms_log_openssl()
 *	logs OpenSSL's reason strings only, never data.
 */
#ifndef KMS_LOG_H
#define KMS_LOG_H

#include <glib.h>
#include <syslog.h>

typedef enum { KMS_LOG_STDERR, KMS_LOG_SYSLOG } KmsLogTarget;

/* IDENT is borrowed for the life of the process. */
void kms_log_init(const char *ident, KmsLogTarget target);
/* Facility and level names as in [log] (mail, daemon, local0..; debug..error). */
void kms_log_configure(const char *facility, const char *level);

void kms_log(int prio, const char *qid, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
void kms_logv(int prio, const char *qid, const char *fmt, va_list ap) G_GNUC_PRINTF(3, 0);

/* Log and clear OpenSSL's error queue, one line per entry, after WHAT. */
void kms_log_openssl(int prio, const char *qid, const char *what);

#define kms_info(...)	kms_log(LOG_INFO, NULL, __VA_ARGS__)
#define kms_warn(...)	kms_log(LOG_WARNING, NULL, __VA_ARGS__)
#define kms_err(...)	kms_log(LOG_ERR, NULL, __VA_ARGS__)
#define kms_debug(...)	kms_log(LOG_DEBUG, NULL, __VA_ARGS__)

#endif
