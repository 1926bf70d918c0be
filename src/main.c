/*
 * main.c - options, configuration, start-up, signals and the loop.
 */
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <grp.h>
#include <pwd.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"

#define DEFAULT_CONFIG	"/etc/ipcbridge.conf"
#define DRAIN_SECONDS	5

struct event_base *base;
const struct config *cfg;

static struct config *config;
static const char *config_path = DEFAULT_CONFIG;
static int config_given;
static const char *socket_override;
static const char *pidfile;
static int verbose;
static struct event *drain_ev;

static void
usage(FILE *f)
{
	fprintf(f, "usage: ipcbridge [-dhtVv] [-c file] [-p pidfile] "
	    "[-S socket]\n");
}

static void
help(void)
{
	usage(stdout);
	printf("Bridge System V message queues to a Unix socket speaking "
	    "JSON lines.\n\n"
	    "  -c FILE    config file (default " DEFAULT_CONFIG "; built-in "
	    "defaults\n"
	    "             when it does not exist and -c is not given)\n"
	    "  -S SOCKET  listen on SOCKET instead of the configured path\n"
	    "  -d         daemonize (default: stay in the foreground)\n"
	    "  -p FILE    write the pid to FILE\n"
	    "  -t         check the config, print the effective settings, "
	    "exit\n"
	    "  -v         debug logging\n"
	    "  -V         print the version and exit\n"
	    "  -h         this help\n\n"
	    "See ipcbridge(8), ipcbridge.conf(5) and doc/protocol.md.\n");
}

/* Load the config the options name; NULL with err set on failure. */
static struct config *
load_config(char *err, size_t errlen)
{
	struct config *c;

	if (!config_given && access(config_path, F_OK) < 0 &&
	    errno == ENOENT) {
		c = config_defaults();
	} else if ((c = config_load(config_path, err, errlen)) == NULL)
		return NULL;
	if (socket_override != NULL && config_set_socket(c,
	    socket_override) < 0) {
		snprintf(err, errlen, "-S %s: the socket path must be absolute "
		    "and at most 107 bytes", socket_override);
		config_free(c);
		return NULL;
	}
	return c;
}

static void
reload(void)
{
	struct config *c;
	char err[1024];

	log_info("SIGHUP: reloading %s", config->path ? config->path :
	    "built-in defaults");
	notify("RELOADING=1\nSTATUS=reloading the configuration");
	if ((c = load_config(err, sizeof(err))) == NULL) {
		log_warnx("reload failed, keeping the running config: %s",
		    err);
		notify("READY=1\nSTATUS=reload failed: %s", err);
		return;
	}
	if (strcmp(c->socket_path, config->socket_path) != 0 ||
	    c->socket_mode != config->socket_mode)
		log_warnx("reload: socket changes need a restart; still on %s",
		    config->socket_path);
	free(c->socket_path);
	c->socket_path = strdup(config->socket_path);
	c->socket_mode = config->socket_mode;
	if (queues_reload(c) < 0 || segments_reload(c) < 0) {
		config_free(c);
		notify("READY=1\nSTATUS=reload failed; running the old "
		    "configuration");
		return;
	}
	config_free(config);
	config = c;
	cfg = c;
	log_setlevel(verbose ? LOG_LVL_DEBUG : c->log_level);
	notify("READY=1\nSTATUS=serving %zu queue(s), %zu segment(s)",
	    c->nqueues, c->nshms);
	log_info("reload done: %zu queue(s), %zu segment(s)", c->nqueues,
	    c->nshms);
}

static void
drain_cb(evutil_socket_t fd, short ev, void *arg)
{
	static int ticks;

	(void)fd; (void)ev; (void)arg;
	if ((conns_drained() && waiter_pending_putbacks() == 0) ||
	    ++ticks > DRAIN_SECONDS * 10) {
		event_base_loopexit(base, NULL);
		return;
	}
}

static void
shutdown_begin(const char *why)
{
	struct timeval tv = { 0, 100 * 1000 };

	if (drain_ev != NULL)
		return;
	log_info("%s: shutting down", why);
	notify("STOPPING=1\nSTATUS=shutting down");
	listen_close();
	waiter_shutdown();
	conns_shutdown();
	drain_ev = event_new(base, -1, EV_PERSIST, drain_cb, NULL);
	event_add(drain_ev, &tv);
	drain_cb(-1, 0, NULL);
}

static void
signal_cb(evutil_socket_t sig, short ev, void *arg)
{
	(void)ev; (void)arg;
	if (sig == SIGHUP)
		reload();
	else
		shutdown_begin(sig == SIGINT ? "SIGINT" : "SIGTERM");
}

/*
 * The pid file: written to a temporary name, locked, then renamed into
 * place, so a reader never sees it half-written and the lock sits on the
 * file at the path. A pid file still locked by a running ipcbridge is not
 * replaced. The descriptor is kept open: it holds the lock until we exit.
 */
static int
write_pidfile(const char *path)
{
	char tmp[4096], buf[32];
	int fd, old, n;

	snprintf(tmp, sizeof(tmp), "%s.%ld", path, (long)getpid());
	fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0) {
		log_warn("pidfile %s", tmp);
		goto fail;
	}
	n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (write(fd, buf, (size_t)n) != n) {
		log_warn("pidfile %s", tmp);
		goto fail;
	}
	if ((old = open(path, O_RDONLY | O_CLOEXEC)) >= 0) {
		if (flock(old, LOCK_EX | LOCK_NB) < 0) {
			n = (int)read(old, buf, sizeof(buf) - 1);
			buf[n > 0 ? n - (buf[n - 1] == '\n') : 0] = '\0';
			log_warnx("pidfile %s is locked by a running ipcbridge "
			    "(pid %s)", path, buf);
			close(old);
			goto fail;
		}
		close(old);
	}
	if (rename(tmp, path) < 0) {
		log_warn("pidfile %s", path);
		goto fail;
	}
	return fd;
fail:
	unlink(tmp);
	if (fd >= 0)
		close(fd);
	return -1;
}

static int ready_fd = -1;

/*
 * -d: fork and detach. The parent stays until the child serves or fails,
 * copying the child's start-up warnings and errors to the terminal, so
 * the exit status and the messages still tell what happened.
 */
static void
daemonize_start(void)
{
	char buf[1024];
	ssize_t n;
	pid_t pid;
	int p[2], ok = 0, fd;

	if (pipe2(p, O_CLOEXEC) < 0 || (pid = fork()) < 0)
		fatalx("daemonize: %s", strerror(errno));
	if (pid > 0) {
		close(p[1]);
		while ((n = read(p[0], buf, sizeof(buf))) > 0) {
			if (buf[n - 1] == '\0') {
				ok = 1;
				n--;
			}
			if (fwrite(buf, 1, (size_t)n, stderr) != (size_t)n)
				break;
		}
		_exit(ok ? 0 : 1);
	}
	close(p[0]);
	ready_fd = p[1];
	log_mirror(ready_fd);
	if (setsid() < 0 || chdir("/") < 0)
		fatalx("daemonize: %s", strerror(errno));
	if ((fd = open("/dev/null", O_RDWR)) >= 0) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		if (fd > STDERR_FILENO)
			close(fd);
	}
}

/* Serving: let the waiting parent exit 0. */
static void
daemonize_done(void)
{
	log_mirror(-1);
	if (write(ready_fd, "", 1) != 1)
		log_warn("daemonize: telling the parent");
	close(ready_fd);
	ready_fd = -1;
}

/*
 * Hand the root-owned IPC objects we serve to the user we are about to
 * become, or it could not use them (they are created mode 0660).
 */
static void
ipc_chown(uid_t uid, gid_t gid)
{
	struct msqid_ds mq;
	struct shmid_ds sh;
	struct semid_ds se;
	struct segment *s;
	struct queue *q;

	TAILQ_FOREACH(q, &queues, entry) {
		if (msgctl(q->msqid, IPC_STAT, &mq) == 0 &&
		    mq.msg_perm.uid == 0) {
			mq.msg_perm.uid = uid;
			mq.msg_perm.gid = gid;
			if (msgctl(q->msqid, IPC_SET, &mq) < 0)
				log_warn("queue \"%s\": chown", q->conf.name);
		}
	}
	TAILQ_FOREACH(s, &segments, entry) {
		if (shmctl(s->shm.shmid, IPC_STAT, &sh) == 0 &&
		    sh.shm_perm.uid == 0) {
			sh.shm_perm.uid = uid;
			sh.shm_perm.gid = gid;
			if (shmctl(s->shm.shmid, IPC_SET, &sh) < 0)
				log_warn("shm \"%s\": chown", s->conf.name);
		}
		if (semctl(s->sem.semid, 0, IPC_STAT, &se) == 0 &&
		    se.sem_perm.uid == 0) {
			se.sem_perm.uid = uid;
			se.sem_perm.gid = gid;
			if (semctl(s->sem.semid, 0, IPC_SET, &se) < 0)
				log_warn("shm \"%s\": semaphore chown",
				    s->conf.name);
		}
	}
}

/*
 * user/group: once the socket, pid file and IPC objects exist, give up
 * root for good. A failed drop is fatal: we never keep running as root
 * when told not to.
 */
static void
drop_privileges(void)
{
	struct passwd *pw = NULL;
	struct group *gr;
	gid_t gid;

	if (config->user == NULL && config->group == NULL)
		return;
	if (config->user != NULL && (pw = getpwnam(config->user)) == NULL)
		fatalx("user %s: no such user", config->user);
	gid = pw ? pw->pw_gid : getgid();
	if (config->group != NULL) {
		if ((gr = getgrnam(config->group)) == NULL)
			fatalx("group %s: no such group", config->group);
		gid = gr->gr_gid;
	}
	ipc_chown(pw ? pw->pw_uid : getuid(), gid);
	listen_chown(pw ? pw->pw_uid : getuid(), gid);
	journal_chown(config->state_dir, pw ? pw->pw_uid : getuid(), gid);
	if ((pw != NULL ? initgroups(pw->pw_name, gid) :
	    setgroups(1, &gid)) < 0 || setresgid(gid, gid, gid) < 0 ||
	    (pw != NULL && setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) < 0))
		fatalx("dropping privileges to %s:%s: %s",
		    config->user ? config->user : "-",
		    config->group ? config->group : "-", strerror(errno));
	if (pw != NULL && pw->pw_uid != 0 && (setuid(0) == 0 || geteuid() == 0))
		fatalx("dropping privileges: still root; refusing to run");
	log_info("running as uid %d gid %d", (int)getuid(), (int)getgid());
}

/* Enough descriptors for max_conns, or a lower max_conns and a warning. */
static void
check_nofile(void)
{
	struct rlimit rl;
	rlim_t need = (rlim_t)config->max_conns + 64;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= need)
		return;
	rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
	setrlimit(RLIMIT_NOFILE, &rl);
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= need)
		return;
	log_warnx("RLIMIT_NOFILE is %llu: lowering max_conns from %d to %llu",
	    (unsigned long long)rl.rlim_cur, config->max_conns,
	    (unsigned long long)(rl.rlim_cur > 64 ? rl.rlim_cur - 64 : 1));
	config->max_conns = rl.rlim_cur > 64 ? (int)(rl.rlim_cur - 64) : 1;
}

/* One line that says what this daemon serves, with keys and ids. */
static void
log_started(void)
{
	char line[4096];
	struct segment *s;
	struct queue *q;
	size_t o;

	o = (size_t)snprintf(line, sizeof(line), "ipcbridge %s ready on %s;",
	    PACKAGE_VERSION, listen_name());
	TAILQ_FOREACH(q, &queues, entry) {
		if (o < sizeof(line))
			o += (size_t)snprintf(line + o, sizeof(line) - o,
			    " queue %s key 0x%08x msqid %d;", q->conf.name,
			    (unsigned)q->conf.key, q->msqid);
	}
	TAILQ_FOREACH(s, &segments, entry) {
		if (o < sizeof(line))
			o += (size_t)snprintf(line + o, sizeof(line) - o,
			    " shm %s key 0x%08x shmid %d sem 0x%08x semid %d;",
			    s->conf.name, (unsigned)s->conf.key, s->shm.shmid,
			    (unsigned)s->conf.sem_key, s->sem.semid);
	}
	if (o > 0 && o < sizeof(line) && line[o - 1] == ';')
		line[o - 1] = '\0';
	log_info("%s", line);
}

/* -d changes to /, and SIGHUP reloads later: keep paths absolute. */
static const char *
absolute(const char *path)
{
	static char cwd[4096];
	char *p;

	if (*path == '/' || getcwd(cwd, sizeof(cwd)) == NULL)
		return path;
	if (asprintf(&p, "%s/%s", cwd, path) < 0)
		fatalx("out of memory");
	return p;	/* lives as long as the process */
}

static void
libevent_log(int severity, const char *msg)
{
	if (severity >= EVENT_LOG_WARN)
		log_warnx("libevent: %s", msg);
	else
		log_debug("libevent: %s", msg);
}

int
main(int argc, char *argv[])
{
	struct event *sigs[4];
	const int signums[4] = { SIGINT, SIGTERM, SIGHUP, 0 };
	int ch, test = 0, daemonize = 0, i, lost, pidfd = -1;
	char err[1024];

	jalloc_install();		/* before any jansson value */
	while ((ch = getopt(argc, argv, "c:dhp:S:tVv")) != -1) {
		switch (ch) {
		case 'c':
			config_path = absolute(optarg);
			config_given = 1;
			break;
		case 'd':
			daemonize = 1;
			break;
		case 'h':
			help();
			return 0;
		case 'p':
			pidfile = absolute(optarg);
			break;
		case 'S':
			socket_override = optarg;
			break;
		case 't':
			test = 1;
			break;
		case 'V':
			printf("ipcbridge %s\n", PACKAGE_VERSION);
			return 0;
		case 'v':
			verbose++;
			break;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "ipcbridge: unexpected argument \"%s\"\n",
		    argv[optind]);
		usage(stderr);
		return 2;
	}
	log_init(LOG_LVL_INFO + verbose);

	if ((config = load_config(err, sizeof(err))) == NULL) {
		fprintf(stderr, "ipcbridge: config: %s\n", err);
		return 1;
	}
	cfg = config;
	if (test) {
		config_print(config, stdout);
		printf("; configuration OK\n");
		config_free(config);
		return 0;
	}
	log_setlevel(verbose ? LOG_LVL_DEBUG : config->log_level);
	if (config->path == NULL)
		log_info("no %s: running on built-in defaults", config_path);
	if (pidfile == NULL)
		pidfile = config->pidfile;

	if (daemonize || config->log_syslog)
		log_syslog(1);
	/* before any IPC object is opened: semaphore registrations and
	 * their SEM_UNDO belong to the process that serves */
	if (daemonize)
		daemonize_start();
	signal(SIGPIPE, SIG_IGN);
	check_nofile();
	event_set_log_callback(libevent_log);
	/* no EVENT_BASE_FLAG_PRECISE_TIMER: it costs a timerfd_settime on
	 * every loop pass; the one sub-millisecond timer is a ptimer */
	if ((base = event_base_new()) == NULL)
		fatalx("event_base_new failed");
	waiter_init();
	/* the journal's lock first: a second daemon on the same state_dir
	 * stops before it touches any IPC object */
	if (config->journal_slots > 0 && journal_open(config->state_dir,
	    config->journal_slots, err, sizeof(err)) < 0)
		fatalx("%s", err);
	if (queues_open(config, err, sizeof(err)) < 0 ||
	    segments_open(config, err, sizeof(err)) < 0)
		fatalx("%s", err);
	journal_restore();	/* what a killed daemon held, before serving */
	/* the pid file before the socket: once clients can connect, it is
	 * there (and a locked one stops us before we take the socket) */
	if (pidfile != NULL && (pidfd = write_pidfile(pidfile)) < 0)
		fatalx("cannot write the pid file; not starting");
	if (listen_open(base, config) < 0) {
		if (pidfd >= 0)
			unlink(pidfile);
		return 1;
	}
	drop_privileges();
	for (i = 0; signums[i] != 0; i++) {
		sigs[i] = evsignal_new(base, signums[i], signal_cb, NULL);
		evsignal_add(sigs[i], NULL);
	}
	stats.started_ms = now_ms();
	log_started();
	notify("READY=1\nSTATUS=serving %zu queue(s), %zu segment(s) on %s",
	    config->nqueues, config->nshms, listen_name());
	if (daemonize)
		daemonize_done();

#ifdef IPCB_FAULT
	fault_install();	/* faults count from here: start-up is done */
#endif
	/* one loop pass at a time; replies go out after each (conn.c) */
	conn_defer_flush = 1;
	while (!event_base_got_exit(base) && !event_base_got_break(base)) {
		if (event_base_loop(base, EVLOOP_ONCE) != 0)
			break;
		conns_flush_deferred();
	}
	conn_defer_flush = 0;
	conns_flush_deferred();

	conns_close_all("daemon exiting");	/* puts back what it held */
	event_base_loop(base, EVLOOP_NONBLOCK);	/* run the deferred frees */
	lost = waiter_pending_putbacks();
	if (lost > 0 && config->journal_slots > 0)
		log_warnx("exiting with %d message(s) still waiting to be put "
		    "back on a full queue: the journal keeps them for the next "
		    "start", lost);
	else if (lost > 0) {
		stats.lost += (uint64_t)lost;
		log_warnx("exiting with %d message(s) still waiting to be put "
		    "back on a full queue: they are LOST (no journal)", lost);
	}
	listen_close();
	for (i = 0; signums[i] != 0; i++) {
		event_free(sigs[i]);	/* restores the default action... */
		signal(signums[i], SIG_IGN);	/* ...which would cut cleanup */
	}
	if (drain_ev != NULL)
		event_free(drain_ev);
	waiter_exit();
	queues_close();
	segments_close();
	journal_close();
	event_base_free(base);
	if (pidfd >= 0) {
		unlink(pidfile);
		close(pidfd);
	}
	config_free(config);
	log_info("exited cleanly");
	return 0;
}
