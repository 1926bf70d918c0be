/*
 * jalloc.c - jansson's allocator: free lists of small malloc blocks.
 *
 * Every request is parsed into a small DOM (an object, a few keys and
 * values) and freed again right after: about a dozen small blocks per
 * request, which made malloc and free a seventh of the daemon's work on a
 * pipelined queue.send. Blocks of up to 256 bytes that jansson frees are
 * kept on free lists by their usable size (at most JA_KEEP each) and
 * handed out again for a few instructions.
 *
 * The blocks are plain malloc blocks, classed by malloc_usable_size(), so
 * a block from json_dumps() may still be released with free(), and
 * jalloc_free() takes any malloc block. The daemon is single-threaded.
 * Installed only with glibc, and not in sanitizer builds, so that ASan
 * still sees every use after free.
 */
#include <stdint.h>
#include <stdlib.h>

#include "daemon.h"

#if defined(__GLIBC__)
#include <malloc.h>
#define JA_ON	1
#endif
#if defined(__SANITIZE_ADDRESS__)
#undef JA_ON
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#undef JA_ON
#endif
#endif

#ifdef JA_ON
#define JA_STEP		16
#define JA_CLASSES	17		/* usable size / 16: 0 .. 256 bytes */
#define JA_KEEP		256		/* free blocks kept per class */

struct ja_block {
	struct ja_block	*next;
};

static struct ja_block *ja_list[JA_CLASSES];
static unsigned ja_count[JA_CLASSES];
#endif

void *
jalloc_malloc(size_t n)
{
#ifdef JA_ON
	size_t c = (n + JA_STEP - 1) / JA_STEP;
	struct ja_block *b;

	if (c == 0)
		c = 1;			/* room for the list link */
	if (c >= JA_CLASSES)
		return malloc(n);
	/* any block of class c or more holds c * 16 bytes */
	if ((b = ja_list[c]) != NULL) {
		ja_list[c] = b->next;
		ja_count[c]--;
		return b;
	}
	return malloc(c * JA_STEP);
#else
	return malloc(n);
#endif
}

void
jalloc_free(void *p)
{
#ifdef JA_ON
	size_t c;

	if (p == NULL)
		return;
	c = malloc_usable_size(p) / JA_STEP;
	if (c == 0 || c >= JA_CLASSES || ja_count[c] >= JA_KEEP) {
		free(p);
		return;
	}
	((struct ja_block *)p)->next = ja_list[c];
	ja_list[c] = p;
	ja_count[c]++;
#else
	free(p);
#endif
}

/* Make jansson use them; before any jansson value exists, and once. */
void
jalloc_install(void)
{
#ifdef JA_ON
	static int done;

	if (done)
		return;
	done = 1;
	json_set_alloc_funcs(jalloc_malloc, jalloc_free);
#endif
}
