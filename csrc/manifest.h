/*
 * manifest.h -- the manifest: the log of version edits that CURRENT names (docs/format.md, "Manifest").
 * It is a file in the WAL framing (wal.h) whose records are version edits, one LSN apart.  Here an
 * edit is encoded as a record and decoded back, a manifest is read into the state it describes, and a
 * manifest is written: whole (a new one, which CURRENT is then pointed at) or an edit at a time.
 *
 * What the manifest is for -- when an edit is written, when a new manifest replaces the live one --
 * is the version set's (version.h); CURRENT's own file is filename.c's (read_current, set_current).
 *
 * Thread safety: these functions touch only the files they name or are given.  The writes of one
 * manifest are the caller's to serialize (version.h says under which lock the version set writes).
 */
#ifndef PL_MANIFEST_H
#define PL_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "sstable.h"
#include "version.h"

/* A table named by a manifest, before it is opened. */
typedef struct manifest_file {
    int level;
    uint64_t number;
    table_meta m;
} manifest_file;

/* What a manifest says once all its edits are applied: the live tables and the bookkeeping. */
typedef struct manifest_state {
    manifest_file *files;
    int n;
    size_t cap;
    int has_log_number, has_next_file, has_last_lsn;
    uint64_t log_number, next_file, last_lsn;
} manifest_state;

/* Read the manifest that CURRENT in dir names into s (zeroed by the caller) and its number into
 * *number.  The manifest's last edit may be torn (a crash before it was acknowledged): it is left out.
 * PL_OK; PL_NOTFOUND when there is no CURRENT (s untouched); PL_CORRUPT when CURRENT or the manifest
 * is malformed, or the manifest lacks the log number, next file or last LSN (the message names the
 * file and where); PL_IOERR, PL_NOMEM.  s may hold part of the state after a failure: free it with
 * manifest_state_free in every case. */
int manifest_load(const char *dir, manifest_state *s, uint64_t *number);
void manifest_state_free(manifest_state *s);

/* Write MANIFEST-number in dir holding e as its only record (LSN seq), fsync it and the directory
 * (its name is durable before CURRENT may name it), then point CURRENT at it (set_current: CURRENT.tmp
 * -> fsync -> rename -> fsync(dir)).  e must be a whole state: log number, next file (above number)
 * and last LSN all set.
 * With fd non-NULL the manifest stays open for manifest_append: *fd its descriptor and *bytes its
 * size; else it is closed (fd and bytes may be NULL).  *renamed (renamed may be NULL) tells whether
 * CURRENT may name the new manifest.  On a failure the new manifest is removed unless it may be named;
 * then it is kept, and stays open in *fd when fd is non-NULL (-1 otherwise).
 * PL_OK; PL_INVALID (e is no whole state); PL_IOERR, PL_NOMEM. */
int manifest_create(const char *dir, uint64_t number, uint64_t seq, const version_edit *e, int *fd,
                    uint64_t *bytes, int *renamed);

/* Append e as record seq (one past the last record's) to MANIFEST-number of dir, open at fd with
 * *bytes bytes, and fsync it; *bytes grows by the record.  PL_OK; PL_NOMEM (nothing written);
 * PL_IOERR (the record may be on disk in part: nothing may be appended after it). */
int manifest_append(const char *dir, uint64_t number, int fd, uint64_t *bytes, uint64_t seq,
                    const version_edit *e);

#endif
