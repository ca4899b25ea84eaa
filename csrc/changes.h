/*
 * changes.h -- the changes feed: WALs kept after tables cover them, and reading every write since an
 * LSN from the kept and live WALs (pl_changes_* in pylsm.h; docs/format.md, "The database directory").
 *
 * Retention: with wal_retention_bytes or wal_retention_seconds set, a WAL that a flush made obsolete
 * is moved into the database's archive/ directory instead of being deleted (the name keeps its
 * number), and the archive is trimmed, oldest first, while it holds more bytes than the byte limit or
 * files older than the age limit (a limit of 0 is no limit).  Recovery never reads the archive; it
 * is history, for the feed and for point-in-time restores.
 *
 * Reading: a pl_changes walks the WAL files in number order (main directory and archive), one record
 * (a write batch) at a time, and yields the records whose LSNs reach past `since`.  Every LSN after the
 * start must be found, in order: a jump is an error (PL_MISUSE naming the LSNs missing) -- WALs that
 * retention deleted, or an ingest, whose pairs go straight into tables and never through a WAL.
 *
 * Thread safety: a pl_changes is used by one thread at a time; many may read one database at once,
 * beside its writers.
 */
#ifndef PL_CHANGES_H
#define PL_CHANGES_H

#include <stddef.h>
#include <stdint.h>

#include "pylsm.h"

/* Move dir/NNNNNN.wal into dir/archive/ (made on first use; the archive directory is fsynced).  A
 * WAL that is not there is no error. */
int changes_archive_wal(const char *dir, uint64_t number);
/* Delete archived WALs, oldest first, while the archive holds more than max_bytes or files last
 * written more than max_seconds ago (0: no such limit). */
int changes_trim(const char *dir, uint64_t max_bytes, uint64_t max_seconds);

/* A reader over the WALs of directory dir, yielding records whose last LSN is > since and whose
 * first LSN is <= bound; LSNs up to `known` exist, so reaching the end before them is a gap. */
int changes_open_dir(const char *dir, uint64_t since, uint64_t bound, uint64_t known, pl_changes **out);

#endif
