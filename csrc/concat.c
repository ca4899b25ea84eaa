/* concat.c -- the concatenating iterator; see concat.h. */
#include "concat.h"

#include <stdlib.h>

#include "ikey.h"
#include "pylsm.h"
#include "status.h"

typedef struct {
    iter base;
    const struct concat_ops *ops;
    void *ctx;
    int n;
    int idx;   /* the part under cur, or -1 */
    iter *cur; /* the open part's iterator, or NULL */
    int status; /* the failure of a part since closed, or of an open that failed */
} concat_iter;

/* The first part whose largest key is at or after k, or n. */
static int find_part(const concat_iter *c, const char *k, size_t kn)
{
    int lo = 0, hi = c->n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        const char *l;
        size_t ln;
        c->ops->largest(c->ctx, mid, &l, &ln);
        if (ikey_cmp(l, ln, k, kn) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Make part idx the open one (-1 or n: none), closing the one open before (its failure kept). */
static void open_part(concat_iter *c, int idx)
{
    if (c->cur && c->idx == idx)
        return;
    if (c->cur) {
        int st = iter_status(c->cur);
        if (st && !c->status)
            c->status = st;
    }
    iter_destroy(c->cur);
    c->cur = NULL;
    c->idx = -1;
    if (idx < 0 || idx >= c->n)
        return;
    c->cur = c->ops->open(c->ctx, idx);
    if (!c->cur) {
        c->status = PL_FAIL(PL_NOMEM, "out of memory");
        return;
    }
    c->idx = idx;
}

/* While the open part is used up (and did not fail), move to the first entry of the next one. */
static void skip_forward(concat_iter *c)
{
    while (c->cur && !iter_valid(c->cur) && !iter_status(c->cur) && c->idx + 1 < c->n) {
        open_part(c, c->idx + 1);
        if (c->cur)
            iter_seek_first(c->cur);
    }
}

/* The same backward: to the last entry of the part before. */
static void skip_backward(concat_iter *c)
{
    while (c->cur && !iter_valid(c->cur) && !iter_status(c->cur) && c->idx > 0) {
        open_part(c, c->idx - 1);
        if (c->cur)
            iter_seek_last(c->cur);
    }
}

static void concat_seek(iter *it, const char *k, size_t n)
{
    concat_iter *c = (concat_iter *)it;
    int idx = find_part(c, k, n);
    if (idx >= c->n) {
        open_part(c, -1);
        return;
    }
    open_part(c, idx);
    if (c->cur)
        iter_seek(c->cur, k, n);
    skip_forward(c);
}

static void concat_seek_first(iter *it)
{
    concat_iter *c = (concat_iter *)it;
    open_part(c, 0);
    if (c->cur)
        iter_seek_first(c->cur);
    skip_forward(c);
}

static void concat_seek_last(iter *it)
{
    concat_iter *c = (concat_iter *)it;
    open_part(c, c->n - 1);
    if (c->cur)
        iter_seek_last(c->cur);
    skip_backward(c);
}

static void concat_next(iter *it)
{
    concat_iter *c = (concat_iter *)it;
    iter_next(c->cur);
    skip_forward(c);
}

static void concat_prev(iter *it)
{
    concat_iter *c = (concat_iter *)it;
    iter_prev(c->cur);
    skip_backward(c);
}

static int concat_valid(const iter *it)
{
    const concat_iter *c = (const concat_iter *)it;
    return c->cur && iter_valid(c->cur);
}

static void concat_key(const iter *it, const char **k, size_t *n)
{
    iter_key(((const concat_iter *)it)->cur, k, n);
}

static void concat_value(const iter *it, const char **v, size_t *n)
{
    iter_value(((const concat_iter *)it)->cur, v, n);
}

static int concat_status(const iter *it)
{
    const concat_iter *c = (const concat_iter *)it;
    if (c->status)
        return c->status;
    return c->cur ? iter_status(c->cur) : PL_OK;
}

static void concat_destroy(iter *it)
{
    concat_iter *c = (concat_iter *)it;
    iter_destroy(c->cur);
    c->ops->release(c->ctx);
    free(c);
}

static const struct iter_ops concat_iter_ops = {concat_seek, concat_seek_first, concat_seek_last, concat_next,
                                                concat_prev, concat_valid, concat_key, concat_value,
                                                concat_status, concat_destroy};

iter *concat_iter_new(const struct concat_ops *ops, void *ctx, int n)
{
    concat_iter *c = calloc(1, sizeof *c);
    if (!c) {
        ops->release(ctx);
        PL_FAIL(PL_NOMEM, "out of memory");
        return NULL;
    }
    c->base.ops = &concat_iter_ops;
    c->ops = ops;
    c->ctx = ctx;
    c->n = n;
    c->idx = -1;
    return &c->base;
}
