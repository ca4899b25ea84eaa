/*
 * block.h -- sorted blocks of (internal key, value) entries with restart-point prefix compression:
 * the data and index blocks of an SSTable.  The byte grammar (entries, restart array, the hash index's
 * slots and arithmetic) and the checks a reader makes are in docs/format.md, "Block"; the BLOCK_HASH_*
 * constants below are part of it.
 *
 * Why the hash index (the second form of a block, in data blocks of format version 2): a point lookup
 * goes straight to the region of its key's newest entry instead of binary searching the restart points,
 * and reaching a free slot says "not in this block" with no key compared.  A block with more than
 * BLOCK_HASH_MAX_RESTARTS restart points has none (a slot names its region in one byte).
 */
#ifndef PL_BLOCK_H
#define PL_BLOCK_H

#include <stddef.h>
#include <stdint.h>

#include "iter.h"
#include "pylsm.h"

#ifndef BLOCK_RESTART_INTERVAL
#define BLOCK_RESTART_INTERVAL 4 /* data blocks (docs/decisions.md, item 5c) */
#endif
#define BLOCK_MAX_BYTES (UINT32_C(1) << 31) /* offsets inside a block are u32 */
#define BLOCK_HASH_FLAG UINT32_C(0x80000000)
#define BLOCK_HASH_EMPTY 255        /* the region byte of a free slot */
#define BLOCK_HASH_MAX_RESTARTS 255 /* regions 0..254 */
#define BLOCK_HASH_KEYS_PER_SLOT 0.75

/* The home slot of a user key whose hash (bloom_hash) is h, among n slots, and its fingerprint.  The
 * bloom filter uses h's own high bits: these mix it first. */
static inline uint32_t block_hash_slot(uint32_t h, uint32_t n)
{
    h *= 0x9e3779b1u;
    return (uint32_t)(((uint64_t)(h ^ (h >> 15)) * n) >> 32);
}
static inline unsigned char block_hash_fingerprint(uint32_t h)
{
    return (unsigned char)((h * 0x85ebca6bu) >> 24);
}

/* ---- building ---- */

typedef struct block_builder {
    pl_buf buf;        /* entries, then (after finish) the restart array */
    pl_buf restarts;   /* u32 offsets, native order, pending encoding */
    pl_buf last;       /* the last key added */
    int interval;      /* entries per restart point */
    int counter;       /* entries since the last restart point */
    size_t entries;
    int finished;
    int hash;          /* build a hash index (block_builder_set_hash) */
    pl_buf keys;       /* with hash: per distinct user key, u32 bloom_hash and u32 restart index */
} block_builder;

/* Prepare an empty builder with a restart point every `interval` (>= 1) entries. Cannot fail. */
void block_builder_init(block_builder *b, int interval);
/* Release its memory; the builder may be re-initialised afterwards. */
void block_builder_free(block_builder *b);
/* Forget the entries (keeping the memory) so the builder can build the next block. */
void block_builder_reset(block_builder *b);

/* Give the blocks built from now on a hash index (see above).  Call before the first add. */
static inline void block_builder_set_hash(block_builder *b) { b->hash = 1; }

/* Append an entry.  REQUIRES: not finished since the last reset; klen >= 8; key greater (ikey_cmp)
 * than every key already added (not checked).  Returns PL_OK, PL_NOMEM, or PL_INVALID (klen < 8,
 * or the block would exceed BLOCK_MAX_BYTES). */
int block_builder_add(block_builder *b, const char *key, size_t klen, const char *val, size_t vlen);

/* Append the restart array and count; *data and *len point at the finished block, which stays valid until
 * the next reset or free.  An empty builder makes a valid block with no entries.  PL_OK or PL_NOMEM. */
int block_builder_finish(block_builder *b, const char **data, size_t *len);

/* The size the block would have if finished now. */
size_t block_builder_size_estimate(const block_builder *b);
static inline int block_builder_empty(const block_builder *b) { return b->entries == 0; }
static inline size_t block_builder_entries(const block_builder *b) { return b->entries; }

/* ---- reading: the cursor (no allocation for keys up to BLOCK_KEY_INLINE bytes) ---- */

#define BLOCK_KEY_INLINE 128

/* The region cache (block_cursor): at most this many entries and key bytes; a larger region is walked
 * without it (as it was before the cache). */
#define BLOCK_REGION_CACHE_ENTRIES 1024
#define BLOCK_REGION_CACHE_KEY_BYTES (64u * 1024u)

/* One decoded entry of the region cache: its offset, the offset past it, its value length, and its
 * whole key at koff in the cache's key bytes. */
typedef struct block_rentry {
    uint32_t off, next, vlen, koff;
    size_t klen;
} block_rentry;

/* A position in one block.  It may live on the stack; it neither owns nor copies the block bytes,
 * which must outlive it.  The current key is rebuilt in the cursor (inline buffer, heap when longer);
 * the current value points into the block.
 *
 * Stepping back cannot decode an entry from its successor (the prefix compression runs forward): a step
 * back walks the restart region of the preceding entry from its restart point.  The walk keeps every
 * entry it decodes, whole key included, in the region cache, so the further steps back through the same
 * region (and forward again through it) are O(1) and copy nothing: the key is then read in the cache
 * (kext).  seek_last fills it the same way.  With restart interval 4, a reverse scan decodes each entry
 * once instead of 2.5 times on average. */
typedef struct block_cursor {
    const char *data;   /* the block */
    uint32_t data_end;  /* entries occupy [0, data_end): the restart array starts there */
    uint32_t nrestarts;
    uint32_t cur;       /* offset of the current entry; data_end when not valid */
    uint32_t next;      /* offset just past the current entry */
    uint32_t restart;   /* index of the restart region holding cur */
    const unsigned char *slot; /* the hash index (NULL: none): nslots slots of 2 bytes */
    uint32_t nslots;
    const char *val;
    uint32_t vlen;
    size_t klen;
    char *kheap;        /* NULL while the key fits kinline */
    size_t kcap;        /* capacity of kheap */
    int status;         /* PL_OK, PL_CORRUPT or PL_NOMEM; sticky */
    const char *kext;   /* the current key when read in the region cache (else NULL: in kinline/kheap) */
    block_rentry *rent; /* the region cache: rn entries from the restart point of region rreg, in order */
    char *rkeys;        /* their keys, back to back (rkused bytes of rkcap) */
    uint32_t rn, rcap, rreg;
    uint32_t ri;        /* the current entry's index in the cache when ri < rn (else not in it) */
    size_t rkused, rkcap;
    char kinline[BLOCK_KEY_INLINE];
} block_cursor;

/* The index of the restart point the current entry belongs to (with interval 1: the entry's index). */
static inline uint32_t block_cursor_restart(const block_cursor *c) { return c->restart; }

/* Start reading the block [data, data + len): the cursor is not valid until positioned.  If the
 * restart array is malformed the cursor's status becomes PL_CORRUPT and it never becomes valid.
 * Returns the status. */
int block_cursor_init(block_cursor *c, const char *data, size_t len);
/* Prepare a cursor with no block yet (never valid, status PL_OK), for block_cursor_reset later. */
void block_cursor_init_empty(block_cursor *c);
/* Point an initialised cursor at another block, keeping its key buffer. Returns the status. */
int block_cursor_reset(block_cursor *c, const char *data, size_t len);
/* Free the cursor's key buffer and region cache (not the block). */
void block_cursor_free(block_cursor *c);

/* Position at the first entry >= (ukey, trailer) in ikey_cmp order, that is the first entry whose user
 * key is greater, or equal with a trailer <= `trailer`.  Invalid if there is none. */
void block_cursor_seek(block_cursor *c, const char *ukey, size_t ulen, uint64_t trailer);
/* For a point lookup of ukey (hash: its bloom_hash): block_cursor_seek, through the hash index when
 * the block has one.  Returns 0 when the index shows that no entry of ukey is in the block (the cursor
 * is then not valid, with status PL_OK), else 1 with the cursor placed as block_cursor_seek places it
 * (whose entry may still belong to another key). */
int block_cursor_seek_key(block_cursor *c, const char *ukey, size_t ulen, uint64_t trailer, uint32_t hash);
/* Where a point lookup of the key with this hash will read the block [data, data + len): the region of
 * the key's first matching slot, [*start, *end); NULL when there is no hash index, the walk ends at a
 * free slot, or the block is malformed.  For prefetching only: it checks bounds but not the block's
 * checksum. */
const char *block_lookup_hint(const char *data, size_t len, uint32_t hash, const char **end);
/* The entry at position pos (0: the restart point) of the restart region starting at byte roff of the
 * block [data, data + len), for a point lookup that knows where its key's entry is (pindex.h): its key
 * rebuilt into kbuf (kcap bytes, *klen of them), its value in the block.  The walk reads no restart array
 * and is bounded by len - 4.  PL_OK; BLOCK_KEY_TOO_LONG (a key longer than kcap: search the block
 * instead; no message); PL_CORRUPT (an offset or varint outside the block, a region start whose shared
 * prefix is not 0, a shared prefix longer than the previous key, a key shorter than 8 bytes). */
#define BLOCK_KEY_TOO_LONG (-2)
int block_region_entry(const char *data, size_t len, uint32_t roff, unsigned pos, char *kbuf, size_t kcap,
                       size_t *klen, const char **val, uint32_t *vlen);
/* Check the hash index of the block (PL_OK when it has none): every slot is free or names a restart
 * point, some slot is free, and a lookup of every user key through the index finds the key's first
 * entry.  PL_CORRUPT with a message otherwise.  REQUIRES: the block's entries parse. */
int block_cursor_check_hash(block_cursor *c);
void block_cursor_seek_first(block_cursor *c);
void block_cursor_seek_last(block_cursor *c);
/* Move to the following / preceding entry (invalid past either end).  No-ops when not valid. */
void block_cursor_next(block_cursor *c);
void block_cursor_prev(block_cursor *c);

/* Walk the whole block and check what reading it otherwise trusts: every restart point is the offset
 * of an entry that shares no prefix, in increasing order (seeks and backward steps start from them).
 * For verification (table_verify).  Leaves the cursor not valid.  PL_OK or PL_CORRUPT. */
int block_cursor_check(block_cursor *c);

static inline int block_cursor_valid(const block_cursor *c)
{
    return c->status == PL_OK && c->cur < c->data_end;
}
static inline const char *block_cursor_key(const block_cursor *c)
{
    return c->kext ? c->kext : c->kheap ? c->kheap : c->kinline;
}
static inline size_t block_cursor_klen(const block_cursor *c) { return c->klen; }
static inline const char *block_cursor_value(const block_cursor *c) { return c->val; }
static inline size_t block_cursor_vlen(const block_cursor *c) { return c->vlen; }
static inline int block_cursor_status(const block_cursor *c) { return c->status; }
/* Make the cursor not valid (without touching the block), e.g. before its block is released. */
static inline void block_cursor_invalidate(block_cursor *c)
{
    c->cur = c->next = c->data_end;
    c->ri = UINT32_MAX;
}

/* ---- reading: the iter.h iterator ---- */

/* An iterator (iter.h) over the block [data, data + len), which must outlive it.  Returns NULL only
 * when out of memory (*status = PL_NOMEM).  Otherwise *status is PL_OK, or PL_CORRUPT if the restart
 * array is malformed (the iterator then never becomes valid and iter_status reports PL_CORRUPT).
 * Entries that turn out to be malformed while iterating make it invalid with status PL_CORRUPT. */
iter *block_iter_new(const char *data, size_t len, int *status);

/* Make iter_destroy(it) call release(arg) after it stops reading the block, e.g. to release the cache
 * handle or free the buffer holding it.  REQUIRES: it came from block_iter_new. */
void block_iter_set_release(iter *it, void (*release)(void *arg), void *arg);

#endif
