/*
 * conn.c - a client connection: accept, read, line framing, output, close.
 *
 * Plain libevent events over our own buffers rather than bufferevents: we
 * read straight into the connection's buffer, search for newlines from
 * where the last search stopped, write replies once the batch is done, and
 * arm EV_WRITE only when the socket would block. That is two syscalls per
 * request batch instead of bufferevent's five.
 *
 * In the daemon (conn_defer_flush, set by main) the replies to what was
 * read go out after the whole loop pass, for every connection that read
 * something in it (conns_flush_deferred), as Redis does before it sleeps:
 * with many clients each sending one request, the clients are woken once
 * per pass instead of once per reply, which bench measured as +58% at
 * 50x1. Deliveries to waiters and consumers are still written at once.
 *
 * Every close goes through conn_close(), which cancels the connection's
 * waits, puts back any message whose reply never left, and frees the
 * connection on the next loop pass (never inside its own callback).
 */
#include <sys/socket.h>

#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"

#define READ_CHUNK	(64 * 1024)
#define BIG_BUFFER	(4 * 1024 * 1024)
#define LINES_PER_READ	64

/* A message delivered into the output buffer but not yet written out. */
struct inflight {
	TAILQ_ENTRY(inflight) entry;
	uint64_t	 mark;		/* written once out_written >= mark */
	int		 slot;		/* its journal slot, or -1 */
	key_t		 key;
	size_t		 len;
	struct ipcb_msg	 msg;		/* followed by len bytes */
};

struct conn {
	int		 fd;
	uint64_t	 serial;
	struct event	*rev;
	struct event	*wev;
	char		*in;
	size_t		 in_start;	/* first unprocessed byte */
	size_t		 in_scan;	/* searched for '\n' up to here */
	size_t		 in_len;
	size_t		 in_cap;
	int		 discarding;	/* dropping an overlong line */
	int		 stalled;	/* lines left until output drains */
	struct event	*resume;	/* go on with a long pipeline */
	struct event	*tmo;		/* partial-line and idle timeouts */
	struct event	*closer;	/* a close decided deep in a call */
	int		 doomed;	/* closing on the next loop pass */
	const char	*doom_reason;
	uint64_t	 partial_since;	/* 0: no partial line buffered */
	uint64_t	 active_ms;	/* last request or reply */
	char		*out;
	size_t		 out_off;
	size_t		 out_len;
	size_t		 out_cap;
	uint64_t	 out_written;
	uint64_t	 out_appended;
	int		 eof;
	int		 closing;
	int		 reading;
	int		 writing;
	struct waiter	*held;
	struct waiterq	 waiters;
	int		 nwaits;
	struct peer	 peer;
	TAILQ_HEAD(, inflight) inflight;
	TAILQ_ENTRY(conn) entry;
	int		 deferred;	/* on the deferred list */
	TAILQ_ENTRY(conn) dentry;
};

static TAILQ_HEAD(, conn) conns = TAILQ_HEAD_INITIALIZER(conns);
static TAILQ_HEAD(, conn) deferred = TAILQ_HEAD_INITIALIZER(deferred);
int conn_defer_flush;		/* replies wait for the end of the pass */
int conns_count;
static uint64_t next_serial = 1;
static int shutting_down;

static const struct timeval resume_tv = { 0, 0 };

static void	read_cb(evutil_socket_t, short, void *);
static void	resume_cb(evutil_socket_t, short, void *);
static void	flush_soon(struct conn *);
static void	tmo_cb(evutil_socket_t, short, void *);
static void	closer_cb(evutil_socket_t, short, void *);
static void	conn_doom(struct conn *, const char *);
static void	arm_timeout(struct conn *);
static void	write_cb(evutil_socket_t, short, void *);
static void	process_input(struct conn *);
static void	maybe_finish(struct conn *);

/* One error line to a client we will not serve, then close. */
static void
refuse(int fd, enum err_code code, const char *msg)
{
	char line[512];
	ssize_t n;

	snprintf(line, sizeof(line), "{\"error\":{\"code\":\"%s\","
	    "\"message\":\"%s\"}}\n", err_name(code), msg);
	n = write(fd, line, strlen(line));
	(void)n;
	stats.errors[code]++;
	close(fd);
}

static int
conns_of_uid(uid_t uid)
{
	struct conn *c;
	int n = 0;

	TAILQ_FOREACH(c, &conns, entry) {
		if (c->peer.uid == uid)
			n++;
	}
	return n;
}

void
conn_accept(int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct peer peer;
	struct conn *c;

	if (shutting_down || conns_count >= cfg->max_conns) {
		refuse(fd, ERR_BUSY, "too many connections (max_conns "
		    "reached); try again later");
		return;
	}
	memset(&peer, 0, sizeof(peer));
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		log_warn("accept: SO_PEERCRED");
		close(fd);
		return;
	}
	peer.pid = cred.pid;
	peer.uid = cred.uid;
	peer.gid = cred.gid;
	if (!acl_allows(&cfg->allow_users, &cfg->allow_groups, &peer)) {
		log_warnx("permission denied: uid %d gid %d pid %d is not in "
		    "allow_users/allow_groups", (int)peer.uid, (int)peer.gid,
		    (int)peer.pid);
		refuse(fd, ERR_PERMISSION_DENIED, "this user may not use "
		    "ipcbridge (allow_users/allow_groups)");
		return;
	}
	if (cfg->max_conns_per_uid > 0 &&
	    conns_of_uid(peer.uid) >= cfg->max_conns_per_uid) {
		log_warnx("uid %d is at max_conns_per_uid (%d)",
		    (int)peer.uid, cfg->max_conns_per_uid);
		refuse(fd, ERR_BUSY, "too many connections for this user "
		    "(max_conns_per_uid); try again later");
		return;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		close(fd);
		return;
	}
	c->fd = fd;
	c->serial = next_serial++;
	c->peer = peer;
	c->active_ms = now_ms();
	TAILQ_INIT(&c->waiters);
	TAILQ_INIT(&c->inflight);
	c->rev = event_new(base, fd, EV_READ | EV_PERSIST, read_cb, c);
	c->wev = event_new(base, fd, EV_WRITE | EV_PERSIST, write_cb, c);
	c->resume = evtimer_new(base, resume_cb, c);
	c->tmo = evtimer_new(base, tmo_cb, c);
	c->closer = evtimer_new(base, closer_cb, c);
	if (c->rev == NULL || c->wev == NULL || c->resume == NULL ||
	    c->tmo == NULL || c->closer == NULL)
		fatalx("out of memory");
	event_add(c->rev, NULL);
	c->reading = 1;
	TAILQ_INSERT_TAIL(&conns, c, entry);
	conns_count++;
	stats.conns_current++;
	stats.conns_total++;
	log_debug("conn %llu: accepted (pid %d uid %d gid %d)",
	    (unsigned long long)c->serial, (int)c->peer.pid, (int)c->peer.uid,
	    (int)c->peer.gid);
}

static void
free_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct conn *c = arg;

	(void)fd; (void)ev;
	event_free(c->resume);
	event_free(c->tmo);
	event_free(c->closer);
	event_free(c->rev);
	event_free(c->wev);
	free(c->in);
	free(c->out);
	free(c);
}

void
conn_close(struct conn *c, const char *reason)
{
	struct inflight *f;
	struct timeval zero = { 0, 0 };

	if (c->closing)
		return;
	c->closing = 1;
	log_debug("conn %llu: closed: %s", (unsigned long long)c->serial,
	    reason);
	waiter_cancel_conn(c);
	ack_conn_closed(c);
	while ((f = TAILQ_FIRST(&c->inflight)) != NULL) {
		TAILQ_REMOVE(&c->inflight, f, entry);
		waiter_putback_key(f->key, &f->msg, f->len, f->slot);
		free(f);
	}
	event_del(c->rev);
	event_del(c->wev);
	event_del(c->resume);
	event_del(c->tmo);
	event_del(c->closer);
	close(c->fd);
	c->fd = -1;
	TAILQ_REMOVE(&conns, c, entry);
	if (c->deferred) {
		TAILQ_REMOVE(&deferred, c, dentry);
		c->deferred = 0;
	}
	conns_count--;
	stats.conns_current--;
	if (event_base_once(base, -1, EV_TIMEOUT, free_cb, c, &zero) < 0)
		fatalx("event_base_once failed");
}

int
conn_alive(const struct conn *c)
{
	return c != NULL && !c->closing && !c->doomed;
}

/*
 * Close from inside a write: the callers up the stack (a handler, a
 * delivery) still hold this connection and its waiters, so the close
 * waits for the next loop pass. Until then it takes no more messages
 * (conn_alive is false) and what is written to it is dropped.
 */
static void
conn_doom(struct conn *c, const char *why)
{
	struct timeval zero = { 0, 0 };

	if (c->doomed || c->closing)
		return;
	c->doomed = 1;
	c->out_len = 0;		/* nothing more will reach the client */
	c->doom_reason = why;
	evtimer_add(c->closer, &zero);
}

static void
closer_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct conn *c = arg;

	(void)fd; (void)ev;
	conn_close(c, c->doom_reason);
}

/* Too much unread output: consumers are not fed, reading pauses. */
int
conn_backlogged(const struct conn *c)
{
	return c->out_len >= OUT_HIGH_WATER;
}

struct peer *
conn_peer(struct conn *c)
{
	return &c->peer;
}

/* May this client read (or write) a queue or segment? */
int
conn_may(struct conn *c, const struct access *a, int write)
{
	return write ? acl_allows(&a->write_users, &a->write_groups,
	    &c->peer) : acl_allows(&a->read_users, &a->read_groups, &c->peer);
}

struct waiterq *
conn_waiters(struct conn *c)
{
	return &c->waiters;
}

int *
conn_nwaits(struct conn *c)
{
	return &c->nwaits;
}

void
conn_set_held(struct conn *c, struct waiter *w)
{
	c->held = w;
}

/* Read only when we can act on what arrives. */
static void
update_events(struct conn *c)
{
	int want;

	if (c->closing)
		return;
	want = !c->eof && c->held == NULL && !conn_backlogged(c);
	if (want && !c->reading)
		event_add(c->rev, NULL);
	else if (!want && c->reading)
		event_del(c->rev);
	c->reading = want;
}

/*
 * Handle lines already buffered, on the next loop pass. A timer, never
 * event_active on the read event: libevent does not put an active event
 * into epoll, so an event_add before it runs would leave the connection
 * deaf for good.
 */
static void
kick_input(struct conn *c)
{
	evtimer_add(c->resume, &resume_tv);
}

/*
 * A buffer of several MiB was freed (a big blob went in or out). glibc
 * keeps big freed blocks in its heap once it has raised its mmap
 * threshold, and 16 MiB blobs left tens of MiB resident for good; so once
 * no big buffer has been freed for TRIM_DELAY_MS, the memory goes back to
 * the kernel. Not at once: trimming between the blobs of a stream made
 * each one fault its pages in again (16 MiB puts 30% slower).
 */
#define TRIM_DELAY_MS	1000

#ifdef __GLIBC__
static struct event *trim_ev;
static struct event_base *trim_base;

static void
trim_cb(evutil_socket_t fd, short ev, void *arg)
{
	(void)fd; (void)ev; (void)arg;
	malloc_trim(0);
}
#endif

static void
big_freed(size_t cap)
{
#ifdef __GLIBC__
	static const struct timeval tv = { TRIM_DELAY_MS / 1000,
	    (TRIM_DELAY_MS % 1000) * 1000 };

	if (cap < BIG_BUFFER)
		return;
	if (trim_base != base) {	/* a new loop (tests make several) */
		if ((trim_ev = evtimer_new(base, trim_cb, NULL)) == NULL)
			return;
		trim_base = base;
	}
	evtimer_add(trim_ev, &tv);
#else
	(void)cap;
#endif
}

static int
reserve_out(struct conn *c, size_t n)
{
	size_t cap;
	char *p;

	if (c->out_off > 0 && c->out_off + c->out_len + n > c->out_cap) {
		memmove(c->out, c->out + c->out_off, c->out_len);
		c->out_off = 0;
	}
	if (c->out_off + c->out_len + n <= c->out_cap)
		return 0;
	cap = c->out_cap ? c->out_cap : 4096;
	while (cap < c->out_len + n)
		cap *= 2;
	if ((p = realloc(c->out, cap)) == NULL)
		return -1;
	c->out = p;
	c->out_cap = cap;
	return 0;
}

/*
 * n bytes at the end of the output for the caller to fill (a blob encoded
 * straight into place); NULL when the connection is closing or would go
 * over max_output_bytes (it is then doomed).
 */
char *
conn_append(struct conn *c, size_t n)
{
	char *p;

	if (c->closing || c->doomed)
		return NULL;
	if (c->out_len + n > cfg->max_output_bytes) {
		log_warnx("conn %llu (uid %d pid %d): %zu bytes of replies "
		    "unread, over max_output_bytes (%zu); disconnecting",
		    (unsigned long long)c->serial, (int)c->peer.uid,
		    (int)c->peer.pid, c->out_len + n, cfg->max_output_bytes);
		conn_doom(c, "client does not read its replies");
		return NULL;
	}
	if (reserve_out(c, n) < 0) {
		conn_doom(c, "out of memory for output");
		return NULL;
	}
	p = c->out + c->out_off + c->out_len;
	c->out_len += n;
	c->out_appended += n;
	return p;
}

void
conn_write_raw(struct conn *c, const char *buf, size_t n)
{
	char *p;

	if ((p = conn_append(c, n)) != NULL)
		memcpy(p, buf, n);
}

static int
dump_cb(const char *buf, size_t n, void *arg)
{
	conn_write_raw(arg, buf, n);
	return 0;
}

void
conn_write_json(struct conn *c, json_t *j)
{
	if (c->closing)
		return;
	json_dump_callback(j, dump_cb, c, JSON_COMPACT);
	conn_write_raw(c, "\n", 1);
}

/* Write what we can; -1 when the peer is gone (the caller closes). */
static int
flush_out(struct conn *c)
{
	struct inflight *f;
	ssize_t n;

	while (c->out_len > 0) {
		n = sock_calls.send(c->fd, c->out + c->out_off, c->out_len,
		    MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return -1;
		}
		c->out_off += (size_t)n;
		c->out_len -= (size_t)n;
		c->out_written += (uint64_t)n;
		stats.bytes_out += (uint64_t)n;
	}
	if (!TAILQ_EMPTY(&c->inflight) &&
	    TAILQ_FIRST(&c->inflight)->mark <= c->out_written)
		FAULT_POINT("after_reply");	/* written, slot still held */
	while ((f = TAILQ_FIRST(&c->inflight)) != NULL &&
	    f->mark <= c->out_written) {
		TAILQ_REMOVE(&c->inflight, f, entry);
		journal_release(f->slot);
		free(f);
	}
	if (c->stalled && !conn_backlogged(c)) {
		c->stalled = 0;
		kick_input(c);		/* lines wait for us */
	}
	if (c->out_len == 0) {
		c->out_off = 0;
		if (c->out_cap > 4096) {	/* keep only a small one */
			free(c->out);
			big_freed(c->out_cap);
			c->out = NULL;
			c->out_cap = 0;
		}
	}
	if (c->out_len > 0 && !c->writing) {
		event_add(c->wev, NULL);
		c->writing = 1;
	} else if (c->out_len == 0 && c->writing) {
		event_del(c->wev);
		c->writing = 0;
	}
	return 0;
}

/* Flush; a dead peer dooms the connection (closed on the next pass).
 * Returns -1 if it is closing. */
int
conn_flush(struct conn *c)
{
	if (c->closing || c->doomed)
		return -1;
	if (flush_out(c) < 0) {
		conn_doom(c, strerror(errno));
		return -1;
	}
	update_events(c);
	maybe_finish(c);
	return c->doomed ? -1 : 0;
}

/*
 * Remember a delivered message until its reply bytes have left, so that a
 * connection that dies first gets it put back on its queue.
 */
int
conn_track_delivery(struct conn *c, key_t key, const struct ipcb_msg *m,
    size_t len, int slot)
{
	struct inflight *f;

	if (c->doomed || c->closing) {	/* its reply was dropped */
		waiter_putback_key(key, m, len, slot);
		return -1;
	}
	if (flush_out(c) < 0) {
		waiter_putback_key(key, m, len, slot);
		conn_doom(c, strerror(errno));
		return -1;
	}
	if (c->out_written >= c->out_appended) {
		FAULT_POINT("after_reply");	/* written, slot still held */
		journal_release(slot);	/* the reply is out: done */
	} else {
		if ((f = malloc(sizeof(*f) + len)) == NULL) {
			waiter_putback_key(key, m, len, slot);
			conn_doom(c, "out of memory");
			return -1;
		}
		f->mark = c->out_appended;
		f->slot = slot;
		f->key = key;
		f->len = len;
		f->msg.mtype = m->mtype;
		memcpy(f->msg.mtext, m->mtext, len);
		TAILQ_INSERT_TAIL(&c->inflight, f, entry);
	}
	update_events(c);
	return 0;
}

static void
write_cb(evutil_socket_t fd, short ev, void *arg)
{
	(void)fd; (void)ev;
	conn_flush(arg);
}

/* Grow the input buffer so a read of READ_CHUNK fits. */
static int
reserve_in(struct conn *c)
{
	size_t cap;
	char *p;

	if (c->in_start > 0 && c->in_len + READ_CHUNK > c->in_cap) {
		memmove(c->in, c->in + c->in_start, c->in_len - c->in_start);
		c->in_len -= c->in_start;
		c->in_scan -= c->in_start;
		c->in_start = 0;
	}
	if (c->in_len + READ_CHUNK <= c->in_cap)
		return 0;
	cap = c->in_cap ? c->in_cap * 2 : READ_CHUNK;
	while (cap < c->in_len + READ_CHUNK)
		cap *= 2;
	if ((p = realloc(c->in, cap)) == NULL)
		return -1;
	c->in = p;
	c->in_cap = cap;
	return 0;
}

/* The replies to what was just read: now, or after the loop pass. */
static void
flush_soon(struct conn *c)
{
	if (!conn_defer_flush) {
		conn_flush(c);
		return;
	}
	if (!c->deferred) {
		c->deferred = 1;
		TAILQ_INSERT_TAIL(&deferred, c, dentry);
	}
}

/* After each loop pass (main): write what the pass produced. */
void
conns_flush_deferred(void)
{
	struct conn *c;

	while ((c = TAILQ_FIRST(&deferred)) != NULL) {
		TAILQ_REMOVE(&deferred, c, dentry);
		c->deferred = 0;
		conn_flush(c);
	}
}

static void
read_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct conn *c = arg;
	ssize_t n;

	(void)fd; (void)ev;
	if (c->closing)
		return;
	if (c->reading) {
		if (reserve_in(c) < 0) {
			conn_close(c, "out of memory for input");
			return;
		}
		n = sock_calls.recv(c->fd, c->in + c->in_len,
		    c->in_cap - c->in_len, 0);
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
		    errno != EINTR) {
			conn_close(c, strerror(errno));
			return;
		}
		if (n == 0)
			c->eof = 1;
		if (n > 0) {
			c->in_len += (size_t)n;
			stats.bytes_in += (uint64_t)n;
		}
	}
	process_input(c);
	if (!c->closing)
		flush_soon(c);
	if (!c->closing)
		arm_timeout(c);
}

/*
 * Partial-line timeout: a line must not take longer than
 * partial_line_timeout_ms to arrive (slowloris). Idle timeout: a
 * connection with nothing buffered, waiting or unread is closed after
 * idle_timeout_ms. One timer per connection serves both.
 */
/* Is a line only partly here? Complete lines waiting their turn (behind a
 * held wait, the backlog or the per-pass limit) do not count. */
static int
partial_line(const struct conn *c)
{
	return c->discarding ||
	    (c->in_start < c->in_len && c->in[c->in_len - 1] != '\n');
}

static void
arm_timeout(struct conn *c)
{
	uint64_t now = now_ms(), due = 0, t;
	struct timeval tv;

	if (partial_line(c)) {
		if (c->partial_since == 0)
			c->partial_since = now;
	} else
		c->partial_since = 0;
	if (c->partial_since != 0 && cfg->partial_line_timeout_ms > 0)
		due = c->partial_since + (uint64_t)cfg->partial_line_timeout_ms;
	if (cfg->idle_timeout_ms > 0) {
		t = c->active_ms + (uint64_t)cfg->idle_timeout_ms;
		if (due == 0 || t < due)
			due = t;
	}
	if (due == 0) {
		event_del(c->tmo);
		return;
	}
	t = due > now ? due - now : 0;
	tv.tv_sec = (time_t)(t / 1000);
	tv.tv_usec = (suseconds_t)(t % 1000) * 1000;
	evtimer_add(c->tmo, &tv);
}

static void
tmo_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct conn *c = arg;
	uint64_t now = now_ms();

	(void)fd; (void)ev;
	if (partial_line(c) && c->partial_since != 0 &&
	    cfg->partial_line_timeout_ms > 0 &&
	    now - c->partial_since >= (uint64_t)cfg->partial_line_timeout_ms) {
		log_warnx("conn %llu (uid %d pid %d): a line took over "
		    "partial_line_timeout_ms (%d); disconnecting",
		    (unsigned long long)c->serial, (int)c->peer.uid,
		    (int)c->peer.pid, cfg->partial_line_timeout_ms);
		conn_close(c, "partial line timeout");
		return;
	}
	if (cfg->idle_timeout_ms > 0 && c->held == NULL && c->nwaits == 0 &&
	    c->out_len == 0 && c->in_start == c->in_len &&
	    now - c->active_ms >= (uint64_t)cfg->idle_timeout_ms) {
		conn_close(c, "idle timeout");
		return;
	}
	if (cfg->idle_timeout_ms > 0)
		c->active_ms = c->held || c->nwaits || c->out_len ? now :
		    c->active_ms;
	arm_timeout(c);
}

static void
resume_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct conn *c = arg;

	(void)fd; (void)ev;
	process_input(c);
	if (!c->closing)
		flush_soon(c);
	if (!c->closing)
		arm_timeout(c);
}

static int
ignorable(const char *line, size_t len)
{
	size_t i;

	for (i = 0; i < len && (line[i] == ' ' || line[i] == '\t'); i++)
		;
	return i == len || line[i] == '#';
}

/* Returns whether the line was a request (for the idle clock). */
static int
handle_line(struct conn *c, const char *line, size_t len)
{
	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (len > cfg->max_line_bytes) {
		reply_error(c, NULL, ERR_LINE_TOO_LONG, NULL,
		    "line longer than max_line_bytes (%zu); discarded",
		    cfg->max_line_bytes);
		return 0;
	}
	if (ignorable(line, len))
		return 0;
	proto_line(c, line, len);
	return 1;
}

/* Frame and handle complete lines, a bounded number per call. */
static void
process_input(struct conn *c)
{
	const char *line;
	char *nl;
	size_t len;
	int lines = 0, requests = 0;

	while (!c->closing && !c->doomed && c->held == NULL &&
	    c->in_start < c->in_len) {
		if (conn_backlogged(c)) {
			c->stalled = 1;
			break;
		}
		if (lines++ == LINES_PER_READ) {
			/*
			 * Let other clients in. A timer, not event_active:
			 * libevent runs re-activated events before it polls
			 * again, which would starve everyone else.
			 */
			kick_input(c);
			break;
		}
		if (c->in_scan < c->in_start)
			c->in_scan = c->in_start;
		nl = memchr(c->in + c->in_scan, '\n', c->in_len - c->in_scan);
		if (nl == NULL) {
			c->in_scan = c->in_len;
			len = c->in_len - c->in_start;
			if (c->discarding) {
				c->in_start = c->in_scan = c->in_len;
				break;
			}
			if (len > cfg->max_line_bytes + 1) {
				c->discarding = 1;
				c->in_start = c->in_scan = c->in_len;
				break;
			}
			if (!c->eof)
				break;
			/* a last line without its newline */
			c->in_start = c->in_len;
			requests += handle_line(c, c->in + c->in_len - len,
			    len);
			continue;
		}
		len = (size_t)(nl - (c->in + c->in_start));
		line = c->in + c->in_start;
		c->in_start = c->in_scan = (size_t)(nl - c->in) + 1;
		if (!c->discarding) {
			requests += handle_line(c, line, len);
			continue;
		}
		c->discarding = 0;
		reply_error(c, NULL, ERR_LINE_TOO_LONG, NULL,
		    "line longer than max_line_bytes (%zu); discarded",
		    cfg->max_line_bytes);
	}
	/* one clock read per batch of lines, not per request */
	if (requests > 0)
		c->active_ms = now_ms();
	if (c->eof && c->discarding && c->in_start == c->in_len) {
		/* the overlong line ended with the input, not a newline */
		c->discarding = 0;
		reply_error(c, NULL, ERR_LINE_TOO_LONG, NULL,
		    "line longer than max_line_bytes (%zu); discarded",
		    cfg->max_line_bytes);
	}
	if (c->in_start == c->in_len) {
		/* after a half-close, nothing can cancel a consumer: end them */
		if (c->eof)
			waiter_end_consumers(c);
		/* an idle connection holds no input buffer (bench: 9.4 KB
		 * per idle connection kept it; a 64 KiB malloc per read batch
		 * costs far less than the read itself) */
		c->in_start = c->in_scan = c->in_len = 0;
		free(c->in);
		big_freed(c->in_cap);
		c->in = NULL;
		c->in_cap = 0;
	}
	update_events(c);
}

/* A held wait finished: go on with the lines that queued up behind it. */
void
conn_hold_done(struct conn *c)
{
	c->held = NULL;
	if (c->closing)
		return;
	update_events(c);
	kick_input(c);
}

/* After a half-close, close once every reply and wait is done. */
static void
maybe_finish(struct conn *c)
{
	if (c->closing || !c->eof || c->held != NULL || c->nwaits > 0 ||
	    c->out_len > 0 || c->in_start < c->in_len)
		return;
	conn_doom(c, "client finished (half-close)");
}

/* SIGTERM: stop reading everyone; close each once its output is out. */
void
conns_shutdown(void)
{
	struct conn *c, *next;

	shutting_down = 1;
	for (c = TAILQ_FIRST(&conns); c != NULL; c = next) {
		next = TAILQ_NEXT(c, entry);
		c->eof = 1;
		c->in_start = c->in_len;
		update_events(c);
		conn_flush(c);
	}
}

int
conns_drained(void)
{
	return TAILQ_EMPTY(&conns);
}

/* Close whoever is left (shutdown timeout). */
void
conns_close_all(const char *reason)
{
	struct conn *c;

	while ((c = TAILQ_FIRST(&conns)) != NULL)
		conn_close(c, reason);
}
