/*
 * NAME
 *	null-milter - the baseline milter for benchmarks: accepts everything
 * SYNOPSIS
 *	null-milter -p SOCKET [-a | -N | -P FLAGS] [-b BACKLOG] [-R BODY]
 * DESCRIPTION
 *	A libmilter daemon (one thread per connection, like kmsmilter) that
 *	registers every callback, returns SMFIS_CONTINUE (SMFIS_NOREPLY where
 *	negotiated) everywhere and
 *	SMFIS_ACCEPT at end of message. It allocates a connection context at
 *	connect and a message context at MAIL FROM, as kmsmilter does, and
 *	reads the whole body (it never skips nor accepts early), so what it
 *	costs is the protocol itself: the floor under any milter that looks
 *	at bodies.
 *
 *	By default it negotiates the protocol the way kmsmilter does: header
 *	values with their leading space, and no HELO, DATA or unknown
 *	commands when the MTA offers to leave them out. -a asks for every
 *	stage, with a reply to each. -P FLAGS asks for exactly these
 *	SMFIP_* protocol flags (a number, 0x... for hex) as far as the MTA
 *	offers them: run-harvest.sh passes what kmsmilter negotiated, so
 *	that both hold the same conversation. -N asks for the least
 *	conversation a harvesting milter needs: no RCPT, HELO, DATA or
 *	unknown commands, and no reply to CONNECT, MAIL, headers or body
 *	chunks (only to end of headers, where a message that cannot carry a
 *	signature is accepted, and to end of message). Callbacks of stages
 *	whose SMFIP_NR_* flag was granted return SMFIS_NOREPLY.
 *
 *	-R BODY: the floor under an encrypting milter. At end of message it
 *	makes the changes kmsmilter makes when it encrypts a message with
 *	those three headers (Content-Type, Content-Transfer-Encoding and
 *	MIME-Version changed; Content-Disposition and X-KMS-Info added) and
 *	replaces the body with the bytes of the file BODY (run-encrypt.sh
 *	gives it the base64 CMS kmsmilter produced for the same message),
 *	then accepts. No
 *	encryption, no vault, no parsing: what is left is the protocol
 *	carrying the body in and the new body out.
 *
 *	SIGTERM or SIGINT: stops (libmilter's signal handling), exit 0.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libmilter/mfapi.h>

#define KMS_LIKE_PROT (SMFIP_HDR_LEADSPC | SMFIP_NOHELO | SMFIP_NOUNKNOWN | SMFIP_NODATA)
#define LEAST_PROT (KMS_LIKE_PROT | SMFIP_NORCPT | SMFIP_NR_CONN | SMFIP_NR_HELO | \
	SMFIP_NR_MAIL | SMFIP_NR_RCPT | SMFIP_NR_HDR | SMFIP_NR_DATA | SMFIP_NR_UNKN | SMFIP_NR_BODY)

static struct smfiDesc desc;
static unsigned long want_prot = KMS_LIKE_PROT;
static char *replay_body;	/* -R: the new body */
static size_t replay_len;
static unsigned long granted;	/* the same for every connection from one MTA */

/* SMFIS_NOREPLY where the MTA was told not to wait for a reply. */
static sfsistat
cont(unsigned long nr_flag)
{
	return (__atomic_load_n(&granted, __ATOMIC_RELAXED) & nr_flag) ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}

typedef struct {
	unsigned long messages;
	unsigned long header_bytes, body_bytes;
	unsigned int sum;	/* touches every body byte, like a spool copy would read it */
	int in_message;
} Ctx;

static sfsistat
nm_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2,
    unsigned long f3, unsigned long *pf0, unsigned long *pf1, unsigned long *pf2,
    unsigned long *pf3)
{
	*pf0 = f0 & desc.xxfi_flags;	/* -R: the changes it makes */
	*pf1 = f1 & want_prot;
	__atomic_store_n(&granted, *pf1, __ATOMIC_RELAXED);
	*pf2 = *pf3 = 0;
	return SMFIS_CONTINUE;
}

static sfsistat
nm_connect(SMFICTX *ctx, char *host, struct sockaddr *addr)
{
	Ctx *c = calloc(1, sizeof(Ctx));

	if (c == NULL)
		return SMFIS_TEMPFAIL;
	smfi_setpriv(ctx, c);
	return cont(SMFIP_NR_CONN);
}

static sfsistat
nm_helo(SMFICTX *ctx, char *helo)
{
	return cont(SMFIP_NR_HELO);
}

static sfsistat
nm_envfrom(SMFICTX *ctx, char **argv)
{
	Ctx *c = smfi_getpriv(ctx);

	if (c) {
		c->in_message = 1;
		c->header_bytes = c->body_bytes = 0;
		/* what kmsmilter reads at MAIL FROM */
		c->sum += smfi_getsymval(ctx, "i") != NULL;
	}
	return cont(SMFIP_NR_MAIL);
}

static sfsistat
nm_envrcpt(SMFICTX *ctx, char **argv)
{
	return cont(SMFIP_NR_RCPT);
}

static sfsistat
nm_data(SMFICTX *ctx)
{
	return cont(SMFIP_NR_DATA);
}

static sfsistat
nm_unknown(SMFICTX *ctx, const char *cmd)
{
	return cont(SMFIP_NR_UNKN);
}

static sfsistat
nm_header(SMFICTX *ctx, char *name, char *value)
{
	Ctx *c = smfi_getpriv(ctx);

	if (c)
		c->header_bytes += strlen(name) + strlen(value) + 3;
	return cont(SMFIP_NR_HDR);
}

static sfsistat
nm_eoh(SMFICTX *ctx)
{
	return cont(SMFIP_NR_EOH);
}

static sfsistat
nm_body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{
	Ctx *c = smfi_getpriv(ctx);

	if (c) {
		unsigned int s = 0;

		for (size_t i = 0; i < len; i++)
			s += chunk[i];
		c->sum += s;
		c->body_bytes += len;
	}
	return cont(SMFIP_NR_BODY);
}

static sfsistat
nm_eom(SMFICTX *ctx)
{
	Ctx *c = smfi_getpriv(ctx);

	if (c) {
		c->messages++;
		c->in_message = 0;
	}
	if (replay_body != NULL) {
		static const char *const chg[][2] = {
			{ "Content-Type", " application/pkcs7-mime; smime-type=enveloped-data;"
			    " name=smime.p7m" },
			{ "Content-Transfer-Encoding", " base64" },
			{ "MIME-Version", " 1.0" },
		};
		static const char *const add[][2] = {
			{ "Content-Disposition", " attachment; filename=smime.p7m" },
			{ "X-KMS-Info", " encrypted aes256-cbc for 3 recipients" },
		};

		for (size_t i = 0; i < sizeof(chg) / sizeof(chg[0]); i++)
			if (smfi_chgheader(ctx, (char *)chg[i][0], 1, (char *)chg[i][1]) != MI_SUCCESS)
				return SMFIS_TEMPFAIL;
		for (size_t i = 0; i < sizeof(add) / sizeof(add[0]); i++)
			if (smfi_addheader(ctx, (char *)add[i][0], (char *)add[i][1]) != MI_SUCCESS)
				return SMFIS_TEMPFAIL;
		if (smfi_replacebody(ctx, (unsigned char *)replay_body, (int)replay_len) != MI_SUCCESS)
			return SMFIS_TEMPFAIL;
	}
	return SMFIS_ACCEPT;
}

static sfsistat
nm_abort(SMFICTX *ctx)
{
	Ctx *c = smfi_getpriv(ctx);

	if (c)
		c->in_message = 0;
	return SMFIS_CONTINUE;
}

static sfsistat
nm_close(SMFICTX *ctx)
{
	free(smfi_getpriv(ctx));
	smfi_setpriv(ctx, NULL);
	return SMFIS_CONTINUE;
}

static struct smfiDesc desc = {
	.xxfi_name = "null-milter",
	.xxfi_version = SMFI_VERSION,
	.xxfi_flags = 0,
	.xxfi_connect = nm_connect,
	.xxfi_helo = nm_helo,
	.xxfi_envfrom = nm_envfrom,
	.xxfi_envrcpt = nm_envrcpt,
	.xxfi_header = nm_header,
	.xxfi_eoh = nm_eoh,
	.xxfi_body = nm_body,
	.xxfi_eom = nm_eom,
	.xxfi_abort = nm_abort,
	.xxfi_close = nm_close,
	.xxfi_unknown = nm_unknown,
	.xxfi_data = nm_data,
	.xxfi_negotiate = nm_negotiate,
};

/* -R: the whole file into replay_body. */
static int
read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	long n;

	if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) <= 0 ||
	    fseek(f, 0, SEEK_SET) != 0 || (replay_body = malloc((size_t)n)) == NULL ||
	    fread(replay_body, 1, (size_t)n, f) != (size_t)n) {
		fprintf(stderr, "null-milter: cannot read %s\n", path);
		if (f)
			fclose(f);
		return 0;
	}
	fclose(f);
	replay_len = (size_t)n;
	return 1;
}

static void
usage(void)
{
	fputs("usage: null-milter -p SOCKET [-a | -N | -P FLAGS] [-b BACKLOG] [-R BODY]\n", stderr);
	exit(2);
}

int
main(int argc, char **argv)
{
	const char *sock = NULL;
	int c;

	while ((c = getopt(argc, argv, "p:aNP:b:R:")) != -1) {
		switch (c) {
		case 'p': sock = optarg; break;
		case 'a': want_prot = SMFIP_HDR_LEADSPC; break;
		case 'N': want_prot = LEAST_PROT; break;
		case 'P': want_prot = strtoul(optarg, NULL, 0); break;
		case 'b':
			if (smfi_setbacklog(atoi(optarg)) != MI_SUCCESS)
				usage();
			break;
		case 'R':
			if (!read_file(optarg))
				return 1;
			desc.xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGBODY;
			break;
		default: usage();
		}
	}
	if (sock == NULL || optind != argc)
		usage();
	if (smfi_setconn((char *)sock) != MI_SUCCESS || smfi_register(desc) != MI_SUCCESS ||
	    smfi_opensocket(1) != MI_SUCCESS) {
		fprintf(stderr, "null-milter: cannot listen on %s\n", sock);
		return 1;
	}
	fprintf(stderr, "null-milter: listening on %s\n", sock);
	return smfi_main() == MI_SUCCESS ? 0 : 1;
}
