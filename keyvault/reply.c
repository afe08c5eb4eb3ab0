/*
 * NAME
 *	reply - token consumption (see reply.h)
 */
#include "autoconfig.h"
#include "reply.h"
