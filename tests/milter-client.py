#!/usr/bin/env python3
# milter-client.py - a milter protocol (v6) client for the tests, playing
# the MTA's part without an MTA.
#
#   milter-client.py SOCKET [-n COUNT] [--from ADDR] [--rcpt ADDR]...
#                    [--close-after-eom SECONDS | --close-after-body] [--times]
#                    [--expect-body] MESSAGE
#
# SOCKET is unix:PATH or inet:PORT@HOST. Sends MESSAGE (a file: header
# lines, a blank line, the body; CRLF or LF) COUNT times over one
# connection, each with the envelope given (default <sender@outside.test>
# to <r1@example.org>), following the protocol flags the milter
# negotiated: stages it asked not to get are left out, and commands that
# get no reply are buffered and go out with the next one that does, in
# one write, as an MTA does. TCP_NODELAY is left unset on purpose.
#
# Prints one line per message: its number, the reply to end of message
# and the modifications before it, e.g. "1 a/b+h-" (a accept, b a body
# chunk, + add header, - delete recipient, m change header ...); a reply
# with its own text (y) is followed by it: "1 y/-b 451 4.3.0 ...". With
# --times, the last line is instead the median time per message in ms
# over all but the first 5 messages (the first ones may be ACKed at once
# while the connection is new).
#
# --expect-body: every message must come back with its body replaced
# (encrypted), else exit 1.
# --close-after-eom SECONDS: send end of message, read nothing for SECONDS
# and close the connection: the MTA went away while the milter worked
# (libmilter drops a session whose peer closed before it read end of
# message, so the wait; with a reply larger than the socket's buffer the
# milter is then blocked writing it, and its write fails).
# --close-after-body: read the replies to end of message up to the first
# body chunk and close: the MTA went away before the verdict.
# Exit 0 when every message got a reply, 1 otherwise.
import socket
import struct
import sys
import time

args = sys.argv[1:]
spec = args.pop(0)
count, sender, rcpts, close_eom, times, path = 1, "<sender@outside.test>", [], None, False, None
expect_body = close_body = False
while args:
    a = args.pop(0)
    if a == "-n": count = int(args.pop(0))
    elif a == "--from": sender = args.pop(0)
    elif a == "--rcpt": rcpts.append(args.pop(0))
    elif a == "--close-after-eom": close_eom = float(args.pop(0))
    elif a == "--times": times = True
    elif a == "--expect-body": expect_body = True
    elif a == "--close-after-body": close_body = True
    else: path = a
if path is None:
    sys.exit("usage: milter-client.py SOCKET [-n COUNT] [--from A] [--rcpt A]... [--close-after-eom SECONDS | --close-after-body] [--times] [--expect-body] MESSAGE")
rcpts = rcpts or ["<r1@example.org>"]
raw = open(path, "rb").read().replace(b"\r\n", b"\n")
head, _, body = raw.partition(b"\n\n")
body = body.replace(b"\n", b"\r\n")
headers = []
for line in head.split(b"\n"):
    if line[:1] in (b" ", b"\t") and headers:
        headers[-1][1] += b"\r\n" + line
    elif b":" in line:
        n, v = line.split(b":", 1)
        headers.append([n, v.lstrip(b" ")])

if spec.startswith("unix:"):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.connect(spec[5:])
else:
    port, host = spec[5:].split("@"); s = socket.create_connection((host, int(port)))
buf = b""
out = b""

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
        if c == b"y": c += b" " + d.rstrip(b"\0")
        return c if not mods else c[:1] + b"/" + mods + c[1:]

assert stage(b"C", b"localhost\0" + b"4" + struct.pack(">H", 12345) + b"127.0.0.1\0", 0x1, 0x1000) == b"c"
assert stage(b"H", b"client.example\0", 0x2, 0x2000) == b"c"
lat = []
ok = True
sp = b" " if prot & 0x100000 else b""
for i in range(count):
    t0 = time.monotonic()
    send(b"D", b"Mi\0%X\0" % (0x1000 + i), flush=False)
    r = stage(b"M", sender.encode() + b"\0", 0x4, 0x4000)
    for a in rcpts:
        if r == b"c": r = stage(b"R", a.encode() + b"\0", 0x8, 0x8000)
    if r == b"c": r = stage(b"T", b"", 0x200, 0x10000)
    for name, value in headers:
        if r == b"c": r = stage(b"L", name + b"\0" + sp + value + b"\0", 0x20, 0x80)
    if r == b"c": r = stage(b"N", b"", 0x40, 0x40000)
    for k in range(0, len(body), 65535):
        if r == b"c": r = stage(b"B", body[k:k + 65535], 0x10, 0x80000)
    if r == b"c" and close_eom is not None:
        send(b"E")
        time.sleep(close_eom)
        s.close()
        print("%d closed after end of message" % (i + 1))
        sys.exit(0)
    if r == b"c" and close_body:
        send(b"E")
        mods = b""
        while not mods.endswith(b"b"):
            c, d = recv()
            mods += c
        s.close()
        print("%d closed after %s" % (i + 1, mods.decode("ascii", "replace")))
        sys.exit(0)
    if r == b"c": r = stage(b"E", b"", 0, 0)
    lat.append((time.monotonic() - t0) * 1000)
    if not times:
        print("%d %s" % (i + 1, r.decode("ascii", "replace")))
    ok = ok and r[:1] in (b"a", b"c", b"r", b"t", b"d", b"y")
    if expect_body and b"b" not in r[1:]:
        print("message %d: reply %r, not an encrypted body and a verdict" % (i + 1, r), file=sys.stderr)
        ok = False
send(b"Q")
if times:
    rest = sorted(lat[5:] or lat)
    print("%.1f" % rest[len(rest) // 2])
sys.exit(0 if ok else 1)
