/*
 * regress_main.c - replay fuzz inputs without libFuzzer.
 *
 * Linked with one fuzz target (fuzz_request.c or fuzz_phpser.c) in the
 * normal build, with any compiler, this calls LLVMFuzzerTestOneInput once
 * per file named on the command line; a directory stands for the files in
 * it (sorted; names starting with "." or "README" are skipped). With no
 * arguments it replays REGRESS_DIRS, a ':'-separated list compiled in, so
 * that make check can run it as a test. A target that finds a violated
 * invariant aborts, and so fails the test.
 *
 * Each file runs in a child process, so that one failure does not hide
 * the next and every input starts from a fresh process, as a libFuzzer
 * reproduction would; REGRESS_NOFORK=1 runs them in this process (for a
 * debugger).
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static int nrun, nfailed, nofork;

static int
skipped(const char *name)
{
	return name[0] == '.' || strncmp(name, "README", 6) == 0;
}

static int
run_file(const char *path)
{
	uint8_t *buf = NULL, *p;
	size_t len = 0, cap = 0, n;
	pid_t pid;
	FILE *f;
	int status;

	if ((f = fopen(path, "rb")) == NULL) {
		fprintf(stderr, "regress: %s: %s\n", path, strerror(errno));
		return -1;
	}
	for (;;) {
		if (cap - len < 65536) {
			if ((p = realloc(buf, cap + 65536)) == NULL) {
				fprintf(stderr, "regress: out of memory\n");
				exit(1);
			}
			buf = p;
			cap += 65536;
		}
		n = fread(buf + len, 1, cap - len, f);
		len += n;
		if (n == 0)
			break;
	}
	if (ferror(f)) {
		fprintf(stderr, "regress: %s: read error\n", path);
		fclose(f);
		free(buf);
		return -1;
	}
	fclose(f);
	/* an exact-size copy, as libFuzzer gives, so overreads show */
	if ((p = malloc(len ? len : 1)) == NULL) {
		fprintf(stderr, "regress: out of memory\n");
		exit(1);
	}
	memcpy(p, buf, len);
	free(buf);
	fprintf(stderr, "regress: %s\n", path);
	fflush(stderr);
	nrun++;
	if (nofork) {
		LLVMFuzzerTestOneInput(p, len);
		free(p);
		return 0;
	}
	if ((pid = fork()) < 0) {
		fprintf(stderr, "regress: fork: %s\n", strerror(errno));
		exit(1);
	}
	if (pid == 0) {
		LLVMFuzzerTestOneInput(p, len);
		free(p);
		exit(0);	/* through atexit: LeakSanitizer looks */
	}
	free(p);
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			fprintf(stderr, "regress: waitpid: %s\n",
			    strerror(errno));
			exit(1);
		}
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	nfailed++;
	if (WIFSIGNALED(status))
		fprintf(stderr, "regress: FAILED: %s (signal %d)\n", path,
		    WTERMSIG(status));
	else
		fprintf(stderr, "regress: FAILED: %s (exit %d)\n", path,
		    WEXITSTATUS(status));
	return 0;
}

static int
cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
run_path(const char *path)
{
	struct dirent *de;
	struct stat st;
	char **names = NULL, **p, *full;
	size_t n = 0, i;
	int rc = 0;
	DIR *d;

	if (stat(path, &st) < 0) {
		/* a regressions directory nobody has filled yet */
		if (errno == ENOENT)
			return 0;
		fprintf(stderr, "regress: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode))
		return run_file(path);
	if ((d = opendir(path)) == NULL) {
		fprintf(stderr, "regress: %s: %s\n", path, strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		if (skipped(de->d_name))
			continue;
		if ((p = realloc(names, (n + 1) * sizeof(*names))) == NULL ||
		    (full = malloc(strlen(path) + strlen(de->d_name) + 2)) ==
		    NULL) {
			fprintf(stderr, "regress: out of memory\n");
			exit(1);
		}
		names = p;
		sprintf(full, "%s/%s", path, de->d_name);
		names[n++] = full;
	}
	closedir(d);
	if (n > 0)
		qsort(names, n, sizeof(*names), cmp);
	for (i = 0; i < n; i++) {
		if (stat(names[i], &st) == 0 && S_ISREG(st.st_mode) &&
		    run_file(names[i]) < 0)
			rc = -1;
		free(names[i]);
	}
	free(names);
	return rc;
}

int
main(int argc, char **argv)
{
	char *dirs, *dir, *save = NULL;
	int i, rc = 0;

	nofork = getenv("REGRESS_NOFORK") != NULL;
	if (argc > 1) {
		for (i = 1; i < argc; i++) {
			if (run_path(argv[i]) < 0)
				rc = 1;
		}
	} else {
#ifdef REGRESS_DIRS
		if ((dirs = strdup(REGRESS_DIRS)) == NULL)
			return 1;
		for (dir = strtok_r(dirs, ":", &save); dir != NULL;
		    dir = strtok_r(NULL, ":", &save)) {
			if (run_path(dir) < 0)
				rc = 1;
		}
		free(dirs);
#else
		(void)dirs; (void)dir; (void)save;
		fprintf(stderr, "usage: %s file-or-directory...\n", argv[0]);
		return 2;
#endif
	}
	fprintf(stderr, "regress: %d input(s) replayed, %d failed%s\n", nrun,
	    nfailed, rc ? "; some could not be read" : "");
	if (nrun == 0 && rc == 0)
		fprintf(stderr, "regress: warning: no inputs found\n");
	return rc || nfailed ? 1 : 0;
}
