/*
 * check_sem.c - the guard semaphore (src/lib/sem.c): PHP's 3-semaphore
 * set, sem_get's registration protocol, acquire with and without a
 * timeout, SEM_UNDO on death, and the lock shared with real PHP.
 *
 * Every test works on its own random key in 0x7e000000-0x7effffff. The ids
 * it creates go into a page shared with the runner, which removes them
 * even when a test fails before its own teardown; nothing is left in ipcs.
 */
#include <sys/mman.h>
#include <sys/wait.h>

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include "ipcbridge.h"
#include "php_path.h"

/* glibc leaves semctl's fourth argument to the caller. */
union semun_arg {
	int		 val;
	struct semid_ds	*buf;
	unsigned short	*array;
};

/* The ids this run created: shared with the runner process. */
struct registry {
	int	 n;
	int	 id[64];
};
static struct registry *reg;

static void
reg_add(int semid)
{
	ck_assert_int_lt(reg->n, 64);
	reg->id[reg->n++] = semid;
}

static void
reg_sweep(void)
{
	int i;

	for (i = 0; i < reg->n; i++)
		(void)semctl(reg->id[i], 0, IPC_RMID);
	reg->n = 0;
}

static void
seed(void)
{
	static pid_t seeded;
	struct timespec ts;

	if (seeded == getpid())
		return;
	seeded = getpid();
	clock_gettime(CLOCK_REALTIME, &ts);
	srandom((unsigned)getpid() ^ (unsigned)ts.tv_nsec);
}

/* A key nobody uses now (random, so a lost race is unlikely). */
static key_t
unused_key(void)
{
	key_t k;

	seed();
	for (;;) {
		k = (key_t)(0x7e000000 | (random() & 0xffffff));
		if (semget(k, 0, 0) < 0 && errno == ENOENT)
			return k;
	}
}

/* A new set of nsems under a private key, made with IPC_EXCL. */
static key_t
new_set(int nsems, int *semid)
{
	key_t k;
	int id;

	seed();
	for (;;) {
		k = (key_t)(0x7e000000 | (random() & 0xffffff));
		id = semget(k, nsems, 0600 | IPC_CREAT | IPC_EXCL);
		if (id >= 0)
			break;
		ck_assert_int_eq(errno, EEXIST);
	}
	reg_add(id);
	if (semid != NULL)
		*semid = id;
	return k;
}

/* A PHP-shaped set, opened through the library. */
static key_t
open_new(struct ipcb_sem *s)
{
	key_t k = new_set(3, NULL);

	ck_assert_int_eq(ipcb_sem_open(s, k, 0600, 1), 0);
	return k;
}

static int
val(int semid, int num)
{
	int v = semctl(semid, num, GETVAL);

	ck_assert_int_ge(v, 0);
	return v;
}

static void
assert_values(const struct ipcb_sem *s, int lock, int usage)
{
	int l = -1, u = -1;

	ck_assert_int_eq(ipcb_sem_values(s, &l, &u), 0);
	ck_assert_msg(l == lock && u == usage,
	    "lock %d usage %d, want lock %d usage %d", l, u, lock, usage);
	ck_assert_int_eq(val(s->semid, 2), 0);	/* the gate is open */
}

static long
ms_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0->tv_sec) * 1000 +
	    (t.tv_nsec - t0->tv_nsec) / 1000000;
}

/* Read one byte within ms; -1 on timeout or EOF. */
static int
read_byte(int fd, int ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	unsigned char c;

	if (poll(&pfd, 1, ms) != 1 || read(fd, &c, 1) != 1)
		return -1;
	return c;
}

/*
 * A child that opens key, registers (max 1) and acquires, reports 'A' on
 * *status, then waits for a byte on *control: 'r' releases and closes, EOF
 * (the test died) or anything else just exits. With hold_ms > 0 it
 * releases by itself after that long instead.
 */
static pid_t
holder(key_t key, int hold_ms, int *control, int *status)
{
	int cp[2], sp[2];
	pid_t pid;

	ck_assert_int_eq(pipe(cp), 0);
	ck_assert_int_eq(pipe(sp), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct ipcb_sem s;
		char c = 'A';

		close(cp[1]);
		close(sp[0]);
		if (ipcb_sem_open(&s, key, 0600, 0) < 0 ||
		    ipcb_sem_register(&s, 1) < 0 ||
		    ipcb_sem_acquire(&s, -1) < 0)
			c = 'E';
		if (write(sp[1], &c, 1) != 1 || c == 'E')
			_exit(1);
		if (hold_ms > 0) {
			usleep((useconds_t)hold_ms * 1000);
			_exit(ipcb_sem_release(&s) < 0 ||
			    ipcb_sem_close(&s) < 0);
		}
		if (read(cp[0], &c, 1) == 1 && c == 'r')
			_exit(ipcb_sem_release(&s) < 0 ||
			    ipcb_sem_close(&s) < 0);
		_exit(0);
	}
	close(cp[0]);
	close(sp[1]);
	ck_assert_int_eq(read_byte(sp[0], 5000), 'A');
	*control = cp[1];
	*status = sp[0];
	return pid;
}

static int
reap(pid_t pid)
{
	int st;

	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	return st;
}

static void
teardown(void)
{
	reg_sweep();
}

START_TEST(test_open_creates_php_set)
{
	struct ipcb_sem s;
	struct semid_ds ds;
	union semun_arg arg = { .buf = &ds };
	key_t k = unused_key();
	int id;

	ck_assert_int_eq(ipcb_sem_open(&s, k, 0600, 0), -ENOENT);
	ck_assert_int_eq(s.semid, -1);
	ck_assert_int_eq(ipcb_sem_open(&s, k, 0640 | 01000, 1), 0);
	reg_add(s.semid);
	ck_assert_int_eq(s.key, k);
	ck_assert_int_eq(s.registered, 0);
	ck_assert_int_eq(s.held, 0);
	ck_assert_int_eq(semctl(s.semid, 0, IPC_STAT, arg), 0);
	/* PHP's 3 and the torn-write marker */
	ck_assert_uint_eq(ds.sem_nsems, 4);
	ck_assert_int_eq(s.nsems, 4);
	ck_assert_int_eq(s.torn_marker, 1);
	ck_assert_int_eq(ds.sem_perm.mode & 07777, 0640);
	/* nothing initialised yet: register does that */
	ck_assert_int_eq(val(s.semid, 0), 0);
	ck_assert_int_eq(val(s.semid, 1), 0);
	ck_assert_int_eq(val(s.semid, 2), 0);
	ck_assert_int_eq(val(s.semid, 3), 0);
	/* a second open, create or not, finds the same set */
	id = s.semid;
	ck_assert_int_eq(ipcb_sem_open(&s, k, 0600, 1), 0);
	ck_assert_int_eq(s.semid, id);
	ck_assert_int_eq(ipcb_sem_open(&s, k, 0600, 0), 0);
	ck_assert_int_eq(s.semid, id);
}
END_TEST

/* A set of 3 that PHP made first works, without the marker. */
START_TEST(test_php_made_set_has_no_marker)
{
	struct ipcb_sem s;

	open_new(&s);
	ck_assert_int_eq(s.nsems, 3);
	ck_assert_int_eq(s.torn_marker, 0);
	ck_assert_int_eq(ipcb_sem_register(&s, 1), 0);
	ck_assert_int_eq(ipcb_sem_torn(&s), -ENOTSUP);
	ck_assert_int_eq(ipcb_sem_lock(&s, IPCB_LOCK_WRITE, 0), 0);
	ck_assert_int_eq(val(s.semid, 0), 0);
	ck_assert_int_eq(ipcb_sem_release(&s), 0);
	ck_assert_int_eq(val(s.semid, 0), 1);
	ck_assert_int_eq(ipcb_sem_lock(&s, IPCB_LOCK_REPAIR, 0), 0);
	ck_assert_int_eq(ipcb_sem_release(&s), 0);
	ck_assert_int_eq(val(s.semid, 0), 1);
}
END_TEST

/* A set of ours, created and registered through the library. */
static key_t
open_ours(struct ipcb_sem *s)
{
	key_t k = unused_key();

	ck_assert_int_eq(ipcb_sem_open(s, k, 0600, 1), 0);
	reg_add(s->semid);
	ck_assert_int_eq(s->torn_marker, 1);
	ck_assert_int_eq(ipcb_sem_register(s, 1), 0);
	return k;
}

/* A live writer raises the marker only while it holds the lock. */
START_TEST(test_write_lock_raises_marker)
{
	struct ipcb_sem a, b;
	key_t k = open_ours(&a);

	ck_assert_int_eq(ipcb_sem_open(&b, k, 0600, 0), 0);
	ck_assert_int_eq(ipcb_sem_lock(&a, IPCB_LOCK_WRITE, 0), 0);
	ck_assert_int_eq(val(a.semid, 0), 0);
	ck_assert_int_eq(val(a.semid, 3), 1);
	/* busy, not torn: the writer is alive and holds the lock */
	ck_assert_int_eq(ipcb_sem_torn(&b), 0);
	ck_assert_int_eq(ipcb_sem_torn(&a), 0);
	ck_assert_int_eq(ipcb_sem_lock(&b, IPCB_LOCK_READ, 0), -EAGAIN);
	ck_assert_int_eq(ipcb_sem_lock(&b, IPCB_LOCK_WRITE, 1000), -EAGAIN);
	ck_assert_int_eq(ipcb_sem_lock(&a, IPCB_LOCK_WRITE, 0), -EDEADLK);
	ck_assert_int_eq(ipcb_sem_release(&a), 0);
	ck_assert_int_eq(val(a.semid, 0), 1);
	ck_assert_int_eq(val(a.semid, 3), 0);
	/* readers leave the marker alone */
	ck_assert_int_eq(ipcb_sem_lock(&b, IPCB_LOCK_READ, 0), 0);
	ck_assert_int_eq(val(a.semid, 3), 0);
	ck_assert_int_eq(ipcb_sem_release(&b), 0);
	ck_assert_int_eq(ipcb_sem_lock(&a, IPCB_LOCK_WRITE, 0), 0);
	ck_assert_int_eq(ipcb_sem_lock(&a, 7, 0), -EINVAL);
	/* closing a handle that writes is a finished write */
	ck_assert_int_eq(ipcb_sem_close(&a), 0);
	ck_assert_int_eq(val(b.semid, 0), 1);
	ck_assert_int_eq(val(b.semid, 3), 0);
	ck_assert_int_eq(ipcb_sem_torn(&b), 0);
}
END_TEST

/* Fork a process that takes a write lock on k and dies holding it. */
static void
die_writing(key_t k)
{
	struct ipcb_sem c;
	pid_t pid;
	int w;

	if ((pid = fork()) == 0) {
		if (ipcb_sem_open(&c, k, 0600, 0) < 0 ||
		    ipcb_sem_lock(&c, IPCB_LOCK_WRITE, 0) < 0)
			_exit(1);
		raise(SIGKILL);
		_exit(2);
	}
	ck_assert_int_ge(pid, 0);
	w = reap(pid);
	ck_assert_msg(WIFSIGNALED(w) && WTERMSIG(w) == SIGKILL,
	    "writer exited with status 0x%x", w);
}

/* SEM_UNDO gives the lock back, the marker says the bytes may be torn. */
START_TEST(test_dead_writer_leaves_marker)
{
	struct ipcb_sem s;
	key_t k = open_ours(&s);

	die_writing(k);
	ck_assert_int_eq(val(s.semid, 0), 1);
	ck_assert_int_eq(val(s.semid, 3), 1);
	ck_assert_int_eq(ipcb_sem_torn(&s), 1);
	ck_assert_int_eq(ipcb_sem_acquire(&s, 0), -EBADMSG);
	ck_assert_int_eq(ipcb_sem_acquire(&s, 100), -EBADMSG);
	ck_assert_int_eq(ipcb_sem_lock(&s, IPCB_LOCK_WRITE, 0), -EBADMSG);
	/* a refused lock is given back, and leaves the marker as it was */
	ck_assert_int_eq(val(s.semid, 0), 1);
	ck_assert_int_eq(val(s.semid, 3), 1);
	ck_assert_int_eq(s.held, 0);
	ck_assert_int_eq(ipcb_sem_lock(&s, IPCB_LOCK_REPAIR, 0), 0);
	ck_assert_int_eq(ipcb_sem_torn(&s), 1);
	ck_assert_int_eq(ipcb_sem_release(&s), 0);
	ck_assert_int_eq(val(s.semid, 0), 1);
	ck_assert_int_eq(val(s.semid, 3), 0);
	ck_assert_int_eq(ipcb_sem_torn(&s), 0);
	ck_assert_int_eq(ipcb_sem_lock(&s, IPCB_LOCK_WRITE, 0), 0);
	ck_assert_int_eq(ipcb_sem_release(&s), 0);
	ck_assert_int_eq(ipcb_sem_acquire(&s, 0), 0);
	ck_assert_int_eq(ipcb_sem_release(&s), 0);
}
END_TEST

/* sysv_ipc makes sets of 1: PHP cannot use them, neither can we. */
START_TEST(test_open_short_set)
{
	struct ipcb_sem s;
	key_t k = new_set(1, NULL);

	ck_assert_int_eq(ipcb_sem_open(&s, k, 0600, 1), -EINVAL);
	ck_assert_int_eq(ipcb_sem_open(&s, k, 0600, 0), -EINVAL);
	ck_assert_int_eq(s.semid, -1);
}
END_TEST

START_TEST(test_register_first_sets_lock)
{
	struct ipcb_sem s;

	open_new(&s);
	ck_assert_int_eq(ipcb_sem_register(&s, 1), 0);
	ck_assert_int_eq(s.registered, 1);
	assert_values(&s, 1, 1);
	ck_assert_int_eq(ipcb_sem_close(&s), 0);
	ck_assert_int_eq(s.semid, -1);
}
END_TEST

START_TEST(test_register_rejects)
{
	struct ipcb_sem s, closed = { .semid = -1 };

	open_new(&s);
	ck_assert_int_eq(ipcb_sem_register(&s, 0), -EINVAL);
	ck_assert_int_eq(ipcb_sem_register(&s, -1), -EINVAL);
	ck_assert_int_eq(ipcb_sem_register(&s, 32768), -ERANGE);
	assert_values(&s, 0, 0);
	ck_assert_int_eq(ipcb_sem_register(&s, 32767), 0);
	assert_values(&s, 32767, 1);
	ck_assert_int_eq(ipcb_sem_register(&s, 1), -EALREADY);
	assert_values(&s, 32767, 1);
	ck_assert_int_eq(ipcb_sem_register(&closed, 1), -EBADF);
	ck_assert_int_eq(ipcb_sem_acquire(&closed, 0), -EBADF);
	ck_assert_int_eq(ipcb_sem_release(&closed), -EBADF);
	ck_assert_int_eq(ipcb_sem_values(&closed, NULL, NULL), -EBADF);
	ck_assert_int_eq(ipcb_sem_close(&closed), 0);
}
END_TEST

/* The second user must not SETVAL a lock the first one holds. */
START_TEST(test_second_register_keeps_lock)
{
	struct ipcb_sem a, b;
	key_t k = open_new(&a);

	ck_assert_int_eq(ipcb_sem_register(&a, 1), 0);
	ck_assert_int_eq(ipcb_sem_acquire(&a, 0), 0);
	ck_assert_int_eq(a.held, 1);
	assert_values(&a, 0, 1);
	ck_assert_int_eq(ipcb_sem_open(&b, k, 0600, 0), 0);
	ck_assert_int_eq(ipcb_sem_register(&b, 5), 0);
	assert_values(&b, 0, 2);
	ck_assert_int_eq(ipcb_sem_acquire(&b, 0), -EAGAIN);
	ck_assert_int_eq(b.held, 0);
	/* not re-entrant, like PHP */
	ck_assert_int_eq(ipcb_sem_acquire(&a, 0), -EAGAIN);
	ck_assert_int_eq(ipcb_sem_release(&a), 0);
	assert_values(&a, 1, 2);
	ck_assert_int_eq(ipcb_sem_acquire(&b, 0), 0);
	assert_values(&a, 0, 2);
	ck_assert_int_eq(ipcb_sem_close(&b), 0);
	assert_values(&a, 1, 1);
	ck_assert_int_eq(ipcb_sem_close(&a), 0);
	/* usage back to 0: the next register re-initialises, as in PHP */
	ck_assert_int_eq(ipcb_sem_open(&a, k, 0600, 0), 0);
	ck_assert_int_eq(ipcb_sem_register(&a, 3), 0);
	assert_values(&a, 3, 1);
	ck_assert_int_eq(ipcb_sem_close(&a), 0);
}
END_TEST

START_TEST(test_release_unheld)
{
	struct ipcb_sem a, b;
	key_t k = open_new(&a);

	ck_assert_int_eq(ipcb_sem_register(&a, 1), 0);
	ck_assert_int_eq(ipcb_sem_release(&a), -EPERM);
	assert_values(&a, 1, 1);
	/* a handle that holds nothing cannot release another's hold */
	ck_assert_int_eq(ipcb_sem_open(&b, k, 0600, 0), 0);
	ck_assert_int_eq(ipcb_sem_acquire(&a, 0), 0);
	ck_assert_int_eq(ipcb_sem_release(&b), -EPERM);
	assert_values(&a, 0, 1);
	ck_assert_int_eq(ipcb_sem_release(&a), 0);
	ck_assert_int_eq(ipcb_sem_release(&a), -EPERM);
	assert_values(&a, 1, 1);
}
END_TEST

START_TEST(test_max_acquire)
{
	struct ipcb_sem s;

	open_new(&s);
	ck_assert_int_eq(ipcb_sem_register(&s, 2), 0);
	ck_assert_int_eq(ipcb_sem_acquire(&s, 0), 0);
	ck_assert_int_eq(ipcb_sem_acquire(&s, 0), 0);
	ck_assert_int_eq(ipcb_sem_acquire(&s, 0), -EAGAIN);
	ck_assert_int_eq(s.held, 2);
	assert_values(&s, 0, 1);
	ck_assert_int_eq(ipcb_sem_release(&s), 0);
	ck_assert_int_eq(s.held, 1);
	assert_values(&s, 1, 1);
}
END_TEST

START_TEST(test_close_releases_held)
{
	struct ipcb_sem s, u;
	key_t k = open_new(&s);

	ck_assert_int_eq(ipcb_sem_register(&s, 3), 0);
	ck_assert_int_eq(ipcb_sem_acquire(&s, 0), 0);
	ck_assert_int_eq(ipcb_sem_acquire(&s, -1), 0);
	assert_values(&s, 1, 1);
	/* an unregistered handle (as Python would be) that holds */
	ck_assert_int_eq(ipcb_sem_open(&u, k, 0600, 0), 0);
	ck_assert_int_eq(ipcb_sem_acquire(&u, 100), 0);
	assert_values(&u, 0, 1);
	ck_assert_int_eq(ipcb_sem_close(&u), 0);
	ck_assert_int_eq(u.semid, -1);
	ck_assert_int_eq(ipcb_sem_open(&u, k, 0600, 0), 0);
	assert_values(&u, 1, 1);
	ck_assert_int_eq(ipcb_sem_close(&s), 0);
	ck_assert_int_eq(s.semid, -1);
	ck_assert_int_eq(s.held, 0);
	ck_assert_int_eq(s.registered, 0);
	assert_values(&u, 3, 0);
	ck_assert_int_eq(ipcb_sem_close(&s), 0);	/* twice is harmless */
	assert_values(&u, 3, 0);
}
END_TEST

START_TEST(test_busy_in_other_process)
{
	struct ipcb_sem s;
	int ctl, st, w;
	key_t k = open_new(&s);
	pid_t pid;

	ck_assert_int_eq(ipcb_sem_register(&s, 1), 0);
	pid = holder(k, 0, &ctl, &st);
	assert_values(&s, 0, 2);
	ck_assert_int_eq(ipcb_sem_acquire(&s, 0), -EAGAIN);
	ck_assert_int_eq(s.held, 0);
	ck_assert_int_eq(write(ctl, "r", 1), 1);
	w = reap(pid);
	ck_assert(WIFEXITED(w) && WEXITSTATUS(w) == 0);
	assert_values(&s, 1, 1);
	ck_assert_int_eq(ipcb_sem_acquire(&s, 0), 0);
	close(ctl);
	close(st);
}
END_TEST

START_TEST(test_timeout_expires)
{
	struct ipcb_sem s;
	struct timespec t0;
	int ctl, st;
	long ms;
	key_t k = open_new(&s);
	pid_t pid;

	ck_assert_int_eq(ipcb_sem_register(&s, 1), 0);
	pid = holder(k, 0, &ctl, &st);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ck_assert_int_eq(ipcb_sem_acquire(&s, 300), -EAGAIN);
	ms = ms_since(&t0);
	ck_assert_msg(ms >= 290 && ms < 2000, "timed out after %ld ms", ms);
	ck_assert_int_eq(s.held, 0);
	close(ctl);		/* EOF: the holder exits, SEM_UNDO frees it */
	reap(pid);
	assert_values(&s, 1, 1);
	close(st);
}
END_TEST

/* A timed or blocking acquire gets the lock when the holder lets go. */
START_TEST(test_wait_then_acquire)
{
	struct ipcb_sem s;
	struct timespec t0;
	int ctl, st, w;
	long ms;
	key_t k = open_new(&s);
	pid_t pid;

	ck_assert_int_eq(ipcb_sem_register(&s, 1), 0);
	pid = holder(k, 200, &ctl, &st);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ck_assert_int_eq(ipcb_sem_acquire(&s, 5000), 0);
	ms = ms_since(&t0);
	ck_assert_msg(ms >= 100 && ms < 4000, "acquired after %ld ms", ms);
	w = reap(pid);
	ck_assert(WIFEXITED(w) && WEXITSTATUS(w) == 0);
	ck_assert_int_eq(ipcb_sem_release(&s), 0);
	close(ctl);
	close(st);

	pid = holder(k, 200, &ctl, &st);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ck_assert_int_eq(ipcb_sem_acquire(&s, -1), 0);
	ms = ms_since(&t0);
	ck_assert_msg(ms >= 100 && ms < 4000, "acquired after %ld ms", ms);
	reap(pid);
	assert_values(&s, 0, 1);
	close(ctl);
	close(st);
}
END_TEST

START_TEST(test_killed_holder_releases)
{
	struct ipcb_sem s;
	int ctl, st, w;
	key_t k = open_new(&s);
	pid_t pid;

	ck_assert_int_eq(ipcb_sem_register(&s, 1), 0);
	pid = holder(k, 0, &ctl, &st);
	assert_values(&s, 0, 2);
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	w = reap(pid);
	ck_assert(WIFSIGNALED(w) && WTERMSIG(w) == SIGKILL);
	assert_values(&s, 1, 1);
	ck_assert_int_eq(ipcb_sem_acquire(&s, 0), 0);
	close(ctl);
	close(st);
}
END_TEST

START_TEST(test_removed_set)
{
	struct ipcb_sem s;
	int rc, lock;

	open_new(&s);
	ck_assert_int_eq(ipcb_sem_register(&s, 1), 0);
	ck_assert_int_eq(semctl(s.semid, 0, IPC_RMID), 0);
	rc = ipcb_sem_acquire(&s, 0);
	ck_assert_msg(rc == -EINVAL || rc == -EIDRM, "acquire: %d", rc);
	rc = ipcb_sem_acquire(&s, 100);
	ck_assert_msg(rc == -EINVAL || rc == -EIDRM, "timed acquire: %d", rc);
	rc = ipcb_sem_values(&s, &lock, NULL);
	ck_assert_msg(rc == -EINVAL || rc == -EIDRM, "values: %d", rc);
	rc = ipcb_sem_close(&s);
	ck_assert_msg(rc == -EINVAL || rc == -EIDRM, "close: %d", rc);
	ck_assert_int_eq(s.semid, -1);
}
END_TEST

/* Fault injection through the ipcb_sysv table. */
static int eintr_left;			/* calls to fail with EINTR */
static int semop_calls, timed_calls;
static struct timespec timeouts[8];
static int fail_getval;

static int
eintr_semop(int id, struct sembuf *ops, size_t n)
{
	semop_calls++;
	if (eintr_left > 0) {
		eintr_left--;
		errno = EINTR;
		return -1;
	}
	return semop(id, ops, n);
}

static int
eintr_semtimedop(int id, struct sembuf *ops, size_t n,
    const struct timespec *ts)
{
	if (timed_calls < 8)
		timeouts[timed_calls] = *ts;
	timed_calls++;
	if (eintr_left > 0) {
		eintr_left--;
		usleep(100000);		/* a signal handler that takes 100ms */
		errno = EINTR;
		return -1;
	}
	return semtimedop(id, ops, n, ts);
}

static int
faulty_semctl(int id, int num, int cmd, ...)
{
	union semun_arg arg = { 0 };
	va_list ap;

	if (cmd == GETVAL && fail_getval) {
		errno = EIDRM;
		return -1;
	}
	if (cmd == SETVAL || cmd == IPC_STAT) {
		va_start(ap, cmd);
		arg = va_arg(ap, union semun_arg);
		va_end(ap);
	}
	return semctl(id, num, cmd, arg);
}

static int enomem_left;

static int
enomem_semop(int id, struct sembuf *ops, size_t n)
{
	if (enomem_left > 0) {
		enomem_left--;
		errno = ENOMEM;
		return -1;
	}
	return semop(id, ops, n);
}

/* A write release that fails says so and keeps the handle holding (a bug
 * once reported success, leaving the lock held for good). */
START_TEST(test_failed_write_release_is_reported)
{
	struct ipcb_sem s;

	open_ours(&s);
	ck_assert_int_eq(ipcb_sem_lock(&s, IPCB_LOCK_WRITE, 0), 0);
	ipcb_sysv.semop = enomem_semop;
	enomem_left = 1;
	ck_assert_int_eq(ipcb_sem_release(&s), -ENOMEM);
	ipcb_sysv.semop = semop;
	ck_assert_int_eq(s.held, 1);
	ck_assert_int_eq(val(s.semid, 0), 0);
	ck_assert_int_eq(ipcb_sem_release(&s), 0);
	ck_assert_int_eq(val(s.semid, 0), 1);
	ck_assert_int_eq(val(s.semid, 3), 0);
}
END_TEST

START_TEST(test_eintr_retried)
{
	struct ipcb_sem s;

	open_new(&s);
	ipcb_sysv.semop = eintr_semop;
	eintr_left = 3;
	ck_assert_int_eq(ipcb_sem_register(&s, 1), 0);
	ck_assert_int_eq(semop_calls, 5);	/* 3 EINTR, enter, leave */
	assert_values(&s, 1, 1);
	eintr_left = 2;
	ck_assert_int_eq(ipcb_sem_acquire(&s, 0), 0);
	eintr_left = 2;
	ck_assert_int_eq(ipcb_sem_release(&s), 0);
	eintr_left = 2;
	ck_assert_int_eq(ipcb_sem_acquire(&s, -1), 0);
	ck_assert_int_eq(s.held, 1);
	eintr_left = 2;
	ck_assert_int_eq(ipcb_sem_close(&s), 0);
	ck_assert_int_eq(eintr_left, 0);
	ipcb_sysv.semop = semop;
}
END_TEST

/* An interrupted timed wait goes on with what is left, not anew. */
START_TEST(test_eintr_keeps_deadline)
{
	struct ipcb_sem a, b;
	struct timespec t0;
	long ms, first, second;
	key_t k = open_new(&a);

	ck_assert_int_eq(ipcb_sem_register(&a, 1), 0);
	ck_assert_int_eq(ipcb_sem_acquire(&a, 0), 0);
	ck_assert_int_eq(ipcb_sem_open(&b, k, 0600, 0), 0);
	ipcb_sysv.semtimedop = eintr_semtimedop;
	eintr_left = 2;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ck_assert_int_eq(ipcb_sem_acquire(&b, 400), -EAGAIN);
	ms = ms_since(&t0);
	ipcb_sysv.semtimedop = semtimedop;
	ck_assert_msg(ms >= 390 && ms < 1500, "gave up after %ld ms", ms);
	ck_assert_int_eq(timed_calls, 3);
	first = timeouts[0].tv_sec * 1000 + timeouts[0].tv_nsec / 1000000;
	second = timeouts[1].tv_sec * 1000 + timeouts[1].tv_nsec / 1000000;
	ck_assert_msg(first > 390 && first <= 400, "first wait %ld", first);
	ck_assert_msg(second < 310 && second > 200, "second wait %ld", second);
}
END_TEST

/* A register that fails half-way leaves usage and the gate as they were. */
START_TEST(test_register_failure_backs_out)
{
	struct ipcb_sem s;

	open_new(&s);
	ipcb_sysv.semctl = faulty_semctl;
	fail_getval = 1;
	ck_assert_int_eq(ipcb_sem_register(&s, 1), -EIDRM);
	fail_getval = 0;
	ck_assert_int_eq(s.registered, 0);
	assert_values(&s, 0, 0);
	/* the SETVAL path through the same wrapper works */
	ck_assert_int_eq(ipcb_sem_register(&s, 4), 0);
	ipcb_sysv.semctl = semctl;
	assert_values(&s, 4, 1);
}
END_TEST

/*
 * Interop with real PHP: its own sem_get/sem_acquire on the same key. The
 * scripts wait on stdin, so a failed test (closed pipe) ends them too.
 */

struct php {
	pid_t	 pid;
	int	 in;		/* its stdin */
	int	 out;		/* its stdout */
};

/* Run php -r code with key as $k; fmt is the script. */
static void
php_start(struct php *p, key_t key, const char *code)
{
	int ip[2], op[2];
	char script[2048];

	snprintf(script, sizeof(script), "$k = %d; %s", (int)key, code);
	ck_assert_int_eq(pipe(ip), 0);
	ck_assert_int_eq(pipe(op), 0);
	p->pid = fork();
	ck_assert_int_ge(p->pid, 0);
	if (p->pid == 0) {
		dup2(ip[0], 0);
		dup2(op[1], 1);
		close(ip[0]);
		close(ip[1]);
		close(op[0]);
		close(op[1]);
		execl(php_path(), "php", "-r", script, (char *)NULL);
		_exit(127);
	}
	close(ip[0]);
	close(op[1]);
	p->in = ip[1];
	p->out = op[0];
}

/* The next line of PHP's output, without the newline. */
static void
php_line(struct php *p, char *buf, size_t cap)
{
	size_t n = 0;
	int c;

	while (n + 1 < cap) {
		c = read_byte(p->out, 10000);
		ck_assert_msg(c >= 0, "php said nothing (so far \"%.*s\")",
		    (int)n, buf);
		if (c == '\n')
			break;
		buf[n++] = (char)c;
	}
	buf[n] = '\0';
}

static void
php_expect(struct php *p, const char *want)
{
	char line[256];

	php_line(p, line, sizeof(line));
	ck_assert_str_eq(line, want);
}

static void
php_send(struct php *p)
{
	ck_assert_int_eq(write(p->in, "\n", 1), 1);
}

static void
php_end(struct php *p)
{
	int w;

	close(p->in);
	w = reap(p->pid);
	close(p->out);
	ck_assert_msg(WIFEXITED(w) && WEXITSTATUS(w) == 0,
	    "php exited with status 0x%x", w);
}

/* PHP holds the lock: we are busy until it releases. */
START_TEST(test_php_holds)
{
	struct ipcb_sem s;
	struct php p;
	key_t k;

	SKIP_WITHOUT_PHP();
	k = open_new(&s);
	ck_assert_int_eq(ipcb_sem_register(&s, 1), 0);
	php_start(&p, k, "$s = sem_get($k); var_dump(sem_acquire($s));"
	    "fgets(STDIN); var_dump(sem_release($s)); fgets(STDIN);");
	php_expect(&p, "bool(true)");
	assert_values(&s, 0, 2);
	ck_assert_int_eq(ipcb_sem_acquire(&s, 0), -EAGAIN);
	ck_assert_int_eq(ipcb_sem_acquire(&s, 200), -EAGAIN);
	php_send(&p);
	php_expect(&p, "bool(true)");
	ck_assert_int_eq(ipcb_sem_acquire(&s, 0), 0);
	php_end(&p);
	assert_values(&s, 0, 1);
	ck_assert_int_eq(ipcb_sem_release(&s), 0);
}
END_TEST

/* PHP uses a set of ours as its own, torn marker up or not. */
START_TEST(test_php_on_our_set)
{
	struct ipcb_sem s;
	struct php p;
	key_t k;

	SKIP_WITHOUT_PHP();
	k = open_ours(&s);
	die_writing(k);
	php_start(&p, k, "$s = sem_get($k); var_dump(sem_acquire($s));"
	    "fgets(STDIN); var_dump(sem_release($s)); fgets(STDIN);");
	php_expect(&p, "bool(true)");
	assert_values(&s, 0, 2);
	ck_assert_int_eq(ipcb_sem_lock(&s, IPCB_LOCK_REPAIR, 0), -EAGAIN);
	php_send(&p);
	php_expect(&p, "bool(true)");
	ck_assert_int_eq(ipcb_sem_lock(&s, IPCB_LOCK_REPAIR, 0), 0);
	ck_assert_int_eq(ipcb_sem_release(&s), 0);
	php_end(&p);
	assert_values(&s, 1, 1);
	ck_assert_int_eq(val(s.semid, 3), 0);
}
END_TEST

/* We hold the lock: PHP's sem_get must not reset it, PHP stays out. */
START_TEST(test_php_sem_get_keeps_lock)
{
	struct ipcb_sem s;
	struct php p;
	key_t k;

	SKIP_WITHOUT_PHP();
	k = open_new(&s);
	ck_assert_int_eq(ipcb_sem_register(&s, 1), 0);
	ck_assert_int_eq(ipcb_sem_acquire(&s, 0), 0);
	php_start(&p, k, "$s = sem_get($k, 5); var_dump(sem_acquire($s, true));"
	    "fgets(STDIN); var_dump(sem_acquire($s, true));"
	    "var_dump(sem_release($s)); fgets(STDIN);");
	php_expect(&p, "bool(false)");
	assert_values(&s, 0, 2);
	ck_assert_int_eq(ipcb_sem_release(&s), 0);
	php_send(&p);
	php_expect(&p, "bool(true)");
	php_expect(&p, "bool(true)");
	assert_values(&s, 1, 2);
	php_end(&p);
	assert_values(&s, 1, 1);
}
END_TEST

/* PHP registered and holds first; our register must not reset it. */
START_TEST(test_php_first)
{
	struct ipcb_sem s;
	struct php p;
	key_t k;

	SKIP_WITHOUT_PHP();
	k = open_new(&s);
	php_start(&p, k, "$s = sem_get($k); var_dump(sem_acquire($s));"
	    "fgets(STDIN); sem_release($s); echo \"released\\n\";"
	    "fgets(STDIN);");
	php_expect(&p, "bool(true)");
	assert_values(&s, 0, 1);
	ck_assert_int_eq(ipcb_sem_register(&s, 1), 0);
	assert_values(&s, 0, 2);
	ck_assert_int_eq(ipcb_sem_acquire(&s, 0), -EAGAIN);
	php_send(&p);
	php_expect(&p, "released");
	ck_assert_int_eq(ipcb_sem_acquire(&s, 0), 0);
	php_end(&p);
	assert_values(&s, 0, 1);
	ck_assert_int_eq(ipcb_sem_close(&s), 0);
	ck_assert_int_eq(semget(k, 3, 0), reg->id[reg->n - 1]);
}
END_TEST

/* PHP holds and dies: its SEM_UNDO gives the lock to us. */
START_TEST(test_php_killed)
{
	struct ipcb_sem s;
	struct php p;
	key_t k;

	SKIP_WITHOUT_PHP();
	k = open_new(&s);
	ck_assert_int_eq(ipcb_sem_register(&s, 1), 0);
	php_start(&p, k, "$s = sem_get($k); var_dump(sem_acquire($s));"
	    "fgets(STDIN);");
	php_expect(&p, "bool(true)");
	ck_assert_int_eq(ipcb_sem_acquire(&s, 0), -EAGAIN);
	ck_assert_int_eq(kill(p.pid, SIGKILL), 0);
	reap(p.pid);
	close(p.in);
	close(p.out);
	assert_values(&s, 1, 1);
	ck_assert_int_eq(ipcb_sem_acquire(&s, 1000), 0);
}
END_TEST

static void
runner_teardown(void)
{
	reg_sweep();
}

static Suite *
sem_suite(void)
{
	Suite *s = suite_create("sem");
	TCase *tc;

	tc = tcase_create("local");
	tcase_add_unchecked_fixture(tc, NULL, runner_teardown);
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_open_creates_php_set);
	tcase_add_test(tc, test_open_short_set);
	tcase_add_test(tc, test_php_made_set_has_no_marker);
	tcase_add_test(tc, test_write_lock_raises_marker);
	tcase_add_test(tc, test_register_first_sets_lock);
	tcase_add_test(tc, test_register_rejects);
	tcase_add_test(tc, test_second_register_keeps_lock);
	tcase_add_test(tc, test_release_unheld);
	tcase_add_test(tc, test_max_acquire);
	tcase_add_test(tc, test_close_releases_held);
	tcase_add_test(tc, test_removed_set);
	tcase_add_test(tc, test_eintr_retried);
	tcase_add_test(tc, test_failed_write_release_is_reported);
	tcase_add_test(tc, test_eintr_keeps_deadline);
	tcase_add_test(tc, test_register_failure_backs_out);
	suite_add_tcase(s, tc);

	tc = tcase_create("processes");
	tcase_add_unchecked_fixture(tc, NULL, runner_teardown);
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_busy_in_other_process);
	tcase_add_test(tc, test_timeout_expires);
	tcase_add_test(tc, test_wait_then_acquire);
	tcase_add_test(tc, test_killed_holder_releases);
	tcase_add_test(tc, test_dead_writer_leaves_marker);
	suite_add_tcase(s, tc);

	tc = tcase_create("php");
	tcase_add_unchecked_fixture(tc, NULL, runner_teardown);
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_php_holds);
	tcase_add_test(tc, test_php_sem_get_keeps_lock);
	tcase_add_test(tc, test_php_first);
	tcase_add_test(tc, test_php_killed);
	tcase_add_test(tc, test_php_on_our_set);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr;
	int failed;

	reg = mmap(NULL, sizeof(*reg), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (reg == MAP_FAILED) {
		perror("mmap");
		return EXIT_FAILURE;
	}
	sr = srunner_create(sem_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	reg_sweep();
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
