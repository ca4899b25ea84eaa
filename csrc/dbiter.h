/*
 * dbiter.h -- the database iterator: the user's view of a merged internal iterator as of a snapshot
 * (LevelDB's DBIter).
 *
 * It implements iter.h with USER keys: key() returns a user key (no trailer), seek() takes a user key
 * and lands on the first visible user key >= it.  For each user key it shows only the newest version
 * with lsn <= snap_lsn, and hides the key when that version is a delete.  Both directions are
 * supported and may be mixed freely.  key()/value() stay good until the next positioning call or
 * destroy (going backward they point into buffers the iterator owns).
 *
 * Bounds (db_iter_set_bounds) restrict it to user keys in [lo, hi): seek_first goes to the first
 * key >= lo, seek_last to the last key < hi, seek clamps its target to lo, and next/prev turn the
 * iterator invalid when they would leave the range (without reading far past a bound).
 *
 * Errors: an error of the internal iterator makes it invalid and is returned by status(); an internal
 * key shorter than its trailer gives PL_CORRUPT, a failed buffer allocation PL_NOMEM.  Its own errors
 * are sticky: every later positioning call leaves it invalid.
 *
 * pl_iter (pylsm.h) is this iterator as the public API hands it out, defined in dbiter.c: it registers
 * a snapshot (so compaction keeps what it can see), pins the memtables and version of that view
 * (db_view_take, db.h), merges their iterators and runs db_iter over them at the snapshot's LSN.
 *
 * Thread safety: one thread at a time per iterator (iter.h).
 */
#ifndef PL_DBITER_H
#define PL_DBITER_H

#include <stddef.h>
#include <stdint.h>

#include "iter.h"

/*
 * The user-key iterator over `internal` (an iterator of internal keys in ikey_cmp order, usually a
 * merge_iter_new) as of snapshot snap_lsn.  Takes ownership of `internal`: it is destroyed with the
 * result, or right away when this returns NULL.  NULL `internal` also yields NULL.
 * Returns the iterator (not yet positioned), or NULL (PL_NOMEM recorded) when out of memory.
 */
iter *db_iter_new(iter *internal, uint64_t snap_lsn);

/*
 * Restrict `it` (made by db_iter_new) to user keys in [lo, hi); has_lo/has_hi 0 leaves that side open
 * (the pointer is then ignored).  The bounds are copied.  Takes effect at the next positioning call;
 * the current position, if any, is left as is until then.  On allocation failure the iterator's
 * status becomes PL_NOMEM (and it stays invalid).
 */
void db_iter_set_bounds(iter *it, const char *lo, size_t lolen, int has_lo, const char *hi, size_t hilen,
                        int has_hi);

#endif
