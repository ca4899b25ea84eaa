/* compress.c -- block compression with zstd and lz4 (compress.h). */
#include "compress.h"

#include <lz4.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#define ZDICT_STATIC_LINKING_ONLY /* ZDICT_trainFromBuffer_fastCover with set parameters */
#include <zdict.h>

#include "buf.h"
#include "coding.h"
#include "status.h"

#define ZSTD_LEVEL 3 /* the library's default (docs/decisions.md, item 11) */
#define MAX_RAW (64u << 20) /* no block is larger than a value may be (block_bytes <= 64 MiB) */

/* One zstd context of each kind per thread, made on first use and freed when the thread ends: making
 * one per block would allocate about a megabyte per block written and 100 KiB per block read. */
static pthread_key_t cctx_key, dctx_key;
static pthread_once_t keys_once = PTHREAD_ONCE_INIT;
static void free_cctx(void *c) { ZSTD_freeCCtx(c); }
static void free_dctx(void *d) { ZSTD_freeDCtx(d); }
static void make_keys(void)
{
    pthread_key_create(&cctx_key, free_cctx);
    pthread_key_create(&dctx_key, free_dctx);
}

static ZSTD_CCtx *thread_cctx(void)
{
    pthread_once(&keys_once, make_keys);
    ZSTD_CCtx *c = pthread_getspecific(cctx_key);
    if (!c && (c = ZSTD_createCCtx()) != NULL && pthread_setspecific(cctx_key, c) != 0) {
        ZSTD_freeCCtx(c);
        c = NULL;
    }
    return c;
}

static ZSTD_DCtx *thread_dctx(void)
{
    pthread_once(&keys_once, make_keys);
    ZSTD_DCtx *d = pthread_getspecific(dctx_key);
    if (!d && (d = ZSTD_createDCtx()) != NULL && pthread_setspecific(dctx_key, d) != 0) {
        ZSTD_freeDCtx(d);
        d = NULL;
    }
    return d;
}

const char *compress_name(int codec)
{
    return codec == COMPRESS_ZSTD        ? "zstd"
           : codec == COMPRESS_ZSTD_DICT ? "zstd (with the table's dictionary)"
           : codec == COMPRESS_LZ4       ? "lz4"
                                         : "none";
}

struct compress_dict {
    ZSTD_CDict *cd; /* for_write */
    ZSTD_DDict *dd; /* to read */
};

int compress_block(int codec, const char *in, size_t n, pl_buf *out, int *pays)
{
    *pays = 0;
    if (n > MAX_RAW || (codec != COMPRESS_ZSTD && codec != COMPRESS_LZ4))
        return PL_OK;
    size_t bound = codec == COMPRESS_ZSTD ? ZSTD_compressBound(n) : (size_t)LZ4_compressBound((int)n);
    if (buf_reserve(out, 5 + bound))
        return PL_FAIL(PL_NOMEM, "out of memory (compressing a block of %zu bytes)", n);
    char *p = put_varint32(out->data, (uint32_t)n);
    size_t head = (size_t)(p - out->data), got;
    if (codec == COMPRESS_ZSTD) {
        ZSTD_CCtx *c = thread_cctx();
        if (!c)
            return PL_FAIL(PL_NOMEM, "out of memory (a zstd context)");
        got = ZSTD_compressCCtx(c, p, bound, in, n, ZSTD_LEVEL);
        if (ZSTD_isError(got))
            return PL_OK; /* stored raw */
    } else {
        int r = LZ4_compress_default(in, p, (int)n, (int)bound);
        if (r <= 0)
            return PL_OK;
        got = (size_t)r;
    }
    out->len = head + got;
    *pays = out->len <= n - n / 8;
    return PL_OK;
}

int decompress_block(int codec, const compress_dict *dict, const char *in, size_t n, char **out,
                     size_t *out_len)
{
    uint32_t raw;
    const char *p = get_varint32(in, in + n, &raw);
    if (!p || raw > MAX_RAW ||
        (codec != COMPRESS_ZSTD && codec != COMPRESS_LZ4 && !(codec == COMPRESS_ZSTD_DICT && dict)))
        return PL_CORRUPT;
    size_t clen = n - (size_t)(p - in);
    char *buf = malloc(raw ? raw : 1);
    if (!buf)
        return PL_FAIL(PL_NOMEM, "out of memory (a %u-byte block)", raw);
    int ok;
    if (codec != COMPRESS_LZ4) {
        ZSTD_DCtx *d = thread_dctx();
        if (!d) {
            free(buf);
            return PL_FAIL(PL_NOMEM, "out of memory (a zstd context)");
        }
        size_t got = codec == COMPRESS_ZSTD_DICT ? ZSTD_decompress_usingDDict(d, buf, raw, p, clen, dict->dd)
                                                 : ZSTD_decompressDCtx(d, buf, raw, p, clen);
        ok = !ZSTD_isError(got) && got == raw;
    } else {
        int got = LZ4_decompress_safe(p, buf, (int)clen, (int)raw);
        ok = got >= 0 && (uint32_t)got == raw;
    }
    if (!ok) {
        free(buf);
        return PL_CORRUPT;
    }
    *out = buf;
    *out_len = raw;
    return PL_OK;
}

/* fastCover with set parameters (k: segment, d: d-mer size), trained once: about 10 ms for 512 KiB of
 * samples, where the library's default search over parameters takes over 100 ms, for the same ratio
 * on the records measured (docs/decisions.md, item 18). */
#define DICT_K 200
#define DICT_D 8
#define DICT_F 20

int compress_train(const char *samples, size_t len, size_t piece, size_t max_bytes, pl_buf *out)
{
    out->len = 0;
    size_t n = piece ? len / piece : 0;
    if (n < 8 || max_bytes < 256) /* too few samples to learn from */
        return PL_OK;
    size_t *sizes = malloc(n * sizeof *sizes);
    if (!sizes || buf_reserve(out, max_bytes)) {
        free(sizes);
        return PL_FAIL(PL_NOMEM, "out of memory (a compression dictionary)");
    }
    for (size_t i = 0; i < n; i++)
        sizes[i] = piece;
    ZDICT_fastCover_params_t fp;
    memset(&fp, 0, sizeof fp);
    fp.k = DICT_K;
    fp.d = DICT_D;
    fp.f = DICT_F;
    fp.accel = 1;
    fp.zParams.compressionLevel = ZSTD_LEVEL;
    size_t got = ZDICT_trainFromBuffer_fastCover(out->data, max_bytes, samples, sizes, (unsigned)n, fp);
    free(sizes);
    out->len = ZDICT_isError(got) ? 0 : got; /* samples that make no dictionary: none */
    return PL_OK;
}

int compress_dict_new(const char *dict, size_t len, int for_write, compress_dict **out)
{
    compress_dict *d = calloc(1, sizeof *d);
    if (!d)
        return PL_FAIL(PL_NOMEM, "out of memory (a compression dictionary)");
    if (for_write)
        d->cd = ZSTD_createCDict(dict, len, ZSTD_LEVEL);
    else
        d->dd = ZSTD_createDDict(dict, len);
    if (!d->cd && !d->dd) {
        free(d);
        /* zstd says only that it failed: a dictionary in its format whose header (entropy tables) it
         * refuses, or no memory.  Raw content (no magic number) is always taken. */
        if (len >= 8 && get_u32(dict) == ZSTD_MAGIC_DICTIONARY && ZDICT_isError(ZDICT_getDictHeaderSize(dict, len)))
            return PL_CORRUPT;
        return PL_FAIL(PL_NOMEM, "out of memory (a compression dictionary of %zu bytes)", len);
    }
    *out = d;
    return PL_OK;
}

void compress_dict_free(compress_dict *d)
{
    if (!d)
        return;
    ZSTD_freeCDict(d->cd);
    ZSTD_freeDDict(d->dd);
    free(d);
}

size_t compress_dict_heap_bytes(const compress_dict *d)
{
    return d ? sizeof *d + (d->cd ? ZSTD_sizeof_CDict(d->cd) : 0) + (d->dd ? ZSTD_sizeof_DDict(d->dd) : 0) : 0;
}

int compress_block_dict(const compress_dict *d, const char *in, size_t n, pl_buf *out, int *pays)
{
    *pays = 0;
    if (n > MAX_RAW || !d->cd)
        return PL_OK;
    size_t bound = ZSTD_compressBound(n);
    if (buf_reserve(out, 5 + bound))
        return PL_FAIL(PL_NOMEM, "out of memory (compressing a block of %zu bytes)", n);
    ZSTD_CCtx *c = thread_cctx();
    if (!c)
        return PL_FAIL(PL_NOMEM, "out of memory (a zstd context)");
    char *p = put_varint32(out->data, (uint32_t)n);
    size_t head = (size_t)(p - out->data);
    /* The frame leaves out what the block's own header and trailer say (its size) or what the table
     * implies (which dictionary): a few bytes of a block of a few hundred. */
    ZSTD_CCtx_reset(c, ZSTD_reset_session_and_parameters);
    size_t got = ZSTD_CCtx_setParameter(c, ZSTD_c_dictIDFlag, 0);
    if (!ZSTD_isError(got))
        got = ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 0);
    if (!ZSTD_isError(got))
        got = ZSTD_CCtx_refCDict(c, d->cd);
    if (!ZSTD_isError(got))
        got = ZSTD_compress2(c, p, bound, in, n);
    ZSTD_CCtx_reset(c, ZSTD_reset_session_and_parameters); /* (the plain compress_block's context again) */
    if (ZSTD_isError(got))
        return PL_OK; /* stored raw */
    out->len = head + got;
    *pays = out->len <= n - n / 8;
    return PL_OK;
}
