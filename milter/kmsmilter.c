/*
 * NAME
 *	kmsmilter - the libmilter daemon (skeleton)
 * SYNOPSIS
 *	kmsmilter [-c FILE] [-f] [-n]
 * DESCRIPTION
 *	Loads the configuration, listens on [milter] socket and accepts every
 *	message unchanged. Harvesting, enrollment replies and encryption are
 *	added on this frame. SIGTERM, SIGINT: libmilter stops the listener and
 *	the program exits 0.
 * SECURITY
 *	Parses untrusted mail; holds no secret. Drops root to [milter] user
 *	after opening its socket.
 * DIAGNOSTICS
 *	syslog (stderr with -f). Exit 1 with one line when it cannot start.
 */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libmilter/mfapi.h>

#include "common/config.h"
#include "common/daemon.h"
#include "common/log.h"

/* Until the message jobs exist every stage simply lets the mail go on. */
static sfsistat
kms_continue_connect(SMFICTX *ctx, char *host, struct sockaddr *addr)
{
	return SMFIS_CONTINUE;
}

static sfsistat
kms_continue_envfrom(SMFICTX *ctx, char **argv)
{
	return SMFIS_CONTINUE;
}

static sfsistat
kms_continue_envrcpt(SMFICTX *ctx, char **argv)
{
	return SMFIS_CONTINUE;
}

static sfsistat
kms_continue_header(SMFICTX *ctx, char *name, char *value)
{
	return SMFIS_CONTINUE;
}

static sfsistat
kms_continue_eoh(SMFICTX *ctx)
{
	return SMFIS_CONTINUE;
}

static sfsistat
kms_continue_body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{
	return SMFIS_CONTINUE;
}

static sfsistat
kms_accept_eom(SMFICTX *ctx)
{
	return SMFIS_ACCEPT;
}

static sfsistat
kms_close(SMFICTX *ctx)
{
	return SMFIS_CONTINUE;
}

static struct smfiDesc kms_filter = {
	.xxfi_name = "kmsmilter",
	.xxfi_version = SMFI_VERSION,
	.xxfi_flags = 0,
	.xxfi_connect = kms_continue_connect,
	.xxfi_envfrom = kms_continue_envfrom,
	.xxfi_envrcpt = kms_continue_envrcpt,
	.xxfi_header = kms_continue_header,
	.xxfi_eoh = kms_continue_eoh,
	.xxfi_body = kms_continue_body,
	.xxfi_eom = kms_accept_eom,
	.xxfi_close = kms_close,
};

int
main(int argc, char **argv)
{
	g_autofree char *config_path = NULL;
	gboolean foreground = FALSE, check = FALSE, version = FALSE;
	const GOptionEntry entries[] = {
		{"config", 'c', 0, G_OPTION_ARG_FILENAME, &config_path, "configuration file", "FILE"},
		{"foreground", 'f', 0, G_OPTION_ARG_NONE, &foreground,
		 "stay in the foreground and log to stderr", NULL},
		{"check", 'n', 0, G_OPTION_ARG_NONE, &check,
		 "check the configuration, print it and exit", NULL},
		{"version", 0, 0, G_OPTION_ARG_NONE, &version, "print the version", NULL},
		G_OPTION_ENTRY_NULL
	};
	g_autoptr(GOptionContext) oc = g_option_context_new("");
	g_autoptr(GError) e = NULL;
	KmsConfig *cfg;
	const char *sock, *pidfile;
	int rc;

	g_option_context_set_summary(oc, "The kmsmilter mail filter.");
	g_option_context_add_main_entries(oc, entries, NULL);
	if (!g_option_context_parse(oc, &argc, &argv, &e) || argc > 1) {
		fprintf(stderr, "kmsmilter: %s\nTry 'kmsmilter --help'.\n",
		    e ? e->message : "unexpected argument");
		return 2;
	}
	if (version) {
		printf("kmsmilter (%s) %s\n", PACKAGE_NAME, PACKAGE_VERSION);
		return 0;
	}
	if (config_path == NULL)
		config_path = g_strdup(kms_config_default_path());
	cfg = kms_config_load(config_path, &e);
	if (cfg == NULL) {
		fprintf(stderr, "kmsmilter: %s\n", e->message);
		return 1;
	}
	if (check) {
		kms_config_dump(cfg, stdout);
		kms_config_free(cfg);
		return 0;
	}
	kms_log_init("kmsmilter", foreground ? KMS_LOG_STDERR : KMS_LOG_SYSLOG);
	kms_log_configure(kms_config_get(cfg, "log", "facility"), kms_config_get(cfg, "log", "level"));

	sock = kms_config_get(cfg, "milter", "socket");
	if (smfi_setconn((char *)sock) != MI_SUCCESS || smfi_register(kms_filter) != MI_SUCCESS ||
	    smfi_opensocket(true) != MI_SUCCESS) {
		fprintf(stderr, "kmsmilter: cannot listen on %s\n", sock);
		kms_config_free(cfg);
		return 1;
	}
	if (!kms_daemon_drop_privileges(kms_config_get(cfg, "milter", "user"), &e) ||
	    (!foreground && !kms_daemon_detach(&e))) {
		fprintf(stderr, "kmsmilter: %s\n", e->message);
		kms_config_free(cfg);
		return 1;
	}
	pidfile = kms_config_get(cfg, "milter", "pid_file");
	if (pidfile && !kms_daemon_write_pidfile(pidfile, &e)) {
		kms_err("%s", e->message);
		kms_config_free(cfg);
		return 1;
	}
	kms_info("listening on %s", sock);
	rc = smfi_main() == MI_SUCCESS ? 0 : 1;
	kms_info("stopped");
	kms_daemon_remove_pidfile(pidfile);
	kms_config_free(cfg);
	return rc;
}
