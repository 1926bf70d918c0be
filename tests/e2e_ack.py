"""At-least-once delivery: ack/nack, put-back on close and on timeout,
prefetch windows, tags that belong to other connections."""
import ipcb_test
from ipcb_test import DaemonTest, wait_for


class AckTest(DaemonTest):
    server = {"ack_timeout_ms": "60000"}

    def send(self, text, type=1):
        self.ok({"op": "queue.send", "type": type, "text": text},
                client=self.side())

    def messages(self):
        return self.ok({"op": "queue.stat"}, client=self.side())["messages"]

    def stats(self):
        return self.ok({"op": "stats"}, client=self.side())["messages"]

    def test_recv_ack_removes_for_good(self):
        self.send("one")
        m = self.ok({"op": "queue.recv", "ack": True})["msg"]
        self.assertEqual(m["text"], "one")
        self.assertIsInstance(m["tag"], int)
        self.assertEqual(self.stats()["unacked"], 1)
        r = self.ok({"op": "queue.ack", "tag": m["tag"]})
        self.assertEqual(r, {"tag": m["tag"], "acked": True})
        self.c.close()
        wait_for(lambda: self.stats()["unacked"] == 0)
        self.assertEqual(self.messages(), 0)
        self.assertEqual(self.stats()["redelivered"], 0)

    def test_close_without_ack_puts_back_same_type(self):
        self.send("keep me", type=7)
        m = self.ok({"op": "queue.recv", "ack": True})["msg"]
        self.assertEqual(self.messages(), 0)
        self.c.close()
        wait_for(lambda: self.messages() == 1)
        again = self.ok({"op": "queue.recv", "type": 7}, client=self.side())
        self.assertEqual(again["msg"]["text"], "keep me")
        self.assertEqual(self.stats()["redelivered"], 1)
        self.assertEqual(self.stats()["lost"], 0)
        self.assertIn("redelivery: put back unacked tag %d" % m["tag"],
                      self.d.read_log())

    def test_nack_puts_back_at_once(self):
        self.send("again")
        m = self.ok({"op": "queue.recv", "ack": True})["msg"]
        r = self.ok({"op": "queue.nack", "tag": m["tag"]})
        self.assertEqual(r, {"tag": m["tag"], "requeued": True})
        self.assertEqual(self.messages(), 1)
        self.err({"op": "queue.ack", "tag": m["tag"]}, "not_found")

    def test_ack_timeout_redelivers(self):
        self.send("slow")
        m = self.ok({"op": "queue.recv", "ack": True,
                     "ack_timeout_ms": 100})["msg"]
        wait_for(lambda: self.messages() == 1)
        self.err({"op": "queue.ack", "tag": m["tag"]}, "not_found")

    def test_foreign_made_up_and_double_tags(self):
        self.send("x")
        m = self.ok({"op": "queue.recv", "ack": True})["msg"]
        e = self.err({"op": "queue.ack", "tag": m["tag"]},
                     "not_found", client=self.side())
        self.assertEqual(e["data"], {"tag": m["tag"]})
        self.err({"op": "queue.ack", "tag": 999999}, "not_found")
        self.ok({"op": "queue.ack", "tag": m["tag"]})
        self.err({"op": "queue.ack", "tag": m["tag"]}, "not_found")
        self.assertEqual(self.stats()["unacked"], 0)
        self.assertEqual(self.messages(), 0)

    def test_bad_params(self):
        e = self.err({"op": "queue.ack"}, "invalid_params")
        self.assertEqual(e["data"]["param"], "tag")
        e = self.err({"op": "queue.recv", "prefetch": 2}, "invalid_params")
        self.assertEqual(e["data"]["param"], "prefetch")
        e = self.err({"op": "queue.recv", "ack_timeout_ms": 5},
                     "invalid_params")
        self.assertEqual(e["data"]["param"], "ack_timeout_ms")
        e = self.err({"op": "queue.consume", "ack": True, "prefetch": 0},
                     "invalid_params")
        self.assertEqual(e["data"]["param"], "prefetch")

    def test_prefetch_window_bounds_a_slow_consumer(self):
        for i in range(10):
            self.send("m%d" % i)
        r = self.ok({"op": "queue.consume", "ack": True, "prefetch": 3})
        got = [self.c.reply()["data"] for _ in range(3)]
        self.assertEqual([g["text"] for g in got], ["m0", "m1", "m2"])
        wait_for(lambda: self.messages() == 7)
        self.assertEqual(self.stats()["unacked"], 3)
        self.ok({"op": "queue.ack", "tag": got[0]["tag"]})
        ev = self.c.reply()
        self.assertEqual(ev["event"], "message")
        self.assertEqual(ev["data"]["text"], "m3")
        self.assertEqual(ev["data"]["consumer"], r["consumer"])
        self.assertEqual(self.messages(), 6)
        # the consumer dies holding 3 unacked: all come back
        self.c.close()
        wait_for(lambda: self.messages() == 9)
        self.assertEqual(self.stats()["lost"], 0)


if __name__ == "__main__":
    ipcb_test.main()
