/*
 * ikey.h -- internal keys: how one user key's versions are told apart and ordered (docs/format.md).
 *
 * An internal key is the user key followed by an 8-byte little-endian trailer (lsn << 8 | kind).
 * Order: user keys bytewise ascending (memcmp, a prefix first), then trailers descending, so the
 * newest version of a key comes first and a seek to (key, S) lands on the newest version with lsn <= S.
 */
#ifndef PL_IKEY_H
#define PL_IKEY_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "coding.h"

#define KIND_DELETE 0
#define KIND_PUT 1
#define KIND_SEEK KIND_PUT /* the highest kind: seek keys sort before every entry of their LSN */
#define IKEY_TRAILER 8
#define LSN_MAX ((UINT64_C(1) << 56) - 1)

/* Outcome of a point lookup in one source (memtable, table). */
enum { LOOKUP_FOUND = 0, LOOKUP_DELETED = 1, LOOKUP_ABSENT = 2 };

static inline uint64_t ikey_pack(uint64_t lsn, int kind) { return (lsn << 8) | (uint64_t)kind; }
static inline uint64_t ikey_trailer(const char *ikey, size_t n) { return get_u64(ikey + n - 8); }
static inline uint64_t ikey_lsn(const char *ikey, size_t n) { return ikey_trailer(ikey, n) >> 8; }
static inline int ikey_kind(const char *ikey, size_t n) { return (int)(ikey_trailer(ikey, n) & 0xff); }
static inline size_t ikey_ulen(size_t n) { return n - IKEY_TRAILER; }

/* The order of the 8 bytes at a and at b as unsigned big-endian numbers (memcmp's order). */
static inline int word_cmp8(const char *a, const char *b, int *r)
{
    uint64_t x, y;
    memcpy(&x, a, 8);
    memcpy(&y, b, 8);
    if (x == y)
        return 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    x = __builtin_bswap64(x);
    y = __builtin_bswap64(y);
#endif
    *r = x < y ? -1 : 1;
    return 1;
}

/* Bytewise order of user keys (the sign of memcmp, then the shorter first).  Keys of 8 to 32 common
 * bytes are compared inline, 8 bytes at a time (the last window overlapping the one before): the
 * iterators compare keys at every step, and a call to memcmp costs more than such a comparison. */
static inline int ukey_cmp(const char *a, size_t an, const char *b, size_t bn)
{
    size_t m = an < bn ? an : bn;
    int r = 0;
    if (m >= 8 && m <= 32) {
        size_t i = 0;
        for (; i + 8 <= m; i += 8)
            if (word_cmp8(a + i, b + i, &r))
                return r;
        if (i < m && word_cmp8(a + m - 8, b + m - 8, &r))
            return r;
    } else if (m) {
        r = memcmp(a, b, m);
        if (r)
            return r;
    }
    return an < bn ? -1 : an > bn;
}

/* Order of internal keys (both n >= 8). */
static inline int ikey_cmp(const char *a, size_t an, const char *b, size_t bn)
{
    int r = ukey_cmp(a, an - 8, b, bn - 8);
    if (r)
        return r;
    uint64_t ta = get_u64(a + an - 8), tb = get_u64(b + bn - 8);
    return ta > tb ? -1 : ta < tb;
}

/* Write user key + trailer to dst (which has room for klen + 8). */
static inline void ikey_build(char *dst, const void *ukey, size_t klen, uint64_t lsn, int kind)
{
    if (klen)
        memcpy(dst, ukey, klen);
    put_u64(dst + klen, ikey_pack(lsn, kind));
}

#endif
