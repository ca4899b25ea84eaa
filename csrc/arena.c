/* arena.c -- see arena.h. */
#include "arena.h"

#include <stdint.h>
#include <stdlib.h>

#define ARENA_BLOCK (256u * 1024u)

struct arena_block {
    arena_block *next;
    max_align_t data[];
};

void arena_init(arena *a)
{
    a->ptr = NULL;
    a->left = 0;
    a->blocks = NULL;
    atomic_init(&a->usage, 0);
}

void arena_destroy(arena *a)
{
    while (a->blocks) {
        arena_block *b = a->blocks;
        a->blocks = b->next;
        free(b);
    }
    a->ptr = NULL;
    a->left = 0;
}

static void *new_block(arena *a, size_t size)
{
    arena_block *b = malloc(sizeof(arena_block) + size);
    if (!b)
        return NULL;
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
