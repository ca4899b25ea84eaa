/* fuzz_batch.c -- batch decoding (batch_iterate: every WAL record's payload) on arbitrary bytes.
 *
 * Asserted:
 *  - the result is PL_OK or PL_CORRUPT; on PL_OK there were exactly `count` operations, each a put or
 *    a delete whose key and value lie inside the input;
 *  - a batch rebuilt with pl_batch_put/pl_batch_delete from the decoded operations decodes to the same
 *    operations, is no longer than the input, and equals it byte for byte when as long (the encoder
 *    writes the shortest varints, so only an input with padded varints may differ);
 *  - applied to a memtable at LSNs 1, 2, ... as recovery does, a read of operation i's key at LSN
 *    1 + i sees operation i: later operations of a batch win, earlier ones stay visible at their own
 *    LSN. */
#include "batch.h"
#include "fuzz.h"
#include "memtable.h"

typedef struct {
    int kind;
    const char *k, *v;
    size_t kl, vl;
} op;

typedef struct {
    const char *lo, *hi; /* the input's bounds */
    op *ops;
    size_t n, cap;
} decoded;

static int collect(void *ctx, uint32_t i, int kind, const char *k, size_t kl, const char *v, size_t vl)
{
    decoded *d = ctx;
    FUZZ_CHECK(kind == KIND_PUT || kind == KIND_DELETE, "kind %d", kind);
    FUZZ_CHECK(i == d->n, "operation %u reported as the %zu-th", i, d->n);
    FUZZ_CHECK(k >= d->lo && kl <= (size_t)(d->hi - k), "key outside the input");
    FUZZ_CHECK(kind == KIND_DELETE ? vl == 0 : (v >= d->lo && vl <= (size_t)(d->hi - v)), "value outside");
    if (d->n == d->cap) {
        d->cap = d->cap ? 2 * d->cap : 16;
        d->ops = realloc(d->ops, d->cap * sizeof *d->ops);
    }
    d->ops[d->n++] = (op){kind, k, v, kl, vl};
    return PL_OK;
}

static int same_ops(const decoded *a, const decoded *b)
{
    if (a->n != b->n)
        return 0;
    for (size_t i = 0; i < a->n; i++) {
        const op *x = &a->ops[i], *y = &b->ops[i];
        if (x->kind != y->kind || x->kl != y->kl || x->vl != y->vl || memcmp(x->k, y->k, x->kl) ||
            (x->vl && memcmp(x->v, y->v, x->vl)))
            return 0;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a copy of exactly `size` bytes, so that ASan sees any read past the end */
    char *rep = malloc(size ? size : 1);
    memcpy(rep, data, size);
    decoded d = {rep, rep + size, NULL, 0, 0};
    int rc = batch_iterate(rep, size, collect, &d);
    FUZZ_RC(rc, PL_OK, PL_CORRUPT);
    if (rc == PL_OK) {
        FUZZ_CHECK(d.n == batch_rep_count(rep), "%zu operations, count %u", d.n, batch_rep_count(rep));
        pl_batch *b = pl_batch_new();
        int fits = 1;
        for (size_t i = 0; i < d.n && fits; i++) {
            const op *o = &d.ops[i];
            int r = o->kind == KIND_PUT ? pl_batch_put(b, o->k, o->kl, o->v, o->vl) : pl_batch_delete(b, o->k, o->kl);
            FUZZ_RC(r, PL_OK, PL_INVALID);
            fits = r == PL_OK; /* PL_INVALID: a key or value over the limits, which a batch refuses */
        }
        if (fits) {
            FUZZ_CHECK(pl_batch_count(b) == d.n, "rebuilt count %u", pl_batch_count(b));
            FUZZ_CHECK(b->rep.len <= size, "rebuilt batch of %zu bytes from %zu", b->rep.len, size);
            FUZZ_CHECK(b->rep.len < size || memcmp(b->rep.data, rep, size) == 0, "same length, other bytes");
            decoded again = {b->rep.data, b->rep.data + b->rep.len, NULL, 0, 0};
            FUZZ_CHECK(batch_iterate(b->rep.data, b->rep.len, collect, &again) == PL_OK, "rebuilt batch corrupt");
            FUZZ_CHECK(same_ops(&d, &again), "rebuilt batch decodes to other operations");
            free(again.ops);

            memtable *m;
            FUZZ_CHECK(memtable_new(&m) == PL_OK, "memtable_new");
            for (size_t i = 0; i < d.n; i++)
                FUZZ_CHECK(memtable_add(m, 1 + i, d.ops[i].kind, d.ops[i].k, d.ops[i].kl, d.ops[i].v,
                                        d.ops[i].vl) == PL_OK, "memtable_add");
            pl_buf out = {0};
            for (size_t i = 0; i < d.n; i++) {
                const op *o = &d.ops[i];
                int r;
                FUZZ_CHECK(memtable_get(m, o->k, o->kl, 1 + i, &out, &r) == PL_OK, "operation %zu: memtable_get", i);
                if (o->kind == KIND_PUT)
                    FUZZ_CHECK(r == LOOKUP_FOUND && out.len == o->vl && (!o->vl || !memcmp(out.data, o->v, o->vl)),
                               "operation %zu (put) reads back as %d", i, r);
                else
                    FUZZ_CHECK(r == LOOKUP_DELETED, "operation %zu (delete) reads back as %d", i, r);
            }
            pl_buf_free(&out);
            memtable_unref(m);
        }
        pl_batch_free(b);
    }
    free(d.ops);
    free(rep);
    return 0;
}
