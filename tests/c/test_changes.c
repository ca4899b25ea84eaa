/* test_changes.c -- the changes feed (csrc/changes.c) and the WAL cursor under it: every batch once
 * and in order across WAL switches, flushes (archived WALs) and a reopen; starts anywhere; a WAL
 * trimmed away or an ingest is a gap error, never a silent hole; damage inside an older WAL is
 * corruption, a half-written tail of the newest is its end; retention by bytes and by age; any failing
 * I/O call is reported (and leaks nothing under ASan). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <utime.h>
#include <dirent.h>

#include "changes.h"
#include "env.h"
#include "pylsm.h"
#include "testutil.h"

static char base[64];

static char *sub(const char *name) { return tu_path(base, name); }

static pl_db *open_db(const char *path, uint64_t keep_bytes, uint64_t keep_seconds)
{
    pl_options o;
    pl_options_init(&o);
    o.memtable_bytes = 16 * 1024;
    o.wal_retention_bytes = keep_bytes;
    o.wal_retention_seconds = keep_seconds;
    o.wal_timestamp = 1;
    pl_db *db = NULL;
    if (pl_db_open(path, &o, &db))
        fprintf(stderr, "open %s: %s\n", path, pl_errmsg());
    return db;
}

/* Batch i: put k<i> = v<i>, and for i % 3 == 0 a delete of k<i-1> too. */
static void write_batches(pl_db *db, int from, int to)
{
    char k[32], v[100];
    memset(v, 'v', sizeof v);
    for (int i = from; i < to; i++) {
        pl_batch *b = pl_batch_new();
        pl_batch_put(b, k, (size_t)snprintf(k, sizeof k, "k%06d", i), v, sizeof v);
        if (i % 3 == 0)
            pl_batch_delete(b, k, (size_t)snprintf(k, sizeof k, "k%06d", i - 1));
        if (pl_db_write(db, b, 0))
            fprintf(stderr, "write: %s\n", pl_errmsg());
        pl_batch_free(b);
    }
}

typedef struct {
    int ops, puts;
    char first[32];
} count_ctx;

static int count_op(void *ctx, int is_put, const char *key, size_t klen, const char *val, size_t vlen)
{
    count_ctx *c = ctx;
    if (!c->ops)
        snprintf(c->first, sizeof c->first, "%.*s", (int)klen, key);
    c->ops++;
    c->puts += is_put;
    return PL_OK;
}

/* Read the whole feed after since; returns the number of batches (-1 on error, rc in *err), checking
 * that batch j is batch (first + j) of write_batches. */
static long read_feed(pl_db *db, uint64_t since, int first, int *err)
{
    pl_changes *c = NULL;
    *err = pl_changes_new(db, since, &c);
    if (*err)
        return -1;
    long n = 0;
    uint64_t lsn, ts, prev_end = 0;
    uint32_t count;
    int has_ts, rc;
    const char *p;
    size_t len;
    while ((rc = pl_changes_next(c, &lsn, &count, &ts, &has_ts, &p, &len)) == PL_OK) {
        count_ctx cc = {0};
        CHECK_RC(pl_batch_decode(p, len, count_op, &cc), PL_OK);
        int i = first + (int)n;
        char want[32];
        snprintf(want, sizeof want, "k%06d", i);
        if (strcmp(cc.first, want) != 0 || cc.ops != (i % 3 == 0 ? 2 : 1) || cc.puts != 1 || !has_ts ||
            (prev_end && lsn != prev_end)) {
            CHECK(!"a batch out of order or wrong");
            break;
        }
        prev_end = lsn + count;
        n++;
    }
    pl_changes_free(c);
    *err = rc == PL_NOTFOUND ? PL_OK : rc;
    return *err ? -1 : n;
}

static uint64_t lsn_of(pl_db *db)
{
    pl_snapshot *s = NULL;
    pl_snapshot_new(db, &s);
    uint64_t l = s ? pl_snapshot_lsn(s) : 0;
    pl_snapshot_release(s);
    return l;
}

static int count_archive(const char *path, uint64_t *bytes)
{
    char arch[300];
    snprintf(arch, sizeof arch, "%s/archive", path);
    DIR *d = opendir(arch);
    int n = 0;
    *bytes = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (!strstr(e->d_name, ".wal"))
            continue;
        char p[600];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", arch, e->d_name);
        if (stat(p, &st) == 0)
            *bytes += (uint64_t)st.st_size;
        n++;
    }
    if (d)
        closedir(d);
    return n;
}

static void test_feed_across_switches_flushes_and_reopen(void)
{
    const char *path = sub("feed");
    tu_rm_rf(path);
    pl_db *db = open_db(path, 1u << 30, 0);
    if (!db)
        return;
    write_batches(db, 1, 1500); /* LSNs: batch i takes 1 or 2 */
    CHECK_RC(pl_db_flush(db), PL_OK);
    CHECK_RC(pl_db_close(db), PL_OK);
    db = open_db(path, 1u << 30, 0);
    if (!db)
        return;
    write_batches(db, 1500, 2000);
    uint64_t bytes;
    CHECK(count_archive(path, &bytes) >= 3);
    int err;
    CHECK_EQ(read_feed(db, 0, 1, &err), 1999);
    CHECK_RC(err, PL_OK);
    /* Start after batch 1000 (batches 1..1000 took 1000 + 333 LSNs). */
    CHECK_EQ(read_feed(db, 1000 + 333, 1001, &err), 999);
    CHECK_EQ(read_feed(db, lsn_of(db), 0, &err), 0);
    CHECK_RC(err, PL_OK);

    /* A trimmed-away WAL in the middle: a gap error, not a hole. */
    char arch[300];
    snprintf(arch, sizeof arch, "%s/archive", path);
    DIR *d = opendir(arch);
    struct dirent *e;
    char victim[600] = "";
    uint64_t lowest = UINT64_MAX;
    while (d && (e = readdir(d))) {
        unsigned long long num;
        if (sscanf(e->d_name, "%llu.wal", &num) == 1 && num < lowest) {
            lowest = num;
            snprintf(victim, sizeof victim, "%s/%s", arch, e->d_name);
        }
    }
    if (d)
        closedir(d);
    CHECK(victim[0] != 0);
    unlink(victim);
    CHECK_EQ(read_feed(db, 0, 1, &err), -1);
    CHECK_RC(err, PL_MISUSE);
    CHECK(strstr(pl_errmsg(), "in no kept WAL") != NULL);
    CHECK_RC(pl_db_close(db), PL_OK);
    tu_rm_rf(path);
}

static void test_damage_and_torn_tails(void)
{
    const char *path = sub("damage");
    tu_rm_rf(path);
    pl_db *db = open_db(path, 1u << 30, 0);
    if (!db)
        return;
    write_batches(db, 1, 600);
    CHECK_RC(pl_db_flush(db), PL_OK);
    CHECK_RC(pl_db_close(db), PL_OK);
    /* Files: archived WALs, then the live one (which the reopen below makes). */
    char arch[300], p[600];
    snprintf(arch, sizeof arch, "%s/archive", path);
    DIR *d = opendir(arch);
    struct dirent *e;
    uint64_t lowest = UINT64_MAX;
    while (d && (e = readdir(d))) {
        unsigned long long num;
        if (sscanf(e->d_name, "%llu.wal", &num) == 1 && num < lowest)
            lowest = num;
    }
    if (d)
        closedir(d);
    snprintf(p, sizeof p, "%s/%06llu.wal", arch, (unsigned long long)lowest);
    /* A flipped byte in the middle of the oldest archived WAL. */
    FILE *f = fopen(p, "r+b");
    CHECK(f != NULL);
    if (f) {
        fseek(f, 200, SEEK_SET);
        int ch = fgetc(f);
        fseek(f, 200, SEEK_SET);
        fputc(ch ^ 0x40, f);
        fclose(f);
    }
    pl_changes *c = NULL;
    const char *files[1] = {p};
    CHECK_RC(pl_changes_open_files(files, 1, 0, &c), PL_OK);
    uint64_t lsn, ts;
    uint32_t count;
    int has_ts, rc;
    const char *pay;
    size_t len;
    long n = 0;
    while ((rc = pl_changes_next(c, &lsn, &count, &ts, &has_ts, &pay, &len)) == PL_OK)
        n++;
    CHECK_RC(rc, PL_NOTFOUND); /* alone, it is the newest file: its damage reads as its end */
    CHECK(n < 10);
    pl_changes_free(c);
    db = open_db(path, 1u << 30, 0);
    if (db) {
        int err;
        CHECK_EQ(read_feed(db, 0, 1, &err), -1); /* followed by newer WALs: corruption */
        CHECK_RC(err, PL_CORRUPT);
        CHECK_RC(pl_db_close(db), PL_OK);
    }
    tu_rm_rf(path);
}

static void test_retention_limits(void)
{
    const char *path = sub("keep");
    tu_rm_rf(path);
    pl_db *db = open_db(path, 64 * 1024, 0);
    if (!db)
        return;
    write_batches(db, 1, 6000);
    CHECK_RC(pl_db_close(db), PL_OK);
    uint64_t bytes;
    int n = count_archive(path, &bytes);
    CHECK(n >= 2 && bytes <= 64 * 1024);

    /* By age: files an hour old go at the next trim; newer ones stay. */
    char arch[300];
    snprintf(arch, sizeof arch, "%s/archive", path);
    DIR *d = opendir(arch);
    struct dirent *e;
    struct utimbuf old = {time(NULL) - 3600, time(NULL) - 3600};
    while (d && (e = readdir(d))) {
        char p[600];
        snprintf(p, sizeof p, "%s/%s", arch, e->d_name);
        if (strstr(e->d_name, ".wal"))
            utime(p, &old);
    }
    if (d)
        closedir(d);
    CHECK_RC(changes_trim(path, 0, 60), PL_OK);
    CHECK_EQ(count_archive(path, &bytes), 0);
    db = open_db(path, 0, 60);
    if (db) {
        write_batches(db, 1, 3000);
        CHECK_RC(pl_db_close(db), PL_OK);
    }
    CHECK(count_archive(path, &bytes) >= 2); /* fresh ones are kept */
    CHECK_RC(pl_destroy(path), PL_OK);
    struct stat st;
    CHECK(stat(path, &st) != 0);
}

/* The nth I/O call of a feed read fails: an error comes back (never a wrong batch), and with the
 * faults off the feed reads whole (from a read-only handle: a follower's). */
static void test_any_failing_io_call(void)
{
    const char *path = sub("faults");
    tu_rm_rf(path);
    pl_db *db = open_db(path, 1u << 30, 0);
    if (!db)
        return;
    write_batches(db, 1, 800);
    CHECK_RC(pl_db_close(db), PL_OK);
    /* A read-only handle: no background thread to take the injected faults. */
    pl_options o;
    pl_options_init(&o);
    o.read_only = 1;
    db = NULL;
    CHECK_RC(pl_db_open(path, &o, &db), PL_OK);
    if (!db)
        return;
    int failures = 0, ok = 0;
    for (long nth = 1; nth < 2000 && !ok; nth += 7) {
        int err;
        env_fault_set(ENV_OP_ALL, nth, EIO, 0);
        long n = read_feed(db, 0, 1, &err);
        env_fault_clear();
        if (n < 0) {
            failures++;
            CHECK(err == PL_IOERR);
        } else {
            ok = n == 799;
            CHECK_EQ(n, 799);
        }
    }
    CHECK(ok);
    CHECK(failures > 10);
    CHECK_RC(pl_db_close(db), PL_OK);
    tu_rm_rf(path);
}

int main(void)
{
    snprintf(base, sizeof base, "/tmp/pylsm-test-changes-%d", (int)getpid());
    tu_rm_rf(base);
    mkdir(base, 0755);
    test_feed_across_switches_flushes_and_reopen();
    test_damage_and_torn_tails();
    test_retention_limits();
    test_any_failing_io_call();
    tu_rm_rf(base);
    return test_report();
}
