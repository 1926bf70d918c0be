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
 * padding is only ever looked at in the last group).
 */
#include <stdint.h>
#include <string.h>

#include "daemon.h"

static const char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

#define BAD	0x01000000u	/* in dec[][c]: c is not in the alphabet */

static char enc2[4096][2];	/* 12 bits -> two characters */
static uint32_t dec[4][256];	/* character -> its 6 bits, shifted */
static int ready;

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

void
b64_encode(const void *src, size_t n, char *dst)
{
	const unsigned char *s = src;
	uint64_t w;
	uint32_t v;

	if (!ready)
		init_tables();
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
