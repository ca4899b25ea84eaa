/*
 * buf.h -- growable memory: the caller-owned pl_buf (bytes) and arrays of any element type.
 *
 * Both grow by doubling and report PL_NOMEM (through pl_fail) when allocation fails, leaving the
 * old contents in place.  Not thread safe: the owner serialises.
 */
#ifndef PL_BUF_H
#define PL_BUF_H

#include <stddef.h>

#include "pylsm.h"

/* Make room for `need` elements of `size` bytes in the array *arr of capacity *cap (in elements).
 * PL_OK or PL_NOMEM. */
int array_reserve(void *arr, size_t *cap, size_t need, size_t size);

/* Make room for n bytes in b.  PL_OK or PL_NOMEM.  Inline: the iterators call it per entry, and it
 * nearly always has the room already. */
static inline int buf_reserve(pl_buf *b, size_t n)
{
    return n <= b->cap ? PL_OK : array_reserve(&b->data, &b->cap, n, 1);
}
/* Replace b's contents with n bytes of data.  PL_OK or PL_NOMEM. */
int buf_set(pl_buf *b, const void *data, size_t n);

#endif
