/*
 * NAME
 *	address - normalise mail addresses (see address.h)
 */
#include "autoconfig.h"
#include "address.h"

#include <string.h>

char *
kms_address_normalize(const char *s, gssize len)
{
	g_autofree char *a = NULL;
	char *at, *p;

	if (s == NULL)
		return NULL;
	if (len < 0)
		len = (gssize)strlen(s);
	if (len == 0 || len > 320 || memchr(s, '\0', (gsize)len) != NULL)
		return NULL;
	a = g_strstrip(g_strndup(s, (gsize)len));
	if (a[0] == '<' && a[strlen(a) - 1] == '>') {
		memmove(a, a + 1, strlen(a));
		a[strlen(a) - 1] = '\0';
	}
	at = strrchr(a, '@');
	if (at == NULL || at == a || at[1] == '\0' || !g_utf8_validate(a, -1, NULL))
		return NULL;
	/* ASCII only: certificates carry rfc822Name as IA5String */
	for (p = a; *p; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f || strchr("<>,;\"\\()[]", *p))
			return NULL;
	for (p = at + 1; *p; p++)
		*p = g_ascii_tolower(*p);
	return g_steal_pointer(&a);
}
