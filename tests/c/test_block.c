/* test_block.c -- block builder and reader: round trips, seeks, prev, and malformed blocks (run under
 * ASan: a malformed block must give PL_CORRUPT, never a read outside the block). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block.h"
#include "bloom.h"
#include "coding.h"
#include "ikey.h"
#include "testutil.h"

typedef struct {
    char *k;
    size_t kn;
    char *v;
    size_t vn;
} entry;

static entry *model;
static size_t nmodel;

static int ent_cmp(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    return ikey_cmp(x->k, x->kn, y->k, y->kn);
}

static void add_entry(const char *ukey, size_t ulen, uint64_t lsn, int kind, size_t vlen, unsigned long long *rs)
{
    entry *e = &model[nmodel++];
    e->kn = ulen + 8;
    e->k = malloc(e->kn);
    ikey_build(e->k, ukey, ulen, lsn, kind);
    e->vn = vlen;
    e->v = malloc(vlen ? vlen : 1);
    for (size_t i = 0; i < vlen; i++)
        e->v[i] = (char)tu_rand(rs);
}

/* A sorted set of entries: the empty user key, keys that are prefixes of each other, long shared
 * prefixes, keys longer than the cursor's inline buffer, binary bytes, several versions each. */
static void make_model(size_t n, unsigned long long seed)
{
    unsigned long long rs = seed;
    model = calloc(n + 64, sizeof *model);
    nmodel = 0;
    char k[400];
    add_entry("", 0, 9, KIND_PUT, 3, &rs);
    add_entry("", 0, 7, KIND_DELETE, 0, &rs);
    add_entry("", 0, 2, KIND_PUT, 0, &rs);
    add_entry("a", 1, 5, KIND_PUT, 1, &rs);
    add_entry("aa", 2, 5, KIND_PUT, 2, &rs);
    add_entry("aaa", 3, 5, KIND_PUT, 0, &rs);
    add_entry("\0", 1, 1, KIND_PUT, 5, &rs);
    add_entry("\xff\xff", 2, 1, KIND_PUT, 5, &rs);
    while (nmodel < n) {
        size_t len;
        switch (tu_rand(&rs) % 4) {
        case 0: len = (size_t)sprintf(k, "user/%06llu", tu_rand(&rs) % 100000); break;
        case 1: len = (size_t)sprintf(k, "user/%06llu/suffix-%llu", tu_rand(&rs) % 1000, tu_rand(&rs) % 50); break;
        case 2: /* long: past BLOCK_KEY_INLINE */
            len = 150 + tu_rand(&rs) % 200;
            memset(k, 'L', len);
            sprintf(k + len - 8, "%08llu", tu_rand(&rs) % 100000);
            break;
        default:
            len = 1 + tu_rand(&rs) % 12;
            for (size_t i = 0; i < len; i++)
                k[i] = (char)tu_rand(&rs);
        }
        int versions = 1 + (int)(tu_rand(&rs) % 3);
        for (int v = 0; v < versions && nmodel < n; v++)
            add_entry(k, len, 1 + tu_rand(&rs) % 1000, tu_rand(&rs) % 5 ? KIND_PUT : KIND_DELETE,
                      tu_rand(&rs) % 7 == 0 ? 300 + tu_rand(&rs) % 300 : tu_rand(&rs) % 20, &rs);
    }
    qsort(model, nmodel, sizeof *model, ent_cmp);
    /* drop duplicates (same user key and lsn) */
    size_t w = 0;
    for (size_t i = 0; i < nmodel; i++) {
        if (w && ikey_cmp(model[w - 1].k, model[w - 1].kn, model[i].k, model[i].kn) == 0) {
            free(model[i].k);
            free(model[i].v);
            continue;
        }
        model[w++] = model[i];
    }
    nmodel = w;
}

static void free_model(void)
{
    for (size_t i = 0; i < nmodel; i++) {
        free(model[i].k);
        free(model[i].v);
    }
    free(model);
    model = NULL;
    nmodel = 0;
}

/* Index of the first model entry >= key (nmodel if none). */
static size_t lower_bound(const char *k, size_t kn)
{
    size_t lo = 0, hi = nmodel;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (ikey_cmp(model[mid].k, model[mid].kn, k, kn) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int at(iter *it, size_t i)
{
    if (i >= nmodel)
        return !iter_valid(it);
    if (!iter_valid(it))
        return 0;
    const char *k, *v;
    size_t kn, vn;
    iter_key(it, &k, &kn);
    iter_value(it, &v, &vn);
    return kn == model[i].kn && memcmp(k, model[i].k, kn) == 0 && vn == model[i].vn &&
           (vn == 0 || memcmp(v, model[i].v, vn) == 0);
}

/* Build the model into a block with the given restart interval (and a hash index if hash); returns a
 * malloc'd exact copy. */
static char *build_opt(int interval, int hash, size_t *len)
{
    block_builder b;
    block_builder_init(&b, interval);
    if (hash)
        block_builder_set_hash(&b);
    CHECK(block_builder_empty(&b));
    int bad = 0;
    for (size_t i = 0; i < nmodel; i++)
        bad += block_builder_add(&b, model[i].k, model[i].kn, model[i].v, model[i].vn) != PL_OK;
    CHECK_EQ(bad, 0);
    CHECK_EQ(block_builder_entries(&b), nmodel);
    size_t est = block_builder_size_estimate(&b);
    const char *d;
    CHECK_RC(block_builder_finish(&b, &d, len), PL_OK);
    CHECK_EQ(est, *len);
    char *copy = malloc(*len);
    memcpy(copy, d, *len);
    block_builder_free(&b);
    return copy;
}

static char *build(int interval, size_t *len) { return build_opt(interval, 0, len); }

static void test_round_trip(int interval)
{
    size_t len;
    char *blk = build(interval, &len);
    int st;
    iter *it = block_iter_new(blk, len, &st);
    CHECK_RC(st, PL_OK);
    CHECK(!iter_valid(it));

    /* forward */
    size_t i = 0, bad = 0;
    for (iter_seek_first(it); iter_valid(it); iter_next(it), i++)
        bad += !at(it, i);
    CHECK_EQ(i, nmodel);
    CHECK_EQ(bad, 0);
    CHECK_RC(iter_status(it), PL_OK);

    /* backward */
    i = nmodel;
    bad = 0;
    for (iter_seek_last(it); iter_valid(it); iter_prev(it))
        bad += !at(it, --i);
    CHECK_EQ(i, 0);
    CHECK_EQ(bad, 0);

    /* seek to every key, then step both ways */
    bad = 0;
    for (i = 0; i < nmodel; i++) {
        iter_seek(it, model[i].k, model[i].kn);
        bad += !at(it, i);
        if (i + 1 < nmodel) {
            iter_next(it);
            bad += !at(it, i + 1);
            iter_prev(it);
            bad += !at(it, i);
        }
        if (i > 0 && iter_valid(it)) {
            iter_prev(it);
            bad += !at(it, i - 1);
        }
    }
    CHECK_EQ(bad, 0);

    /* seeks to keys between entries: same user key with other LSNs, random user keys */
    unsigned long long rs = 77;
    char k[64];
    bad = 0;
    for (int n = 0; n < 5000; n++) {
        size_t kn;
        if (n % 2) {
            const entry *e = &model[tu_rand(&rs) % nmodel];
            memcpy(k, e->k, e->kn - 8 < 40 ? e->kn - 8 : 40);
            kn = (e->kn - 8 < 40 ? e->kn - 8 : 40);
            put_u64(k + kn, ikey_pack(tu_rand(&rs) % 1100, (int)(tu_rand(&rs) % 2)));
            kn += 8;
        } else {
            kn = 8 + tu_rand(&rs) % 12;
            for (size_t j = 0; j < kn; j++)
                k[j] = (char)tu_rand(&rs);
        }
        iter_seek(it, k, kn);
        bad += !at(it, lower_bound(k, kn));
    }
    CHECK_EQ(bad, 0);

    /* before the first and after the last */
    ikey_build(k, "", 0, LSN_MAX, KIND_SEEK);
    iter_seek(it, k, 8);
    CHECK(at(it, 0));
    memset(k, 0xff, 20);
    put_u64(k + 20, 0);
    iter_seek(it, k, 28);
    CHECK(!iter_valid(it));
    CHECK_RC(iter_status(it), PL_OK);
    /* a bare user key (shorter than a trailer) seeks before all its versions */
    iter_seek(it, "a", 1);
    CHECK(iter_valid(it));
    {
        const char *kk;
        size_t kn;
        iter_key(it, &kk, &kn);
        CHECK(kn == 9 && kk[0] == 'a');
    }
    /* first entry: prev makes it invalid */
    iter_seek_first(it);
    iter_prev(it);
    CHECK(!iter_valid(it));
    iter_seek_last(it);
    iter_next(it);
    CHECK(!iter_valid(it));
    CHECK_RC(iter_status(it), PL_OK);
    iter_destroy(it);
    free(blk);
}

/* Whether cursor c sits at model entry i (i == nmodel: not valid). */
static int cursor_at(const block_cursor *c, size_t i)
{
    if (i >= nmodel)
        return !block_cursor_valid(c);
    return block_cursor_valid(c) && block_cursor_klen(c) == model[i].kn &&
           memcmp(block_cursor_key(c), model[i].k, model[i].kn) == 0;
}

/* A random walk of seeks, nexts and prevs (both directions mixed, across restart regions) lands where
 * the model says: the region cache of a backward step (block.h) must give the same entries, keys,
 * values and restart indexes as a forward walk, however the steps interleave. */
static void test_random_walk(int interval, unsigned long long seed)
{
    size_t len;
    char *blk = build(interval, &len);
    block_cursor c;
    CHECK_RC(block_cursor_init(&c, blk, len), PL_OK);
    /* each entry's restart index, from a forward walk */
    uint32_t *restart = malloc(sizeof *restart * (nmodel ? nmodel : 1));
    size_t n = 0;
    for (block_cursor_seek_first(&c); block_cursor_valid(&c); block_cursor_next(&c))
        restart[n++] = block_cursor_restart(&c);
    CHECK_EQ(n, nmodel);
    unsigned long long rs = seed;
    size_t pos = nmodel, bad = 0, cached = 0;
    for (int step = 0; step < 40000; step++) {
        unsigned op = (unsigned)(tu_rand(&rs) % 16);
        if (op == 0) {
            block_cursor_seek_first(&c);
            pos = 0;
        } else if (op == 1) {
            block_cursor_seek_last(&c);
            pos = nmodel - 1;
        } else if (op == 2) {
            pos = tu_rand(&rs) % nmodel;
            const entry *e = &model[pos];
            block_cursor_seek(&c, e->k, e->kn - 8, get_u64(e->k + e->kn - 8));
        } else if (pos == nmodel) {
            continue; /* next/prev need a valid cursor */
        } else if (op < 9) {
            block_cursor_next(&c);
            pos = pos + 1;
        } else {
            block_cursor_prev(&c);
            pos = pos == 0 ? nmodel : pos - 1;
        }
        cached += c.kext != NULL;
        if (pos == nmodel) {
            bad += block_cursor_valid(&c) || block_cursor_status(&c) != PL_OK;
            continue;
        }
        const entry *e = &model[pos];
        bad += !block_cursor_valid(&c) || block_cursor_klen(&c) != e->kn ||
               memcmp(block_cursor_key(&c), e->k, e->kn) != 0 || block_cursor_vlen(&c) != e->vn ||
               (e->vn && memcmp(block_cursor_value(&c), e->v, e->vn) != 0) ||
               block_cursor_restart(&c) != restart[pos];
    }
    CHECK_EQ(bad, 0);
    /* the walk went through the cache (but never with a region too large for it) */
    CHECK(interval > 1 && (size_t)interval <= BLOCK_REGION_CACHE_ENTRIES ? cached > 0 : 1);
    /* a whole backward walk, then forward again through the region the last step back cached */
    size_t i = nmodel;
    bad = 0;
    for (block_cursor_seek_last(&c); block_cursor_valid(&c); block_cursor_prev(&c))
        bad += !cursor_at(&c, --i);
    CHECK_EQ(i, 0);
    CHECK_EQ(bad, 0);
    block_cursor_seek_first(&c);
    for (int k = 0; k < 6 && (size_t)k + 1 < nmodel; k++)
        block_cursor_next(&c);
    for (int k = 0; k < 6 && block_cursor_valid(&c); k++)
        block_cursor_prev(&c);
    for (i = 0; block_cursor_valid(&c); block_cursor_next(&c), i++)
        bad += !cursor_at(&c, i);
    CHECK_EQ(i, nmodel);
    CHECK_EQ(bad, 0);
    /* reset to another block drops the cache: the same block again reads the same */
    block_cursor_seek_last(&c);
    CHECK_RC(block_cursor_reset(&c, blk, len), PL_OK);
    CHECK(!block_cursor_valid(&c) && c.rn == 0 && c.kext == NULL);
    block_cursor_seek_last(&c);
    block_cursor_prev(&c);
    CHECK(nmodel < 2 || cursor_at(&c, nmodel - 2));
    free(restart);
    block_cursor_free(&c);
    free(blk);
}
/* The hash index: a point lookup through it lands where the binary search lands, for every key of the
 * block at every snapshot, and says "absent" only for keys the block does not hold. */
static void test_hash_index(int interval)
{
    size_t len, plain_len;
    char *blk = build_opt(interval, 1, &len);
    char *plain = build_opt(interval, 0, &plain_len);
    block_cursor c;
    CHECK_RC(block_cursor_init(&c, blk, len), PL_OK);
    int indexed = c.slot != NULL;
    printf("interval %d: %zu entries, %u restarts, %u hash slots, %zu bytes (%zu without the index)\n",
           interval, nmodel, c.nrestarts, c.nslots, len, plain_len);
    CHECK(indexed == (c.nrestarts <= BLOCK_HASH_MAX_RESTARTS));
    CHECK_RC(block_cursor_check_hash(&c), PL_OK);
    size_t wrong = 0, absent_said = 0, lookups = 0;
    for (size_t i = 0; i < nmodel; i++) {
        const char *k = model[i].k;
        size_t un = model[i].kn - IKEY_TRAILER;
        uint64_t tr = get_u64(k + un);
        uint64_t targets[] = {UINT64_MAX, tr, tr + 1, tr - 1, 0};
        for (int t = 0; t < 5; t++) {
            CHECK_RC(block_cursor_reset(&c, blk, len), PL_OK);
            int in = block_cursor_seek_key(&c, k, un, targets[t], bloom_hash(k, un));
            char probe[400];
            memcpy(probe, k, un);
            put_u64(probe + un, targets[t]);
            size_t want = lower_bound(probe, un + IKEY_TRAILER);
            int want_same_key = want < nmodel && model[want].kn == model[i].kn &&
                                memcmp(model[want].k, k, un) == 0;
            lookups++;
            if (!in) {
                absent_said++;
                wrong += want_same_key; /* "absent" while the key has a visible entry */
            } else if (want_same_key ? !cursor_at(&c, want)
                                     : block_cursor_valid(&c) && block_cursor_klen(&c) == model[i].kn &&
                                           memcmp(block_cursor_key(&c), k, un) == 0) {
                wrong++;
            }
        }
    }
    /* keys that are not in the block */
    unsigned long long rs = 77;
    size_t absent_found = 0;
    for (int n = 0; n < 20000; n++) {
        char k[32];
        size_t un = (size_t)sprintf(k, "zz%llu", tu_rand(&rs));
        CHECK_RC(block_cursor_reset(&c, blk, len), PL_OK);
        if (block_cursor_seek_key(&c, k, un, UINT64_MAX, bloom_hash(k, un)) && block_cursor_valid(&c) &&
            block_cursor_klen(&c) == un + IKEY_TRAILER && memcmp(block_cursor_key(&c), k, un) == 0)
            absent_found++;
        absent_said += indexed && !block_cursor_valid(&c);
    }
    printf("  %zu lookups of present keys, %zu wrong; absent keys answered from the index alone: %zu\n",
           lookups, wrong, absent_said);
    CHECK_EQ(wrong, 0);
    CHECK_EQ(absent_found, 0);
    if (indexed)
        CHECK(absent_said > 15000); /* most absent keys end at a free slot, no key compared */
    /* a slot naming the wrong region is found by the check */
    if (indexed) {
        for (uint32_t i = 0; i < c.nslots; i++) {
            unsigned char *reg = (unsigned char *)blk + (c.slot - (const unsigned char *)blk) + 2 * i + 1;
            if (*reg != BLOCK_HASH_EMPTY && c.nrestarts > 1) {
                unsigned char save = *reg;
                *reg = (unsigned char)((save + 1) % c.nrestarts);
                CHECK_RC(block_cursor_reset(&c, blk, len), PL_OK);
                CHECK_RC(block_cursor_check_hash(&c), PL_CORRUPT);
                *reg = save;
                break;
            }
        }
    }
    block_cursor_free(&c);
    free(blk);
    free(plain);
}

static int released;
static void on_release(void *arg)
{
    released++;
    free(arg);
}

static void test_builder_misc(void)
{
    block_builder b;
    block_builder_init(&b, 16);
    const char *d;
    size_t len;
    /* empty block */
    CHECK_EQ(block_builder_size_estimate(&b), 8);
    CHECK_RC(block_builder_finish(&b, &d, &len), PL_OK);
    CHECK_EQ(len, 8);
    int st;
    iter *it = block_iter_new(d, len, &st);
    CHECK_RC(st, PL_OK);
    iter_seek_first(it);
    CHECK(!iter_valid(it));
    iter_seek_last(it);
    CHECK(!iter_valid(it));
    iter_seek(it, "12345678", 8);
    CHECK(!iter_valid(it));
    CHECK_RC(iter_status(it), PL_OK);
    iter_destroy(it);

    /* short keys are refused */
    block_builder_reset(&b);
    CHECK_RC(block_builder_add(&b, "1234567", 7, "", 0), PL_INVALID);
    CHECK(block_builder_empty(&b));

    /* reset and reuse; release callback on destroy */
    char key[8];
    ikey_build(key, "", 0, 5, KIND_PUT);
    CHECK_RC(block_builder_add(&b, key, 8, "v", 1), PL_OK);
    CHECK_RC(block_builder_finish(&b, &d, &len), PL_OK);
    char *copy = malloc(len);
    memcpy(copy, d, len);
    it = block_iter_new(copy, len, &st);
    block_iter_set_release(it, on_release, copy);
    iter_seek_first(it);
    CHECK(iter_valid(it));
    const char *v;
    size_t vn;
    iter_value(it, &v, &vn);
    CHECK(vn == 1 && v[0] == 'v');
    iter_destroy(it);
    CHECK_EQ(released, 1);
    iter_destroy(NULL);
    block_builder_free(&b);

    /* the exact bytes of a tiny block (format pin) */
    block_builder_init(&b, 16);
    char k1[10], k2[10];
    ikey_build(k1, "ab", 2, 1, KIND_PUT);
    ikey_build(k2, "ac", 2, 1, KIND_PUT);
    CHECK_RC(block_builder_add(&b, k1, 10, "x", 1), PL_OK);
    CHECK_RC(block_builder_add(&b, k2, 10, "", 0), PL_OK);
    CHECK_RC(block_builder_finish(&b, &d, &len), PL_OK);
    static const unsigned char want[] = {
        0, 10, 1, 'a', 'b', 1, 1, 0, 0, 0, 0, 0, 0, 'x', /* entry 1: "ab", lsn 1 put, "x" */
        1, 9, 0, 'c', 1, 1, 0, 0, 0, 0, 0, 0,             /* entry 2: shares "a" */
        0, 0, 0, 0,                                       /* restart[0] = 0 */
        1, 0, 0, 0};                                      /* one restart */
    CHECK_EQ(len, sizeof want);
    CHECK(len == sizeof want && memcmp(d, want, len) == 0);
    block_builder_free(&b);
}

/* Drive an iterator over a (possibly malformed) block every way; it must stay inside the block,
 * terminate, and end with status PL_OK or PL_CORRUPT.  Returns the final status. */
static int steps_bad, status_bad;
static int exercise(const char *data, size_t len)
{
    char *exact = malloc(len ? len : 1); /* exactly len bytes, so ASan sees any overread */
    if (len)
        memcpy(exact, data, len);
    int st, worst = PL_OK;
    iter *it = block_iter_new(exact, len, &st);
    unsigned sum = 0;
    size_t limit = len + 2, steps;
#define TOUCH()                                                                             \
    do {                                                                                    \
        const char *k_, *v_;                                                                \
        size_t kn_, vn_;                                                                    \
        iter_key(it, &k_, &kn_);                                                            \
        iter_value(it, &v_, &vn_);                                                          \
        for (size_t q_ = 0; q_ < kn_; q_++) sum += (unsigned char)k_[q_];                   \
        for (size_t q_ = 0; q_ < vn_; q_++) sum += (unsigned char)v_[q_];                   \
    } while (0)
#define NOTE() do { if (iter_status(it)) worst = iter_status(it); } while (0)
    steps = 0;
    for (iter_seek_first(it); iter_valid(it) && steps < limit; iter_next(it), steps++)
        TOUCH();
    steps_bad += steps >= limit;
    NOTE();
    it->ops->destroy(it);
    it = block_iter_new(exact, len, &st);
    steps = 0;
    for (iter_seek_last(it); iter_valid(it) && steps < limit; iter_prev(it), steps++)
        TOUCH();
    steps_bad += steps >= limit;
    NOTE();
    it->ops->destroy(it);
    static const char *targets[] = {"\0\0\0\0\0\0\0\0", "user/000500\1\0\0\0\0\0\0\0",
                                    "LLLLLLLLLLLLLLLL\xff\xff\xff\xff\xff\xff\xff\xff",
                                    "\xff\xff\xff\xff\xff\xff\xff\xff\xff"};
    static const size_t tlen[] = {8, 19, 24, 9};
    for (int t = 0; t < 4; t++) {
        it = block_iter_new(exact, len, &st);
        iter_seek(it, targets[t], tlen[t]);
        steps = 0;
        while (iter_valid(it) && steps < 4) {
            TOUCH();
            if (steps++ % 2)
                iter_prev(it);
            else
                iter_next(it);
        }
        NOTE();
        it->ops->destroy(it);
    }
    {   /* the point lookup (through a hash index when the block has one) and the index check */
        block_cursor c;
        block_cursor_init_empty(&c);
        for (int t = 0; t < 4; t++) {
            if (block_cursor_reset(&c, exact, len) == PL_OK) {
                block_cursor_seek_key(&c, targets[t], tlen[t] - IKEY_TRAILER, UINT64_MAX,
                                      bloom_hash(targets[t], tlen[t] - IKEY_TRAILER));
                if (block_cursor_valid(&c))
                    sum += (unsigned char)block_cursor_key(&c)[0];
            }
            if (c.status)
                worst = c.status;
        }
        if (block_cursor_reset(&c, exact, len) == PL_OK && block_cursor_check_hash(&c))
            worst = c.status;
        block_cursor_free(&c);
    }
    status_bad += worst != PL_OK && worst != PL_CORRUPT;
    (void)sum;
    free(exact);
    return worst;
}

static void test_malformed(void)
{
    unsigned long long rs = 12345;
    steps_bad = status_bad = 0;

    /* random bytes */
    char buf[600];
    int corrupt = 0;
    for (int n = 0; n < 20000; n++) {
        size_t len = tu_rand(&rs) % 300;
        for (size_t i = 0; i < len; i++)
            buf[i] = (char)tu_rand(&rs);
        /* half the time, a plausible restart array so the parser gets past it */
        if (len >= 12 && n % 2) {
            uint32_t cnt = 1 + (uint32_t)(tu_rand(&rs) % 3);
            if (4 + 4 * (size_t)cnt <= len) {
                put_u32(buf + len - 4, cnt);
                for (uint32_t i = 0; i < cnt; i++)
                    put_u32(buf + len - 4 - 4 * (cnt - i), i == 0 ? 0 : (uint32_t)(tu_rand(&rs) % len));
            }
        }
        corrupt += exercise(buf, len) == PL_CORRUPT;
    }
    printf("random blocks: %d of 20000 reported PL_CORRUPT\n", corrupt);
    CHECK(corrupt > 10000);

    /* a real block, truncated at every length: always PL_CORRUPT */
    free_model();
    make_model(60, 5);
    for (size_t i = 0; i < nmodel; i++) /* short values: a block of a couple of KiB */
        if (model[i].vn > 12)
            model[i].vn = 12;
    for (int v = 0; v < 6; v++) {
        int interval = v % 3 == 0 ? 1 : v % 3 == 1 ? 4 : 16, hash = v >= 3;
        size_t len;
        char *blk = build_opt(interval, hash, &len);
        int not_corrupt = 0;
        for (size_t cut = 0; cut < len; cut++)
            not_corrupt += exercise(blk, cut) != PL_CORRUPT;
        printf("interval %d%s: %zu truncations, %d not detected\n", interval, hash ? " (hash index)" : "",
               len, not_corrupt);
        CHECK_EQ(not_corrupt, 0);

        /* every byte replaced by a few values: no overread, a clean status */
        for (size_t i = 0; i < len; i++) {
            char save = blk[i];
            static const unsigned char vals[] = {0x00, 0xff, 0x80, 0x7f, 0x01};
            for (int j = 0; j < 5; j++) {
                blk[i] = (char)(save ^ vals[j]);
                exercise(blk, len);
            }
            blk[i] = save;
        }
        free(blk);
    }
    /* crafted: restart count too large, zero, restart offsets out of range */
    char b[16] = {0};
    put_u32(b + 12, 1000);
    CHECK_EQ(exercise(b, 16), PL_CORRUPT);
    put_u32(b + 12, 0);
    CHECK_EQ(exercise(b, 16), PL_CORRUPT);
    put_u32(b + 12, 2);
    put_u32(b + 8, 0xfffffff0u);
    put_u32(b + 4, 0);
    CHECK_EQ(exercise(b, 16), PL_CORRUPT);
    put_u32(b + 8, 2);
    put_u32(b + 4, 1); /* first restart not at 0 */
    CHECK_EQ(exercise(b, 16), PL_CORRUPT);
    CHECK_EQ(exercise(b, 3), PL_CORRUPT);
    CHECK_EQ(exercise("", 0), PL_CORRUPT);
    {
        /* an entry whose value length runs past the entries into the restart array */
        char e[] = {0, 8, 9, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 1, 0, 0, 0};
        CHECK_EQ(exercise(e, sizeof e), PL_CORRUPT);
        e[2] = 0; /* now well formed */
        CHECK_EQ(exercise(e, sizeof e), PL_OK);
        e[1] = 7; /* key shorter than a trailer */
        CHECK_EQ(exercise(e, sizeof e), PL_CORRUPT);
        e[1] = 8;
        e[0] = 1; /* shared bytes at a restart point */
        CHECK_EQ(exercise(e, sizeof e), PL_CORRUPT);
    }
    {
        int st;
        iter *it = block_iter_new("abc", 3, &st);
        CHECK_RC(st, PL_CORRUPT);
        iter_seek_first(it);
        CHECK(!iter_valid(it));
        CHECK_RC(iter_status(it), PL_CORRUPT);
        CHECK(strstr(pl_errmsg(), "malformed block") != NULL);
        iter_destroy(it);
    }
    CHECK_EQ(steps_bad, 0);
    CHECK_EQ(status_bad, 0);
}

/* Restart points that a forward walk never reads: one inside an entry, or at an entry that shares a
 * prefix with the one before, made table_verify accept a table whose backward walk then failed (and
 * whose seeks could start mid-entry).  block_cursor_check says PL_CORRUPT.  Found by
 * tests/fuzz/fuzz_table.c. */
static void test_check_restarts(void)
{
    block_builder b;
    block_builder_init(&b, 4);
    for (int i = 0; i < 10; i++) {
        char k[32];
        int n = snprintf(k, sizeof k, "restart-key-%02d", i);
        put_u64(k + n, ikey_pack(100, KIND_PUT));
        CHECK_RC(block_builder_add(&b, k, (size_t)n + 8, "v", 1), PL_OK);
    }
    const char *data;
    size_t len;
    CHECK_RC(block_builder_finish(&b, &data, &len), PL_OK);
    char *blk = malloc(len);
    block_cursor c;
    uint32_t nr = get_u32(data + len - 4), last = (uint32_t)(len - 4 - 4);
    CHECK_EQ(nr, 3);
    memcpy(blk, data, len);
    CHECK_RC(block_cursor_init(&c, blk, len), PL_OK);
    CHECK_RC(block_cursor_check(&c), PL_OK);
    CHECK(!block_cursor_valid(&c));
    block_cursor_free(&c);
    for (int v = 0; v < 3; v++) {
        memcpy(blk, data, len);
        uint32_t r = get_u32(blk + last);
        /* inside an entry; at the entry after it (which shares a prefix); past the last restart */
        put_u32(blk + last, v == 0 ? r + 1 : v == 1 ? get_u32(blk + last - 4) + 1 : r);
        if (v == 1) { /* the second entry of the second restart region: a prefix-sharing entry */
            block_cursor_init(&c, blk, len);
            block_cursor_seek_first(&c);
            for (int i = 0; i < 5; i++)
                block_cursor_next(&c);
            put_u32(blk + last, c.cur);
            block_cursor_free(&c);
        }
        if (v == 2) /* restarts out of order */
            put_u32(blk + last - 4, r + 1);
        CHECK_RC(block_cursor_init(&c, blk, len), PL_OK);
        block_cursor_seek_first(&c);
        int n = 0;
        for (; block_cursor_valid(&c); block_cursor_next(&c))
            n++;
        CHECK_EQ(n, 10); /* the forward walk cannot tell */
        CHECK_RC(block_cursor_check(&c), PL_CORRUPT);
        block_cursor_free(&c);
    }
    free(blk);
    block_builder_free(&b);
}

int main(void)
{
    make_model(5000, 1);
    printf("model: %zu entries\n", nmodel);
    test_round_trip(16);
    test_round_trip(1);
    test_round_trip(3);
    test_round_trip(100000);
    test_random_walk(4, 11);
    test_random_walk(16, 12);
    test_random_walk(1, 13);
    test_random_walk(2000, 14); /* regions larger than the cache: walked without it */
    test_builder_misc();
    free_model();
    make_model(700, 3); /* few enough restart points for a hash index at intervals 4 and 16 */
    test_hash_index(1);
    test_hash_index(4);
    test_hash_index(16);
    test_malformed();
    test_check_restarts();
    free_model();
    return test_report();
}
