/*
 * memtable.c -- the in-memory table: a hash index for point lookups, an append-only log of entries, and
 * sorted runs built on demand for ordered reads; see memtable.h and docs/decisions.md ("memtable").
 *
 * Entries live in an arena: user key, 8-byte trailer (so key + trailer is the internal key), value,
 * and a link to the previous (older) entry of the same user key.
 *
 * Point lookups: an open-addressing hash table maps a user key to its newest entry; older versions
 * hang off it.  A slot holds the entry's address and, in the address's unused top 16 bits (64-bit
 * platforms), a tag of the key's hash, so a probe passes other keys' slots without reading their
 * entries (each such read is a cache miss in a large memtable).  The writer publishes a new entry with a release store into its slot; readers probe
 * with acquire loads and never wait.  When the table passes half full the writer builds a larger one
 * and publishes it; old tables stay allocated until the memtable dies, so a reader that loaded one
 * still reads valid memory (and, having loaded it before the entries it may miss were published, it
 * cannot need them: an entry is visible only once the database publishes its LSN, after the insert).
 *
 * Ordered reads: the log of entries (in insertion order) is covered by sorted runs, each an array of
 * entry pointers in internal-key order.  An iterator (or a flush) first sorts the entries not yet in a
 * run into a new run, merging runs so that each is at least twice the size of the next (a binary
 * counter: every entry is merged O(log n) times), then reads a merge of the runs.  Runs are immutable
 * and reference counted; building them is serialised by sort_mu and never blocks the writer.
 */
#include "memtable.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "bloom.h"
#include "buf.h"
#include "env.h"
#include "ikey.h"
#include "merge.h"
#include "status.h"

#define LOG_CHUNK 4096
#define MAX_RUNS 48
#define RUN_PREFETCH 8 /* entries read ahead of a walk over a run (ri_next, sort_entries) */

typedef struct mentry mentry;
struct mentry {
    mentry *older;
    uint32_t klen; /* user key */
    uint32_t vlen;
    char data[];   /* key, trailer (8), value */
};

static inline const char *ekey(const mentry *e) { return e->data; }
static inline uint64_t etrailer(const mentry *e) { return get_u64(e->data + e->klen); }
static inline const char *evalue(const mentry *e) { return e->data + e->klen + IKEY_TRAILER; }

/* A slot: 0 (free), or an entry's address with the key's tag in the top 16 bits (tag 0: compare the
 * key, for an address that uses those bits or a platform without them). */
typedef _Atomic(uintptr_t) slot_t;
#if UINTPTR_MAX > 0xffffffffu
#define TAG_SHIFT 48
static inline uintptr_t slot_make(const mentry *e, uint32_t h)
{
    uintptr_t p = (uintptr_t)e;
    return p >> TAG_SHIFT ? p : p | ((uintptr_t)((h >> 16) | 1) << TAG_SHIFT);
}
static inline mentry *slot_entry(uintptr_t v) { return (mentry *)(v & (((uintptr_t)1 << TAG_SHIFT) - 1)); }
/* Whether the slot may hold the key whose hash is h. */
static inline int slot_may_match(uintptr_t v, uint32_t h)
{
    uintptr_t t = v >> TAG_SHIFT;
    return t == 0 || t == ((h >> 16) | 1);
}
#else
static inline uintptr_t slot_make(const mentry *e, uint32_t h) { return (uintptr_t)e; }
static inline mentry *slot_entry(uintptr_t v) { return (mentry *)v; }
static inline int slot_may_match(uintptr_t v, uint32_t h) { return 1; }
#endif

typedef struct htable htable;
struct htable {
    size_t mask;
    htable *prev; /* the table this one replaced (freed with the memtable) */
    slot_t slots[];
};

typedef struct run {
    atomic_int refs;
    size_t n;
    mentry *e[];
} run;

typedef struct runset {
    atomic_int refs;
    int n;
    run *runs[MAX_RUNS];
} runset;

struct memtable {
    arena arena;
    atomic_int refs;
    _Atomic(htable *) table;
    size_t keys;            /* distinct user keys (writer only) */
    /* the log: chunks of entry pointers; chunk pointers never move */
    mentry ***chunks;
    size_t nchunks_cap;
    _Atomic size_t count;   /* entries published */
    atomic_size_t index_bytes;
    atomic_size_t retired_bytes; /* hash tables replaced by larger ones, kept for readers (writer adds) */
    /* sorted runs */
    pthread_mutex_t sort_mu;
    size_t sorted;          /* log entries covered by runs (under sort_mu) */
    runset *runs;           /* current run set (under sort_mu), referenced */
};

/* ---- runs ---- */

/* A run's bytes: a big memtable's runs take megabytes, merged into larger ones as entries come, so
 * they come from big_alloc (buf.h). */
static size_t run_bytes(size_t n) { return sizeof(run) + sizeof(mentry *) * (n ? n : 1); }

static run *run_new(size_t n)
{
    run *r = big_alloc(run_bytes(n));
    if (!r)
        return NULL;
    atomic_init(&r->refs, 1);
    r->n = n;
    return r;
}

static void run_free(run *r)
{
    if (r)
        big_free(r, run_bytes(r->n));
}

static void run_unref(run *r)
{
    if (r && atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) == 1)
        run_free(r);
}

static void runset_unref(runset *s)
{
    if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (int i = 0; i < s->n; i++)
        run_unref(s->runs[i]);
    free(s);
}

static inline int entry_cmp(const mentry *a, const mentry *b)
{
    int r = ukey_cmp(ekey(a), a->klen, ekey(b), b->klen);
    if (r)
        return r;
    uint64_t ta = etrailer(a), tb = etrailer(b);
    return ta > tb ? -1 : ta < tb;
}

/* Sorting a run: each entry with 8 bytes of its key (from past the prefix every key of the run
 * shares, big-endian, zero-padded) beside its pointer, so that most comparisons read no entry (each
 * such read is a cache miss); equal prefixes fall back to the whole internal key.  Zero padding keeps
 * the order: a key's padded prefix never sorts after a greater key's. */
typedef struct {
    uint64_t prefix;
    mentry *e;
} keyed;

static int keyed_cmp(const void *a, const void *b)
{
    const keyed *x = a, *y = b;
    if (x->prefix != y->prefix)
        return x->prefix < y->prefix ? -1 : 1;
    return entry_cmp(x->e, y->e);
}

static uint64_t key_prefix(const mentry *e, size_t skip)
{
    unsigned char b[8] = {0};
    if (e->klen > skip)
        memcpy(b, ekey(e) + skip, e->klen - skip < 8 ? e->klen - skip : 8);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | b[i];
    return v;
}

static int entry_qcmp(const void *a, const void *b)
{
    return entry_cmp(*(mentry *const *)a, *(mentry *const *)b);
}

/* Sort a[0..n) by prefix: a least-significant-digit radix sort, a byte per pass, through tmp (n
 * places), skipping the bytes every prefix has alike (stable: equal prefixes keep their order). */
static void radix_sort(keyed *a, keyed *tmp, size_t n)
{
    static const int bytes = 8;
    size_t (*count)[256] = calloc((size_t)bytes, sizeof *count);
    if (!count) {
        qsort(a, n, sizeof(keyed), keyed_cmp);
        return;
    }
    for (size_t i = 0; i < n; i++)
        for (int b = 0; b < bytes; b++)
            count[b][(a[i].prefix >> (8 * b)) & 0xff]++;
    keyed *src = a, *dst = tmp;
    for (int b = 0; b < bytes; b++) {
        if (count[b][(a[0].prefix >> (8 * b)) & 0xff] == n)
            continue; /* one value of this byte: nothing to order */
        size_t at = 0;
        for (int v = 0; v < 256; v++) {
            size_t c = count[b][v];
            count[b][v] = at;
            at += c;
        }
        for (size_t i = 0; i < n; i++)
            dst[count[b][(src[i].prefix >> (8 * b)) & 0xff]++] = src[i];
        keyed *t = src;
        src = dst;
        dst = t;
    }
    if (src != a)
        memcpy(a, src, sizeof(keyed) * n);
    free(count);
}

/* Sort the n entries at e into internal-key order. */
static void sort_entries(mentry **e, size_t n)
{
    size_t bytes = sizeof(keyed) * n * 2; /* a flush's sort of a 64 MiB memtable takes about 14 MB */
    keyed *k = n < 2 ? NULL : big_alloc(bytes);
    if (!k) { /* out of memory for the keyed copy: sort the pointers themselves */
        qsort(e, n, sizeof(mentry *), entry_qcmp);
        return;
    }
    /* the prefix all keys share: the first key against every other */
    size_t skip = e[0]->klen;
    for (size_t i = 1; i < n && skip; i++) {
        size_t m = e[i]->klen < skip ? e[i]->klen : skip, j = 0;
        const char *a = ekey(e[0]), *b = ekey(e[i]);
        while (j < m && a[j] == b[j])
            j++;
        skip = j;
    }
    for (size_t i = 0; i < n; i++) {
        if (i + RUN_PREFETCH < n)
            __builtin_prefetch(e[i + RUN_PREFETCH]);
        k[i].prefix = key_prefix(e[i], skip);
        k[i].e = e[i];
    }
    radix_sort(k, k + n, n);
    /* equal prefixes (versions of one key, keys alike past their first 8 bytes): by the whole key */
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && k[j].prefix == k[i].prefix)
            j++;
        if (j - i > 1)
            qsort(k + i, j - i, sizeof(keyed), keyed_cmp);
        i = j;
    }
    for (size_t i = 0; i < n; i++)
        e[i] = k[i].e;
    big_free(k, bytes);
}

static run *run_merge(const run *a, const run *b)
{
    run *r = run_new(a->n + b->n);
    if (!r)
        return NULL;
    size_t i = 0, j = 0, k = 0;
    while (i < a->n && j < b->n)
        r->e[k++] = entry_cmp(a->e[i], b->e[j]) <= 0 ? a->e[i++] : b->e[j++];
    while (i < a->n)
        r->e[k++] = a->e[i++];
    while (j < b->n)
        r->e[k++] = b->e[j++];
    return r;
}

/* Bring the runs up to date with the log and return them referenced (NULL: out of memory). */
static runset *current_runs(memtable *m)
{
    pthread_mutex_lock(&m->sort_mu);
    size_t n = atomic_load_explicit(&m->count, memory_order_acquire);
    runset *cur = m->runs;
    if (m->sorted < n) {
        runset *s = calloc(1, sizeof *s);
        run *r = run_new(n - m->sorted);
        if (!s || !r) {
            free(s);
            run_free(r);
            pthread_mutex_unlock(&m->sort_mu);
            return NULL;
        }
        atomic_init(&s->refs, 1);
        for (size_t i = m->sorted; i < n; i++)
            r->e[i - m->sorted] = m->chunks[i / LOG_CHUNK][i % LOG_CHUNK];
        /* Keys written in order (a sequential load) come out sorted already: n comparisons find that,
         * where the merge sort would make about n log n / 2. */
        size_t k = 1;
        while (k < r->n && entry_cmp(r->e[k - 1], r->e[k]) < 0)
            k++;
        if (k < r->n)
            sort_entries(r->e, r->n);
        env_test_hook("memtable_sorted");
        for (int i = 0; cur && i < cur->n; i++) {
            s->runs[s->n++] = cur->runs[i];
            atomic_fetch_add(&cur->runs[i]->refs, 1);
        }
        s->runs[s->n++] = r;
        /* Merge while the newest run is at least half the size of the one before it. */
        while (s->n >= 2 && (s->runs[s->n - 1]->n * 2 >= s->runs[s->n - 2]->n || s->n == MAX_RUNS)) {
            run *merged = run_merge(s->runs[s->n - 2], s->runs[s->n - 1]);
            if (!merged)
                break;
            run_unref(s->runs[s->n - 2]);
            run_unref(s->runs[s->n - 1]);
            s->n--;
            s->runs[s->n - 1] = merged;
        }
        if (s->n == MAX_RUNS) { /* out of memory while merging: keep the old state */
            runset_unref(s);
            s = NULL;
        } else {
            size_t bytes = 0;
            for (int i = 0; i < s->n; i++)
                bytes += s->runs[i]->n * sizeof(mentry *);
            atomic_store(&m->index_bytes, bytes);
            runset_unref(cur);
            m->runs = cur = s;
            m->sorted = n;
        }
    }
    if (cur)
        atomic_fetch_add(&cur->refs, 1);
    pthread_mutex_unlock(&m->sort_mu);
    return cur;
}

/* ---- the memtable ---- */

static htable *htable_new(size_t nslots)
{
    htable *t = calloc(1, sizeof(htable) + sizeof(slot_t) * nslots);
    if (t)
        t->mask = nslots - 1;
    return t;
}

int memtable_new(memtable **out) { return memtable_new_in(NULL, out); }

int memtable_new_in(arena_pool *pool, memtable **out)
{
    *out = NULL;
    memtable *m = calloc(1, sizeof *m);
    if (!m)
        return PL_FAIL(PL_NOMEM, "out of memory for a memtable");
    arena_init(&m->arena, pool);
    atomic_init(&m->refs, 1);
    htable *t = htable_new(64); /* doubles as keys arrive: a tiny memtable stays tiny */
    m->nchunks_cap = 64;
    m->chunks = calloc(m->nchunks_cap, sizeof(mentry **));
    if (!t || !m->chunks) {
        free(t);
        free(m->chunks);
        free(m);
        return PL_FAIL(PL_NOMEM, "out of memory for a memtable");
    }
    atomic_init(&m->table, t);
    atomic_init(&m->count, 0);
    atomic_init(&m->index_bytes, 0);
    atomic_init(&m->retired_bytes, 0);
    pthread_mutex_init(&m->sort_mu, NULL);
    *out = m;
    return PL_OK;
}

void memtable_ref(memtable *m) { atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed); }

void memtable_unref(memtable *m)
{
    if (!m || atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) != 1)
        return;
    htable *t = atomic_load(&m->table);
    while (t) {
        htable *p = t->prev;
        free(t);
        t = p;
    }
    for (size_t i = 0; i < m->nchunks_cap; i++)
        free(m->chunks[i]);
    free(m->chunks);
    runset_unref(m->runs);
    pthread_mutex_destroy(&m->sort_mu);
    arena_destroy(&m->arena);
    free(m);
}

size_t memtable_usage(memtable *m)
{
    /* acquire: pairs with grow_table's release store, so t->mask is the new table's */
    htable *t = atomic_load_explicit(&m->table, memory_order_acquire);
    return arena_usage(&m->arena) + atomic_load_explicit(&m->count, memory_order_relaxed) * sizeof(mentry *) +
           (t->mask + 1) * sizeof(mentry *) + atomic_load_explicit(&m->index_bytes, memory_order_relaxed) +
           atomic_load_explicit(&m->retired_bytes, memory_order_relaxed);
}

uint64_t memtable_count(memtable *m) { return atomic_load_explicit(&m->count, memory_order_relaxed); }

/* The slot holding the newest entry of key (hash h = bloom_hash(key)), or the free slot where it
 * would go. */
static slot_t *probe(htable *t, const char *key, size_t klen, uint32_t h, mentry **found)
{
    size_t i = (size_t)h & t->mask;
    for (;;) {
        uintptr_t v = atomic_load_explicit(&t->slots[i], memory_order_acquire);
        if (!v) {
            *found = NULL;
            return &t->slots[i];
        }
        if (slot_may_match(v, h)) {
            mentry *e = slot_entry(v);
            if (e->klen == klen && (klen == 0 || memcmp(ekey(e), key, klen) == 0)) {
                *found = e;
                return &t->slots[i];
            }
        }
        i = (i + 1) & t->mask;
    }
}

/* Replace the hash table with one of nslots slots (a power of two, above twice the keys).  REQUIRES:
 * the writer.  The entries are taken from the log, in the order they
 * were added (the order of their memory in the arena, read sequentially, where walking the old table
 * would read each entry at a random place), each newer version taking its key's slot. */
static int grow_table_to(memtable *m, size_t nslots)
{
    htable *old = atomic_load_explicit(&m->table, memory_order_relaxed);
    htable *t = htable_new(nslots);
    if (!t)
        return PL_FAIL(PL_NOMEM, "out of memory in the memtable");
    size_t n = atomic_load_explicit(&m->count, memory_order_relaxed);
    for (size_t i = 0; i < n; i++) {
        mentry *e = m->chunks[i / LOG_CHUNK][i % LOG_CHUNK], *f;
        uint32_t h = bloom_hash(ekey(e), e->klen);
        atomic_store_explicit(probe(t, ekey(e), e->klen, h, &f), slot_make(e, h), memory_order_relaxed);
    }
    t->prev = old;
    /* the replaced table stays allocated for readers that loaded it: it counts until the memtable dies */
    atomic_fetch_add_explicit(&m->retired_bytes, (old->mask + 1) * sizeof(slot_t), memory_order_relaxed);
    atomic_store_explicit(&m->table, t, memory_order_release);
    return PL_OK;
}

/* Double the hash table.  REQUIRES: the writer. */
static int grow_table(memtable *m)
{
    return grow_table_to(m, (atomic_load_explicit(&m->table, memory_order_relaxed)->mask + 1) * 2);
}

int memtable_reserve(memtable *m, size_t keys)
{
    size_t have = atomic_load_explicit(&m->table, memory_order_relaxed)->mask + 1, want = have;
    while ((keys + 1) * 2 > want)
        want *= 2;
    return want == have ? PL_OK : grow_table_to(m, want);
}

static int add_hashed(memtable *m, uint32_t h, uint64_t lsn, int kind, const char *key, size_t klen,
                      const char *val, size_t vlen)
{
    size_t n = atomic_load_explicit(&m->count, memory_order_relaxed);
    size_t chunk = n / LOG_CHUNK;
    if (chunk >= m->nchunks_cap) {
        /* The chunk table grows under sort_mu, the only other place that reads it. */
        size_t cap = m->nchunks_cap * 2;
        mentry ***c = calloc(cap, sizeof(mentry **));
        if (!c)
            return PL_FAIL(PL_NOMEM, "out of memory in the memtable");
        memcpy(c, m->chunks, m->nchunks_cap * sizeof(mentry **));
        pthread_mutex_lock(&m->sort_mu);
        mentry ***old = m->chunks;
        m->chunks = c;
        m->nchunks_cap = cap;
        pthread_mutex_unlock(&m->sort_mu);
        free(old);
    }
    if (!m->chunks[chunk] && !(m->chunks[chunk] = malloc(sizeof(mentry *) * LOG_CHUNK)))
        return PL_FAIL(PL_NOMEM, "out of memory in the memtable");
    htable *t = atomic_load_explicit(&m->table, memory_order_relaxed);
    if ((m->keys + 1) * 2 > t->mask + 1) {
        int rc = grow_table(m);
        if (rc)
            return rc;
        t = atomic_load_explicit(&m->table, memory_order_relaxed);
    }
    mentry *e = arena_alloc(&m->arena, sizeof(mentry) + klen + IKEY_TRAILER + vlen);
    if (!e)
        return PL_FAIL(PL_NOMEM, "out of memory in the memtable");
    e->klen = (uint32_t)klen;
    e->vlen = (uint32_t)vlen;
    ikey_build(e->data, key, klen, lsn, kind);
    if (vlen)
        memcpy(e->data + klen + IKEY_TRAILER, val, vlen);
    mentry *newest;
    slot_t *slot = probe(t, key, klen, h, &newest);
    e->older = newest;
    if (!newest)
        m->keys++;
    m->chunks[chunk][n % LOG_CHUNK] = e;
    atomic_store_explicit(slot, slot_make(e, h), memory_order_release);
    atomic_store_explicit(&m->count, n + 1, memory_order_release);
    return PL_OK;
}

int memtable_add(memtable *m, uint64_t lsn, int kind, const char *key, size_t klen, const char *val,
                 size_t vlen)
{
    return add_hashed(m, bloom_hash(key, klen), lsn, kind, key, klen, val, vlen);
}

int memtable_add_many(memtable *m, const memtable_op *ops, size_t n)
{
    enum { GROUP = 32 };
    uint32_t h[GROUP];
    for (size_t i = 0; i < n; i += GROUP) {
        size_t k = n - i < GROUP ? n - i : GROUP;
        htable *t = atomic_load_explicit(&m->table, memory_order_relaxed);
        for (size_t j = 0; j < k; j++) {
            h[j] = bloom_hash(ops[i + j].key, ops[i + j].klen);
            __builtin_prefetch(&t->slots[h[j] & t->mask], 1);
        }
        for (size_t j = 0; j < k; j++) {
            const memtable_op *o = &ops[i + j];
            int rc = add_hashed(m, h[j], o->lsn, o->kind, o->key, o->klen, o->val, o->vlen);
            if (rc)
                return rc;
        }
    }
    return PL_OK;
}

int memtable_get(memtable *m, const char *key, size_t klen, uint64_t snap, pl_buf *out, int *result)
{
    htable *t = atomic_load_explicit(&m->table, memory_order_acquire);
    mentry *e;
    probe(t, key, klen, bloom_hash(key, klen), &e);
    uint64_t limit = ikey_pack(snap, KIND_SEEK);
    while (e && etrailer(e) > limit)
        e = e->older;
    *result = !e ? LOOKUP_ABSENT : (etrailer(e) & 0xff) == KIND_DELETE ? LOOKUP_DELETED : LOOKUP_FOUND;
    return *result == LOOKUP_FOUND && out ? buf_set(out, evalue(e), e->vlen) : PL_OK;
}

/* ---- iterators: one per run, merged ---- */

typedef struct {
    iter base;
    run *r;
    size_t i; /* == r->n: invalid */
} run_iter;

static void ri_seek(iter *it, const char *k, size_t n)
{
    run_iter *ri = (run_iter *)it;
    size_t lo = 0, hi = ri->r->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const mentry *e = ri->r->e[mid];
        if (ikey_cmp(ekey(e), e->klen + IKEY_TRAILER, k, n) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    ri->i = lo;
}
static void ri_seek_first(iter *it) { ((run_iter *)it)->i = 0; }
static void ri_seek_last(iter *it)
{
    run_iter *ri = (run_iter *)it;
    ri->i = ri->r->n ? ri->r->n - 1 : 0;
}
/* The entries of a run lie wherever the arena put them (in write order, not key order): a walk asks
 * for the entry RUN_PREFETCH places ahead, its header and key and the start of its value, so that the
 * cache misses overlap (a flush reads every entry this way). */
static inline void ri_prefetch(const run_iter *ri, size_t i)
{
    if (i < ri->r->n) {
        const char *p = (const char *)ri->r->e[i];
        __builtin_prefetch(p);
        __builtin_prefetch(p + 64);
    }
}
static void ri_next(iter *it)
{
    run_iter *ri = (run_iter *)it;
    ri->i++;
    ri_prefetch(ri, ri->i + RUN_PREFETCH);
}
static void ri_prev(iter *it)
{
    run_iter *ri = (run_iter *)it;
    ri->i = ri->i == 0 ? ri->r->n : ri->i - 1;
    if (ri->i >= RUN_PREFETCH && ri->i < ri->r->n)
        ri_prefetch(ri, ri->i - RUN_PREFETCH);
}
static int ri_valid(const iter *it)
{
    const run_iter *ri = (const run_iter *)it;
    return ri->i < ri->r->n;
}
static void ri_key(const iter *it, const char **k, size_t *n)
{
    const run_iter *ri = (const run_iter *)it;
    const mentry *e = ri->r->e[ri->i];
    *k = ekey(e);
    *n = e->klen + IKEY_TRAILER;
}
static void ri_value(const iter *it, const char **v, size_t *n)
{
    const run_iter *ri = (const run_iter *)it;
    const mentry *e = ri->r->e[ri->i];
    *v = evalue(e);
    *n = e->vlen;
}
static int ri_status(const iter *it)
{
    (void)it;
    return PL_OK;
}

typedef struct {
    iter base;
    iter *merged;
    memtable *m;
    runset *s;
} mt_iter;

static void ri_destroy(iter *it)
{
    run_iter *ri = (run_iter *)it;
    run_unref(ri->r);
    free(ri);
}

static const struct iter_ops run_iter_ops = {ri_seek, ri_seek_first, ri_seek_last, ri_next, ri_prev,
                                             ri_valid, ri_key, ri_value, ri_status, ri_destroy};

static void mi_seek(iter *it, const char *k, size_t n) { iter_seek(((mt_iter *)it)->merged, k, n); }
static void mi_seek_first(iter *it) { iter_seek_first(((mt_iter *)it)->merged); }
static void mi_seek_last(iter *it) { iter_seek_last(((mt_iter *)it)->merged); }
static void mi_next(iter *it) { iter_next(((mt_iter *)it)->merged); }
static void mi_prev(iter *it) { iter_prev(((mt_iter *)it)->merged); }
static int mi_valid(const iter *it) { return iter_valid(((const mt_iter *)it)->merged); }
static void mi_key(const iter *it, const char **k, size_t *n) { iter_key(((const mt_iter *)it)->merged, k, n); }
static void mi_value(const iter *it, const char **v, size_t *n)
{
    iter_value(((const mt_iter *)it)->merged, v, n);
}
static int mi_status(const iter *it) { return iter_status(((const mt_iter *)it)->merged); }
static void mi_destroy(iter *it)
{
    mt_iter *mi = (mt_iter *)it;
    iter_destroy(mi->merged);
    runset_unref(mi->s);
    memtable_unref(mi->m);
    free(mi);
}

static const struct iter_ops mt_iter_ops = {mi_seek, mi_seek_first, mi_seek_last, mi_next, mi_prev,
                                            mi_valid, mi_key, mi_value, mi_status, mi_destroy};

int memtable_iter(memtable *m, iter **out)
{
    *out = NULL;
    mt_iter *mi = calloc(1, sizeof *mi);
    if (!mi)
        return PL_FAIL(PL_NOMEM, "out of memory for a memtable iterator");
    runset *s = current_runs(m);
    static run empty_run = {1, 0, {0}};
    iter *its[MAX_RUNS];
    int n = s ? s->n : 0;
    if (!s && atomic_load(&m->count) > 0)
        goto nomem;
    for (int i = 0; i < n || (i == 0 && n == 0); i++) {
        run_iter *ri = calloc(1, sizeof *ri);
        if (!ri) {
            while (i > 0)
                iter_destroy(its[--i]);
            goto nomem;
        }
        ri->base.ops = &run_iter_ops;
        if (n) {
            ri->r = s->runs[i];
            atomic_fetch_add(&ri->r->refs, 1);
        } else {
            ri->r = &empty_run;
            atomic_fetch_add(&empty_run.refs, 1);
        }
        ri->i = ri->r->n;
        its[i] = &ri->base;
    }
    mi->merged = merge_iter_new(its, n ? n : 1);
    if (!mi->merged)
        goto nomem;
    mi->base.ops = &mt_iter_ops;
    mi->s = s;
    memtable_ref(m);
    mi->m = m;
    *out = &mi->base;
    return PL_OK;
nomem:
    runset_unref(s);
    free(mi);
    return PL_FAIL(PL_NOMEM, "out of memory for a memtable iterator");
}
