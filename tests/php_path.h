/*
 * php_path.h - find the php binary for the suites that check interop with
 * real PHP ($PHP if absolute and executable, else the first php in $PATH),
 * and skip those tests cleanly where there is none.
 */
#ifndef PHP_PATH_H
#define PHP_PATH_H

#include <stdio.h>

const char	*php_path(void);

#define SKIP_WITHOUT_PHP()						\
	do {								\
		if (php_path() == NULL) {				\
			fprintf(stderr, "%s: php not in PATH, skipped\n",	\
			    __func__);					\
			return;						\
		}							\
	} while (0)

#endif
