/*
 * NAME
 *	config - the one configuration file read by kmsctl, kmsd and kmsmilter
 * DESCRIPTION
 *	An INI file parsed with GKeyFile and checked against one schema table
 *	(config.c): every key has a type, a default and a line of documentation.
 *	Unknown sections or keys and bad values are errors that name file:line.
 *	A loaded configuration is immutable; a reload builds a new one and swaps.
 * SECURITY
 *	The file holds no secret itself (password files are named, not inlined).
 * DIAGNOSTICS
 *	GError in KMS_CONFIG_ERROR, message "FILE:LINE: problem".
 */
#ifndef KMS_CONFIG_H
#define KMS_CONFIG_H

#include <stdio.h>

#include <glib.h>

#define KMS_CONFIG_ERROR (kms_config_error_quark())
GQuark kms_config_error_quark(void);

typedef enum {
	KMS_CONFIG_ERROR_IO,
	KMS_CONFIG_ERROR_SYNTAX,
	KMS_CONFIG_ERROR_UNKNOWN,
	KMS_CONFIG_ERROR_VALUE,
	KMS_CONFIG_ERROR_MISSING,
} KmsConfigError;

typedef enum {
	KMS_CT_STRING,		/* any non-empty text */
	KMS_CT_PATH,		/* absolute or relative file name */
	KMS_CT_BOOL,		/* yes/no/true/false/1/0 */
	KMS_CT_INT,		/* integer within [min, max] */
	KMS_CT_DURATION,	/* integer with unit s/m/h/d, stored in seconds */
	KMS_CT_SIZE,		/* integer with unit k/m/g, stored in bytes */
	KMS_CT_ENUM,		/* one of a '|' separated set */
	KMS_CT_LIST,		/* comma separated, each from a '|' set if given */
	KMS_CT_DSN,		/* libpq conninfo, checked with PQconninfoParse */
	KMS_CT_ADDRESS,		/* mail address local@domain */
	KMS_CT_SOCKET,		/* milter socket: inet:PORT@HOST, inet6:, unix: */
	KMS_CT_URL,		/* scheme://... */
	KMS_CT_DN,		/* X.509 name in /A=b/C=d or "A=b, C=d" form */
} KmsConfigType;

typedef struct {
	const char *section;
	const char *key;
	KmsConfigType type;
	const char *def;	/* default as text, NULL: no default */
	gint64 min, max;	/* for INT, DURATION, SIZE */
	const char *choices;	/* for ENUM and LIST: "a|b|c" */
	const char *doc;	/* one line for kmsmilter.conf(5) and -n */
} KmsConfigKey;

typedef struct kms_config KmsConfig;

/* Table of every known key, terminated by an entry with section NULL. */
const KmsConfigKey *kms_config_schema(void);

/* Default path: $(sysconfdir)/kmsmilter/kmsmilter.conf. Borrowed. */
const char *kms_config_default_path(void);

/* Load and validate FILE. Returns a new config (free with kms_config_free)
 * or NULL with *err set to "FILE:LINE: message". */
KmsConfig *kms_config_load(const char *path, GError **err);
KmsConfig *kms_config_free(KmsConfig *cfg);
const char *kms_config_path(const KmsConfig *cfg);

/* Accessors. The key must be in the schema (a programming error otherwise).
 * Strings are borrowed from cfg; NULL when unset and without default. */
const char *kms_config_get(const KmsConfig *cfg, const char *section, const char *key);
gboolean kms_config_get_bool(const KmsConfig *cfg, const char *section, const char *key);
gint64 kms_config_get_int(const KmsConfig *cfg, const char *section, const char *key);
/* Borrowed NULL-terminated vector, never NULL (empty when unset). */
char *const *kms_config_get_list(const KmsConfig *cfg, const char *section, const char *key);
/* TRUE when the file itself sets the key (not a default). */
gboolean kms_config_is_set(const KmsConfig *cfg, const char *section, const char *key);

/* The DSN a component uses: [SECTION] dsn if set, else [vault] dsn. */
const char *kms_config_dsn(const KmsConfig *cfg, const char *section);

/* Print every key with its effective value (for -n / check mode). */
void kms_config_dump(const KmsConfig *cfg, FILE *out);

/* Check VALUE for [SECTION] KEY as a load would (kmsctl policy set shares
 * it). FALSE with *why (g_free) naming the problem, also for unknown keys. */
gboolean kms_config_check(const char *section, const char *key, const char *value, char **why);

/* Parse helpers shared with the command line. */
gboolean kms_parse_bool(const char *s, gboolean *out);
gboolean kms_parse_duration(const char *s, gint64 *seconds);
gboolean kms_parse_size(const char *s, gint64 *bytes);

#endif
