/*
 * proto.c - protocol v1: one JSON object per line in, one reply line out.
 *
 * Decoding and validation happen here, once, for every op: the line's
 * members come from load_flat() or jansson (src/jsonfast.c), the op table
 * lists each op's params and their JSON types, so an unknown or mistyped
 * param is refused with invalid_params naming it before any handler runs,
 * and the others are bound to the request's slots (r->p[PN_*]). Handlers
 * check ranges and meaning, and reply through reply_result() or
 * reply_error(), or park the request and reply later through the same path.
 */
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

#include "daemon.h"

enum ptype { P_INT, P_STR, P_BOOL, P_ANY };

/* The params' names, as clients spell them. */
static const struct pname_str {
	const char	*s;
	size_t		 len;
} pnames[PN__COUNT] = {
#define PN(id, str) [id] = { str, sizeof(str) - 1 }
	PN(PN_PROTO, "proto"), PN(PN_TARGET, "target"),
	PN(PN_CONSUMER, "consumer"), PN(PN_QUEUE, "queue"),
	PN(PN_TYPE, "type"), PN(PN_TYPE_MAX, "type_max"),
	PN(PN_EXCEPT, "except"), PN(PN_TEXT, "text"),
	PN(PN_DATA_B64, "data_b64"), PN(PN_VALUE, "value"),
	PN(PN_TIMEOUT_MS, "timeout_ms"), PN(PN_ENCODING, "encoding"),
	PN(PN_ACK, "ack"), PN(PN_ACK_TIMEOUT_MS, "ack_timeout_ms"),
	PN(PN_PREFETCH, "prefetch"), PN(PN_TAG, "tag"), PN(PN_NAME, "name"),
	PN(PN_VAR, "var"), PN(PN_OFFSET, "offset"), PN(PN_LENGTH, "length"),
	PN(PN_LOCK_TIMEOUT_MS, "lock_timeout_ms"),
#undef PN
};

struct param {
	enum pname	 pn;		/* PN_NONE ends an op's list */
	enum ptype	 type;
};

struct op {
	const char	*name;
	enum op_status	 (*fn)(struct request *);
	struct param	 params[10];
};

#define SELECTOR_PARAMS \
	{ PN_TYPE, P_INT }, { PN_TYPE_MAX, P_INT }, { PN_EXCEPT, P_BOOL }

static const struct op ops[] = {
	{ "hello", op_hello, { { PN_PROTO, P_INT } } },
	{ "stats", op_stats, { { PN_NONE, 0 } } },
	{ "cancel", op_cancel, { { PN_TARGET, P_ANY },
	    { PN_CONSUMER, P_INT } } },
	{ "queue.send", op_queue_send, { { PN_QUEUE, P_STR },
	    { PN_TYPE, P_INT }, { PN_TEXT, P_STR }, { PN_DATA_B64, P_STR },
	    { PN_VALUE, P_ANY }, { PN_TIMEOUT_MS, P_INT } } },
	{ "queue.recv", op_queue_recv, { { PN_QUEUE, P_STR }, SELECTOR_PARAMS,
	    { PN_TIMEOUT_MS, P_INT }, { PN_ENCODING, P_STR },
	    { PN_ACK, P_BOOL }, { PN_ACK_TIMEOUT_MS, P_INT } } },
	{ "queue.consume", op_queue_consume, { { PN_QUEUE, P_STR },
	    SELECTOR_PARAMS, { PN_ENCODING, P_STR }, { PN_ACK, P_BOOL },
	    { PN_ACK_TIMEOUT_MS, P_INT }, { PN_PREFETCH, P_INT } } },
	{ "queue.stat", op_queue_stat, { { PN_QUEUE, P_STR } } },
	{ "queue.list", op_queue_list, { { PN_NONE, 0 } } },
	{ "queue.ack", op_queue_ack, { { PN_TAG, P_INT } } },
	{ "queue.nack", op_queue_nack, { { PN_TAG, P_INT } } },
	{ "shm.put", op_shm_put, { { PN_NAME, P_STR }, { PN_VAR, P_INT },
	    { PN_OFFSET, P_INT }, { PN_TEXT, P_STR }, { PN_DATA_B64, P_STR },
	    { PN_VALUE, P_ANY }, { PN_LOCK_TIMEOUT_MS, P_INT } } },
	{ "shm.get", op_shm_get, { { PN_NAME, P_STR }, { PN_VAR, P_INT },
	    { PN_OFFSET, P_INT }, { PN_LENGTH, P_INT }, { PN_ENCODING, P_STR },
	    { PN_LOCK_TIMEOUT_MS, P_INT } } },
	{ "shm.has", op_shm_has, { { PN_NAME, P_STR }, { PN_VAR, P_INT },
	    { PN_LOCK_TIMEOUT_MS, P_INT } } },
	{ "shm.del", op_shm_del, { { PN_NAME, P_STR }, { PN_VAR, P_INT },
	    { PN_LOCK_TIMEOUT_MS, P_INT } } },
	{ "shm.vars", op_shm_vars, { { PN_NAME, P_STR },
	    { PN_LOCK_TIMEOUT_MS, P_INT } } },
	{ "shm.clear", op_shm_clear, { { PN_NAME, P_STR },
	    { PN_LOCK_TIMEOUT_MS, P_INT } } },
	{ "shm.stat", op_shm_stat, { { PN_NAME, P_STR } } },
	{ "shm.list", op_shm_list, { { PN_NONE, 0 } } },
};

static const char *ptype_names[] = {
	[P_INT] = "an integer", [P_STR] = "a string", [P_BOOL] = "a boolean",
	[P_ANY] = "any value",
};

json_t *
proto_op_names(void)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		json_array_append_new(a, json_string(ops[i].name));
	return a;
}

static void
write_reply(struct conn *c, json_t *id, const char *key, json_t *body)
{
	json_t *r;

	r = json_object();
	if (id != NULL)
		json_object_set(r, "id", id);
	json_object_set_new(r, key, body);
	conn_write_json(c, r);
	json_decref(r);
}

void
reply_result(struct conn *c, json_t *id, json_t *result)
{
	write_reply(c, id, "result", result);
}

/*
 * A result with a big binary payload: the JSON around it is dumped as
 * usual, and data_b64 is base64-encoded straight into the output buffer,
 * never becoming a JSON string (jansson would copy it and scan it byte by
 * byte). Takes ownership of result, which must not hold data_b64 itself.
 */
void
reply_result_b64(struct conn *c, json_t *id, json_t *result,
    const char *data, size_t len)
{
	static const char key[] = ",\"data_b64\":\"";
	size_t n = b64_encoded_len(len);
	json_t *r;
	char *head, *p;
	size_t hlen;

	r = json_object();
	if (id != NULL)
		json_object_set(r, "id", id);
	json_object_set_new(r, "result", result);
	head = json_dumps(r, JSON_COMPACT);
	json_decref(r);
	if (head == NULL || (hlen = strlen(head)) < 2)
		fatalx("out of memory");
	/* {"id":..,"result":{...}} without its closing "}}" */
	conn_write_raw(c, head, hlen - 2);
	free(head);
	conn_write_raw(c, key, sizeof(key) - 1);
	if ((p = conn_append(c, n)) != NULL)
		b64_encode(data, len, p);
	conn_write_raw(c, "\"}}\n", 4);
}

/* Send an error reply; takes ownership of data (may be NULL). */
void
reply_error(struct conn *c, json_t *id, int code, json_t *data,
    const char *fmt, ...)
{
	char msg[1024];
	json_t *e;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	stats.errors[code]++;
	e = json_pack("{s:s, s:s}", "code", err_name(code), "message", msg);
	if (e == NULL)	/* msg was not UTF-8: a bug in the caller */
		e = json_pack("{s:s, s:s}", "code", err_name(code),
		    "message", "(unprintable message)");
	if (data != NULL)
		json_object_set_new(e, "data", data);
	write_reply(c, id, "error", e);
}

int
bad_param(struct request *r, const char *param, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	reply_error(r->conn, r->id, ERR_INVALID_PARAMS,
	    json_pack("{s:s}", "param", param), "%s: %s", r->op, msg);
	return OP_DONE;
}

void
send_event(struct conn *c, const char *name, json_t *data)
{
	json_t *e;

	e = json_pack("{s:s, s:o, s:I}", "event", name, "data", data,
	    "ts_ms", (json_int_t)now_realtime_ms());
	conn_write_json(c, e);
	json_decref(e);
}

/* Refuse (and log) an op the peer's identity does not allow; -1 if so. */
int
check_access(struct request *r, const struct access *a, int write,
    const char *kind, const char *name)
{
	struct peer *p = conn_peer(r->conn);

	if (conn_may(r->conn, a, write))
		return 0;
	log_warnx("permission denied: uid %d gid %d pid %d may not %s %s "
	    "\"%s\" (%s)", (int)p->uid, (int)p->gid, (int)p->pid,
	    write ? "write" : "read", kind, name, r->op);
	reply_error(r->conn, r->id, ERR_PERMISSION_DENIED,
	    json_pack("{s:i, s:i}", "uid", (int)p->uid, "gid", (int)p->gid),
	    "uid %d may not %s %s \"%s\" (%s_users/%s_groups)", (int)p->uid,
	    write ? "write" : "read", kind, name, write ? "write" : "read",
	    write ? "write" : "read");
	return -1;
}

/*
 * encoding: auto, text, base64 (and json, php where structured payloads
 * are allowed). *enc holds the default on entry.
 */
int
param_encoding(struct request *r, int structured, enum encoding *enc)
{
	json_t *v = r->p[PN_ENCODING];
	const char *s;

	if (v == NULL)
		return 0;
	s = json_string_value(v);
	if (!strcmp(s, "auto"))
		*enc = ENC_AUTO;
	else if (!strcmp(s, "text"))
		*enc = ENC_TEXT;
	else if (!strcmp(s, "base64"))
		*enc = ENC_BASE64;
	else if (structured && !strcmp(s, "json"))
		*enc = ENC_JSON;
	else if (structured && !strcmp(s, "php"))
		*enc = ENC_PHP;
	else {
		bad_param(r, "encoding", structured ? "encoding must be auto, "
		    "text, base64, json or php" :
		    "encoding must be auto, text or base64");
		return -1;
	}
	return 0;
}

/*
 * The bytes of text or data_b64 (exactly one) in a new buffer, with head
 * bytes of room before them and tail after, for the caller's framing.
 * Larger than max is msg_too_big (checked before decoding when it can be).
 */
int
param_bytes(struct request *r, size_t head, size_t tail, size_t max,
    char **buf, size_t *len)
{
	json_t *text = r->p[PN_TEXT];
	json_t *b64 = r->p[PN_DATA_B64];
	const char *bs = NULL;
	size_t n, bn = 0;
	ssize_t dn;

	*buf = NULL;
	if ((text == NULL) == (b64 == NULL)) {
		bad_param(r, text ? "data_b64" : "text",
		    "give exactly one of text or data_b64%s",
		    r->p[PN_VALUE] ? " or value" : "");
		return -1;
	}
	if (b64 != NULL) {
		/* the text itself, or kept out of the DOM by proto_line */
		bs = r->b64 ? r->b64 : json_string_value(b64);
		bn = r->b64 ? r->b64len : json_string_length(b64);
	}
	n = text ? json_string_length(text) : b64_decoded_max(bn);
	if (text != NULL && n > max) {
		reply_error(r->conn, r->id, ERR_MSG_TOO_BIG,
		    json_pack("{s:I, s:I}", "bytes", (json_int_t)n,
		    "max", (json_int_t)max),
		    "%zu bytes is over the limit of %zu", n, max);
		return -1;
	}
	if ((*buf = malloc(head + n + tail + 1)) == NULL) {
		reply_error(r->conn, r->id, ERR_INTERNAL, NULL, "out of memory");
		return -1;
	}
	if (text != NULL) {
		memcpy(*buf + head, json_string_value(text), n);
		*len = n;
		return 0;
	}
	dn = b64_decode(bs, bn, *buf + head);
	if (dn < 0) {
		free(*buf);
		*buf = NULL;
		bad_param(r, "data_b64", "data_b64 is not canonical base64 "
		    "(RFC 4648: A-Z a-z 0-9 + /, = padding, no whitespace)");
		return -1;
	}
	*len = (size_t)dn;
	return 0;
}

static int
type_ok(json_t *v, enum ptype t)
{
	switch (t) {
	case P_INT:
		return json_is_integer(v);
	case P_STR:
		return json_is_string(v);
	case P_BOOL:
		return json_is_boolean(v);
	case P_ANY:
		return 1;
	}
	return 0;
}

/*
 * Every key must be one of the op's params, with the right JSON type;
 * each goes to its slot in r->p. The first bad member, in the order the
 * client wrote them, is the one reported.
 */
static int
bind_params(struct request *r, const struct op *op, const struct member *m,
    int n)
{
	const struct param *p;
	char *key;
	int i;

	for (i = 0; i < n; i++) {
		if (member_is(&m[i], "id", 2) || member_is(&m[i], "op", 2))
			continue;
		for (p = op->params; p->pn != PN_NONE; p++) {
			if (member_is(&m[i], pnames[p->pn].s,
			    pnames[p->pn].len))
				break;
		}
		if (p->pn == PN_NONE) {
			if ((key = strndup(m[i].key, m[i].klen)) == NULL) {
				reply_error(r->conn, r->id, ERR_INTERNAL, NULL,
				    "out of memory");
				return -1;
			}
			bad_param(r, key, "unknown param \"%.*s\"",
			    (int)utf8_prefix(key, 64), key);
			free(key);
			return -1;
		}
		if (!type_ok(m[i].v, p->type)) {
			bad_param(r, pnames[p->pn].s, "param \"%s\" must be %s",
			    pnames[p->pn].s, ptype_names[p->type]);
			return -1;
		}
		r->p[p->pn] = m[i].v;
	}
	return 0;
}

static int
id_ok(json_t *id)
{
	if (json_is_integer(id))
		return 1;
	return json_is_string(id) && json_string_length(id) <= MAX_ID_BYTES;
}

/* The members of a request jansson parsed, keys and values borrowed from
 * it: in stack if they fit, else in a new array; NULL if out of memory. */
static struct member *
dom_members(json_t *req, struct member *stack, int max, int *n)
{
	struct member *m = stack;
	const char *key;
	json_t *v;

	if (json_object_size(req) > (size_t)max &&
	    (m = calloc(json_object_size(req), sizeof(*m))) == NULL)
		return NULL;
	*n = 0;
	json_object_foreach(req, key, v) {
		m[*n].key = key;
		m[*n].klen = strlen(key);
		m[(*n)++].v = v;
	}
	return m;
}

/* Check id and op, bind the params and run the op. */
static void
dispatch(struct request *r, const struct member *m, int n)
{
	json_t *op;
	size_t i;

	r->id = members_get(m, n, "id", 2);
	if (r->id != NULL && !id_ok(r->id)) {
		r->id = NULL;
		reply_error(r->conn, NULL, ERR_INVALID_REQUEST,
		    json_pack("{s:s}", "param", "id"),
		    "id must be an integer or a string of at most %d bytes",
		    MAX_ID_BYTES);
		return;
	}
	op = members_get(m, n, "op", 2);
	if (!json_is_string(op)) {
		reply_error(r->conn, r->id, ERR_INVALID_REQUEST,
		    json_pack("{s:s}", "param", "op"),
		    "\"op\" is required and must be a string");
		return;
	}
	r->op = json_string_value(op);
	for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		if (ops[i].name[0] == r->op[0] &&
		    strcmp(ops[i].name, r->op) == 0)
			break;
	}
	if (i == sizeof(ops) / sizeof(ops[0])) {
		reply_error(r->conn, r->id, ERR_UNKNOWN_OP,
		    json_pack("{s:s%}", "op", r->op, utf8_prefix(r->op, 64)),
		    "unknown op \"%.*s\" (hello lists the ops)",
		    (int)utf8_prefix(r->op, 64), r->op);
		return;
	}
	if (bind_params(r, &ops[i], m, n) == 0)
		ops[i].fn(r);
}

/* Most requests have a handful of members; more go to the heap. */
#define STACK_MEMBERS	16

void
proto_line(struct conn *c, const char *line, size_t len)
{
	struct member stack[STACK_MEMBERS], *m;
	struct request r;
	json_error_t jerr;
	json_t *req = NULL;
	size_t i;
	int n, fallback = 1;

	stats.requests++;
	memset(&r, 0, sizeof(r));
	r.conn = c;
	if (len < proto_big_line &&
	    (n = load_flat(line, len, stack, STACK_MEMBERS)) >= 0) {
		dispatch(&r, stack, n);
		members_free(stack, n);
		return;
	}
	if (len >= proto_big_line)
		req = load_big(line, len, &jerr, &r.b64, &r.b64len, &fallback);
	if (fallback)
		req = json_loadb(line, len, JSON_DECODE_ANY |
		    JSON_REJECT_DUPLICATES, &jerr);
	if (req == NULL) {
		/* not UTF-8 anywhere in it, even past a syntax error */
		if ((i = utf8_valid(line, len)) < len)
			reply_error(c, NULL, ERR_NOT_UTF8,
			    json_pack("{s:I}", "position", (json_int_t)i),
			    "request is not valid UTF-8");
		else
			reply_error(c, NULL, ERR_PARSE,
			    json_pack("{s:i}", "position", jerr.position),
			    "JSON: %s", jerr.text);
		return;
	}
	if (!json_is_object(req))
		reply_error(c, NULL, ERR_INVALID_REQUEST, NULL,
		    "a request is a JSON object, like {\"op\":\"hello\"}");
	else if ((m = dom_members(req, stack, STACK_MEMBERS, &n)) == NULL)
		reply_error(c, NULL, ERR_INTERNAL, NULL, "out of memory");
	else {
		dispatch(&r, m, n);
		if (m != stack)
			free(m);
	}
	json_decref(req);
}
