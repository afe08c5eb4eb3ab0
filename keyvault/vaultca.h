/*
 * NAME
 *	vaultca - the internal CA as stored in the vault
 * DESCRIPTION
 *	Creates the CA at kmsctl init (self-signed root, or a key and CSR for
 *	a subordinate CA), installs the signed subordinate certificate and
 *	its chain, loads the public parts for display, and opens the sealed
 *	CA key for issuing.
 * SECURITY
 *	The CA private key is stored only sealed (table ca, column sealed_key,
 *	bound to the row). kms_vault_ca_key() needs an unsealed vault.
 * DIAGNOSTICS
 *	GError from vault, seal, ca and db domains; KMS_VAULT_ERROR for state.
 */
#ifndef KMS_VAULTCA_H
#define KMS_VAULTCA_H

#include <openssl/x509.h>

#include "keyvault/vault.h"
#include "smime/ca.h"

typedef struct {
	gint64 id;
	char *status;		/* active | pending */
	char *key_type;
	char *subject;
	X509 *cert;		/* NULL while pending */
	STACK_OF(X509) *chain;	/* issuers of cert, nearest first; may be empty */
	X509_REQ *csr;		/* subordinate CA request, or NULL */
	int key_version;
	GBytes *sealed_key;
} KmsVaultCa;

/* Inside the caller's transaction, on an unsealed vault: make a key of
 * TYPE and a self-signed root SUBJECT valid DAYS, and store both. */
gboolean kms_vault_ca_create_root(KmsVault *v, KmsKeyType type, const char *subject,
    int days, GError **err);
/* Same, but store the key with status pending and return the CSR. */
X509_REQ *kms_vault_ca_create_csr(KmsVault *v, KmsKeyType type, const char *subject,
    GError **err);
/* Install the signed certificate for the pending CA (checks in ca.h). */
gboolean kms_vault_ca_install(KmsVault *v, X509 *cert, STACK_OF(X509) *chain,
    int cert_days, GError **err);

/* The active CA, or the pending one when none is active. Caller frees. */
KmsVaultCa *kms_vault_ca_load(KmsVault *v, GError **err);
/* The version of the row kms_vault_ca_load() reads, "ID/XMIN" ("" when
 * there is none): any UPDATE of the row changes it. NULL with *err on a
 * database error; g_free. */
char *kms_vault_ca_version(KmsVault *v, GError **err);
KmsVaultCa *kms_vault_ca_free(KmsVaultCa *ca);

/* The CA's private key (unsealed vault). Caller EVP_PKEY_free()s. */
EVP_PKEY *kms_vault_ca_key(KmsVault *v, const KmsVaultCa *ca, GError **err);

/* PKCS#8 DER of KEY in secure memory, and back. */
KmsSecret *kms_key_to_pkcs8(EVP_PKEY *key, GError **err);
EVP_PKEY *kms_key_from_pkcs8(const KmsSecret *der, GError **err);

#endif
