"""Fault injection and crash points, over the real socket.

tests/ipcbridge-fault is the daemon built with src/fault.c: IPCBRIDGE_FAULT
makes chosen System V or socket calls fail with a chosen errno (counting
from the moment the daemon starts serving), or SIGKILLs the daemon the Nth
time it passes a named crash point. Each test injects faults, checks the
reply the client gets, that nothing is lost (the message is back on its
queue, or restored from the journal after the crash), and that the daemon
keeps serving everyone else. The log's "fault:" lines count what was
injected; the suite prints the total.

Run: IPCBRIDGE_FAULT_DAEMON=tests/ipcbridge-fault IPCBRIDGE=src/ipcbridge \
     PYTHONPATH=tests /usr/bin/python3 tests/e2e_fault.py
"""
import os
import resource
import signal
import socket
import struct
import sys
import unittest

import ipcb_test
from ipcb_test import Client, Daemon, wait_for

FAULT_DAEMON = os.environ.get("IPCBRIDGE_FAULT_DAEMON", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "ipcbridge-fault"))
need_fault_build = unittest.skipUnless(
    os.access(FAULT_DAEMON, os.X_OK),
    "tests/ipcbridge-fault not built (make check builds it)")

INJECTED = {"faults": 0, "crashes": 0}


class FaultTest(unittest.TestCase):
    server = {"journal_slots": "8"}

    def start(self, fault, shms=None):
        self.d = Daemon(server=dict(self.server), shms=shms)
        self.addCleanup(self.d.cleanup)
        self.d.start(binary=FAULT_DAEMON, env={"IPCBRIDGE_FAULT": fault},
                     probe=False)
        self.addCleanup(self.count_injected)
        return self.d

    def count_injected(self):
        log = self.d.read_log()
        INJECTED["faults"] += log.count("fault: ") - \
            log.count("fault: crash at")
        INJECTED["crashes"] += log.count("fault: crash at")

    def client(self):
        c = self.d.client()
        self.addCleanup(c.close)
        return c

    def call(self, req, client=None):
        return (client or self.client()).call(req)

    def ok(self, req, client=None):
        r = self.call(req, client)
        self.assertIn("result", r, r)
        return r["result"]

    def err(self, req, code, client=None):
        r = self.call(req, client)
        self.assertIn("error", r, r)
        self.assertEqual(r["error"]["code"], code, r)
        return r["error"]

    def messages(self):
        return self.ok({"op": "queue.stat"})["messages"]

    def assert_serving(self):
        """The daemon is alive and a fresh client gets a round trip."""
        self.assertIsNone(self.d.proc.poll(), self.d.read_log())
        c = self.client()
        self.ok({"op": "hello"}, c)
        self.ok({"op": "queue.send", "type": 9, "text": "probe"}, c)
        m = self.ok({"op": "queue.recv", "type": 9}, c)["msg"]
        self.assertEqual(m["text"], "probe")

    def wait_killed(self):
        self.assertEqual(self.d.proc.wait(10), -signal.SIGKILL,
                         self.d.read_log())
        self.d.logf.close()
        self.d.proc = None

    def restart(self):
        """Start the production daemon on the same config and state_dir."""
        with open(self.d.log, "ab") as f:
            f.write(b"--- restart ---\n")
        self.d.start()

    def log_since_restart(self):
        return self.d.read_log().rsplit("--- restart ---", 1)[-1]


@need_fault_build
class CrashPointTest(FaultTest):
    """SIGKILL at the narrow places; the journal decides what survives."""

    def test_after_msgrcv_message_is_restored(self):
        self.start("after_msgrcv:1")
        self.ok({"op": "queue.send", "type": 5, "text": "held"})
        c = self.client()
        c.send({"op": "queue.recv", "id": 1})
        self.assertTrue(c.closed(), "the daemon should have died")
        self.wait_killed()
        self.restart()
        self.assertIn("journal: restoring a type 5 message of 4 bytes",
                      self.log_since_restart())
        self.assertEqual(self.messages(), 1)
        self.assertEqual(self.ok({"op": "queue.recv"})["msg"]["text"],
                         "held")
        self.assertEqual(self.messages(), 0)

    def test_mid_receive_is_counted_lost_not_silent(self):
        # the stated window: msgrcv took it, the length is not recorded
        self.start("mid_receive:1")
        self.ok({"op": "queue.send", "type": 5, "text": "gone"})
        self.ok({"op": "queue.send", "type": 6, "text": "kept"})
        c = self.client()
        c.send({"op": "queue.recv", "type": 5, "id": 1})
        self.assertTrue(c.closed())
        self.wait_killed()
        self.restart()
        log = self.log_since_restart()
        self.assertIn("LOST a type 5 message (key 0x%08x): the daemon was "
                      "killed while receiving it" % self.d.key(), log)
        self.assertEqual(self.ok({"op": "stats"})["messages"]["lost"], 1)
        self.assertEqual(self.ok({"op": "queue.recv"})["msg"]["text"],
                         "kept")
        self.assertEqual(self.messages(), 0)

    def test_after_reply_is_delivered_twice_and_logged(self):
        # the documented window: written, the slot not yet freed
        self.start("after_reply:1")
        self.ok({"op": "queue.send", "type": 5, "text": "twice"})
        c = self.client()
        r = c.call({"op": "queue.recv", "id": 1})
        self.assertEqual(r["result"]["msg"]["text"], "twice")
        self.wait_killed()
        self.restart()
        self.assertIn("journal: restoring a type 5 message",
                      self.log_since_restart())
        self.assertEqual(self.ok({"op": "queue.recv"})["msg"]["text"],
                         "twice")
        self.assertEqual(self.messages(), 0)

    def test_after_putback_duplicates_and_logs(self):
        self.start("after_putback:1")
        self.ok({"op": "queue.send", "type": 5, "text": "back"})
        c = self.client()
        m = c.call({"op": "queue.recv", "ack": True, "id": 1})
        self.assertEqual(m["result"]["msg"]["text"], "back")
        c.send({"op": "queue.nack", "tag": m["result"]["msg"]["tag"],
                "id": 2})
        self.assertTrue(c.closed())
        self.wait_killed()
        self.restart()
        log = self.log_since_restart()
        self.assertIn("journal: restoring a type 5 message", log)
        # on the queue (the put-back) and from the journal: two copies
        texts = [self.ok({"op": "queue.recv"})["msg"]["text"]
                 for _ in range(2)]
        self.assertEqual(texts, ["back", "back"])
        self.assertEqual(self.messages(), 0)

    def test_after_msgsnd_the_message_is_there(self):
        # the client never got its ok: at-least-once from its side
        self.start("after_msgsnd:1")
        c = self.client()
        c.send({"op": "queue.send", "type": 5, "text": "sent", "id": 1})
        self.assertTrue(c.closed())
        self.wait_killed()
        self.restart()
        self.assertEqual(self.ok({"op": "queue.recv"})["msg"]["text"],
                         "sent")

    def test_after_shm_write_leaves_the_segment_torn(self):
        self.start("after_shm_write:2")
        self.ok({"op": "shm.put", "var": 1, "text": "whole"})
        c = self.client()
        c.send({"op": "shm.put", "var": 2, "text": "never confirmed",
                "id": 1})
        self.assertTrue(c.closed())
        self.wait_killed()
        self.restart()
        e = self.err({"op": "shm.get", "var": 1}, "corrupt")
        self.assertIn("a writer died while writing it", e["message"])
        self.assertEqual(self.ok({"op": "shm.clear"})["was_torn"], True)
        self.ok({"op": "shm.put", "var": 1, "text": "again"})
        self.assertEqual(self.ok({"op": "shm.get", "var": 1})["text"],
                         "again")


@need_fault_build
class CallFaultTest(FaultTest):
    """Failing System V and socket calls: a specific reply, nothing lost,
    everyone else served."""

    def test_recv_eintr_is_retried(self):
        self.start("recv=EINTR:1:3")
        self.ok({"op": "hello"})
        self.assert_serving()

    def test_recv_error_closes_only_that_connection(self):
        self.start("recv=ECONNRESET:1")
        c = self.client()
        c.send({"op": "hello", "id": 1})
        self.assertTrue(c.closed())
        self.assert_serving()
        self.assertIn("Connection reset by peer", self.d.read_log())

    def test_send_eagain_reply_arrives_later(self):
        self.start("send=EAGAIN:1:3")
        self.assertEqual(self.ok({"op": "hello"})["server"], "ipcbridge")
        self.assert_serving()

    def test_send_epipe_puts_the_delivery_back(self):
        self.start("send=EPIPE:2")
        self.ok({"op": "queue.send", "type": 5, "text": "keep"})  # send 1
        c = self.client()
        c.send({"op": "queue.recv", "id": 1})                     # send 2
        self.assertTrue(c.closed())
        wait_for(lambda: self.messages() == 1)
        self.assertEqual(self.ok({"op": "queue.recv"})["msg"]["text"],
                         "keep")
        self.assert_serving()

    def test_msgsnd_faults(self):
        self.start("msgsnd=EAGAIN:1,msgsnd=EIDRM:2,msgsnd=ENOMEM:3,"
                   "msgsnd=EINTR:4")
        send = {"op": "queue.send", "type": 1, "text": "x"}
        self.err(send, "queue_full")
        e = self.err(send, "queue_removed")
        self.assertIn("msgsnd", e["message"])
        e = self.err(send, "ipc_error")
        self.assertIn("Cannot allocate memory", e["message"])
        self.ok(send)           # EINTR: retried
        self.assertEqual(self.messages(), 1)
        self.assert_serving()

    def test_msgrcv_faults_leave_the_message(self):
        self.start("msgrcv=EIDRM:1,msgrcv=ENOMEM:2,msgrcv=EINTR:3")
        self.ok({"op": "queue.send", "type": 1, "text": "stays"})
        self.err({"op": "queue.recv"}, "queue_removed")
        e = self.err({"op": "queue.recv"}, "ipc_error")
        self.assertIn("msgrcv", e["message"])
        self.assertEqual(self.messages(), 1)
        self.assertEqual(self.ok({"op": "queue.recv"})["msg"]["text"],
                         "stays")
        self.assert_serving()

    def test_msgctl_fault_on_stat_reopens(self):
        # a stale id looks like EINVAL: the key is opened again, and the
        # stat answered from the queue that is there
        self.start("msgctl=EINVAL:1")
        self.ok({"op": "queue.send", "type": 1, "text": "x"})
        self.assertEqual(self.messages(), 1)
        self.assertIn("was removed", self.d.read_log())
        self.assert_serving()

    def test_semop_faults(self):
        # put: lock (EINTR, retried), release; get: lock fails EIDRM
        self.start("semop=EINTR:1,semop=EIDRM:4")
        self.ok({"op": "shm.put", "var": 1, "text": "v"})
        e = self.err({"op": "shm.get", "var": 1}, "sem_removed")
        self.assertIn("semop", e["message"])
        self.assertEqual(self.ok({"op": "shm.get", "var": 1})["text"], "v")
        st = self.ok({"op": "shm.stat"})
        self.assertEqual((st["lock"], st.get("corrupt")), (1, None))
        self.assert_serving()

    def test_failed_release_does_not_keep_the_lock(self):
        # without care the daemon would hold the lock forever
        self.start("semop=ENOMEM:2")
        self.ok({"op": "shm.put", "var": 1, "text": "v"})
        self.assertIn("releasing the semaphore", self.d.read_log())
        self.assertEqual(self.ok({"op": "shm.stat"})["lock"], 1)
        self.assertEqual(self.ok({"op": "shm.get", "var": 1})["text"], "v")
        self.assert_serving()

    def test_semctl_fault_after_the_lock_releases_it(self):
        self.start("semctl=EACCES:1")
        e = self.err({"op": "shm.get", "var": 1}, "ipc_error")
        self.assertIn("Permission denied", e["message"])
        self.assertEqual(self.ok({"op": "shm.stat"})["lock"], 1)
        self.err({"op": "shm.get", "var": 1}, "not_found")

    def test_shmctl_fault_reattaches(self):
        self.start("shmctl=EINVAL:1")
        self.err({"op": "shm.get", "var": 1}, "shm_removed")
        self.ok({"op": "shm.put", "var": 1, "text": "kept"})
        self.assertEqual(self.ok({"op": "shm.get", "var": 1})["text"],
                         "kept")
        self.assert_serving()


@need_fault_build
@unittest.skipIf(ipcb_test.VALGRIND, "valgrind keeps descriptors of its "
                 "own above the limit")
class OutOfDescriptorsTest(FaultTest):
    def test_emfile_pauses_accepting_then_recovers(self):
        self.start("")
        pid = self.d.proc.pid
        fds = len(os.listdir("/proc/%d/fd" % pid))
        keep = [self.client() for _ in range(2)]
        hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)[1]
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (fds + 2, hard))
        extra = []
        for _ in range(3):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(self.d.sock)      # the backlog takes it
            extra.append(s)
        wait_for(lambda: "pausing accepts" in self.d.read_log())
        for c in keep:
            self.ok({"op": "hello"}, c)     # the others keep being served
        for s in extra:
            s.close()
        for c in keep:
            c.close()
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (1024, hard))
        wait_for(lambda: self.call({"op": "hello"}).get("result"))
        self.assert_serving()


def tearDownModule():
    print("\nfaults injected: %d, crashes: %d" % (
        INJECTED["faults"], INJECTED["crashes"]), file=sys.stderr)


if __name__ == "__main__":
    ipcb_test.main()
