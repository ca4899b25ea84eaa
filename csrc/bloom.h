/*
 * bloom.h -- bloom filters over user keys (docs/format.md, "Filter block").
 *
 * A filter is blocked: an array of 512-bit lines (one CPU cache line each), then a byte holding the
 * number of probes k, then the tag byte BLOOM_BLOCKED_TAG.  A key with hash h lives in line
 * (h * nlines) >> 32; its k probes test bits of that line only (bit positions: the top 9 bits of a
 * remix of h, multiplied by 0x9e3779b9 between probes; see bloom.c), so a lookup touches one cache
 * line where a classic filter touches k.  One 32-bit hash per key is all a filter needs; no false
 * negatives; at 10 bits per key about 1% false positives (0.8% for the classic layout).
 *
 * The first format (the bit array, then k, no tag: k probes ((h + i * delta) mod 2^32) mod nbits over
 * the whole array) is still read, for tables written before the blocked layout.
 *
 * Thread safety: all functions are pure; a built filter may be probed by any number of threads.
 */
#ifndef PL_BLOOM_H
#define PL_BLOOM_H

#include <stddef.h>
#include <stdint.h>

#include "pylsm.h"

#define BLOOM_MAX_PROBES 30
#define BLOOM_MIN_BITS 64     /* the first format's minimum */
#define BLOOM_LINE_BITS 512
#define BLOOM_BLOCKED_TAG 0xB1 /* last byte of a blocked filter (never a valid first-format k) */

/* The 32-bit hash a filter is built from and probed with (a murmur-style mix; stable across
 * platforms and versions because it is part of the file format). */
uint32_t bloom_hash(const char *key, size_t n);
/* Start loading the part of the filter that bloom_may_contain(filter, len, hash) reads (a hint: it
 * reads nothing but the filter's last byte and never faults). */
void bloom_prefetch(const char *filter, size_t len, uint32_t hash);
/* The lines of a blocked filter of len bytes (0 for the first format or bytes that are no filter), for
 * bloom_prefetch_line: read once from bytes that cannot fault (a heap copy), then kept. */
size_t bloom_lines(const char *filter, size_t len);
/* The line of a key: h scaled onto [0, nlines) by a multiply and a shift (no division). */
static inline size_t bloom_line_of(uint32_t h, size_t nlines) { return (size_t)(((uint64_t)h * nlines) >> 32); }
/* Start loading the line of a blocked filter of nlines lines (bloom_lines) that a key with this hash
 * probes: reads nothing, so a mapped filter needs no guard. */
static inline void bloom_prefetch_line(const char *filter, size_t nlines, uint32_t hash)
{
    if (nlines)
        __builtin_prefetch(filter + bloom_line_of(hash, nlines) * (BLOOM_LINE_BITS / 8));
}

/* Append to *out a filter over the n keys whose bloom_hash values are hashes[0..n) (duplicates are
 * harmless).  bits_per_key >= 1; the probe count is bits_per_key * 0.69 clamped to 1..30.
 * Returns PL_OK, PL_INVALID (bits_per_key < 1) or PL_NOMEM (*out unchanged on failure). */
int bloom_build(const uint32_t *hashes, size_t n, int bits_per_key, pl_buf *out);

/* 0 if no key with this hash was added to the filter [filter, filter + len), else 1 ("maybe").
 * An empty or malformed filter (shorter than 2 bytes, a probe count outside 1..30, a blocked filter
 * that is not whole lines) answers 1. */
int bloom_may_contain(const char *filter, size_t len, uint32_t hash);

#endif
