/* test_pindex.c -- the point index on its own: every key found at its slot, absent keys ended by a free
 * slot, the layout (alignment, sizes, tail) and what its parser rejects.  Tables with a point index are
 * tested in test_sstable.c. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bloom.h"
#include "coding.h"
#include "crc.h"
#include "pindex.h"
#include "testutil.h"

/* Look h up in the built index out (block at file offset off); the first slot with its fingerprint that
 * equals want counts as found.  Returns 1 found, 0 ended by a free slot; *probes: buckets read. */
static int lookup(const pl_buf *out, uint64_t off, uint32_t h, uint64_t want, int *probes)
{
    pindex_layout lay;
    CHECK_RC(pindex_parse_tail(out->data + out->len - PINDEX_TAIL_BYTES, off, out->len, "t", &lay), PL_OK);
    return pindex_contains(out->data + (lay.buckets_off - off), lay.nbuckets, h, want, probes);
}

static void test_round_trip(size_t n, uint64_t off)
{
    uint32_t *h = malloc(sizeof *h * n);
    uint64_t *slots = malloc(sizeof *slots * n);
    char k[64];
    for (size_t i = 0; i < n; i++) {
        h[i] = bloom_hash(k, (size_t)sprintf(k, "key-%zu", i));
        slots[i] = pindex_slot(h[i], (uint32_t)(i / 30), (uint32_t)(i % 30 / 4 * 400), (unsigned)(i % 4));
    }
    pl_buf out = {0};
    /* a filter of its own in the tail for odd sizes (any bytes: the index carries them) */
    static const char filter[] = "0123456789abcdefghij";
    size_t flen = n % 2 ? sizeof filter : 0;
    CHECK_RC(pindex_build(h, slots, n, off, filter, flen, &out), PL_OK);
    pindex_layout lay;
    CHECK_RC(pindex_parse_tail(out.data + out.len - PINDEX_TAIL_BYTES, off, out.len, "t", &lay), PL_OK);
    CHECK_EQ(lay.buckets_off % 64, 0);
    CHECK(lay.buckets_off - off < 64);
    CHECK_EQ(lay.filter_len, flen);
    CHECK(lay.tail_off - off + PINDEX_TAIL_BYTES == out.len);
    CHECK(memcmp(out.data + (lay.tail_off - off) - flen, filter, flen) == 0);
    CHECK((uint64_t)lay.nbuckets * PINDEX_BUCKET_SLOTS > n); /* a free slot ends every search */
    CHECK(n < 100 || (double)n / ((double)lay.nbuckets * PINDEX_BUCKET_SLOTS) > 0.7);
    CHECK_RC(pindex_check_crcs(&lay, out.data + (lay.crcs_off - off), out.data + out.len - PINDEX_TAIL_BYTES, "t"),
             PL_OK);
    for (uint32_t c = 0; c < lay.nchunks; c++)
        CHECK(pindex_chunk_ok(&lay, out.data + (lay.crcs_off - off), out.data + (lay.buckets_off - off), c));
    int missing = 0, probes, more = 0;
    for (size_t i = 0; i < n; i++) {
        missing += !lookup(&out, off, h[i], slots[i], &probes);
        more += probes > 1;
    }
    CHECK_EQ(missing, 0);
    /* absent keys: the search ends, and rarely meets their fingerprint */
    int ended = 0, fp = 0;
    for (int i = 0; i < 20000; i++) {
        uint32_t a = bloom_hash(k, (size_t)sprintf(k, "absent-%d", i));
        ended += !lookup(&out, off, a, 0, &probes);
        pindex_layout l2 = lay;
        const char *bk = out.data + (l2.buckets_off - off) + (size_t)pindex_home(a, l2.nbuckets) * 64;
        unsigned j = 0;
        uint64_t s;
        fp += pindex_scan(bk, pindex_fingerprint(a), &j, &s) == PINDEX_MATCH;
    }
    CHECK_EQ(ended, 20000);
    if (n >= 1000) {
        if (off == 0)
            printf("%zu keys: %u buckets, %.1f%% of keys past their home bucket, %d of 20000 absent keys met "
               "their fingerprint\n", n, lay.nbuckets, 100.0 * more / (double)n, fp);
        CHECK(more < (int)(n / 10));
        CHECK(fp < 20);
    }
    /* the parser rejects a wrong size, tag, pad and alignment; the tail CRC covers the chunk CRCs */
    char *tail = out.data + out.len - PINDEX_TAIL_BYTES;
    CHECK_RC(pindex_parse_tail(tail, off, out.len + 1, "t", &lay), PL_CORRUPT);
    CHECK_RC(pindex_parse_tail(tail, off + 1, out.len, "t", &lay), PL_CORRUPT);
    tail[13] ^= 1;
    CHECK_RC(pindex_parse_tail(tail, off, out.len, "t", &lay), PL_CORRUPT);
    tail[13] ^= 1;
    tail[8] ^= 64;
    CHECK_RC(pindex_parse_tail(tail, off, out.len, "t", &lay), PL_CORRUPT);
    tail[8] ^= 64;
    tail[0] ^= 1; /* the filter's length */
    CHECK_RC(pindex_parse_tail(tail, off, out.len, "t", &lay), PL_CORRUPT);
    tail[0] ^= 1;
    CHECK_RC(pindex_parse_tail(tail, off, out.len, "t", &lay), PL_OK);
    out.data[lay.crcs_off - off] ^= 1;
    CHECK_RC(pindex_check_crcs(&lay, out.data + (lay.crcs_off - off), tail, "t"), PL_CORRUPT);
    CHECK(strstr(pl_errmsg(), "checksum") != NULL);
    out.data[lay.crcs_off - off] ^= 1;
    out.data[lay.buckets_off - off + 5] ^= 1;
    CHECK(!pindex_chunk_ok(&lay, out.data + (lay.crcs_off - off), out.data + (lay.buckets_off - off), 0));
    pl_buf_free(&out);
    free(h);
    free(slots);
}

int main(void)
{
    /* the slot's fields round-trip */
    uint64_t s = pindex_slot(0xdeadbeef, PINDEX_MAX_BLOCK, PINDEX_MAX_REGION_OFF, PINDEX_MAX_POS);
    CHECK_EQ(pindex_slot_block(s), PINDEX_MAX_BLOCK);
    CHECK_EQ(pindex_slot_region(s), PINDEX_MAX_REGION_OFF);
    CHECK_EQ(pindex_slot_pos(s), PINDEX_MAX_POS);
    CHECK_EQ((uint16_t)s, pindex_fingerprint(0xdeadbeef));
    CHECK(pindex_fingerprint(0) != 0);
    for (uint32_t h = 0; h < 1000000; h++)
        CHECK(pindex_fingerprint(h * 2654435761u) != 0 && pindex_home(h, 77) < 77);
    pl_buf out = {0};
    CHECK_RC(pindex_build(NULL, NULL, 0, 0, NULL, 0, &out), PL_INVALID);
    static const size_t sizes[] = {1, 2, 7, 8, 9, 63, 64, 65, 1000, 100000};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
        for (uint64_t off = 0; off < 130; off += 13)
            test_round_trip(sizes[i], off * 1000 + off);
    return test_report();
}
