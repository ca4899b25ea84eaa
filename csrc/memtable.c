/* memtable.c -- a lock-free-read skiplist in an arena; see memtable.h. */
#include "memtable.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "ikey.h"
#include "status.h"

#define MAX_HEIGHT 12

typedef struct node node;
struct node {
    uint32_t klen; /* internal key length */
    uint32_t vlen;
    _Atomic(node *) next[]; /* height links, then klen key bytes, then vlen value bytes */
};

struct memtable {
    arena arena;
    node *head;
    atomic_int height;
    atomic_int refs;
    atomic_uint_fast64_t count;
    uint64_t rnd;
};

/* Nodes don't store their height, so the key's address (just past the links) sits in a small header
 * right before the node. */
typedef struct {
    char *key;
} node_extra;

static inline const char *nkey(const node *n) { return ((const node_extra *)n)[-1].key; }

int buf_reserve(pl_buf *b, size_t n)
{
    if (n <= b->cap)
        return PL_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < n)
        cap = cap * 2 > cap ? cap * 2 : n;
    char *d = realloc(b->data, cap);
    if (!d)
        return PL_FAIL(PL_NOMEM, "out of memory (%zu bytes)", n);
    b->data = d;
    b->cap = cap;
    return PL_OK;
}

int buf_set(pl_buf *b, const void *data, size_t n)
{
    int rc = buf_reserve(b, n ? n : 1);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data, data, n);
    b->len = n;
    return PL_OK;
}

static node *node_new(memtable *m, int height, size_t klen, size_t vlen)
{
    size_t sz = sizeof(node_extra) + sizeof(node) + sizeof(_Atomic(node *)) * (size_t)height + klen + vlen;
    char *mem = arena_alloc(&m->arena, sz);
    if (!mem)
        return NULL;
    node *n = (node *)(mem + sizeof(node_extra));
    ((node_extra *)n)[-1].key = (char *)&n->next[height];
    n->klen = (uint32_t)klen;
    n->vlen = (uint32_t)vlen;
    for (int i = 0; i < height; i++)
        atomic_init(&n->next[i], NULL);
    return n;
}

memtable *memtable_new(void)
{
    memtable *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    arena_init(&m->arena);
    m->head = node_new(m, MAX_HEIGHT, IKEY_TRAILER, 0);
    if (!m->head) {
        arena_destroy(&m->arena);
        free(m);
        return NULL;
    }
    atomic_init(&m->height, 1);
    atomic_init(&m->refs, 1);
    atomic_init(&m->count, 0);
    m->rnd = 0x9E3779B97F4A7C15ull;
    return m;
}

void memtable_ref(memtable *m) { atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed); }

void memtable_unref(memtable *m)
{
    if (m && atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1) {
        arena_destroy(&m->arena);
        free(m);
    }
}

size_t memtable_usage(memtable *m) { return arena_usage(&m->arena); }
uint64_t memtable_count(memtable *m) { return atomic_load_explicit(&m->count, memory_order_relaxed); }

static int random_height(memtable *m)
{
    int h = 1;
    while (h < MAX_HEIGHT) {
        m->rnd ^= m->rnd << 13;
        m->rnd ^= m->rnd >> 7;
        m->rnd ^= m->rnd << 17;
        if ((m->rnd & 3) != 0)
            break;
        h++;
    }
    return h;
}

static inline node *next_of(node *n, int level)
{
    return atomic_load_explicit(&n->next[level], memory_order_acquire);
}

/* Compare node's internal key with (ukey, trailer). */
static inline int node_cmp(const node *n, const char *ukey, size_t ulen, uint64_t trailer)
{
    const char *k = nkey(n);
    size_t nu = n->klen - IKEY_TRAILER;
    int r = ukey_cmp(k, nu, ukey, ulen);
    if (r)
        return r;
    uint64_t t = get_u64(k + nu);
    return t > trailer ? -1 : t < trailer;
}

/* First node >= (ukey, trailer); fills prev[] when given. */
static node *find_ge(memtable *m, const char *ukey, size_t ulen, uint64_t trailer, node **prev)
{
    node *x = m->head;
    int level = atomic_load_explicit(&m->height, memory_order_relaxed) - 1;
    for (;;) {
        node *nx = next_of(x, level);
        if (nx && node_cmp(nx, ukey, ulen, trailer) < 0) {
            x = nx;
        } else {
            if (prev)
                prev[level] = x;
            if (level == 0)
                return nx;
            level--;
        }
    }
}

/* Last node < (ukey, trailer), or head. */
static node *find_lt(memtable *m, const char *ukey, size_t ulen, uint64_t trailer)
{
    node *x = m->head;
    int level = atomic_load_explicit(&m->height, memory_order_relaxed) - 1;
    for (;;) {
        node *nx = next_of(x, level);
        if (nx && node_cmp(nx, ukey, ulen, trailer) < 0) {
            x = nx;
        } else {
            if (level == 0)
                return x;
            level--;
        }
    }
}

static node *find_last(memtable *m)
{
    node *x = m->head;
    int level = atomic_load_explicit(&m->height, memory_order_relaxed) - 1;
    for (;;) {
        node *nx = next_of(x, level);
        if (nx) {
            x = nx;
        } else {
            if (level == 0)
                return x;
            level--;
        }
    }
}

int memtable_add(memtable *m, uint64_t lsn, int kind, const char *key, size_t klen, const char *val,
                 size_t vlen)
{
    node *prev[MAX_HEIGHT];
    uint64_t trailer = ikey_pack(lsn, kind);
    find_ge(m, key, klen, trailer, prev);
    int h = random_height(m);
    int cur = atomic_load_explicit(&m->height, memory_order_relaxed);
    if (h > cur) {
        for (int i = cur; i < h; i++)
            prev[i] = m->head;
        /* Readers seeing the new height before the links find NULL there and drop a level. */
        atomic_store_explicit(&m->height, h, memory_order_relaxed);
    }
    node *n = node_new(m, h, klen + IKEY_TRAILER, vlen);
    if (!n)
        return PL_FAIL(PL_NOMEM, "out of memory in the memtable");
    char *k = (char *)nkey(n);
    ikey_build(k, key, klen, lsn, kind);
    if (vlen)
        memcpy(k + klen + IKEY_TRAILER, val, vlen);
    for (int i = 0; i < h; i++) {
        atomic_store_explicit(&n->next[i], atomic_load_explicit(&prev[i]->next[i], memory_order_relaxed),
                              memory_order_relaxed);
        atomic_store_explicit(&prev[i]->next[i], n, memory_order_release);
    }
    atomic_fetch_add_explicit(&m->count, 1, memory_order_relaxed);
    return PL_OK;
}

int memtable_get(memtable *m, const char *key, size_t klen, uint64_t snap, pl_buf *out)
{
    node *n = find_ge(m, key, klen, ikey_pack(snap, KIND_SEEK), NULL);
    if (!n)
        return LOOKUP_ABSENT;
    const char *k = nkey(n);
    size_t ulen = n->klen - IKEY_TRAILER;
    if (ukey_cmp(k, ulen, key, klen) != 0)
        return LOOKUP_ABSENT;
    if ((get_u64(k + ulen) & 0xff) == KIND_DELETE)
        return LOOKUP_DELETED;
    if (out && buf_set(out, k + n->klen, n->vlen))
        return -PL_NOMEM;
    return LOOKUP_FOUND;
}

/* ---- iterator ---- */

typedef struct {
    iter base;
    memtable *m;
    node *n;
} mt_iter;

static void mi_seek(iter *it, const char *k, size_t n)
{
    mt_iter *mi = (mt_iter *)it;
    mi->n = find_ge(mi->m, k, n - IKEY_TRAILER, get_u64(k + n - IKEY_TRAILER), NULL);
}
static void mi_seek_first(iter *it)
{
    mt_iter *mi = (mt_iter *)it;
    mi->n = next_of(mi->m->head, 0);
}
static void mi_seek_last(iter *it)
{
    mt_iter *mi = (mt_iter *)it;
    node *n = find_last(mi->m);
    mi->n = n == mi->m->head ? NULL : n;
}
static void mi_next(iter *it)
{
    mt_iter *mi = (mt_iter *)it;
    mi->n = next_of(mi->n, 0);
}
static void mi_prev(iter *it)
{
    mt_iter *mi = (mt_iter *)it;
    const char *k = nkey(mi->n);
    size_t ul = mi->n->klen - IKEY_TRAILER;
    node *p = find_lt(mi->m, k, ul, get_u64(k + ul));
    mi->n = p == mi->m->head ? NULL : p;
}
static int mi_valid(const iter *it) { return ((const mt_iter *)it)->n != NULL; }
static void mi_key(const iter *it, const char **k, size_t *n)
{
    const node *x = ((const mt_iter *)it)->n;
    *k = nkey(x);
    *n = x->klen;
}
static void mi_value(const iter *it, const char **v, size_t *n)
{
    const node *x = ((const mt_iter *)it)->n;
    *v = nkey(x) + x->klen;
    *n = x->vlen;
}
static int mi_status(const iter *it)
{
    (void)it;
    return PL_OK;
}
static void mi_destroy(iter *it)
{
    mt_iter *mi = (mt_iter *)it;
    memtable_unref(mi->m);
    free(mi);
}

static const struct iter_ops mt_iter_ops = {mi_seek, mi_seek_first, mi_seek_last, mi_next, mi_prev,
                                            mi_valid, mi_key, mi_value, mi_status, mi_destroy};

iter *memtable_iter(memtable *m)
{
    mt_iter *mi = calloc(1, sizeof *mi);
    if (!mi)
        return NULL;
    mi->base.ops = &mt_iter_ops;
    memtable_ref(m);
    mi->m = m;
    return &mi->base;
}
