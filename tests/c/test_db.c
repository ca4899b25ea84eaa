/* test_db.c -- the database through its public API (pylsm.h): chunked reads of entries larger than any
 * chunk (pl_iter_read), a new database's directory made durable (power-loss tracking of env.c), and
 * regression tests of the read path and of open. */
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dirent.h>
#include <fcntl.h>

#include "cache.h"
#include "env.h"
#include "pylsm.h"
#include "testutil.h"
#include "version.h"

static char base[64];

static char *sub(const char *name)
{
    static char p[8][256];
    static int i;
    i = (i + 1) % 8;
    snprintf(p[i], sizeof p[i], "%s/%s", base, name);
    return p[i];
}

static uint64_t le64(const char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | (unsigned char)p[i];
    return v;
}

static void fill(char *v, size_t n, unsigned k)
{
    for (size_t i = 0; i < n; i++)
        v[i] = (char)(k * 31 + i * 7);
}

/* Entries larger than max_bytes, and mixes of small and large ones: every chunk holds at least one
 * entry, a chunk cut short by max_bytes leaves the iterator valid, and reading chunk after chunk until
 * pl_iter_valid() is 0 yields every entry, forward and backward, from the memtable and from tables. */
static void test_read_large_entries(void)
{
    static const size_t sizes[] = {40000, 0, 1u << 20, (1u << 20) + 1, 7, 3u << 20, 70000, 1, 200000, 2u << 20};
    enum { N = sizeof sizes / sizeof sizes[0] };
    for (int phase = 0; phase < 2; phase++) {
        const char *path = sub(phase ? "large_tables" : "large_mem");
        tu_rm_rf(path);
        pl_options o;
        pl_options_init(&o);
        pl_db *db = NULL;
        CHECK_RC(pl_db_open(path, &o, &db), PL_OK);
        if (!db)
            return;
        char *v = malloc(3u << 20);
        for (unsigned i = 0; i < N; i++) {
            char key[16];
            int kl = snprintf(key, sizeof key, "k%02u", i);
            fill(v, sizes[i], i);
            CHECK_RC(pl_db_put(db, key, (size_t)kl, v, sizes[i], 0), PL_OK);
        }
        if (phase)
            CHECK_RC(pl_db_flush(db), PL_OK);
        for (int reverse = 0; reverse < 2; reverse++) {
            for (size_t max_bytes = 1; max_bytes <= (4u << 20); max_bytes *= 64) {
                pl_iter *it = NULL;
                CHECK_RC(pl_iter_new(db, NULL, &it), PL_OK);
                if (!it)
                    continue;
                CHECK_RC(reverse ? pl_iter_seek_last(it) : pl_iter_seek_first(it), PL_OK);
                pl_buf out = {0};
                unsigned seen = 0, chunks = 0, bad = 0;
                while (pl_iter_valid(it) && chunks < 100) {
                    size_t n = 0;
                    CHECK_RC(pl_iter_read(it, reverse, 3, 1024, max_bytes, &out, &n), PL_OK);
                    CHECK(n >= 1);
                    chunks++;
                    const char *p = out.data;
                    for (size_t j = 0; j < n; j++, seen++) {
                        unsigned idx = reverse ? N - 1 - seen : seen;
                        uint64_t kn = le64(p), vn = le64(p + 8);
                        char key[16];
                        int kl = snprintf(key, sizeof key, "k%02u", idx);
                        fill(v, sizes[idx], idx);
                        bad += kn != (uint64_t)kl || memcmp(p + 16, key, (size_t)kl) != 0 ||
                               vn != sizes[idx] || memcmp(p + 16 + kn, v, vn) != 0;
                        p += 16 + kn + vn;
                    }
                }
                CHECK_EQ(seen, N);
                CHECK_EQ(bad, 0);
                if (max_bytes == 1)
                    CHECK_EQ(chunks, N); /* one entry per chunk however large */
                pl_buf_free(&out);
                pl_iter_free(it);
            }
        }
        free(v);
        CHECK_RC(pl_db_close(db), PL_OK);
        tu_rm_rf(path);
    }
}

/* A power cut right after the first acknowledged every_write put into a database whose directory (and
 * the directories above it) open created: what env.c's tracking says was never made durable is
 * dropped, in a child that then dies without closing; the parent must find the put. */
static void test_new_directory_survives_power_cut(void)
{
    static const char *paths[] = {"fresh", "deep/er/fresh"};
    for (int i = 0; i < 2; i++) {
        tu_rm_rf(sub("deep"));
        const char *path = sub(paths[i]);
        tu_rm_rf(path);
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            env_track_sync(1);
            pl_options o;
            pl_options_init(&o);
            o.sync_mode = PL_SYNC_EVERY_WRITE;
            pl_db *db = NULL;
            if (pl_db_open(path, &o, &db) || pl_db_put(db, "key", 3, "value", 5, 0))
                _exit(2);
            _exit(env_drop_unsynced() ? 3 : 0); /* the power cut: the open handle is never closed */
        }
        int status = 0;
        waitpid(pid, &status, 0);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        pl_options o;
        pl_options_init(&o);
        o.create_if_missing = 0;
        pl_db *db = NULL;
        CHECK_RC(pl_db_open(path, &o, &db), PL_OK);
        if (db) {
            pl_buf v = {0};
            CHECK_RC(pl_db_get(db, NULL, "key", 3, &v, 0), PL_OK);
            CHECK(v.len == 5 && memcmp(v.data, "value", 5) == 0);
            pl_buf_free(&v);
            CHECK_RC(pl_db_close(db), PL_OK);
        }
        tu_rm_rf(path);
    }
    tu_rm_rf(sub("deep"));
}

/* ---- a read racing a flush (issue 9, bug 4) ----
 * At "get_start" (where the read used to load its LSN before taking its references) the hook
 * overwrites the key and flushes, so the table written holds only the new version.  A read at the
 * old LSN through the new references would find nothing; the read must see one of the versions. */
static pl_db *hook_db;
static int hook_armed;

static void overwrite_and_flush(void *ctx, const char *name)
{
    if (strcmp(name, "get_start") != 0 || !hook_armed)
        return;
    hook_armed = 0;
    CHECK_RC(pl_db_put(hook_db, "k", 1, "v2", 2, 0), PL_OK);
    CHECK_RC(pl_db_flush(hook_db), PL_OK);
}

/* A fresh database with default options at path into hook_db; 0 if it could not be opened. */
static int open_hook_db(const char *path)
{
    tu_rm_rf(path);
    pl_options o;
    pl_options_init(&o);
    hook_db = NULL;
    CHECK_RC(pl_db_open(path, &o, &hook_db), PL_OK);
    return hook_db != NULL;
}

static void test_get_racing_a_flush(void)
{
    const char *path = sub("getrace");
    if (!open_hook_db(path))
        return;
    for (int round = 0; round < 3; round++) {
        CHECK_RC(pl_db_put(hook_db, "k", 1, "v1", 2, 0), PL_OK);
        if (round == 1)
            CHECK_RC(pl_db_flush(hook_db), PL_OK); /* the old version in a table, not the memtable */
        hook_armed = 1;
        env_set_test_hook(overwrite_and_flush, NULL);
        pl_buf v = {0};
        CHECK_RC(pl_db_get(hook_db, NULL, "k", 1, &v, 0), PL_OK);
        CHECK(v.len == 2 && v.data[0] == 'v');
        env_set_test_hook(NULL, NULL);
        pl_buf_free(&v);
    }
    CHECK_RC(pl_db_close(hook_db), PL_OK);
    tu_rm_rf(path);
}

/* ---- an iterator's memtable sort does not hold the database lock (issue 9, bug 6) ----
 * While pl_iter_new sorts a memtable's entries ("memtable_sorted", inside the sort's critical
 * section), a get and a put from another thread must complete: they wait for nothing the sort
 * holds.  The hook waits for them with a generous deadline (a liveness check, not a timing one). */
static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t live_cv = PTHREAD_COND_INITIALIZER;
static int live_done, live_ok;

static void *get_and_put(void *arg)
{
    pl_buf v = {0};
    int ok = pl_db_get(hook_db, NULL, "key5", 4, &v, 0) == PL_OK &&
             pl_db_put(hook_db, "other", 5, "x", 1, 0) == PL_OK;
    pl_buf_free(&v);
    pthread_mutex_lock(&live_mu);
    live_done = 1;
    live_ok = ok;
    pthread_cond_broadcast(&live_cv);
    pthread_mutex_unlock(&live_mu);
    return NULL;
}

static void wait_for_reader(void *ctx, const char *name)
{
    if (strcmp(name, "memtable_sorted") != 0 || !hook_armed)
        return;
    hook_armed = 0;
    pthread_t t;
    pthread_create(&t, NULL, get_and_put, NULL);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 20;
    pthread_mutex_lock(&live_mu);
    while (!live_done && pthread_cond_timedwait(&live_cv, &live_mu, &dl) == 0)
        ;
    int done = live_done;
    pthread_mutex_unlock(&live_mu);
    CHECK(done); /* else the get waited for the sort: it holds the lock readers need */
    if (done)
        pthread_join(t, NULL);
    else
        pthread_detach(t);
}

static void test_iterator_sort_does_not_block_reads(void)
{
    const char *path = sub("sortlock");
    if (!open_hook_db(path))
        return;
    for (int i = 0; i < 1000; i++) {
        char k[16];
        int kl = snprintf(k, sizeof k, "key%d", i);
        CHECK_RC(pl_db_put(hook_db, k, (size_t)kl, "v", 1, 0), PL_OK);
    }
    live_done = 0;
    hook_armed = 1;
    env_set_test_hook(wait_for_reader, NULL);
    pl_iter *it = NULL;
    CHECK_RC(pl_iter_new(hook_db, NULL, &it), PL_OK);
    env_set_test_hook(NULL, NULL);
    CHECK(live_done && live_ok);
    size_t n = 0;
    CHECK_RC(pl_iter_seek_first(it), PL_OK);
    for (; pl_iter_valid(it); pl_iter_next(it))
        n++;
    CHECK_EQ(n, 1000); /* the put made during the sort came after the iterator's view */
    pl_iter_free(it);
    CHECK_RC(pl_db_close(hook_db), PL_OK);
    tu_rm_rf(path);
}

/* ---- the manifest ---- */

/* Issue 9, bug 7: when CURRENT is renamed to name a new manifest, that manifest's directory entry is
 * already durable (else a power cut right after the rename leaves CURRENT naming nothing). */
static const char *manifest_dir;
static int current_renames, manifest_name_durable;

static void check_manifest_durable(void *ctx, const char *name)
{
    if (strcmp(name, "current_rename") != 0)
        return;
    DIR *d = opendir(manifest_dir);
    unsigned long best = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        if (strncmp(e->d_name, "MANIFEST-", 9) == 0 && strtoul(e->d_name + 9, NULL, 10) > best)
            best = strtoul(e->d_name + 9, NULL, 10);
    if (d)
        closedir(d);
    char p[300];
    snprintf(p, sizeof p, "%s/MANIFEST-%06lu", manifest_dir, best);
    current_renames++;
    manifest_name_durable += env_name_durable(p);
}

static void test_manifest_durable_before_current_names_it(void)
{
    const char *path = sub("manifest7");
    tu_rm_rf(path);
    manifest_dir = path;
    pl_options o;
    pl_options_init(&o);
    o.memtable_bytes = 64 << 10;
    current_renames = manifest_name_durable = 0;
    env_track_sync(1);
    env_set_test_hook(check_manifest_durable, NULL);
    pl_db *db = NULL;
    for (int round = 0; round < 3; round++) { /* creation, then reopens */
        CHECK_RC(pl_db_open(path, &o, &db), PL_OK);
        if (db)
            CHECK_RC(pl_db_close(db), PL_OK);
    }
    env_set_test_hook(NULL, NULL);
    env_track_sync(0);
    CHECK_EQ(current_renames, 3);
    CHECK_EQ(manifest_name_durable, current_renames);
    tu_rm_rf(path);
}

/* Issue 9, bug 2: an append to the manifest cut short (ENOSPC part-way through the record) is never
 * followed by another, so the torn record stays the manifest's tail and the database reopens. */
static void test_manifest_append_after_a_short_write(void)
{
    const char *path = sub("manifest2");
    tu_rm_rf(path);
    pl_options o;
    pl_options_init(&o);
    pl_db *db = NULL;
    CHECK_RC(pl_db_open(path, &o, &db), PL_OK); /* a database with a manifest */
    if (!db)
        return;
    CHECK_RC(pl_db_put(db, "a", 1, "1", 1, 0), PL_OK);
    CHECK_RC(pl_db_close(db), PL_OK);
    cache *c = cache_new(0);
    versions vs;
    CHECK_RC(versions_open(&vs, path, c, 0), PL_OK);
    CHECK_RC(versions_start(&vs), PL_OK);
    uint64_t lsn0 = vs.last_lsn;
    version_edit e;
    edit_init(&e);
    e.has_last_lsn = 1;
    e.last_lsn = lsn0 + 5;
    version *v = NULL;
    env_fault_set(ENV_OP_WRITE | ENV_OP_SHORT, 1, ENOSPC, 0);
    CHECK_RC(versions_apply(&vs, &e, &v), PL_IOERR);
    env_fault_clear();
    edit_free(&e);
    edit_init(&e);
    e.has_last_lsn = 1;
    e.last_lsn = lsn0 + 7;
    CHECK(versions_apply(&vs, &e, &v) != PL_OK); /* sticky: nothing after the torn record */
    edit_free(&e);
    versions_close(&vs);
    CHECK_RC(versions_open(&vs, path, c, 0), PL_OK); /* the torn tail is tolerated */
    CHECK_EQ(vs.last_lsn, lsn0);
    versions_close(&vs);
    cache_free(c);
    db = NULL;
    CHECK_RC(pl_db_open(path, &o, &db), PL_OK);
    if (db) {
        pl_buf b = {0};
        CHECK_RC(pl_db_get(db, NULL, "a", 1, &b, 0), PL_OK);
        pl_buf_free(&b);
        CHECK_RC(pl_db_close(db), PL_OK);
    }
    tu_rm_rf(path);
}

/* A manifest roll that fails before CURRENT names the new manifest leaves the old one live, and the
 * edits after it are appended there in sequence: none may be lost at the next open. */
static void test_edits_after_a_failed_roll(void)
{
    const char *path = sub("manifest_roll");
    tu_rm_rf(path);
    CHECK_RC(env_mkdir(path), PL_OK);
    cache *c = cache_new(0);
    versions vs;
    CHECK_RC(versions_open(&vs, path, c, 1), PL_OK); /* a new version set, then its first manifest */
    CHECK_RC(versions_start(&vs), PL_OK);
    uint64_t lsn0 = vs.last_lsn, roll = manifest_roll_bytes;
    for (int i = 1; i <= 3; i++) {
        version_edit e;
        edit_init(&e);
        e.has_last_lsn = 1;
        e.last_lsn = lsn0 + (uint64_t)i;
        version *v = NULL;
        CHECK_RC(versions_apply(&vs, &e, &v), PL_OK);
        edit_free(&e);
        if (i == 1) { /* the roll after the first edit fails at the new manifest's open */
            manifest_roll_bytes = 0;
            env_fault_set(ENV_OP_OPEN, 1, EIO, 0);
        }
        if (v)
            versions_install(&vs, v);
        env_fault_clear();
        manifest_roll_bytes = roll;
    }
    versions_close(&vs);
    CHECK_RC(versions_open(&vs, path, c, 0), PL_OK);
    CHECK_EQ(vs.last_lsn, lsn0 + 3);
    versions_close(&vs);
    cache_free(c);
    tu_rm_rf(path);
}

/* A read-only handle beside a writer in this process: no lock, no byte written, the state of the
 * open until pl_db_refresh, writes refused, snapshots pinned across a refresh that follows a
 * compaction which dropped the versions they read. */
static void test_read_only_beside_a_writer(void)
{
    char *path = sub("ro");
    tu_rm_rf(path);
    pl_options o;
    pl_options_init(&o);
    o.memtable_bytes = 64 * 1024;
    pl_db *w, *r;
    CHECK_RC(pl_db_open(path, &o, &w), PL_OK);
    char k[16], v[100];
    for (unsigned i = 0; i < 3000; i++) {
        snprintf(k, sizeof k, "k%06u", i);
        fill(v, sizeof v, i);
        CHECK_RC(pl_db_put(w, k, strlen(k), v, sizeof v, 0), PL_OK);
    }
    pl_options ro = o;
    ro.read_only = 1;
    CHECK_RC(pl_db_open(path, &ro, &r), PL_OK);
    CHECK_RC(pl_db_put(r, "a", 1, "b", 1, 0), PL_RDONLY_OPEN);
    CHECK_RC(pl_db_delete(r, "a", 1, 0), PL_RDONLY_OPEN);
    CHECK_RC(pl_db_flush(r), PL_RDONLY_OPEN);
    CHECK_RC(pl_db_sync(r), PL_RDONLY_OPEN);
    CHECK_RC(pl_db_refresh(w), PL_MISUSE);
    pl_snapshot *snap;
    CHECK_RC(pl_snapshot_new(r, &snap), PL_OK);
    for (unsigned i = 0; i < 3000; i++) { /* overwrite everything, then compact it away */
        snprintf(k, sizeof k, "k%06u", i);
        CHECK_RC(pl_db_put(w, k, strlen(k), "new", 3, 0), PL_OK);
    }
    CHECK_RC(pl_db_compact(w, NULL, 0, 0, NULL, 0, 0), PL_OK);
    pl_buf b = {0};
    CHECK_RC(pl_db_get(r, NULL, "k000007", 7, &b, 0), PL_OK);
    CHECK(b.len == sizeof v); /* the state of the open */
    CHECK_RC(pl_db_refresh(r), PL_OK);
    CHECK_RC(pl_db_get(r, NULL, "k000007", 7, &b, 0), PL_OK);
    CHECK(b.len == 3 && memcmp(b.data, "new", 3) == 0);
    CHECK_RC(pl_db_get(r, snap, "k000007", 7, &b, 0), PL_OK);
    fill(v, sizeof v, 7);
    CHECK(b.len == sizeof v && memcmp(b.data, v, sizeof v) == 0); /* pinned */
    pl_iter *it;
    CHECK_RC(pl_iter_new(r, snap, &it), PL_OK);
    CHECK_RC(pl_iter_seek_first(it), PL_OK);
    size_t n = 0;
    while (pl_iter_valid(it)) {
        const char *val;
        size_t vl;
        pl_iter_value(it, &val, &vl);
        CHECK(vl == sizeof v);
        n++;
        CHECK_RC(pl_iter_next(it), PL_OK);
    }
    CHECK(n == 3000);
    pl_iter_free(it);
    pl_snapshot_release(snap);
    pl_buf_free(&b);
    CHECK_RC(pl_db_close(r), PL_OK);
    CHECK_RC(pl_db_close(w), PL_OK);
    /* no database there: PL_NOTFOUND, nothing created */
    CHECK_RC(pl_db_open(sub("ro-missing"), &ro, &r), PL_NOTFOUND);
    struct stat st;
    CHECK(stat(sub("ro-missing"), &st) != 0);
    tu_rm_rf(path);
}

/* A power cut right after a call that promises durability (flush, compact, repair, and the close of
 * a database written without syncs), in a child with power-loss tracking: every key written before it
 * must be there after a reopen.  Compaction deletes its inputs, so its outputs' names must be durable
 * first; repair replaces the whole state; a clean close makes every acknowledged write durable. */
static void put_keys(pl_db *db, unsigned from, unsigned to)
{
    char k[16], v[100];
    for (unsigned i = from; i < to; i++) {
        snprintf(k, sizeof k, "k%06u", i);
        fill(v, sizeof v, i);
        if (pl_db_put(db, k, strlen(k), v, sizeof v, 0))
            _exit(4);
    }
}

static void check_keys(const char *path, unsigned n, const char *what)
{
    pl_options o;
    pl_options_init(&o);
    o.create_if_missing = 0;
    pl_db *db = NULL;
    CHECK_RC(pl_db_open(path, &o, &db), PL_OK);
    if (!db) {
        fprintf(stderr, "  after %s: the database does not open: %s\n", what, pl_errmsg());
        return;
    }
    pl_buf b = {0};
    unsigned missing = 0;
    char k[16], v[100];
    for (unsigned i = 0; i < n; i++) {
        snprintf(k, sizeof k, "k%06u", i);
        fill(v, sizeof v, i);
        if (pl_db_get(db, NULL, k, strlen(k), &b, 0) != PL_OK || b.len != sizeof v || memcmp(b.data, v, sizeof v))
            missing++;
    }
    if (missing)
        fprintf(stderr, "  after %s: %u of %u keys lost at the power cut\n", what, missing, n);
    CHECK(missing == 0);
    pl_buf_free(&b);
    CHECK_RC(pl_db_close(db), PL_OK);
}

static void test_power_cut_after_flush_compact_repair_and_close(void)
{
    const char *what[] = {"flush", "compact", "repair", "close"};
    for (int step = 0; step < 4; step++) {
        char *path = sub("cut");
        tu_rm_rf(path);
        pl_options o;
        pl_options_init(&o);
        o.background_compaction = 0;
        o.memtable_bytes = 64 * 1024;
        if (step == 2) { /* repair works on a closed database: make one, durable, first */
            pl_db *db = NULL;
            CHECK_RC(pl_db_open(path, &o, &db), PL_OK);
            if (db) {
                put_keys(db, 0, 2000);
                CHECK_RC(pl_db_close(db), PL_OK);
            }
        }
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            env_track_sync(1);
            if (step == 2) {
                if (pl_repair(path))
                    _exit(2);
            } else {
                pl_db *db = NULL;
                if (pl_db_open(path, &o, &db))
                    _exit(2);
                put_keys(db, 0, 2000); /* several tables in L0 (64 KiB memtable) */
                if (step == 3) { /* sync="none": only the close makes the last writes durable */
                    if (pl_db_close(db))
                        _exit(3);
                } else if (pl_db_flush(db) || (step == 1 && pl_db_compact(db, NULL, 0, 0, NULL, 0, 0))) {
                    _exit(3);
                }
            }
            _exit(env_drop_unsynced() ? 5 : 0); /* the cut: nothing is closed */
        }
        int status = 0;
        waitpid(pid, &status, 0);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        check_keys(path, 2000, what[step]);
        tu_rm_rf(path);
    }
}

/* ---- pl_db_get_many: the answers of pl_db_get, key by key ----
 * Keys in every place a read looks (the memtable, L0 tables over an L1 table, deleted in a newer
 * layer, absent, repeated), in a random order spanning many batches, at the latest state and at a
 * snapshot; then a damaged data block: the batch read reports PL_CORRUPT as single reads do. */
static int compare_many(pl_db *db, const pl_snapshot *snap, char (*keys)[16], size_t n)
{
    const char **kp = calloc(n + 1, sizeof *kp);
    size_t *kl = calloc(n + 1, sizeof *kl);
    int64_t *lens = calloc(n + 1, sizeof *lens);
    for (size_t i = 0; i < n; i++) {
        kp[i] = keys[i];
        kl[i] = strlen(keys[i]);
    }
    pl_buf vals = {0}, one = {0};
    int rc = pl_db_get_many(db, snap, n, kp, kl, &vals, lens), wrong = 0;
    size_t off = 0;
    for (size_t i = 0; rc == PL_OK && i < n; i++) {
        int r = pl_db_get(db, snap, kp[i], kl[i], &one, 0);
        if (r == PL_NOTFOUND)
            wrong += lens[i] != -1;
        else if (r != PL_OK || lens[i] != (int64_t)one.len || memcmp(vals.data + off, one.data, one.len) != 0)
            wrong++;
        else
            off += one.len;
    }
    CHECK_EQ(wrong, 0);
    CHECK(rc != PL_OK || off == vals.len);
    pl_buf_free(&vals);
    pl_buf_free(&one);
    free(kp);
    free(kl);
    free(lens);
    return rc;
}

static void test_get_many_matches_get(void)
{
    const char *path = sub("getmany");
    tu_rm_rf(path);
    pl_options o;
    pl_options_init(&o);
    o.background_compaction = 0;
    pl_db *db = NULL;
    CHECK_RC(pl_db_open(path, &o, &db), PL_OK);
    if (!db)
        return;
    enum { N = 3000 };
    char k[32], v[200];
    for (unsigned i = 0; i < N; i++) { /* L1 after the compaction */
        snprintf(k, sizeof k, "key%06u", i * 2);
        fill(v, 50 + i % 100, i);
        CHECK_RC(pl_db_put(db, k, strlen(k), v, 50 + i % 100, 0), PL_OK);
    }
    CHECK_RC(pl_db_flush(db), PL_OK);
    CHECK_RC(pl_db_compact(db, NULL, 0, 0, NULL, 0, 0), PL_OK);
    for (unsigned i = 0; i < N; i += 3) { /* two L0 tables: newer values, deletes */
        snprintf(k, sizeof k, "key%06u", i * 2);
        fill(v, 20, i + 7);
        CHECK_RC(i % 5 ? pl_db_put(db, k, strlen(k), v, 20, 0) : pl_db_delete(db, k, strlen(k), 0), PL_OK);
        if (i == N / 2)
            CHECK_RC(pl_db_flush(db), PL_OK);
    }
    CHECK_RC(pl_db_flush(db), PL_OK);
    pl_snapshot *snap = NULL;
    CHECK_RC(pl_snapshot_new(db, &snap), PL_OK);
    for (unsigned i = 0; i < N; i += 7) { /* the memtable */
        snprintf(k, sizeof k, "key%06u", i * 2);
        fill(v, 30, i + 11);
        CHECK_RC(i % 2 ? pl_db_put(db, k, strlen(k), v, 30, 0) : pl_db_delete(db, k, strlen(k), 0), PL_OK);
    }
    size_t n = 3 * N;
    char (*keys)[16] = malloc(n * sizeof *keys);
    unsigned long long rs = 99;
    for (size_t i = 0; i < n; i++) /* even: written; odd: absent (between keys); past the end */
        snprintf(keys[i], sizeof keys[i], "key%06u", (unsigned)(tu_rand(&rs) % (2 * N + 40)));
    CHECK_RC(compare_many(db, NULL, keys, n), PL_OK);
    CHECK_RC(compare_many(db, snap, keys, n), PL_OK);
    CHECK_RC(compare_many(db, NULL, keys, 1), PL_OK);
    CHECK_RC(compare_many(db, NULL, keys, 0), PL_OK);
    pl_snapshot_release(snap);
    CHECK_RC(pl_db_close(db), PL_OK);

    /* damage the first data block of the largest table (the L1 one), then read through it */
    DIR *d = opendir(path);
    char victim[300] = "";
    off_t most = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        struct stat st;
        char p[300];
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        if (strstr(e->d_name, ".sst") && stat(p, &st) == 0 && st.st_size > most) {
            most = st.st_size;
            snprintf(victim, sizeof victim, "%s", p);
        }
    }
    if (d)
        closedir(d);
    int fd = open(victim, O_RDWR);
    CHECK(fd >= 0);
    CHECK(pwrite(fd, "XXXXXXXX", 8, 40) == 8);
    close(fd);
    CHECK_RC(pl_db_open(path, &o, &db), PL_OK);
    for (size_t i = 0; i < 40; i++) /* keys of the damaged block (the first ones), not in newer layers */
        snprintf(keys[i], sizeof keys[i], "key%06u", (unsigned)(2 * (3 * i + 1)));
    CHECK_RC(compare_many(db, NULL, keys, 40), PL_CORRUPT);
    CHECK(strstr(pl_errmsg(), ".sst") != NULL);
    CHECK_RC(pl_db_close(db), PL_OK);
    free(keys);
    tu_rm_rf(path);
}

/* ---- a failed compaction wakes the writers waiting for the background thread ----
 * A writer waiting for a flush (or for L0 to shrink) while a background compaction runs must get the
 * compaction's error when it fails, not wait forever: the compaction recorded the error without waking
 * anyone, and the background thread, which no longer flushes after an error, waited too.  (make test
 * hung once in tests/test_reliability.py's ENOSPC-during-compaction test under ASan.)  The hook holds
 * the first compaction until the writer is waiting, then makes every write fail with ENOSPC. */
static atomic_int compaction_seen;

static void fail_the_compaction(void *ctx, const char *name)
{
    if (strcmp(name, "compaction_run") != 0 || atomic_exchange(&compaction_seen, 1))
        return;
    usleep(300000); /* the writer fills the memtable twice and waits for the flush */
    env_fault_set(ENV_OP_WRITE, 1, ENOSPC, 1);
}

static void *write_until_refused(void *arg)
{
    char k[32], v[100];
    memset(v, 'v', sizeof v);
    int rc = PL_OK;
    for (int i = 0; i < 1000000 && rc == PL_OK; i++) {
        int kl = snprintf(k, sizeof k, "key%07d", i % 5000);
        rc = pl_db_put(hook_db, k, (size_t)kl, v, sizeof v, 0);
    }
    ((int *)arg)[0] = rc;
    ((int *)arg)[1] = pl_errno();
    return NULL;
}

/* ---- a failed WAL switch is sticky at once ----
 * A batch too big for the rest of the WAL's window makes the writer switch WALs; the new one fails to
 * open.  The old WAL is closed by then, so until the error is recorded a db.sync() from another thread
 * would sync a WAL that is gone.  The hook calls pl_db_sync while the writer is between its locks. */
static int sync_rc_in_window = -1;

static void sync_while_switch_failed(void *ctx, const char *name)
{
    if (strcmp(name, "write_group_unlocked") != 0 || sync_rc_in_window != -1)
        return;
    sync_rc_in_window = pl_db_sync(hook_db);
}

static void test_failed_wal_switch_is_sticky_at_once(void)
{
    const char *path = sub("walswitch");
    tu_rm_rf(path);
    pl_options o;
    pl_options_init(&o);
    o.memtable_bytes = 4u << 20; /* the WAL's window: 7 MiB */
    CHECK_RC(pl_db_open(path, &o, &hook_db), PL_OK);
    static char big[1 << 20];
    memset(big, 'b', sizeof big);
    CHECK_RC(pl_db_put(hook_db, "a", 1, big, sizeof big, 0), PL_OK);
    CHECK_RC(pl_db_put(hook_db, "b", 1, big, sizeof big, 0), PL_OK);
    pl_batch *b = pl_batch_new();
    for (int i = 0; i < 6; i++) {
        char k[8];
        int kl = snprintf(k, sizeof k, "c%d", i);
        CHECK_RC(pl_batch_put(b, k, (size_t)kl, big, sizeof big), PL_OK);
    }
    env_fault_set(ENV_OP_OPEN, 1, EIO, 0); /* the new WAL's open */
    env_set_test_hook(sync_while_switch_failed, NULL);
    CHECK_RC(pl_db_write(hook_db, b, 0), PL_IOERR);
    env_set_test_hook(NULL, NULL);
    env_fault_clear();
    CHECK_EQ(sync_rc_in_window, PL_READONLY);
    CHECK_RC(pl_db_sync(hook_db), PL_READONLY);
    CHECK_RC(pl_db_put(hook_db, "z", 1, "1", 1, 0), PL_READONLY);
    pl_batch_free(b);
    pl_db_close(hook_db);
    pl_db *db;
    CHECK_RC(pl_db_open(path, &o, &db), PL_OK);
    pl_buf v = {0};
    CHECK_RC(pl_db_get(db, NULL, "b", 1, &v, 0), PL_OK);
    CHECK_RC(pl_db_get(db, NULL, "c0", 2, &v, 0), PL_NOTFOUND);
    pl_buf_free(&v);
    CHECK_RC(pl_db_close(db), PL_OK);
    tu_rm_rf(path);
}

/* A compaction that fails (here a manual one, with nothing else writing) leaves the database refusing
 * writes: its output may be half written, and the rule is one for every failed write. */
static void test_failed_compaction_is_sticky(void)
{
    const char *path = sub("compactsticky");
    tu_rm_rf(path);
    pl_options o;
    pl_options_init(&o);
    o.memtable_bytes = 64 << 10;
    pl_db *db;
    CHECK_RC(pl_db_open(path, &o, &db), PL_OK);
    char v[200];
    memset(v, 'c', sizeof v);
    for (int i = 0; i < 3000; i++) {
        char k[16];
        int kl = snprintf(k, sizeof k, "k%06d", i % 1000);
        CHECK_RC(pl_db_put(db, k, (size_t)kl, v, sizeof v, 0), PL_OK);
    }
    CHECK_RC(pl_db_flush(db), PL_OK);
    env_fault_set(ENV_OP_WRITE, 1, ENOSPC, 1);
    int rc = pl_db_compact(db, NULL, 0, 0, NULL, 0, 0);
    env_fault_clear();
    CHECK(rc == PL_IOERR || rc == PL_READONLY);
    CHECK_RC(pl_db_put(db, "after", 5, "x", 1, 0), PL_READONLY);
    pl_db_close(db);
    CHECK_RC(pl_db_open(path, &o, &db), PL_OK);
    pl_buf out = {0};
    CHECK_RC(pl_db_get(db, NULL, "k000999", 7, &out, 0), PL_OK);
    pl_buf_free(&out);
    CHECK_RC(pl_db_close(db), PL_OK);
    tu_rm_rf(path);
}

/* A flush whose table write fails once leaves the database refusing writes: the background thread
 * does not retry it, and flush() reports it. */
static void test_failed_flush_is_sticky(void)
{
    const char *path = sub("flushsticky");
    pl_options o;
    pl_options_init(&o);
    int found = 0;
    /* The flush's write calls: the old WAL's cut, the new WAL's allocation, then the table's writes.
     * The nth that lands on the table is the one wanted. */
    for (long nth = 1; nth <= 8 && !found; nth++) {
        tu_rm_rf(path);
        pl_db *db;
        CHECK_RC(pl_db_open(path, &o, &db), PL_OK);
        for (int i = 0; i < 100; i++) {
            char k[16];
            int kl = snprintf(k, sizeof k, "k%06d", i);
            CHECK_RC(pl_db_put(db, k, (size_t)kl, "v", 1, 0), PL_OK);
        }
        env_fault_set(ENV_OP_WRITE, nth, EIO, 0); /* once */
        int rc = pl_db_flush(db);
        env_fault_clear();
        if (rc != PL_OK && strstr(pl_errmsg(), ".sst") != NULL) {
            found = 1;
            CHECK_RC(pl_db_put(db, "after", 5, "x", 1, 0), PL_READONLY);
            CHECK_RC(pl_db_flush(db), PL_READONLY);
        }
        pl_db_close(db);
        CHECK_RC(pl_db_open(path, &o, &db), PL_OK);
        pl_buf out = {0};
        CHECK_RC(pl_db_get(db, NULL, "k000099", 7, &out, 0), PL_OK);
        pl_buf_free(&out);
        CHECK_RC(pl_db_close(db), PL_OK);
    }
    CHECK(found);
    tu_rm_rf(path);
}

static void test_failed_compaction_wakes_writers(void)
{
    const char *path = sub("compactfail");
    tu_rm_rf(path);
    pl_options o;
    pl_options_init(&o);
    o.memtable_bytes = 32 << 10;
    hook_db = NULL;
    CHECK_RC(pl_db_open(path, &o, &hook_db), PL_OK);
    if (!hook_db)
        return;
    atomic_store(&compaction_seen, 0);
    env_set_test_hook(fail_the_compaction, NULL);
    int rc[2] = {-1, 0}; /* the writer's last code and errno */
    pthread_t w;
    pthread_create(&w, NULL, write_until_refused, rc);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 30;
    if (pthread_timedjoin_np(w, NULL, &dl) != 0) {
        fprintf(stderr, "%s:%d: a writer still waits 30 s after the compaction failed\n", __FILE__, __LINE__);
        _exit(1); /* the database cannot be closed under a stuck writer */
    }
    env_set_test_hook(NULL, NULL);
    env_fault_clear();
    CHECK(atomic_load(&compaction_seen));
    CHECK(rc[0] == PL_READONLY || rc[0] == PL_IOERR);
    CHECK_EQ(rc[1], ENOSPC);
    pl_db_close(hook_db);
    tu_rm_rf(path);
}

/* ---- scans: backward equals forward reversed, over memtables and tables of many small blocks ---- */

#define SCAN_KEYS 1500
#define SCAN_SNAPS 4

static size_t scan_vlen(unsigned k, int ver) { return (k * 7u + (unsigned)ver * 13u) % 300u; }

/* One view's expected entries: ver[k] is the visible version of key k, or -1. */
typedef struct {
    int ver[SCAN_KEYS];
} scan_view;

static void scan_key(char *k, unsigned i) { snprintf(k, 16, "s%05u", i * 7u); }

/* Whether the iterator sits at key index i of view v (i < 0: not valid), its value included. */
static int scan_at(pl_iter *it, const scan_view *v, int i)
{
    if (i < 0)
        return !pl_iter_valid(it);
    if (!pl_iter_valid(it))
        return 0;
    char k[16], val[300];
    scan_key(k, (unsigned)i);
    const char *gk, *gv;
    size_t gkn, gvn;
    pl_iter_key(it, &gk, &gkn);
    pl_iter_value(it, &gv, &gvn);
    size_t n = scan_vlen((unsigned)i, v->ver[i]);
    fill(val, n, (unsigned)(i * 10 + v->ver[i]));
    return gkn == strlen(k) && memcmp(gk, k, gkn) == 0 && gvn == n && memcmp(gv, val, n) == 0;
}

/* The visible key index after (dir 1) or before (dir -1) i within [lo, hi) of view v; -1 when none. */
static int scan_step(const scan_view *v, int i, int dir, int lo, int hi)
{
    for (i += dir; i >= lo && i < hi; i += dir)
        if (v->ver[i] >= 0)
            return i;
    return -1;
}

/* Check one view through pl_iter (at snap, or the current state): a forward and a backward scan (both
 * through pl_iter_read, as the binding reads), and random walks mixing next, prev and seeks, in the
 * whole range and in bounds. */
static void scan_check(pl_db *db, const pl_snapshot *snap, const scan_view *v, unsigned long long *rs,
                       const char *what)
{
    for (int b = 0; b < 4; b++) {
        int lo = 0, hi = SCAN_KEYS;
        char lok[16], hik[16];
        if (b) {
            lo = (int)(tu_rand(rs) % SCAN_KEYS);
            hi = lo + (int)(tu_rand(rs) % (SCAN_KEYS - lo + 1));
        }
        scan_key(lok, (unsigned)lo);
        scan_key(hik, (unsigned)hi);
        pl_iter *it = NULL;
        CHECK_RC(pl_iter_new(db, snap, &it), PL_OK);
        if (!it)
            return;
        if (b)
            pl_iter_set_bounds(it, lok, strlen(lok), 1, hik, strlen(hik), hi < SCAN_KEYS);
        /* forward, then backward, in chunks of 7 entries */
        int bad = 0, count[2] = {0, 0};
        for (int rev = 0; rev < 2; rev++) {
            int want = rev ? scan_step(v, hi, -1, lo, hi) : scan_step(v, lo - 1, 1, lo, hi);
            CHECK_RC(rev ? pl_iter_seek_last(it) : pl_iter_seek_first(it), PL_OK);
            pl_buf out = {0};
            while (pl_iter_valid(it)) {
                size_t n = 0;
                CHECK_RC(pl_iter_read(it, rev, 3, 7, 1u << 20, &out, &n), PL_OK);
                const char *p = out.data;
                for (size_t e = 0; e < n; e++, count[rev]++) {
                    uint64_t kn = le64(p), vn = le64(p + 8);
                    char k[16], val[300];
                    if (want < 0) {
                        bad++;
                        break;
                    }
                    scan_key(k, (unsigned)want);
                    size_t wn = scan_vlen((unsigned)want, v->ver[want]);
                    fill(val, wn, (unsigned)(want * 10 + v->ver[want]));
                    bad += kn != strlen(k) || memcmp(p + 16, k, kn) != 0 || vn != wn ||
                           memcmp(p + 16 + kn, val, wn) != 0;
                    p += 16 + kn + vn;
                    want = scan_step(v, want, rev ? -1 : 1, lo, hi);
                }
                if (bad)
                    break;
            }
            bad += want >= 0;
            pl_buf_free(&out);
        }
        CHECK_EQ(count[0], count[1]);
        if (bad)
            fprintf(stderr, "  %s, bounds [%d, %d): scans differ from the model\n", what, lo, hi);
        CHECK_EQ(bad, 0);
        /* a random walk */
        int pos = -1;
        bad = 0;
        for (int step = 0; step < 3000; step++) {
            unsigned op = (unsigned)(tu_rand(rs) % 12);
            if (op == 0) {
                CHECK_RC(pl_iter_seek_first(it), PL_OK);
                pos = scan_step(v, lo - 1, 1, lo, hi);
            } else if (op == 1) {
                CHECK_RC(pl_iter_seek_last(it), PL_OK);
                pos = scan_step(v, hi, -1, lo, hi);
            } else if (op == 2) {
                int t = (int)(tu_rand(rs) % SCAN_KEYS);
                char k[16];
                scan_key(k, (unsigned)t);
                CHECK_RC(pl_iter_seek(it, k, strlen(k)), PL_OK);
                pos = scan_step(v, (t < lo ? lo : t) - 1, 1, lo, hi);
            } else if (pos < 0) {
                continue;
            } else if (op < 7) {
                CHECK_RC(pl_iter_next(it), PL_OK);
                pos = scan_step(v, pos, 1, lo, hi);
            } else {
                CHECK_RC(pl_iter_prev(it), PL_OK);
                pos = scan_step(v, pos, -1, lo, hi);
            }
            bad += !scan_at(it, v, pos);
        }
        if (bad)
            fprintf(stderr, "  %s, bounds [%d, %d): %d steps of a random walk differ from the model\n", what,
                    lo, hi, bad);
        CHECK_EQ(bad, 0);
        pl_iter_free(it);
    }
}

/* Keys written in rounds (new versions, deletes) with snapshots between the rounds, spread over tables
 * of 256-byte blocks in two levels, L0 and the memtable: every view scans backward exactly as it
 * scans forward, reversed, and random walks agree with the model (the region cache of block.h, the
 * steps back across blocks and tables, and the database iterator's reverse step). */
static void test_reverse_scans(void)
{
    char *path = sub("scans");
    pl_options o;
    pl_options_init(&o);
    o.block_bytes = 256;
    o.background_compaction = 0;
    pl_db *db = NULL;
    CHECK_RC(pl_db_open(path, &o, &db), PL_OK);
    if (!db)
        return;
    static scan_view cur, views[SCAN_SNAPS];
    pl_snapshot *snaps[SCAN_SNAPS] = {0};
    for (int i = 0; i < SCAN_KEYS; i++)
        cur.ver[i] = -1;
    unsigned long long rs = 2024;
    char k[16], val[300];
    for (int round = 0; round < 6; round++) {
        for (int n = 0; n < SCAN_KEYS; n++) {
            unsigned i = (unsigned)(tu_rand(&rs) % SCAN_KEYS);
            if (round > 0 && tu_rand(&rs) % 3 == 0)
                continue;
            scan_key(k, i);
            if (round > 0 && tu_rand(&rs) % 5 == 0) {
                CHECK_RC(pl_db_delete(db, k, strlen(k), 0), PL_OK);
                cur.ver[i] = -1;
            } else {
                size_t n2 = scan_vlen(i, round);
                fill(val, n2, i * 10 + (unsigned)round);
                CHECK_RC(pl_db_put(db, k, strlen(k), val, n2, 0), PL_OK);
                cur.ver[i] = round;
            }
        }
        if (round < SCAN_SNAPS) {
            CHECK_RC(pl_snapshot_new(db, &snaps[round]), PL_OK);
            views[round] = cur;
        }
        if (round == 1)
            CHECK_RC(pl_db_compact(db, NULL, 0, 0, NULL, 0, 0), PL_OK); /* rounds 0-1 in a deeper level */
        else if (round < 5)
            CHECK_RC(pl_db_flush(db), PL_OK); /* an L0 table per round; round 5 stays in the memtable */
    }
    for (int s = 0; s < SCAN_SNAPS; s++) {
        char what[32];
        snprintf(what, sizeof what, "snapshot %d", s);
        if (snaps[s])
            scan_check(db, snaps[s], &views[s], &rs, what);
        pl_snapshot_release(snaps[s]);
    }
    scan_check(db, NULL, &cur, &rs, "the current state");
    /* settled: one level, no memtable */
    CHECK_RC(pl_db_compact(db, NULL, 0, 0, NULL, 0, 0), PL_OK);
    scan_check(db, NULL, &cur, &rs, "compacted");
    CHECK_RC(pl_db_close(db), PL_OK);
    CHECK_RC(pl_db_open(path, &o, &db), PL_OK);
    if (db) {
        scan_check(db, NULL, &cur, &rs, "reopened");
        CHECK_RC(pl_db_close(db), PL_OK);
    }
}

static long count_present(pl_db *db, int from, int to)
{
    long n = 0;
    pl_buf b = {0};
    for (int i = from; i < to; i++) {
        char k[32];
        int kl = snprintf(k, sizeof k, "d%06d", i);
        n += pl_db_get(db, NULL, k, (size_t)kl, &b, 0) == PL_OK;
    }
    pl_buf_free(&b);
    return n;
}

/* delete_range: exactly the keys of the range go, across the memtable and tables; a snapshot from
 * before keeps them; beside a running ingest (LSNs reserved ahead) it goes on while its LSNs fit; a
 * failing fsync fails it whole (nothing deleted in this open, the database read-only, as for any failed
 * write), and a reopen finds all of it or none. */
static void test_delete_range(void)
{
    char path[300];
    snprintf(path, sizeof path, "%s/delrange", base);
    tu_rm_rf(path);
    pl_options o;
    pl_options_init(&o);
    o.memtable_bytes = 64 * 1024;
    pl_db *db = NULL;
    CHECK_RC(pl_db_open(path, &o, &db), PL_OK);
    if (!db)
        return;
    char k[32];
    for (int i = 0; i < 3000; i++) {
        int kl = snprintf(k, sizeof k, "d%06d", i);
        CHECK_RC(pl_db_put(db, k, (size_t)kl, "v", 1, 0), PL_OK);
        if (i == 2000)
            CHECK_RC(pl_db_flush(db), PL_OK);
    }
    pl_snapshot *snap = NULL;
    CHECK_RC(pl_snapshot_new(db, &snap), PL_OK);
    uint64_t n = 0;
    CHECK_RC(pl_db_delete_range(db, "d000100", 7, 1, "d002500", 7, 1, 0, &n), PL_OK);
    CHECK_EQ(n, 2400);
    CHECK_EQ(count_present(db, 0, 3000), 600);
    CHECK_EQ(count_present(db, 100, 2500), 0);
    pl_buf b = {0};
    CHECK_RC(pl_db_get(db, snap, "d000200", 7, &b, 0), PL_OK);
    pl_snapshot_release(snap);
    CHECK_RC(pl_db_compact(db, NULL, 0, 0, NULL, 0, 0), PL_OK);
    CHECK_EQ(count_present(db, 0, 3000), 600);
    CHECK_RC(pl_db_delete_range(db, "z", 1, 1, "a", 1, 1, 0, &n), PL_OK);
    CHECK_EQ(n, 0);

    /* an ingest reserves LSNs ahead: a delete_range whose LSNs fit below them goes on */
    pl_ingest *g = NULL;
    CHECK_RC(pl_ingest_new(db, &g), PL_OK);
    if (g) {
        CHECK_RC(pl_db_delete_range(db, NULL, 0, 0, NULL, 0, 0, 0, &n), PL_OK); /* few LSNs: fits */
        CHECK_EQ(n, 600);
        pl_ingest_abort(g);
    }
    for (int i = 0; i < 100; i++) {
        int kl = snprintf(k, sizeof k, "d%06d", i);
        CHECK_RC(pl_db_put(db, k, (size_t)kl, "v", 1, 0), PL_OK);
    }
    /* a failing write: nothing deleted, and writes refused after it */
    env_fault_set(ENV_OP_WRITE | ENV_OP_SYNC, 1, EIO, 1);
    int rc = pl_db_delete_range(db, NULL, 0, 0, NULL, 0, 0, PL_WRITE_SYNC, &n);
    env_fault_clear();
    CHECK(rc == PL_IOERR || rc == PL_READONLY);
    CHECK_EQ(count_present(db, 0, 100), 100);
    pl_buf_free(&b);
    pl_db_close(db);
    CHECK_RC(pl_db_open(path, &o, &db), PL_OK);
    if (db) { /* the record may have reached the log before its fsync failed: all of it, or none */
        long left = count_present(db, 0, 100);
        CHECK(left == 0 || left == 100);
        CHECK_RC(pl_db_close(db), PL_OK);
    }
    tu_rm_rf(path);
}

int main(void)
{
    snprintf(base, sizeof base, "/tmp/pylsm-test-db-%d", (int)getpid());
    tu_rm_rf(base);
    mkdir(base, 0755);
    test_read_large_entries();
    test_new_directory_survives_power_cut();
    test_get_racing_a_flush();
    test_iterator_sort_does_not_block_reads();
    test_manifest_durable_before_current_names_it();
    test_manifest_append_after_a_short_write();
    test_edits_after_a_failed_roll();
    test_read_only_beside_a_writer();
    test_power_cut_after_flush_compact_repair_and_close();
    test_get_many_matches_get();
    test_failed_compaction_wakes_writers();
    test_failed_compaction_is_sticky();
    test_failed_flush_is_sticky();
    test_failed_wal_switch_is_sticky_at_once();
    test_reverse_scans();
    test_delete_range();
    tu_rm_rf(base);
    return test_report();
}
