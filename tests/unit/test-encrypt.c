/*
 * NAME
 *	test-encrypt - unit tests for smime/encrypt.c
 * DESCRIPTION
 *	Builds inner MIME entities, encrypts them for recipients whose keys
 *	and certificates are made here with smime/ca.c, writes the result as
 *	a whole message, and has each recipient's own implementation decrypt
 *	it: OpenSSL (`openssl cms -decrypt` on the message), NSS 3.87
 *	(`cmsutil -D` on the DER, as Thunderbird's library sees the part)
 *	and gpgsm 2.2 (`gpgsm --decrypt --assume-base64` on the body, as a
 *	mail client hands it the part). Every peer must return the entity
 *	byte for byte (all three write what they decrypted unchanged, CRLF
 *	included). What a peer cannot do is asserted as well, and fails,
 *	saying so, when a peer learns it: NSS 3.87 and gpgsm 2.2 cannot
 *	decrypt AES-GCM (AuthEnvelopedData) nor RSAES-OAEP, NSS 3.87 cannot
 *	decrypt ECDH, gpgsm 2.2 cannot import EC keys at all (test-pkcs12).
 *	NSS and gpgsm each get one database/home for the whole run, with
 *	the RSA (and for NSS also the EC) recipient's key imported once.
 * SECURITY
 *	Test keys only; the PKCS#12 password reaches gpgsm through a file on
 *	stdin and pk12util as an argument (its only way).
 */
#include "smime/ca.h"
#include "smime/encrypt.h"
#include "smime/pkcs12.h"
#include "tests/unit/testutil.h"

#include <fcntl.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#define PASSWORD	"K7QX2-MNP4T-W9ZRA-33CJD-H5BYE"
#define ROUTING		"From: Alice <alice@example.org>\r\n" \
			"To: bob@example.org, carol@example.org\r\n" \
			"Subject: quarterly figures\r\n" \
			"Message-ID: <t1@example.org>\r\n" \
			"MIME-Version: 1.0\r\n"

/* The message every peer case encrypts (LF line ends, 8-bit body). */
static const char message[] =
    "From: Alice <alice@example.org>\n"
    "To: bob@example.org\n"
    "Subject: quarterly figures\n"
    "MIME-Version: 1.0\n"
    "Content-Type: text/plain;\n"
    "\tcharset=utf-8\n"
    "Content-Transfer-Encoding: 8bit\n"
    "X-Mailer: test\n"
    "\n"
    "Gr\xc3\xbc\xc3\x9f" "e,\n"
    "the figures are attached.\r\n"
    "\n"
    "-- \n"
    "Alice\n";

/* What it must become. */
static const char message_entity[] =
    "Content-Type: text/plain;\r\n"
    "\tcharset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n"
    "Gr\xc3\xbc\xc3\x9f" "e,\r\n"
    "the figures are attached.\r\n"
    "\r\n"
    "-- \r\n"
    "Alice\r\n";

G_DEFINE_AUTOPTR_CLEANUP_FUNC(X509, X509_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(EVP_PKEY, EVP_PKEY_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(CMS_ContentInfo, CMS_ContentInfo_free)

/* A recipient: key, encryption certificate, and their PEM files in the
 * shared directory as NAME.pem / NAME.key. */
typedef struct {
	const char *name;
	const char *address;
	KmsKeyType type;
	EVP_PKEY *key;
	X509 *cert;
} Party;

static EVP_PKEY *ca_key;
static X509 *ca_cert;
static Party bob = {"bob", "bob@example.org", KMS_KEY_RSA2048, NULL, NULL};
static Party carol = {"carol", "carol@example.org", KMS_KEY_P256, NULL,
    NULL};
static Party dave = {"dave", "dave@example.org", KMS_KEY_RSA3072, NULL,
    NULL};
static Party eve = {"eve", "eve@example.org", KMS_KEY_RSA2048, NULL, NULL};
static TestDir *shared;		/* PEM files, NSS db, gpgsm home */
static int nss_state, gpgsm_state;	/* 0 not tried, 1 ready, -1 absent */

/* Write LEN bytes of DATA to DIR/NAME. */
static void
write_file(const char *dir, const char *name, const void *data, gsize len)
{
	g_autoptr(GError) err = NULL;
	g_autofree char *path = g_build_filename(dir, name, NULL);

	g_file_set_contents(path, data, (gssize) len, &err);
	g_assert_no_error(err);
}

/* Contents of DIR/NAME; NULL when it does not exist. */
static GBytes *
read_file(const char *dir, const char *name)
{
	g_autofree char *path = g_build_filename(dir, name, NULL);
	char *data = NULL;
	gsize len = 0;

	if (!g_file_get_contents(path, &data, &len, NULL))
		return NULL;
	return g_bytes_new_take(data, len);
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

/* Write KEY (unencrypted PKCS#8) and CERT as PEM to DIR/NAME.key, .pem. */
static void
write_pem(const char *dir, const char *name, EVP_PKEY *key, X509 *cert)
{
	g_autofree char *kpath = g_strdup_printf("%s/%s.key", dir, name);
	g_autofree char *cpath = g_strdup_printf("%s/%s.pem", dir, name);
	BIO *b;

	if (key) {
		b = BIO_new_file(kpath, "w");
		g_assert_nonnull(b);
		g_assert_cmpint(PEM_write_bio_PrivateKey(b, key, NULL, NULL,
		    0, NULL, NULL), ==, 1);
		BIO_free(b);
	}
	b = BIO_new_file(cpath, "w");
	g_assert_nonnull(b);
	g_assert_cmpint(PEM_write_bio_X509(b, cert), ==, 1);
	BIO_free(b);
}

/* Issue P's key and certificate in PROFILE and write them out. */
static void
party_init(Party *p)
{
	g_autoptr(GError) err = NULL;
	KmsIssueParams ip = {KMS_PROFILE_ENCRYPTION, p->address, NULL, 365,
	    NULL};

	p->key = kms_key_generate(p->type, &err);
	g_assert_no_error(err);
	p->cert = kms_ca_issue(ca_cert, ca_key, p->key, &ip, &err);
	g_assert_no_error(err);
	write_pem(shared, p->name, p->key, p->cert);
}

/* Free P's key and certificate. */
static void
party_clear(Party *p)
{
	EVP_PKEY_free(p->key);
	X509_free(p->cert);
}

/* Write P's key as a legacy PKCS#12 (what gpgsm 2.2 reads; NSS reads it
 * too) to DIR/NAME.p12. */
static void
write_p12(const Party *p)
{
	g_autoptr(GError) err = NULL;
	KmsP12Entry e = {p->key, p->cert, p->address};
	g_autoptr(GBytes) p12 = kms_p12_build(&e, 1, NULL, PASSWORD,
	    KMS_P12_LEGACY, &err);
	g_autofree char *name = g_strdup_printf("%s.p12", p->name);

	g_assert_no_error(err);
	write_file(shared, name, g_bytes_get_data(p12, NULL),
	    g_bytes_get_size(p12));
}

/* One NSS database for the run: Bob's (RSA) and Carol's (EC) keys
 * imported with pk12util. FALSE (test skipped) without NSS tools. */
static gboolean
nss_setup(void)
{
	const char *mkdb[] = {"certutil", "-N", "-d", "sql:db",
	    "--empty-password", NULL};
	g_autofree char *db = g_build_filename(shared, "db", NULL);
	g_autofree char *out = NULL;

	if (nss_state == 0) {
		nss_state = -1;
		if (skip_without("pk12util") || skip_without("certutil") ||
		    skip_without("cmsutil"))
			return FALSE;
		g_assert_cmpint(g_mkdir(db, 0700), ==, 0);
		if (!test_run_in(shared, NULL, NULL, mkdb, &out))
			g_error("certutil -N: %s", out);
		for (int i = 0; i < 2; i++) {
			const Party *p = i == 0 ? &bob : &carol;
			g_autofree char *file = g_strdup_printf("%s.p12",
			    p->name);
			const char *imp[] = {"pk12util", "-i", file, "-d",
			    "sql:db", "-W", PASSWORD, "-K", "", NULL};
			g_autofree char *o = NULL;

			write_p12(p);
			if (!test_run_in(shared, NULL, NULL, imp, &o))
				g_error("pk12util -i %s: %s", file, o);
		}
		nss_state = 1;
	}
	if (nss_state < 0)
		g_test_skip("NSS tools are not installed");
	return nss_state > 0;
}

/* One gpgsm home for the run with Bob's key imported (gpgsm 2.2 cannot
 * import EC keys). FALSE (test skipped) without gpgsm. */
static gboolean
gpgsm_setup(void)
{
	g_autofree char *home = g_build_filename(shared, "gh", NULL);
	const char *imp[] = {"timeout", "60", "gpgsm", "--batch",
	    "--pinentry-mode", "loopback", "--passphrase-fd", "0",
	    "--disable-dirmngr", "--import", "bob.p12", NULL};
	g_autofree char *out = NULL;

	if (gpgsm_state == 0) {
		gpgsm_state = -1;
		if (skip_without("gpgsm") || skip_without("gpgconf"))
			return FALSE;
		g_assert_cmpint(g_mkdir(home, 0700), ==, 0);
		write_file(home, "gpg-agent.conf",
		    "allow-loopback-pinentry\n", 24);
		write_file(shared, "pw-line", PASSWORD "\n",
		    strlen(PASSWORD) + 1);
		write_p12(&bob);
		if (!test_run_in(shared, home, "pw-line", imp, &out) ||
		    !strstr(out, "secret keys imported: 1"))
			g_error("gpgsm --import bob.p12: %s", out);
		gpgsm_state = 1;
	}
	if (gpgsm_state < 0)
		g_test_skip("gpgsm is not installed");
	return gpgsm_state > 0;
}

/* Encrypt ENTITY for the N recipients R with ALG; asserts success. */
static KmsEncrypted *
encrypt(GBytes *entity, const KmsEncryptRecipient *r, gsize n,
    const char *alg)
{
	g_autoptr(GError) err = NULL;
	KmsEncrypted *e = kms_smime_encrypt(entity, r, n, alg, NULL, 0, &err);

	g_assert_no_error(err);
	g_assert_nonnull(e);
	return e;
}

/* Write E as DIR/msg.eml (routing headers + E's headers + body),
 * DIR/body.b64 (the body) and DIR/msg.der (the decoded body). Asserts
 * the body's shape: lines of at most 76 base64 characters, CRLF. */
static void
write_message(const char *dir, const KmsEncrypted *e)
{
	g_autofree char *headers = kms_encrypted_headers_text(e);
	gsize blen, dlen;
	const char *body = g_bytes_get_data(e->body, &blen);
	g_autofree char *text = g_strndup(body, blen);
	g_autofree guchar *der = NULL;
	GString *msg = g_string_new(ROUTING);
	const char *p = body, *end = body + blen;

	while (p < end) {
		const char *crlf = g_strstr_len(p, end - p, "\r\n");

		if (crlf == NULL || crlf - p > 76 || crlf == p ||
		    memchr(p, '\n', (size_t) (crlf - p)))
			g_error("base64 body: got a line of %d characters or "
			    "without CRLF, want 1..76 and CRLF",
			    crlf ? (int) (crlf - p) : -1);
		if (crlf - p < 76 && crlf + 2 != end)
			g_error("base64 body: short line before the last");
		p = crlf + 2;
	}
	g_string_append(msg, headers);
	g_string_append(msg, "\r\n");
	g_string_append_len(msg, body, (gssize) blen);
	write_file(dir, "msg.eml", msg->str, msg->len);
	g_string_free(msg, TRUE);
	write_file(dir, "body.b64", body, blen);
	der = g_base64_decode(text, &dlen);
	g_assert_cmpuint(dlen, ==, e->der_size);
	write_file(dir, "msg.der", der, dlen);
}

/* Does DIR/NAME hold exactly ENTITY? */
static gboolean
same_as(const char *dir, const char *name, GBytes *entity)
{
	g_autoptr(GBytes) got = read_file(dir, name);

	return got != NULL && g_bytes_equal(got, entity);
}

/* Decrypt DIR/msg.eml with openssl as P into DIR/dec.ossl. */
static gboolean
openssl_decrypt(const char *dir, const Party *p, char **out)
{
	g_autofree char *cert = g_strdup_printf("%s/%s.pem", shared,
	    p->name);
	g_autofree char *key = g_strdup_printf("%s/%s.key", shared, p->name);
	const char *argv[] = {"openssl", "cms", "-decrypt", "-in", "msg.eml",
	    "-recip", cert, "-inkey", key, "-out", "dec.ossl", NULL};

	return test_run_in(dir, NULL, NULL, argv, out);
}

/* `openssl cms -cmsout -print` of DIR/msg.der. */
static char *
cms_print(const char *dir)
{
	const char *argv[] = {"openssl", "cms", "-cmsout", "-print",
	    "-inform", "DER", "-in", "msg.der", NULL};
	char *out = NULL;

	if (!test_run_in(dir, NULL, NULL, argv, &out))
		g_error("openssl cms -print: %s", out);
	return out;
}

/* OpenSSL's name of a policy algorithm, as -print shows it. */
static const char *
openssl_alg(const char *alg)
{
	static const char *const map[][2] = {
		{"aes256-gcm", "aes-256-gcm"}, {"aes128-gcm", "aes-128-gcm"},
		{"aes256-cbc", "aes-256-cbc"}, {"aes192-cbc", "aes-192-cbc"},
		{"aes128-cbc", "aes-128-cbc"}, {"des-ede3-cbc", "des-ede3-cbc"},
	};

	for (gsize i = 0; i < G_N_ELEMENTS(map); i++)
		if (strcmp(map[i][0], alg) == 0)
			return map[i][1];
	g_assert_not_reached();
}

/*
 * Assert the structure of DER: content type (AuthEnvelopedData for
 * GCM), content-encryption algorithm, and for each recipient i the key
 * transport of R[i] (RSAES-OAEP with its hash, PKCS#1 v1.5, or KARI).
 */
static void
assert_structure(const char *dir, const KmsEncrypted *e, const char *alg,
    const KmsEncryptRecipient *r, gsize n)
{
	g_autofree char *print = cms_print(dir);
	g_autofree char *want_alg = g_strdup_printf("contentEncryptionAlgorithm"
	    ": \n        algorithm: %s (", openssl_alg(alg));
	gboolean gcm = g_str_has_suffix(alg, "-gcm");
	const KmsEncryptHeader *ct = g_ptr_array_index(e->headers, 0);
	g_autoptr(GBytes) der = read_file(dir, "msg.der");
	const unsigned char *p = g_bytes_get_data(der, NULL);
	g_autoptr(CMS_ContentInfo) cms = d2i_CMS_ContentInfo(NULL, &p,
	    (long) g_bytes_get_size(der));
	STACK_OF(CMS_RecipientInfo) *ris;

	g_assert_nonnull(cms);
	if (OBJ_obj2nid(CMS_get0_type(cms)) != (gcm ?
	    NID_id_smime_ct_authEnvelopedData : NID_pkcs7_enveloped))
		g_error("%s: got content type %s, want %s", alg,
		    OBJ_nid2sn(OBJ_obj2nid(CMS_get0_type(cms))), gcm ?
		    "authEnvelopedData" : "envelopedData");
	g_assert_cmpint(e->authenveloped, ==, gcm);
	g_assert_cmpstr(ct->name, ==, "Content-Type");
	g_assert_cmpstr(ct->value, ==, gcm ? "application/pkcs7-mime; "
	    "smime-type=authEnveloped-data; name=smime.p7m" :
	    "application/pkcs7-mime; smime-type=enveloped-data; "
	    "name=smime.p7m");
	if (strstr(print, want_alg) == NULL)
		g_error("openssl cms -print: want \"%s\" in \"%.2000s\"",
		    want_alg, print);
	ris = CMS_get0_RecipientInfos(cms);
	g_assert_cmpint(sk_CMS_RecipientInfo_num(ris), ==, (int) n);
	for (gsize i = 0; i < n; i++) {
		CMS_RecipientInfo *ri = sk_CMS_RecipientInfo_value(ris,
		    (int) i);
		X509_ALGOR *palg = NULL;
		const ASN1_OBJECT *obj;
		const void *pval;
		int ptype, nid;

		if (r[i].transport == KMS_NEGOTIATE_ECDH) {
			g_assert_cmpint(CMS_RecipientInfo_type(ri), ==,
			    CMS_RECIPINFO_AGREE);
			continue;
		}
		g_assert_cmpint(CMS_RecipientInfo_type(ri), ==,
		    CMS_RECIPINFO_TRANS);
		g_assert_cmpint(CMS_RecipientInfo_ktri_get0_algs(ri, NULL,
		    NULL, &palg), ==, 1);
		X509_ALGOR_get0(&obj, &ptype, &pval, palg);
		nid = OBJ_obj2nid(obj);
		if (r[i].transport == KMS_NEGOTIATE_RSA_PKCS1) {
			g_assert_cmpstr(OBJ_nid2sn(nid), ==,
			    OBJ_nid2sn(NID_rsaEncryption));
		} else {
			const char *want = r[i].oaep_hash ? r[i].oaep_hash :
			    "sha1";
			const char *got = "sha1";
			const unsigned char *q;
			RSA_OAEP_PARAMS *op = NULL;

			g_assert_cmpstr(OBJ_nid2sn(nid), ==,
			    OBJ_nid2sn(NID_rsaesOaep));
			if (ptype == V_ASN1_SEQUENCE) {
				q = ASN1_STRING_get0_data(pval);
				op = d2i_RSA_OAEP_PARAMS(NULL, &q,
				    ASN1_STRING_length(pval));
				g_assert_nonnull(op);
			}
			if (op && op->hashFunc) {
				const ASN1_OBJECT *h;

				X509_ALGOR_get0(&h, NULL, NULL, op->hashFunc);
				got = OBJ_nid2sn(OBJ_obj2nid(h));
			}
			if (g_ascii_strcasecmp(got, want) != 0)
				g_error("recipient %zu: got OAEP hash %s, want "
				    "%s", i + 1, got, want);
			RSA_OAEP_PARAMS_free(op);
		}
	}
}

/* The peers and what a case asks of them. */
typedef enum { PEER_OPENSSL, PEER_NSS, PEER_GPGSM } Peer;

typedef struct {
	Peer peer;
	const char *alg;
	KmsNegotiateTransport transport;
	const char *oaep_hash;
} Case;

/* Can PEER decrypt ALG with TRANSPORT? (the measured facts) */
static gboolean
peer_can(const Case *c)
{
	if (c->peer == PEER_OPENSSL)
		return TRUE;
	/* NSS 3.87 and gpgsm 2.2: no AuthEnvelopedData, no RSAES-OAEP;
	 * NSS 3.87 no ECDH either (gpgsm cannot hold an EC key at all). */
	return !g_str_has_suffix(c->alg, "-gcm") &&
	    c->transport == KMS_NEGOTIATE_RSA_PKCS1;
}

static const char *const peer_names[] = {"openssl", "nss", "gpgsm"};

/* Encrypt the test message for Bob or Carol as the case says and have
 * the case's peer decrypt it; assert success or the documented failure. */
static void
test_peer(gconstpointer data)
{
	const Case *c = data;
	g_autoptr(GError) err = NULL;
	g_autoptr(TestDir) dir = test_dir_new("enc");
	g_autoptr(GBytes) entity = kms_smime_entity_from_message(message,
	    strlen(message), 0, &err);
	const Party *p = c->transport == KMS_NEGOTIATE_ECDH ? &carol : &bob;
	KmsEncryptRecipient r = {p->cert, c->transport, c->oaep_hash};
	g_autoptr(KmsEncrypted) e = NULL;
	g_autofree char *out = NULL, *home = NULL;
	gboolean want = peer_can(c), got = FALSE;
	const char *outfile = NULL;

	g_assert_no_error(err);
	if (c->peer == PEER_NSS && !nss_setup())
		return;
	if (c->peer == PEER_GPGSM && !gpgsm_setup())
		return;
	e = encrypt(entity, &r, 1, c->alg);
	write_message(dir, e);
	assert_structure(dir, e, c->alg, &r, 1);
	switch (c->peer) {
	case PEER_OPENSSL:
		got = openssl_decrypt(dir, p, &out);
		outfile = "dec.ossl";
		break;
	case PEER_NSS: {
		g_autofree char *db = g_strdup_printf("sql:%s/db", shared);
		const char *argv[] = {"cmsutil", "-D", "-d", db, "-i",
		    "msg.der", "-o", "dec.nss", NULL};

		got = test_run_in(dir, NULL, NULL, argv, &out);
		outfile = "dec.nss";
		break;
	}
	case PEER_GPGSM: {
		const char *argv[] = {"timeout", "60", "gpgsm", "--batch",
		    "--pinentry-mode", "loopback", "--passphrase-fd", "0",
		    "--disable-dirmngr", "--assume-base64", "--decrypt",
		    "--output", "dec.gpgsm", "body.b64", NULL};

		home = g_build_filename(shared, "gh", NULL);
		write_file(dir, "pw-line", PASSWORD "\n",
		    strlen(PASSWORD) + 1);
		got = test_run_in(dir, home, "pw-line", argv, &out);
		outfile = "dec.gpgsm";
		break;
	}
	}
	g_test_message("%s decrypting %s / %s%s%s: %s", peer_names[c->peer],
	    c->alg, c->transport == KMS_NEGOTIATE_ECDH ? "ecdh" :
	    c->transport == KMS_NEGOTIATE_RSA_PKCS1 ? "rsa-pkcs1" :
	    "rsaes-oaep", c->oaep_hash ? "-" : "", c->oaep_hash ?
	    c->oaep_hash : "", got ? "ok" : g_strstrip(out));
	if (want) {
		if (!got)
			g_error("%s: got failure \"%s\", want success",
			    peer_names[c->peer], out);
		if (!same_as(dir, outfile, entity))
			g_error("%s: decrypted entity differs from the input",
			    peer_names[c->peer]);
		return;
	}
	if (got)
		g_test_fail_printf("%s now decrypts %s with this key transport "
		    "(want the documented failure): the limitation in "
		    "DESIGN.md is gone, revisit the unknown_capabilities "
		    "default", peer_names[c->peer], c->alg);
	/* It failed for the documented reason, not for a setup problem:
	 * gpgsm could not read the GCM parameters (the IV) or found its key
	 * for the recipient but could not unwrap OAEP; NSS named an error. */
	else if (c->peer == PEER_GPGSM && !strstr(out, "error getting IV") &&
	    !strstr(out, "encrypted to rsa"))
		g_error("gpgsm: failed for another reason: %s", out);
	else if (c->peer == PEER_NSS && !strstr(out, "SEC_ERROR_"))
		g_error("cmsutil: failed without an NSS error: %s", out);
}

/* One message to Bob (OAEP-SHA256), Dave (PKCS#1 v1.5, RSA-3072) and
 * Carol (ECDH): each decrypts it with openssl; Eve, not a recipient,
 * cannot. */
static void
test_multi_recipient(gconstpointer data)
{
	const char *alg = data;
	g_autoptr(GError) err = NULL;
	g_autoptr(TestDir) dir = test_dir_new("enc");
	g_autoptr(GBytes) entity = kms_smime_entity_from_message(message,
	    strlen(message), 0, &err);
	KmsEncryptRecipient r[] = {
		{bob.cert, KMS_NEGOTIATE_RSA_OAEP, "sha256"},
		{dave.cert, KMS_NEGOTIATE_RSA_PKCS1, NULL},
		{carol.cert, KMS_NEGOTIATE_ECDH, NULL},
	};
	const Party *who[] = {&bob, &dave, &carol};
	g_autoptr(KmsEncrypted) e = encrypt(entity, r, G_N_ELEMENTS(r), alg);
	g_autofree char *out = NULL;

	g_assert_no_error(err);
	write_message(dir, e);
	assert_structure(dir, e, alg, r, G_N_ELEMENTS(r));
	for (gsize i = 0; i < G_N_ELEMENTS(who); i++) {
		g_autofree char *o = NULL;
		g_autofree char *dec = g_build_filename(dir, "dec.ossl",
		    NULL);

		g_unlink(dec);
		if (!openssl_decrypt(dir, who[i], &o))
			g_error("openssl as %s: got \"%s\", want success",
			    who[i]->name, o);
		if (!same_as(dir, "dec.ossl", entity))
			g_error("openssl as %s: decrypted entity differs",
			    who[i]->name);
	}
	if (openssl_decrypt(dir, &eve, &out))
		g_error("openssl as eve (not a recipient): got success, want "
		    "failure");
}

/* A detached multipart/signed message (openssl cms -sign) wrapped whole:
 * after decryption the signature still verifies, and fails once one
 * byte of the signed text changes. */
static void
test_signed_wrapped_whole(void)
{
	g_autoptr(GError) err = NULL;
	g_autoptr(TestDir) dir = test_dir_new("enc");
	g_autoptr(EVP_PKEY) key = kms_key_generate(KMS_KEY_P256, &err);
	KmsIssueParams ip = {KMS_PROFILE_SIGNING, "alice@example.org",
	    "Alice", 365, NULL};
	g_autoptr(X509) cert = NULL;
	const char content[] = "Content-Type: text/plain; charset=us-ascii\r\n"
	    "\r\nSigned text.\r\n";
	const char *sign[] = {"openssl", "cms", "-sign", "-in", "content",
	    "-signer", "alice.pem", "-inkey", "alice.key", "-out",
	    "signed.eml", NULL};
	const char *verify[] = {"openssl", "cms", "-verify", "-in",
	    "dec.ossl", "-CAfile", "ca.pem", "-out", "verified", NULL};
	g_autofree char *out = NULL, *msg = NULL;
	g_autoptr(GBytes) signed_eml = NULL, entity = NULL, dec = NULL;
	g_autoptr(GBytes) verified = NULL;
	KmsEncryptRecipient r = {bob.cert, KMS_NEGOTIATE_RSA_PKCS1, NULL};
	g_autoptr(KmsEncrypted) e = NULL;
	char *text, *hit;
	gsize len;

	g_assert_no_error(err);
	cert = kms_ca_issue(ca_cert, ca_key, key, &ip, &err);
	g_assert_no_error(err);
	write_pem(dir, "alice", key, cert);
	write_pem(dir, "ca", NULL, ca_cert);
	write_file(dir, "content", content, strlen(content));
	if (!test_run_in(dir, NULL, NULL, sign, &out))
		g_error("openssl cms -sign: %s", out);
	signed_eml = read_file(dir, "signed.eml");
	msg = g_strdup_printf("From: alice@example.org\nTo: bob@example.org\n"
	    "Subject: signed\n%.*s", (int) g_bytes_get_size(signed_eml),
	    (const char *) g_bytes_get_data(signed_eml, NULL));
	entity = kms_smime_entity_from_message(msg, strlen(msg), 0, &err);
	g_assert_no_error(err);
	if (!g_str_has_prefix(g_bytes_get_data(entity, NULL),
	    "Content-Type: multipart/signed;"))
		g_error("entity of a signed message: want it to start with its "
		    "multipart/signed Content-Type");
	e = encrypt(entity, &r, 1, "aes256-cbc");
	write_message(dir, e);
	g_clear_pointer(&out, g_free);
	if (!openssl_decrypt(dir, &bob, &out))
		g_error("openssl cms -decrypt: %s", out);
	g_assert_true(same_as(dir, "dec.ossl", entity));
	g_clear_pointer(&out, g_free);
	if (!test_run_in(dir, NULL, NULL, verify, &out) ||
	    !strstr(out, "Verification successful"))
		g_error("openssl cms -verify of the decrypted message: got "
		    "\"%s\", want success", out);
	verified = read_file(dir, "verified");
	g_assert_nonnull(verified);
	if (g_strstr_len(g_bytes_get_data(verified, NULL),
	    (gssize) g_bytes_get_size(verified), "Signed text.") == NULL)
		g_error("openssl cms -verify: signed text not in its output");
	/* The check can fail: change one byte of the signed text. */
	dec = read_file(dir, "dec.ossl");
	len = g_bytes_get_size(dec);
	text = g_malloc(len + 1);
	memcpy(text, g_bytes_get_data(dec, NULL), len);
	text[len] = '\0';
	hit = strstr(text, "Signed text.");
	g_assert_nonnull(hit);
	hit[0] = 's';
	write_file(dir, "dec.ossl", text, len);
	g_free(text);
	g_clear_pointer(&out, g_free);
	if (test_run_in(dir, NULL, NULL, verify, &out))
		g_error("openssl cms -verify of a changed message: got "
		    "success, want failure");
}

#define BIG	(10 * 1024 * 1024)

/* A 10 MB entity encrypts (timed), decrypts with openssl byte for byte,
 * and is refused one byte under the limit. */
static void
test_large(void)
{
	g_autoptr(GError) err = NULL;
	g_autoptr(TestDir) dir = test_dir_new("enc");
	const char *names[] = {"Content-Type"};
	const char *values[] = {"text/plain; charset=us-ascii"};
	GString *body = g_string_sized_new(BIG);
	g_autoptr(GBytes) entity = NULL;
	g_autoptr(KmsEncrypted) e = NULL;
	KmsEncryptRecipient r = {bob.cert, KMS_NEGOTIATE_RSA_PKCS1, NULL};
	g_autofree char *out = NULL;
	gint64 t0, t1, t2;
	gsize size;

	while (body->len < BIG - 80)
		g_string_append_printf(body, "line %08u of a large message, "
		    "LF only, canonicalised to CRLF\n", (unsigned) body->len);
	t0 = g_get_monotonic_time();
	entity = kms_smime_entity_from_headers(names, values, 1, body->str,
	    body->len, 0, &err);
	g_assert_no_error(err);
	size = g_bytes_get_size(entity);
	t1 = g_get_monotonic_time();
	e = kms_smime_encrypt(entity, &r, 1, "aes256-cbc", NULL, size, &err);
	g_assert_no_error(err);
	t2 = g_get_monotonic_time();
	g_test_message("10 MB: entity of %zu bytes built in %.1f ms, encrypted "
	    "(aes256-cbc, base64 %zu bytes) in %.1f ms", size,
	    (t1 - t0) / 1000.0, g_bytes_get_size(e->body),
	    (t2 - t1) / 1000.0);
	write_message(dir, e);
	if (!openssl_decrypt(dir, &bob, &out))
		g_error("openssl cms -decrypt (10 MB): %s", out);
	g_assert_true(same_as(dir, "dec.ossl", entity));
	g_clear_pointer(&e, kms_encrypted_free);
	e = kms_smime_encrypt(entity, &r, 1, "aes256-cbc", NULL, size - 1,
	    &err);
	g_assert_null(e);
	g_assert_error(err, KMS_ENCRYPT_ERROR, KMS_ENCRYPT_ERROR_TOO_LARGE);
	g_clear_error(&err);
	g_assert_null(kms_smime_entity_from_headers(names, values, 1,
	    body->str, body->len, size - 1, &err));
	g_assert_error(err, KMS_ENCRYPT_ERROR, KMS_ENCRYPT_ERROR_TOO_LARGE);
	g_string_free(body, TRUE);
}

/* A self-signed Ed25519 certificate: a key neither RSA nor EC. */
static X509 *
ed25519_cert(void)
{
	g_autoptr(EVP_PKEY) key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	X509 *cert = X509_new();
	X509_NAME *name = X509_get_subject_name(cert);

	g_assert_nonnull(key);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
	    (const unsigned char *) "Ed", -1, -1, 0);
	X509_set_issuer_name(cert, name);
	X509_gmtime_adj(X509_getm_notBefore(cert), 0);
	X509_gmtime_adj(X509_getm_notAfter(cert), 86400);
	X509_set_pubkey(cert, key);
	g_assert_cmpint(X509_sign(cert, key, NULL), >, 0);
	return cert;
}

/* Every refusal: clear error, right code, names the recipient. */
static void
test_refusals(void)
{
	g_autoptr(X509) ed = ed25519_cert();
	GBytes *entity = g_bytes_new_static(message_entity,
	    strlen(message_entity));
	KmsEncryptRecipient pkcs1 = {bob.cert, KMS_NEGOTIATE_RSA_PKCS1, NULL};
	KmsEncryptRecipient two[] = {pkcs1,
	    {carol.cert, KMS_NEGOTIATE_RSA_OAEP, "sha256"}};
	KmsEncryptRecipient ec_pkcs1 = {carol.cert, KMS_NEGOTIATE_RSA_PKCS1,
	    NULL};
	KmsEncryptRecipient rsa_ecdh = {bob.cert, KMS_NEGOTIATE_ECDH, NULL};
	KmsEncryptRecipient md5 = {bob.cert, KMS_NEGOTIATE_RSA_OAEP, "md5"};
	KmsEncryptRecipient ed_r = {ed, KMS_NEGOTIATE_RSA_PKCS1, NULL};
	KmsEncryptRecipient no_cert = {NULL, KMS_NEGOTIATE_RSA_PKCS1, NULL};
	KmsEncryptRecipient bad_tr = {bob.cert, (KmsNegotiateTransport) 9,
	    NULL};
	const struct {
		const char *what;
		GBytes *entity;
		const KmsEncryptRecipient *r;
		gsize n;
		const char *alg;
		const char *desc;
		gsize max;
		int code;
		const char *want;
	} cases[] = {
		{"no recipient", entity, &pkcs1, 0, "aes256-cbc", NULL, 0,
		    KMS_ENCRYPT_ERROR_INVALID, "no recipient"},
		{"NULL recipients", entity, NULL, 1, "aes256-cbc", NULL, 0,
		    KMS_ENCRYPT_ERROR_INVALID, "no recipient"},
		{"no entity", NULL, &pkcs1, 1, "aes256-cbc", NULL, 0,
		    KMS_ENCRYPT_ERROR_INVALID, "no MIME entity"},
		{"aes192-gcm", entity, &pkcs1, 1, "aes192-gcm", NULL, 0,
		    KMS_ENCRYPT_ERROR_INVALID, "unknown content-encryption"},
		{"rc2", entity, &pkcs1, 1, "rc2-cbc-40", NULL, 0,
		    KMS_ENCRYPT_ERROR_INVALID, "unknown content-encryption"},
		{"no algorithm", entity, &pkcs1, 1, NULL, NULL, 0,
		    KMS_ENCRYPT_ERROR_INVALID, "unknown content-encryption"},
		{"Ed25519 key", entity, &ed_r, 1, "aes256-cbc", NULL, 0,
		    KMS_ENCRYPT_ERROR_INVALID,
		    "recipient 1 (CN=Ed): ED25519 key, want RSA or EC"},
		{"OAEP for EC", entity, two, 2, "aes256-cbc", NULL, 0,
		    KMS_ENCRYPT_ERROR_INVALID, "recipient 2 "
		    "(CN=carol@example.org): key transport rsaes-oaep does "
		    "not fit an EC key"},
		{"PKCS#1 for EC", entity, &ec_pkcs1, 1, "aes256-cbc", NULL, 0,
		    KMS_ENCRYPT_ERROR_INVALID, "key transport rsa-pkcs1 does "
		    "not fit an EC key"},
		{"ECDH for RSA", entity, &rsa_ecdh, 1, "aes256-cbc", NULL, 0,
		    KMS_ENCRYPT_ERROR_INVALID, "(CN=bob@example.org): key "
		    "transport ecdh does not fit an RSA key"},
		{"OAEP with MD5", entity, &md5, 1, "aes256-cbc", NULL, 0,
		    KMS_ENCRYPT_ERROR_INVALID, "unknown OAEP hash"},
		{"no certificate", entity, &no_cert, 1, "aes256-cbc", NULL, 0,
		    KMS_ENCRYPT_ERROR_INVALID, "recipient 1: no certificate"},
		{"bad transport", entity, &bad_tr, 1, "aes256-cbc", NULL, 0,
		    KMS_ENCRYPT_ERROR_INVALID, "unknown key transport"},
		{"description with CRLF", entity, &pkcs1, 1, "aes256-cbc",
		    "a\r\nBcc: x", 0, KMS_ENCRYPT_ERROR_INVALID,
		    "Content-Description"},
		{"over the limit", entity, &pkcs1, 1, "aes256-cbc", NULL,
		    strlen(message_entity) - 1, KMS_ENCRYPT_ERROR_TOO_LARGE,
		    "exceeds the limit"},
	};

	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_autoptr(GError) err = NULL;
		g_autoptr(KmsEncrypted) e = kms_smime_encrypt(cases[i].entity,
		    cases[i].r, cases[i].n, cases[i].alg, cases[i].desc,
		    cases[i].max, &err);

		if (e != NULL || !g_error_matches(err, KMS_ENCRYPT_ERROR,
		    cases[i].code) || !strstr(err->message, cases[i].want))
			g_error("%s: got %s, want error %d with \"%s\"",
			    cases[i].what, err ? err->message : "success",
			    cases[i].code, cases[i].want);
		g_assert_cmpint(ERR_peek_error(), ==, 0);
	}
	/* Names in any case, a description, and the limit itself pass. */
	{
		g_autoptr(GError) err = NULL;
		g_autoptr(KmsEncrypted) e = kms_smime_encrypt(entity, &pkcs1,
		    1, "AES128-GCM", "S/MIME encrypted message", strlen(
		    message_entity), &err);
		g_autofree char *text = NULL;

		g_assert_no_error(err);
		g_assert_true(e->authenveloped);
		text = kms_encrypted_headers_text(e);
		g_assert_cmpstr(text, ==, "Content-Type: application/pkcs7-"
		    "mime; smime-type=authEnveloped-data; name=smime.p7m\r\n"
		    "Content-Transfer-Encoding: base64\r\n"
		    "Content-Disposition: attachment; filename=smime.p7m\r\n"
		    "Content-Description: S/MIME encrypted message\r\n");
	}
	g_bytes_unref(entity);
}

/* Entity from MSG (max 0) must be WANT. */
static void
assert_entity(const char *what, const char *msg, const char *want)
{
	g_autoptr(GError) err = NULL;
	g_autoptr(GBytes) got = kms_smime_entity_from_message(msg,
	    strlen(msg), 0, &err);
	g_autofree char *text = NULL;

	g_assert_no_error(err);
	text = g_strndup(g_bytes_get_data(got, NULL), g_bytes_get_size(got));
	if (g_bytes_get_size(got) != strlen(want) || strcmp(text, want) != 0)
		g_error("%s: got \"%s\", want \"%s\"", what,
		    g_strescape(text, NULL), g_strescape(want, NULL));
}

#define DEF_CT	"Content-Type: text/plain; charset=us-ascii\r\n"

/* The inner entity: Content-* fields (folding kept), the default type,
 * canonical CRLF, nothing else. */
static void
test_entity(void)
{
	g_autoptr(GError) err = NULL;
	const char *names[] = {"Received", "content-type",
	    "Content-Disposition", "MIME-Version", "Content-ID"};
	const char *values[] = {"from x\n\tby y", "text/plain",
	    "  inline", "1.0", ""};
	const char *bad[] = {"Bad Name"};
	g_autoptr(GBytes) e = NULL;
	const char *want = "content-type: text/plain\r\n"
	    "Content-Disposition:  inline\r\nContent-ID: \r\n\r\na\r\nb";

	assert_entity("the test message", message, message_entity);
	assert_entity("no Content-Type", "From: a\nSubject: x\n"
	    "Content-Transfer-Encoding: 7bit\n\nhi\n",
	    DEF_CT "Content-Transfer-Encoding: 7bit\r\n\r\nhi\r\n");
	assert_entity("canonical already, lone CR kept",
	    "To: b\r\nContent-Type: text/plain\r\n\r\na\rb\r\n\r\n",
	    "Content-Type: text/plain\r\n\r\na\rb\r\n\r\n");
	assert_entity("no empty line", "Subject: x\nContent-Type: text/html\n",
	    "Content-Type: text/html\r\n\r\n");
	assert_entity("a line that is no field starts the body",
	    "Subject: x\nnot a header\nmore\n",
	    DEF_CT "\r\nnot a header\r\nmore\r\n");
	assert_entity("mbox From line", "From alice@x Mon Jan  1 00:00:00 2026"
	    "\nContent-Type: text/html\n\n<p>\n",
	    "Content-Type: text/html\r\n\r\n<p>\r\n");
	assert_entity("leading empty body lines", "Content-Type: text/plain\n"
	    "\n\n\nx", "Content-Type: text/plain\r\n\r\n\r\n\r\nx");
	assert_entity("folded multipart type, no space after colon",
	    "Content-Type:multipart/mixed;\n boundary=\"b\"\nSubject: s\n\n"
	    "--b\n\n--b--\n", "Content-Type: multipart/mixed;\r\n boundary="
	    "\"b\"\r\n\r\n--b\r\n\r\n--b--\r\n");
	assert_entity("empty message", "", DEF_CT "\r\n");
	assert_entity("obsolete space before the colon",
	    "Subject : x\nContent-Type\t: text/plain\nContent-ID: <a@b>\n\n"
	    "x", "Content-Type: text/plain\r\nContent-ID: <a@b>\r\n\r\nx");

	e = kms_smime_entity_from_headers(names, values, G_N_ELEMENTS(names),
	    "a\nb", 3, 0, &err);
	g_assert_no_error(err);
	g_assert_cmpmem(g_bytes_get_data(e, NULL), g_bytes_get_size(e), want,
	    strlen(want));
	g_clear_pointer(&e, g_bytes_unref);
	e = kms_smime_entity_from_headers(names, values, G_N_ELEMENTS(names),
	    "a\nb", 3, strlen(want), &err);
	g_assert_no_error(err);
	g_clear_pointer(&e, g_bytes_unref);
	e = kms_smime_entity_from_headers(names, values, G_N_ELEMENTS(names),
	    "a\nb", 3, strlen(want) - 1, &err);
	g_assert_null(e);
	g_assert_error(err, KMS_ENCRYPT_ERROR, KMS_ENCRYPT_ERROR_TOO_LARGE);
	g_clear_error(&err);
	e = kms_smime_entity_from_headers(bad, values, 1, "", 0, 0, &err);
	g_assert_null(e);
	g_assert_error(err, KMS_ENCRYPT_ERROR, KMS_ENCRYPT_ERROR_INVALID);

	g_assert_true(kms_smime_is_content_header("Content-Type"));
	g_assert_true(kms_smime_is_content_header("CONTENT-transfer-encoding"));
	g_assert_false(kms_smime_is_content_header("Content-"));
	g_assert_false(kms_smime_is_content_header("MIME-Version"));
	g_assert_false(kms_smime_is_content_header("X-Content-Type"));
	g_assert_false(kms_smime_is_content_header(NULL));
}

/* Already encrypted or not: never encrypt twice, wrap signed mail. */
static void
test_is_encrypted(void)
{
	const struct {
		const char *ct;
		gboolean want;
	} cases[] = {
		{"application/pkcs7-mime; smime-type=enveloped-data; "
		    "name=smime.p7m", TRUE},
		{"application/x-pkcs7-mime; smime-type=enveloped-data", TRUE},
		{"Application/PKCS7-MIME; SMIME-Type=\"authEnveloped-data\"",
		    TRUE},
		{"application/pkcs7-mime;\r\n\tsmime-type=enveloped-data "
		    "(encrypted)", TRUE},
		{"application/pkcs7-mime (S/MIME) ; smime-type = "
		    "enveloped-data", TRUE},
		{"application/pkcs7-mime; name=\"smime.p7m\"", TRUE},
		{"application/x-pkcs7-mime; name=SMIME.P7M", TRUE},
		{"application/pkcs7-mime; smime-type=signed-data; "
		    "name=smime.p7m", FALSE},
		{"application/pkcs7-mime; name=smime.p7m; "
		    "smime-type=signed-data", FALSE},
		{"application/pkcs7-mime; smime-type=certs-only; "
		    "name=smime.p7c", FALSE},
		{"application/pkcs7-mime; smime-type=compressed-data; "
		    "name=smime.p7z", FALSE},
		{"application/pkcs7-mime; smime-type=enveloped-datax", FALSE},
		{"application/pkcs7-mime; x-smime-type=enveloped-data", FALSE},
		{"application/pkcs7-mime", FALSE},
		{"application/pkcs7-mime; name=smime.p7s", FALSE},
		{"application/pkcs7-mime; name=p7m", FALSE},
		{"multipart/signed; protocol=\"application/pkcs7-signature\"; "
		    "micalg=sha-256; boundary=\"b\"", FALSE},
		{"application/pkcs7-signature; name=smime.p7s", FALSE},
		{"text/plain; name=smime.p7m", FALSE},
		{"text/plain; smime-type=enveloped-data", FALSE},
		{"(application/pkcs7-mime; smime-type=enveloped-data)", FALSE},
		{"application/pkcs7-mime-x; smime-type=enveloped-data", FALSE},
		{"", FALSE},
		{NULL, FALSE},
	};

	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++)
		if (kms_smime_is_encrypted(cases[i].ct) != cases[i].want)
			g_error("kms_smime_is_encrypted(\"%s\"): got %s, want "
			    "%s", cases[i].ct ? cases[i].ct : "(null)",
			    cases[i].want ? "FALSE" : "TRUE",
			    cases[i].want ? "TRUE" : "FALSE");
}

static const char *const algs[] = {"aes256-gcm", "aes128-gcm",
    "aes256-cbc", "aes192-cbc", "aes128-cbc", "des-ede3-cbc"};

/* Transports of the matrix: PKCS#1, OAEP (SHA-1 default), OAEP-SHA256,
 * ECDH. */
static const struct {
	const char *name;
	KmsNegotiateTransport t;
	const char *hash;
} transports[] = {
	{"rsa-pkcs1", KMS_NEGOTIATE_RSA_PKCS1, NULL},
	{"rsaes-oaep-sha1", KMS_NEGOTIATE_RSA_OAEP, NULL},
	{"rsaes-oaep-sha256", KMS_NEGOTIATE_RSA_OAEP, "sha256"},
	{"ecdh", KMS_NEGOTIATE_ECDH, NULL},
};

int
main(int argc, char **argv)
{
	g_autoptr(GError) err = NULL;
	g_autoptr(GPtrArray) owned = g_ptr_array_new_with_free_func(g_free);
	Party *parties[] = {&bob, &carol, &dave, &eve};
	int rc;

	g_test_init(&argc, &argv, NULL);
	shared = test_dir_new("enc-peers");
	ca_key = kms_key_generate(KMS_KEY_P256, &err);
	g_assert_no_error(err);
	ca_cert = kms_ca_make_root(ca_key, "CN=Test CA, O=Example", 3650,
	    &err);
	g_assert_no_error(err);
	for (gsize i = 0; i < G_N_ELEMENTS(parties); i++)
		party_init(parties[i]);
	g_test_add_func("/encrypt/entity/content-headers-and-crlf",
	    test_entity);
	g_test_add_func("/encrypt/is-encrypted/cases", test_is_encrypted);
	g_test_add_func("/encrypt/refusals", test_refusals);
	for (int peer = PEER_OPENSSL; peer <= PEER_GPGSM; peer++)
		for (gsize a = 0; a < G_N_ELEMENTS(algs); a++)
			for (gsize t = 0; t < G_N_ELEMENTS(transports); t++) {
				Case *c;
				char *path;

				/* gpgsm 2.2 cannot import EC keys at all;
				 * NSS ECDH once is enough to show it. */
				if (transports[t].t == KMS_NEGOTIATE_ECDH &&
				    (peer == PEER_GPGSM || (peer == PEER_NSS &&
				    strcmp(algs[a], "aes256-cbc") != 0)))
					continue;
				c = g_new0(Case, 1);
				*c = (Case) {peer, algs[a], transports[t].t,
				    transports[t].hash};
				path = g_strdup_printf("/encrypt/%s/%s/%s",
				    peer_names[peer], algs[a],
				    transports[t].name);
				g_ptr_array_add(owned, c);
				g_ptr_array_add(owned, path);
				g_test_add_data_func(path, c, test_peer);
			}
	g_test_add_data_func("/encrypt/multi-recipient/aes256-gcm",
	    "aes256-gcm", test_multi_recipient);
	g_test_add_data_func("/encrypt/multi-recipient/aes128-cbc",
	    "aes128-cbc", test_multi_recipient);
	g_test_add_func("/encrypt/signed-message-wrapped-whole-still-verifies",
	    test_signed_wrapped_whole);
	g_test_add_func("/encrypt/large/10MB", test_large);
	rc = g_test_run();
	if (gpgsm_state > 0) {
		g_autofree char *home = g_build_filename(shared, "gh", NULL);
		const char *kill[] = {"gpgconf", "--kill", "all", NULL};
		g_autofree char *out = NULL;

		test_run_in(shared, home, NULL, kill, &out);
	}
	for (gsize i = 0; i < G_N_ELEMENTS(parties); i++)
		party_clear(parties[i]);
	X509_free(ca_cert);
	EVP_PKEY_free(ca_key);
	test_dir_free(shared);
	return rc;
}
