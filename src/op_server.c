/*
 * op_server.c - ops about the server itself: hello, stats, cancel.
 */
#include <string.h>

#include "daemon.h"

enum op_status
op_hello(struct request *r)
{
	json_t *proto = r->p[PN_PROTO];
	json_t *names, *segs;
	struct segment *s;
	struct queue *q;
	struct peer *peer = conn_peer(r->conn);

	if (proto != NULL && (json_integer_value(proto) < 1 ||
	    json_integer_value(proto) > PROTOCOL_VERSION)) {
		reply_error(r->conn, r->id, ERR_UNSUPPORTED_PROTOCOL,
		    json_pack("{s:i}", "supported", PROTOCOL_VERSION),
		    "this server speaks protocol %d", PROTOCOL_VERSION);
		return OP_DONE;
	}
	names = json_array();
	TAILQ_FOREACH(q, &queues, entry)
		json_array_append_new(names, json_string(q->conf.name));
	segs = json_array();
	TAILQ_FOREACH(s, &segments, entry)
		json_array_append_new(segs, json_string(s->conf.name));
	reply_result(r->conn, r->id, json_pack(
	    "{s:s, s:s, s:i, s:o, s:o, s:o, s:{s:I, s:i, s:i, s:i, s:I}, s:i, "
	    "s:{s:i, s:i, s:i}}",
	    "server", "ipcbridge",
	    "version", PACKAGE_VERSION,
	    "protocol", PROTOCOL_VERSION,
	    "ops", proto_op_names(),
	    "queues", names,
	    "segments", segs,
	    "limits",
	    "max_line_bytes", (json_int_t)cfg->max_line_bytes,
	    "max_conns", cfg->max_conns,
	    "max_wait_ms", cfg->max_wait_ms,
	    "max_waits_per_conn", MAX_PARKED_PER_CONN,
	    "max_msg_bytes", (json_int_t)ipcb_msgmax(),
	    "poll_interval_ms", cfg->poll_interval_ms,
	    "peer", "pid", (int)peer->pid, "uid", (int)peer->uid,
	    "gid", (int)peer->gid));
	return OP_DONE;
}

enum op_status
op_stats(struct request *r)
{
	reply_result(r->conn, r->id, stats_json());
	return OP_DONE;
}

/* cancel {target: id} ends a parked wait; cancel {consumer: n} a consumer. */
enum op_status
op_cancel(struct request *r)
{
	json_t *target = r->p[PN_TARGET];
	json_t *cons = r->p[PN_CONSUMER];
	struct waiter *w;
	json_int_t n = cons ? json_integer_value(cons) : 0;

	if ((target == NULL) == (cons == NULL))
		return bad_param(r, target ? "consumer" : "target",
		    "give exactly one of target (a parked request's id) or "
		    "consumer");
	if (cons != NULL && n < 1)
		return bad_param(r, "consumer", "consumer must be >= 1");
	if (target != NULL && !json_is_integer(target) &&
	    !json_is_string(target))
		return bad_param(r, "target",
		    "target must be the id (integer or string) of a parked "
		    "request");
	w = waiter_find(r->conn, target, (long)n);
	if (w == NULL) {
		if (cons != NULL)
			reply_error(r->conn, r->id, ERR_NOT_FOUND, NULL,
			    "no consumer %lld on this connection",
			    (long long)n);
		else
			reply_error(r->conn, r->id, ERR_NOT_FOUND, NULL,
			    "no parked request with that id on this "
			    "connection");
		return OP_DONE;
	}
	waiter_cancel(w);
	if (cons != NULL)
		reply_result(r->conn, r->id, json_pack("{s:I, s:b}",
		    "consumer", n, "cancelled", 1));
	else
		reply_result(r->conn, r->id, json_pack("{s:O, s:b}",
		    "target", target, "cancelled", 1));
	return OP_DONE;
}
