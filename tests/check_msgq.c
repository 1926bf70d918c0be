/*
 * check_msgq.c - the message queue calls of libipcbridge under injected
 * faults: the ipcb_sysv table is swapped for fakes that return EINTR,
 * E2BIG and EIDRM on demand, so those paths are tested without a real
 * failure.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "ipcbridge.h"

static struct ipcb_sysv saved;
static size_t fake_len;		/* the "queued" message's length */
static int eintr_left;		/* EINTRs to return before working */
static int calls;
static int saw_noerror;
static int fail_errno;		/* != 0: every call fails with it */

static ssize_t
fake_msgrcv(int id, void *buf, size_t sz, long typ, int flags)
{
	struct ipcb_msg *m = buf;

	(void)id; (void)typ;
	calls++;
	if (flags & MSG_NOERROR)
		saw_noerror = 1;
	if (fail_errno != 0) {
		errno = fail_errno;
		return -1;
	}
	if (eintr_left > 0) {
		eintr_left--;
		errno = EINTR;
		return -1;
	}
	if (sz < fake_len) {
		errno = E2BIG;
		return -1;
	}
	m->mtype = 5;
	memset(m->mtext, 'x', fake_len);
	return (ssize_t)fake_len;
}

static int
fake_msgsnd(int id, const void *buf, size_t sz, int flags)
{
	(void)id; (void)buf; (void)sz; (void)flags;
	calls++;
	if (eintr_left > 0) {
		eintr_left--;
		errno = EINTR;
		return -1;
	}
	if (fail_errno != 0) {
		errno = fail_errno;
		return -1;
	}
	return 0;
}

static void
setup(void)
{
	saved = ipcb_sysv;
	ipcb_sysv.msgrcv = fake_msgrcv;
	ipcb_sysv.msgsnd = fake_msgsnd;
	fake_len = 0;
	eintr_left = 0;
	calls = 0;
	saw_noerror = 0;
	fail_errno = 0;
}

static void
teardown(void)
{
	ipcb_sysv = saved;
}

START_TEST(test_e2big_grows_the_buffer)
{
	struct ipcb_selector sel = { IPCB_MATCH_ANY, 0 };
	struct ipcb_msgbuf buf = { NULL, 0 };
	ssize_t n;

	fake_len = ipcb_msgmax() * 5 + 3;	/* msgmax was lowered since */
	n = ipcb_msgq_recv(1, &sel, &buf, IPC_NOWAIT | MSG_NOERROR);
	ck_assert_int_eq(n, (ssize_t)fake_len);
	ck_assert(buf.cap >= fake_len);
	ck_assert_int_eq(buf.msg->mtype, 5);
	ck_assert_int_eq(buf.msg->mtext[fake_len - 1], 'x');
	ck_assert_int_eq(saw_noerror, 0);	/* never truncate silently */
	ck_assert_int_ge(calls, 2);
	ipcb_msgbuf_free(&buf);
}
END_TEST

START_TEST(test_eintr_is_retried)
{
	struct ipcb_selector sel = { IPCB_MATCH_TYPE, 3 };
	struct ipcb_msgbuf buf = { NULL, 0 };
	struct ipcb_msg m = { 1 };

	fake_len = 10;
	eintr_left = 3;
	ck_assert_int_eq(ipcb_msgq_recv(1, &sel, &buf, IPC_NOWAIT), 10);
	ck_assert_int_eq(calls, 4);
	eintr_left = 2;
	calls = 0;
	ck_assert_int_eq(ipcb_msgq_send(1, &m, 0, IPC_NOWAIT), 0);
	ck_assert_int_eq(calls, 3);
	ipcb_msgbuf_free(&buf);
}
END_TEST

START_TEST(test_errors_come_back_as_negative_errno)
{
	struct ipcb_selector sel = { IPCB_MATCH_ANY, 0 };
	struct ipcb_msgbuf buf = { NULL, 0 };
	struct ipcb_msg m = { 1 };

	fail_errno = EIDRM;
	ck_assert_int_eq(ipcb_msgq_recv(1, &sel, &buf, IPC_NOWAIT), -EIDRM);
	fail_errno = EINVAL;
	ck_assert_int_eq(ipcb_msgq_send(1, &m, 0, IPC_NOWAIT), -EINVAL);
	fail_errno = EAGAIN;
	ck_assert_int_eq(ipcb_msgq_send(1, &m, 0, IPC_NOWAIT), -EAGAIN);
	fail_errno = ENOMSG;
	ck_assert_int_eq(ipcb_msgq_recv(1, &sel, &buf, IPC_NOWAIT), -ENOMSG);
	ipcb_msgbuf_free(&buf);
}
END_TEST

START_TEST(test_bad_selectors_and_types_are_refused)
{
	struct ipcb_selector sel = { IPCB_MATCH_TYPE, 0 };
	struct ipcb_msgbuf buf = { NULL, 0 };
	struct ipcb_msg m = { 0 };

	ck_assert_int_eq(ipcb_msgq_recv(1, &sel, &buf, 0), -EINVAL);
	sel.match = IPCB_MATCH_MAX;
	sel.type = -4;
	ck_assert_int_eq(ipcb_msgq_recv(1, &sel, &buf, 0), -EINVAL);
	ck_assert_int_eq(ipcb_msgq_send(1, &m, 0, 0), -EINVAL);
	ck_assert_int_eq(calls, 0);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("msgq");
	TCase *tc = tcase_create("faults");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_e2big_grows_the_buffer);
	tcase_add_test(tc, test_eintr_is_retried);
	tcase_add_test(tc, test_errors_come_back_as_negative_errno);
	tcase_add_test(tc, test_bad_selectors_and_types_are_refused);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
