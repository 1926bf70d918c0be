/*
 * check_b64.c - strict RFC 4648 base64 (src/b64.c).
 *
 * Strict means exactly one spelling per byte string: padding required, no
 * whitespace, no URL alphabet, no '=' except as final padding, and the
 * unused bits of the last group must be zero.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "daemon.h"

/* main.c's globals, which libdaemon refers to */
struct event_base *base;
const struct config *cfg;

/* b64_decode never writes past b64_decoded_max(n): guard bytes catch it. */
#define GUARD	0xA5
#define GUARDN	16

static ssize_t
decode_str(const char *s, unsigned char *out, size_t outcap)
{
	size_t n = strlen(s), max = b64_decoded_max(n), i;
	ssize_t r;

	ck_assert_uint_le(max + GUARDN, outcap);
	memset(out, GUARD, outcap);
	r = b64_decode(s, n, out);
	for (i = max; i < max + GUARDN; i++)
		ck_assert_msg(out[i] == GUARD,
		    "b64_decode(\"%s\") wrote past b64_decoded_max (%zu)", s, max);
	return r;
}

static void
assert_rejects(const char *s)
{
	unsigned char out[256];

	ck_assert_msg(decode_str(s, out, sizeof(out)) == -1,
	    "b64_decode accepted non-canonical \"%s\"", s);
}

static void
assert_decodes(const char *s, const void *want, size_t wantlen)
{
	unsigned char out[256];
	ssize_t r;

	r = decode_str(s, out, sizeof(out));
	ck_assert_msg(r == (ssize_t)wantlen,
	    "b64_decode(\"%s\") returned %zd, want %zu", s, r, wantlen);
	ck_assert_mem_eq(out, want, wantlen);
}

static void
assert_encodes(const void *src, size_t n, const char *want)
{
	char out[256];

	ck_assert_uint_eq(b64_encoded_len(n), strlen(want));
	memset(out, GUARD, sizeof(out));
	b64_encode(src, n, out);
	ck_assert_mem_eq(out, want, strlen(want));
	/* exactly b64_encoded_len bytes written, no terminator */
	ck_assert_uint_eq((unsigned char)out[strlen(want)], GUARD);
}

/* RFC 4648 section 10. */
static const struct {
	const char	*plain;
	const char	*enc;
} rfc[] = {
	{ "", "" },
	{ "f", "Zg==" },
	{ "fo", "Zm8=" },
	{ "foo", "Zm9v" },
	{ "foob", "Zm9vYg==" },
	{ "fooba", "Zm9vYmE=" },
	{ "foobar", "Zm9vYmFy" },
};
#define NRFC	((int)(sizeof(rfc) / sizeof(rfc[0])))

START_TEST(test_rfc4648_encode)
{
	assert_encodes(rfc[_i].plain, strlen(rfc[_i].plain), rfc[_i].enc);
}
END_TEST

START_TEST(test_rfc4648_decode)
{
	assert_decodes(rfc[_i].enc, rfc[_i].plain, strlen(rfc[_i].plain));
}
END_TEST

START_TEST(test_lengths)
{
	ck_assert_uint_eq(b64_encoded_len(0), 0);
	ck_assert_uint_eq(b64_encoded_len(1), 4);
	ck_assert_uint_eq(b64_encoded_len(2), 4);
	ck_assert_uint_eq(b64_encoded_len(3), 4);
	ck_assert_uint_eq(b64_encoded_len(4), 8);
	ck_assert_uint_eq(b64_encoded_len(256), 344);
	ck_assert_uint_eq(b64_decoded_max(0), 0);
	ck_assert_uint_eq(b64_decoded_max(4), 3);
	ck_assert_uint_eq(b64_decoded_max(344), 258);
}
END_TEST

START_TEST(test_empty_decodes_to_nothing)
{
	unsigned char out[GUARDN + 1];

	memset(out, GUARD, sizeof(out));
	ck_assert_int_eq(b64_decode("", 0, out), 0);
	ck_assert_uint_eq(out[0], GUARD);
	/* a NULL-terminated empty string decoded with n = 0 also */
	ck_assert_int_eq(b64_decode("Zm9v", 0, out), 0);
	ck_assert_uint_eq(out[0], GUARD);
}
END_TEST

/* Every byte value, in every position of a 3-byte group, both ways. */
START_TEST(test_all_bytes_round_trip)
{
	unsigned char src[256 + 2], back[sizeof(src) + GUARDN];
	char enc[400];
	size_t n, off, elen;
	ssize_t r;
	int i;

	for (off = 0; off < 3; off++) {
		/* off leading bytes shift every value through each slot */
		memset(src, 0, sizeof(src));
		for (i = 0; i < 256; i++)
			src[off + (size_t)i] = (unsigned char)i;
		n = 256 + off;
		elen = b64_encoded_len(n);
		ck_assert_uint_lt(elen, sizeof(enc));
		b64_encode(src, n, enc);
		for (i = 0; i < (int)elen; i++)
			ck_assert_msg(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZ"
			    "abcdefghijklmnopqrstuvwxyz0123456789+/=",
			    enc[i]) != NULL && enc[i] != '\0',
			    "encoder produced '%c' at %d", enc[i], i);
		memset(back, GUARD, sizeof(back));
		r = b64_decode(enc, elen, back);
		ck_assert_int_eq(r, (ssize_t)n);
		ck_assert_mem_eq(back, src, n);
	}
}
END_TEST

/* Each single byte, and each pair, encodes and decodes to itself. */
START_TEST(test_short_inputs_round_trip)
{
	unsigned char src[2], back[3 + GUARDN];
	char enc[4];
	int a, b;

	for (a = 0; a < 256; a++) {
		src[0] = (unsigned char)a;
		b64_encode(src, 1, enc);
		ck_assert(enc[2] == '=' && enc[3] == '=');
		ck_assert_int_eq(b64_decode(enc, 4, back), 1);
		ck_assert_uint_eq(back[0], (unsigned)a);
		for (b = 0; b < 256; b++) {
			src[1] = (unsigned char)b;
			b64_encode(src, 2, enc);
			ck_assert(enc[2] != '=' && enc[3] == '=');
			ck_assert_int_eq(b64_decode(enc, 4, back), 2);
			ck_assert_uint_eq(back[0], (unsigned)a);
			ck_assert_uint_eq(back[1], (unsigned)b);
		}
	}
}
END_TEST

START_TEST(test_full_alphabet)
{
	/* "+/" are values 62 and 63: 0xfb 0xff 0xbf */
	static const unsigned char want[] = { 0xfb, 0xff, 0xbf };
	static const unsigned char ones[] = { 0xff, 0xff, 0xff };
	static const unsigned char zeros[] = { 0, 0, 0 };

	assert_decodes("+/+/", want, 3);
	assert_encodes(want, 3, "+/+/");
	assert_decodes("////", ones, 3);
	assert_decodes("AAAA", zeros, 3);
	assert_encodes(zeros, 1, "AA==");
	assert_encodes(ones, 2, "//8=");
}
END_TEST

START_TEST(test_reject_missing_padding)
{
	assert_rejects("Zg");
	assert_rejects("Zg=");
	assert_rejects("Zm8");
	assert_rejects("Zm9vYg");
	assert_rejects("Zm9vYmE");
}
END_TEST

START_TEST(test_reject_length_not_multiple_of_4)
{
	assert_rejects("Z");
	assert_rejects("Zm9vY");
	assert_rejects("Zm9vYmFy=");
	assert_rejects("Zg===");
	assert_rejects("Zm9vYg=");
}
END_TEST

START_TEST(test_reject_whitespace)
{
	assert_rejects("Zm9 ");		/* all lengths a multiple of 4 */
	assert_rejects(" Zm9");
	assert_rejects("Zm\n9");
	assert_rejects("Zm9vYmF\n");
	assert_rejects("Zm9v\r\nYg");
	assert_rejects("Zm9\tYmFy");
	assert_rejects("Zg==\n\n\n\n");
	assert_rejects("Zm9vYg\n=");
}
END_TEST

START_TEST(test_reject_url_alphabet)
{
	assert_rejects("-_-_");
	assert_rejects("Zm9-");
	assert_rejects("Zm_v");
	assert_rejects("_w==");		/* "/w==" is 0xff */
	assert_rejects("-w==");
	assert_decodes("/w==", "\xff", 1);
}
END_TEST

START_TEST(test_reject_equals_in_middle)
{
	assert_rejects("Zg==Zm9v");
	assert_rejects("Zm8=Zm9v");
	assert_rejects("Zm=v");
	assert_rejects("Z=9v");
	assert_rejects("=m9v");
	assert_rejects("Zm9vZ=8=");
	assert_rejects("Z===");
	assert_rejects("====");
	assert_rejects("Zm9v====");
	assert_rejects("Zg=A");
}
END_TEST

START_TEST(test_reject_other_bytes)
{
	static const char nul[] = "Zm\0v";
	unsigned char out[8];

	ck_assert_int_eq(b64_decode(nul, 4, out), -1);
	assert_rejects("Zm9\x80");
	assert_rejects("\xffZm9");
	assert_rejects("Zm.v");
	assert_rejects("Zm9v*A==");
}
END_TEST

START_TEST(test_non_canonical_trailing_bits)
{
	/* "A" is "QQ==": the 4 unused bits of 'Q' (16) are zero */
	assert_decodes("QQ==", "A", 1);
	assert_rejects("QR==");
	assert_rejects("QS==");
	assert_rejects("QT==");
	assert_rejects("Qf==");
	/* "AB" is "QUI=" and "AA" is "QUE=": both canonical */
	assert_decodes("QUI=", "AB", 2);
	assert_decodes("QUE=", "AA", 2);
	/* the 2 unused bits of the third character must be zero */
	assert_rejects("QUJ=");
	assert_rejects("QUK=");
	assert_rejects("QUL=");
	assert_rejects("QUF=");
	/* also after full groups */
	assert_rejects("Zm9vZh==");
	assert_rejects("Zm9vZm9=");
	assert_decodes("Zm9vZm8=", "foofo", 5);
}
END_TEST

/* Exhaustively: "ab==" decodes iff the low 4 bits of b are zero, and
 * "abc=" iff the low 2 bits of c are zero; whatever decodes re-encodes
 * to the same text (one spelling per byte string). */
START_TEST(test_padding_canonical_exhaustive)
{
	static const char alpha[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	unsigned char out[3 + GUARDN];
	char s[4], re[4];
	int a, b, c, accepted = 0;
	ssize_t r;

	for (a = 0; a < 64; a++) {
		for (b = 0; b < 64; b++) {
			s[0] = alpha[a];
			s[1] = alpha[b];
			s[2] = s[3] = '=';
			r = b64_decode(s, 4, out);
			if (b & 15) {
				ck_assert_msg(r == -1, "accepted %.4s", s);
			} else {
				ck_assert_msg(r == 1, "rejected %.4s", s);
				b64_encode(out, 1, re);
				ck_assert_mem_eq(re, s, 4);
				accepted++;
			}
			for (c = 0; c < 64; c++) {
				s[2] = alpha[c];
				r = b64_decode(s, 4, out);
				if (c & 3) {
					ck_assert_msg(r == -1, "accepted %.4s",
					    s);
					continue;
				}
				ck_assert_msg(r == 2, "rejected %.4s", s);
				b64_encode(out, 2, re);
				ck_assert_mem_eq(re, s, 4);
				accepted++;
			}
		}
	}
	/* 256 one-byte and 65536 two-byte strings, each exactly once */
	ck_assert_int_eq(accepted, 256 + 65536);
}
END_TEST

/*
 * The table-driven coder against a plain one (the first version of
 * b64.c, one character at a time), over inputs long enough for the bulk
 * loops: 6-byte encoder steps, and decoder blocks of 64 groups whose
 * alphabet check runs once per block.
 */
static int
ref_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	return c == '+' ? 62 : c == '/' ? 63 : 64;
}

static ssize_t
ref_decode(const char *src, size_t n, unsigned char *d)
{
	const unsigned char *s = (const unsigned char *)src;
	size_t g, out = 0;
	int a, b, c, e;

	if (n % 4 != 0)
		return -1;
	for (g = 0; g < n / 4; g++, s += 4) {
		a = ref_value(s[0]);
		b = ref_value(s[1]);
		if (a > 63 || b > 63)
			return -1;
		if (g == n / 4 - 1 && s[3] == '=') {
			if (s[2] == '=') {
				if (b & 15)
					return -1;
				d[out++] = (unsigned char)(a << 2 | b >> 4);
				return (ssize_t)out;
			}
			c = ref_value(s[2]);
			if (c > 63 || (c & 3))
				return -1;
			d[out++] = (unsigned char)(a << 2 | b >> 4);
			d[out++] = (unsigned char)(b << 4 | c >> 2);
			return (ssize_t)out;
		}
		c = ref_value(s[2]);
		e = ref_value(s[3]);
		if (c > 63 || e > 63)
			return -1;
		d[out++] = (unsigned char)(a << 2 | b >> 4);
		d[out++] = (unsigned char)(b << 4 | c >> 2);
		d[out++] = (unsigned char)(c << 6 | e);
	}
	return (ssize_t)out;
}

static void
ref_encode(const unsigned char *s, size_t n, char *d)
{
	static const char al[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i;
	uint32_t v;

	for (i = 0; i + 3 <= n; i += 3) {
		v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
		*d++ = al[v >> 18];
		*d++ = al[(v >> 12) & 63];
		*d++ = al[(v >> 6) & 63];
		*d++ = al[v & 63];
	}
	if (i == n)
		return;
	v = (uint32_t)s[i] << 16 | (n - i == 2 ? (uint32_t)s[i + 1] << 8 : 0);
	*d++ = al[v >> 18];
	*d++ = al[(v >> 12) & 63];
	*d++ = n - i == 2 ? al[(v >> 6) & 63] : '=';
	*d++ = '=';
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static unsigned char
rng_byte(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (unsigned char)(rng_state >> 24);
}

#define LONG_N	1000		/* bytes: 1336 characters, 334 groups */

/* Every length up to LONG_N, random bytes: the same text as the plain
 * encoder, exactly b64_encoded_len bytes written, and back again. */
START_TEST(test_long_round_trip)
{
	unsigned char src[LONG_N], back[LONG_N + GUARDN];
	char enc[LONG_N / 3 * 4 + 8 + GUARDN], want[sizeof(enc)];
	size_t n, i, elen;

	b64_simd = _i;

	for (n = 0; n <= LONG_N; n++) {
		for (i = 0; i < n; i++)
			src[i] = rng_byte();
		elen = b64_encoded_len(n);
		memset(enc, GUARD, sizeof(enc));
		b64_encode(src, n, enc);
		ref_encode(src, n, want);
		ck_assert_msg(memcmp(enc, want, elen) == 0,
		    "encoding of %zu bytes differs from the plain encoder", n);
		ck_assert_msg((unsigned char)enc[elen] == GUARD,
		    "b64_encode(%zu bytes) wrote past its length", n);
		memset(back, GUARD, sizeof(back));
		ck_assert_int_eq(b64_decode(enc, elen, back), (ssize_t)n);
		ck_assert_mem_eq(back, src, n);
		for (i = n; i < n + GUARDN; i++)
			ck_assert_uint_eq(back[i], GUARD);
	}
}
END_TEST

/* A bad character at every position of a long text (every group, both
 * sides of each 64-group block): rejected exactly as the plain decoder
 * rejects it, never written past b64_decoded_max. */
START_TEST(test_long_bad_char_every_position)
{
	static const char bad[] = { '=', '-', '_', ' ', '\n', '\0', '.', '"',
	    '\\', (char)0x80, (char)0xff, '*' };
	unsigned char src[LONG_N], out[LONG_N + GUARDN], ref[LONG_N];
	char enc[LONG_N / 3 * 4 + 8];
	size_t n = LONG_N - 2, elen, pos, i, b;	/* ends in "xxx=" */
	ssize_t r, want;

	b64_simd = _i;

	for (i = 0; i < n; i++)
		src[i] = rng_byte();
	elen = b64_encoded_len(n);
	b64_encode(src, n, enc);
	for (pos = 0; pos < elen; pos++) {
		for (b = 0; b < sizeof(bad); b++) {
			char keep = enc[pos];

			if (bad[b] == keep)
				continue;
			enc[pos] = bad[b];
			want = ref_decode(enc, elen, ref);
			memset(out, GUARD, sizeof(out));
			r = b64_decode(enc, elen, out);
			ck_assert_msg(r == want, "0x%02x at %zu of %zu: got %zd, "
			    "want %zd", (unsigned char)bad[b], pos, elen, r,
			    want);
			ck_assert_msg(want == -1 || (bad[b] == '=' &&
			    pos >= elen - 2), "the plain decoder took 0x%02x "
			    "at %zu", (unsigned char)bad[b], pos);
			for (i = b64_decoded_max(elen); i < sizeof(out); i++)
				ck_assert_msg(out[i] == GUARD, "wrote past "
				    "b64_decoded_max with 0x%02x at %zu",
				    (unsigned char)bad[b], pos);
			enc[pos] = keep;
		}
	}
	ck_assert_int_eq(b64_decode(enc, elen, out), (ssize_t)n);
	ck_assert_mem_eq(out, src, n);
}
END_TEST

/* Non-canonical trailing bits after a long run of full groups. */
START_TEST(test_long_non_canonical_tail)
{
	unsigned char src[LONG_N], out[LONG_N + GUARDN];
	char enc[LONG_N / 3 * 4 + 8];
	size_t n, elen, last;

	b64_simd = _i;

	for (n = LONG_N - 3; n <= LONG_N - 2; n++) {	/* "xx==", "xxx=" */
		memset(src, 0, sizeof(src));
		elen = b64_encoded_len(n);
		b64_encode(src, n, enc);
		ck_assert_int_eq(b64_decode(enc, elen, out), (ssize_t)n);
		/* the last character before the padding: set an unused bit */
		last = n % 3 == 1 ? elen - 3 : elen - 2;
		enc[last] = 'B';
		ck_assert_msg(b64_decode(enc, elen, out) == -1,
		    "accepted a set unused bit in \"...%.4s\"", enc + elen - 4);
	}
}
END_TEST

/* Every byte value at positions in the first SSSE3 block, in later
 * ones, in the scalar groups after them (from 1296) and in the last
 * group (1316..1319). */
START_TEST(test_every_byte_at_positions)
{
	static const size_t where[] = { 0, 1, 3, 15, 16, 17, 31, 100, 999,
	    1000, 1279, 1280, 1295, 1296, 1315, 1316, 1317, 1318, 1319 };
	unsigned char src[988], out[sizeof(src) + GUARDN], ref[sizeof(src) + 3];
	char enc[1320];
	size_t n = sizeof(src), elen, w, i;
	ssize_t r, want;
	int c;

	b64_simd = _i;
	for (i = 0; i < n; i++)
		src[i] = rng_byte();
	elen = b64_encoded_len(n);		/* 1320, ends in "xx==" */
	ck_assert_uint_eq(elen, sizeof(enc));
	b64_encode(src, n, enc);
	for (w = 0; w < sizeof(where) / sizeof(where[0]); w++) {
		char keep = enc[where[w]];

		for (c = 0; c < 256; c++) {
			enc[where[w]] = (char)c;
			want = ref_decode(enc, elen, ref);
			memset(out, GUARD, sizeof(out));
			r = b64_decode(enc, elen, out);
			ck_assert_msg(r == want, "0x%02x at %zu: got %zd, want "
			    "%zd", c, where[w], r, want);
			if (r >= 0)
				ck_assert_mem_eq(out, ref, (size_t)r);
			for (i = b64_decoded_max(elen); i < sizeof(out); i++)
				ck_assert_uint_eq(out[i], GUARD);
		}
		enc[where[w]] = keep;
	}
}
END_TEST

static Suite *
b64_suite(void)
{
	Suite *s = suite_create("b64");
	TCase *tc;

	tc = tcase_create("vectors");
	tcase_add_loop_test(tc, test_rfc4648_encode, 0, NRFC);
	tcase_add_loop_test(tc, test_rfc4648_decode, 0, NRFC);
	tcase_add_test(tc, test_lengths);
	tcase_add_test(tc, test_empty_decodes_to_nothing);
	tcase_add_test(tc, test_full_alphabet);
	suite_add_tcase(s, tc);

	tc = tcase_create("round_trip");
	tcase_add_test(tc, test_all_bytes_round_trip);
	tcase_add_test(tc, test_short_inputs_round_trip);
	tcase_add_loop_test(tc, test_long_round_trip, 0, 2);
	suite_add_tcase(s, tc);

	tc = tcase_create("strict");
	tcase_add_test(tc, test_reject_missing_padding);
	tcase_add_test(tc, test_reject_length_not_multiple_of_4);
	tcase_add_test(tc, test_reject_whitespace);
	tcase_add_test(tc, test_reject_url_alphabet);
	tcase_add_test(tc, test_reject_equals_in_middle);
	tcase_add_test(tc, test_reject_other_bytes);
	tcase_add_test(tc, test_non_canonical_trailing_bits);
	tcase_add_test(tc, test_padding_canonical_exhaustive);
	tcase_add_loop_test(tc, test_long_bad_char_every_position, 0, 2);
	tcase_add_loop_test(tc, test_long_non_canonical_tail, 0, 2);
	tcase_add_loop_test(tc, test_every_byte_at_positions, 0, 2);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(b64_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
