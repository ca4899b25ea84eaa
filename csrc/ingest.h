/*
 * ingest.h -- bulk ingest: pairs in strictly ascending key order written straight into tables and
 * made visible by one manifest edit (the public calls are pl_ingest_* in pylsm.h; docs/api.md, "Bulk
 * ingest", and docs/decisions.md, "Bulk ingest", say why it is built this way).
 *
 * The pairs:  every pair must have a key greater (bytewise) than the pair before; the first that does
 * not fails the ingest with PL_INVALID naming its position.  Sizes follow pl_db_put's limits.
 *
 * Tables:  written as flush and compaction write them (compaction_output), cut at the target table
 * size, each fdatasynced and its directory fsynced when it is cut.  Every entry is a put at one LSN,
 * reserved when the ingest starts (db_ingest_begin, db.h): 2^24 past every LSN handed out then, so
 * writers go on beside the ingest, and any write after it (or that would reach it) is newer.  Until
 * the commit the tables are in no version: a crash leaves them as orphans, which the next open
 * removes (remove_obsolete in db.c), and an abort removes them itself.
 *
 * Commit (db_ingest_commit):  with the writer queue held and the memtable flushed, the compaction turn
 * and the version-edit turn taken, the tables are placed and the edit applied -- one manifest record
 * naming every table and setting the last LSN to the ingest's, so that recovery never hands that LSN
 * out again.  Placement follows RocksDB's IngestExternalFile: the deepest level such that no table of
 * that level or any above it overlaps the ingested key range (then no older version of an ingested
 * key sits above it); L0, as the newest tables there (L0 is ordered by LSN, version.c), when L0
 * overlaps.  Levels 1-6 stay non-overlapping: the ingested tables do not overlap each other, and no
 * table of the level chosen overlaps their range.
 *
 * A builder thread:  pl_ingest_add checks a pair (sizes, order against the pair before), and copies it
 * with its internal key and bloom hash into a chunk of 256 KiB; full chunks go to a thread of the
 * ingest's own ("pylsm-ingest", started at the first full chunk) that writes them into the tables, up
 * to four chunks behind the caller, who waits when it is.  The builder's failure (I/O, memory, a
 * closed database) is the caller's at its next hand-off or at the finish, with its message.  The
 * builder is entered (pl_db_enter) while it builds a chunk, so pl_db_close waits for that chunk and no
 * file is written once the close has returned.  A table cut at the target size is finished (written
 * out, synced, opened) on a thread of its own, also entered, while the builder goes on with the next;
 * at most one at a time, joined at the next cut, the finish or the abort.  An ingest of one chunk is built by the finish on the
 * caller's thread.  docs/decisions.md, item 9b.
 *
 * Thread safety: one pl_ingest per thread at a time; one ingest per database at a time.
 */
#ifndef PL_INGEST_H
#define PL_INGEST_H

#include "pylsm.h"
#include "version.h"

/* The level an ingest covering user keys [lo, hi] goes to in v (see above). */
int ingest_pick_level(const version *v, const char *lo, size_t lolen, const char *hi, size_t hilen);

#endif
