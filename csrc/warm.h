/*
 * warm.h -- mapping a warm database's tables into the page tables after open.
 *
 * Tables are read in place from their mappings (docs/decisions.md, item 5b).  After a restart the
 * page cache may still hold the files, but the new process has none of their pages mapped: each
 * first touch of a page is a page fault, a few microseconds.  Past the read-around limit (item 14)
 * the tables are advised random and large, so the first few hundred thousand gets after an open fault
 * on most pages they touch and run at half their later rate.  A warmer maps, on a thread of its own,
 * the pages of every table of a version that the page cache already holds, and checks the blocks on
 * them; it starts no I/O for the others (docs/decisions.md, item 19; a table file the process
 * neither owns nor may write is skipped: the kernel would not say which of its pages are in memory).
 * Read-only handles don't warm.
 *
 * Thread safety: warm_start and warm_stop from one thread (the opener and closer); warm_bytes and
 * warm_running from any thread.
 */
#ifndef PL_WARM_H
#define PL_WARM_H

#include <stdint.h>

#include "version.h"

typedef struct warm warm;

/* Start mapping v's tables on a new thread, which holds a reference to v until it has warmed them.
 * *out is NULL when the thread cannot be started: warming is an optimisation, never an error. */
void warm_start(version *v, warm **out);
/* Stop the thread (it finishes the window it is mapping, a few MiB) and free w.  NULL is a no-op. */
void warm_stop(warm *w);
/* Bytes mapped so far, and whether the thread is still at work. */
uint64_t warm_bytes(const warm *w);
int warm_running(const warm *w);

#endif
