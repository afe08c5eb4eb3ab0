/*
 * NAME
 *	ca - keys, the internal certification authority, S/MIME certificates
 *	(see ca.h)
 * DESCRIPTION
 *	Extensions whose value is fixed text go through OpenSSL's X509V3
 *	configuration parser; those carrying caller data (addresses, URLs,
 *	key identifiers) are built as ASN.1 objects so that no character in
 *	an address or URL can be read as configuration syntax.
 * SECURITY
 *	Private keys are only handed to OpenSSL's signing and comparison
 *	functions; nothing here prints, copies or logs them. Error messages
 *	carry subjects, OpenSSL reason strings and caller-supplied public
 *	values (names, addresses) only.
 * DIAGNOSTICS
 *	GError in KMS_CA_ERROR, one line each.
 */
#include "ca.h"
#include "x509util.h"

#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

G_DEFINE_QUARK(kms-ca-error-quark, kms_ca_error)

#define SERIAL_BYTES	16	/* 128 bits, top bit cleared: 127 random */
#define CLOCK_SKEW	(5 * 60)	/* notBefore this many seconds ago */
#define CN_MAX		64	/* ub-common-name, RFC 5280 */

static const struct {
	const char *name;
	KmsKeyType type;
	int rsa_bits;			/* 0: EC P-256 */
} key_types[] = {
	{"rsa2048", KMS_KEY_RSA2048, 2048},
	{"rsa3072", KMS_KEY_RSA3072, 3072},
	{"rsa4096", KMS_KEY_RSA4096, 4096},
	{"p256", KMS_KEY_P256, 0},
};

/* Attribute types kms_name_parse accepts, by NID (spelt as OpenSSL does). */
static const int name_nids[] = {
	NID_commonName, NID_organizationName, NID_organizationalUnitName,
	NID_countryName, NID_localityName, NID_stateOrProvinceName,
	NID_streetAddress, NID_postalCode, NID_domainComponent,
	NID_serialNumber, NID_title, NID_givenName, NID_surname,
	NID_pseudonym, NID_userId, NID_pkcs9_emailAddress,
	NID_organizationIdentifier,
};

/* Set *err from OpenSSL's latest error after WHAT, and clear the queue. */
static void
ossl_error(GError **err, KmsCaError code, const char *what)
{
	unsigned long e = ERR_peek_last_error();
	const char *reason = e ? ERR_reason_error_string(e) : NULL;

	g_set_error(err, KMS_CA_ERROR, code, "%s: %s", what,
	    reason ? reason : "unknown OpenSSL error");
	ERR_clear_error();
}

/* Text form of a certificate's subject for messages; g_free. */
static char *
subject_text(X509 *cert)
{
	return kms_x509_name_text(X509_get_subject_name(cert));
}

/* Map a key type name to its enum value. */
gboolean
kms_key_type_parse(const char *name, KmsKeyType *out)
{
	for (size_t i = 0; name && i < G_N_ELEMENTS(key_types); i++)
		if (g_ascii_strcasecmp(name, key_types[i].name) == 0) {
			*out = key_types[i].type;
			return TRUE;
		}
	return FALSE;
}

/* Map a key type to its name; a static string, "unknown" when out of range. */
const char *
kms_key_type_name(KmsKeyType t)
{
	for (size_t i = 0; i < G_N_ELEMENTS(key_types); i++)
		if (key_types[i].type == t)
			return key_types[i].name;
	return "unknown";
}

/* Generate a key pair from the OS-seeded OpenSSL DRBG. */
EVP_PKEY *
kms_key_generate(KmsKeyType t, GError **err)
{
	EVP_PKEY *key = NULL;

	for (size_t i = 0; i < G_N_ELEMENTS(key_types); i++) {
		if (key_types[i].type != t)
			continue;
		if (key_types[i].rsa_bits)
			key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA",
			    (size_t) key_types[i].rsa_bits);
		else
			key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
		if (key == NULL)
			ossl_error(err, KMS_CA_ERROR_FAILED, "key generation");
		return key;
	}
	g_set_error(err, KMS_CA_ERROR, KMS_CA_ERROR_INVALID,
	    "unknown key type %d", (int) t);
	return NULL;
}

/*
 * Split DN at unescaped SEP into newly allocated, trimmed components that
 * keep their escapes (a GPtrArray owning its strings). A backslash quotes
 * the next character. NULL with *err on a dangling backslash.
 */
static GPtrArray *
name_split(const char *dn, char sep, GError **err)
{
	GPtrArray *parts = g_ptr_array_new_with_free_func(g_free);
	GString *cur = g_string_new(NULL);
	const char *p;

	for (p = dn; ; p++) {
		if (*p == '\\') {
			if (p[1] == '\0') {
				g_set_error(err, KMS_CA_ERROR,
				    KMS_CA_ERROR_INVALID,
				    "\"%s\": backslash at the end", dn);
				g_string_free(cur, TRUE);
				g_ptr_array_unref(parts);
				return NULL;
			}
			/* Keep the escape so '=' inside a value stays data. */
			g_string_append_c(cur, *p++);
			g_string_append_c(cur, *p);
		} else if (*p == sep || *p == '\0') {
			g_ptr_array_add(parts, g_strstrip(g_string_free(cur,
			    FALSE)));
			if (*p == '\0')
				break;
			cur = g_string_new(NULL);
		} else {
			g_string_append_c(cur, *p);
		}
	}
	return parts;
}

/* Remove backslash escapes from S in place; FALSE if one quotes nothing
 * (an escaped trailing space that trimming took away). */
static gboolean
name_unescape(char *s)
{
	char *w = s;

	for (; *s; s++) {
		if (*s == '\\' && *++s == '\0')
			return FALSE;
		*w++ = *s;
	}
	*w = '\0';
	return TRUE;
}

/* NID of the attribute type TYPE if kms_name_parse accepts it. */
static int
name_nid(const char *type)
{
	int nid = OBJ_txt2nid(type);

	ERR_clear_error();
	for (size_t i = 0; nid != NID_undef && i < G_N_ELEMENTS(name_nids); i++)
		if (name_nids[i] == nid)
			return nid;
	return NID_undef;
}

/* Add one "TYPE=value" component (still escaped) to NAME. */
static gboolean
name_add(X509_NAME *name, const char *dn, char *part, GError **err)
{
	char *eq = part;
	int nid;

	/* The first unescaped '=' separates type and value. */
	while (*eq && *eq != '=')
		eq += (*eq == '\\' && eq[1]) ? 2 : 1;
	if (*part == '\0' || *eq != '=') {
		g_set_error(err, KMS_CA_ERROR, KMS_CA_ERROR_INVALID,
		    "\"%s\": component \"%s\" is not TYPE=value", dn, part);
		return FALSE;
	}
	*eq = '\0';
	g_strstrip(part);
	if ((nid = name_nid(part)) == NID_undef) {
		g_set_error(err, KMS_CA_ERROR, KMS_CA_ERROR_INVALID,
		    "\"%s\": unknown attribute type \"%s\" (use CN, O, OU, C, "
		    "L, ST, street, postalCode, DC, serialNumber, title, GN, "
		    "SN, pseudonym, UID, emailAddress, organizationIdentifier)",
		    dn, part);
		return FALSE;
	}
	eq = g_strstrip(eq + 1);
	if (!name_unescape(eq)) {
		g_set_error(err, KMS_CA_ERROR, KMS_CA_ERROR_INVALID,
		    "\"%s\": value of %s ends in a backslash", dn, part);
		return FALSE;
	}
	if (*eq == '\0') {
		g_set_error(err, KMS_CA_ERROR, KMS_CA_ERROR_INVALID,
		    "\"%s\": empty value for %s", dn, part);
		return FALSE;
	}
	if (!X509_NAME_add_entry_by_NID(name, nid, MBSTRING_UTF8,
	    (const unsigned char *) eq, -1, -1, 0)) {
		g_autofree char *what = g_strdup_printf("\"%s\": %s", dn, part);

		ossl_error(err, KMS_CA_ERROR_INVALID, what);
		return FALSE;
	}
	return TRUE;
}

/*
 * Parse a distinguished name. The comma form is read as RFC 4514 text,
 * most specific attribute first, so that kms_x509_name_text() gives it
 * back; the slash form is OpenSSL's -subj order, most general first.
 */
X509_NAME *
kms_name_parse(const char *dn, GError **err)
{
	gboolean slash;
	GPtrArray *parts;
	X509_NAME *name;

	if (dn == NULL || *(dn += strspn(dn, " \t")) == '\0') {
		g_set_error(err, KMS_CA_ERROR, KMS_CA_ERROR_INVALID,
		    "empty distinguished name");
		return NULL;
	}
	if (!g_utf8_validate(dn, -1, NULL)) {
		g_set_error(err, KMS_CA_ERROR, KMS_CA_ERROR_INVALID,
		    "distinguished name is not UTF-8");
		return NULL;
	}
	slash = (*dn == '/');
	if ((parts = name_split(slash ? dn + 1 : dn, slash ? '/' : ',',
	    err)) == NULL)
		return NULL;
	if ((name = X509_NAME_new()) == NULL) {
		ossl_error(err, KMS_CA_ERROR_FAILED, "X509_NAME_new");
		g_ptr_array_unref(parts);
		return NULL;
	}
	for (guint i = 0; i < parts->len; i++) {
		guint k = slash ? i : parts->len - 1 - i;

		if (!name_add(name, dn, g_ptr_array_index(parts, k), err)) {
			X509_NAME_free(name);
			name = NULL;
			break;
		}
	}
	g_ptr_array_unref(parts);
	return name;
}

/* Give CERT a positive serial number of 127 random bits, at least 64 long. */
static gboolean
set_random_serial(X509 *cert, GError **err)
{
	unsigned char buf[SERIAL_BYTES];
	BIGNUM *bn = NULL;
	gboolean ok = FALSE;

	do {
		if (RAND_bytes(buf, sizeof(buf)) != 1) {
			ossl_error(err, KMS_CA_ERROR_FAILED, "RAND_bytes");
			goto out;
		}
		buf[0] &= 0x7f;
		if ((bn = BN_bin2bn(buf, sizeof(buf), bn)) == NULL) {
			ossl_error(err, KMS_CA_ERROR_FAILED, "BN_bin2bn");
			goto out;
		}
	} while (BN_num_bits(bn) < 64);
	if (BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) == NULL)
		ossl_error(err, KMS_CA_ERROR_FAILED, "serial number");
	else
		ok = TRUE;
out:
	OPENSSL_cleanse(buf, sizeof(buf));
	BN_free(bn);
	return ok;
}

/* Add an extension whose value is fixed configuration text. */
static gboolean
add_conf_ext(X509 *cert, X509_REQ *req, STACK_OF(X509_EXTENSION) **sk,
    int nid, const char *value, GError **err)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	gboolean ok;

	X509V3_set_ctx(&ctx, NULL, cert, req, NULL, 0);
	if ((ext = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value)) == NULL) {
		ossl_error(err, KMS_CA_ERROR_FAILED, OBJ_nid2sn(nid));
		return FALSE;
	}
	ok = cert ? X509_add_ext(cert, ext, -1) :
	    X509v3_add_ext(sk, ext, -1) != NULL;
	X509_EXTENSION_free(ext);
	if (!ok)
		ossl_error(err, KMS_CA_ERROR_FAILED, OBJ_nid2sn(nid));
	return ok;
}

/* Add the i2d-encodable extension object VALUE to CERT. */
static gboolean
add_obj_ext(X509 *cert, int nid, void *value, int crit, GError **err)
{
	if (X509_add1_ext_i2d(cert, nid, value, crit,
	    X509V3_ADD_DEFAULT) != 1) {
		ossl_error(err, KMS_CA_ERROR_FAILED, OBJ_nid2sn(nid));
		return FALSE;
	}
	return TRUE;
}

/* SHA-1 of CERT's public key (RFC 5280 4.2.1.2 method 1); caller frees.
 * Used for a certificate under construction, whose extension cache must
 * not be filled before it is complete. */
static ASN1_OCTET_STRING *
key_digest_id(X509 *cert, GError **err)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len;
	ASN1_OCTET_STRING *id = NULL;

	if (X509_pubkey_digest(cert, EVP_sha1(), md, &len) != 1 ||
	    (id = ASN1_OCTET_STRING_new()) == NULL ||
	    !ASN1_OCTET_STRING_set(id, md, (int) len)) {
		ASN1_OCTET_STRING_free(id);
		ossl_error(err, KMS_CA_ERROR_FAILED, "key identifier");
		return NULL;
	}
	return id;
}

/* Add SKI (CERT's own key) and AKI (ISSUER's subject key identifier, or
 * its key digest when it has none) to CERT; ISSUER == CERT for a root. */
static gboolean
add_key_ids(X509 *cert, X509 *issuer, GError **err)
{
	const ASN1_OCTET_STRING *iski;
	ASN1_OCTET_STRING *ski;
	AUTHORITY_KEYID *akid = NULL;
	gboolean ok = FALSE;

	if ((ski = key_digest_id(cert, err)) == NULL ||
	    !add_obj_ext(cert, NID_subject_key_identifier, ski, 0, err))
		goto out;
	if ((akid = AUTHORITY_KEYID_new()) == NULL) {
		ossl_error(err, KMS_CA_ERROR_FAILED, "AUTHORITY_KEYID_new");
		goto out;
	}
	if (issuer == cert)
		akid->keyid = ASN1_OCTET_STRING_dup(ski);
	else if ((iski = X509_get0_subject_key_id(issuer)) != NULL)
		akid->keyid = ASN1_OCTET_STRING_dup(iski);
	else if ((akid->keyid = key_digest_id(issuer, err)) == NULL)
		goto out;
	if (akid->keyid == NULL) {
		ossl_error(err, KMS_CA_ERROR_FAILED, "key identifier");
		goto out;
	}
	ok = add_obj_ext(cert, NID_authority_key_identifier, akid, 0, err);
out:
	ASN1_OCTET_STRING_free(ski);
	AUTHORITY_KEYID_free(akid);
	return ok;
}

/* New v3 certificate for KEY's public half with a random serial; DAYS
 * from now, back-dated for clock skew. Caller frees. */
static X509 *
new_cert(EVP_PKEY *key, int days, GError **err)
{
	X509 *cert;

	if (days <= 0) {
		g_set_error(err, KMS_CA_ERROR, KMS_CA_ERROR_INVALID,
		    "validity of %d days: must be positive", days);
		return NULL;
	}
	if ((cert = X509_new()) == NULL) {
		ossl_error(err, KMS_CA_ERROR_FAILED, "X509_new");
		return NULL;
	}
	if (!X509_set_version(cert, X509_VERSION_3) ||
	    !X509_set_pubkey(cert, key) ||
	    X509_gmtime_adj(X509_getm_notBefore(cert), -CLOCK_SKEW) == NULL ||
	    X509_time_adj_ex(X509_getm_notAfter(cert), days, 0, NULL) == NULL) {
		ossl_error(err, KMS_CA_ERROR_FAILED, "certificate fields");
		X509_free(cert);
		return NULL;
	}
	if (!set_random_serial(cert, err)) {
		X509_free(cert);
		return NULL;
	}
	return cert;
}

/* Make a self-signed root CA certificate. */
X509 *
kms_ca_make_root(EVP_PKEY *key, const char *subject, int days, GError **err)
{
	X509_NAME *name;
	X509 *cert;

	if ((name = kms_name_parse(subject, err)) == NULL)
		return NULL;
	if ((cert = new_cert(key, days, err)) == NULL) {
		X509_NAME_free(name);
		return NULL;
	}
	if (!X509_set_subject_name(cert, name) ||
	    !X509_set_issuer_name(cert, name)) {
		ossl_error(err, KMS_CA_ERROR_FAILED, "root subject");
		goto fail;
	}
	if (!add_conf_ext(cert, NULL, NULL, NID_basic_constraints,
	    "critical,CA:TRUE", err) ||
	    !add_conf_ext(cert, NULL, NULL, NID_key_usage,
	    "critical,keyCertSign,cRLSign", err) ||
	    !add_key_ids(cert, cert, err))
		goto fail;
	if (X509_sign(cert, key, EVP_sha256()) <= 0) {
		ossl_error(err, KMS_CA_ERROR_FAILED, "signing the root");
		goto fail;
	}
	X509_NAME_free(name);
	return cert;
fail:
	X509_NAME_free(name);
	X509_free(cert);
	return NULL;
}

/* Make a CSR asking for a subordinate CA certificate. */
X509_REQ *
kms_ca_make_csr(EVP_PKEY *key, const char *subject, GError **err)
{
	STACK_OF(X509_EXTENSION) *exts = NULL;
	X509_NAME *name;
	X509_REQ *req;

	if ((name = kms_name_parse(subject, err)) == NULL)
		return NULL;
	if ((req = X509_REQ_new()) == NULL) {
		ossl_error(err, KMS_CA_ERROR_FAILED, "X509_REQ_new");
		X509_NAME_free(name);
		return NULL;
	}
	if (!X509_REQ_set_version(req, X509_REQ_VERSION_1) ||
	    !X509_REQ_set_subject_name(req, name) ||
	    !X509_REQ_set_pubkey(req, key)) {
		ossl_error(err, KMS_CA_ERROR_FAILED, "request fields");
		goto fail;
	}
	if (!add_conf_ext(NULL, req, &exts, NID_basic_constraints,
	    "critical,CA:TRUE", err) ||
	    !add_conf_ext(NULL, req, &exts, NID_key_usage,
	    "critical,keyCertSign,cRLSign", err))
		goto fail;
	if (!X509_REQ_add_extensions(req, exts)) {
		ossl_error(err, KMS_CA_ERROR_FAILED, "request extensions");
		goto fail;
	}
	if (X509_REQ_sign(req, key, EVP_sha256()) <= 0) {
		ossl_error(err, KMS_CA_ERROR_FAILED, "signing the request");
		goto fail;
	}
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	X509_NAME_free(name);
	return req;
fail:
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	X509_NAME_free(name);
	X509_REQ_free(req);
	return NULL;
}

/* Fail the chain check at link LINK (1-based) naming CERT's subject. */
static gboolean G_GNUC_PRINTF(4, 5)
chain_fail(GError **err, int link, X509 *cert, const char *fmt, ...)
{
	g_autofree char *subj = subject_text(cert);
	g_autofree char *why = NULL;
	va_list ap;

	va_start(ap, fmt);
	why = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	g_set_error(err, KMS_CA_ERROR, KMS_CA_ERROR_CHAIN, "link %d (%s): %s",
	    link, subj, why);
	ERR_clear_error();
	return FALSE;
}

/* Is CERT's issuer its own subject and its signature its own key's? */
static gboolean
self_signed(X509 *cert)
{
	gboolean ok;

	ok = X509_NAME_cmp(X509_get_issuer_name(cert),
	    X509_get_subject_name(cert)) == 0 &&
	    X509_verify(cert, X509_get0_pubkey(cert)) == 1;
	ERR_clear_error();
	return ok;
}

/* Check one certificate of the chain on its own: CA-ness, key strength,
 * signature strength, path length, validity. */
static gboolean
check_link(X509 *cert, int link, gboolean root, int cert_days,
    GError **err)
{
	EVP_PKEY *pub = X509_get0_pubkey(cert);
	const ASN1_TIME *nb = X509_get0_notBefore(cert);
	const ASN1_TIME *na = X509_get0_notAfter(cert);
	uint32_t flags = X509_get_extension_flags(cert);
	time_t need = time(NULL) + (time_t) cert_days * 86400;
	int secbits = 0;
	long pathlen;

	if (flags & EXFLAG_INVALID)
		return chain_fail(err, link, cert, "malformed extensions");
	if (!(flags & EXFLAG_BCONS) || !(flags & EXFLAG_CA))
		return chain_fail(err, link, cert,
		    "not a CA certificate (basicConstraints CA:TRUE missing)");
	if (!(X509_get_key_usage(cert) & KU_KEY_CERT_SIGN))
		return chain_fail(err, link, cert,
		    "key usage does not allow keyCertSign");
	/* Link 1 signs our CRLs: relying parties check cRLSign. */
	if (link == 1 && !(X509_get_key_usage(cert) & KU_CRL_SIGN))
		return chain_fail(err, link, cert,
		    "key usage does not allow cRLSign");
	if (pub == NULL)
		return chain_fail(err, link, cert, "unusable public key");
	if (EVP_PKEY_get_security_bits(pub) < 112)	/* RSA < 2048, EC < 224 */
		return chain_fail(err, link, cert,
		    "%s key of %d bits is too weak (112-bit security needed)",
		    EVP_PKEY_get0_type_name(pub), EVP_PKEY_get_bits(pub));
	/* A root's self-signature is not what makes it trusted. */
	if (!root && (!X509_get_signature_info(cert, NULL, NULL, &secbits,
	    NULL) || secbits < 112))
		return chain_fail(err, link, cert,
		    "signature algorithm %s is too weak",
		    OBJ_nid2ln(X509_get_signature_nid(cert)));
	pathlen = X509_get_pathlen(cert);
	if (pathlen >= 0 && pathlen < link - 1)
		return chain_fail(err, link, cert,
		    "path length constraint %ld allows fewer than the %d CA "
		    "certificates below it", pathlen, link - 1);
	if (X509_cmp_current_time(nb) > 0) {
		g_autofree char *t = kms_asn1_time_iso8601(nb);

		return chain_fail(err, link, cert, "not valid before %s",
		    t ? t : "(bad time)");
	}
	if (X509_cmp_current_time(na) <= 0) {
		g_autofree char *t = kms_asn1_time_iso8601(na);

		return chain_fail(err, link, cert, "expired %s",
		    t ? t : "(bad time)");
	}
	if (X509_cmp_time(na, &need) <= 0) {
		g_autofree char *t = kms_asn1_time_iso8601(na);

		return chain_fail(err, link, cert,
		    "expires %s, before the %d days user certificates need",
		    t ? t : "(bad time)", cert_days);
	}
	return TRUE;
}

/* Check a CA certificate and its chain before it is installed for KEY. */
gboolean
kms_ca_check_chain(EVP_PKEY *key, X509 *ca_cert, STACK_OF(X509) *chain,
    int cert_days, GError **err)
{
	int n = 1 + (chain ? sk_X509_num(chain) : 0);

	if (key == NULL || ca_cert == NULL || cert_days < 0) {
		g_set_error(err, KMS_CA_ERROR, KMS_CA_ERROR_INVALID,
		    "chain check: missing key or certificate, or days < 0");
		return FALSE;
	}
	if (EVP_PKEY_eq(X509_get0_pubkey(ca_cert), key) != 1)
		return chain_fail(err, 1, ca_cert,
		    "the certificate's public key is not the CA key");
	for (int i = 0; i < n; i++) {
		X509 *cert = i ? sk_X509_value(chain, i - 1) : ca_cert;
		X509 *next = i + 1 < n ? sk_X509_value(chain, i) : NULL;
		gboolean root = self_signed(cert);

		if (!check_link(cert, i + 1, root, cert_days, err))
			return FALSE;
		if (root && next)
			return chain_fail(err, i + 1, cert,
			    "self-signed root, but %d more certificate(s) "
			    "follow it", n - i - 1);
		if (root)
			return TRUE;
		if (next == NULL) {
			g_autofree char *iss = kms_x509_name_text(
			    X509_get_issuer_name(cert));

			if (X509_NAME_cmp(X509_get_issuer_name(cert),
			    X509_get_subject_name(cert)) == 0)
				return chain_fail(err, i + 1, cert,
				    "self-signature does not verify");
			return chain_fail(err, i + 1, cert,
			    "not self-signed and no certificate of its "
			    "issuer %s follows", iss);
		}
		if (X509_NAME_cmp(X509_get_issuer_name(cert),
		    X509_get_subject_name(next)) != 0) {
			g_autofree char *iss = kms_x509_name_text(
			    X509_get_issuer_name(cert));
			g_autofree char *sub = subject_text(next);

			return chain_fail(err, i + 1, cert,
			    "issuer %s does not match the subject %s of "
			    "link %d", iss, sub, i + 2);
		}
		if (X509_verify(cert, X509_get0_pubkey(next)) != 1) {
			g_autofree char *sub = subject_text(next);

			return chain_fail(err, i + 1, cert,
			    "signature does not verify with the key of %s",
			    sub);
		}
	}
	return FALSE;	/* not reached: the last link always returns */
}

/* Check the caller's issue parameters; *err says which one is wrong. */
static gboolean
check_params(const KmsIssueParams *p, const char *cn, EVP_PKEY *pubkey,
    GError **err)
{
	const char *at;
	int type = pubkey ? EVP_PKEY_get_base_id(pubkey) : EVP_PKEY_NONE;

	if (p->address && !g_utf8_validate(p->address, -1, NULL)) {
		g_set_error(err, KMS_CA_ERROR, KMS_CA_ERROR_INVALID,
		    "mail address is not UTF-8");
		return FALSE;
	}
	if (p->address == NULL || (at = strchr(p->address, '@')) == NULL ||
	    at == p->address || at[1] == '\0' || strchr(at + 1, '@')) {
		g_set_error(err, KMS_CA_ERROR, KMS_CA_ERROR_INVALID,
		    "\"%s\" is not a mail address",
		    p->address ? p->address : "(null)");
		return FALSE;
	}
	/* rfc822Name is an IA5String; SmtpUTF8Mailbox is not supported. */
	for (const char *s = p->address; *s; s++)
		if ((unsigned char) *s <= ' ' || (unsigned char) *s >= 0x7f) {
			g_set_error(err, KMS_CA_ERROR, KMS_CA_ERROR_INVALID,
			    "address \"%s\": only printable ASCII without "
			    "spaces is supported", p->address);
			return FALSE;
		}
	if (!g_utf8_validate(cn, -1, NULL) || *cn == '\0' ||
	    g_utf8_strlen(cn, -1) > CN_MAX) {
		g_set_error(err, KMS_CA_ERROR, KMS_CA_ERROR_INVALID,
		    "common name for %s: must be 1 to %d UTF-8 characters",
		    p->address, CN_MAX);
		return FALSE;
	}
	if (type != EVP_PKEY_RSA && type != EVP_PKEY_EC) {
		g_set_error(err, KMS_CA_ERROR, KMS_CA_ERROR_INVALID,
		    "certificate for %s: only RSA and EC keys are supported",
		    p->address);
		return FALSE;
	}
	if (p->profile != KMS_PROFILE_ENCRYPTION &&
	    p->profile != KMS_PROFILE_SIGNING) {
		g_set_error(err, KMS_CA_ERROR, KMS_CA_ERROR_INVALID,
		    "unknown certificate profile %d", (int) p->profile);
		return FALSE;
	}
	return TRUE;
}

/* Add the subjectAltName rfc822Name ADDRESS to CERT. */
static gboolean
add_san(X509 *cert, const char *address, GError **err)
{
	GENERAL_NAMES *names = sk_GENERAL_NAME_new_null();
	GENERAL_NAME *gn = GENERAL_NAME_new();
	ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
	gboolean ok = FALSE;

	if (names == NULL || gn == NULL || ia5 == NULL ||
	    !ASN1_STRING_set(ia5, address, -1)) {
		ossl_error(err, KMS_CA_ERROR_FAILED, "subjectAltName");
		goto out;
	}
	GENERAL_NAME_set0_value(gn, GEN_EMAIL, ia5);
	ia5 = NULL;
	if (!sk_GENERAL_NAME_push(names, gn)) {
		ossl_error(err, KMS_CA_ERROR_FAILED, "subjectAltName");
		goto out;
	}
	gn = NULL;
	ok = add_obj_ext(cert, NID_subject_alt_name, names, 0, err);
out:
	ASN1_IA5STRING_free(ia5);
	GENERAL_NAME_free(gn);
	GENERAL_NAMES_free(names);
	return ok;
}

/* Add a CRL distribution point with the single URI URL to CERT. */
static gboolean
add_cdp(X509 *cert, const char *url, GError **err)
{
	CRL_DIST_POINTS *cdp = sk_DIST_POINT_new_null();
	DIST_POINT *dp = DIST_POINT_new();
	GENERAL_NAME *gn = GENERAL_NAME_new();
	ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
	gboolean ok = FALSE;

	if (cdp == NULL || dp == NULL || gn == NULL || ia5 == NULL ||
	    !ASN1_STRING_set(ia5, url, -1) ||
	    (dp->distpoint = DIST_POINT_NAME_new()) == NULL ||
	    (dp->distpoint->name.fullname = sk_GENERAL_NAME_new_null())
	    == NULL) {
		ossl_error(err, KMS_CA_ERROR_FAILED, "CRL distribution point");
		goto out;
	}
	dp->distpoint->type = 0;	/* fullName */
	GENERAL_NAME_set0_value(gn, GEN_URI, ia5);
	ia5 = NULL;
	if (!sk_GENERAL_NAME_push(dp->distpoint->name.fullname, gn)) {
		ossl_error(err, KMS_CA_ERROR_FAILED, "CRL distribution point");
		goto out;
	}
	gn = NULL;
	if (!sk_DIST_POINT_push(cdp, dp)) {
		ossl_error(err, KMS_CA_ERROR_FAILED, "CRL distribution point");
		goto out;
	}
	dp = NULL;
	ok = add_obj_ext(cert, NID_crl_distribution_points, cdp, 0, err);
out:
	ASN1_IA5STRING_free(ia5);
	GENERAL_NAME_free(gn);
	DIST_POINT_free(dp);
	CRL_DIST_POINTS_free(cdp);
	return ok;
}

/* Issue an S/MIME certificate by profile. */
X509 *
kms_ca_issue(X509 *ca_cert, EVP_PKEY *ca_key, EVP_PKEY *pubkey,
    const KmsIssueParams *p, GError **err)
{
	const char *cn;
	const char *ku;
	X509 *cert;

	if (ca_cert == NULL || ca_key == NULL || p == NULL) {
		g_set_error(err, KMS_CA_ERROR, KMS_CA_ERROR_INVALID,
		    "issue: missing CA certificate, CA key or parameters");
		return NULL;
	}
	cn = p->common_name ? p->common_name : (p->address ? p->address : "");
	if (!check_params(p, cn, pubkey, err))
		return NULL;
	if (X509_check_private_key(ca_cert, ca_key) != 1) {
		g_autofree char *subj = subject_text(ca_cert);

		ERR_clear_error();
		g_set_error(err, KMS_CA_ERROR, KMS_CA_ERROR_INVALID,
		    "the CA key does not match the CA certificate %s", subj);
		return NULL;
	}
	if (X509_cmp_current_time(X509_get0_notAfter(ca_cert)) <= 0) {
		g_autofree char *subj = subject_text(ca_cert);

		g_set_error(err, KMS_CA_ERROR, KMS_CA_ERROR_INVALID,
		    "the CA certificate %s has expired", subj);
		return NULL;
	}
	if (p->profile == KMS_PROFILE_SIGNING)
		ku = "critical,digitalSignature,nonRepudiation";
	else if (EVP_PKEY_get_base_id(pubkey) == EVP_PKEY_RSA)
		ku = "critical,keyEncipherment";
	else
		ku = "critical,keyAgreement";

	if ((cert = new_cert(pubkey, p->days, err)) == NULL)
		return NULL;
	if (ASN1_TIME_compare(X509_get0_notAfter(cert),
	    X509_get0_notAfter(ca_cert)) > 0 &&
	    !X509_set1_notAfter(cert, X509_get0_notAfter(ca_cert))) {
		ossl_error(err, KMS_CA_ERROR_FAILED, "notAfter");
		goto fail;
	}
	if (!X509_set_issuer_name(cert, X509_get_subject_name(ca_cert)) ||
	    !X509_NAME_add_entry_by_NID(X509_get_subject_name(cert),
	    NID_commonName, MBSTRING_UTF8, (const unsigned char *) cn, -1,
	    -1, 0)) {
		ossl_error(err, KMS_CA_ERROR_FAILED, "subject");
		goto fail;
	}
	if (!add_conf_ext(cert, NULL, NULL, NID_basic_constraints,
	    "critical,CA:FALSE", err) ||
	    !add_conf_ext(cert, NULL, NULL, NID_key_usage, ku, err) ||
	    !add_conf_ext(cert, NULL, NULL, NID_ext_key_usage,
	    "emailProtection", err) ||
	    !add_san(cert, p->address, err) ||
	    !add_key_ids(cert, ca_cert, err) ||
	    (p->crl_url && !add_cdp(cert, p->crl_url, err)))
		goto fail;
	if (X509_sign(cert, ca_key, EVP_sha256()) <= 0) {
		ossl_error(err, KMS_CA_ERROR_FAILED, "signing the certificate");
		goto fail;
	}
	return cert;
fail:
	X509_free(cert);
	return NULL;
}
