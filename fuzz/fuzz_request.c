/*
 * fuzz_request.c - libFuzzer target over the request path of the daemon.
 *
 * One input is what one client writes on its connection: any bytes, one
 * or more request lines (a final "\n" is added). The daemon runs in this
 * process as in tests/harness.c (no main.c, no listening socket): a
 * config_defaults() config, the queues opened, and a socketpair whose one
 * end goes to conn_accept() while we talk on the other.
 *
 * No kernel IPC is touched: every SysV call goes through the ipcb_sysv
 * table, which points at the in-memory fake below before queues_open().
 * The fake behaves like the kernel for what the daemon uses (msgget,
 * msgsnd, msgrcv with msgtyp 0 / n / -n and MSG_EXCEPT, msgctl IPC_STAT /
 * IPC_SET / IPC_RMID) on three queues, small enough that "queue full" and
 * "can never fit" are easy to reach, and it checks the daemon's promises:
 * every call is IPC_NOWAIT, MSG_NOERROR is never used, buffers are as
 * large as the sizes passed. Some message types inject faults, so that
 * the fuzzer (which learns constants from comparisons) reaches the error
 * paths: see FAULT_* below.
 *
 * Inputs of odd length run with proto_line's data_b64 fast path taken
 * for every line that has one (proto_big_line = 0; it is normally for
 * lines of 4 KiB and more, over this harness's max_line_bytes); when bit
 * 1 of the length is set, replies wait for the end of each loop pass
 * (conn_defer_flush), as in the daemon.
 *
 * Per input: a fresh connection and fresh fake queues; the input is
 * written, the loop runs a bounded number of non-blocking passes (pending
 * timers are fired at once between passes, so parked waits, consumers and
 * put-backs are served without sleeping), then the client half-closes,
 * and finally the connection is closed and everything the daemon kept is
 * drained. The writer pauses after each comment line ("#...", which the
 * daemon ignores) to let the loop run; from a line "#noread" on, the
 * client stops reading replies (the daemon's send buffer is 4 KiB and
 * max_output_bytes the smallest allowed, 64 KiB).
 *
 * Invariants, checked with abort() so that libFuzzer reports them:
 *
 *   - every line load_flat (src/jsonfast.c) takes, jansson takes too,
 *     to the same DOM (compared as compact dumps); the daemon itself
 *     runs with load_flat on, so replies come from its DOMs;
 *   - every reply line is valid JSON to json_loadb (\u0000 is allowed in
 *     strings, JSON_ALLOW_NUL, but jansson never takes it in an object
 *     key; FUZZ_ALLOW_NUL_KEYS=1 tolerates that, which PHP array keys
 *     caused before d21b8b4), an object with exactly
 *     one of result / error / event and nothing but id besides (events:
 *     event, data, ts_ms); error objects have a known code and a message;
 *     an echoed id is an integer or a string of at most MAX_ID_BYTES;
 *   - the output ends on a line boundary (no half-written reply), unless
 *     the daemon cut the connection off itself (max_output_bytes);
 *   - after the connection closed, no waiter, consumer, unacked delivery,
 *     put-back or connection is left behind, and every journal slot is
 *     free again (the journal is on, in a private temporary file, with 8
 *     slots), unless a put-back failed for good because the create = no
 *     queue was removed: such a message stays in the journal by design;
 *   - the daemon never makes a SysV call that could block, never truncates
 *     (MSG_NOERROR), never touches semaphores or shared memory here (no
 *     segments are opened: cfg->nshms = 0), and never exits.
 *
 * Built twice: with -fsanitize=fuzzer as fuzz/fuzz_request, and with
 * fuzz/regress_main.c as fuzz/regress_request, which replays files (the
 * corpus and fuzz/regressions/fuzz_request/) under make check.
 */
#include <sys/socket.h>

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);
const char	*__ubsan_default_options(void);

/*
 * UBSan findings must stop the run, so that libFuzzer keeps the input,
 * even when the build lets UBSan recover (no -fno-sanitize-recover);
 * UBSAN_OPTIONS still overrides this.
 */
const char *
__ubsan_default_options(void)
{
	return "halt_on_error=1:print_stacktrace=1";
}

/* main.c's globals, which libdaemon refers to */
struct event_base *base;
const struct config *cfg;

/*
 * Magic message types: a msgsnd of this type, or a msgrcv whose msgtyp is
 * this (or its negative), fails the way the name says.
 */
#define FAULT_EIDRM	424201	/* the queue is removed (ipcrm) meanwhile */
#define FAULT_EINTR	424202	/* interrupted once; the retry works */
#define FAULT_EACCES	424203	/* permission denied */
#define FAULT_ENOSPC	424204	/* some other error (ipc_error) */
#define FAULT_E2BIG	424205	/* msgrcv: buffer "too small" once */

#define FQ_MAX_MSGS	8	/* messages per fake queue */
#define FQ_QBYTES	1024	/* default msg_qbytes */
#define FQ_QBYTES_MAX	4096	/* IPC_SET above this: EPERM */
#define FQ_TIME0	1700000000

#define MAX_LINE_BYTES	1500	/* small, so line_too_long is reachable */
#define PHASE1_ROUNDS	16	/* loop passes with the client connected */
#define PHASE2_ROUNDS	8	/* after its half-close */
#define FLUSH_ROUNDS	64	/* at most, to read the last replies */
#define PAUSE_ROUNDS	4	/* after a "#" line in the input */
#define MAX_PAUSES	32
#define MAX_TIMERS	256
#define JOURNAL_SLOTS	8	/* few, so "journal full" is reachable */

static int verbose;		/* FUZZ_VERBOSE set: print the replies */
static int allow_nul_keys;	/* FUZZ_ALLOW_NUL_KEYS set: see README */

static void fail(const char *, ...)
    __attribute__((format(printf, 1, 2), noreturn));

static void
fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "fuzz_request: INVARIANT VIOLATED: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

/* ---- the fake SysV message queues ---- */

struct fmsg {
	long	 mtype;
	size_t	 len;
	char	*text;
};

struct fq {
	const char	*name;		/* the daemon's queue for this key */
	key_t		 key;
	int		 base_id;
	int		 exists;
	int		 gen;		/* bumped by every re-creation */
	int		 id;
	int		 mode;
	struct fmsg	 msgs[FQ_MAX_MSGS];
	int		 n;
	size_t		 cbytes;
	unsigned long	 qbytes;
	pid_t		 lspid, lrpid;
	time_t		 stime, rtime, ctime;
};

static struct fq fqs[] = {
	{ .name = "default", .key = 0x69706201, .base_id = 0x10000 },
	{ .name = "json", .key = 0x69706211, .base_id = 0x20000 },
	{ .name = "php", .key = 0x69706212, .base_id = 0x30000 },
};
#define NFQ	(sizeof(fqs) / sizeof(fqs[0]))

static int	eintr_once;	/* the next FAULT_EINTR call goes through */
static int	e2big_done;	/* FAULT_E2BIG fired for this input */
static time_t	fake_clock = FQ_TIME0;

static struct fq *
fq_by_key(key_t key)
{
	size_t i;

	for (i = 0; i < NFQ; i++) {
		if (fqs[i].key == key)
			return &fqs[i];
	}
	return NULL;
}

/* The live queue with this id; NULL for a stale or unknown id. */
static struct fq *
fq_by_id(int id)
{
	size_t i;

	for (i = 0; i < NFQ; i++) {
		if (fqs[i].exists && fqs[i].id == id)
			return &fqs[i];
	}
	return NULL;
}

static void
fq_clear(struct fq *q)
{
	int i;

	for (i = 0; i < q->n; i++)
		free(q->msgs[i].text);
	q->n = 0;
	q->cbytes = 0;
}

static void
fq_create(struct fq *q, int mode)
{
	fq_clear(q);
	q->exists = 1;
	q->id = q->base_id + q->gen;
	q->mode = mode & 0777;
	q->qbytes = FQ_QBYTES;
	q->lspid = q->lrpid = 0;
	q->stime = q->rtime = 0;
	q->ctime = fake_clock;
}

static void
fq_remove(struct fq *q)
{
	fq_clear(q);
	q->exists = 0;
	q->gen++;
}

/* A fault for this type? Returns the errno to fail with, or 0. */
static int
fault(long type, int is_recv)
{
	if (type < 0)
		type = type == LONG_MIN ? LONG_MAX : -type;
	switch (type) {
	case FAULT_EIDRM:
		return EIDRM;
	case FAULT_EINTR:
		eintr_once = !eintr_once;
		return eintr_once ? EINTR : 0;
	case FAULT_EACCES:
		return EACCES;
	case FAULT_ENOSPC:
		return ENOSPC;
	case FAULT_E2BIG:
		if (!is_recv || e2big_done)
			return 0;
		e2big_done = 1;
		return E2BIG;
	}
	return 0;
}

static int
fake_msgget(key_t key, int flags)
{
	struct fq *q = fq_by_key(key);

	if (q == NULL) {
		errno = ENOENT;
		return -1;
	}
	if (q->exists) {
		if ((flags & IPC_CREAT) && (flags & IPC_EXCL)) {
			errno = EEXIST;
			return -1;
		}
		return q->id;
	}
	if (!(flags & IPC_CREAT)) {
		errno = ENOENT;
		return -1;
	}
	fq_create(q, flags);
	return q->id;
}

static int
fake_msgsnd(int id, const void *msgp, size_t sz, int flags)
{
	const struct ipcb_msg *m = msgp;
	struct fq *q;
	char *copy;
	int e;

	if (!(flags & IPC_NOWAIT))
		fail("msgsnd without IPC_NOWAIT: the daemon would block");
	if (m->mtype < 1 || sz > ipcb_msgmax()) {
		errno = EINVAL;
		return -1;
	}
	if ((q = fq_by_id(id)) == NULL) {
		errno = EINVAL;
		return -1;
	}
	if ((e = fault(m->mtype, 0)) != 0) {
		if (e == EIDRM)
			fq_remove(q);
		errno = e;
		return -1;
	}
	/* the kernel reads all sz bytes: so do we, for ASan */
	if ((copy = malloc(sz + 1)) == NULL)
		fail("out of memory in the fake msgsnd");
	memcpy(copy, m->mtext, sz);
	if (q->n == FQ_MAX_MSGS || q->cbytes + sz > q->qbytes ||
	    (unsigned long)q->n + 1 > q->qbytes) {
		free(copy);
		errno = EAGAIN;
		return -1;
	}
	q->msgs[q->n].mtype = m->mtype;
	q->msgs[q->n].len = sz;
	q->msgs[q->n].text = copy;
	q->n++;
	q->cbytes += sz;
	q->lspid = getpid();
	q->stime = ++fake_clock;
	return 0;
}

static ssize_t
fake_msgrcv(int id, void *msgp, size_t sz, long typ, int flags)
{
	struct ipcb_msg *m = msgp;
	struct fmsg f;
	struct fq *q;
	long lim;
	int i, pick = -1, e;

	if (!(flags & IPC_NOWAIT))
		fail("msgrcv without IPC_NOWAIT: the daemon would block");
	if (flags & MSG_NOERROR)
		fail("msgrcv with MSG_NOERROR: the daemon promises never to "
		    "truncate");
	if ((q = fq_by_id(id)) == NULL) {
		errno = EINVAL;
		return -1;
	}
	/* the caller says sz bytes follow mtype: check they are there */
	if (sz > 0)
		(void)*(volatile char *)(m->mtext + sz - 1);
	if ((e = fault(typ, 1)) != 0) {
		if (e == EIDRM)
			fq_remove(q);
		errno = e;
		return -1;
	}
	if (typ == 0) {
		if (q->n > 0)
			pick = 0;
	} else if (typ > 0) {
		for (i = 0; i < q->n && pick < 0; i++) {
			if ((flags & MSG_EXCEPT) ? q->msgs[i].mtype != typ :
			    q->msgs[i].mtype == typ)
				pick = i;
		}
	} else {
		lim = typ == LONG_MIN ? LONG_MAX : -typ;
		for (i = 0; i < q->n; i++) {
			if (q->msgs[i].mtype <= lim && (pick < 0 ||
			    q->msgs[i].mtype < q->msgs[pick].mtype))
				pick = i;
		}
	}
	if (pick < 0) {
		errno = ENOMSG;
		return -1;
	}
	f = q->msgs[pick];
	if (f.len > sz) {
		errno = E2BIG;
		return -1;
	}
	memmove(&q->msgs[pick], &q->msgs[pick + 1],
	    (size_t)(q->n - pick - 1) * sizeof(q->msgs[0]));
	q->n--;
	q->cbytes -= f.len;
	q->lrpid = getpid();
	q->rtime = ++fake_clock;
	m->mtype = f.mtype;
	memcpy(m->mtext, f.text, f.len);
	free(f.text);
	return (ssize_t)f.len;
}

static int
fake_msgctl(int id, int cmd, struct msqid_ds *ds)
{
	struct fq *q;

	if ((q = fq_by_id(id)) == NULL) {
		errno = EINVAL;
		return -1;
	}
	switch (cmd) {
	case IPC_STAT:
		memset(ds, 0, sizeof(*ds));
		ds->msg_perm.__key = q->key;
		ds->msg_perm.uid = ds->msg_perm.cuid = getuid();
		ds->msg_perm.gid = ds->msg_perm.cgid = getgid();
		ds->msg_perm.mode = (unsigned short)q->mode;
		ds->msg_stime = q->stime;
		ds->msg_rtime = q->rtime;
		ds->msg_ctime = q->ctime;
		ds->__msg_cbytes = q->cbytes;
		ds->msg_qnum = (msgqnum_t)q->n;
		ds->msg_qbytes = q->qbytes;
		ds->msg_lspid = q->lspid;
		ds->msg_lrpid = q->lrpid;
		return 0;
	case IPC_SET:
		if (ds->msg_qbytes > FQ_QBYTES_MAX) {
			errno = EPERM;
			return -1;
		}
		q->qbytes = ds->msg_qbytes;
		q->ctime = ++fake_clock;
		return 0;
	case IPC_RMID:
		fq_remove(q);
		return 0;
	}
	errno = EINVAL;
	return -1;
}

/* No segments are opened: none of these may be called. */
static int
fake_semget(key_t k, int n, int f)
{
	(void)k; (void)n; (void)f;
	fail("semget called with no segments configured");
}

static int
fake_semop(int id, struct sembuf *b, size_t n)
{
	(void)id; (void)b; (void)n;
	fail("semop called with no segments configured");
}

static int
fake_semtimedop(int id, struct sembuf *b, size_t n, const struct timespec *t)
{
	(void)id; (void)b; (void)n; (void)t;
	fail("semtimedop called with no segments configured");
}

static int
fake_semctl(int id, int num, int cmd, ...)
{
	(void)id; (void)num; (void)cmd;
	fail("semctl called with no segments configured");
}

static int
fake_shmget(key_t k, size_t n, int f)
{
	(void)k; (void)n; (void)f;
	fail("shmget called with no segments configured");
}

static void *
fake_shmat(int id, const void *a, int f)
{
	(void)id; (void)a; (void)f;
	fail("shmat called with no segments configured");
}

static int
fake_shmdt(const void *a)
{
	(void)a;
	fail("shmdt called with no segments configured");
}

static int
fake_shmctl(int id, int cmd, struct shmid_ds *ds)
{
	(void)id; (void)cmd; (void)ds;
	fail("shmctl called with no segments configured");
}

/* Fresh queues for each input, and the daemon pointed at them. */
static void
fake_reset(void)
{
	struct queue *dq;
	struct fq *q;
	size_t i;

	for (i = 0; i < NFQ; i++) {
		fqs[i].gen = 0;
		fq_create(&fqs[i], 0660);
	}
	TAILQ_FOREACH(dq, &queues, entry) {
		if ((q = fq_by_key(dq->conf.key)) == NULL)
			fail("queue \"%s\" has no fake", dq->conf.name);
		dq->msqid = q->id;
	}
	eintr_once = 0;
	e2big_done = 0;
	fake_clock = FQ_TIME0;
}

/* ---- one-time set-up ---- */

static void
add_queue(struct config *c, const char *name, const char *spec, key_t key,
    int payload, int create, unsigned long max_bytes)
{
	struct queue_conf *q;

	q = realloc(c->queues, (c->nqueues + 1) * sizeof(*q));
	if (q == NULL)
		fail("out of memory");
	c->queues = q;
	q = &c->queues[c->nqueues++];
	*q = c->queues[0];	/* the defaults of "default" */
	q->name = strdup(name);
	q->key_spec = strdup(spec);
	if (q->name == NULL || q->key_spec == NULL)
		fail("out of memory");
	q->key = key;
	q->payload = payload;
	q->create = create;
	q->max_bytes = max_bytes;
}

/*
 * The journal, as main.c opens it, in a private directory that is removed
 * at once: the mapping and the descriptor are all the daemon uses.
 */
static struct config *fuzz_cfg;

static void
journal_init(struct config *c)
{
	char dir[] = "/tmp/ipcbridge-fuzz.XXXXXX", path[64], err[512];
	int n;

	if (mkdtemp(dir) == NULL)
		fail("mkdtemp: %s", strerror(errno));
	free(c->state_dir);
	if ((c->state_dir = strdup(dir)) == NULL)
		fail("out of memory");
	c->journal_slots = JOURNAL_SLOTS;
	if ((n = journal_open(dir, JOURNAL_SLOTS, err, sizeof(err))) != 0)
		fail("journal_open: %s", n < 0 ? err : "slots held at start");
	snprintf(path, sizeof(path), "%s/journal", dir);
	unlink(path);
	rmdir(dir);
	if (journal_free_slots() != JOURNAL_SLOTS)
		fail("a new journal has %d free slots, not %d",
		    journal_free_slots(), JOURNAL_SLOTS);
}

static void
init_once(void)
{
	static int done;
	struct config *c;
	char err[512];

	if (done)
		return;
	done = 1;
	/* the poll timer too is a libevent timer, which warp() fires */
	ptimer_timerfd = 0;
	jalloc_install();	/* as the daemon does, before any value */
	verbose = getenv("FUZZ_VERBOSE") != NULL;
	allow_nul_keys = getenv("FUZZ_ALLOW_NUL_KEYS") != NULL;
	log_init(LOG_LVL_WARN);
	memset(&stats, 0, sizeof(stats));
	stats.started_ms = now_ms();

	ipcb_sysv.msgget = fake_msgget;
	ipcb_sysv.msgsnd = fake_msgsnd;
	ipcb_sysv.msgrcv = fake_msgrcv;
	ipcb_sysv.msgctl = fake_msgctl;
	ipcb_sysv.semget = fake_semget;
	ipcb_sysv.semop = fake_semop;
	ipcb_sysv.semtimedop = fake_semtimedop;
	ipcb_sysv.semctl = fake_semctl;
	ipcb_sysv.shmget = fake_shmget;
	ipcb_sysv.shmat = fake_shmat;
	ipcb_sysv.shmdt = fake_shmdt;
	ipcb_sysv.shmctl = fake_shmctl;
	fake_reset();

	if ((base = event_base_new()) == NULL)
		fail("event_base_new failed");
	c = config_defaults();
	if (config_set_socket(c, "/nonexistent/ipcbridge-fuzz.sock") < 0)
		fail("config_set_socket failed");
	c->max_line_bytes = MAX_LINE_BYTES;
	/* the smallest allowed: a client that stops reading is cut off */
	c->max_output_bytes = 65536;
	c->nshms = 0;		/* no segments: shm.* answer not_found */
	if (c->nqueues != 1 || c->queues[0].key != fqs[0].key)
		fail("config_defaults() no longer has one queue at 0x%08x",
		    (unsigned)fqs[0].key);
	/* a json queue (re-created with max_bytes on removal) and a php
	 * queue that the daemon may not create (create = no) */
	add_queue(c, "json", "0x69706211", fqs[1].key, PAYLOAD_JSON, 1, 512);
	add_queue(c, "php", "0x69706212", fqs[2].key, PAYLOAD_PHP, 0, 0);
	cfg = fuzz_cfg = c;
	if (queues_open(c, err, sizeof(err)) < 0)
		fail("queues_open: %s", err);
	journal_init(c);
}

/* ---- the client side ---- */

static int peer = -1;		/* our end of the socketpair */
static int noread;		/* "#noread" seen: the client stops reading */
static char *obuf;		/* reply bytes not yet a whole line */
static size_t olen, ocap;
static int peer_eof;

static const char *const err_codes[] = {
	"parse_error", "invalid_request", "line_too_long", "unknown_op",
	"invalid_params", "busy", "not_found", "queue_full", "msg_too_big",
	"queue_removed", "not_utf8", "too_many_waits", "cancelled",
	"shutting_down", "permission_denied", "ipc_error", "internal_error",
	"unsupported_protocol", "lock_timeout", "no_space", "out_of_range",
	"corrupt", "unsupported_value", "sem_removed", "shm_removed",
};

static int
known_code(const char *s)
{
	size_t i;

	for (i = 0; i < sizeof(err_codes) / sizeof(err_codes[0]); i++) {
		if (strcmp(err_codes[i], s) == 0)
			return 1;
	}
	return 0;
}

/* One reply line (without its "\n"): the shape every reply must have. */
static void
check_line(const char *line, size_t len)
{
	json_error_t jerr;
	json_t *j, *id, *e, *v;
	const char *key;
	int kinds = 0, n;

	if (verbose)
		fprintf(stderr, "< %.*s\n", (int)len, line);
	j = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL,
	    &jerr);
	if (j == NULL && allow_nul_keys &&
	    json_error_code(&jerr) == json_error_null_byte_in_key)
		return;		/* known: see fuzz/README.md */
	if (j == NULL)
		fail("reply is not JSON (%s at %d): %.*s", jerr.text,
		    jerr.position, (int)(len > 2000 ? 2000 : len), line);
	if (!json_is_object(j))
		fail("reply is not an object: %.*s", (int)len, line);
	kinds += json_object_get(j, "result") != NULL;
	kinds += json_object_get(j, "error") != NULL;
	kinds += json_object_get(j, "event") != NULL;
	if (kinds != 1)
		fail("reply has %d of result/error/event: %.*s", kinds,
		    (int)len, line);
	if (json_object_get(j, "event") != NULL) {
		e = json_object_get(j, "event");
		if (json_object_size(j) != 3 || !json_is_string(e) ||
		    !json_is_object(json_object_get(j, "data")) ||
		    !json_is_integer(json_object_get(j, "ts_ms")))
			fail("bad event shape: %.*s", (int)len, line);
		if (strcmp(json_string_value(e), "message") != 0 &&
		    strcmp(json_string_value(e), "consumer_end") != 0)
			fail("unknown event: %.*s", (int)len, line);
		json_decref(j);
		return;
	}
	json_object_foreach(j, key, v) {
		if (strcmp(key, "id") != 0 && strcmp(key, "result") != 0 &&
		    strcmp(key, "error") != 0)
			fail("reply has member \"%s\": %.*s", key, (int)len,
			    line);
	}
	id = json_object_get(j, "id");
	if (id != NULL && !json_is_integer(id) && !(json_is_string(id) &&
	    json_string_length(id) <= MAX_ID_BYTES))
		fail("reply id is not a valid id: %.*s", (int)len, line);
	if ((e = json_object_get(j, "error")) != NULL) {
		n = 2;
		if (!json_is_object(e) ||
		    !json_is_string(json_object_get(e, "code")) ||
		    !known_code(json_string_value(json_object_get(e, "code"))) ||
		    !json_is_string(json_object_get(e, "message")) ||
		    json_string_length(json_object_get(e, "message")) == 0)
			fail("bad error shape: %.*s", (int)len, line);
		if ((v = json_object_get(e, "data")) != NULL) {
			if (!json_is_object(v))
				fail("error.data not an object: %.*s",
				    (int)len, line);
			n++;
		}
		if (json_object_size(e) != (size_t)n)
			fail("extra members in error: %.*s", (int)len, line);
	}
	json_decref(j);
}

/* Read what the daemon wrote; check each complete line. */
static size_t
drain_peer(void)
{
	size_t got = 0, start, k;
	ssize_t n;
	char *p;

	while (!peer_eof && !noread) {
		if (ocap - olen < 65536) {
			if ((p = realloc(obuf, ocap + 65536)) == NULL)
				fail("out of memory");
			obuf = p;
			ocap += 65536;
		}
		n = recv(peer, obuf + olen, ocap - olen, 0);
		/* ECONNRESET: it closed with our lines unread (held wait) */
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			peer_eof = 1;
		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			break;
		}
		/* check the lines completed by these bytes */
		start = 0;
		for (k = olen; k < olen + (size_t)n; k++) {
			if (obuf[k] != '\n')
				continue;
			check_line(obuf + start, k - start);
			start = k + 1;
		}
		olen += (size_t)n;
		got += (size_t)n;
		if (start > 0) {
			memmove(obuf, obuf + start, olen - start);
			olen -= start;
		}
		/* replies stay small: a partial line this long is runaway */
		if (olen > 4 * 1024 * 1024)
			fail("a reply line over 4 MiB");
	}
	return got;
}

/* Gather the pending timers (the daemon's: resume, poll, deferred free). */
struct timers {
	struct event	*ev[MAX_TIMERS];
	int		 n;
};

static int
collect_timer(const struct event_base *b, const struct event *ev, void *arg)
{
	struct timers *t = arg;

	(void)b;
	if (event_get_fd(ev) != -1 ||
	    (event_get_events(ev) & (EV_READ | EV_WRITE | EV_SIGNAL)) ||
	    !event_pending(ev, EV_TIMEOUT, NULL))
		return 0;
	if (t->n < MAX_TIMERS)
		t->ev[t->n++] = (struct event *)(uintptr_t)ev;
	return 0;
}

/* Time passes at once: fire every pending timer now. */
static int
warp(void)
{
	struct timers t;
	int i;

	t.n = 0;
	event_base_foreach_event(base, collect_timer, &t);
	for (i = 0; i < t.n; i++)
		event_active(t.ev[i], EV_TIMEOUT, 0);
	return t.n;
}

/*
 * Run the loop without blocking, up to max passes: each pass handles
 * what is ready (EVLOOP_NONBLOCK keeps going while events are active),
 * reads the replies, then fires the timers. Stops early once nothing is
 * scheduled and nothing came.
 */
/* One loop pass, then the replies it deferred, as main() runs them. */
static void
pass(void)
{
	event_base_loop(base, EVLOOP_NONBLOCK);
	conns_flush_deferred();
}

static void
rounds(int max)
{
	size_t got;
	int i, fired;

	for (i = 0; i < max; i++) {
		pass();
		got = drain_peer();
		fired = warp();
		if (got == 0 && fired == 0) {
			/* one more pass for what became ready meanwhile */
			pass();
			got = drain_peer();
			fired = warp();
			if (got == 0 && fired == 0)
				break;
		}
	}
}

/* Write all of buf, letting the daemon read when the socket is full. */
static void
send_all(const uint8_t *buf, size_t len)
{
	int stuck = 0;
	ssize_t n;

	while (len > 0 && stuck < 64) {
		n = send(peer, buf, len, MSG_NOSIGNAL);
		if (n > 0) {
			buf += n;
			len -= (size_t)n;
			stuck = 0;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			return;		/* the daemon closed: fine */
		/* full; a held wait may keep it full: give up eventually */
		rounds(1);
		stuck++;
	}
}

/*
 * Write the input as it is, but pause after each comment line ("#..."
 * at the start of a line, which the daemon ignores) to let the loop and
 * its timers run: that lets an input order requests against deliveries,
 * e.g. ack a tag after the consumer got it.
 */
static void
send_input(const uint8_t *data, size_t size)
{
	const uint8_t *nl;
	size_t at = 0, p, end, next;
	int pauses = 0, pause;

	while (at < size) {
		/* at is a line start: write up to the end of the next
		 * comment line, or all that is left */
		end = size;
		pause = 0;
		for (p = at; p < size && pauses < MAX_PAUSES; p = next) {
			nl = memchr(data + p, '\n', size - p);
			next = nl ? (size_t)(nl - data) + 1 : size;
			if (data[p] == '#' && nl != NULL) {
				end = next;
				pause = 1;
				if (next - p >= 7 &&
				    memcmp(data + p, "#noread", 7) == 0)
					noread = 1;
				break;
			}
		}
		send_all(data + at, end - at);
		if (pause) {
			rounds(PAUSE_ROUNDS);
			pauses++;
		}
		at = end;
	}
}

/* Put-backs still waiting for room: make room until they are all in. */
static void
drain_putbacks(void)
{
	struct queue *q;
	struct fq *f;
	int i;

	for (i = 0; i < 1000; i++) {
		int left = 0;

		queues_retired_serve(serve_senders, now_ms());
		TAILQ_FOREACH(q, &queues, entry) {
			if (TAILQ_EMPTY(&q->senders))
				continue;
			if ((f = fq_by_key(q->conf.key)) != NULL) {
				if (!f->exists)
					fq_create(f, 0660);
				fq_clear(f);
				q->msqid = f->id;
			}
			serve_senders(q, now_ms());
			left += !TAILQ_EMPTY(&q->senders);
		}
		if (left == 0)
			return;
	}
	fail("put-backs never drain");
}

/* Did a queue the daemon may not re-create go away in this input? */
static int
putback_may_fail(void)
{
	struct queue *q;
	struct fq *f;

	TAILQ_FOREACH(q, &queues, entry) {
		if (!q->conf.create && (f = fq_by_key(q->conf.key)) != NULL &&
		    f->gen > 0)
			return 1;
	}
	return 0;
}

static void
check_clean(void)
{
	struct queue *q;

	if (conns_count != 0)
		fail("%d connection(s) left after closing all", conns_count);
	if (stats.conns_current != 0)
		fail("stats.conns_current is %llu with no connection",
		    (unsigned long long)stats.conns_current);
	if (waiter_count() != 0)
		fail("%d waiter(s) left after the connection closed",
		    waiter_count());
	if (ack_count() != 0)
		fail("%d unacked deliveries left after the connection closed",
		    ack_count());
	if (journal_free_slots() != JOURNAL_SLOTS) {
		/*
		 * A put-back that fails for good leaves its message in the
		 * journal for the next start (putback_failed() in waiter.c):
		 * expected only when a create = no queue went away. Then a
		 * fresh journal, so that the next input does not depend on
		 * this one.
		 */
		if (!putback_may_fail())
			fail("%d of %d journal slots still held with nothing "
			    "waiting", JOURNAL_SLOTS - journal_free_slots(),
			    JOURNAL_SLOTS);
		journal_close();
		journal_init(fuzz_cfg);
	}
	TAILQ_FOREACH(q, &queues, entry) {
		if (!TAILQ_EMPTY(&q->receivers) || !TAILQ_EMPTY(&q->senders) ||
		    q->nwaiting != 0 || q->nconsumers != 0 || q->nputbacks != 0)
			fail("queue \"%s\" still has waiters (%d waiting, %d "
			    "consumers, %d put-backs)", q->conf.name,
			    q->nwaiting, q->nconsumers, q->nputbacks);
	}
}

/* load_flat's values of a line, if it takes it, are jansson's. */
static void
flat_agrees(const char *line, size_t len)
{
	char why[2048];

	if (load_flat_vs_jansson(line, len, why, sizeof(why)) < 0)
		fail("%s", why);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *line = (const char *)data, *nl;
	int sv[2], i, sndbuf, cut;

	init_once();
	for (; (nl = memchr(line, '\n', size - (size_t)(line - (const char *)
	    data))) != NULL; line = nl + 1)
		flat_agrees(line, (size_t)(nl - line));
	flat_agrees(line, size - (size_t)(line - (const char *)data));
	fake_reset();
	/* every other input with proto_line's data_b64 fast path on for
	 * every line (it is for long lines only, longer than ours) */
	proto_big_line = size & 1 ? 0 : 4096;
	/* and every other pair with replies deferred to the end of a loop
	 * pass, as the daemon runs (the test harness writes at once) */
	conn_defer_flush = (size & 2) != 0;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
	    sv) < 0)
		fail("socketpair: %s", strerror(errno));
	/* a small send buffer: replies block, and wait in the daemon */
	sndbuf = 4096;
	if (setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &sndbuf,
	    sizeof(sndbuf)) < 0)
		fail("SO_SNDBUF: %s", strerror(errno));
	peer = sv[0];
	peer_eof = 0;
	noread = 0;
	olen = 0;
	conn_accept(sv[1]);
	if (conns_count != 1)
		fail("conn_accept refused the connection");

	/* the client writes its lines and reads the replies */
	send_input(data, size);
	send_all((const uint8_t *)"\n", 1);
	rounds(PHASE1_ROUNDS);

	/* then it half-closes: the daemon finishes and closes */
	shutdown(peer, SHUT_WR);
	rounds(PHASE2_ROUNDS);
	for (i = 0; i < FLUSH_ROUNDS; i++) {
		pass();
		if (drain_peer() == 0)
			break;
	}

	/*
	 * Whatever still waits is cut off, as when a client goes away. If
	 * the daemon closed the connection itself (max_output_bytes, a
	 * timeout), the output may end mid-line; otherwise it was all read.
	 */
	cut = noread || conns_count == 0;
	conns_close_all("fuzz: end of input");
	for (i = 0; i < 4; i++)		/* the deferred frees */
		pass();
	/* what did make it out must still be whole lines */
	noread = 0;
	drain_peer();
	if (!peer_eof)
		fail("no EOF after the daemon closed the connection");
	if (olen != 0 && !cut)
		fail("output ends inside a reply line: %.*s",
		    (int)(olen > 2000 ? 2000 : olen), obuf);
	close(peer);
	peer = -1;

	drain_putbacks();
	check_clean();
	waiter_exit();		/* the poll timer and receive buffer */
	for (i = 0; i < (int)NFQ; i++)
		fq_clear(&fqs[i]);
	if (ocap > 65536) {
		free(obuf);
		obuf = NULL;
		ocap = 0;
	}
	return 0;
}
