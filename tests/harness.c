/*
 * harness.c - see harness.h.
 */
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

/* main.c's globals, which libdaemon refers to */
struct event_base *base;
const struct config *cfg;

struct config *h_cfg;
key_t h_key;

struct client {
	int		 fd;
	struct event	*ev;
	void		(*on_data)(void *);
	void		*on_data_arg;
	char		*buf;
	size_t		 len;
	size_t		 cap;
	int		 eof;
};

static void	loop_once(int);

static struct client clients[H_MAX_CLIENTS];
static int nclients;
static struct event *tick;

/* Everything handed to the test, freed at teardown. */
static void **owned_ptrs;
static json_t **owned_json;
static size_t nowned_ptrs, nowned_json;

static void *
own_ptr(void *p)
{
	void **n;

	n = realloc(owned_ptrs, (nowned_ptrs + 1) * sizeof(*n));
	ck_assert_ptr_nonnull(n);
	owned_ptrs = n;
	owned_ptrs[nowned_ptrs++] = p;
	return p;
}

static json_t *
own_json(json_t *j)
{
	json_t **n;

	n = realloc(owned_json, (nowned_json + 1) * sizeof(*n));
	ck_assert_ptr_nonnull(n);
	owned_json = n;
	owned_json[nowned_json++] = j;
	return j;
}

/* ---- the IPC key: reserved by the runner, once per test case ---- */

/*
 * The runner process picks an unused key in the range the e2e tests use
 * and creates the queue there (IPC_EXCL), so that no one else takes it;
 * each test opens it, and removes it in its teardown. Should a test fail
 * before its teardown (a forked test exits at the failed assertion), the
 * runner removes the queue here after the test case.
 */
static void
key_reserve(void)
{
	int i, id;

	srand((unsigned)getpid() ^ (unsigned)time(NULL));
	for (i = 0; i < 1000; i++) {
		h_key = (key_t)(0x7e000000 | (1 + rand() % 0xfffffe));
		id = msgget(h_key, IPC_CREAT | IPC_EXCL | 0600);
		if (id >= 0)
			return;
		if (errno != EEXIST)
			break;
	}
	perror("harness: cannot reserve a private IPC key");
	exit(1);
}

static void
key_release(void)
{
	int id;

	if ((id = msgget(h_key, 0)) >= 0)
		msgctl(id, IPC_RMID, NULL);
}

void
h_fixtures(TCase *tc)
{
	tcase_add_unchecked_fixture(tc, key_reserve, key_release);
	tcase_add_checked_fixture(tc, h_setup, h_teardown);
	tcase_set_timeout(tc, 8);
}

/* ---- setup and teardown ---- */

static void
tick_cb(evutil_socket_t fd, short ev, void *arg)
{
	(void)fd; (void)ev; (void)arg;
	event_base_loopbreak(base);
}

/* Move whatever the daemon wrote to a client into its buffer. */
static void
client_drain(struct client *cl)
{
	ssize_t n;
	char *p;

	while (!cl->eof && cl->fd >= 0) {
		if (cl->cap - cl->len < 65536) {
			p = realloc(cl->buf, cl->cap + 65536);
			ck_assert_ptr_nonnull(p);
			cl->buf = p;
			cl->cap += 65536;
		}
		n = recv(cl->fd, cl->buf + cl->len, cl->cap - cl->len, 0);
		if (n > 0) {
			cl->len += (size_t)n;
			continue;
		}
		if (n == 0)
			cl->eof = 1;
		else if (errno == EINTR)
			continue;
		else
			ck_assert_msg(errno == EAGAIN || errno == EWOULDBLOCK,
			    "recv: %s", strerror(errno));
		break;
	}
}

static void
client_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct client *cl = arg;
	void (*fn)(void *) = cl->on_data;

	(void)fd; (void)ev;
	if (fn != NULL) {
		cl->on_data = NULL;
		fn(cl->on_data_arg);
	}
	client_drain(cl);
	if (cl->eof)
		event_del(cl->ev);
}

int
h_connect(void)
{
	struct client *cl;
	int sv[2];

	ck_assert_int_lt(nclients, H_MAX_CLIENTS);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0, sv), 0);
	cl = &clients[nclients];
	memset(cl, 0, sizeof(*cl));
	cl->fd = sv[0];
	cl->ev = event_new(base, cl->fd, EV_READ | EV_PERSIST, client_cb, cl);
	ck_assert_ptr_nonnull(cl->ev);
	event_add(cl->ev, NULL);
	conn_accept(sv[1]);
	return nclients++;
}

void
h_setup(void)
{
	char err[512], spec[16];
	struct event_config *ec;
	struct ipcb_msgbuf mb = { NULL, 0 };
	struct ipcb_selector any = { IPCB_MATCH_ANY, 0 };
	struct queue *q;

	jalloc_install();	/* as the daemon does, before any value */
	log_init(LOG_LVL_WARN);
	memset(&stats, 0, sizeof(stats));
	stats.started_ms = now_ms();
	/*
	 * Bound the callbacks run per loop pass: should the daemon keep
	 * re-activating an event (a busy loop), timers still run in between,
	 * so the tick in loop_once() gets control back to the harness, whose
	 * deadlines then hold, and h_idle() can tell.
	 */
	ec = event_config_new();
	ck_assert_ptr_nonnull(ec);
	ck_assert_int_eq(event_config_set_max_dispatch_interval(ec, NULL,
	    10000, 0), 0);
	base = event_base_new_with_config(ec);
	event_config_free(ec);
	ck_assert_ptr_nonnull(base);
	tick = evtimer_new(base, tick_cb, NULL);
	ck_assert_ptr_nonnull(tick);

	h_cfg = config_defaults();
	ck_assert_uint_eq(h_cfg->nqueues, 1);
	snprintf(spec, sizeof(spec), "0x%08x", (unsigned)h_key);
	h_cfg->queues[0].key = h_key;
	free(h_cfg->queues[0].key_spec);
	h_cfg->queues[0].key_spec = strdup(spec);
	ck_assert_ptr_nonnull(h_cfg->queues[0].key_spec);
	ck_assert_int_eq(config_set_socket(h_cfg, "/nonexistent/test.sock"),
	    0);
	cfg = h_cfg;

	ck_assert_msg(queues_open(h_cfg, err, sizeof(err)) == 0,
	    "queues_open: %s", err);
	q = queue_find("default");
	ck_assert_ptr_nonnull(q);
	/* left over from a test that failed before its teardown */
	while (ipcb_msgq_recv(q->msqid, &any, &mb, IPC_NOWAIT) >= 0)
		;
	ipcb_msgbuf_free(&mb);
	ck_assert_int_eq(h_qnum(), 0);

	nclients = 0;
	h_connect();
}

void
h_teardown(void)
{
	int i, id;
	size_t k;

	conns_close_all("test teardown");
	for (i = 0; i < 4; i++)		/* the deferred frees */
		loop_once(0);
	waiter_exit();
	if ((id = msgget(h_key, 0)) >= 0)
		ck_assert_int_eq(ipcb_msgq_remove(id), 0);
	queues_close();
	for (i = 0; i < nclients; i++) {
		if (clients[i].ev != NULL)
			event_free(clients[i].ev);
		if (clients[i].fd >= 0)
			close(clients[i].fd);
		free(clients[i].buf);
	}
	nclients = 0;
	event_free(tick);
	event_base_free(base);
	base = NULL;
	cfg = NULL;
	config_free(h_cfg);
	h_cfg = NULL;
	for (k = 0; k < nowned_ptrs; k++)
		free(owned_ptrs[k]);
	for (k = 0; k < nowned_json; k++)
		json_decref(owned_json[k]);
	free(owned_ptrs);
	free(owned_json);
	owned_ptrs = NULL;
	owned_json = NULL;
	nowned_ptrs = nowned_json = 0;
}

/* ---- driving the loop ---- */

/*
 * One loop pass that blocks at most ms (0: do not block). The tick timer
 * breaks the loop: EVLOOP_ONCE and EVLOOP_NONBLOCK both keep going while
 * events are active, so a daemon that re-activates an event forever would
 * otherwise never give control back (the dispatch limit set in h_setup
 * lets the timer run in between).
 */
static void
loop_once(int ms)
{
	struct timeval tv;

	if (ms <= 0) {
		tv.tv_sec = 0;
		tv.tv_usec = 20 * 1000;
		event_add(tick, &tv);
		event_base_loop(base, EVLOOP_NONBLOCK);
		event_del(tick);
		return;
	}
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	event_add(tick, &tv);
	event_base_loop(base, EVLOOP_ONCE);
	event_del(tick);
}

int
h_run_until(int (*cond)(void *), void *arg, int timeout_ms)
{
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms, now;

	for (;;) {
		loop_once(0);
		if (cond(arg))
			return 1;
		now = now_ms();
		if (now >= deadline)
			return 0;
		loop_once(deadline - now > 20 ? 20 : (int)(deadline - now));
		if (cond(arg))
			return 1;
	}
}

int
h_idle(void)
{
	int i;

	for (i = 0; i < 8; i++)
		loop_once(0);
	return event_base_get_num_events(base, EVENT_BASE_COUNT_ACTIVE) == 0;
}

static int
never(void *arg)
{
	(void)arg;
	return 0;
}

void
h_run_for(int ms)
{
	h_run_until(never, NULL, ms);
}

/* ---- clients ---- */

static struct client *
client(int i)
{
	ck_assert_int_ge(i, 0);
	ck_assert_int_lt(i, nclients);
	return &clients[i];
}

void
h_write(int i, const char *data, size_t len)
{
	struct client *cl = client(i);
	uint64_t deadline = now_ms() + H_TIMEOUT_MS;
	ssize_t n;

	while (len > 0) {
		n = send(cl->fd, data, len, MSG_NOSIGNAL);
		if (n > 0) {
			data += n;
			len -= (size_t)n;
			continue;
		}
		ck_assert_msg(n < 0 && (errno == EAGAIN || errno == EINTR),
		    "send: %s", strerror(errno));
		ck_assert_msg(now_ms() < deadline,
		    "the daemon stopped reading (write timed out)");
		/* let the daemon read; keep our side drained */
		loop_once(1);
	}
}

void
h_close_write(int i)
{
	ck_assert_int_eq(shutdown(client(i)->fd, SHUT_WR), 0);
}

void
h_close(int i)
{
	struct client *cl = client(i);

	ck_assert_int_ge(cl->fd, 0);
	event_free(cl->ev);
	cl->ev = NULL;
	close(cl->fd);
	cl->fd = -1;
	cl->eof = 1;
}

int
h_eof(int i)
{
	struct client *cl = client(i);

	client_drain(cl);
	return cl->eof;
}

void
h_sendc(int i, const char *line)
{
	size_t n = strlen(line);

	h_write(i, line, n);
	if (n == 0 || line[n - 1] != '\n')
		h_write(i, "\n", 1);
}

void
h_send(const char *line)
{
	h_sendc(0, line);
}

static int
line_ready(void *arg)
{
	struct client *cl = arg;

	client_drain(cl);
	return cl->eof || (cl->len > 0 && memchr(cl->buf, '\n', cl->len));
}

void
h_on_data(int i, void (*fn)(void *), void *arg)
{
	struct client *cl = client(i);

	cl->on_data = fn;
	cl->on_data_arg = arg;
}

int
h_lines_buffered(int i)
{
	struct client *cl = client(i);
	size_t k;
	int n = 0;

	client_drain(cl);
	for (k = 0; k < cl->len; k++)
		n += cl->buf[k] == '\n';
	return n;
}

int
h_has_line(int i)
{
	struct client *cl = client(i);
	int k;

	for (k = 0; k < 4; k++)
		loop_once(0);
	client_drain(cl);
	return cl->len > 0 && memchr(cl->buf, '\n', cl->len) != NULL;
}

char *
h_read(int i, int timeout_ms)
{
	struct client *cl = client(i);
	char *nl, *line;
	size_t n;

	if (cl->len == 0 || memchr(cl->buf, '\n', cl->len) == NULL)
		h_run_until(line_ready, cl, timeout_ms);
	if (cl->len == 0 || (nl = memchr(cl->buf, '\n', cl->len)) == NULL)
		return NULL;
	n = (size_t)(nl - cl->buf);
	line = malloc(n + 1);
	ck_assert_ptr_nonnull(line);
	memcpy(line, cl->buf, n);
	line[n] = '\0';
	memmove(cl->buf, nl + 1, cl->len - n - 1);
	cl->len -= n + 1;
	return own_ptr(line);
}

char *
h_call(const char *line)
{
	h_send(line);
	return h_read(0, H_TIMEOUT_MS);
}

json_t *
h_json(const char *text)
{
	json_error_t e;
	json_t *j;

	j = json_loads(text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &e);
	ck_assert_msg(j != NULL, "not JSON (%s): %s", e.text, text);
	return own_json(j);
}

json_t *
h_readj(int i)
{
	char *line = h_read(i, H_TIMEOUT_MS);

	ck_assert_msg(line != NULL, "client %d: no reply within %d ms", i,
	    H_TIMEOUT_MS);
	return h_json(line);
}

json_t *
h_callcj(int i, const char *line)
{
	h_sendc(i, line);
	return h_readj(i);
}

json_t *
h_callj(const char *line)
{
	return h_callcj(0, line);
}

/* ---- reply shapes ---- */

static void
check_id(json_t *reply, const char *id)
{
	char *s = json_dumps(reply, JSON_COMPACT);
	json_t *got = json_object_get(reply, "id");

	own_ptr(s);
	if (id == NULL) {
		ck_assert_msg(got == NULL, "reply has an id: %s", s);
		return;
	}
	ck_assert_msg(got != NULL, "reply has no id (want %s): %s", id, s);
	ck_assert_msg(json_equal(got, h_json(id)), "reply id is not %s: %s",
	    id, s);
}

json_t *
h_error(json_t *reply, const char *id, const char *code)
{
	char *s = own_ptr(json_dumps(reply, JSON_COMPACT));
	json_t *e, *c, *m, *d;

	ck_assert_msg(json_is_object(reply), "reply not an object: %s", s);
	check_id(reply, id);
	ck_assert_msg(json_object_size(reply) == (id ? 2u : 1u),
	    "extra members in an error reply: %s", s);
	e = json_object_get(reply, "error");
	ck_assert_msg(json_is_object(e), "not an error reply: %s", s);
	c = json_object_get(e, "code");
	m = json_object_get(e, "message");
	d = json_object_get(e, "data");
	ck_assert_msg(json_is_string(c), "error.code not a string: %s", s);
	ck_assert_msg(strcmp(json_string_value(c), code) == 0,
	    "error code is not %s: %s", code, s);
	ck_assert_msg(json_is_string(m) && json_string_length(m) > 0,
	    "error.message missing or empty: %s", s);
	ck_assert_msg(json_object_size(e) == (d ? 3u : 2u),
	    "extra members in error: %s", s);
	if (d != NULL)
		ck_assert_msg(json_is_object(d), "error.data not an object: "
		    "%s", s);
	return d;
}

json_t *
h_result(json_t *reply, const char *id)
{
	char *s = own_ptr(json_dumps(reply, JSON_COMPACT));

	ck_assert_msg(json_is_object(reply), "reply not an object: %s", s);
	check_id(reply, id);
	ck_assert_msg(json_object_get(reply, "result") != NULL,
	    "not a result reply: %s", s);
	ck_assert_msg(json_object_size(reply) == (id ? 2u : 1u),
	    "extra members in a result reply: %s", s);
	return json_object_get(reply, "result");
}

/* ---- the queue as a worker sees it ---- */

static int
worker_msqid(void)
{
	int id = msgget(h_key, 0);

	ck_assert_msg(id >= 0, "msgget 0x%08x: %s", (unsigned)h_key,
	    strerror(errno));
	return id;
}

void
h_sysv_send(long type, const void *data, size_t len)
{
	struct ipcb_msg *m = malloc(sizeof(*m) + len + 1);

	ck_assert_ptr_nonnull(m);
	m->mtype = type;
	memcpy(m->mtext, data, len);
	ck_assert_int_eq(msgsnd(worker_msqid(), m, len, IPC_NOWAIT), 0);
	free(m);
}

ssize_t
h_sysv_recv(long type, long *mtype, void *buf, size_t cap)
{
	struct ipcb_msg *m = malloc(sizeof(*m) + cap);
	ssize_t n;

	ck_assert_ptr_nonnull(m);
	n = msgrcv(worker_msqid(), m, cap, type, IPC_NOWAIT);
	if (n < 0) {
		ck_assert_msg(errno == ENOMSG, "msgrcv: %s", strerror(errno));
		free(m);
		return -1;
	}
	if (mtype != NULL)
		*mtype = m->mtype;
	memcpy(buf, m->mtext, (size_t)n);
	free(m);
	return n;
}

void
h_set_qbytes(unsigned long n)
{
	ck_assert_int_eq(ipcb_msgq_set_qbytes(worker_msqid(), n), 0);
}

int
h_qnum(void)
{
	struct msqid_ds ds;

	ck_assert_int_eq(msgctl(worker_msqid(), IPC_STAT, &ds), 0);
	return (int)ds.msg_qnum;
}

struct queue *
h_queue(void)
{
	struct queue *q = queue_find("default");

	ck_assert_ptr_nonnull(q);
	return q;
}
