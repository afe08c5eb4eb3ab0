/*
 * NAME
 *	template - ${name} substitution, template files, header split
 *	(see template.h)
 * SECURITY
 *	Template files are the administrator's; values may come from mail
 *	(addresses) and are never interpreted, only copied.
 */
#include "autoconfig.h"
#include "template.h"

#include <string.h>

G_DEFINE_QUARK(kms-template-error-quark, kms_template_error)

/* Longest variable name quoted back in an error message. */
#define NAME_SHOWN 64

/* Characters allowed in a variable name. */
static gboolean
name_char(char c)
{
	return g_ascii_isalnum(c) || c == '_';
}

/* The value of the LEN-byte NAME in VARS, or NULL. */
static const char *
lookup(const char *const *vars, const char *name, gsize len)
{
	gsize i;

	for (i = 0; vars != NULL && vars[i] != NULL; i += 2)
		if (strlen(vars[i]) == len && memcmp(vars[i], name, len) == 0)
			return vars[i + 1];
	return NULL;
}

/* TRUE when every name in VARS has a value. */
static gboolean
vars_complete(const char *const *vars)
{
	gsize i;

	for (i = 0; vars != NULL && vars[i] != NULL; i += 2)
		if (vars[i + 1] == NULL)
			return FALSE;
	return TRUE;
}

char *
kms_template_render(const char *text, const char *const *vars, GError **err)
{
	g_autoptr(GString) out = NULL;
	const char *p, *q, *value;
	int line = 1;

	g_return_val_if_fail(text != NULL, NULL);
	g_return_val_if_fail(vars_complete(vars), NULL);
	out = g_string_sized_new(strlen(text) + 256);
	for (p = text; *p != '\0';) {
		if (*p != '$') {
			if (*p == '\n')
				line++;
			g_string_append_c(out, *p++);
			continue;
		}
		if (p[1] == '$') {
			g_string_append_c(out, '$');
			p += 2;
			continue;
		}
		if (p[1] != '{') {
			g_string_append_c(out, *p++);
			continue;
		}
		for (q = p + 2; name_char(*q); q++)
			;
		if (*q == '\0' || *q == '\n') {
			g_set_error(err, KMS_TEMPLATE_ERROR, KMS_TEMPLATE_ERROR_SYNTAX,
			    "line %d: unterminated ${", line);
			return NULL;
		}
		if (*q != '}' || q == p + 2) {
			g_set_error(err, KMS_TEMPLATE_ERROR, KMS_TEMPLATE_ERROR_SYNTAX,
			    "line %d: bad variable name after ${ (letters, digits, _)", line);
			return NULL;
		}
		value = lookup(vars, p + 2, (gsize)(q - p - 2));
		if (value == NULL) {
			g_set_error(err, KMS_TEMPLATE_ERROR, KMS_TEMPLATE_ERROR_UNKNOWN,
			    "line %d: unknown variable ${%.*s}", line,
			    (int)MIN(q - p - 2, NAME_SHOWN), p + 2);
			return NULL;
		}
		g_string_append(out, value);
		p = q + 1;
	}
	return g_string_free(g_steal_pointer(&out), FALSE);
}

char *
kms_template_load(const char *dir, const char *name, const char *builtin_default,
    GError **err)
{
	g_autofree char *path = NULL;
	g_autofree char *text = NULL;
	g_autoptr(GError) e = NULL;
	gsize len;

	g_return_val_if_fail(name != NULL && strchr(name, '/') == NULL, NULL);
	if (dir == NULL) {
		if (builtin_default == NULL) {
			g_set_error(err, KMS_TEMPLATE_ERROR, KMS_TEMPLATE_ERROR_IO,
			    "no template %s", name);
			return NULL;
		}
		return g_strdup(builtin_default);
	}
	path = g_build_filename(dir, name, NULL);
	if (!g_file_get_contents(path, &text, &len, &e)) {
		if (g_error_matches(e, G_FILE_ERROR, G_FILE_ERROR_NOENT) && builtin_default != NULL)
			return g_strdup(builtin_default);
		g_set_error(err, KMS_TEMPLATE_ERROR, KMS_TEMPLATE_ERROR_IO,
		    "cannot read template: %s", e->message);
		return NULL;
	}
	if (len > KMS_TEMPLATE_MAX) {
		g_set_error(err, KMS_TEMPLATE_ERROR, KMS_TEMPLATE_ERROR_IO,
		    "%s: template larger than %d bytes", path, KMS_TEMPLATE_MAX);
		return NULL;
	}
	if (memchr(text, '\0', len) != NULL || !g_utf8_validate(text, (gssize)len, NULL)) {
		g_set_error(err, KMS_TEMPLATE_ERROR, KMS_TEMPLATE_ERROR_IO,
		    "%s: template is not UTF-8 text", path);
		return NULL;
	}
	return g_steal_pointer(&text);
}

/* Report a header problem on LINE; returns FALSE. */
static gboolean
split_error(GError **err, int line, const char *what)
{
	g_set_error(err, KMS_TEMPLATE_ERROR, KMS_TEMPLATE_ERROR_SYNTAX, "line %d: %s", line, what);
	return FALSE;
}

gboolean
kms_template_split(const char *rendered, char **subject, char **body, GError **err)
{
	g_autoptr(GString) subj = NULL;
	const char *p = rendered, *eol, *colon;
	gboolean last_was_subject = FALSE;
	int line = 0;
	gsize n;

	g_return_val_if_fail(rendered != NULL && subject != NULL && body != NULL, FALSE);
	*subject = *body = NULL;
	for (;;) {
		line++;
		eol = strchr(p, '\n');
		if (eol == NULL)
			return split_error(err, line, "no blank line between the headers and the body");
		n = (gsize)(eol - p);
		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (n == 0)
			break;
		if (p[0] == ' ' || p[0] == '\t') {
			g_autofree char *more = g_strstrip(g_strndup(p, n));

			if (!last_was_subject)
				return split_error(err, line, "continuation line without a header");
			if (*more != '\0')
				g_string_append_printf(subj, " %s", more);
		} else {
			colon = memchr(p, ':', n);
			if (colon == NULL)
				return split_error(err, line, "expected a header such as \"Subject: ...\"");
			if (colon - p != 7 || g_ascii_strncasecmp(p, "Subject", 7) != 0) {
				g_autofree char *name = g_strndup(p, (gsize)MIN(colon - p, NAME_SHOWN));
				g_autofree char *what = g_strdup_printf(
				    "unknown header \"%s\" (only Subject is allowed)", name);

				return split_error(err, line, what);
			}
			if (subj != NULL)
				return split_error(err, line, "second Subject header");
			subj = g_string_new_len(colon + 1, (gssize)(p + n - colon - 1));
			last_was_subject = TRUE;
		}
		p = eol + 1;
	}
	if (subj == NULL)
		return split_error(err, line, "no Subject header before the blank line");
	*subject = g_strstrip(g_string_free(g_steal_pointer(&subj), FALSE));
	*body = g_strdup(eol + 1);
	return TRUE;
}
