/*
 * NAME
 *	kmsmilter - the kmsmilter mail filter daemon
 * SYNOPSIS
 *	kmsmilter [-c FILE] [-f] [-n]
 * DESCRIPTION
 *	Listens on [milter] socket and, for every message, harvests the
 *	certificates and S/MIME capabilities of its signers into the vault
 *	(see harvestjob.c). SIGTERM/SIGINT: libmilter stops, the program
 *	exits 0. SIGHUP: the configuration is read again and, if it is valid,
 *	swapped in; connections already open keep the snapshot they started
 *	with (the listening socket itself needs a restart to change).
 *
 *	On a TCP socket, TCP_NODELAY is set on the listening socket that
 *	smfi_opensocket() created (found among the open descriptors: a
 *	listening TCP socket); Linux copies it to every socket accept()
 *	returns. Without it an end of message answered with a change (a
 *	replaced body, a header) and then the verdict waits, per message,
 *	for the MTA's delayed ACK of the change (Nagle's algorithm holds
 *	the small verdict back): about 40 ms, ~22 messages/s per
 *	connection. libmilter has no option for it.
 * SECURITY
 *	Parses untrusted mail; holds no secret; its database role cannot read
 *	sealed keys. Drops root to [milter] user after opening its socket.
 * DIAGNOSTICS
 *	syslog (stderr with -f), every message line prefixed by the queue id.
 *	Exit 1 with one line when it cannot start.
 */
#include "autoconfig.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gmime/gmime.h>
#include <libmilter/mfapi.h>
#include <openssl/crypto.h>

#include "common/config.h"
#include "common/daemon.h"
#include "common/log.h"
#include "milter/milter.h"

static char *config_path;
static int reload_pipe[2] = {-1, -1};

/* Async-signal-safe: wake the reload thread. */
static void
on_sighup(int sig)
{
	int saved = errno;
	char b = 'r';

	(void)sig;
	if (write(reload_pipe[1], &b, 1) < 0) {
		/* a reload already pending is as good */
	}
	errno = saved;
}

/* Build a complete new state from the file, then swap it in. */
static void
reload(void)
{
	g_autoptr(GError) e = NULL;
	KmsConfig *cfg = kms_config_load(config_path, &e);
	KmsMilterState *old;

	if (cfg == NULL) {
		kms_err("reload refused, keeping the running configuration: %s", e->message);
		return;
	}
	old = kms_state_acquire();
	if (old && g_strcmp0(kms_config_get(old->cfg, "milter", "socket"),
	    kms_config_get(cfg, "milter", "socket")) != 0)
		kms_warn("[milter] socket changed: restart kmsmilter to listen there");
	kms_state_release(old);
	kms_log_configure(kms_config_get(cfg, "log", "facility"), kms_config_get(cfg, "log", "level"));
	kms_state_install(kms_state_new(cfg));
	kms_info("configuration reloaded from %s", config_path);
}

static void *
reload_thread(void *arg)
{
	char b;

	(void)arg;
	while (read(reload_pipe[0], &b, 1) == 1 || errno == EINTR) {
		if (b == 'q')
			break;
		if (b == 'r')
			reload();
	}
	return NULL;
}

/*
 * Set TCP_NODELAY on every listening TCP socket of the process: right
 * after smfi_opensocket() that is libmilter's only. Returns how many
 * were set; -1 (errno) when one refused.
 */
static int
nodelay_on_listeners(void)
{
	struct rlimit rl;
	int fd, max, n = 0, one = 1;

	max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ? (int)rl.rlim_cur : 65536;
	for (fd = 0; fd < max; fd++) {
		int v = 0;
		socklen_t l = sizeof(v);

		if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &l) != 0 || v == 0)
			continue;
		l = sizeof(v);
		if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &l) != 0 ||
		    (v != AF_INET && v != AF_INET6))
			continue;
		l = sizeof(v);
		if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &l) != 0 || v != SOCK_STREAM)
			continue;
		if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0)
			return -1;
		n++;
	}
	return n;
}

static void *
milter_thread(void *arg)
{
	int *rc = arg;

	*rc = smfi_main() == MI_SUCCESS ? 0 : 1;
	return NULL;
}

/*
 * libmilter's own signal thread sigwait()s for SIGHUP, SIGTERM and SIGINT
 * and stops on all three. To reload on SIGHUP instead, smfi_main() runs in
 * a thread of its own and the main thread is the only one that leaves
 * SIGHUP unblocked: Linux hands a process-directed signal to the thread
 * group leader when that thread accepts it, so SIGHUP reaches on_sighup()
 * while SIGTERM and SIGINT still reach libmilter.
 */
static int
serve(void)
{
	sigset_t all, hup, saved;
	pthread_t mt, rt;
	struct sigaction sa;
	int rc = 1;

	if (pipe(reload_pipe) != 0) {
		kms_err("cannot create the reload pipe: %s", g_strerror(errno));
		return 1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sighup;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGHUP, &sa, NULL);

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &saved);
	pthread_create(&rt, NULL, reload_thread, NULL);
	sigemptyset(&hup);
	sigaddset(&hup, SIGHUP);
	sigaddset(&hup, SIGTERM);
	sigaddset(&hup, SIGINT);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	pthread_sigmask(SIG_BLOCK, &hup, NULL);
	pthread_create(&mt, NULL, milter_thread, &rc);
	sigemptyset(&hup);
	sigaddset(&hup, SIGHUP);
	pthread_sigmask(SIG_UNBLOCK, &hup, NULL);

	pthread_join(mt, NULL);

	pthread_sigmask(SIG_BLOCK, &hup, NULL);
	if (write(reload_pipe[1], "q", 1) == 1)
		pthread_join(rt, NULL);
	close(reload_pipe[0]);
	close(reload_pipe[1]);
	return rc;
}

int
main(int argc, char **argv)
{
	KmsDaemonArgs a = {0};
	g_autoptr(GError) e = NULL;
	KmsConfig *cfg;
	const char *sock, *pidfile;
	gboolean foreground;
	int rc;

	/*
	 * Debian's libmilter runs sessions on a pool of detached worker
	 * threads that notice smfi_main()'s end only at their next 10 s
	 * timeout, so one may exit while this process exits. OpenSSL's own
	 * atexit cleanup tears down its per-thread bookkeeping, and a worker
	 * exiting at that moment races with it (LeakSanitizer found that
	 * worker's OpenSSL state lost). Without that handler OpenSSL's state
	 * stays valid until the process is gone (the kernel reclaims it; it
	 * holds no secret of ours).
	 */
	OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, NULL);
	kms_daemon_tune_malloc();
	if ((rc = kms_daemon_args(argc, argv, "kmsmilter", "The kmsmilter mail filter.", &a)) >= 0) {
		g_free(a.config_path);
		return rc;
	}
	config_path = a.config_path;
	foreground = a.foreground;
	cfg = kms_config_load(config_path, &e);
	if (cfg == NULL) {
		fprintf(stderr, "kmsmilter: %s\n", e->message);
		return 1;
	}
	kms_log_init("kmsmilter", foreground ? KMS_LOG_STDERR : KMS_LOG_SYSLOG);
	kms_log_configure(kms_config_get(cfg, "log", "facility"), kms_config_get(cfg, "log", "level"));
	g_mime_init();

	sock = kms_config_get(cfg, "milter", "socket");
	if (smfi_setconn((char *)sock) != MI_SUCCESS || smfi_register(kms_milter_desc) != MI_SUCCESS ||
	    smfi_opensocket(true) != MI_SUCCESS) {
		fprintf(stderr, "kmsmilter: cannot listen on %s\n", sock);
		kms_config_free(cfg);
		return 1;
	}
	if (g_str_has_prefix(sock, "inet")) {
		int n = nodelay_on_listeners();

		if (n > 0)
			kms_info("TCP_NODELAY set on the listening socket");
		else
			kms_warn("cannot set TCP_NODELAY on the listening socket (%s): a change at end"
			    " of message may wait for the MTA's delayed ACK", n < 0 ? g_strerror(errno) :
			    "not found");
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
	{
		/* the pid file's name must outlive reloads */
		g_autofree char *pid_copy = g_strdup(pidfile);

		kms_state_install(kms_state_new(cfg));
		kms_info("listening on %s", sock);
		rc = serve();
		kms_info("stopped");
		kms_daemon_remove_pidfile(pid_copy);
	}
	kms_state_shutdown();
	g_mime_shutdown();
	g_free(config_path);
	return rc;
}
