/*
 * NAME
 *	kmsctl enroll - enrollment tokens and token mails for users
 * SYNOPSIS
 *	kmsctl enroll [--deliver mail|out-of-band] [--json] ADDR... | --file F
 * DESCRIPTION
 *	Each address gets a one-time token (stored only as a hash) and a mail
 *	queued for kmsd. With --deliver out-of-band the token is printed here
 *	for the administrator to hand over ("Token: XXXXX-..."), and the mail
 *	only explains how to reply. Addresses are committed in batches of
 *	1,000 (kmsd is woken once per batch); a progress line is drawn on a
 *	terminal, and a summary ends the run. Exit 1 when any address failed.
 * SECURITY
 *	In mail mode the tokens are never shown here: they travel encrypted to
 *	kmsd's queue key.
 */
#include "autoconfig.h"
#include "kmsctl.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

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

int
kmsctl_cmd_enroll(KmsCtl *ctl, int argc, char **argv)
{
	g_autofree char *file = NULL, *deliver = NULL;
	gboolean json = FALSE;
	const GOptionEntry entries[] = {
		{"file", 0, 0, G_OPTION_ARG_FILENAME, &file, "addresses, one per line", "F"},
		{"deliver", 0, 0, G_OPTION_ARG_STRING, &deliver,
		 "mail (default): the token goes in the mail; out-of-band: printed here", "HOW"},
		{"json", 0, 0, G_OPTION_ARG_NONE, &json, "one JSON document on stdout", NULL},
		G_OPTION_ENTRY_NULL
	};
	g_autoptr(GError) e = NULL;
	g_autoptr(GPtrArray) addrs = NULL;
	g_autoptr(JsonBuilder) b = NULL;
	KmsEnrollParams p = {0};
	KmsVault *v;
	PGconn *db;
	guint ok = 0, failed = 0;
	gboolean tty = isatty(STDERR_FILENO) && !json;
	int rc;

	if ((rc = kmsctl_parse(ctl, &argc, &argv, entries, "ADDR... | --file F",
	    "Enroll users: one-time tokens and token mails.")) != KMSCTL_OK)
		return rc;
	if (deliver && strcmp(deliver, "mail") != 0 && strcmp(deliver, "out-of-band") != 0) {
		fprintf(stderr, "kmsctl enroll: --deliver takes mail or out-of-band\n");
		return KMSCTL_USAGE;
	}
	if (argc < 2 && file == NULL) {
		fprintf(stderr, "usage: kmsctl enroll [--deliver mail|out-of-band] [--json] ADDR... | --file F\n");
		return KMSCTL_USAGE;
	}
	if ((addrs = collect(argc, argv, file, &e)) == NULL)
		return kmsctl_fail_error(e);
	if ((v = kmsctl_connect(ctl)) == NULL)
		return KMSCTL_FAIL;
	db = kms_vault_db(v);
	p.purpose = "enroll";
	p.token_ttl = kms_config_get_int(ctl->cfg, "enrollment", "token_ttl");
	p.request_ttl = kms_config_get_int(ctl->cfg, "kms", "request_ttl");
	p.deliver_mail = deliver == NULL || strcmp(deliver, "mail") == 0;
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

		if (!kms_db_begin(db, &e))
			break;
		for (guint i = start; i < end; i++) {
			const char *a = g_ptr_array_index(addrs, i);
			g_autoptr(KmsSecret) tok = NULL;
			g_autoptr(GError) ae = NULL;
			g_autofree char *stored = NULL;

			/* a savepoint per address: one bad address spoils no batch */
			kms_db_exec(db, "SAVEPOINT a", NULL, NULL);
			if (!kms_enroll_user(db, &p, a, &tok, &stored, &ae)) {
				kms_db_exec(db, "ROLLBACK TO SAVEPOINT a", NULL, NULL);
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
				json_builder_end_object(b);
			} else if (!p.deliver_mail)
				printf("%s\nToken: %s\n", stored, (const char *)tok->data);
		}
		if (!kms_db_exec(db, "NOTIFY kms_requests", NULL, &e) || !kms_db_commit(db, &e)) {
			kms_db_rollback(db);
			failed += end - start;
			ok -= MIN(ok, end - start);
			break;
		}
		if (tty)
			fprintf(stderr, "\renrolling: %u of %u (%u%%)", end, addrs->len,
			    (guint)(100.0 * end / addrs->len));
	}
	if (tty)
		fprintf(stderr, "\n");
	if (json) {
		json_builder_end_array(b);
		json_builder_set_member_name(b, "enrolled");
		json_builder_add_int_value(b, ok);
		json_builder_set_member_name(b, "failed");
		json_builder_add_int_value(b, failed);
		json_builder_end_object(b);
		kmsctl_print_json(b);
	} else
		fprintf(p.deliver_mail ? stdout : stderr,
		    "enrolled %u address%s, %u failed; token mails queued for kmsd\n",
		    ok, ok == 1 ? "" : "es", failed);
	if (e)
		kmsctl_fail_error(e);
	kms_vault_close(v);
	return failed || e ? KMSCTL_FAIL : KMSCTL_OK;
}

int
kmsctl_cmd_recover(KmsCtl *ctl, int argc, char **argv)
{
	(void)ctl; (void)argc; (void)argv;
	return kmsctl_fail("recover is not implemented yet");
}
