/*
 * config.c - /etc/ipcbridge.conf: INI parsed by inih, checked key by key.
 *
 * Every error names the file, line, section and key and says what is wrong;
 * the daemon refuses to start (or to reload) on the first one. Unknown keys
 * and sections are errors too: a typo must not silently fall back to a
 * default.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>

#include <ini.h>

#include "daemon.h"

#define DEFAULT_QUEUE_KEY	"0x69706201"
#define DEFAULT_SHM_KEY		"0x69706202"
#define DEFAULT_SHM_SIZE	(1024 * 1024)

struct parse {
	struct config	*cfg;
	const char	*path;
	FILE		*f;
	int		 lineno;
	int		 reads;		/* inih counts reads as lines */
	int		*read_line;	/* our line number of each read */
	int		 read_cap;
	int		 fail_read;	/* the read our first error was on */
	int		 at_line_start;
	char		*err;
	size_t		 errlen;
	int		 failed;
};

static char *
xstrdup(const char *s)
{
	char *p = strdup(s);

	if (p == NULL)
		fatalx("out of memory");
	return p;
}

/* inih reads through this so that we know the line a key is on. */
static char *
reader(char *str, int num, void *arg)
{
	struct parse *p = arg;
	char *r;
	size_t n;

	if (p->at_line_start)
		p->lineno++;
	if (p->reads + 1 >= p->read_cap) {
		p->read_cap = p->read_cap ? p->read_cap * 2 : 64;
		p->read_line = reallocarray(p->read_line,
		    (size_t)p->read_cap, sizeof(int));
		if (p->read_line == NULL)
			fatalx("out of memory");
	}
	p->read_line[++p->reads] = p->lineno;
	r = fgets(str, num, p->f);
	if (r != NULL) {
		n = strlen(r);
		p->at_line_start = n > 0 && r[n - 1] == '\n';
	}
	return r;
}

static int
fail(struct parse *p, const char *section, const char *key,
    const char *fmt, ...)
{
	char what[512];
	va_list ap;

	if (p->failed)
		return 0;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	snprintf(p->err, p->errlen, "%s:%d: [%s] %s: %s", p->path, p->lineno,
	    section, key, what);
	p->failed = 1;
	p->fail_read = p->reads;
	return 0;
}

static int
parse_uint(const char *s, unsigned long long max, unsigned long long *out)
{
	unsigned long long v;
	char *end;

	if (!isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v > max)
		return -1;
	*out = v;
	return 0;
}

/* "4M", "16384", "1G": K/M/G are powers of 1024. */
static int
parse_size(const char *s, unsigned long long max, unsigned long long *out)
{
	unsigned long long v, mult = 1;
	char buf[64], *last;
	size_t n = strlen(s);

	if (n == 0 || n >= sizeof(buf))
		return -1;
	memcpy(buf, s, n + 1);
	last = &buf[n - 1];
	switch (toupper((unsigned char)*last)) {
	case 'K': mult = 1ULL << 10; *last = '\0'; break;
	case 'M': mult = 1ULL << 20; *last = '\0'; break;
	case 'G': mult = 1ULL << 30; *last = '\0'; break;
	}
	if (parse_uint(buf, ULLONG_MAX / mult, &v) < 0 || v * mult > max)
		return -1;
	*out = v * mult;
	return 0;
}

static int
parse_mode(const char *s, int *out)
{
	char *end;
	long v;

	if (*s != '0' || strlen(s) > 4)
		return -1;
	v = strtol(s, &end, 8);
	if (*end != '\0' || v < 0 || v > 0777)
		return -1;
	*out = (int)v;
	return 0;
}

static int
parse_bool(const char *s, int *out)
{
	if (!strcmp(s, "yes") || !strcmp(s, "true") || !strcmp(s, "on") ||
	    !strcmp(s, "1"))
		*out = 1;
	else if (!strcmp(s, "no") || !strcmp(s, "false") ||
	    !strcmp(s, "off") || !strcmp(s, "0"))
		*out = 0;
	else
		return -1;
	return 0;
}

static int
valid_name(const char *s)
{
	size_t n = 0;

	for (; s[n] != '\0'; n++) {
		if (!isalnum((unsigned char)s[n]) && strchr("_-.", s[n]) == NULL)
			return 0;
	}
	return n > 0 && n <= 64;
}

static struct queue_conf *
add_queue(struct config *c, const char *name)
{
	struct queue_conf *q;

	q = reallocarray(c->queues, c->nqueues + 1, sizeof(*q));
	if (q == NULL)
		fatalx("out of memory");
	c->queues = q;
	q = &c->queues[c->nqueues++];
	memset(q, 0, sizeof(*q));
	q->name = xstrdup(name);
	q->mode = 0660;
	q->create = 1;
	return q;
}

static int
server_key(struct parse *p, const char *name, const char *value)
{
	struct config *c = p->cfg;
	unsigned long long v;
	char kerr[256];

	if (!strcmp(name, "socket")) {
		if (config_set_socket(c, value) < 0)
			return fail(p, "server", name,
			    "path must be absolute and at most 107 bytes");
	} else if (!strcmp(name, "socket_mode")) {
		if (parse_mode(value, &c->socket_mode) < 0)
			return fail(p, "server", name,
			    "\"%s\" is not an octal mode like 0660", value);
	} else if (!strcmp(name, "poll_interval_ms")) {
		if (parse_uint(value, 10000, &v) < 0 || v < 1)
			return fail(p, "server", name,
			    "\"%s\" is not a number of milliseconds in 1..10000",
			    value);
		c->poll_interval_ms = (int)v;
	} else if (!strcmp(name, "max_line_bytes")) {
		if (parse_size(value, 1ULL << 30, &v) < 0 || v < 1024)
			return fail(p, "server", name,
			    "\"%s\" is not a size in 1K..1G", value);
		c->max_line_bytes = (size_t)v;
	} else if (!strcmp(name, "max_conns")) {
		if (parse_uint(value, 100000, &v) < 0 || v < 1)
			return fail(p, "server", name,
			    "\"%s\" is not a number in 1..100000", value);
		c->max_conns = (int)v;
	} else if (!strcmp(name, "log")) {
		if (!strcmp(value, "stderr"))
			c->log_syslog = 0;
		else if (!strcmp(value, "syslog"))
			c->log_syslog = 1;
		else
			return fail(p, "server", name,
			    "\"%s\" is not stderr or syslog", value);
	} else if (!strcmp(name, "log_level")) {
		if (!strcmp(value, "warning"))
			c->log_level = LOG_LVL_WARN;
		else if (!strcmp(value, "info"))
			c->log_level = LOG_LVL_INFO;
		else if (!strcmp(value, "debug"))
			c->log_level = LOG_LVL_DEBUG;
		else
			return fail(p, "server", name,
			    "\"%s\" is not warning, info or debug", value);
	} else if (!strcmp(name, "pidfile")) {
		if (*value != '/')
			return fail(p, "server", name,
			    "\"%s\" is not an absolute path", value);
		free(c->pidfile);
		c->pidfile = xstrdup(value);
	} else if (!strcmp(name, "allow_users") ||
	    !strcmp(name, "allow_groups")) {
		int groups = !strcmp(name, "allow_groups");

		if (idlist_parse(groups ? &c->allow_groups : &c->allow_users,
		    value, groups, kerr, sizeof(kerr)) < 0)
			return fail(p, "server", name, "%s", kerr);
	} else if (!strcmp(name, "max_conns_per_uid")) {
		if (parse_uint(value, 100000, &v) < 0)
			return fail(p, "server", name,
			    "\"%s\" is not a number (0 = no limit)", value);
		c->max_conns_per_uid = (int)v;
	} else if (!strcmp(name, "idle_timeout_ms") ||
	    !strcmp(name, "partial_line_timeout_ms")) {
		if (parse_uint(value, 86400000, &v) < 0)
			return fail(p, "server", name,
			    "\"%s\" is not a number of milliseconds (0 = "
			    "none)", value);
		if (!strcmp(name, "idle_timeout_ms"))
			c->idle_timeout_ms = (int)v;
		else
			c->partial_line_timeout_ms = (int)v;
	} else if (!strcmp(name, "max_output_bytes")) {
		if (parse_size(value, 1ULL << 32, &v) < 0 || v < 65536)
			return fail(p, "server", name,
			    "\"%s\" is not a size in 64K..4G", value);
		c->max_output_bytes = (size_t)v;
	} else if (!strcmp(name, "user") || !strcmp(name, "group")) {
		char **dst = !strcmp(name, "user") ? &c->user : &c->group;

		if (!strcmp(name, "user") ? getpwnam(value) == NULL :
		    getgrnam(value) == NULL)
			return fail(p, "server", name, "no such %s \"%s\"",
			    name, value);
		free(*dst);
		*dst = xstrdup(value);
	} else if (!strcmp(name, "state_dir")) {
		if (*value != '/')
			return fail(p, "server", name,
			    "\"%s\" is not an absolute path", value);
		free(c->state_dir);
		c->state_dir = xstrdup(value);
	} else if (!strcmp(name, "journal_slots")) {
		if (parse_uint(value, 1000000, &v) < 0)
			return fail(p, "server", name,
			    "\"%s\" is not a number in 0..1000000 (0 = no "
			    "journal)", value);
		c->journal_slots = (int)v;
	} else if (!strcmp(name, "ack_timeout_ms")) {
		if (parse_uint(value, 86400000, &v) < 0 || v < 1)
			return fail(p, "server", name,
			    "\"%s\" is not a number of milliseconds in "
			    "1..86400000", value);
		c->ack_timeout_ms = (int)v;
	} else if (!strcmp(name, "max_wait_ms")) {
		if (parse_uint(value, 86400000, &v) < 0 || v < 1)
			return fail(p, "server", name,
			    "\"%s\" is not a number of milliseconds in 1..86400000",
			    value);
		c->max_wait_ms = (int)v;
	} else
		return fail(p, "server", name, "unknown key");
	return 1;
}

/* read_users / write_users / read_groups / write_groups: 1 handled, 0
 * failed, -1 not one of these. */
static int
access_key(struct parse *p, const char *section, struct access *a,
    const char *name, const char *value)
{
	struct idlist *l;
	char err[256];

	if (!strcmp(name, "read_users"))
		l = &a->read_users;
	else if (!strcmp(name, "write_users"))
		l = &a->write_users;
	else if (!strcmp(name, "read_groups"))
		l = &a->read_groups;
	else if (!strcmp(name, "write_groups"))
		l = &a->write_groups;
	else
		return -1;
	if (idlist_parse(l, value, strstr(name, "groups") != NULL, err,
	    sizeof(err)) < 0)
		return fail(p, section, name, "%s", err);
	return 1;
}

static int
queue_key(struct parse *p, const char *qname, const char *name,
    const char *value)
{
	struct queue_conf *q;
	char section[128], kerr[256];
	unsigned long long v;
	int rc;

	snprintf(section, sizeof(section), "queue %s", qname);
	if (!valid_name(qname))
		return fail(p, section, name,
		    "queue name must be 1-64 of A-Z a-z 0-9 _ - .");
	q = (struct queue_conf *)config_queue(p->cfg, qname);
	if (q == NULL) {
		q = add_queue(p->cfg, qname);
		q->line = p->lineno;
	}
	if (!strcmp(name, "key")) {
		if (ipcb_key_parse(value, &q->key, kerr, sizeof(kerr)) < 0)
			return fail(p, section, name, "%s", kerr);
		q->line = p->lineno;
		free(q->key_spec);
		q->key_spec = xstrdup(value);
	} else if (!strcmp(name, "mode")) {
		if (parse_mode(value, &q->mode) < 0)
			return fail(p, section, name,
			    "\"%s\" is not an octal mode like 0660", value);
	} else if (!strcmp(name, "create")) {
		if (parse_bool(value, &q->create) < 0)
			return fail(p, section, name,
			    "\"%s\" is not yes or no", value);
	} else if (!strcmp(name, "max_bytes")) {
		if (parse_size(value, 1ULL << 31, &v) < 0 || v < 1)
			return fail(p, section, name,
			    "\"%s\" is not a size like 16384, 64K or 4M", value);
		q->max_bytes = (unsigned long)v;
	} else if ((rc = access_key(p, section, &q->access, name, value)) >= 0) {
		return rc;
	} else if (!strcmp(name, "payload")) {
		if (!strcmp(value, "raw"))
			q->payload = PAYLOAD_RAW;
		else if (!strcmp(value, "json"))
			q->payload = PAYLOAD_JSON;
		else if (!strcmp(value, "php"))
			q->payload = PAYLOAD_PHP;
		else
			return fail(p, section, name,
			    "\"%s\" is not raw, json or php", value);
	} else
		return fail(p, section, name, "unknown key");
	return 1;
}

static struct shm_conf *
add_shm(struct config *c, const char *name, int line)
{
	struct shm_conf *m;

	m = reallocarray(c->shms, c->nshms + 1, sizeof(*m));
	if (m == NULL)
		fatalx("out of memory");
	c->shms = m;
	m = &c->shms[c->nshms++];
	memset(m, 0, sizeof(*m));
	m->name = xstrdup(name);
	m->size = DEFAULT_SHM_SIZE;
	m->mode = 0660;
	m->format = SHM_PHP;
	m->lock_timeout_ms = 1000;
	m->create = 1;
	m->line = line;
	return m;
}

static int
shm_key(struct parse *p, const char *sname, const char *name,
    const char *value)
{
	struct shm_conf *m;
	char section[128], kerr[256];
	unsigned long long v;
	int rc;

	snprintf(section, sizeof(section), "shm %s", sname);
	if (!valid_name(sname))
		return fail(p, section, name,
		    "segment name must be 1-64 of A-Z a-z 0-9 _ - .");
	m = (struct shm_conf *)config_shm(p->cfg, sname);
	if (m == NULL)
		m = add_shm(p->cfg, sname, p->lineno);
	if (!strcmp(name, "key")) {
		if (ipcb_key_parse(value, &m->key, kerr, sizeof(kerr)) < 0)
			return fail(p, section, name, "%s", kerr);
		free(m->key_spec);
		m->key_spec = xstrdup(value);
		m->line = p->lineno;
	} else if (!strcmp(name, "sem_key")) {
		if (ipcb_key_parse(value, &m->sem_key, kerr, sizeof(kerr)) < 0)
			return fail(p, section, name, "%s", kerr);
		free(m->sem_key_spec);
		m->sem_key_spec = xstrdup(value);
	} else if (!strcmp(name, "size")) {
		if (parse_size(value, 1ULL << 30, &v) < 0 || v < 64)
			return fail(p, section, name,
			    "\"%s\" is not a size in 64..1G (K/M/G suffixes)",
			    value);
		m->size = (size_t)v;
	} else if (!strcmp(name, "mode")) {
		if (parse_mode(value, &m->mode) < 0)
			return fail(p, section, name,
			    "\"%s\" is not an octal mode like 0660", value);
	} else if (!strcmp(name, "format")) {
		if (!strcmp(value, "php"))
			m->format = SHM_PHP;
		else if (!strcmp(value, "raw"))
			m->format = SHM_RAW;
		else
			return fail(p, section, name,
			    "\"%s\" is not php or raw", value);
	} else if ((rc = access_key(p, section, &m->access, name, value)) >= 0) {
		return rc;
	} else if (!strcmp(name, "lock_timeout_ms")) {
		if (parse_uint(value, 86400000, &v) < 0)
			return fail(p, section, name,
			    "\"%s\" is not a number of milliseconds", value);
		m->lock_timeout_ms = (int)v;
	} else if (!strcmp(name, "create")) {
		if (parse_bool(value, &m->create) < 0)
			return fail(p, section, name,
			    "\"%s\" is not yes or no", value);
	} else
		return fail(p, section, name, "unknown key");
	return 1;
}

static int
handler(void *arg, const char *section, const char *name, const char *value)
{
	struct parse *p = arg;

	if (p->failed)
		return 0;
	if (!strcmp(section, "server"))
		return server_key(p, name, value);
	if (!strncmp(section, "queue ", 6))
		return queue_key(p, section + 6, name, value);
	if (!strncmp(section, "shm ", 4))
		return shm_key(p, section + 4, name, value);
	if (*section == '\0')
		return fail(p, "", name, "key outside any section");
	return fail(p, section, name,
	    "unknown section (expected [server], [queue NAME] or "
	    "[shm NAME])");
}

static void
set_defaults(struct config *c)
{
	c->socket_mode = 0660;
	c->poll_interval_ms = 10;
	c->max_line_bytes = 16 * 1024 * 1024;
	c->max_conns = 256;
	c->max_wait_ms = 300000;
	c->log_level = LOG_LVL_INFO;
	c->ack_timeout_ms = 60000;
	c->partial_line_timeout_ms = 60000;
	c->max_output_bytes = 64 * 1024 * 1024;
	c->journal_slots = 256;
}

/* /run/ipcbridge.sock, or $XDG_RUNTIME_DIR/ipcbridge.sock if /run is not
 * ours. */
static void
default_socket(struct config *c)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	char path[PATH_MAX];

	if (access("/run", W_OK) == 0 || xdg == NULL || *xdg != '/') {
		c->socket_path = xstrdup("/run/ipcbridge.sock");
		return;
	}
	snprintf(path, sizeof(path), "%s/ipcbridge.sock", xdg);
	if (config_set_socket(c, path) < 0)
		c->socket_path = xstrdup("/run/ipcbridge.sock");
}

/* /run/ipcbridge, or $XDG_RUNTIME_DIR/ipcbridge if /run is not ours. */
static void
default_state_dir(struct config *c)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	char path[PATH_MAX];

	if (access("/run", W_OK) == 0 || xdg == NULL || *xdg != '/') {
		c->state_dir = xstrdup("/run/ipcbridge");
		return;
	}
	snprintf(path, sizeof(path), "%s/ipcbridge", xdg);
	c->state_dir = xstrdup(path);
}

/* Fill what the file left out; a queue without a key is an error. */
static int
finish(struct config *c, char *err, size_t errlen)
{
	struct queue_conf *q;
	size_t i;

	if (c->socket_path == NULL)
		default_socket(c);
	if (c->state_dir == NULL)
		default_state_dir(c);
	if (c->nqueues == 0) {
		q = add_queue(c, "default");
		ipcb_key_parse(DEFAULT_QUEUE_KEY, &q->key, NULL, 0);
		q->key_spec = xstrdup(DEFAULT_QUEUE_KEY);
	}
	for (i = 0; i < c->nqueues; i++) {
		q = &c->queues[i];
		if (q->key_spec != NULL)
			continue;
		if (strcmp(q->name, "default") == 0) {
			ipcb_key_parse(DEFAULT_QUEUE_KEY, &q->key, NULL, 0);
			q->key_spec = xstrdup(DEFAULT_QUEUE_KEY);
			continue;
		}
		snprintf(err, errlen, "%s:%d: [queue %s]: key is required",
		    c->path, q->line, q->name);
		return -1;
	}
	if (c->nshms == 0) {
		struct shm_conf *m = add_shm(c, "default", 0);

		ipcb_key_parse(DEFAULT_SHM_KEY, &m->key, NULL, 0);
		m->key_spec = xstrdup(DEFAULT_SHM_KEY);
	}
	for (i = 0; i < c->nshms; i++) {
		struct shm_conf *m = &c->shms[i];
		size_t j;

		if (m->key_spec == NULL && strcmp(m->name, "default") == 0) {
			ipcb_key_parse(DEFAULT_SHM_KEY, &m->key, NULL, 0);
			m->key_spec = xstrdup(DEFAULT_SHM_KEY);
		}
		if (m->key_spec == NULL) {
			snprintf(err, errlen, "%s:%d: [shm %s]: key is required",
			    c->path, m->line, m->name);
			return -1;
		}
		if (m->sem_key_spec == NULL)
			m->sem_key = m->key;
		for (j = 0; j < i; j++) {
			if (c->shms[j].key != m->key)
				continue;
			snprintf(err, errlen, "%s:%d: [shm %s] key: same key "
			    "0x%08x as [shm %s] (line %d)",
			    c->path ? c->path : "defaults", m->line, m->name,
			    (unsigned)m->key, c->shms[j].name,
			    c->shms[j].line);
			return -1;
		}
	}
	for (i = 0; i < c->nqueues; i++) {
		size_t j;

		for (j = i + 1; j < c->nqueues; j++) {
			if (c->queues[i].key != c->queues[j].key)
				continue;
			snprintf(err, errlen,
			    "%s:%d: [queue %s] key: same key 0x%08x as "
			    "[queue %s] (line %d)",
			    c->path ? c->path : "defaults", c->queues[j].line,
			    c->queues[j].name, (unsigned)c->queues[j].key,
			    c->queues[i].name, c->queues[i].line);
			return -1;
		}
	}
	return 0;
}

struct config *
config_defaults(void)
{
	struct config *c;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		fatalx("out of memory");
	set_defaults(c);
	finish(c, NULL, 0);
	return c;
}

struct config *
config_load(const char *path, char *err, size_t errlen)
{
	struct parse p;
	struct config *c;
	struct stat st;
	int rc;

	memset(&p, 0, sizeof(p));
	if ((c = calloc(1, sizeof(*c))) == NULL)
		fatalx("out of memory");
	set_defaults(c);
	c->path = xstrdup(path);
	p.cfg = c;
	p.path = path;
	p.err = err;
	p.errlen = errlen;
	p.at_line_start = 1;
	if ((p.f = fopen(path, "r")) == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		config_free(c);
		return NULL;
	}
	if (fstat(fileno(p.f), &st) == 0 && (st.st_mode & S_IWOTH)) {
		snprintf(err, errlen, "%s: world-writable (mode %04o): anyone "
		    "could change what the daemon serves; refusing it", path,
		    (unsigned)(st.st_mode & 07777));
		fclose(p.f);
		config_free(c);
		return NULL;
	}
	rc = ini_parse_stream(reader, &p, handler, &p);
	fclose(p.f);
	/* inih returns the read of its first error: a syntax error may come
	 * before the first key we refused */
	if (rc > 0 && (!p.failed || rc < p.fail_read))
		snprintf(err, errlen, "%s:%d: syntax error (expected "
		    "[section], key = value, or a ; comment)", path,
		    rc <= p.reads ? p.read_line[rc] : p.lineno);
	free(p.read_line);
	if (rc != 0 || p.failed || finish(c, err, errlen) < 0) {
		config_free(c);
		return NULL;
	}
	return c;
}

int
config_set_socket(struct config *c, const char *path)
{
	if (*path != '/' || strlen(path) >= 108)
		return -1;
	free(c->socket_path);
	c->socket_path = xstrdup(path);
	return 0;
}

const struct shm_conf *
config_shm(const struct config *c, const char *name)
{
	size_t i;

	for (i = 0; i < c->nshms; i++) {
		if (strcmp(c->shms[i].name, name) == 0)
			return &c->shms[i];
	}
	return NULL;
}

const struct queue_conf *
config_queue(const struct config *c, const char *name)
{
	size_t i;

	for (i = 0; i < c->nqueues; i++) {
		if (strcmp(c->queues[i].name, name) == 0)
			return &c->queues[i];
	}
	return NULL;
}

void
config_free(struct config *c)
{
	size_t i;

	if (c == NULL)
		return;
	for (i = 0; i < c->nqueues; i++) {
		free(c->queues[i].name);
		free(c->queues[i].key_spec);
		access_free(&c->queues[i].access);
	}
	free(c->queues);
	for (i = 0; i < c->nshms; i++) {
		free(c->shms[i].name);
		free(c->shms[i].key_spec);
		free(c->shms[i].sem_key_spec);
		access_free(&c->shms[i].access);
	}
	free(c->shms);
	free(c->socket_path);
	free(c->pidfile);
	free(c->state_dir);
	free(c->user);
	free(c->group);
	idlist_free(&c->allow_users);
	idlist_free(&c->allow_groups);
	free(c->path);
	free(c);
}

/* Ids as numbers: what the daemon will compare against SO_PEERCRED. */
static void
print_ids(FILE *f, const char *name, const struct idlist *l)
{
	size_t i;

	if (l->n == 0)
		return;
	fprintf(f, "%s =", name);
	for (i = 0; i < l->n; i++)
		fprintf(f, "%s %u", i ? "," : "", l->ids[i]);
	fprintf(f, "\n");
}

static void
print_access(FILE *f, const struct access *a)
{
	print_ids(f, "read_users", &a->read_users);
	print_ids(f, "read_groups", &a->read_groups);
	print_ids(f, "write_users", &a->write_users);
	print_ids(f, "write_groups", &a->write_groups);
}

static void
print_key(FILE *f, const char *name, const char *spec, key_t key)
{
	if (strncmp(spec, "ftok:", 5) == 0)
		fprintf(f, "%s = %s ; = 0x%08x\n", name, spec, (unsigned)key);
	else
		fprintf(f, "%s = 0x%08x\n", name, (unsigned)key);
}

/* The effective settings, in the config file's own syntax (for -t). */
void
config_print(const struct config *c, FILE *f)
{
	const struct queue_conf *q;
	size_t i;

	fprintf(f, "; effective settings from %s\n",
	    c->path ? c->path : "built-in defaults");
	fprintf(f, "[server]\n");
	fprintf(f, "socket = %s\n", c->socket_path);
	fprintf(f, "socket_mode = %04o\n", (unsigned)c->socket_mode);
	fprintf(f, "poll_interval_ms = %d\n", c->poll_interval_ms);
	fprintf(f, "max_line_bytes = %zu\n", c->max_line_bytes);
	fprintf(f, "max_conns = %d\n", c->max_conns);
	fprintf(f, "max_wait_ms = %d\n", c->max_wait_ms);
	fprintf(f, "ack_timeout_ms = %d\n", c->ack_timeout_ms);
	fprintf(f, "state_dir = %s\n", c->state_dir);
	fprintf(f, "journal_slots = %d\n", c->journal_slots);
	fprintf(f, "max_conns_per_uid = %d\n", c->max_conns_per_uid);
	fprintf(f, "idle_timeout_ms = %d\n", c->idle_timeout_ms);
	fprintf(f, "partial_line_timeout_ms = %d\n",
	    c->partial_line_timeout_ms);
	fprintf(f, "max_output_bytes = %zu\n", c->max_output_bytes);
	print_ids(f, "allow_users", &c->allow_users);
	print_ids(f, "allow_groups", &c->allow_groups);
	if (c->user != NULL)
		fprintf(f, "user = %s\n", c->user);
	if (c->group != NULL)
		fprintf(f, "group = %s\n", c->group);
	fprintf(f, "log = %s\n", c->log_syslog ? "syslog" : "stderr");
	fprintf(f, "log_level = %s\n", c->log_level == LOG_LVL_WARN ?
	    "warning" : c->log_level == LOG_LVL_DEBUG ? "debug" : "info");
	if (c->pidfile != NULL)
		fprintf(f, "pidfile = %s\n", c->pidfile);
	for (i = 0; i < c->nqueues; i++) {
		q = &c->queues[i];
		fprintf(f, "\n[queue %s]\n", q->name);
		print_key(f, "key", q->key_spec, q->key);
		fprintf(f, "mode = %04o\n", (unsigned)q->mode);
		fprintf(f, "create = %s\n", q->create ? "yes" : "no");
		if (q->max_bytes != 0)
			fprintf(f, "max_bytes = %lu\n", q->max_bytes);
		else
			fprintf(f, "; max_bytes unset: the kernel's msg_qbytes\n");
		fprintf(f, "payload = %s\n", q->payload == PAYLOAD_JSON ? "json" :
		    q->payload == PAYLOAD_PHP ? "php" : "raw");
		print_access(f, &q->access);
	}
	for (i = 0; i < c->nshms; i++) {
		const struct shm_conf *m = &c->shms[i];

		fprintf(f, "\n[shm %s]\n", m->name);
		print_key(f, "key", m->key_spec, m->key);
		fprintf(f, "size = %zu\n", m->size);
		fprintf(f, "mode = %04o\n", (unsigned)m->mode);
		fprintf(f, "format = %s\n", m->format == SHM_RAW ? "raw" : "php");
		print_key(f, "sem_key", m->sem_key_spec ? m->sem_key_spec :
		    m->key_spec, m->sem_key);
		fprintf(f, "lock_timeout_ms = %d\n", m->lock_timeout_ms);
		fprintf(f, "create = %s\n", m->create ? "yes" : "no");
		print_access(f, &m->access);
	}
}
