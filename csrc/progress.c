/* progress.c -- per-thread progress of long calls; see progress.h. */
#include "progress.h"

static _Thread_local pl_progress_fn progress_fn;
static _Thread_local void *progress_ctx;
static _Thread_local uint64_t progress_total, progress_sofar;

void pl_set_progress(pl_progress_fn fn, void *ctx)
{
    progress_fn = fn;
    progress_ctx = ctx;
    progress_total = progress_sofar = 0;
}

void progress_expect(uint64_t bytes)
{
    if (progress_fn)
        progress_total += bytes;
}

void progress_done(uint64_t bytes)
{
    if (!progress_fn)
        return;
    progress_sofar += bytes;
    if (progress_sofar > progress_total)
        progress_total = progress_sofar; /* work found on the way (compaction moving data twice) */
    progress_fn(progress_ctx, progress_sofar, progress_total);
}

void progress_finish(void)
{
    if (progress_fn && progress_sofar < progress_total)
        progress_done(progress_total - progress_sofar);
}
