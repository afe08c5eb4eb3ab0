#!/bin/sh
# summary.sh BUILDDIR [LABEL]: count test cases from automake's .trs files
# (one per TAP line) and print "N passed, M failed[, K skipped]".
d=${1:-.}
files=$(find "$d" -name '*.trs' -not -path '*/_build/*' 2>/dev/null)
[ -n "$files" ] || { echo "${2:+$2: }0 passed, 1 failed (no test results found)"; exit 0; }
pass=$(cat $files | grep -c -E '^:test-result: (PASS|XFAIL)')
fail=$(cat $files | grep -c -E '^:test-result: (FAIL|XPASS|ERROR)')
skip=$(cat $files | grep -c -E '^:test-result: SKIP')
line="$pass passed, $fail failed"
[ "$skip" -gt 0 ] && line="$line, $skip skipped"
echo "${2:+$2: }$line"
