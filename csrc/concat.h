/*
 * concat.h -- the concatenating iterator: one sorted view (ikey_cmp order) over a run of parts whose
 * key ranges do not overlap, each part's iterator opened only when the walk reaches it (mini-lsm's
 * SstConcatIterator; LevelDB's two-level iterator over a level's file list).  A sorted level (L1..L6)
 * is such a run of tables; version.c builds one per level.
 *
 * Parts are numbered 0..n-1 in key order: every key of part i sorts before every key of part i + 1.
 * A seek finds the first part whose largest key is at or after the target (a binary search over the
 * parts' largest keys, with no part opened to find it), opens that part alone and moves on to the
 * next part while the one open holds nothing at or after the target.  Steps past either end of a
 * part close it and open its neighbour.  At most one part is open at any time.
 *
 * Errors: when a part's iterator fails (or a part cannot be opened: out of memory) the concatenation
 * becomes invalid there and status() returns the failure.  A later positioning call may land on
 * another part, but a failure met is never forgotten: status() reports the first one for the life of
 * the iterator.
 *
 * Thread safety: one thread at a time per iterator (iter.h); the part callbacks run in that thread.
 */
#ifndef PL_CONCAT_H
#define PL_CONCAT_H

#include <stddef.h>

#include "iter.h"

/* What the concatenation asks of whoever owns the parts (ctx is theirs). */
struct concat_ops {
    /* A new iterator over part i (0 <= i < n), positioned nowhere; NULL when out of memory (the
     * concatenation then records PL_NOMEM). */
    iter *(*open)(void *ctx, int i);
    /* Part i's largest key (an internal key), valid as long as ctx is. */
    void (*largest)(void *ctx, int i, const char **k, size_t *n);
    /* Called once, when the concatenation is destroyed (or could not be made): release ctx. */
    void (*release)(void *ctx);
};

/*
 * A concatenation of the n (>= 0) parts that ops describes over ctx.  Takes ownership of ctx: its
 * release runs when the iterator is destroyed, or right away when this fails.
 * Returns the iterator, or NULL (PL_NOMEM recorded) when out of memory.
 */
iter *concat_iter_new(const struct concat_ops *ops, void *ctx, int n);

#endif
