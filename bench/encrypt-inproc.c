/*
 * NAME
 *	encrypt-inproc - the in-process bound for encryption throughput
 * SYNOPSIS
 *	encrypt-inproc -C CERT.pem [-C ...] [-a ALGORITHM] [-m kms|raw]
 *	    [-j THREADS] [-n MESSAGES | -t SECONDS] [-w WARMUP] [-k] FILE
 * DESCRIPTION
 *	Reads the RFC 5322 message FILE once and encrypts it in a loop to
 *	the recipients' certificates CERT.pem (one certificate each), with
 *	no milter protocol, no spool and no database: the bound kmsmilter's
 *	encryption is compared with.
 *
 *	-m kms (default): what kmsmilter's encryption job calls per message,
 *	kms_smime_entity_from_message() (the canonical inner entity) then
 *	kms_smime_encrypt() (smime/encrypt.h: CMS_encrypt, RSA PKCS#1 v1.5
 *	key transport for each recipient, DER, base64 in 76-column lines).
 *	-m raw: the entity is built once; each iteration is OpenSSL's
 *	CMS_encrypt() with the cipher of ALGORITHM (CBC only) and CMS_BINARY
 *	and i2d_CMS_bio() into memory: the least any S/MIME encryption of
 *	that entity costs.
 *
 *	It runs once with one thread and, when -j THREADS is more than 1,
 *	again with THREADS threads (kmsmilter runs one thread per
 *	connection). -n MESSAGES: total per run (default 2000); -t SECONDS:
 *	duration per run. -w WARMUP: messages encrypted before each run.
 *	-a ALGORITHM: as in [policy] algorithms (default aes256-cbc, what
 *	kmsmilter chooses for recipients that announced no capabilities).
 *	-k: one key=value line per run for scripts.
 *	It tunes the allocator as kmsmilter does (kms_daemon_tune_malloc).
 * SECURITY
 *	A benchmark: public keys only.
 * DIAGNOSTICS
 *	Exit 1 with a message when an encryption fails, 2 on usage errors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "common/daemon.h"
#include "smime/encrypt.h"

static char *msg;
static gsize msglen;
static GBytes *entity;		/* built once, for -m raw */
static KmsEncryptRecipient *rcpts;
static STACK_OF(X509) *certs;
static gsize nrcpts;
static const char *algorithm = "aes256-cbc";
static const EVP_CIPHER *cipher;
static gboolean raw;
static long opt_messages = -1;
static double opt_seconds = -1;
static int opt_warmup = 20;

static gint next_msg;
static gint64 deadline_us;	/* monotonic; 0: count mode */
static gint failures;
static gint out_bytes;	/* size of the last result (DER or base64) */

static void
usage(void)
{
	fputs("usage: encrypt-inproc -C CERT.pem [-C ...] [-a ALGORITHM] [-m kms|raw] [-j THREADS]\n"
	    "                      [-n MESSAGES | -t SECONDS] [-w WARMUP] [-k] FILE\n", stderr);
	exit(2);
}

static double
cpu_seconds(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	    (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* One encryption of the message; FALSE on failure (reported once). */
static gboolean
encrypt_once(void)
{
	if (raw) {
		gsize len;
		const void *p = g_bytes_get_data(entity, &len);
		BIO *in = BIO_new_mem_buf(p, (int)len), *out = BIO_new(BIO_s_mem());
		CMS_ContentInfo *cms = in && out ? CMS_encrypt(certs, in, cipher, CMS_BINARY) : NULL;
		gboolean ok = cms != NULL && i2d_CMS_bio(out, cms) == 1;

		if (ok)
			g_atomic_int_set(&out_bytes, (gint)BIO_pending(out));
		else if (g_atomic_int_add(&failures, 1) == 0)
			ERR_print_errors_fp(stderr);
		CMS_ContentInfo_free(cms);
		BIO_free(in);
		BIO_free(out);
		return ok;
	} else {
		g_autoptr(GError) e = NULL;
		g_autoptr(GBytes) ent = kms_smime_entity_from_message(msg, msglen, 0, &e);
		KmsEncrypted *r = ent ? kms_smime_encrypt(ent, rcpts, nrcpts, algorithm, NULL, 0, &e) : NULL;

		if (r == NULL) {
			if (g_atomic_int_add(&failures, 1) == 0)
				fprintf(stderr, "encrypt-inproc: %s\n", e ? e->message : "?");
			return FALSE;
		}
		g_atomic_int_set(&out_bytes, (gint)g_bytes_get_size(r->body));
		kms_encrypted_free(r);
		return TRUE;
	}
}

static gpointer
worker(gpointer data)
{
	long *done = data;

	for (int i = 0; i < opt_warmup; i++)
		if (!encrypt_once())
			return NULL;
	for (;;) {
		gint i = g_atomic_int_add(&next_msg, 1);

		if (deadline_us == 0 ? i >= opt_messages : g_get_monotonic_time() >= deadline_us)
			break;
		if (!encrypt_once())
			break;
		(*done)++;
	}
	return NULL;
}

static int
run(int n, gboolean keys)
{
	GThread **th = g_new(GThread *, n);
	long *counts = g_new0(long, n), done = 0;
	double t0, elapsed, cpu;

	next_msg = 0;
	/* warm-up happens inside the threads; the clock covers it only in
	 * count mode, so keep it short there */
	t0 = (double)g_get_monotonic_time() / 1e6;
	cpu = cpu_seconds();
	deadline_us = opt_seconds > 0 ? g_get_monotonic_time() + (gint64)(opt_seconds * 1e6) : 0;
	for (int i = 0; i < n; i++)
		th[i] = g_thread_new("enc", worker, &counts[i]);
	for (int i = 0; i < n; i++) {
		g_thread_join(th[i]);
		done += counts[i];
	}
	elapsed = (double)g_get_monotonic_time() / 1e6 - t0;
	cpu = cpu_seconds() - cpu;
	printf("%ld messages in %.3f s with %d thread%s (%s, %s, %zu recipients): %.1f messages/s;"
	    " CPU %.1f us/message; output %d bytes\n", done, elapsed, n,
	    n == 1 ? "" : "s", raw ? "raw CMS_encrypt" : "kms_smime_encrypt", algorithm, nrcpts,
	    done / elapsed, done ? cpu * 1e6 / done : 0.0, g_atomic_int_get(&out_bytes));
	if (keys)
		printf("result: mode=%s threads=%d messages=%ld seconds=%.4f rate=%.2f cpu_us=%.1f"
		    " failures=%d\n", raw ? "raw" : "kms", n, done, elapsed, done / elapsed,
		    done ? cpu * 1e6 / done : 0.0, failures);
	g_free(th);
	g_free(counts);
	return failures ? 1 : 0;
}

int
main(int argc, char **argv)
{
	g_autoptr(GError) e = NULL;
	GPtrArray *paths = g_ptr_array_new();
	int c, threads = 1, rc;
	gboolean keys = FALSE;

	kms_daemon_tune_malloc();	/* as kmsmilter: the same allocator settings */
	while ((c = getopt(argc, argv, "C:a:m:j:n:t:w:k")) != -1) {
		switch (c) {
		case 'C': g_ptr_array_add(paths, optarg); break;
		case 'a': algorithm = optarg; break;
		case 'm':
			if (strcmp(optarg, "raw") == 0)
				raw = TRUE;
			else if (strcmp(optarg, "kms") != 0)
				usage();
			break;
		case 'j': threads = atoi(optarg); break;
		case 'n': opt_messages = atol(optarg); break;
		case 't': opt_seconds = atof(optarg); break;
		case 'w': opt_warmup = atoi(optarg); break;
		case 'k': keys = TRUE; break;
		default: usage();
		}
	}
	if (argc - optind != 1 || paths->len == 0 || threads < 1 || (opt_messages >= 0 && opt_seconds >= 0))
		usage();
	if (opt_messages < 0 && opt_seconds < 0)
		opt_messages = 2000;
	if (!g_file_get_contents(argv[optind], &msg, &msglen, &e)) {
		fprintf(stderr, "encrypt-inproc: %s\n", e->message);
		return 1;
	}
	nrcpts = paths->len;
	rcpts = g_new0(KmsEncryptRecipient, nrcpts);
	certs = sk_X509_new_null();
	for (guint i = 0; i < paths->len; i++) {
		const char *path = g_ptr_array_index(paths, i);
		FILE *f = fopen(path, "r");
		X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;

		if (f)
			fclose(f);
		if (x == NULL) {
			fprintf(stderr, "encrypt-inproc: %s: no certificate\n", path);
			return 1;
		}
		rcpts[i].cert = x;
		rcpts[i].transport = KMS_NEGOTIATE_RSA_PKCS1;
		sk_X509_push(certs, x);
	}
	entity = kms_smime_entity_from_message(msg, msglen, 0, &e);
	if (entity == NULL) {
		fprintf(stderr, "encrypt-inproc: %s\n", e->message);
		return 1;
	}
	if (raw) {
		static const char *const names[][2] = {
			{"aes256-cbc", "AES-256-CBC"}, {"aes192-cbc", "AES-192-CBC"},
			{"aes128-cbc", "AES-128-CBC"}, {"des-ede3-cbc", "DES-EDE3-CBC"},
		};

		for (gsize i = 0; i < G_N_ELEMENTS(names); i++)
			if (g_ascii_strcasecmp(algorithm, names[i][0]) == 0)
				cipher = EVP_get_cipherbyname(names[i][1]);
		if (cipher == NULL) {
			fprintf(stderr, "encrypt-inproc: -m raw: %s is not a CBC cipher OpenSSL knows\n", algorithm);
			return 2;
		}
	}
	rc = run(1, keys);
	if (rc == 0 && threads > 1)
		rc = run(threads, keys);
	g_bytes_unref(entity);
	sk_X509_pop_free(certs, X509_free);
	g_free(rcpts);
	g_free(msg);
	g_ptr_array_free(paths, TRUE);
	return rc;
}
