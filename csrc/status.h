/*
 * status.h -- where errors are born.
 *
 * Every failure in the core goes through pl_fail(): it records a message (and errno for PL_IOERR) in
 * thread-local storage for pl_errmsg()/pl_errno(), and returns the code.  A breakpoint on pl_fail
 * finds the origin of any error.  The PL_FAIL macro adds nothing but brevity.
 */
#ifndef PL_STATUS_H
#define PL_STATUS_H

#include "pylsm.h"

#if defined(__GNUC__)
#define PL_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define PL_PRINTF(a, b)
#endif

/* Record a failure and return rc.  err is the errno for PL_IOERR (0 otherwise). */
int pl_fail(int rc, int err, const char *fmt, ...) PL_PRINTF(3, 4);
/* Forget the calling thread's last failure. */
void pl_clear_error(void);
/* Set the errno of the last failure (PL_READONLY reports the errno of the failure that caused it). */
void pl_set_errno(int err);

#define PL_ERRMSG_MAX 512 /* a message's bytes, its NUL included (longer ones are cut) */

/* A failure kept aside: its message and errno. */
typedef struct pl_error_state {
    char msg[PL_ERRMSG_MAX];
    int err;
} pl_error_state;
/* Keep the calling thread's last failure in *s, for clean-up that may fail itself after the failure
 * that is to be reported. */
void pl_error_save(pl_error_state *s);
/* Make *s the calling thread's last failure again, message and errno as they were; returns rc. */
int pl_error_restore(const pl_error_state *s, int rc);

#define PL_FAIL(rc, ...) pl_fail((rc), 0, __VA_ARGS__)
#define PL_IOFAIL(err, ...) pl_fail(PL_IOERR, (err), __VA_ARGS__)

#endif
