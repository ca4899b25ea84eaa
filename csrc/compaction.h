/*
 * compaction.h -- leveled compaction: choosing work by score, and merging tables into a level.
 *
 * Levels: L0 holds flushed tables, which may overlap; L1..L6 hold non-overlapping tables, each level
 * about LEVEL_MULTIPLIER times the previous (L1's target is level_base_bytes).  Like LevelDB, each level
 * has a score: L0 its table count over L0_COMPACT_TRIGGER, the others their bytes over their target;
 * the highest score >= 1 is compacted next.
 *
 * Writing (compaction_write) merges an input iterator of internal keys into new tables of one level,
 * cut at target_file_bytes on user-key boundaries (all versions of a user key stay in one table, which
 * point lookups rely on).  It drops a version when a newer version of the same key is visible to every
 * reader (its LSN <= the oldest snapshot), and a tombstone that every reader sees when no deeper level
 * can hold an older version of its key.  Flush is the same writer with no size cut.
 *
 * Thread safety: a compaction runs on the compaction thread (or as a manual compaction), holding
 * the database's compaction turn (compact_mu); a flush, on the flush thread, may run beside it; inputs are immutable tables held by references.
 */
#ifndef PL_COMPACTION_H
#define PL_COMPACTION_H

#include <stddef.h>
#include <stdint.h>

#include "iter.h"
#include "version.h"

/* Level 0 is compacted in batches of L0_COMPACT_TRIGGER tables: each batch is merged with the whole
 * of L1, so a larger batch rewrites L1 less often (8 rather than LevelDB's 4: write amplification
 * 12.2 -> 10.9 at 100M keys; docs/decisions.md, item 15).  Writers are slowed from L0_SLOWDOWN tables
 * (1 ms once per write) and wait from L0_STOP. */
#define L0_COMPACT_TRIGGER 8
#define L0_SLOWDOWN 12
#define L0_STOP 20
#define LEVEL_MULTIPLIER 10

typedef struct compaction {
    int level;                 /* the shallowest level of the upper inputs */
    int out_level;             /* the output level: level + 1, deeper for compaction_pick_deep */
    file_meta **inputs[2];     /* [0]: the upper inputs, by level then key; [1]: the output level's */
    int *from;                 /* the level of each upper input */
    int n[2], cap[2];
} compaction;

#define SUBCOMPACTION_MIN_BYTES (64u << 20)
extern uint64_t subcompaction_min_bytes; /* SUBCOMPACTION_MIN_BYTES; a test may lower it (pl_test_set) */

typedef struct compact_env {
    const char *dir;
    cache *cache;
    size_t block_bytes;
    int bloom_bits_per_key;
    int point_index;             /* tables get a point index (sstable.h) */
    int compression;             /* COMPRESS_* (compress.h) for data blocks */
    uint64_t target_file_bytes;  /* UINT64_MAX: one table */
    uint64_t oldest_snapshot;    /* versions older than the newest one at or below this are dropped */
    uint64_t level_base_bytes;
    uint64_t (*new_file)(void *ctx); /* a fresh file number */
    void *ctx;
    int lean_tables;             /* outputs open with table_open_lean */
    int report_progress;         /* progress_done per table written (a manual compaction's bar) */
    int subcompactions;          /* compaction_run may split a big compaction over two threads */
    uint64_t bytes_written;      /* out: table bytes written */
    uint64_t entries_dropped;    /* out */
    uint64_t splits;             /* out: compactions run as two halves (subcompactions) */
} compact_env;

/* Set *env (all of it) to write the tables of a database in dir with options opt, taking file
 * numbers from new_file(ctx): opt's table format (block size, bloom bits, point index, compression);
 * tables cut at opt's memtable size held to 2..64 MiB, and L1 targeted at 4 times that; no block
 * cache; oldest_snapshot 0 (every version kept).  Callers change what differs (a flush writes one
 * table: target_file_bytes UINT64_MAX). */
void compaction_env_init(compact_env *env, const char *dir, const pl_options *opt, uint64_t (*new_file)(void *ctx),
                         void *ctx);

/* Pick the most urgent compaction of v (files referenced into c).  Returns 1 with c filled, 0 if none. */
int compaction_pick(version *v, const compact_env *env, compaction *c);
/* Pick the tables of `level` overlapping [lo, hi] (user keys; NULL = unbounded) and what they overlap
 * in level + 1.  Returns 1 with c filled, 0 if level holds none. */
int compaction_pick_range(version *v, int level, const char *lo, size_t lolen, const char *hi,
                          size_t hilen, compaction *c);
/* Pick, for one merge into out_level (>= 1), the tables of every level above it that hold keys in
 * [lo, hi] or in what the levels above it picked (all of L0 when any of it does), and the tables of
 * out_level they overlap: a manual compaction's single pass, which writes the data once where one
 * merge per level would write it once per level.  Returns 1 with c filled, 0 if no level above
 * out_level holds any, -1 when out of memory (the error recorded). */
int compaction_pick_deep(version *v, int out_level, const char *lo, size_t lolen, const char *hi, size_t hilen,
                         compaction *c);
void compaction_free(compaction *c);

/* Merge the inputs of c into its out_level and describe the result in e (deleted inputs, added outputs).
 * With env->subcompactions, a compaction of SUBCOMPACTION_MIN_BYTES or more whose output level gives it
 * a middle key is split there: the upper half merged and written on a second thread. */
int compaction_run(compaction *c, version *v, compact_env *env, version_edit *e);

/* Write the entries of `input` (takes it over) as tables of `level`, adding them to e.  v: the version
 * the output joins (to decide whether tombstones may go); NULL keeps every tombstone. */
int compaction_write(iter *input, version *v, int level, compact_env *env, version_edit *e);

/* One output table on its way (compaction, flush, ingest): opened with a fresh file number, then
 * finished -- written, fdatasynced, its directory fsynced, opened for reading and added to e at
 * `level` (its bytes counted in env->bytes_written) -- or abandoned (the partial file removed).
 * A finish that fails removes the file too.  The path is freed by finish and abandon.  huge: the
 * table is written in 2 MiB pieces (table_builder_set_huge_pieces: tables of the last level). */
typedef struct compaction_output {
    table_builder *tb; /* NULL when no table is open */
    uint64_t number;
    char *path;
} compaction_output;
int compaction_output_open(compaction_output *o, compact_env *env, int huge);
int compaction_output_finish(compaction_output *o, compact_env *env, int level, version_edit *e);
void compaction_output_abandon(compaction_output *o); /* no-op when none is open */

/* Bytes a level should hold at most. */
uint64_t compaction_level_target(const compact_env *env, int level);

#endif
