/*
 * queue.c - the configured message queues, opened through libipcbridge.
 *
 * A struct queue lives as long as its [queue NAME] section: a reload keeps
 * queues whose name and key are unchanged (so their waiters stay parked),
 * opens new ones, and fails the waiters of queues that went away.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"

struct queueq queues = TAILQ_HEAD_INITIALIZER(queues);

/*
 * Queues that left the config (or were never in it) but still have
 * messages waiting to go back: kept until the last one is back.
 */
static struct queueq retired = TAILQ_HEAD_INITIALIZER(retired);

/* Messages no journal slot holds (no journal, or over its slot size). */
static struct ipcb_msgbuf rbuf;

static void
conf_copy(struct queue_conf *dst, const struct queue_conf *src)
{
	free(dst->name);
	free(dst->key_spec);
	access_free(&dst->access);
	*dst = *src;
	access_copy(&dst->access, &src->access);
	dst->name = strdup(src->name);
	dst->key_spec = strdup(src->key_spec);
	if (dst->name == NULL || dst->key_spec == NULL)
		fatalx("out of memory");
}

/* msgget (creating if configured) and apply max_bytes to a new queue. */
static int
open_one(struct queue *q, char *err, size_t errlen)
{
	int rc, created;

	rc = ipcb_msgq_open(q->conf.key, q->conf.mode, q->conf.create,
	    &q->msqid);
	if (rc < 0) {
		snprintf(err, errlen, "queue \"%s\" (key 0x%08x): msgget: %s%s",
		    q->conf.name, (unsigned)q->conf.key, strerror(-rc),
		    rc == -ENOENT ? " (create = no and no worker made it)" : "");
		return -1;
	}
	created = rc == 1;
	if (created && q->conf.max_bytes != 0) {
		rc = ipcb_msgq_set_qbytes(q->msqid, q->conf.max_bytes);
		if (rc < 0)
			log_warnx("queue \"%s\": cannot set max_bytes to %lu: %s%s",
			    q->conf.name, q->conf.max_bytes, strerror(-rc),
			    rc == -EPERM ? " (needs CAP_SYS_RESOURCE above "
			    "kernel.msgmnb)" : "");
	}
	log_info("queue \"%s\": key 0x%08x, msqid %d%s", q->conf.name,
	    (unsigned)q->conf.key, q->msqid, created ? " (created)" : "");
	return 0;
}

static struct queue *
queue_new(const struct queue_conf *qc)
{
	struct queue *q;

	if ((q = calloc(1, sizeof(*q))) == NULL)
		fatalx("out of memory");
	conf_copy(&q->conf, qc);
	q->msqid = -1;
	TAILQ_INIT(&q->receivers);
	TAILQ_INIT(&q->senders);
	return q;
}

static void
queue_free(struct queue *q)
{
	access_free(&q->conf.access);
	free(q->conf.name);
	free(q->conf.key_spec);
	free(q);
}

int
queues_open(const struct config *c, char *err, size_t errlen)
{
	struct queue *q;
	size_t i;

	for (i = 0; i < c->nqueues; i++) {
		q = queue_new(&c->queues[i]);
		if (open_one(q, err, errlen) < 0) {
			queue_free(q);
			queues_close();
			return -1;
		}
		TAILQ_INSERT_TAIL(&queues, q, entry);
	}
	return 0;
}

static struct queue *
find_in(struct queueq *list, const char *name)
{
	struct queue *q;

	TAILQ_FOREACH(q, list, entry) {
		if (strcmp(q->conf.name, name) == 0)
			return q;
	}
	return NULL;
}

/*
 * Apply a new config's queues. New or re-keyed queues are opened first, so
 * a failure changes nothing; then kept queues take their new settings and
 * dropped ones fail their waiters.
 */
int
queues_reload(const struct config *c)
{
	struct queueq added = TAILQ_HEAD_INITIALIZER(added);
	struct queueq fresh = TAILQ_HEAD_INITIALIZER(fresh);
	struct queue *q, *old;
	char err[512];
	size_t i;

	for (i = 0; i < c->nqueues; i++) {
		old = queue_find(c->queues[i].name);
		if (old != NULL && old->conf.key == c->queues[i].key)
			continue;
		q = queue_new(&c->queues[i]);
		TAILQ_INSERT_TAIL(&added, q, entry);
		if (open_one(q, err, sizeof(err)) == 0)
			continue;
		log_warnx("reload: %s; keeping the old queues", err);
		while ((q = TAILQ_FIRST(&added)) != NULL) {
			TAILQ_REMOVE(&added, q, entry);
			queue_free(q);
		}
		return -1;
	}
	for (i = 0; i < c->nqueues; i++) {
		old = queue_find(c->queues[i].name);
		if (old != NULL && old->conf.key == c->queues[i].key) {
			TAILQ_REMOVE(&queues, old, entry);
			conf_copy(&old->conf, &c->queues[i]);
			TAILQ_INSERT_TAIL(&fresh, old, entry);
			continue;
		}
		q = find_in(&added, c->queues[i].name);
		TAILQ_REMOVE(&added, q, entry);
		TAILQ_INSERT_TAIL(&fresh, q, entry);
	}
	while ((old = TAILQ_FIRST(&queues)) != NULL) {
		log_info("reload: queue \"%s\" (key 0x%08x) is no longer served",
		    old->conf.name, (unsigned)old->conf.key);
		TAILQ_REMOVE(&queues, old, entry);
		waiter_fail_queue(old, ERR_NOT_FOUND,
		    "queue was removed from the config by a reload");
		if (old->nputbacks > 0)
			TAILQ_INSERT_TAIL(&retired, old, entry);
		else
			queue_free(old);
	}
	TAILQ_CONCAT(&queues, &fresh, entry);
	return 0;
}

void
queues_close(void)
{
	struct queue *q;

	while ((q = TAILQ_FIRST(&queues)) != NULL) {
		TAILQ_REMOVE(&queues, q, entry);
		queue_free(q);
	}
	while ((q = TAILQ_FIRST(&retired)) != NULL) {
		TAILQ_REMOVE(&retired, q, entry);
		queue_free(q);
	}
	ipcb_msgbuf_free(&rbuf);
}

struct queue *
queue_by_key(key_t key)
{
	struct queue *q;

	TAILQ_FOREACH(q, &queues, entry) {
		if (q->conf.key == key)
			return q;
	}
	return NULL;
}

/* A retired queue for key, to put messages back on; NULL if none exists. */
struct queue *
queue_retired(key_t key)
{
	struct queue_conf qc;
	struct queue *q;
	char spec[16], err[512];

	TAILQ_FOREACH(q, &retired, entry) {
		if (q->conf.key == key)
			return q;
	}
	memset(&qc, 0, sizeof(qc));
	snprintf(spec, sizeof(spec), "0x%08x", (unsigned)key);
	qc.name = spec;
	qc.key_spec = spec;
	qc.key = key;
	q = queue_new(&qc);
	if (open_one(q, err, sizeof(err)) < 0) {
		log_warnx("%s", err);
		queue_free(q);
		return NULL;
	}
	TAILQ_INSERT_TAIL(&retired, q, entry);
	return q;
}

/* Retry the put-backs of retired queues; free those that are done. */
void
queues_retired_serve(void (*serve)(struct queue *, uint64_t), uint64_t now)
{
	struct queue *q, *next;

	for (q = TAILQ_FIRST(&retired); q != NULL; q = next) {
		next = TAILQ_NEXT(q, entry);
		serve(q, now);
		if (TAILQ_EMPTY(&q->senders)) {
			TAILQ_REMOVE(&retired, q, entry);
			queue_free(q);
		}
	}
}

int
queues_retired_putbacks(void)
{
	struct queue *q;
	int n = 0;

	TAILQ_FOREACH(q, &retired, entry)
		n += q->nputbacks;
	return n;
}

struct queue *
queue_find(const char *name)
{
	return find_in(&queues, name);
}

/* The queue's id went stale (ipcrm): open the key again. */
int
queue_reopen(struct queue *q)
{
	char err[512];

	log_warnx("queue \"%s\" (key 0x%08x, msqid %d) was removed "
	    "underneath the daemon", q->conf.name, (unsigned)q->conf.key,
	    q->msqid);
	if (open_one(q, err, sizeof(err)) < 0) {
		log_warnx("%s", err);
		q->msqid = -1;
		return -1;
	}
	return 0;
}

/* The error code a client sees for a failed SysV call's errno. */
int
queue_errno_code(int e)
{
	switch (e) {
	case EIDRM:
	case EINVAL:
		return ERR_QUEUE_REMOVED;
	case EACCES:
	case EPERM:
		return ERR_PERMISSION_DENIED;
	default:
		return ERR_IPC;
	}
}

/*
 * msgsnd without waiting. Returns ERR__OK, ERR_QUEUE_FULL (retryable), or
 * another code with err describing what happened. A stale id (the queue
 * was removed underneath us) is answered queue_removed, and the key is
 * opened again for the next request.
 */
int
queue_send(struct queue *q, const struct ipcb_msg *m, size_t len, char *err,
    size_t errlen)
{
	struct msqid_ds ds;
	int rc;

	if (q->msqid < 0 && queue_reopen(q) < 0) {
		snprintf(err, errlen, "queue \"%s\" (key 0x%08x) is gone and "
		    "could not be opened again", q->conf.name,
		    (unsigned)q->conf.key);
		return ERR_QUEUE_REMOVED;
	}
	rc = ipcb_msgq_send(q->msqid, m, len, IPC_NOWAIT);
	if (rc == 0) {
		FAULT_POINT("after_msgsnd");
		stats.msgs_sent++;
		return ERR__OK;
	}
	if (rc == -EAGAIN) {
		if (ipcb_msgq_stat(q->msqid, &ds) == 0 && len > ds.msg_qbytes) {
			snprintf(err, errlen, "queue \"%s\": message of %zu "
			    "bytes can never fit (max_bytes %lu)", q->conf.name,
			    len, (unsigned long)ds.msg_qbytes);
			return ERR_MSG_TOO_BIG;
		}
		snprintf(err, errlen, "queue \"%s\": msgsnd: queue full",
		    q->conf.name);
		return ERR_QUEUE_FULL;
	}
	if (rc == -EINVAL && len > ipcb_msgmax()) {
		snprintf(err, errlen, "queue \"%s\": message of %zu bytes is "
		    "over the kernel's msgmax (%zu)", q->conf.name, len,
		    ipcb_msgmax());
		return ERR_MSG_TOO_BIG;
	}
	snprintf(err, errlen, "queue \"%s\" (key 0x%08x, msqid %d): msgsnd: %s",
	    q->conf.name, (unsigned)q->conf.key, q->msqid, strerror(-rc));
	rc = queue_errno_code(-rc);
	if (rc == ERR_QUEUE_REMOVED)
		queue_reopen(q);
	return rc;
}

/*
 * msgrcv without waiting into buf. Returns 1 with *len set, 0 when no
 * message matches, -1 with *code and err set on failure.
 */
int
queue_recv(struct queue *q, const struct ipcb_selector *sel,
    struct ipcb_msg **m, size_t *len, int *slot, int *code, char *err,
    size_t errlen)
{
	size_t cap;
	ssize_t n;

	if (q->msqid < 0 && queue_reopen(q) < 0) {
		*code = ERR_QUEUE_REMOVED;
		snprintf(err, errlen, "queue \"%s\" (key 0x%08x) is gone and "
		    "could not be opened again", q->conf.name,
		    (unsigned)q->conf.key);
		return -1;
	}
	if (journal_free_slots() == 0) {	/* backpressure, never a drop */
		log_warnx("journal full: not taking messages until held ones "
		    "are written, acked or put back");
		return 0;
	}
	/* straight into a journal slot, so a crash cannot lose it */
	if ((*slot = journal_take(q->conf.key, m, &cap)) >= 0) {
		n = ipcb_msgq_recv_into(q->msqid, sel, *m, cap, IPC_NOWAIT);
		if (n >= 0)
			FAULT_POINT("mid_receive");	/* taken, not recorded */
		if (n >= 0)
			journal_commit(*slot, (size_t)n);
		else
			journal_release(*slot);
		if (n == -E2BIG) {	/* msgmax grew since the journal */
			*slot = -1;
			log_warnx("queue \"%s\": a message over the journal's "
			    "slot size (%zu) is held in memory only",
			    q->conf.name, cap);
			n = ipcb_msgq_recv(q->msqid, sel, &rbuf, IPC_NOWAIT);
			*m = rbuf.msg;
		}
	} else {
		n = ipcb_msgq_recv(q->msqid, sel, &rbuf, IPC_NOWAIT);
		*m = rbuf.msg;
	}
	if (n >= 0) {
		*len = (size_t)n;
		stats.msgs_received++;
		FAULT_POINT("after_msgrcv");
		return 1;
	}
	*slot = -1;
	if (n == -ENOMSG || n == -EAGAIN)
		return 0;
	*code = queue_errno_code((int)-n);
	snprintf(err, errlen, "queue \"%s\" (key 0x%08x, msqid %d): msgrcv: %s",
	    q->conf.name, (unsigned)q->conf.key, q->msqid, strerror((int)-n));
	if (*code == ERR_QUEUE_REMOVED)
		queue_reopen(q);
	return -1;
}

/* A few rotating buffers: one json_pack may show several keys. */
const char *
key_hex(key_t key)
{
	static char buf[4][16];
	static int next;
	char *b = buf[next++ % 4];

	snprintf(b, sizeof(buf[0]), "0x%08x", (unsigned)key);
	return b;
}

const char *
mode_octal(int mode)
{
	static char buf[8];

	snprintf(buf, sizeof(buf), "%04o", (unsigned)mode);
	return buf;
}
