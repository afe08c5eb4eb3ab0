/*
 * NAME
 *	state - kmsmilter's configuration snapshot and what hangs off it
 * DESCRIPTION
 *	One KmsMilterState holds a loaded configuration, the vault connection
 *	pool built from it and the trust store for harvested chains. Each SMTP
 *	connection takes a reference at connect and keeps that snapshot until
 *	it closes; a reload (SIGHUP) builds a new state fully, then swaps it
 *	in, and the old one goes when its last connection does. The
 *	[enrollment] auth_map file ("login address" lines, # comments) is
 *	read once per load; an unreadable map is logged and replies that
 *	would need it are deferred. The [policy] section is resolved once
 *	per load (the global policy); whether the vault holds policy
 *	overrides at all is cached for trust_refresh, so that with
 *	encrypt = never and no overrides a message without a trigger is
 *	decided at end of headers without a query.
 * SECURITY
 *	No secrets: public certificates and the kms_milter database role.
 */
#ifndef KMS_MILTER_STATE_H
#define KMS_MILTER_STATE_H

#include <glib.h>
#include <openssl/x509.h>

#include "common/config.h"
#include "keyvault/dbpool.h"
#include "keyvault/policy.h"

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
	/* enrollment and recovery replies */
	char *enroll_address;	/* [milter] enroll_address normalised; NULL: none */
	gsize max_reply_size;
	gboolean require_auth;
	gint64 max_attempts, request_ttl;
	GHashTable *auth_map;	/* login (lower case) -> GPtrArray of addresses */
	char *auth_map_error;	/* why [enrollment] auth_map could not be read */
	/* outbound encryption */
	KmsPolicy *global_policy;	/* [policy] alone; NULL: invalid (always look) */
	const char *submit_url;		/* [mail] submit, for split copies */
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

/* Is RCPT (an envelope recipient as the MTA gave it) the enroll address? */
gboolean kms_state_is_enroll_rcpt(const KmsMilterState *s, const char *rcpt);

/* The addresses an SMTP AUTH LOGIN may enroll for: LOGIN itself when it
 * is an address, and what [enrollment] auth_map maps it to. A new
 * NULL-terminated vector (g_strfreev), possibly empty. */
char **kms_state_auth_identities(const KmsMilterState *s, const char *login);

/* May the vault's policy table hold overrides? Asked at most every
 * trust_refresh; with the vault down the last answer is kept (also across
 * reloads), TRUE when it never answered (then every message is examined at its end). QID
 * for log lines. */
gboolean kms_state_policy_rows(KmsMilterState *s, const char *qid);

/* The trust store (new reference: X509_STORE_free when done), refreshed
 * when older than trust_refresh. With the vault down the last good store
 * is kept; NULL only when none could ever be built. QID for log lines. */
X509_STORE *kms_state_trust(KmsMilterState *s, const char *qid, guint *generation);

#endif
