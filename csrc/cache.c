/* cache.c -- sharded LRU block cache; see cache.h. */
#include "cache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

typedef struct shard shard;

/* refs counts the caller's handles plus one while the entry is in the cache (in_cache).  An entry in
 * the cache sits on its shard's `lru` list when only the cache holds it (refs == 1), else on `in_use`;
 * only `lru` entries are evicted. */
struct cache_handle {
    uint64_t id, off;
    uint32_t hash;
    int refs;      /* under the shard mutex (uncached handles: owned by one caller) */
    int in_cache;
    char *value;
    size_t len, charge;
    shard *sh;     /* NULL for an uncached handle */
    cache_handle *hnext;        /* hash chain */
    cache_handle *prev, *next;  /* lru or in_use list */
};

struct shard {
    pthread_mutex_t mu;
    size_t capacity, usage;
    cache_handle **table;
    size_t tsize, count; /* tsize: a power of two */
    cache_handle lru;    /* list heads: lru.next is the least recently used */
    cache_handle in_use;
};

struct cache {
    shard shards[CACHE_SHARDS];
    size_t capacity;
    atomic_uint_fast64_t next_id;
};

static inline uint32_t key_hash(uint64_t id, uint64_t off)
{
    uint64_t x = id * 0x9e3779b97f4a7c15ull ^ off;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return (uint32_t)x;
}

static inline shard *shard_of(cache *c, uint32_t hash) { return &c->shards[hash >> 28]; }

static void list_remove(cache_handle *e)
{
    e->next->prev = e->prev;
    e->prev->next = e->next;
}

static void list_append(cache_handle *head, cache_handle *e) /* newest at head->prev */
{
    e->next = head;
    e->prev = head->prev;
    e->prev->next = e;
    e->next->prev = e;
}

static void entry_free(cache_handle *e)
{
    free(e->value);
    free(e);
}

cache *cache_new(size_t capacity)
{
    cache *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->capacity = capacity;
    atomic_init(&c->next_id, 1);
    size_t per = capacity / CACHE_SHARDS + (capacity % CACHE_SHARDS != 0);
    for (int i = 0; i < CACHE_SHARDS; i++) {
        shard *s = &c->shards[i];
        s->capacity = per;
        s->lru.next = s->lru.prev = &s->lru;
        s->in_use.next = s->in_use.prev = &s->in_use;
        if (capacity) {
            s->tsize = 16;
            s->table = calloc(s->tsize, sizeof *s->table);
            if (!s->table) {
                for (int j = 0; j < i; j++) {
                    free(c->shards[j].table);
                    pthread_mutex_destroy(&c->shards[j].mu);
                }
                free(c);
                return NULL;
            }
        }
        pthread_mutex_init(&s->mu, NULL);
    }
    return c;
}

void cache_free(cache *c)
{
    if (!c)
        return;
    for (int i = 0; i < CACHE_SHARDS; i++) {
        shard *s = &c->shards[i];
        for (size_t b = 0; b < s->tsize; b++) {
            cache_handle *e = s->table[b];
            while (e) {
                cache_handle *n = e->hnext;
                entry_free(e);
                e = n;
            }
        }
        free(s->table);
        pthread_mutex_destroy(&s->mu);
    }
    free(c);
}

uint64_t cache_new_id(cache *c) { return atomic_fetch_add(&c->next_id, 1); }

size_t cache_capacity(const cache *c) { return c->capacity; }

size_t cache_usage(cache *c)
{
    size_t u = 0;
    for (int i = 0; i < CACHE_SHARDS; i++) {
        pthread_mutex_lock(&c->shards[i].mu);
        u += c->shards[i].usage;
        pthread_mutex_unlock(&c->shards[i].mu);
    }
    return u;
}

/* The link that points at the entry for (id, off), or at the NULL ending its chain. REQUIRES: s->mu. */
static cache_handle **find_slot(shard *s, uint64_t id, uint64_t off, uint32_t hash)
{
    cache_handle **pp = &s->table[hash & (s->tsize - 1)];
    while (*pp && ((*pp)->id != id || (*pp)->off != off))
        pp = &(*pp)->hnext;
    return pp;
}

/* Double the hash table when it gets full; failure just leaves chains longer. REQUIRES: s->mu. */
static void maybe_grow(shard *s)
{
    if (s->count <= s->tsize)
        return;
    size_t n = s->tsize * 2;
    cache_handle **t = calloc(n, sizeof *t);
    if (!t)
        return;
    for (size_t b = 0; b < s->tsize; b++) {
        cache_handle *e = s->table[b];
        while (e) {
            cache_handle *next = e->hnext;
            cache_handle **slot = &t[e->hash & (n - 1)];
            e->hnext = *slot;
            *slot = e;
            e = next;
        }
    }
    free(s->table);
    s->table = t;
    s->tsize = n;
}

/* Drop one reference. REQUIRES: s->mu for a cached entry. Returns 1 if the entry must be freed. */
static int unref_locked(shard *s, cache_handle *e)
{
    e->refs--;
    if (e->refs == 0)
        return 1;
    if (e->in_cache && e->refs == 1) { /* only the cache holds it now: evictable */
        list_remove(e);
        list_append(&s->lru, e);
    }
    return 0;
}

/* Take e (found in the table) out of the cache. REQUIRES: s->mu. Returns 1 if it must be freed. */
static int remove_locked(shard *s, cache_handle **slot)
{
    cache_handle *e = *slot;
    *slot = e->hnext;
    s->count--;
    list_remove(e);
    e->in_cache = 0;
    s->usage -= e->charge;
    return unref_locked(s, e);
}

/* Evict least recently used entries nobody holds until the shard fits its capacity; they are pushed on
 * `victims` (linked by hnext) to be freed after the mutex is dropped. REQUIRES: s->mu. */
static cache_handle *evict_locked(shard *s, cache_handle *victims)
{
    while (s->usage > s->capacity && s->lru.next != &s->lru) {
        cache_handle *v = s->lru.next;
        if (remove_locked(s, find_slot(s, v->id, v->off, v->hash))) {
            v->hnext = victims;
            victims = v;
        }
    }
    return victims;
}

static void free_list(cache_handle *victims)
{
    while (victims) {
        cache_handle *v = victims;
        victims = v->hnext;
        entry_free(v);
    }
}

cache_handle *cache_lookup(cache *c, uint64_t id, uint64_t off)
{
    if (!c || c->capacity == 0)
        return NULL;
    uint32_t hash = key_hash(id, off);
    shard *s = shard_of(c, hash);
    pthread_mutex_lock(&s->mu);
    cache_handle *e = *find_slot(s, id, off, hash);
    if (e) {
        if (e->refs == 1) { /* leaving the lru list */
            list_remove(e);
            list_append(&s->in_use, e);
        }
        e->refs++;
    }
    pthread_mutex_unlock(&s->mu);
    return e;
}

cache_handle *cache_insert(cache *c, uint64_t id, uint64_t off, char *value, size_t len, size_t charge)
{
    cache_handle *e = malloc(sizeof *e);
    if (!e)
        return NULL;
    memset(e, 0, sizeof *e);
    e->id = id;
    e->off = off;
    e->hash = key_hash(id, off);
    e->value = value;
    e->len = len;
    e->charge = charge;
    e->refs = 1;
    if (!c || c->capacity == 0)
        return e; /* uncached: sh == NULL */

    shard *s = shard_of(c, e->hash);
    cache_handle *victims = NULL; /* freed after the mutex is dropped */
    pthread_mutex_lock(&s->mu);
    e->sh = s;
    e->refs = 2;
    e->in_cache = 1;
    list_append(&s->in_use, e);
    s->usage += charge;
    cache_handle **slot = find_slot(s, id, off, e->hash);
    cache_handle *old = *slot;
    if (old && remove_locked(s, slot)) { /* unlinked; *slot now holds its successor */
        old->hnext = victims;
        victims = old;
    }
    e->hnext = *slot;
    *slot = e;
    s->count++;
    maybe_grow(s);
    victims = evict_locked(s, victims);
    pthread_mutex_unlock(&s->mu);
    free_list(victims);
    return e;
}

void cache_release(cache_handle *h)
{
    if (!h)
        return;
    shard *s = h->sh;
    if (!s) {
        if (--h->refs == 0)
            entry_free(h);
        return;
    }
    pthread_mutex_lock(&s->mu);
    cache_handle *victims = NULL;
    if (unref_locked(s, h)) {
        h->hnext = NULL;
        victims = h;
    } else if (s->usage > s->capacity) { /* an entry that was held while the shard filled up */
        victims = evict_locked(s, NULL);
    }
    pthread_mutex_unlock(&s->mu);
    free_list(victims);
}

const char *cache_value(const cache_handle *h, size_t *len)
{
    if (len)
        *len = h->len;
    return h->value;
}
