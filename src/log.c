/*
 * log.c - leveled logging to stderr.
 *
 * log_warn appends strerror(errno) the way err(3) does; fatalx is for
 * start-up only: once the loop runs, nothing a client does may exit.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"

static int log_level = LOG_LVL_INFO;

void
log_init(int level)
{
	log_level = level;
}

void
log_setlevel(int level)
{
	log_level = level;
}

static void
vlog(int level, const char *prefix, const char *fmt, va_list ap,
    const char *suffix)
{
	char buf[2048];

	if (level > log_level)
		return;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	if (suffix != NULL)
		fprintf(stderr, "ipcbridge: %s%s: %s\n", prefix, buf, suffix);
	else
		fprintf(stderr, "ipcbridge: %s%s\n", prefix, buf);
}

void
log_warn(const char *fmt, ...)
{
	const char *e = strerror(errno);
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_LVL_WARN, "warning: ", fmt, ap, e);
	va_end(ap);
}

void
log_warnx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_LVL_WARN, "warning: ", fmt, ap, NULL);
	va_end(ap);
}

void
log_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_LVL_INFO, "", fmt, ap, NULL);
	va_end(ap);
}

void
log_debug(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_LVL_DEBUG, "debug: ", fmt, ap, NULL);
	va_end(ap);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_LVL_WARN, "error: ", fmt, ap, NULL);
	va_end(ap);
	exit(1);
}
