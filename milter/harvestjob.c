/*
 * NAME
 *	harvestjob - the end-of-message harvesting job
 * DESCRIPTION
 *	Runs the harvester (smime/harvest.h) over the spooled message, logs
 *	what it found, and records verified signers' certificates and
 *	capabilities in the vault. It never modifies the message.
 * SECURITY
 *	Log lines name addresses, fingerprints and statuses, never content.
 * DIAGNOSTICS
 *	Every line carries the queue id. With the vault unreachable the
 *	verdict is [milter] on_db_error (accept by default).
 */
#include "autoconfig.h"
#include "milter.h"

#include <time.h>

#include "common/log.h"
#include "keyvault/certstore.h"
#include "keyvault/db.h"
#include "smime/harvest.h"
#include "smime/x509util.h"

static void
log_result(const char *qid, const KmsHarvestResult *r)
{
	for (guint i = 0; i < r->problems->len; i++)
		kms_log(LOG_NOTICE, qid, "harvest: %s", (const char *)g_ptr_array_index(r->problems, i));
	for (guint i = 0; i < r->signers->len; i++) {
		KmsHarvestSigner *s = g_ptr_array_index(r->signers, i);
		g_autofree char *sha = s->cert ? kms_x509_sha256_hex(s->cert) : g_strdup("-");
		const char *addr = s->addresses->len ? g_ptr_array_index(s->addresses, 0) : "(no address)";

		if (s->status == KMS_SIGNER_BAD_SIGNATURE)
			kms_log(LOG_WARNING, qid, "bad signature by %s (certificate %.16s): nothing stored",
			    addr, sha);
		else
			kms_log(LOG_INFO, qid, "signer %s certificate %.16s: %s%s%s, %s capabilities%s",
			    addr, sha, kms_signer_status_name(s->status), s->detail ? " - " : "",
			    s->detail ? s->detail : "",
			    s->has_capabilities ? "announced" : "no",
			    s->key_preference ? ", encryption key preference" : "");
	}
}

/* A digest of everything kms_certstore_record would write for R (under
 * trust store GENERATION), to skip rewriting what was just recorded. */
static char *
record_key(const KmsHarvestResult *r, guint generation)
{
	g_autoptr(GChecksum) h = g_checksum_new(G_CHECKSUM_SHA256);
	g_autofree char *gen = g_strdup_printf("gen %u\n", generation);

	g_checksum_update(h, (const guchar *)gen, -1);
	for (guint i = 0; i < r->signers->len; i++) {
		KmsHarvestSigner *s = g_ptr_array_index(r->signers, i);
		g_autofree char *sha = s->cert ? kms_x509_sha256_hex(s->cert) : NULL;
		g_autofree char *kp = s->key_preference ? kms_x509_sha256_hex(s->key_preference) : NULL;
		g_autofree char *line = NULL;

		if (s->status == KMS_SIGNER_BAD_SIGNATURE || sha == NULL)
			continue;
		line = g_strdup_printf("signer %s %d %" G_GINT64_FORMAT " %d %s\n", sha, s->status,
		    s->signing_time, s->has_capabilities, kp ? kp : "-");
		g_checksum_update(h, (const guchar *)line, -1);
		for (guint c = 0; c < s->capabilities->len; c++) {
			g_checksum_update(h, g_ptr_array_index(s->capabilities, c), -1);
			g_checksum_update(h, (const guchar *)",", 1);
		}
		for (guint a = 0; a < s->addresses->len; a++) {
			g_checksum_update(h, g_ptr_array_index(s->addresses, a), -1);
			g_checksum_update(h, (const guchar *)";", 1);
		}
	}
	for (int i = 0; r->certs && i < sk_X509_num(r->certs); i++) {
		g_autofree char *sha = kms_x509_sha256_hex(sk_X509_value(r->certs, i));

		g_checksum_update(h, (const guchar *)(sha ? sha : "-"), -1);
	}
	return g_strdup(g_checksum_get_string(h));
}

static gboolean
any_to_store(const KmsHarvestResult *r)
{
	for (guint i = 0; i < r->signers->len; i++)
		if (((KmsHarvestSigner *)g_ptr_array_index(r->signers, i))->status != KMS_SIGNER_BAD_SIGNATURE)
			return TRUE;
	return FALSE;
}

/* Record R, retrying once on a transient database error. */
static gboolean
store(KmsMilterState *st, X509_STORE *trust, const KmsHarvestResult *r, guint *n, GError **err)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		g_autoptr(GError) e = NULL;
		PGconn *c = kms_db_pool_get(st->pool, &e);
		gboolean ok = c && kms_certstore_record(c, r, trust, time(NULL), n, &e);

		kms_db_pool_put(st->pool, c);
		if (ok)
			return TRUE;
		if (attempt == 1 || !g_error_matches(e, KMS_DB_ERROR, KMS_DB_ERROR_RETRY)) {
			g_propagate_error(err, g_steal_pointer(&e));
			return FALSE;
		}
	}
	return FALSE;
}

KmsVerdict
kms_job_harvest(KmsConnection *conn, KmsMessage *msg)
{
	KmsMilterState *st = conn->state;
	KmsHarvestOptions o;
	KmsHarvestResult *r;
	X509_STORE *trust;
	g_autoptr(GError) e = NULL;
	KmsVerdict v = KMS_VERDICT_ACCEPT;
	guint n = 0;

	guint generation = 0;

	if (msg->oversize || !msg->headers_done)
		return KMS_VERDICT_ACCEPT;
	/* no "pkcs7" anywhere: no S/MIME part, nothing to parse */
	if (!msg->smime_hint)
		return KMS_VERDICT_ACCEPT;
	trust = kms_state_trust(st, msg->qid, &generation);
	kms_harvest_options_init(&o);
	o.trust = trust;
	o.max_depth = st->max_depth;
	if (kms_spool_fd(msg->spool) >= 0)
		r = kms_harvest_fd(&o, kms_spool_fd(msg->spool));
	else
		r = kms_harvest(&o, kms_spool_memory(msg->spool), kms_spool_size(msg->spool));
	log_result(msg->qid, r);
	if (any_to_store(r)) {
		g_autofree char *key = record_key(r, generation);

		if (kms_state_seen(st, key))
			kms_log(LOG_DEBUG, msg->qid, "signers already recorded: vault not written");
		else if (store(st, trust, r, &n, &e)) {
			kms_state_seen_add(st, key);
			kms_log(LOG_INFO, msg->qid, "harvested %u signer%s into the vault", n,
			    n == 1 ? "" : "s");
		} else {
			v = st->tempfail_on_db_error ? KMS_VERDICT_TEMPFAIL : KMS_VERDICT_ACCEPT;
			kms_log(LOG_ERR, msg->qid, "cannot record harvested certificates: %s; message %s",
			    e->message, v == KMS_VERDICT_TEMPFAIL ? "deferred (on_db_error = tempfail)" :
			    "accepted (on_db_error = accept)");
		}
	}
	kms_harvest_result_free(r);
	X509_STORE_free(trust);
	return v;
}
