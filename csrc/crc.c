/* crc.c -- CRC32C through ISA-L; see crc.h. */
#include "crc.h"

#include <isa-l/crc.h>

uint32_t crc_extend(uint32_t crc, const void *buf, size_t n)
{
    /* ISA-L's crc32_iscsi neither pre- nor post-inverts; the standard CRC32C does both.
     * Its length is an int, so very large inputs go in 1 GiB pieces. */
    const unsigned char *p = buf;
    uint32_t c = ~crc;
    while (n > 0) {
        size_t piece = n > (1u << 30) ? (1u << 30) : n;
        c = crc32_iscsi((unsigned char *)p, (int)piece, c);
        p += piece;
        n -= piece;
    }
    return ~c;
}
