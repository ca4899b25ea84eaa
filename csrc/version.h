/*
 * version.h -- the version set: which tables are live, per level, the edits that change it, and the
 * live manifest that records them (manifest.h; docs/format.md, "Manifest").
 *
 * A version is an immutable, reference-counted set of live tables: L0 holds flushed tables, which may
 * overlap, oldest first (a flush appends in O(1) amortised, reads walk it newest first); L1..L6 hold
 * non-overlapping tables sorted by key.  Readers take a reference on the current version and read
 * without any lock.  A table file is deleted when the last version naming it is released after an
 * edit removed it.
 *
 * Each edit is appended to the live manifest before the version it makes is used; a manifest grown
 * past manifest_roll_bytes is replaced by a new one holding the whole state, which CURRENT then names.
 *
 * Thread safety: version_ref/unref/get/iterators from any thread.  A versions is the database's
 * (db.c), and the REQUIRES lines below name the pl_db locks that guard it.  Edits come from the
 * opener, then under apply_mu from whichever thread holds it: the flush thread, the compaction
 * thread, and user threads in pl_db_compact and an ingest's commit.  apply_mu makes them one at
 * a time; mu guards what readers and writers look at (current, next_file).  Until pl_db_open starts
 * the background threads, and after pl_db_close has stopped them, the opener (closer) is the only thread
 * and needs no lock.
 */
#ifndef PL_VERSION_H
#define PL_VERSION_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "cache.h"
#include "iter.h"
#include "pylsm.h"
#include "sstable.h"

#define NUM_LEVELS 7

typedef struct file_meta {
    uint64_t number;
    table_meta m; /* size, entries, smallest/largest internal keys, LSNs */
    table *t;     /* the open reader */
    atomic_int refs;
    atomic_int obsolete; /* removed from the current version: delete the file at the last unref */
    char *path;
    int being_compacted;
} file_meta;

typedef struct version {
    atomic_int refs;
    int n[NUM_LEVELS];
    file_meta **files[NUM_LEVELS];
    /* The manifest's bookkeeping as of this version: WALs below log_number and LSNs up to last_lsn
     * are in these tables (what a whole-state copy of it must say: checkpoints). */
    uint64_t log_number, last_lsn;
} version;

void version_ref(version *v);
void version_unref(version *v);
void file_ref(file_meta *f);
void file_unref(file_meta *f);

/* version_get for each of n (<= VERSION_BATCH) lookups (sstable.h: ukey, klen, hash and out filled,
 * result LOOKUP_ABSENT, rc PL_OK), table by table, each table searched for the keys still unresolved
 * at once (table_get_batch).  Each lookup ends with its result and rc. */
#define VERSION_BATCH 32
void version_get_batch(version *v, uint64_t snap, table_lookup *const *reqs, size_t n);

/* The newest version of ukey with lsn <= snap in the version's tables: *result = LOOKUP_*. */
int version_get(version *v, const char *ukey, size_t klen, uint64_t snap, pl_buf *out, int flags,
                int *result);
/* Without reading a data block: 0 if no table of v can hold a version of ukey visible at snap (key
 * ranges and bloom filters say so), else 1. */
int version_may_contain(const version *v, const char *ukey, size_t klen, uint64_t snap);
/* The bytes of v's tables that hold user keys in [start, stop) (a bound with has_* = 0 is open), from
 * the tables' key ranges and indexes: whole tables inside the range count their file size, tables
 * the range cuts count the span between the blocks that hold its ends. */
uint64_t version_approximate_size(const version *v, const char *start, size_t slen, int has_start,
                                  const char *stop, size_t stlen, int has_stop);
/* The n tables at files (sorted by key, not overlapping; or one table) as one iterator, holding a
 * reference on each while it lives; NULL when out of memory. */
iter *version_files_iter(file_meta **files, int n);
/* Append one iterator per L0 table and one per non-empty level (a concatenation of its tables,
 * concat.h) to its[] (room for n[0] + NUM_LEVELS), newest first; each holds references on its tables.
 * PL_OK with *count iterators stored, or PL_NOMEM with none (*count = 0). */
int version_iters(version *v, iter **its, int *count);
uint64_t version_level_bytes(const version *v, int level);

/* A change to the set of live tables, with the log and sequence bookkeeping. */
typedef struct edit_file {
    int level;
    file_meta *f;      /* added: owned by the edit until applied */
    uint64_t number;   /* deleted */
} edit_file;

typedef struct version_edit {
    int has_log_number, has_next_file, has_last_lsn;
    uint64_t log_number, next_file, last_lsn;
    edit_file *added;
    int nadded;
    size_t cap_added;
    edit_file *deleted;
    int ndeleted;
    size_t cap_deleted;
} version_edit;

void edit_init(version_edit *e);
void edit_free(version_edit *e);
int edit_add_file(version_edit *e, int level, file_meta *f); /* takes a reference on f */
int edit_delete_file(version_edit *e, int level, uint64_t number);

/* A manifest past this size is replaced by a new one holding only the current version (tests make it
 * small, through pl_test_set, to roll often). */
extern uint64_t manifest_roll_bytes;
/* Tables totalling more than this are read with random read-around advice (0: a sixteenth of physical
 * memory); a test knob. */
extern uint64_t read_around_bytes;

/* The version set.  Which pl_db lock guards each field (see the thread safety note above): */
typedef struct versions {
    char *dir;
    cache *cache;
    version *current; /* written under apply_mu and mu; read under either */
    /* The live manifest, and its last edit's number: under apply_mu. */
    int manifest_fd;
    uint64_t manifest_number;
    uint64_t manifest_bytes;
    uint64_t edit_seq;
    /* WALs below this number are in tables.  Atomic: versions_apply stores it under apply_mu, and the
     * database reads it under mu to delete those WALs. */
    _Atomic uint64_t log_number;
    uint64_t next_file;  /* under mu */
    uint64_t last_lsn;   /* every LSN up to this is in tables; under apply_mu */
    int manifest_failed; /* sticky: an append failed, perhaps part-way; nothing may follow it (apply_mu) */
    /* Tables opened from now on keep nothing per data block on the heap (table_open_lean): set while the
     * tables total more than the read-around limit (version.c), at open and at each install. */
    _Atomic int lean_tables;
} versions;

/* Load the state named by CURRENT (or start an empty one when there is none and create is set) and
 * open every table.  Writes nothing: an open that fails later leaves the directory as it was.
 * REQUIRES: vs is the caller's alone (the opener's, before any other thread can see it). */
int versions_open(versions *vs, const char *dir, cache *c, int create);
/* Start a fresh manifest holding the whole state (numbered from next_file, which the caller first
 * raises past every file on disk) and make CURRENT name it; the old manifest goes.
 * REQUIRES: the opener, before any other thread uses vs (no lock). */
int versions_start(versions *vs);
/* The live manifest's number and size, without reading it (0, 0 when there is none): a reader
 * beside a writer compares them before and after loading to know it read one state. */
int versions_probe(const char *dir, uint64_t *number, uint64_t *size);
/* REQUIRES: no other thread uses vs any more (pl_db_close, after the background threads stopped). */
void versions_close(versions *vs);
/* A new file number.  REQUIRES: mu held (it guards next_file), or the opener alone. */
uint64_t versions_new_file(versions *vs);
/* Write edit to the manifest (fsynced) and build the version it makes; the caller installs it with
 * versions_install.  On failure nothing changes, except that a failed append (which may have left
 * part of a record) makes every later one fail too (manifest_failed).
 * REQUIRES: apply_mu held and mu not held (the append waits for an fsync); an edit without next file
 * is given next_file, which needs mu, so db.c sets e's under mu first.  Or the opener alone. */
int versions_apply(versions *vs, version_edit *e, version **out);
/* Make v (from versions_apply) current, taking over the caller's reference; may replace the manifest
 * with a new one (manifest_roll_bytes; a failure keeps the old one, still valid).
 * REQUIRES: apply_mu and mu held (readers take current, and file numbers, under mu); or the opener
 * alone. */
void versions_install(versions *vs, version *v);
/* Open a table file as a file_meta with one reference. */
int file_meta_open(const char *dir, uint64_t number, const table_meta *m, cache *c, int lean, file_meta **out);

/* Read-only check of the manifest chain and every table of a closed database (pl_verify): each table
 * verifies (table_verify) and holds what the manifest says (its first and last keys, its LSN range,
 * none above the manifest's last LSN); reports
 * the manifest's log number and last LSN (0 when there is no manifest). */
int versions_verify(const char *dir, uint64_t *log_number, uint64_t *last_lsn);

#endif
