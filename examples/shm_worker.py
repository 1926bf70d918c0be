#!/usr/bin/python3
"""shm_worker.py - an ipcbridge shared-memory worker in Python (sysv_ipc),
working on the same PHP-format segment the daemon serves, under the same
semaphore.

    examples/shm_worker.py [KEY [COUNT]]

KEY is the [shm NAME] key from ipcbridge.conf (decimal or 0x hex; default
0x69706202, the built-in "default" segment), or the IPCBRIDGE_SHM_KEY
environment variable. The semaphore has the same key: ipcbridge's default
when sem_key is not set.

Convention (shared with shm_worker.php):
  - A socket client stores a request in variable 1:
        {"op":"shm.put","var":1,"text":"hello"}
  - The worker takes it (reads and removes variable 1 under the lock) and
    stores the reply "done: <request>" in variable 2:
        {"op":"shm.get","var":2}  ->  ... "text":"done: hello"
  - A request of exactly "quit" stops the worker (exit 0); so does serving
    COUNT requests (0 or absent: forever).

sysv_ipc knows neither PHP's semaphore protocol nor its segment layout, so:
  - the semaphore is opened with flags=0 (never IPC_CREAT: sysv_ipc would
    reset the lock of a live set, and a set it creates has 1 semaphore,
    which PHP and ipcbridge cannot use) and with undo = True, so that the
    kernel releases the lock if this process dies holding it;
  - sysv_ipc does not register as a user of the set the way PHP's sem_get
    does. That is safe while ipcbridge runs (it stays registered), so run
    this worker only while the daemon runs;
  - PhpSegment below reads and writes the PHP sysvshm layout (see
    doc/formats.md), for string variables.

sysv_ipc is Debian's python3-sysv-ipc, hence /usr/bin/python3.
"""
import contextlib
import os
import struct
import sys
import time

import sysv_ipc

REQUEST_VAR = 1
REPLY_VAR = 2
POLL_SECONDS = 0.05
LOCK_TIMEOUT = 5                  # seconds; sysv_ipc.BusyError after that

HEAD = struct.Struct("=8sqqqq")   # magic, start, end, free, total: 40 bytes
CHUNK = struct.Struct("=qqq")     # key, length, next; the data follows
START = HEAD.size                 # the first chunk is at offset 40
DATA = CHUNK.size                 # a chunk's data is at +24


class Corrupt(Exception):
    pass


class NoSpace(Exception):
    pass


def chunk_size(length):
    """PHP's php_put_shm_data: the chunk a value of length bytes takes."""
    return (length + 31) // 8 * 8 + 8


class PhpSegment:
    """PHP sysvshm variables in a sysv_ipc.SharedMemory. Hold the lock."""

    def __init__(self, mem):
        self.mem = mem

    def _read(self, n, offset):
        # sysv_ipc reads to the end of the segment when asked for 0 bytes
        return self.mem.read(n, offset) if n > 0 else b""

    def _head(self):
        magic, start, end, free, total = HEAD.unpack(self._read(HEAD.size, 0))
        if (magic[:7] != b"PHP_SM\0" or start != START
                or not start <= end <= total <= self.mem.size
                or free != total - end):
            raise Corrupt("not a valid PHP sysvshm header")
        return end, free

    def _find(self, key):
        """(offset, length, next) of key's chunk or None, and end, free."""
        end, free = self._head()
        pos = START
        while pos < end:
            k, length, nxt = CHUNK.unpack(self._read(CHUNK.size, pos))
            if length < 0 or nxt != chunk_size(length) or pos + nxt > end:
                raise Corrupt("bad chunk at offset %d" % pos)
            if k == key:
                return (pos, length, nxt), end, free
            pos += nxt
        return None, end, free

    def _set_end(self, end, free):
        self.mem.write(struct.pack("=qq", end, free), 16)

    def get(self, key):
        """The serialized bytes of variable key, or None."""
        found, _, _ = self._find(key)
        return None if found is None else self._read(found[1], found[0] + DATA)

    def delete(self, key):
        """Remove key as PHP does: move the chunks after it down."""
        found, end, free = self._find(key)
        if found is None:
            return False
        pos, _, nxt = found
        tail = self._read(end - pos - nxt, pos + nxt)
        if tail:
            self.mem.write(tail, pos)
        self._set_end(end - nxt, free + nxt)
        return True

    def put(self, key, data):
        """Replace or add key (at the end, as PHP does). Unlike PHP, check
        the room first, so NoSpace keeps the old value."""
        found, end, free = self._find(key)
        need = chunk_size(len(data))
        if need > free + (found[2] if found else 0):
            raise NoSpace("%d bytes do not fit" % len(data))
        if found:
            self.delete(key)
            end, free = self._head()
        pad = need - DATA - len(data)
        self.mem.write(CHUNK.pack(key, len(data), need) + data + b"\0" * pad,
                       end)
        self._set_end(end + need, free - need)


def php_string(data):
    """PHP's serialize() of a string: s:<bytes>:"<bytes>";"""
    return b's:%d:"%s";' % (len(data), data)


def php_unstring(ser):
    """The bytes of a serialized PHP string, or None for any other value."""
    head, sep, rest = ser.partition(b':"')
    if (not sep or not head.startswith(b"s:") or not head[2:].isdigit()
            or len(rest) != int(head[2:]) + 2 or not rest.endswith(b'";')):
        return None
    return rest[:-2]


@contextlib.contextmanager
def locked(sem):
    """Hold the semaphore: PHP's sem_acquire/sem_release, with a timeout."""
    try:
        sem.acquire(LOCK_TIMEOUT)
    except sysv_ipc.BusyError:
        sys.exit("shm_worker.py: the lock is still held after %d s"
                 % LOCK_TIMEOUT)
    try:
        yield
    finally:
        sem.release()


def handle(request):
    return b"done: " + request    # the real work goes here


def main():
    spec = (sys.argv[1] if len(sys.argv) > 1
            else os.environ.get("IPCBRIDGE_SHM_KEY", "0x69706202"))
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    # Decimal or 0x hex, within the kernel's 32 bits (sysv_ipc would
    # silently truncate a wider value to some other segment's key).
    try:
        key = int(spec, 16) if spec[:2].lower() == "0x" else int(spec, 10)
    except ValueError:
        key = 0
    if not -2**31 <= key <= 2**32 - 1 or key in (0, -1, 2**32 - 1):
        sys.exit("shm_worker.py: bad key %r" % spec)
    if key >= 2**31:
        key -= 2**32              # key_t is signed: 0xffffff00 is -256
    try:
        sem = sysv_ipc.Semaphore(key)         # flags=0: open, never create
        mem = sysv_ipc.SharedMemory(key)      # flags=0: the daemon's segment
    except sysv_ipc.ExistentialError:
        sys.exit("shm_worker.py: no semaphore or segment with key 0x%08x "
                 "(start ipcbridge first)" % (key & 0xFFFFFFFF))
    sem.undo = True               # SEM_UNDO, as PHP and ipcbridge do

    try:
        serve(sem, PhpSegment(mem), count)
    except Corrupt as e:
        sys.exit("shm_worker.py: %s (is this a format = php segment?)" % e)


def serve(sem, seg, count):
    served = 0
    while count == 0 or served < count:
        # Take the request: read and remove it in one critical section.
        with locked(sem):
            ser = seg.get(REQUEST_VAR)
            if ser is not None:
                seg.delete(REQUEST_VAR)
        if ser is None:
            time.sleep(POLL_SECONDS)
            continue
        request = php_unstring(ser)
        if request is None:       # a number, an array...: pass it as text
            request = ser
        if request == b"quit":
            break
        served += 1
        reply = php_string(handle(request))   # not under the lock

        with locked(sem):
            try:
                seg.put(REPLY_VAR, reply)
            except NoSpace:
                print("shm_worker.py: no room for the reply", file=sys.stderr)


if __name__ == "__main__":
    main()
