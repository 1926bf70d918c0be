#!/usr/bin/env python3
"""The conservation test: `make check-fault` (the longer run, not in TESTS).

Producers put uniquely numbered, checksummed messages on one queue (over
the socket with queue.send, and straight into the kernel with msgsnd);
consumers take them off (over the socket with ack: true, by queue.recv and
by queue.consume with prefetch, and straight from the kernel with msgrcv);
and a nemesis, on a schedule drawn from a fixed seed, meanwhile:

  * kills clients at every stage: right after a request is sent, after a
    delivery before its ack, in the middle of a request line (an abrupt
    close, SO_LINGER 0), and SIGKILLs real client processes;
  * SIGKILLs the daemon (running, stopped, or in its shutdown drain) and
    starts it again on the same config and state_dir (the journal gives
    back what it held), and restarts it cleanly with SIGTERM;
  * SIGSTOPs the daemon for a few hundred ms;
  * removes the queue (ipcrm) and lets the daemon re-create it, also
    while put-backs wait for room and while the daemon is dead;
  * fills the queue to max_bytes with filler of a type nobody reads, so
    senders meet queue_full and put-backs meet a full queue, and SIGKILLs
    the daemon then, so its next start restores into a full queue;
  * SIGKILLs processes that hold the segment's guard semaphore the PHP way
    (real PHP sem_get/sem_acquire, the same protocol through libc, and a
    sysv_ipc holder) while a client keeps doing shm.put/shm.get of
    checksummed blobs.

At the end every client stops, the daemon is drained, stopped with SIGTERM,
started once more (anything a failed put-back left in the journal comes
back) and stopped again. Then the checks:

  * every acknowledged message (queue.send answered with a result, msgsnd
    returned) was consumed for good: taken by msgrcv, or delivered and its
    queue.ack answered (a delivery nobody acked does not count: it must
    come back), with its exact type and bytes;
  * nothing unexpected arrived: no message nobody sent, none whose send was
    answered with an error or cut off mid-line, no corrupted payload;
  * duplicates only where the daemon logged a redelivery ("redelivery: put
    back unacked tag N (type T, B bytes)") or a journal restore, matched by
    type and size; no tag that was acked is ever redelivered; a message
    consumed for good comes back only where a restore explains a copy;
  * after each SIGKILL the dead daemon's journal is read: the next start
    must restore exactly the messages held there, and each must be
    received again; an ack whose answer the kill cut off took effect
    exactly when its message was not held;
  * blobs read back from shared memory are always intact, errors are
    documented ones, a lock holder excludes the daemon, and a killed one
    frees the lock at once and wedges nothing;
  * no IPC object leaked, the daemon's descriptors are back to what a fresh
    daemon has, its RSS does not grow over the last quarter of the run,
    and it exits cleanly.

Documented windows are allowed but counted and printed: the message a
killed daemon's journal shows still "receiving" (taken off the queue, its
length not yet recorded: lost, and only that one), a put-back whose queue
was removed while it waited for room (it stays in the journal until the
next start), and a torn shared-memory write after a SIGKILL of the daemon
during shm.put (the segment then answers not_found, or corrupt while the
torn-write marker is up; the test clears it with shm.clear).

Environment: FAULT_SEED (default 1), FAULT_SECONDS (default 60). The seed
is printed at the start and in every failure message; a failed run keeps
the daemon's log (FAULT_KEEP_LOG=1: any run) as fault_conservation.seedN.log
in the current directory, with the nemesis's steps in it. The test
re-executes itself in a private IPC namespace (unshare -i) when it can.

Run: IPCBRIDGE=src/ipcbridge PYTHONPATH=tests /usr/bin/python3 \
         tests/fault_conservation.py
"""
import base64
import collections
import ctypes
import errno
import hashlib
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback

import ipcb_test
from ipcb_test import Daemon

SYSV_PY = ipcb_test.SYSV_PY
sysv_ipc = ipcb_test.import_sysv_ipc(__name__ == "__main__")

SEED = int(os.environ.get("FAULT_SEED", "1"))
SECONDS = float(os.environ.get("FAULT_SECONDS", "60"))
os.environ["FAULT_SEED"] = str(SEED)        # the client processes' payloads

TYPES = (1, 2, 3, 4, 5)
FILLER_TYPE = 99            # only the nemesis sends and reads it
MAX_BYTES = 16384           # the queue's max_bytes
JOURNAL_SLOTS = 64
ACK_TIMEOUT_MS = 5000       # the server's default for a delivery
REPLY_TIMEOUT = 8.0         # no request of this test may wait longer
SEND_ERRORS = {"queue_full", "queue_removed", "shutting_down"}
START = time.monotonic()
SANITIZED = ipcb_test.SANITIZED             # ASan's RSS is no measure


def elapsed():
    return time.monotonic() - START


# ---------------------------------------------------------------------------
# Payloads: a pure function of the seed and the message id, so any process
# can produce a message and anyone can check one.

TEXT = ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
        " -_/.,;+=\u00e9\u00fc\u20ac\u6f22\U0001f600")


def message(mid):
    """(type, payload bytes) of message mid ("P1.42", "D.7", "F.3.500")."""
    h = hashlib.sha1(b"%d:msg:%s" % (SEED, mid.encode())).digest()
    r = random.Random(h)
    if mid.startswith("F."):
        typ, n = FILLER_TYPE, int(mid.split(".")[2])
    else:
        typ = TYPES[h[0] % len(TYPES)]
        n = r.randrange(1000, 3000) if h[1] < 24 else r.randrange(0, 300)
    head = b"id:%s:%s:" % (mid.encode(), h.hex()[:16].encode())
    if mid.startswith("F.") or h[2] % 6 != 0:
        pad = "".join(r.choices(TEXT, k=n)).encode()
    else:
        pad = r.randbytes(n)        # binary: NULs, not UTF-8
    return typ, head + pad


def parse(mtype, payload):
    """(mid, None) for an intact message, (mid or None, why) otherwise."""
    if not payload.startswith(b"id:"):
        return None, "no id header"
    parts = payload.split(b":", 3)
    if len(parts) < 4:
        return None, "truncated id header"
    try:
        mid = parts[1].decode("ascii")
        want = message(mid)
    except (UnicodeDecodeError, ValueError, IndexError):
        return None, "unknown id %r" % parts[1][:40]
    if want[0] != mtype:
        return mid, "type %d, sent as %d" % (mtype, want[0])
    if want[1] != payload:
        return mid, "payload differs (%d bytes, sent %d)" % (
            len(payload), len(want[1]))
    return mid, None


def shm_blob(n):
    h = hashlib.sha1(b"%d:shm:%d" % (SEED, n)).digest()
    r = random.Random(h)
    size = r.choice([r.randrange(0, 200), r.randrange(200, 4000),
                     r.randrange(4000, 20000)])
    head = b"shm:%d:%s:" % (n, h.hex()[:16].encode())
    if h[0] % 4 == 0:
        return head + r.randbytes(size)
    return head + "".join(r.choices(TEXT, k=size // 2)).encode()


def shm_blob_check(b):
    """The blob's number when intact, else None."""
    try:
        n = int(b.split(b":", 2)[1])
    except (ValueError, IndexError):
        return None
    return n if shm_blob(n) == b else None


def put_payload(req, payload, rng):
    """Set text or data_b64 of a request."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and "\0" not in text and rng.random() < 0.85:
        req["text"] = text
    else:
        req["data_b64"] = base64.b64encode(payload).decode()


def got_payload(m):
    if "text" in m:
        return m["text"].encode("utf-8")
    return base64.b64decode(m["data_b64"])


def fail_line(msg):
    return "FAIL seed=%d t=%.2fs: %s" % (SEED, elapsed(), msg)


# ---------------------------------------------------------------------------
# A client connection (the abrupt close is what a SIGKILL does to it).

class Gone(Exception):
    """The connection ended (daemon killed or restarting, or we cut it)."""


class Conn:
    def __init__(self, path, timeout=REPLY_TIMEOUT):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(path)
            cred = s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                struct.calcsize("3i"))
        except OSError:
            s.close()
            raise
        self.pid = struct.unpack("3i", cred)[0]     # the daemon's pid
        self.sock = s
        self.buf = b""

    def send(self, obj):
        self.raw(json.dumps(obj).encode() + b"\n")

    def raw(self, data):
        try:
            self.sock.sendall(data)
        except OSError as e:
            raise Gone(str(e))

    def line(self, timeout=REPLY_TIMEOUT):
        """The next line; socket.timeout when none came within timeout."""
        self.sock.settimeout(timeout)
        while b"\n" not in self.buf:
            try:
                chunk = self.sock.recv(1 << 16)
            except socket.timeout:
                raise
            except OSError as e:
                raise Gone(str(e))
            if not chunk:
                raise Gone("EOF")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def obj(self, timeout=REPLY_TIMEOUT):
        o = json.loads(self.line(timeout))
        if "id" not in o and o.get("error", {}).get("code") == "busy":
            raise Gone("busy")
        return o

    def abort(self):
        """Go away like a killed process: no goodbye, unread data dropped."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                 struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.sock.close()

    def close(self):
        self.sock.close()


# ---------------------------------------------------------------------------
# What everyone saw.

class Registry:
    def __init__(self):
        self.lock = threading.Lock()
        self.status = {}        # mid -> unknown | acked | failed | partial
        self.receipts = collections.defaultdict(list)   # mid -> [who]
        self.acked_tags = set()     # (daemon pid, tag): ack answered
        self.acks_sent = set()      # (daemon pid, tag): ack on its way
        self.failures = []
        self.n = collections.Counter()
        self.notes = []

    def fail(self, msg):
        line = fail_line(msg)
        with self.lock:
            self.failures.append(line)
        print(line, file=sys.stderr, flush=True)

    def note(self, msg):
        with self.lock:
            self.notes.append("t=%.2fs %s" % (elapsed(), msg))

    def attempt(self, mid):
        with self.lock:
            self.status[mid] = "unknown"
            self.n["attempted"] += 1

    def acked(self, mid):
        with self.lock:
            self.status[mid] = "acked"
            self.n["acknowledged"] += 1

    def failed(self, mid, code):
        with self.lock:
            self.status[mid] = "failed"
            self.n["send error " + code] += 1

    def partial(self, mid):
        with self.lock:
            self.status[mid] = "partial"
            self.n["cut mid-line"] += 1

    def received(self, who, mtype, payload, pid=None, tag=None, t=None):
        mid, why = parse(mtype, payload)
        if why is not None:
            self.fail("%s received a corrupt or unknown message (type %d, "
                      "%d bytes, id %s, daemon pid %s tag %s): %s; first "
                      "bytes %r" % (who, mtype, len(payload), mid, pid, tag,
                                    why, payload[:80]))
            return
        with self.lock:
            self.receipts[mid].append((who, pid, tag, round(
                elapsed() if t is None else t, 3)))
            self.n["received"] += 1

    def ack_sent(self, pid, tag):
        with self.lock:
            self.acks_sent.add((pid, tag))

    def acked_tag(self, pid, tag):
        with self.lock:
            self.acked_tags.add((pid, tag))

    def consumed(self, receipt):
        """1: this receipt consumed the message for good (a msgrcv, or a
        delivery whose ack was answered); 0.5: its ack went out but the
        answer never came (see settle_doubts); 0: not acked."""
        who, pid, tag, _ = receipt
        if tag is None:
            return 1
        if (pid, tag) in self.acked_tags:
            return 1
        return 0.5 if (pid, tag) in self.acks_sent else 0

    def settle_doubts(self, redelivered, killed, held_at_kill):
        """An ack whose answer never came took effect unless the daemon put
        that tag back (and logged it: a close or a shutdown always does).
        A SIGKILLed daemon logs nothing: the ack took effect unless its
        message was still in the journal. held_at_kill(pid, mid): it was."""
        mid_of = {}
        for m, rs in self.receipts.items():
            for who, pid, tag, _ in rs:
                if tag is not None:
                    mid_of[(pid, tag)] = m
        n = 0
        for pid, tag in self.acks_sent - self.acked_tags:
            if (pid, tag) in redelivered or (pid, tag) not in mid_of:
                continue        # (not in mid_of: a corrupt one, failed)
            if pid in killed and held_at_kill(pid, mid_of[(pid, tag)]):
                continue
            self.acked_tags.add((pid, tag))
            n += 1
        return n


# ---------------------------------------------------------------------------
# The world: the daemon, its keys, and the clients' shared switches.

class World:
    def __init__(self, daemon):
        self.d = daemon
        self.sock = daemon.sock
        self.qkey = daemon.key()
        self.shmkey = daemon.shm_key()
        self.reg = Registry()
        self.stop = threading.Event()       # producers, shm client, nemesis
        self.draining = False               # consumers: ack all, then stop
        self.stop_consumers = threading.Event()
        self.pause_req = False              # producers: finish and wait
        self.pids = []                      # every daemon process, in order
        self.spawns = []                    # when each was started
        self.killed = set()                 # pids that got a SIGKILL
        self.mid_receive = set()            # ids caught mid-receive
        self.held = {}                      # killed pid -> [ids it held]
        self.journal_known = True
        self.restored = {}                  # pid -> stats messages.restored
        self.marks = []

    def mark(self, what):
        """A line in the daemon's log (and our timeline) for the record."""
        line = "#nemesis t=%.3fs %s" % (elapsed(), what)
        self.marks.append(line)
        with open(self.d.log, "a") as f:
            f.write(line + "\n")

    def pid(self):
        return self.d.proc.pid if self.d.proc else None

    def start_daemon(self):
        self.spawns.append(elapsed())
        self.d.start()
        self.pids.append(self.d.proc.pid)
        self.mark("daemon started, pid %d" % self.d.proc.pid)
        # restored is counted before serving: read it before any next kill
        st = self.call({"op": "stats"})["result"]
        self.restored[self.d.proc.pid] = st["messages"]["restored"]
        if st["messages"]["restored"]:
            self.mark("pid %d restored %d message(s)" % (
                self.d.proc.pid, st["messages"]["restored"]))

    def reap(self):
        self.d.proc.wait()
        self.d.logf.close()
        self.d.proc = None

    def call(self, req, tries=50):
        """One request on a fresh connection (control traffic)."""
        last = None
        for _ in range(tries):
            try:
                c = Conn(self.sock)
            except OSError as e:
                last = e
                time.sleep(0.05)
                continue
            try:
                c.send(req)
                return c.obj()
            except Gone as e:
                last = e
                time.sleep(0.05)
            except socket.timeout:
                raise RuntimeError("control request %r: no reply within %ds "
                                   "(daemon pid %s wedged?)" % (
                                       req, REPLY_TIMEOUT, c.pid))
            finally:
                c.close()
        raise RuntimeError("control request %r failed: %s" % (req, last))

    def open_queue(self, stop=lambda: False, timeout=30):
        """The kernel queue, as a worker opens it: never created by us
        (the daemon re-creates it after a removal). None once stop()."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return sysv_ipc.MessageQueue(self.qkey,
                                             max_message_size=8192)
            except sysv_ipc.ExistentialError:
                if stop():
                    return None
                if time.monotonic() > deadline:
                    raise RuntimeError("queue key 0x%08x missing for %ds: "
                                       "the daemon did not re-create it" %
                                       (self.qkey, timeout))
                time.sleep(0.005)


def journal_scan(path):
    """What a SIGKILLed daemon's journal (src/journal.c) holds: the first
    bytes of every message in a held slot (the next start must restore
    them) and of every message in a slot still "receiving" whose type the
    kernel already wrote (taken off the queue, not recorded: the window
    that loses it). None when the journal is not in the format this test
    knows."""
    try:
        with open(path, "rb") as f:
            j = f.read()
        if j[:8] != b"IPCBJRN1":
            return None
        nslots, slot_bytes, data_off = struct.unpack_from("<QQQ", j, 8)
        stride = (8 + slot_bytes + 7) & ~7      # struct ipcb_msg + bytes
        out = {"held": [], "receiving": []}
        for i in range(nslots):
            state, _, length = struct.unpack_from("<IiQ", j, 32 + 16 * i)
            off = data_off + i * stride
            mtype = struct.unpack_from("<q", j, off)[0]
            if state == 2:                      # SLOT_HELD
                out["held"].append(j[off + 8:off + 8 + min(length, 120)])
            elif state == 1 and mtype != 0:     # SLOT_RECEIVING
                out["receiving"].append(j[off + 8:off + 8 + 120])
        return out
    except (OSError, struct.error):
        return None


def mid_of(b):
    """The message id at the start of a payload."""
    if b.startswith(b"id:") and b.count(b":") >= 2:
        return b.split(b":")[1].decode(errors="replace")
    return repr(b[:40])


def gone_queue(e):
    """A removed queue: sysv_ipc says EIDRM, a stale id gives EINVAL."""
    return isinstance(e, sysv_ipc.ExistentialError) or (
        isinstance(e, OSError) and e.errno in (errno.EINVAL, errno.EIDRM))


def proc_state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def wait_stopped(pid):
    deadline = time.monotonic() + 5
    while proc_state(pid) not in ("T", "t"):
        if time.monotonic() > deadline:
            raise RuntimeError("daemon did not stop on SIGSTOP")
        time.sleep(0.001)


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fds(pid):
    out = {}
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            out[int(fd)] = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            pass
    return out


# ---------------------------------------------------------------------------
# Clients.

class Worker(threading.Thread):
    stages = ()

    def __init__(self, world, name, k):
        super().__init__(name=name, daemon=True)
        self.w = world
        self.reg = world.reg
        self.rng = random.Random(SEED * 1000 + k)
        self.kill_stage = None      # set by the nemesis
        self.idle = threading.Event()

    def run(self):
        try:
            self.body()
        except Exception:
            self.reg.fail("%s crashed:\n%s" % (self.name,
                                               traceback.format_exc()))

    def take_kill(self, stage):
        if self.kill_stage == stage and not self.w.draining:
            self.kill_stage = None
            self.reg.n["client killed " + stage] += 1
            return True
        return False

    def connect(self, stop):
        while not stop():
            try:
                return Conn(self.w.sock)
            except OSError:
                time.sleep(0.02)
        return None

    def reply(self, c, rid, what):
        """The reply with id rid (None: the next reply); no events here."""
        try:
            o = c.obj()
        except socket.timeout:
            self.reg.fail("%s: no reply within %.0fs to %s (daemon pid %d "
                          "wedged?)" % (self.name, REPLY_TIMEOUT, what,
                                        c.pid))
            raise Gone("timeout")
        if "event" in o or o.get("id") != rid:
            self.reg.fail("%s: expected the reply to %s (id %r), got %r" %
                          (self.name, what, rid, o))
            raise Gone("protocol")
        return o

    def cut_line(self, c, req):
        """Send part of a request line and vanish."""
        line = json.dumps(req).encode()
        c.raw(line[:self.rng.randrange(1, len(line) - 1)])
        c.abort()
        raise Gone("cut mid-line")


class SocketProducer(Worker):
    stages = ("after_request", "mid_line")

    def __init__(self, world, k):
        super().__init__(world, "sock-producer-%d" % k, k)
        self.prefix = "P%d." % k
        self.n = 0

    def pause_point(self):
        if self.w.pause_req:
            self.idle.set()
            while self.w.pause_req and not self.w.stop.is_set():
                time.sleep(0.002)
            self.idle.clear()

    def body(self):
        while not self.w.stop.is_set():
            self.pause_point()
            c = self.connect(lambda: self.w.stop.is_set())
            if c is None:
                break
            try:
                for _ in range(self.rng.randint(3, 60)):
                    if self.w.stop.is_set() or self.w.pause_req:
                        break
                    self.batch(c)
                    time.sleep(self.rng.random() * 0.004)
                c.close()
            except Gone:
                c.abort()

    def batch(self, c):
        rng = self.rng
        k = rng.choice((1, 1, 1, 2, 3, 5, 8))
        with_ids = k > 1 or rng.random() < 0.6
        lines, ids = [], []
        for i in range(k):
            self.n += 1
            mid = self.prefix + str(self.n)
            typ, payload = message(mid)
            req = {"op": "queue.send", "type": typ}
            put_payload(req, payload, rng)
            tmo = rng.choice((0, 0, 0, 0, 30, 200, 500))
            if tmo:
                req["timeout_ms"] = tmo
            if with_ids:
                req["id"] = self.n
            ids.append((req.get("id"), mid))
            self.reg.attempt(mid)
            if i == k - 1 and self.take_kill("mid_line"):
                c.raw(b"".join(lines))
                self.reg.partial(mid)       # must never arrive
                self.cut_line(c, req)
            lines.append(json.dumps(req).encode() + b"\n")
        c.raw(b"".join(lines))
        if self.take_kill("after_request"):
            c.abort()
            raise Gone("killed after the request")
        want = dict(ids) if with_ids else None
        full = False
        for rid, mid in ids:
            if want is None:
                o = self.reply(c, None, "queue.send")
            else:
                o = self.any_reply(c, want)
                mid = want.pop(o["id"])
            if "result" in o:
                self.reg.acked(mid)
                continue
            code = o["error"]["code"]
            if code not in SEND_ERRORS:
                self.reg.fail("%s: queue.send of %s answered %r" %
                              (self.name, mid, o))
            self.reg.failed(mid, code)
            full = full or code == "queue_full"
        if full:
            time.sleep(rng.uniform(0.005, 0.03))

    def any_reply(self, c, want):
        try:
            o = c.obj()
        except socket.timeout:
            self.reg.fail("%s: no reply within %.0fs to queue.send (daemon "
                          "pid %d wedged?)" % (self.name, REPLY_TIMEOUT,
                                               c.pid))
            raise Gone("timeout")
        if "event" in o or o.get("id") not in want:
            self.reg.fail("%s: unexpected line %r" % (self.name, o))
            raise Gone("protocol")
        return o


class DirectProducer(Worker):
    """A worker's msgsnd: acknowledged when msgsnd returns."""

    def __init__(self, world):
        super().__init__(world, "direct-producer", 50)
        self.n = 0

    def body(self):
        mq = self.w.open_queue(self.w.stop.is_set)
        while mq is not None and not self.w.stop.is_set():
            if self.w.pause_req:
                self.idle.set()
                while self.w.pause_req and not self.w.stop.is_set():
                    time.sleep(0.002)
                self.idle.clear()
                continue
            self.n += 1
            mid = "D.%d" % self.n
            typ, payload = message(mid)
            self.reg.attempt(mid)
            try:
                mq.send(payload, block=False, type=typ)
                self.reg.acked(mid)
            except sysv_ipc.BusyError:
                self.reg.failed(mid, "msgsnd EAGAIN")
                time.sleep(self.rng.uniform(0.005, 0.02))
            except (sysv_ipc.ExistentialError, OSError) as e:
                if not gone_queue(e):
                    raise
                self.reg.failed(mid, "msgsnd EIDRM/EINVAL")
                mq = self.w.open_queue(self.w.stop.is_set)
            time.sleep(self.rng.random() * 0.006)


class DirectConsumer(Worker):
    """A worker's msgrcv (never the filler type)."""

    def __init__(self, world):
        super().__init__(world, "direct-consumer", 60)

    def body(self):
        mq = self.w.open_queue(self.w.stop_consumers.is_set)
        while mq is not None and not self.w.stop_consumers.is_set():
            t = self.rng.choice((-50, -50, -50) + TYPES)
            try:
                data, typ = mq.receive(block=False, type=t)
            except sysv_ipc.BusyError:
                time.sleep(self.rng.uniform(0.002, 0.01))
                continue
            except (sysv_ipc.ExistentialError, OSError) as e:
                if not gone_queue(e):
                    raise
                mq = self.w.open_queue(self.w.stop_consumers.is_set)
                continue
            self.reg.received(self.name, typ, data)
            if not self.w.draining:
                time.sleep(self.rng.uniform(0.003, 0.015))


SELECTORS = ([{"type": FILLER_TYPE, "except": True}, {"type_max": 50}] +
             [{"type": t} for t in TYPES])
DRAIN_SELECTORS = SELECTORS[:2]


class SocketConsumer(Worker):
    stages = ("after_request", "after_delivery", "mid_line")

    def __init__(self, world, k):
        super().__init__(world, "sock-consumer-%d" % k, 100 + k)
        self.seq = 0

    def stopping(self):
        return self.w.stop_consumers.is_set()

    def fate(self, short):
        """What to do with a delivery: ack, nack, forget, or die."""
        if self.w.draining:
            return "ack"
        x = self.rng.random()
        if x < 0.05:
            return "nack"
        if x < 0.08:
            return "forget" if short else "ack"
        if x < 0.085:
            return "die"
        return "ack"

    def selector(self):
        return dict(self.rng.choice(DRAIN_SELECTORS if self.w.draining
                                    else SELECTORS))

    def body(self):
        while not self.stopping():
            c = self.connect(self.stopping)
            if c is None:
                break
            try:
                if self.rng.random() < 0.5:
                    self.recv_session(c)
                else:
                    self.consume_session(c)
                c.close()
            except Gone:
                c.abort()

    def next_id(self):
        self.seq += 1
        return self.seq

    def settle(self, c, tag, nack, short):
        op = "queue.nack" if nack else "queue.ack"
        rid = self.next_id()
        if not nack:
            self.reg.ack_sent(c.pid, tag)
        c.send({"id": rid, "op": op, "tag": tag})
        self.check_settled(c, self.reply(c, rid, op), tag, nack, short)

    def check_settled(self, c, o, tag, nack, short):
        if "result" in o:
            if not nack:
                self.reg.acked_tag(c.pid, tag)
            return
        if o["error"]["code"] == "not_found" and short:
            self.reg.n["ack after ack_timeout_ms"] += 1
            return
        self.reg.fail("%s: settling tag %d (daemon pid %d) answered %r" %
                      (self.name, tag, c.pid, o))

    def recv_session(self, c):
        sel = self.selector()
        forgotten = []
        for _ in range(self.rng.randint(5, 80)):
            if self.stopping() or (self.w.draining and
                                   self.rng.random() < 0.05):
                break
            short = self.rng.random() < 0.15 and not self.w.draining
            fate = self.fate(short)
            req = {"op": "queue.recv", "ack": True}
            req.update(sel)
            tmo = self.rng.choice((0, 0, 50, 200))
            if tmo:
                req["timeout_ms"] = tmo
            if short:
                req["ack_timeout_ms"] = self.rng.randint(50, 400)
            rid = self.next_id() if self.rng.random() < 0.7 else None
            if rid is not None:
                req["id"] = rid
            if self.take_kill("mid_line"):
                self.cut_line(c, req)
            c.send(req)
            if self.take_kill("after_request"):
                c.abort()
                raise Gone("killed after the request")
            o = self.reply(c, rid, "queue.recv")
            if "error" in o:
                if o["error"]["code"] not in ("queue_removed",
                                              "shutting_down"):
                    self.reg.fail("%s: queue.recv answered %r" %
                                  (self.name, o))
                continue
            m = o["result"]["msg"]
            if m is None:
                if not tmo:
                    time.sleep(0.005)
                continue
            self.reg.received(self.name, m["type"], got_payload(m), c.pid,
                              m["tag"])
            if self.take_kill("after_delivery") or fate == "die":
                self.reg.n["consumer died holding a delivery"] += 1
                c.abort()
                raise Gone("killed after a delivery")
            if fate == "forget":
                forgotten.append(m["tag"])
                self.reg.n["delivery left to ack_timeout_ms"] += 1
            else:
                self.settle(c, m["tag"], fate == "nack", short)
            if forgotten and self.rng.random() < 0.1:
                self.settle(c, forgotten.pop(0), False, True)

    def consume_session(self, c):
        rng = self.rng
        short = rng.random() < 0.2 and not self.w.draining
        req = {"id": "c", "op": "queue.consume", "ack": True,
               "prefetch": rng.choice((1, 2, 4, 8, 16))}
        req.update(self.selector())
        if short:
            req["ack_timeout_ms"] = rng.randint(100, 500)
        if self.take_kill("mid_line"):
            self.cut_line(c, req)
        c.send(req)
        if self.take_kill("after_request"):
            c.abort()
            raise Gone("killed after the request")
        o = self.reply(c, "c", "queue.consume")
        if "error" in o:
            self.reg.fail("%s: queue.consume answered %r" % (self.name, o))
            return
        consumer = o["result"]["consumer"]
        pending = {}        # request id -> (op, tag)
        budget = rng.randint(5, 120)
        cancelled = None
        last = time.monotonic()
        while True:
            if cancelled is None and (budget <= 0 or self.stopping()):
                cancelled = self.next_id()
                c.send({"id": cancelled, "op": "cancel",
                        "consumer": consumer})
                pending[cancelled] = ("cancel", None)
            if cancelled is not None and not pending:
                return
            try:
                o = c.obj(timeout=0.3)
            except socket.timeout:
                if pending and time.monotonic() - last > REPLY_TIMEOUT:
                    self.reg.fail("%s: no reply within %.0fs to %r (daemon "
                                  "pid %d wedged?)" % (
                                      self.name, REPLY_TIMEOUT,
                                      list(pending.values()), c.pid))
                    raise Gone("timeout")
                if not pending:
                    budget -= 10        # idle: wind the session down
                continue
            last = time.monotonic()
            if o.get("event") == "message":
                m = o["data"]
                budget -= 1
                self.reg.received(self.name, m["type"], got_payload(m),
                                  c.pid, m["tag"])
                fate = self.fate(short)
                if self.take_kill("after_delivery") or fate == "die":
                    self.reg.n["consumer died holding a delivery"] += 1
                    c.abort()
                    raise Gone("killed after a delivery")
                if fate == "forget":
                    self.reg.n["delivery left to ack_timeout_ms"] += 1
                    continue
                rid = self.next_id()
                op = "queue.nack" if fate == "nack" else "queue.ack"
                if fate != "nack":
                    self.reg.ack_sent(c.pid, m["tag"])
                c.send({"id": rid, "op": op, "tag": m["tag"]})
                pending[rid] = (op, m["tag"])
            elif o.get("event") == "consumer_end":
                code = o["data"]["error"]["code"]
                if code != "queue_removed":
                    self.reg.fail("%s: consumer_end %r" % (self.name, o))
                self.reg.n["consumer ended: " + code] += 1
                if cancelled is None:
                    cancelled = -1      # nothing to cancel any more
                if not pending:
                    return
            elif o.get("id") in pending:
                op, tag = pending.pop(o["id"])
                if op == "cancel":
                    if "error" in o and o["error"]["code"] != "not_found":
                        self.reg.fail("%s: cancel answered %r" %
                                      (self.name, o))
                else:
                    self.check_settled(c, o, tag, op == "queue.nack", short)
            else:
                self.reg.fail("%s: unexpected line %r" % (self.name, o))
                raise Gone("protocol")


# ---------------------------------------------------------------------------
# Client processes (real SIGKILLs) and lock holders: this file run with
# --child or --holder.

def child_main(role, sock, gen):
    rng = random.Random(SEED * 7919 + gen)
    out = sys.stdout

    def say(s):
        out.write(s + "\n")
        out.flush()

    n = 0
    while True:
        try:
            c = Conn(sock)
        except OSError:
            time.sleep(0.02)
            continue
        try:
            if role == "producer":
                while True:
                    n += 1
                    mid = "X%d.%d" % (gen, n)
                    typ, payload = message(mid)
                    req = {"id": n, "op": "queue.send", "type": typ}
                    put_payload(req, payload, rng)
                    if rng.random() < 0.3:
                        req["timeout_ms"] = rng.choice((50, 300))
                    say("A " + mid)
                    c.send(req)
                    o = c.obj()
                    if "result" in o:
                        say("K " + mid)
                    else:
                        say("F %s %s" % (mid, o["error"]["code"]))
                        time.sleep(0.01)
                    time.sleep(rng.random() * 0.005)
            else:
                c.send({"id": "c", "op": "queue.consume", "ack": True,
                        "prefetch": rng.choice((1, 4)), "type": FILLER_TYPE,
                        "except": True})
                rid = 0
                while True:
                    o = c.obj(timeout=60)
                    if o.get("event") == "message":
                        m = o["data"]
                        say("R %d %d %d %s %.6f" % (
                            c.pid, m["tag"], m["type"],
                            base64.b64encode(got_payload(m)).decode(),
                            time.monotonic()))
                        rid += 1
                        say("S %d %d" % (c.pid, m["tag"]))
                        c.send({"id": rid, "op": "queue.ack",
                                "tag": m["tag"]})
                    elif o.get("event") == "consumer_end":
                        c.send({"id": "c", "op": "queue.consume",
                                "ack": True, "type": FILLER_TYPE,
                                "except": True})
                    elif "result" in o and "acked" in o["result"]:
                        say("T %d %d" % (c.pid, o["result"]["tag"]))
                    elif "error" in o:
                        say("E %s" % json.dumps(o))
        except (Gone, socket.timeout, ValueError):
            c.close()
            time.sleep(0.01)


class Child(threading.Thread):
    """Runs one client process at a time; the nemesis SIGKILLs it."""

    def __init__(self, world, role):
        super().__init__(name="child-" + role, daemon=True)
        self.w = world
        self.reg = world.reg
        self.role = role
        self.proc = None
        self.gen = 0
        self.lock = threading.Lock()
        self.idle = threading.Event()

    def stopped(self):
        if self.role == "producer":
            return self.w.stop.is_set()
        return self.w.stop_consumers.is_set() or self.w.draining

    def run(self):
        try:
            self.loop()
        except Exception:
            self.reg.fail("%s crashed:\n%s" % (self.name,
                                               traceback.format_exc()))

    def loop(self):
        while not self.stopped():
            if self.role == "producer" and self.w.pause_req:
                self.idle.set()
                time.sleep(0.005)
                continue
            self.idle.clear()
            self.gen += 1
            with self.lock:
                self.proc = subprocess.Popen(
                    [sys.executable, os.path.abspath(__file__), "--child",
                     self.role, self.w.sock, str(self.gen)],
                    stdout=subprocess.PIPE)
            for line in self.proc.stdout:
                if not line.endswith(b"\n"):
                    break               # cut by the kill
                self.handle(line.decode().split())
            self.proc.wait()
            with self.lock:
                self.proc = None
        self.idle.set()

    def handle(self, f):
        if f[0] == "A":
            self.reg.attempt(f[1])
        elif f[0] == "K":
            self.reg.acked(f[1])
        elif f[0] == "F":
            if f[2] not in SEND_ERRORS:
                self.reg.fail("child producer: send of %s answered %s" %
                              (f[1], f[2]))
            self.reg.failed(f[1], f[2])
        elif f[0] == "R":
            self.reg.received("child-consumer", int(f[3]),
                              base64.b64decode(f[4]), int(f[1]), int(f[2]),
                              float(f[5]) - START)
        elif f[0] == "S":
            self.reg.ack_sent(int(f[1]), int(f[2]))
        elif f[0] == "T":
            self.reg.acked_tag(int(f[1]), int(f[2]))
        elif f[0] == "E":
            self.reg.fail("child consumer got an error: %s" % " ".join(f[1:]))

    def kill(self):
        with self.lock:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                return True
        return False


# The lock the PHP way in PHP itself: sem_get() registers, sem_acquire()
# takes it (both with SEM_UNDO); then read var 1 of the segment.
PHP_HOLDER = r'''
$s = sem_get((int)$argv[1]);
if ($s === false || !sem_acquire($s)) { fwrite(STDERR, "sem failed\n"); exit(2); }
$m = @shm_attach((int)$argv[2]);
if ($m === false || !@shm_has_var($m, 1)) $v = "none";
else { $x = @shm_get_var($m, 1); $v = is_string($x) ? base64_encode($x) : "notstring"; }
echo "ready var=$v\n";
sleep(1000);
'''


class SemBuf(ctypes.Structure):
    _fields_ = [("sem_num", ctypes.c_ushort), ("sem_op", ctypes.c_short),
                ("sem_flg", ctypes.c_short)]


SEM_UNDO = 0x1000
GETVAL, SETVAL = 12, 16


def php_get_var(key, var):
    """Var's bytes from a PHP segment image (None: absent); raises on a bad
    layout (the checks of formats.md)."""
    mem = sysv_ipc.SharedMemory(key)
    try:
        buf = mem.read()
    finally:
        mem.detach()
    magic, start, end, free, total = struct.unpack_from("<8sqqqq", buf, 0)
    if magic[:7] != b"PHP_SM\0" or start != 40 or not (
            start <= end <= total <= len(buf)) or free != total - end:
        raise ValueError("bad header")
    pos = start
    while pos < end:
        k, length, nxt = struct.unpack_from("<qqq", buf, pos)
        if nxt != (length + 31) // 8 * 8 + 8 or pos + nxt > end:
            raise ValueError("bad chunk at %d" % pos)
        if k == var:
            data = buf[pos + 24:pos + 24 + length]
            m = re.match(rb's:(\d+):"', data)
            if not m or data[-2:] != b'";':
                raise ValueError("not a string")
            return data[m.end():-2]
        pos += nxt
    return None


def holder_main(kind, semkey, shmkey):
    """Take the segment's guard semaphore (some stage of it) and wait to be
    SIGKILLed; print "ready ..." once there."""
    def var_state():
        try:
            v = php_get_var(shmkey, 1)
        except (ValueError, struct.error) as e:
            return "corrupt:" + str(e).replace(" ", "_")
        except sysv_ipc.ExistentialError:
            return "none"
        return "none" if v is None else base64.b64encode(v).decode()

    if kind == "sysv-holding":          # a Python worker: not registered
        s = sysv_ipc.Semaphore(semkey, flags=0)
        s.undo = True
        s.acquire(10)
        print("ready var=" + var_state(), flush=True)
        time.sleep(1000)
    libc = ctypes.CDLL(None, use_errno=True)
    semid = libc.semget(ctypes.c_int(semkey), 3, 0)
    if semid < 0:
        sys.exit("semget: %s" % os.strerror(ctypes.get_errno()))

    def semop(*ops):
        arr = (SemBuf * len(ops))(*[SemBuf(*o) for o in ops])
        ts = struct.pack("qq", 10, 0)
        while libc.semtimedop(semid, arr, len(ops), ts) < 0:
            if ctypes.get_errno() != errno.EINTR:
                sys.exit("semop: %s" % os.strerror(ctypes.get_errno()))

    # register as sem_get() does: wait for the gate, close it, count in
    semop((2, 0, 0), (2, 1, SEM_UNDO), (1, 1, SEM_UNDO))
    if kind == "gate":
        print("ready", flush=True)      # killed with the gate closed
        time.sleep(1000)
    if libc.semctl(semid, 1, GETVAL) == 1:
        libc.semctl(semid, 0, SETVAL, ctypes.c_int(1))
    semop((2, -1, SEM_UNDO))
    if kind == "registered":
        print("ready", flush=True)
        time.sleep(1000)
    semop((0, -1, SEM_UNDO))            # acquire
    print("ready var=" + var_state(), flush=True)
    time.sleep(1000)


def find_php():
    php = os.environ.get("PHP") or shutil.which("php")
    if not php or not os.access(php, os.X_OK):
        return None
    try:
        r = subprocess.run([php, "-r", "echo function_exists('sem_get') && "
                            "function_exists('shm_attach') ? 'yes' : 'no';"],
                           capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return php if r.stdout == b"yes" else None


# ---------------------------------------------------------------------------
# The shared-memory client: checksummed blobs in var 1 of the segment.

class ShmClient(Worker):
    def __init__(self, world):
        super().__init__(world, "shm-client", 70)
        self.n = 0
        self.last = None            # the blob var 1 holds, when known
        self.in_doubt = set()       # puts whose reply never came
        self.repairing = False
        self.clear_pending = False
        self.ok = 0
        self.lock = threading.Lock()

    def torn_possible(self):
        """A put lost its reply: a daemon SIGKILL may have torn it."""
        return bool(self.in_doubt)

    def body(self):
        while not self.w.stop.is_set():
            c = self.connect(lambda: self.w.stop.is_set())
            if c is None:
                break
            try:
                for _ in range(self.rng.randint(5, 50)):
                    if self.w.stop.is_set():
                        break
                    with self.lock:
                        if self.clear_pending:
                            self.clear(c)
                        elif self.rng.random() < 0.6:
                            self.put(c)
                        else:
                            self.get(c)
                    time.sleep(self.rng.random() * 0.01)
                c.close()
            except Gone:
                c.abort()

    def repair(self, why):
        """A torn segment (the daemon SIGKILLed holding the write lock
        leaves the torn-write marker up): shm.clear, the documented way
        back, on the next turn."""
        self.reg.n["shm torn by a daemon SIGKILL (cleared)"] += 1
        self.reg.note("shm segment %s after a put lost its reply; clearing "
                      "it" % why)
        self.clear_pending = True
        self.last = None
        self.in_doubt.clear()

    def clear(self, c):
        rid = "c%d" % self.n
        c.send({"id": rid, "op": "shm.clear", "lock_timeout_ms": 500})
        o = self.reply(c, rid, "shm.clear")
        if "result" in o:
            self.clear_pending = False
            self.repairing = False
            return
        if o["error"]["code"] not in ("lock_timeout", "shutting_down"):
            self.reg.fail("%s: shm.clear answered %r" % (self.name, o))

    def error(self, o, what):
        code = o["error"]["code"]
        if code == "lock_timeout":
            self.reg.n["shm lock_timeout"] += 1
        elif code == "shutting_down":
            pass
        elif code == "shm_removed" and self.repairing:
            self.repairing = False
        elif code == "corrupt" and self.torn_possible():
            self.repair("corrupt")
        else:
            self.reg.fail("%s: %s answered %r (last blob %s, in doubt %s)" %
                          (self.name, what, o, self.last,
                           sorted(self.in_doubt)))
        return code

    def put(self, c):
        self.n += 1
        n = self.n
        req = {"id": n, "op": "shm.put", "var": 1,
               "lock_timeout_ms": self.rng.choice((0, 20, 200, 500))}
        put_payload(req, shm_blob(n), self.rng)
        self.in_doubt.add(n)
        c.send(req)
        o = self.reply(c, n, "shm.put")
        if "result" in o:
            self.last = n
            self.in_doubt.clear()
            self.repairing = False
            self.ok += 1
            return
        self.in_doubt.discard(n)
        self.error(o, "shm.put of blob %d" % n)

    def get(self, c):
        rid = "g%d" % self.n
        c.send({"id": rid, "op": "shm.get", "var": 1,
                "lock_timeout_ms": self.rng.choice((0, 20, 200, 500))})
        o = self.reply(c, rid, "shm.get")
        if "result" in o:
            self.repairing = False
            b = got_payload(o["result"])
            k = shm_blob_check(b)
            if k is None:
                self.reg.fail("%s: shm.get returned a torn or foreign blob "
                              "(%d bytes, first %r; last put %s, in doubt "
                              "%s)" % (self.name, len(b), b[:60], self.last,
                                       sorted(self.in_doubt)))
            elif k != self.last and k not in self.in_doubt:
                self.reg.fail("%s: shm.get returned blob %d, but the last "
                              "put was %s (in doubt %s)" % (
                                  self.name, k, self.last,
                                  sorted(self.in_doubt)))
            self.last = k
            self.in_doubt.clear()
            self.ok += 1
            return
        code = o["error"]["code"]
        if code == "not_found":
            if self.last is not None and not self.torn_possible():
                self.reg.fail("%s: shm.get answered not_found, but blob %d "
                              "was stored" % (self.name, self.last))
            elif self.last is not None:
                self.reg.n["shm torn by a daemon SIGKILL (var gone)"] += 1
            self.last = None
            self.in_doubt.clear()
            self.repairing = False
            return
        self.error(o, "shm.get")


# ---------------------------------------------------------------------------
# The nemesis.

KINDS = {               # weight in the schedule
    "client_kill": 30, "proc_kill": 8, "daemon_kill": 9, "term_restart": 3,
    "stop": 12, "remove": 8, "fill": 10, "holder": 12,
}
DAEMON_KINDS = ("daemon_kill", "term_restart")


def make_schedule(seed, seconds):
    """[(t, kind, params)], a pure function of the seed and the length."""
    rng = random.Random(seed)
    calm = seconds * 0.75       # no daemon kills after this: a soak
    out, t = [], 0.5
    kinds = sorted(KINDS)
    while True:
        t += rng.uniform(0.25, 0.9)
        if t > seconds - 0.8:
            break
        kind = rng.choices(kinds, [KINDS[k] for k in kinds])[0]
        out.append([t, kind])
    # every kind at least once, daemon kills before the calm
    for kind in kinds:
        if not any(k == kind for _, k in out):
            pool = [e for e in out if e[1] == "client_kill" and
                    (kind not in DAEMON_KINDS or e[0] < calm)]
            if pool:
                rng.choice(pool)[1] = kind
    for e in out:
        if e[1] in DAEMON_KINDS and e[0] >= calm:
            e[1] = "stop"
    sched = []
    for t, kind in out:
        p = {"t": t, "r": rng.random(), "u": rng.uniform(0.1, 0.6),
             "combo": rng.random(),
             "variant": rng.choice(("running", "running", "stopped",
                                    "terminating")),
             "stage": rng.random(), "target": rng.randrange(1000),
             "holder": rng.choice(("php", "php", "registered", "gate",
                                   "ctypes-holding", "sysv-holding"))}
        sched.append((t, kind, p))
    return sched, calm


class Nemesis(threading.Thread):
    def __init__(self, world, workers, children, shm, sched, calm):
        super().__init__(name="nemesis", daemon=True)
        self.w = world
        self.reg = world.reg
        self.workers = workers
        self.children = children
        self.shm = shm
        self.sched = sched
        self.calm = calm
        self.php = find_php()
        self.done = collections.Counter()
        self.rss_calm = None        # the daemon's RSS when the soak began
        self.filler = 0
        self.calm_pid = None

    def run(self):
        try:
            for t, kind, p in self.sched:
                if not self.sleep_until(t):
                    return
                if self.rss_calm is None and t >= self.calm + 1:
                    self.calm_pid = self.w.pid()
                    self.rss_calm = rss_kb(self.calm_pid)
                getattr(self, "do_" + kind)(p)
                self.done[kind] += 1
        except Exception:
            self.reg.fail("nemesis crashed:\n" + traceback.format_exc())
            # leave nothing stopped or paused behind
            if self.w.d.proc is not None:
                self.w.d.proc.send_signal(signal.SIGCONT)
            self.w.pause_req = False
        finally:
            self.sleep_until(SECONDS)

    def sleep_until(self, t):
        while elapsed() < t:
            if self.w.stop.is_set():
                return False
            self.check_alive()
            time.sleep(min(0.05, max(0.0, t - elapsed())))
        return not self.w.stop.is_set()

    def check_alive(self):
        p = self.w.d.proc
        if p is not None and p.poll() is not None:
            self.reg.fail("the daemon (pid %d) died on its own: exit %s" %
                          (p.pid, p.returncode))
            self.w.reap()
            self.w.start_daemon()

    # -- clients --------------------------------------------------------
    def do_client_kill(self, p):
        w = self.workers[p["target"] % len(self.workers)]
        stage = w.stages[int(p["stage"] * len(w.stages))]
        w.kill_stage = stage
        self.w.mark("%s will be killed at stage %s" % (w.name, stage))

    def do_proc_kill(self, p):
        ch = self.children[p["target"] % len(self.children)]
        if ch.kill():
            self.w.mark("SIGKILL %s process" % ch.role)
            self.reg.n["client process SIGKILLed"] += 1

    # -- the daemon -----------------------------------------------------
    def do_daemon_kill(self, p):
        self.kill_daemon(p["variant"], p["u"])
        time.sleep(p["r"] * 0.3)
        self.w.start_daemon()

    def kill_daemon(self, variant, u=0.2):
        """SIGKILL the daemon (running, stopped, or in its shutdown drain)
        and reap it; the caller starts it again."""
        proc = self.w.d.proc
        self.w.mark("SIGKILL daemon pid %d (%s)" % (proc.pid, variant))
        self.w.killed.add(proc.pid)
        if variant == "stopped":
            proc.send_signal(signal.SIGSTOP)
            wait_stopped(proc.pid)
            time.sleep(u / 4)
        elif variant == "terminating":
            proc.send_signal(signal.SIGTERM)
            time.sleep(u / 10)
        proc.send_signal(signal.SIGKILL)
        self.w.reap()
        self.reg.n["daemon SIGKILLed (%s)" % variant] += 1
        # what it held, and the journal's window: a message taken off the
        # queue and not recorded yet
        scan = journal_scan(os.path.join(self.w.d.server["state_dir"],
                                         "journal"))
        if scan is None:
            self.w.journal_known = False
            return
        self.w.held[proc.pid] = [mid_of(b) for b in scan["held"]]
        for b in scan["receiving"]:
            self.w.mid_receive.add(mid_of(b))
            self.w.mark("pid %d was killed mid-receive of %s" % (
                proc.pid, mid_of(b)))

    def do_term_restart(self, p):
        proc = self.w.d.proc
        self.w.mark("SIGTERM daemon pid %d (clean restart)" % proc.pid)
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(20)
        except subprocess.TimeoutExpired:
            self.reg.fail("the daemon did not exit within 20s of SIGTERM")
            proc.kill()
            rc = proc.wait()
        if rc != 0:
            self.reg.fail("the daemon exited %s on SIGTERM" % rc)
        self.w.reap()
        self.w.start_daemon()

    def do_stop(self, p):
        proc = self.w.d.proc
        self.w.mark("SIGSTOP daemon pid %d for %.0f ms" % (proc.pid,
                                                          p["u"] * 1000))
        proc.send_signal(signal.SIGSTOP)
        wait_stopped(proc.pid)
        time.sleep(p["u"])
        proc.send_signal(signal.SIGCONT)

    # -- the queue ------------------------------------------------------
    def pause_producers(self):
        self.w.pause_req = True
        prod = [w for w in self.workers if isinstance(
            w, (SocketProducer, DirectProducer))]
        child = [c for c in self.children if c.role == "producer"]
        deadline = time.monotonic() + 15
        for x in prod + child:
            while not x.idle.is_set() and time.monotonic() < deadline:
                if x in child:
                    x.kill()
                time.sleep(0.002)
            if not x.idle.is_set():
                self.reg.fail("%s did not pause within 15s" % x.name)

    def drain_all(self, who):
        """Take every message off the queue (nobody else may write)."""
        mq = self.w.open_queue()
        n = 0
        while True:
            try:
                data, typ = mq.receive(block=False)
            except sysv_ipc.BusyError:
                return mq, n
            self.reg.received(who, typ, data)
            n += 1

    def do_remove(self, p):
        """Remove the queue, losing nothing acknowledged: producers pause
        and the daemon is stopped (or dead), so nothing writes while the
        queue is drained dry and removed. Sometimes the queue is full
        first, so put-backs are pending when it goes; sometimes the daemon
        is dead, and its next start creates the queue and restores into
        it."""
        # a queue removed by the last action exists again only once the
        # daemon has noticed: make it notice, or there is nothing to drain
        self.w.call({"op": "queue.stat"})
        if p["combo"] < 0.35:
            self.fill_queue(p["u"] / 2)
        dead = p["combo"] > 0.8 and p["t"] < self.calm
        self.pause_producers()
        proc = self.w.d.proc
        if dead:
            self.kill_daemon("running")
        else:
            proc.send_signal(signal.SIGSTOP)
            wait_stopped(proc.pid)
        mq, n = self.drain_all("nemesis-drain")
        mq.remove()
        self.w.mark("queue removed (%d messages drained first; daemon %s)"
                    % (n, "dead" if dead else "stopped"))
        if dead:
            self.w.start_daemon()
        else:
            proc.send_signal(signal.SIGCONT)
        self.w.pause_req = False
        if p["r"] < 0.5:    # else a client's request re-creates it
            self.w.call({"op": "queue.stat"})

    def fill_queue(self, hold):
        """Fill the queue to max_bytes with filler (a type nobody reads)
        and keep it full for hold seconds, so sends wait or fail and the
        daemon's put-backs wait for room."""
        mq = self.w.open_queue()
        self.top_up(mq)
        self.w.mark("queue filled with type %d" % FILLER_TYPE)
        end = time.monotonic() + hold
        while time.monotonic() < end:
            time.sleep(0.02)
            self.top_up(mq)
        q = self.w.call({"op": "queue.stat"}).get("result") or {}
        k = "put-backs pending on a full queue (most seen)"
        self.reg.n[k] = max(self.reg.n[k], q.get("put_backs_pending", 0))

    def top_up(self, mq):
        for size in (2000, 500, 60, 0):
            while True:
                self.filler += 1
                mid = "F.%d.%d" % (self.filler, size)
                typ, payload = message(mid)
                self.reg.attempt(mid)
                try:
                    mq.send(payload, block=False, type=typ)
                except sysv_ipc.BusyError:
                    self.reg.failed(mid, "filler: full")
                    break
                self.reg.acked(mid)

    def drain_filler(self):
        mq = self.w.open_queue()
        n = 0
        while True:
            try:
                data, typ = mq.receive(block=False, type=FILLER_TYPE)
            except sysv_ipc.BusyError:
                break
            self.reg.received("nemesis-filler", typ, data)
            n += 1
        self.w.mark("filler drained (%d)" % n)

    def do_fill(self, p):
        """Fill the queue; sometimes SIGKILL the daemon (once or twice)
        while put-backs wait for room, so that its next start restores
        them into a full queue."""
        self.fill_queue(p["u"] * 0.75)
        if p["combo"] < 0.35 and p["t"] < self.calm:
            self.kill_daemon("running")
            self.w.start_daemon()
            if p["combo"] < 0.12:
                self.kill_daemon("running")
                self.w.start_daemon()
            self.fill_queue(p["u"] * 0.75)
        self.drain_filler()

    # -- the lock -------------------------------------------------------
    def do_holder(self, p):
        kind = p["holder"]
        if kind == "php" and self.php is None:
            kind = "ctypes-holding"
        semkey = self.w.shmkey
        if kind == "php":
            argv = [self.php, "-r", PHP_HOLDER, "--", str(semkey),
                    str(self.w.shmkey)]
        else:
            argv = [sys.executable, os.path.abspath(__file__), "--holder",
                    kind, str(semkey), str(self.w.shmkey)]
        h = subprocess.Popen(argv, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        try:
            r, _, _ = select.select([h.stdout], [], [], 15)
            line = h.stdout.readline().decode().strip() if r else ""
            if not line.startswith("ready"):
                h.kill()
                h.wait()
                self.reg.fail("lock holder %s did not get there: %r %s" % (
                    kind, line, h.stderr.read().decode(errors="replace")))
                return
            holding = kind in ("php", "ctypes-holding", "sysv-holding")
            registered = kind != "sysv-holding"
            self.w.mark("lock holder %s pid %d ready (%s)" % (
                kind, h.pid, line[:40] + ("..." if len(line) > 40 else "")))
            if "var=" in line:
                self.check_var(kind, line.split("var=", 1)[1])
            st = self.w.call({"op": "shm.stat"})["result"]
            want = (0 if holding else 1, 2 if registered else 1)
            if (st["lock"], st["sem_users"]) != want:
                self.reg.fail("with a %s holder, shm.stat says lock %s, "
                              "sem_users %s; expected %s" % (
                                  kind, st["lock"], st["sem_users"], want))
            r = self.w.call({"op": "shm.get", "var": 1,
                             "lock_timeout_ms": 0})
            busy = r.get("error", {}).get("code") == "lock_timeout"
            if busy != holding:
                self.reg.fail("with a %s holder, shm.get with "
                              "lock_timeout_ms 0 answered %r" % (kind, r))
            time.sleep(p["u"])
        finally:
            if h.poll() is None:
                h.kill()
            h.wait()
            h.stdout.close()
            h.stderr.close()
        self.w.mark("lock holder %s SIGKILLed" % kind)
        self.reg.n["lock holder SIGKILLed (%s)" % kind] += 1
        # not wedged: the lock is free again and requests get it
        t0 = time.monotonic()
        r = self.w.call({"op": "shm.get", "var": 1, "lock_timeout_ms": 3000})
        if r.get("error", {}).get("code") == "lock_timeout":
            self.reg.fail("after the %s holder was killed the lock stayed "
                          "busy for 3s (%r)" % (kind, r))
        st = self.w.call({"op": "shm.stat"})["result"]
        if (st["lock"], st["sem_users"]) != (1, 1):
            self.reg.fail("after the %s holder was killed, shm.stat says "
                          "lock %s, sem_users %s; expected 1, 1" % (
                              kind, st["lock"], st["sem_users"]))
        self.reg.n["lock free again (ms, max)"] = max(
            self.reg.n["lock free again (ms, max)"],
            int((time.monotonic() - t0) * 1000))

    def check_var(self, kind, v):
        """What a holder read under the lock: nothing, or an intact blob."""
        if v == "none":
            return
        if v.startswith("corrupt:"):
            if not self.shm.torn_possible():
                self.reg.fail("the %s holder found the segment corrupt "
                              "(%s) without a torn write" % (kind, v))
            return
        b = b"" if v == "notstring" else base64.b64decode(v)
        if shm_blob_check(b) is None:
            self.reg.fail("the %s holder read a torn blob under the lock "
                          "(%d bytes, first %r)" % (kind, len(b), b[:60]))


# ---------------------------------------------------------------------------
# The end: drain, stop, account.

LOG_REDELIVERY = re.compile(r"redelivery: put back unacked tag (\d+) "
                            r"\(type (\d+), (\d+) bytes\)")
LOG_RESTORE = re.compile(r"journal: restoring a type (\d+) message of "
                         r"(\d+) bytes")
LOG_START = re.compile(r"^ipcbridge: journal \S+: \d+ slots of")


def read_log(path):
    """Per daemon process (in start order): redeliveries, restores, ..."""
    gens = []
    with open(path, errors="replace") as f:
        for line in f:
            if LOG_START.match(line):
                gens.append({"redeliveries": [], "restores": [],
                             "mid_receive": 0, "suppressed": 0,
                             "lost": [], "stuck": 0, "bad": []})
            if not gens:
                continue
            g = gens[-1]
            m = LOG_REDELIVERY.search(line)
            if m:
                g["redeliveries"].append(tuple(int(x) for x in m.groups()))
            m = LOG_RESTORE.search(line)
            if m:
                g["restores"].append((int(m.group(1)), int(m.group(2))))
            if "killed while receiving it" in line:
                g["mid_receive"] += 1       # a LOST line, but stated
                continue
            m = re.search(r"\((\d+) similar warnings suppressed\)", line)
            if m:
                g["suppressed"] += int(m.group(1))
            if "LOST" in line:
                g["lost"].append(line.strip())
            if "it stays in the journal for the next start" in line:
                g["stuck"] += 1
            if re.search(r"AddressSanitizer|LeakSanitizer|runtime error:|"
                         r"ipcbridge: error:", line):
                g["bad"].append(line.strip())
    return gens


def check_restores(w, reg):
    """Every message a SIGKILLed daemon held in its journal is put back by
    the next start (stats counts exactly those) and received again."""
    gen_of = {pid: i for i, pid in enumerate(w.pids)}

    def gen_at(t):
        return max([i for i, s in enumerate(w.spawns) if s <= t] or [0])
    later = collections.defaultdict(int)    # mid -> latest gen received
    for m, rs in reg.receipts.items():
        for r in rs:
            g = gen_of[r[1]] if r[2] is not None else gen_at(r[3])
            later[m] = max(later[m], g)
    for pid, held in w.held.items():
        i = gen_of[pid]
        nxt = w.pids[i + 1] if i + 1 < len(w.pids) else None
        if nxt is not None and w.restored.get(nxt) != len(held):
            reg.fail("daemon pid %d was SIGKILLed holding %d message(s) in "
                     "its journal; pid %d restored %s" % (
                         pid, len(held), nxt, w.restored.get(nxt)))
        gone = sorted(m for m in held if later.get(m, -1) <= i)
        if gone:
            reg.fail("%d message(s) held in the journal of SIGKILLed pid %d "
                     "never came back: %s" % (len(gone), pid, gone[:10]))


def consumed_twice(w, reg, gens, unlogged_restores):
    """A message consumed for good (its ack answered, or msgrcv) exists no
    more, so a second consumption needs a second copy: one that a restore
    put back in that daemon process or an earlier one, or the one message
    per SIGKILLed process that the journal's window ("a crash between a
    put-back and the slot being freed") gives back at the next start.
    Consumptions are placed by daemon process, not by time (a client may
    read a delivery after the daemon already put it back): exactly for
    socket deliveries (the daemon's pid), by spawn time for msgrcv."""
    gen_of = {pid: i for i, pid in enumerate(w.pids)}
    restores = [collections.Counter(g["restores"]) for g in gens]
    wild = [unlogged_restores and len(g["restores"]) >= 10 for g in gens]
    used = set()
    bad = []

    def gen_at(t):
        return max([i for i, s in enumerate(w.spawns) if s <= t] or [0])

    for m, rs in reg.receipts.items():
        final = sorted(gen_of[r[1]] if r[2] is not None else gen_at(r[3])
                       for r in rs if reg.consumed(r) == 1)
        if len(final) < 2:
            continue
        typ, payload = message(m)
        key = (typ, len(payload))
        g1 = final[0]
        copies = sum(restores[h][key] + (99 if wild[h] else 0)
                     for h in range(min(g1 + 1, len(gens))))
        if (len(final) - 1 > copies and g1 + 1 <= final[-1] and
                g1 + 1 < len(gens) and (restores[g1 + 1][key] or
                                        wild[g1 + 1]) and
                w.pids[g1] in w.killed and g1 not in used):
            used.add(g1)
            copies += 1
            reg.n["consumed twice: the journal's put-back window"] += 1
        if len(final) - 1 > copies:
            bad.append("%s (type %d, %d bytes) consumed in daemon "
                       "processes %r: %r" % (m, typ, len(payload), final,
                                             rs[:4]))
    if bad:
        reg.fail("%d message(s) consumed for good more than once with no "
                 "restored copy to explain it, e.g. %s" % (
                     len(bad), "; ".join(bad[:3])))


def wait_drained(w, reg, timeout=40):
    """Queue empty, nothing unacked, nothing waiting to go back: stable."""
    deadline = time.monotonic() + timeout
    stable = 0
    st = q = None
    while time.monotonic() < deadline:
        q = w.call({"op": "queue.stat"}).get("result")
        st = w.call({"op": "stats"})["result"]
        if (q and q["messages"] == 0 and q["put_backs_pending"] == 0 and
                st["messages"]["unacked"] == 0):
            stable += 1
            if stable >= 5:
                return True
        else:
            stable = 0
        time.sleep(0.1)
    reg.fail("the queue did not drain within %ds: queue.stat %r, stats %r" %
             (timeout, q, st))
    return False


def stacks():
    """Every thread's stack, for a test that got stuck."""
    names = {t.ident: t.name for t in threading.enumerate()}
    return "\n".join("--- %s\n%s" % (names.get(k, k), "".join(
        traceback.format_stack(f))) for k, f in sys._current_frames().items())


def one_client_fds(w, timeout=10):
    """The daemon's descriptors while exactly one client is connected."""
    deadline = time.monotonic() + timeout
    while True:
        c = Conn(w.sock)
        try:
            c.send({"op": "stats"})
            st = c.obj()["result"]
            now = fds(w.pid())
        finally:
            c.close()
        if st["connections"]["current"] == 1 or time.monotonic() > deadline:
            return now
        time.sleep(0.05)


def ipc_objects():
    """{(kind, key)} of every IPC object visible here."""
    out = set()
    for flag, kind in (("-q", "queue"), ("-m", "shm"), ("-s", "sem")):
        r = subprocess.run(["ipcs", flag], capture_output=True, text=True)
        for line in r.stdout.splitlines():
            f = line.split()
            if f and f[0].startswith("0x"):
                out.add((kind, int(f[0], 16), f[1]))
    return out


def reexec_in_namespace():
    """Run in a private IPC namespace when we may; say which."""
    if os.environ.get("IPCB_FAULT_NS"):
        return os.environ["IPCB_FAULT_NS"]
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-i", "true"],
                                  stderr=subprocess.DEVNULL).returncode == 0:
        os.environ["IPCB_FAULT_NS"] = "private"
        os.execv(unshare, [unshare, "-i", "--", sys.executable,
                           os.path.abspath(__file__)] + sys.argv[1:])
    os.environ["IPCB_FAULT_NS"] = "shared"
    return "shared"


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "--holder":
        holder_main(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return 0
    if sysv_ipc is None:
        print("SKIP: sysv_ipc is not importable (try /usr/bin/python3)")
        return 77
    ns = reexec_in_namespace()
    print("seed=%d seconds=%g ipc namespace: %s%s" % (
        SEED, SECONDS, ns, "" if ns == "private" else
        " (unshare -i not permitted: private random keys)"), flush=True)
    random.seed(SEED)           # the keys
    d = Daemon(queues={"default": {"max_bytes": str(MAX_BYTES)}},
               server={"journal_slots": str(JOURNAL_SLOTS),
                       "ack_timeout_ms": str(ACK_TIMEOUT_MS)},
               shms={"default": {"size": "64K", "lock_timeout_ms": "500"}})
    w = World(d)
    reg = w.reg
    t_start = time.monotonic()
    objects_before = ipc_objects()
    try:
        w.start_daemon()
        base_fds = one_client_fds(w)
        base_rss = rss_kb(w.pid())
        sched, calm = make_schedule(SEED, SECONDS)
        workers = [SocketProducer(w, 0), SocketProducer(w, 1),
                   SocketConsumer(w, 0), SocketConsumer(w, 1),
                   SocketConsumer(w, 2)]
        direct = [DirectProducer(w), DirectConsumer(w)]
        children = [Child(w, "producer"), Child(w, "consumer")]
        shm = ShmClient(w)
        nem = Nemesis(w, workers, children, shm, sched, calm)
        print("schedule: %d actions over %gs (%s); no daemon kills after "
              "%.1fs" % (len(sched), SECONDS, ", ".join(
                  "%s %d" % kv for kv in sorted(collections.Counter(
                      k for _, k, _ in sched).items())), calm), flush=True)
        for t in workers + direct + children + [shm, nem]:
            t.start()
        nem.join(SECONDS + 120)
        if nem.is_alive():
            raise RuntimeError("the nemesis is stuck:\n" + stacks())
        # the end: no more faults, producers stop, consumers drain
        w.mark("nemesis done; stopping producers, draining")
        w.draining = True
        w.stop.set()
        for ch in children:
            ch.kill()
        for t in workers + direct + children + [shm]:
            if isinstance(t, (SocketProducer, DirectProducer, Child,
                              ShmClient)):
                t.join(30)
                if t.is_alive():
                    reg.fail("%s did not stop within 30s" % t.name)
        wait_drained(w, reg)
        w.stop_consumers.set()
        for t in workers + direct:
            t.join(30)
            if t.is_alive():
                reg.fail("%s did not stop within 30s" % t.name)
        w.mark("all clients stopped")
        # descriptors and memory of the daemon that ran the soak
        pid = w.pid()
        now_fds = one_client_fds(w)
        if len(now_fds) != len(base_fds):
            reg.fail("the daemon has %d descriptors with one client, a "
                     "fresh one had %d:\nnow %r\nfresh %r" % (
                         len(now_fds), len(base_fds), now_fds, base_fds))
        end_rss = rss_kb(pid)
        grew = end_rss - nem.rss_calm if (nem.rss_calm and
                                          nem.calm_pid == pid) else None
        if SANITIZED:
            reg.note("the daemon is built with AddressSanitizer: its RSS is "
                     "not bounded here (LeakSanitizer checks at exit)")
        elif end_rss > 32 * 1024 or (grew is not None and grew > 2048):
            reg.fail("the daemon's RSS is %d KiB (fresh %d KiB, %s KiB "
                     "growth over the soak)" % (end_rss, base_rss, grew))
        figures = ("daemon: %d fds with one client (a fresh daemon: %d), RSS "
                   "%d KiB (fresh %d KiB, at the soak's start %s KiB)" % (
                       len(now_fds), len(base_fds), end_rss, base_rss,
                       nem.rss_calm if nem.calm_pid == pid else "n/a"))
        if shm.ok == 0:
            reg.fail("the shm client never succeeded")
        # stop; start once more for what a failed put-back left in the
        # journal; take it off the queue directly; stop again
        proc = d.proc
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(20)
        if rc != 0:
            reg.fail("the daemon exited %s on the final SIGTERM" % rc)
        w.reap()
        w.start_daemon()
        mq = w.open_queue()
        n_final = 0
        while True:
            try:
                data, typ = mq.receive(block=False)
            except sysv_ipc.BusyError:
                break
            reg.received("final-restart", typ, data)
            n_final += 1
        rc = d.stop()
        if rc != 0:
            reg.fail("the daemon exited %s on the last SIGTERM" % rc)
        w.mark("stopped; %d message(s) came back at the last start" %
               n_final)
        runtime = time.monotonic() - t_start
        # IPC objects: exactly the configured ones, then none
        left = ipc_objects() - objects_before
        if ns != "private":     # others may be creating objects too
            left = {o for o in left if o[1] in (w.qkey, w.shmkey)}
        keys = {("queue", w.qkey), ("shm", w.shmkey), ("sem", w.shmkey)}
        extra = {o for o in left if (o[0], o[1]) not in keys}
        if extra or len(left) != 3:
            reg.fail("IPC objects after the run: %r (expected only the "
                     "queue, segment and semaphore set of keys %r)" % (
                         sorted(left), sorted(keys)))
        gens = read_log(d.log)
    except Exception:
        reg.fail("the test itself failed:\n" + traceback.format_exc())
        gens, runtime, n_final = read_log(d.log), time.monotonic() - t_start, 0
        nem, figures = None, "daemon: n/a"
    finally:
        w.stop.set()
        w.stop_consumers.set()
        if d.proc is not None and d.proc.poll() is None:
            d.proc.send_signal(signal.SIGCONT)
        with open(d.log, "rb") as f:
            log_text = f.read()
        d.cleanup()
    if ns == "private":
        left = ipc_objects()
        if left:
            reg.fail("IPC objects left in the namespace: %r" % sorted(left))

    # --- accounting -------------------------------------------------------
    if len(gens) != len(w.pids):
        reg.fail("the log shows %d daemon starts, the test made %d" % (
            len(gens), len(w.pids)))
    budget = collections.Counter()
    redelivered = set()
    n_redeliveries = n_restore_lines = mid_receive = stuck = 0
    for i, g in enumerate(gens):
        pid = w.pids[i] if i < len(w.pids) else None
        for tag, typ, size in g["redeliveries"]:
            budget[(typ, size)] += 1
            redelivered.add((pid, tag))
        for typ, size in g["restores"]:
            budget[(typ, size)] += 1
        n_redeliveries += len(g["redeliveries"])
        n_restore_lines += len(g["restores"])
        mid_receive += g["mid_receive"]
        stuck += g["stuck"]
        for line in g["lost"]:
            reg.fail("the daemon logged a loss: " + line)
        for line in g["bad"]:
            reg.fail("the daemon logged: " + line)
    status, receipts = reg.status, reg.receipts
    acked = [m for m, s in status.items() if s == "acked"]
    restores = [collections.Counter(g["restores"]) for g in gens]
    unlogged = n_restore_lines < sum(w.restored.values())

    def held_at_kill(pid, mid):
        if w.journal_known:
            return mid in w.held.get(pid, ())
        # without the journal: a restore of that type and size next start
        i = w.pids.index(pid) + 1
        typ, payload = message(mid)
        return i < len(gens) and (restores[i][(typ, len(payload))] > 0 or (
            unlogged and len(gens[i]["restores"]) >= 10))
    n_settled = reg.settle_doubts(redelivered, w.killed, held_at_kill)
    if w.journal_known:
        check_restores(w, reg)
    # consumed for good: taken by msgrcv, or delivered and the ack answered
    # (a delivery nobody acked must come back, so it does not count)
    done = {m: max([reg.consumed(r) for r in rs] or [0])
            for m, rs in receipts.items()}
    lost = sorted(m for m in acked if done.get(m, 0) == 0)
    ack_in_doubt = sum(1 for m in acked if done.get(m, 0) == 0.5)
    unexpected = sorted(m for m in receipts if status.get(m) in (
        None, "failed", "partial"))
    dup_by_key = collections.Counter()
    dups = 0
    for m, rs in receipts.items():
        if len(rs) > 1:
            typ, payload = message(m)
            dup_by_key[(typ, len(payload))] += len(rs) - 1
            dups += len(rs) - 1
    n_restored = sum(w.restored.values())
    # restore lines beyond 10 per start are rate-limited: the count in
    # stats covers them, matched by nothing but the total
    wildcard = max(0, n_restored - n_restore_lines)
    excess = sum(max(0, n - budget[k]) for k, n in dup_by_key.items())
    if excess > wildcard:
        worst = sorted(((n - budget[k], k) for k, n in dup_by_key.items()
                        if n > budget[k]), reverse=True)[:10]
        reg.fail("%d duplicate(s) without a logged redelivery or restore "
                 "of that type and size (restores not logged: %d); worst "
                 "(excess, (type, bytes)): %r" % (excess, wildcard, worst))
    consumed_twice(w, reg, gens, n_restore_lines < n_restored)
    both = sorted(t for t in reg.acked_tags if t in redelivered)
    if both:
        reg.fail("%d tag(s) acked and yet redelivered, e.g. (daemon pid, "
                 "tag) %r" % (len(both), both[:10]))
    if unexpected:
        reg.fail("%d unexpected message(s) received, e.g. %s" % (
            len(unexpected), ", ".join("%s (%s: %r)" % (
                m, status.get(m, "never sent"), receipts[m][:3])
                for m in unexpected[:5])))
    # the journal's mid-receive window: only the very message a killed
    # daemon's journal showed there (or, for a journal of unknown format,
    # no more than the warnings)
    if w.journal_known:
        window = [m for m in lost if m in w.mid_receive]
        other = [m for m in lost if m not in w.mid_receive]
    else:
        window, other = lost[:mid_receive], lost[mid_receive:]
    if other:
        reg.fail("%d acknowledged message(s) lost, e.g. %s (mid-receive "
                 "window: %d warning(s), messages %s)" % (
                     len(other), ", ".join(other[:10]), mid_receive,
                     sorted(w.mid_receive)))
    if len(window) > mid_receive:
        reg.fail("%d message(s) lost mid-receive but only %d warning(s)" %
                 (len(window), mid_receive))
    n = reg.n
    kills = sum(v for k, v in n.items() if k.startswith("daemon SIGKILLed"))
    acts = nem.done if nem else collections.Counter()
    print("conservation: seed=%d, %d sent (%d acknowledged), %d received, "
          "%d duplicates (%d redeliveries logged, %d restored), %d daemon "
          "kills, %d clean restarts, %d stops, %d removals, %d fills, "
          "%d holder kills, %d client kills, %d client process kills, "
          "%.0fs, lost=%d%s" % (
              SEED, n["attempted"], n["acknowledged"], n["received"], dups,
              n_redeliveries, n_restored, kills, acts["term_restart"],
              acts["stop"], acts["remove"], acts["fill"], acts["holder"],
              sum(v for k, v in n.items() if k.startswith("client killed")),
              n["client process SIGKILLed"], runtime, len(lost),
              " (in the documented mid-receive window)" if lost else ""))
    print("details: " + "; ".join("%s %d" % kv for kv in sorted(n.items())
                                  if kv[0] not in ("attempted", "received",
                                                   "acknowledged")))
    print("windows: %d mid-receive warning(s) (%d message(s) a SIGKILL "
          "caught in a receiving journal slot), %d put-back(s) left in the "
          "journal for the next start, %d restore line(s) rate-limited, "
          "%d message(s) back at the last start, %d ack(s) whose answer "
          "was lost (applied: not redelivered, not in a killed journal), %d "
          "more to a SIGKILLed daemon (the only consumption of %d "
          "message(s))" % (mid_receive, len(w.mid_receive), stuck, wildcard,
                           n_final, n_settled,
                           len(reg.acks_sent - reg.acked_tags),
                           ack_in_doubt))
    print(figures)
    for note in reg.notes:
        print("note: " + note)
    log_copy = os.path.abspath("fault_conservation.seed%d.log" % SEED)
    if reg.failures or os.environ.get("FAULT_KEEP_LOG"):
        with open(log_copy, "wb") as f:
            f.write(log_text)
        print("daemon log kept in " + log_copy)
    if reg.failures:
        print("FAILED seed=%d: %d failure(s); daemon log kept in %s; "
              "rerun with FAULT_SEED=%d FAULT_SECONDS=%g" % (
                  SEED, len(reg.failures), log_copy, SEED, SECONDS))
        for f in reg.failures[:30]:
            print(f)
        print("nemesis timeline (last 25):")
        for m in w.marks[-25:]:
            print("  " + m)
        return 1
    print("PASS seed=%d" % SEED)
    return 0


if __name__ == "__main__":
    sys.exit(main())
