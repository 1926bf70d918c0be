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
 *
 * ipcbridge creates the set with a 4th semaphore PHP and sysv_ipc never
 * touch: the torn-write marker. A writer adds 1 to it in the same semop
 * that takes the lock, without SEM_UNDO, and takes it back in the semop
 * that releases. A writer that dies mid-write gets the lock undone by the
 * kernel but leaves the marker up, so whoever takes the lock next sees
 * that the bytes may be half written. Only a repair lock clears it.
 */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "ipcbridge.h"

#define SEM_LOCK	0	/* php-src SYSVSEM_SEM */
#define SEM_USAGE	1	/* php-src SYSVSEM_USAGE */
#define SEM_GATE	2	/* php-src SYSVSEM_SETVAL */
#define SEM_NSEMS	3	/* what PHP creates and asks for */
#define SEM_TORN	3	/* ours: writers that never released */
#define SEM_NSEMS_OURS	4
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
 * create=1 creates a set of 4 (PHP's 3 and the torn-write marker) if the
 * key is free, else opens what is there as PHP's semget(key, 3, perm)
 * would. -EINVAL means a set with fewer than 3 semaphores (one sysv_ipc
 * made, say) that PHP cannot use. A set of 3 (PHP made it first) works
 * without the marker: sem->torn_marker says which.
 */
int
ipcb_sem_open(struct ipcb_sem *sem, key_t key, int mode, int create)
{
	union ipcb_semun arg;
	struct semid_ds ds;
	int id = -1;

	sem->semid = -1;
	sem->key = key;
	sem->registered = 0;
	sem->held = 0;
	sem->writing = 0;
	sem->torn_marker = 0;
	if (create) {
		id = ipcb_sysv.semget(key, SEM_NSEMS_OURS,
		    (mode & 0777) | IPC_CREAT | IPC_EXCL);
		if (id < 0 && errno != EEXIST)
			return -errno;
	}
	if (id < 0)
		id = ipcb_sysv.semget(key, SEM_NSEMS, 0);
	if (id < 0)
		return -errno;
	arg.buf = &ds;
	if (ipcb_sysv.semctl(id, 0, IPC_STAT, arg) < 0)
		return -errno;
	sem->semid = id;
	sem->nsems = (int)ds.sem_nsems;
	sem->torn_marker = ds.sem_nsems >= SEM_NSEMS_OURS;
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

/* semop, or semtimedop until deadline when timeout_ns > 0. */
static int
semop_until(int semid, struct sembuf *ops, size_t nops, long long timeout_ns)
{
	struct timespec deadline, left;
	int r;

	if (timeout_ns > 0)
		deadline_after(&deadline, timeout_ns);
	for (;;) {
		if (timeout_ns > 0) {
			if (!time_left(&deadline, &left))
				return -EAGAIN;
			r = ipcb_sysv.semtimedop(semid, ops, nops, &left);
		} else
			r = ipcb_sysv.semop(semid, ops, nops);
		if (r == 0)
			return 0;
		if (errno != EINTR)
			return -errno;	/* EAGAIN: busy or timed out */
	}
}

/* Give back a lock taken with how, and the marker a writer raised. */
static int
unlock(struct ipcb_sem *sem, int how)
{
	struct sembuf ops[2] = {
		{ SEM_LOCK, 1, SEM_UNDO },
		{ SEM_TORN, -1, IPC_NOWAIT },
	};
	union ipcb_semun arg;
	int rc;

	if (how == IPCB_LOCK_REPAIR && sem->torn_marker) {
		arg.val = 0;	/* nobody holds undo on the marker */
		if (ipcb_sysv.semctl(sem->semid, SEM_TORN, SETVAL, arg) < 0)
			return -errno;
	}
	if (how == IPCB_LOCK_WRITE && sem->torn_marker &&
	    (rc = semop_retry(sem->semid, ops, 2)) != -EAGAIN)
		return rc;
	/* a reader, or somebody zeroed the marker under our write lock */
	return semop_retry(sem->semid, ops, 1);
}

/*
 * PHP's sem_acquire, {0,-1,SEM_UNDO}, plus a timeout: semtimedop takes a
 * relative time, so an EINTR retry passes only what is left of it. Not
 * re-entrant, like PHP: a second acquire of a max_acquire=1 lock by the
 * same handle waits for itself. With the marker, a writer raises it in the
 * same semop, and every lock but a repair checks it once held: holding
 * the lock, the only raised marker can be ours or a dead writer's.
 */
static int
acquire(struct ipcb_sem *sem, int how, long long timeout_ns)
{
	struct sembuf ops[2] = {
		{ SEM_LOCK, -1, SEM_UNDO },
		{ SEM_TORN, 1, 0 },
	};
	int rc, torn, mine;

	if (sem->semid < 0)
		return -EBADF;
	if (sem->held >= SEM_VMAX)
		return -ERANGE;
	if (how != IPCB_LOCK_READ && sem->writing)
		return -EDEADLK;	/* one write lock per handle */
	if (timeout_ns == 0)
		ops[0].sem_flg |= IPC_NOWAIT;
	mine = how != IPCB_LOCK_READ && sem->torn_marker;
	if ((rc = semop_until(sem->semid, ops, mine ? 2 : 1, timeout_ns)) < 0)
		return rc;
	if (sem->torn_marker && how != IPCB_LOCK_REPAIR) {
		torn = ipcb_sysv.semctl(sem->semid, SEM_TORN, GETVAL);
		if (torn < 0 || torn != mine) {
			rc = torn < 0 ? -errno : -EBADMSG;
			(void)unlock(sem, how);
			return rc;
		}
	}
	sem->held++;
	if (how != IPCB_LOCK_READ)
		sem->writing = how;
	return 0;
}

int
ipcb_sem_lock(struct ipcb_sem *sem, int how, long timeout_us)
{
	if (how != IPCB_LOCK_READ && how != IPCB_LOCK_WRITE &&
	    how != IPCB_LOCK_REPAIR)
		return -EINVAL;
	return acquire(sem, how, timeout_us < 0 ? -1 : timeout_us * 1000LL);
}

int
ipcb_sem_acquire(struct ipcb_sem *sem, int timeout_ms)
{
	return acquire(sem, IPCB_LOCK_READ,
	    timeout_ms < 0 ? -1 : timeout_ms * 1000000LL);
}

/*
 * PHP's sem_release. -EPERM when this handle holds nothing (PHP's "not
 * currently acquired"), even if another handle of the process does: a
 * release that is not ours would break somebody else's exclusion. A
 * handle's write lock is the one released first.
 */
int
ipcb_sem_release(struct ipcb_sem *sem)
{
	int rc;

	if (sem->semid < 0)
		return -EBADF;
	if (sem->held <= 0)
		return -EPERM;
	if ((rc = unlock(sem, sem->writing ? sem->writing :
	    IPCB_LOCK_READ)) < 0)
		return rc;
	sem->held--;
	sem->writing = 0;
	return 0;
}

/*
 * 1 if a writer died mid-write, 0 if not, -ENOTSUP for a set without the
 * marker. Holding a write or repair lock, that is a marker above our own
 * 1; otherwise a marker up while nobody holds the lock (a snapshot: a live
 * writer's marker reads as 0 because it holds the lock).
 */
int
ipcb_sem_torn(const struct ipcb_sem *sem)
{
	unsigned short *vals;
	union ipcb_semun arg;
	int rc;

	if (sem->semid < 0)
		return -EBADF;
	if (!sem->torn_marker)
		return -ENOTSUP;
	/* GETALL: both values from one moment; it fills every semaphore */
	if ((vals = calloc(sem->nsems, sizeof(*vals))) == NULL)
		return -ENOMEM;
	arg.array = vals;
	if (ipcb_sysv.semctl(sem->semid, 0, GETALL, arg) < 0)
		rc = -errno;
	else if (sem->writing)
		rc = vals[SEM_TORN] > 1;
	else
		rc = vals[SEM_TORN] > 0 && vals[SEM_LOCK] > 0;
	free(vals);
	return rc;
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
	if (sem->writing && unlock(sem, sem->writing) == 0)
		sem->held--;	/* a closed write is a finished one */
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
	sem->writing = 0;
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
