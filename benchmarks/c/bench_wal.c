// Build and run from the repository root:
//   gcc -std=c11 -O2 -D_GNU_SOURCE -Icsrc -o /tmp/bench_wal benchmarks/c/bench_wal.c csrc/*.c -lisal -lpthread
//   /tmp/bench_wal [DIR] [N]        (defaults: /tmp, 1000000)
/* bench_wal.c -- micro-benchmarks for the seed's two WAL record decisions
 * (docs/decisions.md, items 1 and 2).
 *
 * (a) CRC construction, CPU only: records are built into a malloc'd, pre-touched 256 MiB arena (written
 *     round-robin) so no I/O or page fault is measured.  Four ways of building one record
 *     (u64 lsn | u32 crc | u32 len | payload, CRC32C over everything but the crc field):
 *       in place     -- one buffer: lsn, len and payload written to the output, the CRC field left as a
 *                       placeholder, crc_extend over the two ranges around it, then the CRC stored.
 *                       This is what wal.c does (item 2's proposal).
 *       wal_encode   -- the same through wal.c's own wal_encode() (adds its kill-point check).
 *       two buffers  -- lsn + len + payload copied into a reused scratch buffer, CRC'd in one pass, then
 *                       the output built (the seed's current scheme, minus the allocation).
 *       two + malloc -- as two buffers, but the scratch buffer malloc'd and freed per record (the
 *                       seed's literal "two allocations").
 *     For 100-byte and 4 KiB payloads; best and median of 5 interleaved runs, ns per record.
 * (b) The real append path: wal_create() in a temp directory under DIR with timestamps off and on,
 *     then N wal_append() calls of one record each, whose payload is an encoded batch holding one put
 *     of a 16-byte key and a 100-byte value (123 bytes).  Records per CPU second (best and median of 3
 *     runs; file allocation and page faults of the shared mapping included, close and fsync excluded)
 *     and WAL bytes per record.  Also the cost of the clock read a timestamp needs.
 * All times are CPU time of the benchmarking thread (CLOCK_THREAD_CPUTIME_ID), so that other load on
 * the machine disturbs the figures less; the append path does no blocking I/O, so CPU time is its cost.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "batch.h"
#include "coding.h"
#include "crc.h"
#include "env.h"
#include "ikey.h"
#include "status.h"
#include "wal.h"

#define ARENA_BYTES ((size_t)256 << 20)
#define RUNS_A 5
#define RUNS_B 3

/* CPU time of this thread (user + system, so page faults and fallocate count): other load on the
 * machine then matters much less than with wall time. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Keep the compiler from discarding the work. */
static volatile uint32_t sink;

/* ---- (a) record construction ---- */

static size_t build_in_place(char *dst, uint64_t lsn, const char *payload, size_t len)
{
    put_u64(dst, lsn);
    put_u32(dst + 12, (uint32_t)len);
    memcpy(dst + WAL_REC_HEADER, payload, len);
    put_u32(dst + 8, crc_extend(crc_value(dst, 8), dst + 12, 4 + len));
    return WAL_REC_HEADER + len;
}

static size_t build_wal_encode(char *dst, uint64_t lsn, const char *payload, size_t len)
{
    return wal_encode(dst, 0, lsn, 0, payload, len);
}

static char *scratch;

static size_t build_two(char *dst, uint64_t lsn, const char *payload, size_t len)
{
    char *s = scratch;
    put_u64(s, lsn);
    put_u32(s + 8, (uint32_t)len);
    memcpy(s + 12, payload, len);
    uint32_t crc = crc_value(s, 12 + len);
    put_u64(dst, lsn);
    put_u32(dst + 8, crc);
    put_u32(dst + 12, (uint32_t)len);
    memcpy(dst + WAL_REC_HEADER, payload, len);
    return WAL_REC_HEADER + len;
}

static size_t build_two_malloc(char *dst, uint64_t lsn, const char *payload, size_t len)
{
    char *s = malloc(12 + len);
    if (!s)
        abort();
    put_u64(s, lsn);
    put_u32(s + 8, (uint32_t)len);
    memcpy(s + 12, payload, len);
    uint32_t crc = crc_value(s, 12 + len);
    free(s);
    put_u64(dst, lsn);
    put_u32(dst + 8, crc);
    put_u32(dst + 12, (uint32_t)len);
    memcpy(dst + WAL_REC_HEADER, payload, len);
    return WAL_REC_HEADER + len;
}

typedef size_t (*build_fn)(char *dst, uint64_t lsn, const char *payload, size_t len);

/* ns per record over n records, written round-robin into the arena. */
static double run_build(build_fn fn, char *arena, const char *payload, size_t len, long n)
{
    size_t off = 0, rec = WAL_REC_HEADER + len;
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        if (off + rec > ARENA_BYTES)
            off = 0;
        off += fn(arena + off, (uint64_t)i + 1, payload, len);
    }
    double t = now_s() - t0;
    sink ^= get_u32(arena + 8);
    return t * 1e9 / (double)n;
}

static void bench_build(void)
{
    char *arena = malloc(ARENA_BYTES);
    scratch = malloc(12 + 4096);
    char *payload = malloc(4096);
    if (!arena || !scratch || !payload) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    memset(arena, 1, ARENA_BYTES); /* touch every page before timing */
    for (int i = 0; i < 4096; i++)
        payload[i] = (char)(i * 131 + 7);

    /* The four constructions produce the same bytes. */
    char a[WAL_REC_HEADER + 4096], b[WAL_REC_HEADER + 4096], c[WAL_REC_HEADER + 4096], d[WAL_REC_HEADER + 4096];
    build_in_place(a, 77, payload, 4096);
    build_wal_encode(b, 77, payload, 4096);
    build_two(c, 77, payload, 4096);
    build_two_malloc(d, 77, payload, 4096);
    if (memcmp(a, b, sizeof a) || memcmp(a, c, sizeof a) || memcmp(a, d, sizeof a)) {
        fprintf(stderr, "the constructions disagree\n");
        exit(1);
    }

    struct {
        const char *name;
        build_fn fn;
    } ways[] = {{"in place (wal.c)", build_in_place},
                {"wal_encode()", build_wal_encode},
                {"two buffers", build_two},
                {"two + malloc", build_two_malloc}};
    size_t sizes[] = {100, 4096};
    long counts[] = {10000000, 2000000};
    printf("(a) record construction into memory, CRC32C via ISA-L, CPU ns/record (best / median of %d)\n", RUNS_A);
    printf("    %-18s %10s %22s %22s\n", "", "payload", "ns/record best / med", "vs in place (best)");
    for (int si = 0; si < 2; si++) {
        double r[4][RUNS_A];
        for (int wi = 0; wi < 4; wi++)
            run_build(ways[wi].fn, arena, payload, sizes[si], counts[si] / 10); /* warm up */
        for (int k = 0; k < RUNS_A; k++) /* the ways interleaved, so drift hits them alike */
            for (int wi = 0; wi < 4; wi++)
                r[wi][k] = run_build(ways[wi].fn, arena, payload, sizes[si], counts[si]);
        for (int wi = 0; wi < 4; wi++)
            qsort(r[wi], RUNS_A, sizeof r[wi][0], cmp_double);
        for (int wi = 0; wi < 4; wi++)
            printf("    %-18s %8zu B %11.1f / %-9.1f %+21.1f%%\n", ways[wi].name, sizes[si], r[wi][0],
                   r[wi][RUNS_A / 2], 100.0 * (r[wi][0] - r[0][0]) / r[0][0]);
        printf("    (%ld records per run)\n", counts[si]);
    }
    free(arena);
    free(scratch);
    free(payload);
}

/* ---- (b) the real append path ---- */

static double run_append(const char *dir, int ts, long n, double *bytes_per_rec)
{
    char path[512];
    snprintf(path, sizeof path, "%s/bench.wal", dir);
    unlink(path);
    /* payload: one put of a 16-byte key and a 100-byte value */
    pl_batch *b = pl_batch_new();
    char key[16], val[100];
    memset(key, 'k', sizeof key);
    for (int i = 0; i < 100; i++)
        val[i] = (char)(i * 7);
    pl_batch_put(b, key, sizeof key, val, sizeof val);
    char *payload = b->rep.data;
    size_t len = b->rep.len;
    size_t key_at = BATCH_HEADER + 1 + 1; /* kind, varint key length */

    wal *w = NULL;
    size_t rec = (size_t)WAL_REC_HEADER + (ts ? 8 : 0) + len;
    size_t map = WAL_FILE_HEADER + rec * (size_t)n + (1u << 20);
    if (wal_create(path, ts, map, &w) != PL_OK) {
        fprintf(stderr, "wal_create %s: %s\n", path, pl_errmsg());
        exit(1);
    }
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        put_u64(payload + key_at + 8, (uint64_t)i); /* a distinct key per record */
        wal_rec r = {(uint64_t)i + 1, 1, payload, len};
        if (wal_append(w, &r, 1) != PL_OK) {
            fprintf(stderr, "wal_append: %s\n", pl_errmsg());
            exit(1);
        }
    }
    double t = now_s() - t0;
    *bytes_per_rec = (double)(wal_written(w) - WAL_FILE_HEADER) / (double)n;
    wal_close(w, 0);
    unlink(path);
    pl_batch_free(b);
    return (double)n / t;
}

static void bench_append(const char *base, long n)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/bench_wal.XXXXXX", base);
    if (!mkdtemp(dir)) {
        perror(dir);
        exit(1);
    }
    double rate[2][RUNS_B], bpr[2] = {0, 0};
    run_append(dir, 0, n / 10, &bpr[0]); /* warm up */
    for (int k = 0; k < RUNS_B; k++)
        for (int ts = 0; ts < 2; ts++)
            rate[ts][k] = run_append(dir, ts, n, &bpr[ts]);
    rmdir(dir);

    /* the clock read a timestamped append adds (once per wal_append call) */
    long m = 10000000;
    double t0 = now_s();
    uint64_t acc = 0;
    for (long i = 0; i < m; i++)
        acc += env_wall_us();
    double clock_ns = (now_s() - t0) * 1e9 / (double)m;
    sink ^= (uint32_t)acc;

    printf("\n(b) wal_append, one record per call, %ld records of a 16 B key + 100 B value batch (%s)\n", n, base);
    printf("    %-14s %20s %14s %16s %14s\n", "timestamps", "records/CPU-s best", "median", "ns/record best",
           "WAL B/record");
    for (int ts = 0; ts < 2; ts++) {
        qsort(rate[ts], RUNS_B, sizeof rate[ts][0], cmp_double);
        double best = rate[ts][RUNS_B - 1], med = rate[ts][RUNS_B / 2];
        printf("    %-14s %20.0f %14.0f %16.1f %14.1f\n", ts ? "on" : "off", best, med, 1e9 / best, bpr[ts]);
    }
    double b0 = rate[0][RUNS_B - 1], b1 = rate[1][RUNS_B - 1];
    printf("    timestamps: %+.1f%% WAL bytes, %+.1f%% records/s (best vs best); one clock read %.1f ns\n",
           100.0 * (bpr[1] - bpr[0]) / bpr[0], 100.0 * (b1 - b0) / b0, clock_ns);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    long n = argc > 2 ? atol(argv[2]) : 1000000;
    if (n < 10)
        n = 10;
    bench_build();
    bench_append(dir, n);
    return 0;
}
