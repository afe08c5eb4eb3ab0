/*
 * NAME
 *	recipients - encryption certificate and capabilities of an address
 *	(see recipients.h)
 * SECURITY
 *	The vault's SQL filters validity, revocation and status; the key and
 *	its usage are checked again here on the parsed certificate, since a
 *	harvested certificate's usage column only says how it was seen.
 *	At most MAX_CANDIDATES certificates are parsed per address looked
 *	up, however many a hostile sender got harvested for one address,
 *	and those of one address never take the place of another's.
 *	Addresses travel as an array parameter, each element quoted
 *	(kms_db_param_array()).
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

/*
 * Usable certificates of each address of $1 (with its allow_untrusted in
 * $2), per address the key preference first, then newest, at most
 * MAX_CANDIDATES each; every row also carries that address's ordinal
 * (from 1) and its newest signature's capabilities (signing time,
 * algorithms as a JSON array; NULL when none). One round trip for all
 * the addresses of a message, prepared once per connection: the round
 * trips and the planning were most of the cost (BENCHMARKS.md). The
 * LATERAL body is the query of one address; its LIMIT keeps one address
 * with many harvested certificates from crowding out the others. The
 * arrays are behind sub-SELECTs so that the server keeps one generic
 * plan (see rows_query in policy.c): with their lengths known, it would
 * plan the statement again on every execution.
 */
static const char cert_query[] =
    "SELECT q.i, x.id, x.source, x.status, x.sha256, x.der, x.preferred, x.t, x.names"
    " FROM unnest((SELECT $1::text[]), (SELECT $2::boolean[]))"
    "  WITH ORDINALITY AS q(address, untrusted, i)"
    " CROSS JOIN LATERAL ("
    " WITH pref AS (SELECT k.key_preference AS id FROM capabilities k"
    "  WHERE lower(k.address) = lower(q.address) AND k.key_preference IS NOT NULL"
    "  ORDER BY k.signing_time DESC, k.id DESC LIMIT 1),"
    " caps AS (SELECT to_char(k.signing_time AT TIME ZONE 'UTC',"
    "   'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS t, array_to_json(k.algorithms) AS names"
    "  FROM capabilities k WHERE lower(k.address) = lower(q.address)"
    "  ORDER BY k.signing_time DESC, k.id DESC LIMIT 1)"
    " SELECT c.id, c.source, c.status, c.sha256, c.der, c.not_before,"
    "  COALESCE(c.id = (SELECT id FROM pref), false) AS preferred,"
    "  (SELECT t FROM caps) AS t, (SELECT names FROM caps) AS names"
    " FROM certificates c"
    " WHERE c.id IN (SELECT a.certificate_id FROM certificate_addresses a"
    "   WHERE lower(a.address) = lower(q.address) UNION SELECT id FROM pref)"
    "  AND c.not_before <= now() AND c.not_after > now()"
    "  AND NOT EXISTS (SELECT 1 FROM revocations r WHERE r.certificate_id = c.id)"
    "  AND ((c.source = 'issued' AND c.status = 'valid' AND c.usage IN ('encryption', 'both'))"
    "   OR (c.source = 'harvested' AND (c.status = 'trusted'"
    "    OR (q.untrusted AND c.status = 'untrusted-chain'))))"
    " ORDER BY preferred DESC, c.not_before DESC, c.id DESC LIMIT " G_STRINGIFY(MAX_CANDIDATES)
    " ) x"
    " ORDER BY q.i, x.preferred DESC, x.not_before DESC, x.id DESC";

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

/* Capabilities from row ROW of the certificate query (columns 7, 8). */
static gboolean
set_capabilities(const PGresult *r, int row, KmsRecipient *rc, GError **err)
{
	const char *t = kms_db_get_text(r, row, 7), *names = kms_db_get_text(r, row, 8);
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

/* Row ROW as the recipient ADDRESS when its certificate can receive an
 * encrypted key; NULL when not (skipped, as the next row may be), or on
 * an error with *err set and *failed TRUE. */
static KmsRecipient *
candidate(const PGresult *r, int row, const char *address, gboolean *failed, GError **err)
{
	g_autoptr(GBytes) der = kms_db_get_bytes(r, row, 5);
	g_autoptr(KmsRecipient) rc = NULL;
	X509 *x = der ? parse_cached(der) : NULL;
	KmsNegotiateKeyKind kind;

	if (x == NULL || !encryption_key(x, &kind)) {
		X509_free(x);
		return NULL;
	}
	rc = g_new0(KmsRecipient, 1);
	rc->address = g_strdup(address);
	rc->cert = x;
	rc->cert_id = kms_db_get_int(r, row, 1);
	rc->source = g_strdup(PQgetvalue(r, row, 2));
	rc->status = g_strdup(PQgetvalue(r, row, 3));
	rc->sha256 = g_strdup(PQgetvalue(r, row, 4));
	rc->key_preference = strcmp(PQgetvalue(r, row, 6), "t") == 0;
	rc->key_kind = kind;
	if (!set_capabilities(r, row, rc, err)) {
		*failed = TRUE;
		return NULL;
	}
	return g_steal_pointer(&rc);
}

gboolean
kms_recipient_lookup_many(PGconn *c, const char *const *addresses,
    const gboolean *allow_untrusted, gsize n, KmsRecipient **out, GError **err)
{
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	g_autoptr(PGresult) r = NULL;
	g_autofree const char **untrusted = g_new(const char *, n + 1);
	gboolean failed = FALSE;

	for (gsize i = 0; i < n; i++) {
		out[i] = NULL;
		untrusted[i] = allow_untrusted[i] ? "t" : "f";
	}
	if (n == 0)
		return TRUE;
	kms_db_param_array(&p, addresses, n);
	kms_db_param_array(&p, untrusted, n);
	r = kms_db_run_prepared(c, "kms_recipient_certs", cert_query, &p, err);
	if (r == NULL)
		return FALSE;
	/* rows by address, each address's best first: its first usable wins */
	for (int row = 0; row < PQntuples(r) && !failed; row++) {
		gint64 i = kms_db_get_int(r, row, 0) - 1;

		if (i < 0 || (guint64)i >= n || out[i] != NULL)
			continue;
		out[i] = candidate(r, row, addresses[i], &failed, err);
	}
	if (!failed)
		return TRUE;
	for (gsize i = 0; i < n; i++)
		out[i] = kms_recipient_free(out[i]);
	return FALSE;
}

gboolean
kms_recipient_lookup(PGconn *c, const char *address, gboolean allow_untrusted,
    KmsRecipient **out, GError **err)
{
	return kms_recipient_lookup_many(c, &address, &allow_untrusted, 1, out, err);
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
