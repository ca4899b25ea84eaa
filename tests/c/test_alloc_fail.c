/*
 * test_alloc_fail.c -- the Nth allocation fails, for every N across a whole workload.
 *
 * This binary is linked with -Wl,--wrap for malloc, calloc, realloc, strdup and posix_memalign (see the
 * Makefile), so every allocation of the engine goes through __wrap_* below, which can fail the Nth one
 * from a given moment.  The workload: open a new database, puts that switch memtables and flush, a
 * batch, gets, a snapshot, an iterator scanned both ways, an ingest, a flush, a compaction, close.
 * A clean run counts the allocations; then for every N from 1 to that count the Nth fails (once), and:
 *  - nothing crashes, and every failure is reported: PL_NOMEM where the allocation failed in the
 *    caller's own call, PL_READONLY naming "out of memory" where it failed in the background thread
 *    (a flush or a compaction), after which the database refuses writes until reopened;
 *  - what the workload allocated is freed (LeakSanitizer checks it at exit: ctest runs with
 *    detect_leaks=1);
 *  - reopened with allocations working, the database holds a prefix of the puts with every put that
 *    returned PL_OK, and reads right.
 * Then the same for an open of a database with tables (reopen_sweep): nothing is lost.  Then the whole
 * sweep again with zstd tables whose dictionary is trained from 12 KiB of samples (the compaction's
 * table trains one and compresses its later blocks with it).
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testhooks.h"
#include "testutil.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
int __real_posix_memalign(void **p, size_t align, size_t n);

static int first_code; /* the first error of a run, and its message */
static char first_msg[256];

static atomic_long countdown; /* 0: off; >0: the allocation that takes it to 0 fails */
static atomic_long counted;   /* allocations seen since arm() */
static atomic_int fired;

static void arm(long nth)
{
    atomic_store(&fired, 0);
    atomic_store(&counted, 0);
    atomic_store(&countdown, nth);
}

static void disarm(void) { atomic_store(&countdown, 0); }

static int should_fail(void)
{
    atomic_fetch_add(&counted, 1);
    long c = atomic_load(&countdown);
    while (c > 0) {
        if (atomic_compare_exchange_weak(&countdown, &c, c - 1)) {
            if (c == 1) {
                atomic_store(&fired, 1);
                return 1;
            }
            return 0;
        }
    }
    return 0;
}

void *__wrap_malloc(size_t n) { return should_fail() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t size) { return should_fail() ? NULL : __real_calloc(n, size); }
void *__wrap_realloc(void *p, size_t n) { return should_fail() ? NULL : __real_realloc(p, n); }
char *__wrap_strdup(const char *s)
{
    if (should_fail()) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_strdup(s);
}
int __wrap_posix_memalign(void **p, size_t align, size_t n)
{
    return should_fail() ? ENOMEM : __real_posix_memalign(p, align, n);
}

#define NKEYS 500

static int zstd_run; /* the workload writes zstd tables, with words for values */

static void key_of(int i, char *k) { snprintf(k, 16, "key%06d", i); }
static void val_of(int i, char *v)
{
    if (zstd_run) {
        static const char *words[] = {"alpha", "bravo", "lisbon", "oslo", "score", "tags", "true", "null"};
        uint32_t r = (uint32_t)i * 2654435761u;
        size_t n = 0;
        while (n < 128) {
            r = r * 1103515245u + 12345u;
            const char *w = words[(r >> 16) % 8];
            size_t wl = strlen(w);
            memcpy(v + n, w, 128 - n < wl ? 128 - n : wl);
            n += 128 - n < wl ? 128 - n : wl;
            if (n < 128)
                v[n++] = ' ';
        }
        return;
    }
    memset(v, 'a' + i % 26, 128);
    memcpy(v, &i, sizeof i);
}

/* The workload; returns how many of puts 0..NKEYS-1 returned PL_OK (in order: it stops at the first
 * failure of a write).  *nomem: some call failed with PL_NOMEM. */
static int workload(const char *dir, int *errors, int *nomem)
{
    pl_options o;
    pl_options_init(&o);
    o.memtable_bytes = 16 << 10;
    o.sync_mode = PL_SYNC_NONE;
    if (zstd_run)
        o.compression = PL_COMPRESS_ZSTD;
    pl_db *db = NULL;
    int rc = pl_db_open(dir, &o, &db);
    int acked = 0;
#define NOTE(r)                              \
    do {                                     \
        int r_ = (r); /* once: r is a call */ \
        if (r_) {                            \
            if (!*errors) {                  \
                first_code = r_;             \
                snprintf(first_msg, sizeof first_msg, "%s", pl_errmsg()); \
            }                                \
            (*errors)++;                     \
            *nomem |= r_ == PL_NOMEM;        \
        }                                    \
    } while (0)
    NOTE(rc);
    if (rc)
        return 0;
    char k[16], v[128];
    int stopped = 0;
    for (int i = 0; i < NKEYS && !stopped; i++) {
        key_of(i, k);
        val_of(i, v);
        if (i % 100 == 50) { /* a batch of two */
            pl_batch *b = pl_batch_new();
            if (!b) {
                NOTE(PL_NOMEM);
                stopped = 1;
                break;
            }
            char k2[16], v2[128];
            key_of(i + 1, k2);
            val_of(i + 1, v2);
            rc = pl_batch_put(b, k, strlen(k), v, sizeof v);
            if (!rc)
                rc = pl_batch_put(b, k2, strlen(k2), v2, sizeof v2);
            if (!rc)
                rc = pl_db_write(db, b, 0);
            pl_batch_free(b);
            NOTE(rc);
            if (rc)
                stopped = 1;
            else
                acked = ++i + 1;
            continue;
        }
        rc = pl_db_put(db, k, strlen(k), v, sizeof v, 0);
        NOTE(rc);
        if (rc)
            stopped = 1;
        else
            acked = i + 1;
        if (i % 300 == 299) {
            pl_buf out = {0};
            key_of(i / 2, k);
            rc = pl_db_get(db, NULL, k, strlen(k), &out, 0);
            if (rc != PL_OK && rc != PL_NOTFOUND)
                NOTE(rc);
            pl_buf_free(&out);
        }
    }
    pl_snapshot *snap = NULL;
    rc = pl_snapshot_new(db, &snap);
    NOTE(rc);
    pl_iter *it = NULL;
    rc = pl_iter_new(db, snap, &it);
    NOTE(rc);
    if (!rc) {
        int n = 0;
        for (rc = pl_iter_seek_first(it); !rc && pl_iter_valid(it); rc = pl_iter_next(it))
            n++;
        NOTE(rc ? rc : pl_iter_status(it));
        for (rc = pl_iter_seek_last(it); !rc && pl_iter_valid(it); rc = pl_iter_prev(it))
            n--;
        NOTE(rc ? rc : pl_iter_status(it));
        pl_iter_free(it);
    }
    if (snap)
        pl_snapshot_release(snap);
    if (!stopped) {
        pl_ingest *g = NULL;
        rc = pl_ingest_new(db, &g);
        NOTE(rc);
        if (!rc) {
            for (int i = 0; i < 50 && !rc; i++) {
                char zk[16];
                snprintf(zk, sizeof zk, "zz%04d", i);
                rc = pl_ingest_add(g, zk, strlen(zk), "z", 1);
            }
            uint64_t count = 0;
            if (!rc)
                rc = pl_ingest_finish(g, &count);
            else
                pl_ingest_abort(g);
            NOTE(rc);
        }
    }
    NOTE(pl_db_flush(db));
    NOTE(pl_db_compact(db, NULL, 0, 0, NULL, 0, 0));
    NOTE(pl_db_close(db));
    return acked;
#undef NOTE
}

/* After the run: every key a prefix 0..m-1 with m >= acked, values right. */
static void check(const char *dir, int acked, long nth)
{
    pl_options o;
    pl_options_init(&o);
    pl_db *db = NULL;
    int rc = pl_db_open(dir, &o, &db);
    if (rc) {
        fprintf(stderr, "N=%ld: reopen failed: %s\n", nth, pl_errmsg());
        CHECK_RC(rc, PL_OK);
        return;
    }
    char k[16], v[128];
    int m = 0, bad = 0;
    pl_buf out = {0};
    for (int i = 0; i < NKEYS; i++) {
        key_of(i, k);
        rc = pl_db_get(db, NULL, k, strlen(k), &out, 0);
        if (rc == PL_OK) {
            val_of(i, v);
            if (out.len != sizeof v || memcmp(out.data, v, sizeof v) != 0 || m != i)
                bad++;
            m = i + 1;
        } else if (rc != PL_NOTFOUND) {
            bad++;
        }
    }
    pl_buf_free(&out);
    if (bad || m < acked)
        fprintf(stderr, "N=%ld: %d bad, %d recovered, %d acknowledged\n", nth, bad, m, acked);
    CHECK_EQ(bad, 0);
    CHECK(m >= acked);
    CHECK_RC(pl_db_close(db), PL_OK);
}

/* Opening a database that has tables, with the Nth allocation failing, for every N of an open and
 * close: whatever the open reports, a clean reopen finds every key.  (The open writes a new manifest
 * holding the whole state, then deletes the old one and every table the new one does not name.) */
static void reopen_sweep(const char *base)
{
    char dir[256];
    pl_options o;
    pl_options_init(&o);
    long total = 0, failed = 0;
    for (long nth = 0; nth == 0 || nth <= total; nth++) {
        snprintf(dir, sizeof dir, "%s/reopen%ld", base, nth);
        int errors = 0, nomem = 0;
        CHECK_EQ(workload(dir, &errors, &nomem), NKEYS);
        CHECK_EQ(errors, 0);
        pl_db *db = NULL;
        arm(nth ? nth : LONG_MAX);
        int rc = pl_db_open(dir, &o, &db);
        if (!rc)
            rc = pl_db_close(db);
        if (!nth)
            total = atomic_load(&counted);
        disarm();
        if (rc) {
            failed++;
            if (rc != PL_NOMEM)
                fprintf(stderr, "reopen N=%ld: %s: %s\n", nth, pl_code_name(rc), pl_errmsg());
            CHECK_RC(rc, PL_NOMEM);
        }
        check(dir, NKEYS, nth);
        tu_rm_rf(dir);
    }
    printf("allocations per reopen: %ld; reopens that failed: %ld\n", total, failed);
    CHECK(total > 20);
    CHECK(failed > total / 2);
}

/* Does a table of format 4 (with a dictionary) lie in dir? */
static int has_dict_table(const char *dir)
{
    int found = 0;
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        size_t n = strlen(e->d_name);
        if (n < 4 || strcmp(e->d_name + n - 4, ".sst") != 0)
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        unsigned char ft[48];
        if (f && fseek(f, -48, SEEK_END) == 0 && fread(ft, 1, 48, f) == 48)
            found |= ((uint32_t)ft[32] | (uint32_t)ft[33] << 8 | (uint32_t)ft[34] << 16 | (uint32_t)ft[35] << 24) == 4;
        if (f)
            fclose(f);
    }
    if (d)
        closedir(d);
    return found;
}

/* The clean run, then the Nth allocation failed for every N of it. */
static void sweep(const char *base)
{
    char dir[256];
    snprintf(dir, sizeof dir, "%s/clean", base);
    int errors = 0, nomem = 0;
    arm(LONG_MAX);
    int acked = workload(dir, &errors, &nomem);
    long total = atomic_load(&counted);
    disarm();
    CHECK_EQ(errors, 0);
    CHECK_EQ(acked, NKEYS);
    CHECK(total > 500);
    if (zstd_run)
        CHECK(has_dict_table(dir)); /* the sweep goes through the dictionary's training and use */
    tu_rm_rf(dir);
    long failed_runs = 0, nomem_runs = 0;
    for (long nth = 1; nth <= total; nth++) {
        snprintf(dir, sizeof dir, "%s/n%ld", base, nth);
        errors = nomem = 0;
        arm(nth);
        acked = workload(dir, &errors, &nomem);
        disarm();
        int hit = atomic_load(&fired);
        failed_runs += errors > 0;
        if (errors > 0) {
            /* The caller's own allocation: PL_NOMEM.  The background thread's (a flush, a
             * compaction): the database turns read-only, and the error says why. */
            int clear = first_code == PL_NOMEM ||
                        (first_code == PL_READONLY && strstr(first_msg, "out of memory") != NULL);
            if (!clear)
                fprintf(stderr, "N=%ld: %s: %s\n", nth, pl_code_name(first_code), first_msg);
            CHECK(clear);
        }
        nomem_runs += nomem;
        /* A failed allocation that nothing reported had a way round it (a cache that does without,
         * a buffer that stays as it was); check() below shows the data is still right. */
        if (!hit)
            CHECK_EQ(errors, 0);
        check(dir, acked, nth);
        tu_rm_rf(dir);
    }
    printf("%sallocations per run: %ld; runs with an error reported: %ld, with PL_NOMEM: %ld\n",
           zstd_run ? "zstd tables with a dictionary: " : "", total, failed_runs, nomem_runs);
    CHECK(failed_runs > total / 2);
    CHECK(nomem_runs > total / 10);
}

int main(void)
{
    char base[] = "/tmp/pylsm-alloc-XXXXXX";
    if (!mkdtemp(base))
        return 2;
    sweep(base);
    reopen_sweep(base);
    zstd_run = 1;
    CHECK_RC(pl_test_set("table_dict_sample_bytes", 12 << 10), PL_OK);
    sweep(base);
    tu_rm_rf(base);
    return test_report();
}
