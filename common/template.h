/*
 * NAME
 *	template - mail templates with ${name} variables
 * DESCRIPTION
 *	A template is UTF-8 text: header lines ("Subject: ..."), a blank
 *	line, then the body. ${name} is replaced by the variable's value,
 *	$$ by a single $; any other $ stays as it is. A site may override a
 *	built-in template by a file of the same name in a template directory.
 *	Names are letters, digits and underscores.
 * SECURITY
 *	Values are inserted verbatim: callers must not put values that may
 *	hold line breaks into header lines. kms_template_split() accepts only
 *	a Subject header, so a stray line break in a header cannot add
 *	recipients; the mailer refuses line breaks in subjects anyway.
 * DIAGNOSTICS
 *	GError in KMS_TEMPLATE_ERROR; messages name the line ("line 3:
 *	unknown variable ${adress}"), and the file for kms_template_load().
 *	Callers rendering a loaded template prefix its name.
 */
#ifndef KMS_TEMPLATE_H
#define KMS_TEMPLATE_H

#include <glib.h>

#define KMS_TEMPLATE_ERROR (kms_template_error_quark())
GQuark kms_template_error_quark(void);

typedef enum {
	KMS_TEMPLATE_ERROR_IO,		/* template file unreadable */
	KMS_TEMPLATE_ERROR_SYNTAX,	/* unterminated ${, bad name, bad header */
	KMS_TEMPLATE_ERROR_UNKNOWN,	/* ${name} not among the variables */
} KmsTemplateError;

/* Longest template file accepted. */
#define KMS_TEMPLATE_MAX (256 * 1024)

/* TEXT with every ${name} replaced. VARS is name, value, name, value, ...,
 * NULL (values non-NULL). Returns a new string (g_free) or NULL. */
char *kms_template_render(const char *text, const char *const *vars, GError **err);

/* The text of DIR/NAME when DIR is not NULL and that file exists, else a
 * copy of BUILTIN_DEFAULT. Returns a new string (g_free) or NULL when the
 * file exists but cannot be read, is too large, or is not UTF-8. */
char *kms_template_load(const char *dir, const char *name, const char *builtin_default,
    GError **err);

/* Split RENDERED into its Subject header (folded lines joined, blanks
 * trimmed) and its body (everything after the blank line). Any header but
 * Subject, a missing Subject or a missing blank line is an error. Both
 * outputs are new strings (g_free); on failure they are left NULL. */
gboolean kms_template_split(const char *rendered, char **subject, char **body,
    GError **err);

#endif
