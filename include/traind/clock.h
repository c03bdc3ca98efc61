/*
 * clock.h - the one clock the engine and its programs time things with.
 *
 * Monotonic seconds (CLOCK_MONOTONIC): for durations (an epoch's seconds, a
 * checkpoint's hold and commit times, a throughput window, a deadline),
 * never for dates.
 *
 * Thread: any.
 */
#ifndef TRAIND_CLOCK_H
#define TRAIND_CLOCK_H

/* Seconds since an arbitrary fixed point, monotonic. */
double clock_seconds(void);

#endif
