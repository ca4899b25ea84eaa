/* test_dbiter.c -- the database iterator over merged memtables against a model: snapshots, deletes,
 * many versions, bounds, seek/seek_last, prev/next alternation, errors and malformed keys. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dbiter.h"
#include "ikey.h"
#include "iter.h"
#include "memtable.h"
#include "merge.h"
#include "status.h"
#include "fail_iter.h"
#include "memworld.h"
#include "testutil.h"

/* ---- an internal iterator that fails after a number of calls, or shows short keys ---- */


/* ---- the model: every write, and the visible view at a snapshot within bounds ---- */

typedef struct {
    char k[8];
    size_t kn;
    uint64_t lsn;
    int kind;
    char v[24];
    size_t vn;
} rec;

typedef struct {
    const char *k;
    size_t kn;
    const char *v;
    size_t vn;
} kv;

static int rec_cmp(const void *a, const void *b)
{
    const rec *x = a, *y = b;
    int r = ukey_cmp(x->k, x->kn, y->k, y->kn);
    if (r)
        return r;
    return x->lsn < y->lsn ? 1 : x->lsn > y->lsn ? -1 : 0; /* newest first */
}

#define MAXC 5
#define MAXR 3000

typedef struct {
    rec r[MAXR];
    int n;
    mw_children ch;
    uint64_t last_lsn;
} world;

static void world_init(world *w, int nc)
{
    memset(w, 0, sizeof *w);
    mw_children_init(&w->ch, nc);
}

/* One write to child c (and, if dup >= 0, the same entry to child dup too, like a memtable and the
 * table it was flushed to). */
static void world_put(world *w, const char *k, size_t kn, uint64_t lsn, int kind, int c, int dup)
{
    rec *r = &w->r[w->n++];
    memcpy(r->k, k, kn);
    r->kn = kn;
    r->lsn = lsn;
    r->kind = kind;
    r->vn = kind == KIND_PUT ? (size_t)snprintf(r->v, sizeof r->v, "v%llu", (unsigned long long)lsn) : 0;
    CHECK_RC(memtable_add(w->ch.mt[c], lsn, kind, k, kn, r->v, r->vn), PL_OK);
    if (dup >= 0 && dup != c)
        CHECK_RC(memtable_add(w->ch.mt[dup], lsn, kind, k, kn, r->v, r->vn), PL_OK);
    if (lsn > w->last_lsn)
        w->last_lsn = lsn;
}

static void world_random(world *w, unsigned long long *s, int nc, int nent)
{
    world_init(w, nc);
    uint64_t lsn = 1;
    for (int i = 0; i < nent; i++) {
        char k[8];
        size_t kn = mw_rand_ukey(s, k, 3);
        int kind = tu_rand(s) % 3 == 0 ? KIND_DELETE : KIND_PUT;
        int c = (int)(tu_rand(s) % (unsigned)nc);
        int dup = tu_rand(s) % 10 == 0 ? (int)(tu_rand(s) % (unsigned)nc) : -1;
        world_put(w, k, kn, lsn, kind, c, dup);
        lsn += 1 + tu_rand(s) % 2;
    }
}

typedef struct {
    const char *lo, *hi;
    size_t lon, hin;
    int has_lo, has_hi;
} bounds;

/* The visible view (sorted, in bounds); returns its length.  out has room for w->n. */
static int model_view(world *w, uint64_t snap, const bounds *b, kv *out)
{
    qsort(w->r, (size_t)w->n, sizeof(rec), rec_cmp);
    int n = 0;
    for (int i = 0; i < w->n;) {
        int j = i;
        const rec *vis = NULL;
        for (; j < w->n && ukey_cmp(w->r[j].k, w->r[j].kn, w->r[i].k, w->r[i].kn) == 0; j++)
            if (!vis && w->r[j].lsn <= snap)
                vis = &w->r[j];
        if (vis && vis->kind == KIND_PUT &&
            !(b->has_lo && ukey_cmp(vis->k, vis->kn, b->lo, b->lon) < 0) &&
            !(b->has_hi && ukey_cmp(vis->k, vis->kn, b->hi, b->hin) >= 0)) {
            out[n].k = vis->k;
            out[n].kn = vis->kn;
            out[n].v = vis->v;
            out[n].vn = vis->vn;
            n++;
        }
        i = j;
    }
    return n;
}

static iter *world_iter(world *w, uint64_t snap, const bounds *b)
{
    iter *it = db_iter_new(mw_children_merge(&w->ch), snap);
    if (it && b)
        db_iter_set_bounds(it, b->lo, b->lon, b->has_lo, b->hi, b->hin, b->has_hi);
    return it;
}

/* Is it on view[pos] (pos < 0 or >= n: invalid with status OK)? */
static int at(iter *it, const kv *view, int n, int pos)
{
    if (pos < 0 || pos >= n)
        return !iter_valid(it) && iter_status(it) == PL_OK;
    if (!iter_valid(it))
        return 0;
    const char *k, *v;
    size_t kn, vn;
    iter_key(it, &k, &kn);
    iter_value(it, &v, &vn);
    /* Non-positioning calls leave the pointers alone. */
    const char *k2, *v2;
    size_t kn2, vn2;
    (void)iter_status(it);
    (void)iter_valid(it);
    iter_key(it, &k2, &kn2);
    iter_value(it, &v2, &vn2);
    if (k != k2 || kn != kn2 || v != v2 || vn != vn2)
        return 0;
    return kn == view[pos].kn && (kn == 0 || memcmp(k, view[pos].k, kn) == 0) && vn == view[pos].vn &&
           (vn == 0 || memcmp(v, view[pos].v, vn) == 0);
}

/* A view entry against a seek key, for mw_model_seek. */
static int kv_cmp_key(const void *e, const char *k, size_t kn)
{
    const kv *x = e;
    return ukey_cmp(x->k, x->kn, k, kn);
}

/* Random operations on it against the model; returns 1 when every step matched. */
static int run_random(iter *it, const kv *view, int n, unsigned long long *s, int ops, const char *what)
{
    int pos = -1;
    for (int op = 0; op < ops; op++) {
        int r = (int)(tu_rand(s) % 20);
        const char *name;
        if (pos >= 0 && r < 8) {
            name = "next";
            iter_next(it);
            pos = pos + 1 < n ? pos + 1 : -1;
        } else if (pos >= 0 && r < 16) {
            name = "prev";
            iter_prev(it);
            pos--;
        } else if (r < 18) {
            name = "seek";
            char k[8];
            size_t kn = mw_rand_ukey(s, k, 4);
            iter_seek(it, k, kn);
            pos = mw_model_seek(view, n, sizeof(kv), kv_cmp_key, k, kn);
        } else if (r == 18) {
            name = "seek_first";
            iter_seek_first(it);
            pos = n ? 0 : -1;
        } else {
            name = "seek_last";
            iter_seek_last(it);
            pos = n - 1;
        }
        if (!at(it, view, n, pos)) {
            fprintf(stderr, "%s: diverged at op %d (%s), model pos %d of %d\n", what, op, name, pos, n);
            return 0;
        }
    }
    return 1;
}

static void check_world(world *w, unsigned long long *s, const bounds *b, int ops, const char *what)
{
    kv *view = malloc(sizeof(kv) * (size_t)(w->n + 1));
    uint64_t snaps[] = {0, 1, w->last_lsn / 3, w->last_lsn / 2, w->last_lsn - 1, w->last_lsn, LSN_MAX,
                        1 + tu_rand(s) % (w->last_lsn + 1)};
    for (size_t si = 0; si < sizeof snaps / sizeof snaps[0]; si++) {
        int n = model_view(w, snaps[si], b, view);
        iter *it = world_iter(w, snaps[si], b);
        CHECK(it != NULL);
        /* Full scans both ways. */
        int ok = 1, i = 0;
        for (iter_seek_first(it); ok && iter_valid(it); iter_next(it), i++)
            ok = at(it, view, n, i);
        CHECK(ok && i == n);
        ok = 1;
        i = n - 1;
        for (iter_seek_last(it); ok && iter_valid(it); iter_prev(it), i--)
            ok = at(it, view, n, i);
        CHECK(ok && i == -1);
        CHECK_RC(iter_status(it), PL_OK);
        if (!run_random(it, view, n, s, ops, what))
            CHECK(0);
        iter_destroy(it);
    }
    free(view);
}

static void test_random_worlds(unsigned long long *s)
{
    static world w;
    char lo[8], hi[8];
    for (int rep = 0; rep < 10; rep++) {
        int nc = 1 + rep % MAXC;
        world_random(&w, s, nc, 20 + (int)(tu_rand(s) % 700));
        bounds b = {0};
        check_world(&w, s, &b, 2000, "no bounds");
        for (int bi = 0; bi < 4; bi++) {
            b.lon = mw_rand_ukey(s, lo, 3);
            b.hin = mw_rand_ukey(s, hi, 3);
            b.lo = lo;
            b.hi = hi;
            b.has_lo = (int)(tu_rand(s) % 3 != 0);
            b.has_hi = (int)(tu_rand(s) % 3 != 0);
            if (bi == 3 && ukey_cmp(lo, b.lon, hi, b.hin) > 0) { /* mostly a proper range */
                b.lo = hi;
                b.hi = lo;
                size_t t = b.lon;
                b.lon = b.hin;
                b.hin = t;
            }
            check_world(&w, s, &b, 800, "bounds");
        }
        mw_children_free(&w.ch);
    }
}

/* One key with hundreds of versions between two neighbours: every snapshot sees its newest visible
 * version, from either direction and after any switch. */
static void test_many_versions(unsigned long long *s)
{
    static world w;
    world_init(&w, 3);
    uint64_t lsn = 1;
    world_put(&w, "a", 1, lsn++, KIND_PUT, 0, -1);
    world_put(&w, "c", 1, lsn++, KIND_PUT, 1, -1);
    for (int i = 0; i < 400; i++) {
        int kind = tu_rand(s) % 4 == 0 ? KIND_DELETE : KIND_PUT;
        int c = (int)(tu_rand(s) % 3); /* one draw per statement: argument order is unspecified */
        int dup = tu_rand(s) % 7 == 0 ? 2 : -1;
        world_put(&w, "b", 1, lsn++, kind, c, dup);
    }
    world_put(&w, "", 0, lsn++, KIND_PUT, 2, -1);
    world_put(&w, "d", 1, lsn++, KIND_DELETE, 2, -1);
    kv view[16];
    bounds none = {0};
    int checked = 0;
    for (uint64_t snap = 0; snap <= lsn; snap += 1 + tu_rand(s) % 5) {
        int n = model_view(&w, snap, &none, view);
        iter *it = world_iter(&w, snap, NULL);
        int ok = 1;
        /* From the end backward, then forward again. */
        iter_seek_last(it);
        for (int i = n - 1; ok && i >= 0; i--) {
            ok = at(it, view, n, i);
            if (ok)
                iter_prev(it);
        }
        ok = ok && at(it, view, n, -1);
        iter_seek(it, "", 0);
        for (int i = 0; ok && i < n; i++) {
            ok = at(it, view, n, i);
            if (ok && i + 1 < n) { /* next, prev, next */
                iter_next(it);
                ok = at(it, view, n, i + 1);
                if (ok)
                    iter_prev(it);
                ok = ok && at(it, view, n, i);
            }
            if (ok)
                iter_next(it);
        }
        ok = ok && at(it, view, n, -1);
        CHECK(ok);
        if (!run_random(it, view, n, s, 300, "many versions"))
            CHECK(0);
        iter_destroy(it);
        checked++;
    }
    CHECK(checked > 50);
    mw_children_free(&w.ch);
}

static int key_is(iter *it, const char *k, size_t kn)
{
    if (!iter_valid(it))
        return 0;
    const char *g;
    size_t gn;
    iter_key(it, &g, &gn);
    return gn == kn && (kn == 0 || memcmp(g, k, kn) == 0);
}

static void test_fixed(void)
{
    static world w;
    world_init(&w, 2);
    world_put(&w, "", 0, 1, KIND_PUT, 0, -1);
    world_put(&w, "a", 1, 2, KIND_PUT, 1, -1);
    world_put(&w, "a", 1, 3, KIND_DELETE, 0, -1);
    world_put(&w, "b", 1, 4, KIND_PUT, 0, 1);
    world_put(&w, "b", 1, 5, KIND_PUT, 1, -1);
    world_put(&w, "c", 1, 6, KIND_DELETE, 1, -1);
    world_put(&w, "d", 1, 7, KIND_PUT, 0, -1);

    /* Snapshot 10: "" b d. */
    iter *it = world_iter(&w, 10, NULL);
    CHECK(!iter_valid(it));
    iter_seek_first(it);
    CHECK(key_is(it, "", 0));
    iter_next(it);
    CHECK(key_is(it, "b", 1));
    const char *v;
    size_t vn;
    iter_value(it, &v, &vn);
    CHECK(vn == 2 && memcmp(v, "v5", 2) == 0);
    iter_next(it);
    CHECK(key_is(it, "d", 1));
    iter_next(it);
    CHECK(!iter_valid(it));
    CHECK_RC(iter_status(it), PL_OK);
    iter_seek(it, "a", 1);
    CHECK(key_is(it, "b", 1));
    iter_seek(it, "b\0", 2);
    CHECK(key_is(it, "d", 1));
    iter_seek(it, "e", 1);
    CHECK(!iter_valid(it));
    /* seek to the iterator's own key while it points into its buffers (going backward). */
    iter_seek_last(it);
    iter_prev(it);
    CHECK(key_is(it, "b", 1));
    const char *k;
    size_t kn;
    iter_key(it, &k, &kn);
    iter_seek(it, k, kn);
    CHECK(key_is(it, "b", 1));
    iter_prev(it);
    iter_key(it, &k, &kn);
    iter_seek(it, k, kn);
    CHECK(key_is(it, "", 0));
    iter_destroy(it);

    /* Snapshot 3: "" only (a deleted at 3, b not yet written). Snapshot 2: "" a. */
    it = world_iter(&w, 3, NULL);
    iter_seek_last(it);
    CHECK(key_is(it, "", 0));
    iter_prev(it);
    CHECK(!iter_valid(it));
    iter_destroy(it);
    it = world_iter(&w, 2, NULL);
    iter_seek_last(it);
    CHECK(key_is(it, "a", 1));
    iter_value(it, &v, &vn);
    CHECK(vn == 2 && memcmp(v, "v2", 2) == 0);
    iter_destroy(it);
    it = world_iter(&w, 0, NULL);
    iter_seek_first(it);
    CHECK(!iter_valid(it));
    iter_seek_last(it);
    CHECK(!iter_valid(it));
    iter_destroy(it);

    /* Bounds: [b, d) -> b; ["", b) -> ""; [c, c) and [d, a) -> nothing; lo "" is a real bound. */
    bounds bb = {"b", "d", 1, 1, 1, 1};
    it = world_iter(&w, 10, &bb);
    iter_seek_first(it);
    CHECK(key_is(it, "b", 1));
    iter_next(it);
    CHECK(!iter_valid(it));
    iter_seek_last(it);
    CHECK(key_is(it, "b", 1));
    iter_prev(it);
    CHECK(!iter_valid(it));
    iter_seek(it, "", 0); /* clamped to lo */
    CHECK(key_is(it, "b", 1));
    iter_seek(it, "d", 1);
    CHECK(!iter_valid(it));
    /* Bounds can change between positionings. */
    db_iter_set_bounds(it, "", 0, 1, "b", 1, 1);
    iter_seek_last(it);
    CHECK(key_is(it, "", 0));
    db_iter_set_bounds(it, "c", 1, 1, "c", 1, 1);
    iter_seek_first(it);
    CHECK(!iter_valid(it));
    iter_seek_last(it);
    CHECK(!iter_valid(it));
    db_iter_set_bounds(it, "d", 1, 1, "a", 1, 1);
    iter_seek_first(it);
    CHECK(!iter_valid(it));
    iter_seek_last(it);
    CHECK(!iter_valid(it));
    db_iter_set_bounds(it, NULL, 0, 0, "", 0, 1);
    iter_seek_last(it);
    CHECK(!iter_valid(it));
    db_iter_set_bounds(it, "\xff", 1, 1, NULL, 0, 0);
    iter_seek_first(it);
    CHECK(!iter_valid(it));
    db_iter_set_bounds(it, "a", 1, 1, NULL, 0, 0);
    iter_seek_last(it);
    CHECK(key_is(it, "d", 1));
    CHECK_RC(iter_status(it), PL_OK);
    iter_destroy(it);
    mw_children_free(&w.ch);

    /* NULL internal iterator (a failed merge_iter_new) gives NULL. */
    CHECK(db_iter_new(NULL, 5) == NULL);
}

/* Failures of the internal iterator: whatever was shown before the failure is right, then it turns
 * invalid with the error.  In particular going backward an error must not expose an older version. */
static void test_errors(unsigned long long *s)
{
    static world w;
    world_init(&w, 2);
    uint64_t lsn = 1;
    for (int i = 0; i < 60; i++) {
        char k[2] = {(char)('a' + i % 5), 0};
        world_put(&w, k, 1, lsn++, tu_rand(s) % 5 == 0 ? KIND_DELETE : KIND_PUT, i % 2, -1);
    }
    kv view[8];
    bounds none = {0};
    uint64_t snap = 45;
    int n = model_view(&w, snap, &none, view);
    int failures = 0;
    for (int left = 0; left < 150; left++) {
        iter *ch[2] = {mw_iter(w.ch.mt[0]),
                       fail_iter_new(mw_iter(w.ch.mt[1]), left, left % 2 ? PL_IOERR : PL_CORRUPT, 0)};
        iter *it = db_iter_new(merge_iter_new(ch, 2), snap);
        int ok = 1, steps = 0;
        /* Backward from the end, forward again, backward again. */
        iter_seek_last(it);
        int pos = n - 1;
        for (int dir = -1, turns = 0; turns < 3 && ok; steps++) {
            if (!iter_valid(it)) {
                if (iter_status(it) != PL_OK)
                    break;
                ok = at(it, view, n, pos);
                if (!ok)
                    break;
                turns++;
                dir = -dir;
                if (dir > 0) {
                    iter_seek_first(it);
                    pos = 0;
                } else {
                    iter_seek_last(it);
                    pos = n - 1;
                }
                continue;
            }
            ok = at(it, view, n, pos);
            if (!ok)
                break;
            if (dir > 0) {
                iter_next(it);
                pos++;
            } else {
                iter_prev(it);
                pos--;
            }
        }
        CHECK(ok);
        if (iter_status(it) != PL_OK) {
            failures++;
            CHECK(!iter_valid(it));
            CHECK_EQ(iter_status(it), left % 2 ? PL_IOERR : PL_CORRUPT);
        }
        iter_destroy(it);
    }
    CHECK(failures > 20);

    /* Malformed internal keys (shorter than a trailer): PL_CORRUPT, sticky. */
    iter *it = db_iter_new(fail_iter_new(mw_iter(w.ch.mt[0]), -1, PL_OK, 5), snap);
    iter_seek_first(it);
    CHECK(!iter_valid(it));
    CHECK_RC(iter_status(it), PL_CORRUPT);
    iter_seek_last(it);
    CHECK(!iter_valid(it));
    CHECK_RC(iter_status(it), PL_CORRUPT);
    iter_destroy(it);
    mw_children_free(&w.ch);
}

int main(void)
{
    unsigned long long seed = 0xdb17e4a7ull;
    test_fixed();
    test_errors(&seed);
    test_many_versions(&seed);
    test_random_worlds(&seed);
    return test_report();
}
