"""Daemon crash safety: messages the daemon holds live in a journal in
state_dir and are put back on their queue when it starts again."""
import os
import signal
import subprocess

import ipcb_test
from ipcb_test import Daemon, DaemonTest, wait_for


class JournalTest(DaemonTest):
    server = {"journal_slots": "4"}

    def send(self, text, type=1, client=None):
        self.ok({"op": "queue.send", "type": type, "text": text},
                client=client or self.side())

    def messages(self, client=None):
        return self.ok({"op": "queue.stat"},
                       client=client or self.side())["messages"]

    def kill_and_restart(self):
        self.d.proc.send_signal(signal.SIGKILL)
        self.d.proc.wait()
        self.d.logf.close()
        self.d.proc = None
        self.d.start()
        c = self.d.client()
        self.addCleanup(c.close)
        return c

    def test_sigkill_with_unacked_messages_restores_them(self):
        for i in range(3):
            self.send("m%d" % i, type=i + 1)
        got = [self.ok({"op": "queue.recv", "ack": True})["msg"]
               for _ in range(2)]
        self.assertEqual([m["text"] for m in got], ["m0", "m1"])
        self.assertEqual(self.messages(), 1)
        c = self.kill_and_restart()
        st = self.ok({"op": "stats"}, client=c)["messages"]
        self.assertEqual(st["restored"], 2)
        self.assertEqual(self.messages(c), 3)
        back = sorted((m["type"], m["text"]) for m in
                      (self.ok({"op": "queue.recv"}, client=c)["msg"]
                       for _ in range(3)))
        # exact bytes and types come back
        self.assertEqual(back, [(1, "m0"), (2, "m1"), (3, "m2")])
        self.assertIn("journal: restoring a type 1 message of 2 bytes",
                      self.d.read_log())

    def test_acked_messages_are_not_restored(self):
        self.send("done")
        m = self.ok({"op": "queue.recv", "ack": True})["msg"]
        self.ok({"op": "queue.ack", "tag": m["tag"]})
        c = self.kill_and_restart()
        self.assertEqual(self.ok({"op": "stats"}, client=c)["messages"]
                         ["restored"], 0)
        self.assertEqual(self.messages(c), 0)

    def test_full_journal_stops_pulling_instead_of_dropping(self):
        for i in range(6):
            self.send("x%d" % i)
        for _ in range(4):
            self.ok({"op": "queue.recv", "ack": True})
        # 4 slots held: nothing more leaves the queue
        r = self.ok({"op": "queue.recv"})
        self.assertIsNone(r["msg"])
        self.assertEqual(self.messages(), 2)
        self.assertIn("journal full", self.d.read_log())
        self.c.close()   # unacked go back, slots free up
        wait_for(lambda: self.messages() == 6)
        r = self.ok({"op": "queue.recv"}, client=self.side())
        self.assertIsNotNone(r["msg"])


    def restart_with_slots(self, n, kill=False):
        if kill:
            self.d.proc.send_signal(signal.SIGKILL)
            self.d.proc.wait()
            self.d.logf.close()
            self.d.proc = None
        else:
            self.d.stop()
        self.d.server["journal_slots"] = str(n)
        self.d.write_config()
        with open(self.d.log, "ab") as f:
            f.write(b"--- restart ---\n")
        self.d.start()
        c = self.d.client()
        self.addCleanup(c.close)
        return c, self.d.read_log().rsplit("--- restart ---", 1)[-1]

    def test_new_journal_slots_apply_to_an_empty_journal(self):
        c, log = self.restart_with_slots(7)
        self.assertIn("7 slots of", log)
        for i in range(7):
            self.send("y%d" % i, client=c)
        for _ in range(7):
            self.ok({"op": "queue.recv", "ack": True}, client=c)
        self.assertEqual(self.messages(c), 0)

    def test_journal_holding_messages_keeps_its_shape(self):
        self.send("held")
        self.ok({"op": "queue.recv", "ack": True})
        c, log = self.restart_with_slots(7, kill=True)
        self.assertIn("keeps its 4 slots", log)
        self.assertIn("4 slots of", log)
        # restored, and the next start (now empty) takes the new size
        self.assertEqual(self.ok({"op": "queue.recv"}, client=c)["msg"]
                         ["text"], "held")
        c, log = self.restart_with_slots(7)
        self.assertIn("7 slots of", log)


class PutBackOnRemovedQueueTest(DaemonTest):
    """A put-back waiting for room whose queue is removed goes on to the
    queue the daemon re-creates (it once stayed in the journal until the
    next start, holding its slot; without a journal it was lost)."""
    queues = {"default": {"max_bytes": "64"}}
    server = {"journal_slots": "1"}

    def test_waiting_put_back_follows_the_recreated_queue(self):
        side = self.side()
        self.ok({"op": "queue.send", "type": 1, "text": "a" * 40},
                client=side)
        self.ok({"op": "queue.recv", "ack": True})
        self.ok({"op": "queue.send", "type": 2, "text": "b" * 40},
                client=side)
        self.c.close()              # the put-back of "a" waits for room
        wait_for(lambda: self.ok({"op": "queue.stat"}, client=side)
                 ["put_backs_pending"] == 1)
        subprocess.run(["ipcrm", "-Q", "0x%08x" % self.d.key()],
                       check=True)
        wait_for(lambda: self.ok({"op": "queue.stat"}, client=side)
                 ["put_backs_pending"] == 0)
        m = self.ok({"op": "queue.recv"}, client=side)["msg"]
        self.assertEqual((m["type"], m["text"]), (1, "a" * 40))
        # its journal slot is free again: the one slot takes a delivery
        self.ok({"op": "queue.send", "type": 3, "text": "c"}, client=side)
        m = self.ok({"op": "queue.recv", "ack": True}, client=side)["msg"]
        self.assertEqual(m["text"], "c")
        self.assertEqual(self.ok({"op": "stats"}, client=side)["messages"]
                         ["lost"], 0)


class JournalStateDirTest(DaemonTest):
    def test_second_daemon_on_the_same_state_dir_refuses(self):
        other = Daemon(server={"state_dir": self.d.server["state_dir"]})
        self.addCleanup(other.cleanup)
        r = subprocess.run([ipcb_test.DAEMON, "-c", other.conf],
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 1)
        self.assertIn("another ipcbridge uses this state_dir", r.stderr)
        self.assertTrue(os.path.exists(os.path.join(
            self.d.server["state_dir"], "journal")))


class RestoreToFullQueueTest(DaemonTest):
    queues = {"default": {"max_bytes": "64"}}

    def test_restore_waits_for_room(self):
        side = self.side()
        self.ok({"op": "queue.send", "type": 1, "text": "a" * 40},
                client=side)
        m = self.ok({"op": "queue.recv", "ack": True})["msg"]
        self.assertEqual(m["bytes"], 40)
        self.ok({"op": "queue.send", "type": 2, "text": "b" * 40},
                client=side)
        self.d.proc.send_signal(signal.SIGKILL)
        self.d.proc.wait()
        self.d.logf.close()
        self.d.proc = None
        self.d.start()
        c = self.d.client()
        self.addCleanup(c.close)
        st = self.ok({"op": "queue.stat"}, client=c)
        self.assertEqual(st["messages"], 1)       # no room for it yet
        self.assertEqual(st["put_backs_pending"], 1)
        r = self.ok({"op": "queue.recv"}, client=c)["msg"]
        self.assertEqual(r["type"], 2)
        wait_for(lambda: self.ok({"op": "queue.stat"}, client=c)
                 ["messages"] == 1)
        r = self.ok({"op": "queue.recv"}, client=c)["msg"]
        self.assertEqual((r["type"], r["text"]), (1, "a" * 40))
        self.assertEqual(self.ok({"op": "stats"}, client=c)["messages"]
                         ["lost"], 0)


if __name__ == "__main__":
    ipcb_test.main()
