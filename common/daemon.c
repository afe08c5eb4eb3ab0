/*
 * NAME
 *	daemon - detach, pid file, privilege drop (see daemon.h)
 */
#include "autoconfig.h"
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
