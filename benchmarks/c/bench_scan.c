// Build and run from the repository root:
//   gcc -std=c11 -O2 -g -D_GNU_SOURCE -Icsrc -o /tmp/bench_scan benchmarks/c/bench_scan.c csrc/*.c -lisal -lpthread
//   /tmp/bench_scan DB MODE [COUNT]
//   valgrind --tool=callgrind --toggle-collect=timed /tmp/bench_scan DB MODE [COUNT]   (the timed part only)
/* bench_scan.c -- the C side of the readseq, readreverse and seekrandom workloads (benchmarks/test_read.py)
 * on an existing database DB (e.g. one a settled benchmark built), without Python, for callgrind and
 * perf: the calls are the ones the binding makes (pylsm/_pylsm.c, iter_refill).
 *
 *   MODE fwd  -- one iterator, seek_first, pl_iter_read in chunks of 1,024 entries to the end
 *   MODE rev  -- the same backward (seek_last, reverse reads)
 *   MODE seek -- COUNT (default 20,000) times: a new iterator with the lower bound a random present key
 *                (the key of entry i is "%016d" of i, as the benchmark writes them; i below the entry
 *                count minus 100), seek_first, then reads of 16, 32 and 64 entries (the binding's growing
 *                chunks) until 100 are read, then the iterator is freed
 *
 * Before the timed part, an untimed forward pass counts the entries and checks each block's CRC once (as
 * the benchmark's first round does; its median is of the warm rounds).
 *
 * Prints entries (or seeks) per CPU second of the thread (CLOCK_THREAD_CPUTIME_ID) and a checksum of the
 * bytes read, so that runs before and after a change can be compared.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pylsm.h"

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "%s: rc %d: %s\n", what, rc, pl_errmsg());
    exit(1);
}

static uint64_t sum_buf(const pl_buf *b, size_t n, uint64_t h)
{
    const char *p = b->data;
    for (size_t i = 0; i < n; i++) {
        uint64_t kn, vn;
        memcpy(&kn, p, 8);
        memcpy(&vn, p + 8, 8);
        h = h * 31 + (unsigned char)p[16 + kn - 1] + kn + vn;
        p += 16 + kn + vn;
    }
    return h;
}

/* One full scan; the number of entries. */
static uint64_t scan_pass(pl_db *db, int rev, pl_buf *buf, uint64_t *h)
{
    pl_iter *it;
    int rc = pl_iter_new(db, NULL, &it);
    if (rc)
        die("iter", rc);
    uint64_t total = 0;
    rc = rev ? pl_iter_seek_last(it) : pl_iter_seek_first(it);
    while (!rc && pl_iter_valid(it)) {
        size_t n;
        rc = pl_iter_read(it, rev, 3, 1024, 1u << 20, buf, &n);
        *h = sum_buf(buf, n, *h);
        total += n;
    }
    if (rc)
        die("read", rc);
    pl_iter_free(it);
    return total;
}

/* count seeks of 100 entries from random keys below entries - 100. */
static uint64_t seek_pass(pl_db *db, long count, uint64_t entries, pl_buf *buf, uint64_t *h)
{
    srand(4);
    for (long s = 0; s < count; s++) {
        char key[32];
        uint64_t i = ((uint64_t)rand() * RAND_MAX + (uint64_t)rand()) % (entries - 100);
        int kn = snprintf(key, sizeof key, "%016llu", (unsigned long long)i);
        pl_iter *it;
        int rc = pl_iter_new(db, NULL, &it);
        if (rc)
            die("iter", rc);
        pl_iter_set_bounds(it, key, (size_t)kn, 1, NULL, 0, 0);
        rc = pl_iter_seek_first(it);
        size_t got = 0, chunk = 16;
        while (!rc && got < 100 && pl_iter_valid(it)) {
            size_t n;
            rc = pl_iter_read(it, 0, 3, chunk, 1u << 20, buf, &n);
            *h = sum_buf(buf, n, *h);
            got += n;
            chunk *= 2;
        }
        if (rc)
            die("seek read", rc);
        pl_iter_free(it);
    }
    return (uint64_t)count;
}

/* The timed part (callgrind --toggle-collect=timed). */
__attribute__((noinline)) static uint64_t timed(pl_db *db, int mode, long count, uint64_t entries, pl_buf *buf,
                                                uint64_t *h)
{
    return mode == 2 ? seek_pass(db, count, entries, buf, h) : scan_pass(db, mode, buf, h);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s DB fwd|rev|seek [COUNT]\n", argv[0]);
        return 2;
    }
    const char *name = argv[2];
    int mode = !strcmp(name, "fwd") ? 0 : !strcmp(name, "rev") ? 1 : !strcmp(name, "seek") ? 2 : -1;
    if (mode < 0) {
        fprintf(stderr, "unknown mode %s\n", name);
        return 2;
    }
    long count = argc > 3 ? atol(argv[3]) : 20000;
    pl_options o;
    pl_options_init(&o);
    o.create_if_missing = 0;
    o.block_cache_bytes = 32u << 20;
    pl_db *db;
    int rc = pl_db_open(argv[1], &o, &db);
    if (rc)
        die("open", rc);
    pl_buf buf = {0};
    uint64_t h = 0;
    /* untimed: a forward pass that counts the entries and checks every block once (as the benchmark's
     * first round does; its median is of the rounds after) */
    uint64_t entries = scan_pass(db, 0, &buf, &h);
    if (mode == 2 && entries <= 100)
        die("too few entries", PL_INVALID);
    h = 0;
    double t0 = cpu_now();
    uint64_t total = timed(db, mode, count, entries, &buf, &h);
    double dt = cpu_now() - t0;
    printf("%s: %llu %s in %.3f s CPU: %.0f/s, %.1f ns each (checksum %016llx)\n", name,
           (unsigned long long)total, mode == 2 ? "seeks" : "entries", dt, total / dt,
           dt * 1e9 / (double)total, (unsigned long long)h);
    pl_buf_free(&buf);
    pl_db_close(db);
    return 0;
}
