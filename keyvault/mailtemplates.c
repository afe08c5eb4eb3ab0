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
    "and certificates as a PKCS#12 file. Its password is this token, unless\n"
    "your administrator gave you a PIN for it.\n"
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

static const char tpl_recover[] =
    "Subject: Recovery of your S/MIME keys for ${address}\n"
    "\n"
    "Hello,\n"
    "\n"
    "your administrator started the recovery of the S/MIME encryption keys\n"
    "the key management service keeps for ${address}.\n"
    "\n"
    "To receive them, reply to this message - the reply goes to\n"
    "${enroll_address} - and keep the following line in your reply:\n"
    "\n"
    "Token: ${token}\n"
    "\n"
    "The token works once and until ${expiry}. You will then receive every\n"
    "encryption key you had, with its certificate, in one PKCS#12 file. Its\n"
    "password is this token, unless your administrator gave you a PIN for it.\n"
    "\n"
    "If you did not ask for a recovery, tell your administrator and do not\n"
    "reply: nothing is sent without your reply.\n";

static const char tpl_recover_oob[] =
    "Subject: Recovery of your S/MIME keys for ${address}\n"
    "\n"
    "Hello,\n"
    "\n"
    "your administrator started the recovery of the S/MIME encryption keys\n"
    "the key management service keeps for ${address}.\n"
    "\n"
    "Your administrator gives you a token in person. To receive your keys,\n"
    "reply to this message - the reply goes to ${enroll_address} - and write\n"
    "the token in your reply on a line of its own:\n"
    "\n"
    "Token: XXXXX-XXXXX-XXXXX-XXXXX-XXXXX\n"
    "\n"
    "The token works once and until ${expiry}.\n";

static const char tpl_issued[] =
    "Subject: Your S/MIME key and certificates for ${address}\n"
    "\n"
    "Hello,\n"
    "\n"
    "attached is ${attachment}, a PKCS#12 file with your S/MIME keys and\n"
    "certificates for ${address}. It holds:\n"
    "\n"
    "  - your encryption key and certificate, valid until ${expiry}; the key\n"
    "    management service keeps a copy of this key so that it can be\n"
    "    recovered if you lose it;\n"
    "  - ${signing};\n"
    "  - the certificates of the issuing certification authority.\n"
    "\n"
    "The file is protected with a password: ${password_hint}.\n"
    "\n"
    "To import it:\n"
    "  - Thunderbird: Settings, Privacy & Security, Certificates, Manage\n"
    "    Certificates, Your Certificates, Import; choose the file and type\n"
    "    the password.\n"
    "  - Outlook and other Windows programs: save the file, open it, and\n"
    "    follow the Certificate Import Wizard.\n"
    "  - Apple Mail: save the file and open it; Keychain Access imports it.\n"
    "  - GnuPG: gpgsm --import ${attachment}\n"
    "\n"
    "Then delete this mail and the saved file: the password in the wrong\n"
    "hands opens it.\n";

static const char tpl_recovered[] =
    "Subject: Your recovered S/MIME keys for ${address}${part}\n"
    "\n"
    "Hello,\n"
    "\n"
    "attached is ${attachment}${part}, a PKCS#12 file\n"
    "with ${count} encryption key(s) the key management service kept for\n"
    "${address}, each with its certificate, newest first, so that you can\n"
    "read your encrypted mail again. A long key history comes in several\n"
    "files of this kind.\n"
    "\n"
    "The file is protected with a password: ${password_hint}.\n"
    "\n"
    "Import it as you imported your certificates before (Thunderbird:\n"
    "Settings, Privacy & Security, Certificates, Manage Certificates, Your\n"
    "Certificates, Import; Windows and Apple Mail: open the saved file;\n"
    "GnuPG: gpgsm --import ${attachment}). Note that gpgsm 2.2 imports\n"
    "only the first, newest key of such a file.\n"
    "\n"
    "Then delete this mail and the saved file.\n";

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
	{"recover", tpl_recover},
	{"recover-oob", tpl_recover_oob},
	{"issued", tpl_issued},
	{"recovered", tpl_recovered},
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
