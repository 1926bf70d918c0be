/*
 * check_key.c - ipcb_key_parse (src/lib/key.c): decimal, 0x hex and
 * ftok:PATH:C, 32-bit keys only, never 0 (IPC_PRIVATE) or -1 (failed ftok).
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
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

#define SENTINEL	((key_t)0x5a5a5a5a)

static char tmpdir[64];
static char tmpfile_path[PATH_MAX];
static char colon_path[PATH_MAX];

/* The directory: made in the runner process, removed there even when a
 * forked test failed before its checked teardown. */
static void
dir_setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/check_key.XXXXXX");
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		exit(1);
	}
	snprintf(tmpfile_path, sizeof(tmpfile_path), "%s/keyfile", tmpdir);
	/* a path with a colon in it: the id is after the last colon */
	snprintf(colon_path, sizeof(colon_path), "%s/a:b", tmpdir);
}

static void
dir_teardown(void)
{
	unlink(colon_path);
	unlink(tmpfile_path);
	rmdir(tmpdir);
}

static void
ftok_setup(void)
{
	int fd;

	fd = open(tmpfile_path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
	fd = open(colon_path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
}

static void
ftok_teardown(void)
{
	ck_assert_int_eq(unlink(colon_path), 0);
	ck_assert_int_eq(unlink(tmpfile_path), 0);
}

/* Parse spec, which must succeed; the error buffer stays untouched. */
static key_t
parse_ok(const char *spec)
{
	char err[256] = "untouched";
	key_t k = SENTINEL;
	int rc;

	rc = ipcb_key_parse(spec, &k, err, sizeof(err));
	ck_assert_msg(rc == 0, "ipcb_key_parse(\"%s\") = %d: %s", spec, rc,
	    err);
	return k;
}

/* Parse spec, which must fail with -EINVAL, an error text and *key kept. */
static void
parse_fail(const char *spec, const char *errpart)
{
	char err[256];
	key_t k = SENTINEL;
	int rc;

	memset(err, 0, sizeof(err));
	rc = ipcb_key_parse(spec, &k, err, sizeof(err));
	ck_assert_msg(rc == -EINVAL, "ipcb_key_parse(\"%s\") = %d (key "
	    "0x%08x), want -EINVAL", spec ? spec : "(null)", rc, (unsigned)k);
	ck_assert_msg(k == SENTINEL, "\"%s\": key written on failure", spec);
	ck_assert_msg(err[0] != '\0', "\"%s\": no error text", spec);
	if (errpart != NULL)
		ck_assert_msg(strstr(err, errpart) != NULL,
		    "\"%s\": error \"%s\" does not contain \"%s\"", spec, err,
		    errpart);
}

START_TEST(test_decimal)
{
	ck_assert_int_eq(parse_ok("1"), 1);
	ck_assert_int_eq(parse_ok("1234"), 1234);
	ck_assert_int_eq(parse_ok("1768972801"), 0x69706201);
	ck_assert_int_eq(parse_ok("2147483647"), INT32_MAX);
	/* decimal, not octal */
	ck_assert_int_eq(parse_ok("010"), 10);
}
END_TEST

START_TEST(test_hex)
{
	ck_assert_int_eq(parse_ok("0x69706201"), 0x69706201);
	ck_assert_int_eq(parse_ok("0X69706201"), 0x69706201);
	ck_assert_int_eq(parse_ok("0x7fffffff"), INT32_MAX);
	ck_assert_int_eq(parse_ok("0xABCDEF"), 0xabcdef);
	ck_assert_int_eq(parse_ok("0xabcdef"), 0xabcdef);
	ck_assert_int_eq(parse_ok("0x1"), 1);
	ck_assert_int_eq(parse_ok("0x0000000000000010"), 16);
}
END_TEST

/* Above 0x7fffffff: the same 32 bits as the kernel's int key. */
START_TEST(test_above_int32_max)
{
	ck_assert_int_eq(parse_ok("0xdeadbeef"), (key_t)(int32_t)0xdeadbeefU);
	ck_assert_int_eq(parse_ok("0xdeadbeef"), -559038737);
	ck_assert_int_eq(parse_ok("0xDEADBEEF"), -559038737);
	ck_assert_int_eq(parse_ok("3735928559"), -559038737);
	ck_assert_int_eq(parse_ok("0x80000000"), INT32_MIN);
	ck_assert_int_eq(parse_ok("2147483648"), INT32_MIN);
	ck_assert_int_eq(parse_ok("0xfffffffe"), -2);
	ck_assert_int_eq(parse_ok("4294967294"), -2);
}
END_TEST

START_TEST(test_negative_decimal)
{
	ck_assert_int_eq(parse_ok("-5"), -5);
	ck_assert_int_eq(parse_ok("-2"), -2);
	ck_assert_int_eq(parse_ok("-559038737"), (key_t)(int32_t)0xdeadbeefU);
	ck_assert_int_eq(parse_ok("-2147483648"), INT32_MIN);
}
END_TEST

START_TEST(test_reject_special_keys)
{
	parse_fail("0", "IPC_PRIVATE");
	parse_fail("0x0", "IPC_PRIVATE");
	parse_fail("0x00000000", "IPC_PRIVATE");
	parse_fail("-0", "IPC_PRIVATE");
	parse_fail("-1", "-1");
	parse_fail("0xffffffff", "-1");
	parse_fail("0xFFFFFFFF", "-1");
	parse_fail("4294967295", "-1");
}
END_TEST

START_TEST(test_reject_over_32_bits)
{
	parse_fail("0x100000000", "32 bits");
	parse_fail("4294967296", "32 bits");
	parse_fail("0x7fffffffffffffff", "32 bits");
	parse_fail("-2147483649", "32 bits");
	parse_fail("-4294967295", "32 bits");
	parse_fail("99999999999999999999999", "32 bits");
	parse_fail("0xffffffffffffffffffff", "32 bits");
	parse_fail("-99999999999999999999999", "32 bits");
}
END_TEST

START_TEST(test_reject_junk)
{
	parse_fail("12abc", "12abc");
	parse_fail("12 ", NULL);
	parse_fail("0x12g", NULL);
	parse_fail("0x10 ", NULL);
	parse_fail("1e3", NULL);
	parse_fail("1.5", NULL);
	parse_fail("5\n", NULL);
	parse_fail("abc", "abc");
	parse_fail("0x", NULL);
	parse_fail("0X", NULL);
	parse_fail("0x-5", NULL);
	parse_fail("0x+5", NULL);
	parse_fail("-0x5", NULL);
	parse_fail("00x10", NULL);
	parse_fail("x10", NULL);
	parse_fail("-", NULL);
	parse_fail("ftok", NULL);
}
END_TEST

START_TEST(test_reject_empty_and_sign)
{
	parse_fail("", "empty");
	parse_fail(NULL, "empty");
	parse_fail("+5", "+5");
	parse_fail("+0x5", NULL);
	parse_fail(" 5", NULL);
	parse_fail("\t5", NULL);
}
END_TEST

/*
 * Only the documented spellings: strtoll after the "0x" prefix must not
 * accept a second "0x" or leading whitespace, and decimal must not accept
 * leading whitespace other than ' ' and '\t' either. These fail today.
 */
START_TEST(test_reject_hidden_prefix_and_space)
{
	parse_fail("0x0x10", NULL);
	parse_fail("0x0X10", NULL);
	parse_fail("0x 10", NULL);
	parse_fail("0x\t10", NULL);
	parse_fail("\n5", NULL);
	parse_fail("\v5", NULL);
}
END_TEST

START_TEST(test_error_buffer_optional)
{
	key_t k = SENTINEL;
	char err[8];

	ck_assert_int_eq(ipcb_key_parse("bogus", &k, NULL, 0), -EINVAL);
	ck_assert_int_eq(ipcb_key_parse("bogus", &k, err, 0), -EINVAL);
	ck_assert_int_eq(k, SENTINEL);
	/* truncated, but terminated */
	memset(err, 'x', sizeof(err));
	ck_assert_int_eq(ipcb_key_parse("bogus key", &k, err, sizeof(err)),
	    -EINVAL);
	ck_assert_ptr_nonnull(memchr(err, '\0', sizeof(err)));
	ck_assert_int_eq(ipcb_key_parse("0x10", &k, NULL, 0), 0);
	ck_assert_int_eq(k, 16);
}
END_TEST

START_TEST(test_ftok_matches_libc)
{
	char spec[PATH_MAX + 16];
	key_t want;

	want = ftok(tmpfile_path, 'C');
	ck_assert_int_ne(want, -1);
	snprintf(spec, sizeof(spec), "ftok:%s:C", tmpfile_path);
	ck_assert_int_eq(parse_ok(spec), want);

	/* a different project id is a different key */
	want = ftok(tmpfile_path, 'A');
	snprintf(spec, sizeof(spec), "ftok:%s:A", tmpfile_path);
	ck_assert_int_eq(parse_ok(spec), want);
	ck_assert_int_ne(want, ftok(tmpfile_path, 'C'));

	/* ftok uses the id's 8 bits: a byte above 0x7f too */
	want = ftok(tmpfile_path, 0xe9);
	snprintf(spec, sizeof(spec), "ftok:%s:\xe9", tmpfile_path);
	ck_assert_int_eq(parse_ok(spec), want);
}
END_TEST

START_TEST(test_ftok_path_with_colon)
{
	char spec[PATH_MAX + 16];

	snprintf(spec, sizeof(spec), "ftok:%s:z", colon_path);
	ck_assert_int_eq(parse_ok(spec), ftok(colon_path, 'z'));
}
END_TEST

START_TEST(test_ftok_missing_file)
{
	char spec[PATH_MAX + 32], missing[PATH_MAX];

	snprintf(missing, sizeof(missing), "%s/no-such-file", tmpdir);
	snprintf(spec, sizeof(spec), "ftok:%s:A", missing);
	parse_fail(spec, missing);
	parse_fail(spec, strerror(ENOENT));
}
END_TEST

START_TEST(test_ftok_bad_syntax)
{
	char spec[PATH_MAX + 16];

	snprintf(spec, sizeof(spec), "ftok:%s:", tmpfile_path);
	parse_fail(spec, "one character");		/* no id */
	snprintf(spec, sizeof(spec), "ftok:%s:AB", tmpfile_path);
	parse_fail(spec, "one character");		/* two-char id */
	snprintf(spec, sizeof(spec), "ftok:%s", tmpfile_path);
	parse_fail(spec, "ftok:PATH:C");		/* no ":C" at all */
	parse_fail("ftok::A", "ftok:PATH:C");		/* no path */
	parse_fail("ftok:", "ftok:PATH:C");
}
END_TEST

START_TEST(test_ftok_path_too_long)
{
	char spec[6000];

	memcpy(spec, "ftok:/", 6);
	memset(spec + 6, 'a', 5000);
	memcpy(spec + 5006, ":A", 3);
	parse_fail(spec, "too long");
}
END_TEST

static Suite *
key_suite(void)
{
	Suite *s = suite_create("key");
	TCase *tc;

	tc = tcase_create("numeric");
	tcase_add_test(tc, test_decimal);
	tcase_add_test(tc, test_hex);
	tcase_add_test(tc, test_above_int32_max);
	tcase_add_test(tc, test_negative_decimal);
	tcase_add_test(tc, test_reject_special_keys);
	tcase_add_test(tc, test_reject_over_32_bits);
	tcase_add_test(tc, test_reject_junk);
	tcase_add_test(tc, test_reject_empty_and_sign);
	tcase_add_test(tc, test_reject_hidden_prefix_and_space);
	tcase_add_test(tc, test_error_buffer_optional);
	suite_add_tcase(s, tc);

	tc = tcase_create("ftok");
	tcase_add_unchecked_fixture(tc, dir_setup, dir_teardown);
	tcase_add_checked_fixture(tc, ftok_setup, ftok_teardown);
	tcase_add_test(tc, test_ftok_matches_libc);
	tcase_add_test(tc, test_ftok_path_with_colon);
	tcase_add_test(tc, test_ftok_missing_file);
	tcase_add_test(tc, test_ftok_bad_syntax);
	tcase_add_test(tc, test_ftok_path_too_long);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(key_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
