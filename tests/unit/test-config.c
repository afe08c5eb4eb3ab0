/*
 * Unit tests for common/config.c: parsing, validation with FILE:LINE
 * diagnostics, defaults, and that every key is documented.
 */
#include "autoconfig.h"

#include <string.h>

#include <glib/gstdio.h>

#include "common/config.h"

static char *tmpdir;

/* Write TEXT to a fresh file and load it. */
static KmsConfig *
load_text(const char *text, GError **err)
{
	static int n;
	g_autofree char *path = g_strdup_printf("%s/c%d.conf", tmpdir, n++);

	g_assert_true(g_file_set_contents(path, text, -1, NULL));
	return kms_config_load(path, err);
}

/* Load TEXT, expect failure whose message contains WANT. */
static void
expect_error(const char *text, const char *want)
{
	g_autoptr(GError) e = NULL;
	KmsConfig *c = load_text(text, &e);

	if (c != NULL)
		g_error("loaded a bad configuration; want error containing \"%s\"", want);
	g_assert_nonnull(e);
	if (strstr(e->message, want) == NULL)
		g_error("got \"%s\", want it to contain \"%s\"", e->message, want);
}

static void
test_minimal_and_defaults(void)
{
	g_autoptr(GError) e = NULL;
	KmsConfig *c = load_text("[vault]\ndsn = host=/tmp dbname=kms\n", &e);

	g_assert_no_error(e);
	g_assert_cmpstr(kms_config_get(c, "vault", "dsn"), ==, "host=/tmp dbname=kms");
	g_assert_cmpstr(kms_config_get(c, "milter", "socket"), ==, "inet:8891@127.0.0.1");
	g_assert_cmpint(kms_config_get_int(c, "kms", "request_ttl"), ==, 24 * 3600);
	g_assert_cmpint(kms_config_get_int(c, "kms", "kdf_memory"), ==, 64 << 20);
	g_assert_cmpstr(kms_config_dsn(c, "milter"), ==, "host=/tmp dbname=kms");
	g_assert_false(kms_config_is_set(c, "milter", "socket"));
	g_assert_cmpstr(kms_config_get_list(c, "policy", "algorithms")[0], ==, "aes256-cbc");
	kms_config_free(c);
}

static void
test_values_parsed(void)
{
	g_autoptr(GError) e = NULL;
	KmsConfig *c = load_text(
	    "# comment\n[vault]\ndsn = dbname=kms\n\n[milter]\nsocket = unix:/run/kms.sock\n"
	    "dsn = dbname=kms user=kms_milter\nmax_message_size = 2m\n"
	    "[kms]\nrequest_ttl = 2d\n[policy]\nalgorithms = aes128-gcm , aes256-cbc\n", &e);
	char *const *algs;

	g_assert_no_error(e);
	g_assert_cmpstr(kms_config_get(c, "milter", "socket"), ==, "unix:/run/kms.sock");
	g_assert_cmpstr(kms_config_dsn(c, "milter"), ==, "dbname=kms user=kms_milter");
	g_assert_cmpstr(kms_config_dsn(c, "kms"), ==, "dbname=kms");
	g_assert_cmpint(kms_config_get_int(c, "milter", "max_message_size"), ==, 2 * 1024 * 1024);
	g_assert_cmpint(kms_config_get_int(c, "kms", "request_ttl"), ==, 2 * 86400);
	algs = kms_config_get_list(c, "policy", "algorithms");
	g_assert_cmpstr(algs[0], ==, "aes128-gcm");
	g_assert_cmpstr(algs[1], ==, "aes256-cbc");
	g_assert_null(algs[2]);
	kms_config_free(c);
}

static void
test_unknown_key_names_line(void)
{
	expect_error("[vault]\ndsn = dbname=kms\n\n[milter]\nsockett = inet:1@127.0.0.1\n",
	    ":5: unknown key 'sockett' in [milter]");
}

static void
test_unknown_section_names_line(void)
{
	expect_error("[vault]\ndsn = dbname=kms\n[vaults]\ndsn = x\n", ":3: unknown section [vaults]");
}

static void
test_bad_values_name_line(void)
{
	expect_error("[vault]\ndsn = dbname=kms\n[kms]\nrequest_ttl = soon\n",
	    ":4: [kms] request_ttl = soon: expected a duration");
	expect_error("[vault]\ndsn = dbname=kms\n[milter]\nsocket = inet:127.0.0.1:8891\n",
	    ":4: [milter] socket");
	expect_error("[vault]\ndsn = dbname=kms\n[policy]\nalgorithms = aes256-cbc,rc4\n",
	    "unknown item 'rc4'");
	expect_error("[vault]\ndsn = dbname=kms\n[ca]\nkey_type = dsa\n",
	    ":4: [ca] key_type = dsa: expected one of rsa2048|rsa3072");
	expect_error("[vault]\ndsn = dbname=kms\n[kms]\nkdf_passes = 1\n", "out of range");
	expect_error("[vault]\ndsn = dbname=kms\n[mail]\nfrom = not-an-address\n",
	    ":4: [mail] from");
}

static void
test_malformed_dsn(void)
{
	expect_error("[vault]\ndsn = host='unterminated\n", ":2: [vault] dsn");
	expect_error("[vault]\ndsn = nosuchoption=1\n", "malformed connection string");
}

static void
test_syntax_errors(void)
{
	expect_error("[vault]\ndsn = dbname=kms\nthis line is junk\n", ":3: expected key = value");
	expect_error("dsn = dbname=kms\n", ":1: key outside any [section]");
	expect_error("[vault\ndsn = dbname=kms\n", ":1: malformed section header");
	expect_error("[vault]\ndsn = dbname=a\ndsn = dbname=b\n",
	    ":3: [vault] dsn set twice (first at line 2)");
	expect_error("[milter]\nsocket = unix:/x\n", "[vault] dsn is required");
}

static void
test_missing_file(void)
{
	g_autoptr(GError) e = NULL;
	g_autofree char *path = g_strdup_printf("%s/does-not-exist.conf", tmpdir);

	g_assert_null(kms_config_load(path, &e));
	g_assert_nonnull(e);
	g_assert_nonnull(strstr(e->message, path));
	g_assert_nonnull(strstr(e->message, "No such file"));
}

/* The man page and the sample name every key of the schema. */
static void
test_every_key_documented(void)
{
	const char *srcdir = g_getenv("top_srcdir");
	g_autofree char *man = NULL, *sample = NULL;
	g_autofree char *manpath = NULL, *samplepath = NULL;

	if (srcdir == NULL)
		srcdir = ".";
	manpath = g_build_filename(srcdir, "doc", "kmsmilter.conf.5", NULL);
	samplepath = g_build_filename(srcdir, "contrib", "kmsmilter.conf.sample", NULL);
	g_assert_true(g_file_get_contents(manpath, &man, NULL, NULL));
	g_assert_true(g_file_get_contents(samplepath, &sample, NULL, NULL));
	for (const KmsConfigKey *k = kms_config_schema(); k->section; k++) {
		g_autofree char *sect = g_strdup_printf("[%s]", k->section);
		g_autofree char *re = g_strdup_printf("(?m)^#? ?%s =", k->key);

		if (strstr(sample, sect) == NULL || !g_regex_match_simple(re, sample, 0, 0))
			g_error("contrib/kmsmilter.conf.sample lacks [%s] %s", k->section, k->key);
		if (strstr(man, k->key) == NULL)
			g_error("doc/kmsmilter.conf.5 lacks [%s] %s", k->section, k->key);
	}
}

int
main(int argc, char **argv)
{
	int rc;

	g_test_init(&argc, &argv, NULL);
	tmpdir = g_dir_make_tmp("kms-config-XXXXXX", NULL);
	g_test_add_func("/config/minimal-file-gets-defaults", test_minimal_and_defaults);
	g_test_add_func("/config/values-are-parsed", test_values_parsed);
	g_test_add_func("/config/unknown-key-names-file-and-line", test_unknown_key_names_line);
	g_test_add_func("/config/unknown-section-names-line", test_unknown_section_names_line);
	g_test_add_func("/config/bad-values-name-line", test_bad_values_name_line);
	g_test_add_func("/config/malformed-dsn-names-line", test_malformed_dsn);
	g_test_add_func("/config/syntax-errors-name-line", test_syntax_errors);
	g_test_add_func("/config/missing-file-is-named", test_missing_file);
	g_test_add_func("/config/every-key-documented", test_every_key_documented);
	rc = g_test_run();
	{
		g_autoptr(GDir) d = g_dir_open(tmpdir, 0, NULL);
		const char *n;

		while (d && (n = g_dir_read_name(d))) {
			g_autofree char *p = g_build_filename(tmpdir, n, NULL);

			g_unlink(p);
		}
		g_rmdir(tmpdir);
	}
	g_free(tmpdir);
	return rc;
}
