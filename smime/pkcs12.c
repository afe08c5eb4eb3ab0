/*
 * NAME
 *	pkcs12 - PKCS#12 files that hand a user their keys and certificates
 *	(see pkcs12.h)
 * DESCRIPTION
 *	The bags are made one by one (PKCS12_SAFEBAG_create_cert and
 *	PKCS12_SAFEBAG_create_pkcs8_encrypt_ex) rather than through
 *	PKCS12_create or PKCS12_add_cert/PKCS12_add_key: those copy an
 *	alias and key id from a certificate's auxiliary data when it has
 *	any, which would give a bag two localKeyIDs. Here every attribute
 *	comes from the caller's entry. A NID naming a cipher
 *	(NID_aes_256_cbc) makes OpenSSL write PBES2 with PBKDF2, whose PRF
 *	OpenSSL 3.0 defaults to hmacWithSHA256; a NID naming a PKCS#12 PBE
 *	algorithm writes that algorithm.
 *
 *	gpgsm's PKCS#12 key derivation (RFC 7292 appendix B.2, its own code,
 *	unchanged in 2.4) stores the intermediate sum I_j + B + 1 with
 *	gcry_mpi_print, which drops a leading zero byte: for about one salt
 *	in 128 it derives a wrong 3DES key and cannot open the bag (measured
 *	with gpgsm 2.2.40: 9 of 300 single-key files failed, exactly those
 *	this check predicted). The legacy profile therefore draws its salts
 *	itself and keeps only those gpgsm derives correctly: one extra
 *	derivation per bag, and under 0.02 bit less salt entropy.
 * SECURITY
 *	The password goes from the caller to OpenSSL. The salt check holds
 *	a BMPString copy of it and the first 20 bytes of a derived key, both
 *	wiped before it returns. The unencrypted PKCS#8 form of each key
 *	exists only between EVP_PKEY2PKCS8 and its free, which clears it
 *	(OpenSSL's PKCS8_PRIV_KEY_INFO free callback). Error messages carry
 *	subjects, entry numbers and OpenSSL reason strings.
 * DIAGNOSTICS
 *	GError in KMS_P12_ERROR, one line each.
 */
#include "pkcs12.h"
#include "x509util.h"

#include <string.h>

#include <openssl/err.h>
#include <openssl/pkcs12.h>
#include <openssl/rand.h>

G_DEFINE_QUARK(kms-p12-error-quark, kms_p12_error)

#define SALT_MAX	16
#define SALT_TRIES	64		/* each draw fails with p ~ 1/128 */
#define GPGSM_PW_MAX	31		/* bytes; gpgsm: "password too long" */
#define KDF_V		64		/* RFC 7292 B.2 block size (SHA-1) */
#define SHA1_LEN	20

/* What each profile writes. */
static const struct {
	const char *name;
	KmsP12Profile profile;
	int key_nid;		/* shrouded key bags */
	int cert_nid;		/* the encrypted certificate safe */
	const char *mac_md;	/* MAC digest */
	int salt_len;		/* of each encryption (SALT_MAX at most) */
	gboolean for_gpgsm;	/* salts and passwords gpgsm can use */
} profiles[] = {
	/* PBKDF2 salt: 128 bits, as NIST SP 800-132 asks. */
	{"modern", KMS_P12_MODERN, NID_aes_256_cbc, NID_aes_256_cbc,
	    "SHA256", 16, FALSE},
	/* PKCS#12 PBE salt: 64 bits, what OpenSSL and NSS write. */
	{"legacy", KMS_P12_LEGACY, NID_pbe_WithSHA1And3_Key_TripleDES_CBC,
	    NID_pbe_WithSHA1And3_Key_TripleDES_CBC, "SHA1", 8, TRUE},
};

typedef STACK_OF(PKCS12_SAFEBAG) BagStack;

/* Set *err from OpenSSL's latest error after WHAT, and clear the queue. */
static void
ossl_error(GError **err, const char *what)
{
	unsigned long e = ERR_peek_last_error();
	const char *reason = e ? ERR_reason_error_string(e) : NULL;

	g_set_error(err, KMS_P12_ERROR, KMS_P12_ERROR_FAILED, "%s: %s", what,
	    reason ? reason : "unknown OpenSSL error");
	ERR_clear_error();
}

/* Map a profile name to its enum value. */
gboolean
kms_p12_profile_parse(const char *name, KmsP12Profile *out)
{
	for (size_t i = 0; name && i < G_N_ELEMENTS(profiles); i++)
		if (g_ascii_strcasecmp(name, profiles[i].name) == 0) {
			*out = profiles[i].profile;
			return TRUE;
		}
	return FALSE;
}

/* Map a profile to its name; a static string. */
const char *
kms_p12_profile_name(KmsP12Profile p)
{
	for (size_t i = 0; i < G_N_ELEMENTS(profiles); i++)
		if (profiles[i].profile == p)
			return profiles[i].name;
	return "unknown";
}

/* Fail entry I (0-based; named 1-based with CERT's subject) as invalid. */
static gboolean G_GNUC_PRINTF(4, 5)
entry_fail(GError **err, guint i, X509 *cert, const char *fmt, ...)
{
	g_autofree char *subj = NULL;
	g_autofree char *why = NULL;
	va_list ap;

	if (cert)
		subj = kms_x509_name_text(X509_get_subject_name(cert));
	va_start(ap, fmt);
	why = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	g_set_error(err, KMS_P12_ERROR, KMS_P12_ERROR_INVALID,
	    "PKCS#12 entry %u (%s): %s", i + 1, subj ? subj : "no certificate",
	    why);
	ERR_clear_error();
	return FALSE;
}

/* Check the password; FOR_GPGSM adds gpgsm's limits: at most 31 bytes,
 * Latin-1 characters only (it tries ISO-8859-1 after UTF-8). */
static gboolean
check_password(const char *password, gboolean for_gpgsm, GError **err)
{
	const char *why = NULL;

	if (password == NULL || *password == '\0')
		why = "missing or empty password";
	else if (!g_utf8_validate(password, -1, NULL))
		why = "the password is not UTF-8";
	else if (for_gpgsm && strlen(password) > GPGSM_PW_MAX)
		why = "legacy profile: gpgsm cannot use a password longer "
		    "than 31 bytes";
	for (const char *p = password; why == NULL && for_gpgsm && *p;
	    p = g_utf8_next_char(p))
		if (g_utf8_get_char(p) > 0xff)
			why = "legacy profile: gpgsm can only use Latin-1 "
			    "characters in a password";
	if (why)
		g_set_error(err, KMS_P12_ERROR, KMS_P12_ERROR_INVALID,
		    "PKCS#12: %s", why);
	return why == NULL;
}

/* Check the caller's entries before anything is built. */
static gboolean
check_entries(const KmsP12Entry *entries, guint n, GError **err)
{
	if (entries == NULL || n == 0) {
		g_set_error(err, KMS_P12_ERROR, KMS_P12_ERROR_INVALID,
		    "PKCS#12: no key and certificate to put in it");
		return FALSE;
	}
	for (guint i = 0; i < n; i++) {
		const KmsP12Entry *e = &entries[i];

		if (e->key == NULL || e->cert == NULL)
			return entry_fail(err, i, e->cert,
			    "missing key or certificate");
		if (X509_check_private_key(e->cert, e->key) != 1)
			return entry_fail(err, i, e->cert,
			    "the key does not match the certificate");
		if (e->friendly_name &&
		    !g_utf8_validate(e->friendly_name, -1, NULL))
			return entry_fail(err, i, e->cert,
			    "friendly name is not UTF-8");
		for (guint k = 0; k < i; k++)
			if (X509_cmp(entries[k].cert, e->cert) == 0)
				return entry_fail(err, i, e->cert,
				    "same certificate as entry %u", k + 1);
	}
	return TRUE;
}

/*
 * Does gpgsm derive the right 3DES key from PASSWORD (checked by
 * check_password) and the LEN-byte SALT? RFC 7292 B.2 with SHA-1: A = SHA-1^iter(D||I),
 * D 64 bytes of ID 1, I the salt and the BMPString password (with its
 * terminator) each repeated to 64 bytes. A 24-byte key needs a second
 * round, which first sets each I_j to (I_j + B + 1) mod 2^512, B being A
 * repeated; gpgsm gets that wrong when the sum's top byte is zero. The IV
 * (8 bytes) and the MAC key (20) take one round and are not affected.
 * 1: gpgsm gets it right, 0: it does not, -1: error in *err.
 */
static int
gpgsm_kdf_ok(const char *password, const unsigned char *salt, int len,
    GError **err)
{
	unsigned char d[KDF_V], ib[2 * KDF_V], bmp[2 * (GPGSM_PW_MAX + 1)];
	unsigned char a[EVP_MAX_MD_SIZE];
	unsigned int alen = 0;
	size_t n = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	gboolean ok = ctx != NULL;
	int right = 1;

	for (const char *p = password; *p; p = g_utf8_next_char(p)) {
		bmp[n++] = 0;
		bmp[n++] = (unsigned char) g_utf8_get_char(p);
	}
	bmp[n++] = 0;
	bmp[n++] = 0;
	memset(d, PKCS12_KEY_ID, sizeof(d));
	for (size_t i = 0; i < KDF_V; i++) {
		ib[i] = salt[i % (size_t) len];
		ib[KDF_V + i] = bmp[i % n];
	}
	ok = ok && EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) &&
	    EVP_DigestUpdate(ctx, d, sizeof(d)) &&
	    EVP_DigestUpdate(ctx, ib, sizeof(ib)) &&
	    EVP_DigestFinal_ex(ctx, a, &alen) && alen == SHA1_LEN;
	for (int i = 1; ok && i < KMS_P12_ITERATIONS; i++)
		ok = EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) &&
		    EVP_DigestUpdate(ctx, a, SHA1_LEN) &&
		    EVP_DigestFinal_ex(ctx, a, &alen);
	if (!ok) {
		ossl_error(err, "PKCS#12 salt check");
		right = -1;
	}
	for (size_t j = 0; ok && j < 2; j++) {
		unsigned int carry = 1, v = 0;	/* the + 1 */

		for (size_t k = KDF_V; k-- > 0; ) {
			v = ib[j * KDF_V + k] + a[k % SHA1_LEN] + carry;
			carry = v >> 8;
		}
		if ((v & 0xff) == 0)
			right = 0;
	}
	OPENSSL_cleanse(a, sizeof(a));
	OPENSSL_cleanse(ib, sizeof(ib));
	OPENSSL_cleanse(bmp, sizeof(bmp));
	EVP_MD_CTX_free(ctx);
	return right;
}

/* A random salt for one encryption under PASSWORD in profile P (for
 * gpgsm: one it derives the key from correctly); its length. */
static int
pick_salt(unsigned char *salt, const char *password, size_t p,
    GError **err)
{
	int len = profiles[p].salt_len;

	for (int i = 0; i < SALT_TRIES; i++) {
		int right;

		if (RAND_bytes(salt, len) != 1) {
			ossl_error(err, "RAND_bytes");
			return 0;
		}
		if (!profiles[p].for_gpgsm)
			return len;
		if ((right = gpgsm_kdf_ok(password, salt, len, err)) != 0)
			return right > 0 ? len : 0;
	}
	g_set_error(err, KMS_P12_ERROR, KMS_P12_ERROR_FAILED,
	    "PKCS#12: no usable salt in %d draws", SALT_TRIES);
	return 0;
}

/* SHA-1 of CERT's DER into ID (EVP_MAX_MD_SIZE bytes): the localKeyID
 * OpenSSL, NSS and Windows use. Its length, 0 on failure. */
static unsigned int
cert_key_id(X509 *cert, unsigned char *id)
{
	unsigned int len = 0;

	if (X509_digest(cert, EVP_sha1(), id, &len) != 1)
		return 0;
	return len;
}

/* Give BAG the localKeyID ID/LEN (when LEN > 0) and friendly NAME (when
 * not NULL), then append it to BAGS, which takes it; frees it on error. */
static gboolean
push_bag(BagStack *bags, PKCS12_SAFEBAG *bag, unsigned char *id,
    unsigned int len, const char *name, GError **err)
{
	if (len > 0 && !PKCS12_add_localkeyid(bag, id, (int) len)) {
		ossl_error(err, "localKeyID");
	} else if (name && !PKCS12_add_friendlyname_utf8(bag, name, -1)) {
		ossl_error(err, "friendlyName");
	} else if (!sk_PKCS12_SAFEBAG_push(bags, bag)) {
		ossl_error(err, "PKCS#12 bag");
	} else {
		return TRUE;
	}
	PKCS12_SAFEBAG_free(bag);
	return FALSE;
}

/* A key bag for KEY, encrypted under PASSWORD with profile P's key NID;
 * caller frees. */
static PKCS12_SAFEBAG *
key_bag(EVP_PKEY *key, size_t p, const char *password, GError **err)
{
	unsigned char salt[SALT_MAX];
	int salt_len = pick_salt(salt, password, p, err);
	PKCS8_PRIV_KEY_INFO *p8;
	PKCS12_SAFEBAG *bag;

	if (salt_len == 0)
		return NULL;
	if ((p8 = EVP_PKEY2PKCS8(key)) == NULL) {
		ossl_error(err, "private key");
		return NULL;
	}
	bag = PKCS12_SAFEBAG_create_pkcs8_encrypt_ex(profiles[p].key_nid,
	    password, -1, salt, salt_len, KMS_P12_ITERATIONS, p8, NULL, NULL);
	PKCS8_PRIV_KEY_INFO_free(p8);	/* clears the plaintext key */
	if (bag == NULL)
		ossl_error(err, "encrypting a private key");
	return bag;
}

/* Is CERT one of the entries' certificates? */
static gboolean
is_entry_cert(const KmsP12Entry *entries, guint n, X509 *cert)
{
	for (guint i = 0; i < n; i++)
		if (X509_cmp(entries[i].cert, cert) == 0)
			return TRUE;
	return FALSE;
}

/* Fill CERTS and KEYS with the bags of ENTRIES and CHAIN for profile P. */
static gboolean
make_bags(const KmsP12Entry *entries, guint n, STACK_OF(X509) *chain,
    const char *password, size_t p, BagStack *certs, BagStack *keys,
    GError **err)
{
	unsigned char id[EVP_MAX_MD_SIZE];
	unsigned int len;
	PKCS12_SAFEBAG *bag;

	for (guint i = 0; i < n; i++) {
		const KmsP12Entry *e = &entries[i];

		if ((len = cert_key_id(e->cert, id)) == 0) {
			ossl_error(err, "certificate digest");
			return FALSE;
		}
		if ((bag = PKCS12_SAFEBAG_create_cert(e->cert)) == NULL) {
			ossl_error(err, "certificate bag");
			return FALSE;
		}
		if (!push_bag(certs, bag, id, len, e->friendly_name, err) ||
		    (bag = key_bag(e->key, p, password, err)) == NULL ||
		    !push_bag(keys, bag, id, len, e->friendly_name, err))
			return FALSE;
	}
	/* CA certificates: no key, so no localKeyID. A copy of an entry's
	 * certificate in CHAIN would only be a second, keyless bag. */
	for (int i = 0; chain && i < sk_X509_num(chain); i++) {
		X509 *ca = sk_X509_value(chain, i);

		if (ca == NULL || is_entry_cert(entries, n, ca))
			continue;
		if ((bag = PKCS12_SAFEBAG_create_cert(ca)) == NULL) {
			ossl_error(err, "certificate bag");
			return FALSE;
		}
		if (!push_bag(certs, bag, NULL, 0, NULL, err))
			return FALSE;
	}
	return TRUE;
}

/* Append the safe P7 (NULL: its making failed) to SAFES, which takes
 * it; frees it on error. */
static gboolean
push_safe(STACK_OF(PKCS7) *safes, PKCS7 *p7, const char *what,
    GError **err)
{
	if (p7 && sk_PKCS7_push(safes, p7))
		return TRUE;
	PKCS7_free(p7);
	ossl_error(err, what);
	return FALSE;
}

/* The authenticated safes: the certificates encrypted for profile P,
 * then the (already shrouded) keys as plain data, the layout OpenSSL
 * and NSS write. Caller frees with sk_PKCS7_pop_free. */
static STACK_OF(PKCS7) *
make_safes(BagStack *certs, BagStack *keys, const char *password,
    size_t p, GError **err)
{
	unsigned char salt[SALT_MAX];
	int salt_len;
	STACK_OF(PKCS7) *safes = sk_PKCS7_new_null();

	if (safes == NULL) {
		ossl_error(err, "PKCS#12 safes");
		return NULL;
	}
	if ((salt_len = pick_salt(salt, password, p, err)) == 0 ||
	    !push_safe(safes, PKCS12_pack_p7encdata_ex(profiles[p].cert_nid,
	    password, -1, salt, salt_len, KMS_P12_ITERATIONS, certs, NULL,
	    NULL), "encrypting the certificates", err) ||
	    !push_safe(safes, PKCS12_pack_p7data(keys), "PKCS#12 key safe",
	    err)) {
		sk_PKCS7_pop_free(safes, PKCS7_free);
		return NULL;
	}
	return safes;
}

/* DER of P12 as GBytes; NULL with *err. */
static GBytes *
p12_der(PKCS12 *p12, GError **err)
{
	unsigned char *der = NULL;
	int len = i2d_PKCS12(p12, &der);
	GBytes *out;

	if (len <= 0) {
		ossl_error(err, "encoding the PKCS#12");
		return NULL;
	}
	out = g_bytes_new(der, (gsize) len);
	OPENSSL_free(der);
	return out;
}

/* Build a PKCS#12 for a user from key/certificate pairs and the chain. */
GBytes *
kms_p12_build(const KmsP12Entry *entries, guint n, STACK_OF(X509) *chain,
    const char *password, KmsP12Profile profile, GError **err)
{
	BagStack *certs = NULL;
	BagStack *keys = NULL;
	STACK_OF(PKCS7) *safes = NULL;
	PKCS12 *p12 = NULL;
	EVP_MD *md = NULL;
	GBytes *out = NULL;
	size_t p;

	for (p = 0; p < G_N_ELEMENTS(profiles); p++)
		if (profiles[p].profile == profile)
			break;
	if (p == G_N_ELEMENTS(profiles)) {
		g_set_error(err, KMS_P12_ERROR, KMS_P12_ERROR_INVALID,
		    "unknown PKCS#12 profile %d", (int) profile);
		return NULL;
	}
	if (!check_entries(entries, n, err) ||
	    !check_password(password, profiles[p].for_gpgsm, err))
		return NULL;
	if ((certs = sk_PKCS12_SAFEBAG_new_null()) == NULL ||
	    (keys = sk_PKCS12_SAFEBAG_new_null()) == NULL) {
		ossl_error(err, "PKCS#12 bags");
		goto out;
	}
	if (!make_bags(entries, n, chain, password, p, certs, keys, err) ||
	    (safes = make_safes(certs, keys, password, p, err)) == NULL)
		goto out;
	if ((p12 = PKCS12_add_safes_ex(safes, NID_pkcs7_data, NULL,
	    NULL)) == NULL) {
		ossl_error(err, "PKCS#12");
		goto out;
	}
	if ((md = EVP_MD_fetch(NULL, profiles[p].mac_md, NULL)) == NULL ||
	    !PKCS12_set_mac(p12, password, -1, NULL, 0, KMS_P12_ITERATIONS,
	    md)) {
		ossl_error(err, "PKCS#12 MAC");
		goto out;
	}
	out = p12_der(p12, err);
out:
	EVP_MD_free(md);
	PKCS12_free(p12);
	sk_PKCS7_pop_free(safes, PKCS7_free);
	sk_PKCS12_SAFEBAG_pop_free(keys, PKCS12_SAFEBAG_free);
	sk_PKCS12_SAFEBAG_pop_free(certs, PKCS12_SAFEBAG_free);
	return out;
}
