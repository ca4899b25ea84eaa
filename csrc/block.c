/* block.c -- prefix-compressed sorted blocks; see block.h and docs/format.md, "Block". */
#include "block.h"

#include <stdlib.h>
#include <string.h>

#include "bloom.h"
#include "coding.h"
#include "ikey.h"
#include "memtable.h" /* buf_reserve, buf_set */
#include "status.h"

/* ---- building ---- */

void block_builder_init(block_builder *b, int interval)
{
    memset(b, 0, sizeof *b);
    b->interval = interval < 1 ? 1 : interval;
}

void block_builder_free(block_builder *b)
{
    pl_buf_free(&b->buf);
    pl_buf_free(&b->restarts);
    pl_buf_free(&b->last);
    pl_buf_free(&b->keys);
    b->counter = 0;
    b->entries = 0;
    b->finished = 0;
}

void block_builder_reset(block_builder *b)
{
    b->buf.len = 0;
    b->restarts.len = 0;
    b->last.len = 0;
    b->keys.len = 0;
    b->counter = 0;
    b->entries = 0;
    b->finished = 0;
}

/* The number of hash index slots for the distinct user keys recorded so far; 0: no hash index. */
static size_t hash_slots(const block_builder *b)
{
    size_t keys = b->keys.len / 8;
    if (!b->hash || keys == 0 || b->restarts.len / 4 > BLOCK_HASH_MAX_RESTARTS)
        return 0;
    size_t m = (size_t)((double)keys / BLOCK_HASH_KEYS_PER_SLOT) + 1; /* > keys: a free slot remains */
    return m > UINT16_MAX ? 0 : m;
}

size_t block_builder_size_estimate(const block_builder *b)
{
    if (b->finished)
        return b->buf.len;
    size_t n = b->restarts.len / 4, m = hash_slots(b);
    return b->buf.len + 4 * (n ? n : 1) + 4 + (m ? 2 * m + 2 : 0);
}

int block_builder_add(block_builder *b, const char *key, size_t klen, const char *val, size_t vlen)
{
    if (klen < IKEY_TRAILER)
        return PL_FAIL(PL_INVALID, "block: internal key of %zu bytes (< 8)", klen);
    if (klen > BLOCK_MAX_BYTES || vlen > BLOCK_MAX_BYTES ||
        block_builder_size_estimate(b) + 3 * VARINT32_MAX + 4 + klen + vlen > BLOCK_MAX_BYTES)
        return PL_FAIL(PL_INVALID, "block: entry of %zu + %zu bytes overflows the block", klen, vlen);

    int restart = b->counter == 0;
    /* with a hash index: the first entry of each user key is recorded (versions of a key are adjacent) */
    int new_key = b->hash && (b->entries == 0 || b->last.len != klen ||
                              memcmp(b->last.data, key, klen - IKEY_TRAILER) != 0);
    size_t shared = 0;
    if (!restart) {
        size_t m = b->last.len < klen ? b->last.len : klen;
        while (shared < m && b->last.data[shared] == key[shared])
            shared++;
    }
    size_t non_shared = klen - shared;

    /* Reserve everything first, so a failure leaves the builder as it was. */
    int rc = buf_reserve(&b->buf, b->buf.len + 3 * VARINT32_MAX + non_shared + vlen);
    if (!rc && restart)
        rc = buf_reserve(&b->restarts, b->restarts.len + 4);
    if (!rc)
        rc = buf_reserve(&b->last, klen);
    if (!rc && new_key)
        rc = buf_reserve(&b->keys, b->keys.len + 8);
    if (rc)
        return rc;

    if (restart) {
        uint32_t off = (uint32_t)b->buf.len;
        memcpy(b->restarts.data + b->restarts.len, &off, 4);
        b->restarts.len += 4;
    }
    char *p = b->buf.data + b->buf.len;
    p = put_varint32(p, (uint32_t)shared);
    p = put_varint32(p, (uint32_t)non_shared);
    p = put_varint32(p, (uint32_t)vlen);
    memcpy(p, key + shared, non_shared);
    p += non_shared;
    if (vlen)
        memcpy(p, val, vlen);
    p += vlen;
    b->buf.len = (size_t)(p - b->buf.data);

    if (new_key) {
        uint32_t rec[2] = {bloom_hash(key, klen - IKEY_TRAILER), (uint32_t)(b->restarts.len / 4 - 1)};
        memcpy(b->keys.data + b->keys.len, rec, 8);
        b->keys.len += 8;
    }
    memcpy(b->last.data + shared, key + shared, non_shared);
    b->last.len = klen;
    if (++b->counter >= b->interval)
        b->counter = 0;
    b->entries++;
    return PL_OK;
}

int block_builder_finish(block_builder *b, const char **data, size_t *len)
{
    if (!b->finished) {
        size_t n = b->restarts.len / 4, m = hash_slots(b);
        int rc = buf_reserve(&b->buf, b->buf.len + 4 * (n ? n : 1) + 4 + (m ? 2 * m + 2 : 0));
        if (rc)
            return rc;
        char *p = b->buf.data + b->buf.len;
        if (n == 0) {
            put_u32(p, 0); /* an empty block still has its one restart point */
            p += 4;
            n = 1;
        } else {
            for (size_t i = 0; i < n; i++, p += 4) {
                uint32_t off;
                memcpy(&off, b->restarts.data + 4 * i, 4);
                put_u32(p, off);
            }
        }
        uint32_t count = (uint32_t)n;
        if (m) {
            unsigned char *slot = (unsigned char *)p;
            for (size_t i = 0; i < m; i++) {
                slot[2 * i] = 0;
                slot[2 * i + 1] = BLOCK_HASH_EMPTY;
            }
            for (size_t k = 0; k < b->keys.len / 8; k++) {
                uint32_t rec[2]; /* hash, region */
                memcpy(rec, b->keys.data + 8 * k, 8);
                size_t i = block_hash_slot(rec[0], (uint32_t)m);
                while (slot[2 * i + 1] != BLOCK_HASH_EMPTY) /* linear probing; m > keys */
                    i = i + 1 == m ? 0 : i + 1;
                slot[2 * i] = block_hash_fingerprint(rec[0]);
                slot[2 * i + 1] = (unsigned char)rec[1];
            }
            p += 2 * m;
            p[0] = (char)(m & 0xff); /* u16, little-endian */
            p[1] = (char)(m >> 8);
            p += 2;
            count |= BLOCK_HASH_FLAG;
        }
        put_u32(p, count);
        b->buf.len = (size_t)(p + 4 - b->buf.data);
        b->finished = 1;
    }
    *data = b->buf.data;
    *len = b->buf.len;
    return PL_OK;
}

/* ---- reading ---- */

static inline void set_invalid(block_cursor *c)
{
    c->cur = c->next = c->data_end;
    c->ri = UINT32_MAX;
}

static int corrupt(block_cursor *c, const char *what)
{
    c->status = PL_CORRUPT;
    set_invalid(c);
    return PL_FAIL(PL_CORRUPT, "malformed block: %s", what);
}

static inline uint32_t restart_at(const block_cursor *c, uint32_t i)
{
    return get_u32(c->data + c->data_end + 4 * (size_t)i);
}

/* Order of the internal key k against the target (ukey, trailer). */
static inline int cmp_target(const char *k, size_t kn, const char *ukey, size_t ulen, uint64_t trailer)
{
    int r = ukey_cmp(k, kn - IKEY_TRAILER, ukey, ulen);
    if (r)
        return r;
    uint64_t t = get_u64(k + kn - IKEY_TRAILER);
    return t > trailer ? -1 : t < trailer;
}

int block_cursor_init(block_cursor *c, const char *data, size_t len)
{
    c->kheap = NULL;
    c->kcap = 0;
    c->rent = NULL;
    c->rkeys = NULL;
    c->rcap = 0;
    c->rkcap = 0;
    return block_cursor_reset(c, data, len);
}

void block_cursor_init_empty(block_cursor *c)
{
    memset(c, 0, offsetof(block_cursor, kinline));
    c->data = "";
}

int block_cursor_reset(block_cursor *c, const char *data, size_t len)
{
    c->data = data;
    c->status = PL_OK;
    c->klen = 0;
    c->kext = NULL;
    c->rn = 0;
    c->rreg = 0;
    c->ri = UINT32_MAX;
    c->rkused = 0;
    c->val = NULL;
    c->vlen = 0;
    c->restart = 0;
    c->data_end = 0;
    c->nrestarts = 0;
    c->slot = NULL;
    c->nslots = 0;
    c->cur = c->next = 0;
    if (len < 8)
        return corrupt(c, "shorter than its restart array");
    if (len > UINT32_MAX)
        return corrupt(c, "longer than 4 GiB");
    uint32_t n = get_u32(data + len - 4);
    size_t tail = len - 4; /* bytes before the count */
    if (n & BLOCK_HASH_FLAG) {
        n &= ~BLOCK_HASH_FLAG;
        if (tail < 2)
            return corrupt(c, "shorter than its hash index");
        const unsigned char *u = (const unsigned char *)data + tail - 2;
        uint32_t m = (uint32_t)u[0] | ((uint32_t)u[1] << 8);
        if (m == 0 || m > (tail - 2) / 2)
            return corrupt(c, "bad hash slot count");
        tail -= 2 + 2 * (size_t)m;
        c->slot = (const unsigned char *)data + tail;
        c->nslots = m;
    }
    if (n == 0 || n > tail / 4)
        return corrupt(c, "bad restart count");
    c->nrestarts = n;
    c->data_end = (uint32_t)(tail - 4 * (size_t)n);
    c->cur = c->next = c->data_end;
    if (restart_at(c, 0) != 0)
        return corrupt(c, "first restart point is not at offset 0");
    return PL_OK;
}

void block_cursor_free(block_cursor *c)
{
    free(c->kheap);
    c->kheap = NULL;
    c->kcap = 0;
    free(c->rent);
    free(c->rkeys);
    c->rent = NULL;
    c->rkeys = NULL;
    c->rcap = c->rn = 0;
    c->rkcap = c->rkused = 0;
    c->kext = NULL;
    c->ri = UINT32_MAX;
}

/* Make room for a key of n bytes, keeping the current key's bytes. */
static int key_reserve(block_cursor *c, size_t n)
{
    if (c->kheap ? n <= c->kcap : n <= BLOCK_KEY_INLINE)
        return PL_OK;
    /* (never with kext set: parse_entry moves the key out of the region cache first) */
    size_t cap = c->kcap ? c->kcap * 2 : 2 * BLOCK_KEY_INLINE;
    if (cap < n)
        cap = n;
    char *k = malloc(cap);
    if (!k) {
        c->status = PL_NOMEM;
        set_invalid(c);
        return PL_FAIL(PL_NOMEM, "out of memory (%zu bytes)", cap);
    }
    if (c->klen)
        memcpy(k, block_cursor_key(c), c->klen);
    free(c->kheap);
    c->kheap = k;
    c->kcap = cap;
    return PL_OK;
}

/* Decode the three varints of the entry at p, bounded by end; NULL when malformed. */
static inline const char *entry_header(const char *p, const char *end, uint32_t *shared,
                                       uint32_t *non_shared, uint32_t *vlen)
{
    if (end - p >= 3) {
        const unsigned char *u = (const unsigned char *)p;
        if ((u[0] | u[1] | u[2]) < 0x80) { /* the common case: all three fit one byte */
            *shared = u[0];
            *non_shared = u[1];
            *vlen = u[2];
            return p + 3;
        }
    }
    if (!(p = get_varint32(p, end, shared)) || !(p = get_varint32(p, end, non_shared)) ||
        !(p = get_varint32(p, end, vlen)))
        return NULL;
    return p;
}

int block_region_entry(const char *data, size_t len, uint32_t roff, unsigned pos, char *kbuf, size_t kcap,
                       size_t *klen, const char **val, uint32_t *vlen)
{
    if (len < 8 || roff >= len - 4)
        return PL_FAIL(PL_CORRUPT, "malformed block: region offset %u past the entries", roff);
    const char *p = data + roff, *end = data + len - 4;
    size_t kn = 0;
    for (unsigned j = 0;; j++) {
        uint32_t shared, non_shared, vl;
        p = entry_header(p, end, &shared, &non_shared, &vl);
        if (!p)
            return PL_FAIL(PL_CORRUPT, "malformed block: truncated entry header");
        if (j == 0 && shared != 0)
            return PL_FAIL(PL_CORRUPT, "malformed block: region start at %u shares a prefix", roff);
        if (shared > kn)
            return PL_FAIL(PL_CORRUPT, "malformed block: shared prefix longer than the previous key");
        size_t avail = (size_t)(end - p);
        if (non_shared > avail || vl > avail - non_shared)
            return PL_FAIL(PL_CORRUPT, "malformed block: entry runs past the end of the block");
        kn = (size_t)shared + non_shared;
        if (kn > kcap)
            return BLOCK_KEY_TOO_LONG;
        if (kn < IKEY_TRAILER)
            return PL_FAIL(PL_CORRUPT, "malformed block: key shorter than 8 bytes");
        memcpy(kbuf + shared, p, non_shared);
        p += non_shared;
        if (j == pos) {
            *klen = kn;
            *val = p;
            *vlen = vl;
            return PL_OK;
        }
        p += vl;
    }
}

/* Make the entry at `off` current, building its key on the current key. */
static int parse_entry(block_cursor *c, uint32_t off)
{
    if (off >= c->data_end)
        return corrupt(c, "entry offset past the entries");
    const char *end = c->data + c->data_end;
    uint32_t shared, non_shared, vlen;
    const char *p = entry_header(c->data + off, end, &shared, &non_shared, &vlen);
    if (!p)
        return corrupt(c, "truncated entry header");
    size_t avail = (size_t)(end - p);
    if (shared > c->klen)
        return corrupt(c, "shared prefix longer than the previous key");
    if (non_shared > avail || vlen > avail - non_shared)
        return corrupt(c, "entry runs past the end of the block");
    size_t nk = (size_t)shared + non_shared;
    if (nk < IKEY_TRAILER)
        return corrupt(c, "key shorter than 8 bytes");
    const char *prev = c->kext; /* the current key in the region cache: the new key builds on it */
    if (prev) {
        c->kext = NULL;
        c->klen = 0; /* the key buffer holds none of it */
    }
    if (key_reserve(c, nk))
        return c->status;
    char *k = c->kheap ? c->kheap : c->kinline;
    if (prev && shared)
        memcpy(k, prev, shared);
    if (non_shared)
        memcpy(k + shared, p, non_shared);
    c->klen = nk;
    c->ri = UINT32_MAX;
    c->val = p + non_shared;
    c->vlen = vlen;
    c->cur = off;
    c->next = (uint32_t)(p + non_shared + vlen - c->data);
    return PL_OK;
}

/* parse_entry for the common entry (three one-byte varints, a key that fits kinline, built on the key
 * in kinline): the same checks, inline, and the key's new bytes copied as 16 fixed bytes when they are
 * no more.  Returns 0, having changed nothing, for any other entry: parse_entry then decodes it.
 * REQUIRES: off < data_end. */
static inline int parse_entry_fast(block_cursor *c, uint32_t off)
{
    uint32_t avail = c->data_end - off;
    if (c->kext || c->kheap || avail < 3)
        return 0;
    const unsigned char *u = (const unsigned char *)c->data + off;
    uint32_t shared = u[0], non_shared = u[1], vlen = u[2];
    avail -= 3;
    size_t nk = (size_t)shared + non_shared;
    if ((shared | non_shared | vlen) >= 0x80 || shared > c->klen || non_shared > avail ||
        vlen > avail - non_shared || nk < IKEY_TRAILER || nk > BLOCK_KEY_INLINE)
        return 0;
    const char *p = (const char *)u + 3;
    if (non_shared <= 16 && avail >= 16 && shared + 16 <= BLOCK_KEY_INLINE)
        memcpy(c->kinline + shared, p, 16); /* (bytes past the key are beyond klen: never read) */
    else
        memcpy(c->kinline + shared, p, non_shared);
    c->klen = nk;
    c->ri = UINT32_MAX;
    c->val = p + non_shared;
    c->vlen = vlen;
    c->cur = off;
    c->next = off + 3 + non_shared + vlen;
    return 1;
}

/* Make the entry at off (< data_end) current, building its key on the current key. */
static inline int step_to(block_cursor *c, uint32_t off)
{
    return parse_entry_fast(c, off) ? PL_OK : parse_entry(c, off);
}

static int seek_to_restart(block_cursor *c, uint32_t i)
{
    c->klen = 0;
    c->kext = NULL;
    c->restart = i;
    return parse_entry(c, restart_at(c, i));
}

void block_cursor_seek_first(block_cursor *c)
{
    if (c->status)
        return;
    if (c->data_end == 0) {
        set_invalid(c);
        return;
    }
    seek_to_restart(c, 0);
}

/* Make entry j of the region cache current. */
static inline void from_cache(block_cursor *c, uint32_t j)
{
    const block_rentry *e = &c->rent[j];
    c->ri = j;
    c->kext = c->rkeys + e->koff;
    c->klen = e->klen;
    c->cur = e->off;
    c->next = e->next;
    c->vlen = e->vlen;
    c->val = c->data + e->next - e->vlen;
    c->restart = c->rreg;
}

/* Append the current entry to the region cache; 0 when it does not fit (BLOCK_REGION_CACHE_* or out of
 * memory): the walk then goes on without the cache. */
static int cache_push(block_cursor *c)
{
    if (c->rn == c->rcap) {
        uint32_t cap = c->rcap ? 2 * c->rcap : 8;
        if (c->rn >= BLOCK_REGION_CACHE_ENTRIES)
            return 0;
        block_rentry *r = realloc(c->rent, sizeof *r * cap);
        if (!r)
            return 0;
        c->rent = r;
        c->rcap = cap;
    }
    size_t need = c->rkused + c->klen;
    if (need > c->rkcap) {
        size_t cap = c->rkcap ? 2 * c->rkcap : 256;
        while (cap < need)
            cap *= 2;
        if (need > BLOCK_REGION_CACHE_KEY_BYTES)
            return 0;
        char *k = realloc(c->rkeys, cap);
        if (!k)
            return 0;
        c->rkeys = k;
        c->rkcap = cap;
    }
    block_rentry *e = &c->rent[c->rn++];
    e->off = c->cur;
    e->next = c->next;
    e->vlen = c->vlen;
    e->koff = (uint32_t)c->rkused;
    e->klen = c->klen;
    buf_copy(c->rkeys + c->rkused, block_cursor_key(c), c->klen);
    c->rkused = need;
    return 1;
}

/* Walk region i from its restart point to the last entry that starts before `end`, and leave the cursor
 * there, the entries walked in the region cache (when they fit).  Every entry parsed starts before end. */
static void walk_region(block_cursor *c, uint32_t i, uint32_t end)
{
    c->rn = 0;
    c->rkused = 0;
    c->rreg = i;
    if (seek_to_restart(c, i))
        return;
    int caching = 1;
    for (;;) {
        if (caching && !(caching = cache_push(c)))
            c->rn = 0;
        if (c->next >= end || step_to(c, c->next) != PL_OK)
            break;
    }
    if (c->status)
        c->rn = 0;
    else if (c->rn)
        c->ri = c->rn - 1; /* (the key is in the key buffer too: kext stays NULL) */
}

void block_cursor_seek_last(block_cursor *c)
{
    if (c->status)
        return;
    if (c->data_end == 0) {
        set_invalid(c);
        return;
    }
    walk_region(c, c->nrestarts - 1, c->data_end);
}

void block_cursor_next(block_cursor *c)
{
    if (!block_cursor_valid(c))
        return;
    if (c->ri < c->rn && c->ri + 1 < c->rn) { /* the next entry is in the region cache */
        from_cache(c, c->ri + 1);
        return;
    }
    uint32_t off = c->next;
    if (off >= c->data_end) {
        set_invalid(c);
        return;
    }
    while (c->restart + 1 < c->nrestarts && restart_at(c, c->restart + 1) <= off)
        c->restart++;
    step_to(c, off);
}

void block_cursor_prev(block_cursor *c)
{
    if (!block_cursor_valid(c))
        return;
    if (c->ri < c->rn && c->ri > 0) { /* the previous entry is in the region cache */
        from_cache(c, c->ri - 1);
        return;
    }
    uint32_t orig = c->cur, i = c->restart;
    while (restart_at(c, i) >= orig) {
        if (i == 0) {
            set_invalid(c);
            return;
        }
        i--;
    }
    /* Every entry parsed below starts before orig, so prev always moves backwards. */
    walk_region(c, i, orig);
}

void block_cursor_seek(block_cursor *c, const char *ukey, size_t ulen, uint64_t trailer)
{
    if (c->status)
        return;
    if (c->data_end == 0) {
        set_invalid(c);
        return;
    }
    /* Binary search for the last restart point whose key is < target.  Keys at restart points are
     * stored whole (shared == 0), so they are compared in place. */
    const char *end = c->data + c->data_end;
    uint32_t lo = 0, hi = c->nrestarts - 1;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo + 1) / 2;
        uint32_t off = restart_at(c, mid);
        if (off >= c->data_end) {
            corrupt(c, "restart point past the entries");
            return;
        }
        uint32_t shared, non_shared, vlen;
        const char *p = entry_header(c->data + off, end, &shared, &non_shared, &vlen);
        if (!p || shared != 0 || non_shared < IKEY_TRAILER || non_shared > (size_t)(end - p) ||
            vlen > (size_t)(end - p) - non_shared) {
            corrupt(c, "bad entry at a restart point");
            return;
        }
        if (cmp_target(p, non_shared, ukey, ulen, trailer) < 0)
            lo = mid;
        else
            hi = mid - 1;
    }
    if (seek_to_restart(c, lo))
        return;
    while (cmp_target(block_cursor_key(c), c->klen, ukey, ulen, trailer) < 0) {
        block_cursor_next(c);
        if (!block_cursor_valid(c))
            return;
    }
}

int block_cursor_seek_key(block_cursor *c, const char *ukey, size_t ulen, uint64_t trailer, uint32_t hash)
{
    if (!c->slot || c->status || c->data_end == 0) {
        block_cursor_seek(c, ukey, ulen, trailer);
        return 1;
    }
    uint32_t m = c->nslots, i = block_hash_slot(hash, m);
    unsigned char fp = block_hash_fingerprint(hash);
    for (uint32_t probes = 0; probes < m; probes++, i = i + 1 == m ? 0 : i + 1) {
        const unsigned char *s = c->slot + 2 * (size_t)i;
        if (s[1] == BLOCK_HASH_EMPTY)
            break;
        if (s[0] != fp)
            continue;
        if (s[1] >= c->nrestarts) {
            corrupt(c, "hash slot names a restart point past the last");
            return 1;
        }
        /* The key's first entry, if this slot is the key's, is in region s[1]: walk it. */
        if (seek_to_restart(c, s[1]))
            return 1;
        int r;
        while ((r = ukey_cmp(block_cursor_key(c), c->klen - IKEY_TRAILER, ukey, ulen)) < 0) {
            block_cursor_next(c);
            if (!block_cursor_valid(c) || c->restart != s[1])
                break;
        }
        if (c->status)
            return 1;
        if (r != 0 || !block_cursor_valid(c))
            continue; /* another key with the same fingerprint */
        /* ukey's newest entry: step over the versions newer than the target */
        while (cmp_target(block_cursor_key(c), c->klen, ukey, ulen, trailer) < 0) {
            block_cursor_next(c);
            if (!block_cursor_valid(c))
                return 1;
        }
        return 1;
    }
    set_invalid(c);
    return 0;
}

const char *block_lookup_hint(const char *data, size_t len, uint32_t hash, const char **end)
{
    block_cursor c;
    block_cursor_init_empty(&c); /* no key buffer is ever allocated here */
    if (block_cursor_reset(&c, data, len) || !c.slot) {
        pl_clear_error();
        return NULL;
    }
    uint32_t m = c.nslots, i = block_hash_slot(hash, m);
    unsigned char fp = block_hash_fingerprint(hash);
    for (uint32_t probes = 0; probes < m; probes++, i = i + 1 == m ? 0 : i + 1) {
        const unsigned char *s = c.slot + 2 * (size_t)i;
        if (s[1] == BLOCK_HASH_EMPTY || s[1] >= c.nrestarts)
            return NULL;
        if (s[0] == fp) {
            uint32_t off = restart_at(&c, s[1]);
            uint32_t e = s[1] + 1u < c.nrestarts ? restart_at(&c, s[1] + 1u) : c.data_end;
            if (off >= e || e > c.data_end)
                return NULL;
            *end = data + e;
            return data + off;
        }
    }
    return NULL;
}

int block_cursor_check_hash(block_cursor *c)
{
    if (!c->slot || c->status)
        return c->status;
    int free_slot = 0;
    for (uint32_t i = 0; i < c->nslots; i++) {
        unsigned r = c->slot[2 * i + 1];
        free_slot |= r == BLOCK_HASH_EMPTY;
        if (r != BLOCK_HASH_EMPTY && r >= c->nrestarts)
            return corrupt(c, "hash slot names a restart point past the last");
    }
    if (!free_slot)
        return corrupt(c, "hash index without a free slot");
    /* every user key found through the index, at its first entry */
    block_cursor probe;
    block_cursor_init_empty(&probe);
    pl_buf prev = {0};
    int rc = PL_OK, have_prev = 0;
    for (block_cursor_seek_first(c); block_cursor_valid(c); block_cursor_next(c)) {
        const char *k = block_cursor_key(c);
        size_t un = c->klen - IKEY_TRAILER;
        if (have_prev && prev.len == un && memcmp(prev.data, k, un) == 0)
            continue; /* an older version of the same key */
        have_prev = 1;
        if ((rc = buf_set(&prev, k, un))) {
            c->status = rc;
            break;
        }
        if ((rc = block_cursor_reset(&probe, c->data, c->data_end + 4 * (size_t)c->nrestarts +
                                                      2 * (size_t)c->nslots + 6)))
            break;
        if (!block_cursor_seek_key(&probe, prev.data, un, UINT64_MAX, bloom_hash(prev.data, un)) ||
            !block_cursor_valid(&probe) || probe.cur != c->cur) {
            rc = corrupt(c, "a key is not found through the block's hash index");
            break;
        }
    }
    block_cursor_free(&probe);
    pl_buf_free(&prev);
    return rc ? rc : c->status;
}

int block_cursor_check(block_cursor *c)
{
    if (c->status)
        return c->status;
    uint32_t r = 0;
    for (block_cursor_seek_first(c); block_cursor_valid(c); block_cursor_next(c)) {
        if (r < c->nrestarts && restart_at(c, r) < c->cur)
            break; /* a restart point inside an entry, or out of order */
        if (r < c->nrestarts && restart_at(c, r) == c->cur) {
            uint32_t shared;
            if (!get_varint32(c->data + c->cur, c->data + c->data_end, &shared) || shared != 0)
                return corrupt(c, "an entry at a restart point shares a prefix");
            r++;
        }
    }
    if (c->status)
        return c->status;
    if (c->data_end && r != c->nrestarts) /* (an empty block never reads its restart points) */
        return corrupt(c, "a restart point is not the offset of an entry");
    set_invalid(c);
    return PL_OK;
}

/* ---- the iter.h iterator ---- */

typedef struct {
    iter base;
    block_cursor c;
    void (*release)(void *arg);
    void *arg;
} block_iter;

static void bi_seek(iter *it, const char *k, size_t n)
{
    block_iter *bi = (block_iter *)it;
    if (n < IKEY_TRAILER) /* not an internal key: treat it as a user key, before all its versions */
        block_cursor_seek(&bi->c, k, n, UINT64_MAX);
    else
        block_cursor_seek(&bi->c, k, n - IKEY_TRAILER, get_u64(k + n - IKEY_TRAILER));
}
static void bi_seek_first(iter *it) { block_cursor_seek_first(&((block_iter *)it)->c); }
static void bi_seek_last(iter *it) { block_cursor_seek_last(&((block_iter *)it)->c); }
static void bi_next(iter *it) { block_cursor_next(&((block_iter *)it)->c); }
static void bi_prev(iter *it) { block_cursor_prev(&((block_iter *)it)->c); }
static int bi_valid(const iter *it) { return block_cursor_valid(&((const block_iter *)it)->c); }
static void bi_key(const iter *it, const char **k, size_t *n)
{
    const block_cursor *c = &((const block_iter *)it)->c;
    *k = block_cursor_key(c);
    *n = c->klen;
}
static void bi_value(const iter *it, const char **v, size_t *n)
{
    const block_cursor *c = &((const block_iter *)it)->c;
    *v = c->val;
    *n = c->vlen;
}
static int bi_status(const iter *it) { return ((const block_iter *)it)->c.status; }
static void bi_destroy(iter *it)
{
    block_iter *bi = (block_iter *)it;
    block_cursor_free(&bi->c);
    if (bi->release)
        bi->release(bi->arg);
    free(bi);
}

static const struct iter_ops block_iter_ops = {bi_seek, bi_seek_first, bi_seek_last, bi_next, bi_prev,
                                               bi_valid, bi_key, bi_value, bi_status, bi_destroy};

iter *block_iter_new(const char *data, size_t len, int *status)
{
    block_iter *bi = malloc(sizeof *bi);
    if (!bi) {
        *status = PL_FAIL(PL_NOMEM, "out of memory (block iterator)");
        return NULL;
    }
    bi->base.ops = &block_iter_ops;
    bi->release = NULL;
    bi->arg = NULL;
    *status = block_cursor_init(&bi->c, data, len);
    return &bi->base;
}

void block_iter_set_release(iter *it, void (*release)(void *arg), void *arg)
{
    block_iter *bi = (block_iter *)it;
    bi->release = release;
    bi->arg = arg;
}
