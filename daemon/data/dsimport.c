/* dsimport.c - see daemon/data/dsimport.h. */
#include "daemon/data/dsimport.h"

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "traind/dataset.h"
#include "daemon/core/log.h"

bool dsimport_file_name_ok(const char *name)
{
	size_t n = strnlen(name, DSIMPORT_NAME_MAX + 1);

	if (n == 0 || n > DSIMPORT_NAME_MAX || name[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++)
		if (name[i] == '/' || (unsigned char)name[i] < 0x20 || name[i] == 0x7f)
			return false;
	return true;
}

static int fsync_path(const char *path, struct tr_err *err)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = 0;

	if (fd < 0)
		return tr_err_set(err, -errno, "%s: %s", path, strerror(errno));
	if (fsync(fd) < 0)
		rc = tr_err_set(err, -errno, "fsync %s: %s", path, strerror(errno));
	close(fd);
	return rc;
}

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return (type == FTW_DP ? rmdir(path) : unlink(path)) < 0 ? -1 : 0;
}

void dsimport_discard(const char *tmp)
{
	if (tmp && tmp[0])
		(void)nftw(tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Copy all of the regular file `in` (size bytes) into a new file at `path`,
 * fsync'ed. */
static int copy_fd(int in, uint64_t size, const char *path, const char *shown, struct tr_err *err)
{
	static const size_t chunk = 1 << 20;
	char *buf = malloc(chunk);
	uint64_t off = 0;
	int out = -1, rc = 0;

	if (!buf)
		return tr_err_set(err, -ENOMEM, "out of memory");
	out = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (out < 0) {
		rc = tr_err_set(err, -errno, "%s: %s", path, strerror(errno));
		goto out;
	}
	while (off < size) {
		size_t want = size - off < chunk ? (size_t)(size - off) : chunk;
		ssize_t got = pread(in, buf, want, (off_t)off);

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			rc = tr_err_set(err, errno == EBADF ? -EINVAL : -errno, "file %s: cannot read it: %s",
					shown, strerror(errno));
			goto out;
		}
		if (got == 0) {
			rc = tr_err_set(err, -EINVAL, "file %s: it shrank while being read (%" PRIu64
					" of %" PRIu64 " bytes)", shown, off, size);
			goto out;
		}
		for (ssize_t put = 0; put < got;) {
			ssize_t w = write(out, buf + put, (size_t)(got - put));

			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				rc = tr_err_set(err, -errno, "%s: %s", path, strerror(errno));
				goto out;
			}
			put += w;
		}
		off += (uint64_t)got;
	}
	if (fsync(out) < 0)
		rc = tr_err_set(err, -errno, "fsync %s: %s", path, strerror(errno));
out:
	if (out >= 0)
		close(out);
	free(buf);
	return rc;
}

int dsimport_vocab(const char *word, const char *const *names, size_t n, enum ds_vocab *out)
{
	bool txt = n > 0;

	*out = DS_VOCAB_NONE;
	if (word) {
		if (strcmp(word, "char") == 0)
			*out = DS_VOCAB_CHAR;
		else if (strcmp(word, "byte") == 0)
			*out = DS_VOCAB_BYTE;
		else
			return -EINVAL;
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(names[i]);

		txt = txt && len > 4 && strcmp(names[i] + len - 4, ".txt") == 0;
	}
	if (txt)
		*out = DS_VOCAB_CHAR;
	return 0;
}

/* A text's dataset.json in dir (fsync'ed): its vocabulary from the files. */
static int write_text_meta(const char *dir, const char *const *names, size_t n, enum ds_vocab vocab,
			   struct tr_err *err)
{
	char path[PATH_MAX], *json = NULL;
	int rc, fd;

	rc = dataset_text_meta(dir, names, n, vocab, 0.1, &json, err);
	if (rc < 0)
		return rc == -EFBIG ? -EINVAL : rc;
	snprintf(path, sizeof(path), "%s/dataset.json", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = tr_err_set(err, -errno, "%s: %s", path, strerror(errno));
		goto out;
	}
	for (size_t off = 0, len = strlen(json); off < len;) {
		ssize_t w = write(fd, json + off, len - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			rc = tr_err_set(err, -errno, "%s: %s", path, strerror(errno));
			break;
		}
		off += (size_t)w;
	}
	if (rc == 0 && fsync(fd) < 0)
		rc = tr_err_set(err, -errno, "fsync %s: %s", path, strerror(errno));
	close(fd);
out:
	free(json);
	return rc;
}

/* Name the dataset's files in err as the client knows them, not by the
 * temporary directory: "TMP/train.csv" -> "train.csv", "TMP: ..." -> "...". */
static void unname_tmp(struct tr_err *err, const char *tmp)
{
	char msg[TR_ERR_MSG_MAX];
	size_t n = strlen(tmp), o = 0;
	const char *p = err->msg;

	while (*p && o + 1 < sizeof(msg)) {
		if (strncmp(p, tmp, n) == 0) {
			p += n;
			if (*p == '/')
				p++;
			else if (p[0] == ':' && p[1] == ' ')
				p += 2;
			continue;
		}
		msg[o++] = *p++;
	}
	msg[o] = '\0';
	snprintf(err->msg, sizeof(err->msg), "%s", msg);
}

int dsimport_copy(const char *data_dir, const char *name, const char *const *names, const int *fds,
		  size_t n, bool replace, enum ds_vocab vocab, uint64_t max_bytes, char *tmp,
		  uint64_t *bytes, struct tr_err *err)
{
	char path[PATH_MAX];
	struct dataset *ds = NULL;
	uint64_t total = 0;
	uint64_t sizes[DSIMPORT_MAX_FILES];
	struct stat st;
	int rc = 0;

	tmp[0] = '\0';
	*bytes = 0;
	if (n == 0 || n > DSIMPORT_MAX_FILES)
		return tr_err_set(err, -EINVAL, "a dataset is 1 to %d files", DSIMPORT_MAX_FILES);
	for (size_t i = 0; i < n; i++) {
		if (fstat(fds[i], &st) < 0 || !S_ISREG(st.st_mode))
			return tr_err_set(err, -EINVAL, "file %s: not a regular file", names[i]);
		if ((fcntl(fds[i], F_GETFL) & O_ACCMODE) == O_WRONLY)
			return tr_err_set(err, -EINVAL, "file %s: not open for reading", names[i]);
		sizes[i] = (uint64_t)st.st_size;
		total += sizes[i];
	}
	*bytes = total;
	for (size_t i = 0; vocab != DS_VOCAB_NONE && i < n; i++)
		if (strcmp(names[i], "dataset.json") == 0)
			return tr_err_set(err, -EINVAL,
					  "file dataset.json: a text's dataset.json is written by the import (its vocabulary)");
	if (total > max_bytes)
		return tr_err_set(err, -EFBIG, "dataset %s: its files hold %" PRIu64 " bytes, more than "
				  "the %" PRIu64 " this traind accepts (--max-dataset-bytes)",
				  name, total, max_bytes);
	snprintf(path, sizeof(path), "%s/%s", data_dir, name);
	if (!replace && lstat(path, &st) == 0)
		return tr_err_set(err, -EEXIST, "dataset %s exists already (import --replace replaces it)",
				  name);
	/* the pid tells a later start whether this import is still going
	 * (dsimport_sweep) */
	snprintf(tmp, PATH_MAX, "%s/.tmp-%s-%ld-XXXXXX", data_dir, name, (long)getpid());
	if (!mkdtemp(tmp)) {
		rc = tr_err_set(err, -errno, "%s: cannot create a directory there: %s", data_dir,
				strerror(errno));
		tmp[0] = '\0';
		return rc;
	}
	chmod(tmp, 0755);
	for (size_t i = 0; i < n && rc == 0; i++) {
		snprintf(path, sizeof(path), "%s/%s", tmp, names[i]);
		rc = copy_fd(fds[i], sizes[i], path, names[i], err);
	}
	if (rc == 0 && vocab != DS_VOCAB_NONE) {
		rc = write_text_meta(tmp, names, n, vocab, err);
		if (rc < 0)
			unname_tmp(err, tmp);
	}
	if (rc == 0) {
		uint64_t needed = 0;

		/* what the files expand to (compressed ones), within the same limit */
		rc = dataset_load_limited(&ds, tmp, max_bytes, "--max-dataset-bytes", &needed, err);
		dataset_free(ds);
		if (rc < 0) {
			unname_tmp(err, tmp);
			if (rc == -EFBIG)
				*bytes = needed;
			else
				rc = err->code = -EINVAL;
		}
	}
	if (rc == 0)
		rc = fsync_path(tmp, err);
	if (rc < 0) {
		dsimport_discard(tmp);
		tmp[0] = '\0';
	}
	return rc;
}

int dsimport_commit(const char *data_dir, const char *tmp, const char *name, bool replace,
		    struct tr_err *err)
{
	char path[PATH_MAX];
	int rc;

	snprintf(path, sizeof(path), "%s/%s", data_dir, name);
	rc = renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE);
	if (rc < 0 && errno == EEXIST && replace) {
		/* the new files in, the old ones at tmp, in one step */
		rc = renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_EXCHANGE);
		if (rc == 0) {
			dsimport_discard(tmp);
			return fsync_path(data_dir, err);
		}
	}
	if (rc < 0 && errno == EEXIST)
		return tr_err_set(err, -EEXIST, "dataset %s exists already (import --replace replaces it)",
				  name);
	if (rc < 0)
		return tr_err_set(err, -errno, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
	return fsync_path(data_dir, err);
}

int dsimport_remove(const char *data_dir, const char *name, struct tr_err *err)
{
	char path[PATH_MAX], gone[PATH_MAX];
	struct stat st;
	int rc;

	snprintf(path, sizeof(path), "%s/%s", data_dir, name);
	if (lstat(path, &st) < 0 || !S_ISDIR(st.st_mode))
		return tr_err_set(err, -ENOENT, "no dataset %s", name);
	for (unsigned k = 0;; k++) {
		snprintf(gone, sizeof(gone), "%s/.rm-%s-%u-%u", data_dir, name, (unsigned)getpid(), k);
		rc = renameat2(AT_FDCWD, path, AT_FDCWD, gone, RENAME_NOREPLACE);
		if (rc == 0 || errno != EEXIST || k > 1000)
			break;
	}
	if (rc < 0)
		return tr_err_set(err, errno == ENOENT ? -ENOENT : -errno, "cannot remove dataset %s: %s",
				  name, strerror(errno));
	rc = fsync_path(data_dir, err);
	dsimport_discard(gone);
	return rc;
}

/* ---- leftovers of a crash ---------------------------------------------- */

static uint64_t swept_bytes;

static int add_size(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)path;
	(void)ftw;
	if (type == FTW_F)
		swept_bytes += (uint64_t)st->st_size;
	return 0;
}

/* ".tmp-NAME-PID-XXXXXX" (an import) or ".rm-NAME-PID-K" (a removal):
 * whether the traind that made it is gone. Without a pid (an older
 * traind's import, ".tmp-NAME-XXXXXX") it is. */
static bool leftover(const char *name)
{
	const char *last, *p;
	long pid = 0;

	if (strncmp(name, ".tmp-", 5) != 0 && strncmp(name, ".rm-", 4) != 0)
		return false;
	last = strrchr(name, '-');
	if (!last || last == name)
		return false;
	for (p = last - 1; p > name && *p != '-'; p--)
		;
	for (const char *q = p + 1; q < last; q++) {
		if (*q < '0' || *q > '9' || pid > 1L << 30)
			return strncmp(name, ".tmp-", 5) == 0;   /* no pid: an older traind's */
		pid = pid * 10 + (*q - '0');
	}
	if (pid <= 0 || pid == (long)getpid())
		return pid <= 0;
	return kill((pid_t)pid, 0) < 0 && errno == ESRCH;
}

unsigned dsimport_sweep(const char *data_dir)
{
	char path[PATH_MAX];
	struct dirent *de;
	unsigned n = 0;
	DIR *d = opendir(data_dir);

	if (!d)
		return 0;
	while ((de = readdir(d))) {
		struct stat st;

		if (!leftover(de->d_name))
			continue;
		snprintf(path, sizeof(path), "%s/%s", data_dir, de->d_name);
		if (lstat(path, &st) < 0 || !S_ISDIR(st.st_mode))
			continue;
		swept_bytes = 0;
		(void)nftw(path, add_size, 16, FTW_PHYS);
		dsimport_discard(path);
		if (lstat(path, &st) == 0) {
			log_warn("cannot remove %s, left by a dataset %s cut short: %s", path,
				 de->d_name[1] == 't' ? "import" : "removal", strerror(errno));
			continue;
		}
		log_notice("removed %s (%" PRIu64 " bytes), left by a dataset %s cut short", path, swept_bytes,
			   de->d_name[1] == 't' ? "import" : "removal");
		n++;
	}
	closedir(d);
	return n;
}
