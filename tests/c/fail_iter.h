/*
 * fail_iter.h -- a test iterator wrapping another: it fails with a given code after a number of
 * positioning/step calls, or shows keys cut to a given length (malformed).  Used by the merge and
 * database iterator tests.
 */
#ifndef PL_TEST_FAIL_ITER_H
#define PL_TEST_FAIL_ITER_H

#include <stdlib.h>

#include "iter.h"
#include "pylsm.h"
#include "status.h"

typedef struct {
    iter base;
    iter *in;
    int left;  /* calls until it fails; < 0 never */
    int code;  /* the error it fails with */
    int trunc; /* show keys of this length when > 0 (malformed) */
    int rc;
} fail_iter;

static int fi_step(fail_iter *f)
{
    if (f->rc)
        return 0;
    if (f->left == 0) {
        f->rc = PL_FAIL(f->code, "injected failure");
        return 0;
    }
    if (f->left > 0)
        f->left--;
    return 1;
}
static void fi_seek(iter *it, const char *k, size_t n)
{
    fail_iter *f = (fail_iter *)it;
    if (fi_step(f))
        iter_seek(f->in, k, n);
}
static void fi_seek_first(iter *it)
{
    fail_iter *f = (fail_iter *)it;
    if (fi_step(f))
        iter_seek_first(f->in);
}
static void fi_seek_last(iter *it)
{
    fail_iter *f = (fail_iter *)it;
    if (fi_step(f))
        iter_seek_last(f->in);
}
static void fi_next(iter *it)
{
    fail_iter *f = (fail_iter *)it;
    if (fi_step(f))
        iter_next(f->in);
}
static void fi_prev(iter *it)
{
    fail_iter *f = (fail_iter *)it;
    if (fi_step(f))
        iter_prev(f->in);
}
static int fi_valid(const iter *it)
{
    const fail_iter *f = (const fail_iter *)it;
    return !f->rc && iter_valid(f->in);
}
static void fi_key(const iter *it, const char **k, size_t *n)
{
    const fail_iter *f = (const fail_iter *)it;
    iter_key(f->in, k, n);
    if (f->trunc > 0 && *n > (size_t)f->trunc)
        *n = (size_t)f->trunc;
}
static void fi_value(const iter *it, const char **v, size_t *n)
{
    iter_value(((const fail_iter *)it)->in, v, n);
}
static int fi_status(const iter *it) { return ((const fail_iter *)it)->rc; }
static void fi_destroy(iter *it)
{
    iter_destroy(((fail_iter *)it)->in);
    free(it);
}
static const struct iter_ops fail_ops = {fi_seek, fi_seek_first, fi_seek_last, fi_next, fi_prev,
                                         fi_valid, fi_key, fi_value, fi_status, fi_destroy};

static iter *fail_iter_new(iter *in, int left, int code, int trunc)
{
    fail_iter *f = calloc(1, sizeof *f);
    f->base.ops = &fail_ops;
    f->in = in;
    f->left = left;
    f->code = code;
    f->trunc = trunc;
    return &f->base;
}

#endif
