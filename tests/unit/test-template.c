/*
 * Unit tests for common/template.c: ${name} substitution and its errors,
 * loading a site's template file over the built-in one, and splitting a
 * rendered template into Subject and body.
 */
#include "autoconfig.h"

#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "common/template.h"

static char *tmpdir;

static const char *const vars[] = {
	"address", "alice@example.org",
	"token", "ABCDE-FGHIJ-KLMNO-PQRST-UVWXY",
	"expires", "2024-10-01 12:00 UTC",
	"empty", "",
	"tricky", "${token} $$ \\n",
	NULL,
};

/* Rendering TEXT gives WANT. */
static void
expect_render(const char *text, const char *want)
{
	g_autoptr(GError) e = NULL;
	g_autofree char *got = kms_template_render(text, vars, &e);

	g_assert_no_error(e);
	g_assert_cmpstr(got, ==, want);
}

/* Rendering TEXT fails with CODE and a message holding WHY. */
static void
expect_render_error(const char *text, int code, const char *why)
{
	g_autoptr(GError) e = NULL;
	g_autofree char *got = kms_template_render(text, vars, &e);

	g_assert_null(got);
	g_assert_error(e, KMS_TEMPLATE_ERROR, code);
	if (strstr(e->message, why) == NULL)
		g_error("got \"%s\", want it to contain \"%s\"", e->message, why);
	g_assert_null(strchr(e->message, '\n'));
}

static void
test_render(void)
{
	expect_render("", "");
	expect_render("no variables\n", "no variables\n");
	expect_render("To ${address}:\nToken: ${token}\n",
	    "To alice@example.org:\nToken: ABCDE-FGHIJ-KLMNO-PQRST-UVWXY\n");
	expect_render("${address}${address}", "alice@example.orgalice@example.org");
	expect_render("[${empty}]", "[]");
	/* $$ is a dollar; other dollars stay */
	expect_render("costs $$5, or $5, or $ alone, or $", "costs $5, or $5, or $ alone, or $");
	expect_render("$${token}", "${token}");
	expect_render("$$$${token}", "$${token}");
	expect_render("$$${token}", "$ABCDE-FGHIJ-KLMNO-PQRST-UVWXY");
	/* values verbatim: not rendered again */
	expect_render("<${tricky}>", "<${token} $$ \\n>");
	/* UTF-8 passes through */
	expect_render("Grüße, ${address} — ✓", "Grüße, alice@example.org — ✓");
}

static void
test_render_errors(void)
{
	expect_render_error("Hello ${adress}\n", KMS_TEMPLATE_ERROR_UNKNOWN,
	    "line 1: unknown variable ${adress}");
	expect_render_error("a\nb\n\nc ${address} ${nope} d\n", KMS_TEMPLATE_ERROR_UNKNOWN,
	    "line 4: unknown variable ${nope}");
	expect_render_error("x\n${token", KMS_TEMPLATE_ERROR_SYNTAX, "line 2: unterminated ${");
	expect_render_error("${token\n}", KMS_TEMPLATE_ERROR_SYNTAX, "line 1: unterminated ${");
	expect_render_error("${}", KMS_TEMPLATE_ERROR_SYNTAX, "line 1: bad variable name");
	expect_render_error("\n\n${to ken}", KMS_TEMPLATE_ERROR_SYNTAX, "line 3: bad variable name");
	expect_render_error("${TOKEN}", KMS_TEMPLATE_ERROR_UNKNOWN, "${TOKEN}");
	{
		g_autoptr(GError) e = NULL;
		g_autofree char *got = kms_template_render("${address}", NULL, &e);

		g_assert_null(got);
		g_assert_error(e, KMS_TEMPLATE_ERROR, KMS_TEMPLATE_ERROR_UNKNOWN);
	}
	{
		/* a long name is cut short in the message */
		g_autofree char *longname = g_strnfill(5000, 'x');
		g_autofree char *text = g_strdup_printf("${%s}", longname);
		g_autoptr(GError) e = NULL;
		g_autofree char *got = kms_template_render(text, vars, &e);

		g_assert_null(got);
		g_assert_cmpuint(strlen(e->message), <, 200);
	}
}

static void
test_load(void)
{
	g_autofree char *path = g_build_filename(tmpdir, "enroll.txt", NULL);
	g_autoptr(GError) e = NULL;
	char *t;

	/* no directory, no file: the built-in default */
	t = kms_template_load(NULL, "enroll.txt", "builtin", &e);
	g_assert_no_error(e);
	g_assert_cmpstr(t, ==, "builtin");
	g_free(t);
	t = kms_template_load(tmpdir, "enroll.txt", "builtin", &e);
	g_assert_no_error(e);
	g_assert_cmpstr(t, ==, "builtin");
	g_free(t);
	/* a site's file wins */
	g_assert_true(g_file_set_contents(path, "Subject: site\n\nhello ${address}\n", -1, NULL));
	t = kms_template_load(tmpdir, "enroll.txt", "builtin", &e);
	g_assert_no_error(e);
	g_assert_cmpstr(t, ==, "Subject: site\n\nhello ${address}\n");
	g_free(t);
	/* not UTF-8, NUL bytes, too large: refused with the path */
	g_assert_true(g_file_set_contents(path, "Subject: \xff\n\nx\n", -1, NULL));
	t = kms_template_load(tmpdir, "enroll.txt", "builtin", &e);
	g_assert_null(t);
	g_assert_error(e, KMS_TEMPLATE_ERROR, KMS_TEMPLATE_ERROR_IO);
	g_assert_nonnull(strstr(e->message, path));
	g_assert_nonnull(strstr(e->message, "not UTF-8"));
	g_clear_error(&e);
	g_assert_true(g_file_set_contents(path, "a\0b", 3, NULL));
	t = kms_template_load(tmpdir, "enroll.txt", "builtin", &e);
	g_assert_null(t);
	g_assert_error(e, KMS_TEMPLATE_ERROR, KMS_TEMPLATE_ERROR_IO);
	g_clear_error(&e);
	{
		g_autofree char *big = g_strnfill(KMS_TEMPLATE_MAX + 1, 'x');

		g_assert_true(g_file_set_contents(path, big, -1, NULL));
		t = kms_template_load(tmpdir, "enroll.txt", "builtin", &e);
		g_assert_null(t);
		g_assert_nonnull(strstr(e->message, "larger than"));
		g_clear_error(&e);
	}
	g_unlink(path);
	/* unreadable: a directory in its place */
	g_assert_cmpint(g_mkdir(path, 0700), ==, 0);
	t = kms_template_load(tmpdir, "enroll.txt", "builtin", &e);
	g_assert_null(t);
	g_assert_error(e, KMS_TEMPLATE_ERROR, KMS_TEMPLATE_ERROR_IO);
	g_assert_nonnull(strstr(e->message, "enroll.txt"));
	g_clear_error(&e);
	g_rmdir(path);
	/* no file and no built-in */
	t = kms_template_load(tmpdir, "enroll.txt", NULL, &e);
	g_assert_null(t);
	g_assert_nonnull(strstr(e->message, "enroll.txt"));
	g_clear_error(&e);
	t = kms_template_load(NULL, "enroll.txt", NULL, &e);
	g_assert_null(t);
	g_assert_nonnull(strstr(e->message, "enroll.txt"));
}

/* Splitting TEXT gives WANT_SUBJECT and WANT_BODY. */
static void
expect_split(const char *text, const char *want_subject, const char *want_body)
{
	g_autoptr(GError) e = NULL;
	g_autofree char *subject = NULL;
	g_autofree char *body = NULL;

	g_assert_true(kms_template_split(text, &subject, &body, &e));
	g_assert_no_error(e);
	g_assert_cmpstr(subject, ==, want_subject);
	g_assert_cmpstr(body, ==, want_body);
}

static void
expect_split_error(const char *text, const char *why)
{
	g_autoptr(GError) e = NULL;
	char *subject = (char *)"unset", *body = (char *)"unset";

	g_assert_false(kms_template_split(text, &subject, &body, &e));
	g_assert_null(subject);
	g_assert_null(body);
	g_assert_error(e, KMS_TEMPLATE_ERROR, KMS_TEMPLATE_ERROR_SYNTAX);
	if (strstr(e->message, why) == NULL)
		g_error("got \"%s\", want it to contain \"%s\"", e->message, why);
}

static void
test_split(void)
{
	expect_split("Subject: Your key\n\nHello\nBye\n", "Your key", "Hello\nBye\n");
	expect_split("subject:Your key   \n\nHello", "Your key", "Hello");
	expect_split("SUBJECT: Your key\r\n\r\nHello\r\n", "Your key", "Hello\r\n");
	expect_split("Subject: Your\n  encryption key\n\tfor alice\n\nbody\n",
	    "Your encryption key for alice", "body\n");
	expect_split("Subject: x\n\n", "x", "");
	expect_split("Subject: \n\nbody", "", "body");
	expect_split("Subject: a: b\n\n\nbody\n", "a: b", "\nbody\n");
	expect_split("Subject: Schlüssel ✓\n\nGrüße\n", "Schlüssel ✓", "Grüße\n");

	expect_split_error("Subject: x\nbody without blank line\n", "line 2: expected a header");
	expect_split_error("Subject: x", "line 1: no blank line");
	expect_split_error("Subject: x\n", "line 2: no blank line");
	expect_split_error("", "line 1: no blank line");
	expect_split_error("\nbody\n", "line 1: no Subject header");
	expect_split_error("Subject: x\nBcc: mallory@example.org\n\nbody\n",
	    "line 2: unknown header \"Bcc\" (only Subject is allowed)");
	expect_split_error("Subject: x\nSubject: y\n\nbody\n", "line 2: second Subject header");
	expect_split_error(" folded\n\nbody\n", "line 1: continuation line without a header");
	expect_split_error("Subjects: x\n\nbody\n", "unknown header \"Subjects\"");
}

/* The whole path: a site template rendered and split. */
static void
test_load_render_split(void)
{
	static const char builtin[] =
	    "Subject: Enrollment for ${address}\n"
	    "\n"
	    "Reply to this mail to receive your key.\n"
	    "Token: ${token}\n"
	    "It expires ${expires}.\n";
	g_autoptr(GError) e = NULL;
	g_autofree char *text = kms_template_load(tmpdir, "none.txt", builtin, &e);
	g_autofree char *out = kms_template_render(text, vars, &e);
	g_autofree char *subject = NULL;
	g_autofree char *body = NULL;

	g_assert_no_error(e);
	g_assert_true(kms_template_split(out, &subject, &body, &e));
	g_assert_cmpstr(subject, ==, "Enrollment for alice@example.org");
	g_assert_cmpstr(body, ==, "Reply to this mail to receive your key.\n"
	    "Token: ABCDE-FGHIJ-KLMNO-PQRST-UVWXY\n"
	    "It expires 2024-10-01 12:00 UTC.\n");
}

int
main(int argc, char **argv)
{
	int rc;

	g_test_init(&argc, &argv, NULL);
	tmpdir = g_dir_make_tmp("test-template-XXXXXX", NULL);
	g_assert_nonnull(tmpdir);
	g_test_add_func("/template/render", test_render);
	g_test_add_func("/template/render-errors", test_render_errors);
	g_test_add_func("/template/load", test_load);
	g_test_add_func("/template/split", test_split);
	g_test_add_func("/template/load-render-split", test_load_render_split);
	rc = g_test_run();
	g_rmdir(tmpdir);
	g_free(tmpdir);
	return rc;
}
