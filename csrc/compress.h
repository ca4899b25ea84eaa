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
_Static_assert(COMPRESS_ZSTD == PL_COMPRESS_ZSTD && COMPRESS_LZ4 == PL_COMPRESS_LZ4, "one numbering");

/* Compress n bytes at in with codec into *out (replacing its contents).  PL_OK with *pays 1 when the
 * result is worth keeping (at least n/8 smaller), 0 when the block should be stored raw; PL_NOMEM. */
int compress_block(int codec, const char *in, size_t n, pl_buf *out, int *pays);
/* Decompress a stored block (in, n) of codec into a malloc'd buffer of its raw size.  PL_OK,
 * PL_CORRUPT (bad length prefix, codec error, wrong size; no message: the caller names the block),
 * PL_NOMEM. */
int decompress_block(int codec, const char *in, size_t n, char **out, size_t *out_len);
const char *compress_name(int codec);

#endif
