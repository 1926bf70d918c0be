/*
 * listen.c - the Unix-domain socket clients connect to.
 *
 * A stale socket file (nobody answers) is replaced; a live one belongs to
 * another daemon and is never stolen. The socket gets its mode before
 * listen(), so no client can connect through a wider mode for a moment.
 * Running out of descriptors pauses accepting briefly instead of spinning.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/listener.h>

#include "daemon.h"

static struct evconnlistener *listener;
static struct event *resume_ev;
static char *sock_path;

static void
accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
    int len, void *arg)
{
	(void)l; (void)sa; (void)len; (void)arg;
	conn_accept(fd);
}

static void
resume_cb(evutil_socket_t fd, short ev, void *arg)
{
	(void)fd; (void)ev; (void)arg;
	if (listener != NULL)
		evconnlistener_enable(listener);
}

static void
error_cb(struct evconnlistener *l, void *arg)
{
	struct timeval tv = { 0, 100 * 1000 };
	int e = EVUTIL_SOCKET_ERROR();

	(void)arg;
	if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
		log_warnx("accept: %s; pausing accepts for 100 ms",
		    strerror(e));
		evconnlistener_disable(l);
		evtimer_add(resume_ev, &tv);
		return;
	}
	log_warnx("accept: %s", strerror(e));
}

/* Is a daemon answering on this path? */
static int
socket_alive(const struct sockaddr_un *sun)
{
	int fd, rc;

	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return 0;
	rc = connect(fd, (const struct sockaddr *)sun, sizeof(*sun));
	close(fd);
	return rc == 0;
}

static int
bind_socket(int fd, const struct sockaddr_un *sun, int mode)
{
	mode_t old;
	int rc;

	old = umask((mode_t)(~mode & 0777));
	rc = bind(fd, (const struct sockaddr *)sun, sizeof(*sun));
	umask(old);
	if (rc < 0)
		return -1;
	return chmod(sun->sun_path, (mode_t)mode);
}

/*
 * Socket activation: systemd passes the listening socket as fd 3 with
 * LISTEN_PID=our pid and LISTEN_FDS=1. Returns the fd, or -1 if none.
 */
static int
inherited_socket(void)
{
	const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
	int fd = 3;

	if (pid == NULL || fds == NULL || atol(pid) != (long)getpid() ||
	    atoi(fds) < 1)
		return -1;
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	if (atoi(fds) > 1)
		log_warnx("socket activation passed %s sockets; serving the "
		    "first only", fds);
	if (evutil_make_socket_nonblocking(fd) < 0 ||
	    evutil_make_socket_closeonexec(fd) < 0)
		return -1;
	return fd;
}

int
listen_open(struct event_base *b, const struct config *c)
{
	struct sockaddr_un sun;
	struct stat st;
	int fd, rc;

	if ((fd = inherited_socket()) >= 0) {
		log_info("socket activation: serving the inherited socket "
		    "(fd %d)", fd);
		sock_path = NULL;	/* systemd owns the file */
		goto serve;
	}
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(c->socket_path) >= sizeof(sun.sun_path)) {
		log_warnx("socket %s: path too long", c->socket_path);
		return -1;
	}
	strcpy(sun.sun_path, c->socket_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		log_warn("socket");
		return -1;
	}
	rc = bind_socket(fd, &sun, c->socket_mode);
	if (rc < 0 && errno == EADDRINUSE) {
		if (lstat(sun.sun_path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
			log_warnx("socket %s: exists and is not a socket; "
			    "not touching it", sun.sun_path);
			goto fail;
		}
		if (socket_alive(&sun)) {
			log_warnx("socket %s: another daemon is answering "
			    "there; not stealing it", sun.sun_path);
			goto fail;
		}
		log_info("socket %s: replacing a stale socket", sun.sun_path);
		unlink(sun.sun_path);
		rc = bind_socket(fd, &sun, c->socket_mode);
	}
	if (rc < 0) {
		log_warn("socket %s: bind", sun.sun_path);
		goto fail;
	}
	sock_path = strdup(sun.sun_path);
serve:
	listener = evconnlistener_new(b, accept_cb, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 128, fd);
	if (listener == NULL) {
		log_warn("socket %s: listen", c->socket_path);
		if (sock_path != NULL)
			unlink(sock_path);
		free(sock_path);
		sock_path = NULL;
		goto fail;
	}
	evconnlistener_set_error_cb(listener, error_cb);
	resume_ev = evtimer_new(b, resume_cb, NULL);
	return 0;
fail:
	close(fd);
	return -1;
}

/* Stop accepting and remove the socket file (clean exit only). */
void
listen_close(void)
{
	if (listener == NULL)
		return;
	evconnlistener_free(listener);
	listener = NULL;
	event_free(resume_ev);
	resume_ev = NULL;
	if (sock_path != NULL)
		unlink(sock_path);
	free(sock_path);
	sock_path = NULL;
}
