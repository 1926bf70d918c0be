/*
 * check_waiter.c - receivers that wait, consumers and cancel
 * (src/waiter.c), driven through real connections by running the event
 * loop: the order in which parked receivers are served, selectors,
 * consumer event order, cancel and timeouts.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "harness.h"

/* Run the loop until the queue has n parked receivers. */
static void
wait_parked(int n)
{
	struct queue *q = h_queue();
	uint64_t deadline = now_ms() + H_TIMEOUT_MS;

	while (q->nwaiting != n) {
		ck_assert_msg(now_ms() < deadline, "%d receivers parked, want "
		    "%d", q->nwaiting, n);
		h_run_for(1);
	}
}

static int
polls_reached(void *arg)
{
	return stats.polls >= *(uint64_t *)arg;
}

/*
 * Park a receive of a type nobody sends on a new connection: the poll
 * timer runs only while someone waits, and this keeps it going so that
 * "nothing happens" can be checked over a number of polls.
 */
static void
park_observer(void)
{
	int obs = h_connect(), n = h_queue()->nwaiting;

	h_sendc(obs, "{\"id\":\"obs\",\"op\":\"queue.recv\",\"type\":999,"
	    "\"timeout_ms\":5000}");
	wait_parked(n + 1);
}

/* Let the poll timer run n more times (nothing may happen meanwhile). */
static void
run_polls(int n)
{
	uint64_t want = stats.polls + (uint64_t)n;

	ck_assert_msg(h_run_until(polls_reached, &want, H_TIMEOUT_MS),
	    "the poll timer did not run %d times", n);
}

/* The text of a recv result's message, checking the reply's shape. */
static const char *
recv_text(json_t *reply, const char *id, long type)
{
	json_t *res = h_result(reply, id), *msg;

	ck_assert(json_is_false(json_object_get(res, "timed_out")));
	msg = json_object_get(res, "msg");
	ck_assert_msg(json_is_object(msg), "no message in the reply");
	ck_assert_int_eq(json_integer_value(json_object_get(msg, "type")),
	    type);
	ck_assert_str_eq(json_string_value(json_object_get(msg, "queue")),
	    "default");
	return json_string_value(json_object_get(msg, "text"));
}

/* Two held receivers (no id: each connection waits) on one selector:
 * the one that came first gets the first message. */
START_TEST(test_held_receivers_oldest_first)
{
	int b = h_connect(), c = h_connect();

	h_sendc(b, "{\"op\":\"queue.recv\",\"type\":1,\"timeout_ms\":5000}");
	wait_parked(1);
	h_sendc(0, "{\"op\":\"queue.recv\",\"type\":1,\"timeout_ms\":5000}");
	wait_parked(2);
	h_sendc(c, "{\"op\":\"queue.recv\",\"type\":1,\"timeout_ms\":5000}");
	wait_parked(3);
	ck_assert(!h_has_line(0) && !h_has_line(b) && !h_has_line(c));

	h_sysv_send(1, "first", 5);
	h_sysv_send(1, "second", 6);
	h_sysv_send(1, "third", 5);
	ck_assert_str_eq(recv_text(h_readj(b), NULL, 1), "first");
	ck_assert_str_eq(recv_text(h_readj(0), NULL, 1), "second");
	ck_assert_str_eq(recv_text(h_readj(c), NULL, 1), "third");
	ck_assert_int_eq(h_qnum(), 0);
	ck_assert_int_eq(h_queue()->nwaiting, 0);
}
END_TEST

/* The same with parked requests (with ids) on one connection. */
START_TEST(test_parked_receivers_oldest_first)
{
	json_t *r1, *r2;

	h_send("{\"id\":\"a\",\"op\":\"queue.recv\",\"timeout_ms\":5000}");
	h_send("{\"id\":\"b\",\"op\":\"queue.recv\",\"timeout_ms\":5000}");
	wait_parked(2);
	ck_assert(!h_has_line(0));
	h_sysv_send(4, "one", 3);
	h_sysv_send(4, "two", 3);
	r1 = h_readj(0);
	r2 = h_readj(0);
	ck_assert_str_eq(recv_text(r1, "\"a\"", 4), "one");
	ck_assert_str_eq(recv_text(r2, "\"b\"", 4), "two");
}
END_TEST

/* A newcomer must not overtake a parked receiver on its selector, even
 * when a message is there as it arrives. */
START_TEST(test_newcomer_does_not_overtake)
{
	int b = h_connect();

	h_send("{\"id\":1,\"op\":\"queue.recv\",\"type\":2,\"timeout_ms\":5000}");
	wait_parked(1);
	h_sysv_send(2, "for the first", 13);
	h_sendc(b, "{\"id\":2,\"op\":\"queue.recv\",\"type\":2,"
	    "\"timeout_ms\":5000}");
	ck_assert_str_eq(recv_text(h_readj(0), "1", 2), "for the first");
	wait_parked(1);
	h_sysv_send(2, "for the second", 14);
	ck_assert_str_eq(recv_text(h_readj(b), "2", 2), "for the second");
}
END_TEST

/* A receive that does not wait, behind an older waiter on its selector,
 * takes nothing and answers at once: the older waiter gets the message. */
START_TEST(test_no_wait_recv_behind_waiter)
{
	int b = h_connect();
	json_t *res;

	h_send("{\"id\":1,\"op\":\"queue.recv\",\"type\":2,\"timeout_ms\":5000}");
	wait_parked(1);
	h_sysv_send(2, "for the waiter", 14);
	res = h_result(h_callcj(b, "{\"id\":2,\"op\":\"queue.recv\","
	    "\"type\":2}"), "2");
	ck_assert(json_equal(res, h_json("{\"msg\":null,\"timed_out\":false}")));
	ck_assert_str_eq(recv_text(h_readj(0), "1", 2), "for the waiter");
	/* a different selector is not held back */
	h_send("{\"id\":3,\"op\":\"queue.recv\",\"type\":2,\"timeout_ms\":5000}");
	wait_parked(1);
	h_sysv_send(3, "three", 5);
	ck_assert_str_eq(recv_text(h_callcj(b, "{\"id\":4,\"op\":"
	    "\"queue.recv\",\"type\":3}"), "4", 3), "three");
}
END_TEST

/* Consumers and receive waits on one selector are served oldest first. */
START_TEST(test_consumer_and_recv_oldest_first)
{
	int b = h_connect();
	json_t *ev;

	/* a parked recv, then a consumer: the recv gets the first message */
	h_send("{\"id\":1,\"op\":\"queue.recv\",\"timeout_ms\":5000}");
	wait_parked(1);
	h_result(h_callcj(b, "{\"id\":1,\"op\":\"queue.consume\"}"), "1");
	h_sysv_send(1, "m1", 2);
	ck_assert_str_eq(recv_text(h_readj(0), "1", 1), "m1");
	h_sysv_send(1, "m2", 2);
	ev = h_readj(b);
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(ev,
	    "data"), "text")), "m2");

	/* now the consumer is older than a new recv wait */
	h_send("{\"id\":2,\"op\":\"queue.recv\",\"timeout_ms\":5000}");
	wait_parked(1);
	h_sysv_send(1, "m3", 2);
	ev = h_readj(b);
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(ev,
	    "data"), "text")), "m3");
	/* ...and after its delivery it goes behind the recv */
	h_sysv_send(1, "m4", 2);
	ck_assert_str_eq(recv_text(h_readj(0), "2", 1), "m4");
	ck_assert(!h_has_line(b));
}
END_TEST

/* One poll pass serves every waiter that has a message (it drains). */
START_TEST(test_one_pass_drains)
{
	uint64_t polls;
	int i;

	for (i = 0; i < 4; i++) {
		char line[96];

		snprintf(line, sizeof(line), "{\"id\":%d,\"op\":\"queue.recv\","
		    "\"timeout_ms\":5000}", i);
		h_send(line);
	}
	wait_parked(4);
	polls = stats.polls;
	for (i = 0; i < 4; i++)
		h_sysv_send(1, "m", 1);
	for (i = 0; i < 4; i++) {
		char id[8];

		snprintf(id, sizeof(id), "%d", i);	/* oldest first */
		ck_assert_str_eq(recv_text(h_readj(0), id, 1), "m");
	}
	ck_assert_uint_eq(stats.polls - polls, 1);
}
END_TEST

/* Different selectors: each waiter gets its own type, whatever the order
 * the messages come in. */
START_TEST(test_selectors_get_their_own_type)
{
	json_t *r;
	int i, seen = 0;

	h_send("{\"id\":1,\"op\":\"queue.recv\",\"type\":1,\"timeout_ms\":5000}");
	h_send("{\"id\":2,\"op\":\"queue.recv\",\"type\":2,\"timeout_ms\":5000}");
	h_send("{\"id\":3,\"op\":\"queue.recv\",\"type\":3,\"timeout_ms\":5000}");
	wait_parked(3);
	h_sysv_send(7, "nobody's", 8);
	h_sysv_send(3, "three", 5);
	h_sysv_send(2, "two", 3);
	h_sysv_send(1, "one", 3);
	for (i = 0; i < 3; i++) {
		r = h_readj(0);
		ck_assert(json_is_integer(json_object_get(r, "id")));
		switch (json_integer_value(json_object_get(r, "id"))) {
		case 1:
			ck_assert_str_eq(recv_text(r, "1", 1), "one");
			break;
		case 2:
			ck_assert_str_eq(recv_text(r, "2", 2), "two");
			break;
		case 3:
			ck_assert_str_eq(recv_text(r, "3", 3), "three");
			break;
		default:
			ck_abort_msg("unexpected reply id");
		}
		seen |= 1 << json_integer_value(json_object_get(r, "id"));
	}
	ck_assert_int_eq(seen, 2 | 4 | 8);
	/* the type 7 message is left alone */
	ck_assert_int_eq(h_qnum(), 1);
}
END_TEST

/* A message of another type does not wake a waiter. */
START_TEST(test_other_type_does_not_wake)
{
	char buf[16];
	long type;

	h_send("{\"id\":1,\"op\":\"queue.recv\",\"type\":5,\"timeout_ms\":5000}");
	wait_parked(1);
	h_sysv_send(6, "six", 3);
	run_polls(3);
	ck_assert(!h_has_line(0));
	ck_assert_int_eq(h_qnum(), 1);
	ck_assert_int_eq(h_queue()->nwaiting, 1);
	ck_assert_int_eq(h_sysv_recv(0, &type, buf, sizeof(buf)), 3);
	ck_assert_int_eq(type, 6);
}
END_TEST

/* type_max and except waiters. */
START_TEST(test_max_and_except_selectors)
{
	h_send("{\"id\":1,\"op\":\"queue.recv\",\"type_max\":3,"
	    "\"timeout_ms\":5000}");
	wait_parked(1);
	h_sysv_send(9, "nine", 4);
	h_sysv_send(3, "three", 5);
	ck_assert_str_eq(recv_text(h_readj(0), "1", 3), "three");
	h_send("{\"id\":2,\"op\":\"queue.recv\",\"type\":9,\"except\":true,"
	    "\"timeout_ms\":5000}");
	wait_parked(1);
	h_sysv_send(8, "eight", 5);
	ck_assert_str_eq(recv_text(h_readj(0), "2", 8), "eight");
	ck_assert_int_eq(h_qnum(), 1);
}
END_TEST

/* A consumer gets every message, in order, as events. */
START_TEST(test_consumer_events_in_order)
{
	char text[16];
	json_t *res, *ev, *data;
	json_int_t consumer;
	int i;

	res = h_result(h_callj("{\"id\":1,\"op\":\"queue.consume\"}"), "1");
	ck_assert_uint_eq(json_object_size(res), 1);
	consumer = json_integer_value(json_object_get(res, "consumer"));
	ck_assert_int_ge(consumer, 1);
	ck_assert_int_eq(h_queue()->nconsumers, 1);

	for (i = 0; i < 20; i++) {
		snprintf(text, sizeof(text), "m%d", i);
		h_sysv_send(1 + i % 3, text, strlen(text));
	}
	for (i = 0; i < 20; i++) {
		ev = h_readj(0);
		ck_assert_str_eq(json_string_value(json_object_get(ev,
		    "event")), "message");
		ck_assert(json_is_integer(json_object_get(ev, "ts_ms")));
		ck_assert_uint_eq(json_object_size(ev), 3);
		data = json_object_get(ev, "data");
		snprintf(text, sizeof(text), "m%d", i);
		ck_assert_str_eq(json_string_value(json_object_get(data,
		    "text")), text);
		ck_assert_int_eq(json_integer_value(json_object_get(data,
		    "type")), 1 + i % 3);
		ck_assert_int_eq(json_integer_value(json_object_get(data,
		    "consumer")), consumer);
		ck_assert_int_eq(json_integer_value(json_object_get(data,
		    "bytes")), (json_int_t)strlen(text));
	}
	ck_assert_int_eq(h_qnum(), 0);

	/* the connection still takes requests */
	res = h_result(h_callj("{\"id\":2,\"op\":\"queue.stat\"}"), "2");
	ck_assert_int_eq(json_integer_value(json_object_get(res,
	    "consumers")), 1);
}
END_TEST

/* A consumer on a selector only gets its type; cancel stops it. */
START_TEST(test_consumer_selector_and_cancel)
{
	char line[128];
	json_t *res, *ev;
	json_int_t consumer;

	res = h_result(h_callj("{\"id\":1,\"op\":\"queue.consume\",\"type\":2}"),
	    "1");
	consumer = json_integer_value(json_object_get(res, "consumer"));
	h_sysv_send(1, "not mine", 8);
	h_sysv_send(2, "mine", 4);
	ev = h_readj(0);
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(ev,
	    "data"), "text")), "mine");

	snprintf(line, sizeof(line), "{\"id\":2,\"op\":\"cancel\","
	    "\"consumer\":%lld}", (long long)consumer);
	res = h_result(h_callj(line), "2");
	ck_assert_int_eq(json_integer_value(json_object_get(res, "consumer")),
	    consumer);
	ck_assert(json_is_true(json_object_get(res, "cancelled")));
	ck_assert_int_eq(h_queue()->nconsumers, 0);
	h_sysv_send(2, "after", 5);
	park_observer();
	run_polls(3);
	ck_assert(!h_has_line(0));
	ck_assert_int_eq(h_qnum(), 2);
	/* again: gone */
	h_error(h_callj(line), "2", "not_found");
}
END_TEST

/* Consumers on one selector share the messages round robin. */
START_TEST(test_consumers_round_robin)
{
	int b = h_connect();
	json_t *ev;

	h_result(h_callj("{\"id\":1,\"op\":\"queue.consume\"}"), "1");
	h_result(h_callcj(b, "{\"id\":1,\"op\":\"queue.consume\"}"), "1");
	h_sysv_send(1, "x0", 2);
	h_sysv_send(1, "x1", 2);
	h_sysv_send(1, "x2", 2);
	h_sysv_send(1, "x3", 2);
	ev = h_readj(0);
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(ev,
	    "data"), "text")), "x0");
	ev = h_readj(b);
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(ev,
	    "data"), "text")), "x1");
	ev = h_readj(0);
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(ev,
	    "data"), "text")), "x2");
	ev = h_readj(b);
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(ev,
	    "data"), "text")), "x3");
}
END_TEST

/* cancel of a parked wait: it ends with "cancelled", then cancel says so,
 * and the wait takes no message afterwards. */
START_TEST(test_cancel_parked_wait)
{
	json_t *res;

	h_send("{\"id\":7,\"op\":\"queue.recv\",\"timeout_ms\":10000}");
	h_send("{\"id\":\"w\",\"op\":\"queue.recv\",\"type\":3,"
	    "\"timeout_ms\":10000}");
	wait_parked(2);
	h_send("{\"id\":8,\"op\":\"cancel\",\"target\":7}");
	h_error(h_readj(0), "7", "cancelled");
	res = h_result(h_readj(0), "8");
	ck_assert(json_equal(res, h_json("{\"target\":7,\"cancelled\":true}")));
	ck_assert_int_eq(h_queue()->nwaiting, 1);

	/* a string id; matched exactly */
	h_error(h_callj("{\"id\":9,\"op\":\"cancel\",\"target\":\"W\"}"), "9",
	    "not_found");
	h_send("{\"id\":10,\"op\":\"cancel\",\"target\":\"w\"}");
	h_error(h_readj(0), "\"w\"", "cancelled");
	res = h_result(h_readj(0), "10");
	ck_assert(json_equal(res, h_json("{\"target\":\"w\","
	    "\"cancelled\":true}")));
	ck_assert_int_eq(h_queue()->nwaiting, 0);

	/* no one takes this now */
	h_sysv_send(3, "late", 4);
	park_observer();
	run_polls(3);
	ck_assert(!h_has_line(0));
	ck_assert_int_eq(h_qnum(), 1);
	/* cancelling again: nothing parked with that id */
	h_error(h_callj("{\"id\":11,\"op\":\"cancel\",\"target\":7}"), "11",
	    "not_found");
}
END_TEST

/* Two parked requests with one id: cancel ends the older one. */
START_TEST(test_cancel_oldest_of_same_id)
{
	h_send("{\"id\":5,\"op\":\"queue.recv\",\"type\":1,"
	    "\"timeout_ms\":10000}");
	h_send("{\"id\":5,\"op\":\"queue.recv\",\"type\":2,"
	    "\"timeout_ms\":10000}");
	wait_parked(2);
	h_send("{\"id\":6,\"op\":\"cancel\",\"target\":5}");
	h_error(h_readj(0), "5", "cancelled");
	h_result(h_readj(0), "6");
	ck_assert_int_eq(h_queue()->nwaiting, 1);
	/* the type 2 wait is the one left */
	h_sysv_send(1, "one", 3);
	h_sysv_send(2, "two", 3);
	ck_assert_str_eq(recv_text(h_readj(0), "5", 2), "two");
	ck_assert_int_eq(h_qnum(), 1);
}
END_TEST

/* A send that finds no room waits, and goes once a receive makes room. */
START_TEST(test_send_waits_for_room)
{
	json_t *res;

	h_set_qbytes(8);
	h_sysv_send(1, "1234", 4);
	h_send("{\"id\":11,\"op\":\"queue.send\",\"type\":2,\"text\":"
	    "\"abcde\",\"timeout_ms\":5000}");
	wait_parked(1);
	ck_assert(!h_has_line(0));
	ck_assert_int_eq(h_qnum(), 1);
	/* a new send does not overtake the waiting one, though it would fit */
	h_error(h_callj("{\"id\":12,\"op\":\"queue.send\",\"type\":3,"
	    "\"text\":\"z\"}"), "12", "queue_full");
	ck_assert_int_eq(h_qnum(), 1);
	ck_assert_str_eq(recv_text(h_callj("{\"id\":13,\"op\":\"queue.recv\"}"),
	    "13", 1), "1234");
	res = h_result(h_readj(0), "11");
	ck_assert(json_equal(res, h_json("{\"queue\":\"default\",\"type\":2,"
	    "\"bytes\":5}")));
	ck_assert_int_eq(h_qnum(), 1);
	ck_assert_int_eq(h_queue()->nwaiting, 0);
}
END_TEST

/* A cancelled send does not send its message; a send that never finds
 * room ends with queue_full at its timeout. */
START_TEST(test_send_cancel_and_timeout)
{
	char buf[16];
	long type;

	h_set_qbytes(4);
	h_sysv_send(1, "full", 4);
	h_send("{\"id\":\"s\",\"op\":\"queue.send\",\"type\":2,\"text\":"
	    "\"xy\",\"timeout_ms\":5000}");
	wait_parked(1);
	h_send("{\"id\":1,\"op\":\"cancel\",\"target\":\"s\"}");
	h_error(h_readj(0), "\"s\"", "cancelled");
	h_result(h_readj(0), "1");
	ck_assert_int_eq(h_sysv_recv(0, &type, buf, sizeof(buf)), 4);
	park_observer();
	run_polls(3);
	ck_assert_int_eq(h_qnum(), 0);

	h_sysv_send(1, "full", 4);
	h_error(h_callj("{\"id\":2,\"op\":\"queue.send\",\"type\":2,"
	    "\"text\":\"xy\",\"timeout_ms\":40}"), "2", "queue_full");
	ck_assert_int_eq(h_qnum(), 1);
}
END_TEST

/* Another connection cannot cancel my wait. */
START_TEST(test_cancel_is_per_connection)
{
	int b = h_connect();

	h_send("{\"id\":1,\"op\":\"queue.recv\",\"timeout_ms\":10000}");
	wait_parked(1);
	h_error(h_callcj(b, "{\"id\":2,\"op\":\"cancel\",\"target\":1}"), "2",
	    "not_found");
	ck_assert_int_eq(h_queue()->nwaiting, 1);
	ck_assert(!h_has_line(0));
}
END_TEST

/* A wait with a timeout ends with timed_out when the time has passed,
 * and not before. */
START_TEST(test_timeout)
{
	uint64_t t0 = now_ms();
	json_t *res;

	h_send("{\"id\":1,\"op\":\"queue.recv\",\"timeout_ms\":60}");
	res = h_result(h_readj(0), "1");
	ck_assert_uint_ge(now_ms() - t0, 60);
	ck_assert(json_equal(res, h_json("{\"msg\":null,\"timed_out\":true}")));
	ck_assert_int_eq(h_queue()->nwaiting, 0);
	ck_assert_int_eq(waiter_count(), 0);
}
END_TEST

/* A held receive stops the connection's later lines until it is done. */
START_TEST(test_held_blocks_connection)
{
	static const char in[] = "{\"op\":\"queue.recv\",\"timeout_ms\":5000}\n"
	    "{\"id\":2,\"op\":\"queue.list\"}\n";
	json_t *r;

	h_write(0, in, sizeof(in) - 1);
	wait_parked(1);
	run_polls(2);
	ck_assert(!h_has_line(0));
	ck_assert_uint_eq(stats.requests, 1);
	h_sysv_send(1, "go", 2);
	r = h_readj(0);
	ck_assert_str_eq(recv_text(r, NULL, 1), "go");
	h_result(h_readj(0), "2");
}
END_TEST

/* A client that half-closes behind a held receive still gets that reply
 * and the replies to the lines after it (the last one without its
 * newline), then the daemon closes. */
START_TEST(test_half_close_while_held)
{
	static const char in[] = "{\"op\":\"queue.recv\",\"timeout_ms\":5000}\n"
	    "{\"id\":2,\"op\":\"queue.list\"}";

	h_write(0, in, sizeof(in) - 1);
	h_close_write(0);
	wait_parked(1);
	run_polls(2);
	ck_assert(!h_has_line(0));
	ck_assert(!h_eof(0));
	h_sysv_send(1, "late", 4);
	ck_assert_str_eq(recv_text(h_readj(0), NULL, 1), "late");
	h_result(h_readj(0), "2");
	ck_assert_ptr_null(h_read(0, H_TIMEOUT_MS));
	ck_assert(h_eof(0));
	ck_assert_int_eq(conns_count, 0);
}
END_TEST

/* After a half-close nothing can cancel a consumer: once the input is
 * used up, consumers end silently and the connection closes. */
START_TEST(test_half_close_ends_consumers)
{
	static const char in[] = "{\"id\":1,\"op\":\"queue.consume\"}\n";

	h_write(0, in, sizeof(in) - 1);
	h_close_write(0);
	h_result(h_readj(0), "1");
	ck_assert_ptr_null(h_read(0, H_TIMEOUT_MS));
	ck_assert(h_eof(0));
	ck_assert_int_eq(h_queue()->nconsumers, 0);
	ck_assert_int_eq(waiter_count(), 0);
	h_sysv_send(1, "unread", 6);
	ck_assert_int_eq(h_qnum(), 1);
	ck_assert_uint_eq(stats.msgs_received, 0);
}
END_TEST

/* At most MAX_PARKED_PER_CONN parked waits per connection. */
START_TEST(test_too_many_waits)
{
	char line[128];
	int i;

	for (i = 0; i < MAX_PARKED_PER_CONN; i++) {
		snprintf(line, sizeof(line), "{\"id\":%d,\"op\":\"queue.recv\","
		    "\"timeout_ms\":5000}", i);
		h_send(line);
	}
	wait_parked(MAX_PARKED_PER_CONN);
	h_error(h_callj("{\"id\":99,\"op\":\"queue.recv\",\"timeout_ms\":5000}"),
	    "99", "too_many_waits");
	ck_assert_int_eq(h_queue()->nwaiting, MAX_PARKED_PER_CONN);
}
END_TEST

/* A message taken for a receiver whose client is gone goes back on the
 * queue: never dropped. */
static int
putback_done(void *arg)
{
	(void)arg;
	return stats.putbacks >= 1 || stats.lost >= 1;
}

static int
one_conn_left(void *arg)
{
	(void)arg;
	return conns_count == 1;
}

START_TEST(test_message_for_gone_client_is_put_back)
{
	int b = h_connect();
	char buf[16];
	long type;

	h_sendc(b, "{\"op\":\"queue.recv\",\"type\":4,\"timeout_ms\":5000}");
	wait_parked(1);
	h_close(b);
	h_sysv_send(4, "precious", 8);
	ck_assert(h_run_until(putback_done, NULL, H_TIMEOUT_MS));
	ck_assert_uint_eq(stats.lost, 0);
	ck_assert_uint_eq(stats.putbacks, 1);
	/* and the daemon closes that connection (on its next loop pass) */
	ck_assert(h_run_until(one_conn_left, NULL, H_TIMEOUT_MS));
	ck_assert_int_eq(h_sysv_recv(0, &type, buf, sizeof(buf)), 8);
	ck_assert_int_eq(type, 4);
	ck_assert_mem_eq(buf, "precious", 8);
}
END_TEST

/* ---- the poll timer's clock (src/ptimer.c) ---- */

struct fires {
	int		 n;
	uint64_t	 at_us;
};

static void
count_fire(void *arg)
{
	struct fires *f = arg;

	f->n++;
	f->at_us = now_us();
}

static int
fired(void *arg)
{
	return ((struct fires *)arg)->n > 0;
}

/*
 * Fires once, not before its time, and a later arm replaces an earlier
 * one; both with its own timerfd (_i = 0) and as a libevent timer
 * (_i = 1, as without timerfd and in the fuzzer). A libevent timer counts
 * from libevent's clock, which without EVENT_BASE_FLAG_PRECISE_TIMER is
 * CLOCK_MONOTONIC_COARSE (a tick of up to 4 ms behind), so there it may
 * fire that much before its time by our clock.
 */
START_TEST(test_ptimer_fires_once_on_time)
{
	const uint64_t slack = _i == 0 ? 0 : 5000;
	struct fires f = { 0, 0 };
	struct ptimer *t;
	uint64_t t0;

	ptimer_timerfd = _i == 0;
	t = ptimer_new(count_fire, &f);
	ck_assert(!ptimer_armed(t));
	t0 = now_us();
	ptimer_arm(t, 10000);
	ck_assert(ptimer_armed(t));
	ck_assert(h_run_until(fired, &f, H_TIMEOUT_MS));
	ck_assert_uint_ge(f.at_us - t0 + slack, 10000);
	ck_assert(!ptimer_armed(t));
	h_run_for(20);
	ck_assert_int_eq(f.n, 1);

	/* re-armed: the second setting counts, not the first */
	f.n = 0;
	t0 = now_us();
	ptimer_arm(t, 4000);
	ptimer_arm(t, 40000);
	ck_assert(h_run_until(fired, &f, H_TIMEOUT_MS));
	ck_assert_uint_ge(f.at_us - t0 + slack, 40000);
	h_run_for(20);
	ck_assert_int_eq(f.n, 1);

	/* due at once */
	f.n = 0;
	ptimer_arm(t, 0);
	ck_assert(h_run_until(fired, &f, H_TIMEOUT_MS));
	ptimer_free(t);
	ptimer_timerfd = 1;
}
END_TEST

static Suite *
waiter_suite(void)
{
	Suite *s = suite_create("waiter");
	TCase *tc;

	tc = tcase_create("order");
	h_fixtures(tc);
	tcase_add_test(tc, test_held_receivers_oldest_first);
	tcase_add_test(tc, test_parked_receivers_oldest_first);
	tcase_add_test(tc, test_newcomer_does_not_overtake);
	tcase_add_test(tc, test_no_wait_recv_behind_waiter);
	tcase_add_test(tc, test_consumer_and_recv_oldest_first);
	tcase_add_test(tc, test_one_pass_drains);
	tcase_add_test(tc, test_selectors_get_their_own_type);
	tcase_add_test(tc, test_other_type_does_not_wake);
	tcase_add_test(tc, test_max_and_except_selectors);
	suite_add_tcase(s, tc);

	tc = tcase_create("consumer");
	h_fixtures(tc);
	tcase_add_test(tc, test_consumer_events_in_order);
	tcase_add_test(tc, test_consumer_selector_and_cancel);
	tcase_add_test(tc, test_consumers_round_robin);
	suite_add_tcase(s, tc);

	tc = tcase_create("cancel_timeout");
	h_fixtures(tc);
	tcase_add_test(tc, test_cancel_parked_wait);
	tcase_add_test(tc, test_cancel_oldest_of_same_id);
	tcase_add_test(tc, test_cancel_is_per_connection);
	tcase_add_test(tc, test_timeout);
	tcase_add_test(tc, test_held_blocks_connection);
	tcase_add_test(tc, test_half_close_while_held);
	tcase_add_test(tc, test_half_close_ends_consumers);
	tcase_add_test(tc, test_too_many_waits);
	tcase_add_test(tc, test_message_for_gone_client_is_put_back);
	suite_add_tcase(s, tc);

	tc = tcase_create("send");
	h_fixtures(tc);
	tcase_add_test(tc, test_send_waits_for_room);
	tcase_add_test(tc, test_send_cancel_and_timeout);
	suite_add_tcase(s, tc);

	tc = tcase_create("ptimer");
	h_fixtures(tc);
	tcase_add_loop_test(tc, test_ptimer_fires_once_on_time, 0, 2);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(waiter_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
