"""Access control and limits: who may connect, who may read or write a
queue or segment, per-user connection limits, slowloris and idle
timeouts, clients that never read, privilege drop, config hygiene."""
import os
import pwd
import socket
import subprocess
import time
import unittest

import ipcb_test
from ipcb_test import Daemon, DaemonTest, private_key, wait_for

NOBODY = pwd.getpwnam("nobody")
ROOT = os.getuid() == 0


class AllowUsersTest(unittest.TestCase):
    def test_peer_not_in_allow_users_is_refused(self):
        d = Daemon(server={"allow_users": "nobody"})
        self.addCleanup(d.cleanup)
        d.start()
        c = d.client()
        self.addCleanup(c.close)
        r = c.reply()
        self.assertEqual(r["error"]["code"], "permission_denied")
        self.assertTrue(c.closed())
        self.assertIn("is not in allow_users/allow_groups", d.read_log())

    def test_peer_in_allow_users_or_groups_is_served(self):
        me = pwd.getpwuid(os.getuid()).pw_name
        for server in ({"allow_users": "nobody, %s" % me},
                       {"allow_groups": "%d" % os.getgid()}):
            d = Daemon(server=server)
            self.addCleanup(d.cleanup)
            d.start()
            c = d.client()
            self.addCleanup(c.close)
            r = c.call({"op": "hello"})
            self.assertEqual(r["result"]["peer"]["uid"], os.getuid())
            d.stop()

    def test_unknown_user_is_a_config_error(self):
        d = Daemon(server={"allow_users": "no-such-user-xyz"})
        self.addCleanup(d.cleanup)
        r = subprocess.run([ipcb_test.DAEMON, "-t", "-c", d.conf],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 1)
        self.assertIn('allow_users: no such user "no-such-user-xyz"',
                      r.stderr)


class QueueAccessTest(DaemonTest):
    queues = {"default": {"write_users": "nobody"},
              "open": {}}
    shms = None

    def test_write_denied_read_allowed(self):
        e = self.err({"op": "queue.send", "type": 1, "text": "x"},
                     "permission_denied")
        self.assertEqual(e["data"]["uid"], os.getuid())
        # reading the same queue is not restricted
        self.ok({"op": "queue.recv"})
        # other queues are unaffected
        self.ok({"op": "queue.send", "queue": "open", "type": 1,
                 "text": "x"})
        self.assertIn("permission denied: uid %d" % os.getuid(),
                      self.d.read_log())


class ListAccessTest(DaemonTest):
    queues = {"default": {}, "secret": {"read_users": "nobody"}}

    def test_list_shows_only_readable_queues(self):
        names = [q["queue"] for q in self.ok({"op": "queue.list"})
                 ["queues"]]
        self.assertEqual(names, ["default"])
        self.err({"op": "queue.stat", "queue": "secret"},
                 "permission_denied")


class ShmAccessTest(unittest.TestCase):
    def test_segment_read_users(self):
        d = Daemon(shms={"default": {"size": "64K",
                                     "read_users": "nobody"}})
        self.addCleanup(d.cleanup)
        d.start()
        c = d.client()
        self.addCleanup(c.close)
        r = c.call({"op": "shm.put", "var": 1, "text": "hi"})
        self.assertIn("result", r)
        r = c.call({"op": "shm.get", "var": 1})
        self.assertEqual(r["error"]["code"], "permission_denied")
        r = c.call({"op": "shm.list"})
        self.assertEqual(r["result"]["segments"], [])


class PerUidLimitTest(DaemonTest):
    server = {"max_conns_per_uid": "2"}

    def test_third_connection_of_a_user_is_refused(self):
        # the start-up probe's connection must be gone first
        wait_for(lambda: self.ok({"op": "stats"})["connections"]
                 ["current"] == 1)
        second = self.d.client()
        self.addCleanup(second.close)
        self.ok({"op": "hello"}, client=second)
        third = self.d.client()
        self.addCleanup(third.close)
        self.assertEqual(third.reply()["error"]["code"], "busy")
        self.assertTrue(third.closed())
        self.ok({"op": "hello"})  # the first two still work


class TimeoutTest(DaemonTest):
    server = {"partial_line_timeout_ms": "300", "idle_timeout_ms": "600"}

    def test_slowloris_partial_line_is_cut(self):
        slow = self.d.client()
        self.addCleanup(slow.close)
        slow.send_raw(b'{"op":"hel')
        start = time.time()
        self.assertTrue(slow.closed(timeout=5))
        self.assertGreater(time.time() - start, 0.2)
        self.assertIn("partial_line_timeout_ms", self.d.read_log())

    def test_idle_connection_is_closed_but_a_waiter_is_not(self):
        idle = self.d.client()
        self.addCleanup(idle.close)
        self.ok({"op": "hello"}, client=idle)
        waiter = self.d.client()
        self.addCleanup(waiter.close)
        waiter.send({"op": "queue.recv", "id": 1, "timeout_ms": 3000})
        self.assertTrue(idle.closed(timeout=5))
        # the waiter is still there and gets its message
        sender = self.d.client()
        self.addCleanup(sender.close)
        self.ok({"op": "queue.send", "type": 1, "text": "late"},
                client=sender)
        self.assertEqual(waiter.reply()["result"]["msg"]["text"], "late")


class OutputLimitTest(unittest.TestCase):
    def test_client_that_never_reads_is_dropped(self):
        d = Daemon(server={"max_output_bytes": "64K"},
                   shms={"default": {"size": "32K", "format": "raw"}})
        self.addCleanup(d.cleanup)
        d.start()
        hog = d.client()
        self.addCleanup(hog.close)
        hog.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        line = b'{"op":"shm.get","encoding":"base64"}\n'
        try:
            for _ in range(400):
                hog.send_raw(line * 10)
        except OSError:
            pass
        wait_for(lambda: "over max_output_bytes" in d.read_log())
        c = d.client()
        self.addCleanup(c.close)
        self.assertIn("result", c.call({"op": "hello"}))


class ConfigHygieneTest(unittest.TestCase):
    def test_world_writable_config_is_refused(self):
        d = Daemon()
        self.addCleanup(d.cleanup)
        os.chmod(d.conf, 0o666)
        r = subprocess.run([ipcb_test.DAEMON, "-t", "-c", d.conf],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 1)
        self.assertIn("world-writable", r.stderr)

    def test_world_writable_socket_dir_without_sticky_bit(self):
        d = Daemon()
        self.addCleanup(d.cleanup)
        os.chmod(d.dir, 0o777)
        with self.assertRaises(RuntimeError) as cm:
            d.start()
        self.assertIn("is world-writable", str(cm.exception))


@unittest.skipUnless(ROOT, "dropping privileges needs root")
@unittest.skipIf(ipcb_test.VALGRIND, "under valgrind /proc shows the "
                 "tool's credentials, not the ones the daemon dropped to")
class PrivilegeDropTest(unittest.TestCase):
    def test_runs_as_user_and_still_serves(self):
        d = Daemon(server={"user": "nobody"})
        self.addCleanup(d.cleanup)
        os.chmod(d.dir, 0o755)
        d.start()
        with open("/proc/%d/status" % d.proc.pid) as f:
            status = f.read()
        uids = [l for l in status.splitlines() if l.startswith("Uid:")][0]
        self.assertEqual(uids.split()[1:], [str(NOBODY.pw_uid)] * 4)
        self.assertEqual(os.stat(d.sock).st_uid, NOBODY.pw_uid)
        c = d.client()
        self.addCleanup(c.close)
        r = c.call({"op": "queue.send", "type": 1, "text": "as nobody"})
        self.assertIn("result", r)
        r = c.call({"op": "queue.recv"})
        self.assertEqual(r["result"]["msg"]["text"], "as nobody")
        r = c.call({"op": "shm.put", "var": 1, "text": "blob"})
        self.assertIn("result", r)


if __name__ == "__main__":
    ipcb_test.main()
