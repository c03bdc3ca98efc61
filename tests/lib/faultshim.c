/*
 * faultshim.c - an LD_PRELOAD shim for tests/daemon/test_faults.py: makes
 * write-side I/O on matching files fail with EIO.
 *
 *   FAULTSHIM_PATH     substring of the file's path (via /proc/self/fd) to hit
 *   FAULTSHIM_OPS      comma list of: fsync, write (write/pwrite/pwrite64/
 *                      writev); default "fsync,write"
 *   FAULTSHIM_TRIGGER  fail only while this file exists (so a test can turn
 *                      the fault on and off at run time), and
 *   FAULTSHIM_AFTER    ...only after this many matching calls (default 0)
 *
 * fsync and fdatasync are both "fsync". Unset FAULTSHIM_PATH: pass-through.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#undef _FILE_OFFSET_BITS   /* define pwrite and pwrite64 both, as libc does */
#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static _Atomic long calls;

static int should_fail(int fd, const char *op)
{
	const char *path = getenv("FAULTSHIM_PATH");
	const char *ops = getenv("FAULTSHIM_OPS");
	const char *trig = getenv("FAULTSHIM_TRIGGER");
	const char *after = getenv("FAULTSHIM_AFTER");
	char link[64], target[4096];
	struct stat st;
	ssize_t n;

	if (!path || !*path)
		return 0;
	if (!ops)
		ops = "fsync,write";
	if (!strstr(ops, op))
		return 0;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, target, sizeof(target) - 1);
	if (n <= 0)
		return 0;
	target[n] = 0;
	if (!strstr(target, path))
		return 0;
	if (trig && *trig && stat(trig, &st) != 0)
		return 0;
	if (atomic_fetch_add(&calls, 1) < (after ? atol(after) : 0))
		return 0;
	return 1;
}

#define REAL(name, type) \
	static __typeof__(&name) real_##name; \
	if (!real_##name) \
		*(void **)&real_##name = dlsym(RTLD_NEXT, #name)

int fsync(int fd)
{
	REAL(fsync, int (*)(int));
	if (should_fail(fd, "fsync")) {
		errno = EIO;
		return -1;
	}
	return real_fsync(fd);
}

int fdatasync(int fd)
{
	REAL(fdatasync, int (*)(int));
	if (should_fail(fd, "fsync")) {
		errno = EIO;
		return -1;
	}
	return real_fdatasync(fd);
}

ssize_t write(int fd, const void *buf, size_t len)
{
	REAL(write, ssize_t (*)(int, const void *, size_t));
	if (fd > 2 && should_fail(fd, "write")) {
		errno = EIO;
		return -1;
	}
	return real_write(fd, buf, len);
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
	REAL(pwrite, ssize_t (*)(int, const void *, size_t, off_t));
	if (should_fail(fd, "write")) {
		errno = EIO;
		return -1;
	}
	return real_pwrite(fd, buf, len, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off64_t off)
{
	REAL(pwrite64, ssize_t (*)(int, const void *, size_t, off64_t));
	if (should_fail(fd, "write")) {
		errno = EIO;
		return -1;
	}
	return real_pwrite64(fd, buf, len, off);
}

ssize_t writev(int fd, const struct iovec *iov, int n)
{
	REAL(writev, ssize_t (*)(int, const struct iovec *, int));
	if (fd > 2 && should_fail(fd, "write")) {
		errno = EIO;
		return -1;
	}
	return real_writev(fd, iov, n);
}
