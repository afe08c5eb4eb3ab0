/*
 * NAME
 *	daemon - process plumbing shared by kmsd and kmsmilter
 * DESCRIPTION
 *	Detaching, pid files, dropping root to the configured account.
 * SECURITY
 *	Privileges are dropped for good (setgroups, setgid, setuid; checked
 *	by trying to regain root). A daemon started as root without a user
 *	to switch to keeps running as root and says so in the log.
 */
#ifndef KMS_DAEMON_H
#define KMS_DAEMON_H

#include <glib.h>

typedef struct {
	char *config_path;	/* -c, else the default path (g_free) */
	gboolean foreground;	/* -f */
} KmsDaemonArgs;

/* The daemons' common command line: -c FILE, -f, -n (check the
 * configuration, print it, exit) and --version. Returns -1 when the
 * daemon should go on, else the exit status (0, 1 bad config, 2 usage). */
int kms_daemon_args(int argc, char **argv, const char *name, const char *summary,
    KmsDaemonArgs *a);

/* Switch to USER when running as root (USER may be NULL: no switch). */
gboolean kms_daemon_drop_privileges(const char *user, GError **err);
/*
 * Keep freed memory of the size a message needs for reuse instead of
 * giving it back to the kernel after each message: blocks up to 4 MiB
 * come from the heap (not mmap), and a heap keeps up to 8 MiB free at
 * its top. glibc's defaults trim and unmap per message (madvise, munmap,
 * then page faults for the next one); for an encrypted 50 KB message
 * that was about a sixth of kmsmilter's CPU (BENCHMARKS.md). Bounded:
 * glibc has at most 8 heaps per core. The bench programs call it too, so
 * that an in-process baseline runs with the same allocator settings.
 */
void kms_daemon_tune_malloc(void);

/* Fork into the background (stdio to /dev/null), keep the directory. */
gboolean kms_daemon_detach(GError **err);
/* Write our pid to PATH (0644), refusing when another live process holds it. */
gboolean kms_daemon_write_pidfile(const char *path, GError **err);
void kms_daemon_remove_pidfile(const char *path);

#endif
