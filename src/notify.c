/*
 * notify.c - tell systemd how we are doing (Type=notify).
 *
 * The protocol is one datagram of "KEY=value" lines to the Unix socket in
 * $NOTIFY_SOCKET (a leading '@' means the abstract namespace); small
 * enough to speak directly, so libsystemd is not needed. Without
 * $NOTIFY_SOCKET every call is a no-op.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"

void
notify(const char *fmt, ...)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sun;
	char msg[512];
	socklen_t len;
	va_list ap;
	int fd;

	if (path == NULL || (*path != '/' && *path != '@') ||
	    strlen(path) >= sizeof(sun.sun_path))
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, strlen(path));
	if (*path == '@')
		sun.sun_path[0] = '\0';
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) +
	    strlen(path));
	if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0)
		return;
	if (sendto(fd, msg, strlen(msg), MSG_NOSIGNAL,
	    (struct sockaddr *)&sun, len) < 0)
		log_warn("sd_notify to %s", path);
	close(fd);
}
