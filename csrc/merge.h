/*
 * merge.h -- the merging iterator: one sorted view (ikey_cmp order) over the union of n child
 * iterators of internal keys, in both directions (LevelDB's MergingIterator).
 *
 * Entries are not deduplicated unless MERGE_DEDUP is asked for: an internal key present in two
 * children is yielded twice.  Ties are broken by child index, so the order is the total order
 * (internal key, child index) in both directions, and switching direction after any step yields
 * exactly the neighbour of the current entry in that order.
 *
 * Children are kept in an array and the smallest (or largest) is found by a linear scan over their
 * cached current keys.  n is small (memtable + immutable memtable + L0 files + one per level, about
 * 10..20): a scan is n short memcmps over pointers already in cache, needs no sift-up/down, and a
 * direction switch needs no second heap.  A heap pays off from about 30..50 children; if a caller
 * ever merges that many, change only merge.c.
 *
 * Errors: when a child becomes invalid with a non-OK status the merged iterator becomes invalid
 * (it never silently skips a child's remaining entries) and status() returns the first non-OK
 * child status, in child order.  A later positioning call that moves every child tries again.
 *
 * Thread safety: one thread at a time per iterator (iter.h).
 */
#ifndef PL_MERGE_H
#define PL_MERGE_H

#include "iter.h"

/*
 * A merging iterator over children[0..n-1] (n >= 0; the array itself is copied, not kept).
 * Takes ownership of every child: they are destroyed with the merged iterator, or right away when
 * this returns NULL.  A NULL among the children (a failed constructor) makes it fail the same way,
 * so callers may pass the results of *_iter() constructors unchecked.  With n == 1 the only child
 * is returned as is.
 * Returns the iterator, or NULL (PL_NOMEM recorded) when out of memory or a child is NULL.
 */
iter *merge_iter_new(iter **children, int n);

/* merge_iter_new with options (flags: MERGE_DEDUP or 0). */
iter *merge_iter_new_flags(iter **children, int n, unsigned flags);
/* Yield each internal key once, however many children hold it (repair merges tables that may share
 * entries): the copy of the lowest child index going forward, of the highest going backward (the
 * first met either way).  REQUIRES: each child's keys strictly ascend, as a table's and a memtable's
 * do (repeats within one child are not removed). */
#define MERGE_DEDUP 1u

#endif
