/*
 * NAME
 *	harvest - find S/MIME signatures in a message and what they announce
 *	(see harvest.h)
 * DESCRIPTION
 *	GMime parses the message; the tree is then walked with an explicit
 *	stack (no recursion), counting depth and parts. For multipart/signed
 *	the signed content is cut out of the original bytes between the
 *	first two delimiter lines, never re-serialised by GMime, and its line
 *	ends made CRLF; the signature part is decoded by GMime. Opaque
 *	signed-data is verified and its encapsulated MIME entity parsed and
 *	walked like any other part. The CMS work is in cmsverify.c.
 * SECURITY
 *	The input is hostile mail. Depth, part count, CMS size and signers
 *	per CMS are bounded; GMime itself stops nesting at 1024 levels. No
 *	message text (boundaries, names, addresses from headers) is put in a
 *	problem line. Nothing is written anywhere.
 * DIAGNOSTICS
 *	Problem lines in the result name the part by its MIME number
 *	("part 2.1", "message" for the top level).
 */
#include "harvest.h"
#include "cmsverify.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include <gmime/gmime.h>
#include <openssl/err.h>

#define READ_CHUNK	(64 * 1024)	/* kms_harvest_fd's read size */

/* One MIME entity waiting to be examined. */
typedef struct {
	GMimeObject *obj;	/* borrowed: Walk.roots keeps the tree alive */
	GBytes *raw;		/* the bytes OBJ was parsed from (a ref) */
	guint depth;		/* 0: the message's top-level entity */
	char *path;		/* MIME part number, "" for the top level */
} WalkItem;

/* State of one kms_harvest call. */
typedef struct {
	const KmsHarvestOptions *o;
	KmsHarvestResult *r;
	KmsCmsHarvest cms;
	GPtrArray *stack;	/* WalkItem *, the next one last */
	GPtrArray *roots;	/* GObject * of each parsed tree (owned) */
	guint examined;		/* entities examined so far */
	gboolean deep_reported;	/* the depth problem line was added */
} Walk;

/* Text for a signer status, as used in logs and JSON. */
const char *
kms_signer_status_name(KmsSignerStatus s)
{
	switch (s) {
	case KMS_SIGNER_TRUSTED:
		return "trusted";
	case KMS_SIGNER_UNTRUSTED_CHAIN:
		return "untrusted-chain";
	case KMS_SIGNER_EXPIRED:
		return "expired";
	case KMS_SIGNER_BAD_SIGNATURE:
		return "bad-signature";
	}
	return "unknown";
}

/* Defaults from harvest.h. */
void
kms_harvest_options_init(KmsHarvestOptions *o)
{
	memset(o, 0, sizeof(*o));
	o->max_depth = 20;
	o->max_parts = 1000;
	o->max_cms_size = 10 * 1024 * 1024;
	o->max_signers = 10;
}

/* g_mime_init() is not thread-safe: run it once per process. */
static void
gmime_init_once(void)
{
	static gsize done;

	if (g_once_init_enter(&done)) {
		g_mime_init();
		g_once_init_leave(&done, 1);
	}
}

/* An empty result; free with kms_harvest_result_free. */
static KmsHarvestResult *
result_new(void)
{
	KmsHarvestResult *r = g_new0(KmsHarvestResult, 1);

	r->signers = g_ptr_array_new_with_free_func(kms_harvest_signer_free);
	r->certs = sk_X509_new_null();
	r->problems = g_ptr_array_new_with_free_func(g_free);
	return r;
}

/* Free R and everything in it; returns NULL. */
KmsHarvestResult *
kms_harvest_result_free(KmsHarvestResult *r)
{
	if (r == NULL)
		return NULL;
	g_ptr_array_unref(r->signers);
	sk_X509_pop_free(r->certs, X509_free);
	g_ptr_array_unref(r->problems);
	g_free(r);
	return NULL;
}

/* Free a WalkItem (for the stack's free function). */
static void
walk_item_free(gpointer p)
{
	WalkItem *it = p;

	g_bytes_unref(it->raw);
	g_free(it->path);
	g_free(it);
}

/* Queue OBJ for examination unless it lies deeper than allowed. */
static void
walk_push(Walk *w, GMimeObject *obj, GBytes *raw, guint depth,
    const char *path)
{
	WalkItem *it;

	if (depth > w->o->max_depth) {
		if (!w->deep_reported)
			kms_harvest_problem(w->r, "nesting deeper than %u "
			    "levels: rest not examined", w->o->max_depth);
		w->deep_reported = TRUE;
		return;
	}
	it = g_new(WalkItem, 1);
	it->obj = obj;
	it->raw = g_bytes_ref(raw);
	it->depth = depth;
	it->path = g_strdup(path);
	g_ptr_array_add(w->stack, it);
}

/* "part 1.2", or "message" for the top level; g_free. */
static char *
where_text(const char *path)
{
	return *path ? g_strdup_printf("part %s", path) : g_strdup("message");
}

/* Is LINE/LEN "--BOUNDARY" or "--BOUNDARY--", then optional white space
 * (the same test GMime's parser makes)? */
static gboolean
is_delimiter(const char *line, gsize len, const char *boundary, gsize blen)
{
	gsize i = blen + 2;

	if (len < i || line[0] != '-' || line[1] != '-' ||
	    memcmp(line + 2, boundary, blen) != 0)
		return FALSE;
	if (len >= i + 2 && line[i] == '-' && line[i + 1] == '-')
		i += 2;
	for (; i < len; i++)
		if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r')
			return FALSE;
	return TRUE;
}

/* P/N with every line end CRLF (bare LF gets a CR); NULL if too large. */
static GBytes *
crlf_canonical(const char *p, gsize n)
{
	GByteArray *out;
	gsize i = 0;

	if (n > G_MAXUINT / 2)
		return NULL;
	out = g_byte_array_sized_new((guint) (n + n / 32 + 2));
	while (i < n) {
		const char *nl = memchr(p + i, '\n', n - i);
		gsize upto = nl ? (gsize) (nl - p) : n;

		g_byte_array_append(out, (const guint8 *) p + i,
		    (guint) (upto - i));
		if (nl == NULL)
			break;
		if (upto == 0 || p[upto - 1] != '\r')
			g_byte_array_append(out, (const guint8 *) "\r", 1);
		g_byte_array_append(out, (const guint8 *) "\n", 1);
		i = upto + 1;
	}
	return g_byte_array_free_to_bytes(out);
}

/*
 * The signed content of multipart/signed OBJ: the bytes of RAW between
 * the line ending the first delimiter and the line end before the next
 * one (RFC 1847, RFC 2046 5.1.1), in canonical form. The search starts at
 * OBJ's own header block, whose position GMime recorded. NULL when the
 * delimiters are not there.
 */
static GBytes *
signed_content(GBytes *raw, GMimeObject *obj)
{
	const char *boundary =
	    g_mime_multipart_get_boundary(GMIME_MULTIPART(obj));
	GMimeHeaderList *headers = g_mime_object_get_header_list(obj);
	gsize len, blen, pos, next, linelen, start = 0, end;
	const char *data = g_bytes_get_data(raw, &len);
	gint64 off = -1;
	int state = 0;		/* 0: headers, 1: preamble, 2: first part */

	for (int i = 0; headers && i < g_mime_header_list_get_count(headers);
	    i++)
		off = MAX(off, g_mime_header_get_offset(
		    g_mime_header_list_get_header_at(headers, i)));
	if (boundary == NULL || *boundary == '\0' || off < 0 ||
	    (guint64) off >= len)
		return NULL;
	blen = strlen(boundary);
	for (pos = (gsize) off; pos < len; pos = next) {
		const char *nl = memchr(data + pos, '\n', len - pos);

		next = nl ? (gsize) (nl - data) + 1 : len;
		linelen = (nl ? (gsize) (nl - data) : len) - pos;
		if (linelen > 0 && data[pos + linelen - 1] == '\r')
			linelen--;
		if (!is_delimiter(data + pos, linelen, boundary, blen)) {
			/* Headers may end at a delimiter, as in GMime. */
			if (state == 0 && linelen == 0)
				state = 1;
			continue;
		}
		if (state < 2) {
			start = next;
			state = 2;
			continue;
		}
		/* The line end before a delimiter belongs to the delimiter. */
		end = pos;
		if (end > start && data[end - 1] == '\n')
			end--;
		if (end > start && data[end - 1] == '\r')
			end--;
		return crlf_canonical(data + start, end - start);
	}
	return NULL;
}

/* PART's content with its transfer encoding undone, at most max_cms_size
 * bytes; NULL (with a problem line unless QUIET) when empty or too big. */
static GBytes *
part_bytes(Walk *w, GMimePart *part, const char *where, gboolean quiet)
{
	GMimeDataWrapper *content = g_mime_part_get_content(part);
	GMimeStream *src = content ? g_mime_data_wrapper_get_stream(content) :
	    NULL;
	guint64 max = w->o->max_cms_size;
	guint64 enc_max = max > (G_MAXUINT64 - 4096) / 3 ? G_MAXUINT64 :
	    max * 3 + 4096;	/* base64 or quoted-printable with line ends */
	gint64 enc = src ? g_mime_stream_length(src) : 0;
	GMimeStream *out;
	GByteArray *a;
	GBytes *b = NULL;

	if (enc <= 0) {
		if (!quiet)
			kms_harvest_problem(w->r, "%s: CMS part is empty",
			    where);
		return NULL;
	}
	if ((guint64) enc > enc_max) {
		kms_harvest_problem(w->r, "%s: CMS part larger than %"
		    G_GUINT64_FORMAT " bytes: not examined", where, max);
		return NULL;
	}
	out = g_mime_stream_mem_new();
	if (g_mime_data_wrapper_write_to_stream(content, out) >= 0) {
		a = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(out));
		if (a->len > max)
			kms_harvest_problem(w->r, "%s: CMS part larger than %"
			    G_GUINT64_FORMAT " bytes: not examined", where,
			    max);
		else if (a->len > 0)
			b = g_bytes_new(a->data, a->len);
		else if (!quiet)
			kms_harvest_problem(w->r, "%s: CMS part is empty",
			    where);
	} else if (!quiet)
		kms_harvest_problem(w->r, "%s: CMS part cannot be decoded",
		    where);
	g_object_unref(out);
	return b;
}

/* The CMS structure in PART (caller frees with CMS_ContentInfo_free). */
static CMS_ContentInfo *
part_cms(Walk *w, GMimePart *part, const char *where, gboolean quiet)
{
	GBytes *der = part_bytes(w, part, where, quiet);
	const unsigned char *p;
	CMS_ContentInfo *cms = NULL;
	gsize len;

	if (der == NULL)
		return NULL;
	p = g_bytes_get_data(der, &len);
	if (len <= LONG_MAX)
		cms = d2i_CMS_ContentInfo(NULL, &p, (long) len);
	ERR_clear_error();
	if (cms == NULL && !quiet)
		kms_harvest_problem(w->r, "%s: not a CMS structure", where);
	g_bytes_unref(der);
	return cms;
}

/* Is S an S/MIME detached-signature media type? */
static gboolean
is_pkcs7_signature_text(const char *s)
{
	return s &&
	    (g_ascii_strcasecmp(s, "application/pkcs7-signature") == 0 ||
	    g_ascii_strcasecmp(s, "application/x-pkcs7-signature") == 0);
}

/* Is OBJ a multipart/signed whose protocol, or else whose second part, is
 * an S/MIME signature (PGP/MIME and others are plain multiparts here)? */
static gboolean
is_smime_signed(GMimeObject *obj)
{
	GMimeContentType *ct = g_mime_object_get_content_type(obj);
	GMimeObject *second;
	char *type;
	gboolean yes;

	if (!g_mime_content_type_is_type(ct, "multipart", "signed"))
		return FALSE;
	if (is_pkcs7_signature_text(g_mime_content_type_get_parameter(ct,
	    "protocol")))
		return TRUE;
	if (g_mime_multipart_get_count(GMIME_MULTIPART(obj)) < 2)
		return FALSE;
	second = g_mime_multipart_get_part(GMIME_MULTIPART(obj), 1);
	type = g_mime_content_type_get_mime_type(
	    g_mime_object_get_content_type(second));
	yes = is_pkcs7_signature_text(type);
	g_free(type);
	return yes;
}

/* Verify a multipart/signed: first part's exact bytes, second part's CMS. */
static void
examine_detached(Walk *w, WalkItem *it)
{
	GMimeMultipart *mp = GMIME_MULTIPART(it->obj);
	char *where = where_text(it->path);
	CMS_ContentInfo *cms = NULL;
	GBytes *content = NULL;
	GMimeObject *sig;
	int n;

	w->r->signatures++;
	if ((n = g_mime_multipart_get_count(mp)) != 2) {
		kms_harvest_problem(w->r, "%s: multipart/signed with %d parts, "
		    "want 2", where, n);
		goto out;
	}
	sig = g_mime_multipart_get_part(mp, 1);
	if (!GMIME_IS_PART(sig)) {
		kms_harvest_problem(w->r, "%s: signature is not a leaf part",
		    where);
		goto out;
	}
	if ((content = signed_content(it->raw, it->obj)) == NULL) {
		kms_harvest_problem(w->r, "%s: signed content not found "
		    "between the boundaries", where);
		goto out;
	}
	if ((cms = part_cms(w, GMIME_PART(sig), where, FALSE)) != NULL)
		kms_cms_harvest(&w->cms, cms, content, NULL, where);
out:
	CMS_ContentInfo_free(cms);
	if (content)
		g_bytes_unref(content);
	g_free(where);
}

/* Parse DATA (an encapsulated MIME entity) into a new tree; NULL if GMime
 * finds nothing. The returned object keeps its own copy of DATA. */
static GMimeObject *
parse_entity(GBytes *data)
{
	gsize len;
	const void *p = g_bytes_get_data(data, &len);
	GMimeStream *s;
	GMimeParser *parser;
	GMimeObject *obj;

	if (len == 0 || len > G_MAXUINT)
		return NULL;
	s = g_mime_stream_mem_new_with_buffer(p, len);
	parser = g_mime_parser_new_with_stream(s);
	obj = g_mime_parser_construct_part(parser, NULL);
	g_object_unref(parser);
	g_object_unref(s);
	return obj;
}

/*
 * An application/pkcs7-mime part: signed-data is verified and its content
 * walked. Without smime-type, a ".p7m" file that turns out to be signed-
 * data counts too (quietly skipped when it is not).
 */
static void
examine_opaque(Walk *w, WalkItem *it)
{
	GMimeContentType *ct = g_mime_object_get_content_type(it->obj);
	const char *type, *name;
	CMS_ContentInfo *cms;
	GBytes *econtent = NULL;
	GMimeObject *inner;
	gboolean sure;
	char *where;
	gsize n;

	if (!g_mime_content_type_is_type(ct, "application", "pkcs7-mime") &&
	    !g_mime_content_type_is_type(ct, "application", "x-pkcs7-mime"))
		return;
	type = g_mime_content_type_get_parameter(ct, "smime-type");
	if (type != NULL) {
		if (g_ascii_strcasecmp(type, "signed-data") != 0)
			return;
		sure = TRUE;
	} else {
		name = g_mime_part_get_filename(GMIME_PART(it->obj));
		if (name == NULL || (n = strlen(name)) < 4 ||
		    g_ascii_strcasecmp(name + n - 4, ".p7m") != 0)
			return;
		sure = FALSE;
	}
	where = where_text(it->path);
	if (sure)
		w->r->signatures++;
	cms = part_cms(w, GMIME_PART(it->obj), where, !sure);
	if (cms != NULL && !sure) {
		if (OBJ_obj2nid(CMS_get0_type(cms)) != NID_pkcs7_signed)
			goto out;
		w->r->signatures++;
	}
	if (cms != NULL)
		kms_cms_harvest(&w->cms, cms, NULL, &econtent, where);
	if (econtent != NULL) {
		if ((inner = parse_entity(econtent)) != NULL) {
			g_ptr_array_add(w->roots, inner);
			walk_push(w, inner, econtent, it->depth + 1, it->path);
		} else
			kms_harvest_problem(w->r, "%s: signed content is not a "
			    "MIME entity", where);
	}
out:
	CMS_ContentInfo_free(cms);
	if (econtent)
		g_bytes_unref(econtent);
	g_free(where);
}

/* Examine one entity and queue its children, the first on top. */
static void
examine(Walk *w, WalkItem *it)
{
	GMimeObject *obj = it->obj;

	if (GMIME_IS_MESSAGE_PART(obj)) {
		GMimeMessage *m = g_mime_message_part_get_message(
		    GMIME_MESSAGE_PART(obj));
		GMimeObject *inner = m ? g_mime_message_get_mime_part(m) : NULL;

		if (inner)
			walk_push(w, inner, it->raw, it->depth + 1, it->path);
	} else if (GMIME_IS_MULTIPART(obj)) {
		int n = g_mime_multipart_get_count(GMIME_MULTIPART(obj));

		if (is_smime_signed(obj)) {
			examine_detached(w, it);
			n = MIN(n, 1);	/* the signed content may hold more */
		}
		/* More children than the part limit would never be reached. */
		n = (int) MIN((guint) n, w->o->max_parts);
		for (int i = n - 1; i >= 0; i--) {
			char *path = *it->path ? g_strdup_printf("%s.%d",
			    it->path, i + 1) : g_strdup_printf("%d", i + 1);

			walk_push(w, g_mime_multipart_get_part(
			    GMIME_MULTIPART(obj), i), it->raw, it->depth + 1,
			    path);
			g_free(path);
		}
	} else if (GMIME_IS_PART(obj)) {
		examine_opaque(w, it);
	}
}

/* Harvest from ARRAY (taken over: the parser's stream owns it). */
static KmsHarvestResult *
harvest_array(const KmsHarvestOptions *o, GByteArray *array)
{
	KmsHarvestOptions defaults;
	KmsHarvestResult *r = result_new();
	Walk w = {0};
	GMimeStream *stream;
	GMimeParser *parser;
	GMimeMessage *msg;
	GMimeObject *top;
	GBytes *raw;

	if (o == NULL) {
		kms_harvest_options_init(&defaults);
		o = &defaults;
	}
	gmime_init_once();
	w.o = o;
	w.r = r;
	if (!kms_cms_harvest_init(&w.cms, o, r)) {
		g_byte_array_unref(array);
		kms_cms_harvest_clear(&w.cms);
		return r;
	}
	w.stack = g_ptr_array_new_with_free_func(walk_item_free);
	w.roots = g_ptr_array_new_with_free_func(g_object_unref);
	stream = g_mime_stream_mem_new_with_byte_array(array);
	/* RAW shares the stream's buffer and keeps the stream alive. */
	raw = g_bytes_new_with_free_func(array->data, array->len,
	    g_object_unref, g_object_ref(stream));
	parser = g_mime_parser_new_with_stream(stream);
	g_mime_parser_set_format(parser, GMIME_FORMAT_MESSAGE);
	msg = g_mime_parser_construct_message(parser, NULL);
	g_object_unref(parser);
	g_object_unref(stream);
	if (msg == NULL)
		kms_harvest_problem(r, "message cannot be parsed as MIME");
	else {
		g_ptr_array_add(w.roots, msg);
		if ((top = g_mime_message_get_mime_part(msg)) != NULL)
			walk_push(&w, top, raw, 0, "");
	}
	while (w.stack->len > 0) {
		WalkItem *it;

		if (w.examined >= o->max_parts) {
			kms_harvest_problem(r, "more than %u MIME parts: rest "
			    "not examined", o->max_parts);
			break;
		}
		it = g_ptr_array_steal_index(w.stack, w.stack->len - 1);
		w.examined++;
		examine(&w, it);
		walk_item_free(it);
	}
	g_ptr_array_unref(w.stack);
	g_ptr_array_unref(w.roots);
	g_bytes_unref(raw);
	kms_cms_harvest_clear(&w.cms);
	ERR_clear_error();
	return r;
}

/* Harvest a message held in memory (copied: GMime needs its own buffer). */
KmsHarvestResult *
kms_harvest(const KmsHarvestOptions *o, const void *msg, gsize len)
{
	GByteArray *array;

	if (len > G_MAXUINT || (msg == NULL && len > 0)) {
		KmsHarvestResult *r = result_new();

		kms_harvest_problem(r, "message of %" G_GSIZE_FORMAT " bytes "
		    "not examined", len);
		return r;
	}
	array = g_byte_array_sized_new((guint) len);
	if (len > 0)
		g_byte_array_append(array, msg, (guint) len);
	return harvest_array(o, array);
}

/* Read all of FD from offset 0 (pread: the caller's offset is left alone;
 * a pipe is read as it comes) and harvest it. FD stays open. */
KmsHarvestResult *
kms_harvest_fd(const KmsHarvestOptions *o, int fd)
{
	GByteArray *array = g_byte_array_new();
	gboolean seekable = TRUE;
	KmsHarvestResult *r;
	guint used = 0;
	ssize_t n;
	int e;

	for (;;) {
		if (used > G_MAXUINT - READ_CHUNK) {
			e = EFBIG;
			goto fail;
		}
		g_byte_array_set_size(array, used + READ_CHUNK);
		n = seekable ? pread(fd, array->data + used, READ_CHUNK,
		    (off_t) used) : read(fd, array->data + used, READ_CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && seekable && errno == ESPIPE && used == 0) {
			seekable = FALSE;
			continue;
		}
		if (n < 0) {
			e = errno;
			goto fail;
		}
		if (n == 0)
			break;
		used += (guint) n;
	}
	g_byte_array_set_size(array, used);
	return harvest_array(o, array);
fail:
	g_byte_array_unref(array);
	r = result_new();
	kms_harvest_problem(r, "cannot read the message: %s", g_strerror(e));
	return r;
}
