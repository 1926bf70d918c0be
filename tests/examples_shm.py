"""The shared-memory worker examples (examples/shm_worker.php and
examples/shm_worker.py) doing their request/reply round trip through the
daemon: a socket client stores variable 1, the worker takes it under the
lock and answers in variable 2."""
import os
import shutil
import subprocess
import sys
import unittest

import ipcb_test
from ipcb_test import DaemonTest, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(os.path.dirname(HERE), "examples")
PHP = os.environ.get("PHP") or shutil.which("php")
PY = "/usr/bin/python3"


def has_sysv_ipc():
    return subprocess.run([PY, "-c", "import sysv_ipc"],
                          capture_output=True).returncode == 0


class ShmWorkerTest(DaemonTest):
    shms = None

    def round_trip(self, argv):
        key = "0x%08x" % self.d.shm_key()
        w = subprocess.Popen(argv + [key, "2"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)

        def stop():
            if w.poll() is None:
                w.kill()
            w.communicate()
        self.addCleanup(stop)
        for text in ("hello", "w\u00f6rld"):
            self.ok({"op": "shm.put", "var": 1, "text": text})
            wait_for(lambda: not self.ok({"op": "shm.has", "var": 1})
                     ["exists"], timeout=10)
            r = self.ok({"op": "shm.get", "var": 2})
            self.assertEqual(r["text"], "done: " + text)
        _, err = w.communicate(timeout=10)
        self.assertEqual(w.returncode, 0, err)

    @unittest.skipUnless(PHP, "php not installed")
    def test_php_shm_worker(self):
        self.round_trip([PHP, os.path.join(EXAMPLES, "shm_worker.php")])

    @unittest.skipUnless(os.path.exists(PY) and has_sysv_ipc(),
                         "sysv_ipc not installed")
    def test_python_shm_worker(self):
        self.round_trip([PY, os.path.join(EXAMPLES, "shm_worker.py")])


if __name__ == "__main__":
    ipcb_test.main()
