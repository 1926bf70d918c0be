/*
 * bench.c - how fast ipcbridge is, against the limits it cannot beat and
 * the server people would use instead, in one run and one table.
 *
 * It starts the daemon it measures on a private socket in a temp dir with
 * private IPC keys, in a private IPC namespace when it may make one (there
 * it can raise msgmnb, so queue.send runs for seconds without filling the
 * queue), so it runs next to anything else on the machine, and measures:
 *
 *  - baselines: msgsnd+msgrcv pairs and msgsnd alone in one process (the
 *    kernel's limit for enqueue), an echo server on the same kind of Unix
 *    socket (the socket's floor), and Redis on a Unix socket when
 *    redis-server is installed (LPUSH, SET/GET), driven by the same load
 *    generator;
 *  - enqueue: queue.send of 16 bytes at 1x1, 1x16, 50x1 and 50x16
 *    connections x pipeline depth;
 *  - round trip: queue.send then queue.recv of the message;
 *  - delivery: a worker msgsnds timestamped messages at random 0.3-1.3 ms
 *    gaps to a client parked in queue.recv or queue.consume; latency,
 *    and the daemon's CPU and wake-ups with traffic, with one idle waiter
 *    and with none;
 *  - blobs: shm.put and shm.get of 4 KiB to 16 MiB from pre-encoded lines
 *    (the client's own base64 is not measured), against Redis SET/GET;
 *  - memory: RSS idle, per idle connection, and the peak of a 16 MiB put.
 *
 * Each figure is printed with its ratio to what it is judged against and
 * PASS or MISS for the targets of the issue that asked for this program.
 * Throughput cells are the load generator's (loadgen.c). The details give
 * the CPU use of the server and of the load generator over each window,
 * and the server's time spent runnable but waiting for a CPU ("runq"):
 * the first says which side was the limit, the second whether something
 * else on the machine was taking the CPUs (the header warns when the load
 * average was already high).
 */
#include <sys/epoll.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/utsname.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "ipcbridge.h"

#define MSG_TEXT	"0123456789abcdef"	/* 16 bytes */
#define IDLE_CONNS	1000
#define NBLOBS		4

enum verdict { V_NONE, V_PASS, V_MISS, V_SKIP, V_ERR };

struct row {
	char		 sect[12];
	char		 name[40];
	char		 val[16];
	char		 unit[8];
	char		 ratio[12];
	char		 vs[26];
	char		 target[16];
	enum verdict	 verdict;
	char		 detail[112];
};

static struct row rows[160];
static int nrows;

static int quick;
static const char *only;	/* --only: sections to run, or NULL for all */
static double warm_s, cell_s, idle_s;
static char daemon_path[PATH_MAX], redis_bin[PATH_MAX];
static char sock_path[128], echo_path[128], rsock_path[128];
static char conf_path[128], dlog_path[128], rlog_path[128];
static char daemon_version[32] = "?", redis_version[32];
static pid_t dpid, rpid, epid;
static key_t qkey, skey;
static int dq = -1;		/* the daemon's queue, for draining */
static int ctl_fd = -1, rctl_fd = -1;
static int host_ipc;		/* --host-ipc, or no namespace to be had */
static char ipc_note[160];
static unsigned long dq_bytes;	/* the daemon's queue capacity */
static pid_t drainer;

static const int grid[4][2] = { { 1, 1 }, { 1, 16 }, { 50, 1 }, { 50, 16 } };
static const size_t blob_sizes[NBLOBS] = { 4096, 65536, 1 << 20, 16 << 20 };
static const char *blob_names[NBLOBS] = { "4 KiB", "64 KiB", "1 MiB",
    "16 MiB" };

/* Request lines, built once. */
static char send_line[] = "{\"op\":\"queue.send\",\"type\":1,\"text\":\""
    MSG_TEXT "\"}\n";
static char recv_line[] = "{\"op\":\"queue.recv\"}\n";
static char lpush_cmd[] = "*3\r\n$5\r\nLPUSH\r\n$1\r\nq\r\n$16\r\n"
    MSG_TEXT "\r\n";
static char rpop_cmd[] = "*2\r\n$4\r\nRPOP\r\n$1\r\nq\r\n";
static char get_cmd[] = "*2\r\n$3\r\nGET\r\n$1\r\nb\r\n";
static char crlf[] = "\r\n";
static char put_head[] = "{\"op\":\"shm.put\",\"data_b64\":\"";
static char put_tail[] = "\"}\n";

struct blob {
	char	*raw;
	char	*b64;
	size_t	 b64len;
	char	 get_line[96];
	char	 set_head[64];
};
static struct blob blobs[NBLOBS];

/* Results kept for ratios and for rows printed in another section. */
static double msgsnd_only_rate;
static struct lg_result enq[4], enq_redis[4], echo_res[4];

/* Rotating buffers for formatted numbers. */
static const char *
num(double v, int prec)
{
	static char bufs[16][40];
	static int k;
	char tmp[40], *out = bufs[k++ % 16];
	int i, n, lead, o = 0;

	snprintf(tmp, sizeof(tmp), "%.*f", prec, v < 0 ? -v : v);
	n = (int)strcspn(tmp, ".");
	lead = n % 3 ? n % 3 : 3;
	if (v < 0)
		out[o++] = '-';
	for (i = 0; i < n; i++) {
		if (i > 0 && (i - lead) % 3 == 0)
			out[o++] = ',';
		out[o++] = tmp[i];
	}
	strcpy(out + o, tmp + n);
	return out;
}

static void
row(const char *sect, const char *name, const char *val, const char *unit,
    double ratio, const char *vs, const char *target, enum verdict v,
    const char *fmt, ...)
{
	struct row *r;
	va_list ap;

	if (nrows == (int)(sizeof(rows) / sizeof(rows[0])))
		die("too many rows");
	r = &rows[nrows++];
	memset(r, 0, sizeof(*r));
	snprintf(r->sect, sizeof(r->sect), "%s", sect);
	snprintf(r->name, sizeof(r->name), "%s", name);
	snprintf(r->val, sizeof(r->val), "%s", val);
	snprintf(r->unit, sizeof(r->unit), "%s", unit);
	if (ratio >= 0)
		snprintf(r->ratio, sizeof(r->ratio), "%.2fx", ratio);
	snprintf(r->vs, sizeof(r->vs), "%s", vs ? vs : "");
	snprintf(r->target, sizeof(r->target), "%s", target ? target : "");
	r->verdict = v;
	if (fmt != NULL) {
		va_start(ap, fmt);
		vsnprintf(r->detail, sizeof(r->detail), fmt, ap);
		va_end(ap);
	}
	fprintf(stderr, "  %-10s %-36s %12s %s\n", sect, name, val, unit);
}

static enum verdict
check(int ok)
{
	return ok ? V_PASS : V_MISS;
}

/* ---- talking to the servers outside the load generator ---- */

/* One request line on the control connection; the reply in buf. */
static size_t
ctl(const char *req, char *buf, size_t cap)
{
	write_all(ctl_fd, req, strlen(req));
	return read_line(ctl_fd, buf, cap);
}

static uint64_t
field_u64(const char *s, const char *key)
{
	const char *p = strstr(s, key);

	return p ? strtoull(p + strlen(key), NULL, 10) : 0;
}

static uint64_t
daemon_stat(const char *key)
{
	char buf[4096];

	ctl("{\"op\":\"stats\"}\n", buf, sizeof(buf));
	return field_u64(buf, key);
}

static void
redis_cmd(const char *cmd)
{
	char buf[256];

	if (rctl_fd < 0)
		return;
	write_all(rctl_fd, cmd, strlen(cmd));
	read_line(rctl_fd, buf, sizeof(buf));
	if (buf[0] == '-')
		die("redis: %s", buf);
}

/* Take every message off the daemon's queue (between cells). */
static uint64_t
drain_queue(void)
{
	struct {
		long	 mtype;
		char	 mtext[8192];
	} m;
	uint64_t n = 0;

	while (msgrcv(dq, &m, sizeof(m.mtext), 0, IPC_NOWAIT | MSG_NOERROR) >=
	    0)
		n++;
	return n;
}

static double
daemon_cpu_pct(uint64_t cpu0, uint64_t t0)
{
	return (double)(proc_cpu_ns(dpid) - cpu0) / (double)(now_ns() - t0) *
	    100.0;
}

/* ---- setting up ---- */

static void
usage(void)
{
	fprintf(stderr, "usage: bench [--quick] [--daemon PATH] "
	    "[--redis PATH | --redis ''] [--host-ipc]\n"
	    "             [--only SECTION,...] [--cell SECONDS]\n"
	    "sections: enqueue roundtrip delivery blobs library memory "
	    "(the baselines always run)\n");
	exit(2);
}

/* Whether --only lets section name run (for profiling one kind of load). */
static int
wanted(const char *name)
{
	size_t n = strlen(name);
	const char *p;

	if (only == NULL)
		return 1;
	for (p = only; (p = strstr(p, name)) != NULL; p += n) {
		if ((p == only || p[-1] == ',') &&
		    (p[n] == ',' || p[n] == '\0'))
			return 1;
	}
	return 0;
}

/*
 * A private IPC namespace, where msgmnb can be raised so that queue.send
 * runs for seconds without filling the queue (raising one queue's
 * msg_qbytes above msgmnb needs CAP_SYS_RESOURCE, which containers often
 * lack; a new namespace needs CAP_SYS_ADMIN). Our keys are then private
 * for certain, and nothing can outlive the run. Without one the enqueue
 * cells run with a msgrcv worker that empties the queue.
 */
static void
private_ipc(void)
{
	static const char mnb[] = "1073741824";
	int fd, ok = 0;

	if (host_ipc) {
		snprintf(ipc_note, sizeof(ipc_note), "host IPC namespace "
		    "(--host-ipc)");
		return;
	}
	if (unshare(CLONE_NEWIPC) < 0) {
		snprintf(ipc_note, sizeof(ipc_note), "host IPC namespace "
		    "(unshare: %s)", strerror(errno));
		host_ipc = 1;
		return;
	}
	if ((fd = open("/proc/sys/kernel/msgmnb", O_WRONLY)) >= 0) {
		ok = write(fd, mnb, sizeof(mnb) - 1) == sizeof(mnb) - 1;
		close(fd);
	}
	snprintf(ipc_note, sizeof(ipc_note), "private IPC namespace%s",
	    ok ? ", msgmnb 1 GiB" : " (msgmnb unchanged)");
}

/* Empty the daemon's queue as fast as msgrcv can; runs in a child. */
static void
drain_worker(void)
{
	struct {
		long	 mtype;
		char	 mtext[8192];
	} m;

	for (;;)
		msgrcv(dq, &m, sizeof(m.mtext), 0, MSG_NOERROR);
}

/* A queue too small to take a cell's sends gets a worker emptying it. */
static void
drainer_start(void)
{
	if (dq_bytes >= (64ul << 20))
		return;
	if ((drainer = fork_child()) == 0)
		drain_worker();
}

static void
drainer_stop(void)
{
	if (drainer > 0)
		stop_child(drainer, 1.0);
	drainer = 0;
}

/* redis-server from PATH, if there is one. */
static int
find_in_path(const char *name, char *out, size_t cap)
{
	const char *path = getenv("PATH"), *p, *e;
	char cand[PATH_MAX];

	for (p = path ? path : "/usr/bin:/bin"; *p != '\0'; p = *e ? e + 1 : e) {
		e = p + strcspn(p, ":");
		snprintf(cand, sizeof(cand), "%.*s/%s", (int)(e - p), p, name);
		if (e > p && access(cand, X_OK) == 0) {
			snprintf(out, cap, "%s", cand);
			return 0;
		}
	}
	return -1;
}

/* --daemon, else $IPCBRIDGE, else ../src/ipcbridge next to this binary. */
static void
find_daemon(const char *given)
{
	char self[PATH_MAX], *slash;
	ssize_t n;

	if (given == NULL)
		given = getenv("IPCBRIDGE");
	if (given != NULL)
		snprintf(daemon_path, sizeof(daemon_path), "%s", given);
	else {
		if ((n = readlink("/proc/self/exe", self, sizeof(self) - 1)) <
		    0)
			die("readlink /proc/self/exe: %s", strerror(errno));
		self[n] = '\0';
		if ((slash = strrchr(self, '/')) != NULL)
			*slash = '\0';
		if (snprintf(daemon_path, sizeof(daemon_path),
		    "%s/../src/ipcbridge", self) >= (int)sizeof(daemon_path))
			die("path too long: %s", self);
	}
	if (access(daemon_path, X_OK) < 0)
		die("no daemon at %s (%s): build it (make src/ipcbridge), or "
		    "give --daemon PATH or $IPCBRIDGE", daemon_path,
		    strerror(errno));
}

static void
write_config(void)
{
	FILE *f;

	if ((f = fopen(conf_path, "w")) == NULL)
		die("%s: %s", conf_path, strerror(errno));
	fprintf(f, "; written by bench: private socket and keys\n"
	    "[server]\n"
	    "socket = %s\n"
	    "socket_mode = 0600\n"
	    "max_line_bytes = 64M\n"
	    "max_conns = %d\n"
	    "log_level = warning\n"
	    "\n[queue default]\n"
	    "key = 0x%08x\n"
	    "mode = 0600\n"
	    "max_bytes = 1G\n"
	    "\n[shm default]\n"
	    "key = 0x%08x\n"
	    "mode = 0600\n"
	    "size = 40M\n"
	    "format = raw\n", sock_path, IDLE_CONNS + 100, (unsigned)qkey,
	    (unsigned)skey);
	if (fclose(f) != 0)
		die("%s: %s", conf_path, strerror(errno));
}

static void
start_daemon(void)
{
	char *argv[] = { daemon_path, "-c", conf_path, NULL };
	struct msqid_ds ds;
	char buf[4096], *p;

	dpid = spawn(argv, dlog_path);
	if (wait_socket(sock_path, dpid, 10) < 0) {
		log_tail(dlog_path, "ipcbridge");
		dpid = 0;	/* said already; cleanup() still stops it */
		die("the daemon did not start serving on %s", sock_path);
	}
	ctl_fd = unix_connect(sock_path, 0);
	ctl("{\"op\":\"hello\"}\n", buf, sizeof(buf));
	if ((p = strstr(buf, "\"version\":\"")) != NULL)
		sscanf(p + 11, "%31[^\"]", daemon_version);
	if ((dq = msgget(qkey, 0)) < 0)
		die("the daemon's queue 0x%08x: %s", (unsigned)qkey,
		    strerror(errno));
	if (msgctl(dq, IPC_STAT, &ds) < 0)
		die("msgctl IPC_STAT: %s", strerror(errno));
	dq_bytes = ds.msg_qbytes;
	snprintf(ipc_note + strlen(ipc_note), sizeof(ipc_note) -
	    strlen(ipc_note), "; queue holds %lu bytes%s", dq_bytes,
	    dq_bytes < (64ul << 20) ? ", so a msgrcv worker empties it "
	    "during the enqueue cells" : "");
}

static void
start_redis(void)
{
	char *argv[] = { redis_bin, "--port", "0", "--unixsocket", rsock_path,
	    "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
	    "--dir", tmpdir, "--maxclients", "4000", NULL };
	char cmd[PATH_MAX + 32];
	FILE *f;

	rpid = spawn(argv, rlog_path);
	if (wait_socket(rsock_path, rpid, 10) < 0) {
		log_tail(rlog_path, "redis-server");
		die("redis-server did not start serving on %s (run without "
		    "it: --redis '')", rsock_path);
	}
	rctl_fd = unix_connect(rsock_path, 0);
	redis_cmd("*1\r\n$4\r\nPING\r\n");
	snprintf(cmd, sizeof(cmd), "'%s' --version", redis_bin);
	if ((f = popen(cmd, "r")) != NULL) {
		if (fscanf(f, "Redis server v=%31s", redis_version) != 1)
			strcpy(redis_version, "?");
		pclose(f);
	}
}

/* Write all of buf to a nonblocking socket, waiting when it is full. */
static int
echo_write(int fd, const char *buf, size_t n)
{
	struct pollfd pfd = { fd, POLLOUT, 0 };
	ssize_t k;

	while (n > 0) {
		if ((k = write(fd, buf, n)) < 0) {
			if (errno == EAGAIN || errno == EINTR) {
				/* the client reads as it writes: not long */
				poll(&pfd, 1, 1000);
				continue;
			}
			return -1;
		}
		buf += k;
		n -= (size_t)k;
	}
	return 0;
}

/* The echo server: every byte back as it came; runs in a child. */
static void
echo_serve(int lfd)
{
	struct epoll_event ev, evs[64];
	static char buf[256 * 1024];
	ssize_t n;
	int ep, i, nev, fd;

	signal(SIGPIPE, SIG_IGN);
	if ((ep = epoll_create1(0)) < 0)
		_exit(1);
	ev.events = EPOLLIN;
	ev.data.fd = lfd;
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	for (;;) {
		if ((nev = epoll_wait(ep, evs, 64, -1)) < 0)
			continue;
		for (i = 0; i < nev; i++) {
			fd = evs[i].data.fd;
			if (fd == lfd) {
				if ((fd = accept4(lfd, NULL, NULL,
				    SOCK_CLOEXEC | SOCK_NONBLOCK)) < 0)
					continue;
				ev.events = EPOLLIN;
				ev.data.fd = fd;
				epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
				continue;
			}
			/* a stale event for a reused fd finds nothing */
			n = read(fd, buf, sizeof(buf));
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (n <= 0 || echo_write(fd, buf, (size_t)n) < 0)
				close(fd);
		}
	}
}

static void
start_echo(void)
{
	struct sockaddr_un sun;
	int lfd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", echo_path) >=
	    (int)sizeof(sun.sun_path))
		die("socket path too long: %s", echo_path);
	if ((lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC |
	    SOCK_NONBLOCK, 0)) < 0 ||
	    bind(lfd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
	    listen(lfd, 1024) < 0)
		die("echo socket %s: %s", echo_path, strerror(errno));
	if ((epid = fork_child()) == 0)
		echo_serve(lfd);
	close(lfd);
}

static void
b64_encode(const unsigned char *s, size_t n, char *d)
{
	static const char a[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	uint32_t v;

	for (; n >= 3; n -= 3, s += 3) {
		v = (uint32_t)s[0] << 16 | (uint32_t)s[1] << 8 | s[2];
		*d++ = a[v >> 18];
		*d++ = a[(v >> 12) & 63];
		*d++ = a[(v >> 6) & 63];
		*d++ = a[v & 63];
	}
	if (n == 0)
		return;
	v = (uint32_t)s[0] << 16 | (n == 2 ? (uint32_t)s[1] << 8 : 0);
	*d++ = a[v >> 18];
	*d++ = a[(v >> 12) & 63];
	*d++ = n == 2 ? a[(v >> 6) & 63] : '=';
	*d++ = '=';
}

/* Random bytes for every blob size and their request lines. */
static void
make_blobs(void)
{
	uint64_t x = 0x9e3779b97f4a7c15ull ^ now_ns();
	struct blob *b;
	size_t i, j;

	for (i = 0; i < NBLOBS; i++) {
		b = &blobs[i];
		if ((b->raw = malloc(blob_sizes[i])) == NULL ||
		    (b->b64 = malloc(blob_sizes[i] / 3 * 4 + 8)) == NULL)
			die("out of memory");
		for (j = 0; j < blob_sizes[i]; j += 8) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			memcpy(b->raw + j, &x, 8);
		}
		b64_encode((unsigned char *)b->raw, blob_sizes[i], b->b64);
		b->b64len = (blob_sizes[i] + 2) / 3 * 4;
		snprintf(b->get_line, sizeof(b->get_line), "{\"op\":\"shm.get\","
		    "\"length\":%zu,\"encoding\":\"base64\"}\n", blob_sizes[i]);
		snprintf(b->set_head, sizeof(b->set_head),
		    "*3\r\n$3\r\nSET\r\n$1\r\nb\r\n$%zu\r\n", blob_sizes[i]);
	}
}

/* ---- the cells ---- */

static void
run_cell(const char *path, enum proto proto, const struct iovec *iov,
    int niov, int replies, int conns, int depth, pid_t watch,
    struct lg_result *res)
{
	struct unit u = { iov, niov, replies };

	lg_run(path, proto, &u, conns, depth, warm_s, cell_s, watch, res);
}

static const char *
err_note(const struct lg_result *r)
{
	static char buf[96];

	if (r->errors == 0)
		return "";
	snprintf(buf, sizeof(buf), "; %llu ERRORS: %.60s",
	    (unsigned long long)r->errors, r->err);
	return buf;
}

/* msgsnd+msgrcv pairs and msgsnd alone, one process, a private queue. */
static void
sect_baseline_kernel(void)
{
	struct {
		long	 mtype;
		char	 mtext[16];
	} m = { 1, MSG_TEXT }, r;
	struct msqid_ds ds;
	uint64_t t0, t, n = 0, timed = 0, batch, i;
	int id;

	if ((id = msgget(IPC_PRIVATE, 0600)) < 0)
		die("msgget: %s", strerror(errno));
	track_msqid(id);
	if (msgctl(id, IPC_STAT, &ds) == 0) {
		ds.msg_qbytes = 64 << 20;	/* root may raise it */
		msgctl(id, IPC_SET, &ds);
		msgctl(id, IPC_STAT, &ds);
	}
	t0 = now_ns();
	while (now_ns() - t0 < (uint64_t)(warm_s * 1e9)) {
		for (i = 0; i < 256; i++) {
			msgsnd(id, &m, 16, 0);
			msgrcv(id, &r, 16, 0, 0);
		}
	}
	t0 = now_ns();
	do {
		for (i = 0; i < 256; i++) {
			if (msgsnd(id, &m, 16, 0) < 0 ||
			    msgrcv(id, &r, 16, 0, 0) < 0)
				die("msgsnd/msgrcv: %s", strerror(errno));
		}
		n += 256;
	} while ((t = now_ns()) - t0 < (uint64_t)(cell_s * 1e9));
	row("baseline", "msgsnd+msgrcv pairs, 1 process",
	    num((double)n / ((double)(t - t0) / 1e9), 0), "pairs/s", -1, NULL,
	    NULL, V_NONE, "16-byte messages, private queue");

	/* sends only, in batches the queue holds, drained off the clock */
	batch = ds.msg_qbytes / 16 - 1;
	if (batch > 65536)
		batch = 65536;
	n = 0;
	while (timed < (uint64_t)(cell_s * 1e9)) {
		t0 = now_ns();
		for (i = 0; i < batch; i++) {
			if (msgsnd(id, &m, 16, IPC_NOWAIT) < 0)
				die("msgsnd: %s", strerror(errno));
		}
		timed += now_ns() - t0;
		n += batch;
		while (msgrcv(id, &r, 16, 0, IPC_NOWAIT) >= 0)
			;
	}
	msgsnd_only_rate = (double)n / ((double)timed / 1e9);
	row("baseline", "msgsnd only, 1 process", num(msgsnd_only_rate, 0),
	    "msg/s", -1, NULL, NULL, V_NONE,
	    "batches of %llu into a %lu-byte queue, drained off the clock",
	    (unsigned long long)batch, (unsigned long)ds.msg_qbytes);
}

static void
sect_echo(void)
{
	struct iovec iov = { send_line, sizeof(send_line) - 1 };
	char name[40];
	int i;

	for (i = 0; i < 4; i++) {
		run_cell(echo_path, PROTO_ECHO, &iov, 1, 1, grid[i][0],
		    grid[i][1], epid, &echo_res[i]);
		snprintf(name, sizeof(name), "echo floor %dx%d", grid[i][0],
		    grid[i][1]);
		row("baseline", name, num(echo_res[i].rate, 0), "lines/s", -1,
		    NULL, NULL, V_NONE, "+-%.0f%%; p50 %s p99 %s us; echo cpu "
		    "%.0f%%, client %.0f%%", echo_res[i].spread_pct,
		    num(echo_res[i].p50_us, 1),
		    num(echo_res[i].p99_us, 1), echo_res[i].cpu_pct,
		    echo_res[i].self_pct);
	}
}

static void
sect_enqueue(void)
{
	struct iovec iov = { send_line, sizeof(send_line) - 1 };
	struct iovec riov = { lpush_cmd, sizeof(lpush_cmd) - 1 };
	static const double want[4] = { 1.0, 0.6, 1.0, 0.45 };
	char name[48], target[24];
	double ratio;
	int i;

	for (i = 0; i < 4; i++) {
		drain_queue();
		drainer_start();
		run_cell(sock_path, PROTO_JSONL, &iov, 1, 1, grid[i][0],
		    grid[i][1], dpid, &enq[i]);
		drainer_stop();
		drain_queue();
		if (rpid > 0) {
			run_cell(rsock_path, PROTO_RESP, &riov, 1, 1,
			    grid[i][0], grid[i][1], rpid, &enq_redis[i]);
			redis_cmd("*2\r\n$3\r\nDEL\r\n$1\r\nq\r\n");
		}
	}
	for (i = 0; i < 4; i++) {
		if (rpid <= 0)
			continue;
		snprintf(name, sizeof(name), "redis LPUSH %dx%d", grid[i][0],
		    grid[i][1]);
		row("baseline", name, num(enq_redis[i].rate, 0), "msg/s", -1,
		    NULL, NULL, enq_redis[i].errors ? V_ERR : V_NONE,
		    "+-%.0f%%; p50 %s p99 %s us; redis cpu %.0f%%, client "
		    "%.0f%%%s", enq_redis[i].spread_pct,
		    num(enq_redis[i].p50_us, 1), num(enq_redis[i].p99_us, 1),
		    enq_redis[i].cpu_pct, enq_redis[i].self_pct,
		    err_note(&enq_redis[i]));
	}
	for (i = 0; i < 4; i++) {
		snprintf(name, sizeof(name), "queue.send %dx%d", grid[i][0],
		    grid[i][1]);
		snprintf(target, sizeof(target), ">= %.2gx", want[i]);
		ratio = rpid > 0 && enq_redis[i].rate > 0 ?
		    enq[i].rate / enq_redis[i].rate : -1;
		row("enqueue", name, num(enq[i].rate, 0), "msg/s", ratio,
		    rpid > 0 ? "redis LPUSH" : "redis LPUSH (absent)", target,
		    enq[i].errors ? V_ERR : rpid > 0 ?
		    check(ratio >= want[i]) : V_SKIP,
		    "+-%.0f%%; p50 %s p99 %s us; daemon cpu %.0f%% (runq "
		    "%.0f%%), client %.0f%%; %.0f%% of echo%s",
		    enq[i].spread_pct, num(enq[i].p50_us, 1),
		    num(enq[i].p99_us, 1), enq[i].cpu_pct, enq[i].wait_pct,
		    enq[i].self_pct, enq[i].rate / echo_res[i].rate * 100,
		    err_note(&enq[i]));
	}
	ratio = enq[3].rate / msgsnd_only_rate;
	row("enqueue", "queue.send 50x16 vs msgsnd", num(enq[3].rate, 0),
	    "msg/s", ratio, "msgsnd only", ">= 0.50x", check(ratio >= 0.5),
	    "msgsnd-only rate %s/s", num(msgsnd_only_rate, 0));
}

/* send then recv, each awaited, on a blocking connection. */
static void
roundtrip_sequential(struct samples *s, double *rate)
{
	char buf[512];
	uint64_t t0, t1, end, n = 0;
	int fd = unix_connect(sock_path, 0);

	end = now_ns() + (uint64_t)(warm_s * 1e9);
	t0 = 0;
	for (;;) {
		t1 = now_ns();
		if (t0 == 0 && t1 >= end) {
			t0 = t1;
			end = t0 + (uint64_t)(cell_s * 1e9);
		} else if (t0 != 0 && t1 >= end)
			break;
		write_all(fd, send_line, sizeof(send_line) - 1);
		read_line(fd, buf, sizeof(buf));
		write_all(fd, recv_line, sizeof(recv_line) - 1);
		read_line(fd, buf, sizeof(buf));
		if (strstr(buf, MSG_TEXT) == NULL)
			die("round trip: queue.recv did not return the "
			    "message: %s", buf);
		if (t0 != 0) {
			samples_add(s, now_ns() - t1);
			n++;
		}
	}
	*rate = (double)n / ((double)(now_ns() - t0) / 1e9);
	close(fd);
}

static void
sect_roundtrip(void)
{
	struct iovec iov[2] = { { send_line, sizeof(send_line) - 1 },
	    { recv_line, sizeof(recv_line) - 1 } };
	struct iovec riov[2] = { { lpush_cmd, sizeof(lpush_cmd) - 1 },
	    { rpop_cmd, sizeof(rpop_cmd) - 1 } };
	struct lg_result r, rr, re;
	struct samples s = { NULL, 0, 0 };
	double rate, p50, p99;

	drain_queue();
	run_cell(echo_path, PROTO_ECHO, iov, 2, 2, 1, 1, epid, &re);
	row("baseline", "echo floor, 2 lines pipelined", num(re.p50_us, 1),
	    "us p50", -1, NULL, NULL, V_NONE, "p99 %s us",
	    num(re.p99_us, 1));
	if (rpid > 0) {
		run_cell(rsock_path, PROTO_RESP, riov, 2, 2, 1, 1, rpid, &rr);
		row("baseline", "redis LPUSH+RPOP pipelined",
		    num(rr.p50_us, 1), "us p50", -1, NULL, NULL,
		    rr.errors ? V_ERR : V_NONE, "p99 %s us; %s pairs/s%s",
		    num(rr.p99_us, 1), num(rr.rate, 0), err_note(&rr));
	}
	run_cell(sock_path, PROTO_JSONL, iov, 2, 2, 1, 1, dpid, &r);
	row("roundtrip", "send+recv pipelined, p50", num(r.p50_us, 1), "us",
	    rpid > 0 ? r.p50_us / rr.p50_us : -1, rpid > 0 ?
	    "redis LPUSH+RPOP" : NULL, NULL, r.errors ? V_ERR : V_NONE,
	    "%s pairs/s; %.1fx the echo floor%s", num(r.rate, 0),
	    r.p50_us / re.p50_us, err_note(&r));
	row("roundtrip", "send+recv pipelined, p99", num(r.p99_us, 1), "us",
	    rpid > 0 ? r.p99_us / rr.p99_us : -1, rpid > 0 ?
	    "redis LPUSH+RPOP" : NULL, NULL, V_NONE, NULL);
	drain_queue();
	roundtrip_sequential(&s, &rate);
	p50 = samples_pct(&s, 50);
	p99 = samples_pct(&s, 99);
	row("roundtrip", "send, await; recv, await: p50", num(p50, 1), "us",
	    -1, NULL, NULL, V_NONE, "%s pairs/s; two socket round trips",
	    num(rate, 0));
	row("roundtrip", "send, await; recv, await: p99", num(p99, 1), "us",
	    -1, NULL, NULL, V_NONE, NULL);
	samples_free(&s);
	drain_queue();
}

/* The worker: timestamped msgsnds at random 0.3-1.3 ms gaps until end. */
static void
worker(uint64_t end)
{
	struct {
		long	 mtype;
		char	 mtext[32];
	} m;
	struct timespec ts;
	uint64_t next = now_ns(), x = now_ns() | 1;
	int len;

	while (next < end) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		next += 300000 + x % 1000001;
		ts.tv_sec = (time_t)(next / 1000000000u);
		ts.tv_nsec = (long)(next % 1000000000u);
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts,
		    NULL) == EINTR)
			;
		m.mtype = 7;
		len = snprintf(m.mtext, sizeof(m.mtext), "%llu",
		    (unsigned long long)now_ns());
		if (msgsnd(dq, &m, (size_t)len, 0) < 0)
			_exit(1);
	}
	_exit(0);
}

/* Cancel a parked request of ours and wait for the cancel's reply. */
static void
cancel_wait(int fd, const char *target)
{
	char req[128], buf[65536];
	struct pollfd pfd = { fd, POLLIN, 0 };
	uint64_t until = now_ns() + 5000000000ull;
	size_t len = 0;
	ssize_t n;

	snprintf(req, sizeof(req), "{\"id\":\"c\",\"op\":\"cancel\","
	    "\"target\":%s}\n", target);
	write_all(fd, req, strlen(req));
	while (now_ns() < until) {
		if (poll(&pfd, 1, 100) <= 0)
			continue;
		if ((n = read(fd, buf + len, sizeof(buf) - 1 - len)) <= 0) {
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			die("cancel: the daemon closed the connection");
		}
		len += (size_t)n;
		buf[len] = '\0';
		if (strstr(buf, "{\"id\":\"c\",") != NULL)
			return;
		if (len > sizeof(buf) / 2) {	/* keep the tail only */
			memmove(buf, buf + len - 64, 64);
			len = 64;
		}
	}
	die("cancel: no reply in 5 s");
}

/* Wait until the daemon says nothing waits; the count left otherwise. */
static uint64_t
no_waiters(void)
{
	uint64_t until = now_ns() + 2000000000ull, w;

	while ((w = daemon_stat("\"waiters\":")) > 0 && now_ns() < until)
		sleep_s(0.01);
	return w;
}

struct delivery {
	double	 p50, p99, cpu, wait, wakeups, polls;
	uint64_t n;
	uint64_t ticks;		/* /proc/PID/stat utime+stime, for a check */
};

/*
 * A client parked in queue.recv (re-parked after each message) or with
 * one consumer, while the worker sends: latency from the worker's msgsnd
 * to our read of the reply or event.
 */
static void
delivery_traffic(int consume, struct delivery *d)
{
	static const char recv_req[] = "{\"id\":1,\"op\":\"queue.recv\","
	    "\"type\":7,\"timeout_ms\":60000}\n";
	static const char consume_req[] = "{\"op\":\"queue.consume\","
	    "\"type\":7}\n";
	char buf[65536], *p, *nl, *t;
	struct samples s = { NULL, 0, 0 };
	struct pollfd pfd;
	uint64_t t0 = 0, t1, now, end, cpu0 = 0, wait0 = 0, ctx0 = 0;
	uint64_t polls0 = 0, ctx1;
	size_t len = 0;
	ssize_t n;
	pid_t wpid;
	int fd;

	fd = unix_connect(sock_path, 1);
	if (consume)
		write_all(fd, consume_req, sizeof(consume_req) - 1);
	else
		write_all(fd, recv_req, sizeof(recv_req) - 1);
	end = now_ns() + (uint64_t)((warm_s + cell_s) * 1e9);
	if ((wpid = fork_child()) == 0)
		worker(end);
	t1 = end;
	pfd.fd = fd;
	pfd.events = POLLIN;
	while ((now = now_ns()) < end) {
		if (t0 == 0 && now >= end - (uint64_t)(cell_s * 1e9)) {
			t0 = now;
			cpu0 = proc_cpu_ns(dpid);
			wait0 = proc_wait_ns(dpid);
			ctx0 = proc_ctxt(dpid);
			polls0 = daemon_stat("\"polls\":");
		}
		if (poll(&pfd, 1, 10) <= 0)
			continue;
		if ((n = read(fd, buf + len, sizeof(buf) - 1 - len)) <= 0) {
			if (n < 0 && errno == EAGAIN)
				continue;
			die("delivery: the daemon closed the connection");
		}
		now = now_ns();
		len += (size_t)n;
		buf[len] = '\0';
		for (p = buf; (nl = strchr(p, '\n')) != NULL; p = nl + 1) {
			*nl = '\0';
			if (strncmp(p, "{\"id\":1,\"error\"", 16) == 0 ||
			    strncmp(p, "{\"error\"", 8) == 0)
				die("delivery: %s", p);
			if ((t = strstr(p, "\"text\":\"")) != NULL && t0 != 0)
				samples_add(&s, now - strtoull(t + 8, NULL,
				    10));
			if (!consume && strncmp(p, "{\"id\":1,", 8) == 0)
				write_all(fd, recv_req, sizeof(recv_req) - 1);
		}
		memmove(buf, p, len - (size_t)(p - buf));
		len -= (size_t)(p - buf);
	}
	d->cpu = (double)(proc_cpu_ns(dpid) - cpu0) / (double)(t1 - t0) *
	    100.0;
	ctx1 = proc_ctxt(dpid);
	d->wait = (double)(proc_wait_ns(dpid) - wait0) / 1000.0 /
	    (double)(ctx1 > ctx0 ? ctx1 - ctx0 : 1);
	d->wakeups = (double)(ctx1 - ctx0) / ((double)(t1 - t0) / 1e9);
	d->polls = (double)(daemon_stat("\"polls\":") - polls0) /
	    ((double)(t1 - t0) / 1e9);
	stop_child(wpid, 1.0);
	if (!consume)	/* a closed client's parked wait would stay */
		cancel_wait(fd, "1");
	d->n = s.n;
	d->p50 = samples_pct(&s, 50);
	d->p99 = samples_pct(&s, 99);
	samples_free(&s);
	close(fd);
	drain_queue();
}

/* The daemon while idle: CPU, wake-ups and poll passes over idle_s. */
static void
idle_window(struct delivery *d)
{
	uint64_t t0, cpu0, ctx0, polls0, polls1, ctx1, ticks0;

	polls0 = daemon_stat("\"polls\":");
	sleep_s(0.05);		/* the stats reply's own wake-up is over */
	t0 = now_ns();
	cpu0 = proc_cpu_ns(dpid);
	ticks0 = proc_stat_ticks(dpid);
	ctx0 = proc_ctxt(dpid);
	sleep_s(idle_s);
	ctx1 = proc_ctxt(dpid);
	d->ticks = proc_stat_ticks(dpid) - ticks0;
	d->cpu = daemon_cpu_pct(cpu0, t0);
	polls1 = daemon_stat("\"polls\":");
	d->wakeups = (double)(ctx1 - ctx0);
	d->polls = (double)(polls1 - polls0);
}

static void
sect_delivery(void)
{
	static const char park[] = "{\"id\":\"idle\",\"op\":\"queue.recv\","
	    "\"type\":7,\"timeout_ms\":300000}\n";
	struct delivery d[2], idle, none;
	const char *what[2] = { "queue.recv", "queue.consume" };
	char name[48];
	uint64_t left;
	int i, fd;

	drain_queue();
	for (i = 0; i < 2; i++) {
		delivery_traffic(i, &d[i]);
		snprintf(name, sizeof(name), "%s p50", what[i]);
		row("delivery", name, num(d[i].p50, 1), "us", d[i].p50 / 250,
		    "target", "<= 250 us", check(d[i].p50 <= 250),
		    "%llu messages from a worker at 0.3-1.3 ms gaps",
		    (unsigned long long)d[i].n);
		snprintf(name, sizeof(name), "%s p99", what[i]);
		row("delivery", name, num(d[i].p99, 1), "us", d[i].p99 / 2500,
		    "target", "<= 2500 us", check(d[i].p99 <= 2500), NULL);
		snprintf(name, sizeof(name), "%s: daemon cpu, traffic",
		    what[i]);
		row("delivery", name, num(d[i].cpu, 2), "%", -1, NULL, NULL,
		    V_NONE, "%s wake-ups/s, %s poll passes/s; %s us waiting "
		    "for a cpu per wake-up", num(d[i].wakeups, 0),
		    num(d[i].polls, 0), num(d[i].wait, 1));
	}

	/* one waiter, no traffic */
	if (no_waiters() > 0)
		die("delivery: waiters left over from the traffic cells");
	fd = unix_connect(sock_path, 0);
	write_all(fd, park, sizeof(park) - 1);
	sleep_s(0.2);		/* the poll interval has backed off */
	idle_window(&idle);
	row("delivery", "daemon cpu, 1 idle waiter", num(idle.cpu, 2), "%",
	    idle.cpu / 1.0, "target", "<= 1%", check(idle.cpu <= 1.0),
	    "%s wake-ups/s, %s poll passes/s (parked queue.recv); "
	    "stat: %llu ticks", num(idle.wakeups / idle_s, 0),
	    num(idle.polls / idle_s, 0), (unsigned long long)idle.ticks);
	cancel_wait(fd, "\"idle\"");
	close(fd);

	/* nobody waits: no timer should run at all */
	left = no_waiters();
	sleep_s(0.2);		/* the last pass, if one was due, is over */
	idle_window(&none);
	row("delivery", "no waiters: poll passes", num(none.polls, 0),
	    "passes", -1, NULL, "= 0", left ? V_ERR : check(none.polls == 0),
	    "in %.0f s: %s wake-ups, daemon cpu %.3f%% (stat: %llu ticks)%s",
	    idle_s, num(none.wakeups, 0), none.cpu,
	    (unsigned long long)none.ticks, left ? "; BUT WAITERS LEFT" :
	    "");
}

static void
sect_blobs(void)
{
	struct lg_result put, get, set, rget;
	struct iovec piov[3], giov, siov[3], rgiov;
	struct blob *b;
	double gbp, gbg, rsp = 0, rgp = 0;
	char name[48];
	int i, one_mib;

	for (i = 0; i < NBLOBS; i++) {
		b = &blobs[i];
		one_mib = blob_sizes[i] == 1 << 20;
		piov[0] = (struct iovec){ put_head, sizeof(put_head) - 1 };
		piov[1] = (struct iovec){ b->b64, b->b64len };
		piov[2] = (struct iovec){ put_tail, sizeof(put_tail) - 1 };
		giov = (struct iovec){ b->get_line, strlen(b->get_line) };
		run_cell(sock_path, PROTO_JSONL, piov, 3, 1, 1, 1, dpid, &put);
		run_cell(sock_path, PROTO_JSONL, &giov, 1, 1, 1, 1, dpid,
		    &get);
		gbp = put.rate * (double)blob_sizes[i] / 1e9;
		gbg = get.rate * (double)blob_sizes[i] / 1e9;
		if (rpid > 0) {
			siov[0] = (struct iovec){ b->set_head,
			    strlen(b->set_head) };
			siov[1] = (struct iovec){ b->raw, blob_sizes[i] };
			siov[2] = (struct iovec){ crlf, 2 };
			rgiov = (struct iovec){ get_cmd, sizeof(get_cmd) - 1 };
			run_cell(rsock_path, PROTO_RESP, siov, 3, 1, 1, 1,
			    rpid, &set);
			run_cell(rsock_path, PROTO_RESP, &rgiov, 1, 1, 1, 1,
			    rpid, &rget);
			rsp = set.rate * (double)blob_sizes[i] / 1e9;
			rgp = rget.rate * (double)blob_sizes[i] / 1e9;
			snprintf(name, sizeof(name), "redis SET %s",
			    blob_names[i]);
			row("baseline", name, num(rsp, 3), "GB/s", -1, NULL,
			    NULL, set.errors ? V_ERR : V_NONE,
			    "%s ops/s, p50 %s us; redis cpu %.0f%%%s",
			    num(set.rate, 0), num(set.p50_us, 0), set.cpu_pct,
			    err_note(&set));
			snprintf(name, sizeof(name), "redis GET %s",
			    blob_names[i]);
			row("baseline", name, num(rgp, 3), "GB/s", -1, NULL,
			    NULL, rget.errors ? V_ERR : V_NONE,
			    "%s ops/s, p50 %s us; redis cpu %.0f%%%s",
			    num(rget.rate, 0), num(rget.p50_us, 0),
			    rget.cpu_pct, err_note(&rget));
		}
		snprintf(name, sizeof(name), "shm.put %s", blob_names[i]);
		row("blobs", name, num(gbp, 3), "GB/s", rpid > 0 ? gbp / rsp :
		    -1, rpid > 0 ? "redis SET" : NULL, one_mib ? ">= 1.0 GB/s" :
		    NULL, put.errors ? V_ERR : one_mib ? check(gbp >= 1.0) :
		    V_NONE, "%s ops/s, p50 %s us; daemon cpu %.0f%% (runq "
		    "%.0f%%), client %.0f%%%s", num(put.rate, 0),
		    num(put.p50_us, 0), put.cpu_pct, put.wait_pct,
		    put.self_pct, err_note(&put));
		snprintf(name, sizeof(name), "shm.get %s", blob_names[i]);
		row("blobs", name, num(gbg, 3), "GB/s", rpid > 0 ? gbg / rgp :
		    -1, rpid > 0 ? "redis GET" : NULL, one_mib ? ">= 1.5 GB/s" :
		    NULL, get.errors ? V_ERR : one_mib ? check(gbg >= 1.5) :
		    V_NONE, "%s ops/s, p50 %s us; daemon cpu %.0f%% (runq "
		    "%.0f%%), client %.0f%%%s", num(get.rate, 0),
		    num(get.p50_us, 0), get.cpu_pct, get.wait_pct,
		    get.self_pct, err_note(&get));
	}
}

/* ---- memory ---- */

struct conns_mem {
	long	 base_kb;
	long	 idle_kb;	/* connected, nothing sent */
	long	 used_kb;	/* after one request each */
};

/*
 * RSS of pid with IDLE_CONNS connections open to path: first just
 * connected, then after one request and reply on each.
 */
static void
idle_conns(pid_t pid, const char *path, int redis, struct conns_mem *m)
{
	static const char hello[] = "{\"op\":\"hello\"}\n";
	static const char ping[] = "*1\r\n$4\r\nPING\r\n";
	char buf[4096];
	uint64_t until;
	int *fds, i;

	if ((fds = calloc(IDLE_CONNS, sizeof(int))) == NULL)
		die("out of memory");
	sleep_s(0.1);
	m->base_kb = proc_kb(pid, "VmRSS:");
	for (i = 0; i < IDLE_CONNS; i++)
		fds[i] = unix_connect(path, 0);
	until = now_ns() + 10000000000ull;
	if (!redis) {
		while (daemon_stat("\"current\":") < IDLE_CONNS + 1 &&
		    now_ns() < until)
			sleep_s(0.01);
	}
	sleep_s(0.5);		/* every accept is done */
	m->idle_kb = proc_kb(pid, "VmRSS:");
	for (i = 0; i < IDLE_CONNS; i++) {
		if (redis)
			write_all(fds[i], ping, sizeof(ping) - 1);
		else
			write_all(fds[i], hello, sizeof(hello) - 1);
	}
	for (i = 0; i < IDLE_CONNS; i++)
		read_line(fds[i], buf, sizeof(buf));
	sleep_s(0.2);
	m->used_kb = proc_kb(pid, "VmRSS:");
	for (i = 0; i < IDLE_CONNS; i++)
		close(fds[i]);
	free(fds);
	if (!redis) {
		until = now_ns() + 10000000000ull;
		while (daemon_stat("\"current\":") > 1 && now_ns() < until)
			sleep_s(0.01);
	}
}

/*
 * What a C worker gets without the socket: libipcbridge on a segment
 * attached once, a 1 MiB PHP string put (write lock, ipcb_php_put,
 * release) and got (read lock, ipcb_php_get, a copy out, release).
 */
static void
sect_library(void)
{
	size_t n = 1 << 20, slen;
	struct ipcb_shm shm;
	struct ipcb_sem sem;
	const char *val;
	char *ser, *out;
	uint64_t t0, t, ops;
	size_t len;
	int rc, pass, created = 0;
	key_t key;

	if ((ser = malloc(n + 32)) == NULL || (out = malloc(n + 32)) == NULL)
		die("out of memory");
	slen = (size_t)snprintf(ser, 32, "s:%zu:\"", n);
	memset(ser + slen, 'x', n);
	memcpy(ser + slen + n, "\";", 2);
	slen += n + 2;
	/* a private key (the library refuses IPC_PRIVATE, as workers must) */
	key = (key_t)(0x7e000000 | (getpid() & 0xffffff));
	if ((rc = ipcb_shm_open(&shm, key, 4 << 20, 0600, 1, &created)) < 0 ||
	    !created || (rc = ipcb_sem_open(&sem, key, 0600, 1)) < 0 ||
	    (rc = ipcb_sem_register(&sem, 1)) < 0)
		die("library (key 0x%08x): %s", (unsigned)key,
		    rc < 0 ? strerror(-rc) : "the key is in use");
	ipcb_php_init(&shm);
	for (pass = 0; pass < 2; pass++) {
		ops = 0;
		t0 = now_ns();
		do {
			if (ipcb_sem_lock(&sem, pass ? IPCB_LOCK_READ :
			    IPCB_LOCK_WRITE, -1) < 0)
				die("library: lock");
			if (pass == 0)
				rc = ipcb_php_put(&shm, 1, ser, slen);
			else if ((rc = ipcb_php_get(&shm, 1, &val, &len)) == 0)
				memcpy(out, val, len);
			ipcb_sem_release(&sem);
			if (rc < 0)
				die("library: %s", strerror(-rc));
			ops++;
		} while ((t = now_ns()) - t0 < (uint64_t)(cell_s * 1e9));
		row("blobs", pass ? "library get 1 MiB (C worker)" :
		    "library put 1 MiB (C worker)",
		    num((double)ops * (double)n / ((double)(t - t0)), 3),
		    "GB/s", -1, NULL, NULL, V_NONE, "%s, %s; no socket: "
		    "libipcbridge on a segment attached once",
		    pass ? "read lock, ipcb_php_get, a copy out" :
		    "write lock, ipcb_php_put", "release");
	}
	shmctl(shm.shmid, IPC_RMID, NULL);
	ipcb_shm_close(&shm);
	semctl(sem.semid, 0, IPC_RMID);
	free(ser);
	free(out);
}

/* VmHWM around one 16 MiB put (or SET) on a fresh connection. */
static void
peak_put(pid_t pid, const char *path, int redis, long *before_kb,
    long *peak_kb, long *after_kb, int *reset)
{
	struct blob *b = &blobs[NBLOBS - 1];
	char buf[512];
	int fd = unix_connect(path, 0);

	*reset = proc_reset_hwm(pid) == 0;
	*before_kb = proc_kb(pid, "VmRSS:");
	if (redis) {
		write_all(fd, b->set_head, strlen(b->set_head));
		write_all(fd, b->raw, blob_sizes[NBLOBS - 1]);
		write_all(fd, crlf, 2);
	} else {
		write_all(fd, put_head, sizeof(put_head) - 1);
		write_all(fd, b->b64, b->b64len);
		write_all(fd, put_tail, sizeof(put_tail) - 1);
	}
	read_line(fd, buf, sizeof(buf));
	if (!redis && strncmp(buf, "{\"result\"", 9) != 0)
		die("16 MiB put: %s", buf);
	close(fd);
	sleep_s(0.1);
	*peak_kb = proc_kb(pid, "VmHWM:");
	*after_kb = proc_kb(pid, "VmRSS:");
}

static long d_idle_kb, d_anon_kb, d_file_kb, r_idle_kb;
static struct conns_mem d_conns, r_conns;
static long d_before_kb, d_peak_kb, d_after_kb, r_before_kb, r_peak_kb;
static long r_after_kb;
static int d_reset, r_reset;

/* Everything measured on a fresh daemon (and Redis), before the load. */
static void
measure_fresh_memory(void)
{
	sleep_s(0.2);
	d_idle_kb = proc_kb(dpid, "VmRSS:");
	d_anon_kb = proc_kb(dpid, "RssAnon:");
	d_file_kb = proc_kb(dpid, "RssFile:");
	if (rpid > 0)
		r_idle_kb = proc_kb(rpid, "VmRSS:");
	idle_conns(dpid, sock_path, 0, &d_conns);
	if (rpid > 0)
		idle_conns(rpid, rsock_path, 1, &r_conns);
	peak_put(dpid, sock_path, 0, &d_before_kb, &d_peak_kb, &d_after_kb,
	    &d_reset);
	if (rpid > 0) {
		peak_put(rpid, rsock_path, 1, &r_before_kb, &r_peak_kb,
		    &r_after_kb, &r_reset);
		redis_cmd("*2\r\n$3\r\nDEL\r\n$1\r\nb\r\n");
	}
}

static void
sect_memory(void)
{
	double line = (double)(sizeof(put_head) + blobs[NBLOBS - 1].b64len +
	    sizeof(put_tail) - 2) / 1024.0, per_idle, per_used, r_idle = 0;
	double r_used = 0, peak;

	row("memory", "RSS idle (fresh daemon)", num(d_idle_kb / 1024.0, 2),
	    "MiB", rpid > 0 ? (double)d_idle_kb / (double)r_idle_kb : -1,
	    rpid > 0 ? "redis idle RSS" : NULL, "<= 4 MiB",
	    check(d_idle_kb <= 4096), "anon %s KiB, file %s KiB%s",
	    num((double)d_anon_kb, 0), num((double)d_file_kb, 0),
	    rpid > 0 ? "" : "");
	per_idle = (double)(d_conns.idle_kb - d_conns.base_kb) * 1024.0 /
	    IDLE_CONNS;
	per_used = (double)(d_conns.used_kb - d_conns.base_kb) * 1024.0 /
	    IDLE_CONNS;
	if (rpid > 0) {
		r_idle = (double)(r_conns.idle_kb - r_conns.base_kb) *
		    1024.0 / IDLE_CONNS;
		r_used = (double)(r_conns.used_kb - r_conns.base_kb) *
		    1024.0 / IDLE_CONNS;
	}
	row("memory", "1,000 idle conns: connected", num(per_idle, 0),
	    "B/conn", rpid > 0 && r_idle > 0 ? per_idle / r_idle : -1,
	    rpid > 0 ? "redis, connected" : NULL, "<= 8 KiB",
	    check(per_idle <= 8192), "RSS %s -> %s KiB%s",
	    num((double)d_conns.base_kb, 0), num((double)d_conns.idle_kb, 0),
	    rpid > 0 ? "" : "");
	row("memory", "1,000 idle conns: after 1 req", num(per_used, 0),
	    "B/conn", rpid > 0 && r_used > 0 ? per_used / r_used : -1,
	    rpid > 0 ? "redis, after 1 PING" : NULL, "<= 8 KiB",
	    check(per_used <= 8192), "RSS %s -> %s KiB after a hello on each",
	    num((double)d_conns.base_kb, 0), num((double)d_conns.used_kb, 0));
	if (rpid > 0)
		row("baseline", "redis RSS idle", num(r_idle_kb / 1024.0, 2),
		    "MiB", -1, NULL, NULL, V_NONE,
		    "per conn: %s B connected, %s B after a PING",
		    num(r_idle, 0), num(r_used, 0));
	peak = (double)d_peak_kb / line;
	row("memory", "peak RSS, 16 MiB put", num(d_peak_kb / 1024.0, 1),
	    "MiB", peak, "the put's line", "<= 3.0x", check(peak <= 3.0),
	    "line %s MiB; RSS %s MiB before, %s after%s",
	    num(line / 1024.0, 1), num(d_before_kb / 1024.0, 1),
	    num(d_after_kb / 1024.0, 1), d_reset ? "" :
	    " (VmHWM not reset: peak since start)");
	if (rpid > 0)
		row("baseline", "redis peak RSS, 16 MiB SET",
		    num(r_peak_kb / 1024.0, 1), "MiB", -1, NULL, NULL, V_NONE,
		    "RSS %s MiB before, %s after%s",
		    num(r_before_kb / 1024.0, 1), num(r_after_kb / 1024.0, 1),
		    r_reset ? "" : " (VmHWM not reset)");
	sleep_s(0.2);
	row("memory", "RSS idle after the run",
	    num(proc_kb(dpid, "VmRSS:") / 1024.0, 2), "MiB", -1, NULL, NULL,
	    V_NONE, "anon %s KiB, shm %s KiB (the segment's touched pages)",
	    num((double)proc_kb(dpid, "RssAnon:"), 0),
	    num((double)proc_kb(dpid, "RssShmem:"), 0));
}

/* ---- the table ---- */

static void
print_table(double elapsed, double load1)
{
	static const char *vnames[] = { "", "PASS", "MISS", "SKIP", "ERR" };
	static const char *sects[] = { "baseline", "enqueue", "roundtrip",
	    "delivery", "blobs", "memory" };
	struct utsname u;
	char model[128] = "?", line[256];
	int i, j, pass = 0, miss = 0, skip = 0, err = 0;
	FILE *f;

	if ((f = fopen("/proc/cpuinfo", "r")) != NULL) {
		while (fgets(line, sizeof(line), f) != NULL) {
			if (strncmp(line, "model name", 10) == 0) {
				sscanf(strchr(line, ':') + 2, "%127[^\n]",
				    model);
				break;
			}
		}
		fclose(f);
	}
	uname(&u);
	printf("\nipcbridge %s benchmark (%s: %.1f s cells, %.1f s warm-up, "
	    "%.1f s idle windows)\n", daemon_version, quick ? "quick" :
	    "full", cell_s, warm_s, idle_s);
	printf("machine: %ld cpus, %s, Linux %s; daemon %s (pid %d); %s%s\n",
	    sysconf(_SC_NPROCESSORS_ONLN), model, u.release, daemon_path,
	    (int)dpid, rpid > 0 ? "redis " : "no redis-server: Redis rows "
	    "skipped", rpid > 0 ? redis_version : "");
	printf("IPC: %s\n", ipc_note);
	if (load1 > 0.5)
		printf("WARNING: load average %.2f before the run: something "
		    "else is using the cpus, figures are noisy\n", load1);
	printf("NxD = connections x requests in flight on each; ratios are "
	    "this row's value / the reference named;\nrates are the median "
	    "of ten slices of each window, +-N%% their half-range; runq = "
	    "time the server was runnable but waiting for a cpu\n\n");
	printf("%-9s %-34s %12s %-7s %7s %-20s %-11s %-4s  %s\n", "section",
	    "case", "value", "unit", "ratio", "vs", "target", "", "detail");
	/* grouped by section, in the order each was measured */
	for (j = 0; j < (int)(sizeof(sects) / sizeof(sects[0])); j++) {
		if (j > 0)
			printf("\n");
		for (i = 0; i < nrows; i++) {
			if (strcmp(rows[i].sect, sects[j]) != 0)
				continue;
			printf("%-9s %-34s %12s %-7s %7s %-20s %-11s %-4s  "
			    "%s\n", rows[i].sect, rows[i].name, rows[i].val,
			    rows[i].unit, rows[i].ratio, rows[i].vs,
			    rows[i].target, vnames[rows[i].verdict],
			    rows[i].detail);
			pass += rows[i].verdict == V_PASS;
			miss += rows[i].verdict == V_MISS;
			skip += rows[i].verdict == V_SKIP;
			err += rows[i].verdict == V_ERR;
		}
	}
	printf("\ntargets: %d PASS, %d MISS, %d SKIP, %d ERR; run took %.0f "
	    "s\n", pass, miss, skip, err, elapsed);
	if (rpid <= 0)
		printf("note: install redis-server (or pass --redis PATH) for "
		    "the Redis rows and the ratios the enqueue targets need\n");
}

/* At exit, before the clean-up: if the daemon died, say why. */
static void
daemon_epitaph(void)
{
	if (dpid > 0 && !child_alive(dpid)) {
		log_tail(dlog_path, "ipcbridge");
		fprintf(stderr, "bench: the daemon (pid %d) is gone\n",
		    (int)dpid);
		untrack_pid(dpid);
		dpid = 0;
	}
}

int
main(int argc, char *argv[])
{
	const char *daemon_arg = NULL, *redis_arg = NULL;
	double cell_arg = 0;
	struct rlimit rl;
	uint64_t start = now_ns();
	double load1 = 0;
	int i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--quick") == 0)
			quick = 1;
		else if (strcmp(argv[i], "--daemon") == 0 && i + 1 < argc)
			daemon_arg = argv[++i];
		else if (strcmp(argv[i], "--redis") == 0 && i + 1 < argc)
			redis_arg = argv[++i];
		else if (strcmp(argv[i], "--host-ipc") == 0)
			host_ipc = 1;
		else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
			only = argv[++i];
		else if (strcmp(argv[i], "--cell") == 0 && i + 1 < argc)
			cell_arg = atof(argv[++i]);
		else
			usage();
	}
	warm_s = quick ? 0.1 : 0.5;
	cell_s = quick ? 1.0 : 5.0;
	idle_s = quick ? 1.0 : 5.0;
	if (cell_arg > 0)
		cell_s = cell_arg;
	setvbuf(stdout, NULL, _IOLBF, 0);

	cleanup_init();
	atexit(daemon_epitaph);		/* runs before cleanup() */
	if (getloadavg(&load1, 1) != 1)
		load1 = 0;
	find_daemon(daemon_arg);
	if (redis_arg != NULL) {	/* "" runs without Redis */
		snprintf(redis_bin, sizeof(redis_bin), "%s", redis_arg);
		if (redis_bin[0] != '\0' && access(redis_bin, X_OK) < 0)
			die("--redis %s: %s", redis_bin, strerror(errno));
	}
	else if (find_in_path("redis-server", redis_bin, sizeof(redis_bin)) <
	    0)
		redis_bin[0] = '\0';
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
	    rl.rlim_cur < 2 * IDLE_CONNS + 200)
		die("need %d open files (ulimit -n), have %lu",
		    2 * IDLE_CONNS + 200, (unsigned long)rl.rlim_cur);

	private_ipc();
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/ipcbench.XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		die("mkdtemp: %s", strerror(errno));
	snprintf(sock_path, sizeof(sock_path), "%s/ipcbridge.sock", tmpdir);
	snprintf(echo_path, sizeof(echo_path), "%s/echo.sock", tmpdir);
	snprintf(rsock_path, sizeof(rsock_path), "%s/redis.sock", tmpdir);
	snprintf(conf_path, sizeof(conf_path), "%s/ipcbridge.conf", tmpdir);
	snprintf(dlog_path, sizeof(dlog_path), "%s/ipcbridge.log", tmpdir);
	snprintf(rlog_path, sizeof(rlog_path), "%s/redis.log", tmpdir);
	qkey = free_key(-1);
	skey = free_key(qkey);
	track_keys(qkey, skey);
	write_config();

	fprintf(stderr, "bench: %s, daemon %s, %s\n", quick ? "quick" : "full",
	    daemon_path, redis_bin[0] ? redis_bin : "no redis-server");
	make_blobs();
	start_daemon();
	fprintf(stderr, "bench: daemon pid %d\n", (int)dpid);
	if (redis_bin[0] != '\0')
		start_redis();
	start_echo();
	if (wait_socket(echo_path, epid, 5) < 0)
		die("the echo server did not start");

	if (wanted("memory"))
		measure_fresh_memory();
	sect_baseline_kernel();
	sect_echo();
	if (wanted("enqueue"))
		sect_enqueue();
	if (wanted("roundtrip"))
		sect_roundtrip();
	if (wanted("delivery"))
		sect_delivery();
	if (wanted("blobs"))
		sect_blobs();
	if (wanted("library"))
		sect_library();
	if (wanted("memory"))
		sect_memory();
	if (!child_alive(dpid))
		die("the daemon died during the run");
	print_table((double)(now_ns() - start) / 1e9, load1);

	close(ctl_fd);
	if (rctl_fd >= 0)
		close(rctl_fd);
	cleanup();
	return 0;
}
