/*
 * op_shm.c - the shm.* ops: blobs in shared memory under the guard lock.
 *
 * Handlers check their params and prepare what they will write before
 * asking for the lock, so the lock is held only for the copy itself. The
 * work under the lock runs through waiter_lock(), now or when the lock
 * frees up; it never outlives one request.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"

/* What a put writes: the bytes (serialized for php segments) and where. */
struct put_arg {
	int64_t		 var;
	size_t		 offset;
	size_t		 len;
	char		 data[];
};

/* What a get reads. */
struct get_arg {
	int64_t		 var;
	size_t		 offset;
	size_t		 length;
	int		 whole;		/* raw: no length given */
	enum encoding	 encoding;
};

/* The request's segment, if it exists and the peer may use it that way. */
static struct segment *
get_segment_for(struct request *r, int write)
{
	json_t *v = r->p[PN_NAME];
	const char *name = v ? json_string_value(v) : "default";
	struct segment *s;

	char err[512];

	if ((s = segment_find(name)) != NULL) {
		if (check_access(r, &s->conf.access, write, "segment",
		    s->conf.name) < 0)
			return NULL;
		if (segment_removed(s, err, sizeof(err))) {
			reply_error(r->conn, r->id, ERR_SHM_REMOVED, NULL, "%s",
			    err);
			return NULL;
		}
		return s;
	}
	reply_error(r->conn, r->id, ERR_NOT_FOUND,
	    json_pack("{s:s%}", "name", name, utf8_prefix(name, 64)),
	    "no segment named \"%.*s\" (shm.list shows them)",
	    (int)utf8_prefix(name, 64), name);
	return NULL;
}

static int
get_lock_timeout(struct request *r, struct segment *s, int *ms)
{
	json_t *v = r->p[PN_LOCK_TIMEOUT_MS];
	json_int_t t = v ? json_integer_value(v) : s->conf.lock_timeout_ms;

	/* the configured default is capped by max_wait_ms, never refused */
	if (v != NULL && (t < 0 || t > cfg->max_wait_ms)) {
		bad_param(r, "lock_timeout_ms", "lock_timeout_ms must be "
		    "0..%d (max_wait_ms)", cfg->max_wait_ms);
		return -1;
	}
	*ms = (int)(t < cfg->max_wait_ms ? t : cfg->max_wait_ms);
	return 0;
}

/* var for php segments, offset (and length) for raw ones. */
static int
get_address(struct request *r, struct segment *s, int64_t *var,
    size_t *offset)
{
	json_t *v = r->p[PN_VAR];
	json_t *off = r->p[PN_OFFSET];

	if (s->conf.format == SHM_PHP) {
		if (off != NULL || r->p[PN_LENGTH])
			return bad_param(r, off ? "offset" : "length",
			    "segment \"%s\" holds PHP variables: use var, not "
			    "offset/length", s->conf.name), -1;
		if (v == NULL)
			return bad_param(r, "var", "var (the PHP variable key, "
			    "an integer) is required"), -1;
		*var = (int64_t)json_integer_value(v);
		return 0;
	}
	if (v != NULL)
		return bad_param(r, "var", "segment \"%s\" is raw: use "
		    "offset/length, not var", s->conf.name), -1;
	if (off != NULL && json_integer_value(off) < 0)
		return bad_param(r, "offset", "offset must be >= 0"), -1;
	*offset = off ? (size_t)json_integer_value(off) : 0;
	return 0;
}

/* A php segment that failed validation may have been fixed since. */
static int
usable(struct conn *c, json_t *id, struct segment *s)
{
	char why[256];

	if (s->conf.format != SHM_PHP || !s->corrupt)
		return 1;
	if (ipcb_php_check(&s->shm, why, sizeof(why)) == 0) {
		s->corrupt = 0;
		return 1;
	}
	reply_error(c, id, ERR_CORRUPT, NULL, "shm \"%s\" (key 0x%08x): not "
	    "a valid PHP sysvshm segment: %s", s->conf.name,
	    (unsigned)s->conf.key, why);
	return 0;
}

/* A php call said the chunk chain is inconsistent: stop trusting it. */
static void
corrupt(struct conn *c, json_t *id, struct segment *s)
{
	s->corrupt = 1;
	log_warnx("shm \"%s\" (key 0x%08x): variable chain is corrupt",
	    s->conf.name, (unsigned)s->conf.key);
	usable(c, id, s);
}

static void
run_put(struct conn *c, json_t *id, struct segment *s, void *argp)
{
	struct put_arg *a = argp;
	struct ipcb_php_usage u;
	int rc;

	if (!usable(c, id, s))
		return;
	if (s->conf.format == SHM_RAW) {
		if (ipcb_shm_write(&s->shm, a->offset, a->data, a->len) < 0) {
			reply_error(c, id, ERR_OUT_OF_RANGE, NULL, "shm \"%s\": "
			    "%zu bytes at offset %zu do not fit in %zu",
			    s->conf.name, a->len, a->offset, s->shm.size);
			return;
		}
		FAULT_POINT("after_shm_write");	/* written, lock held */
		reply_result(c, id, json_pack("{s:s, s:I, s:I}", "name",
		    s->conf.name, "offset", (json_int_t)a->offset,
		    "bytes", (json_int_t)a->len));
		return;
	}
	rc = ipcb_php_put(&s->shm, a->var, a->data, a->len);
	if (rc == 0)
		FAULT_POINT("after_shm_write");
	if (rc == -EBADMSG) {
		corrupt(c, id, s);
		return;
	}
	ipcb_php_usage(&s->shm, &u);
	if (rc == -ENOSPC) {
		reply_error(c, id, ERR_NO_SPACE, json_pack("{s:I, s:I}",
		    "bytes", (json_int_t)a->len, "free", (json_int_t)u.free),
		    "shm \"%s\": no room for %zu bytes (%zu free); the old "
		    "value is kept", s->conf.name, a->len, u.free);
		return;
	}
	reply_result(c, id, json_pack("{s:s, s:I, s:I, s:I}", "name",
	    s->conf.name, "var", (json_int_t)a->var, "bytes",
	    (json_int_t)a->len, "free", (json_int_t)u.free));
}

/* s:N:"...": the PHP string form of text or data_b64. */
static struct put_arg *
php_string(struct request *r)
{
	struct put_arg *a;
	char head[32], *buf;
	size_t len;
	int n;

	if (param_bytes(r, sizeof(*a) + sizeof(head), 2, SIZE_MAX / 2,
	    &buf, &len) < 0)
		return NULL;
	a = (struct put_arg *)(void *)buf;
	n = snprintf(head, sizeof(head), "s:%zu:\"", len);
	memmove(a->data + n, buf + sizeof(*a) + sizeof(head), len);
	memcpy(a->data, head, (size_t)n);
	memcpy(a->data + n + len, "\";", 2);
	a->len = (size_t)n + len + 2;
	return a;
}

enum op_status
op_shm_put(struct request *r)
{
	json_t *value = r->p[PN_VALUE];
	struct segment *s;
	struct put_arg *a;
	char err[256], *ser, *buf;
	size_t len;
	int64_t var = 0;
	size_t offset = 0;
	int ms;

	if ((s = get_segment_for(r, 1)) == NULL ||
	    get_lock_timeout(r, s, &ms) < 0 ||
	    get_address(r, s, &var, &offset) < 0)
		return OP_DONE;
	if (value != NULL && (r->p[PN_TEXT] || r->p[PN_DATA_B64]))
		return bad_param(r, "value",
		    "give exactly one of text, data_b64 or value");
	if (value != NULL && s->conf.format == SHM_RAW)
		return bad_param(r, "value", "segment \"%s\" is raw: store "
		    "text or data_b64", s->conf.name);
	if (value != NULL) {
		if ((ser = phpser_encode(value, &len, err, sizeof(err))) ==
		    NULL)
			return bad_param(r, "value", "%s", err);
		if ((a = malloc(sizeof(*a) + len)) == NULL)
			fatalx("out of memory");
		memcpy(a->data, ser, len);
		a->len = len;
		free(ser);
	} else if (s->conf.format == SHM_PHP) {
		if ((a = php_string(r)) == NULL)
			return OP_DONE;
	} else {
		if (param_bytes(r, sizeof(*a), 0, SIZE_MAX / 2, &buf, &len) < 0)
			return OP_DONE;
		a = (struct put_arg *)(void *)buf;
		a->len = len;
	}
	a->var = var;
	a->offset = offset;
	return waiter_lock(r->conn, r->id, s, IPCB_LOCK_WRITE, run_put, a, ms);
}

/* Point at the raw bytes of a serialized PHP string, or fail. */
static int
php_string_bytes(const char *p, size_t n, const char **str, size_t *len)
{
	size_t i = 2, v = 0;

	if (n < 6 || p[0] != 's' || p[1] != ':')
		return -1;
	for (; i < n && p[i] >= '0' && p[i] <= '9' && i < 22; i++)
		v = v * 10 + (size_t)(p[i] - '0');
	if (i == 2 || i + 2 > n || p[i] != ':' || p[i + 1] != '"' ||
	    v != n - i - 4 || p[n - 2] != '"' || p[n - 1] != ';')
		return -1;
	*str = p + i + 2;
	*len = v;
	return 0;
}

#define BIG_BLOB	(64 * 1024)

/* A big payload that goes out as data_b64: encode it straight into the
 * output (auto picks base64 for bytes with a NUL; other big auto payloads
 * take the ordinary path, which checks their UTF-8). */
static int
big_binary(const char *data, size_t len, enum encoding enc)
{
	return len >= BIG_BLOB && (enc == ENC_BASE64 ||
	    (enc == ENC_AUTO && memchr(data, '\0', len) != NULL));
}

/*
 * A reply of len bytes as base64 would be over max_output_bytes, so the
 * client could never receive it: answer msg_too_big rather than drop the
 * connection mid-reply. 0 if so.
 */
static int
reply_fits(struct conn *c, json_t *id, struct segment *s, size_t len)
{
	size_t need = len / 3 * 4 + 4 + 1024;	/* and the JSON around it */

	if (need <= cfg->max_output_bytes)
		return 1;
	reply_error(c, id, ERR_MSG_TOO_BIG, json_pack("{s:I, s:I}", "bytes",
	    (json_int_t)need, "max", (json_int_t)cfg->max_output_bytes),
	    "shm \"%s\": a reply with %zu bytes would be about %zu bytes, "
	    "over max_output_bytes (%zu); read it in parts (offset/length) "
	    "or raise the limit", s->conf.name, len, need,
	    cfg->max_output_bytes);
	return 0;
}

/* A PHP variable as the reply: strings as text/base64, the rest as value. */
static void
reply_php_var(struct conn *c, json_t *id, struct segment *s,
    struct get_arg *a, const char *val, size_t len)
{
	const char *str;
	char err[256];
	json_t *res, *v;
	size_t slen;
	int code;

	if (!reply_fits(c, id, s, len))
		return;
	res = json_pack("{s:s, s:I, s:I}", "name", s->conf.name, "var",
	    (json_int_t)a->var, "bytes", (json_int_t)len);
	if (php_string_bytes(val, len, &str, &slen) == 0) {
		if (big_binary(str, slen, a->encoding)) {
			reply_result_b64(c, id, res, str, slen);
			return;
		}
		if (payload_put(res, str, slen, a->encoding) == 0) {
			reply_result(c, id, res);
			return;
		}
		json_decref(res);
		reply_error(c, id, ERR_NOT_UTF8, NULL, "shm \"%s\" var %lld "
		    "is not UTF-8 text (use encoding base64 or auto)",
		    s->conf.name, (long long)a->var);
		return;
	}
	if ((v = phpser_decode(val, len, &code, err, sizeof(err))) == NULL) {
		json_t *data = json_object();

		json_decref(res);
		payload_put(data, val, len, ENC_BASE64);
		reply_error(c, id, code == PHPSER_UNSUPPORTED ?
		    ERR_UNSUPPORTED_VALUE : ERR_CORRUPT, data,
		    "shm \"%s\" var %lld: %s", s->conf.name,
		    (long long)a->var, err);
		return;
	}
	json_object_set_new(res, "value", v);
	reply_result(c, id, res);
}

static void
run_get(struct conn *c, json_t *id, struct segment *s, void *argp)
{
	struct get_arg *a = argp;
	const char *val;
	json_t *res;
	size_t len;
	int rc;

	if (!usable(c, id, s))
		return;
	if (s->conf.format == SHM_RAW) {
		len = a->whole && a->offset <= s->shm.size ?
		    s->shm.size - a->offset : a->length;
		if (a->offset > s->shm.size || len > s->shm.size - a->offset) {
			reply_error(c, id, ERR_OUT_OF_RANGE, NULL, "shm \"%s\": "
			    "%zu bytes at offset %zu are outside its %zu bytes",
			    s->conf.name, len, a->offset, s->shm.size);
			return;
		}
		if (!reply_fits(c, id, s, len))
			return;
		res = json_pack("{s:s, s:I, s:I}", "name", s->conf.name,
		    "offset", (json_int_t)a->offset, "bytes", (json_int_t)len);
		if (big_binary(s->shm.addr + a->offset, len, a->encoding)) {
			reply_result_b64(c, id, res, s->shm.addr + a->offset,
			    len);
			return;
		}
		if (payload_put(res, s->shm.addr + a->offset, len,
		    a->encoding) < 0) {
			json_decref(res);
			reply_error(c, id, ERR_NOT_UTF8, NULL, "shm \"%s\": the "
			    "bytes are not UTF-8 text (use encoding base64 or "
			    "auto)", s->conf.name);
			return;
		}
		reply_result(c, id, res);
		return;
	}
	rc = ipcb_php_get(&s->shm, a->var, &val, &len);
	if (rc == -EBADMSG) {
		corrupt(c, id, s);
		return;
	}
	if (rc == -ENOENT) {
		reply_error(c, id, ERR_NOT_FOUND, json_pack("{s:I}", "var",
		    (json_int_t)a->var), "shm \"%s\": no variable %lld",
		    s->conf.name, (long long)a->var);
		return;
	}
	reply_php_var(c, id, s, a, val, len);
}

enum op_status
op_shm_get(struct request *r)
{
	json_t *length = r->p[PN_LENGTH];
	struct segment *s;
	struct get_arg *a;
	int ms;

	if ((a = calloc(1, sizeof(*a))) == NULL)
		fatalx("out of memory");
	if ((s = get_segment_for(r, 0)) == NULL ||
	    get_lock_timeout(r, s, &ms) < 0 ||
	    get_address(r, s, &a->var, &a->offset) < 0 ||
	    param_encoding(r, 0, &a->encoding) < 0)
		goto done;
	if (length != NULL && json_integer_value(length) < 0) {
		bad_param(r, "length", "length must be >= 0");
		goto done;
	}
	a->whole = length == NULL;
	a->length = length ? (size_t)json_integer_value(length) : 0;
	return waiter_lock(r->conn, r->id, s, IPCB_LOCK_READ, run_get, a, ms);
done:
	free(a);
	return OP_DONE;
}

static void
has_del_locked(struct conn *c, json_t *id, struct segment *s, void *argp,
    int del)
{
	int64_t var = *(int64_t *)argp;
	const char *val;
	size_t len;
	int rc;

	if (!usable(c, id, s))
		return;
	rc = del ? ipcb_php_del(&s->shm, var) :
	    ipcb_php_get(&s->shm, var, &val, &len);
	if (rc == -EBADMSG) {
		corrupt(c, id, s);
		return;
	}
	if (del && rc == -ENOENT) {
		reply_error(c, id, ERR_NOT_FOUND, json_pack("{s:I}", "var",
		    (json_int_t)var), "shm \"%s\": no variable %lld",
		    s->conf.name, (long long)var);
		return;
	}
	reply_result(c, id, json_pack("{s:s, s:I, s:b}", "name", s->conf.name,
	    "var", (json_int_t)var, del ? "deleted" : "exists", rc == 0));
}

static void
run_has(struct conn *c, json_t *id, struct segment *s, void *argp)
{
	has_del_locked(c, id, s, argp, 0);
}

static void
run_del(struct conn *c, json_t *id, struct segment *s, void *argp)
{
	has_del_locked(c, id, s, argp, 1);
}

/* shm.has and shm.del: php segments only. */
static enum op_status
has_del(struct request *r)
{
	struct segment *s;
	int64_t *var;
	size_t off;
	int ms;

	int del = strcmp(r->op, "shm.del") == 0;

	if ((s = get_segment_for(r, del)) == NULL ||
	    get_lock_timeout(r, s, &ms) < 0)
		return OP_DONE;
	if (s->conf.format != SHM_PHP)
		return bad_param(r, "name", "segment \"%s\" is raw: it has no "
		    "variables", s->conf.name);
	if ((var = malloc(sizeof(*var))) == NULL)
		fatalx("out of memory");
	if (get_address(r, s, var, &off) < 0) {
		free(var);
		return OP_DONE;
	}
	return waiter_lock(r->conn, r->id, s,
	    del ? IPCB_LOCK_WRITE : IPCB_LOCK_READ, del ? run_del : run_has,
	    var, ms);
}

enum op_status
op_shm_has(struct request *r)
{
	return has_del(r);
}

enum op_status
op_shm_del(struct request *r)
{
	return has_del(r);
}

static int
add_var(int64_t key, const char *val, size_t len, void *arg)
{
	(void)val;
	json_array_append_new(arg, json_pack("{s:I, s:I}", "var",
	    (json_int_t)key, "bytes", (json_int_t)len));
	return 0;
}

static void
run_vars(struct conn *c, json_t *id, struct segment *s, void *arg)
{
	struct ipcb_php_usage u;
	json_t *vars;

	(void)arg;
	if (!usable(c, id, s))
		return;
	vars = json_array();
	if (ipcb_php_foreach(&s->shm, add_var, vars) == -EBADMSG) {
		json_decref(vars);
		corrupt(c, id, s);
		return;
	}
	ipcb_php_usage(&s->shm, &u);
	reply_result(c, id, json_pack("{s:s, s:o, s:I, s:I}", "name",
	    s->conf.name, "vars", vars, "used", (json_int_t)u.used,
	    "free", (json_int_t)u.free));
}

enum op_status
op_shm_vars(struct request *r)
{
	struct segment *s;
	int ms;

	if ((s = get_segment_for(r, 0)) == NULL ||
	    get_lock_timeout(r, s, &ms) < 0)
		return OP_DONE;
	if (s->conf.format != SHM_PHP)
		return bad_param(r, "name", "segment \"%s\" is raw: it has no "
		    "variables", s->conf.name);
	return waiter_lock(r->conn, r->id, s, IPCB_LOCK_READ,
	    run_vars, NULL, ms);
}

/*
 * Empty a segment (a fresh PHP header, or zeros for raw) under a repair
 * lock, which also clears the torn-write marker: the way back from
 * corrupt, whether a writer died mid-write or the header is broken.
 */
static void
run_clear(struct conn *c, json_t *id, struct segment *s, void *arg)
{
	int torn = ipcb_sem_torn(&s->sem) == 1;

	(void)arg;
	if (s->conf.format == SHM_PHP) {
		ipcb_php_init(&s->shm);
		s->corrupt = 0;
	} else
		memset(s->shm.addr, 0, s->shm.size);
	log_info("shm \"%s\" (key 0x%08x): cleared by a client%s",
	    s->conf.name, (unsigned)s->conf.key,
	    torn ? "; torn-write marker cleared" : "");
	reply_result(c, id, json_pack("{s:s, s:b, s:b}", "name", s->conf.name,
	    "cleared", 1, "was_torn", torn));
}

enum op_status
op_shm_clear(struct request *r)
{
	struct segment *s;
	int ms;

	if ((s = get_segment_for(r, 1)) == NULL ||
	    get_lock_timeout(r, s, &ms) < 0)
		return OP_DONE;
	return waiter_lock(r->conn, r->id, s, IPCB_LOCK_REPAIR,
	    run_clear, NULL, ms);
}

/* The kernel's figures for a segment and its semaphore (no lock taken:
 * the usage figures are a snapshot). */
static json_t *
segment_json(struct segment *s)
{
	struct ipcb_php_usage u;
	struct shmid_ds ds;
	json_t *j;
	int lock = -1, usage = -1, rc;

	if ((rc = ipcb_shm_stat(&s->shm, &ds)) < 0)
		return json_pack("{s:s, s:s, s:{s:s, s:s}}", "name",
		    s->conf.name, "key", key_hex(s->conf.key), "error",
		    "code", err_name(ERR_SHM_REMOVED), "message",
		    strerror(-rc));
	ipcb_sem_values(&s->sem, &lock, &usage);
	j = json_pack("{s:s, s:s, s:s, s:i, s:I, s:s, s:I, s:I, s:I, s:I, "
	    "s:s, s:i, s:i, s:s, s:i, s:i, s:i, s:i}",
	    "name", s->conf.name,
	    "key", key_hex(s->conf.key),
	    "key_spec", s->conf.key_spec,
	    "shmid", s->shm.shmid,
	    "size", (json_int_t)ds.shm_segsz,
	    "format", s->conf.format == SHM_RAW ? "raw" : "php",
	    "nattch", (json_int_t)ds.shm_nattch,
	    "creator_pid", (json_int_t)ds.shm_cpid,
	    "last_pid", (json_int_t)ds.shm_lpid,
	    "changed", (json_int_t)ds.shm_ctime,
	    "mode", mode_octal(ds.shm_perm.mode & 0777),
	    "uid", (int)ds.shm_perm.uid,
	    "gid", (int)ds.shm_perm.gid,
	    "sem_key", key_hex(s->conf.sem_key),
	    "semid", s->sem.semid,
	    "lock", lock,
	    "sem_users", usage,
	    "waiting", s->nlockers);
	json_object_set_new(j, "torn_marker", json_boolean(s->sem.torn_marker));
	if (ipcb_sem_torn(&s->sem) == 1)
		json_object_set_new(j, "corrupt", json_true());
	else if (s->conf.format == SHM_PHP) {
		if (s->corrupt || ipcb_php_usage(&s->shm, &u) < 0)
			json_object_set_new(j, "corrupt", json_true());
		else {
			json_object_set_new(j, "used", json_integer(
			    (json_int_t)u.used));
			json_object_set_new(j, "free", json_integer(
			    (json_int_t)u.free));
			json_object_set_new(j, "vars", json_integer(
			    (json_int_t)u.count));
		}
	}
	return j;
}

enum op_status
op_shm_stat(struct request *r)
{
	struct segment *s;

	if ((s = get_segment_for(r, 0)) == NULL)
		return OP_DONE;
	reply_result(r->conn, r->id, segment_json(s));
	return OP_DONE;
}

enum op_status
op_shm_list(struct request *r)
{
	json_t *list = json_array();
	struct segment *s;

	TAILQ_FOREACH(s, &segments, entry) {
		if (conn_may(r->conn, &s->conf.access, 0))
			json_array_append_new(list, segment_json(s));
	}
	reply_result(r->conn, r->id, json_pack("{s:o}", "segments", list));
	return OP_DONE;
}
