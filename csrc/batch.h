/*
 * batch.h -- write batches and their encoding, which is also the WAL record payload (the grammar is
 * docs/format.md, "Batch").  Operation i of a batch whose record has LSN L gets LSN L + i, so later
 * operations win.
 */
#ifndef PL_BATCH_H
#define PL_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "pylsm.h"

#define BATCH_HEADER 4
#define BATCH_MAX_BYTES (UINT32_C(1) << 31) /* 2 GiB: a batch is one WAL record */

struct pl_batch {
    pl_buf rep;        /* the encoding; rep.len >= BATCH_HEADER once initialised */
    uint64_t user_bytes; /* key + value bytes, for statistics */
    uint32_t deletes;    /* how many of the operations are deletes, for statistics */
};

/* Bytes an operation takes in the encoding. */
static inline size_t batch_op_size(size_t klen, size_t vlen, int is_put)
{
    return 1 + 10 + klen + (is_put ? 10 + vlen : 0);
}

/* Encode one operation at dst (room for batch_op_size); return its end. */
char *batch_encode_op(char *dst, int kind, const void *key, size_t klen, const void *val, size_t vlen);

/* Check sizes: PL_INVALID with a message naming the limit. */
int batch_check_sizes(size_t klen, size_t vlen);

/* Walk an encoded batch, calling fn for each operation in order (stops at a non-zero return).
 * PL_CORRUPT if the encoding is malformed or its count disagrees with its contents. */
typedef int (*batch_op_fn)(void *ctx, uint32_t index, int kind, const char *key, size_t klen,
                           const char *val, size_t vlen);
int batch_iterate(const char *rep, size_t len, batch_op_fn fn, void *ctx);
static inline uint32_t batch_rep_count(const char *rep) { return (uint32_t)(unsigned char)rep[0] |
    ((uint32_t)(unsigned char)rep[1] << 8) | ((uint32_t)(unsigned char)rep[2] << 16) |
    ((uint32_t)(unsigned char)rep[3] << 24); }
/* The LSNs that the WAL record holding this batch takes: one per operation, its count (the
 * wal_lsns_fn of every WAL of batches, wal.h).  REQUIRES: len >= BATCH_HEADER. */
uint64_t batch_record_lsns(const char *rep, size_t len);

#endif
