/*
 * NAME
 *	address - mail addresses as kmsmilter stores and compares them
 * DESCRIPTION
 *	An address is local@domain with the domain in lower case; the local
 *	part keeps its case (RFC 5321) but comparisons in the vault are
 *	case-insensitive, as users type addresses in any case.
 * SECURITY
 *	Input comes from certificates and envelopes in hostile mail: only
 *	printable ASCII without spaces, angle brackets, commas, quotes or
 *	brackets passes (SMTPUTF8 addresses are not supported yet).
 */
#ifndef KMS_ADDRESS_H
#define KMS_ADDRESS_H

#include <glib.h>

/* Normalised copy of the LEN bytes at S (surrounding <> and spaces
 * removed), or NULL when it is not a usable address. g_free. */
char *kms_address_normalize(const char *s, gssize len);

#endif
