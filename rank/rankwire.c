/*
 * rankwire.c - frames on the contact socket. See rank/rankwire.h.
 */
#include "rank/rankwire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static int write_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;

	while (n > 0) {
		ssize_t w = send(fd, b, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

static int read_all(int fd, void *p, size_t n)
{
	uint8_t *b = p;

	while (n > 0) {
		ssize_t r = read(fd, b, n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return errno == ECONNRESET ? -EPIPE : -errno;
		if (r == 0)
			return -EPIPE;
		b += r;
		n -= (size_t)r;
	}
	return 0;
}

int rw_send(int fd, uint32_t type, const void *a, size_t alen, const void *b, size_t blen)
{
	struct rw_head h = { .type = type, .len = alen + blen };
	int rc = write_all(fd, &h, sizeof(h));

	if (rc == 0 && alen)
		rc = write_all(fd, a, alen);
	if (rc == 0 && blen)
		rc = write_all(fd, b, blen);
	return rc;
}

int rw_recv(int fd, struct rw_head *h, uint8_t **payload)
{
	uint8_t *p = NULL;
	int rc;

	*payload = NULL;
	rc = read_all(fd, h, sizeof(*h));
	if (rc < 0)
		return rc;
	if (h->len > RW_MAX_PAYLOAD)
		return -EPROTO;
	if (h->len) {
		p = malloc(h->len);
		if (!p)
			return -ENOMEM;
		rc = read_all(fd, p, h->len);
		if (rc < 0) {
			free(p);
			return rc;
		}
	}
	*payload = p;
	return 0;
}
