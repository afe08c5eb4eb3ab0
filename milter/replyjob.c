/*
 * NAME
 *	replyjob - enrollment replies in the milter
 */
#include "autoconfig.h"
#include "milter.h"
