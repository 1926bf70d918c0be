/*
 * segment.c - the configured shared-memory segments and their semaphores.
 *
 * Each segment is attached once and stays mapped (a fresh attach per
 * request pays page faults on every blob). Its guard semaphore is opened
 * the way PHP's sem_get opens it and registered once for the daemon's
 * whole life, so a PHP sem_get never re-initialises the lock under a
 * Python or C holder. The daemon never sleeps on the lock: requests that
 * find it busy wait in the segment's line and the poll timer retries.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"

struct segmentq segments = TAILQ_HEAD_INITIALIZER(segments);

static void
conf_copy(struct shm_conf *dst, const struct shm_conf *src)
{
	free(dst->name);
	free(dst->key_spec);
	free(dst->sem_key_spec);
	access_free(&dst->access);
	*dst = *src;
	access_copy(&dst->access, &src->access);
	dst->name = strdup(src->name);
	dst->key_spec = strdup(src->key_spec);
	dst->sem_key_spec = src->sem_key_spec ? strdup(src->sem_key_spec) :
	    NULL;
	if (dst->name == NULL || dst->key_spec == NULL ||
	    (src->sem_key_spec != NULL && dst->sem_key_spec == NULL))
		fatalx("out of memory");
}

static void
segment_free(struct segment *s)
{
	if (s->sem.semid >= 0 && s->sem.registered)
		ipcb_sem_close(&s->sem);
	if (s->shm.addr != NULL)
		ipcb_shm_close(&s->shm);
	free(s->conf.name);
	free(s->conf.key_spec);
	free(s->conf.sem_key_spec);
	access_free(&s->conf.access);
	free(s);
}

/* Attach, initialise or validate, open and register the semaphore. */
static int
open_one(struct segment *s, char *err, size_t errlen)
{
	char why[256];
	int rc, created = 0;

	rc = ipcb_shm_open(&s->shm, s->conf.key, s->conf.size, s->conf.mode,
	    s->conf.create, &created);
	if (rc < 0) {
		snprintf(err, errlen, "shm \"%s\" (key 0x%08x): %s%s",
		    s->conf.name, (unsigned)s->conf.key, strerror(-rc),
		    rc == -ENOENT ? " (create = no and no worker made it)" :
		    "");
		return -1;
	}
	if (s->conf.format == SHM_PHP) {
		if (created)
			ipcb_php_init(&s->shm);
		else if (ipcb_php_check(&s->shm, why, sizeof(why)) < 0) {
			s->corrupt = 1;
			log_warnx("shm \"%s\" (key 0x%08x): not a valid PHP "
			    "sysvshm segment: %s; refusing to touch it",
			    s->conf.name, (unsigned)s->conf.key, why);
		}
	}
	rc = ipcb_sem_open(&s->sem, s->conf.sem_key, s->conf.mode, 1);
	if (rc == 0)
		rc = ipcb_sem_register(&s->sem, 1);
	if (rc < 0) {
		snprintf(err, errlen, "shm \"%s\": semaphore (key 0x%08x): %s%s",
		    s->conf.name, (unsigned)s->conf.sem_key, strerror(-rc),
		    rc == -EINVAL ? " (a set of fewer than 3 semaphores: "
		    "not PHP's; was it created by Python?)" : "");
		return -1;
	}
	log_info("shm \"%s\": key 0x%08x, shmid %d, %zu bytes, %s%s; "
	    "sem key 0x%08x, semid %d", s->conf.name, (unsigned)s->conf.key,
	    s->shm.shmid, s->shm.size,
	    s->conf.format == SHM_RAW ? "raw" : "php",
	    created ? " (created)" : "", (unsigned)s->conf.sem_key,
	    s->sem.semid);
	return 0;
}

static struct segment *
segment_new(const struct shm_conf *mc)
{
	struct segment *s;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		fatalx("out of memory");
	conf_copy(&s->conf, mc);
	s->shm.shmid = -1;
	s->sem.semid = -1;
	TAILQ_INIT(&s->lockers);
	return s;
}

int
segments_open(const struct config *c, char *err, size_t errlen)
{
	struct segment *s;
	size_t i;

	for (i = 0; i < c->nshms; i++) {
		s = segment_new(&c->shms[i]);
		if (open_one(s, err, errlen) < 0) {
			segment_free(s);
			segments_close();
			return -1;
		}
		TAILQ_INSERT_TAIL(&segments, s, entry);
	}
	return 0;
}

/*
 * Apply a reload: keep segments whose name, key and semaphore key are
 * unchanged, open new ones first (a failure changes nothing), and fail
 * the lock waiters of those that go.
 */
int
segments_reload(const struct config *c)
{
	struct segmentq added = TAILQ_HEAD_INITIALIZER(added);
	struct segmentq fresh = TAILQ_HEAD_INITIALIZER(fresh);
	struct segment *s, *old;
	char err[512];
	size_t i;

	for (i = 0; i < c->nshms; i++) {
		old = segment_find(c->shms[i].name);
		if (old != NULL && old->conf.key == c->shms[i].key &&
		    old->conf.sem_key == c->shms[i].sem_key)
			continue;
		s = segment_new(&c->shms[i]);
		TAILQ_INSERT_TAIL(&added, s, entry);
		if (open_one(s, err, sizeof(err)) == 0)
			continue;
		log_warnx("reload: %s; keeping the old segments", err);
		while ((s = TAILQ_FIRST(&added)) != NULL) {
			TAILQ_REMOVE(&added, s, entry);
			segment_free(s);
		}
		return -1;
	}
	for (i = 0; i < c->nshms; i++) {
		old = segment_find(c->shms[i].name);
		if (old != NULL && old->conf.key == c->shms[i].key &&
		    old->conf.sem_key == c->shms[i].sem_key) {
			TAILQ_REMOVE(&segments, old, entry);
			conf_copy(&old->conf, &c->shms[i]);
			TAILQ_INSERT_TAIL(&fresh, old, entry);
			continue;
		}
		TAILQ_FOREACH(s, &added, entry) {
			if (strcmp(s->conf.name, c->shms[i].name) == 0)
				break;
		}
		TAILQ_REMOVE(&added, s, entry);
		TAILQ_INSERT_TAIL(&fresh, s, entry);
	}
	while ((old = TAILQ_FIRST(&segments)) != NULL) {
		log_info("reload: shm \"%s\" (key 0x%08x) is no longer served",
		    old->conf.name, (unsigned)old->conf.key);
		TAILQ_REMOVE(&segments, old, entry);
		waiter_fail_segment(old, ERR_NOT_FOUND,
		    "segment was removed from the config by a reload");
		segment_free(old);
	}
	TAILQ_CONCAT(&segments, &fresh, entry);
	return 0;
}

void
segments_close(void)
{
	struct segment *s;

	while ((s = TAILQ_FIRST(&segments)) != NULL) {
		TAILQ_REMOVE(&segments, s, entry);
		segment_free(s);
	}
}

struct segment *
segment_find(const char *name)
{
	struct segment *s;

	TAILQ_FOREACH(s, &segments, entry) {
		if (strcmp(s->conf.name, name) == 0)
			return s;
	}
	return NULL;
}

/*
 * Was the segment removed underneath us (ipcrm -m marks it SHM_DEST; our
 * attachment keeps the old memory alive while workers get a new one)?
 * Then say so, attach the key again (re-created and initialised when
 * create = yes) and return 1: the request is answered shm_removed.
 */
int
segment_removed(struct segment *s, char *err, size_t errlen)
{
	struct shmid_ds ds;
	char why[256];
	int rc, created = 0;

	if (s->shm.addr != NULL && ipcb_shm_stat(&s->shm, &ds) == 0 &&
	    !(ds.shm_perm.mode & SHM_DEST))
		return 0;
	snprintf(err, errlen, "shm \"%s\" (key 0x%08x, shmid %d) was removed "
	    "underneath the daemon", s->conf.name, (unsigned)s->conf.key,
	    s->shm.shmid);
	log_warnx("%s", err);
	if (s->shm.addr != NULL)
		ipcb_shm_close(&s->shm);
	s->shm.addr = NULL;
	rc = ipcb_shm_open(&s->shm, s->conf.key, s->conf.size, s->conf.mode,
	    s->conf.create, &created);
	if (rc < 0) {
		s->shm.addr = NULL;
		log_warnx("shm \"%s\" (key 0x%08x): %s; requests answer "
		    "shm_removed until it exists again", s->conf.name,
		    (unsigned)s->conf.key, strerror(-rc));
		return 1;
	}
	s->corrupt = 0;
	if (s->conf.format == SHM_PHP) {
		if (created)
			ipcb_php_init(&s->shm);
		else if (ipcb_php_check(&s->shm, why, sizeof(why)) < 0)
			s->corrupt = 1;
	}
	log_info("shm \"%s\": key 0x%08x attached again, shmid %d%s",
	    s->conf.name, (unsigned)s->conf.key, s->shm.shmid,
	    created ? " (created)" : "");
	return 1;
}

/*
 * The semaphore set was removed underneath us (ipcrm, systemd RemoveIPC):
 * say so loudly, and open (or, with create = yes, re-create) and register
 * the key again for the next request. The request that found it gone is
 * answered sem_removed, as a removed queue is answered queue_removed.
 */
static void
sem_reopen(struct segment *s)
{
	int rc;

	log_warnx("shm \"%s\": semaphore (key 0x%08x, semid %d) was removed "
	    "underneath the daemon", s->conf.name, (unsigned)s->conf.sem_key,
	    s->sem.semid);
	ipcb_sem_close(&s->sem);	/* the registration went with the set */
	rc = ipcb_sem_open(&s->sem, s->conf.sem_key, s->conf.mode,
	    s->conf.create);
	if (rc == 0)
		rc = ipcb_sem_register(&s->sem, 1);
	if (rc < 0) {
		log_warnx("shm \"%s\": semaphore (key 0x%08x): %s; requests "
		    "answer sem_removed until it exists again", s->conf.name,
		    (unsigned)s->conf.sem_key, strerror(-rc));
		ipcb_sem_close(&s->sem);
		s->sem.semid = -1;
		return;
	}
	log_info("shm \"%s\": semaphore key 0x%08x open again, semid %d",
	    s->conf.name, (unsigned)s->conf.sem_key, s->sem.semid);
}

/*
 * Try the lock (an IPCB_LOCK_* how), waiting at most wait_us (0: not at
 * all): 1 taken, 0 busy, -1 with code/err. A writer that died holding it
 * makes every lock but a repair fail with corrupt, loudly.
 */
int
segment_trylock(struct segment *s, int how, int wait_us, int *code,
    char *err, size_t errlen)
{
	int rc;

	rc = ipcb_sem_lock(&s->sem, how, wait_us);
	if (rc == 0)
		return 1;
	if (rc == -EAGAIN)
		return 0;
	if (rc == -EBADMSG) {
		*code = ERR_CORRUPT;
		snprintf(err, errlen, "shm \"%s\" (key 0x%08x): a writer died "
		    "while writing it (the torn-write marker of semaphore "
		    "key 0x%08x is up): its bytes may be half written; "
		    "shm.clear empties it and clears the marker", s->conf.name,
		    (unsigned)s->conf.key, (unsigned)s->conf.sem_key);
		log_warnx("%s", err);
		return -1;
	}
	*code = rc == -EIDRM || rc == -EINVAL || rc == -EBADF ?
	    ERR_SEM_REMOVED : ERR_IPC;
	snprintf(err, errlen, "shm \"%s\": semaphore (key 0x%08x, semid %d): "
	    "semop: %s", s->conf.name, (unsigned)s->conf.sem_key,
	    s->sem.semid, strerror(-rc));
	if (*code == ERR_SEM_REMOVED)
		sem_reopen(s);
	return -1;
}

/*
 * A release that fails would leave the lock held by the daemon for good,
 * wedging every worker: close the handle (its semop gives back what it
 * holds, or the set is gone anyway) and open the key again.
 */
void
segment_unlock(struct segment *s)
{
	int rc;

	if ((rc = ipcb_sem_release(&s->sem)) == 0)
		return;
	log_warnx("shm \"%s\": releasing the semaphore (key 0x%08x, semid "
	    "%d): %s", s->conf.name, (unsigned)s->conf.sem_key, s->sem.semid,
	    strerror(-rc));
	sem_reopen(s);
}
