/*
 * b64.c - strict RFC 4648 base64 for binary payloads.
 *
 * Strict means one spelling per byte string: padding required, no
 * whitespace, no URL alphabet, and the unused bits of the last group must
 * be zero. A client that sends anything else gets invalid_params, so two
 * different texts never name the same message.
 *
 * Both directions are table-driven, because multi-megabyte blobs go
 * through them on every shm.put and shm.get: the encoder turns 12 bits
 * into two characters with one lookup (6 input bytes per step), the
 * decoder turns each character into its 6 bits already shifted into
 * place, so a group of 4 is four lookups ORed together, and one bit above
 * the 24 data bits marks any character outside the alphabet ('=' too: the
 * padding is only ever looked at in the last group). On x86 CPUs with
 * SSSE3 (all x86-64 CPUs since about 2008) the bulk of both directions
 * runs 16 characters at a time instead, with Wojciech Mula's byte-shuffle
 * method: the same strict alphabet check, whole blocks rejected.
 */
#include <stdint.h>
#include <string.h>

#include "daemon.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#include <tmmintrin.h>
#define HAVE_SSSE3	1
#define SSSE3		__attribute__((target("ssse3")))
#endif

static const char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

#define BAD	0x01000000u	/* in dec[][c]: c is not in the alphabet */

static char enc2[4096][2];	/* 12 bits -> two characters */
static uint32_t dec[4][256];	/* character -> its 6 bits, shifted */
static int ready;
static int have_ssse3;
int b64_simd = 1;		/* use SSSE3 if there (tests clear it) */

static void
init_tables(void)
{
	unsigned v, k;
	int c;

	for (v = 0; v < 4096; v++) {
		enc2[v][0] = alphabet[v >> 6];
		enc2[v][1] = alphabet[v & 63];
	}
	for (k = 0; k < 4; k++) {
		for (c = 0; c < 256; c++)
			dec[k][c] = BAD;
		for (v = 0; v < 64; v++)
			dec[k][(unsigned char)alphabet[v]] = v << (18 - 6 * k);
	}
#ifdef HAVE_SSSE3
	__builtin_cpu_init();
	have_ssse3 = __builtin_cpu_supports("ssse3") != 0;
#endif
	ready = 1;
}

size_t
b64_encoded_len(size_t n)
{
	return (n + 2) / 3 * 4;
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define BE64(x)		(x)
#define BE32(x)		(x)
#define PACK4(a, b, c, d) \
	((uint64_t)(a) << 48 | (uint64_t)(b) << 32 | (uint64_t)(c) << 16 | (d))
#else
#define BE64(x)		__builtin_bswap64(x)
#define BE32(x)		__builtin_bswap32(x)
#define PACK4(a, b, c, d) \
	((a) | (uint64_t)(b) << 16 | (uint64_t)(c) << 32 | (uint64_t)(d) << 48)
#endif

static inline uint16_t
pair(unsigned v)
{
	uint16_t p;

	memcpy(&p, enc2[v], 2);
	return p;
}

#ifdef HAVE_SSSE3
/* 12 bytes -> 16 characters per step while 16 bytes can be loaded;
 * returns the bytes done. */
SSSE3 static size_t
encode_ssse3(const unsigned char *s, size_t n, char *dst)
{
	const __m128i spread = _mm_set_epi8(10, 11, 9, 10, 7, 8, 6, 7, 4, 5,
	    3, 4, 1, 2, 0, 1);
	const __m128i shift = _mm_setr_epi8('a' - 26, '0' - 52, '0' - 52,
	    '0' - 52, '0' - 52, '0' - 52, '0' - 52, '0' - 52, '0' - 52,
	    '0' - 52, '0' - 52, '+' - 62, '/' - 63, 'A', 0, 0);
	__m128i in, t0, t1, t2, t3, idx, r, less;
	size_t i;

	for (i = 0; i + 16 <= n; i += 12, dst += 16) {
		in = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
		/* each 3 bytes s0 s1 s2 as the 32 bits s1 s0 s2 s1 */
		in = _mm_shuffle_epi8(in, spread);
		/* the four 6-bit values, one per byte */
		t0 = _mm_and_si128(in, _mm_set1_epi32(0x0fc0fc00));
		t1 = _mm_mulhi_epu16(t0, _mm_set1_epi32(0x04000040));
		t2 = _mm_and_si128(in, _mm_set1_epi32(0x003f03f0));
		t3 = _mm_mullo_epi16(t2, _mm_set1_epi32(0x01000010));
		idx = _mm_or_si128(t1, t3);
		/* 0..25 -> 13, 26..51 -> 0, 52..61 -> 1..10, 62 -> 11,
		 * 63 -> 12: which offset to add */
		r = _mm_subs_epu8(idx, _mm_set1_epi8(51));
		less = _mm_cmpgt_epi8(_mm_set1_epi8(26), idx);
		r = _mm_or_si128(r, _mm_and_si128(less, _mm_set1_epi8(13)));
		r = _mm_add_epi8(_mm_shuffle_epi8(shift, r), idx);
		_mm_storeu_si128((__m128i *)(void *)dst, r);
	}
	return i;
}
#endif

void
b64_encode(const void *src, size_t n, char *dst)
{
	const unsigned char *s = src;
	uint64_t w;
	uint32_t v;

	if (!ready)
		init_tables();
#ifdef HAVE_SSSE3
	if (b64_simd && have_ssse3 && n >= 16) {
		size_t done = encode_ssse3(s, n, dst);

		s += done;
		n -= done;
		dst += done / 3 * 4;
	}
#endif
	/* 6 bytes -> 8 characters: one 8-byte load (2 bytes unused), four
	 * 12-bit lookups, one 8-byte store */
	for (; n >= 8; n -= 6, s += 6, dst += 8) {
		memcpy(&w, s, 8);
		w = BE64(w) >> 16;
		w = PACK4(pair(w >> 36), pair((w >> 24) & 0xfff),
		    pair((w >> 12) & 0xfff), pair(w & 0xfff));
		memcpy(dst, &w, 8);
	}
	for (; n >= 3; n -= 3, s += 3, dst += 4) {
		v = (uint32_t)s[0] << 16 | (uint32_t)s[1] << 8 | s[2];
		memcpy(dst, enc2[v >> 12], 2);
		memcpy(dst + 2, enc2[v & 0xfff], 2);
	}
	if (n == 0)
		return;
	v = (uint32_t)s[0] << 16 | (n == 2 ? (uint32_t)s[1] << 8 : 0);
	*dst++ = alphabet[v >> 18];
	*dst++ = alphabet[(v >> 12) & 63];
	*dst++ = n == 2 ? alphabet[(v >> 6) & 63] : '=';
	*dst++ = '=';
}

size_t
b64_decoded_max(size_t n)
{
	return n / 4 * 3;
}

/* One group of 4 characters: 24 bits, or BAD set. */
static inline uint32_t
group(const unsigned char *s)
{
	return dec[0][s[0]] | dec[1][s[1]] | dec[2][s[2]] | dec[3][s[3]];
}

#ifdef HAVE_SSSE3
/*
 * 16 characters -> 12 bytes per step (16 stored) while at least 8 more
 * characters follow, so the 4 extra bytes stored are ones that later
 * groups write. Returns the characters done, or -1 for a character
 * outside the alphabet ('=' included).
 */
SSSE3 static ssize_t
decode_ssse3(const unsigned char *s, size_t n, unsigned char *d)
{
	/* a character is in the alphabet iff lut_lo[low nibble] and
	 * lut_hi[high nibble] have no bit in common */
	const __m128i lut_lo = _mm_setr_epi8(0x15, 0x11, 0x11, 0x11, 0x11,
	    0x11, 0x11, 0x11, 0x11, 0x11, 0x13, 0x1a, 0x1b, 0x1b, 0x1b, 0x1a);
	const __m128i lut_hi = _mm_setr_epi8(0x10, 0x10, 0x01, 0x02, 0x04,
	    0x08, 0x04, 0x08, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10);
	/* what to add to a character for its value, by high nibble ('/'
	 * has its own, at index 1) */
	const __m128i lut_roll = _mm_setr_epi8(0, 16, 19, 4, -65, -65, -71,
	    -71, 0, 0, 0, 0, 0, 0, 0, 0);
	const __m128i m2f = _mm_set1_epi8(0x2f);
	const __m128i pack = _mm_setr_epi8(2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13,
	    12, -1, -1, -1, -1);
	__m128i in, hi, lo, v;
	size_t i;

	for (i = 0; i + 24 <= n; i += 16, d += 12) {
		in = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
		hi = _mm_and_si128(_mm_srli_epi32(in, 4), m2f);
		lo = _mm_and_si128(in, m2f);
		lo = _mm_and_si128(_mm_shuffle_epi8(lut_lo, lo),
		    _mm_shuffle_epi8(lut_hi, hi));
		if (_mm_movemask_epi8(_mm_cmpeq_epi8(lo,
		    _mm_setzero_si128())) != 0xffff)
			return -1;
		v = _mm_add_epi8(in, _mm_shuffle_epi8(lut_roll,
		    _mm_add_epi8(_mm_cmpeq_epi8(in, m2f), hi)));
		/* 4 x 6 bits -> 24 bits per 32, then the 3 bytes in order */
		v = _mm_maddubs_epi16(v, _mm_set1_epi32(0x01400140));
		v = _mm_madd_epi16(v, _mm_set1_epi32(0x00011000));
		_mm_storeu_si128((__m128i *)(void *)d,
		    _mm_shuffle_epi8(v, pack));
	}
	return (ssize_t)i;
}
#endif

/* Decode; returns the byte count, or -1 when src is not canonical base64.
 * Writes at most b64_decoded_max(n) bytes (garbage when it fails). */
ssize_t
b64_decode(const char *src, size_t n, void *dst)
{
	const unsigned char *s = (const unsigned char *)src;
	unsigned char *d = dst;
	uint32_t x, bad;
	size_t groups, i, j, k;

	if (n % 4 != 0)
		return -1;
	if (n == 0)
		return 0;
	if (!ready)
		init_tables();
#ifdef HAVE_SSSE3
	if (b64_simd && have_ssse3 && n >= 24) {
		ssize_t done = decode_ssse3(s, n, d);

		if (done < 0)
			return -1;
		s += done;
		d += done / 4 * 3;
		n -= (size_t)done;
	}
#endif
	groups = n / 4 - 1;		/* full groups before the last one */
	for (i = 0; i < groups; i = j) {
		k = groups - i < 64 ? groups - i : 64;
		bad = 0;
		for (j = i; j < i + k; j++, s += 4, d += 3) {
			x = group(s);
			bad |= x;
			/* 4 bytes stored, 3 kept: the 4th is the first
			 * of the next group's, which the last group
			 * always writes */
			x = BE32(x << 8);
			memcpy(d, &x, 4);
		}
		if (bad & BAD)
			return -1;
	}
	/* the last group: "xx==", "xxx=" or "xxxx" */
	if (s[3] != '=')
		x = group(s);
	else if (s[2] != '=')
		x = (dec[0][s[0]] | dec[1][s[1]] | dec[2][s[2]]) |
		    (dec[2][s[2]] & 0xc0 ? BAD : 0);	/* unused bits set */
	else
		x = (dec[0][s[0]] | dec[1][s[1]]) |
		    (dec[1][s[1]] & 0xf000 ? BAD : 0);
	if (x & BAD)
		return -1;
	*d++ = (unsigned char)(x >> 16);
	if (s[2] != '=')
		*d++ = (unsigned char)(x >> 8);
	if (s[3] != '=')
		*d++ = (unsigned char)x;
	return d - (unsigned char *)dst;
}
