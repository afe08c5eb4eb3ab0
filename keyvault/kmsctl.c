/*
 * NAME
 *	kmsctl - administrator command line for the kmsmilter key vault
 * SYNOPSIS
 *	kmsctl [-c FILE] COMMAND [options] [arguments]
 * DESCRIPTION
 *	Dispatches to one function per command; see kmsctl(8). This file
 *	holds the shared plumbing and the init and passwd commands.
 * SECURITY
 *	Runs with the administrator's database role. The startup password is
 *	read into secure memory and wiped; the process is not dumpable.
 */
#include "autoconfig.h"
#include "kmsctl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/pem.h>

#include "common/log.h"
#include "common/secret.h"
#include "keyvault/audit.h"
#include "keyvault/queuekey.h"
#include "keyvault/vaultca.h"
#include "smime/x509util.h"

int
kmsctl_fail(const char *fmt, ...)
{
	va_list ap;
	g_autofree char *msg = NULL;

	va_start(ap, fmt);
	msg = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	fprintf(stderr, "kmsctl: %s\n", msg);
	return KMSCTL_FAIL;
}

int
kmsctl_fail_error(const GError *e)
{
	return kmsctl_fail("%s", e ? e->message : "unknown error");
}

int
kmsctl_parse(KmsCtl *ctl, int *argc, char ***argv, const GOptionEntry *entries,
    const char *params, const char *summary)
{
	char *cpath = NULL;
	const GOptionEntry common[] = {
		{"config", 'c', 0, G_OPTION_ARG_FILENAME, &cpath,
		 "configuration file", "FILE"},
		G_OPTION_ENTRY_NULL
	};
	g_autoptr(GOptionContext) oc = g_option_context_new(params);
	g_autoptr(GError) e = NULL;

	g_option_context_set_summary(oc, summary);
	g_option_context_add_main_entries(oc, common, NULL);
	if (entries)
		g_option_context_add_main_entries(oc, entries, NULL);
	if (!g_option_context_parse(oc, argc, argv, &e)) {
		fprintf(stderr, "kmsctl %s: %s\nTry 'kmsctl %s --help'.\n", (*argv)[0],
		    e->message, (*argv)[0]);
		return KMSCTL_USAGE;
	}
	if (cpath) {
		g_free(ctl->config_path);
		ctl->config_path = cpath;
	}
	return KMSCTL_OK;
}

KmsConfig *
kmsctl_config(KmsCtl *ctl)
{
	g_autoptr(GError) e = NULL;

	if (ctl->cfg)
		return ctl->cfg;
	ctl->cfg = kms_config_load(ctl->config_path, &e);
	if (ctl->cfg == NULL)
		kmsctl_fail_error(e);
	return ctl->cfg;
}

KmsVault *
kmsctl_connect(KmsCtl *ctl)
{
	g_autoptr(GError) e = NULL;
	KmsVault *v;

	if (kmsctl_config(ctl) == NULL)
		return NULL;
	v = kms_vault_connect(kms_config_get(ctl->cfg, "vault", "dsn"), "kmsctl", &e);
	if (v == NULL)
		kmsctl_fail_error(e);
	else if (!ctl->skip_admin) {
		KmsAdmin *a;

		if (!kmsctl_admin(ctl, v, FALSE, &a))
			v = kms_vault_close(v);
	}
	return v;
}

gboolean
kmsctl_unseal(KmsCtl *ctl, KmsVault *v, const char *password_file)
{
	g_autoptr(GError) e = NULL;
	g_autoptr(KmsSecret) pw = kms_password_read(password_file, "Startup password: ", FALSE, &e);

	if (pw == NULL || !kms_vault_unseal(v, pw, &e)) {
		if (g_error_matches(e, KMS_VAULT_ERROR, KMS_VAULT_ERROR_PASSWORD))
			kmsctl_audit_alone(v, "wrong startup password", NULL);
		kmsctl_fail_error(e);
		return FALSE;
	}
	return TRUE;
}

void
kmsctl_print_json(JsonBuilder *b)
{
	g_autoptr(JsonGenerator) g = json_generator_new();
	g_autoptr(JsonNode) root = json_builder_get_root(b);
	g_autofree char *text = NULL;

	json_generator_set_pretty(g, TRUE);
	json_generator_set_root(g, root);
	text = json_generator_to_data(g, NULL);
	printf("%s\n", text);
}

/* kmsctl init: schema, roles, sealed vault key, internal CA. */
static int
cmd_init(KmsCtl *ctl, int argc, char **argv)
{
	g_autofree char *pwfile = NULL, *csr_out = NULL, *share_dir = NULL;
	g_autofree char *admin = NULL, *admin_pw = NULL;
	int nshares = 0, threshold = 0;
	const GOptionEntry entries[] = {
		{"admin", 0, 0, G_OPTION_ARG_STRING, &admin,
		 "create the first administrator, NAME", "NAME"},
		{"admin-password-file", 0, 0, G_OPTION_ARG_FILENAME, &admin_pw,
		 "file holding that administrator's passphrase (else prompt)", "FILE"},
		{"password-file", 0, 0, G_OPTION_ARG_FILENAME, &pwfile,
		 "file holding the new startup password (else prompt; with --shares: none"
		 " unless given)", "FILE"},
		{"shares", 0, 0, G_OPTION_ARG_INT, &nshares,
		 "also make N Shamir unseal shares (kmsctl unseal)", "N"},
		{"threshold", 0, 0, G_OPTION_ARG_INT, &threshold,
		 "shares needed to unseal (with --shares)", "M"},
		{"share-dir", 0, 0, G_OPTION_ARG_FILENAME, &share_dir,
		 "write the shares to DIR/share-1 ... (mode 0600) instead of printing them", "DIR"},
		{"ca-csr", 0, 0, G_OPTION_ARG_FILENAME, &csr_out,
		 "make a subordinate CA: write its request to FILE (install with kmsctl ca install)",
		 "FILE"},
		G_OPTION_ENTRY_NULL
	};
	g_autoptr(GError) e = NULL;
	g_autoptr(KmsSecret) pw = NULL;
	g_autoptr(GPtrArray) shares = NULL;
	KmsVault *v = NULL;
	KmsKeyType kt;
	X509_REQ *csr = NULL;
	int rc;
	const char *subject;
	PGconn *db;

	if ((rc = kmsctl_parse(ctl, &argc, &argv, entries, "",
	    "Create the vault in an existing, empty database.")) != KMSCTL_OK)
		return rc;
	if (argc > 1) {
		fprintf(stderr, "kmsctl init: unexpected argument '%s'\n", argv[1]);
		return KMSCTL_USAGE;
	}
	if ((nshares || threshold || share_dir) &&
	    (threshold < 2 || nshares < threshold || nshares > KMS_SHARES_MAX)) {
		fprintf(stderr, "kmsctl init: want --shares N --threshold M with"
		    " 2 <= M <= N <= %d\n", KMS_SHARES_MAX);
		return KMSCTL_USAGE;
	}
	if (kmsctl_config(ctl) == NULL)
		return KMSCTL_FAIL;
	ctl->skip_admin = TRUE;
	if (!kms_key_type_parse(kms_config_get(ctl->cfg, "ca", "key_type"), &kt))
		return kmsctl_fail("[ca] key_type: unsupported");
	subject = kms_config_get(ctl->cfg, "ca", "subject");
	if ((v = kmsctl_connect(ctl)) == NULL)
		return KMSCTL_FAIL;
	db = kms_vault_db(v);
	{
		gboolean exists;

		/* Refuse early, before asking for a password. */
		if (!kms_vault_exists(v, &exists, &e)) {
			rc = kmsctl_fail_error(e);
			goto out;
		}
		if (exists) {
			rc = kmsctl_fail("database %s already holds a vault; refusing to"
			    " initialise it again", PQdb(db));
			goto out;
		}
	}
	/* With shares, a startup password only when one is given: the point of
	 * shares is that no single person can unseal. */
	if ((nshares == 0 || pwfile != NULL) &&
	    (pw = kms_password_read(pwfile, "New startup password: ", TRUE, &e)) == NULL) {
		rc = kmsctl_fail_error(e);
		goto out;
	}
	if (!kms_db_begin(db, &e) ||
	    !kms_vault_create(v, pw, (guint32)kms_config_get_int(ctl->cfg, "kms", "kdf_passes"),
		(guint32)(kms_config_get_int(ctl->cfg, "kms", "kdf_memory") / 1024), &e))
		goto failed;
	if (csr_out) {
		FILE *f;

		csr = kms_vault_ca_create_csr(v, kt, subject, &e);
		if (csr == NULL)
			goto failed;
		f = fopen(csr_out, "w");
		if (f == NULL || PEM_write_X509_REQ(f, csr) != 1 || fclose(f) != 0) {
			g_set_error(&e, G_FILE_ERROR, 0, "cannot write %s: %s", csr_out,
			    g_strerror(errno));
			goto failed;
		}
	} else if (!kms_vault_ca_create_root(v, kt, subject,
	    (int)kms_config_get_int(ctl->cfg, "ca", "ca_days"), &e))
		goto failed;
	if (!kms_queue_key_create(v, &e) ||
	    !kmsctl_init_admins(ctl, v, admin ? admin : ctl->admin_name,
		admin_pw ? admin_pw : ctl->admin_password_file, &e))
		goto failed;
	if (nshares && ((shares = kms_vault_shares_create(v, (guint)nshares, (guint)threshold,
	    &e)) == NULL || (share_dir && !kmsctl_write_share_files(shares, share_dir, &e))))
		goto failed;
	{
		g_autoptr(JsonObject) d = json_object_new();

		json_object_set_string_member(d, "database", PQdb(db));
		json_object_set_boolean_member(d, "password", pw != NULL);
		json_object_set_int_member(d, "shares", nshares);
		json_object_set_int_member(d, "threshold", threshold);
		json_object_set_string_member(d, "ca", csr_out ? "subordinate (CSR)" : "root");
		if (!kms_audit_append(db, "init", d, &e))
			goto failed;
	}
	if (!kms_db_commit(db, &e))
		goto failed;
	{
		/* we hold the vault key now: MAC the first entry ourselves */
		g_autoptr(KmsSecret) ak = kms_audit_key(v, NULL);
		gint64 high = 0;

		if (ak == NULL || !kms_audit_mac_pending(db, ak, &high, NULL, NULL))
			fprintf(stderr, "kmsctl: warning: the audit log's first entry is not MACed"
			    " (kmsd will)\n");
	}

	printf("vault created in database %s (schema version %d)\n", PQdb(db), KMS_SCHEMA_VERSION);
	if (admin || ctl->admin_name)
		printf("first administrator: %s\n", admin ? admin : ctl->admin_name);
	if (csr_out)
		printf("subordinate CA request written to %s; have it signed, then run"
		    " kmsctl ca install CERT [CHAIN]\n", csr_out);
	else {
		KmsVaultCa *ca = kms_vault_ca_load(v, NULL);

		if (ca && ca->cert) {
			g_autofree char *na = kms_asn1_time_iso8601(X509_get0_notAfter(ca->cert));

			printf("internal root CA: %s (%s), valid until %s\n", ca->subject,
			    ca->key_type, na);
		}
		kms_vault_ca_free(ca);
	}
	if (shares) {
		printf("sealed with %s%d of %d shares\n", pw ? "the startup password and with " : "",
		    threshold, nshares);
		kmsctl_print_shares(shares, (guint)threshold, share_dir);
	}
	rc = KMSCTL_OK;
	goto out;
failed:
	kms_db_rollback(db);
	if (csr_out && csr)
		(void)unlink(csr_out);
	rc = kmsctl_fail_error(e);
out:
	X509_REQ_free(csr);
	kms_vault_close(v);
	return rc;
}

/* kmsctl passwd: rewrap the vault key under a new startup password. */
static int
cmd_passwd(KmsCtl *ctl, int argc, char **argv)
{
	g_autofree char *oldf = NULL, *newf = NULL;
	const GOptionEntry entries[] = {
		{"old-password-file", 0, 0, G_OPTION_ARG_FILENAME, &oldf,
		 "file holding the current startup password (else prompt)", "FILE"},
		{"new-password-file", 0, 0, G_OPTION_ARG_FILENAME, &newf,
		 "file holding the new startup password (else prompt)", "FILE"},
		G_OPTION_ENTRY_NULL
	};
	g_autoptr(GError) e = NULL;
	g_autoptr(KmsSecret) oldpw = NULL, newpw = NULL;
	KmsVault *v;
	int rc;

	if ((rc = kmsctl_parse(ctl, &argc, &argv, entries, "",
	    "Change the startup password (only the vault key is rewrapped).")) != KMSCTL_OK)
		return rc;
	if (argc > 1) {
		fprintf(stderr, "kmsctl passwd: unexpected argument '%s'\n", argv[1]);
		return KMSCTL_USAGE;
	}
	if ((v = kmsctl_connect(ctl)) == NULL)
		return KMSCTL_FAIL;
	if ((oldpw = kms_password_read(oldf, "Current startup password: ", FALSE, &e)) == NULL ||
	    (newpw = kms_password_read(newf, "New startup password: ", TRUE, &e)) == NULL ||
	    !kms_vault_change_password(v, oldpw, newpw,
		(guint32)kms_config_get_int(ctl->cfg, "kms", "kdf_passes"),
		(guint32)(kms_config_get_int(ctl->cfg, "kms", "kdf_memory") / 1024), &e)) {
		if (g_error_matches(e, KMS_VAULT_ERROR, KMS_VAULT_ERROR_PASSWORD))
			kmsctl_audit_alone(v, "wrong startup password", NULL);
		rc = kmsctl_fail_error(e);
	} else {
		/* (its own transaction: kms_vault_change_password committed) */
		kmsctl_audit_alone(v, "passwd", NULL);
		printf("startup password changed\n");
		rc = KMSCTL_OK;
	}
	kms_vault_close(v);
	return rc;
}

static const struct {
	const char *name;
	KmsCtlCommand fn;
	const char *help;
} commands[] = {
	{"init", cmd_init, "create the vault, its sealed key and the internal CA"},
	{"status", kmsctl_cmd_status, "vault, kmsd workers, queue depth, CA validity"},
	{"passwd", cmd_passwd, "change the startup password"},
	{"unseal", kmsctl_cmd_unseal, "give one Shamir unseal share to a waiting kmsd"},
	{"rekey", kmsctl_cmd_rekey, "make a new set of Shamir unseal shares"},
	{"ca", kmsctl_cmd_ca, "show or install the CA certificate"},
	{"enroll", kmsctl_cmd_enroll, "enroll users: one-time tokens and token mails"},
	{"recover", kmsctl_cmd_recover, "key recovery: token mail, then a PKCS#12 of the key history"},
	{"revoke", kmsctl_cmd_revoke, "revoke a user's certificates or one serial; new CRL"},
	{"crl", kmsctl_cmd_crl, "print or save the current CRL"},
	{"cert", kmsctl_cmd_cert, "list and show issued and harvested certificates"},
	{"ctl", kmsctl_cmd_ctl, "certificate trust list: external roots for harvested chains"},
	{"policy", kmsctl_cmd_policy, "show or set the encryption policy per domain and user"},
	{"negotiate", kmsctl_cmd_negotiate, "how a message to given recipients would be encrypted"},
	{"admin", kmsctl_cmd_admin, "add, remove and list administrators; change your passphrase"},
	{"requests", kmsctl_cmd_requests, "requests waiting for administrators' approvals"},
	{"approve", kmsctl_cmd_approve, "approve a request waiting for approvals"},
	{"reject", kmsctl_cmd_reject, "reject a request waiting for approvals"},
	{"audit", kmsctl_cmd_audit, "list the audit log or verify its hash chain and MACs"},
	{"transport-cert", kmsctl_cmd_transport_cert,
	 "this vault's transport certificate, which other vaults export to"},
	{"export", kmsctl_cmd_export, "move users and their key history to another vault"},
	{"import", kmsctl_cmd_import, "import users and key history another vault exported"},
	{"backup", kmsctl_cmd_backup, "write an encrypted, consistent snapshot of the vault"},
	{"restore", kmsctl_cmd_restore, "create the vault in an empty database from a backup"},
};

static void
usage(FILE *out)
{
	int width = 0;

	fprintf(out, "usage: kmsctl [-c FILE] [--admin NAME [--admin-password-file F]] COMMAND"
	    " [options] [arguments]\n\ncommands:\n");
	for (size_t i = 0; i < G_N_ELEMENTS(commands); i++)
		width = MAX(width, (int)strlen(commands[i].name));
	for (size_t i = 0; i < G_N_ELEMENTS(commands); i++)
		fprintf(out, "  %-*s  %s\n", width, commands[i].name, commands[i].help);
	fprintf(out, "\n'kmsctl COMMAND --help' describes each; see kmsctl(8).\n");
}

int
main(int argc, char **argv)
{
	KmsCtl ctl = {0};
	int i, rc;

	kms_secmem_init();
	kms_log_init("kmsctl", KMS_LOG_STDERR);
	ctl.config_path = g_strdup(kms_config_default_path());
	/* actor of audit entries: the login, and per entry the database role */
	kms_audit_set_actor(g_get_user_name(), TRUE, TRUE);

	/* Global options before the command: -c FILE, --help. */
	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc) {
			g_free(ctl.config_path);
			ctl.config_path = g_strdup(argv[++i]);
		} else if (g_str_has_prefix(argv[i], "--config=")) {
			g_free(ctl.config_path);
			ctl.config_path = g_strdup(argv[i] + strlen("--config="));
		} else if (strcmp(argv[i], "--admin") == 0 && i + 1 < argc) {
			g_free(ctl.admin_name);
			ctl.admin_name = g_strdup(argv[++i]);
		} else if (g_str_has_prefix(argv[i], "--admin=")) {
			g_free(ctl.admin_name);
			ctl.admin_name = g_strdup(argv[i] + strlen("--admin="));
		} else if (strcmp(argv[i], "--admin-password-file") == 0 && i + 1 < argc) {
			g_free(ctl.admin_password_file);
	kms_admin_free(ctl.admin);
			ctl.admin_password_file = g_strdup(argv[++i]);
		} else if (g_str_has_prefix(argv[i], "--admin-password-file=")) {
			g_free(ctl.admin_password_file);
			ctl.admin_password_file = g_strdup(argv[i] + strlen("--admin-password-file="));
		} else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			rc = KMSCTL_OK;
			goto out;
		} else if (strcmp(argv[i], "--version") == 0) {
			printf("kmsctl (%s) %s\n", PACKAGE_NAME, PACKAGE_VERSION);
			rc = KMSCTL_OK;
			goto out;
		} else {
			fprintf(stderr, "kmsctl: unknown option '%s'\n", argv[i]);
			usage(stderr);
			rc = KMSCTL_USAGE;
			goto out;
		}
	}
	if (i >= argc) {
		usage(stderr);
		rc = KMSCTL_USAGE;
		goto out;
	}
	rc = -1;
	for (size_t c = 0; c < G_N_ELEMENTS(commands); c++)
		if (strcmp(argv[i], commands[c].name) == 0) {
			rc = commands[c].fn(&ctl, argc - i, argv + i);
			break;
		}
	if (rc < 0) {
		fprintf(stderr, "kmsctl: unknown command '%s'\n", argv[i]);
		usage(stderr);
		rc = KMSCTL_USAGE;
	}
out:
	kms_config_free(ctl.cfg);
	g_free(ctl.config_path);
	g_free(ctl.admin_name);
	g_free(ctl.admin_password_file);
	return rc;
}
