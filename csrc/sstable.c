/* sstable.c -- the table writer and reader; see sstable.h and docs/format.md, "SSTable". */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "sstable.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block.h"
#include "bloom.h"
#include "buf.h"
#include "coding.h"
#include "crc.h"
#include "env.h"
#include "compress.h"
#include "ikey.h"
#include "memtable.h" /* buf_reserve, buf_set */
#include "pindex.h"
#include "status.h"

#define CACHE_ENTRY_OVERHEAD 96 /* charge for a cached block beyond its bytes */
#define COMPRESSED_RESTART_INTERVAL 16 /* data blocks of compressed tables (LevelDB's and RocksDB's) */

typedef unsigned long long ull;

/* ---- shared helpers ---- */

/* The trailer of `block` (n bytes) of the given type. */
static void block_trailer(char t[TABLE_BLOCK_TRAILER], const char *block, size_t n, int type)
{
    t[0] = (char)type;
    uint32_t crc = crc_extend(crc_value(block, n), t, 1);
    put_u32(t + 1, crc_mask(crc));
}

int table_decode_handle(const char *v, size_t n, uint64_t *off, uint64_t *size)
{
    const char *end = v + n;
    const char *p = get_varint64(v, end, off);
    if (!p || !(p = get_varint64(p, end, size)) || p != end)
        return PL_CORRUPT;
    return PL_OK;
}

int table_data_handle_fits(uint64_t off, uint64_t size, uint64_t data_end)
{
    return size <= data_end && off <= data_end - size && data_end - size - off >= TABLE_BLOCK_TRAILER;
}

/* A trailer type a block may have: raw; with codecs, a codec's (compress.h); with codecs >= 2 (format
 * 4), also zstd with the table's dictionary. */
static int trailer_type_ok(unsigned type, int codecs)
{
    return type == TABLE_BLOCK_RAW || (codecs && type <= COMPRESS_MAX) || (codecs >= 2 && type == COMPRESS_ZSTD_DICT);
}

int table_dict_handle(uint32_t dict_len, uint64_t filter_off, uint64_t *off, uint64_t *size)
{
    uint64_t n = (uint64_t)dict_len + 4;
    if (dict_len > TABLE_DICT_MAX_BYTES || filter_off < n + TABLE_BLOCK_TRAILER)
        return PL_CORRUPT;
    *off = filter_off - TABLE_BLOCK_TRAILER - n;
    *size = n;
    return PL_OK;
}

int table_dict_locate(const char *file, uint64_t filter_off, uint64_t *off, uint64_t *size)
{
    if (filter_off < 4 + TABLE_BLOCK_TRAILER)
        return PL_CORRUPT;
    return table_dict_handle(get_u32(file + filter_off - TABLE_BLOCK_TRAILER - 4), filter_off, off, size);
}

int table_trailer_matches(const char *t, uint32_t block_crc, int codecs)
{
    return trailer_type_ok((unsigned char)t[0], codecs) && crc_unmask(get_u32(t + 1)) == crc_extend(block_crc, t, 1);
}

int table_check_trailer(const char *blk, size_t n, int codecs, const char *path, uint64_t off)
{
    unsigned type = (unsigned char)blk[n];
    if (!trailer_type_ok(type, codecs))
        return PL_FAIL(PL_CORRUPT, "%s: block at offset %llu: unknown block type %u", path, (ull)off, type);
    if (!table_trailer_matches(blk + n, crc_value(blk, n), codecs))
        return PL_FAIL(PL_CORRUPT, "%s: block at offset %llu (%zu bytes): checksum mismatch", path, (ull)off, n);
    return PL_OK;
}

int table_footer_decode(const char *f, uint64_t file_size, const char *path, table_footer *out)
{
    uint64_t foot = file_size - TABLE_FOOTER_SIZE;
    if (get_u64(f + 40) != TABLE_MAGIC)
        return PL_FAIL(PL_CORRUPT, "%s: footer at offset %llu: bad magic number (not a table, or "
                       "truncated)", path, (ull)foot);
    if (get_u32(f + 36) != crc_value(f, 36))
        return PL_FAIL(PL_CORRUPT, "%s: footer at offset %llu: checksum mismatch", path, (ull)foot);
    uint32_t version = get_u32(f + 32);
    if (version < TABLE_VERSION_MIN || version > TABLE_VERSION_MAX)
        return PL_FAIL(PL_CORRUPT, "%s: footer at offset %llu: unsupported format version %u", path,
                       (ull)foot, version);
    uint64_t filter_off = get_u64(f), filter_size = get_u64(f + 8);
    uint64_t index_off = get_u64(f + 16), index_size = get_u64(f + 24);
    /* filter block, then index block, then the footer, each block with its trailer, no gaps */
    if (index_size > foot || foot - index_size - index_off != TABLE_BLOCK_TRAILER || index_off > foot ||
        filter_size > index_off || index_off - filter_size - filter_off != TABLE_BLOCK_TRAILER ||
        filter_off > index_off)
        return PL_FAIL(PL_CORRUPT, "%s: footer at offset %llu: block handles (filter %llu+%llu, index "
                       "%llu+%llu) do not fit the file of %llu bytes", path, (ull)foot, (ull)filter_off,
                       (ull)filter_size, (ull)index_off, (ull)index_size, (ull)file_size);
    out->filter_off = filter_off;
    out->filter_size = filter_size;
    out->index_off = index_off;
    out->index_size = index_size;
    out->version = version;
    return PL_OK;
}

/* Remove path (best effort) without letting a failure replace the thread's error message. */
static void unlink_keep_error(const char *path)
{
    pl_error_state saved;
    pl_error_save(&saved);
    if (env_unlink(path) != PL_OK)
        pl_error_restore(&saved, PL_IOERR);
}

void table_meta_free(table_meta *m)
{
    if (!m)
        return;
    free(m->smallest);
    free(m->largest);
    memset(m, 0, sizeof *m);
}

static char *dup_bytes(const char *p, size_t n)
{
    char *d = malloc(n ? n : 1);
    if (d && n)
        memcpy(d, p, n);
    return d;
}

int table_meta_copy(table_meta *dst, const table_meta *src)
{
    *dst = *src;
    dst->smallest = dst->largest = NULL;
    if ((src->smallest && !(dst->smallest = dup_bytes(src->smallest, src->smallest_len))) ||
        (src->largest && !(dst->largest = dup_bytes(src->largest, src->largest_len)))) {
        table_meta_free(dst);
        return PL_FAIL(PL_NOMEM, "out of memory (table meta)");
    }
    return PL_OK;
}

/* ---- writing ---- */

struct table_builder {
    char *path;
    int fd;
    size_t block_bytes;
    int bits_per_key;
    block_builder data;
    block_builder index;
    char *wbuf;         /* bytes not yet handed to write(2): wlen of wcap (the piece), from big_alloc */
    size_t wlen, wcap;
    uint64_t offset;    /* file bytes so far, buffered ones included */
    uint64_t written;   /* file bytes handed to write(2) */
    uint64_t wb_from;   /* where the writeback not yet started begins (TABLE_WRITEBACK_BYTES) */
    pl_buf last;        /* the last key added */
    pl_buf smallest;    /* the first key added */
    pl_buf sep;         /* scratch: index keys */
    uint32_t *hashes;   /* bloom hashes of the distinct user keys */
    size_t nhash, caphash;
    int point_index;    /* write a point index (pindex.h), the bloom filter in its tail */
    int pidx_ok;        /* every key's place fits a slot so far */
    uint64_t *locs;     /* with point_index: each distinct user key's slot, beside hashes */
    size_t caplocs;
    uint64_t nblocks;   /* data blocks flushed */
    int pending;        /* the last data block's index entry waits for the next key */
    uint64_t pending_off, pending_size;
    uint64_t entries, deletes, min_lsn, max_lsn;
    int codec;          /* COMPRESS_*: data blocks compressed with it where that pays */
    pl_buf packed;      /* scratch: a compressed block */
    /* zstd: the dictionary (TABLE_DICT_*), trained once the samples are in */
    pl_buf samples;     /* the raw data blocks so far, until the dictionary is trained */
    pl_buf dict_bytes;  /* the trained dictionary, stored at finish */
    compress_dict *dict;
    int dict_tried;     /* trained (or found none): the samples are no longer kept */
    uint64_t dict_blocks; /* blocks compressed with it (none: the table is stored without it) */
    int rc;             /* sticky failure */
};

int table_builder_new(const char *path, size_t block_bytes, int bloom_bits_per_key, table_builder **out)
{
    if (block_bytes < 1 || block_bytes > BLOCK_MAX_BYTES / 2)
        return PL_FAIL(PL_INVALID, "%s: block size %zu out of range", path, block_bytes);
    if (bloom_bits_per_key < 0 || bloom_bits_per_key > 1000)
        return PL_FAIL(PL_INVALID, "%s: bloom bits per key %d out of range", path, bloom_bits_per_key);
    int rc = PL_OK;
    table_builder *tb = calloc(1, sizeof *tb);
    if (!tb)
        return PL_FAIL(PL_NOMEM, "out of memory (table builder)");
    tb->fd = -1;
    tb->block_bytes = block_bytes;
    tb->bits_per_key = bloom_bits_per_key;
    tb->pidx_ok = 1;
    block_builder_init(&tb->data, BLOCK_RESTART_INTERVAL);
    block_builder_set_hash(&tb->data);
    block_builder_init(&tb->index, TABLE_INDEX_RESTART_INTERVAL);
    tb->path = strdup(path);
    if (!tb->path) {
        rc = PL_FAIL(PL_NOMEM, "out of memory (table builder)");
        goto out;
    }
    if (!(tb->wbuf = big_alloc(TABLE_WRITE_BUFFER))) {
        rc = PL_FAIL(PL_NOMEM, "out of memory (table builder)");
        goto out;
    }
    tb->wcap = TABLE_WRITE_BUFFER;
    rc = env_open(path, O_WRONLY | O_CREAT | O_TRUNC, &tb->fd);
out:
    if (rc) {
        block_builder_free(&tb->data);
        block_builder_free(&tb->index);
        big_free(tb->wbuf, tb->wcap);
        free(tb->path);
        free(tb);
        return rc;
    }
    *out = tb;
    return PL_OK;
}

/* n more bytes were written: start the writeback of each TABLE_WRITEBACK_BYTES as it fills, so that
 * the disk writes the table while it is built and the sync at its end waits for little (RocksDB's
 * bytes_per_sync; docs/decisions.md, item 17). */
static void written(table_builder *tb, size_t n)
{
    tb->written += n;
    if (tb->written - tb->wb_from >= TABLE_WRITEBACK_BYTES) {
        env_start_writeback(tb->fd, tb->wb_from, tb->written - tb->wb_from);
        tb->wb_from = tb->written;
    }
}

static int flush_wbuf(table_builder *tb)
{
    if (!tb->wlen)
        return PL_OK;
    int rc = env_write(tb->fd, tb->wbuf, tb->wlen, tb->path);
    if (!rc)
        written(tb, tb->wlen);
    tb->wlen = 0;
    return rc;
}

/* Every write(2) but a table's last is one piece (wcap bytes) at a multiple of it. */
static int append(table_builder *tb, const char *p, size_t n)
{
    int rc = PL_OK;
    while (n && !rc) {
        size_t take = tb->wcap - tb->wlen < n ? tb->wcap - tb->wlen : n;
        memcpy(tb->wbuf + tb->wlen, p, take);
        tb->wlen += take;
        tb->offset += take;
        p += take;
        n -= take;
        if (tb->wlen == tb->wcap)
            rc = flush_wbuf(tb);
    }
    return rc;
}

/* Write a block and its trailer (of the given type: the block is stored as given); *off and *size make
 * its handle. */
static int write_typed_block(table_builder *tb, const char *block, size_t n, int type, uint64_t *off,
                             uint64_t *size)
{
    char t[TABLE_BLOCK_TRAILER];
    block_trailer(t, block, n, type);
    *off = tb->offset;
    *size = n;
    int rc = append(tb, block, n);
    if (!rc)
        rc = append(tb, t, sizeof t);
    return rc;
}

static int write_block(table_builder *tb, const char *block, size_t n, uint64_t *off, uint64_t *size)
{
    return write_typed_block(tb, block, n, TABLE_BLOCK_RAW, off, size);
}

uint64_t table_dict_sample_bytes = TABLE_DICT_SAMPLE_BYTES;

/* The samples are in: train the dictionary; with one, the next blocks are small and use it. */
static int start_dict(table_builder *tb)
{
    tb->dict_tried = 1;
    size_t n = tb->samples.len < table_dict_sample_bytes ? tb->samples.len : (size_t)table_dict_sample_bytes;
    int rc = compress_train(tb->samples.data, n, TABLE_DICT_BLOCK_BYTES, TABLE_DICT_MAX_BYTES, &tb->dict_bytes);
    pl_buf_free(&tb->samples);
    if (rc || !tb->dict_bytes.len)
        return rc;
    if ((rc = compress_dict_new(tb->dict_bytes.data, tb->dict_bytes.len, 1, &tb->dict)) != PL_OK) {
        tb->dict_bytes.len = 0; /* refused (not seen from zstd's own trainer): the table goes on without */
        return rc == PL_CORRUPT ? PL_OK : rc;
    }
    if (tb->block_bytes > TABLE_DICT_BLOCK_BYTES)
        tb->block_bytes = TABLE_DICT_BLOCK_BYTES;
    return PL_OK;
}

static int flush_data_block(table_builder *tb)
{
    const char *d, *raw;
    size_t n, raw_n;
    int rc = block_builder_finish(&tb->data, &d, &n), type = TABLE_BLOCK_RAW;
    raw = d;
    raw_n = n;
    if (!rc && tb->codec != COMPRESS_NONE) {
        int pays = 0;
        rc = tb->dict ? compress_block_dict(tb->dict, d, n, &tb->packed, &pays)
                      : compress_block(tb->codec, d, n, &tb->packed, &pays);
        if (!rc && pays) {
            d = tb->packed.data;
            n = tb->packed.len;
            type = tb->dict ? COMPRESS_ZSTD_DICT : tb->codec;
            tb->dict_blocks += tb->dict != NULL;
        }
    }
    if (!rc)
        rc = write_typed_block(tb, d, n, type, &tb->pending_off, &tb->pending_size);
    if (!rc && tb->codec == COMPRESS_ZSTD && !tb->dict_tried) {
        rc = buf_append(&tb->samples, raw, raw_n);
        if (!rc && tb->samples.len >= table_dict_sample_bytes)
            rc = start_dict(tb);
    }
    if (rc)
        return rc;
    block_builder_reset(&tb->data);
    tb->nblocks++;
    tb->pending = 1;
    return PL_OK;
}

/* Into tb->sep: an internal key >= a and < b, as short as is easy (b == NULL: a itself).  Where the
 * user keys first differ (a[i] < b[i]), cut a right after the first byte j >= i that can be raised by
 * one and stay below b: j = i when a[i] + 1 < b[i], else the first byte after i below 0xff (raising it
 * keeps the prefix a[0..i] < b[0..i]).  The result is that user key with the largest trailer, so it
 * sorts after a and before every version of any user key >= b. */
static int make_separator(table_builder *tb, const char *a, size_t an, const char *b, size_t bn)
{
    if (b) {
        const unsigned char *ua = (const unsigned char *)a, *ub = (const unsigned char *)b;
        size_t al = an - IKEY_TRAILER, bl = bn - IKEY_TRAILER, m = al < bl ? al : bl, i = 0;
        while (i < m && ua[i] == ub[i])
            i++;
        if (i < m && ua[i] < ub[i]) {
            size_t j = i;
            if (ua[i] + 1 >= ub[i])
                for (j = i + 1; j < al && ua[j] == 0xff; j++)
                    ;
            if (j + 1 < al) { /* shorter than a */
                int rc = buf_reserve(&tb->sep, j + 1 + IKEY_TRAILER);
                if (rc)
                    return rc;
                memcpy(tb->sep.data, a, j);
                tb->sep.data[j] = (char)(ua[j] + 1);
                put_u64(tb->sep.data + j + 1, ikey_pack(LSN_MAX, KIND_SEEK));
                tb->sep.len = j + 1 + IKEY_TRAILER;
                return PL_OK;
            }
        }
    }
    return buf_set(&tb->sep, a, an);
}

/* Add the index entry of the pending data block, separating it from `next` (NULL: the last block). */
static int add_pending_index(table_builder *tb, const char *next, size_t nn)
{
    int rc = make_separator(tb, tb->last.data, tb->last.len, next, nn);
    if (rc)
        return rc;
    char h[2 * VARINT64_MAX];
    char *p = put_varint64(h, tb->pending_off);
    p = put_varint64(p, tb->pending_size);
    rc = block_builder_add(&tb->index, tb->sep.data, tb->sep.len, h, (size_t)(p - h));
    if (!rc)
        tb->pending = 0;
    return rc;
}

int table_builder_add(table_builder *tb, const char *ikey, size_t klen, const char *val, size_t vlen)
{
    return table_builder_add_hashed(tb, ikey, klen, val, vlen, NULL);
}

int table_builder_add_hashed(table_builder *tb, const char *ikey, size_t klen, const char *val, size_t vlen,
                             const uint32_t *hash)
{
    if (tb->rc)
        return tb->rc;
    if (klen < IKEY_TRAILER)
        return PL_FAIL(PL_INVALID, "%s: internal key of %zu bytes (< 8)", tb->path, klen);
    if (tb->entries && ikey_cmp(ikey, klen, tb->last.data, tb->last.len) <= 0)
        return PL_FAIL(PL_INVALID, "%s: key added out of order (entry %llu)", tb->path,
                       (ull)tb->entries);
    int rc = PL_OK;
    if (tb->pending && (rc = add_pending_index(tb, ikey, klen)))
        goto out;

    size_t ulen = klen - IKEY_TRAILER;
    int new_key = (tb->bits_per_key > 0 || tb->point_index) &&
                  (!tb->entries || ukey_cmp(ikey, ulen, tb->last.data, tb->last.len - IKEY_TRAILER) != 0);
    if (new_key) {
        if (tb->nhash == tb->caphash &&
            (rc = big_array_reserve(&tb->hashes, &tb->caphash, tb->nhash + 1, sizeof *tb->hashes)))
            goto out;
        if (tb->point_index && tb->nhash >= tb->caplocs &&
            (rc = big_array_reserve(&tb->locs, &tb->caplocs, tb->nhash + 1, sizeof *tb->locs)))
            goto out;
    }

    /* A block must stay addressable by u32 offsets: cut it early for huge entries. */
    if (!block_builder_empty(&tb->data) &&
        block_builder_size_estimate(&tb->data) + klen + vlen + 64 > BLOCK_MAX_BYTES &&
        (rc = flush_data_block(tb)))
        goto out;
    unsigned pos = (unsigned)tb->data.counter; /* the entry's place in its restart region */
    if ((rc = block_builder_add(&tb->data, ikey, klen, val, vlen)))
        goto out;
    if (new_key) {
        uint32_t h = hash ? *hash : bloom_hash(ikey, ulen);
        if (tb->point_index) {
            uint32_t roff;
            memcpy(&roff, tb->data.restarts.data + tb->data.restarts.len - 4, 4);
            if (pos > PINDEX_MAX_POS || roff > PINDEX_MAX_REGION_OFF || tb->nblocks > PINDEX_MAX_BLOCK)
                tb->pidx_ok = 0; /* the table gets a bloom filter instead */
            else
                tb->locs[tb->nhash] = pindex_slot(h, (uint32_t)tb->nblocks, roff, pos);
        }
        tb->hashes[tb->nhash++] = h;
    }
    if (!tb->entries && (rc = buf_set(&tb->smallest, ikey, klen)))
        goto out;
    if ((rc = buf_set(&tb->last, ikey, klen)))
        goto out;

    uint64_t lsn = ikey_lsn(ikey, klen);
    if (!tb->entries || lsn < tb->min_lsn)
        tb->min_lsn = lsn;
    if (lsn > tb->max_lsn)
        tb->max_lsn = lsn;
    if (ikey_kind(ikey, klen) == KIND_DELETE)
        tb->deletes++;
    tb->entries++;

    if (block_builder_size_estimate(&tb->data) >= tb->block_bytes)
        rc = flush_data_block(tb);
out:
    if (rc)
        tb->rc = rc;
    return rc;
}

void table_builder_set_point_index(table_builder *tb, int on)
{
    if (tb->entries)
        return;
    tb->point_index = on;
    /* The point index leads a get straight to its entry; the data blocks' own hash index would only
     * serve reads at an older snapshot (and tables whose keys outgrow the point index), where the
     * binary search over restarts does: it is left out (docs/decisions.md, item 15). */
    block_builder_free(&tb->data);
    block_builder_init(&tb->data, BLOCK_RESTART_INTERVAL);
    if (!on)
        block_builder_set_hash(&tb->data);
}

int table_builder_set_huge_pieces(table_builder *tb)
{
    if (tb->offset || tb->wcap == TABLE_HUGE_PIECE)
        return PL_OK;
    char *b = big_alloc(TABLE_HUGE_PIECE);
    if (!b)
        return PL_FAIL(PL_NOMEM, "out of memory (table builder)");
    big_free(tb->wbuf, tb->wcap);
    tb->wbuf = b;
    tb->wcap = TABLE_HUGE_PIECE;
    return PL_OK;
}

void table_builder_set_compression(table_builder *tb, int codec)
{
    tb->codec = codec >= COMPRESS_NONE && codec <= COMPRESS_MAX ? codec : COMPRESS_NONE;
    if (tb->codec == COMPRESS_NONE || tb->entries)
        return;
    /* A compressed block is decompressed whole before any search, which takes microseconds: the
     * aids that spare a search of a block in place (a hash index in each block, the point index, a
     * restart every 4 entries) would cost space and save nothing (docs/decisions.md, item 11). */
    block_builder_free(&tb->data);
    block_builder_init(&tb->data, COMPRESSED_RESTART_INTERVAL);
    tb->point_index = 0;
}

uint64_t table_builder_file_size(const table_builder *tb) { return tb->offset; }
uint64_t table_builder_entries(const table_builder *tb) { return tb->entries; }

void table_builder_last_key(const table_builder *tb, const char **ikey, size_t *klen)
{
    *ikey = tb->last.data;
    *klen = tb->entries ? tb->last.len : 0;
}

static void builder_free(table_builder *tb)
{
    env_close(tb->fd);
    block_builder_free(&tb->data);
    block_builder_free(&tb->index);
    big_free(tb->wbuf, tb->wcap);
    pl_buf_free(&tb->last);
    pl_buf_free(&tb->smallest);
    pl_buf_free(&tb->sep);
    pl_buf_free(&tb->packed);
    pl_buf_free(&tb->samples);
    pl_buf_free(&tb->dict_bytes);
    compress_dict_free(tb->dict);
    big_array_free(&tb->hashes, &tb->caphash, sizeof *tb->hashes);
    big_array_free(&tb->locs, &tb->caplocs, sizeof *tb->locs);
    free(tb->path);
    free(tb);
}

void table_builder_abandon(table_builder *tb)
{
    if (!tb)
        return;
    env_close(tb->fd);
    tb->fd = -1;
    unlink_keep_error(tb->path);
    builder_free(tb);
}

int table_builder_finish(table_builder *tb, table_meta *meta)
{
    pl_buf filter = {0};
    size_t filter_big = 0; /* filter.data from big_alloc, this many bytes (else grown by pl_buf) */
    uint64_t filter_off = 0, filter_size = 0, index_off = 0, index_size = 0;
    int rc = tb->rc;
    if (!rc && !block_builder_empty(&tb->data))
        rc = flush_data_block(tb);
    if (!rc && tb->pending)
        rc = add_pending_index(tb, NULL, 0);
    int with_dict = tb->dict && tb->dict_blocks;
    if (!rc && with_dict) { /* the dictionary block: its bytes, then their length */
        char len4[4];
        put_u32(len4, (uint32_t)tb->dict_bytes.len);
        uint64_t doff, dsize;
        rc = buf_append(&tb->dict_bytes, len4, 4);
        if (!rc)
            rc = write_block(tb, tb->dict_bytes.data, tb->dict_bytes.len, &doff, &dsize);
    }
    if (!rc && tb->point_index && tb->pidx_ok && tb->nhash) {
        pl_buf bloom = {0}; /* carried in the point index's tail */
        if (tb->bits_per_key > 0)
            rc = bloom_build(tb->hashes, tb->nhash, tb->bits_per_key, &bloom);
        if (!rc) { /* a 64 MiB table's point index is about 6 MB: big_alloc's (buf.h) */
            size_t max = pindex_max_bytes(tb->nhash, bloom.len);
            if ((filter.data = big_alloc(max)))
                filter.cap = filter_big = max;
            else
                rc = PL_FAIL(PL_NOMEM, "out of memory (point index of %zu keys)", tb->nhash);
        }
        if (!rc)
            rc = pindex_build(tb->hashes, tb->locs, tb->nhash, tb->offset, bloom.data, bloom.len, &filter);
        pl_buf_free(&bloom);
    } else if (!rc && tb->bits_per_key > 0) {
        rc = bloom_build(tb->hashes, tb->nhash, tb->bits_per_key, &filter);
    }
    if (!rc)
        rc = write_block(tb, filter.data ? filter.data : "", filter.len, &filter_off, &filter_size);
    if (!rc) {
        const char *d;
        size_t n;
        rc = block_builder_finish(&tb->index, &d, &n);
        if (!rc)
            rc = write_block(tb, d, n, &index_off, &index_size);
    }
    if (!rc) {
        env_kill_point("sstable_write");
        char f[TABLE_FOOTER_SIZE];
        put_u64(f, filter_off);
        put_u64(f + 8, filter_size);
        put_u64(f + 16, index_off);
        put_u64(f + 24, index_size);
        put_u32(f + 32, with_dict                     ? TABLE_VERSION_DICT
                        : tb->codec != COMPRESS_NONE ? TABLE_VERSION_COMPRESSED
                                                     : TABLE_VERSION);
        put_u32(f + 36, crc_value(f, 36));
        put_u64(f + 40, TABLE_MAGIC);
        rc = append(tb, f, sizeof f);
    }
    if (!rc)
        rc = flush_wbuf(tb);
    if (!rc) {
        env_kill_point("sstable_sync");
        rc = env_sync(tb->fd, tb->offset, tb->path);
    }
    if (rc)
        goto out;

    memset(meta, 0, sizeof *meta);
    meta->file_size = tb->offset;
    meta->entries = tb->entries;
    meta->deletes = tb->deletes;
    meta->min_lsn = tb->min_lsn;
    meta->max_lsn = tb->max_lsn;
    if (tb->entries) { /* hand the key buffers over */
        meta->smallest = tb->smallest.data;
        meta->smallest_len = tb->smallest.len;
        meta->largest = tb->last.data;
        meta->largest_len = tb->last.len;
        tb->smallest.data = tb->last.data = NULL;
        tb->smallest.len = tb->smallest.cap = tb->last.len = tb->last.cap = 0;
    }
out:
    if (filter_big)
        big_free(filter.data, filter_big);
    else
        pl_buf_free(&filter);
    if (rc) {
        env_close(tb->fd);
        tb->fd = -1;
        unlink_keep_error(tb->path);
    }
    builder_free(tb);
    return rc;
}

/* ---- reading ---- */

struct table {
    char *path;
    int fd;
    uint64_t size;
    const char *map;   /* the whole file mapped read-only (NULL: read with pread through the cache) */
    int compressed;    /* data blocks may be compressed (read through the cache, decompressed): 1 (version
                        * 3), 2 (version 4: also with the dictionary) -- trailer_type_ok's codecs */
    int inplace;       /* data blocks are read in place from the mapping: mapped and not compressed */
    _Atomic int random_reads; /* the mapping is advised random: iterators request their read-ahead */
    _Atomic unsigned char *verified; /* per 256-byte granule: the block starting there passed its CRC */
    int granules_unique; /* no two data blocks start in one granule (else verify on every read) */
    cache *c;          /* NULL or disabled: every data block is read from the file */
    uint64_t cache_id;
    uint64_t filter_off, index_off;
    uint64_t data_end;  /* data blocks live in [0, data_end): the dictionary block's offset, or filter_off */
    compress_dict *dict; /* format 4: the zstd dictionary of its blocks of type COMPRESS_ZSTD_DICT */
    /* The filter and the index block, checked at open.  A mapped table reads them in place from the
     * mapping (under a SIGBUS guard, like its data blocks), so they cost no heap memory and the OS may
     * drop their pages (meta_mapped); otherwise they are heap copies, owned by filter_own/index_own. */
    const char *filter; /* the filter's bytes, filter_len may be 0 */
    size_t filter_len;
    size_t filter_lines; /* bloom_lines of the filter, from its heap copy at open (table_prefetch_get) */
    const char *index;
    size_t index_len;
    char *filter_own, *index_own;
    int meta_mapped;
    /* Fences: the index entries unpacked for the point-read search (NULL: search the index block).
     * Entry i separates block i from block i + 1; every separator's user key starts with the table's
     * common prefix (prefix_len bytes of `prefix`), and fence[i] holds the 8 bytes after it, big-endian,
     * zero padded, so that fence[i] < fence[j] implies separator i < separator j. */
    uint64_t nfences;
    uint64_t *fence;
    /* Where block i starts; block_at[nfences] is the end of the data region.  The data blocks lie back
     * to back (check_index), so block i's size is block_at[i + 1] - block_at[i] - the trailer: 12 bytes
     * of memory per block in all.  (Tables whose data region passes 4 GiB get no fences.) */
    uint32_t *block_at;
    char *prefix;
    size_t prefix_len;
    /* A lean table (TABLE_OPEN_LEAN) has no fences: the point index finds block i's handle in index entry
     * i, read in place (every index entry is a restart point: the restart array at index_restarts
     * names it), and other reads search the index block.  nblocks: the index's entries. */
    int lean;
    uint64_t nblocks;
    size_t index_restarts;
    /* The point index (pindex.h), read in place from the mapping: pidx is bucket 0 (NULL: none, or the
     * table is not mapped).  pidx_crcs holds the chunks' CRCs; a chunk's bit in pidx_verified is set
     * once its CRC matched in this open. */
    const char *pidx;
    pindex_layout pidx_lay;
    char *pidx_crcs;
    _Atomic unsigned char *pidx_verified;
};

static uint64_t fence_window(const char *ukey, size_t ulen, size_t from)
{
    uint64_t w = 0;
    for (size_t i = 0; i < 8; i++)
        w = (w << 8) | (from + i < ulen ? (unsigned char)ukey[from + i] : 0);
    return w;
}

#define GRANULE_SHIFT 8 /* data blocks are at least 256 bytes (block_bytes >= 256) */

/* A data block being read: held in the cache, or owned. */
typedef struct {
    const char *data;
    size_t len;
    cache_handle *h;
    char *owned;
} block_ref;

static void block_ref_release(block_ref *r)
{
    cache_release(r->h);
    free(r->owned);
    r->h = NULL;
    r->owned = NULL;
    r->data = NULL;
    r->len = 0;
}

/* Re-raise a block-level corruption (message from block.c) naming the file and the block offset. */
static int block_error(const char *path, uint64_t off, int rc)
{
    if (rc != PL_CORRUPT)
        return rc;
    char why[320];
    snprintf(why, sizeof why, "%s", pl_errmsg());
    return PL_FAIL(PL_CORRUPT, "%s: block at offset %llu: %s", path, (ull)off, why);
}

/* Read the block at [off, off + size) and its trailer into a malloc'd buffer and check it: its type
 * must be raw, or one codecs allows (trailer_type_ok), stored in *types when types is not NULL. */
static int read_block_typed(const char *path, int fd, uint64_t off, uint64_t size, char **out, int codecs, int *types)
{
    if (size > SIZE_MAX - TABLE_BLOCK_TRAILER)
        return PL_FAIL(PL_CORRUPT, "%s: block at offset %llu: size %llu too large", path, (ull)off,
                       (ull)size);
    size_t n = (size_t)size;
    char *buf = malloc(n + TABLE_BLOCK_TRAILER);
    if (!buf)
        return PL_FAIL(PL_NOMEM, "out of memory (%zu-byte block of %s)", n, path);
    int rc = env_pread(fd, buf, n + TABLE_BLOCK_TRAILER, off, path);
    if (rc)
        goto out;
    if ((rc = table_check_trailer(buf, n, codecs, path, off)))
        goto out;
    if (types)
        *types = (unsigned char)buf[n];
    *out = buf;
    buf = NULL;
out:
    free(buf);
    return rc;
}

static int read_block_raw(const char *path, int fd, uint64_t off, uint64_t size, char **out)
{
    return read_block_typed(path, fd, off, size, out, 0, NULL);
}

static int check_data_handle(const table *t, uint64_t off, uint64_t size)
{
    if (!table_data_handle_fits(off, size, t->data_end))
        return PL_FAIL(PL_CORRUPT, "%s: index block at offset %llu: data block handle %llu+%llu "
                       "outside the data region", t->path, (ull)t->index_off, (ull)off, (ull)size);
    return PL_OK;
}

/* Whether the data block at off was checked in this open (never, when two blocks share a granule), and
 * recording that it was: a bit per granule in t->verified, set by reads and the warmer alike (a
 * relaxed bit: the file never changes, so a check done twice by two threads is only work). */
static int block_checked(const table *t, uint64_t off)
{
    size_t g = (size_t)(off >> GRANULE_SHIFT);
    return t->granules_unique && (atomic_load_explicit(&t->verified[g >> 3], memory_order_relaxed) & (1u << (g & 7)));
}

static void set_block_checked(table *t, uint64_t off)
{
    size_t g = (size_t)(off >> GRANULE_SHIFT);
    atomic_fetch_or_explicit(&t->verified[g >> 3], (unsigned char)(1u << (g & 7)), memory_order_relaxed);
}

/* The same for chunk c of the point index (t->pidx_verified). */
static int chunk_checked(const table *t, uint32_t c)
{
    return atomic_load_explicit(&t->pidx_verified[c >> 3], memory_order_relaxed) & (1u << (c & 7));
}

static void set_chunk_checked(table *t, uint32_t c)
{
    atomic_fetch_or_explicit(&t->pidx_verified[c >> 3], (unsigned char)(1u << (c & 7)), memory_order_relaxed);
}

/* The mapped data block at off, its trailer checked the first time it is read in this open (a block
 * not yet checked is PL_WOULDBLOCK under PL_READ_NO_IO: its pages may not be in memory either, so the
 * caller retries without its lock).  REQUIRES: a SIGBUS guard (env.h). */
static int mapped_block(table *t, uint64_t off, uint64_t size, int flags, const char **data)
{
    int rc = check_data_handle(t, off, size);
    if (!rc)
        rc = env_read_check(t->path);
    if (rc)
        return rc;
    const char *p = t->map + off;
    if (!block_checked(t, off)) {
        if (flags & PL_READ_NO_IO)
            return PL_WOULDBLOCK;
        if ((rc = table_check_trailer(p, (size_t)size, t->compressed, t->path, off)))
            return rc;
        set_block_checked(t, off);
    }
    *data = p;
    return PL_OK;
}

/* A read of the mapping raised SIGBUS. */
static int mapped_fault(const table *t, uint64_t off)
{
    return PL_IOFAIL(EIO, "%s: reading the block at offset %llu of the mapped table failed (the disk "
                     "returned an error, or the file was cut short while open)", t->path, (ull)off);
}

/* A copy of the mapped data block at off (as stored), for an iterator, and its type.  Never faults: a
 * SIGBUS is an error. */
static int copy_mapped_block(table *t, uint64_t off, uint64_t size, char **out, int *type)
{
    char *buf = malloc(size ? (size_t)size : 1);
    if (!buf)
        return PL_FAIL(PL_NOMEM, "out of memory (%llu-byte block of %s)", (ull)size, t->path);
    env_guard g;
    int rc;
    if (sigsetjmp(g.jb, 0) == 0) {
        env_guard_enter(&g);
        const char *p;
        rc = mapped_block(t, off, size, 0, &p);
        if (!rc) {
            memcpy(buf, p, (size_t)size);
            *type = (unsigned char)p[size];
        }
        env_guard_leave(&g);
    } else {
        rc = mapped_fault(t, off);
    }
    if (rc)
        free(buf);
    else
        *out = buf;
    return rc;
}

/* A stored data block (*buf, *len, malloc'd) of the given type, replaced by its decompressed bytes. */
static int unpack_block(const table *t, uint64_t off, int type, char **buf, size_t *len)
{
    const char *path = t->path;
    if (type == TABLE_BLOCK_RAW)
        return PL_OK;
    char *raw;
    int rc = decompress_block(type, t->dict, *buf, *len, &raw, len);
    free(*buf);
    *buf = NULL;
    if (rc == PL_CORRUPT)
        return PL_FAIL(PL_CORRUPT, "%s: block at offset %llu: its %s data does not decompress", path, (ull)off,
                       compress_name(type));
    if (!rc)
        *buf = raw;
    return rc;
}

/* Get the data block at off through the cache (or, mapped, as a copy). PL_WOULDBLOCK (no message)
 * for a miss under PL_READ_NO_IO. */
static int read_data_block(table *t, uint64_t off, uint64_t size, int flags, block_ref *ref)
{
    int cached = t->c && cache_capacity(t->c) > 0;
    ref->h = NULL;
    ref->owned = NULL;
    if (t->inplace) {
        int type;
        int rc = copy_mapped_block(t, off, size, &ref->owned, &type);
        if (!rc) {
            ref->data = ref->owned;
            ref->len = (size_t)size;
        }
        return rc;
    }
    if (cached && (ref->h = cache_lookup(t->c, t->cache_id, off))) {
        ref->data = cache_value(ref->h, &ref->len);
        return PL_OK;
    }
    if (flags & PL_READ_NO_IO)
        return PL_WOULDBLOCK;
    int rc = check_data_handle(t, off, size);
    if (rc)
        return rc;
    char *buf;
    int type = TABLE_BLOCK_RAW;
    if (t->map)
        rc = copy_mapped_block(t, off, size, &buf, &type);
    else
        rc = read_block_typed(t->path, t->fd, off, size, &buf, t->compressed, &type);
    if (rc)
        return rc;
    size_t len = (size_t)size;
    if ((rc = unpack_block(t, off, type, &buf, &len))) /* the cache holds blocks decompressed */
        return rc;
    if (cached)
        ref->h = cache_insert(t->c, t->cache_id, off, buf, len, len + TABLE_BLOCK_TRAILER + CACHE_ENTRY_OVERHEAD);
    if (ref->h) {
        ref->data = cache_value(ref->h, &ref->len);
    } else {
        ref->owned = buf;
        ref->data = buf;
        ref->len = len;
    }
    return PL_OK;
}

/* Walk the index: every entry well formed, keys ascending, data blocks back to back from 0 to the
 * filter block. */
static int check_index(table *t)
{
    block_cursor c;
    int rc = block_cursor_init(&c, t->index, t->index_len);
    uint64_t expect = 0, prev_off = 0, n = 0;
    pl_buf prev = {0};
    t->granules_unique = 1;
    if (rc)
        goto out;
    for (block_cursor_seek_first(&c); block_cursor_valid(&c); block_cursor_next(&c), n++) {
        uint64_t off, size;
        const char *k = block_cursor_key(&c);
        size_t kn = block_cursor_klen(&c);
        if (table_decode_handle(block_cursor_value(&c), block_cursor_vlen(&c), &off, &size) ||
            off != expect || !table_data_handle_fits(off, size, t->data_end)) {
            rc = PL_FAIL(PL_CORRUPT, "bad block handle in entry %llu", (ull)n);
            goto out;
        }
        if (n && ikey_cmp(prev.data, prev.len, k, kn) >= 0) {
            rc = PL_FAIL(PL_CORRUPT, "keys out of order at entry %llu", (ull)n);
            goto out;
        }
        if ((rc = buf_set(&prev, k, kn)))
            goto out;
        if (n && (off >> GRANULE_SHIFT) == (prev_off >> GRANULE_SHIFT))
            t->granules_unique = 0;
        prev_off = off;
        expect = off + size + TABLE_BLOCK_TRAILER;
    }
    rc = block_cursor_status(&c);
    if (!rc && expect != t->data_end)
        rc = PL_FAIL(PL_CORRUPT, "data blocks end at %llu, the %s block starts at %llu", (ull)expect,
                     t->dict ? "dictionary" : "filter", (ull)t->data_end);
out:
    block_cursor_free(&c);
    pl_buf_free(&prev);
    return block_error(t->path, t->index_off, rc);
}

static void free_fences(table *t)
{
    free(t->fence);
    free(t->block_at);
    free(t->prefix);
    t->fence = NULL;
    t->block_at = NULL;
    t->prefix = NULL;
    t->nfences = 0;
}

/* Data block i's offset and size, from the fences.  REQUIRES: i < t->nfences. */
static inline uint64_t block_off(const table *t, uint64_t i) { return t->block_at[i]; }
static inline uint64_t block_size(const table *t, uint64_t i)
{
    return (uint64_t)t->block_at[i + 1] - t->block_at[i] - TABLE_BLOCK_TRAILER;
}

/* Data block b's offset and size, for a point-index read: from the fences, or (a lean table) from index
 * entry b read in place, checked against the data region.  0, or -1 when b is past the table or the
 * entry is malformed.  REQUIRES: a SIGBUS guard for a lean table (its index is mapped). */
static int pidx_block(const table *t, uint64_t b, uint64_t *off, uint64_t *size)
{
    if (t->nfences) {
        if (b >= t->nfences)
            return -1;
        *off = block_off(t, b);
        *size = block_size(t, b);
        return 0;
    }
    if (b >= t->nblocks)
        return -1;
    const char *end = t->index + t->index_restarts;
    const char *p = t->index + get_u32(t->index + t->index_restarts + 4 * b);
    uint32_t shared, nonshared, vlen;
    if (p >= end || !(p = get_varint32(p, end, &shared)) || shared != 0 || !(p = get_varint32(p, end, &nonshared)) ||
        !(p = get_varint32(p, end, &vlen)) || (size_t)(end - p) < (size_t)nonshared + vlen ||
        table_decode_handle(p + nonshared, vlen, off, size) || !table_data_handle_fits(*off, *size, t->data_end))
        return -1;
    return 0;
}

/* Make t lean (no fences, see the struct) if its index allows: every entry a restart point, named by
 * its slot of a restart array that lies in the block.  Leaves t as it was otherwise (then fences are
 * built).  c: a cursor the caller frees (the index may be mapped: a fault must not leak it). */
static void make_lean(table *t, block_cursor *c)
{
    if (t->index_len < 8 || block_cursor_reset(c, t->index, t->index_len))
        return;
    uint32_t nr = get_u32(t->index + t->index_len - 4);
    if (nr == 0 || (nr & UINT32_C(0x80000000)) || (uint64_t)nr * 4 + 4 > t->index_len)
        return;
    size_t restarts = t->index_len - 4 - 4 * (size_t)nr;
    uint64_t n = 0;
    int ok = 1;
    for (block_cursor_seek_first(c); ok && block_cursor_valid(c); block_cursor_next(c), n++)
        ok = n < nr && block_cursor_restart(c) == n && get_u32(t->index + restarts + 4 * n) == c->cur;
    if (!ok || block_cursor_status(c) || n != nr)
        return;
    t->lean = 1;
    t->nblocks = n;
    t->index_restarts = restarts;
}

/* Unpack the (checked) index into fences.  Leaves none when out of memory or the index is empty.
 * c: a cursor the caller frees (the index may be mapped: a fault must not leak it). */
static void build_fences(table *t, block_cursor *c)
{
    if (block_cursor_reset(c, t->index, t->index_len))
        return;
    uint64_t n = 0;
    for (block_cursor_seek_first(c); block_cursor_valid(c); block_cursor_next(c))
        n++;
    if (n == 0 || block_cursor_status(c) || t->data_end > UINT32_MAX)
        return;
    /* the common prefix of every separator's user key: that of the first and the last */
    block_cursor_seek_first(c);
    size_t l0 = block_cursor_klen(c) - IKEY_TRAILER;
    t->prefix = malloc(l0 ? l0 : 1);
    t->fence = malloc(sizeof *t->fence * n);
    t->block_at = malloc(sizeof *t->block_at * (n + 1));
    if (!t->prefix || !t->fence || !t->block_at) {
        free_fences(t);
        return;
    }
    memcpy(t->prefix, block_cursor_key(c), l0);
    block_cursor_seek_last(c);
    size_t ln = block_cursor_klen(c) - IKEY_TRAILER, l = 0;
    while (l < l0 && l < ln && block_cursor_key(c)[l] == t->prefix[l])
        l++;
    t->prefix_len = l;
    uint64_t i = 0;
    int ok = 1;
    for (block_cursor_seek_first(c); ok && block_cursor_valid(c); block_cursor_next(c), i++) {
        uint64_t off, size;
        ok = !table_decode_handle(block_cursor_value(c), block_cursor_vlen(c), &off, &size) && size <= UINT32_MAX &&
             block_cursor_restart(c) == i; /* every entry a restart point (TABLE_INDEX_RESTART_INTERVAL) */
        t->fence[i] = fence_window(block_cursor_key(c), block_cursor_klen(c) - IKEY_TRAILER, l);
        t->block_at[i] = (uint32_t)off; /* check_index: back to back, below data_end */
    }
    t->block_at[n] = (uint32_t)t->data_end;
    if (!ok || i != n) {
        free_fences(t);
        return;
    }
    t->nfences = n;
}

/* The index entry (interval 1: entry i is restart point i) of the first separator >= (ukey, target
 * trailer) into *r (UINT64_MAX when none is).  The index may be mapped: read under a guard. */
static int index_seek(const table *t, const char *ukey, size_t klen, uint64_t target, uint64_t *r)
{
    block_cursor ic;
    block_cursor_init_empty(&ic); /* freed after the guard, whichever way it ends */
    env_guard g;
    int rc;
    if (sigsetjmp(g.jb, 0) == 0) {
        env_guard_enter(&g);
        *r = UINT64_MAX;
        if (block_cursor_init(&ic, t->index, t->index_len)) {
            rc = PL_CORRUPT;
        } else {
            block_cursor_seek(&ic, ukey, klen, target);
            rc = block_cursor_status(&ic);
            if (!rc && block_cursor_valid(&ic))
                *r = block_cursor_restart(&ic);
        }
        env_guard_leave(&g);
    } else {
        rc = mapped_fault(t, t->index_off);
    }
    block_cursor_free(&ic);
    return rc;
}

/* The first index entry whose separator is >= (ukey, target trailer), found in the fences; n when
 * none is (the key is past the table).  Only entries whose fence equals the key's are compared whole. */
static uint64_t fence_seek(const table *t, const char *ukey, size_t klen, uint64_t target, int *err)
{
    uint64_t n = t->nfences;
    size_t pl = t->prefix_len;
    *err = 0;
    int c = memcmp(ukey, t->prefix, klen < pl ? klen : pl);
    if (c < 0 || (c == 0 && klen < pl))
        return 0; /* before every separator */
    if (c > 0)
        return n; /* after every separator */
    uint64_t w = fence_window(ukey, klen, pl);
    uint64_t lo = 0, hi = n; /* first fence >= w */
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (t->fence[mid] < w)
            lo = mid + 1;
        else
            hi = mid;
    }
    uint64_t end = lo; /* first fence > w */
    while (end < n && t->fence[end] == w)
        end++;
    if (end == lo)
        return lo;
    /* Separators lo..end-1 share the key's window: compare them whole, in the index block. */
    uint64_t r;
    *err = index_seek(t, ukey, klen, target, &r);
    return *err || r > n ? n : r;
}

/* A copy of [p, p + n) on a cache-line boundary (so that a blocked filter's line is one cache line). */
static char *aligned_copy(const char *p, size_t n)
{
    void *a = NULL;
    if (posix_memalign(&a, 64, n ? n : 1) != 0)
        return NULL;
    memcpy(a, p, n);
    return a;
}

/* If the filter block [off, off + size) is a point index: its layout, its chunk CRCs and its bloom filter
 * (the tail checked) into t, leaving the buckets on disk (read in place through the mapping, each chunk
 * checked at its first read).  A bloom filter (or an empty block) leaves t->pidx_crcs NULL. */
static int open_point_index(table *t, uint64_t off, uint64_t size)
{
    char tail[PINDEX_TAIL_BYTES];
    if (size < PINDEX_TAIL_BYTES)
        return PL_OK;
    int rc = env_pread(t->fd, tail, sizeof tail, off + size - sizeof tail, t->path);
    if (rc || !pindex_is(tail + sizeof tail - 1))
        return rc;
    if ((rc = pindex_parse_tail(tail, off, size, t->path, &t->pidx_lay)))
        return rc;
    unsigned pad = (unsigned)(t->pidx_lay.buckets_off - off);
    if (pad) { /* zeros: nothing a reader uses goes unchecked */
        char z[PINDEX_BUCKET_BYTES];
        if ((rc = env_pread(t->fd, z, pad, off, t->path)))
            return rc;
        for (unsigned i = 0; i < pad; i++)
            if (z[i])
                return PL_FAIL(PL_CORRUPT, "%s: point index at offset %llu: padding is not zero", t->path,
                               (ull)off);
    }
    size_t n = (size_t)(t->pidx_lay.tail_off - t->pidx_lay.crcs_off), ncrc = (size_t)t->pidx_lay.nchunks * 4;
    if (!(t->pidx_crcs = malloc(n ? n : 1)))
        return PL_FAIL(PL_NOMEM, "out of memory (point index of %s)", t->path);
    if ((rc = env_pread(t->fd, t->pidx_crcs, n, t->pidx_lay.crcs_off, t->path)) ||
        (rc = pindex_check_crcs(&t->pidx_lay, t->pidx_crcs, tail, t->path)))
        return rc;
    if (t->pidx_lay.filter_len) {
        if (t->meta_mapped) {
            t->filter = t->map + t->pidx_lay.crcs_off + ncrc;
        } else {
            if (!(t->filter_own = aligned_copy(t->pidx_crcs + ncrc, t->pidx_lay.filter_len)))
                return PL_FAIL(PL_NOMEM, "out of memory (filter of %s)", t->path);
            t->filter = t->filter_own;
        }
        t->filter_len = t->pidx_lay.filter_len;
        t->filter_lines = bloom_lines(t->pidx_crcs + ncrc, t->filter_len);
    }
    char *crcs = realloc(t->pidx_crcs, ncrc ? ncrc : 1); /* the chunk CRCs are all a read needs */
    if (crcs)
        t->pidx_crcs = crcs;
    return PL_OK;
}

/* A format-4 table's dictionary block, just before its filter block, read and checked: data_end moves
 * to its start. */
static int open_dict(table *t)
{
    char len4[4];
    uint64_t off, size;
    int rc = t->filter_off >= 4 + TABLE_BLOCK_TRAILER
                 ? env_pread(t->fd, len4, 4, t->filter_off - TABLE_BLOCK_TRAILER - 4, t->path)
                 : PL_CORRUPT;
    if (rc == PL_CORRUPT || (!rc && table_dict_handle(get_u32(len4), t->filter_off, &off, &size)))
        return PL_FAIL(PL_CORRUPT, "%s: the dictionary block before offset %llu does not fit the table",
                       t->path, (ull)t->filter_off);
    char *blk;
    if (rc || (rc = read_block_raw(t->path, t->fd, off, size, &blk)))
        return rc;
    /* (its length field is the one read above: the block was found by it) */
    if ((rc = compress_dict_new(blk, (size_t)size - 4, 0, &t->dict)) == PL_CORRUPT)
        rc = PL_FAIL(PL_CORRUPT, "%s: dictionary block at offset %llu: zstd refuses it", t->path, (ull)off);
    free(blk);
    if (!rc)
        t->data_end = off;
    return rc;
}

/* table_open; heap_meta: keep the filter and index as heap copies even when the file is mapped (verify
 * walks them without a guard). */
static int open_table(const char *path, uint64_t file_size, cache *c, int heap_meta, int lean, table **out)
{
    if (file_size < TABLE_FOOTER_SIZE)
        return PL_FAIL(PL_CORRUPT, "%s: file of %llu bytes is too short for a table (footer of %d "
                       "bytes expected at offset 0)", path, (ull)file_size, TABLE_FOOTER_SIZE);
    int rc = PL_OK;
    table *t = calloc(1, sizeof *t);
    if (!t)
        return PL_FAIL(PL_NOMEM, "out of memory (table)");
    t->fd = -1;
    t->size = file_size;
    t->c = c;
    if (!(t->path = strdup(path))) {
        rc = PL_FAIL(PL_NOMEM, "out of memory (table)");
        goto out;
    }
    if ((rc = env_open(path, O_RDONLY, &t->fd)))
        goto out;

    char f[TABLE_FOOTER_SIZE];
    table_footer ft;
    if ((rc = env_pread(t->fd, f, sizeof f, file_size - TABLE_FOOTER_SIZE, path)) ||
        (rc = table_footer_decode(f, file_size, path, &ft)))
        goto out;
    t->filter_off = ft.filter_off;
    t->index_off = ft.index_off;
    t->data_end = ft.filter_off;
    t->compressed = ft.version >= TABLE_VERSION_DICT ? 2 : ft.version >= TABLE_VERSION_COMPRESSED;
    if (ft.version >= TABLE_VERSION_DICT && (rc = open_dict(t)))
        goto out;
    /* Read data blocks in place from a mapping of the file: no system call and no copy per read,
     * the page cache as the block cache (docs/decisions.md, item 5).  Without a mapping (mmap
     * refused), blocks are read with pread through the block cache. */
    t->verified = calloc((size_t)(file_size >> GRANULE_SHIFT) / 8 + 1, 1);
    if (t->verified && env_map_readonly(t->fd, (size_t)file_size, &t->map, path) != PL_OK) {
        t->map = NULL;
        pl_clear_error();
    }
    /* The filter and index are read (and checked) once here; a mapped table then reads them in place,
     * so that their memory is the OS's page cache, not the heap (docs/decisions.md, item 13). */
    t->meta_mapped = t->map && !heap_meta;
    if ((rc = open_point_index(t, ft.filter_off, ft.filter_size)))
        goto out;
    if (!t->pidx_crcs) { /* a bloom filter (or none) */
        char *fb;
        if ((rc = read_block_raw(path, t->fd, ft.filter_off, ft.filter_size, &fb)))
            goto out;
        t->filter_len = (size_t)ft.filter_size;
        t->filter_lines = bloom_lines(fb, t->filter_len);
        if (t->meta_mapped) {
            free(fb);
            t->filter = t->map + ft.filter_off;
        } else {
            char *a = aligned_copy(fb, t->filter_len);
            if (a) {
                free(fb);
                fb = a;
            }
            t->filter = t->filter_own = fb;
        }
    }
    if ((rc = read_block_raw(path, t->fd, ft.index_off, ft.index_size, &t->index_own)))
        goto out;
    t->index = t->index_own;
    t->index_len = (size_t)ft.index_size;
    if ((rc = check_index(t)))
        goto out;
    if (t->meta_mapped) {
        free(t->index_own);
        t->index_own = NULL;
        t->index = t->map + ft.index_off;
    }
    {
        /* a lean table, or fences (best effort: without them the index block is searched); the index
         * may be read in place now, so under a guard, the cursor freed whichever way it ends */
        block_cursor ic;
        block_cursor_init_empty(&ic);
        env_guard g;
        if (sigsetjmp(g.jb, 0) == 0) {
            env_guard_enter(&g);
            if (lean && t->meta_mapped && t->pidx_crcs && !t->compressed)
                make_lean(t, &ic);
            if (!t->lean)
                build_fences(t, &ic);
            env_guard_leave(&g);
        } else {
            free_fences(t);
            rc = mapped_fault(t, t->index_off);
        }
        block_cursor_free(&ic);
        if (rc)
            goto out;
    }
    if (c)
        t->cache_id = cache_new_id(c);
    /* The point index names places in blocks read in place: a compressed table (which the writer
     * never gives one) answers through its filter and fences instead. */
    t->inplace = t->map && !t->compressed;
    if (t->inplace && t->pidx_crcs && (t->nfences || t->lean) &&
        (t->pidx_verified = calloc((size_t)t->pidx_lay.nchunks / 8 + 1, 1)))
        t->pidx = t->map + t->pidx_lay.buckets_off;
out:
    if (rc) {
        table_close(t);
        return rc;
    }
    *out = t;
    return PL_OK;
}

int table_open(const char *path, uint64_t file_size, cache *c, table **out)
{
    return open_table(path, file_size, c, 0, 0, out);
}

int table_open_lean(const char *path, uint64_t file_size, cache *c, table **out)
{
    return open_table(path, file_size, c, 0, 1, out);
}

void table_close(table *t)
{
    if (!t)
        return;
    env_unmap_readonly(t->map, (size_t)t->size);
    free((void *)t->verified);
    free((void *)t->pidx_verified);
    free(t->pidx_crcs);
    free_fences(t);
    env_close(t->fd);
    free(t->filter_own);
    free(t->index_own);
    compress_dict_free(t->dict);
    free(t->path);
    free(t);
}

uint64_t table_file_size(const table *t) { return t->size; }
const char *table_path(const table *t) { return t->path; }
/* Whether the filter lets a key with this hash through (1 when there is none).  A mapped filter is read
 * under a SIGBUS guard, a fault answering "maybe": the read that follows goes to the data and reports
 * its own error, if any. */
static int filter_may_contain(const table *t, uint32_t hash)
{
    if (!t->filter_len)
        return 1;
    if (!t->meta_mapped)
        return bloom_may_contain(t->filter, t->filter_len, hash);
    env_guard g;
    int r;
    if (sigsetjmp(g.jb, 0) == 0) {
        env_guard_enter(&g);
        r = bloom_may_contain(t->filter, t->filter_len, hash);
        env_guard_leave(&g);
    } else {
        r = 1;
    }
    return r;
}

int table_may_contain(const table *t, const char *ukey, size_t klen)
{
    return filter_may_contain(t, bloom_hash(ukey, klen));
}

uint64_t table_approx_offset(const table *t, const char *ukey, size_t klen)
{
    block_cursor ic;
    block_cursor_init_empty(&ic);
    uint64_t off = t->size, size;
    env_guard g; /* the index may be mapped */
    if (sigsetjmp(g.jb, 0) == 0) {
        env_guard_enter(&g);
        if (!block_cursor_init(&ic, t->index, t->index_len)) {
            block_cursor_seek(&ic, ukey, klen, ikey_pack(LSN_MAX, KIND_SEEK));
            if (block_cursor_valid(&ic) &&
                table_decode_handle(block_cursor_value(&ic), block_cursor_vlen(&ic), &off, &size))
                off = t->size;
        }
        env_guard_leave(&g);
    } else {
        off = t->size;
    }
    block_cursor_free(&ic);
    return off;
}

int table_middle_key(const table *t, pl_buf *out)
{
    block_cursor ic;
    block_cursor_init_empty(&ic);
    int rc;
    env_guard g; /* the index may be mapped */
    if (sigsetjmp(g.jb, 0) == 0) {
        env_guard_enter(&g);
        rc = block_cursor_init(&ic, t->index, t->index_len);
        uint64_t n = t->nfences ? t->nfences : t->lean ? t->nblocks : 0; /* one entry per block */
        for (block_cursor_seek_first(&ic); !rc && !n && block_cursor_valid(&ic); block_cursor_next(&ic))
            n++;
        if (!rc)
            rc = block_cursor_status(&ic);
        if (!rc) {
            block_cursor_seek_first(&ic);
            for (uint64_t i = 0; i < n / 2 && block_cursor_valid(&ic); i++)
                block_cursor_next(&ic);
            if (!block_cursor_valid(&ic))
                rc = block_cursor_status(&ic) ? block_cursor_status(&ic) : PL_NOTFOUND;
            else if (block_cursor_klen(&ic) < IKEY_TRAILER)
                rc = PL_FAIL(PL_CORRUPT, "index key shorter than its trailer");
            else
                rc = buf_set(out, block_cursor_key(&ic), ikey_ulen(block_cursor_klen(&ic)));
        }
        env_guard_leave(&g);
    } else {
        block_cursor_free(&ic);
        return mapped_fault(t, t->index_off);
    }
    block_cursor_free(&ic);
    return rc == PL_CORRUPT ? block_error(t->path, t->index_off, rc) : rc;
}

void table_set_random_reads(table *t, int on)
{
    on = !!on;
    if (t->map && atomic_exchange_explicit(&t->random_reads, on, memory_order_relaxed) != on)
        env_advise_random(t->map, (size_t)t->size, on);
}

#define WARM_PIECE (4u << 20) /* populated per call: a stop waits for at most one piece */

static int pages_resident(const unsigned char *vec, size_t page, uint64_t off, uint64_t len)
{
    for (uint64_t p = off / page; p <= (off + len - 1) / page; p++)
        if (!(vec[p] & 1))
            return 0;
    return 1;
}

/* Check the data blocks and point index chunks that lie on resident pages (vec), as their first read
 * would, and mark them checked.  REQUIRES: a SIGBUS guard. */
static void warm_check(table *t, const unsigned char *vec, size_t page, const atomic_int *stop)
{
    uint64_t nb = t->nfences ? t->nfences : t->lean ? t->nblocks : 0;
    for (uint64_t b = 0; t->inplace && t->granules_unique && b < nb; b++) {
        uint64_t off, size;
        if ((b & 1023) == 0 && atomic_load_explicit(stop, memory_order_relaxed))
            return;
        if (pidx_block(t, b, &off, &size)) /* (a handle it gives lies in the data region) */
            break; /* a damaged index: the reads will say so */
        if (!block_checked(t, off) && pages_resident(vec, page, off, size + TABLE_BLOCK_TRAILER) &&
            table_check_trailer(t->map + off, (size_t)size, t->compressed, t->path, off) == PL_OK)
            set_block_checked(t, off);
    }
    for (uint32_t c = 0; t->pidx && c < t->pidx_lay.nchunks; c++) {
        uint64_t off = t->pidx_lay.buckets_off + (uint64_t)c * PINDEX_CHUNK_BUCKETS * PINDEX_BUCKET_BYTES;
        if ((c & 1023) == 0 && atomic_load_explicit(stop, memory_order_relaxed))
            return;
        if (!chunk_checked(t, c) && pages_resident(vec, page, off, pindex_chunk_bytes(&t->pidx_lay, c)) &&
            pindex_chunk_ok(&t->pidx_lay, t->pidx_crcs, t->pidx, c))
            set_chunk_checked(t, c);
    }
}

uint64_t table_warm(table *t, const atomic_int *stop)
{
    size_t page = env_page_size(), size = (size_t)t->size;
    unsigned char *vec = t->map && size ? malloc((size + page - 1) / page) : NULL;
    if (!vec || env_map_resident(t->path, t->map, size, vec)) {
        free(vec);
        return 0;
    }
    uint64_t mapped = 0;
    int populate = 1;
    for (size_t i = 0, n = (size + page - 1) / page, per = WARM_PIECE / page; populate && i < n;) {
        if (atomic_load_explicit(stop, memory_order_relaxed))
            break;
        while (i < n && !(vec[i] & 1))
            i++;
        size_t j = i;
        while (j < n && (vec[j] & 1) && j - i < per)
            j++;
        if (j > i) {
            int rc = env_map_populate(t->map + i * page, (j - i) * page);
            if (rc == 0)
                mapped += (uint64_t)(j - i) * page;
            populate = rc != 1;
        }
        i = j;
    }
    env_guard g;
    if (sigsetjmp(g.jb, 0) == 0) {
        env_guard_enter(&g);
        warm_check(t, vec, page, stop);
        env_guard_leave(&g);
    }
    free(vec);
    return mapped;
}

int table_has_filter(const table *t) { return t->filter_len > 0 || t->pidx_crcs != NULL; }
int table_has_point_index(const table *t) { return t->pidx != NULL; }

uint64_t table_heap_bytes(const table *t)
{
    uint64_t b = sizeof *t + (t->size >> GRANULE_SHIFT) / 8 + 1;
    if (t->nfences)
        b += t->nfences * (sizeof *t->fence + sizeof *t->block_at) + sizeof *t->block_at + t->prefix_len;
    if (t->pidx_crcs)
        b += 4 * (uint64_t)t->pidx_lay.nchunks + t->pidx_lay.nchunks / 8 + 1;
    if (t->filter_own)
        b += t->filter_len;
    if (t->index_own)
        b += t->index_len;
    return b + compress_dict_heap_bytes(t->dict);
}

/* Find ukey's newest version <= target in the data block at off (data, len); *result as table_get. */
static int search_block(const table *t, block_cursor *dc, const char *data, size_t len, uint64_t off,
                        const char *ukey, size_t klen, uint32_t hash, uint64_t target, pl_buf *out,
                        int *result)
{
    int rc = block_cursor_reset(dc, data, len);
    if (rc)
        return block_error(t->path, off, rc);
    if (!block_cursor_seek_key(dc, ukey, klen, target, hash))
        return PL_OK; /* the block's hash index: no entry of ukey here */
    if (!block_cursor_valid(dc))
        return block_error(t->path, off, block_cursor_status(dc));
    const char *k = block_cursor_key(dc);
    size_t kn = block_cursor_klen(dc);
    if (ukey_cmp(k, kn - IKEY_TRAILER, ukey, klen) != 0)
        return PL_OK; /* absent */
    switch (ikey_kind(k, kn)) {
    case KIND_PUT:
        if (!(rc = buf_set(out, block_cursor_value(dc), block_cursor_vlen(dc))))
            *result = LOOKUP_FOUND;
        return rc;
    case KIND_DELETE:
        *result = LOOKUP_DELETED;
        return PL_OK;
    default:
        return block_error(t->path, off, PL_FAIL(PL_CORRUPT, "unknown entry kind %d", ikey_kind(k, kn)));
    }
}

/* search_block on the mapped block, under a SIGBUS guard. */
static int search_mapped(table *t, uint64_t off, uint64_t size, const char *ukey, size_t klen,
                         uint32_t hash, uint64_t target, pl_buf *out, int flags, int *result)
{
    block_cursor dc;
    block_cursor_init_empty(&dc); /* freed after the guard, whichever way it ends */
    env_guard g;
    int rc;
    if (sigsetjmp(g.jb, 0) == 0) {
        env_guard_enter(&g);
        const char *data;
        rc = mapped_block(t, off, size, flags, &data);
        if (!rc)
            rc = search_block(t, &dc, data, (size_t)size, off, ukey, klen, hash, target, out, result);
        env_guard_leave(&g);
    } else {
        *result = LOOKUP_ABSENT;
        rc = mapped_fault(t, off);
    }
    block_cursor_free(&dc);
    return rc;
}

#define PIDX_KEY_MAX 256 /* keys walked through the point index on the stack; longer: search the block */

/* Request the lines of the region slot s names, up to the key's entry (an entry of a small key and value
 * is about two lines long): the walk then finds them on their way.  Reads nothing itself. */
static void prefetch_region(const table *t, uint64_t s)
{
    uint32_t b = pindex_slot_block(s), roff = pindex_slot_region(s);
    uint64_t off, size;
    if (pidx_block(t, b, &off, &size) || roff >= size)
        return;
    size_t want = 128 * ((size_t)pindex_slot_pos(s) + 1);
    const char *p = t->map + off + roff, *end = t->map + off + (roff + want < size ? roff + want : size);
    for (; p < end; p += 64)
        __builtin_prefetch(p);
}

/* The error of a point index chunk whose CRC does not match. */
static int pidx_chunk_error(const table *t, uint32_t c)
{
    return PL_FAIL(PL_CORRUPT, "%s: point index at offset %llu (chunk %u): checksum mismatch", t->path,
                   (ull)(t->pidx_lay.buckets_off + (uint64_t)c * PINDEX_CHUNK_BUCKETS * PINDEX_BUCKET_BYTES), c);
}

/* Chunk c of the point index, its CRC checked the first time it is read in this open (PL_WOULDBLOCK
 * under PL_READ_NO_IO until then).  REQUIRES: a SIGBUS guard. */
static int pidx_chunk(table *t, uint32_t c, int flags)
{
    if (chunk_checked(t, c))
        return PL_OK;
    if (flags & PL_READ_NO_IO)
        return PL_WOULDBLOCK;
    int rc = env_read_check(t->path);
    if (rc)
        return rc;
    if (!pindex_chunk_ok(&t->pidx_lay, t->pidx_crcs, t->pidx, c))
        return pidx_chunk_error(t, c);
    set_chunk_checked(t, c);
    return PL_OK;
}

enum { PIDX_DONE, PIDX_MISMATCH, PIDX_FALLBACK };

/* The entry slot s names, for ukey: PIDX_DONE with *rc and *result (found, deleted, or an error),
 * PIDX_MISMATCH (the entry is another key's: same fingerprint), PIDX_FALLBACK (the key's newest entry is
 * newer than the snapshot, or too long to walk here: search the block).  REQUIRES: a SIGBUS guard. */
static int pidx_entry(table *t, uint64_t s, const char *ukey, size_t klen, uint64_t snap_lsn, pl_buf *out,
                      int flags, int *result, int *rc)
{
    uint32_t b = pindex_slot_block(s);
    uint64_t off, size;
    if (pidx_block(t, b, &off, &size)) {
        *rc = PL_FAIL(PL_CORRUPT, "%s: point index names data block %u of %llu, or its index entry is bad",
                      t->path, b, (ull)(t->nfences ? t->nfences : t->nblocks));
        return PIDX_DONE;
    }
    prefetch_region(t, s);
    const char *data, *val;
    if ((*rc = mapped_block(t, off, size, flags, &data)))
        return PIDX_DONE;
    char k[PIDX_KEY_MAX];
    size_t kn;
    uint32_t vlen;
    int r = block_region_entry(data, size, pindex_slot_region(s), pindex_slot_pos(s), k, sizeof k, &kn, &val,
                               &vlen);
    if (r == BLOCK_KEY_TOO_LONG)
        return PIDX_FALLBACK;
    if (r) {
        *rc = block_error(t->path, off, r);
        return PIDX_DONE;
    }
    if (kn - IKEY_TRAILER != klen || memcmp(k, ukey, klen) != 0)
        return PIDX_MISMATCH;
    if (ikey_lsn(k, kn) > snap_lsn)
        return PIDX_FALLBACK;
    switch (ikey_kind(k, kn)) {
    case KIND_PUT:
        if (!(*rc = buf_set(out, val, vlen)))
            *result = LOOKUP_FOUND;
        return PIDX_DONE;
    case KIND_DELETE:
        *result = LOOKUP_DELETED;
        return PIDX_DONE;
    default:
        *rc = block_error(t->path, off, PL_FAIL(PL_CORRUPT, "unknown entry kind %d", ikey_kind(k, kn)));
        return PIDX_DONE;
    }
}

/* The search of pidx_get.  REQUIRES: a SIGBUS guard. */
static int pidx_search(table *t, const char *ukey, size_t klen, uint32_t hash, uint64_t snap_lsn, pl_buf *out,
                       int flags, int *result, int *fallback)
{
    uint16_t fp = pindex_fingerprint(hash);
    uint32_t nb = t->pidx_lay.nbuckets, b = pindex_home(hash, nb);
    int rc = PL_OK;
    for (uint32_t step = 0; step < nb; step++) {
        if ((rc = pidx_chunk(t, b / PINDEX_CHUNK_BUCKETS, flags)))
            return rc;
        const char *bucket = t->pidx + (size_t)b * PINDEX_BUCKET_BYTES;
        unsigned i = 0;
        uint64_t s;
        int st, e = PIDX_MISMATCH;
        while ((st = pindex_scan(bucket, fp, &i, &s)) == PINDEX_MATCH &&
               (e = pidx_entry(t, s, ukey, klen, snap_lsn, out, flags, result, &rc)) == PIDX_MISMATCH)
            ;
        if (st == PINDEX_MATCH) { /* pidx_entry settled it */
            *fallback = e == PIDX_FALLBACK;
            return rc;
        }
        if (st == PINDEX_END)
            return PL_OK; /* absent */
        b = b + 1 == nb ? 0 : b + 1;
    }
    return PL_FAIL(PL_CORRUPT, "%s: point index at offset %llu has no free slot", t->path,
                   (ull)t->pidx_lay.buckets_off);
}

/* A point read through the point index: one bucket (rarely more), then the entry it names.  *fallback
 * set: the answer must come from a search of the key's data block (pidx_entry). */
static int pidx_get(table *t, const char *ukey, size_t klen, uint32_t hash, uint64_t snap_lsn, pl_buf *out,
                    int flags, int *result, int *fallback)
{
    env_guard g;
    int rc;
    *fallback = 0;
    if (sigsetjmp(g.jb, 0) == 0) {
        env_guard_enter(&g);
        rc = pidx_search(t, ukey, klen, hash, snap_lsn, out, flags, result, fallback);
        env_guard_leave(&g);
    } else {
        *result = LOOKUP_ABSENT;
        rc = mapped_fault(t, t->pidx_lay.buckets_off);
    }
    return rc;
}

void table_prefetch_get(const table *t, uint32_t hash, int flags)
{
    if (!(flags & TABLE_GET_NO_FILTER && t->pidx))
        bloom_prefetch_line(t->filter, t->filter_lines, hash);
    if (t->pidx)
        __builtin_prefetch(t->pidx + (size_t)pindex_home(hash, t->pidx_lay.nbuckets) * PINDEX_BUCKET_BYTES);
}

int table_get(table *t, const char *ukey, size_t klen, uint64_t snap_lsn, pl_buf *out, int flags,
              int *result)
{
    return table_get_hashed(t, ukey, klen, bloom_hash(ukey, klen), snap_lsn, out, flags, result);
}

int table_get_hashed(table *t, const char *ukey, size_t klen, uint32_t hash, uint64_t snap_lsn, pl_buf *out,
                     int flags, int *result)
{
    *result = LOOKUP_ABSENT;
    uint64_t target = ikey_pack(snap_lsn > LSN_MAX ? LSN_MAX : snap_lsn, KIND_SEEK);
    if (!(flags & TABLE_GET_NO_FILTER && t->pidx) && !filter_may_contain(t, hash))
        return PL_OK;
    if (t->pidx) {
        int fallback;
        int rc = pidx_get(t, ukey, klen, hash, snap_lsn, out, flags, result, &fallback);
        if (rc || !fallback)
            return rc;
        *result = LOOKUP_ABSENT;
    }
    uint64_t off = 0, size = 0;
    int rc = PL_OK;
    if (t->nfences) {
        int err;
        uint64_t i = fence_seek(t, ukey, klen, target, &err);
        if (err)
            return block_error(t->path, t->index_off, err);
        if (i >= t->nfences)
            return PL_OK; /* past the last key */
        if (t->inplace)
            return search_mapped(t, block_off(t, i), block_size(t, i), ukey, klen, hash, target, out, flags,
                                 result);
        off = block_off(t, i);
        size = block_size(t, i);
        goto search;
    }
    block_cursor ic;
    block_cursor_init_empty(&ic);
    env_guard g; /* the index may be mapped */
    if (sigsetjmp(g.jb, 0) == 0) {
        env_guard_enter(&g);
        rc = block_cursor_init(&ic, t->index, t->index_len);
        if (!rc) {
            block_cursor_seek(&ic, ukey, klen, target);
            if (!block_cursor_valid(&ic)) /* past the last key, or a bad index */
                rc = block_cursor_status(&ic);
            else if (table_decode_handle(block_cursor_value(&ic), block_cursor_vlen(&ic), &off, &size))
                rc = PL_FAIL(PL_CORRUPT, "bad block handle");
            else
                rc = -1; /* a block to search */
        }
        env_guard_leave(&g);
    } else {
        block_cursor_free(&ic);
        return mapped_fault(t, t->index_off);
    }
    block_cursor_free(&ic);
    if (rc >= 0)
        return block_error(t->path, t->index_off, rc);
    if (t->inplace)
        return search_mapped(t, off, size, ukey, klen, hash, target, out, flags, result);
search:;
    block_ref ref = {0};
    block_cursor dc;
    block_cursor_init_empty(&dc);
    rc = read_data_block(t, off, size, flags, &ref);
    if (!rc)
        rc = search_block(t, &dc, ref.data, ref.len, off, ukey, klen, hash, target, out, result);
    block_ref_release(&ref);
    block_cursor_free(&dc);
    return rc;
}

#define HINT_LINES 16

/* The prefetch hint for lookup r's data block, under a SIGBUS guard (the block may not be checked yet:
 * the hint only reads within its bounds, and a fault just skips the hint). */
static void hint_mapped(table *t, const table_lookup *r)
{
    env_guard g;
    if (sigsetjmp(g.jb, 0) == 0) {
        env_guard_enter(&g);
        const char *end = NULL;
        const char *p = block_lookup_hint(t->map + block_off(t, r->block), block_size(t, r->block), r->hash,
                                          &end);
        /* the region's lines (the key's entry is one of the region's), at most HINT_LINES */
        for (int k = 0; p && k < HINT_LINES && p < end; k++, p += 64)
            __builtin_prefetch(p);
        env_guard_leave(&g);
    }
}

/* The prefetch hints for lookup r through the point index: the first slot of its home bucket with its
 * fingerprint names a region, whose first lines are requested.  Under a SIGBUS guard; reads within
 * bounds only (the chunk may not be checked yet: a hint, never an answer). */
static void hint_pidx(table *t, table_lookup *const *reqs, size_t n)
{
    env_guard g;
    if (sigsetjmp(g.jb, 0) == 0) {
        env_guard_enter(&g);
        for (size_t j = 0; j < n; j++) {
            uint32_t h = reqs[j]->hash;
            const char *bucket = t->pidx + (size_t)pindex_home(h, t->pidx_lay.nbuckets) * PINDEX_BUCKET_BYTES;
            unsigned i = 0;
            uint64_t s;
            if (pindex_scan(bucket, pindex_fingerprint(h), &i, &s) == PINDEX_MATCH)
                prefetch_region(t, s);
        }
        env_guard_leave(&g);
    }
}

/* table_get_batch through the point index, n <= TABLE_BATCH_MAX: 1, the filter (in the CPU's caches)
 * leaves the keys the table may hold; 2, their home buckets are requested; 3, each key's region; 4, the
 * reads, their bytes on their way. */
static void batch_pidx(table *t, uint64_t snap_lsn, table_lookup *const *reqs, size_t n)
{
    table_lookup *maybe[TABLE_BATCH_MAX] = {0};
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        reqs[i]->result = LOOKUP_ABSENT;
        reqs[i]->rc = PL_OK;
        if (filter_may_contain(t, reqs[i]->hash)) {
            maybe[m++] = reqs[i];
            __builtin_prefetch(t->pidx + (size_t)pindex_home(reqs[i]->hash, t->pidx_lay.nbuckets) *
                                             PINDEX_BUCKET_BYTES);
        }
    }
    hint_pidx(t, maybe, m);
    for (size_t i = 0; i < m; i++)
        maybe[i]->rc = table_get(t, maybe[i]->ukey, maybe[i]->klen, snap_lsn, maybe[i]->out, TABLE_GET_NO_FILTER,
                                 &maybe[i]->result);
}

void table_get_batch(table *t, uint64_t snap_lsn, table_lookup *const *reqs, size_t n)
{
    uint64_t target = ikey_pack(snap_lsn > LSN_MAX ? LSN_MAX : snap_lsn, KIND_SEEK);
    if (t->pidx) {
        for (size_t i = 0; i < n; i += TABLE_BATCH_MAX)
            batch_pidx(t, snap_lsn, reqs + i, n - i < TABLE_BATCH_MAX ? n - i : TABLE_BATCH_MAX);
        return;
    }
    if (!t->nfences || !t->inplace) {
        for (size_t i = 0; i < n; i++)
            reqs[i]->rc = table_get(t, reqs[i]->ukey, reqs[i]->klen, snap_lsn, reqs[i]->out, 0, &reqs[i]->result);
        return;
    }
    /* 1: every key's filter line (bloom_prefetch reads the filter's last byte: under a guard, as the
     * filter may be mapped; a fault skips the hints) */
    if (t->filter_len) {
        env_guard g;
        if (sigsetjmp(g.jb, 0) == 0) {
            env_guard_enter(&g);
            for (size_t i = 0; i < n; i++)
                bloom_prefetch(t->filter, t->filter_len, reqs[i]->hash);
            env_guard_leave(&g);
        }
    }
    /* 2: the filters answer; the fences name each remaining key's block, whose tail is requested */
    for (size_t i = 0; i < n; i++) {
        table_lookup *r = reqs[i];
        r->block = UINT64_MAX;
        r->result = LOOKUP_ABSENT;
        r->rc = PL_OK;
        if (!filter_may_contain(t, r->hash))
            continue;
        int err;
        uint64_t b = fence_seek(t, r->ukey, r->klen, target, &err);
        if (err) {
            r->rc = block_error(t->path, t->index_off, err);
            continue;
        }
        if (b >= t->nfences)
            continue;
        r->block = b;
        const char *end = t->map + block_off(t, b) + block_size(t, b);
        __builtin_prefetch(end - 1);
        __builtin_prefetch(end - 65);
    }
    /* 3: each key's entry, as the block's hash index places it */
    for (size_t i = 0; i < n; i++)
        if (reqs[i]->block != UINT64_MAX)
            hint_mapped(t, reqs[i]);
    /* 4: the searches, their bytes now in the cache or on their way */
    for (size_t i = 0; i < n; i++) {
        table_lookup *r = reqs[i];
        if (r->block != UINT64_MAX)
            r->rc = search_mapped(t, block_off(t, r->block), block_size(t, r->block), r->ukey, r->klen,
                                  r->hash, target, r->out, 0, &r->result);
    }
}

/* ---- the two-level iterator ---- */

typedef struct {
    iter base;
    table *t;
    block_cursor index;  /* over t->index; its entry names the loaded block */
    block_cursor data;   /* over ref; not valid while nothing is loaded */
    block_ref ref;
    uint64_t data_off;
    uint64_t ra_lo, ra_hi; /* the range of the mapping whose read-ahead this iterator requested */
    int loaded;
    int status;          /* sticky */
} table_iter_t;

#define TABLE_ITER_READAHEAD (256u * 1024u)

/* A mapped table advised random reads only the page a fault needs: an iterator asks for the next
 * TABLE_ITER_READAHEAD bytes ahead of it (behind it, going backward) as it reaches the end of what it
 * asked for before, so that a scan reads the file in large requests. */
static void ti_readahead(table_iter_t *ti, uint64_t off, uint64_t size, int forward)
{
    const table *t = ti->t;
    if (!t->map || !atomic_load_explicit(&t->random_reads, memory_order_relaxed))
        return;
    uint64_t end = off + size + TABLE_BLOCK_TRAILER, lo, hi;
    if (off < ti->ra_lo || end > ti->ra_hi) /* outside what was asked for (a seek): start again here */
        ti->ra_lo = ti->ra_hi = forward ? off : end;
    if (forward) {
        if (end + TABLE_ITER_READAHEAD / 2 <= ti->ra_hi)
            return;
        lo = ti->ra_hi;
        hi = lo + TABLE_ITER_READAHEAD < t->data_end ? lo + TABLE_ITER_READAHEAD : t->data_end;
        ti->ra_hi = hi > lo ? hi : lo;
    } else {
        if (off >= ti->ra_lo + TABLE_ITER_READAHEAD / 2)
            return;
        hi = ti->ra_lo;
        lo = hi > TABLE_ITER_READAHEAD ? hi - TABLE_ITER_READAHEAD : 0;
        ti->ra_lo = lo;
    }
    if (hi > lo)
        env_advise_willneed(t->map + lo, (size_t)(hi - lo));
}

static void ti_unload(table_iter_t *ti)
{
    block_cursor_invalidate(&ti->data);
    block_ref_release(&ti->ref);
    ti->loaded = 0;
}

static void ti_fail(table_iter_t *ti, int rc)
{
    ti->status = rc;
    ti_unload(ti);
}

enum { TI_INIT, TI_SEEK, TI_FIRST, TI_LAST, TI_NEXT, TI_PREV };

/* Move the index cursor (op; TI_SEEK to (u, ul, tr)) and decode the handle of the block it then names.
 * The index block may be read in place from the table's mapping, so this runs under a SIGBUS guard.
 * Returns 1 with *off, *size when the cursor is on an entry; 0 when it is past either end (the block
 * unloaded) or on an error (the iterator failed). */
static int ti_index_move(table_iter_t *ti, int op, const char *u, size_t ul, uint64_t tr, uint64_t *off,
                         uint64_t *size)
{
    const table *t = ti->t;
    env_guard g;
    int rc, on;
    if (sigsetjmp(g.jb, 0) == 0) {
        env_guard_enter(&g);
        rc = PL_OK;
        on = 0;
        switch (op) {
        case TI_INIT:
            rc = block_cursor_init(&ti->index, t->index, t->index_len);
            break;
        case TI_SEEK:
            block_cursor_seek(&ti->index, u, ul, tr);
            break;
        case TI_FIRST:
            block_cursor_seek_first(&ti->index);
            break;
        case TI_LAST:
            block_cursor_seek_last(&ti->index);
            break;
        case TI_NEXT:
            block_cursor_next(&ti->index);
            break;
        default:
            block_cursor_prev(&ti->index);
            break;
        }
        if (rc || op == TI_INIT)
            ;
        else if (!block_cursor_valid(&ti->index))
            rc = block_cursor_status(&ti->index);
        else if (table_decode_handle(block_cursor_value(&ti->index), block_cursor_vlen(&ti->index), off, size))
            rc = PL_FAIL(PL_CORRUPT, "bad block handle");
        else
            on = 1;
        env_guard_leave(&g);
    } else {
        rc = mapped_fault(t, t->index_off);
        on = 0;
    }
    if (rc)
        ti_fail(ti, block_error(t->path, t->index_off, rc));
    else if (!on)
        ti_unload(ti);
    return on && !rc;
}

/* Load the data block at off (the one the index cursor names). Returns non-zero (and fails the
 * iterator) on error. */
static int ti_load(table_iter_t *ti, uint64_t off, uint64_t size, int forward)
{
    if (ti->loaded && off == ti->data_off)
        return PL_OK;
    ti_unload(ti);
    ti_readahead(ti, off, size, forward);
    int rc = read_data_block(ti->t, off, size, 0, &ti->ref);
    if (!rc && (rc = block_cursor_reset(&ti->data, ti->ref.data, ti->ref.len)))
        rc = block_error(ti->t->path, off, rc);
    if (rc) {
        ti_fail(ti, rc);
        return rc;
    }
    ti->data_off = off;
    ti->loaded = 1;
    return PL_OK;
}

/* After a data cursor move: report its error, or step to the neighbouring block while it is invalid. */
static void ti_settle(table_iter_t *ti, int forward)
{
    while (!ti->status && !block_cursor_valid(&ti->data)) {
        if (block_cursor_status(&ti->data)) {
            ti_fail(ti, block_error(ti->t->path, ti->data_off, block_cursor_status(&ti->data)));
            return;
        }
        if (!ti->loaded || !block_cursor_valid(&ti->index)) {
            ti_unload(ti);
            return;
        }
        uint64_t off, size;
        if (!ti_index_move(ti, forward ? TI_NEXT : TI_PREV, NULL, 0, 0, &off, &size) ||
            ti_load(ti, off, size, forward))
            return;
        if (forward)
            block_cursor_seek_first(&ti->data);
        else
            block_cursor_seek_last(&ti->data);
    }
}

/* Position the index cursor (op) and load the block it names; 1 when a block is loaded. */
static int ti_enter(table_iter_t *ti, int op, const char *u, size_t ul, uint64_t tr)
{
    uint64_t off, size;
    return ti_index_move(ti, op, u, ul, tr, &off, &size) && ti_load(ti, off, size, op != TI_LAST) == PL_OK;
}

static void ti_seek(iter *it, const char *k, size_t n)
{
    table_iter_t *ti = (table_iter_t *)it;
    if (ti->status)
        return;
    const char *u = k;
    size_t ul = n;
    uint64_t tr = UINT64_MAX; /* a bare user key: before all its versions */
    if (n >= IKEY_TRAILER) {
        ul = n - IKEY_TRAILER;
        tr = get_u64(k + ul);
    }
    if (!ti_enter(ti, TI_SEEK, u, ul, tr))
        return;
    block_cursor_seek(&ti->data, u, ul, tr);
    ti_settle(ti, 1);
}

static void ti_seek_first(iter *it)
{
    table_iter_t *ti = (table_iter_t *)it;
    if (ti->status || !ti_enter(ti, TI_FIRST, NULL, 0, 0))
        return;
    block_cursor_seek_first(&ti->data);
    ti_settle(ti, 1);
}

static void ti_seek_last(iter *it)
{
    table_iter_t *ti = (table_iter_t *)it;
    if (ti->status || !ti_enter(ti, TI_LAST, NULL, 0, 0))
        return;
    block_cursor_seek_last(&ti->data);
    ti_settle(ti, 0);
}

static int ti_valid(const iter *it);

static void ti_next(iter *it)
{
    table_iter_t *ti = (table_iter_t *)it;
    if (!ti_valid(it)) /* REQUIRES valid; never touch a released block */
        return;
    block_cursor_next(&ti->data);
    ti_settle(ti, 1);
}

static void ti_prev(iter *it)
{
    table_iter_t *ti = (table_iter_t *)it;
    if (!ti_valid(it))
        return;
    block_cursor_prev(&ti->data);
    ti_settle(ti, 0);
}

static int ti_valid(const iter *it)
{
    const table_iter_t *ti = (const table_iter_t *)it;
    return !ti->status && ti->loaded && block_cursor_valid(&ti->data);
}

static void ti_key(const iter *it, const char **k, size_t *n)
{
    const table_iter_t *ti = (const table_iter_t *)it;
    *k = block_cursor_key(&ti->data);
    *n = block_cursor_klen(&ti->data);
}

static void ti_value(const iter *it, const char **v, size_t *n)
{
    const table_iter_t *ti = (const table_iter_t *)it;
    *v = block_cursor_value(&ti->data);
    *n = block_cursor_vlen(&ti->data);
}

static int ti_status(const iter *it) { return ((const table_iter_t *)it)->status; }

static void ti_destroy(iter *it)
{
    table_iter_t *ti = (table_iter_t *)it;
    ti_unload(ti);
    block_cursor_free(&ti->index);
    block_cursor_free(&ti->data);
    free(ti);
}

static const struct iter_ops table_iter_ops = {ti_seek, ti_seek_first, ti_seek_last, ti_next, ti_prev,
                                               ti_valid, ti_key, ti_value, ti_status, ti_destroy};

iter *table_iter(table *t)
{
    table_iter_t *ti = calloc(1, sizeof *ti);
    if (!ti)
        return NULL;
    ti->base.ops = &table_iter_ops;
    ti->t = t;
    /* The index was checked by table_open; the data cursor waits, invalid, for its first block. */
    block_cursor_init_empty(&ti->index);
    block_cursor_init_empty(&ti->data);
    ti_index_move(ti, TI_INIT, NULL, 0, 0, NULL, NULL);
    return &ti->base;
}

/* ---- verification ---- */

/* Whether the point index (the filter block's bytes at fblk) leads a lookup of the key with hash h to
 * the entry at (block, roff, pos): the search from the key's home bucket meets that slot before it ends. */
static int pidx_has(const table *t, const char *fblk, uint32_t h, uint32_t block, uint32_t roff, unsigned pos)
{
    return pindex_contains(fblk + (t->pidx_lay.buckets_off - t->filter_off), t->pidx_lay.nbuckets, h,
                           pindex_slot(h, block, roff, pos), NULL);
}

/* The point index's own checks for table_verify: the whole filter block's CRC (a read checks only the
 * chunks it needs), every chunk's CRC; *fblk gets the block's bytes.  PL_OK or PL_CORRUPT/PL_IOERR. */
static int verify_pidx(table *t, char **fblk)
{
    uint64_t size = t->index_off - TABLE_BLOCK_TRAILER - t->filter_off;
    int rc = read_block_raw(t->path, t->fd, t->filter_off, size, fblk);
    if (rc)
        return rc;
    const char *buckets = *fblk + (t->pidx_lay.buckets_off - t->filter_off);
    for (uint32_t c = 0; c < t->pidx_lay.nchunks; c++)
        if (!pindex_chunk_ok(&t->pidx_lay, t->pidx_crcs, buckets, c))
            return pidx_chunk_error(t, c);
    return PL_OK;
}

/* The number of used slots of the point index in fblk. */
static uint64_t pidx_used(const table *t, const char *fblk)
{
    const char *buckets = fblk + (t->pidx_lay.buckets_off - t->filter_off);
    uint64_t n = 0;
    for (uint64_t i = 0; i < (uint64_t)t->pidx_lay.nbuckets * PINDEX_BUCKET_SLOTS; i++)
        n += get_u64(buckets + 8 * i) != 0;
    return n;
}

int table_verify(const char *path, uint64_t file_size)
{
    table *t = NULL;
    int rc = open_table(path, file_size, NULL, 1, 0, &t);
    if (rc)
        return rc;
    block_cursor ic, dc;
    pl_buf prev = {0}, sep = {0}; /* the last key seen, the previous block's index entry */
    char *blk = NULL, *fblk = NULL;
    uint64_t off = 0, size, entries = 0, block_no = 0, distinct = 0;
    uint32_t region = UINT32_MAX;
    unsigned pos = 0;
    block_cursor_init(&ic, t->index, t->index_len);
    block_cursor_init_empty(&dc);
    if ((rc = block_cursor_check(&ic))) {
        rc = block_error(path, t->index_off, rc);
        goto out;
    }
    if (t->pidx_crcs && (rc = verify_pidx(t, &fblk)))
        goto out;
    for (block_cursor_seek_first(&ic); block_cursor_valid(&ic); block_cursor_next(&ic), block_no++) {
        if (table_decode_handle(block_cursor_value(&ic), block_cursor_vlen(&ic), &off, &size)) {
            rc = block_error(path, t->index_off, PL_FAIL(PL_CORRUPT, "bad block handle"));
            goto out;
        }
        free(blk);
        blk = NULL;
        int type = TABLE_BLOCK_RAW;
        size_t blen = (size_t)size;
        if ((rc = read_block_typed(path, t->fd, off, size, &blk, t->compressed, &type)) ||
            (rc = unpack_block(t, off, type, &blk, &blen)))
            goto out;
        if ((rc = block_cursor_reset(&dc, blk, blen)) || (rc = block_cursor_check(&dc)))
            goto out_data;
        block_cursor_seek_first(&dc);
        if (!block_cursor_valid(&dc) && !block_cursor_status(&dc)) {
            rc = PL_FAIL(PL_CORRUPT, "empty data block");
            goto out_data;
        }
        /* A get goes to the first block whose index entry is >= its target and does not look further,
         * so the previous block's entry must be that block's last key, or a user key below every user
         * key of this block (the two kinds the writer makes): else a get of this block's first user
         * key can search the block before. */
        if (sep.len && block_cursor_valid(&dc) &&
            !(sep.len == prev.len && !memcmp(sep.data, prev.data, sep.len)) &&
            ukey_cmp(sep.data, sep.len - IKEY_TRAILER, block_cursor_key(&dc),
                     block_cursor_klen(&dc) - IKEY_TRAILER) >= 0) {
            rc = PL_FAIL(PL_CORRUPT, "the previous block's index entry does not separate it from this block");
            goto out_data;
        }
        for (; block_cursor_valid(&dc); block_cursor_next(&dc)) {
            const char *k = block_cursor_key(&dc);
            size_t kn = block_cursor_klen(&dc);
            if (prev.len && ikey_cmp(prev.data, prev.len, k, kn) >= 0) {
                rc = PL_FAIL(PL_CORRUPT, "keys out of order at entry %llu of the table", (ull)entries);
                goto out_data;
            }
            int kind = ikey_kind(k, kn);
            if (kind != KIND_PUT && kind != KIND_DELETE) {
                rc = PL_FAIL(PL_CORRUPT, "unknown entry kind %d", kind);
                goto out_data;
            }
            /* A filter without the key would make table_get answer "absent" for it. */
            if (t->filter_len &&
                !bloom_may_contain(t->filter, t->filter_len, bloom_hash(k, kn - IKEY_TRAILER))) {
                rc = PL_FAIL(PL_CORRUPT, "%s: filter block at offset %llu: lacks the key of entry %llu", path,
                             (ull)t->filter_off, (ull)entries);
                goto out;
            }
            /* Likewise a point index that does not lead to the key's first entry. */
            if (block_cursor_restart(&dc) != region) {
                region = block_cursor_restart(&dc);
                pos = 0;
            } else {
                pos++;
            }
            if (fblk && (!prev.len || ukey_cmp(prev.data, prev.len - IKEY_TRAILER, k, kn - IKEY_TRAILER))) {
                distinct++;
                uint32_t roff = get_u32(dc.data + dc.data_end + 4 * (size_t)region);
                if (!pidx_has(t, fblk, bloom_hash(k, kn - IKEY_TRAILER), (uint32_t)block_no, roff, pos)) {
                    rc = PL_FAIL(PL_CORRUPT, "%s: point index at offset %llu: lacks the key of entry %llu", path,
                                 (ull)t->filter_off, (ull)entries);
                    goto out;
                }
            }
            if ((rc = buf_set(&prev, k, kn)))
                goto out;
            entries++;
        }
        region = UINT32_MAX;
        if ((rc = block_cursor_status(&dc)) || (rc = block_cursor_check_hash(&dc)))
            goto out_data;
        if (ikey_cmp(prev.data, prev.len, block_cursor_key(&ic), block_cursor_klen(&ic)) > 0) {
            rc = PL_FAIL(PL_CORRUPT, "last key is past its index entry");
            goto out_data;
        }
        if ((rc = buf_set(&sep, block_cursor_key(&ic), block_cursor_klen(&ic))))
            goto out;
    }
    rc = block_error(path, t->index_off, block_cursor_status(&ic));
    uint64_t used = !rc && fblk ? pidx_used(t, fblk) : distinct;
    if (used != distinct)
        rc = PL_FAIL(PL_CORRUPT, "%s: point index at offset %llu: %llu slots used for %llu keys", path,
                     (ull)t->filter_off, (ull)used, (ull)distinct);
    goto out;
out_data:
    rc = block_error(path, off, rc);
out:
    free(blk);
    free(fblk);
    pl_buf_free(&prev);
    pl_buf_free(&sep);
    block_cursor_free(&ic);
    block_cursor_free(&dc);
    table_close(t);
    return rc;
}
