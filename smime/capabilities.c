/*
 * NAME
 *	capabilities - SMIMECapabilities to and from names (see capabilities.h)
 * DESCRIPTION
 *	The attribute value is a SEQUENCE OF AlgorithmIdentifier, which
 *	OpenSSL decodes and encodes as X509_ALGORS. Parameters matter for
 *	two algorithms only: RC2 (an INTEGER key size in bits) and RSAES-OAEP
 *	(RSAES-OAEP-params, named after their hash); any other parameters are
 *	ignored when reading and never written. A present but undecodable
 *	attribute reads as an empty list: the signer announced nothing usable.
 * SECURITY
 *	Attribute values come from hostile mail. They are decoded by
 *	OpenSSL's template decoder (which bounds nesting itself); at most
 *	KMS_CAPABILITIES_MAX entries are named, and names are built from
 *	fixed text, OpenSSL's object table or dotted digits only, so they
 *	are safe for logs and JSON.
 * DIAGNOSTICS
 *	kms_capabilities_add_to_signer() reports in KMS_CAPABILITIES_ERROR.
 */
#include "capabilities.h"

#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/rsa.h>

G_DEFINE_QUARK(kms-capabilities-error-quark, kms_capabilities_error)

#define RC2_BITS_MAX	1024	/* RC2 keys are at most 1024 bits */
#define OID_TEXT_MAX	128	/* longer dotted OIDs are not named */

/* Algorithms named by their OID alone; parameters are not written. */
static const struct {
	const char *name;
	int nid;
	int ptype;		/* parameter: V_ASN1_UNDEF (absent) or NULL */
} plain_algs[] = {
	{"aes128-cbc", NID_aes_128_cbc, V_ASN1_UNDEF},
	{"aes192-cbc", NID_aes_192_cbc, V_ASN1_UNDEF},
	{"aes256-cbc", NID_aes_256_cbc, V_ASN1_UNDEF},
	{"aes128-gcm", NID_aes_128_gcm, V_ASN1_UNDEF},
	{"aes192-gcm", NID_aes_192_gcm, V_ASN1_UNDEF},
	{"aes256-gcm", NID_aes_256_gcm, V_ASN1_UNDEF},
	{"des-ede3-cbc", NID_des_ede3_cbc, V_ASN1_UNDEF},
	{"des-cbc", NID_des_cbc, V_ASN1_UNDEF},
	{"rsa-encryption", NID_rsaEncryption, V_ASN1_NULL},
};

/* OAEP hashes kms_capabilities_add_to_signer accepts (SHA-1 is the
 * default and spelt "rsaes-oaep"). */
static const char *const oaep_hashes[] = {"sha224", "sha256", "sha384",
    "sha512"};

/* Dotted text of OBJ, or "unknown" when it is absurdly long; g_free. */
static char *
oid_text(const ASN1_OBJECT *obj)
{
	char buf[OID_TEXT_MAX + 1];
	int n = OBJ_obj2txt(buf, sizeof(buf), obj, 1);

	ERR_clear_error();
	if (n <= 0 || n > OID_TEXT_MAX)
		return g_strdup("unknown");
	return g_strdup(buf);
}

/* Name of a hash algorithm: OpenSSL's short name in lower case; g_free. */
static char *
object_name(const ASN1_OBJECT *obj)
{
	int nid = OBJ_obj2nid(obj);
	const char *sn = nid != NID_undef ? OBJ_nid2sn(nid) : NULL;

	return sn ? g_ascii_strdown(sn, -1) : oid_text(obj);
}

/* "rc2-cbc-BITS" from the INTEGER parameter, "rc2-cbc" without a usable
 * one. */
static char *
rc2_name(int ptype, const void *pval)
{
	int64_t bits;

	if (ptype == V_ASN1_INTEGER &&
	    ASN1_INTEGER_get_int64(&bits, pval) == 1 && bits > 0 &&
	    bits <= RC2_BITS_MAX)
		return g_strdup_printf("rc2-cbc-%d", (int) bits);
	ERR_clear_error();
	return g_strdup("rc2-cbc");
}

/* "rsaes-oaep" for default (SHA-1) parameters, else "rsaes-oaep-HASH". */
static char *
oaep_name(int ptype, const void *pval)
{
	const ASN1_OBJECT *hash;
	const unsigned char *p;
	RSA_OAEP_PARAMS *op;
	char *name, *hname;

	if (ptype == V_ASN1_UNDEF || ptype == V_ASN1_NULL)
		return g_strdup("rsaes-oaep");
	if (ptype != V_ASN1_SEQUENCE)
		return g_strdup("rsaes-oaep-invalid");
	p = ASN1_STRING_get0_data(pval);
	op = d2i_RSA_OAEP_PARAMS(NULL, &p, ASN1_STRING_length(pval));
	ERR_clear_error();
	if (op == NULL)
		return g_strdup("rsaes-oaep-invalid");
	if (op->hashFunc == NULL) {
		RSA_OAEP_PARAMS_free(op);
		return g_strdup("rsaes-oaep");
	}
	X509_ALGOR_get0(&hash, NULL, NULL, op->hashFunc);
	if (OBJ_obj2nid(hash) == NID_sha1)
		name = g_strdup("rsaes-oaep");
	else {
		hname = object_name(hash);
		name = g_strconcat("rsaes-oaep-", hname, NULL);
		g_free(hname);
	}
	RSA_OAEP_PARAMS_free(op);
	return name;
}

/* Name of one SMIMECapability (see capabilities.h); g_free. */
static char *
capability_name(const X509_ALGOR *alg)
{
	const ASN1_OBJECT *obj;
	const void *pval;
	int ptype, nid;

	X509_ALGOR_get0(&obj, &ptype, &pval, alg);
	nid = OBJ_obj2nid(obj);
	for (size_t i = 0; i < G_N_ELEMENTS(plain_algs); i++)
		if (nid == plain_algs[i].nid)
			return g_strdup(plain_algs[i].name);
	if (nid == NID_rc2_cbc)
		return rc2_name(ptype, pval);
	if (nid == NID_rsaesOaep)
		return oaep_name(ptype, pval);
	return object_name(obj);
}

/* Read the signer's SMIMECapabilities, first attribute, first value. */
GPtrArray *
kms_capabilities_from_signer(CMS_SignerInfo *si)
{
	const unsigned char *p;
	X509_ATTRIBUTE *attr;
	X509_ALGORS *algs;
	ASN1_TYPE *value;
	GPtrArray *names;
	int idx;

	if (si == NULL || (idx = CMS_signed_get_attr_by_NID(si,
	    NID_SMIMECapabilities, -1)) < 0)
		return NULL;
	names = g_ptr_array_new_with_free_func(g_free);
	if ((attr = CMS_signed_get_attr(si, idx)) == NULL ||
	    (value = X509_ATTRIBUTE_get0_type(attr, 0)) == NULL ||
	    value->type != V_ASN1_SEQUENCE) {
		ERR_clear_error();
		return names;
	}
	p = ASN1_STRING_get0_data(value->value.sequence);
	algs = d2i_X509_ALGORS(NULL, &p,
	    ASN1_STRING_length(value->value.sequence));
	ERR_clear_error();
	for (int i = 0; algs && i < sk_X509_ALGOR_num(algs) &&
	    names->len < KMS_CAPABILITIES_MAX; i++)
		g_ptr_array_add(names,
		    capability_name(sk_X509_ALGOR_value(algs, i)));
	sk_X509_ALGOR_pop_free(algs, X509_ALGOR_free);
	return names;
}

/* Set *err from OpenSSL's latest error after WHAT, and clear the queue. */
static void
ossl_error(GError **err, const char *what)
{
	unsigned long e = ERR_peek_last_error();
	const char *reason = e ? ERR_reason_error_string(e) : NULL;

	g_set_error(err, KMS_CAPABILITIES_ERROR, KMS_CAPABILITIES_ERROR_FAILED,
	    "%s: %s", what, reason ? reason : "unknown OpenSSL error");
	ERR_clear_error();
}

/* New AlgorithmIdentifier NID with parameter PTYPE/PVAL (taken over even
 * on failure); NULL on failure. */
static X509_ALGOR *
algor_new(int nid, int ptype, void *pval)
{
	X509_ALGOR *a = X509_ALGOR_new();

	if (a == NULL || !X509_ALGOR_set0(a, OBJ_nid2obj(nid), ptype, pval)) {
		X509_ALGOR_free(a);
		if (ptype == V_ASN1_INTEGER)
			ASN1_INTEGER_free(pval);
		else if (ptype == V_ASN1_SEQUENCE)
			ASN1_STRING_free(pval);
		return NULL;
	}
	return a;
}

/* RSAES-OAEP with MD for the hash and for MGF1 (RFC 4055 2.1), pSource
 * default. */
static X509_ALGOR *
oaep_algor(const EVP_MD *md)
{
	RSA_OAEP_PARAMS *op = RSA_OAEP_PARAMS_new();
	X509_ALGOR *mgf_hash = X509_ALGOR_new();
	ASN1_STRING *mgf_param = NULL, *params = NULL;

	if (op == NULL || mgf_hash == NULL || md == NULL ||
	    (op->hashFunc = X509_ALGOR_new()) == NULL)
		goto fail;
	X509_ALGOR_set_md(op->hashFunc, md);
	X509_ALGOR_set_md(mgf_hash, md);
	if ((mgf_param = ASN1_item_pack(mgf_hash, ASN1_ITEM_rptr(X509_ALGOR),
	    NULL)) == NULL ||
	    (op->maskGenFunc = algor_new(NID_mgf1, V_ASN1_SEQUENCE,
	    mgf_param)) == NULL ||
	    (params = ASN1_item_pack(op, ASN1_ITEM_rptr(RSA_OAEP_PARAMS),
	    NULL)) == NULL)
		goto fail;
	RSA_OAEP_PARAMS_free(op);
	X509_ALGOR_free(mgf_hash);
	return algor_new(NID_rsaesOaep, V_ASN1_SEQUENCE, params);
fail:
	RSA_OAEP_PARAMS_free(op);
	X509_ALGOR_free(mgf_hash);
	return NULL;
}

/* AlgorithmIdentifier for "rc2-cbc-BITS". */
static X509_ALGOR *
rc2_algor(const char *bits_text, GError **err)
{
	guint64 bits;
	ASN1_INTEGER *i;

	if (!g_ascii_string_to_unsigned(bits_text, 10, 1, RC2_BITS_MAX, &bits,
	    NULL)) {
		g_set_error(err, KMS_CAPABILITIES_ERROR,
		    KMS_CAPABILITIES_ERROR_UNKNOWN,
		    "rc2-cbc-%s: key size must be 1 to %d bits", bits_text,
		    RC2_BITS_MAX);
		return NULL;
	}
	if ((i = ASN1_INTEGER_new()) == NULL ||
	    !ASN1_INTEGER_set(i, (long) bits)) {
		ASN1_INTEGER_free(i);
		ossl_error(err, "RC2 key size");
		return NULL;
	}
	return algor_new(NID_rc2_cbc, V_ASN1_INTEGER, i);
}

/* AlgorithmIdentifier announcing NAME; NULL with *err. */
static X509_ALGOR *
capability_algor(const char *name, GError **err)
{
	ASN1_OBJECT *obj;
	X509_ALGOR *a;

	for (size_t i = 0; i < G_N_ELEMENTS(plain_algs); i++)
		if (strcmp(name, plain_algs[i].name) == 0) {
			a = algor_new(plain_algs[i].nid, plain_algs[i].ptype,
			    NULL);
			if (a == NULL)
				ossl_error(err, name);
			return a;
		}
	if (g_str_has_prefix(name, "rc2-cbc-"))
		return rc2_algor(name + strlen("rc2-cbc-"), err);
	if (strcmp(name, "rsaes-oaep") == 0) {
		if ((a = algor_new(NID_rsaesOaep, V_ASN1_UNDEF, NULL)) == NULL)
			ossl_error(err, name);
		return a;
	}
	if (g_str_has_prefix(name, "rsaes-oaep-")) {
		const char *hash = name + strlen("rsaes-oaep-");

		for (size_t i = 0; i < G_N_ELEMENTS(oaep_hashes); i++)
			if (strcmp(hash, oaep_hashes[i]) == 0) {
				if ((a = oaep_algor(EVP_get_digestbyname(hash)))
				    == NULL)
					ossl_error(err, name);
				return a;
			}
		g_set_error(err, KMS_CAPABILITIES_ERROR,
		    KMS_CAPABILITIES_ERROR_UNKNOWN, "%s: unknown OAEP hash "
		    "(use sha224, sha256, sha384 or sha512)", name);
		return NULL;
	}
	if ((obj = OBJ_txt2obj(name, 0)) == NULL) {
		ERR_clear_error();
		g_set_error(err, KMS_CAPABILITIES_ERROR,
		    KMS_CAPABILITIES_ERROR_UNKNOWN, "%s: unknown algorithm",
		    name);
		return NULL;
	}
	if ((a = X509_ALGOR_new()) == NULL ||
	    !X509_ALGOR_set0(a, obj, V_ASN1_UNDEF, NULL)) {
		ASN1_OBJECT_free(obj);
		X509_ALGOR_free(a);
		ossl_error(err, name);
		return NULL;
	}
	return a;
}

/* Announce NAMES on SI, replacing any SMIMECapabilities it had (CMS_sign
 * adds OpenSSL's default list unless told CMS_NOSMIMECAP). */
gboolean
kms_capabilities_add_to_signer(CMS_SignerInfo *si, const char *const *names,
    GError **err)
{
	X509_ALGORS *algs = sk_X509_ALGOR_new_null();
	unsigned char *der = NULL;
	gboolean ok = FALSE;
	X509_ALGOR *a;
	int len, idx;

	if (algs == NULL) {
		ossl_error(err, "SMIMECapabilities");
		return FALSE;
	}
	for (size_t i = 0; names && names[i]; i++) {
		if (i >= KMS_CAPABILITIES_MAX) {
			g_set_error(err, KMS_CAPABILITIES_ERROR,
			    KMS_CAPABILITIES_ERROR_FAILED,
			    "more than %d capabilities", KMS_CAPABILITIES_MAX);
			goto out;
		}
		if ((a = capability_algor(names[i], err)) == NULL)
			goto out;
		if (!sk_X509_ALGOR_push(algs, a)) {
			X509_ALGOR_free(a);
			ossl_error(err, "SMIMECapabilities");
			goto out;
		}
	}
	if ((len = i2d_X509_ALGORS(algs, &der)) <= 0) {
		ossl_error(err, "SMIMECapabilities encoding");
		goto out;
	}
	while ((idx = CMS_signed_get_attr_by_NID(si, NID_SMIMECapabilities,
	    -1)) >= 0)
		X509_ATTRIBUTE_free(CMS_signed_delete_attr(si, idx));
	if (!CMS_signed_add1_attr_by_NID(si, NID_SMIMECapabilities,
	    V_ASN1_SEQUENCE, der, len)) {
		ossl_error(err, "SMIMECapabilities attribute");
		goto out;
	}
	ok = TRUE;
out:
	OPENSSL_free(der);
	sk_X509_ALGOR_pop_free(algs, X509_ALGOR_free);
	return ok;
}
