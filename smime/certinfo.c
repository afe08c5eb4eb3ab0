/*
 * NAME
 *	certinfo - what a certificate says about its owner, and its chain
 * DESCRIPTION
 *	Mail addresses of a certificate and chain verification against a
 *	trust store, shared by harvesting, the vault's certificate store and
 *	kmsctl. Declared in x509util.h.
 * SECURITY
 *	Certificates come from hostile mail: addresses are bounded and
 *	normalised, verification never trusts anything the caller did not
 *	put in the store.
 */
#include "autoconfig.h"
#include "x509util.h"

#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "common/address.h"

/* Add the LEN bytes at DATA to ADDRS when they normalise to an address
 * not already there. */
static void
add_address(GPtrArray *addrs, const unsigned char *data, int len)
{
	char *a;

	if (data == NULL || len <= 0 || (a = kms_address_normalize((const char *)data, len)) == NULL)
		return;
	for (guint i = 0; i < addrs->len; i++)
		if (strcmp(g_ptr_array_index(addrs, i), a) == 0) {
			g_free(a);
			return;
		}
	g_ptr_array_add(addrs, a);
}

GPtrArray *
kms_x509_email_addresses(X509 *cert)
{
	GPtrArray *addrs = g_ptr_array_new_with_free_func(g_free);
	GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	const X509_NAME *subject = X509_get_subject_name(cert);
	int idx = -1;

	for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
		GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);

		if (g->type == GEN_EMAIL)
			add_address(addrs, ASN1_STRING_get0_data(g->d.rfc822Name),
			    ASN1_STRING_length(g->d.rfc822Name));
	}
	GENERAL_NAMES_free(gens);
	/* no SAN address: the legacy emailAddress attribute of the subject */
	while (addrs->len == 0 &&
	    (idx = X509_NAME_get_index_by_NID(subject, NID_pkcs9_emailAddress, idx)) >= 0) {
		ASN1_STRING *v = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, idx));
		unsigned char *utf8 = NULL;
		int n = ASN1_STRING_to_UTF8(&utf8, v);

		add_address(addrs, utf8, n);
		OPENSSL_free(utf8);
	}
	ERR_clear_error();
	return addrs;
}

int
kms_x509_verify_chain(X509_STORE *trust, X509 *cert, STACK_OF(X509) *untrusted, int purpose,
    time_t now, char **detail)
{
	X509_STORE *empty = NULL;
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	int rc;

	if (trust == NULL)
		trust = empty = X509_STORE_new();
	if (ctx == NULL || trust == NULL || X509_STORE_CTX_init(ctx, trust, cert, untrusted) != 1) {
		rc = X509_V_ERR_OUT_OF_MEM;
	} else {
		if (purpose >= 0)
			X509_STORE_CTX_set_purpose(ctx, purpose);
		if (now != 0)
			X509_STORE_CTX_set_time(ctx, 0, now);
		rc = X509_verify_cert(ctx) == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx);
		if (rc == X509_V_OK && X509_STORE_CTX_get_error(ctx) != X509_V_OK)
			rc = X509_STORE_CTX_get_error(ctx);
	}
	if (detail)
		*detail = rc == X509_V_OK ? NULL : g_strdup(X509_verify_cert_error_string(rc));
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(empty);
	ERR_clear_error();
	return rc;
}
