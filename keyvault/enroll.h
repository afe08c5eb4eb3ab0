/*
 * NAME
 *	enroll - enrollment tokens and the requests that mail them
 * DESCRIPTION
 *	kms_enroll_user() registers an address (creating the user if new),
 *	makes a one-time token bound to it, stores only the token's hash, and
 *	queues a "mail" request for kmsd carrying the token encrypted to the
 *	queue key (queuekey.h). With DELIVER_MAIL false the token is only
 *	returned, for the administrator to hand over in person, and the
 *	queued mail explains how to reply without it. A pending token of the
 *	same purpose for the address is cancelled: one live token per user.
 *	With WITH_PIN ([enrollment] p12_password = pin) a PIN is made too:
 *	20 base32 characters (100 bits from the OS CSPRNG) printed in four
 *	groups, "XXXXX-XXXXX-XXXXX-XXXXX", for the administrator to hand
 *	over; it is stored on the token row sealed to the queue key (label
 *	"p12-pin", the token's id), and kmsd uses it as the PKCS#12 password.
 *	kms_enroll_can_recover() says whether recovery makes sense for an
 *	address: a user with at least one escrowed key and its certificate.
 * SECURITY
 *	The token and the PIN exist in clear only in the returned KmsSecrets
 *	and inside kmsd while it writes the mail or the PKCS#12.
 * DIAGNOSTICS
 *	GError in KMS_DB_ERROR, KMS_SEAL_ERROR or G_OPTION_ERROR (bad address).
 */
#ifndef KMS_ENROLL_H
#define KMS_ENROLL_H

#include <glib.h>
#include <libpq-fe.h>

#include "common/secret.h"
#include "keyvault/queuekey.h"

typedef struct {
	const char *purpose;		/* "enroll" or "recover" */
	gint64 token_ttl;		/* seconds */
	gint64 request_ttl;		/* seconds a queued mail waits for kmsd */
	gboolean deliver_mail;		/* token in the mail, else out of band */
	gboolean with_pin;		/* make a PIN for the PKCS#12 password */
	guint8 queue_pub[KMS_QUEUE_KEY_LEN];
} KmsEnrollParams;

/* Inside the caller's transaction. *TOKEN gets the printed token (caller
 * frees); *NORMALIZED_ADDRESS (may be NULL) the address as stored. */
gboolean kms_enroll_user(PGconn *c, const KmsEnrollParams *p, const char *address,
    KmsSecret **token, char **normalized_address, GError **err);
/* Same; with P->with_pin *PIN gets the printed PIN (caller frees), else
 * NULL. PIN may be NULL only without with_pin. */
gboolean kms_enroll_user_pin(PGconn *c, const KmsEnrollParams *p, const char *address,
    KmsSecret **token, KmsSecret **pin, char **normalized_address, GError **err);

/* A PIN as printed (23 characters, NUL-terminated); caller frees. */
KmsSecret *kms_pin_new(GError **err);

/* TRUE when ADDRESS is a user with an escrowed key to recover; else FALSE
 * with *err (G_OPTION_ERROR_BAD_VALUE) saying why, or a KMS_DB_ERROR. */
gboolean kms_enroll_can_recover(PGconn *c, const char *address, GError **err);

/* One address of kms_enroll_batch(). */
typedef struct {
	const char *address;		/* in: as given (borrowed) */
	char *stored;			/* out: the address as stored */
	KmsSecret *token;		/* out: the printed token */
	GError *error;			/* out: why this address was refused */
} KmsEnrollItem;

/* kms_enroll_user() for N addresses with a few set-based statements (no
 * round trip per address), inside the caller's transaction: the same rows
 * and payloads. An address that is not a mail address gets its ->error and
 * is left out. FALSE with *ERR (and every item cleared) when the batch
 * cannot be done so: a database error (the transaction is then aborted),
 * two addresses naming one user, or P->with_pin (not batched); the caller
 * rolls back and goes address by address. */
gboolean kms_enroll_batch(PGconn *c, const KmsEnrollParams *p, KmsEnrollItem *items, guint n,
    GError **err);
void kms_enroll_item_clear(KmsEnrollItem *it);

#endif
