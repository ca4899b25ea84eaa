/*
 * pindex.h -- the point index: a table-wide hash table from a user key to its entry
 * (docs/format.md, "Point index"; docs/decisions.md, item 5d).
 *
 * A table written with a point index carries it in the filter block, with the bloom filter in its tail.  It
 * holds one 8-byte slot per distinct user key of the table, naming where the key's first (newest)
 * entry is: its data block (by ordinal), the offset of the restart region holding it within the block,
 * and its position in that region.  A point read hashes the key (bloom_hash), reads one 64-byte bucket
 * of eight slots, and goes straight to the entry: no index search, no read of the data block's restart
 * array.  A bucket with a free slot and no slot of the key's fingerprint means "absent"
 * (as a filter would, with about one false "maybe" in 8,000 absent keys instead of one in 100).
 *
 * Buckets are 64-byte aligned in the file (the writer pads the block's start), so a probe reads one
 * CPU cache line.  They are read in place from the table's mapping, never copied: the index costs no
 * heap memory.  Every 64 buckets (4 KiB) form a chunk with its own CRC32C, checked the first time a
 * lookup reads the chunk in an open, so opening a table reads only the index's small tail.  The tail
 * carries the table's bloom filter too (or none): small enough to stay in the CPU's caches, it keeps
 * lookups of keys a table does not hold (in L0 and upper levels) from reading the index at all.
 *
 *   point_index := u8[pad]  bucket[nbuckets]  u32 chunk_crc[nchunks]  u8 filter[filter_len]
 *                  u32 filter_len  u32 nbuckets  u8 pad  u32 tail_crc  u8 0xC2
 *   bucket      := u64 slot[8]                       (64 bytes)
 *   slot        := 0 (free) | fingerprint (bits 0-15, never 0) | pos (16-17) | region offset (18-39)
 *                  | block ordinal (40-63)
 *
 * Thread safety: all functions are pure.
 */
#ifndef PL_PINDEX_H
#define PL_PINDEX_H

#include <stddef.h>
#include <stdint.h>

#include "coding.h"
#include "pylsm.h"

#define PINDEX_TAG 0xC2           /* last byte of the filter block (never a bloom filter's last byte) */
#define PINDEX_BUCKET_SLOTS 8
#define PINDEX_BUCKET_BYTES 64
#define PINDEX_CHUNK_BUCKETS 64   /* buckets per checksum: 4 KiB */
#define PINDEX_KEYS_PER_SLOT 0.8  /* load factor the writer sizes for */
#define PINDEX_TAIL_BYTES 14      /* u32 filter_len, u32 nbuckets, u8 pad, u32 tail_crc, u8 tag */
#define PINDEX_MAX_POS 3u
#define PINDEX_MAX_REGION_OFF ((UINT32_C(1) << 22) - 1)
#define PINDEX_MAX_BLOCK ((UINT32_C(1) << 24) - 1)

static inline uint16_t pindex_fingerprint(uint32_t h)
{
    uint16_t f = (uint16_t)((h * 0x2c1b3c6du) >> 16);
    return f ? f : 1;
}

static inline uint32_t pindex_home(uint32_t h, uint32_t nbuckets)
{
    uint32_t x = h * 0x9e3779b1u;
    x ^= x >> 16;
    return (uint32_t)(((uint64_t)x * nbuckets) >> 32);
}

/* The slot of a key (hash h) whose first entry is entry `pos` of the region at byte `region_off` of data
 * block `block`.  REQUIRES: pos <= PINDEX_MAX_POS, region_off <= PINDEX_MAX_REGION_OFF,
 * block <= PINDEX_MAX_BLOCK. */
static inline uint64_t pindex_slot(uint32_t h, uint32_t block, uint32_t region_off, unsigned pos)
{
    return (uint64_t)pindex_fingerprint(h) | (uint64_t)pos << 16 | (uint64_t)region_off << 18 |
           (uint64_t)block << 40;
}
static inline unsigned pindex_slot_pos(uint64_t s) { return (unsigned)(s >> 16) & 3u; }
static inline uint32_t pindex_slot_region(uint64_t s) { return (uint32_t)(s >> 18) & PINDEX_MAX_REGION_OFF; }
static inline uint32_t pindex_slot_block(uint64_t s) { return (uint32_t)(s >> 40); }

/* Scan a bucket from slot *i on for the fingerprint fp.  PINDEX_MATCH: *slot is the next slot with
 * fp (and *i is past it); PINDEX_END: a free slot ends the search (the key is absent); PINDEX_NEXT: the
 * bucket is full and holds no further match, the search goes on in the next bucket (wrapping). */
enum { PINDEX_MATCH = 1, PINDEX_END = 0, PINDEX_NEXT = 2 };
static inline int pindex_scan(const char *bucket, uint16_t fp, unsigned *i, uint64_t *slot)
{
    for (; *i < PINDEX_BUCKET_SLOTS; (*i)++) {
        uint64_t s = get_u64(bucket + 8 * *i);
        if (!s)
            return PINDEX_END;
        if ((uint16_t)s == fp) {
            *slot = s;
            (*i)++;
            return PINDEX_MATCH;
        }
    }
    return PINDEX_NEXT;
}

/* Whether the search for hash h in the buckets meets the slot `slot` (with h's fingerprint) before it
 * ends; *probes (may be NULL): the buckets read.  For checks (verify, tests): a read compares keys. */
int pindex_contains(const char *buckets, uint32_t nbuckets, uint32_t h, uint64_t slot, int *probes);

/* The most bytes pindex_build appends for n keys and a bloom filter of filter_len bytes. */
size_t pindex_max_bytes(size_t n, size_t filter_len);

/* Append to *out a point index over n keys: hashes[i] is key i's bloom_hash and slots[i] its slot
 * (pindex_slot), the filter block starting at file offset block_off (for the alignment), carrying the
 * bloom filter [filter, filter + filter_len) (filter_len may be 0).  Keys must be distinct (duplicates
 * are stored twice, harmlessly).  PL_OK, PL_INVALID (n == 0 or too many keys) or PL_NOMEM (*out
 * unchanged on failure). */
int pindex_build(const uint32_t *hashes, const uint64_t *slots, size_t n, uint64_t block_off, const char *filter,
                 size_t filter_len, pl_buf *out);

/* The layout of the point index filling the filter block of `size` bytes at file offset block_off, from
 * the block's last PINDEX_TAIL_BYTES bytes (tail).  Checks the tag, the padding, the alignment and the
 * sizes (not the CRCs).  PL_OK and the fields, or PL_CORRUPT (message names `path`). */
typedef struct pindex_layout {
    uint32_t nbuckets;
    uint32_t nchunks;
    uint32_t filter_len;  /* the bloom filter's bytes (0: none) */
    uint64_t buckets_off; /* file offset of bucket 0 (64-byte aligned) */
    uint64_t crcs_off;    /* file offset of chunk_crc[0]; the filter follows the CRCs */
    uint64_t tail_off;    /* file offset of the tail (PINDEX_TAIL_BYTES) */
} pindex_layout;
int pindex_parse_tail(const char *tail, uint64_t block_off, uint64_t size, const char *path,
                      pindex_layout *lay);
/* Check the tail CRC over the chunk CRCs and the filter (crcs: the tail_off - crcs_off bytes read from
 * crcs_off), the filter length, the bucket count and pad (tail: as above).  PL_OK or PL_CORRUPT. */
int pindex_check_crcs(const pindex_layout *lay, const char *crcs, const char *tail, const char *path);
/* Whether chunk c (its bytes at chunk, the buckets' base + c * 4 KiB) matches its CRC. */
int pindex_chunk_ok(const pindex_layout *lay, const char *crcs, const char *buckets, uint32_t c);
/* The byte length of chunk c. */
static inline size_t pindex_chunk_bytes(const pindex_layout *lay, uint32_t c)
{
    uint32_t first = c * PINDEX_CHUNK_BUCKETS, left = lay->nbuckets - first;
    return (size_t)(left < PINDEX_CHUNK_BUCKETS ? left : PINDEX_CHUNK_BUCKETS) * PINDEX_BUCKET_BYTES;
}

/* Whether the first bytes of a filter block's tail (its last byte) say it is a point index. */
static inline int pindex_is(const char *filter_tail_byte) { return (unsigned char)*filter_tail_byte == PINDEX_TAG; }

#endif
