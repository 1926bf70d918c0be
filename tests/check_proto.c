/*
 * check_proto.c - protocol v1 through a real connection (src/proto.c,
 * src/conn.c, the op handlers): request decoding and validation, reply
 * shapes, line framing, send/recv and stats.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "harness.h"

static json_int_t
int_at(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	ck_assert_msg(json_is_integer(v), "\"%s\" is not an integer", key);
	return json_integer_value(v);
}

static const char *
str_at(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	ck_assert_msg(json_is_string(v), "\"%s\" is not a string", key);
	return json_string_value(v);
}

/* The data of an invalid_params error must name the param. */
static void
assert_bad_param(const char *req, const char *id, const char *param)
{
	json_t *data = h_error(h_callj(req), id, "invalid_params");

	ck_assert_msg(data != NULL, "no data in invalid_params for %s", req);
	ck_assert_str_eq(str_at(data, "param"), param);
}

/* ---- decoding ---- */

START_TEST(test_parse_error_position)
{
	static const struct {
		const char	*line;
		int		 position;
	} cases[] = {
		{ "{", 1 },
		{ "{\"op\":\"hello\",}", 15 },
		{ "[1,2", 4 },
		{ "nope", 4 },
		{ "{\"op\":\"hello\"}}", 15 },
		{ "{\"id\":1,\"op\":\"hello\",\"id\":2}", 25 },
	};
	json_t *data;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		data = h_error(h_callj(cases[i].line), NULL, "parse_error");
		ck_assert_msg(data != NULL, "no data for %s", cases[i].line);
		ck_assert_msg(int_at(data, "position") == cases[i].position,
		    "%s: position %lld, want %d", cases[i].line,
		    (long long)int_at(data, "position"), cases[i].position);
		ck_assert_uint_eq(json_object_size(data), 1);
	}
}
END_TEST

/* Strict JSON: no \u0000 in strings, no integers beyond 64 bits. */
START_TEST(test_parse_error_strict)
{
	json_t *data;

	data = h_error(h_callj("{\"id\":1,\"op\":\"queue.send\",\"type\":1,"
	    "\"text\":\"a\\u0000b\"}"), NULL, "parse_error");
	ck_assert_ptr_nonnull(json_object_get(data, "position"));
	data = h_error(h_callj("{\"id\":99999999999999999999,\"op\":"
	    "\"hello\"}"), NULL, "parse_error");
	ck_assert_ptr_nonnull(json_object_get(data, "position"));
	ck_assert_int_eq(h_qnum(), 0);
}
END_TEST

/* A parse error's message says what jansson found. */
START_TEST(test_parse_error_message)
{
	json_t *r = h_callj("{\"op\" \"hello\"}");

	h_error(r, NULL, "parse_error");
	ck_assert_ptr_nonnull(strstr(str_at(json_object_get(r, "error"),
	    "message"), "':' expected"));
}
END_TEST

START_TEST(test_not_utf8)
{
	json_t *data;

	data = h_error(h_callj("{\"op\":\"hello\",\"id\":\"\xff\"}"), NULL,
	    "not_utf8");
	ck_assert_ptr_nonnull(data);
	ck_assert_int_eq(int_at(data, "position"), 20);
}
END_TEST

START_TEST(test_non_object_requests)
{
	static const char *lines[] = { "[]", "[{\"op\":\"hello\"}]",
	    "\"hello\"", "42", "null", "true", "1.5" };
	size_t i;

	for (i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		ck_assert_ptr_null(h_error(h_callj(lines[i]), NULL,
		    "invalid_request"));
}
END_TEST

START_TEST(test_bad_id)
{
	static const char *lines[] = {
		"{\"id\":1.5,\"op\":\"hello\"}",
		"{\"id\":null,\"op\":\"hello\"}",
		"{\"id\":true,\"op\":\"hello\"}",
		"{\"id\":[1],\"op\":\"hello\"}",
		"{\"id\":{\"a\":1},\"op\":\"hello\"}",
		/* 65 bytes */
		"{\"id\":\"0123456789012345678901234567890123456789"
		    "0123456789012345678901234\",\"op\":\"hello\"}",
		/* 33 two-byte characters: 66 bytes */
		"{\"id\":\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
		    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
		    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
		    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
		    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\","
		    "\"op\":\"hello\"}",
	};
	json_t *data;
	size_t i;

	for (i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		/* the id is not echoed: it is not a valid id */
		data = h_error(h_callj(lines[i]), NULL, "invalid_request");
		ck_assert_msg(data != NULL, "no data for %s", lines[i]);
		ck_assert_str_eq(str_at(data, "param"), "id");
	}
}
END_TEST

START_TEST(test_missing_op)
{
	json_t *data;

	data = h_error(h_callj("{\"id\":3}"), "3", "invalid_request");
	ck_assert_str_eq(str_at(data, "param"), "op");
	data = h_error(h_callj("{\"id\":4,\"op\":5}"), "4", "invalid_request");
	ck_assert_str_eq(str_at(data, "param"), "op");
	data = h_error(h_callj("{\"id\":\"x\",\"op\":null}"), "\"x\"",
	    "invalid_request");
	ck_assert_str_eq(str_at(data, "param"), "op");
	data = h_error(h_callj("{}"), NULL, "invalid_request");
	ck_assert_str_eq(str_at(data, "param"), "op");
}
END_TEST

START_TEST(test_unknown_op)
{
	char line[256], want[65];
	json_t *data;

	data = h_error(h_callj("{\"id\":\"u1\",\"op\":\"frobnicate\"}"),
	    "\"u1\"", "unknown_op");
	ck_assert_str_eq(str_at(data, "op"), "frobnicate");
	ck_assert_uint_eq(json_object_size(data), 1);

	/* case matters */
	data = h_error(h_callj("{\"id\":2,\"op\":\"HELLO\"}"), "2",
	    "unknown_op");
	ck_assert_str_eq(str_at(data, "op"), "HELLO");

	/* a long name comes back cut to 64 bytes */
	memset(want, 'z', 64);
	want[64] = '\0';
	snprintf(line, sizeof(line), "{\"id\":3,\"op\":\"%s%s\"}", want,
	    "zzzzzzzzzz");
	data = h_error(h_callj(line), "3", "unknown_op");
	ck_assert_str_eq(str_at(data, "op"), want);
}
END_TEST

START_TEST(test_invalid_params_unknown)
{
	assert_bad_param("{\"id\":1,\"op\":\"hello\",\"bogus\":1}", "1",
	    "bogus");
	assert_bad_param("{\"id\":2,\"op\":\"stats\",\"queue\":\"default\"}",
	    "2", "queue");
	assert_bad_param("{\"id\":3,\"op\":\"queue.send\",\"type\":1,"
	    "\"text\":\"x\",\"encoding\":\"text\"}", "3", "encoding");
	assert_bad_param("{\"id\":4,\"op\":\"queue.recv\",\"text\":\"x\"}",
	    "4", "text");
	assert_bad_param("{\"op\":\"queue.list\",\"ID\":5}", NULL, "ID");
}
END_TEST

START_TEST(test_invalid_params_mistyped)
{
	json_t *r;

	assert_bad_param("{\"id\":1,\"op\":\"hello\",\"proto\":\"1\"}", "1",
	    "proto");
	assert_bad_param("{\"id\":2,\"op\":\"queue.send\",\"type\":\"1\","
	    "\"text\":\"x\"}", "2", "type");
	assert_bad_param("{\"id\":3,\"op\":\"queue.send\",\"type\":1.0,"
	    "\"text\":\"x\"}", "3", "type");
	assert_bad_param("{\"id\":4,\"op\":\"queue.send\",\"type\":1,"
	    "\"text\":5}", "4", "text");
	assert_bad_param("{\"id\":5,\"op\":\"queue.recv\",\"except\":1,"
	    "\"type\":1}", "5", "except");
	assert_bad_param("{\"id\":6,\"op\":\"queue.stat\",\"queue\":null}",
	    "6", "queue");
	assert_bad_param("{\"id\":7,\"op\":\"queue.recv\",\"timeout_ms\":"
	    "\"10\"}", "7", "timeout_ms");

	/* the message says what the type should be */
	r = h_callj("{\"id\":8,\"op\":\"cancel\",\"consumer\":true}");
	h_error(r, "8", "invalid_params");
	ck_assert_ptr_nonnull(strstr(str_at(json_object_get(r, "error"),
	    "message"), "integer"));
	/* nothing was sent */
	ck_assert_int_eq(h_qnum(), 0);
}
END_TEST

/* Handlers' own checks name the param too. */
START_TEST(test_invalid_params_values)
{
	assert_bad_param("{\"id\":1,\"op\":\"queue.send\",\"type\":0,"
	    "\"text\":\"x\"}", "1", "type");
	assert_bad_param("{\"id\":2,\"op\":\"queue.send\",\"text\":\"x\"}",
	    "2", "type");
	assert_bad_param("{\"id\":3,\"op\":\"queue.send\",\"type\":1}", "3",
	    "text");
	assert_bad_param("{\"id\":4,\"op\":\"queue.send\",\"type\":1,"
	    "\"text\":\"x\",\"data_b64\":\"eA==\"}", "4", "data_b64");
	assert_bad_param("{\"id\":5,\"op\":\"queue.send\",\"type\":1,"
	    "\"data_b64\":\"eA\"}", "5", "data_b64");
	assert_bad_param("{\"id\":6,\"op\":\"queue.send\",\"type\":1,"
	    "\"text\":\"x\",\"timeout_ms\":-1}", "6", "timeout_ms");
	assert_bad_param("{\"id\":7,\"op\":\"queue.recv\",\"type\":1,"
	    "\"type_max\":2}", "7", "type_max");
	assert_bad_param("{\"id\":8,\"op\":\"queue.recv\",\"type\":-1}", "8",
	    "type");
	assert_bad_param("{\"id\":9,\"op\":\"queue.recv\",\"type_max\":0}",
	    "9", "type_max");
	assert_bad_param("{\"id\":10,\"op\":\"queue.recv\",\"except\":true}",
	    "10", "except");
	assert_bad_param("{\"id\":11,\"op\":\"queue.recv\",\"encoding\":"
	    "\"utf8\"}", "11", "encoding");
	assert_bad_param("{\"id\":12,\"op\":\"queue.recv\",\"timeout_ms\":"
	    "300001}", "12", "timeout_ms");
	assert_bad_param("{\"id\":13,\"op\":\"cancel\"}", "13", "target");
	assert_bad_param("{\"id\":14,\"op\":\"cancel\",\"consumer\":0}", "14",
	    "consumer");
	ck_assert_int_eq(h_qnum(), 0);
}
END_TEST

START_TEST(test_id_echo)
{
	static const char *ids[] = { "0", "42", "-7", "9007199254740993",
	    "\"\"", "\"abc\"", "\"\xc3\xa9t\xc3\xa9\"", "\"a\\nb\"",
	    /* exactly 64 bytes */
	    "\"0123456789012345678901234567890123456789012345678901234567890123\"",
	};
	char line[256];
	size_t i;

	for (i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		snprintf(line, sizeof(line), "{\"id\":%s,\"op\":\"queue.list\"}",
		    ids[i]);
		h_result(h_callj(line), ids[i]);
		/* errors echo it as well */
		snprintf(line, sizeof(line), "{\"op\":\"nope\",\"id\":%s}",
		    ids[i]);
		h_error(h_callj(line), ids[i], "unknown_op");
	}
	/* no id in, no id out */
	h_result(h_callj("{\"op\":\"queue.list\"}"), NULL);
	h_error(h_callj("{\"op\":\"nope\"}"), NULL, "unknown_op");
}
END_TEST

/* The exact bytes of an error and a result reply. */
START_TEST(test_reply_shape)
{
	json_t *r, *e, *res;
	const char *k;
	json_t *v;

	r = h_callj("{\"id\":7,\"op\":\"queue.stat\",\"queue\":\"nope\"}");
	ck_assert_uint_eq(json_object_size(r), 2);
	ck_assert_int_eq(int_at(r, "id"), 7);
	e = json_object_get(r, "error");
	ck_assert_uint_eq(json_object_size(e), 3);
	ck_assert_str_eq(str_at(e, "code"), "not_found");
	ck_assert_ptr_nonnull(strstr(str_at(e, "message"), "nope"));
	ck_assert(json_equal(json_object_get(e, "data"),
	    h_json("{\"queue\":\"nope\"}")));

	/* without data there is no "data" member at all */
	e = json_object_get(h_callj("42"), "error");
	ck_assert_uint_eq(json_object_size(e), 2);
	ck_assert_ptr_null(json_object_get(e, "data"));

	/* a line: compact JSON, one per reply */
	ck_assert_str_eq(h_call("{\"op\":\"queue.send\",\"type\":3,"
	    "\"text\":\"hi\",\"id\":\"s\"}"),
	    "{\"id\":\"s\",\"result\":{\"queue\":\"default\",\"type\":3,"
	    "\"bytes\":2}}");

	r = h_callj("{\"op\":\"hello\",\"id\":1}");
	res = h_result(r, "1");
	ck_assert_str_eq(str_at(res, "server"), "ipcbridge");
	ck_assert_int_eq(int_at(res, "protocol"), 1);
	ck_assert(json_equal(json_object_get(res, "queues"),
	    h_json("[\"default\"]")));
	ck_assert(json_equal(json_object_get(res, "ops"),
	    h_json("[\"hello\",\"stats\",\"cancel\",\"queue.send\","
	    "\"queue.recv\",\"queue.consume\",\"queue.stat\",\"queue.list\","
	    "\"queue.ack\",\"queue.nack\",\"shm.put\",\"shm.get\",\"shm.has\",\"shm.del\",\"shm.vars\",\"shm.clear\","
	    "\"shm.stat\",\"shm.list\"]")));
	json_object_foreach(json_object_get(res, "limits"), k, v)
		ck_assert_msg(json_is_integer(v), "limits.%s", k);
	ck_assert_int_eq(int_at(json_object_get(res, "limits"),
	    "max_waits_per_conn"), MAX_PARKED_PER_CONN);
	ck_assert_int_eq(int_at(json_object_get(res, "peer"), "pid"),
	    getpid());
}
END_TEST

START_TEST(test_hello_protocol)
{
	json_t *data;

	h_result(h_callj("{\"id\":1,\"op\":\"hello\",\"proto\":1}"), "1");
	data = h_error(h_callj("{\"id\":2,\"op\":\"hello\",\"proto\":2}"), "2",
	    "unsupported_protocol");
	ck_assert_int_eq(int_at(data, "supported"), 1);
	h_error(h_callj("{\"id\":3,\"op\":\"hello\",\"proto\":0}"), "3",
	    "unsupported_protocol");
}
END_TEST

START_TEST(test_unknown_queue)
{
	json_t *data;

	data = h_error(h_callj("{\"id\":1,\"op\":\"queue.send\",\"queue\":"
	    "\"jobs\",\"type\":1,\"text\":\"x\"}"), "1", "not_found");
	ck_assert_str_eq(str_at(data, "queue"), "jobs");
	data = h_error(h_callj("{\"id\":2,\"op\":\"queue.recv\",\"queue\":"
	    "\"jobs\"}"), "2", "not_found");
	ck_assert_str_eq(str_at(data, "queue"), "jobs");
}
END_TEST

/* ---- line framing ---- */

START_TEST(test_blank_and_comment_lines)
{
	static const char in[] = "\n   \n\t\n# a comment\n  # indented\n"
	    "\t#x\n\r\n \r\n#{\"id\":9,\"op\":\"hello\"}\n"
	    "{\"id\":1,\"op\":\"stats\"}\n";
	json_t *res;

	h_write(0, in, sizeof(in) - 1);
	res = h_result(h_readj(0), "1");
	/* only the stats request counted; nothing else was answered */
	ck_assert_int_eq(int_at(res, "requests"), 1);
	ck_assert(json_equal(json_object_get(res, "errors"), h_json("{}")));
	ck_assert(!h_has_line(0));
}
END_TEST

START_TEST(test_crlf)
{
	static const char in[] = "{\"id\":1,\"op\":\"queue.list\"}\r\n"
	    "{\"id\":2,\"op\":\"queue.send\",\"type\":1,\"text\":\"a\"}\r\n";
	json_t *res;
	char buf[8];
	long type;

	h_write(0, in, sizeof(in) - 1);
	h_result(h_readj(0), "1");
	res = h_result(h_readj(0), "2");
	/* the \r is not part of the message */
	ck_assert_int_eq(int_at(res, "bytes"), 1);
	ck_assert_int_eq(h_sysv_recv(0, &type, buf, sizeof(buf)), 1);
	ck_assert_int_eq(buf[0], 'a');
}
END_TEST

static int
bytes_in_at_least(void *arg)
{
	return stats.bytes_in >= *(size_t *)arg;
}

/* A request split over writes is answered once its newline arrives;
 * several in one write are answered in order. */
START_TEST(test_partial_and_pipelined_lines)
{
	static const char part1[] = "{\"id\":1,\"op\":";
	static const char part2[] = "\"queue.list\"}\n{\"id\":2,\"op\":\"hello\"}"
	    "\n{\"id\":3,\"op\":\"stats\"}\n";
	size_t n = sizeof(part1) - 1;

	h_write(0, part1, n);
	ck_assert(h_run_until(bytes_in_at_least, &n, H_TIMEOUT_MS));
	ck_assert(!h_has_line(0));
	ck_assert_uint_eq(stats.requests, 0);
	h_write(0, part2, sizeof(part2) - 1);
	h_result(h_readj(0), "1");
	h_result(h_readj(0), "2");
	h_result(h_readj(0), "3");
}
END_TEST

/* More lines in one write than the daemon handles per read pass: all are
 * answered, in order. */
START_TEST(test_many_pipelined_lines)
{
	char *in, id[16];
	size_t len = 0;
	int i;

	in = malloc(200 * 64);
	ck_assert_ptr_nonnull(in);
	for (i = 0; i < 200; i++)
		len += (size_t)sprintf(in + len, "{\"id\":%d,\"op\":"
		    "\"queue.list\"}\n", i);
	h_write(0, in, len);
	free(in);
	for (i = 0; i < 200; i++) {
		snprintf(id, sizeof(id), "%d", i);
		h_result(h_readj(0), id);
	}
	ck_assert(!h_has_line(0));
}
END_TEST

/*
 * A long pipeline on one connection does not starve another: the daemon
 * handles 64 lines and then lets others in (conn.c, LINES_PER_READ). Here
 * client b's request arrives once the daemon has answered client 0's
 * first batch, while client 0 still has over 200 lines waiting; the order
 * of the messages on the queue shows when b was served.
 */
#define PIPELINE	300

static void
send_b(void *arg)
{
	h_sendc(*(int *)arg, "{\"id\":\"b\",\"op\":\"queue.send\","
	    "\"type\":1,\"text\":\"b\"}");
}

START_TEST(test_pipeline_does_not_starve_others)
{
	char *in, id[16], buf[16];
	size_t len = 0;
	int i, pos = -1, b = h_connect();
	long type;

	in = malloc(PIPELINE * 80);
	ck_assert_ptr_nonnull(in);
	for (i = 0; i < PIPELINE; i++)
		len += (size_t)sprintf(in + len, "{\"id\":%d,\"op\":"
		    "\"queue.send\",\"type\":1,\"text\":\"a\"}\n", i);
	h_on_data(0, send_b, &b);
	h_write(0, in, len);
	free(in);
	h_result(h_readj(b), "\"b\"");
	for (i = 0; i < PIPELINE; i++) {
		snprintf(id, sizeof(id), "%d", i);
		h_result(h_readj(0), id);
	}
	for (i = 0; i <= PIPELINE; i++) {
		ck_assert_int_eq(h_sysv_recv(0, &type, buf, sizeof(buf)), 1);
		if (buf[0] == 'b')
			pos = i;
	}
	ck_assert_int_eq(h_qnum(), 0);
	ck_assert_msg(pos >= 0 && pos < PIPELINE, "client b was served after "
	    "all %d lines of client 0 (position %d)", PIPELINE, pos);
}
END_TEST

/* Over max_conns a client gets one busy line and is closed. */
START_TEST(test_busy)
{
	int b;

	h_cfg->max_conns = 1;
	b = h_connect();
	ck_assert_ptr_null(h_error(h_readj(b), NULL, "busy"));
	ck_assert_ptr_null(h_read(b, H_TIMEOUT_MS));
	ck_assert(h_eof(b));
	ck_assert_int_eq(conns_count, 1);
	ck_assert_uint_eq(stats.errors[ERR_BUSY], 1);
	/* the first client is served as before */
	h_result(h_callj("{\"id\":1,\"op\":\"queue.list\"}"), "1");
}
END_TEST

/* While only part of a line has come, the daemon waits for the rest
 * without spinning, and serves other clients meanwhile. */
START_TEST(test_partial_line_leaves_daemon_idle)
{
	static const char part[] = "{\"id\":1,\"op\":\"queue.list\"";
	size_t n = sizeof(part) - 1;
	int b = h_connect();

	h_write(0, part, n);
	ck_assert(h_run_until(bytes_in_at_least, &n, H_TIMEOUT_MS));
	ck_assert_msg(h_idle(), "the daemon keeps an event active (busy "
	    "loop) while a partial line waits for its newline");
	h_result(h_callcj(b, "{\"id\":2,\"op\":\"queue.list\"}"), "2");
	h_write(0, "}\n", 2);
	h_result(h_readj(0), "1");
	ck_assert(h_idle());
}
END_TEST

/* The last line may come without its newline when the client is done. */
START_TEST(test_last_line_without_newline)
{
	static const char in[] = "{\"id\":1,\"op\":\"queue.list\"}";

	h_write(0, in, sizeof(in) - 1);
	h_close_write(0);
	h_result(h_readj(0), "1");
	/* then the daemon closes its side: all was answered */
	ck_assert_ptr_null(h_read(0, H_TIMEOUT_MS));
	ck_assert(h_eof(0));
	ck_assert_int_eq(conns_count, 0);
}
END_TEST

START_TEST(test_line_too_long)
{
	char *big;
	size_t n = 3000;

	h_cfg->max_line_bytes = 1024;
	big = malloc(n + 1);
	ck_assert_ptr_nonnull(big);
	memset(big, ' ', n);
	memcpy(big, "{\"id\":1,\"op\":\"hello\",\"x\":\"", 26);
	big[n - 2] = '"';
	big[n - 1] = '}';
	big[n] = '\0';
	h_send(big);
	free(big);
	ck_assert_ptr_null(h_error(h_readj(0), NULL, "line_too_long"));
	/* the connection goes on */
	h_result(h_callj("{\"id\":2,\"op\":\"queue.list\"}"), "2");
}
END_TEST

/* An overlong line that comes in pieces is discarded as it comes, and
 * answered once, when its newline arrives or the input ends. */
START_TEST(test_line_too_long_in_pieces)
{
	char chunk[1500];
	size_t n = sizeof(chunk);

	h_cfg->max_line_bytes = 1024;
	memset(chunk, 'x', sizeof(chunk));
	h_write(0, chunk, sizeof(chunk));
	ck_assert(h_run_until(bytes_in_at_least, &n, H_TIMEOUT_MS));
	ck_assert(!h_has_line(0));
	h_write(0, chunk, sizeof(chunk));
	h_write(0, "\n{\"id\":1,\"op\":\"queue.list\"}\n", 29);
	h_error(h_readj(0), NULL, "line_too_long");
	h_result(h_readj(0), "1");

	/* ended by the end of the input instead */
	h_write(0, chunk, sizeof(chunk));
	h_close_write(0);
	h_error(h_readj(0), NULL, "line_too_long");
	ck_assert_ptr_null(h_read(0, H_TIMEOUT_MS));
	ck_assert(h_eof(0));
	ck_assert_uint_eq(stats.errors[ERR_LINE_TOO_LONG], 2);
	ck_assert_uint_eq(stats.requests, 1);
}
END_TEST

/* ---- send and recv ---- */

START_TEST(test_send_recv_text)
{
	json_t *res, *msg;
	char buf[64];
	long type;

	res = h_result(h_callj("{\"id\":1,\"op\":\"queue.send\",\"type\":5,"
	    "\"text\":\"h\xc3\xa9llo\"}"), "1");
	ck_assert(json_equal(res, h_json("{\"queue\":\"default\",\"type\":5,"
	    "\"bytes\":6}")));
	ck_assert_int_eq(h_qnum(), 1);

	res = h_result(h_callj("{\"id\":2,\"op\":\"queue.recv\",\"type\":5}"),
	    "2");
	ck_assert_uint_eq(json_object_size(res), 2);
	ck_assert(json_is_false(json_object_get(res, "timed_out")));
	msg = json_object_get(res, "msg");
	ck_assert(json_equal(msg, h_json("{\"queue\":\"default\",\"type\":5,"
	    "\"bytes\":6,\"text\":\"h\xc3\xa9llo\"}")));
	ck_assert_int_eq(h_qnum(), 0);

	/* a worker's message, and the daemon's message seen by a worker */
	h_sysv_send(9, "from worker", 11);
	res = h_result(h_callj("{\"id\":3,\"op\":\"queue.recv\"}"), "3");
	ck_assert(json_equal(json_object_get(res, "msg"),
	    h_json("{\"queue\":\"default\",\"type\":9,\"bytes\":11,"
	    "\"text\":\"from worker\"}")));
	h_result(h_callj("{\"id\":4,\"op\":\"queue.send\",\"queue\":\"default\","
	    "\"type\":77,\"text\":\"to worker\"}"), "4");
	ck_assert_int_eq(h_sysv_recv(0, &type, buf, sizeof(buf)), 9);
	ck_assert_int_eq(type, 77);
	ck_assert_mem_eq(buf, "to worker", 9);
}
END_TEST

START_TEST(test_send_recv_binary)
{
	static const unsigned char bin[] = { 0, 1, 2, 0xff, 0x80, 0 };
	json_t *res, *msg;
	char buf[64];
	long type;

	res = h_result(h_callj("{\"id\":1,\"op\":\"queue.send\",\"type\":2,"
	    "\"data_b64\":\"AAEC/4AA\"}"), "1");
	ck_assert_int_eq(int_at(res, "bytes"), 6);
	ck_assert_int_eq(h_sysv_recv(2, &type, buf, sizeof(buf)), 6);
	ck_assert_mem_eq(buf, bin, 6);

	/* auto: bytes that are not text come back as data_b64 */
	h_sysv_send(2, bin, sizeof(bin));
	res = h_result(h_callj("{\"id\":2,\"op\":\"queue.recv\"}"), "2");
	msg = json_object_get(res, "msg");
	ck_assert_str_eq(str_at(msg, "data_b64"), "AAEC/4AA");
	ck_assert_ptr_null(json_object_get(msg, "text"));
	ck_assert_int_eq(int_at(msg, "bytes"), 6);

	/* base64 on request, even for text */
	h_sysv_send(3, "abc", 3);
	res = h_result(h_callj("{\"id\":3,\"op\":\"queue.recv\",\"encoding\":"
	    "\"base64\"}"), "3");
	ck_assert_str_eq(str_at(json_object_get(res, "msg"), "data_b64"),
	    "YWJj");

	/* text refused for binary: the message stays on the queue */
	h_sysv_send(4, "\xff\xfe", 2);
	h_error(h_callj("{\"id\":4,\"op\":\"queue.recv\",\"encoding\":"
	    "\"text\"}"), "4", "not_utf8");
	ck_assert_int_eq(h_qnum(), 1);
	ck_assert_int_eq(h_sysv_recv(4, &type, buf, sizeof(buf)), 2);

	/* an empty message */
	res = h_result(h_callj("{\"id\":5,\"op\":\"queue.send\",\"type\":6,"
	    "\"data_b64\":\"\"}"), "5");
	ck_assert_int_eq(int_at(res, "bytes"), 0);
	res = h_result(h_callj("{\"id\":6,\"op\":\"queue.recv\"}"), "6");
	ck_assert(json_equal(json_object_get(res, "msg"),
	    h_json("{\"queue\":\"default\",\"type\":6,\"bytes\":0,"
	    "\"text\":\"\"}")));
}
END_TEST

START_TEST(test_recv_selectors)
{
	json_t *res;

	h_sysv_send(5, "five", 4);
	h_sysv_send(2, "two", 3);
	h_sysv_send(9, "nine", 4);
	/* type_max: the lowest type <= n */
	res = h_result(h_callj("{\"id\":1,\"op\":\"queue.recv\",\"type_max\":"
	    "6}"), "1");
	ck_assert_int_eq(int_at(json_object_get(res, "msg"), "type"), 2);
	/* except: the first not of that type */
	res = h_result(h_callj("{\"id\":2,\"op\":\"queue.recv\",\"type\":5,"
	    "\"except\":true}"), "2");
	ck_assert_int_eq(int_at(json_object_get(res, "msg"), "type"), 9);
	/* nothing of type 7: no wait, no message */
	res = h_result(h_callj("{\"id\":3,\"op\":\"queue.recv\",\"type\":7}"),
	    "3");
	ck_assert(json_equal(res, h_json("{\"msg\":null,"
	    "\"timed_out\":false}")));
	ck_assert_int_eq(h_qnum(), 1);
}
END_TEST

START_TEST(test_recv_empty_queue)
{
	json_t *res;

	res = h_result(h_callj("{\"id\":1,\"op\":\"queue.recv\"}"), "1");
	ck_assert(json_equal(res, h_json("{\"msg\":null,\"timed_out\":false}")));
}
END_TEST

/* No room: queue_full at once without timeout_ms; a message bigger than
 * the queue can ever hold: msg_too_big. */
START_TEST(test_queue_full_and_too_big)
{
	json_t *data;

	h_set_qbytes(8);
	h_result(h_callj("{\"id\":1,\"op\":\"queue.send\",\"type\":1,"
	    "\"text\":\"12345678\"}"), "1");
	ck_assert_ptr_null(h_error(h_callj("{\"id\":2,\"op\":\"queue.send\","
	    "\"type\":1,\"text\":\"x\"}"), "2", "queue_full"));
	ck_assert_ptr_null(h_error(h_callj("{\"id\":3,\"op\":\"queue.send\","
	    "\"type\":1,\"text\":\"123456789\"}"), "3", "msg_too_big"));
	ck_assert_int_eq(h_qnum(), 1);
	/* over msgmax: with bytes and max */
	{
		size_t max = ipcb_msgmax(), n = max + 1;
		char *line = malloc(n + 64);

		ck_assert_ptr_nonnull(line);
		n = (size_t)sprintf(line, "{\"id\":4,\"op\":\"queue.send\","
		    "\"type\":1,\"text\":\"");
		memset(line + n, 'a', max + 1);
		strcpy(line + n + max + 1, "\"}");
		data = h_error(h_callj(line), "4", "msg_too_big");
		free(line);
		ck_assert_int_eq(json_integer_value(json_object_get(data,
		    "bytes")), (json_int_t)max + 1);
		ck_assert_int_eq(json_integer_value(json_object_get(data,
		    "max")), (json_int_t)max);
	}
}
END_TEST

/* The send reply is written by hand: byte for byte jansson's, for every
 * kind of id (escaped ones take jansson's path) and type. */
START_TEST(test_send_reply_bytes)
{
	static const char *ids[] = { NULL, "0", "-1", "7", "9223372036854775807",
	    "-9223372036854775808", "\"\"", "\"s\"", "\"a/b\"", "\"\\u00e9\"",
	    "\"\\ud83d\\ude00\"", "\"\\u007f\"", "\"a\\\"b\"", "\"\\\\\"",
	    "\"\\n\"", "\"\\u0001x\"", "\"\\t\"", "\"<>&'\"",
	    "\"0123456789012345678901234567890123456789012345678901234567890123\"" };
	static const char *types[] = { "1", "3", "2147483648",
	    "9223372036854775807" };
	char line[256], *want;
	json_t *exp;
	size_t i, t;
	long type;
	char buf[16];

	for (i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		for (t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
			if (ids[i] != NULL)
				snprintf(line, sizeof(line), "{\"id\":%s,\"op\":"
				    "\"queue.send\",\"type\":%s,\"text\":\"abc\"}",
				    ids[i], types[t]);
			else
				snprintf(line, sizeof(line), "{\"op\":\"queue."
				    "send\",\"type\":%s,\"text\":\"abc\"}",
				    types[t]);
			exp = json_object();
			if (ids[i] != NULL)
				json_object_set(exp, "id", h_json(ids[i]));
			json_object_set_new(exp, "result", json_pack(
			    "{s:s, s:O, s:i}", "queue", "default", "type",
			    h_json(types[t]), "bytes", 3));
			want = json_dumps(exp, JSON_COMPACT);
			json_decref(exp);
			ck_assert_str_eq(h_call(line), want);
			free(want);
			ck_assert_int_eq(h_sysv_recv(0, &type, buf,
			    sizeof(buf)), 3);
		}
	}
}
END_TEST

/* The daemon's way (conn_defer_flush): replies to what a loop pass read
 * wait for conns_flush_deferred(), on every connection; a connection
 * closed meanwhile leaves the list. */
START_TEST(test_deferred_replies)
{
	static const char req[] = "{\"id\":1,\"op\":\"queue.send\",\"type\":1,"
	    "\"text\":\"a\"}\n{\"id\":2,\"op\":\"queue.send\",\"type\":1,"
	    "\"text\":\"b\"}\n";
	int c1 = h_connect(), c2 = h_connect(), i;
	char *line;

	conn_defer_flush = 1;
	h_write(0, req, sizeof(req) - 1);
	h_write(c1, req, sizeof(req) - 1);
	h_write(c2, req, sizeof(req) - 1);
	for (i = 0; i < 5; i++)
		event_base_loop(base, EVLOOP_NONBLOCK);
	ck_assert_int_eq(h_qnum(), 6);		/* all done, */
	ck_assert_int_eq(h_lines_buffered(0), 0);	/* none answered */
	ck_assert(!h_has_line(c1));
	h_close(c2);				/* gone meanwhile */
	for (i = 0; i < 5; i++)
		event_base_loop(base, EVLOOP_NONBLOCK);
	conns_flush_deferred();
	conn_defer_flush = 0;
	for (i = 0; i < 2; i++) {
		line = h_read(0, H_TIMEOUT_MS);
		ck_assert_ptr_nonnull(line);
		ck_assert_ptr_nonnull(strstr(line, i ? "\"id\":2" : "\"id\":1"));
		line = h_read(c1, H_TIMEOUT_MS);
		ck_assert_ptr_nonnull(line);
		ck_assert_ptr_nonnull(strstr(line, i ? "\"id\":2" : "\"id\":1"));
	}
	/* and immediate again */
	ck_assert_ptr_nonnull(strstr(h_call("{\"id\":3,\"op\":\"hello\"}"),
	    "\"id\":3"));
}
END_TEST

/* ---- data_b64 kept out of the DOM (proto_line's fast path) ---- */

/* What a line did: its reply and the message it queued (len -1: none). */
struct outcome {
	char	*reply;
	long	 type;
	ssize_t	 len;
	char	 msg[8192];
};

static void
run_line(const char *line, size_t big, struct outcome *o)
{
	size_t keep = proto_big_line;

	proto_big_line = big;
	o->reply = h_call(line);
	proto_big_line = keep;
	ck_assert_msg(o->reply != NULL, "no reply to %.100s", line);
	o->len = h_sysv_recv(0, &o->type, o->msg, sizeof(o->msg));
}

/*
 * The line gives the same reply, byte for byte, and queues the same
 * message with the fast path tried (threshold 0) as without it; returns
 * whether the fast path was taken.
 */
static void
same_outcome(const char *line, const char *how, struct outcome *slow,
    struct outcome *fast)
{
	ck_assert_msg(strcmp(slow->reply, fast->reply) == 0,
	    "%.120s\n  without %s: %s\n  with it: %s", line, how,
	    slow->reply, fast->reply);
	ck_assert_msg(slow->len == fast->len, "%.120s: queued %zd bytes, "
	    "with %s %zd", line, slow->len, how, fast->len);
	if (slow->len > 0) {
		ck_assert_int_eq(slow->type, fast->type);
		ck_assert_mem_eq(slow->msg, fast->msg, (size_t)slow->len);
	}
}

static int
same_both_ways(const char *line)
{
	static struct outcome slow, fast;
	uint64_t before;

	run_line(line, SIZE_MAX, &slow);
	before = proto_fast_lines;
	run_line(line, 0, &fast);
	same_outcome(line, "the fast path", &slow, &fast);
	return proto_fast_lines > before;
}

/* The same for load_flat: jansson alone, then with flat lines parsed by
 * load_flat; returns whether load_flat took the line. */
static int
same_flat_or_not(const char *line)
{
	static struct outcome slow, fast;
	uint64_t before;

	proto_flat = 0;
	run_line(line, SIZE_MAX, &slow);
	proto_flat = 1;
	before = proto_flat_lines;
	run_line(line, SIZE_MAX, &fast);
	same_outcome(line, "load_flat", &slow, &fast);
	return proto_flat_lines > before;
}

/*
 * Whole requests, replies and queued messages compared: hot shapes and
 * every kind of error that happens after parsing, which load_flat's DOM
 * must lead to exactly as jansson's does (order of members decides which
 * bad param is named first).
 */
START_TEST(test_flat_path_same_replies)
{
	static const char *taken[] = {
		"{\"op\":\"queue.send\",\"type\":1,\"text\":\"hello\"}",
		"{\"id\":9,\"op\":\"queue.send\",\"queue\":\"jobs\","
		    "\"type\":123456789012,\"text\":\"x y\"}",
		"{\"id\":\"a\",\"op\":\"queue.send\",\"type\":2,"
		    "\"data_b64\":\"AAEC\"}",
		"{\"op\":\"queue.send\",\"type\":3,\"value\":17}",
		"{\"op\":\"queue.send\",\"type\":3,\"value\":null}",
		"{\"op\":\"queue.recv\",\"type\":-3,\"except\":false}",
		"{\"op\":\"queue.send\",\"type\":0,\"text\":\"x\"}",
		"{\"op\":\"queue.send\",\"type\":-1,\"text\":\"x\"}",
		"{\"op\":\"queue.send\",\"text\":\"no type\"}",
		"{\"op\":\"queue.send\",\"type\":1,\"text\":1}",
		"{\"op\":\"queue.send\",\"type\":\"1\",\"text\":\"x\"}",
		"{\"op\":\"queue.send\",\"type\":1,\"text\":\"x\","
		    "\"data_b64\":\"AAAA\"}",
		"{\"op\":\"queue.send\",\"type\":1,\"data_b64\":\"AAA\"}",
		"{\"op\":\"queue.send\",\"b\":1,\"a\":true}",
		"{\"op\":\"queue.send\",\"a\":true,\"b\":1}",
		"{\"op\":\"queue.send\",\"queue\":\"nope\",\"type\":1,"
		    "\"text\":\"x\"}",
		"{\"id\":true,\"op\":\"hello\"}",
		"{\"id\":null,\"op\":\"hello\"}",
		"{\"op\":null}",
		"{\"op\":\"no.such\"}",
		"{}",
		"{\"op\":\"hello\",\"proto\":1}",
		"{\"op\":\"shm.list\"}",
		"{\"op\":\"queue.send\",\"type\":1,\"text\":\"caf\xc3\xa9\"}",
	};
	static const char *left[] = {
		"{\"op\":\"queue.send\",\"type\":1,\"text\":\"caf\xc3\"}",
		"{\"op\":\"queue.send\",\"type\":1,\"text\":\"a\\nb\"}",
		"{\"op\":\"queue.send\",\"type\":1.5,\"text\":\"x\"}",
		"{\"op\":\"queue.send\",\"type\":1,\"value\":[1,{}]}",
		"{\"op\":\"queue.send\",\"type\":1,\"type\":2}",
		"{\"op\":\"queue.send\",\"type\":99999999999999999999}",
		"{\"op\":\"queue.send\",\"type\":1,\"text\":\"x\"",
		"{\"op\":\"queue.send\",\"type\":01}",
		/* more members than proto_line keeps on its stack */
		"{\"op\":\"queue.send\",\"type\":1,\"text\":\"x\",\"a\":1,"
		    "\"b\":1,\"c\":1,\"d\":1,\"e\":1,\"f\":1,\"g\":1,\"h\":1,"
		    "\"i\":1,\"j\":1,\"k\":1,\"l\":1,\"m\":1,\"n\":1}",
	};
	size_t i;

	for (i = 0; i < sizeof(taken) / sizeof(taken[0]); i++)
		ck_assert_msg(same_flat_or_not(taken[i]), "not taken: %s",
		    taken[i]);
	for (i = 0; i < sizeof(left) / sizeof(left[0]); i++)
		ck_assert_msg(!same_flat_or_not(left[i]), "taken: %s",
		    left[i]);
}
END_TEST

/* 48 bytes 0..47 in base64 */
#define B64_48	"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKiss" \
		"LS4v"

START_TEST(test_b64_fast_path_taken)
{
	char want[48];
	int i;

	for (i = 0; i < 48; i++)
		want[i] = (char)i;
	ck_assert(same_both_ways("{\"id\":1,\"op\":\"queue.send\",\"type\":2,"
	    "\"data_b64\":\"" B64_48 "\"}"));
	/* whitespace around the colon, commas and braces */
	ck_assert(same_both_ways(" { \"id\" : 1 ,\t\"op\":\"queue.send\" , "
	    "\"data_b64\"  :\t \"" B64_48 "\"\r , \"type\" : 2 }  "));
	/* members before and after, nested values to skip */
	ck_assert(same_both_ways("{\"id\":\"a}\\\"\",\"op\":\"queue.send\","
	    "\"timeout_ms\":0,\"type\":3,\"data_b64\":\"" B64_48 "\"}"));
	ck_assert(same_both_ways("{\"op\":\"queue.send\",\"type\":2,"
	    "\"data_b64\":\"\"}"));		/* empty */

	/* and what it queued is the decoded bytes */
	h_call("{\"op\":\"queue.send\",\"type\":9,\"data_b64\":\"" B64_48
	    "\"}");
	{
		char buf[64];
		long type;

		ck_assert_int_eq(h_sysv_recv(9, &type, buf, sizeof(buf)), 48);
		ck_assert_mem_eq(buf, want, 48);
	}
}
END_TEST

/* A data_b64 that is not the request's own member is left alone. */
START_TEST(test_b64_fast_path_nested_or_quoted)
{
	/* nested in another object or array */
	ck_assert(!same_both_ways("{\"op\":\"queue.send\",\"type\":2,"
	    "\"x\":{\"data_b64\":\"" B64_48 "\"}}"));
	ck_assert(!same_both_ways("{\"op\":\"queue.send\",\"type\":2,"
	    "\"x\":[{\"a\":[]},{\"data_b64\":\"" B64_48 "\"}]}"));
	ck_assert(!same_both_ways("[{\"op\":\"queue.send\",\"type\":2,"
	    "\"data_b64\":\"" B64_48 "\"}]"));
	/* nested first, then the request's own: that one is taken */
	ck_assert(same_both_ways("{\"op\":\"queue.send\",\"type\":2,"
	    "\"x\":{\"data_b64\":\"" B64_48 "\"},\"data_b64\":\"AAAA\"}"));
	ck_assert(same_both_ways("{\"op\":\"queue.send\",\"type\":2,"
	    "\"value\":{\"data_b64\":\"AAAA\"},\"data_b64\":\"" B64_48 "\"}"));
	/* "data_b64":"..." inside another string */
	ck_assert(!same_both_ways("{\"op\":\"queue.send\",\"type\":2,"
	    "\"text\":\"\\\"data_b64\\\":\\\"" B64_48 "\\\"\"}"));
	ck_assert(!same_both_ways("{\"op\":\"queue.send\",\"type\":2,"
	    "\"data_b64x\":\"" B64_48 "\"}"));
	/* a string ending in an escaped backslash, then the real member */
	ck_assert(same_both_ways("{\"op\":\"queue.send\",\"type\":2,"
	    "\"id\":\"\\\\\",\"data_b64\":\"" B64_48 "\"}"));
	/* the key spelled with an escape is the same key to jansson */
	ck_assert(!same_both_ways("{\"op\":\"queue.send\",\"type\":2,"
	    "\"data\\u005fb64\":\"" B64_48 "\"}"));
	ck_assert(same_both_ways("{\"op\":\"queue.send\",\"type\":2,"
	    "\"data_b64\":\"" B64_48 "\",\"data\\u005fb64\":\"AAAA\"}"));
	/* data_b64 of the wrong type */
	ck_assert(!same_both_ways("{\"op\":\"queue.send\",\"type\":2,"
	    "\"data_b64\":[\"" B64_48 "\"]}"));
	ck_assert(!same_both_ways("{\"op\":\"queue.send\",\"type\":2,"
	    "\"data_b64\":48}"));
	/* and as a value */
	ck_assert(!same_both_ways("{\"op\":\"queue.send\",\"type\":2,"
	    "\"text\":\"data_b64\"}"));
}
END_TEST

START_TEST(test_b64_fast_path_duplicates)
{
	const char *r;

	ck_assert(same_both_ways("{\"op\":\"queue.send\",\"type\":2,"
	    "\"data_b64\":\"" B64_48 "\",\"data_b64\":\"" B64_48 "\"}"));
	ck_assert(same_both_ways("{\"op\":\"queue.send\",\"type\":2,"
	    "\"data_b64\":\"AAAA\",\"data_b64\":\"" B64_48 "\"}"));
	/* the error is jansson's, at the second key */
	r = h_call("{\"op\":\"queue.send\",\"type\":2,\"data_b64\":\"" B64_48
	    "\",\"data_b64\":\"AAAA\"}");
	ck_assert_ptr_nonnull(strstr(r, "duplicate object key"));
	ck_assert(same_both_ways("{\"op\":\"queue.send\",\"type\":2,"
	    "\"data_b64\":\"" B64_48 "\",\"text\":\"x\"}"));
	ck_assert(same_both_ways("{\"op\":\"queue.send\",\"type\":2,"
	    "\"text\":\"x\",\"data_b64\":\"" B64_48 "\"}"));
}
END_TEST

/* Escapes, control characters and non-ASCII bytes in the value take the
 * ordinary path: their errors (or their meaning) are jansson's. */
START_TEST(test_b64_fast_path_escapes)
{
	ck_assert(!same_both_ways("{\"op\":\"queue.send\",\"type\":2,"
	    "\"data_b64\":\"AAEC\\/w==\"}"));	/* "\/" is '/' */
	ck_assert(!same_both_ways("{\"op\":\"queue.send\",\"type\":2,"
	    "\"data_b64\":\"\\u0041AAA\"}"));	/* "AAAA" */
	ck_assert(!same_both_ways("{\"op\":\"queue.send\",\"type\":2,"
	    "\"data_b64\":\"AA\\\"A\"}"));
	ck_assert(!same_both_ways("{\"op\":\"queue.send\",\"type\":2,"
	    "\"data_b64\":\"AAA\\n\"}"));
	ck_assert(!same_both_ways("{\"op\":\"queue.send\",\"type\":2,"
	    "\"data_b64\":\"AAA\\u00\"}"));	/* a bad escape */
	ck_assert(!same_both_ways("{\"op\":\"queue.send\",\"type\":2,"
	    "\"data_b64\":\"AAA\\\\\"}"));
	ck_assert(!same_both_ways("{\"op\":\"queue.send\",\"type\":2,"
	    "\"data_b64\":\"AA\x01" "A\"}"));	/* control: parse_error */
	ck_assert(!same_both_ways("{\"op\":\"queue.send\",\"type\":2,"
	    "\"data_b64\":\"AA\tA\"}"));
	ck_assert(!same_both_ways("{\"op\":\"queue.send\",\"type\":2,"
	    "\"data_b64\":\"AA\xc3\xa9\"}"));	/* UTF-8: bad base64 */
	ck_assert(!same_both_ways("{\"op\":\"queue.send\",\"type\":2,"
	    "\"data_b64\":\"AA\xff" "A\"}"));	/* not UTF-8 */
	ck_assert(!same_both_ways("{\"op\":\"queue.send\",\"type\":2,"
	    "\"data_b64\":\"AAAA"));		/* unterminated */
	/* printable ASCII that is not base64: fast, and invalid_params */
	ck_assert(same_both_ways("{\"op\":\"queue.send\",\"type\":2,"
	    "\"data_b64\":\"AA A\"}"));
	ck_assert(same_both_ways("{\"op\":\"queue.send\",\"type\":2,"
	    "\"data_b64\":\"AA~\x7f\"}"));
}
END_TEST

/* Errors in the rest of the line: the same error at the same position
 * (jansson never saw the skipped bytes, the position is moved back). */
START_TEST(test_b64_fast_path_errors_after)
{
	static const char *tails[] = {
		"}}", "", ",}", ",\"type\":tru}", " \"type\":2}", ",\"x\":[}",
		",\"id\":\"\xff\"}", ",\"id\":1.5e99999}", "}x", ",,}",
		",\"op\":\"x\"}", ",\"type\":2,\"type\":3}",
	};
	char line[512];
	size_t i;

	for (i = 0; i < sizeof(tails) / sizeof(tails[0]); i++) {
		snprintf(line, sizeof(line), "{\"id\":4,\"op\":\"queue.send\","
		    "\"data_b64\":\"" B64_48 "\"%s", tails[i]);
		same_both_ways(line);
	}
	/* a parse error past the skipped bytes points into the line */
	ck_assert(h_error(h_callj("{\"op\":\"queue.send\",\"data_b64\":\""
	    B64_48 "\",\"type\":tru}"), NULL, "parse_error") != NULL);
	{
		size_t keep = proto_big_line;
		json_t *d;

		proto_big_line = 0;
		d = h_error(h_callj("{\"op\":\"queue.send\",\"data_b64\":\""
		    B64_48 "\",\"type\":tru}"), NULL, "parse_error");
		proto_big_line = keep;
		ck_assert_int_eq(int_at(d, "position"), 107);	/* past "tru" */
	}
}
END_TEST

/* One bad character at every position of the value: the same verdict as
 * without the fast path, which is taken for printable ASCII only. */
START_TEST(test_b64_fast_path_bad_char_every_position)
{
	static const char *bad[] = { "=", "-", "_", " ", "*", "~", "\\\\",
	    "\\/", "\x01", "\xc3\xa9", "\xff" };
	static const char head[] = "{\"id\":5,\"op\":\"queue.send\",\"type\":7,"
	    "\"data_b64\":\"";
	char val[sizeof(B64_48) + 8], line[256];
	size_t pos, b, n = sizeof(B64_48) - 1;
	int fast;

	for (pos = 0; pos < n; pos++) {
		for (b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
			/* replace the character at pos */
			memcpy(val, B64_48, pos);
			strcpy(val + pos, bad[b]);
			strcat(val, &B64_48[pos + 1]);
			snprintf(line, sizeof(line), "%s%s\"}", head, val);
			fast = same_both_ways(line);
			ck_assert_msg(fast == ((unsigned char)bad[b][0] >= 0x20 &&
			    (unsigned char)bad[b][0] < 0x80 && bad[b][0] != '\\'),
			    "fast path %s for %s", fast ? "taken" : "not taken",
			    line);
			/* and inserted before it */
			memcpy(val, B64_48, pos);
			strcpy(val + pos, bad[b]);
			strcat(val, &B64_48[pos]);
			snprintf(line, sizeof(line), "%s%s\"}", head, val);
			same_both_ways(line);
		}
	}
}
END_TEST

/* A real big line, with the threshold as shipped. */
START_TEST(test_b64_fast_path_big_line)
{
	unsigned char bytes[4500];
	char *line, buf[sizeof(bytes)];
	size_t i, n;
	uint64_t before = proto_fast_lines;
	long type;

	for (i = 0; i < sizeof(bytes); i++)
		bytes[i] = (unsigned char)(i * 7 + (i >> 8));
	n = b64_encoded_len(sizeof(bytes));
	line = malloc(n + 128);
	ck_assert_ptr_nonnull(line);
	strcpy(line, "{\"id\":6,\"op\":\"queue.send\",\"type\":4,\"data_b64\":\"");
	i = strlen(line);
	b64_encode(bytes, sizeof(bytes), line + i);
	strcpy(line + i + n, "\"}");
	ck_assert_uint_ge(strlen(line), proto_big_line);
	ck_assert_str_eq(h_call(line), "{\"id\":6,\"result\":{\"queue\":"
	    "\"default\",\"type\":4,\"bytes\":4500}}");
	ck_assert(proto_fast_lines == before + 1);
	ck_assert_int_eq(h_sysv_recv(4, &type, buf, sizeof(buf)),
	    (ssize_t)sizeof(bytes));
	ck_assert_mem_eq(buf, bytes, sizeof(bytes));
	/* one bad character deep inside: invalid_params, nothing queued */
	line[i + 3000] = '.';
	h_error(h_callj(line), "6", "invalid_params");
	ck_assert_int_eq(h_qnum(), 0);
	free(line);
}
END_TEST

/* ---- jalloc: jansson's free lists ---- */

/* Blocks of every small size, freed and handed out again in a mixed
 * order: each holds its full size without touching another, blocks go
 * back to malloc with free() as well, and jalloc_free takes malloc's. */
START_TEST(test_jalloc_blocks)
{
	enum { N = 600 };
	unsigned char *b[N];
	size_t len[N], i, j, round;
	void *p;

	for (i = 0; i < N; i++)
		b[i] = NULL;
	for (round = 0; round < 6; round++) {
		for (i = 0; i < N; i++) {
			if (b[i] != NULL && (i + round) % 3 != 0)
				continue;
			if (b[i] != NULL) {
				if ((i + round) % 2)
					jalloc_free(b[i]);
				else
					free(b[i]);	/* json_dumps' */
			}
			len[i] = (i * 7 + round * 13) % 300;
			b[i] = jalloc_malloc(len[i]);
			ck_assert_ptr_nonnull(b[i]);
			ck_assert_uint_eq((uintptr_t)b[i] % sizeof(void *), 0);
			memset(b[i], (int)(i & 0xff), len[i]);
		}
		for (i = 0; i < N; i++)
			for (j = 0; j < len[i]; j++)
				ck_assert_msg(b[i][j] == (unsigned char)(i & 0xff),
				    "block %zu (%zu bytes) overwritten at %zu",
				    i, len[i], j);
	}
	for (i = 0; i < N; i++)
		jalloc_free(b[i]);
	jalloc_free(NULL);
	p = malloc(24);
	ck_assert_ptr_nonnull(p);
	jalloc_free(p);
	p = malloc(5000);
	ck_assert_ptr_nonnull(p);
	jalloc_free(p);
}
END_TEST

/* ---- stats ---- */

START_TEST(test_stats_counts_errors_by_code)
{
	json_t *res;

	h_call("{");
	h_call("[1,");
	h_call("{\"op\":\"nope\"}");
	h_call("{\"op\":\"hello\",\"bogus\":1}");
	h_call("{\"op\":\"hello\",\"proto\":\"x\"}");
	h_call("{\"op\":\"queue.send\",\"type\":0,\"text\":\"x\"}");
	h_call("[]");
	h_call("{\"op\":\"queue.stat\",\"queue\":\"none\"}");
	h_call("{\"op\":\"queue.send\",\"type\":1,\"text\":\"ok\"}");
	h_call("{\"op\":\"queue.recv\"}");
	h_send("");			/* no request, no reply */
	res = h_result(h_callj("{\"id\":\"s\",\"op\":\"stats\"}"), "\"s\"");
	ck_assert(json_equal(json_object_get(res, "errors"),
	    h_json("{\"parse_error\":2,\"unknown_op\":1,\"invalid_params\":3,"
	    "\"invalid_request\":1,\"not_found\":1}")));
	ck_assert_int_eq(int_at(res, "requests"), 11);
	ck_assert(json_equal(json_object_get(res, "messages"),
	    h_json("{\"sent\":1,\"received\":1,\"put_back\":0,\"acked\":0,"
	    "\"redelivered\":0,\"restored\":0,\"unacked\":0,\"lost\":0}")));
	ck_assert(json_equal(json_object_get(res, "connections"),
	    h_json("{\"current\":1,\"total\":1}")));
	ck_assert_int_eq(int_at(res, "waiters"), 0);
}
END_TEST

/* Tests that run twice: with flat lines parsed by load_flat (the
 * default) and with every line going to jansson. */
static void
add_decode_tests(TCase *tc)
{
	tcase_add_test(tc, test_parse_error_position);
	tcase_add_test(tc, test_parse_error_strict);
	tcase_add_test(tc, test_parse_error_message);
	tcase_add_test(tc, test_not_utf8);
	tcase_add_test(tc, test_non_object_requests);
	tcase_add_test(tc, test_bad_id);
	tcase_add_test(tc, test_missing_op);
	tcase_add_test(tc, test_unknown_op);
	tcase_add_test(tc, test_invalid_params_unknown);
	tcase_add_test(tc, test_invalid_params_mistyped);
	tcase_add_test(tc, test_invalid_params_values);
	tcase_add_test(tc, test_id_echo);
	tcase_add_test(tc, test_reply_shape);
	tcase_add_test(tc, test_hello_protocol);
	tcase_add_test(tc, test_unknown_queue);
}

static void
add_queue_tests(TCase *tc)
{
	tcase_add_test(tc, test_send_recv_text);
	tcase_add_test(tc, test_send_reply_bytes);
	tcase_add_test(tc, test_deferred_replies);
	tcase_add_test(tc, test_send_recv_binary);
	tcase_add_test(tc, test_recv_selectors);
	tcase_add_test(tc, test_recv_empty_queue);
	tcase_add_test(tc, test_queue_full_and_too_big);
	tcase_add_test(tc, test_stats_counts_errors_by_code);
}

static void
flat_off(void)
{
	proto_flat = 0;
}

static Suite *
proto_suite(void)
{
	Suite *s = suite_create("proto");
	TCase *tc;

	tc = tcase_create("decode");
	h_fixtures(tc);
	add_decode_tests(tc);
	suite_add_tcase(s, tc);

	tc = tcase_create("decode, jansson only");
	h_fixtures(tc);
	tcase_add_checked_fixture(tc, flat_off, NULL);
	add_decode_tests(tc);
	suite_add_tcase(s, tc);

	tc = tcase_create("framing");
	h_fixtures(tc);
	tcase_add_test(tc, test_blank_and_comment_lines);
	tcase_add_test(tc, test_crlf);
	tcase_add_test(tc, test_partial_and_pipelined_lines);
	tcase_add_test(tc, test_partial_line_leaves_daemon_idle);
	tcase_add_test(tc, test_many_pipelined_lines);
	tcase_add_test(tc, test_pipeline_does_not_starve_others);
	tcase_add_test(tc, test_busy);
	tcase_add_test(tc, test_last_line_without_newline);
	tcase_add_test(tc, test_line_too_long);
	tcase_add_test(tc, test_line_too_long_in_pieces);
	suite_add_tcase(s, tc);

	tc = tcase_create("queue");
	h_fixtures(tc);
	add_queue_tests(tc);
	tcase_add_test(tc, test_flat_path_same_replies);
	suite_add_tcase(s, tc);

	tc = tcase_create("queue, jansson only");
	h_fixtures(tc);
	tcase_add_checked_fixture(tc, flat_off, NULL);
	add_queue_tests(tc);
	suite_add_tcase(s, tc);

	tc = tcase_create("b64_fast_path");
	h_fixtures(tc);
	tcase_add_test(tc, test_b64_fast_path_taken);
	tcase_add_test(tc, test_b64_fast_path_nested_or_quoted);
	tcase_add_test(tc, test_b64_fast_path_duplicates);
	tcase_add_test(tc, test_b64_fast_path_escapes);
	tcase_add_test(tc, test_b64_fast_path_errors_after);
	tcase_add_test(tc, test_b64_fast_path_bad_char_every_position);
	tcase_add_test(tc, test_b64_fast_path_big_line);
	suite_add_tcase(s, tc);

	tc = tcase_create("jalloc");
	h_fixtures(tc);
	tcase_add_test(tc, test_jalloc_blocks);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(proto_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
