/* coding.c -- varints; see coding.h. */
#include "coding.h"

char *put_varint64(char *p, uint64_t v)
{
    unsigned char *b = (unsigned char *)p;
    while (v >= 0x80) {
        *b++ = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    *b++ = (unsigned char)v;
    return (char *)b;
}

int varint_length(uint64_t v)
{
    int n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

const char *get_varint64(const char *p, const char *end, uint64_t *v)
{
    uint64_t r = 0;
    for (unsigned shift = 0; shift <= 63 && p < end; shift += 7) {
        uint64_t byte = (unsigned char)*p++;
        if (shift == 63 && byte > 1)
            return NULL; /* overflows 64 bits */
        r |= (byte & 0x7f) << shift;
        if (!(byte & 0x80)) {
            *v = r;
            return p;
        }
    }
    return NULL;
}

const char *get_varint32(const char *p, const char *end, uint32_t *v)
{
    uint64_t r;
    p = get_varint64(p, end, &r);
    if (!p || r > UINT32_MAX)
        return NULL;
    *v = (uint32_t)r;
    return p;
}
