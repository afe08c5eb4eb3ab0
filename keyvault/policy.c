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

/* A policy for ADDRESS (its domain taken from it), else for DOMAIN,
 * else the global one, with no value yet. NULL with
 * KMS_POLICY_ERROR_SCOPE. */
static KmsPolicy *
new_policy(const char *domain, const char *address, GError **err)
{
	g_autoptr(KmsPolicy) p = g_new0(KmsPolicy, 1);

	if (address) {
		if ((p->address = kms_policy_scope_name(address, FALSE, err)) == NULL)
			return NULL;
		p->domain = g_strdup(strrchr(p->address, '@') + 1);
	} else if (domain && (p->domain = kms_policy_scope_name(domain, TRUE, err)) == NULL)
		return NULL;
	return g_steal_pointer(&p);
}

/* The [policy] section checked, into BASE (canonical texts, g_free). */
static gboolean
config_base(const KmsConfig *cfg, char **base, GError **err)
{
	for (int i = 0; i < KMS_POLICY_N_KEYS; i++) {
		g_autoptr(GError) e = NULL;
		const char *v = kms_config_get(cfg, "policy", key_names[i]);

		if (v == NULL || !kms_policy_check(key_names[i], v, &base[i], &e)) {
			g_set_error(err, KMS_POLICY_ERROR, KMS_POLICY_ERROR_VALUE, "%s: [policy] %s",
			    kms_config_path(cfg), e ? e->message : "no value");
			return FALSE;
		}
	}
	return TRUE;
}

/*
 * The rows of the domains $1 and the users $2 (text[]), for every address
 * of a message at once: a prepared statement (db.h), run on every
 * message. Domain rows first, so a user's win; then by key and name, so
 * that the first invalid row, the one reported, does not depend on the
 * plan. Each array is behind a sub-SELECT: the planner then estimates its
 * length the same with and without the values, and the server keeps one
 * generic plan for the statement; with the arrays' lengths known, every
 * custom plan looks cheaper and the statement would be planned again on
 * every execution (that costs more than running it).
 */
static const char rows_query[] =
    "SELECT scope, name, key, value FROM policy"
    " WHERE (scope = 'domain' AND name = ANY((SELECT $1::text[])::text[]))"
    "  OR (scope = 'user' AND name = ANY((SELECT $2::text[])::text[]))"
    " ORDER BY scope = 'user', key, name";

/* Add P to the list of the policies named NAME in T. */
static void
index_policy(GHashTable *t, const char *name, KmsPolicy *p)
{
	GPtrArray *a = g_hash_table_lookup(t, name);

	if (a == NULL) {
		a = g_ptr_array_new();
		g_hash_table_insert(t, (gpointer)name, a);
	}
	g_ptr_array_add(a, p);
}

/*
 * The vault rows of every domain and user of the N policies P, in one
 * statement (rows_query), each applied to every policy it concerns; names
 * are distinct in the arrays (a message's recipients share domains).
 */
static gboolean
vault_rows(PGconn *c, KmsPolicy **p, gsize n, GError **err)
{
	g_autoptr(GHashTable) domains = g_hash_table_new_full(g_str_hash, g_str_equal, NULL,
	    (GDestroyNotify)g_ptr_array_unref);
	g_autoptr(GHashTable) users = g_hash_table_new_full(g_str_hash, g_str_equal, NULL,
	    (GDestroyNotify)g_ptr_array_unref);
	g_autofree gpointer *dn = NULL, *un = NULL;
	guint ndn, nun;
	KmsDbParams q = KMS_DB_PARAMS_INIT;
	g_autoptr(PGresult) r = NULL;

	for (gsize i = 0; i < n; i++) {
		if (p[i]->domain)
			index_policy(domains, p[i]->domain, p[i]);
		if (p[i]->address)
			index_policy(users, p[i]->address, p[i]);
	}
	if (g_hash_table_size(domains) == 0)
		return TRUE;
	dn = g_hash_table_get_keys_as_array(domains, &ndn);
	un = g_hash_table_get_keys_as_array(users, &nun);
	kms_db_param_array(&q, (const char *const *)dn, ndn);
	kms_db_param_array(&q, (const char *const *)un, nun);
	r = kms_db_run_prepared(c, "kms_policy_rows_any", rows_query, &q, err);
	if (r == NULL)
		return FALSE;
	for (int row = 0; row < PQntuples(r); row++) {
		const char *scope = PQgetvalue(r, row, 0), *name = PQgetvalue(r, row, 1);
		const char *key = PQgetvalue(r, row, 2);
		gboolean user = strcmp(scope, "user") == 0;
		g_autofree char *canon = NULL;
		g_autoptr(GError) e = NULL;
		int idx = key_index(key);
		GPtrArray *a;

		if (idx < 0)	/* a key from a later version: not ours to judge */
			continue;
		if (!kms_policy_check(key, PQgetvalue(r, row, 3), &canon, &e)) {
			g_set_error(err, KMS_POLICY_ERROR, KMS_POLICY_ERROR_VALUE,
			    "vault policy of %s %s: %s", scope, name, e->message);
			return FALSE;
		}
		if ((a = g_hash_table_lookup(user ? users : domains, name)) == NULL)
			continue;
		for (guint i = 0; i < a->len; i++)
			apply(g_ptr_array_index(a, i), idx, canon, user ? KMS_POLICY_FROM_USER :
			    KMS_POLICY_FROM_DOMAIN);
	}
	return TRUE;
}

/* Complete the N policies P (scopes set): the configuration, read once,
 * then the vault's rows (none without C), then the typed values. */
static gboolean
resolve(PGconn *c, const KmsConfig *cfg, KmsPolicy **p, gsize n, GError **err)
{
	char *base[KMS_POLICY_N_KEYS] = { NULL };
	gboolean ok;

	ok = config_base(cfg, base, err);
	for (gsize i = 0; ok && i < n; i++)
		for (int k = 0; k < KMS_POLICY_N_KEYS; k++)
			apply(p[i], k, base[k], KMS_POLICY_FROM_CONFIG);
	for (int k = 0; k < KMS_POLICY_N_KEYS; k++)
		g_free(base[k]);
	if (!ok || (c && !vault_rows(c, p, n, err)))
		return FALSE;
	for (gsize i = 0; i < n; i++)
		type_values(p[i]);
	return TRUE;
}

KmsPolicy *
kms_policy_resolve(PGconn *c, const KmsConfig *cfg, const char *domain, const char *address,
    GError **err)
{
	g_autoptr(KmsPolicy) p = new_policy(domain, address, err);

	if (p == NULL || !resolve(c, cfg, &p, 1, err))
		return NULL;
	return g_steal_pointer(&p);
}

static void
free_policy(gpointer p)
{
	kms_policy_free(p);
}

GPtrArray *
kms_policy_resolve_many(PGconn *c, const KmsConfig *cfg, const char *const *addresses, gsize n,
    GError **err)
{
	g_autoptr(GPtrArray) a = g_ptr_array_new_full(n, free_policy);

	for (gsize i = 0; i < n; i++) {
		KmsPolicy *p = new_policy(NULL, addresses[i], err);

		if (p == NULL)
			return NULL;
		g_ptr_array_add(a, p);
	}
	if (!resolve(c, cfg, (KmsPolicy **)a->pdata, n, err))
		return NULL;
	return g_steal_pointer(&a);
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
