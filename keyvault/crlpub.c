/*
 * NAME
 *	crlpub - CRL publishing (see crlpub.h)
 * DESCRIPTION
 *	Signing and file writing are two steps on purpose: a CRL is signed
 *	and stored with the ca row locked, in the transaction of the request
 *	that asked for it; the files are written afterwards from whatever the
 *	vault committed, and rewritten whenever crl_dir differs from the
 *	vault (a deleted file, a second kmsd on another host with its own
 *	crl_dir). The order of statements in publish_locked() matters:
 *	requests are marked done before the revocations are read, so under
 *	READ COMMITTED every revocation whose "crl" request we mark done is
 *	visible to the later query (kmsctl revoke commits both at once).
 * SECURITY
 *	The CA key lives only in publish_locked() and is freed there.
 * DIAGNOSTICS
 *	GError in KMS_DB_ERROR, KMS_VAULT_ERROR, KMS_CRL_ERROR.
 */
#include "autoconfig.h"
#include "crlpub.h"

#include <errno.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "common/log.h"
#include "keyvault/audit.h"
#include "keyvault/db.h"
#include "keyvault/vaultca.h"
#include "smime/crl.h"
#include "smime/x509util.h"

#define DEFAULT_BASENAME "kms.crl"

char *
kms_crl_basename(const char *crl_url)
{
	const char *p, *path, *last;
	g_autofree char *seg = NULL;

	if (crl_url == NULL || (p = strstr(crl_url, "://")) == NULL ||
	    *(path = p + 3 + strcspn(p + 3, "/?#")) != '/')
		return g_strdup(DEFAULT_BASENAME);
	seg = g_strndup(path, strcspn(path, "?#"));
	last = strrchr(seg, '/') + 1;
	/* a plain, harmless file name only; anything else gets the default */
	if (*last == '\0' || *last == '.' ||
	    strspn(last, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
	    != strlen(last))
		return g_strdup(DEFAULT_BASENAME);
	return g_strdup(last);
}

/* Lifetime of a new CRL in days. */
static int
crl_days(const KmsWorker *w)
{
	return (int)kms_config_get_int(w->cfg, "ca", "crl_days");
}

/* The columns is_due() reads, from the active CA row c: id, crl_number,
 * no CRL yet, seconds left to its nextUpdate (NULL when unknown), "crl"
 * requests expired unprocessed. */
#define DUE_COLUMNS \
	"c.id, c.crl_number, c.crl IS NULL," \
	" extract(epoch FROM c.crl_next_update - now())::bigint," \
	" EXISTS (SELECT 1 FROM requests r WHERE r.kind = 'crl' AND r.status = 'queued'" \
	"  AND r.expires_at <= now())"

/*
 * Lifetime in seconds (nextUpdate - thisUpdate) of CRL number N stored in
 * CA row CA_ID, read from the CRL itself so that kmsd processes with
 * different [ca] crl_days agree on when it is due (no republishing in
 * turns). Parsed once per number: kmsd is single-threaded, and the cache
 * only saves fetching the CRL at every heartbeat. -1 when unknown.
 */
static gint64
stored_lifetime(PGconn *db, gint64 ca_id, gint64 n)
{
	static gint64 cached_ca = -1, cached_n = -1, cached_life = -1;
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	g_autoptr(PGresult) r = NULL;
	g_autoptr(GBytes) der = NULL;
	const unsigned char *d;
	X509_CRL *crl;
	int days = 0, secs = 0;

	if (ca_id == cached_ca && n == cached_n)
		return cached_life;
	kms_db_param_int(&p, ca_id);
	r = kms_db_run(db, "SELECT crl FROM ca WHERE id = $1", &p, NULL);
	if (r == NULL || PQntuples(r) != 1 || (der = kms_db_get_bytes(r, 0, 0)) == NULL)
		return -1;
	d = g_bytes_get_data(der, NULL);
	crl = d2i_X509_CRL(NULL, &d, (long)g_bytes_get_size(der));
	if (crl == NULL || X509_CRL_get0_nextUpdate(crl) == NULL ||
	    !ASN1_TIME_diff(&days, &secs, X509_CRL_get0_lastUpdate(crl),
	    X509_CRL_get0_nextUpdate(crl))) {
		X509_CRL_free(crl);
		ERR_clear_error();
		return -1;
	}
	X509_CRL_free(crl);
	cached_ca = ca_id;
	cached_n = n;
	cached_life = (gint64)days * 86400 + secs;
	return cached_life;
}

/* Is the CRL of the CA in row 0 of R (DUE_COLUMNS) due: none yet, past
 * half of its lifetime, or asked for by expired requests? */
static gboolean
is_due(PGconn *db, const PGresult *r)
{
	gint64 left, life;

	if (strcmp(PQgetvalue(r, 0, 2), "t") == 0 || PQgetisnull(r, 0, 3) ||
	    strcmp(PQgetvalue(r, 0, 4), "t") == 0)
		return TRUE;
	left = kms_db_get_int(r, 0, 3);
	life = stored_lifetime(db, kms_db_get_int(r, 0, 0), kms_db_get_int(r, 0, 1));
	return life < 0 || left < life / 2;
}

/* The revoked certificates CA issued, as CRL entries. SERIALS owns the
 * strings the entries point to. */
static GArray *
load_revoked(PGconn *db, X509 *ca, GPtrArray *serials, GError **err)
{
	g_autoptr(PGresult) r = kms_db_run(db,
	    "SELECT c.der, extract(epoch FROM v.revoked_at)::bigint, v.reason, c.id"
	    " FROM revocations v JOIN certificates c ON c.id = v.certificate_id"
	    " WHERE c.source = 'issued' ORDER BY c.id", NULL, err);
	GArray *out;

	if (r == NULL)
		return NULL;
	out = g_array_new(FALSE, TRUE, sizeof(KmsRevoked));
	for (int i = 0; i < PQntuples(r); i++) {
		g_autoptr(GBytes) der = kms_db_get_bytes(r, i, 0);
		X509 *x = der ? kms_x509_from_der(g_bytes_get_data(der, NULL),
		    g_bytes_get_size(der)) : NULL;
		KmsRevoked e = {0};
		char *serial;

		if (x == NULL) {
			kms_warn("CRL: certificate %s in the vault does not parse; left off the CRL",
			    PQgetvalue(r, i, 3));
			ERR_clear_error();
			continue;
		}
		if (X509_check_issued(ca, x) != X509_V_OK) {
			/* issued by an earlier CA: not ours to list */
			X509_free(x);
			ERR_clear_error();
			continue;
		}
		serial = kms_x509_serial_hex(x);
		X509_free(x);
		if (serial == NULL)
			continue;
		g_ptr_array_add(serials, serial);
		e.serial_hex = serial;
		e.revoked_at = (time_t)kms_db_get_int(r, i, 1);
		if (!kms_crl_reason_parse(PQgetvalue(r, i, 2), &e.reason)) {
			kms_warn("CRL: certificate %s has an unknown revocation reason \"%s\";"
			    " listed as unspecified", PQgetvalue(r, i, 3), PQgetvalue(r, i, 2));
			e.reason = CRL_REASON_UNSPECIFIED;
		}
		g_array_append_val(out, e);
	}
	return out;
}

/*
 * In the caller's transaction: lock the active CA row, and unless IF_DUE
 * finds nothing due, sign CRL number previous + 1 and store it. Marks the
 * waiting "crl" requests other than REQUEST_ID done. *number gets the new
 * CRL number, or 0 when nothing was due.
 */
static gboolean
publish_locked(KmsWorker *w, gint64 request_id, gboolean if_due, gint64 *number,
    GError **err)
{
	PGconn *db = kms_vault_db(w->vault);
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	g_autoptr(PGresult) r = NULL;
	g_autoptr(GPtrArray) serials = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GArray) revoked = NULL;
	g_autofree char *next = NULL;
	const KmsVaultCa *ca;
	EVP_PKEY *key = NULL;
	X509_CRL *crl = NULL;
	unsigned char *der = NULL;
	int der_len;
	gint64 ca_id, n;
	gboolean ok = FALSE;

	*number = 0;
	r = kms_db_run(db, "SELECT " DUE_COLUMNS " FROM ca c"
	    " WHERE c.status = 'active' AND c.certificate IS NOT NULL FOR UPDATE OF c", NULL, err);
	if (r == NULL)
		return FALSE;
	if (PQntuples(r) == 0) {
		g_set_error(err, KMS_VAULT_ERROR, KMS_VAULT_ERROR_NOT_INITIALIZED,
		    "no active CA to sign a CRL (a subordinate CA waits for kmsctl ca install)");
		return FALSE;
	}
	if (if_due && !is_due(db, r))
		return TRUE;	/* another kmsd published meanwhile */
	ca_id = kms_db_get_int(r, 0, 0);
	n = kms_db_get_int(r, 0, 1) + 1;

	/* before the revocations are read: see DESCRIPTION */
	kms_db_param_int(&p, request_id);
	if (!kms_db_exec(db, "UPDATE requests SET status = 'done', finished_at = now(),"
	    " attempts = attempts + 1, last_error = NULL WHERE id IN (SELECT id FROM requests"
	    " WHERE kind = 'crl' AND status = 'queued' AND id <> $1 FOR UPDATE SKIP LOCKED)",
	    &p, err))
		return FALSE;

	if ((ca = kms_worker_ca(w, err)) == NULL)
		return FALSE;
	if (ca->id != ca_id || ca->cert == NULL) {
		g_set_error(err, KMS_VAULT_ERROR, KMS_VAULT_ERROR_NOT_INITIALIZED,
		    "the active CA changed while signing a CRL; will retry");
		goto out;
	}
	if ((revoked = load_revoked(db, ca->cert, serials, err)) == NULL ||
	    (key = kms_worker_ca_key(w, err)) == NULL)
		goto out;
	crl = kms_crl_build(ca->cert, key, (const KmsRevoked *)(void *)revoked->data,
	    revoked->len, n, crl_days(w), err);
	if (crl == NULL)
		goto out;
	if ((der_len = i2d_X509_CRL(crl, &der)) <= 0 ||
	    (next = kms_asn1_time_iso8601(X509_CRL_get0_nextUpdate(crl))) == NULL) {
		ERR_clear_error();
		g_set_error(err, KMS_CRL_ERROR, KMS_CRL_ERROR_FAILED, "cannot encode CRL %"
		    G_GINT64_FORMAT, n);
		goto out;
	}
	kms_db_param_int(&p, ca_id);
	kms_db_param_int(&p, n);
	kms_db_param_bytes(&p, der, (gsize)der_len);
	kms_db_param_text(&p, next);
	if (!kms_db_exec(db, "UPDATE ca SET crl_number = $2, crl = $3, crl_next_update = $4"
	    " WHERE id = $1", &p, err))
		goto out;
	kms_info("CRL %" G_GINT64_FORMAT " signed: %u revoked certificate%s, next update %s",
	    n, revoked->len, revoked->len == 1 ? "" : "s", next);
	{
		g_autoptr(JsonObject) d = json_object_new();

		json_object_set_int_member(d, "crl_number", n);
		json_object_set_int_member(d, "revoked", revoked->len);
		json_object_set_string_member(d, "next_update", next);
		if (request_id)
			json_object_set_int_member(d, "request_id", request_id);
		if (!kms_audit_append(db, "CRL published", d, err))
			goto out;
	}
	*number = n;
	ok = TRUE;
out:
	OPENSSL_free(der);
	X509_CRL_free(crl);
	return ok;
}

gboolean
kms_work_crl(KmsWorker *w, gint64 id, GError **err)
{
	gint64 n;

	return publish_locked(w, id, FALSE, &n, err);
}

/* SHA-256 (hex) of the CRL in the DER file PATH, or of the DER of the
 * CRL in the PEM file PATH; NULL when it is missing or unreadable. */
static char *
file_crl_sha256(const char *path, gboolean pem)
{
	g_autofree char *data = NULL;
	gsize len;
	X509_CRL *crl;
	BIO *bio;
	unsigned char *der = NULL;
	int der_len;
	char *sha;

	if (!g_file_get_contents(path, &data, &len, NULL))
		return NULL;
	if (!pem)
		return g_compute_checksum_for_data(G_CHECKSUM_SHA256, (const guchar *)data, len);
	bio = BIO_new_mem_buf(data, (int)MIN(len, (gsize)G_MAXINT));
	crl = bio ? PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL) : NULL;
	BIO_free(bio);
	if (crl == NULL || (der_len = i2d_X509_CRL(crl, &der)) <= 0) {
		X509_CRL_free(crl);
		ERR_clear_error();
		return NULL;
	}
	sha = g_compute_checksum_for_data(G_CHECKSUM_SHA256, der, (gsize)der_len);
	OPENSSL_free(der);
	X509_CRL_free(crl);
	return sha;
}

/* Does DIR hold the CRL whose DER has hash SHA, as DER and as PEM? */
static gboolean
files_current(const char *dir, const char *base, const char *sha)
{
	g_autofree char *der_path = g_build_filename(dir, base, NULL);
	g_autofree char *pem_path = g_strconcat(der_path, ".pem", NULL);
	g_autofree char *d = file_crl_sha256(der_path, FALSE);
	g_autofree char *p = NULL;

	if (d == NULL || strcmp(d, sha) != 0)
		return FALSE;
	p = file_crl_sha256(pem_path, TRUE);
	return p != NULL && strcmp(p, sha) == 0;
}

/* Write the CRL the vault holds to crl_dir unless it is there already.
 * *written gets its number when files were written. */
static gboolean
sync_files(KmsWorker *w, gint64 *written, GError **err)
{
	const char *dir = kms_config_get(w->cfg, "ca", "crl_dir");
	g_autofree char *base = NULL;
	g_autoptr(PGresult) r = NULL;
	g_autoptr(GBytes) der = NULL;
	PGconn *db = kms_vault_db(w->vault);
	const unsigned char *d;
	X509_CRL *crl;
	gboolean ok;

	*written = 0;
	if (dir == NULL)
		return TRUE;
	base = kms_crl_basename(kms_config_get(w->cfg, "ca", "crl_url"));
	r = kms_db_run(db, "SELECT encode(sha256(crl), 'hex') FROM ca"
	    " WHERE status = 'active' AND crl IS NOT NULL", NULL, err);
	if (r == NULL)
		return FALSE;
	if (PQntuples(r) == 0 || files_current(dir, base, PQgetvalue(r, 0, 0)))
		return TRUE;
	g_clear_pointer(&r, PQclear);

	/* with the row locked, so no kmsd overwrites a newer CRL with an older */
	if (!kms_db_begin(db, err))
		return FALSE;
	r = kms_db_run(db, "SELECT crl, crl_number, encode(sha256(crl), 'hex') FROM ca"
	    " WHERE status = 'active' AND crl IS NOT NULL FOR UPDATE", NULL, err);
	if (r == NULL || PQntuples(r) == 0 || files_current(dir, base, PQgetvalue(r, 0, 2))) {
		/* or another kmsd wrote them while we waited for the lock */
		kms_db_rollback(db);
		return r != NULL;
	}
	der = kms_db_get_bytes(r, 0, 0);
	d = g_bytes_get_data(der, NULL);
	crl = d2i_X509_CRL(NULL, &d, (long)g_bytes_get_size(der));
	if (crl == NULL) {
		ERR_clear_error();
		kms_db_rollback(db);
		g_set_error(err, KMS_CRL_ERROR, KMS_CRL_ERROR_FAILED,
		    "the CRL stored in the vault does not parse");
		return FALSE;
	}
	ok = kms_crl_write(crl, dir, base, err);
	X509_CRL_free(crl);
	kms_db_rollback(db);	/* nothing was changed */
	if (ok) {
		*written = kms_db_get_int(r, 0, 1);
		kms_info("CRL %" G_GINT64_FORMAT " published in %s/%s (and .pem)", *written, dir, base);
	}
	return ok;
}

gboolean
kms_crl_maintain(KmsWorker *w, gint64 *published, GError **err)
{
	PGconn *db = kms_vault_db(w->vault);
	g_autoptr(PGresult) r = NULL;
	gint64 signed_n = 0, written = 0;

	if (published)
		*published = 0;
	/* unlocked look first: most ticks have nothing to do */
	r = kms_db_run(db, "SELECT " DUE_COLUMNS " FROM ca c WHERE c.status = 'active'"
	    " AND c.certificate IS NOT NULL", NULL, err);
	if (r == NULL)
		return FALSE;
	if (PQntuples(r) == 0)
		return TRUE;	/* no CA yet (a pending subordinate) */
	if (is_due(db, r)) {
		if (!kms_db_begin(db, err))
			return FALSE;
		if (!publish_locked(w, 0, TRUE, &signed_n, err) || !kms_db_commit(db, err)) {
			kms_db_rollback(db);
			return FALSE;
		}
	}
	if (!sync_files(w, &written, err))
		return FALSE;
	if (published)
		*published = written ? written : signed_n;
	return TRUE;
}

gboolean
kms_revoke_apply(PGconn *db, guint n, const gint64 *ids, const char *const *serials,
    const char *const *addresses, const char *reason, const char *by, gint64 ttl,
    GError **err)
{
	g_autoptr(JsonObject) d = json_object_new();
	g_autoptr(JsonArray) sa = json_array_new();
	g_autoptr(JsonArray) aa = json_array_new();
	KmsDbParams p = KMS_DB_PARAMS_INIT;

	for (guint i = 0; i < n; i++) {
		g_autoptr(PGresult) r = NULL;

		kms_db_param_int(&p, ids[i]);
		if ((r = kms_db_run(db, "UPDATE certificates SET status = 'revoked' WHERE id = $1"
		    " AND source = 'issued' AND status = 'valid' RETURNING id", &p, err)) == NULL)
			return FALSE;
		if (PQntuples(r) != 1) {
			g_set_error(err, KMS_DB_ERROR, KMS_DB_ERROR_QUERY,
			    "serial %s is no longer an issued, valid certificate", serials[i]);
			return FALSE;
		}
		kms_db_param_int(&p, ids[i]);
		kms_db_param_text(&p, reason);
		kms_db_param_text(&p, by);
		if (!kms_db_exec(db, "INSERT INTO revocations (certificate_id, reason, revoked_by)"
		    " VALUES ($1, $2, $3)", &p, err))
			return FALSE;
		json_array_add_string_element(sa, serials[i]);
		json_array_add_string_element(aa, addresses[i] ? addresses[i] : "");
	}
	kms_db_param_int(&p, ttl);
	if (!kms_db_exec(db, "INSERT INTO requests (kind, user_id, expires_at)"
	    " VALUES ('crl', NULL, now() + $1::bigint * interval '1 second')", &p, err))
		return FALSE;
	json_object_set_array_member(d, "serials", json_array_ref(sa));
	json_object_set_array_member(d, "addresses", json_array_ref(aa));
	json_object_set_string_member(d, "reason", reason);
	return kms_audit_append(db, "revoked", d, err) &&
	    kms_db_exec(db, "NOTIFY kms_requests", NULL, err);
}
