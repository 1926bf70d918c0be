/*
 * phpser.c - PHP serialize() text to and from JSON values.
 *
 * PHP's shm_put_var and msg_send store serialize() text, and shm_get_var
 * and msg_receive unserialize it. Encoding lets a socket client store a
 * JSON value that PHP reads back as the native value; decoding reads what
 * PHP stored. Only what JSON and PHP share is spoken: null, booleans,
 * integers, floats, strings and arrays. Objects, enums and references are
 * refused by name, never instantiated.
 *
 * Floats are written the way PHP 8 writes them (serialize_precision -1):
 * the shortest digits that read back as the same double, in zend_gcvt's
 * layout, so that PHP and the bridge produce the same bytes for a value.
 *
 * The decoder's input is shared memory that other processes wrote, so it
 * is hostile: every length and count is checked against the bytes that
 * remain, nothing is read past len, and strings are copied before they
 * are checked for UTF-8 so that a concurrent writer cannot slip invalid
 * bytes past the check. It is strict where PHP is lax: integers and
 * lengths must be canonical, out-of-range integers and trailing bytes are
 * errors.
 */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"

#define MAX_DEPTH	64
#define MAX_FLOAT_TOK	350	/* bytes of a d: number, far above PHP's 24 */
#define SMALL_STR	256	/* strings up to this are copied on the stack */

/*
 * Encoding.
 */

struct obuf {
	char	*p;
	size_t	 len;
	size_t	 cap;
	int	 oom;
};

static void
add(struct obuf *b, const void *s, size_t n)
{
	size_t cap;
	char *p;

	if (b->oom)
		return;
	if (n > b->cap - b->len) {
		cap = b->cap ? b->cap : 64;
		while (cap - b->len < n) {
			if (cap > SIZE_MAX / 2) {
				b->oom = 1;
				return;
			}
			cap *= 2;
		}
		if ((p = realloc(b->p, cap)) == NULL) {
			b->oom = 1;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void
addf(struct obuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
addf(struct obuf *b, const char *fmt, ...)
{
	char tmp[64];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		b->oom = 1;
		return;
	}
	add(b, tmp, (size_t)n);
}

/* d * 10^scale, read back the way PHP's unserialize would read it. */
static double
readback(uint64_t d, int scale)
{
	char s[48];

	snprintf(s, sizeof(s), "%" PRIu64 "e%d", d, scale);
	return strtod(s, NULL);
}

/*
 * The shortest digits that read back as v (finite, > 0), as zend_dtoa's
 * mode 0 finds them: v = 0.digits * 10^decpt. For each length, the
 * correctly rounded candidate is the closest; when it misses, only its
 * neighbour across v can hit, which happens where v is a power of two and
 * the gap below it is half the gap above.
 */
static void
shortest(double v, char digits[24], int *decpt)
{
	char tmp[48], *s;
	uint64_t d, cand[3];
	int p, i, exp, scale;
	size_t n;

	for (p = 1; p <= 17; p++) {
		snprintf(tmp, sizeof(tmp), "%.*e", p - 1, v);
		d = 0;
		for (s = tmp; *s != 'e' && *s != '\0'; s++)
			if (*s >= '0' && *s <= '9')
				d = d * 10 + (uint64_t)(*s - '0');
		exp = *s == 'e' ? atoi(s + 1) : 0;
		scale = exp - (p - 1);
		cand[0] = d;
		cand[1] = d + 1;
		cand[2] = d - 1;
		for (i = 0; i < 3; i++) {
			if (cand[i] == 0 || (i > 0 && p == 17))
				continue;
			if (readback(cand[i], scale) == v)
				goto found;
		}
	}
	/* NOTREACHED: 17 significant digits always read back */
	i = 0;
	cand[0] = d;
found:
	snprintf(tmp, sizeof(tmp), "%" PRIu64, cand[i]);
	n = strlen(tmp);
	*decpt = (int)n + scale;
	while (n > 1 && tmp[n - 1] == '0')
		n--;
	memcpy(digits, tmp, n);
	digits[n] = '\0';
}

/*
 * v as serialize() prints it: zend_gcvt with 17 digits of precision, fed
 * the shortest digits. Exponent form below 1e-4 and from 1e17 up, with at
 * least one digit after the point ("1.0E+25"); plain digits otherwise.
 */
static int
fmt_double(double v, char *out, size_t outlen)
{
	char digits[24], *o = out;
	int decpt, n, i;

	if (!isfinite(v) || outlen < 48)
		return -1;
	if (signbit(v)) {
		*o++ = '-';
		v = -v;
	}
	if (v == 0) {
		*o++ = '0';
		*o = '\0';
		return 0;
	}
	shortest(v, digits, &decpt);
	n = (int)strlen(digits);
	if (decpt < -3 || decpt > 17) {
		*o++ = digits[0];
		*o++ = '.';
		if (n == 1)
			*o++ = '0';
		for (i = 1; i < n; i++)
			*o++ = digits[i];
		snprintf(o, outlen - (size_t)(o - out), "E%c%d",
		    decpt - 1 < 0 ? '-' : '+', abs(decpt - 1));
	} else if (decpt <= 0) {
		*o++ = '0';
		*o++ = '.';
		for (i = decpt; i < 0; i++)
			*o++ = '0';
		for (i = 0; i < n; i++)
			*o++ = digits[i];
		*o = '\0';
	} else {
		for (i = 0; i < decpt; i++)
			*o++ = i < n ? digits[i] : '0';
		if (n > decpt) {
			*o++ = '.';
			for (i = decpt; i < n; i++)
				*o++ = digits[i];
		}
		*o = '\0';
	}
	return 0;
}

/*
 * The int64 PHP turns the array key s[0..n) into, as
 * _zend_handle_numeric_str_ex does: 0 or -?[1-9][0-9]* within range.
 */
static int
int_key(const char *s, size_t n, json_int_t *out)
{
	size_t i = 0;
	uint64_t v = 0, max = INT64_MAX;
	int neg = 0;

	if (n > 0 && s[0] == '-') {
		neg = 1;
		max = (uint64_t)INT64_MAX + 1;
		i = 1;
	}
	if (i == n || (s[i] == '0' && n > 1))
		return 0;
	for (; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return 0;
		if (v > (max - (uint64_t)(s[i] - '0')) / 10)
			return 0;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = neg ? (json_int_t)(0 - v) : (json_int_t)v;
	return 1;
}

static void
add_str(struct obuf *b, const char *s, size_t n)
{
	addf(b, "s:%zu:\"", n);
	add(b, s, n);
	add(b, "\";", 2);
}

static int
encode(struct obuf *b, json_t *v, int depth, char *err, size_t errlen)
{
	const char *key;
	char num[48];
	json_int_t ik;
	json_t *e;
	size_t i, klen;

	switch (json_typeof(v)) {
	case JSON_NULL:
		add(b, "N;", 2);
		return 0;
	case JSON_TRUE:
		add(b, "b:1;", 4);
		return 0;
	case JSON_FALSE:
		add(b, "b:0;", 4);
		return 0;
	case JSON_INTEGER:
		addf(b, "i:%" JSON_INTEGER_FORMAT ";", json_integer_value(v));
		return 0;
	case JSON_REAL:
		if (fmt_double(json_real_value(v), num, sizeof(num)) < 0) {
			snprintf(err, errlen, "a float that is not finite has "
			    "no serialize() form here");
			return -1;
		}
		addf(b, "d:%s;", num);
		return 0;
	case JSON_STRING:
		add_str(b, json_string_value(v), json_string_length(v));
		return 0;
	case JSON_ARRAY:
	case JSON_OBJECT:
		break;
	}
	if (depth >= MAX_DEPTH) {
		snprintf(err, errlen, "value nests arrays and objects deeper "
		    "than %d", MAX_DEPTH);
		return -1;
	}
	if (json_is_array(v)) {
		addf(b, "a:%zu:{", json_array_size(v));
		json_array_foreach(v, i, e) {
			addf(b, "i:%zu;", i);
			if (encode(b, e, depth + 1, err, errlen) < 0)
				return -1;
		}
	} else {
		addf(b, "a:%zu:{", json_object_size(v));
		json_object_keylen_foreach(v, key, klen, e) {
			if (int_key(key, klen, &ik))
				addf(b, "i:%" JSON_INTEGER_FORMAT ";", ik);
			else
				add_str(b, key, klen);
			if (encode(b, e, depth + 1, err, errlen) < 0)
				return -1;
		}
	}
	add(b, "}", 1);
	return 0;
}

char *
phpser_encode(json_t *v, size_t *len, char *err, size_t errlen)
{
	struct obuf b = { NULL, 0, 0, 0 };
	char dummy[1];

	if (err == NULL || errlen == 0) {
		err = dummy;
		errlen = sizeof(dummy);
	}
	if (v == NULL) {
		snprintf(err, errlen, "no value");
		return NULL;
	}
	if (encode(&b, v, 0, err, errlen) < 0) {
		free(b.p);
		return NULL;
	}
	add(&b, "", 1);		/* a NUL after the text, not counted */
	if (b.oom) {
		free(b.p);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	*len = b.len - 1;
	return b.p;
}

/*
 * Decoding.
 */

struct dec {
	const unsigned char *s;
	size_t		 len;
	size_t		 pos;
	int		 depth;
	int		 code;
	char		*err;
	size_t		 errlen;
};

static json_t *
fail(struct dec *d, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static json_t *
fail(struct dec *d, int code, const char *fmt, ...)
{
	va_list ap;

	if (d->code != 0)
		return NULL;
	d->code = code;
	va_start(ap, fmt);
	vsnprintf(d->err, d->errlen, fmt, ap);
	va_end(ap);
	return NULL;
}

/* Fail at pos, saying what should be there and what is. */
static json_t *
expected(struct dec *d, const char *what)
{
	unsigned char c;

	if (d->pos >= d->len)
		return fail(d, PHPSER_MALFORMED, "expected %s at offset %zu, "
		    "found end of input", what, d->pos);
	c = d->s[d->pos];
	if (c > 0x20 && c < 0x7f)
		return fail(d, PHPSER_MALFORMED, "expected %s at offset %zu, "
		    "found '%c'", what, d->pos, c);
	return fail(d, PHPSER_MALFORMED, "expected %s at offset %zu, "
	    "found byte 0x%02x", what, d->pos, c);
}

static int
peek(struct dec *d, unsigned char c)
{
	return d->pos < d->len && d->s[d->pos] == c;
}

static int
isdig(struct dec *d)
{
	return d->pos < d->len && d->s[d->pos] >= '0' && d->s[d->pos] <= '9';
}

static int
lit(struct dec *d, unsigned char c, const char *what)
{
	if (!peek(d, c)) {
		expected(d, what);
		return -1;
	}
	d->pos++;
	return 0;
}

/* A canonical decimal (0 or [1-9][0-9]*) of at most max. */
static int
unum(struct dec *d, uint64_t max, uint64_t *out, const char *what)
{
	size_t at = d->pos;
	uint64_t v = 0, c;

	if (!isdig(d)) {
		expected(d, what);
		return -1;
	}
	if (d->s[d->pos] == '0') {
		d->pos++;
		if (isdig(d)) {
			fail(d, PHPSER_MALFORMED, "number at offset %zu has a "
			    "leading zero", at);
			return -1;
		}
		*out = 0;
		return 0;
	}
	while (isdig(d)) {
		c = (uint64_t)(d->s[d->pos] - '0');
		if (v > (max - c) / 10) {
			fail(d, PHPSER_MALFORMED, "number at offset %zu is out "
			    "of range", at);
			return -1;
		}
		v = v * 10 + c;
		d->pos++;
	}
	*out = v;
	return 0;
}

/* A canonical int64: 0 or -?[1-9][0-9]*. */
static int
inum(struct dec *d, int64_t *out)
{
	uint64_t v;
	int neg = 0;

	if (peek(d, '-')) {
		neg = 1;
		d->pos++;
	}
	if (unum(d, neg ? (uint64_t)INT64_MAX + 1 : INT64_MAX, &v,
	    "a digit") < 0)
		return -1;
	if (neg && v == 0) {
		fail(d, PHPSER_MALFORMED, "integer at offset %zu is -0",
		    d->pos - 2);
		return -1;
	}
	*out = neg ? (int64_t)(0 - v) : (int64_t)v;
	return 0;
}

/*
 * <len>:"<bytes>" with pos on the length: the bytes' offset and length.
 * The length is checked against what remains before it is trusted.
 */
static int
lenstr(struct dec *d, size_t *start, size_t *n)
{
	size_t at = d->pos;
	uint64_t v;

	if (unum(d, SIZE_MAX, &v, "a string length") < 0 ||
	    lit(d, ':', "':'") < 0 || lit(d, '"', "'\"'") < 0)
		return -1;
	if (v >= d->len - d->pos) {
		fail(d, PHPSER_MALFORMED, "string length %" PRIu64 " at offset "
		    "%zu runs past the end of the input (%zu bytes left)",
		    v, at, d->len - d->pos);
		return -1;
	}
	*start = d->pos;
	*n = (size_t)v;
	d->pos += (size_t)v;
	if (!peek(d, '"')) {
		fail(d, PHPSER_MALFORMED, "string at offset %zu is not %zu "
		    "bytes long: expected '\"' at offset %zu", *start,
		    *n, d->pos);
		return -1;
	}
	d->pos++;
	return 0;
}

/*
 * A private copy of the string at start, checked for UTF-8: the input
 * may change under us, the copy cannot. Free it unless it is small.
 */
static char *
str_copy(struct dec *d, size_t start, size_t n, char small[SMALL_STR],
    const char *what)
{
	char *c = small;
	size_t ok;

	if (n > SMALL_STR && (c = malloc(n)) == NULL) {
		fail(d, PHPSER_UNSUPPORTED, "out of memory for the %zu-byte "
		    "%s at offset %zu", n, what, start);
		return NULL;
	}
	if (n > 0)
		memcpy(c, d->s + start, n);
	if ((ok = utf8_valid(c, n)) != n) {
		if (c != small)
			free(c);
		fail(d, PHPSER_UNSUPPORTED, "%s is not UTF-8 at offset %zu",
		    what, start + ok);
		return NULL;
	}
	return c;
}

/* Up to 64 bytes of a class name for an error, printable ASCII only. */
static void
printable(const unsigned char *s, size_t n, char *out, size_t outlen)
{
	size_t i, o = 0;

	for (i = 0; i < n && i < 64 && o + 5 < outlen; i++) {
		if (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '\\')
			out[o++] = (char)s[i];
		else
			o += (size_t)snprintf(out + o, outlen - o, "\\x%02x",
			    s[i]);
	}
	if (i < n && o + 4 < outlen) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
}

/* O:, C: and E: headers: <len>:"<name>", named in the refusal. */
static json_t *
named(struct dec *d, const char *kind)
{
	size_t at = d->pos, start, n;
	char name[300];

	d->pos += 2;
	if (lenstr(d, &start, &n) < 0)
		return NULL;
	printable(d->s + start, n, name, sizeof(name));
	return fail(d, PHPSER_UNSUPPORTED, "%s \"%s\" at offset %zu has no "
	    "JSON equivalent", kind, name, at);
}

/*
 * d: numbers: -?[0-9]+(.[0-9]+)?([eE][+-]?[0-9]+)?, which covers what
 * PHP writes and what other writers' shortest forms look like, plus INF,
 * -INF and NAN, which JSON cannot carry. Read through a copy without a
 * decimal point, so that LC_NUMERIC cannot matter. at is the d's offset.
 */
static json_t *
real(struct dec *d, size_t at)
{
	static const char *const special[] = { "INF;", "-INF;", "NAN;" };
	char buf[MAX_FLOAT_TOK + 16];
	size_t i, n, o = 0;
	long exp = 0, fracn = 0;
	int eneg = 0;
	double v;

	for (i = 0; i < 3; i++) {
		n = strlen(special[i]);
		if (n <= d->len - d->pos &&
		    memcmp(d->s + d->pos, special[i], n) == 0)
			return fail(d, PHPSER_UNSUPPORTED, "float %.*s at "
			    "offset %zu has no JSON equivalent", (int)n - 1,
			    special[i], at);
	}
	if (peek(d, '-')) {
		buf[o++] = '-';
		d->pos++;
	}
	if (!isdig(d))
		return expected(d, "a digit");
	while (isdig(d)) {
		if (o >= MAX_FLOAT_TOK)
			goto toolong;
		buf[o++] = (char)d->s[d->pos++];
	}
	if (peek(d, '.')) {
		d->pos++;
		if (!isdig(d))
			return expected(d, "a digit");
		while (isdig(d)) {
			if (o >= MAX_FLOAT_TOK)
				goto toolong;
			buf[o++] = (char)d->s[d->pos++];
			fracn++;
		}
	}
	if (peek(d, 'e') || peek(d, 'E')) {
		d->pos++;
		if (peek(d, '+') || peek(d, '-'))
			eneg = d->s[d->pos++] == '-';
		if (!isdig(d))
			return expected(d, "a digit");
		while (isdig(d)) {
			if (d->pos - at >= MAX_FLOAT_TOK)
				goto toolong;
			if (exp < 100000)
				exp = exp * 10 + (d->s[d->pos] - '0');
			d->pos++;
		}
	}
	if (eneg)
		exp = -exp;
	snprintf(buf + o, sizeof(buf) - o, "e%ld", exp - fracn);
	v = strtod(buf, NULL);
	if (!isfinite(v))
		return fail(d, PHPSER_UNSUPPORTED, "float at offset %zu is too "
		    "large: PHP reads it as INF, which JSON cannot carry", at);
	if (lit(d, ';', "';'") < 0)
		return NULL;
	return json_real(v);
toolong:
	return fail(d, PHPSER_MALFORMED, "float at offset %zu is longer than "
	    "%d bytes", at, MAX_FLOAT_TOK);
}

static json_t	*value(struct dec *);

static json_t *
oom(struct dec *d)
{
	return fail(d, PHPSER_UNSUPPORTED, "out of memory at offset %zu",
	    d->pos);
}

/* An array that turned out not to be a list, as an object "0".."n-1". */
static json_t *
to_object(json_t *arr)
{
	json_t *obj, *e;
	char k[24];
	size_t i;

	if ((obj = json_object()) == NULL)
		return NULL;
	json_array_foreach(arr, i, e) {
		snprintf(k, sizeof(k), "%zu", i);
		if (json_object_set_nocheck(obj, k, e) < 0) {
			json_decref(obj);
			return NULL;
		}
	}
	return obj;
}

/* Whether obj's keys are "0".."n-1" in order: PHP's array_is_list. */
static json_t *
maybe_list(json_t *obj)
{
	const char *key;
	json_t *arr, *e;
	char k[24];
	size_t i = 0, klen;

	json_object_keylen_foreach(obj, key, klen, e) {
		snprintf(k, sizeof(k), "%zu", i++);
		if (klen != strlen(k) || memcmp(key, k, klen) != 0)
			return obj;
	}
	if ((arr = json_array()) == NULL)
		return obj;
	json_object_foreach(obj, key, e) {
		if (json_array_append(arr, e) < 0) {
			json_decref(arr);
			return obj;
		}
	}
	json_decref(obj);
	return arr;
}

/*
 * a:<n>:{<key><value>...}. Keys are i: or s:, as PHP stores them; a
 * canonical decimal string key is the same key as that integer, and a key
 * that comes again replaces the value in its first place, as unserialize
 * does. Keys 0..n-1 in order make a JSON array, anything else an object.
 */
static json_t *
array(struct dec *d)
{
	char small[SMALL_STR], num[24], idx[24], *key;
	json_t *arr, *obj = NULL, *v;
	size_t at = d->pos, kstart, klen;
	uint64_t count, i;
	int64_t ik;
	int r;

	if (d->depth >= MAX_DEPTH)
		return fail(d, PHPSER_MALFORMED, "array at offset %zu nests "
		    "deeper than %d", at, MAX_DEPTH);
	d->pos += 2;
	if (unum(d, INT64_MAX, &count, "an element count") < 0 ||
	    lit(d, ':', "':'") < 0 || lit(d, '{', "'{'") < 0)
		return NULL;
	if ((arr = json_array()) == NULL)
		return oom(d);
	d->depth++;
	for (i = 0; i < count; i++) {
		if (peek(d, 'i') && d->pos + 1 < d->len &&
		    d->s[d->pos + 1] == ':') {
			d->pos += 2;
			if (inum(d, &ik) < 0 || lit(d, ';', "';'") < 0)
				goto fail;
			snprintf(num, sizeof(num), "%" PRId64, ik);
			key = num;
			klen = strlen(num);
		} else if (peek(d, 's') && d->pos + 1 < d->len &&
		    d->s[d->pos + 1] == ':') {
			d->pos += 2;
			if (lenstr(d, &kstart, &klen) < 0 ||
			    lit(d, ';', "';'") < 0)
				goto fail;
			if ((key = str_copy(d, kstart, klen, small,
			    "array key")) == NULL)
				goto fail;
			/* JSON text can carry it, but no JSON parser (jansson
			 * included) takes a NUL in an object key back */
			if (memchr(key, '\0', klen) != NULL) {
				if (key != small)
					free(key);
				fail(d, PHPSER_UNSUPPORTED, "array key at offset "
				    "%zu contains a NUL byte", kstart);
				goto fail;
			}
		} else {
			expected(d, "an array key (i: or s:)");
			goto fail;
		}
		v = value(d);
		if (v != NULL && obj == NULL) {
			snprintf(idx, sizeof(idx), "%zu", json_array_size(arr));
			if (klen == strlen(idx) && memcmp(key, idx, klen) == 0)
				r = json_array_append_new(arr, v);
			else if ((obj = to_object(arr)) == NULL) {
				json_decref(v);
				r = -1;
			} else
				r = 1;
		} else
			r = 1;
		if (v != NULL && r == 1)
			r = json_object_setn_new_nocheck(obj, key, klen, v);
		if (key != num && key != small)
			free(key);
		if (v == NULL)
			goto fail;
		if (r < 0) {
			oom(d);
			goto fail;
		}
	}
	if (lit(d, '}', "'}'") < 0)
		goto fail;
	d->depth--;
	if (obj == NULL)
		return arr;
	json_decref(arr);
	/* keys that came again may have left a list behind */
	if (json_object_size(obj) < count)
		obj = maybe_list(obj);
	return obj;
fail:
	json_decref(arr);
	json_decref(obj);
	return NULL;
}

static json_t *
value(struct dec *d)
{
	char small[SMALL_STR], *c;
	size_t at = d->pos, start, n;
	int64_t iv;
	json_t *v;

	if (d->pos < d->len && d->s[d->pos] == 'N') {
		d->pos++;
		if (lit(d, ';', "';'") < 0)
			return NULL;
		return json_null();
	}
	if (d->len - d->pos < 2 || d->s[d->pos + 1] != ':')
		return expected(d, "a value (N;, b:, i:, d:, s: or a:)");
	switch (d->s[d->pos]) {
	case 'b':
		d->pos += 2;
		if (!peek(d, '0') && !peek(d, '1'))
			return expected(d, "0 or 1");
		v = json_boolean(d->s[d->pos] == '1');
		d->pos++;
		if (lit(d, ';', "';'") < 0)
			return NULL;
		return v;
	case 'i':
		d->pos += 2;
		if (inum(d, &iv) < 0 || lit(d, ';', "';'") < 0)
			return NULL;
		if ((v = json_integer((json_int_t)iv)) == NULL)
			return oom(d);
		return v;
	case 'd':
		d->pos += 2;
		if ((v = real(d, at)) == NULL && d->code == 0)
			return oom(d);
		return v;
	case 's':
		d->pos += 2;
		if (lenstr(d, &start, &n) < 0 || lit(d, ';', "';'") < 0)
			return NULL;
		if ((c = str_copy(d, start, n, small, "string")) == NULL)
			return NULL;
		v = json_stringn_nocheck(c, n);
		if (c != small)
			free(c);
		if (v == NULL)
			return oom(d);
		return v;
	case 'a':
		return array(d);
	case 'O':
		return named(d, "object of class");
	case 'C':
		return named(d, "custom-serialized object of class");
	case 'E':
		return named(d, "enum case");
	case 'r':
	case 'R':
		return fail(d, PHPSER_UNSUPPORTED, "reference (%c:) at offset "
		    "%zu has no JSON equivalent", d->s[d->pos], at);
	case 'S':
		return fail(d, PHPSER_UNSUPPORTED, "escaped string (S:) at "
		    "offset %zu is not supported", at);
	}
	return expected(d, "a value (N;, b:, i:, d:, s: or a:)");
}

json_t *
phpser_decode(const char *buf, size_t len, int *code, char *err,
    size_t errlen)
{
	struct dec d;
	char dummy[1];
	json_t *v;

	if (err == NULL || errlen == 0) {
		err = dummy;
		errlen = sizeof(dummy);
	}
	memset(&d, 0, sizeof(d));
	d.s = (const unsigned char *)buf;
	d.len = buf == NULL ? 0 : len;
	d.err = err;
	d.errlen = errlen;
	if ((v = value(&d)) != NULL && d.pos != d.len) {
		json_decref(v);
		v = fail(&d, PHPSER_MALFORMED, "trailing bytes at offset %zu "
		    "after the value (%zu bytes)", d.pos, d.len - d.pos);
	}
	if (v == NULL && d.code == 0)
		oom(&d);
	if (code != NULL)
		*code = v == NULL ? d.code : 0;
	return v;
}
