/*
 * Unit tests for common/secret.c: password files as DESIGN.md specifies
 * (one line, a single trailing newline ignored).
 */
#include "autoconfig.h"

#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "common/secret.h"

static char *tmpdir;

static KmsSecret *
read_pw(const char *content, gssize len, GError **err)
{
	static int n;
	g_autofree char *path = g_strdup_printf("%s/pw%d", tmpdir, n++);
	KmsSecret *s;

	g_assert_true(g_file_set_contents(path, content, len, NULL));
	s = kms_password_read(path, "unused", FALSE, err);
	g_unlink(path);
	return s;
}

static void
expect_pw(const char *content, const char *want)
{
	g_autoptr(GError) e = NULL;
	g_autoptr(KmsSecret) s = read_pw(content, -1, &e);

	g_assert_no_error(e);
	g_assert_cmpmem(s->data, s->len, want, strlen(want));
	g_assert_cmpint(s->data[s->len], ==, 0);
}

static void
expect_refused(const char *content, gssize len, const char *why)
{
	g_autoptr(GError) e = NULL;
	g_autoptr(KmsSecret) s = read_pw(content, len, &e);

	g_assert_null(s);
	if (strstr(e->message, why) == NULL)
		g_error("got \"%s\", want it to contain \"%s\"", e->message, why);
}

static void
test_one_trailing_newline_ignored(void)
{
	expect_pw("s3cret\n", "s3cret");
	expect_pw("s3cret", "s3cret");
	expect_pw("with spaces  \n", "with spaces  ");
	expect_pw("crlf\r\n", "crlf");
}

static void
test_bad_files_refused(void)
{
	expect_refused("", 0, "is empty");
	expect_refused("\n", -1, "is empty");
	expect_refused("a\nb\n", -1, "one line");
	expect_refused("a\n\n", -1, "one line");
	{
		g_autofree char *big = g_strnfill(2000, 'x');

		expect_refused(big, -1, "longer than");
	}
}

static void
test_missing_file_named(void)
{
	g_autoptr(GError) e = NULL;
	g_autoptr(KmsSecret) s = kms_password_read("/nonexistent/pw", "x", FALSE, &e);

	g_assert_null(s);
	g_assert_nonnull(strstr(e->message, "/nonexistent/pw"));
}

static void
test_no_terminal_no_file(void)
{
	g_autoptr(GError) e = NULL;
	g_autoptr(KmsSecret) s = NULL;

	if (isatty(STDIN_FILENO)) {
		g_test_skip("standard input is a terminal");
		return;
	}
	s = kms_password_read(NULL, "x", FALSE, &e);
	g_assert_null(s);
	g_assert_nonnull(strstr(e->message, "not a terminal"));
}

int
main(int argc, char **argv)
{
	int rc;

	g_test_init(&argc, &argv, NULL);
	kms_secmem_init();
	tmpdir = g_dir_make_tmp("kms-secret-XXXXXX", NULL);
	g_test_add_func("/secret/password-file-one-trailing-newline-ignored",
	    test_one_trailing_newline_ignored);
	g_test_add_func("/secret/bad-password-files-refused", test_bad_files_refused);
	g_test_add_func("/secret/missing-password-file-named", test_missing_file_named);
	g_test_add_func("/secret/no-terminal-and-no-file-refused", test_no_terminal_no_file);
	rc = g_test_run();
	g_rmdir(tmpdir);
	g_free(tmpdir);
	return rc;
}
