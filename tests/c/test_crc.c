/* test_crc.c -- CRC32C (crc.h): the standard check value, extension over split ranges, masking, and
 * large buffers (including one over the 1 GiB piece size crc_extend feeds ISA-L). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "crc.h"
#include "testutil.h"

/* Bitwise reference CRC32C (reflected polynomial 0x82F63B78, pre- and post-inverted). */
static uint32_t ref_crc_extend(uint32_t crc, const void *buf, size_t n)
{
    const unsigned char *p = buf;
    uint32_t c = ~crc;
    while (n--) {
        c ^= *p++;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
    }
    return ~c;
}

static void test_check_value(void)
{
    CHECK_EQ(crc_value("123456789", 9), 0xE3069283u);
    CHECK_EQ(ref_crc_extend(0, "123456789", 9), 0xE3069283u);
    CHECK_EQ(crc_value("", 0), 0u);
    CHECK_EQ(crc_extend(0x12345678u, "", 0), 0x12345678u); /* nothing added: unchanged */
    /* Known CRC32C vectors (RFC 3720 B.4): 32 zero bytes, 32 0xff bytes, 0..31 ascending. */
    unsigned char b[32];
    memset(b, 0, sizeof b);
    CHECK_EQ(crc_value(b, 32), 0x8A9136AAu);
    memset(b, 0xff, sizeof b);
    CHECK_EQ(crc_value(b, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; i++)
        b[i] = (unsigned char)i;
    CHECK_EQ(crc_value(b, 32), 0x46DD794Eu);
    /* Different inputs, different CRCs (sanity, not a property). */
    CHECK(crc_value("a", 1) != crc_value("b", 1));
    CHECK(crc_value("a", 1) != crc_value("a\0", 2));
}

static void test_extend_split(void)
{
    enum { N = 1000 };
    unsigned char *buf = malloc(N);
    unsigned long long s = 42;
    for (int i = 0; i < N; i++)
        buf[i] = (unsigned char)tu_rand(&s);
    uint32_t whole = crc_value(buf, N);
    CHECK_EQ(whole, ref_crc_extend(0, buf, N));
    int bad = 0;
    for (int cut = 0; cut <= N; cut++) {
        if (crc_extend(crc_value(buf, (size_t)cut), buf + cut, (size_t)(N - cut)) != whole)
            bad++;
    }
    CHECK_EQ(bad, 0);
    /* Three ranges, every pair of cut points on a short prefix. */
    bad = 0;
    for (int a = 0; a <= 64; a++)
        for (int b = a; b <= 64; b++) {
            uint32_t c = crc_value(buf, (size_t)a);
            c = crc_extend(c, buf + a, (size_t)(b - a));
            c = crc_extend(c, buf + b, (size_t)(64 - b));
            if (c != crc_value(buf, 64))
                bad++;
        }
    CHECK_EQ(bad, 0);
    /* Every length and misalignment against the reference (ISA-L has alignment-specific paths). */
    bad = 0;
    for (int off = 0; off < 16; off++)
        for (int len = 0; len + off <= 600; len++)
            if (crc_value(buf + off, (size_t)len) != ref_crc_extend(0, buf + off, (size_t)len))
                bad++;
    CHECK_EQ(bad, 0);
    /* The WAL's pattern: a CRC over the bytes around a 4-byte hole equals the CRC of the bytes with
     * the hole removed. */
    unsigned char joined[N - 4];
    memcpy(joined, buf, 8);
    memcpy(joined + 8, buf + 12, N - 12);
    CHECK_EQ(crc_extend(crc_value(buf, 8), buf + 12, N - 12), crc_value(joined, N - 4));
    free(buf);
}

static void test_mask(void)
{
    unsigned long long s = 7;
    int bad = 0, fixed = 0;
    uint32_t special[] = {0, 1, 0x7fffffffu, 0x80000000u, 0xffffffffu, 0xa282ead8u, 0xE3069283u};
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++)
        if (crc_unmask(crc_mask(special[i])) != special[i])
            bad++;
    for (int i = 0; i < 1000000; i++) {
        uint32_t c = (uint32_t)tu_rand(&s);
        if (crc_unmask(crc_mask(c)) != c)
            bad++;
        if (crc_mask(c) == c)
            fixed++;
    }
    CHECK_EQ(bad, 0);
    CHECK(fixed < 10); /* masking changes the value (essentially always) */
    uint32_t c = crc_value("foo", 3);
    CHECK(crc_mask(c) != c);
    CHECK(crc_mask(crc_mask(c)) != c);
    CHECK_EQ(crc_unmask(crc_mask(crc_mask(c))), crc_mask(c));
}

static void test_large(void)
{
    /* 16 MiB of random bytes: one pass == reference == pieces of odd sizes. */
    size_t n = 16u << 20;
    unsigned char *buf = malloc(n);
    unsigned long long s = 99;
    for (size_t i = 0; i < n; i += 8) {
        unsigned long long r = tu_rand(&s);
        memcpy(buf + i, &r, 8);
    }
    uint32_t whole = crc_value(buf, n);
    CHECK_EQ(whole, ref_crc_extend(0, buf, n));
    uint32_t c = 0;
    size_t off = 0, piece = 1;
    while (off < n) {
        size_t k = piece < n - off ? piece : n - off;
        c = crc_extend(c, buf + off, k);
        off += k;
        piece = piece * 3 + 1;
    }
    CHECK_EQ(c, whole);
    free(buf);

    /* Over 1 GiB: crc_extend feeds ISA-L (int length) in 1 GiB pieces.  An untouched anonymous
     * mapping reads as zeros and costs no memory.  Check the one-call result against a split where
     * both halves are under 1 GiB, and against the zero-buffer CRC computed by extension. */
    size_t big = ((size_t)1 << 30) + 123457;
    void *m = mmap(NULL, big, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    CHECK(m != MAP_FAILED);
    if (m != MAP_FAILED) {
        uint32_t one = crc_value(m, big);
        size_t half = big / 2;
        uint32_t two = crc_extend(crc_value(m, half), (const char *)m + half, big - half);
        CHECK_EQ(one, two);
        /* Zeros in 1 MiB steps (a different decomposition again). */
        static unsigned char zeros[1u << 20];
        uint32_t z = 0;
        size_t left = big;
        while (left) {
            size_t k = left < sizeof zeros ? left : sizeof zeros;
            z = crc_extend(z, zeros, k);
            left -= k;
        }
        CHECK_EQ(one, z);
        munmap(m, big);
    }
}

int main(void)
{
    test_check_value();
    test_extend_split();
    test_mask();
    test_large();
    return test_report();
}
