/*
 * listen.c - the Unix-domain socket clients connect to.
 *
 * A stale socket file (nobody answers) is replaced; a live one belongs to
 * another daemon and is never stolen. The socket gets its mode before
 * listen(), so no client can connect through a wider mode for a moment.
 * Running out of descriptors pauses accepting briefly instead of spinning.
 */
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/listener.h>

#include "daemon.h"

static struct evconnlistener *listener;
static int lock_fd = -1;
static char served[sizeof(((struct sockaddr_un *)0)->sun_path) + 16];
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

/*
 * The socket's directory must not let others swap the socket: refuse a
 * world-writable one without the sticky bit, warn about /tmp-like ones.
 * Then take <socket>.lock, so two daemons never race to replace the same
 * stale socket.
 */
static int
guard_path(const char *path)
{
	char dir[PATH_MAX], lock[PATH_MAX + 8], *slash;
	struct stat st;

	snprintf(dir, sizeof(dir), "%s", path);
	if ((slash = strrchr(dir, '/')) != NULL)
		*(slash == dir ? slash + 1 : slash) = '\0';
	if (stat(dir, &st) == 0 && (st.st_mode & S_IWOTH)) {
		if (!(st.st_mode & S_ISVTX)) {
			log_warnx("socket %s: directory %s is world-writable: "
			    "anyone could replace the socket; refusing", path,
			    dir);
			return -1;
		}
		log_warnx("socket %s: directory %s is world-writable (sticky); "
		    "prefer a directory only the daemon's user can write",
		    path, dir);
	}
	snprintf(lock, sizeof(lock), "%s.lock", path);
	lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (lock_fd < 0) {
		log_warn("socket %s: lock file %s", path, lock);
		return -1;
	}
	if (flock(lock_fd, LOCK_EX | LOCK_NB) < 0) {
		log_warnx("socket %s: another ipcbridge holds %s; not "
		    "touching its socket", path, lock);
		close(lock_fd);
		lock_fd = -1;
		return -1;
	}
	return 0;
}

int
listen_open(struct event_base *b, const struct config *c)
{
	struct sockaddr_un sun;
	struct stat st;
	int fd, rc;

	if ((fd = inherited_socket()) >= 0) {
		socklen_t len = sizeof(sun);

		memset(&sun, 0, sizeof(sun));
		if (getsockname(fd, (struct sockaddr *)&sun, &len) == 0 &&
		    sun.sun_family == AF_UNIX && sun.sun_path[0] != '\0')
			snprintf(served, sizeof(served), "%s", sun.sun_path);
		else
			snprintf(served, sizeof(served), "inherited fd %d", fd);
		log_info("socket activation: serving the inherited socket %s",
		    served);
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
	if (guard_path(sun.sun_path) < 0)
		return -1;
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
	snprintf(served, sizeof(served), "%s", sun.sun_path);
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

/* The socket we serve: our own, or the one systemd passed us. */
const char *
listen_name(void)
{
	return served;
}

/* Give the socket (and its lock) to the user we drop privileges to. */
void
listen_chown(uid_t uid, gid_t gid)
{
	char lock[PATH_MAX + 8];

	if (sock_path == NULL)
		return;
	if (chown(sock_path, uid, gid) < 0)
		log_warn("socket %s: chown", sock_path);
	snprintf(lock, sizeof(lock), "%s.lock", sock_path);
	if (lock_fd >= 0 && fchown(lock_fd, uid, gid) < 0)
		log_warn("socket lock %s: chown", lock);
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
	if (lock_fd >= 0)
		close(lock_fd);
	lock_fd = -1;
}
