/*
 * NAME
 *	kmsctl backup, kmsctl restore - encrypted vault snapshots
 * SYNOPSIS
 *	kmsctl backup --out FILE [--password-file F]
 *	kmsctl restore FILE [--password-file F]
 * DESCRIPTION
 *	backup writes one consistent snapshot of vault, CA and revocation
 *	state, encrypted under a key derived from a backup password
 *	(backup.h), to FILE: first to a temporary file beside it (mode 0600),
 *	synced and then renamed, so FILE is either the old or the whole new
 *	backup. restore creates the vault in an empty database from FILE.
 * SECURITY
 *	Neither needs the startup password and neither opens a sealed key:
 *	the vault key stays wrapped under the startup password inside the
 *	backup, so kmsd asks for that same password after a restore. The
 *	backup password comes from a file or the terminal, never argv.
 */
#include "autoconfig.h"
#include "kmsctl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/secret.h"
#include "keyvault/backup.h"

static char *
iso_time(gint64 t)
{
	g_autoptr(GDateTime) dt = g_date_time_new_from_unix_utc(t);

	return dt ? g_date_time_format(dt, "%Y-%m-%dT%H:%M:%SZ") : g_strdup("?");
}

/* kmsctl backup --out FILE */
int
kmsctl_cmd_backup(KmsCtl *ctl, int argc, char **argv)
{
	g_autofree char *out = NULL, *pwfile = NULL, *tmp = NULL;
	const GOptionEntry entries[] = {
		{"out", 'o', 0, G_OPTION_ARG_FILENAME, &out,
		 "write the backup to FILE (required)", "FILE"},
		{"password-file", 0, 0, G_OPTION_ARG_FILENAME, &pwfile,
		 "file holding the backup password (else prompt)", "FILE"},
		G_OPTION_ENTRY_NULL
	};
	g_autoptr(GError) e = NULL;
	g_autoptr(KmsSecret) pw = NULL;
	KmsBackupInfo info;
	KmsVault *v = NULL;
	FILE *f = NULL;
	int rc, fd;

	if ((rc = kmsctl_parse(ctl, &argc, &argv, entries, "",
	    "Write an encrypted, consistent snapshot of the vault to a file.")) != KMSCTL_OK)
		return rc;
	if (argc > 1) {
		fprintf(stderr, "kmsctl backup: unexpected argument '%s'\n", argv[1]);
		return KMSCTL_USAGE;
	}
	if (out == NULL || *out == '\0') {
		fprintf(stderr, "kmsctl backup: --out FILE is required\n");
		return KMSCTL_USAGE;
	}
	if ((v = kmsctl_connect(ctl)) == NULL)
		return KMSCTL_FAIL;
	if ((pw = kms_password_read(pwfile, "Backup password: ", TRUE, &e)) == NULL) {
		rc = kmsctl_fail_error(e);
		goto done;
	}
	tmp = g_strconcat(out, ".XXXXXX", NULL);
	if ((fd = g_mkstemp_full(tmp, O_WRONLY | O_CLOEXEC, 0600)) < 0) {
		rc = kmsctl_fail("cannot create %s: %s", tmp, g_strerror(errno));
		g_clear_pointer(&tmp, g_free);
		goto done;
	}
	if ((f = fdopen(fd, "wb")) == NULL) {
		close(fd);
		rc = kmsctl_fail("cannot write %s: %s", tmp, g_strerror(errno));
		goto done;
	}
	if (!kms_backup_write(kms_vault_db(v), f, pw,
	    (guint32)kms_config_get_int(ctl->cfg, "kms", "kdf_passes"),
	    (guint32)(kms_config_get_int(ctl->cfg, "kms", "kdf_memory") / 1024), &info, &e)) {
		rc = kmsctl_fail_error(e);
		goto done;
	}
	if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
		rc = kmsctl_fail("cannot write %s: %s", tmp, g_strerror(errno));
		goto done;
	}
	if (fclose(f) != 0) {
		f = NULL;
		rc = kmsctl_fail("cannot write %s: %s", tmp, g_strerror(errno));
		goto done;
	}
	f = NULL;
	if (rename(tmp, out) != 0) {
		rc = kmsctl_fail("cannot rename %s to %s: %s", tmp, out, g_strerror(errno));
		goto done;
	}
	g_clear_pointer(&tmp, g_free);
	{
		g_autoptr(JsonObject) d = json_object_new();

		json_object_set_string_member(d, "file", out);
		json_object_set_int_member(d, "rows", info.rows);
		kmsctl_audit_alone(v, "backup", d);
	}
	printf("backup of database %s written to %s: %d tables, %" G_GINT64_FORMAT
	    " rows, %d sequences, schema version %d\n", PQdb(kms_vault_db(v)), out,
	    info.tables, info.rows, info.sequences, info.schema_version);
	rc = KMSCTL_OK;
done:
	if (f)
		fclose(f);
	if (tmp)
		(void)unlink(tmp);
	kms_vault_close(v);
	return rc;
}

/* kmsctl restore FILE */
int
kmsctl_cmd_restore(KmsCtl *ctl, int argc, char **argv)
{
	g_autofree char *pwfile = NULL, *when = NULL;
	const GOptionEntry entries[] = {
		{"password-file", 0, 0, G_OPTION_ARG_FILENAME, &pwfile,
		 "file holding the backup password (else prompt)", "FILE"},
		G_OPTION_ENTRY_NULL
	};
	g_autoptr(GError) e = NULL;
	g_autoptr(KmsSecret) pw = NULL;
	KmsBackupInfo info;
	KmsVault *v = NULL;
	FILE *f = NULL;
	gboolean exists;
	int rc;

	if ((rc = kmsctl_parse(ctl, &argc, &argv, entries, "FILE",
	    "Create the vault in an empty database from a kmsctl backup.")) != KMSCTL_OK)
		return rc;
	if (argc != 2) {
		fprintf(stderr, "kmsctl restore: %s\nTry 'kmsctl restore --help'.\n",
		    argc < 2 ? "which backup file?" : "one backup file only");
		return KMSCTL_USAGE;
	}
	if ((f = fopen(argv[1], "rb")) == NULL)
		return kmsctl_fail("cannot open %s: %s", argv[1], g_strerror(errno));
	ctl->skip_admin = TRUE;	/* the database is empty */
	if ((v = kmsctl_connect(ctl)) == NULL) {
		fclose(f);
		return KMSCTL_FAIL;
	}
	/* refuse before asking for a password */
	if (!kms_vault_exists(v, &exists, &e)) {
		rc = kmsctl_fail_error(e);
		goto done;
	}
	if (exists) {
		rc = kmsctl_fail("database %s already holds a vault; restore only into an"
		    " empty database (createdb)", PQdb(kms_vault_db(v)));
		goto done;
	}
	if ((pw = kms_password_read(pwfile, "Backup password: ", FALSE, &e)) == NULL ||
	    !kms_backup_restore(kms_vault_db(v), f, pw, &info, &e)) {
		rc = kmsctl_fail_error(e);
		goto done;
	}
	when = iso_time(info.created);
	{
		g_autoptr(JsonObject) d = json_object_new();

		json_object_set_string_member(d, "file", argv[1]);
		json_object_set_string_member(d, "backup_of", when);
		json_object_set_int_member(d, "rows", info.rows);
		kmsctl_audit_alone(v, "restore", d);
	}
	printf("database %s restored from %s (backup of %s): %d tables, %" G_GINT64_FORMAT
	    " rows, %d sequences\n", PQdb(kms_vault_db(v)), argv[1], when, info.tables,
	    info.rows, info.sequences);
	printf("start kmsd: it unseals with the startup password (or the shares) valid"
	    " when the backup was made\n");
	rc = KMSCTL_OK;
done:
	fclose(f);
	kms_vault_close(v);
	return rc;
}
