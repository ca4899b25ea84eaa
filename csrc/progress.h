/*
 * progress.h -- how far a long call made by this thread has got: pl_verify, pl_repair and
 * pl_db_compact count the bytes of the files they have to go through (progress_expect) and the
 * bytes done (progress_done, which reports done and total to the function pl_set_progress set).
 * Both are no-ops when no function is set.  Reports come between files (a compaction: between the
 * tables it writes), from the calling thread.
 */
#ifndef PL_PROGRESS_H
#define PL_PROGRESS_H
#include <stdint.h>

#include "pylsm.h"

void progress_expect(uint64_t bytes);
void progress_done(uint64_t bytes);
/* Report the whole expected total as done (work that came out smaller than expected). */
void progress_finish(void);

#endif
