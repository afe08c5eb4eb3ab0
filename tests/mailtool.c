/*
 * NAME
 *	mailtool - test driver for common/mailer.c (not installed)
 * SYNOPSIS
 *	mailtool --url smtp://HOST:PORT --from ADDR --to ADDR --subject S
 *	    --body-file F [--attach FILE --attach-type TYPE --attach-name NAME]
 *	    [--header "Name: value"]... [--save FILE] [--count N]
 * DESCRIPTION
 *	Builds a message with kms_mail_build(), writes it to --save FILE when
 *	given (the exact bytes submitted), submits it with kms_mail_submit()
 *	and prints its Message-ID. With --count N it submits the same message
 *	N times through one kept connection (KmsMailer.keep), printing the
 *	Message-ID after each. Exit 0 on success, 1 with one line on
 *	stderr when refused or not sent, 2 on usage errors. Arguments are
 *	taken as raw bytes (no locale conversion), so tests can pass UTF-8
 *	and control characters whatever the locale.
 */
#include "autoconfig.h"

#include <stdio.h>

#include "common/mailer.h"

int
main(int argc, char **argv)
{
	g_autofree char *url = NULL, *from = NULL, *to = NULL, *subject = NULL;
	g_autofree char *body_file = NULL, *attach = NULL, *attach_type = NULL;
	g_autofree char *attach_name = NULL, *save = NULL, *body = NULL, *msgid = NULL;
	g_auto(GStrv) headers = NULL;
	g_autoptr(GBytes) attachment = NULL;
	g_autoptr(GBytes) msg = NULL;
	g_autoptr(GString) extra = NULL;
	g_autoptr(GError) e = NULL;
	gint count = 0;
	g_autoptr(GOptionContext) ctx = g_option_context_new("- build and submit one mail");
	GOptionEntry entries[] = {
		{ "url", 0, 0, G_OPTION_ARG_FILENAME, &url, "submission URL", "URL" },
		{ "from", 0, 0, G_OPTION_ARG_FILENAME, &from, "sender", "ADDR" },
		{ "to", 0, 0, G_OPTION_ARG_FILENAME, &to, "recipient", "ADDR" },
		{ "subject", 0, 0, G_OPTION_ARG_FILENAME, &subject, "subject (UTF-8)", "S" },
		{ "body-file", 0, 0, G_OPTION_ARG_FILENAME, &body_file, "body text", "FILE" },
		{ "attach", 0, 0, G_OPTION_ARG_FILENAME, &attach, "attachment", "FILE" },
		{ "attach-type", 0, 0, G_OPTION_ARG_FILENAME, &attach_type, "its MIME type", "TYPE" },
		{ "attach-name", 0, 0, G_OPTION_ARG_FILENAME, &attach_name, "its file name", "NAME" },
		{ "header", 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &headers, "extra header", "H" },
		{ "save", 0, 0, G_OPTION_ARG_FILENAME, &save, "write the message here", "FILE" },
		{ "count", 0, 0, G_OPTION_ARG_INT, &count, "submit N times, one kept connection",
		    "N" },
		{ NULL, 0, 0, 0, NULL, NULL, NULL },
	};
	KmsMailer m = { 0 };
	char **h;
	gint i;

	g_option_context_add_main_entries(ctx, entries, NULL);
	if (!g_option_context_parse(ctx, &argc, &argv, &e)) {
		fprintf(stderr, "mailtool: %s\n", e->message);
		return 2;
	}
	if (url == NULL || from == NULL || to == NULL || subject == NULL || body_file == NULL
	    || argc != 1) {
		fprintf(stderr, "mailtool: --url, --from, --to, --subject and --body-file are required\n");
		return 2;
	}
	if (count < 0) {
		fprintf(stderr, "mailtool: --count wants a number of mails, 1 or more\n");
		return 2;
	}
	if (!g_file_get_contents(body_file, &body, NULL, &e))
		goto fail;
	if (attach != NULL) {
		g_autofree char *data = NULL;
		gsize len;

		if (!g_file_get_contents(attach, &data, &len, &e))
			goto fail;
		attachment = g_bytes_new_take(g_steal_pointer(&data), len);
		if (attach_name == NULL)
			attach_name = g_path_get_basename(attach);
	}
	if (headers != NULL) {
		extra = g_string_new(NULL);
		for (h = headers; *h != NULL; h++)
			g_string_append_printf(extra, "%s\r\n", *h);
	}
	msg = kms_mail_build(from, to, subject, body, attach_name, attach_type, attachment,
	    extra ? extra->str : NULL, &msgid, &e);
	if (msg == NULL)
		goto fail;
	if (save != NULL && !g_file_set_contents(save, g_bytes_get_data(msg, NULL),
	    (gssize)g_bytes_get_size(msg), &e))
		goto fail;
	m.url = url;
	m.from = from;
	if (count == 0) {
		if (!kms_mail_submit(&m, to, msg, &e))
			goto fail;
		printf("%s\n", msgid);
		return 0;
	}
	m.keep = kms_mail_connection_new();
	for (i = 0; i < count; i++) {
		if (!kms_mail_submit(&m, to, msg, &e)) {
			g_prefix_error(&e, "mail %d of %d: ", i + 1, count);
			m.keep = kms_mail_connection_free(m.keep);
			goto fail;
		}
		printf("%s\n", msgid);
		fflush(stdout);
	}
	m.keep = kms_mail_connection_free(m.keep);
	return 0;
fail:
	fprintf(stderr, "mailtool: %s\n", e->message);
	return 1;
}
