/*
 * NAME
 *	reply - consume a token from an enrollment or recovery reply
 * DESCRIPTION
 *	Placeholder: the milter-side token check is being written.
 */
#ifndef KMS_REPLY_H
#define KMS_REPLY_H

#include <glib.h>

#endif
