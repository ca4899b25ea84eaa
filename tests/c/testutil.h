/*
 * testutil.h -- the C tests' assertions: CHECK* count passes and failures and print each failure with
 * its line; test_report() prints "N passed, M failed" and gives main()'s exit status.
 */
#ifndef PL_TESTUTIL_H
#define PL_TESTUTIL_H

#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "pylsm.h"

/* Remove a directory tree (or a file); what does not exist is ignored. */
static inline int tu_rm_entry(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)flag;
    (void)f;
    return remove(p);
}
static inline void tu_rm_rf(const char *p) { nftw(p, tu_rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* Whether a directory entry named p exists (a dangling link counts; nothing is followed). */
static inline int tu_exists(const char *p)
{
    struct stat st;
    return lstat(p, &st) == 0;
}

/* base/name in one of four rotating static buffers (a call may hold up to four at once). */
static inline char *tu_path(const char *base, const char *name)
{
    static char p[4][256];
    static int i;
    i = (i + 1) % 4;
    snprintf(p[i], sizeof p[i], "%s/%s", base, name);
    return p[i];
}

static int tu_passed, tu_failed;

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (cond) {                                                                      \
            tu_passed++;                                                                 \
        } else {                                                                         \
            tu_failed++;                                                                 \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);     \
        }                                                                                \
    } while (0)

#define CHECK_EQ(a, b)                                                                   \
    do {                                                                                 \
        long long a_ = (long long)(a), b_ = (long long)(b);                              \
        if (a_ == b_) {                                                                  \
            tu_passed++;                                                                 \
        } else {                                                                         \
            tu_failed++;                                                                 \
            fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %lld, %s == %lld\n", __FILE__, \
                    __LINE__, #a, a_, #b, b_);                                           \
        }                                                                                \
    } while (0)

/* A PL_* return code. */
#define CHECK_RC(expr, want)                                                             \
    do {                                                                                 \
        int r_ = (expr), w_ = (want);                                                    \
        if (r_ == w_) {                                                                  \
            tu_passed++;                                                                 \
        } else {                                                                         \
            tu_failed++;                                                                 \
            fprintf(stderr, "%s:%d: %s returned %s, expected %s (%s)\n", __FILE__, __LINE__, \
                    #expr, pl_code_name(r_), pl_code_name(w_), pl_errmsg());             \
        }                                                                                \
    } while (0)

static inline int test_report(void)
{
    printf("%d passed, %d failed\n", tu_passed, tu_failed);
    return tu_failed != 0;
}

/* A small deterministic PRNG (xorshift64*) so every run is reproducible. */
static inline unsigned long long tu_rand(unsigned long long *s)
{
    unsigned long long x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

#endif
