/*
 * b64.c - strict RFC 4648 base64 for binary payloads.
 *
 * Strict means one spelling per byte string: padding required, no
 * whitespace, no URL alphabet, and the unused bits of the last group must
 * be zero. A client that sends anything else gets invalid_params, so two
 * different texts never name the same message.
 */
#include <stdint.h>
#include <string.h>

#include "daemon.h"

static const char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t
b64_encoded_len(size_t n)
{
	return (n + 2) / 3 * 4;
}

void
b64_encode(const void *src, size_t n, char *dst)
{
	const unsigned char *s = src;
	uint32_t v;

	for (; n >= 3; n -= 3, s += 3) {
		v = (uint32_t)s[0] << 16 | (uint32_t)s[1] << 8 | s[2];
		*dst++ = alphabet[v >> 18];
		*dst++ = alphabet[(v >> 12) & 63];
		*dst++ = alphabet[(v >> 6) & 63];
		*dst++ = alphabet[v & 63];
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

/* 0..63 for alphabet characters, 64 for anything else. */
static unsigned char
value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return 64;
}

/* Decode; returns the byte count, or -1 when src is not canonical base64. */
ssize_t
b64_decode(const char *src, size_t n, void *dst)
{
	const unsigned char *s = (const unsigned char *)src;
	unsigned char *d = dst, a, b, c, e;
	size_t i, groups;

	if (n % 4 != 0)
		return -1;
	groups = n / 4;
	for (i = 0; i < groups; i++, s += 4) {
		a = value(s[0]);
		b = value(s[1]);
		if (a > 63 || b > 63)
			return -1;
		if (i == groups - 1 && s[3] == '=') {
			if (s[2] == '=') {
				if (b & 15)
					return -1;
				*d++ = (unsigned char)(a << 2 | b >> 4);
				break;
			}
			c = value(s[2]);
			if (c > 63 || (c & 3))
				return -1;
			*d++ = (unsigned char)(a << 2 | b >> 4);
			*d++ = (unsigned char)(b << 4 | c >> 2);
			break;
		}
		c = value(s[2]);
		e = value(s[3]);
		if (c > 63 || e > 63)
			return -1;
		*d++ = (unsigned char)(a << 2 | b >> 4);
		*d++ = (unsigned char)(b << 4 | c >> 2);
		*d++ = (unsigned char)(c << 6 | e);
	}
	return d - (unsigned char *)dst;
}
