/* test_memtable.c -- the memtable (memtable.h) against a simple model: point lookups at
 * snapshot LSNs, iteration forward and backward, seeks over internal keys in ikey_cmp order, empty
 * keys, the iterator's reference, and concurrent readers (gets and iterations) while one writer
 * inserts, which must only ever see fully formed entries, in order, and every entry up to the LSN
 * the writer had published. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ikey.h"
#include "iter.h"
#include "memtable.h"
#include "memworld.h"
#include "testutil.h"

/* ---- keys, values and the model ---- */

typedef struct {
    char *k;
    size_t n;
} ukey;

static const unsigned char ALPHABET[] = {0x00, 0x01, 'a', 'b', 0x7f, 0x80, 0xff};

static void rand_key(unsigned long long *s, size_t maxlen, ukey *out)
{
    size_t n = tu_rand(s) % (maxlen + 1);
    out->k = malloc(n + 1);
    out->n = n;
    for (size_t i = 0; i < n; i++)
        out->k[i] = (char)ALPHABET[tu_rand(s) % sizeof ALPHABET];
}

static int ukey_qcmp(const void *a, const void *b)
{
    const ukey *x = a, *y = b;
    return ukey_cmp(x->k, x->n, y->k, y->n);
}

/* A sorted pool of distinct keys over a small alphabet (so prefixes, 0x00 and 0xff are common);
 * always includes the empty key. */
static ukey *make_pool(unsigned long long *s, size_t want, size_t maxlen, size_t *count)
{
    ukey *p = malloc(sizeof *p * (want + 1));
    p[0].k = malloc(1);
    p[0].n = 0;
    for (size_t i = 1; i <= want; i++)
        rand_key(s, maxlen, &p[i]);
    qsort(p, want + 1, sizeof *p, ukey_qcmp);
    size_t m = 0;
    for (size_t i = 0; i <= want; i++) {
        if (m && ukey_qcmp(&p[m - 1], &p[i]) == 0) {
            free(p[i].k);
            continue;
        }
        p[m++] = p[i];
    }
    *count = m;
    return p;
}

static void free_pool(ukey *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(p[i].k);
    free(p);
}

/* Index of the first pool key >= k; *found says whether it is equal. */
static size_t pool_lower(const ukey *p, size_t n, const char *k, size_t kn, int *found)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (ukey_cmp(p[mid].k, p[mid].n, k, kn) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < n && ukey_cmp(p[lo].k, p[lo].n, k, kn) == 0;
    return lo;
}

/* The value written at lsn: a length and bytes that depend only on it. */
static size_t value_of(uint64_t lsn, char *buf)
{
    size_t n = (size_t)(lsn * 7 % 61);
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)(lsn * 31 + i);
    return n;
}

static int value_ok(uint64_t lsn, const char *v, size_t n)
{
    char want[64];
    size_t wn = value_of(lsn, want);
    return n == wn && (n == 0 || memcmp(v, want, n) == 0);
}

/* Operation i has LSN i + 1. */
typedef struct {
    uint32_t key;
    int kind;
} opdesc;

typedef struct {
    size_t nkeys;
    size_t nops;
    opdesc *ops;
    uint32_t *first;   /* first[k]..first[k+1]: offsets into vers of key k's LSNs, ascending */
    uint64_t *vers;
} model;

static void model_build(model *m, size_t nkeys, opdesc *ops, size_t nops)
{
    m->nkeys = nkeys;
    m->nops = nops;
    m->ops = ops;
    m->first = calloc(nkeys + 1, sizeof *m->first);
    m->vers = malloc(sizeof *m->vers * (nops ? nops : 1));
    for (size_t i = 0; i < nops; i++)
        m->first[ops[i].key + 1]++;
    for (size_t k = 0; k < nkeys; k++)
        m->first[k + 1] += m->first[k];
    uint32_t *fill = malloc(sizeof *fill * (nkeys ? nkeys : 1));
    memcpy(fill, m->first, sizeof *fill * nkeys);
    for (size_t i = 0; i < nops; i++)
        m->vers[fill[ops[i].key]++] = i + 1;
    free(fill);
}

static void model_free(model *m)
{
    free(m->first);
    free(m->vers);
}

/* memtable_get's answer as one value, to compare with model_get's: LOOKUP_* on PL_OK, else the negated
 * code (which no answer equals). */
static int mt_get(memtable *m, const char *k, size_t kn, uint64_t snap, pl_buf *out)
{
    int result, rc = memtable_get(m, k, kn, snap, out, &result);
    return rc ? -rc : result;
}

/* LOOKUP_* of key k at snapshot snap, and the LSN of the version found. */
static int model_get(const model *m, size_t k, uint64_t snap, uint64_t *lsn)
{
    uint64_t best = 0;
    for (uint32_t j = m->first[k]; j < m->first[k + 1]; j++)
        if (m->vers[j] <= snap)
            best = m->vers[j];
    *lsn = best;
    if (!best)
        return LOOKUP_ABSENT;
    return m->ops[best - 1].kind == KIND_DELETE ? LOOKUP_DELETED : LOOKUP_FOUND;
}

/* Does an iterator entry match what operation (its LSN) wrote? */
static int entry_ok(const model *m, const ukey *pool, const char *k, size_t kn, const char *v, size_t vn)
{
    if (kn < IKEY_TRAILER)
        return 0;
    uint64_t lsn = ikey_lsn(k, kn);
    if (lsn < 1 || lsn > m->nops)
        return 0;
    const opdesc *o = &m->ops[lsn - 1];
    const ukey *u = &pool[o->key];
    if (ikey_kind(k, kn) != o->kind || ukey_cmp(k, kn - IKEY_TRAILER, u->k, u->n) != 0)
        return 0;
    if (o->kind == KIND_DELETE)
        return vn == 0;
    return value_ok(lsn, v, vn);
}

static int add_op(memtable *mt, const ukey *pool, const opdesc *o, uint64_t lsn)
{
    char v[64];
    size_t vn = o->kind == KIND_PUT ? value_of(lsn, v) : 0;
    return memtable_add(mt, lsn, o->kind, pool[o->key].k, pool[o->key].n, v, vn);
}

/* ---- single-threaded: get and iterate against the model ---- */

static const model *sort_model;
static int order_cmp(const void *a, const void *b)
{
    /* Internal-key order by construction: key index ascending (the pool is sorted), LSN descending. */
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    uint32_t kx = sort_model->ops[x - 1].key, ky = sort_model->ops[y - 1].key;
    if (kx != ky)
        return kx < ky ? -1 : 1;
    return x > y ? -1 : x < y;
}

/* Position in `order` of the first entry >= (pool key kidx or the key's insertion point, trailer). */
static size_t order_lower(const model *m, const uint64_t *order, size_t kidx, int exact, uint64_t trailer)
{
    size_t lo = 0, hi = m->nops;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        uint64_t lsn = order[mid];
        const opdesc *o = &m->ops[lsn - 1];
        int less; /* entry < target */
        if (o->key != kidx)
            less = o->key < kidx;
        else
            less = exact ? ikey_pack(lsn, o->kind) > trailer : 0;
        if (less)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int same_entry(const iter *it, uint64_t lsn, const model *m, const ukey *pool)
{
    if (!iter_valid(it))
        return 0;
    const char *k, *v;
    size_t kn, vn;
    iter_key(it, &k, &kn);
    iter_value(it, &v, &vn);
    return ikey_lsn(k, kn) == lsn && entry_ok(m, pool, k, kn, v, vn);
}

static void test_model(void)
{
    unsigned long long s = 2024;
    size_t npool;
    ukey *pool = make_pool(&s, 25000, 12, &npool);
    CHECK(npool > 10000);
    CHECK_EQ(pool[0].n, 0); /* the empty key sorts first */

    enum { NOPS = 100000 };
    opdesc *ops = malloc(sizeof *ops * NOPS);
    for (size_t i = 0; i < NOPS; i++) {
        /* Skew towards a few hot keys so some keys have many versions. */
        uint64_t r = tu_rand(&s);
        ops[i].key = (uint32_t)((r & 3) == 0 ? r % 50 : r % npool);
        ops[i].kind = tu_rand(&s) % 5 == 0 ? KIND_DELETE : KIND_PUT;
    }
    ops[0].key = 0; /* the empty key, put then deleted then put again */
    ops[0].kind = KIND_PUT;
    ops[1].key = 0;
    ops[1].kind = KIND_DELETE;
    ops[2].key = 0;
    ops[2].kind = KIND_PUT;
    model m;
    model_build(&m, npool, ops, NOPS);

    memtable *mt = mw_memtable();
    CHECK(mt != NULL);
    CHECK_EQ(memtable_count(mt), 0);
    /* An empty memtable: nothing found, iterators invalid everywhere. */
    pl_buf out = {0};
    CHECK_EQ(mt_get(mt, "", 0, LSN_MAX, &out), LOOKUP_ABSENT);
    iter *it = mw_iter(mt);
    iter_seek_first(it);
    CHECK(!iter_valid(it));
    iter_seek_last(it);
    CHECK(!iter_valid(it));
    char seekbuf[64];
    ikey_build(seekbuf, "a", 1, LSN_MAX, KIND_SEEK);
    iter_seek(it, seekbuf, 1 + IKEY_TRAILER);
    CHECK(!iter_valid(it));
    CHECK_RC(iter_status(it), PL_OK);
    iter_destroy(it);

    size_t usage0 = memtable_usage(mt);
    int fails = 0;
    for (size_t i = 0; i < NOPS; i++)
        if (add_op(mt, pool, &ops[i], i + 1) != PL_OK)
            fails++;
    CHECK_EQ(fails, 0);
    CHECK_EQ(memtable_count(mt), NOPS);
    CHECK(memtable_usage(mt) > usage0);

    /* ---- point lookups ---- */
    int wrong = 0;
    for (size_t k = 0; k < npool; k++) {
        uint64_t lsn;
        int want = model_get(&m, k, LSN_MAX, &lsn);
        int got = mt_get(mt, pool[k].k, pool[k].n, LSN_MAX, &out);
        if (got != want || (got == LOOKUP_FOUND && !value_ok(lsn, out.data, out.len)))
            wrong++;
    }
    CHECK_EQ(wrong, 0);
    wrong = 0;
    for (int q = 0; q < 60000; q++) {
        uint64_t snap;
        switch (q % 5) {
        case 0: snap = 0; break;
        case 1: snap = 1 + tu_rand(&s) % 3; break;
        case 2: snap = NOPS; break;
        default: snap = tu_rand(&s) % (NOPS + 2); break;
        }
        size_t k = q % 7 == 0 ? (size_t)(q % 50) : (size_t)(tu_rand(&s) % npool);
        uint64_t lsn;
        int want = model_get(&m, k, snap, &lsn);
        out.len = 12345;
        int got = mt_get(mt, pool[k].k, pool[k].n, snap, &out);
        if (got != want || (got == LOOKUP_FOUND && !value_ok(lsn, out.data, out.len)) ||
            (got != LOOKUP_FOUND && out.len != 12345))
            wrong++;
        /* a NULL output buffer is allowed */
        if (mt_get(mt, pool[k].k, pool[k].n, snap, NULL) != want)
            wrong++;
    }
    CHECK_EQ(wrong, 0);
    /* Keys that were never written, including extensions and prefixes of written ones. */
    wrong = 0;
    for (int q = 0; q < 20000; q++) {
        ukey u;
        rand_key(&s, 13, &u);
        int found;
        pool_lower(pool, npool, u.k, u.n, &found);
        if (!found && mt_get(mt, u.k, u.n, LSN_MAX, &out) != LOOKUP_ABSENT)
            wrong++;
        free(u.k);
    }
    CHECK_EQ(wrong, 0);
    /* The empty key's history. */
    CHECK_EQ(mt_get(mt, "", 0, 1, &out), LOOKUP_FOUND);
    CHECK(value_ok(1, out.data, out.len));
    CHECK_EQ(mt_get(mt, "", 0, 2, &out), LOOKUP_DELETED);
    CHECK_EQ(mt_get(mt, "", 0, 3, &out), LOOKUP_FOUND);
    CHECK(value_ok(3, out.data, out.len));
    CHECK_EQ(mt_get(mt, "", 0, 0, &out), LOOKUP_ABSENT);

    /* ---- iteration ---- */
    uint64_t *order = malloc(sizeof *order * NOPS);
    for (size_t i = 0; i < NOPS; i++)
        order[i] = i + 1;
    sort_model = &m;
    qsort(order, NOPS, sizeof *order, order_cmp);

    it = mw_iter(mt);
    /* Forward: every entry in order, each consistent with its operation, ikey_cmp strictly rising. */
    size_t pos = 0;
    int disorder = 0;
    wrong = 0;
    const char *pk = NULL;
    size_t pkn = 0;
    char prevkey[64];
    for (iter_seek_first(it); iter_valid(it); iter_next(it), pos++) {
        const char *k;
        size_t kn;
        iter_key(it, &k, &kn);
        if (pos >= NOPS || !same_entry(it, order[pos], &m, pool))
            wrong++;
        if (pk && ikey_cmp(pk, pkn, k, kn) >= 0)
            disorder++;
        memcpy(prevkey, k, kn);
        pk = prevkey;
        pkn = kn;
    }
    CHECK_EQ(pos, NOPS);
    CHECK_EQ(wrong, 0);
    CHECK_EQ(disorder, 0);
    /* Backward from the last. */
    pos = NOPS;
    wrong = 0;
    for (iter_seek_last(it); iter_valid(it); iter_prev(it)) {
        pos--;
        if (!same_entry(it, order[pos], &m, pool))
            wrong++;
        if (pos == 0)
            break;
    }
    CHECK_EQ(pos, 0);
    CHECK_EQ(wrong, 0);
    CHECK(iter_valid(it));
    iter_prev(it); /* before the first: invalid */
    CHECK(!iter_valid(it));

    /* Seeks to random (key, lsn, kind): pool keys and absent keys. Then step both ways. */
    wrong = 0;
    char tk[64];
    for (int q = 0; q < 30000; q++) {
        ukey u;
        int own = q % 3 != 0;
        size_t kidx;
        int found;
        if (own) {
            kidx = q % 11 == 0 ? (size_t)(q % 50) : (size_t)(tu_rand(&s) % npool);
            u = pool[kidx];
            found = 1;
        } else {
            rand_key(&s, 13, &u);
            kidx = pool_lower(pool, npool, u.k, u.n, &found);
        }
        uint64_t lsn = q % 13 == 0 ? LSN_MAX : tu_rand(&s) % (NOPS + 2);
        int kind = (q & 1) ? KIND_SEEK : KIND_DELETE;
        ikey_build(tk, u.k, u.n, lsn, kind);
        size_t want = order_lower(&m, order, kidx, found, ikey_pack(lsn, kind));
        iter_seek(it, tk, u.n + IKEY_TRAILER);
        if (want == NOPS) {
            if (iter_valid(it))
                wrong++;
        } else if (!same_entry(it, order[want], &m, pool)) {
            wrong++;
        } else {
            /* the entry found is >= the target, its predecessor < it */
            const char *k;
            size_t kn;
            iter_key(it, &k, &kn);
            if (ikey_cmp(k, kn, tk, u.n + IKEY_TRAILER) < 0)
                wrong++;
            if (q & 2) {
                iter_next(it);
                if (want + 1 == NOPS ? iter_valid(it) : !same_entry(it, order[want + 1], &m, pool))
                    wrong++;
            } else {
                iter_prev(it);
                if (want == 0 ? iter_valid(it) : !same_entry(it, order[want - 1], &m, pool))
                    wrong++;
                else if (want) {
                    iter_key(it, &k, &kn);
                    if (ikey_cmp(k, kn, tk, u.n + IKEY_TRAILER) >= 0)
                        wrong++;
                }
            }
        }
        if (!own)
            free(u.k);
    }
    CHECK_EQ(wrong, 0);
    /* Seeking to the very first internal key and past the very last. */
    ikey_build(tk, "", 0, LSN_MAX, KIND_SEEK);
    iter_seek(it, tk, IKEY_TRAILER);
    CHECK(same_entry(it, order[0], &m, pool));
    const ukey *lastk = &pool[npool - 1];
    ikey_build(tk, lastk->k, lastk->n, 0, KIND_DELETE);
    ikey_build(tk + 32, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 14, 0, KIND_DELETE);
    iter_seek(it, tk + 32, 14 + IKEY_TRAILER);
    CHECK(!iter_valid(it));
    iter_seek_last(it);
    CHECK(same_entry(it, order[NOPS - 1], &m, pool));
    CHECK_RC(iter_status(it), PL_OK);

    /* The iterator keeps the memtable alive after its owner lets go. */
    memtable_unref(mt);
    iter_seek_first(it);
    CHECK(same_entry(it, order[0], &m, pool));
    iter_destroy(it);

    free(order);
    pl_buf_free(&out);
    model_free(&m);
    free(ops);
    free_pool(pool, npool);
}

/* memtable_add_many (slots fetched ahead, 32 keys at a time) builds the same memtable as memtable_add
 * one op at a time: keys repeated inside one group and across groups, deletes, empty keys, a table that
 * grows in the middle of a group. */
static void test_add_many(void)
{
    memtable *one = mw_memtable(), *many = mw_memtable();
    enum { N = 5000 };
    static char keys[N][12];
    static memtable_op ops[N];
    uint32_t x = 12345;
    for (int i = 0; i < N; i++) {
        x = x * 1103515245u + 12345u;
        int k = (int)((x >> 8) % 1500); /* many repeats, some inside one group of 32 */
        int n = k == 0 ? 0 : snprintf(keys[i], sizeof keys[i], "k%d", k);
        int kind = (x >> 4) % 5 == 0 ? KIND_DELETE : KIND_PUT;
        ops[i] = (memtable_op){(uint64_t)i + 1, kind, keys[i], keys[i], (size_t)n, kind == KIND_PUT ? (size_t)n : 0};
        CHECK_RC(memtable_add(one, ops[i].lsn, kind, ops[i].key, ops[i].klen, ops[i].val, ops[i].vlen), PL_OK);
    }
    for (size_t i = 0; i < N;) { /* uneven slices: groups split anywhere */
        size_t n = 1 + (i * 7) % 97;
        if (n > N - i)
            n = N - i;
        CHECK_RC(memtable_add_many(many, ops + i, n), PL_OK);
        i += n;
    }
    iter *a = mw_iter(one), *b = mw_iter(many);
    size_t count = 0;
    for (iter_seek_first(a), iter_seek_first(b); iter_valid(a) && iter_valid(b); iter_next(a), iter_next(b)) {
        const char *ka, *kb, *va, *vb;
        size_t kna, knb, vna, vnb;
        iter_key(a, &ka, &kna);
        iter_key(b, &kb, &knb);
        iter_value(a, &va, &vna);
        iter_value(b, &vb, &vnb);
        CHECK(kna == knb && memcmp(ka, kb, kna) == 0 && vna == vnb && memcmp(va, vb, vna) == 0);
        count++;
    }
    CHECK(!iter_valid(a) && !iter_valid(b));
    CHECK_EQ(count, N);
    pl_buf oa = {0}, ob = {0};
    for (int k = 0; k < 1500; k++) {
        char key[12];
        int n = k == 0 ? 0 : snprintf(key, sizeof key, "k%d", k);
        int ra = mt_get(one, key, (size_t)n, LSN_MAX, &oa), rb = mt_get(many, key, (size_t)n, LSN_MAX, &ob);
        CHECK(ra == rb && (ra != LOOKUP_FOUND || (oa.len == ob.len && memcmp(oa.data, ob.data, oa.len) == 0)));
    }
    pl_buf_free(&oa);
    pl_buf_free(&ob);
    iter_destroy(a);
    iter_destroy(b);
    memtable_unref(one);
    memtable_unref(many);
}

/* Exact order of a handful of hand-picked internal keys, including empty keys and prefixes. */
static void test_small_order(void)
{
    memtable *mt = mw_memtable();
    struct {
        const char *k;
        size_t n;
        uint64_t lsn;
        int kind;
    } in[] = {
        {"b", 1, 5, KIND_PUT},   {"", 0, 2, KIND_PUT},     {"a", 1, 9, KIND_DELETE}, {"\0", 1, 4, KIND_PUT},
        {"", 0, 7, KIND_DELETE}, {"a\0", 2, 1, KIND_PUT},   {"a", 1, 3, KIND_PUT},    {"\xff", 1, 6, KIND_PUT},
        {"ab", 2, 8, KIND_PUT},  {"a", 1, 10, KIND_PUT},
    };
    /* Expected order: "" (7, 2), "\0" 4, "a" (10, 9, 3), "a\0" 1, "ab" 8, "b" 5, "\xff" 6. */
    uint64_t want[] = {7, 2, 4, 10, 9, 3, 1, 8, 5, 6};
    /* Added in LSN order, as the database does (memtable_add REQUIRES it). */
    for (uint64_t lsn = 1; lsn <= 10; lsn++)
        for (size_t i = 0; i < sizeof in / sizeof in[0]; i++)
            if (in[i].lsn == lsn)
                CHECK_RC(memtable_add(mt, in[i].lsn, in[i].kind, in[i].k, in[i].n, "val", in[i].kind ? 3 : 0),
                         PL_OK);
    iter *it = mw_iter(mt);
    size_t i = 0;
    for (iter_seek_first(it); iter_valid(it); iter_next(it), i++) {
        const char *k;
        size_t kn;
        iter_key(it, &k, &kn);
        CHECK(i < 10 && ikey_lsn(k, kn) == want[i]);
    }
    CHECK_EQ(i, 10);
    pl_buf out = {0};
    CHECK_EQ(mt_get(mt, "", 0, 6, &out), LOOKUP_FOUND);
    CHECK(out.len == 3 && memcmp(out.data, "val", 3) == 0);
    CHECK_EQ(mt_get(mt, "", 0, 7, &out), LOOKUP_DELETED);
    CHECK_EQ(mt_get(mt, "", 0, 1, &out), LOOKUP_ABSENT);
    CHECK_EQ(mt_get(mt, "\0", 1, LSN_MAX, &out), LOOKUP_FOUND);
    CHECK_EQ(mt_get(mt, "\0\0", 2, LSN_MAX, &out), LOOKUP_ABSENT);
    CHECK_EQ(mt_get(mt, "a", 1, 9, &out), LOOKUP_DELETED);
    CHECK_EQ(mt_get(mt, "a", 1, 8, &out), LOOKUP_FOUND);
    CHECK_EQ(mt_get(mt, "a", 1, 2, &out), LOOKUP_ABSENT);
    /* seek to a user key lands on its newest version <= the seek LSN */
    char tk[16];
    ikey_build(tk, "a", 1, 9, KIND_SEEK);
    iter_seek(it, tk, 9);
    const char *k;
    size_t kn;
    CHECK(iter_valid(it));
    iter_key(it, &k, &kn);
    CHECK_EQ(ikey_lsn(k, kn), 9);
    CHECK_EQ(ikey_kind(k, kn), KIND_DELETE);
    iter_prev(it);
    iter_key(it, &k, &kn);
    CHECK_EQ(ikey_lsn(k, kn), 10);
    /* A big key and value. */
    char *bigk = malloc(PL_MAX_KEY), *bigv = malloc(1 << 20);
    memset(bigk, 0xff, PL_MAX_KEY); /* sorts after "\xff": the last key */
    memset(bigv, 'y', 1 << 20);
    CHECK_RC(memtable_add(mt, 11, KIND_PUT, bigk, PL_MAX_KEY, bigv, 1 << 20), PL_OK);
    CHECK_EQ(mt_get(mt, bigk, PL_MAX_KEY, LSN_MAX, &out), LOOKUP_FOUND);
    CHECK(out.len == (1u << 20) && memcmp(out.data, bigv, 1 << 20) == 0);
    iter_destroy(it); /* a new iterator sees the entry added after the old one was made */
    it = mw_iter(mt);
    iter_seek_last(it);
    iter_key(it, &k, &kn);
    CHECK_EQ(kn, PL_MAX_KEY + IKEY_TRAILER);
    free(bigk);
    free(bigv);
    iter_destroy(it);
    pl_buf_free(&out);
    memtable_unref(mt);
}

/* ---- concurrent readers ---- */

typedef struct {
    memtable *mt;
    const model *m;
    const ukey *pool;
    atomic_uint_fast64_t published; /* every LSN <= this is in the memtable */
    atomic_int done;
} shared;

typedef struct {
    shared *sh;
    unsigned long long seed;
    long gets, walks, steps, errors;
} reader;

static void *reader_main(void *arg)
{
    reader *r = arg;
    shared *sh = r->sh;
    const model *m = sh->m;
    pl_buf out = {0};
    char prev[64], tk[64];
    for (int round = 0;; round++) {
        int last = atomic_load(&sh->done); /* one more round after the writer finished */
        uint64_t V = atomic_load_explicit(&sh->published, memory_order_acquire);
        /* An iterator reads the entries published before it was made (a point-in-time view). */
        iter *it;
        if (memtable_iter(sh->mt, &it) != PL_OK) {
            r->errors++;
            break;
        }
        /* Point lookups at the published LSN must give exactly the model's answer. */
        for (int q = 0; q < 64; q++) {
            size_t k = tu_rand(&r->seed) % m->nkeys;
            uint64_t lsn;
            int want = model_get(m, k, V, &lsn);
            int got = mt_get(sh->mt, sh->pool[k].k, sh->pool[k].n, V, &out);
            if (got != want || (got == LOOKUP_FOUND && !value_ok(lsn, out.data, out.len)))
                r->errors++;
            r->gets++;
        }
        /* A walk: the whole list every 16th round (it must hold every LSN <= V), else a stretch
         * forward or backward from a random seek. */
        int mode = round % 16 == 0 ? 0 : 1 + (int)(tu_rand(&r->seed) % 2);
        size_t seen_le_v = 0, n = 0;
        const ukey *u = &sh->pool[tu_rand(&r->seed) % m->nkeys];
        ikey_build(tk, u->k, u->n, tu_rand(&r->seed) % (m->nops + 1), KIND_SEEK);
        if (mode == 0)
            iter_seek_first(it);
        else if (mode == 1)
            iter_seek(it, tk, u->n + IKEY_TRAILER);
        else
            iter_seek_last(it);
        size_t pn = 0;
        int have_prev = 0;
        while (iter_valid(it)) {
            const char *k, *v;
            size_t kn, vn;
            iter_key(it, &k, &kn);
            iter_value(it, &v, &vn);
            if (!entry_ok(m, sh->pool, k, kn, v, vn)) {
                r->errors++;
                break;
            }
            if (mode == 1 && n == 0 && ikey_cmp(k, kn, tk, u->n + IKEY_TRAILER) < 0)
                r->errors++;
            if (have_prev) {
                int c = ikey_cmp(prev, pn, k, kn);
                if (mode == 2 ? c <= 0 : c >= 0)
                    r->errors++;
            }
            memcpy(prev, k, kn);
            pn = kn;
            have_prev = 1;
            if (ikey_lsn(k, kn) <= V)
                seen_le_v++;
            n++;
            if (mode != 0 && n >= 300)
                break;
            if (mode == 2)
                iter_prev(it);
            else
                iter_next(it);
        }
        if (mode == 0) {
            if (seen_le_v != V)
                r->errors++;
            r->walks++;
        }
        r->steps += (long)n;
        iter_destroy(it);
        if (last)
            break;
    }
    pl_buf_free(&out);
    return NULL;
}

static void test_concurrent(void)
{
    unsigned long long s = 77;
    size_t npool;
    ukey *pool = make_pool(&s, 4000, 10, &npool);
    enum { NOPS = 120000, READERS = 3 };
    opdesc *ops = malloc(sizeof *ops * NOPS);
    for (size_t i = 0; i < NOPS; i++) {
        ops[i].key = (uint32_t)(tu_rand(&s) % npool);
        ops[i].kind = tu_rand(&s) % 6 == 0 ? KIND_DELETE : KIND_PUT;
    }
    model m;
    model_build(&m, npool, ops, NOPS);

    shared sh;
    sh.mt = mw_memtable();
    sh.m = &m;
    sh.pool = pool;
    atomic_init(&sh.published, 0);
    atomic_init(&sh.done, 0);
    reader rd[READERS];
    pthread_t th[READERS];
    for (int i = 0; i < READERS; i++) {
        rd[i] = (reader){&sh, 1000 + (unsigned long long)i, 0, 0, 0, 0};
        CHECK_EQ(pthread_create(&th[i], NULL, reader_main, &rd[i]), 0);
    }
    int fails = 0;
    for (size_t i = 0; i < NOPS; i++) {
        if (add_op(sh.mt, pool, &ops[i], i + 1) != PL_OK)
            fails++;
        atomic_store_explicit(&sh.published, i + 1, memory_order_release);
    }
    atomic_store(&sh.done, 1);
    long errors = 0, gets = 0, walks = 0, steps = 0;
    for (int i = 0; i < READERS; i++) {
        pthread_join(th[i], NULL);
        errors += rd[i].errors;
        gets += rd[i].gets;
        walks += rd[i].walks;
        steps += rd[i].steps;
    }
    CHECK_EQ(fails, 0);
    CHECK_EQ(errors, 0);
    CHECK(walks >= READERS); /* each did at least its final full walk */
    CHECK_EQ(memtable_count(sh.mt), NOPS);
    fprintf(stderr, "concurrent: %ld gets, %ld full walks, %ld iterator steps by %d readers\n", gets,
            walks, steps, READERS);
    memtable_unref(sh.mt);
    model_free(&m);
    free(ops);
    free_pool(pool, npool);
}

/* Enough keys that the 16-bit tags of the hash index collide many times, and that the table grows
 * (from the log, in insertion order) with several versions of keys in it: every version stays
 * reachable at its snapshot, and absent keys stay absent. */
static void test_many_keys_and_versions(void)
{
    memtable *m = mw_memtable();
    enum { N = 300000 };
    char k[32], v[32];
    uint64_t lsn = 0;
    for (int round = 0; round < 3; round++)
        for (unsigned i = round; i < N; i += 1 + (unsigned)round) { /* round r: every (r+1)-th key */
            size_t kn = (size_t)snprintf(k, sizeof k, "key-%u", i);
            size_t vn = (size_t)snprintf(v, sizeof v, "r%d-%u", round, i);
            CHECK_RC(memtable_add(m, ++lsn, round == 2 && i % 2 ? KIND_DELETE : KIND_PUT, k, kn, v, vn), PL_OK);
        }
    uint64_t after[3] = {0}; /* the lsn after each round */
    lsn = 0;
    for (int round = 0; round < 3; round++) {
        lsn += (N - (unsigned)round + (unsigned)round) / (1 + (unsigned)round);
        after[round] = lsn;
    }
    pl_buf out = {0};
    size_t wrong = 0;
    for (unsigned i = 0; i < N; i += 7) {
        size_t kn = (size_t)snprintf(k, sizeof k, "key-%u", i);
        /* round 0 wrote every key; round 1 keys 1, 3, 5, ...; round 2 keys 2, 5, 8, ... (deletes when odd) */
        int r = mt_get(m, k, kn, after[0], &out);
        snprintf(v, sizeof v, "r0-%u", i);
        wrong += r != LOOKUP_FOUND || out.len != strlen(v) || memcmp(out.data, v, out.len) != 0;
        int last = i >= 2 && (i - 2) % 3 == 0 ? 2 : i % 2 == 1 ? 1 : 0;
        r = mt_get(m, k, kn, UINT64_MAX >> 8, &out);
        if (last == 2 && i % 2)
            wrong += r != LOOKUP_DELETED;
        else {
            snprintf(v, sizeof v, "r%d-%u", last, i);
            wrong += r != LOOKUP_FOUND || out.len != strlen(v) || memcmp(out.data, v, out.len) != 0;
        }
        kn = (size_t)snprintf(k, sizeof k, "absent-%u", i);
        wrong += mt_get(m, k, kn, UINT64_MAX >> 8, &out) != LOOKUP_ABSENT;
    }
    CHECK_EQ(wrong, 0);
    pl_buf_free(&out);
    memtable_unref(m);
}

/* Iteration order (the sort a flush relies on) for keys that defeat a sort by 8-byte prefix: a long
 * prefix shared by every key, keys alike for 8 bytes and more past it, keys that are prefixes of
 * others, 0x00 and 0xff bytes, and many versions of some keys, against an order computed here. */
typedef struct {
    char k[40];
    size_t n;
    uint64_t lsn;
} sortcase;

static int sortcase_cmp(const void *a, const void *b)
{
    const sortcase *x = a, *y = b;
    size_t m = x->n < y->n ? x->n : y->n;
    int r = memcmp(x->k, y->k, m);
    if (r)
        return r;
    if (x->n != y->n)
        return x->n < y->n ? -1 : 1;
    return x->lsn > y->lsn ? -1 : x->lsn < y->lsn; /* newest first */
}

static void test_sort_orders(void)
{
    unsigned long long s = 77;
    for (int shape = 0; shape < 4; shape++) {
        enum { N = 20000 };
        sortcase *c = malloc(sizeof *c * N);
        memtable *m = mw_memtable();
        const char *common = shape == 0 ? "" : shape == 1 ? "shared-prefix-of-all:" : shape == 2 ? "x" : "ab";
        size_t cn = strlen(common);
        for (size_t i = 0; i < N; i++) {
            sortcase *e = &c[i];
            if (i > 0 && tu_rand(&s) % 4 == 0) { /* another version of an earlier key */
                *e = c[tu_rand(&s) % i];
            } else {
                memcpy(e->k, common, cn);
                size_t tail = (size_t)(tu_rand(&s) % 14);
                /* bytes from a small alphabet with 0x00 and 0xff, so that keys agree for long stretches */
                static const char alpha[] = {0, 1, 'a', (char)0xfe, (char)0xff};
                for (size_t j = 0; j < tail; j++)
                    e->k[cn + j] = tu_rand(&s) % 3 ? alpha[j % 5] : alpha[tu_rand(&s) % 5];
                e->n = cn + tail;
            }
            e->lsn = i + 1;
            CHECK_RC(memtable_add(m, e->lsn, KIND_PUT, e->k, e->n, (const char *)&e->lsn, sizeof e->lsn), PL_OK);
        }
        qsort(c, N, sizeof *c, sortcase_cmp);
        iter *it = mw_iter(m);
        size_t i = 0, wrong = 0;
        for (iter_seek_first(it); iter_valid(it) && i < N; iter_next(it), i++) {
            const char *k, *v;
            size_t kn, vn;
            iter_key(it, &k, &kn);
            iter_value(it, &v, &vn);
            uint64_t lsn;
            memcpy(&lsn, v, sizeof lsn);
            wrong += kn - IKEY_TRAILER != c[i].n || memcmp(k, c[i].k, c[i].n) != 0 ||
                     ikey_lsn(k, kn) != c[i].lsn || lsn != c[i].lsn;
        }
        CHECK_EQ(i, (size_t)N);
        CHECK(!iter_valid(it));
        CHECK_EQ(wrong, 0);
        iter_destroy(it);
        memtable_unref(m);
        free(c);
    }
}

int main(void)
{
    test_sort_orders();
    test_many_keys_and_versions();
    test_small_order();
    test_add_many();
    test_model();
    test_concurrent();
    return test_report();
}
