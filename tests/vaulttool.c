/*
 * NAME
 *	vaulttool - test driver for the vault library (not installed)
 * SYNOPSIS
 *	vaulttool -c CONF -p PWFILE escrow ADDRESS KEY.pem   (prints the row id)
 *	vaulttool -c CONF -p PWFILE recover ROW_ID           (prints the key PEM)
 *	vaulttool -c CONF -p PWFILE ca-key                   (prints the CA key PEM)
 *	vaulttool -c CONF -p PWFILE issue encryption|signing ADDRESS PUB.pem
 * DESCRIPTION
 *	Lets the integration tests exercise sealing through the real vault
 *	API in separate processes ("restart the process") before kmsd's
 *	enrollment exists, and obtain the CA key legitimately through the
 *	unsealed API for the dump test.
 */
#include "autoconfig.h"

#include <stdio.h>
#include <string.h>

#include <openssl/pem.h>

#include "common/config.h"
#include "keyvault/vaultca.h"
#include "smime/x509util.h"

static int
fail(const GError *e)
{
	fprintf(stderr, "vaulttool: %s\n", e ? e->message : "failed");
	return 1;
}

static int
escrow(KmsVault *v, const char *address, const char *keyfile)
{
	g_autoptr(GError) e = NULL;
	g_autoptr(KmsSecret) p8 = NULL;
	g_autoptr(GBytes) sealed = NULL;
	g_autoptr(PGresult) r = NULL;
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	PGconn *db = kms_vault_db(v);
	FILE *f = fopen(keyfile, "r");
	EVP_PKEY *key = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
	gint64 uid, id;

	if (f)
		fclose(f);
	if (key == NULL) {
		fprintf(stderr, "vaulttool: cannot read %s\n", keyfile);
		return 1;
	}
	p8 = kms_key_to_pkcs8(key, &e);
	EVP_PKEY_free(key);
	if (p8 == NULL || !kms_db_begin(db, &e))
		return fail(e);
	kms_db_param_text(&p, address);
	r = kms_db_run(db, "INSERT INTO users (address) VALUES ($1)"
	    " ON CONFLICT (lower(address)) DO UPDATE SET address = excluded.address RETURNING id",
	    &p, &e);
	if (r == NULL)
		return fail(e);
	uid = kms_db_get_int(r, 0, 0);
	if (!kms_vault_next_id(v, "escrowed_keys", &id, &e))
		return fail(e);
	sealed = kms_vault_seal(v, "escrowed_keys", "sealed_key", id, p8->data, p8->len, &e);
	if (sealed == NULL)
		return fail(e);
	kms_db_param_int(&p, id);
	kms_db_param_int(&p, uid);
	kms_db_param_int(&p, kms_vault_key_version(v));
	kms_db_param_bytes(&p, g_bytes_get_data(sealed, NULL), g_bytes_get_size(sealed));
	if (!kms_db_exec(db, "INSERT INTO escrowed_keys (id, user_id, key_type, key_version,"
	    " sealed_key) VALUES ($1, $2, 'test', $3, $4)", &p, &e) || !kms_db_commit(db, &e))
		return fail(e);
	printf("%" G_GINT64_FORMAT "\n", id);
	return 0;
}

static int
print_key(const KmsSecret *p8)
{
	g_autoptr(GError) e = NULL;
	EVP_PKEY *key = kms_key_from_pkcs8(p8, &e);

	if (key == NULL)
		return fail(e);
	PEM_write_PrivateKey(stdout, key, NULL, NULL, 0, NULL, NULL);
	EVP_PKEY_free(key);
	return 0;
}

static int
recover(KmsVault *v, const char *row)
{
	g_autoptr(GError) e = NULL;
	g_autoptr(PGresult) r = NULL;
	g_autoptr(GBytes) blob = NULL;
	g_autoptr(KmsSecret) p8 = NULL;
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	gint64 id = g_ascii_strtoll(row, NULL, 10);

	kms_db_param_int(&p, id);
	r = kms_db_run(kms_vault_db(v),
	    "SELECT key_version, sealed_key FROM escrowed_keys WHERE id = $1", &p, &e);
	if (r == NULL)
		return fail(e);
	if (PQntuples(r) != 1) {
		fprintf(stderr, "vaulttool: no escrowed key %s\n", row);
		return 1;
	}
	blob = kms_db_get_bytes(r, 0, 1);
	p8 = kms_vault_open_value(v, "escrowed_keys", "sealed_key", id,
	    (int)kms_db_get_int(r, 0, 0), blob, &e);
	return p8 ? print_key(p8) : fail(e);
}

static int
ca_key(KmsVault *v)
{
	g_autoptr(GError) e = NULL;
	KmsVaultCa *ca = kms_vault_ca_load(v, &e);
	EVP_PKEY *key = ca ? kms_vault_ca_key(v, ca, &e) : NULL;
	int rc = key ? 0 : fail(e);

	if (key)
		PEM_write_PrivateKey(stdout, key, NULL, NULL, 0, NULL, NULL);
	EVP_PKEY_free(key);
	kms_vault_ca_free(ca);
	return rc;
}

static int
issue(KmsVault *v, const KmsConfig *cfg, const char *profile, const char *address,
    const char *pubfile)
{
	g_autoptr(GError) e = NULL;
	KmsVaultCa *ca = kms_vault_ca_load(v, &e);
	EVP_PKEY *cakey = ca ? kms_vault_ca_key(v, ca, &e) : NULL;
	FILE *f = fopen(pubfile, "r");
	EVP_PKEY *pub = f ? PEM_read_PUBKEY(f, NULL, NULL, NULL) : NULL;
	KmsIssueParams ip = {
		strcmp(profile, "signing") == 0 ? KMS_PROFILE_SIGNING : KMS_PROFILE_ENCRYPTION,
		address, NULL, (int)kms_config_get_int(cfg, "ca", "cert_days"),
		kms_config_get(cfg, "ca", "crl_url"),
	};
	X509 *cert = NULL;
	int rc = 1;

	if (f)
		fclose(f);
	if (cakey == NULL)
		rc = fail(e);
	else if (pub == NULL)
		fprintf(stderr, "vaulttool: cannot read public key %s\n", pubfile);
	else if ((cert = kms_ca_issue(ca->cert, cakey, pub, &ip, &e)) == NULL)
		rc = fail(e);
	else {
		PEM_write_X509(stdout, cert);
		rc = 0;
	}
	X509_free(cert);
	EVP_PKEY_free(pub);
	EVP_PKEY_free(cakey);
	kms_vault_ca_free(ca);
	return rc;
}

int
main(int argc, char **argv)
{
	g_autofree char *conf = NULL, *pwfile = NULL;
	const GOptionEntry entries[] = {
		{"config", 'c', 0, G_OPTION_ARG_FILENAME, &conf, "configuration", "FILE"},
		{"password-file", 'p', 0, G_OPTION_ARG_FILENAME, &pwfile, "startup password", "FILE"},
		G_OPTION_ENTRY_NULL
	};
	g_autoptr(GOptionContext) oc = g_option_context_new("COMMAND ...");
	g_autoptr(GError) e = NULL;
	g_autoptr(KmsSecret) pw = NULL;
	KmsConfig *cfg = NULL;
	KmsVault *v = NULL;
	int rc = 2;

	kms_secmem_init();
	g_option_context_add_main_entries(oc, entries, NULL);
	if (!g_option_context_parse(oc, &argc, &argv, &e) || conf == NULL || argc < 2) {
		fprintf(stderr, "usage: vaulttool -c CONF -p PWFILE COMMAND ...\n");
		return 2;
	}
	if ((cfg = kms_config_load(conf, &e)) == NULL ||
	    (pw = kms_password_read(pwfile, "Startup password: ", FALSE, &e)) == NULL ||
	    (v = kms_vault_connect(kms_config_get(cfg, "vault", "dsn"), "vaulttool", &e)) == NULL ||
	    !kms_vault_unseal(v, pw, &e)) {
		rc = fail(e);
		goto out;
	}
	if (strcmp(argv[1], "escrow") == 0 && argc == 4)
		rc = escrow(v, argv[2], argv[3]);
	else if (strcmp(argv[1], "recover") == 0 && argc == 3)
		rc = recover(v, argv[2]);
	else if (strcmp(argv[1], "ca-key") == 0 && argc == 2)
		rc = ca_key(v);
	else if (strcmp(argv[1], "issue") == 0 && argc == 5)
		rc = issue(v, cfg, argv[2], argv[3], argv[4]);
	else
		fprintf(stderr, "vaulttool: unknown command or arguments\n");
out:
	kms_vault_close(v);
	kms_config_free(cfg);
	return rc;
}
