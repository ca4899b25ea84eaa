/*
 * repair.h -- rebuild a damaged database from what is intact (pl_repair; LevelDB's RepairDB idea).
 *
 * repair.c also defines the other whole-database tools of pylsm.h, which work on a closed database
 * beside it: pl_verify reads the manifest chain and every table it names (versions_verify), then every
 * live WAL as recovery reads it (a torn tail of the newest one is not damage), writing nothing;
 * pl_destroy takes the LOCK (PL_BUSY while the database is open) and removes every file whose name is
 * the database's (filename.h), the WALs kept in archive/ and the directories left empty (PL_OK when
 * there is no directory).
 *
 * On a closed database (the LOCK is taken; PL_BUSY if it is held) repair_run trusts neither CURRENT
 * nor any manifest.  It:
 *   1. checks every NNNNNN.sst (table_verify).  An intact table is kept whole.  A damaged one is
 *      salvaged: every data block whose trailer CRC, structure and key order are intact is copied into
 *      a new table (found through the footer and index when those are intact, else by scanning the
 *      data blocks from offset 0 -- they lie back to back, and a block ends where 5 bytes form a
 *      trailer whose CRC matches the bytes since its start -- until the first unreadable one); the
 *      damaged file is renamed NNNNNN.sst.bad.
 *   2. replays every NNNNNN.wal in salvage mode (damaged records are skipped, and so is a record whose
 *      LSN is below the previous one; a damaged file header is rebuilt, with or without the timestamp
 *      flag, whichever the record CRCs confirm) into one table per WAL.  A WAL with damage before its
 *      last intact record is renamed NNNNNN.wal.bad (a torn tail alone is not damage); the others are
 *      deleted once the new state is durable.
 *   3. puts every table in L0 and makes L0 consistent.  L0 tables may overlap, and a read takes the
 *      first version it finds walking L0 from the newest table down (by highest LSN, then by file
 *      number: docs/format.md, "Manifest"), so for every user key the tables holding it must be
 *      numbered in LSN order.  Tables whose user-key ranges overlap and whose LSN ranges overlap too
 *      (a stale WAL next to the table flushed from it, compaction inputs left next to their outputs,
 *      tables of different levels) are merged into one sorted run (duplicate internal keys removed,
 *      every version and tombstone kept).  The rest are ordered by LSN and renamed to higher numbers
 *      where their number does not already follow that order.
 *   4. writes a brand new manifest naming every table in L0, with log_number past every WAL,
 *      next_file past every number in the directory and last_lsn the largest LSN kept, fsyncs it and
 *      its directory, and replaces CURRENT (temp -> fsync -> rename -> fsync(dir)).
 *   5. only then deletes the replayed WALs and the intact tables whose entries were merged into new
 *      ones.  Renames (.bad, renumbering) are made before step 4 and undone if the repair fails before
 *      CURRENT is replaced; a crash mid-repair leaves a directory that repair_run handles again.
 *
 * Nothing else is removed: *.bad files stay for inspection (pl_destroy removes them too).
 * Tables written by the repair use the default block size (4 KiB) and bloom filter (10 bits/key).
 * Records lost to damage can expose an older version of a key, and records of a stale table or WAL
 * that a crash left behind (one an open would have removed) can bring back versions a compaction had
 * dropped: the result is consistent, not always a prefix of history.
 */
#ifndef PL_REPAIR_H
#define PL_REPAIR_H

#include <stdint.h>

/* What a repair found and did. */
typedef struct repair_report {
    uint64_t tables_kept;       /* intact tables kept whole */
    uint64_t tables_renamed;    /* of those and of the new tables: renamed to a higher number */
    uint64_t tables_merged;     /* intact tables rewritten into a merged run (their LSNs overlapped) */
    uint64_t tables_damaged;    /* tables that failed verification, left as NNNNNN.sst.bad */
    uint64_t tables_dropped;    /* intact tables with no entries */
    uint64_t blocks_salvaged;   /* data blocks copied out of damaged tables */
    uint64_t blocks_lost;       /* data blocks of damaged tables that could not be read */
    uint64_t bytes_lost;        /* table bytes of damaged tables left unread by the block scan */
    uint64_t entries_salvaged;  /* entries copied out of damaged tables */
    uint64_t wals_replayed;
    uint64_t wals_damaged;      /* left as NNNNNN.wal.bad */
    uint64_t wal_records;       /* WAL records recovered */
    uint64_t wal_records_skipped; /* intact records skipped: an LSN below the previous one, a bad batch */
    uint64_t wal_dropped_bytes; /* bytes of damaged WAL records skipped */
    uint64_t tables;            /* tables in the new manifest */
    uint64_t last_lsn;          /* the new manifest's last LSN */
} repair_report;

/* Repair the closed database in directory `path`.  PL_OK; PL_NOTFOUND (no database there); PL_BUSY
 * (it is open); PL_IOERR, PL_NOMEM (the directory is as before, apart from files a crash-safe
 * rerun handles); PL_CORRUPT (the directory's file numbers are exhausted).  rep may be NULL. */
int repair_run_report(const char *path, repair_report *rep);
int repair_run(const char *path);

#endif
