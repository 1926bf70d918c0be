/*
 * proc.c - the processes the benchmark starts, what /proc says about them,
 * and the clean-up that runs however the run ends.
 *
 * Everything the run creates is registered here as it is made: child
 * processes, private IPC keys and queues, the temp dir. cleanup() stops
 * the children (SIGTERM, then SIGKILL), removes the IPC objects and the
 * temp dir; it runs from atexit, so die() and a normal end both get it,
 * and from SIGINT/SIGTERM/SIGHUP. Children die with us (PR_SET_PDEATHSIG)
 * even if we are killed outright.
 */
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define MAX_TRACKED	16

char tmpdir[64];

static pid_t main_pid;
static pid_t pids[MAX_TRACKED];
static int msqids[MAX_TRACKED];
static int nmsqids;
static key_t qkey = -1, skey = -1;
static volatile sig_atomic_t cleaning;

uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void
sleep_s(double s)
{
	struct timespec ts;

	if (s <= 0)
		return;
	ts.tv_sec = (time_t)s;
	ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

void
die(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	va_start(ap, fmt);
	fprintf(stderr, "bench: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	if (getpid() != main_pid)
		_exit(1);
	exit(1);
}

static void
on_signal(int sig)
{
	cleanup();
	_exit(128 + sig);
}

void
cleanup_init(void)
{
	struct sigaction sa;

	main_pid = getpid();
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	atexit(cleanup);
}

void
track_pid(pid_t pid)
{
	int i;

	for (i = 0; i < MAX_TRACKED; i++) {
		if (pids[i] == 0) {
			pids[i] = pid;
			return;
		}
	}
	die("too many child processes");
}

void
untrack_pid(pid_t pid)
{
	int i;

	for (i = 0; i < MAX_TRACKED; i++) {
		if (pids[i] == pid)
			pids[i] = 0;
	}
}

void
track_msqid(int id)
{
	if (nmsqids == MAX_TRACKED)
		die("too many private queues");
	msqids[nmsqids++] = id;
}

void
track_keys(key_t queue, key_t shm)
{
	qkey = queue;
	skey = shm;
}

/* Remove what the key names, if it exists (it is ours: see free_key). */
static void
remove_keys(void)
{
	int id, i;

	if (qkey != -1 && (id = msgget(qkey, 0)) >= 0)
		msgctl(id, IPC_RMID, NULL);
	if (skey != -1 && (id = shmget(skey, 0, 0)) >= 0)
		shmctl(id, IPC_RMID, NULL);
	if (skey != -1 && (id = semget(skey, 0, 0)) >= 0)
		semctl(id, 0, IPC_RMID);
	for (i = 0; i < nmsqids; i++)
		msgctl(msqids[i], IPC_RMID, NULL);
	nmsqids = 0;
}

static void
remove_tmpdir(void)
{
	char path[PATH_MAX];
	struct dirent *d;
	DIR *dir;

	if (tmpdir[0] == '\0' || (dir = opendir(tmpdir)) == NULL)
		return;
	while ((d = readdir(dir)) != NULL) {
		if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", tmpdir, d->d_name);
		unlink(path);
	}
	closedir(dir);
	rmdir(tmpdir);
	tmpdir[0] = '\0';
}

/* Stop every child, remove every IPC object and the temp dir. */
void
cleanup(void)
{
	int i;

	if (getpid() != main_pid || cleaning)
		return;
	cleaning = 1;
	for (i = 0; i < MAX_TRACKED; i++) {
		if (pids[i] != 0)
			stop_child(pids[i], 6.0);
	}
	remove_keys();
	remove_tmpdir();
	cleaning = 0;
}

/* A random key in 0x7e000000..0x7effffff that no queue, segment or
 * semaphore set uses yet, other than avoid. */
key_t
free_key(key_t avoid)
{
	uint32_t r;
	key_t k;
	int tries;

	for (tries = 0; tries < 1000; tries++) {
		if (getrandom(&r, sizeof(r), 0) != sizeof(r))
			r = (uint32_t)now_ns() ^ (uint32_t)getpid();
		k = (key_t)(0x7e000000u | (r & 0xfffffeu));
		if (k == avoid || msgget(k, 0) >= 0 || errno != ENOENT ||
		    shmget(k, 0, 0) >= 0 || errno != ENOENT ||
		    semget(k, 0, 0) >= 0 || errno != ENOENT)
			continue;
		return k;
	}
	die("no free IPC key in 0x7e000000..0x7effffff");
}

/* In a new child: default signals, and die when the benchmark dies. */
static void
child_setup(void)
{
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	signal(SIGPIPE, SIG_DFL);
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != main_pid)
		_exit(1);
}

/* Run argv with stdout and stderr to log; the child is tracked. */
pid_t
spawn(char *const argv[], const char *log)
{
	pid_t pid;
	int fd;

	fflush(NULL);
	if ((pid = fork()) < 0)
		die("fork: %s", strerror(errno));
	if (pid > 0) {
		track_pid(pid);
		return pid;
	}
	child_setup();
	if ((fd = open("/dev/null", O_RDONLY)) >= 0)
		dup2(fd, 0);
	if ((fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600)) >= 0) {
		dup2(fd, 1);
		dup2(fd, 2);
	}
	execvp(argv[0], argv);
	fprintf(stderr, "bench: exec %s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

/* fork() for a helper that runs our own code; 0 in the child. */
pid_t
fork_child(void)
{
	pid_t pid;

	fflush(NULL);
	if ((pid = fork()) < 0)
		die("fork: %s", strerror(errno));
	if (pid > 0) {
		track_pid(pid);
		return pid;
	}
	child_setup();
	return 0;
}

int
child_alive(pid_t pid)
{
	return waitpid(pid, NULL, WNOHANG) == 0;
}

/* SIGTERM, up to grace seconds to exit, then SIGKILL. */
void
stop_child(pid_t pid, double grace)
{
	uint64_t until = now_ns() + (uint64_t)(grace * 1e9);
	pid_t r;

	kill(pid, SIGTERM);
	while ((r = waitpid(pid, NULL, WNOHANG)) == 0 && now_ns() < until)
		sleep_s(0.002);
	if (r == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	untrack_pid(pid);
}

static int
try_connect(const char *path)
{
	struct sockaddr_un sun;
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path))
		die("socket path too long: %s", path);
	strcpy(sun.sun_path, path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		die("socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

int
unix_connect(const char *path, int nonblock)
{
	int fd;

	if ((fd = try_connect(path)) < 0)
		die("connect %s: %s", path, strerror(errno));
	if (nonblock && fcntl(fd, F_SETFL, O_NONBLOCK) < 0)
		die("fcntl: %s", strerror(errno));
	return fd;
}

/* Wait until the socket accepts connections; -1 if pid exits first. */
int
wait_socket(const char *path, pid_t pid, double timeout)
{
	uint64_t until = now_ns() + (uint64_t)(timeout * 1e9);
	int fd;

	while (now_ns() < until) {
		if ((fd = try_connect(path)) >= 0) {
			close(fd);
			return 0;
		}
		if (!child_alive(pid)) {
			untrack_pid(pid);
			return -1;
		}
		sleep_s(0.005);
	}
	return -1;
}

/* A "Name:   N kB" line of /proc/PID/status, in kB (or a count). */
long
proc_kb(pid_t pid, const char *field)
{
	char path[64], line[256];
	size_t n = strlen(field);
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, field, n) == 0) {
			v = strtol(line + n, NULL, 10);
			break;
		}
	}
	fclose(f);
	return v;
}

/* utime + stime from /proc/PID/stat, in clock ticks. */
uint64_t
proc_stat_ticks(pid_t pid)
{
	unsigned long long ut = 0, st = 0;
	char path[64], buf[1024], *p;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((f = fopen(path, "r")) == NULL)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* the name may hold spaces: fields are counted after its ')' */
	if ((p = strrchr(buf, ')')) == NULL || sscanf(p + 2,
	    "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
	    &ut, &st) != 2)
		return 0;
	return ut + st;
}

/*
 * CPU time used, in ns: /proc/PID/schedstat counts the same on-CPU time
 * as /proc/PID/stat's utime+stime, but in ns instead of 10 ms ticks,
 * which matters when the figure to check is 1% of a one-second window.
 */
uint64_t
proc_cpu_ns(pid_t pid)
{
	unsigned long long ns;
	char path[64];
	FILE *f;
	int ok;

	snprintf(path, sizeof(path), "/proc/%d/schedstat", (int)pid);
	if ((f = fopen(path, "r")) != NULL) {
		ok = fscanf(f, "%llu", &ns) == 1;
		fclose(f);
		if (ok)
			return ns;
	}
	return proc_stat_ticks(pid) * (1000000000u /
	    (uint64_t)sysconf(_SC_CLK_TCK));
}

/* Time spent runnable but waiting for a cpu, in ns (0 if unknown). */
uint64_t
proc_wait_ns(pid_t pid)
{
	unsigned long long run, wait;
	char path[64];
	FILE *f;
	int ok;

	snprintf(path, sizeof(path), "/proc/%d/schedstat", (int)pid);
	if ((f = fopen(path, "r")) == NULL)
		return 0;
	ok = fscanf(f, "%llu %llu", &run, &wait) == 2;
	fclose(f);
	return ok ? wait : 0;
}

/* Context switches: each wake-up of an idle process is at least one. */
uint64_t
proc_ctxt(pid_t pid)
{
	long v = proc_kb(pid, "voluntary_ctxt_switches:");
	long nv = proc_kb(pid, "nonvoluntary_ctxt_switches:");

	return (uint64_t)(v < 0 ? 0 : v) + (uint64_t)(nv < 0 ? 0 : nv);
}

/* Reset VmHWM to the current RSS (Linux 4.0+). */
int
proc_reset_hwm(pid_t pid)
{
	char path[64];
	int fd, ok;

	snprintf(path, sizeof(path), "/proc/%d/clear_refs", (int)pid);
	if ((fd = open(path, O_WRONLY)) < 0)
		return -1;
	ok = write(fd, "5", 1) == 1;
	close(fd);
	return ok ? 0 : -1;
}

void
write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;
	ssize_t k;

	while (n > 0) {
		if ((k = write(fd, p, n)) < 0) {
			if (errno == EINTR)
				continue;
			die("write: %s", strerror(errno));
		}
		p += k;
		n -= (size_t)k;
	}
}

/*
 * Read one reply line on a blocking request/reply connection (the server
 * sends nothing unasked there, so a read never takes part of the next
 * reply). A longer line is cut to fit; returns its length.
 */
size_t
read_line(int fd, char *buf, size_t cap)
{
	char drop[4096];
	size_t n = 0;
	ssize_t k;

	for (;;) {
		if (n < cap - 1)
			k = read(fd, buf + n, cap - 1 - n);
		else
			k = read(fd, drop, sizeof(drop));
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			die("read: %s", k == 0 ? "connection closed" :
			    strerror(errno));
		if (n < cap - 1) {
			n += (size_t)k;
			if (buf[n - 1] == '\n')
				break;
		} else if (drop[k - 1] == '\n')
			break;
	}
	buf[n] = '\0';
	return n;
}

/* The last lines of a child's log, to say why it failed. */
void
log_tail(const char *path, const char *what)
{
	char buf[4096];
	ssize_t n;
	off_t off;
	int fd;

	if ((fd = open(path, O_RDONLY)) < 0)
		return;
	off = lseek(fd, 0, SEEK_END);
	lseek(fd, off > (off_t)sizeof(buf) - 1 ? off - (off_t)sizeof(buf) + 1 :
	    0, SEEK_SET);
	if ((n = read(fd, buf, sizeof(buf) - 1)) > 0) {
		buf[n] = '\0';
		fprintf(stderr, "bench: --- end of %s's log (%s) ---\n%s", what,
		    path, buf);
	}
	close(fd);
}
