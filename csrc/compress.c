/* compress.c -- block compression with zstd and lz4 (compress.h). */
#include "compress.h"

#include <lz4.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

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
    return codec == COMPRESS_ZSTD ? "zstd" : codec == COMPRESS_LZ4 ? "lz4" : "none";
}

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

int decompress_block(int codec, const char *in, size_t n, char **out, size_t *out_len)
{
    uint32_t raw;
    const char *p = get_varint32(in, in + n, &raw);
    if (!p || raw > MAX_RAW || (codec != COMPRESS_ZSTD && codec != COMPRESS_LZ4))
        return PL_CORRUPT;
    size_t clen = n - (size_t)(p - in);
    char *buf = malloc(raw ? raw : 1);
    if (!buf)
        return PL_FAIL(PL_NOMEM, "out of memory (a %u-byte block)", raw);
    int ok;
    if (codec == COMPRESS_ZSTD) {
        ZSTD_DCtx *d = thread_dctx();
        if (!d) {
            free(buf);
            return PL_FAIL(PL_NOMEM, "out of memory (a zstd context)");
        }
        size_t got = ZSTD_decompressDCtx(d, buf, raw, p, clen);
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
