/*
 * utf8.c - UTF-8 by jansson's rules, for bytes jansson has not seen (PHP
 * strings, lines it refused) and for cutting names short in messages.
 */
#include <stdint.h>
#include <string.h>

#include "daemon.h"

/*
 * The length of the longest valid UTF-8 prefix of s, by jansson's rules:
 * no overlong forms, no surrogates, nothing above U+10FFFF; NUL is fine.
 */
size_t
utf8_valid(const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0, k, need;
	uint32_t cp, min;

	while (i < n) {
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		if (s[i] >= 0xC2 && s[i] <= 0xDF) {
			need = 1;
			cp = s[i] & 0x1F;
			min = 0x80;
		} else if (s[i] >= 0xE0 && s[i] <= 0xEF) {
			need = 2;
			cp = s[i] & 0x0F;
			min = 0x800;
		} else if (s[i] >= 0xF0 && s[i] <= 0xF4) {
			need = 3;
			cp = s[i] & 0x07;
			min = 0x10000;
		} else
			return i;
		if (need > n - i - 1)
			return i;
		for (k = 1; k <= need; k++) {
			if ((s[i + k] & 0xC0) != 0x80)
				return i;
			cp = cp << 6 | (s[i + k] & 0x3F);
		}
		if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return i;
		i += need + 1;
	}
	return n;
}

/* The longest prefix of s within max bytes that ends on a UTF-8
 * character boundary (s is valid UTF-8: it came from jansson). */
size_t
utf8_prefix(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n <= max)
		return n;
	n = max;
	while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
		n--;
	return n;
}
