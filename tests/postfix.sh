# A private Postfix instance for end-to-end tests, sourced after tests/lib.sh.
# Its own configuration, queue and data directories under $T, SMTP on a free
# 127.0.0.1 port, no chroot; nothing of /etc/postfix or port 25 is touched.
# Mail for the addresses given to postfix_setup is delivered by the virtual
# agent to maildirs $T/mail/LOCALPART/new.
#
#   postfix_setup SMTPPORT MILTERPORT ADDR...   write main.cf and master.cf
#   postfix_start                                start it (bails on failure)
#   postfix_stop                                 stop it (also at exit)
#   maildir_count LOCAL                          messages delivered to LOCAL

[ "$(id -u)" = 0 ] || skip_all "needs root: the Postfix master process runs as root"
POSTFIX=$(command -v postfix || echo /usr/sbin/postfix)
[ -x "$POSTFIX" ] || bail "postfix not installed (Debian: postfix)"
command -v swaks >/dev/null || bail "swaks not installed (Debian: swaks)"
id -u postfix >/dev/null 2>&1 || bail "no postfix account (install the Debian postfix package)"
getent group postdrop >/dev/null || bail "no postdrop group (install the Debian postfix package)"
PF=$T/postfix

# port_open PORT: something accepts TCP connections on 127.0.0.1:PORT.
port_open() { python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$1"; }
maildir_count() { find "$T/mail/$1/new" -type f 2>/dev/null | wc -l; }

postfix_setup() {
	local smtp=$1 milter=$2 maps= a
	shift 2
	for a in "$@"; do maps="$maps${maps:+, }$a=${a%%@*}/"; done
	mkdir -p "$PF" "$T/pfspool" "$T/pfdata" "$T/mail"
	chown postfix "$T/pfdata" "$T/mail"
	: >"$T/postfix.log"
	cat >"$PF/main.cf" <<PFEOF
compatibility_level = 3.6
queue_directory = $T/pfspool
data_directory = $T/pfdata
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.example.net
mydomain = example.net
myorigin = \$myhostname
mydestination =
relay_domains =
relayhost =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtputf8_enable = no
smtpd_peername_lookup = no
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
alias_maps =
alias_database =
biff = no
maillog_file = $T/postfix.log
maillog_file_prefixes = $T
virtual_mailbox_domains = example.org
virtual_mailbox_base = $T/mail
virtual_mailbox_maps = inline:{ $maps }
virtual_uid_maps = static:$(id -u postfix)
virtual_gid_maps = static:$(id -g postfix)
smtpd_milters = inet:127.0.0.1:$milter
milter_default_action = tempfail
milter_protocol = 6
milter_end_of_data_macros = i
PFEOF
	# No chroot anywhere: the queue directory is a temporary directory
	# without the copies of /etc files a chroot needs.
	cat >"$PF/master.cf" <<PFEOF
127.0.0.1:$smtp inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
PFEOF
	PF_SMTPPORT=$smtp
}

pf_running=
postfix_start() {
	"$POSTFIX" -c "$PF" start >"$T/postfix-start.out" 2>&1 || {
		cat "$T/postfix-start.out" "$T/postfix.log"; bail "postfix start failed"; }
	pf_running=1
	wait_for 30 port_open "$PF_SMTPPORT" ||
		{ cat "$T/postfix.log"; bail "postfix does not listen on 127.0.0.1:$PF_SMTPPORT"; }
}
postfix_stop() {
	local pid n=0
	[ -n "$pf_running" ] || return 0
	pf_running=
	read -r pid <"$T/pfspool/pid/master.pid" 2>/dev/null
	"$POSTFIX" -c "$PF" stop >/dev/null 2>&1
	# postfix stop only signals the master: wait (bounded) for it to go
	while [ -n "${pid:-}" ] && kill -0 "$pid" 2>/dev/null && [ $n -lt 100 ]; do
		sleep 0.1; n=$((n + 1))
	done
	[ -n "${pid:-}" ] && kill -0 "$pid" 2>/dev/null && "$POSTFIX" -c "$PF" abort >/dev/null 2>&1
	return 0
}
extra_cleanup=postfix_stop
