/*
 * NAME
 *	config - schema-driven configuration (see config.h)
 * DESCRIPTION
 *	The file is scanned once by line so every diagnostic can name FILE:LINE
 *	(GKeyFile keeps no line numbers), then parsed by GKeyFile for values.
 *	Each key is checked against kms_schema[]; the same table prints the
 *	effective configuration for check mode.
 * SECURITY
 *	Values may be echoed in diagnostics; no key holds a secret by design.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

G_DEFINE_QUARK(kms-config-error-quark, kms_config_error)

#define ALGS "aes256-gcm|aes128-gcm|aes256-cbc|aes192-cbc|aes128-cbc|des-ede3-cbc"

static const KmsConfigKey kms_schema[] = {
	{"vault", "dsn", KMS_CT_DSN, NULL, 0, 0, NULL,
	 "libpq connection string of the administrator's (kmsctl) connection to the vault; required"},

	{"milter", "socket", KMS_CT_SOCKET, "inet:8891@127.0.0.1", 0, 0, NULL,
	 "where kmsmilter listens: inet:PORT@ADDR, inet6:PORT@ADDR or unix:PATH"},
	{"milter", "dsn", KMS_CT_DSN, NULL, 0, 0, NULL,
	 "connection string for kmsmilter (role kms_milter); default [vault] dsn"},
	{"milter", "enroll_address", KMS_CT_ADDRESS, NULL, 0, 0, NULL,
	 "address users reply to with their enrollment token"},
	{"milter", "user", KMS_CT_STRING, NULL, 0, 0, NULL,
	 "account kmsmilter switches to when started as root"},
	{"milter", "pid_file", KMS_CT_PATH, NULL, 0, 0, NULL,
	 "file kmsmilter writes its process id to"},
	{"milter", "max_message_size", KMS_CT_SIZE, "50m", 1024, G_GINT64_CONSTANT(4) << 30, NULL,
	 "messages larger than this pass through untouched"},
	{"milter", "on_db_error", KMS_CT_ENUM, "accept", 0, 0, "accept|tempfail",
	 "verdict for harvest-only traffic when the vault cannot be reached"},
	{"milter", "spool_memory", KMS_CT_SIZE, "1m", 0, G_GINT64_CONSTANT(1) << 30, NULL,
	 "message bodies up to this size are kept in memory, larger ones in a temporary file"},
	{"milter", "temp_dir", KMS_CT_PATH, "/tmp", 0, 0, NULL,
	 "directory for spooled message bodies (files are unlinked at once)"},
	{"milter", "db_connections", KMS_CT_INT, "4", 1, 64, NULL,
	 "most connections kmsmilter opens to the vault at once"},
	{"milter", "db_timeout", KMS_CT_DURATION, "5s", 1, 300, NULL,
	 "how long a message waits for a free vault connection before on_db_error applies"},
	{"milter", "trust_refresh", KMS_CT_DURATION, "5m", 1, 86400, NULL,
	 "how often the trust list and internal CA are re-read from the vault"},
	{"milter", "seen_refresh", KMS_CT_DURATION, "1h", 0, 7 * 86400, NULL,
	 "a signature already recorded is not written again for this long (0: always write)"},
	{"milter", "system_trust", KMS_CT_BOOL, "yes", 0, 0, NULL,
	 "also trust the system's CA certificates (OpenSSL default paths) for harvested chains"},
	{"milter", "max_depth", KMS_CT_INT, "20", 1, 100, NULL,
	 "MIME nesting depth examined for signatures"},

	{"kms", "dsn", KMS_CT_DSN, NULL, 0, 0, NULL,
	 "connection string for kmsd (role kms_service); default [vault] dsn"},
	{"kms", "startup_password_file", KMS_CT_PATH, NULL, 0, 0, NULL,
	 "file holding the startup password (one line); absent: kmsd prompts on its terminal"},
	{"kms", "user", KMS_CT_STRING, NULL, 0, 0, NULL,
	 "account kmsd switches to when started as root"},
	{"kms", "pid_file", KMS_CT_PATH, NULL, 0, 0, NULL,
	 "file kmsd writes its process id to"},
	{"kms", "heartbeat", KMS_CT_DURATION, "10s", 1, 3600, NULL,
	 "how often kmsd records that it is alive (kmsctl status counts live workers)"},
	{"kms", "request_ttl", KMS_CT_DURATION, "24h", 60, 365 * 86400, NULL,
	 "how long a queued request waits for kmsd before it expires"},
	{"kms", "kdf_memory", KMS_CT_SIZE, "64m", 64 << 20, G_GINT64_CONSTANT(4) << 30, NULL,
	 "Argon2id memory cost used when the startup password is set (kmsctl init, passwd)"},
	{"kms", "kdf_passes", KMS_CT_INT, "3", 3, 100, NULL,
	 "Argon2id passes used when the startup password is set"},

	{"mail", "submit", KMS_CT_URL, "smtp://127.0.0.1:25", 0, 0, NULL,
	 "SMTP URL kmsd submits its mails to"},
	{"mail", "from", KMS_CT_ADDRESS, NULL, 0, 0, NULL,
	 "sender address of the mails kmsd sends"},

	{"ca", "key_type", KMS_CT_ENUM, "rsa3072", 0, 0, "rsa2048|rsa3072|rsa4096|p256",
	 "key type of the internal CA created by kmsctl init"},
	{"ca", "subject", KMS_CT_DN, "CN=kmsmilter internal CA", 0, 0, NULL,
	 "distinguished name of the internal CA, e.g. \"CN=Example KMS CA, O=Example\""},
	{"ca", "ca_days", KMS_CT_INT, "3650", 30, 36500, NULL,
	 "validity of the self-signed root created by kmsctl init, in days"},
	{"ca", "cert_days", KMS_CT_INT, "365", 1, 3650, NULL,
	 "validity of issued user certificates, in days"},
	{"ca", "crl_dir", KMS_CT_PATH, NULL, 0, 0, NULL,
	 "directory where kmsd publishes the CRL: DER named after crl_url's last segment (else kms.crl), and .pem"},
	{"ca", "crl_url", KMS_CT_URL, NULL, 0, 0, NULL,
	 "CRL distribution point written into issued certificates"},
	{"ca", "crl_days", KMS_CT_INT, "7", 1, 365, NULL,
	 "nextUpdate of published CRLs, in days"},

	{"enrollment", "token_ttl", KMS_CT_DURATION, "7d", 3600, 90 * 86400, NULL,
	 "how long an enrollment or recovery token stays valid"},
	{"enrollment", "template_dir", KMS_CT_PATH, NULL, 0, 0, NULL,
	 "directory with mail templates overriding the built-in ones (see kmsmilter.conf(5))"},
	{"enrollment", "require_auth", KMS_CT_BOOL, "no", 0, 0, NULL,
	 "replies must come over SMTP AUTH as the enrolled address (or a login auth_map maps to it)"},
	{"enrollment", "auth_map", KMS_CT_PATH, NULL, 0, 0, NULL,
	 "file of 'login address' lines mapping SMTP AUTH logins to enrolled addresses"},
	{"enrollment", "max_attempts", KMS_CT_INT, "50", 1, 10000, NULL,
	 "wrong replies from an address before its pending token is locked"},
	{"enrollment", "max_reply_size", KMS_CT_SIZE, "1m", 4096, 64 << 20, NULL,
	 "largest enrollment reply examined; bigger replies are refused"},
	{"enrollment", "key_type", KMS_CT_ENUM, "rsa3072", 0, 0, "rsa2048|rsa3072|rsa4096|p256",
	 "type of the encryption key generated and escrowed for each enrollment"},
	{"enrollment", "signing_key", KMS_CT_ENUM, "none", 0, 0, "none|ephemeral",
	 "without a CSR in the reply: no signing certificate, or a signing key made for the PKCS#12 only"},
	{"enrollment", "p12_profile", KMS_CT_ENUM, "modern", 0, 0, "modern|legacy",
	 "encryption of the PKCS#12 mailed to users"},
	{"enrollment", "p12_password", KMS_CT_ENUM, "token", 0, 0, "token|pin",
	 "the PKCS#12 password: the token, or a PIN printed to the administrator by kmsctl enroll"},

	{"policy", "encrypt", KMS_CT_ENUM, "never", 0, 0, "never|if-possible|required",
	 "encrypt outgoing mail: never (unless a trigger asks), if every recipient has a certificate, or always"},
	{"policy", "header", KMS_CT_STRING, "X-KMS-Encrypt", 0, 0, NULL,
	 "a message with this header set to yes asks to be encrypted (none: no trigger header)"},
	{"policy", "subject_tag", KMS_CT_STRING, "[secure]", 0, 0, NULL,
	 "a message whose subject contains this tag asks to be encrypted (none: no trigger tag)"},
	{"policy", "algorithms", KMS_CT_LIST, "aes256-cbc,aes128-cbc,aes256-gcm,aes128-gcm", 0, 0, ALGS,
	 "allowed content-encryption algorithms, in order of preference"},
	{"policy", "unknown_capabilities", KMS_CT_LIST, "aes256-cbc", 0, 0, ALGS "|none",
	 "algorithms assumed for a recipient who never announced capabilities (none: such recipients block)"},
	{"policy", "key_transport", KMS_CT_ENUM, "rsa-oaep-if-announced", 0, 0,
	 "rsa-pkcs1|rsa-oaep-if-announced",
	 "RSA key transport: always PKCS#1 v1.5, or RSAES-OAEP for recipients who announced it"},
	{"policy", "allow_untrusted", KMS_CT_BOOL, "no", 0, 0, NULL,
	 "also encrypt to harvested certificates whose chain is not trusted"},
	{"policy", "mixed", KMS_CT_ENUM, "plain", 0, 0, "split|plain|reject",
	 "if-possible with some recipients lacking a certificate: split, send all in clear, or reject"},

	{"admin", "name", KMS_CT_STRING, NULL, 0, 0, NULL,
	 "administrator kmsctl acts as when neither --admin nor KMS_ADMIN names one"},
	{"admin", "password_file", KMS_CT_PATH, NULL, 0, 0, NULL,
	 "file holding that administrator's passphrase (one line)"},
	{"admin", "approval_ttl", KMS_CT_DURATION, "24h", 1, 30 * 86400, NULL,
	 "how long a request waits for its approvals before it expires"},

	{"log", "facility", KMS_CT_ENUM, "mail", 0, 0,
	 "mail|daemon|user|local0|local1|local2|local3|local4|local5|local6|local7",
	 "syslog facility"},
	{"log", "level", KMS_CT_ENUM, "info", 0, 0, "debug|info|warning|error",
	 "lowest level logged"},

	{NULL, NULL, 0, NULL, 0, 0, NULL, NULL},
};

struct kms_config {
	char *path;
	GHashTable *values;	/* "section/key" -> value (owned) */
	GHashTable *lists;	/* "section/key" -> char ** (owned) */
};

const KmsConfigKey *
kms_config_schema(void)
{
	return kms_schema;
}

const char *
kms_config_default_path(void)
{
	return SYSCONFDIR "/kmsmilter/kmsmilter.conf";
}

static const KmsConfigKey *
schema_find(const char *section, const char *key)
{
	for (const KmsConfigKey *k = kms_schema; k->section; k++)
		if (strcmp(k->section, section) == 0 && strcmp(k->key, key) == 0)
			return k;
	return NULL;
}

static gboolean
schema_has_section(const char *section)
{
	for (const KmsConfigKey *k = kms_schema; k->section; k++)
		if (strcmp(k->section, section) == 0)
			return TRUE;
	return FALSE;
}

gboolean
kms_parse_bool(const char *s, gboolean *out)
{
	static const char *yes[] = {"yes", "true", "on", "1", NULL};
	static const char *no[] = {"no", "false", "off", "0", NULL};

	for (int i = 0; yes[i]; i++)
		if (g_ascii_strcasecmp(s, yes[i]) == 0)
			return (*out = TRUE), TRUE;
	for (int i = 0; no[i]; i++)
		if (g_ascii_strcasecmp(s, no[i]) == 0)
			return (*out = FALSE), TRUE;
	return FALSE;
}

/* Parse "123" followed by an optional unit from UNITS (char, multiplier). */
static gboolean
parse_scaled(const char *s, const char *units, const gint64 *mult, gint64 *out)
{
	char *end;
	gint64 v;

	if (!g_ascii_isdigit(*s))
		return FALSE;
	errno = 0;
	v = g_ascii_strtoll(s, &end, 10);
	if (errno != 0)
		return FALSE;
	if (*end != '\0') {
		const char *u = strchr(units, g_ascii_tolower(*end));

		if (u == NULL || end[1] != '\0')
			return FALSE;
		if (v > G_MAXINT64 / mult[u - units])
			return FALSE;
		v *= mult[u - units];
	}
	*out = v;
	return TRUE;
}

gboolean
kms_parse_duration(const char *s, gint64 *seconds)
{
	static const gint64 mult[] = {1, 60, 3600, 86400, 604800};

	return parse_scaled(s, "smhdw", mult, seconds);
}

gboolean
kms_parse_size(const char *s, gint64 *bytes)
{
	static const gint64 mult[] = {1, 1024, 1024 * 1024, 1024 * 1024 * 1024};

	return parse_scaled(s, "bkmg", mult, bytes);
}

static gboolean
in_choices(const char *choices, const char *v)
{
	g_auto(GStrv) c = g_strsplit(choices, "|", -1);

	return g_strv_contains((const char *const *)c, v);
}

static gboolean
valid_address(const char *v)
{
	const char *at = strrchr(v, '@');

	if (at == NULL || at == v || at[1] == '\0' || strchr(at + 1, '.') == NULL)
		return FALSE;
	for (const char *p = v; *p; p++)
		if (g_ascii_isspace(*p) || *p == '<' || *p == '>' || *p == ',' || (unsigned char)*p < 0x20)
			return FALSE;
	return TRUE;
}

static gboolean
valid_socket(const char *v, char **why)
{
	const char *rest;

	if (g_str_has_prefix(v, "unix:") || g_str_has_prefix(v, "local:")) {
		rest = strchr(v, ':') + 1;
		if (*rest == '\0')
			return (*why = g_strdup("unix: needs a path")), FALSE;
		return TRUE;
	}
	if (g_str_has_prefix(v, "inet:") || g_str_has_prefix(v, "inet6:")) {
		char *end;
		long port;

		rest = strchr(v, ':') + 1;
		port = strtol(rest, &end, 10);
		if (end == rest || port < 1 || port > 65535)
			return (*why = g_strdup("needs a port 1-65535, as in inet:8891@127.0.0.1")), FALSE;
		if (*end != '\0' && (*end != '@' || end[1] == '\0'))
			return (*why = g_strdup("expected inet:PORT@ADDRESS")), FALSE;
		return TRUE;
	}
	*why = g_strdup("expected inet:PORT@ADDRESS, inet6:PORT@ADDRESS or unix:PATH"
	    " (Postfix's inet:ADDRESS:PORT form is for main.cf)");
	return FALSE;
}

/* Check one value against its schema entry; on error *why says what is wrong. */
static gboolean
check_value(const KmsConfigKey *k, const char *v, char **why)
{
	gint64 n;
	gboolean b;

	if (*v == '\0' && k->type != KMS_CT_STRING) {
		*why = g_strdup("empty value");
		return FALSE;
	}
	switch (k->type) {
	case KMS_CT_STRING:
	case KMS_CT_PATH:
		if (*v == '\0')
			return (*why = g_strdup("empty value")), FALSE;
		return TRUE;
	case KMS_CT_BOOL:
		if (!kms_parse_bool(v, &b))
			return (*why = g_strdup("expected yes or no")), FALSE;
		return TRUE;
	case KMS_CT_INT:
	case KMS_CT_DURATION:
	case KMS_CT_SIZE: {
		gboolean ok;
		char *end;

		if (k->type == KMS_CT_INT) {
			errno = 0;
			n = g_ascii_strtoll(v, &end, 10);
			ok = errno == 0 && *end == '\0' && end != v;
		} else if (k->type == KMS_CT_DURATION)
			ok = kms_parse_duration(v, &n);
		else
			ok = kms_parse_size(v, &n);
		if (!ok) {
			*why = g_strdup(k->type == KMS_CT_INT ? "expected a whole number" :
			    k->type == KMS_CT_DURATION ? "expected a duration such as 30s, 15m, 24h or 7d" :
			    "expected a size such as 512k, 50m or 1g");
			return FALSE;
		}
		if (n < k->min || n > k->max) {
			*why = g_strdup_printf("out of range (%" G_GINT64_FORMAT " to %" G_GINT64_FORMAT
			    "%s)", k->min, k->max, k->type == KMS_CT_INT ? "" :
			    k->type == KMS_CT_DURATION ? " seconds" : " bytes");
			return FALSE;
		}
		return TRUE;
	}
	case KMS_CT_ENUM:
		if (!in_choices(k->choices, v)) {
			*why = g_strdup_printf("expected one of %s", k->choices);
			return FALSE;
		}
		return TRUE;
	case KMS_CT_LIST: {
		g_auto(GStrv) items = g_strsplit(v, ",", -1);
		int count = 0;

		for (int i = 0; items[i]; i++) {
			char *it = g_strstrip(items[i]);

			if (*it == '\0')
				return (*why = g_strdup("empty list item")), FALSE;
			if (k->choices && !in_choices(k->choices, it)) {
				*why = g_strdup_printf("unknown item '%s' (expected %s)", it, k->choices);
				return FALSE;
			}
			for (int j = 0; j < i; j++)
				if (strcmp(items[j], it) == 0) {
					*why = g_strdup_printf("'%s' listed twice", it);
					return FALSE;
				}
			count++;
		}
		if (count == 0)
			return (*why = g_strdup("empty list")), FALSE;
		return TRUE;
	}
	case KMS_CT_DSN: {
		char *msg = NULL;
		PQconninfoOption *opts = PQconninfoParse(v, &msg);

		if (opts == NULL) {
			*why = g_strdup_printf("malformed connection string: %s",
			    msg ? g_strstrip(msg) : "out of memory");
			PQfreemem(msg);
			return FALSE;
		}
		PQconninfoFree(opts);
		return TRUE;
	}
	case KMS_CT_ADDRESS:
		if (!valid_address(v))
			return (*why = g_strdup("expected a mail address local@domain.tld")), FALSE;
		return TRUE;
	case KMS_CT_SOCKET:
		return valid_socket(v, why);
	case KMS_CT_URL: {
		const char *sep = strstr(v, "://");

		if (sep == NULL || sep == v || sep[3] == '\0')
			return (*why = g_strdup("expected a URL scheme://host/...")), FALSE;
		for (const char *p = v; p < sep; p++)
			if (!g_ascii_isalnum(*p) && *p != '+' && *p != '-' && *p != '.')
				return (*why = g_strdup("bad URL scheme")), FALSE;
		return TRUE;
	}
	case KMS_CT_DN:
		if (strchr(v, '=') == NULL)
			return (*why = g_strdup("expected a name such as CN=Example CA, O=Example")), FALSE;
		return TRUE;
	}
	return FALSE;
}

gboolean
kms_config_check(const char *section, const char *key, const char *value, char **why)
{
	const KmsConfigKey *k = schema_find(section, key);

	if (k == NULL) {
		*why = g_strdup_printf("unknown key [%s] %s", section, key);
		return FALSE;
	}
	return check_value(k, value, why);
}

static char *
table_key(const char *section, const char *key)
{
	return g_strconcat(section, "/", key, NULL);
}

static void
set_error(GError **err, int code, const char *path, int line, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	msg = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	if (line > 0)
		g_set_error(err, KMS_CONFIG_ERROR, code, "%s:%d: %s", path, line, msg);
	else
		g_set_error(err, KMS_CONFIG_ERROR, code, "%s: %s", path, msg);
	g_free(msg);
}

/*
 * First pass over the raw text: every line must be blank, a # comment, a
 * [section] header or key = value. Records the line of each section/key so
 * later diagnostics can point at it, and refuses repeated keys (GKeyFile
 * would silently keep the last one).
 */
static gboolean
scan_lines(const char *path, const char *text, GHashTable *lines, GError **err)
{
	g_auto(GStrv) v = g_strsplit(text, "\n", -1);
	char *section = NULL;
	gboolean ok = TRUE;

	for (int i = 0; v[i] && ok; i++) {
		char *l = g_strstrip(v[i]);
		int lineno = i + 1;

		if (*l == '\0' || *l == '#')
			continue;
		if (*l == '[') {
			char *close = strchr(l, ']');

			if (close == NULL || close[1] != '\0' || close == l + 1) {
				set_error(err, KMS_CONFIG_ERROR_SYNTAX, path, lineno,
				    "malformed section header (expected [name])");
				ok = FALSE;
				break;
			}
			g_free(section);
			section = g_strndup(l + 1, close - l - 1);
			if (g_hash_table_contains(lines, section)) {
				set_error(err, KMS_CONFIG_ERROR_SYNTAX, path, lineno,
				    "section [%s] appears twice (first at line %d)", section,
				    GPOINTER_TO_INT(g_hash_table_lookup(lines, section)));
				ok = FALSE;
				break;
			}
			g_hash_table_insert(lines, g_strdup(section), GINT_TO_POINTER(lineno));
			continue;
		}
		char *eq = strchr(l, '=');

		if (eq == NULL || eq == l) {
			set_error(err, KMS_CONFIG_ERROR_SYNTAX, path, lineno,
			    "expected key = value, [section] or # comment");
			ok = FALSE;
			break;
		}
		if (section == NULL) {
			set_error(err, KMS_CONFIG_ERROR_SYNTAX, path, lineno,
			    "key outside any [section]");
			ok = FALSE;
			break;
		}
		*eq = '\0';
		char *tk = table_key(section, g_strstrip(l));

		if (g_hash_table_contains(lines, tk)) {
			set_error(err, KMS_CONFIG_ERROR_SYNTAX, path, lineno,
			    "[%s] %s set twice (first at line %d)", section, g_strstrip(l),
			    GPOINTER_TO_INT(g_hash_table_lookup(lines, tk)));
			g_free(tk);
			ok = FALSE;
			break;
		}
		g_hash_table_insert(lines, tk, GINT_TO_POINTER(lineno));
	}
	g_free(section);
	return ok;
}

static char **
split_list(const char *v)
{
	char **items = g_strsplit(v, ",", -1);

	for (int i = 0; items[i]; i++)
		g_strstrip(items[i]);
	return items;
}

KmsConfig *
kms_config_load(const char *path, GError **err)
{
	g_autofree char *text = NULL;
	g_autoptr(GKeyFile) kf = g_key_file_new();
	g_autoptr(GHashTable) lines = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	g_autoptr(GError) e = NULL;
	g_auto(GStrv) groups = NULL;
	gsize len;
	KmsConfig *cfg;

	{
		/* open first so the message carries the system's own reason */
		FILE *f = fopen(path, "r");

		if (f == NULL) {
			g_set_error(err, KMS_CONFIG_ERROR, KMS_CONFIG_ERROR_IO,
			    "%s: cannot read configuration: %s", path, g_strerror(errno));
			return NULL;
		}
		fclose(f);
	}
	if (!g_file_get_contents(path, &text, &len, &e)) {
		g_set_error(err, KMS_CONFIG_ERROR, KMS_CONFIG_ERROR_IO,
		    "%s: cannot read configuration: %s", path, e->message);
		return NULL;
	}
	if (memchr(text, '\0', len) != NULL || !g_utf8_validate(text, len, NULL)) {
		set_error(err, KMS_CONFIG_ERROR_SYNTAX, path, 0, "not a UTF-8 text file");
		return NULL;
	}
	if (!scan_lines(path, text, lines, err))
		return NULL;
	if (!g_key_file_load_from_data(kf, text, len, G_KEY_FILE_NONE, &e)) {
		set_error(err, KMS_CONFIG_ERROR_SYNTAX, path, 0, "%s", e->message);
		return NULL;
	}

	cfg = g_new0(KmsConfig, 1);
	cfg->path = g_strdup(path);
	cfg->values = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
	cfg->lists = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)g_strfreev);

	groups = g_key_file_get_groups(kf, NULL);
	for (int g = 0; groups[g]; g++) {
		g_auto(GStrv) keys = NULL;
		int sline = GPOINTER_TO_INT(g_hash_table_lookup(lines, groups[g]));

		if (!schema_has_section(groups[g])) {
			set_error(err, KMS_CONFIG_ERROR_UNKNOWN, path, sline,
			    "unknown section [%s]", groups[g]);
			return kms_config_free(cfg);
		}
		keys = g_key_file_get_keys(kf, groups[g], NULL, NULL);
		for (int k = 0; keys && keys[k]; k++) {
			g_autofree char *tk = table_key(groups[g], keys[k]);
			int line = GPOINTER_TO_INT(g_hash_table_lookup(lines, tk));
			const KmsConfigKey *sk = schema_find(groups[g], keys[k]);
			g_autofree char *why = NULL;
			char *val;

			if (sk == NULL) {
				set_error(err, KMS_CONFIG_ERROR_UNKNOWN, path, line,
				    "unknown key '%s' in [%s]", keys[k], groups[g]);
				return kms_config_free(cfg);
			}
			val = g_key_file_get_string(kf, groups[g], keys[k], &e);
			if (val == NULL) {
				set_error(err, KMS_CONFIG_ERROR_VALUE, path, line, "[%s] %s: %s",
				    groups[g], keys[k], e->message);
				return kms_config_free(cfg);
			}
			g_strstrip(val);
			if (!check_value(sk, val, &why)) {
				set_error(err, KMS_CONFIG_ERROR_VALUE, path, line,
				    "[%s] %s = %s: %s", groups[g], keys[k], val, why);
				g_free(val);
				return kms_config_free(cfg);
			}
			g_hash_table_insert(cfg->values, g_steal_pointer(&tk), val);
		}
	}

	if (!g_hash_table_contains(cfg->values, "vault/dsn")) {
		set_error(err, KMS_CONFIG_ERROR_MISSING, path, 0,
		    "[vault] dsn is required (e.g. dsn = host=/run/postgresql dbname=kms)");
		return kms_config_free(cfg);
	}
	/* Split lists once here so readers in any thread only look them up. */
	for (const KmsConfigKey *k = kms_schema; k->section; k++)
		if (k->type == KMS_CT_LIST) {
			const char *v = kms_config_get(cfg, k->section, k->key);

			g_hash_table_insert(cfg->lists, table_key(k->section, k->key),
			    v ? split_list(v) : g_new0(char *, 1));
		}
	return cfg;
}

KmsConfig *
kms_config_free(KmsConfig *cfg)
{
	if (cfg == NULL)
		return NULL;
	g_free(cfg->path);
	g_hash_table_destroy(cfg->values);
	g_hash_table_destroy(cfg->lists);
	g_free(cfg);
	return NULL;
}

const char *
kms_config_path(const KmsConfig *cfg)
{
	return cfg->path;
}

static const KmsConfigKey *
must_find(const char *section, const char *key)
{
	const KmsConfigKey *k = schema_find(section, key);

	if (k == NULL)
		g_error("config key [%s] %s is not in the schema", section, key);
	return k;
}

const char *
kms_config_get(const KmsConfig *cfg, const char *section, const char *key)
{
	const KmsConfigKey *k = must_find(section, key);
	g_autofree char *tk = table_key(section, key);
	const char *v = g_hash_table_lookup(cfg->values, tk);

	return v ? v : k->def;
}

gboolean
kms_config_is_set(const KmsConfig *cfg, const char *section, const char *key)
{
	g_autofree char *tk = table_key(section, key);

	must_find(section, key);
	return g_hash_table_contains(cfg->values, tk);
}

gboolean
kms_config_get_bool(const KmsConfig *cfg, const char *section, const char *key)
{
	const char *v = kms_config_get(cfg, section, key);
	gboolean b = FALSE;

	return v && kms_parse_bool(v, &b) && b;
}

gint64
kms_config_get_int(const KmsConfig *cfg, const char *section, const char *key)
{
	const KmsConfigKey *k = must_find(section, key);
	const char *v = kms_config_get(cfg, section, key);
	gint64 n = 0;

	if (v == NULL)
		return 0;
	if (k->type == KMS_CT_DURATION)
		kms_parse_duration(v, &n);
	else if (k->type == KMS_CT_SIZE)
		kms_parse_size(v, &n);
	else
		n = g_ascii_strtoll(v, NULL, 10);
	return n;
}

char *const *
kms_config_get_list(const KmsConfig *cfg, const char *section, const char *key)
{
	g_autofree char *tk = table_key(section, key);
	char **l = g_hash_table_lookup(cfg->lists, tk);

	if (l == NULL)
		g_error("config key [%s] %s is not a list", section, key);
	return l;
}

const char *
kms_config_dsn(const KmsConfig *cfg, const char *section)
{
	const char *v = kms_config_get(cfg, section, "dsn");

	return v ? v : kms_config_get(cfg, "vault", "dsn");
}

void
kms_config_dump(const KmsConfig *cfg, FILE *out)
{
	const char *cur = NULL;

	fprintf(out, "# %s\n", cfg->path);
	for (const KmsConfigKey *k = kms_schema; k->section; k++) {
		const char *v = kms_config_get(cfg, k->section, k->key);

		if (cur == NULL || strcmp(cur, k->section) != 0) {
			fprintf(out, "%s[%s]\n", cur ? "\n" : "", k->section);
			cur = k->section;
		}
		if (v)
			fprintf(out, "%s = %s%s\n", k->key, v,
			    kms_config_is_set(cfg, k->section, k->key) ? "" : "    # default");
		else
			fprintf(out, "# %s (unset)\n", k->key);
	}
}
