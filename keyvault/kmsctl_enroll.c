/*
 * NAME
 *	kmsctl enroll, kmsctl recover - tokens and token mails for users
 * SYNOPSIS
 *	kmsctl enroll [--deliver mail|out-of-band] [--json] ADDR... | --file F
 *	kmsctl recover [--deliver mail|out-of-band] [--json] ADDR...
 * DESCRIPTION
 *	Each address gets a one-time token (stored only as a hash) and a mail
 *	queued for kmsd. With --deliver out-of-band the token is printed here
 *	for the administrator to hand over ("Token: XXXXX-..."), and the mail
 *	only explains how to reply. Addresses are committed in batches of
 *	1,000 (kmsd is woken once per batch); a progress line is drawn on a
 *	terminal, and a summary ends the run. Exit 1 when any address failed.
 *	recover does the same with purpose "recover": the user's reply makes
 *	kmsd mail a PKCS#12 of every escrowed key. It refuses an address that
 *	is no user or has no escrowed key.
 *	With [enrollment] p12_password = pin each address also gets a PIN,
 *	printed here ("PIN: XXXXX-XXXXX-XXXXX-XXXXX", "pin" in --json) for
 *	the administrator to hand over; it is the PKCS#12 password.
 * SECURITY
 *	In mail mode the tokens are never shown here: they travel encrypted to
 *	kmsd's queue key. PINs are shown only here, never mailed.
 */
#include "autoconfig.h"
#include "kmsctl.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "keyvault/audit.h"
#include "keyvault/enroll.h"

#define BATCH 1000

/* Addresses from the command line and FILE, in order, without repeats. */
static GPtrArray *
collect(int argc, char **argv, const char *file, GError **err)
{
	GPtrArray *out = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GHashTable) seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	g_autofree char *text = NULL;

	for (int i = 1; i < argc; i++)
		g_ptr_array_add(out, g_strdup(argv[i]));
	if (file) {
		g_auto(GStrv) lines = NULL;

		if (!g_file_get_contents(file, &text, NULL, err)) {
			g_ptr_array_unref(out);
			return NULL;
		}
		lines = g_strsplit(text, "\n", -1);
		for (int i = 0; lines[i]; i++) {
			char *l = g_strstrip(lines[i]);

			if (*l && *l != '#')
				g_ptr_array_add(out, g_strdup(l));
		}
	}
	for (guint i = 0; i < out->len; i++) {
		char *a = g_ascii_strdown(g_ptr_array_index(out, i), -1);

		if (g_hash_table_contains(seen, a)) {
			g_free(a);
			g_ptr_array_remove_index(out, i--);
		} else
			g_hash_table_add(seen, a);
	}
	return out;
}

/* enroll and recover: the same loop with another token purpose. */
/* One audit entry for the tokens this transaction made (audit.h):
 * addresses and token ids, never the tokens. */
static gboolean
audit_tokens(PGconn *db, const char *purpose, gboolean mail, GError **err)
{
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	g_autoptr(PGresult) r = NULL;

	kms_db_param_text(&p, purpose);
	kms_db_param_text(&p, mail ? "mail" : "out-of-band");
	r = kms_db_run(db, "SELECT count(*), json_build_object('purpose', $1::text, 'delivery',"
	    " $2::text, 'tokens', coalesce(json_agg(json_build_object('address', u.address,"
	    " 'token_id', t.id) ORDER BY t.id), '[]'))::text"
	    " FROM tokens t JOIN users u ON u.id = t.user_id"
	    " WHERE t.created_at = now() AND t.purpose = $1", &p, err);
	if (r == NULL)
		return FALSE;
	if (kms_db_get_int(r, 0, 0) == 0)
		return TRUE;
	return kms_audit_append_json(db, strcmp(purpose, "enroll") == 0 ?
	    "enroll tokens issued" : "recover tokens issued", PQgetvalue(r, 0, 1), err);
}

static int
run(KmsCtl *ctl, int argc, char **argv, const char *purpose)
{
	gboolean recover = strcmp(purpose, "recover") == 0;
	g_autofree char *file = NULL, *deliver = NULL;
	gboolean json = FALSE;
	const GOptionEntry entries[] = {
		{"deliver", 0, 0, G_OPTION_ARG_STRING, &deliver,
		 "mail (default): the token goes in the mail; out-of-band: printed here", "HOW"},
		{"json", 0, 0, G_OPTION_ARG_NONE, &json, "one JSON document on stdout", NULL},
		{"file", 0, 0, G_OPTION_ARG_FILENAME, &file, "addresses, one per line", "F"},
		G_OPTION_ENTRY_NULL
	};
	/* recover takes no --file: recoveries are one by one */
	GOptionEntry rentries[G_N_ELEMENTS(entries) - 1];
	const char *usage = recover ?
	    "usage: kmsctl recover [--deliver mail|out-of-band] [--json] ADDR...\n" :
	    "usage: kmsctl enroll [--deliver mail|out-of-band] [--json] ADDR... | --file F\n";
	g_autoptr(GError) e = NULL;
	g_autoptr(GPtrArray) addrs = NULL;
	g_autoptr(JsonBuilder) b = NULL;
	KmsEnrollParams p = {0};
	KmsVault *v;
	PGconn *db;
	guint ok = 0, failed = 0;
	gboolean tty = isatty(STDERR_FILENO) && !json;
	int rc;

	memcpy(rentries, entries, sizeof(rentries));
	rentries[G_N_ELEMENTS(rentries) - 1] = (GOptionEntry)G_OPTION_ENTRY_NULL;
	if ((rc = kmsctl_parse(ctl, &argc, &argv, recover ? rentries : entries,
	    recover ? "ADDR..." : "ADDR... | --file F",
	    recover ? "Recover users' escrowed keys: one-time tokens and token mails." :
	    "Enroll users: one-time tokens and token mails.")) != KMSCTL_OK)
		return rc;
	if (deliver && strcmp(deliver, "mail") != 0 && strcmp(deliver, "out-of-band") != 0) {
		fprintf(stderr, "kmsctl %s: --deliver takes mail or out-of-band\n", purpose);
		return KMSCTL_USAGE;
	}
	if (argc < 2 && file == NULL) {
		fputs(usage, stderr);
		return KMSCTL_USAGE;
	}
	if ((addrs = collect(argc, argv, file, &e)) == NULL)
		return kmsctl_fail_error(e);
	if ((v = kmsctl_connect(ctl)) == NULL)
		return KMSCTL_FAIL;
	/* under approvals, a recovery is a request for them (kmsctl_admin.c) */
	if (recover && (rc = kmsctl_recover_gated(ctl, v, addrs, deliver, json)) >= 0) {
		kms_vault_close(v);
		return rc;
	}
	db = kms_vault_db(v);
	p.purpose = purpose;
	p.token_ttl = kms_config_get_int(ctl->cfg, "enrollment", "token_ttl");
	p.request_ttl = kms_config_get_int(ctl->cfg, "kms", "request_ttl");
	p.deliver_mail = deliver == NULL || strcmp(deliver, "mail") == 0;
	p.with_pin = g_strcmp0(kms_config_get(ctl->cfg, "enrollment", "p12_password"), "pin") == 0;
	if (!kms_queue_key_public(db, p.queue_pub, &e)) {
		kms_vault_close(v);
		return kmsctl_fail_error(e);
	}
	if (json) {
		b = json_builder_new();
		json_builder_begin_object(b);
		json_builder_set_member_name(b, "users");
		json_builder_begin_array(b);
	}
	for (guint start = 0; start < addrs->len; start += BATCH) {
		guint end = MIN(addrs->len, start + BATCH);
		g_autofree KmsEnrollItem *items = NULL;
		gboolean batched = FALSE;

		if (!kms_db_begin(db, &e))
			break;
		/* enroll without PINs: the whole batch in a few statements
		 * (kms_enroll_batch); when that fails, address by address */
		if (!recover && !p.with_pin) {
			items = g_new0(KmsEnrollItem, end - start);
			for (guint i = start; i < end; i++)
				items[i - start].address = g_ptr_array_index(addrs, i);
			if (!(batched = kms_enroll_batch(db, &p, items, end - start, NULL))) {
				kms_db_rollback(db);
				if (!kms_db_begin(db, &e))
					break;
			}
		}
		for (guint i = start; i < end; i++) {
			const char *a = g_ptr_array_index(addrs, i);
			g_autoptr(KmsSecret) tok = NULL, pin = NULL;
			g_autoptr(GError) ae = NULL;
			g_autofree char *stored = NULL;

			if (batched) {
				KmsEnrollItem *it = &items[i - start];

				tok = g_steal_pointer(&it->token);
				stored = g_steal_pointer(&it->stored);
				ae = g_steal_pointer(&it->error);
			} else {
				/* a savepoint per address: one bad address spoils no batch */
				kms_db_exec(db, "SAVEPOINT a", NULL, NULL);
				/*
				 * Recovery hands out every key a user ever had, so it is
				 * the operation the multi-administrator approval (M of
				 * N) will guard: that step goes here, before any token
				 * exists. Instead of kms_enroll_user_pin, an approval
				 * request is queued (requests.status
				 * 'awaiting-approval', "Request: ID" printed) and the
				 * token is made and mailed only when the last approval
				 * arrives; kmsd's recover request stays as it is.
				 */
				if ((recover && !kms_enroll_can_recover(db, a, &ae)) ||
				    !kms_enroll_user_pin(db, &p, a, &tok, p.with_pin ? &pin : NULL,
				    &stored, &ae))
					kms_db_exec(db, "ROLLBACK TO SAVEPOINT a", NULL, NULL);
			}
			if (ae != NULL) {
				failed++;
				if (json) {
					json_builder_begin_object(b);
					json_builder_set_member_name(b, "address");
					json_builder_add_string_value(b, a);
					json_builder_set_member_name(b, "error");
					json_builder_add_string_value(b, ae->message);
					json_builder_end_object(b);
				} else
					fprintf(stderr, "%skmsctl: %s: %s\n", tty ? "\r" : "", a, ae->message);
				continue;
			}
			ok++;
			if (json) {
				json_builder_begin_object(b);
				json_builder_set_member_name(b, "address");
				json_builder_add_string_value(b, stored);
				json_builder_set_member_name(b, "delivery");
				json_builder_add_string_value(b, p.deliver_mail ? "mail" : "out-of-band");
				if (!p.deliver_mail) {
					json_builder_set_member_name(b, "token");
					json_builder_add_string_value(b, (const char *)tok->data);
				}
				if (pin) {
					json_builder_set_member_name(b, "pin");
					json_builder_add_string_value(b, (const char *)pin->data);
				}
				json_builder_end_object(b);
			} else if (!p.deliver_mail || pin) {
				printf("%s\n", stored);
				if (!p.deliver_mail)
					printf("Token: %s\n", (const char *)tok->data);
				if (pin)
					printf("PIN: %s\n", (const char *)pin->data);
			}
		}
		if (!audit_tokens(db, purpose, p.deliver_mail, &e) ||
		    !kms_db_exec(db, "NOTIFY kms_requests", NULL, &e) || !kms_db_commit(db, &e)) {
			kms_db_rollback(db);
			failed += end - start;
			ok -= MIN(ok, end - start);
			break;
		}
		if (tty)
			fprintf(stderr, "\r%s: %u of %u (%u%%)", recover ? "recovering" : "enrolling",
			    end, addrs->len, (guint)(100.0 * end / addrs->len));
	}
	if (tty)
		fprintf(stderr, "\n");
	if (json) {
		json_builder_end_array(b);
		json_builder_set_member_name(b, recover ? "recovering" : "enrolled");
		json_builder_add_int_value(b, ok);
		json_builder_set_member_name(b, "failed");
		json_builder_add_int_value(b, failed);
		json_builder_end_object(b);
		kmsctl_print_json(b);
	} else
		fprintf(p.deliver_mail && !p.with_pin ? stdout : stderr,
		    "%s %u address%s, %u failed; token mails queued for kmsd\n",
		    recover ? "recovery started for" : "enrolled", ok, ok == 1 ? "" : "es", failed);
	if (e)
		kmsctl_fail_error(e);
	kms_vault_close(v);
	return failed || e ? KMSCTL_FAIL : KMSCTL_OK;
}

int
kmsctl_cmd_enroll(KmsCtl *ctl, int argc, char **argv)
{
	return run(ctl, argc, argv, "enroll");
}

int
kmsctl_cmd_recover(KmsCtl *ctl, int argc, char **argv)
{
	return run(ctl, argc, argv, "recover");
}
