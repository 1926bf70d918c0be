/*
 * msgq.c - System V message queue operations with the rules ipcbridge
 * promises: never MSG_NOERROR (it truncates silently), grow the buffer and
 * retry on E2BIG, create queues with the configured mode and fall back to
 * opening on a creation race, retry EINTR.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "ipcbridge.h"

int
ipcb_msgq_open(key_t key, int mode, int create, int *msqid)
{
	int id;

	id = ipcb_sysv.msgget(key, 0);
	if (id >= 0) {
		*msqid = id;
		return 0;
	}
	if (errno != ENOENT || !create)
		return -errno;
	id = ipcb_sysv.msgget(key, (mode & 0777) | IPC_CREAT | IPC_EXCL);
	if (id < 0 && errno == EEXIST)
		id = ipcb_sysv.msgget(key, 0);
	if (id < 0)
		return -errno;
	*msqid = id;
	return 1;	/* created */
}

int
ipcb_msgq_send(int msqid, const struct ipcb_msg *msg, size_t len, int flags)
{
	if (msg->mtype < 1)
		return -EINVAL;
	while (ipcb_sysv.msgsnd(msqid, msg, len, flags) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

int
ipcb_selector_check(const struct ipcb_selector *sel)
{
	switch (sel->match) {
	case IPCB_MATCH_ANY:
		return 0;
	case IPCB_MATCH_TYPE:
	case IPCB_MATCH_MAX:
	case IPCB_MATCH_EXCEPT:
		return sel->type >= 1 ? 0 : -EINVAL;
	}
	return -EINVAL;
}

int
ipcb_msgbuf_reserve(struct ipcb_msgbuf *buf, size_t len)
{
	struct ipcb_msg *m;

	if (buf->msg != NULL && buf->cap >= len)
		return 0;
	m = realloc(buf->msg, sizeof(*m) + len);
	if (m == NULL)
		return -ENOMEM;
	buf->msg = m;
	buf->cap = len;
	return 0;
}

void
ipcb_msgbuf_free(struct ipcb_msgbuf *buf)
{
	free(buf->msg);
	buf->msg = NULL;
	buf->cap = 0;
}

static long
msgtyp_of(const struct ipcb_selector *sel, int *flags)
{
	switch (sel->match) {
	case IPCB_MATCH_ANY:
		return 0;
	case IPCB_MATCH_TYPE:
		return sel->type;
	case IPCB_MATCH_MAX:
		return -sel->type;
	case IPCB_MATCH_EXCEPT:
		*flags |= MSG_EXCEPT;
		return sel->type;
	}
	return 0;
}

/*
 * Receive one message into a fixed buffer of cap bytes of mtext; -E2BIG
 * (the message stays queued) when it does not fit.
 */
ssize_t
ipcb_msgq_recv_into(int msqid, const struct ipcb_selector *sel,
    struct ipcb_msg *msg, size_t cap, int flags)
{
	long msgtyp;
	ssize_t n;

	if (ipcb_selector_check(sel) < 0)
		return -EINVAL;
	msgtyp = msgtyp_of(sel, &flags);
	flags &= ~MSG_NOERROR;
	while ((n = ipcb_sysv.msgrcv(msqid, msg, cap, msgtyp, flags)) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	return n;
}

/* Receive one message into buf (grown as needed); returns its length. */
ssize_t
ipcb_msgq_recv(int msqid, const struct ipcb_selector *sel,
    struct ipcb_msgbuf *buf, int flags)
{
	ssize_t n;
	int rc;

	if (ipcb_selector_check(sel) < 0)
		return -EINVAL;
	if (buf->cap == 0 && (rc = ipcb_msgbuf_reserve(buf, ipcb_msgmax())) < 0)
		return rc;
	for (;;) {
		n = ipcb_msgq_recv_into(msqid, sel, buf->msg, buf->cap, flags);
		if (n != -E2BIG)
			return n;
		if (buf->cap > ((size_t)1 << 30))
			return -E2BIG;
		if ((rc = ipcb_msgbuf_reserve(buf, buf->cap * 2)) < 0)
			return rc;
	}
}

int
ipcb_msgq_stat(int msqid, struct msqid_ds *ds)
{
	return ipcb_sysv.msgctl(msqid, IPC_STAT, ds) < 0 ? -errno : 0;
}

/* Raise msg_qbytes; above msgmnb this needs CAP_SYS_RESOURCE (EPERM). */
int
ipcb_msgq_set_qbytes(int msqid, unsigned long qbytes)
{
	struct msqid_ds ds;

	if (ipcb_sysv.msgctl(msqid, IPC_STAT, &ds) < 0)
		return -errno;
	ds.msg_qbytes = qbytes;
	return ipcb_sysv.msgctl(msqid, IPC_SET, &ds) < 0 ? -errno : 0;
}

int
ipcb_msgq_remove(int msqid)
{
	return ipcb_sysv.msgctl(msqid, IPC_RMID, NULL) < 0 ? -errno : 0;
}

/*
 * The kernel's largest message (msgmax); 8192 when it cannot be read.
 * Read once: it is on every send's path, and a later sysctl change only
 * costs an E2BIG retry on receive.
 */
size_t
ipcb_msgmax(void)
{
	static unsigned long cached;
	unsigned long v;
	FILE *f;

	if (cached != 0)
		return cached;
	f = fopen("/proc/sys/kernel/msgmax", "r");
	if (f == NULL)
		return 8192;
	if (fscanf(f, "%lu", &v) != 1 || v == 0)
		v = 8192;
	fclose(f);
	cached = v;
	return v;
}
