/*
 * fault.c - fault injection for tests, linked only into
 * tests/ipcbridge-fault (never into the installed daemon).
 *
 * IPCBRIDGE_FAULT is a comma-separated list of
 *   POINT:N              SIGKILL the daemon the Nth time it reaches the
 *                        crash point POINT (after_msgrcv, after_msgsnd,
 *                        after_reply, after_putback, after_shm_write,
 *                        mid_receive: taken, its length not recorded)
 *   CALL=ERRNO:N[:K]     calls N .. N+K-1 (K default 1, 0 = all from N on)
 *                        of CALL fail with ERRNO, without reaching the
 *                        kernel. CALL is a System V call of the ipcb_sysv
 *                        table (msgget msgsnd msgrcv msgctl semget semop
 *                        semtimedop semctl shmget shmat shmdt shmctl) or a
 *                        socket call (recv send); ERRNO a name (EINTR).
 * Every injected fault and crash is logged first ("fault: ..."), so a test
 * can count them. A malformed spec is fatal at start-up.
 */
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/socket.h>

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"

enum call {
	C_MSGGET, C_MSGSND, C_MSGRCV, C_MSGCTL, C_SEMGET, C_SEMOP,
	C_SEMTIMEDOP, C_SEMCTL, C_SHMGET, C_SHMAT, C_SHMDT, C_SHMCTL,
	C_RECV, C_SEND, C__COUNT
};

static const char *call_names[C__COUNT] = {
	"msgget", "msgsnd", "msgrcv", "msgctl", "semget", "semop",
	"semtimedop", "semctl", "shmget", "shmat", "shmdt", "shmctl",
	"recv", "send",
};

static const char *points[] = {
	"after_msgrcv", "after_msgsnd", "after_reply", "after_putback",
	"after_shm_write", "mid_receive",
};
#define NPOINTS (sizeof(points) / sizeof(points[0]))

static const struct { const char *name; int value; } errnos[] = {
	{ "EAGAIN", EAGAIN }, { "EINTR", EINTR }, { "EIDRM", EIDRM },
	{ "EINVAL", EINVAL }, { "E2BIG", E2BIG }, { "ENOMEM", ENOMEM },
	{ "EPIPE", EPIPE }, { "EMFILE", EMFILE }, { "ENOSPC", ENOSPC },
	{ "EACCES", EACCES }, { "ECONNRESET", ECONNRESET },
	{ "ENOMSG", ENOMSG }, { "EFAULT", EFAULT },
};

#define MAX_RULES 32

static struct rule {
	enum call	 call;
	int		 err;
	unsigned long	 from, count;	/* count 0: forever */
} rules[MAX_RULES];
static size_t nrules;
static unsigned long calls[C__COUNT];
static unsigned long crash_at[NPOINTS], reached[NPOINTS];

static struct ipcb_sysv real;
static struct sock_calls real_sock;

/* Count a call of c; 1 with errno set if a rule fails it. */
static int
inject(enum call c)
{
	unsigned long n = ++calls[c];
	size_t i;

	for (i = 0; i < nrules; i++) {
		if (rules[i].call != c || n < rules[i].from ||
		    (rules[i].count > 0 && n >= rules[i].from +
		    rules[i].count))
			continue;
		log_warnx("fault: %s call %lu fails with %s", call_names[c],
		    n, strerror(rules[i].err));
		errno = rules[i].err;
		return 1;
	}
	return 0;
}

static int
f_msgget(key_t k, int f)
{
	return inject(C_MSGGET) ? -1 : real.msgget(k, f);
}

static int
f_msgsnd(int id, const void *m, size_t n, int f)
{
	return inject(C_MSGSND) ? -1 : real.msgsnd(id, m, n, f);
}

static ssize_t
f_msgrcv(int id, void *m, size_t n, long t, int f)
{
	return inject(C_MSGRCV) ? -1 : real.msgrcv(id, m, n, t, f);
}

static int
f_msgctl(int id, int cmd, struct msqid_ds *ds)
{
	return inject(C_MSGCTL) ? -1 : real.msgctl(id, cmd, ds);
}

static int
f_semget(key_t k, int n, int f)
{
	return inject(C_SEMGET) ? -1 : real.semget(k, n, f);
}

static int
f_semop(int id, struct sembuf *ops, size_t n)
{
	return inject(C_SEMOP) ? -1 : real.semop(id, ops, n);
}

static int
f_semtimedop(int id, struct sembuf *ops, size_t n, const struct timespec *t)
{
	return inject(C_SEMTIMEDOP) ? -1 : real.semtimedop(id, ops, n, t);
}

/* semctl's fourth argument is a union passed by value; forward it whole. */
union semun_any {
	int		 val;
	struct semid_ds	*buf;
	unsigned short	*array;
};

static int
f_semctl(int id, int num, int cmd, ...)
{
	union semun_any arg;
	va_list ap;

	va_start(ap, cmd);
	arg = va_arg(ap, union semun_any);
	va_end(ap);
	return inject(C_SEMCTL) ? -1 : real.semctl(id, num, cmd, arg);
}

static int
f_shmget(key_t k, size_t n, int f)
{
	return inject(C_SHMGET) ? -1 : real.shmget(k, n, f);
}

static void *
f_shmat(int id, const void *a, int f)
{
	return inject(C_SHMAT) ? (void *)-1 : real.shmat(id, a, f);
}

static int
f_shmdt(const void *a)
{
	return inject(C_SHMDT) ? -1 : real.shmdt(a);
}

static int
f_shmctl(int id, int cmd, struct shmid_ds *ds)
{
	return inject(C_SHMCTL) ? -1 : real.shmctl(id, cmd, ds);
}

static ssize_t
f_recv(int fd, void *b, size_t n, int f)
{
	return inject(C_RECV) ? -1 : real_sock.recv(fd, b, n, f);
}

static ssize_t
f_send(int fd, const void *b, size_t n, int f)
{
	return inject(C_SEND) ? -1 : real_sock.send(fd, b, n, f);
}

static void
crash_point(const char *point)
{
	size_t i;

	for (i = 0; i < NPOINTS; i++) {
		if (strcmp(points[i], point) != 0)
			continue;
		if (++reached[i] == crash_at[i]) {
			log_warnx("fault: crash at %s %lu", point, reached[i]);
			raise(SIGKILL);
		}
		return;
	}
}

static int
parse_errno(const char *s)
{
	size_t i;

	for (i = 0; i < sizeof(errnos) / sizeof(errnos[0]); i++)
		if (strcmp(errnos[i].name, s) == 0)
			return errnos[i].value;
	return 0;
}

/* Digits only, >= 1 unless zero_ok. */
static int
parse_count(const char *s, int zero_ok, unsigned long *v)
{
	char *end;

	if (*s < '0' || *s > '9')
		return -1;
	*v = strtoul(s, &end, 10);
	return *end != '\0' || (*v == 0 && !zero_ok) ? -1 : 0;
}

static void
parse_item(char *item)
{
	char *eq = strchr(item, '='), *f[3];
	struct rule *r;
	size_t i, n = 0;

	if (eq == NULL) {	/* POINT:N */
		char *colon = strchr(item, ':');

		if (colon != NULL) {
			*colon = '\0';
			for (i = 0; i < NPOINTS; i++)
				if (strcmp(points[i], item) == 0 &&
				    parse_count(colon + 1, 0, &crash_at[i]) == 0)
					return;
		}
		fatalx("IPCBRIDGE_FAULT: \"%s\" is not POINT:N", item);
	}
	*eq = '\0';
	if (nrules == MAX_RULES)
		fatalx("IPCBRIDGE_FAULT: more than %d rules", MAX_RULES);
	r = &rules[nrules];
	for (i = 0; i < C__COUNT && strcmp(call_names[i], item) != 0; i++)
		;
	if (i == C__COUNT)
		fatalx("IPCBRIDGE_FAULT: no call named \"%s\"", item);
	r->call = (enum call)i;
	for (f[n++] = eq + 1; n < 3 && (f[n] = strchr(f[n - 1], ':'));
	    n++)
		*f[n]++ = '\0';
	r->count = 1;
	if (n < 2 || (r->err = parse_errno(f[0])) == 0 ||
	    parse_count(f[1], 0, &r->from) < 0 ||
	    (n == 3 && parse_count(f[2], 1, &r->count) < 0))
		fatalx("IPCBRIDGE_FAULT: \"%s=%s\" is not CALL=ERRNO:N[:K]",
		    item, eq + 1);
	nrules++;
}

void
fault_install(void)
{
	const char *spec = getenv("IPCBRIDGE_FAULT");
	char *copy, *item, *save = NULL;

	if (spec == NULL || *spec == '\0')
		return;
	if ((copy = strdup(spec)) == NULL)
		fatalx("out of memory");
	for (item = strtok_r(copy, ",", &save); item != NULL;
	    item = strtok_r(NULL, ",", &save))
		parse_item(item);
	free(copy);
	real = ipcb_sysv;
	real_sock = sock_calls;
	ipcb_sysv = (struct ipcb_sysv){ f_msgget, f_msgsnd, f_msgrcv,
	    f_msgctl, f_semget, f_semop, f_semtimedop, f_semctl, f_shmget,
	    f_shmat, f_shmdt, f_shmctl };
	sock_calls.recv = f_recv;
	sock_calls.send = f_send;
	fault_hook = crash_point;
	log_warnx("fault injection on: %s", spec);
}
