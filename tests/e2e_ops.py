#!/usr/bin/env python3
"""End-to-end tests of every op over the real socket.

Each test starts the real daemon on a private socket with private queue
keys (see ipcb_test.py) and speaks protocol v1 to it the way clients do.
Where the sysv_ipc module is importable, a "worker" also uses the kernel
queue directly to check that both sides see the same bytes and types.
"""
import base64
import os
import subprocess
import time
import unittest

import ipcb_test
from ipcb_test import DaemonTest, wait_for

try:
    import sysv_ipc
except ImportError:     # pragma: no cover - depends on the machine
    sysv_ipc = None

ALL_BYTES = bytes(range(256))


def read_int(path):
    with open(path) as f:
        return int(f.read())


def msgmax():
    return read_int("/proc/sys/kernel/msgmax")


def b64(data):
    return base64.b64encode(data).decode()


def ipcs_queue(key):
    """(msqid, used_bytes, messages) of a queue as ipcs sees it."""
    out = subprocess.run(["ipcs", "-q"], capture_output=True, text=True,
                         check=True).stdout
    for line in out.splitlines():
        f = line.split()
        if f and f[0] == "0x%08x" % key:
            return int(f[1]), int(f[4]), int(f[5])
    return None


class OpsTest(DaemonTest):
    queues = {"default": {}, "small": {"max_bytes": "1K"},
              "private": {"mode": "0600"}}

    def send(self, text=None, type=1, queue=None, data=None, client=None,
             **kw):
        req = {"op": "queue.send", "type": type}
        if queue is not None:
            req["queue"] = queue
        if text is not None:
            req["text"] = text
        if data is not None:
            req["data_b64"] = b64(data)
        req.update(kw)
        return self.ok(req, client=client)

    def recv(self, client=None, **kw):
        req = {"op": "queue.recv"}
        req.update(kw)
        return self.ok(req, client=client)

    def stat(self, queue="default"):
        return self.ok({"op": "queue.stat", "queue": queue})

    def bad_param(self, req, param, code="invalid_params"):
        e = self.err(req, code)
        self.assertEqual(e.get("data", {}).get("param"), param, e)
        return e


class HelloTest(OpsTest):

    def test_hello_fields(self):
        r = self.c.call({"op": "hello", "id": 1})
        self.assertEqual(r["id"], 1)
        h = r["result"]
        self.assertEqual(h["server"], "ipcbridge")
        self.assertEqual(h["protocol"], 1)
        v = subprocess.run([ipcb_test.DAEMON, "-V"], capture_output=True,
                           text=True).stdout.split()
        self.assertEqual(["ipcbridge", h["version"]], v)
        self.assertEqual(h["ops"], ["hello", "stats", "cancel", "queue.send",
                                    "queue.recv", "queue.consume",
                                    "queue.stat", "queue.list", "queue.ack",
                                    "queue.nack", "shm.put",
                                    "shm.get", "shm.has", "shm.del",
                                    "shm.vars", "shm.clear", "shm.stat",
                                    "shm.list"])
        self.assertEqual(h["segments"], ["default"])
        self.assertEqual(h["queues"], ["default", "small", "private"])
        self.assertEqual(h["limits"], {
            "max_line_bytes": 16 * 1024 * 1024, "max_conns": 256,
            "max_wait_ms": 300000, "max_waits_per_conn": 16,
            "max_msg_bytes": msgmax()})
        self.assertEqual(h["poll_interval_ms"], 10)
        self.assertEqual(h["peer"], {"pid": os.getpid(),
                                     "uid": os.getuid(),
                                     "gid": os.getgid()})

    def test_hello_proto(self):
        self.assertEqual(self.ok({"op": "hello", "proto": 1})["protocol"], 1)
        for p in (2, 0, -1):
            e = self.err({"op": "hello", "proto": p, "id": "p"},
                         "unsupported_protocol")
            self.assertEqual(e["data"], {"supported": 1})
        self.bad_param({"op": "hello", "proto": "1"}, "proto")
        self.bad_param({"op": "hello", "proto": 1.0}, "proto")
        self.bad_param({"op": "hello", "queue": "default"}, "queue")


class SendRecvTest(OpsTest):

    def test_text_round_trip(self):
        for text in ("hello", "", "h\u00e9llo \u2713 \U0001F600",
                     "line\nbreak \"quoted\" \\ tab\t"):
            r = self.send(text, type=3)
            self.assertEqual(r, {"queue": "default", "type": 3,
                                 "bytes": len(text.encode())})
            m = self.recv()
            self.assertEqual(m, {"msg": {"queue": "default", "type": 3,
                                         "bytes": len(text.encode()),
                                         "text": text},
                                 "timed_out": False})

    def test_empty_queue_recv(self):
        self.assertEqual(self.recv(), {"msg": None, "timed_out": False})
        self.assertEqual(self.recv(queue="small", type=4),
                         {"msg": None, "timed_out": False})

    def test_all_byte_values_round_trip(self):
        r = self.send(data=ALL_BYTES, type=9)
        self.assertEqual(r["bytes"], 256)
        m = self.recv()["msg"]
        self.assertNotIn("text", m)
        self.assertEqual(m["type"], 9)
        self.assertEqual(m["bytes"], 256)
        self.assertEqual(base64.b64decode(m["data_b64"], validate=True),
                         ALL_BYTES)
        # every single byte on its own, and lengths 0..5 (all paddings)
        for i in range(256):
            self.send(data=bytes([i]), type=i + 1)
        for i in range(256):
            m = self.recv(type=i + 1, encoding="base64")["msg"]
            self.assertEqual(base64.b64decode(m["data_b64"]), bytes([i]))
        for n in range(6):
            data = ALL_BYTES[250 - n:250]
            self.send(data=data)
            m = self.recv(encoding="base64")["msg"]
            self.assertEqual(m["data_b64"], b64(data))
            self.assertEqual(m["bytes"], n)

    def test_encodings(self):
        # auto: valid UTF-8 without NUL comes back as text, even when it
        # was sent as data_b64
        self.send(data="abc \u00e9".encode())
        m = self.recv(encoding="auto")["msg"]
        self.assertEqual(m["text"], "abc \u00e9")
        self.assertNotIn("data_b64", m)
        # base64 forces data_b64 for text
        self.send("hello")
        m = self.recv(encoding="base64")["msg"]
        self.assertEqual(m["data_b64"], "aGVsbG8=")
        self.assertNotIn("text", m)
        # auto on binary gives data_b64
        self.send(data=b"\xff\xfe\x00")
        m = self.recv()["msg"]
        self.assertEqual(m["data_b64"], b64(b"\xff\xfe\x00"))
        self.assertNotIn("text", m)
        self.bad_param({"op": "queue.recv", "encoding": "hex"}, "encoding")
        self.bad_param({"op": "queue.recv", "encoding": 1}, "encoding")

    def test_text_encoding_on_binary_is_not_utf8_and_keeps_message(self):
        self.send(data=b"\xc3\x28 invalid", type=5)
        self.err({"op": "queue.recv", "encoding": "text"}, "not_utf8")
        st = self.stat()
        self.assertEqual(st["messages"], 1)
        self.assertEqual(st["bytes"], 10)
        self.err({"op": "queue.recv", "encoding": "text", "type": 5},
                 "not_utf8")
        self.assertEqual(self.stat()["messages"], 1)
        m = self.recv(encoding="base64")["msg"]
        self.assertEqual(m["type"], 5)
        self.assertEqual(base64.b64decode(m["data_b64"]), b"\xc3\x28 invalid")
        self.assertEqual(self.stat()["messages"], 0)
        s = self.ok({"op": "stats"})
        self.assertEqual(s["messages"]["lost"], 0)
        self.assertEqual(s["errors"]["not_utf8"], 2)

    def test_type_selectors(self):
        for t, text in ((5, "a"), (3, "b"), (7, "c"), (3, "d"), (9, "e")):
            self.send(text, type=t)
        self.assertEqual(self.recv(type=3)["msg"]["text"], "b")
        # type_max n: the lowest type <= n
        m = self.recv(type_max=6)["msg"]
        self.assertEqual((m["type"], m["text"]), (3, "d"))
        m = self.recv(type_max=6)["msg"]
        self.assertEqual((m["type"], m["text"]), (5, "a"))
        self.assertEqual(self.recv(type_max=6),
                         {"msg": None, "timed_out": False})
        # except: the first message whose type is not n
        m = self.ok({"op": "queue.recv", "type": 7, "except": True})["msg"]
        self.assertEqual((m["type"], m["text"]), (9, "e"))
        self.assertEqual(
            self.ok({"op": "queue.recv", "type": 7, "except": True}),
            {"msg": None, "timed_out": False})
        # except false is just type n
        m = self.ok({"op": "queue.recv", "type": 7, "except": False})["msg"]
        self.assertEqual((m["type"], m["text"]), (7, "c"))
        # type 0 = any, in queue order
        self.send("x", type=8)
        self.send("y", type=2)
        self.assertEqual(self.recv(type=0)["msg"]["text"], "x")
        self.assertEqual(self.recv()["msg"]["text"], "y")

    def test_big_types(self):
        big = 2 ** 63 - 1
        self.assertEqual(self.send("big", type=big)["type"], big)
        self.assertEqual(self.recv(type=big)["msg"]["type"], big)
        self.send("big", type=big)
        self.assertEqual(self.recv(type_max=big)["msg"]["type"], big)

    def test_type_errors(self):
        for t in (0, -1, -2 ** 63):
            self.bad_param({"op": "queue.send", "type": t, "text": "x"},
                           "type")
        self.bad_param({"op": "queue.send", "text": "x"}, "type")
        self.bad_param({"op": "queue.recv", "type": -1}, "type")
        self.bad_param({"op": "queue.recv", "type_max": 0}, "type_max")
        self.bad_param({"op": "queue.recv", "type_max": -5}, "type_max")
        self.bad_param({"op": "queue.recv", "type": 1, "type_max": 2},
                       "type_max")
        self.bad_param({"op": "queue.recv", "except": True}, "except")
        self.bad_param({"op": "queue.recv", "type": 0, "except": True},
                       "except")
        self.bad_param({"op": "queue.recv", "type_max": 3, "except": True},
                       "except")
        self.bad_param({"op": "queue.consume", "type": -3}, "type")
        # nothing was sent by any of them
        self.assertEqual(self.stat()["messages"], 0)

    def test_wrong_param_types(self):
        cases = [
            ({"op": "queue.send", "type": "1", "text": "x"}, "type"),
            ({"op": "queue.send", "type": 1.0, "text": "x"}, "type"),
            ({"op": "queue.send", "type": 1.5, "text": "x"}, "type"),
            ({"op": "queue.send", "type": True, "text": "x"}, "type"),
            ({"op": "queue.send", "type": None, "text": "x"}, "type"),
            ({"op": "queue.send", "type": 1, "text": 5}, "text"),
            ({"op": "queue.send", "type": 1, "text": ["x"]}, "text"),
            ({"op": "queue.send", "type": 1, "data_b64": 5}, "data_b64"),
            ({"op": "queue.send", "type": 1, "text": "x", "queue": 1},
             "queue"),
            ({"op": "queue.send", "type": 1, "text": "x",
              "timeout_ms": "10"}, "timeout_ms"),
            ({"op": "queue.recv", "type": "2"}, "type"),
            ({"op": "queue.recv", "type_max": 2.5}, "type_max"),
            ({"op": "queue.recv", "except": "yes", "type": 1}, "except"),
            ({"op": "queue.recv", "except": 1, "type": 1}, "except"),
            ({"op": "queue.recv", "timeout_ms": 1.5}, "timeout_ms"),
            ({"op": "queue.recv", "timeout_ms": -1}, "timeout_ms"),
            ({"op": "queue.stat", "queue": ["default"]}, "queue"),
        ]
        for req, param in cases:
            with self.subTest(req=req):
                self.bad_param(req, param)
        self.assertEqual(self.stat()["messages"], 0)

    def test_unknown_params(self):
        cases = [
            ({"op": "queue.send", "type": 1, "text": "x", "bogus": 1},
             "bogus"),
            ({"op": "queue.send", "type": 1, "text": "x", "encoding": "text"},
             "encoding"),
            ({"op": "queue.recv", "text": "x"}, "text"),
            ({"op": "queue.recv", "Type": 1}, "Type"),
            ({"op": "queue.list", "queue": "default"}, "queue"),
            ({"op": "stats", "x": None}, "x"),
            ({"op": "queue.stat", "queue": "default", "verbose": True},
             "verbose"),
            ({"op": "cancel", "target": 1, "force": True}, "force"),
        ]
        for req, param in cases:
            with self.subTest(req=req):
                self.bad_param(req, param)
        self.assertEqual(self.stat()["messages"], 0)

    def test_unknown_param_with_long_non_ascii_name(self):
        """The error message names the param even when the name is cut
        inside a multi-byte character (the message must stay UTF-8)."""
        name = "a" + "\u00e9" * 40
        e = self.bad_param({"op": "hello", name: 1}, name)
        self.assertIn("unknown param", e["message"])
        self.assertIn("a" + "\u00e9" * 31, e["message"])

    def test_text_and_data_b64_exactly_one(self):
        self.bad_param({"op": "queue.send", "type": 1, "text": "x",
                        "data_b64": "eA=="}, "data_b64")
        self.bad_param({"op": "queue.send", "type": 1}, "text")
        self.assertEqual(self.stat()["messages"], 0)

    def test_strict_base64(self):
        bad = ["QQ", "QQ=", "Q", "QUJDRA", "QUJDRA=",  # missing padding
               "QU JD", "QUJD\n", " QUJD", "QUJD ", "QU\tJD",  # whitespace
               "QU-D", "QU_D", "QUJ*", "QUJD\u00e9===",  # bad alphabet
               "QR==", "QUJ=", "QUK=", "/w/=",  # non-canonical bits
               "QQ==QUJD", "====", "Q===", "QQ=A", "=QQQ"]  # padding misuse
        for s in bad:
            with self.subTest(data_b64=s):
                e = self.bad_param({"op": "queue.send", "type": 1,
                                    "data_b64": s}, "data_b64")
                self.assertIn("base64", e["message"])
        self.assertEqual(self.stat()["messages"], 0)
        # the canonical spellings are accepted
        for s, data in (("QQ==", b"A"), ("QUI=", b"AB"), ("QUJD", b"ABC"),
                        ("", b""), ("+/+/", b"\xfb\xff\xbf")):
            with self.subTest(data_b64=s):
                r = self.ok({"op": "queue.send", "type": 1, "data_b64": s})
                self.assertEqual(r["bytes"], len(data))
                m = self.recv(encoding="base64")["msg"]
                self.assertEqual(m["data_b64"], s)

    def test_msg_too_big(self):
        mx = msgmax()
        # exactly msgmax fits (the default queue holds 16384 bytes)
        self.assertLessEqual(mx, 16384)
        self.assertEqual(self.send("x" * mx)["bytes"], mx)
        self.assertEqual(self.recv()["msg"]["bytes"], mx)
        e = self.err({"op": "queue.send", "type": 1, "text": "x" * (mx + 1)},
                     "msg_too_big")
        self.assertEqual(e["data"], {"bytes": mx + 1, "max": mx})
        e = self.err({"op": "queue.send", "type": 1,
                      "data_b64": b64(b"\x01" * (mx + 1))}, "msg_too_big")
        self.assertEqual(e["data"], {"bytes": mx + 1, "max": mx})
        # a multi-byte text is measured in bytes, not characters
        n = mx // 2 + 1
        e = self.err({"op": "queue.send", "type": 1, "text": "\u00e9" * n},
                     "msg_too_big")
        self.assertEqual(e["data"]["bytes"], 2 * n)
        # over the queue's own max_bytes (1K): it can never fit
        self.err({"op": "queue.send", "queue": "small", "type": 1,
                  "text": "y" * 1025}, "msg_too_big")
        self.err({"op": "queue.send", "queue": "small", "type": 1,
                  "text": "y" * 1025, "timeout_ms": 50}, "msg_too_big")
        self.assertEqual(self.send("y" * 1024, queue="small")["bytes"], 1024)
        self.assertEqual(self.stat()["messages"], 0)
        self.assertEqual(self.stat("small")["messages"], 1)

    def test_queue_full(self):
        st = self.stat("small")
        self.assertEqual(st["max_bytes"], 1024)
        self.send("a" * 500, queue="small")
        self.send("b" * 500, queue="small")
        self.err({"op": "queue.send", "queue": "small", "type": 1,
                  "text": "c" * 500, "id": "full"}, "queue_full")
        st = self.stat("small")
        self.assertEqual((st["messages"], st["bytes"]), (2, 1000))
        # a smaller one still fits
        self.send("d" * 24, queue="small")
        self.err({"op": "queue.send", "queue": "small", "type": 1,
                  "text": "e"}, "queue_full")
        self.assertEqual(self.recv(queue="small")["msg"]["text"], "a" * 500)
        self.send("c" * 500, queue="small")
        texts = [self.recv(queue="small")["msg"]["text"] for _ in range(3)]
        self.assertEqual(texts, ["b" * 500, "d" * 24, "c" * 500])
        self.assertEqual(self.ok({"op": "stats"})["errors"],
                         {"queue_full": 2})

    def test_not_found(self):
        for req in ({"op": "queue.send", "queue": "nope", "type": 1,
                     "text": "x"},
                    {"op": "queue.recv", "queue": "nope"},
                    {"op": "queue.recv", "queue": "nope", "timeout_ms": 10},
                    {"op": "queue.consume", "queue": "nope"},
                    {"op": "queue.stat", "queue": "nope"},
                    {"op": "queue.stat", "queue": ""},
                    {"op": "queue.stat", "queue": "Default"}):
            with self.subTest(req=req):
                e = self.err(req, "not_found")
                self.assertEqual(e["data"], {"queue": req["queue"]})
        self.assertEqual(self.stat()["consumers"], 0)
        self.assertEqual(self.stat()["waiters"], 0)

    def test_default_queue_is_implied(self):
        self.send("implicit")
        self.assertEqual(self.stat("default")["messages"], 1)
        self.assertEqual(self.stat("small")["messages"], 0)
        m = self.recv(queue="default")["msg"]
        self.assertEqual((m["queue"], m["text"]), ("default", "implicit"))
        self.send("q", queue="small")
        self.assertEqual(self.recv()["msg"], None)
        self.assertEqual(self.recv(queue="small")["msg"]["queue"], "small")


class RequestFramingTest(OpsTest):

    def test_parse_error_position(self):
        for raw in (b'{"op" "hello"}', b'{"op":"hello",}', b'{"op":',
                    b'hello', b'{"op":"hello"}}', b'{"op":"hello","op":"x"}',
                    b"{'op':'hello'}", b'{"op":"hello","type":1e999999}',
                    b'{"op":"hello","id":18446744073709551616}',
                    b'{"op":"queue.send","type":9223372036854775808,'
                    b'"text":"x"}',
                    b'{"op":"hello","x":"\\u0000"}'):
            with self.subTest(raw=raw):
                self.c.send_raw(raw + b"\n")
                r = self.c.reply()
                self.assertNotIn("id", r)
                self.assertEqual(r["error"]["code"], "parse_error", r)
                pos = r["error"]["data"]["position"]
                self.assertIsInstance(pos, int)
                self.assertTrue(0 < pos <= len(raw), (pos, raw))
        # the connection stays usable
        self.assertEqual(self.ok({"op": "hello"})["server"], "ipcbridge")

    def test_not_utf8_request(self):
        raw = b'{"op":"queue.send","type":1,"text":"\xff\xfe"}\n'
        self.c.send_raw(raw)
        r = self.c.reply()
        self.assertEqual(r["error"]["code"], "not_utf8", r)
        self.assertIsInstance(r["error"]["data"]["position"], int)
        self.assertEqual(self.stat()["messages"], 0)

    def test_invalid_request(self):
        for raw in (b'[]', b'[{"op":"hello"}]', b'"hello"', b'42', b'null',
                    b'true'):
            with self.subTest(raw=raw):
                self.c.send_raw(raw + b"\n")
                r = self.c.reply()
                self.assertEqual(r["error"]["code"], "invalid_request", r)
                self.assertNotIn("id", r)
        for bad_id in ({}, {"a": 1}, [1], 1.5, True, None, "x" * 65,
                       "\u00e9" * 33):
            with self.subTest(id=bad_id):
                e = self.err({"op": "hello", "id": bad_id}, "invalid_request")
                self.assertEqual(e["data"], {"param": "id"})
        # a request with a bad id is not run
        r = self.c.call({"op": "queue.send", "type": 1, "text": "x",
                         "id": "y" * 65})
        self.assertNotIn("id", r)
        self.assertEqual(r["error"]["code"], "invalid_request")
        self.assertEqual(self.stat()["messages"], 0)
        # op missing or not a string; the id is still echoed
        for req in ({"id": 4}, {"op": 5, "id": 4}, {"op": None, "id": 4},
                    {"op": ["hello"], "id": 4}):
            with self.subTest(req=req):
                r = self.c.call(req)
                self.assertEqual(r["id"], 4, r)
                self.assertEqual(r["error"]["code"], "invalid_request")
                self.assertEqual(r["error"]["data"], {"param": "op"})

    def test_id_echo(self):
        for i in (0, 7, -3, 2 ** 63 - 1, -2 ** 63, "", "abc", "x" * 64,
                  "\u00e9" * 32, "w\u2713"):
            with self.subTest(id=i):
                r = self.c.call({"op": "hello", "id": i})
                self.assertIn("result", r)
                self.assertIs(type(r["id"]), type(i))
                self.assertEqual(r["id"], i)
                r = self.c.call({"op": "no.such", "id": i})
                self.assertEqual(r["id"], i)
                r = self.c.call({"op": "queue.stat", "queue": "nope",
                                 "id": i})
                self.assertEqual(r["id"], i)
                self.assertEqual(r["error"]["code"], "not_found")
        r = self.c.call({"op": "hello"})
        self.assertNotIn("id", r)

    def test_unknown_op(self):
        e = self.err({"op": "queue.purge", "id": 3}, "unknown_op")
        self.assertEqual(e["data"], {"op": "queue.purge"})
        e = self.err({"op": ""}, "unknown_op")
        self.assertEqual(e["data"], {"op": ""})
        e = self.err({"op": "HELLO"}, "unknown_op")
        long_op = "\u00e9" * 100
        e = self.err({"op": long_op}, "unknown_op")
        self.assertTrue(long_op.startswith(e["data"]["op"]))
        self.assertLessEqual(len(e["data"]["op"].encode()), 64)


class StatListTest(OpsTest):

    def test_queue_stat_fields(self):
        key = self.d.key()
        st = self.stat()
        self.assertLessEqual({"queue", "key", "key_spec", "msqid",
                              "messages", "bytes", "max_bytes", "last_send",
                              "last_recv", "mode", "uid", "gid", "waiters",
                              "consumers"}, set(st))
        self.assertEqual(st["queue"], "default")
        self.assertEqual(st["key"], "0x%08x" % key)
        self.assertEqual(st["key_spec"], "0x%08x" % key)
        msqid, used, count = ipcs_queue(key)
        self.assertEqual(st["msqid"], msqid)
        self.assertEqual((st["messages"], st["bytes"]), (0, 0))
        self.assertEqual(st["max_bytes"],
                         read_int("/proc/sys/kernel/msgmnb"))
        self.assertEqual(st["last_send"], {"pid": 0, "time": 0})
        self.assertEqual(st["last_recv"], {"pid": 0, "time": 0})
        self.assertEqual(st["mode"], "0660")
        self.assertEqual((st["uid"], st["gid"]), (os.getuid(), os.getgid()))
        self.assertEqual((st["waiters"], st["consumers"]), (0, 0))

        t0 = int(time.time())
        self.send("abcd", type=2)
        self.send("efghij", type=3)
        st = self.stat()
        self.assertEqual((st["messages"], st["bytes"]), (2, 10))
        self.assertEqual(ipcs_queue(key)[1:], (10, 2))
        self.assertEqual(st["last_send"]["pid"], self.d.proc.pid)
        # the kernel stamps with a coarse clock: it may lag a second
        self.assertTrue(t0 - 1 <= st["last_send"]["time"] <= time.time() + 1)
        self.assertEqual(st["last_recv"], {"pid": 0, "time": 0})
        self.recv()
        st = self.stat()
        self.assertEqual((st["messages"], st["bytes"]), (1, 6))
        self.assertEqual(st["last_recv"]["pid"], self.d.proc.pid)
        self.assertTrue(t0 - 1 <= st["last_recv"]["time"] <= time.time() + 1)

        self.assertEqual(self.stat("small")["max_bytes"], 1024)
        self.assertEqual(self.stat("private")["mode"], "0600")

        # waiters and consumers of this queue
        w = self.d.client()
        self.addCleanup(w.close)
        self.recv()
        w.send({"op": "queue.recv", "id": 1, "timeout_ms": 5000})
        wait_for(lambda: self.stat()["waiters"] == 1)
        cons = self.ok({"op": "queue.consume", "queue": "small"}, client=w)
        self.assertEqual(self.stat("small")["consumers"], 1)
        self.assertEqual(self.stat("small")["waiters"], 0)
        self.assertEqual(self.stat()["consumers"], 0)
        self.ok({"op": "cancel", "consumer": cons["consumer"]}, client=w)
        self.assertEqual(self.stat("small")["consumers"], 0)

    def test_queue_list(self):
        self.send("one", queue="small")
        lst = self.ok({"op": "queue.list"})["queues"]
        self.assertEqual([q["queue"] for q in lst],
                         ["default", "small", "private"])
        for q in lst:
            self.assertEqual(q["key"], "0x%08x" % self.d.key(q["queue"]))
            self.assertEqual(q, self.stat(q["queue"]))
        self.assertEqual(lst[1]["messages"], 1)

    def test_stats_counters(self):
        sent = [0]
        got = [0]

        def call(raw):
            self.c.send_raw(raw)
            sent[0] += len(raw)
            line = self.c.line()
            got[0] += len(line) + 1
            return line

        call(b'{"op":"hello"}\n')
        call(b'{"op":"queue.send","type":1,"text":"abc"}\n')
        call(b'{"op":"queue.send","type":2,"data_b64":"AAE="}\n')
        call(b'{"op":"queue.recv"}\n')
        call(b'{"op":"nope"}\n')
        call(b'{"op":"queue.stat","queue":"nope"}\n')
        call(b'{"op":"queue.send","type":0,"text":"x"}\n')
        call(b'{"op":"queue.send","type":1,"text":"x","z":1}\n')
        # blank and comment lines are no requests and get no reply
        self.c.send_raw(b"\n   \n# comment\n")
        sent[0] += len(b"\n   \n# comment\n")
        call(b'garbage\n')
        raw = b'{"op":"stats"}\n'
        self.c.send_raw(raw)
        sent[0] += len(raw)
        s = self.c.reply()["result"]
        self.assertEqual(s["requests"], 10)
        self.assertEqual(s["errors"], {"unknown_op": 1, "not_found": 1,
                                       "invalid_params": 2,
                                       "parse_error": 1})
        self.assertEqual(s["messages"], {"sent": 2, "received": 1,
                                         "put_back": 0, "acked": 0,
                                         "redelivered": 0, "restored": 0,
                                         "unacked": 0,
                                         "lost": 0})
        self.assertEqual(s["bytes"], {"in": sent[0], "out": got[0]})
        self.assertEqual(s["waiters"], 0)
        self.assertGreaterEqual(s["uptime_ms"], 0)
        self.assertGreaterEqual(s["connections"]["total"], 1)
        wait_for(lambda: self.ok({"op": "stats"})["connections"]["current"]
                 == 1)
        other = self.d.client()
        self.addCleanup(other.close)
        s2 = self.ok({"op": "stats"}, client=other)
        self.assertEqual(s2["connections"]["current"], 2)
        self.assertEqual(s2["connections"]["total"],
                         s["connections"]["total"] + 1)
        self.assertEqual(s2["messages"]["sent"], 2)
        self.recv()
        self.recv()
        s3 = self.ok({"op": "stats"})
        self.assertEqual(s3["messages"]["received"], 2)


def msgget_create(key):
    """Create a queue the way a worker would (ctypes: no sysv_ipc needed)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    msqid = libc.msgget(ctypes.c_int(key - (1 << 32) if key >= 1 << 31
                                     else key), 0o1000 | 0o660)
    if msqid < 0:
        raise OSError(ctypes.get_errno(), "msgget")
    return msqid


class ExternalQueueTest(DaemonTest):
    """A queue with create = no that a worker owns."""

    def setUp(self):
        self.ext_key = ipcb_test.private_key()
        self.addCleanup(ipcb_test.ipcrm_queue, self.ext_key)
        msgget_create(self.ext_key)
        self.queues = {"jobs": {}, "ext": {"key": self.ext_key,
                                           "create": "no"}}
        super().setUp()

    def test_no_default_queue(self):
        e = self.err({"op": "queue.send", "type": 1, "text": "x"},
                     "not_found")
        self.assertEqual(e["data"], {"queue": "default"})
        self.err({"op": "queue.recv"}, "not_found")
        self.assertEqual(self.ok({"op": "hello"})["queues"], ["jobs", "ext"])

    def test_worker_queue_removed_and_recreated(self):
        self.ok({"op": "queue.send", "queue": "ext", "type": 1,
                 "text": "x"})
        ipcb_test.ipcrm_queue(self.ext_key)
        self.err({"op": "queue.stat", "queue": "ext"}, "queue_removed")
        self.err({"op": "queue.send", "queue": "ext", "type": 1,
                  "text": "x"}, "queue_removed")
        self.err({"op": "queue.recv", "queue": "ext"}, "queue_removed")
        lst = self.ok({"op": "queue.list"})["queues"]
        self.assertEqual(lst[0]["queue"], "jobs")
        self.assertIn("messages", lst[0])
        self.assertEqual(set(lst[1]), {"queue", "key", "error"})
        self.assertEqual(lst[1]["queue"], "ext")
        self.assertEqual(lst[1]["key"], "0x%08x" % self.ext_key)
        self.assertEqual(lst[1]["error"]["code"], "queue_removed")
        # the daemon did not create it again (create = no)
        self.assertIsNone(ipcs_queue(self.ext_key))
        # a worker creates it again: the daemon uses it
        msqid = msgget_create(self.ext_key)
        st = self.ok({"op": "queue.stat", "queue": "ext"})
        self.assertEqual((st["msqid"], st["messages"]), (msqid, 0))
        self.ok({"op": "queue.send", "queue": "ext", "type": 1,
                 "text": "back"})
        self.assertEqual(self.ok({"op": "queue.recv", "queue": "ext"})
                         ["msg"]["text"], "back")


@unittest.skipUnless(sysv_ipc, "the sysv_ipc module is not installed")
class WorkerInteropTest(OpsTest):
    """A worker using the kernel queue directly sees the same messages."""

    def setUp(self):
        super().setUp()
        self.mq = sysv_ipc.MessageQueue(self.d.key(),
                                        max_message_size=msgmax())

    def test_worker_to_client(self):
        self.mq.send(ALL_BYTES, type=42)
        self.mq.send("h\u00e9llo".encode(), type=3)
        self.mq.send(b"", type=1)
        m = self.recv(type=42)["msg"]
        self.assertEqual(m["bytes"], 256)
        self.assertEqual(base64.b64decode(m["data_b64"]), ALL_BYTES)
        m = self.recv()["msg"]
        self.assertEqual((m["type"], m["text"], m["bytes"]),
                         (3, "h\u00e9llo", 6))
        m = self.recv()["msg"]
        self.assertEqual((m["type"], m["text"], m["bytes"]), (1, "", 0))
        big = os.urandom(msgmax())
        self.mq.send(big, type=77)
        m = self.recv(encoding="base64")["msg"]
        self.assertEqual(base64.b64decode(m["data_b64"]), big)

    def test_client_to_worker(self):
        self.send(data=ALL_BYTES, type=7)
        self.send("h\u00e9llo \U0001F600", type=2 ** 40)
        self.send(data=b"", type=5)
        self.assertEqual(self.mq.current_messages, 3)
        self.assertEqual(self.mq.receive(block=False), (ALL_BYTES, 7))
        self.assertEqual(self.mq.receive(block=False),
                         ("h\u00e9llo \U0001F600".encode(), 2 ** 40))
        self.assertEqual(self.mq.receive(block=False), (b"", 5))
        self.assertEqual(self.mq.current_messages, 0)

    def test_same_queue_id(self):
        self.assertEqual(self.stat()["msqid"], self.mq.id)
        self.mq.send(b"abc", type=4)
        st = self.stat()
        self.assertEqual((st["messages"], st["bytes"]), (1, 3))
        self.assertEqual(st["last_send"]["pid"], os.getpid())
        self.assertEqual(st["max_bytes"], self.mq.max_size)


if __name__ == "__main__":
    ipcb_test.main()
