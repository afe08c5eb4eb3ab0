/*
 * NAME
 *	policy - encryption policy: config defaults, domain and user
 *	overrides in the vault (see policy.h)
 * SECURITY
 *	Every value is checked on the way in (kmsctl policy set) and again
 *	on the way out (a row edited by hand with psql): a bad row is an
 *	error naming it, never a silent fallback to a weaker default.
 */
#include "autoconfig.h"
#include "policy.h"

#include <string.h>

#include "common/address.h"
#include "keyvault/db.h"

G_DEFINE_QUARK(kms-policy-error-quark, kms_policy_error)

static const char *const key_names[KMS_POLICY_N_KEYS] = {
	"encrypt", "header", "subject_tag", "algorithms", "unknown_capabilities",
	"key_transport", "allow_untrusted", "mixed",
};

/* Longest header name and subject tag accepted. */
#define MAX_TRIGGER 200

const char *
kms_policy_key_name(KmsPolicyKey k)
{
	return k < KMS_POLICY_N_KEYS ? key_names[k] : "?";
}

const char *
kms_policy_source_name(KmsPolicySource s)
{
	switch (s) {
	case KMS_POLICY_FROM_DOMAIN:
		return "domain";
	case KMS_POLICY_FROM_USER:
		return "user";
	default:
		return "config";
	}
}

const char *
kms_policy_encrypt_name(KmsEncryptLevel l)
{
	switch (l) {
	case KMS_ENCRYPT_IF_POSSIBLE:
		return "if-possible";
	case KMS_ENCRYPT_REQUIRED:
		return "required";
	default:
		return "never";
	}
}

static int
key_index(const char *key)
{
	for (int i = 0; i < KMS_POLICY_N_KEYS; i++)
		if (strcmp(key, key_names[i]) == 0)
			return i;
	return -1;
}

static const KmsConfigKey *
schema_entry(const char *key)
{
	for (const KmsConfigKey *k = kms_config_schema(); k->section; k++)
		if (strcmp(k->section, "policy") == 0 && strcmp(k->key, key) == 0)
			return k;
	return NULL;
}

/* A header field name (RFC 5322 2.2: printable ASCII but colon). */
static gboolean
valid_field_name(const char *v)
{
	if (*v == '\0' || strlen(v) > MAX_TRIGGER)
		return FALSE;
	for (const char *p = v; *p; p++)
		if ((unsigned char)*p < 33 || (unsigned char)*p > 126 || *p == ':')
			return FALSE;
	return TRUE;
}

/* A subject tag: one line of printable text. */
static gboolean
valid_tag(const char *v)
{
	if (*v == '\0' || strlen(v) > MAX_TRIGGER)
		return FALSE;
	for (const char *p = v; *p; p++)
		if ((unsigned char)*p < 32 || (unsigned char)*p == 127)
			return FALSE;
	return TRUE;
}

gboolean
kms_policy_check(const char *key, const char *value, char **canonical, GError **err)
{
	const KmsConfigKey *k;
	g_autofree char *v = NULL;
	g_autofree char *why = NULL;
	int idx = key_index(key);

	*canonical = NULL;
	if (idx < 0 || (k = schema_entry(key)) == NULL) {
		g_set_error(err, KMS_POLICY_ERROR, KMS_POLICY_ERROR_KEY,
		    "unknown policy key '%s' (known: encrypt, header, subject_tag, algorithms,"
		    " unknown_capabilities, key_transport, allow_untrusted, mixed)", key);
		return FALSE;
	}
	v = g_strstrip(g_strdup(value));
	switch (k->type) {
	case KMS_CT_ENUM: {
		char *low = g_ascii_strdown(v, -1);

		g_free(v);
		v = low;
		break;
	}
	case KMS_CT_BOOL: {
		gboolean b;

		if (!kms_parse_bool(v, &b)) {
			g_set_error(err, KMS_POLICY_ERROR, KMS_POLICY_ERROR_VALUE,
			    "%s: expected yes or no, not '%s'", key, v);
			return FALSE;
		}
		g_free(v);
		v = g_strdup(b ? "yes" : "no");
		break;
	}
	case KMS_CT_LIST: {
		g_autofree char *low = g_ascii_strdown(v, -1);
		g_auto(GStrv) items = g_strsplit(low, ",", -1);

		for (int i = 0; items[i]; i++)
			g_strstrip(items[i]);
		g_free(v);
		v = g_strjoinv(",", items);
		break;
	}
	default:
		if (g_ascii_strcasecmp(v, "none") == 0) {
			g_free(v);
			v = g_strdup("none");
		}
		break;
	}
	if (!kms_config_check("policy", key, v, &why)) {
		g_set_error(err, KMS_POLICY_ERROR, KMS_POLICY_ERROR_VALUE, "%s: %s", key, why);
		return FALSE;
	}
	if (idx == KMS_POLICY_HEADER && strcmp(v, "none") != 0 && !valid_field_name(v)) {
		g_set_error(err, KMS_POLICY_ERROR, KMS_POLICY_ERROR_VALUE,
		    "header: expected a header field name (printable, no space or colon, at most %d"
		    " characters) or none", MAX_TRIGGER);
		return FALSE;
	}
	if (idx == KMS_POLICY_SUBJECT_TAG && strcmp(v, "none") != 0 && !valid_tag(v)) {
		g_set_error(err, KMS_POLICY_ERROR, KMS_POLICY_ERROR_VALUE,
		    "subject_tag: expected printable text on one line (at most %d characters) or none",
		    MAX_TRIGGER);
		return FALSE;
	}
	if (idx == KMS_POLICY_UNKNOWN_CAPABILITIES && strstr(v, "none") != NULL &&
	    strcmp(v, "none") != 0) {
		g_set_error(err, KMS_POLICY_ERROR, KMS_POLICY_ERROR_VALUE,
		    "unknown_capabilities: none stands alone");
		return FALSE;
	}
	*canonical = g_steal_pointer(&v);
	return TRUE;
}

char *
kms_policy_scope_name(const char *name, gboolean domain, GError **err)
{
	g_autofree char *n = NULL;

	if (domain) {
		n = g_ascii_strdown(name, -1);
		g_strstrip(n);
		if (*n == '@')
			memmove(n, n + 1, strlen(n));
		if (*n == '\0' || *n == '.' || *n == '-' || strlen(n) > 253)
			goto bad;
		for (const char *p = n; *p; p++)
			if (!g_ascii_isalnum(*p) && *p != '-' && *p != '.')
				goto bad;
		return g_steal_pointer(&n);
bad:
		g_set_error(err, KMS_POLICY_ERROR, KMS_POLICY_ERROR_SCOPE,
		    "'%s' is not a domain name", name);
		return NULL;
	}
	n = kms_address_normalize(name, -1);
	if (n == NULL) {
		g_set_error(err, KMS_POLICY_ERROR, KMS_POLICY_ERROR_SCOPE,
		    "'%s' is not a mail address", name);
		return NULL;
	}
	return g_ascii_strdown(n, -1);
}

/* Set key IDX of P from canonical text V (already checked). */
static void
apply(KmsPolicy *p, int idx, const char *v, KmsPolicySource src)
{
	g_free(p->value[idx]);
	p->value[idx] = g_strdup(v);
	p->source[idx] = src;
}

/* The typed fields from the canonical texts. */
static void
type_values(KmsPolicy *p)
{
	const char *v;

	v = p->value[KMS_POLICY_ENCRYPT];
	p->encrypt = strcmp(v, "required") == 0 ? KMS_ENCRYPT_REQUIRED :
	    strcmp(v, "if-possible") == 0 ? KMS_ENCRYPT_IF_POSSIBLE : KMS_ENCRYPT_NEVER;
	v = p->value[KMS_POLICY_HEADER];
	p->header = strcmp(v, "none") == 0 ? NULL : g_strdup(v);
	v = p->value[KMS_POLICY_SUBJECT_TAG];
	p->subject_tag = strcmp(v, "none") == 0 ? NULL : g_strdup(v);
	p->algorithms = g_strsplit(p->value[KMS_POLICY_ALGORITHMS], ",", -1);
	v = p->value[KMS_POLICY_UNKNOWN_CAPABILITIES];
	p->unknown_capabilities = strcmp(v, "none") == 0 ? g_new0(char *, 1) : g_strsplit(v, ",", -1);
	if (!kms_negotiate_parse_key_transport(p->value[KMS_POLICY_KEY_TRANSPORT], &p->key_transport))
		p->key_transport = KMS_KEY_TRANSPORT_RSA_PKCS1;	/* unreachable: checked */
	p->allow_untrusted = strcmp(p->value[KMS_POLICY_ALLOW_UNTRUSTED], "yes") == 0;
	v = p->value[KMS_POLICY_MIXED];
	p->mixed = strcmp(v, "split") == 0 ? KMS_MIXED_SPLIT :
	    strcmp(v, "reject") == 0 ? KMS_MIXED_REJECT : KMS_MIXED_PLAIN;
}

KmsPolicy *
kms_policy_resolve(PGconn *c, const KmsConfig *cfg, const char *domain, const char *address,
    GError **err)
{
	g_autoptr(KmsPolicy) p = g_new0(KmsPolicy, 1);
	g_autoptr(PGresult) r = NULL;

	if (address) {
		const char *at;

		if ((p->address = kms_policy_scope_name(address, FALSE, err)) == NULL)
			return NULL;
		at = strrchr(p->address, '@');
		p->domain = g_strdup(at + 1);
	} else if (domain && (p->domain = kms_policy_scope_name(domain, TRUE, err)) == NULL)
		return NULL;

	for (int i = 0; i < KMS_POLICY_N_KEYS; i++) {
		g_autofree char *canon = NULL;
		g_autoptr(GError) e = NULL;
		const char *v = kms_config_get(cfg, "policy", key_names[i]);

		if (v == NULL || !kms_policy_check(key_names[i], v, &canon, &e)) {
			g_set_error(err, KMS_POLICY_ERROR, KMS_POLICY_ERROR_VALUE, "%s: [policy] %s",
			    kms_config_path(cfg), e ? e->message : "no value");
			return NULL;
		}
		apply(p, i, canon, KMS_POLICY_FROM_CONFIG);
	}
	if (p->domain && c) {
		KmsDbParams q = KMS_DB_PARAMS_INIT;

		kms_db_param_text(&q, p->domain);
		kms_db_param_text(&q, p->address);
		/* domain rows first, so the user's win */
		r = kms_db_run_prepared(c, "kms_policy_rows", "SELECT scope, name, key, value FROM policy"
		    " WHERE (scope = 'domain' AND name = $1) OR (scope = 'user' AND name = $2::text)"
		    " ORDER BY scope = 'user', key", &q, err);
		if (r == NULL)
			return NULL;
		for (int row = 0; row < PQntuples(r); row++) {
			const char *scope = PQgetvalue(r, row, 0), *key = PQgetvalue(r, row, 2);
			g_autofree char *canon = NULL;
			g_autoptr(GError) e = NULL;
			int idx = key_index(key);

			if (idx < 0)	/* a key from a later version: not ours to judge */
				continue;
			if (!kms_policy_check(key, PQgetvalue(r, row, 3), &canon, &e)) {
				g_set_error(err, KMS_POLICY_ERROR, KMS_POLICY_ERROR_VALUE,
				    "vault policy of %s %s: %s", scope, PQgetvalue(r, row, 1), e->message);
				return NULL;
			}
			apply(p, idx, canon, strcmp(scope, "user") == 0 ? KMS_POLICY_FROM_USER :
			    KMS_POLICY_FROM_DOMAIN);
		}
	}
	type_values(p);
	return g_steal_pointer(&p);
}

KmsPolicy *
kms_policy_free(KmsPolicy *p)
{
	if (p == NULL)
		return NULL;
	g_free(p->domain);
	g_free(p->address);
	g_free(p->header);
	g_free(p->subject_tag);
	g_strfreev(p->algorithms);
	g_strfreev(p->unknown_capabilities);
	for (int i = 0; i < KMS_POLICY_N_KEYS; i++)
		g_free(p->value[i]);
	g_free(p);
	return NULL;
}

gboolean
kms_policy_set(PGconn *c, const char *scope, const char *name, const char *key,
    const char *value, gboolean *removed, GError **err)
{
	KmsDbParams q = KMS_DB_PARAMS_INIT;
	g_autofree char *n = NULL, *canon = NULL;
	g_autoptr(PGresult) r = NULL;
	gboolean dom;

	if (removed)
		*removed = FALSE;
	if (strcmp(scope, "domain") != 0 && strcmp(scope, "user") != 0) {
		g_set_error(err, KMS_POLICY_ERROR, KMS_POLICY_ERROR_SCOPE,
		    "policy scope '%s': expected domain or user", scope);
		return FALSE;
	}
	dom = strcmp(scope, "domain") == 0;
	if ((n = kms_policy_scope_name(name, dom, err)) == NULL)
		return FALSE;
	if (value == NULL || *value == '\0') {
		if (key_index(key) < 0) {
			g_set_error(err, KMS_POLICY_ERROR, KMS_POLICY_ERROR_KEY,
			    "unknown policy key '%s'", key);
			return FALSE;
		}
		kms_db_param_text(&q, scope);
		kms_db_param_text(&q, n);
		kms_db_param_text(&q, key);
		r = kms_db_run(c, "DELETE FROM policy WHERE scope = $1 AND name = $2 AND key = $3"
		    " RETURNING key", &q, err);
		if (r == NULL)
			return FALSE;
		if (removed)
			*removed = PQntuples(r) > 0;
		return TRUE;
	}
	if (!kms_policy_check(key, value, &canon, err))
		return FALSE;
	kms_db_param_text(&q, scope);
	kms_db_param_text(&q, n);
	kms_db_param_text(&q, key);
	kms_db_param_text(&q, canon);
	return kms_db_exec(c, "INSERT INTO policy (scope, name, key, value) VALUES ($1, $2, $3, $4)"
	    " ON CONFLICT (scope, name, key) DO UPDATE SET value = excluded.value,"
	    " changed_at = now()", &q, err);
}

void
kms_policy_negotiate_policy(const KmsPolicy *p, KmsNegotiatePolicy *out)
{
	out->algorithms = (const char *const *)p->algorithms;
	out->unknown_capabilities = (const char *const *)p->unknown_capabilities;
	out->key_transport = p->key_transport;
}

KmsEncryptLevel
kms_policy_message(const KmsPolicy *sender, KmsPolicy *const *rcpts, gsize n, gboolean triggered)
{
	KmsEncryptLevel l = sender ? sender->encrypt : KMS_ENCRYPT_NEVER;

	for (gsize i = 0; i < n; i++)
		if (rcpts[i] && rcpts[i]->encrypt > l)
			l = rcpts[i]->encrypt;
	if (triggered)
		l = KMS_ENCRYPT_REQUIRED;
	return l;
}
