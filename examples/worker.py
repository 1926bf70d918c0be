#!/usr/bin/python3
"""worker.py - an ipcbridge worker in Python (sysv_ipc), attached to the same
System V message queue the daemon serves.

    examples/worker.py KEY [COUNT]    KEY: decimal or 0x hex, or the
                                      IPCBRIDGE_KEY environment variable

Request/reply convention (shared by worker.php, worker.py and worker.c):
  - A request is a message of type 1 whose body is "REPLYTYPE:PAYLOAD".
    REPLYTYPE is decimal, 2..2147483647 (the types every worker language can
    send; sysv_ipc types are C ints), so a client picks a type of its own to
    wait on. PAYLOAD is any bytes, binary included.
  - The reply is a message of type REPLYTYPE whose body is handle(PAYLOAD);
    this example's handle() echoes PAYLOAD unchanged.
  - A body of exactly "quit" stops the worker (exit 0). So does COUNT
    requests (0 or absent = run forever). A malformed request is logged to
    stderr, counted and dropped.

sysv_ipc is Debian's python3-sysv-ipc, hence /usr/bin/python3.
"""
import os
import re
import sys

import sysv_ipc

REQUEST_TYPE = 1
MAX_SIZE = 65536          # above the kernel's msgmax, so nothing is too big
REQUEST = re.compile(rb"([1-9][0-9]{0,9}):(.*)", re.DOTALL)


def handle(payload):
    return payload        # the real work goes here


def main():
    if len(sys.argv) < 2 and not os.environ.get("IPCBRIDGE_KEY"):
        sys.exit("usage: worker.py KEY [COUNT]")
    spec = sys.argv[1] if len(sys.argv) > 1 else os.environ["IPCBRIDGE_KEY"]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    # Decimal or 0x hex, within the kernel's 32 bits (sysv_ipc would
    # silently truncate a wider value to some other queue's key).
    try:
        key = int(spec, 16) if spec[:2].lower() == "0x" else int(spec, 10)
    except ValueError:
        key = 0
    if not -2**31 <= key <= 2**32 - 1 or key in (0, -1, 2**32 - 1):
        sys.exit("worker.py: bad key %r" % spec)
    if key >= 2**31:
        key -= 2**32      # key_t is signed: 0xffffff00 is -256
    try:
        # flags=0: open only; the daemon creates the queue with its mode.
        # max_message_size bounds receive() (default 2048 is too small).
        q = sysv_ipc.MessageQueue(key, max_message_size=MAX_SIZE)
    except sysv_ipc.ExistentialError:
        sys.exit("worker.py: no queue with key 0x%08x (start ipcbridge first)"
                 % (key & 0xFFFFFFFF))

    served = 0
    while count == 0 or served < count:
        try:
            msg, _ = q.receive(type=REQUEST_TYPE)   # blocks for a request
        except sysv_ipc.ExistentialError:
            sys.exit("worker.py: the queue was removed")
        if msg == b"quit":
            break
        served += 1
        m = REQUEST.fullmatch(msg)
        if m is None or not 2 <= int(m.group(1)) <= 2**31 - 1:
            print("worker.py: dropped a malformed request "
                  "(want REPLYTYPE:PAYLOAD)", file=sys.stderr)
            continue
        q.send(handle(m.group(2)), type=int(m.group(1)))


if __name__ == "__main__":
    main()
