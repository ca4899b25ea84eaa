/*
 * cache.h -- a sharded LRU cache of SSTable blocks, keyed by (table id, block offset).
 *
 * The cache is split into CACHE_SHARDS shards by the key's hash; each shard has its own mutex, hash
 * table and LRU list, and a 1/CACHE_SHARDS share of the capacity.  A value is a malloc'd block the
 * cache owns from cache_insert on, with a caller-given charge against the capacity.
 *
 * Handles are reference counted: cache_lookup and cache_insert each return a handle the caller owns
 * and gives back with cache_release.  A held entry is never freed, even when evicted or replaced; only
 * entries nobody holds are evicted, least recently used first.  So usage may exceed the capacity while
 * handles are held, and falls back once they are released.
 *
 * Capacity 0 disables the cache: every lookup misses and insert returns an uncached handle that frees
 * the value when released.
 *
 * Thread safety: every function may be called from any thread, except cache_free, which REQUIRES that
 * no other thread uses the cache and that every handle has been released.
 */
#ifndef PL_CACHE_H
#define PL_CACHE_H

#include <stddef.h>
#include <stdint.h>

#define CACHE_SHARDS 16

typedef struct cache cache;
typedef struct cache_handle cache_handle;

/* A cache holding up to `capacity` bytes of charge (0: disabled).  NULL when out of memory. */
cache *cache_new(size_t capacity);
/* Free the cache and every value in it.  NULL is ignored.  REQUIRES: see Thread safety. */
void cache_free(cache *c);

/* A table id never returned before by this cache (1, 2, ...), so each open table's blocks get keys
 * of their own even when a file number is reused. */
uint64_t cache_new_id(cache *c);

/* The entry for (id, off), or NULL when absent.  A hit makes it the most recently used. */
cache_handle *cache_lookup(cache *c, uint64_t id, uint64_t off);

/* Insert value (malloc'd, len bytes) for (id, off) with the given charge, replacing any entry for that
 * key (whose holders keep theirs until they release it), then evict as needed.  On success the cache
 * owns value and the caller holds the returned handle.  NULL when out of memory: value still belongs
 * to the caller. */
cache_handle *cache_insert(cache *c, uint64_t id, uint64_t off, char *value, size_t len, size_t charge);

/* Give back a handle from lookup or insert.  NULL is ignored. */
void cache_release(cache_handle *h);

/* The value of a held handle and its length. */
const char *cache_value(const cache_handle *h, size_t *len);

/* Sum of the charges of the entries in the cache (held-but-evicted entries not included). */
size_t cache_usage(cache *c);
size_t cache_capacity(const cache *c);

#endif
