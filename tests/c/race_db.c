/* race_db.c -- run under ThreadSanitizer (make tsan): the memtable with its writer and readers at
 * once (memtable_usage while the hash index grows: issue 9, bug 9), and the database with writers,
 * readers, snapshots, iterators, flushes, compactions, bulk ingests, checkpoints and the changes feed at once (a small
 * LSN gap makes the writers wait for the ingests' commits), then the warmer of a reopened database with
 * readers, a writer and a compaction.  Any data race TSan sees fails the
 * run (halt_on_error). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db.h"
#include "memtable.h"
#include "pylsm.h"
#include "testhooks.h"
#include "testutil.h"

static memtable *mt;
static atomic_int stop;

static void *mem_reader(void *arg)
{
    pl_buf out = {0};
    size_t seen = 0;
    while (!atomic_load(&stop)) {
        seen += memtable_usage(mt) > 0;
        seen += memtable_count(mt);
        char k[16];
        int kl = snprintf(k, sizeof k, "k%zu", seen % 5000);
        int result;
        memtable_get(mt, k, (size_t)kl, UINT64_MAX, &out, &result);
    }
    pl_buf_free(&out);
    return NULL;
}

static void test_memtable_writer_and_readers(void)
{
    CHECK_RC(memtable_new(&mt), PL_OK);
    atomic_store(&stop, 0);
    pthread_t r[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&r[i], NULL, mem_reader, NULL);
    /* 200,000 distinct keys: the hash index doubles many times while the readers look */
    for (uint64_t i = 1; i <= 200000; i++) {
        char k[16];
        int kl = snprintf(k, sizeof k, "k%llu", (unsigned long long)i);
        CHECK_RC(memtable_add(mt, i, 1, k, (size_t)kl, "v", 1), PL_OK);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(r[i], NULL);
    CHECK_EQ(memtable_count(mt), 200000);
    memtable_unref(mt);
}

static pl_db *db;

static void *db_writer(void *arg)
{
    long t = (long)arg;
    char v[200];
    memset(v, 'v', sizeof v);
    for (int i = 0; i < 20000 && !atomic_load(&stop); i++) {
        char k[32];
        int kl = snprintf(k, sizeof k, "w%ld-%d", t, i % 3000);
        if (pl_db_put(db, k, (size_t)kl, v, sizeof v, 0) != PL_OK)
            break;
        if (i % 5000 == 4999)
            pl_db_flush(db);
    }
    return NULL;
}

static void *db_reader(void *arg)
{
    pl_buf out = {0};
    int i = 0;
    while (!atomic_load(&stop)) {
        char k[32];
        int kl = snprintf(k, sizeof k, "w%d-%d", i % 2, i % 3000);
        pl_db_get(db, NULL, k, (size_t)kl, &out, 0);
        if (i % 500 == 0) {
            pl_snapshot *s = NULL;
            if (pl_snapshot_new(db, &s) == PL_OK) {
                pl_iter *it = NULL;
                if (pl_iter_new(db, s, &it) == PL_OK) {
                    pl_iter_seek_first(it);
                    for (int n = 0; n < 100 && pl_iter_valid(it); n++)
                        pl_iter_next(it);
                    pl_iter_free(it);
                }
                pl_snapshot_release(s);
            }
        }
        i++;
    }
    pl_buf_free(&out);
    return NULL;
}

/* Ingests: even rounds 5,000 pairs over the writers' keys (into L0; about 600 KB, more than one chunk,
 * so the ingest's builder thread runs), odd ones 30,000 in a fresh range (3.6 MB: tables cut at the
 * 2 MiB target, finished on a thread of their own). */
static void *db_ingester(void *arg)
{
    atomic_int *ok = arg;
    char v[100];
    memset(v, 'i', sizeof v);
    for (int round = 0; round < 6; round++) {
        pl_ingest *g = NULL;
        if (pl_ingest_new(db, &g) != PL_OK)
            return NULL;
        int rc = PL_OK;
        int pairs = round % 2 ? 30000 : 5000;
        for (int i = 0; i < pairs && !rc; i++) {
            char k[32];
            int kl = round % 2 ? snprintf(k, sizeof k, "x%d-%06d", round, i) : snprintf(k, sizeof k, "w0-%04d", i);
            rc = pl_ingest_add(g, k, (size_t)kl, v, sizeof v);
        }
        uint64_t n = 0;
        if (rc) {
            pl_ingest_abort(g);
            return NULL;
        }
        if (pl_ingest_finish(g, &n) == PL_OK && n == (uint64_t)pairs)
            atomic_fetch_add(ok, 1);
    }
    return NULL;
}

/* Checkpoints into path-cpN while the others run (each copy opens), then reads of the changes feed. */
static const char *race_path;
static void *db_checkpointer(void *arg)
{
    atomic_int *ok = arg;
    for (int n = 0; n < 4; n++) {
        char cp[128];
        snprintf(cp, sizeof cp, "%s-cp%d", race_path, n);
        if (pl_db_checkpoint(db, cp, NULL) != PL_OK)
            continue;
        pl_options o;
        pl_options_init(&o);
        pl_db *c = NULL;
        if (pl_db_open(cp, &o, &c) == PL_OK && pl_db_close(c) == PL_OK)
            atomic_fetch_add(ok, 1);
        pl_destroy(cp);
    }
    /* The changes feed beside the writers (WALs switching, flushed and archived meanwhile): every
     * batch once, LSNs in order. */
    for (int round = 0; round < 3; round++) {
        pl_changes *c = NULL;
        if (pl_changes_new(db, 0, &c) != PL_OK)
            return NULL;
        uint64_t lsn, ts, next = 0;
        uint32_t count;
        int has_ts, rc;
        const char *p;
        size_t len;
        while ((rc = pl_changes_next(c, &lsn, &count, &ts, &has_ts, &p, &len)) == PL_OK) {
            if (next && lsn != next)
                break;
            next = lsn + count;
        }
        pl_changes_free(c);
        /* (an ingest's LSNs are a gap in the feed: PL_MISUSE) */
        if (rc == PL_NOTFOUND || rc == PL_MISUSE)
            atomic_fetch_add(ok, 1);
    }
    return NULL;
}

static void count_splits(void *ctx, const char *name, uint64_t v)
{
    if (strcmp(name, "subcompactions") == 0)
        *(uint64_t *)ctx = v;
}

/* Writers, readers, ingests, checkpoints and compactions all at once. */
static void test_db_all_at_once(const char *path)
{
    pl_options o;
    pl_options_init(&o);
    o.memtable_bytes = 256 << 10;
    o.wal_retention_bytes = 64u << 20;
    CHECK_RC(pl_db_open(path, &o, &db), PL_OK);
    if (!db)
        return;
    atomic_store(&stop, 0);
    ingest_lsn_gap = 2000;
    atomic_int ingests = 0, checkpoints = 0;
    race_path = path;
    pthread_t w[2], r[2], in, cp;
    for (long i = 0; i < 2; i++) {
        pthread_create(&w[i], NULL, db_writer, (void *)i);
        pthread_create(&r[i], NULL, db_reader, NULL);
    }
    pthread_create(&in, NULL, db_ingester, &ingests);
    pthread_create(&cp, NULL, db_checkpointer, &checkpoints);
    for (int i = 0; i < 2; i++)
        pthread_join(w[i], NULL);
    pthread_join(in, NULL);
    pthread_join(cp, NULL);
    CHECK_EQ(atomic_load(&ingests), 6);
    CHECK_EQ(atomic_load(&checkpoints), 7);
    CHECK_RC(pl_db_compact(db, NULL, 0, 0, NULL, 0, 0), PL_OK);
    atomic_store(&stop, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(r[i], NULL);
    pl_buf out = {0};
    CHECK_RC(pl_db_get(db, NULL, "w1-2999", 7, &out, 0), PL_OK);
    CHECK_RC(pl_db_get(db, NULL, "x5-001999", 9, &out, 0), PL_OK);
    CHECK(out.len == 100 && out.data[0] == 'i');
    pl_buf_free(&out);
    CHECK_RC(pl_db_close(db), PL_OK);
}

/* Writes of fresh keys spread over the key space (many tables in L1 and L2), readers and snapshot
 * scans beside them, and compactions split over two threads (every one that can be). */
static void *spread_writer(void *arg)
{
    (void)arg;
    char v[100];
    memset(v, 's', sizeof v);
    for (uint32_t i = 0; i < 120000; i++) {
        char k[32];
        int kl = snprintf(k, sizeof k, "w%u-%u", (i * 2654435761u) % 2, (i * 2654435761u) % 90001u);
        if (pl_db_put(db, k, (size_t)kl, v, sizeof v, 0) != PL_OK)
            break;
    }
    return NULL;
}

static void test_split_compactions_and_readers(const char *path)
{
    pl_destroy(path);
    CHECK_RC(pl_test_set("subcompaction_min_bytes", 0), PL_OK);
    pl_options o;
    pl_options_init(&o);
    o.memtable_bytes = 256 << 10;
    CHECK_RC(pl_db_open(path, &o, &db), PL_OK);
    if (db) {
        atomic_store(&stop, 0);
        pthread_t w, r[2];
        pthread_create(&w, NULL, spread_writer, NULL);
        for (int i = 0; i < 2; i++)
            pthread_create(&r[i], NULL, db_reader, NULL);
        pthread_join(w, NULL);
        CHECK_RC(pl_db_compact(db, NULL, 0, 0, NULL, 0, 0), PL_OK);
        atomic_store(&stop, 1);
        for (int i = 0; i < 2; i++)
            pthread_join(r[i], NULL);
        uint64_t splits = 0;
        CHECK_RC(pl_db_stats(db, count_splits, NULL, &splits), PL_OK);
        CHECK(splits > 0);
        pl_buf out = {0};
        char k[32];
        int kl = snprintf(k, sizeof k, "w%u-%u", (7u * 2654435761u) % 2, (7u * 2654435761u) % 90001u);
        CHECK_RC(pl_db_get(db, NULL, k, (size_t)kl, &out, 0), PL_OK);
        CHECK(out.len == 100 && out.data[0] == 's');
        pl_buf_free(&out);
        CHECK_RC(pl_db_close(db), PL_OK);
    }
    CHECK_RC(pl_test_set("subcompaction_min_bytes", 64u << 20), PL_OK);
}

static void count_warming(void *ctx, const char *name, uint64_t v)
{
    if (strcmp(name, "warming") == 0)
        ((uint64_t *)ctx)[0] = v;
    else if (strcmp(name, "warmed_bytes") == 0)
        ((uint64_t *)ctx)[1] = v;
}

/* The warmer (past the read-around limit, lowered here) checking blocks and chunks while readers read
 * them, a writer and a compaction replace the tables it holds, and a close that may stop it. */
static void test_warmer_and_readers(const char *path)
{
    CHECK_RC(pl_test_set("read_around_bytes", 1), PL_OK);
    for (int round = 0; round < 3; round++) {
        CHECK_RC(pl_db_open(path, NULL, &db), PL_OK);
        if (!db)
            break;
        atomic_store(&stop, 0);
        pthread_t r[2], w;
        for (int i = 0; i < 2; i++)
            pthread_create(&r[i], NULL, db_reader, NULL);
        pthread_create(&w, NULL, db_writer, (void *)(long)round);
        if (round > 0) /* round 0 closes at once, likely while it warms */
            CHECK_RC(pl_db_compact(db, NULL, 0, 0, NULL, 0, 0), PL_OK);
        uint64_t warm[2] = {1, 0}; /* warming, warmed_bytes */
        for (int i = 0; i < 5000 && round > 0 && warm[0]; i++) {
            CHECK_RC(pl_db_stats(db, count_warming, NULL, warm), PL_OK);
            usleep(1000);
        }
        CHECK(round == 0 || (warm[0] == 0 && warm[1] > 0));
        atomic_store(&stop, 1);
        pthread_join(w, NULL);
        for (int i = 0; i < 2; i++)
            pthread_join(r[i], NULL);
        CHECK_RC(pl_db_close(db), PL_OK);
    }
    CHECK_RC(pl_test_set("read_around_bytes", 0), PL_OK);
}

int main(void)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/pylsm-race-%d", (int)getpid());
    test_memtable_writer_and_readers();
    test_db_all_at_once(path);
    test_warmer_and_readers(path);
    test_split_compactions_and_readers(path);
    pl_destroy(path);
    return test_report();
}
