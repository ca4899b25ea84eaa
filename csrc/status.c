/* status.c -- thread-local error messages; see status.h. */
#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char errmsg[PL_ERRMSG_MAX];
static _Thread_local int errnum;

int pl_fail(int rc, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(errmsg, sizeof errmsg, fmt, ap);
    va_end(ap);
    if (err && n >= 0 && (size_t)n < sizeof errmsg)
        snprintf(errmsg + n, sizeof errmsg - (size_t)n, ": %s", strerror(err));
    errnum = err;
    return rc;
}

void pl_clear_error(void)
{
    errmsg[0] = 0;
    errnum = 0;
}

const char *pl_errmsg(void) { return errmsg; }
int pl_errno(void) { return errnum; }
void pl_set_errno(int err) { errnum = err; }

void pl_error_save(pl_error_state *s)
{
    memcpy(s->msg, errmsg, sizeof s->msg);
    s->err = errnum;
}

int pl_error_restore(const pl_error_state *s, int rc)
{
    memcpy(errmsg, s->msg, sizeof errmsg);
    errnum = s->err;
    return rc;
}

const char *pl_code_name(int rc)
{
    switch (rc) {
    case PL_OK: return "PL_OK";
    case PL_NOTFOUND: return "PL_NOTFOUND";
    case PL_CORRUPT: return "PL_CORRUPT";
    case PL_IOERR: return "PL_IOERR";
    case PL_NOMEM: return "PL_NOMEM";
    case PL_INVALID: return "PL_INVALID";
    case PL_BUSY: return "PL_BUSY";
    case PL_MISUSE: return "PL_MISUSE";
    case PL_CLOSED: return "PL_CLOSED";
    case PL_WOULDBLOCK: return "PL_WOULDBLOCK";
    case PL_EXISTS: return "PL_EXISTS";
    case PL_READONLY: return "PL_READONLY";
    case PL_RDONLY_OPEN: return "PL_RDONLY_OPEN";
    default: return "PL_UNKNOWN";
    }
}
