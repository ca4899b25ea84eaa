/*
 * bloom.h -- bloom filters over user keys (docs/format_sstable.md, "Filter block").
 *
 * A filter is the bit array (a whole number of bytes, at least 64 bits) followed by one byte holding
 * the number of probes k.  Probe i of a key with hash h tests bit ((h + i * delta) mod 2^32) mod nbits,
 * bit b being bit b % 8 of byte b / 8, with delta a remix of h (double hashing as in LevelDB, with a
 * better stride; see bloom.c), so one 32-bit hash per key is all a filter needs.  A filter has no false
 * negatives; at 10 bits per key about 0.8% false positives.
 *
 * Thread safety: all functions are pure; a built filter may be probed by any number of threads.
 */
#ifndef PL_BLOOM_H
#define PL_BLOOM_H

#include <stddef.h>
#include <stdint.h>

#include "pylsm.h"

#define BLOOM_MAX_PROBES 30
#define BLOOM_MIN_BITS 64

/* The 32-bit hash a filter is built from and probed with (a murmur-style mix; stable across
 * platforms and versions because it is part of the file format). */
uint32_t bloom_hash(const char *key, size_t n);

/* Append to *out a filter over the n keys whose bloom_hash values are hashes[0..n) (duplicates are
 * harmless).  bits_per_key >= 1; the probe count is bits_per_key * 0.69 clamped to 1..30.
 * Returns PL_OK, PL_INVALID (bits_per_key < 1) or PL_NOMEM (*out unchanged on failure). */
int bloom_build(const uint32_t *hashes, size_t n, int bits_per_key, pl_buf *out);

/* 0 if no key with this hash was added to the filter [filter, filter + len), else 1 ("maybe").
 * An empty or malformed filter (shorter than 2 bytes, or a probe count outside 1..30, which is
 * reserved for other encodings) answers 1. */
int bloom_may_contain(const char *filter, size_t len, uint32_t hash);

#endif
