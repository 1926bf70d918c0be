/*
 * waiter.c - receivers that wait, consumers, sends waiting for room, and
 * the timer that polls queues for them.
 *
 * SysV queues have no file descriptor, so while anyone waits a timer polls
 * with IPC_NOWAIT: one msgrcv per distinct selector per pass, oldest waiter
 * first, draining while messages keep coming. The interval adapts: every
 * HOT_US while traffic is recent (within HOT_WINDOW_MS of the last message
 * or new waiter), then doubling on each empty pass up to poll_interval_ms.
 * So delivery is fast during traffic and an idle waiter costs a few wake-
 * ups a second; with nobody waiting there is no timer at all.
 *
 * A message is taken off a queue only for a live waiter; if its reply
 * cannot be written, it goes back (same type) and is never dropped.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"

#define DRAIN_PER_PASS	1024
#define HOT_US		250	/* poll interval while traffic is recent */
#define HOT_WINDOW_MS	100	/* how long traffic counts as recent */
#define MAX_SELECTORS	32
#define STARVE_MS	20	/* lock waits before queueing in the kernel */
#define LOCK_SLICE_US	500	/* longest the loop then waits for it */

static struct ptimer *poll_timer;
static int poll_us = HOT_US;	/* current adaptive interval */
static uint64_t poll_due_us;
static uint64_t last_traffic_ms;
static int nwaiters;
static long next_consumer = 1;

static void	schedule(int us);

int
waiter_count(void)
{
	return nwaiters;
}

struct waiter *
waiter_new(enum waiter_kind kind, struct conn *c, struct queue *q, json_t *id)
{
	struct waiter *w;

	if ((w = calloc(1, sizeof(*w))) == NULL)
		fatalx("out of memory");
	w->kind = kind;
	w->slot = -1;
	w->conn = c;
	w->queue = q;
	if (id != NULL)
		w->id = json_incref(id);
	w->held = c != NULL && id == NULL && kind != W_CONSUME;
	if (kind == W_CONSUME)
		w->consumer = next_consumer++;
	return w;
}

static void waiter_free(struct waiter *);

/* Drop a waiter that was never parked (its request failed validation). */
void
waiter_discard(struct waiter *w)
{
	waiter_free(w);
}

static void
waiter_free(struct waiter *w)
{
	json_decref(w->id);
	free(w->arg);
	free(w->msg);
	free(w);
}

/* Start waiting: join the queue's list and the connection's, arm polling. */
void
waiter_park(struct waiter *w)
{
	struct queue *q = w->queue;

	if (w->kind == W_LOCK) {
		TAILQ_INSERT_TAIL(&w->seg->lockers, w, qentry);
		w->seg->nlockers++;
	} else if (w->kind == W_SEND)
		TAILQ_INSERT_TAIL(&q->senders, w, qentry);
	else
		TAILQ_INSERT_TAIL(&q->receivers, w, qentry);
	if (w->kind == W_LOCK)
		;
	else if (w->kind == W_CONSUME)
		q->nconsumers++;
	else if (w->conn != NULL)
		q->nwaiting++;
	else
		q->nputbacks++;
	if (w->conn != NULL) {
		TAILQ_INSERT_TAIL(conn_waiters(w->conn), w, centry);
		if (w->held)
			conn_set_held(w->conn, w);
		else
			(*conn_nwaits(w->conn))++;
	}
	nwaiters++;
	waiter_kick();
}

/* Leave every list; the caller replies (or not) and frees. */
static void
unlink_waiter(struct waiter *w)
{
	struct queue *q = w->queue;

	if (w->kind == W_LOCK) {
		TAILQ_REMOVE(&w->seg->lockers, w, qentry);
		w->seg->nlockers--;
	} else if (w->kind == W_SEND)
		TAILQ_REMOVE(&q->senders, w, qentry);
	else
		TAILQ_REMOVE(&q->receivers, w, qentry);
	if (w->kind == W_LOCK)
		;
	else if (w->kind == W_CONSUME)
		q->nconsumers--;
	else if (w->conn != NULL)
		q->nwaiting--;
	else
		q->nputbacks--;
	if (w->conn != NULL) {
		TAILQ_REMOVE(conn_waiters(w->conn), w, centry);
		if (!w->held)
			(*conn_nwaits(w->conn))--;
	}
	nwaiters--;
}

/* A parked or held wait is over: unlink, reply, let a held conn go on. */
static void
finish(struct waiter *w, int parked, json_t *result, int code,
    const char *msg)
{
	struct conn *c = w->conn;
	int held = w->held;

	if (parked)
		unlink_waiter(w);
	if (c != NULL && conn_alive(c)) {
		if (result != NULL)
			reply_result(c, w->id, result);
		else
			reply_error(c, w->id, code, NULL, "%s", msg);
		if (held && parked)
			conn_hold_done(c);
		conn_flush(c);
	} else
		json_decref(result);
	waiter_free(w);
}

static struct waiter *
client_sender(struct queue *q)
{
	struct waiter *w;

	TAILQ_FOREACH(w, &q->senders, qentry) {
		if (w->conn != NULL)
			return w;
	}
	return NULL;
}

/*
 * A put-back that cannot succeed now or later. A message still in the
 * journal stays there (the next start tries again); only one held in
 * memory alone is lost.
 */
static void
putback_failed(const struct ipcb_msg *m, size_t len, int slot,
    const char *why)
{
	if (slot >= 0) {
		log_warnx("put-back of a type %ld message of %zu bytes failed "
		    "(%s); it stays in the journal for the next start",
		    m->mtype, len, why);
		return;
	}
	stats.lost++;
	log_warnx("LOST a type %ld message of %zu bytes: put-back failed: %s",
	    m->mtype, len, why);
}

/* Put a message that could not be delivered back on its queue; its
 * journal slot (if any) is freed once it is back. */
void
waiter_putback(struct queue *q, const struct ipcb_msg *m, size_t len,
    int slot)
{
	struct waiter *w;
	char err[512];
	int code;

	code = queue_send(q, m, len, err, sizeof(err));
	if (code == ERR_QUEUE_REMOVED && q->msqid >= 0)	/* re-created */
		code = queue_send(q, m, len, err, sizeof(err));
	if (code == ERR__OK) {
		stats.msgs_sent--;	/* not a new message */
		stats.putbacks++;
		FAULT_POINT("after_putback");	/* back, slot still held */
		journal_release(slot);
		log_debug("queue \"%s\": put back a type %ld message",
		    q->conf.name, m->mtype);
		return;
	}
	if (code != ERR_QUEUE_FULL) {
		putback_failed(m, len, slot, err);
		return;
	}
	/* full: retry on the timer, never drop */
	w = waiter_new(W_SEND, NULL, q, NULL);
	if ((w->msg = malloc(sizeof(*m) + len)) == NULL)
		fatalx("out of memory");
	memcpy(w->msg, m, sizeof(*m) + len);
	w->len = len;
	w->slot = slot;
	waiter_park(w);
}

/* Put back by key: the queue may have left the config since delivery. */
void
waiter_putback_key(key_t key, const struct ipcb_msg *m, size_t len, int slot)
{
	struct queue *q;

	if ((q = queue_by_key(key)) == NULL)
		q = queue_retired(key);
	if (q == NULL) {
		putback_failed(m, len, slot, "its queue cannot be opened");
		return;
	}
	waiter_putback(q, m, len, slot);
}

/* data_b64 of the bytes into obj. */
static void
put_b64(json_t *obj, const char *data, size_t len)
{
	char *b;

	if ((b = malloc(b64_encoded_len(len) + 1)) == NULL)
		fatalx("out of memory");
	b64_encode(data, len, b);
	json_object_set_new(obj, "data_b64",
	    json_stringn_nocheck(b, b64_encoded_len(len)));
	free(b);
}

/*
 * A payload into obj as text, data_b64 or a decoded value. Bytes that do
 * not decode as json/php come as data_b64 with decode_error, never
 * dropped; -1 only when text was forced and the bytes are not UTF-8.
 */
int
payload_put(json_t *obj, const char *data, size_t len, enum encoding enc)
{
	json_error_t jerr;
	json_t *s = NULL;
	char err[256];
	int code;

	if (enc == ENC_JSON || enc == ENC_PHP) {
		if (enc == ENC_JSON) {
			s = json_loadb(data, len, JSON_DECODE_ANY, &jerr);
			if (s == NULL)
				snprintf(err, sizeof(err), "not JSON: %s at "
				    "byte %d", jerr.text, jerr.position);
		} else
			s = phpser_decode(data, len, &code, err, sizeof(err));
		if (s != NULL) {
			json_object_set_new(obj, "value", s);
			return 0;
		}
		put_b64(obj, data, len);
		json_object_set_new(obj, "decode_error", json_string(err));
		return 0;
	}
	if (enc != ENC_BASE64 && memchr(data, '\0', len) == NULL)
		s = json_stringn(data, len);
	if (s != NULL) {
		json_object_set_new(obj, "text", s);
		return 0;
	}
	if (enc == ENC_TEXT)
		return -1;
	put_b64(obj, data, len);
	return 0;
}

static json_t *
msg_json(struct queue *q, const struct ipcb_msg *m, size_t len,
    enum encoding enc)
{
	json_t *j;

	j = json_pack("{s:s, s:I, s:I}", "queue", q->conf.name,
	    "type", (json_int_t)m->mtype, "bytes", (json_int_t)len);
	if (payload_put(j, m->mtext, len, enc) < 0) {
		json_decref(j);
		return NULL;
	}
	return j;
}

/*
 * Hand a message just taken off the queue to a waiter. Returns 0 when the
 * waiter is done (a recv), 1 when it stays (a consumer).
 */
static int
deliver(struct waiter *w, int parked, const struct ipcb_msg *m, size_t len,
    int slot)
{
	struct conn *c = w->conn;
	struct queue *q = w->queue;
	json_t *j;

	j = msg_json(q, m, len, w->encoding);
	if (j == NULL) {
		waiter_putback(q, m, len, slot);
		if (w->kind == W_CONSUME) {
			send_event(c, "consumer_end", json_pack(
			    "{s:I, s:{s:s, s:s}}", "consumer",
			    (json_int_t)w->consumer, "error", "code", "not_utf8",
			    "message", "a message is not UTF-8 and encoding is "
			    "text; it was put back"));
			unlink_waiter(w);
			waiter_free(w);
			conn_flush(c);
			return 0;
		}
		finish(w, parked, NULL, ERR_NOT_UTF8, "the message is not "
		    "UTF-8 text (it was put back; use encoding base64 or auto)");
		return 0;
	}
	if (w->ack) {
		/* the copy in ack.c covers the reply's whole life */
		json_object_set_new(j, "tag", json_integer((json_int_t)
		    ack_hold(c, q->conf.key, m, len, slot, w->kind == W_CONSUME ?
		    w->consumer : 0, w->ack_timeout_ms)));
		w->unacked++;
	}
	if (w->kind == W_CONSUME) {
		json_object_set_new(j, "consumer",
		    json_integer((json_int_t)w->consumer));
		send_event(c, "message", j);
		/* round robin among consumers */
		TAILQ_REMOVE(&q->receivers, w, qentry);
		TAILQ_INSERT_TAIL(&q->receivers, w, qentry);
		if (w->ack)
			conn_flush(c);
		else
			conn_track_delivery(c, q->conf.key, m, len, slot);
		return 1;
	}
	if (parked)
		unlink_waiter(w);
	reply_result(c, w->id, json_pack("{s:o, s:b}", "msg", j,
	    "timed_out", 0));
	if (w->held && parked)
		conn_hold_done(c);
	if (!w->ack)
		conn_track_delivery(c, q->conf.key, m, len, slot);
	if (conn_alive(c))
		conn_flush(c);
	waiter_free(w);
	return 0;
}

static int
same_selector(const struct ipcb_selector *a, const struct ipcb_selector *b)
{
	return a->match == b->match && a->type == b->type;
}

/* First try for a new receive: answer now, or park it. */
enum op_status
waiter_start(struct waiter *w)
{
	struct queue *q = w->queue;
	struct waiter *o;
	struct ipcb_msg *m;
	char err[512];
	size_t len;
	int code, rc, slot;

	/* older waiters on the same selector come first */
	TAILQ_FOREACH(o, &q->receivers, qentry) {
		if (o->kind == W_RECV && same_selector(&o->sel, &w->sel))
			break;
	}
	if (o != NULL && w->deadline_ms == 0) {
		/* the older waiters get any message first: nothing for us */
		finish(w, 0, json_pack("{s:n, s:b}", "msg", "timed_out", 0),
		    0, NULL);
		return OP_DONE;
	}
	if (o == NULL) {
		rc = queue_recv(q, &w->sel, &m, &len, &slot, &code, err,
		    sizeof(err));
		if (rc < 0) {
			finish(w, 0, NULL, code, err);
			return OP_DONE;
		}
		if (rc > 0) {
			deliver(w, 0, m, len, slot);
			return OP_DONE;
		}
		if (w->deadline_ms == 0) {
			finish(w, 0, json_pack("{s:n, s:b}", "msg",
			    "timed_out", 0), 0, NULL);
			return OP_DONE;
		}
	}
	waiter_park(w);
	return OP_PARKED;
}

/*
 * Replying can close a connection, and closing frees all its waiters, so
 * the loops below never keep a pointer to the next waiter across a reply:
 * they start again from the head of the list instead.
 */

/* The first sender with a client whose deadline passed. */
static struct waiter *
expired_sender(struct queue *q, uint64_t now)
{
	struct waiter *w;

	TAILQ_FOREACH(w, &q->senders, qentry) {
		if (w->conn != NULL && w->deadline_ms <= now)
			return w;
	}
	return NULL;
}

void
serve_senders(struct queue *q, uint64_t now)
{
	struct waiter *w;
	char err[512];
	int code;

	while ((w = TAILQ_FIRST(&q->senders)) != NULL) {
		code = queue_send(q, w->msg, w->len, err, sizeof(err));
		/* a put-back goes on to the queue re-created in its place,
		 * as waiter_putback does */
		if (w->conn == NULL && code == ERR_QUEUE_REMOVED &&
		    q->msqid >= 0)
			code = queue_send(q, w->msg, w->len, err, sizeof(err));
		if (code == ERR_QUEUE_FULL)
			break;	/* later senders must not overtake */
		if (w->conn != NULL) {
			if (code == ERR__OK)
				finish(w, 1, send_result(q, w->msg->mtype,
				    w->len), 0, NULL);
			else
				finish(w, 1, NULL, code, err);
			continue;
		}
		/* a put-back */
		if (code == ERR__OK) {
			stats.msgs_sent--;
			stats.putbacks++;
			journal_release(w->slot);
		} else
			putback_failed(w->msg, w->len, w->slot, err);
		unlink_waiter(w);
		waiter_free(w);
	}
	while ((w = expired_sender(q, now)) != NULL)
		finish(w, 1, NULL, ERR_QUEUE_FULL,
		    "queue still full when timeout_ms passed");
}

/* Selectors found empty during one poll pass over a queue. */
struct pass {
	struct ipcb_selector empty[MAX_SELECTORS];
	int		 nempty;
};

static int
known_empty(const struct pass *p, const struct ipcb_selector *sel)
{
	int i;

	for (i = 0; i < p->nempty; i++) {
		if (same_selector(&p->empty[i], sel))
			return 1;
	}
	return 0;
}

/* Deliver one message to the oldest waiter that has one; 0 if none. */
static int
serve_one(struct queue *q, struct pass *p)
{
	struct ipcb_msg *m;
	struct waiter *w;
	int rc, code, slot;
	char err[512];
	size_t len;

	if (journal_free_slots() == 0)	/* backpressure: nowhere to hold it */
		return 0;
	TAILQ_FOREACH(w, &q->receivers, qentry) {
		/* no message for a reply that could not be written yet,
		 * nor for a consumer whose prefetch window is full */
		if (!conn_alive(w->conn) || conn_backlogged(w->conn) ||
		    known_empty(p, &w->sel) ||
		    (w->ack && w->prefetch > 0 && w->unacked >= w->prefetch))
			continue;
		rc = queue_recv(q, &w->sel, &m, &len, &slot, &code, err,
		    sizeof(err));
		if (rc < 0) {
			waiter_fail_queue(q, code, err);
			return 0;
		}
		if (rc > 0) {
			deliver(w, 1, m, len, slot);
			return 1;
		}
		if (p->nempty < MAX_SELECTORS)
			p->empty[p->nempty++] = w->sel;
	}
	return 0;
}

static struct waiter *
expired_receiver(struct queue *q, uint64_t now)
{
	struct waiter *w;

	TAILQ_FOREACH(w, &q->receivers, qentry) {
		if (w->kind == W_RECV && w->deadline_ms <= now)
			return w;
	}
	return NULL;
}

static struct waiter *
expired_locker(struct segment *s, uint64_t now)
{
	struct waiter *w;

	TAILQ_FOREACH(w, &s->lockers, qentry) {
		if (w->deadline_ms <= now)
			return w;
	}
	return NULL;
}

/*
 * Requests waiting for a segment's lock, oldest first: run each under the
 * lock (released before the next), until the lock is busy.
 *
 * A worker that loops acquire-work-release gets the lock straight back
 * from the kernel, which hands a released semaphore to blocked waiters
 * first; IPC_NOWAIT polls would then starve. So once the oldest request
 * has waited STARVE_MS, the daemon queues in the kernel too, with
 * semtimedop bounded to LOCK_SLICE_US: the loop stalls at most that long
 * per pass, and only while a worker keeps the lock busy.
 */
static void
serve_lockers(struct segment *s, uint64_t now)
{
	struct waiter *w;
	char err[512];
	int rc, code = ERR_IPC;

	while ((w = TAILQ_FIRST(&s->lockers)) != NULL) {
		rc = segment_trylock(s, w->how, now - w->since_ms >= STARVE_MS ?
		    LOCK_SLICE_US : 0, &code, err, sizeof(err));
		if (rc == 0)
			break;
		if (rc < 0 && code == ERR_CORRUPT) {
			/* only this one: a repair behind it may still run */
			finish(w, 1, NULL, code, err);
			continue;
		}
		if (rc < 0) {
			waiter_fail_segment(s, code, err);
			return;
		}
		/* unlinked first: replying may close the connection */
		unlink_waiter(w);
		if (conn_alive(w->conn))
			w->run(w->conn, w->id, s, w->arg);
		segment_unlock(s);
		if (conn_alive(w->conn)) {
			if (w->held)
				conn_hold_done(w->conn);
			conn_flush(w->conn);
		}
		waiter_free(w);
	}
	while ((w = expired_locker(s, now)) != NULL) {
		snprintf(err, sizeof(err), "shm \"%s\": semaphore (key "
		    "0x%08x) still held by another process after the lock "
		    "timeout", s->conf.name, (unsigned)s->conf.sem_key);
		finish(w, 1, NULL, ERR_LOCK_TIMEOUT, err);
	}
}

/* Run a segment request under its lock now, or wait in line for it. */
enum op_status
waiter_lock(struct conn *c, json_t *id, struct segment *s, int how,
    locked_fn run, void *arg, int timeout_ms)
{
	struct waiter *w;
	char err[512];
	int rc, code = ERR_IPC;

	if (TAILQ_EMPTY(&s->lockers)) {
		rc = segment_trylock(s, how, 0, &code, err, sizeof(err));
		if (rc < 0) {
			reply_error(c, id, code, NULL, "%s", err);
			free(arg);
			return OP_DONE;
		}
		if (rc > 0) {
			run(c, id, s, arg);
			segment_unlock(s);
			free(arg);
			return OP_DONE;
		}
		if (timeout_ms == 0) {
			reply_error(c, id, ERR_LOCK_TIMEOUT, NULL, "shm \"%s\": "
			    "semaphore (key 0x%08x) held by another process",
			    s->conf.name, (unsigned)s->conf.sem_key);
			free(arg);
			return OP_DONE;
		}
	}
	if (id != NULL && *conn_nwaits(c) >= MAX_PARKED_PER_CONN) {
		reply_error(c, id, ERR_TOO_MANY_WAITS, NULL,
		    "at most %d waits per connection", MAX_PARKED_PER_CONN);
		free(arg);
		return OP_DONE;
	}
	w = waiter_new(W_LOCK, c, NULL, id);
	w->seg = s;
	w->run = run;
	w->how = how;
	w->arg = arg;
	w->since_ms = now_ms();
	w->deadline_ms = w->since_ms + (uint64_t)timeout_ms;
	waiter_park(w);
	return OP_PARKED;
}

/* A segment failed or left the config: end everyone waiting for it. */
void
waiter_fail_segment(struct segment *s, int code, const char *why)
{
	struct waiter *w;

	while ((w = TAILQ_FIRST(&s->lockers)) != NULL)
		finish(w, 1, NULL, code, why);
}

static void
poll_cb(void *arg)
{
	struct queue *q;
	struct segment *s;
	struct waiter *w;
	struct pass p;
	uint64_t now = now_ms();
	int total = 0;

	(void)arg;
	stats.polls++;
	queues_retired_serve(serve_senders, now);
	TAILQ_FOREACH(s, &segments, entry)
		serve_lockers(s, now);
	TAILQ_FOREACH(q, &queues, entry) {
		serve_senders(q, now);
		p.nempty = 0;
		while (total < DRAIN_PER_PASS && serve_one(q, &p))
			total++;
		while ((w = expired_receiver(q, now)) != NULL)
			finish(w, 1, json_pack("{s:n, s:b}", "msg",
			    "timed_out", 1), 0, NULL);
	}
	ack_expire(now);
	if (nwaiters == 0 && ack_count() == 0)
		return;
	/* adaptive: fast while traffic is recent, backing off when idle */
	if (total > 0)
		last_traffic_ms = now;
	if (now - last_traffic_ms < HOT_WINDOW_MS)
		poll_us = HOT_US;
	else if (poll_us < cfg->poll_interval_ms * 1000)
		poll_us = poll_us * 2 > cfg->poll_interval_ms * 1000 ?
		    cfg->poll_interval_ms * 1000 : poll_us * 2;
	schedule(total >= DRAIN_PER_PASS ? 0 : poll_us);
}

/* Something changed that a poll pass may act on: come soon. */
void
waiter_kick(void)
{
	last_traffic_ms = now_ms();
	poll_us = HOT_US;
	schedule(HOT_US);
}

/* A consumer's delivery was settled: its prefetch window has room. */
void
waiter_consumer_acked(struct conn *c, long consumer)
{
	struct waiter *w = waiter_find(c, NULL, consumer);

	if (w != NULL && w->unacked > 0) {
		w->unacked--;
		waiter_kick();
	}
}

/* Run the poll within us microseconds, unless it is already due sooner. */
static void
schedule(int us)
{
	uint64_t due = now_us() + (uint64_t)us;

	waiter_init();
	if (ptimer_armed(poll_timer) && poll_due_us <= due)
		return;
	poll_due_us = due;
	ptimer_arm(poll_timer, us);
}

/* The connection is going away: drop its waits without replying. */
void
waiter_cancel_conn(struct conn *c)
{
	struct waiter *w;

	while ((w = TAILQ_FIRST(conn_waiters(c))) != NULL) {
		unlink_waiter(w);
		if (w->held)
			conn_set_held(c, NULL);
		waiter_free(w);
	}
}

/* Half-close: consumers stop (their client will send no cancel). */
void
waiter_end_consumers(struct conn *c)
{
	struct waiter *w, *next;

	for (w = TAILQ_FIRST(conn_waiters(c)); w != NULL; w = next) {
		next = TAILQ_NEXT(w, centry);
		if (w->kind != W_CONSUME)
			continue;
		unlink_waiter(w);
		waiter_free(w);
	}
}

/* A queue failed (removed, reloaded away): end everyone waiting on it. */
void
waiter_fail_queue(struct queue *q, int code, const char *why)
{
	struct waiter *w;

	while ((w = TAILQ_FIRST(&q->receivers)) != NULL) {
		if (w->kind == W_CONSUME) {
			unlink_waiter(w);
			send_event(w->conn, "consumer_end", json_pack(
			    "{s:I, s:{s:s, s:s}}", "consumer",
			    (json_int_t)w->consumer, "error", "code",
			    err_name(code), "message", why));
			conn_flush(w->conn);
			waiter_free(w);
			continue;
		}
		finish(w, 1, NULL, code, why);
	}
	/* put-backs stay: serve_senders keeps trying them */
	while ((w = client_sender(q)) != NULL)
		finish(w, 1, NULL, code, why);
}

/* Find a parked wait of this connection by the id it was sent with. */
struct waiter *
waiter_find(struct conn *c, json_t *id, long consumer)
{
	struct waiter *w;

	TAILQ_FOREACH(w, conn_waiters(c), centry) {
		if (consumer != 0 && w->kind == W_CONSUME &&
		    w->consumer == consumer)
			return w;
		if (consumer == 0 && w->id != NULL && json_equal(w->id, id))
			return w;
	}
	return NULL;
}

void
waiter_cancel(struct waiter *w)
{
	if (w->kind == W_CONSUME) {
		unlink_waiter(w);
		waiter_free(w);
		return;
	}
	finish(w, 1, NULL, ERR_CANCELLED, "cancelled by the client");
}

/* SIGTERM: every client wait ends with shutting_down; put-backs stay. */
void
waiter_shutdown(void)
{
	struct queue *q;
	struct segment *s;
	struct waiter *w;

	TAILQ_FOREACH(q, &queues, entry) {
		while ((w = TAILQ_FIRST(&q->receivers)) != NULL) {
			if (w->kind == W_CONSUME) {
				unlink_waiter(w);
				waiter_free(w);
			} else
				finish(w, 1, NULL, ERR_SHUTTING_DOWN,
				    "the daemon is shutting down");
		}
		while ((w = client_sender(q)) != NULL)
			finish(w, 1, NULL, ERR_SHUTTING_DOWN,
			    "the daemon is shutting down");
	}
	TAILQ_FOREACH(s, &segments, entry)
		waiter_fail_segment(s, ERR_SHUTTING_DOWN,
		    "the daemon is shutting down");
}

/* Put-backs still waiting for room (counted as lost if we must exit). */
int
waiter_pending_putbacks(void)
{
	struct queue *q;
	int n = 0;

	TAILQ_FOREACH(q, &queues, entry)
		n += q->nputbacks;
	return n + queues_retired_putbacks();
}

/*
 * The poll timer. The daemon makes it at start, so that its descriptor
 * exists before clients can use up the descriptors; the test harnesses
 * get it on first use, after each waiter_exit().
 */
void
waiter_init(void)
{
	if (poll_timer == NULL)
		poll_timer = ptimer_new(poll_cb, NULL);
}

void
waiter_exit(void)
{
	ptimer_free(poll_timer);
	poll_timer = NULL;
}
