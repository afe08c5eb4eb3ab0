/*
 * NAME
 *	csr - PKCS#10 requests (see csr.h)
 */
#include "autoconfig.h"
#include "csr.h"
