/* test_manifest.c -- the manifest (manifest.h): a whole state written and read back, edits appended,
 * a manifest built by hand from docs/format.md's grammar (as an older release wrote it) read, a torn
 * last edit left out, records that do not follow on, malformed and incomplete manifests, and a
 * manifest_create failing at each of its I/O calls. */
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "coding.h"
#include "env.h"
#include "filename.h"
#include "ikey.h"
#include "manifest.h"
#include "status.h"
#include "testutil.h"
#include "version.h"
#include "wal.h"

/* ---- tables as a manifest names them (no file behind them) ---- */

static file_meta *fake_table(uint64_t number, const char *lo, const char *hi, uint64_t min_lsn, uint64_t max_lsn)
{
    file_meta *f = calloc(1, sizeof *f);
    f->number = number;
    atomic_init(&f->refs, 1);
    f->m.file_size = 4096 + number;
    f->m.entries = 10 * number;
    f->m.deletes = number;
    f->m.min_lsn = min_lsn;
    f->m.max_lsn = max_lsn;
    f->m.smallest_len = strlen(lo) + IKEY_TRAILER;
    f->m.smallest = malloc(f->m.smallest_len);
    ikey_build(f->m.smallest, lo, strlen(lo), max_lsn, KIND_PUT);
    f->m.largest_len = strlen(hi) + IKEY_TRAILER;
    f->m.largest = malloc(f->m.largest_len);
    ikey_build(f->m.largest, hi, strlen(hi), min_lsn, KIND_DELETE);
    return f;
}

/* Add a fake table to e at level (the edit takes its own reference). */
static void add(version_edit *e, int level, uint64_t number, const char *lo, const char *hi, uint64_t min_lsn,
                uint64_t max_lsn)
{
    file_meta *f = fake_table(number, lo, hi, min_lsn, max_lsn);
    CHECK_RC(edit_add_file(e, level, f), PL_OK);
    file_unref(f);
}

static void whole_state(version_edit *e, uint64_t log_number, uint64_t next_file, uint64_t last_lsn)
{
    e->has_log_number = e->has_next_file = e->has_last_lsn = 1;
    e->log_number = log_number;
    e->next_file = next_file;
    e->last_lsn = last_lsn;
}

/* Does s name table number at level, with the meta fake_table gave it? */
static int has_table(const manifest_state *s, int level, uint64_t number, const char *lo, const char *hi,
                     uint64_t min_lsn, uint64_t max_lsn)
{
    file_meta *want = fake_table(number, lo, hi, min_lsn, max_lsn);
    int found = 0;
    for (int i = 0; i < s->n; i++) {
        const manifest_file *f = &s->files[i];
        if (f->number != number)
            continue;
        const table_meta *m = &f->m, *w = &want->m;
        found = f->level == level && m->file_size == w->file_size && m->entries == w->entries &&
                m->deletes == w->deletes && m->min_lsn == w->min_lsn && m->max_lsn == w->max_lsn &&
                m->smallest_len == w->smallest_len && memcmp(m->smallest, w->smallest, w->smallest_len) == 0 &&
                m->largest_len == w->largest_len && memcmp(m->largest, w->largest, w->largest_len) == 0;
    }
    file_unref(want);
    return found;
}

static uint64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static char *manifest_path(const char *dir, uint64_t number)
{
    char name[FILE_NAME_MAX];
    file_base_name(name, number, FILE_MANIFEST);
    return tu_path(dir, name);
}

/* ---- tests ---- */

/* A whole state written (as repair and checkpoints write it) reads back as it was, in the format's
 * bytes: a WAL file header, then one record whose payload begins with u32 1. */
static void test_round_trip(const char *dir)
{
    CHECK_RC(env_mkdir(dir), PL_OK);
    version_edit e;
    edit_init(&e);
    whole_state(&e, 7, 100, 555);
    add(&e, 0, 11, "a", "m", 1, 40);
    add(&e, 0, 12, "c", "z", 41, 90);
    add(&e, 1, 13, "", "b\xff", 5, 500);
    add(&e, 3, 14, "q", "q", 2, 3);
    int renamed = 0;
    CHECK_RC(manifest_create(dir, 9, 1, &e, NULL, NULL, &renamed), PL_OK);
    CHECK_EQ(renamed, 1);
    edit_free(&e);
    uint64_t n = 0;
    CHECK_RC(read_current(dir, &n), PL_OK);
    CHECK_EQ(n, 9);

    manifest_state s = {0};
    CHECK_RC(manifest_load(dir, &s, &n), PL_OK);
    CHECK_EQ(n, 9);
    CHECK(s.has_log_number && s.has_next_file && s.has_last_lsn);
    CHECK_EQ(s.log_number, 7);
    CHECK_EQ(s.next_file, 100);
    CHECK_EQ(s.last_lsn, 555);
    CHECK_EQ(s.n, 4);
    CHECK(has_table(&s, 0, 11, "a", "m", 1, 40));
    CHECK(has_table(&s, 0, 12, "c", "z", 41, 90));
    CHECK(has_table(&s, 1, 13, "", "b\xff", 5, 500));
    CHECK(has_table(&s, 3, 14, "q", "q", 2, 3));
    manifest_state_free(&s);

    char *d;
    size_t len;
    CHECK_RC(env_read_file(manifest_path(dir, 9), &d, &len), PL_OK);
    unsigned flags = 99;
    CHECK(len > WAL_FILE_HEADER + WAL_REC_HEADER + 4 && wal_header_ok(d, len, &flags) && flags == 0);
    CHECK_EQ(get_u64(d + WAL_FILE_HEADER), 1);                   /* the record's LSN: its sequence */
    CHECK_EQ(get_u32(d + WAL_FILE_HEADER + 12), len - WAL_FILE_HEADER - WAL_REC_HEADER);
    CHECK_EQ(get_u32(d + WAL_FILE_HEADER + WAL_REC_HEADER), 1);  /* the u32 1 is still written */
    free(d);
    tu_rm_rf(dir);
}

/* The live manifest: created open, then edits appended one sequence number apart, from wherever the
 * first record's number starts (a rolled manifest goes on from the last edit's). */
static void test_append(const char *dir)
{
    CHECK_RC(env_mkdir(dir), PL_OK);
    version_edit e;
    edit_init(&e);
    whole_state(&e, 3, 20, 70);
    add(&e, 0, 5, "a", "k", 1, 30);
    add(&e, 0, 6, "b", "p", 31, 70);
    int fd = -1, renamed = 0;
    uint64_t bytes = 0;
    CHECK_RC(manifest_create(dir, 19, 57, &e, &fd, &bytes, &renamed), PL_OK);
    edit_free(&e);
    CHECK(fd >= 0 && renamed);
    CHECK_EQ(bytes, file_size(manifest_path(dir, 19)));

    /* a compaction: the two L0 tables out, one L1 table in */
    edit_init(&e);
    CHECK_RC(edit_delete_file(&e, 0, 5), PL_OK);
    CHECK_RC(edit_delete_file(&e, 0, 6), PL_OK);
    add(&e, 1, 21, "a", "p", 1, 70);
    e.has_next_file = 1;
    e.next_file = 22;
    CHECK_RC(manifest_append(dir, 19, fd, &bytes, 58, &e), PL_OK);
    edit_free(&e);
    CHECK_EQ(bytes, file_size(manifest_path(dir, 19)));
    /* a flush: a table and the log bookkeeping */
    edit_init(&e);
    add(&e, 0, 23, "x", "y", 71, 80);
    e.has_log_number = e.has_last_lsn = 1;
    e.log_number = 22;
    e.last_lsn = 80;
    CHECK_RC(manifest_append(dir, 19, fd, &bytes, 59, &e), PL_OK);
    edit_free(&e);
    CHECK_EQ(bytes, file_size(manifest_path(dir, 19)));
    env_close(fd);

    manifest_state s = {0};
    uint64_t n = 0;
    CHECK_RC(manifest_load(dir, &s, &n), PL_OK);
    CHECK_EQ(n, 19);
    CHECK_EQ(s.log_number, 22);
    CHECK_EQ(s.next_file, 22);
    CHECK_EQ(s.last_lsn, 80);
    CHECK_EQ(s.n, 2);
    CHECK(has_table(&s, 1, 21, "a", "p", 1, 70));
    CHECK(has_table(&s, 0, 23, "x", "y", 71, 80));
    manifest_state_free(&s);

    /* The last edit torn (a crash before its fsync returned): left out. */
    uint64_t whole = bytes;
    CHECK(truncate(manifest_path(dir, 19), (off_t)(whole - 5)) == 0);
    memset(&s, 0, sizeof s);
    CHECK_RC(manifest_load(dir, &s, &n), PL_OK);
    CHECK_EQ(s.last_lsn, 70);
    CHECK_EQ(s.n, 1);
    CHECK(has_table(&s, 1, 21, "a", "p", 1, 70));
    manifest_state_free(&s);
    tu_rm_rf(dir);
}

/* Edits are numbered one apart: a record that skips a number does not follow on.  Alone at the end
 * it reads as a torn tail (dropped); with an intact record after it, the manifest is corrupt. */
static void test_records_follow_on(const char *dir)
{
    CHECK_RC(env_mkdir(dir), PL_OK);
    version_edit e;
    edit_init(&e);
    whole_state(&e, 1, 10, 5);
    int fd;
    uint64_t bytes;
    CHECK_RC(manifest_create(dir, 9, 1, &e, &fd, &bytes, NULL), PL_OK);
    edit_free(&e);
    edit_init(&e);
    e.has_last_lsn = 1;
    e.last_lsn = 6;
    CHECK_RC(manifest_append(dir, 9, fd, &bytes, 3, &e), PL_OK); /* 2 skipped */
    manifest_state s = {0};
    uint64_t n;
    CHECK_RC(manifest_load(dir, &s, &n), PL_OK);
    CHECK_EQ(s.last_lsn, 5);
    manifest_state_free(&s);
    e.last_lsn = 7;
    CHECK_RC(manifest_append(dir, 9, fd, &bytes, 4, &e), PL_OK);
    edit_free(&e);
    memset(&s, 0, sizeof s);
    CHECK_RC(manifest_load(dir, &s, &n), PL_CORRUPT);
    CHECK(strstr(pl_errmsg(), "MANIFEST-000009: damaged WAL record at offset") != NULL);
    manifest_state_free(&s);
    env_close(fd);
    tu_rm_rf(dir);
}

/* Write a manifest by hand, field by field as docs/format.md gives them (the bytes an older release
 * wrote), then CURRENT naming it.  fields[i], lens[i]: the tagged fields of edit i, after its u32 1. */
static void write_by_hand(const char *dir, uint64_t number, const char *const *fields, const size_t *lens, int n)
{
    char buf[4096];
    size_t off = WAL_FILE_HEADER;
    wal_encode_file_header(buf, 0);
    for (int i = 0; i < n; i++) {
        char payload[512];
        put_u32(payload, 1);
        memcpy(payload + 4, fields[i], lens[i]);
        off += wal_encode(buf + off, 0, (uint64_t)i + 1, 0, payload, 4 + lens[i]);
    }
    CHECK_RC(env_write_file(manifest_path(dir, number), buf, off), PL_OK);
    int renamed;
    CHECK_RC(set_current(dir, number, &renamed), PL_OK);
}

/* The fields of an edit adding a table: tag 4, level, number, size, entries, deletes, LSNs, keys. */
static size_t add_fields(char *p, int level, uint64_t number, const char *lo, const char *hi, uint64_t min_lsn,
                         uint64_t max_lsn)
{
    file_meta *f = fake_table(number, lo, hi, min_lsn, max_lsn);
    char *s = p;
    *p++ = 4;
    p = put_varint64(p, (uint64_t)level);
    p = put_varint64(p, number);
    p = put_varint64(p, f->m.file_size);
    p = put_varint64(p, f->m.entries);
    p = put_varint64(p, f->m.deletes);
    p = put_varint64(p, min_lsn);
    p = put_varint64(p, max_lsn);
    p = put_varint64(p, f->m.smallest_len);
    memcpy(p, f->m.smallest, f->m.smallest_len);
    p += f->m.smallest_len;
    p = put_varint64(p, f->m.largest_len);
    memcpy(p, f->m.largest, f->m.largest_len);
    p += f->m.largest_len;
    file_unref(f);
    return (size_t)(p - s);
}

static void test_written_by_hand(const char *dir)
{
    CHECK_RC(env_mkdir(dir), PL_OK);
    char e1[256], e2[256], e3[256];
    size_t n1 = 0, n2 = 0, n3 = 0;
    /* edit 1: the bookkeeping and two tables; edit 2: one removed; edit 3: the last LSN raised */
    e1[n1++] = 1;
    n1 = (size_t)(put_varint64(e1 + n1, 4) - e1);
    e1[n1++] = 2;
    n1 = (size_t)(put_varint64(e1 + n1, 300) - e1);
    e1[n1++] = 3;
    n1 = (size_t)(put_varint64(e1 + n1, 1000) - e1);
    n1 += add_fields(e1 + n1, 2, 250, "d", "f", 10, 20);
    n1 += add_fields(e1 + n1, 2, 251, "g", "h", 21, 999);
    e2[n2++] = 5;
    n2 = (size_t)(put_varint64(e2 + n2, 2) - e2);
    n2 = (size_t)(put_varint64(e2 + n2, 250) - e2);
    e3[n3++] = 3;
    n3 = (size_t)(put_varint64(e3 + n3, 2000) - e3);
    const char *fields[] = {e1, e2, e3};
    size_t lens[] = {n1, n2, n3};
    write_by_hand(dir, 260, fields, lens, 3);
    manifest_state s = {0};
    uint64_t n;
    CHECK_RC(manifest_load(dir, &s, &n), PL_OK);
    CHECK_EQ(n, 260);
    CHECK_EQ(s.log_number, 4);
    CHECK_EQ(s.next_file, 300);
    CHECK_EQ(s.last_lsn, 2000);
    CHECK_EQ(s.n, 1);
    CHECK(has_table(&s, 2, 251, "g", "h", 21, 999));
    manifest_state_free(&s);

    /* Without a last LSN the state is incomplete; an unknown tag is a malformed edit. */
    lens[0] = 5; /* the log number (tag 1, 1 byte) and the next file (tag 2, 2 bytes) only */
    write_by_hand(dir, 262, fields, lens, 1);
    memset(&s, 0, sizeof s);
    CHECK_RC(manifest_load(dir, &s, &n), PL_CORRUPT);
    CHECK(strstr(pl_errmsg(), "MANIFEST-000262: incomplete manifest at offset") != NULL);
    manifest_state_free(&s);
    char bad[] = {9, 1};
    const char *badf[] = {e1, bad};
    size_t badl[] = {n1, sizeof bad};
    write_by_hand(dir, 263, badf, badl, 2);
    memset(&s, 0, sizeof s);
    CHECK_RC(manifest_load(dir, &s, &n), PL_CORRUPT);
    CHECK(strstr(pl_errmsg(), "MANIFEST-000263: malformed version edit 2") != NULL);
    manifest_state_free(&s);

    /* No CURRENT: no manifest. */
    CHECK(unlink(tu_path(dir, "CURRENT")) == 0);
    memset(&s, 0, sizeof s);
    CHECK_RC(manifest_load(dir, &s, &n), PL_NOTFOUND);
    CHECK_EQ(s.n, 0);
    tu_rm_rf(dir);
}

/* manifest_create wants a whole state, numbered below its next file. */
static void test_invalid(const char *dir)
{
    CHECK_RC(env_mkdir(dir), PL_OK);
    version_edit e;
    edit_init(&e);
    e.has_log_number = e.has_next_file = 1;
    e.next_file = 50;
    int fd = 5, renamed = 5;
    CHECK_RC(manifest_create(dir, 9, 1, &e, &fd, NULL, &renamed), PL_INVALID);
    CHECK(fd == -1 && renamed == 0);
    whole_state(&e, 1, 9, 1);
    CHECK_RC(manifest_create(dir, 9, 1, &e, NULL, NULL, NULL), PL_INVALID);
    CHECK(!tu_exists(manifest_path(dir, 9)) && !tu_exists(tu_path(dir, "CURRENT")));
    edit_free(&e);
    tu_rm_rf(dir);
}

/* Every I/O call of a manifest_create failing in turn, over a database whose CURRENT names
 * MANIFEST-9: either CURRENT still names 9 and the new manifest is gone, or CURRENT may name the new
 * one (*renamed) and it is kept (open in *fd when asked for).  Both ways it loads. */
static void test_create_failures(const char *dir)
{
    int failures = 0, kept = 0, ok = 0;
    for (int keep_open = 0; keep_open < 2; keep_open++) {
        int ok_here = 0; /* past the calls of a create, every one succeeds: two of those end the sweep */
        for (long nth = 1; nth < 40 && ok_here < 2; nth++) {
            tu_rm_rf(dir);
            CHECK_RC(env_mkdir(dir), PL_OK);
            version_edit e;
            edit_init(&e);
            whole_state(&e, 1, 10, 5);
            CHECK_RC(manifest_create(dir, 9, 1, &e, NULL, NULL, NULL), PL_OK);
            edit_free(&e);
            edit_init(&e);
            whole_state(&e, 2, 13, 8);
            add(&e, 0, 11, "a", "b", 6, 8);
            int fd = -2, renamed = -1;
            uint64_t bytes = 0;
            env_fault_set(ENV_OP_ALL, nth, EIO, 0);
            int rc = manifest_create(dir, 12, 2, &e, keep_open ? &fd : NULL, &bytes, &renamed);
            env_fault_clear();
            edit_free(&e);
            manifest_state s = {0};
            uint64_t n = 0;
            CHECK_RC(manifest_load(dir, &s, &n), PL_OK);
            if (rc == PL_OK) {
                ok++;
                ok_here++;
                CHECK(renamed == 1 && n == 12 && s.last_lsn == 8);
                CHECK(keep_open ? fd >= 0 && bytes == file_size(manifest_path(dir, 12)) : fd == -2);
            } else {
                failures++;
                CHECK_RC(rc, PL_IOERR);
                if (renamed) {
                    kept++;
                    CHECK(tu_exists(manifest_path(dir, 12)));
                    CHECK(keep_open ? fd >= 0 : fd == -2);
                    CHECK(n == 12 && s.last_lsn == 8);
                } else {
                    CHECK(!tu_exists(manifest_path(dir, 12)));
                    CHECK(keep_open ? fd == -1 : fd == -2);
                    CHECK(n == 9 && s.last_lsn == 5);
                }
                CHECK(!tu_exists(tu_path(dir, "CURRENT.tmp")));
            }
            if (fd >= 0)
                env_close(fd);
            manifest_state_free(&s);
        }
    }
    CHECK(failures >= 6); /* open, write, sync, directory sync, CURRENT's writes ... */
    CHECK(kept >= 2);     /* the directory sync after CURRENT's rename, each way */
    CHECK_EQ(ok, 4);
    tu_rm_rf(dir);
}

int main(void)
{
    char base[128], dir[160];
    snprintf(base, sizeof base, "/tmp/pylsm-test-manifest-%d", (int)getpid());
    tu_rm_rf(base);
    mkdir(base, 0755);
    snprintf(dir, sizeof dir, "%s/round", base);
    test_round_trip(dir);
    snprintf(dir, sizeof dir, "%s/append", base);
    test_append(dir);
    snprintf(dir, sizeof dir, "%s/follow", base);
    test_records_follow_on(dir);
    snprintf(dir, sizeof dir, "%s/hand", base);
    test_written_by_hand(dir);
    snprintf(dir, sizeof dir, "%s/invalid", base);
    test_invalid(dir);
    snprintf(dir, sizeof dir, "%s/faults", base);
    test_create_failures(dir);
    tu_rm_rf(base);
    return test_report();
}
