/*
 * NAME
 *	crl - certificate revocation lists of the internal CA (see crl.h)
 * DESCRIPTION
 *	Entries and extensions are built as ASN.1 objects; the list is
 *	sorted by serial number with X509_CRL_sort (ascending, which also
 *	makes duplicates adjacent) before it is signed.
 * SECURITY
 *	The CA key only reaches X509_check_private_key and X509_CRL_sign.
 *	Input serials are checked character by character before OpenSSL
 *	parses them. Files are created with mkstemp in the target
 *	directory (no predictable temporary name to race for) and made
 *	0644 explicitly, so a restrictive umask cannot hide the CRL from
 *	the web server that publishes it.
 * DIAGNOSTICS
 *	GError in KMS_CRL_ERROR, one line each.
 */
#include "crl.h"
#include "x509util.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

G_DEFINE_QUARK(kms-crl-error-quark, kms_crl_error)

#define SERIAL_MAX_BITS	159	/* 20 octets as a positive DER INTEGER */
#define SERIAL_MAX_HEX	64	/* leading zeros included */
#define DAYS_MAX	3650
#define CRL_MODE	0644

/* RFC 5280 5.3.1 reason names (7 is unused). */
static const struct {
	const char *name;
	int reason;
} reasons[] = {
	{"unspecified", CRL_REASON_UNSPECIFIED},
	{"keyCompromise", CRL_REASON_KEY_COMPROMISE},
	{"cACompromise", CRL_REASON_CA_COMPROMISE},
	{"affiliationChanged", CRL_REASON_AFFILIATION_CHANGED},
	{"superseded", CRL_REASON_SUPERSEDED},
	{"cessationOfOperation", CRL_REASON_CESSATION_OF_OPERATION},
	{"certificateHold", CRL_REASON_CERTIFICATE_HOLD},
	{"removeFromCRL", CRL_REASON_REMOVE_FROM_CRL},
	{"privilegeWithdrawn", CRL_REASON_PRIVILEGE_WITHDRAWN},
	{"aACompromise", CRL_REASON_AA_COMPROMISE},
};

/* Set *err from OpenSSL's latest error after WHAT, and clear the queue. */
static void
ossl_error(GError **err, const char *what)
{
	unsigned long e = ERR_peek_last_error();
	const char *reason = e ? ERR_reason_error_string(e) : NULL;

	g_set_error(err, KMS_CRL_ERROR, KMS_CRL_ERROR_FAILED, "%s: %s", what,
	    reason ? reason : "unknown OpenSSL error");
	ERR_clear_error();
}

/* Map an RFC 5280 reason name to its code. */
gboolean
kms_crl_reason_parse(const char *name, int *reason)
{
	for (size_t i = 0; name && i < G_N_ELEMENTS(reasons); i++)
		if (g_ascii_strcasecmp(name, reasons[i].name) == 0) {
			*reason = reasons[i].reason;
			return TRUE;
		}
	return FALSE;
}

/* Map a reason code to its RFC 5280 name; NULL when unknown. */
const char *
kms_crl_reason_name(int reason)
{
	for (size_t i = 0; i < G_N_ELEMENTS(reasons); i++)
		if (reasons[i].reason == reason)
			return reasons[i].name;
	return NULL;
}

/* Parse entry I's hex serial into a new ASN1_INTEGER; caller frees. */
static ASN1_INTEGER *
parse_serial(const char *hex, guint i, GError **err)
{
	BIGNUM *bn = NULL;
	ASN1_INTEGER *serial = NULL;
	size_t len = hex ? strlen(hex) : 0;

	if (len == 0 || len > SERIAL_MAX_HEX ||
	    strspn(hex, "0123456789abcdefABCDEF") != len) {
		g_set_error(err, KMS_CRL_ERROR, KMS_CRL_ERROR_INVALID,
		    "CRL entry %u: serial \"%s\" is not a hex number of at most "
		    "%d digits", i + 1, hex ? hex : "(null)", SERIAL_MAX_HEX);
		return NULL;
	}
	if (BN_hex2bn(&bn, hex) != (int) len) {
		ossl_error(err, "serial number");
		BN_free(bn);
		return NULL;
	}
	if (BN_is_zero(bn) || BN_num_bits(bn) > SERIAL_MAX_BITS)
		g_set_error(err, KMS_CRL_ERROR, KMS_CRL_ERROR_INVALID,
		    "CRL entry %u: serial %s is %s", i + 1, hex,
		    BN_is_zero(bn) ? "zero" : "longer than 20 octets");
	else if ((serial = BN_to_ASN1_INTEGER(bn, NULL)) == NULL)
		ossl_error(err, "serial number");
	BN_free(bn);
	return serial;
}

/* Check entry I's reason and date; TRUE when it may go on a full CRL. */
static gboolean
check_entry(const KmsRevoked *r, guint i, GError **err)
{
	const char *why = NULL;

	if (r->reason != CRL_REASON_NONE &&
	    kms_crl_reason_name(r->reason) == NULL)
		why = "unknown reason code";
	else if (r->reason == CRL_REASON_REMOVE_FROM_CRL)
		why = "removeFromCRL only belongs in a delta CRL";
	else if (r->revoked_at < 0)
		why = "revocation date before 1970";
	if (why)
		g_set_error(err, KMS_CRL_ERROR, KMS_CRL_ERROR_INVALID,
		    "CRL entry %u (serial %s): %s", i + 1,
		    r->serial_hex ? r->serial_hex : "(null)", why);
	return why == NULL;
}

/* A new revoked-certificate entry for R (entry I); caller frees. */
static X509_REVOKED *
make_entry(const KmsRevoked *r, guint i, GError **err)
{
	X509_REVOKED *rev = NULL;
	ASN1_INTEGER *serial = NULL;
	ASN1_TIME *when = NULL;
	ASN1_ENUMERATED *code = NULL;

	if (!check_entry(r, i, err) ||
	    (serial = parse_serial(r->serial_hex, i, err)) == NULL)
		return NULL;
	if ((rev = X509_REVOKED_new()) == NULL ||
	    (when = ASN1_TIME_set(NULL, r->revoked_at)) == NULL ||
	    !X509_REVOKED_set_serialNumber(rev, serial) ||
	    !X509_REVOKED_set_revocationDate(rev, when)) {
		ossl_error(err, "CRL entry");
		goto fail;
	}
	/* RFC 5280 5.3.1: unspecified SHOULD be left out, not written. */
	if (r->reason != CRL_REASON_NONE &&
	    r->reason != CRL_REASON_UNSPECIFIED &&
	    ((code = ASN1_ENUMERATED_new()) == NULL ||
	    !ASN1_ENUMERATED_set(code, r->reason) ||
	    X509_REVOKED_add1_ext_i2d(rev, NID_crl_reason, code, 0,
	    X509V3_ADD_DEFAULT) != 1)) {
		ossl_error(err, "CRL reason code");
		goto fail;
	}
	ASN1_ENUMERATED_free(code);
	ASN1_TIME_free(when);
	ASN1_INTEGER_free(serial);
	return rev;
fail:
	ASN1_ENUMERATED_free(code);
	ASN1_TIME_free(when);
	ASN1_INTEGER_free(serial);
	X509_REVOKED_free(rev);
	return NULL;
}

/* Check the CA and the numbers before anything is built. */
static gboolean
check_ca(X509 *ca_cert, EVP_PKEY *ca_key, gint64 crl_number, int days,
    GError **err)
{
	g_autofree char *subj = NULL;
	const char *why = NULL;

	if (ca_cert == NULL || ca_key == NULL) {
		g_set_error(err, KMS_CRL_ERROR, KMS_CRL_ERROR_INVALID,
		    "CRL: missing CA certificate or key");
		return FALSE;
	}
	if (crl_number < 0 || days < 1 || days > DAYS_MAX) {
		g_set_error(err, KMS_CRL_ERROR, KMS_CRL_ERROR_INVALID,
		    "CRL: number %" G_GINT64_FORMAT " and validity %d days: "
		    "want a number >= 0 and 1 to %d days", crl_number, days,
		    DAYS_MAX);
		return FALSE;
	}
	if (X509_check_private_key(ca_cert, ca_key) != 1)
		why = "the CA key does not match the CA certificate";
	else if (!(X509_get_key_usage(ca_cert) & KU_CRL_SIGN))
		why = "the CA certificate's key usage excludes cRLSign";
	ERR_clear_error();
	if (why) {
		subj = kms_x509_name_text(X509_get_subject_name(ca_cert));
		g_set_error(err, KMS_CRL_ERROR, KMS_CRL_ERROR_INVALID,
		    "CRL for %s: %s", subj, why);
	}
	return why == NULL;
}

/* Add authorityKeyIdentifier (the CA's SKI, else its key's SHA-1) and
 * cRLNumber to CRL. */
static gboolean
add_crl_exts(X509_CRL *crl, X509 *ca_cert, gint64 crl_number,
    GError **err)
{
	const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(ca_cert);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
	ASN1_INTEGER *number = ASN1_INTEGER_new();
	gboolean ok = FALSE;

	if (akid == NULL || number == NULL)
		goto out;
	if (ski)
		akid->keyid = ASN1_OCTET_STRING_dup(ski);
	else if (X509_pubkey_digest(ca_cert, EVP_sha1(), md, &len) == 1 &&
	    (akid->keyid = ASN1_OCTET_STRING_new()) != NULL &&
	    !ASN1_OCTET_STRING_set(akid->keyid, md, (int) len))
		goto out;
	ok = akid->keyid != NULL &&
	    X509_CRL_add1_ext_i2d(crl, NID_authority_key_identifier, akid, 0,
	    X509V3_ADD_DEFAULT) == 1 &&
	    ASN1_INTEGER_set_int64(number, crl_number) &&
	    X509_CRL_add1_ext_i2d(crl, NID_crl_number, number, 0,
	    X509V3_ADD_DEFAULT) == 1;
out:
	if (!ok)
		ossl_error(err, "CRL extensions");
	AUTHORITY_KEYID_free(akid);
	ASN1_INTEGER_free(number);
	return ok;
}

/* Set issuer, version and the update times (now, now + DAYS) of CRL. */
static gboolean
set_header(X509_CRL *crl, X509 *ca_cert, int days, GError **err)
{
	time_t now = time(NULL);
	ASN1_TIME *this_update = ASN1_TIME_set(NULL, now);
	ASN1_TIME *next_update = ASN1_TIME_adj(NULL, now, days, 0);
	gboolean ok;

	ok = this_update && next_update &&
	    X509_CRL_set_version(crl, X509_CRL_VERSION_2) &&
	    X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca_cert)) &&
	    X509_CRL_set1_lastUpdate(crl, this_update) &&
	    X509_CRL_set1_nextUpdate(crl, next_update);
	if (!ok)
		ossl_error(err, "CRL header");
	ASN1_TIME_free(this_update);
	ASN1_TIME_free(next_update);
	return ok;
}

/* Refuse a serial listed twice (CRL sorted, so duplicates are adjacent). */
static gboolean
check_duplicates(X509_CRL *crl, GError **err)
{
	STACK_OF(X509_REVOKED) *revs = X509_CRL_get_REVOKED(crl);

	for (int i = 1; i < sk_X509_REVOKED_num(revs); i++) {
		const ASN1_INTEGER *a = X509_REVOKED_get0_serialNumber(
		    sk_X509_REVOKED_value(revs, i - 1));
		const ASN1_INTEGER *b = X509_REVOKED_get0_serialNumber(
		    sk_X509_REVOKED_value(revs, i));

		if (ASN1_INTEGER_cmp(a, b) == 0) {
			BIGNUM *bn = ASN1_INTEGER_to_BN(b, NULL);
			char *hex = bn ? BN_bn2hex(bn) : NULL;

			g_set_error(err, KMS_CRL_ERROR, KMS_CRL_ERROR_INVALID,
			    "CRL: serial %s is listed twice",
			    hex ? hex : "(unprintable)");
			OPENSSL_free(hex);
			BN_free(bn);
			ERR_clear_error();
			return FALSE;
		}
	}
	return TRUE;
}

/* Build and sign a v2 CRL of the CA. */
X509_CRL *
kms_crl_build(X509 *ca_cert, EVP_PKEY *ca_key, const KmsRevoked *revoked,
    guint n, gint64 crl_number, int days, GError **err)
{
	X509_CRL *crl;

	if (!check_ca(ca_cert, ca_key, crl_number, days, err))
		return NULL;
	if (n > 0 && revoked == NULL) {
		g_set_error(err, KMS_CRL_ERROR, KMS_CRL_ERROR_INVALID,
		    "CRL: %u entries but no list", n);
		return NULL;
	}
	if ((crl = X509_CRL_new()) == NULL) {
		ossl_error(err, "X509_CRL_new");
		return NULL;
	}
	if (!set_header(crl, ca_cert, days, err))
		goto fail;
	for (guint i = 0; i < n; i++) {
		X509_REVOKED *rev = make_entry(&revoked[i], i, err);

		if (rev == NULL)
			goto fail;
		if (!X509_CRL_add0_revoked(crl, rev)) {
			X509_REVOKED_free(rev);
			ossl_error(err, "CRL entry");
			goto fail;
		}
	}
	if (!X509_CRL_sort(crl)) {
		ossl_error(err, "sorting the CRL");
		goto fail;
	}
	if (!check_duplicates(crl, err) ||
	    !add_crl_exts(crl, ca_cert, crl_number, err))
		goto fail;
	if (X509_CRL_sign(crl, ca_key, EVP_sha256()) <= 0) {
		ossl_error(err, "signing the CRL");
		goto fail;
	}
	return crl;
fail:
	X509_CRL_free(crl);
	return NULL;
}

/* Set *err to an I/O error about PATH from errno after WHAT. */
static void
io_error(GError **err, const char *what, const char *path, int errnum)
{
	g_set_error(err, KMS_CRL_ERROR, KMS_CRL_ERROR_IO, "%s %s: %s", what,
	    path, g_strerror(errnum));
}

/* Write LEN bytes of DATA to FD; FALSE with errno set on failure. */
static gboolean
write_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		ssize_t w = write(fd, p, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			if (w == 0)
				errno = EIO;
			return FALSE;
		}
		p += w;
		len -= (size_t) w;
	}
	return TRUE;
}

/* Replace DIR/NAME with DATA atomically (temporary file, fsync, rename,
 * fsync of DIR), mode 0644. */
static gboolean
replace_file(const char *dir, const char *name, const void *data,
    size_t len, GError **err)
{
	g_autofree char *path = g_build_filename(dir, name, NULL);
	g_autofree char *tmp_name = g_strdup_printf(".%s.XXXXXX", name);
	g_autofree char *tmp = g_build_filename(dir, tmp_name, NULL);
	int fd, dfd, e;

	if ((fd = g_mkstemp_full(tmp, O_WRONLY | O_CLOEXEC, CRL_MODE)) < 0) {
		io_error(err, "creating a temporary file for", path, errno);
		return FALSE;
	}
	if (!write_all(fd, data, len) || fchmod(fd, CRL_MODE) != 0 ||
	    fsync(fd) != 0) {
		e = errno;
		close(fd);
		g_unlink(tmp);
		io_error(err, "writing", path, e);
		return FALSE;
	}
	if (close(fd) != 0 || rename(tmp, path) != 0) {
		e = errno;
		g_unlink(tmp);
		io_error(err, "writing", path, e);
		return FALSE;
	}
	/* Make the rename itself durable; a failure here loses nothing. */
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		(void) fsync(dfd);
		close(dfd);
	}
	return TRUE;
}

/* Publish CRL as DIR/BASENAME (DER) and DIR/BASENAME.pem. */
gboolean
kms_crl_write(X509_CRL *crl, const char *dir, const char *basename,
    GError **err)
{
	g_autofree char *pem_name = NULL;
	unsigned char *der = NULL;
	BIO *bio = NULL;
	char *pem;
	long pem_len;
	int der_len;
	gboolean ok = FALSE;

	if (crl == NULL || dir == NULL || basename == NULL ||
	    *basename == '\0' || strchr(basename, '/') ||
	    strcmp(basename, ".") == 0 || strcmp(basename, "..") == 0) {
		g_set_error(err, KMS_CRL_ERROR, KMS_CRL_ERROR_INVALID,
		    "CRL file name \"%s\": want a plain file name",
		    basename ? basename : "(null)");
		return FALSE;
	}
	if ((der_len = i2d_X509_CRL(crl, &der)) <= 0 ||
	    (bio = BIO_new(BIO_s_mem())) == NULL ||
	    !PEM_write_bio_X509_CRL(bio, crl) ||
	    (pem_len = BIO_get_mem_data(bio, &pem)) <= 0) {
		ossl_error(err, "encoding the CRL");
		goto out;
	}
	pem_name = g_strconcat(basename, ".pem", NULL);
	ok = replace_file(dir, basename, der, (size_t) der_len, err) &&
	    replace_file(dir, pem_name, pem, (size_t) pem_len, err);
out:
	OPENSSL_free(der);
	BIO_free(bio);
	return ok;
}
