/* test_sstable.c -- SSTable writer and reader: a 100,000-key round trip with versions and deletes,
 * gets at snapshots, iteration both ways, seeks, the bloom filter's effect, PL_READ_NO_IO, damaged
 * files (every byte of a small table flipped: PL_CORRUPT, never a wrong value), I/O faults, and
 * concurrent readers. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block.h"
#include "bloom.h"
#include "cache.h"
#include "coding.h"
#include "crc.h"
#include "env.h"
#include "ikey.h"
#include "pindex.h"
#include "compress.h"
#include "sstable.h"
#include "testutil.h"

static char dir[256];

static void path_of(char *buf, const char *name) { snprintf(buf, 512, "%s/%s", dir, name); }

static uint64_t file_size_of(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : UINT64_MAX;
}

/* The suite runs three times: tables with bloom filters, with point indexes (pindex.h), and with
 * zstd-compressed data blocks (compress.h; such tables carry a bloom filter, not a point index). */
static int pidx_mode, compress_mode;
/* lean_mode: every table in the suite opens with table_open_lean (no fences: the point index reads the
 * index block in place for a block's handle) */
static int lean_mode;
#define table_open(p, s, c, o) (lean_mode ? table_open_lean(p, s, c, o) : (table_open)(p, s, c, o))

static int new_builder(const char *path, size_t block_bytes, int bits, table_builder **tb)
{
    int rc = table_builder_new(path, block_bytes, bits, tb);
    if (!rc) {
        table_builder_set_point_index(*tb, pidx_mode);
        table_builder_set_compression(*tb, compress_mode);
    }
    return rc;
}

/* ---- the model: NKEYS user keys "key%09u" (even numbers; odd ones are absent), 1..4 versions each ---- */

#define NKEYS 100000

typedef struct {
    uint32_t n;   /* user key number */
    uint8_t kind;
    uint64_t lsn;
} mentry;

static mentry *model;
static size_t nmodel;
static uint32_t *first; /* first[k]: index in model of key number 2k's newest version; first[NKEYS] = nmodel */

static size_t key_str(char *buf, uint32_t n) { return (size_t)sprintf(buf, "key%09u", n); }

static size_t ikey_of(char *buf, uint32_t n, uint64_t lsn, int kind)
{
    size_t ul = key_str(buf, n);
    put_u64(buf + ul, ikey_pack(lsn, kind));
    return ul + 8;
}

/* The value of (n, lsn): usually short, sometimes empty, rarely larger than a block and the write
 * buffer. */
static size_t value_len(uint32_t n, uint64_t lsn)
{
    uint64_t h = (n * 0x9e3779b97f4a7c15ull) ^ (lsn * 0xc2b2ae3d27d4eb4full);
    h ^= h >> 29;
    return h % 1999 == 0 ? 70000 + h % 30000 : h % 50 == 0 ? 0 : h % 40;
}

static size_t value_of(uint32_t n, uint64_t lsn, char *buf)
{
    size_t len = value_len(n, lsn);
    for (size_t j = 0; j < len; j++)
        buf[j] = (char)((n * 31 + lsn * 7 + j) & 0xff);
    return len;
}

/* Whether [v, v + vn) is the value of (n, lsn), without a buffer (threads call it). */
static int value_is(uint32_t n, uint64_t lsn, const char *v, size_t vn)
{
    if (vn != value_len(n, lsn))
        return 0;
    for (size_t j = 0; j < vn; j++)
        if (v[j] != (char)((n * 31 + lsn * 7 + j) & 0xff))
            return 0;
    return 1;
}

static void make_model(void)
{
    unsigned long long rs = 2024;
    model = malloc(sizeof *model * NKEYS * 4);
    first = malloc(sizeof *first * (NKEYS + 1));
    nmodel = 0;
    for (uint32_t k = 0; k < NKEYS; k++) {
        first[k] = (uint32_t)nmodel;
        int nv = 1 + (int)(tu_rand(&rs) % 4);
        uint64_t lsns[4];
        for (int v = 0; v < nv; v++) {
        again:
            lsns[v] = 1 + tu_rand(&rs) % 1000000;
            for (int w = 0; w < v; w++)
                if (lsns[w] == lsns[v])
                    goto again;
        }
        for (int a = 0; a < nv; a++) /* newest first */
            for (int b = a + 1; b < nv; b++)
                if (lsns[b] > lsns[a]) {
                    uint64_t t = lsns[a];
                    lsns[a] = lsns[b];
                    lsns[b] = t;
                }
        for (int v = 0; v < nv; v++) {
            mentry *e = &model[nmodel++];
            e->n = 2 * k;
            e->lsn = lsns[v];
            e->kind = tu_rand(&rs) % 5 == 0 ? KIND_DELETE : KIND_PUT;
        }
    }
    first[NKEYS] = (uint32_t)nmodel;
}

/* Expected lookup of key number n at snapshot s: LOOKUP_*, and the entry when found. */
static int expect_get(uint32_t n, uint64_t s, const mentry **hit)
{
    if (n % 2 || n / 2 >= NKEYS)
        return LOOKUP_ABSENT;
    for (uint32_t i = first[n / 2]; i < first[n / 2 + 1]; i++)
        if (model[i].lsn <= s) {
            *hit = &model[i];
            return model[i].kind == KIND_PUT ? LOOKUP_FOUND : LOOKUP_DELETED;
        }
    return LOOKUP_ABSENT;
}

/* Index of the first model entry >= the internal key (n, trailer). */
static size_t model_lower_bound(uint32_t n, uint64_t trailer)
{
    size_t lo = 0, hi = nmodel;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const mentry *e = &model[mid];
        uint64_t t = ikey_pack(e->lsn, e->kind);
        int less = e->n < n || (e->n == n && t > trailer);
        if (less)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static char *vbuf, *kbuf; /* scratch, 128 KiB each */

/* Does the iterator sit on model entry i (or is it invalid when i == nmodel)? */
static int iter_at(iter *it, size_t i)
{
    if (i >= nmodel)
        return !iter_valid(it);
    if (!iter_valid(it))
        return 0;
    const mentry *e = &model[i];
    const char *k, *v;
    size_t kn, vn;
    iter_key(it, &k, &kn);
    iter_value(it, &v, &vn);
    size_t wk = ikey_of(kbuf, e->n, e->lsn, e->kind);
    size_t wv = e->kind == KIND_PUT ? value_of(e->n, e->lsn, vbuf) : 0;
    return kn == wk && memcmp(k, kbuf, kn) == 0 && vn == wv && (vn == 0 || memcmp(v, vbuf, vn) == 0);
}

/* One get checked against the model: 0 if right. */
static int check_get(table *t, uint32_t n, uint64_t s, pl_buf *out, int flags)
{
    char k[32];
    size_t kl = key_str(k, n);
    int result = -1;
    int rc = table_get(t, k, kl, s, out, flags, &result);
    if (rc != PL_OK) {
        fprintf(stderr, "get key%09u @%llu: %s %s\n", n, (unsigned long long)s, pl_code_name(rc),
                pl_errmsg());
        return 1;
    }
    const mentry *hit = NULL;
    int want = expect_get(n, s, &hit);
    if (result != want) {
        fprintf(stderr, "get key%09u @%llu: result %d, expected %d\n", n, (unsigned long long)s,
                result, want);
        return 1;
    }
    if (want == LOOKUP_FOUND) {
        if (!value_is(n, hit->lsn, out->data, out->len)) {
            fprintf(stderr, "get key%09u @%llu: wrong value\n", n, (unsigned long long)s);
            return 1;
        }
    }
    return 0;
}

static int build_model_table(const char *path, size_t block_bytes, int bits, table_meta *meta)
{
    table_builder *tb;
    int rc = new_builder(path, block_bytes, bits, &tb);
    if (rc)
        return rc;
    for (size_t i = 0; i < nmodel && !rc; i++) {
        const mentry *e = &model[i];
        size_t kn = ikey_of(kbuf, e->n, e->lsn, e->kind);
        size_t vn = e->kind == KIND_PUT ? value_of(e->n, e->lsn, vbuf) : 0;
        rc = table_builder_add(tb, kbuf, kn, vbuf, vn);
    }
    if (rc) {
        table_builder_abandon(tb);
        return rc;
    }
    return table_builder_finish(tb, meta);
}

/* ---- the big round trip ---- */

static table *big;
static table_meta big_meta;
static char big_path[512];

static void test_round_trip(cache *c)
{
    path_of(big_path, "000001.sst");
    CHECK_RC(build_model_table(big_path, 4096, 10, &big_meta), PL_OK);
    printf("table: %zu entries, %llu bytes\n", nmodel, (unsigned long long)big_meta.file_size);
    CHECK_EQ(big_meta.entries, nmodel);
    CHECK_EQ(big_meta.file_size, file_size_of(big_path));
    size_t deletes = 0;
    uint64_t maxl = 0, minl = UINT64_MAX;
    for (size_t i = 0; i < nmodel; i++) {
        deletes += model[i].kind == KIND_DELETE;
        if (model[i].lsn > maxl)
            maxl = model[i].lsn;
        if (model[i].lsn < minl)
            minl = model[i].lsn;
    }
    CHECK_EQ(big_meta.deletes, deletes);
    CHECK_EQ(big_meta.max_lsn, maxl);
    CHECK_EQ(big_meta.min_lsn, minl);
    size_t kn = ikey_of(kbuf, model[0].n, model[0].lsn, model[0].kind);
    CHECK(big_meta.smallest_len == kn && memcmp(big_meta.smallest, kbuf, kn) == 0);
    const mentry *l = &model[nmodel - 1];
    kn = ikey_of(kbuf, l->n, l->lsn, l->kind);
    CHECK(big_meta.largest_len == kn && memcmp(big_meta.largest, kbuf, kn) == 0);
    table_meta copy;
    CHECK_RC(table_meta_copy(&copy, &big_meta), PL_OK);
    CHECK(copy.largest != big_meta.largest && copy.largest_len == big_meta.largest_len &&
          memcmp(copy.largest, big_meta.largest, copy.largest_len) == 0);
    table_meta_free(&copy);
    CHECK(copy.largest == NULL);

    CHECK_RC(table_open(big_path, big_meta.file_size, c, &big), PL_OK);
    CHECK_EQ(table_file_size(big), big_meta.file_size);
    CHECK(table_has_filter(big));
    CHECK(strcmp(table_path(big), big_path) == 0);
    CHECK_RC(table_verify(big_path, big_meta.file_size), PL_OK);

    /* gets at snapshots */
    pl_buf out = {0};
    static const uint64_t snaps[] = {0, 1, 1000, 250000, 500000, 999999, 1000000, LSN_MAX, UINT64_MAX};
    for (size_t s = 0; s < sizeof snaps / sizeof *snaps; s++) {
        int bad = 0, step = (snaps[s] == LSN_MAX || snaps[s] == 500000) ? 1 : 7;
        for (uint32_t k = 0; k < NKEYS; k += (uint32_t)step)
            bad += check_get(big, 2 * k, snaps[s], &out, 0);
        CHECK_EQ(bad, 0);
    }
    /* the exact LSN of each version, and one below it */
    int bad = 0;
    for (size_t i = 0; i < nmodel; i += 3) {
        bad += check_get(big, model[i].n, model[i].lsn, &out, 0);
        bad += check_get(big, model[i].n, model[i].lsn - 1, &out, 0);
    }
    CHECK_EQ(bad, 0);

    /* absent keys: between present keys, before and after all of them */
    bad = 0;
    for (uint32_t k = 0; k < 10000; k++)
        bad += check_get(big, 2 * (k * 10) + 1, LSN_MAX, &out, 0);
    bad += check_get(big, 2 * NKEYS + 10, LSN_MAX, &out, 0);
    CHECK_EQ(bad, 0);
    {
        int result = -1;
        CHECK_RC(table_get(big, "", 0, LSN_MAX, &out, 0, &result), PL_OK);
        CHECK_EQ(result, LOOKUP_ABSENT);
        CHECK_RC(table_get(big, "zzz", 3, LSN_MAX, &out, 0, &result), PL_OK);
        CHECK_EQ(result, LOOKUP_ABSENT);
    }
    /* The middle key (a subcompaction's split): a user key inside the table's range with about half
     * of the data blocks before it. */
    {
        CHECK_RC(table_middle_key(big, &out), PL_OK);
        CHECK(out.len > 0 && out.len <= 12 && memcmp(out.data, "key", 3) == 0);
        uint64_t at = table_approx_offset(big, out.data, out.len);
        CHECK(at > big_meta.file_size * 4 / 10 && at < big_meta.file_size * 6 / 10);
    }
    pl_buf_free(&out);
}

/* The bloom filter keeps absent keys away from data blocks: with no cache, PL_READ_NO_IO answers
 * without I/O exactly when the filter rules the key out. */
static void test_filter_effect(void)
{
    table *t;
    CHECK_RC(table_open(big_path, big_meta.file_size, NULL, &t), PL_OK);
    pl_buf out = {0};
    int would_block = 0, wrong = 0;
    char k[32];
    for (uint32_t i = 0; i < 10000; i++) {
        size_t kl = key_str(k, 2 * (i * 7 % NKEYS) + 1);
        int result = -1, rc = table_get(t, k, kl, LSN_MAX, &out, PL_READ_NO_IO, &result);
        if (rc == PL_WOULDBLOCK)
            would_block++;
        else
            wrong += rc != PL_OK || result != LOOKUP_ABSENT;
    }
    printf("absent keys that needed a data block (bloom false positives): %d of 10000 (%.2f%%)\n",
           would_block, would_block / 100.0);
    CHECK(would_block < 200);
    CHECK_EQ(wrong, 0);
    /* a present key needs its block */
    int result;
    size_t kl = key_str(k, 0);
    CHECK_RC(table_get(t, k, kl, LSN_MAX, &out, PL_READ_NO_IO, &result), PL_WOULDBLOCK);
    table_close(t);

    /* with a cache: the first read does I/O, then the block is served without */
    cache *c = cache_new(1 << 20);
    CHECK_RC(table_open(big_path, big_meta.file_size, c, &t), PL_OK);
    CHECK_RC(table_get(t, k, kl, LSN_MAX, &out, PL_READ_NO_IO, &result), PL_WOULDBLOCK);
    CHECK_EQ(check_get(t, 0, LSN_MAX, &out, 0), 0);
    CHECK_EQ(check_get(t, 0, LSN_MAX, &out, PL_READ_NO_IO), 0);
    CHECK_EQ(check_get(t, 2, LSN_MAX, &out, PL_READ_NO_IO), 0); /* same block */
    table_close(t);
    cache_free(c);
    pl_buf_free(&out);
}

static void test_iteration(table *t)
{
    iter *it = table_iter(t);
    CHECK(it != NULL);
    CHECK(!iter_valid(it));
    size_t i = 0, bad = 0;
    for (iter_seek_first(it); iter_valid(it); iter_next(it), i++)
        bad += !iter_at(it, i);
    CHECK_EQ(i, nmodel);
    CHECK_EQ(bad, 0);
    CHECK_RC(iter_status(it), PL_OK);

    i = nmodel;
    bad = 0;
    for (iter_seek_last(it); iter_valid(it); iter_prev(it))
        bad += !iter_at(it, --i);
    CHECK_EQ(i, 0);
    CHECK_EQ(bad, 0);
    CHECK_RC(iter_status(it), PL_OK);

    /* seeks: present and absent user keys at random snapshots, then a few steps each way */
    unsigned long long rs = 99;
    bad = 0;
    for (int n = 0; n < 20000; n++) {
        uint32_t kn = (uint32_t)(tu_rand(&rs) % (2 * NKEYS + 2));
        uint64_t lsn = n % 3 ? tu_rand(&rs) % 1000001 : LSN_MAX;
        int kind = (int)(tu_rand(&rs) % 2);
        size_t len = ikey_of(kbuf, kn, lsn, kind);
        char target[32];
        memcpy(target, kbuf, len);
        iter_seek(it, target, len);
        size_t want = model_lower_bound(kn, ikey_pack(lsn, kind));
        bad += !iter_at(it, want);
        int steps = (int)(tu_rand(&rs) % 6);
        size_t pos = want;
        for (int s = 0; s < steps && pos < nmodel && iter_valid(it); s++) {
            if (tu_rand(&rs) % 2) {
                iter_next(it);
                pos++;
            } else {
                iter_prev(it);
                if (pos == 0) {
                    bad += iter_valid(it);
                    break;
                }
                pos--;
            }
            bad += !iter_at(it, pos);
        }
    }
    CHECK_EQ(bad, 0);
    /* the seek key (ukey, LSN_MAX, KIND_SEEK) lands before all versions of ukey */
    char k[32];
    size_t kl = ikey_of(k, 10, LSN_MAX, KIND_SEEK);
    iter_seek(it, k, kl);
    CHECK(iter_at(it, first[5]));
    kl = ikey_of(k, 11, LSN_MAX, KIND_SEEK); /* absent: the next key's newest version */
    iter_seek(it, k, kl);
    CHECK(iter_at(it, first[6]));
    /* past the end, before the start */
    iter_seek(it, "zzzzzzzzzzzz", 12);
    CHECK(!iter_valid(it));
    CHECK_RC(iter_status(it), PL_OK);
    iter_seek_first(it);
    iter_prev(it);
    CHECK(!iter_valid(it));
    iter_seek_last(it);
    iter_next(it);
    CHECK(!iter_valid(it));
    CHECK_RC(iter_status(it), PL_OK);
    iter_destroy(it);
}

/* ---- concurrency ---- */

typedef struct {
    table *t;
    int id;
    int bad;
} worker_arg;

static void *worker(void *p)
{
    worker_arg *a = p;
    unsigned long long rs = 1000 + (unsigned long long)a->id;
    pl_buf out = {0};
    for (int i = 0; i < 30000; i++) {
        uint32_t n = (uint32_t)(tu_rand(&rs) % (2 * NKEYS));
        uint64_t s = i % 4 ? tu_rand(&rs) % 1000001 : LSN_MAX;
        a->bad += check_get(a->t, n, s, &out, 0);
    }
    /* and an iterator of its own over part of the table */
    iter *it = table_iter(a->t);
    size_t start = (size_t)a->id * 20000, i = start;
    const mentry *e = &model[start];
    char target[32]; /* kbuf is shared: build the target locally */
    size_t len = (size_t)sprintf(target, "key%09u", e->n);
    put_u64(target + len, ikey_pack(e->lsn, e->kind));
    iter_seek(it, target, len + 8);
    for (int s = 0; s < 5000 && iter_valid(it); s++, i++) {
        const char *k;
        size_t kn;
        iter_key(it, &k, &kn);
        char want[32];
        size_t wl = (size_t)sprintf(want, "key%09u", model[i].n);
        put_u64(want + wl, ikey_pack(model[i].lsn, model[i].kind));
        a->bad += kn != wl + 8 || memcmp(k, want, kn) != 0;
        iter_next(it);
    }
    a->bad += i != start + 5000;
    iter_destroy(it);
    pl_buf_free(&out);
    return NULL;
}

static void test_threads(void)
{
    cache *c = cache_new(256 * 1024); /* small: blocks come and go while the threads read */
    table *t;
    CHECK_RC(table_open(big_path, big_meta.file_size, c, &t), PL_OK);
    pthread_t th[4];
    worker_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (worker_arg){t, i, 0};
        pthread_create(&th[i], NULL, worker, &args[i]);
    }
    int bad = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        bad += args[i].bad;
    }
    CHECK_EQ(bad, 0);
    table_close(t);
    cache_free(c);
}

/* ---- small tables: edge cases and damage ---- */

static void copy_file(const char *from, const char *to)
{
    char *d;
    size_t n;
    CHECK_RC(env_read_file(from, &d, &n), PL_OK);
    CHECK_RC(env_write_file(to, d, n), PL_OK);
    free(d);
}

static void flip(const char *path, uint64_t off, unsigned char x)
{
    int fd = open(path, O_RDWR);
    unsigned char b;
    CHECK(pread(fd, &b, 1, (off_t)off) == 1);
    b ^= x;
    CHECK(pwrite(fd, &b, 1, (off_t)off) == 1);
    close(fd);
}

/* Whether any version of key n has a value too big for the small tables. */
static int key_has_big(uint32_t n)
{
    for (uint32_t i = first[n / 2]; i < first[n / 2 + 1]; i++)
        if (model[i].kind == KIND_PUT && value_of(n, model[i].lsn, vbuf) > 100)
            return 1;
    return 0;
}

/* A small table of model entries [0, n) with small blocks (keys with a big value left out). */
static size_t small_n;
static void build_small(const char *path, size_t n, size_t block_bytes, table_meta *meta)
{
    table_builder *tb;
    CHECK_RC(new_builder(path, block_bytes, 10, &tb), PL_OK);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        const mentry *e = &model[i];
        if (key_has_big(e->n))
            continue; /* keep it small */
        size_t kn = ikey_of(kbuf, e->n, e->lsn, e->kind);
        size_t vn = e->kind == KIND_PUT ? value_of(e->n, e->lsn, vbuf) : 0;
        bad += table_builder_add(tb, kbuf, kn, vbuf, vn) != PL_OK;
    }
    CHECK_EQ(bad, 0);
    CHECK_RC(table_builder_finish(tb, meta), PL_OK);
    small_n = n;
}

/* Every get on a damaged table (one at each version's LSN, so every entry is read) is right or
 * PL_CORRUPT; returns how many were PL_CORRUPT, counts wrong answers in *wrong. */
static int gets_on_damaged(table *t, int *wrong)
{
    pl_buf out = {0};
    int corrupt = 0;
    for (size_t i = 0; i < small_n; i++) {
        if (key_has_big(model[i].n))
            continue; /* left out when building */
        const mentry *hit = NULL;
        int want = expect_get(model[i].n, model[i].lsn, &hit);
        char k[32];
        size_t kl = key_str(k, model[i].n);
        int result = -1, rc = table_get(t, k, kl, model[i].lsn, &out, 0, &result);
        if (rc == PL_CORRUPT) {
            corrupt++;
            continue;
        }
        if (rc != PL_OK || result != want) {
            (*wrong)++;
            continue;
        }
        if (want == LOOKUP_FOUND) {
            size_t wl = value_of(hit->n, hit->lsn, vbuf);
            *wrong += out.len != wl || (wl && memcmp(out.data, vbuf, wl) != 0);
        }
    }
    pl_buf_free(&out);
    return corrupt;
}

/* Iterate a damaged table: entries seen must be model entries in order; ends valid-less with status
 * PL_OK or PL_CORRUPT.  Returns the status. */
static int iterate_damaged(table *t, int *wrong)
{
    iter *it = table_iter(t);
    size_t steps = 0;
    const char *prev = NULL;
    char last[32];
    size_t lastn = 0;
    for (iter_seek_first(it); iter_valid(it) && steps < 100000; iter_next(it), steps++) {
        const char *k;
        size_t kn;
        iter_key(it, &k, &kn);
        if (prev && ikey_cmp(last, lastn, k, kn) >= 0)
            (*wrong)++;
        if (kn > sizeof last) {
            (*wrong)++;
            break;
        }
        memcpy(last, k, kn);
        lastn = kn;
        prev = last;
    }
    int st = iter_status(it);
    *wrong += st != PL_OK && st != PL_CORRUPT;
    iter_destroy(it);
    return st;
}

static void read_footer(const char *path, uint64_t size, uint64_t v[4])
{
    int fd = open(path, O_RDONLY);
    char f[48];
    CHECK(pread(fd, f, 48, (off_t)(size - 48)) == 48);
    close(fd);
    for (int i = 0; i < 4; i++)
        v[i] = get_u64(f + 8 * i);
}

/* Damage that every checksum still covers (a writer's bug, or bytes a CRC cannot see): the table in
 * [d, d + n) opens, a get of ukey answers "absent" although the table holds it, so table_verify must
 * say PL_CORRUPT, naming `what`. */
static void check_forged(const char *bad_path, const char *d, size_t n, const char *ukey, size_t ulen,
                         const char *what)
{
    int fd = open(bad_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(write(fd, d, n) == (ssize_t)n);
    close(fd);
    table *tb = NULL;
    CHECK_RC(table_open(bad_path, n, NULL, &tb), PL_OK); /* its checksums hold */
    if (tb) {
        pl_buf out = {0};
        int result;
        CHECK_RC(table_get(tb, ukey, ulen, UINT64_MAX, &out, 0, &result), PL_OK);
        /* what verify must warn of (a point index leads gets past a forged index entry) */
        if (!pidx_mode || strcmp(what, "index entry") != 0)
            CHECK_EQ(result, LOOKUP_ABSENT);
        pl_buf_free(&out);
        table_close(tb);
    }
    CHECK_RC(table_verify(bad_path, n), PL_CORRUPT);
    CHECK(strstr(pl_errmsg(), what) != NULL);
}

static void put_trailer(char *block, size_t n)
{
    block[n] = TABLE_BLOCK_RAW;
    put_u32(block + n + 1, crc_mask(crc_extend(crc_value(block, n), block + n, 1)));
}

/* A filter block whose bits are off: found by tests/fuzz/fuzz_db.c (a verified database whose gets
 * missed keys). */
static void check_forged_filter(const char *path, const char *bad_path)
{
    char *d;
    size_t n;
    CHECK_RC(env_read_file(path, &d, &n), PL_OK);
    const char *foot = d + n - TABLE_FOOTER_SIZE;
    uint64_t filter_off = get_u64(foot), filter_size = get_u64(foot + 8);
    CHECK(filter_size > 2);
    memset(d + filter_off, 0, (size_t)filter_size - 2); /* its probe count and tag kept */
    put_trailer(d + filter_off, (size_t)filter_size);
    char k[32];
    check_forged(bad_path, d, n, k, key_str(k, model[0].n), "filter");
    free(d);
}

/* A point index whose slots are off but whose checksums hold: one key's slot cleared (a get of it says
 * "absent"), and, separately, a slot added that no key owns. */
static void check_forged_pidx(const char *path, const char *bad_path)
{
    char *d;
    size_t n;
    CHECK_RC(env_read_file(path, &d, &n), PL_OK);
    const char *foot = d + n - TABLE_FOOTER_SIZE;
    uint64_t filter_off = get_u64(foot), filter_size = get_u64(foot + 8);
    pindex_layout lay;
    CHECK_RC(pindex_parse_tail(d + filter_off + filter_size - PINDEX_TAIL_BYTES, filter_off, filter_size, path,
                               &lay), PL_OK);
    char *buckets = d + lay.buckets_off, *crcs = d + lay.crcs_off;
    char k[32];
    size_t m0 = 0;
    while (key_has_big(model[m0].n)) /* left out of the small table */
        m0++;
    size_t kl = key_str(k, model[m0].n);
    uint32_t h = bloom_hash(k, kl);
    /* clear model[0]'s slot: the first slot with its fingerprint from its home bucket on */
    uint32_t b = pindex_home(h, lay.nbuckets);
    unsigned i = 0;
    uint64_t slot;
    CHECK_EQ(pindex_scan(buckets + (size_t)b * PINDEX_BUCKET_BYTES, pindex_fingerprint(h), &i, &slot), PINDEX_MATCH);
    char *saved = malloc(n);
    memcpy(saved, d, n);
    char *at = buckets + (size_t)b * PINDEX_BUCKET_BYTES + 8 * (i - 1);
    memmove(at, at + 8, (size_t)(buckets + (size_t)(b + 1) * PINDEX_BUCKET_BYTES - at - 8));
    memset(buckets + (size_t)(b + 1) * PINDEX_BUCKET_BYTES - 8, 0, 8);
    for (uint32_t c = 0; c < lay.nchunks; c++)
        put_u32(crcs + 4 * c, crc_value(buckets + (size_t)c * 4096, pindex_chunk_bytes(&lay, c)));
    char *tail = d + lay.tail_off;
    put_u32(tail + 9, crc_value(crcs, (size_t)(lay.tail_off - lay.crcs_off) + 9));
    put_trailer(d + filter_off, (size_t)filter_size);
    check_forged(bad_path, d, n, k, kl, "point index");
    /* an extra slot in a bucket with room: every key still found, but a slot no key owns */
    memcpy(d, saved, n);
    for (b = 0; b < lay.nbuckets; b++) {
        char *bk = buckets + (size_t)b * PINDEX_BUCKET_BYTES;
        if (get_u64(bk + 8 * (PINDEX_BUCKET_SLOTS - 1)) == 0) {
            unsigned j = 0;
            while (get_u64(bk + 8 * j))
                j++;
            put_u64(bk + 8 * j, slot ^ 0xffff); /* another fingerprint, model[0]'s entry */
            break;
        }
    }
    for (uint32_t c = 0; c < lay.nchunks; c++)
        put_u32(crcs + 4 * c, crc_value(buckets + (size_t)c * 4096, pindex_chunk_bytes(&lay, c)));
    put_u32(tail + 9, crc_value(crcs, (size_t)(lay.tail_off - lay.crcs_off) + 9));
    put_trailer(d + filter_off, (size_t)filter_size);
    int fd = open(bad_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(write(fd, d, n) == (ssize_t)n);
    close(fd);
    CHECK_RC(table_verify(bad_path, n), PL_CORRUPT);
    CHECK(strstr(pl_errmsg(), "slots used") != NULL);
    free(saved);
    free(d);
}

/* Entry j (-1: the last) of block i of the table [d, d + n): its key copied into k (*kl bytes). */
static void block_key(const char *d, size_t n, int i, int j, char *k, size_t *kl)
{
    const char *foot = d + n - TABLE_FOOTER_SIZE;
    block_cursor ic, dc;
    block_cursor_init(&ic, d + get_u64(foot + 16), (size_t)get_u64(foot + 24));
    block_cursor_seek_first(&ic);
    for (int j = 0; j < i; j++)
        block_cursor_next(&ic);
    uint64_t off, size;
    const char *v = block_cursor_value(&ic), *vend = v + block_cursor_vlen(&ic);
    CHECK((v = get_varint64(v, vend, &off)) && get_varint64(v, vend, &size));
    block_cursor_init(&dc, d + off, (size_t)size);
    j < 0 ? block_cursor_seek_last(&dc) : block_cursor_seek_first(&dc);
    while (j-- > 0)
        block_cursor_next(&dc);
    CHECK(block_cursor_valid(&dc));
    *kl = block_cursor_klen(&dc);
    memcpy(k, block_cursor_key(&dc), *kl);
    block_cursor_free(&dc);
    block_cursor_free(&ic);
}

/* The table [d, d + n) with index entry i replaced by key: malloc'd, its size in *nn. */
static char *replace_index_entry(const char *d, size_t n, int i, const char *key, size_t kl, size_t *nn)
{
    const char *foot = d + n - TABLE_FOOTER_SIZE;
    uint64_t index_off = get_u64(foot + 16);
    block_cursor ic;
    block_cursor_init(&ic, d + index_off, (size_t)get_u64(foot + 24));
    block_builder b;
    block_builder_init(&b, TABLE_INDEX_RESTART_INTERVAL);
    int j = 0;
    for (block_cursor_seek_first(&ic); block_cursor_valid(&ic); block_cursor_next(&ic), j++)
        CHECK_RC(block_builder_add(&b, j == i ? key : block_cursor_key(&ic),
                                   j == i ? kl : block_cursor_klen(&ic), block_cursor_value(&ic),
                                   block_cursor_vlen(&ic)), PL_OK);
    block_cursor_free(&ic);
    const char *idx;
    size_t il;
    CHECK_RC(block_builder_finish(&b, &idx, &il), PL_OK);
    *nn = (size_t)index_off + il + TABLE_BLOCK_TRAILER + TABLE_FOOTER_SIZE;
    char *nd = malloc(*nn), *nf = nd + *nn - TABLE_FOOTER_SIZE;
    memcpy(nd, d, (size_t)index_off);
    memcpy(nd + index_off, idx, il);
    put_trailer(nd + index_off, il);
    memcpy(nf, foot, TABLE_FOOTER_SIZE);
    put_u64(nf + 24, il);
    put_u32(nf + 36, crc_value(nf, 36));
    block_builder_free(&b);
    return nd;
}

/* Index entries that keep every key in order but do not separate their block from the next, so that
 * a get searches the block before the one holding its key.  Found by tests/fuzz/fuzz_table.c:
 *  - block 0's entry is a key inside block 1 (past block 1's first key);
 *  - block i's entry is a newer version of block i + 1's first user key, which block i lacks: it sorts
 *    before block i + 1's first key, but a get of that user key at the newest LSN stops at block i. */
static void check_forged_separator(const char *path, const char *bad_path)
{
    char *d, k[64], f[64], l[64];
    size_t n, kl, fl, ll, nn;
    CHECK_RC(env_read_file(path, &d, &n), PL_OK);
    /* block 1's first entry of its second user key (no version of which lies in block 0), and the
     * entry after that as block 0's index entry */
    int j = 0;
    block_key(d, n, 1, 0, f, &fl);
    do
        block_key(d, n, 1, ++j, l, &ll);
    while (ukey_cmp(l, ll - 8, f, fl - 8) == 0);
    block_key(d, n, 1, j + 1, k, &kl);
    char *nd = replace_index_entry(d, n, 0, k, kl, &nn);
    check_forged(bad_path, nd, nn, l, ll - IKEY_TRAILER, "index entry");
    free(nd);
    for (int i = 0; i < 8; i++) { /* a boundary between two user keys */
        block_key(d, n, i, -1, l, &ll);
        block_key(d, n, i + 1, 0, f, &fl);
        if (ukey_cmp(l, ll - 8, f, fl - 8) == 0)
            continue;
        memcpy(k, f, fl);
        kl = fl;
        put_u64(k + kl - 8, ikey_trailer(f, fl) + 256); /* one LSN newer */
        nd = replace_index_entry(d, n, i, k, kl, &nn);
        check_forged(bad_path, nd, nn, f, fl - IKEY_TRAILER, "index entry");
        free(nd);
        break;
    }
    free(d);
}


static void test_damage(void)
{
    char path[512], bad_path[512];
    path_of(path, "small.sst");
    path_of(bad_path, "damaged.sst");
    table_meta meta;
    build_small(path, 3000, 512, &meta);
    uint64_t fo[4]; /* filter off, size, index off, size */
    read_footer(path, meta.file_size, fo);
    printf("small table: %llu bytes, filter at %llu (%llu), index at %llu (%llu)\n",
           (unsigned long long)meta.file_size, (unsigned long long)fo[0], (unsigned long long)fo[1],
           (unsigned long long)fo[2], (unsigned long long)fo[3]);
    CHECK_EQ(fo[0] + fo[1] + 5, fo[2]);
    CHECK_EQ(fo[2] + fo[3] + 5 + 48, meta.file_size);
    {
        /* footer pin: version 2 (data blocks with a hash index) and the magic */
        int fd = open(path, O_RDONLY);
        char f[48];
        CHECK(pread(fd, f, 48, (off_t)(meta.file_size - 48)) == 48);
        close(fd);
        CHECK_EQ(get_u32(f + 32), compress_mode ? 3 : 2);
        CHECK(get_u64(f + 40) == 0x504c534d54424c31ull);
    }
    table *t;
    int wrong = 0;

    /* a data block in the middle */
    /* open_ok: 0 open fails; 1 gets and iteration fail; 2 (a point index's buckets) gets fail, iteration
     * reads none of it; 3 (a point index's block trailer) only verify reads it */
    struct {
        const char *what;
        uint64_t off;
        int open_ok;
    } cases[] = {
        {"data block", fo[0] / 2, 1},
        {"first data block", 3, 1},
        {"data block trailer", fo[0] - 1, 1},
        {"filter", fo[0] + fo[1] / 2, pidx_mode ? 2 : 0},
        {"filter trailer", fo[0] + fo[1], pidx_mode ? 3 : 0},
        {"index", fo[2] + fo[3] / 2, 0},
        {"index trailer", fo[2] + fo[3] + 2, 0},
        {"footer handles", meta.file_size - 48 + 3, 0},
        {"footer version", meta.file_size - 48 + 32, 0},
        {"footer crc", meta.file_size - 48 + 37, 0},
        {"footer magic", meta.file_size - 1, 0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        copy_file(path, bad_path);
        flip(bad_path, cases[c].off, 0x10);
        int rc = table_open(bad_path, meta.file_size, NULL, &t);
        if (cases[c].open_ok >= 2) {
            CHECK_RC(rc, PL_OK);
            if (rc)
                continue;
            int corrupt = gets_on_damaged(t, &wrong);
            if (cases[c].open_ok == 2) {
                CHECK(corrupt > 0);
                CHECK(strstr(pl_errmsg(), bad_path) != NULL);
                CHECK(strstr(pl_errmsg(), "point index at offset") != NULL);
            } else {
                CHECK_EQ(corrupt, 0);
            }
            printf("  %-20s at %6llu: open ok, %d gets PL_CORRUPT%s%s\n", cases[c].what,
                   (unsigned long long)cases[c].off, corrupt, corrupt ? ": " : "", corrupt ? pl_errmsg() : "");
            CHECK_RC(iterate_damaged(t, &wrong), PL_OK);
            table_close(t);
        } else if (cases[c].open_ok) {
            CHECK_RC(rc, PL_OK);
            if (rc)
                continue;
            int corrupt = gets_on_damaged(t, &wrong);
            CHECK(corrupt > 0);
            CHECK(strstr(pl_errmsg(), bad_path) != NULL);
            CHECK(strstr(pl_errmsg(), "offset") != NULL);
            CHECK_RC(iterate_damaged(t, &wrong), PL_CORRUPT);
            /* backward too */
            iter *it = table_iter(t);
            for (iter_seek_last(it); iter_valid(it); iter_prev(it))
                ;
            CHECK_RC(iter_status(it), PL_CORRUPT);
            iter_destroy(it);
            table_close(t);
            printf("  %-20s at %6llu: open ok, %d gets PL_CORRUPT: %s\n", cases[c].what,
                   (unsigned long long)cases[c].off, corrupt, pl_errmsg());
        } else {
            CHECK_RC(rc, PL_CORRUPT);
            CHECK(strstr(pl_errmsg(), bad_path) != NULL);
            CHECK(strstr(pl_errmsg(), "offset") != NULL);
            printf("  %-20s at %6llu: %s\n", cases[c].what, (unsigned long long)cases[c].off,
                   pl_errmsg());
            if (!rc)
                table_close(t);
        }
        CHECK_RC(table_verify(bad_path, meta.file_size), PL_CORRUPT);
        CHECK(strstr(pl_errmsg(), bad_path) != NULL);
    }
    CHECK_EQ(wrong, 0);
    table_meta_free(&meta);

    /* every byte of a tiny table, flipped in turn: verify always says PL_CORRUPT, gets and iteration
     * never give a wrong answer */
    build_small(path, 120, 256, &meta);
    CHECK_RC(table_verify(path, meta.file_size), PL_OK);
    int undetected = 0, opened = 0, get_corrupt = 0, iter_corrupt = 0, opened_data = 0, opened_trailer = 0;
    read_footer(path, meta.file_size, fo);
    wrong = 0;
    char *orig;
    size_t olen;
    CHECK_RC(env_read_file(path, &orig, &olen), PL_OK);
    for (uint64_t off = 0; off < meta.file_size; off++) {
        for (int bit = 0; bit < 8; bit += 3) {
            orig[off] ^= (char)(1 << bit);
            int fd = open(bad_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            CHECK(write(fd, orig, olen) == (ssize_t)olen);
            close(fd);
            orig[off] ^= (char)(1 << bit);
            undetected += table_verify(bad_path, meta.file_size) != PL_CORRUPT;
            if (table_open(bad_path, meta.file_size, NULL, &t) == PL_OK) {
                opened++;
                opened_data += off < fo[0];
                opened_trailer += off >= fo[0] + fo[1] && off < fo[2];
                get_corrupt += gets_on_damaged(t, &wrong) > 0;
                iter_corrupt += iterate_damaged(t, &wrong) == PL_CORRUPT;
                table_close(t);
            }
        }
    }
    printf("bit flips in a %llu-byte table: %d opened (data blocks), %d of them PL_CORRUPT on get, "
           "%d on iteration; %d not found by verify; %d wrong answers\n",
           (unsigned long long)meta.file_size, opened, get_corrupt, iter_corrupt, undetected, wrong);
    CHECK_EQ(undetected, 0);
    CHECK_EQ(wrong, 0);
    if (pidx_mode) {
        /* a scan reads no point index; nothing but verify reads its block's trailer */
        CHECK_EQ(iter_corrupt, opened_data);
        CHECK_EQ(get_corrupt, opened - opened_trailer);
    } else {
        CHECK_EQ(iter_corrupt, opened); /* a full scan reads every data block */
        CHECK(get_corrupt == opened);
    }
    free(orig);
    if (pidx_mode)
        check_forged_pidx(path, bad_path);
    else
        check_forged_filter(path, bad_path);
    check_forged_separator(path, bad_path);
    table_meta_free(&meta);

    /* zero-length, too short, truncated, not a table */
    int fd = open(bad_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    close(fd);
    CHECK_RC(table_open(bad_path, 0, NULL, &t), PL_CORRUPT);
    CHECK(strstr(pl_errmsg(), bad_path) != NULL);
    CHECK_RC(table_verify(bad_path, 0), PL_CORRUPT);
    CHECK_RC(table_open(bad_path, 100, NULL, &t), PL_CORRUPT); /* the file is shorter than said */
    CHECK(strstr(pl_errmsg(), bad_path) != NULL);
    fd = open(bad_path, O_WRONLY | O_TRUNC);
    static const char text[72] = "not a table, just some text that is long enough to hold a footer...";
    CHECK(write(fd, text, 72) == 72);
    close(fd);
    CHECK_RC(table_open(bad_path, 72, NULL, &t), PL_CORRUPT);
    CHECK(strstr(pl_errmsg(), "magic") != NULL);
    CHECK_RC(table_open(bad_path, 47, NULL, &t), PL_CORRUPT);
    build_small(path, 500, 512, &meta);
    copy_file(path, bad_path);
    CHECK_RC(truncate(bad_path, (off_t)(meta.file_size - 10)), 0);
    CHECK_RC(table_open(bad_path, meta.file_size, NULL, &t), PL_CORRUPT);
    CHECK_RC(table_open(bad_path, meta.file_size - 10, NULL, &t), PL_CORRUPT);
    CHECK_RC(table_open(path, meta.file_size - 1, NULL, &t), PL_CORRUPT); /* wrong size recorded */
    CHECK_RC(table_open(dir, 100, NULL, &t), PL_IOERR);                   /* a directory */
    char missing[512];
    path_of(missing, "missing.sst");
    CHECK_RC(table_open(missing, 100, NULL, &t), PL_IOERR);
    table_meta_free(&meta);
    unlink(bad_path);
    unlink(path);
}

static void test_edge_tables(void)
{
    char path[512];
    table_meta meta;
    table *t;
    pl_buf out = {0};
    int result;

    /* empty table */
    path_of(path, "empty.sst");
    table_builder *tb;
    CHECK_RC(new_builder(path, 4096, 10, &tb), PL_OK);
    CHECK_RC(table_builder_finish(tb, &meta), PL_OK);
    CHECK_EQ(meta.entries, 0);
    CHECK(meta.smallest == NULL && meta.largest == NULL);
    CHECK_RC(table_open(path, meta.file_size, NULL, &t), PL_OK);
    CHECK_RC(table_get(t, "a", 1, LSN_MAX, &out, 0, &result), PL_OK);
    CHECK_EQ(result, LOOKUP_ABSENT);
    iter *it = table_iter(t);
    iter_seek_first(it);
    CHECK(!iter_valid(it));
    iter_seek_last(it);
    CHECK(!iter_valid(it));
    iter_seek(it, "a\0\0\0\0\0\0\0\0", 9);
    CHECK(!iter_valid(it));
    CHECK_RC(iter_status(it), PL_OK);
    iter_destroy(it);
    table_close(t);
    CHECK_RC(table_verify(path, meta.file_size), PL_OK);
    table_meta_free(&meta);

    /* no filter; empty user key; one block per entry; shortened separators with long keys */
    path_of(path, "nofilter.sst");
    CHECK_RC(new_builder(path, 1, 0, &tb), PL_OK);
    char k[256], v[16];
    ikey_build(k, "", 0, 7, KIND_PUT);
    CHECK_RC(table_builder_add(tb, k, 8, "empty", 5), PL_OK);
    ikey_build(k, "", 0, 3, KIND_DELETE);
    CHECK_RC(table_builder_add(tb, k, 8, "", 0), PL_OK);
    for (int i = 0; i < 300; i++) {
        memset(k, 'p', 200);
        size_t n = (size_t)sprintf(k, "k-%05d-", i * 3); /* gaps: separators can be short */
        k[n] = 'p';
        put_u64(k + 200, ikey_pack(100 + (uint64_t)i, KIND_PUT));
        sprintf(v, "%05d", i);
        CHECK_RC(table_builder_add(tb, k, 208, v, 5), PL_OK);
    }
    /* out of order and short keys are refused and change nothing */
    CHECK_RC(table_builder_add(tb, k, 208, "x", 1), PL_INVALID);
    ikey_build(k, "a", 1, 1, KIND_PUT);
    CHECK_RC(table_builder_add(tb, k, 9, "x", 1), PL_INVALID);
    CHECK_RC(table_builder_add(tb, k, 7, "x", 1), PL_INVALID);
    CHECK_EQ(table_builder_entries(tb), 302);
    CHECK(table_builder_file_size(tb) > (compress_mode ? 4000 : 300 * 200)); /* (208-byte keys compress) */
    CHECK_RC(table_builder_finish(tb, &meta), PL_OK);
    uint64_t fo[4];
    read_footer(path, meta.file_size, fo);
    printf("302 one-entry blocks with 208-byte keys: index block of %llu bytes\n",
           (unsigned long long)fo[3]);
    CHECK(fo[3] < 302 * 40); /* separators like "k-00004" instead of 208-byte keys */
    int with_pidx = pidx_mode && !compress_mode; /* (compressed tables never get a point index) */
    CHECK_EQ(fo[1] == 0, !with_pidx); /* no filter, or the point index */
    CHECK_RC(table_open(path, meta.file_size, NULL, &t), PL_OK);
    CHECK_EQ(table_has_filter(t), with_pidx);
    CHECK_EQ(table_has_point_index(t), with_pidx);
    CHECK_RC(table_get(t, "", 0, LSN_MAX, &out, 0, &result), PL_OK);
    CHECK(result == LOOKUP_FOUND && out.len == 5 && memcmp(out.data, "empty", 5) == 0);
    CHECK_RC(table_get(t, "", 0, 5, &out, 0, &result), PL_OK);
    CHECK_EQ(result, LOOKUP_DELETED);
    CHECK_RC(table_get(t, "", 0, 2, &out, 0, &result), PL_OK);
    CHECK_EQ(result, LOOKUP_ABSENT);
    int bad = 0;
    for (int i = 0; i < 900; i++) {
        memset(k, 'p', 200);
        size_t n = (size_t)sprintf(k, "k-%05d-", i);
        k[n] = 'p';
        CHECK_RC(table_get(t, k, 200, LSN_MAX, &out, 0, &result), PL_OK);
        if (i % 3) {
            bad += result != LOOKUP_ABSENT;
        } else {
            sprintf(v, "%05d", i / 3);
            bad += result != LOOKUP_FOUND || out.len != 5 || memcmp(out.data, v, 5) != 0;
            /* too old a snapshot */
            CHECK_RC(table_get(t, k, 200, 99 + (uint64_t)i / 3, &out, 0, &result), PL_OK);
            bad += result != LOOKUP_ABSENT;
        }
        /* a key between two blocks (the separator region) seeks to the next entry */
        n = (size_t)sprintf(k, "k-%05d", i);
        it = table_iter(t);
        iter_seek(it, k, n);
        if (i <= 897) {
            const char *kk;
            size_t kn;
            CHECK(iter_valid(it));
            iter_key(it, &kk, &kn);
            char want[16];
            sprintf(want, "k-%05d-", (i + 2) / 3 * 3);
            bad += kn != 208 || memcmp(kk, want, 8) != 0;
        } else {
            bad += iter_valid(it);
        }
        iter_destroy(it);
    }
    CHECK_EQ(bad, 0);
    table_close(t);
    CHECK_RC(table_verify(path, meta.file_size), PL_OK);
    table_meta_free(&meta);

    /* bad arguments */
    CHECK_RC(table_builder_new(path, 0, 10, &tb), PL_INVALID);
    CHECK_RC(table_builder_new(path, 4096, -1, &tb), PL_INVALID);
    char nodir[600];
    snprintf(nodir, sizeof nodir, "%s/no/such/dir.sst", dir);
    CHECK_RC(table_builder_new(nodir, 4096, 10, &tb), PL_IOERR);

    /* abandon removes the file */
    path_of(path, "abandoned.sst");
    CHECK_RC(new_builder(path, 4096, 10, &tb), PL_OK);
    CHECK(tu_exists(path));
    ikey_build(k, "a", 1, 1, KIND_PUT);
    CHECK_RC(table_builder_add(tb, k, 9, "x", 1), PL_OK);
    table_builder_abandon(tb);
    CHECK(!tu_exists(path));
    table_builder_abandon(NULL);
    pl_buf_free(&out);
}

static void test_faults(cache *c)
{
    char path[512];
    table_meta meta;
    table_builder *tb;
    char k[32];

    /* a failed write: sticky error, finish removes the file and keeps the message */
    path_of(path, "fault_write.sst");
    CHECK_RC(new_builder(path, 4096, 10, &tb), PL_OK);
    env_fault_set(ENV_OP_WRITE, 1, ENOSPC, 0);
    int rc = PL_OK;
    for (size_t i = 0; i < 20000 && !rc; i++) {
        size_t kn = ikey_of(k, model[i].n, model[i].lsn, model[i].kind);
        rc = table_builder_add(tb, k, kn, "value", 5);
    }
    env_fault_clear();
    CHECK_RC(rc, PL_IOERR);
    CHECK_EQ(pl_errno(), ENOSPC);
    CHECK_RC(table_builder_add(tb, "zzzzzzzzzzzzzzzzzzz", 19, "", 0), PL_IOERR);
    CHECK_RC(table_builder_finish(tb, &meta), PL_IOERR);
    CHECK_EQ(pl_errno(), ENOSPC);
    CHECK(strstr(pl_errmsg(), path) != NULL);
    CHECK(!tu_exists(path));

    /* a failed fdatasync */
    CHECK_RC(new_builder(path, 4096, 10, &tb), PL_OK);
    ikey_build(k, "a", 1, 1, KIND_PUT);
    CHECK_RC(table_builder_add(tb, k, 9, "x", 1), PL_OK);
    env_fault_set(ENV_OP_SYNC, 1, EIO, 0);
    CHECK_RC(table_builder_finish(tb, &meta), PL_IOERR);
    env_fault_clear();
    CHECK(strstr(pl_errmsg(), "fdatasync") != NULL);
    CHECK_EQ(pl_errno(), EIO);
    CHECK(!tu_exists(path));

    /* a failed unlink during cleanup does not hide the first error */
    CHECK_RC(new_builder(path, 4096, 10, &tb), PL_OK);
    CHECK_RC(table_builder_add(tb, k, 9, "x", 1), PL_OK);
    env_fault_set(ENV_OP_SYNC | ENV_OP_UNLINK, 1, EIO, 1);
    CHECK_RC(table_builder_finish(tb, &meta), PL_IOERR);
    env_fault_clear();
    CHECK(strstr(pl_errmsg(), "fdatasync") != NULL);
    CHECK_EQ(pl_errno(), EIO);
    unlink(path);

    /* a failed read: get and iterator report PL_IOERR */
    table *t;
    CHECK_RC(table_open(big_path, big_meta.file_size, c, &t), PL_OK);
    pl_buf out = {0};
    int result;
    size_t kl = key_str(k, 2 * 77777);
    env_fault_set(ENV_OP_READ, 1, EIO, 0);
    CHECK_RC(table_get(t, k, kl, LSN_MAX, &out, 0, &result), PL_IOERR);
    env_fault_clear();
    CHECK_EQ(check_get(t, 2 * 77777, LSN_MAX, &out, 0), 0);
    iter *it = table_iter(t);
    iter_seek_first(it);
    CHECK(iter_valid(it));
    env_fault_set(ENV_OP_READ, 1, EIO, 1);
    size_t n = 0;
    while (iter_valid(it) && n < 1000000) {
        iter_next(it);
        n++;
    }
    env_fault_clear();
    CHECK(!iter_valid(it));
    CHECK_RC(iter_status(it), PL_IOERR);
    iter_seek_first(it); /* errors are sticky */
    CHECK(!iter_valid(it));
    iter_destroy(it);
    /* The mapped file cut short under an open table (SIGBUS on its pages): an error, not a crash. */
    {
        char cut[600];
        snprintf(cut, sizeof cut, "%s.cut", big_path);
        size_t fsz = 0;
        char *whole = NULL;
        CHECK_RC(env_read_file(big_path, &whole, &fsz), PL_OK);
        FILE *f = fopen(cut, "wb");
        fwrite(whole, 1, fsz, f);
        fclose(f);
        free(whole);
        table *tc = NULL;
        CHECK_RC(table_open(cut, big_meta.file_size, c, &tc), PL_OK);
        /* cut at a page boundary: the bytes past it are on pages past the end (SIGBUS), not zeros of the
         * last partial page (which read as a checksum mismatch) */
        CHECK_RC(truncate(cut, (off_t)(big_meta.file_size / 4 / 4096 * 4096)) == 0 ? PL_OK : PL_IOERR, PL_OK);
        int faults = 0, found = 0;
        for (size_t i = 0; i < nmodel; i += 97) {
            size_t kn = key_str(k, (uint32_t)(2 * i));
            int r = table_get(tc, k, kn, LSN_MAX, &out, 0, &result);
            faults += r == PL_IOERR;
            found += r == PL_OK && result == LOOKUP_FOUND;
        }
        CHECK(faults > 0);
        CHECK(found > 0 || pidx_mode); /* the first quarter still reads (a point index is at the end) */
        iter *ic = table_iter(tc);
        size_t seen = 0;
        for (iter_seek_first(ic); iter_valid(ic); iter_next(ic))
            seen++;
        CHECK_RC(iter_status(ic), PL_IOERR);
        CHECK(seen == 0); /* the index block is read in place too, and it was at the file's end */
        CHECK(table_may_contain(tc, "absent-key", 10)); /* a filter past the end answers "maybe" */
        CHECK(table_approx_offset(tc, "a", 1) == big_meta.file_size); /* the index past the end: the end */
        iter_destroy(ic);
        table_close(tc);
        unlink(cut);
    }
    env_fault_set(ENV_OP_READ, 1, EIO, 0);
    table *t2 = NULL;
    CHECK_RC(table_open(big_path, big_meta.file_size, c, &t2), PL_IOERR);
    CHECK(t2 == NULL);
    env_fault_clear();
    pl_buf_free(&out);
    table_close(t);
}

/* Point reads through the fences (the index unpacked at open): keys sharing a long common prefix,
 * runs of separators whose 8-byte windows tie (so the whole keys decide), keys shorter than the
 * common prefix, and probes before, after and between the table's keys.  Every answer is checked
 * against a sorted model, with and without bloom filters (without, every probe reaches the fences). */
static void test_fences(void)
{
    enum { NK = 3000 };
    static char keys[NK][64];
    static size_t klens[NK];
    int n = 0;
    for (int i = 0; i < NK; i++) {
        /* "common/" + a window that repeats for runs of 50 keys + a distinguishing suffix */
        klens[n] = (size_t)snprintf(keys[n], sizeof keys[n], "common/%08d/%06d", (i / 50) * 50, i);
        n++;
    }
    for (int bits = 0; bits <= 10; bits += 10) {
        char path[512];
        path_of(path, bits ? "fences_bloom.sst" : "fences.sst");
        table_builder *tb;
        CHECK_RC(new_builder(path, 512, bits, &tb), PL_OK);
        char ik[80];
        for (int i = 0; i < n; i++) {
            ikey_build(ik, keys[i], klens[i], (uint64_t)i + 1, KIND_PUT);
            CHECK_RC(table_builder_add(tb, ik, klens[i] + 8, keys[i], klens[i]), PL_OK);
        }
        table_meta m;
        CHECK_RC(table_builder_finish(tb, &m), PL_OK);
        table *t;
        CHECK_RC(table_open(path, m.file_size, NULL, &t), PL_OK);
        pl_buf out = {0};
        int bad = 0, result;
        for (int i = 0; i < n; i++) { /* every key, at its own LSN and later; absent before it */
            bad += table_get(t, keys[i], klens[i], LSN_MAX, &out, 0, &result) != PL_OK || result != LOOKUP_FOUND ||
                   out.len != klens[i] || memcmp(out.data, keys[i], klens[i]) != 0;
            bad += table_get(t, keys[i], klens[i], (uint64_t)i, &out, 0, &result) != PL_OK || result != LOOKUP_ABSENT;
        }
        static const char *absent[] = {"", "a", "common", "common/", "common/0", "common/00000050",
                                       "common/00000050/", "common/00000050/000049x", "common/99999999",
                                       "commoo", "commom/zzz", "d", "\xff\xff"};
        for (size_t a = 0; a < sizeof absent / sizeof absent[0]; a++)
            bad += table_get(t, absent[a], strlen(absent[a]), LSN_MAX, &out, 0, &result) != PL_OK ||
                   result != LOOKUP_ABSENT;
        CHECK_EQ(bad, 0);
        pl_buf_free(&out);
        table_close(t);
        table_meta_free(&m);
        unlink(path);
    }
}

/* The point index's own behaviour: PL_READ_NO_IO until a chunk or block is checked, absent keys
 * answered from one bucket, keys too long for its walk, old snapshots, a table too large for slots. */
static void test_pidx(void)
{
    table *t;
    CHECK_RC(table_open(big_path, big_meta.file_size, NULL, &t), PL_OK);
    CHECK(table_has_point_index(t));
    {
        /* a lean table keeps nothing per data block on the heap: 12 bytes a block fewer */
        table *other;
        CHECK_RC(lean_mode ? (table_open)(big_path, big_meta.file_size, NULL, &other)
                           : table_open_lean(big_path, big_meta.file_size, NULL, &other), PL_OK);
        CHECK(table_has_point_index(other));
        uint64_t fat = table_heap_bytes(lean_mode ? other : t), lean = table_heap_bytes(lean_mode ? t : other);
        printf("point index: heap bytes %llu with fences, %llu lean\n", (unsigned long long)fat,
               (unsigned long long)lean);
        CHECK(fat > 2 * lean);
        table_close(other);
    }
    pl_buf out = {0};
    char k[32];
    int result;
    /* the bloom filter in the index's tail answers most absent keys with nothing checked yet */
    int would_block = 0, wrong = 0;
    size_t kl;
    for (uint32_t i = 0; i < 10000; i++) {
        kl = key_str(k, 2 * (i * 7 % NKEYS) + 1);
        int rc = table_get(t, k, kl, LSN_MAX, &out, PL_READ_NO_IO, &result);
        if (rc == PL_WOULDBLOCK)
            would_block++;
        else
            wrong += rc != PL_OK || result != LOOKUP_ABSENT;
    }
    printf("point index: absent keys the filter let through: %d of 10000\n", would_block);
    CHECK(would_block < 200);
    CHECK_EQ(wrong, 0);
    /* without the filter, nothing is checked yet: an absent key needs its chunk */
    const int NF = TABLE_GET_NO_FILTER;
    kl = key_str(k, 1);
    CHECK_RC(table_get(t, k, kl, LSN_MAX, &out, PL_READ_NO_IO | NF, &result), PL_WOULDBLOCK);
    CHECK_RC(table_get(t, k, kl, LSN_MAX, &out, NF, &result), PL_OK);
    CHECK_EQ(result, LOOKUP_ABSENT);
    CHECK_RC(table_get(t, k, kl, LSN_MAX, &out, PL_READ_NO_IO | NF, &result), PL_OK);
    CHECK_EQ(result, LOOKUP_ABSENT);
    /* every chunk checked: absent keys need a data block only on a fingerprint collision */
    would_block = 0;
    for (uint32_t i = 0; i < 10000; i++) {
        kl = key_str(k, 2 * (i * 7 % NKEYS) + 1);
        wrong += table_get(t, k, kl, LSN_MAX, &out, NF, &result) != PL_OK || result != LOOKUP_ABSENT;
    }
    for (uint32_t i = 0; i < 10000; i++) {
        kl = key_str(k, 2 * (i * 7 % NKEYS) + 1);
        int rc = table_get(t, k, kl, LSN_MAX, &out, PL_READ_NO_IO | NF, &result);
        if (rc == PL_WOULDBLOCK)
            would_block++;
        else
            wrong += rc != PL_OK || result != LOOKUP_ABSENT;
    }
    printf("point index: absent keys that needed a data block: %d of 10000\n", would_block);
    CHECK(would_block < 20);
    CHECK_EQ(wrong, 0);

    /* a present key needs its block once */
    kl = key_str(k, 0);
    CHECK_RC(table_get(t, k, kl, LSN_MAX, &out, PL_READ_NO_IO, &result), PL_WOULDBLOCK);
    CHECK_EQ(check_get(t, 0, LSN_MAX, &out, 0), 0);
    CHECK_EQ(check_get(t, 0, LSN_MAX, &out, PL_READ_NO_IO), 0);
    /* the same answers with and without the filter, for every key */
    for (uint32_t i = 0; i < 2 * NKEYS; i += 3) {
        kl = key_str(k, i);
        int r1 = -1, r2 = -2;
        wrong += table_get(t, k, kl, LSN_MAX, &out, 0, &r1) != PL_OK;
        wrong += table_get(t, k, kl, LSN_MAX, &out, NF, &r2) != PL_OK || r1 != r2;
    }
    CHECK_EQ(wrong, 0);
    table_close(t);

    /* keys longer than the walk's buffer, among short ones, with versions: every answer right */
    char path[512];
    path_of(path, "pidx_long.sst");
    table_builder *tb;
    CHECK_RC(new_builder(path, 1024, 10, &tb), PL_OK);
    static char lk[1200];
    enum { NL = 400 };
    for (int i = 0; i < NL; i++) {
        size_t ul = i % 3 == 0 ? 300 + (size_t)i : 20; /* every third key long */
        memset(lk, 'a' + i % 7, ul);
        sprintf(lk, "%06d", i);
        lk[6] = '-';
        for (int v = 0; v < 1 + i % 3; v++) { /* newest first: lsn 100 + i, then 50 + i, 10 + i */
            uint64_t lsn = v == 0 ? 100 + (uint64_t)i : v == 1 ? 50 + (uint64_t)i : 10 + (uint64_t)i;
            put_u64(lk + ul, ikey_pack(lsn, v == 1 ? KIND_DELETE : KIND_PUT));
            char val[16];
            int vn = sprintf(val, "%d@%llu", i, (unsigned long long)lsn);
            CHECK_RC(table_builder_add(tb, lk, ul + 8, val, v == 1 ? 0 : (size_t)vn), PL_OK);
        }
    }
    table_meta m;
    CHECK_RC(table_builder_finish(tb, &m), PL_OK);
    CHECK_RC(table_open(path, m.file_size, NULL, &t), PL_OK);
    CHECK(table_has_point_index(t));
    int bad = 0;
    for (int i = 0; i < NL; i++) {
        size_t ul = i % 3 == 0 ? 300 + (size_t)i : 20;
        memset(lk, 'a' + i % 7, ul);
        sprintf(lk, "%06d", i);
        lk[6] = '-';
        char want[16];
        /* the newest version, a deleted older one (when there is one), one older still, none */
        sprintf(want, "%d@%llu", i, (unsigned long long)(100 + i));
        bad += table_get(t, lk, ul, LSN_MAX, &out, 0, &result) != PL_OK || result != LOOKUP_FOUND ||
               out.len != strlen(want) || memcmp(out.data, want, out.len) != 0;
        if (i % 3 >= 1)
            bad += table_get(t, lk, ul, 99 + (uint64_t)i, &out, 0, &result) != PL_OK || result != LOOKUP_DELETED;
        if (i % 3 == 2) {
            sprintf(want, "%d@%llu", i, (unsigned long long)(10 + i));
            bad += table_get(t, lk, ul, 49 + (uint64_t)i, &out, 0, &result) != PL_OK || result != LOOKUP_FOUND ||
                   out.len != strlen(want) || memcmp(out.data, want, out.len) != 0;
        }
        bad += table_get(t, lk, ul, 9, &out, 0, &result) != PL_OK || result != LOOKUP_ABSENT;
        lk[ul - 1] ^= 1; /* a neighbour that is not there */
        bad += table_get(t, lk, ul, LSN_MAX, &out, 0, &result) != PL_OK || result != LOOKUP_ABSENT;
    }
    CHECK_EQ(bad, 0);
    table_close(t);
    CHECK_RC(table_verify(path, m.file_size), PL_OK);
    table_meta_free(&m);
    unlink(path);

    /* regions past 4 MiB into a block do not fit a slot: the table gets a bloom filter instead */
    path_of(path, "pidx_huge_block.sst");
    CHECK_RC(new_builder(path, 6u << 20, 10, &tb), PL_OK);
    char val[100];
    memset(val, 'v', sizeof val);
    for (uint32_t i = 0; i < 50000; i++) {
        char ik[32];
        size_t n = key_str(ik, i);
        put_u64(ik + n, ikey_pack(1, KIND_PUT));
        CHECK_RC(table_builder_add(tb, ik, n + 8, val, sizeof val), PL_OK);
    }
    CHECK_RC(table_builder_finish(tb, &m), PL_OK);
    CHECK_RC(table_open(path, m.file_size, NULL, &t), PL_OK);
    CHECK(!table_has_point_index(t) && table_has_filter(t));
    bad = 0;
    for (uint32_t i = 0; i < 50000; i += 37) {
        kl = key_str(k, i);
        bad += table_get(t, k, kl, LSN_MAX, &out, 0, &result) != PL_OK || result != LOOKUP_FOUND;
    }
    CHECK_EQ(bad, 0);
    table_close(t);
    table_meta_free(&m);
    unlink(path);
    pl_buf_free(&out);
}

/* A compressed table (the big one: zstd blocks, some raw where compression did not pay): its blocks
 * are found compressed; a flipped byte in a stored block is reported by get, iteration and verify; a
 * block whose CRC holds but whose declared raw size is wrong (a forged trailer: what a codec checks
 * beyond the CRC) is reported as not decompressing, never returned. */
/* A table written to bad_path (n bytes) with one data block damaged: it opens; gets of the keys
 * 2k for k in [k_lo, k_hi) either answer right or report PL_CORRUPT (at least one does); *corrupt and
 * *with_msg count those, and those whose message holds msg; a walk and verify report PL_CORRUPT. */
static void check_damaged_block(const char *bad_path, size_t n, uint32_t k_lo, uint32_t k_hi, const char *msg,
                                int *corrupt, int *with_msg)
{
    *corrupt = *with_msg = 0;
    table *t = NULL;
    CHECK_RC(table_open(bad_path, n, NULL, &t), PL_OK);
    if (!t)
        return;
    pl_buf out = {0};
    int wrong = 0;
    for (uint32_t k = k_lo; k < k_hi; k++) {
        char key[32];
        size_t kl = key_str(key, 2 * k);
        int result = -1;
        int rc = table_get(t, key, kl, LSN_MAX, &out, 0, &result);
        if (rc == PL_CORRUPT) {
            (*corrupt)++;
            *with_msg += strstr(pl_errmsg(), msg) != NULL;
            continue;
        }
        const mentry *hit = NULL;
        int want = expect_get(2 * k, LSN_MAX, &hit);
        wrong += rc != PL_OK || result != want ||
                 (want == LOOKUP_FOUND && !value_is(2 * k, hit->lsn, out.data, out.len));
    }
    CHECK(*corrupt > 0);
    CHECK_EQ(wrong, 0);
    pl_buf_free(&out);
    iter *it = table_iter(t);
    for (iter_seek_first(it); iter_valid(it); iter_next(it))
        ;
    CHECK_RC(iter_status(it), PL_CORRUPT);
    iter_destroy(it);
    table_close(t);
    CHECK_RC(table_verify(bad_path, n), PL_CORRUPT);
}

static void test_compressed_damage(void)
{
    char *d;
    size_t n;
    CHECK_RC(env_read_file(big_path, &d, &n), PL_OK);
    if (!d)
        return;
    CHECK_EQ(get_u32(d + n - 48 + 32), TABLE_VERSION_DICT); /* (its first blocks are compressed alone) */
    /* The first data blocks, found as repair finds them: back to back from 0, each ending where its
     * trailer's CRC matches the bytes since its start.  ends[i]: the offset of block i's trailer. */
    size_t ends[3], starts[3], nb = 0, zstd_blocks = 0;
    for (size_t start = 0; nb < 3 && start + 8 + 5 <= n;) {
        uint32_t c = crc_value(d + start, 8);
        size_t e = start + 8;
        for (; e + 5 <= n; e++) {
            if ((unsigned char)d[e] <= COMPRESS_MAX && crc_unmask(get_u32(d + e + 1)) == crc_extend(c, d + e, 1))
                break;
            c = crc_extend(c, d + e, 1);
        }
        if (e + 5 > n)
            break;
        zstd_blocks += d[e] == COMPRESS_ZSTD;
        starts[nb] = start;
        ends[nb++] = e;
        start = e + 5;
    }
    CHECK_EQ(nb, 3);
    CHECK(zstd_blocks >= 2); /* the model's values compress */
    if (nb < 2) {
        free(d);
        return;
    }
    char bad_path[512];
    path_of(bad_path, "damaged.sst");
    for (int forge = 0; forge < 2; forge++) {
        char *nd = malloc(n);
        memcpy(nd, d, n);
        size_t b = d[ends[1]] == COMPRESS_ZSTD ? 1 : 0; /* a compressed block */
        if (!forge) {
            nd[(starts[b] + ends[b]) / 2] ^= 0x20;
        } else { /* a raw size one off (the varint before the codec's bytes), under a CRC that holds */
            nd[starts[b]] ^= 1;
            uint32_t crc = crc_extend(crc_value(nd + starts[b], ends[b] - starts[b]), nd + ends[b], 1);
            put_u32(nd + ends[b] + 1, crc_mask(crc));
        }
        CHECK_RC(env_write_file(bad_path, nd, n), PL_OK);
        free(nd);
        int corrupt, decompress_msg;
        check_damaged_block(bad_path, n, 0, 2000, "does not decompress", &corrupt, &decompress_msg);
        if (forge)
            CHECK(decompress_msg > 0);
    }
    free(d);
    unlink(bad_path);
}

/* A table past its samples: blocks of both kinds (alone, then with the dictionary), a dictionary
 * block that must be intact and whose length field must agree, and a table without its dictionary
 * that reports the blocks needing it as corrupt. */
static void test_dictionary(void)
{
    char *d;
    size_t n;
    CHECK_RC(env_read_file(big_path, &d, &n), PL_OK);
    if (!d)
        return;
    table_footer ft;
    CHECK_RC(table_footer_decode(d + n - TABLE_FOOTER_SIZE, n, big_path, &ft), PL_OK);
    CHECK_EQ(ft.version, TABLE_VERSION_DICT);
    uint64_t doff = 0, dsize = 0;
    CHECK_RC(table_dict_handle(get_u32(d + ft.filter_off - TABLE_BLOCK_TRAILER - 4), ft.filter_off, &doff, &dsize),
             PL_OK);
    CHECK(dsize > 4 && dsize <= TABLE_DICT_MAX_BYTES + 4);
    CHECK_RC(table_check_trailer(d + doff, (size_t)dsize, 0, big_path, doff), PL_OK);
    CHECK_RC(table_dict_handle(TABLE_DICT_MAX_BYTES + 1, ft.filter_off, &doff, &dsize), PL_CORRUPT);
    CHECK_RC(table_dict_handle((uint32_t)ft.filter_off, ft.filter_off, &doff, &dsize), PL_CORRUPT);
    CHECK_RC(table_dict_handle(get_u32(d + ft.filter_off - TABLE_BLOCK_TRAILER - 4), ft.filter_off, &doff, &dsize),
             PL_OK);
    /* every data block, by the index: both kinds are there, the dictionary's after the others */
    block_cursor ic;
    CHECK_RC(block_cursor_init(&ic, d + ft.index_off, (size_t)ft.index_size), PL_OK);
    uint64_t alone = 0, with = 0, alone_after = 0, end = 0;
    for (block_cursor_seek_first(&ic); block_cursor_valid(&ic); block_cursor_next(&ic)) {
        uint64_t off, size;
        CHECK_RC(table_decode_handle(block_cursor_value(&ic), block_cursor_vlen(&ic), &off, &size), PL_OK);
        int type = (unsigned char)d[off + size];
        with += type == COMPRESS_ZSTD_DICT;
        alone += type == COMPRESS_ZSTD;
        alone_after += type == COMPRESS_ZSTD && with > 0;
        end = off + size + TABLE_BLOCK_TRAILER;
    }
    block_cursor_free(&ic);
    CHECK(alone > 10 && with > 10 * alone);
    CHECK_EQ(alone_after, 0);
    CHECK_EQ(end, doff); /* the data ends where the dictionary begins */

    char bad_path[512];
    path_of(bad_path, "damaged.sst");
    /* The last data block (compressed with the dictionary) damaged: a flipped byte (its checksum), and
     * its raw size one off under a checksum that holds ("does not decompress").  Gets of its keys and
     * the walk report corruption, never a wrong answer. */
    uint64_t last_off = 0, last_size = 0;
    CHECK_RC(block_cursor_init(&ic, d + ft.index_off, (size_t)ft.index_size), PL_OK);
    for (block_cursor_seek_first(&ic); block_cursor_valid(&ic); block_cursor_next(&ic))
        CHECK_RC(table_decode_handle(block_cursor_value(&ic), block_cursor_vlen(&ic), &last_off, &last_size), PL_OK);
    block_cursor_free(&ic);
    CHECK_EQ((unsigned char)d[last_off + last_size], COMPRESS_ZSTD_DICT);
    for (int forge = 0; forge < 2; forge++) {
        char *nd = malloc(n);
        memcpy(nd, d, n);
        if (!forge) {
            nd[last_off + last_size / 2] ^= 0x10;
        } else {
            nd[last_off] ^= 1; /* (the varint's low bit: raw sizes of blocks this small take two bytes) */
            uint32_t crc = crc_extend(crc_value(nd + last_off, (size_t)last_size), nd + last_off + last_size, 1);
            put_u32(nd + last_off + last_size + 1, crc_mask(crc));
        }
        CHECK_RC(env_write_file(bad_path, nd, n), PL_OK);
        free(nd);
        int corrupt, msg;
        check_damaged_block(bad_path, n, NKEYS - 2000, NKEYS, forge ? "does not decompress" : "checksum mismatch",
                            &corrupt, &msg);
        CHECK_EQ(msg, corrupt);
    }
    for (int how = 0; how < 3; how++) {
        char *nd = malloc(n);
        memcpy(nd, d, n);
        if (how == 0) { /* a bit in the dictionary: its checksum */
            nd[doff + dsize / 3] ^= 0x04;
        } else if (how == 1) { /* its length one less, under a checksum that holds: the block then starts
                                * a byte later, where the data does not end */
            put_u32(nd + doff + dsize - 4, (uint32_t)dsize - 4 - 1);
            uint32_t crc = crc_extend(crc_value(nd + doff + 1, (size_t)dsize - 1), nd + doff + dsize, 1);
            put_u32(nd + doff + dsize + 1, crc_mask(crc));
        } else { /* the footer says format 3: the dictionary's blocks do not decompress */
            put_u32(nd + n - TABLE_FOOTER_SIZE + 32, TABLE_VERSION_COMPRESSED);
            put_u32(nd + n - TABLE_FOOTER_SIZE + 36, crc_value(nd + n - TABLE_FOOTER_SIZE, 36));
        }
        CHECK_RC(env_write_file(bad_path, nd, n), PL_OK);
        free(nd);
        table *t = NULL;
        int rc = table_open(bad_path, n, NULL, &t);
        if (how < 2) {
            CHECK_RC(rc, PL_CORRUPT);
            CHECK(strstr(pl_errmsg(), how == 0 ? "checksum mismatch" : "the dictionary block starts") != NULL);
            CHECK(t == NULL);
        } else {
            /* (open reads the index: the data region then seems to end at the dictionary block, which
             * the index does not name) */
            CHECK_RC(rc, PL_CORRUPT);
        }
        table_close(t);
        CHECK_RC(table_verify(bad_path, n), PL_CORRUPT);
    }
    unlink(bad_path);
    free(d);
}

/* The format's pieces that repair reads damaged tables with: the footer, trailers, block handles. */
static void test_format_pieces(void)
{
    char *d;
    size_t n;
    CHECK_RC(env_read_file(big_path, &d, &n), PL_OK);
    if (!d || n < TABLE_FOOTER_SIZE)
        return;
    table_footer ft;
    CHECK_RC(table_footer_decode(d + n - TABLE_FOOTER_SIZE, n, big_path, &ft), PL_OK);
    CHECK(ft.index_off + ft.index_size + TABLE_BLOCK_TRAILER == n - TABLE_FOOTER_SIZE);
    CHECK(ft.filter_off + ft.filter_size + TABLE_BLOCK_TRAILER == ft.index_off);
    CHECK(ft.version >= TABLE_VERSION_MIN && ft.version <= TABLE_VERSION_MAX);
    char f[TABLE_FOOTER_SIZE];
    memcpy(f, d + n - TABLE_FOOTER_SIZE, sizeof f);
    f[41] ^= 1;
    CHECK_RC(table_footer_decode(f, n, "t.sst", &ft), PL_CORRUPT);
    CHECK(strstr(pl_errmsg(), "t.sst: footer at offset") && strstr(pl_errmsg(), "bad magic number"));
    f[41] ^= 1;
    f[3] ^= 1;
    CHECK_RC(table_footer_decode(f, n, "t.sst", &ft), PL_CORRUPT);
    CHECK(strstr(pl_errmsg(), "checksum mismatch") != NULL);
    f[3] ^= 1;
    CHECK_RC(table_footer_decode(f, n + 1, "t.sst", &ft), PL_CORRUPT); /* one byte more: no longer fits */
    CHECK(strstr(pl_errmsg(), "do not fit the file") != NULL);

    /* The index block: raw, its trailer intact; damage to it or to the type is caught. */
    char *ix = d + ft.index_off;
    size_t ixn = (size_t)ft.index_size;
    CHECK_EQ(table_trailer_matches(ix + ixn, crc_value(ix, ixn), 0), 1);
    CHECK_RC(table_check_trailer(ix, ixn, 0, "t.sst", ft.index_off), PL_OK);
    ix[0] ^= 1;
    CHECK_EQ(table_trailer_matches(ix + ixn, crc_value(ix, ixn), 1), 0);
    CHECK_RC(table_check_trailer(ix, ixn, 1, "t.sst", ft.index_off), PL_CORRUPT);
    CHECK(strstr(pl_errmsg(), "t.sst: block at offset") && strstr(pl_errmsg(), "checksum mismatch"));
    ix[0] ^= 1;
    ix[ixn] = 7;
    CHECK_RC(table_check_trailer(ix, ixn, 1, "t.sst", ft.index_off), PL_CORRUPT);
    CHECK(strstr(pl_errmsg(), "unknown block type 7") != NULL);
    ix[ixn] = COMPRESS_ZSTD; /* a codec's type: known only where codecs may be */
    CHECK_RC(table_check_trailer(ix, ixn, 0, "t.sst", ft.index_off), PL_CORRUPT);
    CHECK(strstr(pl_errmsg(), "unknown block type") != NULL);
    ix[ixn] = TABLE_BLOCK_RAW;

    /* The first index entry names the first data block, at 0, within the data area. */
    block_cursor c;
    CHECK_RC(block_cursor_init(&c, ix, ixn), PL_OK);
    block_cursor_seek_first(&c);
    uint64_t off = 1, size = 0;
    CHECK(block_cursor_valid(&c));
    if (block_cursor_valid(&c))
        CHECK_RC(table_decode_handle(block_cursor_value(&c), block_cursor_vlen(&c), &off, &size), PL_OK);
    CHECK_EQ(off, 0);
    CHECK_EQ(table_data_handle_fits(off, size, ft.filter_off), 1);
    CHECK_EQ(table_trailer_matches(d + off + size, crc_value(d + off, (size_t)size), 1), 1);
    block_cursor_free(&c);
    CHECK_RC(table_decode_handle("\x80", 1, &off, &size), PL_CORRUPT);
    CHECK_RC(table_decode_handle("\x01\x02\x03", 3, &off, &size), PL_CORRUPT);
    CHECK_EQ(table_data_handle_fits(0, ft.filter_off - TABLE_BLOCK_TRAILER, ft.filter_off), 1);
    CHECK_EQ(table_data_handle_fits(1, ft.filter_off - TABLE_BLOCK_TRAILER, ft.filter_off), 0);
    CHECK_EQ(table_data_handle_fits(UINT64_MAX, 1, ft.filter_off), 0);
    CHECK_EQ(table_data_handle_fits(0, UINT64_MAX, ft.filter_off), 0);
    free(d);
}

/* A lean open checks that each restart slot of the index names its own entry (pidx_block parses the
 * entry there): an index whose restart slot points inside the entry before, checksums fixed, is not
 * opened lean, and every read still answers right. */
static void test_lean_rejects_a_misplaced_restart(void)
{
    char path[512];
    path_of(path, "lean_restart.sst");
    table_builder *tb;
    CHECK_RC(table_builder_new(path, 256, 10, &tb), PL_OK);
    table_builder_set_point_index(tb, 1);
    char ik[64], k[32];
    for (int i = 0; i < 400; i++) {
        size_t kn = (size_t)snprintf(k, sizeof k, "k%05d", i);
        ikey_build(ik, k, kn, (uint64_t)i + 1, KIND_PUT);
        CHECK_RC(table_builder_add(tb, ik, kn + 8, k, kn), PL_OK);
    }
    table_meta m;
    CHECK_RC(table_builder_finish(tb, &m), PL_OK);
    table *t;
    CHECK_RC(table_open_lean(path, m.file_size, NULL, &t), PL_OK);
    uint64_t lean_heap = table_heap_bytes(t);
    table_close(t);
    /* move restart slot 1 one byte back, into entry 0, and fix the index block's trailer */
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0);
    char *d = malloc(m.file_size);
    CHECK_EQ((uint64_t)pread(fd, d, m.file_size, 0), m.file_size);
    const char *f = d + m.file_size - TABLE_FOOTER_SIZE;
    uint64_t index_off = get_u64(f + 16), index_size = get_u64(f + 24);
    char *ix = d + index_off;
    uint32_t nr = get_u32(ix + index_size - 4);
    CHECK(nr > 2);
    char *slot1 = ix + index_size - 4 - 4 * (size_t)nr + 4;
    put_u32(slot1, get_u32(slot1) - 1);
    char *tr = ix + index_size;
    put_u32(tr + 1, crc_mask(crc_extend(crc_value(ix, (size_t)index_size), tr, 1)));
    CHECK_EQ((uint64_t)pwrite(fd, d, m.file_size, 0), m.file_size);
    close(fd);
    free(d);
    int rc = table_open_lean(path, m.file_size, NULL, &t);
    if (rc == PL_OK) { /* the block reader may take the slot; the table must then not be lean */
        CHECK(table_heap_bytes(t) > lean_heap);
        pl_buf out = {0};
        int wrong = 0, result;
        for (int i = 0; i < 400; i++) {
            size_t kn = (size_t)snprintf(k, sizeof k, "k%05d", i);
            int r = table_get(t, k, kn, LSN_MAX, &out, 0, &result);
            wrong += r == PL_OK && (result != LOOKUP_FOUND || out.len != kn || memcmp(out.data, k, kn) != 0);
            wrong += r != PL_OK && r != PL_CORRUPT;
        }
        CHECK_EQ(wrong, 0);
        pl_buf_free(&out);
        table_close(t);
    } else {
        CHECK_RC(rc, PL_CORRUPT);
    }
    table_meta_free(&m);
    unlink(path);
}

/* How many gets of the small table's keys would wait (PL_WOULDBLOCK) under PL_READ_NO_IO: their block
 * or point index chunk not checked yet in this open. */
static int unchecked_blocks(table *t)
{
    pl_buf out = {0};
    int n = 0;
    for (size_t i = 0; i < small_n; i++) {
        char k[32];
        size_t kl = key_str(k, model[i].n);
        int result = -1;
        n += table_get(t, k, kl, model[i].lsn, &out, PL_READ_NO_IO, &result) == PL_WOULDBLOCK;
    }
    pl_buf_free(&out);
    return n;
}

/* table_warm on a table the page cache holds (it was just written): it maps the file, and checks
 * blocks as a first read would, so a damaged block it meets still fails every get that needs it, and
 * the other gets answer right; a stop set before it starts maps nothing. */
static void test_warm(cache *c)
{
    char path[512];
    path_of(path, "warm.sst");
    table_meta meta;
    build_small(path, 20000, 1024, &meta);
    atomic_int stop = 0, stopped = 1;
    table *t;
    CHECK_RC(table_open(path, meta.file_size, c, &t), PL_OK);
    CHECK_EQ(table_warm(t, &stopped), 0);
    CHECK(compress_mode || unchecked_blocks(t) > 100); /* a get without I/O waits for a first check */
    uint64_t mapped = table_warm(t, &stop);
    CHECK(mapped >= meta.file_size / 2 && mapped <= meta.file_size + (uint64_t)sysconf(_SC_PAGESIZE));
    CHECK_EQ(compress_mode ? 0 : unchecked_blocks(t), 0); /* the warmer checked them all (compressed
                                                         * blocks are read through the cache) */
    int wrong = 0;
    CHECK_EQ(gets_on_damaged(t, &wrong), 0);
    CHECK_EQ(wrong, 0);
    CHECK(table_warm(t, &stop) > 0); /* again: nothing checked twice goes wrong */
    table_close(t);
    flip(path, 1100, 0x20); /* in the second data block, through the page cache */
    CHECK_RC(table_open(path, meta.file_size, c, &t), PL_OK);
    CHECK(table_warm(t, &stop) > 0);
    int corrupt = gets_on_damaged(t, &wrong);
    CHECK(corrupt > 0 && corrupt < 200);
    CHECK_EQ(wrong, 0);
    table_close(t);
    table_meta_free(&meta);
    unlink(path);
}

static void run_suite(cache *c)
{
    test_round_trip(c);
    if (compress_mode) {
        test_compressed_damage();
        test_dictionary();
    }
    else if (pidx_mode)
        test_pidx();
    else
        test_filter_effect();
    test_fences();
    test_format_pieces();
    test_iteration(big);
    table_set_random_reads(big, 1); /* iterators then request their own read-ahead */
    test_iteration(big);
    table_set_random_reads(big, 0);
    {
        /* the same through no cache, and a disabled cache */
        table *t;
        CHECK_RC(table_open(big_path, big_meta.file_size, NULL, &t), PL_OK);
        test_iteration(t);
        table_close(t);
        cache *off = cache_new(0);
        CHECK_RC(table_open(big_path, big_meta.file_size, off, &t), PL_OK);
        pl_buf out = {0};
        int bad = 0;
        for (uint32_t k = 0; k < NKEYS; k += 13)
            bad += check_get(t, 2 * k, 500000, &out, 0);
        CHECK_EQ(bad, 0);
        pl_buf_free(&out);
        table_close(t);
        cache_free(off);
    }
    test_threads();
    test_warm(c);
    if (!compress_mode) /* (forges raw blocks; test_compressed_damage has the compressed cases) */
        test_damage();
    test_edge_tables();
    test_faults(c);
    table_close(big);
    table_meta_free(&big_meta);
    unlink(big_path);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/pylsm_sst_XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 2;
    }
    vbuf = malloc(128 * 1024);
    kbuf = malloc(128 * 1024);
    make_model();

    test_lean_rejects_a_misplaced_restart();
    cache *c = cache_new(8 << 20);
    printf("-- tables with bloom filters\n");
    run_suite(c);
    pidx_mode = 1;
    printf("-- tables with point indexes\n");
    run_suite(c);
    lean_mode = 1;
    printf("-- lean tables with point indexes\n");
    run_suite(c);
    lean_mode = 0;
    compress_mode = COMPRESS_ZSTD;
    printf("-- tables with point indexes and compressed blocks\n");
    run_suite(c);
    cache_free(c);
    char p[512];
    static const char *names[] = {"empty.sst", "nofilter.sst", "damaged.sst", "small.sst",
                                  "fault_write.sst"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        path_of(p, names[i]);
        unlink(p);
    }
    CHECK_RC(rmdir(dir), 0);
    free(model);
    free(first);
    free(vbuf);
    free(kbuf);
    return test_report();
}
