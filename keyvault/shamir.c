/*
 * NAME
 *	shamir - split, check and recombine unseal shares (see shamir.h)
 * SECURITY
 *	Every buffer that held a share or the secret is cleansed; libgfshare
 *	gets its randomness from RAND_priv_bytes.
 */
#include "autoconfig.h"
#include "shamir.h"

#include <string.h>

#include <libgfshare.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

G_DEFINE_QUARK(kms-shamir-error-quark, kms_shamir_error)

static const char hexdigits[] = "0123456789abcdef";

/* libgfshare's randomness: OpenSSL's private DRBG. The callback cannot
 * fail, so a failure is recorded and the split refused afterwards. */
static gboolean rand_failed;

static void
fill_rand(unsigned char *buf, unsigned int len)
{
	if (RAND_priv_bytes(buf, (int)len) != 1)
		rand_failed = TRUE;
}

static void
use_openssl_rand(void)
{
	gfshare_fill_rand = fill_rand;
}

KmsShare *
kms_share_free(KmsShare *s)
{
	if (s == NULL)
		return NULL;
	kms_secret_free(s->value);
	g_free(s);
	return NULL;
}

void
kms_share_destroy(gpointer p)
{
	kms_share_free(p);
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = g_ascii_tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

KmsShare *
kms_share_parse(const char *text, gsize len, GError **err)
{
	const char *p = text, *end = text + len, *colon;
	guint index = 0;
	gsize n = 0;
	int hi = -1;
	KmsShare *s;

	/* Accept a whole printed line: "Share 3/5: 3-...". */
	colon = memchr(text, ':', len);
	if (colon != NULL)
		p = colon + 1;
	while (p < end && g_ascii_isspace(*p))
		p++;
	while (p < end && g_ascii_isdigit(*p) && index < 1000)
		index = index * 10 + (guint)(*p++ - '0');
	if (p >= end || *p != '-' || index < 1 || index > KMS_SHARES_MAX) {
		g_set_error(err, KMS_SHAMIR_ERROR, KMS_SHAMIR_ERROR_FORMAT,
		    "not a share: want its number, a dash and %d hexadecimal digits",
		    2 * KMS_SHARE_LEN);
		return NULL;
	}
	p++;
	s = g_new0(KmsShare, 1);
	s->index = (guint8)index;
	s->value = kms_secret_new(KMS_SHARE_LEN);
	for (; p < end; p++) {
		int v;

		if (g_ascii_isspace(*p))
			continue;
		if ((v = hexval((guchar)*p)) < 0 || n >= KMS_SHARE_LEN)
			break;
		if (hi < 0)
			hi = v;
		else {
			s->value->data[n++] = (unsigned char)(hi << 4 | v);
			hi = -1;
		}
	}
	if (p != end || n != KMS_SHARE_LEN || hi >= 0) {
		g_set_error(err, KMS_SHAMIR_ERROR, KMS_SHAMIR_ERROR_FORMAT,
		    "share %u: want %d hexadecimal digits after \"%u-\"", index,
		    2 * KMS_SHARE_LEN, index);
		return kms_share_free(s);
	}
	return s;
}

KmsShare *
kms_share_read(const char *file, const char *prompt, GError **err)
{
	g_autoptr(KmsSecret) text = kms_password_read(file, prompt, FALSE, err);

	if (text == NULL)
		return NULL;
	return kms_share_parse((const char *)text->data, text->len, err);
}

KmsSecret *
kms_share_format(const KmsShare *s)
{
	KmsSecret *t = kms_secret_new(4 + 2 * KMS_SHARE_LEN);
	int off = g_snprintf((char *)t->data, 5, "%u-", s->index);

	for (size_t i = 0; i < s->value->len; i++) {
		t->data[off++] = (unsigned char)hexdigits[s->value->data[i] >> 4];
		t->data[off++] = (unsigned char)hexdigits[s->value->data[i] & 15];
	}
	t->data[off] = '\0';
	t->len = (size_t)off;
	return t;
}

GPtrArray *
kms_shamir_split(const KmsSecret *secret, guint n, guint m, GError **err)
{
	unsigned char nrs[KMS_SHARES_MAX];
	g_autoptr(GPtrArray) shares = NULL;
	g_autoptr(KmsSecret) buf = NULL;
	gfshare_ctx *ctx;

	if (secret->len != KMS_SHARE_LEN || m < 2 || n < m || n > KMS_SHARES_MAX) {
		g_set_error(err, KMS_SHAMIR_ERROR, KMS_SHAMIR_ERROR_FAILED,
		    "shares: want 2 <= threshold <= shares <= %d", KMS_SHARES_MAX);
		return NULL;
	}
	for (guint i = 0; i < n; i++)
		nrs[i] = (unsigned char)(i + 1);
	use_openssl_rand();
	rand_failed = FALSE;
	ctx = gfshare_ctx_init_enc(nrs, n, (unsigned char)m, KMS_SHARE_LEN);
	if (ctx == NULL) {
		g_set_error(err, KMS_SHAMIR_ERROR, KMS_SHAMIR_ERROR_FAILED,
		    "cannot set up the share split");
		return NULL;
	}
	/* libgfshare wants a writable secret: give it a secure-heap copy. */
	buf = kms_secret_dup(secret->data, secret->len);
	gfshare_ctx_enc_setsecret(ctx, buf->data);
	shares = g_ptr_array_new_with_free_func(kms_share_destroy);
	for (guint i = 0; i < n; i++) {
		KmsShare *s = g_new0(KmsShare, 1);

		s->index = nrs[i];
		s->value = kms_secret_new(KMS_SHARE_LEN);
		gfshare_ctx_enc_getshare(ctx, (unsigned char)i, s->value->data);
		g_ptr_array_add(shares, s);
	}
	gfshare_ctx_free(ctx);
	if (rand_failed) {
		g_set_error(err, KMS_SHAMIR_ERROR, KMS_SHAMIR_ERROR_FAILED,
		    "the random number generator failed");
		return NULL;
	}
	return g_steal_pointer(&shares);
}

KmsSecret *
kms_shamir_combine(KmsShare *const *shares, guint count, GError **err)
{
	unsigned char nrs[KMS_SHARES_MAX];
	gfshare_ctx *ctx;
	KmsSecret *secret;

	if (count < 1 || count > KMS_SHARES_MAX) {
		g_set_error(err, KMS_SHAMIR_ERROR, KMS_SHAMIR_ERROR_TOO_FEW, "no shares");
		return NULL;
	}
	for (guint i = 0; i < count; i++) {
		nrs[i] = shares[i]->index;
		for (guint j = 0; j < i; j++)
			if (nrs[j] == nrs[i]) {
				g_set_error(err, KMS_SHAMIR_ERROR, KMS_SHAMIR_ERROR_FAILED,
				    "share %u was given twice", nrs[i]);
				return NULL;
			}
	}
	use_openssl_rand();	/* gfshare_ctx_free scrubs with it */
	ctx = gfshare_ctx_init_dec(nrs, count, KMS_SHARE_LEN);
	if (ctx == NULL) {
		g_set_error(err, KMS_SHAMIR_ERROR, KMS_SHAMIR_ERROR_FAILED,
		    "cannot set up the share recombination");
		return NULL;
	}
	for (guint i = 0; i < count; i++)
		gfshare_ctx_dec_giveshare(ctx, (unsigned char)i, shares[i]->value->data);
	secret = kms_secret_new(KMS_SHARE_LEN);
	gfshare_ctx_dec_extract(ctx, secret->data);
	gfshare_ctx_free(ctx);
	return secret;
}

void
kms_share_check_value(const guint8 set_id[KMS_SHARE_SET_ID_LEN], const KmsShare *s,
    guint8 out[KMS_SHARE_CHECK_LEN])
{
	static const char label[] = "kmsmilter-share-v1";
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	unsigned int len = KMS_SHARE_CHECK_LEN;

	if (c == NULL || EVP_DigestInit_ex2(c, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(c, label, sizeof(label) - 1) != 1 ||
	    EVP_DigestUpdate(c, set_id, KMS_SHARE_SET_ID_LEN) != 1 ||
	    EVP_DigestUpdate(c, &s->index, 1) != 1 ||
	    EVP_DigestUpdate(c, s->value->data, s->value->len) != 1 ||
	    EVP_DigestFinal_ex(c, out, &len) != 1)
		memset(out, 0, KMS_SHARE_CHECK_LEN);	/* matches no stored value */
	EVP_MD_CTX_free(c);
	ERR_clear_error();
}

KmsSecret *
kms_shamir_kek(const KmsSecret *secret, const guint8 set_id[KMS_SHARE_SET_ID_LEN],
    GError **err)
{
	static const char info[] = "kmsmilter-vault-shares-v1";
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	EVP_KDF_CTX *kc = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
	KmsSecret *kek = kms_secret_new(32);
	OSSL_PARAM params[5];

	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, secret->data,
	    secret->len);
	params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)set_id,
	    KMS_SHARE_SET_ID_LEN);
	params[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (char *)info,
	    sizeof(info) - 1);
	params[4] = OSSL_PARAM_construct_end();
	if (kc == NULL || EVP_KDF_derive(kc, kek->data, kek->len, params) != 1) {
		g_set_error(err, KMS_SHAMIR_ERROR, KMS_SHAMIR_ERROR_FAILED,
		    "cannot derive the share wrapping key");
		kek = kms_secret_free(kek);
	}
	EVP_KDF_CTX_free(kc);
	EVP_KDF_free(kdf);
	ERR_clear_error();
	return kek;
}

KmsShareSet *
kms_share_set_free(KmsShareSet *set)
{
	if (set == NULL)
		return NULL;
	if (set->checks)
		g_bytes_unref(set->checks);
	if (set->wrapped_key)
		g_bytes_unref(set->wrapped_key);
	g_free(set->created_at);
	g_free(set);
	return NULL;
}

gboolean
kms_share_set_check(const KmsShareSet *set, const KmsShare *s, GError **err)
{
	guint8 want[KMS_SHARE_CHECK_LEN];
	gsize len;
	const guint8 *checks = g_bytes_get_data(set->checks, &len);

	if (s->index < 1 || s->index > set->count || len != set->count * KMS_SHARE_CHECK_LEN) {
		g_set_error(err, KMS_SHAMIR_ERROR, KMS_SHAMIR_ERROR_MISMATCH,
		    "share %u does not belong to this vault (it has %u shares)", s->index,
		    set->count);
		return FALSE;
	}
	kms_share_check_value(set->set_id, s, want);
	if (CRYPTO_memcmp(want, checks + (s->index - 1) * KMS_SHARE_CHECK_LEN,
	    KMS_SHARE_CHECK_LEN) != 0) {
		g_set_error(err, KMS_SHAMIR_ERROR, KMS_SHAMIR_ERROR_MISMATCH,
		    "does not match share %u of this vault", s->index);
		return FALSE;
	}
	return TRUE;
}

char *
kms_unseal_fingerprint(const guint8 *pub, gsize len)
{
	guint8 md[32];
	unsigned int mdlen = sizeof(md);
	GString *s = g_string_sized_new(16);

	if (EVP_Digest(pub, len, md, &mdlen, EVP_sha256(), NULL) != 1)
		memset(md, 0, sizeof(md));
	for (int i = 0; i < 8; i++)
		g_string_append_printf(s, "%02x", md[i]);
	return g_string_free(s, FALSE);
}
