/*
 * memtable.h -- the in-memory table of recent writes: a hash index for point lookups and sorted runs,
 * built when an iterator asks, for ordered reads (see memtable.c).
 *
 * Thread safety: one writer at a time (the db's write leader) calls memtable_add; any number of readers
 * (memtable_get, iterators) run at the same time: an entry is fully built before it is published with
 * a release store, readers load with acquire, and entries are never removed or changed.  Building the
 * sorted runs for an iterator takes a memtable-internal mutex that the writer never waits for (except
 * for a moment each 4096 * 2^k entries).  The memtable is reference counted; the last memtable_unref
 * frees it.
 */
#ifndef PL_MEMTABLE_H
#define PL_MEMTABLE_H

#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "buf.h"
#include "iter.h"
#include "pylsm.h"

typedef struct memtable memtable;

/* A new empty memtable holding one reference.  PL_OK (*out set) or PL_NOMEM (*out NULL). */
int memtable_new(memtable **out);
/* The same, with an arena that takes its blocks from pool and gives them back when the memtable dies
 * (pool: NULL, or one that outlives the memtable). */
int memtable_new_in(arena_pool *pool, memtable **out);
void memtable_ref(memtable *m);
void memtable_unref(memtable *m);

/* Insert (key, lsn, kind) -> value.  REQUIRES: the caller is the only writer; lsn is greater than
 * every LSN added before.  PL_OK or PL_NOMEM. */
int memtable_add(memtable *m, uint64_t lsn, int kind, const char *key, size_t klen, const char *val,
                 size_t vlen);

/* One operation for memtable_add_many. */
typedef struct memtable_op {
    uint64_t lsn;
    int kind;
    const char *key, *val;
    size_t klen, vlen;
} memtable_op;

/* memtable_add of ops[0..n-1] in order.  The hash-table slots of all n keys are requested from memory
 * first, so that their cache misses overlap (a batch's keys land in random slots of a table larger than
 * the caches).  PL_OK, or the first failure (the ops before it are in). */
int memtable_add_many(memtable *m, const memtable_op *ops, size_t n);

/* Size the hash index for about `keys` distinct keys now, so a bulk load (WAL replay, or the memtable
 * that follows a full one) does not rehash as it grows.  REQUIRES: the writer.  PL_OK or PL_NOMEM (then
 * it grows as usual). */
int memtable_reserve(memtable *m, size_t keys);

/* The newest version of key with lsn <= snap.  On PL_OK *result is LOOKUP_FOUND (the value replaces the
 * contents of *out; out NULL: no copy), LOOKUP_DELETED or LOOKUP_ABSENT, as table_get's.  PL_NOMEM if
 * *out could not grow. */
int memtable_get(memtable *m, const char *key, size_t klen, uint64_t snap, pl_buf *out, int *result);

/* Bytes of memory it holds (entries and indexes), and the number of entries (these cannot fail). */
size_t memtable_usage(memtable *m);
uint64_t memtable_count(memtable *m);

/* An iterator over internal keys: every entry added before the call (entries added later are not
 * shown).  It holds a reference on m.  PL_OK (*out set) or PL_NOMEM (*out NULL). */
int memtable_iter(memtable *m, iter **out);


#endif
