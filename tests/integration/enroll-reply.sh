#!/bin/sh
# placeholder: being written
. "$top_srcdir/tests/lib.sh"
skip_all "being written"
