/*
 * torn_writer - a worker that dies in the middle of a write, for the
 * torn-write tests: it takes the segment's lock for writing through the
 * library, as a C worker does, overwrites len bytes at offset with byte,
 * and SIGKILLs itself before it releases. SEM_UNDO gives the lock back;
 * the torn-write marker stays up.
 *
 * usage: torn_writer SHM_KEY SEM_KEY OFFSET LEN BYTE
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ipcbridge.h"

int
main(int argc, char **argv)
{
	struct ipcb_shm shm;
	struct ipcb_sem sem;
	unsigned long off, len;
	key_t key, sem_key;
	int rc;

	if (argc != 6) {
		fprintf(stderr, "usage: torn_writer SHM_KEY SEM_KEY OFFSET "
		    "LEN BYTE\n");
		return 2;
	}
	key = (key_t)strtoul(argv[1], NULL, 0);
	sem_key = (key_t)strtoul(argv[2], NULL, 0);
	off = strtoul(argv[3], NULL, 0);
	len = strtoul(argv[4], NULL, 0);
	if ((rc = ipcb_shm_open(&shm, key, 0, 0, 0, NULL)) < 0 ||
	    (rc = ipcb_sem_open(&sem, sem_key, 0, 0)) < 0 ||
	    (rc = ipcb_sem_lock(&sem, IPCB_LOCK_WRITE, 5000000)) < 0) {
		fprintf(stderr, "torn_writer: %s\n", strerror(-rc));
		return 1;
	}
	if (off > shm.size || len > shm.size - off) {
		fprintf(stderr, "torn_writer: %lu+%lu is past the segment\n",
		    off, len);
		return 1;
	}
	memset(shm.addr + off, (int)strtol(argv[5], NULL, 0), len);
	raise(SIGKILL);
	return 1;
}
