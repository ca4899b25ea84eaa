/* arena.c -- see arena.h. */
#include "arena.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define ARENA_BLOCK (256u * 1024u)

struct arena_block {
    arena_block *next;
    size_t size; /* of data */
    max_align_t data[];
};

struct arena_pool {
    pthread_mutex_t mu;
    arena_block *free; /* blocks of ARENA_BLOCK data bytes */
    size_t bytes, max_bytes;
};

arena_pool *arena_pool_new(size_t max_bytes)
{
    arena_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    pthread_mutex_init(&p->mu, NULL);
    /* Tried: 2 MiB blocks with MADV_HUGEPAGE (one fault per 2 MiB).  With the kernel's defrag on
     * madvise each such fault compacted memory and took 5-17 ms: slower than 512 small faults. */
    p->max_bytes = max_bytes;
    return p;
}

void arena_pool_free(arena_pool *p)
{
    if (!p)
        return;
    while (p->free) {
        arena_block *b = p->free;
        p->free = b->next;
        UNPOISON(b->data, b->size);
        free(b);
    }
    pthread_mutex_destroy(&p->mu);
    free(p);
}

void arena_init(arena *a, arena_pool *pool)
{
    a->ptr = NULL;
    a->left = 0;
    a->blocks = NULL;
    a->pool = pool;
    atomic_init(&a->usage, 0);
}

void arena_destroy(arena *a)
{
    arena_pool *p = a->pool;
    while (a->blocks) {
        arena_block *b = a->blocks;
        a->blocks = b->next;
        int kept = 0;
        if (p && b->size == ARENA_BLOCK) {
            pthread_mutex_lock(&p->mu);
            if (p->bytes + b->size <= p->max_bytes) {
                POISON(b->data, b->size); /* a read through a dead memtable's pointer is caught */
                b->next = p->free;
                p->free = b;
                p->bytes += b->size;
                kept = 1;
            }
            pthread_mutex_unlock(&p->mu);
        }
        if (!kept)
            free(b);
    }
    a->ptr = NULL;
    a->left = 0;
}

/* A block of size data bytes: one the pool kept, when it has one of that size, or a new one. */
static void *new_block(arena *a, size_t size)
{
    arena_block *b = NULL;
    arena_pool *p = a->pool;
    if (p && size == ARENA_BLOCK) {
        pthread_mutex_lock(&p->mu);
        if ((b = p->free)) {
            p->free = b->next;
            p->bytes -= b->size;
        }
        pthread_mutex_unlock(&p->mu);
        if (b)
            UNPOISON(b->data, b->size);
    }
    if (!b) {
        if (!(b = malloc(sizeof(arena_block) + size)))
            return NULL;
        b->size = size;
    }
    b->next = a->blocks;
    a->blocks = b;
    return b->data;
}

void *arena_alloc(arena *a, size_t n)
{
    n = (n + 7) & ~(size_t)7;
    atomic_fetch_add_explicit(&a->usage, n, memory_order_relaxed);
    if (n <= a->left) {
        void *p = a->ptr;
        a->ptr += n;
        a->left -= n;
        return p;
    }
    if (n > ARENA_BLOCK / 4) /* big: its own block, keep the current one */
        return new_block(a, n);
    char *p = new_block(a, ARENA_BLOCK);
    if (!p)
        return NULL;
    a->ptr = p + n;
    a->left = ARENA_BLOCK - n;
    return p;
}
