/*
 * wal.h -- the write-ahead log: appending records and replaying them.
 * The byte layout (file header, records, sync marks, the zero tail) and the rules replay applies to a
 * damaged file are in docs/format.md, "WAL".
 *
 * The WAL frames opaque payloads: what a record holds is its caller's (db.c writes batches, batch.h;
 * the manifest, version edits).  It asks two things of them.  A payload is at least WAL_PAYLOAD_MIN
 * bytes and does not begin with four zero bytes: those begin a sync mark's payload, the one payload
 * the WAL reads.  And each record takes a run of LSNs, which its caller states (a batch takes one
 * per operation, its count): the record after it must carry the LSN after that run, which is how
 * replay tells a stale or repeated record from the next one.
 *
 * The writer appends through a shared memory mapping of the file: a record is in the OS page cache
 * (and so survives kill -9 of the process) as soon as wal_append returns, with no system call per
 * record.  wal_sync makes everything appended so far durable (fdatasync).
 *
 * Why sync marks (files whose header has WAL_FLAG_MARKS): after a power cut, damage in bytes that an
 * fsync had made durable is corruption, while damage past the last fsync is only the torn tail of the
 * cut.  A mark is appended after the fsync it reports has returned, so replay can tell the two apart
 * from the file alone, at no system call per mark.  The file header itself is made durable by
 * wal_create, before any record can be appended.
 *
 * Thread safety: wal_append is called by one thread at a time (the write leader).  wal_sync may run
 * in another thread at the same time (the background sync thread); wal_close needs both stopped.
 */
#ifndef PL_WAL_H
#define PL_WAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define WAL_FILE_HEADER 16
#define WAL_MAGIC "PLSMWAL1"
#define WAL_FLAG_TIMESTAMP 1u
#define WAL_FLAG_MARKS 2u   /* the writer records sync marks (see above) */
#define WAL_MARK_LEN 12     /* a mark's payload: u32 0, u64 durable end offset */
#define WAL_PAYLOAD_MIN 4   /* a record's payload: at least this long, its first 4 bytes not all zero */
#define WAL_REC_HEADER 16 /* lsn + crc + len */

typedef struct wal wal;

/* One record to append: its LSN, how many LSNs it takes (>= 1; a batch's count), and its payload
 * (WAL_PAYLOAD_MIN bytes or more, not beginning with four zero bytes). */
typedef struct wal_rec {
    uint64_t lsn;
    uint64_t lsns;
    const char *payload;
    size_t len;
} wal_rec;

/* Create a new WAL at path (which must not exist) able to hold at least min_bytes of records.
 * map_bytes is the size of the append window; records never span WAL files. */
int wal_create(const char *path, int timestamps, size_t map_bytes, wal **out);
/* Write the records with pwrite from now on rather than through the mapping: for a WAL synced every
 * few records.  A page written through a shared mapping is write-protected again by each fdatasync
 * (so the kernel sees the next write), which costs a page fault and a TLB shootdown across the CPUs
 * per synced record (docs/decisions.md, item 3b); pwrite dirties the page cache without the page
 * tables.  Call before the first append. */
void wal_set_pwrite(wal *w);
/* Bytes one record of this payload length takes. */
size_t wal_record_size(const wal *w, size_t payload_len);
/* Bytes an append may add beyond its records' wal_record_size (a sync mark). */
size_t wal_append_overhead(const wal *w);
/* Room left in the window, in bytes. */
size_t wal_room(const wal *w);
/* Append records in order.  REQUIRES: their total wal_record_size <= wal_room.  PL_OK or PL_IOERR
 * (extending the file failed; nothing of these records is valid then). */
int wal_append(wal *w, const wal_rec *recs, int n);
/* Make every byte appended before this call durable.  PL_OK or PL_IOERR. */
int wal_sync(wal *w);
/* Bytes of records appended / made durable. */
uint64_t wal_written(const wal *w);
uint64_t wal_synced(const wal *w);
/* Close: cut the file to its written length (so its tail is clean), fsync when `sync`, and free. */
int wal_close(wal *w, int sync);
const char *wal_path(const wal *w);

/* Encode one record at dst (room for wal_record_size) and return its size: the WAL framing, also used
 * by the manifest.  And the 16-byte file header. */
size_t wal_encode(char *dst, int timestamps, uint64_t lsn, uint64_t ts, const char *payload, size_t len);
void wal_encode_file_header(char *dst, unsigned flags);
/* Is this a valid file header (magic, CRC, known flags)?  Stores its flags. */
int wal_header_ok(const char *d, size_t size, unsigned *flags);
/* Are the n bytes at p all zero?  1 or 0.  Zeros are what was never written: the tail a file is
 * extended by ahead of the writer, or a header torn as the file was created. */
int wal_all_zero(const char *p, uint64_t n);

/* ---- replay ---- */

enum { WAL_TOLERATE_TAIL = 0, WAL_ABSOLUTE = 1, WAL_SALVAGE = 2 }; /* = enum pl_wal_recovery */

typedef struct wal_replay_result {
    uint64_t next_lsn;      /* LSN the next record must carry */
    uint64_t valid_end;     /* offset just past the last good record */
    uint64_t dropped_bytes; /* salvage: bytes skipped; tolerate: torn tail bytes (non-zero) */
    uint64_t records;       /* records applied (sync marks are not records) */
    uint64_t durable_end;   /* the highest durable offset a sync mark declared */
    int torn_tail;          /* the log ended in a damaged record */
} wal_replay_result;

/* Called per good record, in order; a non-zero return stops the replay with that code. */
typedef int (*wal_apply_fn)(void *ctx, uint64_t lsn, const char *payload, size_t len);
/* How many LSNs (>= 1) the record of this payload takes: the next record's LSN is its LSN plus that.
 * Called for every intact record (not for marks), applied or not; len >= WAL_PAYLOAD_MIN. */
typedef uint64_t (*wal_lsns_fn)(const char *payload, size_t len);

/* Replay one WAL file.  *res->next_lsn on entry is the LSN the first record must carry
 * (0: whatever the first record has); lsns says how far each record moves it (NULL: one LSN per
 * record).  Records whose LSNs lie below skip_below are checked but not applied (they are already in
 * tables).  is_last: this is the newest WAL (only its tail may be torn).
 * WAL_TOLERATE_TAIL, in the newest file: damage past its last durable point is a torn tail (the log
 * ends there, res->torn_tail); in a file with sync marks that is damage no intact later mark covers,
 * in one without (the manifest, older WALs) damage with no intact record after it.  A damaged header
 * with no intact record after it is a file torn as it was created.
 * Returns PL_OK, PL_CORRUPT (file and offset in the message), PL_IOERR, or fn's code. */
int wal_replay(const char *path, int mode, int is_last, uint64_t skip_below, wal_lsns_fn lsns,
               wal_apply_fn fn, void *ctx, wal_replay_result *res);

/* ---- reading a WAL record by record (the changes feed) ----
 *
 * A cursor reads one WAL file with pread from the start, record by record, skipping sync marks; it
 * can be read while the writer still appends (what is not there yet, or is half-written, is the end
 * for now) and while the file is renamed or deleted (it holds the descriptor). */
typedef struct wal_cursor {
    int fd;
    char *path;
    unsigned flags;
    size_t hdr;        /* record header bytes: 16, or 24 with timestamps */
    uint64_t off;      /* the next record's offset */
    uint64_t size;     /* the file's size when last looked at (at each record) */
    int damaged;       /* the end was a record that fails its checks (not zeros or the file's end) */
    char *buf;         /* the last record read */
    size_t cap;
} wal_cursor;

/* Open path and check its header.  PL_NOTFOUND if the file does not exist (then nothing to close);
 * PL_CORRUPT for a bad header; PL_IOERR.  An empty or zero header (a WAL just created, or torn as it
 * was) reads as a WAL without records (PL_OK). */
int wal_cursor_open(const char *path, wal_cursor *c);
/* The next record: PL_OK with its LSN, timestamp (*has_ts = 0 without timestamps) and payload
 * (valid until the next call; WAL_PAYLOAD_MIN bytes or more); PL_NOTFOUND at the end of what the
 * file holds now -- zeros, its end, or a record that is incomplete or fails its CRC (c->damaged then:
 * the caller decides whether that is a tail being written or damage); PL_IOERR, PL_NOMEM. */
int wal_cursor_next(wal_cursor *c, uint64_t *lsn, uint64_t *ts, int *has_ts, const char **payload,
                    size_t *len);
void wal_cursor_close(wal_cursor *c);

#endif
