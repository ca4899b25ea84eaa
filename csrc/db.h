/*
 * db.h -- the glue of the engine: open/recovery, the write path (writer queue, group commit, sync
 * strategies), the read path, and the background threads.  The public surface is pylsm.h; this header
 * holds what other core files need of the database.
 */
#ifndef PL_DB_H
#define PL_DB_H

#include "pylsm.h"

/* Take / drop a reference that keeps the pl_db's memory alive (iterators, snapshots). */
void db_ref(pl_db *db);
void db_unref(pl_db *db);

#endif
