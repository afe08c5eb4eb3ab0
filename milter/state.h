/*
 * NAME
 *	state - kmsmilter's configuration snapshot and what hangs off it
 * DESCRIPTION
 *	One KmsMilterState holds a loaded configuration, the vault connection
 *	pool built from it and the trust store for harvested chains. Each SMTP
 *	connection takes a reference at connect and keeps that snapshot until
 *	it closes; a reload (SIGHUP) builds a new state fully, then swaps it
 *	in, and the old one goes when its last connection does.
 * SECURITY
 *	No secrets: public certificates and the kms_milter database role.
 */
#ifndef KMS_MILTER_STATE_H
#define KMS_MILTER_STATE_H

#include <glib.h>
#include <openssl/x509.h>

#include "common/config.h"
#include "keyvault/dbpool.h"

typedef struct {
	KmsConfig *cfg;
	KmsDbPool *pool;
	/* cached settings */
	gsize max_message_size, spool_memory;
	const char *temp_dir;
	gboolean tempfail_on_db_error;
	guint max_depth;
	gint64 trust_refresh_us;
	gboolean system_trust;
	/* signatures recorded lately: key (hex digest) -> monotonic us */
	gint64 seen_refresh_us;
	GMutex seen_lock;
	GHashTable *seen;
	/* trust store, refreshed from the vault every trust_refresh */
	GMutex trust_lock;
	X509_STORE *trust;
	gint64 trust_loaded_at;	/* monotonic us; 0: never */
	guint trust_generation;	/* counts loads: statuses may change with it */
} KmsMilterState;

/* A new state owning CFG (taken). */
KmsMilterState *kms_state_new(KmsConfig *cfg);
/* Make S the current state (takes the caller's reference). */
void kms_state_install(KmsMilterState *s);
/* The current state with a new reference; release when done. */
KmsMilterState *kms_state_acquire(void);
void kms_state_release(KmsMilterState *s);
/* Drop the current state at shutdown. */
void kms_state_shutdown(void);

/* Was KEY recorded less than seen_refresh ago? If not, the caller records
 * it and calls kms_state_seen_add. */
gboolean kms_state_seen(KmsMilterState *s, const char *key);
void kms_state_seen_add(KmsMilterState *s, const char *key);

/* The trust store (new reference: X509_STORE_free when done), refreshed
 * when older than trust_refresh. With the vault down the last good store
 * is kept; NULL only when none could ever be built. QID for log lines. */
X509_STORE *kms_state_trust(KmsMilterState *s, const char *qid, guint *generation);

#endif
