/*
 * NAME
 *	testutil - temporary directories and peer programs for unit tests
 */
#include "autoconfig.h"
#include "testutil.h"

TestDir *
test_dir_new(const char *prefix)
{
	g_autoptr(GError) err = NULL;
	g_autofree char *tmpl = g_strdup_printf("%s-XXXXXX", prefix);
	char *dir = g_dir_make_tmp(tmpl, &err);

	g_assert_no_error(err);
	return dir;
}

void
test_dir_free(TestDir *dir)
{
	/* rm -rf: NSS databases and GNUPGHOMEs have subdirectories and sockets */
	const char *argv[] = {"rm", "-rf", dir, NULL};
	int status = -1;

	if (dir == NULL)
		return;
	g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL,
	    NULL, NULL, &status, NULL));
	g_assert_cmpint(status, ==, 0);
	g_free(dir);
}

gboolean
test_run(const char *dir, const char *const *argv, char **output)
{
	g_autoptr(GError) err = NULL;
	g_autofree char *out = NULL, *errs = NULL;
	int status;

	g_spawn_sync(dir, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out, &errs,
	    &status, &err);
	g_assert_no_error(err);
	*output = g_strconcat(out, errs, NULL);
	return g_spawn_check_wait_status(status, NULL);
}
