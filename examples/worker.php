<?php
/*
 * worker.php - an ipcbridge worker in PHP (sysvmsg), attached to the same
 * System V message queue the daemon serves.
 *
 *   php examples/worker.php KEY [COUNT]     KEY: decimal or 0x hex, or the
 *                                            IPCBRIDGE_KEY environment variable
 *
 * Request/reply convention (shared by worker.php, worker.py and worker.c):
 *   - A request is a message of type 1 whose body is "REPLYTYPE:PAYLOAD".
 *     REPLYTYPE is decimal, 2..2147483647 (the types every worker language can
 *     send; sysv_ipc types are C ints), so a client picks a type of its own to
 *     wait on. PAYLOAD is any bytes, binary included.
 *   - The reply is a message of type REPLYTYPE whose body is handle(PAYLOAD);
 *     this example's handle() echoes PAYLOAD unchanged.
 *   - A body of exactly "quit" stops the worker (exit 0). So does COUNT
 *     requests (0 or absent = run forever). A malformed request is logged
 *     to stderr, counted and dropped.
 *
 * Bodies are raw bytes both ways: serialize=false on send and
 * unserialize=false on receive, because socket clients and the other workers
 * do not speak PHP's serialize() format.
 */

const REQUEST_TYPE = 1;
const MAX_SIZE = 65536;      // above the kernel's msgmax, so nothing is too big

function handle(string $payload): string
{
    return $payload;         // the real work goes here
}

function fail(string $why): never
{
    fwrite(STDERR, "worker.php: $why\n");
    exit(1);
}

$spec = $argv[1] ?? getenv('IPCBRIDGE_KEY') ?: fail('usage: worker.php KEY [COUNT]');
$count = (int)($argv[2] ?? 0);

// The key: decimal or 0x hex, within the kernel's 32 bits (PHP would
// silently truncate a wider value to some other queue's key).
$key = filter_var($spec, FILTER_VALIDATE_INT, FILTER_FLAG_ALLOW_HEX);
if ($key === false || $key < -0x80000000 || $key > 0xFFFFFFFF || $key == 0 || $key == -1)
    fail("bad key \"$spec\"");

// The daemon creates the queue with its configured mode; don't let
// msg_get_queue() create a different one (0666) if it is not there yet.
if (!msg_queue_exists($key))
    fail(sprintf('no queue with key 0x%08x (start ipcbridge first)', $key & 0xFFFFFFFF));
$q = msg_get_queue($key);

for ($served = 0; $count == 0 || $served < $count; $served++) {
    // Blocks until a type-1 message comes; false means the queue is gone
    // (EIDRM/EINVAL) or the message is over MAX_SIZE (E2BIG: it stays queued).
    if (!msg_receive($q, REQUEST_TYPE, $type, MAX_SIZE, $msg, false, 0, $errno))
        fail("msg_receive failed: errno $errno");
    if ($msg === 'quit')
        break;
    // "REPLYTYPE:PAYLOAD": the first colon ends REPLYTYPE; PAYLOAD is the
    // rest, any bytes (/s: "." matches newlines too, \z: the very end).
    if (!preg_match('/^([1-9][0-9]{0,9}):(.*)\z/s', $msg, $m)
        || ($replytype = (int)$m[1]) < 2 || $replytype > 0x7FFFFFFF) {
        fwrite(STDERR, "worker.php: dropped a malformed request (want REPLYTYPE:PAYLOAD)\n");
        continue;
    }
    if (!msg_send($q, $replytype, handle($m[2]), false, true, $errno))
        fwrite(STDERR, "worker.php: reply to type $replytype failed: errno $errno\n");
}
exit(0);
