/*
 * db.h -- the glue of the engine: open/recovery, the write path (writer queue, group commit, sync
 * strategies), the read path, and the background threads.  The public surface is pylsm.h; this header
 * holds what other core files need of the database.
 */
#ifndef PL_DB_H
#define PL_DB_H

#include "compaction.h"
#include "memtable.h"
#include "pylsm.h"
#include "version.h"

/* Take / drop a reference that keeps the pl_db's memory alive (iterators, snapshots). */
void db_ref(pl_db *db);
void db_unref(pl_db *db);

/* Is db a fork()ed child's copy of a handle the parent opened?  Then its locks may be held by threads
 * that do not exist in this process: nothing of it may be touched, freed or closed. */
int db_forked(const pl_db *db);

/* ---- iterators (dbiter.c): what pl_iter needs of the database ----
 *
 * db_snapshot_new registers a snapshot (pl_snapshot_release drops it) at the LSN of `of`, an older
 * snapshot, or at the visible LSN when of is NULL, so that compaction keeps every version it can see.
 * PL_OK; PL_CLOSED, PL_MISUSE (a closed handle, a forked child's); PL_NOMEM.
 *
 * db_view_take pins what a read as of snap (NULL: the visible LSN) sees: the LSN, and references on the
 * memtables and the version that hold it (a read-only handle's snapshot holds the state it was taken
 * in).  db_view_release drops the references. */
typedef struct db_view {
    uint64_t lsn;
    memtable *mem, *imm; /* imm: NULL when there is none */
    version *v;
} db_view;
int db_snapshot_new(pl_db *db, const pl_snapshot *of, pl_snapshot **out);
void db_view_take(pl_db *db, const pl_snapshot *snap, db_view *view);
void db_view_release(db_view *view);

/* How tables of this database are written (directory, cache, block size, filter, target size, file
 * numbers), as flush and compaction write them. */
void db_table_env(pl_db *db, compact_env *env);

/* ---- bulk ingest (ingest.h): what it needs of the database ----
 *
 * db_ingest_begin reserves the ingest's LSN: ingest_lsn_gap past every LSN handed out or queued, so
 * that writers go on beside the ingest (until they would reach it: then they wait for its end).  One
 * ingest at a time: PL_BUSY otherwise; PL_RDONLY_OPEN, PL_READONLY, PL_CLOSED as for writes.
 *
 * db_ingest_commit leads the writer queue, has the memtable flushed, takes the compaction turn, calls
 * place(ctx, current version, e) to set the level of e's tables, and applies e (one manifest record,
 * fsynced) with last LSN = lsn; then lsn is the visible LSN and writers go on after it.  *applied says
 * whether the manifest was written to (then a failure may have left the record durable: the caller
 * must not delete the tables; the next open removes them if the manifest does not name them).
 *
 * db_ingest_end releases the reservation (after a commit, a failure or an abort) and wakes writers. */
typedef int (*db_place_fn)(void *ctx, const version *v, version_edit *e);
extern uint64_t ingest_lsn_gap; /* 2^24; tests make it small to exercise the waiting */
int db_ingest_begin(pl_db *db, uint64_t *lsn);
int db_ingest_commit(pl_db *db, version_edit *e, uint64_t lsn, db_place_fn place, void *ctx, uint64_t entries,
                     uint64_t user_bytes, uint64_t table_bytes, int *applied);
void db_ingest_end(pl_db *db, uint64_t lsn);

/* ---- checkpoints (checkpoint.h): a consistent state to copy ----
 *
 * db_capture leads the writer queue for a moment (writers wait; reads go on), so that every write
 * acknowledged before the call is in the WAL and none is half-appended, and records:
 *  - the current version (referenced: its tables are not deleted while the capture is held),
 *  - the manifest fields that go with it (log number, next file number, last LSN in tables),
 *  - every live WAL (number >= log number), opened, with the length that holds exactly the
 *    acknowledged writes (a WAL deleted or switched meanwhile stays readable through its descriptor).
 * PL_RDONLY_OPEN on a read-only handle; PL_READONLY after a failed write; PL_CLOSED, PL_MISUSE as for
 * writes.  db_capture_release drops what it holds. */
typedef struct db_state_wal {
    uint64_t number;
    uint64_t len; /* its bytes that hold the acknowledged records */
    int fd;
} db_state_wal;
typedef struct db_state {
    version *v;
    uint64_t log_number, next_file, last_lsn;
    uint64_t lsn;           /* the visible LSN: the state captured */
    size_t nwals;
    db_state_wal *wals;     /* ascending by number */
} db_state;
int db_capture(pl_db *db, db_state *c);
void db_capture_release(db_state *c);
const char *db_dir(const pl_db *db);

#endif
