/*
 * NAME
 *	kmsd - the key management service worker
 * SYNOPSIS
 *	kmsd [-c FILE] [-f] [-n]
 * DESCRIPTION
 *	Reads the startup password ([kms] startup_password_file, else a
 *	prompt on its terminal), unseals the vault and refuses to run with a
 *	wrong password. Registers itself in the workers table and records a
 *	heartbeat so kmsctl status can count live workers. Takes queued
 *	requests when kmsctl NOTIFYs and at each heartbeat. At start, at each
 *	heartbeat and after each batch of requests it also looks after the
 *	CRL (crlpub.h): signs one when none exists or the current one is past
 *	half of its lifetime, and writes the vault's CRL to [ca] crl_dir when
 *	the files there differ. SIGTERM or SIGINT: deregister, wipe the vault
 *	key, exit 0.
 * SECURITY
 *	Holds the vault key in locked memory (secure heap), is not dumpable,
 *	drops root to [kms] user before it connects.
 * DIAGNOSTICS
 *	syslog (stderr with -f). Exit 1 with one line when it cannot start.
 */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib-unix.h>

#include "common/config.h"
#include "common/daemon.h"
#include "common/log.h"
#include "common/secret.h"
#include "keyvault/crlpub.h"
#include "keyvault/vault.h"
#include "keyvault/worker.h"

typedef struct {
	KmsConfig *cfg;
	KmsVault *vault;
	GMainLoop *loop;
	char *worker_id;
	KmsWorker worker;
	guint db_watch;		/* notification source on the vault socket */
	int db_fd;
	char *crl_error;	/* last CRL problem logged, to log it once */
} Kmsd;

static void watch_db(Kmsd *k);

/* Do queued requests until none waits or one fails (then wait for the
 * next heartbeat: the MTA or vault may be down). */
static void
drain_queue(Kmsd *k)
{
	gboolean did = TRUE;

	for (int n = 0; did && n < 1000; n++) {
		g_autoptr(GError) e = NULL;

		if (!kms_worker_run_one(&k->worker, &did, &e))
			break;
	}
}

/* Publish the CRL when due and keep crl_dir current (crlpub.h). A
 * problem (crl_dir not writable...) is logged when it first appears and
 * when it goes away, not at every heartbeat. */
static void
maintain_crl(Kmsd *k)
{
	g_autoptr(GError) e = NULL;

	if (!kms_crl_maintain(&k->worker, NULL, &e)) {
		if (k->crl_error == NULL || strcmp(k->crl_error, e->message) != 0) {
			kms_warn("CRL: %s", e->message);
			g_free(k->crl_error);
			k->crl_error = g_strdup(e->message);
		}
		return;
	}
	if (k->crl_error) {
		kms_info("CRL: publishing works again");
		g_clear_pointer(&k->crl_error, g_free);
	}
}

/* The vault socket is readable: notifications (kmsctl's NOTIFY). */
static gboolean
on_db_readable(gint fd, GIOCondition cond, gpointer data)
{
	Kmsd *k = data;
	PGconn *db = kms_vault_db(k->vault);
	PGnotify *n;

	if (!PQconsumeInput(db)) {
		k->db_watch = 0;
		return G_SOURCE_REMOVE;	/* the heartbeat reconnects */
	}
	while ((n = PQnotifies(db)) != NULL)
		PQfreemem(n);
	drain_queue(k);
	maintain_crl(k);
	return G_SOURCE_CONTINUE;
}

/* LISTEN on the (possibly new) connection and watch its socket. */
static void
watch_db(Kmsd *k)
{
	PGconn *db = kms_vault_db(k->vault);
	g_autoptr(GError) e = NULL;

	if (k->db_watch && k->db_fd == PQsocket(db))
		return;
	if (k->db_watch)
		g_source_remove(k->db_watch);
	k->db_watch = 0;
	if (!kms_db_exec(db, "LISTEN kms_requests", NULL, &e)) {
		kms_warn("cannot listen for requests: %s", e->message);
		return;
	}
	k->db_fd = PQsocket(db);
	k->db_watch = g_unix_fd_add(k->db_fd, G_IO_IN, on_db_readable, k);
}

static gboolean
on_stop(gpointer data)
{
	Kmsd *k = data;

	kms_info("stopping on signal");
	g_main_loop_quit(k->loop);
	return G_SOURCE_REMOVE;
}

/* Record that this worker is alive; reconnect once if the link dropped. */
static gboolean
heartbeat(gpointer data)
{
	Kmsd *k = data;
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	g_autoptr(GError) e = NULL;
	PGconn *db = kms_vault_db(k->vault);

	kms_db_param_text(&p, k->worker_id);
	kms_db_param_text(&p, g_get_host_name());
	kms_db_param_int(&p, getpid());
	if (kms_db_exec(db,
	    "INSERT INTO workers (id, host, pid) VALUES ($1, $2, $3)"
	    " ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()", &p, &e)) {
		/* also catch up on anything a lost notification left waiting */
		watch_db(k);
		kms_worker_expire(&k->worker);
		drain_queue(k);
		maintain_crl(k);
		return G_SOURCE_CONTINUE;
	}
	kms_warn("heartbeat: %s", e->message);
	if (g_error_matches(e, KMS_DB_ERROR, KMS_DB_ERROR_RETRY) || PQstatus(db) != CONNECTION_OK) {
		PQreset(db);
		if (PQstatus(db) == CONNECTION_OK)
			kms_info("reconnected to the vault");
	}
	return G_SOURCE_CONTINUE;
}

static int
run(Kmsd *k, const char *config_path, gboolean foreground)
{
	g_autoptr(GError) e = NULL;
	g_autoptr(KmsSecret) pw = NULL;
	const char *pidfile;
	int version;

	k->cfg = kms_config_load(config_path, &e);
	if (k->cfg == NULL) {
		fprintf(stderr, "kmsd: %s\n", e->message);
		return 1;
	}
	kms_log_configure(kms_config_get(k->cfg, "log", "facility"),
	    kms_config_get(k->cfg, "log", "level"));
	pw = kms_password_read(kms_config_get(k->cfg, "kms", "startup_password_file"),
	    "kmsd startup password: ", FALSE, &e);
	if (pw == NULL) {
		fprintf(stderr, "kmsd: %s\n", e->message);
		return 1;
	}
	if (!kms_daemon_drop_privileges(kms_config_get(k->cfg, "kms", "user"), &e)) {
		fprintf(stderr, "kmsd: %s\n", e->message);
		return 1;
	}
	k->vault = kms_vault_connect(kms_config_dsn(k->cfg, "kms"), "kmsd", &e);
	if (k->vault == NULL || !kms_vault_schema_version(k->vault, &version, &e) ||
	    !kms_vault_unseal(k->vault, pw, &e)) {
		fprintf(stderr, "kmsd: %s\n", e->message);
		return 1;
	}
	pw = kms_secret_free(pw);
	if (!kms_worker_init(&k->worker, k->vault, k->cfg, &e)) {
		fprintf(stderr, "kmsd: %s\n", e->message);
		return 1;
	}
	if (!foreground) {
		if (!kms_daemon_detach(&e)) {
			fprintf(stderr, "kmsd: %s\n", e->message);
			return 1;
		}
		kms_log_init("kmsd", KMS_LOG_SYSLOG);
		/* the forked child needs its own connection */
		PQreset(kms_vault_db(k->vault));
	}
	pidfile = kms_config_get(k->cfg, "kms", "pid_file");
	if (pidfile && !kms_daemon_write_pidfile(pidfile, &e)) {
		kms_err("%s", e->message);
		return 1;
	}
	k->worker_id = g_strdup_printf("%s:%ld:%08x", g_get_host_name(), (long)getpid(),
	    g_random_int());
	heartbeat(k);
	kms_info("vault unsealed (schema version %d); worker %s ready", version, k->worker_id);

	k->loop = g_main_loop_new(NULL, FALSE);
	g_unix_signal_add(SIGTERM, on_stop, k);
	g_unix_signal_add(SIGINT, on_stop, k);
	g_timeout_add_seconds((guint)kms_config_get_int(k->cfg, "kms", "heartbeat"), heartbeat, k);
	g_main_loop_run(k->loop);

	{
		KmsDbParams p = KMS_DB_PARAMS_INIT;

		kms_db_param_text(&p, k->worker_id);
		if (!kms_db_exec(kms_vault_db(k->vault), "DELETE FROM workers WHERE id = $1", &p, &e))
			kms_warn("cannot deregister: %s", e->message);
	}
	kms_daemon_remove_pidfile(pidfile);
	kms_info("stopped");
	return 0;
}

int
main(int argc, char **argv)
{
	KmsDaemonArgs a = {0};
	Kmsd k = {0};
	gboolean locked;
	int rc;

	locked = kms_secmem_init();
	if ((rc = kms_daemon_args(argc, argv, "kmsd",
	    "The kmsmilter key management service worker.", &a)) >= 0) {
		g_free(a.config_path);
		return rc;
	}
	kms_log_init("kmsd", KMS_LOG_STDERR);
	if (!locked)
		kms_warn("cannot lock memory for secrets (RLIMIT_MEMLOCK?): keys stay out of core"
		    " dumps and are wiped, but may be swapped");
	rc = run(&k, a.config_path, a.foreground);
	if (k.loop)
		g_main_loop_unref(k.loop);
	kms_worker_clear(&k.worker);
	kms_vault_close(k.vault);
	kms_config_free(k.cfg);
	g_free(k.worker_id);
	g_free(k.crl_error);
	g_free(a.config_path);
	return rc;
}
