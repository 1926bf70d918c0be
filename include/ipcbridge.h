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
#include <sys/types.h>
#include <sys/ipc.h>
#include <sys/msg.h>

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
int	 ipcb_msgq_stat(int msqid, struct msqid_ds *ds);
int	 ipcb_msgq_set_qbytes(int msqid, unsigned long qbytes);
int	 ipcb_msgq_remove(int msqid);
size_t	 ipcb_msgmax(void);
int	 ipcb_msgbuf_reserve(struct ipcb_msgbuf *buf, size_t len);
void	 ipcb_msgbuf_free(struct ipcb_msgbuf *buf);
int	 ipcb_selector_check(const struct ipcb_selector *sel);

/*
 * sysv.c: every System V call goes through this table so tests can inject
 * EAGAIN, EINTR, EIDRM and friends without a real failure.
 */
struct ipcb_sysv {
	int	 (*msgget)(key_t, int);
	int	 (*msgsnd)(int, const void *, size_t, int);
	ssize_t	 (*msgrcv)(int, void *, size_t, long, int);
	int	 (*msgctl)(int, int, struct msqid_ds *);
};
extern struct ipcb_sysv ipcb_sysv;

#ifdef __cplusplus
}
#endif

#endif
