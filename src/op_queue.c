/*
 * op_queue.c - the queue.* ops: send, recv, consume, stat, list.
 *
 * Handlers validate meaning (ranges, exactly-one-of), then either answer at
 * once or hand a waiter to waiter.c, which answers later through the same
 * reply path. No SysV call here ever sleeps: everything is IPC_NOWAIT.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"

/* The request's queue, if it exists and the peer may use it that way. */
static struct queue *
get_queue_for(struct request *r, int write)
{
	json_t *v = r->p[PN_QUEUE];
	const char *name = v ? json_string_value(v) : "default";
	struct queue *q;

	if ((q = queue_find(name)) != NULL)
		return check_access(r, &q->conf.access, write, "queue",
		    q->conf.name) < 0 ? NULL : q;
	reply_error(r->conn, r->id, ERR_NOT_FOUND,
	    json_pack("{s:s%}", "queue", name, utf8_prefix(name, 64)),
	    "no queue named \"%.*s\" (queue.list shows them)",
	    (int)utf8_prefix(name, 64), name);
	return NULL;
}

/* timeout_ms: absent or 0 = no wait; else 1..max_wait_ms. */
static int
get_timeout(struct request *r, json_int_t *ms)
{
	json_t *v = r->p[PN_TIMEOUT_MS];

	*ms = v ? json_integer_value(v) : 0;
	if (*ms < 0 || *ms > cfg->max_wait_ms) {
		bad_param(r, "timeout_ms", "timeout_ms must be 0..%d "
		    "(max_wait_ms)", cfg->max_wait_ms);
		return -1;
	}
	return 0;
}

/* type / type_max / except -> a msgrcv selector. */
static int
get_selector(struct request *r, struct ipcb_selector *sel)
{
	json_t *type = r->p[PN_TYPE];
	json_t *tmax = r->p[PN_TYPE_MAX];
	json_t *exc = r->p[PN_EXCEPT];
	json_int_t t = type ? json_integer_value(type) : 0;

	if (type != NULL && tmax != NULL) {
		bad_param(r, "type_max", "give type or type_max, not both");
		return -1;
	}
	if (tmax != NULL) {
		sel->match = IPCB_MATCH_MAX;
		sel->type = (long)json_integer_value(tmax);
		if (sel->type < 1) {
			bad_param(r, "type_max", "type_max must be >= 1");
			return -1;
		}
		if (json_is_true(exc)) {
			bad_param(r, "except", "except needs type, not type_max");
			return -1;
		}
		return 0;
	}
	if (t < 0) {
		bad_param(r, "type", "type must be >= 0 (0 = any; use "
		    "type_max for msgrcv's negative types)");
		return -1;
	}
	sel->type = (long)t;
	sel->match = t == 0 ? IPCB_MATCH_ANY : IPCB_MATCH_TYPE;
	if (json_is_true(exc)) {
		if (t == 0) {
			bad_param(r, "except", "except needs a type >= 1");
			return -1;
		}
		sel->match = IPCB_MATCH_EXCEPT;
	}
	return 0;
}

/* A queue's default decoding follows its payload setting. */
static int
get_encoding(struct request *r, struct queue *q, enum encoding *enc)
{
	static const enum encoding dflt[] = {
		[PAYLOAD_RAW] = ENC_AUTO, [PAYLOAD_JSON] = ENC_JSON,
		[PAYLOAD_PHP] = ENC_PHP,
	};

	*enc = dflt[q->conf.payload];
	return param_encoding(r, 1, enc);
}

/* A JSON value as this queue's payload: compact JSON or PHP serialize(). */
static char *
encode_value(struct request *r, struct queue *q, json_t *v, size_t *len)
{
	char err[256], *out;

	if (q->conf.payload == PAYLOAD_RAW) {
		bad_param(r, "value", "queue \"%s\" has payload = raw: send "
		    "text or data_b64 (value needs payload = json or php)",
		    q->conf.name);
		return NULL;
	}
	if (q->conf.payload == PAYLOAD_JSON) {
		out = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		*len = out ? strlen(out) : 0;
		return out;
	}
	if ((out = phpser_encode(v, len, err, sizeof(err))) == NULL)
		bad_param(r, "value", "%s", err);
	return out;
}

/* Build the kernel message from text, data_b64 or value (exactly one). */
static struct ipcb_msg *
get_payload(struct request *r, struct queue *q, long type, size_t *len)
{
	json_t *value = r->p[PN_VALUE];
	size_t max = ipcb_msgmax();
	struct ipcb_msg *m;
	char *buf, *enc;

	if (value != NULL && (r->p[PN_TEXT] || r->p[PN_DATA_B64])) {
		bad_param(r, "value", "give exactly one of text, data_b64 "
		    "or value");
		return NULL;
	}
	if (value != NULL) {
		if ((enc = encode_value(r, q, value, len)) == NULL)
			return NULL;
		buf = malloc(sizeof(*m) + *len);
		if (buf != NULL)
			memcpy(buf + sizeof(*m), enc, *len);
		free(enc);
	} else if (param_bytes(r, sizeof(*m), 0, max, &buf, len) < 0)
		return NULL;
	if (buf == NULL) {
		reply_error(r->conn, r->id, ERR_INTERNAL, NULL, "out of memory");
		return NULL;
	}
	if (*len > max) {
		free(buf);
		reply_error(r->conn, r->id, ERR_MSG_TOO_BIG,
		    json_pack("{s:I, s:I}", "bytes", (json_int_t)*len,
		    "max", (json_int_t)max),
		    "message of %zu bytes is over the kernel's msgmax (%zu)",
		    *len, max);
		return NULL;
	}
	m = (struct ipcb_msg *)(void *)buf;
	m->mtype = type;
	return m;
}

json_t *
send_result(struct queue *q, long type, size_t len)
{
	return json_pack("{s:s, s:I, s:I}", "queue", q->conf.name,
	    "type", (json_int_t)type, "bytes", (json_int_t)len);
}

/* Does jansson's compact dump write this string as it is? (It escapes
 * only '"', '\\' and control characters; the text is valid UTF-8.) */
static int
json_plain(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if ((unsigned char)s[i] < 0x20 || s[i] == '"' || s[i] == '\\')
			return 0;
	}
	return 1;
}

static char *
put_int(char *p, long long v)
{
	unsigned long long u = v < 0 ? 0 - (unsigned long long)v :
	    (unsigned long long)v;
	char tmp[24];
	int i = 0;

	do
		tmp[i++] = (char)('0' + u % 10);
	while ((u /= 10) != 0);
	if (v < 0)
		*p++ = '-';
	while (i > 0)
		*p++ = tmp[--i];
	return p;
}

#define PUT(p, lit)	(memcpy(p, lit, sizeof(lit) - 1), (p) + sizeof(lit) - 1)

/*
 * The reply to a send, the commonest reply there is: written straight
 * into the output, byte for byte what reply_result(send_result()) writes
 * (a JSON object and jansson's dump cost more than the send itself).
 * Ids and names that jansson would escape take that path instead.
 */
static void
reply_sent(struct conn *c, json_t *id, struct queue *q, long type,
    size_t len)
{
	const char *name = q->conf.name;
	size_t nlen = strlen(name);
	char buf[256 + MAX_ID_BYTES], *p = buf;

	if (nlen > 128 || !json_plain(name, nlen) || (id != NULL &&
	    !json_is_integer(id) && !(json_is_string(id) &&
	    json_string_length(id) <= MAX_ID_BYTES &&
	    json_plain(json_string_value(id), json_string_length(id))))) {
		reply_result(c, id, send_result(q, type, len));
		return;
	}
	p = PUT(p, "{");
	if (id != NULL && json_is_integer(id)) {
		p = PUT(p, "\"id\":");
		p = put_int(p, json_integer_value(id));
		p = PUT(p, ",");
	} else if (id != NULL) {
		p = PUT(p, "\"id\":\"");
		memcpy(p, json_string_value(id), json_string_length(id));
		p += json_string_length(id);
		p = PUT(p, "\",");
	}
	p = PUT(p, "\"result\":{\"queue\":\"");
	memcpy(p, name, nlen);
	p += nlen;
	p = PUT(p, "\",\"type\":");
	p = put_int(p, type);
	p = PUT(p, ",\"bytes\":");
	p = put_int(p, (long long)len);
	p = PUT(p, "}}\n");
	conn_write_raw(c, buf, (size_t)(p - buf));
}

enum op_status
op_queue_send(struct request *r)
{
	json_t *tv = r->p[PN_TYPE];
	struct queue *q;
	struct ipcb_msg *m;
	struct waiter *w;
	json_int_t timeout;
	char err[512];
	size_t len;
	int code;

	if ((q = get_queue_for(r, 1)) == NULL)
		return OP_DONE;
	if (tv == NULL || json_integer_value(tv) < 1)
		return bad_param(r, "type", "type is required and must be >= 1");
	if (get_timeout(r, &timeout) < 0)
		return OP_DONE;
	if ((m = get_payload(r, q, (long)json_integer_value(tv), &len)) ==
	    NULL)
		return OP_DONE;
	if (TAILQ_EMPTY(&q->senders))
		code = queue_send(q, m, len, err, sizeof(err));
	else {
		/* earlier sends and put-backs wait for room: queue up */
		code = ERR_QUEUE_FULL;
		snprintf(err, sizeof(err), "queue \"%s\": queue full "
		    "(earlier messages are waiting for room)", q->conf.name);
	}
	if (code == ERR__OK) {
		reply_sent(r->conn, r->id, q, m->mtype, len);
		free(m);
		return OP_DONE;
	}
	if (code != ERR_QUEUE_FULL || timeout == 0) {
		reply_error(r->conn, r->id, code, NULL, "%s", err);
		free(m);
		return OP_DONE;
	}
	if (r->id != NULL && *conn_nwaits(r->conn) >= MAX_PARKED_PER_CONN) {
		free(m);
		reply_error(r->conn, r->id, ERR_TOO_MANY_WAITS, NULL,
		    "at most %d waits per connection", MAX_PARKED_PER_CONN);
		return OP_DONE;
	}
	w = waiter_new(W_SEND, r->conn, q, r->id);
	w->msg = m;
	w->len = len;
	w->deadline_ms = now_ms() + (uint64_t)timeout;
	waiter_park(w);
	return OP_PARKED;
}

/* ack, ack_timeout_ms and (consume) prefetch: at-least-once delivery. */
static int
get_ack(struct request *r, struct waiter *w)
{
	json_t *ack = r->p[PN_ACK];
	json_t *tmo = r->p[PN_ACK_TIMEOUT_MS];
	json_t *pf = r->p[PN_PREFETCH];

	w->ack = json_is_true(ack);
	if (!w->ack && (tmo != NULL || pf != NULL))
		return bad_param(r, tmo ? "ack_timeout_ms" : "prefetch",
		    "%s needs ack: true", tmo ? "ack_timeout_ms" : "prefetch"),
		    -1;
	w->ack_timeout_ms = tmo ? (int)json_integer_value(tmo) :
	    cfg->ack_timeout_ms;
	if (tmo != NULL && (json_integer_value(tmo) < 1 ||
	    json_integer_value(tmo) > 86400000))
		return bad_param(r, "ack_timeout_ms",
		    "ack_timeout_ms must be 1..86400000"), -1;
	w->prefetch = pf ? (int)json_integer_value(pf) : 1;
	if (pf != NULL && (json_integer_value(pf) < 1 ||
	    json_integer_value(pf) > 65536))
		return bad_param(r, "prefetch", "prefetch must be 1..65536"),
		    -1;
	return 0;
}

/* Settle a tag this connection received with ack: true. */
static enum op_status
settle(struct request *r, int putback)
{
	json_t *tag = r->p[PN_TAG];
	json_int_t t = tag ? json_integer_value(tag) : 0;

	if (tag == NULL || t < 1)
		return bad_param(r, "tag", "tag (from a delivery made with "
		    "ack: true) is required and must be >= 1");
	if (ack_settle(r->conn, (uint64_t)t, putback) < 0) {
		reply_error(r->conn, r->id, ERR_NOT_FOUND, json_pack("{s:I}",
		    "tag", t), "no unacked delivery with tag %lld on this "
		    "connection", (long long)t);
		return OP_DONE;
	}
	reply_result(r->conn, r->id, json_pack("{s:I, s:b}", "tag", t,
	    putback ? "requeued" : "acked", 1));
	return OP_DONE;
}

enum op_status
op_queue_ack(struct request *r)
{
	return settle(r, 0);
}

enum op_status
op_queue_nack(struct request *r)
{
	return settle(r, 1);
}

enum op_status
op_queue_recv(struct request *r)
{
	struct ipcb_selector sel;
	enum encoding enc;
	struct queue *q;
	struct waiter *w;
	json_int_t timeout;

	if ((q = get_queue_for(r, 0)) == NULL || get_selector(r, &sel) < 0 ||
	    get_timeout(r, &timeout) < 0 || get_encoding(r, q, &enc) < 0)
		return OP_DONE;
	if (timeout > 0 && r->id != NULL &&
	    *conn_nwaits(r->conn) >= MAX_PARKED_PER_CONN) {
		reply_error(r->conn, r->id, ERR_TOO_MANY_WAITS, NULL,
		    "at most %d waits per connection", MAX_PARKED_PER_CONN);
		return OP_DONE;
	}
	w = waiter_new(W_RECV, r->conn, q, r->id);
	w->sel = sel;
	w->encoding = enc;
	if (get_ack(r, w) < 0) {
		waiter_discard(w);
		return OP_DONE;
	}
	if (timeout > 0)
		w->deadline_ms = now_ms() + (uint64_t)timeout;
	return waiter_start(w);
}

enum op_status
op_queue_consume(struct request *r)
{
	struct ipcb_selector sel;
	enum encoding enc;
	struct queue *q;
	struct waiter *w;

	if ((q = get_queue_for(r, 0)) == NULL || get_selector(r, &sel) < 0 ||
	    get_encoding(r, q, &enc) < 0)
		return OP_DONE;
	if (*conn_nwaits(r->conn) >= MAX_PARKED_PER_CONN) {
		reply_error(r->conn, r->id, ERR_TOO_MANY_WAITS, NULL,
		    "at most %d waits and consumers per connection",
		    MAX_PARKED_PER_CONN);
		return OP_DONE;
	}
	w = waiter_new(W_CONSUME, r->conn, q, NULL);
	w->sel = sel;
	w->encoding = enc;
	if (get_ack(r, w) < 0) {
		waiter_discard(w);
		return OP_DONE;
	}
	reply_result(r->conn, r->id, json_pack("{s:I}", "consumer",
	    (json_int_t)w->consumer));
	waiter_park(w);
	return OP_DONE;
}

/* The kernel's figures for a queue plus our waiters on it. */
json_t *
queue_stat_json(struct queue *q, int *code, char *err, size_t errlen)
{
	struct msqid_ds ds;
	int rc;

	rc = q->msqid < 0 ? -EIDRM : ipcb_msgq_stat(q->msqid, &ds);
	if ((rc == -EINVAL || rc == -EIDRM) && queue_reopen(q) == 0)
		rc = ipcb_msgq_stat(q->msqid, &ds);
	if (rc < 0) {
		*code = queue_errno_code(-rc);
		snprintf(err, errlen, "queue \"%s\" (key 0x%08x): msgctl "
		    "IPC_STAT: %s", q->conf.name, (unsigned)q->conf.key,
		    strerror(-rc));
		return NULL;
	}
	return json_pack("{s:s, s:s, s:s, s:i, s:I, s:I, s:I, s:{s:i, s:I}, "
	    "s:{s:i, s:I}, s:s, s:i, s:i, s:i, s:i, s:i}",
	    "queue", q->conf.name,
	    "key", key_hex(q->conf.key),
	    "key_spec", q->conf.key_spec,
	    "msqid", q->msqid,
	    "messages", (json_int_t)ds.msg_qnum,
	    "bytes", (json_int_t)ds.__msg_cbytes,
	    "max_bytes", (json_int_t)ds.msg_qbytes,
	    "last_send", "pid", (int)ds.msg_lspid,
	    "time", (json_int_t)ds.msg_stime,
	    "last_recv", "pid", (int)ds.msg_lrpid,
	    "time", (json_int_t)ds.msg_rtime,
	    "mode", mode_octal(ds.msg_perm.mode & 0777),
	    "uid", (int)ds.msg_perm.uid,
	    "gid", (int)ds.msg_perm.gid,
	    "waiters", q->nwaiting,
	    "consumers", q->nconsumers,
	    "put_backs_pending", q->nputbacks);
}

enum op_status
op_queue_stat(struct request *r)
{
	struct queue *q;
	char err[512];
	json_t *j;
	int code;

	if ((q = get_queue_for(r, 0)) == NULL)
		return OP_DONE;
	if ((j = queue_stat_json(q, &code, err, sizeof(err))) == NULL)
		reply_error(r->conn, r->id, code, NULL, "%s", err);
	else
		reply_result(r->conn, r->id, j);
	return OP_DONE;
}

enum op_status
op_queue_list(struct request *r)
{
	json_t *list = json_array(), *j;
	struct queue *q;
	char err[512];
	int code;

	TAILQ_FOREACH(q, &queues, entry) {
		if (!conn_may(r->conn, &q->conf.access, 0))
			continue;	/* not readable by this client */
		j = queue_stat_json(q, &code, err, sizeof(err));
		if (j == NULL)
			j = json_pack("{s:s, s:s, s:{s:s, s:s}}",
			    "queue", q->conf.name, "key", key_hex(q->conf.key),
			    "error", "code", err_name(code), "message", err);
		json_array_append_new(list, j);
	}
	reply_result(r->conn, r->id, json_pack("{s:o}", "queues", list));
	return OP_DONE;
}
