/*
 * crc.h -- CRC32C (Castagnoli), computed by ISA-L's crc32_iscsi.
 *
 * crc_value() is the standard CRC32C (check value 0xE3069283 for "123456789").  crc_extend() continues
 * a CRC over more bytes, so a CRC over non-contiguous ranges needs no copy:
 *   crc_value(a ++ b) == crc_extend(crc_value(a), b).
 * crc_mask()/crc_unmask() store CRCs of data that itself contains CRCs (as LevelDB does), so a CRC of
 * a block with embedded CRCs is not degenerate.
 */
#ifndef PL_CRC_H
#define PL_CRC_H

#include <stddef.h>
#include <stdint.h>

uint32_t crc_extend(uint32_t crc, const void *buf, size_t n);
static inline uint32_t crc_value(const void *buf, size_t n) { return crc_extend(0, buf, n); }

static inline uint32_t crc_mask(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }
static inline uint32_t crc_unmask(uint32_t m)
{
    uint32_t r = m - 0xa282ead8u;
    return (r >> 17) | (r << 15);
}

#endif
