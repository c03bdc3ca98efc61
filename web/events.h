/*
 * events.h - /api/jobs/N/events: a job's progress as Server-Sent Events,
 * fed by traind's Watch (a varlink call with "more": true).
 *
 * The stream starts with "retry: 3000" (the browser's EventSource
 * reconnects after 3 s when the connection drops); each Watch reply is one
 * event "progress" whose data is the reply's parameters as JSON and whose
 * id counts up (continuing from Last-Event-ID after a reconnect). When Watch
 * ends (the job stopped training) an event "end" follows and the stream
 * closes; when traind says no (no such job...) an event "error" with
 * {"error", "message"}. While Watch is quiet for `quiet_ms` (15 s, or half
 * the idle timeout if that is shorter) a comment line keeps the connection
 * alive and the Watch call is made anew.
 *
 * Thread: each stream is read by its connection's own thread (libmicrohttpd
 * thread-per-connection), which may block in Watch.
 */
#ifndef TRAIND_WEB_EVENTS_H
#define TRAIND_WEB_EVENTS_H

#include <stdint.h>
#include <sys/types.h>

struct events;

/* Most event streams open at once; more get 503. */
#define EVENTS_MAX 64

/* A new stream for job `job`; NULL when EVENTS_MAX are open or out of
 * memory. last_id: the Last-Event-ID header or NULL. */
struct events *events_new(const char *socket, int64_t job, const char *last_id, int quiet_ms);

/* libmicrohttpd's content reader: the next bytes of the stream. */
ssize_t events_read(void *cls, uint64_t pos, char *buf, size_t max);

/* libmicrohttpd's free callback. */
void events_free(void *cls);

#endif
