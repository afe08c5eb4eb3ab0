/*
 * NAME
 *	log - syslog or stderr logging with queue-id prefixes (see log.h)
 */
#include "log.h"

#include <stdio.h>
#include <string.h>

#include <openssl/err.h>

static const char *log_ident = "kmsmilter";
static KmsLogTarget log_target = KMS_LOG_STDERR;
static int log_min = LOG_INFO;
static int log_facility = LOG_MAIL;

void
kms_log_init(const char *ident, KmsLogTarget target)
{
	log_ident = ident;
	log_target = target;
	if (target == KMS_LOG_SYSLOG)
		openlog(ident, LOG_PID | LOG_NDELAY, log_facility);
}

void
kms_log_configure(const char *facility, const char *level)
{
	static const struct { const char *name; int value; } fac[] = {
		{"mail", LOG_MAIL}, {"daemon", LOG_DAEMON}, {"user", LOG_USER},
		{"local0", LOG_LOCAL0}, {"local1", LOG_LOCAL1}, {"local2", LOG_LOCAL2},
		{"local3", LOG_LOCAL3}, {"local4", LOG_LOCAL4}, {"local5", LOG_LOCAL5},
		{"local6", LOG_LOCAL6}, {"local7", LOG_LOCAL7},
	}, lvl[] = {
		{"debug", LOG_DEBUG}, {"info", LOG_INFO}, {"warning", LOG_WARNING},
		{"error", LOG_ERR},
	};

	for (size_t i = 0; facility && i < G_N_ELEMENTS(fac); i++)
		if (strcmp(facility, fac[i].name) == 0 && fac[i].value != log_facility) {
			log_facility = fac[i].value;
			if (log_target == KMS_LOG_SYSLOG) {
				closelog();
				openlog(log_ident, LOG_PID | LOG_NDELAY, log_facility);
			}
		}
	for (size_t i = 0; level && i < G_N_ELEMENTS(lvl); i++)
		if (strcmp(level, lvl[i].name) == 0)
			log_min = lvl[i].value;
}

void
kms_logv(int prio, const char *qid, const char *fmt, va_list ap)
{
	static const char *names[] = {"emergency", "alert", "critical", "error",
	    "warning", "notice", "info", "debug"};
	g_autofree char *msg = NULL;

	if (prio > log_min)
		return;
	msg = g_strdup_vprintf(fmt, ap);
	if (log_target == KMS_LOG_SYSLOG) {
		if (qid)
			syslog(prio, "%s: %s", qid, msg);
		else
			syslog(prio, "%s", msg);
		return;
	}
	/* One fprintf per line so lines from threads do not interleave. */
	fprintf(stderr, "%s: %s%s%s%s%s\n", log_ident,
	    prio <= LOG_WARNING ? names[prio & 7] : "", prio <= LOG_WARNING ? ": " : "",
	    qid ? qid : "", qid ? ": " : "", msg);
}

void
kms_log(int prio, const char *qid, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	kms_logv(prio, qid, fmt, ap);
	va_end(ap);
}

void
kms_log_openssl(int prio, const char *qid, const char *what)
{
	unsigned long e;
	char buf[256];
	int n = 0;

	while ((e = ERR_get_error()) != 0) {
		ERR_error_string_n(e, buf, sizeof(buf));
		kms_log(prio, qid, "%s: %s", what, buf);
		n++;
	}
	if (n == 0)
		kms_log(prio, qid, "%s", what);
}
