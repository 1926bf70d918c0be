#!/usr/bin/python3
"""End-to-end tests of ipcbridge as a daemon: systemd readiness and socket
activation, the pid file, logging, the start-up line, the command line and
the installed layout.

Every daemon runs on a socket in a private temp dir with private IPC keys
(queues, segments and their semaphores), all removed afterwards.
"""
import ctypes
import glob
import os
import random
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import unittest

from ipcb_test import (DAEMON, Client, Daemon, ipcrm_queue, ipcrm_shm,
                       private_key, wait_for)

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
BUILDDIR = os.environ.get("IPCBRIDGE_BUILDDIR",
                          os.path.dirname(TESTS_DIR))
# Environment variables that change how the daemon starts or logs: every
# test starts from an environment without them and sets what it tests.
SYSTEMD_ENV = ("NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES",
               "JOURNAL_STREAM", "INVOCATION_ID")


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in SYSTEMD_ENV}
    env.update(extra)
    return env


def package_version():
    """PACKAGE_VERSION from the build's config.h (or configure.ac)."""
    for d in (BUILDDIR, os.path.dirname(TESTS_DIR)):
        try:
            with open(os.path.join(d, "config.h")) as f:
                m = re.search(r'#define PACKAGE_VERSION "([^"]*)"', f.read())
            if m:
                return m.group(1)
        except OSError:
            pass
    try:
        with open(os.path.join(os.path.dirname(TESTS_DIR),
                               "configure.ac")) as f:
            m = re.search(r"AC_INIT\(\[?[^],]*\]?,\s*\[?([^],)]+)", f.read())
        if m:
            return m.group(1).strip()
    except OSError:
        pass
    return None


def run(args, **kw):
    kw.setdefault("env", clean_env())
    return subprocess.run(args, capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL, **kw)


def sysvipc(kind):
    """{key: id} of the live objects of /proc/sysvipc/{msg,shm,sem}."""
    out = {}
    with open("/proc/sysvipc/" + kind) as f:
        next(f)
        for line in f:
            cols = line.split()
            out[int(cols[0]) & 0xFFFFFFFF] = int(cols[1])
    return out


def ftok(path, proj):
    """glibc's ftok(3)."""
    st = os.stat(path)
    return ((ord(proj) & 0xFF) << 24 | (st.st_dev & 0xFF) << 16 |
            (st.st_ino & 0xFFFF))


_subreaper = None


def become_subreaper():
    """Adopt orphans (a -d daemon), so that we can reap them ourselves."""
    global _subreaper
    if _subreaper is None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            _subreaper = libc.prctl(36, 1, 0, 0, 0) == 0  # SET_CHILD_SUBREAPER
        except (OSError, AttributeError):
            _subreaper = False
    return _subreaper


def is_ipcbridge(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return b"ipcbridge" in f.read()
    except OSError:
        return False


def wait_exit(pid, timeout=10.0):
    """Wait for a process that is not our Popen child to exit: its exit
    code when we could reap it (subreaper), else None once it is gone or a
    zombie."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            got, status = os.waitpid(pid, os.WNOHANG)
            if got == pid:
                return os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            try:
                with open("/proc/%d/stat" % pid) as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                        return None
            except OSError:
                return None
        time.sleep(0.01)
    raise AssertionError("pid %d did not exit within %.0fs" % (pid, timeout))


def kill_detached(pid):
    """Cleanup for a daemon that detached: stop it if it still runs."""
    if pid and is_ipcbridge(pid):
        try:
            os.kill(pid, signal.SIGTERM)
            wait_exit(pid, 10)
        except (ProcessLookupError, AssertionError):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                wait_exit(pid, 5)
            except AssertionError:
                pass


def reap_detached(exclude=(), timeout=10.0):
    """As subreaper: wait for a detached ipcbridge that gave up (a zombie
    child of ours whose pid we never learnt) and reap it; its exit code,
    or None when we are no subreaper."""
    if not become_subreaper():
        return None

    def zombie():
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) in exclude:
                continue
            try:
                with open("/proc/%s/stat" % entry) as f:
                    st = f.read()
            except OSError:
                continue
            comm, rest = st[st.index("(") + 1:].rsplit(")", 1)
            state, ppid = rest.split()[:2]
            if comm == "ipcbridge" and state == "Z" and \
                    int(ppid) == os.getpid():
                return int(entry)
    pid = wait_for(zombie, timeout)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def kill_by_config(conf):
    """Cleanup for a detached daemon whose pid we never learnt: the one
    whose command line names conf (a private temp path)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if conf.encode() in argv and any(a.endswith(b"ipcbridge")
                                         for a in argv[:1]):
            kill_detached(int(entry))


def hello(path):
    c = Client(path, timeout=10)
    try:
        r = c.call({"op": "hello"})
    finally:
        c.close()
    assert r.get("result", {}).get("server") == "ipcbridge", r
    return r["result"]


class Base(unittest.TestCase):

    def daemon(self, **kw):
        d = Daemon(**kw)
        self.addCleanup(d.cleanup)
        return d

    def launch(self, d, args=(), env=None, verbose=False, argv=None):
        """Start the daemon of d (not waiting); d.stop()/cleanup end it."""
        d.logf = open(d.log, "ab")
        if argv is None:
            argv = [DAEMON, "-c", d.conf] + (["-v"] if verbose else []) + \
                list(args)
        d.proc = subprocess.Popen(argv, stdout=d.logf, stderr=d.logf,
                                  stdin=subprocess.DEVNULL,
                                  env=clean_env() if env is None else env)
        return d.proc

    def serving(self, d, path=None):
        """Wait until the daemon accepts connections on path."""
        def up():
            if d.proc.poll() is not None:
                raise AssertionError("daemon exited %d:\n%s" %
                                     (d.proc.returncode, d.read_log()))
            try:
                Client(path or d.sock, timeout=1).close()
                return True
            except OSError:
                return False
        wait_for(up)

    def stop(self, d):
        rc = d.stop()
        self.assertEqual(rc, 0, d.read_log())

    def read(self, path):
        with open(path) as f:
            return f.read()

    def log_lines(self, d):
        return d.read_log().splitlines()

    def wait_log(self, d, text):
        wait_for(lambda: text in d.read_log())


# 1. systemd readiness (Type=notify)

class NotifyTest(Base):

    def notify_socket(self, path):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(s.close)
        s.bind(path)
        s.settimeout(10)
        return s

    def message(self, s):
        try:
            data = s.recv(4096).decode()
        except socket.timeout:
            raise AssertionError("no notification within 10s")
        return dict(line.split("=", 1) for line in data.split("\n")
                    if "=" in line)

    def until_ready(self, s):
        """Notifications up to READY=1, then connect and say hello at once:
        by READY=1 the socket must already accept."""
        seen = []
        while True:
            m = self.message(s)
            seen.append(m)
            self.assertNotIn("STOPPING", m, seen)
            if m.get("READY") == "1":
                hello(self.d.sock)
                return m

    def check_lifecycle(self, s, env):
        self.d = d = self.daemon()
        self.launch(d, env=env)
        m = self.until_ready(s)
        self.assertIn("STATUS", m)
        self.assertIn(d.sock, m["STATUS"])
        d.signal(signal.SIGHUP)
        m = self.message(s)
        self.assertEqual(m.get("RELOADING"), "1", m)
        self.assertNotIn("READY", m)
        m = self.message(s)
        self.assertEqual(m.get("READY"), "1", m)
        self.assertIn("STATUS", m)
        hello(d.sock)
        d.signal(signal.SIGTERM)
        m = self.message(s)
        self.assertEqual(m.get("STOPPING"), "1", m)
        self.stop(d)

    def test_ready_reload_stop(self):
        tmp = tempfile.mkdtemp(prefix="ipcb-notify-")
        self.addCleanup(shutil.rmtree, tmp)
        path = os.path.join(tmp, "notify")
        s = self.notify_socket(path)
        self.check_lifecycle(s, clean_env(NOTIFY_SOCKET=path))

    def test_abstract_namespace(self):
        name = "ipcb-test-notify-%d-%06x" % (os.getpid(),
                                             random.randrange(1 << 24))
        s = self.notify_socket("\0" + name)
        self.check_lifecycle(s, clean_env(NOTIFY_SOCKET="@" + name))

    def test_failed_reload_reports_ready_again(self):
        tmp = tempfile.mkdtemp(prefix="ipcb-notify-")
        self.addCleanup(shutil.rmtree, tmp)
        path = os.path.join(tmp, "notify")
        s = self.notify_socket(path)
        self.d = d = self.daemon()
        self.launch(d, env=clean_env(NOTIFY_SOCKET=path))
        self.until_ready(s)
        with open(d.conf, "a") as f:
            f.write("[server]\nno_such_key = 1\n")
        d.signal(signal.SIGHUP)
        self.assertEqual(self.message(s).get("RELOADING"), "1")
        m = self.message(s)
        self.assertEqual(m.get("READY"), "1", m)
        self.assertIn("reload failed", m.get("STATUS", ""))
        hello(d.sock)
        self.stop(d)


# 2. socket activation

class SocketActivationTest(Base):

    def listener(self, path):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(s.close)
        s.bind(path)
        s.listen(16)
        return s

    def activate(self, d, lsock, listen_pid="$$", args=(), env=None):
        """Exec the daemon with lsock as fd 3 and LISTEN_FDS=1; LISTEN_PID
        is the shell's pid, which exec makes the daemon's."""
        fd = lsock.fileno()
        redir = "" if fd == 3 else " 3<&%d %d<&-" % (fd, fd)
        script = ('LISTEN_PID=%s; LISTEN_FDS=1; export LISTEN_PID '
                  'LISTEN_FDS; exec "$0" "$@"%s' % (listen_pid, redir))
        d.logf = open(d.log, "ab")
        d.proc = subprocess.Popen(
            ["/bin/sh", "-c", script, DAEMON, "-c", d.conf] + list(args),
            stdout=d.logf, stderr=d.logf, stdin=subprocess.DEVNULL,
            pass_fds=(fd,), env=clean_env() if env is None else env)
        return d.proc

    def test_inherited_socket(self):
        d = self.daemon()
        path = os.path.join(d.dir, "activated.sock")
        lsock = self.listener(path)
        self.activate(d, lsock)
        lsock.close()     # only the daemon listens now
        r = hello(path)
        self.assertEqual(r["server"], "ipcbridge")
        c1, c2 = Client(path), Client(path)
        self.addCleanup(c1.close)
        self.addCleanup(c2.close)
        self.assertIn("result", c1.call({"op": "hello"}))
        self.assertIn("result", c2.call({"op": "hello"}))
        self.assertIn("socket activation", d.read_log())
        # it served the inherited socket instead of binding its own
        self.assertFalse(os.path.exists(d.sock))
        c1.close()
        c2.close()
        self.stop(d)
        # systemd owns the file: the daemon must not unlink it
        self.assertTrue(os.path.lexists(path),
                        "the daemon removed the inherited socket's file")
        self.assertTrue(stat.S_ISSOCK(os.lstat(path).st_mode))

    def test_listen_pid_of_another_process_is_ignored(self):
        d = self.daemon()
        path = os.path.join(d.dir, "activated.sock")
        lsock = self.listener(path)
        self.activate(d, lsock, listen_pid="1")
        lsock.close()
        self.serving(d)           # bound its own, configured socket
        hello(d.sock)
        self.assertNotIn("socket activation", d.read_log())
        self.stop(d)
        self.assertFalse(os.path.exists(d.sock))

    def test_start_line_names_the_served_socket(self):
        # The configured socket differs from the one systemd passes: the
        # start-up line and STATUS= should name the socket actually served.
        d = self.daemon()
        path = os.path.join(d.dir, "activated.sock")
        lsock = self.listener(path)
        ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(ns.close)
        ns.bind(os.path.join(d.dir, "notify"))
        ns.settimeout(10)
        self.activate(d, lsock, env=clean_env(
            NOTIFY_SOCKET=os.path.join(d.dir, "notify")))
        lsock.close()
        ready = ns.recv(4096).decode()
        self.assertIn("READY=1", ready.split("\n"))
        hello(path)
        status = [l for l in ready.split("\n") if l.startswith("STATUS=")]
        self.assertEqual(len(status), 1, ready)
        self.assertIn(path, status[0])
        self.assertNotIn(d.sock, status[0])
        line = [l for l in self.log_lines(d) if " ready on " in l]
        self.assertEqual(len(line), 1, d.read_log())
        self.assertIn("ready on %s;" % path, line[0])
        self.stop(d)

    @unittest.skipUnless(shutil.which("systemd-socket-activate"),
                         "systemd-socket-activate not installed")
    def test_systemd_socket_activate(self):
        d = self.daemon()
        path = os.path.join(d.dir, "activated.sock")
        self.launch(d, argv=["systemd-socket-activate", "-l", path, DAEMON,
                             "-c", d.conf])
        # it binds, then listens: the file appears before connects work

        def connected():
            if d.proc.poll() is not None:
                raise AssertionError("exited %d:\n%s" % (d.proc.returncode,
                                                         d.read_log()))
            try:
                return Client(path)
            except OSError:
                return None
        c = wait_for(connected)
        self.addCleanup(c.close)
        # the first connection makes it exec the daemon (same pid)
        r = c.call({"op": "hello"})
        self.assertEqual(r["result"]["server"], "ipcbridge", r)
        c.close()
        self.assertIn("socket activation", d.read_log())
        hello(path)
        self.assertFalse(os.path.exists(d.sock))
        self.stop(d)
        self.assertTrue(os.path.lexists(path),
                        "the daemon removed the inherited socket's file")
        self.assertTrue(stat.S_ISSOCK(os.lstat(path).st_mode))


# 3. the pid file

class PidFileTest(Base):

    def test_pidfile_written_exclusive_removed(self):
        d = self.daemon()
        pidfile = os.path.join(d.dir, "ipcbridge.pid")
        self.launch(d, ["-p", pidfile])
        self.serving(d)
        self.assertEqual(self.read(pidfile), "%d\n" % d.proc.pid)
        # a second daemon (own socket and keys) with the same pid file
        d2 = self.daemon()
        r = run([DAEMON, "-c", d2.conf, "-p", pidfile])
        self.assertEqual(r.returncode, 1, r)
        self.assertIn(pidfile, r.stderr)
        self.assertFalse(os.path.exists(d2.sock), "left its socket behind")
        self.assertEqual(self.read(pidfile), "%d\n" % d.proc.pid)
        # nor its temporary pid file (written aside, renamed into place)
        self.assertEqual([f for f in os.listdir(d.dir)
                          if f.startswith("ipcbridge.pid.")], [])
        hello(d.sock)
        self.stop(d)
        self.assertFalse(os.path.exists(pidfile))

    def test_stale_pidfile_is_replaced(self):
        d = self.daemon()
        pidfile = os.path.join(d.dir, "ipcbridge.pid")
        with open(pidfile, "w") as f:
            f.write("999999\n")       # nobody holds its lock
        self.launch(d, ["-p", pidfile])
        self.serving(d)
        self.assertEqual(self.read(pidfile), "%d\n" % d.proc.pid)
        self.stop(d)
        self.assertFalse(os.path.exists(pidfile))

    def test_pidfile_config_key(self):
        tmp = tempfile.mkdtemp(prefix="ipcb-pid-")
        self.addCleanup(shutil.rmtree, tmp)
        pidfile = os.path.join(tmp, "from-config.pid")
        d = self.daemon(server={"pidfile": pidfile})
        self.launch(d)
        self.serving(d)
        self.assertEqual(self.read(pidfile), "%d\n" % d.proc.pid)
        self.stop(d)
        self.assertFalse(os.path.exists(pidfile))

    def test_relative_pidfile_with_daemonize(self):
        become_subreaper()
        d = self.daemon()
        name = "ipcb-test-%d-%06x.pid" % (os.getpid(),
                                           random.randrange(1 << 24))
        pidfile = os.path.join(d.dir, name)
        d.logf = open(d.log, "ab")
        # relative -c too: SIGHUP re-reads it after -d changed to /
        parent = subprocess.Popen([DAEMON, "-c", os.path.basename(d.conf),
                                   "-d", "-p", name], cwd=d.dir,
                                  stdout=d.logf, stderr=d.logf,
                                  stdin=subprocess.DEVNULL, env=clean_env())
        d.logf.close()
        self.assertEqual(parent.wait(10), 0, d.read_log())
        # the parent exits once the daemon serves (what Type=forking with
        # PIDFile= relies on): the pid file is there, the socket accepts
        self.assertTrue(os.path.exists(pidfile), d.read_log())
        pid = int(self.read(pidfile))
        self.addCleanup(kill_detached, pid)
        self.assertNotEqual(pid, parent.pid)
        self.assertFalse(os.path.exists("/" + name))  # -d chdirs to /
        hello(d.sock)
        d.queues["added"] = {"key": private_key()}
        d.write_config()
        os.kill(pid, signal.SIGHUP)
        wait_for(lambda: "added" in hello(d.sock)["queues"])
        os.kill(pid, signal.SIGTERM)
        rc = wait_exit(pid)
        self.assertIn(rc, (0, None))
        self.assertFalse(os.path.exists(pidfile))

    def test_daemonize_fails_when_the_pidfile_is_locked(self):
        # A daemon that cannot take its pid file must not report success:
        # with -d the start-up command has to exit non-zero, as without.
        become_subreaper()
        d = self.daemon()
        pidfile = os.path.join(d.dir, "ipcbridge.pid")
        self.launch(d, ["-p", pidfile])
        self.serving(d)
        d2 = self.daemon()
        self.addCleanup(kill_by_config, d2.conf)
        r = run([DAEMON, "-c", d2.conf, "-d", "-p", pidfile])
        # whatever it did, no second daemon may stay (it removes its
        # socket when it gives up)
        wait_for(lambda: not os.path.exists(d2.sock))
        self.assertNotEqual(r.returncode, 0,
                            "ipcbridge -d exited 0 but no daemon runs")
        self.assertIn(pidfile, r.stderr)   # the reason reaches the terminal
        self.assertIn(reap_detached(exclude=(d.proc.pid,)), (1, None))
        self.assertEqual(self.read(pidfile), "%d\n" % d.proc.pid)
        self.stop(d)

    def test_daemonize_fails_when_the_pidfile_cannot_be_written(self):
        become_subreaper()
        d = self.daemon()
        self.addCleanup(kill_by_config, d.conf)
        pidfile = os.path.join(d.dir, "no-such-dir", "ipcbridge.pid")
        # under ASan, LeakSanitizer's exit-time tracer would be the zombie
        # we reap; its leak check adds nothing to a fatal start-up exit
        asan = (os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0")
        r = run([DAEMON, "-c", d.conf, "-d", "-p", pidfile],
                env=clean_env(ASAN_OPTIONS=asan.lstrip(":")))
        wait_for(lambda: not os.path.exists(d.sock))
        self.assertEqual(r.returncode, 1, r)
        self.assertIn(pidfile, r.stderr)
        self.assertIn(reap_detached(), (1, None))


# 4. logging

class LoggingTest(Base):

    def failed_reload(self, d):
        """Make the daemon log a warning: a reload of a broken config."""
        with open(d.conf, "a") as f:
            f.write("[server]\nno_such_key = 1\n")
        d.signal(signal.SIGHUP)
        self.wait_log(d, "reload failed")

    def run_and_warn(self, d, env, verbose=False):
        self.launch(d, env=env, verbose=verbose)
        self.serving(d)
        hello(d.sock)
        self.failed_reload(d)
        self.stop(d)
        lines = self.log_lines(d)
        self.assertTrue(lines)
        return lines

    def test_journal_stream_prefixes(self):
        d = self.daemon()
        lines = self.run_and_warn(d, clean_env(JOURNAL_STREAM="8:12345"))
        for l in lines:
            self.assertRegex(l, r"^<[0-7]>ipcbridge: ", lines)
        ready = [l for l in lines if " ready on " in l]
        self.assertEqual(len(ready), 1, lines)
        self.assertTrue(ready[0].startswith("<6>ipcbridge: "), ready)
        self.assertTrue(any(l.startswith("<6>") and "exited cleanly" in l
                            for l in lines), lines)
        warn = [l for l in lines if "reload failed" in l]
        self.assertEqual(len(warn), 1, lines)
        self.assertTrue(warn[0].startswith("<4>ipcbridge: warning: "), warn)

    def test_no_prefix_without_journal(self):
        d = self.daemon()
        lines = self.run_and_warn(d, clean_env())
        for l in lines:
            self.assertTrue(l.startswith("ipcbridge: "), lines)
        self.assertTrue(any(l.startswith("ipcbridge: warning: reload failed")
                            for l in lines), lines)
        self.assertTrue(any(" ready on " in l for l in lines), lines)

    def test_log_level_warning(self):
        d = self.daemon(server={"log_level": "warning"})
        lines = self.run_and_warn(d, clean_env())
        self.assertTrue(lines)
        for l in lines:
            self.assertTrue(l.startswith("ipcbridge: warning: "), lines)

    def test_verbose_debug(self):
        d = self.daemon()
        lines = self.run_and_warn(d, clean_env())
        self.assertFalse([l for l in lines if "debug:" in l], lines)
        d = self.daemon(server={"log_level": "warning"})
        self.launch(d, verbose=True)
        self.serving(d)
        hello(d.sock)
        self.wait_log(d, "ipcbridge: debug: ")
        self.assertIn(" ready on ", d.read_log())   # -v beats log_level
        self.stop(d)

    def test_daemonize_with_syslog(self):
        become_subreaper()
        d = self.daemon(server={"log": "syslog"})
        pidfile = os.path.join(d.dir, "ipcbridge.pid")
        d.logf = open(d.log, "ab")
        parent = subprocess.Popen([DAEMON, "-c", d.conf, "-d", "-p", pidfile],
                                  stdout=d.logf, stderr=d.logf,
                                  stdin=subprocess.DEVNULL, env=clean_env())
        d.logf.close()
        self.assertEqual(parent.wait(10), 0, d.read_log())
        # the parent exits once the daemon serves (what Type=forking with
        # PIDFile= relies on): the pid file is there, the socket accepts
        self.assertTrue(os.path.exists(pidfile), d.read_log())
        pid = int(self.read(pidfile))
        self.addCleanup(kill_detached, pid)
        self.assertNotEqual(pid, parent.pid)
        self.assertTrue(is_ipcbridge(pid))
        self.assertEqual(os.getsid(pid), pid)     # its own session
        hello(d.sock)
        hello(d.sock)
        # with log = syslog nothing reaches the stderr it was started with
        self.assertNotIn(" ready on ", d.read_log())
        os.kill(pid, signal.SIGTERM)
        self.assertIn(wait_exit(pid), (0, None))
        self.assertFalse(os.path.exists(pidfile))
        self.assertFalse(os.path.exists(d.sock))


# 5. the start-up line

class StartLineTest(Base):

    def test_start_line(self):
        d = self.daemon(queues={"default": {}, "jobs": {}},
                        shms={"default": {"size": "64K"},
                              "blobs": {"size": "4K", "format": "raw"}})
        self.launch(d)
        self.serving(d)
        lines = [l for l in self.log_lines(d) if " ready on " in l]
        self.assertEqual(len(lines), 1, d.read_log())
        line = lines[0]
        self.assertTrue(line.startswith("ipcbridge: "), line)
        version = package_version()
        if version:
            self.assertIn("ipcbridge %s " % version, line)
        self.assertIn("ready on %s;" % d.sock, line)
        msg, shm, sem = sysvipc("msg"), sysvipc("shm"), sysvipc("sem")
        for name in ("default", "jobs"):
            key = d.key(name)
            self.assertIn("queue %s key 0x%08x msqid %d" %
                          (name, key, msg[key]), line)
        for name in ("default", "blobs"):
            key = d.shm_key(name)
            self.assertIn("shm %s key 0x%08x shmid %d" %
                          (name, key, shm[key]), line)
            self.assertIn("sem 0x%08x semid %d" % (key, sem[key]), line)
        self.stop(d)


# 6. the command line

class CommandLineTest(Base):

    def test_help(self):
        r = run([DAEMON, "-h"])
        self.assertEqual(r.returncode, 0, r)
        self.assertEqual(r.stderr, "")
        self.assertTrue(r.stdout.startswith("usage: ipcbridge "), r.stdout)
        for opt in "cSdpvtVh":
            self.assertRegex(r.stdout, r"(?m)^\s+-%s\b" % opt)

    def test_unknown_option(self):
        r = run([DAEMON, "-x"])
        self.assertEqual(r.returncode, 2, r)
        self.assertEqual(r.stdout, "")
        usage = [l for l in r.stderr.splitlines() if "usage:" in l]
        self.assertEqual(len(usage), 1, r.stderr)
        self.assertTrue(usage[0].startswith("usage: ipcbridge "), usage)
        self.assertLessEqual(len(r.stderr.splitlines()), 2, r.stderr)
        self.assertNotIn("debug logging", r.stderr)   # not the whole help

    def test_extra_argument(self):
        d = self.daemon()
        r = run([DAEMON, "-c", d.conf, "stray"])
        self.assertEqual(r.returncode, 2, r)
        self.assertIn("stray", r.stderr)
        self.assertIn("usage: ipcbridge ", r.stderr)
        self.assertFalse(os.path.exists(d.sock))
        self.assertNotIn(d.key(), sysvipc("msg"))

    def test_version(self):
        r = run([DAEMON, "-V"])
        self.assertEqual(r.returncode, 0, r)
        version = package_version()
        if version:
            self.assertEqual(r.stdout, "ipcbridge %s\n" % version)
        else:
            self.assertRegex(r.stdout, r"^ipcbridge \d+\.\d+\S*\n$")

    def test_check_bad_config(self):
        d = self.daemon()
        with open(d.conf, "w") as f:
            f.write("[server]\nsocket = %s\nbogus = 1\n" % d.sock)
        r = run([DAEMON, "-t", "-c", d.conf])
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("%s:3:" % d.conf, r.stderr)
        with open(d.conf, "w") as f:
            f.write("[server]\nsocket = %s\n\n[shm default]\nkey = 1\n"
                    "size = lots\n" % d.sock)
        r = run([DAEMON, "-t", "-c", d.conf])
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("%s:6:" % d.conf, r.stderr)
        self.assertFalse(os.path.exists(d.sock))

    def test_check_prints_effective_settings(self):
        d = self.daemon()
        token = os.path.join(d.dir, "token")
        open(token, "w").close()
        d.queues["default"]["key"] = "ftok:%s:J" % token
        d.shms["blobs"] = {"key": "ftok:%s:S" % token, "size": "4K",
                           "format": "raw", "sem_key": "ftok:%s:T" % token}
        d.write_config()
        r = run([DAEMON, "-t", "-c", d.conf])
        self.assertEqual(r.returncode, 0, r)
        out = r.stdout.splitlines()
        fk = "key = ftok:%s:%%s ; = 0x%%08x" % token
        for want in ("[queue default]", fk % ("J", ftok(token, "J")),
                     "[shm default]", "key = 0x%08x" % d.shm_key(),
                     "size = 65536", "format = php",
                     "sem_key = 0x%08x" % d.shm_key(),
                     "[shm blobs]", fk % ("S", ftok(token, "S")),
                     "size = 4096", "format = raw",
                     "sem_" + fk % ("T", ftok(token, "T")),
                     "; configuration OK"):
            self.assertIn(want, out)
        for l in out:
            if "ftok:" in l:
                self.assertRegex(
                    l, r"^(sem_)?key = ftok:\S+:. ; = 0x[0-9a-f]{8}$")
        # the output is a config that says the same again
        again = os.path.join(d.dir, "again.conf")
        with open(again, "w") as f:
            f.write(r.stdout)
        r2 = run([DAEMON, "-t", "-c", again])
        self.assertEqual(r2.returncode, 0, r2)
        self.assertEqual(r2.stdout.splitlines()[1:], out[1:])
        # a check creates nothing
        self.assertFalse(os.path.exists(d.sock))
        self.assertNotIn(d.shm_key(), sysvipc("shm"))
        self.assertNotIn(d.shm_key(), sysvipc("sem"))
        self.assertNotIn(ftok(token, "J"), sysvipc("msg"))


# 7. the installed layout

def make_vars(makefile):
    """The plain `name = value` assignments of a generated Makefile,
    expanded (enough for the directory variables)."""
    raw = {}
    with open(makefile) as f:
        for line in f:
            m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$", line)
            if m:
                raw[m.group(1)] = m.group(2)

    def expand(v, depth=0):
        if depth > 20:
            return v
        return re.sub(r"\$[({]([A-Za-z0-9_]+)[)}]",
                      lambda m: expand(raw.get(m.group(1), ""), depth + 1), v)
    return {k: expand(v) for k, v in raw.items()}


@unittest.skipUnless(os.path.exists(os.path.join(BUILDDIR, "Makefile")) and
                     shutil.which("make"),
                     "no configured build dir (IPCBRIDGE_BUILDDIR) or make")
class InstallTest(Base):

    def make(self, *args):
        env = clean_env()
        for k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"):
            env.pop(k, None)
        r = subprocess.run(["make", "-s", "-C", BUILDDIR] + list(args),
                           capture_output=True, text=True, env=env,
                           stdin=subprocess.DEVNULL, timeout=300)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return r

    def test_install_run_reinstall_uninstall(self):
        v = make_vars(os.path.join(BUILDDIR, "Makefile"))
        dest = tempfile.mkdtemp(prefix="ipcb-destdir-")
        self.addCleanup(shutil.rmtree, dest, True)

        def at(path):
            return dest + path

        self.make("install", "DESTDIR=" + dest)
        sbin = at(v["sbindir"] + "/ipcbridge")
        conf = at(v["sysconfdir"] + "/ipcbridge.conf")
        files = [sbin, at(v["mandir"] + "/man8/ipcbridge.8"),
                 at(v["mandir"] + "/man5/ipcbridge.conf.5"),
                 at(v["includedir"] + "/ipcbridge.h")]
        libs = glob.glob(at(v["libdir"] + "/libipcbridge.*"))
        self.assertTrue(libs, "no libipcbridge.* in " + at(v["libdir"]))
        self.assertTrue(any(re.search(r"\.(so|a)$", l) for l in libs), libs)
        files += libs
        if v.get("systemdsystemunit_DATA") and v.get("systemdsystemunitdir"):
            units = at(v["systemdsystemunitdir"])
            service = os.path.join(units, "ipcbridge.service")
            files += [service, os.path.join(units, "ipcbridge.socket")]
            with open(service) as f:
                text = f.read()
            self.assertNotRegex(text, r"@\w+@")
            self.assertIn("ExecStart=%s/ipcbridge -c %s/ipcbridge.conf" %
                          (v["sbindir"], v["sysconfdir"]), text)
        for p in files + [conf]:
            self.assertTrue(os.path.isfile(p), p + " not installed")
        self.assertTrue(os.access(sbin, os.X_OK))

        self.run_installed(sbin, conf, at(v["libdir"]))

        # a second install keeps an edited config
        mark = "; edited by the admin %06x\n" % random.randrange(1 << 24)
        with open(conf, "a") as f:
            f.write(mark)
        with open(conf) as f:
            edited = f.read()
        self.make("install", "DESTDIR=" + dest)
        with open(conf) as f:
            self.assertEqual(f.read(), edited)

        self.make("uninstall", "DESTDIR=" + dest)
        for p in files:
            self.assertFalse(os.path.exists(p), p + " not uninstalled")
        with open(conf) as f:         # the admin's edits stay
            self.assertEqual(f.read(), edited)

    def run_installed(self, sbin, sample, libdir):
        """The installed daemon on the installed sample config, with the
        socket in a temp dir and private IPC keys."""
        d = self.daemon(shms={})
        keys = {"queue": [], "shm": []}
        out, kind, name, keyed = [], None, None, {}  # (kind, name): has key
        with open(sample) as f:
            for line in f:
                m = re.match(r"^\s*\[(\w+)\s*([^\]]*)\]", line)
                if m:
                    kind, name = m.group(1), m.group(2).strip()
                    if kind in keys:
                        keyed.setdefault((kind, name), False)
                key = re.match(r"^\s*(\w+)\s*=", line)
                key = key and key.group(1)
                if kind == "server" and key == "socket":
                    line = "socket = %s\n" % d.sock
                elif kind == "server" and key == "pidfile":
                    line = "pidfile = %s\n" % os.path.join(d.dir, "pid")
                elif kind == "server" and key == "state_dir":
                    line = ""
                elif kind in keys and key in ("key", "sem_key"):
                    k = private_key()
                    keys[kind].append(k)
                    line = "%s = 0x%08x\n" % (key, k)
                    if key == "key":
                        keyed[(kind, name)] = True
                out.append(line)
        # a private journal, not the machine's /run/ipcbridge
        state = "state_dir = %s\n" % os.path.join(d.dir, "state")
        for i, line in enumerate(out):
            if re.match(r"^\s*\[server\]", line):
                out.insert(i + 1, state)
                break
        else:
            out.insert(0, "[server]\n" + state)
        # no machine-wide default objects: every section gets a private
        # key (a repeated section adds to the first), and a segment exists
        for want in ("queue", "shm"):
            if not any(k == want for k, _ in keyed):
                keyed[(want, "default")] = False
                out.append("\n[%s default]\n" % want)
        for (kind, name), has in keyed.items():
            if not has:
                k = private_key()
                keys[kind].append(k)
                out.append("\n[%s %s]\nkey = 0x%08x\n" % (kind, name, k))
        for k in keys["queue"]:
            self.addCleanup(ipcrm_queue, k)
        for k in keys["shm"]:
            self.addCleanup(ipcrm_shm, k)
        with open(d.conf, "w") as f:
            f.writelines(out)
        ld = libdir + (":" + os.environ["LD_LIBRARY_PATH"]
                       if os.environ.get("LD_LIBRARY_PATH") else "")
        self.launch(d, argv=[sbin, "-c", d.conf],
                    env=clean_env(LD_LIBRARY_PATH=ld))
        self.serving(d)
        r = hello(d.sock)
        version = package_version()
        if version:
            self.assertEqual(r["version"], version)
        self.assertEqual(sorted(r["queues"]),
                         sorted(n for k, n in keyed if k == "queue"))
        self.assertEqual(sorted(r["segments"]),
                         sorted(n for k, n in keyed if k == "shm"))
        self.stop(d)
        self.assertFalse(os.path.exists(d.sock))


if __name__ == "__main__":
    unittest.main(verbosity=2)
