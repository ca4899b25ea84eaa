/*
 * db.c -- open and recovery, the write path, the read path, background threads.
 *
 * Write path: every writer queues a writer record under db->mu.  The
 * first one in the queue is the leader: it takes a group of queued writers, assigns consecutive LSNs,
 * appends their records to the WAL in one go (no system call: the WAL is a shared mapping), fsyncs
 * once if the group needs it, inserts the batches into the memtable, publishes the new LSN and wakes
 * the followers.  The leader drops db->mu while it appends and inserts: only the leader touches the
 * WAL's append window and the memtable's write side.
 *
 * Locks, outermost first: sync_mu (who may fsync or switch the WAL) then mu (all other state).  A
 * thread that holds mu never waits for sync_mu.
 */
#include "db.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <time.h>

#include "batch.h"
#include "bloom.h"
#include "buf.h"
#include "env.h"
#include "filename.h"
#include "ikey.h"
#include "cache.h"
#include "changes.h"
#include "compaction.h"
#include "memtable.h"
#include "sstable.h"
#include "status.h"
#include "testhooks.h"
#include "progress.h"
#include "version.h"
#include "wal.h"
#include "warm.h"

#define GROUP_MAX_WRITERS 128
#define GROUP_MAX_BYTES (1u << 20)
#define SMALL_REP 512
#define RECOVERED_WALS_MAX 4 /* more live WALs than this at open: flush them into a table */

/* ---- fork detection: a handle is valid only in the process that opened it ---- */

static atomic_uint fork_generation;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void on_fork_child(void) { atomic_fetch_add(&fork_generation, 1); }
static void atfork_init(void) { pthread_atfork(NULL, NULL, on_fork_child); }

typedef struct writer writer;
/* A writer whose batch is made once it leads the queue (no write is in flight then): it fills rep,
 * len, count and user_bytes; mu is not held during the call.  A non-zero return ends the write. */
typedef int (*writer_prepare_fn)(void *ctx, pl_db *db, writer *w);
struct writer {
    const char *rep; /* encoded batch */
    size_t len;
    writer_prepare_fn prepare;
    void *prepare_ctx;
    uint32_t count;
    uint64_t user_bytes;
    int sync;
    int done;
    int rc;
    pthread_cond_t cv;
    writer *next;
};

struct pl_db {
    char *path;
    pl_options opt;
    int lock_fd;
    unsigned fork_gen;

    pthread_mutex_t mu;
    pthread_mutex_t sync_mu;
    writer *queue_head, *queue_tail;

    memtable *mem;
    memtable *imm;            /* full, being flushed */
    uint64_t imm_log_number;  /* the first WAL not covered by imm */
    uint64_t imm_last_lsn;    /* the last LSN in imm */
    wal *log;
    uint64_t log_number;      /* file number of the current WAL */
    uint64_t *wals;           /* numbers of the WAL files on disk, ascending (under mu) */
    size_t nwals, capwals;
    versions vs;              /* live tables and the manifest; file numbers */
    cache *cache;
    arena_pool *pool; /* the memtables' arena blocks, kept from one memtable for the next */

    /* the background threads: one flushes, one compacts, so that a long compaction never holds a full
     * memtable back (writers would stall behind it) and the two use both cores */
    pthread_t flush_thread, compact_thread;
    int flush_started, compact_started;
    pthread_cond_t bg_cv;     /* work for the threads, or work done (flush waiters, stalled writers) */
    uint64_t installs;        /* versions installed (under mu): work a compaction pick may have missed */
    uint64_t flushes;
    uint64_t compactions;
    uint64_t subcompactions; /* compactions split over two threads */
    uint64_t stalls;
    pthread_mutex_t compact_mu; /* one compaction at a time (background or manual) */
    pthread_mutex_t apply_mu;   /* one version edit at a time; order: compact_mu, apply_mu, sync_mu, mu */
    uint64_t last_assigned;   /* highest LSN handed to a writer (leader only, under mu) */
    uint64_t queued_lsns;     /* LSNs the writers in the queue will take (under mu) */
    uint64_t ingest_lsn;      /* the LSN reserved by the running ingest, 0 if none (under mu) */
    pthread_t ingest_thread;  /* the thread that started it */
    _Atomic uint64_t visible; /* highest LSN readers may see */

    int bg_error;               /* sticky: a write or fsync failed (PL_IOERR) */
    int bg_errno;               /* its errno (ENOSPC, EIO, ...) */
    char bg_msg[256];

    /* time-based / hybrid sync */
    pthread_t sync_thread;
    int sync_thread_started;
    warm *warmer; /* maps a warm database's tables after open (warm.h); guarded by mu */
    pthread_cond_t sync_cv;
    uint64_t unsynced_records;  /* appended since the last fsync */
    uint64_t oldest_unsynced_ns;

    /* registered snapshots (compaction keeps what they can see), newest registration first: a new
     * one is pushed at the head.  Not in LSN order (an iterator over an older snapshot registers at
     * that snapshot's LSN): oldest_snapshot() walks them all for the smallest LSN. */
    pl_snapshot *snaps;

    /* lifetime */
    atomic_int active;    /* calls between pl_db_enter and pl_db_leave */
    atomic_int closing;
    int closed;
    pthread_cond_t close_cv;
    atomic_int refs;

    /* statistics */
    _Atomic uint64_t st_wal_writes, st_wal_syncs, st_wal_records, st_user_bytes, st_wal_bytes;
    _Atomic uint64_t st_puts, st_deletes, st_gets, st_table_bytes, st_ingested;
    _Atomic uint64_t st_level_written[NUM_LEVELS]; /* table bytes written into each level */
    uint64_t wal_dropped_bytes;
    uint64_t recovered_records;
    int recovered_wals;         /* WAL files that held records at open */
};

/* ---- small helpers ---- */

int db_forked(const pl_db *db) { return db->fork_gen != atomic_load(&fork_generation); }

static int check_usable(pl_db *db)
{
    if (db_forked(db))
        return PL_FAIL(PL_MISUSE, "this database handle was opened in the parent process before fork()");
    if (atomic_load(&db->closing))
        return PL_FAIL(PL_CLOSED, "the database is closed");
    return PL_OK;
}

/* Record a failed write or fsync: from now on the database refuses writes, and the writers waiting
 * for the background threads (a flush, L0 to shrink) wake to return the error. REQUIRES: mu held. */
static void set_bg_error(pl_db *db)
{
    if (!db->bg_error) {
        db->bg_error = PL_IOERR;
        db->bg_errno = pl_errno();
        snprintf(db->bg_msg, sizeof db->bg_msg, "%s", pl_errmsg());
    }
    pthread_cond_broadcast(&db->bg_cv);
}

/* Every call refused after the failure reports the failure's own errno (ENOSPC stays ENOSPC). */
static int readonly_error(pl_db *db)
{
    int rc = PL_FAIL(PL_READONLY, "the database is read-only after an earlier failure (%s); reopen it",
                     db->bg_msg);
    pl_set_errno(db->bg_errno);
    return rc;
}

/* Take sync_mu from a thread that holds mu: the lock order puts sync_mu first, so mu is let go for a
 * moment (what it guards may change meanwhile).  REQUIRES: mu held, sync_mu not held; returns with
 * both held. */
static void take_sync_mu(pl_db *db)
{
    pthread_mutex_unlock(&db->mu);
    pthread_mutex_lock(&db->sync_mu);
    pthread_mutex_lock(&db->mu);
}

/* ---- options ---- */

void pl_options_init(pl_options *o)
{
    memset(o, 0, sizeof *o);
    o->create_if_missing = 1;
    o->sync_mode = PL_SYNC_NONE;
    o->sync_count = PL_DEFAULT_SYNC_COUNT;
    o->sync_interval_ms = PL_DEFAULT_SYNC_INTERVAL_MS;
    o->memtable_bytes = PL_DEFAULT_MEMTABLE_BYTES;
    o->block_bytes = PL_DEFAULT_BLOCK_BYTES;
    o->bloom_bits_per_key = PL_DEFAULT_BLOOM_BITS_PER_KEY;
    o->point_index = 1;
    o->block_cache_bytes = PL_DEFAULT_BLOCK_CACHE_BYTES;
    o->wal_recovery = PL_RECOVER_TOLERATE_TAIL;
    o->background_compaction = 1;
}

/* The options with a range (pylsm.h), in the order of check_options' values. */
static const pl_option_range option_ranges[] = {
    {"sync_count", PL_MIN_SYNC_COUNT, PL_MAX_SYNC_COUNT},
    {"sync_interval_ms", PL_MIN_SYNC_INTERVAL_MS, PL_MAX_SYNC_INTERVAL_MS},
    {"memtable_bytes", PL_MIN_MEMTABLE_BYTES, PL_MAX_MEMTABLE_BYTES},
    {"block_bytes", PL_MIN_BLOCK_BYTES, PL_MAX_BLOCK_BYTES},
    {"bloom_bits_per_key", PL_MIN_BLOOM_BITS_PER_KEY, PL_MAX_BLOOM_BITS_PER_KEY},
    {"block_cache_bytes", PL_MIN_BLOCK_CACHE_BYTES, PL_MAX_BLOCK_CACHE_BYTES},
    {"wal_retention_bytes", PL_MIN_WAL_RETENTION, PL_MAX_WAL_RETENTION},
    {"wal_retention_seconds", PL_MIN_WAL_RETENTION, PL_MAX_WAL_RETENTION},
    {NULL, 0, 0},
};

const pl_option_range *pl_option_ranges(void) { return option_ranges; }

static int check_options(const pl_options *o)
{
    if (o->sync_mode < PL_SYNC_NONE || o->sync_mode > PL_SYNC_HYBRID)
        return PL_FAIL(PL_INVALID, "sync: unknown strategy %d", o->sync_mode);
    int count = o->sync_mode == PL_SYNC_EVERY_N || o->sync_mode == PL_SYNC_HYBRID;
    int interval = o->sync_mode == PL_SYNC_TIME_BASED || o->sync_mode == PL_SYNC_HYBRID;
    /* option_ranges' options, in its order: a sync setting its strategy does not use is not checked,
     * and an int below 0 converts to above any max. */
    const uint64_t v[] = {
        count ? o->sync_count : PL_MIN_SYNC_COUNT,
        interval ? o->sync_interval_ms : PL_MIN_SYNC_INTERVAL_MS,
        o->memtable_bytes,
        o->block_bytes,
        (uint64_t)(int64_t)o->bloom_bits_per_key,
        o->block_cache_bytes,
        o->wal_retention_bytes,
        o->wal_retention_seconds,
    };
    _Static_assert(sizeof v / sizeof v[0] + 1 == sizeof option_ranges / sizeof option_ranges[0],
                   "a value for every ranged option");
    for (size_t i = 0; option_ranges[i].name; i++)
        if (v[i] < option_ranges[i].min || v[i] > option_ranges[i].max)
            return PL_FAIL(PL_INVALID, "%s must be %" PRIu64 " to %" PRIu64, option_ranges[i].name,
                           option_ranges[i].min, option_ranges[i].max);
    if (o->compression < PL_COMPRESS_NONE || o->compression > PL_COMPRESS_LZ4)
        return PL_FAIL(PL_INVALID, "compression: unknown codec %d", o->compression);
    if (o->wal_recovery < PL_RECOVER_TOLERATE_TAIL || o->wal_recovery > PL_RECOVER_SALVAGE)
        return PL_FAIL(PL_INVALID, "wal_recovery: unknown mode %d", o->wal_recovery);
    return PL_OK;
}

/* ---- WAL files ---- */

static size_t wal_window(const pl_db *db, size_t need)
{
    size_t w = db->opt.memtable_bytes + db->opt.memtable_bytes / 2 + (1u << 20);
    if (w < (4u << 20))
        w = 4u << 20;
    if (w < need + (1u << 20))
        w = need + (1u << 20);
    return w;
}

/* Start a new WAL able to take `need` bytes of records.  REQUIRES: sync_mu and mu held, no leader
 * appending (the caller is the leader or the opener).  The old WAL is made durable and closed first,
 * so the log never has a hole: a durable record in a newer WAL implies all older ones are durable. */
static int new_wal(pl_db *db, size_t need)
{
    int rc = PL_OK;
    if (db->log) {
        rc = wal_close(db->log, 1);
        db->log = NULL;
        if (rc)
            return rc;
        atomic_fetch_add(&db->st_wal_syncs, 1);
    }
    uint64_t number = versions_new_file(&db->vs);
    char *path = db_file_name(db->path, number, FILE_WAL);
    if (!path)
        return PL_FAIL(PL_NOMEM, "out of memory");
    rc = wal_create(path, db->opt.wal_timestamp, wal_window(db, need), &db->log);
    free(path);
    if (!rc && db->opt.sync_mode != PL_SYNC_NONE && db->opt.sync_mode != PL_SYNC_TIME_BASED)
        wal_set_pwrite(db->log); /* synced every few records: no page fault per sync */
    if (!rc)
        rc = env_sync_dir(db->path);
    if (rc)
        return rc;
    db->log_number = number;
    if (!array_reserve(&db->wals, &db->capwals, db->nwals + 1, sizeof *db->wals))
        db->wals[db->nwals++] = number; /* (if this fails, the next open removes the file) */
    db->unsynced_records = 0;
    return PL_OK;
}

/* ---- the write path ---- */

enum { APPLY_GROUP = 64 };

typedef struct {
    memtable *mem;
    uint64_t lsn;
    size_t n;
    memtable_op ops[APPLY_GROUP];
} apply_ctx;

static int apply_op(void *ctx, uint32_t i, int kind, const char *key, size_t klen, const char *val,
                    size_t vlen)
{
    apply_ctx *a = ctx;
    a->ops[a->n++] = (memtable_op){a->lsn + i, kind, key, val, klen, vlen};
    if (a->n < APPLY_GROUP)
        return PL_OK;
    a->n = 0;
    return memtable_add_many(a->mem, a->ops, APPLY_GROUP);
}

/* Insert an encoded batch whose first operation has LSN lsn, APPLY_GROUP operations at a time (their
 * memtable slots fetched together). */
static int apply_batch(memtable *mem, uint64_t lsn, const char *rep, size_t len)
{
    apply_ctx a = {mem, lsn, 0, {{0}}};
    int rc = batch_iterate(rep, len, apply_op, &a);
    return rc ? rc : memtable_add_many(mem, a.ops, a.n);
}

/* Would n more records bring those not yet synced to the count of every_n or hybrid (then they are
 * synced with the append)?  REQUIRES: mu held. */
static int sync_count_due(const pl_db *db, uint64_t n)
{
    int mode = db->opt.sync_mode;
    return (mode == PL_SYNC_EVERY_N || mode == PL_SYNC_HYBRID) && db->unsynced_records + n >= db->opt.sync_count;
}

/* Can a lone write of this size go through without waiting on I/O or another thread?
 * REQUIRES: mu held. */
static int write_is_quick(pl_db *db, size_t len)
{
    if (db->opt.sync_mode == PL_SYNC_EVERY_WRITE || sync_count_due(db, 1))
        return 0;
    if (memtable_usage(db->mem) >= db->opt.memtable_bytes)
        return 0;
    if (db->opt.background_compaction && db->vs.current->n[0] >= L0_SLOWDOWN)
        return 0;
    return wal_record_size(db->log, len) + wal_append_overhead(db->log) <= wal_room(db->log);
}

/* Wake the next leader. REQUIRES: mu held. */
static void wake_head(pl_db *db)
{
    if (db->queue_head)
        pthread_cond_signal(&db->queue_head->cv);
}

/* Join the writer queue at its tail. REQUIRES: mu held. */
static void queue_push(pl_db *db, writer *w)
{
    if (db->queue_tail)
        db->queue_tail->next = w;
    else
        db->queue_head = w;
    db->queue_tail = w;
}

/* Lead the writer queue with a writer of no records (writers wait behind it; reads go on), for an
 * ingest's commit or a checkpoint's capture.  REQUIRES: mu held; returns with it held, w at the head. */
static void queue_lead(pl_db *db, writer *w)
{
    memset(w, 0, sizeof *w);
    pthread_cond_init(&w->cv, NULL);
    queue_push(db, w);
    while (db->queue_head != w)
        pthread_cond_wait(&w->cv, &db->mu);
}

/* The leader w leaves the queue alone (nothing of a group to hand back) and wakes the next leader.
 * REQUIRES: mu held, w at the head. */
static void queue_pop(pl_db *db, writer *w)
{
    db->queue_head = w->next;
    if (!db->queue_head)
        db->queue_tail = NULL;
    wake_head(db);
}

/* Make the memtable immutable, for the flush thread to flush, and put `fresh` in its place with
 * a new WAL: imm covers every WAL before the new one and every LSN handed out so far.  Takes fresh:
 * when new_wal fails it is dropped and nothing is swapped (the error is new_wal's).  REQUIRES: sync_mu
 * and mu held, no imm, no leader appending (the caller leads the queue, or opens the database). */
static int switch_memtable(pl_db *db, memtable *fresh)
{
    int rc = new_wal(db, 0);
    if (rc) {
        memtable_unref(fresh);
        return rc;
    }
    db->imm = db->mem;
    db->imm_log_number = db->log_number;
    db->imm_last_lsn = db->last_assigned;
    db->mem = fresh;
    return PL_OK;
}

/* Switch to a fresh memtable and WAL when the memtable is full (or when forced and not empty); wait
 * while the previous memtable is still being flushed.  REQUIRES: mu held, the caller leads the queue. */
static int make_room(pl_db *db, int force)
{
    int slowed = 0;
    for (;;) {
        if (db->bg_error)
            return readonly_error(db);
        if (atomic_load(&db->closing))
            return PL_FAIL(PL_CLOSED, "the database is closed");
        /* Backpressure: L0 tables make every read slower; let compaction catch up. */
        int l0 = db->vs.current->n[0];
        if (db->opt.background_compaction && l0 >= L0_STOP) {
            db->stalls++;
            pthread_cond_wait(&db->bg_cv, &db->mu);
            continue;
        }
        if (db->opt.background_compaction && l0 >= L0_SLOWDOWN && !slowed) {
            slowed = 1;
            pthread_mutex_unlock(&db->mu);
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
            pthread_mutex_lock(&db->mu);
            continue;
        }
        int full = memtable_usage(db->mem) >= db->opt.memtable_bytes && memtable_count(db->mem) > 0;
        if (!full && !(force && memtable_count(db->mem) > 0))
            return PL_OK;
        if (db->imm) {
            pthread_cond_wait(&db->bg_cv, &db->mu);
            continue;
        }
        memtable *fresh;
        int rc = memtable_new_in(db->pool, &fresh);
        if (rc)
            return rc;
        /* The next memtable will likely hold as many keys as this one: its hash index is sized for
         * them now rather than doubled as they arrive (best effort; entries >= distinct keys). */
        if (full)
            memtable_reserve(fresh, (size_t)memtable_count(db->mem));
        take_sync_mu(db);
        rc = switch_memtable(db, fresh);
        pthread_mutex_unlock(&db->sync_mu);
        if (rc) {
            set_bg_error(db);
            return rc;
        }
        pthread_cond_broadcast(&db->bg_cv);
        force = 0;
    }
}

static int read_only_error(void)
{
    return PL_FAIL(PL_RDONLY_OPEN, "the database was opened with read_only=True: it takes no writes");
}

/* PL_OK if the handle may take a write now (open, in this process, not read-only). */
static int check_writable(pl_db *db)
{
    int rc = check_usable(db);
    return rc ? rc : db->opt.read_only ? read_only_error() : PL_OK;
}

/* Would a write of count operations, queued now, take the LSN reserved by the running ingest (or one
 * past it)?  REQUIRES: mu held. */
static int ingest_blocks(const pl_db *db, uint32_t count)
{
    return db->ingest_lsn && count && db->last_assigned + db->queued_lsns + count >= db->ingest_lsn;
}

/* Writers run beside an ingest until they would reach its LSN (ingest.h): then they wait, outside the
 * queue, for its commit.  The ingest's own thread (a generator that writes) gets PL_BUSY instead of
 * waiting for itself.  REQUIRES: mu held. */
static int wait_for_ingest(pl_db *db, uint32_t count)
{
    while (ingest_blocks(db, count)) {
        if (pthread_equal(db->ingest_thread, pthread_self()))
            return PL_FAIL(PL_BUSY, "a write from the thread running ingest() would take the LSN the "
                                    "ingest reserved; write after ingest() returns");
        if (db->bg_error)
            return readonly_error(db);
        if (atomic_load(&db->closing))
            return PL_FAIL(PL_CLOSED, "the database is closed");
        pthread_cond_wait(&db->bg_cv, &db->mu);
    }
    return PL_OK;
}

/* ---- the group commit ----
 *
 * A write takes four steps (write_rep_ex): join_queue, then, for the writer that comes to lead the
 * queue, take_group, commit_group and finish_group.  The followers the leader takes wake with the
 * group's status. */

/* The writers one leader commits, with their WAL records (consecutive LSNs). */
typedef struct {
    int n;
    writer *w[GROUP_MAX_WRITERS];
    wal_rec recs[GROUP_MAX_WRITERS];
    wal *log;      /* the WAL appended to */
    int need_sync; /* the append is synced */
} write_group;

/* Queue w and wait until a leader has written it (w->done; its status is returned) or w leads the
 * queue (PL_OK, w->done 0).  Refused before it queues: PL_READONLY after a failed write; PL_WOULDBLOCK
 * for a PL_WRITE_NO_WAIT write that would wait (a queue, a sync, a full memtable or WAL window, an
 * ingest in the way); wait_for_ingest's errors.  REQUIRES: mu held (released while waiting). */
static int join_queue(pl_db *db, writer *w, int flags)
{
    if (db->bg_error)
        return readonly_error(db);
    if ((flags & PL_WRITE_NO_WAIT) &&
        (db->queue_head || w->sync || !write_is_quick(db, w->len) || ingest_blocks(db, w->count)))
        return PL_WOULDBLOCK;
    int rc = wait_for_ingest(db, w->count);
    if (rc)
        return rc;
    db->queued_lsns += w->count;
    queue_push(db, w);
    while (!w->done && db->queue_head != w)
        pthread_cond_wait(&w->cv, &db->mu);
    if (w->done && w->rc)
        pl_fail(w->rc, 0, "%s", w->rc == PL_READONLY ? "the database is read-only after an earlier failure"
                                                      : "the group commit this write joined failed");
    return w->done ? w->rc : PL_OK;
}

/* The leader's turn begins.  A writer that makes its batch now makes it (writers wait behind it;
 * nothing is in flight, so what it reads is every acknowledged write and nothing else), room is made
 * in the memtable, and g takes w and the writers queued behind it, up to GROUP_MAX_WRITERS and
 * GROUP_MAX_BYTES, stopping at a flush request (it leads its own turn), with consecutive LSNs.  g->n
 * stays 0 on failure and when there is nothing to write (a flush request, an empty batch made).
 * REQUIRES: mu held (released while w makes its batch and while make_room waits), w at the head. */
static int take_group(pl_db *db, writer *w, write_group *g)
{
    int rc;
    if (w->prepare) {
        pthread_mutex_unlock(&db->mu);
        rc = w->prepare(w->prepare_ctx, db, w);
        pthread_mutex_lock(&db->mu);
        if (!rc && w->count && ingest_blocks(db, w->count))
            rc = PL_FAIL(PL_BUSY, "an ingest() is running and holds the LSNs this write needs; retry after it");
        db->queued_lsns += w->count; /* (finish_group gives them back if no group is taken) */
        if (rc || !w->count) /* failed, or nothing to write */
            return rc;
    }
    /* First make room in the memtable; a flush request (rep == NULL) stops there. */
    rc = make_room(db, w->rep == NULL);
    if (rc || w->rep == NULL)
        return rc;
    size_t bytes = 0;
    for (writer *x = db->queue_head; x && g->n < GROUP_MAX_WRITERS; x = x->next) {
        if (!x->rep)
            break; /* a flush request leads its own turn */
        if (g->n > 0 && bytes + x->len > GROUP_MAX_BYTES)
            break;
        g->w[g->n] = x;
        g->recs[g->n].lsn = db->last_assigned + 1;
        g->recs[g->n].lsns = x->count;
        g->recs[g->n].payload = x->rep;
        g->recs[g->n].len = x->len;
        db->last_assigned += x->count;
        db->queued_lsns -= x->count;
        bytes += x->len;
        g->n++;
    }
    return PL_OK;
}

/* Is the group's append to be synced: under every_write, when a writer of it asked, or when it brings
 * the records not yet synced to the count (every_n, hybrid)?  REQUIRES: mu held. */
static int group_needs_sync(const pl_db *db, const write_group *g)
{
    if (db->opt.sync_mode == PL_SYNC_EVERY_WRITE || sync_count_due(db, (uint64_t)g->n))
        return 1;
    for (int i = 0; i < g->n; i++)
        if (g->w[i]->sync)
            return 1;
    return 0;
}

/* Write the group: a new WAL when the window cannot take its records, one append, one sync when the
 * strategy or a writer asks for it, then the batches into the memtable.  A failed WAL switch, append or
 * sync, or a memtable out of memory, becomes the database's sticky error.  Returns the group's status.
 * REQUIRES: mu held (released during the I/O), the caller leads the queue, g->n > 0. */
static int commit_group(pl_db *db, write_group *g)
{
    int rc = PL_OK;
    memtable *mem = db->mem;
    wal *log = db->log;
    size_t need = wal_append_overhead(log);
    for (int i = 0; i < g->n; i++)
        need += wal_record_size(log, g->recs[i].len);
    if (need > wal_room(log)) {
        /* The window is full: switch to a new WAL. */
        take_sync_mu(db);
        rc = new_wal(db, need);
        if (rc)
            set_bg_error(db);
        pthread_mutex_unlock(&db->sync_mu);
        log = db->log;
    }
    g->log = log;
    g->need_sync = group_needs_sync(db, g); /* (after a switch: new_wal synced the old WAL) */
    pthread_mutex_unlock(&db->mu);
    env_test_hook("write_group_unlocked");

    if (!rc) {
        rc = wal_append(log, g->recs, g->n);
        atomic_fetch_add_explicit(&db->st_wal_writes, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&db->st_wal_records, (uint64_t)g->n, memory_order_relaxed);
        atomic_fetch_add_explicit(&db->st_wal_bytes, need, memory_order_relaxed);
    }
    if (!rc && g->need_sync) {
        pthread_mutex_lock(&db->sync_mu);
        rc = wal_sync(log);
        pthread_mutex_unlock(&db->sync_mu);
        atomic_fetch_add_explicit(&db->st_wal_syncs, 1, memory_order_relaxed);
    }
    int wal_failed = rc != PL_OK && rc != PL_READONLY;
    for (int i = 0; i < g->n && !rc; i++)
        rc = apply_batch(mem, g->recs[i].lsn, g->w[i]->rep, g->w[i]->len);

    pthread_mutex_lock(&db->mu);
    if (wal_failed || rc == PL_NOMEM)
        set_bg_error(db);
    return rc;
}

/* The leader's turn ends.  On success the group's writes become visible and the count of records not
 * yet synced moves on.  Every writer of the group leaves the queue with rc, the followers woken to it;
 * on failure nothing of the group becomes visible, and the sticky error stops all writes, so the LSNs
 * it was handed are never reused or followed by others.  With no group taken, w leaves alone and gives
 * back the LSNs it had queued.  Then the next leader is woken.  REQUIRES: mu held, w at the head. */
static void finish_group(pl_db *db, writer *w, write_group *g, int rc)
{
    if (g->n == 0) {
        db->queued_lsns -= w->count;
        queue_pop(db, w);
        return;
    }
    if (!rc) {
        atomic_store_explicit(&db->visible, db->last_assigned, memory_order_release);
        uint64_t ub = 0;
        for (int i = 0; i < g->n; i++)
            ub += g->w[i]->user_bytes;
        atomic_fetch_add_explicit(&db->st_user_bytes, ub, memory_order_relaxed);
        if (g->need_sync && wal_synced(g->log) >= wal_written(g->log)) {
            db->unsynced_records = 0;
        } else {
            if (db->unsynced_records == 0) {
                db->oldest_unsynced_ns = env_now_ns();
                if (db->opt.sync_mode == PL_SYNC_HYBRID)
                    pthread_cond_signal(&db->sync_cv);
            }
            db->unsynced_records += (uint64_t)g->n;
        }
    }
    for (int i = 0; i < g->n; i++) {
        writer *x = g->w[i];
        db->queue_head = x->next;
        if (x != w) {
            x->rc = rc;
            x->done = 1;
            pthread_cond_signal(&x->cv);
        }
    }
    if (!db->queue_head)
        db->queue_tail = NULL;
    wake_head(db);
}

/* flags: PL_WRITE_SYNC, PL_WRITE_NO_WAIT (see pylsm.h).  rep == NULL asks for a memtable switch, or,
 * with prepare, for a batch made while leading. */
static int write_rep_ex(pl_db *db, const char *rep, size_t len, uint64_t user_bytes, int flags,
                        writer_prepare_fn prepare, void *prepare_ctx)
{
    if (db->opt.read_only)
        return read_only_error();
    writer w = {.rep = rep, .len = len, .prepare = prepare, .prepare_ctx = prepare_ctx,
                .count = rep ? batch_rep_count(rep) : 0, .user_bytes = user_bytes,
                .sync = flags & PL_WRITE_SYNC, .rc = PL_OK};
    pthread_cond_init(&w.cv, NULL);
    pthread_mutex_lock(&db->mu);
    int rc = join_queue(db, &w, flags);
    if (!rc && !w.done) { /* w leads the queue */
        write_group g;
        g.n = 0;
        rc = take_group(db, &w, &g);
        if (!rc && g.n > 0)
            rc = commit_group(db, &g);
        finish_group(db, &w, &g, rc);
    }
    pthread_mutex_unlock(&db->mu);
    pthread_cond_destroy(&w.cv);
    return rc;
}

static int write_rep(pl_db *db, const char *rep, size_t len, uint64_t user_bytes, int flags)
{
    return write_rep_ex(db, rep, len, user_bytes, flags, NULL, NULL);
}

/* ---- delete_range: a batch of the deletes of every key in the range, made while leading ---- */

typedef struct {
    const void *start, *stop;
    size_t slen, stlen;
    int has_start, has_stop;
    pl_batch *b;
} range_delete;

static int prepare_range_delete(void *ctx, pl_db *db, writer *w)
{
    range_delete *r = ctx;
    pl_iter *it = NULL;
    int rc = pl_iter_new(db, NULL, &it);
    if (rc)
        return rc;
    pl_iter_set_bounds(it, r->start, r->slen, r->has_start, r->stop, r->stlen, r->has_stop);
    rc = r->has_start ? pl_iter_seek(it, r->start, r->slen) : pl_iter_seek_first(it);
    size_t limit = db->opt.memtable_bytes > (1u << 20) ? db->opt.memtable_bytes : (1u << 20);
    for (; !rc && pl_iter_valid(it); rc = pl_iter_next(it)) {
        const char *k;
        size_t kn;
        pl_iter_key(it, &k, &kn);
        if ((rc = pl_batch_delete(r->b, k, kn)))
            break;
        if (r->b->rep.len > limit) {
            rc = PL_FAIL(PL_INVALID, "delete_range: the range holds more deletes than one write may (%zu bytes, "
                         "more than a memtable's %zu): delete it in parts", r->b->rep.len, limit);
            break;
        }
    }
    if (!rc)
        rc = pl_iter_status(it);
    pl_iter_free(it);
    if (rc)
        return rc;
    w->rep = r->b->rep.data;
    w->len = r->b->rep.len;
    w->count = pl_batch_count(r->b);
    w->user_bytes = r->b->user_bytes;
    return PL_OK;
}

int pl_db_delete_range(pl_db *db, const void *start, size_t slen, int has_start, const void *stop, size_t stlen,
                       int has_stop, int flags, uint64_t *deleted)
{
    *deleted = 0;
    int rc = check_writable(db);
    if (rc)
        return rc;
    range_delete r = {start, stop, slen, stlen, has_start, has_stop, pl_batch_new()};
    if (!r.b)
        return PL_FAIL(PL_NOMEM, "out of memory");
    rc = write_rep_ex(db, NULL, 0, 0, flags & ~PL_WRITE_NO_WAIT, prepare_range_delete, &r);
    if (!rc) {
        *deleted = pl_batch_count(r.b);
        atomic_fetch_add_explicit(&db->st_deletes, *deleted, memory_order_relaxed);
        if (!*deleted && (flags & PL_WRITE_SYNC))
            rc = pl_db_sync(db);
    }
    pl_batch_free(r.b);
    return rc;
}

int pl_db_write(pl_db *db, const pl_batch *b, int flags)
{
    int rc = check_writable(db);
    if (rc)
        return rc;
    if (pl_batch_count(b) == 0)
        return (flags & PL_WRITE_SYNC) ? pl_db_sync(db) : PL_OK;
    rc = write_rep(db, b->rep.data, b->rep.len, b->user_bytes, flags);
    if (!rc) { /* stats()["puts"] and ["deletes"] count every operation, batched or not */
        atomic_fetch_add_explicit(&db->st_puts, pl_batch_count(b) - b->deletes, memory_order_relaxed);
        atomic_fetch_add_explicit(&db->st_deletes, b->deletes, memory_order_relaxed);
    }
    return rc;
}

static int write_one(pl_db *db, int kind, const void *key, size_t klen, const void *val, size_t vlen,
                     int flags)
{
    int rc = check_usable(db);
    if (rc)
        return rc;
    rc = batch_check_sizes(klen, vlen);
    if (rc)
        return rc;
    char small[SMALL_REP];
    size_t cap = BATCH_HEADER + batch_op_size(klen, vlen, kind == KIND_PUT);
    char *rep = cap <= sizeof small ? small : malloc(cap);
    if (!rep)
        return PL_FAIL(PL_NOMEM, "out of memory for a %zu-byte write", cap);
    put_u32(rep, 1);
    char *end = batch_encode_op(rep + BATCH_HEADER, kind, key, klen, val, vlen);
    rc = write_rep(db, rep, (size_t)(end - rep), klen + vlen, flags);
    if (rep != small)
        free(rep);
    if (!rc)
        atomic_fetch_add_explicit(kind == KIND_PUT ? &db->st_puts : &db->st_deletes, 1, memory_order_relaxed);
    return rc;
}

int pl_db_put(pl_db *db, const void *key, size_t klen, const void *val, size_t vlen, int flags)
{
    return write_one(db, KIND_PUT, key, klen, val, vlen, flags);
}

int pl_db_delete(pl_db *db, const void *key, size_t klen, int flags)
{
    return write_one(db, KIND_DELETE, key, klen, NULL, 0, flags);
}

int pl_db_sync(pl_db *db)
{
    int rc = check_writable(db);
    if (rc)
        return rc;
    pthread_mutex_lock(&db->sync_mu);
    pthread_mutex_lock(&db->mu);
    wal *log = db->log;
    rc = db->bg_error ? readonly_error(db) : PL_OK;
    pthread_mutex_unlock(&db->mu);
    if (!rc) {
        rc = wal_sync(log);
        atomic_fetch_add(&db->st_wal_syncs, 1);
    }
    pthread_mutex_lock(&db->mu);
    if (rc && rc != PL_READONLY)
        set_bg_error(db);
    if (!rc && wal_synced(log) >= wal_written(log))
        db->unsynced_records = 0;
    pthread_mutex_unlock(&db->mu);
    pthread_mutex_unlock(&db->sync_mu);
    return rc;
}

/* ---- the background sync thread (TimeBasedBackground, Hybrid) ---- */

static void deadline_after(struct timespec *ts, uint64_t ns)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    uint64_t t = (uint64_t)ts->tv_nsec + ns % 1000000000u;
    ts->tv_sec += (time_t)(ns / 1000000000u + t / 1000000000u);
    ts->tv_nsec = (long)(t % 1000000000u);
}

static void *sync_thread_main(void *arg)
{
    pl_db *db = arg;
    env_thread_name("pylsm-sync");
    uint64_t interval = db->opt.sync_interval_ms * 1000000u;
    pthread_mutex_lock(&db->mu);
    while (!atomic_load(&db->closing)) {
        struct timespec ts;
        if (db->opt.sync_mode == PL_SYNC_TIME_BASED) {
            deadline_after(&ts, interval);
            pthread_cond_timedwait(&db->sync_cv, &db->mu, &ts);
        } else if (db->unsynced_records == 0) {
            pthread_cond_wait(&db->sync_cv, &db->mu);
            continue;
        } else {
            uint64_t now = env_now_ns(), due = db->oldest_unsynced_ns + interval;
            if (now < due) {
                deadline_after(&ts, due - now);
                pthread_cond_timedwait(&db->sync_cv, &db->mu, &ts);
                continue;
            }
        }
        if (atomic_load(&db->closing) || db->unsynced_records == 0 || db->bg_error)
            continue;
        take_sync_mu(db);
        /* mu was let go to take sync_mu: a WAL switch may have failed meanwhile (db->log is then
         * NULL and the database read-only), or a close begun. */
        if (atomic_load(&db->closing) || db->bg_error || !db->log) {
            pthread_mutex_unlock(&db->sync_mu);
            continue;
        }
        wal *log = db->log;
        uint64_t pending = db->unsynced_records;
        pthread_mutex_unlock(&db->mu);
        int rc = pending ? wal_sync(log) : PL_OK;
        pthread_mutex_lock(&db->mu);
        if (pending) {
            atomic_fetch_add(&db->st_wal_syncs, 1);
            if (rc)
                set_bg_error(db);
            else if (wal_synced(log) >= wal_written(log))
                db->unsynced_records = 0;
            else
                db->oldest_unsynced_ns = env_now_ns();
        }
        pthread_mutex_unlock(&db->sync_mu);
    }
    pthread_mutex_unlock(&db->mu);
    return NULL;
}

/* ---- snapshots ---- */

struct pl_snapshot {
    pl_db *db;
    uint64_t lsn;
    pl_snapshot *prev, *next;
    /* A read-only handle's snapshot pins the state it was taken in: pl_db_refresh replaces the
     * state with one that a writer's compaction may have stripped of the versions lsn needs. */
    memtable *mem;
    version *v;
};

int db_snapshot_new(pl_db *db, const pl_snapshot *of, pl_snapshot **out)
{
    int rc = check_usable(db);
    if (rc)
        return rc;
    pl_snapshot *s = calloc(1, sizeof *s);
    if (!s)
        return PL_FAIL(PL_NOMEM, "out of memory");
    s->db = db;
    db_ref(db);
    pthread_mutex_lock(&db->mu);
    s->lsn = of ? of->lsn : atomic_load(&db->visible);
    if (db->opt.read_only) {
        s->mem = of ? of->mem : db->mem;
        s->v = of ? of->v : db->vs.current;
        memtable_ref(s->mem);
        version_ref(s->v);
    }
    s->next = db->snaps;
    if (db->snaps)
        db->snaps->prev = s;
    db->snaps = s;
    pthread_mutex_unlock(&db->mu);
    *out = s;
    return PL_OK;
}

int pl_snapshot_new(pl_db *db, pl_snapshot **out) { return db_snapshot_new(db, NULL, out); }

uint64_t pl_snapshot_lsn(const pl_snapshot *s) { return s->lsn; }

void pl_snapshot_release(pl_snapshot *s)
{
    if (!s)
        return;
    pl_db *db = s->db;
    if (db_forked(db)) {
        free(s); /* in a forked child: db->mu may have been held by a parent thread at the fork */
        return;
    }
    pthread_mutex_lock(&db->mu);
    if (s->prev)
        s->prev->next = s->next;
    else
        db->snaps = s->next;
    if (s->next)
        s->next->prev = s->prev;
    pthread_mutex_unlock(&db->mu);
    if (s->v) {
        memtable_unref(s->mem);
        version_unref(s->v);
    }
    free(s);
    db_unref(db);
}

/* ---- the read path ---- */

void db_view_take(pl_db *db, const pl_snapshot *snap, db_view *rv)
{
    pthread_mutex_lock(&db->mu);
    /* The LSN is read with the references, under mu: a flush or compaction between the two could
     * drop the version this read needs (only snapshots and the visible LSN are kept). */
    rv->lsn = snap ? snap->lsn : atomic_load_explicit(&db->visible, memory_order_acquire);
    rv->mem = db->mem;
    rv->imm = db->imm;
    rv->v = db->vs.current;
    if (snap && snap->v) {
        rv->mem = snap->mem;
        rv->imm = NULL;
        rv->v = snap->v;
    }
    memtable_ref(rv->mem);
    if (rv->imm)
        memtable_ref(rv->imm);
    version_ref(rv->v);
    pthread_mutex_unlock(&db->mu);
}

void db_view_release(db_view *rv)
{
    memtable_unref(rv->mem);
    if (rv->imm)
        memtable_unref(rv->imm);
    version_unref(rv->v);
}

/* The memtables' answer for key: on PL_OK *result is LOOKUP_* (out NULL: the answer without the value);
 * PL_NOMEM. */
static int view_mem_get(const db_view *rv, const void *key, size_t klen, pl_buf *out, int *result)
{
    int rc = memtable_get(rv->mem, key, klen, rv->lsn, out, result);
    if (!rc && *result == LOOKUP_ABSENT && rv->imm)
        rc = memtable_get(rv->imm, key, klen, rv->lsn, out, result);
    return rc;
}

int pl_db_get(pl_db *db, const pl_snapshot *snap, const void *key, size_t klen, pl_buf *out, int flags)
{
    int rc = check_usable(db);
    if (rc)
        return rc;
    env_test_hook("get_start");
    db_view rv;
    db_view_take(db, snap, &rv);
    int r;
    rc = view_mem_get(&rv, key, klen, out, &r);
    if (!rc && r == LOOKUP_ABSENT)
        rc = version_get(rv.v, key, klen, rv.lsn, out, flags, &r);
    db_view_release(&rv);
    if (rc)
        return rc;
    atomic_fetch_add_explicit(&db->st_gets, 1, memory_order_relaxed);
    return r == LOOKUP_FOUND ? PL_OK : PL_NOTFOUND;
}

int pl_db_key_may_exist(pl_db *db, const pl_snapshot *snap, const void *key, size_t klen, int *maybe)
{
    int rc = check_usable(db);
    if (rc)
        return rc;
    db_view rv;
    db_view_take(db, snap, &rv);
    int r;
    rc = view_mem_get(&rv, key, klen, NULL, &r); /* (the answer only: no copy of the value) */
    if (!rc)
        *maybe = r == LOOKUP_FOUND ? 1 : r == LOOKUP_DELETED ? 0 : version_may_contain(rv.v, key, klen, rv.lsn);
    db_view_release(&rv);
    return rc;
}

int pl_db_approximate_size(pl_db *db, const void *start, size_t slen, int has_start, const void *stop,
                           size_t stlen, int has_stop, uint64_t *bytes)
{
    int rc = check_usable(db);
    if (rc)
        return rc;
    db_view rv;
    db_view_take(db, NULL, &rv);
    *bytes = version_approximate_size(rv.v, start, slen, has_start, stop, stlen, has_stop);
    db_view_release(&rv);
    return PL_OK;
}

int pl_db_get_many(pl_db *db, const pl_snapshot *snap, size_t n, const char *const *keys, const size_t *klens,
                   pl_buf *vals, int64_t *lens)
{
    int rc = check_usable(db);
    if (rc)
        return rc;
    env_test_hook("get_start");
    vals->len = 0;
    db_view rv;
    db_view_take(db, snap, &rv);
    pl_buf bufs[VERSION_BATCH] = {{0}};
    table_lookup lk[VERSION_BATCH], *pend[VERSION_BATCH];
    int res[VERSION_BATCH];
    for (size_t base = 0; base < n && !rc; base += VERSION_BATCH) {
        size_t w = n - base < VERSION_BATCH ? n - base : VERSION_BATCH, m = 0;
        for (size_t j = 0; j < w; j++) {
            const char *k = keys[base + j];
            size_t kn = klens[base + j];
            int mrc = view_mem_get(&rv, k, kn, &bufs[j], &res[j]);
            if (mrc) { /* reported below, in key order, as a failed table lookup would be */
                res[j] = LOOKUP_ABSENT;
                lk[j] = (table_lookup){.result = LOOKUP_ABSENT, .rc = mrc};
            } else if (res[j] == LOOKUP_ABSENT) {
                lk[j] = (table_lookup){.ukey = k, .klen = kn, .hash = bloom_hash(k, kn),
                                       .result = LOOKUP_ABSENT, .rc = PL_OK, .out = &bufs[j]};
                pend[m++] = &lk[j];
            }
        }
        if (m)
            version_get_batch(rv.v, rv.lsn, pend, m);
        for (size_t j = 0; j < w && !rc; j++) {
            int r = res[j];
            if (r == LOOKUP_ABSENT) {
                if ((rc = lk[j].rc))
                    break;
                r = lk[j].result;
            }
            if (r != LOOKUP_FOUND) {
                lens[base + j] = -1;
                continue;
            }
            if ((rc = buf_reserve(vals, vals->len + bufs[j].len)))
                break;
            memcpy(vals->data + vals->len, bufs[j].data, bufs[j].len);
            vals->len += bufs[j].len;
            lens[base + j] = (int64_t)bufs[j].len;
        }
    }
    db_view_release(&rv);
    for (size_t j = 0; j < VERSION_BATCH; j++)
        pl_buf_free(&bufs[j]);
    if (!rc)
        atomic_fetch_add_explicit(&db->st_gets, n, memory_order_relaxed);
    return rc;
}

/* ---- flush and compaction: the background threads ---- */

static int retains_wals(const pl_db *db) { return db->opt.wal_retention_bytes || db->opt.wal_retention_seconds; }

/* Delete the WAL files that tables now cover (numbers below `covered`, the log number of the edit
 * just applied), without listing the directory: flush cost must not grow with the number of tables
 * (the seed's item 4).  (Not db->vs.log_number: versions_apply writes that under apply_mu, which an
 * ingest's or a compaction's edit may hold now.) */
static void delete_old_wals(pl_db *db, uint64_t covered)
{
    pthread_mutex_lock(&db->mu);
    size_t k = 0;
    while (k < db->nwals && db->wals[k] < covered)
        k++;
    uint64_t old[64];
    size_t n = k < 64 ? k : 64;
    memcpy(old, db->wals, n * sizeof *old);
    memmove(db->wals, db->wals + n, (db->nwals - n) * sizeof *db->wals);
    db->nwals -= n;
    pthread_mutex_unlock(&db->mu);
    for (size_t i = 0; i < n; i++) {
        if (retains_wals(db)) {
            changes_archive_wal(db->path, old[i]); /* (a failure leaves it for the next open) */
            continue;
        }
        char *p = db_file_name(db->path, old[i], FILE_WAL);
        if (p) {
            env_kill_point("file_delete");
            env_unlink(p);
        }
        free(p);
    }
    if (retains_wals(db) && n)
        changes_trim(db->path, db->opt.wal_retention_bytes, db->opt.wal_retention_seconds);
}

static uint64_t new_file_number(void *ctx)
{
    pl_db *db = ctx;
    pthread_mutex_lock(&db->mu);
    uint64_t n = versions_new_file(&db->vs);
    pthread_mutex_unlock(&db->mu);
    return n;
}

/* The oldest LSN a reader may still read at.  REQUIRES: mu held. */
static uint64_t oldest_snapshot(pl_db *db)
{
    uint64_t oldest = atomic_load(&db->visible);
    for (pl_snapshot *s = db->snaps; s; s = s->next)
        if (s->lsn < oldest)
            oldest = s->lsn;
    return oldest;
}

static void compact_env_init(pl_db *db, compact_env *env)
{
    compaction_env_init(env, db->path, &db->opt, new_file_number, db);
    env->cache = db->cache;
    env->lean_tables = atomic_load_explicit(&db->vs.lean_tables, memory_order_relaxed);
}

/* Write edit e, install the version it makes, wake waiters.  REQUIRES: apply_mu held, mu not held. */
static int apply_edit(pl_db *db, version_edit *e)
{
    pthread_mutex_lock(&db->mu);
    if (db->bg_error) {
        /* An earlier write failed (perhaps part-way through a manifest record): nothing more may
         * be appended after it. */
        int rc = readonly_error(db);
        pthread_mutex_unlock(&db->mu);
        return rc;
    }
    if (!e->has_next_file) {
        e->has_next_file = 1;
        e->next_file = db->vs.next_file;
    }
    pthread_mutex_unlock(&db->mu);
    version *v = NULL;
    int rc = versions_apply(&db->vs, e, &v);
    pthread_mutex_lock(&db->mu);
    if (rc) {
        set_bg_error(db);
    } else {
        versions_install(&db->vs, v);
        db->installs++;
        for (int i = 0; i < e->nadded; i++)
            atomic_fetch_add(&db->st_level_written[e->added[i].level], e->added[i].f->m.file_size);
    }
    pthread_cond_broadcast(&db->bg_cv);
    pthread_mutex_unlock(&db->mu);
    return rc;
}

/* Flush db->imm to an L0 table.  REQUIRES: mu held (released while writing). */
static int flush_imm(pl_db *db)
{
    memtable *imm = db->imm;
    version_edit e;
    edit_init(&e);
    e.has_log_number = e.has_last_lsn = 1;
    e.log_number = db->imm_log_number;
    e.last_lsn = db->imm_last_lsn;
    compact_env env;
    compact_env_init(db, &env);
    env.target_file_bytes = UINT64_MAX;
    env.oldest_snapshot = oldest_snapshot(db);
    pthread_mutex_unlock(&db->mu);

    pthread_mutex_lock(&db->apply_mu);
    iter *input;
    int rc = memtable_iter(imm, &input);
    if (!rc)
        rc = compaction_write(input, NULL, 0, &env, &e);
    if (!rc)
        rc = apply_edit(db, &e);
    pthread_mutex_unlock(&db->apply_mu);
    uint64_t covered = e.log_number; /* what the manifest now says tables cover */
    edit_free(&e);
    atomic_fetch_add(&db->st_table_bytes, env.bytes_written);

    pthread_mutex_lock(&db->mu);
    if (rc) {
        set_bg_error(db);
    } else {
        db->imm = NULL;
        memtable_unref(imm);
        db->flushes++;
    }
    pthread_cond_broadcast(&db->bg_cv);
    if (!rc) {
        pthread_mutex_unlock(&db->mu);
        delete_old_wals(db, covered);
        pthread_mutex_lock(&db->mu);
    }
    return rc;
}

/* Run compaction c (picked from v).  REQUIRES: compact_mu held, mu not held. */
static int run_compaction(pl_db *db, compaction *c, version *v, int report_progress)
{
    env_test_hook("compaction_run");
    compact_env env;
    compact_env_init(db, &env);
    env.report_progress = report_progress;
    env.subcompactions = 1;
    pthread_mutex_lock(&db->mu);
    env.oldest_snapshot = oldest_snapshot(db);
    pthread_mutex_unlock(&db->mu);
    version_edit e;
    edit_init(&e);
    int rc = compaction_run(c, v, &env, &e);
    if (!rc) {
        pthread_mutex_lock(&db->apply_mu);
        rc = apply_edit(db, &e);
        pthread_mutex_unlock(&db->apply_mu);
    }
    edit_free(&e);
    atomic_fetch_add(&db->st_table_bytes, env.bytes_written);
    pthread_mutex_lock(&db->mu);
    if (rc)
        set_bg_error(db);
    else
        db->compactions++;
    db->subcompactions += env.splits;
    pthread_mutex_unlock(&db->mu);
    return rc;
}

/* One background compaction if one is due.  REQUIRES: mu held (released while working).
 * Returns 1 if it did work. */
static int maybe_compact(pl_db *db)
{
    if (!db->opt.background_compaction || db->bg_error)
        return 0;
    pthread_mutex_unlock(&db->mu);
    compact_env env;
    compact_env_init(db, &env);
    compaction c;
    int did = 0;
    /* Pick under compact_mu, from the version current then: a manual compaction may run meanwhile, and
     * no old version is held while waiting for it (it would pin obsolete files on disk). */
    pthread_mutex_lock(&db->compact_mu);
    pthread_mutex_lock(&db->mu);
    version *v = db->vs.current;
    version_ref(v);
    pthread_mutex_unlock(&db->mu);
    if (compaction_pick(v, &env, &c)) {
        run_compaction(db, &c, v, 0);
        compaction_free(&c);
        did = 1;
    }
    /* Drop v before another compaction may start: held past compact_mu, it would pin the files that
     * compaction makes obsolete, and they would outlive a db.compact() that has returned. */
    version_unref(v);
    pthread_mutex_unlock(&db->compact_mu);
    pthread_mutex_lock(&db->mu);
    return did;
}

/* The flush thread: each full memtable to an L0 table, as soon as it is full (a compaction running
 * meanwhile in the other thread waits only for the flush's short manifest edit, under apply_mu). */
static void *flush_main(void *arg)
{
    pl_db *db = arg;
    env_thread_name("pylsm-flush");
    pthread_mutex_lock(&db->mu);
    while (!atomic_load(&db->closing)) {
        if (db->imm && !db->bg_error)
            flush_imm(db);
        else
            pthread_cond_wait(&db->bg_cv, &db->mu);
    }
    pthread_mutex_unlock(&db->mu);
    return NULL;
}

/* The compaction thread: one compaction after another while one is due. */
static void *compact_main(void *arg)
{
    pl_db *db = arg;
    env_thread_name("pylsm-compact");
    pthread_mutex_lock(&db->mu);
    while (!atomic_load(&db->closing)) {
        uint64_t seen = db->installs;
        if (maybe_compact(db))
            continue;
        /* mu was let go while it looked: a flush installed meanwhile may have made work. */
        if (!atomic_load(&db->closing) && db->installs == seen)
            pthread_cond_wait(&db->bg_cv, &db->mu);
    }
    pthread_mutex_unlock(&db->mu);
    return NULL;
}

/* Start the flush and compaction threads. */
static int start_bg_threads(pl_db *db)
{
    if (pthread_create(&db->flush_thread, NULL, flush_main, db) != 0)
        return PL_FAIL(PL_NOMEM, "cannot start the flush thread");
    db->flush_started = 1;
    if (pthread_create(&db->compact_thread, NULL, compact_main, db) != 0)
        return PL_FAIL(PL_NOMEM, "cannot start the compaction thread");
    db->compact_started = 1;
    return PL_OK;
}

/* Wait for the flush and compaction threads to end.  REQUIRES: closing set and bg_cv broadcast. */
static void join_bg_threads(pl_db *db)
{
    if (db->flush_started)
        pthread_join(db->flush_thread, NULL);
    if (db->compact_started)
        pthread_join(db->compact_thread, NULL);
    db->flush_started = db->compact_started = 0;
}

int pl_db_compact(pl_db *db, const void *start, size_t slen, int has_start, const void *stop,
                  size_t elen, int has_stop)
{
    int rc = pl_db_flush(db);
    if (rc)
        return rc;
    pthread_mutex_lock(&db->compact_mu);
    /* One merge of the range, from every level down to the deepest level that holds anything (level 1
     * when only level 0 does): the data is written once, not once per level it passes. */
    pthread_mutex_lock(&db->mu);
    version *v = db->vs.current;
    version_ref(v);
    pthread_mutex_unlock(&db->mu);
    int out = 1;
    for (int l = 2; l < NUM_LEVELS; l++)
        if (v->n[l] > 0)
            out = l;
    compaction c;
    int picked = compaction_pick_deep(v, out, has_start ? start : NULL, slen, has_stop ? stop : NULL, elen, &c);
    if (picked < 0)
        rc = PL_NOMEM; /* recorded by the pick */
    if (picked > 0) {
        uint64_t in = 0;
        for (int k = 0; k < 2; k++)
            for (int j = 0; j < c.n[k]; j++)
                in += c.inputs[k][j]->m.file_size;
        progress_expect(in); /* reported as each output table is written */
        rc = run_compaction(db, &c, v, 1);
        compaction_free(&c);
        if (!rc)
            progress_finish();
    }
    version_unref(v);
    if (!rc && atomic_load(&db->closing))
        rc = PL_FAIL(PL_CLOSED, "the database is closed");
    pthread_mutex_unlock(&db->compact_mu);
    return rc;
}

int pl_db_flush(pl_db *db)
{
    int rc = check_usable(db);
    if (rc)
        return rc;
    rc = write_rep(db, NULL, 0, 0, 0); /* switch memtables through the writer queue */
    if (rc)
        return rc;
    pthread_mutex_lock(&db->mu);
    while (db->imm && !db->bg_error && !atomic_load(&db->closing))
        pthread_cond_wait(&db->bg_cv, &db->mu);
    rc = db->bg_error ? readonly_error(db) : db->imm ? PL_FAIL(PL_CLOSED, "the database is closed") : PL_OK;
    pthread_mutex_unlock(&db->mu);
    return rc;
}

/* ---- bulk ingest: the database's side (ingest.c writes the tables and places them) ---- */

uint64_t ingest_lsn_gap = UINT64_C(1) << 24;

/* The engine constants a test may set (pl_test_set, env.c): the manifest's roll size, the ingest's LSN
 * gap, the read-around limit, and the samples a zstd table trains its dictionary from. */
const test_knob db_test_knobs[] = {
    {"manifest_roll_bytes", &manifest_roll_bytes, 0},
    {"ingest_lsn_gap", &ingest_lsn_gap, 1},
    {"read_around_bytes", &read_around_bytes, 0},
    {"table_dict_sample_bytes", &table_dict_sample_bytes, 1},
    {"subcompaction_min_bytes", &subcompaction_min_bytes, 0},
    {NULL, NULL, 0},
};

void db_table_env(pl_db *db, compact_env *env) { compact_env_init(db, env); }

int db_ingest_begin(pl_db *db, uint64_t *lsn)
{
    int rc = check_writable(db);
    if (rc)
        return rc;
    pthread_mutex_lock(&db->mu);
    uint64_t from = db->last_assigned + db->queued_lsns;
    if (db->bg_error)
        rc = readonly_error(db);
    else if (db->ingest_lsn)
        rc = PL_FAIL(PL_BUSY, "another ingest() is running on this database; one at a time");
    else if (from >= LSN_MAX - ingest_lsn_gap)
        rc = PL_FAIL(PL_INVALID, "no LSNs left for an ingest (last %" PRIu64 ")", from);
    if (!rc) {
        *lsn = db->ingest_lsn = from + ingest_lsn_gap;
        db->ingest_thread = pthread_self();
    }
    pthread_mutex_unlock(&db->mu);
    return rc;
}

void db_ingest_end(pl_db *db, uint64_t lsn)
{
    pthread_mutex_lock(&db->mu);
    if (db->ingest_lsn == lsn)
        db->ingest_lsn = 0;
    pthread_cond_broadcast(&db->bg_cv); /* writers waiting for it */
    pthread_mutex_unlock(&db->mu);
}

int db_ingest_commit(pl_db *db, version_edit *e, uint64_t lsn, db_place_fn place, void *ctx, uint64_t entries,
                     uint64_t user_bytes, uint64_t table_bytes, int *applied)
{
    *applied = 0;
    int rc = check_usable(db);
    if (rc)
        return rc;
    /* Lead the writer queue (writers wait, reads go on), so that no LSN is handed out meanwhile. */
    writer w;
    pthread_mutex_lock(&db->mu);
    queue_lead(db, &w);
    /* Every LSN before the ingest's must be in tables before the manifest can say the ingest's is the
     * last one there (recovery replays the WALs from the LSN after it), so the memtable is flushed
     * first, by the flush thread as always. */
    rc = make_room(db, 1);
    while (!rc && db->imm) {
        if (db->bg_error)
            rc = readonly_error(db);
        else if (atomic_load(&db->closing))
            rc = PL_FAIL(PL_CLOSED, "the database is closed");
        else
            pthread_cond_wait(&db->bg_cv, &db->mu);
    }
    if (!rc && lsn <= db->last_assigned) /* wait_for_ingest keeps writers below it */
        rc = PL_FAIL(PL_MISUSE, "ingest: LSN %" PRIu64 " already taken", lsn);
    pthread_mutex_unlock(&db->mu);
    if (!rc) {
        /* No compaction runs while the place is chosen and the edit applied: its output could land
         * in the level chosen, over the ingested range.  No flush either: the memtable is empty and
         * this thread leads the queue. */
        env_test_hook("ingest_flushed");
        pthread_mutex_lock(&db->compact_mu);
        pthread_mutex_lock(&db->apply_mu);
        pthread_mutex_lock(&db->mu);
        version *v = db->vs.current;
        version_ref(v);
        pthread_mutex_unlock(&db->mu);
        rc = place(ctx, v, e);
        version_unref(v);
        if (!rc) {
            e->has_last_lsn = 1;
            e->last_lsn = lsn;
            env_kill_point("ingest_commit");
            *applied = 1;
            rc = apply_edit(db, e);
        }
        pthread_mutex_unlock(&db->apply_mu);
        pthread_mutex_unlock(&db->compact_mu);
    }
    pthread_mutex_lock(&db->mu);
    if (!rc) {
        db->last_assigned = lsn;
        atomic_store_explicit(&db->visible, lsn, memory_order_release);
        atomic_fetch_add(&db->st_ingested, entries);
        atomic_fetch_add(&db->st_user_bytes, user_bytes);
        atomic_fetch_add(&db->st_table_bytes, table_bytes);
        if (db->ingest_lsn == lsn)
            db->ingest_lsn = 0;
    }
    queue_pop(db, &w);
    pthread_cond_broadcast(&db->bg_cv); /* the compaction thread: L0 may have grown */
    pthread_mutex_unlock(&db->mu);
    pthread_cond_destroy(&w.cv);
    return rc;
}

/* ---- the changes feed ---- */

int pl_changes_new(pl_db *db, uint64_t since, pl_changes **out)
{
    *out = NULL;
    int rc = check_usable(db);
    if (rc)
        return rc;
    uint64_t visible = atomic_load_explicit(&db->visible, memory_order_acquire);
    /* A writer yields what it acknowledged; a reader beside a writer whatever the writer wrote. */
    return changes_open_dir(db->path, since, db->opt.read_only ? UINT64_MAX : visible, visible, out);
}

/* ---- checkpoints: the state to copy ---- */

const char *db_dir(const pl_db *db) { return db->path; }

void db_capture_release(db_state *c)
{
    if (c->v)
        version_unref(c->v);
    for (size_t i = 0; i < c->nwals; i++)
        env_close(c->wals[i].fd);
    free(c->wals);
    memset(c, 0, sizeof *c);
}

/* REQUIRES: mu held, the caller leads the writer queue (no record is being appended). */
static int capture_locked(pl_db *db, db_state *c)
{
    if (db->bg_error)
        return readonly_error(db);
    /* The installed version's own bookkeeping: versions_apply may already have moved db->vs's
     * fields on for an edit not yet installed.  The WALs the version does not cover are all still
     * listed: delete_old_wals runs only after the edit that covers them is installed. */
    version *v = db->vs.current;
    c->log_number = v->log_number;
    c->next_file = db->vs.next_file;
    c->last_lsn = v->last_lsn;
    c->lsn = atomic_load(&db->visible);
    size_t n = 0;
    for (size_t i = 0; i < db->nwals; i++)
        n += db->wals[i] >= c->log_number;
    if (!(c->wals = calloc(n + 1, sizeof *c->wals)))
        return PL_FAIL(PL_NOMEM, "out of memory");
    int rc = PL_OK;
    for (size_t i = 0; i < db->nwals && !rc; i++) {
        uint64_t number = db->wals[i];
        if (number < c->log_number)
            continue; /* covered by tables, about to be deleted */
        char *p = db_file_name(db->path, number, FILE_WAL);
        int fd = -1;
        rc = p ? env_open(p, O_RDONLY, &fd) : PL_FAIL(PL_NOMEM, "out of memory");
        uint64_t len = 0;
        if (!rc) {
            if (db->log && number == db->log_number)
                len = wal_written(db->log); /* the live WAL: its records so far, not its zeroed tail */
            else
                rc = env_file_size(fd, &len, p); /* closed: cut to its records */
        }
        free(p);
        if (fd >= 0)
            c->wals[c->nwals++] = (db_state_wal){number, len, fd};
    }
    if (!rc) {
        c->v = db->vs.current;
        version_ref(c->v);
    }
    return rc;
}

int db_capture(pl_db *db, db_state *c)
{
    memset(c, 0, sizeof *c);
    int rc = check_writable(db);
    if (rc)
        return rc == PL_RDONLY_OPEN
                   ? PL_FAIL(PL_RDONLY_OPEN, "a checkpoint needs the database open for writing (this handle is "
                                             "read_only): open it so, or copy the directory while it is closed")
                   : rc;
    /* Lead the writer queue: no leader is between its WAL append and its publish, so the WAL holds
     * exactly the writes acknowledged so far; a flush or compaction may go on (its edit installs a new
     * version under mu, atomically with respect to this capture). */
    writer w;
    pthread_mutex_lock(&db->mu);
    queue_lead(db, &w);
    rc = capture_locked(db, c);
    queue_pop(db, &w);
    pthread_mutex_unlock(&db->mu);
    pthread_cond_destroy(&w.cv);
    if (rc)
        db_capture_release(c);
    return rc;
}

/* ---- open, recovery, close ---- */

typedef struct {
    pl_db *db;
} replay_ctx;

static int replay_record(void *ctx, uint64_t lsn, const char *payload, size_t len)
{
    replay_ctx *r = ctx;
    int rc = apply_batch(r->db->mem, lsn, payload, len);
    if (!rc) {
        uint64_t last = lsn + batch_rep_count(payload) - 1;
        if (last > r->db->last_assigned)
            r->db->last_assigned = last;
        r->db->recovered_records++;
    }
    return rc;
}

/* Replay every WAL into the memtable.  Writes nothing: a torn tail of the newest WAL is reported in
 * *torn_path (malloc'd) and *torn_end for the caller to cut once the open can no longer fail on
 * what it read. */
static int recover(pl_db *db, char **torn_path, uint64_t *torn_end)
{
    file_list l = {0};
    int rc = list_wals(db->path, &l);
    if (rc)
        goto out;
    file_list_sort(&l);
    if (db->vs.next_file <= l.max_number)
        db->vs.next_file = l.max_number + 1;
    /* Records must follow on from the last LSN in tables; older ones are already in tables. */
    db->last_assigned = db->vs.last_lsn;
    wal_replay_result res = {0};
    res.next_lsn = db->vs.last_lsn + 1;
    replay_ctx ctx = {db};
    size_t first = 0;
    while (first < l.n && l.numbers[first] < db->vs.log_number)
        first++; /* covered by tables; deleted below */
    /* Size the memtable's index for what the WALs hold, at one key per 128 bytes (a put of a
     * 16-byte key and a 100-byte value takes 139; smaller records just grow the index as usual). */
    uint64_t wal_bytes = 0;
    for (size_t i = first; i < l.n; i++) {
        char *p = db_file_name(db->path, l.numbers[i], FILE_WAL);
        struct stat st;
        if (p && stat(p, &st) == 0)
            wal_bytes += (uint64_t)st.st_size;
        free(p);
    }
    if (wal_bytes / 128 < db->opt.memtable_bytes / 16)
        memtable_reserve(db->mem, (size_t)(wal_bytes / 128));
    for (size_t i = first; i < l.n; i++) {
        char *path = db_file_name(db->path, l.numbers[i], FILE_WAL);
        if (!path) {
            rc = PL_FAIL(PL_NOMEM, "out of memory");
            goto out;
        }
        int is_last = i + 1 == l.n;
        rc = wal_replay(path, db->opt.wal_recovery, is_last, db->vs.last_lsn + 1, batch_record_lsns, replay_record,
                        &ctx, &res);
        if (!rc && res.records > 0)
            db->recovered_wals++;
        if (!rc && !array_reserve(&db->wals, &db->capwals, db->nwals + 1, sizeof *db->wals))
            db->wals[db->nwals++] = l.numbers[i];
        if (!rc && db->opt.wal_recovery == PL_RECOVER_SALVAGE)
            db->wal_dropped_bytes += res.dropped_bytes;
        if (!rc && res.torn_tail && is_last) {
            *torn_path = path; /* cut by the caller: this WAL, no longer the last, must read clean */
            *torn_end = res.valid_end;
            path = NULL;
        }
        free(path);
        if (rc)
            goto out;
    }
    atomic_store(&db->visible, db->last_assigned);
out:
    file_list_free(&l);
    return rc;
}

/* Remove what a crash left behind: WALs covered by tables, tables no version names (an unfinished
 * flush or compaction), manifests CURRENT does not name, a CURRENT.tmp. */
static int remove_obsolete(void *ctx, const char *name)
{
    pl_db *db = ctx;
    uint64_t n;
    enum file_type type;
    int stale = 0;
    if (!parse_file_name(name, &n, &type))
        return PL_OK;
    if (type == FILE_WAL) {
        stale = n < db->vs.log_number;
        if (stale && retains_wals(db)) {
            changes_archive_wal(db->path, n); /* history, kept (a failure: removed next time) */
            return PL_OK;
        }
    } else if (type == FILE_TABLE) {
        stale = 1;
        for (int l = 0; l < NUM_LEVELS && stale; l++)
            for (int i = 0; i < db->vs.current->n[l] && stale; i++)
                stale = db->vs.current->files[l][i]->number != n;
    } else if (type == FILE_MANIFEST) {
        char cur[FILE_NAME_MAX];
        file_base_name(cur, db->vs.manifest_number, FILE_MANIFEST);
        stale = strcmp(name, cur) != 0;
    } else if (type == FILE_CURRENT_TMP) {
        stale = 1;
    }
    if (stale) {
        char *p = db_path_join(db->path, name);
        if (p)
            env_unlink(p);
        free(p);
    }
    return PL_OK;
}

static int has_database(const char *path)
{
    char *cur = db_file_name(path, 0, FILE_LOCK);
    struct stat st;
    int r = cur && stat(cur, &st) == 0;
    free(cur);
    return r;
}

static void db_free(pl_db *db)
{
    if (db->mem)
        memtable_unref(db->mem);
    if (db->imm)
        memtable_unref(db->imm);
    arena_pool_free(db->pool); /* after the memtables: iterators and snapshots hold the database */
    versions_close(&db->vs);
    cache_free(db->cache);
    free(db->wals);
    pthread_cond_destroy(&db->bg_cv);
    pthread_mutex_destroy(&db->mu);
    pthread_mutex_destroy(&db->sync_mu);
    pthread_mutex_destroy(&db->compact_mu);
    pthread_mutex_destroy(&db->apply_mu);
    pthread_cond_destroy(&db->sync_cv);
    pthread_cond_destroy(&db->close_cv);
    free(db->path);
    free(db);
}

void db_ref(pl_db *db) { atomic_fetch_add(&db->refs, 1); }
void db_unref(pl_db *db)
{
    if (db_forked(db))
        return; /* a forked child's copy: its locks may be held by parent threads that do not exist here */
    if (atomic_fetch_sub(&db->refs, 1) == 1)
        db_free(db);
}

void pl_db_retain(pl_db *db) { db_ref(db); }
void pl_db_release(pl_db *db)
{
    if (db)
        db_unref(db);
}
int pl_db_check(pl_db *db) { return check_usable(db); }

/* A handle with its locks, an empty memtable and the block cache; NULL when out of memory. */
static pl_db *db_alloc(const char *path, const pl_options *opt)
{
    pl_db *db = calloc(1, sizeof *db);
    if (!db || !(db->path = strdup(path))) {
        free(db);
        return NULL;
    }
    db->opt = *opt;
    db->lock_fd = -1;
    db->fork_gen = atomic_load(&fork_generation);
    pthread_mutex_init(&db->mu, NULL);
    pthread_mutex_init(&db->sync_mu, NULL);
    pthread_mutex_init(&db->compact_mu, NULL);
    pthread_mutex_init(&db->apply_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&db->sync_cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&db->close_cv, NULL);
    pthread_cond_init(&db->bg_cv, NULL);
    atomic_init(&db->refs, 1);
    db->vs.manifest_fd = -1;
    /* The pool keeps up to one memtable of blocks: in a steady load the new memtable takes back what
     * the flushed one gave (decisions.md, item 10). */
    db->pool = arena_pool_new(opt->memtable_bytes);
    int rc = db->pool ? memtable_new_in(db->pool, &db->mem) : PL_NOMEM;
    db->cache = cache_new(opt->block_cache_bytes);
    if (rc || !db->cache) {
        db_free(db);
        return NULL;
    }
    /* The first memtable's hash index sized for entries of 128 bytes on average: growing it from 64
     * slots rehashed every key about once (a 1M-pair load spent 55 ms of 300 there).  Its pages are
     * touched only as keys land in them.  Later memtables are sized by the one before (make_room). */
    memtable_reserve(db->mem, (size_t)(opt->memtable_bytes / 128));
    return db;
}

/* ---- read-only handles ---- */

/* Load the directory's state into db->vs and db->mem (fresh) as a reader beside a live writer: the
 * manifest's tables, then every WAL from its log number, then the manifest again.  A file that
 * vanished meanwhile (a compaction's inputs, a flushed WAL, a replaced manifest) or a manifest
 * that changed means the writer moved on part-way through: load again.  Writes nothing. */
static int ro_load(pl_db *db)
{
    for (int attempt = 0;; attempt++) {
        uint64_t num0, size0, num1, size1;
        int rc = versions_probe(db->path, &num0, &size0);
        if (!rc)
            rc = versions_open(&db->vs, db->path, db->cache, 1);
        if (!rc) {
            char *torn = NULL;
            uint64_t end = 0;
            rc = recover(db, &torn, &end); /* a torn tail is where the writer is appending */
            free(torn);
        }
        /* Even after an error: what was read may mix two states (a WAL whose first LSN does not
         * follow on from an older manifest's reads as damage), and a changed manifest says so. */
        int vanished = rc == PL_IOERR && pl_errno() == ENOENT;
        char msg[256];
        snprintf(msg, sizeof msg, "%s", pl_errmsg());
        int err = pl_errno();
        int prc = versions_probe(db->path, &num1, &size1);
        int moved = !prc && (num0 != num1 || size0 != size1);
        if (!rc && prc)
            rc = prc;
        if (!rc && !moved)
            return PL_OK;
        /* A record the writer was copying in when it was read can look damaged with a complete
         * one after it (the read is not atomic against the copy): read again a few times before
         * calling it corruption. */
        int torn_read = rc == PL_CORRUPT && attempt < 5;
        if ((!moved && !vanished && !torn_read) || attempt >= 100) {
            if (!rc)
                return PL_FAIL(PL_BUSY, "%s: the writer kept changing the manifest while it was read", db->path);
            return pl_fail(rc, err, "%s", msg);
        }
        versions_close(&db->vs);
        memtable_unref(db->mem);
        if ((rc = memtable_new_in(db->pool, &db->mem)))
            return rc;
        db->nwals = 0;
        db->recovered_wals = 0;
        db->recovered_records = 0;
        db->wal_dropped_bytes = 0;
        db->last_assigned = 0;
        struct timespec ts = {0, 1000000L * (attempt < 10 ? 1 : 10)};
        nanosleep(&ts, NULL);
    }
}

static void ro_options(pl_options *o)
{
    /* The newest WAL is live: its tail may be a record the writer is copying in. */
    if (o->wal_recovery == PL_RECOVER_ABSOLUTE)
        o->wal_recovery = PL_RECOVER_TOLERATE_TAIL;
    o->background_compaction = 0;
}

int pl_db_refresh(pl_db *db)
{
    int rc = check_usable(db);
    if (rc)
        return rc;
    if (!db->opt.read_only)
        return PL_FAIL(PL_MISUSE, "refresh() is for a database opened with read_only=True");
    /* The new state is loaded beside the old one (readers go on), then swapped in under mu. */
    pl_db *tmp = calloc(1, sizeof *tmp);
    if (!tmp)
        return PL_FAIL(PL_NOMEM, "out of memory");
    tmp->path = db->path;
    tmp->opt = db->opt;
    tmp->cache = db->cache;
    tmp->vs.manifest_fd = -1;
    rc = memtable_new(&tmp->mem);
    if (!rc)
        rc = ro_load(tmp);
    if (!rc) {
        pthread_mutex_lock(&db->mu);
        versions old = db->vs;
        db->vs = tmp->vs;
        tmp->vs = old;
        memtable *m = db->mem;
        db->mem = tmp->mem;
        tmp->mem = m;
        db->last_assigned = tmp->last_assigned;
        db->recovered_records = tmp->recovered_records;
        db->wal_dropped_bytes = tmp->wal_dropped_bytes;
        atomic_store(&db->visible, tmp->last_assigned);
        pthread_mutex_unlock(&db->mu);
    }
    if (tmp->mem)
        memtable_unref(tmp->mem);
    versions_close(&tmp->vs);
    free(tmp->wals);
    free(tmp);
    return rc;
}

static int open_read_only(const char *path, const pl_options *opt, pl_db **out)
{
    if (!env_is_dir(path) || !has_database(path))
        return PL_FAIL(PL_NOTFOUND, "no database at %s (a read-only open creates nothing)", path);
    pl_db *db = db_alloc(path, opt);
    if (!db)
        return PL_FAIL(PL_NOMEM, "out of memory");
    ro_options(&db->opt);
    int rc = ro_load(db);
    if (rc) {
        db_free(db);
        return rc;
    }
    atomic_store(&db->visible, db->last_assigned);
    *out = db;
    return PL_OK;
}

int pl_db_open(const char *path, const pl_options *opt, pl_db **out)
{
    pthread_once(&atfork_once, atfork_init);
    pl_options defaults;
    if (!opt) {
        pl_options_init(&defaults);
        opt = &defaults;
    }
    int rc = check_options(opt);
    if (rc)
        return rc;
    if (!path || !*path)
        return PL_FAIL(PL_INVALID, "empty database path");
    if (opt->read_only)
        return open_read_only(path, opt, out);
    int exists = env_is_dir(path) && has_database(path);
    if (exists && opt->error_if_exists)
        return PL_FAIL(PL_EXISTS, "a database already exists at %s", path);
    if (!exists && !opt->create_if_missing)
        return PL_FAIL(PL_NOTFOUND, "no database at %s (create_if_missing is off)", path);
    if (!env_is_dir(path) && (rc = env_mkdir(path)))
        return rc;

    pl_db *db = db_alloc(path, opt);
    if (!db)
        return PL_FAIL(PL_NOMEM, "out of memory");

    char *lock = db_file_name(path, 0, FILE_LOCK);
    rc = lock ? env_lock(lock, &db->lock_fd) : PL_FAIL(PL_NOMEM, "out of memory");
    free(lock);
    if (rc)
        goto fail;
    /* Read everything first (manifest, tables, WALs): an open that fails on what it reads leaves
     * the directory as it found it.  Then the new manifest, numbered past every file recovery saw. */
    rc = versions_open(&db->vs, path, db->cache, 1);
    if (rc)
        goto fail;
    char *torn_path = NULL;
    uint64_t torn_end = 0;
    rc = recover(db, &torn_path, &torn_end);
    if (!rc)
        rc = versions_start(&db->vs);
    if (!rc && torn_path) {
        int fd;
        rc = env_open(torn_path, O_RDWR, &fd);
        if (!rc) {
            rc = env_truncate(fd, torn_end, torn_path);
            if (!rc)
                rc = env_sync(fd, torn_end, torn_path);
            env_close(fd);
        }
    }
    free(torn_path);
    if (rc)
        goto fail;
    pthread_mutex_lock(&db->sync_mu);
    pthread_mutex_lock(&db->mu);
    if (memtable_count(db->mem) > 0 &&
        (db->wal_dropped_bytes > 0 || memtable_usage(db->mem) >= opt->memtable_bytes ||
         db->recovered_wals > RECOVERED_WALS_MAX)) {
        /* Salvaged, oversized, or spread over many WALs (open after open with a few writes each):
         * move what was recovered into a table so the old WALs go. */
        memtable *fresh;
        rc = memtable_new_in(db->pool, &fresh);
        if (!rc)
            rc = switch_memtable(db, fresh);
        if (!rc)
            rc = flush_imm(db);
    } else {
        rc = new_wal(db, 0);
    }
    pthread_mutex_unlock(&db->mu);
    pthread_mutex_unlock(&db->sync_mu);
    if (rc)
        goto fail;
    env_list_dir(path, remove_obsolete, db);
    if (retains_wals(db))
        changes_trim(path, db->opt.wal_retention_bytes, db->opt.wal_retention_seconds);
    /* Tables past the read-around limit fault page by page: map what the page cache holds (warm.h).
     * Below it the kernel's read-around warms the mapping in a few faults. */
    if (atomic_load(&db->vs.lean_tables))
        warm_start(db->vs.current, &db->warmer);
    if ((rc = start_bg_threads(db)))
        goto fail;
    if (opt->sync_mode == PL_SYNC_TIME_BASED || opt->sync_mode == PL_SYNC_HYBRID) {
        if (pthread_create(&db->sync_thread, NULL, sync_thread_main, db) != 0) {
            rc = PL_FAIL(PL_NOMEM, "cannot start the sync thread");
            goto fail;
        }
        db->sync_thread_started = 1;
    }
    *out = db;
    return PL_OK;
fail:
    warm_stop(db->warmer);
    db->warmer = NULL;
    if (db->flush_started) {
        atomic_store(&db->closing, 1);
        pthread_mutex_lock(&db->mu);
        pthread_cond_broadcast(&db->bg_cv);
        pthread_mutex_unlock(&db->mu);
        join_bg_threads(db);
    }
    if (db->log)
        wal_close(db->log, 0);
    if (db->lock_fd >= 0)
        env_unlock(db->lock_fd);
    db_free(db);
    return rc;
}

int pl_db_enter(pl_db *db)
{
    if (db_forked(db))
        return check_usable(db);
    atomic_fetch_add(&db->active, 1);
    if (atomic_load(&db->closing)) {
        pl_db_leave(db);
        return PL_FAIL(PL_CLOSED, "the database is closed");
    }
    return PL_OK;
}

void pl_db_leave(pl_db *db)
{
    if (atomic_fetch_sub(&db->active, 1) == 1 && atomic_load(&db->closing)) {
        pthread_mutex_lock(&db->mu);
        pthread_cond_broadcast(&db->close_cv);
        pthread_mutex_unlock(&db->mu);
    }
}

int pl_db_close(pl_db *db)
{
    if (!db)
        return PL_OK;
    if (db_forked(db))
        return PL_OK; /* a forked child's copy: its threads and files belong to the parent */
    pthread_mutex_lock(&db->mu);
    if (db->closed) {
        pthread_mutex_unlock(&db->mu);
        return PL_OK;
    }
    db->closed = 1;
    atomic_store(&db->closing, 1);
    pthread_cond_broadcast(&db->sync_cv);
    pthread_cond_broadcast(&db->bg_cv);
    while (atomic_load(&db->active) > 0)
        pthread_cond_wait(&db->close_cv, &db->mu);
    warm *w = db->warmer;
    db->warmer = NULL;
    pthread_mutex_unlock(&db->mu);
    warm_stop(w);
    if (db->sync_thread_started)
        pthread_join(db->sync_thread, NULL);
    join_bg_threads(db);

    int rc = PL_OK;
    if (db->log) {
        /* A clean close leaves every acknowledged write durable, whatever the strategy; a WAL that
         * never got a record goes, so reopening does not pile up empty logs. */
        int empty = wal_written(db->log) <= WAL_FILE_HEADER;
        char *path = empty ? strdup(wal_path(db->log)) : NULL;
        rc = wal_close(db->log, !db->bg_error);
        db->log = NULL;
        if (!rc && path)
            env_unlink(path);
        free(path);
    }
    versions_close(&db->vs); /* the manifest's fd; readers still holding tables keep their own refs */
    memtable_unref(db->mem);         /* (iterators hold their own references too) */
    db->mem = NULL;
    if (db->imm)
        memtable_unref(db->imm);
    db->imm = NULL;
    if (db->lock_fd >= 0) {
        env_unlock(db->lock_fd);
        db->lock_fd = -1;
    }
    db_unref(db);
    return rc;
}

/* ---- statistics ---- */

int pl_db_stats(pl_db *db, pl_stat_fn fn, pl_level_fn fn_level, void *ctx)
{
    int rc = check_usable(db);
    if (rc)
        return rc;
    pthread_mutex_lock(&db->mu);
    uint64_t mem_bytes = memtable_usage(db->mem);
    uint64_t wal_bytes = db->log ? wal_written(db->log) : 0;
    uint64_t wal_synced_bytes = db->log ? wal_synced(db->log) : 0;
    uint64_t dropped = db->wal_dropped_bytes;
    uint64_t unsynced = db->unsynced_records;
    uint64_t flushes = db->flushes, compactions = db->compactions, stalls = db->stalls;
    uint64_t subcompactions = db->subcompactions;
    uint64_t mem_entries = memtable_count(db->mem);
    if (db->imm) {
        mem_bytes += memtable_usage(db->imm);
        mem_entries += memtable_count(db->imm);
    }
    version *v = db->vs.current;
    version_ref(v);
    uint64_t warmed = warm_bytes(db->warmer);
    int warming = warm_running(db->warmer);
    pthread_mutex_unlock(&db->mu);
    compact_env cenv;
    compact_env_init(db, &cenv);
    uint64_t user = atomic_load(&db->st_user_bytes);
    uint64_t disk = atomic_load(&db->st_wal_bytes) + atomic_load(&db->st_table_bytes);
    uint64_t tables = 0, table_bytes = 0, table_entries = 0, table_heap = 0;
    for (int l = 0; l < NUM_LEVELS; l++) {
        tables += (uint64_t)v->n[l];
        table_bytes += version_level_bytes(v, l);
        for (int i = 0; i < v->n[l]; i++) {
            table_entries += v->files[l][i]->m.entries;
            table_heap += table_heap_bytes(v->files[l][i]->t);
        }
        if (fn_level)
            fn_level(ctx, l, (uint64_t)v->n[l], version_level_bytes(v, l), atomic_load(&db->st_level_written[l]));
    }
    version_unref(v);
    fn(ctx, "lsn", atomic_load(&db->visible));
    fn(ctx, "memtable_bytes", mem_bytes);
    fn(ctx, "wal_bytes", wal_bytes);
    fn(ctx, "wal_synced_bytes", wal_synced_bytes);
    fn(ctx, "wal_writes", atomic_load(&db->st_wal_writes));
    fn(ctx, "wal_syncs", atomic_load(&db->st_wal_syncs));
    fn(ctx, "wal_records", atomic_load(&db->st_wal_records));
    fn(ctx, "wal_unsynced_records", unsynced);
    fn(ctx, "wal_dropped_bytes", dropped);
    fn(ctx, "user_bytes_written", user);
    fn(ctx, "disk_bytes_written", disk);
    fn(ctx, "sstables", tables);
    fn(ctx, "live_bytes", table_bytes + wal_bytes);
    fn(ctx, "flushes", flushes);
    fn(ctx, "write_amplification_x1000", user ? disk * 1000 / user : 0);
    fn(ctx, "compactions", compactions);
    fn(ctx, "subcompactions", subcompactions);
    fn(ctx, "write_stalls", stalls);
    fn(ctx, "puts", atomic_load(&db->st_puts));
    fn(ctx, "deletes", atomic_load(&db->st_deletes));
    fn(ctx, "gets", atomic_load(&db->st_gets));
    fn(ctx, "ingested", atomic_load(&db->st_ingested));
    fn(ctx, "recovered_records", db->recovered_records);
    /* Entries, not keys: overwritten and deleted keys count until compaction drops them. */
    fn(ctx, "memtable_entries", mem_entries);
    fn(ctx, "table_entries", table_entries);
    fn(ctx, "table_heap_bytes", table_heap);
    fn(ctx, "warmed_bytes", warmed);
    fn(ctx, "warming", (uint64_t)warming);
    fn(ctx, "level0_compaction_trigger", L0_COMPACT_TRIGGER);
    fn(ctx, "level1_target_bytes", cenv.level_base_bytes);
    fn(ctx, "level_multiplier", LEVEL_MULTIPLIER);
    return PL_OK;
}
