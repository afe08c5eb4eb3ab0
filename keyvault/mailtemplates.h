/*
 * NAME
 *	mailtemplates - the built-in texts of the mails kmsd sends
 * DESCRIPTION
 *	Each template is a Subject: line, an empty line and the body, with
 *	${variables} (common/template.h). A file of the same name in
 *	[enrollment] template_dir replaces the built-in text.
 *	  enroll, enroll-oob     token mail of kmsctl enroll (token in it, or
 *	                         handed over in person)
 *	  recover, recover-oob   token mail of kmsctl recover
 *	  issued                 the PKCS#12 after an enrollment
 *	  recovered              the PKCS#12 of a recovery
 *	  expired                a request waited past [kms] request_ttl
 */
#ifndef KMS_MAILTEMPLATES_H
#define KMS_MAILTEMPLATES_H

/* The built-in text of template NAME, NULL when there is none. */
const char *kms_mail_template_builtin(const char *name);

#endif
