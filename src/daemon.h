/*
 * daemon.h - the ipcbridge daemon, one section per source file.
 *
 * Reading this header top to bottom shows the design: a config, a set of
 * queues over the SysV library, a listener that accepts connections, a
 * connection layer that frames JSON lines, the protocol that dispatches
 * them to op handlers, and the waiter subsystem that polls queues for
 * receivers that wait.
 */
#ifndef IPCBRIDGE_DAEMON_H
#define IPCBRIDGE_DAEMON_H

#include "config.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/types.h>

#include <event2/event.h>
#include <jansson.h>

#include "ipcbridge.h"

#define PROTOCOL_VERSION	1
#define MAX_PARKED_PER_CONN	16
#define MAX_ID_BYTES		64
#define OUT_HIGH_WATER		(256 * 1024)

#ifndef TAILQ_FOREACH_SAFE
#define TAILQ_FOREACH_SAFE(var, head, field, tvar)			\
	for ((var) = TAILQ_FIRST(head);					\
	    (var) && ((tvar) = TAILQ_NEXT(var, field), 1);		\
	    (var) = (tvar))
#endif

/* log.c */
enum log_level { LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };
void	 log_init(int level);
void	 log_setlevel(int level);
void	 log_syslog(int on);
void	 log_mirror(int fd);
const char *log_escape(const char *, size_t n, size_t max);
void	 log_warn(const char *, ...) __attribute__((format(printf, 1, 2)));
void	 log_warnx(const char *, ...) __attribute__((format(printf, 1, 2)));
void	 log_info(const char *, ...) __attribute__((format(printf, 1, 2)));
void	 log_debug(const char *, ...) __attribute__((format(printf, 1, 2)));
void	 fatalx(const char *, ...)
	    __attribute__((format(printf, 1, 2), noreturn));

/* ptimer.c: a one-shot timer with microsecond precision */
struct ptimer;
extern int	 ptimer_timerfd;
struct ptimer	*ptimer_new(void (*)(void *), void *);
void		 ptimer_arm(struct ptimer *, int us);
int		 ptimer_armed(const struct ptimer *);
void		 ptimer_free(struct ptimer *);

/* acl.c: peer identities and who may do what */
struct idlist {
	unsigned	*ids;
	size_t		 n;
};
struct access {			/* per queue or segment; empty = anyone */
	struct idlist	 read_users;
	struct idlist	 read_groups;
	struct idlist	 write_users;
	struct idlist	 write_groups;
};
#define PEER_MAX_GROUPS	64
struct peer {
	pid_t		 pid;
	uid_t		 uid;
	gid_t		 gid;
	int		 ngroups;	/* 0: not looked up yet */
	gid_t		 groups[PEER_MAX_GROUPS];
};
int	 idlist_parse(struct idlist *, const char *, int groups, char *err,
	    size_t errlen);
void	 idlist_free(struct idlist *);
int	 idlist_copy(struct idlist *, const struct idlist *);
void	 access_copy(struct access *, const struct access *);
void	 access_free(struct access *);
void	 peer_groups(struct peer *);
int	 acl_allows(const struct idlist *users, const struct idlist *groups,
	    struct peer *);

/* config.c */
struct queue_conf {
	char		*name;
	char		*key_spec;	/* as written, for display */
	key_t		 key;
	int		 mode;
	int		 create;
	unsigned long	 max_bytes;	/* 0 = leave the kernel's msg_qbytes */
	int		 payload;	/* enum payload */
	struct access	 access;
	int		 line;		/* where its section starts, for errors */
};

enum payload { PAYLOAD_RAW, PAYLOAD_JSON, PAYLOAD_PHP };
enum shm_format { SHM_PHP, SHM_RAW };

struct shm_conf {
	char		*name;
	char		*key_spec;
	key_t		 key;
	size_t		 size;
	int		 mode;
	int		 format;	/* enum shm_format */
	char		*sem_key_spec;	/* NULL: the segment's own key */
	key_t		 sem_key;
	int		 lock_timeout_ms;
	int		 create;
	struct access	 access;
	int		 line;
};

struct config {
	char		*path;		/* NULL: built-in defaults */
	char		*socket_path;
	int		 socket_mode;
	int		 poll_interval_ms;
	size_t		 max_line_bytes;
	int		 max_conns;
	int		 max_conns_per_uid;	/* 0: no limit */
	int		 idle_timeout_ms;	/* 0: none */
	int		 partial_line_timeout_ms;
	size_t		 max_output_bytes;
	struct idlist	 allow_users;
	struct idlist	 allow_groups;
	char		*user;		/* drop privileges to */
	char		*group;
	int		 max_wait_ms;
	int		 ack_timeout_ms;
	int		 log_syslog;
	int		 log_level;	/* enum log_level */
	char		*pidfile;
	char		*state_dir;
	int		 journal_slots;	/* 0: no journal */
	struct queue_conf *queues;
	size_t		 nqueues;
	struct shm_conf	*shms;
	size_t		 nshms;
};

struct config	*config_load(const char *path, char *err, size_t errlen);
struct config	*config_defaults(void);
void		 config_free(struct config *);
void		 config_print(const struct config *, FILE *);
const struct queue_conf *config_queue(const struct config *, const char *);
const struct shm_conf *config_shm(const struct config *, const char *);
int		 config_set_socket(struct config *, const char *);

/* b64.c: strict RFC 4648 base64 (padding required, canonical) */
size_t	 b64_encoded_len(size_t n);
void	 b64_encode(const void *src, size_t n, char *dst);
size_t	 b64_decoded_max(size_t n);
ssize_t	 b64_decode(const char *src, size_t n, void *dst);
extern int b64_simd;		/* 0: no SSSE3 loops even if the CPU has it */

/* jalloc.c: jansson's allocator (free lists for small blocks) */
void	 jalloc_install(void);
void	*jalloc_malloc(size_t);
void	 jalloc_free(void *);

/* phpser.c: PHP serialize() text <-> JSON values */
/* Encode v as PHP serialize() text into a malloc'd buffer; NULL with err
 * set when v has no PHP equivalent. */
char	*phpser_encode(json_t *v, size_t *len, char *err, size_t errlen);
/* Decode serialize() text into a new JSON value; NULL with err set when
 * the text is malformed or holds what JSON cannot carry (objects,
 * references, INF/NAN, strings that are not UTF-8). *code tells which:
 * PHPSER_MALFORMED or PHPSER_UNSUPPORTED. */
enum { PHPSER_MALFORMED = 1, PHPSER_UNSUPPORTED = 2 };
json_t	*phpser_decode(const char *buf, size_t len, int *code, char *err,
	    size_t errlen);

/* queue.c: the configured queues, opened */
struct waiter;
TAILQ_HEAD(waiterq, waiter);

struct queue {
	struct queue_conf conf;
	int		 msqid;
	struct waiterq	 receivers;	/* recv waits and consumers, in order */
	struct waiterq	 senders;	/* sends waiting for room */
	int		 nwaiting;	/* clients' recv and send waits */
	int		 nconsumers;
	int		 nputbacks;	/* messages waiting to go back */
	TAILQ_ENTRY(queue) entry;
};
TAILQ_HEAD(queueq, queue);
extern struct queueq queues;

int		 queues_open(const struct config *, char *err, size_t errlen);
int		 queues_reload(const struct config *);
void		 queues_close(void);
struct queue	*queue_find(const char *name);
struct queue	*queue_by_key(key_t);
struct queue	*queue_retired(key_t);
void		 queues_retired_serve(void (*)(struct queue *, uint64_t),
		    uint64_t);
int		 queues_retired_putbacks(void);
int		 queue_reopen(struct queue *);
int		 queue_errno_code(int);
int		 queue_send(struct queue *, const struct ipcb_msg *, size_t,
		    char *err, size_t errlen);
int		 queue_recv(struct queue *, const struct ipcb_selector *,
		    struct ipcb_msg **, size_t *, int *slot, int *code,
		    char *err, size_t errlen);
const char	*key_hex(key_t);
const char	*mode_octal(int);

/* segment.c: the configured shared-memory segments and their locks */
struct segment {
	struct shm_conf	 conf;
	struct ipcb_shm	 shm;
	struct ipcb_sem	 sem;
	int		 corrupt;	/* failed validation: never written */
	struct waiterq	 lockers;	/* requests waiting for the lock */
	int		 nlockers;
	TAILQ_ENTRY(segment) entry;
};
TAILQ_HEAD(segmentq, segment);
extern struct segmentq segments;

int		 segments_open(const struct config *, char *, size_t);
int		 segments_reload(const struct config *);
void		 segments_close(void);
struct segment	*segment_find(const char *name);
int		 segment_trylock(struct segment *, int how, int wait_us, int *code,
		    char *, size_t);
void		 segment_unlock(struct segment *);
int		 segment_removed(struct segment *, char *, size_t);

/* journal.c: held messages in a MAP_SHARED file, restored at start-up */
int		 journal_open(const char *dir, int nslots, char *, size_t);
void		 journal_restore(void);
int		 journal_take(key_t, struct ipcb_msg **, size_t *cap);
void		 journal_commit(int slot, size_t len);
void		 journal_release(int slot);
int		 journal_free_slots(void);
size_t		 journal_capacity(void);
void		 journal_close(void);
void		 journal_chown(const char *dir, uid_t, gid_t);

/* ack.c: deliveries waiting for queue.ack (at-least-once mode) */
struct conn;
uint64_t	 ack_hold(struct conn *, key_t, const struct ipcb_msg *, size_t,
		    int slot, long consumer, int timeout_ms);
int		 ack_settle(struct conn *, uint64_t tag, int putback);
void		 ack_conn_closed(struct conn *);
void		 ack_expire(uint64_t now);
int		 ack_count(void);

/* stats.c: counters reported by the stats op */
enum err_code {
	ERR__OK = -1,
	ERR_PARSE, ERR_INVALID_REQUEST, ERR_LINE_TOO_LONG, ERR_UNKNOWN_OP,
	ERR_INVALID_PARAMS, ERR_BUSY, ERR_NOT_FOUND, ERR_QUEUE_FULL,
	ERR_MSG_TOO_BIG, ERR_QUEUE_REMOVED, ERR_NOT_UTF8, ERR_TOO_MANY_WAITS,
	ERR_CANCELLED, ERR_SHUTTING_DOWN, ERR_PERMISSION_DENIED, ERR_IPC,
	ERR_INTERNAL, ERR_UNSUPPORTED_PROTOCOL, ERR_LOCK_TIMEOUT, ERR_NO_SPACE,
	ERR_OUT_OF_RANGE, ERR_CORRUPT, ERR_UNSUPPORTED_VALUE, ERR_SEM_REMOVED,
	ERR_SHM_REMOVED, ERR__COUNT
};
struct stats {
	uint64_t	 started_ms;
	uint64_t	 conns_current;
	uint64_t	 conns_total;
	uint64_t	 requests;
	uint64_t	 errors[ERR__COUNT];
	uint64_t	 msgs_sent;
	uint64_t	 msgs_received;
	uint64_t	 bytes_in;
	uint64_t	 bytes_out;
	uint64_t	 polls;
	uint64_t	 putbacks;
	uint64_t	 acked;
	uint64_t	 redelivered;
	uint64_t	 restored;
	uint64_t	 lost;
};
extern struct stats stats;
const char	*err_name(enum err_code);
json_t		*stats_json(void);
uint64_t	 now_ms(void);
uint64_t	 now_realtime_ms(void);
uint64_t	 now_us(void);

/* hooks.c: seams for the fault-injection build (src/fault.c) */
struct sock_calls {
	ssize_t	 (*recv)(int, void *, size_t, int);
	ssize_t	 (*send)(int, const void *, size_t, int);
};
extern struct sock_calls sock_calls;
extern void	(*fault_hook)(const char *point);
/* A named place where a test build may crash the daemon (SIGKILL). */
#define FAULT_POINT(name) do {						\
	if (fault_hook != NULL)						\
		fault_hook(name);					\
} while (0)
/* fault.c, only in tests/ipcbridge-fault: reads IPCBRIDGE_FAULT */
void		 fault_install(void);

/* utf8.c: validation by jansson's rules, and cutting on a boundary */
size_t		 utf8_valid(const char *, size_t);
size_t		 utf8_prefix(const char *, size_t max);

/* conn.c: one client's life, line framing and output */
struct conn;
extern int	 conns_count;
void		 conn_accept(int fd);
void		 conn_close(struct conn *, const char *reason);
void		 conn_write_json(struct conn *, json_t *);
void		 conn_write_raw(struct conn *, const char *, size_t);
char		*conn_append(struct conn *, size_t);
int		 conn_flush(struct conn *);
extern int	 conn_defer_flush;
void		 conns_flush_deferred(void);
int		 conn_alive(const struct conn *);
int		 conn_backlogged(const struct conn *);
void		 conn_hold_done(struct conn *);
struct peer	*conn_peer(struct conn *);
int		 conn_may(struct conn *, const struct access *, int write);
int		 conn_track_delivery(struct conn *, key_t,
		    const struct ipcb_msg *, size_t, int slot);
struct waiterq	*conn_waiters(struct conn *);
int		*conn_nwaits(struct conn *);
void		 conn_set_held(struct conn *, struct waiter *);
void		 conns_shutdown(void);
int		 conns_drained(void);
void		 conns_close_all(const char *reason);

/* notify.c: systemd readiness and status */
void		 notify(const char *, ...)
		    __attribute__((format(printf, 1, 2)));

/* listen.c: the Unix socket */
int		 listen_open(struct event_base *, const struct config *);
void		 listen_close(void);
void		 listen_chown(uid_t, gid_t);
const char	*listen_name(void);

/* main.c */
extern struct event_base *base;
extern const struct config *cfg;

/* proto.c: decode a request line, dispatch, encode the reply */
enum encoding { ENC_AUTO, ENC_TEXT, ENC_BASE64, ENC_JSON, ENC_PHP };
/* Every param of every op (the op table in proto.c says whose is whose). */
enum pname {
	PN_NONE, PN_PROTO, PN_TARGET, PN_CONSUMER, PN_QUEUE, PN_TYPE, PN_TYPE_MAX,
	PN_EXCEPT, PN_TEXT, PN_DATA_B64, PN_VALUE, PN_TIMEOUT_MS, PN_ENCODING,
	PN_ACK, PN_ACK_TIMEOUT_MS, PN_PREFETCH, PN_TAG, PN_NAME, PN_VAR,
	PN_OFFSET, PN_LENGTH, PN_LOCK_TIMEOUT_MS, PN__COUNT
};
struct request {
	struct conn	*conn;
	json_t		*id;	/* borrowed; NULL when the client sent none */
	const char	*op;
	/* the params given, type-checked against the op table; borrowed
	 * until the handler returns (incref to keep); NULL when absent */
	json_t		*p[PN__COUNT];
	/* a big data_b64 kept out of the DOM (p[PN_DATA_B64] is "" then):
	 * its text in the request line, valid only until the handler
	 * returns; NULL when data_b64, if any, is in p[] as usual */
	const char	*b64;
	size_t		 b64len;
};
/* Lines at least this long are searched for a data_b64 to keep out of
 * the DOM (tests and the fuzzer lower it to reach the fast path). */
extern size_t	 proto_big_line;
extern uint64_t	 proto_fast_lines;	/* lines that took that path */
/* Flat lines are parsed by load_flat(), not jansson's lexer (tests turn
 * it off to compare the two). */
extern int	 proto_flat;
extern uint64_t	 proto_flat_lines;	/* lines that took that path */
enum op_status { OP_DONE, OP_PARKED };

/* jsonfast.c */
json_t	*load_big(const char *line, size_t len, json_error_t *,
	    const char **b64, size_t *b64len, int *fallback);
struct member {			/* one "key": value of a request */
	const char	*key;		/* not NUL-terminated */
	size_t		 klen;
	json_t		*v;
};
/* Whether m's key is key[0..klen): lengths, then first bytes, decide
 * most comparisons before memcmp is called. */
static inline int
member_is(const struct member *m, const char *key, size_t klen)
{
	return m->klen == klen && (klen == 0 || (m->key[0] == key[0] &&
	    memcmp(m->key, key, klen) == 0));
}
json_t	*members_get(const struct member *, int n, const char *key,
	    size_t klen);
int	 load_flat(const char *line, size_t len, struct member *, int max);
void	 members_free(struct member *, int n);
int	 load_flat_vs_jansson(const char *line, size_t len, char *why,
	    size_t whylen);

void	 proto_line(struct conn *, const char *line, size_t len);
void	 reply_result(struct conn *, json_t *id, json_t *result);
void	 reply_result_b64(struct conn *, json_t *id, json_t *result,
	    const char *data, size_t len);
void	 reply_error(struct conn *, json_t *id, int code, json_t *data,
	    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
int	 bad_param(struct request *, const char *param, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));
json_t	*proto_op_names(void);
void	 send_event(struct conn *, const char *name, json_t *data);

int	 param_encoding(struct request *, int structured, enum encoding *);
int	 check_access(struct request *, const struct access *, int write,
	    const char *kind, const char *name);
int	 param_bytes(struct request *, size_t head, size_t tail, size_t max,
	    char **buf, size_t *len);

/* op_queue.c and op_server.c: handlers */
enum op_status	 op_hello(struct request *);
enum op_status	 op_stats(struct request *);
enum op_status	 op_cancel(struct request *);
enum op_status	 op_queue_send(struct request *);
enum op_status	 op_queue_recv(struct request *);
enum op_status	 op_queue_consume(struct request *);
enum op_status	 op_queue_stat(struct request *);
enum op_status	 op_queue_list(struct request *);
enum op_status	 op_queue_ack(struct request *);
enum op_status	 op_queue_nack(struct request *);
enum op_status	 op_shm_put(struct request *);
enum op_status	 op_shm_get(struct request *);
enum op_status	 op_shm_has(struct request *);
enum op_status	 op_shm_del(struct request *);
enum op_status	 op_shm_vars(struct request *);
enum op_status	 op_shm_clear(struct request *);
enum op_status	 op_shm_stat(struct request *);
enum op_status	 op_shm_list(struct request *);
json_t		*queue_stat_json(struct queue *, int *code, char *, size_t);
json_t		*send_result(struct queue *, long type, size_t len);

/* waiter.c: parked receivers, consumers, pending sends and the poll timer */
enum waiter_kind { W_RECV, W_CONSUME, W_SEND, W_LOCK };
struct waiter;
typedef void	 (*locked_fn)(struct conn *, json_t *id, struct segment *,
		    void *arg);
struct waiter {
	enum waiter_kind kind;
	struct conn	*conn;		/* NULL for a put-back */
	struct queue	*queue;
	json_t		*id;		/* owned; NULL when held */
	int		 held;		/* the connection reads no more until done */
	struct ipcb_selector sel;
	enum encoding	 encoding;
	uint64_t	 deadline_ms;	/* 0: none */
	uint64_t	 since_ms;	/* W_LOCK: when it started waiting */
	long		 consumer;
	int		 ack;		/* at-least-once: deliveries get tags */
	int		 ack_timeout_ms;
	int		 prefetch;	/* consumer: most unacked at once */
	int		 unacked;
	struct ipcb_msg	*msg;		/* W_SEND: the message to send */
	size_t		 len;
	int		 slot;		/* put-back: its journal slot or -1 */
	struct segment	*seg;		/* W_LOCK: the segment, */
	locked_fn	 run;		/* what to do under the lock */
	int		 how;		/* taken as IPCB_LOCK_*, */
	void		*arg;		/* with what (owned, free()d) */
	TAILQ_ENTRY(waiter) qentry;
	TAILQ_ENTRY(waiter) centry;
};
struct waiter	*waiter_new(enum waiter_kind, struct conn *, struct queue *,
		    json_t *id);
void		 waiter_park(struct waiter *);
void		 waiter_discard(struct waiter *);
enum op_status	 waiter_start(struct waiter *);
struct waiter	*waiter_find(struct conn *, json_t *id, long consumer);
void		 waiter_cancel(struct waiter *);
void		 waiter_cancel_conn(struct conn *);
void		 waiter_end_consumers(struct conn *);
void		 waiter_fail_queue(struct queue *, int code, const char *);
void		 waiter_putback(struct queue *, const struct ipcb_msg *,
		    size_t, int slot);
void		 waiter_putback_key(key_t, const struct ipcb_msg *, size_t,
		    int slot);
void		 waiter_shutdown(void);
int		 waiter_pending_putbacks(void);
int		 waiter_count(void);
void		 waiter_init(void);
void		 waiter_exit(void);
int		 payload_put(json_t *, const char *, size_t, enum encoding);
void		 serve_senders(struct queue *, uint64_t);
enum op_status	 waiter_lock(struct conn *, json_t *id, struct segment *,
		    int how, locked_fn, void *arg, int timeout_ms);
void		 waiter_fail_segment(struct segment *, int code, const char *);
void		 waiter_kick(void);
void		 waiter_consumer_acked(struct conn *, long consumer);

#endif
