/* batch.c -- write batches; see batch.h. */
#include "batch.h"

#include <stdlib.h>
#include <string.h>

#include "coding.h"
#include "ikey.h"
#include "memtable.h"
#include "status.h"

int batch_check_sizes(size_t klen, size_t vlen)
{
    if (klen > PL_MAX_KEY)
        return PL_FAIL(PL_INVALID, "key of %zu bytes is over the limit of %u bytes", klen, PL_MAX_KEY);
    if (vlen > PL_MAX_VALUE)
        return PL_FAIL(PL_INVALID, "value of %zu bytes is over the limit of %u bytes", vlen, PL_MAX_VALUE);
    return PL_OK;
}

char *batch_encode_op(char *dst, int kind, const void *key, size_t klen, const void *val, size_t vlen)
{
    *dst++ = (char)kind;
    dst = put_varint64(dst, klen);
    if (klen)
        memcpy(dst, key, klen);
    dst += klen;
    if (kind == KIND_PUT) {
        dst = put_varint64(dst, vlen);
        if (vlen)
            memcpy(dst, val, vlen);
        dst += vlen;
    }
    return dst;
}

uint64_t batch_record_lsns(const char *rep, size_t len) { return batch_rep_count(rep); }

int batch_iterate(const char *rep, size_t len, batch_op_fn fn, void *ctx)
{
    if (len < BATCH_HEADER)
        return PL_FAIL(PL_CORRUPT, "batch shorter than its header");
    uint32_t count = get_u32(rep);
    const char *p = rep + BATCH_HEADER, *end = rep + len;
    uint32_t i = 0;
    while (p < end) {
        int kind = (unsigned char)*p++;
        uint64_t klen, vlen = 0;
        const char *key, *val = NULL;
        if (kind != KIND_PUT && kind != KIND_DELETE)
            return PL_FAIL(PL_CORRUPT, "batch operation %u has unknown kind %d", i, kind);
        p = get_varint64(p, end, &klen);
        if (!p || klen > (uint64_t)(end - p))
            return PL_FAIL(PL_CORRUPT, "batch operation %u has a bad key length", i);
        key = p;
        p += klen;
        if (kind == KIND_PUT) {
            p = get_varint64(p, end, &vlen);
            if (!p || vlen > (uint64_t)(end - p))
                return PL_FAIL(PL_CORRUPT, "batch operation %u has a bad value length", i);
            val = p;
            p += vlen;
        }
        if (i >= count)
            return PL_FAIL(PL_CORRUPT, "batch holds more operations than its count %u", count);
        int rc = fn(ctx, i, kind, key, (size_t)klen, val, (size_t)vlen);
        if (rc)
            return rc;
        i++;
    }
    if (i != count)
        return PL_FAIL(PL_CORRUPT, "batch count %u but %u operations", count, i);
    return PL_OK;
}

/* ---- the public pl_batch ---- */

pl_batch *pl_batch_new(void)
{
    pl_batch *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    if (buf_reserve(&b->rep, 256)) {
        free(b);
        return NULL;
    }
    memset(b->rep.data, 0, BATCH_HEADER);
    b->rep.len = BATCH_HEADER;
    return b;
}

void pl_batch_free(pl_batch *b)
{
    if (b) {
        pl_buf_free(&b->rep);
        free(b);
    }
}

static int batch_add(pl_batch *b, int kind, const void *key, size_t klen, const void *val, size_t vlen)
{
    int rc = batch_check_sizes(klen, vlen);
    if (rc)
        return rc;
    if (pl_batch_count(b) == UINT32_MAX)
        return PL_FAIL(PL_INVALID, "batch holds too many operations");
    /* A batch is one WAL record, whose length field is 32 bits. */
    if (b->rep.len + batch_op_size(klen, vlen, kind == KIND_PUT) > BATCH_MAX_BYTES)
        return PL_FAIL(PL_INVALID, "batch would exceed %u bytes (one WAL record); split it", BATCH_MAX_BYTES);
    rc = buf_reserve(&b->rep, b->rep.len + batch_op_size(klen, vlen, kind == KIND_PUT));
    if (rc)
        return rc;
    char *end = batch_encode_op(b->rep.data + b->rep.len, kind, key, klen, val, vlen);
    b->rep.len = (size_t)(end - b->rep.data);
    put_u32(b->rep.data, pl_batch_count(b) + 1);
    b->user_bytes += klen + vlen;
    b->deletes += kind == KIND_DELETE;
    return PL_OK;
}

int pl_batch_put(pl_batch *b, const void *key, size_t klen, const void *val, size_t vlen)
{
    return batch_add(b, KIND_PUT, key, klen, val, vlen);
}

int pl_batch_put_many(pl_batch *b, size_t n, const char *const *keys, const size_t *klens, const char *const *vals,
                      const size_t *vlens)
{
    size_t add = 0, user = 0;
    for (size_t i = 0; i < n; i++) {
        int rc = batch_check_sizes(klens[i], vlens[i]);
        if (rc)
            return rc;
        add += batch_op_size(klens[i], vlens[i], 1);
        user += klens[i] + vlens[i];
    }
    if (n > UINT32_MAX - pl_batch_count(b))
        return PL_FAIL(PL_INVALID, "batch holds too many operations");
    if (b->rep.len + add > BATCH_MAX_BYTES)
        return PL_FAIL(PL_INVALID, "batch would exceed %u bytes (one WAL record); split it", BATCH_MAX_BYTES);
    int rc = buf_reserve(&b->rep, b->rep.len + add);
    if (rc)
        return rc;
    char *end = b->rep.data + b->rep.len;
    for (size_t i = 0; i < n; i++)
        end = batch_encode_op(end, KIND_PUT, keys[i], klens[i], vals[i], vlens[i]);
    b->rep.len = (size_t)(end - b->rep.data);
    put_u32(b->rep.data, pl_batch_count(b) + (uint32_t)n);
    b->user_bytes += user;
    return PL_OK;
}

int pl_batch_delete(pl_batch *b, const void *key, size_t klen)
{
    return batch_add(b, KIND_DELETE, key, klen, NULL, 0);
}

void pl_batch_clear(pl_batch *b)
{
    memset(b->rep.data, 0, BATCH_HEADER);
    b->rep.len = BATCH_HEADER;
    b->user_bytes = 0;
    b->deletes = 0;
}

uint32_t pl_batch_count(const pl_batch *b) { return get_u32(b->rep.data); }
