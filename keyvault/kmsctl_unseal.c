/*
 * NAME
 *	kmsctl_unseal - Shamir shares: kmsctl unseal, kmsctl rekey
 * SYNOPSIS
 *	kmsctl unseal [--share-file FILE] [--fingerprint HEX] [--timeout SECONDS]
 *	kmsctl rekey --shares N --threshold M [--share-dir DIR]
 *	    [--password-file FILE | --share-file FILE...]
 * DESCRIPTION
 *	unseal hands one administrator's share to every kmsd waiting sealed
 *	(shamir.h): the share is checked against the vault's check values
 *	first (a wrong one is refused here, naming its number), encrypted to
 *	each waiting kmsd's session key and queued in unseal_shares; kmsctl
 *	then waits for kmsd's answer and prints it ("share accepted (2 of 3)",
 *	"vault unsealed", "share rejected: ..."). rekey makes a new share set
 *	(the old shares stop working) on a vault opened with the startup
 *	password or with enough of the current shares. kmsctl_emit_shares()
 *	prints new shares once or writes each to a file of its own.
 * SECURITY
 *	Shares are read into secure memory from a file or the terminal (echo
 *	off), never from argv, and wiped; they travel only encrypted. A share
 *	is printed only by init and rekey, once.
 * DIAGNOSTICS
 *	Exit 0 when kmsd accepted the share (or unsealed), 1 when it was
 *	rejected or nobody answered, 2 on usage errors.
 */
#include "autoconfig.h"
#include "kmsctl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keyvault/audit.h"
#include "keyvault/queuekey.h"
#include "keyvault/shamir.h"

gboolean
kmsctl_write_share_files(GPtrArray *shares, const char *dir, GError **err)
{
	for (guint i = 0; i < shares->len; i++) {
		const KmsShare *s = g_ptr_array_index(shares, i);
		g_autofree char *path = g_strdup_printf("%s/share-%u", dir, s->index);
		g_autoptr(KmsSecret) text = kms_share_format(s);
		int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		gboolean ok;

		if (fd < 0) {
			g_set_error(err, G_FILE_ERROR, g_file_error_from_errno(errno),
			    "cannot create %s: %s", path, g_strerror(errno));
			return FALSE;
		}
		ok = write(fd, text->data, text->len) == (ssize_t)text->len &&
		    write(fd, "\n", 1) == 1;
		if (close(fd) != 0 || !ok) {
			g_set_error(err, G_FILE_ERROR, G_FILE_ERROR_IO, "cannot write %s", path);
			return FALSE;
		}
	}
	return TRUE;
}

void
kmsctl_print_shares(GPtrArray *shares, guint threshold, const char *dir)
{
	if (dir) {
		printf("%u shares written to %s/share-1 ... share-%u (mode 0600);"
		    " any %u of them unseal the vault\n", shares->len, dir, shares->len, threshold);
		return;
	}
	printf("Unseal shares: any %u of these %u unseal the vault. They are shown once"
	    " and stored nowhere; give each to a different administrator.\n",
	    threshold, shares->len);
	for (guint i = 0; i < shares->len; i++) {
		const KmsShare *s = g_ptr_array_index(shares, i);
		g_autoptr(KmsSecret) text = kms_share_format(s);

		printf("Share %u/%u: %s\n", s->index, shares->len, (const char *)text->data);
	}
	fflush(stdout);
}

/* Read the shares in FILES and unseal V with them. */
gboolean
kmsctl_unseal_with_share_files(KmsVault *v, char **files, GError **err)
{
	g_autoptr(GPtrArray) shares = g_ptr_array_new_with_free_func(kms_share_destroy);

	for (char **f = files; f && *f; f++) {
		KmsShare *s = kms_share_read(*f, NULL, err);

		if (s == NULL) {
			g_prefix_error(err, "%s: ", *f);
			return FALSE;
		}
		g_ptr_array_add(shares, s);
	}
	return kms_vault_unseal_shares(v, (KmsShare *const *)shares->pdata, shares->len, err);
}

/* Wait until kmsd answered row ID; prints the answer; KMSCTL_OK/FAIL. */
static int
await_answer(PGconn *db, gint64 id, const char *worker, gboolean many, int timeout)
{
	const char *prefix = "";
	g_autofree char *pbuf = many ? g_strdup_printf("kmsd %s: ", worker) : NULL;

	if (pbuf)
		prefix = pbuf;
	for (int waited = 0; waited <= timeout * 10; waited++) {
		KmsDbParams p = KMS_DB_PARAMS_INIT;
		g_autoptr(GError) e = NULL;
		g_autoptr(PGresult) r = NULL;
		const char *status, *detail;
		int rc = KMSCTL_OK;

		kms_db_param_int(&p, id);
		r = kms_db_run(db, "SELECT status, coalesce(detail, '') FROM unseal_shares"
		    " WHERE id = $1", &p, &e);
		if (r == NULL)
			return kmsctl_fail_error(e);
		if (PQntuples(r) == 0)
			return kmsctl_fail("%sthe kmsd stopped before it answered", prefix);
		status = PQgetvalue(r, 0, 0);
		detail = PQgetvalue(r, 0, 1);
		if (strcmp(status, "pending") == 0) {
			g_usleep(100 * 1000);
			continue;
		}
		if (strcmp(status, "accepted") == 0)
			printf("%sshare accepted (%s)\n", prefix, detail);
		else if (strcmp(status, "unsealed") == 0)
			printf("%svault unsealed\n", prefix);
		else if (strcmp(status, "duplicate") == 0)
			printf("%s%s\n", prefix, detail);
		else
			rc = kmsctl_fail("%sshare rejected: %s", prefix, detail);
		kms_db_params_clear(&p);
		kms_db_param_int(&p, id);
		(void)kms_db_exec(db, "DELETE FROM unseal_shares WHERE id = $1", &p, NULL);
		return rc;
	}
	return kmsctl_fail("%skmsd did not answer within %d s", prefix, timeout);
}

/* kmsctl unseal: one share to every kmsd waiting sealed. */
int
kmsctl_cmd_unseal(KmsCtl *ctl, int argc, char **argv)
{
	g_autofree char *file = NULL, *want_fp = NULL;
	int timeout = 15;
	const GOptionEntry entries[] = {
		{"share-file", 0, 0, G_OPTION_ARG_FILENAME, &file,
		 "file holding the share (else prompt)", "FILE"},
		{"fingerprint", 0, 0, G_OPTION_ARG_STRING, &want_fp,
		 "only to the kmsd whose session key has this fingerprint (kmsd logs it)", "HEX"},
		{"timeout", 0, 0, G_OPTION_ARG_INT, &timeout,
		 "seconds to wait for kmsd's answer (default 15)", "SECONDS"},
		G_OPTION_ENTRY_NULL
	};
	g_autoptr(GError) e = NULL;
	g_autoptr(KmsShareSet) set = NULL;
	g_autoptr(KmsShare) share = NULL;
	g_autoptr(PGresult) r = NULL;
	g_autoptr(KmsSecret) text = NULL;
	g_autofree gint64 *ids = NULL;
	KmsVault *v;
	PGconn *db;
	int rc, n, sent = 0;

	if ((rc = kmsctl_parse(ctl, &argc, &argv, entries, "",
	    "Give one unseal share to the kmsd processes waiting sealed.")) != KMSCTL_OK)
		return rc;
	if (argc > 1) {
		fprintf(stderr, "kmsctl unseal: unexpected argument '%s'\n", argv[1]);
		return KMSCTL_USAGE;
	}
	if ((v = kmsctl_connect(ctl)) == NULL)
		return KMSCTL_FAIL;
	db = kms_vault_db(v);
	if (!kms_vault_schema_version(v, &n, &e) || !kms_vault_share_set(v, &set, &e)) {
		rc = kmsctl_fail_error(e);
		goto out;
	}
	if (set == NULL) {
		rc = kmsctl_fail("this vault has no unseal shares (it opens with the startup"
		    " password; kmsctl rekey --shares makes shares)");
		goto out;
	}
	if ((share = kms_share_read(file, "Unseal share: ", &e)) == NULL) {
		rc = kmsctl_fail_error(e);
		goto out;
	}
	if (!kms_share_set_check(set, share, &e)) {
		rc = kmsctl_fail("share rejected: %s", e->message);
		goto out;
	}
	r = kms_db_run(db, "SELECT id, worker, public_key FROM unseal_sessions"
	    " WHERE status = 'waiting' AND heartbeat_at > now() - interval '30 seconds'"
	    " ORDER BY id", NULL, &e);
	if (r == NULL) {
		rc = kmsctl_fail_error(e);
		goto out;
	}
	text = kms_share_format(share);
	ids = g_new0(gint64, PQntuples(r) + 1);
	for (int i = 0; i < PQntuples(r); i++) {
		g_autoptr(GBytes) pub = kms_db_get_bytes(r, i, 2);
		g_autoptr(GBytes) sealed = NULL;
		g_autofree char *fp = NULL;
		KmsDbParams p = KMS_DB_PARAMS_INIT;

		if (pub == NULL || g_bytes_get_size(pub) != KMS_QUEUE_KEY_LEN)
			continue;
		fp = kms_unseal_fingerprint(g_bytes_get_data(pub, NULL), KMS_QUEUE_KEY_LEN);
		if (want_fp && g_ascii_strcasecmp(want_fp, fp) != 0)
			continue;
		if (!kms_vault_next_id(v, "unseal_shares", &ids[i], &e) ||
		    (sealed = kms_queue_seal(g_bytes_get_data(pub, NULL), "unseal-share", ids[i],
			text->data, text->len, &e)) == NULL) {
			rc = kmsctl_fail_error(e);
			goto out;
		}
		kms_db_param_int(&p, ids[i]);
		kms_db_param_int(&p, kms_db_get_int(r, i, 0));
		kms_db_param_bytes(&p, g_bytes_get_data(sealed, NULL), g_bytes_get_size(sealed));
		if (!kms_db_exec(db, "INSERT INTO unseal_shares (id, session_id, sealed_share)"
		    " VALUES ($1, $2, $3)", &p, &e)) {
			rc = kmsctl_fail_error(e);
			goto out;
		}
		printf("share %u sent to kmsd %s (session key %s)\n", share->index,
		    PQgetvalue(r, i, 1), fp);
		sent++;
	}
	if (sent == 0) {
		rc = kmsctl_fail(want_fp ? "no waiting kmsd has session key %s" :
		    "no kmsd is waiting for shares (start kmsd without a startup password file)%s",
		    want_fp ? want_fp : "");
		goto out;
	}
	(void)kms_db_exec(db, "NOTIFY kms_unseal", NULL, NULL);
	fflush(stdout);
	rc = KMSCTL_OK;
	for (int i = 0; i < PQntuples(r); i++)
		if (ids[i] != 0 &&
		    await_answer(db, ids[i], PQgetvalue(r, i, 1), sent > 1, timeout) != KMSCTL_OK)
			rc = KMSCTL_FAIL;
out:
	kms_vault_close(v);
	return rc;
}

/* kmsctl rekey: a new share set for the vault key. */
/* The audit entry of a rekey (never the shares). */
static gboolean
audit_rekey(PGconn *db, int n, int m, GError **err)
{
	g_autoptr(JsonObject) d = json_object_new();

	json_object_set_int_member(d, "shares", n);
	json_object_set_int_member(d, "threshold", m);
	return kms_audit_append(db, "rekey", d, err);
}

int
kmsctl_cmd_rekey(KmsCtl *ctl, int argc, char **argv)
{
	g_autofree char *pwfile = NULL, *dir = NULL;
	g_auto(GStrv) share_files = NULL;
	int n = 0, m = 0;
	const GOptionEntry entries[] = {
		{"shares", 0, 0, G_OPTION_ARG_INT, &n, "number of shares to make", "N"},
		{"threshold", 0, 0, G_OPTION_ARG_INT, &m, "shares needed to unseal", "M"},
		{"share-dir", 0, 0, G_OPTION_ARG_FILENAME, &dir,
		 "write share-1 ... share-N into DIR (mode 0600) instead of printing them", "DIR"},
		{"password-file", 0, 0, G_OPTION_ARG_FILENAME, &pwfile,
		 "open the vault with the startup password in FILE (else prompt)", "FILE"},
		{"share-file", 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &share_files,
		 "open the vault with current shares instead (repeat)", "FILE"},
		G_OPTION_ENTRY_NULL
	};
	g_autoptr(GError) e = NULL;
	g_autoptr(GPtrArray) shares = NULL;
	KmsVault *v;
	PGconn *db;
	int rc;

	if ((rc = kmsctl_parse(ctl, &argc, &argv, entries, "",
	    "Make a new set of Shamir unseal shares (the old shares stop working).")) != KMSCTL_OK)
		return rc;
	if (argc > 1 || m < 2 || n < m || n > KMS_SHARES_MAX) {
		fprintf(stderr, "kmsctl rekey: want --shares N --threshold M with"
		    " 2 <= M <= N <= %d\n", KMS_SHARES_MAX);
		return KMSCTL_USAGE;
	}
	if ((v = kmsctl_connect(ctl)) == NULL)
		return KMSCTL_FAIL;
	db = kms_vault_db(v);
	if (share_files) {
		if (!kmsctl_unseal_with_share_files(v, share_files, &e)) {
			rc = kmsctl_fail_error(e);
			goto out;
		}
	} else if (!kmsctl_unseal(ctl, v, pwfile)) {
		rc = KMSCTL_FAIL;
		goto out;
	}
	if (!kms_db_begin(db, &e) ||
	    (shares = kms_vault_shares_create(v, (guint)n, (guint)m, &e)) == NULL ||
	    (dir && !kmsctl_write_share_files(shares, dir, &e)) ||
	    !audit_rekey(db, n, m, &e) || !kms_db_commit(db, &e)) {
		kms_db_rollback(db);
		rc = kmsctl_fail_error(e);
		goto out;
	}
	{
		/* the vault is unsealed here: MAC what kmsd has not yet */
		g_autoptr(KmsSecret) ak = kms_audit_key(v, NULL);
		gint64 high = 0;

		if (ak)
			(void)kms_audit_mac_pending(db, ak, &high, NULL, NULL);
	}
	printf("new unseal shares: %d of %d (earlier shares no longer work)\n", m, n);
	kmsctl_print_shares(shares, (guint)m, dir);
	rc = KMSCTL_OK;
out:
	kms_vault_close(v);
	return rc;
}
