/*
 * hooks.c - the seams the fault-injection build (src/fault.c, linked only
 * into tests/ipcbridge-fault) reaches through: the socket calls conn.c
 * makes, and named crash points. The production daemon leaves the calls
 * as the libc ones and fault_hook NULL, and never reads IPCBRIDGE_FAULT.
 */
#include <sys/socket.h>

#include "daemon.h"

struct sock_calls sock_calls = {
	.recv = recv,
	.send = send,
};

void	(*fault_hook)(const char *point);
