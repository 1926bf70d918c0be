/*
 * check_phpser.c - PHP serialize() text <-> JSON values (src/phpser.c).
 *
 * Every type both ways, floats against a table taken from PHP 8.2's own
 * serialize(), strictness (each kind of malformed input, every truncation
 * of valid text, random mutations), and refusals (objects, enums,
 * references, INF/NAN, bytes that are not UTF-8). Inputs to the decoder
 * sit at the very end of a mapping whose next page is PROT_NONE, so a read
 * past len is a crash, not a silent pass. When php is installed (or $PHP
 * names it) the encoder's output is fed to PHP's unserialize and PHP's
 * serialize output to the decoder; without it those tests are left out.
 */
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "daemon.h"

/* main.c's globals, which libdaemon refers to */
struct event_base *base;
const struct config *cfg;

#define S(x)	x, sizeof(x) - 1

/*
 * Helpers.
 */

/* s as a C literal, for failure messages; one of four rotating buffers. */
static const char *
show(const char *s, size_t n)
{
	static char bufs[4][1024];
	static int which;
	char *b = bufs[which++ % 4];
	size_t i, o = 0;

	for (i = 0; i < n && o + 8 < sizeof(bufs[0]); i++) {
		unsigned char c = (unsigned char)s[i];

		if (c >= 0x20 && c < 0x7f && c != '\\')
			b[o++] = (char)c;
		else
			o += (size_t)snprintf(b + o, sizeof(bufs[0]) - o,
			    "\\x%02x", c);
	}
	if (i < n)
		o += (size_t)snprintf(b + o, sizeof(bufs[0]) - o, "...");
	b[o] = '\0';
	return b;
}

struct guard {
	char	*map;
	size_t	 maplen;
	char	*p;
};

/* A copy of s whose last byte is the last before a PROT_NONE page. */
static char *
guard_copy(struct guard *g, const char *s, size_t n)
{
	size_t psz = (size_t)sysconf(_SC_PAGESIZE);
	size_t pages = (n + psz - 1) / psz;

	if (pages == 0)
		pages = 1;
	g->maplen = (pages + 1) * psz;
	g->map = mmap(NULL, g->maplen, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(g->map, MAP_FAILED);
	ck_assert_int_eq(mprotect(g->map + pages * psz, psz, PROT_NONE), 0);
	g->p = g->map + pages * psz - n;
	if (n > 0)
		memcpy(g->p, s, n);
	return g->p;
}

static void
guard_free(struct guard *g)
{
	munmap(g->map, g->maplen);
}

/* Decode s[0..n) from a guarded copy. */
static json_t *
decode(const char *s, size_t n, int *code, char *err, size_t errlen)
{
	struct guard g;
	json_t *v;

	*code = -1;
	err[0] = '\0';
	v = phpser_decode(guard_copy(&g, s, n), n, code, err, errlen);
	guard_free(&g);
	return v;
}

/* v compact, keys in order, reals as jansson prints them. */
static char *
dump(json_t *v)
{
	char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

	ck_assert_ptr_nonnull(s);
	return s;
}

static json_t *
load(const char *text)
{
	json_error_t jerr;
	json_t *v;

	v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
	ck_assert_msg(v != NULL, "bad test JSON %s: %s", text, jerr.text);
	return v;
}

static void
assert_encodes_v(json_t *v, const char *want, size_t wantlen)
{
	char err[256] = "", *out;
	size_t len = 12345;

	out = phpser_encode(v, &len, err, sizeof(err));
	ck_assert_msg(out != NULL, "encode %s failed: %s", dump(v), err);
	ck_assert_msg(len == wantlen && memcmp(out, want, len) == 0,
	    "encode: got \"%s\", want \"%s\"", show(out, len),
	    show(want, wantlen));
	ck_assert_int_eq(out[len], '\0');
	free(out);
}

static void
assert_encodes(const char *json, const char *want, size_t wantlen)
{
	json_t *v = load(json);

	assert_encodes_v(v, want, wantlen);
	json_decref(v);
}

static void
assert_decodes(const char *s, size_t n, const char *json)
{
	json_t *v, *want;
	char err[256], *got, *exp;
	int code;

	v = decode(s, n, &code, err, sizeof(err));
	ck_assert_msg(v != NULL, "decode \"%s\" failed (%d): %s", show(s, n),
	    code, err);
	ck_assert_int_eq(code, 0);
	want = load(json);
	got = dump(v);
	exp = dump(want);
	ck_assert_msg(strcmp(got, exp) == 0 && json_equal(v, want),
	    "decode \"%s\": got %s, want %s", show(s, n), got, exp);
	free(got);
	free(exp);
	json_decref(v);
	json_decref(want);
}

/* Fails with code, and err names an offset and holds needle. */
static void
assert_fails(const char *s, size_t n, int wantcode, const char *needle)
{
	char err[256];
	json_t *v, *j;
	int code;

	v = decode(s, n, &code, err, sizeof(err));
	ck_assert_msg(v == NULL, "decode \"%s\" should fail, gave %s",
	    show(s, n), v ? dump(v) : "");
	ck_assert_msg(code == wantcode, "decode \"%s\": code %d, want %d (%s)",
	    show(s, n), code, wantcode, err);
	ck_assert_msg(strstr(err, "offset") != NULL,
	    "decode \"%s\": err names no offset: %s", show(s, n), err);
	ck_assert_msg(needle == NULL || strstr(err, needle) != NULL,
	    "decode \"%s\": err \"%s\" lacks \"%s\"", show(s, n), err, needle);
	/* the daemon puts err in a JSON string: it must be UTF-8 */
	ck_assert_ptr_nonnull(j = json_string(err));
	json_decref(j);
}

static json_t *
real_bits(uint64_t bits)
{
	double d;

	memcpy(&d, &bits, sizeof(d));
	return json_real(d);
}

static uint64_t
bits_of(double d)
{
	uint64_t b;

	memcpy(&b, &d, sizeof(b));
	return b;
}

/*
 * Encoding.
 */

static const struct {
	const char	*json;
	const char	*ser;
	size_t		 serlen;
} enc_table[] = {
	{ "null", S("N;") },
	{ "true", S("b:1;") },
	{ "false", S("b:0;") },
	{ "0", S("i:0;") },
	{ "-5", S("i:-5;") },
	{ "42", S("i:42;") },
	{ "9223372036854775807", S("i:9223372036854775807;") },
	{ "-9223372036854775808", S("i:-9223372036854775808;") },
	{ "0.1", S("d:0.1;") },
	{ "1.0", S("d:1;") },
	{ "-0.0", S("d:-0;") },
	{ "0.0", S("d:0;") },
	{ "1e100", S("d:1.0E+100;") },
	{ "1.5e-7", S("d:1.5E-7;") },
	{ "\"\"", S("s:0:\"\";") },
	{ "\"h\\u00e9llo\"", S("s:6:\"h\xc3\xa9llo\";") },
	{ "\"a\\u0000b\"", S("s:3:\"a\0b\";") },
	{ "\"\\u0000\"", S("s:1:\"\0\";") },
	{ "\"\\\"\"", S("s:1:\"\"\";") },
	{ "\"a\\\";}b\"", S("s:5:\"a\";}b\";") },
	{ "\"line\\n\"", S("s:5:\"line\n\";") },
	{ "\"\\ud83d\\ude00\"", S("s:4:\"\xf0\x9f\x98\x80\";") },
	{ "[]", S("a:0:{}") },
	{ "{}", S("a:0:{}") },
	{ "[1,\"a\",null]", S("a:3:{i:0;i:1;i:1;s:1:\"a\";i:2;N;}") },
	{ "[[[]]]", S("a:1:{i:0;a:1:{i:0;a:0:{}}}") },
	{ "{\"a\":1}", S("a:1:{s:1:\"a\";i:1;}") },
	{ "{\"b\":2,\"a\":1}", S("a:2:{s:1:\"b\";i:2;s:1:\"a\";i:1;}") },
	{ "{\"a\":{\"b\":[1,{\"c\":null}]}}",
	    S("a:1:{s:1:\"a\";a:1:{s:1:\"b\";a:2:{i:0;i:1;i:1;a:1:{s:1:\"c\";"
	    "N;}}}}") },
	{ "[0.5,{\"x\":[true,false]},\"\"]",
	    S("a:3:{i:0;d:0.5;i:1;a:1:{s:1:\"x\";a:2:{i:0;b:1;i:1;b:0;}}i:2;"
	    "s:0:\"\";}") },
};
#define NENC	(sizeof(enc_table) / sizeof(enc_table[0]))

START_TEST(test_encode_table)
{
	assert_encodes(enc_table[_i].json, enc_table[_i].ser,
	    enc_table[_i].serlen);
}
END_TEST

/* Object keys PHP would store as integers, and ones it keeps as strings. */
static const struct {
	const char	*key;		/* JSON string literal */
	const char	*ser;		/* the key as serialize() writes it */
	size_t		 serlen;
} key_table[] = {
	{ "\"5\"", S("i:5;") },
	{ "\"-3\"", S("i:-3;") },
	{ "\"0\"", S("i:0;") },
	{ "\"10\"", S("i:10;") },
	{ "\"9223372036854775807\"", S("i:9223372036854775807;") },
	{ "\"-9223372036854775808\"", S("i:-9223372036854775808;") },
	{ "\"9223372036854775808\"", S("s:19:\"9223372036854775808\";") },
	{ "\"-9223372036854775809\"", S("s:20:\"-9223372036854775809\";") },
	{ "\"99999999999999999999\"", S("s:20:\"99999999999999999999\";") },
	{ "\"-0\"", S("s:2:\"-0\";") },
	{ "\"00\"", S("s:2:\"00\";") },
	{ "\"05\"", S("s:2:\"05\";") },
	{ "\"-05\"", S("s:3:\"-05\";") },
	{ "\"+5\"", S("s:2:\"+5\";") },
	{ "\"5.0\"", S("s:3:\"5.0\";") },
	{ "\" 5\"", S("s:2:\" 5\";") },
	{ "\"5 \"", S("s:2:\"5 \";") },
	{ "\"1e3\"", S("s:3:\"1e3\";") },
	{ "\"0x1\"", S("s:3:\"0x1\";") },
	{ "\"-\"", S("s:1:\"-\";") },
	{ "\"\"", S("s:0:\"\";") },
	{ "\"\\u0665\"", S("s:2:\"\xd9\xa5\";") },	/* Arabic-Indic 5 */
};
#define NKEY	(sizeof(key_table) / sizeof(key_table[0]))

START_TEST(test_encode_keys)
{
	char json[128], want[128];
	size_t n;

	snprintf(json, sizeof(json), "{%s:true}", key_table[_i].key);
	n = (size_t)snprintf(want, sizeof(want), "a:1:{");
	memcpy(want + n, key_table[_i].ser, key_table[_i].serlen);
	n += key_table[_i].serlen;
	memcpy(want + n, "b:1;}", 5);
	n += 5;
	assert_encodes(json, want, n);
}
END_TEST

/* Bits of a double and what PHP 8.2's serialize() prints between d: and ;. */
static const struct {
	uint64_t	 bits;
	const char	*php;
} float_table[] = {
	{ 0x0000000000000000ULL, "0" },
	{ 0x8000000000000000ULL, "-0" },
	{ 0x3ff0000000000000ULL, "1" },
	{ 0xbff0000000000000ULL, "-1" },
	{ 0x3fb999999999999aULL, "0.1" },
	{ 0xbfb999999999999aULL, "-0.1" },
	{ 0x3fe0000000000000ULL, "0.5" },
	{ 0x3fd3333333333334ULL, "0.30000000000000004" },
	{ 0x3fd5555555555555ULL, "0.3333333333333333" },
	{ 0x3fe5555555555555ULL, "0.6666666666666666" },
	{ 0x4059000000000000ULL, "100" },
	{ 0x405edd2f1a9fbe77ULL, "123.456" },
	{ 0xc05edd2f1a9fbe77ULL, "-123.456" },
	{ 0x3ff8000000000000ULL, "1.5" },
	{ 0x400921f9f01b866eULL, "3.14159" },
	{ 0x4011666666666666ULL, "4.35" },
	{ 0x40f0000000000000ULL, "65536" },
	/* fixed notation down to 1e-4, exponent form below */
	{ 0x3f50624dd2f1a9fcULL, "0.001" },
	{ 0x3f5437c5692b3cc5ULL, "0.001234" },
	{ 0x3f50000000000000ULL, "0.0009765625" },
	{ 0x3f1a36e2eb1c432dULL, "0.0001" },
	{ 0x3f23a92a30553261ULL, "0.00015" },
	{ 0x3f19f3c70c996b76ULL, "9.9E-5" },
	{ 0x3f0a36e2eb1c432dULL, "5.0E-5" },
	{ 0x3ee4f8b588e368f1ULL, "1.0E-5" },
	{ 0x3ee9e3abe16fc70dULL, "1.2345E-5" },
	{ 0x3e8421f5f40d8376ULL, "1.5E-7" },
	{ 0xbe8421f5f40d8376ULL, "-1.5E-7" },
	{ 0x3e8091b5aeffdb8eULL, "1.2345E-7" },
	{ 0x3ddb7cdfd9d7bdbbULL, "1.0E-10" },
	{ 0x01a56e1fc2f8f359ULL, "1.0E-300" },
	{ 0x0010000000000000ULL, "2.2250738585072014E-308" },
	{ 0x000fffffffffffffULL, "2.225073858507201E-308" },
	{ 0x0000000040000000ULL, "5.304989477E-315" },
	{ 0x0000000000000002ULL, "1.0E-323" },
	{ 0x0000000000000001ULL, "5.0E-324" },
	/* plain digits up to 17 before the point, exponent form from 1e17 */
	{ 0x42d6bcc41e900000ULL, "100000000000000" },
	{ 0x430c6bf526340000ULL, "1000000000000000" },
	{ 0x430c6bf52633ffffULL, "999999999999999.9" },
	{ 0x43118b54f22aeb03ULL, "1234567890123456.8" },
	{ 0x4330000000000000ULL, "4503599627370496" },
	{ 0x4340000000000000ULL, "9007199254740992" },
	{ 0x4341c37937e07fffULL, "9999999999999998" },
	{ 0x4341c37937e08000ULL, "10000000000000000" },
	{ 0x4345ee2a2eb5a5c4ULL, "12345678901234568" },
	{ 0x434aa535d3d0c000ULL, "15000000000000000" },
	{ 0x4376345785d8a000ULL, "1.0E+17" },
	{ 0x437bc16d674ec800ULL, "1.25E+17" },
	{ 0x437b69b4ba630f35ULL, "1.2345678901234568E+17" },
	{ 0x43abc16d674ec800ULL, "1.0E+18" },
	{ 0x43e0000000000000ULL, "9.223372036854776E+18" },
	{ 0xc3e0000000000000ULL, "-9.223372036854776E+18" },
	{ 0x43f0000000000000ULL, "1.8446744073709552E+19" },
	{ 0x444b1ae4d6e2ef50ULL, "1.0E+21" },
	{ 0x4480f0cf064dd592ULL, "1.0E+22" },
	{ 0x44b52d02c7e14af6ULL, "1.0E+23" },
	{ 0x45208b2a2c280291ULL, "1.0E+25" },
	{ 0x54b249ad2594c37dULL, "1.0E+100" },
	{ 0xd4b249ad2594c37dULL, "-1.0E+100" },
	{ 0x7e37e43c8800759cULL, "1.0E+300" },
	{ 0x7fefffffffffffffULL, "1.7976931348623157E+308" },
	/* powers of two, where the shortest digits lie above the value */
	{ 0x4580000000000000ULL, "6.189700196426902E+26" },	/* 2^89 */
	{ 0x4790000000000000ULL, "5.316911983139664E+36" },	/* 2^122 */
};
#define NFLOAT	(sizeof(float_table) / sizeof(float_table[0]))

START_TEST(test_encode_floats)
{
	char want[64];
	json_t *v;
	int n;

	v = real_bits(float_table[_i].bits);
	ck_assert_ptr_nonnull(v);
	n = snprintf(want, sizeof(want), "d:%s;", float_table[_i].php);
	assert_encodes_v(v, want, (size_t)n);
	json_decref(v);
}
END_TEST

START_TEST(test_decode_floats)
{
	char ser[64], err[256];
	json_t *v;
	int n, code;

	n = snprintf(ser, sizeof(ser), "d:%s;", float_table[_i].php);
	v = decode(ser, (size_t)n, &code, err, sizeof(err));
	ck_assert_msg(v != NULL, "%s: %s", ser, err);
	ck_assert(json_is_real(v));
	ck_assert_msg(bits_of(json_real_value(v)) == float_table[_i].bits,
	    "%s decoded to %a", ser, json_real_value(v));
	json_decref(v);
}
END_TEST

/* Nested [[...]] or {"k":{"k":...}} depth deep around null. */
static json_t *
nest(int depth, int objects)
{
	json_t *v = json_null(), *c;
	int i;

	for (i = 0; i < depth; i++) {
		if (objects && i % 2) {
			c = json_object();
			json_object_set_new(c, "k", v);
		} else {
			c = json_array();
			json_array_append_new(c, v);
		}
		v = c;
	}
	return v;
}

START_TEST(test_encode_depth)
{
	char err[256], *out;
	json_t *v;
	size_t len;
	int objects;

	for (objects = 0; objects < 2; objects++) {
		v = nest(64, objects);
		out = phpser_encode(v, &len, err, sizeof(err));
		ck_assert_msg(out != NULL, "depth 64: %s", err);
		free(out);
		json_decref(v);

		v = nest(65, objects);
		err[0] = '\0';
		out = phpser_encode(v, &len, err, sizeof(err));
		ck_assert_ptr_null(out);
		ck_assert_msg(strstr(err, "64") != NULL, "err: %s", err);
		json_decref(v);
	}
	/* no err buffer: still refused, nothing written */
	v = nest(65, 0);
	ck_assert_ptr_null(phpser_encode(v, &len, NULL, 0));
	json_decref(v);
}
END_TEST

START_TEST(test_encode_binary_string)
{
	unsigned char bytes[256];
	char want[300];
	json_t *v;
	size_t i, n;

	/* a NUL-laden string: every ASCII byte, three times over */
	for (i = 0; i < 128; i++)
		bytes[i] = bytes[i + 128] = (unsigned char)i;
	v = json_stringn((char *)bytes, 256);
	ck_assert_ptr_nonnull(v);
	n = (size_t)snprintf(want, sizeof(want), "s:256:\"");
	memcpy(want + n, bytes, 256);
	n += 256;
	memcpy(want + n, "\";", 2);
	assert_encodes_v(v, want, n + 2);
	json_decref(v);
}
END_TEST

/*
 * Decoding.
 */

static const struct {
	const char	*ser;
	size_t		 serlen;
	const char	*json;
} dec_table[] = {
	{ S("N;"), "null" },
	{ S("b:0;"), "false" },
	{ S("b:1;"), "true" },
	{ S("i:0;"), "0" },
	{ S("i:-1;"), "-1" },
	{ S("i:42;"), "42" },
	{ S("i:9223372036854775807;"), "9223372036854775807" },
	{ S("i:-9223372036854775808;"), "-9223372036854775808" },
	{ S("d:0;"), "0.0" },
	{ S("d:1;"), "1.0" },
	{ S("d:0.1;"), "0.1" },
	{ S("d:-0;"), "-0.0" },
	{ S("d:1.0E+25;"), "1e25" },
	{ S("d:-1.5E-7;"), "-1.5e-7" },
	/* other writers' spellings: Python repr, %e */
	{ S("d:1e+100;"), "1e100" },
	{ S("d:1e5;"), "100000.0" },
	{ S("d:1.5e-05;"), "1.5e-5" },
	{ S("d:1.5E+3;"), "1500.0" },
	{ S("d:007.50;"), "7.5" },
	{ S("d:1e-999;"), "0.0" },
	{ S("d:12345678901234567890123;"), "1.2345678901234568e22" },
	{ S("s:0:\"\";"), "\"\"" },
	{ S("s:5:\"hello\";"), "\"hello\"" },
	{ S("s:6:\"h\xc3\xa9llo\";"), "\"h\\u00e9llo\"" },
	{ S("s:3:\"a\0b\";"), "\"a\\u0000b\"" },
	{ S("s:1:\"\"\";"), "\"\\\"\"" },
	{ S("s:2:\";}\";"), "\";}\"" },
	{ S("s:4:\"\xf0\x9f\x98\x80\";"), "\"\\ud83d\\ude00\"" },
	{ S("s:3:\"\xef\xbf\xbf\";"), "\"\\uffff\"" },
	{ S("s:4:\"\xf4\x8f\xbf\xbf\";"), "\"\\udbff\\udfff\"" },
	{ S("a:0:{}"), "[]" },
	{ S("a:2:{i:0;i:1;i:1;s:1:\"x\";}"), "[1,\"x\"]" },
	{ S("a:1:{i:0;a:1:{i:0;a:0:{}}}"), "[[[]]]" },
	{ S("a:1:{i:1;N;}"), "{\"1\":null}" },
	{ S("a:2:{i:1;N;i:0;N;}"), "{\"1\":null,\"0\":null}" },
	{ S("a:3:{i:0;N;s:1:\"x\";N;i:2;N;}"),
	    "{\"0\":null,\"x\":null,\"2\":null}" },
	{ S("a:1:{i:-3;b:0;}"), "{\"-3\":false}" },
	{ S("a:2:{s:1:\"a\";i:1;s:1:\"b\";a:1:{i:0;b:1;}}"),
	    "{\"a\":1,\"b\":[true]}" },
	{ S("a:2:{s:1:\"b\";i:2;s:1:\"a\";i:1;}"), "{\"b\":2,\"a\":1}" },
	/* a canonical decimal string key is that integer key, as in PHP */
	{ S("a:2:{s:1:\"0\";i:5;s:1:\"1\";i:6;}"), "[5,6]" },
	{ S("a:2:{i:0;i:5;s:1:\"1\";i:6;}"), "[5,6]" },
	{ S("a:1:{s:2:\"05\";N;}"), "{\"05\":null}" },
	{ S("a:1:{s:2:\"-0\";N;}"), "{\"-0\":null}" },
	{ S("a:1:{s:0:\"\";N;}"), "{\"\":null}" },
	{ S("a:1:{i:9223372036854775807;N;}"),
	    "{\"9223372036854775807\":null}" },
	{ S("a:1:{i:-9223372036854775808;N;}"),
	    "{\"-9223372036854775808\":null}" },
	/* a key that comes again: last value wins, in the first place */
	{ S("a:2:{i:0;s:1:\"a\";i:0;s:1:\"b\";}"), "[\"b\"]" },
	{ S("a:3:{i:0;N;i:1;s:1:\"a\";i:1;s:1:\"b\";}"), "[null,\"b\"]" },
	{ S("a:3:{i:1;s:1:\"a\";i:0;N;i:1;s:1:\"b\";}"),
	    "{\"1\":\"b\",\"0\":null}" },
	{ S("a:2:{i:1;s:1:\"a\";s:1:\"1\";s:1:\"b\";}"), "{\"1\":\"b\"}" },
	{ S("a:3:{s:1:\"x\";i:1;i:0;i:2;s:1:\"x\";i:3;}"),
	    "{\"x\":3,\"0\":2}" },
	{ S("a:3:{i:0;a:0:{}i:1;a:1:{s:1:\"k\";d:0.5;}i:2;s:0:\"\";}"),
	    "[[],{\"k\":0.5},\"\"]" },
};
#define NDEC	(sizeof(dec_table) / sizeof(dec_table[0]))

START_TEST(test_decode_table)
{
	assert_decodes(dec_table[_i].ser, dec_table[_i].serlen,
	    dec_table[_i].json);
}
END_TEST

START_TEST(test_decode_negative_zero)
{
	char err[256];
	json_t *v;
	int code;

	v = decode(S("d:-0;"), &code, err, sizeof(err));
	ck_assert_ptr_nonnull(v);
	ck_assert(signbit(json_real_value(v)));
	json_decref(v);
}
END_TEST

START_TEST(test_decode_binary_string)
{
	char ser[300], err[256];
	json_t *v;
	size_t i, n;
	int code;

	n = (size_t)snprintf(ser, sizeof(ser), "s:128:\"");
	for (i = 0; i < 128; i++)
		ser[n++] = (char)i;
	memcpy(ser + n, "\";", 2);
	n += 2;
	v = decode(ser, n, &code, err, sizeof(err));
	ck_assert_msg(v != NULL, "%s", err);
	ck_assert_uint_eq(json_string_length(v), 128);
	for (i = 0; i < 128; i++)
		ck_assert_int_eq(json_string_value(v)[i], (char)i);
	json_decref(v);
}
END_TEST

/* Arguments may be NULL or empty; *code is 0 on success. */
START_TEST(test_decode_api)
{
	char err[8];
	json_t *v;
	int code = 99;

	v = phpser_decode("i:1;", 4, &code, err, sizeof(err));
	ck_assert_ptr_nonnull(v);
	ck_assert_int_eq(code, 0);
	json_decref(v);
	ck_assert_ptr_null(phpser_decode("i:1", 3, NULL, NULL, 0));
	ck_assert_ptr_null(phpser_decode(NULL, 0, &code, err, sizeof(err)));
	ck_assert_int_eq(code, PHPSER_MALFORMED);
	/* a short err buffer is truncated, still a C string */
	ck_assert_ptr_null(phpser_decode("i:x;", 4, &code, err, sizeof(err)));
	ck_assert_uint_eq(strlen(err), sizeof(err) - 1);
}
END_TEST

/*
 * Malformed input.
 */

static const struct {
	const char	*ser;
	size_t		 serlen;
	const char	*needle;	/* in err, or NULL */
} malformed[] = {
	{ S(""), "offset 0, found end of input" },
	{ S("N"), "expected ';' at offset 1" },
	{ S("N:"), "expected ';' at offset 1" },
	{ S("n;"), "expected a value" },
	{ S("X;"), "expected a value" },
	{ S(" N;"), "offset 0" },
	{ S("\0"), "byte 0x00" },
	{ S("b"), "offset 0" },
	{ S("b:"), "expected 0 or 1 at offset 2" },
	{ S("b:2;"), "expected 0 or 1 at offset 2" },
	{ S("b:-1;"), NULL },
	{ S("b:10;"), "expected ';' at offset 3" },
	{ S("b:1"), "expected ';' at offset 3" },
	{ S("b1;"), NULL },
	{ S("i:;"), "expected a digit at offset 2" },
	{ S("i:-;"), "offset 3" },
	{ S("i:+5;"), "offset 2" },
	{ S("i: 5;"), "offset 2" },
	{ S("i:05;"), "leading zero" },
	{ S("i:-05;"), "leading zero" },
	{ S("i:-00;"), "leading zero" },
	{ S("i:-0;"), "-0" },
	{ S("i:1.5;"), "expected ';' at offset 3" },
	{ S("i:1e3;"), "expected ';' at offset 3" },
	{ S("i:0x10;"), "expected ';' at offset 3" },
	{ S("i:5"), "expected ';' at offset 3" },
	{ S("i:9223372036854775808;"), "out of range" },
	{ S("i:-9223372036854775809;"), "out of range" },
	{ S("i:99999999999999999999999;"), "out of range" },
	{ S("i:18446744073709551616;"), "out of range" },
	{ S("d:;"), "expected a digit at offset 2" },
	{ S("d:-;"), "offset 3" },
	{ S("d:.5;"), "offset 2" },
	{ S("d:5.;"), "expected a digit at offset 4" },
	{ S("d:1e;"), "expected a digit at offset 4" },
	{ S("d:1e+;"), "expected a digit at offset 5" },
	{ S("d:+1;"), "offset 2" },
	{ S("d:1,5;"), "expected ';' at offset 3" },
	{ S("d:--1;"), "offset 3" },
	{ S("d:1.5"), "expected ';' at offset 5" },
	{ S("d:inf;"), "offset 2" },
	{ S("d:INF"), "offset 2" },
	{ S("d:+INF;"), "offset 2" },
	{ S("d:NaN;"), "offset 2" },
	{ S("d:0x1p3;"), "expected ';' at offset 3" },
	{ S("s:"), "expected a string length at offset 2" },
	{ S("s:5:\"abc\";"), "runs past the end" },
	{ S("s:2:\"abc\";"), "not 2 bytes long" },
	{ S("s:4:\"abc\";"), "not 4 bytes long" },
	{ S("s:3:\"abc\""), "expected ';' at offset 9" },
	{ S("s:3:\"abc\":"), "expected ';' at offset 9" },
	{ S("s:3:abc;"), "expected '\"' at offset 4" },
	{ S("s:3\"abc\";"), "expected ':' at offset 3" },
	{ S("s:3:\"abc';"), NULL },
	{ S("s:-1:\"\";"), "expected a string length at offset 2" },
	{ S("s:03:\"abc\";"), "leading zero" },
	{ S("s:+3:\"abc\";"), "offset 2" },
	{ S("s:99999999999:\"abc\";"), "runs past the end" },
	{ S("s:18446744073709551615:\"x\";"), "runs past the end" },
	{ S("s:18446744073709551616:\"x\";"), "out of range" },
	{ S("s:99999999999999999999999:\"\";"), "out of range" },
	{ S("s:1:\"a\""), "offset 7" },
	{ S("a"), "offset 0" },
	{ S("a:"), "expected an element count at offset 2" },
	{ S("a:0"), "expected ':' at offset 3" },
	{ S("a:0:"), "expected '{' at offset 4" },
	{ S("a:0:{"), "expected '}' at offset 5" },
	{ S("a:1:{}"), "expected an array key (i: or s:) at offset 5" },
	{ S("a:0:{i:0;N;}"), "expected '}' at offset 5" },
	{ S("a:2:{i:0;N;}"), "expected an array key (i: or s:) at offset 11" },
	{ S("a:1:{i:0;N;i:1;N;}"), "expected '}' at offset 11" },
	{ S("a:-1:{}"), "offset 2" },
	{ S("a:01:{i:0;N;}"), "leading zero" },
	{ S("a:+1:{i:0;N;}"), "offset 2" },
	{ S("a:9223372036854775808:{}"), "out of range" },
	{ S("a:99999999999:{i:0;N;}"), "expected an array key" },
	{ S("a:1{i:0;N;}"), "expected ':' at offset 3" },
	{ S("a:1:(i:0;N;)"), "expected '{' at offset 4" },
	{ S("a:1:{i:0;N;"), "expected '}' at offset 11" },
	{ S("a:1:{i:0;N;)"), "expected '}' at offset 11" },
	{ S("a:1:{i:0;}"), "expected a value" },
	{ S("a:1:{i:0N;}"), "expected ';' at offset 8" },
	{ S("a:1:{N;N;}"), "expected an array key" },
	{ S("a:1:{d:0;N;}"), "expected an array key" },
	{ S("a:1:{b:1;N;}"), "expected an array key" },
	{ S("a:1:{a:0:{}N;}"), "expected an array key" },
	{ S("a:1:{i:;N;}"), "expected a digit at offset 7" },
	{ S("a:1:{i:05;N;}"), "leading zero" },
	{ S("a:1:{i:9223372036854775808;N;}"), "out of range" },
	{ S("a:1:{s:2:\"a\";N;}"), "not 2 bytes long" },
	{ S("a:1:{s:1:\"a\"N;}"), "expected ';' at offset 12" },
	{ S("a:1:{i:0;i:0;"), "expected '}' at offset 13" },
	{ S("a:1:{i:0;a:1:{i:0;N;}"), "expected '}' at offset 21" },
	/* trailing bytes */
	{ S("N;N;"), "trailing bytes at offset 2" },
	{ S("N; "), "trailing bytes at offset 2" },
	{ S("i:5;x"), "trailing bytes at offset 4" },
	{ S("i:5;;"), "trailing bytes at offset 4" },
	{ S("a:0:{};"), "trailing bytes at offset 6" },
	{ S("a:0:{}}"), "trailing bytes at offset 6" },
	{ S("a:1:{i:0;N;}}"), "trailing bytes at offset 12" },
	{ S("s:1:\"a\";\0"), "trailing bytes at offset 8" },
	{ S("s:1:\"a\";\n"), "trailing bytes at offset 8" },
	/* an unknown type letter */
	{ S("x:1;"), "expected a value" },
	{ S("I:1;"), "expected a value" },
	{ S("o:1;"), "expected a value" },
};
#define NMAL	(sizeof(malformed) / sizeof(malformed[0]))

START_TEST(test_malformed)
{
	assert_fails(malformed[_i].ser, malformed[_i].serlen, PHPSER_MALFORMED,
	    malformed[_i].needle);
}
END_TEST

/* Valid serializations for truncation and mutation. */
static const struct {
	const char	*ser;
	size_t		 serlen;
} corpus[] = {
	{ S("N;") },
	{ S("b:1;") },
	{ S("i:-9223372036854775808;") },
	{ S("d:-1.2345678901234568E+17;") },
	{ S("d:0.30000000000000004;") },
	{ S("s:6:\"h\xc3\xa9llo\";") },
	{ S("s:3:\"a\0b\";") },
	{ S("a:0:{}") },
	{ S("a:3:{i:0;i:1;i:1;s:1:\"a\";i:2;N;}") },
	{ S("a:3:{s:1:\"a\";d:1.5;s:1:\"b\";b:1;s:1:\"c\";N;}") },
	{ S("a:2:{i:5;a:1:{s:3:\"k-y\";a:0:{}}s:2:\"05\";a:2:{i:0;d:-0;"
	    "i:1;s:0:\"\";}}") },
	{ S("a:1:{i:0;a:1:{i:0;a:1:{i:0;a:1:{i:0;i:42;}}}}") },
};
#define NCORPUS	(sizeof(corpus) / sizeof(corpus[0]))

/* Every proper prefix of valid text is malformed, and never read past. */
START_TEST(test_truncated)
{
	const char *s = corpus[_i].ser;
	size_t n = corpus[_i].serlen, cut;
	char err[256];
	json_t *v;
	int code;

	v = decode(s, n, &code, err, sizeof(err));
	ck_assert_msg(v != NULL, "corpus \"%s\": %s", show(s, n), err);
	json_decref(v);
	for (cut = 0; cut < n; cut++)
		assert_fails(s, cut, PHPSER_MALFORMED, NULL);
}
END_TEST

/* Random damage never crashes, and what still decodes is stable. */
START_TEST(test_mutations)
{
	static const char alpha[] = "0123456789:;{}\"-.eENabdisOCRr";
	char buf[256], err[256], *out, *d1, *d2;
	json_t *v, *w;
	size_t n, len, at;
	int iter, k, code;

	srandom(20240611);
	for (iter = 0; iter < 40000; iter++) {
		k = (int)(random() % NCORPUS);
		n = corpus[k].serlen;
		memcpy(buf, corpus[k].ser, n);
		for (int m = 1 + (int)(random() % 3); m > 0 && n > 0; m--) {
			at = (size_t)random() % n;
			switch (random() % 5) {
			case 0:
				buf[at] = alpha[random() % (sizeof(alpha) - 1)];
				break;
			case 1:
				buf[at] = (char)random();
				break;
			case 2:
				memmove(buf + at, buf + at + 1, n - at - 1);
				n--;
				break;
			case 3:
				if (n < sizeof(buf) - 1) {
					memmove(buf + at + 1, buf + at, n - at);
					buf[at] = alpha[random() %
					    (sizeof(alpha) - 1)];
					n++;
				}
				break;
			case 4:
				n = at;
				break;
			}
		}
		v = decode(buf, n, &code, err, sizeof(err));
		if (v == NULL) {
			ck_assert_msg(code == PHPSER_MALFORMED ||
			    code == PHPSER_UNSUPPORTED, "\"%s\": code %d",
			    show(buf, n), code);
			ck_assert_msg(strstr(err, "offset") != NULL,
			    "\"%s\": %s", show(buf, n), err);
			continue;
		}
		ck_assert_int_eq(code, 0);
		/* decode(encode(v)) == v */
		out = phpser_encode(v, &len, err, sizeof(err));
		ck_assert_msg(out != NULL, "%s", err);
		w = decode(out, len, &code, err, sizeof(err));
		ck_assert_msg(w != NULL, "\"%s\": %s", show(out, len), err);
		d1 = dump(v);
		d2 = dump(w);
		ck_assert_str_eq(d1, d2);
		free(d1);
		free(d2);
		free(out);
		json_decref(v);
		json_decref(w);
	}
}
END_TEST

/* "a:1:{i:0;" * depth, a value, "}" * depth. */
static char *
nested_text(int depth, size_t *len)
{
	char *s = malloc((size_t)depth * 10 + 8), *p = s;
	int i;

	ck_assert_ptr_nonnull(s);
	for (i = 0; i < depth; i++)
		p += sprintf(p, "a:1:{i:0;");
	p += sprintf(p, "N;");
	for (i = 0; i < depth; i++)
		*p++ = '}';
	*len = (size_t)(p - s);
	return s;
}

START_TEST(test_decode_depth)
{
	char err[256], *s;
	json_t *v;
	size_t len;
	int code;

	s = nested_text(64, &len);
	v = decode(s, len, &code, err, sizeof(err));
	ck_assert_msg(v != NULL, "depth 64: %s", err);
	json_decref(v);
	free(s);

	s = nested_text(65, &len);
	assert_fails(s, len, PHPSER_MALFORMED, "deeper than 64");
	/* the 65th array starts at 64 * 9 */
	assert_fails(s, len, PHPSER_MALFORMED, "offset 576 ");
	free(s);

	s = nested_text(100000, &len);
	assert_fails(s, len, PHPSER_MALFORMED, "deeper than 64");
	free(s);
}
END_TEST

/*
 * What JSON cannot carry.
 */

static const struct {
	const char	*ser;
	size_t		 serlen;
	const char	*needle;
} unsupported[] = {
	{ S("d:INF;"), "INF at offset 0" },
	{ S("d:-INF;"), "-INF at offset 0" },
	{ S("d:NAN;"), "NAN at offset 0" },
	{ S("a:1:{i:0;d:NAN;}"), "NAN at offset 9" },
	{ S("d:1e999;"), "INF" },
	{ S("d:-1.5e400;"), "INF" },
	{ S("O:8:\"stdClass\":0:{}"), "\"stdClass\" at offset 0" },
	{ S("O:8:\"stdClass\":1:{s:1:\"a\";i:1;}"), "stdClass" },
	{ S("a:1:{i:0;O:3:\"Foo\":0:{}}"), "\"Foo\" at offset 9" },
	{ S("a:1:{s:1:\"o\";O:11:\"ArrayObject\":4:{i:0;i:0;i:1;a:0:{}"
	    "i:2;a:0:{}i:3;N;}}"), "ArrayObject" },
	{ S("C:11:\"ArrayObject\":21:{x:i:0;a:0:{};m:a:0:{}}"),
	    "ArrayObject" },
	{ S("E:11:\"Suit:Hearts\";"), "enum case \"Suit:Hearts\"" },
	{ S("O:4:\"a\x01\xff" "b\":0:{}"), "\"a\\x01\\xffb\"" },
	{ S("O:9:\"Foo\\\\Bar\"\":0:{}"), "Foo\\x5c" },
	{ S("a:2:{i:0;i:1;i:1;R:2;}"), "reference (R:) at offset 17" },
	{ S("a:2:{i:0;a:0:{}i:1;r:2;}"), "reference (r:) at offset 19" },
	{ S("S:3:\"\\61bc\";"), "S:" },
	/* bytes that are not UTF-8, at the offset of the first bad byte */
	{ S("s:1:\"\xff\";"), "string is not UTF-8 at offset 5" },
	{ S("s:4:\"ab\xc3(\";"), "string is not UTF-8 at offset 7" },
	{ S("s:1:\"\x80\";"), "string is not UTF-8 at offset 5" },
	{ S("s:2:\"\xc0\xaf\";"), "offset 5" },		/* overlong '/' */
	{ S("s:3:\"\xe0\x80\xaf\";"), "offset 5" },	/* overlong '/' */
	{ S("s:3:\"\xed\xa0\x80\";"), "offset 5" },	/* surrogate */
	{ S("s:4:\"\xf4\x90\x80\x80\";"), "offset 5" },	/* > U+10FFFF */
	{ S("s:5:\"\xf8\x88\x80\x80\x80\";"), "offset 5" },
	{ S("s:2:\"a\xe2\";"), "string is not UTF-8 at offset 6" },
	{ S("s:3:\"a\xe2\x82\";"), "offset 6" },	/* cut short */
	{ S("a:1:{i:0;s:1:\"\xfe\";}"), "string is not UTF-8 at offset 14" },
	{ S("a:1:{s:1:\"\xff\";N;}"), "array key is not UTF-8 at offset 10" },
	/* first problem wins: the object comes before the bad length */
	{ S("a:2:{i:0;O:1:\"A\":0:{}i:1;s:9:\"x\";}"), "\"A\"" },
};
#define NUNSUP	(sizeof(unsupported) / sizeof(unsupported[0]))

START_TEST(test_unsupported)
{
	assert_fails(unsupported[_i].ser, unsupported[_i].serlen,
	    PHPSER_UNSUPPORTED, unsupported[_i].needle);
}
END_TEST

/* An object's header must itself be well formed to be named. */
START_TEST(test_bad_object_header)
{
	assert_fails(S("O:"), PHPSER_MALFORMED, NULL);
	assert_fails(S("O:8:\"stdClass"), PHPSER_MALFORMED,
	    "runs past the end");
	assert_fails(S("O:3:\"stdClass\":0:{}"), PHPSER_MALFORMED,
	    "not 3 bytes long");
	assert_fails(S("O:99999999999999:\"x\":0:{}"), PHPSER_MALFORMED,
	    "runs past the end");
	assert_fails(S("E:-1:\"x\";"), PHPSER_MALFORMED, NULL);
}
END_TEST

/*
 * Round trips.
 */

static const char *const round_trips[] = {
	"null", "true", "false", "0", "1", "-1", "9223372036854775807",
	"-9223372036854775808", "0.0", "-0.0", "0.1", "-2.5", "1e300",
	"5e-324", "1.7976931348623157e308", "0.30000000000000004",
	"123456789.123", "\"\"", "\"x\"", "\"\\u0000\\u0001\\u001f\"",
	"\"h\\u00e9llo \\u4e16\\u754c \\ud83d\\ude00\"",
	"\"\\\";}a:1:{\"", "[]", "[[]]", "[null,[true,[false,[0,[0.5]]]]]",
	"[1,2,3,4,5,6,7,8,9,10,11,12]", "{\"a\":1}", "{\"\":\"\"}",
	"{\"b\":1,\"a\":2,\"c\":3}", "{\"1\":\"a\"}", "{\"1\":\"a\",\"0\":\"b\"}",
	"{\"0\":\"a\",\"2\":\"b\"}", "{\"-0\":1,\"05\":2,\"+5\":3,\" 5\":4}",
	"{\"x\":{\"y\":{\"z\":[{\"w\":[]}]}}}",
"{\"-7\":[-7],\"7\":{\"7\":7}}",
	"[{\"k\":[1.5,\"s\",{\"n\":null}]},[],\"\"]",
};
#define NRT	(sizeof(round_trips) / sizeof(round_trips[0]))

START_TEST(test_round_trip)
{
	char err[256], *out, *a, *b;
	json_t *v, *w;
	size_t len;
	int code;

	v = load(round_trips[_i]);
	out = phpser_encode(v, &len, err, sizeof(err));
	ck_assert_msg(out != NULL, "%s: %s", round_trips[_i], err);
	w = decode(out, len, &code, err, sizeof(err));
	ck_assert_msg(w != NULL, "%s -> \"%s\": %s", round_trips[_i],
	    show(out, len), err);
	a = dump(v);
	b = dump(w);
	ck_assert_msg(strcmp(a, b) == 0 && json_equal(v, w),
	    "%s -> \"%s\" -> %s", a, show(out, len), b);
	if (json_is_real(v))
		ck_assert_uint_eq(bits_of(json_real_value(v)),
		    bits_of(json_real_value(w)));
	free(a);
	free(b);
	free(out);
	json_decref(v);
	json_decref(w);
}
END_TEST

/* What does not come back as it went: PHP has no empty object, and an
 * object keyed 0..n-1 in order is a list to PHP. */
START_TEST(test_round_trip_php_arrays)
{
	static const char *const pairs[][2] = {
		{ "{}", "[]" },
		{ "{\"0\":\"a\",\"1\":\"b\"}", "[\"a\",\"b\"]" },
		{ "{\"x\":{}}", "{\"x\":[]}" },
		{ "1.0", "1.0" },
		{ "[1.0,2]", "[1.0,2]" },
	};
	char err[256], *out;
	size_t i, len;
	json_t *v;

	for (i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
		v = load(pairs[i][0]);
		out = phpser_encode(v, &len, err, sizeof(err));
		ck_assert_ptr_nonnull(out);
		assert_decodes(out, len, pairs[i][1]);
		free(out);
		json_decref(v);
	}
}
END_TEST

/* Many doubles: encoded text reads back to the same bits. */
START_TEST(test_round_trip_doubles)
{
	char err[256], *out;
	uint64_t bits;
	json_t *v, *w;
	size_t len;
	int i, code;

	srandom(7);
	for (i = 0; i < 20000; i++) {
		bits = (uint64_t)random() << 42 ^ (uint64_t)random() << 21 ^
		    (uint64_t)random();
		if ((v = real_bits(bits)) == NULL)	/* INF or NAN */
			continue;
		out = phpser_encode(v, &len, err, sizeof(err));
		ck_assert_ptr_nonnull(out);
		w = decode(out, len, &code, err, sizeof(err));
		ck_assert_msg(w != NULL, "%s: %s", out, err);
		ck_assert_msg(bits_of(json_real_value(w)) == bits,
		    "%016" PRIx64 " -> %s -> %a", bits, out,
		    json_real_value(w));
		free(out);
		json_decref(v);
		json_decref(w);
	}
}
END_TEST

/* {"a\0b": "c\0d", "5\0": 1, "0\0": 2}, which jansson cannot parse. */
static json_t *
nul_keys(void)
{
	json_t *o = json_object();

	ck_assert_int_eq(json_object_setn_new(o, "a\0b", 3,
	    json_stringn("c\0d", 3)), 0);
	ck_assert_int_eq(json_object_setn_new(o, "5\0", 2, json_integer(1)), 0);
	ck_assert_int_eq(json_object_setn_new(o, "0\0", 2, json_integer(2)), 0);
	return o;
}

static const char nul_keys_ser[] =
    "a:3:{s:3:\"a\0b\";s:3:\"c\0d\";s:2:\"5\0\";i:1;s:2:\"0\0\";i:2;}";

/*
 * Keys with NUL encode binary safe (never taken for integers), but do not
 * decode: no JSON parser takes a NUL in an object key back, so a reply
 * carrying one would be unreadable (found by fuzz_request).
 */
START_TEST(test_nul_keys)
{
	char err[256], *out;
	json_t *v, *w;
	size_t len;
	int code;

	v = nul_keys();
	assert_encodes_v(v, nul_keys_ser, sizeof(nul_keys_ser) - 1);
	out = phpser_encode(v, &len, err, sizeof(err));
	ck_assert_ptr_nonnull(out);
	w = decode(out, len, &code, err, sizeof(err));
	ck_assert_ptr_null(w);
	ck_assert_int_eq(code, PHPSER_UNSUPPORTED);
	ck_assert_msg(strstr(err, "contains a NUL byte") != NULL, "%s", err);
	free(out);
	json_decref(v);
}
END_TEST

/*
 * Against PHP itself.
 */

static const char *
php_bin(void)
{
	const char *p = getenv("PHP");

	return p != NULL && *p != '\0' ? p : "php";
}

/*
 * php -r code [-- arg] with in on stdin: its stdout, NUL-terminated, or
 * NULL when php did not run or exited non-zero.
 */
static char *
run_php(const char *code, const char *arg, const void *in, size_t inlen,
    size_t *outlen)
{
	char tmpl[] = "/tmp/check_phpser.XXXXXX", *out = NULL, *p;
	size_t cap = 0, len = 0;
	int fd, pfd[2], status;
	ssize_t r;
	pid_t pid;

	if ((fd = mkstemp(tmpl)) < 0)
		return NULL;
	unlink(tmpl);
	if (inlen > 0 && write(fd, in, inlen) != (ssize_t)inlen) {
		close(fd);
		return NULL;
	}
	lseek(fd, 0, SEEK_SET);
	if (pipe(pfd) < 0) {
		close(fd);
		return NULL;
	}
	if ((pid = fork()) == 0) {
		dup2(fd, 0);
		dup2(pfd[1], 1);
		close(fd);
		close(pfd[0]);
		close(pfd[1]);
		execlp(php_bin(), php_bin(), "-d", "serialize_precision=-1",
		    "-d", "display_errors=stderr", "-d", "error_reporting=0",
		    "-r", code, arg ? "--" : (char *)NULL, arg, (char *)NULL);
		_exit(127);
	}
	close(fd);
	close(pfd[1]);
	for (;;) {
		if (cap - len < 4096) {
			cap = cap ? cap * 2 : 65536;
			if ((p = realloc(out, cap)) == NULL)
				break;
			out = p;
		}
		r = read(pfd[0], out + len, cap - len - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	close(pfd[0]);
	if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0 || out == NULL) {
		free(out);
		return NULL;
	}
	out[len] = '\0';
	if (outlen != NULL)
		*outlen = len;
	return out;
}

static int
php_available(void)
{
	char *out = run_php("echo PHP_MAJOR_VERSION >= 8 ? 'ok' : 'old';",
	    NULL, NULL, 0, NULL);
	int ok = out != NULL && strcmp(out, "ok") == 0;

	free(out);
	return ok;
}

/* JSON in, the PHP value unserialize() must give back (a PHP expression). */
static const struct {
	const char	*json;
	const char	*php;
} to_php[] = {
	{ "null", "NULL" },
	{ "true", "true" },
	{ "false", "false" },
	{ "42", "42" },
	{ "-9223372036854775808", "PHP_INT_MIN" },
	{ "9223372036854775807", "PHP_INT_MAX" },
	{ "0.1", "0.1" },
	{ "1.0", "1.0" },
	{ "-0.0", "-0.0" },
	{ "1e100", "1e100" },
	{ "1.5e-7", "1.5e-7" },
	{ "5e-324", "5e-324" },
	{ "0.30000000000000004", "0.1 + 0.2" },
	{ "\"\"", "''" },
	{ "\"h\\u00e9llo\"", "\"h\\u{e9}llo\"" },
	{ "\"a\\u0000b\"", "\"a\\0b\"" },
	{ "\"a\\\";}b\"", "'a\";}b'" },
	{ "\"\\ud83d\\ude00\"", "\"\\u{1F600}\"" },
	{ "[]", "[]" },
	{ "{}", "[]" },
	{ "[1,[2,[3]]]", "[1, [2, [3]]]" },
	{ "[1.5,\"x\",null,false]", "[1.5, 'x', null, false]" },
	{ "{\"a\":1,\"5\":2,\"-3\":3,\"05\":4,\"-0\":5,\"\":6}",
	    "['a' => 1, 5 => 2, -3 => 3, '05' => 4, '-0' => 5, '' => 6]" },
	{ "{\"9223372036854775808\":true,\"-9223372036854775808\":false}",
	    "['9223372036854775808' => true, PHP_INT_MIN => false]" },
	{ "{\"1\":\"a\",\"0\":\"b\"}", "[1 => 'a', 0 => 'b']" },
	{ "{\"0\":\"a\",\"1\":\"b\"}", "['a', 'b']" },
	{ "{\"x\":{\"y\":[null,false,\"z\"]},\"w\":{}}",
	    "['x' => ['y' => [null, false, 'z']], 'w' => []]" },
};
#define NTOPHP	(sizeof(to_php) / sizeof(to_php[0]))

/* unserialize() our text, and compare var_export with the expected. */
static const char php_check[] =
    "$s = stream_get_contents(STDIN);"
    "$v = unserialize($s);"
    "if ($v === false && $s !== 'b:0;') { echo 'unserialize failed'; exit; }"
    "$e = eval('return ' . $argv[1] . ';');"
    "$a = var_export($v, true); $b = var_export($e, true);"
    "echo $a === $b ? 'same' : \"got $a, want $b\";";

START_TEST(test_php_unserializes)
{
	char err[256], *out, *res;
	json_t *v;
	size_t len;

	v = load(to_php[_i].json);
	out = phpser_encode(v, &len, err, sizeof(err));
	ck_assert_ptr_nonnull(out);
	res = run_php(php_check, to_php[_i].php, out, len, NULL);
	ck_assert_msg(res != NULL, "php did not run");
	ck_assert_msg(strcmp(res, "same") == 0, "%s -> \"%s\": %s",
	    to_php[_i].json, show(out, len), res);
	free(res);
	free(out);
	json_decref(v);
}
END_TEST

/* 64 levels deep, as PHP sees it. */
START_TEST(test_php_unserializes_deep)
{
	char err[256], *out, *res, expr[512];
	json_t *v;
	size_t len, o = 0;
	int i;

	v = nest(64, 0);
	out = phpser_encode(v, &len, err, sizeof(err));
	ck_assert_ptr_nonnull(out);
	for (i = 0; i < 64; i++)
		expr[o++] = '[';
	memcpy(expr + o, "null", 4);
	o += 4;
	for (i = 0; i < 64; i++)
		expr[o++] = ']';
	expr[o] = '\0';
	res = run_php(php_check, expr, out, len, NULL);
	ck_assert_ptr_nonnull(res);
	ck_assert_str_eq(res, "same");
	free(res);
	free(out);
	json_decref(v);
}
END_TEST

/* Keys with NUL, as PHP sees them, and as PHP writes them. */
START_TEST(test_php_nul_keys)
{
	char err[256], *out, *res;
	json_t *v, *w;
	size_t len;
	int code;

	v = nul_keys();
	out = phpser_encode(v, &len, err, sizeof(err));
	ck_assert_ptr_nonnull(out);
	res = run_php(php_check, "[\"a\\0b\" => \"c\\0d\", \"5\\0\" => 1, "
	    "\"0\\0\" => 2]", out, len, NULL);
	ck_assert_ptr_nonnull(res);
	ck_assert_str_eq(res, "same");
	free(res);
	free(out);

	out = run_php("echo serialize([\"a\\0b\" => \"c\\0d\", \"5\\0\" => 1, "
	    "\"0\\0\" => 2]);", NULL, NULL, 0, &len);
	ck_assert_ptr_nonnull(out);
	ck_assert_uint_eq(len, sizeof(nul_keys_ser) - 1);
	ck_assert_mem_eq(out, nul_keys_ser, len);
	/* what PHP wrote is refused, not turned into unreadable JSON */
	w = decode(out, len, &code, err, sizeof(err));
	ck_assert_ptr_null(w);
	ck_assert_int_eq(code, PHPSER_UNSUPPORTED);
	free(out);
	json_decref(v);
}
END_TEST

/* A PHP expression, serialized by PHP, and the JSON we must decode. */
static const struct {
	const char	*php;
	const char	*json;
} from_php[] = {
	{ "null", "null" },
	{ "true", "true" },
	{ "false", "false" },
	{ "42", "42" },
	{ "PHP_INT_MAX", "9223372036854775807" },
	{ "PHP_INT_MIN", "-9223372036854775808" },
	{ "0.1", "0.1" },
	{ "1.0", "1.0" },
	{ "-0.0", "-0.0" },
	{ "1e100", "1e100" },
	{ "1.5e-7", "1.5e-7" },
	{ "PHP_FLOAT_MAX", "1.7976931348623157e308" },
	{ "PHP_FLOAT_MIN", "2.2250738585072014e-308" },
	{ "PHP_FLOAT_EPSILON", "2.220446049250313e-16" },
	{ "''", "\"\"" },
	{ "\"h\\u{e9}llo\"", "\"h\\u00e9llo\"" },
	{ "\"a\\0b\"", "\"a\\u0000b\"" },
	{ "'a\";}b'", "\"a\\\";}b\"" },
	{ "[]", "[]" },
	{ "[1, 2, 3]", "[1,2,3]" },
	{ "[1 => 'a', 0 => 'b']", "{\"1\":\"a\",\"0\":\"b\"}" },
	{ "[3 => 'x']", "{\"3\":\"x\"}" },
	{ "['a' => 1, '5' => 2, '05' => 3]",
	    "{\"a\":1,\"5\":2,\"05\":3}" },
	{ "array_values([5 => 1, 7 => 2])", "[1,2]" },
	{ "(function () { $a = [1, 2, 3]; unset($a[1]); return $a; })()",
	    "{\"0\":1,\"2\":3}" },
	{ "(function () { $a = ['x' => 1, 'y' => 2]; $a['x'] = 3; "
	    "return $a; })()", "{\"x\":3,\"y\":2}" },
	{ "[[[]], ['k' => ['n' => null]]]", "[[[]],{\"k\":{\"n\":null}}]" },
	{ "[PHP_INT_MIN => 1, -1 => 2]",
	    "{\"-9223372036854775808\":1,\"-1\":2}" },
	{ "str_repeat(\"\\0\\1\", 100)", NULL },	/* checked below */
};
#define NFROMPHP	(sizeof(from_php) / sizeof(from_php[0]))

START_TEST(test_php_serializes)
{
	char code[512], err[256], *out;
	json_t *v;
	size_t len;
	int i, c;

	snprintf(code, sizeof(code), "echo serialize(%s);", from_php[_i].php);
	out = run_php(code, NULL, NULL, 0, &len);
	ck_assert_msg(out != NULL, "php failed on %s", from_php[_i].php);
	if (from_php[_i].json != NULL) {
		assert_decodes(out, len, from_php[_i].json);
		if (strcmp(from_php[_i].php, "-0.0") == 0) {
			v = decode(out, len, &c, err, sizeof(err));
			ck_assert(signbit(json_real_value(v)));
			json_decref(v);
		}
	} else {
		v = decode(out, len, &c, err, sizeof(err));
		ck_assert_msg(v != NULL, "%s", err);
		ck_assert_uint_eq(json_string_length(v), 200);
		for (i = 0; i < 200; i++)
			ck_assert_int_eq(json_string_value(v)[i], i % 2);
		json_decref(v);
	}
	free(out);
}
END_TEST

/* What PHP serializes that JSON cannot carry. */
static const struct {
	const char	*php;
	const char	*needle;
} from_php_unsup[] = {
	{ "new stdClass", "\"stdClass\"" },
	{ "['o' => new stdClass]", "\"stdClass\" at offset 13" },
	{ "new ArrayObject([1])", "\"ArrayObject\"" },
	{ "new DateTime('@0')", "\"DateTime\"" },
	{ "(function () { eval('enum Suit { case Hearts; }'); "
	    "return Suit::Hearts; })()", "\"Suit:Hearts\"" },
	{ "(function () { $a = [1]; $a[1] = &$a[0]; return $a; })()",
	    "reference" },
	{ "(function () { $o = new stdClass; return [$o, $o]; })()",
	    "stdClass" },
	{ "INF", "INF" },
	{ "-INF", "-INF" },
	{ "NAN", "NAN" },
	{ "[1.0, NAN]", "NAN at offset 17" },
	{ "\"\\xff\"", "not UTF-8 at offset 5" },
	{ "[\"ok\", \"b\\xc3\"]", "not UTF-8 at offset 28" },
	{ "[\"\\xe9t\\xe9\" => 1]", "array key is not UTF-8 at offset 10" },
};
#define NFROMPHPU	(sizeof(from_php_unsup) / sizeof(from_php_unsup[0]))

START_TEST(test_php_serializes_unsupported)
{
	char code[512], *out;
	size_t len;

	snprintf(code, sizeof(code), "echo serialize(%s);",
	    from_php_unsup[_i].php);
	out = run_php(code, NULL, NULL, 0, &len);
	ck_assert_msg(out != NULL, "php failed on %s", from_php_unsup[_i].php);
	assert_fails(out, len, PHPSER_UNSUPPORTED, from_php_unsup[_i].needle);
	free(out);
}
END_TEST

/*
 * Doubles PHP picks: every power of two and its neighbours, powers of
 * ten and theirs, random bit patterns and random short decimals. Each
 * line is the bits in hex and PHP's serialize() of the double.
 */
static const char php_doubles[] =
    "mt_srand(4242);"
    "function emit($d) { $d = (float)$d; if (!is_finite($d)) return;"
    "  echo bin2hex(pack('E', $d)), ' ', serialize($d), \"\\n\"; }"
    "function near($d) { $b = unpack('J', pack('E', $d))[1];"
    "  emit($d); emit(-$d); emit(unpack('E', pack('J', $b + 1))[1]);"
    "  if ($b > 0) emit(unpack('E', pack('J', $b - 1))[1]); }"
    "for ($e = -1074; $e <= 1023; $e++) near(2.0 ** $e);"
    "for ($e = -324; $e <= 308; $e++) { near((float)\"1e$e\");"
    "  emit((float)\"5e$e\"); emit((float)\"1.5e$e\");"
    "  emit((float)\"9.999999999999999e$e\"); }"
    "for ($i = 0; $i < 20000; $i++) emit(unpack('E', random_bytes(8))[1]);"
    "for ($i = 0; $i < 10000; $i++) {"
    "  emit(mt_rand() / 10 ** mt_rand(0, 12));"
    "  emit(mt_rand(1, 99999) * 10.0 ** mt_rand(-30, 30)); }";

START_TEST(test_php_doubles)
{
	char *out, *line, *next, *sp, err[256], *enc;
	size_t len, elen, n = 0;
	uint64_t bits;
	json_t *v;
	int code;

	out = run_php(php_doubles, NULL, NULL, 0, &len);
	ck_assert_ptr_nonnull(out);
	for (line = out; *line != '\0'; line = next) {
		next = strchr(line, '\n');
		ck_assert_ptr_nonnull(next);
		*next++ = '\0';
		sp = strchr(line, ' ');
		ck_assert_ptr_nonnull(sp);
		*sp++ = '\0';
		bits = strtoull(line, NULL, 16);

		v = real_bits(bits);
		ck_assert_ptr_nonnull(v);
		enc = phpser_encode(v, &elen, err, sizeof(err));
		ck_assert_ptr_nonnull(enc);
		ck_assert_msg(strcmp(enc, sp) == 0,
		    "%a (%s): PHP prints %s, we print %s", json_real_value(v),
		    line, sp, enc);
		free(enc);
		json_decref(v);

		v = decode(sp, strlen(sp), &code, err, sizeof(err));
		ck_assert_msg(v != NULL, "%s: %s", sp, err);
		ck_assert_msg(bits_of(json_real_value(v)) == bits,
		    "%s decoded to %a", sp, json_real_value(v));
		json_decref(v);
		n++;
	}
	ck_assert_uint_gt(n, 40000);
	free(out);
}
END_TEST

static Suite *
phpser_suite(int with_php)
{
	Suite *s = suite_create("phpser");
	TCase *tc;

	tc = tcase_create("encode");
	tcase_add_loop_test(tc, test_encode_table, 0, NENC);
	tcase_add_loop_test(tc, test_encode_keys, 0, NKEY);
	tcase_add_loop_test(tc, test_encode_floats, 0, NFLOAT);
	tcase_add_test(tc, test_encode_depth);
	tcase_add_test(tc, test_encode_binary_string);
	suite_add_tcase(s, tc);

	tc = tcase_create("decode");
	tcase_add_loop_test(tc, test_decode_table, 0, NDEC);
	tcase_add_loop_test(tc, test_decode_floats, 0, NFLOAT);
	tcase_add_test(tc, test_decode_negative_zero);
	tcase_add_test(tc, test_decode_binary_string);
	tcase_add_test(tc, test_decode_api);
	suite_add_tcase(s, tc);

	tc = tcase_create("malformed");
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, test_malformed, 0, NMAL);
	tcase_add_loop_test(tc, test_truncated, 0, NCORPUS);
	tcase_add_test(tc, test_mutations);
	tcase_add_test(tc, test_decode_depth);
	suite_add_tcase(s, tc);

	tc = tcase_create("unsupported");
	tcase_add_loop_test(tc, test_unsupported, 0, NUNSUP);
	tcase_add_test(tc, test_bad_object_header);
	suite_add_tcase(s, tc);

	tc = tcase_create("round_trip");
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, test_round_trip, 0, NRT);
	tcase_add_test(tc, test_round_trip_php_arrays);
	tcase_add_test(tc, test_round_trip_doubles);
	tcase_add_test(tc, test_nul_keys);
	suite_add_tcase(s, tc);

	if (with_php) {
		tc = tcase_create("php");
		tcase_set_timeout(tc, 120);
		tcase_add_loop_test(tc, test_php_unserializes, 0, NTOPHP);
		tcase_add_test(tc, test_php_unserializes_deep);
		tcase_add_test(tc, test_php_nul_keys);
		tcase_add_loop_test(tc, test_php_serializes, 0, NFROMPHP);
		tcase_add_loop_test(tc, test_php_serializes_unsupported, 0,
		    NFROMPHPU);
		tcase_add_test(tc, test_php_doubles);
		suite_add_tcase(s, tc);
	}
	return s;
}

int
main(void)
{
	SRunner *sr;
	int failed, with_php = php_available();

	if (!with_php)
		fprintf(stderr, "check_phpser: no PHP 8 at \"%s\" ($PHP): "
		    "PHP cross-checks left out\n", php_bin());
	sr = srunner_create(phpser_suite(with_php));
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
