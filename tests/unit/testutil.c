/*
 * NAME
 *	testutil - temporary directories and peer programs for unit tests
 */
#include "autoconfig.h"
#include "testutil.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

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

/* In the child: stdin from the file named by DATA (if any), and no core
 * file from a crashing peer. */
static void
child_setup(gpointer data)
{
	struct rlimit no_core = {0, 0};
	int fd;

	setrlimit(RLIMIT_CORE, &no_core);
	if (data && (fd = open(data, O_RDONLY)) >= 0) {
		dup2(fd, 0);
		close(fd);
	}
}

int
test_run_status(const char *dir, const char *gnupghome, const char *stdin_name,
    const char *const *argv, char **output)
{
	g_autoptr(GError) err = NULL;
	g_auto(GStrv) env = g_get_environ();
	g_autofree char *in = NULL, *out = NULL, *errs = NULL;
	int status = -1;

	if (gnupghome)
		env = g_environ_setenv(env, "GNUPGHOME", gnupghome, TRUE);
	if (stdin_name)
		in = g_build_filename(dir, stdin_name, NULL);
	g_spawn_sync(dir, (char **)argv, env, G_SPAWN_SEARCH_PATH, child_setup, in, &out, &errs,
	    &status, &err);
	g_assert_no_error(err);
	*output = g_strconcat(out, errs, NULL);
	return status;
}

gboolean
test_run_in(const char *dir, const char *gnupghome, const char *stdin_name,
    const char *const *argv, char **output)
{
	return g_spawn_check_wait_status(test_run_status(dir, gnupghome, stdin_name, argv, output),
	    NULL);
}

gboolean
test_run(const char *dir, const char *const *argv, char **output)
{
	return test_run_in(dir, NULL, NULL, argv, output);
}
