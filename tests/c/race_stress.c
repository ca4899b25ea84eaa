/* race_stress.c -- run under ThreadSanitizer (make tsan): writers (puts, deletes, batches), readers
 * (gets), iterators over snapshots, flushes, compactions and a close at the end, all at once on one
 * database, for a fixed number of writes from fixed seeds (docs/testing.md, "ThreadSanitizer stress").
 *
 * Each key belongs to one writer, which numbers its operations on it 1, 2, 3, ...: a value carries its
 * key and that number, so a value read says which write it came from.  Around every write the writer
 * publishes the operation it started and, once the call returned, the one acknowledged.  Asserted:
 *  - zero TSan reports (halt_on_error: the first fails the run);
 *  - a get never returns a write older than one acknowledged before it started, nor one not yet
 *    started when it ended, nor (per reader and key) an older write than it saw before; with no write
 *    to the key in flight, it returns exactly the last one (its value, or not found for a delete);
 *  - an iterator over a snapshot yields strictly ascending keys, each value its own key's, within the
 *    same bounds; the snapshot's view never changes: gets at the snapshot, and another walk of it
 *    forwards and backwards after flushes and compactions ran, see the very same entries;
 *  - every call gives PL_OK (PL_NOTFOUND for a get), or PL_CLOSED once the close has begun;
 *  - after the close, a reopen holds every key's last acknowledged write and nothing else. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pylsm.h"
#include "testutil.h"

#define WRITERS 3
#define KEYS 150               /* per writer */
#define NKEYS (WRITERS * KEYS)
#define OPS 15000              /* writes per writer */
#define READERS 2
#define MAINTENANCE 400        /* at most this many flushes and compactions, while the writers run */

static pl_db *db;
static atomic_int stop;        /* the close has begun: readers and iterators end */
static atomic_int writing;     /* writers still running */
/* per key: the operation started and acknowledged, as counter << 1 | is_put (0: none yet) */
static _Atomic uint64_t started[NKEYS], acked[NKEYS];
static atomic_long failures;   /* checks failed in threads (CHECK is not thread safe) */
static atomic_long reads, walks;

#define T_CHECK(cond, ...)                                                                  \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            atomic_fetch_add(&failures, 1);                                                 \
            fprintf(stderr, "%s:%d: %s: ", __FILE__, __LINE__, #cond);                      \
            fprintf(stderr, __VA_ARGS__);                                                   \
            fputc('\n', stderr);                                                            \
        }                                                                                   \
    } while (0)

static int key_of(int idx, char *k) { return snprintf(k, 16, "w%d-%04d", idx / KEYS, idx % KEYS); }

static int value_of(int idx, uint64_t c, char *v)
{
    int n = snprintf(v, 64, "k=w%d-%04d;c=%llu;", idx / KEYS, idx % KEYS, (unsigned long long)c);
    memset(v + n, 'p', (size_t)(c % 64));
    return n + (int)(c % 64);
}

/* The counter of a value read for key idx (0 if the value is not one of that key's). */
static uint64_t counter_in(int idx, const char *v, size_t n)
{
    char want[32], buf[128];
    int wl = snprintf(want, sizeof want, "k=w%d-%04d;c=", idx / KEYS, idx % KEYS);
    if (n < (size_t)wl || n >= sizeof buf || memcmp(v, want, (size_t)wl) != 0)
        return 0;
    memcpy(buf, v, n);
    buf[n] = 0;
    char *end;
    uint64_t c = strtoull(buf + wl, &end, 10);
    if (*end != ';' || (size_t)(end + 1 - buf) + c % 64 != n)
        return 0;
    return c;
}

/* ---- writers ---- */

static void *writer(void *arg)
{
    int w = (int)(long)arg;
    unsigned long long seed = 0x9e3779b97f4a7c15ull * (unsigned long long)(w + 1);
    uint64_t count[KEYS] = {0};
    pl_batch *b = pl_batch_new();
    char k[16], v[128];
    for (int op = 0; op < OPS; op++) {
        int r = (int)(tu_rand(&seed) % 100), j = (int)(tu_rand(&seed) % KEYS);
        int flags = tu_rand(&seed) % 300 == 0 ? PL_WRITE_SYNC : 0;
        int n = r < 75 ? 1 : 2 + (int)(tu_rand(&seed) % 5), idx[8];
        uint64_t code[8];
        pl_batch_clear(b);
        for (int i = 0; i < n; i++) {
            int jj = (j + 7 * i) % KEYS, is_put = r < 60 || (r >= 75 && tu_rand(&seed) % 4 != 0);
            idx[i] = w * KEYS + jj;
            code[i] = ++count[jj] << 1 | (uint64_t)is_put;
            atomic_store(&started[idx[i]], code[i]);
            int kl = key_of(idx[i], k);
            if (n > 1 && is_put)
                pl_batch_put(b, k, (size_t)kl, v, (size_t)value_of(idx[i], code[i] >> 1, v));
            else if (n > 1)
                pl_batch_delete(b, k, (size_t)kl);
        }
        int rc;
        if (n > 1) {
            rc = pl_db_write(db, b, flags);
        } else {
            int kl = key_of(idx[0], k);
            rc = (code[0] & 1) ? pl_db_put(db, k, (size_t)kl, v, (size_t)value_of(idx[0], code[0] >> 1, v), flags)
                               : pl_db_delete(db, k, (size_t)kl, flags);
        }
        T_CHECK(rc == PL_OK, "writer %d, op %d: %s (%s)", w, op, pl_code_name(rc), pl_errmsg());
        for (int i = 0; i < n; i++)
            atomic_store(&acked[idx[i]], code[i]);
    }
    pl_batch_free(b);
    atomic_fetch_sub(&writing, 1);
    return NULL;
}

/* ---- readers ---- */

static void *reader(void *arg)
{
    unsigned long long seed = 0x51ed270b27c1ull * (unsigned long long)((long)arg + 11);
    uint64_t *last = calloc(NKEYS, sizeof *last);
    pl_buf out = {0};
    char k[16];
    while (!atomic_load(&stop)) {
        int idx = (int)(tu_rand(&seed) % NKEYS), kl = key_of(idx, k);
        uint64_t a1 = atomic_load(&acked[idx]), s1 = atomic_load(&started[idx]);
        if (pl_db_enter(db) != PL_OK)
            break;
        int rc = pl_db_get(db, NULL, k, (size_t)kl, &out, 0);
        pl_db_leave(db);
        uint64_t s2 = atomic_load(&started[idx]);
        if (rc == PL_CLOSED)
            break;
        T_CHECK(rc == PL_OK || rc == PL_NOTFOUND, "get %s: %s", k, pl_code_name(rc));
        if (rc == PL_OK) {
            uint64_t c = counter_in(idx, out.data, out.len);
            T_CHECK(c != 0, "get %s: a value not of this key: %.*s", k, (int)out.len, out.data);
            T_CHECK(c >= a1 >> 1, "get %s: write %llu, but %llu was acknowledged before", k,
                    (unsigned long long)c, (unsigned long long)(a1 >> 1));
            T_CHECK(c <= s2 >> 1, "get %s: write %llu, not started yet", k, (unsigned long long)c);
            T_CHECK(c >= last[idx], "get %s: write %llu after %llu", k, (unsigned long long)c,
                    (unsigned long long)last[idx]);
            last[idx] = c;
        }
        if (a1 && a1 == s1 && s1 == s2) /* nothing in flight on this key: exactly the last write */
            T_CHECK((a1 & 1) ? rc == PL_OK && counter_in(idx, out.data, out.len) == a1 >> 1 : rc == PL_NOTFOUND,
                    "get %s: %s, the last write %llu was a %s", k, pl_code_name(rc), (unsigned long long)(a1 >> 1),
                    (a1 & 1) ? "put" : "delete");
        atomic_fetch_add(&reads, 1);
    }
    pl_buf_free(&out);
    free(last);
    return NULL;
}

/* ---- iterators over snapshots ---- */

/* Walk `s` with a new iterator, forwards (reverse 0) or backwards, into view[] (counter per key, 0 if
 * absent), checking order and values.  PL_CLOSED once the database is closing. */
static int walk(const pl_snapshot *s, int reverse, uint64_t *view)
{
    if (pl_db_enter(db) != PL_OK)
        return PL_CLOSED;
    pl_iter *it;
    int rc = pl_iter_new(db, s, &it);
    pl_db_leave(db);
    if (rc == PL_CLOSED)
        return rc;
    T_CHECK(rc == PL_OK, "pl_iter_new: %s", pl_code_name(rc));
    if (rc)
        return rc;
    memset(view, 0, NKEYS * sizeof *view);
    char prev[16] = "";
    int n = 0, prevl = -1;
    for (reverse ? pl_iter_seek_last(it) : pl_iter_seek_first(it); pl_iter_valid(it);
         reverse ? pl_iter_prev(it) : pl_iter_next(it)) {
        const char *k, *v;
        size_t kl, vl;
        pl_iter_key(it, &k, &kl);
        pl_iter_value(it, &v, &vl);
        int w, j;
        char ks[16];
        T_CHECK(kl < sizeof ks, "key of %zu bytes", kl);
        if (kl >= sizeof ks)
            break;
        memcpy(ks, k, kl);
        ks[kl] = 0;
        T_CHECK(sscanf(ks, "w%d-%d", &w, &j) == 2 && w >= 0 && w < WRITERS && j >= 0 && j < KEYS, "key %s", ks);
        if (prevl >= 0) {
            int c = strcmp(prev, ks);
            T_CHECK(reverse ? c > 0 : c < 0, "keys out of order: %s then %s", prev, ks);
        }
        memcpy(prev, ks, kl + 1);
        prevl = (int)kl;
        int idx = w * KEYS + j;
        view[idx] = counter_in(idx, v, vl);
        T_CHECK(view[idx] != 0, "%s holds a value not its own", ks);
        n++;
    }
    rc = pl_iter_status(it);
    T_CHECK(rc == PL_OK, "walk: %s", pl_code_name(rc));
    pl_iter_free(it);
    atomic_fetch_add(&walks, 1);
    return rc;
}

static void *iterator(void *arg)
{
    unsigned long long seed = 0xabcdefull + (unsigned long long)(long)arg;
    uint64_t *before = malloc(NKEYS * sizeof *before), *after = malloc(NKEYS * sizeof *after);
    uint64_t *view = malloc(NKEYS * sizeof *view), *again = malloc(NKEYS * sizeof *again);
    pl_buf out = {0};
    while (!atomic_load(&stop)) {
        for (int i = 0; i < NKEYS; i++)
            before[i] = atomic_load(&acked[i]);
        if (pl_db_enter(db) != PL_OK)
            break;
        pl_snapshot *s;
        int rc = pl_snapshot_new(db, &s);
        pl_db_leave(db);
        if (rc == PL_CLOSED)
            break;
        T_CHECK(rc == PL_OK, "pl_snapshot_new: %s", pl_code_name(rc));
        if (rc)
            break;
        for (int i = 0; i < NKEYS; i++)
            after[i] = atomic_load(&started[i]);
        if (walk(s, 0, view) == PL_OK) {
            for (int i = 0; i < NKEYS; i++) {
                T_CHECK(view[i] == 0 || (view[i] >= before[i] >> 1 && view[i] <= after[i] >> 1),
                        "snapshot holds write %llu of key %d, acknowledged %llu, started %llu",
                        (unsigned long long)view[i], i, (unsigned long long)(before[i] >> 1),
                        (unsigned long long)(after[i] >> 1));
                if (before[i] && before[i] == after[i])
                    T_CHECK(view[i] == ((before[i] & 1) ? before[i] >> 1 : 0), "snapshot misses write %llu of %d",
                            (unsigned long long)(before[i] >> 1), i);
            }
            /* gets at the snapshot, a while later: the same */
            char k[16];
            for (int n = 0; n < 40; n++) {
                int idx = (int)(tu_rand(&seed) % NKEYS), kl = key_of(idx, k);
                if (pl_db_enter(db) != PL_OK)
                    break;
                rc = pl_db_get(db, s, k, (size_t)kl, &out, 0);
                pl_db_leave(db);
                if (rc == PL_CLOSED)
                    break;
                T_CHECK(rc == (view[idx] ? PL_OK : PL_NOTFOUND) &&
                            (rc != PL_OK || counter_in(idx, out.data, out.len) == view[idx]),
                        "get %s at the snapshot: %s, the walk saw write %llu", k, pl_code_name(rc),
                        (unsigned long long)view[idx]);
            }
            /* and walks of it, backwards and forwards */
            for (int reverse = 1; reverse >= 0; reverse--)
                if (walk(s, reverse, again) == PL_OK)
                    T_CHECK(memcmp(view, again, NKEYS * sizeof *view) == 0, "the snapshot's view changed (%s)",
                            reverse ? "backwards" : "forwards");
        }
        pl_snapshot_release(s);
    }
    pl_buf_free(&out);
    free(before);
    free(after);
    free(view);
    free(again);
    return NULL;
}

/* ---- flushes and compactions ---- */

static uint64_t flushes, compactions;

static void stat_fn(void *ctx, const char *name, uint64_t value)
{
    if (!strcmp(name, "flushes"))
        flushes = value;
    else if (!strcmp(name, "compactions"))
        compactions = value;
}

static void *maintenance(void *arg)
{
    unsigned long long seed = 77;
    for (int i = 0; i < MAINTENANCE && atomic_load(&writing); i++) {
        usleep(5000);
        if (pl_db_enter(db) != PL_OK)
            break;
        int rc;
        if (i % 2) {
            char lo[16], hi[16];
            int a = (int)(tu_rand(&seed) % NKEYS), z = a + (int)(tu_rand(&seed) % 200);
            int ll = key_of(a, lo), hl = key_of(z < NKEYS ? z : NKEYS - 1, hi);
            rc = pl_db_compact(db, lo, (size_t)ll, i % 2, hi, (size_t)hl, i % 4 == 0);
        } else {
            rc = pl_db_flush(db);
        }
        pl_db_leave(db);
        T_CHECK(rc == PL_OK || rc == PL_CLOSED, "maintenance %d: %s (%s)", i, pl_code_name(rc), pl_errmsg());
    }
    return NULL;
}

int main(void)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/pylsm-race-stress-%d", (int)getpid());
    pl_destroy(path);
    pl_options o;
    pl_options_init(&o);
    o.memtable_bytes = 64 << 10; /* a flush every few hundred writes */
    o.block_bytes = 1024;
    o.block_cache_bytes = 256 << 10;
    CHECK_RC(pl_db_open(path, &o, &db), PL_OK);
    if (!db)
        return test_report();
    pl_db_retain(db); /* the threads still running at the close keep using the handle */
    pthread_t w[WRITERS], r[READERS], it[2], m;
    atomic_store(&writing, WRITERS);
    for (long i = 0; i < WRITERS; i++)
        pthread_create(&w[i], NULL, writer, (void *)i);
    for (long i = 0; i < READERS; i++)
        pthread_create(&r[i], NULL, reader, (void *)i);
    for (long i = 0; i < 2; i++)
        pthread_create(&it[i], NULL, iterator, (void *)i);
    pthread_create(&m, NULL, maintenance, NULL);
    for (int i = 0; i < WRITERS; i++)
        pthread_join(w[i], NULL);
    pthread_join(m, NULL);
    CHECK_RC(pl_db_stats(db, stat_fn, NULL, NULL), PL_OK);
    /* the close races the readers and iterators, which are still running */
    CHECK_RC(pl_db_close(db), PL_OK);
    atomic_store(&stop, 1);
    for (int i = 0; i < READERS; i++)
        pthread_join(r[i], NULL);
    for (int i = 0; i < 2; i++)
        pthread_join(it[i], NULL);
    pl_db_release(db);
    CHECK_EQ(atomic_load(&failures), 0);
    CHECK(atomic_load(&reads) > 0);
    CHECK(atomic_load(&walks) > 0);

    /* every acknowledged write is there, and nothing else */
    CHECK_RC(pl_db_open(path, &o, &db), PL_OK);
    if (db) {
        pl_buf out = {0};
        int lost = 0, present = 0;
        char k[16];
        for (int idx = 0; idx < NKEYS; idx++) {
            uint64_t a = atomic_load(&acked[idx]);
            int kl = key_of(idx, k), rc = pl_db_get(db, NULL, k, (size_t)kl, &out, 0);
            if (a & 1) {
                present++;
                lost += rc != PL_OK || counter_in(idx, out.data, out.len) != a >> 1;
            } else {
                lost += rc != PL_NOTFOUND;
            }
        }
        CHECK_EQ(lost, 0);
        pl_iter *iter;
        int n = 0;
        CHECK_RC(pl_iter_new(db, NULL, &iter), PL_OK);
        for (pl_iter_seek_first(iter); pl_iter_valid(iter); pl_iter_next(iter))
            n++;
        CHECK_RC(pl_iter_status(iter), PL_OK);
        CHECK_EQ(n, present);
        pl_iter_free(iter);
        pl_buf_free(&out);
        printf("race_stress: %d writes, %ld gets and %ld snapshot walks racing %llu flushes, %llu compactions "
               "and the close; after reopening, %d keys present, %d acknowledged writes lost\n",
               WRITERS * OPS, atomic_load(&reads), atomic_load(&walks), (unsigned long long)flushes,
               (unsigned long long)compactions, present, lost);
        CHECK_RC(pl_db_close(db), PL_OK);
    }
    pl_destroy(path);
    return test_report();
}
