/*
 * memtable.h -- the in-memory table of recent writes: a skiplist of internal keys in an arena.
 *
 * Thread safety: one writer at a time (the db's write leader) calls memtable_add; any number of readers
 * (memtable_get, iterators) run at the same time without locks: a node is fully built before it is
 * published with a release store, and readers follow links with acquire loads.  Nodes are never
 * removed or changed.  The memtable is reference counted; the last memtable_unref frees it.
 */
#ifndef PL_MEMTABLE_H
#define PL_MEMTABLE_H

#include <stddef.h>
#include <stdint.h>

#include "iter.h"
#include "pylsm.h"

typedef struct memtable memtable;

memtable *memtable_new(void);
void memtable_ref(memtable *m);
void memtable_unref(memtable *m);

/* Insert (key, lsn, kind) -> value.  REQUIRES: the caller is the only writer; (key, lsn) is new.
 * PL_OK or PL_NOMEM. */
int memtable_add(memtable *m, uint64_t lsn, int kind, const char *key, size_t klen, const char *val,
                 size_t vlen);

/* The newest version of key with lsn <= snap: LOOKUP_FOUND (value copied to *out), LOOKUP_DELETED,
 * or LOOKUP_ABSENT; -PL_NOMEM if *out could not grow. */
int memtable_get(memtable *m, const char *key, size_t klen, uint64_t snap, pl_buf *out);

/* Bytes of memory it holds, entries, and the smallest/largest LSN added (0 if empty). */
size_t memtable_usage(memtable *m);
uint64_t memtable_count(memtable *m);

/* An iterator over internal keys; holds a reference on m. NULL when out of memory. */
iter *memtable_iter(memtable *m);

/* Grow a pl_buf to hold n bytes; PL_OK or PL_NOMEM. */
int buf_reserve(pl_buf *b, size_t n);
int buf_set(pl_buf *b, const void *data, size_t n);

#endif
