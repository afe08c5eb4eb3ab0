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
 * SECURITY
 *	The password goes straight from the caller to OpenSSL; no copy is
 *	made here, so there is none to wipe. The unencrypted PKCS#8 form of
 *	each key exists only between EVP_PKEY2PKCS8 and its free, which
 *	clears it (OpenSSL's PKCS8_PRIV_KEY_INFO free callback). Error
 *	messages carry subjects, entry numbers and OpenSSL reason strings.
 * DIAGNOSTICS
 *	GError in KMS_P12_ERROR, one line each.
 */
#include "pkcs12.h"
#include "x509util.h"

#include <string.h>

#include <openssl/err.h>
#include <openssl/pkcs12.h>

G_DEFINE_QUARK(kms-p12-error-quark, kms_p12_error)

/* What each profile writes. */
static const struct {
	const char *name;
	KmsP12Profile profile;
	int key_nid;		/* shrouded key bags */
	int cert_nid;		/* the encrypted certificate safe */
	const char *mac_md;	/* MAC digest */
} profiles[] = {
	{"modern", KMS_P12_MODERN, NID_aes_256_cbc, NID_aes_256_cbc,
	    "SHA256"},
	{"legacy", KMS_P12_LEGACY, NID_pbe_WithSHA1And3_Key_TripleDES_CBC,
	    NID_pbe_WithSHA1And3_Key_TripleDES_CBC, "SHA1"},
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

/* Check the caller's entries and password before anything is built. */
static gboolean
check_input(const KmsP12Entry *entries, guint n, const char *password,
    GError **err)
{
	if (entries == NULL || n == 0) {
		g_set_error(err, KMS_P12_ERROR, KMS_P12_ERROR_INVALID,
		    "PKCS#12: no key and certificate to put in it");
		return FALSE;
	}
	if (password == NULL || *password == '\0') {
		g_set_error(err, KMS_P12_ERROR, KMS_P12_ERROR_INVALID,
		    "PKCS#12: missing or empty password");
		return FALSE;
	}
	if (!g_utf8_validate(password, -1, NULL)) {
		g_set_error(err, KMS_P12_ERROR, KMS_P12_ERROR_INVALID,
		    "PKCS#12: the password is not UTF-8");
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

/* Give BAG the localKeyID ID/LEN (when LEN > 0) and friendly NAME (when
 * not NULL). */
static gboolean
add_attrs(PKCS12_SAFEBAG *bag, unsigned char *id, unsigned int len,
    const char *name, GError **err)
{
	if (len > 0 && !PKCS12_add_localkeyid(bag, id, (int) len)) {
		ossl_error(err, "localKeyID");
		return FALSE;
	}
	if (name && !PKCS12_add_friendlyname_utf8(bag, name, -1)) {
		ossl_error(err, "friendlyName");
		return FALSE;
	}
	return TRUE;
}

/* Append a certificate bag for CERT with the given attributes to BAGS. */
static gboolean
push_cert(BagStack *bags, X509 *cert, unsigned char *id, unsigned int len,
    const char *name, GError **err)
{
	PKCS12_SAFEBAG *bag = PKCS12_SAFEBAG_create_cert(cert);

	if (bag == NULL) {
		ossl_error(err, "certificate bag");
		return FALSE;
	}
	if (!add_attrs(bag, id, len, name, err)) {
		PKCS12_SAFEBAG_free(bag);
		return FALSE;
	}
	if (!sk_PKCS12_SAFEBAG_push(bags, bag)) {
		PKCS12_SAFEBAG_free(bag);
		ossl_error(err, "certificate bag");
		return FALSE;
	}
	return TRUE;
}

/* Append a key bag for KEY, encrypted under PASSWORD with NID, to BAGS. */
static gboolean
push_key(BagStack *bags, EVP_PKEY *key, int nid, const char *password,
    unsigned char *id, unsigned int len, const char *name, GError **err)
{
	PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(key);
	PKCS12_SAFEBAG *bag = NULL;

	if (p8 == NULL) {
		ossl_error(err, "private key");
		return FALSE;
	}
	bag = PKCS12_SAFEBAG_create_pkcs8_encrypt_ex(nid, password, -1, NULL,
	    0, KMS_P12_ITERATIONS, p8, NULL, NULL);
	PKCS8_PRIV_KEY_INFO_free(p8);	/* clears the plaintext key */
	if (bag == NULL) {
		ossl_error(err, "encrypting a private key");
		return FALSE;
	}
	if (!add_attrs(bag, id, len, name, err)) {
		PKCS12_SAFEBAG_free(bag);
		return FALSE;
	}
	if (!sk_PKCS12_SAFEBAG_push(bags, bag)) {
		PKCS12_SAFEBAG_free(bag);
		ossl_error(err, "key bag");
		return FALSE;
	}
	return TRUE;
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

/* Fill CERTS and KEYS with the bags of ENTRIES and CHAIN. */
static gboolean
make_bags(const KmsP12Entry *entries, guint n, STACK_OF(X509) *chain,
    const char *password, int key_nid, BagStack *certs, BagStack *keys,
    GError **err)
{
	unsigned char id[EVP_MAX_MD_SIZE];
	unsigned int len;

	for (guint i = 0; i < n; i++) {
		const KmsP12Entry *e = &entries[i];

		if ((len = cert_key_id(e->cert, id)) == 0) {
			ossl_error(err, "certificate digest");
			return FALSE;
		}
		if (!push_cert(certs, e->cert, id, len, e->friendly_name,
		    err) ||
		    !push_key(keys, e->key, key_nid, password, id, len,
		    e->friendly_name, err))
			return FALSE;
	}
	/* CA certificates: no key, so no localKeyID. A copy of an entry's
	 * certificate in CHAIN would only be a second, keyless bag. */
	for (int i = 0; chain && i < sk_X509_num(chain); i++) {
		X509 *ca = sk_X509_value(chain, i);

		if (ca == NULL || is_entry_cert(entries, n, ca))
			continue;
		if (!push_cert(certs, ca, NULL, 0, NULL, err))
			return FALSE;
	}
	return TRUE;
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
	if (!check_input(entries, n, password, err))
		return NULL;
	if ((certs = sk_PKCS12_SAFEBAG_new_null()) == NULL ||
	    (keys = sk_PKCS12_SAFEBAG_new_null()) == NULL) {
		ossl_error(err, "PKCS#12 bags");
		goto out;
	}
	if (!make_bags(entries, n, chain, password, profiles[p].key_nid,
	    certs, keys, err))
		goto out;
	/* Certificates in an encrypted safe, then the (already shrouded)
	 * keys in a plain data safe: the layout every reader expects. */
	if (!PKCS12_add_safe_ex(&safes, certs, profiles[p].cert_nid,
	    KMS_P12_ITERATIONS, password, NULL, NULL) ||
	    !PKCS12_add_safe_ex(&safes, keys, -1, 0, NULL, NULL, NULL)) {
		ossl_error(err, "PKCS#12 safes");
		goto out;
	}
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
