/*
 * NAME
 *	kmsctl - administrator command line: shared declarations
 * DESCRIPTION
 *	Each subcommand is a function taking the shared context and its own
 *	argv (argv[0] is the subcommand name). Exit status: 0 success, 1 a
 *	refused or failed operation (one line on stderr), 2 a usage error.
 * SECURITY
 *	Passwords come from files or the terminal, never from argv.
 */
#ifndef KMS_KMSCTL_H
#define KMS_KMSCTL_H

#include <glib.h>
#include <json-glib/json-glib.h>

#include "common/config.h"
#include "keyvault/admin.h"
#include "keyvault/vault.h"

enum { KMSCTL_OK = 0, KMSCTL_FAIL = 1, KMSCTL_USAGE = 2 };

typedef struct {
	char *config_path;	/* -c, or the default */
	KmsConfig *cfg;		/* loaded on demand by kmsctl_config() */
	char *admin_name;	/* global --admin */
	char *admin_password_file;	/* global --admin-password-file */
	KmsAdmin *admin;	/* opened by kmsctl_admin() (owned) */
	gboolean skip_admin;	/* init, restore: no administrator to open yet */
} KmsCtl;

typedef int (*KmsCtlCommand)(KmsCtl *ctl, int argc, char **argv);

/* Parse argv with ENTRIES (plus -c); prints usage errors. Returns
 * KMSCTL_OK or KMSCTL_USAGE; leaves positional arguments in argc/argv. */
int kmsctl_parse(KmsCtl *ctl, int *argc, char ***argv, const GOptionEntry *entries,
    const char *params, const char *summary);

/* Load the configuration once; prints the error and returns NULL. */
KmsConfig *kmsctl_config(KmsCtl *ctl);
/* Connect to the administrator's DSN; prints the error and returns NULL.
 * When an administrator is named (kmsctl_admin), it is opened here too:
 * a wrong passphrase fails every command. */
KmsVault *kmsctl_connect(KmsCtl *ctl);
/* Read the startup password from FILE or a prompt and unseal V. */
gboolean kmsctl_unseal(KmsCtl *ctl, KmsVault *v, const char *password_file);

/* Print "kmsctl: MESSAGE" on stderr and return KMSCTL_FAIL. */
int kmsctl_fail(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
int kmsctl_fail_error(const GError *e);

/* Print BUILDER's root as one JSON document on stdout. */
void kmsctl_print_json(JsonBuilder *b);

int kmsctl_cmd_status(KmsCtl *ctl, int argc, char **argv);
int kmsctl_cmd_ca(KmsCtl *ctl, int argc, char **argv);
int kmsctl_cmd_cert(KmsCtl *ctl, int argc, char **argv);
int kmsctl_cmd_ctl(KmsCtl *ctl, int argc, char **argv);
int kmsctl_cmd_enroll(KmsCtl *ctl, int argc, char **argv);
int kmsctl_cmd_recover(KmsCtl *ctl, int argc, char **argv);	/* kmsctl_enroll.c */
int kmsctl_cmd_revoke(KmsCtl *ctl, int argc, char **argv);	/* kmsctl_revoke.c */
int kmsctl_cmd_crl(KmsCtl *ctl, int argc, char **argv);	/* kmsctl_revoke.c */
int kmsctl_cmd_policy(KmsCtl *ctl, int argc, char **argv);	/* kmsctl_policy.c */
int kmsctl_cmd_negotiate(KmsCtl *ctl, int argc, char **argv);	/* kmsctl_policy.c */
int kmsctl_cmd_unseal(KmsCtl *ctl, int argc, char **argv);	/* kmsctl_unseal.c */
int kmsctl_cmd_rekey(KmsCtl *ctl, int argc, char **argv);	/* kmsctl_unseal.c */
/* Shamir shares (kmsctl_unseal.c): write each of SHARES (KmsShare) to
 * DIR/share-I (mode 0600, never over an existing file); print them once
 * ("Share I/N: I-HEX") or, with DIR, where they went. */
gboolean kmsctl_write_share_files(GPtrArray *shares, const char *dir, GError **err);
void kmsctl_print_shares(GPtrArray *shares, guint threshold, const char *dir);
/* Unseal V with the shares read from FILES (NULL-terminated). */
gboolean kmsctl_unseal_with_share_files(KmsVault *v, char **files, GError **err);
int kmsctl_cmd_audit(KmsCtl *ctl, int argc, char **argv);	/* kmsctl_audit.c */
/* Append one audit entry (audit.h) in its own transaction on V's idle
 * connection; a failure is a warning on stderr (returns FALSE). */
gboolean kmsctl_audit_alone(KmsVault *v, const char *action, JsonObject *detail);
/* kmsctl_admin.c: the administrator this command acts as (--admin, then
 * KMS_ADMIN, then [admin] name), opened with its passphrase; *OUT NULL
 * when none is named and REQUIRED is FALSE. Prints the error. The audit
 * actor becomes "admin NAME". *OUT is borrowed (CTL keeps it). */
gboolean kmsctl_admin(KmsCtl *ctl, KmsVault *v, gboolean required, KmsAdmin **out);
/* kms_request_submit (admin.h) of KIND with PAYLOAD as the acting
 * administrator (CTL->admin, may be NULL), expiring after [admin]
 * approval_ttl; in the caller's transaction. */
gboolean kmsctl_request(KmsCtl *ctl, PGconn *db, const char *kind, JsonObject *payload,
    gint64 *id, gboolean *pending, GError **err);
int kmsctl_cmd_admin(KmsCtl *ctl, int argc, char **argv);
int kmsctl_cmd_requests(KmsCtl *ctl, int argc, char **argv);
int kmsctl_cmd_approve(KmsCtl *ctl, int argc, char **argv);
int kmsctl_cmd_reject(KmsCtl *ctl, int argc, char **argv);
int kmsctl_cmd_approvals(KmsCtl *ctl, int argc, char **argv);	/* policy approvals */
/* kmsctl recover (options already parsed, V connected) when the approval
 * policy gates it: an approval request per address of ADDRS ("Request:
 * ID"); -1 when recovery is not gated. */
int kmsctl_recover_gated(KmsCtl *ctl, KmsVault *v, GPtrArray *addrs, const char *deliver,
    gboolean json);
/* init: the approval policy row and, with NAME, the first administrator. */
gboolean kmsctl_init_admins(KmsCtl *ctl, KmsVault *v, const char *name, const char *pwfile,
    GError **err);
int kmsctl_cmd_backup(KmsCtl *ctl, int argc, char **argv);	/* kmsctl_backup.c */
int kmsctl_cmd_transport_cert(KmsCtl *ctl, int argc, char **argv);	/* kmsctl_export.c */
int kmsctl_cmd_export(KmsCtl *ctl, int argc, char **argv);	/* kmsctl_export.c */
int kmsctl_cmd_import(KmsCtl *ctl, int argc, char **argv);	/* kmsctl_export.c */
int kmsctl_cmd_restore(KmsCtl *ctl, int argc, char **argv);	/* kmsctl_backup.c */

#endif
