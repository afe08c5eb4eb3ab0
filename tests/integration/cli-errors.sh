#!/bin/sh
# Bad input gives one line naming the problem and exit 1 (2 for usage):
# missing config, unknown key, bad value, malformed DSN, unreachable
# PostgreSQL - for kmsctl, kmsd and kmsmilter alike.
. "$top_srcdir/tests/lib.sh"

for prog in "$KMSCTL status" "$KMSD -f" "$KMSMILTER -f"; do
	name=$(basename "${prog%% *}")
	expect_exit 1 "$name: missing configuration file exits 1" $prog -c "$T/nope.conf"
	like "$T/err" "$T/nope.conf: cannot read configuration: No such file or directory" "$name: names the missing file"
	one_line "$T/err" "$name: missing file is one line"

	printf '[vault]\ndsn = dbname=kms\n\n[milter]\nsokcet = inet:8891@127.0.0.1\n' >"$T/unknown.conf"
	expect_exit 1 "$name: unknown key exits 1" $prog -c "$T/unknown.conf"
	like "$T/err" "unknown.conf:5: unknown key 'sokcet' in \[milter\]" "$name: unknown key names file:line"
	one_line "$T/err" "$name: unknown key is one line"

	printf '[vault]\ndsn = host='"'"'/tmp\n' >"$T/baddsn.conf"
	expect_exit 1 "$name: malformed DSN exits 1" $prog -c "$T/baddsn.conf"
	like "$T/err" "baddsn.conf:2: \[vault\] dsn = .*malformed connection string" "$name: malformed DSN names file:line"
	one_line "$T/err" "$name: malformed DSN is one line"

	printf '[vault]\ndsn = dbname=kms\n[kms]\nheartbeat = often\n' >"$T/badval.conf"
	expect_exit 1 "$name: bad value exits 1" $prog -c "$T/badval.conf"
	like "$T/err" "badval.conf:4: \[kms\] heartbeat = often: expected a duration" "$name: bad value names file:line"
done

# unreachable PostgreSQL: a socket directory with no server
mkdir "$T/nopg"
printf '[vault]\ndsn = host=%s dbname=kms\n' "$T/nopg" >"$T/nopg.conf"
expect_exit 1 "kmsctl status with PostgreSQL down exits 1" "$KMSCTL" -c "$T/nopg.conf" status
like "$T/err" "^kmsctl: cannot connect to the vault database: .*$T/nopg" "status names the unreachable server"
one_line "$T/err" "unreachable server is one line"
expect_exit 1 "kmsctl init with PostgreSQL down exits 1" "$KMSCTL" -c "$T/nopg.conf" init --password-file /dev/null
like "$T/err" "cannot connect to the vault database" "init names the unreachable server"
write_password "$T/pw" 'x'
printf '[vault]\ndsn = host=%s dbname=kms\n[kms]\nstartup_password_file = %s\n' "$T/nopg" "$T/pw" >"$T/nopg-kmsd.conf"
expect_exit 1 "kmsd with PostgreSQL down exits 1" "$KMSD" -c "$T/nopg-kmsd.conf" -f
like "$T/err" "cannot connect to the vault database" "kmsd names the unreachable server"

# a database that holds no vault
pg_start
write_config "$T/empty.conf"
expect_exit 1 "status on a database without a vault exits 1" "$KMSCTL" -c "$T/empty.conf" status
like "$T/err" "holds no vault: run kmsctl init first" "and says to run kmsctl init"
printf '' >"$T/emptypw"
expect_exit 1 "init refuses an empty password file" "$KMSCTL" -c "$T/empty.conf" init --password-file "$T/emptypw"
like "$T/err" "is empty" "and says the file is empty"
is "$(psql_kms "SELECT to_regclass('vault_seal') IS NULL")" "t" "nothing was created by the refused init"
expect_exit 1 "init without a password file and no terminal is refused" "$KMSCTL" -c "$T/empty.conf" init </dev/null
like "$T/err" "not a terminal" "and says why"

# usage errors exit 2
expect_exit 2 "unknown command exits 2" "$KMSCTL" -c "$T/empty.conf" frobnicate
like "$T/err" "unknown command 'frobnicate'" "names the unknown command"
expect_exit 2 "unknown option exits 2" "$KMSCTL" -c "$T/empty.conf" status --frob
expect_exit 2 "no command exits 2" "$KMSCTL"
expect_exit 2 "kmsd with an unknown option exits 2" "$KMSD" --frob
expect_exit 0 "kmsctl --help exits 0" "$KMSCTL" --help
like "$T/out" "passwd" "help lists the commands"

# check mode prints the effective configuration
expect_exit 0 "kmsd -n checks and prints the configuration" "$KMSD" -c "$T/empty.conf" -n
like "$T/out" "^heartbeat = 1s$" "a value set in the file is shown"
like "$T/out" "^request_ttl = 24h +# default" "a default is marked as such"
done_testing
