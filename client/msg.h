/*
 * msg.h - trainctl's exit codes and its one error line.
 *
 * Every failure of a trainctl run ends in exactly one line "trainctl: ..."
 * on stderr (failf) and an exit code from enum rc; text from the daemon or a
 * file is made one line first (one_line), so it can neither break that line
 * nor drive the terminal.
 *
 * Thread: trainctl has one.
 */
#ifndef TRAIND_CLIENT_MSG_H
#define TRAIND_CLIENT_MSG_H

/* Exit codes: a stable interface for scripts. */
enum rc {
	RC_OK = 0,
	RC_ERROR = 1,     /* the daemon said no, or anything else went wrong */
	RC_USAGE = 2,     /* bad command line */
	RC_TIMEOUT = 3,   /* wait: timed out */
	RC_STATE = 4,     /* wait: the job ended in a state not asked for */
};

/* Replace control characters in s (in place) by spaces. */
void one_line(char *s);

/* Print "trainctl: MESSAGE" as one line on stderr (stdout flushed first);
 * returns rc. */
int failf(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "malformed reply from traind: METHOD reply without a valid "FIELD""; RC_ERROR. */
int malformed(const char *method, const char *field);

#endif
