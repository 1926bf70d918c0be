/*
 * worker.c - an ipcbridge worker in C, linked with libipcbridge, attached
 * to the same System V message queue the daemon serves.
 *
 *   worker KEY [COUNT]     KEY: decimal, 0x hex or ftok:PATH:C, or the
 *                          IPCBRIDGE_KEY environment variable
 *
 * Request/reply convention (shared by worker.php, worker.py and worker.c):
 *   - A request is a message of type 1 whose body is "REPLYTYPE:PAYLOAD".
 *     REPLYTYPE is decimal, 2..2147483647 (the types every worker language
 *     can send; sysv_ipc types are C ints), so a client picks a type of its
 *     own to wait on. PAYLOAD is any bytes, binary included.
 *   - The reply is a message of type REPLYTYPE whose body is
 *     handle(PAYLOAD); this example's handle() echoes PAYLOAD unchanged.
 *   - A body of exactly "quit" stops the worker (exit 0). So does COUNT
 *     requests (0 or absent = run forever). A malformed request is logged
 *     to stderr, counted and dropped.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ipcbridge.h"

#define REQUEST_TYPE	1

/* The real work goes here: fill the reply from the payload, return its
 * length (the reply buffer has room for n bytes). */
static size_t
handle(const char *payload, size_t n, char *reply)
{
	memcpy(reply, payload, n);
	return n;
}

/* "REPLYTYPE:" at the start of a request: the type, or -1 if malformed. */
static long
parse_replytype(const char *p, size_t n, size_t *skip)
{
	long t = 0;
	size_t i;

	for (i = 0; i < n && i < 11 && p[i] >= '0' && p[i] <= '9'; i++)
		t = t * 10 + (p[i] - '0');
	if (i == 0 || i == n || p[i] != ':' || p[0] == '0' || t < 2 ||
	    t > 2147483647L)
		return -1;
	*skip = i + 1;
	return t;
}

int
main(int argc, char *argv[])
{
	const char *spec = argc > 1 ? argv[1] : getenv("IPCBRIDGE_KEY");
	long count = argc > 2 ? strtol(argv[2], NULL, 10) : 0, served;
	struct ipcb_selector sel = { IPCB_MATCH_TYPE, REQUEST_TYPE };
	struct ipcb_msgbuf buf = { NULL, 0 };	/* grown by ipcb_msgq_recv */
	struct ipcb_msg *reply;
	char err[256];
	size_t skip;
	ssize_t n;
	key_t key;
	long type;
	int id, rc;

	if (spec == NULL) {
		fprintf(stderr, "usage: worker KEY [COUNT]\n");
		return 1;
	}
	if (ipcb_key_parse(spec, &key, err, sizeof(err)) < 0) {
		fprintf(stderr, "worker: %s\n", err);
		return 1;
	}
	/* create = 0: the daemon creates the queue with its configured mode */
	if ((rc = ipcb_msgq_open(key, 0, 0, &id)) < 0) {
		fprintf(stderr, "worker: key 0x%08x: %s%s\n", (unsigned)key,
		    strerror(-rc), rc == -ENOENT ? " (start ipcbridge first)" :
		    "");
		return 1;
	}

	for (served = 0; count <= 0 || served < count; served++) {
		/* Blocks for a type-1 message; fails if the queue is removed. */
		if ((n = ipcb_msgq_recv(id, &sel, &buf, 0)) < 0) {
			fprintf(stderr, "worker: msgrcv: %s\n",
			    strerror((int)-n));
			ipcb_msgbuf_free(&buf);
			return 1;
		}
		if (n == 4 && memcmp(buf.msg->mtext, "quit", 4) == 0)
			break;
		if ((type = parse_replytype(buf.msg->mtext, (size_t)n,
		    &skip)) < 0) {
			fprintf(stderr, "worker: dropped a malformed request "
			    "(want REPLYTYPE:PAYLOAD)\n");
			continue;
		}
		if ((reply = malloc(sizeof(*reply) + (size_t)n)) == NULL) {
			fprintf(stderr, "worker: out of memory\n");
			return 1;
		}
		reply->mtype = type;
		n = (ssize_t)handle(buf.msg->mtext + skip, (size_t)n - skip,
		    reply->mtext);
		/* flags 0: block while the queue is full, as PHP and Python do */
		if ((rc = ipcb_msgq_send(id, reply, (size_t)n, 0)) < 0)
			fprintf(stderr, "worker: reply to type %ld: %s\n", type,
			    strerror(-rc));
		free(reply);
	}
	ipcb_msgbuf_free(&buf);
	return 0;
}
