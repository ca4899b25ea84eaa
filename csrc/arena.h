/*
 * arena.h -- bump allocation for the memtable: many small allocations freed all at once.
 *
 * Thread safety: arena_alloc is called by one thread at a time (the memtable's single writer);
 * arena_usage may be read from any thread.
 */
#ifndef PL_ARENA_H
#define PL_ARENA_H

#include <stdatomic.h>
#include <stddef.h>

typedef struct arena_block arena_block;

typedef struct arena {
    char *ptr;           /* next free byte of the current block */
    size_t left;         /* bytes left in it */
    arena_block *blocks; /* every block, newest first */
    atomic_size_t usage; /* bytes handed out (what the memtable holds, not the blocks' slack) */
} arena;

void arena_init(arena *a);
void arena_destroy(arena *a);
/* n bytes aligned to 8; NULL when out of memory. */
void *arena_alloc(arena *a, size_t n);
static inline size_t arena_usage(arena *a) { return atomic_load_explicit(&a->usage, memory_order_relaxed); }

#endif
