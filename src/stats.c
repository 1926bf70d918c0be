/*
 * stats.c - the daemon's counters and the names of its error codes.
 */
#include <time.h>

#include "daemon.h"

struct stats stats;

static const char *err_names[ERR__COUNT] = {
	[ERR_PARSE] = "parse_error",
	[ERR_INVALID_REQUEST] = "invalid_request",
	[ERR_LINE_TOO_LONG] = "line_too_long",
	[ERR_UNKNOWN_OP] = "unknown_op",
	[ERR_INVALID_PARAMS] = "invalid_params",
	[ERR_BUSY] = "busy",
	[ERR_NOT_FOUND] = "not_found",
	[ERR_QUEUE_FULL] = "queue_full",
	[ERR_MSG_TOO_BIG] = "msg_too_big",
	[ERR_QUEUE_REMOVED] = "queue_removed",
	[ERR_NOT_UTF8] = "not_utf8",
	[ERR_TOO_MANY_WAITS] = "too_many_waits",
	[ERR_CANCELLED] = "cancelled",
	[ERR_SHUTTING_DOWN] = "shutting_down",
	[ERR_PERMISSION_DENIED] = "permission_denied",
	[ERR_IPC] = "ipc_error",
	[ERR_INTERNAL] = "internal_error",
	[ERR_UNSUPPORTED_PROTOCOL] = "unsupported_protocol",
	[ERR_LOCK_TIMEOUT] = "lock_timeout",
	[ERR_NO_SPACE] = "no_space",
	[ERR_OUT_OF_RANGE] = "out_of_range",
	[ERR_CORRUPT] = "corrupt",
	[ERR_UNSUPPORTED_VALUE] = "unsupported_value",
	[ERR_SEM_REMOVED] = "sem_removed",
	[ERR_SHM_REMOVED] = "shm_removed",
};

const char *
err_name(enum err_code code)
{
	return err_names[code];
}

uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

uint64_t
now_realtime_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

json_t *
stats_json(void)
{
	json_t *errors;
	int i;

	errors = json_object();
	for (i = 0; i < ERR__COUNT; i++) {
		if (stats.errors[i] != 0)
			json_object_set_new(errors, err_names[i],
			    json_integer((json_int_t)stats.errors[i]));
	}
	return json_pack("{s:I, s:{s:I, s:I}, s:I, s:o, "
	    "s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}, s:{s:I, s:I}, "
	    "s:I, s:I}",
	    "uptime_ms", (json_int_t)(now_ms() - stats.started_ms),
	    "connections",
	    "current", (json_int_t)stats.conns_current,
	    "total", (json_int_t)stats.conns_total,
	    "requests", (json_int_t)stats.requests,
	    "errors", errors,
	    "messages",
	    "sent", (json_int_t)stats.msgs_sent,
	    "received", (json_int_t)stats.msgs_received,
	    "put_back", (json_int_t)stats.putbacks,
	    "acked", (json_int_t)stats.acked,
	    "redelivered", (json_int_t)stats.redelivered,
	    "restored", (json_int_t)stats.restored,
	    "unacked", (json_int_t)ack_count(),
	    "lost", (json_int_t)stats.lost,
	    "bytes", "in", (json_int_t)stats.bytes_in,
	    "out", (json_int_t)stats.bytes_out,
	    "polls", (json_int_t)stats.polls,
	    "waiters", (json_int_t)waiter_count());
}
