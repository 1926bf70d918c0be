#!/usr/bin/env python3
"""Interop: socket clients of the real daemon against workers that attach
to the same System V message queue directly - PHP's sysvmsg, Python's
sysv_ipc and the C example linked with libipcbridge.

Every message is compared byte for byte, type included. PHP and Python run
as separate processes (PHP via $PHP or `php` on PATH; Python via the first
of this interpreter and /usr/bin/python3 that can import sysv_ipc, since
Debian's python3-sysv-ipc is only visible to /usr/bin/python3). The C worker
is $IPCBRIDGE_EXAMPLES_DIR/worker or examples/worker when it was built.

Run: IPCBRIDGE=src/ipcbridge PYTHONPATH=tests python3 tests/interop_workers.py
"""
import base64
import json
import os
import shutil
import subprocess
import sys
import unittest

import ipcb_test
from ipcb_test import DaemonTest, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.normpath(os.path.join(HERE, "..", "examples"))
TIMEOUT = 20            # any one PHP/Python helper run, seconds
REQUEST_TYPE = 1        # the examples' convention, see examples/README.md


def find_php():
    php = os.environ.get("PHP") or shutil.which("php")
    if not php or not os.access(php, os.X_OK):
        return None
    try:
        r = subprocess.run([php, "-r", "echo function_exists('msg_send') "
                            "? 'yes' : 'no';"], capture_output=True,
                           timeout=TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return php if r.stdout == b"yes" else None


def find_sysv_python():
    seen = []
    for py in (sys.executable, "/usr/bin/python3"):
        if not py or py in seen or not os.access(py, os.X_OK):
            continue
        seen.append(py)
        try:
            r = subprocess.run([py, "-c", "import sysv_ipc"],
                               capture_output=True, timeout=TIMEOUT)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if r.returncode == 0:
            return py
    return None


def find_c_worker():
    dirs = [os.environ.get("IPCBRIDGE_EXAMPLES_DIR"), EXAMPLES]
    for d in dirs:
        if d and os.access(os.path.join(d, "worker"), os.X_OK):
            return os.path.join(d, "worker")
    return None


PHP = find_php()
SYSV_PY = find_sysv_python()
C_WORKER = find_c_worker()


def msgmax():
    try:
        with open("/proc/sys/kernel/msgmax") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 8192


ALL_BYTES = bytes(range(256))
UTF8 = "h\u00e9llo w\u00f6rld \u2713 \U0001f600".encode()
PUNCT = b'line1\nline2\r\n\t"quoted" \\back\\slash {json:1} a:b:c'

# Helper programs: the key and types come in argv, messages as JSON on stdin
# (argv is too small for many msgmax messages); results are JSON lines.
# PHP: receive with desired types given, raw bytes, never waiting.
PHP_RECV = r'''
[, $key, $types] = $argv;
$q = msg_get_queue((int)$key);
foreach (json_decode($types) as $want) {
    if (!msg_receive($q, $want, $type, 65536, $msg, false, MSG_IPC_NOWAIT, $err)) {
        fwrite(STDERR, "msg_receive($want) failed: errno $err\n");
        exit(2);
    }
    echo json_encode(['type' => $type, 'b64' => base64_encode($msg)]), "\n";
}
'''
# PHP: take whatever is on the queue now, oldest first.
PHP_DRAIN = r'''
$q = msg_get_queue((int)$argv[1]);
while (msg_receive($q, 0, $type, 65536, $msg, false, MSG_IPC_NOWAIT, $err))
    echo json_encode(['type' => $type, 'b64' => base64_encode($msg)]), "\n";
if ($err != MSG_ENOMSG) {
    fwrite(STDERR, "msg_receive failed: errno $err\n");
    exit(2);
}
'''
# PHP: send [type, base64] pairs with serialize=false; argv[2] "block" waits
# while the queue is full (else IPC_NOWAIT: a full queue is an error).
PHP_SEND = r'''
$q = msg_get_queue((int)$argv[1]);
$block = ($argv[2] ?? '') === 'block';
foreach (json_decode(stream_get_contents(STDIN)) as [$type, $b64]) {
    if (!msg_send($q, $type, base64_decode($b64, true), false, $block, $err)) {
        fwrite(STDERR, "msg_send($type) failed: errno $err\n");
        exit(2);
    }
}
'''
PY_RECV = r'''
import base64, json, sys, sysv_ipc
q = sysv_ipc.MessageQueue(int(sys.argv[1]), max_message_size=65536)
for want in json.loads(sys.argv[2]):
    msg, t = q.receive(block=False, type=want)
    print(json.dumps({"type": t, "b64": base64.b64encode(msg).decode()}))
'''
PY_SEND = r'''
import base64, json, sys, sysv_ipc
q = sysv_ipc.MessageQueue(int(sys.argv[1]), max_message_size=65536)
for t, b64 in json.load(sys.stdin):
    q.send(base64.b64decode(b64), block=False, type=t)
'''


def run(argv, what, stdin=b""):
    r = subprocess.run(argv, input=stdin, capture_output=True,
                       timeout=TIMEOUT)
    if r.returncode != 0:
        raise AssertionError("%s exited %d: %s" % (
            what, r.returncode, r.stderr.decode(errors="replace")))
    return r.stdout


def b64(data):
    return base64.b64encode(data).decode()


class InteropBase(DaemonTest):

    def key(self):
        return self.d.key()

    def key_hex(self):
        return "0x%08x" % self.key()

    # -- socket side ---------------------------------------------------
    def send(self, mtype, data, client=None):
        """queue.send raw bytes (as data_b64) and check the result."""
        res = self.ok({"op": "queue.send", "type": mtype,
                       "data_b64": b64(data)}, client)
        self.assertEqual(res, {"queue": "default", "type": mtype,
                               "bytes": len(data)})

    def send_text(self, mtype, text):
        res = self.ok({"op": "queue.send", "type": mtype, "text": text})
        self.assertEqual(res["bytes"], len(text.encode()))

    def recv(self, mtype, timeout_ms=5000, client=None):
        """queue.recv as base64: (type, bytes); fails on a timeout."""
        res = self.ok({"op": "queue.recv", "type": mtype,
                       "timeout_ms": timeout_ms, "encoding": "base64"},
                      client)
        self.assertFalse(res["timed_out"], "no message of type %d" % mtype)
        m = res["msg"]
        self.assertEqual(set(m), {"queue", "type", "bytes", "data_b64"}, m)
        data = base64.b64decode(m["data_b64"], validate=True)
        self.assertEqual(m["bytes"], len(data))
        return m["type"], data

    def messages(self):
        return self.ok({"op": "queue.stat"}, self.side())["messages"]

    def assert_empty(self):
        self.assertEqual(self.messages(), 0, "stray messages on the queue")

    # -- direct (worker) side ------------------------------------------
    @staticmethod
    def decode(out):
        return [(j["type"], base64.b64decode(j["b64"]))
                for j in map(json.loads, out.splitlines())]

    def php_recv(self, types):
        return self.decode(run([PHP, "-r", PHP_RECV, str(self.key()),
                                json.dumps(types)], "php msg_receive"))

    @staticmethod
    def encode(msgs):
        return json.dumps([[t, b64(d)] for t, d in msgs]).encode()

    def php_drain(self):
        """Every message on the queue now (PHP, msgrcv type 0, NOWAIT)."""
        return self.decode(run([PHP, "-r", PHP_DRAIN, str(self.key())],
                               "php drain"))

    def php_send(self, msgs):
        run([PHP, "-r", PHP_SEND, str(self.key())], "php msg_send",
            self.encode(msgs))

    def py_recv(self, types):
        return self.decode(run([SYSV_PY, "-c", PY_RECV, str(self.key()),
                                json.dumps(types)], "sysv_ipc receive"))

    def py_send(self, msgs):
        run([SYSV_PY, "-c", PY_SEND, str(self.key())], "sysv_ipc send",
            self.encode(msgs))


def corpus(max_type):
    """(type, bytes) pairs: text, UTF-8, binary with every byte value,
    empty, a full msgmax message; types up to max_type."""
    big = bytes((i * 7 + 3) & 0xFF for i in range(msgmax()))
    return [(1, b"hello"), (7, UTF8), (2, PUNCT), (max_type, ALL_BYTES),
            (3, ALL_BYTES[::-1]), (1, b""), (4, b"\0"), (5, b"\xff\xfe"),
            (max_type - 1, big), (7, b"second of type 7")]


@unittest.skipUnless(PHP, "php with sysvmsg not found (set PHP)")
class SocketPhp(InteropBase):
    """(a) socket -> PHP msg_receive(..., false); (b) PHP msg_send(..., false)
    -> socket queue.recv. PHP types are int64."""

    def test_socket_to_php_in_order(self):
        msgs = corpus(1 << 40) + [(2**63 - 1, b"largest type")]
        for t, d in msgs:
            self.send(t, d)
        self.assertEqual(self.php_recv([0] * len(msgs)), msgs)
        self.assert_empty()

    def test_socket_text_to_php(self):
        texts = [(1, "plain"), (9, UTF8.decode()), (1 << 40, PUNCT.decode()),
                 (2, "")]
        for t, s in texts:
            self.send_text(t, s)
        self.assertEqual(self.php_recv([t for t, _ in texts]),
                         [(t, s.encode()) for t, s in texts])
        self.assert_empty()

    def test_php_selects_by_type(self):
        msgs = [(1, b"one"), (1 << 40, ALL_BYTES), (3, b"three"),
                (1 << 40, b"again")]
        for t, d in msgs:
            self.send(t, d)
        got = self.php_recv([1 << 40, 3, 1 << 40, 1])
        self.assertEqual(got, [msgs[1], msgs[2], msgs[3], msgs[0]])
        self.assert_empty()

    def test_php_to_socket_by_type(self):
        msgs = corpus(1 << 40) + [(2**63 - 1, b"largest type")]
        self.php_send(msgs)
        self.assertEqual(self.messages(), len(msgs))
        # by type, oldest of each type first
        for t, d in sorted(msgs, key=lambda m: m[0]):
            self.assertEqual(self.recv(t, timeout_ms=0), (t, d))
        self.assert_empty()

    def test_php_to_socket_in_order(self):
        msgs = corpus(1 << 40)
        self.php_send(msgs)
        self.assertEqual([self.recv(0, timeout_ms=0) for _ in msgs], msgs)
        self.assert_empty()

    def test_php_to_waiting_socket_client(self):
        """A client already parked in queue.recv gets PHP's message."""
        self.c.send({"op": "queue.recv", "type": 1 << 40,
                     "timeout_ms": 10000, "encoding": "base64"})
        wait_for(lambda: self.waiters() == 1)
        self.php_send([(1 << 40, ALL_BYTES)])
        m = self.c.reply()["result"]["msg"]
        self.assertEqual((m["type"], base64.b64decode(m["data_b64"])),
                         (1 << 40, ALL_BYTES))

    def test_php_to_socket_auto_encoding(self):
        """encoding auto: UTF-8 without NUL comes as text, else base64."""
        self.php_send([(1, UTF8), (1, b"a\0b"), (1, b"\xff\xfe"), (1, b"")])
        got = [self.ok({"op": "queue.recv", "type": 1})["msg"]
               for _ in range(4)]
        self.assertEqual(got[0]["text"], UTF8.decode())
        self.assertEqual(base64.b64decode(got[1]["data_b64"]), b"a\0b")
        self.assertEqual(base64.b64decode(got[2]["data_b64"]), b"\xff\xfe")
        self.assertEqual(got[3]["text"], "")
        self.assertEqual([m["bytes"] for m in got], [len(UTF8), 3, 2, 0])

    def test_php_types_with_type_max_and_except(self):
        """msgrcv's selectors over PHP's int64 types."""
        self.php_send([(1 << 62, b"a"), (1 << 40, b"b"), (5, b"c"),
                       (1 << 40, b"d")])
        r = self.ok({"op": "queue.recv", "type_max": 1 << 41})["msg"]
        self.assertEqual((r["type"], r["text"]), (5, "c"))
        r = self.ok({"op": "queue.recv", "type": 1 << 62,
                     "except": True})["msg"]
        self.assertEqual((r["type"], r["text"]), (1 << 40, "b"))
        self.assertEqual(self.recv(1 << 62, 0), (1 << 62, b"a"))
        self.assertEqual(self.recv(0, 0), (1 << 40, b"d"))

    def test_socket_send_waits_for_php_to_drain(self):
        """A queue.send with timeout_ms parks while the queue is full and
        completes once a PHP worker takes a message."""
        room = self.ok({"op": "queue.stat"})["max_bytes"]
        size = min(msgmax(), room // 2)
        fill = room // size
        for i in range(fill):
            self.send(10 + i, bytes([i]) * size)
        big = (ALL_BYTES * (size // 256 + 1))[:size]
        self.c.send({"op": "queue.send", "type": 99, "timeout_ms": 10000,
                     "data_b64": b64(big)})
        wait_for(lambda: self.waiters() == 1)    # parked: queue full
        self.assertEqual(self.php_recv([10]), [(10, b"\0" * size)])
        res = self.c.reply()
        self.assertEqual(res, {"result": {"queue": "default", "type": 99,
                                          "bytes": size}})
        got = self.php_recv([0] * fill)
        self.assertEqual(got, [(10 + i, bytes([i]) * size)
                               for i in range(1, fill)] + [(99, big)])
        self.assert_empty()

    def test_blocked_php_send_completes_when_socket_drains(self):
        """PHP's blocking msg_send waits on a full queue until a socket
        client receives; nothing is lost or reordered."""
        room = self.ok({"op": "queue.stat"})["max_bytes"]
        size = min(msgmax(), room // 2)
        msgs = [(20 + i, bytes([i, 255 - i]) * (size // 2))
                for i in range(room // size + 2)]
        php = subprocess.Popen([PHP, "-r", PHP_SEND, str(self.key()),
                                "block"], stdin=subprocess.PIPE)
        self.addCleanup(WorkerRoundTrip.kill, php)
        php.stdin.write(self.encode(msgs))
        php.stdin.close()
        wait_for(lambda: self.messages() == room // size)
        self.assertIsNone(php.poll(), "PHP did not block on a full queue")
        got = [self.recv(0) for _ in msgs]
        self.assertEqual(php.wait(10), 0)
        self.assertEqual(got, msgs)
        self.assert_empty()

    def test_unread_replies_go_back_to_php(self):
        """A client pipelines receives and never reads: the daemon stops
        taking messages for it once its output backs up, and when it closes,
        what the daemon took but never wrote out goes back on the queue; a
        PHP worker gets exactly the rest, wide types intact, nothing lost."""
        n, size = 100, min(msgmax(), 8000)
        msgs = [((1 << 40) + i, bytes([i]) * size) for i in range(n)]
        php = subprocess.Popen([PHP, "-r", PHP_SEND, str(self.key()),
                                "block"], stdin=subprocess.PIPE)
        self.addCleanup(WorkerRoundTrip.kill, php)
        php.stdin.write(self.encode(msgs))
        php.stdin.close()
        greedy = self.d.client()
        greedy.send_raw(b"".join(json.dumps(
            {"op": "queue.recv", "timeout_ms": 10000, "encoding": "base64"}
        ).encode() + b"\n" for _ in range(n)))

        def stats():
            return self.ok({"op": "stats"}, self.side())["messages"]
        seen = []

        def stalled():  # received stops growing: backpressure holds
            seen.append(stats()["received"])
            return len(seen) > 20 and seen[-1] == seen[-20] > 0
        wait_for(stalled, timeout=20, interval=0.02)
        self.assertLess(seen[-1], n, "took messages for unwritable replies")
        before = self.ok({"op": "stats"}, self.side())["connections"]
        greedy.close()
        # the daemon must have seen the close (and put back what it held)
        wait_for(lambda: self.ok({"op": "stats"}, self.side())
                 ["connections"]["current"] == before["current"] - 1)
        got = []

        def drained():  # put-backs wait for room: drain until none is left
            got.extend(self.php_drain())
            if php.poll() is None:
                return False
            # one snapshot of both: a put-back landing between two reads
            # (pending 1 -> 0, queue 0 -> 1) would end the drain early
            q = self.ok({"op": "queue.stat"}, self.side())
            return q["messages"] == 0 and q["put_backs_pending"] == 0
        wait_for(drained, timeout=20)
        self.assertEqual(php.wait(10), 0)
        st = stats()
        self.assertEqual(st["lost"], 0)
        self.assertGreater(st["put_back"], 0, "socket buffers took all")
        # greedy's socket got a prefix; everything else came back, once
        self.assertEqual(sorted(got), msgs[n - len(got):])

    def test_php_scalars_and_serialize(self):
        """What PHP puts on the queue for non-string bodies and for the
        default serialize=true (reference sections 3.3)."""
        run([PHP, "-r", r'''
            $q = msg_get_queue((int)$argv[1]);
            msg_send($q, 2, 42, false); msg_send($q, 2, 3.14, false);
            msg_send($q, 2, true, false); msg_send($q, 2, "hello");
            msg_send($q, 2, 42);''', str(self.key())], "php")
        got = [self.recv(2, timeout_ms=0)[1] for _ in range(5)]
        self.assertEqual(got, [b"42", b"3.140000", b"1", b's:5:"hello";',
                               b"i:42;"])


@unittest.skipUnless(SYSV_PY, "no python3 with sysv_ipc")
class SocketPython(InteropBase):
    """(c) the same both ways with sysv_ipc. Its send/receive type argument
    is a C int; the type it returns is the kernel's full long."""

    def test_socket_to_python_in_order(self):
        msgs = corpus(2**31 - 1) + [(1 << 40, b"wide type")]
        for t, d in msgs:
            self.send(t, d)
        self.assertEqual(self.py_recv([0] * len(msgs)), msgs)
        self.assert_empty()

    def test_python_selects_by_type(self):
        msgs = [(1, b"one"), (2**31 - 1, ALL_BYTES), (3, b"three")]
        for t, d in msgs:
            self.send(t, d)
        got = self.py_recv([2**31 - 1, 3, 1])
        self.assertEqual(got, [msgs[1], msgs[2], msgs[0]])
        self.assert_empty()

    def test_socket_text_to_python(self):
        self.send_text(5, UTF8.decode())
        self.send_text(5, PUNCT.decode())
        self.assertEqual(self.py_recv([5, 5]), [(5, UTF8), (5, PUNCT)])

    def test_python_to_socket_by_type(self):
        msgs = corpus(2**31 - 1)
        self.py_send(msgs)
        self.assertEqual(self.messages(), len(msgs))
        for t, d in sorted(msgs, key=lambda m: m[0]):
            self.assertEqual(self.recv(t, timeout_ms=0), (t, d))
        self.assert_empty()

    def test_python_to_socket_in_order(self):
        msgs = corpus(2**31 - 1)
        self.py_send(msgs)
        self.assertEqual([self.recv(0, timeout_ms=0) for _ in msgs], msgs)
        self.assert_empty()

    @unittest.skipUnless(PHP, "php with sysvmsg not found (set PHP)")
    def test_php_to_python_through_the_same_queue(self):
        """The daemon's queue also carries worker-to-worker traffic."""
        msgs = [(1, ALL_BYTES), (2**31 - 1, UTF8), (1 << 40, b"wide")]
        self.php_send(msgs)
        self.assertEqual(self.py_recv([0, 0, 0]), msgs)


class WorkerRoundTrip:
    """(d) request/reply through an example worker, driven by socket
    clients: queue.send type 1 "REPLYTYPE:PAYLOAD", queue.recv REPLYTYPE."""
    name = None

    def command(self, key, *args):
        raise NotImplementedError

    def start_worker(self, *args, key=None, env=None):
        err = open(os.path.join(self.d.dir, "worker-%d.err" % len(
            getattr(self, "_workers", ()))), "w+b")
        self.addCleanup(err.close)
        p = subprocess.Popen(self.command(self.key_hex() if key is None
                                          else key, *args),
                             stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=err,
                             env=env)
        p.err = err
        self._workers = getattr(self, "_workers", []) + [p]
        self.addCleanup(self.kill, p)
        return p

    @staticmethod
    def kill(p):
        if p.poll() is None:
            p.kill()
        p.wait(10)

    def stderr(self, p):
        p.err.seek(0)
        return p.err.read().decode(errors="replace")

    def exited(self, p, code=0):
        try:
            rc = p.wait(10)
        except subprocess.TimeoutExpired:
            self.fail("%s worker did not exit" % self.name)
        self.assertEqual(rc, code, self.stderr(p))

    def request(self, replytype, payload, client=None):
        self.send(REQUEST_TYPE, b"%d:" % replytype + payload, client)

    def quit(self, p):
        self.send_text(REQUEST_TYPE, "quit")
        self.exited(p, 0)

    def test_round_trip(self):
        p = self.start_worker()
        big = bytes((i * 13) & 0xFF for i in range(msgmax() - len("1002:")))
        cases = [(2, b"hello"), (1000, ALL_BYTES), (2**31 - 1, UTF8),
                 (1001, b""), (1002, big), (1003, PUNCT), (1004, b"1:2:3"),
                 (1005, b"quit"), (1006, b"\0"), (1007, b"x\n")]
        for t, payload in cases:
            self.request(t, payload)
            self.assertEqual(self.recv(t), (t, payload))
        self.quit(p)
        self.assert_empty()
        self.assertEqual(self.stderr(p), "")

    def test_many_in_flight(self):
        """Requests queued before the worker starts, from two clients;
        each reply reaches the type its request named."""
        other = self.d.client()
        self.addCleanup(other.close)
        for i in range(20):
            self.request(100 + i, b"req %d" % i, other if i % 2 else None)
        p = self.start_worker()
        for i in reversed(range(20)):
            self.assertEqual(self.recv(100 + i, client=other if i % 2
                                       else None), (100 + i, b"req %d" % i))
        self.quit(p)
        self.assert_empty()

    def test_count_then_exit(self):
        p = self.start_worker("2")
        self.request(50, b"first")
        self.request(51, ALL_BYTES)
        self.request(52, b"not served")
        self.assertEqual(self.recv(50), (50, b"first"))
        self.assertEqual(self.recv(51), (51, ALL_BYTES))
        self.exited(p, 0)
        # the third request stays queued for the next worker
        self.assertEqual(self.recv(1, timeout_ms=0), (1, b"52:not served"))

    def test_malformed_requests_dropped(self):
        p = self.start_worker()
        bad = [b"no colon", b"0:zero", b"1:would loop back to workers",
               b"2147483648:too wide for sysv_ipc", b"+5:sign", b"05:zero",
               b" 5:space", b":empty", b"5", b"99999999999999999999:x",
               b"quit\n", ALL_BYTES]
        for body in bad:
            self.send(REQUEST_TYPE, body)
        self.request(77, b"after the bad ones")
        self.assertEqual(self.recv(77), (77, b"after the bad ones"))
        self.quit(p)
        self.assert_empty()     # nothing was answered for the bad ones
        self.assertEqual(self.stderr(p).count("malformed"), len(bad))

    def test_key_from_environment(self):
        env = dict(os.environ, IPCBRIDGE_KEY=self.key_hex())
        p = self.start_worker(env=env, key=[])
        self.request(3, b"env")
        self.assertEqual(self.recv(3), (3, b"env"))
        self.quit(p)

    def test_decimal_key(self):
        p = self.start_worker(key=str(self.key()))
        self.request(3, b"dec")
        self.assertEqual(self.recv(3), (3, b"dec"))
        self.quit(p)

    def test_does_not_create_a_queue(self):
        key = ipcb_test.private_key()
        self.addCleanup(ipcb_test.ipcrm_queue, key)
        p = self.start_worker(key="0x%08x" % key)
        self.exited(p, 1)
        self.assertIn("start ipcbridge first", self.stderr(p))
        r = subprocess.run(["ipcs", "-q"], capture_output=True, text=True)
        self.assertNotIn("0x%08x" % key, r.stdout)

    def test_queue_removed_ends_worker(self):
        p = self.start_worker()
        self.request(4, b"up")
        self.assertEqual(self.recv(4), (4, b"up"))
        ipcb_test.ipcrm_queue(self.key())
        self.exited(p, 1)
        self.assertNotIn("Traceback", self.stderr(p))


def argv_key(key):
    return [] if key == [] else [key]


@unittest.skipUnless(PHP, "php with sysvmsg not found (set PHP)")
class PhpWorker(WorkerRoundTrip, InteropBase):
    name = "php"

    def command(self, key, *args):
        return [PHP, os.path.join(EXAMPLES, "worker.php")] + \
            argv_key(key) + list(args)


@unittest.skipUnless(SYSV_PY, "no python3 with sysv_ipc")
class PythonWorker(WorkerRoundTrip, InteropBase):
    name = "python"

    def command(self, key, *args):
        return [SYSV_PY, os.path.join(EXAMPLES, "worker.py")] + \
            argv_key(key) + list(args)


@unittest.skipUnless(C_WORKER, "examples/worker not built "
                     "(or set IPCBRIDGE_EXAMPLES_DIR)")
class CWorker(WorkerRoundTrip, InteropBase):
    name = "c"

    def command(self, key, *args):
        return [C_WORKER] + argv_key(key) + list(args)


class MixedWorkers(InteropBase):
    """Every available worker serves the same queue at once: each request
    is answered exactly once, whichever worker takes it."""

    def test_all_workers_share_the_queue(self):
        kinds = [k for k, ok in ((PhpWorker, PHP), (PythonWorker, SYSV_PY),
                                 (CWorker, C_WORKER)) if ok]
        if len(kinds) < 2:
            self.skipTest("fewer than two kinds of worker available")
        procs = []
        for k in kinds:
            p = subprocess.Popen(k.command(self, self.key_hex()),
                                 stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL)
            self.addCleanup(WorkerRoundTrip.kill, p)
            procs.append(p)
        n = 60
        for i in range(n):
            self.send(REQUEST_TYPE, b"%d:%s#%d" % (2000 + i, ALL_BYTES, i))
        for i in range(n):
            self.assertEqual(self.recv(2000 + i),
                             (2000 + i, ALL_BYTES + b"#%d" % i))
        for _ in procs:
            self.send_text(REQUEST_TYPE, "quit")
        for p in procs:
            self.assertEqual(p.wait(10), 0)
        self.assert_empty()


if __name__ == "__main__":
    ipcb_test.main()
