/*
 * coding.h -- fixed-width little-endian integers and LEB128 varints (docs/format.md, "Encodings").
 *
 * Decoders take the end of the readable range and never read past it: they return NULL on a
 * truncated or overlong input, which callers report as corruption.
 */
#ifndef PL_CODING_H
#define PL_CODING_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline void put_u32(char *p, uint32_t v)
{
    unsigned char *b = (unsigned char *)p;
    b[0] = (unsigned char)v; b[1] = (unsigned char)(v >> 8);
    b[2] = (unsigned char)(v >> 16); b[3] = (unsigned char)(v >> 24);
}
static inline void put_u64(char *p, uint64_t v)
{
    put_u32(p, (uint32_t)v);
    put_u32(p + 4, (uint32_t)(v >> 32));
}
/* Little-endian loads: one unaligned load on a little-endian host (GCC does not fuse the byte form
 * into one: 19 instructions for a u32), the byte form elsewhere. */
static inline uint32_t get_u32(const char *p)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
#else
    const unsigned char *b = (const unsigned char *)p;
    return (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
#endif
}
static inline uint64_t get_u64(const char *p)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
#else
    return (uint64_t)get_u32(p) | ((uint64_t)get_u32(p + 4) << 32);
#endif
}

/* Largest encodings. */
#define VARINT32_MAX 5
#define VARINT64_MAX 10

/* Write v at p; return the byte after it. */
char *put_varint64(char *p, uint64_t v);
static inline char *put_varint32(char *p, uint32_t v) { return put_varint64(p, v); }
int varint_length(uint64_t v);

/* Decode a varint from [p, end); on success store it and return the byte after it, else NULL. */
const char *get_varint64(const char *p, const char *end, uint64_t *v);
const char *get_varint32(const char *p, const char *end, uint32_t *v);

#endif
