/*
 * main.c - options, configuration, start-up, signals and the loop.
 */
#include <sys/stat.h>

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
	if ((c = load_config(err, sizeof(err))) == NULL) {
		log_warnx("reload failed, keeping the running config: %s",
		    err);
		return;
	}
	if (strcmp(c->socket_path, config->socket_path) != 0 ||
	    c->socket_mode != config->socket_mode)
		log_warnx("reload: socket changes need a restart; still on %s",
		    config->socket_path);
	free(c->socket_path);
	c->socket_path = strdup(config->socket_path);
	c->socket_mode = config->socket_mode;
	if (queues_reload(c) < 0) {
		config_free(c);
		return;
	}
	config_free(config);
	config = c;
	cfg = c;
	log_info("reload done: %zu queue(s)", c->nqueues);
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

static void
write_pidfile(const char *path)
{
	FILE *f;

	if ((f = fopen(path, "w")) == NULL) {
		listen_close();
		fatalx("pidfile %s: %s", path, strerror(errno));
	}
	fprintf(f, "%ld\n", (long)getpid());
	fclose(f);
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
	int ch, test = 0, daemonize = 0, verbose = 0, i, lost;
	char err[1024];

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
	if (config->path == NULL)
		log_info("no %s: running on built-in defaults", config_path);

	signal(SIGPIPE, SIG_IGN);
	event_set_log_callback(libevent_log);
	if ((base = event_base_new()) == NULL)
		fatalx("event_base_new failed");
	if (queues_open(config, err, sizeof(err)) < 0)
		fatalx("%s", err);
	if (listen_open(base, config) < 0)
		return 1;
	if (daemonize && daemon(0, 0) < 0)
		fatalx("daemon: %s", strerror(errno));
	if (pidfile != NULL)
		write_pidfile(pidfile);
	for (i = 0; signums[i] != 0; i++) {
		sigs[i] = evsignal_new(base, signums[i], signal_cb, NULL);
		evsignal_add(sigs[i], NULL);
	}
	stats.started_ms = now_ms();
	log_info("ipcbridge %s ready on %s (%zu queue(s))", PACKAGE_VERSION,
	    config->socket_path, config->nqueues);

	event_base_dispatch(base);

	conns_close_all("daemon exiting");	/* puts back what it held */
	event_base_loop(base, EVLOOP_NONBLOCK);	/* run the deferred frees */
	lost = waiter_pending_putbacks();
	if (lost > 0) {
		stats.lost += (uint64_t)lost;
		log_warnx("exiting with %d message(s) still waiting to be put "
		    "back on a full queue: they are LOST", lost);
	}
	listen_close();
	for (i = 0; signums[i] != 0; i++)
		event_free(sigs[i]);
	if (drain_ev != NULL)
		event_free(drain_ev);
	waiter_exit();
	queues_close();
	event_base_free(base);
	if (pidfile != NULL)
		unlink(pidfile);
	config_free(config);
	log_info("exited cleanly");
	return 0;
}
