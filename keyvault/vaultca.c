/*
 * NAME
 *	vaultca - internal CA storage (see vaultca.h)
 * SECURITY
 *	Private keys pass through PKCS#8 DER only inside KmsSecret buffers;
 *	OpenSSL's own encoding buffer is cleansed before it is freed.
 */
#include "autoconfig.h"
#include "vaultca.h"

#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "smime/x509util.h"

KmsSecret *
kms_key_to_pkcs8(EVP_PKEY *key, GError **err)
{
	PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(key);
	unsigned char *der = NULL;
	int len;
	KmsSecret *s;

	if (p8 == NULL || (len = i2d_PKCS8_PRIV_KEY_INFO(p8, &der)) <= 0) {
		PKCS8_PRIV_KEY_INFO_free(p8);
		ERR_clear_error();
		g_set_error(err, KMS_CA_ERROR, KMS_CA_ERROR_FAILED, "cannot encode the private key");
		return NULL;
	}
	PKCS8_PRIV_KEY_INFO_free(p8);
	s = kms_secret_dup(der, (size_t)len);
	OPENSSL_clear_free(der, (size_t)len);
	return s;
}

EVP_PKEY *
kms_key_from_pkcs8(const KmsSecret *der, GError **err)
{
	const unsigned char *p = der->data;
	PKCS8_PRIV_KEY_INFO *p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)der->len);
	EVP_PKEY *key = p8 ? EVP_PKCS82PKEY(p8) : NULL;

	PKCS8_PRIV_KEY_INFO_free(p8);
	if (key == NULL) {
		ERR_clear_error();
		g_set_error(err, KMS_CA_ERROR, KMS_CA_ERROR_FAILED, "cannot decode a stored private key");
	}
	return key;
}

static GBytes *
req_to_der(X509_REQ *req)
{
	unsigned char *der = NULL;
	int len = i2d_X509_REQ(req, &der);
	GBytes *b;

	if (len <= 0)
		return NULL;
	b = g_bytes_new(der, (gsize)len);
	OPENSSL_free(der);
	return b;
}

/* Store a CA row: key sealed to the row; CERT or CSR (one of them). */
static gboolean
store_ca(KmsVault *v, const char *status, KmsKeyType type, const char *subject,
    EVP_PKEY *key, X509 *cert, X509_REQ *csr, GError **err)
{
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	g_autoptr(KmsSecret) p8 = NULL;
	g_autoptr(GBytes) sealed = NULL, cder = NULL, rder = NULL;
	gint64 id;

	if (!kms_vault_next_id(v, "ca", &id, err))
		return FALSE;
	p8 = kms_key_to_pkcs8(key, err);
	if (p8 == NULL)
		return FALSE;
	sealed = kms_vault_seal(v, "ca", "sealed_key", id, p8->data, p8->len, err);
	if (sealed == NULL)
		return FALSE;
	if (cert)
		cder = kms_x509_to_der(cert);
	if (csr)
		rder = req_to_der(csr);
	kms_db_param_int(&p, id);
	kms_db_param_text(&p, status);
	kms_db_param_text(&p, kms_key_type_name(type));
	kms_db_param_text(&p, subject);
	if (cder)
		kms_db_param_bytes(&p, g_bytes_get_data(cder, NULL), g_bytes_get_size(cder));
	else
		kms_db_param_text(&p, NULL);
	if (rder)
		kms_db_param_bytes(&p, g_bytes_get_data(rder, NULL), g_bytes_get_size(rder));
	else
		kms_db_param_text(&p, NULL);
	kms_db_param_int(&p, kms_vault_key_version(v));
	kms_db_param_bytes(&p, g_bytes_get_data(sealed, NULL), g_bytes_get_size(sealed));
	return kms_db_exec(kms_vault_db(v),
	    "INSERT INTO ca (id, status, key_type, subject, certificate, csr, key_version,"
	    " sealed_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", &p, err);
}

gboolean
kms_vault_ca_create_root(KmsVault *v, KmsKeyType type, const char *subject, int days,
    GError **err)
{
	EVP_PKEY *key = kms_key_generate(type, err);
	X509 *cert = NULL;
	gboolean ok = FALSE;

	if (key == NULL)
		return FALSE;
	cert = kms_ca_make_root(key, subject, days, err);
	if (cert != NULL) {
		g_autofree char *name = kms_x509_name_text(X509_get_subject_name(cert));

		ok = store_ca(v, "active", type, name, key, cert, NULL, err);
	}
	X509_free(cert);
	EVP_PKEY_free(key);
	return ok;
}

X509_REQ *
kms_vault_ca_create_csr(KmsVault *v, KmsKeyType type, const char *subject, GError **err)
{
	EVP_PKEY *key = kms_key_generate(type, err);
	X509_REQ *csr = NULL;

	if (key == NULL)
		return NULL;
	csr = kms_ca_make_csr(key, subject, err);
	if (csr != NULL) {
		g_autofree char *name = kms_x509_name_text(X509_REQ_get_subject_name(csr));

		if (!store_ca(v, "pending", type, name, key, NULL, csr, err))
			g_clear_pointer(&csr, X509_REQ_free);
	}
	EVP_PKEY_free(key);
	return csr;
}

KmsVaultCa *
kms_vault_ca_free(KmsVaultCa *ca)
{
	if (ca == NULL)
		return NULL;
	g_free(ca->status);
	g_free(ca->key_type);
	g_free(ca->subject);
	X509_free(ca->cert);
	sk_X509_pop_free(ca->chain, X509_free);
	X509_REQ_free(ca->csr);
	g_clear_pointer(&ca->sealed_key, g_bytes_unref);
	g_free(ca);
	return NULL;
}

/* The row kms_vault_ca_load() and kms_vault_ca_version() read. */
#define CURRENT_CA \
	" FROM ca WHERE status IN ('active', 'pending') ORDER BY status = 'active' DESC, id DESC" \
	" LIMIT 1"

char *
kms_vault_ca_version(KmsVault *v, GError **err)
{
	g_autoptr(PGresult) r = kms_db_run(kms_vault_db(v),
	    "SELECT id::text || '/' || xmin::text" CURRENT_CA, NULL, err);

	if (r == NULL)
		return NULL;
	return g_strdup(PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "");
}

KmsVaultCa *
kms_vault_ca_load(KmsVault *v, GError **err)
{
	g_autoptr(PGresult) r = kms_db_run(kms_vault_db(v),
	    "SELECT id, status, key_type, subject, certificate, csr, key_version, sealed_key,"
	    " array_length(chain, 1)" CURRENT_CA, NULL, err);
	g_autoptr(GBytes) cder = NULL, rder = NULL;
	KmsVaultCa *ca;
	int nchain;

	if (r == NULL)
		return NULL;
	if (PQntuples(r) == 0) {
		g_set_error(err, KMS_VAULT_ERROR, KMS_VAULT_ERROR_NOT_INITIALIZED,
		    "the vault has no CA");
		return NULL;
	}
	ca = g_new0(KmsVaultCa, 1);
	ca->id = kms_db_get_int(r, 0, 0);
	ca->status = g_strdup(PQgetvalue(r, 0, 1));
	ca->key_type = g_strdup(PQgetvalue(r, 0, 2));
	ca->subject = g_strdup(PQgetvalue(r, 0, 3));
	ca->key_version = (int)kms_db_get_int(r, 0, 6);
	ca->sealed_key = kms_db_get_bytes(r, 0, 7);
	ca->chain = sk_X509_new_null();
	cder = kms_db_get_bytes(r, 0, 4);
	if (cder)
		ca->cert = kms_x509_from_der(g_bytes_get_data(cder, NULL), g_bytes_get_size(cder));
	rder = kms_db_get_bytes(r, 0, 5);
	if (rder) {
		const unsigned char *p = g_bytes_get_data(rder, NULL);

		ca->csr = d2i_X509_REQ(NULL, &p, (long)g_bytes_get_size(rder));
	}
	nchain = PQgetisnull(r, 0, 8) ? 0 : (int)kms_db_get_int(r, 0, 8);
	for (int i = 1; i <= nchain; i++) {
		KmsDbParams p = KMS_DB_PARAMS_INIT;
		g_autoptr(PGresult) cr = NULL;
		g_autoptr(GBytes) d = NULL;
		X509 *x;

		kms_db_param_int(&p, ca->id);
		kms_db_param_int(&p, i);
		cr = kms_db_run(kms_vault_db(v), "SELECT chain[$2] FROM ca WHERE id = $1", &p, err);
		if (cr == NULL)
			return kms_vault_ca_free(ca);
		d = kms_db_get_bytes(cr, 0, 0);
		x = d ? kms_x509_from_der(g_bytes_get_data(d, NULL), g_bytes_get_size(d)) : NULL;
		if (x == NULL) {
			g_set_error(err, KMS_VAULT_ERROR, KMS_VAULT_ERROR_NOT_INITIALIZED,
			    "CA chain certificate %d in the vault does not parse", i);
			return kms_vault_ca_free(ca);
		}
		sk_X509_push(ca->chain, x);
	}
	if ((cder && ca->cert == NULL) || (rder && ca->csr == NULL) || ca->sealed_key == NULL) {
		ERR_clear_error();
		g_set_error(err, KMS_VAULT_ERROR, KMS_VAULT_ERROR_NOT_INITIALIZED,
		    "the CA row in the vault is damaged");
		return kms_vault_ca_free(ca);
	}
	return ca;
}

EVP_PKEY *
kms_vault_ca_key(KmsVault *v, const KmsVaultCa *ca, GError **err)
{
	g_autoptr(KmsSecret) der = kms_vault_open_value(v, "ca", "sealed_key", ca->id,
	    ca->key_version, ca->sealed_key, err);

	return der ? kms_key_from_pkcs8(der, err) : NULL;
}

gboolean
kms_vault_ca_install(KmsVault *v, X509 *cert, STACK_OF(X509) *chain, int cert_days,
    GError **err)
{
	KmsVaultCa *ca = kms_vault_ca_load(v, err);
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	g_autoptr(GBytes) der = NULL;
	GString *arr;
	EVP_PKEY *pub;
	gboolean ok = FALSE;

	if (ca == NULL)
		return FALSE;
	if (strcmp(ca->status, "pending") != 0 || ca->csr == NULL) {
		g_set_error(err, KMS_VAULT_ERROR, KMS_VAULT_ERROR_EXISTS,
		    "no subordinate CA request is pending (kmsctl init --ca-csr makes one)");
		goto out;
	}
	pub = X509_REQ_get0_pubkey(ca->csr);
	if (!kms_ca_check_chain(pub, cert, chain, cert_days, err))
		goto out;
	/* bytea[] literal built from hex: values are certificates we parsed,
	 * passed as one text parameter, never spliced into SQL. */
	arr = g_string_new("{");
	for (int i = 0; chain && i < sk_X509_num(chain); i++) {
		g_autoptr(GBytes) d = kms_x509_to_der(sk_X509_value(chain, i));
		gsize n;
		const guchar *b = g_bytes_get_data(d, &n);

		g_string_append(arr, i ? ",\"\\\\x" : "\"\\\\x");
		for (gsize j = 0; j < n; j++)
			g_string_append_printf(arr, "%02x", b[j]);
		g_string_append_c(arr, '"');
	}
	g_string_append_c(arr, '}');
	der = kms_x509_to_der(cert);
	kms_db_param_int(&p, ca->id);
	kms_db_param_bytes(&p, g_bytes_get_data(der, NULL), g_bytes_get_size(der));
	kms_db_param_text(&p, arr->str);
	ok = kms_db_exec(kms_vault_db(v),
	    "UPDATE ca SET status = 'active', certificate = $2, chain = $3::bytea[]"
	    " WHERE id = $1 AND status = 'pending'", &p, err);
	g_string_free(arr, TRUE);
out:
	kms_vault_ca_free(ca);
	return ok;
}
