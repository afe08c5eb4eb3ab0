/*
 * NAME
 *	fuzz-harvest - libFuzzer target for kms_harvest()
 * DESCRIPTION
 *	Each input is handed to kms_harvest() as a whole message. Inputs
 *	whose first byte is odd are verified against a trust store holding
 *	one CA made at start-up, the others against no trust store, so both
 *	chain paths run. Every result is read through and freed: a leak or
 *	an out-of-bounds access is a finding.
 *
 *	clang -g -O1 -fsanitize=fuzzer,address,undefined -I. ... \
 *	    smime/harvest.c smime/cmsverify.c smime/capabilities.c \
 *	    tests/fuzz/fuzz-harvest.c ... -o fuzz-harvest
 *	cp -r tests/fuzz/corpus /tmp/c && ./fuzz-harvest /tmp/c
 * SECURITY
 *	The CA key exists only in this process's memory.
 */
#include "smime/harvest.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509v3.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static X509_STORE *trust;	/* holds the CA; lives as long as the process */

/* A self-signed P-256 CA certificate for KEY (caller frees); NULL on
 * failure. */
static X509 *
make_ca(EVP_PKEY *key)
{
	X509 *ca = X509_new();
	X509_NAME *name = X509_NAME_new();
	X509V3_CTX ctx;
	X509_EXTENSION *bc;

	if (ca == NULL || name == NULL ||
	    !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
	    (const unsigned char *) "Fuzz CA", -1, -1, 0) ||
	    !X509_set_version(ca, X509_VERSION_3) ||
	    !ASN1_INTEGER_set(X509_get_serialNumber(ca), 1) ||
	    !X509_set_subject_name(ca, name) ||
	    !X509_set_issuer_name(ca, name) ||
	    !X509_set_pubkey(ca, key) ||
	    !X509_gmtime_adj(X509_getm_notBefore(ca), 0) ||
	    !X509_gmtime_adj(X509_getm_notAfter(ca), 3650L * 24 * 3600))
		goto fail;
	X509V3_set_ctx(&ctx, ca, ca, NULL, NULL, 0);
	if ((bc = X509V3_EXT_nconf_nid(NULL, &ctx, NID_basic_constraints,
	    "critical,CA:TRUE")) == NULL)
		goto fail;
	X509_add_ext(ca, bc, -1);
	X509_EXTENSION_free(bc);
	if (X509_sign(ca, key, EVP_sha256()) <= 0)
		goto fail;
	X509_NAME_free(name);
	return ca;
fail:
	X509_NAME_free(name);
	X509_free(ca);
	return NULL;
}

/* Make the CA and the trust store once. */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	X509 *ca = key ? make_ca(key) : NULL;

	if (ca == NULL || (trust = X509_STORE_new()) == NULL ||
	    X509_STORE_add_cert(trust, ca) != 1)
		abort();
	X509_free(ca);
	EVP_PKEY_free(key);
	return 0;
}

/* Harvest one input and touch everything in the result. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	KmsHarvestOptions o;
	KmsHarvestResult *r;
	size_t sum = 0;

	kms_harvest_options_init(&o);
	o.trust = size > 0 && (data[0] & 1) ? trust : NULL;
	r = kms_harvest(&o, data, size);
	for (guint i = 0; i < r->signers->len; i++) {
		KmsHarvestSigner *s = g_ptr_array_index(r->signers, i);

		sum += strlen(kms_signer_status_name(s->status));
		sum += s->detail ? strlen(s->detail) : 0;
		for (guint j = 0; j < s->addresses->len; j++)
			sum += strlen(g_ptr_array_index(s->addresses, j));
		for (guint j = 0; j < s->capabilities->len; j++)
			sum += strlen(g_ptr_array_index(s->capabilities, j));
	}
	for (guint i = 0; i < r->problems->len; i++)
		sum += strlen(g_ptr_array_index(r->problems, i));
	(void) sum;
	kms_harvest_result_free(r);
	return 0;
}
