/*
 * iter.h -- the one iterator contract every source of entries implements (memtable, block, table,
 * level (a concatenation, concat.h), merging iterator, database iterator).
 *
 * Keys are internal keys (ikey.h) except at the database iterator, which shows user keys.  A fresh
 * iterator is not valid; a positioning call (seek, seek_first, seek_last) makes it valid if an entry
 * exists.  next/prev REQUIRE valid.  key/value return pointers that stay good until the next
 * positioning call or destroy.  On a read or checksum error the iterator becomes invalid and status
 * returns the PL_* code (the message is in the thread's pl_errmsg at the time of failure).
 *
 * Thread safety: one thread at a time per iterator.
 */
#ifndef PL_ITER_H
#define PL_ITER_H

#include <stddef.h>

typedef struct iter iter;

struct iter_ops {
    void (*seek)(iter *it, const char *key, size_t n); /* first entry >= key */
    void (*seek_first)(iter *it);
    void (*seek_last)(iter *it);
    void (*next)(iter *it);
    void (*prev)(iter *it);
    int (*valid)(const iter *it);
    void (*key)(const iter *it, const char **k, size_t *n);
    void (*value)(const iter *it, const char **v, size_t *n);
    int (*status)(const iter *it);
    void (*destroy)(iter *it);
};

struct iter {
    const struct iter_ops *ops;
};

static inline void iter_seek(iter *it, const char *k, size_t n) { it->ops->seek(it, k, n); }
static inline void iter_seek_first(iter *it) { it->ops->seek_first(it); }
static inline void iter_seek_last(iter *it) { it->ops->seek_last(it); }
static inline void iter_next(iter *it) { it->ops->next(it); }
static inline void iter_prev(iter *it) { it->ops->prev(it); }
static inline int iter_valid(const iter *it) { return it->ops->valid(it); }
static inline void iter_key(const iter *it, const char **k, size_t *n) { it->ops->key(it, k, n); }
static inline void iter_value(const iter *it, const char **v, size_t *n) { it->ops->value(it, v, n); }
static inline int iter_status(const iter *it) { return it->ops->status(it); }
static inline void iter_destroy(iter *it)
{
    if (it)
        it->ops->destroy(it);
}

#endif
