/*
 * fileio.c - whole-file read and atomic write. See include/traind/fileio.h.
 */
#include "traind/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int file_read_all(const char *path, size_t max, uint8_t **out, size_t *len, struct tr_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	uint8_t *buf = NULL;
	size_t n = 0, cap = 0;
	struct stat st;
	int rc = 0;

	*out = NULL;
	*len = 0;
	if (fd < 0)
		return tr_err_set(err, -errno, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0) {
		rc = tr_err_set(err, -errno, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = tr_err_set(err, -EINVAL, "%s: not a regular file", path);
		goto out;
	}
	for (;;) {
		ssize_t r;

		if (max && n > max) {
			rc = tr_err_set(err, -EFBIG, "%s: too large (more than %zu bytes)", path, max);
			goto out;
		}
		if (cap - n < 65536) {
			size_t ncap = cap ? cap * 2 : 1 << 20;
			uint8_t *nb = realloc(buf, ncap);

			if (!nb) {
				rc = tr_err_set(err, -ENOMEM, "%s: out of memory", path);
				goto out;
			}
			buf = nb;
			cap = ncap;
		}
		r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = tr_err_set(err, -errno, "%s: %s", path, strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	*out = buf;
	*len = n;
	buf = NULL;
out:
	free(buf);
	close(fd);
	return rc;
}

int file_write_atomic(const char *path, const uint8_t *data, size_t len, struct tr_err *err)
{
	const char *slash = strrchr(path, '/');
	const char *base = slash ? slash + 1 : path;
	char dir[PATH_MAX], tmp[PATH_MAX + 300];
	size_t off = 0;
	mode_t mask;
	int fd, dfd, rc = 0;

	if (!*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
		return tr_err_set(err, -EISDIR, "'%s' does not name a file", path);
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == path)
		snprintf(dir, sizeof(dir), "/");
	else if ((size_t)(slash - path) >= sizeof(dir))
		return tr_err_set(err, -ENAMETOOLONG, "cannot write %s: %s", path, strerror(ENAMETOOLONG));
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	/* a hidden name beside the target; a long target name would not fit */
	if (strlen(base) <= 200)
		snprintf(tmp, sizeof(tmp), "%s/.%s.tmp-XXXXXX", dir, base);
	else
		snprintf(tmp, sizeof(tmp), "%s/.traind-write.tmp-XXXXXX", dir);
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return tr_err_set(err, -errno, "cannot write %s: cannot create a temporary file in %s: %s", path,
				  dir, strerror(errno));
	/* mkostemp makes 0600; give the file the mode a plain create would */
	mask = umask(0);
	umask(mask);
	if (fchmod(fd, 0666 & ~mask) < 0) {
		rc = tr_err_set(err, -errno, "cannot write %s: %s", tmp, strerror(errno));
		goto fail_close;
	}
	while (off < len) {
		ssize_t n = write(fd, data + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = tr_err_set(err, -errno, "cannot write %s: %s", tmp, strerror(errno));
			goto fail_close;
		}
		off += (size_t)n;
	}
	if (fsync(fd) < 0) {
		rc = tr_err_set(err, -errno, "cannot write %s: fsync: %s", tmp, strerror(errno));
		goto fail_close;
	}
	if (close(fd) < 0) {
		rc = tr_err_set(err, -errno, "cannot write %s: %s", tmp, strerror(errno));
		goto fail_unlink;
	}
	if (rename(tmp, path) < 0) {
		rc = tr_err_set(err, -errno, "cannot write %s: %s", path, strerror(errno));
		goto fail_unlink;
	}
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fsync(dfd) < 0)
		rc = tr_err_set(err, -errno, "wrote %s, but cannot sync its directory %s: %s", path, dir,
				strerror(errno));
	if (dfd >= 0)
		close(dfd);
	return rc;
fail_close:
	close(fd);
fail_unlink:
	unlink(tmp);
	return rc;
}
