/*
 * NAME
 *	audit - the tamper-evident audit log (hash chain + MAC under the vault)
 * DESCRIPTION
 *	Every administrative action, enrollment, issuance, recovery,
 *	revocation and failed authentication appends one row to the audit
 *	table, in the same transaction as the action it records (an action
 *	that rolls back leaves no entry). Appends are serialized with a
 *	transaction-level advisory lock (pg_advisory_xact_lock(KMS_AUDIT_LOCK));
 *	under it the last row's id and hash are read, and the new row gets
 *	id = last id + 1 (ids are dense: a gap is a deletion) and
 *	  hash = SHA-256(prev_hash || id || at || actor || action || detail)
 *	where prev_hash is the previous entry's hash (32 zero bytes for entry
 *	1), id is 8 bytes big-endian, and each text is a 4-byte big-endian
 *	length then its UTF-8 bytes: at as "YYYY-MM-DDTHH:MM:SS.ffffffZ"
 *	(UTC, microseconds: what timestamptz stores, so it round-trips),
 *	actor, action, and detail as PostgreSQL prints the jsonb value
 *	(detail::text, its canonical form: keys sorted, fixed spacing).
 *
 *	The chain protects order and content at once: an edited row no longer
 *	matches its hash, a deleted or inserted row breaks the next link. Who
 *	knows the algorithm could recompute the chain, so kmsd (and kmsctl
 *	commands that unseal the vault anyway: init, passwd) add
 *	  mac = HMAC-SHA256(audit key, hash),
 *	  audit key = HKDF-SHA256(vault key, info "kmsmilter-audit-v1"),
 *	to rows whose mac is still NULL, in id order, shortly after they
 *	appear (its heartbeat and after each request), but only to rows that
 *	chain and recompute: a row that does not is logged as tampering and
 *	neither it nor any later row is MACed. The MAC makes a recomputed
 *	chain detectable by anyone who has the startup password
 *	(kmsctl audit verify --password-file).
 *
 *	Each appended entry is mirrored to syslog (kms_log, info; kmsctl
 *	writes it with syslog(3) directly), an independent copy that also
 *	shows truncation of the table's tail, which the chain cannot.
 *
 *	The actor is free text: "kmsd@HOST:PID", "kmsmilter", or for kmsctl
 *	"LOGIN (db role ROLE)" (the administrators of a later issue put
 *	their name here).
 * SECURITY
 *	Details never carry a token, PIN, password or share: token ids,
 *	serials, addresses and counts only. kms_milter may INSERT rows and
 *	SELECT (id, hash) to chain, nothing else; only the table owner may
 *	UPDATE or DELETE rows, kms_service and kms_admin only the mac column.
 * DIAGNOSTICS
 *	GError in KMS_DB_ERROR (database) or KMS_AUDIT_ERROR.
 */
#ifndef KMS_AUDIT_H
#define KMS_AUDIT_H

#include <glib.h>
#include <json-glib/json-glib.h>
#include <libpq-fe.h>

#include "common/secret.h"
#include "keyvault/vault.h"

#define KMS_AUDIT_ERROR (kms_audit_error_quark())
GQuark kms_audit_error_quark(void);

typedef enum {
	KMS_AUDIT_ERROR_BROKEN,		/* verification found a bad entry */
	KMS_AUDIT_ERROR_FAILED,		/* crypto library failure */
} KmsAuditError;

#define KMS_AUDIT_LOCK 0x6b6d7361756474LL	/* "kmsaudt" */
#define KMS_AUDIT_HASH_LEN 32
#define KMS_AUDIT_KEY_LABEL "kmsmilter-audit-v1"

/* The actor of this process's entries (copied), set once at start before
 * any thread runs. WITH_ROLE: " (db role CURRENT_USER)" is appended per
 * entry. SYSLOG: mirror entries with syslog(3) even though kms_log writes
 * to stderr (kmsctl). Default: the program name. */
void kms_audit_set_actor(const char *actor, gboolean with_role, gboolean syslog_mirror);

/* Append ACTION with DETAIL (an object, may be NULL; borrowed) in the
 * caller's open transaction on C. String members are made valid UTF-8. */
gboolean kms_audit_append(PGconn *c, const char *action, JsonObject *detail, GError **err);
/* Same as ACTOR (borrowed) rather than the process's actor: library code
 * that only one program runs (reply.c: "kmsmilter"). */
gboolean kms_audit_append_as(PGconn *c, const char *actor, const char *action,
    JsonObject *detail, GError **err);
/* Same with DETAIL_JSON the text of a JSON object (NULL: {}). */
gboolean kms_audit_append_json(PGconn *c, const char *action, const char *detail_json,
    GError **err);

/* The audit key of unsealed vault V; caller frees. */
KmsSecret *kms_audit_key(KmsVault *v, GError **err);

/* Recompute the hash of one entry into OUT. */
void kms_audit_hash(const guint8 prev[KMS_AUDIT_HASH_LEN], gint64 id, const char *at,
    const char *actor, const char *action, const char *detail,
    guint8 out[KMS_AUDIT_HASH_LEN]);

/* MAC every entry still without one, in id order, in its own transaction
 * on C (which must be idle), stopping at the first entry that does not
 * chain (logged once as tampering). *HIGH (kept by the caller, 0 at
 * start) is the highest id this process MACed: a NULL mac at or below it
 * is tampering too. *N gets how many were MACed (may be NULL). */
gboolean kms_audit_mac_pending(PGconn *c, const KmsSecret *key, gint64 *high, guint *n,
    GError **err);

/* Result of kms_audit_verify(). */
typedef struct {
	gint64 entries;		/* rows checked */
	gint64 maced;		/* MACs verified (with a key) */
	gint64 unmaced;		/* rows without a MAC yet (the newest) */
	gint64 bad_id;		/* first bad entry, 0 when intact */
	char *problem;		/* what is wrong with it (g_free) */
} KmsAuditReport;

/* Check every entry's hash, link and id (and with KEY, non-NULL, its
 * MAC). TRUE when the table could be read: then R->bad_id says whether
 * the log is intact. */
gboolean kms_audit_verify(PGconn *c, const KmsSecret *key, KmsAuditReport *r, GError **err);
void kms_audit_report_clear(KmsAuditReport *r);

#endif
