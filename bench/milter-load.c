/*
 * NAME
 *	milter-load - drive a milter with many messages, as an MTA would
 * SYNOPSIS
 *	milter-load -s SOCKET [-c CONNECTIONS] [-n MESSAGES | -t SECONDS]
 *	    [-w WARMUP] [-e VERDICT] [-f FROM] [-r RCPT]... [-A early|always|never]
 *	    [-o FILE] [-k] [-v] FILE...
 * DESCRIPTION
 *	Speaks milter protocol version 6 directly over a socket
 *	(inet:PORT@HOST, inet6:PORT@HOST, HOST:PORT, unix:PATH or local:PATH).
 *	Each of CONNECTIONS threads opens its own connection, negotiates
 *	options (SMFIC_OPTNEG), sends SMFIC_CONNECT and SMFIC_HELO once, then
 *	sends messages one after the other on that connection: MAIL, RCPT,
 *	DATA, one SMFIC_HEADER per header, EOH, the body in chunks of at most
 *	65535 bytes and BODYEOB, reading replies until a final one. FILEs
 *	(RFC 5322 messages, LF or CRLF) are sent in turn, cycling.
 *
 *	The driver honours what the milter negotiated: stages it asked not to
 *	see (SMFIP_NO*) are not sent, stages it will not answer (SMFIP_NR_*)
 *	are not waited for, SMFIR_SKIP ends the body, a final reply before
 *	end of message ends that message. Modification replies after
 *	end of message (SMFIR_REPLBODY, SMFIR_CHGHEADER, SMFIR_ADDHEADER,
 *	SMFIR_INSHEADER, SMFIR_DELRCPT, ...) and SMFIR_PROGRESS are read
 *	before the final verdict and counted by kind, not applied; a
 *	modification before end of message is an error. -o FILE: the first
 *	message of connection 0 that is modified is also edited as an MTA
 *	would (header changes, deletions, additions and insertions by
 *	occurrence, the body replaced by the concatenated SMFIR_REPLBODY
 *	chunks) and written to FILE (CRLF), with its removed recipients in
 *	FILE.delrcpt, for the caller to check once (e.g. decrypt it).
 *	Commands that need no answer are buffered and go out with the next
 *	one that does, as one write.
 *
 *	Like Postfix, the driver sends SMFIC_ABORT before the next message
 *	when the previous one ended before end of message (-A early, the
 *	default); -A always sends it after every message, -A never not at
 *	all. At the end each connection sends SMFIC_QUIT.
 *
 *	-n MESSAGES: total over all connections; -t SECONDS: run that long
 *	(default -n 1000). -w WARMUP: messages per connection sent before
 *	the clock starts (not counted). -e VERDICT: the verdict every
 *	message must get: accept (SMFIR_ACCEPT at any stage, or
 *	SMFIR_CONTINUE at end of message), continue (SMFIR_CONTINUE at end of
 *	message only), tempfail (also 4xx SMFIR_REPLYCODE), reject (also 5xx),
 *	discard. -r RCPT may be given several times: one SMFIC_RCPT each
 *	(default <bench-rcpt@example.org>). -k: also print one line of
 *	key=value pairs for scripts.
 *	-v: print each connection's negotiated flags.
 *
 *	TCP_NODELAY is set on TCP sockets.
 * EXIT STATUS
 *	0 when every message got a final reply (and the expected one with
 *	-e), 1 otherwise or on a connection error, 2 on usage errors.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <libmilter/mfdef.h>

#define MAX_REPLY (16 * 1024 * 1024)

/* --- messages -------------------------------------------------------------- */

typedef struct {
	char *name;
	char *value;		/* as in the file after ':', folds joined with "\n" */
} Header;

typedef struct {
	const char *path;
	Header *hdr;
	size_t nhdr;
	char *body;		/* CRLF line ends */
	size_t bodylen;
} Message;

static void
die(const char *fmt, ...)
{
	va_list ap;

	fputs("milter-load: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		die("out of memory");
	return p;
}

static void *
xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (p == NULL)
		die("out of memory");
	return p;
}

static char *
read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, n = 0, r;

	if (f == NULL)
		die("%s: %s", path, strerror(errno));
	do {
		if (cap - n < 65536) {
			cap = cap ? cap * 2 : 65536;
			buf = xrealloc(buf, cap + 1);
		}
		r = fread(buf + n, 1, cap - n, f);
		n += r;
	} while (r > 0);
	if (ferror(f))
		die("%s: read error", path);
	fclose(f);
	buf[n] = '\0';
	*len = n;
	return buf;
}

/* Split into headers (unfolded into name and raw value) and a CRLF body. */
static void
load_message(Message *m, const char *path)
{
	size_t len, pos = 0, cap = 0;
	char *data = read_file(path, &len);
	int in_headers = 1;

	memset(m, 0, sizeof(*m));
	m->path = path;
	m->body = xmalloc(len * 2 + 2);
	while (pos < len) {
		char *nl = memchr(data + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - data) : len;
		size_t l = end - pos;
		char *line = data + pos;
		int had_nl = nl != NULL;

		if (l > 0 && line[l - 1] == '\r')
			l--;
		pos = had_nl ? end + 1 : len;
		if (in_headers) {
			if (l == 0) {
				in_headers = 0;
				continue;
			}
			if ((line[0] == ' ' || line[0] == '\t') && m->nhdr > 0) {
				Header *h = &m->hdr[m->nhdr - 1];
				size_t vl = strlen(h->value);

				h->value = xrealloc(h->value, vl + l + 2);
				h->value[vl] = '\n';
				memcpy(h->value + vl + 1, line, l);
				h->value[vl + 1 + l] = '\0';
				continue;
			}
			char *colon = memchr(line, ':', l);

			if (colon == NULL) {
				/* not a header: the body starts here (as Postfix does) */
				in_headers = 0;
			} else {
				if (m->nhdr == cap) {
					cap = cap ? cap * 2 : 16;
					m->hdr = xrealloc(m->hdr, cap * sizeof(Header));
				}
				m->hdr[m->nhdr].name = strndup(line, (size_t)(colon - line));
				m->hdr[m->nhdr].value = strndup(colon + 1, l - (size_t)(colon - line) - 1);
				m->nhdr++;
				continue;
			}
		}
		memcpy(m->body + m->bodylen, line, l);
		m->bodylen += l;
		if (had_nl) {
			m->body[m->bodylen++] = '\r';
			m->body[m->bodylen++] = '\n';
		}
	}
	if (m->nhdr == 0)
		die("%s: no header found", path);
	free(data);
}

/* --- options and shared state ------------------------------------------------ */

static const char *opt_socket;
static int opt_conns = 1;
static long opt_messages = -1;
static double opt_seconds = -1;
static int opt_warmup;
static const char *opt_expect;
static const char *opt_from = "<bench-sender@example.org>";
static const char *opt_rcpt_default[] = { "<bench-rcpt@example.org>" };
static const char **opt_rcpt = opt_rcpt_default;
static int opt_nrcpt = 1;
static const char *opt_capture;	/* -o FILE */
static enum { ABORT_EARLY, ABORT_ALWAYS, ABORT_NEVER } opt_abort = ABORT_EARLY;
static int opt_keys, opt_verbose;

static Message *messages;
static size_t nmessages;

static long next_message;	/* claimed so far (atomic) */
static struct timespec deadline;
static pthread_barrier_t ready_barrier, start_barrier;	/* warm-up done; clock set */

/* stages, in protocol order */
enum {
	ST_CONNECT, ST_HELO, ST_MAIL, ST_RCPT, ST_DATA, ST_HEADER, ST_EOH, ST_BODY, ST_EOM, NSTAGES
};
static const char *const stage_name[NSTAGES] = {
	"connect", "helo", "mail", "rcpt", "data", "header", "eoh", "body", "eom"
};
static const unsigned long stage_no[NSTAGES] = {
	SMFIP_NOCONNECT, SMFIP_NOHELO, SMFIP_NOMAIL, SMFIP_NORCPT, SMFIP_NODATA,
	SMFIP_NOHDRS, SMFIP_NOEOH, SMFIP_NOBODY, 0
};
static const unsigned long stage_nr[NSTAGES] = {
	SMFIP_NR_CONN, SMFIP_NR_HELO, SMFIP_NR_MAIL, SMFIP_NR_RCPT, SMFIP_NR_DATA,
	SMFIP_NR_HDR, SMFIP_NR_EOH, SMFIP_NR_BODY, 0
};

/* final verdicts */
enum { V_ACCEPT, V_CONTINUE, V_TEMPFAIL, V_REJECT, V_DISCARD, V_CONNFAIL, V_SHUTDOWN, NVERDICTS };
static const char *const verdict_name[NVERDICTS] = {
	"accept", "continue", "tempfail", "reject", "discard", "connfail", "shutdown"
};

/* the message as the milter edits it (-o) */
typedef struct {
	Header *hdr;
	size_t nhdr;
	char *body;
	size_t bodylen;
	int replaced;
	char **delrcpt;
	size_t ndelrcpt;
} Capture;

/* modification kinds counted */
enum { MOD_REPLBODY, MOD_CHGHEADER, MOD_ADDHEADER, MOD_INSHEADER, MOD_DELRCPT, MOD_ADDRCPT,
	MOD_CHGFROM, MOD_QUARANTINE, NMODS };
static const char *const mod_name[NMODS] = {
	"replbody", "chgheader", "addheader", "insheader", "delrcpt", "addrcpt", "chgfrom", "quarantine"
};

typedef struct {
	int id;
	/* connection */
	int fd;
	unsigned long prot, actions;
	char *out;
	size_t outlen, outcap;
	char *in;		/* the last reply packet */
	size_t incap;
	char rbuf[65536];	/* bytes read from the socket, not yet used */
	size_t rpos, rlen;
	int pending_abort;
	/* results */
	long count[NVERDICTS][NSTAGES];
	long unexpected, errors, mods, progress, skips, done;
	long mod[NMODS], modified;	/* by kind; messages with any */
	long long replbody_bytes;
	int capturing;			/* -o: this message is captured */
	Capture cap;
	double *lat;		/* microseconds per message */
	size_t nlat, latcap;
	char first_error[256];
} Worker;

static double
now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void
werr(Worker *w, const char *fmt, ...)
{
	va_list ap;

	w->errors++;
	if (w->first_error[0])
		return;
	va_start(ap, fmt);
	vsnprintf(w->first_error, sizeof(w->first_error), fmt, ap);
	va_end(ap);
}

/* --- socket --------------------------------------------------------------- */

static int
open_socket(const char *spec, char *err, size_t errlen)
{
	const char *p;
	char host[256], port[32];
	struct addrinfo hints, *ai, *a;
	int fd = -1, rc, one = 1;

	if (strncmp(spec, "unix:", 5) == 0 || strncmp(spec, "local:", 6) == 0 || spec[0] == '/') {
		struct sockaddr_un sun;

		p = spec[0] == '/' ? spec : strchr(spec, ':') + 1;
		memset(&sun, 0, sizeof(sun));
		sun.sun_family = AF_UNIX;
		if (strlen(p) >= sizeof(sun.sun_path)) {
			snprintf(err, errlen, "%s: path too long", spec);
			return -1;
		}
		strcpy(sun.sun_path, p);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
			snprintf(err, errlen, "%s: %s", spec, strerror(errno));
			if (fd >= 0)
				close(fd);
			return -1;
		}
		return fd;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	if (strncmp(spec, "inet:", 5) == 0 || strncmp(spec, "inet6:", 6) == 0) {
		const char *s = strchr(spec, ':') + 1, *at = strchr(s, '@');

		hints.ai_family = spec[4] == '6' ? AF_INET6 : AF_INET;
		if (at) {
			snprintf(port, sizeof(port), "%.*s", (int)(at - s), s);
			snprintf(host, sizeof(host), "%s", at + 1);
		} else {
			/* Postfix style inet:HOST:PORT */
			const char *c = strrchr(s, ':');

			if (c == NULL) {
				snprintf(host, sizeof(host), "127.0.0.1");
				snprintf(port, sizeof(port), "%s", s);
			} else {
				snprintf(host, sizeof(host), "%.*s", (int)(c - s), s);
				snprintf(port, sizeof(port), "%s", c + 1);
			}
		}
	} else if ((p = strrchr(spec, ':')) != NULL) {
		snprintf(host, sizeof(host), "%.*s", (int)(p - spec), spec);
		snprintf(port, sizeof(port), "%s", p + 1);
	} else {
		snprintf(err, errlen, "%s: not inet:PORT@HOST, HOST:PORT or unix:PATH", spec);
		return -1;
	}
	if ((rc = getaddrinfo(host, port, &hints, &ai)) != 0) {
		snprintf(err, errlen, "%s: %s", spec, gai_strerror(rc));
		return -1;
	}
	snprintf(err, errlen, "%s: no address", spec);
	for (a = ai; a; a = a->ai_next) {
		fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
		if (fd < 0)
			continue;
		if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
			break;
		snprintf(err, errlen, "%s: %s", spec, strerror(errno));
		close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	if (fd >= 0)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

/* --- packets --------------------------------------------------------------- */

static void
put_cmd(Worker *w, char cmd, const void *data, size_t len)
{
	uint32_t n = htonl((uint32_t)(len + 1));

	if (w->outcap - w->outlen < len + 5) {
		w->outcap = (w->outlen + len + 5) * 2;
		w->out = xrealloc(w->out, w->outcap);
	}
	memcpy(w->out + w->outlen, &n, 4);
	w->out[w->outlen + 4] = cmd;
	if (len)
		memcpy(w->out + w->outlen + 5, data, len);
	w->outlen += len + 5;
}

static int
flush_out(Worker *w)
{
	size_t off = 0;

	while (off < w->outlen) {
		ssize_t n = send(w->fd, w->out + off, w->outlen - off, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			werr(w, "write: %s", n < 0 ? strerror(errno) : "closed");
			return -1;
		}
		off += (size_t)n;
	}
	w->outlen = 0;
	return 0;
}

/* LEN bytes from the socket, through the read buffer (one recv() per
 * reply in the common case, instead of one per field). */
static int
read_full(Worker *w, void *buf, size_t len)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n;

		if (w->rpos < w->rlen) {
			size_t k = w->rlen - w->rpos < len - off ? w->rlen - w->rpos : len - off;

			memcpy((char *)buf + off, w->rbuf + w->rpos, k);
			w->rpos += k;
			off += k;
			continue;
		}
		n = recv(w->fd, w->rbuf, sizeof(w->rbuf), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			werr(w, "read: %s", n < 0 ? strerror(errno) : "connection closed by the milter");
			return -1;
		}
		w->rpos = 0;
		w->rlen = (size_t)n;
	}
	return 0;
}

/* One reply packet: returns its command, data in w->in, *len its length. */
static int
read_packet(Worker *w, size_t *len)
{
	uint32_t n;
	size_t l;

	if (read_full(w, &n, 4) != 0)
		return -1;
	l = ntohl(n);
	if (l == 0 || l > MAX_REPLY) {
		werr(w, "bad reply length %zu", l);
		return -1;
	}
	if (w->incap < l + 1) {
		w->incap = l + 1;
		w->in = xrealloc(w->in, w->incap);
	}
	if (read_full(w, w->in, l) != 0)
		return -1;
	w->in[l] = '\0';
	*len = l - 1;
	return (unsigned char)w->in[0];
}

static void
count_mod(Worker *w, int r, size_t l)
{
	switch (r) {
	case SMFIR_REPLBODY: w->mod[MOD_REPLBODY]++; w->replbody_bytes += (long long)l; break;
	case SMFIR_CHGHEADER: w->mod[MOD_CHGHEADER]++; break;
	case SMFIR_ADDHEADER: w->mod[MOD_ADDHEADER]++; break;
	case SMFIR_INSHEADER: w->mod[MOD_INSHEADER]++; break;
	case SMFIR_DELRCPT: w->mod[MOD_DELRCPT]++; break;
	case SMFIR_ADDRCPT: case SMFIR_ADDRCPT_PAR: w->mod[MOD_ADDRCPT]++; break;
	case SMFIR_CHGFROM: w->mod[MOD_CHGFROM]++; break;
	case SMFIR_QUARANTINE: w->mod[MOD_QUARANTINE]++; break;
	}
}

/* Two NUL-terminated strings after a 32-bit index (IDX may be NULL: no
 * index) in the reply data of length L; 0 when well formed. */
static int
mod_fields(const char *d, size_t l, uint32_t *idx, const char **a, const char **b)
{
	size_t off = 0;

	if (idx) {
		uint32_t n;

		if (l < 4)
			return -1;
		memcpy(&n, d, 4);
		*idx = ntohl(n);
		off = 4;
	}
	if (memchr(d + off, '\0', l - off) == NULL)
		return -1;
	*a = d + off;
	off += strlen(*a) + 1;
	if (b == NULL)
		return 0;
	if (off >= l || memchr(d + off, '\0', l - off) == NULL)
		return -1;
	*b = d + off;
	return 0;
}

static void
cap_insert(Capture *c, size_t at, const char *name, const char *value)
{
	c->hdr = xrealloc(c->hdr, (c->nhdr + 1) * sizeof(Header));
	if (at > c->nhdr)
		at = c->nhdr;
	memmove(c->hdr + at + 1, c->hdr + at, (c->nhdr - at) * sizeof(Header));
	c->hdr[at].name = strdup(name);
	c->hdr[at].value = strdup(value);
	c->nhdr++;
}

/* Edit the captured message with one modification reply (data in w->in + 1). */
static int
apply_mod(Worker *w, int r, size_t l)
{
	Capture *c = &w->cap;
	const char *d = w->in + 1, *a, *b;
	uint32_t idx;

	switch (r) {
	case SMFIR_REPLBODY:
		if (!c->replaced) {
			c->bodylen = 0;
			c->replaced = 1;
		}
		c->body = xrealloc(c->body, c->bodylen + l + 1);
		memcpy(c->body + c->bodylen, d, l);
		c->bodylen += l;
		return 0;
	case SMFIR_ADDHEADER:
		if (mod_fields(d, l, NULL, &a, &b) != 0)
			return -1;
		cap_insert(c, c->nhdr, a, b);
		return 0;
	case SMFIR_INSHEADER:
		if (mod_fields(d, l, &idx, &a, &b) != 0)
			return -1;
		cap_insert(c, idx, a, b);
		return 0;
	case SMFIR_CHGHEADER:
		/* the IDX-th (from 1) field named A; an empty value deletes it;
		 * beyond the last one: added */
		if (mod_fields(d, l, &idx, &a, &b) != 0)
			return -1;
		for (size_t i = 0, k = 0; i < c->nhdr; i++) {
			if (strcasecmp(c->hdr[i].name, a) != 0 || ++k != (idx ? idx : 1))
				continue;
			free(c->hdr[i].value);
			if (*b) {
				c->hdr[i].value = strdup(b);
			} else {
				free(c->hdr[i].name);
				memmove(c->hdr + i, c->hdr + i + 1, (c->nhdr - i - 1) * sizeof(Header));
				c->nhdr--;
			}
			return 0;
		}
		if (*b)
			cap_insert(c, c->nhdr, a, b);
		return 0;
	case SMFIR_DELRCPT:
		if (mod_fields(d, l, NULL, &a, NULL) != 0)
			return -1;
		c->delrcpt = xrealloc(c->delrcpt, (c->ndelrcpt + 1) * sizeof(char *));
		c->delrcpt[c->ndelrcpt++] = strdup(a);
		return 0;
	default:
		return 0;	/* counted only */
	}
}

/* Header values are kept as the milter sees them: with the space after
 * the colon when it negotiated SMFIP_HDR_LEADSPC (its changes then carry
 * their own), without otherwise (the MTA adds one on output). */
static void
cap_start(Worker *w, const Message *m)
{
	Capture *c = &w->cap;

	memset(c, 0, sizeof(*c));
	c->hdr = xmalloc(m->nhdr * sizeof(Header));
	for (size_t i = 0; i < m->nhdr; i++) {
		const char *v = m->hdr[i].value;

		while (!(w->prot & SMFIP_HDR_LEADSPC) && (*v == ' ' || *v == '\t'))
			v++;
		c->hdr[i].name = strdup(m->hdr[i].name);
		c->hdr[i].value = strdup(v);
	}
	c->nhdr = m->nhdr;
	c->body = xmalloc(m->bodylen + 1);
	memcpy(c->body, m->body, m->bodylen);
	c->bodylen = m->bodylen;
	w->capturing = 1;
}

static void
cap_free(Capture *c)
{
	for (size_t i = 0; i < c->nhdr; i++) {
		free(c->hdr[i].name);
		free(c->hdr[i].value);
	}
	for (size_t i = 0; i < c->ndelrcpt; i++)
		free(c->delrcpt[i]);
	free(c->hdr);
	free(c->body);
	free(c->delrcpt);
	memset(c, 0, sizeof(*c));
}

/* Write the edited message (header values: LF folds become CRLF). */
static void
cap_write(const Capture *c, unsigned long prot, const char *path)
{
	FILE *f = fopen(path, "wb");
	char *p2;

	if (f == NULL)
		die("%s: %s", path, strerror(errno));
	for (size_t i = 0; i < c->nhdr; i++) {
		fprintf(f, "%s:%s", c->hdr[i].name, prot & SMFIP_HDR_LEADSPC ? "" : " ");
		for (const char *v = c->hdr[i].value; *v; v++) {
			if (*v == '\n' && (v == c->hdr[i].value || v[-1] != '\r'))
				fputc('\r', f);
			fputc(*v, f);
		}
		fputs("\r\n", f);
	}
	fputs("\r\n", f);
	fwrite(c->body, 1, c->bodylen, f);
	if (fclose(f) != 0)
		die("%s: write error", path);
	if (asprintf(&p2, "%s.delrcpt", path) < 0)
		die("out of memory");
	f = fopen(p2, "w");
	if (f == NULL)
		die("%s: %s", p2, strerror(errno));
	for (size_t i = 0; i < c->ndelrcpt; i++)
		fprintf(f, "%s\n", c->delrcpt[i]);
	fclose(f);
	free(p2);
}

/*
 * Send a command for STAGE and return the milter's answer: 'c' also when
 * the stage is skipped or not answered, else the final reply ('a', 't',
 * 'r', 'd', 'f', '4'; 'y' mapped to 't' or 'r'), or 's' (skip) for a body
 * chunk. -1 on a connection error.
 */
static int
stage(Worker *w, int st, char cmd, const void *data, size_t len)
{
	if (w->prot & stage_no[st])
		return 'c';
	put_cmd(w, cmd, data, len);
	if (w->prot & stage_nr[st])
		return 'c';
	if (flush_out(w) != 0)
		return -1;
	for (;;) {
		size_t l;
		int r = read_packet(w, &l);

		switch (r) {
		case -1:
			return -1;
		case SMFIR_PROGRESS:
			w->progress++;
			continue;
		case SMFIR_ADDRCPT: case SMFIR_DELRCPT: case SMFIR_ADDRCPT_PAR:
		case SMFIR_REPLBODY: case SMFIR_CHGFROM: case SMFIR_ADDHEADER:
		case SMFIR_INSHEADER: case SMFIR_CHGHEADER: case SMFIR_QUARANTINE:
			if (st != ST_EOM) {
				werr(w, "modification '%c' at %s", r, stage_name[st]);
				return -1;
			}
			w->mods++;
			count_mod(w, r, l);
			if (w->capturing && apply_mod(w, r, l) != 0) {
				werr(w, "malformed modification '%c' (%zu bytes)", r, l);
				return -1;
			}
			continue;
		case SMFIR_REPLYCODE:
			return l > 0 && w->in[1] == '4' ? SMFIR_TEMPFAIL : SMFIR_REJECT;
		case SMFIR_SKIP:
			if (st != ST_BODY || !(w->prot & SMFIP_SKIP)) {
				werr(w, "unexpected skip at %s", stage_name[st]);
				return -1;
			}
			w->skips++;
			return r;
		case SMFIR_CONTINUE: case SMFIR_ACCEPT: case SMFIR_TEMPFAIL:
		case SMFIR_REJECT: case SMFIR_DISCARD: case SMFIR_CONN_FAIL: case SMFIR_SHUTDOWN:
			return r;
		default:
			werr(w, "unknown reply '%c' (0x%02x) at %s", r, r, stage_name[st]);
			return -1;
		}
	}
}

static int
verdict_of(int r)
{
	switch (r) {
	case SMFIR_ACCEPT: return V_ACCEPT;
	case SMFIR_CONTINUE: return V_CONTINUE;
	case SMFIR_TEMPFAIL: return V_TEMPFAIL;
	case SMFIR_REJECT: return V_REJECT;
	case SMFIR_DISCARD: return V_DISCARD;
	case SMFIR_CONN_FAIL: return V_CONNFAIL;
	default: return V_SHUTDOWN;
	}
}

static int
expected(int v, int st)
{
	if (opt_expect == NULL)
		return 1;
	if (strcmp(opt_expect, "accept") == 0)
		return v == V_ACCEPT || (v == V_CONTINUE && st == ST_EOM);
	if (strcmp(opt_expect, "continue") == 0)
		return v == V_CONTINUE && st == ST_EOM;
	return strcmp(opt_expect, verdict_name[v]) == 0;
}

static void
disconnect(Worker *w, int quit)
{
	if (w->fd < 0)
		return;
	if (quit) {
		put_cmd(w, SMFIC_QUIT, NULL, 0);
		(void)flush_out(w);
	}
	close(w->fd);
	w->fd = -1;
	w->outlen = 0;
	w->rpos = w->rlen = 0;
	w->pending_abort = 0;
}

/* Open, negotiate, CONNECT and HELO. 0 ready; 1 connection-level verdict V. */
static int
conn_open(Worker *w, int *v)
{
	char err[300], buf[64];
	uint32_t neg[3];
	size_t l;
	int r;

	w->fd = open_socket(opt_socket, err, sizeof(err));
	if (w->fd < 0) {
		werr(w, "%s", err);
		return -1;
	}
	neg[0] = htonl(SMFI_PROT_VERSION);
	neg[1] = htonl(SMFI_CURR_ACTS);
	neg[2] = htonl(SMFI_CURR_PROT);
	put_cmd(w, SMFIC_OPTNEG, neg, sizeof(neg));
	if (flush_out(w) != 0 || (r = read_packet(w, &l)) < 0)
		goto fail;
	if (r != SMFIC_OPTNEG || l < 12) {
		werr(w, "bad option negotiation reply '%c' (%zu bytes)", r, l);
		goto fail;
	}
	memcpy(neg, w->in + 1, sizeof(neg));
	w->actions = ntohl(neg[1]);
	w->prot = ntohl(neg[2]);
	if (ntohl(neg[0]) < 2) {
		werr(w, "milter speaks protocol version %u", ntohl(neg[0]));
		goto fail;
	}
	if (opt_verbose)
		fprintf(stderr, "milter-load: connection %d: version %u actions 0x%lx protocol 0x%lx\n",
		    w->id, ntohl(neg[0]), w->actions, w->prot);

	/* macros for connect: as Postfix sends some */
	{
		static const char m[] = "C" "j\0mx.bench.example\0" "{daemon_name}\0bench\0";

		put_cmd(w, SMFIC_MACRO, m, sizeof(m) - 1);
	}
	l = 0;
	memcpy(buf + l, "localhost", 10);
	l += 10;
	buf[l++] = SMFIA_INET;
	buf[l++] = 0x30;	/* port 12345 */
	buf[l++] = 0x39;
	memcpy(buf + l, "127.0.0.1", 10);
	l += 10;
	r = stage(w, ST_CONNECT, SMFIC_CONNECT, buf, l);
	if (r == 'c')
		r = stage(w, ST_HELO, SMFIC_HELO, "client.bench.example", 21);
	if (r < 0)
		goto fail;
	if (r != 'c') {
		*v = verdict_of(r);
		return 1;
	}
	return 0;
fail:
	disconnect(w, 0);
	return -1;
}

/*
 * Send message M. Returns the verdict and sets *st to the stage it came at;
 * -1 on a connection error.
 */
static int
send_message(Worker *w, const Message *m, long seq, int *st)
{
	char buf[4096];
	int r;
	size_t l;

	if (w->pending_abort) {
		put_cmd(w, SMFIC_ABORT, NULL, 0);
		w->pending_abort = 0;
	}
	l = (size_t)snprintf(buf, sizeof(buf), "M" "i%c%lX%c" "{mail_addr}%c%s%c", 0, 0x10000000L + seq,
	    0, 0, opt_from, 0);
	put_cmd(w, SMFIC_MACRO, buf, l);
	r = stage(w, *st = ST_MAIL, SMFIC_MAIL, opt_from, strlen(opt_from) + 1);
	for (int i = 0; r == 'c' && i < opt_nrcpt; i++)
		r = stage(w, *st = ST_RCPT, SMFIC_RCPT, opt_rcpt[i], strlen(opt_rcpt[i]) + 1);
	if (r == 'c')
		r = stage(w, *st = ST_DATA, SMFIC_DATA, NULL, 0);
	if (r == 'c')
		*st = ST_HEADER;
	for (size_t i = 0; r == 'c' && i < m->nhdr; i++) {
		const char *v = m->hdr[i].value;
		size_t nl = strlen(m->hdr[i].name) + 1, vl;
		char *p;

		if (!(w->prot & SMFIP_HDR_LEADSPC))
			while (*v == ' ' || *v == '\t')
				v++;
		vl = strlen(v) + 1;
		p = nl + vl <= sizeof(buf) ? buf : xmalloc(nl + vl);
		memcpy(p, m->hdr[i].name, nl);
		memcpy(p + nl, v, vl);
		r = stage(w, ST_HEADER, SMFIC_HEADER, p, nl + vl);
		if (p != buf)
			free(p);
	}
	if (r == 'c')
		r = stage(w, *st = ST_EOH, SMFIC_EOH, NULL, 0);
	if (r == 'c')
		*st = ST_BODY;
	for (size_t off = 0; r == 'c' && off < m->bodylen; off += MILTER_CHUNK_SIZE) {
		size_t n = m->bodylen - off < MILTER_CHUNK_SIZE ? m->bodylen - off : MILTER_CHUNK_SIZE;

		r = stage(w, ST_BODY, SMFIC_BODY, m->body + off, n);
	}
	if (r == 'c' || r == SMFIR_SKIP) {
		*st = ST_EOM;
		r = stage(w, ST_EOM, SMFIC_BODYEOB, NULL, 0);
	}
	if (r < 0)
		return -1;
	if (*st != ST_EOM ? opt_abort != ABORT_NEVER : opt_abort == ABORT_ALWAYS)
		w->pending_abort = 1;
	return verdict_of(r);
}

static void
record(Worker *w, int v, int st, double t0)
{
	w->count[v][st]++;
	if (!expected(v, st))
		w->unexpected++;
	if (w->nlat == w->latcap) {
		w->latcap = w->latcap ? w->latcap * 2 : 4096;
		w->lat = xrealloc(w->lat, w->latcap * sizeof(double));
	}
	w->lat[w->nlat++] = (now_s() - t0) * 1e6;
	w->done++;
}

/* Claim the next message to send; -1 when the run is over. */
static long
claim(void)
{
	long i = __atomic_fetch_add(&next_message, 1, __ATOMIC_RELAXED);
	struct timespec t;

	if (opt_messages >= 0)
		return i < opt_messages ? i : -1;
	clock_gettime(CLOCK_MONOTONIC, &t);
	if (t.tv_sec > deadline.tv_sec || (t.tv_sec == deadline.tv_sec && t.tv_nsec >= deadline.tv_nsec))
		return -1;
	return i;
}

/* One message with (re)connection as needed; 0 done, -1 give up. */
static int
one_message(Worker *w, long seq, int counted)
{
	const Message *m = &messages[(size_t)seq % nmessages];
	double t0 = now_s();
	int v = 0, st = ST_CONNECT, tries = 0;

	for (;;) {
		int rc = 0;

		if (w->fd < 0) {
			rc = conn_open(w, &v);
			if (rc == 1) {
				/* connection-level verdict: counts for this message */
				disconnect(w, 1);
				break;
			}
		}
		if (rc == 0) {
			long before = w->mods;
			static int captured;	/* connection 0 only writes it */

			if (opt_capture && w->id == 0 && !captured)
				cap_start(w, m);
			v = send_message(w, m, seq, &st);
			if (v >= 0 && w->mods > before && counted)
				w->modified++;
			if (w->capturing) {
				if (v >= 0 && w->mods > before) {
					cap_write(&w->cap, w->prot, opt_capture);
					captured = 1;
				}
				cap_free(&w->cap);
				w->capturing = 0;
			}
			if (v >= 0) {
				if (v == V_CONNFAIL || v == V_SHUTDOWN)
					disconnect(w, 0);
				break;
			}
			disconnect(w, 0);
		}
		if (++tries >= 5)
			return -1;
		usleep(10000);
	}
	if (counted)
		record(w, v, st, t0);
	return 0;
}

static void *
worker_main(void *arg)
{
	Worker *w = arg;
	int ok = 1;
	long seq;

	for (int i = 0; i < opt_warmup && ok; i++)
		ok = one_message(w, w->id * 7919L + i, 0) == 0;
	if (ok && w->fd < 0) {
		int v;

		if (conn_open(w, &v) == 1)
			disconnect(w, 1);
	}
	pthread_barrier_wait(&ready_barrier);
	pthread_barrier_wait(&start_barrier);
	while (ok && (seq = claim()) >= 0)
		ok = one_message(w, seq, 1) == 0;
	if (!ok)
		fprintf(stderr, "milter-load: connection %d gave up: %s\n", w->id, w->first_error);
	disconnect(w, 1);
	return NULL;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void
usage(void)
{
	fputs("usage: milter-load -s SOCKET [-c CONNECTIONS] [-n MESSAGES | -t SECONDS]\n"
	    "                   [-w WARMUP] [-e accept|continue|tempfail|reject|discard]\n"
	    "                   [-f FROM] [-r RCPT]... [-A early|always|never] [-o FILE] [-k] [-v]\n"
	    "                   FILE...\n",
	    stderr);
	exit(2);
}

int
main(int argc, char **argv)
{
	Worker *ws;
	pthread_t *th;
	double t0, elapsed, *lat;
	long total = 0, count[NVERDICTS][NSTAGES], unexpected = 0, errors = 0, mods = 0;
	long mod[NMODS] = {0}, modified = 0;
	long long replbody_bytes = 0;
	size_t nlat = 0;
	struct rusage ru;
	double cpu;
	int c;

	while ((c = getopt(argc, argv, "s:c:n:t:w:e:f:r:A:o:kv")) != -1) {
		switch (c) {
		case 's': opt_socket = optarg; break;
		case 'c': opt_conns = atoi(optarg); break;
		case 'n': opt_messages = atol(optarg); break;
		case 't': opt_seconds = atof(optarg); break;
		case 'w': opt_warmup = atoi(optarg); break;
		case 'e': opt_expect = optarg; break;
		case 'f': opt_from = optarg; break;
		case 'r':
			if (opt_rcpt == opt_rcpt_default) {
				opt_rcpt = NULL;
				opt_nrcpt = 0;
			}
			opt_rcpt = xrealloc(opt_rcpt, (size_t)(opt_nrcpt + 1) * sizeof(char *));
			opt_rcpt[opt_nrcpt++] = optarg;
			break;
		case 'o': opt_capture = optarg; break;
		case 'A':
			if (strcmp(optarg, "early") == 0)
				opt_abort = ABORT_EARLY;
			else if (strcmp(optarg, "always") == 0)
				opt_abort = ABORT_ALWAYS;
			else if (strcmp(optarg, "never") == 0)
				opt_abort = ABORT_NEVER;
			else
				usage();
			break;
		case 'k': opt_keys = 1; break;
		case 'v': opt_verbose = 1; break;
		default: usage();
		}
	}
	if (opt_socket == NULL || optind >= argc || opt_conns < 1 || opt_warmup < 0 ||
	    (opt_messages >= 0 && opt_seconds >= 0))
		usage();
	if (opt_expect) {
		int known = strcmp(opt_expect, "continue") == 0;

		for (int v = 0; v < NVERDICTS; v++)
			known |= strcmp(opt_expect, verdict_name[v]) == 0;
		if (!known)
			usage();
	}
	if (opt_messages < 0 && opt_seconds < 0)
		opt_messages = 1000;
	nmessages = (size_t)(argc - optind);
	messages = xmalloc(nmessages * sizeof(Message));
	for (size_t i = 0; i < nmessages; i++)
		load_message(&messages[i], argv[optind + (int)i]);

	ws = calloc((size_t)opt_conns, sizeof(Worker));
	th = xmalloc((size_t)opt_conns * sizeof(pthread_t));
	if (ws == NULL)
		die("out of memory");
	pthread_barrier_init(&ready_barrier, NULL, (unsigned)opt_conns + 1);
	pthread_barrier_init(&start_barrier, NULL, (unsigned)opt_conns + 1);
	for (int i = 0; i < opt_conns; i++) {
		ws[i].id = i;
		ws[i].fd = -1;
		if (pthread_create(&th[i], NULL, worker_main, &ws[i]) != 0)
			die("cannot create a thread");
	}
	pthread_barrier_wait(&ready_barrier);
	t0 = now_s();
	getrusage(RUSAGE_SELF, &ru);
	cpu = -((double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	    (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
	if (opt_seconds >= 0) {
		clock_gettime(CLOCK_MONOTONIC, &deadline);
		deadline.tv_sec += (time_t)opt_seconds;
		deadline.tv_nsec += (long)((opt_seconds - (double)(time_t)opt_seconds) * 1e9);
		if (deadline.tv_nsec >= 1000000000L) {
			deadline.tv_sec++;
			deadline.tv_nsec -= 1000000000L;
		}
	}
	/* the barrier orders the deadline before every worker's first claim() */
	pthread_barrier_wait(&start_barrier);
	for (int i = 0; i < opt_conns; i++)
		pthread_join(th[i], NULL);
	elapsed = now_s() - t0;
	getrusage(RUSAGE_SELF, &ru);
	cpu += (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	    (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;

	memset(count, 0, sizeof(count));
	for (int i = 0; i < opt_conns; i++) {
		Worker *w = &ws[i];

		total += w->done;
		unexpected += w->unexpected;
		errors += w->errors;
		mods += w->mods;
		modified += w->modified;
		replbody_bytes += w->replbody_bytes;
		for (int k = 0; k < NMODS; k++)
			mod[k] += w->mod[k];
		for (int v = 0; v < NVERDICTS; v++)
			for (int s = 0; s < NSTAGES; s++)
				count[v][s] += w->count[v][s];
		nlat += w->nlat;
		if (w->first_error[0] && w->errors)
			fprintf(stderr, "milter-load: connection %d: %ld error%s, first: %s\n", i,
			    w->errors, w->errors == 1 ? "" : "s", w->first_error);
	}
	lat = xmalloc(nlat * sizeof(double));
	nlat = 0;
	for (int i = 0; i < opt_conns; i++) {
		memcpy(lat + nlat, ws[i].lat, ws[i].nlat * sizeof(double));
		nlat += ws[i].nlat;
	}
	qsort(lat, nlat, sizeof(double), cmp_double);
#define PCT(p) (nlat ? lat[(size_t)((double)(nlat - 1) * (p))] / 1000.0 : 0.0)

	printf("%ld messages in %.3f s over %d connection%s to %s: %.1f messages/s\n", total, elapsed,
	    opt_conns, opt_conns == 1 ? "" : "s", opt_socket, total / elapsed);
	printf("latency ms: p50 %.3f  p90 %.3f  p99 %.3f  max %.3f;  driver CPU %.1f us/message\n",
	    PCT(0.5), PCT(0.9), PCT(0.99), PCT(1.0), total ? cpu * 1e6 / total : 0.0);
	printf("verdicts:");
	for (int v = 0; v < NVERDICTS; v++)
		for (int s = 0; s < NSTAGES; s++)
			if (count[v][s])
				printf(" %s@%s %ld", verdict_name[v], stage_name[s], count[v][s]);
	printf("; modifications %ld", mods);
	for (int k = 0; k < NMODS; k++)
		if (mod[k])
			printf(" %s %ld", mod_name[k], mod[k]);
	printf(" (%ld messages modified); unexpected %ld; errors %ld\n", modified, unexpected, errors);
	if (opt_keys) {
		printf("result: messages=%ld seconds=%.4f rate=%.2f p50_ms=%.3f p99_ms=%.3f driver_cpu_us=%.1f",
		    total, elapsed, total / elapsed, PCT(0.5), PCT(0.99), total ? cpu * 1e6 / total : 0.0);
		for (int v = 0; v < NVERDICTS; v++) {
			long n = 0;

			for (int s = 0; s < NSTAGES; s++)
				n += count[v][s];
			printf(" %s=%ld", verdict_name[v], n);
		}
		printf(" modified=%ld mods=%ld", modified, mods);
		for (int k = 0; k < NMODS; k++)
			printf(" %s=%ld", mod_name[k], mod[k]);
		printf(" replbody_bytes=%lld unexpected=%ld errors=%ld\n", replbody_bytes, unexpected, errors);
	}
	for (int i = 0; i < opt_conns; i++) {
		free(ws[i].out);
		free(ws[i].in);
		free(ws[i].lat);
	}
	for (size_t i = 0; i < nmessages; i++) {
		for (size_t h = 0; h < messages[i].nhdr; h++) {
			free(messages[i].hdr[h].name);
			free(messages[i].hdr[h].value);
		}
		free(messages[i].hdr);
		free(messages[i].body);
	}
	free(messages);
	free(lat);
	free(ws);
	free(th);
	return unexpected || errors || total == 0 ? 1 : 0;
}
