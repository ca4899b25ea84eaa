/*
 * sstable.h -- immutable sorted tables of internal keys: the writer and the reader.
 * The byte grammar (data blocks, filter block or point index, index block, footer, block trailers and
 * compression) is in docs/format.md, "SSTable".
 *
 * Every block read from the file has its trailer checked; blocks in the cache were checked when read.
 * Corruption is PL_CORRUPT with a message naming the file and the offset of the bad block or footer;
 * a bad table never yields a wrong value.
 *
 * Thread safety: a table_builder is used by one thread at a time.  A table keeps no file position and
 * takes no lock to read: it is read through a read-only mapping (pread when mmap is refused), its
 * index, filter and fences are immutable after table_open, and the block cache is thread safe, so any
 * number of threads may call table_get and use (their own) iterators on one table at once.
 * table_close REQUIRES that no other thread uses the table and that its iterators are destroyed.
 *
 * Memory: a mapped table reads its filter and index block in place (checked at open; every read of
 * the mapping is under a SIGBUS guard), so the heap holds 12 bytes per data block (the fences), the
 * point index's chunk CRCs and a bit per 256 bytes of file (docs/decisions.md, item 13).
 */
#ifndef PL_SSTABLE_H
#define PL_SSTABLE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "cache.h"
#include "iter.h"
#include "pylsm.h"

#define TABLE_MAGIC UINT64_C(0x504c534d54424c31)
#define TABLE_VERSION 2     /* written: data blocks with a hash index */
#define TABLE_VERSION_COMPRESSED 3 /* written when data blocks may be compressed (trailer types 1, 2) */
#define TABLE_VERSION_DICT 4 /* compressed, with a zstd dictionary block after the data (trailer type 3) */
#define TABLE_VERSION_MIN 1 /* read: 1 (no hash index), 2, 3 and 4 */
#define TABLE_VERSION_MAX 4
/* A table of format 4: its first TABLE_DICT_SAMPLE_BYTES of data blocks (compressed alone) are the
 * samples its dictionary is trained from, at most TABLE_DICT_MAX_BYTES; the blocks after them are cut at
 * TABLE_DICT_BLOCK_BYTES (or the table's block size, if smaller) and compressed with the dictionary
 * (docs/decisions.md, item 18). */
#define TABLE_DICT_SAMPLE_BYTES (512u << 10)
extern uint64_t table_dict_sample_bytes; /* TABLE_DICT_SAMPLE_BYTES; a test may lower it (pl_test_set) */
#define TABLE_DICT_MAX_BYTES (16u << 10)
#define TABLE_DICT_BLOCK_BYTES 1536u
#define TABLE_FOOTER_SIZE 48
#define TABLE_BLOCK_TRAILER 5
#define TABLE_BLOCK_RAW 0
#define TABLE_INDEX_RESTART_INTERVAL 1 /* index blocks: every key whole, the binary search is exact */
#define TABLE_WRITE_BUFFER (64u * 1024u) /* a table is written this many bytes at a time... */
/* ...or, after table_builder_set_huge_pieces, 2 MiB at a time at multiples of 2 MiB: the page cache then
 * holds the table in 2 MiB folios, which a reader's mapping maps with one page-table entry each (a huge
 * page: far fewer TLB misses on random reads; docs/decisions.md, item 20). */
#define TABLE_HUGE_PIECE (2u << 20)
#define TABLE_WRITEBACK_BYTES (1u << 20) /* a table's writeback is started every this many bytes (at least) */

/* What a finished table holds; the key copies belong to the meta (table_meta_free). */
typedef struct table_meta {
    uint64_t file_size;
    uint64_t entries;   /* puts and deletes */
    uint64_t deletes;
    char *smallest;     /* first internal key; NULL when the table is empty */
    size_t smallest_len;
    char *largest;      /* last internal key; NULL when the table is empty */
    size_t largest_len;
    uint64_t min_lsn;   /* 0 when empty */
    uint64_t max_lsn;
} table_meta;

/* Free the key copies and zero *m.  NULL is ignored. */
void table_meta_free(table_meta *m);
/* Deep copy of src into *dst (which is overwritten, not freed).  PL_OK or PL_NOMEM (*dst zeroed). */
int table_meta_copy(table_meta *dst, const table_meta *src);

/* ---- writing ---- */

typedef struct table_builder table_builder;

/* Create (or truncate) the table file `path` and a builder writing to it.  block_bytes: target size of
 * data blocks (1 .. BLOCK_MAX_BYTES/2); bloom_bits_per_key: 0 for no filter, else >= 1.
 * Returns PL_OK, PL_INVALID, PL_IOERR or PL_NOMEM; on failure nothing is created. */
int table_builder_new(const char *path, size_t block_bytes, int bloom_bits_per_key, table_builder **out);

/* Append an entry (an internal key, ikey.h, and its value; a delete's value is normally empty).
 * REQUIRES: ikey greater (ikey_cmp) than every key added before, klen >= 8; both are checked: such a
 * call is PL_INVALID and changes nothing.  Other errors (PL_IOERR, PL_NOMEM, PL_INVALID for an entry
 * too large for a block) are sticky: every later add and finish returns them; then call
 * table_builder_abandon (or finish, which cleans up the same way). */
int table_builder_add(table_builder *tb, const char *ikey, size_t klen, const char *val, size_t vlen);
/* The same, given the user key's bloom_hash (or NULL: computed here), which a caller may have worked
 * out on another thread (ingest). */
int table_builder_add_hashed(table_builder *tb, const char *ikey, size_t klen, const char *val, size_t vlen,
                             const uint32_t *hash);

/* Give the table a point index (pindex.h), which carries the bloom filter (if bloom_bits_per_key > 0) in
 * its tail: call before the first add.  A table whose keys' places do not all fit a slot (a block past
 * 16M, a region past 4 MiB into its block, a restart interval above 4) gets the plain filter block.
 * The data blocks of a table with a point index have no hash index of their own. */
void table_builder_set_point_index(table_builder *tb, int on);

/* Compress data blocks with codec (compress.h: COMPRESS_ZSTD or COMPRESS_LZ4; COMPRESS_NONE is the
 * default): call before the first add (and after table_builder_set_point_index).  Each block is stored
 * compressed when that saves an eighth of it, else raw; the filter and index blocks are always raw.
 * The table is written as version 3, its data blocks with a restart every 16 entries and no hash
 * index, and with a plain bloom filter rather than a point index. */
void table_builder_set_compression(table_builder *tb, int codec);

/* Write the table in TABLE_HUGE_PIECE pieces (for tables that will be read long and hard: the last
 * level): call before the first add.  PL_NOMEM when the 2 MiB buffer cannot be had (nothing changes). */
int table_builder_set_huge_pieces(table_builder *tb);

/* Bytes of the file so far (written or buffered), for callers that cut output files by size. */
uint64_t table_builder_file_size(const table_builder *tb);
uint64_t table_builder_entries(const table_builder *tb);
/* The last internal key added (*klen 0 when none). */
void table_builder_last_key(const table_builder *tb, const char **ikey, size_t *klen);

/* Write the last data block, the filter, the index and the footer, fdatasync the file (not its
 * directory: the caller syncs that before relying on the name) and close it.  On PL_OK *meta is
 * filled (the caller frees it with table_meta_free); on failure *meta is not touched.  tb is freed in
 * every case; on failure the partial file is removed and pl_errmsg() still describes the failure.
 * Errors: PL_IOERR, PL_NOMEM, or the sticky error of an earlier add. */
int table_builder_finish(table_builder *tb, table_meta *meta);

/* Give up: close and remove the file, free tb.  NULL is ignored.  pl_errmsg() is left as it was. */
void table_builder_abandon(table_builder *tb);

/* ---- reading ---- */

typedef struct table table;

/* Open the table `path` of file_size bytes (as recorded when it was written): read and check the
 * footer, then load the filter and index blocks into memory and check their CRCs and structure.
 * c: the block cache to read data blocks through (NULL: none, every data block read is file I/O).
 * Returns PL_OK, PL_CORRUPT (a file too short for a footer -- a zero-length one included --, bad magic,
 * version, checksum or layout; the message names the file and offset), PL_IOERR or PL_NOMEM.
 * The file stays open (read-only) until table_close. */
int table_open(const char *path, uint64_t file_size, cache *c, table **out);
/* table_open, keeping nothing per data block on the heap when it can: a mapped table with a point
 * index then finds a block from the point index through the index block read in place (one more
 * read of the mapping per get) instead of 12 bytes a block of fences, so that the heap does not grow
 * with the data (docs/decisions.md, item 16).  Other tables open as with table_open. */
int table_open_lean(const char *path, uint64_t file_size, cache *c, table **out);

/* Close the file and free the table.  NULL is ignored.  REQUIRES: see Thread safety. */
void table_close(table *t);

/* Point lookup of the newest version of user key ukey with lsn <= snap_lsn.
 * On PL_OK *result is LOOKUP_FOUND (the value replaces the contents of *out), LOOKUP_DELETED or
 * LOOKUP_ABSENT (the bloom filter answers most absent keys without reading a data block).
 * flags: PL_READ_NO_IO -> PL_WOULDBLOCK (with no message) when the data block needed is not in the cache.
 * Errors: PL_CORRUPT (file and offset in the message), PL_IOERR, PL_NOMEM; *out is then unspecified. */
int table_get(table *t, const char *ukey, size_t klen, uint64_t snap_lsn, pl_buf *out, int flags,
              int *result);
/* The same given hash = bloom_hash(ukey, klen), which a get through several tables works out once. */
int table_get_hashed(table *t, const char *ukey, size_t klen, uint32_t hash, uint64_t snap_lsn, pl_buf *out,
                     int flags, int *result);
/* Start loading the memory a get of a key with this hash reads first in t: its filter line (unless
 * TABLE_GET_NO_FILTER skips the filter) and its point index bucket, which the get reads next when the
 * filter lets the key through.  A hint (prefetches, which never fault): a get that must look in several
 * tables issues them all before the first lookup, so that their cache misses overlap; a bucket is
 * loaded for nothing in a table whose filter then says no, which measured cheaper than the bucket's
 * miss coming after the filter's in the table that has the key (docs/decisions.md, item 5e). */
void table_prefetch_get(const table *t, uint32_t hash, int flags);
/* A table_get flag: go to the point index without asking the bloom filter first.  For the last table a
 * get can reach (the deepest level that may hold the key): a key there is likely present, and the index
 * answers "absent" with its one bucket read too.  Ignored by tables without a point index. */
#define TABLE_GET_NO_FILTER (1 << 16)
#define TABLE_BATCH_MAX 64 /* table_get_batch: keys it stages at a time */

/* One point lookup of a batch (table_get_batch).  The caller fills ukey, klen, hash (bloom_hash of the
 * key), out and sets result to LOOKUP_ABSENT; the batch fills result as table_get does, and rc. */
typedef struct table_lookup {
    const char *ukey;
    size_t klen;
    uint32_t hash;
    int result;
    int rc;
    pl_buf *out;
    uint64_t block; /* private: the data block to search, or UINT64_MAX */
} table_lookup;

/* table_get for each of n lookups, each with the flags of table_get = 0, in stages across the batch so
 * that the memory reads of different keys overlap (the filter lines, then the data blocks' tails, then
 * the entries are requested for every key before any is waited for).  Lookups whose rc is not PL_OK
 * afterwards failed (pl_errmsg() describes the last failure only). */
void table_get_batch(table *t, uint64_t snap_lsn, table_lookup *const *reqs, size_t n);

/* A two-level iterator (iter.h) over every entry of the table, in internal key order, reading data
 * blocks through the cache.  A read or checksum error makes it invalid for good, with iter_status
 * the code.  NULL when out of memory.  REQUIRES: the table outlives the iterator. */
iter *table_iter(table *t);

/* Check a whole table file without a cache: the footer, every block's trailer and structure (restart
 * points included), that the keys ascend across the table and agree with the index (each block's
 * entry is its last key, or a user key between its last and the next block's first), and that the
 * filter holds every key.  PL_OK, PL_CORRUPT (file and offset in the message), PL_IOERR or PL_NOMEM. */
int table_verify(const char *path, uint64_t file_size);

uint64_t table_file_size(const table *t);
const char *table_path(const table *t);
/* Without reading a data block: 0 if the table's bloom filter says ukey is not in it, else 1 (also for
 * a table without a bloom filter). */
int table_may_contain(const table *t, const char *ukey, size_t klen);
/* The file offset where ukey's entries would start, from the index alone: 0 for a key before the
 * first block, the file size for one past the last.  Approximate (block granularity); a damaged
 * index answers the file size. */
uint64_t table_approx_offset(const table *t, const char *ukey, size_t klen);
/* The user key of the middle entry of t's index (a separator between data blocks: about half of t's
 * blocks lie below it) into *out.  PL_OK; PL_NOTFOUND for an empty index; PL_CORRUPT (a bad index),
 * PL_IOERR (a fault reading a mapped one) or PL_NOMEM. */
int table_middle_key(const table *t, pl_buf *out);
/* Advise the table's mapping for random reads (on) or the kernel's read-around (off, the default): with
 * random reads a point read's page fault reads one page, not a window of up to the device's read-ahead
 * around it, and iterators request their own read-ahead as they go.  Idempotent; any thread. */
void table_set_random_reads(table *t, int on);
/* Warm a mapped table whose file the page cache holds (warm.h): map its resident pages into the page
 * tables, in pieces of a few MiB, then check the trailers of the data blocks and the CRCs of the
 * point index's chunks that lie wholly on resident pages, as a first read would (a block or chunk
 * that fails is left for the read to report).  Reads nothing that is not in memory; stops early once
 * *stop is set.  Returns the bytes mapped (0 for a table read through pread).  Any thread. */
uint64_t table_warm(table *t, const atomic_int *stop);
/* Whether the table has a filter: a bloom filter or a point index. */
int table_has_filter(const table *t);
/* Whether point reads go through the table's point index (it has one, and it is mapped). */
int table_has_point_index(const table *t);
/* About how many bytes of heap the open table holds (its structure, fences, checksum bookkeeping, and
 * the filter and index when they are not read in place). */
uint64_t table_heap_bytes(const table *t);

/* ---- the format's pieces, for readers of damaged files (repair) ---- */

/* A footer, decoded: where the filter and index blocks are (sizes without their trailers). */
typedef struct table_footer {
    uint64_t filter_off, filter_size;
    uint64_t index_off, index_size;
    uint32_t version;
} table_footer;

/* Decode and check f, the last TABLE_FOOTER_SIZE bytes of the table `path` of file_size bytes
 * (REQUIRES: file_size >= TABLE_FOOTER_SIZE): its magic, checksum and version, and that the filter
 * block, the index block and the footer follow one another, each block with its trailer.  PL_OK with
 * *out filled, or PL_CORRUPT (the message names path and the footer's offset). */
int table_footer_decode(const char *f, uint64_t file_size, const char *path, table_footer *out);

/* Is the trailer t (TABLE_BLOCK_TRAILER bytes) that of a block whose bytes have CRC32C block_crc
 * (crc_value of them): a known type (raw; with codecs, also a codec's, compress.h; with codecs >= 2,
 * also zstd with a dictionary) and the masked CRC of the block and its type byte?  1 or 0. */
int table_trailer_matches(const char *t, uint32_t block_crc, int codecs);
/* Check the trailer that follows the n-byte block at blk (blk holds n + TABLE_BLOCK_TRAILER bytes),
 * which lies at offset off of the table `path`.  PL_OK, or PL_CORRUPT (an unknown type, or a checksum
 * mismatch; the message names path and off). */
int table_check_trailer(const char *blk, size_t n, int codecs, const char *path, uint64_t off);

/* Decode an index entry's value (varint offset, varint size) into a block handle.  PL_OK, or
 * PL_CORRUPT with no message (the caller names the file and the entry). */
int table_decode_handle(const char *v, size_t n, uint64_t *off, uint64_t *size);
/* A format-4 table's dictionary block lies just before its filter block and ends with its own length
 * (u32): given that length (the 4 bytes before the trailer that precedes filter_off), the block's
 * handle (its size with the length field).  PL_OK, or PL_CORRUPT with no message (it does not fit). */
int table_dict_handle(uint32_t dict_len, uint64_t filter_off, uint64_t *off, uint64_t *size);
/* The same from a whole table file held in memory (file, at least filter_off bytes), its length field
 * read there.  PL_OK or PL_CORRUPT with no message. */
int table_dict_locate(const char *file, uint64_t filter_off, uint64_t *off, uint64_t *size);
/* Does the data block at (off, size) lie, with its trailer, before data_end (the dictionary block's
 * offset, or the filter block's)?  1 or 0. */
int table_data_handle_fits(uint64_t off, uint64_t size, uint64_t data_end);

#endif
