/*
 * NAME
 *	kmsd - the key management service worker
 * SYNOPSIS
 *	kmsd [-c FILE] [-f] [-n]
 * DESCRIPTION
 *	Reads the startup password ([kms] startup_password_file, else a
 *	prompt on its terminal), unseals the vault and refuses to run with a
 *	wrong password. Without a password file, on a vault that has Shamir
 *	shares (shamir.h), it waits sealed instead: it publishes an ephemeral
 *	X25519 public key in unseal_sessions, opens each share kmsctl unseal
 *	encrypts to it, answers every one (accepted, duplicate, rejected
 *	naming the share number) and unseals once the threshold of distinct
 *	valid shares is reached. Registers itself in the workers table and records a
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
#include <openssl/evp.h>

#include "common/config.h"
#include "common/daemon.h"
#include "common/log.h"
#include "common/secret.h"
#include "keyvault/adminwork.h"
#include "keyvault/audit.h"
#include "keyvault/crlpub.h"
#include "keyvault/export.h"
#include "keyvault/queuekey.h"
#include "keyvault/shamir.h"
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
	gboolean stopping;	/* a signal asked us to stop */
	/* sealed, waiting for unseal shares */
	KmsSecret *unseal_priv;	/* the session's X25519 private key */
	gint64 unseal_session;	/* its unseal_sessions row, 0: none */
	GPtrArray *shares;	/* KmsShare accepted so far */
	guint unseal_timer;
	/* audit log (audit.h) */
	KmsSecret *audit_key;	/* derived from the vault key once unsealed */
	gint64 audit_high;	/* highest entry this process MACed */
} Kmsd;

static void watch_db(Kmsd *k);

/* Our actor in the audit log: "kmsd@HOST:PID" (again after a fork). */
static void
audit_actor(void)
{
	g_autofree char *a = g_strdup_printf("kmsd@%s:%ld", g_get_host_name(), (long)getpid());

	kms_audit_set_actor(a, FALSE, FALSE);
}

/* One audit entry in its own transaction (the connection is idle). */
static void
audit(Kmsd *k, const char *action, JsonObject *detail)
{
	g_autoptr(GError) e = NULL;
	PGconn *db = kms_vault_db(k->vault);

	if (kms_db_begin(db, &e) && kms_audit_append(db, action, detail, &e) &&
	    kms_db_commit(db, &e))
		return;
	kms_db_rollback(db);
	kms_warn("audit: cannot record \"%s\": %s", action, e ? e->message : "unknown error");
}

/* MAC the audit entries that appeared since the last pass (audit.h). */
static void
audit_mac(Kmsd *k)
{
	g_autoptr(GError) e = NULL;

	if (k->audit_key == NULL)
		return;
	if (!kms_audit_mac_pending(kms_vault_db(k->vault), k->audit_key, &k->audit_high, NULL, &e))
		kms_warn("audit: cannot MAC new entries: %s", e->message);
}

/* Once, from the main loop (signals are handled by then): the transport
 * key pair other vaults export to (export.h); an RSA-3072 key takes a
 * while the first time. */
static gboolean
make_transport_key(gpointer data)
{
	Kmsd *k = data;
	g_autoptr(GError) e = NULL;

	if (!kms_transport_ensure(k->vault, &e))
		kms_warn("cannot make the transport key pair: %s", e->message);
	return G_SOURCE_REMOVE;
}

/* Do queued requests until none waits or one fails (then wait for the
 * next heartbeat: the MTA or vault may be down). */
static void
drain_queue(Kmsd *k)
{
	gboolean did = TRUE;

	kms_worker_approvals(&k->worker);
	for (int n = 0; did && n < 1000; n++) {
		g_autoptr(GError) e = NULL;

		if (!kms_worker_run_one(&k->worker, &did, &e))
			break;
	}
	/* the mails of a burst share one SMTP connection; an idle kmsd holds
	 * none (it would keep an smtpd process of the MTA busy) */
	if (!did)
		kms_mail_connection_close(k->worker.mailer.keep);
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
	audit_mac(k);
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
	k->stopping = TRUE;
	g_main_loop_quit(k->loop);
	return G_SOURCE_CONTINUE;
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
		audit_mac(k);
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

/* --- sealed: collecting unseal shares ------------------------------------ */

/* Record the outcome of one submitted share; the ciphertext goes. */
static void
unseal_answer(Kmsd *k, gint64 id, const char *status, const char *detail)
{
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	g_autoptr(GError) e = NULL;

	kms_db_param_int(&p, id);
	kms_db_param_text(&p, status);
	kms_db_param_text(&p, detail);
	if (!kms_db_exec(kms_vault_db(k->vault), "UPDATE unseal_shares SET status = $2,"
	    " detail = $3, sealed_share = NULL WHERE id = $1", &p, &e))
		kms_warn("unseal: cannot answer share row %" G_GINT64_FORMAT ": %s", id, e->message);
}

/* Audit one share's outcome: who sent it and what became of it (never
 * the share). */
static void
unseal_audit(Kmsd *k, const char *action, const char *by, const char *what)
{
	g_autoptr(JsonObject) d = json_object_new();

	json_object_set_string_member(d, "submitted_by", by);
	json_object_set_string_member(d, "detail", what);
	audit(k, action, d);
}

/* One submitted share: open, check, count; unseal at the threshold. */
static void
unseal_take(Kmsd *k, gint64 id, const char *by, GBytes *blob)
{
	g_autoptr(GError) e = NULL;
	g_autoptr(KmsSecret) text = NULL;
	g_autoptr(KmsShare) s = NULL;
	g_autoptr(KmsShareSet) set = NULL;
	g_autofree char *detail = NULL;
	KmsDbParams p = KMS_DB_PARAMS_INIT;

	if (!kms_vault_share_set(k->vault, &set, &e) || set == NULL) {
		kms_err("unseal: %s", e ? e->message : "the vault no longer has shares");
		unseal_answer(k, id, "rejected", "kmsd cannot read the vault's share set");
		return;
	}
	if (blob != NULL)
		text = kms_queue_open(k->unseal_priv, "unseal-share", id,
		    g_bytes_get_data(blob, NULL), g_bytes_get_size(blob), NULL);
	if (text == NULL) {
		kms_warn("unseal: a share from %s does not open: not encrypted to this kmsd", by);
		unseal_answer(k, id, "rejected", "not encrypted to this kmsd's session key");
		unseal_audit(k, "unseal share rejected", by, "not encrypted to this kmsd's session key");
		return;
	}
	if ((s = kms_share_parse((const char *)text->data, text->len, &e)) == NULL ||
	    !kms_share_set_check(set, s, &e)) {
		kms_warn("unseal: share from %s rejected: %s", by, e->message);
		unseal_answer(k, id, "rejected", e->message);
		unseal_audit(k, "unseal share rejected", by, e->message);
		return;
	}
	for (guint i = 0; i < k->shares->len; i++)
		if (((KmsShare *)g_ptr_array_index(k->shares, i))->index == s->index) {
			detail = g_strdup_printf("share %u was already entered (%u of %u)",
			    s->index, k->shares->len, set->threshold);
			kms_info("unseal: %s, again by %s", detail, by);
			unseal_answer(k, id, "duplicate", detail);
			return;
		}
	g_ptr_array_add(k->shares, g_steal_pointer(&s));
	detail = g_strdup_printf("%u of %u", k->shares->len, set->threshold);
	kms_info("unseal: share accepted from %s (%s)", by, detail);
	unseal_audit(k, "unseal share accepted", by, detail);
	if (k->shares->len < set->threshold) {
		unseal_answer(k, id, "accepted", detail);
		return;
	}
	if (!kms_vault_unseal_shares(k->vault, (KmsShare *const *)k->shares->pdata,
	    k->shares->len, &e)) {
		kms_err("unseal: %s; the shares entered are discarded", e->message);
		g_ptr_array_set_size(k->shares, 0);
		unseal_answer(k, id, "rejected", e->message);
		return;
	}
	g_ptr_array_set_size(k->shares, 0);
	unseal_answer(k, id, "unsealed", detail);
	kms_db_param_int(&p, k->unseal_session);
	if (!kms_db_exec(kms_vault_db(k->vault), "UPDATE unseal_sessions SET status = 'unsealed'"
	    " WHERE id = $1", &p, &e))
		kms_warn("unseal: %s", e->message);
	g_main_loop_quit(k->loop);
}

/* Answer every share waiting for this session. */
static void
unseal_poll(Kmsd *k)
{
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	g_autoptr(GError) e = NULL;
	g_autoptr(PGresult) r = NULL;

	kms_db_param_int(&p, k->unseal_session);
	r = kms_db_run(kms_vault_db(k->vault), "SELECT id, submitted_by, sealed_share"
	    " FROM unseal_shares WHERE session_id = $1 AND status = 'pending' ORDER BY id",
	    &p, &e);
	if (r == NULL) {
		kms_warn("unseal: %s", e->message);
		return;
	}
	for (int i = 0; i < PQntuples(r); i++) {
		g_autoptr(GBytes) blob = kms_db_get_bytes(r, i, 2);
		gint64 id = kms_db_get_int(r, i, 0);

		if (kms_vault_is_unsealed(k->vault))
			unseal_answer(k, id, "duplicate", "the vault is already unsealed");
		else
			unseal_take(k, id, PQgetvalue(r, i, 1), blob);
	}
}

static gboolean
on_unseal_readable(gint fd, GIOCondition cond, gpointer data)
{
	Kmsd *k = data;
	PGconn *db = kms_vault_db(k->vault);
	PGnotify *n;

	if (!PQconsumeInput(db)) {
		k->db_watch = 0;
		return G_SOURCE_REMOVE;	/* the tick reconnects */
	}
	while ((n = PQnotifies(db)) != NULL)
		PQfreemem(n);
	unseal_poll(k);
	return G_SOURCE_CONTINUE;
}

/* LISTEN for kmsctl unseal on the (possibly new) connection. */
static void
unseal_watch(Kmsd *k)
{
	PGconn *db = kms_vault_db(k->vault);
	g_autoptr(GError) e = NULL;

	if (k->db_watch && k->db_fd == PQsocket(db))
		return;
	if (k->db_watch)
		g_source_remove(k->db_watch);
	k->db_watch = 0;
	if (!kms_db_exec(db, "LISTEN kms_unseal", NULL, &e)) {
		kms_warn("unseal: cannot listen: %s", e->message);
		return;
	}
	k->db_fd = PQsocket(db);
	k->db_watch = g_unix_fd_add(k->db_fd, G_IO_IN, on_unseal_readable, k);
}

/* Every second: show the session is alive, catch up, reconnect. */
static gboolean
unseal_tick(gpointer data)
{
	Kmsd *k = data;
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	g_autoptr(GError) e = NULL;
	PGconn *db = kms_vault_db(k->vault);

	kms_db_param_int(&p, k->unseal_session);
	if (!kms_db_exec(db, "UPDATE unseal_sessions SET heartbeat_at = now() WHERE id = $1",
	    &p, &e)) {
		kms_warn("unseal: %s", e->message);
		if (PQstatus(db) != CONNECTION_OK)
			PQreset(db);
		return G_SOURCE_CONTINUE;
	}
	unseal_watch(k);
	unseal_poll(k);
	return G_SOURCE_CONTINUE;
}

/* Remove our session (and the answered shares with it). */
static void
unseal_session_end(Kmsd *k)
{
	KmsDbParams p = KMS_DB_PARAMS_INIT;

	if (k->unseal_session == 0)
		return;
	kms_db_param_int(&p, k->unseal_session);
	(void)kms_db_exec(kms_vault_db(k->vault), "DELETE FROM unseal_sessions WHERE id = $1",
	    &p, NULL);
	k->unseal_session = 0;
}

/* Publish a session key and run the loop until the threshold of shares
 * unseals the vault (TRUE) or a signal stops us (FALSE, *ERR unset). */
static gboolean
wait_for_shares(Kmsd *k, const KmsShareSet *set, GError **err)
{
	EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
	guint8 pub[KMS_QUEUE_KEY_LEN];
	size_t l1 = KMS_QUEUE_KEY_LEN, l2 = sizeof(pub);
	g_autofree char *worker = g_strdup_printf("%s:%ld", g_get_host_name(), (long)getpid());
	g_autofree char *fp = NULL;
	g_autoptr(PGresult) r = NULL;
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	PGconn *db = kms_vault_db(k->vault);
	gboolean ok;

	k->unseal_priv = kms_secret_new(KMS_QUEUE_KEY_LEN);
	ok = pk && EVP_PKEY_get_raw_private_key(pk, k->unseal_priv->data, &l1) == 1 &&
	    EVP_PKEY_get_raw_public_key(pk, pub, &l2) == 1;
	EVP_PKEY_free(pk);
	if (!ok) {
		g_set_error(err, KMS_SHAMIR_ERROR, KMS_SHAMIR_ERROR_FAILED,
		    "cannot make an unseal session key");
		return FALSE;
	}
	/* sessions of kmsd processes that died without cleaning up */
	(void)kms_db_exec(db, "DELETE FROM unseal_sessions"
	    " WHERE heartbeat_at < now() - interval '10 minutes'", NULL, NULL);
	kms_db_param_text(&p, worker);
	kms_db_param_bytes(&p, pub, sizeof(pub));
	r = kms_db_run(db, "INSERT INTO unseal_sessions (worker, public_key) VALUES ($1, $2)"
	    " RETURNING id", &p, err);
	if (r == NULL)
		return FALSE;
	k->unseal_session = kms_db_get_int(r, 0, 0);
	k->shares = g_ptr_array_new_with_free_func(kms_share_destroy);
	fp = kms_unseal_fingerprint(pub, sizeof(pub));
	kms_info("sealed: waiting for %u of %u shares (kmsctl unseal); session key %s",
	    set->threshold, set->count, fp);
	unseal_watch(k);
	k->unseal_timer = g_timeout_add_seconds(1, unseal_tick, k);
	unseal_poll(k);
	if (!kms_vault_is_unsealed(k->vault) && !k->stopping)
		g_main_loop_run(k->loop);
	g_source_remove(k->unseal_timer);
	k->unseal_timer = 0;
	if (k->db_watch)
		g_source_remove(k->db_watch);
	k->db_watch = 0;
	(void)kms_db_exec(db, "UNLISTEN kms_unseal", NULL, NULL);
	k->unseal_priv = kms_secret_free(k->unseal_priv);
	g_clear_pointer(&k->shares, g_ptr_array_unref);
	return kms_vault_is_unsealed(k->vault);
}

static int
run(Kmsd *k, const char *config_path, gboolean foreground)
{
	g_autoptr(GError) e = NULL;
	g_autoptr(KmsSecret) pw = NULL;
	g_autoptr(KmsShareSet) set = NULL;
	const char *pidfile, *pwfile;
	gboolean detached = FALSE;
	int version;

	k->cfg = kms_config_load(config_path, &e);
	if (k->cfg == NULL) {
		fprintf(stderr, "kmsd: %s\n", e->message);
		return 1;
	}
	kms_log_configure(kms_config_get(k->cfg, "log", "facility"),
	    kms_config_get(k->cfg, "log", "level"));
	audit_actor();
	/* The password file may be readable by root only: read it first. */
	pwfile = kms_config_get(k->cfg, "kms", "startup_password_file");
	if (pwfile && (pw = kms_password_read(pwfile, NULL, FALSE, &e)) == NULL) {
		fprintf(stderr, "kmsd: %s\n", e->message);
		return 1;
	}
	if (!kms_daemon_drop_privileges(kms_config_get(k->cfg, "kms", "user"), &e)) {
		fprintf(stderr, "kmsd: %s\n", e->message);
		return 1;
	}
	k->vault = kms_vault_connect(kms_config_dsn(k->cfg, "kms"), "kmsd", &e);
	if (k->vault == NULL || !kms_vault_schema_version(k->vault, &version, &e) ||
	    (pw == NULL && !kms_vault_share_set(k->vault, &set, &e))) {
		fprintf(stderr, "kmsd: %s\n", e->message);
		return 1;
	}
	k->loop = g_main_loop_new(NULL, FALSE);
	if (pw == NULL && set != NULL) {
		/* (not before a password prompt: Ctrl-C must still end it) */
		g_unix_signal_add(SIGTERM, on_stop, k);
		g_unix_signal_add(SIGINT, on_stop, k);
		/* Shamir: wait sealed for kmsctl unseal, detached already. */
		if (!foreground) {
			if (!kms_daemon_detach(&e)) {
				fprintf(stderr, "kmsd: %s\n", e->message);
				return 1;
			}
			kms_log_init("kmsd", KMS_LOG_SYSLOG);
			PQreset(kms_vault_db(k->vault));
			audit_actor();
			detached = TRUE;
		}
		if (!wait_for_shares(k, set, &e)) {
			unseal_session_end(k);
			if (e == NULL) {
				kms_info("stopped while sealed");
				return 0;
			}
			kms_err("%s", e->message);
			return 1;
		}
		kms_info("vault unsealed with %u of %u shares", set->threshold, set->count);
	} else if ((pw == NULL && (pw = kms_password_read(NULL, "kmsd startup password: ",
	    FALSE, &e)) == NULL) || !kms_vault_unseal(k->vault, pw, &e)) {
		if (g_error_matches(e, KMS_VAULT_ERROR, KMS_VAULT_ERROR_PASSWORD))
			audit(k, "wrong startup password", NULL);
		fprintf(stderr, "kmsd: %s\n", e->message);
		return 1;
	}
	pw = kms_secret_free(pw);
	if (!kms_worker_init(&k->worker, k->vault, k->cfg, &e)) {
		if (detached)
			kms_err("%s", e->message);
		else
			fprintf(stderr, "kmsd: %s\n", e->message);
		return 1;
	}
	if (!foreground && !detached) {
		if (!kms_daemon_detach(&e)) {
			fprintf(stderr, "kmsd: %s\n", e->message);
			return 1;
		}
		kms_log_init("kmsd", KMS_LOG_SYSLOG);
		/* the forked child needs its own connection */
		PQreset(kms_vault_db(k->vault));
		audit_actor();
	}
	pidfile = kms_config_get(k->cfg, "kms", "pid_file");
	if (pidfile && !kms_daemon_write_pidfile(pidfile, &e)) {
		kms_err("%s", e->message);
		return 1;
	}
	k->worker_id = g_strdup_printf("%s:%ld:%08x", g_get_host_name(), (long)getpid(),
	    g_random_int());
	if ((k->audit_key = kms_audit_key(k->vault, &e)) == NULL) {
		kms_err("%s", e->message);
		return 1;
	}
	{
		g_autoptr(JsonObject) d = json_object_new();

		json_object_set_string_member(d, "worker", k->worker_id);
		json_object_set_string_member(d, "unsealed_with", set ? "shares" : "password");
		audit(k, "kmsd started", d);
	}
	heartbeat(k);
	kms_info("vault unsealed (schema version %d); worker %s ready", version, k->worker_id);

	if (set == NULL) {	/* (the shares path installed them before waiting) */
		g_unix_signal_add(SIGTERM, on_stop, k);
		g_unix_signal_add(SIGINT, on_stop, k);
	}
	if (k->stopping)
		goto stop;
	g_timeout_add_seconds((guint)kms_config_get_int(k->cfg, "kms", "heartbeat"), heartbeat, k);
	g_idle_add(make_transport_key, k);
	g_main_loop_run(k->loop);
stop:
	{
		KmsDbParams p = KMS_DB_PARAMS_INIT;

		kms_db_param_text(&p, k->worker_id);
		g_autoptr(JsonObject) d = json_object_new();

		if (!kms_db_exec(kms_vault_db(k->vault), "DELETE FROM workers WHERE id = $1", &p, &e))
			kms_warn("cannot deregister: %s", e->message);
		json_object_set_string_member(d, "worker", k->worker_id);
		audit(k, "kmsd stopped", d);
		audit_mac(k);
	}
	unseal_session_end(k);
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
	kms_secret_free(k.audit_key);
	g_free(a.config_path);
	return rc;
}
