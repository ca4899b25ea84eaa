/* warm.c -- mapping a warm database's tables into the page tables after open; see warm.h. */
#include "warm.h"

#include "env.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

struct warm {
    version *v;
    pthread_t thread;
    atomic_int stop;
    atomic_int running;
    atomic_uint_fast64_t bytes;
};

static void *warm_main(void *arg)
{
    warm *w = arg;
    env_thread_name("pylsm-warm");
    /* Newest data first: level 0, then down the levels, as gets reach them.  A table a compaction
     * has replaced meanwhile is skipped. */
    for (int l = 0; l < NUM_LEVELS && !atomic_load(&w->stop); l++)
        for (int i = 0; i < w->v->n[l] && !atomic_load(&w->stop); i++)
            if (!atomic_load(&w->v->files[l][i]->obsolete))
                atomic_fetch_add(&w->bytes, table_warm(w->v->files[l][i]->t, &w->stop));
    /* Let the tables go now, not at close: the ones compaction replaced are deleted at their last
     * reference. */
    version_unref(w->v);
    w->v = NULL;
    atomic_store(&w->running, 0);
    return NULL;
}

void warm_start(version *v, warm **out)
{
    *out = NULL;
    warm *w = calloc(1, sizeof *w);
    if (!w)
        return;
    w->v = v;
    version_ref(v);
    atomic_store(&w->running, 1);
    if (pthread_create(&w->thread, NULL, warm_main, w) != 0) {
        version_unref(v);
        free(w);
        return;
    }
    *out = w;
}

void warm_stop(warm *w)
{
    if (!w)
        return;
    atomic_store(&w->stop, 1);
    pthread_join(w->thread, NULL);
    free(w);
}

uint64_t warm_bytes(const warm *w) { return w ? atomic_load(&((warm *)w)->bytes) : 0; }

int warm_running(const warm *w) { return w ? atomic_load(&((warm *)w)->running) : 0; }
