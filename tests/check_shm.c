/*
 * check_shm.c - shared-memory segments and PHP sysvshm variables
 * (src/lib/shm.c): raw bounds, the PHP_SM layout byte for byte, put/del
 * the way php-src does them, a checker that catches every corruption, no
 * access outside a corrupt segment, and interop with real PHP both ways.
 *
 * Real segments use random private keys in 0x7e000000-0x7effffff; their
 * ids go into a page shared with the runner, which removes them even when
 * a test fails before its teardown. The corruption tests work on a buffer
 * between two PROT_NONE pages, so any stray access is a SIGSEGV.
 */
#include <sys/mman.h>
#include <sys/wait.h>

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include "ipcbridge.h"
#include "php_path.h"

struct registry {
	int	 n;
	int	 id[64];
};
static struct registry *reg;

static void
reg_add(int shmid)
{
	ck_assert_int_lt(reg->n, 64);
	reg->id[reg->n++] = shmid;
}

static void
reg_sweep(void)
{
	int i;

	for (i = 0; i < reg->n; i++)
		(void)shmctl(reg->id[i], IPC_RMID, NULL);
	reg->n = 0;
}

static void
seed(void)
{
	static pid_t seeded;
	struct timespec ts;

	if (seeded == getpid())
		return;
	seeded = getpid();
	clock_gettime(CLOCK_REALTIME, &ts);
	srandom((unsigned)getpid() ^ (unsigned)ts.tv_nsec);
}

static key_t
unused_key(void)
{
	key_t k;

	seed();
	for (;;) {
		k = (key_t)(0x7e000000 | (random() & 0xffffff));
		if (shmget(k, 0, 0) < 0 && errno == ENOENT)
			return k;
	}
}

/* A new zero-filled segment under a private key (IPC_EXCL), attached. */
static key_t
new_seg(size_t size, struct ipcb_shm *shm)
{
	int created = -1, id;
	key_t k;

	seed();
	for (;;) {
		k = (key_t)(0x7e000000 | (random() & 0xffffff));
		id = shmget(k, size, 0600 | IPC_CREAT | IPC_EXCL);
		if (id >= 0)
			break;
		ck_assert_int_eq(errno, EEXIST);
	}
	reg_add(id);
	ck_assert_int_eq(ipcb_shm_open(shm, k, size, 0600, 0, &created), 0);
	ck_assert_int_eq(created, 0);
	ck_assert_int_eq(shm->shmid, id);
	ck_assert_uint_eq(shm->size, size);
	return k;
}

static void
teardown(void)
{
	reg_sweep();
}

/*
 * A fake segment of n bytes that ends at a PROT_NONE page and starts
 * right after one: the php_* functions only use addr and size.
 */
struct guarded {
	char		*map;
	size_t		 maplen;
	struct ipcb_shm	 shm;
};

static void
guarded_new(struct guarded *g, size_t n)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	size_t body = (n + pg - 1) / pg * pg;

	if (body == 0)
		body = pg;
	g->maplen = body + 2 * pg;
	g->map = mmap(NULL, g->maplen, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert(g->map != MAP_FAILED);
	ck_assert_int_eq(mprotect(g->map, pg, PROT_NONE), 0);
	ck_assert_int_eq(mprotect(g->map + pg + body, pg, PROT_NONE), 0);
	memset(&g->shm, 0, sizeof(g->shm));
	g->shm.shmid = -1;
	g->shm.addr = g->map + pg + body - n;	/* flush with the end */
	g->shm.size = n;
}

static void
guarded_free(struct guarded *g)
{
	munmap(g->map, g->maplen);
}

static int64_t
get64(const struct ipcb_shm *shm, size_t off)
{
	int64_t v;

	memcpy(&v, shm->addr + off, 8);
	return v;
}

static void
set64(struct ipcb_shm *shm, size_t off, int64_t v)
{
	memcpy(shm->addr + off, &v, 8);
}

#define H_START	8
#define H_END	16
#define H_FREE	24
#define H_TOTAL	32
#define C_KEY	0
#define C_LEN	8
#define C_NEXT	16
#define C_DATA	24

static void
put_str(struct ipcb_shm *shm, int64_t key, const char *v)
{
	ck_assert_int_eq(ipcb_php_put(shm, key, v, strlen(v)), 0);
}

static void
assert_get(const struct ipcb_shm *shm, int64_t key, const void *want,
    size_t wantlen)
{
	const char *v = NULL;
	size_t n = 0;
	int rc;

	rc = ipcb_php_get(shm, key, &v, &n);
	ck_assert_msg(rc == 0, "get %lld: %d", (long long)key, rc);
	ck_assert_uint_eq(n, wantlen);
	ck_assert_mem_eq(v, want, wantlen);
}

static void
assert_get_str(const struct ipcb_shm *shm, int64_t key, const char *want)
{
	assert_get(shm, key, want, strlen(want));
}

static void
assert_absent(const struct ipcb_shm *shm, int64_t key)
{
	const char *v;
	size_t n;

	ck_assert_int_eq(ipcb_php_get(shm, key, &v, &n), -ENOENT);
}

static void
assert_ok(const struct ipcb_shm *shm)
{
	char err[256] = "";
	int rc;

	rc = ipcb_php_check(shm, err, sizeof(err));
	ck_assert_msg(rc == 0, "check: %d %s", rc, err);
}

static void
assert_header(const struct ipcb_shm *shm, int64_t end, int64_t total)
{
	ck_assert_int_eq(get64(shm, H_START), 40);
	ck_assert_int_eq(get64(shm, H_END), end);
	ck_assert_int_eq(get64(shm, H_TOTAL), total);
	ck_assert_int_eq(get64(shm, H_FREE), total - end);
}

/* The variables in chunk order, as "key=value;key=value;". */
struct listing {
	char	 s[512];
	size_t	 n;
	int	 stop_after;
};

static int
list_one(int64_t key, const char *val, size_t len, void *arg)
{
	struct listing *l = arg;
	size_t room = sizeof(l->s) - strlen(l->s);

	snprintf(l->s + strlen(l->s), room, "%lld=%.*s|", (long long)key,
	    (int)len, val);
	l->n++;
	if (l->stop_after != 0 && (int)l->n == l->stop_after)
		return 7;
	return 0;
}

static const char *
listing(const struct ipcb_shm *shm)
{
	static struct listing l;

	memset(&l, 0, sizeof(l));
	ck_assert_int_eq(ipcb_php_foreach(shm, list_one, &l), 0);
	return l.s;
}

/* The three values of the reference dump (sysv-formats.md 2.5). */
#define V1	"s:5:\"hello\";"
#define V2	"i:42;"
#define V7	"a:3:{s:1:\"a\";d:1.5;s:1:\"b\";b:1;s:1:\"c\";N;}"

START_TEST(test_open_creates)
{
	struct ipcb_shm a, b;
	struct shmid_ds ds;
	key_t k = unused_key();
	int created = -1;

	ck_assert_int_eq(ipcb_shm_open(&a, k, 10000, 0600, 0, &created),
	    -ENOENT);
	ck_assert_int_eq(created, 0);
	ck_assert_ptr_null(a.addr);
	ck_assert_int_eq(ipcb_shm_open(&a, k, 10000, 0640, 1, &created), 0);
	reg_add(a.shmid);
	ck_assert_int_eq(created, 1);
	ck_assert_int_eq(a.key, k);
	ck_assert_uint_eq(a.size, 10000);
	ck_assert_int_eq(ipcb_shm_stat(&a, &ds), 0);
	ck_assert_uint_eq(ds.shm_segsz, 10000);
	ck_assert_int_eq(ds.shm_perm.mode & 0777, 0640);
	/* it exists now: a bigger size is ignored, the real one is kept */
	ck_assert_int_eq(ipcb_shm_open(&b, k, 99999, 0600, 1, &created), 0);
	ck_assert_int_eq(created, 0);
	ck_assert_int_eq(b.shmid, a.shmid);
	ck_assert_uint_eq(b.size, 10000);
	ck_assert_int_eq(ipcb_shm_close(&b), 0);
	ck_assert_int_eq(ipcb_shm_open(&b, k, 0, 0, 0, NULL), 0);
	ck_assert_uint_eq(b.size, 10000);
	ck_assert_int_eq(ipcb_shm_write(&a, 9999, "z", 1), 0);
	ck_assert_int_eq(b.addr[9999], 'z');
	ck_assert_int_eq(ipcb_shm_close(&b), 0);
	ck_assert_ptr_null(b.addr);
	ck_assert_int_eq(ipcb_shm_close(&b), 0);
	ck_assert_int_eq(ipcb_shm_close(&a), 0);
	ck_assert_int_eq(ipcb_shm_stat(&a, &ds), -EBADF);
}
END_TEST

static int shmat_errno;

static void *
failing_shmat(int id, const void *addr, int flags)
{
	(void)id;
	(void)addr;
	(void)flags;
	errno = shmat_errno;
	return (void *)-1;
}

/* A segment we made but cannot attach is not left behind for PHP. */
START_TEST(test_open_attach_fails)
{
	struct ipcb_shm a;
	key_t k = unused_key();
	int created = -1;

	ipcb_sysv.shmat = failing_shmat;
	shmat_errno = ENOMEM;
	ck_assert_int_eq(ipcb_shm_open(&a, k, 4096, 0600, 1, &created),
	    -ENOMEM);
	ipcb_sysv.shmat = shmat;
	ck_assert_int_eq(created, 0);
	ck_assert_int_lt(shmget(k, 0, 0), 0);
	ck_assert_int_eq(errno, ENOENT);
	/* but one that was there stays */
	k = new_seg(4096, &a);
	ck_assert_int_eq(ipcb_shm_close(&a), 0);
	ipcb_sysv.shmat = failing_shmat;
	ck_assert_int_eq(ipcb_shm_open(&a, k, 4096, 0600, 1, &created),
	    -ENOMEM);
	ipcb_sysv.shmat = shmat;
	ck_assert_int_eq(created, 0);
	ck_assert_int_eq(shmget(k, 0, 0), reg->id[reg->n - 1]);
}
END_TEST

START_TEST(test_raw_bounds)
{
	struct ipcb_shm s, closed = { .shmid = -1 };
	char buf[16] = "0123456789abcdef", got[16];

	new_seg(1000, &s);
	ck_assert_int_eq(ipcb_shm_write(&s, 0, buf, 16), 0);
	ck_assert_int_eq(ipcb_shm_write(&s, 984, buf, 16), 0);
	ck_assert_int_eq(ipcb_shm_write(&s, 985, buf, 16), -ERANGE);
	ck_assert_int_eq(ipcb_shm_write(&s, 1000, buf, 0), 0);
	ck_assert_int_eq(ipcb_shm_write(&s, 1001, buf, 0), -ERANGE);
	ck_assert_int_eq(ipcb_shm_write(&s, SIZE_MAX, buf, 2), -ERANGE);
	ck_assert_int_eq(ipcb_shm_write(&s, 2, buf, SIZE_MAX), -ERANGE);
	ck_assert_int_eq(ipcb_shm_write(&s, SIZE_MAX - 1, buf, 2), -ERANGE);
	memset(got, 0, sizeof(got));
	ck_assert_int_eq(ipcb_shm_read(&s, 984, got, 16), 0);
	ck_assert_mem_eq(got, buf, 16);
	ck_assert_int_eq(ipcb_shm_read(&s, 0, got, 16), 0);
	ck_assert_mem_eq(got, buf, 16);
	ck_assert_int_eq(ipcb_shm_read(&s, 985, got, 16), -ERANGE);
	ck_assert_int_eq(ipcb_shm_read(&s, 1000, got, 0), 0);
	ck_assert_int_eq(ipcb_shm_read(&s, 1, got, SIZE_MAX), -ERANGE);
	ck_assert_int_eq(ipcb_shm_read(&s, SIZE_MAX, got, 1), -ERANGE);
	ck_assert_int_eq(ipcb_shm_read(&closed, 0, got, 1), -EBADF);
	ck_assert_int_eq(ipcb_shm_write(&closed, 0, got, 1), -EBADF);
	/* the PHP layer refuses an unattached handle the same way */
	ck_assert_int_eq(ipcb_php_init(&closed), -EBADF);
	ck_assert_int_eq(ipcb_php_check(&closed, NULL, 0), -EBADF);
	ck_assert_int_eq(ipcb_php_put(&closed, 1, "N;", 2), -EBADF);
	ck_assert_int_eq(ipcb_php_del(&closed, 1), -EBADF);
}
END_TEST

START_TEST(test_init_fresh)
{
	static const unsigned char want[40] = {
		'P', 'H', 'P', '_', 'S', 'M', 0, 0,
		40, 0, 0, 0, 0, 0, 0, 0,
		40, 0, 0, 0, 0, 0, 0, 0,
		0xe8, 0x26, 0, 0, 0, 0, 0, 0,	/* free 9960 */
		0x10, 0x27, 0, 0, 0, 0, 0, 0,	/* total 10000 */
	};
	struct ipcb_php_usage u;
	struct listing l = { .n = 0 };
	struct ipcb_shm s;

	new_seg(10000, &s);
	memset(s.addr, 0xee, s.size);
	ck_assert_int_eq(ipcb_php_init(&s), 0);
	ck_assert_mem_eq(s.addr, want, 40);
	ck_assert_int_eq((unsigned char)s.addr[40], 0xee);
	assert_ok(&s);
	ck_assert_int_eq(ipcb_php_usage(&s, &u), 0);
	ck_assert_uint_eq(u.used, 0);
	ck_assert_uint_eq(u.free, 9960);
	ck_assert_uint_eq(u.total, 10000);
	ck_assert_uint_eq(u.count, 0);
	assert_absent(&s, 1);
	ck_assert_int_eq(ipcb_php_del(&s, 1), -ENOENT);
	ck_assert_int_eq(ipcb_php_foreach(&s, list_one, &l), 0);
	ck_assert_uint_eq(l.n, 0);
}
END_TEST

START_TEST(test_init_sizes)
{
	struct guarded g;

	guarded_new(&g, 39);
	ck_assert_int_eq(ipcb_php_init(&g.shm), -ENOSPC);
	guarded_free(&g);
	guarded_new(&g, 40);		/* a header and no room at all */
	ck_assert_int_eq(ipcb_php_init(&g.shm), 0);
	assert_ok(&g.shm);
	assert_header(&g.shm, 40, 40);
	ck_assert_int_eq(ipcb_php_put(&g.shm, 1, "", 0), -ENOSPC);
	guarded_free(&g);
	guarded_new(&g, 72);		/* exactly one empty value */
	ck_assert_int_eq(ipcb_php_init(&g.shm), 0);
	ck_assert_int_eq(ipcb_php_put(&g.shm, 1, "", 0), 0);
	assert_header(&g.shm, 72, 72);
	assert_get(&g.shm, 1, "", 0);
	ck_assert_int_eq(ipcb_php_put(&g.shm, 2, "", 0), -ENOSPC);
	ck_assert_int_eq(ipcb_php_put(&g.shm, 1, "x", 1), -ENOSPC);	/* 40 */
	ck_assert_int_eq(ipcb_php_put(&g.shm, 1, "", 0), 0);
	assert_header(&g.shm, 72, 72);
	assert_get(&g.shm, 1, "", 0);
	assert_ok(&g.shm);
	guarded_free(&g);
}
END_TEST

/* Our puts give the bytes of the PHP dump in sysv-formats.md 2.5. */
START_TEST(test_layout_matches_php)
{
	struct ipcb_shm s;
	char want[208];

	new_seg(10000, &s);
	ck_assert_int_eq(ipcb_php_init(&s), 0);
	memset(s.addr + 40, 0xee, 1000);	/* padding must be cleared */
	put_str(&s, 1, V1);
	put_str(&s, 2, V2);
	put_str(&s, 7, V7);
	memset(want, 0, sizeof(want));
	memcpy(want, "PHP_SM", 6);
	memcpy(want + 8, "\x28\0\0\0\0\0\0\0\xd0\0\0\0\0\0\0\0"
	    "\x40\x26\0\0\0\0\0\0\x10\x27\0\0\0\0\0\0", 32);
	memcpy(want + 40, "\x01\0\0\0\0\0\0\0\x0c\0\0\0\0\0\0\0"
	    "\x30\0\0\0\0\0\0\0", 24);
	memcpy(want + 64, V1, 12);
	memcpy(want + 88, "\x02\0\0\0\0\0\0\0\x05\0\0\0\0\0\0\0"
	    "\x28\0\0\0\0\0\0\0", 24);
	memcpy(want + 112, V2, 5);
	memcpy(want + 128, "\x07\0\0\0\0\0\0\0\x2a\0\0\0\0\0\0\0"
	    "\x50\0\0\0\0\0\0\0", 24);
	memcpy(want + 152, V7, 42);
	ck_assert_mem_eq(s.addr, want, sizeof(want));
	ck_assert_int_eq((unsigned char)s.addr[208], 0xee);
	assert_ok(&s);
}
END_TEST

START_TEST(test_round_trip)
{
	struct ipcb_php_usage u;
	struct ipcb_shm s;
	static const char nul[] = "s:4:\"h\0\xc3\xa9\";";

	new_seg(4096, &s);
	ck_assert_int_eq(ipcb_php_init(&s), 0);
	put_str(&s, 1, V1);
	put_str(&s, INT64_MAX, V2);
	put_str(&s, INT64_MIN, V7);
	put_str(&s, -1, "N;");
	ck_assert_int_eq(ipcb_php_put(&s, 0, nul, sizeof(nul) - 1), 0);
	ck_assert_int_eq(ipcb_php_put(&s, 5, "", 0), 0);
	assert_ok(&s);
	assert_get_str(&s, 1, V1);
	assert_get_str(&s, INT64_MAX, V2);
	assert_get_str(&s, INT64_MIN, V7);
	assert_get_str(&s, -1, "N;");
	assert_get(&s, 0, nul, sizeof(nul) - 1);
	assert_get(&s, 5, "", 0);
	assert_absent(&s, 2);
	assert_absent(&s, INT64_MAX - 1);
	ck_assert_int_eq(ipcb_php_usage(&s, &u), 0);
	ck_assert_uint_eq(u.count, 6);
	/* 48 + 40 + 80 + 40 + 48 + 32 */
	ck_assert_uint_eq(u.used, 288);
	ck_assert_uint_eq(u.free, 4096 - 40 - 288);
	ck_assert_uint_eq(u.total, 4096);
	ck_assert_int_eq(ipcb_php_del(&s, INT64_MIN), 0);
	assert_absent(&s, INT64_MIN);
	ck_assert_int_eq(ipcb_php_del(&s, INT64_MIN), -ENOENT);
	assert_get_str(&s, -1, "N;");
	assert_ok(&s);
}
END_TEST

START_TEST(test_replace_moves_to_end)
{
	struct listing l = { .stop_after = 2 };
	struct ipcb_shm s;

	new_seg(4096, &s);
	ck_assert_int_eq(ipcb_php_init(&s), 0);
	put_str(&s, 1, V1);
	put_str(&s, 2, V2);
	put_str(&s, 7, V7);
	ck_assert_str_eq(listing(&s), "1=" V1 "|2=" V2 "|7=" V7 "|");
	put_str(&s, 1, "s:3:\"new\";");
	ck_assert_str_eq(listing(&s),
	    "2=" V2 "|7=" V7 "|1=s:3:\"new\";|");
	/* same size in place? no: PHP always moves it to the end */
	put_str(&s, 2, "i:43;");
	ck_assert_str_eq(listing(&s),
	    "7=" V7 "|1=s:3:\"new\";|2=i:43;|");
	assert_header(&s, 40 + 80 + 48 + 40, 4096);
	ck_assert_int_eq(get64(&s, 40 + C_KEY), 7);
	ck_assert_int_eq(get64(&s, 40 + 80 + 48 + C_KEY), 2);
	assert_ok(&s);
	/* foreach stops on and returns fn's non-zero */
	ck_assert_int_eq(ipcb_php_foreach(&s, list_one, &l), 7);
	ck_assert_uint_eq(l.n, 2);
}
END_TEST

/* No room: -ENOSPC, and unlike PHP the old value is still there. */
START_TEST(test_enospc_keeps_old)
{
	struct ipcb_shm s;
	char big[200], before[256];

	new_seg(256, &s);
	ck_assert_int_eq(ipcb_php_init(&s), 0);
	memset(big, 'x', sizeof(big));
	/* 40 + 48 (V1) + 136 (100 bytes) = 224: 32 free */
	put_str(&s, 1, V1);
	ck_assert_int_eq(ipcb_php_put(&s, 2, big, 100), 0);
	assert_header(&s, 224, 256);
	memcpy(before, s.addr, 256);
	/* 176 needed, 136 + 32 would be free after the removal */
	ck_assert_int_eq(ipcb_php_put(&s, 2, big, 137), -ENOSPC);
	ck_assert_mem_eq(s.addr, before, 256);
	ck_assert_int_eq(ipcb_php_put(&s, 3, big, 9), -ENOSPC);	/* 48 */
	ck_assert_int_eq(ipcb_php_put(&s, 3, big, SIZE_MAX), -ENOSPC);
	ck_assert_int_eq(ipcb_php_put(&s, 2, big, SIZE_MAX - 30), -ENOSPC);
	ck_assert_mem_eq(s.addr, before, 256);
	assert_get(&s, 2, big, 100);
	/* but counting the space the old value frees, 136 bytes (168) fit */
	ck_assert_int_eq(ipcb_php_put(&s, 2, big, 136), 0);
	assert_header(&s, 256, 256);
	assert_get(&s, 2, big, 136);
	assert_get_str(&s, 1, V1);
	ck_assert_int_eq(ipcb_php_put(&s, 1, "i:1;", 4), 0);	/* 48 -> 40 */
	assert_header(&s, 248, 256);
	assert_ok(&s);
}
END_TEST

START_TEST(test_del_compacts)
{
	struct ipcb_shm s;
	char chunk7[80];

	new_seg(4096, &s);
	ck_assert_int_eq(ipcb_php_init(&s), 0);
	put_str(&s, 1, V1);
	put_str(&s, 2, V2);
	put_str(&s, 7, V7);
	memcpy(chunk7, s.addr + 128, 80);
	ck_assert_int_eq(ipcb_php_del(&s, 2), 0);
	assert_header(&s, 168, 4096);
	ck_assert_mem_eq(s.addr + 88, chunk7, 80);
	/* PHP leaves the stale bytes after end: so do we */
	ck_assert_mem_eq(s.addr + 168, chunk7 + 40, 40);
	assert_ok(&s);
	assert_absent(&s, 2);
	assert_get_str(&s, 7, V7);
	ck_assert_int_eq(ipcb_php_del(&s, 1), 0);
	assert_header(&s, 120, 4096);
	ck_assert_mem_eq(s.addr + 40, chunk7, 80);
	ck_assert_int_eq(ipcb_php_del(&s, 7), 0);	/* the last one */
	assert_header(&s, 40, 4096);
	ck_assert_int_eq(ipcb_php_del(&s, 7), -ENOENT);
	assert_ok(&s);
	ck_assert_str_eq(listing(&s), "");
}
END_TEST

/*
 * Corruptions. Each starts from the dump layout (1, 2, 7 at 40, 88, 128,
 * end 208) in a guarded buffer, breaks one thing, and expects check to say
 * why and every other call to refuse the segment without writing to it.
 */
struct corruption {
	const char	*name;
	void		(*apply)(struct ipcb_shm *);
	const char	*msg;
	size_t		 size;		/* 0: 4096 */
};

static void
c_magic(struct ipcb_shm *s)
{
	s->addr[3] = '-';
}

static void
c_magic_nul(struct ipcb_shm *s)
{
	s->addr[6] = '!';
}

static void
c_start(struct ipcb_shm *s)
{
	set64(s, H_START, 48);
}

static void
c_start_zero(struct ipcb_shm *s)
{
	set64(s, H_START, 0);
}

static void
c_end_past_total(struct ipcb_shm *s)
{
	set64(s, H_END, 4096 + 8);
	set64(s, H_FREE, -8);
}

static void
c_end_before_start(struct ipcb_shm *s)
{
	set64(s, H_END, 32);
	set64(s, H_FREE, 4096 - 32);
}

static void
c_end_negative(struct ipcb_shm *s)
{
	set64(s, H_END, -4096);
	set64(s, H_FREE, 8192);
}

static void
c_total_past_size(struct ipcb_shm *s)
{
	set64(s, H_TOTAL, 10000);		/* what PHP's default writes */
	set64(s, H_FREE, 10000 - 208);
}

static void
c_total_huge(struct ipcb_shm *s)
{
	set64(s, H_TOTAL, INT64_MAX);
	set64(s, H_FREE, INT64_MAX - 208);
}

static void
c_free(struct ipcb_shm *s)
{
	set64(s, H_FREE, 4096 - 200);
}

static void
c_next_zero(struct ipcb_shm *s)
{
	set64(s, 88 + C_NEXT, 0);
}

static void
c_next_negative(struct ipcb_shm *s)
{
	set64(s, 88 + C_NEXT, -48);
}

static void
c_next_odd(struct ipcb_shm *s)
{
	set64(s, 128 + C_NEXT, 12);
}

static void
c_next_formula(struct ipcb_shm *s)
{
	set64(s, 88 + C_NEXT, 48);		/* length 5 makes 40 */
}

static void
c_next_huge(struct ipcb_shm *s)
{
	set64(s, 128 + C_NEXT, INT64_MAX - 7);
}

static void
c_length_negative(struct ipcb_shm *s)
{
	set64(s, 40 + C_LEN, -1);
}

static void
c_length_huge(struct ipcb_shm *s)
{
	set64(s, 128 + C_LEN, INT64_MAX);
}

static void
c_length_formula(struct ipcb_shm *s)
{
	set64(s, 40 + C_LEN, 20);		/* needs 56, next is 48 */
}

static void
c_chain_short(struct ipcb_shm *s)
{
	set64(s, H_END, 200);			/* inside the last chunk */
	set64(s, H_FREE, 4096 - 200);
}

static void
c_chain_long(struct ipcb_shm *s)
{
	set64(s, H_END, 216);			/* 8 bytes of nothing */
	set64(s, H_FREE, 4096 - 216);
}

static void
c_chain_garbage(struct ipcb_shm *s)
{
	set64(s, H_END, 208 + 32);		/* a zero chunk: next 0 */
	set64(s, H_FREE, 4096 - 240);
}

static void
c_duplicate(struct ipcb_shm *s)
{
	set64(s, 128 + C_KEY, 1);
}

static void
c_small_segment(struct ipcb_shm *s)
{
	(void)s;
}

static const struct corruption corruptions[] = {
	{ "magic", c_magic, "bad magic", 0 },
	{ "magic NUL", c_magic_nul, "bad magic", 0 },
	{ "start", c_start, "start 48 is not 40", 0 },
	{ "start 0", c_start_zero, "start 0 is not 40", 0 },
	{ "end > total", c_end_past_total, "end 4104 is past total 4096", 0 },
	{ "end < start", c_end_before_start, "end 32 is before start 40", 0 },
	{ "end < 0", c_end_negative, "end -4096 is before start", 0 },
	{ "total > size", c_total_past_size,
	    "total 10000 is past the segment size 4096", 0 },
	{ "total huge", c_total_huge, "is past the segment size 4096", 0 },
	{ "free", c_free, "free 3896 is not total - end (3888)", 0 },
	{ "next 0", c_next_zero, "chunk at offset 88: next 0 is not positive",
	    0 },
	{ "next < 0", c_next_negative,
	    "chunk at offset 88: next -48 is not positive", 0 },
	{ "next odd", c_next_odd,
	    "chunk at offset 128: next 12 is not a multiple of 8", 0 },
	{ "next formula", c_next_formula,
	    "chunk at offset 88: next 48 does not match length 5 "
	    "(PHP makes it 40)", 0 },
	{ "next huge", c_next_huge,
	    "chunk at offset 128: next 9223372036854775800 does not match", 0 },
	{ "length < 0", c_length_negative,
	    "chunk at offset 40: length -1 is negative", 0 },
	{ "length huge", c_length_huge,
	    "chunk at offset 128: length 9223372036854775807 runs past end", 0 },
	{ "length formula", c_length_formula,
	    "chunk at offset 40: next 48 does not match length 20", 0 },
	{ "end inside chunk", c_chain_short,
	    "chunk at offset 128: next 80 runs past end 200", 0 },
	{ "end after chain", c_chain_long,
	    "chunk at offset 208: only 8 bytes before end 216", 0 },
	{ "garbage after chain", c_chain_garbage,
	    "chunk at offset 208: next 0 is not positive", 0 },
	{ "duplicate key", c_duplicate,
	    "key 1 is at offset 40 and again at offset 128", 0 },
	{ "segment < header", c_small_segment, "smaller than the", 32 },
};

/* The dump layout, written by hand so the corruption tests need no put. */
static void
dump_layout(struct ipcb_shm *s)
{
	memset(s->addr, 0, s->size);
	memcpy(s->addr, "PHP_SM", 7);
	set64(s, H_START, 40);
	set64(s, H_END, 208);
	set64(s, H_FREE, (int64_t)s->size - 208);
	set64(s, H_TOTAL, (int64_t)s->size);
	set64(s, 40 + C_KEY, 1);
	set64(s, 40 + C_LEN, 12);
	set64(s, 40 + C_NEXT, 48);
	memcpy(s->addr + 40 + C_DATA, V1, 12);
	set64(s, 88 + C_KEY, 2);
	set64(s, 88 + C_LEN, 5);
	set64(s, 88 + C_NEXT, 40);
	memcpy(s->addr + 88 + C_DATA, V2, 5);
	set64(s, 128 + C_KEY, 7);
	set64(s, 128 + C_LEN, 42);
	set64(s, 128 + C_NEXT, 80);
	memcpy(s->addr + 128 + C_DATA, V7, 42);
}

static int
never(int64_t key, const char *val, size_t len, void *arg)
{
	(void)key;
	(void)val;
	(void)len;
	(void)arg;
	ck_abort_msg("foreach called fn on a corrupt segment");
	return 0;
}

START_TEST(test_check_rejects)
{
	const struct corruption *c = &corruptions[_i];
	struct ipcb_php_usage u;
	struct guarded g;
	char err[256] = "", *image;
	const char *v;
	size_t n;

	guarded_new(&g, c->size ? c->size : 4096);
	if (g.shm.size >= 208) {
		dump_layout(&g.shm);
		assert_ok(&g.shm);
	}
	c->apply(&g.shm);
	ck_assert_msg(ipcb_php_check(&g.shm, err, sizeof(err)) == -EBADMSG,
	    "%s: check accepted it", c->name);
	ck_assert_msg(strstr(err, c->msg) != NULL, "%s: \"%s\", want \"%s\"",
	    c->name, err, c->msg);
	image = malloc(g.shm.size);
	ck_assert_ptr_nonnull(image);
	memcpy(image, g.shm.addr, g.shm.size);
	/* the key a lookup would find first in every layout */
	ck_assert_int_eq(ipcb_php_put(&g.shm, 1, "i:1;", 4), -EBADMSG);
	ck_assert_int_eq(ipcb_php_put(&g.shm, 99, "i:1;", 4), -EBADMSG);
	ck_assert_int_eq(ipcb_php_del(&g.shm, 1), -EBADMSG);
	ck_assert_int_eq(ipcb_php_del(&g.shm, 99), -EBADMSG);
	ck_assert_mem_eq(g.shm.addr, image, g.shm.size);
	ck_assert_int_eq(ipcb_php_get(&g.shm, 1, &v, &n), -EBADMSG);
	ck_assert_int_eq(ipcb_php_get(&g.shm, 7, &v, &n), -EBADMSG);
	ck_assert_int_eq(ipcb_php_get(&g.shm, 99, &v, &n), -EBADMSG);
	ck_assert_int_eq(ipcb_php_foreach(&g.shm, never, NULL), -EBADMSG);
	ck_assert_int_eq(ipcb_php_usage(&g.shm, &u), -EBADMSG);
	ck_assert_mem_eq(g.shm.addr, image, g.shm.size);
	/* and init makes it good again */
	ck_assert_int_eq(ipcb_php_init(&g.shm),
	    g.shm.size < 40 ? -ENOSPC : 0);
	if (g.shm.size >= 40)
		assert_ok(&g.shm);
	free(image);
	guarded_free(&g);
}
END_TEST

/* check's error buffer may be NULL or tiny. */
START_TEST(test_check_err_buffer)
{
	struct guarded g;
	char err[8];

	guarded_new(&g, 4096);
	dump_layout(&g.shm);
	c_next_odd(&g.shm);
	ck_assert_int_eq(ipcb_php_check(&g.shm, NULL, 0), -EBADMSG);
	memset(err, 'x', sizeof(err));
	ck_assert_int_eq(ipcb_php_check(&g.shm, err, 1), -EBADMSG);
	ck_assert_int_eq(err[0], '\0');
	ck_assert_int_eq(err[1], 'x');
	ck_assert_int_eq(ipcb_php_check(&g.shm, err, sizeof(err)), -EBADMSG);
	ck_assert_str_eq(err, "chunk a");
	guarded_free(&g);
}
END_TEST

/*
 * Random damage to header and chunk fields: nothing may crash (the guard
 * pages see to that), a segment check refuses is never written, and a
 * segment check accepts stays acceptable through put and del.
 */
START_TEST(test_fuzz)
{
	static const size_t fields[] = {
		H_START, H_END, H_FREE, H_TOTAL,
		40 + C_KEY, 40 + C_LEN, 40 + C_NEXT,
		88 + C_KEY, 88 + C_LEN, 88 + C_NEXT,
		128 + C_KEY, 128 + C_LEN, 128 + C_NEXT,
	};
	static const int64_t vals[] = {
		0, 1, -1, 7, 8, 24, 32, 40, 48, 80, 88, 128, 200, 208, 216,
		4088, 4096, 4104, INT64_MAX, INT64_MIN, INT64_MAX - 7,
		INT32_MAX, -4096,
	};
	struct guarded g;
	char *image;
	const char *v;
	size_t n;
	int i, j, ok, rc, accepted = 0;

	guarded_new(&g, 4096);
	image = malloc(4096);
	ck_assert_ptr_nonnull(image);
	srandom(12345);
	for (i = 0; i < 20000; i++) {
		dump_layout(&g.shm);
		for (j = 0; j < 1 + (int)(random() % 3); j++) {
			size_t f = fields[random() % 13];
			int64_t x = random() % 2 ? vals[random() % 23] :
			    (int64_t)((uint64_t)get64(&g.shm, f) +
			    (uint64_t)(random() % 17) - 8);

			set64(&g.shm, f, x);
		}
		ok = ipcb_php_check(&g.shm, NULL, 0) == 0;
		accepted += ok;
		memcpy(image, g.shm.addr, 4096);
		rc = ipcb_php_get(&g.shm, 2, &v, &n);
		ck_assert(rc == 0 || rc == -ENOENT || rc == -EBADMSG);
		if (rc == 0)
			ck_assert(v >= g.shm.addr + 40 &&
			    v + n <= g.shm.addr + 4096);
		rc = ipcb_php_put(&g.shm, 2, "i:3;", 4);
		if (!ok && rc == -EBADMSG)
			ck_assert_mem_eq(g.shm.addr, image, 4096);
		if (ok)
			ck_assert(rc == 0 || rc == -ENOSPC);
		else
			ck_assert_int_eq(rc, -EBADMSG);
		rc = ipcb_php_del(&g.shm, 7);
		ck_assert(rc == 0 || rc == -ENOENT || rc == -EBADMSG);
		if (ok)
			assert_ok(&g.shm);
	}
	ck_assert_int_gt(accepted, 0);
	free(image);
	guarded_free(&g);
}
END_TEST

/* Many variables: the duplicate check past its 128-key stack array. */
START_TEST(test_many_variables)
{
	struct ipcb_php_usage u;
	struct ipcb_shm s;
	char v[32], err[256];
	const char *got;
	size_t n;
	int64_t k, pos;

	new_seg(16384, &s);
	ck_assert_int_eq(ipcb_php_init(&s), 0);
	for (k = 0; k < 300; k++) {
		snprintf(v, sizeof(v), "i:%lld;", (long long)(k * 1000));
		put_str(&s, k * 3 - 400, v);
	}
	assert_ok(&s);
	ck_assert_int_eq(ipcb_php_usage(&s, &u), 0);
	ck_assert_uint_eq(u.count, 300);
	for (k = 0; k < 300; k++) {
		snprintf(v, sizeof(v), "i:%lld;", (long long)(k * 1000));
		assert_get_str(&s, k * 3 - 400, v);
	}
	/* make chunk 250's key that of chunk 5 */
	for (pos = 40, k = 0; k < 250; k++)
		pos += get64(&s, (size_t)pos + C_NEXT);
	set64(&s, (size_t)pos + C_KEY, 5 * 3 - 400);
	ck_assert_int_eq(ipcb_php_check(&s, err, sizeof(err)), -EBADMSG);
	ck_assert_msg(strstr(err, "key -385 is at offset 240 and again at "
	    "offset") != NULL, "%s", err);
	ck_assert_int_eq(ipcb_php_get(&s, 1, &got, &n), -EBADMSG);
	ck_assert_int_eq(ipcb_php_put(&s, 1, "N;", 2), -EBADMSG);
	set64(&s, (size_t)pos + C_KEY, 250 * 3 - 400);
	assert_ok(&s);
}
END_TEST

/* A 4 MiB value in an 8 MiB segment. */
START_TEST(test_big_value)
{
	struct ipcb_shm s;
	size_t n = 4u << 20, i;
	char *v;

	new_seg(8u << 20, &s);
	ck_assert_int_eq(ipcb_php_init(&s), 0);
	v = malloc(n);
	ck_assert_ptr_nonnull(v);
	for (i = 0; i < n; i++)
		v[i] = (char)(i * 7 + (i >> 12));
	ck_assert_int_eq(ipcb_php_put(&s, 1, v, n), 0);
	assert_get(&s, 1, v, n);
	ck_assert_int_eq(ipcb_php_put(&s, 2, v, n), -ENOSPC);
	v[0] = 'Q';
	ck_assert_int_eq(ipcb_php_put(&s, 1, v, n), 0);	/* replace fits */
	assert_get(&s, 1, v, n);
	assert_ok(&s);
	free(v);
}
END_TEST

/*
 * Interop with real PHP: it runs against the same segment and prints what
 * it sees. Skipped when php is not in PATH.
 */

/* Run php -r "$k = key; code", and compare all of its output to want. */
static void
php_run(key_t key, const char *code, const char *want)
{
	char script[4096], out[4096];
	size_t n = 0;
	ssize_t r;
	int op[2], w;
	pid_t pid;

	snprintf(script, sizeof(script), "$k = %d; %s", (int)key, code);
	ck_assert_int_eq(pipe(op), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(op[0]);
		dup2(op[1], 1);
		close(op[1]);
		close(0);
		execl(php_path(), "php", "-r", script, (char *)NULL);
		_exit(127);
	}
	close(op[1]);
	while (n + 1 < sizeof(out) &&
	    (r = read(op[0], out + n, sizeof(out) - 1 - n)) > 0)
		n += (size_t)r;
	out[n] = '\0';
	close(op[0]);
	ck_assert_int_eq(waitpid(pid, &w, 0), pid);
	ck_assert_msg(WIFEXITED(w) && WEXITSTATUS(w) == 0,
	    "php exited with status 0x%x, said \"%s\"", w, out);
	ck_assert_str_eq(out, want);
}

/* PHP writes into a segment we created: we read serialize() exactly. */
START_TEST(test_php_writes_we_read)
{
	static const char nul[] = "s:4:\"h\0\xc3\xa9\";";
	struct ipcb_shm s;
	char dump[208];
	key_t k;

	SKIP_WITHOUT_PHP();
	k = new_seg(10000, &s);
	php_run(k, "$s = shm_attach($k, 10000);"
	    "shm_put_var($s, 1, 'hello');"
	    "shm_put_var($s, 2, 42);"
	    "shm_put_var($s, 7, ['a' => 1.5, 'b' => true, 'c' => null]);"
	    "echo 'ok';", "ok");
	assert_ok(&s);
	assert_get_str(&s, 1, V1);
	assert_get_str(&s, 2, V2);
	assert_get_str(&s, 7, V7);
	/* byte for byte what our own puts write (zero padding both) */
	memcpy(dump, s.addr, sizeof(dump));
	ck_assert_int_eq(ipcb_php_init(&s), 0);
	put_str(&s, 1, V1);
	put_str(&s, 2, V2);
	put_str(&s, 7, V7);
	ck_assert_mem_eq(s.addr, dump, sizeof(dump));

	php_run(k, "$s = shm_attach($k);"
	    "shm_put_var($s, 1 << 40, \"h\\0\\u{e9}\");"
	    "shm_put_var($s, -5, 3.25);"
	    "shm_put_var($s, 2, 'replaced');"
	    "shm_remove_var($s, 1);"
	    "shm_put_var($s, 8, new stdClass);"
	    "echo 'ok';", "ok");
	assert_ok(&s);
	assert_get(&s, (int64_t)1 << 40, nul, sizeof(nul) - 1);
	assert_get_str(&s, -5, "d:3.25;");
	assert_get_str(&s, 2, "s:8:\"replaced\";");
	assert_get_str(&s, 8, "O:8:\"stdClass\":0:{}");
	assert_absent(&s, 1);
	ck_assert_str_eq(listing(&s), "7=" V7 "|1099511627776=s:4:\"h|"
	    "-5=d:3.25;|2=s:8:\"replaced\";|8=O:8:\"stdClass\":0:{}|");
}
END_TEST

/* We write, PHP reads, replaces and removes; we follow. */
START_TEST(test_we_write_php_reads)
{
	struct ipcb_shm s;
	key_t k;

	SKIP_WITHOUT_PHP();
	k = new_seg(10000, &s);
	ck_assert_int_eq(ipcb_php_init(&s), 0);
	put_str(&s, 1, V1);
	put_str(&s, 2, V2);
	put_str(&s, 7, V7);
	php_run(k, "$s = shm_attach($k, 20000);"
	    "var_export(shm_get_var($s, 1)); echo \"\\n\";"
	    "var_export(shm_get_var($s, 2)); echo \"\\n\";"
	    "echo json_encode(shm_get_var($s, 7)), \"\\n\";"
	    "var_export(shm_has_var($s, 3)); echo \"\\n\";",
	    "'hello'\n42\n{\"a\":1.5,\"b\":true,\"c\":null}\nfalse\n");
	/* PHP found our header and kept it: total is still the real size */
	assert_header(&s, 208, 10000);
	put_str(&s, 1, "s:3:\"new\";");
	ck_assert_int_eq(ipcb_php_del(&s, 2), 0);
	php_run(k, "$s = shm_attach($k);"
	    "var_export(shm_get_var($s, 1)); echo \"\\n\";"
	    "var_export(shm_has_var($s, 2)); echo \"\\n\";"
	    "shm_put_var($s, 3, [1, 2]);"
	    "shm_put_var($s, 7, 'seven');",
	    "'new'\nfalse\n");
	assert_ok(&s);
	assert_get_str(&s, 3, "a:2:{i:0;i:1;i:1;i:2;}");
	assert_get_str(&s, 7, "s:5:\"seven\";");
	ck_assert_str_eq(listing(&s), "1=s:3:\"new\";|3=a:2:{i:0;i:1;i:1;i:2;}|"
	    "7=s:5:\"seven\";|");
}
END_TEST

/* 4 MiB each way through an 8 MiB segment. */
START_TEST(test_php_big_value)
{
	static const char pat[] = "0123456789abcdef";
	struct ipcb_shm s;
	size_t n = 4u << 20, hdr, i;
	char *v;
	key_t k;

	SKIP_WITHOUT_PHP();
	k = new_seg(8u << 20, &s);
	ck_assert_int_eq(ipcb_php_init(&s), 0);
	v = malloc(n + 32);
	ck_assert_ptr_nonnull(v);
	hdr = (size_t)snprintf(v, 32, "s:%zu:\"", n);
	for (i = 0; i < n; i++)
		v[hdr + i] = pat[i % 16];
	memcpy(v + hdr + n, "\";", 2);
	ck_assert_int_eq(ipcb_php_put(&s, 1, v, hdr + n + 2), 0);
	php_run(k, "$s = shm_attach($k);"
	    "$v = shm_get_var($s, 1);"
	    "echo strlen($v), ' ', var_export($v === "
	    "str_repeat('0123456789abcdef', 262144), true), \"\\n\";"
	    "shm_put_var($s, 1, str_repeat('fedcba9876543210', 262144));",
	    "4194304 true\n");
	assert_ok(&s);
	for (i = 0; i < n; i++)
		v[hdr + i] = pat[15 - i % 16];
	assert_get(&s, 1, v, hdr + n + 2);
	free(v);
}
END_TEST

static void
runner_teardown(void)
{
	reg_sweep();
}

static Suite *
shm_suite(void)
{
	Suite *s = suite_create("shm");
	TCase *tc;

	tc = tcase_create("segment");
	tcase_add_unchecked_fixture(tc, NULL, runner_teardown);
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_add_test(tc, test_open_creates);
	tcase_add_test(tc, test_open_attach_fails);
	tcase_add_test(tc, test_raw_bounds);
	suite_add_tcase(s, tc);

	tc = tcase_create("php layout");
	tcase_add_unchecked_fixture(tc, NULL, runner_teardown);
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_init_fresh);
	tcase_add_test(tc, test_init_sizes);
	tcase_add_test(tc, test_layout_matches_php);
	tcase_add_test(tc, test_round_trip);
	tcase_add_test(tc, test_replace_moves_to_end);
	tcase_add_test(tc, test_enospc_keeps_old);
	tcase_add_test(tc, test_del_compacts);
	tcase_add_test(tc, test_many_variables);
	tcase_add_test(tc, test_big_value);
	suite_add_tcase(s, tc);

	tc = tcase_create("corrupt");
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, test_check_rejects, 0,
	    (int)(sizeof(corruptions) / sizeof(corruptions[0])));
	tcase_add_test(tc, test_check_err_buffer);
	tcase_add_test(tc, test_fuzz);
	suite_add_tcase(s, tc);

	tc = tcase_create("php");
	tcase_add_unchecked_fixture(tc, NULL, runner_teardown);
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_php_writes_we_read);
	tcase_add_test(tc, test_we_write_php_reads);
	tcase_add_test(tc, test_php_big_value);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr;
	int failed;

	reg = mmap(NULL, sizeof(*reg), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (reg == MAP_FAILED) {
		perror("mmap");
		return EXIT_FAILURE;
	}
	sr = srunner_create(shm_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	reg_sweep();
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
