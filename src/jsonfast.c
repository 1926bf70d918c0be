/*
 * jsonfast.c - request lines parsed without jansson's lexer reading all
 * of them; jansson still decides about every line these do not take.
 */
#include <stdint.h>
#include <string.h>

#include "daemon.h"

/*
 * Big blobs out of the DOM. jansson reads a string byte by byte and copies
 * it, which made a 1 MiB shm.put spend most of its time in the parser and
 * hold the blob three times over. A base64 value needs no escapes, so in
 * a long line the top-level "data_b64" string is found by a structural
 * scan, jansson parses the line without that string's contents (it sees
 * "data_b64":"" and validates everything else as usual), and the handler
 * decodes the text straight from the line into its own buffer.
 *
 * Strictness is unchanged, because the fast path is taken only when the
 * skipped bytes are exactly what jansson would have put in the string:
 * printable ASCII with no backslash (control characters, bytes >= 0x80
 * and escapes all take the ordinary path, so their errors are jansson's).
 * Skipping them changes no other token, so jansson's verdict on the rest
 * (syntax, duplicate keys, types, UTF-8) is the same; error positions
 * past the skipped bytes are moved back to where they are in the line.
 */
size_t proto_big_line = 4096;
uint64_t proto_fast_lines;	/* parsed with data_b64 left out */

static size_t
skip_ws(const char *p, size_t i, size_t len)
{
	while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' ||
	    p[i] == '\r'))
		i++;
	return i;
}

/* p[i] is '"': the index just past the closing quote, or 0. */
static size_t
skip_string(const char *p, size_t i, size_t len)
{
	for (i++; i < len; i++) {
		if (p[i] == '"')
			return i + 1;
		if (p[i] == '\\')
			i++;
	}
	return 0;
}

/* Past one value of any kind (brackets are only counted: whatever is
 * wrong in there, jansson reports it before the skipped string), or 0. */
static size_t
skip_value(const char *p, size_t i, size_t len)
{
	size_t depth = 0, start = i;

	while (i < len) {
		switch (p[i]) {
		case '"':
			if ((i = skip_string(p, i, len)) == 0)
				return 0;
			if (depth == 0)
				return i;
			continue;
		case '{':
		case '[':
			depth++;
			break;
		case '}':
		case ']':
			if (depth == 0)
				return i > start ? i : 0;
			if (--depth == 0)
				return i + 1;
			break;
		case ',':
		case ' ':
		case '\t':
		case '\r':
		case '\n':
			if (depth == 0)
				return i > start ? i : 0;
			break;
		}
		i++;
	}
	return depth == 0 && i > start ? i : 0;
}

typedef signed char v16sc __attribute__((vector_size(16)));

/* Bytes a JSON string holds as they are and that we take: 0x20..0x7f
 * but '"' and '\\' (a lookup, for the short strings of most requests). */
#define R8(c)	((c) >= 0x20 && (c) != '"' && (c) != '\\' && (c) < 0x80)
#define R8x8(c)	R8(c), R8((c) + 1), R8((c) + 2), R8((c) + 3), \
		R8((c) + 4), R8((c) + 5), R8((c) + 6), R8((c) + 7)
#define R8x32(c) R8x8(c), R8x8((c) + 8), R8x8((c) + 16), R8x8((c) + 24)
static const unsigned char plain_byte[256] = {
	R8x32(0), R8x32(32), R8x32(64), R8x32(96)
};

/*
 * From i, the first byte that a base64 string cannot hold as is: '"',
 * '\\', a control character or a byte >= 0x80 (negative as signed).
 * Sixteen bytes at a time while they last; the first bad lane of a block
 * is found from the compare mask (lanes are 0 or 0xff, little-endian
 * or not: the lowest address is found by scanning the mask's bytes).
 */
static size_t
plain_run(const char *p, size_t i, size_t len)
{
	unsigned char mask[16];
	v16sc v, bad;
	uint64_t lo, hi;
	size_t k;

	for (; i + 16 <= len; i += 16) {
		memcpy(&v, p + i, 16);
		bad = (v < 0x20) | (v == '"') | (v == '\\');
		memcpy(&lo, &bad, 8);
		memcpy(&hi, (char *)&bad + 8, 8);
		if ((lo | hi) == 0)
			continue;
		memcpy(mask, &bad, 16);
		for (k = 0; mask[k] == 0; k++)
			;
		return i + k;
	}
	while (i < len && plain_byte[(unsigned char)p[i]])
		i++;
	return i;
}

/*
 * The contents of the top-level "data_b64" string of an object, if it is
 * plain (see above): *start and *n; else 0. The scan follows the JSON
 * grammar only as far as telling strings, keys and nesting apart.
 */
static int
find_b64(const char *p, size_t len, size_t *start, size_t *n)
{
	static const char key[] = "\"data_b64\"";
	size_t i, k, e;
	int found = 0, is_b64;

	i = skip_ws(p, 0, len);
	if (i >= len || p[i] != '{')
		return 0;
	i = skip_ws(p, i + 1, len);
	if (i < len && p[i] == '}')
		return 0;
	for (;;) {
		if (i >= len || p[i] != '"' || (k = skip_string(p, i, len)) == 0)
			return 0;
		is_b64 = k - i == sizeof(key) - 1 &&
		    memcmp(p + i, key, sizeof(key) - 1) == 0;
		i = skip_ws(p, k, len);
		if (i >= len || p[i] != ':')
			return 0;
		i = skip_ws(p, i + 1, len);
		if (is_b64 && !found && i < len && p[i] == '"') {
			e = plain_run(p, i + 1, len);
			if (e >= len || p[e] != '"')
				return 0;	/* an escape, or worse */
			*start = i + 1;
			*n = e - (i + 1);
			found = 1;
			i = e + 1;
		} else if ((i = skip_value(p, i, len)) == 0)
			return 0;
		i = skip_ws(p, i, len);
		if (i < len && p[i] == ',') {
			i = skip_ws(p, i + 1, len);
			continue;
		}
		if (i < len && p[i] == '}')
			return found;
		return 0;
	}
}

/* The line without the bytes [cut, cut + cutlen), for jansson. */
struct line_src {
	const char	*p;
	size_t		 len, pos, cut, cutlen;
	int		 skipped;
};

static size_t
line_read(void *buf, size_t buflen, void *arg)
{
	struct line_src *s = arg;
	size_t n;

	if (!s->skipped && s->pos == s->cut) {
		s->pos += s->cutlen;
		s->skipped = 1;
	}
	n = (s->skipped ? s->len : s->cut) - s->pos;
	if (n > buflen)
		n = buflen;
	memcpy(buf, s->p + s->pos, n);
	s->pos += n;
	return n;		/* 0: the end */
}

/* Parse a long line with its data_b64 string left out; NULL with
 * *fallback set when the line takes the ordinary path after all. */
json_t *
load_big(const char *line, size_t len, json_error_t *jerr,
    const char **b64, size_t *b64len, int *fallback)
{
	struct line_src src = { line, len, 0, 0, 0, 0 };
	json_t *req, *v;

	*fallback = 1;
	if (!find_b64(line, len, &src.cut, &src.cutlen))
		return NULL;
	*fallback = 0;
	proto_fast_lines++;
	req = json_load_callback(line_read, &src, JSON_DECODE_ANY |
	    JSON_REJECT_DUPLICATES, jerr);
	if (req == NULL) {
		if (jerr->position > (int)src.cut)
			jerr->position += (int)src.cutlen;
		return NULL;
	}
	v = json_object_get(req, "data_b64");
	if (!json_is_string(v) || json_string_length(v) != 0) {
		/* cannot happen: the scan found the top-level member */
		json_decref(req);
		*fallback = 1;
		return NULL;
	}
	*b64 = line + src.cut;
	*b64len = src.cutlen;
	return req;
}

/*
 * Small lines: the members of a flat request, without jansson's lexer.
 *
 * Almost every request is one flat object of short ASCII strings and
 * small integers, like {"op":"queue.send","queue":"jobs","text":"hi"}.
 * jansson reads its input a byte at a time through a stream, UTF-8
 * checking and buffering each one, which made json_loadb three quarters
 * of the daemon's own work per queue.send (doc/performance.md). Here such
 * a line is recognized in one pass and its members' values built
 * straight from the bytes, with the same jansson calls its parser ends
 * in; there is no object around them to build, hash and free, as
 * proto_line only ever walks the members once.
 *
 * The recognized language is a strict subset of what jansson accepts, and
 * for it the members are the ones jansson would build, in the same
 * order: an object (whitespace as JSON allows it around every token)
 * whose keys are strings and whose values are strings, integers of at
 * most 18 digits (no leading zeros), true, false or null, where a string
 * has no escapes and no control characters, a key is ASCII and a value is
 * ASCII or UTF-8 that utf8_valid() passes (jansson's rules). Anything
 * else - nesting, reals, escapes, control characters or bytes that are
 * not UTF-8 in a string, a duplicate key, a syntax error - returns -1
 * and the line goes to jansson, so every error, and every reply to an
 * unusual line, is jansson's as before. check_jsonfast, check_proto and
 * fuzz_request compare the two on every line they see.
 */
int	 proto_flat = 1;
uint64_t proto_flat_lines;	/* lines load_flat took */

/* p[*i] is '"': the plain string's bytes, *i moved past it; or NULL.
 * Values may be UTF-8 (keys, which are all ASCII, may not). */
static const char *
plain_string(const char *p, size_t *i, size_t len, size_t *n, int utf8)
{
	size_t s = *i + 1, e = plain_run(p, s, len);

	if (utf8 && e < len && (unsigned char)p[e] >= 0x80) {
		/* UTF-8 text: valid by jansson's rules, or jansson's call */
		while (e < len && (plain_byte[(unsigned char)p[e]] ||
		    (unsigned char)p[e] >= 0x80))
			e++;
		if (utf8_valid(p + s, e - s) != e - s)
			return NULL;
	}
	if (e >= len || p[e] != '"')
		return NULL;
	*n = e - s;
	*i = e + 1;
	return p + s;
}

/* -?(0|[1-9][0-9]{0,17}): at most 18 digits never overflow an int64;
 * longer ones, which jansson may refuse as too big, are left to it. */
static json_t *
small_integer(const char *p, size_t *i, size_t len)
{
	size_t k = *i, first;
	int64_t v = 0;
	int neg = 0;

	if (k < len && p[k] == '-') {
		neg = 1;
		k++;
	}
	first = k;
	while (k < len && k - first < 18 && p[k] >= '0' && p[k] <= '9')
		v = v * 10 + (p[k++] - '0');
	if (k == first || (k < len && p[k] >= '0' && p[k] <= '9') ||
	    (p[first] == '0' && k - first > 1))
		return NULL;
	*i = k;
	return json_integer(neg ? -v : v);
}

static json_t *
word(const char *p, size_t *i, size_t len, const char *w, json_t *v)
{
	size_t n = strlen(w);

	if (len - *i < n || memcmp(p + *i, w, n) != 0)
		return NULL;
	*i += n;
	return v;
}

/* One value of the subset at p[*i], *i moved past it; or NULL. */
static json_t *
flat_value(const char *p, size_t *i, size_t len)
{
	const char *s;
	size_t n;

	switch (p[*i]) {
	case '"':
		if ((s = plain_string(p, i, len, &n, 1)) == NULL)
			return NULL;
		return json_stringn_nocheck(s, n);
	case 't':
		return word(p, i, len, "true", json_true());
	case 'f':
		return word(p, i, len, "false", json_false());
	case 'n':
		return word(p, i, len, "null", json_null());
	default:
		return small_integer(p, i, len);
	}
}

/*
 * After a value, the next byte must end it as jansson's lexer would end
 * it: whitespace, ',' or '}' ("1.5", "1e3", "truex" go to jansson).
 */
static int
value_ends(const char *p, size_t i, size_t len)
{
	return i < len && (p[i] == ',' || p[i] == '}' || p[i] == ' ' ||
	    p[i] == '\t' || p[i] == '\r' || p[i] == '\n');
}

/* The value of the member with that key, or NULL. */
json_t *
members_get(const struct member *m, int n, const char *key, size_t klen)
{
	int i;

	for (i = 0; i < n; i++) {
		if (member_is(&m[i], key, klen))
			return m[i].v;
	}
	return NULL;
}

void
members_free(struct member *m, int n)
{
	while (n-- > 0)
		json_decref(m[n].v);
}

/*
 * The members of a flat request line, in order, into m[0..max): their
 * keys point into the line, their values are new. Returns how many, or
 * -1 (nothing kept) for a line that is not in the subset, or has more
 * than max members, or when proto_flat is off.
 */
int
load_flat(const char *p, size_t len, struct member *m, int max)
{
	const char *key;
	size_t i, klen;
	json_t *v;
	int n = 0;

	if (!proto_flat)
		return -1;
	i = skip_ws(p, 0, len);
	if (i >= len || p[i] != '{')
		return -1;
	i = skip_ws(p, i + 1, len);
	if (i < len && p[i] == '}')
		goto end;
	for (;;) {
		if (n == max || i >= len || p[i] != '"' ||
		    (key = plain_string(p, &i, len, &klen, 0)) == NULL)
			goto fail;
		i = skip_ws(p, i, len);
		if (i >= len || p[i] != ':')
			goto fail;
		i = skip_ws(p, i + 1, len);
		if (i >= len || (v = flat_value(p, &i, len)) == NULL)
			goto fail;
		/* a duplicate key is jansson's error to report */
		if (!value_ends(p, i, len) ||
		    members_get(m, n, key, klen) != NULL) {
			json_decref(v);
			goto fail;
		}
		m[n].key = key;
		m[n].klen = klen;
		m[n++].v = v;
		i = skip_ws(p, i, len);
		if (i < len && p[i] == ',') {
			i = skip_ws(p, i + 1, len);
			continue;
		}
		if (i < len && p[i] == '}')
			break;
		goto fail;
	}
end:
	if (skip_ws(p, i + 1, len) != len)
		goto fail;
	proto_flat_lines++;
	return n;
fail:
	members_free(m, n);
	return -1;
}

/* What load_flat took, as the object jansson would have made of it. */
static json_t *
load_flat_object(const char *line, size_t len)
{
	struct member m[64];
	json_t *obj;
	int i, n;

	if ((n = load_flat(line, len, m, 64)) < 0)
		return NULL;
	if ((obj = json_object()) == NULL)
		fatalx("out of memory");
	for (i = 0; i < n; i++) {
		if (json_object_setn_new_nocheck(obj, m[i].key, m[i].klen,
		    m[i].v) < 0)
			fatalx("out of memory");
	}
	return obj;
}

/*
 * How check_jsonfast and fuzz_request hold load_flat to its promise: 0
 * when it leaves the line to jansson, 1 when it takes it and jansson
 * parses the line to the same values in the same order (compared as
 * compact dumps, which tell 1 from "1" and 0 from false), -1 with why
 * filled in when they differ.
 */
int
load_flat_vs_jansson(const char *line, size_t len, char *why, size_t wlen)
{
	json_t *f = load_flat_object(line, len), *j;
	json_error_t e;
	char *fd = NULL, *jd = NULL;
	int rc = 1;

	if (f == NULL)
		return 0;
	j = json_loadb(line, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES,
	    &e);
	if (j == NULL) {
		snprintf(why, wlen, "load_flat took a line jansson refuses "
		    "(%s): %.*s", e.text, (int)len, line);
		rc = -1;
	} else {
		fd = json_dumps(f, JSON_COMPACT | JSON_ENCODE_ANY);
		jd = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
		if (fd == NULL || jd == NULL || strcmp(fd, jd) != 0) {
			snprintf(why, wlen, "load_flat and jansson differ on "
			    "%.*s:\n  load_flat: %s\n  jansson:   %s",
			    (int)len, line, fd ? fd : "?", jd ? jd : "?");
			rc = -1;
		}
	}
	free(fd);
	free(jd);
	json_decref(f);
	json_decref(j);
	return rc;
}
