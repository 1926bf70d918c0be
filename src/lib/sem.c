/*
 * sem.c - the guard semaphore, step for step as PHP's sysvsem does it, so
 * the daemon, C workers and PHP's sem_get/sem_acquire share one lock.
 *
 * A PHP semaphore is a set of 3: [0] the lock, [1] the usage count (open
 * registrations), [2] a gate around "read usage, maybe SETVAL the lock".
 * Every change carries SEM_UNDO so a process that dies gives back what it
 * held and its registration. The lock is only ever SETVAL'd by a register
 * that finds itself the sole user: a SETVAL wipes every holder's undo
 * value, so doing it anywhere else would corrupt the count after a crash.
 */
#include <errno.h>
#include <time.h>

#include "ipcbridge.h"

#define SEM_LOCK	0	/* php-src SYSVSEM_SEM */
#define SEM_USAGE	1	/* php-src SYSVSEM_USAGE */
#define SEM_GATE	2	/* php-src SYSVSEM_SETVAL */
#define SEM_NSEMS	3
#define SEM_VMAX	32767	/* SEMVMX: the largest value and undo */

/* glibc leaves the definition of semctl's fourth argument to the caller. */
union ipcb_semun {
	int		 val;
	struct semid_ds	*buf;
	unsigned short	*array;
};

/* semop, retried while a signal interrupts it. */
static int
semop_retry(int semid, struct sembuf *ops, size_t nops)
{
	while (ipcb_sysv.semop(semid, ops, nops) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

/*
 * create=1 is PHP's semget(key, 3, perm|IPC_CREAT): no IPC_EXCL, a new set
 * starts at 0,0,0 and register makes the lock usable. -EINVAL means a set
 * with fewer than 3 semaphores (one sysv_ipc made, say) that PHP cannot use.
 */
int
ipcb_sem_open(struct ipcb_sem *sem, key_t key, int mode, int create)
{
	int id;

	sem->semid = -1;
	sem->key = key;
	sem->registered = 0;
	sem->held = 0;
	if (create)
		id = ipcb_sysv.semget(key, SEM_NSEMS, (mode & 0777) | IPC_CREAT);
	else
		id = ipcb_sysv.semget(key, SEM_NSEMS, 0);
	if (id < 0)
		return -errno;
	sem->semid = id;
	return 0;
}

/*
 * PHP's sem_get after semget: take the gate and count ourselves in one
 * semop, SETVAL the lock to max_acquire only if we are the only user, open
 * the gate. Unlike PHP, a failure undoes the registration and is returned.
 * -EALREADY if this handle is registered; max_acquire must be 1..32767.
 */
int
ipcb_sem_register(struct ipcb_sem *sem, int max_acquire)
{
	struct sembuf enter[3] = {
		{ SEM_GATE, 0, 0 },			/* wait for the gate */
		{ SEM_GATE, 1, SEM_UNDO },		/* close it */
		{ SEM_USAGE, 1, SEM_UNDO },		/* usage + 1 */
	};
	struct sembuf leave[1] = { { SEM_GATE, -1, SEM_UNDO } };
	struct sembuf undo[2] = {
		{ SEM_GATE, -1, SEM_UNDO },
		{ SEM_USAGE, -1, SEM_UNDO },
	};
	union ipcb_semun arg;
	int count, rc;

	if (sem->semid < 0)
		return -EBADF;
	if (sem->registered)
		return -EALREADY;
	if (max_acquire < 1)
		return -EINVAL;
	if (max_acquire > SEM_VMAX)
		return -ERANGE;
	if ((rc = semop_retry(sem->semid, enter, 3)) < 0)
		return rc;
	count = ipcb_sysv.semctl(sem->semid, SEM_USAGE, GETVAL);
	if (count < 0)
		goto fail;
	if (count == 1) {
		arg.val = max_acquire;
		if (ipcb_sysv.semctl(sem->semid, SEM_LOCK, SETVAL, arg) < 0)
			goto fail;
	}
	if ((rc = semop_retry(sem->semid, leave, 1)) < 0) {
		/* the set is gone, most likely: back out what may remain */
		(void)semop_retry(sem->semid, undo, 2);
		return rc;
	}
	sem->registered = 1;
	return 0;

fail:
	rc = -errno;
	(void)semop_retry(sem->semid, undo, 2);
	return rc;
}

/* now + ms on the monotonic clock. */
static void
deadline_after(struct timespec *ts, long long ns)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += (time_t)(ns / 1000000000LL);
	ts->tv_nsec += (long)(ns % 1000000000LL);
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* The time left until deadline; 0 when it has passed. */
static int
time_left(const struct timespec *deadline, struct timespec *left)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	left->tv_sec = deadline->tv_sec - now.tv_sec;
	left->tv_nsec = deadline->tv_nsec - now.tv_nsec;
	if (left->tv_nsec < 0) {
		left->tv_sec--;
		left->tv_nsec += 1000000000L;
	}
	if (left->tv_sec < 0 || (left->tv_sec == 0 && left->tv_nsec == 0))
		return 0;
	return 1;
}

/*
 * PHP's sem_acquire, {0,-1,SEM_UNDO}, plus a timeout: semtimedop takes a
 * relative time, so an EINTR retry passes only what is left of it. Not
 * re-entrant, like PHP: a second acquire of a max_acquire=1 lock by the
 * same handle waits for itself.
 */
static int
acquire(struct ipcb_sem *sem, long long timeout_ns)
{
	struct sembuf op = { SEM_LOCK, -1, SEM_UNDO };
	struct timespec deadline, left;
	int r;

	if (sem->semid < 0)
		return -EBADF;
	if (sem->held >= SEM_VMAX)
		return -ERANGE;
	if (timeout_ns > 0)
		deadline_after(&deadline, timeout_ns);
	else if (timeout_ns == 0)
		op.sem_flg |= IPC_NOWAIT;
	for (;;) {
		if (timeout_ns > 0) {
			if (!time_left(&deadline, &left))
				return -EAGAIN;
			r = ipcb_sysv.semtimedop(sem->semid, &op, 1, &left);
		} else
			r = ipcb_sysv.semop(sem->semid, &op, 1);
		if (r == 0)
			break;
		if (errno != EINTR)
			return -errno;	/* EAGAIN: busy or timed out */
	}
	sem->held++;
	return 0;
}

int
ipcb_sem_acquire(struct ipcb_sem *sem, int timeout_ms)
{
	return acquire(sem, timeout_ms < 0 ? -1 : timeout_ms * 1000000LL);
}

/* The same with a timeout in microseconds (> 0), for callers that can
 * afford only a very short wait. */
int
ipcb_sem_acquire_us(struct ipcb_sem *sem, int timeout_us)
{
	return acquire(sem, timeout_us > 0 ? timeout_us * 1000LL : 0);
}

/*
 * PHP's sem_release. -EPERM when this handle holds nothing (PHP's "not
 * currently acquired"), even if another handle of the process does: a
 * release that is not ours would break somebody else's exclusion.
 */
int
ipcb_sem_release(struct ipcb_sem *sem)
{
	struct sembuf op = { SEM_LOCK, 1, SEM_UNDO };
	int rc;

	if (sem->semid < 0)
		return -EBADF;
	if (sem->held <= 0)
		return -EPERM;
	if ((rc = semop_retry(sem->semid, &op, 1)) < 0)
		return rc;
	sem->held--;
	return 0;
}

/*
 * PHP's handle free with auto_release: usage - 1 (if this handle
 * registered) and the lock + held, in one semop. Never removes the set.
 * The handle is reset even when the semop fails (the set is gone, say):
 * the kernel's undo values still settle it when the process exits.
 */
int
ipcb_sem_close(struct ipcb_sem *sem)
{
	struct sembuf ops[2];
	size_t n = 0;
	int rc = 0;

	if (sem->semid < 0)
		return 0;
	if (sem->registered) {
		/* IPC_NOWAIT: if someone zeroed the count (SETALL, a fork
		 * that dropped our undo), fail instead of sleeping forever */
		ops[n].sem_num = SEM_USAGE;
		ops[n].sem_op = -1;
		ops[n].sem_flg = SEM_UNDO | IPC_NOWAIT;
		n++;
	}
	if (sem->held > 0) {
		ops[n].sem_num = SEM_LOCK;
		ops[n].sem_op = (short)sem->held;
		ops[n].sem_flg = SEM_UNDO;
		n++;
	}
	if (n > 0)
		rc = semop_retry(sem->semid, ops, n);
	sem->semid = -1;
	sem->registered = 0;
	sem->held = 0;
	return rc;
}

/* Either pointer may be NULL. */
int
ipcb_sem_values(const struct ipcb_sem *sem, int *lock, int *usage)
{
	int v;

	if (sem->semid < 0)
		return -EBADF;
	if (lock != NULL) {
		if ((v = ipcb_sysv.semctl(sem->semid, SEM_LOCK, GETVAL)) < 0)
			return -errno;
		*lock = v;
	}
	if (usage != NULL) {
		if ((v = ipcb_sysv.semctl(sem->semid, SEM_USAGE, GETVAL)) < 0)
			return -errno;
		*usage = v;
	}
	return 0;
}
