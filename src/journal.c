/*
 * journal.c - messages the daemon holds survive the daemon being killed.
 *
 * A message taken off a queue is received straight into a slot of a
 * preallocated MAP_SHARED file in state_dir, and the slot stays occupied
 * until the message is safe elsewhere: its reply written out (plain mode),
 * acked (ack mode), or put back on its queue. If the daemon dies, the next
 * start puts every occupied slot back on its queue before serving. Page
 * cache writes survive the process; nothing is fsynced (state_dir is
 * meant to be /run: a reboot empties the queues anyway).
 *
 * Layout: a header, a compact array of slot states (scanned at start-up
 * without touching the message pages), then the message slots, each an
 * ipcb_msg of up to slot_bytes.
 *
 * Windows, stated: a crash between msgrcv returning and the length being
 * recorded (a few instructions) loses that message; a crash between a
 * put-back or a written reply and the slot being freed delivers it twice.
 */
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"

#define JOURNAL_MAGIC	"IPCBJRN1"

enum { SLOT_FREE, SLOT_RECEIVING, SLOT_HELD };

struct jhead {
	char		 magic[8];
	uint64_t	 nslots;
	uint64_t	 slot_bytes;
	uint64_t	 data_off;
};

struct jstate {
	volatile uint32_t state;
	int32_t		 key;
	uint64_t	 len;
};

static int fd = -1;
static char *base_addr;
static size_t map_len;
static struct jhead *head;
static struct jstate *states;
static char *data;
static size_t stride;
static int *free_list;		/* stack of free slot indexes */
static int nfree;
static char *path;

static struct ipcb_msg *
slot_msg(int i)
{
	return (struct ipcb_msg *)(void *)(data + (size_t)i * stride);
}

size_t
journal_capacity(void)
{
	return head ? (size_t)head->slot_bytes : 0;
}

int
journal_free_slots(void)
{
	return fd < 0 ? 1 : nfree;	/* no journal: never the bottleneck */
}

/* Does the journal described by h hold any message? */
static int
any_held(const struct jhead *h)
{
	struct jstate st;
	uint64_t i;

	for (i = 0; i < h->nslots; i++) {
		if (pread(fd, &st, sizeof(st), (off_t)(sizeof(*h) +
		    i * sizeof(st))) != (ssize_t)sizeof(st))
			return 0;	/* short file: nothing to restore */
		if (st.state == SLOT_HELD)
			return 1;
	}
	return 0;
}

/*
 * A slot the daemon died receiving into. journal_take zeroes the type, so
 * a type there means msgrcv had taken a message whose length was not yet
 * recorded: it cannot be put back exactly, and is counted lost, loudly.
 * (A SIGKILL during msgrcv lands after the kernel dequeued, so this is not
 * only the few instructions after it returns.)
 */
static void
mid_receive(int i)
{
	long type = slot_msg(i)->mtype;

	if (type == 0) {
		log_info("journal: slot %d was mid-receive when the daemon "
		    "died; nothing had been taken", i);
		return;
	}
	stats.lost++;
	log_warnx("LOST a type %ld message (key 0x%08x): the daemon was "
	    "killed while receiving it, before its length was recorded", type,
	    (unsigned)states[i].key);
}

/* Create or reuse state_dir/journal; returns the slots to restore. */
int
journal_open(const char *dir, int nslots, char *err, size_t errlen)
{
	size_t slot_bytes = ipcb_msgmax(), data_off, len;
	struct jhead h;
	struct stat st;
	int i, occupied = 0, fresh;

	if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "state_dir %s: %s", dir, strerror(errno));
		return -1;
	}
	if (asprintf(&path, "%s/journal", dir) < 0)
		fatalx("out of memory");
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0) {
		snprintf(err, errlen, "journal %s: %s", path, errno ==
		    EWOULDBLOCK ? "another ipcbridge uses this state_dir" :
		    strerror(errno));
		goto fail;
	}
	fstat(fd, &st);
	fresh = st.st_size < (off_t)sizeof(h) ||
	    pread(fd, &h, sizeof(h), 0) != sizeof(h) ||
	    memcmp(h.magic, JOURNAL_MAGIC, 8) != 0;
	if (!fresh && (h.nslots != (uint64_t)nslots ||
	    h.slot_bytes != slot_bytes)) {
		/* journal_slots or msgmax changed: an empty journal is
		 * simply made again; one holding messages keeps its shape
		 * until a start finds it empty */
		if (!any_held(&h))
			fresh = 1;
		else
			log_warnx("journal %s: holds messages, so it keeps its "
			    "%llu slots of %llu bytes for this run (configured: "
			    "%d of %zu); the new size applies once it is empty "
			    "at a start", path, (unsigned long long)h.nslots,
			    (unsigned long long)h.slot_bytes, nslots,
			    slot_bytes);
	}
	if (!fresh) {
		nslots = (int)h.nslots;
		slot_bytes = (size_t)h.slot_bytes;
	}
	stride = (sizeof(struct ipcb_msg) + slot_bytes + 7) & ~(size_t)7;
	data_off = (sizeof(struct jhead) + (size_t)nslots *
	    sizeof(struct jstate) + 4095) & ~(size_t)4095;
	len = data_off + (size_t)nslots * stride;
	if ((fresh || (size_t)st.st_size < len) &&
	    ftruncate(fd, (off_t)len) < 0) {
		snprintf(err, errlen, "journal %s: %s", path, strerror(errno));
		goto fail;
	}
	base_addr = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base_addr == MAP_FAILED) {
		base_addr = NULL;
		snprintf(err, errlen, "journal %s: mmap: %s", path,
		    strerror(errno));
		goto fail;
	}
	map_len = len;
	head = (struct jhead *)(void *)base_addr;
	states = (struct jstate *)(void *)(base_addr + sizeof(*head));
	data = base_addr + data_off;
	if (fresh) {
		memset(base_addr, 0, data_off);
		head->nslots = (uint64_t)nslots;
		head->slot_bytes = slot_bytes;
		head->data_off = data_off;
		memcpy(head->magic, JOURNAL_MAGIC, 8);
	}
	if ((free_list = calloc((size_t)nslots, sizeof(int))) == NULL)
		fatalx("out of memory");
	for (i = nslots - 1; i >= 0; i--) {
		if (states[i].state == SLOT_HELD)
			occupied++;
		else {
			if (states[i].state == SLOT_RECEIVING)
				mid_receive(i);
			states[i].state = SLOT_FREE;
			free_list[nfree++] = i;
		}
	}
	log_info("journal %s: %d slots of %zu bytes%s", path, nslots,
	    slot_bytes, occupied ? "" : ", all free");
	return occupied;
fail:
	if (fd >= 0)
		close(fd);
	fd = -1;
	return -1;
}

/* Put back every message a previous run held (start-up, before serving). */
void
journal_restore(void)
{
	int i, n;

	if (fd < 0)
		return;
	for (i = 0, n = 0; i < (int)head->nslots; i++) {
		if (states[i].state != SLOT_HELD)
			continue;
		log_info("journal: restoring a type %ld message of %llu bytes "
		    "to key 0x%08x (held when the daemon stopped)",
		    slot_msg(i)->mtype, (unsigned long long)states[i].len,
		    (unsigned)states[i].key);
		waiter_putback_key((key_t)states[i].key, slot_msg(i),
		    (size_t)states[i].len, i);
		n++;
	}
	stats.restored += (uint64_t)n;
}

/* A free slot to receive from key into, marked receiving; -1 when full. */
int
journal_take(key_t key, struct ipcb_msg **m, size_t *cap)
{
	int i;

	if (fd < 0 || nfree == 0)
		return -1;
	i = free_list[--nfree];
	slot_msg(i)->mtype = 0;
	states[i].key = (int32_t)key;
	__atomic_store_n(&states[i].state, SLOT_RECEIVING, __ATOMIC_RELEASE);
	*m = slot_msg(i);
	*cap = (size_t)head->slot_bytes;
	return i;
}

/* The message is in the slot: record how long. */
void
journal_commit(int i, size_t len)
{
	states[i].len = len;
	__atomic_store_n(&states[i].state, SLOT_HELD, __ATOMIC_RELEASE);
}

/* The message is safe elsewhere (or never came): free the slot. */
void
journal_release(int i)
{
	if (i < 0 || fd < 0)
		return;
	states[i].state = SLOT_FREE;
	free_list[nfree++] = i;
}

/* Give state_dir and the journal to the user we drop privileges to, so a
 * later start as that user can open them. */
void
journal_chown(const char *dir, uid_t uid, gid_t gid)
{
	if (fd < 0)
		return;
	if (chown(dir, uid, gid) < 0 || fchown(fd, uid, gid) < 0)
		log_warn("journal %s: chown", path);
}

void
journal_close(void)
{
	if (base_addr != NULL)
		munmap(base_addr, map_len);
	base_addr = NULL;
	head = NULL;
	if (fd >= 0)
		close(fd);
	fd = -1;
	free(free_list);
	free_list = NULL;
	nfree = 0;
	free(path);
	path = NULL;
}
