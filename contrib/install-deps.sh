#!/bin/sh
# install-deps.sh: install the Debian 12 packages kmsmilter needs to build
# and test, when any is missing. As root it runs apt-get; otherwise through
# sudo when available, else it prints the command to run and fails.
set -u
PACKAGES="build-essential autoconf automake pkg-config
libglib2.0-dev libglib2.0-dev-bin libgmime-3.0-dev libjson-glib-dev
libssl-dev openssl libpq-dev postgresql postgresql-client
libmilter-dev miltertest libargon2-dev libgfshare-dev libcurl4-openssl-dev
python3 ca-certificates clang libclang-rt-14-dev
gpgsm libnss3-tools swaks postfix groff-base"

missing=
for p in $PACKAGES; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

echo "installing:$missing" >&2
if [ "$(id -u)" = 0 ]; then
	SUDO=
elif command -v sudo >/dev/null 2>&1; then
	SUDO=sudo
else
	echo "run as root: apt-get install -y$missing" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# Postfix is only a test peer here: no system configuration, no service.
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
$SUDO apt-get update -qq >/dev/null &&
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null ||
	{ echo "apt-get install failed for:$missing" >&2; exit 1; }
