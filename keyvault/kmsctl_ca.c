/*
 * NAME
 *	kmsctl ca - show the internal CA, install a subordinate CA certificate
 * SYNOPSIS
 *	kmsctl ca show [--pem] [--json]
 *	kmsctl ca install CERT [CHAIN]
 * SECURITY
 *	Public data only; install checks the chain before it is stored.
 */
#include "autoconfig.h"
#include "kmsctl.h"

#include <stdio.h>
#include <string.h>

#include <openssl/pem.h>

#include "keyvault/vaultca.h"
#include "smime/x509util.h"

static void
json_cert(JsonBuilder *b, X509 *x)
{
	g_autofree char *subj = kms_x509_name_text(X509_get_subject_name(x));
	g_autofree char *iss = kms_x509_name_text(X509_get_issuer_name(x));
	g_autofree char *nb = kms_asn1_time_iso8601(X509_get0_notBefore(x));
	g_autofree char *na = kms_asn1_time_iso8601(X509_get0_notAfter(x));
	g_autofree char *fp = kms_x509_sha256_hex(x);
	g_autofree char *serial = kms_x509_serial_hex(x);

	json_builder_begin_object(b);
	json_builder_set_member_name(b, "subject");
	json_builder_add_string_value(b, subj);
	json_builder_set_member_name(b, "issuer");
	json_builder_add_string_value(b, iss);
	json_builder_set_member_name(b, "serial");
	json_builder_add_string_value(b, serial);
	json_builder_set_member_name(b, "not_before");
	json_builder_add_string_value(b, nb);
	json_builder_set_member_name(b, "not_after");
	json_builder_add_string_value(b, na);
	json_builder_set_member_name(b, "sha256");
	json_builder_add_string_value(b, fp);
	json_builder_end_object(b);
}

static void
print_cert(const char *label, X509 *x)
{
	g_autofree char *subj = kms_x509_name_text(X509_get_subject_name(x));
	g_autofree char *iss = kms_x509_name_text(X509_get_issuer_name(x));
	g_autofree char *nb = kms_asn1_time_iso8601(X509_get0_notBefore(x));
	g_autofree char *na = kms_asn1_time_iso8601(X509_get0_notAfter(x));
	g_autofree char *fp = kms_x509_sha256_hex(x);
	g_autofree char *serial = kms_x509_serial_hex(x);

	printf("%s\n  subject:  %s\n  issuer:   %s\n  serial:   %s\n"
	    "  validity: %s to %s\n  sha256:   %s\n", label, subj, iss, serial, nb, na, fp);
}

static int
ca_show(KmsCtl *ctl, int argc, char **argv)
{
	gboolean json = FALSE, pem = FALSE;
	const GOptionEntry entries[] = {
		{"json", 0, 0, G_OPTION_ARG_NONE, &json, "one JSON document on stdout", NULL},
		{"pem", 0, 0, G_OPTION_ARG_NONE, &pem, "print the CA certificate chain as PEM", NULL},
		G_OPTION_ENTRY_NULL
	};
	g_autoptr(GError) e = NULL;
	KmsVaultCa *ca;
	KmsVault *v;
	int rc;

	if ((rc = kmsctl_parse(ctl, &argc, &argv, entries, "",
	    "Show the internal CA.")) != KMSCTL_OK)
		return rc;
	if ((v = kmsctl_connect(ctl)) == NULL)
		return KMSCTL_FAIL;
	ca = kms_vault_ca_load(v, &e);
	if (ca == NULL) {
		kms_vault_close(v);
		return kmsctl_fail_error(e);
	}
	if (pem) {
		if (ca->cert == NULL) {
			rc = kmsctl_fail("the CA is pending: no certificate installed yet");
			goto out;
		}
		PEM_write_X509(stdout, ca->cert);
		for (int i = 0; i < sk_X509_num(ca->chain); i++)
			PEM_write_X509(stdout, sk_X509_value(ca->chain, i));
	} else if (json) {
		g_autoptr(JsonBuilder) b = json_builder_new();

		json_builder_begin_object(b);
		json_builder_set_member_name(b, "status");
		json_builder_add_string_value(b, ca->status);
		json_builder_set_member_name(b, "key_type");
		json_builder_add_string_value(b, ca->key_type);
		json_builder_set_member_name(b, "subject");
		json_builder_add_string_value(b, ca->subject);
		json_builder_set_member_name(b, "certificate");
		if (ca->cert)
			json_cert(b, ca->cert);
		else
			json_builder_add_null_value(b);
		json_builder_set_member_name(b, "chain");
		json_builder_begin_array(b);
		for (int i = 0; i < sk_X509_num(ca->chain); i++)
			json_cert(b, sk_X509_value(ca->chain, i));
		json_builder_end_array(b);
		json_builder_end_object(b);
		kmsctl_print_json(b);
	} else {
		printf("status:   %s\nkey type: %s\n", ca->status, ca->key_type);
		if (ca->cert)
			print_cert("CA certificate:", ca->cert);
		else
			printf("subject:  %s\n(no certificate yet: kmsctl ca install CERT [CHAIN])\n",
			    ca->subject);
		for (int i = 0; i < sk_X509_num(ca->chain); i++) {
			g_autofree char *label = g_strdup_printf("chain %d:", i + 1);

			print_cert(label, sk_X509_value(ca->chain, i));
		}
	}
	rc = KMSCTL_OK;
out:
	kms_vault_ca_free(ca);
	kms_vault_close(v);
	return rc;
}

static int
ca_install(KmsCtl *ctl, int argc, char **argv)
{
	g_autoptr(GError) e = NULL;
	STACK_OF(X509) *certs = NULL, *chain = NULL;
	KmsVault *v = NULL;
	int rc;

	if ((rc = kmsctl_parse(ctl, &argc, &argv, NULL, "CERT [CHAIN]",
	    "Install the signed certificate of a subordinate CA made by kmsctl init --ca-csr."))
	    != KMSCTL_OK)
		return rc;
	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: kmsctl ca install CERT [CHAIN]\n");
		return KMSCTL_USAGE;
	}
	if (kmsctl_config(ctl) == NULL)
		return KMSCTL_FAIL;
	certs = kms_x509_read_pem_file(argv[1], &e);
	if (certs == NULL)
		return kmsctl_fail_error(e);
	if (argc == 3) {
		chain = kms_x509_read_pem_file(argv[2], &e);
		if (chain == NULL) {
			rc = kmsctl_fail_error(e);
			goto out;
		}
	} else
		chain = sk_X509_new_null();
	/* Extra certificates in CERT's file count as the start of the chain. */
	while (sk_X509_num(certs) > 1)
		sk_X509_unshift(chain, sk_X509_pop(certs));
	if ((v = kmsctl_connect(ctl)) == NULL) {
		rc = KMSCTL_FAIL;
		goto out;
	}
	if (!kms_db_begin(kms_vault_db(v), &e) ||
	    !kms_vault_ca_install(v, sk_X509_value(certs, 0), chain,
		(int)kms_config_get_int(ctl->cfg, "ca", "cert_days"), &e) ||
	    !kms_db_commit(kms_vault_db(v), &e)) {
		kms_db_rollback(kms_vault_db(v));
		rc = kmsctl_fail_error(e);
		goto out;
	}
	{
		g_autofree char *s = kms_x509_name_text(X509_get_subject_name(sk_X509_value(certs, 0)));

		printf("subordinate CA %s installed with a chain of %d certificate%s\n", s,
		    sk_X509_num(chain), sk_X509_num(chain) == 1 ? "" : "s");
	}
	rc = KMSCTL_OK;
out:
	sk_X509_pop_free(certs, X509_free);
	sk_X509_pop_free(chain, X509_free);
	kms_vault_close(v);
	return rc;
}

int
kmsctl_cmd_ca(KmsCtl *ctl, int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "show") == 0)
		return ca_show(ctl, argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "install") == 0)
		return ca_install(ctl, argc - 1, argv + 1);
	fprintf(stderr, "usage: kmsctl ca show [--pem] [--json] | kmsctl ca install CERT [CHAIN]\n");
	return KMSCTL_USAGE;
}
