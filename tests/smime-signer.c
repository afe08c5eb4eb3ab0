/*
 * NAME
 *	smime-signer - S/MIME signer built on the OpenSSL library, for tests
 * SYNOPSIS
 *	smime-signer --cert C --key K [--certfile EXTRA.pem] [--caps LIST]
 *	    [--keypref CERT.pem] [--md sha256] [--opaque] < content > message
 *	smime-signer --describe < cms.der
 * DESCRIPTION
 *	Reads a MIME entity (headers, blank line, body) on standard input,
 *	canonicalises bare LF line ends to CRLF and writes a complete S/MIME
 *	signed message on standard output: multipart/signed (detached) by
 *	default, application/pkcs7-mime; smime-type=signed-data with
 *	--opaque. The SignerInfo carries contentType, messageDigest and
 *	signingTime and, only when asked for:
 *	  --caps a,b,c	an SMIMECapabilities attribute holding exactly these
 *			capabilities in this order ("" gives an empty list).
 *			Names: aes{128,192,256}-{cbc,gcm} des-ede3-cbc des-cbc
 *			rc2-cbc-{40,64,128} (INTEGER key size parameter)
 *			rsaes-oaep (RSAES-OAEP-params, all defaults: SHA-1)
 *			rsaes-oaep-sha{224,256,384,512} (hash and MGF1 hash)
 *			rsa-encryption (NULL parameter); anything else is
 *			taken as an OpenSSL object name or a dotted OID,
 *			with no parameter.
 *	  --keypref F	an SMIMEEncryptionKeyPreference attribute naming the
 *			certificate in F by [0] issuerAndSerialNumber; that
 *			certificate is added to the CMS certificates.
 *	OpenSSL's own capability list is never added.
 *
 *	smime-signer --describe < CMS.der reads a DER CMS SignedData and
 *	prints, per SignerInfo (blocks separated by a blank line), what a
 *	harvester should find, in the format of tests/peers/ *.expect:
 *	  address: ...		rfc822Names of the signer's SAN (domain in
 *				lower case), one line each
 *	  capabilities: a,b,c	SMIMECapabilities with the names above ("-"
 *				when the attribute is absent)
 *	  key_preference: HEX	SHA-256 of the certificate (among the CMS
 *				certificates) named by SMIMEEncryptionKeyPreference
 *				issuerAndSerialNumber, "-" when absent,
 *				"unresolved" when named but not carried
 *	  signer_sha256: HEX	SHA-256 of the signer certificate's DER
 *	It does not verify anything; the caller knows the status.
 Exists because
 *	`openssl cms -sign` can only announce OpenSSL's fixed list, while
 *	real mail clients also announce AES-GCM and RSAES-OAEP.
 *	Self-contained (OpenSSL only), so any test can build it with
 *	  cc -o smime-signer smime-signer.c $(pkg-config --cflags --libs openssl)
 * EXIT STATUS
 *	0 on success, 1 on a failure (OpenSSL's errors on stderr), 2 on
 *	usage errors.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define SIGNER_MAX_INPUT (64L * 1024 * 1024)

static const char *progname = "smime-signer";

static void
die(const char *what)
{
	fprintf(stderr, "%s: %s\n", progname, what);
	ERR_print_errors_fp(stderr);
	exit(1);
}

static void
usage(void)
{
	fprintf(stderr, "usage: %s --cert C --key K [--certfile EXTRA.pem] [--caps a,b,c]\n"
	    "       [--keypref CERT.pem] [--md DIGEST] [--opaque] < content > message\n"
	    "       %s --describe < cms.der\n",
	    progname, progname);
	exit(2);
}

/* Whole standard input with every bare LF turned into CRLF. */
static unsigned char *
read_canonical(FILE *in, size_t *lenp)
{
	size_t cap = 8192, len = 0;
	unsigned char *buf = malloc(cap);
	int c, prev = -1;

	if (buf == NULL)
		die("out of memory");
	while ((c = getc(in)) != EOF) {
		if (len + 2 > cap) {
			unsigned char *nb;

			if (cap >= SIGNER_MAX_INPUT)
				die("input too large");
			cap *= 2;
			if ((nb = realloc(buf, cap)) == NULL)
				die("out of memory");
			buf = nb;
		}
		if (c == '\n' && prev != '\r')
			buf[len++] = '\r';
		buf[len++] = (unsigned char)c;
		prev = c;
	}
	if (ferror(in))
		die("cannot read standard input");
	*lenp = len;
	return buf;
}

/* Copies the memory BIO M to OUT with bare LFs made CRLF: CMS_CRLFEOL
 * covers OpenSSL's MIME headers but not its base64 lines. The signed
 * content is CRLF already, so it passes unchanged. */
static void
write_crlf(BIO *m, FILE *out)
{
	char *p;
	long n = BIO_get_mem_data(m, &p), i;

	for (i = 0; i < n; i++) {
		if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
			putc('\r', out);
		putc(p[i], out);
	}
	if (fflush(out) != 0 || ferror(out))
		die("cannot write standard output");
}

static X509 *
read_cert(const char *path)
{
	BIO *b = BIO_new_file(path, "r");
	X509 *x;

	if (b == NULL) {
		fprintf(stderr, "%s: %s: %s\n", progname, path, strerror(errno));
		exit(1);
	}
	x = PEM_read_bio_X509(b, NULL, NULL, NULL);
	BIO_free(b);
	if (x == NULL) {
		fprintf(stderr, "%s: %s: no PEM certificate\n", progname, path);
		ERR_print_errors_fp(stderr);
		exit(1);
	}
	return x;
}

static STACK_OF(X509) *
read_certs(const char *path)
{
	STACK_OF(X509) *sk = sk_X509_new_null();
	BIO *b = BIO_new_file(path, "r");
	X509 *x;

	if (sk == NULL)
		die("out of memory");
	if (b == NULL) {
		fprintf(stderr, "%s: %s: %s\n", progname, path, strerror(errno));
		exit(1);
	}
	while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
		if (!sk_X509_push(sk, x))
			die("out of memory");
	ERR_clear_error();	/* the end-of-file "no start line" */
	BIO_free(b);
	if (sk_X509_num(sk) == 0) {
		fprintf(stderr, "%s: %s: no PEM certificate\n", progname, path);
		exit(1);
	}
	return sk;
}

static EVP_PKEY *
read_key(const char *path)
{
	BIO *b = BIO_new_file(path, "r");
	EVP_PKEY *k;

	if (b == NULL) {
		fprintf(stderr, "%s: %s: %s\n", progname, path, strerror(errno));
		exit(1);
	}
	k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
	BIO_free(b);
	if (k == NULL) {
		fprintf(stderr, "%s: %s: no PEM private key (unencrypted)\n", progname, path);
		ERR_print_errors_fp(stderr);
		exit(1);
	}
	return k;
}

/* Sets A's parameter to the DER encoding DER (a SEQUENCE). */
static void
algor_set_seq(X509_ALGOR *a, int nid, const unsigned char *der, int len)
{
	ASN1_STRING *s = ASN1_STRING_new();

	if (s == NULL || !ASN1_STRING_set(s, der, len))
		die("out of memory");
	if (!X509_ALGOR_set0(a, OBJ_nid2obj(nid), V_ASN1_SEQUENCE, s))
		die("X509_ALGOR_set0 failed");
}

/* RSAES-OAEP-params: MD NULL gives all defaults (an empty SEQUENCE), else
 * hashFunc MD and maskGenFunc mgf1(MD); pSourceFunc stays default. */
static void
set_oaep_params(X509_ALGOR *a, const EVP_MD *md)
{
	RSA_OAEP_PARAMS *p = RSA_OAEP_PARAMS_new();
	unsigned char *der = NULL;
	int len;

	if (p == NULL)
		die("out of memory");
	if (md != NULL) {
		X509_ALGOR *hash = X509_ALGOR_new();
		unsigned char *hder = NULL;
		int hlen;

		if (hash == NULL || (p->hashFunc = X509_ALGOR_new()) == NULL ||
		    (p->maskGenFunc = X509_ALGOR_new()) == NULL)
			die("out of memory");
		X509_ALGOR_set_md(p->hashFunc, md);
		X509_ALGOR_set_md(hash, md);
		if ((hlen = i2d_X509_ALGOR(hash, &hder)) <= 0)
			die("cannot encode the MGF1 hash");
		algor_set_seq(p->maskGenFunc, NID_mgf1, hder, hlen);
		OPENSSL_free(hder);
		X509_ALGOR_free(hash);
	}
	if ((len = i2d_RSA_OAEP_PARAMS(p, &der)) <= 0)
		die("cannot encode RSAES-OAEP-params");
	algor_set_seq(a, NID_rsaesOaep, der, len);
	OPENSSL_free(der);
	RSA_OAEP_PARAMS_free(p);
}

static X509_ALGOR *
capability(const char *name)
{
	static const struct {
		const char *name;
		int nid;
	} plain[] = {
		{ "aes128-cbc", NID_aes_128_cbc }, { "aes192-cbc", NID_aes_192_cbc },
		{ "aes256-cbc", NID_aes_256_cbc }, { "aes128-gcm", NID_aes_128_gcm },
		{ "aes192-gcm", NID_aes_192_gcm }, { "aes256-gcm", NID_aes_256_gcm },
		{ "des-ede3-cbc", NID_des_ede3_cbc }, { "des-cbc", NID_des_cbc },
	};
	static const struct {
		const char *name;
		long bits;
	} rc2[] = { { "rc2-cbc-40", 40 }, { "rc2-cbc-64", 64 }, { "rc2-cbc-128", 128 } };
	X509_ALGOR *a = X509_ALGOR_new();
	ASN1_OBJECT *obj;
	size_t i;

	if (a == NULL)
		die("out of memory");
	for (i = 0; i < sizeof plain / sizeof plain[0]; i++)
		if (strcmp(name, plain[i].name) == 0) {
			X509_ALGOR_set0(a, OBJ_nid2obj(plain[i].nid), V_ASN1_UNDEF, NULL);
			return a;
		}
	for (i = 0; i < sizeof rc2 / sizeof rc2[0]; i++)
		if (strcmp(name, rc2[i].name) == 0) {
			ASN1_INTEGER *n = ASN1_INTEGER_new();

			if (n == NULL || !ASN1_INTEGER_set(n, rc2[i].bits))
				die("out of memory");
			X509_ALGOR_set0(a, OBJ_nid2obj(NID_rc2_cbc), V_ASN1_INTEGER, n);
			return a;
		}
	if (strcmp(name, "rsa-encryption") == 0) {
		X509_ALGOR_set0(a, OBJ_nid2obj(NID_rsaEncryption), V_ASN1_NULL, NULL);
		return a;
	}
	if (strcmp(name, "rsaes-oaep") == 0) {
		set_oaep_params(a, NULL);
		return a;
	}
	if (strncmp(name, "rsaes-oaep-", 11) == 0) {
		const EVP_MD *md = EVP_get_digestbyname(name + 11);

		if (md == NULL) {
			fprintf(stderr, "%s: unknown OAEP hash in %s\n", progname, name);
			exit(2);
		}
		set_oaep_params(a, md);
		return a;
	}
	if ((obj = OBJ_txt2obj(name, 0)) == NULL) {
		fprintf(stderr, "%s: unknown capability %s\n", progname, name);
		exit(2);
	}
	X509_ALGOR_set0(a, obj, V_ASN1_UNDEF, NULL);
	return a;
}

/* SMIMECapabilities ::= SEQUENCE OF SMIMECapability, in the order given. */
static void
add_capabilities(CMS_SignerInfo *si, const char *list)
{
	STACK_OF(X509_ALGOR) *algs = sk_X509_ALGOR_new_null();
	char *copy = strdup(list), *name, *save = NULL;
	unsigned char *der = NULL;
	int len;

	if (algs == NULL || copy == NULL)
		die("out of memory");
	for (name = strtok_r(copy, ",", &save); name != NULL;
	    name = strtok_r(NULL, ",", &save))
		if (!sk_X509_ALGOR_push(algs, capability(name)))
			die("out of memory");
	if ((len = i2d_X509_ALGORS(algs, &der)) <= 0)
		die("cannot encode SMIMECapabilities");
	if (!CMS_signed_add1_attr_by_NID(si, NID_SMIMECapabilities, V_ASN1_SEQUENCE, der, len))
		die("cannot add SMIMECapabilities");
	OPENSSL_free(der);
	sk_X509_ALGOR_pop_free(algs, X509_ALGOR_free);
	free(copy);
}

/* SMIMEEncryptionKeyPreference ::= CHOICE { issuerAndSerialNumber [0]
 * IssuerAndSerialNumber, ... }: [0] IMPLICIT, so the SEQUENCE tag of
 * IssuerAndSerialNumber becomes a constructed context tag 0. */
static void
add_keypref(CMS_SignerInfo *si, X509 *x)
{
	unsigned char *name = NULL, *serial = NULL, *der, *p;
	int nlen, slen, clen, len;
	ASN1_STRING *value;
	X509_ATTRIBUTE *attr;

	nlen = i2d_X509_NAME(X509_get_issuer_name(x), &name);
	slen = i2d_ASN1_INTEGER(X509_get0_serialNumber(x), &serial);
	if (nlen <= 0 || slen <= 0)
		die("cannot encode issuerAndSerialNumber");
	clen = nlen + slen;
	len = ASN1_object_size(1, clen, 0);
	if (len <= 0 || (der = p = OPENSSL_malloc(len)) == NULL)
		die("out of memory");
	ASN1_put_object(&p, 1, clen, 0, V_ASN1_CONTEXT_SPECIFIC);
	memcpy(p, name, nlen);
	memcpy(p + nlen, serial, slen);
	/* V_ASN1_OTHER: the string is the complete encoding, tag included. */
	if ((value = ASN1_STRING_type_new(V_ASN1_OTHER)) == NULL)
		die("out of memory");
	ASN1_STRING_set0(value, der, len);
	if ((attr = X509_ATTRIBUTE_create(NID_id_smime_aa_encrypKeyPref, V_ASN1_OTHER,
	    value)) == NULL)
		die("cannot build SMIMEEncryptionKeyPreference");
	if (!CMS_signed_add1_attr(si, attr))
		die("cannot add SMIMEEncryptionKeyPreference");
	X509_ATTRIBUTE_free(attr);
	OPENSSL_free(name);
	OPENSSL_free(serial);
}

/* ---- --describe ------------------------------------------------------ */

static void
print_lower(const char *prefix, const char *s, const char *suffix)
{
	fputs(prefix, stdout);
	for (; *s != '\0'; s++)
		putchar(*s >= 'A' && *s <= 'Z' ? *s - 'A' + 'a' : *s);
	fputs(suffix, stdout);
}

static void
print_sha256(const char *label, X509 *x)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n, i;

	if (!X509_digest(x, EVP_sha256(), md, &n))
		die("X509_digest failed");
	printf("%s: ", label);
	for (i = 0; i < n; i++)
		printf("%02x", md[i]);
	putchar('\n');
}

/* Name of one SMIMECapability, as smime/capabilities.h spells it. */
static void
print_capability(const X509_ALGOR *a)
{
	static const struct {
		int nid;
		const char *name;
	} plain[] = {
		{ NID_aes_128_cbc, "aes128-cbc" }, { NID_aes_192_cbc, "aes192-cbc" },
		{ NID_aes_256_cbc, "aes256-cbc" }, { NID_aes_128_gcm, "aes128-gcm" },
		{ NID_aes_192_gcm, "aes192-gcm" }, { NID_aes_256_gcm, "aes256-gcm" },
		{ NID_des_ede3_cbc, "des-ede3-cbc" }, { NID_des_cbc, "des-cbc" },
		{ NID_rsaEncryption, "rsa-encryption" },
	};
	const ASN1_OBJECT *obj;
	const void *pval;
	int ptype, nid;
	size_t i;
	char buf[128];

	X509_ALGOR_get0(&obj, &ptype, &pval, a);
	nid = OBJ_obj2nid(obj);
	for (i = 0; i < sizeof plain / sizeof plain[0]; i++)
		if (nid == plain[i].nid) {
			fputs(plain[i].name, stdout);
			return;
		}
	if (nid == NID_rc2_cbc) {
		if (ptype == V_ASN1_INTEGER)
			printf("rc2-cbc-%ld", ASN1_INTEGER_get(pval));
		else
			fputs("rc2-cbc", stdout);
		return;
	}
	if (nid == NID_rsaesOaep) {
		int hash = NID_sha1;

		if (ptype == V_ASN1_SEQUENCE) {
			const ASN1_STRING *seq = pval;
			const unsigned char *p = ASN1_STRING_get0_data(seq);
			RSA_OAEP_PARAMS *op = d2i_RSA_OAEP_PARAMS(NULL, &p,
			    ASN1_STRING_length(seq));

			if (op == NULL) {
				fputs("rsaes-oaep-invalid", stdout);
				ERR_clear_error();
				return;
			}
			if (op->hashFunc != NULL)
				hash = OBJ_obj2nid(op->hashFunc->algorithm);
			RSA_OAEP_PARAMS_free(op);
		}
		if (hash == NID_sha1)
			fputs("rsaes-oaep", stdout);
		else
			print_lower("rsaes-oaep-", OBJ_nid2sn(hash), "");
		return;
	}
	if (nid != NID_undef) {
		print_lower("", OBJ_nid2sn(nid), "");
		return;
	}
	OBJ_obj2txt(buf, sizeof buf, obj, 1);
	fputs(buf, stdout);
}

static void
describe_capabilities(CMS_SignerInfo *si)
{
	int i = CMS_signed_get_attr_by_NID(si, NID_SMIMECapabilities, -1);
	X509_ATTRIBUTE *attr;
	ASN1_TYPE *t;
	const unsigned char *p;
	STACK_OF(X509_ALGOR) *algs;

	if (i < 0) {
		puts("capabilities: -");
		return;
	}
	attr = CMS_signed_get_attr(si, i);
	t = X509_ATTRIBUTE_get0_type(attr, 0);
	if (t == NULL || t->type != V_ASN1_SEQUENCE) {
		puts("capabilities: invalid");
		return;
	}
	p = t->value.sequence->data;
	algs = d2i_X509_ALGORS(NULL, &p, t->value.sequence->length);
	if (algs == NULL) {
		puts("capabilities: invalid");
		ERR_clear_error();
		return;
	}
	fputs("capabilities: ", stdout);
	for (i = 0; i < sk_X509_ALGOR_num(algs); i++) {
		if (i > 0)
			putchar(',');
		print_capability(sk_X509_ALGOR_value(algs, i));
	}
	putchar('\n');
	sk_X509_ALGOR_pop_free(algs, X509_ALGOR_free);
}

static void
describe_keypref(CMS_SignerInfo *si, STACK_OF(X509) *certs)
{
	int i = CMS_signed_get_attr_by_NID(si, NID_id_smime_aa_encrypKeyPref, -1);
	ASN1_TYPE *t;
	const unsigned char *p, *end;
	long len;
	int tag, class;
	X509_NAME *issuer = NULL;
	ASN1_INTEGER *serial = NULL;

	if (i < 0) {
		puts("key_preference: -");
		return;
	}
	t = X509_ATTRIBUTE_get0_type(CMS_signed_get_attr(si, i), 0);
	/* [0] is not a universal tag: OpenSSL keeps it as V_ASN1_OTHER,
	 * the whole encoding. */
	if (t == NULL || t->type != V_ASN1_OTHER) {
		puts("key_preference: unresolved");
		return;
	}
	p = t->value.asn1_string->data;
	if ((ASN1_get_object(&p, &len, &tag, &class, t->value.asn1_string->length) & 0x80) ||
	    tag != 0 || class != V_ASN1_CONTEXT_SPECIFIC) {
		puts("key_preference: unresolved");
		ERR_clear_error();
		return;
	}
	end = p + len;
	issuer = d2i_X509_NAME(NULL, &p, end - p);
	if (issuer != NULL)
		serial = d2i_ASN1_INTEGER(NULL, &p, end - p);
	ERR_clear_error();
	for (i = 0; serial != NULL && i < sk_X509_num(certs); i++) {
		X509 *x = sk_X509_value(certs, i);

		if (X509_NAME_cmp(X509_get_issuer_name(x), issuer) == 0 &&
		    ASN1_INTEGER_cmp(X509_get0_serialNumber(x), serial) == 0) {
			print_sha256("key_preference", x);
			break;
		}
	}
	if (serial == NULL || i == sk_X509_num(certs))
		puts("key_preference: unresolved");
	X509_NAME_free(issuer);
	ASN1_INTEGER_free(serial);
}

static void
describe_addresses(X509 *x)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	int i;

	for (i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
		GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		const char *s, *at;
		int n;

		if (g->type != GEN_EMAIL)
			continue;
		s = (const char *)ASN1_STRING_get0_data(g->d.rfc822Name);
		n = ASN1_STRING_length(g->d.rfc822Name);
		if ((at = memchr(s, '@', n)) == NULL) {
			printf("address: %.*s\n", n, s);
			continue;
		}
		printf("address: %.*s", (int)(at - s), s);
		for (; at < s + n; at++)
			putchar(*at >= 'A' && *at <= 'Z' ? *at - 'A' + 'a' : *at);
		putchar('\n');
	}
	GENERAL_NAMES_free(gens);
}

static int
describe(void)
{
	BIO *in = BIO_new_fp(stdin, BIO_NOCLOSE);
	CMS_ContentInfo *cms;
	STACK_OF(CMS_SignerInfo) *sis;
	STACK_OF(X509) *certs;
	int i, j;

	if (in == NULL)
		die("out of memory");
	if ((cms = d2i_CMS_bio(in, NULL)) == NULL)
		die("standard input is not a DER CMS structure");
	if ((sis = CMS_get0_SignerInfos(cms)) == NULL)
		die("not SignedData");
	certs = CMS_get1_certs(cms);
	for (i = 0; i < sk_CMS_SignerInfo_num(sis); i++) {
		CMS_SignerInfo *si = sk_CMS_SignerInfo_value(sis, i);
		X509 *signer = NULL;

		if (i > 0)
			putchar('\n');
		for (j = 0; j < sk_X509_num(certs); j++)
			if (CMS_SignerInfo_cert_cmp(si, sk_X509_value(certs, j)) == 0) {
				signer = sk_X509_value(certs, j);
				break;
			}
		if (signer != NULL)
			describe_addresses(signer);
		describe_capabilities(si);
		describe_keypref(si, certs);
		if (signer != NULL)
			print_sha256("signer_sha256", signer);
		else
			puts("signer_sha256: unresolved");
	}
	sk_X509_pop_free(certs, X509_free);
	CMS_ContentInfo_free(cms);
	BIO_free(in);
	if (fflush(stdout) != 0 || ferror(stdout))
		die("cannot write standard output");
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "cert", required_argument, NULL, 'c' },
		{ "key", required_argument, NULL, 'k' },
		{ "certfile", required_argument, NULL, 'f' },
		{ "caps", required_argument, NULL, 'a' },
		{ "keypref", required_argument, NULL, 'p' },
		{ "md", required_argument, NULL, 'm' },
		{ "opaque", no_argument, NULL, 'o' },
		{ "describe", no_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *certfile = NULL, *keyfile = NULL, *extrafile = NULL;
	const char *caps = NULL, *keyprefile = NULL, *mdname = "sha256";
	int opaque = 0, describe_only = 0, c;
	unsigned int flags;
	unsigned char *content;
	size_t clen;
	STACK_OF(X509) *extra = NULL;
	X509 *cert, *pref = NULL;
	EVP_PKEY *key;
	const EVP_MD *md;
	CMS_ContentInfo *cms;
	CMS_SignerInfo *si;
	BIO *data, *out;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'c': certfile = optarg; break;
		case 'k': keyfile = optarg; break;
		case 'f': extrafile = optarg; break;
		case 'a': caps = optarg; break;
		case 'p': keyprefile = optarg; break;
		case 'm': mdname = optarg; break;
		case 'o': opaque = 1; break;
		case 'd': describe_only = 1; break;
		default: usage();
		}
	}
	if (optind != argc)
		usage();
	if (describe_only)
		return describe();
	if (certfile == NULL || keyfile == NULL)
		usage();
	if ((md = EVP_get_digestbyname(mdname)) == NULL) {
		fprintf(stderr, "%s: unknown digest %s\n", progname, mdname);
		return 2;
	}
	cert = read_cert(certfile);
	key = read_key(keyfile);
	if (extrafile != NULL)
		extra = read_certs(extrafile);
	if (keyprefile != NULL)
		pref = read_cert(keyprefile);
	content = read_canonical(stdin, &clen);
	if (clen > (size_t)SIGNER_MAX_INPUT)
		die("input too large");

	/* CMS_PARTIAL: attributes are added before CMS_final signs. */
	flags = CMS_PARTIAL | CMS_BINARY | CMS_NOSMIMECAP | (opaque ? 0 : CMS_DETACHED);
	if ((cms = CMS_sign(NULL, NULL, extra, NULL, flags)) == NULL)
		die("CMS_sign failed");
	if ((si = CMS_add1_signer(cms, cert, key, md, flags)) == NULL)
		die("CMS_add1_signer failed");
	if (caps != NULL)
		add_capabilities(si, caps);
	if (pref != NULL) {
		add_keypref(si, pref);
		if (X509_cmp(pref, cert) != 0 && !CMS_add1_cert(cms, pref))
			die("CMS_add1_cert failed");
	}
	if ((data = BIO_new_mem_buf(content, (int)clen)) == NULL)
		die("out of memory");
	if (!CMS_final(cms, data, NULL, flags))
		die("CMS_final failed");
	BIO_free(data);

	if ((out = BIO_new(BIO_s_mem())) == NULL)
		die("out of memory");
	data = opaque ? NULL : BIO_new_mem_buf(content, (int)clen);
	if (!opaque && data == NULL)
		die("out of memory");
	/* Without CMS_REUSE_DIGEST, writing multipart/signed would digest
	 * and sign the content a second time. */
	if (!SMIME_write_CMS(out, cms, data, (int)(flags | CMS_CRLFEOL | CMS_REUSE_DIGEST)))
		die("SMIME_write_CMS failed");
	write_crlf(out, stdout);
	BIO_free(out);
	BIO_free(data);
	CMS_ContentInfo_free(cms);
	X509_free(cert);
	X509_free(pref);
	EVP_PKEY_free(key);
	sk_X509_pop_free(extra, X509_free);
	free(content);
	return 0;
}
