/*
 * check_config.c - config_load, config_defaults and config_print
 * (src/config.c) on temporary files.
 *
 * Every error must name FILE:LINE, the section and the key; a config that
 * config_print writes must load back to the same settings.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "daemon.h"

/* main.c's globals, which libdaemon refers to */
struct event_base *base;
const struct config *cfg;

static char dir[64];		/* made by the runner, per test case */
static char conf_path[128];	/* the config under test */
static char printed_path[128];	/* config_print's output */
static char ftok_path[128];	/* a file for ftok keys */
static char err[2048];
static struct config *loaded, *reloaded;

static void
dir_setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/check_config.XXXXXX");
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		exit(1);
	}
	snprintf(conf_path, sizeof(conf_path), "%s/test.conf", dir);
	snprintf(printed_path, sizeof(printed_path), "%s/printed.conf", dir);
	snprintf(ftok_path, sizeof(ftok_path), "%s/ftokfile", dir);
}

/* Also after a failed (forked) test that never reached its teardown. */
static void
dir_teardown(void)
{
	unlink(conf_path);
	unlink(printed_path);
	unlink(ftok_path);
	rmdir(dir);
}

static void
setup(void)
{
	int fd;

	log_init(LOG_LVL_WARN);
	fd = open(ftok_path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
	memset(err, 0, sizeof(err));
	loaded = reloaded = NULL;
}

static void
teardown(void)
{
	config_free(loaded);
	config_free(reloaded);
	loaded = reloaded = NULL;
	unlink(conf_path);
	unlink(printed_path);
	unlink(ftok_path);
}

/* Write the config text (printf-style) to conf_path. */
__attribute__((format(printf, 1, 2)))
static void
write_conf(const char *fmt, ...)
{
	va_list ap;
	FILE *f;

	f = fopen(conf_path, "w");
	ck_assert_ptr_nonnull(f);
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	ck_assert_int_eq(fclose(f), 0);
}

static struct config *
load_ok(void)
{
	struct config *c;

	c = config_load(conf_path, err, sizeof(err));
	ck_assert_msg(c != NULL, "config_load failed: %s", err);
	return c;
}

/* The file must be refused with an error holding each string given. */
static void
vload_fails(int caller, va_list ap)
{
	const char *part;
	struct config *c;

	memset(err, 0, sizeof(err));
	c = config_load(conf_path, err, sizeof(err));
	config_free(c);
	ck_assert_msg(c == NULL, "line %d: config_load accepted a bad file",
	    caller);
	ck_assert_msg(err[0] != '\0', "line %d: no error message", caller);
	while ((part = va_arg(ap, const char *)) != NULL)
		ck_assert_msg(strstr(err, part) != NULL,
		    "line %d: error \"%s\" does not name \"%s\"", caller,
		    err, part);
}

static void
load_fails_(int caller, ...)
{
	va_list ap;

	va_start(ap, caller);
	vload_fails(caller, ap);
	va_end(ap);
}
#define load_fails(...)	load_fails_(__LINE__, __VA_ARGS__)

/*
 * The same, and the error must hold "FILE:LINE:" as well as each string
 * (the section, the key, what is wrong).
 */
static void
load_fails_at_(int caller, int line, ...)
{
	char where[256];
	va_list ap;

	va_start(ap, line);
	vload_fails(caller, ap);
	va_end(ap);
	snprintf(where, sizeof(where), "%s:%d:", conf_path, line);
	ck_assert_msg(strstr(err, where) != NULL,
	    "line %d: error \"%s\" does not name \"%s\"", caller, err,
	    where);
}
#define load_fails_at(...)	load_fails_at_(__LINE__, __VA_ARGS__)

static void
assert_server_defaults(const struct config *c)
{
	ck_assert_int_eq(c->socket_mode, 0660);
	ck_assert_int_eq(c->poll_interval_ms, 10);
	ck_assert_uint_eq(c->max_line_bytes, 16777216);
	ck_assert_int_eq(c->max_conns, 256);
	ck_assert_int_eq(c->max_wait_ms, 300000);
	ck_assert_ptr_nonnull(c->socket_path);
	ck_assert_msg(c->socket_path[0] == '/', "socket %s", c->socket_path);
	ck_assert_uint_lt(strlen(c->socket_path), 108);
	ck_assert_msg(strlen(c->socket_path) >= strlen("/ipcbridge.sock") &&
	    strcmp(c->socket_path + strlen(c->socket_path) -
	    strlen("/ipcbridge.sock"), "/ipcbridge.sock") == 0,
	    "default socket %s", c->socket_path);
}

static void
assert_default_queue(const struct queue_conf *q)
{
	ck_assert_ptr_nonnull(q);
	ck_assert_str_eq(q->name, "default");
	ck_assert_int_eq(q->key, 0x69706201);
	ck_assert_str_eq(q->key_spec, "0x69706201");
	ck_assert_int_eq(q->mode, 0660);
	ck_assert_int_eq(q->create, 1);
	ck_assert_uint_eq(q->max_bytes, 0);
}

/* The same effective settings (key_spec may be respelled, path differs). */
static void
assert_same_settings(const struct config *a, const struct config *b)
{
	size_t i;

	ck_assert_str_eq(a->socket_path, b->socket_path);
	ck_assert_int_eq(a->socket_mode, b->socket_mode);
	ck_assert_int_eq(a->poll_interval_ms, b->poll_interval_ms);
	ck_assert_uint_eq(a->max_line_bytes, b->max_line_bytes);
	ck_assert_int_eq(a->max_conns, b->max_conns);
	ck_assert_int_eq(a->max_wait_ms, b->max_wait_ms);
	ck_assert_uint_eq(a->nqueues, b->nqueues);
	for (i = 0; i < a->nqueues; i++) {
		ck_assert_str_eq(a->queues[i].name, b->queues[i].name);
		ck_assert_int_eq(a->queues[i].key, b->queues[i].key);
		ck_assert_int_eq(a->queues[i].mode, b->queues[i].mode);
		ck_assert_int_eq(a->queues[i].create, b->queues[i].create);
		ck_assert_uint_eq(a->queues[i].max_bytes,
		    b->queues[i].max_bytes);
		if (strncmp(a->queues[i].key_spec, "ftok:", 5) == 0)
			ck_assert_str_eq(a->queues[i].key_spec,
			    b->queues[i].key_spec);
	}
}

/* config_print c to a file, load that, compare. */
static void
assert_print_round_trips(const struct config *c)
{
	char first[512];
	FILE *f;

	f = fopen(printed_path, "w");
	ck_assert_ptr_nonnull(f);
	config_print(c, f);
	ck_assert_int_eq(fclose(f), 0);

	f = fopen(printed_path, "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_ptr_nonnull(fgets(first, sizeof(first), f));
	fclose(f);
	ck_assert_msg(first[0] == ';', "first line: %s", first);
	ck_assert_ptr_nonnull(strstr(first, c->path ? c->path :
	    "built-in defaults"));

	reloaded = config_load(printed_path, err, sizeof(err));
	ck_assert_msg(reloaded != NULL, "printed config does not load: %s",
	    err);
	ck_assert_str_eq(reloaded->path, printed_path);
	assert_same_settings(c, reloaded);
}

/* ---- defaults ---- */

START_TEST(test_defaults)
{
	struct config *c = config_defaults();

	ck_assert_ptr_null(c->path);
	assert_server_defaults(c);
	ck_assert_uint_eq(c->nqueues, 1);
	assert_default_queue(&c->queues[0]);
	ck_assert_ptr_eq(config_queue(c, "default"), &c->queues[0]);
	ck_assert_ptr_null(config_queue(c, "other"));
	config_free(c);
}
END_TEST

START_TEST(test_empty_file_is_defaults)
{
	write_conf("%s", "");
	loaded = load_ok();
	ck_assert_str_eq(loaded->path, conf_path);
	assert_server_defaults(loaded);
	ck_assert_uint_eq(loaded->nqueues, 1);
	assert_default_queue(&loaded->queues[0]);
}
END_TEST

START_TEST(test_server_only_gets_default_queue)
{
	write_conf("; only the server\n[server]\nmax_conns = 7\n");
	loaded = load_ok();
	ck_assert_int_eq(loaded->max_conns, 7);
	ck_assert_int_eq(loaded->poll_interval_ms, 10);
	ck_assert_uint_eq(loaded->nqueues, 1);
	assert_default_queue(&loaded->queues[0]);
}
END_TEST

START_TEST(test_default_queue_needs_no_key)
{
	write_conf("[queue default]\nmode = 0600\n\n[queue other]\n"
	    "key = 0x7e00a001\n");
	loaded = load_ok();
	ck_assert_uint_eq(loaded->nqueues, 2);
	ck_assert_str_eq(loaded->queues[0].name, "default");
	ck_assert_int_eq(loaded->queues[0].key, 0x69706201);
	ck_assert_str_eq(loaded->queues[0].key_spec, "0x69706201");
	ck_assert_int_eq(loaded->queues[0].mode, 0600);
	ck_assert_int_eq(loaded->queues[1].key, 0x7e00a001);
}
END_TEST

START_TEST(test_missing_file)
{
	char missing[160];

	snprintf(missing, sizeof(missing), "%s/nonexistent.conf", dir);
	ck_assert_ptr_null(config_load(missing, err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, missing));
	ck_assert_ptr_nonnull(strstr(err, strerror(ENOENT)));
}
END_TEST

/* ---- a full valid file ---- */

START_TEST(test_full_file)
{
	const struct queue_conf *q;
	char spec[200];

	write_conf(
	    "; ipcbridge test configuration\n"
	    "[server]\n"
	    "socket = %s/ipcb.sock ; the socket\n"
	    "socket_mode = 0600\n"
	    "poll_interval_ms = 25   ; faster polling\n"
	    "max_line_bytes = 64K\n"
	    "max_conns = 12\n"
	    "max_wait_ms = 1000\n"
	    "\n"
	    "[queue jobs]\n"
	    "key = 0x7e123456 ; the jobs\n"
	    "mode = 0640\n"
	    "create = no\n"
	    "max_bytes = 64K\n"
	    "\n"
	    "; a decimal key and a size in M\n"
	    "[queue results]\n"
	    "key = 12345\n"
	    "create = yes\n"
	    "max_bytes = 4M ; four megabytes\n"
	    "\n"
	    "[queue by-file.v2]\n"
	    "key = ftok:%s:Q\n"
	    "max_bytes = 16384\n"
	    "create = false\n"
	    "\n"
	    "[queue low_k]\n"
	    "key = 0xdeadbeef\n"
	    "mode = 0666\n"
	    "max_bytes = 2k\n"
	    "create = off\n",
	    dir, ftok_path);
	loaded = load_ok();

	snprintf(spec, sizeof(spec), "%s/ipcb.sock", dir);
	ck_assert_str_eq(loaded->socket_path, spec);
	ck_assert_int_eq(loaded->socket_mode, 0600);
	ck_assert_int_eq(loaded->poll_interval_ms, 25);
	ck_assert_uint_eq(loaded->max_line_bytes, 65536);
	ck_assert_int_eq(loaded->max_conns, 12);
	ck_assert_int_eq(loaded->max_wait_ms, 1000);
	ck_assert_uint_eq(loaded->nqueues, 4);
	ck_assert_ptr_null(config_queue(loaded, "default"));

	q = config_queue(loaded, "jobs");
	ck_assert_ptr_eq(q, &loaded->queues[0]);
	ck_assert_int_eq(q->key, 0x7e123456);
	ck_assert_str_eq(q->key_spec, "0x7e123456");
	ck_assert_int_eq(q->mode, 0640);
	ck_assert_int_eq(q->create, 0);
	ck_assert_uint_eq(q->max_bytes, 65536);

	q = config_queue(loaded, "results");
	ck_assert_ptr_eq(q, &loaded->queues[1]);
	ck_assert_int_eq(q->key, 12345);
	ck_assert_str_eq(q->key_spec, "12345");
	ck_assert_int_eq(q->mode, 0660);
	ck_assert_int_eq(q->create, 1);
	ck_assert_uint_eq(q->max_bytes, 4 * 1024 * 1024);

	q = config_queue(loaded, "by-file.v2");
	ck_assert_ptr_eq(q, &loaded->queues[2]);
	ck_assert_int_eq(q->key, ftok(ftok_path, 'Q'));
	snprintf(spec, sizeof(spec), "ftok:%s:Q", ftok_path);
	ck_assert_str_eq(q->key_spec, spec);
	ck_assert_uint_eq(q->max_bytes, 16384);
	ck_assert_int_eq(q->create, 0);

	q = config_queue(loaded, "low_k");
	ck_assert_int_eq(q->key, (key_t)(int32_t)0xdeadbeefU);
	ck_assert_int_eq(q->mode, 0666);
	ck_assert_uint_eq(q->max_bytes, 2048);
	ck_assert_int_eq(q->create, 0);
}
END_TEST

START_TEST(test_sizes_and_limits)
{
	write_conf("[server]\nmax_line_bytes = 1K\npoll_interval_ms = 1\n"
	    "max_conns = 100000\nmax_wait_ms = 86400000\n"
	    "[queue a]\nkey = 0x7e00a001\nmax_bytes = 2G\n"
	    "[queue b]\nkey = 0x7e00a002\nmax_bytes = 1\n");
	loaded = load_ok();
	ck_assert_uint_eq(loaded->max_line_bytes, 1024);
	ck_assert_int_eq(loaded->poll_interval_ms, 1);
	ck_assert_int_eq(loaded->max_conns, 100000);
	ck_assert_int_eq(loaded->max_wait_ms, 86400000);
	ck_assert_uint_eq(loaded->queues[0].max_bytes, 1UL << 31);
	ck_assert_uint_eq(loaded->queues[1].max_bytes, 1);
	config_free(loaded);

	write_conf("[server]\nmax_line_bytes = 1G\n");
	loaded = load_ok();
	ck_assert_uint_eq(loaded->max_line_bytes, 1UL << 30);
}
END_TEST

START_TEST(test_bools)
{
	static const char *yes[] = { "yes", "true", "on", "1" };
	static const char *no[] = { "no", "false", "off", "0" };
	int i;

	for (i = 0; i < 4; i++) {
		write_conf("[queue a]\nkey = 0x7e00a001\ncreate = %s\n"
		    "[queue b]\nkey = 0x7e00a002\ncreate = %s\n", no[i], yes[i]);
		loaded = load_ok();
		ck_assert_int_eq(loaded->queues[0].create, 0);
		ck_assert_int_eq(loaded->queues[1].create, 1);
		config_free(loaded);
		loaded = NULL;
	}
}
END_TEST

/* A section may be split; a later key overrides an earlier one. */
START_TEST(test_reopened_section)
{
	write_conf("[queue a]\nkey = 0x7e00a001\n[server]\nmax_conns = 3\n"
	    "[queue a]\nmode = 0600\nkey = 0x7e00a003\n");
	loaded = load_ok();
	ck_assert_uint_eq(loaded->nqueues, 1);
	ck_assert_int_eq(loaded->queues[0].key, 0x7e00a003);
	ck_assert_str_eq(loaded->queues[0].key_spec, "0x7e00a003");
	ck_assert_int_eq(loaded->queues[0].mode, 0600);
}
END_TEST

START_TEST(test_crlf_file)
{
	write_conf("[server]\r\nmax_conns = 9\r\n[queue a]\r\n"
	    "key = 0x7e00a001\r\n");
	loaded = load_ok();
	ck_assert_int_eq(loaded->max_conns, 9);
	ck_assert_int_eq(loaded->queues[0].key, 0x7e00a001);
}
END_TEST

/* ---- errors: FILE:LINE: [section] key: what ---- */

START_TEST(test_error_bad_number)
{
	write_conf("; comment\n[server]\n\nmax_conns = 10\n"
	    "poll_interval_ms = abc\nmax_wait_ms = 5\n");
	load_fails_at(5, "[server]", "poll_interval_ms", "\"abc\"", NULL);

	write_conf("[server]\nmax_conns = 0\n");
	load_fails_at(2, "[server]", "max_conns", NULL);
	write_conf("[server]\nmax_conns = 100001\n");
	load_fails_at(2, "[server]", "max_conns", NULL);
	write_conf("[server]\n\n\npoll_interval_ms = 10001\n");
	load_fails_at(4, "[server]", "poll_interval_ms", NULL);
	write_conf("[server]\nmax_wait_ms = -5\n");
	load_fails_at(2, "[server]", "max_wait_ms", NULL);
	write_conf("[server]\nmax_wait_ms = 86400001\n");
	load_fails_at(2, "[server]", "max_wait_ms", NULL);
	write_conf("[server]\nmax_wait_ms = 10ms\n");
	load_fails_at(2, "[server]", "max_wait_ms", NULL);
	write_conf("[server]\nmax_line_bytes = 1023\n");
	load_fails_at(2, "[server]", "max_line_bytes", NULL);
	write_conf("[server]\nmax_line_bytes = 2G\n");
	load_fails_at(2, "[server]", "max_line_bytes", NULL);
	write_conf("[server]\nmax_line_bytes = 4X\n");
	load_fails_at(2, "[server]", "max_line_bytes", NULL);
	write_conf("[server]\nmax_line_bytes = K\n");
	load_fails_at(2, "[server]", "max_line_bytes", NULL);
	write_conf("[queue a]\nkey = 0x7e00a001\nmax_bytes = 0\n");
	load_fails_at(3, "[queue a]", "max_bytes", NULL);
	write_conf("[queue a]\nkey = 0x7e00a001\nmax_bytes = 3G\n");
	load_fails_at(3, "[queue a]", "max_bytes", NULL);
	write_conf("[queue a]\nkey = 0x7e00a001\nmax_bytes = 99999999999999999999G\n");
	load_fails_at(3, "[queue a]", "max_bytes", NULL);
}
END_TEST

START_TEST(test_error_unknown_key)
{
	write_conf("[server]\nmax_conns = 10\nmax_connections = 10\n");
	load_fails_at(3, "[server]", "max_connections", "unknown key", NULL);
	write_conf("[queue a]\nkey = 0x7e00a001\n\n\ncolour = red\n");
	load_fails_at(5, "[queue a]", "colour", "unknown key", NULL);
}
END_TEST

START_TEST(test_error_unknown_section)
{
	write_conf("[server]\nmax_conns = 10\n[servre]\nmax_conns = 10\n");
	load_fails_at(4, "[servre]", "max_conns", "unknown section", NULL);
	/* "[queue]" without a name is not a queue section */
	write_conf("[queue]\nkey = 0x7e00a001\n");
	load_fails_at(2, "[queue]", "key", "unknown section", NULL);
}
END_TEST

START_TEST(test_error_bad_queue_name)
{
	write_conf("[queue a/b]\nkey = 0x7e00a001\n");
	load_fails_at(2, "[queue a/b]", "key", "queue name", NULL);
}
END_TEST

START_TEST(test_error_bad_mode)
{
	write_conf("[server]\nsocket_mode = 660\n");
	load_fails_at(2, "[server]", "socket_mode", "\"660\"", NULL);
	write_conf("[server]\nsocket_mode = 0999\n");
	load_fails_at(2, "[server]", "socket_mode", NULL);
	write_conf("[queue a]\nkey = 0x7e00a001\nmode = rw-rw----\n");
	load_fails_at(3, "[queue a]", "mode", "rw-rw----", NULL);
	write_conf("[queue a]\nkey = 0x7e00a001\nmode = 01777\n");
	load_fails_at(3, "[queue a]", "mode", NULL);
	write_conf("[queue a]\nmode = 0x1ff\nkey = 0x7e00a001\n");
	load_fails_at(2, "[queue a]", "mode", NULL);
	write_conf("[queue a]\nmode = 00660\nkey = 0x7e00a001\n");
	load_fails_at(2, "[queue a]", "mode", NULL);
	write_conf("[server]\nsocket_mode = 0660 # group\n");
	load_fails_at(2, "[server]", "socket_mode", NULL);
}
END_TEST

START_TEST(test_error_bad_bool)
{
	write_conf("[queue a]\nkey = 0x7e00a001\ncreate = maybe\n");
	load_fails_at(3, "[queue a]", "create", "maybe", NULL);
	write_conf("[queue a]\nkey = 0x7e00a001\ncreate = YES\n");
	load_fails_at(3, "[queue a]", "create", NULL);
}
END_TEST

START_TEST(test_error_bad_key)
{
	write_conf("[queue a]\nmode = 0600\nkey = 0\n");
	load_fails_at(3, "[queue a]", "key", "IPC_PRIVATE", NULL);
	write_conf("[queue a]\n\nkey = 0x7e00zz\n");
	load_fails_at(3, "[queue a]", "key", "0x7e00zz", NULL);
	write_conf("[queue a]\nkey = ftok:%s/missing:A\n", dir);
	load_fails_at(2, "[queue a]", "key", "missing", NULL);
}
END_TEST

START_TEST(test_error_bad_socket)
{
	write_conf("[server]\nsocket = relative.sock\n");
	load_fails_at(2, "[server]", "socket", NULL);
	write_conf("[server]\nsocket = /%0120d\n", 0);
	load_fails_at(2, "[server]", "socket", NULL);
}
END_TEST

START_TEST(test_error_key_outside_section)
{
	write_conf("; no section yet\nmax_conns = 10\n[server]\n");
	load_fails_at(2, "max_conns", "outside", NULL);
}
END_TEST

START_TEST(test_error_first_one_wins)
{
	write_conf("[server]\nmax_conns = 10\nbogus = 1\nmax_conns = x\n");
	load_fails_at(3, "[server]", "bogus", NULL);
	ck_assert_ptr_null(strstr(err, "max_conns"));
}
END_TEST

START_TEST(test_error_syntax)
{
	write_conf("[server]\nmax_conns = 10\nthis is not ini\n");
	load_fails_at(3, "syntax error", NULL);
	write_conf("[server]\n\n]\n");
	load_fails_at(3, "syntax error", NULL);
}
END_TEST

/* The first error wins, also when it is a syntax error: an unclosed
 * section header must not be reported as a later key's error. */
START_TEST(test_error_unclosed_section)
{
	write_conf("[server\nmax_conns = 10\n");
	load_fails_at(1, "syntax error", NULL);
}
END_TEST

/* A non-default queue without a key is refused... */
START_TEST(test_error_queue_without_key)
{
	write_conf("[queue a]\nkey = 0x7e00a001\n\n[queue b]\nmode = 0600\n"
	    "[server]\nmax_conns = 3\n");
	load_fails(conf_path, "[queue b]", "key", "required", NULL);
}
END_TEST

/*
 * ...and the error names a line of that section: its header (4) or, as
 * inih reports no line for a header, its first setting (5).
 */
START_TEST(test_error_queue_without_key_line)
{
	char at4[160], at5[160];

	write_conf("[queue a]\nkey = 0x7e00a001\n\n[queue b]\nmode = 0600\n"
	    "[server]\nmax_conns = 3\n");
	load_fails(conf_path, "[queue b]", "key", "required", NULL);
	snprintf(at4, sizeof(at4), "%s:4:", conf_path);
	snprintf(at5, sizeof(at5), "%s:5:", conf_path);
	ck_assert_msg(strstr(err, at4) != NULL || strstr(err, at5) != NULL,
	    "error \"%s\" names neither line 4 nor line 5", err);
}
END_TEST

/* Two queues with one key, even spelled differently, are refused... */
START_TEST(test_error_duplicate_keys)
{
	write_conf("[queue a]\nkey = 0x7e00a001\n[queue b]\n"
	    "key = 2113970177\n");
	load_fails(conf_path, "[queue a]", "[queue b]", "key", "0x7e00a001",
	    NULL);
	/* also a queue that takes the default queue's key */
	write_conf("[queue default]\nmode = 0600\n[queue b]\n"
	    "key = 0x69706201\n");
	load_fails(conf_path, "[queue default]", "[queue b]", "key", NULL);
}
END_TEST

/* ...and the error names the line of the second key, also when other
 * settings come before it in its section. */
START_TEST(test_error_duplicate_key_after_other_setting)
{
	write_conf("[queue a]\nkey = 0x7e00a001\n[queue b]\nmode = 0600\n"
	    "create = yes\nkey = 0x7e00a001\n");
	load_fails_at(6, "[queue b]", "key", "0x7e00a001", NULL);
}
END_TEST

/* ...and the error names the line of the second key. */
START_TEST(test_error_duplicate_keys_line)
{
	write_conf("[queue a]\nkey = 0x7e00a001\n[queue b]\n"
	    "key = 2113970177\n");
	load_fails_at(4, "[queue a]", "[queue b]", "key", "0x7e00a001", NULL);
	write_conf("[queue default]\nmode = 0600\n[queue b]\n"
	    "key = 0x69706201\n");
	load_fails_at(4, "[queue default]", "[queue b]", "key", NULL);
}
END_TEST

/* ---- lines near the INI reader's limit ---- */

/*
 * ipcbridge.conf(5): "Keep every line, comments included, to at most 199
 * characters." A 199-character line works, and errors after it still name
 * the right line: handler errors...
 */
START_TEST(test_199_char_line)
{
	char pad[198];

	memset(pad, 'x', 197);
	pad[197] = '\0';
	/* "; " + 197 = 199 characters */
	write_conf("; %s\n[server]\nmax_conns = 5\n", pad);
	loaded = load_ok();
	ck_assert_int_eq(loaded->max_conns, 5);
	write_conf("; %s\n[server]\nmax_conns = zz\n", pad);
	load_fails_at(3, "[server]", "max_conns", NULL);
}
END_TEST

/* ...and syntax errors (the line count inih returns is not the file's). */
START_TEST(test_syntax_error_line_after_199_char_line)
{
	char pad[198];

	memset(pad, 'x', 197);
	pad[197] = '\0';
	write_conf("; %s\n[server]\ngarbage\n", pad);
	load_fails_at(3, "syntax error", NULL);
}
END_TEST

/* ---- config_print ---- */

START_TEST(test_print_defaults_round_trips)
{
	struct config *c = config_defaults();

	assert_print_round_trips(c);
	assert_server_defaults(reloaded);
	assert_default_queue(&reloaded->queues[0]);
	config_free(c);
}
END_TEST

START_TEST(test_print_full_round_trips)
{
	write_conf(
	    "[server]\n"
	    "socket = %s/ipcb.sock\n"
	    "socket_mode = 0600\n"
	    "poll_interval_ms = 25\n"
	    "max_line_bytes = 64K\n"
	    "max_conns = 12\n"
	    "max_wait_ms = 1000\n"
	    "[queue jobs]\n"
	    "key = 0x7e123456\n"
	    "mode = 0640\n"
	    "create = no\n"
	    "max_bytes = 64K\n"
	    "[queue results]\n"
	    "key = 12345 ; decimal\n"
	    "max_bytes = 4M\n"
	    "[queue by-file.v2]\n"
	    "key = ftok:%s:Q\n"
	    "mode = 0\n"
	    "[queue high]\n"
	    "key = 0xdeadbeef\n"
	    "mode = 0777\n"
	    "[queue default]\n"
	    "create = yes\n",
	    dir, ftok_path);
	loaded = load_ok();
	ck_assert_uint_eq(loaded->nqueues, 5);
	assert_print_round_trips(loaded);
	ck_assert_int_eq(reloaded->queues[2].key, ftok(ftok_path, 'Q'));
	ck_assert_int_eq(reloaded->queues[3].key, (key_t)(int32_t)0xdeadbeefU);
	ck_assert_int_eq(reloaded->queues[4].key, 0x69706201);
}
END_TEST

static Suite *
config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc;

	tc = tcase_create("defaults");
	tcase_add_unchecked_fixture(tc, dir_setup, dir_teardown);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_empty_file_is_defaults);
	tcase_add_test(tc, test_server_only_gets_default_queue);
	tcase_add_test(tc, test_default_queue_needs_no_key);
	tcase_add_test(tc, test_missing_file);
	suite_add_tcase(s, tc);

	tc = tcase_create("valid");
	tcase_add_unchecked_fixture(tc, dir_setup, dir_teardown);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_full_file);
	tcase_add_test(tc, test_sizes_and_limits);
	tcase_add_test(tc, test_bools);
	tcase_add_test(tc, test_reopened_section);
	tcase_add_test(tc, test_crlf_file);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_unchecked_fixture(tc, dir_setup, dir_teardown);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_error_bad_number);
	tcase_add_test(tc, test_error_unknown_key);
	tcase_add_test(tc, test_error_unknown_section);
	tcase_add_test(tc, test_error_bad_queue_name);
	tcase_add_test(tc, test_error_bad_mode);
	tcase_add_test(tc, test_error_bad_bool);
	tcase_add_test(tc, test_error_bad_key);
	tcase_add_test(tc, test_error_bad_socket);
	tcase_add_test(tc, test_error_key_outside_section);
	tcase_add_test(tc, test_error_first_one_wins);
	tcase_add_test(tc, test_error_syntax);
	tcase_add_test(tc, test_error_unclosed_section);
	tcase_add_test(tc, test_error_queue_without_key);
	tcase_add_test(tc, test_error_queue_without_key_line);
	tcase_add_test(tc, test_error_duplicate_keys);
	tcase_add_test(tc, test_error_duplicate_keys_line);
	tcase_add_test(tc, test_error_duplicate_key_after_other_setting);
	suite_add_tcase(s, tc);

	tc = tcase_create("long_lines");
	tcase_add_unchecked_fixture(tc, dir_setup, dir_teardown);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_199_char_line);
	tcase_add_test(tc, test_syntax_error_line_after_199_char_line);
	suite_add_tcase(s, tc);

	tc = tcase_create("print");
	tcase_add_unchecked_fixture(tc, dir_setup, dir_teardown);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_print_defaults_round_trips);
	tcase_add_test(tc, test_print_full_round_trips);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(config_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
