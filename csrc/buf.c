/* buf.c -- growable memory; see buf.h. */
#include "buf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "env.h"
#include "status.h"

int array_reserve(void *arr, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return PL_OK;
    size_t c = *cap ? *cap : 16;
    while (c < need)
        c = c <= SIZE_MAX / 2 ? c * 2 : need;
    if (c > SIZE_MAX / size)
        return PL_FAIL(PL_NOMEM, "out of memory (%zu elements of %zu bytes)", need, size);
    void **p = arr;
    void *q = realloc(*p, c * size);
    if (!q)
        return PL_FAIL(PL_NOMEM, "out of memory (%zu bytes)", c * size);
    *p = q;
    *cap = c;
    return PL_OK;
}

int big_array_reserve(void *arr, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return PL_OK;
    size_t page = env_page_size();
    size_t c = *cap ? *cap : (64u << 10) / size;
    while (c < need)
        c = c <= SIZE_MAX / 2 ? c * 2 : need;
    if (c > (SIZE_MAX - page) / size)
        return PL_FAIL(PL_NOMEM, "out of memory (%zu elements of %zu bytes)", need, size);
    size_t bytes = (c * size + page - 1) / page * page;
    void **p = arr;
    void *q = env_realloc_pages(*p, *cap ? (*cap * size + page - 1) / page * page : 0, bytes);
    if (!q)
        return PL_FAIL(PL_NOMEM, "out of memory (%zu bytes)", bytes);
    *p = q;
    *cap = bytes / size;
    return PL_OK;
}

void big_array_free(void *arr, size_t *cap, size_t size)
{
    void **p = arr;
    size_t page = env_page_size();
    if (*p)
        env_free_pages(*p, (*cap * size + page - 1) / page * page);
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
