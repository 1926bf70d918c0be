<?php
/*
 * shm_worker.php - an ipcbridge shared-memory worker in PHP (sysvsem +
 * sysvshm), working on the same PHP-format segment the daemon serves, under
 * the same semaphore.
 *
 *   php examples/shm_worker.php [KEY [COUNT]]
 *
 * KEY is the [shm NAME] key from ipcbridge.conf (decimal or 0x hex; default
 * 0x69706202, the built-in "default" segment), or the IPCBRIDGE_SHM_KEY
 * environment variable. The semaphore has the same key: ipcbridge's default
 * when sem_key is not set.
 *
 * Convention (shared with shm_worker.py):
 *   - A socket client stores a request in variable 1:
 *       {"op":"shm.put","var":1,"text":"hello"}
 *   - The worker takes it (reads and removes variable 1 under the lock) and
 *     stores the reply "done: <request>" in variable 2:
 *       {"op":"shm.get","var":2}  ->  ... "text":"done: hello"
 *   - A request of exactly "quit" stops the worker (exit 0); so does
 *     serving COUNT requests (0 or absent: forever).
 *
 * Shared memory has no wake-up, so the worker looks for a request every
 * 50 ms; it holds the lock only while it reads or writes, never while it
 * sleeps or works. A queue is the better tool for a stream of requests:
 * this shows how PHP, Python and socket clients share state safely.
 */

const REQUEST_VAR = 1;
const REPLY_VAR = 2;
const SEG_SIZE = 1048576;    // [shm default] size: used only if PHP creates it
const PERMS = 0660;          // [shm default] mode, likewise
const POLL_US = 50000;

function handle(mixed $request): string
{
    // the real work goes here; a client may also store a JSON value
    // ("value"), which PHP sees as an array, int, float, bool or null
    return 'done: ' . (is_string($request) ? $request : json_encode($request));
}

function fail(string $why): never
{
    fwrite(STDERR, "shm_worker.php: $why\n");
    exit(1);
}

$spec = $argv[1] ?? (getenv('IPCBRIDGE_SHM_KEY') ?: '0x69706202');
$count = (int)($argv[2] ?? 0);

// Decimal or 0x hex, within the kernel's 32 bits: PHP would silently
// truncate a wider value to some other segment's key.
$key = filter_var($spec, FILTER_VALIDATE_INT, FILTER_FLAG_ALLOW_HEX);
if ($key === false || $key < -0x80000000 || $key > 0xFFFFFFFF || $key == 0 || $key == -1)
    fail("bad key \"$spec\"");

// The lock: PHP's usual sem_get (a set of 3 semaphores, registered, every
// operation with SEM_UNDO), exactly what ipcbridge opens. max_acquire 1.
$sem = sem_get($key, 1, PERMS) ?: fail(sprintf('sem_get 0x%08x failed', $key & 0xFFFFFFFF));

// Start ipcbridge first: it creates the segment with its PHP header sized
// to the real segment. shm_attach uses an existing segment whatever its
// size; the size and mode here only matter if it does not exist yet.
$shm = shm_attach($key, SEG_SIZE, PERMS) ?: fail(sprintf('shm_attach 0x%08x failed', $key & 0xFFFFFFFF));

for ($served = 0; $count == 0 || $served < $count; ) {
    // Take the request: read and remove it in one critical section, so no
    // other worker takes it too.
    sem_acquire($sem) || fail('sem_acquire failed (was the semaphore removed?)');
    $have = shm_has_var($shm, REQUEST_VAR);
    if ($have) {
        $request = shm_get_var($shm, REQUEST_VAR);   // false + warning if not PHP data
        shm_remove_var($shm, REQUEST_VAR);
    }
    sem_release($sem);
    if (!$have) {
        usleep(POLL_US);
        continue;
    }
    if ($request === 'quit')
        break;
    $served++;
    $reply = handle($request);                       // not under the lock

    sem_acquire($sem) || fail('sem_acquire failed (was the semaphore removed?)');
    // On failure (no room) PHP has already deleted the old reply.
    $ok = shm_put_var($shm, REPLY_VAR, $reply);
    sem_release($sem);
    if (!$ok)
        fwrite(STDERR, "shm_worker.php: no room for the reply\n");
}
exit(0);
