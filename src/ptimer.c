/*
 * ptimer.c - one-shot timers with microsecond precision, for the poll
 * timer that serves parked receivers every 250 us during traffic.
 *
 * libevent's own timers go through epoll_wait's millisecond timeout (a
 * 250 us timer fires after a millisecond or more) unless the base is made
 * with EVENT_BASE_FLAG_PRECISE_TIMER, and then libevent re-arms a timerfd
 * on every loop pass, timers pending or not: one more system call per
 * pass, a fifth of the daemon's calls per request on an unpipelined
 * connection. Here the one timer that needs the precision has a timerfd of
 * its own, set only when its deadline changes; every other timer stays
 * with libevent at millisecond precision. Without timerfd (not Linux) a
 * ptimer is a libevent timer.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"		/* config.h first: HAVE_SYS_TIMERFD_H */
#ifdef HAVE_SYS_TIMERFD_H
#include <sys/timerfd.h>
#endif

/* The fuzzer turns it off: its clock warps by firing libevent timers. */
int ptimer_timerfd = 1;

struct ptimer {
	struct event	*ev;
	int		 fd;		/* the timerfd, or -1 */
	int		 armed;
	void		 (*cb)(void *);
	void		*arg;
};

static void
fired(evutil_socket_t fd, short what, void *arg)
{
	struct ptimer *t = arg;
	uint64_t n;

	(void)what;
	if (t->fd >= 0 && read(fd, &n, sizeof(n)) < 0)
		return;		/* EAGAIN: disarmed after it became ready */
	t->armed = 0;
	t->cb(t->arg);
}

struct ptimer *
ptimer_new(void (*cb)(void *), void *arg)
{
	struct ptimer *t;

	if ((t = calloc(1, sizeof(*t))) == NULL)
		fatalx("out of memory");
	t->cb = cb;
	t->arg = arg;
	t->fd = -1;
#ifdef HAVE_SYS_TIMERFD_H
	if (ptimer_timerfd)
		t->fd = timerfd_create(CLOCK_MONOTONIC,
		    TFD_NONBLOCK | TFD_CLOEXEC);
	if (ptimer_timerfd && t->fd < 0)
		log_warn("timerfd_create (poll timer at millisecond "
		    "precision)");
#endif
	t->ev = t->fd >= 0 ?
	    event_new(base, t->fd, EV_READ | EV_PERSIST, fired, t) :
	    evtimer_new(base, fired, t);
	if (t->ev == NULL)
		fatalx("out of memory");
	if (t->fd >= 0)
		event_add(t->ev, NULL);
	return t;
}

/* Fire once, us microseconds from now (replacing any earlier setting). */
void
ptimer_arm(struct ptimer *t, int us)
{
	struct timeval tv = { us / 1000000, us % 1000000 };

	t->armed = 1;
#ifdef HAVE_SYS_TIMERFD_H
	if (t->fd >= 0) {
		struct itimerspec its = { { 0, 0 }, { us / 1000000,
		    (long)(us % 1000000) * 1000 } };

		if (us <= 0)
			its.it_value.tv_nsec = 1;	/* 0 would disarm */
		if (timerfd_settime(t->fd, 0, &its, NULL) < 0)
			fatalx("timerfd_settime: %s", strerror(errno));
		return;
	}
#endif
	evtimer_add(t->ev, &tv);
}

int
ptimer_armed(const struct ptimer *t)
{
	return t->armed;
}

void
ptimer_free(struct ptimer *t)
{
	if (t == NULL)
		return;
	event_free(t->ev);
	if (t->fd >= 0)
		close(t->fd);
	free(t);
}
