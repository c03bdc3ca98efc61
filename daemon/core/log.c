/* log.c - see daemon/core/log.h. */
#include "daemon/core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int journal;      /* stderr is the journal: use <N> prefixes */
static int verbose;

void log_init(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	struct stat st;
	unsigned long dev, ino;

	/* JOURNAL_STREAM is "device:inode" of the stream journald gave us. */
	if (js && sscanf(js, "%lu:%lu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
	    (unsigned long)st.st_dev == dev && (unsigned long)st.st_ino == ino)
		journal = 1;
}

void log_set_verbose(int v)
{
	verbose = v;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	static const char *names[] = { "emerg", "alert", "crit", "error", "warning", "notice", "info",
				       "debug" };
	char line[2048];
	size_t n;
	va_list ap;

	if (lvl == LOG_LVL_DEBUG && !verbose)
		return;
	if (journal) {
		n = (size_t)snprintf(line, sizeof(line), "<%d>", (int)lvl);
	} else {
		struct timespec ts;
		struct tm tm;

		clock_gettime(CLOCK_REALTIME, &ts);
		localtime_r(&ts.tv_sec, &tm);
		n = strftime(line, sizeof(line), "%Y-%m-%d %H:%M:%S", &tm);
		n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ld traind %s: ",
				      ts.tv_nsec / 1000000, names[lvl]);
	}
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	n = strlen(line);
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, n) < 0) {
		/* nowhere left to report it */
	}
}
