/*
 * php_path.c - where the php binary is, for the PHP interop tests.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "php_path.h"

const char *
php_path(void)
{
	static char found[PATH_MAX];
	const char *env = getenv("PHP"), *path, *p, *e;
	size_t n;

	if (env != NULL && *env == '/' && access(env, X_OK) == 0)
		return env;
	if ((path = getenv("PATH")) == NULL)
		return NULL;
	for (p = path; *p != '\0'; p = *e ? e + 1 : e) {
		e = strchr(p, ':');
		if (e == NULL)
			e = p + strlen(p);
		n = (size_t)(e - p);
		if (n > 0 && n + 5 < sizeof(found)) {
			memcpy(found, p, n);
			memcpy(found + n, "/php", 5);
			if (access(found, X_OK) == 0)
				return found;
		}
	}
	return NULL;
}
