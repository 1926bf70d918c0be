"""Shared helpers for ipcbridge's end-to-end tests.

Start the real daemon on a socket in a private temp dir with private IPC
keys, talk to it over the socket the way clients do, and remove every IPC
object the test created afterwards (the daemon never removes queues: they
belong to the workers too).
"""
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

# IPCBRIDGE_VALGRIND=1 runs every daemon a test starts under valgrind; a
# memory error or a definite leak fails the test at cleanup.
VALGRIND = os.environ.get("IPCBRIDGE_VALGRIND") == "1"
DAEMON = os.environ.get("IPCBRIDGE", os.path.join(
    os.path.dirname(__file__), "..", "src", "ipcbridge"))


SYSV_PY = "/usr/bin/python3"


def import_sysv_ipc(main):
    """The sysv_ipc module, or None. Debian's is visible to /usr/bin/python3
    only: a test script (main) run by another python3 re-executes itself
    under it, once."""
    try:
        import sysv_ipc
        return sysv_ipc
    except ImportError:     # pragma: no cover - depends on the machine
        if (main and os.access(SYSV_PY, os.X_OK) and
                os.path.realpath(sys.executable) !=
                os.path.realpath(SYSV_PY) and
                not os.environ.get("IPCB_SYSV_REEXEC")):
            os.environ["IPCB_SYSV_REEXEC"] = "1"
            os.execv(SYSV_PY, [SYSV_PY] + sys.argv)
        return None


def _sanitized(path):
    try:
        with open(path, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


# A daemon built with AddressSanitizer: its RSS (quarantine, shadow
# memory) is no measure of ours; LeakSanitizer checks leaks at its exit.
SANITIZED = _sanitized(DAEMON)


def private_key():
    """A random key in a range nothing else on the machine uses."""
    return 0x7E000000 | random.randrange(1, 0xFFFFFF)


def ipcrm_queue(key):
    subprocess.run(["ipcrm", "-Q", "0x%08x" % key], stderr=subprocess.DEVNULL)


def ipcrm_shm(key, sem_key=None):
    """Remove a segment and its guard semaphore (same key unless given)."""
    subprocess.run(["ipcrm", "-M", "0x%08x" % key], stderr=subprocess.DEVNULL)
    subprocess.run(["ipcrm", "-S", "0x%08x" % (key if sem_key is None
                                                else sem_key)],
                   stderr=subprocess.DEVNULL)


class Client:
    """One connection: send JSON objects or raw bytes, read reply lines."""

    def __init__(self, path, timeout=10.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise
        self.buf = b""

    def send(self, obj):
        self.sock.sendall(json.dumps(obj).encode() + b"\n")

    def send_raw(self, data):
        self.sock.sendall(data)

    def line(self):
        """The next line from the server (bytes, without the newline)."""
        while b"\n" not in self.buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("server closed the connection; pending %r"
                               % self.buf[:200])
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def reply(self):
        return json.loads(self.line())

    def call(self, obj):
        self.send(obj)
        return self.reply()

    def closed(self, timeout=5.0):
        """True when the server closes the connection within timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True

    def shutdown_write(self):
        self.sock.shutdown(socket.SHUT_WR)

    def close(self):
        self.sock.close()


class Daemon:
    """The real ipcbridge on a private socket with private queue keys."""

    def __init__(self, queues=None, server=None, extra="", shms=None):
        self.dir = tempfile.mkdtemp(prefix="ipcb-test-")
        self.sock = os.path.join(self.dir, "ipcbridge.sock")
        self.conf = os.path.join(self.dir, "ipcbridge.conf")
        self.queues = queues or {"default": {}}
        for q in self.queues.values():
            q.setdefault("key", private_key())
        # Without any [shm NAME] section the daemon would create the
        # machine-wide default segment (0x69706202): always give a private
        # one, unless the caller's extra text defines segments itself.
        if shms is None:
            shms = {} if "[shm " in extra else {"default": {"size": "64K"}}
        self.shms = shms
        for m in self.shms.values():
            m.setdefault("key", private_key())
        self.server = dict(server or {})
        self.server.setdefault("state_dir", os.path.join(self.dir, "state"))
        self.extra = extra
        self.proc = None
        self.log = os.path.join(self.dir, "daemon.log")
        self.write_config()

    def key(self, name="default"):
        return self.queues[name]["key"]

    def shm_key(self, name="default"):
        return self.shms[name]["key"]

    def write_config(self):
        def value(k, v):
            return ("0x%08x" % v) if k in ("key", "sem_key") and \
                isinstance(v, int) else v
        lines = ["[server]", "socket = " + self.sock]
        lines += ["%s = %s" % kv for kv in self.server.items()]
        for name, q in self.queues.items():
            lines.append("[queue %s]" % name)
            for k, v in q.items():
                lines.append("%s = %s" % (k, value(k, v)))
        for name, m in self.shms.items():
            lines.append("[shm %s]" % name)
            for k, v in m.items():
                lines.append("%s = %s" % (k, value(k, v)))
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n" + self.extra)

    def start(self, args=(), binary=None, env=None, probe=True):
        """Start (again, after stop or a kill) on the same config and
        state_dir; binary and env (added to ours) for a test build.
        probe=False waits for the "ready on" log line instead of
        connecting, for tests that count the daemon's socket calls."""
        self.logf = open(self.log, "ab")
        cmd = [binary or DAEMON, "-c", self.conf, "-v"] + list(args)
        if VALGRIND:
            cmd = ["valgrind", "--quiet", "--error-exitcode=99",
                   "--leak-check=full", "--errors-for-leak-kinds=definite",
                   "--track-fds=yes",
                   "--log-file=" + os.path.join(self.dir, "valgrind.log")
                   ] + cmd
        self.proc = subprocess.Popen(cmd, stderr=self.logf,
                                     stdout=self.logf,
                                     env=dict(os.environ, **(env or {})))
        deadline = time.time() + (60 if VALGRIND else 10)
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("daemon exited %d:\n%s" %
                                   (self.proc.returncode, self.read_log()))
            if not probe:
                if " ready on " in self.read_log().rsplit(
                        "--- restart ---", 1)[-1]:
                    return self
                time.sleep(0.02)
                continue
            try:
                Client(self.sock, timeout=1).close()
                return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("daemon did not start:\n" + self.read_log())

    def read_log(self):
        with open(self.log, "rb") as f:
            return f.read().decode(errors="replace")

    def client(self):
        return Client(self.sock)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self):
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()
        rc = self.proc.returncode
        self.proc = None
        return rc

    def cleanup(self):
        rc = self.stop()
        if VALGRIND and rc is not None and rc >= 0:
            with open(os.path.join(self.dir, "valgrind.log")) as f:
                report = f.read()
            # --track-fds: after a clean exit (status 0; a refused
            # start-up just exits) only valgrind's own log is open
            fds = [b for b in report.split("Open file descriptor")[1:]
                   if "<inherited from parent>" not in b] if rc == 0 \
                else []
            if rc == 99 or fds:
                subprocess.run(["rm", "-rf", self.dir])
                raise AssertionError("valgrind found errors%s:\n%s" % (
                    " (descriptors left open)" if fds else "", report))
        for q in self.queues.values():
            if isinstance(q.get("key"), int):
                ipcrm_queue(q["key"])
        for m in self.shms.values():
            if isinstance(m.get("key"), int):
                ipcrm_shm(m["key"])
            if isinstance(m.get("sem_key"), int):
                subprocess.run(["ipcrm", "-S", "0x%08x" % m["sem_key"]],
                               stderr=subprocess.DEVNULL)
        subprocess.run(["rm", "-rf", self.dir])


def wait_for(pred, timeout=10.0, interval=0.01):
    """Poll a condition (state, not time); fail the test if it never holds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError("condition not reached within %.1fs" % timeout)


class DaemonTest(unittest.TestCase):
    """A test case with a fresh daemon (self.d) and a client (self.c)."""
    queues = None
    server = None

    def setUp(self):
        import copy
        self.d = Daemon(copy.deepcopy(self.queues), self.server)
        self.addCleanup(self.d.cleanup)
        self.d.start()
        self.c = self.d.client()
        self.addCleanup(self.c.close)

    def ok(self, req, client=None):
        r = (client or self.c).call(req)
        self.assertIn("result", r, r)
        return r["result"]

    def err(self, req, code, client=None):
        r = (client or self.c).call(req)
        self.assertIn("error", r, r)
        self.assertEqual(r["error"]["code"], code, r)
        return r["error"]

    def waiters(self, queue="default"):
        return self.ok({"op": "queue.stat", "queue": queue},
                       client=self.side())["waiters"]

    def side(self):
        if not hasattr(self, "_side"):
            self._side = self.d.client()
            self.addCleanup(self._side.close)
        return self._side


def main():
    unittest.main(verbosity=2)
