/* test_checkpoint.c -- pl_db_checkpoint (csrc/checkpoint.c): the copy opens to exactly the state at
 * the call (tables, an unflushed memtable, an L0 under compaction), also with a writer going on and
 * flushes switching WALs meanwhile; source and copy are independent afterwards; bad targets and
 * read-only handles are refused; any failing I/O call leaves no directory and the source writable;
 * a crash mid-way leaves nothing at the target; a power cut right after it returns loses nothing of
 * the copy (and does lose it when the copy's fsyncs are skipped -- checked by the power-loss tracker). */
#include <errno.h>
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

static char *sub(const char *name) { return tu_path(base, name); }

static pl_db *open_db(const char *path, size_t memtable)
{
    pl_options o;
    pl_options_init(&o);
    o.memtable_bytes = memtable;
    pl_db *db = NULL;
    if (pl_db_open(path, &o, &db))
        fprintf(stderr, "open %s: %s\n", path, pl_errmsg());
    return db;
}

static size_t key_of(long i, char *k) { return (size_t)snprintf(k, 32, "k%08ld", i); }

static void put_range(pl_db *db, long from, long to, const char *tag)
{
    char k[32], v[64];
    for (long i = from; i < to; i++) {
        int n = snprintf(v, sizeof v, "%s:%ld", tag, i);
        if (pl_db_put(db, k, key_of(i, k), v, (size_t)n, 0)) {
            fprintf(stderr, "put: %s\n", pl_errmsg());
            return;
        }
    }
}

/* How many of keys [from, to) hold the value "tag:i" (tag NULL: are present at all). */
static long count_tag(pl_db *db, long from, long to, const char *tag)
{
    char k[32], v[64];
    long n = 0;
    pl_buf b = {0};
    for (long i = from; i < to; i++) {
        int rc = pl_db_get(db, NULL, k, key_of(i, k), &b, 0);
        if (rc == PL_OK) {
            int vn = tag ? snprintf(v, sizeof v, "%s:%ld", tag, i) : 0;
            n += !tag || (b.len == (size_t)vn && memcmp(b.data, v, b.len) == 0);
        }
    }
    pl_buf_free(&b);
    return n;
}

static void test_state_at_the_call(void)
{
    const char *src = sub("src"), *cp = sub("cp");
    tu_rm_rf(src);
    tu_rm_rf(cp);
    pl_db *db = open_db(src, 256 * 1024);
    if (!db)
        return;
    put_range(db, 0, 20000, "a");          /* several tables (and compactions) */
    CHECK_RC(pl_db_flush(db), PL_OK);
    put_range(db, 10000, 12000, "b");      /* overwrites in the memtable */
    char k[32];
    for (long i = 0; i < 100; i++)
        CHECK_RC(pl_db_delete(db, k, key_of(i, k), 0), PL_OK);
    uint64_t lsn = 0;
    CHECK_RC(pl_db_checkpoint(db, cp, &lsn), PL_OK);
    CHECK(!tu_exists(sub("cp.tmp")));
    put_range(db, 20000, 21000, "after");  /* not in the copy */
    put_range(db, 0, 10, "after");

    CHECK_RC(pl_db_checkpoint(db, cp, NULL), PL_EXISTS);
    CHECK_RC(pl_db_checkpoint(db, src, NULL), PL_EXISTS);

    pl_db *c = open_db(cp, 256 * 1024);
    CHECK(c != NULL);
    if (c) {
        CHECK_EQ(count_tag(c, 0, 100, NULL), 0);
        CHECK_EQ(count_tag(c, 100, 10000, "a"), 9900);
        CHECK_EQ(count_tag(c, 10000, 12000, "b"), 2000);
        CHECK_EQ(count_tag(c, 12000, 20000, "a"), 8000);
        CHECK_EQ(count_tag(c, 20000, 21000, NULL), 0);
        /* Independent: writes to either are not seen by the other. */
        put_range(c, 30000, 30100, "copy");
        CHECK_EQ(count_tag(db, 30000, 30100, NULL), 0);
        CHECK_RC(pl_db_compact(c, NULL, 0, 0, NULL, 0, 0), PL_OK);
        CHECK_RC(pl_db_close(c), PL_OK);
    }
    CHECK_RC(pl_db_compact(db, NULL, 0, 0, NULL, 0, 0), PL_OK); /* deletes the source's old tables */
    c = open_db(cp, 256 * 1024);
    if (c) {
        CHECK_EQ(count_tag(c, 100, 10000, "a"), 9900);
        CHECK_EQ(count_tag(c, 30000, 30100, "copy"), 100);
        CHECK_RC(pl_db_close(c), PL_OK);
    }
    CHECK_EQ(count_tag(db, 0, 10, "after"), 10);
    CHECK_EQ(count_tag(db, 20000, 21000, "after"), 1000);
    CHECK_RC(pl_verify(cp), PL_OK);

    /* A read-only handle refuses. */
    pl_options o;
    pl_options_init(&o);
    o.read_only = 1;
    pl_db *ro = NULL;
    CHECK_RC(pl_db_open(src, &o, &ro), PL_OK);
    if (ro) {
        CHECK_RC(pl_db_checkpoint(ro, sub("ro"), NULL), PL_RDONLY_OPEN);
        CHECK(!tu_exists(sub("ro")) && !tu_exists(sub("ro.tmp")));
        pl_db_close(ro);
    }
    CHECK_RC(pl_db_close(db), PL_OK);
    tu_rm_rf(src);
    tu_rm_rf(cp);
}

/* ---- a writer going on ---- */

typedef struct {
    pl_db *db;
    atomic_long acked; /* puts 0 .. acked-1 have returned */
    atomic_int stop;
} writer_arg;

static void *writer_main(void *p)
{
    writer_arg *w = p;
    char k[32], v[200];
    memset(v, 'v', sizeof v);
    for (long i = 0; !atomic_load(&w->stop); i++) {
        if (pl_db_put(w->db, k, key_of(i, k), v, sizeof v, 0))
            break;
        atomic_store(&w->acked, i + 1);
    }
    return NULL;
}

/* Checkpoints while one thread writes keys 0, 1, 2, ... (64 KiB memtables: flushes and WAL switches
 * all along): each copy holds a prefix 0..m-1 of them with no hole, m at least what was acknowledged
 * before the call and at most what was acknowledged after it returned. */
static void test_beside_a_writer(void)
{
    const char *src = sub("busy");
    tu_rm_rf(src);
    pl_db *db = open_db(src, 64 * 1024);
    if (!db)
        return;
    writer_arg w = {db, 0, 0};
    pthread_t t;
    pthread_create(&t, NULL, writer_main, &w);
    long lo[8], hi[8];
    for (int r = 0; r < 8; r++) {
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
        char name[32];
        snprintf(name, sizeof name, "busy-cp%d", r);
        lo[r] = atomic_load(&w.acked);
        CHECK_RC(pl_db_checkpoint(db, sub(name), NULL), PL_OK);
        hi[r] = atomic_load(&w.acked);
    }
    atomic_store(&w.stop, 1);
    pthread_join(t, NULL);
    CHECK(atomic_load(&w.acked) > 1000);
    for (int r = 0; r < 8; r++) {
        char name[32];
        snprintf(name, sizeof name, "busy-cp%d", r);
        pl_db *c = open_db(sub(name), 64 * 1024);
        CHECK(c != NULL);
        if (!c)
            continue;
        long m = count_tag(c, 0, hi[r] + 10, NULL);
        CHECK(m >= lo[r] && m <= hi[r]);
        CHECK_EQ(count_tag(c, 0, m, NULL), m); /* a prefix: 0 .. m-1 all there */
        CHECK_RC(pl_db_close(c), PL_OK);
        tu_rm_rf(sub(name));
    }
    CHECK_RC(pl_db_close(db), PL_OK);
    tu_rm_rf(src);
}

/* ---- failures, crashes, power cuts ---- */

/* No compaction runs beside the checkpoint (it could take an injected fault meant for the checkpoint);
 * the memtable is large enough that no flush does either. */
static pl_db *make_source(const char *path)
{
    tu_rm_rf(path);
    pl_options o;
    pl_options_init(&o);
    o.memtable_bytes = 4u << 20;
    o.background_compaction = 0;
    pl_db *db = NULL;
    CHECK_RC(pl_db_open(path, &o, &db), PL_OK);
    if (!db)
        return NULL;
    put_range(db, 0, 3000, "t");
    CHECK_RC(pl_db_flush(db), PL_OK);
    put_range(db, 3000, 3500, "m");
    return db;
}

static int copy_complete(const char *cp)
{
    pl_db *c = open_db(cp, 256 * 1024);
    if (!c)
        return 0;
    int ok = count_tag(c, 0, 3000, "t") == 3000 && count_tag(c, 3000, 3500, "m") == 500;
    pl_db_close(c);
    return ok;
}

/* The nth I/O call of a checkpoint fails, once or for good: the call fails, nothing is left at the
 * target or its staging directory (a fault that stays also fails the clean-up: the next checkpoint
 * clears what is left), and the source goes on taking writes; with the faults off a retry succeeds. */
static void test_any_failing_io_call(void)
{
    const char *src = sub("faults"), *cp = sub("faults-cp");
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp", cp);
    for (int persistent = 0; persistent < 2; persistent++) {
        pl_db *db = make_source(src);
        if (!db)
            return;
        int failures = 0, ok = 0;
        for (long nth = 1; nth < 200 && !ok; nth++) {
            tu_rm_rf(cp);
            env_fault_set(ENV_OP_ALL, nth, nth % 2 ? EIO : ENOSPC, persistent);
            int rc = pl_db_checkpoint(db, cp, NULL);
            env_fault_clear();
            if (rc) {
                failures++;
                if (!persistent) { /* (a fault that stays makes the clean-up fail too) */
                    CHECK(!tu_exists(cp));
                    CHECK(!tu_exists(tmp));
                }
                CHECK_RC(pl_db_put(db, "x", 1, "y", 1, 0), PL_OK);
            } else {
                ok = 1;
                CHECK(copy_complete(cp));
            }
        }
        CHECK(ok);
        CHECK(failures > 5);
        CHECK_RC(pl_db_close(db), PL_OK);
    }
    tu_rm_rf(src);
    tu_rm_rf(cp);
}

static void die_at(void *ctx, const char *name)
{
    if (!strcmp(name, (const char *)ctx))
        _exit(9);
}

/* A crash mid-checkpoint (after the state is pinned; before the rename) leaves nothing at the target,
 * and the next checkpoint to the same path clears the staging directory and succeeds; a power cut
 * right after a checkpoint returned keeps the whole copy. */
static void test_crash_and_power_cut(void)
{
    const char *src = sub("crash"), *cp = sub("crash-cp");
    for (int step = 0; step < 2; step++) {
        pl_db *db = make_source(src);
        if (!db)
            return;
        CHECK_RC(pl_db_close(db), PL_OK);
        tu_rm_rf(cp);
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            if (step == 1)
                env_track_sync(1);
            db = open_db(src, 256 * 1024);
            if (!db)
                _exit(2);
            put_range(db, 3000, 3500, "m"); /* the same again: only in the WAL */
            if (step == 0)
                env_set_test_hook(die_at, "checkpoint_rename");
            if (pl_db_checkpoint(db, cp, NULL))
                _exit(3);
            if (step == 1)
                _exit(env_drop_unsynced() ? 5 : 0); /* the cut: nothing more synced */
            _exit(4); /* step 0 dies at the kill point */
        }
        int status = 0;
        waitpid(pid, &status, 0);
        if (step == 0) {
            CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 9);
            CHECK(!tu_exists(cp));
            db = open_db(src, 256 * 1024);
            if (db) {
                CHECK_RC(pl_db_checkpoint(db, cp, NULL), PL_OK);
                CHECK_RC(pl_db_close(db), PL_OK);
            }
        } else {
            CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        }
        CHECK(copy_complete(cp));
    }
    tu_rm_rf(src);
    tu_rm_rf(cp);
}

int main(void)
{
    snprintf(base, sizeof base, "/tmp/pylsm-test-checkpoint-%d", (int)getpid());
    tu_rm_rf(base);
    mkdir(base, 0755);
    test_state_at_the_call();
    test_beside_a_writer();
    test_any_failing_io_call();
    test_crash_and_power_cut();
    tu_rm_rf(base);
    return test_report();
}
