/*
 * ack.c - at-least-once delivery: messages handed out with ack: true.
 *
 * Each such delivery gets a tag and a copy of the message stays here until
 * the client confirms it (queue.ack) or gives it back (queue.nack). A
 * connection that closes, or a tag whose ack_timeout_ms passes, puts the
 * message back on its queue with its type, so a consumer that dies mid-way
 * loses nothing; the put-back is logged, because the message may then be
 * delivered twice.
 */
#include <stdlib.h>
#include <string.h>

#include "daemon.h"

struct unacked {
	TAILQ_ENTRY(unacked) entry;
	struct conn	*conn;
	uint64_t	 tag;
	long		 consumer;	/* 0 for a queue.recv */
	int		 slot;		/* its journal slot, or -1 */
	uint64_t	 deadline_ms;
	key_t		 key;
	size_t		 len;
	struct ipcb_msg	 msg;		/* followed by len bytes */
};

static TAILQ_HEAD(, unacked) unacked = TAILQ_HEAD_INITIALIZER(unacked);
static uint64_t next_tag = 1;
static int nunacked;

int
ack_count(void)
{
	return nunacked;
}

/* Keep a copy of a delivered message until it is acked; returns its tag. */
uint64_t
ack_hold(struct conn *c, key_t key, const struct ipcb_msg *m, size_t len,
    int slot, long consumer, int timeout_ms)
{
	struct unacked *u;

	if ((u = malloc(sizeof(*u) + len)) == NULL)
		fatalx("out of memory");
	u->conn = c;
	u->tag = next_tag++;
	u->consumer = consumer;
	u->slot = slot;
	u->deadline_ms = now_ms() + (uint64_t)timeout_ms;
	u->key = key;
	u->len = len;
	u->msg.mtype = m->mtype;
	memcpy(u->msg.mtext, m->mtext, len);
	TAILQ_INSERT_TAIL(&unacked, u, entry);
	nunacked++;
	waiter_kick();
	return u->tag;
}

static void
drop(struct unacked *u, const char *why)
{
	TAILQ_REMOVE(&unacked, u, entry);
	nunacked--;
	if (why != NULL) {
		log_info("redelivery: put back unacked tag %llu (type %ld, "
		    "%zu bytes): %s", (unsigned long long)u->tag,
		    u->msg.mtype, u->len, why);
		waiter_putback_key(u->key, &u->msg, u->len, u->slot);
		stats.redelivered++;
	} else
		journal_release(u->slot);
	if (u->consumer != 0 && conn_alive(u->conn))
		waiter_consumer_acked(u->conn, u->consumer);
	free(u);
}

/* queue.ack (putback 0) or queue.nack (putback 1); -1: not this
 * connection's tag, or already settled. */
int
ack_settle(struct conn *c, uint64_t tag, int putback)
{
	struct unacked *u;

	TAILQ_FOREACH(u, &unacked, entry) {
		if (u->tag == tag && u->conn == c)
			break;
	}
	if (u == NULL)
		return -1;
	if (putback)
		drop(u, "nacked by the client");
	else {
		stats.acked++;
		drop(u, NULL);
	}
	return 0;
}

/* The connection closed: everything it had not acked goes back. */
void
ack_conn_closed(struct conn *c)
{
	struct unacked *u, *next;

	for (u = TAILQ_FIRST(&unacked); u != NULL; u = next) {
		next = TAILQ_NEXT(u, entry);
		if (u->conn == c)
			drop(u, "the connection closed before acking");
	}
}

/* Put back what was not acked in time. */
void
ack_expire(uint64_t now)
{
	struct unacked *u, *next;

	for (u = TAILQ_FIRST(&unacked); u != NULL; u = next) {
		next = TAILQ_NEXT(u, entry);
		if (u->deadline_ms <= now)
			drop(u, "ack_timeout_ms passed");
	}
}
