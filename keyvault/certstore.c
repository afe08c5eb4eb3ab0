/*
 * NAME
 *	certstore - record harvested certificates, trust store, trust list
 *	(see certstore.h)
 * SECURITY
 *	Everything written here came from hostile mail and was parsed by the
 *	harvester; it is stored as data, never interpreted.
 */
#include "autoconfig.h"
#include "certstore.h"

#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "keyvault/db.h"
#include "smime/ca.h"
#include "smime/x509util.h"

/* PostgreSQL array literal of NAMES (quoted and escaped). g_free. */
static char *
text_array(GPtrArray *names)
{
	GString *s = g_string_new("{");

	for (guint i = 0; i < names->len; i++) {
		const char *n = g_ptr_array_index(names, i);

		if (i)
			g_string_append_c(s, ',');
		g_string_append_c(s, '"');
		for (const char *p = n; *p; p++) {
			if (*p == '"' || *p == '\\')
				g_string_append_c(s, '\\');
			g_string_append_c(s, *p);
		}
		g_string_append_c(s, '"');
	}
	g_string_append_c(s, '}');
	return g_string_free(s, FALSE);
}

/* Insert or refresh one certificate (SOURCE harvested or issued, for
 * USER_ID when not 0); *id gets its row. */
static gboolean
upsert_cert(PGconn *c, X509 *x, const char *source, const char *usage, const char *status,
    const char *detail, gint64 user_id, gint64 *id, GError **err)
{
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	g_autofree char *sha = kms_x509_sha256_hex(x);
	g_autofree char *serial = kms_x509_serial_hex(x);
	g_autofree char *subj = kms_x509_name_text(X509_get_subject_name(x));
	g_autofree char *iss = kms_x509_name_text(X509_get_issuer_name(x));
	g_autofree char *nb = kms_asn1_time_iso8601(X509_get0_notBefore(x));
	g_autofree char *na = kms_asn1_time_iso8601(X509_get0_notAfter(x));
	g_autoptr(GBytes) der = kms_x509_to_der(x);
	g_autoptr(GPtrArray) addrs = NULL;
	g_autoptr(PGresult) r = NULL;

	if (sha == NULL || nb == NULL || na == NULL || der == NULL) {
		g_set_error(err, KMS_CA_ERROR, KMS_CA_ERROR_INVALID,
		    "certificate with unusable fields skipped");
		return FALSE;
	}
	kms_db_param_text(&p, usage);
	kms_db_param_text(&p, status);
	kms_db_param_text(&p, detail);
	kms_db_param_text(&p, sha);
	kms_db_param_text(&p, serial);
	kms_db_param_text(&p, subj);
	kms_db_param_text(&p, iss);
	kms_db_param_text(&p, nb);
	kms_db_param_text(&p, na);
	kms_db_param_bytes(&p, g_bytes_get_data(der, NULL), g_bytes_get_size(der));
	kms_db_param_text(&p, source);
	if (user_id > 0)
		kms_db_param_int(&p, user_id);
	else
		kms_db_param_text(&p, NULL);
	r = kms_db_run(c,
	    "INSERT INTO certificates (source, usage, status, status_detail, sha256, serial,"
	    " subject, issuer, not_before, not_after, der, user_id)"
	    " VALUES ($11, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $12::bigint)"
	    " ON CONFLICT (sha256) DO UPDATE SET last_seen = now(),"
	    "  usage = COALESCE(certificates.usage, excluded.usage),"
	    "  status = CASE WHEN certificates.source = 'harvested' THEN excluded.status"
	    "   ELSE certificates.status END,"
	    "  status_detail = CASE WHEN certificates.source = 'harvested'"
	    "   THEN excluded.status_detail ELSE certificates.status_detail END"
	    " RETURNING id", &p, err);
	if (r == NULL)
		return FALSE;
	*id = kms_db_get_int(r, 0, 0);
	addrs = kms_x509_email_addresses(x);
	for (guint i = 0; i < addrs->len; i++) {
		kms_db_param_int(&p, *id);
		kms_db_param_text(&p, g_ptr_array_index(addrs, i));
		if (!kms_db_exec(c, "INSERT INTO certificate_addresses (certificate_id, address)"
		    " VALUES ($1, $2) ON CONFLICT DO NOTHING", &p, err))
			return FALSE;
	}
	return TRUE;
}

gint64
kms_certstore_add_issued(PGconn *c, X509 *cert, const char *usage, gint64 user_id, GError **err)
{
	gint64 id = 0;

	if (!upsert_cert(c, cert, "issued", usage, "valid", NULL, user_id, &id, err))
		return 0;
	return id;
}

/* Status of a certificate carried along (not a signer): its own chain. */
static const char *
carried_status(X509 *x, X509_STORE *trust, STACK_OF(X509) *untrusted, char **detail)
{
	int rc = kms_x509_verify_chain(trust, x, untrusted, -1, 0, detail);

	if (rc == X509_V_OK)
		return "trusted";
	if (rc == X509_V_ERR_CERT_HAS_EXPIRED)
		return "expired";
	return "untrusted-chain";
}

static gboolean
is_ca(X509 *x)
{
	return X509_check_ca(x) != 0;
}

gboolean
kms_certstore_record(PGconn *c, const KmsHarvestResult *r, X509_STORE *trust, time_t received,
    guint *stored, GError **err)
{
	g_autoptr(GHashTable) ids = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
	guint n = 0;

	if (stored)
		*stored = 0;
	if (!kms_db_begin(c, err))
		return FALSE;
	/* signers first, so their status wins over "carried" */
	for (guint i = 0; i < r->signers->len; i++) {
		KmsHarvestSigner *s = g_ptr_array_index(r->signers, i);
		g_autofree char *sha = NULL;
		gint64 id, kp = 0;

		if (s->status == KMS_SIGNER_BAD_SIGNATURE || s->cert == NULL)
			continue;
		sha = kms_x509_sha256_hex(s->cert);
		if (!upsert_cert(c, s->cert, "harvested", "signing", kms_signer_status_name(s->status), s->detail, 0,
		    &id, err))
			goto fail;
		g_hash_table_replace(ids, g_steal_pointer(&sha), g_memdup2(&id, sizeof(id)));
		if (s->key_preference) {
			g_autofree char *ksha = kms_x509_sha256_hex(s->key_preference);
			g_autofree char *kdetail = NULL;
			const char *kst = carried_status(s->key_preference, trust, r->certs, &kdetail);

			if (!upsert_cert(c, s->key_preference, "harvested", "encryption", kst, kdetail, 0, &kp, err))
				goto fail;
			g_hash_table_replace(ids, g_steal_pointer(&ksha), g_memdup2(&kp, sizeof(kp)));
		}
		for (guint a = 0; a < s->addresses->len; a++) {
			KmsDbParams p = KMS_DB_PARAMS_INIT;
			g_autofree char *algs = s->has_capabilities ? text_array(s->capabilities) : NULL;

			kms_db_param_int(&p, id);
			kms_db_param_text(&p, g_ptr_array_index(s->addresses, a));
			kms_db_param_int(&p, s->signing_time >= 0 ? s->signing_time : (gint64)received);
			kms_db_param_text(&p, algs);
			if (kp)
				kms_db_param_int(&p, kp);
			else
				kms_db_param_text(&p, NULL);
			if (!kms_db_exec(c, "INSERT INTO capabilities (certificate_id, address, signing_time,"
			    " algorithms, key_preference) VALUES ($1, $2, to_timestamp($3), $4::text[], $5)"
			    " ON CONFLICT (certificate_id, lower(address), signing_time) DO NOTHING", &p, err))
				goto fail;
		}
		n++;
	}
	/* every other certificate the verified CMS structures carried */
	for (int i = 0; r->certs && i < sk_X509_num(r->certs); i++) {
		X509 *x = sk_X509_value(r->certs, i);
		g_autofree char *sha = kms_x509_sha256_hex(x);
		g_autofree char *detail = NULL;
		const char *st;
		gint64 id;

		if (sha == NULL || g_hash_table_contains(ids, sha))
			continue;
		st = carried_status(x, trust, r->certs, &detail);
		if (!upsert_cert(c, x, "harvested", is_ca(x) ? NULL : "encryption", st, detail, 0, &id, err))
			goto fail;
		g_hash_table_replace(ids, g_steal_pointer(&sha), g_memdup2(&id, sizeof(id)));
	}
	if (!kms_db_commit(c, err))
		goto fail;
	if (stored)
		*stored = n;
	return TRUE;
fail:
	kms_db_rollback(c);
	return FALSE;
}

X509_STORE *
kms_trust_load(PGconn *c, gboolean system, guint *anchors, GError **err)
{
	g_autoptr(PGresult) t = NULL, ca = NULL;
	X509_STORE *st = X509_STORE_new();
	guint n = 0;

	t = kms_db_run(c, "SELECT der FROM trust_list ORDER BY id", NULL, err);
	if (t == NULL)
		goto fail;
	ca = kms_db_run(c, "SELECT certificate, chain FROM ca"
	    " WHERE status = 'active' AND certificate IS NOT NULL", NULL, err);
	if (ca == NULL)
		goto fail;
	for (int i = 0; i < PQntuples(t); i++) {
		g_autoptr(GBytes) d = kms_db_get_bytes(t, i, 0);
		X509 *x = d ? kms_x509_from_der(g_bytes_get_data(d, NULL), g_bytes_get_size(d)) : NULL;

		if (x && X509_STORE_add_cert(st, x) == 1)
			n++;
		X509_free(x);
	}
	for (int i = 0; i < PQntuples(ca); i++) {
		g_autoptr(GBytes) d = kms_db_get_bytes(ca, i, 0);
		X509 *x = d ? kms_x509_from_der(g_bytes_get_data(d, NULL), g_bytes_get_size(d)) : NULL;

		if (x && X509_STORE_add_cert(st, x) == 1)
			n++;
		X509_free(x);
	}
	/* the internal CA (root or subordinate) is an anchor by itself */
	X509_STORE_set_flags(st, X509_V_FLAG_PARTIAL_CHAIN);
	if (system && X509_STORE_set_default_paths(st) != 1)
		ERR_clear_error();
	ERR_clear_error();
	if (anchors)
		*anchors = n;
	return st;
fail:
	X509_STORE_free(st);
	return NULL;
}

gboolean
kms_ctl_add(PGconn *c, X509 *cert, const char *added_by, gboolean *existed, GError **err)
{
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	g_autofree char *sha = kms_x509_sha256_hex(cert);
	g_autofree char *subj = kms_x509_name_text(X509_get_subject_name(cert));
	g_autoptr(GBytes) der = kms_x509_to_der(cert);
	g_autoptr(PGresult) r = NULL;

	if (X509_check_ca(cert) == 0) {
		g_set_error(err, KMS_CA_ERROR, KMS_CA_ERROR_INVALID,
		    "%s is not a CA certificate (basicConstraints CA:TRUE missing):"
		    " the trust list holds roots and intermediates", subj);
		return FALSE;
	}
	kms_db_param_text(&p, sha);
	kms_db_param_text(&p, subj);
	kms_db_param_bytes(&p, g_bytes_get_data(der, NULL), g_bytes_get_size(der));
	kms_db_param_text(&p, added_by);
	r = kms_db_run(c, "INSERT INTO trust_list (sha256, subject, der, added_by)"
	    " VALUES ($1, $2, $3, $4) ON CONFLICT (sha256) DO NOTHING RETURNING id", &p, err);
	if (r == NULL)
		return FALSE;
	*existed = PQntuples(r) == 0;
	return TRUE;
}

gboolean
kms_ctl_remove(PGconn *c, const char *sha256, gboolean *found, GError **err)
{
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	g_autoptr(PGresult) r = NULL;
	g_autofree char *lower = g_ascii_strdown(sha256, -1);

	kms_db_param_text(&p, lower);
	r = kms_db_run(c, "DELETE FROM trust_list WHERE sha256 = replace($1, ':', '') RETURNING id",
	    &p, err);
	if (r == NULL)
		return FALSE;
	*found = PQntuples(r) > 0;
	return TRUE;
}
