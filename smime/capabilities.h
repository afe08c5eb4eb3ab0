/*
 * NAME
 *	capabilities - SMIMECapabilities (RFC 8551 2.5.2) to and from names
 * DESCRIPTION
 *	Names used everywhere in kmsmilter (policy, JSON, the vault):
 *	  aes128-cbc aes192-cbc aes256-cbc aes128-gcm aes192-gcm aes256-gcm
 *	  des-ede3-cbc des-cbc rc2-cbc-40 rc2-cbc-64 rc2-cbc-128 (RC2 carries
 *	  its key size as a parameter) rsaes-oaep (with non-default
 *	  parameters: rsaes-oaep-sha256 etc., after the OAEP hash)
 *	  rsa-encryption, and for other OIDs OpenSSL's short name in lower
 *	  case, else the dotted OID.
 * SECURITY
 *	Parses attribute values from hostile mail: bounded counts, no
 *	recursion.
 */
#ifndef KMS_CAPABILITIES_H
#define KMS_CAPABILITIES_H

#include <glib.h>
#include <openssl/cms.h>
#include <openssl/x509.h>

#define KMS_CAPABILITIES_MAX	64	/* names read or written at most */

#define KMS_CAPABILITIES_ERROR (kms_capabilities_error_quark())
GQuark kms_capabilities_error_quark(void);

typedef enum {
	KMS_CAPABILITIES_ERROR_UNKNOWN,	/* a name kmsmilter cannot encode */
	KMS_CAPABILITIES_ERROR_FAILED,	/* OpenSSL failure or too many names */
} KmsCapabilitiesError;

/* Names of the SMIMECapabilities in SI, in order (at most 64). Returns
 * NULL when the attribute is absent, an empty array when it is empty.
 * Caller g_ptr_array_unref()s. */
GPtrArray *kms_capabilities_from_signer(CMS_SignerInfo *si);

/* Build an SMIMECapabilities attribute value from NAMES (NULL-terminated,
 * at most 64; for a signer that announces them) and make it SI's only
 * SMIMECapabilities signed attribute. FALSE with *err on an unknown name
 * (rsaes-oaep-HASH takes sha224, sha256, sha384 or sha512; other names are
 * OpenSSL object names or dotted OIDs, sent without parameters). */
gboolean kms_capabilities_add_to_signer(CMS_SignerInfo *si, const char *const *names,
    GError **err);

#endif
