/*
 * NAME
 *	cmsverify - verify one CMS SignedData for harvest (see cmsverify.h)
 * DESCRIPTION
 *	The content is digested once (CMS_dataInit) and each signer is then
 *	checked on its own with CMS_SignerInfo_verify (signed attributes)
 *	and CMS_SignerInfo_verify_content (message digest), so that one bad
 *	signer does not hide a good one. Only a signer whose signature holds
 *	has its chain built, against the caller's trust store, with the
 *	CMS's certificates as untrusted intermediates and the S/MIME signing
 *	purpose.
 * SECURITY
 *	Everything read here comes from hostile mail: attribute values are
 *	parsed with bounds, addresses are accepted only as printable ASCII,
 *	and no message text reaches a problem line. The system's default
 *	trust paths are never consulted: the caller's store decides.
 * DIAGNOSTICS
 *	Problem lines ("part 1: signer 2: certificate not in the message");
 *	a signer's detail says why its signature or chain failed.
 */
#include "cmsverify.h"
#include "x509util.h"
#include "capabilities.h"

#include <limits.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#define PROBLEMS_MAX	50	/* problem lines kept per message */
#define MS_KEY_PREF_OID	"1.3.6.1.4.1.311.16.4"	/* Microsoft's variant */

/* Append a problem line, up to PROBLEMS_MAX and one line saying so. */
void
kms_harvest_problem(KmsHarvestResult *r, const char *fmt, ...)
{
	va_list ap;

	if (r->problems->len > PROBLEMS_MAX)
		return;
	if (r->problems->len == PROBLEMS_MAX) {
		g_ptr_array_add(r->problems, g_strdup("too many problems: "
		    "rest not reported"));
		return;
	}
	va_start(ap, fmt);
	g_ptr_array_add(r->problems, g_strdup_vprintf(fmt, ap));
	va_end(ap);
}

/* Free one KmsHarvestSigner and what it owns. */
void
kms_harvest_signer_free(gpointer p)
{
	KmsHarvestSigner *s = p;

	if (s == NULL)
		return;
	g_free(s->detail);
	X509_free(s->cert);
	X509_free(s->key_preference);
	if (s->addresses)
		g_ptr_array_unref(s->addresses);
	if (s->capabilities)
		g_ptr_array_unref(s->capabilities);
	g_free(s);
}

/* Prepare the per-message state; an absent trust store becomes an empty
 * one so that nothing is trusted. */
gboolean
kms_cms_harvest_init(KmsCmsHarvest *h, const KmsHarvestOptions *o,
    KmsHarvestResult *r)
{
	memset(h, 0, sizeof(*h));
	h->opts = o;
	h->result = r;
	h->seen = g_hash_table_new_full(g_bytes_hash, g_bytes_equal,
	    (GDestroyNotify) g_bytes_unref, NULL);
	if ((h->store = o->trust) == NULL) {
		if ((h->store = X509_STORE_new()) == NULL) {
			ERR_clear_error();
			kms_harvest_problem(r, "out of memory for a trust "
			    "store");
			return FALSE;
		}
		h->own_store = TRUE;
	}
	return TRUE;
}

/* Release what kms_cms_harvest_init made. */
void
kms_cms_harvest_clear(KmsCmsHarvest *h)
{
	if (h->own_store)
		X509_STORE_free(h->store);
	if (h->seen)
		g_hash_table_unref(h->seen);
	memset(h, 0, sizeof(*h));
}

/* DER of CERT as GBytes, NULL when it cannot be encoded. */
static GBytes *
cert_der(X509 *cert)
{
	unsigned char *der = NULL;
	GBytes *b;
	int len = i2d_X509(cert, &der);

	if (len <= 0) {
		ERR_clear_error();
		return NULL;
	}
	b = g_bytes_new(der, (gsize) len);
	OPENSSL_free(der);
	return b;
}

/* Add CERTS to the result, skipping DER duplicates. */
static void
add_certs(KmsCmsHarvest *h, STACK_OF(X509) *certs)
{
	for (int i = 0; i < sk_X509_num(certs); i++) {
		X509 *x = sk_X509_value(certs, i);
		GBytes *der = cert_der(x);

		if (der == NULL || g_hash_table_contains(h->seen, der)) {
			if (der)
				g_bytes_unref(der);
			continue;
		}
		if (!X509_up_ref(x)) {
			g_bytes_unref(der);
			continue;
		}
		if (!sk_X509_push(h->result->certs, x)) {
			X509_free(x);
			g_bytes_unref(der);
			ERR_clear_error();
			continue;
		}
		g_hash_table_add(h->seen, der);
	}
}

/* The signingTime signed attribute in seconds since the epoch, -1 when
 * absent or unreadable. */
static gint64
signing_time(CMS_SignerInfo *si)
{
	int idx = CMS_signed_get_attr_by_NID(si, NID_pkcs9_signingTime, -1);
	X509_ATTRIBUTE *attr;
	ASN1_TYPE *t;
	GDateTime *dt;
	struct tm tm;
	gint64 when = -1;

	if (idx < 0 || (attr = CMS_signed_get_attr(si, idx)) == NULL ||
	    (t = X509_ATTRIBUTE_get0_type(attr, 0)) == NULL ||
	    (t->type != V_ASN1_UTCTIME && t->type != V_ASN1_GENERALIZEDTIME) ||
	    ASN1_TIME_to_tm((const ASN1_TIME *) t->value.asn1_string,
	    &tm) != 1) {
		ERR_clear_error();
		return -1;
	}
	dt = g_date_time_new_utc(tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
	    tm.tm_hour, tm.tm_min, tm.tm_sec);
	if (dt) {
		when = g_date_time_to_unix(dt);
		g_date_time_unref(dt);
	}
	return when < 0 ? -1 : when;
}

/* Certificate among CERTS with ISSUER and SERIAL. */
static X509 *
find_issuer_serial(STACK_OF(X509) *certs, const X509_NAME *issuer,
    const ASN1_INTEGER *serial)
{
	for (int i = 0; i < sk_X509_num(certs); i++) {
		X509 *x = sk_X509_value(certs, i);

		if (X509_NAME_cmp(X509_get_issuer_name(x), issuer) == 0 &&
		    ASN1_INTEGER_cmp(X509_get0_serialNumber(x), serial) == 0)
			return x;
	}
	return NULL;
}

/* Certificate among CERTS whose subject key identifier is ID/LEN. */
static X509 *
find_key_id(STACK_OF(X509) *certs, const unsigned char *id, long len)
{
	for (int i = 0; i < sk_X509_num(certs); i++) {
		X509 *x = sk_X509_value(certs, i);
		const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(x);

		if (ski && ASN1_STRING_length(ski) == len &&
		    memcmp(ASN1_STRING_get0_data(ski), id, (size_t) len) == 0)
			return x;
	}
	return NULL;
}

/*
 * Certificate named by the IssuerAndSerialNumber fields (issuer Name,
 * serial INTEGER) in P/LEN: the contents of an IMPLICIT [0] or of the
 * SEQUENCE. Some encoders wrap the SEQUENCE once more (EXPLICIT), so when
 * UNWRAP a single SEQUENCE holding both is accepted too (once only: the
 * input is hostile and must not drive recursion).
 */
static X509 *
find_by_issuer_serial(STACK_OF(X509) *certs, const unsigned char *p, long len,
    gboolean unwrap)
{
	const unsigned char *q = p, *end = p + len;
	X509_NAME *issuer;
	ASN1_INTEGER *serial = NULL;
	X509 *found = NULL;
	gboolean named;
	long inner;
	int tag, xclass, rc;

	named = (issuer = d2i_X509_NAME(NULL, &q, end - q)) != NULL;
	if (named &&
	    (serial = d2i_ASN1_INTEGER(NULL, &q, end - q)) != NULL && q == end)
		found = find_issuer_serial(certs, issuer, serial);
	X509_NAME_free(issuer);
	ASN1_INTEGER_free(serial);
	if (!named && unwrap) {
		q = p;
		rc = ASN1_get_object(&q, &inner, &tag, &xclass, len);
		if (rc == V_ASN1_CONSTRUCTED && xclass == V_ASN1_UNIVERSAL &&
		    tag == V_ASN1_SEQUENCE && q + inner == end && inner < len)
			found = find_by_issuer_serial(certs, q, inner, FALSE);
	}
	ERR_clear_error();
	return found;
}

/*
 * Resolve an SMIMEEncryptionKeyPreference value DER/LEN (RFC 8551 2.5.3,
 * IMPLICIT tags) or, when MS, Microsoft's plain IssuerAndSerialNumber, to
 * one of CERTS; NULL when unreadable or not there.
 */
static X509 *
key_preference_cert(STACK_OF(X509) *certs, const unsigned char *der,
    long len, gboolean ms)
{
	const unsigned char *p = der, *q;
	long clen, ilen;
	int tag, xclass, rc, itag, iclass;

	rc = ASN1_get_object(&p, &clen, &tag, &xclass, len);
	if ((rc & 0x80) || rc == (V_ASN1_CONSTRUCTED | 1) ||
	    clen > len - (p - der))
		return NULL;
	if (ms)
		return rc == V_ASN1_CONSTRUCTED && xclass == V_ASN1_UNIVERSAL &&
		    tag == V_ASN1_SEQUENCE ?
		    find_by_issuer_serial(certs, p, clen, TRUE) : NULL;
	if (xclass != V_ASN1_CONTEXT_SPECIFIC)
		return NULL;
	switch (tag) {
	case 0:		/* issuerAndSerialNumber */
		return rc == V_ASN1_CONSTRUCTED ?
		    find_by_issuer_serial(certs, p, clen, TRUE) : NULL;
	case 1:		/* receipentKeyId: its subjectKeyIdentifier */
		q = p;
		if (rc != V_ASN1_CONSTRUCTED)
			return NULL;
		rc = ASN1_get_object(&q, &ilen, &itag, &iclass, clen);
		if (rc != 0 || iclass != V_ASN1_UNIVERSAL ||
		    itag != V_ASN1_OCTET_STRING || ilen > clen - (q - p))
			return NULL;
		return find_key_id(certs, q, ilen);
	case 2:		/* subjectAltKeyIdentifier */
		return rc == 0 ? find_key_id(certs, p, clen) : NULL;
	default:
		return NULL;
	}
}

/* The certificate SI prefers for encryption (up-referenced), NULL when it
 * names none; a problem line when it names one not in CERTS. */
static X509 *
key_preference(KmsCmsHarvest *h, CMS_SignerInfo *si, STACK_OF(X509) *certs,
    const char *where, int n)
{
	ASN1_OBJECT *ms_oid = OBJ_txt2obj(MS_KEY_PREF_OID, 1);
	gboolean ms = FALSE;
	X509_ATTRIBUTE *attr;
	unsigned char *der = NULL;
	ASN1_TYPE *t;
	X509 *cert = NULL;
	int idx, len;

	idx = CMS_signed_get_attr_by_NID(si, NID_id_smime_aa_encrypKeyPref, -1);
	if (idx < 0 && ms_oid != NULL &&
	    (idx = CMS_signed_get_attr_by_OBJ(si, ms_oid, -1)) >= 0)
		ms = TRUE;
	ASN1_OBJECT_free(ms_oid);
	if (idx < 0) {
		ERR_clear_error();
		return NULL;
	}
	if ((attr = CMS_signed_get_attr(si, idx)) != NULL &&
	    (t = X509_ATTRIBUTE_get0_type(attr, 0)) != NULL &&
	    (len = i2d_ASN1_TYPE(t, &der)) > 0)
		cert = key_preference_cert(certs, der, len, ms);
	OPENSSL_free(der);
	ERR_clear_error();
	if (cert == NULL) {
		kms_harvest_problem(h->result, "%s: signer %d: encryption key "
		    "preference names no certificate in the message", where, n);
		return NULL;
	}
	X509_up_ref(cert);
	return cert;
}

/* Chain status of CERT against the trust store; *DETAIL gets OpenSSL's
 * reason when it is not trusted. */
static KmsSignerStatus
chain_status(KmsCmsHarvest *h, X509 *cert, STACK_OF(X509) *certs,
    char **detail)
{
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	KmsSignerStatus status = KMS_SIGNER_UNTRUSTED_CHAIN;
	int e;

	if (ctx == NULL || !X509_STORE_CTX_init(ctx, h->store, cert, certs)) {
		*detail = g_strdup("cannot set up chain verification");
		goto out;
	}
	X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SMIME_SIGN);
	if (h->opts->now != 0)
		X509_STORE_CTX_set_time(ctx, 0, h->opts->now);
	if (X509_verify_cert(ctx) == 1) {
		status = KMS_SIGNER_TRUSTED;
		goto out;
	}
	e = X509_STORE_CTX_get_error(ctx);
	if (e == X509_V_ERR_CERT_HAS_EXPIRED &&
	    X509_STORE_CTX_get_error_depth(ctx) == 0)
		status = KMS_SIGNER_EXPIRED;
	*detail = g_strdup(X509_verify_cert_error_string(e));
out:
	X509_STORE_CTX_free(ctx);
	ERR_clear_error();
	return status;
}

/* Does SI's signature hold over the content digested by CHAIN? */
static gboolean
signature_ok(CMS_SignerInfo *si, BIO *chain, char **detail)
{
	unsigned long e;
	const char *reason;

	if (chain != NULL &&
	    (CMS_signed_get_attr_count(si) < 0 ||
	    CMS_SignerInfo_verify(si) == 1) &&
	    CMS_SignerInfo_verify_content(si, chain) == 1) {
		ERR_clear_error();
		return TRUE;
	}
	e = ERR_peek_last_error();
	reason = e ? ERR_reason_error_string(e) : NULL;
	*detail = g_strdup_printf("signature does not verify%s%s",
	    reason ? ": " : "", reason ? reason : "");
	ERR_clear_error();
	return FALSE;
}

/* Certificate among CERTS that SI names as its signer. */
static X509 *
signer_cert(CMS_SignerInfo *si, STACK_OF(X509) *certs)
{
	for (int i = 0; i < sk_X509_num(certs); i++)
		if (CMS_SignerInfo_cert_cmp(si, sk_X509_value(certs, i)) == 0)
			return sk_X509_value(certs, i);
	return NULL;
}

/* Check signer N (SI) and add it to the result; TRUE when its signature
 * verified (whatever its chain). */
static gboolean
harvest_signer(KmsCmsHarvest *h, CMS_SignerInfo *si, STACK_OF(X509) *certs,
    BIO *chain, const char *where, int n)
{
	KmsHarvestSigner *s;
	X509 *cert = signer_cert(si, certs);
	GPtrArray *caps;

	if (cert == NULL) {
		ERR_clear_error();
		kms_harvest_problem(h->result, "%s: signer %d: certificate not "
		    "in the message", where, n);
		return FALSE;
	}
	s = g_new0(KmsHarvestSigner, 1);
	X509_up_ref(cert);
	s->cert = cert;
	CMS_SignerInfo_set1_signer_cert(si, cert);
	if (signature_ok(si, chain, &s->detail))
		s->status = chain_status(h, cert, certs, &s->detail);
	else
		s->status = KMS_SIGNER_BAD_SIGNATURE;
	s->addresses = kms_x509_email_addresses(cert);
	s->signing_time = signing_time(si);
	caps = kms_capabilities_from_signer(si);
	s->has_capabilities = caps != NULL;
	s->capabilities = caps ? caps : g_ptr_array_new_with_free_func(g_free);
	s->key_preference = key_preference(h, si, certs, where, n);
	g_ptr_array_add(h->result->signers, s);
	return s->status != KMS_SIGNER_BAD_SIGNATURE;
}

/* Digest the content (CONTENT, or the encapsulated one when NULL) through
 * the CMS's digest BIOs; the chain is freed with BIO_free_all. NULL when
 * the CMS cannot be digested (unknown digest, no content). */
static BIO *
digest_content(CMS_ContentInfo *cms, GBytes *content)
{
	char buf[4096];
	BIO *in = NULL, *chain;
	const void *data;
	gsize len = 0;

	if (content != NULL) {
		data = g_bytes_get_data(content, &len);
		if (len > INT_MAX ||
		    (in = BIO_new_mem_buf(len ? data : "", (int) len)) == NULL)
			return NULL;
	}
	if ((chain = CMS_dataInit(cms, in)) == NULL) {
		BIO_free(in);
		return NULL;
	}
	while (BIO_read(chain, buf, sizeof(buf)) > 0)
		;
	return chain;
}

/* Verify every signer (up to the limit) of a SignedData. */
void
kms_cms_harvest(KmsCmsHarvest *h, CMS_ContentInfo *cms, GBytes *content,
    GBytes **econtent, const char *where)
{
	STACK_OF(CMS_SignerInfo) *sis;
	STACK_OF(X509) *certs = NULL;
	ASN1_OCTET_STRING **pos;
	BIO *chain = NULL;
	int n, verified = 0;

	if (OBJ_obj2nid(CMS_get0_type(cms)) != NID_pkcs7_signed) {
		kms_harvest_problem(h->result, "%s: CMS is not signed-data",
		    where);
		return;
	}
	pos = CMS_get0_content(cms);
	if (content == NULL && (pos == NULL || *pos == NULL)) {
		kms_harvest_problem(h->result, "%s: signed-data carries no "
		    "content", where);
		ERR_clear_error();
		return;
	}
	if (econtent != NULL && content == NULL &&
	    OBJ_obj2nid(CMS_get0_eContentType(cms)) == NID_pkcs7_data)
		*econtent = g_bytes_new(ASN1_STRING_get0_data(*pos),
		    (gsize) ASN1_STRING_length(*pos));
	sis = CMS_get0_SignerInfos(cms);
	if ((n = sk_CMS_SignerInfo_num(sis)) <= 0) {
		kms_harvest_problem(h->result, "%s: signed-data without "
		    "signers", where);
		ERR_clear_error();
		return;
	}
	certs = CMS_get1_certs(cms);
	if ((chain = digest_content(cms, content)) == NULL)
		kms_harvest_problem(h->result, "%s: content cannot be digested",
		    where);
	ERR_clear_error();
	for (int i = 0; i < n && (guint) i < h->opts->max_signers; i++)
		verified += harvest_signer(h, sk_CMS_SignerInfo_value(sis, i),
		    certs, chain, where, i + 1);
	if ((guint) n > h->opts->max_signers)
		kms_harvest_problem(h->result, "%s: %d signers: only the first "
		    "%u examined", where, n, h->opts->max_signers);
	if (verified > 0)
		add_certs(h, certs);
	BIO_free_all(chain);
	sk_X509_pop_free(certs, X509_free);
	ERR_clear_error();
}
