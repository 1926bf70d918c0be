#!/usr/bin/env python3
"""End-to-end tests of waiting: held and parked receives, cancel, limits,
consumers and their flow control, sends that wait for room.

Tests wait on the daemon's state (queue.stat waiters/consumers, the stats
poll counter) instead of sleeping fixed times.
"""
import json
import select
import time
import unittest

import ipcb_test
from ipcb_test import DaemonTest, wait_for

try:
    import sysv_ipc
except ImportError:     # pragma: no cover - depends on the machine
    sysv_ipc = None


def pending(client, timeout=0.2):
    """True when the server sent something within timeout."""
    if client.buf:
        return True
    r, _, _ = select.select([client.sock], [], [], timeout)
    return bool(r)


class WaitTest(DaemonTest):
    queues = {"default": {}, "other": {}, "small": {"max_bytes": "1K"}}
    server = {"max_wait_ms": "10000"}

    def client(self):
        c = self.d.client()
        self.addCleanup(c.close)
        return c

    def send(self, text, type=1, queue="default", client=None, **kw):
        req = {"op": "queue.send", "queue": queue, "type": type,
               "text": text}
        req.update(kw)
        return self.ok(req, client=client or self.side())

    def stat(self, queue="default"):
        return self.ok({"op": "queue.stat", "queue": queue},
                       client=self.side())

    def stats(self):
        return self.ok({"op": "stats"}, client=self.side())

    def wait_polls(self, n=5):
        """Let the poll timer run at least n more passes."""
        start = self.stats()["polls"]
        wait_for(lambda: self.stats()["polls"] >= start + n)


class HeldAndParkedTest(WaitTest):

    def test_held_wait_blocks_later_lines(self):
        self.c.send_raw(b'{"op":"queue.recv","timeout_ms":5000}\n'
                        b'{"op":"hello","id":"after"}\n'
                        b'{"op":"queue.stat","id":"stat"}\n')
        wait_for(lambda: self.waiters() == 1)
        # the hello behind the held wait is not answered meanwhile
        self.stats()
        self.assertFalse(pending(self.c, 0.3))
        self.send("wake", type=4)
        r = self.c.reply()
        self.assertEqual(r, {"result": {"msg": {"queue": "default",
                                                "type": 4, "bytes": 4,
                                                "text": "wake"},
                                        "timed_out": False}})
        r = self.c.reply()
        self.assertEqual(r["id"], "after")
        self.assertEqual(r["result"]["server"], "ipcbridge")
        r = self.c.reply()
        self.assertEqual(r["id"], "stat")
        self.assertEqual(r["result"]["waiters"], 0)
        self.assertEqual(r["result"]["messages"], 0)

    def test_held_wait_times_out_then_goes_on(self):
        t0 = time.time()
        self.c.send_raw(b'{"op":"queue.recv","timeout_ms":300}\n'
                        b'{"op":"hello","id":2}\n')
        r = self.c.reply()
        elapsed = time.time() - t0
        self.assertEqual(r, {"result": {"msg": None, "timed_out": True}})
        self.assertGreaterEqual(elapsed, 0.29)
        self.assertLess(elapsed, 5)
        self.assertEqual(self.c.reply()["id"], 2)
        self.assertEqual(self.waiters(), 0)

    def test_parked_wait(self):
        self.c.send({"op": "queue.recv", "id": "w", "timeout_ms": 5000,
                     "type": 4})
        # other requests are answered while the wait is parked
        r = self.c.call({"op": "hello", "id": 2})
        self.assertEqual(r["id"], 2)
        r = self.c.call({"op": "queue.send", "type": 3, "text": "not me",
                         "id": 3})
        self.assertEqual(r["id"], 3)
        self.assertEqual(self.waiters(), 1)
        self.send("wake", type=4)
        r = self.c.reply()
        self.assertEqual(r, {"id": "w",
                             "result": {"msg": {"queue": "default",
                                                "type": 4, "bytes": 4,
                                                "text": "wake"},
                                        "timed_out": False}})
        self.assertEqual(self.waiters(), 0)
        # the type 3 message was not taken by the type 4 waiter
        self.assertEqual(self.stat()["messages"], 1)

    def test_parked_wait_encoding(self):
        self.c.send({"op": "queue.recv", "id": 1, "timeout_ms": 5000,
                     "encoding": "base64"})
        wait_for(lambda: self.waiters() == 1)
        self.send("hi")
        r = self.c.reply()
        self.assertEqual(r["result"]["msg"]["data_b64"], "aGk=")

    def test_parked_wait_not_utf8(self):
        self.c.send({"op": "queue.recv", "id": 1, "timeout_ms": 5000,
                     "encoding": "text"})
        wait_for(lambda: self.waiters() == 1)
        self.ok({"op": "queue.send", "type": 2, "data_b64": "/w=="},
                client=self.side())
        r = self.c.reply()
        self.assertEqual(r["id"], 1)
        self.assertEqual(r["error"]["code"], "not_utf8")
        # the message was put back, not lost
        st = self.stat()
        self.assertEqual((st["messages"], st["bytes"], st["waiters"]),
                         (1, 1, 0))
        self.assertEqual(self.stats()["messages"]["lost"], 0)

    def test_message_from_another_client_wakes_waiter(self):
        other = self.client()
        self.c.send({"op": "queue.recv", "id": 7, "timeout_ms": 5000,
                     "queue": "other"})
        wait_for(lambda: self.waiters("other") == 1)
        self.ok({"op": "queue.send", "queue": "other", "type": 9,
                 "text": "from other"}, client=other)
        r = self.c.reply()
        self.assertEqual(r["id"], 7)
        self.assertEqual(r["result"]["msg"]["text"], "from other")
        self.assertEqual(r["result"]["msg"]["queue"], "other")

    @unittest.skipUnless(sysv_ipc, "the sysv_ipc module is not installed")
    def test_sysv_worker_wakes_waiter(self):
        mq = sysv_ipc.MessageQueue(self.d.key())
        self.c.send({"op": "queue.recv", "id": 9, "timeout_ms": 5000,
                     "type": 6})
        wait_for(lambda: self.waiters() == 1)
        mq.send(b"\x00\x01\xff", type=5)
        mq.send(b"\x00\x01\xff", type=6)
        r = self.c.reply()
        self.assertEqual(r["id"], 9)
        self.assertEqual(r["result"]["msg"], {"queue": "default", "type": 6,
                                              "bytes": 3,
                                              "data_b64": "AAH/"})
        self.assertEqual(mq.current_messages, 1)
        self.assertEqual(mq.receive(block=False), (b"\x00\x01\xff", 5))

    def test_timeout_expiry(self):
        t0 = time.time()
        self.c.send({"op": "queue.recv", "id": "t", "timeout_ms": 300})
        r = self.c.reply()
        elapsed = time.time() - t0
        self.assertEqual(r, {"id": "t", "result": {"msg": None,
                                                   "timed_out": True}})
        self.assertGreaterEqual(elapsed, 0.29)
        self.assertLess(elapsed, 5)
        self.assertEqual(self.waiters(), 0)
        # a message sent afterwards stays for the next receiver
        self.send("late")
        self.assertEqual(self.stat()["messages"], 1)

    def test_timeout_limits(self):
        e = self.err({"op": "queue.recv", "timeout_ms": 10001},
                     "invalid_params")
        self.assertEqual(e["data"], {"param": "timeout_ms"})
        e = self.err({"op": "queue.send", "type": 1, "text": "x",
                      "timeout_ms": 10001}, "invalid_params")
        self.assertEqual(e["data"], {"param": "timeout_ms"})
        self.assertEqual(self.stat()["messages"], 0)
        e = self.err({"op": "queue.recv", "timeout_ms": -1},
                     "invalid_params")
        self.assertEqual(e["data"], {"param": "timeout_ms"})
        # max_wait_ms itself is allowed
        self.c.send({"op": "queue.recv", "id": "max", "timeout_ms": 10000})
        wait_for(lambda: self.waiters() == 1)
        r = self.c.call({"op": "cancel", "target": "max", "id": "c"})
        self.assertEqual(r["id"], "max")
        self.assertEqual(r["error"]["code"], "cancelled")
        self.assertEqual(self.c.reply()["id"], "c")

    def test_no_wait_recv_behind_a_waiter_is_not_timed_out(self):
        """timeout_ms absent (0) = do not wait. Fair order lets such a
        receive wait behind an older receive with the same selector until
        the next poll pass (doc/protocol.md, queue.recv), but it asked for
        no timeout, so its answer is {msg: null, timed_out: false}, the
        same as on a queue nobody waits on."""
        other = self.client()
        other.send({"op": "queue.recv", "id": 1, "timeout_ms": 5000})
        wait_for(lambda: self.waiters() == 1)
        held = self.c.call({"op": "queue.recv"})
        parked = self.c.call({"op": "queue.recv", "id": "nowait"})
        self.assertEqual(self.waiters(), 1)
        self.assertEqual(
            (held, parked),
            ({"result": {"msg": None, "timed_out": False}},
             {"id": "nowait", "result": {"msg": None, "timed_out": False}}))


class OrderTest(WaitTest):

    def test_oldest_waiter_first_across_connections(self):
        a, b = self.client(), self.client()
        a.send({"op": "queue.recv", "id": "a", "timeout_ms": 5000})
        wait_for(lambda: self.waiters() == 1)
        b.send({"op": "queue.recv", "id": "b", "timeout_ms": 5000})
        wait_for(lambda: self.waiters() == 2)
        self.send("first")
        self.send("second")
        ra, rb = a.reply(), b.reply()
        self.assertEqual((ra["id"], ra["result"]["msg"]["text"]),
                         ("a", "first"))
        self.assertEqual((rb["id"], rb["result"]["msg"]["text"]),
                         ("b", "second"))

    def test_oldest_waiter_first_one_message_at_a_time(self):
        clients = [self.client() for _ in range(4)]
        for i, cl in enumerate(clients):
            cl.send({"op": "queue.recv", "id": i, "timeout_ms": 5000})
            wait_for(lambda: self.waiters() == i + 1)
        for i, cl in enumerate(clients):
            self.send("m%d" % i)
            r = cl.reply()
            self.assertEqual((r["id"], r["result"]["msg"]["text"]),
                             (i, "m%d" % i))
            for later in clients[i + 1:]:
                self.assertFalse(pending(later, 0.05))

    def test_oldest_waiter_first_same_connection(self):
        for i in range(3):
            self.c.send({"op": "queue.recv", "id": i, "timeout_ms": 5000,
                         "type_max": 10})
        wait_for(lambda: self.waiters() == 3)
        for i in range(3):
            self.send("x%d" % i, type=5)
        for i in range(3):
            r = self.c.reply()
            self.assertEqual((r["id"], r["result"]["msg"]["text"]),
                             (i, "x%d" % i))

    def test_other_selector_is_not_blocked(self):
        a, b = self.client(), self.client()
        a.send({"op": "queue.recv", "id": "a", "timeout_ms": 5000,
                "type": 1})
        wait_for(lambda: self.waiters() == 1)
        b.send({"op": "queue.recv", "id": "b", "timeout_ms": 5000,
                "type": 2})
        wait_for(lambda: self.waiters() == 2)
        self.send("two", type=2)
        r = b.reply()
        self.assertEqual((r["id"], r["result"]["msg"]["text"]), ("b", "two"))
        self.assertEqual(self.waiters(), 1)
        self.send("one", type=1)
        r = a.reply()
        self.assertEqual((r["id"], r["result"]["msg"]["text"]), ("a", "one"))


class CancelLimitTest(WaitTest):

    def test_cancel_parked_wait(self):
        self.c.send({"op": "queue.recv", "id": "w", "timeout_ms": 5000})
        self.c.send({"op": "queue.recv", "id": 5, "timeout_ms": 5000,
                     "queue": "other"})
        wait_for(lambda: self.waiters() == 1 and self.waiters("other") == 1)
        self.c.send({"op": "cancel", "target": "w", "id": "c1"})
        got = {}
        for _ in range(2):
            r = self.c.reply()
            got[r["id"]] = r
        self.assertEqual(got["w"]["error"]["code"], "cancelled")
        self.assertNotIn("result", got["w"])
        self.assertEqual(got["c1"], {"id": "c1", "result": {
            "target": "w", "cancelled": True}})
        self.assertEqual(self.waiters(), 0)
        self.assertEqual(self.waiters("other"), 1)
        # integer ids too; a string "5" is not the integer 5
        self.err({"op": "cancel", "target": "5"}, "not_found")
        self.c.send({"op": "cancel", "target": 5})
        got = [self.c.reply(), self.c.reply()]
        self.assertEqual(got[0], {"id": 5, "error": got[0]["error"]})
        self.assertEqual(got[0]["error"]["code"], "cancelled")
        self.assertEqual(got[1], {"result": {"target": 5,
                                             "cancelled": True}})
        self.assertEqual(self.waiters("other"), 0)
        # cancelled means nothing was taken
        self.send("kept")
        self.assertEqual(self.stat()["messages"], 1)

    def test_cancel_duplicate_id_takes_the_oldest(self):
        self.c.send({"op": "queue.recv", "id": "dup", "timeout_ms": 8000,
                     "type": 1})
        wait_for(lambda: self.waiters() == 1)
        self.c.send({"op": "queue.recv", "id": "dup", "timeout_ms": 8000,
                     "type": 2})
        wait_for(lambda: self.waiters() == 2)
        self.c.send({"op": "cancel", "target": "dup", "id": "c"})
        self.assertEqual(self.c.reply()["error"]["code"], "cancelled")
        self.assertEqual(self.c.reply()["id"], "c")
        # the type 1 wait is gone, the type 2 one still waits
        self.send("one", type=1)
        self.send("two", type=2)
        r = self.c.reply()
        self.assertEqual((r["id"], r["result"]["msg"]["text"]),
                         ("dup", "two"))
        self.assertEqual(self.waiters(), 0)
        self.assertEqual(self.stat()["messages"], 1)

    def test_cancel_errors(self):
        e = self.err({"op": "cancel", "target": "nope", "id": 1},
                     "not_found")
        e = self.err({"op": "cancel", "consumer": 12345}, "not_found")
        e = self.err({"op": "cancel"}, "invalid_params")
        self.assertEqual(e["data"], {"param": "target"})
        e = self.err({"op": "cancel", "target": 1, "consumer": 1},
                     "invalid_params")
        self.assertIn(e["data"]["param"], ("target", "consumer"))
        e = self.err({"op": "cancel", "consumer": 0}, "invalid_params")
        self.assertEqual(e["data"], {"param": "consumer"})
        e = self.err({"op": "cancel", "consumer": "1"}, "invalid_params")
        self.assertEqual(e["data"], {"param": "consumer"})
        e = self.err({"op": "cancel", "target": {"id": 1}}, "invalid_params")
        self.assertEqual(e["data"], {"param": "target"})
        # another connection's wait cannot be cancelled
        other = self.client()
        other.send({"op": "queue.recv", "id": "mine", "timeout_ms": 5000})
        wait_for(lambda: self.waiters() == 1)
        self.err({"op": "cancel", "target": "mine"}, "not_found")
        cons = self.ok({"op": "queue.consume", "queue": "other"},
                       client=other)["consumer"]
        self.err({"op": "cancel", "consumer": cons}, "not_found")
        self.assertEqual(self.waiters(), 1)
        self.assertEqual(self.stat("other")["consumers"], 1)

    def test_cancel_parked_send(self):
        for _ in range(2):
            self.send("a" * 500, queue="small")
        self.c.send({"op": "queue.send", "queue": "small", "type": 1,
                     "text": "b" * 500, "timeout_ms": 5000, "id": "s"})
        wait_for(lambda: self.waiters("small") == 1)
        self.c.send({"op": "cancel", "target": "s", "id": "c"})
        r1, r2 = self.c.reply(), self.c.reply()
        self.assertEqual((r1["id"], r1["error"]["code"]), ("s", "cancelled"))
        self.assertEqual(r2["result"], {"target": "s", "cancelled": True})
        self.assertEqual(self.waiters("small"), 0)
        self.ok({"op": "queue.recv", "queue": "small"}, client=self.side())
        # keep the poll timer running: the cancelled send must not land
        self.c.send({"op": "queue.recv", "queue": "other", "id": "keep",
                     "timeout_ms": 5000})
        wait_for(lambda: self.waiters("other") == 1)
        self.wait_polls()
        self.assertEqual(self.stat("small")["messages"], 1)

    def test_too_many_waits(self):
        for i in range(16):
            self.c.send({"op": "queue.recv", "id": i, "timeout_ms": 5000,
                         "type": i + 1})
        wait_for(lambda: self.waiters() == 16)
        r = self.c.call({"op": "queue.recv", "id": 16, "timeout_ms": 5000,
                         "type": 17})
        self.assertEqual(r["id"], 16)
        self.assertEqual(r["error"]["code"], "too_many_waits")
        self.err({"op": "queue.consume", "queue": "other"}, "too_many_waits")
        for _ in range(2):
            self.send("z" * 500, queue="small")
        self.err({"op": "queue.send", "queue": "small", "type": 1,
                  "text": "z" * 500, "timeout_ms": 1000, "id": "s"},
                 "too_many_waits")
        self.assertEqual(self.waiters(), 16)
        self.assertEqual(self.stat("other")["consumers"], 0)
        self.assertEqual(self.stat("small")["waiters"], 0)
        # requests that do not wait still work
        self.assertEqual(self.ok({"op": "queue.recv", "queue": "other"}),
                         {"msg": None, "timed_out": False})
        # the limit is per connection
        other = self.client()
        other.send({"op": "queue.recv", "id": 1, "timeout_ms": 5000,
                    "queue": "other"})
        wait_for(lambda: self.waiters("other") == 1)
        # cancelling one makes room for one
        self.c.send({"op": "cancel", "target": 3})
        self.assertEqual(self.c.reply()["error"]["code"], "cancelled")
        self.assertEqual(self.c.reply()["result"]["cancelled"], True)
        self.c.send({"op": "queue.recv", "id": 99, "timeout_ms": 5000,
                     "type": 99})
        wait_for(lambda: self.waiters() == 16)
        self.err({"op": "queue.recv", "id": 100, "timeout_ms": 5000},
                 "too_many_waits")
        # and the parked ones are still served
        self.send("for 99", type=99)
        r = self.c.reply()
        self.assertEqual((r["id"], r["result"]["msg"]["text"]),
                         (99, "for 99"))


class ConsumeTest(WaitTest):

    def consume(self, client=None, **kw):
        req = {"op": "queue.consume"}
        req.update(kw)
        r = self.ok(req, client=client)
        self.assertEqual(set(r), {"consumer"})
        self.assertIsInstance(r["consumer"], int)
        self.assertGreaterEqual(r["consumer"], 1)
        return r["consumer"]

    def test_events_in_order(self):
        self.send("before", type=1)
        n = self.consume()
        self.assertEqual(self.stat()["consumers"], 1)
        for i in range(20):
            self.send("m%d" % i, type=i + 1)
        self.ok({"op": "queue.send", "type": 50, "data_b64": "AAEC"},
                client=self.side())
        expected = [("before", 1)] + [("m%d" % i, i + 1) for i in range(20)]
        for text, t in expected:
            ev = self.c.reply()
            self.assertEqual(ev["event"], "message", ev)
            self.assertIsInstance(ev["ts_ms"], int)
            self.assertEqual(ev["data"], {"consumer": n, "queue": "default",
                                          "type": t,
                                          "bytes": len(text), "text": text})
        ev = self.c.reply()
        self.assertEqual(ev["data"]["data_b64"], "AAEC")
        self.assertEqual(self.stat()["messages"], 0)
        s = self.stats()["messages"]
        self.assertEqual((s["sent"], s["received"]), (22, 22))

    def test_consumer_numbers_are_not_reused(self):
        seen = set()
        for _ in range(5):
            n = self.consume()
            self.assertNotIn(n, seen)
            seen.add(n)
            self.ok({"op": "cancel", "consumer": n})
        other = self.client()
        n = self.consume(client=other)
        self.assertNotIn(n, seen)
        self.assertEqual(self.stat()["consumers"], 1)

    def test_event_timestamp(self):
        self.consume()
        before = time.time()
        self.send("now")
        ev = self.c.reply()
        after = time.time()
        self.assertLessEqual(before * 1000 - 1000, ev["ts_ms"])
        self.assertLessEqual(ev["ts_ms"], after * 1000 + 1000)
        self.assertEqual(set(ev), {"event", "data", "ts_ms"})

    def test_consumer_ends_silently_on_half_close(self):
        n = self.consume()
        self.assertEqual(self.stat()["consumers"], 1)
        self.c.shutdown_write()
        self.assertTrue(self.c.closed())
        self.assertEqual(self.c.buf, b"")
        self.assertEqual(self.stat()["consumers"], 0)
        self.send("after")
        self.assertEqual(self.stat()["messages"], 1)
        self.assertGreaterEqual(n, 1)

    def test_consumer_selector_and_encoding(self):
        n = self.consume(type=2, encoding="base64", queue="other")
        self.send("one", type=1, queue="other")
        self.send("two", type=2, queue="other")
        ev = self.c.reply()
        self.assertEqual(ev["data"], {"consumer": n, "queue": "other",
                                      "type": 2, "bytes": 3,
                                      "data_b64": "dHdv"})
        self.wait_polls()
        self.assertEqual(self.stat("other")["messages"], 1)
        self.assertFalse(pending(self.c, 0.05))

    def test_text_consumer_ends_on_binary_message(self):
        n = self.consume(encoding="text")
        self.send("fine", type=1)
        ev = self.c.reply()
        self.assertEqual(ev["data"]["text"], "fine")
        self.ok({"op": "queue.send", "type": 2, "data_b64": "/w=="},
                client=self.side())
        ev = self.c.reply()
        self.assertEqual(ev["event"], "consumer_end")
        self.assertEqual(ev["data"]["consumer"], n)
        self.assertEqual(ev["data"]["error"]["code"], "not_utf8")
        self.assertEqual(self.stat()["consumers"], 0)
        # the message went back on the queue
        st = self.stat()
        self.assertEqual((st["messages"], st["bytes"]), (1, 1))
        self.assertEqual(self.stats()["messages"]["lost"], 0)
        self.err({"op": "cancel", "consumer": n}, "not_found")

    def test_cancel_consumer_stops_events(self):
        n = self.consume()
        for i in range(3):
            self.send("m%d" % i)
        events = []
        wait_for(lambda: self.stat()["messages"] == 0)
        r = self.c.call({"op": "cancel", "consumer": n, "id": "c"})
        while "event" in r:
            events.append(r)
            r = self.c.reply()
        self.assertEqual(r, {"id": "c", "result": {"consumer": n,
                                                   "cancelled": True}})
        while len(events) < 3:
            events.append(self.c.reply())
        self.assertEqual([e["data"]["text"] for e in events],
                         ["m0", "m1", "m2"])
        self.assertEqual(self.stat()["consumers"], 0)
        # keep the poll timer running with a wait on another queue, so
        # that "nothing delivered" means something
        self.c.send({"op": "queue.recv", "queue": "other", "id": "keep",
                     "timeout_ms": 8000})
        wait_for(lambda: self.waiters("other") == 1)
        for i in range(3):
            self.send("after%d" % i)
        self.wait_polls(10)
        self.assertEqual(self.stat()["messages"], 3)
        self.assertFalse(pending(self.c, 0.05))
        self.err({"op": "cancel", "consumer": n}, "not_found")

    def test_two_consumers_share_messages(self):
        other = self.client()
        n1 = self.consume()
        n2 = self.consume(client=other)
        self.assertNotEqual(n1, n2)
        self.assertEqual(self.stat()["consumers"], 2)
        for i in range(10):
            self.send("m%d" % i)
        wait_for(lambda: self.stat()["messages"] == 0)
        got = []
        for cl, n in ((self.c, n1), (other, n2)):
            while pending(cl, 0.2):
                ev = cl.reply()
                self.assertEqual(ev["data"]["consumer"], n)
                got.append(ev["data"]["text"])
        # each message exactly once
        self.assertEqual(sorted(got), sorted("m%d" % i for i in range(10)))

    def test_slow_consumer_is_not_fed(self):
        """A consumer that does not read gets no more than the socket and
        the output buffer hold; the rest stays in the kernel queue and
        nothing is lost when it starts reading."""
        n = self.consume()
        sender = self.client()
        body = "x" * 6990
        sent = 0
        t0 = time.time()
        while time.time() - t0 < 30:
            r = sender.call({"op": "queue.send", "type": 1,
                             "text": "%010d" % sent + body,
                             "timeout_ms": 1000})
            if "error" in r:
                self.assertEqual(r["error"]["code"], "queue_full", r)
                break
            sent += 1
        else:
            self.fail("the consumer was fed %d messages without reading"
                      % sent)
        self.assertGreater(sent, 2)

        # the count settles: nobody takes the messages left in the queue
        def settled():
            before = self.stat()["messages"]
            self.wait_polls(10)
            return self.stat()["messages"] == before

        wait_for(settled)
        left = self.stat()["messages"]
        self.assertGreaterEqual(left, 1)
        self.assertEqual(self.stat()["consumers"], 1)
        # now read: every message arrives, in order, exactly once
        texts = []
        while len(texts) < sent:
            ev = self.c.reply()
            self.assertEqual(ev["event"], "message")
            self.assertEqual(ev["data"]["consumer"], n)
            texts.append(ev["data"]["text"])
        self.assertEqual(texts, ["%010d" % i + body for i in range(sent)])
        self.assertEqual(self.stat()["messages"], 0)
        self.assertFalse(pending(self.c, 0.1))
        m = self.stats()["messages"]
        self.assertEqual(m["lost"], 0)
        self.assertEqual(m["sent"], sent)
        self.assertEqual(m["received"] - m["put_back"], sent)


    def test_slow_consumer_disconnects_nothing_lost(self):
        """Messages whose event never left the output buffer go back on
        the queue (waiting for room if need be) when the consumer's client
        goes away; only those already written to the socket are gone."""
        self.consume()
        sender = self.client()
        body = "y" * 6990
        sent = 0
        while sent < 1000:
            r = sender.call({"op": "queue.send", "type": 1,
                             "text": "%010d" % sent + body,
                             "timeout_ms": 1000})
            if "error" in r:
                self.assertEqual(r["error"]["code"], "queue_full", r)
                break
            sent += 1
        self.assertGreater(sent, 2)
        self.assertEqual(self.stat()["messages"], 2)
        self.c.close()
        wait_for(lambda: self.stat()["consumers"] == 0)
        # the queue is full: what came back out of the output buffer
        # waits for room, apart from client waits
        st = self.stat()
        pend = st.get("put_backs_pending")
        self.assertEqual(st["waiters"], 0)
        self.assertIsInstance(pend, int)
        self.assertGreater(pend, 0)
        self.assertEqual(self.stats()["waiters"], pend)
        got = []
        while True:
            r = self.ok({"op": "queue.recv", "timeout_ms": 300},
                        client=self.side())
            if r["msg"] is not None:
                got.append(int(r["msg"]["text"][:10]))
                continue
            if self.stats()["waiters"] == 0:
                break
        got.sort()
        # a contiguous tail of what was sent: the two left in the queue
        # and every message still in the output buffer
        self.assertEqual(len(got), 2 + pend)
        self.assertEqual(got, list(range(sent - len(got), sent)))
        m = self.stats()["messages"]
        self.assertEqual(m["lost"], 0)
        self.assertEqual(m["put_back"], pend)
        self.assertEqual(self.stat()["put_backs_pending"], 0)


class DisconnectTest(WaitTest):

    def check_kept(self, text):
        self.assertEqual(self.stat()["messages"], 1)
        s = self.stats()["messages"]
        self.assertEqual(s["lost"], 0)
        r = self.ok({"op": "queue.recv"}, client=self.side())
        self.assertEqual(r["msg"]["text"], text)

    def test_parked_waiter_disconnects(self):
        w = self.d.client()
        w.send({"op": "queue.recv", "id": 1, "timeout_ms": 8000})
        wait_for(lambda: self.waiters() == 1)
        w.close()
        self.send("precious")
        wait_for(lambda: self.waiters() == 0)
        self.check_kept("precious")

    def test_held_waiter_disconnects(self):
        w = self.d.client()
        w.send({"op": "queue.recv", "timeout_ms": 8000})
        wait_for(lambda: self.waiters() == 1)
        w.close()
        self.send("precious too")
        wait_for(lambda: self.waiters() == 0)
        self.check_kept("precious too")

    def test_many_waiters_disconnect(self):
        ws = [self.d.client() for _ in range(5)]
        for i, w in enumerate(ws):
            w.send({"op": "queue.recv", "id": i, "timeout_ms": 8000})
        wait_for(lambda: self.waiters() == 5)
        for w in ws:
            w.close()
        for i in range(5):
            self.send("m%d" % i)
        wait_for(lambda: self.waiters() == 0)
        wait_for(lambda: self.stat()["messages"] == 5)
        self.assertEqual(self.stats()["messages"]["lost"], 0)
        got = sorted(self.ok({"op": "queue.recv"}, client=self.side())
                     ["msg"]["text"] for _ in range(5))
        self.assertEqual(got, ["m%d" % i for i in range(5)])

    def test_consumer_disconnects(self):
        w = self.d.client()
        self.ok({"op": "queue.consume"}, client=w)
        w.close()
        wait_for(lambda: self.stat()["consumers"] == 0)
        self.send("after")
        self.check_kept("after")

    def test_half_closed_waiter_still_answered(self):
        w = self.client()
        w.send({"op": "queue.recv", "id": "h", "timeout_ms": 8000})
        wait_for(lambda: self.waiters() == 1)
        w.shutdown_write()
        self.wait_polls(3)
        self.send("for h")
        r = w.reply()
        self.assertEqual((r["id"], r["result"]["msg"]["text"]),
                         ("h", "for h"))
        self.assertTrue(w.closed())


class SendTimeoutTest(WaitTest):

    def fill_small(self):
        for t in ("a", "b"):
            self.send(t * 500, queue="small")

    def test_send_waits_for_room(self):
        self.fill_small()
        self.c.send({"op": "queue.send", "queue": "small", "type": 3,
                     "text": "c" * 500, "timeout_ms": 5000, "id": "s"})
        wait_for(lambda: self.waiters("small") == 1)
        self.assertFalse(pending(self.c, 0.1))
        r = self.ok({"op": "queue.recv", "queue": "small"},
                    client=self.side())
        self.assertEqual(r["msg"]["text"], "a" * 500)
        r = self.c.reply()
        self.assertEqual(r, {"id": "s", "result": {"queue": "small",
                                                   "type": 3,
                                                   "bytes": 500}})
        self.assertEqual(self.waiters("small"), 0)
        texts = [self.ok({"op": "queue.recv", "queue": "small"},
                         client=self.side())["msg"]["text"]
                 for _ in range(2)]
        self.assertEqual(texts, ["b" * 500, "c" * 500])

    def test_held_send_waits_for_room(self):
        self.fill_small()
        self.c.send_raw(json.dumps({"op": "queue.send", "queue": "small",
                                    "type": 3, "text": "c" * 500,
                                    "timeout_ms": 5000}).encode() +
                        b'\n{"op":"hello","id":"h"}\n')
        wait_for(lambda: self.waiters("small") == 1)
        self.assertFalse(pending(self.c, 0.1))
        self.ok({"op": "queue.recv", "queue": "small"}, client=self.side())
        self.assertEqual(self.c.reply(), {"result": {"queue": "small",
                                                     "type": 3,
                                                     "bytes": 500}})
        self.assertEqual(self.c.reply()["id"], "h")

    def test_waiting_senders_keep_their_order(self):
        self.fill_small()
        a, b = self.client(), self.client()
        a.send({"op": "queue.send", "queue": "small", "type": 1,
                "text": "A" * 500, "timeout_ms": 5000, "id": "a"})
        wait_for(lambda: self.waiters("small") == 1)
        b.send({"op": "queue.send", "queue": "small", "type": 1,
                "text": "B" * 500, "timeout_ms": 5000, "id": "b"})
        wait_for(lambda: self.waiters("small") == 2)
        for _ in range(2):
            self.ok({"op": "queue.recv", "queue": "small"},
                    client=self.side())
        self.assertEqual(a.reply()["id"], "a")
        self.assertEqual(b.reply()["id"], "b")
        texts = [self.ok({"op": "queue.recv", "queue": "small"},
                         client=self.side())["msg"]["text"][0]
                 for _ in range(2)]
        self.assertEqual(texts, ["A", "B"])

    def test_new_send_does_not_overtake_waiting_sends(self):
        self.fill_small()
        self.c.send({"op": "queue.send", "queue": "small", "type": 1,
                     "text": "A" * 500, "timeout_ms": 5000, "id": "a"})
        wait_for(lambda: self.waiters("small") == 1)
        # make room and send at once, in one write: the room is for "a"
        other = self.client()
        other.send_raw(b'{"op":"queue.recv","queue":"small","id":1}\n'
                       b'{"op":"queue.send","queue":"small","type":1,'
                       b'"text":"B","id":2}\n'
                       b'{"op":"queue.send","queue":"small","type":1,'
                       b'"text":"C","id":3,"timeout_ms":5000}\n')
        self.assertEqual(other.reply()["result"]["msg"]["text"], "a" * 500)
        r = other.reply()
        self.assertEqual((r["id"], r["error"]["code"]), (2, "queue_full"))
        self.assertEqual(self.c.reply()["id"], "a")
        # "C" waits behind "a" and gets in once there is room again
        r = other.reply()
        self.assertEqual(r["id"], 3)
        self.assertEqual(r["result"]["bytes"], 1)
        texts = [self.ok({"op": "queue.recv", "queue": "small"},
                         client=self.side())["msg"]["text"]
                 for _ in range(3)]
        self.assertEqual(texts, ["b" * 500, "A" * 500, "C"])

    def test_send_times_out_with_queue_full(self):
        self.fill_small()
        t0 = time.time()
        r = self.c.call({"op": "queue.send", "queue": "small", "type": 1,
                         "text": "c" * 500, "timeout_ms": 300, "id": 4})
        elapsed = time.time() - t0
        self.assertEqual(r["id"], 4)
        self.assertEqual(r["error"]["code"], "queue_full")
        self.assertGreaterEqual(elapsed, 0.29)
        self.assertLess(elapsed, 5)
        self.assertEqual(self.waiters("small"), 0)
        st = self.stat("small")
        self.assertEqual((st["messages"], st["bytes"]), (2, 1000))
        # room made after the timeout: the timed-out message never lands
        self.ok({"op": "queue.recv", "queue": "small"}, client=self.side())
        self.c.send({"op": "queue.recv", "queue": "other", "id": "keep",
                     "timeout_ms": 5000})
        self.wait_polls(5)
        self.assertEqual(self.stat("small")["messages"], 1)


class PollTimerTest(WaitTest):

    def test_no_waiters_no_polling(self):
        self.c.send({"op": "queue.recv", "id": 1, "timeout_ms": 100})
        self.assertEqual(self.c.reply()["result"]["timed_out"], True)
        p1 = self.stats()["polls"]
        self.assertGreater(p1, 0)
        time.sleep(0.3)
        self.assertEqual(self.stats()["polls"], p1)
        # a consumer keeps the timer running
        n = self.ok({"op": "queue.consume"})["consumer"]
        self.wait_polls(10)
        self.ok({"op": "cancel", "consumer": n})
        p2 = self.stats()["polls"]
        time.sleep(0.3)
        self.assertLessEqual(self.stats()["polls"], p2 + 1)


class QueueRemovedTest(WaitTest):

    def test_waiter_on_queue_removed_underneath(self):
        self.c.send({"op": "queue.recv", "id": "r", "timeout_ms": 8000})
        wait_for(lambda: self.waiters() == 1)
        old = self.stat()["msqid"]
        ipcb_test.ipcrm_queue(self.d.key())
        r = self.c.reply()
        self.assertEqual(r["id"], "r")
        self.assertEqual(r["error"]["code"], "queue_removed")
        # the daemon opens (creates) the key again and goes on
        st = self.stat()
        self.assertNotEqual(st["msqid"], old)
        self.send("again")
        self.assertEqual(self.ok({"op": "queue.recv"})["msg"]["text"],
                         "again")


if __name__ == "__main__":
    ipcb_test.main()
