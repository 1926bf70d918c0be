/*
 * key.c - parse the IPC key syntax shared by the config file and workers:
 * decimal, 0x hex, or ftok:PATH:C (the same key PHP's ftok() gives).
 *
 * Keys are 32-bit in the kernel; PHP and sysv_ipc silently truncate wider
 * values, so anything outside int32 (and the two keys that mean something
 * else: 0 is IPC_PRIVATE, -1 is a failed ftok) is refused here instead.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ipcbridge.h"

static int
fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL && errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

static int
parse_ftok(const char *spec, key_t *key, char *err, size_t errlen)
{
	const char *colon;
	char path[4096];
	size_t plen;
	key_t k;

	colon = strrchr(spec, ':');
	if (colon == NULL || colon == spec)
		return fail(err, errlen, "expected ftok:PATH:C");
	plen = (size_t)(colon - spec);
	if (plen >= sizeof(path))
		return fail(err, errlen, "ftok path too long");
	if (colon[1] == '\0' || colon[2] != '\0')
		return fail(err, errlen,
		    "ftok project id must be exactly one character");
	memcpy(path, spec, plen);
	path[plen] = '\0';
	k = ftok(path, (unsigned char)colon[1]);
	if (k == (key_t)-1)
		return fail(err, errlen, "ftok %s: %s", path, strerror(errno));
	if (k == 0)
		return fail(err, errlen, "ftok %s gives key 0 (IPC_PRIVATE)",
		    path);
	*key = k;
	return 0;
}

int
ipcb_key_parse(const char *spec, key_t *key, char *err, size_t errlen)
{
	char *end;
	long long v;

	if (spec == NULL || *spec == '\0')
		return fail(err, errlen, "empty key");
	if (strncmp(spec, "ftok:", 5) == 0)
		return parse_ftok(spec + 5, key, err, errlen);
	/* strtoll alone would take spaces, a sign or a second 0x */
	errno = 0;
	if (spec[0] == '0' && (spec[1] == 'x' || spec[1] == 'X')) {
		if (spec[2] == '\0' || spec[2 + strspn(spec + 2,
		    "0123456789abcdefABCDEF")] != '\0')
			return fail(err, errlen, "bad hex key \"%s\"", spec);
		v = strtoll(spec + 2, &end, 16);
	} else {
		const char *digits = spec + (spec[0] == '-');

		if (*digits == '\0' || digits[strspn(digits, "0123456789")]
		    != '\0')
			return fail(err, errlen, "bad key \"%s\" (decimal, 0x "
			    "hex or ftok:PATH:C)", spec);
		v = strtoll(spec, &end, 10);
	}
	if (*end != '\0')
		return fail(err, errlen,
		    "bad key \"%s\" (decimal, 0x hex or ftok:PATH:C)", spec);
	if (errno == ERANGE || v > (long long)UINT32_MAX || v < INT32_MIN)
		return fail(err, errlen, "key \"%s\" does not fit 32 bits",
		    spec);
	if (v == 0)
		return fail(err, errlen, "key 0 is IPC_PRIVATE, not a shared key");
	if (v == -1 || v == (long long)UINT32_MAX)
		return fail(err, errlen, "key -1 is what a failed ftok returns");
	*key = (key_t)(int32_t)(uint32_t)v;
	return 0;
}
