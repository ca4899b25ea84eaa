/*
 * fuzz.h -- what the libFuzzer harnesses of tests/fuzz/ share (docs/testing.md, "Fuzzers"):
 *
 *  - FUZZ_CHECK: an invariant; a violation prints what broke and aborts, which libFuzzer reports as a
 *    crash and saves the input.  FUZZ_RC: a return code must be one of the listed PL_* codes.
 *  - A scratch directory per process (under /dev/shm when there is one), emptied between inputs and
 *    removed at exit, for the harnesses that feed bytes through real files.
 *  - CRC fix-ups: a harness input whose flag byte asks for it has the checksums of its WAL records,
 *    table blocks and footer recomputed before it is used, so that mutations reach the parsers behind
 *    the checksums (without them almost every mutation stops at the first CRC check).
 *  - fuzz_make_table: the small tables the manifest harness names and the corpus generator describes.
 *
 * Also compiled into tests/fuzz/gen_corpus.c (gcc, no libFuzzer): keep it plain C11.
 */
#ifndef PL_FUZZ_H
#define PL_FUZZ_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block.h"
#include "coding.h"
#include "compress.h"
#include "crc.h"
#include "ikey.h"
#include "pindex.h"
#include "pylsm.h"
#include "sstable.h"
#include "status.h"
#include "wal.h"

#define FUZZ_CHECK(cond, ...)                                                                  \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "%s:%d: invariant broken: %s: ", __FILE__, __LINE__, #cond);       \
            fprintf(stderr, __VA_ARGS__);                                                      \
            fprintf(stderr, " (last error: %s)\n", pl_errmsg());                               \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

/* rc (evaluated once) is one of the listed PL_* codes. */
#define FUZZ_CODES(...) fuzz_mask_of((int[]){__VA_ARGS__, -1})
#define FUZZ_RC(rc, ...) fuzz_check_rc((rc), FUZZ_CODES(__VA_ARGS__), __FILE__, __LINE__, #rc)
static inline unsigned fuzz_mask_of(const int *codes)
{
    unsigned m = 0;
    for (; *codes >= 0; codes++)
        m |= 1u << *codes;
    return m;
}
static inline int fuzz_check_rc(int rc, unsigned mask, const char *file, int line, const char *expr)
{
    if (rc < 0 || rc >= 32 || !(mask >> rc & 1u)) {
        fprintf(stderr, "%s:%d: invariant broken: %s gave the unexpected %s (%s)\n", file, line, expr,
                pl_code_name(rc), pl_errmsg());
        abort();
    }
    return rc;
}

/* Flag bits of the first input byte, where a harness has one. */
#define FUZZ_FIX_CRC 1

/* ---- the scratch directory ---- */

static char fuzz_dir_path[128];

static inline int fuzz_rm_entry(const char *dir, int keep_dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char p[512];
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            if (snprintf(p, sizeof p, "%s/%s", dir, e->d_name) >= (int)sizeof p)
                continue;
            struct stat st;
            if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
                fuzz_rm_entry(p, 0);
            else
                unlink(p);
        }
        closedir(d);
    }
    return keep_dir ? 0 : rmdir(dir);
}

static inline void fuzz_cleanup(void)
{
    if (fuzz_dir_path[0])
        fuzz_rm_entry(fuzz_dir_path, 0);
}

/* Remove the scratch directories of harness processes that died (a crash skips atexit). */
static inline void fuzz_remove_stale(const char *base)
{
    DIR *d = opendir(base);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        int pid;
        char p[512];
        if (sscanf(e->d_name, "pylsm-fuzz-%d", &pid) == 1 && pid > 0 && kill(pid, 0) != 0 && errno == ESRCH &&
            snprintf(p, sizeof p, "%s/%s", base, e->d_name) < (int)sizeof p)
            fuzz_rm_entry(p, 0);
    }
    if (d)
        closedir(d);
}

/* This process's scratch directory, created on first use and removed at exit. */
static inline const char *fuzz_dir(void)
{
    if (!fuzz_dir_path[0]) {
        struct stat st;
        const char *base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
        fuzz_remove_stale(base);
        snprintf(fuzz_dir_path, sizeof fuzz_dir_path, "%s/pylsm-fuzz-%d", base, (int)getpid());
        fuzz_rm_entry(fuzz_dir_path, 0);
        if (mkdir(fuzz_dir_path, 0755) != 0) {
            perror(fuzz_dir_path);
            abort();
        }
        atexit(fuzz_cleanup);
    }
    return fuzz_dir_path;
}

/* A subdirectory of the scratch directory, emptied (created when missing). */
static inline const char *fuzz_fresh_dir(const char *name)
{
    static char p[256];
    snprintf(p, sizeof p, "%s/%s", fuzz_dir(), name);
    fuzz_rm_entry(p, 1);
    mkdir(p, 0755);
    return p;
}

static inline void fuzz_write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    FUZZ_CHECK(fd >= 0, "cannot create %s: %s", path, strerror(errno));
    FUZZ_CHECK(len == 0 || write(fd, data, len) == (ssize_t)len, "cannot write %s", path);
    close(fd);
}

/* ---- CRC fix-ups ---- */

/* A file in the WAL framing (WALs, the manifest): the file header's CRC when its magic is there, and
 * every record's CRC up to the zero-filled tail or the first record that does not fit. */
static inline void fuzz_fix_wal(char *d, size_t n)
{
    if (n < WAL_FILE_HEADER)
        return;
    unsigned flags = 0;
    if (memcmp(d, WAL_MAGIC, 8) == 0) {
        put_u32(d + 12, crc_value(d, 12));
        flags = get_u32(d + 8);
    }
    size_t hdr = WAL_REC_HEADER + ((flags & WAL_FLAG_TIMESTAMP) ? 8 : 0);
    for (size_t off = WAL_FILE_HEADER; off + hdr <= n;) {
        char *p = d + off;
        uint64_t len = get_u32(p + 12);
        if (get_u64(p) == 0 || len > n - off - hdr)
            break;
        put_u32(p + 8, crc_extend(crc_value(p, 8), p + 12, hdr - 12 + (size_t)len));
        off += hdr + (size_t)len;
    }
}

/* The trailer of the block [off, off + size) of a table of n bytes, if it fits. */
static inline void fuzz_fix_block_trailer(char *d, size_t n, uint64_t off, uint64_t size)
{
    if (off > n || size > n - off || n - off - size < TABLE_BLOCK_TRAILER)
        return;
    char *t = d + off + size;
    uint32_t crc = crc_extend(crc_value(d + off, (size_t)size), t, 1);
    put_u32(t + 1, crc_mask(crc));
}

/* A table: every data block the index names, the filter and index blocks, the dictionary block, the
 * footer. */
static inline void fuzz_fix_table(char *d, size_t n)
{
    if (n < TABLE_FOOTER_SIZE)
        return;
    const char *f = d + n - TABLE_FOOTER_SIZE;
    uint64_t filter_off = get_u64(f), filter_size = get_u64(f + 8);
    uint64_t index_off = get_u64(f + 16), index_size = get_u64(f + 24);
    if (index_off <= n && index_size <= n - index_off) {
        char *index = malloc(index_size ? (size_t)index_size : 1);
        memcpy(index, d + index_off, (size_t)index_size);
        block_cursor c;
        block_cursor_init(&c, index, (size_t)index_size);
        for (block_cursor_seek_first(&c); block_cursor_valid(&c); block_cursor_next(&c)) {
            uint64_t off, size;
            const char *v = block_cursor_value(&c), *end = v + block_cursor_vlen(&c);
            if ((v = get_varint64(v, end, &off)) && get_varint64(v, end, &size))
                fuzz_fix_block_trailer(d, n, off, size);
        }
        block_cursor_free(&c);
        free(index);
    }
    if (filter_off <= n && filter_size <= n - filter_off && filter_size >= PINDEX_TAIL_BYTES) {
        /* a point index: its chunk CRCs and tail CRC first */
        char *tail = d + filter_off + filter_size - PINDEX_TAIL_BYTES;
        pindex_layout lay;
        if (pindex_is(tail + PINDEX_TAIL_BYTES - 1) &&
            pindex_parse_tail(tail, filter_off, filter_size, "fuzz", &lay) == PL_OK) {
            char *crcs = d + lay.crcs_off;
            for (uint32_t c = 0; c < lay.nchunks; c++)
                put_u32(crcs + 4 * (size_t)c,
                        crc_value(d + lay.buckets_off + (size_t)c * PINDEX_CHUNK_BUCKETS * PINDEX_BUCKET_BYTES,
                                  pindex_chunk_bytes(&lay, c)));
            put_u32(tail + 9, crc_value(crcs, (size_t)(lay.tail_off - lay.crcs_off) + 9));
        }
        pl_clear_error();
    }
    fuzz_fix_block_trailer(d, n, filter_off, filter_size);
    fuzz_fix_block_trailer(d, n, index_off, index_size);
    uint64_t doff, dsize; /* format 4: the dictionary block, before the filter */
    if (get_u32(f + 32) == TABLE_VERSION_DICT && filter_off <= n && table_dict_locate(d, filter_off, &doff, &dsize) == PL_OK)
        fuzz_fix_block_trailer(d, n, doff, dsize);
    char *foot = d + n - TABLE_FOOTER_SIZE;
    put_u32(foot + 36, crc_value(foot, 36));
}

/* ---- fixed tables ---- */

/* Table `k` (1..8) of the manifest harness, dir/00000k.sst: 20 + 7k entries of user keys "t<k>-<i>" at
 * LSNs 100k + i, every fourth a delete, with no filter, a bloom filter or a point index (k mod 3 = 0, 1,
 * 2), data blocks compressed from k = 9 on; *m describes it (table_meta_free it). */
static inline int fuzz_make_table(const char *dir, int k, table_meta *m)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%06d.sst", dir, k);
    table_builder *tb;
    int rc = table_builder_new(path, 256, k % 3 ? 10 : 0, &tb);
    if (rc)
        return rc;
    table_builder_set_point_index(tb, k % 3 == 2);
    if (k >= 9) /* (tables 9 and up: compressed blocks, lz4 for odd k, zstd for even) */
        table_builder_set_compression(tb, k % 2 ? COMPRESS_LZ4 : COMPRESS_ZSTD);
    for (int i = 0; i < 20 + 7 * k && !rc; i++) {
        char key[32];
        int kl = snprintf(key, sizeof key, "t%d-%03d", k, i);
        int kind = i % 4 == 3 ? KIND_DELETE : KIND_PUT;
        put_u64(key + kl, ikey_pack((uint64_t)(100 * k + i), kind));
        rc = table_builder_add(tb, key, (size_t)kl + 8, kind == KIND_PUT ? key : "", kind == KIND_PUT ? (size_t)kl : 0);
    }
    if (rc) {
        table_builder_abandon(tb);
        return rc;
    }
    return table_builder_finish(tb, m);
}

#endif
