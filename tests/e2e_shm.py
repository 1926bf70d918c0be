#!/usr/bin/env python3
"""End-to-end tests of shared memory (shm.*) and of queue payload encodings.

The real daemon serves [shm NAME] segments with private keys: PHP-format
segments (sysvshm's PHP_SM layout, serialize() values), raw ones, both
guarded by a PHP-compatible SysV semaphore. Real PHP (sysvshm, sysvsem,
sysvmsg) and Python sysv_ipc processes attach to the same objects: values
are compared both ways, lock holders park the daemon's requests, are
killed while holding, and so on. Queues with payload = php | json are
checked against PHP's msg_send/msg_receive and the raw bytes.

Every test waits on state (shm.stat "waiting", helper output lines), never
on fixed sleeps, and removes what it created: helper processes are killed
by pid, the daemon stopped, segments and semaphores removed with ipcrm.

PHP comes from $PHP or `php` on PATH (tests skip without it). sysv_ipc is
only visible to Debian's /usr/bin/python3: when this interpreter lacks it,
the script re-executes itself under /usr/bin/python3.

Run: IPCBRIDGE=src/ipcbridge PYTHONPATH=tests /usr/bin/python3 tests/e2e_shm.py
"""
import base64
import copy
import hashlib
import json
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import time
import unittest

import ipcb_test
from ipcb_test import Daemon, private_key, wait_for

SYSV_PY = ipcb_test.SYSV_PY
sysv_ipc = ipcb_test.import_sysv_ipc(__name__ == "__main__")

TIMEOUT = 20            # any one helper process, seconds


def find_php():
    php = os.environ.get("PHP") or shutil.which("php")
    if not php or not os.access(php, os.X_OK):
        return None
    try:
        r = subprocess.run([php, "-r", "echo function_exists('shm_attach') "
                            "&& function_exists('sem_get') && "
                            "function_exists('msg_send') ? 'yes' : 'no';"],
                           capture_output=True, timeout=TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return php if r.stdout == b"yes" else None


PHP = find_php()
need_php = unittest.skipIf(PHP is None, "php with sysvshm/sysvsem/sysvmsg "
                           "not found")
need_sysv = unittest.skipIf(sysv_ipc is None, "sysv_ipc not importable")
need_sysv_py = unittest.skipIf(
    not os.access(SYSV_PY, os.X_OK) or subprocess.run(
        [SYSV_PY, "-c", "import sysv_ipc"],
        capture_output=True).returncode != 0,
    "/usr/bin/python3 with sysv_ipc not found")

ALL_BYTES = bytes(range(256))
HEAD = 40                       # sizeof(sysvshm_chunk_head)


def chunk(n):
    """Bytes a PHP variable of n serialized bytes takes (php-src formula)."""
    return ((n + 31) // 8) * 8 + 8


def ser_str(b):
    return b's:%d:"' % len(b) + b + b'";'


def b64(b):
    return base64.b64encode(b).decode()


def php_layout(buf):
    """Header and [(key, bytes)] of a PHP_SM segment image."""
    magic, start, end, free, total = struct.unpack_from("<8sqqqq", buf, 0)
    out, pos = [], start
    while pos < end:
        key, length, nxt = struct.unpack_from("<qqq", buf, pos)
        assert nxt > 0, "bad chunk chain"
        out.append((key, bytes(buf[pos + 24:pos + 24 + length])))
        pos += nxt
    return {"magic": magic, "start": start, "end": end, "free": free,
            "total": total}, out


def segment_bytes(key):
    """A copy of a segment's bytes, attached only for the read."""
    m = sysv_ipc.SharedMemory(key)
    try:
        return m.read()
    finally:
        m.detach()


def ipcrm(flag, key):
    subprocess.run(["ipcrm", flag, "0x%08x" % key],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def pending(client, timeout=0.3):
    """True when the server sent something within timeout."""
    if client.buf:
        return True
    r, _, _ = select.select([client.sock], [], [], timeout)
    return bool(r)


# PHP: take the semaphore of a key the way workers do, report, hold until a
# line comes on stdin, release.
PHP_HOLD = r'''
$s = sem_get((int)$argv[1]);
if ($s === false || !sem_acquire($s)) {
    fwrite(STDERR, "sem failed\n");
    exit(2);
}
echo "locked\n";
fgets(STDIN);
if (!sem_release($s)) exit(3);
echo "released\n";
'''

# Python: the reference's advice for sysv_ipc: open only (flags=0), undo.
PY_HOLD = r'''
import sys, sysv_ipc
s = sysv_ipc.Semaphore(int(sys.argv[1]), flags=0)
s.undo = True
s.acquire(timeout=10)
print("locked", flush=True)
sys.stdin.readline()
s.release()
print("released", flush=True)
'''


class Holder:
    """A helper process holding a semaphore until told to let go."""

    def __init__(self, test, argv):
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        test.procs.append(self.p)
        self.expect("locked")

    def expect(self, word, timeout=TIMEOUT):
        r, _, _ = select.select([self.p.stdout], [], [], timeout)
        assert r, "holder said nothing within %ds" % timeout
        line = self.p.stdout.readline().decode().strip()
        if line != word:
            self.p.wait(5)
            raise AssertionError("holder said %r, not %r; stderr: %s" % (
                line, word, self.p.stderr.read().decode()))

    def release(self):
        self.p.stdin.write(b"go\n")
        self.p.stdin.flush()
        self.expect("released")
        assert self.p.wait(TIMEOUT) == 0

    def kill(self):
        self.p.send_signal(signal.SIGKILL)
        self.p.wait(TIMEOUT)


class ShmTest(unittest.TestCase):
    """A fresh daemon with the class's segments (private keys) and queues."""
    shms = {"default": {}}
    queues = None
    server = None

    def setUp(self):
        self.procs = []
        self.shm = copy.deepcopy(self.shms)
        for name, o in self.shm.items():
            o.setdefault("key", private_key())
            if o.get("sem_key") is True:
                o["sem_key"] = private_key()
        self.ipc_keys = []      # (flag, key) removed after the daemon stops
        for o in self.shm.values():
            self.ipc_keys += [("-M", o["key"]), ("-S", self.sem_key_of(o))]
        self.addCleanup(self.remove_ipc)
        self.d = Daemon(copy.deepcopy(self.queues), self.server,
                        extra=self.shm_conf())
        self.addCleanup(self.d.cleanup)
        self.before_start()
        self.d.start()
        self.c = self.d.client()
        self.addCleanup(self.c.close)
        self.addCleanup(self.reap)

    def before_start(self):
        pass

    @staticmethod
    def sem_key_of(o):
        return o.get("sem_key", o["key"])

    def key(self, name="default"):
        return self.shm[name]["key"]

    def sem_key(self, name="default"):
        return self.sem_key_of(self.shm[name])

    def shm_conf(self):
        out = []
        for name, o in self.shm.items():
            out.append("[shm %s]" % name)
            for k, v in o.items():
                if k in ("key", "sem_key") and isinstance(v, int):
                    v = "0x%08x" % v
                out.append("%s = %s" % (k, v))
        return "\n".join(out) + "\n"

    def remove_ipc(self):
        for flag, key in self.ipc_keys:
            ipcrm(flag, key)

    def reap(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
            for f in (p.stdin, p.stdout, p.stderr):
                if f:
                    f.close()

    def client(self):
        c = self.d.client()
        self.addCleanup(c.close)
        return c

    def side(self):
        if not hasattr(self, "_side"):
            self._side = self.client()
        return self._side

    def ok(self, req, client=None):
        r = (client or self.c).call(req)
        self.assertIn("result", r, r)
        return r["result"]

    def err(self, req, code, client=None):
        r = (client or self.c).call(req)
        self.assertIn("error", r, r)
        self.assertEqual(r["error"]["code"], code, r)
        return r["error"]

    def bad(self, req, param, client=None):
        e = self.err(req, "invalid_params", client)
        self.assertEqual(e.get("data"), {"param": param}, e)
        return e

    def stat(self, name="default"):
        return self.ok({"op": "shm.stat", "name": name}, client=self.side())

    def put(self, var, name="default", **kw):
        req = {"op": "shm.put", "name": name, "var": var}
        req.update(kw)
        return self.ok(req)

    def get(self, var, name="default", **kw):
        req = {"op": "shm.get", "name": name, "var": var}
        req.update(kw)
        return self.ok(req)

    def php(self, code, *args, stdin=None):
        """Run a PHP snippet to the end; its stdout lines as JSON."""
        r = subprocess.run([PHP, "-r", code, "--"] + [str(a) for a in args],
                           input=stdin, capture_output=True, timeout=TIMEOUT)
        self.assertEqual(r.returncode, 0, "php failed (%d): %s%s" % (
            r.returncode, r.stdout.decode(errors="replace"),
            r.stderr.decode(errors="replace")))
        self.assertEqual(r.stderr, b"", r.stderr)
        return [json.loads(l) for l in r.stdout.decode().splitlines() if l]

    def php_hold(self, sem_key):
        return Holder(self, [PHP, "-r", PHP_HOLD, "--", str(sem_key)])

    def py_hold(self, sem_key):
        return Holder(self, [SYSV_PY, "-c", PY_HOLD, str(sem_key)])


class PhpSegmentTest(ShmTest):
    SIZE = 4096
    shms = {"default": {"size": SIZE}, "small": {"size": 512}}

    def free_after(self, *lens, size=SIZE):
        return size - HEAD - sum(chunk(n) for n in lens)

    def test_text_roundtrip_and_figures(self):
        r = self.put(1, text="hello")
        self.assertEqual(r, {"name": "default", "var": 1, "bytes": 12,
                             "free": self.free_after(12)})
        r = self.get(1)
        self.assertEqual(r, {"name": "default", "var": 1, "bytes": 12,
                             "text": "hello"})
        # the default segment is the one called "default"
        r = self.ok({"op": "shm.get", "var": 1})
        self.assertEqual(r["text"], "hello")
        u = "h\u00e9llo w\u00f6rld \u2713 \U0001f600"
        r = self.put(-7, text=u)
        n = len(ser_str(u.encode()))
        self.assertEqual(r["bytes"], n)
        self.assertEqual(r["free"], self.free_after(12, n))
        self.assertEqual(self.get(-7)["text"], u)
        self.assertEqual(self.get(-7, encoding="base64")["data_b64"],
                         b64(u.encode()))
        self.assertEqual(self.get(-7, encoding="text")["text"], u)
        # empty string
        self.put(2, text="")
        self.assertEqual(self.get(2), {"name": "default", "var": 2,
                                       "bytes": 7, "text": ""})
        # var is PHP's full int64 key
        for var in (2 ** 63 - 1, -2 ** 63, 0):
            self.put(var, text="k%d" % var)
        for var in (2 ** 63 - 1, -2 ** 63, 0):
            self.assertEqual(self.get(var)["text"], "k%d" % var)

    def test_all_bytes(self):
        r = self.put(5, data_b64=b64(ALL_BYTES))
        n = len(ser_str(ALL_BYTES))
        self.assertEqual(r, {"name": "default", "var": 5, "bytes": n,
                             "free": self.free_after(n)})
        for enc in (None, "auto", "base64"):
            kw = {"encoding": enc} if enc else {}
            r = self.get(5, **kw)
            self.assertEqual(r, {"name": "default", "var": 5, "bytes": n,
                                 "data_b64": b64(ALL_BYTES)}, enc)
        self.err({"op": "shm.get", "var": 5, "encoding": "text"},
                 "not_utf8")
        # text with a NUL-free but invalid UTF-8 tail comes as data_b64 too
        self.put(6, data_b64=b64(b"abc\xff"))
        self.assertEqual(self.get(6)["data_b64"], b64(b"abc\xff"))
        # a text string is stored as the same PHP string as its bytes
        self.put(7, data_b64=b64(b"plain"))
        self.assertEqual(self.get(7)["text"], "plain")

    VALUES = [
        (None, b"N;"),
        (True, b"b:1;"),
        (False, b"b:0;"),
        (0, b"i:0;"),
        (-42, b"i:-42;"),
        (2 ** 63 - 1, b"i:9223372036854775807;"),
        (-2 ** 63, b"i:-9223372036854775808;"),
        (1.5, b"d:1.5;"),
        (0.1, b"d:0.1;"),
        (-0.25, b"d:-0.25;"),
        (3.0, b"d:3;"),
        (1e100, b"d:1.0E+100;"),
        (1e-7, b"d:1.0E-7;"),
        (0.0001, b"d:0.0001;"),
        (123456.789, b"d:123456.789;"),
        (1e17, b"d:1.0E+17;"),
        (1e16, b"d:10000000000000000;"),
        (5e-324, b"d:5.0E-324;"),
        (1.7976931348623157e308, b"d:1.7976931348623157E+308;"),
        ("h\u00e9llo", b's:6:"h\xc3\xa9llo";'),
        ([1, "a", None], b'a:3:{i:0;i:1;i:1;s:1:"a";i:2;N;}'),
        ({"k": {"n": [True, {"x": 1.5}]}, "7": "seven"},
         b'a:2:{s:1:"k";a:1:{s:1:"n";a:2:{i:0;b:1;i:1;a:1:{s:1:"x";d:1.5;}'
         b'}}i:7;s:5:"seven";}'),
        ([], b"a:0:{}"),
    ]

    def test_values(self):
        lens = []
        for i, (v, ser) in enumerate(self.VALUES):
            r = self.put(100 + i, value=v)
            lens.append(len(ser))
            self.assertEqual(r, {"name": "default", "var": 100 + i,
                                 "bytes": len(ser),
                                 "free": self.free_after(*lens)}, v)
        for i, (v, ser) in enumerate(self.VALUES):
            r = self.get(100 + i)
            self.assertEqual(r["bytes"], len(ser), v)
            if isinstance(v, str):
                self.assertEqual(r["text"], v)
                continue
            self.assertIn("value", r, r)
            self.assertEqual(r["value"], v)
            self.assertEqual(type(r["value"]), type(v), (v, r))
        # PHP arrays: keys 0..n-1 in order are a list, others an object
        self.put(1, value={"0": "a", "1": "b"})
        self.assertEqual(self.get(1)["value"], ["a", "b"])
        self.put(2, value={})
        self.assertEqual(self.get(2)["value"], [])
        self.put(3, value={"1": "a", "0": "b"})
        self.assertEqual(self.get(3)["value"], {"1": "a", "0": "b"})

    @need_sysv
    def test_bad_value_and_bad_chain(self):
        self.put(1, text="hello")
        self.put(2, value=[1])
        m = sysv_ipc.SharedMemory(self.key())
        try:
            # var 1's bytes are no serialize() text (same length)
            m.write(b'x:5:"hello";', HEAD + 24)
            e = self.err({"op": "shm.get", "var": 1}, "corrupt")
            self.assertEqual(e["data"], {"data_b64": b64(b'x:5:"hello";')})
            # only that value: the chain is fine
            self.assertEqual(self.get(2)["value"], [1])
            self.assertNotIn("corrupt", self.stat())
            # var 1's chunk says its successor is 7 bytes on: the chain
            # is broken, and nothing is touched until it is whole again
            m.write(struct.pack("<q", 7), HEAD + 16)
            before = m.read()
            for req in ({"op": "shm.get", "var": 2},
                        {"op": "shm.put", "var": 3, "text": "x"},
                        {"op": "shm.del", "var": 2},
                        {"op": "shm.vars"}):
                self.err(req, "corrupt")
            self.assertEqual(m.read(), before)
            st = self.stat()
            self.assertIs(st.get("corrupt"), True, st)
            self.assertEqual(st["lock"], 1)
            m.write(struct.pack("<q", chunk(12)), HEAD + 16)
        finally:
            m.detach()
        self.assertEqual(self.get(2)["value"], [1])
        self.put(3, text="x")
        self.assertEqual(self.stat()["vars"], 3)

    @need_sysv
    def test_layout_is_phps(self):
        self.put(1, text="hello")
        self.put(2, value=42)
        self.put(7, value={"a": 1.5, "b": True, "c": None})
        self.put(1, text="bye")         # a replaced value moves to the end
        head, chunks = php_layout(segment_bytes(self.key()))
        ends = HEAD + chunk(5) + chunk(42) + chunk(10)
        self.assertEqual(head, {"magic": b"PHP_SM\0\0", "start": HEAD,
                                "end": ends, "free": self.SIZE - ends,
                                "total": self.SIZE})
        self.assertEqual(chunks, [
            (2, b"i:42;"),
            (7, b'a:3:{s:1:"a";d:1.5;s:1:"b";b:1;s:1:"c";N;}'),
            (1, b's:3:"bye";')])

    def test_has_del_vars(self):
        self.assertEqual(self.ok({"op": "shm.vars"}), {
            "name": "default", "vars": [], "used": 0,
            "free": self.SIZE - HEAD})
        self.put(3, text="three")
        self.put(1, value=[1, 2])
        self.assertEqual(self.ok({"op": "shm.has", "var": 3}),
                         {"name": "default", "var": 3, "exists": True})
        self.assertEqual(self.ok({"op": "shm.has", "var": 4}),
                         {"name": "default", "var": 4, "exists": False})
        n3, n1 = len(ser_str(b"three")), len(b"a:2:{i:0;i:1;i:1;i:2;}")
        self.assertEqual(self.ok({"op": "shm.vars"}), {
            "name": "default", "vars": [{"var": 3, "bytes": n3},
                                        {"var": 1, "bytes": n1}],
            "used": chunk(n3) + chunk(n1), "free": self.free_after(n3, n1)})
        self.assertEqual(self.ok({"op": "shm.del", "var": 3}),
                         {"name": "default", "var": 3, "deleted": True})
        self.assertEqual(self.ok({"op": "shm.has", "var": 3})["exists"],
                         False)
        e = self.err({"op": "shm.get", "var": 3}, "not_found")
        self.assertEqual(e["data"], {"var": 3})
        e = self.err({"op": "shm.del", "var": 3}, "not_found")
        self.assertEqual(e["data"], {"var": 3})
        # the one left was compacted to the front and still reads back
        self.assertEqual(self.get(1)["value"], [1, 2])
        self.assertEqual(self.ok({"op": "shm.vars"})["vars"],
                         [{"var": 1, "bytes": n1}])
        st = self.stat()
        self.assertEqual((st["used"], st["free"], st["vars"]),
                         (chunk(n1), self.free_after(n1), 1))

    def test_not_found(self):
        e = self.err({"op": "shm.get", "var": 99}, "not_found")
        self.assertEqual(e["data"], {"var": 99})
        for op in ("shm.get", "shm.put", "shm.has", "shm.del"):
            req = {"op": op, "name": "nope", "var": 1}
            if op == "shm.put":
                req["text"] = "x"
            e = self.err(req, "not_found")
            self.assertEqual(e["data"], {"name": "nope"})
        for op in ("shm.vars", "shm.stat"):
            e = self.err({"op": op, "name": "nope"}, "not_found")
            self.assertEqual(e["data"], {"name": "nope"})

    def test_no_space_keeps_old_value(self):
        # 512 bytes: 472 after the header
        old = "x" * 100
        self.put(1, name="small", text=old)
        n = len(ser_str(old.encode()))
        free = 512 - HEAD - chunk(n)
        big = "y" * 600
        e = self.err({"op": "shm.put", "name": "small", "var": 1,
                      "text": big}, "no_space")
        self.assertEqual(e["data"], {"bytes": len(ser_str(big.encode())),
                                     "free": free})
        self.assertEqual(self.get(1, name="small")["text"], old)
        e = self.err({"op": "shm.put", "name": "small", "var": 2,
                      "value": ["z" * 200, "z" * 200]}, "no_space")
        self.assertEqual(e["data"]["free"], free)
        self.assertEqual(self.ok({"op": "shm.vars", "name": "small"})[
            "vars"], [{"var": 1, "bytes": n}])
        # a replacement may use the old value's room (PHP drops it first)
        fill = "f" * (free + chunk(n) - 32 - 16)
        r = self.put(1, name="small", text=fill)
        self.assertEqual(r["free"], 512 - HEAD - chunk(
            len(ser_str(fill.encode()))))
        self.assertLess(r["free"], chunk(n))
        self.assertEqual(self.get(1, name="small")["text"], fill)
        # the errors above were answered under the lock, and let it go
        self.assertEqual(self.stat("small")["lock"], 1)

    def test_invalid_params(self):
        self.bad({"op": "shm.put", "value": 1}, "var")
        self.bad({"op": "shm.put", "text": "a"}, "var")
        self.bad({"op": "shm.get"}, "var")
        self.bad({"op": "shm.has"}, "var")
        self.bad({"op": "shm.del"}, "var")
        self.bad({"op": "shm.put", "var": "1", "text": "a"}, "var")
        self.bad({"op": "shm.put", "var": 1.0, "text": "a"}, "var")
        self.bad({"op": "shm.put", "var": 1, "offset": 0, "text": "a"},
                 "offset")
        self.bad({"op": "shm.get", "var": 1, "offset": 0}, "offset")
        self.bad({"op": "shm.get", "var": 1, "length": 3}, "length")
        self.bad({"op": "shm.put", "var": 1}, "text")
        self.bad({"op": "shm.put", "var": 1, "text": "a",
                  "data_b64": "YQ=="}, "data_b64")
        self.bad({"op": "shm.put", "var": 1, "text": "a", "value": 1},
                 "value")
        self.bad({"op": "shm.put", "var": 1, "data_b64": "YQ=",
                  "value": 1}, "value")
        for junk in ("abc", "YQ", "Y Q==", "YQ==\n", "@@@@", "YR=="):
            self.bad({"op": "shm.put", "var": 1, "data_b64": junk},
                     "data_b64")
        self.bad({"op": "shm.get", "var": 1, "encoding": "json"},
                 "encoding")
        self.bad({"op": "shm.get", "var": 1, "encoding": "php"},
                 "encoding")
        self.bad({"op": "shm.put", "var": 1, "text": "a",
                  "lock_timeout_ms": -1}, "lock_timeout_ms")
        self.bad({"op": "shm.put", "var": 1, "text": "a",
                  "lock_timeout_ms": 300001}, "lock_timeout_ms")
        deep = 1
        for _ in range(70):
            deep = [deep]
        self.bad({"op": "shm.put", "var": 1, "value": deep}, "value")
        self.bad({"op": "shm.put", "var": 1, "text": "a", "bogus": 1},
                 "bogus")
        self.bad({"op": "shm.del", "var": 1, "offset": 0}, "offset")
        self.bad({"op": "shm.vars", "var": 1}, "var")
        self.bad({"op": "shm.stat", "name": 5}, "name")
        # nothing above was written
        self.assertEqual(self.ok({"op": "shm.vars"})["vars"], [])


class RawSegmentTest(ShmTest):
    SIZE = 4096
    shms = {"raw": {"format": "raw", "size": SIZE}}

    def rget(self, **kw):
        req = {"op": "shm.get", "name": "raw"}
        req.update(kw)
        return self.ok(req)

    def rput(self, **kw):
        req = {"op": "shm.put", "name": "raw"}
        req.update(kw)
        return self.ok(req)

    def test_offset_and_length(self):
        # default offset 0
        r = self.rput(data_b64=b64(ALL_BYTES))
        self.assertEqual(r, {"name": "raw", "offset": 0, "bytes": 256})
        self.assertEqual(self.rget(length=256), {
            "name": "raw", "offset": 0, "bytes": 256,
            "data_b64": b64(ALL_BYTES)})
        self.assertEqual(self.rget(length=256, encoding="base64")[
            "data_b64"], b64(ALL_BYTES))
        self.err({"op": "shm.get", "name": "raw", "length": 256,
                  "encoding": "text"}, "not_utf8")
        self.assertEqual(self.rget(offset=65, length=3)["text"], "ABC")
        r = self.rput(offset=300, text="hello")
        self.assertEqual(r, {"name": "raw", "offset": 300, "bytes": 5})
        self.assertEqual(self.rget(offset=300, length=5), {
            "name": "raw", "offset": 300, "bytes": 5, "text": "hello"})
        self.assertEqual(self.rget(offset=301, length=3)["text"], "ell")
        self.assertEqual(self.rget(offset=300, length=5,
                                   encoding="base64")["data_b64"],
                         b64(b"hello"))
        # no length: to the end (a fresh segment is zero-filled)
        r = self.rget()
        self.assertEqual(r["bytes"], self.SIZE)
        whole = base64.b64decode(r["data_b64"])
        self.assertEqual(whole, ALL_BYTES + bytes(44) + b"hello" +
                         bytes(self.SIZE - 305))
        r = self.rget(offset=4000)
        self.assertEqual((r["offset"], r["bytes"]), (4000, 96))
        self.assertEqual(base64.b64decode(r["data_b64"]), bytes(96))
        self.assertEqual(self.rget(offset=self.SIZE), {
            "name": "raw", "offset": self.SIZE, "bytes": 0, "text": ""})
        self.assertEqual(self.rget(length=0)["text"], "")
        # a write that ends exactly at the end
        self.rput(offset=self.SIZE - 3, text="end")
        self.assertEqual(self.rget(offset=self.SIZE - 3)["text"], "end")

    @need_sysv
    def test_bytes_are_the_segment(self):
        self.rput(offset=10, data_b64=b64(b"\x00\x01raw\xff"))
        self.assertEqual(segment_bytes(self.key("raw"))[8:18],
                         b"\x00\x00\x00\x01raw\xff\x00\x00")
        m = sysv_ipc.SharedMemory(self.key("raw"))
        try:
            m.write(b"from python", 2000)
        finally:
            m.detach()
        self.assertEqual(self.rget(offset=2000, length=11)["text"],
                         "from python")

    def test_out_of_range(self):
        for req in ({"offset": self.SIZE - 2, "text": "abc"},
                    {"offset": self.SIZE + 1, "text": ""},
                    {"offset": 2 ** 62, "text": "a"},
                    {"data_b64": b64(bytes(self.SIZE + 1))}):
            req.update(op="shm.put", name="raw")
            self.err(req, "out_of_range")
        for req in ({"offset": self.SIZE - 2, "length": 3},
                    {"offset": self.SIZE + 1},
                    {"offset": self.SIZE + 1, "length": 0},
                    {"length": self.SIZE + 1},
                    {"offset": 2 ** 62, "length": 2 ** 62}):
            req.update(op="shm.get", name="raw")
            self.err(req, "out_of_range")
        # nothing was written
        self.assertEqual(base64.b64decode(self.rget()["data_b64"]),
                         bytes(self.SIZE))

    def test_invalid_params(self):
        self.bad({"op": "shm.put", "name": "raw", "var": 1, "text": "a"},
                 "var")
        self.bad({"op": "shm.get", "name": "raw", "var": 1}, "var")
        self.bad({"op": "shm.put", "name": "raw", "value": "a"}, "value")
        self.bad({"op": "shm.put", "name": "raw", "value": {"a": 1}},
                 "value")
        self.bad({"op": "shm.put", "name": "raw", "offset": -1,
                  "text": "a"}, "offset")
        self.bad({"op": "shm.get", "name": "raw", "offset": -1}, "offset")
        self.bad({"op": "shm.get", "name": "raw", "length": -1}, "length")
        self.bad({"op": "shm.get", "name": "raw", "offset": 0,
                  "length": -5}, "length")
        self.bad({"op": "shm.put", "name": "raw", "data_b64": "a==="},
                 "data_b64")
        self.bad({"op": "shm.put", "name": "raw", "length": 3,
                  "text": "a"}, "length")
        self.bad({"op": "shm.has", "name": "raw", "var": 1}, "name")
        self.bad({"op": "shm.del", "name": "raw", "var": 1}, "name")
        self.bad({"op": "shm.vars", "name": "raw"}, "name")
        self.assertEqual(base64.b64decode(self.rget()["data_b64"]),
                         bytes(self.SIZE))


# PHP stores values (under the segment's semaphore, as a worker should)
# and reports strlen(serialize()) of each.
PHP_STORE = r'''
[, $key, $semkey] = $argv;
$sem = sem_get((int)$semkey);
sem_acquire($sem);
$s = shm_attach((int)$key);
$all = ''; for ($i = 0; $i < 256; $i++) $all .= chr($i);
$vals = [
    1 => $all, 2 => 42, 3 => -7, 4 => PHP_INT_MAX, 5 => PHP_INT_MIN,
    6 => 0.1, 7 => -2.5, 8 => 1.0E+100, 9 => 3.0, 10 => 5e-324,
    11 => ['a' => [1, 2, ['x' => 'y', 'n' => null]], 'b' => true,
           'c' => 1.5, 5 => 'five', 'e' => [], 'u' => "h\u{e9}llo"],
    12 => [10, 20, 30], 13 => null, 14 => false, 15 => "h\u{e9}llo",
    16 => '', 17 => [3 => 'a', 1 => 'b'],
];
$out = [];
foreach ($vals as $k => $v) {
    if (!shm_put_var($s, $k, $v)) exit(2);
    $out[$k] = strlen(serialize($v));
}
sem_release($sem);
echo json_encode($out), "\n";
'''

# PHP reads what the socket stored: === against PHP literals, plus
# serialize() of the literal (to compare with the stored bytes).
PHP_CHECK = r'''
[, $key, $semkey] = $argv;
$sem = sem_get((int)$semkey);
sem_acquire($sem);
$s = shm_attach((int)$key);
$all = ''; for ($i = 0; $i < 256; $i++) $all .= chr($i);
$exp = [
    1 => $all, 2 => "h\u{e9}llo w\u{f6}rld \u{2713} \u{1f600}", 3 => 42,
    4 => PHP_INT_MAX, 5 => -1.5, 6 => 1.0E+100, 7 => null, 8 => true,
    9 => [1, 'two', 3.5, null, false],
    10 => ['a' => ['b' => ['c' => [1, ['d' => 'e']]]], 7 => 'seven',
           -3 => 'neg', '01' => 'str'],
    11 => [], 12 => 3.0, 13 => '', 14 => 0.1, 15 => 1.7976931348623157E+308,
    16 => PHP_INT_MIN, 17 => 1.0E-7,
];
foreach ($exp as $k => $e) {
    if (!shm_has_var($s, $k)) {
        echo json_encode([$k, 'missing']), "\n";
        continue;
    }
    $got = shm_get_var($s, $k);
    echo json_encode([$k, $got === $e, base64_encode(var_export($got, true)),
                      base64_encode(serialize($e))]), "\n";
}
sem_release($sem);
'''


@need_php
class PhpInteropTest(ShmTest):
    shms = {"default": {"size": 65536}}

    def test_php_stores_bridge_reads(self):
        lens = self.php(PHP_STORE, self.key(), self.sem_key())[0]
        r = self.get(1)
        self.assertEqual(r["data_b64"], b64(ALL_BYTES))
        self.assertEqual(r["bytes"], lens["1"])
        expect = {
            2: 42, 3: -7, 4: 2 ** 63 - 1, 5: -2 ** 63, 6: 0.1, 7: -2.5,
            8: 1e100, 9: 3.0, 10: 5e-324,
            11: {"a": [1, 2, {"x": "y", "n": None}], "b": True, "c": 1.5,
                 "5": "five", "e": [], "u": "h\u00e9llo"},
            12: [10, 20, 30], 13: None, 14: False,
            17: {"3": "a", "1": "b"},
        }
        for var, v in expect.items():
            r = self.get(var)
            self.assertIn("value", r, r)
            self.assertEqual(r["value"], v, var)
            self.assertEqual(type(r["value"]), type(v), var)
            self.assertEqual(r["bytes"], lens[str(var)], var)
        self.assertEqual(self.get(15)["text"], "h\u00e9llo")
        self.assertEqual(self.get(16)["text"], "")
        vs = self.ok({"op": "shm.vars"})["vars"]
        self.assertEqual([v["var"] for v in vs], list(range(1, 18)))
        self.assertEqual({str(v["var"]): v["bytes"] for v in vs}, lens)

    @need_sysv
    def test_bridge_stores_php_reads(self):
        puts = {
            1: {"data_b64": b64(ALL_BYTES)},
            2: {"text": "h\u00e9llo w\u00f6rld \u2713 \U0001f600"},
            3: {"value": 42}, 4: {"value": 2 ** 63 - 1},
            5: {"value": -1.5}, 6: {"value": 1e100}, 7: {"value": None},
            8: {"value": True}, 9: {"value": [1, "two", 3.5, None, False]},
            10: {"value": {"a": {"b": {"c": [1, {"d": "e"}]}},
                           "7": "seven", "-3": "neg", "01": "str"}},
            11: {"value": {}}, 12: {"value": 3.0}, 13: {"value": ""},
            14: {"value": 0.1}, 15: {"value": 1.7976931348623157e308},
            16: {"value": -2 ** 63}, 17: {"value": 1e-7},
        }
        for var, kw in puts.items():
            self.put(var, **kw)
        rows = self.php(PHP_CHECK, self.key(), self.sem_key())
        self.assertEqual(len(rows), len(puts), rows)
        stored = dict(php_layout(segment_bytes(self.key()))[1])
        for var, same, export, ser in rows:
            export = base64.b64decode(export).decode(errors="replace")
            self.assertTrue(same, "var %d: PHP got %s" % (var, export))
            # byte for byte what PHP's serialize() makes of the value
            self.assertEqual(stored[var], base64.b64decode(ser), var)

    def test_concurrent_writers_exclude_each_other(self):
        # PHP rewrites var 1 (so it moves to the end each time) and, while
        # it holds the lock, var 2 must not change under it; the bridge
        # rewrites var 2 as fast as it can meanwhile
        p = subprocess.Popen([PHP, "-r", r'''
[, $key] = $argv;
$sem = sem_get((int)$key);
$s = shm_attach((int)$key);
echo "ready\n";
// until var 2 was seen to change 20 times between two holds
$changes = 0; $prev = null;
for ($i = 0; $changes < 20; $i++) {
    if ($i >= 20000) exit(5);
    sem_acquire($sem);
    $before = shm_has_var($s, 2) ? shm_get_var($s, 2) : null;
    $last = $i;
    if (!shm_put_var($s, 1, str_repeat('p', 1 + $i % 97 * 100))) exit(2);
    usleep(200);
    $after = shm_has_var($s, 2) ? shm_get_var($s, 2) : null;
    if ($before !== $after) {
        fwrite(STDERR, "var 2 changed under the lock\n");
        exit(3);
    }
    if ($after !== null && !preg_match('/^b*-\d+$/', $after)) exit(4);
    sem_release($sem);
    usleep(200);        // (a worker that re-acquires at once starves the
                        // bridge: see LockTest.test_busy_worker_...)
    if ($after !== $prev) { $changes++; $prev = $after; }
}
echo "done $last\n";
''', "--", str(self.key())], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        self.procs.append(p)
        self.assertEqual(p.stdout.readline(), b"ready\n")
        i = 0
        while p.poll() is None or i < 50:
            # pipelined: many puts in flight, answered in order
            batch = range(i, i + 20)
            self.c.send_raw(b"".join(json.dumps({
                "op": "shm.put", "var": 2, "text": "b" * (j % 89 * 100) +
                "-%d" % j, "lock_timeout_ms": 10000}).encode() + b"\n"
                for j in batch))
            for j in batch:
                r = self.c.reply()
                self.assertIn("result", r, r)
            i += 20
        self.assertEqual(p.wait(TIMEOUT), 0, p.stderr.read())
        out = p.stdout.read().split()
        self.assertEqual(out[0], b"done")
        last = int(out[1])
        vs = self.ok({"op": "shm.vars"})["vars"]
        self.assertEqual(sorted(v["var"] for v in vs), [1, 2])
        self.assertEqual(self.get(1)["text"], "p" * (1 + last % 97 * 100))
        self.assertEqual(self.get(2)["text"],
                         "b" * ((i - 1) % 89 * 100) + "-%d" % (i - 1))

    def test_unsupported_php_values(self):
        self.php(r'''
[, $key] = $argv;
$sem = sem_get((int)$key); sem_acquire($sem);
$s = shm_attach((int)$key);
shm_put_var($s, 1, ['bin' => "\xff\xfe"]);
shm_put_var($s, 2, new stdClass);
shm_put_var($s, 3, 'ok');
sem_release($sem);
''', self.key())
        e = self.err({"op": "shm.get", "var": 1}, "unsupported_value")
        self.assertEqual(base64.b64decode(e["data"]["data_b64"]),
                         b'a:1:{s:3:"bin";s:2:"\xff\xfe";}')
        e = self.err({"op": "shm.get", "var": 2}, "unsupported_value")
        self.assertEqual(base64.b64decode(e["data"]["data_b64"]),
                         b'O:8:"stdClass":0:{}')
        # the segment is fine: other variables still work
        self.assertEqual(self.get(3)["text"], "ok")
        self.assertEqual(len(self.ok({"op": "shm.vars"})["vars"]), 3)


BIG = 4 << 20


@need_php
class BigBlobTest(ShmTest):
    shms = {"big": {"size": "8M"}}
    server = {"max_line_bytes": "16M"}

    def test_bridge_to_php(self):
        blob = os.urandom(BIG)
        r = self.put(1, name="big", data_b64=b64(blob))
        n = len(ser_str(blob))
        self.assertEqual(r["bytes"], n)
        self.assertEqual(r["free"], (8 << 20) - HEAD - chunk(n))
        out = self.php(r'''
[, $key] = $argv;
$sem = sem_get((int)$key); sem_acquire($sem);
$v = shm_get_var(shm_attach((int)$key), 1);
sem_release($sem);
echo json_encode([gettype($v), strlen($v), md5($v)]), "\n";
''', self.key("big"))
        self.assertEqual(out, [["string", BIG,
                                hashlib.md5(blob).hexdigest()]])

    def test_php_to_bridge(self):
        md5 = self.php(r'''
[, $key] = $argv;
$sem = sem_get((int)$key); sem_acquire($sem);
$v = random_bytes(4 << 20);
if (!shm_put_var(shm_attach((int)$key), 2, $v)) exit(2);
sem_release($sem);
echo json_encode(md5($v)), "\n";
''', self.key("big"))[0]
        r = self.get(2, name="big")
        self.assertEqual(r["bytes"], BIG + len(b's:4194304:"";'))
        blob = base64.b64decode(r["data_b64"])
        self.assertEqual(len(blob), BIG)
        self.assertEqual(hashlib.md5(blob).hexdigest(), md5)


class LockTest(ShmTest):
    shms = {
        # its own semaphore key, and time to wait for it
        "lk": {"size": 4096, "sem_key": True, "lock_timeout_ms": 10000},
        "quick": {"size": 4096, "sem_key": True, "lock_timeout_ms": 200},
        "rawl": {"size": 4096, "format": "raw", "sem_key": True},
        "dflt": {"size": 4096, "sem_key": True},   # lock_timeout_ms 1000
    }

    def waiting(self, name="lk"):
        return self.stat(name)["waiting"]

    def setUp(self):
        super().setUp()
        self.put(1, name="lk", text="old")
        self.put(1, name="quick", text="old")

    @need_php
    def test_php_holder_parks_put(self):
        h = self.php_hold(self.sem_key("lk"))
        st = self.stat("lk")
        self.assertEqual((st["lock"], st["sem_users"], st["waiting"]),
                         (0, 2, 0))
        self.c.send({"op": "shm.put", "id": "p", "name": "lk", "var": 1,
                     "text": "new"})
        wait_for(lambda: self.waiting() == 1)
        # other requests on the same connection are answered meanwhile
        r = self.c.call({"op": "shm.stat", "name": "lk", "id": "s"})
        self.assertEqual(r["id"], "s")
        self.assertEqual(r["result"]["waiting"], 1)
        r = self.c.call({"op": "shm.get", "name": "quick", "var": 1,
                         "id": "q"})
        self.assertEqual(r, {"id": "q", "result": {
            "name": "quick", "var": 1, "bytes": 10, "text": "old"}})
        # and on other connections
        other = self.client()
        self.assertEqual(self.ok({"op": "hello"}, client=other)["server"],
                         "ipcbridge")
        self.ok({"op": "shm.put", "name": "quick", "var": 2, "text": "x"},
                client=other)
        self.assertFalse(pending(self.c))
        h.release()
        r = self.c.reply()
        self.assertEqual(r, {"id": "p", "result": {
            "name": "lk", "var": 1, "bytes": 10,
            "free": 4096 - HEAD - chunk(10)}})
        self.assertEqual(self.get(1, name="lk")["text"], "new")
        st = self.stat("lk")
        self.assertEqual((st["lock"], st["sem_users"], st["waiting"]),
                         (1, 1, 0))

    @need_php
    def test_held_request_without_id(self):
        h = self.php_hold(self.sem_key("lk"))
        self.c.send_raw(b'{"op":"shm.get","name":"lk","var":1}\n'
                        b'{"op":"hello","id":"after"}\n')
        wait_for(lambda: self.waiting() == 1)
        self.assertFalse(pending(self.c))
        h.release()
        self.assertEqual(self.c.reply(), {"result": {
            "name": "lk", "var": 1, "bytes": 10, "text": "old"}})
        self.assertEqual(self.c.reply()["id"], "after")

    @need_php
    def test_lock_timeout(self):
        h = self.php_hold(self.sem_key("quick"))
        t0 = time.monotonic()
        e = self.err({"op": "shm.put", "name": "quick", "var": 1,
                      "text": "new"}, "lock_timeout")
        elapsed = time.monotonic() - t0
        self.assertGreaterEqual(elapsed, 0.19)
        self.assertIn("0x%08x" % self.sem_key("quick"), e["message"])
        self.assertLess(elapsed, 5)
        # lock_timeout_ms 0: no wait at all; every locked op
        for req in ({"op": "shm.put", "var": 1, "text": "new"},
                    {"op": "shm.get", "var": 1},
                    {"op": "shm.has", "var": 1},
                    {"op": "shm.del", "var": 1},
                    {"op": "shm.vars"}):
            req.update(name="quick", lock_timeout_ms=0)
            self.err(req, "lock_timeout")
        self.assertEqual(self.waiting("quick"), 0)
        # a longer request timeout than the segment's outwaits the holder
        self.c.send({"op": "shm.put", "id": 1, "name": "quick", "var": 1,
                     "text": "late", "lock_timeout_ms": 20000})
        wait_for(lambda: self.waiting("quick") == 1)
        h.release()
        self.assertEqual(self.c.reply()["id"], 1)
        # the timed-out puts wrote nothing, the late one did
        self.assertEqual(self.get(1, name="quick")["text"], "late")

    @need_php
    def test_default_lock_timeout(self):
        h = self.php_hold(self.sem_key("dflt"))
        t0 = time.monotonic()
        self.err({"op": "shm.get", "name": "dflt", "var": 1},
                 "lock_timeout")
        elapsed = time.monotonic() - t0
        self.assertGreaterEqual(elapsed, 0.99)
        self.assertLess(elapsed, 5)
        h.release()
        self.err({"op": "shm.get", "name": "dflt", "var": 1}, "not_found")

    @need_php
    def test_waiters_in_order(self):
        h = self.php_hold(self.sem_key("lk"))
        clients = [self.client() for _ in range(3)]
        for i, c in enumerate(clients):
            c.send({"op": "shm.put", "id": i, "name": "lk", "var": 1,
                    "text": "v%d" % i})
            wait_for(lambda: self.waiting() == i + 1)
        h.release()
        for i, c in enumerate(clients):
            self.assertEqual(c.reply()["id"], i)
        self.assertEqual(self.get(1, name="lk")["text"], "v2")

    @need_php
    def test_short_timeout_behind_long_one(self):
        h = self.php_hold(self.sem_key("lk"))
        self.c.send({"op": "shm.put", "id": "long", "name": "lk", "var": 1,
                     "text": "long", "lock_timeout_ms": 2500})
        wait_for(lambda: self.waiting() == 1)
        t0 = time.monotonic()
        self.c.send({"op": "shm.put", "id": "short", "name": "lk",
                     "var": 1, "text": "short", "lock_timeout_ms": 100})
        r = self.c.reply()
        elapsed = time.monotonic() - t0
        # the short one times out on its own deadline, not the long one's
        self.assertEqual(r["id"], "short", r)
        self.assertEqual(r["error"]["code"], "lock_timeout")
        self.assertLess(elapsed, 1.5)
        h.release()
        r = self.c.reply()
        self.assertEqual(r["id"], "long")
        self.assertIn("result", r)

    @need_php
    def test_raw_segment_is_locked_too(self):
        h = self.php_hold(self.sem_key("rawl"))
        for req in ({"op": "shm.put", "text": "x"}, {"op": "shm.get"}):
            req.update(name="rawl", lock_timeout_ms=0)
            self.err(req, "lock_timeout")
        self.c.send({"op": "shm.put", "id": "r", "name": "rawl",
                     "offset": 8, "text": "raw"})
        wait_for(lambda: self.waiting("rawl") == 1)
        h.release()
        self.assertEqual(self.c.reply()["id"], "r")
        self.assertEqual(self.ok({"op": "shm.get", "name": "rawl",
                                  "offset": 8, "length": 3})["text"], "raw")

    @need_php
    def test_shutdown_answers_lock_waiters(self):
        self.php_hold(self.sem_key("lk"))
        self.c.send({"op": "shm.put", "id": "s", "name": "lk", "var": 1,
                     "text": "x"})
        wait_for(lambda: self.waiting() == 1)
        self.d.signal(signal.SIGTERM)
        r = self.c.reply()
        self.assertEqual(r["id"], "s")
        self.assertEqual(r["error"]["code"], "shutting_down")
        self.assertEqual(self.d.stop(), 0)

    @need_php
    def test_busy_worker_does_not_starve_the_bridge(self):
        # a PHP worker loop: acquire, 1 ms of work, release, acquire again
        hog = subprocess.Popen([PHP, "-r", r'''
$s = sem_get((int)$argv[1]);
stream_set_blocking(STDIN, false);
sem_acquire($s);
echo "ready\n";
while (true) {
    usleep(1000);
    sem_release($s);
    if (fgets(STDIN) !== false) break;
    sem_acquire($s);
}
echo "done\n";
''', "--", str(self.sem_key("lk"))], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.procs.append(hog)
        self.assertEqual(hog.stdout.readline(), b"ready\n")
        # another PHP process waiting in sem_acquire gets its turn at once
        t0 = time.monotonic()
        self.php(r'''
$s = sem_get((int)$argv[1]);
sem_acquire($s);
sem_release($s);
''', self.sem_key("lk"))
        self.assertLess(time.monotonic() - t0, 1.0)
        # so should the bridge, well within its lock timeout
        t0 = time.monotonic()
        r = self.c.call({"op": "shm.put", "name": "lk", "var": 1,
                         "text": "turn", "lock_timeout_ms": 2000})
        elapsed = time.monotonic() - t0
        hog.stdin.write(b"stop\n")
        hog.stdin.flush()
        self.assertEqual(hog.wait(TIMEOUT), 0)
        self.assertIn("result", r, "after %.2fs: %r" % (elapsed, r))

    def killed_holder(self, h, users):
        self.assertEqual(self.stat("lk")["sem_users"], users)
        self.c.send({"op": "shm.put", "id": "k", "name": "lk", "var": 1,
                     "text": "after"})
        wait_for(lambda: self.waiting() == 1)
        h.kill()
        r = self.c.reply()
        self.assertEqual(r["id"], "k")
        self.assertIn("result", r)
        # the lock is free: no waiting at all now
        self.put(2, name="lk", text="next", lock_timeout_ms=0)
        self.assertEqual(self.get(1, name="lk", lock_timeout_ms=0)["text"],
                         "after")
        st = self.stat("lk")
        self.assertEqual((st["lock"], st["sem_users"], st["waiting"]),
                         (1, 1, 0))

    @need_php
    def test_php_holder_killed(self):
        self.killed_holder(self.php_hold(self.sem_key("lk")), 2)

    @need_sysv_py
    def test_python_holder_killed(self):
        self.killed_holder(self.py_hold(self.sem_key("lk")), 1)

    @need_sysv_py
    def test_python_holder_release_wakes_put(self):
        h = self.py_hold(self.sem_key("lk"))
        self.assertEqual(self.stat("lk")["lock"], 0)
        self.c.send({"op": "shm.put", "id": 7, "name": "lk", "var": 1,
                     "value": {"by": "socket"}})
        wait_for(lambda: self.waiting() == 1)
        self.assertFalse(pending(self.c))
        h.release()
        self.assertEqual(self.c.reply()["id"], 7)
        self.assertEqual(self.get(1, name="lk")["value"], {"by": "socket"})
        self.assertEqual(self.stat("lk")["lock"], 1)

    @need_php
    def test_half_closed_client_still_answered(self):
        h = self.php_hold(self.sem_key("lk"))
        w = self.client()
        w.send({"op": "shm.put", "id": "h", "name": "lk", "var": 1,
                "text": "half"})
        wait_for(lambda: self.waiting() == 1)
        w.shutdown_write()
        self.assertEqual(self.stat("lk")["waiting"], 1)
        h.release()
        r = w.reply()
        self.assertEqual(r["id"], "h")
        self.assertIn("result", r)
        self.assertTrue(w.closed())
        self.assertEqual(self.get(1, name="lk")["text"], "half")

    @need_php
    def test_closed_client_does_not_wedge(self):
        h = self.php_hold(self.sem_key("lk"))
        gone = self.d.client()
        gone.send({"op": "shm.put", "id": 1, "name": "lk", "var": 1,
                   "text": "gone"})
        gone.send({"op": "shm.get", "name": "lk", "var": 1})
        wait_for(lambda: self.waiting() == 2)
        gone.close()
        h.release()
        # (the daemon cannot tell a close from a half-close: the put may
        # still run) the line drains, the lock is free, the daemon lives
        wait_for(lambda: self.waiting() == 0)
        self.put(2, name="lk", text="alive", lock_timeout_ms=0)
        st = self.stat("lk")
        self.assertEqual((st["lock"], st["sem_users"]), (1, 1))
        self.assertIsNone(self.d.proc.poll())


@need_php
class PhpFirstTest(ShmTest):
    """PHP workers were there first: their segment and semaphore are used."""
    shms = {"default": {"size": 4096}}

    def before_start(self):
        self.php(r'''
[, $key] = $argv;
$sem = sem_get((int)$key); sem_acquire($sem);
$s = shm_attach((int)$key, 20000);
shm_put_var($s, 1, ['from' => 'php']);
sem_release($sem);
''', self.key())

    def test_php_segment_is_used(self):
        st = self.stat()
        self.assertEqual(st["size"], 20000)     # PHP's size, not ours
        self.assertEqual((st["vars"], st["lock"], st["sem_users"]),
                         (1, 1, 1))
        self.assertEqual(st["free"], 20000 - HEAD - st["used"])
        self.assertEqual(self.get(1)["value"], {"from": "php"})
        self.put(2, value={"from": "bridge"})
        out = self.php(r'''
[, $key] = $argv;
$sem = sem_get((int)$key); sem_acquire($sem);
$s = shm_attach((int)$key);
echo json_encode([shm_get_var($s, 1), shm_get_var($s, 2)]), "\n";
sem_release($sem);
''', self.key())
        self.assertEqual(out, [[{"from": "php"}, {"from": "bridge"}]])

    def test_no_torn_marker_on_php_set(self):
        # PHP made the semaphore set of 3: no room for the marker
        self.assertIs(self.stat()["torn_marker"], False)
        self.assertEqual(self.ok({"op": "shm.clear"})["was_torn"], False)


@need_sysv
class CorruptSegmentTest(ShmTest):
    shms = {"pre": {"size": 4096, "create": "no"}}

    def before_start(self):
        # a segment a Python worker made: spaces, no PHP header
        m = sysv_ipc.SharedMemory(self.key("pre"), sysv_ipc.IPC_CREX,
                                  mode=0o600, size=4096)
        m.detach()

    def test_corrupt_and_untouched(self):
        self.assertIn("not a valid PHP sysvshm segment", self.d.read_log())
        for req in ({"op": "shm.get", "var": 1},
                    {"op": "shm.put", "var": 1, "text": "x"},
                    {"op": "shm.put", "var": 1, "value": [1]},
                    {"op": "shm.has", "var": 1},
                    {"op": "shm.del", "var": 1},
                    {"op": "shm.vars"}):
            req["name"] = "pre"
            self.err(req, "corrupt")
        st = self.stat("pre")
        self.assertIs(st.get("corrupt"), True, st)
        self.assertNotIn("used", st)
        self.assertEqual(st["size"], 4096)
        self.assertEqual(segment_bytes(self.key("pre")), b" " * 4096)

    def test_fixed_segment_is_used_again(self):
        self.err({"op": "shm.get", "name": "pre", "var": 1}, "corrupt")
        # a PHP worker initialises it (header only, as shm_attach does)
        m = sysv_ipc.SharedMemory(self.key("pre"))
        try:
            m.write(struct.pack("<8sqqqq", b"PHP_SM\0\0", HEAD, HEAD,
                                4096 - HEAD, 4096))
        finally:
            m.detach()
        self.err({"op": "shm.get", "name": "pre", "var": 1}, "not_found")
        self.put(1, name="pre", text="fixed")
        self.assertEqual(self.get(1, name="pre")["text"], "fixed")
        self.assertNotIn("corrupt", self.stat("pre"))

    def test_clear_repairs(self):
        self.err({"op": "shm.get", "name": "pre", "var": 1}, "corrupt")
        self.assertEqual(self.ok({"op": "shm.clear", "name": "pre"}),
                         {"name": "pre", "cleared": True, "was_torn": False})
        head = segment_bytes(self.key("pre"))[:HEAD]
        self.assertEqual(head, struct.pack("<8sqqqq", b"PHP_SM\0\0", HEAD,
                                           HEAD, 4096 - HEAD, 4096))
        self.put(1, name="pre", text="fixed")
        self.assertEqual(self.get(1, name="pre")["text"], "fixed")

    def test_missing_segment_with_create_no(self):
        key = private_key()
        self.ipc_keys += [("-M", key), ("-S", key)]
        d = Daemon(extra="[shm gone]\nkey = 0x%08x\ncreate = no\n" % key)
        self.addCleanup(d.cleanup)
        with self.assertRaises(RuntimeError) as cm:
            d.start()
        self.assertIn("create = no", str(cm.exception))
        # nothing was created
        with self.assertRaises(sysv_ipc.ExistentialError):
            sysv_ipc.SharedMemory(key)
        with self.assertRaises(sysv_ipc.ExistentialError):
            sysv_ipc.Semaphore(key)


TORN_WRITER = os.environ.get("IPCBRIDGE_TORN_WRITER", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "torn_writer"))
need_torn_writer = unittest.skipUnless(
    os.access(TORN_WRITER, os.X_OK), "tests/torn_writer not built "
    "(make check builds it; or set IPCBRIDGE_TORN_WRITER)")


@need_torn_writer
class TornWriteTest(ShmTest):
    """A C worker dies in the middle of a write (tests/torn_writer takes
    the write lock through the library, scribbles, SIGKILLs itself): the
    kernel gives the lock back, the torn-write marker stays up, and the
    daemon answers corrupt instead of serving half-written bytes until a
    client clears the segment."""
    shms = {"default": {"size": 4096},
            "raw": {"size": 4096, "format": "raw"}}

    def die_writing(self, name, offset, length, byte=ord("X")):
        r = subprocess.run([TORN_WRITER, str(self.key(name)),
                            str(self.sem_key(name)), str(offset),
                            str(length), str(byte)],
                           capture_output=True, timeout=TIMEOUT)
        self.assertEqual(r.returncode, -signal.SIGKILL, r.stderr)

    def assert_torn(self, name, reqs):
        for req in reqs:
            req["name"] = name
            e = self.err(req, "corrupt")
            self.assertIn("a writer died while writing it", e["message"])
            self.assertIn("shm.clear", e["message"])
        st = self.stat(name)
        self.assertIs(st.get("corrupt"), True, st)
        self.assertEqual(st["lock"], 1)         # SEM_UNDO gave it back

    def test_php_value_half_written(self):
        self.put(1, text="hello world")
        self.put(2, value=[1, 2])
        before = segment_bytes(self.key())
        # inside var 1's serialized bytes: the chunk chain stays valid,
        # so only the marker can tell
        self.die_writing("default", HEAD + 24 + 10, 3)
        self.assertEqual(segment_bytes(self.key())[HEAD + 34:HEAD + 37],
                         b"XXX")
        self.assertNotEqual(segment_bytes(self.key()), before)
        self.assert_torn("default", [
            {"op": "shm.get", "var": 1}, {"op": "shm.get", "var": 2},
            {"op": "shm.put", "var": 3, "text": "x"},
            {"op": "shm.has", "var": 1}, {"op": "shm.del", "var": 2},
            {"op": "shm.vars"}])
        self.assertIn("a writer died while writing it", self.d.read_log())
        # nothing was written while it was marked
        self.assertEqual(segment_bytes(self.key())[HEAD + 34:HEAD + 37],
                         b"XXX")
        self.assertEqual(self.ok({"op": "shm.clear"}),
                         {"name": "default", "cleared": True,
                          "was_torn": True})
        self.assertIn("torn-write marker cleared", self.d.read_log())
        self.err({"op": "shm.get", "var": 1}, "not_found")
        st = self.stat()
        self.assertNotIn("corrupt", st)
        self.assertEqual((st["vars"], st["used"]), (0, 0))
        self.put(1, text="again")
        self.assertEqual(self.get(1)["text"], "again")

    @need_php
    def test_php_workers_are_unaffected(self):
        self.put(1, text="hello world")
        self.die_writing("default", HEAD + 24 + 10, 3)
        # PHP knows nothing of the marker: it takes the lock and reads
        out = self.php(r'''
[, $key] = $argv;
$sem = sem_get((int)$key); echo json_encode(sem_acquire($sem)), "\n";
$s = shm_attach((int)$key);
echo json_encode(shm_get_var($s, 1)), "\n";
sem_release($sem);
''', self.key())
        # s:11:"hello world"; with bytes 10-12 overwritten
        self.assertEqual(out, [True, "hellXXXorld"])
        self.err({"op": "shm.get", "var": 1}, "corrupt")

    def test_raw_half_written(self):
        self.ok({"op": "shm.put", "name": "raw", "offset": 0,
                 "text": "abcdefgh"})
        self.die_writing("raw", 2, 4)
        self.assert_torn("raw", [
            {"op": "shm.get", "offset": 0, "length": 8},
            {"op": "shm.put", "offset": 0, "text": "z"}])
        self.assertEqual(self.ok({"op": "shm.clear", "name": "raw"}),
                         {"name": "raw", "cleared": True, "was_torn": True})
        self.assertEqual(segment_bytes(self.key("raw")), bytes(4096))
        self.assertEqual(self.ok({"op": "shm.get", "name": "raw",
                                  "offset": 0, "length": 4})["data_b64"],
                         "AAAAAA==")

    def test_clean_writes_leave_no_marker(self):
        for i in range(20):
            self.put(i % 3, text="v%d" % i)
        self.assertEqual(self.get(2)["text"], "v17")
        st = self.stat()
        self.assertIs(st["torn_marker"], True)
        self.assertNotIn("corrupt", st)
        self.assertEqual(self.ok({"op": "shm.clear"})["was_torn"], False)

    def test_clear_waits_for_the_lock(self):
        self.put(1, text="kept until the holder lets go")
        h = self.php_hold(self.sem_key()) if PHP else \
            self.py_hold(self.sem_key())
        self.c.send({"op": "shm.clear", "id": 7})
        wait_for(lambda: self.stat()["waiting"] == 1)
        self.assertIn(b"kept until", segment_bytes(self.key()))
        h.release()
        r = self.c.reply()
        self.assertEqual(r["result"]["cleared"], True, r)
        self.err({"op": "shm.get", "var": 1}, "not_found")


class ReplyOverOutputLimitTest(ShmTest):
    """A reply that could never be written under max_output_bytes is
    refused with msg_too_big; the client stays connected (it used to be
    dropped in the middle of the reply)."""
    shms = {"default": {"size": 4096}, "big": {"size": "128K"},
            "raw": {"size": "128K", "format": "raw"}}
    server = {"max_output_bytes": "64K"}

    def test_big_raw_read_is_refused_and_parts_work(self):
        e = self.err({"op": "shm.get", "name": "raw"}, "msg_too_big")
        self.assertIn("over max_output_bytes", e["message"])
        self.assertEqual(e["data"]["max"], 65536)
        self.assertGreater(e["data"]["bytes"], 65536)
        r = self.ok({"op": "shm.get", "name": "raw", "offset": 0,
                     "length": 32768})
        self.assertEqual(r["bytes"], 32768)
        self.ok({"op": "hello"})

    def test_big_php_value_is_refused(self):
        # 60,000 bytes fit the segment, not one 64K reply as base64
        self.put(1, name="big", data_b64=base64.b64encode(
            bytes(60000)).decode())
        e = self.err({"op": "shm.get", "name": "big", "var": 1},
                     "msg_too_big")
        self.assertIn("over max_output_bytes", e["message"])
        self.put(2, name="big", text="small")
        self.assertEqual(self.get(2, name="big")["text"], "small")


class QueuePayloadTest(ShmTest):
    queues = {"default": {}, "php": {"payload": "php"},
              "json": {"payload": "json"}}

    def qkey(self, name):
        return self.d.key(name)

    def recv(self, queue, **kw):
        req = {"op": "queue.recv", "queue": queue}
        req.update(kw)
        r = self.ok(req)
        self.assertIsNotNone(r["msg"], r)
        return r["msg"]

    @need_php
    def test_value_to_php_reader(self):
        r = self.ok({"op": "queue.send", "queue": "php", "type": 2,
                     "value": {"a": [1, 2]}})
        ser = b'a:1:{s:1:"a";a:2:{i:0;i:1;i:1;i:2;}}'
        self.assertEqual(r, {"queue": "php", "type": 2, "bytes": len(ser)})
        out = self.php(r'''
$q = msg_get_queue((int)$argv[1]);
if (!msg_receive($q, 0, $t, 8192, $msg)) exit(2);
echo json_encode([$t, $msg === ['a' => [1, 2]], var_export($msg, true)]), "\n";
''', self.qkey("php"))
        self.assertEqual(out[0][:2], [2, True], out)

    @need_php
    def test_php_sender_to_value(self):
        self.php(r'''
$q = msg_get_queue((int)$argv[1]);
if (!msg_send($q, 3, ["ok" => true])) exit(2);
if (!msg_send($q, 4, [1.5, "x", null])) exit(2);
if (!msg_send($q, 5, "plain")) exit(2);
''', self.qkey("php"))
        self.assertEqual(self.recv("php"), {
            "queue": "php", "type": 3, "bytes": len(b'a:1:{s:2:"ok";b:1;}'),
            "value": {"ok": True}})
        self.assertEqual(self.recv("php")["value"], [1.5, "x", None])
        self.assertEqual(self.recv("php")["value"], "plain")

    @need_php
    def test_consumer_decodes(self):
        n = self.ok({"op": "queue.consume", "queue": "php"})["consumer"]
        self.php(r'''
$q = msg_get_queue((int)$argv[1]);
msg_send($q, 9, ['n' => 1]);
''', self.qkey("php"))
        ev = self.c.reply()
        self.assertEqual(ev["event"], "message")
        self.assertEqual(ev["data"], {
            "consumer": n, "queue": "php", "type": 9,
            "bytes": len(b'a:1:{s:1:"n";i:1;}'), "value": {"n": 1}})

    @need_sysv
    def test_json_queue_raw_bytes(self):
        mq = sysv_ipc.MessageQueue(self.qkey("json"))
        cases = [
            ({"x": [1, 2.5, "\u00e9"], "n": None, "t": True},
             '{"x":[1,2.5,"\u00e9"],"n":null,"t":true}'.encode()),
            (42, b"42"), ("s", b'"s"'), (None, b"null"), ([], b"[]"),
        ]
        for v, raw in cases:
            r = self.ok({"op": "queue.send", "queue": "json", "type": 4,
                         "value": v})
            self.assertEqual(r["bytes"], len(raw))
            self.assertEqual(mq.receive(block=False), (raw, 4))
        for v, raw in cases:
            mq.send(raw, type=6)
            self.assertEqual(self.recv("json"), {
                "queue": "json", "type": 6, "bytes": len(raw), "value": v})
        mq.send(b'{"k":[1]}', type=1)
        self.assertEqual(self.recv("json", encoding="text")["text"],
                         '{"k":[1]}')

    @need_sysv
    def test_undecodable_bytes(self):
        for queue, raw in (("json", b"\xff\x00{"), ("json", b'{"a":'),
                           ("json", b""), ("php", b"i:42"),
                           ("php", b's:5:"abc";'), ("php", b"i:1;x"),
                           ("php", b'O:8:"stdClass":0:{}'),
                           ("php", b"a:1:{i:0;s:1:\"\xff\";}")):
            sysv_ipc.MessageQueue(self.qkey(queue)).send(raw, type=2)
            m = self.recv(queue)
            self.assertEqual(set(m), {"queue", "type", "bytes", "data_b64",
                                      "decode_error"}, (queue, raw, m))
            self.assertEqual(base64.b64decode(m["data_b64"]), raw)
            self.assertEqual(m["bytes"], len(raw))
            self.assertIsInstance(m["decode_error"], str)
            self.assertTrue(m["decode_error"])

    @need_sysv
    def test_forced_encodings(self):
        raw = sysv_ipc.MessageQueue(self.qkey("default"))
        raw.send(b'{"k":[1]}', type=1)
        self.assertEqual(self.recv("default", encoding="json")["value"],
                         {"k": [1]})
        raw.send(b"b:1;", type=1)
        self.assertEqual(self.recv("default", encoding="php")["value"],
                         True)
        raw.send(b"b:1;", type=1)
        self.assertEqual(self.recv("default")["text"], "b:1;")
        self.ok({"op": "queue.send", "queue": "php", "type": 1,
                 "value": [True]})
        self.assertEqual(self.recv("php", encoding="text")["text"],
                         "a:1:{i:0;b:1;}")
        self.ok({"op": "queue.send", "queue": "php", "type": 1,
                 "value": [True]})
        self.assertEqual(self.recv("php", encoding="base64")["data_b64"],
                         b64(b"a:1:{i:0;b:1;}"))
        self.ok({"op": "queue.send", "queue": "php", "type": 1,
                 "value": 7})
        self.assertEqual(self.recv("php", encoding="auto")["text"], "i:7;")
        # text and data_b64 still go through unchanged on structured queues
        self.ok({"op": "queue.send", "queue": "json", "type": 1,
                 "text": "[1,2]"})
        self.assertEqual(self.recv("json")["value"], [1, 2])
        self.bad({"op": "queue.recv", "queue": "php", "encoding": "xml"},
                 "encoding")
        self.bad({"op": "queue.consume", "queue": "php", "encoding": "yes"},
                 "encoding")

    def test_value_invalid(self):
        self.bad({"op": "queue.send", "queue": "default", "type": 1,
                  "value": {"a": 1}}, "value")
        self.bad({"op": "queue.send", "type": 1, "value": "a"}, "value")
        self.bad({"op": "queue.send", "queue": "php", "type": 1,
                  "value": 1, "text": "a"}, "value")
        self.bad({"op": "queue.send", "queue": "json", "type": 1,
                  "value": 1, "data_b64": "YQ=="}, "value")
        deep = 1
        for _ in range(70):
            deep = [deep]
        self.bad({"op": "queue.send", "queue": "php", "type": 1,
                  "value": deep}, "value")
        for q in ("default", "php", "json"):
            self.assertEqual(self.ok({"op": "queue.stat", "queue": q})[
                "messages"], 0)


class StatListTest(ShmTest):
    shms = {"a": {"size": 4096},
            "b": {"format": "raw", "size": 8192, "sem_key": True,
                  "mode": "0640"}}

    def test_stat(self):
        st = self.stat("a")
        self.assertEqual(st["name"], "a")
        self.assertEqual(st["key"], "0x%08x" % self.key("a"))
        self.assertEqual(st["key_spec"], "0x%08x" % self.key("a"))
        self.assertEqual(st["sem_key"], "0x%08x" % self.key("a"))
        self.assertEqual(st["size"], 4096)
        self.assertEqual(st["format"], "php")
        self.assertEqual(st["nattch"], 1)
        self.assertEqual(st["mode"], "0660")
        self.assertEqual(st["creator_pid"], self.d.proc.pid)
        self.assertEqual((st["lock"], st["sem_users"], st["waiting"]),
                         (1, 1, 0))
        self.assertEqual((st["used"], st["free"], st["vars"]),
                         (0, 4096 - HEAD, 0))
        self.assertIsInstance(st["shmid"], int)
        self.assertIsInstance(st["semid"], int)
        self.put(1, name="a", text="abc")
        st = self.stat("a")
        self.assertEqual((st["used"], st["free"], st["vars"]),
                         (chunk(10), 4096 - HEAD - chunk(10), 1))
        st = self.stat("b")
        self.assertEqual(st["format"], "raw")
        self.assertEqual(st["size"], 8192)
        self.assertEqual(st["mode"], "0640")
        self.assertEqual(st["key"], "0x%08x" % self.key("b"))
        self.assertEqual(st["sem_key"], "0x%08x" % self.sem_key("b"))
        for k in ("used", "free", "vars", "corrupt"):
            self.assertNotIn(k, st)

    @need_sysv
    def test_ids_are_the_kernels(self):
        for name in ("a", "b"):
            st = self.stat(name)
            m = sysv_ipc.SharedMemory(self.key(name))
            shmid = m.id
            m.detach()
            self.assertEqual(st["shmid"], shmid)
            self.assertEqual(st["semid"], sysv_ipc.Semaphore(
                self.sem_key(name), flags=0).id)
            self.assertNotEqual(st["semid"], -1)
        # the daemon's semaphore is PHP's set of 3 (sysv_ipc cannot say)
        out = subprocess.run(["ipcs", "-s", "-i",
                              str(self.stat("b")["semid"])],
                             capture_output=True, text=True).stdout
        self.assertIn("nsems = 4", out)

    def test_list(self):
        segs = self.ok({"op": "shm.list"})["segments"]
        mine = [s for s in segs if s["name"] in ("a", "b")]
        self.assertEqual([s["name"] for s in mine], ["a", "b"])
        for s in mine:
            self.assertEqual(s, self.stat(s["name"]))


class SemRemovedTest(unittest.TestCase):
    """ipcrm of the guard semaphore: the next request answers sem_removed,
    the daemon re-creates and re-registers the set (PHP's 3 semaphores and
    the torn-write marker) and the request after that works."""

    def test_semaphore_removed_underneath_is_recreated(self):
        d = Daemon(shms={"default": {"size": "64K"}})
        self.addCleanup(d.cleanup)
        d.start()
        c = d.client()
        self.addCleanup(c.close)
        key = "0x%08x" % d.shm_key()
        self.assertIn("result", c.call({"op": "shm.put", "var": 1,
                                        "text": "before"}))
        old = c.call({"op": "shm.stat"})["result"]["semid"]
        subprocess.run(["ipcrm", "-S", key], check=True)
        r = c.call({"op": "shm.put", "var": 1, "text": "during"})
        self.assertEqual(r["error"]["code"], "sem_removed")
        self.assertIn("was removed underneath the daemon", d.read_log())
        r = c.call({"op": "shm.put", "var": 1, "text": "after"})
        self.assertIn("result", r, r)
        st = c.call({"op": "shm.stat"})["result"]
        self.assertNotEqual(st["semid"], old)
        self.assertEqual((st["lock"], st["sem_users"]), (1, 1))
        self.assertEqual(c.call({"op": "shm.get", "var": 1})["result"]
                         ["text"], "after")
        out = subprocess.run(["ipcs", "-s", "-i", str(st["semid"])],
                             capture_output=True, text=True).stdout
        self.assertIn("nsems = 4", out)


class ShmRemovedTest(unittest.TestCase):
    """ipcrm -m of a served segment: the daemon notices (SHM_DEST), answers
    shm_removed once, attaches the key again (a new PHP segment, with its
    header) and serves the new one that workers see too."""

    def test_segment_removed_underneath_is_recreated(self):
        d = Daemon(shms={"default": {"size": "64K"}})
        self.addCleanup(d.cleanup)
        d.start()
        c = d.client()
        self.addCleanup(c.close)
        key = "0x%08x" % d.shm_key()
        self.assertIn("result", c.call({"op": "shm.put", "var": 1,
                                        "text": "old"}))
        old = c.call({"op": "shm.stat"})["result"]["shmid"]
        subprocess.run(["ipcrm", "-M", key], check=True)
        r = c.call({"op": "shm.get", "var": 1})
        self.assertEqual(r["error"]["code"], "shm_removed")
        self.assertIn("was removed underneath the daemon", d.read_log())
        st = c.call({"op": "shm.stat"})["result"]
        self.assertNotEqual(st["shmid"], old)
        self.assertEqual(st["vars"], 0)
        self.assertIn("result", c.call({"op": "shm.put", "var": 1,
                                        "text": "new"}))
        # the key now names the new segment, the one the daemon uses
        out = subprocess.run(["ipcs", "-m"], capture_output=True,
                             text=True).stdout
        ids = [l.split()[1] for l in out.splitlines()
               if l.startswith(key)]
        self.assertEqual(ids, [str(st["shmid"])])


if __name__ == "__main__":
    ipcb_test.main()
