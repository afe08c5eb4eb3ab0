#!/usr/bin/env python3
# smtp-log.py MODE PORT DIR: an SMTP server for the tests that logs, one
# line per event, what happens on its connections ("N connect", "N mail",
# "N data", "N quit", "N close", ...; N counts connections) into DIR/log
# and keeps each accepted message as DIR/msg.N.K. MODE is what it does to
# a client that reuses a connection: keep (serve it), close (close after
# each message), drop-mail (close unanswered at the second MAIL: the
# client's check that the connection lives came too early), drop-data
# (take a second message, close before answering: it may have been
# delivered).
import os, socketserver, sys, threading

mode, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lock = threading.Lock()
conns = 0

def log(n, what):
    with lock, open(os.path.join(out, "log"), "a") as f:
        f.write("%d %s\n" % (n, what))

class Handler(socketserver.StreamRequestHandler):
    def reply(self, text):
        self.wfile.write(text.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self):
        global conns
        with lock:
            conns += 1
            n = conns
        log(n, "connect")
        self.reply("220 localhost ESMTP test")
        msgs = 0
        while True:
            line = self.rfile.readline()
            if not line:
                log(n, "close")
                return
            verb = line.decode("ascii", "replace").strip().split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                self.reply("250 localhost")
            elif verb == "MAIL" and mode == "drop-mail" and msgs >= 1:
                log(n, "dropped")
                return
            elif verb == "MAIL":
                log(n, "mail")
                self.reply("250 ok")
            elif verb in ("RCPT", "RSET", "NOOP"):
                self.reply("250 ok")
            elif verb == "DATA":
                self.reply("354 go on")
                data = []
                while True:
                    l = self.rfile.readline()
                    if not l or l == b".\r\n":
                        break
                    data.append(l[1:] if l.startswith(b".") else l)
                if not l:
                    log(n, "close")
                    return
                msgs += 1
                if mode == "drop-data" and msgs >= 2:
                    log(n, "lost")
                    return
                with open(os.path.join(out, "msg.%d.%d" % (n, msgs)), "wb") as f:
                    f.write(b"".join(data))
                log(n, "data")
                self.reply("250 queued")
                if mode == "close":
                    return
            elif verb == "QUIT":
                log(n, "quit")
                self.reply("221 bye")
                return
            else:
                self.reply("502 not here")

socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer.daemon_threads = True
srv = socketserver.ThreadingTCPServer(("127.0.0.1", port), Handler)
log(0, "listening")
srv.serve_forever()
