/* test_wal.c -- the write-ahead log (wal.h): append/sync/close/replay round trips with and without
 * timestamps, a log cut at every byte, zero-filled tails, damaged records under the three recovery
 * modes, LSN continuity (stale and duplicated LSNs), extreme length fields, skip_below, and I/O faults
 * injected through env.h. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "batch.h"
#include "coding.h"
#include "crc.h"
#include "env.h"
#include "ikey.h"
#include "status.h"
#include "testutil.h"
#include "wal.h"

static char dir[64];

/* A path in the test directory; the result stays valid for the next 63 calls. */
static char *path_in(const char *name)
{
    static char p[64][256];
    static int i;
    i = (i + 1) % 64;
    snprintf(p[i], sizeof p[i], "%s/%s", dir, name);
    return p[i];
}

static void write_bytes(const char *path, const char *data, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || (n && write(fd, data, n) != (ssize_t)n)) {
        perror(path);
        exit(2);
    }
    close(fd);
}

static char *read_bytes(const char *path, size_t *n)
{
    char *d = NULL;
    if (env_read_file(path, &d, n) != PL_OK) {
        fprintf(stderr, "read %s: %s\n", path, pl_errmsg());
        exit(2);
    }
    return d;
}

/* ---- records ---- */

typedef struct {
    uint64_t lsn;
    uint32_t count;
    char *payload;
    size_t len;
    uint64_t end; /* file offset just past the record */
} rec;

typedef struct {
    rec *r;
    size_t n;
    uint64_t next_lsn;
    size_t file_size;
    int ts;
} log_t;

/* An encoded batch of `ops` operations with keys and values derived from seed. */
static char *make_payload(unsigned long long *s, uint32_t ops, size_t maxval, size_t *len)
{
    pl_batch *b = pl_batch_new();
    for (uint32_t i = 0; i < ops; i++) {
        char key[24], val[4096];
        size_t kl = (size_t)snprintf(key, sizeof key, "key%llu", tu_rand(s) % 100000);
        size_t vl = maxval ? tu_rand(s) % maxval : 0;
        for (size_t j = 0; j < vl; j++)
            val[j] = (char)tu_rand(s);
        if (tu_rand(s) % 4 == 0)
            pl_batch_delete(b, key, kl);
        else
            pl_batch_put(b, key, kl, val, vl);
    }
    char *p = malloc(b->rep.len);
    memcpy(p, b->rep.data, b->rep.len);
    *len = b->rep.len;
    pl_batch_free(b);
    return p;
}

static void log_free(log_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->r[i].payload);
    free(l->r);
    memset(l, 0, sizeof *l);
}

/* Write a closed WAL at path of n records (LSNs chained from first_lsn by batch counts), appended
 * one at a time or in groups. */
static int sync_it;

/* Whether the WALs under test write their records with pwrite (wal_set_pwrite) or through the mapping:
 * every test runs both ways. */
static int by_pwrite;

static int create(const char *path, int ts, size_t map_bytes, wal **w)
{
    int rc = wal_create(path, ts, map_bytes, w);
    if (rc == PL_OK && by_pwrite)
        wal_set_pwrite(*w);
    return rc;
}

static void build_log(const char *path, int ts, size_t n, unsigned long long seed, uint64_t first_lsn,
                      size_t maxval, log_t *l)
{
    unsigned long long s = seed;
    memset(l, 0, sizeof *l);
    l->ts = ts;
    l->r = calloc(n ? n : 1, sizeof *l->r);
    wal *w = NULL;
    unlink(path);
    CHECK_RC(create(path, ts, 0, &w), PL_OK);
    if (!w)
        exit(2);
    CHECK_EQ(wal_written(w), WAL_FILE_HEADER);
    uint64_t lsn = first_lsn;
    size_t i = 0;
    while (i < n) {
        int group = 1 + (int)(tu_rand(&s) % 3);
        if ((size_t)group > n - i)
            group = (int)(n - i);
        wal_rec wr[3];
        uint64_t before = wal_written(w);
        size_t need = 0;
        for (int g = 0; g < group; g++) {
            rec *r = &l->r[i + (size_t)g];
            r->count = 1 + (uint32_t)(tu_rand(&s) % 3);
            r->payload = make_payload(&s, r->count, maxval, &r->len);
            r->lsn = lsn;
            lsn += r->count;
            wr[g] = (wal_rec){r->lsn, r->count, r->payload, r->len};
            need += wal_record_size(w, r->len);
            r->end = before + need;
        }
        size_t room = wal_room(w);
        CHECK_RC(wal_append(w, wr, group), PL_OK);
        CHECK_EQ(wal_written(w), before + need);
        CHECK_EQ(wal_room(w), room - need);
        i += (size_t)group;
    }
    l->n = n;
    l->next_lsn = lsn;
    /* fdatasync only in the round-trip test: syncs are slow on a busy disk */
    if (sync_it) {
        CHECK_RC(wal_sync(w), PL_OK);
        CHECK_EQ(wal_synced(w), wal_written(w));
    }
    uint64_t written = wal_written(w);
    /* a synced close ends the file with a sync mark declaring it all durable */
    size_t mark = sync_it && n ? wal_record_size(w, WAL_MARK_LEN) : 0;
    CHECK_RC(wal_close(w, sync_it), PL_OK);
    struct stat st;
    CHECK(stat(path, &st) == 0 && (uint64_t)st.st_size == written + mark);
    l->file_size = (size_t)(written + mark);
}

/* ---- replay into a sink ---- */

typedef struct {
    uint64_t lsn;
    char *p;
    size_t n;
} got;

typedef struct {
    got *v;
    size_t n, cap;
} sink;

static int sink_fn(void *ctx, uint64_t lsn, const char *payload, size_t len)
{
    sink *s = ctx;
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 16;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
    }
    got *g = &s->v[s->n++];
    g->lsn = lsn;
    g->n = len;
    g->p = malloc(len ? len : 1);
    memcpy(g->p, payload, len); /* reads every byte: ASan checks the bounds */
    return 0;
}

static void sink_reset(sink *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i].p);
    s->n = 0;
}

static void sink_free(sink *s)
{
    sink_reset(s);
    free(s->v);
    s->v = NULL;
    s->cap = 0;
}

static int replay(const char *path, int mode, int is_last, uint64_t skip, uint64_t first, sink *s,
                  wal_replay_result *res)
{
    sink_reset(s);
    memset(res, 0xEE, sizeof *res); /* fields the replay must set */
    res->next_lsn = first;
    return wal_replay(path, mode, is_last, skip, batch_record_lsns, sink_fn, s, res);
}

/* Did the sink get exactly the records of l whose indexes are listed (-1 ends the list)? */
static int sink_is(const sink *s, const log_t *l, const int *idx)
{
    size_t k = 0;
    for (; idx[k] >= 0; k++) {
        if (k >= s->n)
            return 0;
        const rec *r = &l->r[idx[k]];
        if (s->v[k].lsn != r->lsn || s->v[k].n != r->len || memcmp(s->v[k].p, r->payload, r->len) != 0)
            return 0;
    }
    return k == s->n;
}

/* Records [0, n) of l. */
static int sink_prefix(const sink *s, const log_t *l, size_t n)
{
    if (s->n != n)
        return 0;
    for (size_t k = 0; k < n; k++) {
        const rec *r = &l->r[k];
        if (s->v[k].lsn != r->lsn || s->v[k].n != r->len || memcmp(s->v[k].p, r->payload, r->len) != 0)
            return 0;
    }
    return 1;
}

static size_t hdr_of(int ts) { return WAL_REC_HEADER + (ts ? 8 : 0); }

/* ---- tests ---- */

static void test_roundtrip(int ts)
{
    const char *p = path_in(ts ? "rt_ts.wal" : "rt.wal");
    log_t l;
    sync_it = 1;
    build_log(p, ts, 60, 100 + (unsigned)ts, 1, 300, &l);
    sync_it = 0;
    sink s = {0};
    wal_replay_result res;
    for (int mode = 0; mode < 3; mode++)
        for (int last = 0; last < 2; last++) {
            CHECK_RC(replay(p, mode, last, 0, 0, &s, &res), PL_OK);
            CHECK(sink_prefix(&s, &l, l.n));
            CHECK_EQ(res.records, l.n);
            CHECK_EQ(res.next_lsn, l.next_lsn);
            CHECK_EQ(res.valid_end, l.file_size);
            CHECK_EQ(res.dropped_bytes, 0);
            CHECK_EQ(res.torn_tail, 0);
        }
    /* The expected first LSN given up front. */
    CHECK_RC(replay(p, WAL_ABSOLUTE, 1, 0, 1, &s, &res), PL_OK);
    CHECK_EQ(res.records, l.n);

    /* The file layout: header magic and flags, record fields, CRC over everything but itself. */
    size_t n;
    char *d = read_bytes(p, &n);
    CHECK(memcmp(d, WAL_MAGIC, 8) == 0);
    CHECK_EQ(get_u32(d + 8), WAL_FLAG_MARKS | (ts ? WAL_FLAG_TIMESTAMP : 0));
    CHECK_EQ(get_u32(d + 12), crc_value(d, 12));
    size_t hdr = hdr_of(ts);
    const char *r0 = d + WAL_FILE_HEADER;
    CHECK_EQ(get_u64(r0), l.r[0].lsn);
    CHECK_EQ(get_u32(r0 + 12), l.r[0].len);
    CHECK_EQ(get_u32(r0 + 8), crc_extend(crc_value(r0, 8), r0 + 12, hdr - 12 + l.r[0].len));
    CHECK(memcmp(r0 + hdr, l.r[0].payload, l.r[0].len) == 0);
    CHECK_EQ(l.r[0].end, WAL_FILE_HEADER + hdr + l.r[0].len);
    if (ts) {
        uint64_t t = get_u64(r0 + WAL_REC_HEADER), now = env_wall_us();
        CHECK(t <= now && now - t < 60u * 1000000u); /* a wall-clock time from the last minute */
    }
    free(d);

    /* wal_create refuses an existing file and leaves it alone. */
    wal *w = NULL;
    CHECK_RC(create(p, ts, 0, &w), PL_IOERR);
    CHECK(w == NULL);
    struct stat st;
    CHECK(stat(p, &st) == 0 && (size_t)st.st_size == l.file_size);
    /* A missing file is an I/O error. */
    CHECK_RC(replay(path_in("missing.wal"), WAL_TOLERATE_TAIL, 1, 0, 0, &s, &res), PL_IOERR);

    /* A fresh WAL closed at once: header only, no records. */
    const char *e = path_in("empty.wal");
    unlink(e);
    CHECK_RC(create(e, ts, 0, &w), PL_OK);
    CHECK(strcmp(wal_path(w), e) == 0);
    CHECK_EQ(wal_record_size(w, 100), hdr + 100);
    CHECK(wal_room(w) >= (1u << 20) - WAL_FILE_HEADER - wal_append_overhead(w));
    CHECK_RC(wal_close(w, 1), PL_OK);
    CHECK(stat(e, &st) == 0 && st.st_size == WAL_FILE_HEADER);
    for (int mode = 0; mode < 3; mode++) {
        CHECK_RC(replay(e, mode, 0, 0, 7, &s, &res), PL_OK);
        CHECK_EQ(res.records, 0);
        CHECK_EQ(res.next_lsn, 7);
        CHECK_EQ(res.valid_end, WAL_FILE_HEADER);
    }

    /* A large record. */
    const char *b = path_in("big.wal");
    unlink(b);
    CHECK_RC(create(b, ts, 0, &w), PL_OK);
    pl_batch *bt = pl_batch_new();
    char *big = malloc(300000);
    memset(big, 'x', 300000);
    pl_batch_put(bt, "k", 1, big, 300000);
    wal_rec wr = {42, pl_batch_count(bt), bt->rep.data, bt->rep.len};
    CHECK_RC(wal_append(w, &wr, 1), PL_OK);
    CHECK_RC(wal_close(w, 0), PL_OK);
    CHECK_RC(replay(b, WAL_ABSOLUTE, 1, 0, 0, &s, &res), PL_OK);
    CHECK(s.n == 1 && s.v[0].lsn == 42 && s.v[0].n == bt->rep.len &&
          memcmp(s.v[0].p, bt->rep.data, bt->rep.len) == 0);
    CHECK_EQ(res.next_lsn, 43);
    free(big);
    pl_batch_free(bt);

    /* Two files in sequence: res carries the LSN over; a gap between them is refused. */
    const char *p2 = path_in("second.wal");
    log_t l2;
    build_log(p2, ts, 5, 7, l.next_lsn, 50, &l2);
    CHECK_RC(replay(p, WAL_TOLERATE_TAIL, 0, 0, 0, &s, &res), PL_OK);
    CHECK_RC(wal_replay(p2, WAL_TOLERATE_TAIL, 1, 0, batch_record_lsns, sink_fn, &s, &res), PL_OK);
    CHECK_EQ(s.n, l.n + l2.n);
    CHECK_EQ(res.next_lsn, l2.next_lsn);
    CHECK_RC(replay(p2, WAL_ABSOLUTE, 1, 0, l.next_lsn + 1, &s, &res), PL_CORRUPT);
    CHECK_EQ(s.n, 0);
    log_free(&l2);

    sink_free(&s);
    log_free(&l);
}

/* Replays of the log cut at every byte offset. */
static void test_cut_everywhere(int ts)
{
    const char *p = path_in("cut_src.wal"), *c = path_in("cut.wal");
    log_t l;
    build_log(p, ts, 12, 55 + (unsigned)ts, 1000, 120, &l);
    size_t n;
    char *d = read_bytes(p, &n);
    CHECK_EQ(n, l.file_size);
    sink s = {0};
    wal_replay_result res;
    int bad_tol = 0, bad_abs = 0, bad_notlast = 0, bad_salv = 0;
    for (size_t cut = 0; cut <= n; cut++) {
        write_bytes(c, d, cut);
        /* whole records before the cut */
        size_t whole = 0;
        while (whole < l.n && l.r[whole].end <= cut)
            whole++;
        uint64_t boundary = whole ? l.r[whole - 1].end : (cut >= WAL_FILE_HEADER ? WAL_FILE_HEADER : 0);
        int at_boundary = cut == boundary;
        uint64_t next = whole ? l.r[whole - 1].lsn + l.r[whole - 1].count : 0;

        int rc = replay(c, WAL_TOLERATE_TAIL, 1, 0, 0, &s, &res);
        if (rc != PL_OK || !sink_prefix(&s, &l, whole) || res.records != whole ||
            res.valid_end != boundary || res.torn_tail != !at_boundary || res.next_lsn != next) {
            if (bad_tol++ < 5)
                fprintf(stderr, "tolerate cut %zu: rc %s, %zu records (want %zu), valid_end %llu (want %llu), "
                        "torn %d\n", cut, pl_code_name(rc), s.n, whole, (unsigned long long)res.valid_end,
                        (unsigned long long)boundary, res.torn_tail);
        }
        rc = replay(c, WAL_ABSOLUTE, 1, 0, 0, &s, &res);
        if (at_boundary ? rc != PL_OK || !sink_prefix(&s, &l, whole) : rc != PL_CORRUPT)
            bad_abs++;
        rc = replay(c, WAL_TOLERATE_TAIL, 0, 0, 0, &s, &res);
        if (at_boundary ? rc != PL_OK || !sink_prefix(&s, &l, whole) : rc != PL_CORRUPT)
            bad_notlast++;
        rc = replay(c, WAL_SALVAGE, 1, 0, 0, &s, &res);
        if (rc != PL_OK || !sink_prefix(&s, &l, whole) ||
            (cut >= WAL_FILE_HEADER && res.dropped_bytes != cut - boundary))
            bad_salv++;
    }
    CHECK_EQ(bad_tol, 0);
    CHECK_EQ(bad_abs, 0);
    CHECK_EQ(bad_notlast, 0);
    CHECK_EQ(bad_salv, 0);
    free(d);
    sink_free(&s);
    log_free(&l);
}

/* The zero-filled tail of a WAL that was never closed (a crash image) is its clean end. */
static void test_zero_tail(int ts)
{
    const char *p = path_in("open.wal"), *img = path_in("image.wal");
    unlink(p);
    wal *w = NULL;
    CHECK_RC(create(p, ts, 8u << 20, &w), PL_OK);
    unsigned long long s0 = 9;
    log_t l = {0};
    l.r = calloc(20, sizeof *l.r);
    uint64_t lsn = 1;
    for (int i = 0; i < 20; i++) {
        rec *r = &l.r[i];
        r->count = 1;
        r->payload = make_payload(&s0, 1, 200, &r->len);
        r->lsn = lsn++;
        wal_rec wr = {r->lsn, r->count, r->payload, r->len};
        CHECK_RC(wal_append(w, &wr, 1), PL_OK);
        r->end = wal_written(w);
    }
    l.n = 20;
    /* The file as a kill -9 leaves it: the writes are in the shared mapping, the file is allocated
     * ahead in zeros. */
    size_t n;
    char *d = read_bytes(p, &n);
    CHECK(n > wal_written(w) + 4096);
    write_bytes(img, d, n);
    sink s = {0};
    wal_replay_result res;
    for (int mode = 0; mode < 3; mode++)
        for (int last = 0; last < 2; last++) {
            CHECK_RC(replay(img, mode, last, 0, 0, &s, &res), PL_OK);
            CHECK(sink_prefix(&s, &l, l.n));
            CHECK_EQ(res.valid_end, wal_written(w));
            CHECK_EQ(res.torn_tail, 0);
            CHECK_EQ(res.dropped_bytes, 0);
        }
    /* Zero tails of other lengths (at least a record header long) after a closed log. */
    size_t lens[] = {hdr_of(ts), hdr_of(ts) + 1, 40, 100, 4096};
    uint64_t end = wal_written(w);
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        char *z = calloc(1, end + lens[i]);
        memcpy(z, d, end);
        write_bytes(img, z, end + lens[i]);
        free(z);
        for (int mode = 0; mode < 3; mode++) {
            CHECK_RC(replay(img, mode, 1, 0, 0, &s, &res), PL_OK);
            CHECK(sink_prefix(&s, &l, l.n));
            CHECK_EQ(res.torn_tail, 0);
            CHECK_EQ(res.dropped_bytes, 0);
        }
    }
    /* Zeros, then a stray non-zero byte further on: not a clean tail. */
    char *z = calloc(1, end + 200);
    memcpy(z, d, end);
    z[end + 150] = 1;
    write_bytes(img, z, end + 200);
    free(z);
    CHECK_RC(replay(img, WAL_ABSOLUTE, 1, 0, 0, &s, &res), PL_CORRUPT);
    CHECK_RC(replay(img, WAL_TOLERATE_TAIL, 0, 0, 0, &s, &res), PL_CORRUPT);
    CHECK_RC(replay(img, WAL_TOLERATE_TAIL, 1, 0, 0, &s, &res), PL_OK);
    CHECK(sink_prefix(&s, &l, l.n));
    CHECK_EQ(res.torn_tail, 1);
    free(d);
    CHECK_RC(wal_close(w, 0), PL_OK);
    log_free(&l);

    /* A crash image (kill -9) taken when the last record ended less than a record header before the
     * end of the allocated file.  The file is allocated ahead in fixed steps (wal.c's GROW_CHUNK, a
     * divisor of 4 MiB; and at most to the window), so this happens whenever a write ends within 16
     * (24) bytes before a step boundary -- with ~140-byte records about one boundary in eight -- and
     * lasts until the next write: the file's zero tail is then shorter than a record header. */
    unlink(p);
    CHECK_RC(create(p, ts, 16u << 20, &w), PL_OK);
    const uint64_t boundary = 4u << 20;
    size_t leave = 10; /* bytes between the last record and the boundary, < a record header */
    pl_batch *b = pl_batch_new();
    static char val[4096];
    memset(val, 'v', sizeof val);
    int appended = 0;
    lsn = 1;
    pl_batch_put(b, "key", 3, val, 900);
    size_t rs = wal_record_size(w, b->rep.len);
    while (boundary - leave - wal_written(w) > 2 * rs) {
        wal_rec wr = {lsn++, pl_batch_count(b), b->rep.data, b->rep.len};
        CHECK_RC(wal_append(w, &wr, 1), PL_OK);
        appended++;
    }
    /* One last record sized to end exactly `leave` bytes short (the value's varint stays 2 bytes). */
    size_t want = (size_t)(boundary - leave - wal_written(w));
    pl_batch_clear(b);
    pl_batch_put(b, "key", 3, val, want - rs + 900);
    CHECK_EQ(wal_record_size(w, b->rep.len), want);
    wal_rec wr = {lsn++, pl_batch_count(b), b->rep.data, b->rep.len};
    CHECK_RC(wal_append(w, &wr, 1), PL_OK);
    appended++;
    CHECK_EQ(wal_written(w), boundary - leave);
    d = read_bytes(p, &n);
    CHECK_EQ(n, boundary); /* allocated up to the step boundary */
    write_bytes(img, d, n);
    free(d);
    for (int mode = 0; mode < 3; mode++) {
        int rc = replay(img, mode, 1, 0, 0, &s, &res);
        CHECK_RC(rc, PL_OK);
        CHECK_EQ(res.records, appended);
        CHECK_EQ(res.valid_end, wal_written(w));
        CHECK_EQ(res.torn_tail, 0);
        CHECK_EQ(res.dropped_bytes, 0);
        if (rc || res.torn_tail || res.dropped_bytes)
            fprintf(stderr, "  short zero tail (%zu bytes), mode %d: %s, torn_tail %d, dropped %llu\n",
                    leave, mode, pl_code_name(rc), res.torn_tail, (unsigned long long)res.dropped_bytes);
    }
    pl_batch_free(b);
    CHECK_RC(wal_close(w, 0), PL_OK);
    sink_free(&s);
}

/* Write the records of l (already built) back with a modification applied to the bytes. */
typedef void (*damage_fn)(char *d, const log_t *l, size_t idx);

static size_t rec_start(const log_t *l, size_t i) { return i ? l->r[i - 1].end : WAL_FILE_HEADER; }

static void dmg_payload(char *d, const log_t *l, size_t i) { d[l->r[i].end - 1] ^= 0x20; }
static void dmg_crc(char *d, const log_t *l, size_t i) { d[rec_start(l, i) + 9] ^= 1; }
static void dmg_lsn(char *d, const log_t *l, size_t i) { d[rec_start(l, i)] ^= 4; }
static void dmg_len_max(char *d, const log_t *l, size_t i) { put_u32(d + rec_start(l, i) + 12, 0xFFFFFFFFu); }
static void dmg_len_small(char *d, const log_t *l, size_t i) { put_u32(d + rec_start(l, i) + 12, 3); }
static void dmg_len_zero(char *d, const log_t *l, size_t i) { put_u32(d + rec_start(l, i) + 12, 0); }
static void dmg_zero_hdr(char *d, const log_t *l, size_t i) { memset(d + rec_start(l, i), 0, 16); }
/* With timestamps a timestamp byte, without the second byte of the batch count. */
static void dmg_ts(char *d, const log_t *l, size_t i) { d[rec_start(l, i) + 17] ^= 1; }

/* synced 0: a WAL whose writer never synced (no sync mark): damage anywhere in the newest WAL is the
 * torn tail of a power cut.  synced 1: closed with a sync, so ending in a mark that declares every
 * record durable: damage anywhere is corruption. */
static void test_damage(int ts, int synced)
{
    const char *p = path_in("dmg_src.wal"), *c = path_in("dmg.wal");
    log_t l;
    sync_it = synced;
    build_log(p, ts, 10, 31 + (unsigned)ts, 1, 150, &l);
    sync_it = 0;
    size_t n;
    char *d = read_bytes(p, &n);
    char *m = malloc(n);
    sink s = {0};
    wal_replay_result res;
    struct {
        damage_fn fn;
        const char *name;
    } kinds[] = {{dmg_payload, "payload"}, {dmg_crc, "crc"},       {dmg_lsn, "lsn"},
                 {dmg_len_max, "len=0xFFFFFFFF"}, {dmg_len_small, "len=3"}, {dmg_len_zero, "len=0"},
                 {dmg_zero_hdr, "zeroed header"}, {dmg_ts, "timestamp/count"}};
    int all[11] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, -1};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        for (size_t victim = 0; victim < l.n; victim++) {
            memcpy(m, d, n);
            kinds[k].fn(m, &l, victim);
            write_bytes(c, m, n);
            int keep[11], j = 0;
            for (size_t i = 0; i < l.n; i++)
                if (i != victim)
                    keep[j++] = (int)i;
            keep[j] = -1;
            int last_rec = victim + 1 == l.n;
            size_t before = victim;
            int bad = 0;

            /* tolerate, newest WAL: a torn tail unless a later mark declares the record durable */
            int rc = replay(c, WAL_TOLERATE_TAIL, 1, 0, 0, &s, &res);
            if (!synced) {
                if (rc != PL_OK || !sink_prefix(&s, &l, before) || !res.torn_tail ||
                    res.valid_end != rec_start(&l, victim) || res.next_lsn != (victim ? l.r[victim].lsn : 0))
                    bad |= 1;
            } else if (rc != PL_CORRUPT || !sink_prefix(&s, &l, before)) {
                bad |= 2;
            }
            /* tolerate, an older WAL: corrupt */
            if (replay(c, WAL_TOLERATE_TAIL, 0, 0, 0, &s, &res) != PL_CORRUPT)
                bad |= 4;
            /* absolute: corrupt */
            if (replay(c, WAL_ABSOLUTE, 1, 0, 0, &s, &res) != PL_CORRUPT)
                bad |= 8;
            /* salvage: everything else, the damaged record's bytes dropped */
            rc = replay(c, WAL_SALVAGE, 1, 0, 0, &s, &res);
            if (rc != PL_OK || !sink_is(&s, &l, keep) || res.records != l.n - 1 ||
                res.dropped_bytes != l.r[victim].end - rec_start(&l, victim) ||
                res.next_lsn != (last_rec && !synced ? l.r[victim].lsn : l.next_lsn))
                bad |= 16;
            if (bad)
                fprintf(stderr, "damage %s to record %zu (ts %d): failures 0x%x (%s, %zu records, dropped %llu)\n",
                        kinds[k].name, victim, ts, bad, pl_code_name(rc), s.n,
                        (unsigned long long)res.dropped_bytes);
            CHECK_EQ(bad, 0);
        }
    }
    /* The undamaged file, for reference. */
    CHECK_RC(replay(p, WAL_ABSOLUTE, 0, 0, 0, &s, &res), PL_OK);
    CHECK(sink_is(&s, &l, all));

    /* Damaged file header: corrupt in every mode. */
    int hdr_bad = 0;
    for (int b = 0; b < WAL_FILE_HEADER; b++) {
        memcpy(m, d, n);
        m[b] ^= 0x10;
        write_bytes(c, m, n);
        for (int mode = 0; mode < 3; mode++)
            if (replay(c, mode, 1, 0, 0, &s, &res) != PL_CORRUPT || s.n)
                hdr_bad++;
    }
    CHECK_EQ(hdr_bad, 0);
    /* An unknown flag with a valid header CRC. */
    memcpy(m, d, n);
    put_u32(m + 8, get_u32(m + 8) | 4);
    put_u32(m + 12, crc_value(m, 12));
    write_bytes(c, m, n);
    CHECK_RC(replay(c, WAL_SALVAGE, 1, 0, 0, &s, &res), PL_CORRUPT);
    /* A header of zeros with intact records after it (the header was lost, e.g. to media damage): not a
     * clean empty log.  ABSOLUTE promises that any damage is an error; reading it as "crashed while
     * being created" would drop every record of the file. */
    memcpy(m, d, n);
    memset(m, 0, WAL_FILE_HEADER);
    write_bytes(c, m, n);
    pl_clear_error();
    CHECK_RC(replay(c, WAL_ABSOLUTE, 1, 0, 0, &s, &res), PL_CORRUPT);
    CHECK_EQ(s.n, 0);

    /* Two damaged records: salvage drops both and counts both. */
    memcpy(m, d, n);
    dmg_payload(m, &l, 2);
    dmg_crc(m, &l, 6);
    write_bytes(c, m, n);
    CHECK_RC(replay(c, WAL_SALVAGE, 0, 0, 0, &s, &res), PL_OK);
    int keep2[] = {0, 1, 3, 4, 5, 7, 8, 9, -1};
    CHECK(sink_is(&s, &l, keep2));
    CHECK_EQ(res.dropped_bytes, (l.r[2].end - rec_start(&l, 2)) + (l.r[6].end - rec_start(&l, 6)));
    /* Two adjacent damaged records. */
    memcpy(m, d, n);
    dmg_len_max(m, &l, 4);
    dmg_payload(m, &l, 5);
    write_bytes(c, m, n);
    CHECK_RC(replay(c, WAL_SALVAGE, 0, 0, 0, &s, &res), PL_OK);
    int keep3[] = {0, 1, 2, 3, 6, 7, 8, 9, -1};
    CHECK(sink_is(&s, &l, keep3));
    CHECK_EQ(res.dropped_bytes, l.r[5].end - rec_start(&l, 4));
    /* Garbage after the last record of an older WAL. */
    char *g = malloc(n + 7);
    memcpy(g, d, n);
    memcpy(g + n, "garbage", 7);
    write_bytes(c, g, n + 7);
    CHECK_RC(replay(c, WAL_TOLERATE_TAIL, 0, 0, 0, &s, &res), PL_CORRUPT);
    CHECK_RC(replay(c, WAL_TOLERATE_TAIL, 1, 0, 0, &s, &res), PL_OK);
    CHECK(sink_is(&s, &l, all) && res.torn_tail == 1 && res.valid_end == n);
    free(g);

    free(m);
    free(d);
    sink_free(&s);
    log_free(&l);
}

/* Records whose LSN does not follow on from the previous record's LSN + count. */
static void test_lsn_order(int ts)
{
    const char *p = path_in("lsn.wal");
    /* one-operation batches, so each record takes one LSN */
    pl_batch *b = pl_batch_new();
    pl_batch_put(b, "k", 1, "v", 1);
    pl_batch *b3 = pl_batch_new();
    pl_batch_put(b3, "a", 1, "1", 1);
    pl_batch_put(b3, "b", 1, "2", 1);
    pl_batch_delete(b3, "c", 1);
    sink s = {0};
    wal_replay_result res;
    struct {
        const char *name;
        uint64_t lsns[8];
        int n;
        int three_at; /* index of a 3-operation batch, or -1 */
        int bad_at;   /* index of the first record that does not follow on */
        int at_end;   /* the bad record is the last */
        uint64_t salvaged[8]; /* LSNs salvage applies, 0-terminated */
    } cases[] = {
        {"duplicate", {1, 2, 3, 3, 4, 5}, 6, -1, 3, 0, {1, 2, 3, 4, 5}},
        {"stale", {1, 2, 3, 4, 2, 5}, 6, -1, 4, 0, {1, 2, 3, 4, 5}},
        {"zero", {1, 2, 0, 3}, 4, -1, 2, 0, {1, 2, 3}},
        /* 10 holds 3 operations, so the next record must be 13: 11 and 12 do not follow on */
        {"batch count", {10, 11, 12, 13}, 4, 0, 1, 0, {10, 13}},
        {"duplicate last", {1, 2, 3, 3}, 4, -1, 3, 1, {1, 2, 3}},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        unlink(p);
        wal *w = NULL;
        CHECK_RC(create(p, ts, 0, &w), PL_OK);
        for (int i = 0; i < cases[ci].n; i++) {
            pl_batch *x = i == cases[ci].three_at ? b3 : b;
            wal_rec wr = {cases[ci].lsns[i], pl_batch_count(x), x->rep.data, x->rep.len};
            CHECK_RC(wal_append(w, &wr, 1), PL_OK);
        }
        CHECK_RC(wal_close(w, 0), PL_OK);
        int bad_at = cases[ci].bad_at;
        int bad = 0;
        /* tolerate, newest: never synced (no sync mark), so the log ends at the stray record */
        int rc = replay(p, WAL_TOLERATE_TAIL, 1, 0, 0, &s, &res);
        if (rc != PL_OK || s.n != (size_t)bad_at || !res.torn_tail)
            bad |= 1;
        if (s.n != (size_t)bad_at)
            bad |= 2; /* nothing from the bad record on was applied */
        for (size_t i = 0; i < s.n; i++)
            if (s.v[i].lsn != cases[ci].lsns[i])
                bad |= 4;
        if (replay(p, WAL_ABSOLUTE, 1, 0, 0, &s, &res) != PL_CORRUPT || s.n != (size_t)bad_at)
            bad |= 8;
        if (replay(p, WAL_TOLERATE_TAIL, 0, 0, 0, &s, &res) != PL_CORRUPT)
            bad |= 16;
        /* salvage skips the stray record and carries on */
        rc = replay(p, WAL_SALVAGE, 1, 0, 0, &s, &res);
        size_t ns = 0;
        while (cases[ci].salvaged[ns])
            ns++;
        if (rc != PL_OK || s.n != ns || res.dropped_bytes == 0)
            bad |= 32;
        for (size_t i = 0; i < s.n && i < ns; i++)
            if (s.v[i].lsn != cases[ci].salvaged[i])
                bad |= 64;
        if (bad)
            fprintf(stderr, "lsn case '%s' (ts %d): failures 0x%x\n", cases[ci].name, ts, bad);
        CHECK_EQ(bad, 0);
    }
    pl_batch_free(b);
    pl_batch_free(b3);
    sink_free(&s);
}

static void test_skip_below(int ts)
{
    const char *p = path_in("skip.wal");
    log_t l;
    build_log(p, ts, 20, 77, 1, 60, &l);
    sink s = {0};
    wal_replay_result res;
    /* skip_below at each record's first LSN, and beyond the end */
    int bad = 0;
    for (size_t k = 0; k <= l.n; k++) {
        uint64_t skip = k < l.n ? l.r[k].lsn : l.next_lsn;
        int rc = replay(p, WAL_ABSOLUTE, 1, skip, 0, &s, &res);
        if (rc != PL_OK || s.n != l.n - k || res.next_lsn != l.next_lsn || res.valid_end != l.file_size)
            bad++;
        for (size_t i = 0; i < s.n; i++)
            if (s.v[i].lsn != l.r[k + i].lsn || s.v[i].n != l.r[k + i].len ||
                memcmp(s.v[i].p, l.r[k + i].payload, l.r[k + i].len) != 0)
                bad++;
    }
    CHECK_EQ(bad, 0);
    /* Skipped records are still checked: damage in one is still corruption. */
    size_t n;
    char *d = read_bytes(p, &n);
    dmg_payload(d, &l, 3);
    const char *c = path_in("skip_dmg.wal");
    write_bytes(c, d, n);
    CHECK_RC(replay(c, WAL_ABSOLUTE, 1, l.next_lsn, 0, &s, &res), PL_CORRUPT);
    CHECK_EQ(s.n, 0);
    free(d);
    log_free(&l);
    sink_free(&s);
}

static int stop_fn(void *ctx, uint64_t lsn, const char *payload, size_t len)
{
    int *calls = ctx;
    (void)lsn;
    (void)payload;
    (void)len;
    return ++*calls == 3 ? PL_NOMEM : 0;
}

static void test_apply_error(void)
{
    const char *p = path_in("stop.wal");
    log_t l;
    build_log(p, 0, 6, 3, 1, 10, &l);
    int calls = 0;
    wal_replay_result res = {0};
    CHECK_RC(wal_replay(p, WAL_TOLERATE_TAIL, 1, 0, batch_record_lsns, stop_fn, &calls, &res), PL_NOMEM);
    CHECK_EQ(calls, 3);
    log_free(&l);
}

static void test_faults(void)
{
    const char *p = path_in("fault.wal");
    unlink(p);
    wal *w = NULL;
    CHECK_RC(create(p, 0, 16u << 20, &w), PL_OK);
    pl_batch *b = pl_batch_new();
    pl_batch_put(b, "k", 1, "v", 1);
    uint64_t lsn = 1;
    wal_rec wr = {lsn++, pl_batch_count(b), b->rep.data, b->rep.len};
    CHECK_RC(wal_append(w, &wr, 1), PL_OK);

    /* The next fdatasync fails once. */
    env_fault_set(ENV_OP_SYNC, 1, EIO, 0);
    CHECK_RC(wal_sync(w), PL_IOERR);
    CHECK_EQ(pl_errno(), EIO);
    CHECK(wal_synced(w) < wal_written(w));
    CHECK_RC(wal_sync(w), PL_OK); /* not persistent: the retry goes through */
    CHECK_EQ(wal_synced(w), wal_written(w));
    /* Nothing to sync: no fdatasync at all, so an armed fault is not consumed. */
    env_fault_set(ENV_OP_SYNC, 1, EIO, 0);
    CHECK_RC(wal_sync(w), PL_OK);
    wr.lsn = lsn++;
    CHECK_RC(wal_append(w, &wr, 1), PL_OK);
    CHECK_RC(wal_sync(w), PL_IOERR);
    env_fault_clear();

    /* Persistent from the second sync on. */
    env_fault_set(ENV_OP_SYNC, 2, ENOSPC, 1);
    wr.lsn = lsn++;
    CHECK_RC(wal_append(w, &wr, 1), PL_OK);
    CHECK_RC(wal_sync(w), PL_OK);
    wr.lsn = lsn++;
    CHECK_RC(wal_append(w, &wr, 1), PL_OK);
    CHECK_RC(wal_sync(w), PL_IOERR);
    CHECK_EQ(pl_errno(), ENOSPC);
    CHECK_RC(wal_sync(w), PL_IOERR);
    CHECK_RC(wal_sync(w), PL_IOERR);
    env_fault_clear();
    CHECK_RC(wal_sync(w), PL_OK);

    /* Growing the file fails: the append reports it and writes nothing. */
    pl_batch *big = pl_batch_new();
    char *v = calloc(1, 1u << 20);
    pl_batch_put(big, "big", 3, v, 1u << 20);
    uint64_t before = wal_written(w);
    int grew_failed = 0;
    for (int i = 0; i < 8 && !grew_failed; i++) {
        env_fault_set(ENV_OP_WRITE, 1, ENOSPC, 0);
        wal_rec br = {lsn, pl_batch_count(big), big->rep.data, big->rep.len};
        int rc = wal_append(w, &br, 1);
        env_fault_clear();
        if (rc == PL_IOERR) {
            grew_failed = 1;
            CHECK_EQ(pl_errno(), ENOSPC);
            CHECK_EQ(wal_written(w), before);
        } else {
            CHECK_RC(rc, PL_OK);
            lsn++;
            before = wal_written(w);
        }
    }
    CHECK(grew_failed); /* some 1 MiB append crossed a 4 MiB allocation step */
    wal_rec br = {lsn++, pl_batch_count(big), big->rep.data, big->rep.len};
    CHECK_RC(wal_append(w, &br, 1), PL_OK); /* and the retry succeeds */
    uint64_t written = wal_written(w);
    free(v);
    pl_batch_free(big);

    /* Close with a failing fsync reports it (and frees everything: ASan's leak check). */
    env_fault_set(ENV_OP_SYNC, 1, EIO, 0);
    CHECK_RC(wal_close(w, 1), PL_IOERR);
    env_fault_clear();
    /* The file still replays: every record appended is there. */
    sink s = {0};
    wal_replay_result res;
    CHECK_RC(replay(p, WAL_ABSOLUTE, 1, 0, 0, &s, &res), PL_OK);
    CHECK_EQ(s.n, lsn - 1);
    CHECK_EQ(res.valid_end, written);
    sink_free(&s);

    /* wal_create: a failing open leaves no file; a failing allocation removes the file it made. */
    const char *q = path_in("fault2.wal");
    unlink(q);
    env_fault_set(ENV_OP_OPEN, 1, EACCES, 0);
    w = NULL;
    CHECK_RC(create(q, 0, 0, &w), PL_IOERR);
    env_fault_clear();
    CHECK(access(q, F_OK) != 0);
    env_fault_set(ENV_OP_WRITE, 1, ENOSPC, 0);
    CHECK_RC(create(q, 0, 0, &w), PL_IOERR);
    env_fault_clear();
    CHECK(access(q, F_OK) != 0);
    /* A failing read during replay. */
    env_fault_set(ENV_OP_READ, 1, EIO, 0);
    s = (sink){0};
    CHECK_RC(replay(p, WAL_TOLERATE_TAIL, 1, 0, 0, &s, &res), PL_IOERR);
    env_fault_clear();
    sink_free(&s);
    if (by_pwrite) {
        /* A record's pwrite fails half-way (a short write, then ENOSPC): the append reports it and
         * counts nothing written; the next append writes over the torn bytes, and the file replays
         * exactly the records whose appends succeeded. */
        const char *t = path_in("torn.wal");
        unlink(t);
        CHECK_RC(create(t, 0, 16u << 20, &w), PL_OK);
        uint64_t tl = 1;
        wal_rec tr = {tl++, pl_batch_count(b), b->rep.data, b->rep.len};
        CHECK_RC(wal_append(w, &tr, 1), PL_OK);
        uint64_t at = wal_written(w);
        env_fault_set(ENV_OP_WRITE | ENV_OP_SHORT, 1, ENOSPC, 0);
        tr.lsn = tl;
        CHECK_RC(wal_append(w, &tr, 1), PL_IOERR);
        env_fault_clear();
        CHECK_EQ(wal_written(w), at);
        CHECK_RC(wal_append(w, &tr, 1), PL_OK); /* the same LSN again: the failed one never counted */
        tl++;
        CHECK_RC(wal_close(w, 1), PL_OK);
        s = (sink){0};
        CHECK_RC(replay(t, WAL_ABSOLUTE, 1, 0, 0, &s, &res), PL_OK);
        CHECK_EQ(s.n, tl - 1);
        sink_free(&s);
    }
    pl_batch_free(b);
}

/* Sync marks: groups A (synced), B, C (not synced) in a WAL left open as a crash leaves it.  B begins
 * with a mark declaring A durable.  Damage inside A is corruption; damage in B, C or the mark itself is
 * the torn tail of a power cut and the log ends there, with all of A.  A header garbled with no intact
 * record after it is a WAL torn as it was created; with intact records after it, corruption. */
static void test_sync_marks(int ts)
{
    const char *p = path_in("marks.wal"), *c = path_in("marks_dmg.wal");
    unlink(p);
    wal *w = NULL;
    CHECK_RC(create(p, ts, 0, &w), PL_OK);
    if (!w)
        return;
    unsigned long long seed = 5;
    char *pay[9];
    size_t plen[9];
    uint64_t end[9];
    for (int i = 0; i < 9; i++) {
        pay[i] = make_payload(&seed, 1, 300, &plen[i]);
        wal_rec wr = {(uint64_t)i + 1, 1, pay[i], plen[i]};
        CHECK_RC(wal_append(w, &wr, 1), PL_OK);
        end[i] = wal_written(w);
        if (i == 2)
            CHECK_RC(wal_sync(w), PL_OK); /* A = records 0..2 durable */
    }
    uint64_t mark_at = end[2], durable = end[2];
    uint64_t written = wal_written(w);
    size_t n;
    char *d = read_bytes(p, &n);
    CHECK(n >= written);
    n = (size_t)written; /* the image a crash leaves (the zero tail adds nothing) */
    CHECK_EQ(get_u32(d + mark_at + hdr_of(ts)), 0); /* the mark: count 0 */
    CHECK_EQ(get_u64(d + mark_at + hdr_of(ts) + 4), durable);
    sink s = {0};
    wal_replay_result res;
    write_bytes(c, d, n);
    CHECK_RC(replay(c, WAL_ABSOLUTE, 1, 0, 0, &s, &res), PL_OK);
    CHECK_EQ(res.records, 9);
    CHECK_EQ(res.durable_end, durable);
    char *m = malloc(n);
    int bad = 0;
    for (uint64_t off = WAL_FILE_HEADER; off < n; off += 7) {
        memcpy(m, d, n);
        m[off] ^= 0x5a;
        write_bytes(c, m, n);
        int rc = replay(c, WAL_TOLERATE_TAIL, 1, 0, 0, &s, &res);
        size_t whole = 0;
        while (whole < 9 && end[whole] <= off)
            whole++;
        if (off < durable) {
            bad += rc != PL_CORRUPT;
        } else {
            /* torn: everything before the damaged record (the mark is no record) */
            size_t keep = off < mark_at + wal_record_size(w, WAL_MARK_LEN) ? 3 : whole;
            bad += rc != PL_OK || !res.torn_tail || s.n != keep;
        }
        /* an older WAL: always corrupt */
        bad += replay(c, WAL_TOLERATE_TAIL, 0, 0, 0, &s, &res) != PL_CORRUPT;
    }
    CHECK_EQ(bad, 0);
    /* Pieces of the unsynced part dropped (zeros), in any order: the log ends at the first. */
    memcpy(m, d, n);
    memset(m + end[5], 0, (size_t)(end[6] - end[5]));
    write_bytes(c, m, n);
    CHECK_RC(replay(c, WAL_TOLERATE_TAIL, 1, 0, 0, &s, &res), PL_OK);
    CHECK_EQ(s.n, 6);
    /* A garbled header with nothing intact after it: torn as it was created (opens empty)... */
    memset(m, 0, n);
    memcpy(m, d, WAL_FILE_HEADER);
    m[3] ^= 0x40;
    write_bytes(c, m, n);
    CHECK_RC(replay(c, WAL_TOLERATE_TAIL, 1, 0, 0, &s, &res), PL_OK);
    CHECK(res.torn_tail && s.n == 0 && res.valid_end == 0);
    CHECK_RC(replay(c, WAL_TOLERATE_TAIL, 0, 0, 0, &s, &res), PL_CORRUPT);
    CHECK_RC(replay(c, WAL_ABSOLUTE, 1, 0, 0, &s, &res), PL_CORRUPT);
    /* ... but with the records after it, corruption (the header was durable before any record). */
    memcpy(m, d, n);
    m[3] ^= 0x40;
    write_bytes(c, m, n);
    CHECK_RC(replay(c, WAL_TOLERATE_TAIL, 1, 0, 0, &s, &res), PL_CORRUPT);
    /* A closing sync appends a last mark: the whole closed file is then durable. */
    CHECK_RC(wal_close(w, 1), PL_OK);
    free(d);
    d = read_bytes(p, &n);
    CHECK_EQ(n, written + hdr_of(ts) + WAL_MARK_LEN);
    free(m);
    m = malloc(n);
    memcpy(m, d, n);
    m[end[7] - 1] ^= 1;
    write_bytes(c, m, n);
    CHECK_RC(replay(c, WAL_TOLERATE_TAIL, 1, 0, 0, &s, &res), PL_CORRUPT);
    CHECK_EQ(s.n, 7);
    free(m);
    free(d);
    for (int i = 0; i < 9; i++)
        free(pay[i]);
    sink_free(&s);
}

/* ---- opaque payloads: the WAL reads no batch count ---- */

/* These payloads say how many LSNs their record takes in their first byte ('1'..'4'). */
static uint64_t span_of(const char *payload, size_t len)
{
    (void)len;
    return (uint64_t)(payload[0] - '0');
}

/* Records whose payloads are no batches, each taking the run of LSNs its writer states: replay and
 * the cursor hand them back as they were written, replay checks the LSNs by the runs its caller
 * states (NULL: one per record), and the closing mark carries the LSN after the last run. */
static void test_opaque_payloads(int ts)
{
    const char *p = path_in("opaque.wal");
    unlink(p);
    wal *w = NULL;
    CHECK_RC(create(p, ts, 0, &w), PL_OK);
    if (!w)
        return;
    char pay[12][24];
    size_t plen[12];
    uint64_t lsn[12], next = 100;
    for (int i = 0; i < 12; i++) {
        int span = 1 + (i * 7 + 1) % 4;
        plen[i] = (size_t)snprintf(pay[i], sizeof pay[i], "%d opaque record %d", span, i);
        lsn[i] = next;
        next += (uint64_t)span;
        wal_rec wr = {lsn[i], (uint64_t)span, pay[i], plen[i]};
        CHECK_RC(wal_append(w, &wr, 1), PL_OK);
        if (i % 5 == 4)
            CHECK_RC(wal_sync(w), PL_OK); /* marks between the records */
    }
    CHECK_RC(wal_close(w, 1), PL_OK); /* its last mark carries `next` */
    size_t size;
    free(read_bytes(p, &size));

    sink s = {0};
    wal_replay_result res = {0};
    res.next_lsn = 100;
    CHECK_RC(wal_replay(p, WAL_ABSOLUTE, 1, 0, span_of, sink_fn, &s, &res), PL_OK);
    CHECK_EQ(s.n, 12);
    int same = s.n == 12;
    for (size_t i = 0; same && i < 12; i++)
        same = s.v[i].lsn == lsn[i] && s.v[i].n == plen[i] && memcmp(s.v[i].p, pay[i], plen[i]) == 0;
    CHECK(same);
    CHECK_EQ(res.next_lsn, next);
    CHECK(!res.torn_tail);
    CHECK_EQ(res.valid_end, size); /* the closing mark too: its LSN follows on from the last run */

    /* Read as one LSN per record, the second record does not follow on from the first. */
    sink_reset(&s);
    memset(&res, 0, sizeof res);
    CHECK_RC(wal_replay(p, WAL_ABSOLUTE, 1, 0, NULL, sink_fn, &s, &res), PL_CORRUPT);
    CHECK_EQ(s.n, 1);

    /* The cursor yields the records, payloads as written, and skips the marks. */
    wal_cursor c;
    CHECK_RC(wal_cursor_open(p, &c), PL_OK);
    int k = 0, ok = 1, rc;
    uint64_t l, t;
    int has_ts;
    const char *payload;
    size_t len;
    while ((rc = wal_cursor_next(&c, &l, &t, &has_ts, &payload, &len)) == PL_OK && k < 12) {
        ok &= l == lsn[k] && len == plen[k] && memcmp(payload, pay[k], len) == 0 && has_ts == ts;
        k++;
    }
    CHECK(ok);
    CHECK_EQ(k, 12);
    CHECK_RC(rc, PL_NOTFOUND);
    CHECK(!c.damaged);
    wal_cursor_close(&c);
    sink_free(&s);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/pylsm_test_wal_XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 2;
    }
    for (by_pwrite = 0; by_pwrite < 2; by_pwrite++) {
        for (int ts = 0; ts < 2; ts++) {
            test_roundtrip(ts);
            test_cut_everywhere(ts);
            test_zero_tail(ts);
            test_damage(ts, 0);
            test_damage(ts, 1);
            test_sync_marks(ts);
            test_lsn_order(ts);
            test_skip_below(ts);
            test_opaque_payloads(ts);
        }
        test_apply_error();
        test_faults();
    }
    tu_rm_rf(dir);
    return test_report();
}
