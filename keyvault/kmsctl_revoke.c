/*
 * NAME
 *	kmsctl revoke, kmsctl crl - revocation and the CRL
 */
#include "autoconfig.h"
#include "kmsctl.h"

int
kmsctl_cmd_revoke(KmsCtl *ctl, int argc, char **argv)
{
	(void)ctl; (void)argc; (void)argv;
	return kmsctl_fail("revoke is not implemented yet");
}

int
kmsctl_cmd_crl(KmsCtl *ctl, int argc, char **argv)
{
	(void)ctl; (void)argc; (void)argv;
	return kmsctl_fail("crl is not implemented yet");
}
