/*
 * log.c - leveled logging to stderr or syslog.
 *
 * Under systemd (JOURNAL_STREAM or INVOCATION_ID set) stderr lines carry
 * sd-daemon "<N>" priority prefixes so the journal files them at the right
 * level. log_warn appends strerror(errno) the way err(3) does; fatalx is
 * for start-up only: once the loop runs, nothing a client does may exit.
 * Repeated warnings with the same format are rate-limited, so a client
 * that provokes one in a loop cannot flood the log.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "daemon.h"

#define RATE_SLOTS	16
#define RATE_PER_MIN	10

static int log_level = LOG_LVL_INFO;
static int to_syslog;
static int journal;
static int mirror_fd = -1;	/* -d: start-up warnings to the parent */

/* Per-format counters for the current minute. */
static struct {
	const char	*fmt;
	time_t		 minute;
	int		 count;
	int		 dropped;
} rate[RATE_SLOTS];

void
log_init(int level)
{
	log_level = level;
	journal = getenv("JOURNAL_STREAM") != NULL ||
	    getenv("INVOCATION_ID") != NULL;
}

void
log_setlevel(int level)
{
	log_level = level;
}

void
log_mirror(int fd)
{
	mirror_fd = fd;
}

void
log_syslog(int on)
{
	if (on && !to_syslog)
		openlog("ipcbridge", LOG_PID | LOG_NDELAY, LOG_DAEMON);
	else if (!on && to_syslog)
		closelog();
	to_syslog = on;
}

/* 1 to print, 0 when this format already spoke RATE_PER_MIN times. */
static int
rate_ok(const char *fmt, int *dropped)
{
	time_t minute = time(NULL) / 60;
	int i, free_slot = -1;

	*dropped = 0;
	for (i = 0; i < RATE_SLOTS; i++) {
		if (rate[i].fmt == fmt)
			break;
		if (free_slot < 0 && (rate[i].fmt == NULL ||
		    rate[i].minute != minute))
			free_slot = i;
	}
	if (i == RATE_SLOTS) {
		if (free_slot < 0)
			return 1;
		i = free_slot;
		rate[i].fmt = fmt;
		rate[i].minute = minute;
		rate[i].count = 0;
		rate[i].dropped = 0;
	}
	if (rate[i].minute != minute) {
		*dropped = rate[i].dropped;
		rate[i].minute = minute;
		rate[i].count = 0;
		rate[i].dropped = 0;
	}
	if (++rate[i].count > RATE_PER_MIN) {
		rate[i].dropped++;
		return 0;
	}
	return 1;
}

static void
vlog(int level, int prio, const char *prefix, const char *fmt, va_list ap,
    const char *suffix)
{
	char buf[2048];
	int dropped = 0;

	if (level > log_level)
		return;
	/* a lost message is never suppressed */
	if (level == LOG_LVL_WARN && strncmp(fmt, "LOST", 4) != 0 &&
	    !rate_ok(fmt, &dropped))
		return;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	if (mirror_fd >= 0 && level == LOG_LVL_WARN)
		dprintf(mirror_fd, "ipcbridge: %s%s%s%s\n", prefix, buf,
		    suffix ? ": " : "", suffix ? suffix : "");
	if (to_syslog) {
		if (dropped)
			syslog(prio, "(%d similar warnings suppressed)",
			    dropped);
		syslog(prio, "%s%s%s%s", prefix, buf, suffix ? ": " : "",
		    suffix ? suffix : "");
		return;
	}
	if (dropped)
		fprintf(stderr, "%sipcbridge: (%d similar warnings "
		    "suppressed)\n", journal ? "<4>" : "", dropped);
	if (journal)
		fprintf(stderr, "<%d>", prio);
	fprintf(stderr, "ipcbridge: %s%s%s%s\n", prefix, buf,
	    suffix ? ": " : "", suffix ? suffix : "");
}

void
log_warn(const char *fmt, ...)
{
	const char *e = strerror(errno);
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_LVL_WARN, LOG_WARNING, "warning: ", fmt, ap, e);
	va_end(ap);
}

void
log_warnx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_LVL_WARN, LOG_WARNING, "warning: ", fmt, ap, NULL);
	va_end(ap);
}

void
log_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_LVL_INFO, LOG_INFO, "", fmt, ap, NULL);
	va_end(ap);
}

void
log_debug(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_LVL_DEBUG, LOG_DEBUG, "debug: ", fmt, ap, NULL);
	va_end(ap);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_LVL_WARN, LOG_ERR, "error: ", fmt, ap, NULL);
	va_end(ap);
	exit(1);
}

/*
 * Client-controlled text made safe for one log line: printable ASCII kept,
 * everything else as \xNN, cut at max bytes with "..." appended.
 */
const char *
log_escape(const char *s, size_t n, size_t max)
{
	static char buf[1024];
	size_t i, o = 0;

	if (max > 200)
		max = 200;
	for (i = 0; i < n && o + 8 < sizeof(buf); i++) {
		unsigned char ch = (unsigned char)s[i];

		if (i == max) {
			memcpy(buf + o, "...", 3);
			o += 3;
			break;
		}
		if (ch >= 0x20 && ch < 0x7f && ch != '\\')
			buf[o++] = (char)ch;
		else
			o += (size_t)snprintf(buf + o, sizeof(buf) - o,
			    "\\x%02x", ch);
	}
	buf[o] = '\0';
	return buf;
}
