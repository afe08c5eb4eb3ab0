#!/bin/sh
# kmsmilter on TCP sets TCP_NODELAY on its listening socket (logged at
# start, not on a unix socket), so that an end of message answered with
# changes (replaced body, headers) and then the verdict does not wait for
# the MTA's delayed ACK (~40 ms a message without it). Measured from the
# outside with a milter protocol client in python over one connection:
# messages encrypted through TCP take about as long as through a unix
# socket to the same vault.
. "$top_srcdir/tests/lib.sh"
for t in openssl python3; do
	command -v "$t" >/dev/null || bail "$t not installed"
done

pg_start
write_password "$T/pw" 'nodelay test password'
write_config "$T/admin.conf" "$(printf '[log]\nlevel = info')"
"$KMSCTL" -c "$T/admin.conf" init --password-file "$T/pw" >/dev/null || bail "init failed"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/r.key" 2>/dev/null &&
	openssl pkey -in "$T/r.key" -pubout -out "$T/r.pub" 2>/dev/null || bail "cannot make the test key"
"$VAULTTOOL" -c "$T/admin.conf" -p "$T/pw" issue-record encryption r1@example.org "$T/r.pub" >"$T/r.pem" ||
	bail "issue-record failed"
check "policy: example.org requires encryption" "$KMSCTL" -c "$T/admin.conf" policy set --domain example.org encrypt=required

TCP=inet:$(free_port)@127.0.0.1
for so in tcp unix; do
	case $so in tcp) s=$TCP ;; *) s=unix:$T/milter.sock ;; esac
	{
		printf '[vault]\ndsn = %s\n' "$DSN"
		printf '[milter]\nsocket = %s\ndsn = host=%s dbname=kms user=kms_milter\n' "$s" "$PGSOCK"
		printf '[log]\nlevel = info\n'
	} >"$T/$so.conf"
	start_milter "$T/$so.conf" "$T/$so.log"
	grep -q "listening on" "$T/$so.log" || bail "kmsmilter does not start on $so: $(cat "$T/$so.log")"
	eval "PID_$so=\$MPID"
done
like "$T/tcp.log" "TCP_NODELAY set on the listening socket" "TCP: TCP_NODELAY set on the listening socket (logged)"
unlike "$T/tcp.log" "cannot set TCP_NODELAY" "  ... no warning"
unlike "$T/unix.log" "TCP_NODELAY" "unix socket: nothing about TCP_NODELAY"

# client SOCKET N: send N messages to r1@example.org over one connection,
# each must come back encrypted (body replaced, then the verdict); prints
# the median time per message in ms over the last N-5 (the first ones may
# be ACKed at once while the connection is new)
cat >"$T/client.py" <<'EOF'
import socket, struct, sys, time
spec, n = sys.argv[1], int(sys.argv[2])
if spec.startswith("unix:"):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.connect(spec[5:])
else:
    port, host = spec[5:].split("@"); s = socket.create_connection((host, int(port)))
buf = b""
out = b""
# commands that get no reply are buffered and go out with the next one
# that does, in one write, as an MTA does (a client-side Nagle stall is
# not what this test is about; the client leaves TCP_NODELAY unset)
def send(cmd, data=b"", flush=True):
    global out
    out += struct.pack(">I", len(data) + 1) + cmd + data
    if flush:
        s.sendall(out); out = b""
def recv():
    global buf
    while len(buf) < 4 or len(buf) < 4 + struct.unpack(">I", buf[:4])[0]:
        d = s.recv(65536)
        if not d: sys.exit("connection closed")
        buf += d
    l = struct.unpack(">I", buf[:4])[0]; p = buf[4:4 + l]; buf = buf[4 + l:]
    return p[:1], p[1:]
send(b"O", struct.pack(">III", 6, 0x1ff, 0x1fffff))
c, d = recv()
assert c == b"O", c
ver, act, prot = struct.unpack(">III", d[:12])
# stage: (command, "not sent" bit, "no reply" bit)
def stage(cmd, data, no, nr):
    if prot & no: return b"c"
    send(cmd, data, flush=not prot & nr)
    if prot & nr: return b"c"
    mods = b""
    while True:
        c, d = recv()
        if c in b"+-2behimq": mods += c; continue
        if c == b"p": continue
        return c if not mods else c + b"/" + mods
assert stage(b"C", b"localhost\0" + b"4" + struct.pack(">H", 12345) + b"127.0.0.1\0", 0x1, 0x1000) == b"c"
assert stage(b"H", b"client.example\0", 0x2, 0x2000) == b"c"
body = b"".join(b"line %d of the message, some text to encrypt\r\n" % i for i in range(40))
lat = []
for i in range(n):
    t0 = time.monotonic()
    send(b"D", b"Mi\0%X\0" % (0x1000 + i), flush=False)
    r = stage(b"M", b"<sender@outside.test>\0", 0x4, 0x4000)
    if r == b"c": r = stage(b"R", b"<r1@example.org>\0", 0x8, 0x8000)
    if r == b"c": r = stage(b"T", b"", 0x200, 0x10000)
    sp = b" " if prot & 0x100000 else b""
    for name, value in ((b"From", b"<sender@outside.test>"), (b"To", b"<r1@example.org>"),
                        (b"Subject", b"message %d" % i), (b"Content-Type", b"text/plain")):
        if r == b"c": r = stage(b"L", name + b"\0" + sp + value + b"\0", 0x20, 0x80)
    if r == b"c": r = stage(b"N", b"", 0x40, 0x40000)
    if r == b"c": r = stage(b"B", body, 0x10, 0x80000)
    if r == b"c": r = stage(b"E", b"", 0, 0)
    if not (r[:1] in (b"a", b"c") and b"b" in r[1:]):
        sys.exit("message %d: reply %r, not an encrypted body and a verdict" % (i, r))
    lat.append((time.monotonic() - t0) * 1000)
send(b"Q")
rest = sorted(lat[5:])
print("%.1f" % rest[len(rest) // 2])
EOF
check "30 messages encrypted through TCP" python3 "$T/client.py" "$TCP" 30
tcp_ms=$(cat "$T/out")
check "30 messages encrypted through the unix socket" python3 "$T/client.py" "unix:$T/milter.sock" 30
unix_ms=$(cat "$T/out")
diag "median per message: tcp $tcp_ms ms, unix $unix_ms ms"
check "TCP is not held back by the delayed ACK (median within 20 ms of the unix socket's)" \
	python3 -c 'import sys; t, u = float(sys.argv[1]), float(sys.argv[2]); sys.exit(0 if t < u + 20 else 1)' "$tcp_ms" "$unix_ms"
like "$T/tcp.log" "encryption: aes256-cbc for 1 recipient" "the milter logged the encryption"
for so in tcp unix; do
	eval "pid=\$PID_$so"
	kill -TERM "$pid"; wait "$pid"; rc=$?
	is "$rc" 0 "$so: kmsmilter exits 0 on SIGTERM"
	unlike "$T/$so.log" "AddressSanitizer|runtime error|LeakSanitizer" "$so: no sanitizer report in the milter log"
done
done_testing
