/*
 * loadgen.c - the epoll load generator: N nonblocking connections, each
 * keeping `depth` requests in flight.
 *
 * A request (a "unit") is one or more pre-built lines written straight
 * from the caller's buffers with writev, so a 22 MB blob line is never
 * copied here. Replies are counted, not parsed: newlines for JSON lines,
 * a small state machine for RESP, whose bulk strings may hold newlines.
 * Each completed unit is timed from the moment it was queued, so the
 * latencies include our own queueing, as a real client's would. The rate
 * is the median over ten slices of the window (see rate()). There is
 * a warm-up, then a measured window, then a drain that waits for every
 * reply still owed so that the next cell starts on a quiet server.
 */
#include <sys/epoll.h>
#include <sys/uio.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

#define RBUF_SIZE	(1024 * 1024)
#define MAX_IOV		64
#define DRAIN_SECS	60.0
#define NSLICES		10	/* the window is cut in this many slices */

enum rstate { R_TYPE, R_LINE, R_BULKLEN, R_BULK };

struct lgconn {
	int		 fd;
	int		 out;		/* EPOLLOUT armed */
	uint64_t	 queued;	/* units not yet fully written */
	size_t		 woff;		/* bytes of the first of them written */
	uint64_t	*ts;		/* ring: when each unit in flight was queued */
	int		 head;
	int		 inflight;
	int		 got;		/* replies toward the oldest unit */
	/* reply framing */
	enum rstate	 st;
	long long	 num;		/* RESP: bulk length being read */
	int		 neg;
	int		 rerr;		/* RESP: this reply is an error */
	char		 head4[4];	/* JSONL: first bytes of the line */
	int		 hn;
};

struct lg {
	enum proto		 proto;
	const struct unit	*u;
	size_t			 ulen;		/* bytes of one unit */
	int			 depth;
	int			 ep;
	int			 running;	/* queue new units */
	int			 measuring;
	uint64_t		 t0;		/* window start */
	uint64_t		 slice_ns;
	uint64_t		 slices[NSLICES];	/* units done in each */
	uint64_t		 units;
	uint64_t		 errors;
	uint64_t		 owed;		/* units in flight, all conns */
	struct samples		 lat;
	char			 err[200];
};

static char *rbuf;

void
samples_add(struct samples *s, uint64_t v)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 4096;
		if ((s->v = realloc(s->v, s->cap * sizeof(*s->v))) == NULL)
			die("out of memory");
	}
	s->v[s->n++] = v;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* The pct-th percentile in µs (sorts in place); 0 without samples. */
double
samples_pct(struct samples *s, double pct)
{
	size_t i;

	if (s->n == 0)
		return 0;
	qsort(s->v, s->n, sizeof(*s->v), cmp_u64);
	i = (size_t)(pct / 100.0 * (double)(s->n - 1) + 0.5);
	return (double)s->v[i] / 1000.0;
}

void
samples_free(struct samples *s)
{
	free(s->v);
	memset(s, 0, sizeof(*s));
}

static void
arm(struct lg *g, struct lgconn *c, int out)
{
	struct epoll_event ev;

	if (c->out == out)
		return;
	ev.events = EPOLLIN | (out ? EPOLLOUT : 0);
	ev.data.ptr = c;
	if (epoll_ctl(g->ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
		die("epoll_ctl: %s", strerror(errno));
	c->out = out;
}

static void
queue_unit(struct lg *g, struct lgconn *c)
{
	c->ts[(c->head + c->inflight) % g->depth] = now_ns();
	c->inflight++;
	c->queued++;
	g->owed++;
}

/* Write as much of the queued units as the socket takes. */
static void
flush(struct lg *g, struct lgconn *c)
{
	struct iovec v[MAX_IOV];
	const struct iovec *src;
	size_t skip, len;
	uint64_t k;
	ssize_t n;
	int i, nv;

	while (c->queued > 0) {
		nv = 0;
		skip = c->woff;
		for (k = 0; k < c->queued && nv < MAX_IOV; k++) {
			for (i = 0; i < g->u->niov && nv < MAX_IOV; i++) {
				src = &g->u->iov[i];
				if (skip >= src->iov_len) {
					skip -= src->iov_len;
					continue;
				}
				v[nv].iov_base = (char *)src->iov_base + skip;
				v[nv].iov_len = src->iov_len - skip;
				skip = 0;
				nv++;
			}
		}
		n = writev(c->fd, v, nv);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			die("load generator: write: %s", strerror(errno));
		}
		len = c->woff + (size_t)n;
		c->queued -= len / g->ulen;
		c->woff = len % g->ulen;
	}
	arm(g, c, c->queued > 0);
}

/* One reply came; a unit is done when all its replies are in. */
static void
reply(struct lg *g, struct lgconn *c, int error, const char *line,
    size_t len)
{
	uint64_t t, now;

	if (error) {
		g->errors++;
		if (g->err[0] == '\0' && line != NULL) {
			len = len < sizeof(g->err) - 1 ? len : sizeof(g->err) - 1;
			memcpy(g->err, line, len);
			g->err[len] = '\0';
		} else if (g->err[0] == '\0')
			strcpy(g->err, "(an error reply)");
	}
	if (c->inflight == 0)
		die("load generator: a reply nobody asked for");
	if (++c->got < g->u->replies)
		return;
	c->got = 0;
	t = c->ts[c->head];
	c->head = (c->head + 1) % g->depth;
	c->inflight--;
	g->owed--;
	if (g->measuring) {
		now = now_ns();
		g->units++;
		if ((now - g->t0) / g->slice_ns < NSLICES)
			g->slices[(now - g->t0) / g->slice_ns]++;
		if (t >= g->t0)		/* latency of units sent in the window */
			samples_add(&g->lat, now - t);
	}
	if (g->running)
		queue_unit(g, c);
}

static void
parse_lines(struct lg *g, struct lgconn *c, const char *p, const char *end)
{
	const char *ls = c->hn == 0 ? p : NULL, *nl, *stop;
	int error;

	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		stop = nl ? nl : end;
		while (c->hn < 4 && p < stop)
			c->head4[c->hn++] = *p++;
		if (nl == NULL)
			return;
		/* {"result"..., {"error"..., {"event"...: errors only count */
		error = g->proto == PROTO_JSONL && c->hn == 4 &&
		    memcmp(c->head4, "{\"er", 4) == 0;
		reply(g, c, error, ls, ls ? (size_t)(nl - ls) : 0);
		c->hn = 0;
		p = nl + 1;
		ls = p;
	}
}

static void
parse_resp(struct lg *g, struct lgconn *c, const char *p, const char *end)
{
	const char *nl;
	size_t k;

	while (p < end) {
		switch (c->st) {
		case R_TYPE:
			if (*p == '$') {
				c->st = R_BULKLEN;
				c->num = 0;
				c->neg = 0;
			} else {
				c->rerr = *p == '-';
				c->st = R_LINE;
			}
			p++;
			break;
		case R_LINE:
			if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL)
				return;
			p = nl + 1;
			c->st = R_TYPE;
			reply(g, c, c->rerr, c->rerr ? "redis: -ERR" : NULL,
			    11);
			break;
		case R_BULKLEN:
			if (*p == '-')
				c->neg = 1;
			else if (*p >= '0' && *p <= '9')
				c->num = c->num * 10 + (*p - '0');
			else if (*p == '\n') {
				c->st = c->neg ? R_TYPE : R_BULK;
				c->num += 2;	/* CRLF */
				if (c->neg)	/* a nil: nothing was there */
					reply(g, c, 1, "redis: nil", 10);
			}
			p++;
			break;
		case R_BULK:
			k = (size_t)(end - p) < (size_t)c->num ?
			    (size_t)(end - p) : (size_t)c->num;
			p += k;
			c->num -= (long long)k;
			if (c->num == 0) {
				c->st = R_TYPE;
				reply(g, c, 0, NULL, 0);
			}
			break;
		}
	}
}

static void
on_read(struct lg *g, struct lgconn *c)
{
	ssize_t n;

	n = read(c->fd, rbuf, RBUF_SIZE);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		die("load generator: read: %s", strerror(errno));
	}
	if (n == 0)
		die("load generator: the server closed a connection%s%s",
		    g->err[0] ? "; last error: " : "", g->err);
	if (g->proto == PROTO_RESP)
		parse_resp(g, c, rbuf, rbuf + n);
	else
		parse_lines(g, c, rbuf, rbuf + n);
	if (c->queued > 0)
		flush(g, c);
}

/* Run the loop until `until` (ns), or until nothing is owed if drain. */
static void
loop(struct lg *g, uint64_t until, int drain)
{
	struct epoll_event evs[64];
	struct lgconn *c;
	uint64_t now;
	int i, n, ms;

	while ((now = now_ns()) < until && !(drain && g->owed == 0)) {
		ms = (int)((until - now) / 1000000) + 1;
		n = epoll_wait(g->ep, evs, 64, ms > 100 ? 100 : ms);
		if (n < 0 && errno != EINTR)
			die("epoll_wait: %s", strerror(errno));
		for (i = 0; i < n; i++) {
			c = evs[i].data.ptr;
			if (evs[i].events & EPOLLOUT)
				flush(g, c);
			if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
				on_read(g, c);
		}
	}
}

/*
 * The rate: the median of the slices' rates when they hold enough units,
 * so that a burst of other load on the machine moves it less than it
 * moves the mean; their spread goes into res as a sign of such noise.
 */
static void
rate(struct lg *g, struct lg_result *res)
{
	uint64_t v[NSLICES];
	double med, slice = (double)g->slice_ns / 1e9;

	res->rate = (double)g->units / res->secs;
	if (g->units < 20 * NSLICES)
		return;
	memcpy(v, g->slices, sizeof(v));
	qsort(v, NSLICES, sizeof(v[0]), cmp_u64);
	med = (double)(v[NSLICES / 2 - 1] + v[NSLICES / 2]) / 2.0;
	res->rate = med / slice;
	if (med > 0)
		res->spread_pct = (double)(v[NSLICES - 1] - v[0]) / 2.0 /
		    med * 100.0;
}

/*
 * Drive `conns` connections to the socket at path, each with `depth`
 * units of u in flight: warm up for warm seconds, measure for secs,
 * then collect every reply still owed. The CPU use of watch (if > 0) and
 * of this process over the window goes into res too.
 */
void
lg_run(const char *path, enum proto proto, const struct unit *u, int conns,
    int depth, double warm, double secs, pid_t watch, struct lg_result *res)
{
	uint64_t cpu0 = 0, wait0 = 0, self0;
	struct epoll_event ev;
	struct lgconn *cs;
	struct lg g;
	uint64_t t1;
	int i, j;

	memset(&g, 0, sizeof(g));
	memset(res, 0, sizeof(*res));
	g.proto = proto;
	g.u = u;
	g.depth = depth;
	for (i = 0; i < u->niov; i++)
		g.ulen += u->iov[i].iov_len;
	if (rbuf == NULL && (rbuf = malloc(RBUF_SIZE)) == NULL)
		die("out of memory");
	if ((g.ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
		die("epoll_create1: %s", strerror(errno));
	if ((cs = calloc((size_t)conns, sizeof(*cs))) == NULL)
		die("out of memory");
	for (i = 0; i < conns; i++) {
		cs[i].fd = unix_connect(path, 1);
		if ((cs[i].ts = calloc((size_t)depth, sizeof(uint64_t))) ==
		    NULL)
			die("out of memory");
		ev.events = EPOLLIN;
		ev.data.ptr = &cs[i];
		if (epoll_ctl(g.ep, EPOLL_CTL_ADD, cs[i].fd, &ev) < 0)
			die("epoll_ctl: %s", strerror(errno));
	}
	g.running = 1;
	for (i = 0; i < conns; i++) {
		for (j = 0; j < depth; j++)
			queue_unit(&g, &cs[i]);
		flush(&g, &cs[i]);
	}
	loop(&g, now_ns() + (uint64_t)(warm * 1e9), 0);
	if (watch > 0) {
		cpu0 = proc_cpu_ns(watch);
		wait0 = proc_wait_ns(watch);
	}
	self0 = proc_cpu_ns(getpid());
	g.slice_ns = (uint64_t)(secs * 1e9) / NSLICES;
	g.t0 = now_ns();
	g.measuring = 1;
	loop(&g, g.t0 + (uint64_t)(secs * 1e9), 0);
	t1 = now_ns();
	if (watch > 0) {
		res->cpu_pct = (double)(proc_cpu_ns(watch) - cpu0) /
		    (double)(t1 - g.t0) * 100.0;
		res->wait_pct = (double)(proc_wait_ns(watch) - wait0) /
		    (double)(t1 - g.t0) * 100.0;
	}
	res->self_pct = (double)(proc_cpu_ns(getpid()) - self0) /
	    (double)(t1 - g.t0) * 100.0;
	g.measuring = 0;
	g.running = 0;
	loop(&g, t1 + (uint64_t)(DRAIN_SECS * 1e9), 1);
	if (g.owed > 0)
		die("load generator: %llu replies still owed after %.0f s",
		    (unsigned long long)g.owed, DRAIN_SECS);

	res->secs = (double)(t1 - g.t0) / 1e9;
	res->units = g.units;
	res->errors = g.errors;
	rate(&g, res);
	res->p50_us = samples_pct(&g.lat, 50);
	res->p99_us = samples_pct(&g.lat, 99);
	memcpy(res->err, g.err, sizeof(res->err));
	samples_free(&g.lat);
	for (i = 0; i < conns; i++) {
		close(cs[i].fd);
		free(cs[i].ts);
	}
	free(cs);
	close(g.ep);
}
