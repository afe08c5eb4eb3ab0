/*
 * NAME
 *	test-pkcs12 - unit tests for smime/pkcs12.c
 * DESCRIPTION
 *	Builds PKCS#12 files in both profiles from keys and certificates
 *	made with smime/ca.c, and hands them to the real readers: OpenSSL
 *	(PKCS12_parse, a safe-by-safe walk that decrypts every key bag, the
 *	openssl pkcs12 CLI), NSS 3.87 (pk12util into a fresh database) and
 *	gpgsm 2.2. What a peer cannot do is asserted too, so that the tests
 *	document each limitation and fail, saying so, when a peer changes:
 *	gpgsm 2.2 cannot read the modern profile (PBES2), crashes on EC
 *	keys, and takes only the first key of a key history.
 * SECURITY
 *	Test keys only. Passwords reach the peers through files or stdin
 *	(pk12util only takes one as an argument). Each test removes its
 *	temporary directory; gpg-agent is stopped with gpgconf --kill all
 *	before its GNUPGHOME goes.
 */
#include "smime/ca.h"
#include "smime/pkcs12.h"
#include "smime/x509util.h"
#include "tests/unit/testutil.h"

#include <fcntl.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <openssl/err.h>
#include <openssl/pkcs12.h>

#define PASSWORD	"K7QX2-MNP4T-W9ZRA-33CJD-H5BYE"	/* a token as printed */
#define ADDRESS		"alice@example.org"
#define NAME		ADDRESS " (encryption 2026-11-22)"
#define HISTORY		3		/* keys in the key-history file */

typedef STACK_OF(X509) X509Stack;

/* Free a certificate stack and its certificates. */
static void
x509_stack_free(X509Stack *sk)
{
	sk_X509_pop_free(sk, X509_free);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(X509, X509_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(EVP_PKEY, EVP_PKEY_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(X509Stack, x509_stack_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PKCS12, PKCS12_free)

/* One test case: a profile and the user's key type. */
typedef struct {
	KmsP12Profile profile;
	KmsKeyType key_type;
} Case;

/* The CA of every test certificate, and the user keys (by type and for
 * the key history), made on first use and freed in main(). */
static EVP_PKEY *ca_key;
static X509 *ca_cert;
static EVP_PKEY *user_keys[4];
static EVP_PKEY *history_keys[HISTORY];

/* Key of type T from SLOT, generated on first use; borrowed. */
static EVP_PKEY *
cached_key(EVP_PKEY **slot, KmsKeyType t)
{
	g_autoptr(GError) err = NULL;

	if (*slot == NULL)
		*slot = kms_key_generate(t, &err);
	g_assert_no_error(err);
	return *slot;
}

/* New encryption certificate for KEY, subject CN=Alice like every other
 * (a key history is one user's); caller frees. */
static X509 *
user_cert(EVP_PKEY *key)
{
	g_autoptr(GError) err = NULL;
	KmsIssueParams p = {KMS_PROFILE_ENCRYPTION, ADDRESS, "Alice", 365,
	    NULL};
	X509 *cert = kms_ca_issue(ca_cert, ca_key, key, &p, &err);

	g_assert_no_error(err);
	return cert;
}

/* Write LEN bytes of DATA to DIR/NAME. */
static void
write_file(const char *dir, const char *name, const void *data, gsize len)
{
	g_autoptr(GError) err = NULL;
	g_autofree char *path = g_build_filename(dir, name, NULL);

	g_file_set_contents(path, data, (gssize) len, &err);
	g_assert_no_error(err);
}

/*
 * Build a file from the N entries E in PROFILE (chain: the CA) and, when
 * *dir is not NULL, make *dir a private temporary directory (a short
 * path: gpg-agent puts its socket there) holding it as user.p12 and the
 * password as pw. Caller unrefs.
 */
static GBytes *
build(const KmsP12Entry *e, guint n, KmsP12Profile profile, TestDir **dir)
{
	g_autoptr(GError) err = NULL;
	g_autoptr(X509Stack) chain = sk_X509_new_null();
	GBytes *p12;

	g_assert_cmpint(sk_X509_push(chain, X509_dup(ca_cert)), ==, 1);
	p12 = kms_p12_build(e, n, chain, PASSWORD, profile, &err);
	g_assert_no_error(err);
	g_assert_nonnull(p12);
	if (dir) {
		*dir = g_dir_make_tmp("p12-XXXXXX", &err);
		g_assert_no_error(err);
		write_file(*dir, "user.p12", g_bytes_get_data(p12, NULL),
		    g_bytes_get_size(p12));
		write_file(*dir, "pw", PASSWORD, strlen(PASSWORD));
	}
	return p12;
}

/* Did a wait status come from a normal exit 0? */
static gboolean
exited_ok(int status)
{
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* Human text for a wait status; g_free. */
static char *
status_text(int status)
{
	if (WIFSIGNALED(status))
		return g_strdup_printf("killed by signal %d",
		    WTERMSIG(status));
	return g_strdup_printf("exit %d", WEXITSTATUS(status));
}

/* Skip the test (TRUE) when PROGRAM is not installed. */
static gboolean
skip_without(const char *program)
{
	g_autofree char *path = g_find_program_in_path(program);

	if (path == NULL)
		g_test_skip_printf("%s is not installed", program);
	return path == NULL;
}

/* Number of times NEEDLE occurs in HAY. */
static int
count(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

static int legacy_salts;	/* 3DES salts check_salt() has passed */

/* When ALG is the legacy PBE, assert that gpgsm's flawed PKCS#12 KDF
 * (see smime/pkcs12.c) derives the right 3DES key from its salt; worked
 * out here with OpenSSL's KDF. */
static void
check_salt(const X509_ALGOR *alg)
{
	const ASN1_OBJECT *obj;
	const void *param = NULL;
	const unsigned char *der;
	PBEPARAM *pbe;
	unsigned char a[20], ib[128];
	size_t pwlen = strlen(PASSWORD);
	int type;

	X509_ALGOR_get0(&obj, &type, &param, alg);
	if (OBJ_obj2nid(obj) != NID_pbe_WithSHA1And3_Key_TripleDES_CBC)
		return;
	g_assert_cmpint(type, ==, V_ASN1_SEQUENCE);
	der = ASN1_STRING_get0_data(param);
	pbe = d2i_PBEPARAM(NULL, &der, ASN1_STRING_length(param));
	g_assert_nonnull(pbe);
	g_assert_cmpint(ASN1_STRING_length(pbe->salt), ==, 8);
	g_assert_cmpint(PKCS12_key_gen_utf8_ex(PASSWORD, (int) pwlen,
	    pbe->salt->data, 8, PKCS12_KEY_ID, 2048, 20, a, EVP_sha1(), NULL,
	    NULL), ==, 1);
	for (size_t i = 0; i < 64; i++) {
		size_t m = (i / 2) % (pwlen + 1);	/* BMPString, 00 00 */

		ib[i] = pbe->salt->data[i % 8];
		ib[64 + i] = i % 2 && m < pwlen ? PASSWORD[m] : 0;
	}
	for (int j = 0; j < 2; j++) {
		unsigned int carry = 1, v = 0;

		for (int k = 63; k >= 0; k--) {
			v = ib[64 * j + k] + a[k % 20] + carry;
			carry = v >> 8;
		}
		if ((v & 0xff) == 0)
			g_error("3DES salt %d: gpgsm derives a wrong key from "
			    "it (I_%d + B + 1 starts with 00), want a salt it "
			    "gets right", legacy_salts + 1, j);
	}
	PBEPARAM_free(pbe);
	legacy_salts++;
}

/* One bag found by walk(). */
typedef struct {
	EVP_PKEY *key;		/* key bag: the decrypted key */
	X509 *cert;		/* certificate bag: the certificate */
	GBytes *id;		/* localKeyID, NULL when absent */
	char *name;		/* friendlyName, NULL when absent */
} Bag;

/* Free a Bag and what it holds. */
static void
bag_free(gpointer data)
{
	Bag *b = data;

	EVP_PKEY_free(b->key);
	X509_free(b->cert);
	if (b->id)
		g_bytes_unref(b->id);
	g_free(b->name);
	g_free(b);
}

/* Decode SB (decrypting a key bag) into a new Bag. */
static Bag *
bag_new(const PKCS12_SAFEBAG *sb)
{
	Bag *b = g_new0(Bag, 1);
	const ASN1_TYPE *id = PKCS12_SAFEBAG_get0_attr(sb, NID_localKeyID);
	char *name = PKCS12_get_friendlyname((PKCS12_SAFEBAG *) sb);
	PKCS8_PRIV_KEY_INFO *p8;
	const X509_ALGOR *alg;

	if (PKCS12_SAFEBAG_get_nid(sb) == NID_pkcs8ShroudedKeyBag) {
		X509_SIG_get0(PKCS12_SAFEBAG_get0_pkcs8(sb), &alg, NULL);
		check_salt(alg);
		p8 = PKCS12_decrypt_skey(sb, PASSWORD, -1);
		g_assert_nonnull(p8);
		b->key = EVP_PKCS82PKEY(p8);
		PKCS8_PRIV_KEY_INFO_free(p8);
		g_assert_nonnull(b->key);
	} else if (PKCS12_SAFEBAG_get_nid(sb) == NID_certBag) {
		b->cert = PKCS12_SAFEBAG_get1_cert(sb);
		g_assert_nonnull(b->cert);
	} else {
		g_error("unexpected bag type %s",
		    OBJ_nid2sn(PKCS12_SAFEBAG_get_nid(sb)));
	}
	if (id) {
		g_assert_cmpint(id->type, ==, V_ASN1_OCTET_STRING);
		b->id = g_bytes_new(ASN1_STRING_get0_data(
		    id->value.octet_string),
		    (gsize) ASN1_STRING_length(id->value.octet_string));
	}
	b->name = g_strdup(name);
	OPENSSL_free(name);
	return b;
}

/* Every bag of P12, in order (PKCS12_parse returns only one key), each
 * legacy salt checked; g_ptr_array_unref. */
static GPtrArray *
walk(GBytes *p12)
{
	const unsigned char *der = g_bytes_get_data(p12, NULL);
	g_autoptr(PKCS12) p = d2i_PKCS12(NULL, &der,
	    (long) g_bytes_get_size(p12));
	GPtrArray *bags = g_ptr_array_new_with_free_func(bag_free);
	STACK_OF(PKCS7) *safes;

	g_assert_nonnull(p);
	g_assert_cmpint(PKCS12_verify_mac(p, PASSWORD, -1), ==, 1);
	safes = PKCS12_unpack_authsafes(p);
	g_assert_nonnull(safes);
	for (int i = 0; i < sk_PKCS7_num(safes); i++) {
		PKCS7 *p7 = sk_PKCS7_value(safes, i);
		STACK_OF(PKCS12_SAFEBAG) *sk = NULL;

		if (PKCS7_type_is_data(p7))
			sk = PKCS12_unpack_p7data(p7);
		else if (PKCS7_type_is_encrypted(p7)) {
			check_salt(p7->d.encrypted->enc_data->algorithm);
			sk = PKCS12_unpack_p7encdata(p7, PASSWORD, -1);
		}
		g_assert_nonnull(sk);
		for (int k = 0; k < sk_PKCS12_SAFEBAG_num(sk); k++)
			g_ptr_array_add(bags,
			    bag_new(sk_PKCS12_SAFEBAG_value(sk, k)));
		sk_PKCS12_SAFEBAG_pop_free(sk, PKCS12_SAFEBAG_free);
	}
	sk_PKCS7_pop_free(safes, PKCS7_free);
	return bags;
}

/*
 * Assert that P12 holds exactly the N entries E, keys in entry order,
 * each key bag sharing its localKeyID and friendly name with its
 * certificate's bag, and the CA certificate with neither.
 */
static void
assert_contents(GBytes *p12, const KmsP12Entry *e, guint n)
{
	g_autoptr(GPtrArray) bags = walk(p12);
	guint keys = 0, certs = 0, ca = 0;

	for (guint i = 0; i < bags->len; i++) {
		Bag *b = g_ptr_array_index(bags, i);
		Bag *c = NULL;

		if (b->cert) {
			certs++;
			if (X509_cmp(b->cert, ca_cert) != 0)
				continue;
			ca++;
			if (b->id || b->name)
				g_error("CA certificate bag: got a localKeyID "
				    "or friendly name, want neither");
			continue;
		}
		if (keys >= n || EVP_PKEY_eq(b->key, e[keys].key) != 1)
			g_error("key bag %u: got another key, want entry %u's",
			    keys + 1, keys + 1);
		g_assert_cmpstr(b->name, ==, e[keys].friendly_name);
		for (guint k = 0; b->id && c == NULL && k < bags->len; k++) {
			c = g_ptr_array_index(bags, k);
			if (c->cert == NULL || c->id == NULL ||
			    !g_bytes_equal(c->id, b->id))
				c = NULL;
		}
		if (c == NULL || X509_cmp(c->cert, e[keys].cert) != 0)
			g_error("key bag %u: %s, want entry %u's certificate",
			    keys + 1, c ? "its localKeyID names another "
			    "certificate" : "no certificate bag has its "
			    "localKeyID", keys + 1);
		g_assert_cmpstr(c->name, ==, e[keys].friendly_name);
		keys++;
	}
	if (keys != n || certs != n + 1 || ca != 1)
		g_error("got %u keys and %u certificates (%u the CA), want %u "
		    "and %u (1)", keys, certs, ca, n, n + 1);
}

/* Assert what `openssl pkcs12 -info -noout` says about DIR/user.p12. */
static void
assert_openssl_info(const char *dir, KmsP12Profile p, int keys, int certs)
{
	const char *argv[] = {"openssl", "pkcs12", "-info", "-noout", "-in",
	    "user.p12", "-passin", "file:pw", NULL};
	const char *modern[] = {"MAC: sha256, Iteration 2048\n",
	    "PKCS7 Encrypted data: PBES2, PBKDF2, AES-256-CBC, Iteration "
	    "2048, PRF hmacWithSHA256\n",
	    "Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC, Iteration 2048, "
	    "PRF hmacWithSHA256\n"};
	const char *legacy[] = {"MAC: sha1, Iteration 2048\n",
	    "PKCS7 Encrypted data: pbeWithSHA1And3-KeyTripleDES-CBC, "
	    "Iteration 2048\n",
	    "Shrouded Keybag: pbeWithSHA1And3-KeyTripleDES-CBC, Iteration "
	    "2048\n"};
	const char **want = p == KMS_P12_MODERN ? modern : legacy;
	g_autofree char *out = NULL;

	if (!exited_ok(test_run_status(dir, NULL, NULL, argv, &out)))
		g_error("openssl pkcs12 -info: got failure \"%s\", want "
		    "success", out);
	if (count(out, want[0]) != 1 || count(out, want[1]) != 1 ||
	    count(out, want[2]) != keys ||
	    count(out, "Shrouded Keybag:") != keys ||
	    count(out, "Certificate bag") != certs)
		g_error("openssl pkcs12 -info: got \"%s\", want \"%s%s\", %d "
		    "key bags \"%s\" and %d certificate bags", out, want[0],
		    want[1], keys, want[2], certs);
}

/* Build, round-trip through OpenSSL, and check the algorithms. */
static void
test_openssl_round_trip(gconstpointer data)
{
	const Case *t = data;
	g_autoptr(TestDir) dir = NULL;
	EVP_PKEY *key = cached_key(&user_keys[t->key_type], t->key_type);
	g_autoptr(X509) cert = user_cert(key);
	KmsP12Entry e = {key, cert, NAME};
	g_autoptr(GBytes) p12 = build(&e, 1, t->profile, &dir);
	const unsigned char *der = g_bytes_get_data(p12, NULL);
	g_autoptr(PKCS12) parsed = d2i_PKCS12(NULL, &der,
	    (long) g_bytes_get_size(p12));
	g_autoptr(EVP_PKEY) got_key = NULL;
	g_autoptr(X509) got_cert = NULL;
	g_autoptr(X509Stack) got_ca = NULL;

	g_assert_nonnull(parsed);
	if (PKCS12_parse(parsed, PASSWORD, &got_key, &got_cert,
	    &got_ca) != 1)
		g_error("PKCS12_parse: got failure (%s), want success",
		    ERR_reason_error_string(ERR_get_error()));
	g_assert_cmpint(EVP_PKEY_eq(got_key, key), ==, 1);
	g_assert_cmpint(X509_cmp(got_cert, cert), ==, 0);
	g_assert_cmpint(sk_X509_num(got_ca), ==, 1);
	g_assert_cmpint(X509_cmp(sk_X509_value(got_ca, 0), ca_cert), ==, 0);
	assert_contents(p12, &e, 1);
	assert_openssl_info(dir, t->profile, 1, 2);
}

/* A wrong password fails OpenSSL's MAC check (library and CLI). */
static void
test_wrong_password(gconstpointer data)
{
	const Case *t = data;
	g_autoptr(TestDir) dir = NULL;
	EVP_PKEY *key = cached_key(&user_keys[t->key_type], t->key_type);
	g_autoptr(X509) cert = user_cert(key);
	KmsP12Entry e = {key, cert, NAME};
	g_autoptr(GBytes) p12 = build(&e, 1, t->profile, &dir);
	const unsigned char *der = g_bytes_get_data(p12, NULL);
	g_autoptr(PKCS12) parsed = d2i_PKCS12(NULL, &der,
	    (long) g_bytes_get_size(p12));
	const char *argv[] = {"openssl", "pkcs12", "-info", "-noout", "-in",
	    "user.p12", "-passin", "file:pw", NULL};
	g_autoptr(EVP_PKEY) got_key = NULL;
	g_autoptr(X509) got_cert = NULL;
	g_autofree char *out = NULL;

	g_assert_nonnull(parsed);
	g_assert_cmpint(PKCS12_verify_mac(parsed, PASSWORD, -1), ==, 1);
	g_assert_cmpint(PKCS12_verify_mac(parsed, PASSWORD "x", -1), ==, 0);
	g_assert_cmpint(PKCS12_parse(parsed, "wrong", &got_key, &got_cert,
	    NULL), ==, 0);
	g_assert_null(got_key);
	ERR_clear_error();
	write_file(dir, "pw", "wrong", 5);
	if (exited_ok(test_run_status(dir, NULL, NULL, argv, &out)) ||
	    strstr(out, "Mac verify error") == NULL)
		g_error("openssl pkcs12 with a wrong password: got \"%s\", "
		    "want \"Mac verify error\" and a failure", out);
}

/* Every salt of the legacy profile avoids gpgsm's KDF flaw: 1000 salts,
 * of which about 8 would hit it by chance. */
static void
test_legacy_salts(void)
{
	EVP_PKEY *key = cached_key(&user_keys[KMS_KEY_P256], KMS_KEY_P256);
	g_autoptr(X509) cert = user_cert(key);
	KmsP12Entry e = {key, cert, NULL};

	legacy_salts = 0;
	for (int f = 0; f < 500; f++) {
		g_autoptr(GBytes) p12 = build(&e, 1, KMS_P12_LEGACY, NULL);

		g_ptr_array_unref(walk(p12));
	}
	g_assert_cmpint(legacy_salts, ==, 1000);
}

/* Import DIR/user.p12 into a fresh NSS database DIR/db with pk12util;
 * *certs and *keys get what `certutil -L` and `certutil -K` list. */
static void
nss_import(const char *dir, KmsP12Profile profile, char **certs,
    char **keys)
{
	const char *mkdb[] = {"certutil", "-N", "-d", "sql:db",
	    "--empty-password", NULL};
	const char *imp[] = {"pk12util", "-i", "user.p12", "-d", "sql:db",
	    "-W", PASSWORD, "-K", "", NULL};
	const char *list_certs[] = {"certutil", "-L", "-d", "sql:db", NULL};
	const char *list_keys[] = {"certutil", "-K", "-d", "sql:db", NULL};
	g_autofree char *db = g_build_filename(dir, "db", NULL);
	g_autofree char *out = NULL, *out2 = NULL;

	g_assert_cmpint(g_mkdir(db, 0700), ==, 0);
	if (!exited_ok(test_run_status(dir, NULL, NULL, mkdb, &out)))
		g_error("certutil -N: %s", out);
	if (!exited_ok(test_run_status(dir, NULL, NULL, imp, &out2)) ||
	    !strstr(out2, "PKCS12 IMPORT SUCCESSFUL"))
		g_error("pk12util -i (%s profile): got \"%s\", want \"PKCS12 "
		    "IMPORT SUCCESSFUL\"", kms_p12_profile_name(profile),
		    g_strstrip(out2));
	if (!exited_ok(test_run_status(dir, NULL, NULL, list_certs, certs)))
		g_error("certutil -L: %s", *certs);
	if (!exited_ok(test_run_status(dir, NULL, NULL, list_keys, keys)))
		g_error("certutil -K: %s", *keys);
}

/* Both profiles import into a fresh NSS database (Thunderbird's NSS). */
static void
test_nss_import(gconstpointer data)
{
	const Case *t = data;
	g_autoptr(TestDir) dir = NULL;
	g_autoptr(X509) cert = NULL;
	g_autoptr(GBytes) p12 = NULL;
	KmsP12Entry e = {NULL, NULL, NAME};
	const char *kt = t->key_type == KMS_KEY_P256 ? "< 0> ec " :
	    "< 0> rsa ";
	g_autofree char *certs = NULL, *keys = NULL;

	if (skip_without("pk12util") || skip_without("certutil"))
		return;
	e.key = cached_key(&user_keys[t->key_type], t->key_type);
	e.cert = cert = user_cert(e.key);
	p12 = build(&e, 1, t->profile, &dir);
	nss_import(dir, t->profile, &certs, &keys);
	if (!strstr(certs, NAME) || !strstr(certs, "Test CA"))
		g_error("certutil -L: got \"%s\", want the user certificate "
		    "\"%s\" and the CA", certs, NAME);
	if (!strstr(keys, kt) || !strstr(keys, NAME) ||
	    count(keys, "> ") != 1)
		g_error("certutil -K: got \"%s\", want one key \"%s... %s\"",
		    keys, kt, NAME);
}

/*
 * Import DIR/user.p12 into gpgsm with a fresh GNUPGHOME (DIR/gh), then
 * stop its agent. Returns the import's wait status; *output gets the
 * import's text followed by `gpgsm --with-colons --list-secret-keys`.
 */
static int
gpgsm_import(const char *dir, char **output)
{
	g_autofree char *home = g_build_filename(dir, "gh", NULL);
	g_autofree char *out = NULL, *list = NULL, *kill_out = NULL;
	/* gpgsm reads the passphrase once, opens the PKCS#12 with it and
	 * protects the imported key with it. */
	const char *imp[] = {"timeout", "120", "gpgsm", "--batch",
	    "--pinentry-mode", "loopback", "--passphrase-fd", "0",
	    "--disable-dirmngr", "--import", "user.p12", NULL};
	const char *ls[] = {"gpgsm", "--batch", "--with-colons",
	    "--list-secret-keys", NULL};
	const char *kill[] = {"gpgconf", "--kill", "all", NULL};
	int st;

	g_assert_cmpint(g_mkdir(home, 0700), ==, 0);
	write_file(home, "gpg-agent.conf", "allow-loopback-pinentry\n", 24);
	write_file(dir, "pw-line", PASSWORD "\n", strlen(PASSWORD) + 1);
	st = test_run_status(dir, home, "pw-line", imp, &out);
	test_run_status(dir, home, NULL, ls, &list);
	test_run_status(dir, home, NULL, kill, &kill_out);
	*output = g_strconcat(out, list, NULL);
	return st;
}

/*
 * gpgsm 2.2 imports the legacy profile with an RSA key. It cannot read
 * the modern profile (PBES2 parameters) and crashes on EC keys: those
 * cases pass while the limitation holds and fail, saying so, when a
 * gpgsm imports them.
 */
static void
test_gpgsm(gconstpointer data)
{
	const Case *t = data;
	gboolean want = t->profile == KMS_P12_LEGACY &&
	    t->key_type != KMS_KEY_P256;
	g_autoptr(TestDir) dir = NULL;
	g_autoptr(X509) cert = NULL;
	g_autoptr(GBytes) p12 = NULL;
	KmsP12Entry e = {NULL, NULL, NAME};
	g_autofree char *out = NULL, *st_text = NULL;
	gboolean got;
	int st;

	if (skip_without("gpgsm") || skip_without("gpgconf"))
		return;
	e.key = cached_key(&user_keys[t->key_type], t->key_type);
	e.cert = cert = user_cert(e.key);
	p12 = build(&e, 1, t->profile, &dir);
	st = gpgsm_import(dir, &out);
	st_text = status_text(st);
	got = exited_ok(st) && count(out, "\ncrs:") == 1 &&
	    strstr(out, "secret keys imported: 1");
	g_test_message("gpgsm --import (%s profile, %s key): %s, %s",
	    kms_p12_profile_name(t->profile), kms_key_type_name(t->key_type),
	    st_text, got ? "imported" : "not imported");
	if (want && !got)
		g_error("gpgsm --import: got %s and \"%s\", want exit 0 and "
		    "one secret key", st_text, out);
	if (!want && got)
		g_test_fail_printf("gpgsm now imports the %s profile with a "
		    "%s key (want a refusal): the documented limitation is "
		    "gone, revisit the profile choice. Output: %s",
		    kms_p12_profile_name(t->profile),
		    kms_key_type_name(t->key_type), out);
	else if (t->profile == KMS_P12_MODERN &&
	    !strstr(out, "pkcs5PBES2-params"))
		g_test_fail_printf("gpgsm refused the modern profile for "
		    "another reason than PBES2: got \"%s\", want an error "
		    "at \"pkcs5PBES2-params\"", out);
}

/* A key history: HISTORY RSA keys of one user, newest first, each with
 * its own certificate and a friendly name naming its year. */
typedef struct {
	KmsP12Entry e[HISTORY];
	X509 *certs[HISTORY];
	char *names[HISTORY];
} History;

/* Fill H, generating the keys on first use. */
static void
history_init(History *h)
{
	for (int i = 0; i < HISTORY; i++) {
		h->certs[i] = user_cert(cached_key(&history_keys[i],
		    KMS_KEY_RSA2048));
		h->names[i] = g_strdup_printf(ADDRESS " (encryption "
		    "202%d-11-22)", 6 - i);
		h->e[i] = (KmsP12Entry) {history_keys[i], h->certs[i],
		    h->names[i]};
	}
}

/* Free H's certificates and names (the keys are shared). */
static void
history_clear(History *h)
{
	for (int i = 0; i < HISTORY; i++) {
		X509_free(h->certs[i]);
		g_free(h->names[i]);
	}
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(History, history_clear)

/* gpgsm 2.2 takes only the first key of a key-history file (it reads one
 * secret key per PKCS#12); fails, saying so, when it takes them all. */
static void
assert_gpgsm_first_key_only(const char *dir, const History *h)
{
	g_autofree char *out = NULL, *st_text = NULL;
	int st = gpgsm_import(dir, &out);
	int n = count(out, "\ncrs:");

	st_text = status_text(st);
	if (!exited_ok(st) || n == 0)
		g_error("gpgsm --import (legacy key history): got %s, \"%s\"; "
		    "want exit 0 and a secret key", st_text, out);
	if (n == HISTORY) {
		g_test_fail_printf("gpgsm now imports all %d keys of a key "
		    "history (want only the first): the documented "
		    "limitation is gone", HISTORY);
		return;
	}
	for (int i = 0; i < HISTORY; i++) {
		g_autofree char *sha = kms_x509_sha256_hex(h->certs[i]);
		g_autofree char *fpr = g_ascii_strup(sha, -1);	/* fp2: */

		if ((strstr(out, fpr) != NULL) != (i == 0))
			g_error("gpgsm --list-secret-keys: got %d secret "
			    "key(s) in \"%s\"; want only entry 1's (%s)", n,
			    out, fpr);
	}
}

/* A recovery file: three keys and certificates, every key decryptable and
 * tied to its certificate; openssl and NSS see all three, gpgsm 2.2 (the
 * legacy profile) only the first. */
static void
test_key_history(gconstpointer data)
{
	const Case *t = data;
	g_autoptr(TestDir) dir = NULL;
	g_auto(History) h = {0};
	g_autoptr(GBytes) p12 = NULL;
	const char *nodes[] = {"openssl", "pkcs12", "-in", "user.p12",
	    "-passin", "file:pw", "-nodes", NULL};
	g_autofree char *out = NULL, *certs = NULL, *keys = NULL;

	history_init(&h);
	p12 = build(h.e, HISTORY, t->profile, &dir);
	assert_contents(p12, h.e, HISTORY);
	assert_openssl_info(dir, t->profile, HISTORY, HISTORY + 1);
	if (!exited_ok(test_run_status(dir, NULL, NULL, nodes, &out)) ||
	    count(out, "BEGIN PRIVATE KEY") != HISTORY ||
	    count(out, "BEGIN CERTIFICATE") != HISTORY + 1)
		g_error("openssl pkcs12 -nodes: got %d keys and %d "
		    "certificates, want %d and %d",
		    count(out, "BEGIN PRIVATE KEY"),
		    count(out, "BEGIN CERTIFICATE"), HISTORY, HISTORY + 1);
	for (int i = 0; i < HISTORY; i++)
		if (!strstr(out, h.names[i]))
			g_error("openssl pkcs12 -nodes: got \"%s\", want "
			    "friendly name \"%s\"", out, h.names[i]);
	if (t->profile == KMS_P12_LEGACY && !skip_without("gpgsm") &&
	    !skip_without("gpgconf"))
		assert_gpgsm_first_key_only(dir, &h);
	if (skip_without("pk12util") || skip_without("certutil"))
		return;
	nss_import(dir, t->profile, &certs, &keys);
	if (count(keys, "> rsa ") != HISTORY)
		g_error("certutil -K after importing the key history: got "
		    "\"%s\", want %d RSA keys", keys, HISTORY);
	for (int i = 0; i < HISTORY; i++)
		if (!strstr(certs, h.names[i]) || !strstr(keys, h.names[i]))
			g_error("certutil -L/-K: got \"%s%s\", want \"%s\"",
			    certs, keys, h.names[i]);
}

#define LONG_PW		"0123456789abcdef0123456789abcdef"	/* 32 */
#define PW_31		"123456789abcdef0123456789abcdef"
#define CYRILLIC_PW	"\xd0\xbf\xd0\xb0\xd1\x80\xd0\xbe\xd0\xbb\xd1\x8c"

/* Bad input is refused with a message that never holds the password;
 * the legacy profile refuses passwords gpgsm cannot use. */
static void
test_refuses_bad_input(void)
{
	EVP_PKEY *key = cached_key(&user_keys[KMS_KEY_P256], KMS_KEY_P256);
	g_autoptr(X509) cert = user_cert(key);
	g_autoptr(X509) other = user_cert(cached_key(
	    &user_keys[KMS_KEY_RSA2048], KMS_KEY_RSA2048));
	KmsP12Entry good = {key, cert, ADDRESS};
	KmsP12Entry mismatch = {key, other, ADDRESS};
	KmsP12Entry twice[2] = {good, good};
	KmsP12Entry no_key = {NULL, cert, ADDRESS};
	KmsP12Entry bad_name = {key, cert, "\xff\xfe"};
	const struct {
		const char *what;
		const KmsP12Entry *e;
		guint n;
		const char *password;
		KmsP12Profile profile;
		const char *want;
	} cases[] = {
		{"no entries", &good, 0, PASSWORD, KMS_P12_MODERN,
		    "no key and certificate"},
		{"no key", &no_key, 1, PASSWORD, KMS_P12_MODERN,
		    "entry 1 (CN=Alice): missing key"},
		{"key of another certificate", &mismatch, 1, PASSWORD,
		    KMS_P12_LEGACY, "entry 1 (CN=Alice): the key does not "
		    "match"},
		{"same certificate twice", twice, 2, PASSWORD, KMS_P12_MODERN,
		    "entry 2 (CN=Alice): same certificate as entry 1"},
		{"friendly name not UTF-8", &bad_name, 1, PASSWORD,
		    KMS_P12_MODERN, "friendly name is not UTF-8"},
		{"empty password", &good, 1, "", KMS_P12_MODERN,
		    "empty password"},
		{"no password", &good, 1, NULL, KMS_P12_LEGACY,
		    "empty password"},
		{"password not UTF-8", &good, 1, "\xc3(", KMS_P12_LEGACY,
		    "password is not UTF-8"},
		{"legacy password of 32 bytes", &good, 1, LONG_PW,
		    KMS_P12_LEGACY, "longer than 31 bytes"},
		{"legacy password beyond Latin-1", &good, 1, CYRILLIC_PW,
		    KMS_P12_LEGACY, "only use Latin-1"},
		{"unknown profile", &good, 1, PASSWORD, (KmsP12Profile) 7,
		    "unknown PKCS#12 profile"},
	};
	const struct {
		const char *password;
		KmsP12Profile profile;
	} fine[] = {
		{PW_31, KMS_P12_LEGACY},
		{"p\xc3\xa4sswort-\xc3\x9c", KMS_P12_LEGACY},	/* Latin-1 */
		{LONG_PW, KMS_P12_MODERN},
		{CYRILLIC_PW, KMS_P12_MODERN},
	};

	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_autoptr(GError) err = NULL;
		g_autoptr(GBytes) p12 = kms_p12_build(cases[i].e, cases[i].n,
		    NULL, cases[i].password, cases[i].profile, &err);

		if (p12 != NULL || !g_error_matches(err, KMS_P12_ERROR,
		    KMS_P12_ERROR_INVALID) || !strstr(err->message,
		    cases[i].want))
			g_error("%s: got %s, want KMS_P12_ERROR_INVALID with "
			    "\"%s\"", cases[i].what, err ? err->message :
			    "success", cases[i].want);
		g_assert_null(strstr(err->message, PASSWORD));
		g_assert_cmpint(ERR_peek_error(), ==, 0);
	}
	/* What gpgsm can use passes, and the modern profile takes all. */
	for (size_t i = 0; i < G_N_ELEMENTS(fine); i++) {
		g_autoptr(GError) err = NULL;
		g_autoptr(GBytes) p12 = kms_p12_build(&good, 1, NULL,
		    fine[i].password, fine[i].profile, &err);

		g_assert_no_error(err);
		g_assert_nonnull(p12);
	}
}

/* A copy of the user's certificate in the chain gives no second bag. */
static void
test_chain_duplicate_skipped(void)
{
	g_autoptr(GError) err = NULL;
	EVP_PKEY *key = cached_key(&user_keys[KMS_KEY_P256], KMS_KEY_P256);
	g_autoptr(X509) cert = user_cert(key);
	g_autoptr(X509Stack) chain = sk_X509_new_null();
	KmsP12Entry e = {key, cert, NULL};
	g_autoptr(GBytes) p12 = NULL;

	g_assert_cmpint(sk_X509_push(chain, X509_dup(ca_cert)), ==, 1);
	g_assert_cmpint(sk_X509_push(chain, X509_dup(cert)), ==, 2);
	p12 = kms_p12_build(&e, 1, chain, PASSWORD, KMS_P12_MODERN, &err);
	g_assert_no_error(err);
	assert_contents(p12, &e, 1);
}

/* Profile names parse in any case and name themselves back. */
static void
test_profile_names(void)
{
	KmsP12Profile p = KMS_P12_LEGACY;

	g_assert_true(kms_p12_profile_parse("modern", &p));
	g_assert_cmpint(p, ==, KMS_P12_MODERN);
	g_assert_true(kms_p12_profile_parse("LEGACY", &p));
	g_assert_cmpint(p, ==, KMS_P12_LEGACY);
	g_assert_false(kms_p12_profile_parse("aes", &p));
	g_assert_false(kms_p12_profile_parse(NULL, &p));
	g_assert_cmpint(p, ==, KMS_P12_LEGACY);
	g_assert_cmpstr(kms_p12_profile_name(KMS_P12_MODERN), ==, "modern");
	g_assert_cmpstr(kms_p12_profile_name(KMS_P12_LEGACY), ==, "legacy");
	g_assert_cmpstr(kms_p12_profile_name((KmsP12Profile) 9), ==,
	    "unknown");
}

static const Case modern_rsa = {KMS_P12_MODERN, KMS_KEY_RSA2048};
static const Case modern_p256 = {KMS_P12_MODERN, KMS_KEY_P256};
static const Case legacy_rsa = {KMS_P12_LEGACY, KMS_KEY_RSA2048};
static const Case legacy_p256 = {KMS_P12_LEGACY, KMS_KEY_P256};

static const struct {
	const char *path;
	GTestDataFunc func;
	const Case *c;
} data_tests[] = {
	{"/p12/modern/rsa2048/openssl-round-trip-and-algorithms",
	    test_openssl_round_trip, &modern_rsa},
	{"/p12/modern/p256/openssl-round-trip-and-algorithms",
	    test_openssl_round_trip, &modern_p256},
	{"/p12/legacy/rsa2048/openssl-round-trip-and-algorithms",
	    test_openssl_round_trip, &legacy_rsa},
	{"/p12/legacy/p256/openssl-round-trip-and-algorithms",
	    test_openssl_round_trip, &legacy_p256},
	{"/p12/modern/wrong-password-fails-mac", test_wrong_password,
	    &modern_p256},
	{"/p12/legacy/wrong-password-fails-mac", test_wrong_password,
	    &legacy_p256},
	{"/p12/modern/rsa2048/imports-into-nss", test_nss_import,
	    &modern_rsa},
	{"/p12/modern/p256/imports-into-nss", test_nss_import, &modern_p256},
	{"/p12/legacy/rsa2048/imports-into-nss", test_nss_import,
	    &legacy_rsa},
	{"/p12/legacy/p256/imports-into-nss", test_nss_import, &legacy_p256},
	{"/p12/legacy/rsa2048/imports-into-gpgsm", test_gpgsm, &legacy_rsa},
	{"/p12/modern/rsa2048/gpgsm-2.2-cannot-read-pbes2", test_gpgsm,
	    &modern_rsa},
	{"/p12/legacy/p256/gpgsm-2.2-cannot-import-ec-keys", test_gpgsm,
	    &legacy_p256},
	{"/p12/modern/key-history-all-keys-in-openssl-and-nss",
	    test_key_history, &modern_rsa},
	{"/p12/legacy/key-history-all-keys-in-openssl-and-nss-first-in-gpgsm",
	    test_key_history, &legacy_rsa},
};

/* Register the tests around one P-256 CA; keys are freed at the end. */
int
main(int argc, char **argv)
{
	g_autoptr(GError) err = NULL;
	int rc;

	g_test_init(&argc, &argv, NULL);
	ca_key = kms_key_generate(KMS_KEY_P256, &err);
	g_assert_no_error(err);
	ca_cert = kms_ca_make_root(ca_key, "CN=Test CA, O=Example", 3650,
	    &err);
	g_assert_no_error(err);
	g_test_add_func("/p12/profile/names-parse-in-any-case",
	    test_profile_names);
	g_test_add_func("/p12/build/refuses-bad-input-without-the-password",
	    test_refuses_bad_input);
	g_test_add_func("/p12/build/chain-copy-of-entry-certificate-skipped",
	    test_chain_duplicate_skipped);
	g_test_add_func("/p12/legacy/salts-avoid-gpgsm-kdf-flaw",
	    test_legacy_salts);
	for (size_t i = 0; i < G_N_ELEMENTS(data_tests); i++)
		g_test_add_data_func(data_tests[i].path, data_tests[i].c,
		    data_tests[i].func);
	rc = g_test_run();
	for (size_t i = 0; i < G_N_ELEMENTS(user_keys); i++)
		EVP_PKEY_free(user_keys[i]);
	for (size_t i = 0; i < HISTORY; i++)
		EVP_PKEY_free(history_keys[i]);
	X509_free(ca_cert);
	EVP_PKEY_free(ca_key);
	return rc;
}
