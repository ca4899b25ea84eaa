/* test_merge.c -- the merging iterator against a sorted model: order in both directions, direction
 * switches, seeks, duplicates across children (kept, or dropped with MERGE_DEDUP), empty/one/NULL
 * children, error propagation. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ikey.h"
#include "iter.h"
#include "memtable.h"
#include "merge.h"
#include "status.h"
#include "fail_iter.h"
#include "memworld.h"
#include "testutil.h"


/* ---- the model ---- */

typedef struct {
    char ik[16];
    size_t kn;
    char val[24];
    size_t vn;
    int child;
} ent;

static int ent_cmp(const void *a, const void *b)
{
    const ent *x = a, *y = b;
    int r = ikey_cmp(x->ik, x->kn, y->ik, y->kn);
    return r ? r : (x->child > y->child) - (x->child < y->child);
}

/* An entry against a seek key, for mw_model_seek (equal internal keys: the seek lands on the first). */
static int ent_cmp_key(const void *e, const char *k, size_t kn)
{
    const ent *x = e;
    return ikey_cmp(x->ik, x->kn, k, kn);
}

#define MAXC MW_MAX_CHILDREN
#define MAXE 600

typedef struct {
    ent e[MAXE];
    int n;
    mw_children ch;
} world;

static void world_build(world *w, unsigned long long *s, int nc, int nent)
{
    memset(w, 0, sizeof *w);
    mw_children_init(&w->ch, nc);
    uint64_t lsn = 1;
    while (w->n < nent) {
        char uk[8];
        size_t un = mw_rand_ukey(s, uk, 3);
        int kind = tu_rand(s) % 4 == 0 ? KIND_DELETE : KIND_PUT;
        int c = (int)(tu_rand(s) % (unsigned)nc);
        int copies = (nc > 1 && tu_rand(s) % 8 == 0) ? 2 : 1; /* same internal key in two children */
        for (int j = 0; j < copies && w->n < nent; j++) {
            ent *e = &w->e[w->n++];
            ikey_build(e->ik, uk, un, lsn, kind);
            e->kn = un + IKEY_TRAILER;
            e->child = (c + j) % nc;
            e->vn = (size_t)snprintf(e->val, sizeof e->val, "v%llu.%d", (unsigned long long)lsn, e->child);
            CHECK_RC(memtable_add(w->ch.mt[e->child], lsn, kind, uk, un, e->val, e->vn), PL_OK);
        }
        lsn += 1 + tu_rand(s) % 3;
    }
    qsort(w->e, (size_t)w->n, sizeof(ent), ent_cmp);
}


/* Does it sit on model entry pos (-1: invalid)?  Returns 1 when it matches. */
static int at(iter *it, const world *w, int pos)
{
    const ent *e = pos >= 0 && pos < w->n ? &w->e[pos] : NULL;
    return e ? mw_at(it, e->ik, e->kn, e->val, e->vn) : mw_at(it, NULL, 0, NULL, 0);
}

static void test_scans(unsigned long long *s)
{
    world w;
    world_build(&w, s, 4, 300);
    iter *it = mw_children_merge(&w.ch);
    CHECK(it != NULL);
    CHECK(!iter_valid(it));
    /* Forward and backward full scans. */
    int ok = 1, i = 0;
    for (iter_seek_first(it); iter_valid(it) && i < w.n + 5; iter_next(it), i++)
        ok &= at(it, &w, i);
    CHECK(ok);
    CHECK_EQ(i, w.n);
    CHECK_RC(iter_status(it), PL_OK);
    ok = 1;
    i = w.n - 1;
    for (iter_seek_last(it); iter_valid(it) && i > -5; iter_prev(it), i--)
        ok &= at(it, &w, i);
    CHECK(ok);
    CHECK_EQ(i, -1);
    /* Switch direction at every position, both ways (stop at the first divergence: stepping an
     * invalid iterator is not allowed). */
    ok = 1;
    iter_seek_first(it);
    for (i = 0; i < w.n && ok; i++) {
        if (!(ok = at(it, &w, i)))
            break;
        iter_prev(it);
        if (!(ok = at(it, &w, i - 1)))
            break;
        if (i == 0)
            iter_seek_first(it);
        else
            iter_next(it);
        if (!(ok = at(it, &w, i)))
            break;
        iter_next(it);
    }
    CHECK(ok);
    ok = 1;
    iter_seek_last(it);
    for (i = w.n - 1; i >= 0 && ok; i--) {
        if (!(ok = at(it, &w, i)))
            break;
        iter_next(it);
        if (!(ok = at(it, &w, i + 1 < w.n ? i + 1 : -1)))
            break;
        if (i == w.n - 1)
            iter_seek_last(it);
        else
            iter_prev(it);
        if (!(ok = at(it, &w, i)))
            break;
        iter_prev(it);
    }
    CHECK(ok);
    iter_destroy(it);
    mw_children_free(&w.ch);
}

/* Random steps and seeks against the model.  With MERGE_DEDUP in flags one stop per internal key:
 * the copy of the lowest child after a step forward (or a seek), of the highest after a step back. */
static void test_random(unsigned long long *s, int nc, int nent, int ops, unsigned flags)
{
    world w;
    world_build(&w, s, nc, nent);
    static int first[MAXE], last[MAXE]; /* each stop's first and last model entry */
    int ng = 0;
    for (int i = 0; i < w.n; i++) {
        if (i && (flags & MERGE_DEDUP) && ikey_cmp(w.e[i].ik, w.e[i].kn, w.e[i - 1].ik, w.e[i - 1].kn) == 0) {
            last[ng - 1] = i;
            continue;
        }
        first[ng] = last[ng] = i;
        ng++;
    }
    if (flags & MERGE_DEDUP)
        CHECK(nc == 1 || nent < 40 || ng < w.n); /* the world has copies to drop */
    iter *ch[MAXC];
    for (int c = 0; c < w.ch.n; c++)
        ch[c] = mw_iter(w.ch.mt[c]);
    iter *it = merge_iter_new_flags(ch, w.ch.n, flags);
    CHECK(it != NULL);
    int g = -1, fwd = 1, bad = 0;
    for (int op = 0; op < ops && !bad; op++) {
        int r = (int)(tu_rand(s) % 10);
        if (g >= 0 && r < 4) {
            iter_next(it);
            g = g + 1 < ng ? g + 1 : -1;
            fwd = 1;
        } else if (g >= 0 && r < 8) {
            iter_prev(it);
            g--;
            fwd = 0;
        } else if (r == 8) {
            char uk[8], k[16];
            size_t un = mw_rand_ukey(s, uk, 4);
            uint64_t lsn = tu_rand(s) % 8 == 0 ? LSN_MAX : tu_rand(s) % (uint64_t)(nent * 3 + 2);
            ikey_build(k, uk, un, lsn, (int)(tu_rand(s) % 2));
            iter_seek(it, k, un + IKEY_TRAILER);
            int pos = mw_model_seek(w.e, w.n, sizeof(ent), ent_cmp_key, k, un + IKEY_TRAILER); /* a stop's first entry, or -1 */
            for (g = 0; pos >= 0 && first[g] != pos; g++)
                ;
            g = pos >= 0 ? g : -1;
            fwd = 1;
        } else if (tu_rand(s) % 2) {
            iter_seek_first(it);
            g = ng ? 0 : -1;
            fwd = 1;
        } else {
            iter_seek_last(it);
            g = ng - 1;
            fwd = 0;
        }
        int pos = g < 0 ? -1 : fwd ? first[g] : last[g];
        if (!at(it, &w, pos)) {
            fprintf(stderr, "random merge (nc=%d, flags %u) diverged at op %d, model pos %d\n", nc, flags, op, pos);
            bad = 1;
        }
    }
    CHECK(!bad);
    iter_destroy(it);
    mw_children_free(&w.ch);
}

/* First byte of the current value; '?' when invalid, '-' when empty. */
static char val0(iter *it)
{
    if (!iter_valid(it))
        return '?';
    const char *v;
    size_t vn;
    iter_value(it, &v, &vn);
    return vn ? v[0] : '-';
}

/* Step forward (d > 0) or backward when valid, then val0. */
static char mv(iter *it, int d)
{
    if (!iter_valid(it))
        return '?';
    if (d > 0)
        iter_next(it);
    else
        iter_prev(it);
    return val0(it);
}

/* val0 of every entry from the first on (forward) or from the last back, at most 15, into got. */
static void scan_vals(iter *it, int forward, char got[16])
{
    int n = 0;
    for (forward ? iter_seek_first(it) : iter_seek_last(it); iter_valid(it) && n < 15;
         forward ? iter_next(it) : iter_prev(it))
        got[n++] = val0(it);
    got[n] = 0;
}

static void test_degenerate(void)
{
    /* No children: never valid. */
    iter *it = merge_iter_new(NULL, 0);
    CHECK(it != NULL);
    mw_check_empty(it);
    iter_destroy(it);

    /* Empty children. */
    memtable *a = mw_memtable(), *b = mw_memtable();
    iter *ch[3] = {mw_iter(a), mw_iter(b), NULL};
    it = merge_iter_new(ch, 2);
    iter_seek_first(it);
    CHECK(!iter_valid(it));
    iter_seek_last(it);
    CHECK(!iter_valid(it));
    iter_destroy(it);

    /* One child is handed back as is. */
    ch[0] = mw_iter(a);
    it = merge_iter_new(ch, 1);
    CHECK(it == ch[0]);
    iter_destroy(it);

    /* A NULL child: NULL, the others destroyed (leak check). */
    ch[0] = mw_iter(a);
    ch[1] = NULL;
    ch[2] = mw_iter(b);
    CHECK(merge_iter_new(ch, 3) == NULL);
    ch[0] = NULL;
    CHECK(merge_iter_new(ch, 1) == NULL);

    /* Same internal key in three children: yielded three times, by child index going forward and by
     * reverse child index going backward; the direction switches land on the neighbours. */
    memtable *c = mw_memtable();
    CHECK_RC(memtable_add(a, 5, KIND_PUT, "k", 1, "A", 1), PL_OK);
    CHECK_RC(memtable_add(b, 5, KIND_PUT, "k", 1, "B", 1), PL_OK);
    CHECK_RC(memtable_add(c, 5, KIND_PUT, "k", 1, "C", 1), PL_OK);
    CHECK_RC(memtable_add(b, 9, KIND_PUT, "", 0, "e", 1), PL_OK);
    CHECK_RC(memtable_add(c, 1, KIND_DELETE, "z", 1, "", 0), PL_OK);
    iter *ch3[3] = {mw_iter(a), mw_iter(b), mw_iter(c)};
    it = merge_iter_new(ch3, 3);
    char got[16];
    scan_vals(it, 1, got);
    CHECK(strcmp(got, "eABC-") == 0);
    scan_vals(it, 0, got);
    CHECK(strcmp(got, "-CBAe") == 0);
    iter_seek_first(it);
    CHECK(mv(it, 1) == 'A');
    CHECK(mv(it, 1) == 'B');
    CHECK(mv(it, -1) == 'A');
    CHECK(mv(it, 1) == 'B');
    CHECK(mv(it, 1) == 'C');
    CHECK(mv(it, -1) == 'B');
    CHECK(mv(it, -1) == 'A');
    CHECK(mv(it, -1) == 'e');
    CHECK(mv(it, 1) == 'A');
    CHECK(mv(it, 1) == 'B');
    CHECK(mv(it, 1) == 'C');
    CHECK(mv(it, 1) == '-');
    CHECK(mv(it, -1) == 'C');
    iter_destroy(it);

    /* With MERGE_DEDUP the same key is yielded once: the first copy met in each direction (steps:
     * + next, - prev, each followed by the value it lands on). */
    iter *cd[3] = {mw_iter(a), mw_iter(b), mw_iter(c)};
    it = merge_iter_new_flags(cd, 3, MERGE_DEDUP);
    char dedup_fwd[16], dedup_back[16];
    scan_vals(it, 1, dedup_fwd);
    scan_vals(it, 0, dedup_back);
    CHECK(strcmp(dedup_fwd, "eA-") == 0 && strcmp(dedup_back, "-Ce") == 0);
    iter_seek_first(it);
    const char *steps = "+A+--C-e+A-e-?";
    for (const char *p = steps; p[0] && p[1]; p += 2)
        CHECK(mv(it, p[0] == '+' ? 1 : -1) == p[1]);
    CHECK_RC(iter_status(it), PL_OK);
    iter_destroy(it);
    memtable_unref(a);
    memtable_unref(b);
    memtable_unref(c);
}

typedef struct {
    char k[16];
    size_t n;
} rec;

/* Walk: seek_last, `back` prevs, then (if valid) forward to the end; record every entry seen. */
static int walk(iter *it, int back, rec *out, int max)
{
    int n = 0;
    iter_seek_last(it);
    for (int i = 0; i <= back && iter_valid(it) && n < max; i++) {
        const char *k;
        iter_key(it, &k, &out[n].n);
        memcpy(out[n].k, k, out[n].n);
        n++;
        if (i < back)
            iter_prev(it);
    }
    if (iter_valid(it))
        iter_next(it);
    while (iter_valid(it) && n < max) {
        const char *k;
        iter_key(it, &k, &out[n].n);
        memcpy(out[n].k, k, out[n].n);
        n++;
        iter_next(it);
    }
    return n;
}

static void test_errors(void)
{
    memtable *a = mw_memtable(), *b = mw_memtable();
    char k[4];
    for (int i = 0; i < 50; i++) {
        k[0] = (char)('a' + i % 26);
        k[1] = (char)('0' + i / 26);
        CHECK_RC(memtable_add(i % 2 ? a : b, (uint64_t)i + 1, KIND_PUT, k, 2, "v", 1), PL_OK);
    }
    /* A child failing mid-scan makes the merge invalid: what was yielded is a prefix of the clean
     * sequence (no silent skipping of the failed child), and status says why. */
    rec clean[200], got[200];
    for (int back = 0; back < 80; back += 7) {
        iter *cc[3] = {mw_iter(a), mw_iter(b), mw_iter(b)};
        iter *it = merge_iter_new(cc, 3);
        int nclean = walk(it, back, clean, 200);
        CHECK_RC(iter_status(it), PL_OK);
        iter_destroy(it);
        int failures = 0;
        for (int left = 0; left < 60; left++) {
            iter *ch[3] = {mw_iter(a), fail_iter_new(mw_iter(b), left, left % 2 ? PL_IOERR : PL_CORRUPT, 0),
                           mw_iter(b)};
            it = merge_iter_new(ch, 3);
            int n = walk(it, back, got, 200);
            int rc = iter_status(it);
            int prefix = n <= nclean;
            for (int i = 0; prefix && i < n; i++)
                prefix = got[i].n == clean[i].n && memcmp(got[i].k, clean[i].k, got[i].n) == 0;
            CHECK(prefix);
            if (rc == PL_OK) {
                CHECK_EQ(n, nclean);
            } else {
                failures++;
                CHECK_EQ(rc, left % 2 ? PL_IOERR : PL_CORRUPT);
                CHECK(!iter_valid(it));
                iter_seek_first(it);
                CHECK(!iter_valid(it)); /* the failure is sticky in the child */
            }
            iter_destroy(it);
        }
        CHECK(failures >= 2); /* left 0 and 1 fail on the first call */
    }
    /* The first non-OK child status in child order. */
    {
        iter *ch[3] = {mw_iter(a), fail_iter_new(mw_iter(b), 0, PL_IOERR, 0),
                       fail_iter_new(mw_iter(a), 0, PL_CORRUPT, 0)};
        iter *it = merge_iter_new(ch, 3);
        iter_seek_first(it);
        CHECK(!iter_valid(it));
        CHECK_RC(iter_status(it), PL_IOERR);
        iter_destroy(it);
    }
    memtable_unref(a);
    memtable_unref(b);
}

int main(void)
{
    unsigned long long seed = 0x5eed1234abcdull;
    test_degenerate();
    test_errors();
    for (int i = 0; i < 5; i++)
        test_scans(&seed);
    for (int nc = 1; nc <= MAXC; nc++)
        for (int rep = 0; rep < 4; rep++)
            test_random(&seed, nc, 40 + (int)(tu_rand(&seed) % 500), 20000, 0);
    test_random(&seed, 3, 0, 100, 0);
    for (int nc = 1; nc <= MAXC; nc++)
        for (int rep = 0; rep < 4; rep++)
            test_random(&seed, nc, 40 + (int)(tu_rand(&seed) % 500), 20000, MERGE_DEDUP);
    test_random(&seed, 3, 0, 100, MERGE_DEDUP);
    return test_report();
}
