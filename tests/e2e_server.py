#!/usr/bin/env python3
"""End-to-end tests of the server itself: framing, pipelining, limits,
half-close, signals and reload, the socket file, garbage input and the
command line.
"""
import ctypes
import json
import os
import re
import random
import signal
import socket
import stat
import subprocess
import time
import unittest

import ipcb_test
from ipcb_test import Client, Daemon, DaemonTest, wait_for, private_key


def pending(client, timeout=0.2):
    import select
    if client.buf:
        return True
    r, _, _ = select.select([client.sock], [], [], timeout)
    return bool(r)


STATS_LINE = len(json.dumps({"op": "stats"}).encode()) + 1


class _MsgBuf(ctypes.Structure):
    _fields_ = [("mtype", ctypes.c_long), ("mtext", ctypes.c_char * 65536)]


def kernel_recv(key):
    """One message straight off the kernel queue (as a worker would):
    (type, bytes), or None when it is empty."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.msgrcv.restype = ctypes.c_ssize_t
    libc.msgrcv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t,
                            ctypes.c_long, ctypes.c_int]
    msqid = libc.msgget(ctypes.c_int(ctypes.c_int32(key).value), 0)
    if msqid < 0:
        raise OSError(ctypes.get_errno(), "msgget")
    buf = _MsgBuf()
    n = libc.msgrcv(msqid, ctypes.byref(buf), 65536, 0, 0o4000)
    if n < 0:
        if ctypes.get_errno() == 42:    # ENOMSG
            return None
        raise OSError(ctypes.get_errno(), "msgrcv")
    return buf.mtype, buf.mtext[:n]


def read_file(path):
    with open(path) as f:
        return f.read()


def process_gone(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def run_daemon(args, timeout=15):
    return subprocess.run([ipcb_test.DAEMON] + list(args),
                          capture_output=True, text=True, timeout=timeout)


class ServerTest(DaemonTest):
    queues = {"default": {}, "small": {"max_bytes": "1K"}}

    def client(self):
        c = self.d.client()
        self.addCleanup(c.close)
        return c

    def side(self):
        # replies come in milliseconds: a stalled daemon fails fast
        if not hasattr(self, "_side"):
            self._side = Client(self.d.sock, timeout=4)
            self.addCleanup(self._side.close)
        return self._side

    def stats(self):
        return self.ok({"op": "stats"}, client=self.side())

    def bytes_in(self):
        return self.stats()["bytes"]["in"]

    def wait_read(self, since, n):
        """Wait until the daemon has read n bytes from the other clients
        since bytes_in() returned since (our own stats lines excluded)."""
        calls = [0]

        def check():
            calls[0] += 1
            return self.bytes_in() - calls[0] * STATS_LINE >= since + n

        wait_for(check)


class PipelineTest(ServerTest):

    def test_pipelining_1000(self):
        reqs = []
        for i in range(1000):
            if i % 2 == 0:
                reqs.append({"op": "queue.send", "type": 1 + i % 7,
                             "text": "p%d" % i, "id": i})
            else:
                reqs.append({"op": "queue.recv", "id": "r%d" % i})
        self.c.send_raw(b"".join(json.dumps(r).encode() + b"\n"
                                 for r in reqs))
        for i in range(1000):
            r = self.c.reply()
            if i % 2 == 0:
                self.assertEqual(r, {"id": i, "result": {
                    "queue": "default", "type": 1 + i % 7, "bytes":
                    len("p%d" % i)}})
            else:
                self.assertEqual(r["id"], "r%d" % i)
                self.assertEqual(r["result"]["msg"]["text"], "p%d" % (i - 1))
        self.assertFalse(pending(self.c, 0.1))
        s = self.stats()
        self.assertEqual(s["messages"]["sent"], 500)
        self.assertEqual(s["messages"]["received"], 500)

    def test_pipelining_replies_beyond_backlog(self):
        """Replies to one write of requests far exceed the 256 KiB backlog
        mark: the daemon pauses and goes on as the client reads."""
        n = 3000
        self.c.send_raw(b"".join(b'{"op":"hello","id":%d}\n' % i
                                 for i in range(n)))
        total = 0
        for i in range(n):
            line = self.c.line()
            total += len(line) + 1
            self.assertEqual(json.loads(line)["id"], i)
        self.assertGreater(total, 1 << 20)
        self.assertFalse(pending(self.c, 0.1))
        self.assertEqual(self.stats()["requests"], n + 1)

    def test_pipelining_mixed_errors(self):
        lines = []
        for i in range(300):
            lines.append([b'{"op":"hello","id":%d}' % i,
                          b'not json %d' % i,
                          b'{"op":"nope","id":%d}' % i][i % 3])
        self.c.send_raw(b"\n".join(lines) + b"\n")
        for i in range(300):
            r = self.c.reply()
            if i % 3 == 0:
                self.assertEqual((r["id"], r["result"]["server"]),
                                 (i, "ipcbridge"))
            elif i % 3 == 1:
                self.assertEqual(r["error"]["code"], "parse_error")
            else:
                self.assertEqual((r["id"], r["error"]["code"]),
                                 (i, "unknown_op"))

    def test_crlf_blank_and_comment_lines(self):
        self.c.send_raw(b'{"op":"hello","id":1}\r\n'
                        b'\r\n\n   \n\t\n \t \r\n'
                        b'# a comment\n'
                        b'   # an indented comment\r\n'
                        b'#{"op":"hello","id":99}\n'
                        b'{"op":"queue.send","type":1,"text":"crlf"}\r\n'
                        b'{"op":"hello","id":2}\n')
        self.assertEqual(self.c.reply()["id"], 1)
        self.assertEqual(self.c.reply()["result"]["bytes"], 4)
        self.assertEqual(self.c.reply()["id"], 2)
        self.assertFalse(pending(self.c, 0.2))
        r = self.ok({"op": "queue.recv"})
        # the \r belongs to the line ending, not to the text
        self.assertEqual(r["msg"]["text"], "crlf")
        self.assertEqual(self.ok({"op": "stats"})["requests"], 5)

    def test_partial_line_does_not_stall_other_clients(self):
        """A client in the middle of a line (no newline yet) must not keep
        the daemon from serving everyone else."""
        a = self.client()
        since = self.bytes_in()
        a.send_raw(b'{"op":"hel')
        try:
            self.wait_read(since, 10)
            b = Client(self.d.sock, timeout=3)
            self.addCleanup(b.close)
            r = b.call({"op": "hello", "id": "b"})
        except socket.timeout:
            self.fail("no reply to other clients while one client has "
                      "sent part of a line")
        self.assertEqual(r["id"], "b")
        # and the daemon is idle, not spinning on the partial line
        cpu0 = self.cpu_seconds()
        time.sleep(0.5)
        self.assertLess(self.cpu_seconds() - cpu0, 0.2)
        a.send_raw(b'lo","id":"a"}\n')
        self.assertEqual(a.reply()["id"], "a")

    def cpu_seconds(self):
        with open("/proc/%d/stat" % self.d.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf(
            "SC_CLK_TCK")

    def test_last_line_without_newline_at_eof(self):
        self.c.send_raw(b'{"op":"hello","id":1}\n{"op":"hello","id":2}')
        self.c.shutdown_write()
        self.assertEqual(self.c.reply()["id"], 1)
        self.assertEqual(self.c.reply()["id"], 2)
        self.assertTrue(self.c.closed())


class LineLimitTest(ServerTest):
    server = {"max_line_bytes": "1K"}

    def line_of(self, n, id=1, crlf=False):
        base = b'{"op":"hello","id":%d}' % id
        line = base[:-1] + b" " * (n - len(base)) + b"}"
        self.assertEqual(len(line), n)
        return line + (b"\r\n" if crlf else b"\n")

    def test_limit_reported(self):
        self.assertEqual(self.ok({"op": "hello"})["limits"]["max_line_bytes"],
                         1024)

    def test_long_line_in_one_write(self):
        self.c.send_raw(b'{"op":"queue.send","type":1,"text":"' +
                        b"x" * 2000 + b'"}\n{"op":"hello","id":2}\n')
        r = self.c.reply()
        self.assertNotIn("id", r)
        self.assertEqual(r["error"]["code"], "line_too_long")
        self.assertEqual(self.c.reply()["id"], 2)
        self.assertEqual(self.ok({"op": "queue.stat"})["messages"], 0)
        self.assertEqual(self.ok({"op": "stats"})["errors"],
                         {"line_too_long": 1})

    def test_limit_boundary(self):
        self.c.send_raw(self.line_of(1024, 1))
        self.assertEqual(self.c.reply()["id"], 1)
        self.c.send_raw(self.line_of(1024, 2, crlf=True))
        self.assertEqual(self.c.reply()["id"], 2)
        self.c.send_raw(self.line_of(1025, 3))
        self.assertEqual(self.c.reply()["error"]["code"], "line_too_long")
        self.c.send_raw(self.line_of(1025, 4, crlf=True))
        self.assertEqual(self.c.reply()["error"]["code"], "line_too_long")
        self.assertEqual(self.ok({"op": "hello", "id": 5})["server"],
                         "ipcbridge")

    def test_long_line_dripped(self):
        line = b'{"op":"queue.send","type":1,"text":"' + b"d" * 3000 + b'"}'
        chunks = [line[:600], line[600:1200], line[1200:2500],
                  line[2500:] + b'\n{"op":"hello","id":3}\n']
        for chunk in chunks[:-1]:
            since = self.bytes_in()
            self.c.send_raw(chunk)
            self.wait_read(since, len(chunk))
            self.assertFalse(pending(self.c, 0.05))
        self.c.send_raw(chunks[-1])
        r = self.c.reply()
        self.assertEqual(r["error"]["code"], "line_too_long")
        self.assertEqual(self.c.reply()["id"], 3)
        self.assertFalse(pending(self.c, 0.1))
        self.assertEqual(self.ok({"op": "queue.stat"})["messages"], 0)
        # a normal line dripped byte by byte works
        req = b'{"op":"hello","id":4}\n'
        for i in range(len(req)):
            self.c.send_raw(req[i:i + 1])
        self.assertEqual(self.c.reply()["id"], 4)

    def test_long_last_line_at_eof(self):
        self.c.send_raw(b'{"op":"hello","id":1}\n' + b"e" * 3000)
        self.c.shutdown_write()
        self.assertEqual(self.c.reply()["id"], 1)
        self.assertEqual(self.c.reply()["error"]["code"], "line_too_long")
        self.assertTrue(self.c.closed())
        self.assertEqual(self.c.buf, b"")

    def test_long_comment_line(self):
        self.c.send_raw(b"# " + b"c" * 2000 + b'\n{"op":"hello","id":1}\n')
        self.assertEqual(self.c.reply()["error"]["code"], "line_too_long")
        self.assertEqual(self.c.reply()["id"], 1)

    def test_not_counted_as_requests(self):
        self.c.send_raw(b"x" * 2000 + b"\n\n# c\n" + b'{"op":"stats"}\n')
        self.assertEqual(self.c.reply()["error"]["code"], "line_too_long")
        s = self.c.reply()["result"]
        self.assertEqual(s["requests"], 1)
        self.assertEqual(s["errors"], {"line_too_long": 1})

    def test_many_long_lines_then_normal(self):
        blob = b"".join(b"z" * (1500 + i) + b"\n" for i in range(50))
        self.c.send_raw(blob + b'{"op":"hello","id":"ok"}\n')
        for _ in range(50):
            self.assertEqual(self.c.reply()["error"]["code"],
                             "line_too_long")
        self.assertEqual(self.c.reply()["id"], "ok")


class MaxConnsTest(ServerTest):
    server = {"max_conns": "3"}

    def test_max_conns(self):
        wait_for(lambda: self.ok({"op": "stats"})["connections"]["current"]
                 == 1)
        self.assertEqual(self.ok({"op": "hello"})["limits"]["max_conns"], 3)
        total_before = self.ok({"op": "stats"})["connections"]["total"]
        c2, c3 = self.client(), self.client()
        for i, cl in enumerate((self.c, c2, c3)):
            self.assertEqual(self.ok({"op": "hello", "id": i}, client=cl)
                             ["server"], "ipcbridge")
        c4 = self.client()
        r = c4.reply()
        self.assertEqual(set(r), {"error"})
        self.assertEqual(r["error"]["code"], "busy")
        self.assertTrue(c4.closed())
        # the first three still work
        for cl in (self.c, c2, c3):
            self.assertEqual(self.ok({"op": "queue.stat"}, client=cl)
                             ["queue"], "default")
        s = self.ok({"op": "stats"})
        self.assertEqual(s["connections"]["current"], 3)
        self.assertEqual(s["errors"], {"busy": 1})
        # a turned-away connection is not counted
        self.assertEqual(s["connections"]["total"], total_before + 2)
        # one leaves: there is room again
        c3.close()
        wait_for(lambda: self.ok({"op": "stats"})["connections"]["current"]
                 == 2)
        c5 = self.client()
        self.assertEqual(self.ok({"op": "hello"}, client=c5)["server"],
                         "ipcbridge")


class HalfCloseTest(ServerTest):

    def test_half_close_with_held_recv(self):
        a = self.client()
        a.send_raw(b'{"op":"hello","id":1}\n'
                   b'{"op":"queue.recv","timeout_ms":8000}\n'
                   b'{"op":"queue.send","type":2,"text":"after","id":3}\n'
                   b'{"op":"stats","id":4}\n')
        a.shutdown_write()
        wait_for(lambda: self.waiters() == 1)
        self.assertEqual(a.reply()["id"], 1)
        self.assertFalse(pending(a, 0.1))
        self.ok({"op": "queue.send", "type": 1, "text": "wake"},
                client=self.side())
        r = a.reply()
        self.assertEqual(r, {"result": {"msg": {"queue": "default",
                                                "type": 1, "bytes": 4,
                                                "text": "wake"},
                                        "timed_out": False}})
        self.assertEqual(a.reply()["id"], 3)
        self.assertEqual(a.reply()["id"], 4)
        self.assertTrue(a.closed())
        self.assertEqual(a.buf, b"")
        # the request after the wait did run
        self.assertEqual(self.ok({"op": "queue.recv"})["msg"]["text"],
                         "after")

    def test_half_close_with_parked_recv(self):
        a = self.client()
        a.send_raw(b'{"op":"queue.recv","timeout_ms":8000,"id":"p"}\n'
                   b'{"op":"hello","id":2}\n')
        a.shutdown_write()
        self.assertEqual(a.reply()["id"], 2)
        wait_for(lambda: self.waiters() == 1)
        # the connection stays open for the parked wait
        self.assertFalse(a.closed(0.2))
        self.ok({"op": "queue.send", "type": 1, "text": "late"},
                client=self.side())
        r = a.reply()
        self.assertEqual((r["id"], r["result"]["msg"]["text"]), ("p", "late"))
        self.assertTrue(a.closed())

    def test_half_close_with_timeout(self):
        a = self.client()
        a.send_raw(b'{"op":"queue.recv","timeout_ms":200,"id":"t"}\n')
        a.shutdown_write()
        r = a.reply()
        self.assertEqual(r, {"id": "t", "result": {"msg": None,
                                                   "timed_out": True}})
        self.assertTrue(a.closed())


class SignalTest(ServerTest):

    def test_sigterm_with_waiters(self):
        a, b = self.client(), self.client()
        self.c.send({"op": "queue.recv", "id": "w", "timeout_ms": 8000})
        a.send({"op": "queue.recv", "timeout_ms": 8000})
        for _ in range(2):
            self.ok({"op": "queue.send", "queue": "small", "type": 1,
                     "text": "f" * 500}, client=self.side())
        b.send({"op": "queue.send", "queue": "small", "type": 1,
                "text": "g" * 500, "timeout_ms": 8000, "id": "s"})
        wait_for(lambda: self.waiters() == 2 and self.waiters("small") == 1)
        self.d.signal(signal.SIGTERM)
        r = self.c.reply()
        self.assertEqual(r["id"], "w")
        self.assertEqual(r["error"]["code"], "shutting_down")
        r = a.reply()
        self.assertNotIn("id", r)
        self.assertEqual(r["error"]["code"], "shutting_down")
        r = b.reply()
        self.assertEqual((r["id"], r["error"]["code"]),
                         ("s", "shutting_down"))
        for cl in (self.c, a, b):
            self.assertTrue(cl.closed())
        self.assertEqual(self.d.proc.wait(10), 0)
        self.assertFalse(os.path.exists(self.d.sock))
        self.assertIn("exited cleanly", self.d.read_log())
        # the daemon never removes queues: the worker's messages stay
        out = subprocess.run(["ipcs", "-q"], capture_output=True,
                             text=True).stdout
        row = [ln.split() for ln in out.splitlines()
               if ln.startswith("0x%08x" % self.d.key("small"))]
        self.assertEqual(len(row), 1)
        self.assertEqual(row[0][4:6], ["1000", "2"])

    def test_sigterm_ends_consumers_silently(self):
        n = self.ok({"op": "queue.consume"})["consumer"]
        self.assertGreaterEqual(n, 1)
        self.d.signal(signal.SIGTERM)
        self.d.signal(signal.SIGTERM)   # a second one changes nothing
        self.assertTrue(self.c.closed())
        self.assertEqual(self.c.buf, b"")
        self.assertEqual(self.d.proc.wait(10), 0)
        self.assertFalse(os.path.exists(self.d.sock))

    def test_sigterm_idle(self):
        self.d.signal(signal.SIGTERM)
        self.assertTrue(self.c.closed())
        self.assertEqual(self.d.proc.wait(10), 0)
        self.assertFalse(os.path.exists(self.d.sock))
        with self.assertRaises(OSError):
            Client(self.d.sock, timeout=1)

    def test_sigint(self):
        self.d.signal(signal.SIGINT)
        self.assertEqual(self.d.proc.wait(10), 0)
        self.assertFalse(os.path.exists(self.d.sock))

    def names(self, client=None):
        return [q["queue"] for q in
                self.ok({"op": "queue.list"}, client=client)["queues"]]

    def test_sighup_adds_queue(self):
        self.c.send({"op": "queue.recv", "id": "kept", "timeout_ms": 8000})
        wait_for(lambda: self.waiters() == 1)
        self.d.queues["extra"] = {"key": private_key()}
        self.d.write_config()
        self.d.signal(signal.SIGHUP)
        wait_for(lambda: "extra" in self.names(self.side()))
        self.assertEqual(self.names(self.side()),
                         ["default", "small", "extra"])
        self.assertEqual(self.ok({"op": "hello"}, client=self.side())
                         ["queues"], ["default", "small", "extra"])
        st = self.ok({"op": "queue.stat", "queue": "extra"},
                     client=self.side())
        self.assertEqual(st["key"], "0x%08x" % self.d.key("extra"))
        self.ok({"op": "queue.send", "queue": "extra", "type": 1,
                 "text": "new"}, client=self.side())
        self.assertEqual(self.ok({"op": "queue.recv", "queue": "extra"},
                                 client=self.side())["msg"]["text"], "new")
        # the wait on a kept queue survived the reload
        self.assertEqual(self.waiters(), 1)
        self.ok({"op": "queue.send", "type": 1, "text": "still here"},
                client=self.side())
        r = self.c.reply()
        self.assertEqual((r["id"], r["result"]["msg"]["text"]),
                         ("kept", "still here"))

    def test_sighup_changes_limits(self):
        self.d.server["max_wait_ms"] = "1234"
        self.d.write_config()
        self.d.signal(signal.SIGHUP)
        wait_for(lambda: self.ok({"op": "hello"})["limits"]["max_wait_ms"]
                 == 1234)
        e = self.err({"op": "queue.recv", "timeout_ms": 1235},
                     "invalid_params")
        self.assertEqual(e["data"], {"param": "timeout_ms"})

    def test_sighup_applies_line_limit_to_open_connections(self):
        self.d.server["max_line_bytes"] = "1K"
        self.d.write_config()
        self.d.signal(signal.SIGHUP)
        wait_for(lambda: self.ok({"op": "hello"})["limits"]
                 ["max_line_bytes"] == 1024)
        self.c.send_raw(b'{"op":"hello","x":"' + b"x" * 2000 + b'"}\n')
        self.assertEqual(self.c.reply()["error"]["code"], "line_too_long")

    def test_sighup_ignores_socket_changes(self):
        self.d.server["socket_mode"] = "0600"
        self.d.server["max_wait_ms"] = "4321"
        self.d.write_config()
        self.d.signal(signal.SIGHUP)
        wait_for(lambda: self.ok({"op": "hello"})["limits"]["max_wait_ms"]
                 == 4321)
        self.assertIn("need a restart", self.d.read_log())
        self.assertEqual(stat.S_IMODE(os.lstat(self.d.sock).st_mode), 0o660)

    def test_sighup_new_key_ends_waiters(self):
        old_key = self.d.key("small")
        self.addCleanup(ipcb_test.ipcrm_queue, old_key)
        self.c.send({"op": "queue.recv", "queue": "small", "id": "w",
                     "timeout_ms": 8000})
        wait_for(lambda: self.waiters("small") == 1)
        self.d.queues["small"]["key"] = private_key()
        self.d.write_config()
        self.d.signal(signal.SIGHUP)
        r = self.c.reply()
        self.assertEqual((r["id"], r["error"]["code"]), ("w", "not_found"))
        st = self.ok({"op": "queue.stat", "queue": "small"})
        self.assertEqual(st["key"], "0x%08x" % self.d.key("small"))
        self.assertEqual(st["waiters"], 0)

    def test_sighup_unopenable_queue_abandons_reload(self):
        missing = private_key()
        self.d.queues["ext"] = {"key": missing, "create": "no"}
        self.d.server["max_wait_ms"] = "4321"
        self.d.write_config()
        self.d.signal(signal.SIGHUP)
        wait_for(lambda: "keeping the old" in self.d.read_log())
        self.assertEqual(self.names(), ["default", "small"])
        self.assertEqual(self.ok({"op": "hello"})["limits"]["max_wait_ms"],
                         300000)
        self.assertIsNone(self.d.proc.poll())

    def test_sighup_removes_queue(self):
        self.d.queues["gone"] = {"key": private_key()}
        gone_key = self.d.key("gone")
        self.addCleanup(ipcb_test.ipcrm_queue, gone_key)
        self.d.write_config()
        self.d.signal(signal.SIGHUP)
        wait_for(lambda: "gone" in self.names())
        a = self.client()
        self.c.send({"op": "queue.recv", "queue": "gone", "id": "w",
                     "timeout_ms": 8000})
        cons = self.ok({"op": "queue.consume", "queue": "gone"},
                       client=a)["consumer"]
        wait_for(lambda: self.waiters("gone") == 1)
        del self.d.queues["gone"]
        self.d.write_config()
        self.d.signal(signal.SIGHUP)
        r = self.c.reply()
        self.assertEqual(r["id"], "w")
        self.assertEqual(r["error"]["code"], "not_found")
        ev = a.reply()
        self.assertEqual(ev["event"], "consumer_end")
        self.assertEqual(ev["data"]["consumer"], cons)
        self.assertEqual(ev["data"]["error"]["code"], "not_found")
        self.assertEqual(self.names(), ["default", "small"])
        e = self.err({"op": "queue.stat", "queue": "gone"}, "not_found")
        self.assertEqual(e["data"], {"queue": "gone"})
        self.err({"op": "cancel", "consumer": cons}, "not_found", client=a)
        # the kernel queue itself is left alone (workers own it too)
        out = subprocess.run(["ipcs", "-q"], capture_output=True,
                             text=True).stdout
        self.assertIn("0x%08x" % gone_key, out)

    def test_sighup_broken_config_keeps_running_config(self):
        self.c.send({"op": "queue.recv", "id": "w", "timeout_ms": 8000})
        wait_for(lambda: self.waiters() == 1)
        good = read_file(self.d.conf)
        self.d.queues["extra"] = {"key": private_key()}
        self.d.server["max_conns"] = "abc"
        self.d.write_config()
        self.d.signal(signal.SIGHUP)
        wait_for(lambda: "reload failed" in self.d.read_log())
        self.assertIn("max_conns", self.d.read_log())
        self.assertIsNone(self.d.proc.poll())
        self.assertEqual(self.names(self.side()), ["default", "small"])
        self.assertEqual(self.ok({"op": "hello"}, client=self.side())
                         ["limits"]["max_conns"], 256)
        self.assertEqual(self.waiters(), 1)
        # a syntax error is refused the same way
        with open(self.d.conf, "w") as f:
            f.write(good + "this is not ini\n")
        self.d.signal(signal.SIGHUP)
        wait_for(lambda: self.d.read_log().count("reload failed") == 2)
        self.assertEqual(self.names(self.side()), ["default", "small"])
        # the wait is still served
        self.ok({"op": "queue.send", "type": 1, "text": "x"},
                client=self.side())
        self.assertEqual(self.c.reply()["id"], "w")
        # and a fixed config is taken
        del self.d.server["max_conns"]
        self.d.write_config()
        self.d.signal(signal.SIGHUP)
        wait_for(lambda: "extra" in self.names(self.side()))


class ReloadPutBackTest(ServerTest):
    queues = {"default": {}, "gone": {}}

    def test_reload_removes_queue_with_pending_put_backs(self):
        """Messages waiting to go back on a full queue are still put back
        when a reload removes that queue, and the daemon stays responsive."""
        gone_key = self.d.key("gone")
        self.addCleanup(ipcb_test.ipcrm_queue, gone_key)
        k = self.client()
        self.ok({"op": "queue.consume", "queue": "gone"}, client=k)
        body = "r" * 6990
        sent = 0
        while sent < 1000:
            r = self.c.call({"op": "queue.send", "queue": "gone", "type": 1,
                             "text": "%010d" % sent + body,
                             "timeout_ms": 1000})
            if "error" in r:
                self.assertEqual(r["error"]["code"], "queue_full", r)
                break
            sent += 1
        k.close()
        stat_gone = lambda: self.ok({"op": "queue.stat", "queue": "gone"})
        wait_for(lambda: stat_gone()["consumers"] == 0)
        pend = stat_gone().get("put_backs_pending", 0)
        self.assertGreater(pend, 0)
        del self.d.queues["gone"]
        self.d.write_config()
        self.d.signal(signal.SIGHUP)
        wait_for(lambda: [q["queue"] for q in self.ok(
            {"op": "queue.list"}, client=self.side())["queues"]]
            == ["default"])
        # a worker drains the queue; the put-backs keep coming back
        got = []
        deadline = time.time() + 20
        while len(got) < 2 + pend and time.time() < deadline:
            m = kernel_recv(gone_key)
            if m is None:
                time.sleep(0.01)
                continue
            self.assertEqual(m[0], 1)
            got.append(int(m[1][:10]))
        self.assertEqual(sorted(got), list(range(sent - 2 - pend, sent)))
        wait_for(lambda: self.stats()["waiters"] == 0)
        self.assertIsNone(kernel_recv(gone_key))
        m = self.stats()["messages"]
        self.assertEqual((m["lost"], m["put_back"]), (0, pend))
        self.assertEqual(self.ok({"op": "hello"})["server"], "ipcbridge")


class SocketFileTest(unittest.TestCase):

    def daemon(self, **kw):
        d = Daemon(**kw)
        self.addCleanup(d.cleanup)
        return d

    def test_stale_socket_is_replaced(self):
        d = self.daemon()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(d.sock)
        s.close()
        self.assertTrue(stat.S_ISSOCK(os.lstat(d.sock).st_mode))
        with self.assertRaises(ConnectionRefusedError):
            Client(d.sock, timeout=1)
        d.start()
        c = d.client()
        self.addCleanup(c.close)
        self.assertEqual(c.call({"op": "hello"})["result"]["server"],
                         "ipcbridge")
        self.assertIn("replacing a stale socket", d.read_log())

    def test_live_socket_is_not_stolen(self):
        d = self.daemon()
        d.start()
        c = d.client()
        self.addCleanup(c.close)
        ino = os.lstat(d.sock).st_ino
        # same socket, its own journal: the socket is what must refuse
        other = os.path.join(d.dir, "other.conf")
        with open(d.conf) as f, open(other, "w") as g:
            g.write(re.sub(r"(?m)^state_dir = .*$", "state_dir = " +
                           os.path.join(d.dir, "state2"), f.read()))
        r = run_daemon(["-c", other])
        self.assertEqual(r.returncode, 1, r)
        self.assertRegex(r.stderr, "another daemon is answering|"
                         "another ipcbridge holds .*\\.lock")
        self.assertIn(d.sock, r.stderr)
        # the first keeps serving, on the same socket file
        self.assertEqual(os.lstat(d.sock).st_ino, ino)
        self.assertEqual(c.call({"op": "hello"})["result"]["server"],
                         "ipcbridge")
        c2 = d.client()
        self.addCleanup(c2.close)
        self.assertEqual(c2.call({"op": "hello"})["result"]["peer"]["pid"],
                         os.getpid())
        self.assertIsNone(d.proc.poll())

    def test_non_socket_file_is_not_touched(self):
        d = self.daemon()
        with open(d.sock, "w") as f:
            f.write("precious")
        r = run_daemon(["-c", d.conf])
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("not a socket", r.stderr)
        self.assertEqual(read_file(d.sock), "precious")

    def test_socket_mode(self):
        d = self.daemon(server={"socket_mode": "0600"})
        d.start()
        self.assertEqual(stat.S_IMODE(os.lstat(d.sock).st_mode), 0o600)
        d2 = self.daemon()
        d2.start()
        self.assertEqual(stat.S_IMODE(os.lstat(d2.sock).st_mode), 0o660)


class GarbageTest(ServerTest):

    def assert_alive(self):
        self.assertIsNone(self.d.proc.poll())
        fresh = self.client()
        r = fresh.call({"op": "hello", "id": "alive"})
        self.assertEqual((r["id"], r["result"]["server"]),
                         ("alive", "ipcbridge"))

    def test_binary_junk(self):
        rnd = random.Random(1234)
        lines = [bytes(rnd.randrange(256) for _ in range(rnd.randrange(
            1, 300))).replace(b"\n", b"") for _ in range(300)]

        def ignorable(ln):
            ln = ln[:-1] if ln.endswith(b"\r") else ln
            ln = ln.lstrip(b" \t")
            return ln == b"" or ln.startswith(b"#")

        expected = sum(1 for ln in lines if not ignorable(ln))
        self.c.send_raw(b"\n".join(lines) + b"\n")
        for _ in range(expected):
            r = self.c.reply()
            self.assertIn(r["error"]["code"], ("parse_error", "not_utf8"), r)
        self.assertEqual(self.ok({"op": "hello", "id": 1})["server"],
                         "ipcbridge")
        # and junk with no structure at all, then a rude close
        junk = self.client()
        junk.send_raw(bytes(rnd.randrange(256) for _ in range(1 << 20)))
        junk.close()
        self.assert_alive()

    def test_http_request(self):
        self.c.send_raw(b"GET / HTTP/1.1\r\nHost: localhost\r\n"
                        b"User-Agent: curl/8\r\n\r\n")
        for _ in range(3):
            self.assertEqual(self.c.reply()["error"]["code"], "parse_error")
        self.assertFalse(pending(self.c, 0.1))
        self.assertEqual(self.ok({"op": "hello"})["server"], "ipcbridge")
        c2 = self.client()
        c2.send_raw(b"POST /api HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}")
        c2.shutdown_write()
        codes = []
        while True:
            try:
                codes.append(c2.reply()["error"]["code"])
            except EOFError:
                break
        self.assertEqual(codes, ["parse_error", "parse_error",
                                 "invalid_request"])
        self.assert_alive()

    def test_10mb_line_without_newline(self):
        big = self.client()
        since = self.bytes_in()
        big.send_raw(b"A" * (10 << 20))
        self.wait_read(since, 10 << 20)
        self.assert_alive()
        big.close()
        self.assert_alive()

    def test_10mb_line_then_newline(self):
        big = self.client()
        big.send_raw(b'{"op":"hello","pad":"' + b"p" * (10 << 20) + b'"}\n'
                     b'{"op":"hello","id":2}\n')
        r = big.reply()
        self.assertEqual(r["error"]["code"], "invalid_params")
        self.assertEqual(r["error"]["data"], {"param": "pad"})
        self.assertEqual(big.reply()["id"], 2)
        big.send_raw(b"[" * (10 << 20) + b"\n")
        self.assertEqual(big.reply()["error"]["code"], "parse_error")
        self.assert_alive()

    def test_deep_nesting(self):
        for raw in (b"[" * 200000, b'{"a":' * 100000,
                    b'{"op":"hello","id":' + b"[" * 100000):
            self.c.send_raw(raw + b"\n")
            self.assertEqual(self.c.reply()["error"]["code"], "parse_error")
        self.assert_alive()

    def test_rude_clients(self):
        for i in range(30):
            cl = Client(self.d.sock)
            if i % 3 == 0:
                cl.send_raw(b'{"op":"hel')
            elif i % 3 == 1:
                # many requests, replies never read
                cl.send_raw(b'{"op":"hello"}\n' * 2000)
            else:
                cl.send({"op": "queue.recv", "id": 1, "timeout_ms": 5000})
            cl.close()
        wait_for(lambda: self.stats()["connections"]["current"] == 2)
        wait_for(lambda: self.waiters() == 0)
        self.assert_alive()


class CommandLineTest(unittest.TestCase):

    def config(self, **kw):
        d = Daemon(**kw)
        self.addCleanup(d.cleanup)
        return d

    def line_of(self, d, prefix):
        with open(d.conf) as f:
            for n, line in enumerate(f, 1):
                if line.startswith(prefix):
                    return n
        raise AssertionError("no line %r" % prefix)

    def test_check_config(self):
        d = self.config(queues={"default": {}, "jobs": {"max_bytes": "4K",
                                                        "mode": "0640"}},
                        server={"max_conns": "3", "max_wait_ms": "5000"})
        r = run_daemon(["-t", "-c", d.conf])
        self.assertEqual(r.returncode, 0, r)
        out = r.stdout.splitlines()
        for want in ("[server]", "socket = " + d.sock, "socket_mode = 0660",
                     "poll_interval_ms = 10",
                     "max_line_bytes = %d" % (16 << 20), "max_conns = 3",
                     "max_wait_ms = 5000", "[queue default]",
                     "key = 0x%08x" % d.key("default"), "[queue jobs]",
                     "key = 0x%08x" % d.key("jobs"), "mode = 0640",
                     "create = yes", "max_bytes = 4096",
                     "; configuration OK"):
            self.assertIn(want, out)
        # a check creates nothing
        self.assertFalse(os.path.exists(d.sock))
        ipcs = subprocess.run(["ipcs", "-q"], capture_output=True,
                              text=True).stdout
        self.assertNotIn("0x%08x" % d.key("jobs"), ipcs)

    def test_check_output_is_a_valid_config(self):
        d = self.config(queues={"default": {}, "jobs": {"max_bytes": "2K"}},
                        server={"max_line_bytes": "2M", "max_conns": "9"})
        first = run_daemon(["-t", "-c", d.conf])
        self.assertEqual(first.returncode, 0, first)
        again = os.path.join(d.dir, "again.conf")
        with open(again, "w") as f:
            f.write(first.stdout)
        second = run_daemon(["-t", "-c", again])
        self.assertEqual(second.returncode, 0, second)
        # the same settings, apart from the file named in the header
        self.assertEqual(first.stdout.splitlines()[1:],
                         second.stdout.splitlines()[1:])

    def test_socket_override_and_pidfile(self):
        d = self.config()
        other = os.path.join(d.dir, "other.sock")
        pidfile = os.path.join(d.dir, "ipcbridge.pid")
        proc = subprocess.Popen([ipcb_test.DAEMON, "-c", d.conf, "-S", other,
                                 "-p", pidfile], stderr=subprocess.PIPE)
        try:
            c = wait_for(lambda: os.path.exists(pidfile) and
                         self.try_connect(other))
            self.addCleanup(c.close)
            self.assertEqual(c.call({"op": "hello"})["result"]["server"],
                             "ipcbridge")
            self.assertFalse(os.path.exists(d.sock))
            self.assertEqual(int(read_file(pidfile)), proc.pid)
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(10), 0)
            self.assertFalse(os.path.exists(pidfile))
            self.assertFalse(os.path.exists(other))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stderr.close()
        r = run_daemon(["-c", d.conf, "-S", "relative.sock"])
        self.assertEqual(r.returncode, 1)
        self.assertIn("relative.sock", r.stderr)

    @staticmethod
    def try_connect(path):
        try:
            return Client(path, timeout=5)
        except OSError:
            return None

    def check_bad(self, d, prefix, *words):
        r = run_daemon(["-t", "-c", d.conf])
        self.assertEqual(r.returncode, 1, r)
        self.assertEqual(r.stdout, "")
        self.assertIn("%s:%d:" % (d.conf, self.line_of(d, prefix)),
                      r.stderr)
        for w in words:
            self.assertIn(w, r.stderr)
        # the daemon refuses to start on it, too
        r2 = run_daemon(["-c", d.conf])
        self.assertEqual(r2.returncode, 1, r2)
        self.assertFalse(os.path.exists(d.sock))

    def test_bad_value(self):
        d = self.config(server={"poll_interval_ms": "5", "max_conns": "abc"})
        self.check_bad(d, "max_conns", "max_conns", "abc", "[server]")

    def test_bad_queue_value(self):
        d = self.config(queues={"default": {"max_bytes": "12Q"}})
        self.check_bad(d, "max_bytes", "[queue default]", "max_bytes", "12Q")

    def test_unknown_key(self):
        d = self.config(server={"max_conns": "3", "max_conn": "4"})
        self.check_bad(d, "max_conn ", "max_conn", "unknown key")

    def test_unknown_queue_key(self):
        d = self.config(queues={"default": {"colour": "red"}})
        self.check_bad(d, "colour", "[queue default]", "colour",
                       "unknown key")

    def write(self, d, text):
        with open(d.conf, "w") as f:
            f.write("[server]\nsocket = %s\n" % d.sock + text)

    def test_queue_without_key(self):
        d = self.config()
        self.write(d, "[queue default]\nmode = 0600\n[queue jobs]\n"
                   "mode = 0600\n")
        r = run_daemon(["-t", "-c", d.conf])
        self.assertEqual(r.returncode, 1, r)
        self.assertRegex(r.stderr, r"%s:(5|6): \[queue jobs\]: key is "
                         r"required" % d.conf)

    def test_duplicate_keys(self):
        d = self.config()
        self.write(d, "[queue a]\nkey = 5\n[queue b]\nkey = 0x5\n")
        r = run_daemon(["-t", "-c", d.conf])
        self.assertEqual(r.returncode, 1, r)
        self.assertRegex(r.stderr, r"%s:(5|6): \[queue b\] key: .*"
                         r"0x00000005" % d.conf)
        self.assertIn("[queue a]", r.stderr)

    def test_value_syntax(self):
        d = self.config()
        good = [("max_conns: 7", "max_conns = 7"),
                ("max_conns = 7 ; seven", "max_conns = 7"),
                ("max_line_bytes = 2m", "max_line_bytes = 2097152"),
                ("[queue default]\nkey = -5", "key = 0xfffffffb"),
                ("[queue default]\nkey = 0123", "key = 0x0000007b"),
                ("[queue default]\nkey = 4294967294", "key = 0xfffffffe"),
                ("[queue default]\nkey = 5\ncreate = off", "create = no")]
        for text, want in good:
            with self.subTest(text=text):
                self.write(d, text + "\n")
                r = run_daemon(["-t", "-c", d.conf])
                self.assertEqual(r.returncode, 0, r)
                self.assertIn(want, r.stdout.splitlines())
        bad = ["max_conns = 5 # five", "max_conns = +5", "max_conns = 0x10",
               "max_conns = 0", "max_line_bytes = 1023",
               "max_line_bytes = 2G", "poll_interval_ms = 10001",
               "socket_mode = 660", "socket_mode = 00660",
               "[queue default]\nkey = 0", "[queue default]\nkey = 0xffffffff",
               "[queue default]\nkey = 4294967295",
               "[queue default]\nkey = -2147483649",
               "[queue default]\nkey = 5\ncreate = Yes",
               "[queue default]\nkey = 5\nmax_bytes = 0",
               "[queue bad name]\nkey = 5", "[srv]\nx = 1",
               "this is not ini"]
        for text in bad:
            with self.subTest(text=text):
                self.write(d, text + "\n")
                r = run_daemon(["-t", "-c", d.conf])
                self.assertEqual(r.returncode, 1, r)
                self.assertRegex(r.stderr, r"^ipcbridge: config: %s:\d+: "
                                 % d.conf)

    def test_daemonize_with_relative_paths(self):
        """-d changes to /: -c and -p given relative to the start directory
        still work, for the pid file and for a SIGHUP reload."""
        d = self.config()
        r = subprocess.run([ipcb_test.DAEMON, "-d", "-c", "ipcbridge.conf",
                            "-p", "ipcbridge.pid"], cwd=d.dir,
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 0, r)
        pidfile = os.path.join(d.dir, "ipcbridge.pid")
        wait_for(lambda: os.path.exists(pidfile) and
                 os.path.getsize(pidfile) > 0)
        pid = int(read_file(pidfile))

        def stop():
            if not process_gone(pid):
                os.kill(pid, signal.SIGKILL)
        self.addCleanup(stop)
        c = wait_for(lambda: CommandLineTest.try_connect(d.sock))
        self.addCleanup(c.close)
        self.assertEqual(c.call({"op": "hello"})["result"]["queues"],
                         ["default"])
        d.queues["more"] = {"key": private_key()}
        d.write_config()
        os.kill(pid, signal.SIGHUP)
        wait_for(lambda: c.call({"op": "hello"})["result"]["queues"] ==
                 ["default", "more"])
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: process_gone(pid))
        self.assertFalse(os.path.exists(pidfile))
        self.assertFalse(os.path.exists(d.sock))

    def test_startup_errors(self):
        d = self.config()
        r = run_daemon(["-c", d.conf, "-p", "/nonexistent/dir/x.pid"])
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("/nonexistent/dir/x.pid", r.stderr)
        r = run_daemon(["-c"])
        self.assertEqual(r.returncode, 2, r)
        self.assertIn("usage", r.stderr)

    def test_version_help_usage(self):
        r = run_daemon(["-V"])
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^ipcbridge \d+\.\d+\.\d+\S*\n$")
        r = run_daemon(["-h"])
        self.assertEqual(r.returncode, 0)
        self.assertTrue(r.stdout.startswith("usage: ipcbridge"))
        self.assertIn("-t", r.stdout)
        r = run_daemon(["-Z"])
        self.assertEqual(r.returncode, 2)
        self.assertIn("usage: ipcbridge", r.stderr)
        self.assertEqual(r.stdout, "")
        r = run_daemon(["-t", "extra-argument"])
        self.assertEqual(r.returncode, 2)
        self.assertIn("extra-argument", r.stderr)
        r = run_daemon(["-t", "-c", "/nonexistent/ipcbridge.conf"])
        self.assertEqual(r.returncode, 1)
        self.assertIn("/nonexistent/ipcbridge.conf", r.stderr)


if __name__ == "__main__":
    ipcb_test.main()
