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

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "keyvault/db.h"
#include "smime/x509util.h"

#define MAX_CANDIDATES 20

/* Usable certificates for $1, key preference first, then newest. */
static const char cert_query[] =
    "WITH pref AS (SELECT k.key_preference AS id FROM capabilities k"
    "  WHERE lower(k.address) = lower($1) AND k.key_preference IS NOT NULL"
    "  ORDER BY k.signing_time DESC, k.id DESC LIMIT 1)"
    " SELECT c.id, c.source, c.status, c.sha256, c.der,"
    "  COALESCE(c.id = (SELECT id FROM pref), false)"
    " FROM certificates c"
    " WHERE c.id IN (SELECT a.certificate_id FROM certificate_addresses a"
    "   WHERE lower(a.address) = lower($1) UNION SELECT id FROM pref)"
    "  AND c.not_before <= now() AND c.not_after > now()"
    "  AND NOT EXISTS (SELECT 1 FROM revocations r WHERE r.certificate_id = c.id)"
    "  AND ((c.source = 'issued' AND c.status = 'valid' AND c.usage IN ('encryption', 'both'))"
    "   OR (c.source = 'harvested' AND (c.status = 'trusted'"
    "    OR ($2::boolean AND c.status = 'untrusted-chain'))))"
    " ORDER BY 6 DESC, c.not_before DESC, c.id DESC LIMIT " G_STRINGIFY(MAX_CANDIDATES);

/* The newest signature's capabilities, one row per name in order (one
 * row with a NULL name when there are none). */
static const char caps_query[] =
    "SELECT to_char(k.signing_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
    "  k.algorithms IS NULL, n.name"
    " FROM (SELECT signing_time, algorithms FROM capabilities"
    "  WHERE lower(address) = lower($1) ORDER BY signing_time DESC, id DESC LIMIT 1) k"
    " LEFT JOIN LATERAL unnest(k.algorithms) WITH ORDINALITY AS n(name, i) ON true"
    " ORDER BY n.i";

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

static gboolean
load_capabilities(PGconn *c, KmsRecipient *rc, GError **err)
{
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	g_autoptr(PGresult) r = NULL;
	GPtrArray *names;

	kms_db_param_text(&p, rc->address);
	if ((r = kms_db_run(c, caps_query, &p, err)) == NULL)
		return FALSE;
	if (PQntuples(r) == 0 || strcmp(PQgetvalue(r, 0, 1), "t") == 0) {
		rc->capabilities_source = g_strdup("none");
		return TRUE;
	}
	names = g_ptr_array_new();
	for (int i = 0; i < PQntuples(r); i++)
		if (kms_db_get_text(r, i, 2))
			g_ptr_array_add(names, g_strdup(PQgetvalue(r, i, 2)));
	g_ptr_array_add(names, NULL);
	rc->capabilities = (char **)g_ptr_array_free(names, FALSE);
	rc->capabilities_source = g_strdup_printf("harvested %s", PQgetvalue(r, 0, 0));
	return TRUE;
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
	if ((r = kms_db_run(c, cert_query, &p, err)) == NULL)
		return FALSE;
	for (int i = 0; i < PQntuples(r) && rc == NULL; i++) {
		g_autoptr(GBytes) der = kms_db_get_bytes(r, i, 4);
		X509 *x = der ? kms_x509_from_der(g_bytes_get_data(der, NULL), g_bytes_get_size(der)) :
		    NULL;
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
	}
	if (rc == NULL)
		return TRUE;
	if (!load_capabilities(c, rc, err))
		return FALSE;
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
