/*
 * NAME
 *	testutil - helpers shared by the unit tests
 * DESCRIPTION
 *	Temporary directories that go away with the test, and running a
 *	peer program (openssl, certutil, gpgsm ...) in such a directory.
 */
#ifndef KMS_TESTUTIL_H
#define KMS_TESTUTIL_H

#include <glib.h>

/* A temporary directory removed with everything in it when freed. */
typedef char TestDir;

/* Make a private temporary directory named after PREFIX; free with
 * test_dir_free (or g_autoptr(TestDir)). */
TestDir *test_dir_new(const char *prefix);
void test_dir_free(TestDir *dir);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(TestDir, test_dir_free)

/* Run ARGV (searched in PATH) in DIR; *OUTPUT gets stdout then stderr
 * (g_free). TRUE on exit status 0. */
gboolean test_run(const char *dir, const char *const *argv, char **output);
/* The same with GNUPGHOME (when not NULL) in the environment, stdin from
 * DIR/STDIN_NAME (when not NULL) and no core file from a crashing peer;
 * test_run_status returns the wait status. */
gboolean test_run_in(const char *dir, const char *gnupghome, const char *stdin_name,
    const char *const *argv, char **output);
int test_run_status(const char *dir, const char *gnupghome, const char *stdin_name,
    const char *const *argv, char **output);

#endif
