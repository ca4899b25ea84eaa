/*
 * buf.h -- growable memory: the caller-owned pl_buf (bytes) and arrays of any element type.
 *
 * Both grow by doubling and report PL_NOMEM (through pl_fail) when allocation fails, leaving the
 * old contents in place.  Not thread safe: the owner serialises.
 */
#ifndef PL_BUF_H
#define PL_BUF_H

#include <stddef.h>
#include <string.h>

#include "pylsm.h"

/* Make room for `need` elements of `size` bytes in the array *arr of capacity *cap (in elements).
 * PL_OK or PL_NOMEM. */
int array_reserve(void *arr, size_t *cap, size_t need, size_t size);
/* Memory for buffers that grow to megabytes and go when their job is done (a table builder's per-key
 * arrays and point index, a memtable's sorted runs): from BIG_BYTES up it comes from the OS
 * (env_alloc_pages) and goes back whole at big_free, where malloc would keep it in the thread's arena
 * (docs/decisions.md, item 21); below, it is malloc's.  big_free takes the size big_alloc was given. */
#define BIG_BYTES (1u << 20)
void *big_alloc(size_t bytes);
void big_free(void *p, size_t bytes);
/* array_reserve over big_alloc's memory; such an array is freed by big_array_free. */
int big_array_reserve(void *arr, size_t *cap, size_t need, size_t size);
void big_array_free(void *arr, size_t *cap, size_t size);
/* qsort's comparison of two uint64_t (file numbers), ascending. */
int array_cmp_u64(const void *a, const void *b);

/* Make room for n bytes in b.  PL_OK or PL_NOMEM.  Inline: the iterators call it per entry, and it
 * nearly always has the room already. */
static inline int buf_reserve(pl_buf *b, size_t n)
{
    return n <= b->cap ? PL_OK : array_reserve(&b->data, &b->cap, n, 1);
}
/* memcpy(dst, src, n) for the short keys and values a scan copies per entry (no overlap): up to 128
 * bytes as inline 8- and 16-byte moves, since a call to memcpy and its size dispatch cost more than
 * such a copy; memcpy for the rest. */
static inline void buf_copy(char *dst, const char *src, size_t n)
{
    if (n >= 16 && n <= 128) {
        for (size_t i = 0; i + 16 < n; i += 16)
            memcpy(dst + i, src + i, 16);
        memcpy(dst + n - 16, src + n - 16, 16);
    } else if (n >= 8 && n < 16) {
        memcpy(dst, src, 8);
        memcpy(dst + n - 8, src + n - 8, 8);
    } else if (n) {
        memcpy(dst, src, n);
    }
}

/* Replace b's contents with n bytes of data.  PL_OK or PL_NOMEM. */
int buf_set(pl_buf *b, const void *data, size_t n);
/* Append n bytes of data to b's contents.  PL_OK or PL_NOMEM. */
int buf_append(pl_buf *b, const void *data, size_t n);

#endif
