/* test_concat.c -- the concatenating iterator against a sorted model: a run of parts (memtables, each
 * a slice of the model) walked in both directions, with direction switches and seeks; parts opened
 * only when reached and never two at once; empty parts and none at all; a part that cannot be opened
 * or fails mid-walk; the owner's context released once. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "concat.h"
#include "ikey.h"
#include "iter.h"
#include "memtable.h"
#include "status.h"
#include "fail_iter.h"
#include "memworld.h"
#include "testutil.h"

/* ---- the model: sorted internal keys, cut into parts ---- */

typedef struct {
    char ik[16];
    size_t kn;
    char val[24];
    size_t vn;
} ent;

static int ent_cmp(const void *a, const void *b)
{
    const ent *x = a, *y = b;
    return ikey_cmp(x->ik, x->kn, y->ik, y->kn);
}

static int ent_cmp_key(const void *e, const char *k, size_t kn)
{
    const ent *x = e;
    return ikey_cmp(x->ik, x->kn, k, kn);
}

#define MAXP 12
#define MAXE 600

/* The parts, and what the concatenation did with them. */
typedef struct {
    memtable *mt[MAXP];
    int first[MAXP + 1]; /* part i holds model entries first[i] .. first[i + 1] - 1 */
    char largest[MAXP][16];
    size_t largest_len[MAXP];
    int n;
    int opens, live, max_live, releases;
    int fail_open;         /* this part cannot be opened (-1: every part can) */
    int fail_part, fail_left, fail_code; /* this part's iterator fails after fail_left calls */
} parts;

typedef struct {
    ent e[MAXE];
    int n;
    parts p;
} world;

/* ---- a part's iterator: the memtable's, counted while it lives ---- */

typedef struct {
    iter base;
    iter *in;
    parts *p;
} counted;

static void c_seek(iter *it, const char *k, size_t n) { iter_seek(((counted *)it)->in, k, n); }
static void c_seek_first(iter *it) { iter_seek_first(((counted *)it)->in); }
static void c_seek_last(iter *it) { iter_seek_last(((counted *)it)->in); }
static void c_next(iter *it) { iter_next(((counted *)it)->in); }
static void c_prev(iter *it) { iter_prev(((counted *)it)->in); }
static int c_valid(const iter *it) { return iter_valid(((const counted *)it)->in); }
static void c_key(const iter *it, const char **k, size_t *n) { iter_key(((const counted *)it)->in, k, n); }
static void c_value(const iter *it, const char **v, size_t *n) { iter_value(((const counted *)it)->in, v, n); }
static int c_status(const iter *it) { return iter_status(((const counted *)it)->in); }
static void c_destroy(iter *it)
{
    counted *c = (counted *)it;
    c->p->live--;
    iter_destroy(c->in);
    free(c);
}
static const struct iter_ops counted_ops = {c_seek, c_seek_first, c_seek_last, c_next, c_prev,
                                            c_valid, c_key, c_value, c_status, c_destroy};

static iter *part_open(void *ctx, int i)
{
    parts *p = ctx;
    CHECK(i >= 0 && i < p->n);
    if (i == p->fail_open)
        return NULL;
    counted *c = calloc(1, sizeof *c);
    c->base.ops = &counted_ops;
    c->in = mw_iter(p->mt[i]);
    if (i == p->fail_part)
        c->in = fail_iter_new(c->in, p->fail_left, p->fail_code, 0);
    c->p = p;
    p->opens++;
    if (++p->live > p->max_live)
        p->max_live = p->live;
    return &c->base;
}

static void part_largest(void *ctx, int i, const char **k, size_t *n)
{
    parts *p = ctx;
    *k = p->largest[i];
    *n = p->largest_len[i];
}

static void part_release(void *ctx) { ((parts *)ctx)->releases++; }

static const struct concat_ops part_ops = {part_open, part_largest, part_release};

/* nent distinct internal keys over a small alphabet (a user key's versions often land in two parts),
 * cut into np parts at random places; with empty set, some parts hold nothing (their largest key is
 * the one of the part before, or the smallest there is). */
static void world_build(world *w, unsigned long long *s, int np, int nent, int empty)
{
    memset(w, 0, sizeof *w);
    uint64_t lsn = 1;
    while (w->n < nent) {
        char uk[8];
        size_t un = mw_rand_ukey(s, uk, 4);
        ent *e = &w->e[w->n++];
        ikey_build(e->ik, uk, un, lsn, tu_rand(s) % 4 == 0 ? KIND_DELETE : KIND_PUT);
        e->kn = un + IKEY_TRAILER;
        e->vn = (size_t)snprintf(e->val, sizeof e->val, "v%llu", (unsigned long long)lsn);
        lsn++;
    }
    qsort(w->e, (size_t)w->n, sizeof(ent), ent_cmp);
    parts *p = &w->p;
    p->n = np;
    p->fail_open = p->fail_part = -1;
    /* np - 1 cut points, ascending; without empty parts each part gets at least one entry. */
    p->first[0] = 0;
    p->first[np] = w->n;
    for (int i = 1; i < np; i++) {
        int lo = p->first[i - 1] + (empty ? 0 : 1), hi = w->n - (empty ? 0 : np - i);
        p->first[i] = lo + (hi > lo ? (int)(tu_rand(s) % (unsigned)(hi - lo + 1)) : 0);
    }
    for (int i = 0; i < np; i++) {
        p->mt[i] = mw_memtable();
        for (int j = p->first[i]; j < p->first[i + 1]; j++) {
            const ent *e = &w->e[j];
            size_t un = ikey_ulen(e->kn);
            CHECK_RC(memtable_add(p->mt[i], ikey_lsn(e->ik, e->kn), ikey_kind(e->ik, e->kn), e->ik, un, e->val,
                                  e->vn),
                     PL_OK);
        }
        int last = p->first[i + 1] - 1;
        if (last >= p->first[i]) {
            memcpy(p->largest[i], w->e[last].ik, w->e[last].kn);
            p->largest_len[i] = w->e[last].kn;
        } else if (i > 0) {
            memcpy(p->largest[i], p->largest[i - 1], p->largest_len[i - 1]);
            p->largest_len[i] = p->largest_len[i - 1];
        } else {
            ikey_build(p->largest[i], "", 0, LSN_MAX, KIND_SEEK); /* the smallest internal key */
            p->largest_len[i] = IKEY_TRAILER;
        }
    }
}

static void world_free(world *w)
{
    for (int i = 0; i < w->p.n; i++)
        memtable_unref(w->p.mt[i]);
}

/* Does it sit on model entry pos (-1 or n: invalid, and no failure)? */
static int at(iter *it, const world *w, int pos)
{
    const ent *e = pos >= 0 && pos < w->n ? &w->e[pos] : NULL;
    return e ? mw_at(it, e->ik, e->kn, e->val, e->vn) : mw_at(it, NULL, 0, NULL, 0);
}

/* A random seek key near the model's keys. */
static size_t rand_seek_key(unsigned long long *s, int nent, char k[16])
{
    char uk[8];
    size_t un = mw_rand_ukey(s, uk, 4);
    uint64_t lsn = tu_rand(s) % 8 == 0 ? LSN_MAX : tu_rand(s) % (uint64_t)(nent + 2);
    ikey_build(k, uk, un, lsn, (int)(tu_rand(s) % 2));
    return un + IKEY_TRAILER;
}

/* Random steps and seeks against the model; never more than one part open. */
static void test_random(unsigned long long *s, int np, int nent, int ops, int empty)
{
    static world w;
    world_build(&w, s, np, nent, empty);
    iter *it = concat_iter_new(&part_ops, &w.p, np);
    CHECK(it != NULL);
    CHECK_EQ(w.p.opens, 0); /* nothing opened before the first positioning call */
    int pos = -1, bad = 0;
    for (int op = 0; op < ops && !bad; op++) {
        int r = (int)(tu_rand(s) % 10);
        if (pos >= 0 && r < 4) {
            iter_next(it);
            pos = pos + 1 < w.n ? pos + 1 : -1;
        } else if (pos >= 0 && r < 8) {
            iter_prev(it);
            pos--;
        } else if (r == 8) {
            char k[16];
            size_t kn = rand_seek_key(s, nent, k);
            iter_seek(it, k, kn);
            pos = mw_model_seek(w.e, w.n, sizeof(ent), ent_cmp_key, k, kn);
        } else if (tu_rand(s) % 2) {
            iter_seek_first(it);
            pos = w.n ? 0 : -1;
        } else {
            iter_seek_last(it);
            pos = w.n - 1;
        }
        if (!at(it, &w, pos) || w.p.live > 1) {
            fprintf(stderr, "random concat (np=%d, empty %d) diverged at op %d, model pos %d, %d open\n", np,
                    empty, op, pos, w.p.live);
            bad = 1;
        }
    }
    CHECK(!bad);
    CHECK_EQ(w.p.max_live, 1);
    CHECK_EQ(w.p.releases, 0);
    iter_destroy(it);
    CHECK_EQ(w.p.releases, 1);
    CHECK_EQ(w.p.live, 0);
    world_free(&w);
}

/* Parts are opened when the walk reaches them: a seek opens the part that holds its target. */
static void test_lazy(unsigned long long *s)
{
    static world w;
    world_build(&w, s, 8, 200, 0);
    iter *it = concat_iter_new(&part_ops, &w.p, w.p.n);
    iter_seek_first(it);
    CHECK(at(it, &w, 0));
    CHECK_EQ(w.p.opens, 1);
    iter_seek_last(it);
    CHECK(at(it, &w, w.n - 1));
    CHECK_EQ(w.p.opens, 2);
    /* A seek to each part's first entry opens that part and no other. */
    for (int i = 0; i < w.p.n; i++) {
        iter_seek_first(it); /* part 0 open: the seek below must switch unless i == 0 */
        int before = w.p.opens;
        const ent *e = &w.e[w.p.first[i]];
        iter_seek(it, e->ik, e->kn);
        CHECK(at(it, &w, w.p.first[i]));
        CHECK_EQ(w.p.opens - before, i == 0 ? 0 : 1);
    }
    /* Past every part: nothing opened, invalid. */
    char k[16];
    ikey_build(k, "\xff\xff\xff\xff\xff", 5, 0, KIND_DELETE);
    int before = w.p.opens;
    iter_seek(it, k, 5 + IKEY_TRAILER);
    CHECK(at(it, &w, -1));
    CHECK_EQ(w.p.opens, before);
    CHECK_EQ(w.p.live, 0);
    /* A full walk each way opens each part once. */
    before = w.p.opens;
    int n = 0;
    for (iter_seek_first(it); iter_valid(it); iter_next(it))
        n++;
    CHECK_EQ(n, w.n);
    CHECK_EQ(w.p.opens - before, w.p.n);
    before = w.p.opens;
    n = 0;
    for (iter_seek_last(it); iter_valid(it); iter_prev(it))
        n++;
    CHECK_EQ(n, w.n);
    CHECK_EQ(w.p.opens - before, w.p.n - 1); /* the last part, where the walk forward ended, stays open */
    CHECK_EQ(w.p.max_live, 1);
    iter_destroy(it);
    CHECK_EQ(w.p.releases, 1);
    world_free(&w);
}

static void test_degenerate(unsigned long long *s)
{
    /* No parts: never valid, nothing opened, released once. */
    parts none = {.fail_open = -1, .fail_part = -1};
    iter *it = concat_iter_new(&part_ops, &none, 0);
    CHECK(it != NULL);
    CHECK(!iter_valid(it));
    mw_check_empty(it);
    CHECK_EQ(none.opens, 0);
    iter_destroy(it);
    CHECK_EQ(none.releases, 1);

    /* Parts that are all empty: walks in both directions try each and find nothing (the last part,
     * where the forward walk ended, is not opened again). */
    static world w;
    world_build(&w, s, 4, 0, 1);
    it = concat_iter_new(&part_ops, &w.p, w.p.n);
    iter_seek_first(it);
    CHECK(at(it, &w, -1));
    CHECK_EQ(w.p.opens, 4);
    iter_seek_last(it);
    CHECK(at(it, &w, -1));
    CHECK_EQ(w.p.opens, 7);
    CHECK_EQ(w.p.live, 1); /* the last part tried stays open */
    iter_destroy(it);
    CHECK_EQ(w.p.live, 0);
    world_free(&w);
}

static void test_errors(unsigned long long *s)
{
    static world w;
    /* A part that cannot be opened: the walk stops there with PL_NOMEM, after what came before. */
    world_build(&w, s, 5, 100, 0);
    w.p.fail_open = 2;
    iter *it = concat_iter_new(&part_ops, &w.p, w.p.n);
    int n = 0, ok = 1;
    for (iter_seek_first(it); iter_valid(it); iter_next(it))
        ok &= at(it, &w, n++);
    CHECK(ok);
    CHECK_EQ(n, w.p.first[2]);
    CHECK_RC(iter_status(it), PL_NOMEM);
    n = w.n - 1;
    ok = 1;
    for (iter_seek_last(it); iter_valid(it); iter_prev(it))
        ok &= at(it, &w, n--);
    CHECK(ok);
    CHECK_EQ(n, w.p.first[3] - 1);
    CHECK_RC(iter_status(it), PL_NOMEM);
    iter_destroy(it);
    CHECK_EQ(w.p.live, 0);
    world_free(&w);

    /* A part failing mid-walk: what was yielded is a prefix of the model, then invalid with the
     * failure's code, which stays reported once the walk has moved to another part. */
    for (int left = 0; left < 40; left += 3) {
        world_build(&w, s, 4, 120, 0);
        w.p.fail_part = 1;
        w.p.fail_left = left;
        w.p.fail_code = left % 2 ? PL_IOERR : PL_CORRUPT;
        it = concat_iter_new(&part_ops, &w.p, w.p.n);
        n = 0;
        ok = 1;
        for (iter_seek_first(it); iter_valid(it) && n <= w.n; iter_next(it))
            ok &= at(it, &w, n++);
        CHECK(ok);
        int rc = iter_status(it);
        if (rc == PL_OK) {
            CHECK_EQ(n, w.n); /* the part had fewer steps than left */
        } else {
            CHECK_EQ(rc, w.p.fail_code);
            CHECK(n >= w.p.first[1] && n <= w.p.first[2]);
            iter_seek_last(it); /* another part: the failure is still reported */
            CHECK(at(it, &w, w.n - 1) || !iter_valid(it));
            CHECK_RC(iter_status(it), w.p.fail_code);
        }
        iter_destroy(it);
        CHECK_EQ(w.p.live, 0);
        world_free(&w);
    }
}

int main(void)
{
    unsigned long long seed = 0xc0ca7e5eedull;
    test_degenerate(&seed);
    test_lazy(&seed);
    test_errors(&seed);
    for (int np = 1; np <= MAXP; np++)
        for (int rep = 0; rep < 3; rep++) {
            test_random(&seed, np, np + (int)(tu_rand(&seed) % 500), 20000, 0);
            test_random(&seed, np, (int)(tu_rand(&seed) % 60), 5000, 1);
        }
    return test_report();
}
