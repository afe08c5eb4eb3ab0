/*
 * NAME
 *	pkcs12 - PKCS#12 files that hand a user their keys and certificates
 * DESCRIPTION
 *	Pure OpenSSL code: no database, no milter. Builds one PKCS#12 from
 *	one or more key/certificate pairs (enrollment: the encryption pair
 *	and perhaps a signing pair; recovery: the whole key history) plus
 *	the CA chain, in one of two profiles:
 *	  modern  PBES2 (PBKDF2 with HMAC-SHA256, AES-256-CBC) for the key
 *	          bags and the certificate safe, MAC HMAC-SHA256. What
 *	          OpenSSL 3 writes by default; NSS (Thunderbird) reads it,
 *	          gpgsm 2.2 does not.
 *	  legacy  pbeWithSHAAnd3-KeyTripleDES-CBC for the key bags and the
 *	          certificate safe, MAC HMAC-SHA1, as `openssl pkcs12
 *	          -export -legacy` writes it: what gpgsm 2.2 reads (with
 *	          RSA keys; it crashes on EC keys), with salts chosen so
 *	          that gpgsm's flawed key derivation gets them right (see
 *	          pkcs12.c; without that, 9 of 300 files failed here).
 *	Both use KMS_P12_ITERATIONS for every key derivation and the MAC.
 * SECURITY
 *	The password is handed to OpenSSL's PBE and MAC functions and to
 *	the salt check, which wipes its copy; it never appears in error
 *	messages. Private keys are only ever written encrypted (shrouded
 *	key bags); their plaintext PKCS#8 form lives in OpenSSL objects
 *	that wipe themselves when freed. Callers own every object they
 *	pass.
 * DIAGNOSTICS
 *	GError in KMS_P12_ERROR, one line, naming the entry (by subject)
 *	that was refused.
 */
#ifndef KMS_PKCS12_H
#define KMS_PKCS12_H

#include <glib.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#define KMS_P12_ERROR (kms_p12_error_quark())
GQuark kms_p12_error_quark(void);

typedef enum {
	KMS_P12_ERROR_FAILED,	/* OpenSSL failure (reason in message) */
	KMS_P12_ERROR_INVALID,	/* bad input from the caller */
} KmsP12Error;

/*
 * Iterations of every password-based key derivation and of the MAC, in
 * both profiles: OpenSSL 3's default (PKCS12_DEFAULT_ITER). Enrollment
 * and recovery protect the files with one-time tokens of at least 100
 * random bits, which no iteration count makes stronger or weaker; 2048 is
 * what OpenSSL, NSS and gpgsm write and read without surprises, and a
 * recovery file with many keys runs one derivation per bag. Should users
 * ever choose these passwords, raise it for the modern profile.
 */
#define KMS_P12_ITERATIONS	2048

typedef enum {
	KMS_P12_MODERN,		/* PBES2/PBKDF2-HMAC-SHA256/AES-256-CBC */
	KMS_P12_LEGACY,		/* PKCS#12 PBE SHA-1 + 3DES, MAC SHA-1 */
} KmsP12Profile;

/* "modern" or "legacy", any case. FALSE on an unknown name. */
gboolean kms_p12_profile_parse(const char *name, KmsP12Profile *out);
/* The profile's name; a static string, "unknown" when out of range. */
const char *kms_p12_profile_name(KmsP12Profile p);

/* One key and its certificate; everything borrowed from the caller. */
typedef struct {
	EVP_PKEY *key;		/* private key matching CERT */
	X509 *cert;
	const char *friendly_name; /* UTF-8, e.g. "alice@example.org
				    * (encryption 2026-11-22)"; NULL: none */
} KmsP12Entry;

/*
 * Build a PKCS#12 (DER) from N >= 1 ENTRIES and the CA certificates of
 * CHAIN (may be NULL; borrowed), encrypted and MACed with PASSWORD
 * (non-empty UTF-8) in PROFILE. Each key becomes a shrouded key bag and
 * each certificate a certificate bag; both carry the same localKeyID
 * (SHA-1 of the certificate) and the entry's friendly name. CHAIN
 * certificates become certificate bags with neither. The certificate
 * safe comes first, then the key safe, as OpenSSL and NSS write them.
 * Order matters to gpgsm 2.2, which takes only the first key of a file
 * (NSS and OpenSSL take all): put the key the user needs most first.
 * KMS_P12_ERROR_INVALID when there is no entry, a key does not match its
 * certificate, two entries share a certificate, a friendly name is not
 * UTF-8, or the password is missing, empty or not UTF-8; in the legacy
 * profile also when gpgsm could not use the password: longer than 31
 * bytes, or characters beyond Latin-1.
 * Caller frees with g_bytes_unref.
 */
GBytes *kms_p12_build(const KmsP12Entry *entries, guint n, STACK_OF(X509) *chain,
    const char *password, KmsP12Profile profile, GError **err);

#endif
