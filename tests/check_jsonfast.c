/*
 * check_jsonfast.c - flat request lines parsed without jansson's lexer
 * (load_flat in src/jsonfast.c).
 *
 * The promise: whatever load_flat takes, jansson takes too, and the
 * members are the ones jansson builds, in the same order (compared as
 * objects, by load_flat_vs_jansson); whatever it does not take it
 * leaves alone, so jansson decides. Each case is
 * checked against jansson itself, and random mutations of the hot shapes
 * are compared the same way. The data_b64 path for big lines is tested in
 * check_proto.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "daemon.h"

/* main.c's globals, which libdaemon refers to */
struct event_base *base;
const struct config *cfg;

static json_t *
jansson(const char *line, size_t len)
{
	json_error_t e;

	return json_loadb(line, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES,
	    &e);
}

/* load_flat leaves the line to jansson (0) or takes it to the values
 * jansson makes of it (1); a difference fails the test. */
static int
agrees(const char *line, size_t len)
{
	char why[2048];
	int rc = load_flat_vs_jansson(line, len, why, sizeof(why));

	ck_assert_msg(rc >= 0, "%s", why);
	return rc;
}

static void
taken(const char *line)
{
	ck_assert_msg(agrees(line, strlen(line)), "load_flat left to "
	    "jansson: %s", line);
}

static void
left(const char *line)
{
	ck_assert_msg(agrees(line, strlen(line)) == 0, "load_flat took: %s",
	    line);
}

START_TEST(test_hot_shapes_taken)
{
	uint64_t before = proto_flat_lines;

	taken("{\"op\":\"queue.send\",\"queue\":\"jobs\",\"type\":1,"
	    "\"text\":\"hello world 0001\"}");
	taken("{\"id\":7,\"op\":\"queue.send\",\"type\":2,\"data_b64\":"
	    "\"AAECAw==\"}");
	taken("{\"id\":\"req-1\",\"op\":\"queue.recv\",\"queue\":\"jobs\","
	    "\"type\":-5,\"except\":false,\"timeout_ms\":250,\"ack\":true}");
	taken("{\"op\":\"shm.get\",\"name\":\"cache\",\"var\":1,"
	    "\"encoding\":\"base64\"}");
	taken("{\"op\":\"hello\"}");
	taken("{\"op\":\"stats\",\"x\":null}");
	taken("{}");
	taken(" \t{ \"op\" :\t\"hello\" ,\r\n\"id\" : 1 }\r\n ");
	ck_assert_uint_eq(proto_flat_lines - before, 8);
}
END_TEST

START_TEST(test_integers)
{
	taken("{\"a\":0}");
	taken("{\"a\":-0}");
	taken("{\"a\":-1}");
	taken("{\"a\":123456789012345678}");	/* 18 digits */
	taken("{\"a\":-999999999999999999}");
	left("{\"a\":1234567890123456789}");	/* 19: jansson's call */
	left("{\"a\":9223372036854775807}");
	left("{\"a\":99999999999999999999999}");	/* too big for jansson */
	left("{\"a\":01}");
	left("{\"a\":-01}");
	left("{\"a\":-}");
	left("{\"a\":--1}");
	left("{\"a\":+1}");
	left("{\"a\":1.0}");
	left("{\"a\":1e3}");
	left("{\"a\":1E3}");
	left("{\"a\":0x10}");
	left("{\"a\":1a}");
}
END_TEST

START_TEST(test_strings)
{
	char line[64];
	int c;

	taken("{\"a\":\"\"}");
	taken("{\"\":\"empty key\"}");
	taken("{\"a\":\" !#$%&'()*+,-./:;<=>?@[]^_`{|}~\"}");
	taken("{\"a\":\"\x7f\"}");		/* DEL is not a control */
	left("{\"a\":\"\\n\"}");		/* escapes: jansson's */
	left("{\"a\":\"\\u0041\"}");
	left("{\"a\\\"\":1}");
	/* UTF-8 in values, valid by jansson's rules; keys stay ASCII */
	taken("{\"a\":\"caf\xc3\xa9\"}");
	taken("{\"a\":\"\xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf\"}");
	taken("{\"a\":\"\xef\xbf\xbf\"}");		/* U+FFFF */
	left("{\"caf\xc3\xa9\":1}");
	left("{\"a\":\"\xff\"}");
	left("{\"a\":\"\xc3\"}");			/* cut short */
	left("{\"a\":\"\xc3x\"}");
	left("{\"a\":\"\xc0\xaf\"}");		/* overlong */
	left("{\"a\":\"\xe0\x80\xaf\"}");
	left("{\"a\":\"\xed\xa0\x80\"}");		/* a surrogate */
	left("{\"a\":\"\xf4\x90\x80\x80\"}");	/* over U+10FFFF */
	left("{\"a\":\"\x80\"}");			/* a lone continuation */
	left("{\"a\":\"\xc3\xa9\\n\"}");		/* and an escape */
	left("{\"a\":\"\x01\"}");
	left("{\"a\":\"\t\"}");
	left("{\"a\":\"unterminated}");
	left("{\"a\":'single'}");
	/* every byte that is not plain ASCII (alone: never UTF-8), in a
	 * value and in a key */
	for (c = 1; c < 256; c++) {
		if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\')
			continue;
		snprintf(line, sizeof(line), "{\"a\":\"x%cy\"}", c);
		left(line);
		snprintf(line, sizeof(line), "{\"x%cy\":1}", c);
		left(line);
	}
	/* a NUL byte anywhere */
	ck_assert_int_eq(agrees("{\"a\":\"x\0y\"}", 11), 0);
	ck_assert_int_eq(agrees("{\"a\":1}\0", 8), 0);
}
END_TEST

START_TEST(test_words)
{
	taken("{\"a\":true,\"b\":false,\"c\":null}");
	left("{\"a\":tru}");
	left("{\"a\":truex}");
	left("{\"a\":True}");
	left("{\"a\":nul}");
	left("{\"a\":falsey}");
}
END_TEST

START_TEST(test_structure_left_to_jansson)
{
	left("");
	left("   ");
	left("[]");
	left("1");
	left("\"op\"");
	left("{");
	left("{\"a\"}");
	left("{\"a\":}");
	left("{\"a\" 1}");
	left("{\"a\":1,}");
	left("{,\"a\":1}");
	left("{\"a\":1 \"b\":2}");
	left("{\"a\":1}}");
	left("{\"a\":1} x");
	left("{\"a\":1}{}");
	left("{a:1}");
	left("{\"a\":{}}");			/* nesting: jansson's */
	left("{\"a\":[1]}");
	left("{\"a\":1,\"a\":2}");		/* duplicates: jansson's error */
	left("{\"op\":\"x\",\"id\":1,\"op\":\"x\"}");
	left("{\"a\":1}\f");			/* not JSON whitespace */
	left("\v{\"a\":1}");
}
END_TEST

/* At most max members; a longer line is left whole, nothing kept. */
START_TEST(test_member_limit)
{
	struct member m[4];
	const char *four = "{\"a\":1,\"b\":\"x\",\"c\":true,\"d\":null}";
	const char *five = "{\"a\":1,\"b\":\"x\",\"c\":true,\"d\":null,"
	    "\"e\":\"y\"}";
	int n;

	n = load_flat(four, strlen(four), m, 4);
	ck_assert_int_eq(n, 4);
	ck_assert_int_eq(m[0].klen, 1);
	ck_assert_int_eq(memcmp(m[3].key, "d", 1), 0);
	ck_assert(json_is_null(m[3].v));
	ck_assert_str_eq(json_string_value(m[1].v), "x");
	members_free(m, n);
	ck_assert_int_eq(load_flat(five, strlen(five), m, 4), -1);
	taken(five);
}
END_TEST

START_TEST(test_off_switch)
{
	proto_flat = 0;
	left("{\"op\":\"hello\"}");
	proto_flat = 1;
	taken("{\"op\":\"hello\"}");
}
END_TEST

/* xorshift64: the same mutations every run */
static uint64_t rng = 0x2545F4914F6CDD1Dull;

static unsigned
rnd(unsigned n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (unsigned)(rng % n);
}

/*
 * Mutations of the hot shapes: bytes replaced, inserted and deleted,
 * drawn mostly from JSON's own punctuation, digits and words, so that
 * many mutants are still valid JSON in or near the subset. Every one
 * must agree with jansson; enough must be taken and enough left that the
 * comparison means something.
 */
START_TEST(test_mutations_agree)
{
	static const char *seeds[] = {
		"{\"id\":12,\"op\":\"queue.send\",\"queue\":\"jobs\","
		    "\"type\":1,\"text\":\"hello world 0001\"}",
		"{\"op\":\"queue.recv\",\"type\":-3,\"except\":true,"
		    "\"timeout_ms\":0}",
		"{ \"op\" : \"shm.put\" , \"var\" : 0, \"value\" : null }",
		"{\"op\":\"queue.send\",\"type\":1,\"text\":\"\xc3\xa9t\xc3\xa9 "
		    "\xe2\x82\xac \xf0\x9f\x98\x80\"}",
	};
	static const char alphabet[] = "{}[]:,\"\\ \t\r\n-+.eE0123456789"
	    "truefalsnl\x7f\x01\x80\x82\x8f\x90\x98\x9f\xa0\xa9\xac"
	    "\xaf\xbf\xc0\xc3\xe0\xe2\xed\xef\xf0\xf4\xff";
	char line[256];
	size_t len, k;
	int i, m, took = 0, jok = 0, refused = 0;
	json_t *j;

	for (i = 0; i < 60000; i++) {
		const char *s = seeds[rnd(sizeof(seeds) / sizeof(seeds[0]))];

		len = strlen(s);
		memcpy(line, s, len);
		for (m = 1 + (int)rnd(3); m > 0; m--) {
			k = rnd((unsigned)len + 1);
			switch (rnd(3)) {
			case 0:		/* replace */
				if (k < len)
					line[k] = rnd(4) ? alphabet[rnd(
					    sizeof(alphabet) - 1)] :
					    (char)rnd(256);
				break;
			case 1:		/* insert */
				if (len + 1 >= sizeof(line))
					break;
				memmove(line + k + 1, line + k, len - k);
				line[k] = alphabet[rnd(sizeof(alphabet) - 1)];
				len++;
				break;
			default:	/* delete */
				if (k < len) {
					memmove(line + k, line + k + 1,
					    len - k - 1);
					len--;
				}
			}
		}
		took += agrees(line, len);
		if ((j = jansson(line, len)) != NULL) {
			jok++;
			json_decref(j);
		} else
			refused++;
	}
	/* both outcomes well represented, or the comparison is idle */
	ck_assert_int_gt(took, 10000);
	ck_assert_int_gt(refused, 10000);
	ck_assert_int_ge(jok, took);
}
END_TEST

static Suite *
jsonfast_suite(void)
{
	Suite *s = suite_create("jsonfast");
	TCase *tc = tcase_create("flat");

	tcase_add_test(tc, test_hot_shapes_taken);
	tcase_add_test(tc, test_integers);
	tcase_add_test(tc, test_strings);
	tcase_add_test(tc, test_words);
	tcase_add_test(tc, test_structure_left_to_jansson);
	tcase_add_test(tc, test_member_limit);
	tcase_add_test(tc, test_off_switch);
	tcase_add_test(tc, test_mutations_agree);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(jsonfast_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
