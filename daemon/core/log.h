/*
 * log.h - traind's log: one line per event that matters, to stderr.
 *
 * When journald reads stderr (JOURNAL_STREAM names our stderr), each line
 * starts with a syslog priority prefix "<N>" so the journal keeps the level;
 * otherwise lines carry a timestamp and the level as text.
 *
 * Thread: any; a line is written with one write(2) so lines never interleave.
 */
#ifndef TRAIND_LOG_H
#define TRAIND_LOG_H

enum log_level {
	LOG_LVL_ERR = 3,
	LOG_LVL_WARNING = 4,
	LOG_LVL_NOTICE = 5,
	LOG_LVL_INFO = 6,
	LOG_LVL_DEBUG = 7,
};

/* Decide the format (journald or plain) from the environment; call once at start. */
void log_init(void);
void log_set_verbose(int verbose);
void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_err(...) log_msg(LOG_LVL_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARNING, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_LVL_NOTICE, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

#endif
