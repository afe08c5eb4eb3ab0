/*
 * NAME
 *	encryptjob - outbound S/MIME encryption at end of message
 * DESCRIPTION
 *	When does it run: at end of headers kms_encrypt_may_apply() says
 *	whether the message must be read to its end for encryption: when
 *	the global [policy] encrypt is not never, when the vault holds any
 *	policy override (cached, state.h), or when the trigger header
 *	("X-KMS-Encrypt: yes") or subject tag ("[secure]") of the global
 *	policy is present. Otherwise (the common case of a plain gateway)
 *	nothing is asked of the vault.
 *
 *	At end of message (after harvesting) kms_job_encrypt() resolves the
 *	policies of the sender and of every recipient (keyvault/outbound.h,
 *	the code path of kmsctl negotiate); the trigger header and subject
 *	tag are those of the sender's policy; the message's level is the
 *	strictest of all, required when triggered. Then:
 *	  never		delivered as it is;
 *	  already encrypted (kms_smime_is_encrypted on the top-level
 *			Content-Type): never encrypted twice; the trigger
 *			header and tag are removed;
 *	  oversize	(over [milter] max_message_size): required -> 552
 *			5.3.4 (it will not get smaller), if-possible ->
 *			delivered as it is (logged);
 *	  every recipient has a usable certificate -> encrypted, to the
 *			sender's own certificate too when it has one;
 *	  some have none: required -> 550 5.7.1 naming them; if-possible ->
 *			[policy] mixed of the sender: plain (default: delivered
 *			as it is, logged), reject (550 5.7.1), split (the
 *			encrypted message goes to the recipients with
 *			certificates, the others are removed with smfi_delrcpt
 *			and get the original bytes as a new message submitted
 *			to [mail] submit with the original envelope sender,
 *			marked X-KMS-Split; submitted last, after every
 *			change was sent to the MTA, so that a deferred
 *			message has no copy out; not submitted again for
 *			a retry of a message whose copy is out, see
 *			copies_sent).
 *	The negotiation refusing (no algorithm every recipient supports)
 *	counts as those blocking recipients lacking a certificate; the
 *	sender's own certificate is dropped first when it alone blocks.
 *
 *	Encryption: the inner entity is the original content headers and
 *	body (smime/encrypt.h, canonical CRLF; a signed message is wrapped
 *	whole); the body is replaced by the base64 CMS, every Content-*
 *	header is deleted (each occurrence, last first) and the new ones
 *	added, MIME-Version becomes 1.0, the trigger header, any X-KMS-Split
 *	and any X-KMS-Info from outside are deleted, the subject tag is cut
 *	from Subject, and "X-KMS-Info: encrypted ALG for N recipients" is
 *	added.
 *
 *	The split marker: "X-KMS-Split: ID" with 128 random bits, known
 *	only to this process while it submits the copy (the MTA runs the
 *	milter on the copy before it answers the submission, so the copy
 *	always comes back while the ID is registered). A copy with a known
 *	ID is delivered as it is when its level is if-possible (its
 *	recipients were found to have no certificate a moment ago), the
 *	marker removed. A forged or stale marker is unknown and means
 *	nothing; and even a known marker never overrides required: required
 *	never splits, so a message that must be encrypted is handled as any
 *	other. Without any marker the copy could not loop either: all its
 *	recipients lack certificates, and if-possible delivers such a
 *	message in clear.
 * SECURITY
 *	Only public keys are used. Nothing is sent in clear when the level
 *	is required: every failure then refuses (550/552) or defers (451).
 *	Log lines name addresses, algorithms and counts, never content.
 * DIAGNOSTICS
 *	One line per decision with the queue id. Vault unreachable: 451
 *	4.3.0 when required or triggered (also when the level cannot be
 *	known and the global policy or a trigger says required), else
 *	[milter] on_db_error (accept: delivered as it is, logged).
 */
#include "autoconfig.h"
#include "milter.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/rand.h>

#include "common/address.h"
#include "common/log.h"
#include "common/mailer.h"
#include "keyvault/db.h"
#include "keyvault/outbound.h"
#include "smime/encrypt.h"

#define SPLIT_HEADER	"X-KMS-Split"
#define INFO_HEADER	"X-KMS-Info"
#define NAMES_SHOWN	5	/* addresses named in a reply */

/* IDs of split copies being submitted by this process. */
static GMutex split_lock;
static GHashTable *split_ids;

static void
split_register(const char *id)
{
	g_mutex_lock(&split_lock);
	if (split_ids == NULL)
		split_ids = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	g_hash_table_add(split_ids, g_strdup(id));
	g_mutex_unlock(&split_lock);
}

static void
split_unregister(const char *id)
{
	g_mutex_lock(&split_lock);
	if (split_ids)
		g_hash_table_remove(split_ids, id);
	g_mutex_unlock(&split_lock);
}

static gboolean
split_known(const char *value)
{
	g_autofree char *id = g_strstrip(g_strdup(value));
	gboolean known;

	g_mutex_lock(&split_lock);
	known = split_ids && g_hash_table_contains(split_ids, id);
	g_mutex_unlock(&split_lock);
	return known;
}

/*
 * Plain copies submitted, by message: the SHA-256 of the envelope
 * sender, the Message-ID, the copy's recipients (lower case, sorted) and
 * the body. When the MTA did not get the verdict after a copy went out
 * (its connection broke), it defers the message and the client sends it
 * again: that copy is then not submitted a second time. In memory only,
 * for COPY_MEMORY seconds and at most COPY_MEMORY_MAX messages. A message
 * without a Message-ID is never matched: two different messages could
 * share everything else.
 */
#define COPY_MEMORY	(24 * 3600)
#define COPY_MEMORY_MAX	10000
static GHashTable *copies_sent;	/* hex SHA-256 -> gint64 *: when, monotonic µs */

static gboolean
copy_expired(gpointer key, gpointer value, gpointer now)
{
	(void)key;
	return *(gint64 *)now - *(gint64 *)value > (gint64)COPY_MEMORY * G_USEC_PER_SEC;
}

/* Was the copy with KEY submitted within COPY_MEMORY? */
static gboolean
copy_sent(const char *key)
{
	gint64 now = g_get_monotonic_time(), *when;
	gboolean sent;

	g_mutex_lock(&split_lock);
	when = copies_sent ? g_hash_table_lookup(copies_sent, key) : NULL;
	sent = when != NULL && !copy_expired(NULL, when, &now);
	g_mutex_unlock(&split_lock);
	return sent;
}

static void
copy_record(const char *key)
{
	gint64 now = g_get_monotonic_time(), *when = g_new(gint64, 1);

	*when = now;
	g_mutex_lock(&split_lock);
	if (copies_sent == NULL)
		copies_sent = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
	if (g_hash_table_size(copies_sent) >= COPY_MEMORY_MAX)
		g_hash_table_foreach_remove(copies_sent, copy_expired, &now);
	if (g_hash_table_size(copies_sent) >= COPY_MEMORY_MAX)
		g_hash_table_remove_all(copies_sent);
	g_hash_table_insert(copies_sent, g_strdup(key), when);
	g_mutex_unlock(&split_lock);
}

/* Case-insensitive search for NEEDLE in HAY; NULL when absent. */
static const char *
find_nocase(const char *hay, const char *needle)
{
	gsize n = strlen(needle);

	if (n == 0)
		return NULL;
	for (const char *p = hay; *p; p++)
		if (g_ascii_strncasecmp(p, needle, n) == 0)
			return p;
	return NULL;
}

static gboolean
header_triggers(const char *trigger, const char *name, const char *value)
{
	g_autofree char *v = NULL;

	if (trigger == NULL || g_ascii_strcasecmp(name, trigger) != 0)
		return FALSE;
	v = g_strstrip(g_strdup(value));
	return g_ascii_strcasecmp(v, "yes") == 0;
}

static gboolean
subject_triggers(const char *tag, const char *name, const char *value)
{
	return tag != NULL && g_ascii_strcasecmp(name, "Subject") == 0 &&
	    find_nocase(value, tag) != NULL;
}

gboolean
kms_encrypt_trigger_header(const KmsMilterState *st, const char *name, const char *value)
{
	const KmsPolicy *p = st->global_policy;

	if (p == NULL)
		return FALSE;
	return header_triggers(p->header, name, value) || subject_triggers(p->subject_tag, name, value);
}

gboolean
kms_encrypt_may_apply(KmsConnection *conn, KmsMessage *msg)
{
	KmsMilterState *st = conn->state;

	if (msg->rcpts == 0)
		return FALSE;
	if (st->global_policy == NULL || st->global_policy->encrypt != KMS_ENCRYPT_NEVER ||
	    msg->trigger_seen)
		return TRUE;
	return kms_state_policy_rows(st, msg->qid);
}

/* "a, b, c and 7 more" of the N addresses in A. */
static char *
names(GPtrArray *a)
{
	GString *s = g_string_new(NULL);

	for (guint i = 0; i < a->len && i < NAMES_SHOWN; i++)
		g_string_append_printf(s, "%s%s", i ? ", " : "", (char *)g_ptr_array_index(a, i));
	if (a->len > NAMES_SHOWN)
		g_string_append_printf(s, " and %u more", a->len - NAMES_SHOWN);
	return g_string_free(s, FALSE);
}

/* A printable copy of TEXT, at most MAX bytes. */
static char *
printable(const char *text, gsize max)
{
	char *t = g_strndup(text, max);

	for (char *p = t; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f || *p == '%')
			*p = '?';
	return t;
}

static KmsVerdict
refuse(KmsMessage *msg, const char *code, const char *xcode, const char *fmt, ...)
    G_GNUC_PRINTF(4, 5);

static KmsVerdict
refuse(KmsMessage *msg, const char *code, const char *xcode, const char *fmt, ...)
{
	va_list ap;
	g_autofree char *text = NULL;

	va_start(ap, fmt);
	text = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	msg->reply_code = code;
	msg->reply_xcode = xcode;
	g_free(msg->reply_text);
	msg->reply_text = printable(text, 400);
	kms_log(LOG_NOTICE, msg->qid, "encryption: refused %s %s %s", code, xcode, msg->reply_text);
	return KMS_VERDICT_REJECT;
}

/* The whole spool from OFFSET, NULL with *err when it cannot be read.
 * A spool in memory is not copied: the bytes are the spool's own and
 * must not outlive the message (end of message is the only user). */
static GBytes *
spool_bytes(KmsSpool *sp, gsize offset, GError **err)
{
	gsize size = kms_spool_size(sp), len, done = 0;
	guint8 *buf;
	int fd;

	if (offset > size)
		offset = size;
	len = size - offset;
	if (kms_spool_memory(sp) != NULL)
		return g_bytes_new_with_free_func(kms_spool_memory(sp) + offset, len, NULL, NULL);
	if ((fd = kms_spool_fd(sp)) < 0) {
		g_set_error(err, G_FILE_ERROR, G_FILE_ERROR_FAILED, "message not spooled");
		return NULL;
	}
	buf = g_malloc(len + 1);
	while (done < len) {
		ssize_t r = pread(fd, buf + done, len - done, (off_t)(offset + done));

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			g_set_error(err, G_FILE_ERROR, g_file_error_from_errno(r < 0 ? errno : EIO),
			    "cannot read the spooled message: %s", g_strerror(r < 0 ? errno : EIO));
			g_free(buf);
			return NULL;
		}
		done += (gsize)r;
	}
	return g_bytes_new_take(buf, len);
}

/* A bare address a policy can be looked up for, or NULL. */
static char *
usable_address(const char *s)
{
	g_autofree char *n = s ? kms_address_normalize(s, -1) : NULL;
	g_autofree char *scope = n ? kms_policy_scope_name(n, FALSE, NULL) : NULL;

	return scope ? g_steal_pointer(&n) : NULL;
}

/* The envelope recipients as bare addresses, without the enroll address
 * of a reply; those that are no usable address (a local name without a
 * domain ...) go to ODD as written: they have no certificate, and the
 * global policy is theirs. */
static GPtrArray *
bare_rcpts(const KmsConnection *conn, const KmsMessage *msg, GPtrArray *odd)
{
	GPtrArray *a = g_ptr_array_new_with_free_func(g_free);

	for (guint i = 0; i < msg->rcpt_list->len; i++) {
		const char *r = g_ptr_array_index(msg->rcpt_list, i);
		char *n;

		if (msg->enroll_rcpts->len && kms_state_is_enroll_rcpt(conn->state, r))
			continue;
		if ((n = usable_address(r)) != NULL)
			g_ptr_array_add(a, n);
		else
			g_ptr_array_add(odd, g_strdup(r));
	}
	return a;
}

/* Level when the vault cannot be asked: what the global policy and the
 * global trigger say. */
static KmsVerdict
db_failed(KmsConnection *conn, KmsMessage *msg, KmsEncryptLevel known, const GError *e)
{
	KmsMilterState *st = conn->state;
	gboolean required = known == KMS_ENCRYPT_REQUIRED || msg->trigger_seen ||
	    st->global_policy == NULL || st->global_policy->encrypt == KMS_ENCRYPT_REQUIRED;

	if (required || st->tempfail_on_db_error) {
		kms_log(LOG_ERR, msg->qid, "encryption: vault unavailable (%s): message deferred%s",
		    e ? e->message : "?", required ? " (encryption may be required)" :
		    " (on_db_error = tempfail)");
		return KMS_VERDICT_TEMPFAIL;
	}
	kms_log(LOG_ERR, msg->qid, "encryption: vault unavailable (%s): message delivered as it is"
	    " (on_db_error = accept)", e ? e->message : "?");
	return KMS_VERDICT_ACCEPT;
}

/* Policies and certificates, one retry on a transient error. With
 * CERTS FALSE only the policies. */
static KmsOutbound *
lookup(KmsMilterState *st, const char *from, GPtrArray *rcpts, KmsOutbound *o, GError **err)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		g_autoptr(GError) e = NULL;
		PGconn *c = kms_db_pool_get(st->pool, &e);
		KmsOutbound *r = NULL;

		if (c != NULL) {
			if (o == NULL)
				r = kms_outbound_policies(c, st->cfg, from,
				    (const char *const *)rcpts->pdata, rcpts->len, &e);
			else if (kms_outbound_certificates(c, o, &e))
				r = o;
			else {
				/* start again clean */
				g_ptr_array_set_size(o->found, 0);
				g_ptr_array_set_size(o->missing, 0);
				o->sender = kms_recipient_free(o->sender);
			}
		}
		kms_db_pool_put(st->pool, c);
		if (r != NULL)
			return r;
		if (attempt == 1 || !g_error_matches(e, KMS_DB_ERROR, KMS_DB_ERROR_RETRY)) {
			g_propagate_error(err, g_steal_pointer(&e));
			return NULL;
		}
	}
	return NULL;
}

/* Header edits, collected, applied at the end. */
typedef struct {
	SMFICTX *ctx;
	const KmsConnection *conn;
	KmsMessage *msg;
	gboolean failed;
} Edit;

static void
edit_check(Edit *ed, int rc, const char *what, const char *name)
{
	if (rc != MI_SUCCESS && !ed->failed) {
		ed->failed = TRUE;
		kms_log(LOG_ERR, ed->msg->qid, "encryption: the MTA refused to %s %s", what, name);
	}
}

/* Change occurrence IDX (1-based) of NAME to VALUE, NULL: delete. */
static void
edit_change(Edit *ed, const char *name, int idx, const char *value)
{
	g_autofree char *v = value && ed->conn->leadspc ? g_strconcat(" ", value, NULL) : NULL;

	edit_check(ed, smfi_chgheader(ed->ctx, (char *)name, idx, value ? (v ? v : (char *)value) :
	    NULL), value ? "change" : "delete", name);
}

static void
edit_add(Edit *ed, const char *name, const char *value)
{
	g_autofree char *v = ed->conn->leadspc ? g_strconcat(" ", value, NULL) : g_strdup(value);

	edit_check(ed, smfi_addheader(ed->ctx, (char *)name, v), "add", name);
}

/* Occurrence number (1-based) of header I among those with its name. */
static int
occurrence(const KmsMessage *msg, guint i)
{
	const char *name = g_ptr_array_index(msg->hdr_names, i);
	int n = 1;

	for (guint j = 0; j < i; j++)
		if (g_ascii_strcasecmp(g_ptr_array_index(msg->hdr_names, j), name) == 0)
			n++;
	return n;
}

/* VALUE without every occurrence of TAG, spaces around it collapsed. */
static char *
cut_tag(const char *value, const char *tag)
{
	GString *s = g_string_new(NULL);
	const char *p = value, *t;
	gboolean lead = *value == ' ';

	while ((t = find_nocase(p, tag)) != NULL) {
		g_string_append_len(s, p, t - p);
		p = t + strlen(tag);
		if (s->len && s->str[s->len - 1] == ' ')
			while (*p == ' ')
				p++;
	}
	g_string_append(s, p);
	/* the tag was often first: "[secure] Hello" -> "Hello" */
	{
		char *c = g_strstrip(g_string_free(s, FALSE));
		char *r = lead ? g_strconcat(" ", c, NULL) : g_strdup(c);

		g_free(c);
		return r;
	}
}

typedef struct {
	const char *name, *value;
} NewHeader;

/* The index of NAME among the N headers NEW, or -1. */
static int
new_index(const NewHeader *new, guint n, const char *name)
{
	for (guint k = 0; k < n; k++)
		if (g_ascii_strcasecmp(new[k].name, name) == 0)
			return (int)k;
	return -1;
}

/* Remove the trigger header, the subject tag and our own headers from
 * outside. With the N headers NEW (the encrypted message's MIME-Version,
 * Content-* and X-KMS-Info): the first occurrence of each of their names
 * is changed in place, every other Content-* and MIME-Version header is
 * removed, and those the message did not have are added at the end
 * (one change instead of a removal and an addition: fewer replies to
 * the MTA). Last header first, so occurrence numbers stay right. */
static void
edit_headers(Edit *ed, const KmsPolicy *sp, const NewHeader *new, guint n)
{
	KmsMessage *msg = ed->msg;
	g_autofree gboolean *placed = g_new0(gboolean, n + 1);

	for (guint i = msg->hdr_names->len; i-- > 0;) {
		const char *name = g_ptr_array_index(msg->hdr_names, i);
		const char *v = g_ptr_array_index(msg->hdr_values, i);
		int k = new ? new_index(new, n, name) : -1;
		int occ = occurrence(msg, i);

		if (k >= 0 && occ == 1 && (sp->header == NULL ||
		    g_ascii_strcasecmp(name, sp->header) != 0)) {
			placed[k] = TRUE;
			edit_change(ed, name, occ, new[k].value);
		} else if ((sp->header && g_ascii_strcasecmp(name, sp->header) == 0) ||
		    g_ascii_strcasecmp(name, SPLIT_HEADER) == 0 ||
		    g_ascii_strcasecmp(name, INFO_HEADER) == 0 ||
		    (new && (kms_smime_is_content_header(name) ||
		    g_ascii_strcasecmp(name, "MIME-Version") == 0)))
			edit_change(ed, name, occ, NULL);
		else if (subject_triggers(sp->subject_tag, name, v)) {
			g_autofree char *cut = cut_tag(v, sp->subject_tag);

			/* the value is passed on as stored: leading space kept */
			edit_check(ed, smfi_chgheader(ed->ctx, (char *)name, occ,
			    ed->conn->leadspc ? cut : cut + (*cut == ' ')), "change", name);
		}
	}
	for (guint k = 0; k < n; k++)
		if (!placed[k])
			edit_add(ed, new[k].name, new[k].value);
}

/* Is the trigger of the sender's policy present? */
static gboolean
triggered(const KmsMessage *msg, const KmsPolicy *sp)
{
	for (guint i = 0; i < msg->hdr_names->len; i++) {
		const char *n = g_ptr_array_index(msg->hdr_names, i);
		const char *v = g_ptr_array_index(msg->hdr_values, i);

		if (header_triggers(sp->header, n, v) || subject_triggers(sp->subject_tag, n, v))
			return TRUE;
	}
	return FALSE;
}

static const char *
first_header(const KmsMessage *msg, const char *name)
{
	for (guint i = 0; i < msg->hdr_names->len; i++)
		if (g_ascii_strcasecmp(g_ptr_array_index(msg->hdr_names, i), name) == 0)
			return g_ptr_array_index(msg->hdr_values, i);
	return NULL;
}

/* Move the found recipients named in BLOCKERS to missing. */
static void
drop_blockers(KmsOutbound *o, GPtrArray *blockers)
{
	for (guint b = 0; blockers && b < blockers->len; b++)
		for (guint i = 0; i < o->found->len; i++) {
			KmsRecipient *r = g_ptr_array_index(o->found, i);

			if (g_ascii_strcasecmp(r->address, g_ptr_array_index(blockers, b)) == 0) {
				g_ptr_array_add(o->missing, g_strdup(r->address));
				g_ptr_array_remove_index(o->found, i);
				break;
			}
		}
}

static gint
compare_strings(gconstpointer a, gconstpointer b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
checksum_string(GChecksum *ck, const char *s)
{
	g_checksum_update(ck, (const guchar *)s, (gssize)strlen(s) + 1);	/* with its NUL */
}

/* The key of the plain copy of MSG (its body BODY) for MISSING (see
 * copies_sent), or NULL when the message has no Message-ID. */
static char *
copy_key(const KmsMessage *msg, GBytes *body, const char *from, GPtrArray *missing)
{
	const char *mid = first_header(msg, "Message-ID");
	g_autoptr(GPtrArray) r = g_ptr_array_new_with_free_func(g_free);
	g_autofree char *id = NULL;
	GChecksum *ck;
	char *key;
	gsize len;
	const guint8 *data;

	if (mid == NULL || *(id = g_strstrip(g_strdup(mid))) == '\0')
		return NULL;
	for (guint i = 0; i < missing->len; i++)
		g_ptr_array_add(r, g_ascii_strdown(g_ptr_array_index(missing, i), -1));
	g_ptr_array_sort(r, compare_strings);
	ck = g_checksum_new(G_CHECKSUM_SHA256);
	checksum_string(ck, from ? from : "");
	checksum_string(ck, id);
	for (guint i = 0; i < r->len; i++)
		checksum_string(ck, g_ptr_array_index(r, i));
	data = g_bytes_get_data(body, &len);
	g_checksum_update(ck, data, (gssize)len);
	key = g_strdup(g_checksum_get_string(ck));
	g_checksum_free(ck);
	return key;
}

/* Submit the original message to the recipients in MISSING as a new
 * message marked with a fresh split ID. */
static gboolean
submit_copy(KmsConnection *conn, KmsMessage *msg, const char *from, GPtrArray *missing,
    GError **err)
{
	guint8 rnd[16];
	g_autofree char *id = NULL;
	g_autofree char *head = NULL;
	g_autoptr(GBytes) orig = NULL;
	g_autoptr(GBytes) copy = NULL;
	GByteArray *b;
	KmsMailer m = { conn->state->submit_url, from, NULL };	/* a connection per copy */
	gboolean ok;
	gsize len;
	const guint8 *data;

	if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		g_set_error(err, G_FILE_ERROR, G_FILE_ERROR_FAILED, "no random bytes for the split ID");
		return FALSE;
	}
	id = g_malloc(2 * sizeof(rnd) + 1);
	for (gsize i = 0; i < sizeof(rnd); i++)
		g_snprintf(id + 2 * i, 3, "%02x", rnd[i]);
	if ((orig = spool_bytes(msg->spool, 0, err)) == NULL)
		return FALSE;
	head = g_strdup_printf(SPLIT_HEADER ": %s\r\n", id);
	data = g_bytes_get_data(orig, &len);
	b = g_byte_array_sized_new(strlen(head) + len);
	g_byte_array_append(b, (const guint8 *)head, strlen(head));
	g_byte_array_append(b, data, len);
	copy = g_byte_array_free_to_bytes(b);
	split_register(id);
	ok = kms_mail_submit_many(&m, (const char *const *)missing->pdata, missing->len, copy, err);
	split_unregister(id);
	return ok;
}

/* Does the body hold what its Content-Type claims: a CMS EnvelopedData
 * or AuthEnvelopedData (base64 or binary)? A plaintext body labelled
 * pkcs7-mime is not taken as encrypted (it would slip past required). */
static gboolean
body_is_enveloped(const KmsMessage *msg)
{
	g_autoptr(GBytes) body = spool_bytes(msg->spool, msg->body_offset, NULL);
	const char *cte = first_header(msg, "Content-Transfer-Encoding");
	g_autofree char *enc = cte ? g_strstrip(g_strdup(cte)) : NULL;
	g_autofree guchar *der = NULL;
	const unsigned char *p;
	gsize len;
	CMS_ContentInfo *cms;
	int nid = NID_undef;

	if (body == NULL)
		return FALSE;
	p = g_bytes_get_data(body, &len);
	if (enc && g_ascii_strcasecmp(enc, "base64") == 0) {
		g_autofree char *text = g_strndup((const char *)p, len);

		der = g_base64_decode(text, &len);
		p = der;
	}
	if (p == NULL || len == 0 || len > G_MAXLONG)
		return FALSE;
	if ((cms = d2i_CMS_ContentInfo(NULL, &p, (long)len)) != NULL) {
		nid = OBJ_obj2nid(CMS_get0_type(cms));
		CMS_ContentInfo_free(cms);
	}
	ERR_clear_error();
	return nid == NID_pkcs7_enveloped || nid == NID_id_smime_ct_authEnvelopedData;
}

/* Encrypt and rewrite the message for O->found (+ the sender). */
static KmsVerdict
encrypt_message(SMFICTX *ctx, KmsConnection *conn, KmsMessage *msg, KmsOutbound *o,
    const KmsNegotiateResult *res, KmsEncryptLevel level, const char *from, gboolean split)
{
	KmsMilterState *st = conn->state;
	g_autoptr(GError) e = NULL;
	g_autoptr(GBytes) body = NULL;
	g_autoptr(GBytes) entity = NULL;
	g_autoptr(KmsEncrypted) enc = NULL;
	g_autofree KmsEncryptRecipient *er = g_new0(KmsEncryptRecipient, res->recipients->len + 1);
	g_autofree char *info = NULL;
	g_autofree NewHeader *new = NULL;
	guint nnew = 0;
	const guint8 *data;
	gsize len;
	Edit ed = { ctx, conn, msg, FALSE };
	const gboolean must = level == KMS_ENCRYPT_REQUIRED;

	for (guint i = 0; i < res->recipients->len; i++) {
		const KmsNegotiateChoice *c = g_ptr_array_index(res->recipients, i);
		const KmsRecipient *r = i < o->found->len ? g_ptr_array_index(o->found, i) : o->sender;

		er[i].cert = r->cert;
		er[i].transport = c->transport;
		er[i].oaep_hash = c->oaep_hash;
	}
	if ((body = spool_bytes(msg->spool, msg->body_offset, &e)) != NULL) {
		data = g_bytes_get_data(body, &len);
		entity = kms_smime_entity_from_headers((const char *const *)msg->hdr_names->pdata,
		    (const char *const *)msg->hdr_values->pdata, msg->hdr_names->len, data, len,
		    st->max_message_size, &e);
	}
	if (entity != NULL)
		enc = kms_smime_encrypt(entity, er, res->recipients->len, res->algorithm, NULL,
		    st->max_message_size, &e);
	if (enc == NULL) {
		if (g_error_matches(e, KMS_ENCRYPT_ERROR, KMS_ENCRYPT_ERROR_TOO_LARGE) && must)
			return refuse(msg, "552", "5.3.4", "message too large to be encrypted");
		if (must) {
			kms_log(LOG_ERR, msg->qid, "encryption: %s: message deferred (encryption required)",
			    e->message);
			return KMS_VERDICT_TEMPFAIL;
		}
		kms_log(LOG_WARNING, msg->qid, "encryption: %s: delivered as it is (if-possible)",
		    e->message);
		return KMS_VERDICT_ACCEPT;
	}
	/*
	 * Split: the changes first, the plain copy last. The MTA applies
	 * changes only with the final accept, so when a change fails or the
	 * copy cannot be submitted, the message is deferred whole and no
	 * plain copy is out; a retry submits it once. When the verdict is
	 * lost after the copy went out, the retry finds the copy in
	 * copies_sent.
	 */
	if (split)
		for (guint i = 0; i < msg->rcpt_list->len; i++) {
			const char *r = g_ptr_array_index(msg->rcpt_list, i);
			g_autofree char *n = kms_address_normalize(r, -1);

			for (guint k = 0; k < o->missing->len; k++)
				if (g_ascii_strcasecmp(n ? n : r, g_ptr_array_index(o->missing, k)) == 0) {
					edit_check(&ed, smfi_delrcpt(ctx, (char *)r), "remove recipient", r);
					break;
				}
		}
	info = g_strdup_printf("encrypted %s for %u recipient%s", res->algorithm, o->found->len,
	    o->found->len == 1 ? "" : "s");
	new = g_new0(NewHeader, enc->headers->len + 2);
	new[nnew++] = (NewHeader){ "MIME-Version", "1.0" };
	for (guint i = 0; i < enc->headers->len; i++) {
		const KmsEncryptHeader *h = g_ptr_array_index(enc->headers, i);

		new[nnew++] = (NewHeader){ h->name, h->value };
	}
	new[nnew++] = (NewHeader){ INFO_HEADER, info };
	edit_headers(&ed, o->sender_policy, new, nnew);
	data = g_bytes_get_data(enc->body, &len);
	edit_check(&ed, smfi_replacebody(ctx, (unsigned char *)data, (int)len), "replace", "the body");
	if (ed.failed) {
		kms_log(LOG_ERR, msg->qid, "encryption: message deferred: it could not be rewritten%s",
		    split ? " (no plain copy was submitted)" : "");
		return KMS_VERDICT_TEMPFAIL;
	}
	if (split) {
		g_autoptr(GError) se = NULL;
		g_autofree char *key = copy_key(msg, body, from, o->missing);

		if (key != NULL && copy_sent(key))
			kms_log(LOG_NOTICE, msg->qid, "encryption: split: the plain copy of this message"
			    " was submitted before: not submitted again");
		else if (!submit_copy(conn, msg, from, o->missing, &se)) {
			kms_log(LOG_ERR, msg->qid, "encryption: split: cannot submit the plain copy: %s;"
			    " message deferred", se->message);
			return KMS_VERDICT_TEMPFAIL;
		} else {
			if (key != NULL)
				copy_record(key);
			kms_log(LOG_INFO, msg->qid, "encryption: split: plain copy submitted for %u"
			    " recipient%s", o->missing->len, o->missing->len == 1 ? "" : "s");
		}
	}
	kms_log(LOG_INFO, msg->qid, "encryption: %s for %u recipient%s%s: %s", res->algorithm,
	    o->found->len, o->found->len == 1 ? "" : "s",
	    res->recipients->len > o->found->len ? " and the sender" : "", res->reason);
	return KMS_VERDICT_ACCEPT;
}

KmsVerdict
kms_job_encrypt(SMFICTX *ctx, KmsConnection *conn, KmsMessage *msg)
{
	KmsMilterState *st = conn->state;
	g_autoptr(GError) e = NULL;
	g_autoptr(GPtrArray) odd = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GPtrArray) rcpts = bare_rcpts(conn, msg, odd);
	g_autoptr(KmsOutbound) o = NULL;
	g_autoptr(KmsNegotiateResult) res = NULL;
	g_autoptr(GPtrArray) blockers = NULL;
	g_autofree char *from = usable_address(msg->from);
	const char *marker = first_header(msg, SPLIT_HEADER);
	KmsEncryptLevel level;
	KmsMixedPolicy mixed;
	gboolean trig, with_sender = TRUE;
	const gulong need = SMFIF_CHGBODY | SMFIF_CHGHDRS | SMFIF_ADDHDRS;

	if (rcpts->len + odd->len == 0)
		return KMS_VERDICT_ACCEPT;
	if ((o = lookup(st, from, rcpts, NULL, &e)) == NULL)
		return db_failed(conn, msg, KMS_ENCRYPT_NEVER, e);
	trig = triggered(msg, o->sender_policy);
	level = kms_outbound_level(o, trig);
	if (odd->len && st->global_policy && st->global_policy->encrypt > level)
		level = st->global_policy->encrypt;
	mixed = o->sender_policy->mixed;
	/* a copy cannot be submitted to what is no address */
	if (odd->len && mixed == KMS_MIXED_SPLIT)
		mixed = KMS_MIXED_PLAIN;
	if (level == KMS_ENCRYPT_NEVER)
		return KMS_VERDICT_ACCEPT;
	if ((conn->actions & need) != need) {
		if (level == KMS_ENCRYPT_REQUIRED) {
			kms_log(LOG_ERR, msg->qid, "encryption required but the MTA does not let the"
			    " filter change the message: deferred");
			return KMS_VERDICT_TEMPFAIL;
		}
		kms_log(LOG_WARNING, msg->qid, "encryption: the MTA does not let the filter change the"
		    " message: delivered as it is");
		return KMS_VERDICT_ACCEPT;
	}
	/* our own plain copy of a split message (never under required) */
	if (marker && split_known(marker) && level == KMS_ENCRYPT_IF_POSSIBLE) {
		Edit ed = { ctx, conn, msg, FALSE };

		edit_headers(&ed, o->sender_policy, NULL, 0);
		kms_log(LOG_INFO, msg->qid, "encryption: plain copy of a split message delivered as it is");
		return ed.failed ? KMS_VERDICT_TEMPFAIL : KMS_VERDICT_ACCEPT;
	}
	if (kms_smime_is_encrypted(msg->content_type) && !msg->oversize && msg->headers_done &&
	    body_is_enveloped(msg)) {
		Edit ed = { ctx, conn, msg, FALSE };

		edit_headers(&ed, o->sender_policy, NULL, 0);
		kms_log(LOG_INFO, msg->qid, "encryption: already encrypted by the sender: not encrypted again");
		return ed.failed ? KMS_VERDICT_TEMPFAIL : KMS_VERDICT_ACCEPT;
	}
	if (msg->oversize || !msg->headers_done) {
		if (level == KMS_ENCRYPT_REQUIRED)
			return refuse(msg, "552", "5.3.4", "message too large to be encrypted (limit %zu bytes)",
			    st->max_message_size);
		kms_log(LOG_NOTICE, msg->qid, "encryption: message over max_message_size: delivered as"
		    " it is (if-possible)");
		return KMS_VERDICT_ACCEPT;
	}
	if (lookup(st, from, rcpts, o, &e) == NULL)
		return db_failed(conn, msg, level, e);
	for (guint i = 0; i < odd->len; i++)
		g_ptr_array_add(o->missing, g_strdup(g_ptr_array_index(odd, i)));

	/* negotiate; the sender's own certificate never blocks */
	if (o->found->len > 0) {
		res = kms_outbound_negotiate(o, TRUE, &blockers, &e);
		if (res == NULL && o->sender && g_error_matches(e, KMS_NEGOTIATE_ERROR,
		    KMS_NEGOTIATE_ERROR_NO_COMMON)) {
			g_clear_error(&e);
			g_clear_pointer(&blockers, g_ptr_array_unref);
			with_sender = FALSE;
			res = kms_outbound_negotiate(o, FALSE, &blockers, &e);
			if (res)
				kms_log(LOG_NOTICE, msg->qid, "encryption: the sender's own certificate"
				    " left out: its capabilities block the recipients'");
		}
		if (res == NULL && level == KMS_ENCRYPT_REQUIRED)
			return refuse(msg, "550", "5.7.1", "encryption required: %s", e->message);
		if (res == NULL && mixed == KMS_MIXED_SPLIT && blockers && blockers->len) {
			drop_blockers(o, blockers);
			g_clear_error(&e);
			g_clear_pointer(&blockers, g_ptr_array_unref);
			if (o->found->len > 0)
				res = kms_outbound_negotiate(o, with_sender, &blockers, &e);
		}
		if (res == NULL && o->found->len > 0) {
			if (mixed == KMS_MIXED_REJECT)
				return refuse(msg, "550", "5.7.1", "cannot encrypt for every recipient: %s",
				    e ? e->message : "no common algorithm");
			kms_log(LOG_NOTICE, msg->qid, "encryption: %s: delivered as it is (if-possible,"
			    " mixed = %s)", e ? e->message : "no common algorithm",
			    mixed == KMS_MIXED_PLAIN ? "plain" : "split");
			return KMS_VERDICT_ACCEPT;
		}
	}
	if (o->missing->len > 0) {
		g_autofree char *who = names(o->missing);

		if (level == KMS_ENCRYPT_REQUIRED)
			return refuse(msg, "550", "5.7.1", "encryption required: no usable encryption"
			    " certificate for %s", who);
		if (mixed == KMS_MIXED_REJECT)
			return refuse(msg, "550", "5.7.1", "cannot encrypt for every recipient: no usable"
			    " encryption certificate for %s", who);
		if (mixed == KMS_MIXED_PLAIN || o->found->len == 0 || res == NULL) {
			kms_log(LOG_NOTICE, msg->qid, "encryption: no usable encryption certificate for"
			    " %s: delivered as it is (if-possible%s)", who, o->found->len == 0 ? "" :
			    ", mixed = plain");
			return KMS_VERDICT_ACCEPT;
		}
		return encrypt_message(ctx, conn, msg, o, res, level, from, TRUE);
	}
	return encrypt_message(ctx, conn, msg, o, res, level, from, FALSE);
}
