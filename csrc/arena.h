/*
 * arena.h -- bump allocation for the memtable: many small allocations freed all at once.
 *
 * Thread safety: arena_alloc is called by one thread at a time (the memtable's single writer);
 * arena_usage may be read from any thread.  An arena_pool is thread-safe.
 *
 * A pool keeps the blocks of arenas destroyed (memtables flushed) for the next arenas, up to a byte
 * budget: a new memtable then writes into pages already mapped, instead of taking a page fault (and the
 * kernel zeroing a page) every 4 KiB.  A load of 1M pairs took 32,000 faults, half the writer's CPU
 * time (docs/decisions.md).
 */
#ifndef PL_ARENA_H
#define PL_ARENA_H

#include <stdatomic.h>
#include <stddef.h>

typedef struct arena_block arena_block;
typedef struct arena_pool arena_pool;

/* A pool keeping up to max_bytes of free blocks; NULL when out of memory. */
arena_pool *arena_pool_new(size_t max_bytes);
/* Free the pool and the blocks it keeps (no arena may use it any more). */
void arena_pool_free(arena_pool *p);

typedef struct arena {
    char *ptr;           /* next free byte of the current block */
    size_t left;         /* bytes left in it */
    arena_block *blocks; /* every block, newest first */
    atomic_size_t usage; /* bytes handed out (what the memtable holds, not the blocks' slack) */
    arena_pool *pool;    /* where blocks come from and go back to, or NULL */
} arena;

/* pool may be NULL: blocks are then malloc'd and freed. */
void arena_init(arena *a, arena_pool *pool);
void arena_destroy(arena *a);
/* n bytes aligned to 8; NULL when out of memory. */
void *arena_alloc(arena *a, size_t n);
static inline size_t arena_usage(arena *a) { return atomic_load_explicit(&a->usage, memory_order_relaxed); }

#endif
