/*
 * NAME
 *	harvest-inproc - the in-process bound for harvesting throughput
 * SYNOPSIS
 *	harvest-inproc -a CA.pem [-a ...] [-j THREADS] [-n MESSAGES | -t SECONDS]
 *	    [-w WARMUP] [-S] [-e STATUS] [-k] FILE...
 * DESCRIPTION
 *	Reads the message FILEs once, in the form kmsmilter's spool holds
 *	them (CRLF line ends), and calls kms_harvest() on them in a loop:
 *	parse with GMime, verify every CMS signature and the signer's chain,
 *	read addresses and capabilities. No milter protocol, no spool, no
 *	database: the bound the milter is compared with.
 *
 *	The trust store is built like kmsmilter builds it: the -a
 *	certificates (the trust list), X509_V_FLAG_PARTIAL_CHAIN, and the
 *	system's default paths unless -S. One store is shared by all threads,
 *	as in kmsmilter.
 *
 *	It runs once with one thread and, when -j THREADS is more than 1,
 *	again with THREADS threads (kmsmilter runs one thread per
 *	connection). -n MESSAGES: total per run (default 2000); -t SECONDS:
 *	duration per run. -w WARMUP: messages harvested before each run.
 *	-e STATUS: every message must yield at least one signer and every
 *	signer must have that status (trusted, untrusted-chain, expired,
 *	bad-signature); "none": no signer at all. -k: one key=value line per
 *	run for scripts.
 * EXIT STATUS
 *	0, 1 when a message did not harvest as -e expects, 2 on usage errors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>
#include <gmime/gmime.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "common/daemon.h"
#include "smime/harvest.h"

typedef struct {
	char *data;
	gsize len;
} Msg;

static Msg *msgs;
static guint nmsgs;
static KmsHarvestOptions opts;
static const char *expect;
static long opt_messages = -1;
static double opt_seconds = -1;
static int opt_warmup = 20;

static gint next_msg;
static gint64 deadline_us;	/* monotonic; 0: count mode */

typedef struct {
	GThread *thread;
	long done, bad, signers;
} Worker;

/* The file with every line end made CRLF, as the milter's spool has it. */
static Msg
load(const char *path)
{
	g_autofree char *raw = NULL;
	gsize len;
	g_autoptr(GError) e = NULL;
	GString *s;
	Msg m;

	if (!g_file_get_contents(path, &raw, &len, &e)) {
		fprintf(stderr, "harvest-inproc: %s\n", e->message);
		exit(1);
	}
	s = g_string_sized_new(len + len / 20);
	for (gsize i = 0; i < len; i++) {
		if (raw[i] == '\n' && (i == 0 || raw[i - 1] != '\r'))
			g_string_append_c(s, '\r');
		g_string_append_c(s, raw[i]);
	}
	m.len = s->len;
	m.data = g_string_free(s, FALSE);
	return m;
}

/* Does R harvest as -e says? */
static gboolean
as_expected(const KmsHarvestResult *r)
{
	if (expect == NULL)
		return TRUE;
	if (strcmp(expect, "none") == 0)
		return r->signers->len == 0;
	if (r->signers->len == 0)
		return FALSE;
	for (guint i = 0; i < r->signers->len; i++) {
		const KmsHarvestSigner *s = g_ptr_array_index(r->signers, i);

		if (strcmp(kms_signer_status_name(s->status), expect) != 0)
			return FALSE;
	}
	return TRUE;
}

static gboolean
claim(guint *idx)
{
	gint i = g_atomic_int_add(&next_msg, 1);

	if (deadline_us == 0) {
		if (i >= opt_messages)
			return FALSE;
	} else if (g_get_monotonic_time() >= deadline_us)
		return FALSE;
	*idx = (guint)i % nmsgs;
	return TRUE;
}

static gpointer
worker_main(gpointer arg)
{
	Worker *w = arg;
	guint i;

	while (claim(&i)) {
		KmsHarvestResult *r = kms_harvest(&opts, msgs[i].data, msgs[i].len);

		if (!as_expected(r)) {
			if (w->bad++ == 0)
				for (guint k = 0; k < r->problems->len; k++)
					fprintf(stderr, "harvest-inproc: %s\n",
					    (const char *)g_ptr_array_index(r->problems, k));
		}
		w->signers += r->signers->len;
		w->done++;
		kms_harvest_result_free(r);
	}
	return NULL;
}

static double
cpu_seconds(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	    (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* One run with N threads; returns the number of unexpected results. */
static long
run(int n, gboolean keys)
{
	Worker *ws = g_new0(Worker, n);
	long done = 0, bad = 0, signers = 0;
	gint64 t0;
	double elapsed, cpu;

	for (int i = 0; i < opt_warmup; i++)
		kms_harvest_result_free(kms_harvest(&opts, msgs[(guint)i % nmsgs].data,
		    msgs[(guint)i % nmsgs].len));
	g_atomic_int_set(&next_msg, 0);
	t0 = g_get_monotonic_time();
	cpu = cpu_seconds();
	deadline_us = opt_seconds >= 0 ? t0 + (gint64)(opt_seconds * G_USEC_PER_SEC) : 0;
	for (int i = 0; i < n; i++)
		ws[i].thread = g_thread_new("harvest", worker_main, &ws[i]);
	for (int i = 0; i < n; i++) {
		g_thread_join(ws[i].thread);
		done += ws[i].done;
		bad += ws[i].bad;
		signers += ws[i].signers;
	}
	elapsed = (double)(g_get_monotonic_time() - t0) / G_USEC_PER_SEC;
	cpu = cpu_seconds() - cpu;
	printf("%ld messages in %.3f s with %d thread%s: %.1f messages/s; CPU %.1f us/message;"
	    " %ld signers; %ld unexpected\n", done, elapsed, n, n == 1 ? "" : "s", done / elapsed,
	    done ? cpu * 1e6 / done : 0.0, signers, bad);
	if (keys)
		printf("result: threads=%d messages=%ld seconds=%.4f rate=%.2f cpu_us=%.1f signers=%ld"
		    " unexpected=%ld\n", n, done, elapsed, done / elapsed, done ? cpu * 1e6 / done : 0.0,
		    signers, bad);
	g_free(ws);
	return bad;
}

static int
add_anchors(X509_STORE *st, const char *path)
{
	FILE *f = fopen(path, "r");
	X509 *x;
	int n = 0;

	if (f == NULL) {
		perror(path);
		return -1;
	}
	while ((x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) {
		if (X509_STORE_add_cert(st, x) == 1)
			n++;
		X509_free(x);
	}
	ERR_clear_error();
	fclose(f);
	return n;
}

static void
usage(void)
{
	fputs("usage: harvest-inproc -a CA.pem [-a ...] [-j THREADS] [-n MESSAGES | -t SECONDS]\n"
	    "                      [-w WARMUP] [-S] [-e STATUS|none] [-k] FILE...\n", stderr);
	exit(2);
}

int
main(int argc, char **argv)
{
	X509_STORE *st = X509_STORE_new();
	int threads = 1, c, anchors = 0;
	gboolean system = TRUE, keys = FALSE;
	long bad;

	kms_daemon_tune_malloc();	/* as kmsmilter: the same allocator settings */
	while ((c = getopt(argc, argv, "a:j:n:t:w:Se:k")) != -1) {
		switch (c) {
		case 'a':
			if (add_anchors(st, optarg) <= 0) {
				fprintf(stderr, "harvest-inproc: no certificate in %s\n", optarg);
				return 1;
			}
			anchors++;
			break;
		case 'j': threads = atoi(optarg); break;
		case 'n': opt_messages = atol(optarg); break;
		case 't': opt_seconds = atof(optarg); break;
		case 'w': opt_warmup = atoi(optarg); break;
		case 'S': system = FALSE; break;
		case 'e': expect = optarg; break;
		case 'k': keys = TRUE; break;
		default: usage();
		}
	}
	if (optind >= argc || threads < 1 || opt_warmup < 0 || (opt_messages >= 0 && opt_seconds >= 0))
		usage();
	if (anchors == 0)
		fputs("harvest-inproc: warning: no -a: no chain can be trusted\n", stderr);
	if (opt_messages < 0 && opt_seconds < 0)
		opt_messages = 2000;
	X509_STORE_set_flags(st, X509_V_FLAG_PARTIAL_CHAIN);
	if (system && X509_STORE_set_default_paths(st) != 1)
		ERR_clear_error();

	g_mime_init();
	nmsgs = (guint)(argc - optind);
	msgs = g_new(Msg, nmsgs);
	for (guint i = 0; i < nmsgs; i++)
		msgs[i] = load(argv[optind + (int)i]);
	kms_harvest_options_init(&opts);
	opts.trust = st;

	bad = run(1, keys);
	if (threads > 1)
		bad += run(threads, keys);

	for (guint i = 0; i < nmsgs; i++)
		g_free(msgs[i].data);
	g_free(msgs);
	X509_STORE_free(st);
	g_mime_shutdown();
	return bad ? 1 : 0;
}
