/* pindex.c -- the point index of a table; see pindex.h and docs/format.md, "Point index". */
#include "pindex.h"

#include <string.h>

#include "buf.h"
#include "crc.h"
#include "status.h"

typedef unsigned long long ull;

/* Buckets for n keys: at least one free slot, so that every search ends. */
static uint64_t pindex_buckets(size_t n)
{
    double want = (double)n / (PINDEX_BUCKET_SLOTS * PINDEX_KEYS_PER_SLOT);
    uint64_t nb = (uint64_t)want + 1;
    if (nb * PINDEX_BUCKET_SLOTS <= n)
        nb = n / PINDEX_BUCKET_SLOTS + 1;
    return nb;
}

size_t pindex_max_bytes(size_t n, size_t filter_len)
{
    uint64_t nb = pindex_buckets(n);
    return (PINDEX_BUCKET_BYTES - 1) + (size_t)nb * PINDEX_BUCKET_BYTES +
           (size_t)((nb + PINDEX_CHUNK_BUCKETS - 1) / PINDEX_CHUNK_BUCKETS) * 4 + filter_len + PINDEX_TAIL_BYTES;
}

int pindex_build(const uint32_t *hashes, const uint64_t *slots, size_t n, uint64_t block_off, const char *filter,
                 size_t filter_len, pl_buf *out)
{
    if (n == 0)
        return PL_FAIL(PL_INVALID, "point index: no keys");
    uint64_t nb = pindex_buckets(n);
    if (nb > UINT32_MAX / 2 || filter_len > UINT32_MAX)
        return PL_FAIL(PL_INVALID, "point index: %zu keys are too many", n);
    uint64_t nchunks = (nb + PINDEX_CHUNK_BUCKETS - 1) / PINDEX_CHUNK_BUCKETS;
    unsigned pad = (unsigned)((PINDEX_BUCKET_BYTES - block_off % PINDEX_BUCKET_BYTES) % PINDEX_BUCKET_BYTES);
    size_t total = pad + (size_t)nb * PINDEX_BUCKET_BYTES + (size_t)nchunks * 4 + filter_len + PINDEX_TAIL_BYTES;
    int rc = buf_reserve(out, out->len + total);
    if (rc)
        return rc;
    char *base = out->data + out->len;
    memset(base, 0, pad + (size_t)nb * PINDEX_BUCKET_BYTES);
    char *buckets = base + pad;
    enum { AHEAD = 16 }; /* keys come in table order, their buckets at random: fetch ahead */
    for (size_t i = 0; i < n; i++) {
        if (i + AHEAD < n)
            __builtin_prefetch(buckets + (size_t)pindex_home(hashes[i + AHEAD], (uint32_t)nb) * PINDEX_BUCKET_BYTES, 1);
        uint32_t b = pindex_home(hashes[i], (uint32_t)nb);
        for (;;) {
            char *bucket = buckets + (size_t)b * PINDEX_BUCKET_BYTES;
            unsigned j = 0;
            while (j < PINDEX_BUCKET_SLOTS && get_u64(bucket + 8 * j))
                j++;
            if (j < PINDEX_BUCKET_SLOTS) {
                put_u64(bucket + 8 * j, slots[i]);
                break;
            }
            b = b + 1 == nb ? 0 : b + 1;
        }
    }
    char *crcs = buckets + (size_t)nb * PINDEX_BUCKET_BYTES;
    for (uint64_t c = 0; c < nchunks; c++) {
        uint64_t first = c * PINDEX_CHUNK_BUCKETS, left = nb - first;
        size_t bytes = (size_t)(left < PINDEX_CHUNK_BUCKETS ? left : PINDEX_CHUNK_BUCKETS) * PINDEX_BUCKET_BYTES;
        put_u32(crcs + 4 * c, crc_value(buckets + first * PINDEX_BUCKET_BYTES, bytes));
    }
    if (filter_len)
        memcpy(crcs + 4 * nchunks, filter, filter_len);
    char *tail = crcs + 4 * nchunks + filter_len;
    put_u32(tail, (uint32_t)filter_len);
    put_u32(tail + 4, (uint32_t)nb);
    tail[8] = (char)pad;
    /* the tail CRC covers the chunk CRCs, the filter, its length, the bucket count and the pad:
     * contiguous bytes */
    put_u32(tail + 9, crc_value(crcs, (size_t)(tail + 9 - crcs)));
    tail[13] = (char)PINDEX_TAG;
    out->len += total;
    return PL_OK;
}

int pindex_contains(const char *buckets, uint32_t nbuckets, uint32_t h, uint64_t slot, int *probes)
{
    uint32_t b = pindex_home(h, nbuckets);
    uint16_t fp = pindex_fingerprint(h);
    int n = 0, found = 0;
    for (uint32_t step = 0; step < nbuckets && !found; step++, b = b + 1 == nbuckets ? 0 : b + 1) {
        unsigned i = 0;
        uint64_t s;
        int st;
        n++;
        while ((st = pindex_scan(buckets + (size_t)b * PINDEX_BUCKET_BYTES, fp, &i, &s)) == PINDEX_MATCH)
            if (s == slot) {
                found = 1;
                break;
            }
        if (st == PINDEX_END)
            break;
    }
    if (probes)
        *probes = n;
    return found;
}

int pindex_parse_tail(const char *tail, uint64_t block_off, uint64_t size, const char *path,
                      pindex_layout *lay)
{
    if ((unsigned char)tail[PINDEX_TAIL_BYTES - 1] != PINDEX_TAG)
        return PL_FAIL(PL_CORRUPT, "%s: point index at offset %llu: bad tag", path, (ull)block_off);
    uint32_t flen = get_u32(tail), nb = get_u32(tail + 4);
    unsigned pad = (unsigned char)tail[8];
    uint64_t nchunks = ((uint64_t)nb + PINDEX_CHUNK_BUCKETS - 1) / PINDEX_CHUNK_BUCKETS;
    uint64_t want = pad + (uint64_t)nb * PINDEX_BUCKET_BYTES + nchunks * 4 + flen + PINDEX_TAIL_BYTES;
    if (nb == 0 || pad >= PINDEX_BUCKET_BYTES || (block_off + pad) % PINDEX_BUCKET_BYTES != 0 ||
        want != size)
        return PL_FAIL(PL_CORRUPT, "%s: point index at offset %llu: %u buckets, a filter of %u bytes and %u "
                       "bytes of padding do not fill its %llu bytes", path, (ull)block_off, nb, flen, pad,
                       (ull)size);
    lay->nbuckets = nb;
    lay->nchunks = (uint32_t)nchunks;
    lay->filter_len = flen;
    lay->buckets_off = block_off + pad;
    lay->crcs_off = lay->buckets_off + (uint64_t)nb * PINDEX_BUCKET_BYTES;
    lay->tail_off = lay->crcs_off + nchunks * 4 + flen;
    return PL_OK;
}

int pindex_check_crcs(const pindex_layout *lay, const char *crcs, const char *tail, const char *path)
{
    uint32_t c = crc_extend(crc_value(crcs, (size_t)(lay->tail_off - lay->crcs_off)), tail, 9);
    if (c != get_u32(tail + 9))
        return PL_FAIL(PL_CORRUPT, "%s: point index at offset %llu: checksum mismatch in its tail", path,
                       (ull)lay->crcs_off);
    return PL_OK;
}

int pindex_chunk_ok(const pindex_layout *lay, const char *crcs, const char *buckets, uint32_t c)
{
    size_t bytes = pindex_chunk_bytes(lay, c);
    return crc_value(buckets + (size_t)c * PINDEX_CHUNK_BUCKETS * PINDEX_BUCKET_BYTES, bytes) ==
           get_u32(crcs + 4 * (size_t)c);
}
