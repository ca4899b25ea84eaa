/* buf.c -- growable memory; see buf.h. */
#include "buf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "env.h"
#include "status.h"

/* The capacity, in elements, that makes room for need: doubled from cap (16 at first). 0 on overflow. */
static size_t grown(size_t cap, size_t need, size_t size)
{
    size_t c = cap ? cap : 16;
    while (c < need)
        c = c <= SIZE_MAX / 2 ? c * 2 : need;
    return c > SIZE_MAX / size ? 0 : c;
}

int array_reserve(void *arr, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return PL_OK;
    size_t c = grown(*cap, need, size);
    if (!c)
        return PL_FAIL(PL_NOMEM, "out of memory (%zu elements of %zu bytes)", need, size);
    void **p = arr;
    void *q = realloc(*p, c * size);
    if (!q)
        return PL_FAIL(PL_NOMEM, "out of memory (%zu bytes)", c * size);
    *p = q;
    *cap = c;
    return PL_OK;
}

void *big_alloc(size_t bytes) { return bytes >= BIG_BYTES ? env_alloc_pages(bytes) : malloc(bytes ? bytes : 1); }

void big_free(void *p, size_t bytes)
{
    if (bytes >= BIG_BYTES)
        env_free_pages(p, bytes);
    else
        free(p);
}

int big_array_reserve(void *arr, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return PL_OK;
    size_t c = grown(*cap, need, size);
    if (!c)
        return PL_FAIL(PL_NOMEM, "out of memory (%zu elements of %zu bytes)", need, size);
    void **p = arr;
    void *q = c * size < BIG_BYTES ? realloc(*p, c * size) : big_alloc(c * size);
    if (!q)
        return PL_FAIL(PL_NOMEM, "out of memory (%zu bytes)", c * size);
    if (c * size >= BIG_BYTES && *p) {
        /* a new mapping and a copy, not mremap: the thread sanitizer does not follow pages mremap
         * moves (their old accesses show as races at the new address); doubling amortizes the copy */
        memcpy(q, *p, *cap * size);
        big_free(*p, *cap * size);
    }
    *p = q;
    *cap = c;
    return PL_OK;
}

void big_array_free(void *arr, size_t *cap, size_t size)
{
    void **p = arr;
    if (*p)
        big_free(*p, *cap * size);
    *p = NULL;
    *cap = 0;
}

int buf_set(pl_buf *b, const void *data, size_t n)
{
    int rc = buf_reserve(b, n ? n : 1);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data, data, n);
    b->len = n;
    return PL_OK;
}

int buf_append(pl_buf *b, const void *data, size_t n)
{
    if (n > SIZE_MAX - b->len)
        return PL_FAIL(PL_NOMEM, "out of memory (%zu bytes)", n);
    int rc = buf_reserve(b, b->len + n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->len, data, n);
    b->len += n;
    return PL_OK;
}

void pl_buf_free(pl_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int array_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}
