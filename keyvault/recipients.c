/*
 * NAME
 *	recipients - encryption certificate and capabilities of an address
 *	(see recipients.h)
 * SECURITY
 *	The vault's SQL filters validity, revocation and status; the key and
 *	its usage are checked again here on the parsed certificate, since a
 *	harvested certificate's usage column only says how it was seen.
 *	At most MAX_CANDIDATES certificates are parsed per lookup, however
 *	many a hostile sender got harvested for one address.
 */
#include "autoconfig.h"
#include "recipients.h"

#include <string.h>

#include <json-glib/json-glib.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "keyvault/db.h"
#include "smime/x509util.h"

#define MAX_CANDIDATES 20

/* Usable certificates for $1, key preference first, then newest; every
 * row also carries the newest signature's capabilities (signing time,
 * algorithms as a JSON array; NULL when none): one round trip and one
 * planning per lookup, which is most of its cost (BENCHMARKS.md). */
static const char cert_query[] =
    "WITH pref AS (SELECT k.key_preference AS id FROM capabilities k"
    "  WHERE lower(k.address) = lower($1) AND k.key_preference IS NOT NULL"
    "  ORDER BY k.signing_time DESC, k.id DESC LIMIT 1),"
    " caps AS (SELECT to_char(k.signing_time AT TIME ZONE 'UTC',"
    "   'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS t, array_to_json(k.algorithms) AS names"
    "  FROM capabilities k WHERE lower(k.address) = lower($1)"
    "  ORDER BY k.signing_time DESC, k.id DESC LIMIT 1)"
    " SELECT c.id, c.source, c.status, c.sha256, c.der,"
    "  COALESCE(c.id = (SELECT id FROM pref), false) AS preferred,"
    "  (SELECT t FROM caps), (SELECT names FROM caps)"
    " FROM certificates c"
    " WHERE c.id IN (SELECT a.certificate_id FROM certificate_addresses a"
    "   WHERE lower(a.address) = lower($1) UNION SELECT id FROM pref)"
    "  AND c.not_before <= now() AND c.not_after > now()"
    "  AND NOT EXISTS (SELECT 1 FROM revocations r WHERE r.certificate_id = c.id)"
    "  AND ((c.source = 'issued' AND c.status = 'valid' AND c.usage IN ('encryption', 'both'))"
    "   OR (c.source = 'harvested' AND (c.status = 'trusted'"
    "    OR ($2::boolean AND c.status = 'untrusted-chain'))))"
    " ORDER BY preferred DESC, c.not_before DESC, c.id DESC LIMIT " G_STRINGIFY(MAX_CANDIDATES);

/* Key kind of X when it can receive an encrypted key, else FALSE. */
static gboolean
encryption_key(X509 *x, KmsNegotiateKeyKind *kind)
{
	EVP_PKEY *pk = X509_get0_pubkey(x);
	uint32_t ku, xku;

	if (pk == NULL || X509_check_ca(x) != 0) {
		ERR_clear_error();
		return FALSE;
	}
	ku = X509_get_key_usage(x);
	xku = X509_get_extended_key_usage(x);
	if (xku != UINT32_MAX && (xku & (XKU_SMIME | XKU_ANYEKU)) == 0)
		return FALSE;
	switch (EVP_PKEY_get_base_id(pk)) {
	case EVP_PKEY_RSA:
		*kind = KMS_NEGOTIATE_KEY_RSA;
		return ku == UINT32_MAX || (ku & KU_KEY_ENCIPHERMENT) != 0;
	case EVP_PKEY_EC:
		*kind = KMS_NEGOTIATE_KEY_EC;
		return ku == UINT32_MAX || (ku & KU_KEY_AGREEMENT) != 0;
	default:
		return FALSE;
	}
}

/* Capabilities from row ROW of the certificate query (columns 6, 7). */
static gboolean
set_capabilities(const PGresult *r, int row, KmsRecipient *rc, GError **err)
{
	const char *t = kms_db_get_text(r, row, 6), *names = kms_db_get_text(r, row, 7);
	g_autoptr(JsonParser) p = NULL;
	g_autoptr(GError) e = NULL;
	JsonNode *root;
	JsonArray *a;
	GPtrArray *v;

	if (t == NULL || names == NULL) {
		rc->capabilities_source = g_strdup("none");
		return TRUE;
	}
	p = json_parser_new();
	if (!json_parser_load_from_data(p, names, -1, &e) ||
	    (root = json_parser_get_root(p)) == NULL || !JSON_NODE_HOLDS_ARRAY(root)) {
		g_set_error(err, KMS_DB_ERROR, KMS_DB_ERROR_QUERY,
		    "capabilities of %s: unexpected value from the vault", rc->address);
		return FALSE;
	}
	a = json_node_get_array(root);
	v = g_ptr_array_new();
	for (guint i = 0; i < json_array_get_length(a); i++) {
		JsonNode *n = json_array_get_element(a, i);

		/* a NULL element names nothing, as with unnest() before */
		if (JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING)
			g_ptr_array_add(v, g_strdup(json_node_get_string(n)));
	}
	g_ptr_array_add(v, NULL);
	rc->capabilities = (char **)g_ptr_array_free(v, FALSE);
	rc->capabilities_source = g_strdup_printf("harvested %s", t);
	return TRUE;
}

/* cert_query runs on every message: a prepared statement (db.h); parsing
 * and planning it each time cost more than running it (BENCHMARKS.md,
 * "Outbound decision latency"). */
static PGresult *
run_cert_query(PGconn *c, KmsDbParams *p, GError **err)
{
	return kms_db_run_prepared(c, "kms_recipient_cert", cert_query, p, err);
}

/*
 * Parsed certificates by the SHA-256 of their DER, computed here: parsing
 * costs about 115 us with OpenSSL 3.0 and the same few certificates come
 * back message after message. A certificate's bytes never change, so the
 * cache cannot go stale; whether it may be used (revocation, validity,
 * status) is asked of the vault on every lookup. Bounded: emptied when
 * full.
 */
#define PARSE_CACHE_MAX 4096
static GMutex parse_lock;
static GHashTable *parsed;	/* hex SHA-256 of the DER -> X509 * */

static X509 *
parse_cached(GBytes *der)
{
	g_autofree char *key = g_compute_checksum_for_bytes(G_CHECKSUM_SHA256, der);
	X509 *x;

	g_mutex_lock(&parse_lock);
	if (parsed == NULL)
		parsed = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
		    (GDestroyNotify)X509_free);
	x = g_hash_table_lookup(parsed, key);
	if (x != NULL)
		X509_up_ref(x);
	g_mutex_unlock(&parse_lock);
	if (x != NULL)
		return x;
	x = kms_x509_from_der(g_bytes_get_data(der, NULL), g_bytes_get_size(der));
	if (x == NULL)
		return NULL;
	g_mutex_lock(&parse_lock);
	if (g_hash_table_size(parsed) >= PARSE_CACHE_MAX)
		g_hash_table_remove_all(parsed);
	if (!g_hash_table_contains(parsed, key) && X509_up_ref(x))
		g_hash_table_insert(parsed, g_steal_pointer(&key), x);
	g_mutex_unlock(&parse_lock);
	return x;
}

gboolean
kms_recipient_lookup(PGconn *c, const char *address, gboolean allow_untrusted,
    KmsRecipient **out, GError **err)
{
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	g_autoptr(PGresult) r = NULL;
	g_autoptr(KmsRecipient) rc = NULL;

	*out = NULL;
	kms_db_param_text(&p, address);
	kms_db_param_text(&p, allow_untrusted ? "true" : "false");
	if ((r = run_cert_query(c, &p, err)) == NULL)
		return FALSE;
	for (int i = 0; i < PQntuples(r) && rc == NULL; i++) {
		g_autoptr(GBytes) der = kms_db_get_bytes(r, i, 4);
		X509 *x = der ? parse_cached(der) : NULL;
		KmsNegotiateKeyKind kind;

		if (x == NULL || !encryption_key(x, &kind)) {
			X509_free(x);
			continue;
		}
		rc = g_new0(KmsRecipient, 1);
		rc->address = g_strdup(address);
		rc->cert = x;
		rc->cert_id = kms_db_get_int(r, i, 0);
		rc->source = g_strdup(PQgetvalue(r, i, 1));
		rc->status = g_strdup(PQgetvalue(r, i, 2));
		rc->sha256 = g_strdup(PQgetvalue(r, i, 3));
		rc->key_preference = strcmp(PQgetvalue(r, i, 5), "t") == 0;
		rc->key_kind = kind;
		if (!set_capabilities(r, i, rc, err))
			return FALSE;
	}
	if (rc == NULL)
		return TRUE;
	*out = g_steal_pointer(&rc);
	return TRUE;
}

KmsRecipient *
kms_recipient_free(KmsRecipient *r)
{
	if (r == NULL)
		return NULL;
	g_free(r->address);
	X509_free(r->cert);
	g_free(r->sha256);
	g_free(r->source);
	g_free(r->status);
	g_strfreev(r->capabilities);
	g_free(r->capabilities_source);
	g_free(r);
	return NULL;
}

void
kms_recipient_negotiate_input(const KmsRecipient *r, KmsNegotiateRecipient *n)
{
	n->address = r->address;
	n->certificate = r->sha256;
	n->key_kind = r->key_kind;
	n->capabilities = (const char *const *)r->capabilities;
	n->capabilities_source = r->capabilities_source;
}
