/* test_arena.c -- bump allocation (arena.h): alignment, many small allocations that never overlap,
 * big allocations in their own blocks, and a usage figure that grows with what was taken. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "testutil.h"

typedef struct {
    unsigned char *p;
    size_t n;
    unsigned char fill;
} alloc_rec;

static void test_small(void)
{
    arena a;
    arena_init(&a, NULL);
    CHECK_EQ(arena_usage(&a), 0);
    enum { N = 200000 };
    alloc_rec *recs = malloc(sizeof *recs * N);
    unsigned long long s = 3;
    int misaligned = 0, nulls = 0, shrank = 0;
    size_t prev_usage = 0, total = 0;
    for (int i = 0; i < N; i++) {
        size_t n = 1 + tu_rand(&s) % 200;
        unsigned char *p = arena_alloc(&a, n);
        if (!p) {
            nulls++;
            recs[i].p = NULL;
            continue;
        }
        if ((uintptr_t)p % 8)
            misaligned++;
        recs[i].p = p;
        recs[i].n = n;
        recs[i].fill = (unsigned char)(i * 131 + 7);
        memset(p, recs[i].fill, n);
        total += n;
        size_t u = arena_usage(&a);
        if (u < prev_usage)
            shrank++;
        prev_usage = u;
    }
    CHECK_EQ(nulls, 0);
    CHECK_EQ(misaligned, 0);
    CHECK_EQ(shrank, 0);
    CHECK(arena_usage(&a) >= total);
    /* Not wildly more than asked for: at most 8-byte rounding plus block tails (< 2x here). */
    CHECK(arena_usage(&a) < 2 * total + (1u << 20));
    /* Every allocation still holds what was written into it: no two overlap. */
    int corrupt = 0;
    for (int i = 0; i < N; i++) {
        if (!recs[i].p)
            continue;
        for (size_t j = 0; j < recs[i].n; j++)
            if (recs[i].p[j] != recs[i].fill) {
                corrupt++;
                break;
            }
    }
    CHECK_EQ(corrupt, 0);
    free(recs);
    arena_destroy(&a);
}

static void test_big(void)
{
    arena a;
    arena_init(&a, NULL);
    /* Interleave big and small allocations: the big ones must not disturb the small block. */
    unsigned char *small1 = arena_alloc(&a, 24);
    CHECK(small1 != NULL);
    memset(small1, 0x11, 24);
    size_t before = arena_usage(&a);
    size_t sizes[] = {64u << 10, (64u << 10) + 1, 256u << 10, (1u << 20) + 3, 10u << 20, 300000};
    unsigned char *bigs[6];
    int bad = 0;
    size_t taken = 24;
    for (int i = 0; i < 6; i++) {
        size_t u0 = arena_usage(&a);
        bigs[i] = arena_alloc(&a, sizes[i]);
        taken += sizes[i];
        CHECK(bigs[i] != NULL);
        if (!bigs[i])
            continue;
        if ((uintptr_t)bigs[i] % 8)
            bad++;
        memset(bigs[i], 0x40 + i, sizes[i]);
        /* usage never shrinks and covers everything handed out (an allocation that still fits the
         * current block costs nothing new) */
        if (arena_usage(&a) < u0 || arena_usage(&a) < taken)
            bad++;
    }
    CHECK_EQ(bad, 0);
    CHECK(arena_usage(&a) >= before + (64u << 10) + (256u << 10) + (11u << 20));
    unsigned char *small2 = arena_alloc(&a, 16);
    CHECK(small2 != NULL);
    memset(small2, 0x22, 16);
    for (int i = 0; i < 6; i++) {
        if (!bigs[i])
            continue;
        size_t j;
        for (j = 0; j < sizes[i] && bigs[i][j] == 0x40 + i; j++)
            ;
        CHECK_EQ(j, sizes[i]);
    }
    for (int j = 0; j < 24; j++)
        if (small1[j] != 0x11)
            bad++;
    CHECK_EQ(bad, 0);
    /* Big allocations are exact: writing their last byte is inside the block (ASan would flag an
     * undersized malloc). */
    unsigned char *odd = arena_alloc(&a, 100001);
    CHECK(odd != NULL);
    if (odd)
        odd[100000] = 1;
    arena_destroy(&a);
    /* destroy leaves an arena that can be used again */
    CHECK(arena_alloc(&a, 8) != NULL);
    arena_destroy(&a);
}

static void test_exact_fill(void)
{
    /* Allocations of exactly 8 bytes: consecutive ones are adjacent within a block, and a block
     * boundary starts a new aligned block. */
    arena a;
    arena_init(&a, NULL);
    char *prev = arena_alloc(&a, 8);
    int adjacent = 0, jumps = 0, misaligned = 0;
    for (int i = 0; i < 100000; i++) {
        char *p = arena_alloc(&a, 8);
        if ((uintptr_t)p % 8)
            misaligned++;
        if (p == prev + 8)
            adjacent++;
        else
            jumps++;
        prev = p;
    }
    CHECK_EQ(misaligned, 0);
    CHECK(adjacent > 99000);
    CHECK(jumps >= 1 && jumps < 10); /* 800 KB over 256 KiB blocks: about 3 new blocks */
    /* Sizes that round up to 8 share the rounding. */
    char *x = arena_alloc(&a, 1), *y = arena_alloc(&a, 1);
    CHECK(y == x + 8 || (uintptr_t)y % 8 == 0);
    arena_destroy(&a);
}

/* A pool: the blocks of a destroyed arena serve the next one, up to the pool's budget; big
 * allocations (own blocks) are never kept; a pool with a big budget serves many arenas. */
static void test_pool(void)
{
    arena_pool *p = arena_pool_new(600 * 1024); /* room for two 256 KiB blocks */
    arena a, b;
    arena_init(&a, p);
    char *first[3];
    for (int i = 0; i < 3; i++) { /* three blocks: 200 KiB each does not fit twice in one */
        first[i] = arena_alloc(&a, 60 * 1024);
        CHECK(first[i] != NULL);
        for (int j = 0; j < 3; j++)
            CHECK(arena_alloc(&a, 60 * 1024) != NULL);
        memset(first[i], i + 1, 60 * 1024);
    }
    CHECK(arena_alloc(&a, 1 << 20) != NULL); /* a big one: its own block, freed at destroy */
    arena_destroy(&a);
    arena_init(&b, p);
    int reused = 0;
    for (int i = 0; i < 3; i++) {
        char *q = arena_alloc(&b, 60 * 1024); /* the first of a block */
        CHECK(q != NULL);
        memset(q, 0x5a, 60 * 1024); /* the block is ours again: writable, and ASan agrees */
        for (int k = 0; k < 3; k++)
            reused += q == first[k];
        for (int j = 0; j < 3; j++)
            CHECK(arena_alloc(&b, 60 * 1024) != NULL);
    }
    CHECK_EQ(reused, 2); /* the budget kept two of the three blocks */
    CHECK_EQ(arena_usage(&b), 12 * 60 * 1024);
    arena_destroy(&b);
    arena_pool_free(p);

    arena_pool *hp = arena_pool_new(32u << 20);
    arena h;
    arena_init(&h, hp);
    size_t total = 0;
    for (int i = 0; i < 100; i++) {
        char *q = arena_alloc(&h, 100 * 1024);
        CHECK(q != NULL && ((uintptr_t)q & 7) == 0);
        q[0] = q[100 * 1024 - 1] = 1;
        total += 100 * 1024;
    }
    CHECK_EQ(arena_usage(&h), total);
    arena_destroy(&h);
    arena_pool_free(hp);
}

int main(void)
{
    test_pool();
    test_small();
    test_big();
    test_exact_fill();
    return test_report();
}
