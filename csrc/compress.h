/*
 * compress.h -- block compression for tables: zstd and lz4 from their libraries (docs/format.md,
 * "Compressed blocks").
 *
 * A compressed block is stored as  varint32 raw_len  codec_bytes  (raw_len: the block's size before
 * compression, so the reader allocates once and checks that the codec produced exactly that much).
 * The trailer's type byte names the codec.  A block is kept compressed only if that saves at least an
 * eighth of it (the rule LevelDB uses): incompressible data costs a compression attempt at write time
 * and nothing at read time.
 */
#ifndef PL_COMPRESS_H
#define PL_COMPRESS_H

#include <stddef.h>

#include "pylsm.h"

/* Codec ids: the trailer's type byte, and pl_options.compression. */
#define COMPRESS_NONE 0
#define COMPRESS_ZSTD 1
#define COMPRESS_LZ4 2
#define COMPRESS_MAX 2
#define COMPRESS_ZSTD_DICT 3 /* a block type only: zstd with its table's dictionary (compress_dict) */
typedef struct compress_dict compress_dict; /* a table's zstd dictionary (below) */

_Static_assert(COMPRESS_ZSTD == PL_COMPRESS_ZSTD && COMPRESS_LZ4 == PL_COMPRESS_LZ4, "one numbering");

/* Compress n bytes at in with codec into *out (replacing its contents).  PL_OK with *pays 1 when the
 * result is worth keeping (at least n/8 smaller), 0 when the block should be stored raw; PL_NOMEM. */
int compress_block(int codec, const char *in, size_t n, pl_buf *out, int *pays);
/* Decompress a stored block (in, n) of codec into a malloc'd buffer of its raw size.  PL_OK,
 * PL_CORRUPT (bad length prefix, codec error, wrong size; no message: the caller names the block),
 * PL_NOMEM. */
int decompress_block(int codec, const compress_dict *dict, const char *in, size_t n, char **out,
                     size_t *out_len);
const char *compress_name(int codec);

/* ---- a zstd dictionary per table (docs/decisions.md, item 18) ----
 *
 * A table's first data blocks, compressed on their own, are also its samples: a dictionary is trained
 * from them and stored in the table, and the blocks after them are compressed with it (type
 * COMPRESS_ZSTD_DICT), which lets them be small and still compress as well as large ones. */

/* Train a dictionary of at most max_bytes from the len bytes at samples, taken as pieces of `piece`
 * bytes, into *out (replacing its contents).  PL_OK with out->len 0 when the samples make none;
 * PL_NOMEM. */
int compress_train(const char *samples, size_t len, size_t piece, size_t max_bytes, pl_buf *out);
/* A dictionary made ready to compress with (for_write) or to decompress with.  PL_OK, PL_CORRUPT (zstd
 * refuses its header; no message: the caller names the table), PL_NOMEM. */
int compress_dict_new(const char *dict, size_t len, int for_write, compress_dict **out);
void compress_dict_free(compress_dict *d);
/* The heap it holds. */
size_t compress_dict_heap_bytes(const compress_dict *d);
/* compress_block with zstd and the dictionary d (made for_write). */
int compress_block_dict(const compress_dict *d, const char *in, size_t n, pl_buf *out, int *pays);

#endif
