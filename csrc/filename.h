/*
 * filename.h -- the database directory: the name of every file in it, as one table (docs/format.md,
 * "The database directory"; LevelDB's db/filename.h).
 *
 *   LOCK                      FILE_LOCK         held with flock while the database is open
 *   CURRENT                   FILE_CURRENT      one line, "MANIFEST-NNNNNN\n", naming the live manifest
 *   CURRENT.tmp               FILE_CURRENT_TMP  transient, while CURRENT is replaced
 *   MANIFEST-NNNNNN           FILE_MANIFEST     the version-edit log
 *   NNNNNN.wal                FILE_WAL          write-ahead logs
 *   NNNNNN.sst                FILE_TABLE        tables
 *   NNNNNN.sst.bad            FILE_TABLE_BAD    a damaged table set aside by repair
 *   NNNNNN.wal.bad            FILE_WAL_BAD      a damaged WAL set aside by repair
 *   NNNNNN.tmp                FILE_TEMP         transient, a WAL copy repair replays under a rebuilt header
 *   archive                   FILE_ARCHIVE      the directory of retained WALs (archive/NNNNNN.wal)
 *   CHECKPOINT                FILE_CHECKPOINT   in a checkpoint: what state it holds and from where
 *
 * NNNNNN is a file number, written zero-padded to six digits (more when it is larger); on reading,
 * any run of decimal digits is a number.  Here alone are names written and classified: the callers
 * decide what to do with each kind (open removes the obsolete ones, destroy every one, repair and
 * recovery list the tables and WALs, a checkpoint writes some).
 *
 * Thread safety: the names are pure functions; read_current and set_current touch only the files
 * they name (set_current REQUIRES that no other thread replaces CURRENT at the same time).
 */
#ifndef PL_FILENAME_H
#define PL_FILENAME_H

#include <stddef.h>
#include <stdint.h>

enum file_type {
    FILE_LOCK,
    FILE_CURRENT,
    FILE_CURRENT_TMP,
    FILE_MANIFEST,
    FILE_WAL,
    FILE_TABLE,
    FILE_TABLE_BAD,
    FILE_WAL_BAD,
    FILE_TEMP,
    FILE_ARCHIVE,
    FILE_CHECKPOINT,
};

/* Room for any name of the table with its NUL (the longest: MANIFEST- and a 20-digit number). */
#define FILE_NAME_MAX 48

/* ---- names ---- */

/* The name of the file of `type` (and `number`, for the numbered types; ignored by the others) into
 * buf, NUL-terminated. */
void file_base_name(char buf[FILE_NAME_MAX], uint64_t number, enum file_type type);
/* dir/<that name>, malloc'd; NULL when out of memory (nothing recorded: callers report PL_NOMEM). */
char *db_file_name(const char *dir, uint64_t number, enum file_type type);
/* dir/name for any name, malloc'd; NULL when out of memory. */
char *db_path_join(const char *dir, const char *name);

/* ---- classification ---- */

/* Is `name` (a directory entry, no slash) one of the table's?  1 with *type and *number (0 for the
 * unnumbered types) stored; 0 for a name the database does not own (nothing stored).  A number must
 * fit in 64 bits with room to spare (at most UINT64_MAX / 10 - 9 before its last digit).  Any name
 * that begins with "MANIFEST-" is a manifest: its number is the digits after the dash when that is all
 * there is, else 0 (a number no manifest has: open removes it as obsolete, destroy removes it). */
int parse_file_name(const char *name, uint64_t *number, enum file_type *type);

/* The file number a name begins with, whoever owns the file: "NNNNNN.<anything>" or
 * "MANIFEST-NNNNNN<anything>".  1 with *number stored, 0 when there is none (or it does not fit).
 * Repair numbers its new files past every such number in the directory. */
int leading_file_number(const char *name, uint64_t *number);

/* ---- listing ---- */

/* File numbers gathered from directories. */
typedef struct file_list {
    uint64_t *numbers;
    size_t n, cap;
    uint64_t max_number; /* the largest number of a WAL or table seen (0: none) */
} file_list;

/* Add the number of every WAL (NNNNNN.wal) in directory dir to l, and raise l->max_number to the
 * number of every WAL and table there.  PL_OK, PL_IOERR (the listing failed; l holds what was seen),
 * PL_NOMEM. */
int list_wals(const char *dir, file_list *l);
/* Sort l->numbers ascending and drop repeats (a WAL seen in two directories). */
void file_list_sort(file_list *l);
void file_list_free(file_list *l);

/* The number of WALs and tables in directory dir in *count (what a listing that fails part-way saw).
 * PL_OK, PL_IOERR. */
int count_data_files(const char *dir, int *count);

/* ---- CURRENT ---- */

/* The manifest number CURRENT in dir names.  PL_OK; PL_CORRUPT when it does not hold one line
 * "MANIFEST-<digits>\n" (the message names the file and the offset); PL_IOERR (errno ENOENT when
 * there is no CURRENT), PL_NOMEM. */
int read_current(const char *dir, uint64_t *number);
/* Does CURRENT in dir hold exactly the name of MANIFEST-number (as set_current writes it)?  1 or 0
 * (0 also when it cannot be read; the thread's error may then be replaced). */
int current_names(const char *dir, uint64_t number);
/* Point CURRENT at MANIFEST-number: write CURRENT.tmp -> fsync -> rename -> fsync(dir).  PL_OK,
 * PL_IOERR, PL_NOMEM; on failure CURRENT.tmp is removed.  *renamed tells whether CURRENT may already
 * name the new manifest (then neither manifest may be deleted on failure). */
int set_current(const char *dir, uint64_t number, int *renamed);

#endif
