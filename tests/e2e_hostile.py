#!/usr/bin/env python3
"""The bad-input suite: hostile bytes over the real socket.

One table of hostile inputs (framing, JSON structure, numbers and types,
strings and UTF-8, strict base64, op semantics) is driven by one loop.
For every case it checks the exact error code (and data, and whether the
reply carries the id), that the connection stays usable afterwards (the
next request on it is answered) or is closed as documented, and, every few
cases, that a long-lived bystander client on another connection is still
served correctly. The static cases are then replayed thousands of times
to show that memory does not grow per input and that the error counters
count exactly one error per bad line.

Connection abuse has its own tests: slowloris, a client that never reads,
more than 1,000 connections at once, half-close, a reset in the middle of
a big reply, and a pipelined flood next to a bystander.

The daemon's VmRSS and open descriptors are read from /proc before and
after; the bounds are stated next to each check.

Cases the daemon answers wrongly today are listed in KNOWN_BUGS (table)
or marked @known_bug (tests): the suite still asserts the documented
behaviour, reports "KNOWN BUG: ..." and fails once the bug is fixed, so
that the mark gets removed (a racy bug, which shows in most runs but
not all, is only reported).

Run: IPCBRIDGE=src/ipcbridge PYTHONPATH=tests python3 tests/e2e_hostile.py
"""
import base64
import json
import os
import resource
import select
import socket
import struct
import subprocess
import sys
import threading
import time
import unittest

import ipcb_test
from ipcb_test import Client, Daemon, wait_for

MAX_LINE = 32 * 1024            # max_line_bytes of the main daemon
MAX_CONNS = 1100                # max_conns of the main daemon
PARTIAL_MS = 1000               # partial_line_timeout_ms of the limits daemon
MSGMAX = int(open("/proc/sys/kernel/msgmax").read())
# A reply this much bigger than a socket's send buffer leaves about
# 128 KiB unsent (below the 256 KiB backlog mark) when its client does
# not read: the size of the "mid" segment's base64 reply.
WMEM = int(open("/proc/sys/net/core/wmem_default").read())
MID_KIB = ((WMEM + 128 * 1024) * 3 // 4 + 1023) // 1024

# Memory bounds (VmRSS of the daemon, KiB). A fresh daemon takes about
# 2-3 MiB; after this suite, with every client gone, 6-40 MiB (glibc keeps
# freed input buffers of the 1,100-connection waves). The bounds are far
# above that (so they cannot flake) and far below what a leak would cost:
# the repeat rounds send ~25,000 lines each, so a leak of even 100 bytes
# per line would add 2.4 MiB per round; a leaked 64 KiB input buffer per
# connection would add 70 MiB per wave of 1,100 connections.
# whole suite, all clients closed; under valgrind (make check-valgrind) its
# shadow memory and delayed frees inflate RSS, and leaks are its to find
RSS_GROWTH_MAX_KIB = (256 if ipcb_test.VALGRIND else 64) * 1024
REPEAT_ROUND_GROWTH_KIB = 1024      # between two identical repeat rounds
WAVES_GROWTH_KIB = 8 * 1024         # over the last two connection waves

STATS_LINE = len(b'{"op": "stats"}\n')  # what Client.call sends
DAEMONS = {}        # "main" and "limits", started by setUpModule
COUNT = {"conns": 0, "cases": 0}
KNOWN_BUG_REPORTS = []


def rss_less(test, growth, bound, msg=None):
    """A bound on the daemon's memory, in KiB; not for a sanitizer build,
    whose RSS is ASan's quarantine and shadow (LeakSanitizer checks leaks
    there at exit)."""
    if not ipcb_test.SANITIZED:
        test.assertLess(growth, bound, msg)


def rss_kib(d):
    with open("/proc/%d/status" % d.proc.pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def fd_count(d):
    return len(os.listdir("/proc/%d/fd" % d.proc.pid))


class Conn(Client):
    """A Client whose connect() waits for room in the listen backlog
    (Client connects with a timeout, that is non-blocking, and fails with
    EAGAIN when a thousand clients connect at once)."""

    def __init__(self, path, timeout=10.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise
        self.sock.settimeout(timeout)
        self.buf = b""
        COUNT["conns"] += 1


def connect(d, timeout=10.0):
    return Conn(d.sock, timeout)


def J(obj):
    """One request line, compact, UTF-8 as is."""
    return json.dumps(obj, separators=(",", ":"),
                      ensure_ascii=False).encode() + b"\n"


def b64(data):
    return base64.b64encode(data).decode()


# ---------------------------------------------------------------------------
# Expected replies

ABSENT = object()       # the reply must not have this key
POS = object()          # data is {"position": n} with n inside the line


def E(code, data=ABSENT, id=ABSENT):
    """An error reply. parse_error and not_utf8 carry a position by
    default; every other code carries no data unless given."""
    if data is ABSENT:
        data = POS if code in ("parse_error", "not_utf8") else None
    return {"code": code, "data": data, "id": id}


def P(param, id=ABSENT):
    """invalid_params naming param."""
    return E("invalid_params", {"param": param}, id)


def IDBAD():
    return E("invalid_request", {"param": "id"})


def OK(id=ABSENT):
    return {"code": "ok", "data": None, "id": id}


class Case:
    """One hostile input.

    raw: the bytes to send, or a function(ctx) returning (bytes, replies)
    for inputs that need state (tags, consumers, parked waits).
    replies: the expected reply lines, in order ([] = ignored line).
    kept: True = the connection stays usable; False = the input ends with
    a half-close and the daemon answers, then closes the connection.
    after: function(ctx) run after the case (clean-up and extra checks).
    """

    def __init__(self, cat, name, raw, replies=None, kept=True, after=None):
        self.cat, self.name, self.raw = cat, name, raw
        self.replies, self.kept, self.after = replies, kept, after

    @property
    def static(self):
        return isinstance(self.raw, bytes) and self.kept and \
            self.after is None


TABLE = []


def case(cat, name, raw, *replies, **kw):
    if isinstance(raw, bytes) and not raw.endswith(b"\n") and \
            kw.get("kept", True):
        raw += b"\n"
    TABLE.append(Case(cat, name, raw, list(replies), **kw))


def dyn(cat, name, fn, **kw):
    TABLE.append(Case(cat, name, fn, None, **kw))


# ---------------------------------------------------------------------------
# Framing

F = "framing"
HELLO = b'{"op":"hello"}'
case(F, "overlong line", b'{"op":"hello","pad":"' + b"p" * (MAX_LINE + 10)
     + b'"}', E("line_too_long"))
case(F, "overlong comment line", b"# " + b"c" * (MAX_LINE + 1),
     E("line_too_long"))
case(F, "overlong line of spaces", b" " * (MAX_LINE + 1), E("line_too_long"))


def line_of(n, head=b'{"op":"hello"', end=b"\r\n"):
    """A request of exactly n bytes (not counting the line ending)."""
    return head + b" " * (n - len(head) - 1) + b"}" + end


case(F, "max_line_bytes + 1 with CRLF", line_of(MAX_LINE + 1),
     E("line_too_long"))
case(F, "exactly max_line_bytes with CRLF is served",
     line_of(MAX_LINE, b'{"op":"hello","id":"edge"'), OK("edge"))
case(F, "exactly max_line_bytes with LF is served",
     line_of(MAX_LINE, b'{"op":"hello","id":"edge2"', b"\n"), OK("edge2"))
case(F, "NUL byte alone", b"\x00", E("parse_error"))
case(F, "three NUL bytes", b"\x00\x00\x00", E("parse_error"))
case(F, "NUL after the object", HELLO + b"\x00", E("parse_error"))
case(F, "NUL before the object", b"\x00" + HELLO, E("parse_error"))
case(F, "raw NUL inside a string", b'{"op":"hel\x00lo"}', E("parse_error"))
case(F, "empty line", b"\n")
case(F, "empty CRLF line", b"\r\n")
case(F, "blank line of spaces and tabs", b" \t \t\r\n")
case(F, "comment line", b'# {"op":"hello"}')
case(F, "indented comment line", b"  \t# x")
case(F, "a lone CR before CRLF", b"\r\r\n", E("parse_error"))
case(F, "CR between two objects", HELLO + b"\r" + HELLO, E("parse_error"))
case(F, "CR CR LF after a request is trailing whitespace",
     b'{"op":"hello","id":"crcr"}\r\r\n', OK("crcr"))
case(F, "leading CR is JSON whitespace",
     b'\r{"op":"hello","id":"lead"}', OK("lead"))
case(F, "vertical tab line", b"\x0b", E("parse_error"))
case(F, "form feed line", b"\x0c", E("parse_error"))
case(F, "ctrl-C ctrl-D", b"\x03\x04", E("parse_error"))
case(F, "telnet IAC bytes", b"\xff\xf4\xff\xfd\x06", E("not_utf8"))
case(F, "binary junk starting with 0xFE", b"\xfe\x00\x9a\x10garbage\x7f",
     E("not_utf8"))
case(F, "UTF-8 BOM before the object", b"\xef\xbb\xbf" + HELLO,
     E("parse_error"))
case(F, "HTTP GET request", b"GET / HTTP/1.1\r\nHost: localhost\r\n"
     b"User-Agent: curl/8.5\r\nAccept: */*\r\n\r\n",
     E("parse_error"), E("parse_error"), E("parse_error"), E("parse_error"))
case(F, "HTTP POST with a JSON body", b"POST /rpc HTTP/1.1\r\n"
     b"Content-Type: application/json\r\nContent-Length: 26\r\n\r\n"
     b'{"op":"hello","id":"body"}',
     E("parse_error"), E("parse_error"), E("parse_error"), OK("body"))
case(F, "HTTP/2 connection preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
     E("parse_error"), E("parse_error"))
case(F, "WebSocket upgrade request", b"GET /ws HTTP/1.1\r\nUpgrade: "
     b"websocket\r\nConnection: Upgrade\r\n\r\n",
     E("parse_error"), E("parse_error"), E("parse_error"))
case(F, "SMTP greeting", b"EHLO ipcbridge.example", E("parse_error"))
case(F, "request split by a LF inside a string",
     b'{"op":"hel\nlo"}', E("parse_error"), E("parse_error"))
case(F, "final line without LF, then half-close", b'{"op":"nope","id":1}',
     E("unknown_op", {"op": "nope"}, 1), kept=False)
case(F, "final garbage without LF, then half-close", b"\x01garbage",
     E("parse_error"), kept=False)
case(F, "final overlong line without LF, then half-close",
     b"z" * (MAX_LINE + 100), E("line_too_long"), kept=False)
case(F, "final partial UTF-8 character, then half-close",
     b'{"op":"hello","x":"\xc3', E("not_utf8"), kept=False)
case(F, "HTTP request, then half-close", b"GET / HTTP/1.0\r\n\r\n",
     E("parse_error"), kept=False)
case(F, "only a comment, then half-close", b"# bye", kept=False)

# ---------------------------------------------------------------------------
# JSON structure

S = "json"
case(S, "empty array", b"[]", E("invalid_request"))
case(S, "batch array of requests", b'[{"op":"hello"},{"op":"stats"}]',
     E("invalid_request"))
case(S, "bare string", b'"hello"', E("invalid_request"))
case(S, "bare number", b"42", E("invalid_request"))
case(S, "bare null", b"null", E("invalid_request"))
case(S, "bare true", b"true", E("invalid_request"))
case(S, "empty object (no op)", b"{}", E("invalid_request", {"param": "op"}))
case(S, "missing op, id echoed", b'{"id":4}',
     E("invalid_request", {"param": "op"}, 4))
case(S, "op is a number", b'{"op":5,"id":"n"}',
     E("invalid_request", {"param": "op"}, "n"))
case(S, "op is null", b'{"op":null}', E("invalid_request", {"param": "op"}))
case(S, "op is an array", b'{"op":["hello"]}',
     E("invalid_request", {"param": "op"}))
case(S, "op is an object", b'{"op":{},"id":"o"}',
     E("invalid_request", {"param": "op"}, "o"))
case(S, "op is a boolean", b'{"op":true}',
     E("invalid_request", {"param": "op"}))
case(S, "unknown op", b'{"op":"queue.purge","id":3}',
     E("unknown_op", {"op": "queue.purge"}, 3))
case(S, "op in upper case", b'{"op":"HELLO"}',
     E("unknown_op", {"op": "HELLO"}))
case(S, "op with a trailing space", b'{"op":"hello "}',
     E("unknown_op", {"op": "hello "}))
case(S, "empty op", b'{"op":""}', E("unknown_op", {"op": ""}))
case(S, "unknown extra param", b'{"op":"hello","bogus":1,"id":2}',
     P("bogus", 2))
case(S, "param name in the wrong case", b'{"op":"hello","ID":1}', P("ID"))
case(S, "param of another op", b'{"op":"queue.recv","text":"x"}', P("text"))
case(S, "trailing garbage", HELLO + b" x", E("parse_error"))
case(S, "two objects on one line", HELLO + HELLO, E("parse_error"))
case(S, "trailing comma", b'{"op":"hello",}', E("parse_error"))
case(S, "missing colon", b'{"op" "hello"}', E("parse_error"))
case(S, "single quotes", b"{'op':'hello'}", E("parse_error"))
case(S, "unquoted key", b'{op:"hello"}', E("parse_error"))
case(S, "comment inside JSON", b'{"op":"hello"/*x*/}', E("parse_error"))
case(S, "unterminated string", b'{"op":"hel', E("parse_error"))
case(S, "unbalanced close", HELLO + b"}", E("parse_error"))
case(S, "duplicate op key", b'{"op":"hello","op":"stats"}', E("parse_error"))
case(S, "duplicate id key", b'{"op":"hello","id":1,"id":2}',
     E("parse_error"))
case(S, "duplicate key spelled with an escape",
     b'{"op":"hello","o\\u0070":"x"}', E("parse_error"))
case(S, "parse error keeps no id", b'{"id":5,"op":"hello",}',
     E("parse_error"))
case(S, "array nested 3,000 deep", b"[" * 3000 + b"]" * 3000,
     E("parse_error"))
case(S, "object nested 3,000 deep", b'{"a":' * 3000 + b"1" + b"}" * 3000,
     E("parse_error"))
case(S, "open brackets up to the line limit", b"[" * (MAX_LINE - 1),
     E("parse_error"))
case(S, "deep nesting inside a param", b'{"op":"hello","proto":'
     + b"[" * 5000 + b"]" * 5000 + b"}", E("parse_error"))

# ---------------------------------------------------------------------------
# Numbers and types

N = "numbers"


def send(type_raw, extra=b""):
    return b'{"op":"queue.send","type":' + type_raw + b',"text":"x"' + \
        extra + b"}"


case(N, "type 1.0 (a real)", send(b"1.0"), P("type"))
case(N, "type 1e3 (a real)", send(b"1e3"), P("type"))
case(N, "type 1e-400 (underflows to a real 0)", send(b"1e-400"), P("type"))
case(N, "type 1e400 (overflows)", send(b"1e400"), E("parse_error"))
case(N, "type -1e400", send(b"-1e400"), E("parse_error"))
case(N, "type 2^63", send(b"9223372036854775808"), E("parse_error"))
case(N, "type -2^63-1", send(b"-9223372036854775809"), E("parse_error"))
case(N, "type 10^23", send(b"100000000000000000000000"), E("parse_error"))
case(N, "type 0 on send", send(b"0"), P("type"))
case(N, "type -1 on send", send(b"-1"), P("type"))
case(N, "type -0 on send", send(b"-0"), P("type"))
case(N, "type -2^63 on send", send(b"-9223372036854775808"), P("type"))
case(N, "type as a string", send(b'"1"'), P("type"))
case(N, "type true", send(b"true"), P("type"))
case(N, "type null", send(b"null"), P("type"))
case(N, "type as an array", send(b"[1]"), P("type"))
case(N, "type as an object", send(b'{"n":1}'), P("type"))
case(N, "type with a leading zero", send(b"01"), E("parse_error"))
case(N, "type with a plus sign", send(b"+1"), E("parse_error"))
case(N, "type in hex", send(b"0x10"), E("parse_error"))
case(N, "type NaN", send(b"NaN"), E("parse_error"))
case(N, "type Infinity", send(b"Infinity"), E("parse_error"))
case(N, "type missing on send", b'{"op":"queue.send","text":"x"}', P("type"))
case(N, "recv type -1", J({"op": "queue.recv", "type": -1}), P("type"))
case(N, "recv type_max 0", J({"op": "queue.recv", "type_max": 0}),
     P("type_max"))
case(N, "recv type_max -5", J({"op": "queue.recv", "type_max": -5}),
     P("type_max"))
case(N, "recv type as a string", J({"op": "queue.recv", "type": "2"}),
     P("type"))
case(N, "except as 1", J({"op": "queue.recv", "type": 1, "except": 1}),
     P("except"))
case(N, "ack as a string", J({"op": "queue.recv", "ack": "true"}), P("ack"))
case(N, "timeout_ms 1.5", J({"op": "queue.recv", "timeout_ms": 1.5}),
     P("timeout_ms"))
case(N, "timeout_ms -1", J({"op": "queue.recv", "timeout_ms": -1}),
     P("timeout_ms"))
case(N, "timeout_ms above max_wait_ms",
     J({"op": "queue.recv", "timeout_ms": 300001}), P("timeout_ms"))
case(N, "send timeout_ms as a string",
     J({"op": "queue.send", "type": 1, "text": "x", "timeout_ms": "10"}),
     P("timeout_ms"))
case(N, "ack tag 0", J({"op": "queue.ack", "tag": 0}), P("tag"))
case(N, "ack tag -5", J({"op": "queue.ack", "tag": -5}), P("tag"))
case(N, "ack tag 1.0", b'{"op":"queue.ack","tag":1.0}', P("tag"))
case(N, "ack tag as a string", J({"op": "queue.ack", "tag": "1"}), P("tag"))
case(N, "ack without tag", J({"op": "queue.ack"}), P("tag"))
case(N, "nack tag -2^63", J({"op": "queue.nack", "tag": -2 ** 63}),
     P("tag"))
case(N, "ack_timeout_ms 0",
     J({"op": "queue.recv", "ack": True, "ack_timeout_ms": 0}),
     P("ack_timeout_ms"))
case(N, "ack_timeout_ms above a day",
     J({"op": "queue.recv", "ack": True, "ack_timeout_ms": 86400001}),
     P("ack_timeout_ms"))
case(N, "prefetch 0", J({"op": "queue.consume", "ack": True,
                         "prefetch": 0}), P("prefetch"))
case(N, "prefetch 65537", J({"op": "queue.consume", "ack": True,
                             "prefetch": 65537}), P("prefetch"))
case(N, "consumer 0 in cancel", J({"op": "cancel", "consumer": 0}),
     P("consumer"))
case(N, "consumer as a string", J({"op": "cancel", "consumer": "1"}),
     P("consumer"))
case(N, "hello proto 1.0", b'{"op":"hello","proto":1.0}', P("proto"))
case(N, "hello proto as a string", J({"op": "hello", "proto": "1"}),
     P("proto"))
case(N, "hello proto 0", J({"op": "hello", "proto": 0, "id": 1}),
     E("unsupported_protocol", {"supported": 1}, 1))
case(N, "hello proto -1", J({"op": "hello", "proto": -1}),
     E("unsupported_protocol", {"supported": 1}))
case(N, "shm var 1.5", b'{"op":"shm.get","var":1.5}', P("var"))
case(N, "shm var as a string", J({"op": "shm.get", "var": "1"}), P("var"))
case(N, "shm var 2^64", b'{"op":"shm.get","var":18446744073709551616}',
     E("parse_error"))
case(N, "raw offset -1", J({"op": "shm.get", "name": "frame",
                            "offset": -1}), P("offset"))
case(N, "raw offset 2^64-2",
     b'{"op":"shm.put","name":"frame","offset":18446744073709551614,'
     b'"text":"ab"}', E("parse_error"))
case(N, "raw length -1", J({"op": "shm.get", "name": "frame",
                            "length": -1}), P("length"))
case(N, "lock_timeout_ms -1", J({"op": "shm.get", "var": 1,
                                 "lock_timeout_ms": -1}),
     P("lock_timeout_ms"))
case(N, "lock_timeout_ms above max_wait_ms",
     J({"op": "shm.get", "var": 1, "lock_timeout_ms": 300001}),
     P("lock_timeout_ms"))
case(N, "huge integer inside a value",
     b'{"op":"queue.send","queue":"tasks","type":1,'
     b'"value":{"n":99999999999999999999}}', E("parse_error"))
case(N, "id 1.5", b'{"op":"hello","id":1.5}', IDBAD())
case(N, "id -0.0", b'{"op":"hello","id":-0.0}', IDBAD())
case(N, "id true", J({"op": "hello", "id": True}), IDBAD())
case(N, "id null", J({"op": "hello", "id": None}), IDBAD())
case(N, "id as an object", J({"op": "hello", "id": {}}), IDBAD())
case(N, "id as an array", J({"op": "hello", "id": [1]}), IDBAD())
case(N, "id 2^63", b'{"op":"hello","id":9223372036854775808}',
     E("parse_error"))
case(N, "bad id beats unknown op", J({"op": "nope", "id": 2.5}), IDBAD())
case(N, "bad id: the op is not run",
     J({"op": "queue.send", "type": 1, "text": "x", "id": "y" * 65}),
     IDBAD())

# ---------------------------------------------------------------------------
# Strings and UTF-8

U = "utf8"


def in_string(raw):
    return b'{"op":"hello","x":"' + raw + b'"}'


case(U, "0xFF inside a string", in_string(b"\xff"), E("not_utf8"))
case(U, "lone continuation byte", in_string(b"\x80"), E("not_utf8"))
case(U, "truncated 2-byte sequence", in_string(b"\xc3"), E("not_utf8"))
case(U, "overlong NUL (C0 80)", in_string(b"\xc0\x80"), E("not_utf8"))
case(U, "overlong slash (C0 AF)", in_string(b"\xc0\xaf"), E("not_utf8"))
case(U, "overlong 3-byte slash (E0 80 AF)", in_string(b"\xe0\x80\xaf"),
     E("not_utf8"))
case(U, "overlong 4-byte (F0 80 80 AF)", in_string(b"\xf0\x80\x80\xaf"),
     E("not_utf8"))
case(U, "UTF-8 encoded surrogate (ED A0 80)", in_string(b"\xed\xa0\x80"),
     E("not_utf8"))
case(U, "code point above U+10FFFF", in_string(b"\xf4\x90\x80\x80"),
     E("not_utf8"))
case(U, "F5 lead byte", in_string(b"\xf5\x80\x80\x80"), E("not_utf8"))
case(U, "Latin-1 text", in_string(b"caf\xe9"), E("not_utf8"))
case(U, "invalid byte in a key", b'{"op":"hello","\xff":1}', E("not_utf8"))
case(U, "invalid byte in the op", b'{"op":"hel\xfflo"}', E("not_utf8"))
case(U, "invalid UTF-8 keeps no id", b'{"id":9,"op":"hello","x":"\xff"}',
     E("not_utf8"))
case(U, "invalid byte at the start of the line", b"\xff" + HELLO,
     E("not_utf8"))
case(U, "text with invalid UTF-8 sends nothing",
     b'{"op":"queue.send","type":1,"text":"\xff\xfe"}', E("not_utf8"))
case(U, "lone high surrogate escape", in_string(b"\\ud800"),
     E("parse_error"))
case(U, "lone low surrogate escape", in_string(b"\\udc00"),
     E("parse_error"))
case(U, "high surrogate then a letter", in_string(b"\\ud800\\u0041"),
     E("parse_error"))
case(U, "two high surrogates", in_string(b"\\ud83d\\ud83d"),
     E("parse_error"))
case(U, "\\u0000 in text",
     b'{"op":"queue.send","type":1,"text":"a\\u0000b"}', E("parse_error"))
case(U, "\\u0000 in a queue name",
     b'{"op":"queue.stat","queue":"default\\u0000x"}', E("parse_error"))
case(U, "\\u0000 in a segment name",
     b'{"op":"shm.stat","name":"default\\u0000"}', E("parse_error"))
case(U, "\\u0000 in a key", b'{"op":"hello","\\u0000":1}',
     E("parse_error"))
case(U, "\\u0000 in the op", b'{"op":"hello\\u0000"}', E("parse_error"))
case(U, "\\u0000 in a string id", b'{"op":"hello","id":"a\\u0000"}',
     E("parse_error"))
case(U, "raw tab inside a string", b'{"op":"hel\tlo"}', E("parse_error"))
case(U, "invalid escape \\x", b'{"op":"hel\\x41lo"}', E("parse_error"))
case(U, "short \\u escape", b'{"op":"hel\\u12"}', E("parse_error"))
case(U, "op as an emoji (surrogate pair)",
     b'{"op":"\\ud83d\\ude00","id":"e"}',
     E("unknown_op", {"op": "\U0001F600"}, "e"))
case(U, "long non-ASCII op is cut on a character boundary",
     J({"op": "\u00e9" * 100}), E("unknown_op", {"op": "\u00e9" * 32}))
case(U, "long non-ASCII queue name is cut on a character boundary",
     J({"op": "queue.stat", "queue": "\u00e9" * 100}),
     E("not_found", {"queue": "\u00e9" * 32}))
case(U, "long non-ASCII param name",
     J({"op": "hello", "a" + "\u00e9" * 40: 1}),
     P("a" + "\u00e9" * 40))
case(U, "id of 33 two-byte characters (66 bytes)",
     J({"op": "hello", "id": "\u00e9" * 33}), IDBAD())
case(U, "id of 65 ASCII bytes", J({"op": "hello", "id": "i" * 65}),
     IDBAD())
case(U, "id of 32 two-byte characters (64 bytes) is fine",
     J({"op": "hello", "id": "\u00e9" * 32}), OK("\u00e9" * 32))
case(U, "id of 16 emoji (64 bytes) is fine",
     J({"op": "hello", "id": "\U0001F600" * 16}), OK("\U0001F600" * 16))

# ---------------------------------------------------------------------------
# Base64 (strict RFC 4648)

B = "base64"


def bad_b64(name, s, op="queue.send"):
    if op == "queue.send":
        req = {"op": "queue.send", "type": 1, "data_b64": s}
    elif op == "php":
        req = {"op": "shm.put", "var": 1, "data_b64": s}
    else:
        req = {"op": "shm.put", "name": "frame", "data_b64": s}
    case(B, name, J(req), P("data_b64"))


bad_b64("padding missing (QQ)", "QQ")
bad_b64("padding short (QQ=)", "QQ=")
bad_b64("padding too long (QQ===)", "QQ===")
bad_b64("a whole group of padding (QUJD====)", "QUJD====")
bad_b64("one character (Q)", "Q")
bad_b64("six characters, no padding (QUJDRA)", "QUJDRA")
bad_b64("non-canonical bits (QR== for QQ==)", "QR==")
bad_b64("non-canonical bits (QUJ= for QUI=)", "QUJ=")
bad_b64("non-canonical bits (eR== for eQ==)", "eR==")
bad_b64("non-canonical bits (/w/=)", "/w/=")
bad_b64("URL-safe alphabet (-_-_)", "-_-_")
bad_b64("URL-safe minus (QU-D)", "QU-D")
bad_b64("URL-safe underscore (QU_D)", "QU_D")
bad_b64("space inside", "QU JD")
bad_b64("newline inside", "QU\nJD")
bad_b64("CRLF at the end", "QUJD\r\n")
bad_b64("leading space", " QUJD")
bad_b64("tab inside", "QU\tJD")
bad_b64("dot (not in the alphabet)", "QU.D")
bad_b64("asterisk", "QUJ*")
bad_b64("padding first", "=QUJ")
bad_b64("padding in the middle", "QQ==QUJD")
bad_b64("padding between characters", "Q=Q=")
bad_b64("only padding", "====")
bad_b64("three padding characters", "Q===")
bad_b64("a character after padding", "QQ=A")
bad_b64("non-ASCII character", "QUJD\u00e9AAA")
bad_b64("percent-encoded padding", "QQ%3D%3D")
bad_b64("strict on shm.put to a php segment", "QR==", op="php")
bad_b64("strict on shm.put to a raw segment", "QQ=", op="raw")
case(B, "data_b64 as a number", J({"op": "queue.send", "type": 1,
                                   "data_b64": 5}), P("data_b64"))
case(B, "data_b64 null", J({"op": "queue.send", "type": 1,
                            "data_b64": None}), P("data_b64"))


def canonical_round_trip(ctx):
    r = ctx.call(ctx.victim, {"op": "queue.recv", "encoding": "base64"})
    ctx.t.assertEqual(r["result"]["msg"]["data_b64"], "eQ==")


case(B, "canonical eQ== is accepted and comes back the same",
     J({"op": "queue.send", "type": 1, "data_b64": "eQ=="}), OK(),
     after=canonical_round_trip)

# ---------------------------------------------------------------------------
# Op semantics

O = "ops"
for op in ("queue.send", "queue.recv", "queue.consume", "queue.stat"):
    req = {"op": op, "queue": "nope", "id": op}
    if op == "queue.send":
        req.update(type=1, text="x")
    case(O, "%s to an unknown queue" % op, J(req),
         E("not_found", {"queue": "nope"}, op))
case(O, "queue name in the wrong case",
     J({"op": "queue.stat", "queue": "Default"}),
     E("not_found", {"queue": "Default"}))
case(O, "empty queue name", J({"op": "queue.recv", "queue": ""}),
     E("not_found", {"queue": ""}))
for op in ("shm.get", "shm.put", "shm.stat"):
    req = {"op": op, "name": "nope"}
    if op != "shm.stat":
        req["var"] = 1
    if op == "shm.put":
        req["text"] = "x"
    case(O, "%s on an unknown segment" % op, J(req),
         E("not_found", {"name": "nope"}))
case(O, "message over the queue's max_bytes",
     J({"op": "queue.send", "queue": "small", "type": 1, "text": "y" * 1025}),
     E("msg_too_big"))
case(O, "message over max_bytes with a timeout does not wait",
     J({"op": "queue.send", "queue": "small", "type": 1, "text": "y" * 1025,
        "timeout_ms": 5000, "id": "w"}), E("msg_too_big", id="w"))
case(O, "message over msgmax",
     J({"op": "queue.send", "type": 1, "text": "m" * (MSGMAX + 1)}),
     E("msg_too_big", {"bytes": MSGMAX + 1, "max": MSGMAX}))
case(O, "base64 message over msgmax",
     J({"op": "queue.send", "type": 1, "data_b64": b64(b"\0" * (MSGMAX + 3))}),
     E("msg_too_big", {"bytes": MSGMAX + 3, "max": MSGMAX}))
case(O, "value on a raw queue",
     J({"op": "queue.send", "type": 1, "value": {"a": 1}}), P("value"))
case(O, "value and text together",
     J({"op": "queue.send", "queue": "tasks", "type": 1, "value": 1,
        "text": "x"}), P("value"))
case(O, "value nested 65 deep for a php queue",
     J({"op": "queue.send", "queue": "php", "type": 1,
        "value": json.loads("[" * 65 + "]" * 65)}), P("value"))
case(O, "text and data_b64 together",
     J({"op": "queue.send", "type": 1, "text": "a", "data_b64": "YQ=="}),
     P("data_b64"))
case(O, "neither text nor data_b64", J({"op": "queue.send", "type": 1}),
     P("text"))
case(O, "except without a type", J({"op": "queue.recv", "except": True}),
     P("except"))
case(O, "except with type 0",
     J({"op": "queue.recv", "type": 0, "except": True}), P("except"))
case(O, "type and type_max together",
     J({"op": "queue.recv", "type": 1, "type_max": 2}), P("type_max"))
case(O, "type_max with except",
     J({"op": "queue.consume", "type_max": 3, "except": True}), P("except"))
case(O, "unknown encoding", J({"op": "queue.recv", "encoding": "utf8"}),
     P("encoding"))
case(O, "encoding in upper case",
     J({"op": "queue.recv", "encoding": "BASE64"}), P("encoding"))
case(O, "ack_timeout_ms without ack",
     J({"op": "queue.recv", "ack_timeout_ms": 5000}), P("ack_timeout_ms"))
case(O, "prefetch without ack", J({"op": "queue.consume", "prefetch": 4}),
     P("prefetch"))
case(O, "prefetch on queue.recv", J({"op": "queue.recv", "prefetch": 2}),
     P("prefetch"))
case(O, "ack of a made-up tag", J({"op": "queue.ack", "tag": 424242,
                                   "id": 1}),
     E("not_found", {"tag": 424242}, 1))
case(O, "nack of a made-up tag", J({"op": "queue.nack", "tag": 2 ** 63 - 1}),
     E("not_found", {"tag": 2 ** 63 - 1}))
case(O, "cancel of nothing", J({"op": "cancel", "target": "nothing"}),
     E("not_found"))
case(O, "cancel of a consumer that never was",
     J({"op": "cancel", "consumer": 99999}), E("not_found"))
case(O, "cancel with target and consumer",
     J({"op": "cancel", "target": 1, "consumer": 1}), P("consumer"))
case(O, "cancel with neither", J({"op": "cancel"}), P("target"))
case(O, "cancel target 1.5", b'{"op":"cancel","target":1.5}', P("target"))
case(O, "cancel target null", J({"op": "cancel", "target": None}),
     P("target"))
case(O, "cancel target as an array", J({"op": "cancel", "target": [1]}),
     P("target"))
case(O, "raw put that does not fit",
     J({"op": "shm.put", "name": "frame", "offset": 4095, "text": "ab"}),
     E("out_of_range"))
case(O, "raw put at offset 2^63-1",
     J({"op": "shm.put", "name": "frame", "offset": 2 ** 63 - 1,
        "text": "ab"}), E("out_of_range"))
case(O, "raw get past the end",
     J({"op": "shm.get", "name": "frame", "offset": 4097}),
     E("out_of_range"))
case(O, "raw get length past the end",
     J({"op": "shm.get", "name": "frame", "offset": 4000, "length": 97}),
     E("out_of_range"))
case(O, "raw get 1 byte at the very end",
     J({"op": "shm.get", "name": "frame", "offset": 4096, "length": 1}),
     E("out_of_range"))
case(O, "raw get with offset and length 2^63-1",
     J({"op": "shm.get", "name": "frame", "offset": 2 ** 63 - 1,
        "length": 2 ** 63 - 1}), E("out_of_range"))
case(O, "php get of a missing var", J({"op": "shm.get", "var": 4242}),
     E("not_found", {"var": 4242}))
case(O, "php del of a missing var", J({"op": "shm.del", "var": -2 ** 63}),
     E("not_found", {"var": -2 ** 63}))
case(O, "php get without var", J({"op": "shm.get"}), P("var"))
case(O, "php put without var", J({"op": "shm.put", "text": "x"}), P("var"))
case(O, "offset on a php segment",
     J({"op": "shm.get", "var": 1, "offset": 0}), P("offset"))
case(O, "length on a php segment",
     J({"op": "shm.get", "var": 1, "length": 3}), P("length"))
case(O, "var on a raw segment",
     J({"op": "shm.get", "name": "frame", "var": 1}), P("var"))
case(O, "value on a raw segment",
     J({"op": "shm.put", "name": "frame", "value": [1]}), P("value"))
case(O, "shm.has on a raw segment",
     J({"op": "shm.has", "name": "frame", "var": 1}), P("name"))
case(O, "shm.vars on a raw segment", J({"op": "shm.vars", "name": "frame"}),
     P("name"))
case(O, "shm.put with length (not a put param)",
     J({"op": "shm.put", "var": 1, "length": 3, "text": "x"}), P("length"))
case(O, "shm.get encoding json", J({"op": "shm.get", "var": 1,
                                    "encoding": "json"}), P("encoding"))
case(O, "value nested 65 deep for a php segment",
     J({"op": "shm.put", "var": 1,
        "value": json.loads('{"a":' * 65 + "1" + "}" * 65)}), P("value"))
case(O, "php put that can never fit",
     J({"op": "shm.put", "name": "tiny", "var": 1, "text": "t" * 400}),
     E("no_space", lambda d: d["bytes"] == 409 and d["free"] < 409))
case(O, "hello proto 2", J({"op": "hello", "proto": 2}),
     E("unsupported_protocol", {"supported": 1}))
case(O, "stats with a param", J({"op": "stats", "x": None}), P("x"))
case(O, "queue.list with a queue", J({"op": "queue.list",
                                      "queue": "default"}), P("queue"))
case(O, "shm.list with a name", J({"op": "shm.list", "name": "default"}),
     P("name"))


def ack_twice(ctx):
    ctx.ok(ctx.victim, {"op": "queue.send", "type": 1, "text": "once"})
    tag = ctx.ok(ctx.victim, {"op": "queue.recv", "ack": True})["msg"]["tag"]
    ctx.ok(ctx.victim, {"op": "queue.ack", "tag": tag})
    return J({"op": "queue.ack", "tag": tag, "id": "again"}), \
        [E("not_found", {"tag": tag}, "again")]


def nack_twice(ctx):
    ctx.ok(ctx.victim, {"op": "queue.send", "type": 1, "text": "twice"})
    tag = ctx.ok(ctx.victim, {"op": "queue.recv", "ack": True})["msg"]["tag"]
    ctx.ok(ctx.victim, {"op": "queue.nack", "tag": tag})
    return J({"op": "queue.nack", "tag": tag}), \
        [E("not_found", {"tag": tag})]


def drain_default(ctx):
    m = ctx.ok(ctx.victim, {"op": "queue.recv"})["msg"]
    ctx.t.assertIsNotNone(m, "the nacked message went back")
    ctx.t.assertEqual(ctx.ok(ctx.victim, {"op": "queue.recv"})["msg"], None)


def other_conns_tag(ctx):
    ctx.ok(ctx.other, {"op": "queue.send", "type": 1, "text": "theirs"})
    tag = ctx.ok(ctx.other, {"op": "queue.recv", "ack": True})["msg"]["tag"]
    ctx.state["tag"] = tag
    return J({"op": "queue.ack", "tag": tag}), [E("not_found", {"tag": tag})]


def owner_still_acks(ctx):
    # the failed ack changed nothing: the owner's tag is still live
    ctx.ok(ctx.other, {"op": "queue.ack", "tag": ctx.state["tag"]})


def other_conns_consumer(ctx):
    n = ctx.ok(ctx.other, {"op": "queue.consume", "queue": "small",
                           "type": 77})["consumer"]
    ctx.state["consumer"] = n
    return J({"op": "cancel", "consumer": n}), [E("not_found")]


def owner_cancels_consumer(ctx):
    r = ctx.ok(ctx.other, {"op": "cancel",
                           "consumer": ctx.state["consumer"]})
    ctx.t.assertEqual(r, {"consumer": ctx.state["consumer"],
                          "cancelled": True})


def other_conns_parked(ctx):
    ctx.other.send({"op": "queue.recv", "queue": "small", "type": 78,
                    "timeout_ms": 60000, "id": "theirs"})
    wait_for(lambda: ctx.ok(ctx.victim, {"op": "queue.stat",
                                         "queue": "small"})["waiters"] == 1)
    return J({"op": "cancel", "target": "theirs"}), [E("not_found")]


def owner_cancels_parked(ctx):
    ctx.other.send({"op": "cancel", "target": "theirs"})
    r = ctx.other.reply()
    ctx.t.assertEqual((r["id"], r["error"]["code"]), ("theirs", "cancelled"))
    ctx.t.assertEqual(ctx.other.reply()["result"],
                      {"target": "theirs", "cancelled": True})


def cancelled_consumer_twice(ctx):
    n = ctx.ok(ctx.victim, {"op": "queue.consume", "queue": "small",
                            "type": 79})["consumer"]
    ctx.ok(ctx.victim, {"op": "cancel", "consumer": n})
    return J({"op": "cancel", "consumer": n}), [E("not_found")]


def seventeenth_wait(ctx):
    for i in range(16):
        ctx.victim.send({"op": "queue.recv", "queue": "small", "type": 80,
                         "timeout_ms": 60000, "id": "w%d" % i})
    wait_for(lambda: ctx.ok(ctx.other, {"op": "queue.stat",
                                        "queue": "small"})["waiters"] == 16)
    # a receive, a consumer and a send that would wait are refused;
    # requests that do not wait are still served
    return J({"op": "queue.recv", "queue": "small", "type": 80,
              "timeout_ms": 60000, "id": "w16"}) + \
        J({"op": "queue.consume", "queue": "small", "id": "c17"}) + \
        J({"op": "queue.send", "queue": "small", "type": 1, "text": "x" * 1024,
           "id": "fill"}) + \
        J({"op": "queue.send", "queue": "small", "type": 1, "text": "y",
           "timeout_ms": 60000, "id": "s17"}) + \
        J({"op": "shm.get", "var": 1, "lock_timeout_ms": 0, "id": "g17"}), \
        [E("too_many_waits", id="w16"), E("too_many_waits", id="c17"),
         OK("fill"), E("too_many_waits", id="s17"),
         E("not_found", {"var": 1}, "g17")]


def cancel_sixteen(ctx):
    # the full-size send above fit the empty queue; take it out again
    ctx.ok(ctx.other, {"op": "queue.recv", "queue": "small", "type": 1})
    for i in range(16):
        ctx.victim.send({"op": "cancel", "target": "w%d" % i})
        r = ctx.victim.reply()
        ctx.t.assertEqual((r["id"], r["error"]["code"]),
                          ("w%d" % i, "cancelled"))
        ctx.t.assertTrue(ctx.victim.reply()["result"]["cancelled"])


def queue_full(ctx):
    ctx.ok(ctx.victim, {"op": "queue.send", "queue": "small", "type": 1,
                        "text": "f" * 1000})
    return J({"op": "queue.send", "queue": "small", "type": 1,
              "text": "g" * 100, "id": "full"}), \
        [E("queue_full", id="full")]


def drain_small(ctx):
    m = ctx.ok(ctx.victim, {"op": "queue.recv", "queue": "small"})["msg"]
    ctx.t.assertEqual(m["text"], "f" * 1000)
    ctx.t.assertEqual(ctx.ok(ctx.victim, {"op": "queue.stat",
                                          "queue": "small"})["messages"], 0)


def text_of_binary(ctx):
    ctx.ok(ctx.victim, {"op": "queue.send", "type": 3, "data_b64": "/w=="})
    return J({"op": "queue.recv", "type": 3, "encoding": "text",
              "id": "t"}), [E("not_utf8", None, "t")]


def binary_was_put_back(ctx):
    m = ctx.ok(ctx.victim, {"op": "queue.recv", "type": 3,
                            "encoding": "base64"})["msg"]
    ctx.t.assertEqual((m["type"], m["data_b64"]), (3, "/w=="))


def shm_text_of_binary(ctx):
    ctx.ok(ctx.victim, {"op": "shm.put", "var": 77, "data_b64": "/w=="})
    return J({"op": "shm.get", "var": 77, "encoding": "text"}), \
        [E("not_utf8", None)]


def shm_del_77(ctx):
    ctx.ok(ctx.victim, {"op": "shm.del", "var": 77})


def shm_del_twice(ctx):
    ctx.ok(ctx.victim, {"op": "shm.put", "var": 78, "value": [1, 2]})
    ctx.ok(ctx.victim, {"op": "shm.del", "var": 78})
    return J({"op": "shm.del", "var": 78}), [E("not_found", {"var": 78})]


def no_space_keeps_old(ctx):
    ctx.ok(ctx.victim, {"op": "shm.put", "name": "tiny", "var": 5,
                        "text": "old"})
    return J({"op": "shm.put", "name": "tiny", "var": 5,
              "text": "n" * 300}), \
        [E("no_space", lambda d: d["bytes"] == 309)]


def old_value_kept(ctx):
    r = ctx.ok(ctx.victim, {"op": "shm.get", "name": "tiny", "var": 5})
    ctx.t.assertEqual(r["text"], "old")
    ctx.ok(ctx.victim, {"op": "shm.del", "name": "tiny", "var": 5})


dyn(O, "ack of a tag already acked", ack_twice)
dyn(O, "nack of a tag already nacked", nack_twice, after=drain_default)
dyn(O, "ack of another connection's tag", other_conns_tag,
    after=owner_still_acks)
dyn(O, "cancel of another connection's consumer", other_conns_consumer,
    after=owner_cancels_consumer)
dyn(O, "cancel of another connection's parked request", other_conns_parked,
    after=owner_cancels_parked)
dyn(O, "cancel of a consumer already cancelled", cancelled_consumer_twice)
dyn(O, "a 17th parked wait or consumer", seventeenth_wait,
    after=cancel_sixteen)
dyn(O, "send to a full queue without timeout", queue_full,
    after=drain_small)
dyn(O, "encoding text on a binary message (put back)", text_of_binary,
    after=binary_was_put_back)
dyn(O, "encoding text on a binary shm var", shm_text_of_binary,
    after=shm_del_77)
dyn(O, "shm.del of a var already deleted", shm_del_twice)
dyn(O, "no_space keeps the old value", no_space_keeps_old,
    after=old_value_kept)

# A line that is not UTF-8 gets not_utf8 even when a JSON syntax error comes
# before its first bad byte (these once got parse_error).
case(F, "TLS ClientHello", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"
     b"\xfc\x8e\x13", E("not_utf8"))
case(F, "HTTP request line with a Latin-1 path", b"GET /caf\xe9 HTTP/1.1",
     E("not_utf8"))
case(S, "syntax error before an invalid byte", b'{"op":"hello",}\xff',
     E("not_utf8"))
KNOWN_BUGS = {}


def known_bug(why, racy=False):
    """A test of documented behaviour the daemon does not have yet: it is
    run, must fail (else remove the mark), and is reported. A racy bug
    shows in most runs, not all: a pass is then reported, not failed."""
    def wrap(fn):
        def run(self):
            try:
                fn(self)
            except AssertionError as e:
                msg = "KNOWN BUG: %s: %s (%s)" % (fn.__name__, why,
                                                   str(e).splitlines()[0])
                print("\n" + msg, file=sys.stderr)
                KNOWN_BUG_REPORTS.append(msg)
                return
            if racy:
                print("\nKNOWN BUG (racy) not reproduced this run: %s"
                      % fn.__name__, file=sys.stderr)
                return
            self.fail("%s now passes: remove its @known_bug mark"
                      % fn.__name__)
        run.__name__ = fn.__name__
        run.__doc__ = fn.__doc__
        return run
    return wrap


# ---------------------------------------------------------------------------

def setUpModule():
    # 1,100 clients here, as many connections in the daemon (which
    # inherits this limit)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    main = Daemon(
        queues={"default": {}, "small": {"max_bytes": "1K"},
                "tasks": {"payload": "json"}, "php": {"payload": "php"},
                "by": {}, "bulk": {}},
        shms={"default": {"size": "64K"}, "tiny": {"size": "256"},
              "frame": {"size": "4K", "format": "raw"},
              "big": {"size": "1M", "format": "raw"},
              "mid": {"size": "%dK" % MID_KIB, "format": "raw"}},
        server={"max_line_bytes": "32K", "max_conns": str(MAX_CONNS),
                "partial_line_timeout_ms": "20000"})
    limits = Daemon(
        queues={"default": {}, "by": {}},
        shms={"default": {"size": "32K", "format": "raw"}},
        server={"partial_line_timeout_ms": str(PARTIAL_MS),
                "max_output_bytes": "64K"})
    for name, d in (("main", main), ("limits", limits)):
        DAEMONS[name] = d
        d.start()


def tearDownModule():
    keys = []
    for d in DAEMONS.values():
        keys += [q["key"] for q in d.queues.values()]
        keys += [m["key"] for m in d.shms.values()]
        d.cleanup()
    out = subprocess.run(["ipcs", "-a"], capture_output=True,
                         text=True).stdout
    left = [k for k in keys if "0x%08x" % k in out]
    if left:
        raise AssertionError("IPC objects left behind: %s" %
                             ", ".join("0x%08x" % k for k in left))
    for msg in KNOWN_BUG_REPORTS:
        print(msg, file=sys.stderr)
    print("hostile inputs: %d cases, %d connections, all answered as "
          "documented%s" % (COUNT["cases"], COUNT["conns"],
                            " (%d known bugs reported above)" %
                            len(KNOWN_BUG_REPORTS)
                            if KNOWN_BUG_REPORTS else ""))


class Ctx:
    """What a dynamic case works with."""

    def __init__(self, t, d, victim, other):
        self.t, self.d, self.victim, self.other = t, d, victim, other
        self.state = {}

    def call(self, c, req):
        return c.call(req)

    def ok(self, c, req):
        r = c.call(req)
        self.t.assertIn("result", r, "setup %r: %r" % (req, r))
        return r["result"]


class Base(unittest.TestCase):
    daemon = None

    @classmethod
    def setUpClass(cls):
        cls.d = DAEMONS[cls.daemon]
        cls.by = connect(cls.d)
        cls.by_n = 0
        # the start-up probe connection is gone: a clean baseline
        wait_for(lambda: cls.by.call({"op": "stats"})["result"]
                 ["connections"]["current"] == 1)
        cls.rss0 = rss_kib(cls.d)
        cls.fds0 = fd_count(cls.d)

    @classmethod
    def tearDownClass(cls):
        cls.by.close()

    def bystander(self):
        """The long-lived client on another connection is served exactly
        as usual: a send and a receive on its own queue."""
        n = type(self).by_n = type(self).by_n + 1
        text = "bystander %d \u2713" % n
        r = self.by.call({"op": "queue.send", "queue": "by", "type": 7,
                          "text": text, "id": "bs%d" % n})
        self.assertEqual(r, {"id": "bs%d" % n, "result": {
            "queue": "by", "type": 7, "bytes": len(text.encode())}})
        r = self.by.call({"op": "queue.recv", "queue": "by", "id": n})
        self.assertEqual(r["id"], n)
        self.assertEqual(r["result"]["msg"]["text"], text)

    def stats(self):
        return self.by.call({"op": "stats"})["result"]

    def alive(self):
        self.assertIsNone(self.d.proc.poll(), "the daemon died")

    def check(self, r, spec, raw, where):
        """One reply against its expectation."""
        if spec["code"] == "ok":
            self.assertIn("result", r, where)
            self.assertNotIn("error", r, where)
        else:
            self.assertIn("error", r, where)
            self.assertNotIn("result", r, where)
            err = r["error"]
            self.assertEqual(err["code"], spec["code"], where)
            self.assertIsInstance(err["message"], str, where)
            self.assertTrue(err["message"], where)
            want = spec["data"]
            if want is POS:
                self.assertEqual(set(err["data"]), {"position"}, where)
                pos = err["data"]["position"]
                self.assertIsInstance(pos, int, where)
                self.assertTrue(0 <= pos <= len(raw), where)
            elif want is None:
                self.assertNotIn("data", err, where)
            elif callable(want):
                self.assertTrue(want(err["data"]), where)
            else:
                self.assertEqual(err.get("data"), want, where)
        if spec["id"] is ABSENT:
            self.assertNotIn("id", r, where)
        else:
            self.assertIn("id", r, where)
            self.assertEqual(r["id"], spec["id"], where)
            self.assertIs(type(r["id"]), type(spec["id"]), where)


class HostileInputTest(Base):
    """The table, and the abuse tests that need the main daemon's limits
    (1,100 connections, big segments). Tests run in name order; the last
    one checks memory and descriptors after all of them."""
    daemon = "main"

    def run_case(self, i, cs, victim, other):
        """Send one case; check its replies and the connection after it."""
        ctx = Ctx(self, self.d, victim, other)
        if callable(cs.raw):
            raw, replies = cs.raw(ctx)
        else:
            raw, replies = cs.raw, cs.replies
        where = "case %d %s %s: %r" % (i, cs.cat, cs.name, raw[:120])
        if cs.kept:
            victim.send_raw(raw + b'{"op":"hello","id":"probe %d"}\n' % i)
            got = []
            for spec in replies:
                r = victim.reply()
                got.append(r)
                self.check(r, spec, raw, where + " -> %r" % got)
            # the connection is still usable, and nothing more came
            r = victim.reply()
            self.assertEqual(r.get("id"), "probe %d" % i,
                             where + ": extra reply %r" % r)
            self.assertEqual(r["result"]["server"], "ipcbridge")
        else:
            c = connect(self.d)
            try:
                c.send_raw(raw)
                c.shutdown_write()
                for spec in replies:
                    self.check(c.reply(), spec, raw, where)
                self.assertTrue(c.closed(), where + ": not closed")
                self.assertEqual(c.buf, b"", where + ": extra bytes")
            finally:
                c.close()
        if cs.after is not None:
            cs.after(ctx)
        return replies

    def test_10_table(self):
        """Every case of the table gets exactly its documented replies;
        the connection stays usable (or closes after a half-close); the
        bystander is served throughout."""
        cats = {}
        for cs in TABLE:
            cats.setdefault(cs.cat, []).append(cs.name)
        self.assertGreaterEqual(len(TABLE), 80)
        self.assertEqual(len({cs.name for cs in TABLE}), len(TABLE),
                         "case names are unique")
        victim, other = connect(self.d), connect(self.d)
        try:
            self.bystander()
            for i, cs in enumerate(TABLE):
                if cs.name in KNOWN_BUGS:
                    self.run_known_bug(i, cs)
                    continue
                self.run_case(i, cs, victim, other)
                COUNT["cases"] += 1
                if i % 10 == 9:
                    self.bystander()
            self.bystander()
        finally:
            victim.close()
            other.close()
        self.alive()
        print("\ntable: %s" % ", ".join("%s %d" % (k, len(v))
                                        for k, v in cats.items()),
              file=sys.stderr)
        # nothing was left behind in the queues or segments
        for q in ("default", "small", "tasks", "php", "by"):
            st = self.by.call({"op": "queue.stat", "queue": q})["result"]
            self.assertEqual((st["messages"], st["waiters"],
                              st["consumers"]), (0, 0, 0), q)
        self.assertEqual(self.stats()["messages"]["unacked"], 0)
        self.assertEqual(self.stats()["messages"]["lost"], 0)

    def run_known_bug(self, i, cs):
        """Run a known-bug case on its own connection: the daemon must
        keep serving, and the documented answer must still be missing."""
        c = connect(self.d)
        try:
            c.send_raw(cs.raw + b'{"op":"hello","id":"kb"}\n')
            got = []
            while True:
                r = c.reply()
                if r.get("id") == "kb":
                    break
                got.append(r)
        finally:
            c.close()
        self.alive()
        try:
            self.assertEqual(len(got), len(cs.replies))
            for r, spec in zip(got, cs.replies):
                self.check(r, spec, cs.raw, cs.name)
        except AssertionError:
            msg = ("KNOWN BUG: %s %r: got %s, documented %s (%s)" %
                   (cs.name, cs.raw, [r.get("error", {}).get("code", "ok")
                                      for r in got],
                    [s["code"] for s in cs.replies], KNOWN_BUGS[cs.name]))
            print("\n" + msg, file=sys.stderr)
            KNOWN_BUG_REPORTS.append(msg)
            return
        self.fail("known bug %r is fixed: remove it from KNOWN_BUGS"
                  % cs.name)

    def repeat_round(self, c, cases, reps):
        """All static cases, reps times, pipelined on one connection, one
        repetition (~280 lines, well under 256 KiB of replies) at a time;
        every reply checked in order. Returns the expected error counts. (Each
        repetition is read back before the next is sent, so the daemon
        never backs up: see test_backlog_leaves_the_connection_deaf.)"""
        blob = b"".join(cs.raw for cs in cases)
        expected = [(spec, cs) for cs in cases for spec in cs.replies]
        for _ in range(reps):
            c.send_raw(blob)
            for spec, cs in expected:
                self.check(c.reply(), spec, cs.raw, cs.name)
        c.send_raw(b'{"op":"hello","id":"end"}\n')
        self.assertEqual(c.reply()["id"], "end")
        counts = {}
        for spec, _ in expected:
            if spec["code"] != "ok":
                counts[spec["code"]] = counts.get(spec["code"], 0) + reps
        return counts

    def test_20_repeat_rounds_memory_and_counters(self):
        """The static cases again, ~25,000 lines per round: each round
        leaves the error counters exactly one error higher per bad line,
        and a second identical round does not grow the daemon's memory
        (no per-input leak)."""
        cases = [cs for cs in TABLE if cs.static and
                 cs.name not in KNOWN_BUGS]
        lines = sum(cs.raw.count(b"\n") for cs in cases)
        reps = max(1, 25000 // lines)
        c = connect(self.d, timeout=30)
        self.addCleanup(c.close)
        self.repeat_round(c, cases, 5)                  # warm-up
        rss = [rss_kib(self.d)]
        for _ in range(2):
            before = self.stats()["errors"]
            counts = self.repeat_round(c, cases, reps)
            after = self.stats()["errors"]
            delta = {k: after.get(k, 0) - before.get(k, 0)
                     for k in set(after) | set(before)}
            delta = {k: v for k, v in delta.items() if v}
            self.assertEqual(delta, counts)
            self.bystander()
            rss.append(rss_kib(self.d))
        print("\nrepeat rounds: %d cases x %d, %d lines per round; VmRSS "
              "%s KiB" % (len(cases), reps, lines * reps,
                          " -> ".join(map(str, rss))), file=sys.stderr)
        rss_less(self, rss[2] - rss[1], REPEAT_ROUND_GROWTH_KIB,
                        "memory grows with every round of bad input")
        rss_less(self, rss[2] - self.rss0, RSS_GROWTH_MAX_KIB)
        for q in ("default", "small", "tasks", "php"):
            st = self.by.call({"op": "queue.stat", "queue": q})["result"]
            self.assertEqual(st["messages"], 0, q)
        self.alive()

    def test_30_half_close(self):
        """shutdown(SHUT_WR) after hostile and valid lines: every reply
        still arrives, in order (a parked wait's when it ends), then the
        daemon closes the connection."""
        c = connect(self.d)
        try:
            c.send_raw(b"\x00junk\n" + J({"op": "hello", "id": 1}) +
                       J({"op": "queue.recv", "queue": "small", "type": 5,
                          "timeout_ms": 300, "id": "parked"}) +
                       b'{"op":"nope","id":2}\n' +
                       J({"op": "queue.recv", "queue": "small", "type": 6,
                          "timeout_ms": 200}) +          # held: no id
                       b"[1,2]\n" + b"x" * (MAX_LINE + 5) + b"\n" +
                       b'{"op":"hello","id":3}')         # last line, no LF
            c.shutdown_write()
            self.assertEqual(c.reply()["error"]["code"], "parse_error")
            self.assertEqual(c.reply()["id"], 1)
            self.assertEqual(c.reply()["error"]["code"], "unknown_op")
            # the held receive (200 ms) blocks the lines behind it; the
            # parked one (300 ms) is answered when it ends, after them
            rest = [c.reply() for _ in range(5)]
            self.assertEqual(rest[0], {"result": {"msg": None,
                                                  "timed_out": True}})
            self.assertEqual(rest[1]["error"]["code"], "invalid_request")
            self.assertEqual(rest[2]["error"]["code"], "line_too_long")
            self.assertEqual(rest[3]["id"], 3)
            self.assertEqual(rest[4], {"id": "parked", "result": {
                "msg": None, "timed_out": True}})
            self.assertTrue(c.closed())
            self.assertEqual(c.buf, b"")
        finally:
            c.close()
        self.bystander()

    def test_40_reset_in_the_middle_of_a_big_reply(self):
        """A client that asks for a 1.4 MB reply and resets the connection
        (SO_LINGER 0) after the first bytes: the daemon drops it, keeps no
        descriptor or buffer, and serves everyone else."""
        wait_for(lambda: self.stats()["connections"]["current"] == 1)
        fds = fd_count(self.d)
        rss = []
        for i in range(12):
            c = connect(self.d)
            c.send_raw(J({"op": "shm.get", "name": "big",
                          "encoding": "base64", "id": i}))
            self.assertTrue(c.sock.recv(4096).startswith(b'{"id":%d' % i))
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                              struct.pack("ii", 1, 0))
            c.close()
            self.bystander()
            wait_for(lambda: self.stats()["connections"]["current"] == 1)
            rss.append(rss_kib(self.d))
        self.assertEqual(fd_count(self.d), fds)
        # a kept 1.4 MB output buffer per reset would add ~16 MiB
        rss_less(self, rss[-1] - rss[1], 4096, rss)
        self.alive()

    def test_41_reset_with_unacked_deliveries(self):
        """20 deliveries with ack: true, the client reads the first bytes
        of the replies and resets the connection: all 20 go back on their
        queue, none is lost."""
        m0 = self.stats()["messages"]
        for i in range(20):
            self.assertIn("result", self.by.call({
                "op": "queue.send", "queue": "bulk", "type": 1,
                "text": "%04d" % i + "a" * 600}))
        c = connect(self.d)
        c.send_raw(b"".join(J({"op": "queue.recv", "queue": "bulk",
                               "ack": True, "encoding": "base64"})
                            for _ in range(20)))
        # all 20 delivered, their replies in the socket; read a little
        wait_for(lambda: self.stats()["messages"]["unacked"] == 20)
        self.assertTrue(c.sock.recv(100).startswith(b'{"result"'))
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                          struct.pack("ii", 1, 0))
        c.close()
        wait_for(lambda: self.stats()["messages"]["redelivered"] ==
                 m0["redelivered"] + 20)
        st = self.by.call({"op": "queue.stat", "queue": "bulk"})["result"]
        self.assertEqual(st["messages"], 20)
        m1 = self.stats()["messages"]
        self.assertEqual(m1["lost"], 0)
        self.assertEqual(m1["unacked"], 0)
        got = sorted(self.by.call({"op": "queue.recv", "queue": "bulk"})
                     ["result"]["msg"]["text"][:4] for _ in range(20))
        self.assertEqual(got, ["%04d" % i for i in range(20)])
        self.bystander()

    def test_42_reset_with_deliveries_in_unsent_output(self):
        """Two parked receives, then a request for a reply ~128 KiB bigger
        than the socket buffer, never read (unsent, but below the backlog
        mark); two messages arrive for the parked receives, so their
        replies wait in the unsent output; then a reset: both messages go
        back on their queue, none is lost."""
        m0 = self.stats()["messages"]
        out0 = self.stats()["bytes"]["out"]
        c = connect(self.d)
        c.send_raw(J({"op": "queue.recv", "queue": "bulk", "type": 4,
                      "timeout_ms": 60000, "id": "p1"}) +
                   J({"op": "queue.recv", "queue": "bulk", "type": 4,
                      "timeout_ms": 60000, "id": "p2"}) +
                   J({"op": "shm.get", "name": "mid", "encoding": "base64"}))
        wait_for(lambda: self.by.call({"op": "queue.stat", "queue": "bulk"})
                 ["result"]["waiters"] == 2)
        # the precondition: part of the reply is still in the daemon
        reply = 4 * ((MID_KIB * 1024 + 2) // 3)
        self.assertLess(self.stats()["bytes"]["out"] - out0, reply)
        by0 = self.by_n
        for i in range(2):
            self.assertIn("result", self.by.call({
                "op": "queue.send", "queue": "bulk", "type": 4,
                "text": "parked %d" % i + "p" * 7000}))
        wait_for(lambda: self.stats()["messages"]["received"] ==
                 m0["received"] + 2 + (self.by_n - by0))
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                          struct.pack("ii", 1, 0))
        c.close()
        wait_for(lambda: self.stats()["connections"]["current"] == 1)
        m1 = self.stats()["messages"]
        self.assertEqual(m1["put_back"] - m0["put_back"], 2)
        self.assertEqual(m1["lost"], 0)
        got = sorted(self.by.call({"op": "queue.recv", "queue": "bulk"})
                     ["result"]["msg"]["text"][:8] for _ in range(2))
        self.assertEqual(got, ["parked 0", "parked 1"])
        st = self.by.call({"op": "queue.stat", "queue": "bulk"})["result"]
        self.assertEqual((st["messages"], st["waiters"]), (0, 0))
        self.bystander()

    def test_43_backlogged_waits_take_nothing_then_reset(self):
        """Two parked receives, then a 1.4 MB reply never read: the
        connection is backed up, so its waits take no message (they stay
        in the kernel queue for others: guarantees.md); a reset then ends
        the waits, and nothing is lost or put back."""
        m0 = self.stats()["messages"]
        c = connect(self.d)
        c.send_raw(J({"op": "queue.recv", "queue": "bulk", "type": 5,
                      "timeout_ms": 60000, "id": "p1"}) +
                   J({"op": "queue.recv", "queue": "bulk", "type": 5,
                      "timeout_ms": 60000, "id": "p2"}) +
                   J({"op": "shm.get", "name": "big", "encoding": "base64"}))
        wait_for(lambda: self.by.call({"op": "queue.stat", "queue": "bulk"})
                 ["result"]["waiters"] == 2)
        for i in range(2):
            self.assertIn("result", self.by.call({
                "op": "queue.send", "queue": "bulk", "type": 5,
                "text": "kept %d" % i}))
        time.sleep(0.2)                 # many poll passes
        st = self.by.call({"op": "queue.stat", "queue": "bulk"})["result"]
        self.assertEqual((st["messages"], st["waiters"]), (2, 2))
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                          struct.pack("ii", 1, 0))
        c.close()
        wait_for(lambda: self.by.call({"op": "queue.stat", "queue": "bulk"})
                 ["result"]["waiters"] == 0)
        m1 = self.stats()["messages"]
        self.assertEqual((m1["put_back"], m1["lost"]),
                         (m0["put_back"], 0))
        for i in range(2):
            r = self.by.call({"op": "queue.recv", "queue": "bulk"})
            self.assertEqual(r["result"]["msg"]["text"], "kept %d" % i)
        self.bystander()

    def test_50_pipelined_flood_is_fair(self):
        """A client pipelines ~40,000 hostile lines (and reads its replies);
        a bystander's requests are answered while the flood is still being
        worked through, each within a second; every flood reply is the
        documented one. (On a daemon of its own: should the flood client
        fall behind by more than 256 KiB, test_backlog_leaves_the_
        connection_deaf would leave its connection open for good.)"""
        d = Daemon(queues={"default": {}, "by": {}, "small":
                           {"max_bytes": "1K"}, "tasks": {"payload": "json"},
                           "php": {"payload": "php"}},
                   shms={"default": {"size": "64K"}, "tiny": {"size": "256"},
                         "frame": {"size": "4K", "format": "raw"}},
                   server={"max_line_bytes": "32K"})
        self.addCleanup(d.cleanup)
        d.start()
        rss0 = rss_kib(d)
        by = connect(d)
        self.addCleanup(by.close)
        cases = [cs for cs in TABLE if cs.static and
                 cs.name not in KNOWN_BUGS and len(cs.raw) < 2048]
        expected = [(spec, cs) for cs in cases for spec in cs.replies]
        reps = 40000 // len(expected)
        total = reps * len(expected)
        blob = b"".join(cs.raw for cs in cases) * reps
        flood = connect(d, timeout=60)
        self.addCleanup(flood.close)
        done = [0]
        chunks = []

        def reader():
            try:
                while done[0] < total:
                    data = flood.sock.recv(1 << 20)
                    if not data:
                        return
                    chunks.append(data)
                    done[0] += data.count(b"\n")
            except OSError:
                return

        rt = threading.Thread(target=reader)
        wt = threading.Thread(target=flood.send_raw, args=(blob,))
        rt.start()
        wt.start()
        during, worst, n = 0, 0.0, 0
        try:
            for n in range(1, 31):
                t0 = time.monotonic()
                r = by.call({"op": "queue.send", "queue": "by", "type": 1,
                             "text": "fair %d" % n})
                self.assertIn("result", r)
                r = by.call({"op": "queue.recv", "queue": "by"})
                self.assertEqual(r["result"]["msg"]["text"], "fair %d" % n)
                worst = max(worst, time.monotonic() - t0)
                if done[0] < total:
                    during += 1
        finally:
            wt.join()
            rt.join()
        self.assertEqual(done[0], total)
        lines = b"".join(chunks).split(b"\n")
        self.assertEqual(lines[-1], b"")
        for i, line in enumerate(lines[:-1]):
            spec, cs = expected[i % len(expected)]
            self.check(json.loads(line), spec, cs.raw, cs.name)
        print("\nflood: %d lines; bystander served %d of %d times during "
              "it, slowest round trip %.1f ms; VmRSS %d -> %d KiB" %
              (total, during, n, worst * 1000, rss0, rss_kib(d)),
              file=sys.stderr)
        self.assertGreaterEqual(during, 5, "the bystander waited for the "
                                "whole flood")
        self.assertLess(worst, 1.0)
        rss_less(self, rss_kib(d) - rss0, RSS_GROWTH_MAX_KIB)
        self.assertIsNone(d.proc.poll())

    def partial_line_wave(self, n, pieces, extra=0):
        """n + extra clients connect at once; the extra ones must get the
        documented busy line and be closed. Each accepted client sends a
        partial line in the given pieces (one read each), waits, then
        ends the line; every one is answered. Returns the daemon's VmRSS
        (KiB) before, with all the partial lines, and after all closed."""
        wait_for(lambda: self.stats()["connections"]["current"] == 1)
        s0 = self.stats()
        rss0, fds0 = rss_kib(self.d), fd_count(self.d)
        conns = []
        try:
            for i in range(n + extra):
                conns.append(connect(self.d))
            wait_for(lambda: self.stats()["errors"].get("busy", 0) ==
                     s0["errors"].get("busy", 0) + extra)
            self.assertEqual(self.stats()["connections"]["current"], n + 1)
            busy = b'{"error":{"code":"busy","message":"too many ' \
                b'connections (max_conns reached); try again later"}}'
            # the refused ones have their line (and EOF) waiting already
            poller = select.poll()
            for c in conns:
                poller.register(c.sock, select.POLLIN)
            readable = {fd for fd, _ in poller.poll(500)}
            accepted, refused = [], []
            for c in conns:
                if c.sock.fileno() not in readable:
                    accepted.append(c)
                    continue
                self.assertEqual(c.line(), busy)
                self.assertTrue(c.closed())
                refused.append(c)
            self.assertEqual((len(accepted), len(refused)), (n, extra))
            by_in = self.stats()["bytes"]["in"]
            polls = [0]

            def all_read(k):
                polls[0] += 1
                got = self.stats()["bytes"]["in"] - by_in
                return got - polls[0] * STATS_LINE >= k * n
            sent = 0
            for piece in pieces:
                for c in accepted:
                    c.send_raw(piece)
                sent += len(piece)
                wait_for(lambda: all_read(sent))
            peak = rss_kib(self.d)
            self.bystander()
            for i, c in enumerate(accepted):
                c.send_raw(b'%d}\n' % i)
            for i, c in enumerate(accepted):
                self.assertEqual(c.reply()["id"], i)
            self.bystander()
            # turned-away connections are not counted
            self.assertEqual(self.stats()["connections"]["total"] -
                             s0["connections"]["total"], n)
        finally:
            for c in conns:
                c.close()
        wait_for(lambda: self.stats()["connections"]["current"] == 1)
        self.assertEqual(fd_count(self.d), fds0)
        self.alive()
        return rss0, peak, rss_kib(self.d)

    def test_60_more_than_a_thousand_connections(self):
        """Five times: fill max_conns (1,100) with clients that each hold
        a partial line, plus 60 more that must be turned away with the
        documented busy line; all accepted ones are answered; the
        bystander is served. The allocator settles in the first waves;
        the last two together must add less than 8 MiB, and every
        descriptor is back after each wave."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < MAX_CONNS + 200:
            self.skipTest("RLIMIT_NOFILE %d is too low" % soft)
        n = MAX_CONNS - 1               # the bystander holds one
        waves = [self.partial_line_wave(n, [b'{"op":"hello","id":'], 60)
                 for _ in range(5)]
        for rss0, peak, rss1 in waves:
            print("\n%d connections: VmRSS %d KiB before, %d with a partial "
                  "line on each (%d B per connection), %d after they closed"
                  % (n, rss0, peak, (peak - rss0) * 1024 // n, rss1),
                  file=sys.stderr)
            # design bound: a partial line holds a 64-128 KiB input buffer
            rss_less(self, (peak - rss0) * 1024 // n, 160 * 1024)
        rss_less(self, waves[4][2] - waves[2][2], WAVES_GROWTH_KIB,
                        "each wave of connections leaves memory behind")
        rss_less(self, waves[4][2] - self.rss0, RSS_GROWTH_MAX_KIB)

    def test_61_partial_lines_in_two_reads(self):
        """Five times: 200 clients each send a partial line in two reads
        (the second read grows the connection's input buffer), then finish
        it. Memory per connection stays within the 64-128 KiB design
        bound, and the last two waves add less than 8 MiB."""
        waves = [self.partial_line_wave(200, [b'{"op":"hello",', b'"id":'])
                 for _ in range(5)]
        for rss0, peak, rss1 in waves:
            print("\n200 connections, partial line in two reads: VmRSS %d "
                  "KiB before, %d with the lines (%d B per connection), %d "
                  "after they closed" % (rss0, peak, (peak - rss0) * 1024
                                         // 200, rss1), file=sys.stderr)
            rss_less(self, (peak - rss0) * 1024 // 200, 160 * 1024)
        rss_less(self, waves[4][2] - waves[2][2], WAVES_GROWTH_KIB,
                        "each wave of connections leaves memory behind")

    def test_99_memory_and_descriptors_after_everything(self):
        """After the table, the repeat rounds and the abuse tests, with all
        clients gone: no descriptor is left open and VmRSS is within
        64 MiB of the fresh daemon's."""
        wait_for(lambda: self.stats()["connections"]["current"] == 1)
        self.assertEqual(fd_count(self.d), self.fds0)
        rss = rss_kib(self.d)
        print("\nmain daemon VmRSS: %d KiB fresh, %d KiB at the end"
              % (self.rss0, rss), file=sys.stderr)
        rss_less(self, rss - self.rss0, RSS_GROWTH_MAX_KIB)
        self.assertEqual(self.stats()["messages"]["lost"], 0)
        self.alive()


class LimitsAbuseTest(Base):
    """Abuse that needs a short partial_line_timeout_ms (1 s) and a small
    max_output_bytes (64 KiB): the limits daemon."""
    daemon = "limits"

    def test_slowloris_drip_is_cut(self):
        """A byte every 50 ms of a line that never ends: the connection is
        closed partial_line_timeout_ms after its first byte, even though
        bytes keep coming; the bystander is served all along."""
        c = connect(self.d)
        c.sock.settimeout(0.01)
        t0 = time.monotonic()
        closed_at = None
        line = b'{"op":"hello","pad":"' + b"s" * 10000
        i = 0
        while time.monotonic() - t0 < 5:
            try:
                c.sock.send(line[i:i + 1])
            except OSError:
                closed_at = time.monotonic() - t0
                break
            i += 1
            try:
                if c.sock.recv(100) == b"":
                    closed_at = time.monotonic() - t0
                    break
            except socket.timeout:
                pass
            except OSError:
                closed_at = time.monotonic() - t0
                break
            t1 = time.monotonic()
            self.bystander()
            self.assertLess(time.monotonic() - t1, 1.0)
            time.sleep(0.04)
        c.close()
        self.assertIsNotNone(closed_at, "a dripping client was never cut")
        self.assertGreater(closed_at, PARTIAL_MS / 1000 * 0.9)
        self.assertLess(closed_at, PARTIAL_MS / 1000 + 2)
        self.assertIn("a line took over partial_line_timeout_ms",
                      self.d.read_log())

    def test_slowloris_crowd_is_cut(self):
        """200 clients each stop in the middle of a line: all are closed
        after the timeout, descriptors and memory come back."""
        conns = [connect(self.d) for _ in range(200)]
        for i, c in enumerate(conns):
            c.send_raw(b'{"op":"queue.send","type":1,"text":"' +
                       b"%d" % i * 50)
        self.bystander()
        for c in conns:
            self.assertTrue(c.closed(timeout=5))
            self.assertEqual(c.buf, b"")
            c.close()
        wait_for(lambda: self.stats()["connections"]["current"] == 1)
        self.assertEqual(fd_count(self.d), self.fds0)
        st = self.by.call({"op": "queue.stat"})["result"]
        self.assertEqual(st["messages"], 0, "no partial line was run")
        self.bystander()

    def test_slow_line_within_the_timeout_is_served(self):
        """The control: a line dripped over about half the timeout is
        served normally."""
        c = connect(self.d)
        req = b'{"op":"hello","id":"slow"}\n'
        for i in range(len(req)):
            c.send_raw(req[i:i + 1])
            time.sleep(PARTIAL_MS / 1000 / 2 / len(req))
        self.assertEqual(c.reply()["id"], "slow")
        c.close()

    def test_never_reading_client_is_dropped(self):
        """A client that never reads keeps parking receives; 8 KB messages
        arrive for them. Once the kernel's socket buffer is full, the
        unsent replies pile up; the client is disconnected when they would
        pass max_output_bytes (64 KiB), with a warning; the messages whose
        replies were never written are put back, none is lost; the
        bystander is served all along."""
        m0 = self.stats()["messages"]
        by0 = self.by_n
        hog = connect(self.d)
        sent, parked = 0, 0
        try:
            while sent < 200 and "over max_output_bytes" not in \
                    self.d.read_log():
                if parked == sent:
                    hog.send_raw(b"".join(J({
                        "op": "queue.recv", "timeout_ms": 60000,
                        "id": parked + i}) for i in range(16)))
                    parked += 16
                    wait_for(lambda: self.by.call({"op": "queue.stat"})
                             ["result"]["waiters"] == 16)
                r = self.by.call({"op": "queue.send", "type": 1,
                                  "text": "%03d" % sent + "h" * 7997})
                self.assertIn("result", r)
                sent += 1
                wait_for(lambda: self.by.call({"op": "queue.stat"})
                         ["result"]["messages"] == 0 or
                         "over max_output_bytes" in self.d.read_log())
                self.bystander()
        except OSError:
            pass
        self.assertIn("over max_output_bytes", self.d.read_log())
        self.assertTrue(hog.closed())
        hog.close()
        wait_for(lambda: self.stats()["connections"]["current"] == 1)
        self.bystander()
        # drain the queue; put-backs that found it full (it holds two
        # 8 KB messages) land as room appears
        drained = []
        while True:
            st = self.by.call({"op": "queue.stat"})["result"]
            self.assertEqual(st["waiters"], 0)
            if st["messages"] == 0 and st["put_backs_pending"] == 0:
                break
            m = self.by.call({"op": "queue.recv", "timeout_ms": 100})
            if m["result"]["msg"] is not None:
                drained.append(m["result"]["msg"]["text"][:3])
        m1 = self.stats()["messages"]
        self.assertEqual(m1["lost"], 0)
        # the bystander's own receives are counted too
        taken = m1["received"] - m0["received"] - len(drained) - \
            (self.by_n - by0)
        put_back = m1["put_back"] - m0["put_back"]
        self.assertGreater(put_back, 0, "unwritten replies are put back")
        self.assertEqual(len(drained), sent - taken + put_back)
        self.assertEqual(len(set(drained)), len(drained), "no duplicates")

    def test_zz_memory_and_descriptors(self):
        """All clients gone: descriptors back, VmRSS within 64 MiB."""
        wait_for(lambda: self.stats()["connections"]["current"] == 1)
        self.assertEqual(fd_count(self.d), self.fds0)
        rss = rss_kib(self.d)
        print("\nlimits daemon VmRSS: %d KiB fresh, %d KiB at the end"
              % (self.rss0, rss), file=sys.stderr)
        rss_less(self, rss - self.rss0, RSS_GROWTH_MAX_KIB)
        self.assertEqual(self.stats()["messages"]["lost"], 0)
        self.alive()



class FixedBugTest(unittest.TestCase):
    """Bugs this suite found, kept as regression tests. Each runs on a
    daemon of its own (the bugs left connections behind)."""

    def daemon(self, **server):
        d = Daemon(server=server)
        self.addCleanup(d.cleanup)
        d.start()
        return d

    def client(self, d, timeout=10.0):
        c = connect(d, timeout)
        self.addCleanup(c.close)
        return c

    def test_backlog_leaves_the_connection_deaf(self):
        """A client pipelines 1,000 hellos (700 KB of replies), so the
        daemon pauses it at 256 KiB of unsent output; the client then
        reads every reply. Backpressure only pauses a client (documented):
        its next request must be answered, and when it closes, the daemon
        must close its side."""
        d = self.daemon()
        by = self.client(d)
        c = self.client(d)
        c.send_raw(J({"op": "hello"}) * 1000)
        time.sleep(0.3)                 # the daemon is paused by now
        for _ in range(1000):
            c.line()
        c.send_raw(J({"op": "hello", "id": "after"}))
        c.sock.settimeout(3)
        try:
            self.assertEqual(c.reply()["id"], "after")
        except socket.timeout:
            self.fail("no reply within 3 s to a request after the backlog")
        finally:
            c.close()
            try:
                wait_for(lambda: by.call({"op": "stats"})["result"]
                         ["connections"]["current"] == 1, timeout=3)
            except AssertionError:
                self.fail("the daemon kept the closed connection open")

    def test_held_wait_outlives_partial_line_timeout(self):
        """A held receive (no id) that waits longer than
        partial_line_timeout_ms, with a complete line pipelined behind it:
        no line is incomplete (ipcbridge.conf(5): the timeout is for "a
        connection whose current request line has not been completed"),
        so the connection must stay; the receive times out, then the next
        line is answered."""
        d = self.daemon(partial_line_timeout_ms=str(PARTIAL_MS))
        c = self.client(d, timeout=PARTIAL_MS * 5 / 1000)
        c.send_raw(J({"op": "queue.recv", "type": 9,
                      "timeout_ms": PARTIAL_MS * 2}) +
                   J({"op": "hello", "id": "behind"}))
        try:
            r = c.reply()
        except EOFError:
            self.fail("the connection was closed during a held wait")
        self.assertEqual(r, {"result": {"msg": None, "timed_out": True}})
        self.assertEqual(c.reply()["id"], "behind")

    def test_paused_pipeline_outlives_partial_line_timeout(self):
        """A client pipelines 3,000 hellos (2 MB of replies) and starts
        reading only after twice partial_line_timeout_ms: the daemon pauses
        it at 256 KiB of unsent output (documented: not a disconnect below
        max_output_bytes); its lines are complete, so the partial-line
        timeout does not apply, and every reply must arrive."""
        d = self.daemon(partial_line_timeout_ms=str(PARTIAL_MS))
        c = self.client(d)
        c.send_raw(J({"op": "hello"}) * 3000)
        time.sleep(PARTIAL_MS * 2 / 1000)
        n = 0
        try:
            for n in range(1, 3001):
                c.line()
        except EOFError:
            self.fail("closed after %d of 3000 replies" % (n - 1))

    def test_quiet_consumers_after_a_burst_are_not_cut(self):
        """16 clients each pipeline 200 lines (more than one turn of 64),
        the last a queue.consume, read the replies, and wait for events.
        They have no partial line, so partial_line_timeout_ms must not
        close them: messages sent after twice the timeout reach each."""
        d = self.daemon(partial_line_timeout_ms=str(PARTIAL_MS))
        by = self.client(d)
        cs = []
        for _ in range(16):
            c = self.client(d)
            c.send_raw(J({"op": "hello"}) * 199 +
                       J({"op": "queue.consume", "id": "c"}))
            for _ in range(199):
                c.line()
            self.assertEqual(c.reply()["id"], "c")
            cs.append(c)
            time.sleep(0.007)           # spread the timers' phases
        time.sleep(PARTIAL_MS * 2 / 1000)
        for i in range(16):
            self.assertIn("result", by.call({"op": "queue.send", "type": 1,
                                             "text": "late %d" % i}))
        cut = 0
        got = []
        for c in cs:
            try:
                got.append(c.reply()["data"]["text"])
            except EOFError:
                cut += 1
        self.assertEqual(cut, 0, "%d of 16 quiet consumers were cut" % cut)
        self.assertEqual(sorted(got), sorted("late %d" % i
                                             for i in range(16)))

if __name__ == "__main__":
    ipcb_test.main()
