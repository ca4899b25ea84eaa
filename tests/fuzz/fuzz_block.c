/* fuzz_block.c -- the block reader (block_cursor and the block iterator) on arbitrary bytes.
 *
 * Input: a byte K, then K bytes of operations (seeks to chosen keys, next, prev, first, last), then
 * the block.  The block is checked against an independent reference parser written here, from the
 * grammar of block.h alone: entries back to back from offset 0, restart points exactly at entries
 * whose shared prefix is 0 (the first at 0), internal keys of at least 8 bytes in strictly ascending
 * order.  Asserted, for every block:
 *  - block_cursor_init gives PL_OK or PL_CORRUPT; no read outside the block (ASan, on a copy of
 *    exactly its size); statuses are PL_OK or PL_CORRUPT only;
 *  - next moves strictly forward and prev strictly backward in the block, so walks end;
 *  - block_cursor_check (table_verify's) accepts a block exactly when the reference parser does, keys
 *    out of order aside (the caller checks those);
 * and for a block the reference parser accepts:
 *  - the forward walk yields exactly its entries (keys, values), the backward walk the same reversed,
 *    both ending with status PL_OK, and each entry reports the restart region holding it;
 *  - a seek lands on the first entry >= the target (ikey order: user key, then trailer descending),
 *    and next/prev from there step to the neighbouring entries;
 *  - the block iterator (iter.h) agrees with the cursor, including a seek by bare user key;
 *  - a point lookup through the block's hash index (block_cursor_seek_key) never reads outside the
 *    block and ends with PL_OK or PL_CORRUPT on any bytes, and, when block_cursor_check_hash accepts
 *    the index, finds every user key at its first entry, as a seek does. */
#include "fuzz.h"
#include "bloom.h"

typedef struct {
    const char *key; /* malloc'd */
    size_t klen;
    const char *val;
    uint32_t vlen;
    uint32_t off;
    uint32_t restart;
} entry;

typedef struct {
    entry *e;
    size_t n;
    int ok; /* the reference parser accepts the block */
} model;

static void model_free(model *m)
{
    for (size_t i = 0; i < m->n; i++)
        free((void *)m->e[i].key);
    free(m->e);
}

static model parse(const char *d, size_t len)
{
    model m = {calloc(len / 3 + 1, sizeof(entry)), 0, 0};
    if (len < 8 || len > UINT32_MAX)
        return m;
    uint32_t nr = get_u32(d + len - 4);
    size_t tail = len - 4;
    if (nr & 0x80000000u) { /* the hash index form: slots and their count before the restart count */
        nr &= 0x7fffffffu;
        if (tail < 2)
            return m;
        size_t slots = (size_t)(unsigned char)d[tail - 2] | ((size_t)(unsigned char)d[tail - 1] << 8);
        if (slots == 0 || slots > (tail - 2) / 2)
            return m;
        tail -= 2 + 2 * slots;
    }
    if (nr == 0 || nr > tail / 4)
        return m;
    size_t end = tail - 4 * (size_t)nr;
    const char *r = d + end;
    uint32_t ri = 0;
    size_t off = 0;
    const char *prev = NULL;
    size_t prevlen = 0;
    if (end == 0) {
        m.ok = get_u32(r) == 0; /* no entries: the other restart points are never read */
        return m;
    }
    while (off < end) {
        uint32_t shared, non_shared, vlen;
        const char *p = d + off, *e = d + end;
        if (!(p = get_varint32(p, e, &shared)) || !(p = get_varint32(p, e, &non_shared)) ||
            !(p = get_varint32(p, e, &vlen)))
            return m;
        int at_restart = ri < nr && get_u32(r + 4 * ri) == off;
        if ((at_restart && shared != 0) || (off == 0 && !at_restart) || shared > prevlen ||
            non_shared > (size_t)(e - p) || vlen > (size_t)(e - p) - non_shared ||
            (size_t)shared + non_shared < IKEY_TRAILER)
            return m;
        ri += at_restart;
        size_t kl = (size_t)shared + non_shared;
        char *k = malloc(kl);
        if (shared)
            memcpy(k, prev, shared);
        memcpy(k + shared, p, non_shared);
        m.e[m.n++] = (entry){k, kl, p + non_shared, vlen, (uint32_t)off, ri - 1};
        if (prev && ikey_cmp(prev, prevlen, k, kl) >= 0)
            return m;
        prev = k;
        prevlen = kl;
        off = (size_t)(p + non_shared + vlen - d);
    }
    m.ok = ri == nr; /* every restart point is an entry's offset, in order */
    return m;
}

/* The cursor is on entry j of the model. */
static void check_at(const block_cursor *c, const model *m, size_t j, const char *what)
{
    FUZZ_CHECK(block_cursor_valid(c), "%s: not valid, expected entry %zu (status %d)", what, j, c->status);
    const entry *e = &m->e[j];
    FUZZ_CHECK(block_cursor_klen(c) == e->klen && !memcmp(block_cursor_key(c), e->key, e->klen) &&
                   block_cursor_vlen(c) == e->vlen && block_cursor_value(c) == e->val,
               "%s: not on entry %zu", what, j);
    FUZZ_CHECK(block_cursor_restart(c) == e->restart, "%s: restart %u, expected %u", what,
               block_cursor_restart(c), e->restart);
}

static void check_pos(const block_cursor *c, const model *m, size_t j, const char *what)
{
    if (j >= m->n)
        FUZZ_CHECK(!block_cursor_valid(c) && block_cursor_status(c) == PL_OK, "%s: valid past the end", what);
    else
        check_at(c, m, j, what);
}

/* The index of the first entry >= (u, trailer), m->n if none. */
static size_t model_seek(const model *m, const char *u, size_t ul, uint64_t trailer)
{
    for (size_t j = 0; j < m->n; j++) {
        const entry *e = &m->e[j];
        int c = ukey_cmp(e->key, e->klen - 8, u, ul);
        if (c > 0 || (c == 0 && ikey_trailer(e->key, e->klen) <= trailer))
            return j;
    }
    return m->n;
}

static void status_ok(int st) { FUZZ_RC(st, PL_OK, PL_CORRUPT); }

/* Walks that must end on any bytes: next strictly forward, prev strictly backward. */
static void walks(block_cursor *c, size_t len)
{
    size_t steps = 0;
    for (block_cursor_seek_first(c); block_cursor_valid(c); steps++) {
        uint32_t at = c->cur;
        block_cursor_next(c);
        FUZZ_CHECK(!block_cursor_valid(c) || c->cur > at, "next went from %u to %u", at, c->cur);
        FUZZ_CHECK(steps <= len, "forward walk does not end");
    }
    status_ok(block_cursor_status(c));
    steps = 0;
    for (block_cursor_seek_last(c); block_cursor_valid(c); steps++) {
        uint32_t at = c->cur;
        block_cursor_prev(c);
        FUZZ_CHECK(!block_cursor_valid(c) || c->cur < at, "prev went from %u to %u", at, c->cur);
        FUZZ_CHECK(steps <= len, "backward walk does not end");
    }
    status_ok(block_cursor_status(c));
}

/* Reads the seek target of a seek operation from ops; returns it in buf, its user key length in *ul. */
static const uint8_t *target(const uint8_t *ops, const uint8_t *end, const model *m, char *buf, size_t *ul,
                             uint64_t *trailer)
{
    uint8_t sel = ops < end ? *ops++ : 0;
    if (m->n && sel < 0xc0) { /* near a key of the block */
        const entry *e = &m->e[sel % m->n];
        *ul = e->klen - 8;
        if (*ul > 200)
            *ul = 200;
        memcpy(buf, e->key, *ul);
        *trailer = ikey_trailer(e->key, e->klen);
        switch ((sel >> 4) & 3) {
        case 1: *trailer += 1; break;
        case 2: *trailer -= 1; break;
        case 3: if (*ul) (*ul)--; else buf[(*ul)++] = 0; break;
        }
    } else { /* bytes of the input */
        *ul = sel & 15;
        for (size_t i = 0; i < *ul; i++)
            buf[i] = ops < end ? (char)*ops++ : 'a';
        *trailer = (sel & 16) ? UINT64_MAX : ikey_pack(sel, KIND_PUT);
    }
    return ops;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t k = data[0] < size - 1 ? data[0] : size - 1;
    const uint8_t *ops = data + 1, *ops_end = data + 1 + k;
    size_t len = size - 1 - k;
    char *blk = malloc(len ? len : 1);
    memcpy(blk, ops_end, len);

    model m = parse(blk, len);
    block_cursor c;
    int rc = block_cursor_init(&c, blk, len);
    status_ok(rc);
    FUZZ_CHECK(!m.ok || rc == PL_OK, "a well-formed block refused");
    walks(&c, len);
    {   /* block_cursor_check (what table_verify runs) accepts exactly the well-formed blocks, but for
         * the order of keys, which it leaves to its caller */
        block_cursor k;
        block_cursor_init(&k, blk, len);
        int chk = block_cursor_check(&k);
        status_ok(chk);
        FUZZ_CHECK(!m.ok || chk == PL_OK, "block_cursor_check refuses a well-formed block");
        int ascending = 1;
        for (size_t j = 1; j < m.n && ascending; j++)
            ascending = ikey_cmp(m.e[j - 1].key, m.e[j - 1].klen, m.e[j].key, m.e[j].klen) < 0;
        FUZZ_CHECK(chk != PL_OK || !ascending || m.ok, "block_cursor_check accepts a malformed block");
        block_cursor_free(&k);
    }

    {   /* the point lookup through the hash index: safe on any bytes; right when the index checks */
        block_cursor h, k;
        block_cursor_init(&h, blk, len);
        block_cursor_init(&k, blk, len);
        int hash_ok = block_cursor_check_hash(&k) == PL_OK && block_cursor_status(&k) == PL_OK;
        block_cursor_free(&k);
        for (size_t j = 0; j < m.n && j < 64; j++) {
            const entry *e = &m.e[j];
            if (j && m.e[j - 1].klen == e->klen && !memcmp(m.e[j - 1].key, e->key, e->klen - 8))
                continue; /* an older version: the index names the first */
            size_t ul = e->klen - 8;
            block_cursor_reset(&h, blk, len);
            int in = block_cursor_seek_key(&h, e->key, ul, UINT64_MAX, bloom_hash(e->key, ul));
            status_ok(block_cursor_status(&h));
            if (m.ok && hash_ok) {
                FUZZ_CHECK(in, "seek_key: the hash index says entry %zu's key is absent", j);
                check_at(&h, &m, j, "seek_key");
            }
        }
        block_cursor_reset(&h, blk, len);
        block_cursor_seek_key(&h, "absent-key", 10, UINT64_MAX, bloom_hash("absent-key", 10));
        status_ok(block_cursor_status(&h));
        block_cursor_free(&h);
    }

    if (m.ok) {
        /* forward and backward: exactly the model */
        size_t j = 0;
        for (block_cursor_seek_first(&c); j < m.n; j++, block_cursor_next(&c))
            check_at(&c, &m, j, "forward walk");
        check_pos(&c, &m, m.n, "after the forward walk");
        block_cursor_seek_last(&c);
        for (j = m.n; j-- > 0; block_cursor_prev(&c))
            check_at(&c, &m, j, "backward walk");
        FUZZ_CHECK(!block_cursor_valid(&c) && block_cursor_status(&c) == PL_OK, "valid before the first entry");
    }

    /* the operations, on the cursor and (for a well-formed block) the iterator, against the model */
    int st;
    iter *it = block_iter_new(blk, len, &st);
    FUZZ_CHECK(it != NULL, "block_iter_new");
    FUZZ_CHECK(st == rc, "iterator status %d, cursor %d", st, rc);
    size_t pos = m.n;
    char buf[256];
    for (const uint8_t *p = ops; p < ops_end;) {
        uint8_t op = *p++;
        const char *what = "op";
        switch (op & 3) {
        case 0: {
            size_t ul;
            uint64_t tr;
            p = target(p, ops_end, &m, buf, &ul, &tr);
            block_cursor_seek(&c, buf, ul, tr);
            put_u64(buf + ul, tr);
            if ((op & 4) && ul < 8 && tr == UINT64_MAX)
                iter_seek(it, buf, ul); /* a bare user key: before all of its versions */
            else
                iter_seek(it, buf, ul + 8);
            pos = m.ok ? model_seek(&m, buf, ul, tr) : 0;
            what = "seek";
            break;
        }
        case 1:
            block_cursor_next(&c);
            iter_next(it);
            pos = pos < m.n ? pos + 1 : m.n;
            what = "next";
            break;
        case 2:
            block_cursor_prev(&c);
            iter_prev(it);
            pos = pos < m.n ? (pos ? pos - 1 : m.n) : m.n;
            what = "prev";
            break;
        case 3:
            if (op & 4) {
                block_cursor_seek_last(&c);
                iter_seek_last(it);
                pos = m.n ? m.n - 1 : 0;
                what = "seek_last";
            } else {
                block_cursor_seek_first(&c);
                iter_seek_first(it);
                pos = 0;
                what = "seek_first";
            }
            break;
        }
        status_ok(block_cursor_status(&c));
        status_ok(iter_status(it));
        if (m.ok) {
            check_pos(&c, &m, pos, what);
            FUZZ_CHECK(iter_valid(it) == block_cursor_valid(&c), "%s: iterator and cursor disagree", what);
            if (iter_valid(it)) {
                const char *ik, *iv;
                size_t ikl, ivl;
                iter_key(it, &ik, &ikl);
                iter_value(it, &iv, &ivl);
                FUZZ_CHECK(ikl == m.e[pos].klen && !memcmp(ik, m.e[pos].key, ikl) && iv == m.e[pos].val &&
                               ivl == m.e[pos].vlen, "%s: the iterator is not on entry %zu", what, pos);
            }
        }
    }
    iter_destroy(it);
    block_cursor_free(&c);
    model_free(&m);
    free(blk);
    return 0;
}
