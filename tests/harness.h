/*
 * harness.h - the daemon in the test process, without a listening socket.
 *
 * Each test gets a fresh event base, a config (config_defaults() with one
 * queue "default" on a private IPC key), the queues opened, and client
 * connections made with socketpair(): one end goes to conn_accept(), the
 * test talks on the other. Time passes only by running the event loop:
 * h_read() runs it (bounded) until a reply line is there.
 *
 * Everything h_* returns stays valid until the test's teardown, which
 * frees it, closes the connections and removes the IPC queue.
 */
#ifndef IPCBRIDGE_TEST_HARNESS_H
#define IPCBRIDGE_TEST_HARNESS_H

#include <check.h>
#include <jansson.h>

#include "daemon.h"

#define H_TIMEOUT_MS	2000	/* the longest any expected reply may take */
#define H_MAX_CLIENTS	8

extern struct config *h_cfg;	/* what the daemon sees as cfg; tweakable */
extern key_t h_key;		/* the private key of queue "default" */

/* Add the harness fixtures (and a timeout) to a test case. */
void	 h_fixtures(TCase *);
void	 h_setup(void);		/* checked fixture */
void	 h_teardown(void);

/* Another client connection; returns its number (client 0 is made by
 * setup). */
int	 h_connect(void);

/* Write bytes as they are on a client. */
void	 h_write(int client, const char *data, size_t len);
/* Half-close a client (it sends no more); has the daemon closed it? */
void	 h_close_write(int client);
/* Close a client's end altogether (the client went away). */
void	 h_close(int client);
int	 h_eof(int client);
/* Write a line on client 0 / a client; "\n" is added unless present. */
void	 h_send(const char *line);
void	 h_sendc(int client, const char *line);

/* The next reply line (without "\n") within timeout_ms, or NULL. */
char	*h_read(int client, int timeout_ms);
/* Write line on client 0 and return the reply line; NULL if none came. */
char	*h_call(const char *line);
/* The same, parsed; the test fails if no reply comes or it is not JSON. */
json_t	*h_callj(const char *line);
json_t	*h_callcj(int client, const char *line);
/* The next reply on a client, parsed; fails the test if none comes. */
json_t	*h_readj(int client);
/* Call fn(arg) once, from inside the event loop, when data next arrives
 * for a client: to make something happen while the daemon is busy. */
void	 h_on_data(int client, void (*fn)(void *), void *arg);
/* Complete reply lines received on a client and not read yet (does not
 * run the loop). */
int	 h_lines_buffered(int client);
/* Whether a complete reply line is waiting on a client (runs the loop
 * without blocking first). */
int	 h_has_line(int client);
/* Run the event loop until cond(arg) holds; 0 if timeout_ms passed. */
int	 h_run_until(int (*cond)(void *), void *arg, int timeout_ms);
/* Run the event loop for ms milliseconds (for "nothing happens" checks). */
void	 h_run_for(int ms);
/* After a few non-blocking loop passes, is no event active? (An event
 * that stays active means the daemon spins without waiting.) */
int	 h_idle(void);

/*
 * Reply shapes. id is the expected id as JSON text ("7", "\"a\"") or NULL
 * when the reply must have no id. h_error checks the exact shape
 * {"id":..,"error":{"code","message"[,"data"]}} and returns data (NULL if
 * absent); h_result checks {"id":..,"result":..} and returns result.
 */
json_t	*h_error(json_t *reply, const char *id, const char *code);
json_t	*h_result(json_t *reply, const char *id);
/* json_loads that fails the test on bad JSON; freed at teardown. */
json_t	*h_json(const char *text);

/* The queue as a worker sees it: plain SysV calls on h_key. */
void	 h_sysv_send(long type, const void *data, size_t len);
/* Receive a message of type (0: any) without waiting; -1 when none. */
ssize_t	 h_sysv_recv(long type, long *mtype, void *buf, size_t cap);
/* Set the queue's capacity (msg_qbytes), e.g. to fill it quickly. */
void	 h_set_qbytes(unsigned long);
/* Messages on the queue now (msg_qnum). */
int	 h_qnum(void);
/* The daemon's struct queue for "default". */
struct queue *h_queue(void);

#endif
