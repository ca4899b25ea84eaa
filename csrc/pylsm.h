/*
 * pylsm.h -- the only public header of the pylsm engine.
 *
 * An embedded, crash-safe LSM-tree key-value store.  Plain C11 + POSIX threads; nothing here knows
 * about Python.  Every handle is opaque.  Every fallible function returns a PL_* code; results come
 * back through out-parameters.  On failure the calling thread's pl_errmsg() / pl_errno() describe it.
 *
 * Thread safety: one pl_db may be used by any number of threads at once.  A pl_iter is used by one
 * thread at a time (the caller serialises).  pl_batch is not thread safe.
 */
#ifndef PYLSM_H
#define PYLSM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Return codes. */
#define PL_OK         0
#define PL_NOTFOUND   1  /* key absent (not an error) */
#define PL_CORRUPT    2  /* checksum or format violation on disk */
#define PL_IOERR      3  /* a system call failed; pl_errno() holds errno */
#define PL_NOMEM      4  /* allocation failed */
#define PL_INVALID    5  /* bad argument (size limit, option out of range) */
#define PL_BUSY       6  /* the database is locked by another handle or process */
#define PL_MISUSE     7  /* used in a forked child, or a call made in the wrong state */
#define PL_CLOSED     8  /* the database was closed */
#define PL_WOULDBLOCK 9  /* a PL_READ_NO_IO read needed file I/O; retry without the flag */
#define PL_EXISTS     10 /* error_if_exists and a database is there */
#define PL_READONLY   11 /* an earlier write or fsync failed; writes refused until reopen */
#define PL_RDONLY_OPEN 12 /* a write to a database opened with read_only */

/* Limits. */
#define PL_MAX_KEY   (64u * 1024u)          /* bytes */
#define PL_MAX_VALUE (64u * 1024u * 1024u)  /* bytes */

/* Sync strategies (the seed's WalSyncStrategy). */
enum pl_sync_mode {
    PL_SYNC_NONE = 0,        /* handed to the OS before a write returns */
    PL_SYNC_EVERY_WRITE = 1, /* fdatasync before a write returns; concurrent writers share it */
    PL_SYNC_EVERY_N = 2,     /* fdatasync at least every sync_count WAL records */
    PL_SYNC_TIME_BASED = 3,  /* a background thread fdatasyncs every sync_interval_ms */
    PL_SYNC_HYBRID = 4       /* sync_count records pending or the oldest sync_interval_ms old */
};

enum pl_wal_recovery {
    PL_RECOVER_TOLERATE_TAIL = 0, /* torn/zeroed tail of the last WAL ends the log; else corrupt */
    PL_RECOVER_ABSOLUTE = 1,      /* any damaged record is an error */
    PL_RECOVER_SALVAGE = 2        /* skip damaged records, count the bytes dropped */
};

enum pl_compression { PL_COMPRESS_NONE = 0, PL_COMPRESS_ZSTD = 1, PL_COMPRESS_LZ4 = 2 };

/* The options' defaults and ranges, stated here only: pl_options_init() fills the defaults, pl_db_open()
 * refuses a value out of range (PL_INVALID naming the option; pl_option_ranges() lists them), and the
 * binding hands both to Python.  Sizes in bytes; the sync count and interval are checked for the
 * strategies that use them. */
#define PL_DEFAULT_SYNC_COUNT         1000
#define PL_MIN_SYNC_COUNT             1
#define PL_MAX_SYNC_COUNT             INT64_MAX
#define PL_DEFAULT_SYNC_INTERVAL_MS   100
#define PL_MIN_SYNC_INTERVAL_MS       1
#define PL_MAX_SYNC_INTERVAL_MS       86400000 /* one day */
#define PL_DEFAULT_MEMTABLE_BYTES     (64u << 20)
#define PL_MIN_MEMTABLE_BYTES         4096
#define PL_MAX_MEMTABLE_BYTES         ((uint64_t)1 << 40)
#define PL_DEFAULT_BLOCK_BYTES        4096
#define PL_MIN_BLOCK_BYTES            256
#define PL_MAX_BLOCK_BYTES            (64u << 20)
#define PL_DEFAULT_BLOOM_BITS_PER_KEY 10
#define PL_MIN_BLOOM_BITS_PER_KEY     0
#define PL_MAX_BLOOM_BITS_PER_KEY     64
#define PL_DEFAULT_BLOCK_CACHE_BYTES  (32u << 20)
#define PL_MIN_BLOCK_CACHE_BYTES      0
#define PL_MAX_BLOCK_CACHE_BYTES      ((uint64_t)1 << 48)
#define PL_MIN_WAL_RETENTION          0         /* wal_retention_bytes and wal_retention_seconds */
#define PL_MAX_WAL_RETENTION          INT64_MAX

typedef struct pl_options {
    int create_if_missing;      /* default 1 */
    int error_if_exists;        /* default 0 */
    int sync_mode;              /* enum pl_sync_mode, default PL_SYNC_NONE */
    uint64_t sync_count;        /* EVERY_N, HYBRID: records between fsyncs */
    uint64_t sync_interval_ms;  /* TIME_BASED, HYBRID: milliseconds */
    size_t memtable_bytes;      /* the memtable size that triggers a flush */
    size_t block_bytes;         /* the target size of a table's data blocks */
    int bloom_bits_per_key;     /* 0 disables filters (tables without a point index) */
    int point_index;            /* default 1: tables carry a point index beside the bloom filter */
    size_t block_cache_bytes;   /* 0 disables (docs/decisions.md) */
    int wal_recovery;           /* enum pl_wal_recovery, default PL_RECOVER_TOLERATE_TAIL */
    int wal_timestamp;          /* 1: each WAL record carries a wall-clock timestamp (default 0) */
    int background_compaction;  /* default 1; 0 leaves tables where flush put them */
    int read_only;              /* default 0; 1: open beside a writer, take no lock, write nothing
                                 * (writes return PL_RDONLY_OPEN; pl_db_refresh catches up) */
    int compression;            /* enum pl_compression: data blocks of new tables (default none) */
    uint64_t wal_retention_bytes;   /* default 0; > 0: keep WALs tables cover in archive/, up to this */
    uint64_t wal_retention_seconds; /* default 0; > 0: keep them in archive/ for this long */
} pl_options;

typedef struct pl_db pl_db;
typedef struct pl_batch pl_batch;
typedef struct pl_iter pl_iter;
typedef struct pl_snapshot pl_snapshot;

/* A growable output buffer owned by the caller; pl_buf_free() releases it. */
typedef struct pl_buf {
    char *data;
    size_t len;
    size_t cap;
} pl_buf;
void pl_buf_free(pl_buf *b);

/* The calling thread's description of its last failure (never NULL), and its errno (0 if none). */
const char *pl_errmsg(void);
int pl_errno(void);
/* A static name for a return code ("PL_CORRUPT"). */
const char *pl_code_name(int rc);

/* Fill *o with the defaults documented above (PL_DEFAULT_*). */
void pl_options_init(pl_options *o);
/* The options with a range, {name of the pl_options field, PL_MIN_*, PL_MAX_*}, in a static array ended
 * by a NULL name: what pl_db_open checks, for a caller that checks first or shows them. */
typedef struct pl_option_range {
    const char *name;
    uint64_t min, max;
} pl_option_range;
const pl_option_range *pl_option_ranges(void);

/* Open (or create) the database in directory `path`.  On PL_OK *out is a live handle.
 * Errors: PL_BUSY (locked elsewhere), PL_EXISTS, PL_NOTFOUND (missing and !create_if_missing),
 * PL_CORRUPT, PL_IOERR, PL_INVALID, PL_NOMEM. */
int pl_db_open(const char *path, const pl_options *opt, pl_db **out);

/* A read-only handle: load the state the directory holds now (the manifest's tables and the WALs),
 * as a new open would, and make it what later reads and iterators see.  Snapshots and iterators
 * taken before keep their view.  PL_MISUSE on a handle opened for writing. */
int pl_db_refresh(pl_db *db);

/* Shut down: stop background threads, wait for calls in flight (see pl_db_enter), release the lock.
 * The handle's memory lives on until the last iterator/snapshot on it is released. Idempotent. */
int pl_db_close(pl_db *db);

/* Callers that may race pl_db_close() bracket each call: pl_db_enter() (returns PL_CLOSED once the
 * database is closing) and pl_db_leave().  pl_db_close() waits for every entered call to leave. */
int pl_db_enter(pl_db *db);
void pl_db_leave(pl_db *db);

/* Keep the handle's memory valid after pl_db_close(), so that a caller holding a pointer to a closed
 * database gets PL_CLOSED from every call instead of reading freed memory (the binding holds one for
 * as long as its Python object lives).  In a process forked from the one that opened the database,
 * release (like close) frees nothing: the parent's threads and locks are not the child's. */
void pl_db_retain(pl_db *db);
void pl_db_release(pl_db *db);
/* PL_OK while the handle is usable: PL_CLOSED once closing, PL_MISUSE in a forked child. */
int pl_db_check(pl_db *db);

/* Writes.  flags: PL_WRITE_SYNC makes this write durable (fdatasync) before returning, whatever the
 * mode; PL_WRITE_NO_WAIT returns PL_WOULDBLOCK (nothing written) rather than wait for another writer,
 * an fsync or a file switch, so a caller may first try with its own lock held and retry without. */
#define PL_WRITE_SYNC 1
#define PL_WRITE_NO_WAIT 2
int pl_db_put(pl_db *db, const void *key, size_t klen, const void *val, size_t vlen, int flags);
int pl_db_delete(pl_db *db, const void *key, size_t klen, int flags);
int pl_db_write(pl_db *db, const pl_batch *b, int flags);
/* fdatasync everything written so far. */
int pl_db_sync(pl_db *db);
/* Delete every key in [start, stop) (open ends where has_* is 0) as one atomic write: while it leads
 * the writer queue (writers wait; reads go on), it lists the keys there and writes their deletes as
 * one batch, so exactly the keys present at its LSN go, all or none, also across a crash.  Its cost
 * grows with the keys in the range (no range tombstone yet); a range holding more deletes than a
 * memtable is PL_INVALID (delete it in parts).  *deleted: how many.  PL_BUSY while an ingest holds the
 * LSNs it needs. */
int pl_db_delete_range(pl_db *db, const void *start, size_t slen, int has_start, const void *stop, size_t stlen,
                       int has_stop, int flags, uint64_t *deleted);

/* Reads.  flags: PL_READ_NO_IO -> return PL_WOULDBLOCK rather than touch a file.
 * snap: NULL for the latest state.  On PL_OK the value is copied into *out (replacing its contents). */
#define PL_READ_NO_IO 1
int pl_db_get(pl_db *db, const pl_snapshot *snap, const void *key, size_t klen, pl_buf *out,
              int flags);
/* pl_db_get of n keys from one view (snap, or the latest state once), reading the tables for several
 * keys at a time so that their memory reads overlap.  The values found are appended to *vals back to
 * back; lens[i] is key i's value length, or -1 when the key is absent.  Never PL_WOULDBLOCK: call it
 * where blocking is fine.  On an error (the first one in key order is returned) *vals and lens are
 * unspecified. */
int pl_db_get_many(pl_db *db, const pl_snapshot *snap, size_t n, const char *const *keys, const size_t *klens,
                   pl_buf *vals, int64_t *lens);

/* Maintenance. */
/* Whether key may be present, without reading a data block: *maybe = 0 means certainly absent (at
 * snap, or now when snap is NULL); 1 means present in a memtable or possibly in a table (its key range
 * and bloom filter do not rule it out).  A false 1 is as rare as the filters' false positives. */
int pl_db_key_may_exist(pl_db *db, const pl_snapshot *snap, const void *key, size_t klen, int *maybe);
/* Bytes of the tables holding user keys in [start, stop) (open ends where has_* is 0), from key
 * ranges and indexes, without reading data blocks; writes still in the memtable are not counted. */
int pl_db_approximate_size(pl_db *db, const void *start, size_t slen, int has_start, const void *stop,
                           size_t stlen, int has_stop, uint64_t *bytes);
int pl_db_flush(pl_db *db);
int pl_db_compact(pl_db *db, const void *start, size_t slen, int has_start,
                  const void *stop, size_t elen, int has_stop);

/* Statistics: calls fn(ctx, name, value) for each integer statistic, and
 * fn_level(ctx, level, files, bytes) for each level. */
/* A consistent copy of the database at a new directory `path` (which must not exist: PL_EXISTS),
 * holding exactly the writes acknowledged before the call; writers go on meanwhile (they wait only for
 * the microseconds it takes to pin the state).  Tables are hard-linked (copied across file systems),
 * live WALs copied, a fresh manifest written; the copy is durable when this returns.  *lsn (if not
 * NULL) gets the LSN of the state copied.  PL_RDONLY_OPEN on a read-only handle. */
int pl_db_checkpoint(pl_db *db, const char *path, uint64_t *lsn);

/* The changes feed: every write batch after LSN `since`, in order, from the live WALs and those kept
 * by retention (archive/).  A writable handle yields what was acknowledged when the reader was made;
 * a read-only one whatever the files hold.  pl_changes_next gives one batch: its first LSN (operation
 * i has LSN lsn + i), count, wall-clock timestamp in microseconds (*has_ts = 0 without wal_timestamp)
 * and encoded payload (valid until the next call; pl_batch_decode walks it); PL_NOTFOUND at the end.
 * LSNs missing from the WALs (no longer kept, or an ingest's) are an error (PL_MISUSE). */
typedef struct pl_changes pl_changes;
int pl_changes_new(pl_db *db, uint64_t since, pl_changes **out);
/* The same over the given WAL files, in order (point-in-time restore). */
int pl_changes_open_files(const char *const *paths, size_t n, uint64_t since, pl_changes **out);
int pl_changes_next(pl_changes *c, uint64_t *lsn, uint32_t *count, uint64_t *ts, int *has_ts,
                    const char **payload, size_t *len);
void pl_changes_free(pl_changes *c);
/* fn(ctx, is_put, key, klen, value, vlen) for each operation of a batch payload, in order (value NULL
 * for a delete); stops at fn's first non-zero return.  PL_CORRUPT for a malformed payload. */
typedef int (*pl_op_fn)(void *ctx, int is_put, const char *key, size_t klen, const char *val, size_t vlen);
int pl_batch_decode(const char *payload, size_t len, pl_op_fn fn, void *ctx);

typedef void (*pl_stat_fn)(void *ctx, const char *name, uint64_t value);
/* fn(ctx, name, value) for each figure; fn_level (may be NULL) for each level: its tables, their bytes,
 * and the table bytes written into it since open (flushes into level 0, compactions into their output
 * level, ingests where they placed their tables). */
typedef void (*pl_level_fn)(void *ctx, int level, uint64_t files, uint64_t bytes, uint64_t bytes_written);
int pl_db_stats(pl_db *db, pl_stat_fn fn, pl_level_fn fn_level, void *ctx);

/* Write batches: operations applied atomically by pl_db_write. */
pl_batch *pl_batch_new(void);
void pl_batch_free(pl_batch *b);
int pl_batch_put(pl_batch *b, const void *key, size_t klen, const void *val, size_t vlen);
/* pl_batch_put of n pairs at once (one size check and one reservation for all): all of them, or on
 * an error (a size over a limit, the batch full) none. */
int pl_batch_put_many(pl_batch *b, size_t n, const char *const *keys, const size_t *klens, const char *const *vals,
                      const size_t *vlens);
int pl_batch_delete(pl_batch *b, const void *key, size_t klen);
void pl_batch_clear(pl_batch *b);
uint32_t pl_batch_count(const pl_batch *b);

/* Bulk ingest: pairs in strictly ascending key order written straight into tables (no WAL, no
 * memtable) and made visible by one manifest edit (docs/api.md, "Bulk ingest"; ingest.h).
 * pl_ingest_new starts one (one at a time per database: PL_BUSY; PL_RDONLY_OPEN on a read-only
 * handle; PL_READONLY after a failure; PL_CLOSED).  pl_ingest_add appends a pair: PL_INVALID, with
 * the pair's position (0-based, counted over the adds) in pl_errmsg(), for a key not greater than the
 * one before or a size over the limits; PL_CLOSED once the database is closing; PL_IOERR, PL_NOMEM.
 * After any failed add only pl_ingest_abort is useful.  pl_ingest_finish makes every pair added
 * visible at once, as the newest version of its key, at an LSN past every one used before (a snapshot
 * taken before does not see them), and sets *count; pl_ingest_abort drops them.  Both free g (NULL is
 * ignored by abort); a failed finish leaves the database as it was.  Neither needs the database open.
 * A crash at any point leaves the database as it was or with every pair.  Writers go on meanwhile.
 * Thread safety: a pl_ingest is used by one thread at a time. */
typedef struct pl_ingest pl_ingest;
int pl_ingest_new(pl_db *db, pl_ingest **out);
int pl_ingest_add(pl_ingest *g, const void *key, size_t klen, const void *val, size_t vlen);
int pl_ingest_finish(pl_ingest *g, uint64_t *count);
void pl_ingest_abort(pl_ingest *g);

/* Snapshots: a consistent read view. Released with pl_snapshot_release (also after close). */
int pl_snapshot_new(pl_db *db, pl_snapshot **out);
void pl_snapshot_release(pl_snapshot *s);
uint64_t pl_snapshot_lsn(const pl_snapshot *s); /* the LSN it reads at */

/* Iterators over [start, stop) of the view `snap` (NULL: the state at creation).
 * Positioning calls return PL_OK; check pl_iter_valid(); pl_iter_status() reports a read error. */
int pl_iter_new(pl_db *db, const pl_snapshot *snap, pl_iter **out);
void pl_iter_free(pl_iter *it);
int pl_iter_seek(pl_iter *it, const void *key, size_t klen);  /* first key >= key */
int pl_iter_seek_first(pl_iter *it);
int pl_iter_seek_last(pl_iter *it);
int pl_iter_next(pl_iter *it);
int pl_iter_prev(pl_iter *it);
int pl_iter_valid(const pl_iter *it);
/* Pointers valid until the next positioning call. */
void pl_iter_key(const pl_iter *it, const char **k, size_t *klen);
void pl_iter_value(const pl_iter *it, const char **v, size_t *vlen);
int pl_iter_status(const pl_iter *it);
/* Restrict the iterator to user keys in [lo, hi) (has_* 0: open side); takes effect at the next seek. */
void pl_iter_set_bounds(pl_iter *it, const void *lo, size_t lolen, int has_lo, const void *hi, size_t hilen,
                        int has_hi);
/* What pl_iter_read copies of each entry (the other's length is written as 0). */
enum pl_want { PL_WANT_KEYS = 1, PL_WANT_VALUES = 2, PL_WANT_ITEMS = PL_WANT_KEYS | PL_WANT_VALUES };
/* Copy up to max_entries entries (stopping once max_bytes are used) from the current position into
 * *out, moving forward (reverse 0) or backward, and set *n to the count.  want: enum pl_want.  Each entry is u64 key length, u64 value length (little-endian), key bytes, value bytes.
 * At least one entry is copied while the iterator is valid, however large it is.  A chunk with fewer
 * than max_entries is not the end of the range (max_bytes may have cut it): the end is
 * pl_iter_valid() == 0 afterwards.  Returns the iterator's status. */
int pl_iter_read(pl_iter *it, int reverse, int want, size_t max_entries, size_t max_bytes, pl_buf *out,
                 size_t *n);
/* pl_iter_read in the sizes of a scan that hands its entries out one by one (the binding's
 * iterators): the first call after pl_iter_new or a seek copies up to 16 entries, each later one
 * twice as many as the one before, up to 1,024, so that a short scan (a seek and a few entries) copies
 * little and a long one makes a call per 1,024 entries; each stops at 1 MiB (at least one entry,
 * however large).  A buffer a large entry grew past 4 MiB is given back first. */
int pl_iter_read_chunk(pl_iter *it, int reverse, int want, pl_buf *out, size_t *n);
/* The entry under the iterator, key and value, into *out as pl_iter_read writes one (replacing its
 * contents; a buffer a large entry grew past 4 MiB is given back first).  REQUIRES: pl_iter_valid. */
int pl_iter_copy(const pl_iter *it, pl_buf *out);

/* Whole-database tools on a closed database. */
/* Progress of the long calls this thread makes (pl_verify, pl_repair, pl_db_compact): fn(ctx, done,
 * total) in bytes of files gone through, between files and from the calling thread (which may hold
 * the database's compaction lock: fn must not call into the same database).  NULL turns it off. */
typedef void (*pl_progress_fn)(void *ctx, uint64_t done, uint64_t total);
void pl_set_progress(pl_progress_fn fn, void *ctx);

int pl_verify(const char *path);   /* PL_CORRUPT with file and offset in pl_errmsg() */
int pl_repair(const char *path);
/* pl_repair, then fn(ctx, name, value) for each figure of what it kept and dropped (repair.h's
 * repair_report: tables_kept, tables_damaged, blocks_lost, bytes_lost, entries_salvaged, ...),
 * also when it failed part-way. */
int pl_repair_report(const char *path, pl_stat_fn fn, void *ctx);
int pl_destroy(const char *path);

#ifdef __cplusplus
}
#endif
#endif /* PYLSM_H */
