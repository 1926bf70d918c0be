/*
 * ipcbridge.h - the System V core of ipcbridge, as a library.
 *
 * The daemon and worker programs link the same code, so a C worker sees
 * exactly the keys, message layout and error handling the daemon uses.
 * Pure C and POSIX: no libevent, no JSON. Functions return 0 (or a length)
 * on success and a negative errno on failure; they never print.
 */
#ifndef IPCBRIDGE_H
#define IPCBRIDGE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <sys/types.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>

#ifdef __cplusplus
extern "C" {
#endif

/* key.c: "1234", "0x69706201", "ftok:/path/to/file:A" (PHP's ftok). */
int	 ipcb_key_parse(const char *spec, key_t *key, char *err, size_t errlen);

/* One kernel message: the layout msgsnd/msgrcv, PHP and sysv_ipc use. */
struct ipcb_msg {
	long	 mtype;
	char	 mtext[];
};

/* A receive buffer that grows when the kernel says E2BIG. */
struct ipcb_msgbuf {
	struct ipcb_msg	*msg;
	size_t		 cap;		/* bytes available in mtext */
};

/* Which messages a receive takes: msgrcv's msgtyp and MSG_EXCEPT. */
enum ipcb_match {
	IPCB_MATCH_ANY,		/* msgtyp 0 */
	IPCB_MATCH_TYPE,	/* msgtyp n */
	IPCB_MATCH_MAX,		/* msgtyp -n: lowest type <= n */
	IPCB_MATCH_EXCEPT	/* msgtyp n with MSG_EXCEPT */
};

struct ipcb_selector {
	enum ipcb_match	 match;
	long		 type;
};

/* msgq.c */
int	 ipcb_msgq_open(key_t key, int mode, int create, int *msqid);
int	 ipcb_msgq_send(int msqid, const struct ipcb_msg *msg, size_t len,
	    int flags);
ssize_t	 ipcb_msgq_recv(int msqid, const struct ipcb_selector *sel,
	    struct ipcb_msgbuf *buf, int flags);
ssize_t	 ipcb_msgq_recv_into(int msqid, const struct ipcb_selector *sel,
	    struct ipcb_msg *msg, size_t cap, int flags);
int	 ipcb_msgq_stat(int msqid, struct msqid_ds *ds);
int	 ipcb_msgq_set_qbytes(int msqid, unsigned long qbytes);
int	 ipcb_msgq_remove(int msqid);
size_t	 ipcb_msgmax(void);
int	 ipcb_msgbuf_reserve(struct ipcb_msgbuf *buf, size_t len);
void	 ipcb_msgbuf_free(struct ipcb_msgbuf *buf);
int	 ipcb_selector_check(const struct ipcb_selector *sel);

/*
 * sem.c: the guard semaphore, compatible with PHP's sysvsem. A PHP
 * semaphore is a kernel set of 3: [0] the lock, [1] the count of open
 * handles (registrations), [2] a gate that makes "read the count, maybe
 * SETVAL the lock" atomic. Every change carries SEM_UNDO, so a process that
 * dies releases what it held. Sets ipcbridge creates have a 4th: the
 * torn-write marker, raised by writers for as long as they hold the lock
 * (without SEM_UNDO), so a writer that dies mid-write leaves it up.
 */
struct ipcb_sem {
	int	 semid;
	key_t	 key;
	int	 nsems;		/* the set's size: 3 (PHP's) or 4 (ours) */
	int	 torn_marker;	/* the set has the 4th semaphore */
	int	 registered;	/* this handle added 1 to the usage count */
	int	 held;		/* times this handle holds the lock */
	int	 writing;	/* the IPCB_LOCK_* of a held write lock, or 0 */
};
/* How a lock is taken (ipcb_sem_lock). */
#define IPCB_LOCK_READ		0	/* fails -EBADMSG if a writer died */
#define IPCB_LOCK_WRITE		1	/* the same, and raises the marker */
#define IPCB_LOCK_REPAIR	2	/* ignores the marker; release clears it */
/* Create a set of 4 if key is free (create=1), else open it as PHP's
 * semget(key, 3, mode) does (create=0: must exist). 0 or a negative errno;
 * -EINVAL: fewer than 3 semaphores. */
int	 ipcb_sem_open(struct ipcb_sem *, key_t key, int mode, int create);
/* Register as PHP's sem_get does: gate, usage+1, SETVAL lock=max_acquire
 * only when the usage count is 1 (nobody else registered), release gate. */
int	 ipcb_sem_register(struct ipcb_sem *, int max_acquire);
/* Take the lock: timeout 0 = IPC_NOWAIT, < 0 = block, > 0 = semtimedop.
 * -EAGAIN when busy or timed out; -EIDRM/-EINVAL when the set is gone;
 * -EBADMSG when a writer died holding it (the bytes may be torn: only an
 * IPCB_LOCK_REPAIR lock is granted until one is released). Writers take
 * IPCB_LOCK_WRITE; ipcb_sem_acquire is a read lock in milliseconds. */
int	 ipcb_sem_lock(struct ipcb_sem *, int how, long timeout_us);
int	 ipcb_sem_acquire(struct ipcb_sem *, int timeout_ms);
int	 ipcb_sem_release(struct ipcb_sem *);
/* 1 if a writer died mid-write, 0 if not, -ENOTSUP without the marker. */
int	 ipcb_sem_torn(const struct ipcb_sem *);
/* Drop the registration and anything still held, as PHP's handle free. */
int	 ipcb_sem_close(struct ipcb_sem *);
/* Current lock value and usage count (for stat). */
int	 ipcb_sem_values(const struct ipcb_sem *, int *lock, int *usage);

/*
 * shm.c: shared-memory segments, attached once and kept mapped, read and
 * written either as raw bytes or as PHP sysvshm variables (a 40-byte
 * "PHP_SM" header, then chunks of {int64 key, int64 length, int64 next,
 * serialized bytes}). None of these lock: hold the guard semaphore.
 */
struct ipcb_shm {
	int	 shmid;
	key_t	 key;
	char	*addr;
	size_t	 size;		/* the real segment size (IPC_STAT) */
};
/* Attach key, creating it with size and mode when create is set and it
 * does not exist (*created = 1). Returns 0 or a negative errno. */
int	 ipcb_shm_open(struct ipcb_shm *, key_t key, size_t size, int mode,
	    int create, int *created);
int	 ipcb_shm_close(struct ipcb_shm *);
int	 ipcb_shm_stat(const struct ipcb_shm *, struct shmid_ds *);
/* Raw bytes: -ERANGE when off/len fall outside the segment. */
int	 ipcb_shm_read(const struct ipcb_shm *, size_t off, void *dst,
	    size_t len);
int	 ipcb_shm_write(struct ipcb_shm *, size_t off, const void *src,
	    size_t len);

/* The PHP sysvshm variable layout. */
struct ipcb_php_usage {
	size_t	 used;		/* header end - start: bytes in chunks */
	size_t	 free;		/* header free */
	size_t	 total;		/* header total */
	size_t	 count;		/* variables */
};
/* Write a fresh header with total = the real segment size. */
int	 ipcb_php_init(struct ipcb_shm *);
/* Validate the header and chunk chain against the real size; -EBADMSG
 * with err saying what is wrong. Nothing else may touch a bad segment. */
int	 ipcb_php_check(const struct ipcb_shm *, char *err, size_t errlen);
/* Point at a variable's serialized bytes; -ENOENT when absent. */
int	 ipcb_php_get(const struct ipcb_shm *, int64_t key, const char **val,
	    size_t *len);
/* Replace or add, the PHP way (the new value goes to the end), but check
 * room first: -ENOSPC leaves the old value in place. */
int	 ipcb_php_put(struct ipcb_shm *, int64_t key, const void *val,
	    size_t len);
/* Remove and compact as PHP does; -ENOENT when absent. */
int	 ipcb_php_del(struct ipcb_shm *, int64_t key);
int	 ipcb_php_usage(const struct ipcb_shm *, struct ipcb_php_usage *);
/* Call fn for each variable in chunk order; stops when fn returns != 0. */
int	 ipcb_php_foreach(const struct ipcb_shm *,
	    int (*fn)(int64_t key, const char *val, size_t len, void *arg),
	    void *arg);

/*
 * sysv.c: every System V call goes through this table so tests can inject
 * EAGAIN, EINTR, EIDRM and friends without a real failure.
 */
struct ipcb_sysv {
	int	 (*msgget)(key_t, int);
	int	 (*msgsnd)(int, const void *, size_t, int);
	ssize_t	 (*msgrcv)(int, void *, size_t, long, int);
	int	 (*msgctl)(int, int, struct msqid_ds *);
	int	 (*semget)(key_t, int, int);
	int	 (*semop)(int, struct sembuf *, size_t);
	int	 (*semtimedop)(int, struct sembuf *, size_t,
		    const struct timespec *);
	int	 (*semctl)(int, int, int, ...);
	int	 (*shmget)(key_t, size_t, int);
	void	*(*shmat)(int, const void *, int);
	int	 (*shmdt)(const void *);
	int	 (*shmctl)(int, int, struct shmid_ds *);
};
extern struct ipcb_sysv ipcb_sysv;

#ifdef __cplusplus
}
#endif

#endif
