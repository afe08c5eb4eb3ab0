/*
 * NAME
 *	lookup-bench - latency of the outbound decision: policies,
 *	certificate and capability lookup, negotiation
 * SYNOPSIS
 *	lookup-bench -c CONF [-n SAMPLES] [-r ROUNDS] [-w WARMUP]
 *	    [-N ADDRESSES] [-u UNKNOWN_PERCENT] [-s SIZES] [-S SEED]
 * DESCRIPTION
 *	Connects to the vault with CONF's [milter] dsn (the kms_milter role,
 *	as kmsmilter does) and times, on that one connection, in the
 *	process (no milter protocol):
 *
 *	  select1	PQexecParams("SELECT 1") through kms_db_run(): the
 *			libpq/socket/server floor of one round trip;
 *	  lookup	kms_recipient_lookup() of one address: the usable
 *			encryption certificate (SQL + DER parse + key usage)
 *			and, when found, the newest capabilities;
 *	  msgK		the whole decision for one message to K recipients,
 *			as kmsmilter's encryption job and kmsctl negotiate
 *			make it: kms_outbound_policies() (sender + every
 *			recipient: one statement), kms_outbound_certificates()
 *			(every recipient + the sender's own certificate: one
 *			statement) and, when a certificate was found,
 *			kms_outbound_negotiate() with the sender's
 *			certificate. Two round trips whatever K.
 *
 *	The vault is expected to hold the addresses bench/run-lookup.sh
 *	generates: uI@dJ.bench.test with I in 1..ADDRESSES and J = I % 1000;
 *	the sender of a message is a random address with I % 5 == 0 (the
 *	generated "own" users); recipients are drawn uniformly among the
 *	ADDRESSES, and UNKNOWN_PERCENT of them are addresses the vault does
 *	not know (nobodyI@dJ.bench.test).
 *
 *	Each round takes SAMPLES samples of every kind, interleaved (one of
 *	each kind in turn), after WARMUP untimed turns. Per round and kind it
 *	prints one line of key=value pairs: p50 p90 p99 max mean in
 *	microseconds, for msgK also the medians of the three steps and the
 *	share of recipients found and of messages negotiated.
 *
 *	Defaults: -n 5000 -r 3 -w 500 -N 500000 -u 5 -s 1,3,10 -S 1.
 * EXIT STATUS
 *	0; 1 on a database or configuration error, or when no lookup found
 *	a certificate (the data is not what the bench expects); 2 on usage.
 */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>
#include <libpq-fe.h>

#include "common/config.h"
#include "keyvault/db.h"
#include "keyvault/outbound.h"
#include "keyvault/recipients.h"

#define MAX_SIZES 8
#define MAX_RCPTS 64

enum { K_SELECT1, K_LOOKUP, K_MSG0 };

typedef struct {
	char name[16];
	int size;		/* recipients per message; 0: not a message */
	double *t;		/* microseconds, one per sample */
	double *t_pol, *t_cert, *t_neg;
	long rcpts, found, negotiated, messages;
} Kind;

static int opt_samples = 5000, opt_rounds = 3, opt_warmup = 500;
static long opt_addresses = 500000;
static int opt_unknown = 5;
static guint32 opt_seed = 1;

static double
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void
die(const char *what, GError *e)
{
	fprintf(stderr, "lookup-bench: %s: %s\n", what, e ? e->message : "failed");
	exit(1);
}

static char *
random_rcpt(GRand *rnd)
{
	long i = g_rand_int_range(rnd, 1, (gint32)opt_addresses + 1);

	if (g_rand_int_range(rnd, 0, 100) < opt_unknown)
		return g_strdup_printf("nobody%ld@d%ld.bench.test", i, i % 1000);
	return g_strdup_printf("u%ld@d%ld.bench.test", i, i % 1000);
}

static char *
random_sender(GRand *rnd)
{
	long i = 5 * (long)g_rand_int_range(rnd, 1, (gint32)(opt_addresses / 5) + 1);

	return g_strdup_printf("u%ld@d%ld.bench.test", i, i % 1000);
}

static void
do_select1(PGconn *c)
{
	g_autoptr(GError) e = NULL;
	g_autoptr(PGresult) r = kms_db_run(c, "SELECT 1", NULL, &e);

	if (r == NULL)
		die("SELECT 1", e);
}

static void
do_lookup(PGconn *c, GRand *rnd, Kind *k)
{
	g_autofree char *a = random_rcpt(rnd);
	g_autoptr(GError) e = NULL;
	g_autoptr(KmsRecipient) r = NULL;

	if (!kms_recipient_lookup(c, a, FALSE, &r, &e))
		die("kms_recipient_lookup", e);
	k->rcpts++;
	if (r)
		k->found++;
}

/* One message; returns the three steps' times in P, C, N. */
static void
do_message(PGconn *c, const KmsConfig *cfg, GRand *rnd, Kind *k, double *p, double *cc,
    double *n)
{
	g_autofree char *from = random_sender(rnd);
	char *rcpts[MAX_RCPTS];
	g_autoptr(KmsOutbound) o = NULL;
	g_autoptr(KmsNegotiateResult) res = NULL;
	g_autoptr(GPtrArray) blockers = NULL;
	g_autoptr(GError) e = NULL;
	double t0, t1, t2, t3;

	for (int i = 0; i < k->size; i++)
		rcpts[i] = random_rcpt(rnd);
	t0 = now_us();
	if ((o = kms_outbound_policies(c, cfg, from, (const char *const *)rcpts, k->size, &e)) == NULL)
		die("kms_outbound_policies", e);
	t1 = now_us();
	if (!kms_outbound_certificates(c, o, &e))
		die("kms_outbound_certificates", e);
	t2 = now_us();
	if (o->found->len > 0)
		res = kms_outbound_negotiate(o, TRUE, &blockers, &e);
	t3 = now_us();
	*p = t1 - t0;
	*cc = t2 - t1;
	*n = t3 - t2;
	k->rcpts += o->rcpts->len;
	k->found += o->found->len;
	k->messages++;
	if (res)
		k->negotiated++;
	for (int i = 0; i < k->size; i++)
		g_free(rcpts[i]);
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of the sorted V (N values). */
static double
pct(const double *v, int n, double q)
{
	int i = (int)(q * n + 0.999999) - 1;

	return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

static double
median_of(double *v, int n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return pct(v, n, 0.5);
}

static void
report(int round, Kind *k)
{
	double sum = 0;
	int n = opt_samples;

	for (int i = 0; i < n; i++)
		sum += k->t[i];
	qsort(k->t, n, sizeof(double), cmp_double);
	printf("round=%d kind=%s samples=%d p50=%.1f p90=%.1f p99=%.1f max=%.1f mean=%.1f", round,
	    k->name, n, pct(k->t, n, 0.5), pct(k->t, n, 0.9), pct(k->t, n, 0.99), k->t[n - 1],
	    sum / n);
	if (k->size > 0)
		printf(" policies_p50=%.1f certificates_p50=%.1f negotiate_p50=%.1f"
		    " found=%.3f negotiated=%.3f", median_of(k->t_pol, n), median_of(k->t_cert, n),
		    median_of(k->t_neg, n), k->rcpts ? (double)k->found / k->rcpts : 0,
		    k->messages ? (double)k->negotiated / k->messages : 0);
	else if (k->rcpts)
		printf(" found=%.3f", (double)k->found / k->rcpts);
	printf("\n");
	fflush(stdout);
}

int
main(int argc, char **argv)
{
	const char *conf = NULL, *sizes = "1,3,10";
	g_autoptr(GError) e = NULL;
	KmsConfig *cfg;
	PGconn *c;
	Kind kinds[2 + MAX_SIZES];
	int nk = 0, opt;
	GRand *rnd;
	long found_total = 0;

	while ((opt = getopt(argc, argv, "c:n:r:w:N:u:s:S:")) != -1) {
		switch (opt) {
		case 'c': conf = optarg; break;
		case 'n': opt_samples = atoi(optarg); break;
		case 'r': opt_rounds = atoi(optarg); break;
		case 'w': opt_warmup = atoi(optarg); break;
		case 'N': opt_addresses = atol(optarg); break;
		case 'u': opt_unknown = atoi(optarg); break;
		case 's': sizes = optarg; break;
		case 'S': opt_seed = (guint32)strtoul(optarg, NULL, 10); break;
		default: goto usage;
		}
	}
	if (conf == NULL || opt_samples < 1 || opt_rounds < 1 || opt_warmup < 0 ||
	    opt_addresses < 5 || opt_addresses > G_MAXINT32 - 1 || opt_unknown < 0 ||
	    opt_unknown > 100 || optind != argc)
		goto usage;

	memset(kinds, 0, sizeof(kinds));
	g_strlcpy(kinds[nk++].name, "select1", sizeof(kinds[0].name));
	g_strlcpy(kinds[nk++].name, "lookup", sizeof(kinds[0].name));
	{
		g_auto(GStrv) s = g_strsplit(sizes, ",", -1);

		for (int i = 0; s[i]; i++) {
			int v = atoi(s[i]);

			if (v < 1 || v > MAX_RCPTS || nk == 2 + MAX_SIZES)
				goto usage;
			kinds[nk].size = v;
			g_snprintf(kinds[nk].name, sizeof(kinds[nk].name), "msg%d", v);
			nk++;
		}
	}
	for (int i = 0; i < nk; i++) {
		kinds[i].t = g_new(double, opt_samples);
		kinds[i].t_pol = g_new(double, opt_samples);
		kinds[i].t_cert = g_new(double, opt_samples);
		kinds[i].t_neg = g_new(double, opt_samples);
	}

	if ((cfg = kms_config_load(conf, &e)) == NULL)
		die(conf, e);
	if ((c = kms_db_connect(kms_config_dsn(cfg, "milter"), "lookup-bench", &e)) == NULL)
		die("connect", e);
	rnd = g_rand_new_with_seed(opt_seed);

	for (int round = 0; round <= opt_rounds; round++) {
		/* round 0 is the warm-up */
		int n = round == 0 ? opt_warmup : opt_samples;

		for (int k = 0; k < nk; k++)
			kinds[k].rcpts = kinds[k].found = kinds[k].negotiated = kinds[k].messages = 0;
		for (int s = 0; s < n; s++) {
			for (int k = 0; k < nk; k++) {
				Kind *kd = &kinds[k];
				double t0 = now_us(), p = 0, cc = 0, ng = 0;

				if (k == K_SELECT1)
					do_select1(c);
				else if (k == K_LOOKUP)
					do_lookup(c, rnd, kd);
				else
					do_message(c, cfg, rnd, kd, &p, &cc, &ng);
				if (round == 0)
					continue;
				kd->t[s] = now_us() - t0;
				kd->t_pol[s] = p;
				kd->t_cert[s] = cc;
				kd->t_neg[s] = ng;
			}
		}
		if (round == 0)
			continue;
		for (int k = 0; k < nk; k++) {
			found_total += kinds[k].found;
			report(round, &kinds[k]);
		}
	}

	for (int i = 0; i < nk; i++) {
		g_free(kinds[i].t);
		g_free(kinds[i].t_pol);
		g_free(kinds[i].t_cert);
		g_free(kinds[i].t_neg);
	}
	g_rand_free(rnd);
	PQfinish(c);
	kms_config_free(cfg);
	if (found_total == 0) {
		fprintf(stderr, "lookup-bench: no lookup found a certificate: not the generated vault?\n");
		return 1;
	}
	return 0;
usage:
	fprintf(stderr, "usage: lookup-bench -c CONF [-n SAMPLES] [-r ROUNDS] [-w WARMUP]"
	    " [-N ADDRESSES] [-u UNKNOWN_PERCENT] [-s SIZES] [-S SEED]\n");
	return 2;
}
