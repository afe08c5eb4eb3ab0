/*
 * NAME
 *	secret - buffers for keys and passwords, and reading passwords
 * DESCRIPTION
 *	A KmsSecret lives in OpenSSL's secure heap (mlock'ed, excluded from core
 *	dumps, guard pages) when kms_secmem_init() could set it up, else in
 *	ordinary memory; either way it is wiped with OPENSSL_cleanse when freed.
 *	Passwords come from a file (one line, a single trailing newline ignored)
 *	or from the terminal with echo off; never from the command line.
 * SECURITY
 *	Holds secrets. Never log a KmsSecret's contents or length-revealing text.
 * DIAGNOSTICS
 *	GError in KMS_SECRET_ERROR with one line naming the file or terminal.
 */
#ifndef KMS_SECRET_H
#define KMS_SECRET_H

#include <glib.h>
#include <stddef.h>

#define KMS_SECRET_ERROR (kms_secret_error_quark())
GQuark kms_secret_error_quark(void);

typedef struct {
	unsigned char *data;
	size_t len;
} KmsSecret;

/* Set up the secure heap and make the process non-dumpable. Returns FALSE
 * (and the process continues with ordinary memory) where mlock is refused. */
gboolean kms_secmem_init(void);

/* A zeroed secret of LEN bytes; caller frees with kms_secret_free. */
KmsSecret *kms_secret_new(size_t len);
KmsSecret *kms_secret_dup(const unsigned char *data, size_t len);
/* Wipes and frees; returns NULL. */
KmsSecret *kms_secret_free(KmsSecret *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KmsSecret, kms_secret_free)

/* Fill BUF with LEN bytes from the OS CSPRNG (OpenSSL RAND_priv_bytes). */
gboolean kms_random(unsigned char *buf, size_t len, GError **err);

/* Read a password from FILE; or, when FILE is NULL and stdin is a terminal,
 * prompt with PROMPT (twice when CONFIRM). Empty passwords are refused.
 * Returns a new secret (not NUL-terminated in len; data[len] is 0). */
KmsSecret *kms_password_read(const char *file, const char *prompt, gboolean confirm,
    GError **err);

#endif
