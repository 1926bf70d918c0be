/*
 * shm.c - shared-memory segments and PHP sysvshm's variable layout.
 *
 * A segment is attached once and read or written as raw bytes, or as PHP
 * variables: a 40-byte "PHP_SM" header, then chunks packed from offset 40
 * to the header's end, each {int64 key, int64 length, int64 next, bytes}.
 * Put, delete and lookup do what php-src 8.2 does (append at end, compact
 * with memmove, linear scan), except that a put checks for room before it
 * drops the old value.
 *
 * The segment is shared with processes we do not trust to be bug-free,
 * and PHP trusts the header blindly. So fields are copied into locals and
 * checked before they are used, the header and the whole chain (duplicate
 * keys too) are validated before anything is returned or written, and
 * nothing here ever reaches outside [0, size). A bad segment gives
 * -EBADMSG and is left alone; an unattached handle gives -EBADF.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ipcbridge.h"

/* php-src's sysvshm_chunk_head and sysvshm_chunk, zend_long = int64. */
struct php_head {
	char	 magic[8];
	int64_t	 start;
	int64_t	 end;
	int64_t	 free;
	int64_t	 total;
};

struct php_chunk {
	int64_t	 key;
	int64_t	 length;
	int64_t	 next;
	char	 mem;
};

_Static_assert(sizeof(struct php_head) == 40, "sysvshm_chunk_head is 40");
_Static_assert(sizeof(struct php_chunk) == 32, "sysvshm_chunk is 32");
_Static_assert(offsetof(struct php_chunk, mem) == 24, "chunk data at 24");

#define PHP_MAGIC	"PHP_SM"	/* PHP compares with strcmp: 7 bytes */
#define PHP_START	((int64_t)sizeof(struct php_head))
#define CHUNK_DATA	((int64_t)offsetof(struct php_chunk, mem))

/*
 * php_put_shm_data's chunk size, verbatim: the data after the 24-byte
 * chunk header, rounded up to 8, plus 8. Callers bound len first.
 */
#define CHUNK_SIZE(len)							\
	((int64_t)(((uint64_t)(len) + sizeof(struct php_chunk) - 1) /	\
	    sizeof(int64_t) * sizeof(int64_t) + sizeof(int64_t)))

/* A validated copy of the header. */
struct head {
	int64_t	 start;
	int64_t	 end;
	int64_t	 free;
	int64_t	 total;
};

/* A validated chunk at pos: its data lies in [pos+24, pos+24+length). */
struct chunk {
	int64_t	 pos;
	int64_t	 key;
	int64_t	 length;
	int64_t	 next;
};

int
ipcb_shm_open(struct ipcb_shm *shm, key_t key, size_t size, int mode,
    int create, int *created)
{
	struct shmid_ds ds;
	void *addr;
	int id, made = 0, rc;

	shm->shmid = -1;
	shm->key = key;
	shm->addr = NULL;
	shm->size = 0;
	if (created != NULL)
		*created = 0;
	id = ipcb_sysv.shmget(key, 0, 0);
	if (id < 0) {
		if (errno != ENOENT || !create)
			return -errno;
		id = ipcb_sysv.shmget(key, size,
		    (mode & 0777) | IPC_CREAT | IPC_EXCL);
		if (id >= 0)
			made = 1;
		else if (errno == EEXIST)	/* lost a creation race */
			id = ipcb_sysv.shmget(key, 0, 0);
		if (id < 0)
			return -errno;
	}
	addr = ipcb_sysv.shmat(id, NULL, 0);
	if (addr == (void *)-1) {
		rc = -errno;
		goto fail;
	}
	if (ipcb_sysv.shmctl(id, IPC_STAT, &ds) < 0) {
		rc = -errno;
		(void)ipcb_sysv.shmdt(addr);
		goto fail;
	}
	shm->shmid = id;
	shm->addr = addr;
	shm->size = ds.shm_segsz;
	if (created != NULL)
		*created = made;
	return 0;

fail:
	/*
	 * A zero-filled segment nobody can use would be worse than none:
	 * PHP would write its own header into it, with its own idea of the
	 * size. Remove it if it is ours.
	 */
	if (made)
		(void)ipcb_sysv.shmctl(id, IPC_RMID, NULL);
	return rc;
}

int
ipcb_shm_close(struct ipcb_shm *shm)
{
	int rc = 0;

	if (shm->addr != NULL && ipcb_sysv.shmdt(shm->addr) < 0)
		rc = -errno;
	shm->addr = NULL;
	shm->size = 0;
	shm->shmid = -1;
	return rc;
}

int
ipcb_shm_stat(const struct ipcb_shm *shm, struct shmid_ds *ds)
{
	if (shm->shmid < 0)
		return -EBADF;
	return ipcb_sysv.shmctl(shm->shmid, IPC_STAT, ds) < 0 ? -errno : 0;
}

/* off and len lie within the segment; written not to overflow. */
static int
in_range(const struct ipcb_shm *shm, size_t off, size_t len)
{
	return off <= shm->size && len <= shm->size - off;
}

int
ipcb_shm_read(const struct ipcb_shm *shm, size_t off, void *dst, size_t len)
{
	if (shm->addr == NULL)
		return -EBADF;
	if (!in_range(shm, off, len))
		return -ERANGE;
	if (len > 0)
		memcpy(dst, shm->addr + off, len);
	return 0;
}

int
ipcb_shm_write(struct ipcb_shm *shm, size_t off, const void *src, size_t len)
{
	if (shm->addr == NULL)
		return -EBADF;
	if (!in_range(shm, off, len))
		return -ERANGE;
	if (len > 0)
		memcpy(shm->addr + off, src, len);
	return 0;
}

static int
bad(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL && errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EBADMSG;
}

static int64_t
get64(const char *p)
{
	int64_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static void
put64(char *p, int64_t v)
{
	memcpy(p, &v, sizeof(v));
}

int
ipcb_php_init(struct ipcb_shm *shm)
{
	static const char magic[8] = PHP_MAGIC;
	int64_t total;

	if (shm->addr == NULL)
		return -EBADF;
	if (shm->size < sizeof(struct php_head) || shm->size > INT64_MAX)
		return -ENOSPC;
	total = (int64_t)shm->size;
	put64(shm->addr + offsetof(struct php_head, start), PHP_START);
	put64(shm->addr + offsetof(struct php_head, end), PHP_START);
	put64(shm->addr + offsetof(struct php_head, free), total - PHP_START);
	put64(shm->addr + offsetof(struct php_head, total), total);
	/* last, so whoever sees the magic sees a whole header */
	memcpy(shm->addr + offsetof(struct php_head, magic), magic,
	    sizeof(magic));
	return 0;
}

/* Copy and validate the header: start = 40 <= end <= total <= size. */
static int
head_load(const struct ipcb_shm *shm, struct head *h, char *err,
    size_t errlen)
{
	const char *p = shm->addr;

	if (p == NULL) {
		(void)bad(err, errlen, "segment is not attached");
		return -EBADF;
	}
	if (shm->size < sizeof(struct php_head))
		return bad(err, errlen, "segment of %zu bytes is smaller than "
		    "the %zu-byte header", shm->size, sizeof(struct php_head));
	if (memcmp(p + offsetof(struct php_head, magic), PHP_MAGIC,
	    sizeof(PHP_MAGIC)) != 0)
		return bad(err, errlen, "bad magic (not \"PHP_SM\")");
	h->start = get64(p + offsetof(struct php_head, start));
	h->end = get64(p + offsetof(struct php_head, end));
	h->free = get64(p + offsetof(struct php_head, free));
	h->total = get64(p + offsetof(struct php_head, total));
	if (h->start != PHP_START)
		return bad(err, errlen, "start %lld is not %lld",
		    (long long)h->start, (long long)PHP_START);
	if (h->end < h->start)
		return bad(err, errlen, "end %lld is before start %lld",
		    (long long)h->end, (long long)h->start);
	if (h->total < h->end)
		return bad(err, errlen, "end %lld is past total %lld",
		    (long long)h->end, (long long)h->total);
	if ((uint64_t)h->total > shm->size)
		return bad(err, errlen, "total %lld is past the segment size "
		    "%zu", (long long)h->total, shm->size);
	if (h->free != h->total - h->end)
		return bad(err, errlen, "free %lld is not total - end (%lld)",
		    (long long)h->free, (long long)(h->total - h->end));
	return 0;
}

/*
 * Copy and validate the chunk at pos (start <= pos < end, a multiple of 8
 * from 40): it must be what php_put_shm_data writes, and lie within end.
 */
static int
chunk_load(const struct ipcb_shm *shm, const struct head *h, int64_t pos,
    struct chunk *c, char *err, size_t errlen)
{
	const char *p = shm->addr + pos;
	int64_t room = h->end - pos, want;

	if (room < CHUNK_DATA)
		return bad(err, errlen, "chunk at offset %lld: only %lld bytes "
		    "before end %lld", (long long)pos, (long long)room,
		    (long long)h->end);
	c->pos = pos;
	c->key = get64(p + offsetof(struct php_chunk, key));
	c->length = get64(p + offsetof(struct php_chunk, length));
	c->next = get64(p + offsetof(struct php_chunk, next));
	if (c->next <= 0)
		return bad(err, errlen, "chunk at offset %lld: next %lld is not "
		    "positive", (long long)pos, (long long)c->next);
	if (c->next % (int64_t)sizeof(int64_t) != 0)
		return bad(err, errlen, "chunk at offset %lld: next %lld is not "
		    "a multiple of 8", (long long)pos, (long long)c->next);
	if (c->length < 0)
		return bad(err, errlen, "chunk at offset %lld: length %lld is "
		    "negative", (long long)pos, (long long)c->length);
	if (c->length > room - CHUNK_DATA)
		return bad(err, errlen, "chunk at offset %lld: length %lld runs "
		    "past end %lld", (long long)pos, (long long)c->length,
		    (long long)h->end);
	want = CHUNK_SIZE(c->length);
	if (c->next != want)
		return bad(err, errlen, "chunk at offset %lld: next %lld does "
		    "not match length %lld (PHP makes it %lld)", (long long)pos,
		    (long long)c->next, (long long)c->length, (long long)want);
	if (c->next > room)
		return bad(err, errlen, "chunk at offset %lld: next %lld runs "
		    "past end %lld", (long long)pos, (long long)c->next,
		    (long long)h->end);
	return 0;
}

struct keypos {
	int64_t	 key;
	int64_t	 pos;
};

static int
keypos_cmp(const void *a, const void *b)
{
	const struct keypos *x = a, *y = b;

	if (x->key != y->key)
		return x->key < y->key ? -1 : 1;
	return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* Sort the keys of n chunks and report the first key found twice. */
static int
find_duplicate(struct keypos *keys, size_t n, char *err, size_t errlen)
{
	size_t i;

	qsort(keys, n, sizeof(*keys), keypos_cmp);
	for (i = 1; i < n; i++) {
		if (keys[i].key == keys[i - 1].key)
			return bad(err, errlen, "key %lld is at offset %lld "
			    "and again at offset %lld", (long long)keys[i].key,
			    (long long)keys[i - 1].pos, (long long)keys[i].pos);
	}
	return 0;
}

/*
 * Everything ipcb_php_check promises: the header, every chunk, and no key
 * twice (PHP never writes one, so a duplicate is damage). Also finds key
 * as PHP's php_check_shm_data does: found may be NULL, found->pos is -1
 * when the key is absent. count may be NULL. Up to 128 keys are sorted on
 * the stack; more take a second walk into an array of the right size.
 */
static int
validate(const struct ipcb_shm *shm, struct head *h, int64_t key,
    struct chunk *found, size_t *count, char *err, size_t errlen)
{
	struct keypos small[128], *keys;
	struct chunk c;
	size_t n = 0, i;
	int64_t pos;
	int rc;

	if ((rc = head_load(shm, h, err, errlen)) < 0)
		return rc;
	if (found != NULL)
		found->pos = -1;
	for (pos = h->start; pos < h->end; pos += c.next) {
		if ((rc = chunk_load(shm, h, pos, &c, err, errlen)) < 0)
			return rc;
		if (found != NULL && c.key == key && found->pos < 0)
			*found = c;
		if (n < sizeof(small) / sizeof(small[0])) {
			small[n].key = c.key;
			small[n].pos = pos;
		}
		n++;
	}
	if (count != NULL)
		*count = n;
	if (n <= sizeof(small) / sizeof(small[0]))
		return find_duplicate(small, n, err, errlen);
	if ((keys = calloc(n, sizeof(*keys))) == NULL)
		return -ENOMEM;
	i = 0;
	for (pos = h->start; pos < h->end; pos += c.next) {
		if ((rc = chunk_load(shm, h, pos, &c, err, errlen)) < 0)
			goto out;
		if (i == n) {
			rc = bad(err, errlen, "the chunks changed while being "
			    "checked");
			goto out;
		}
		keys[i].key = c.key;
		keys[i].pos = pos;
		i++;
	}
	rc = find_duplicate(keys, i, err, errlen);
out:
	free(keys);
	return rc;
}

int
ipcb_php_check(const struct ipcb_shm *shm, char *err, size_t errlen)
{
	struct head h;

	return validate(shm, &h, 0, NULL, NULL, err, errlen);
}

int
ipcb_php_get(const struct ipcb_shm *shm, int64_t key, const char **val,
    size_t *len)
{
	struct chunk c;
	struct head h;
	int rc;

	if ((rc = validate(shm, &h, key, &c, NULL, NULL, 0)) < 0)
		return rc;
	if (c.pos < 0)
		return -ENOENT;
	*val = shm->addr + c.pos + CHUNK_DATA;
	*len = (size_t)c.length;
	return 0;
}

/* php_remove_shm_data, on a chunk validate has checked. */
static void
remove_chunk(struct ipcb_shm *shm, struct head *h, const struct chunk *c)
{
	int64_t tail = h->end - c->pos - c->next;

	if (tail > 0)
		memmove(shm->addr + c->pos, shm->addr + c->pos + c->next,
		    (size_t)tail);
	h->end -= c->next;
	h->free += c->next;
	put64(shm->addr + offsetof(struct php_head, end), h->end);
	put64(shm->addr + offsetof(struct php_head, free), h->free);
}

/*
 * php_put_shm_data, with the room check moved before the removal of the
 * old value. Unlike PHP, the chunk's padding is zeroed, so no stale bytes
 * of an older value hide in it.
 */
int
ipcb_php_put(struct ipcb_shm *shm, int64_t key, const void *val, size_t len)
{
	struct chunk old;
	struct head h;
	int64_t next, room;
	char *p;
	int rc;

	if ((rc = validate(shm, &h, key, &old, NULL, NULL, 0)) < 0)
		return rc;
	room = h.free + (old.pos >= 0 ? old.next : 0);
	/* h.total <= size, so this also keeps CHUNK_SIZE from overflowing */
	if (len > (uint64_t)h.total)
		return -ENOSPC;
	next = CHUNK_SIZE(len);
	if (next > room)
		return -ENOSPC;
	if (old.pos >= 0)
		remove_chunk(shm, &h, &old);
	p = shm->addr + h.end;
	put64(p + offsetof(struct php_chunk, key), key);
	put64(p + offsetof(struct php_chunk, length), (int64_t)len);
	put64(p + offsetof(struct php_chunk, next), next);
	if (len > 0)
		memcpy(p + CHUNK_DATA, val, len);
	memset(p + CHUNK_DATA + len, 0, (size_t)(next - CHUNK_DATA) - len);
	h.end += next;
	h.free -= next;
	put64(shm->addr + offsetof(struct php_head, end), h.end);
	put64(shm->addr + offsetof(struct php_head, free), h.free);
	return 0;
}

int
ipcb_php_del(struct ipcb_shm *shm, int64_t key)
{
	struct chunk c;
	struct head h;
	int rc;

	if ((rc = validate(shm, &h, key, &c, NULL, NULL, 0)) < 0)
		return rc;
	if (c.pos < 0)
		return -ENOENT;
	remove_chunk(shm, &h, &c);
	return 0;
}

int
ipcb_php_usage(const struct ipcb_shm *shm, struct ipcb_php_usage *u)
{
	struct head h;
	size_t n;
	int rc;

	if ((rc = validate(shm, &h, 0, NULL, &n, NULL, 0)) < 0)
		return rc;
	u->used = (size_t)(h.end - h.start);
	u->free = (size_t)h.free;
	u->total = (size_t)h.total;
	u->count = n;
	return 0;
}

/*
 * The chain is validated whole before fn sees any of it, and each chunk
 * again as it is reached, in case fn or another process changed the
 * segment (fn should not). Returns 0, -EBADMSG, or what fn returned.
 */
int
ipcb_php_foreach(const struct ipcb_shm *shm,
    int (*fn)(int64_t key, const char *val, size_t len, void *arg),
    void *arg)
{
	struct chunk c;
	struct head h;
	int64_t pos;
	int rc;

	if ((rc = validate(shm, &h, 0, NULL, NULL, NULL, 0)) < 0)
		return rc;
	for (pos = h.start; pos < h.end; pos += c.next) {
		if ((rc = chunk_load(shm, &h, pos, &c, NULL, 0)) < 0)
			return rc;
		rc = fn(c.key, shm->addr + pos + CHUNK_DATA, (size_t)c.length,
		    arg);
		if (rc != 0)
			return rc;
	}
	return 0;
}
