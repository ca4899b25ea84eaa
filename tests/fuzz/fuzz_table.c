/* fuzz_table.c -- the table reader (table_open, table_get, table_iter, table_verify) on arbitrary
 * bytes written to a file of that size.
 *
 * Input: a flag byte (bit 0: recompute every block trailer and the footer CRC first, so mutations reach
 * the index, the filter and the data blocks; bit 1: open it lean, table_open_lean), then the file.
 * Asserted:
 *  - table_verify and table_open give PL_OK or PL_CORRUPT; gets, seeks and walks report PL_OK or
 *    PL_CORRUPT and never read outside what they were given (ASan); walks end;
 *  - a table that table_verify accepts opens, and then:
 *    - the forward walk ends with status PL_OK, its internal keys strictly ascend, every entry a put or
 *      a delete; the backward walk yields the same entries reversed;
 *    - a seek to any entry's internal key lands on it;
 *    - table_get of each key, at the entry's LSN, at LSN_MAX, one LSN below, and of a key just past it,
 *      answers what the entries say (the newest version at or below the LSN: its value, deleted, or
 *      absent), so the filter holds every key (table_verify checks it). */
#include "fuzz.h"

#define MAX_ENTRIES 20000

typedef struct {
    char *k;
    size_t kl;
    char *v;
    size_t vl;
} entry;

static entry *entries;
static size_t nentries;

static void forget(void)
{
    for (size_t i = 0; i < nentries; i++) {
        free(entries[i].k);
        free(entries[i].v);
    }
    nentries = 0;
}

static void keep(iter *it)
{
    const char *k, *v;
    size_t kl, vl;
    iter_key(it, &k, &kl);
    iter_value(it, &v, &vl);
    entry *e = &entries[nentries++];
    e->k = malloc(kl);
    memcpy(e->k, k, kl);
    e->v = malloc(vl ? vl : 1);
    if (vl)
        memcpy(e->v, v, vl);
    e->kl = kl;
    e->vl = vl;
}

static int on(iter *it, const entry *e)
{
    const char *k, *v;
    size_t kl, vl;
    if (!iter_valid(it))
        return 0;
    iter_key(it, &k, &kl);
    iter_value(it, &v, &vl);
    return kl == e->kl && !memcmp(k, e->k, kl) && vl == e->vl && (!vl || !memcmp(v, e->v, vl));
}

/* What a get of u at snap must answer: the entry index, or -1 (absent). */
static long model_get(const char *u, size_t ul, uint64_t snap)
{
    for (size_t i = 0; i < nentries; i++) {
        const entry *e = &entries[i];
        if (ukey_cmp(e->k, e->kl - 8, u, ul) == 0 && ikey_lsn(e->k, e->kl) <= snap)
            return (long)i;
    }
    return -1;
}

static void check_get(table *t, const char *u, size_t ul, uint64_t snap)
{
    pl_buf out = {0};
    int result;
    int rc = table_get(t, u, ul, snap, &out, 0, &result);
    FUZZ_CHECK(rc == PL_OK, "get on a verified table: %s", pl_code_name(rc));
    long j = model_get(u, ul, snap > LSN_MAX ? LSN_MAX : snap);
    if (j < 0) {
        FUZZ_CHECK(result == LOOKUP_ABSENT, "get of an absent key answers %d", result);
    } else {
        const entry *e = &entries[j];
        if (ikey_kind(e->k, e->kl) == KIND_PUT)
            FUZZ_CHECK(result == LOOKUP_FOUND && out.len == e->vl && (!e->vl || !memcmp(out.data, e->v, e->vl)),
                       "get of entry %ld answers %d", j, result);
        else
            FUZZ_CHECK(result == LOOKUP_DELETED, "get of deleted entry %ld answers %d", j, result);
    }
    pl_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t n = size - 1;
    char *file = malloc(n ? n : 1);
    memcpy(file, data + 1, n);
    if (data[0] & FUZZ_FIX_CRC)
        fuzz_fix_table(file, n);
    char path[300];
    snprintf(path, sizeof path, "%s/000001.sst", fuzz_fresh_dir("table"));
    fuzz_write_file(path, file, n);
    if (!entries)
        entries = malloc(MAX_ENTRIES * sizeof *entries);

    int vrc = table_verify(path, n);
    FUZZ_RC(vrc, PL_OK, PL_CORRUPT);
    int verified = vrc == PL_OK;
    table *t = NULL;
    int rc = data[0] & 2 ? table_open_lean(path, n, NULL, &t) : table_open(path, n, NULL, &t);
    FUZZ_RC(rc, PL_OK, PL_CORRUPT);
    FUZZ_CHECK(!verified || rc == PL_OK, "verified, but open gives %s", pl_code_name(rc));
    if (rc == PL_OK) {
        iter *it = table_iter(t);
        size_t steps = 0;
        for (iter_seek_first(it); iter_valid(it) && nentries < MAX_ENTRIES; iter_next(it), steps++) {
            const char *k;
            size_t kl;
            iter_key(it, &k, &kl);
            FUZZ_CHECK(kl >= 8, "key of %zu bytes", kl);
            if (verified) {
                int kind = ikey_kind(k, kl);
                FUZZ_CHECK(kind == KIND_PUT || kind == KIND_DELETE, "kind %d in a verified table", kind);
                FUZZ_CHECK(!nentries || ikey_cmp(entries[nentries - 1].k, entries[nentries - 1].kl, k, kl) < 0,
                           "keys do not ascend at entry %zu of a verified table", nentries);
            }
            keep(it);
        }
        FUZZ_RC(iter_status(it), PL_OK, PL_CORRUPT);
        FUZZ_CHECK(!verified || iter_status(it) == PL_OK, "verified, but the walk fails: %s",
                   pl_code_name(iter_status(it)));
        steps = 0;
        for (iter_seek_last(it); iter_valid(it) && steps <= nentries; iter_prev(it), steps++)
            if (verified)
                FUZZ_CHECK(on(it, &entries[nentries - 1 - steps]), "backward walk differs at step %zu", steps);
        FUZZ_RC(iter_status(it), PL_OK, PL_CORRUPT);
        if (verified)
            FUZZ_CHECK(steps == nentries && iter_status(it) == PL_OK, "backward walk: %zu of %zu entries", steps,
                       nentries);

        for (size_t i = 0; i < nentries; i += 1 + nentries / 64) {
            const entry *e = &entries[i];
            iter_seek(it, e->k, e->kl);
            FUZZ_RC(iter_status(it), PL_OK, PL_CORRUPT);
            if (!verified) {
                pl_buf out = {0};
                int result;
                FUZZ_RC(table_get(t, e->k, e->kl - 8, ikey_lsn(e->k, e->kl), &out, 0, &result), PL_OK, PL_CORRUPT);
                pl_buf_free(&out);
                continue;
            }
            FUZZ_CHECK(on(it, e), "seek to entry %zu lands elsewhere", i);
            uint64_t lsn = ikey_lsn(e->k, e->kl);
            size_t ul = e->kl - 8;
            check_get(t, e->k, ul, lsn);
            check_get(t, e->k, ul, UINT64_MAX);
            if (lsn)
                check_get(t, e->k, ul, lsn - 1);
            char *past = malloc(ul + 1);
            memcpy(past, e->k, ul);
            past[ul] = 0;
            check_get(t, past, ul + 1, UINT64_MAX);
            free(past);
        }
        iter_destroy(it);
        table_close(t);
    }
    forget();
    free(file);
    return 0;
}
