/*
 * http.h - traind-web's HTTP server, on libmicrohttpd.
 *
 * Why libmicrohttpd, thread per connection: every request is one or two
 * blocking varlink calls to traind (client/varlink.c, as trainctl makes
 * them), and a Pause waits for its checkpoint, an event stream for Watch's
 * next reply; a thread per connection lets each block without an event loop
 * of our own and without sharing a traind connection between requests.
 * The cost is bounded by the gate (gate.h: it accepts, gives each client a
 * share of the connections, closes idle ones to make room and slow requests
 * at their deadline), a small thread stack, a per-connection memory pool
 * that bounds the request line and headers (libmicrohttpd answers 431 past
 * it), a cap on POST bodies, and an idle timeout while a response is
 * written.
 * libmicrohttpd also does HTTP/1.1 keep-alive, chunked bodies (and refuses
 * broken ones) and HEAD.
 *
 * Each request: its headers -> route.h's web_decide -> a page (pages.h),
 * /metrics (metrics.h), an API call (api.h) or an event stream (events.h);
 * the response is gzipped when the client accepts it and it is worth it.
 *
 * Thread: http_start/http_stop from main; the handlers run on
 * libmicrohttpd's connection threads.
 */
#ifndef TRAIND_WEB_HTTP_H
#define TRAIND_WEB_HTTP_H

#include <stdbool.h>

#include "route.h"
#include "traind/error.h"

struct web_config {
	const char *socket;         /* traind's varlink socket */
	struct web_policy policy;
	int listen_fd;              /* bound and listening (main.c) */
	bool unix_listen;           /* listen_fd is a Unix socket: every peer is local */
	unsigned max_connections;
	unsigned max_per_client;    /* connections of one client (gate.h) */
	unsigned timeout_s;         /* idle connection timeout */
	unsigned request_timeout_s; /* a whole request (gate.h) */
};

struct web_server;

int http_start(struct web_server **out, const struct web_config *cfg, struct tr_err *err);

/* Stop serving, close every connection, free; accepts NULL. */
void http_stop(struct web_server *s);

#endif
