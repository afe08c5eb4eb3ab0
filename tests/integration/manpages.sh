#!/bin/sh
# The manual pages render without a groff warning (groff -ww: every
# warning category) and hold no control character but tab and newline:
# a raw form feed where "\f" was meant once broke kmsctl(8)'s admin
# entries. No database.
. "$top_srcdir/tests/lib.sh"
command -v groff >/dev/null || bail "groff not installed (Debian: groff-base)"

for page in "$top_srcdir"/doc/*.[58]; do
	name=$(basename "$page")
	groff -ww -man -Tutf8 -z "$page" >"$T/$name.warn" 2>&1
	is "$(wc -l <"$T/$name.warn")" 0 "$name: groff -ww prints no warning"
	[ -s "$T/$name.warn" ] && diag "$(head -5 "$T/$name.warn")"
	LC_ALL=C grep -n '[[:cntrl:]]' "$page" | LC_ALL=C grep -v -P '^[0-9]+:[^\x00-\x08\x0b-\x1f\x7f]*$' \
	    >"$T/$name.ctl" || true
	is "$(wc -l <"$T/$name.ctl")" 0 "$name: no control character but tab and newline"
	[ -s "$T/$name.ctl" ] && diag "$(head -3 "$T/$name.ctl" | cat -A)"
done
done_testing
