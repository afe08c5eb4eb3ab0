/*
 * NAME
 *	daemon - detach, pid file, privilege drop (see daemon.h)
 */
#include "autoconfig.h"
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

gboolean
kms_daemon_drop_privileges(const char *user, GError **err)
{
	struct passwd *pw;

	if (geteuid() != 0)
		return TRUE;
	if (user == NULL) {
		kms_warn("running as root: set a user to switch to in the configuration");
		return TRUE;
	}
	pw = getpwnam(user);
	if (pw == NULL) {
		g_set_error(err, G_FILE_ERROR, G_FILE_ERROR_PERM, "unknown user '%s'", user);
		return FALSE;
	}
	if (initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 ||
	    setuid(pw->pw_uid) != 0) {
		g_set_error(err, G_FILE_ERROR, G_FILE_ERROR_PERM, "cannot switch to user '%s': %s",
		    user, g_strerror(errno));
		return FALSE;
	}
	if (pw->pw_uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
		g_set_error(err, G_FILE_ERROR, G_FILE_ERROR_PERM,
		    "could regain root after switching to '%s'", user);
		return FALSE;
	}
	return TRUE;
}

void
kms_daemon_tune_malloc(void)
{
#if defined(M_MMAP_THRESHOLD) && defined(M_TRIM_THRESHOLD)
	/* setting them also turns off glibc's dynamic thresholds */
	(void)mallopt(M_MMAP_THRESHOLD, 4 * 1024 * 1024);
	(void)mallopt(M_TRIM_THRESHOLD, 8 * 1024 * 1024);
#endif
}

gboolean
kms_daemon_detach(GError **err)
{
	if (daemon(1, 0) != 0) {
		g_set_error(err, G_FILE_ERROR, g_file_error_from_errno(errno),
		    "cannot detach: %s", g_strerror(errno));
		return FALSE;
	}
	return TRUE;
}

gboolean
kms_daemon_write_pidfile(const char *path, GError **err)
{
	g_autofree char *old = NULL, *text = NULL;
	long pid;

	if (g_file_get_contents(path, &old, NULL, NULL) &&
	    (pid = strtol(old, NULL, 10)) > 0 && pid != getpid() &&
	    (kill((pid_t)pid, 0) == 0 || errno == EPERM)) {
		g_set_error(err, G_FILE_ERROR, G_FILE_ERROR_EXIST,
		    "pid file %s names running process %ld", path, pid);
		return FALSE;
	}
	text = g_strdup_printf("%ld\n", (long)getpid());
	if (!g_file_set_contents_full(path, text, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0644, err))
		return FALSE;
	return TRUE;
}

void
kms_daemon_remove_pidfile(const char *path)
{
	if (path)
		(void)unlink(path);
}

int
kms_daemon_args(int argc, char **argv, const char *name, const char *summary, KmsDaemonArgs *a)
{
	gboolean check = FALSE, version = FALSE;
	const GOptionEntry entries[] = {
		{"config", 'c', 0, G_OPTION_ARG_FILENAME, &a->config_path, "configuration file", "FILE"},
		{"foreground", 'f', 0, G_OPTION_ARG_NONE, &a->foreground,
		 "stay in the foreground and log to stderr", NULL},
		{"check", 'n', 0, G_OPTION_ARG_NONE, &check,
		 "check the configuration, print it and exit", NULL},
		{"version", 0, 0, G_OPTION_ARG_NONE, &version, "print the version", NULL},
		G_OPTION_ENTRY_NULL
	};
	g_autoptr(GOptionContext) oc = g_option_context_new("");
	g_autoptr(GError) e = NULL;
	KmsConfig *cfg;

	g_option_context_set_summary(oc, summary);
	g_option_context_add_main_entries(oc, entries, NULL);
	if (!g_option_context_parse(oc, &argc, &argv, &e) || argc > 1) {
		fprintf(stderr, "%s: %s\nTry '%s --help'.\n", name,
		    e ? e->message : "unexpected argument", name);
		return 2;
	}
	if (version) {
		printf("%s (%s) %s\n", name, PACKAGE_NAME, PACKAGE_VERSION);
		return 0;
	}
	if (a->config_path == NULL)
		a->config_path = g_strdup(kms_config_default_path());
	if (!check)
		return -1;
	if ((cfg = kms_config_load(a->config_path, &e)) == NULL) {
		fprintf(stderr, "%s: %s\n", name, e->message);
		return 1;
	}
	kms_config_dump(cfg, stdout);
	kms_config_free(cfg);
	return 0;
}
