/* test_ingest.c -- bulk ingest (pl_ingest_*, csrc/ingest.c): ordering errors leave nothing behind,
 * ingested pairs overwrite keys of the memtable, L0 and deeper levels and stay invisible to older
 * snapshots, placement, the LSN survives a reopen, writers beside an ingest, and a failure of any one
 * I/O call (or a crash at the commit, or a power cut after it) leaves the database as it was or with
 * every pair. */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "db.h"
#include "env.h"
#include "pylsm.h"
#include "testutil.h"

static char base[64];

static char *sub(const char *name)
{
    static char p[4][256];
    static int i;
    i = (i + 1) % 4;
    snprintf(p[i], sizeof p[i], "%s/%s", base, name);
    return p[i];
}

#define VALUE_LEN 300

static size_t key_of(int i, char *k) { return (size_t)snprintf(k, 32, "k%08d", i); }

/* A value of VALUE_LEN bytes naming its key and tag ("old", "new", ...). */
static size_t value_of(int i, const char *tag, char *v)
{
    int n = snprintf(v, VALUE_LEN, "%s:%d:", tag, i);
    memset(v + n, 'x', (size_t)(VALUE_LEN - n));
    return VALUE_LEN;
}

static pl_db *open_db(const char *path, int background)
{
    pl_options o;
    pl_options_init(&o);
    o.memtable_bytes = 64 * 1024; /* tables cut at the 2 MiB minimum target */
    o.background_compaction = background;
    pl_db *db = NULL;
    int rc = pl_db_open(path, &o, &db);
    if (rc)
        fprintf(stderr, "open %s: %s\n", path, pl_errmsg());
    return db;
}

static void put_range(pl_db *db, int from, int to, const char *tag)
{
    char k[32], v[VALUE_LEN];
    for (int i = from; i < to; i++) {
        size_t kn = key_of(i, k), vn = value_of(i, tag, v);
        CHECK_RC(pl_db_put(db, k, kn, v, vn, 0), PL_OK);
    }
}

/* Ingest keys [from, to) with step 1; the code of the first failing call. */
static int ingest_range(pl_db *db, int from, int to, const char *tag, uint64_t *count)
{
    pl_ingest *g = NULL;
    int rc = pl_ingest_new(db, &g);
    if (rc)
        return rc;
    char k[32], v[VALUE_LEN];
    for (int i = from; i < to && !rc; i++) {
        size_t kn = key_of(i, k), vn = value_of(i, tag, v);
        rc = pl_ingest_add(g, k, kn, v, vn);
    }
    if (rc) {
        pl_ingest_abort(g);
        return rc;
    }
    uint64_t n = 0;
    rc = pl_ingest_finish(g, &n);
    if (count)
        *count = n;
    return rc;
}

/* The tag of key i's value ("" when absent). */
static const char *tag_of(pl_db *db, const pl_snapshot *snap, int i)
{
    static char tag[16];
    char k[32];
    size_t kn = key_of(i, k);
    pl_buf b = {0};
    int rc = pl_db_get(db, snap, k, kn, &b, 0);
    tag[0] = 0;
    if (rc == PL_OK) {
        char *colon = memchr(b.data, ':', b.len);
        size_t n = colon ? (size_t)(colon - b.data) : 0;
        if (n >= sizeof tag)
            n = sizeof tag - 1;
        memcpy(tag, b.data, n);
        tag[n] = 0;
        char want[VALUE_LEN];
        value_of(i, tag, want);
        if (b.len != VALUE_LEN || memcmp(b.data, want, VALUE_LEN) != 0)
            snprintf(tag, sizeof tag, "garbage");
    } else if (rc != PL_NOTFOUND) {
        snprintf(tag, sizeof tag, "error");
    }
    pl_buf_free(&b);
    return tag;
}

/* How many of keys [from, to) have tag (or are absent, for ""). */
static int count_tag(pl_db *db, const pl_snapshot *snap, int from, int to, const char *tag)
{
    int n = 0;
    for (int i = from; i < to; i++)
        n += strcmp(tag_of(db, snap, i), tag) == 0;
    return n;
}

typedef struct {
    uint64_t ingested, sstables, lsn;
    uint64_t files[8];
} stats;

static void stat_fn(void *ctx, const char *name, uint64_t value)
{
    stats *s = ctx;
    if (!strcmp(name, "ingested"))
        s->ingested = value;
    else if (!strcmp(name, "sstables"))
        s->sstables = value;
    else if (!strcmp(name, "lsn"))
        s->lsn = value;
}

static void level_fn(void *ctx, int level, uint64_t files, uint64_t bytes, uint64_t written)
{
    (void)written;
    ((stats *)ctx)->files[level] = files;
}

static stats get_stats(pl_db *db)
{
    stats s;
    memset(&s, 0, sizeof s);
    CHECK_RC(pl_db_stats(db, stat_fn, level_fn, &s), PL_OK);
    return s;
}

/* The files of path whose names end in ext: how many, and (bytes not NULL) their total size. */
static int files_of(const char *path, const char *ext, long long *bytes)
{
    DIR *d = opendir(path);
    int n = 0;
    struct dirent *e;
    char p[512];
    struct stat st;
    if (bytes)
        *bytes = 0;
    while (d && (e = readdir(d))) {
        size_t len = strlen(e->d_name), el = strlen(ext);
        if (len <= el || strcmp(e->d_name + len - el, ext) != 0)
            continue;
        n++;
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        if (bytes && stat(p, &st) == 0)
            *bytes += st.st_size;
    }
    if (d)
        closedir(d);
    return n;
}

static int count_files(const char *path, const char *ext) { return files_of(path, ext, NULL); }

/* The bytes of every table file in path. */
static long long sst_bytes(const char *path)
{
    long long n;
    files_of(path, ".sst", &n);
    return n;
}

/* A test hook that holds the ingest's builder inside its next chunk for 200 ms (hold_state 1 -> 2 while
 * held -> 3). */
static atomic_int hold_state;
static void hold_builder(void *ctx, const char *name)
{
    (void)ctx;
    int one = 1;
    if (strcmp(name, "ingest_chunk") || !atomic_compare_exchange_strong(&hold_state, &one, 2))
        return;
    struct timespec ts = {0, 200 * 1000 * 1000};
    nanosleep(&ts, NULL);
    atomic_store(&hold_state, 3);
}

/* ---- ordering errors ---- */

/* A key out of order, or repeated, fails the add with its position; the abort removes the tables
 * already written (a few MiB: two were cut), and the database is as it was. */
static void test_order_errors_write_nothing(void)
{
    const char *path = sub("order");
    tu_rm_rf(path);
    pl_db *db = open_db(path, 0);
    if (!db)
        return;
    put_range(db, 0, 10, "old");
    CHECK_RC(pl_db_flush(db), PL_OK);
    int tables = count_files(path, ".sst");
    for (int dup = 0; dup < 2; dup++) {
        pl_ingest *g = NULL;
        CHECK_RC(pl_ingest_new(db, &g), PL_OK);
        if (!g)
            continue;
        char k[32], v[VALUE_LEN];
        int i, rc = PL_OK;
        for (i = 0; i < 20000 && !rc; i++) {
            int key = i == 15000 ? (dup ? 14999 : 3) : i; /* position 15000: equal to, or less than, the one before */
            rc = pl_ingest_add(g, k, key_of(key, k), v, value_of(key, "new", v));
        }
        CHECK_RC(rc, PL_INVALID);
        CHECK_EQ(i - 1, 15000);
        CHECK(strstr(pl_errmsg(), "position 15000") != NULL);
        CHECK(strstr(pl_errmsg(), dup ? "equal to" : "less than") != NULL);
        CHECK(count_files(path, ".sst") > tables); /* tables were cut before the bad key */
        CHECK_RC(pl_ingest_add(g, k, key_of(20001, k), v, 4), PL_INVALID); /* sticky */
        pl_ingest_abort(g);
        CHECK_EQ(count_files(path, ".sst"), tables);
        CHECK_EQ(count_tag(db, NULL, 0, 10, "old"), 10);
        CHECK_EQ(count_tag(db, NULL, 10, 15000, ""), 14990);
        CHECK_EQ(get_stats(db).ingested, 0);
    }
    /* Sizes over the limits: the same error as a put, with the position. */
    pl_ingest *g = NULL;
    CHECK_RC(pl_ingest_new(db, &g), PL_OK);
    if (g) {
        static char big[PL_MAX_KEY + 1];
        CHECK_RC(pl_ingest_add(g, "a", 1, "1", 1), PL_OK);
        CHECK_RC(pl_ingest_add(g, big, sizeof big, "1", 1), PL_INVALID);
        CHECK(strstr(pl_errmsg(), "pair 1") != NULL);
        pl_ingest_abort(g);
    }
    /* An empty ingest is no error and changes nothing. */
    uint64_t n = 99;
    CHECK_RC(ingest_range(db, 0, 0, "new", &n), PL_OK);
    CHECK_EQ(n, 0);
    CHECK_RC(pl_db_close(db), PL_OK);
    db = open_db(path, 0);
    if (db) {
        CHECK_EQ(count_tag(db, NULL, 0, 10, "old"), 10);
        CHECK_EQ(count_files(path, ".sst"), tables);
        CHECK_RC(pl_db_close(db), PL_OK);
    }
    tu_rm_rf(path);
}

/* ---- pairs of every size ---- */

/* Value j of pair i: `len` bytes that name both (so a value read back from the wrong pair, or cut
 * short, shows). */
static void fill_value(char *v, size_t len, int i)
{
    for (size_t j = 0; j < len; j++)
        v[j] = (char)('a' + (i * 7 + (int)(j % 251)) % 26);
}

/* The ingest hands pairs to its builder thread in chunks of 256 KiB: values from empty to several
 * times a chunk (one pair alone in a grown chunk), small pairs around them, all read back whole; a
 * key repeated right after a hand-off fails with its position, and the abort leaves nothing. */
static void test_pairs_of_every_size(void)
{
    const char *path = sub("sizes");
    tu_rm_rf(path);
    pl_db *db = open_db(path, 0);
    if (!db)
        return;
    static const size_t sizes[] = {0, 1, 100, 4000, 200 << 10, (256 << 10) - 30, 300 << 10, 3 << 20, 7};
    enum { NS = sizeof sizes / sizeof sizes[0], ROUNDS = 4, SMALL = 50 };
    char *v = malloc(3 << 20), *want = malloc(3 << 20);
    pl_ingest *g = NULL;
    CHECK_RC(pl_ingest_new(db, &g), PL_OK);
    int n = 0;
    char k[32];
    for (int r = 0; g && r < ROUNDS; r++)
        for (int s = 0; s < NS; s++)
            for (int j = 0; j <= SMALL; j++, n++) { /* the sized pair, then SMALL of 100 bytes */
                size_t len = j ? 100 : sizes[s];
                fill_value(v, len, n);
                CHECK_RC(pl_ingest_add(g, k, key_of(n, k), v, len), PL_OK);
            }
    uint64_t count = 0;
    if (g)
        CHECK_RC(pl_ingest_finish(g, &count), PL_OK);
    CHECK_EQ(count, (uint64_t)n);
    CHECK(get_stats(db).sstables >= 2); /* 17 MB: cut at the 2 MiB target */
    pl_buf b = {0};
    for (int i = 0, r = 0; r < ROUNDS; r++)
        for (int s = 0; s < NS; s++)
            for (int j = 0; j <= SMALL; j++, i++) {
                size_t len = j ? 100 : sizes[s];
                CHECK_RC(pl_db_get(db, NULL, k, key_of(i, k), &b, 0), PL_OK);
                fill_value(want, len, i);
                CHECK(b.len == len && (len == 0 || memcmp(b.data, want, len) == 0));
            }
    pl_buf_free(&b);

    /* A pair of 300 KiB goes into a chunk of its own (the chunk before it is handed over), and the
     * pair after it hands that one over. */
    int tables = count_files(path, ".sst");
    g = NULL;
    CHECK_RC(pl_ingest_new(db, &g), PL_OK);
    if (g) {
        fill_value(v, 300 << 10, 0);
        CHECK_RC(pl_ingest_add(g, "m1", 2, v, 100), PL_OK);
        CHECK_RC(pl_ingest_add(g, "m2", 2, v, 300 << 10), PL_OK);
        CHECK_RC(pl_ingest_add(g, "m3", 2, v, 100), PL_OK);   /* m2's chunk handed over */
        CHECK_RC(pl_ingest_add(g, "m4", 2, v, 300 << 10), PL_OK); /* m3's */
        CHECK_RC(pl_ingest_add(g, "m4", 2, v, 100), PL_INVALID);  /* m4's handed over by the next pair */
        CHECK(strstr(pl_errmsg(), "position 4 is equal to") != NULL);
        pl_ingest_abort(g);
    }
    CHECK_EQ(count_files(path, ".sst"), tables);
    b = (pl_buf){0};
    CHECK_RC(pl_db_get(db, NULL, "m2", 2, &b, 0), PL_NOTFOUND);
    pl_buf_free(&b);
    CHECK_RC(pl_db_close(db), PL_OK);
    free(v);
    free(want);
    tu_rm_rf(path);
}

/* ---- overwrites, snapshots, placement, LSN ---- */

/* Keys in L1 (0-99), in L0 (100-199) and in the memtable (200-299): the ingest of 50-249 overwrites
 * some of each; a snapshot taken before sees none of it; after a reopen the same holds and new
 * writes take LSNs past the ingest's. */
static void test_overwrites_every_layer_and_snapshots(void)
{
    const char *path = sub("overwrite");
    tu_rm_rf(path);
    pl_db *db = open_db(path, 0);
    if (!db)
        return;
    put_range(db, 0, 100, "l1");
    CHECK_RC(pl_db_compact(db, NULL, 0, 0, NULL, 0, 0), PL_OK);
    put_range(db, 100, 200, "l0");
    CHECK_RC(pl_db_flush(db), PL_OK);
    put_range(db, 200, 300, "mem");
    stats s0 = get_stats(db);
    CHECK(s0.files[0] == 1 && s0.files[1] + s0.files[2] + s0.files[3] + s0.files[4] + s0.files[5] + s0.files[6] == 1);
    pl_snapshot *snap = NULL;
    CHECK_RC(pl_snapshot_new(db, &snap), PL_OK);
    uint64_t n = 0;
    CHECK_RC(ingest_range(db, 50, 250, "new", &n), PL_OK);
    CHECK_EQ(n, 200);
    stats s1 = get_stats(db);
    CHECK_EQ(s1.ingested, 200);
    CHECK(s1.lsn > s0.lsn + 1000);             /* a fresh LSN, well past the writes */
    CHECK(s1.files[0] >= 3);                  /* the memtable flushed, the ingest on top of L0 */
    for (int round = 0; round < 2; round++) {
        CHECK_EQ(count_tag(db, NULL, 0, 50, "l1"), 50);
        CHECK_EQ(count_tag(db, NULL, 50, 250, "new"), 200);
        CHECK_EQ(count_tag(db, NULL, 250, 300, "mem"), 50);
        if (snap) {
            CHECK_EQ(count_tag(db, snap, 0, 100, "l1"), 100);
            CHECK_EQ(count_tag(db, snap, 100, 200, "l0"), 100);
            CHECK_EQ(count_tag(db, snap, 200, 300, "mem"), 100);
        }
        /* An iterator sees each key once, with the newest value. */
        pl_iter *it = NULL;
        CHECK_RC(pl_iter_new(db, NULL, &it), PL_OK);
        int seen = 0, news = 0;
        for (pl_iter_seek_first(it); it && pl_iter_valid(it); pl_iter_next(it)) {
            const char *v;
            size_t vn;
            pl_iter_value(it, &v, &vn);
            seen++;
            news += vn > 4 && memcmp(v, "new:", 4) == 0;
        }
        CHECK_EQ(seen, 300);
        CHECK_EQ(news, 200);
        pl_iter_free(it);
        if (round == 0) { /* compaction keeps what the snapshot sees and the newest of the rest */
            CHECK_RC(pl_db_compact(db, NULL, 0, 0, NULL, 0, 0), PL_OK);
        }
    }
    pl_snapshot_release(snap);
    CHECK_RC(pl_db_close(db), PL_OK);
    db = open_db(path, 0);
    if (!db)
        return;
    CHECK_EQ(count_tag(db, NULL, 0, 300, "new"), 200);
    CHECK_EQ(count_tag(db, NULL, 250, 300, "mem"), 50);
    stats s2 = get_stats(db);
    CHECK_EQ(s2.lsn, s1.lsn); /* the ingest's LSN is persisted: recovery never hands it out again */
    put_range(db, 60, 61, "after");
    CHECK_EQ(get_stats(db).lsn, s1.lsn + 1);
    CHECK(strcmp(tag_of(db, NULL, 60), "after") == 0);
    CHECK_RC(pl_db_close(db), PL_OK);
    tu_rm_rf(path);
}

/* An empty database takes the ingest at the deepest level; a range beside the data goes as deep as
 * nothing above overlaps it; an overlap with L0 puts it in L0. */
static void test_placement(void)
{
    const char *path = sub("place");
    tu_rm_rf(path);
    pl_db *db = open_db(path, 0);
    if (!db)
        return;
    CHECK_RC(ingest_range(db, 1000, 2000, "a", NULL), PL_OK);
    CHECK_EQ(get_stats(db).files[6], 1);
    put_range(db, 0, 10, "w"); /* flushed by the next ingest: into L0 */
    CHECK_RC(ingest_range(db, 3000, 4000, "b", NULL), PL_OK);
    stats s = get_stats(db);
    CHECK_EQ(s.files[0], 1);
    CHECK_EQ(s.files[6], 2); /* beside the first: no overlap anywhere */
    CHECK_RC(ingest_range(db, 5, 20, "c", NULL), PL_OK); /* overlaps the L0 flush */
    s = get_stats(db);
    CHECK_EQ(s.files[0], 2);
    CHECK_EQ(count_tag(db, NULL, 0, 5, "w"), 5);
    CHECK_EQ(count_tag(db, NULL, 5, 20, "c"), 15);
    CHECK_RC(ingest_range(db, 1500, 1600, "d", NULL), PL_OK); /* overlaps L6 only: L5 */
    s = get_stats(db);
    CHECK_EQ(s.files[5], 1);
    CHECK_EQ(count_tag(db, NULL, 1000, 2000, "a"), 900);
    CHECK_EQ(count_tag(db, NULL, 1500, 1600, "d"), 100);
    CHECK_RC(pl_db_close(db), PL_OK);
    db = open_db(path, 1);
    if (db) {
        CHECK_EQ(count_tag(db, NULL, 1500, 1600, "d"), 100);
        CHECK_EQ(count_tag(db, NULL, 3000, 4000, "b"), 1000);
        CHECK_RC(pl_db_close(db), PL_OK);
    }
    tu_rm_rf(path);
}

/* ---- beside other calls ---- */

typedef struct {
    pl_db *db;
    _Atomic int done;
} writer_arg;

static void *writer_main(void *p)
{
    writer_arg *w = p;
    char k[32], v[VALUE_LEN];
    for (int i = 0; i < 50; i++) {
        size_t kn = key_of(100000 + i, k), vn = value_of(100000 + i, "w", v);
        if (pl_db_put(w->db, k, kn, v, vn, 0))
            break;
        atomic_store(&w->done, i + 1);
    }
    return NULL;
}

/* With a small LSN gap, writers go on beside the ingest until the reserved LSN, then wait for its
 * commit; the ingest's own thread gets PL_BUSY rather than waiting for itself; a second ingest is
 * refused; a read-only handle and a closed database refuse one. */
static void test_writers_beside_an_ingest(void)
{
    const char *path = sub("beside");
    tu_rm_rf(path);
    pl_db *db = open_db(path, 1);
    if (!db)
        return;
    uint64_t gap = ingest_lsn_gap;
    ingest_lsn_gap = 8;
    pl_ingest *g = NULL, *g2 = NULL;
    CHECK_RC(pl_ingest_new(db, &g), PL_OK);
    CHECK_RC(pl_ingest_new(db, &g2), PL_BUSY);
    char k[32], v[VALUE_LEN];
    for (int i = 0; g && i < 100; i++)
        CHECK_RC(pl_ingest_add(g, k, key_of(i, k), v, value_of(i, "new", v)), PL_OK);
    put_range(db, 0, 3, "early"); /* LSNs below the ingest's: the ingest wins */
    int rc = PL_OK, i;
    for (i = 3; i < 20 && !rc; i++)
        rc = pl_db_put(db, k, key_of(i, k), v, value_of(i, "x", v), 0);
    CHECK_RC(rc, PL_BUSY);
    CHECK_EQ(i - 1, 7); /* the 8th LSN would be the ingest's */
    writer_arg w = {db, 0};
    pthread_t t;
    pthread_create(&t, NULL, writer_main, &w);
    struct timespec ts = {0, 50 * 1000000L};
    nanosleep(&ts, NULL);
    CHECK_EQ(atomic_load(&w.done), 0); /* waiting for the commit */
    uint64_t n = 0;
    if (g)
        CHECK_RC(pl_ingest_finish(g, &n), PL_OK);
    pthread_join(t, NULL);
    CHECK_EQ(atomic_load(&w.done), 50);
    CHECK_EQ(n, 100);
    CHECK_EQ(count_tag(db, NULL, 0, 100, "new"), 100);
    CHECK_EQ(count_tag(db, NULL, 100000, 100050, "w"), 50);
    put_range(db, 0, 3, "late"); /* after the ingest: newer */
    CHECK_EQ(count_tag(db, NULL, 0, 3, "late"), 3);
    ingest_lsn_gap = gap;

    /* A read-only handle refuses; so does a database closed while an ingest runs. */
    pl_options o;
    pl_options_init(&o);
    o.read_only = 1;
    pl_db *ro = NULL;
    CHECK_RC(pl_db_open(path, &o, &ro), PL_OK);
    if (ro) {
        CHECK_RC(pl_ingest_new(ro, &g), PL_RDONLY_OPEN);
        CHECK_RC(pl_db_close(ro), PL_OK);
    }
    g = NULL;
    pl_db_retain(db); /* the handle's memory, for the calls after close */
    CHECK_RC(pl_ingest_new(db, &g), PL_OK);
    if (g) {
        CHECK_RC(pl_ingest_add(g, "z1", 2, "1", 1), PL_OK);
        CHECK_RC(pl_db_close(db), PL_OK);
        CHECK_RC(pl_ingest_add(g, "z2", 2, "1", 1), PL_CLOSED);
        CHECK_RC(pl_ingest_finish(g, &n), PL_CLOSED);
    } else {
        CHECK_RC(pl_db_close(db), PL_OK);
    }
    CHECK_RC(pl_ingest_new(db, &g), PL_CLOSED);
    pl_db_release(db);

    /* A close while the builder thread is inside a chunk (held there by a test hook): the close waits
     * for the chunk, and once it has returned nothing in the directory changes (another process may
     * open it); the ingest fails, and its abort takes its tables. */
    db = open_db(path, 0);
    if (db) {
        int before = count_files(path, ".sst");
        pl_db_retain(db);
        g = NULL;
        CHECK_RC(pl_ingest_new(db, &g), PL_OK);
        char k[32], v[VALUE_LEN];
        int i = 0;
        for (; g && i < 12000; i++)
            CHECK_RC(pl_ingest_add(g, k, (size_t)snprintf(k, sizeof k, "zz%06d", i), v, value_of(i, "z", v)), PL_OK);
        atomic_store(&hold_state, 1); /* the builder's next chunk waits in the hook */
        env_set_test_hook(hold_builder, NULL);
        while (g && atomic_load(&hold_state) == 1 && i < 200000) {
            CHECK_RC(pl_ingest_add(g, k, (size_t)snprintf(k, sizeof k, "zz%06d", i), v, value_of(i, "z", v)), PL_OK);
            i++;
        }
        while (atomic_load(&hold_state) == 1)
            ; /* (the builder reaches the hook once a chunk is handed over) */
        CHECK_RC(pl_db_close(db), PL_OK);
        env_set_test_hook(NULL, NULL);
        long long after_close = sst_bytes(path);
        while (atomic_load(&hold_state) != 3)
            ; /* the held chunk goes on */
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
        CHECK_EQ(sst_bytes(path), after_close); /* it was built before the close returned */
        if (g) {
            CHECK_RC(pl_ingest_add(g, "zz999999", 8, "1", 1), PL_CLOSED);
            pl_ingest_abort(g);
        }
        CHECK_EQ(count_files(path, ".sst"), before);
        pl_db_release(db);
    }
    db = open_db(path, 0);
    if (db) {
        pl_buf b = {0};
        CHECK_RC(pl_db_get(db, NULL, "z1", 2, &b, 0), PL_NOTFOUND);
        pl_buf_free(&b);
        CHECK_EQ(count_tag(db, NULL, 3, 100, "new"), 97);
        CHECK_EQ(get_stats(db).sstables, (uint64_t)count_files(path, ".sst"));
        CHECK_RC(pl_db_close(db), PL_OK);
    }
    tu_rm_rf(path);
}

/* ---- failures and crashes ---- */

#define BASE_KEYS 300   /* 0-149 in a table, 150-299 in the memtable (its WAL) */
#define INGEST_KEYS 8000 /* 2.4 MB: two tables */

static pl_db *make_base(const char *path)
{
    tu_rm_rf(path);
    pl_db *db = open_db(path, 1);
    if (!db)
        return NULL;
    put_range(db, 0, 150, "old");
    CHECK_RC(pl_db_flush(db), PL_OK);
    put_range(db, 150, BASE_KEYS, "old");
    return db;
}

/* Reopen: the base intact and the ingest all there or not at all, and no table left unnamed.
 * Returns 1 if the ingest is there. */
static int check_all_or_nothing(const char *path, const char *what, long nth)
{
    pl_db *db = open_db(path, 0); /* no compaction writing tables while they are counted */
    CHECK(db != NULL);
    if (!db)
        return 0;
    int news = count_tag(db, NULL, 0, INGEST_KEYS, "new");
    int olds = count_tag(db, NULL, 0, BASE_KEYS, "old");
    int absent = count_tag(db, NULL, BASE_KEYS, INGEST_KEYS, "");
    int all = news == INGEST_KEYS, none = news == 0 && olds == BASE_KEYS && absent == INGEST_KEYS - BASE_KEYS;
    if (!all && !none)
        fprintf(stderr, "%s %ld: %d new, %d old, %d absent\n", what, nth, news, olds, absent);
    CHECK(all || none);
    CHECK_EQ(get_stats(db).sstables, (uint64_t)count_files(path, ".sst"));
    CHECK_RC(pl_db_close(db), PL_OK);
    return all;
}

/* The nth I/O call of an ingest (the memtable flush and the manifest edit of its commit included)
 * fails, once or for good; with faults off, reopening finds the database as it was or with all of
 * it -- all of it whenever the ingest returned PL_OK.  A failure writing the manifest leaves the
 * database refusing writes. */
static void test_any_failing_io_call(void)
{
    const char *path = sub("faults");
    for (int persistent = 0; persistent < 2; persistent++) {
        int ok_in_a_row = 0, failures = 0, manifest_failures = 0;
        for (long nth = 1; ok_in_a_row < 3 && nth < 400; nth++) {
            pl_db *db = make_base(path);
            if (!db)
                return;
            env_fault_set(ENV_OP_ALL, nth, nth % 2 ? EIO : ENOSPC, persistent);
            int rc = ingest_range(db, 0, INGEST_KEYS, "new", NULL);
            int manifest = rc != PL_OK && strstr(pl_errmsg(), "MANIFEST") != NULL;
            env_fault_clear();
            if (manifest) { /* the commit's record may be half written: nothing may follow it */
                manifest_failures++;
                CHECK_RC(pl_db_put(db, "after", 5, "x", 1, 0), PL_READONLY);
            }
            pl_db_close(db); /* may fail: a failed commit leaves the database read-only */
            int all = check_all_or_nothing(path, persistent ? "persistent fault" : "fault", nth);
            if (rc == PL_OK)
                CHECK(all);
            ok_in_a_row = rc == PL_OK ? ok_in_a_row + 1 : 0;
            failures += rc != PL_OK;
        }
        CHECK(ok_in_a_row == 3);
        CHECK(failures > 10); /* the faults hit the ingest's own calls */
        CHECK(manifest_failures > 0); /* and the commit's manifest record */
    }
    tu_rm_rf(path);
}

static void die_at(void *ctx, const char *name)
{
    if (!strcmp(name, (const char *)ctx))
        _exit(0);
}

/* A process that dies part-way (after some adds, at the commit after the flush) or loses power
 * right after the ingest returned: reopening finds nothing of it, or, after the return, all of it. */
static void test_crash_and_power_cut(void)
{
    const char *path = sub("crash");
    for (int step = 0; step < 4; step++) {
        pl_db *db = make_base(path);
        if (!db)
            return;
        CHECK_RC(pl_db_close(db), PL_OK);
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            if (step == 3)
                env_track_sync(1);
            db = open_db(path, 1);
            pl_ingest *g = NULL;
            if (!db || pl_ingest_new(db, &g))
                _exit(2);
            if (step == 1)
                env_set_test_hook(die_at, "ingest_flushed");
            char k[32], v[VALUE_LEN];
            for (int i = 0; i < INGEST_KEYS; i++) {
                if (step == 0 && i == INGEST_KEYS - 10)
                    _exit(0); /* a table written, the next one part-way */
                if (pl_ingest_add(g, k, key_of(i, k), v, value_of(i, "new", v)))
                    _exit(3);
            }
            uint64_t n;
            if (pl_ingest_finish(g, &n))
                _exit(4);
            if (step == 3)
                _exit(env_drop_unsynced() ? 5 : 0); /* the cut: nothing closed, nothing more synced */
            _exit(0);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        CHECK(count_files(path, ".sst") >= 2); /* the base's table and the ingest's */
        int all = check_all_or_nothing(path, "crash step", step);
        CHECK_EQ(all, step >= 2);
    }
    tu_rm_rf(path);
}

int main(void)
{
    snprintf(base, sizeof base, "/tmp/pylsm-test-ingest-%d", (int)getpid());
    tu_rm_rf(base);
    mkdir(base, 0755);
    test_order_errors_write_nothing();
    test_pairs_of_every_size();
    test_overwrites_every_layer_and_snapshots();
    test_placement();
    test_writers_beside_an_ingest();
    test_any_failing_io_call();
    test_crash_and_power_cut();
    tu_rm_rf(base);
    return test_report();
}
