"""Every command session in README.md, run for real.

The README's `$ command` lines (with their `\\` continuations) are run in
order against a daemon on a private socket with private keys (the README's
socket path and keys are rewritten to those), and each JSON line the
README shows after a command must match the real output's shape: the same
keys at every level, values of the same JSON type, and the same strings
and numbers except where they are ids, pids, times or figures that vary.
So the README can never rot unnoticed.
"""
import json
import os
import re
import signal
import subprocess
import unittest

import ipcb_test
from ipcb_test import Daemon

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.path.dirname(HERE)
README = os.path.join(SRCDIR, "README.md")
README_SOCKET = "/run/ipcbridge.sock"
README_QUEUE_KEY = "0x69706201"
README_SHM_KEY = "0x69706202"
# values that differ from run to run: compared by type only
VARYING = {"pid", "uid", "gid", "msqid", "shmid", "semid", "time",
           "uptime_ms", "ts_ms", "version", "changed", "creator_pid",
           "last_pid", "polls", "in", "out", "current", "total",
           "requests", "max_msg_bytes", "key", "sem_key", "key_spec",
           "sent", "received", "free", "used", "nattch", "consumer",
           "tag", "sem_users", "lock", "errors", "size", "bytes_in",
           "bytes_out", "waiters", "put_back", "messages"}


def sessions(text):
    """[(command, [expected output lines])] from indented $ blocks."""
    out, cmd, expect = [], None, []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^    \$ (.*)$", line)
        if m:
            if cmd is not None:
                out.append((cmd, expect))
            cmd, expect = m.group(1), []
            while cmd.endswith("\\") and i + 1 < len(lines):
                i += 1
                cmd = cmd[:-1] + " " + lines[i].strip()
        elif cmd is not None and line.startswith("    ") and line.strip():
            expect.append(line[4:])
        elif cmd is not None and not line.strip():
            out.append((cmd, expect))
            cmd, expect = None, []
        i += 1
    if cmd is not None:
        out.append((cmd, expect))
    return out


def same_shape(want, got, key=None):
    if isinstance(want, dict):
        return isinstance(got, dict) and set(want) == set(got) and all(
            same_shape(want[k], got[k], k) for k in want)
    if isinstance(want, list):
        return isinstance(got, list) and (key in VARYING or (
            len(want) == len(got) and
            all(same_shape(w, g, key) for w, g in zip(want, got))))
    if type(want) is not type(got) and not (
            isinstance(want, (int, float)) and isinstance(got, (int, float))
            and not isinstance(want, bool) and not isinstance(got, bool)):
        return False
    return key in VARYING or want == got


class ReadmeTour(unittest.TestCase):
    def test_every_session_runs_as_shown(self):
        with open(README) as f:
            text = f.read()
        runs = [(c, e) for c, e in sessions(text)
                if not c.startswith("./src/ipcbridge")]
        self.assertGreater(len(runs), 3, "no sessions found in README.md")
        d = Daemon()
        self.addCleanup(d.cleanup)
        d.start()
        subst = {README_SOCKET: d.sock,
                 README_QUEUE_KEY: "0x%08x" % d.key(),
                 README_SHM_KEY: "0x%08x" % d.shm_key()}
        checked = 0
        background = []
        self.addCleanup(self.stop_all, background)
        for cmd, expect in runs:
            interactive = re.search(r"^socat\b", cmd) is not None
            if interactive:
                continue   # a human types into it; shown for reading
            for a, b in subst.items():
                cmd = cmd.replace(a, b)
            env = dict(os.environ, IPCBRIDGE_SOCKET=d.sock,
                       IPCBRIDGE_KEY="0x%08x" % d.key())
            if cmd.rstrip().endswith("&"):   # a worker the tour starts
                background.append(subprocess.Popen(
                    ["bash", "-c", cmd.rstrip()[:-1]], cwd=SRCDIR, env=env,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    start_new_session=True))
                continue
            p = subprocess.Popen(["bash", "-c", cmd], cwd=SRCDIR, env=env,
                                 stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True,
                                 start_new_session=True)
            try:
                got, _ = p.communicate(timeout=30)
            finally:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            want_json = []
            for line in expect:
                for a, b in subst.items():
                    line = line.replace(a, b)
                try:
                    want_json.append(json.loads(line))
                except ValueError:
                    pass
            got_json = []
            for line in got.splitlines():
                try:
                    got_json.append(json.loads(line))
                except ValueError:
                    pass
            self.assertEqual(len(want_json), len(got_json),
                             "README command:\n%s\nshows %d JSON lines, "
                             "got:\n%s" % (cmd, len(want_json), got))
            for w, g in zip(want_json, got_json):
                self.assertTrue(same_shape(w, g),
                                "README command:\n%s\nshows\n%s\ngot\n%s"
                                % (cmd, json.dumps(w), json.dumps(g)))
                checked += 1
        self.assertGreater(checked, 3)

    def test_every_config_block_is_accepted(self):
        """Each ```ini block of the README passes ipcbridge -t (the ftok
        file it names is swapped for one that exists here)."""
        with open(README) as f:
            blocks = re.findall(r"```ini\n(.*?)```", f.read(), re.S)
        self.assertGreater(len(blocks), 0)
        d = Daemon()
        self.addCleanup(d.cleanup)
        for text in blocks:
            conf = os.path.join(d.dir, "readme.conf")
            with open(conf, "w") as f:
                f.write(text.replace("/etc/ipcbridge.conf", conf))
            r = subprocess.run([ipcb_test.DAEMON, "-t", "-c", conf],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr + "\n" + text)
            self.assertIn("configuration OK", r.stdout)

    @staticmethod
    def stop_all(procs):
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()


if __name__ == "__main__":
    ipcb_test.main()
