/*
 * NAME
 *	encrypt - S/MIME enveloped-data and authEnveloped-data (see encrypt.h)
 * DESCRIPTION
 *	The entity is canonicalised in one pass after its size has been
 *	counted, so that an oversized message is refused before anything is
 *	copied. Encryption uses CMS_encrypt with CMS_PARTIAL and no
 *	certificates: OpenSSL 3 then creates AuthEnvelopedData for an AEAD
 *	cipher and EnvelopedData otherwise, and each recipient is added on
 *	its own so that RSAES-OAEP can be set on that recipient's key
 *	context (CMS_KEY_PARAM keeps OpenSSL from fixing PKCS#1 v1.5 first).
 *	CMS_BINARY: the entity is already canonical and must not be touched
 *	again (that would break a wrapped signature).
 * SECURITY
 *	Input comes from mail clients: header names are checked, sizes are
 *	bounded before allocation, and the Content-Type parser reads with
 *	explicit bounds and no recursion. Only public keys are involved.
 * DIAGNOSTICS
 *	KMS_ENCRYPT_ERROR messages name the recipient ("recipient 2
 *	(CN=Bob): ...") and the OpenSSL reason on library failures.
 */
#include "encrypt.h"
#include "x509util.h"

#include <limits.h>
#include <string.h>

#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

G_DEFINE_QUARK(kms-encrypt-error-quark, kms_encrypt_error)

#define B64_LINE_BYTES	57	/* 57 bytes give 76 base64 characters */
#define DESCRIPTION_MAX	200
#define DEFAULT_CT	"Content-Type: text/plain; charset=us-ascii\r\n"
#define CT_MAX		4096	/* longer Content-Type values are not parsed */

/* The content-encryption algorithms, by policy name. */
static const struct {
	const char *name;
	const char *cipher;	/* OpenSSL's name for EVP_CIPHER_fetch */
	gboolean aead;
} algorithms[] = {
	{"aes256-gcm", "AES-256-GCM", TRUE},
	{"aes128-gcm", "AES-128-GCM", TRUE},
	{"aes256-cbc", "AES-256-CBC", FALSE},
	{"aes192-cbc", "AES-192-CBC", FALSE},
	{"aes128-cbc", "AES-128-CBC", FALSE},
	{"des-ede3-cbc", "DES-EDE3-CBC", FALSE},
};

/* RSAES-OAEP hashes (used for MGF1 too). */
static const char *const oaep_hashes[] = {"sha1", "sha224", "sha256",
    "sha384", "sha512"};

/* Set *err to the OpenSSL reason for a failure of WHAT; clears the queue. */
static void
openssl_error(GError **err, const char *what)
{
	unsigned long e = ERR_peek_last_error();
	const char *reason = e ? ERR_reason_error_string(e) : NULL;

	g_set_error(err, KMS_ENCRYPT_ERROR, KMS_ENCRYPT_ERROR_FAILED,
	    "%s failed: %s", what, reason ? reason : "unknown OpenSSL error");
	ERR_clear_error();
}

/* Size of DATA once every bare LF has become CRLF; PREV is the byte before
 * DATA ('\0' at the start). */
static gsize
canonical_size(const char *data, gsize len, char prev)
{
	gsize n = len;

	for (gsize i = 0; i < len; i++) {
		if (data[i] == '\n' && (i > 0 ? data[i - 1] : prev) != '\r')
			n++;
	}
	return n;
}

/* Append DATA to OUT with every bare LF made CRLF. */
static void
append_canonical(GByteArray *out, const char *data, gsize len)
{
	gsize start = 0;

	for (gsize i = 0; i < len; i++) {
		if (data[i] != '\n' || (i > 0 ? data[i - 1] == '\r' :
		    out->len > 0 && out->data[out->len - 1] == '\r'))
			continue;
		g_byte_array_append(out, (const guint8 *) data + start,
		    (guint) (i - start));
		g_byte_array_append(out, (const guint8 *) "\r\n", 2);
		start = i + 1;
	}
	g_byte_array_append(out, (const guint8 *) data + start,
	    (guint) (len - start));
}

gboolean
kms_smime_is_content_header(const char *name)
{
	return name != NULL && g_ascii_strncasecmp(name, "Content-", 8) == 0 &&
	    name[8] != '\0';
}

/* A field name of RFC 5322: printable ASCII without colon or space. */
static gboolean
valid_field_name(const char *name)
{
	if (name == NULL || *name == '\0')
		return FALSE;
	for (const char *p = name; *p; p++)
		if (*p < 33 || *p > 126 || *p == ':')
			return FALSE;
	return TRUE;
}

/* Does the field VALUE need a space after the colon? */
static gboolean
needs_space(const char *value)
{
	return *value != ' ' && *value != '\t';
}

GBytes *
kms_smime_entity_from_headers(const char *const *names,
    const char *const *values, gsize n, const void *body, gsize body_len,
    gsize max, GError **err)
{
	gboolean have_ct = FALSE;
	gsize size = 0;
	GByteArray *out;

	if (body == NULL && body_len > 0) {
		g_set_error(err, KMS_ENCRYPT_ERROR, KMS_ENCRYPT_ERROR_INVALID,
		    "no body");
		return NULL;
	}
	/* Count first: refuse an oversized entity before copying it. */
	for (gsize i = 0; i < n; i++) {
		const char *v = values[i] ? values[i] : "";

		if (!valid_field_name(names[i])) {
			g_set_error(err, KMS_ENCRYPT_ERROR,
			    KMS_ENCRYPT_ERROR_INVALID, "header field %zu: "
			    "invalid field name", i + 1);
			return NULL;
		}
		if (!kms_smime_is_content_header(names[i]))
			continue;
		if (g_ascii_strcasecmp(names[i], "Content-Type") == 0)
			have_ct = TRUE;
		size += strlen(names[i]) + 1 + (needs_space(v) ? 1 : 0) +
		    canonical_size(v, strlen(v), '\0') + 2;
	}
	if (!have_ct)
		size += strlen(DEFAULT_CT);
	size += 2 + canonical_size(body, body_len, '\0');
	if (max > 0 && size > max) {
		g_set_error(err, KMS_ENCRYPT_ERROR,
		    KMS_ENCRYPT_ERROR_TOO_LARGE, "MIME entity of %zu bytes "
		    "exceeds the limit of %zu bytes", size, max);
		return NULL;
	}
	if (size > G_MAXUINT) {
		g_set_error(err, KMS_ENCRYPT_ERROR,
		    KMS_ENCRYPT_ERROR_TOO_LARGE, "MIME entity of %zu bytes "
		    "is too large", size);
		return NULL;
	}
	out = g_byte_array_sized_new((guint) size);
	if (!have_ct)
		g_byte_array_append(out, (const guint8 *) DEFAULT_CT,
		    strlen(DEFAULT_CT));
	for (gsize i = 0; i < n; i++) {
		const char *v = values[i] ? values[i] : "";

		if (!kms_smime_is_content_header(names[i]))
			continue;
		g_byte_array_append(out, (const guint8 *) names[i],
		    (guint) strlen(names[i]));
		g_byte_array_append(out, (const guint8 *) ": ",
		    needs_space(v) ? 2 : 1);
		append_canonical(out, v, strlen(v));
		g_byte_array_append(out, (const guint8 *) "\r\n", 2);
	}
	g_byte_array_append(out, (const guint8 *) "\r\n", 2);
	if (body_len > 0)
		append_canonical(out, body, body_len);
	g_assert(out->len == size);
	return g_byte_array_free_to_bytes(out);
}

/* Length of the line at P (up to END) without its LF or CRLF; *next gets
 * the start of the following line. */
static gsize
line_length(const char *p, const char *end, const char **next)
{
	const char *lf = memchr(p, '\n', (size_t) (end - p));
	const char *e = lf ? lf : end;

	*next = lf ? lf + 1 : end;
	if (e > p && e[-1] == '\r' && lf)
		e--;
	return (gsize) (e - p);
}

GBytes *
kms_smime_entity_from_message(const void *msg, gsize len, gsize max,
    GError **err)
{
	const char *p = msg, *end = p + len, *next;
	g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GPtrArray) values = g_ptr_array_new_with_free_func(g_free);
	GString *value = NULL;

	if (msg == NULL && len > 0) {
		g_set_error(err, KMS_ENCRYPT_ERROR, KMS_ENCRYPT_ERROR_INVALID,
		    "no message");
		return NULL;
	}
	/* An mbox "From " line is not a field. */
	if (len >= 5 && memcmp(p, "From ", 5) == 0)
		line_length(p, end, &p);
	while (p < end) {
		gsize ll = line_length(p, end, &next);
		const char *colon;

		if (ll == 0) {		/* the empty line: body follows */
			p = next;
			break;
		}
		if ((*p == ' ' || *p == '\t') && value != NULL) {
			g_string_append(value, "\r\n");
			g_string_append_len(value, p, (gssize) ll);
			p = next;
			continue;
		}
		colon = memchr(p, ':', ll);
		if (colon == NULL || colon == p)
			break;		/* not a field: the body starts here */
		{
			g_autofree char *name = g_strndup(p,
			    (gsize) (colon - p));

			g_strchomp(name);	/* obsolete "Name : value" */
			if (!valid_field_name(name))
				break;
			if (value != NULL)
				g_ptr_array_add(values,
				    g_string_free(value, FALSE));
			g_ptr_array_add(names, g_steal_pointer(&name));
			value = g_string_new_len(colon + 1,
			    (gssize) (ll - (gsize) (colon - p) - 1));
		}
		p = next;
	}
	if (value != NULL)
		g_ptr_array_add(values, g_string_free(value, FALSE));
	return kms_smime_entity_from_headers(
	    (const char *const *) names->pdata,
	    (const char *const *) values->pdata, names->len, p,
	    (gsize) (end - p), max, err);
}

/* Add one header to E. */
static void
add_header(KmsEncrypted *e, const char *name, const char *value)
{
	KmsEncryptHeader *h = g_new(KmsEncryptHeader, 1);

	h->name = g_strdup(name);
	h->value = g_strdup(value);
	g_ptr_array_add(e->headers, h);
}

/* Free one KmsEncryptHeader. */
static void
header_free(gpointer p)
{
	KmsEncryptHeader *h = p;

	g_free(h->name);
	g_free(h->value);
	g_free(h);
}

KmsEncrypted *
kms_encrypted_free(KmsEncrypted *e)
{
	if (e == NULL)
		return NULL;
	if (e->headers)
		g_ptr_array_unref(e->headers);
	if (e->body)
		g_bytes_unref(e->body);
	g_free(e);
	return NULL;
}

char *
kms_encrypted_headers_text(const KmsEncrypted *e)
{
	GString *s = g_string_new(NULL);

	for (guint i = 0; i < e->headers->len; i++) {
		const KmsEncryptHeader *h = g_ptr_array_index(e->headers, i);

		g_string_append_printf(s, "%s: %s\r\n", h->name, h->value);
	}
	return g_string_free(s, FALSE);
}

/* Base64 of DER in lines of 76 characters, each ending CRLF. */
static GBytes *
base64_lines(const unsigned char *der, gsize len)
{
	gsize lines = (len + B64_LINE_BYTES - 1) / B64_LINE_BYTES;
	gsize size = (len + 2) / 3 * 4 + 2 * lines;
	char *out = g_malloc(size + 1), *o = out;

	for (gsize i = 0; i < len; i += B64_LINE_BYTES) {
		gsize k = MIN(B64_LINE_BYTES, len - i);

		o += EVP_EncodeBlock((unsigned char *) o, der + i, (int) k);
		*o++ = '\r';
		*o++ = '\n';
	}
	g_assert((gsize) (o - out) == size);
	return g_bytes_new_take(out, size);
}

/* The description is one line of printable ASCII. */
static gboolean
valid_description(const char *d)
{
	gsize len = strlen(d);

	if (len == 0 || len > DESCRIPTION_MAX)
		return FALSE;
	for (const char *p = d; *p; p++)
		if (*p < 32 || *p > 126)
			return FALSE;
	return TRUE;
}

/* Name of a key type for messages (static). */
static const char *
key_kind_name(EVP_PKEY *key)
{
	const char *name = EVP_PKEY_get0_type_name(key);

	return name ? name : "unknown";
}

static const char *const transport_names[] = {
	[KMS_NEGOTIATE_ECDH] = "ecdh",
	[KMS_NEGOTIATE_RSA_PKCS1] = "rsa-pkcs1",
	[KMS_NEGOTIATE_RSA_OAEP] = "rsaes-oaep",
};

/*
 * Check recipient I (R) and find its OAEP hash (when it uses OAEP) in
 * *md (caller frees). FALSE with *err when it cannot be used.
 */
static gboolean
check_recipient(gsize i, const KmsEncryptRecipient *r, EVP_MD **md,
    GError **err)
{
	g_autofree char *subject = NULL;
	const char *hash;
	EVP_PKEY *key;
	gboolean rsa, ec, known = FALSE;

	*md = NULL;
	if (r->cert == NULL) {
		g_set_error(err, KMS_ENCRYPT_ERROR, KMS_ENCRYPT_ERROR_INVALID,
		    "recipient %zu: no certificate", i + 1);
		return FALSE;
	}
	subject = kms_x509_name_text(X509_get_subject_name(r->cert));
	key = X509_get0_pubkey(r->cert);
	ERR_clear_error();
	if (key == NULL) {
		g_set_error(err, KMS_ENCRYPT_ERROR, KMS_ENCRYPT_ERROR_INVALID,
		    "recipient %zu (%s): unreadable public key", i + 1,
		    subject);
		return FALSE;
	}
	rsa = EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA;
	ec = EVP_PKEY_get_base_id(key) == EVP_PKEY_EC;
	if (!rsa && !ec) {
		g_set_error(err, KMS_ENCRYPT_ERROR, KMS_ENCRYPT_ERROR_INVALID,
		    "recipient %zu (%s): %s key, want RSA or EC", i + 1,
		    subject, key_kind_name(key));
		return FALSE;
	}
	if ((guint) r->transport >= G_N_ELEMENTS(transport_names)) {
		g_set_error(err, KMS_ENCRYPT_ERROR, KMS_ENCRYPT_ERROR_INVALID,
		    "recipient %zu (%s): unknown key transport", i + 1,
		    subject);
		return FALSE;
	}
	if (ec != (r->transport == KMS_NEGOTIATE_ECDH)) {
		g_set_error(err, KMS_ENCRYPT_ERROR, KMS_ENCRYPT_ERROR_INVALID,
		    "recipient %zu (%s): key transport %s does not fit an %s "
		    "key", i + 1, subject, transport_names[r->transport],
		    rsa ? "RSA" : "EC");
		return FALSE;
	}
	if (r->transport != KMS_NEGOTIATE_RSA_OAEP)
		return TRUE;
	hash = r->oaep_hash ? r->oaep_hash : "sha1";
	for (gsize k = 0; k < G_N_ELEMENTS(oaep_hashes); k++)
		known |= g_ascii_strcasecmp(hash, oaep_hashes[k]) == 0;
	if (!known) {
		g_set_error(err, KMS_ENCRYPT_ERROR, KMS_ENCRYPT_ERROR_INVALID,
		    "recipient %zu (%s): unknown OAEP hash, want one of sha1 "
		    "sha224 sha256 sha384 sha512", i + 1, subject);
		return FALSE;
	}
	if ((*md = EVP_MD_fetch(NULL, hash, NULL)) == NULL) {
		openssl_error(err, "fetching the OAEP hash");
		return FALSE;
	}
	return TRUE;
}

/* Add recipient R (checked, OAEP hash MD or NULL) to CMS. */
static gboolean
add_recipient(CMS_ContentInfo *cms, gsize i, const KmsEncryptRecipient *r,
    const EVP_MD *md, GError **err)
{
	CMS_RecipientInfo *ri;
	EVP_PKEY_CTX *pctx;

	ri = CMS_add1_recipient_cert(cms, r->cert, md ? CMS_KEY_PARAM : 0);
	if (ri == NULL) {
		g_autofree char *what = g_strdup_printf("adding recipient %zu",
		    i + 1);

		openssl_error(err, what);
		return FALSE;
	}
	if (md == NULL)
		return TRUE;
	pctx = CMS_RecipientInfo_get0_pkey_ctx(ri);
	if (pctx == NULL ||
	    EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_OAEP_PADDING) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_oaep_md(pctx, md) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) <= 0) {
		openssl_error(err, "setting RSAES-OAEP");
		return FALSE;
	}
	return TRUE;
}

/* Encrypt ENTITY into a new ContentInfo (DER in *der, *der_len). */
static gboolean
encrypt_der(GBytes *entity, const KmsEncryptRecipient *rcpts, gsize n,
    EVP_MD **mds, EVP_CIPHER *cipher, unsigned char **der, gsize *der_len,
    GError **err)
{
	gsize size;
	const void *data = g_bytes_get_data(entity, &size);
	CMS_ContentInfo *cms = NULL;
	BIO *in = NULL;
	gboolean ok = FALSE;
	unsigned char *p;
	int len;

	if (size > INT_MAX) {
		g_set_error(err, KMS_ENCRYPT_ERROR,
		    KMS_ENCRYPT_ERROR_TOO_LARGE, "MIME entity of %zu bytes "
		    "is too large", size);
		return FALSE;
	}
	cms = CMS_encrypt(NULL, NULL, cipher, CMS_BINARY | CMS_PARTIAL);
	if (cms == NULL) {
		openssl_error(err, "CMS_encrypt");
		return FALSE;
	}
	for (gsize i = 0; i < n; i++)
		if (!add_recipient(cms, i, &rcpts[i], mds[i], err))
			goto out;
	in = BIO_new_mem_buf(size ? data : "", (int) size);
	if (in == NULL || CMS_final(cms, in, NULL, CMS_BINARY) != 1) {
		openssl_error(err, "encrypting the message");
		goto out;
	}
	if ((len = i2d_CMS_ContentInfo(cms, NULL)) <= 0) {
		openssl_error(err, "encoding the CMS");
		goto out;
	}
	*der = p = g_malloc((gsize) len);
	if (i2d_CMS_ContentInfo(cms, &p) != len) {
		g_clear_pointer(der, g_free);
		openssl_error(err, "encoding the CMS");
		goto out;
	}
	*der_len = (gsize) len;
	ok = TRUE;
out:
	BIO_free(in);
	CMS_ContentInfo_free(cms);
	return ok;
}

KmsEncrypted *
kms_smime_encrypt(GBytes *entity, const KmsEncryptRecipient *rcpts, gsize n,
    const char *algorithm, const char *description, gsize max, GError **err)
{
	g_autoptr(KmsEncrypted) e = NULL;
	EVP_CIPHER *cipher = NULL;
	EVP_MD **mds = NULL;
	unsigned char *der = NULL;
	gsize der_len = 0, a;
	gboolean ok = FALSE;

	if (entity == NULL) {
		g_set_error(err, KMS_ENCRYPT_ERROR, KMS_ENCRYPT_ERROR_INVALID,
		    "no MIME entity to encrypt");
		return NULL;
	}
	if (max > 0 && g_bytes_get_size(entity) > max) {
		g_set_error(err, KMS_ENCRYPT_ERROR,
		    KMS_ENCRYPT_ERROR_TOO_LARGE, "MIME entity of %zu bytes "
		    "exceeds the limit of %zu bytes",
		    g_bytes_get_size(entity), max);
		return NULL;
	}
	if (n == 0 || rcpts == NULL) {
		g_set_error(err, KMS_ENCRYPT_ERROR, KMS_ENCRYPT_ERROR_INVALID,
		    "no recipient to encrypt for");
		return NULL;
	}
	for (a = 0; algorithm && a < G_N_ELEMENTS(algorithms); a++)
		if (g_ascii_strcasecmp(algorithm, algorithms[a].name) == 0)
			break;
	if (algorithm == NULL || a == G_N_ELEMENTS(algorithms)) {
		g_set_error(err, KMS_ENCRYPT_ERROR, KMS_ENCRYPT_ERROR_INVALID,
		    "unknown content-encryption algorithm, want one of "
		    "aes256-gcm aes128-gcm aes256-cbc aes192-cbc aes128-cbc "
		    "des-ede3-cbc");
		return NULL;
	}
	if (description && !valid_description(description)) {
		g_set_error(err, KMS_ENCRYPT_ERROR, KMS_ENCRYPT_ERROR_INVALID,
		    "Content-Description must be one line of at most %d "
		    "printable ASCII characters", DESCRIPTION_MAX);
		return NULL;
	}
	mds = g_new0(EVP_MD *, n);
	for (gsize i = 0; i < n; i++)
		if (!check_recipient(i, &rcpts[i], &mds[i], err))
			goto out;
	if ((cipher = EVP_CIPHER_fetch(NULL, algorithms[a].cipher,
	    NULL)) == NULL) {
		openssl_error(err, "fetching the cipher");
		goto out;
	}
	if (!encrypt_der(entity, rcpts, n, mds, cipher, &der, &der_len, err))
		goto out;
	e = g_new0(KmsEncrypted, 1);
	e->headers = g_ptr_array_new_with_free_func(header_free);
	e->authenveloped = algorithms[a].aead;
	e->der_size = der_len;
	add_header(e, "Content-Type", e->authenveloped ?
	    "application/pkcs7-mime; smime-type=authEnveloped-data; "
	    "name=smime.p7m" :
	    "application/pkcs7-mime; smime-type=enveloped-data; "
	    "name=smime.p7m");
	add_header(e, "Content-Transfer-Encoding", "base64");
	add_header(e, "Content-Disposition",
	    "attachment; filename=smime.p7m");
	if (description)
		add_header(e, "Content-Description", description);
	e->body = base64_lines(der, der_len);
	ok = TRUE;
out:
	g_free(der);
	for (gsize i = 0; mds && i < n; i++)
		EVP_MD_free(mds[i]);
	g_free(mds);
	EVP_CIPHER_free(cipher);
	return ok ? g_steal_pointer(&e) : NULL;
}

/*
 * Content-Type parsing (RFC 2045 5.1 with RFC 5322 comments and folding).
 * The value is first reduced to its tokens, separators and quoted
 * strings; comments and folding whitespace go.
 */

/* Copy of S without comments and with CR, LF, tab as spaces, quoted
 * strings kept (with their backslashes); g_free. */
static char *
strip_comments(const char *s)
{
	GString *out = g_string_new(NULL);
	int depth = 0;
	gboolean quoted = FALSE;

	for (const char *p = s; *p; p++) {
		char c = *p == '\r' || *p == '\n' || *p == '\t' ? ' ' : *p;

		if (quoted) {
			g_string_append_c(out, c);
			if (c == '\\' && p[1]) {
				g_string_append_c(out, *++p);
			} else if (c == '"')
				quoted = FALSE;
		} else if (depth > 0) {
			if (c == '\\' && p[1])
				p++;
			else if (c == '(')
				depth++;
			else if (c == ')')
				depth--;
		} else if (c == '(') {
			depth = 1;
		} else {
			if (c == '"')
				quoted = TRUE;
			g_string_append_c(out, c);
		}
	}
	return g_string_free(out, FALSE);
}

/* Skip spaces. */
static const char *
skip_ws(const char *p)
{
	while (*p == ' ')
		p++;
	return p;
}

/* A token (RFC 2045) at P, up to a space or tspecial; *p moves past it;
 * g_free, NULL when there is none. */
static char *
read_token(const char **pp)
{
	const char *p = *pp, *start = p;

	while (*p && *p != ' ' && !strchr("()<>@,;:\\\"/[]?=", *p) &&
	    (unsigned char) *p > 32 && (unsigned char) *p < 127)
		p++;
	*pp = p;
	return p > start ? g_strndup(start, (gsize) (p - start)) : NULL;
}

/* A token or quoted string at *pp (unescaped); g_free, NULL if none. */
static char *
read_value(const char **pp)
{
	const char *p = *pp;
	GString *v;

	if (*p != '"')
		return read_token(pp);
	v = g_string_new(NULL);
	for (p++; *p && *p != '"'; p++) {
		if (*p == '\\' && p[1])
			p++;
		g_string_append_c(v, *p);
	}
	*pp = *p ? p + 1 : p;
	return g_string_free(v, FALSE);
}

/* Find the parameters smime-type and name after the type at P; the first
 * of each wins. Parsing stops at anything malformed. */
static void
read_params(const char *p, char **smime_type, char **name)
{
	while (*(p = skip_ws(p)) == ';') {
		g_autofree char *attr = NULL, *value = NULL;

		p = skip_ws(p + 1);
		if ((attr = read_token(&p)) == NULL)
			return;
		p = skip_ws(p);
		if (*p != '=')
			return;
		p = skip_ws(p + 1);
		if ((value = read_value(&p)) == NULL)
			return;
		if (*smime_type == NULL &&
		    g_ascii_strcasecmp(attr, "smime-type") == 0)
			*smime_type = g_steal_pointer(&value);
		else if (*name == NULL && g_ascii_strcasecmp(attr, "name") == 0)
			*name = g_steal_pointer(&value);
	}
}

gboolean
kms_smime_is_encrypted(const char *content_type)
{
	g_autofree char *clean = NULL, *type = NULL, *subtype = NULL;
	g_autofree char *smime_type = NULL, *name = NULL;
	const char *p;
	gsize len;

	if (content_type == NULL || strlen(content_type) > CT_MAX)
		return FALSE;
	clean = strip_comments(content_type);
	p = skip_ws(clean);
	if ((type = read_token(&p)) == NULL || *(p = skip_ws(p)) != '/')
		return FALSE;
	p = skip_ws(p + 1);
	if ((subtype = read_token(&p)) == NULL ||
	    g_ascii_strcasecmp(type, "application") != 0 ||
	    (g_ascii_strcasecmp(subtype, "pkcs7-mime") != 0 &&
	    g_ascii_strcasecmp(subtype, "x-pkcs7-mime") != 0))
		return FALSE;
	read_params(p, &smime_type, &name);
	if (smime_type != NULL)
		return g_ascii_strcasecmp(smime_type, "enveloped-data") == 0 ||
		    g_ascii_strcasecmp(smime_type, "authEnveloped-data") == 0;
	len = name ? strlen(name) : 0;
	return len > 4 && g_ascii_strcasecmp(name + len - 4, ".p7m") == 0;
}
