/* test_coding.c -- fixed-width little-endian integers and LEB128 varints (coding.h). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "coding.h"
#include "ikey.h"
#include "testutil.h"

static void test_fixed(void)
{
    char b[8];
    put_u32(b, 0x04030201u);
    CHECK(memcmp(b, "\x01\x02\x03\x04", 4) == 0);
    CHECK_EQ(get_u32(b), 0x04030201u);
    put_u64(b, 0x0807060504030201ull);
    CHECK(memcmp(b, "\x01\x02\x03\x04\x05\x06\x07\x08", 8) == 0);
    CHECK(get_u64(b) == 0x0807060504030201ull);
    put_u32(b, 0xffffffffu);
    CHECK(get_u32(b) == 0xffffffffu);
    put_u64(b, UINT64_MAX);
    CHECK(get_u64(b) == UINT64_MAX);
    put_u64(b, 0);
    CHECK(get_u64(b) == 0);
    /* High-bit bytes must not sign-extend. */
    memcpy(b, "\x80\xff\x90\xfe\x81\x82\x83\xf0", 8);
    CHECK(get_u32(b) == 0xfe90ff80u);
    CHECK(get_u64(b) == 0xf0838281fe90ff80ull);

    /* Random round trips at unaligned addresses. */
    char buf[32];
    unsigned long long s = 1;
    int bad = 0;
    for (int i = 0; i < 100000; i++) {
        uint64_t v = tu_rand(&s);
        int off = i % 17;
        put_u64(buf + off, v);
        if (get_u64(buf + off) != v)
            bad++;
        put_u32(buf + off + 8, (uint32_t)v);
        if (get_u32(buf + off + 8) != (uint32_t)v || get_u64(buf + off) != v)
            bad++;
    }
    CHECK_EQ(bad, 0);
}

/* Encode v, decode it back with an exact end; the encoding is as long as varint_length says and every
 * shorter end is a truncation (NULL). */
static int varint_roundtrip(uint64_t v)
{
    char buf[VARINT64_MAX + 4];
    memset(buf, 0xAA, sizeof buf);
    char *e = put_varint64(buf, v);
    int len = (int)(e - buf);
    int ok = len == varint_length(v) && len >= 1 && len <= VARINT64_MAX;
    /* Decode from an exactly-sized heap copy so an overread is an ASan error. */
    char *h = malloc((size_t)len);
    memcpy(h, buf, (size_t)len);
    uint64_t got = ~v;
    const char *q = get_varint64(h, h + len, &got);
    ok = ok && q == h + len && got == v;
    for (int cut = 0; cut < len; cut++) {
        uint64_t x = 12345;
        if (get_varint64(h, h + cut, &x) != NULL || x != 12345)
            ok = 0;
    }
    /* All but the last byte have the continuation bit. */
    for (int i = 0; i < len; i++)
        if (((unsigned char)h[i] >> 7) != (i < len - 1))
            ok = 0;
    /* 32-bit decoding agrees when v fits, refuses when it does not. */
    uint32_t v32 = 777;
    const char *q32 = get_varint32(h, h + len, &v32);
    if (v <= UINT32_MAX)
        ok = ok && q32 == h + len && v32 == (uint32_t)v;
    else
        ok = ok && q32 == NULL && v32 == 777;
    free(h);
    return ok;
}

static void test_varint_boundaries(void)
{
    CHECK(varint_roundtrip(0));
    CHECK(varint_roundtrip(1));
    CHECK(varint_roundtrip(127));
    CHECK(varint_roundtrip(128));
    CHECK(varint_roundtrip(UINT32_MAX));
    CHECK(varint_roundtrip((uint64_t)UINT32_MAX + 1));
    CHECK(varint_roundtrip(UINT64_MAX));
    CHECK(varint_roundtrip(UINT64_MAX - 1));
    CHECK(varint_roundtrip(INT64_MAX));
    CHECK(varint_roundtrip((uint64_t)INT64_MAX + 1));
    /* 2^(7k) - 1 is the largest k-byte value, 2^(7k) the smallest (k+1)-byte one. */
    for (int k = 1; k <= 9; k++) {
        uint64_t p = (uint64_t)1 << (7 * k);
        CHECK_EQ(varint_length(p - 1), k);
        CHECK_EQ(varint_length(p), k + 1);
        CHECK(varint_roundtrip(p - 1));
        CHECK(varint_roundtrip(p));
        CHECK(varint_roundtrip(p + 1));
    }
    CHECK_EQ(varint_length(0), 1);
    CHECK_EQ(varint_length(UINT64_MAX), 10);
    CHECK_EQ(varint_length(UINT32_MAX), 5);
    /* Every power of two and its neighbours. */
    int bad = 0;
    for (int b = 0; b < 64; b++) {
        uint64_t p = (uint64_t)1 << b;
        if (!varint_roundtrip(p) || !varint_roundtrip(p - 1) || !varint_roundtrip(p + 1))
            bad++;
    }
    CHECK_EQ(bad, 0);
    /* Random values of every magnitude. */
    unsigned long long s = 5;
    bad = 0;
    for (int i = 0; i < 200000; i++) {
        uint64_t v = tu_rand(&s) >> (tu_rand(&s) % 64);
        if (!varint_roundtrip(v))
            bad++;
    }
    CHECK_EQ(bad, 0);
    /* Exact encodings. */
    char buf[16];
    CHECK(put_varint64(buf, 300) - buf == 2 && memcmp(buf, "\xac\x02", 2) == 0);
    CHECK(put_varint32(buf, 127) - buf == 1 && buf[0] == 0x7f);
    CHECK(put_varint32(buf, UINT32_MAX) - buf == 5 && memcmp(buf, "\xff\xff\xff\xff\x0f", 5) == 0);
    CHECK(put_varint64(buf, UINT64_MAX) - buf == 10 &&
          memcmp(buf, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 10) == 0);
}

/* Decode from an exactly-sized heap copy of bytes[0..n). */
static const char *dec64(const char *bytes, size_t n, uint64_t *v, char **heap)
{
    *heap = malloc(n ? n : 1);
    memcpy(*heap, bytes, n);
    return get_varint64(*heap, *heap + n, v);
}

static void test_varint_bad(void)
{
    uint64_t v = 99;
    char *h;
    /* Empty range. */
    CHECK(dec64("", 0, &v, &h) == NULL);
    free(h);
    /* Continuation bit on the last available byte. */
    CHECK(dec64("\x80", 1, &v, &h) == NULL);
    free(h);
    CHECK(dec64("\xff\xff\xff", 3, &v, &h) == NULL);
    free(h);
    /* Eleven bytes: longer than any 64-bit varint, even with room to read. */
    CHECK(dec64("\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x00", 11, &v, &h) == NULL);
    free(h);
    CHECK(dec64("\xff\xff\xff\xff\xff\xff\xff\xff\xff\x81\x01", 11, &v, &h) == NULL);
    free(h);
    /* Ten bytes whose last carries bits above 2^64. */
    CHECK(dec64("\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", 10, &v, &h) == NULL);
    free(h);
    CHECK(dec64("\x80\x80\x80\x80\x80\x80\x80\x80\x80\x7f", 10, &v, &h) == NULL);
    free(h);
    CHECK(v == 99); /* never written on failure */
    /* ... and the largest legal one. */
    CHECK(dec64("\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 10, &v, &h) == h + 10 && v == UINT64_MAX);
    free(h);
    CHECK(dec64("\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", 10, &v, &h) == h + 10 && v == (1ull << 63));
    free(h);
    /* Decoding stops at the first terminal byte; trailing bytes are left alone. */
    CHECK(dec64("\x05\xff\xff", 3, &v, &h) == h + 1 && v == 5);
    free(h);

    /* get_varint32 refuses anything above UINT32_MAX, including 5-byte encodings with high bits. */
    uint32_t v32 = 7;
    CHECK(get_varint32("\xff\xff\xff\xff\x0f", (const char *)"\xff\xff\xff\xff\x0f" + 5, &v32) != NULL &&
          v32 == UINT32_MAX);
    v32 = 7;
    const char *e = "\x80\x80\x80\x80\x10"; /* 2^32 */
    CHECK(get_varint32(e, e + 5, &v32) == NULL && v32 == 7);
    e = "\xff\xff\xff\xff\x1f"; /* 2^33 - 1 */
    CHECK(get_varint32(e, e + 5, &v32) == NULL);
    e = "\xff\xff\xff\xff\xff\x01"; /* 6 bytes */
    CHECK(get_varint32(e, e + 6, &v32) == NULL);
    e = "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01";
    CHECK(get_varint32(e, e + 10, &v32) == NULL);
    e = "\xff\xff\xff\xff"; /* truncated */
    CHECK(get_varint32(e, e + 4, &v32) == NULL);
    CHECK(v32 == 7);

    /* Fuzz: random byte strings never read past their end (ASan) and, when they decode, re-encode
     * to a value of the same magnitude. */
    unsigned long long s = 11;
    int bad = 0;
    for (int i = 0; i < 100000; i++) {
        size_t n = tu_rand(&s) % 13;
        char *buf = malloc(n ? n : 1);
        for (size_t j = 0; j < n; j++) {
            unsigned r = (unsigned)tu_rand(&s);
            buf[j] = (char)((r & 7) ? (r >> 8) | 0x80 : r >> 8); /* mostly continuation bytes */
        }
        uint64_t x;
        const char *q = get_varint64(buf, buf + n, &x);
        if (q && (q <= buf || q > buf + n || varint_length(x) > q - buf))
            bad++;
        free(buf);
    }
    CHECK_EQ(bad, 0);
}

/* ukey_cmp (ikey.h) has the sign of memcmp then length order, for every length around its inline
 * window (8..32 common bytes), keys differing at every position, in bytes above 0x7f too. */
static void test_ukey_cmp(void)
{
    unsigned long long s = 5;
    int bad = 0;
    char a[48], b[48];
    for (int n = 0; n < 200000; n++) {
        size_t an = (size_t)(tu_rand(&s) % 41), bn = tu_rand(&s) % 4 ? an : (size_t)(tu_rand(&s) % 41);
        for (size_t i = 0; i < sizeof a; i++)
            a[i] = b[i] = (char)(tu_rand(&s) % 4 == 0 ? 0xff : tu_rand(&s) % 3);
        if (tu_rand(&s) % 2 && an && bn) /* one differing byte */
            b[tu_rand(&s) % (an < bn ? an : bn)] ^= (char)(1 + tu_rand(&s) % 255);
        size_t m = an < bn ? an : bn;
        int want = memcmp(a, b, m);
        want = want ? (want > 0) - (want < 0) : (an > bn) - (an < bn);
        int got = ukey_cmp(a, an, b, bn);
        bad += ((got > 0) - (got < 0)) != want;
    }
    CHECK_EQ(bad, 0);
}

int main(void)
{
    test_fixed();
    test_varint_boundaries();
    test_varint_bad();
    test_ukey_cmp();
    return test_report();
}
