/*
 * fuzz_phpser.c - libFuzzer target over phpser_decode(), whose input is
 * PHP serialize() text that other processes wrote into shared memory or a
 * queue: hostile bytes.
 *
 * Invariants, checked with abort() so that libFuzzer reports them:
 *
 *   - a failed decode says why: *code is PHPSER_MALFORMED or
 *     PHPSER_UNSUPPORTED and err is a non-empty UTF-8 message (the daemon
 *     puts it in a JSON string, decode_error); the same input decodes the
 *     same way without an err buffer;
 *   - a decoded value is valid JSON text once dumped (its strings are
 *     UTF-8): json_loads (JSON_ALLOW_NUL) reads back an equal value. It
 *     could not when an array key held a NUL byte (jansson refuses
 *     \u0000 in keys; refused by the decoder since d21b8b4);
 *     FUZZ_ALLOW_NUL_KEYS=1 tolerates that;
 *   - it has a serialize() form: phpser_encode succeeds, with a NUL after
 *     the text;
 *   - that form decodes again to an equal value (json_equal, extended to
 *     keys that hold NUL bytes), and encoding
 *     that value gives the very same bytes: encode(decode(x)) is a fixed
 *     point.
 *
 * Built twice: with -fsanitize=fuzzer as fuzz/fuzz_phpser, and with
 * fuzz/regress_main.c as fuzz/regress_phpser for make check.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);
const char	*__ubsan_default_options(void);

/*
 * UBSan findings must stop the run, so that libFuzzer keeps the input,
 * even when the build lets UBSan recover (no -fno-sanitize-recover);
 * UBSAN_OPTIONS still overrides this.
 */
const char *
__ubsan_default_options(void)
{
	return "halt_on_error=1:print_stacktrace=1";
}

static void fail(const uint8_t *, size_t, const char *, ...)
    __attribute__((format(printf, 3, 4), noreturn));

static void
fail(const uint8_t *in, size_t len, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "fuzz_phpser: INVARIANT VIOLATED: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\ninput (%zu bytes): %.*s\n", len,
	    (int)(len > 1000 ? 1000 : len), (const char *)in);
	abort();
}

/* json_equal, but for keys with NUL bytes too (jansson 2.14's compares
 * keys as C strings, so {"a\u0000b":1} is not equal to itself). */
static int
equal(json_t *a, json_t *b)
{
	const char *key;
	json_t *va, *vb;
	size_t i, klen;

	if (json_typeof(a) != json_typeof(b))
		return 0;
	if (json_is_array(a)) {
		if (json_array_size(a) != json_array_size(b))
			return 0;
		json_array_foreach(a, i, va) {
			if (!equal(va, json_array_get(b, i)))
				return 0;
		}
		return 1;
	}
	if (json_is_object(a)) {
		if (json_object_size(a) != json_object_size(b))
			return 0;
		json_object_keylen_foreach(a, key, klen, va) {
			if ((vb = json_object_getn(b, key, klen)) == NULL ||
			    !equal(va, vb))
				return 0;
		}
		return 1;
	}
	return json_equal(a, b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	char err[256], err2[256], *enc1, *enc2, *dump;
	size_t n1, n2;
	json_error_t jerr;
	json_t *v, *v2, *v3, *s;
	int code = -1, code2 = -1;

	memset(err, 0x55, sizeof(err));
	v = phpser_decode(in, size, &code, err, sizeof(err));
	v2 = phpser_decode(in, size, NULL, NULL, 0);
	if ((v == NULL) != (v2 == NULL))
		fail(data, size, "decodes differently without an err buffer");
	json_decref(v2);
	if (v == NULL) {
		if (code != PHPSER_MALFORMED && code != PHPSER_UNSUPPORTED)
			fail(data, size, "failed with code %d", code);
		if (memchr(err, '\0', sizeof(err)) == NULL || err[0] == '\0')
			fail(data, size, "failed without an error message");
		/* payload_put puts it in a JSON string */
		if ((s = json_string(err)) == NULL)
			fail(data, size, "error message is not UTF-8: %s", err);
		json_decref(s);
		return 0;
	}
	if (code != 0)
		fail(data, size, "decoded but code is %d", code);

	/* what a client gets must be JSON it can read back */
	dump = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	if (dump == NULL)
		fail(data, size, "decoded value cannot be dumped as JSON");
	v3 = json_loads(dump, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
	if (v3 == NULL && getenv("FUZZ_ALLOW_NUL_KEYS") != NULL &&
	    json_error_code(&jerr) == json_error_null_byte_in_key)
		;	/* known: see fuzz/README.md */
	else if (v3 == NULL || !equal(v, v3))
		fail(data, size, "decoded value does not survive JSON (%s): %s",
		    v3 == NULL ? jerr.text : "not equal", dump);
	json_decref(v3);

	enc1 = phpser_encode(v, &n1, err, sizeof(err));
	if (enc1 == NULL)
		fail(data, size, "decoded value %s does not encode: %s", dump,
		    err);
	if (enc1[n1] != '\0')
		fail(data, size, "encoding is not NUL-terminated");
	v2 = phpser_decode(enc1, n1, &code2, err2, sizeof(err2));
	if (v2 == NULL)
		fail(data, size, "re-encoded %.*s does not decode: %s",
		    (int)n1, enc1, err2);
	if (!equal(v, v2))
		fail(data, size, "round trip changed the value: %s -> %.*s",
		    dump, (int)n1, enc1);
	enc2 = phpser_encode(v2, &n2, err, sizeof(err));
	if (enc2 == NULL || n1 != n2 || memcmp(enc1, enc2, n1) != 0)
		fail(data, size, "encoding is not stable: %.*s vs %.*s",
		    (int)n1, enc1, enc2 ? (int)n2 : 0, enc2 ? enc2 : "");
	free(enc1);
	free(enc2);
	free(dump);
	json_decref(v);
	json_decref(v2);
	return 0;
}
