/*
 * NAME
 *	export - moving users and their key history between vaults
 * DESCRIPTION
 *	Every vault has one active transport key pair (table transport_keys):
 *	an RSA-3072 key, its PKCS#8 sealed under the vault key like every
 *	secret column, and a self-signed certificate (keyUsage
 *	digitalSignature + keyEncipherment, ten years). Self-signed because
 *	trust in it comes from its SHA-256 fingerprint, compared out of band
 *	by the two administrators (kmsctl export --fingerprint), not from a
 *	CA: the internal CA may be a subordinate waiting for its certificate,
 *	and a CA-issued transport certificate would suggest a trust path the
 *	receiving vault does not have. kmsd makes the pair when it starts and
 *	the vault has none (kms_transport_ensure).
 *
 *	An "export" request (kmsctl export; payload: addresses or all, the
 *	target's transport certificate, the fingerprint the administrator
 *	typed, a bundle id) makes kmsd build the bundle
 *	  CMS AuthEnvelopedData (AES-256-GCM, RSAES-OAEP with SHA-256 to the
 *	  target transport certificate) of
 *	  CMS SignedData (by this vault's transport key, its certificate
 *	  included) of the plaintext
 *	    "KMSBUNDLE1\n" || u32 n || manifest (JSON, n bytes)
 *	    || u32 count || count * (u32 n || PKCS#8 DER, n bytes)
 *	(u32: 4 bytes big-endian). The manifest names the bundle id, source
 *	and target transport certificates (SHA-256) and each user's address,
 *	escrowed keys (index into the key list, type, escrow date, the
 *	SHA-256 of the certificate) and every certificate issued to the user
 *	(DER). Keys travel outside the JSON so the receiving side copies
 *	them straight into secure memory and no JSON parser ever holds one.
 *	In the same transaction kmsd deletes the users' escrowed keys, marks
 *	the users exported, revokes their valid issued certificates (reason
 *	superseded), queues a "crl" request and appends audit entries; the
 *	bundle goes to requests.result and a report (no secrets) to
 *	payload.report, for kmsctl to write out.
 *
 *	An "import" request carries the bundle in requests.result. kmsd
 *	decrypts it with the active transport key (a bundle encrypted to
 *	another certificate is refused naming this vault's fingerprint),
 *	verifies the signature (the signer's certificate is taken from the
 *	bundle: the administrator vouches for the source, optionally by its
 *	fingerprint, payload.source_fingerprint), checks the manifest names
 *	this vault as target and the signer as source, refuses a bundle id
 *	already in imported_bundles, then creates or reactivates the users,
 *	records the certificates (source "issued", status "revoked": the
 *	source vault revoked them when it exported; they keep vault A's
 *	issuer, so this vault's CRL never lists them and outbound mail never
 *	uses them) and seals each key under this vault's key, linked to its
 *	certificate so kmsctl recover returns the whole history.
 * SECURITY
 *	Opens escrowed keys and the transport key. The bundle plaintext can
 *	exceed the secure heap, so it lives in ordinary memory and is wiped
 *	with OPENSSL_cleanse before it is freed; single keys are KmsSecrets.
 *	The bundle itself can be read by the holder of the target's vault key
 *	only. Reports and audit entries carry addresses, serials and counts.
 * DIAGNOSTICS
 *	Refusals are KMS_ISSUE_ERROR_REFUSED (issue.h), one line naming the
 *	address, bundle or fingerprint, so the worker fails the request for
 *	good and kmsctl prints requests.last_error.
 */
#ifndef KMS_EXPORT_H
#define KMS_EXPORT_H

#include <glib.h>

#include "keyvault/worker.h"

#define KMS_BUNDLE_MAGIC "KMSBUNDLE1\n"
#define KMS_BUNDLE_FORMAT "kmsmilter-export-1"

/* Make this vault's transport key pair when it has none, in a transaction
 * of its own on V's idle connection (kmsd at start). */
gboolean kms_transport_ensure(KmsVault *v, GError **err);

/* Request ID of kind "export" / "import" with its PAYLOAD (JSON text),
 * in the worker's transaction; a failure leaves nothing changed. */
gboolean kms_work_export(KmsWorker *w, gint64 id, const char *payload, GError **err);
gboolean kms_work_import(KmsWorker *w, gint64 id, const char *payload, GError **err);

#endif
