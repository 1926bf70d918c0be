/*
 * sysv.c - the table of System V calls the library makes.
 *
 * Production code calls the kernel through these pointers; fault-injection
 * tests swap single entries to produce errors on demand.
 */
#include "ipcbridge.h"

struct ipcb_sysv ipcb_sysv = {
	.msgget = msgget,
	.msgsnd = msgsnd,
	.msgrcv = msgrcv,
	.msgctl = msgctl,
	.semget = semget,
	.semop = semop,
	.semtimedop = semtimedop,
	.semctl = semctl,
	.shmget = shmget,
	.shmat = shmat,
	.shmdt = shmdt,
	.shmctl = shmctl,
};
