/* test_batch.c -- write batches (batch.h): encode/iterate round trips, malformed encodings rejected as
 * PL_CORRUPT without reading out of bounds (every decode runs on an exactly-sized heap copy, so ASan
 * catches an overread), and the key/value size limits. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "coding.h"
#include "ikey.h"
#include "testutil.h"

typedef struct {
    int kind;
    char *key;
    size_t klen;
    char *val;
    size_t vlen;
} op;

typedef struct {
    const op *ops;
    uint32_t n;
    uint32_t seen;
    int mismatches;
    uint32_t stop_at; /* return 42 at this index (UINT32_MAX: never) */
    unsigned long long sum;
} walk;

static int check_op(void *ctx, uint32_t index, int kind, const char *key, size_t klen, const char *val,
                    size_t vlen)
{
    walk *w = ctx;
    if (index != w->seen || index >= w->n) {
        w->mismatches++;
        return 0;
    }
    const op *o = &w->ops[index];
    if (kind != o->kind || klen != o->klen || (klen && memcmp(key, o->key, klen) != 0))
        w->mismatches++;
    if (kind == KIND_PUT && (vlen != o->vlen || (vlen && memcmp(val, o->val, vlen) != 0)))
        w->mismatches++;
    if (kind == KIND_DELETE && (val != NULL || vlen != 0))
        w->mismatches++;
    w->seen++;
    return index == w->stop_at ? 42 : 0;
}

/* Reads every byte of every operation (so ASan sees any out-of-range pointer). */
static int touch_op(void *ctx, uint32_t index, int kind, const char *key, size_t klen, const char *val,
                    size_t vlen)
{
    walk *w = ctx;
    for (size_t i = 0; i < klen; i++)
        w->sum += (unsigned char)key[i];
    for (size_t i = 0; i < vlen; i++)
        w->sum += (unsigned char)val[i];
    if (kind != KIND_PUT && kind != KIND_DELETE)
        w->mismatches++;
    if (index != w->seen++)
        w->mismatches++;
    return 0;
}

static int iterate_copy(const char *rep, size_t len, batch_op_fn fn, walk *w)
{
    char *h = malloc(len ? len : 1);
    if (len)
        memcpy(h, rep, len);
    w->seen = 0;
    int rc = batch_iterate(h, len, fn, w);
    free(h);
    return rc;
}

static size_t pick_len(unsigned long long *s, size_t big)
{
    switch (tu_rand(s) % 6) {
    case 0: return 0;
    case 1: return 127 + tu_rand(s) % 3; /* the varint boundary 127/128 */
    case 2: return tu_rand(s) % big;
    default: return tu_rand(s) % 20;
    }
}

static void test_roundtrip(void)
{
    pl_batch *b = pl_batch_new();
    CHECK(b != NULL);
    CHECK_EQ(pl_batch_count(b), 0);
    CHECK_EQ(b->rep.len, BATCH_HEADER);
    walk w = {0};
    w.stop_at = UINT32_MAX;
    CHECK_RC(iterate_copy(b->rep.data, b->rep.len, check_op, &w), PL_OK);
    CHECK_EQ(w.seen, 0);

    enum { N = 2000 };
    op *ops = calloc(N, sizeof *ops);
    unsigned long long s = 17;
    uint64_t user = 0;
    for (int i = 0; i < N; i++) {
        op *o = &ops[i];
        o->kind = tu_rand(&s) % 4 ? KIND_PUT : KIND_DELETE;
        o->klen = pick_len(&s, 300);
        o->key = malloc(o->klen + 1);
        for (size_t j = 0; j < o->klen; j++)
            o->key[j] = (char)tu_rand(&s);
        if (o->kind == KIND_PUT) {
            o->vlen = i == 7 ? 20000 : pick_len(&s, 1000);
            o->val = malloc(o->vlen + 1);
            for (size_t j = 0; j < o->vlen; j++)
                o->val[j] = (char)tu_rand(&s);
            CHECK_RC(pl_batch_put(b, o->key, o->klen, o->val, o->vlen), PL_OK);
        } else {
            CHECK_RC(pl_batch_delete(b, o->key, o->klen), PL_OK);
        }
        user += o->klen + o->vlen;
    }
    CHECK_EQ(pl_batch_count(b), N);
    CHECK_EQ(batch_rep_count(b->rep.data), N);
    CHECK_EQ(b->user_bytes, user);
    w = (walk){ops, N, 0, 0, UINT32_MAX, 0};
    CHECK_RC(iterate_copy(b->rep.data, b->rep.len, check_op, &w), PL_OK);
    CHECK_EQ(w.seen, N);
    CHECK_EQ(w.mismatches, 0);

    /* A non-zero return from the callback stops the walk and is returned. */
    w = (walk){ops, N, 0, 0, 3, 0};
    CHECK_EQ(iterate_copy(b->rep.data, b->rep.len, check_op, &w), 42);
    CHECK_EQ(w.seen, 4);

    /* batch_encode_op produces the same bytes pl_batch_put does. */
    size_t cap = BATCH_HEADER;
    for (int i = 0; i < N; i++)
        cap += batch_op_size(ops[i].klen, ops[i].vlen, ops[i].kind == KIND_PUT);
    char *enc = malloc(cap), *e = enc + BATCH_HEADER;
    put_u32(enc, N);
    for (int i = 0; i < N; i++)
        e = batch_encode_op(e, ops[i].kind, ops[i].key, ops[i].klen, ops[i].val, ops[i].vlen);
    CHECK_EQ(e - enc, b->rep.len);
    CHECK(memcmp(enc, b->rep.data, b->rep.len) == 0);
    free(enc);

    /* Clear empties it; it can be reused. */
    pl_batch_clear(b);
    CHECK_EQ(pl_batch_count(b), 0);
    CHECK_EQ(b->rep.len, BATCH_HEADER);
    CHECK_EQ(b->user_bytes, 0);
    CHECK_RC(pl_batch_put(b, "k", 1, "v", 1), PL_OK);
    CHECK_RC(pl_batch_delete(b, "k", 1), PL_OK);
    CHECK_RC(pl_batch_put(b, "", 0, "", 0), PL_OK);
    /* Exact encoding (docs: u32 count, u8 kind, varint klen, key, varint vlen, value). */
    CHECK_EQ(b->rep.len, 4 + 5 + 3 + 3);
    CHECK(memcmp(b->rep.data, "\x03\x00\x00\x00" "\x01\x01k\x01v" "\x00\x01k" "\x01\x00\x00", 15) == 0);

    for (int i = 0; i < N; i++) {
        free(ops[i].key);
        free(ops[i].val);
    }
    free(ops);
    pl_batch_free(b);
    pl_batch_free(NULL);
}

static void test_malformed(void)
{
    /* A small valid batch to cut and damage. */
    pl_batch *b = pl_batch_new();
    pl_batch_put(b, "alpha", 5, "one", 3);
    pl_batch_delete(b, "beta", 4);
    char k200[200], v300[300];
    memset(k200, 'k', sizeof k200);
    memset(v300, 'v', sizeof v300);
    pl_batch_put(b, k200, sizeof k200, v300, sizeof v300); /* two-byte varints */
    pl_batch_put(b, "", 0, "", 0);
    const char *rep = b->rep.data;
    size_t len = b->rep.len;
    walk w = {0};

    CHECK_RC(iterate_copy(rep, len, touch_op, &w), PL_OK);
    CHECK_EQ(w.seen, 4);

    /* Every strict prefix is corrupt (header too short, an operation cut, or fewer ops than count). */
    int wrong = 0;
    for (size_t cut = 0; cut < len; cut++)
        if (iterate_copy(rep, cut, touch_op, &w) != PL_CORRUPT)
            wrong++;
    CHECK_EQ(wrong, 0);
    /* Trailing garbage after the last operation is corrupt too. */
    char *longer = malloc(len + 1);
    memcpy(longer, rep, len);
    longer[len] = 1; /* a put kind with nothing after it */
    CHECK_RC(iterate_copy(longer, len + 1, touch_op, &w), PL_CORRUPT);
    longer[len] = 0; /* a delete with no key length */
    CHECK_RC(iterate_copy(longer, len + 1, touch_op, &w), PL_CORRUPT);
    free(longer);

    char *m = malloc(len);
    /* Count disagrees with the contents. */
    memcpy(m, rep, len);
    put_u32(m, 5);
    CHECK_RC(iterate_copy(m, len, touch_op, &w), PL_CORRUPT);
    put_u32(m, 3);
    CHECK_RC(iterate_copy(m, len, touch_op, &w), PL_CORRUPT);
    put_u32(m, 0);
    CHECK_RC(iterate_copy(m, len, touch_op, &w), PL_CORRUPT);
    put_u32(m, UINT32_MAX);
    CHECK_RC(iterate_copy(m, len, touch_op, &w), PL_CORRUPT);
    /* Unknown kinds. */
    memcpy(m, rep, len);
    m[4] = 2;
    CHECK_RC(iterate_copy(m, len, touch_op, &w), PL_CORRUPT);
    m[4] = (char)0xff;
    CHECK_RC(iterate_copy(m, len, touch_op, &w), PL_CORRUPT);
    /* Key length past the end, and a huge one that must not overflow pointer arithmetic. */
    memcpy(m, rep, len);
    m[5] = 0x7f;
    CHECK_RC(iterate_copy(m, len, touch_op, &w), PL_CORRUPT);
    free(m);

    /* Hand-built encodings. */
    struct {
        const char *bytes;
        size_t n;
    } bad[] = {
        {"\x01\x00\x00\x00" "\x01" "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 15},        /* klen 2^64-1 */
        {"\x01\x00\x00\x00" "\x01" "\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", 16},    /* overlong */
        {"\x01\x00\x00\x00" "\x01" "\x80", 6},                                              /* cut varint */
        {"\x01\x00\x00\x00" "\x01\x01k" "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 17},    /* vlen 2^64-1 */
        {"\x01\x00\x00\x00" "\x01\x01k" "\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", 18},/* overlong */
        {"\x01\x00\x00\x00" "\x01\x01k" "\x02v", 8},                                        /* vlen 2, 1 byte */
        {"\x01\x00\x00\x00" "\x01\x01k", 7},                                                /* put without value */
        {"\x01\x00\x00\x00" "\x00\x02k", 7},                                                /* key cut */
        {"\x02\x00\x00\x00" "\x00\x01k", 7},                                                /* count 2, one op */
        {"\x00\x00\x00\x00" "\x00\x01k", 7},                                                /* count 0, one op */
        {"\x01\x00\x00", 3},                                                                /* short header */
        {"", 0},
    };
    wrong = 0;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = iterate_copy(bad[i].bytes, bad[i].n, touch_op, &w);
        if (rc != PL_CORRUPT) {
            fprintf(stderr, "malformed case %zu: %s\n", i, pl_code_name(rc));
            wrong++;
        }
    }
    CHECK_EQ(wrong, 0);
    /* ... and the good ones they were made from. */
    CHECK_RC(iterate_copy("\x01\x00\x00\x00" "\x00\x01k", 7, touch_op, &w), PL_OK);
    CHECK_RC(iterate_copy("\x01\x00\x00\x00" "\x01\x01k\x01v", 9, touch_op, &w), PL_OK);
    CHECK_RC(iterate_copy("\x00\x00\x00\x00", 4, touch_op, &w), PL_OK);
    /* A delete carries no value. */
    CHECK_RC(iterate_copy("\x01\x00\x00\x00" "\x00\x01k\x01v", 9, touch_op, &w), PL_CORRUPT);

    /* Fuzz: random damage to the valid batch never reads out of bounds; the result is OK or CORRUPT,
     * and an OK walk saw exactly count operations. */
    unsigned long long s = 23;
    int odd = 0;
    char *f = malloc(len + 8);
    for (int i = 0; i < 50000; i++) {
        size_t n = len;
        memcpy(f, rep, len);
        int edits = 1 + (int)(tu_rand(&s) % 3);
        for (int e = 0; e < edits; e++) {
            switch (tu_rand(&s) % 4) {
            case 0: f[tu_rand(&s) % n] = (char)tu_rand(&s); break;
            case 1: f[tu_rand(&s) % n] ^= (char)(1u << (tu_rand(&s) % 8)); break;
            case 2: n = BATCH_HEADER + tu_rand(&s) % (n - BATCH_HEADER + 1); break;
            default: f[4 + tu_rand(&s) % (n > 4 ? n - 4 : 1)] = (char)0x80; break;
            }
            if (n < 5)
                break;
        }
        w = (walk){0};
        int rc = iterate_copy(f, n, touch_op, &w);
        if (rc != PL_OK && rc != PL_CORRUPT)
            odd++;
        if (rc == PL_OK && (n < BATCH_HEADER || w.seen != get_u32(f)))
            odd++;
        if (w.mismatches)
            odd++;
    }
    CHECK_EQ(odd, 0);
    free(f);
    pl_batch_free(b);
}

static void test_limits(void)
{
    CHECK_RC(batch_check_sizes(0, 0), PL_OK);
    CHECK_RC(batch_check_sizes(PL_MAX_KEY, PL_MAX_VALUE), PL_OK);
    CHECK_RC(batch_check_sizes(PL_MAX_KEY + 1, 0), PL_INVALID);
    CHECK_RC(batch_check_sizes(0, PL_MAX_VALUE + 1), PL_INVALID);
    CHECK_RC(batch_check_sizes(SIZE_MAX, SIZE_MAX), PL_INVALID);

    pl_batch *b = pl_batch_new();
    char *key = malloc(PL_MAX_KEY + 1);
    memset(key, 'q', PL_MAX_KEY + 1);
    char small[4] = "abc";
    /* Refused operations leave the batch as it was. */
    CHECK_RC(pl_batch_put(b, key, PL_MAX_KEY + 1, small, 3), PL_INVALID);
    CHECK(strstr(pl_errmsg(), "key") != NULL);
    CHECK_RC(pl_batch_delete(b, key, PL_MAX_KEY + 1), PL_INVALID);
    CHECK_RC(pl_batch_put(b, small, 3, small, (size_t)PL_MAX_VALUE + 1), PL_INVALID); /* not read */
    CHECK(strstr(pl_errmsg(), "value") != NULL);
    CHECK_RC(pl_batch_put(b, small, 3, small, SIZE_MAX), PL_INVALID);
    CHECK_EQ(pl_batch_count(b), 0);
    CHECK_EQ(b->rep.len, BATCH_HEADER);
    CHECK_EQ(b->user_bytes, 0);

    /* The largest key and the largest value are accepted and round-trip. */
    char *val = malloc(PL_MAX_VALUE);
    memset(val, 'v', PL_MAX_VALUE);
    val[0] = 'A';
    val[PL_MAX_VALUE - 1] = 'Z';
    CHECK_RC(pl_batch_put(b, key, PL_MAX_KEY, val, PL_MAX_VALUE), PL_OK);
    CHECK_RC(pl_batch_delete(b, key, PL_MAX_KEY), PL_OK);
    CHECK_EQ(pl_batch_count(b), 2);
    op ops[2] = {{KIND_PUT, key, PL_MAX_KEY, val, PL_MAX_VALUE}, {KIND_DELETE, key, PL_MAX_KEY, NULL, 0}};
    walk w = {ops, 2, 0, 0, UINT32_MAX, 0};
    CHECK_RC(batch_iterate(b->rep.data, b->rep.len, check_op, &w), PL_OK);
    CHECK_EQ(w.seen, 2);
    CHECK_EQ(w.mismatches, 0);
    free(val);
    free(key);
    pl_batch_free(b);
}

int main(void)
{
    test_roundtrip();
    test_malformed();
    test_limits();
    return test_report();
}
