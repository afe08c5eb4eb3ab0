/*
 * NAME
 *	secret - secure-heap buffers and password input (see secret.h)
 * SECURITY
 *	Every path that copies a password or key wipes the copy it leaves.
 */
#include "autoconfig.h"
#include "secret.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>
#ifdef HAVE_PRCTL
#include <sys/prctl.h>
#endif

#include <openssl/crypto.h>
#include <openssl/rand.h>

G_DEFINE_QUARK(kms-secret-error-quark, kms_secret_error)

/* Longest password accepted from a file or terminal. */
#define KMS_PASSWORD_MAX 1024

gboolean
kms_secmem_init(void)
{
#ifdef HAVE_PRCTL
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
#endif
	if (CRYPTO_secure_malloc_initialized())
		return TRUE;
	/* 64 KiB is ample for a vault key, a CA key's DER and passwords. */
	return CRYPTO_secure_malloc_init(64 * 1024, 16) == 1;
}

KmsSecret *
kms_secret_new(size_t len)
{
	KmsSecret *s = g_new0(KmsSecret, 1);

	/* One spare byte so text secrets are NUL-terminated. */
	s->data = OPENSSL_secure_zalloc(len + 1);
	if (s->data == NULL)
		g_error("out of secure memory");
	s->len = len;
	return s;
}

KmsSecret *
kms_secret_dup(const unsigned char *data, size_t len)
{
	KmsSecret *s = kms_secret_new(len);

	memcpy(s->data, data, len);
	return s;
}

KmsSecret *
kms_secret_free(KmsSecret *s)
{
	if (s == NULL)
		return NULL;
	OPENSSL_secure_clear_free(s->data, s->len + 1);
	g_free(s);
	return NULL;
}

gboolean
kms_random(unsigned char *buf, size_t len, GError **err)
{
	if (RAND_priv_bytes(buf, (int)len) != 1) {
		g_set_error(err, KMS_SECRET_ERROR, 0, "the random number generator failed");
		return FALSE;
	}
	return TRUE;
}

static KmsSecret *
password_from_file(const char *file, GError **err)
{
	unsigned char buf[KMS_PASSWORD_MAX + 2];
	size_t n = 0;
	ssize_t r;
	int fd;
	KmsSecret *s = NULL;

	fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		g_set_error(err, KMS_SECRET_ERROR, 0, "cannot read password file %s: %s",
		    file, g_strerror(errno));
		return NULL;
	}
	while (n < sizeof(buf) && (r = read(fd, buf + n, sizeof(buf) - n)) != 0) {
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			g_set_error(err, KMS_SECRET_ERROR, 0, "cannot read password file %s: %s",
			    file, g_strerror(errno));
			goto out;
		}
		n += (size_t)r;
	}
	if (n > 0 && buf[n - 1] == '\n')
		n--;
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	if (n > KMS_PASSWORD_MAX) {
		g_set_error(err, KMS_SECRET_ERROR, 0, "password file %s: longer than %d bytes",
		    file, KMS_PASSWORD_MAX);
		goto out;
	}
	if (memchr(buf, '\n', n) != NULL) {
		g_set_error(err, KMS_SECRET_ERROR, 0,
		    "password file %s: must hold one line", file);
		goto out;
	}
	if (n == 0) {
		g_set_error(err, KMS_SECRET_ERROR, 0, "password file %s is empty", file);
		goto out;
	}
	s = kms_secret_dup(buf, n);
out:
	OPENSSL_cleanse(buf, sizeof(buf));
	close(fd);
	return s;
}

/* Prompt on the controlling terminal with echo off. */
static KmsSecret *
password_prompt(const char *prompt, GError **err)
{
	unsigned char buf[KMS_PASSWORD_MAX + 2];
	struct termios old, quiet;
	size_t n = 0;
	FILE *tty;
	int c;
	KmsSecret *s = NULL;

	tty = fopen("/dev/tty", "r+e");
	if (tty == NULL) {
		g_set_error(err, KMS_SECRET_ERROR, 0,
		    "no terminal to ask for the password: give a password file");
		return NULL;
	}
	setvbuf(tty, NULL, _IONBF, 0);
	fprintf(tty, "%s", prompt);
	tcgetattr(fileno(tty), &old);
	quiet = old;
	quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
	quiet.c_lflag |= ICANON;
	tcsetattr(fileno(tty), TCSAFLUSH, &quiet);
	while ((c = fgetc(tty)) != EOF && c != '\n') {
		if (n < sizeof(buf))
			buf[n++] = (unsigned char)c;
	}
	tcsetattr(fileno(tty), TCSAFLUSH, &old);
	fprintf(tty, "\n");
	fclose(tty);
	if (n > KMS_PASSWORD_MAX)
		g_set_error(err, KMS_SECRET_ERROR, 0, "password longer than %d bytes",
		    KMS_PASSWORD_MAX);
	else if (n == 0)
		g_set_error(err, KMS_SECRET_ERROR, 0, "empty password refused");
	else
		s = kms_secret_dup(buf, n);
	OPENSSL_cleanse(buf, sizeof(buf));
	return s;
}

KmsSecret *
kms_password_read(const char *file, const char *prompt, gboolean confirm, GError **err)
{
	KmsSecret *a, *b;
	g_autofree char *again = NULL;

	if (file != NULL)
		return password_from_file(file, err);
	if (!isatty(STDIN_FILENO)) {
		g_set_error(err, KMS_SECRET_ERROR, 0,
		    "no password file given and standard input is not a terminal");
		return NULL;
	}
	a = password_prompt(prompt, err);
	if (a == NULL || !confirm)
		return a;
	again = g_strdup_printf("Again: ");
	b = password_prompt(again, err);
	if (b == NULL)
		return kms_secret_free(a);
	if (a->len != b->len || CRYPTO_memcmp(a->data, b->data, a->len) != 0) {
		g_set_error(err, KMS_SECRET_ERROR, 0, "the two passwords differ");
		a = kms_secret_free(a);
	}
	kms_secret_free(b);
	return a;
}
