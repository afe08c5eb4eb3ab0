/*
 * NAME
 *	csr - PKCS#10 certificate requests from enrollment replies
 * DESCRIPTION
 *	Placeholder: being written.
 */
#ifndef KMS_CSR_H
#define KMS_CSR_H

#include <glib.h>

#endif
