/*
 * NAME
 *	backup - encrypted snapshot of the vault, and restore into an empty
 *	database
 * DESCRIPTION
 *	kms_backup_write() copies every table of the vault schema (not the
 *	runtime table workers) and the sequences' positions out of one
 *	REPEATABLE READ, READ ONLY transaction, so vault, CA and revocation
 *	state are one consistent snapshot. kms_backup_restore() creates the
 *	schema and roles (the compiled-in sql/ scripts, as kmsctl init
 *	does), copies the tables back in dependency order and sets the
 *	sequences, all in one transaction.
 *
 *	File format (all integers big-endian):
 *	  header (52 bytes): "KMSBACKUP1" | u16 format 1 | u64 creation time
 *	    (Unix) | u32 schema version | u32 Argon2id passes | u32 memory KiB
 *	    | u32 parallelism | salt(16)
 *	  chunks: u32 length | AES-256-GCM ciphertext | tag(16)
 *	The key is Argon2id over the backup password with the header's
 *	parameters and salt (a fresh salt per file, so a fresh key). Chunk i
 *	(at most 1 MiB) uses nonce 0^32 | u64 i and associated data
 *	header | u64 i | u8 last, so an altered header, reordered, dropped,
 *	appended or truncated chunks all fail authentication. The plaintext
 *	is a stream of records: 'T' table name and column list, 'R' one COPY
 *	text-format row, 'E' row count, 'S' sequence position, 'Z' end.
 * SECURITY
 *	The snapshot holds the vault's rows as stored: the vault key only
 *	wrapped under the startup password, CA and escrowed keys sealed
 *	under the vault key. So the file without the backup password shows
 *	nothing but the header, and with it still opens no private key.
 *	Restore hands a chunk to PostgreSQL only after its tag verified and
 *	commits only after the last chunk verified: a wrong password, a
 *	damaged or truncated file leaves the database as it was.
 * DIAGNOSTICS
 *	GError in KMS_BACKUP_ERROR (or KMS_DB_ERROR, KMS_SEAL_ERROR).
 */
#ifndef KMS_BACKUP_H
#define KMS_BACKUP_H

#include <stdio.h>

#include <glib.h>
#include <libpq-fe.h>

#include "common/secret.h"

#define KMS_BACKUP_ERROR (kms_backup_error_quark())
GQuark kms_backup_error_quark(void);

typedef enum {
	KMS_BACKUP_ERROR_IO,		/* reading or writing the file */
	KMS_BACKUP_ERROR_FORMAT,	/* not a backup, or an unknown format */
	KMS_BACKUP_ERROR_PASSWORD,	/* first chunk does not open */
	KMS_BACKUP_ERROR_DAMAGED,	/* a later chunk does not open, truncated */
	KMS_BACKUP_ERROR_SCHEMA,	/* schema version or tables do not match */
	KMS_BACKUP_ERROR_NOT_EMPTY,	/* restore target is not an empty database */
	KMS_BACKUP_ERROR_NO_VAULT,	/* backup source holds no vault */
} KmsBackupErrorCode;

/* What a backup holds (filled by write and restore). */
typedef struct {
	gint64 created;		/* Unix time the backup was made */
	int schema_version;
	int tables;
	gint64 rows;
	int sequences;
} KmsBackupInfo;

/* Snapshot the vault in DB (no transaction open) to OUT, encrypted under
 * a key derived from PASSWORD with Argon2id (T passes, M KiB). OUT is
 * written sequentially; the caller makes it durable and names it. */
gboolean kms_backup_write(PGconn *db, FILE *out, const KmsSecret *password,
    guint32 t_cost, guint32 m_cost_kib, KmsBackupInfo *info, GError **err);

/* Restore the backup read from IN into DB, which must hold no table.
 * Nothing is committed unless every chunk authenticated. */
gboolean kms_backup_restore(PGconn *db, FILE *in, const KmsSecret *password,
    KmsBackupInfo *info, GError **err);

#endif
