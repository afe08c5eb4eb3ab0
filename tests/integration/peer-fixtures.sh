#!/bin/sh
# The signed test messages made by the real peers (openssl cms, the OpenSSL
# library signer, NSS cmsutil, gpgsm) are what their .expect files claim,
# checked with the openssl CLI alone - before the harvester is judged by
# them in harvest-peers.sh.
. "$top_srcdir/tests/lib.sh"
SMIME_SIGNER="$top_builddir/tests/smime-signer" sh "$top_srcdir/tests/peers/make-signed.sh" "$T/msgs" >"$T/make.log" 2>&1 ||
	{ cat "$T/make.log"; bail "tests/peers/make-signed.sh failed"; }
sh "$top_srcdir/tests/peers/check-expect.sh" "$T/msgs"
exit $?
