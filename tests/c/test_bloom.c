/* test_bloom.c -- bloom filters: no false negatives, false-positive rate, malformed filters. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bloom.h"
#include "testutil.h"

#define PINNED_HASH17 0x1b397b6fu
#define PINNED_FILTER 0x8b198e7du /* the blocked layout */

static size_t key_of(char *buf, const char *prefix, int i)
{
    return (size_t)sprintf(buf, "%s%08d", prefix, i);
}

/* Build a filter of n keys and return its false-positive rate over 10,000 absent keys. */
static double fp_rate(int n, int bits_per_key, size_t *filter_len)
{
    uint32_t *h = malloc(sizeof *h * (size_t)(n ? n : 1));
    char k[64];
    for (int i = 0; i < n; i++)
        h[i] = bloom_hash(k, key_of(k, "present-", i));
    pl_buf f = {0};
    CHECK_RC(bloom_build(h, (size_t)n, bits_per_key, &f), PL_OK);
    *filter_len = f.len;
    int missing = 0;
    for (int i = 0; i < n; i++)
        if (!bloom_may_contain(f.data, f.len, h[i]))
            missing++;
    CHECK_EQ(missing, 0); /* no false negatives, ever */
    int fp = 0;
    for (int i = 0; i < 10000; i++)
        fp += bloom_may_contain(f.data, f.len, bloom_hash(k, key_of(k, "absent-", i)));
    pl_buf_free(&f);
    free(h);
    return fp / 10000.0;
}

int main(void)
{
    /* The hash is part of the file format: pin it. */
    CHECK(bloom_hash("", 0) == bloom_hash("", 0));
    CHECK(bloom_hash("a", 1) != bloom_hash("b", 1));
    CHECK(bloom_hash("abcd", 4) != bloom_hash("abce", 4));
    CHECK(bloom_hash("abcde", 5) != bloom_hash("abcdf", 5));
    CHECK(bloom_hash("a\0", 2) != bloom_hash("a", 1));
    /* Pinned values: a change here changes the file format. */
    CHECK_EQ(bloom_hash("", 0), 0x3f177186u);
    CHECK_EQ(bloom_hash("hello", 5), 0x2d20a3bdu);
    CHECK_EQ(bloom_hash("0123456789abcdefg", 17), PINNED_HASH17);
    {
        uint32_t hs[3] = {bloom_hash("a", 1), bloom_hash("b", 1), bloom_hash("c", 1)};
        pl_buf f = {0};
        CHECK_RC(bloom_build(hs, 3, 10, &f), PL_OK);
        unsigned sum = 0;
        for (size_t i = 0; i < f.len; i++)
            sum = sum * 31 + (unsigned char)f.data[i];
        CHECK_EQ(sum, PINNED_FILTER);
        pl_buf_free(&f);
    }
    {
        /* Distinct keys rarely collide. */
        uint32_t *h = malloc(sizeof *h * 100000);
        char k[32];
        for (int i = 0; i < 100000; i++)
            h[i] = bloom_hash(k, key_of(k, "k", i));
        int same = 0;
        for (int i = 1; i < 100000; i++)
            same += h[i] == h[i - 1];
        CHECK(same < 3);
        free(h);
    }

    size_t len;
    double r = fp_rate(10000, 10, &len);
    printf("bloom false-positive rate at 10 bits/key, 10000 keys: %.3f%% (%zu filter bytes)\n",
           r * 100, len);
    CHECK(r < 0.02);
    CHECK_EQ(len, (10000 * 10 + 511) / 512 * 64 + 2); /* whole 512-bit lines, then k and the tag */

    for (int n = 0; n <= 100000; n = n ? n * 10 : 1) {
        r = fp_rate(n, 10, &len);
        printf("  n=%-6d 10 bits/key: fp %.3f%%, %zu bytes\n", n, r * 100, len);
        CHECK(r < 0.03);
        CHECK(len >= BLOOM_LINE_BITS / 8 + 2);
    }
    r = fp_rate(5000, 20, &len);
    printf("  n=5000   20 bits/key: fp %.3f%%\n", r * 100);
    CHECK(r < 0.002);
    r = fp_rate(5000, 1, &len);
    CHECK(r < 0.8);
    r = fp_rate(5000, 100, &len); /* k clamped to 30 */
    CHECK(r < 0.001);

    /* Probe count byte. */
    {
        uint32_t h = 42;
        pl_buf f = {0};
        CHECK_RC(bloom_build(&h, 1, 10, &f), PL_OK);
        CHECK_EQ((unsigned char)f.data[f.len - 1], BLOOM_BLOCKED_TAG);
        CHECK_EQ((unsigned char)f.data[f.len - 2], 6);
        CHECK_EQ(f.len, 66); /* one 512-bit line + k + tag */
        f.len = 0;
        CHECK_RC(bloom_build(&h, 1, 100, &f), PL_OK);
        CHECK_EQ((unsigned char)f.data[f.len - 2], 30);
        /* bloom_build appends */
        size_t before = f.len;
        CHECK_RC(bloom_build(&h, 1, 1, &f), PL_OK);
        CHECK_EQ((unsigned char)f.data[f.len - 2], 1);
        CHECK(f.len > before);
        CHECK_RC(bloom_build(&h, 1, 0, &f), PL_INVALID);
        pl_buf_free(&f);
    }

    /* Empty or malformed filters answer "maybe". */
    CHECK_EQ(bloom_may_contain(NULL, 0, 1), 1);
    CHECK_EQ(bloom_may_contain("\x06", 1, 1), 1);
    {
        char z[9] = {0};
        z[8] = 0; /* k = 0: reserved */
        CHECK_EQ(bloom_may_contain(z, 9, 12345), 1);
        z[8] = 31;
        CHECK_EQ(bloom_may_contain(z, 9, 12345), 1);
        z[8] = 6; /* a valid, empty filter: nothing is in it */
        CHECK_EQ(bloom_may_contain(z, 9, 12345), 0);
    }
    {
        /* Blocked: not whole lines, or a bad k, answers "maybe"; an empty valid one, "no". */
        char b[66] = {0};
        b[64] = 6;
        b[65] = (char)BLOOM_BLOCKED_TAG;
        CHECK_EQ(bloom_may_contain(b, 66, 12345), 0);
        CHECK_EQ(bloom_may_contain(b + 1, 65, 12345), 1);
        b[64] = 0;
        CHECK_EQ(bloom_may_contain(b, 66, 12345), 1);
    }
    {
        /* bloom_lines: the lines of a blocked filter, 0 for anything else (no prefetch then). */
        uint32_t hs[3] = {1, 2, 3};
        pl_buf f = {0};
        CHECK_RC(bloom_build(hs, 3, 10, &f), PL_OK);
        CHECK_EQ(bloom_lines(f.data, f.len), 1);
        f.len = 0;
        uint32_t *many = calloc(1000, sizeof *many);
        CHECK_RC(bloom_build(many, 1000, 10, &f), PL_OK);
        CHECK_EQ(bloom_lines(f.data, f.len), (1000 * 10 + 511) / 512);
        CHECK_EQ(bloom_lines(f.data + 1, f.len - 1), 0);  /* not whole lines */
        CHECK_EQ(bloom_lines(f.data, f.len - 1), 0);      /* no tag */
        CHECK_EQ(bloom_lines(NULL, 0), 0);
        CHECK_EQ(bloom_lines("\x06", 1), 0);
        /* The line a prefetch starts is the one a probe reads: a filter whose other lines are cleared
         * still holds each key. */
        for (int i = 0; i < 1000; i++)
            many[i] = bloom_hash((const char *)&i, sizeof i);
        f.len = 0;
        CHECK_RC(bloom_build(many, 1000, 10, &f), PL_OK);
        size_t nl = bloom_lines(f.data, f.len), line_bytes = BLOOM_LINE_BITS / 8;
        char *only = malloc(f.len);
        for (int i = 0; i < 1000; i += 7) {
            size_t line = bloom_line_of(many[i], nl);
            CHECK(line < nl);
            memset(only, 0, f.len);
            memcpy(only + line * line_bytes, f.data + line * line_bytes, line_bytes);
            memcpy(only + f.len - 2, f.data + f.len - 2, 2);
            CHECK_EQ(bloom_may_contain(only, f.len, many[i]), 1);
            bloom_prefetch_line(f.data, nl, many[i]);
        }
        free(only);
        bloom_prefetch_line(NULL, 0, 7); /* no lines: nothing */
        free(many);
        pl_buf_free(&f);
    }
    {
        /* The first format (tables written before the blocked one) still reads: build one as that
         * writer did (k probes, double hashing mod nbits over the whole array) and probe it. */
        enum { N = 2000 };
        size_t bits = N * 10, bytes = (bits + 7) / 8;
        bits = bytes * 8;
        unsigned char *a = calloc(bytes + 1, 1);
        char k[32];
        for (int i = 0; i < N; i++) {
            uint32_t h = bloom_hash(k, key_of(k, "old-", i));
            uint32_t x = h + 0x9e3779b9u;
            x ^= x >> 16; x *= 0x85ebca6bu; x ^= x >> 13; x *= 0xc2b2ae35u; x ^= x >> 16;
            uint32_t delta = x | 1;
            for (int j = 0; j < 6; j++) {
                size_t pos = (size_t)h % bits;
                a[pos / 8] |= (unsigned char)(1u << (pos % 8));
                h += delta;
            }
        }
        a[bytes] = 6;
        int missing = 0, fp = 0;
        for (int i = 0; i < N; i++)
            missing += !bloom_may_contain((char *)a, bytes + 1, bloom_hash(k, key_of(k, "old-", i)));
        for (int i = 0; i < 10000; i++)
            fp += bloom_may_contain((char *)a, bytes + 1, bloom_hash(k, key_of(k, "none-", i)));
        CHECK_EQ(missing, 0);
        CHECK(fp < 200);
        free(a);
    }
    return test_report();
}
