/*
 * NAME
 *	mailtemplates - built-in mail texts (see mailtemplates.h)
 */
#include "autoconfig.h"
#include "mailtemplates.h"

#include <string.h>

#include <glib.h>

static const char tpl_enroll[] =
    "Subject: Your S/MIME certificate for ${address}\n"
    "\n"
    "Hello,\n"
    "\n"
    "the key management service of your organisation is ready to issue an\n"
    "S/MIME encryption certificate for ${address}.\n"
    "\n"
    "To enroll, reply to this message - the reply goes to ${enroll_address} -\n"
    "and keep the following line in your reply:\n"
    "\n"
    "Token: ${token}\n"
    "\n"
    "The token works once and until ${expiry}. You will then receive your key\n"
    "and certificates as a PKCS#12 file; its password is this token.\n"
    "\n"
    "If you did not expect this message, ignore it: nothing happens without\n"
    "your reply.\n";

static const char tpl_enroll_oob[] =
    "Subject: Your S/MIME certificate for ${address}\n"
    "\n"
    "Hello,\n"
    "\n"
    "the key management service of your organisation is ready to issue an\n"
    "S/MIME encryption certificate for ${address}.\n"
    "\n"
    "Your administrator gives you a token in person. To enroll, reply to this\n"
    "message - the reply goes to ${enroll_address} - and write the token in\n"
    "your reply on a line of its own:\n"
    "\n"
    "Token: XXXXX-XXXXX-XXXXX-XXXXX-XXXXX\n"
    "\n"
    "The token works once and until ${expiry}.\n";

static const char tpl_expired[] =
    "Subject: Your key management request expired\n"
    "\n"
    "Hello,\n"
    "\n"
    "a request of the key management service for ${address} (${kind})\n"
    "waited longer than allowed and expired without being carried out.\n"
    "Nothing was issued or sent. Ask your administrator to start it again.\n";

static const struct {
	const char *name;
	const char *text;
} templates[] = {
	{"enroll", tpl_enroll},
	{"enroll-oob", tpl_enroll_oob},
	{"expired", tpl_expired},
};

const char *
kms_mail_template_builtin(const char *name)
{
	for (gsize i = 0; i < G_N_ELEMENTS(templates); i++)
		if (strcmp(templates[i].name, name) == 0)
			return templates[i].text;
	return NULL;
}
