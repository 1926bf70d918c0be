/*
 * bench.h - what the benchmark's files share: the load generator, the
 * processes it starts, /proc readers and the clean-up registry.
 */
#ifndef BENCH_H
#define BENCH_H

#include <sys/types.h>
#include <sys/uio.h>

#include <stddef.h>
#include <stdint.h>

/* How replies are framed, so they can be counted without parsing. */
enum proto {
	PROTO_JSONL,		/* ipcbridge: one line each, {"result" or error */
	PROTO_ECHO,		/* our echo server: lines come back unchanged */
	PROTO_RESP		/* Redis: simple strings, integers, bulk strings */
};

/* One request in flight: its lines, written back to back, and replies. */
struct unit {
	const struct iovec	*iov;
	int			 niov;
	int			 replies;
};

/* A growable list of latencies in ns. */
struct samples {
	uint64_t	*v;
	size_t		 n;
	size_t		 cap;
};

struct lg_result {
	double		 secs;		/* measured window */
	uint64_t	 units;		/* units completed in it */
	uint64_t	 errors;	/* error replies (whole run) */
	double		 rate;		/* units per second */
	double		 spread_pct;	/* +- of the slices around it */
	double		 p50_us;
	double		 p99_us;
	double		 cpu_pct;	/* the watched server's CPU */
	double		 wait_pct;	/* ... and its wait for a CPU */
	double		 self_pct;	/* the load generator's own CPU */
	char		 err[200];	/* the first error reply, cut */
};

/* loadgen.c */
void		 lg_run(const char *path, enum proto, const struct unit *,
		    int conns, int depth, double warm, double secs,
		    pid_t watch, struct lg_result *);
void		 samples_add(struct samples *, uint64_t);
double		 samples_pct(struct samples *, double);
void		 samples_free(struct samples *);

/* proc.c */
extern char	 tmpdir[64];
uint64_t	 now_ns(void);
void		 sleep_s(double);
void		 die(const char *, ...)
		    __attribute__((__format__(__printf__, 1, 2), __noreturn__));
void		 cleanup_init(void);
void		 cleanup(void);
void		 track_pid(pid_t);
void		 untrack_pid(pid_t);
void		 track_msqid(int);
void		 track_keys(key_t, key_t);
key_t		 free_key(key_t avoid);
pid_t		 spawn(char *const argv[], const char *log);
pid_t		 fork_child(void);
void		 stop_child(pid_t, double grace);
int		 unix_connect(const char *, int nonblock);
int		 wait_socket(const char *, pid_t, double timeout);
int		 child_alive(pid_t);
long		 proc_kb(pid_t, const char *field);
uint64_t	 proc_cpu_ns(pid_t);
uint64_t	 proc_wait_ns(pid_t);
uint64_t	 proc_stat_ticks(pid_t);
uint64_t	 proc_ctxt(pid_t);
int		 proc_reset_hwm(pid_t);
void		 write_all(int, const void *, size_t);
size_t		 read_line(int, char *, size_t);
void		 log_tail(const char *, const char *);

#endif
