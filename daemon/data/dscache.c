/* dscache.c - see daemon/data/dscache.h. */
#include "daemon/data/dscache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "traind/config.h"
#include "traind/sha256.h"

struct entry {
	char name[CFG_NAME_MAX];
	char digest[DSCACHE_DIGEST_MAX]; /* the files' digest it was asked for ("": not given) */
	struct dataset *ds;       /* NULL while loading */
	int refs;
	bool loading;
	struct entry *next;
};

/* A remembered Datasets answer (dscache_memo_*). */
struct memo {
	char name[CFG_NAME_MAX];
	char digest[DSCACHE_DIGEST_MAX];
	json_t *info;             /* owned */
	uint64_t used;            /* when set or last read (the memo clock) */
};

struct dscache {
	char dir[PATH_MAX];       /* the data directory, resolved */
	pthread_mutex_t mu;       /* guards the entries and the memos */
	struct memo memos[DSCACHE_MEMO_MAX];
	uint64_t memo_clock;
	pthread_cond_t loaded;
	struct entry *entries;
	uint64_t max_bytes;       /* a load's limit in memory (0: the machine's) */
	const char *limit_name;
};

int dscache_new(struct dscache **out, const char *data_dir)
{
	struct dscache *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	if (!realpath(data_dir, c->dir))
		snprintf(c->dir, sizeof(c->dir), "%s", data_dir);
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->loaded, NULL);
	*out = c;
	return 0;
}

void dscache_set_limit(struct dscache *c, uint64_t max_bytes, const char *limit_name)
{
	c->max_bytes = max_bytes;
	c->limit_name = limit_name;
}

void dscache_free(struct dscache *c)
{
	if (!c)
		return;
	while (c->entries) {
		struct entry *e = c->entries;

		c->entries = e->next;
		dataset_free(e->ds);
		free(e);
	}
	for (size_t i = 0; i < DSCACHE_MEMO_MAX; i++)
		json_decref(c->memos[i].info);
	free(c);
}

json_t *dscache_memo_get(struct dscache *c, const char *name, const char *digest)
{
	json_t *out = NULL;

	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < DSCACHE_MEMO_MAX; i++) {
		struct memo *m = &c->memos[i];

		if (m->info && strcmp(m->name, name) == 0 && strcmp(m->digest, digest) == 0) {
			out = json_deep_copy(m->info);
			m->used = ++c->memo_clock;
			break;
		}
	}
	pthread_mutex_unlock(&c->mu);
	return out;
}

void dscache_memo_set(struct dscache *c, const char *name, const char *digest, const json_t *info)
{
	json_t *copy = json_deep_copy(info);
	struct memo *slot = NULL;

	if (!copy)
		return;   /* out of memory: only not remembered */
	pthread_mutex_lock(&c->mu);
	/* the name's slot (another digest: its files changed), else a free
	 * one, else the least recently used */
	for (size_t i = 0; i < DSCACHE_MEMO_MAX && !slot; i++)
		if (c->memos[i].info && strcmp(c->memos[i].name, name) == 0)
			slot = &c->memos[i];
	for (size_t i = 0; i < DSCACHE_MEMO_MAX && !slot; i++)
		if (!c->memos[i].info)
			slot = &c->memos[i];
	if (!slot) {
		slot = &c->memos[0];
		for (size_t i = 1; i < DSCACHE_MEMO_MAX; i++)
			if (c->memos[i].used < slot->used)
				slot = &c->memos[i];
	}
	json_decref(slot->info);
	snprintf(slot->name, sizeof(slot->name), "%s", name);
	snprintf(slot->digest, sizeof(slot->digest), "%s", digest);
	slot->info = copy;
	slot->used = ++c->memo_clock;
	pthread_mutex_unlock(&c->mu);
}

/* DATA_DIR/name, resolved, must be a directory strictly inside DATA_DIR. */
static int resolve(struct dscache *c, const char *name, char *out, struct tr_err *err)
{
	char path[PATH_MAX + CFG_NAME_MAX + 2];
	size_t n = strlen(c->dir);

	if (!config_dataset_name_ok(name))
		return tr_err_set(err, -EINVAL, "dataset: '%.64s' is not a dataset name", name);
	snprintf(path, sizeof(path), "%s/%s", c->dir, name);
	if (!realpath(path, out))
		return tr_err_set(err, -ENOENT, "dataset '%s': no directory %s", name, path);
	if (strncmp(out, c->dir, n) != 0 || out[n] != '/')
		return tr_err_set(err, -EINVAL, "dataset '%s': %s resolves outside the data directory %s",
				  name, path, c->dir);
	return 0;
}

int dscache_get(struct dscache *c, const char *name, const char *digest, const struct dataset **out,
		struct tr_err *err)
{
	char real[PATH_MAX];
	struct entry *e;
	struct dataset *ds = NULL;
	int rc;

	pthread_mutex_lock(&c->mu);
	for (;;) {
		for (e = c->entries; e; e = e->next)
			if (strcmp(e->name, name) == 0 && strcmp(e->digest, digest ? digest : "") == 0)
				break;
		if (!e || !e->loading)
			break;
		pthread_cond_wait(&c->loaded, &c->mu);
	}
	if (e) {
		e->refs++;
		*out = e->ds;
		pthread_mutex_unlock(&c->mu);
		return 0;
	}
	e = calloc(1, sizeof(*e));
	if (!e) {
		pthread_mutex_unlock(&c->mu);
		return tr_err_set(err, -ENOMEM, "out of memory");
	}
	snprintf(e->name, sizeof(e->name), "%s", name);
	snprintf(e->digest, sizeof(e->digest), "%s", digest ? digest : "");
	e->loading = true;
	e->next = c->entries;
	c->entries = e;
	pthread_mutex_unlock(&c->mu);

	rc = resolve(c, name, real, err);
	if (rc == 0)
		rc = dataset_load_limited(&ds, real, c->max_bytes, c->limit_name, NULL, err);

	pthread_mutex_lock(&c->mu);
	e->loading = false;
	if (rc < 0) {
		struct entry **pp = &c->entries;

		while (*pp != e)
			pp = &(*pp)->next;
		*pp = e->next;
		free(e);
	} else {
		e->ds = ds;
		e->refs = 1;
		*out = ds;
	}
	pthread_cond_broadcast(&c->loaded);
	pthread_mutex_unlock(&c->mu);
	return rc;
}

void dscache_put(struct dscache *c, const struct dataset *ds)
{
	struct entry **pp, *e = NULL;

	if (!ds)
		return;
	pthread_mutex_lock(&c->mu);
	for (pp = &c->entries; *pp; pp = &(*pp)->next) {
		if ((*pp)->ds == ds) {
			e = *pp;
			break;
		}
	}
	if (e && --e->refs == 0)
		*pp = e->next;
	else
		e = NULL;
	pthread_mutex_unlock(&c->mu);
	if (e) {
		dataset_free(e->ds);
		free(e);
	}
}

int dscache_train_shape(struct dscache *c, const char *name, struct dataset_shape *shape,
			struct tr_err *err)
{
	char real[PATH_MAX];
	int rc = resolve(c, name, real, err);

	if (rc < 0)
		return rc;
	return dataset_probe_limited(shape, real, c->max_bytes, c->limit_name, err);
}

/* ---- digests ----------------------------------------------------------- */

const char *dscache_dir(const struct dscache *c)
{
	return c->dir;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* The entries of `dir` that `keep` accepts, sorted by name. */
static int list_dir(const char *dir, bool (*keep)(int dfd, const char *name), char ***out, size_t *n,
		    struct tr_err *err)
{
	DIR *dp = opendir(dir);
	char **names = NULL;
	size_t len = 0, cap = 0;
	struct dirent *de;
	int rc = 0;

	*out = NULL;
	*n = 0;
	if (!dp)
		return tr_err_set(err, -errno, "%s: cannot list it: %s", dir, strerror(errno));
	while ((de = readdir(dp))) {
		if (de->d_name[0] == '.' || !keep(dirfd(dp), de->d_name))
			continue;
		if (len == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			char **nn = realloc(names, ncap * sizeof(*nn));

			if (!nn) {
				rc = tr_err_set(err, -ENOMEM, "out of memory");
				break;
			}
			names = nn;
			cap = ncap;
		}
		if (!(names[len] = strdup(de->d_name))) {
			rc = tr_err_set(err, -ENOMEM, "out of memory");
			break;
		}
		len++;
	}
	closedir(dp);
	if (rc < 0) {
		free_names(names, len);
		return rc;
	}
	if (len)
		qsort(names, len, sizeof(*names), cmp_names);
	*out = names;
	*n = len;
	return 0;
}

static bool is_regular(int dfd, const char *name)
{
	struct stat st;

	return fstatat(dfd, name, &st, 0) == 0 && S_ISREG(st.st_mode);
}

static bool is_dataset_dir(int dfd, const char *name)
{
	struct stat st;

	return config_dataset_name_ok(name) && fstatat(dfd, name, &st, 0) == 0 && S_ISDIR(st.st_mode);
}

int dscache_list(struct dscache *c, char ***out, size_t *n, struct tr_err *err)
{
	return list_dir(c->dir, is_dataset_dir, out, n, err);
}

/* The file digests a dataset_digest found missing, written to the store
 * at the end in one transaction. */
struct new_digests {
	size_t n;
	struct store_file_id *f;     /* (n) with their paths in path */
	char (*path)[PATH_MAX + CFG_NAME_MAX + 2];
	char (*hex)[SHA256_HEX_LEN + 1];
};

struct put_req {
	const struct new_digests *nd;
	const char **hex;
};

static int put_fn(struct store *s, void *arg, struct tr_err *err)
{
	struct put_req *r = arg;

	return store_file_digests_put(s, r->nd->f, r->hex, r->nd->n, err);
}

/* The content digest of one open file, whose identity is `f`. */
static int hash_file(int fd, const char *path, uint8_t out[SHA256_DIGEST_LEN], struct tr_err *err)
{
	static const size_t chunk = 1 << 20;
	struct sha256_ctx ctx;
	uint8_t *buf = malloc(chunk);
	int rc = 0;

	if (!buf || sha256_init(&ctx) < 0) {
		free(buf);
		return tr_err_set(err, -ENOMEM, "out of memory");
	}
	for (;;) {
		ssize_t got = read(fd, buf, chunk);

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			rc = tr_err_set(err, -errno, "%s: %s", path, strerror(errno));
			break;
		}
		if (got == 0)
			break;
		sha256_update(&ctx, buf, (size_t)got);
	}
	if (sha256_final(&ctx, rc == 0 ? out : NULL) < 0 && rc == 0)
		rc = tr_err_set(err, -ENOMEM, "%s: cannot hash (out of memory)", path);
	free(buf);
	return rc;
}

static int hex_to_bytes(const char *hex, uint8_t out[SHA256_DIGEST_LEN])
{
	for (int i = 0; i < SHA256_DIGEST_LEN; i++) {
		unsigned v;

		if (sscanf(hex + 2 * i, "%2x", &v) != 1)
			return -EINVAL;
		out[i] = (uint8_t)v;
	}
	return 0;
}

/* One file's part of the directory digest: name, NUL, size (8 bytes LE),
 * content digest, the last from the store when it still knows the file. */
static int digest_file(const char *dir, const char *name, struct store *rs, struct new_digests *nd,
		       struct sha256_ctx *outer, uint64_t *bytes, struct tr_err *err)
{
	char path[PATH_MAX + CFG_NAME_MAX + 2], hex[SHA256_HEX_LEN + 1];
	uint8_t dg[SHA256_DIGEST_LEN], size_le[8];
	struct store_file_id f;
	struct stat st;
	int fd, rc;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return tr_err_set(err, -errno, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0) {
		rc = tr_err_set(err, -errno, "%s: %s", path, strerror(errno));
		goto out;
	}
	f.path = path;
	f.size = (int64_t)st.st_size;
	f.mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	f.ctime_ns = (int64_t)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec;
	f.inode = (int64_t)st.st_ino;
	rc = rs ? store_file_digest_get(rs, &f, hex, NULL) : -ENOENT;
	if (rc == 0 && hex_to_bytes(hex, dg) < 0)
		rc = -ENOENT;
	if (rc < 0) {
		size_t k = nd->n++;

		rc = hash_file(fd, path, dg, err);
		if (rc < 0)
			goto out;
		sha256_to_hex(dg, hex);
		snprintf(nd->path[k], sizeof(nd->path[k]), "%s", path);
		snprintf(nd->hex[k], sizeof(nd->hex[k]), "%s", hex);
		nd->f[k] = f;
		nd->f[k].path = nd->path[k];
	}
	for (int i = 0; i < 8; i++)
		size_le[i] = (uint8_t)((uint64_t)st.st_size >> (8 * i));
	sha256_update(outer, name, strlen(name) + 1);
	sha256_update(outer, size_le, sizeof(size_le));
	sha256_update(outer, dg, sizeof(dg));
	*bytes += (uint64_t)st.st_size;
	rc = 0;
out:
	close(fd);
	return rc;
}

int dscache_digest(struct dscache *c, const char *name, struct store *rs, struct storeq *sq,
		   char out[DSCACHE_DIGEST_MAX], uint64_t *bytes, struct tr_err *err)
{
	char real[PATH_MAX], **names = NULL;
	struct new_digests nd;
	const char **hexes = NULL;
	uint8_t dg[SHA256_DIGEST_LEN];
	char hex[SHA256_HEX_LEN + 1];
	struct sha256_ctx outer = { NULL };   /* final is harmless before init */
	uint64_t total = 0;
	size_t n = 0;
	int rc;

	rc = resolve(c, name, real, err);
	if (rc < 0)
		return rc;
	rc = list_dir(real, is_regular, &names, &n, err);
	if (rc < 0)
		return rc;
	memset(&nd, 0, sizeof(nd));
	nd.f = calloc(n ? n : 1, sizeof(*nd.f));
	nd.path = calloc(n ? n : 1, sizeof(*nd.path));
	nd.hex = calloc(n ? n : 1, sizeof(*nd.hex));
	hexes = calloc(n ? n : 1, sizeof(*hexes));
	if (!nd.f || !nd.path || !nd.hex || !hexes)
		rc = tr_err_set(err, -ENOMEM, "out of memory");
	if (rc == 0 && sha256_init(&outer) < 0)
		rc = tr_err_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = digest_file(real, names[i], rs, &nd, &outer, &total, err);
	if (rc == 0 && nd.n) {
		/* Only a cache: a failure to remember costs a re-hash next time. */
		struct put_req r = { &nd, hexes };

		for (size_t i = 0; i < nd.n; i++)
			hexes[i] = nd.hex[i];
		if (sq)
			(void)storeq_call(sq, put_fn, &r, NULL);
		else if (rs)
			(void)store_file_digests_put(rs, nd.f, hexes, nd.n, NULL);
	}
	free(nd.f);
	free(nd.path);
	free(nd.hex);
	free(hexes);
	free_names(names, n);
	if (rc < 0) {
		sha256_final(&outer, NULL);   /* frees it, if init ran */
		return rc;
	}
	if (sha256_final(&outer, dg) < 0)
		return tr_err_set(err, -ENOMEM, "out of memory hashing dataset %s", name);
	sha256_to_hex(dg, hex);
	snprintf(out, DSCACHE_DIGEST_MAX, "sha256:%s", hex);
	if (bytes)
		*bytes = total;
	return 0;
}

void dscache_changed_message(char *buf, size_t len, const char *name, int64_t job,
			     const char *recorded, const char *current, const char *verb)
{
	const char *a = strncmp(recorded, "sha256:", 7) == 0 ? recorded + 7 : recorded;
	const char *b = strncmp(current, "sha256:", 7) == 0 ? current + 7 : current;

	snprintf(buf, len,
		 "dataset %s changed since job %" PRId64 " started (sha256 %.12s… now %.12s…); its "
		 "results would not continue the same run. Restore the files, or %s with "
		 "--allow-data-change",
		 name, job, a, b, verb);
}
