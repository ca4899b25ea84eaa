/* merge.c -- the merging iterator; see merge.h. */
#include "merge.h"

#include <stdlib.h>

#include "ikey.h"
#include "pylsm.h"
#include "status.h"

typedef struct {
    iter *it;
    const char *k; /* the child's current key, cached while valid (good until the child moves) */
    size_t kn;
    int valid;
} child;

enum { FORWARD, REVERSE };

typedef struct {
    iter base;
    int n;
    int cur;    /* index of the current child, -1 when not positioned */
    int dir;    /* FORWARD: every other child is at its first entry after the current one;
                   REVERSE: every other child is at its last entry before it (in (ikey, index) order) */
    int failed; /* a child turned invalid with a non-OK status since the last full repositioning */
    int dedup;  /* MERGE_DEDUP */
    child c[];
} merge_iter;

/* Refresh the cache of child i after it moved. */
static void sync_child(merge_iter *m, int i)
{
    child *c = &m->c[i];
    c->valid = iter_valid(c->it);
    if (c->valid)
        iter_key(c->it, &c->k, &c->kn);
    else if (iter_status(c->it) != PL_OK)
        m->failed = 1;
}

/* Order of (key of child a, a) against (key of child b, b). */
static inline int child_cmp(const merge_iter *m, int a, int b)
{
    int r = ikey_cmp(m->c[a].k, m->c[a].kn, m->c[b].k, m->c[b].kn);
    return r ? r : (a > b) - (a < b);
}

static void find_smallest(merge_iter *m)
{
    int best = -1;
    for (int i = 0; i < m->n; i++)
        if (m->c[i].valid && (best < 0 || child_cmp(m, i, best) < 0))
            best = i;
    m->cur = best;
}

static void find_largest(merge_iter *m)
{
    int best = -1;
    for (int i = m->n - 1; i >= 0; i--)
        if (m->c[i].valid && (best < 0 || child_cmp(m, i, best) > 0))
            best = i;
    m->cur = best;
}

/* MERGE_DEDUP: move every child but the current one off the current key, forward or backward (in
 * the direction of travel the current child holds the first copy, so only the others can stand on
 * it).  The current child's key stays valid while they move. */
static void skip_copies(merge_iter *m, int cur, int forward)
{
    const char *k = m->c[cur].k;
    size_t kn = m->c[cur].kn;
    for (int i = 0; i < m->n; i++) {
        child *c = &m->c[i];
        while (i != cur && c->valid && ikey_cmp(c->k, c->kn, k, kn) == 0) {
            if (forward)
                iter_next(c->it);
            else
                iter_prev(c->it);
            sync_child(m, i);
        }
    }
}

static void mg_seek(iter *it, const char *k, size_t n)
{
    merge_iter *m = (merge_iter *)it;
    m->failed = 0;
    for (int i = 0; i < m->n; i++) {
        iter_seek(m->c[i].it, k, n);
        sync_child(m, i);
    }
    m->dir = FORWARD;
    find_smallest(m);
}

static void mg_seek_first(iter *it)
{
    merge_iter *m = (merge_iter *)it;
    m->failed = 0;
    for (int i = 0; i < m->n; i++) {
        iter_seek_first(m->c[i].it);
        sync_child(m, i);
    }
    m->dir = FORWARD;
    find_smallest(m);
}

static void mg_seek_last(iter *it)
{
    merge_iter *m = (merge_iter *)it;
    m->failed = 0;
    for (int i = 0; i < m->n; i++) {
        iter_seek_last(m->c[i].it);
        sync_child(m, i);
    }
    m->dir = REVERSE;
    find_largest(m);
}

static void mg_next(iter *it)
{
    merge_iter *m = (merge_iter *)it;
    int cur = m->cur;
    if (m->dir != FORWARD) {
        /* Every other child is before (key, cur); move each to its first entry after it: for a lower
         * index that is the first key > key, for a higher index the first key >= key.  The current
         * child's key stays valid while the others move. */
        const char *k = m->c[cur].k;
        size_t kn = m->c[cur].kn;
        for (int i = 0; i < m->n; i++) {
            if (i == cur)
                continue;
            child *c = &m->c[i];
            iter_seek(c->it, k, kn);
            sync_child(m, i);
            if (i < cur && c->valid && ikey_cmp(c->k, c->kn, k, kn) == 0) {
                iter_next(c->it);
                sync_child(m, i);
            }
        }
        m->dir = FORWARD;
    }
    if (m->dedup)
        skip_copies(m, cur, 1);
    iter_next(m->c[cur].it);
    sync_child(m, cur);
    find_smallest(m);
}

static void mg_prev(iter *it)
{
    merge_iter *m = (merge_iter *)it;
    int cur = m->cur;
    if (m->dir != REVERSE) {
        /* Every other child is after (key, cur); move each to its last entry before it: for a lower
         * index that is the last key <= key, for a higher index the last key < key. */
        const char *k = m->c[cur].k;
        size_t kn = m->c[cur].kn;
        for (int i = 0; i < m->n; i++) {
            if (i == cur)
                continue;
            child *c = &m->c[i];
            iter_seek(c->it, k, kn);
            sync_child(m, i);
            if (c->valid) {
                if (i > cur || ikey_cmp(c->k, c->kn, k, kn) != 0) {
                    iter_prev(c->it);
                    sync_child(m, i);
                }
            } else if (iter_status(c->it) == PL_OK) {
                /* Every key of this child is < key. */
                iter_seek_last(c->it);
                sync_child(m, i);
            }
        }
        m->dir = REVERSE;
    }
    if (m->dedup)
        skip_copies(m, cur, 0);
    iter_prev(m->c[cur].it);
    sync_child(m, cur);
    find_largest(m);
}

static int mg_valid(const iter *it)
{
    const merge_iter *m = (const merge_iter *)it;
    return m->cur >= 0 && !m->failed;
}

static void mg_key(const iter *it, const char **k, size_t *n)
{
    const merge_iter *m = (const merge_iter *)it;
    *k = m->c[m->cur].k;
    *n = m->c[m->cur].kn;
}

static void mg_value(const iter *it, const char **v, size_t *n)
{
    const merge_iter *m = (const merge_iter *)it;
    iter_value(m->c[m->cur].it, v, n);
}

static int mg_status(const iter *it)
{
    const merge_iter *m = (const merge_iter *)it;
    for (int i = 0; i < m->n; i++) {
        int rc = iter_status(m->c[i].it);
        if (rc != PL_OK)
            return rc;
    }
    return PL_OK;
}

static void mg_destroy(iter *it)
{
    merge_iter *m = (merge_iter *)it;
    for (int i = 0; i < m->n; i++)
        iter_destroy(m->c[i].it);
    free(m);
}

static const struct iter_ops merge_iter_ops = {mg_seek, mg_seek_first, mg_seek_last, mg_next, mg_prev,
                                               mg_valid, mg_key, mg_value, mg_status, mg_destroy};

iter *merge_iter_new(iter **children, int n) { return merge_iter_new_flags(children, n, 0); }

iter *merge_iter_new_flags(iter **children, int n, unsigned flags)
{
    if (n < 0)
        n = 0;
    int missing = 0;
    for (int i = 0; i < n; i++)
        missing |= children[i] == NULL;
    if (n == 1 && !missing)
        return children[0];
    merge_iter *m = missing ? NULL : calloc(1, sizeof *m + sizeof(child) * (size_t)n);
    if (!m) {
        for (int i = 0; i < n; i++)
            iter_destroy(children[i]);
        PL_FAIL(PL_NOMEM, "out of memory creating a merging iterator");
        return NULL;
    }
    m->base.ops = &merge_iter_ops;
    m->n = n;
    m->cur = -1;
    m->dir = FORWARD;
    m->dedup = (flags & MERGE_DEDUP) != 0;
    for (int i = 0; i < n; i++)
        m->c[i].it = children[i];
    return &m->base;
}
