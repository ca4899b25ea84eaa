/*
 * checkpoint.h -- a consistent, openable copy of a live database (pl_db_checkpoint in pylsm.h).
 *
 * The copy holds exactly the writes acknowledged before the call: db_capture (db.h) pins the current
 * version and the live WALs at one instant, while leading the writer queue for microseconds; the files
 * are then linked or copied with writers going on:
 *  - tables are immutable: each gets a hard link in the new directory (a copy where links are not
 *    possible, e.g. across file systems);
 *  - each live WAL is copied up to the length captured (the live one is still being appended to);
 *  - a fresh manifest holds the captured version as one edit, and CURRENT names it.
 * Everything is written into `path.tmp`, made durable (files, then the directory), and only then
 * renamed to `path` (and its parent fsynced): a crash at any point leaves no directory at `path`, and
 * a stale `path.tmp` is removed by the next checkpoint to the same path.
 */
#ifndef PL_CHECKPOINT_H
#define PL_CHECKPOINT_H

#include "pylsm.h"

/* What one checkpoint did, for tests and stats. */
typedef struct checkpoint_info {
    uint64_t lsn;          /* the state copied: every write up to this LSN */
    uint64_t tables;       /* tables in the copy */
    uint64_t linked;       /* of which hard-linked (the rest copied) */
    uint64_t wal_bytes;    /* bytes of WAL copied */
} checkpoint_info;

int checkpoint_create(pl_db *db, const char *path, checkpoint_info *info);

#endif
