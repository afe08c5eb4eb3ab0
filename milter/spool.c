/*
 * NAME
 *	spool - memory, then an unlinked temporary file (see spool.h)
 */
#include "autoconfig.h"
#include "spool.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct kms_spool {
	GByteArray *mem;	/* NULL once moved to the file */
	int fd;
	gsize size, memory, limit;
	char *dir;
	gboolean full;
};

KmsSpool *
kms_spool_new(gsize memory, gsize limit, const char *dir)
{
	KmsSpool *s = g_new0(KmsSpool, 1);

	s->mem = g_byte_array_new();
	s->fd = -1;
	s->memory = memory;
	s->limit = limit;
	s->dir = g_strdup(dir ? dir : g_get_tmp_dir());
	return s;
}

KmsSpool *
kms_spool_free(KmsSpool *s)
{
	if (s == NULL)
		return NULL;
	if (s->mem)
		g_byte_array_unref(s->mem);
	if (s->fd >= 0)
		close(s->fd);
	g_free(s->dir);
	g_free(s);
	return NULL;
}

static gboolean
write_all(int fd, const guint8 *p, gsize len, GError **err)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			g_set_error(err, G_FILE_ERROR, g_file_error_from_errno(errno),
			    "cannot write the spool file: %s", g_strerror(errno));
			return FALSE;
		}
		p += n;
		len -= (gsize)n;
	}
	return TRUE;
}

/* Move what is in memory to a fresh unlinked file. */
static gboolean
to_file(KmsSpool *s, GError **err)
{
	g_autofree char *tmpl = g_build_filename(s->dir, "kmsmilter.XXXXXX", NULL);
	int fd;

#ifdef O_TMPFILE
	fd = open(s->dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0)
#endif
	{
		fd = g_mkstemp_full(tmpl, O_RDWR | O_CLOEXEC, 0600);
		if (fd >= 0)
			(void)unlink(tmpl);
	}
	if (fd < 0) {
		g_set_error(err, G_FILE_ERROR, g_file_error_from_errno(errno),
		    "cannot create a spool file in %s: %s", s->dir, g_strerror(errno));
		return FALSE;
	}
	if (!write_all(fd, s->mem->data, s->mem->len, err)) {
		close(fd);
		return FALSE;
	}
	g_byte_array_unref(s->mem);
	s->mem = NULL;
	s->fd = fd;
	return TRUE;
}

gboolean
kms_spool_append(KmsSpool *s, const void *data, gsize len, GError **err)
{
	if (s->full || len > s->limit - s->size) {
		s->full = TRUE;
		return FALSE;
	}
	if (s->mem && s->mem->len + len > s->memory && !to_file(s, err))
		return FALSE;
	if (s->mem)
		g_byte_array_append(s->mem, data, (guint)len);
	else if (!write_all(s->fd, data, len, err))
		return FALSE;
	s->size += len;
	return TRUE;
}

gsize
kms_spool_size(const KmsSpool *s)
{
	return s->size;
}

gboolean
kms_spool_full(const KmsSpool *s)
{
	return s->full;
}

const guint8 *
kms_spool_memory(const KmsSpool *s)
{
	return s->mem ? s->mem->data : NULL;
}

int
kms_spool_fd(const KmsSpool *s)
{
	return s->fd;
}
