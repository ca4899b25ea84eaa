/* fuzz_manifest.c -- loading the manifest (versions_open, versions_verify) from arbitrary bytes as
 * MANIFEST-000009, with CURRENT naming it, in a directory that holds the eight valid tables
 * 000001.sst .. 000008.sst of fuzz_make_table (so that edits naming them, with the right sizes, load).
 *
 * Input: a flag byte (bit 0: fix the CRCs of the file header and records; bit 1: CURRENT is the next
 * (flags >> 4) bytes of the input instead of "MANIFEST-000009\n"), then the manifest.  Asserted:
 *  - versions_open and versions_verify give PL_OK, PL_CORRUPT or PL_IOERR (a table named but absent);
 *    what verify accepts opens, and what fails to open fails verify (which also checks each table's
 *    contents and that the manifest's key range for it is its first and last key);
 *  - a loaded version has L0 in age order (newest LSN, then file number: an ingest's tables are numbered
 *    before the flush at its commit but are newer) and every other level in smallest-key order, a
 *    next file number past every table and the manifest, reads (version_get) and a merged walk over
 *    its tables that succeed;
 *  - the state survives a rewrite: versions_start writes it to a new manifest and points CURRENT
 *    there, and loading that gives the same tables at the same levels, the same log number and last
 *    LSN, and a next file number no lower. */
#include "fuzz.h"
#include "merge.h"
#include "version.h"

#define NTABLES 8

static char tables_dir[256];

static void make_tables(void)
{
    snprintf(tables_dir, sizeof tables_dir, "%s", fuzz_fresh_dir("manifest-tables"));
    for (int k = 1; k <= NTABLES; k++) {
        table_meta m;
        FUZZ_CHECK(fuzz_make_table(tables_dir, k, &m) == PL_OK, "cannot build table %d", k);
        table_meta_free(&m);
    }
}

typedef struct {
    uint64_t log_number, next_file, last_lsn;
    int n[NUM_LEVELS];
    uint64_t numbers[NUM_LEVELS][64];
} state;

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Check what versions_open loaded, and note it. */
static void inspect(versions *vs, state *s)
{
    version *v = vs->current;
    s->log_number = vs->log_number;
    s->next_file = vs->next_file;
    s->last_lsn = vs->last_lsn;
    FUZZ_CHECK(vs->next_file > vs->manifest_number || vs->next_file == 0, "next file %llu, manifest %llu",
               (unsigned long long)vs->next_file, (unsigned long long)vs->manifest_number);
    int total = 0;
    for (int l = 0; l < NUM_LEVELS; l++) {
        s->n[l] = v->n[l] < 64 ? v->n[l] : 64;
        for (int i = 0; i < v->n[l]; i++) {
            file_meta *f = v->files[l][i];
            if (i < 64)
                s->numbers[l][i] = f->number;
            FUZZ_CHECK(f->number < vs->next_file || vs->next_file == 0, "table %llu, next file %llu",
                       (unsigned long long)f->number, (unsigned long long)vs->next_file);
            if (i == 0)
                continue;
            file_meta *p = v->files[l][i - 1];
            if (l == 0)
                FUZZ_CHECK(p->m.max_lsn < f->m.max_lsn || (p->m.max_lsn == f->m.max_lsn && p->number <= f->number),
                           "L0 out of age order");
            else
                FUZZ_CHECK(ikey_cmp(p->m.smallest, p->m.smallest_len, f->m.smallest, f->m.smallest_len) <= 0,
                           "L%d out of key order", l);
        }
        qsort(s->numbers[l], (size_t)s->n[l], sizeof(uint64_t), cmp_u64);
        total += v->n[l];
    }
    /* a read of the first key of every table, and a walk over all of them */
    pl_buf out = {0};
    for (int k = 1; k <= NTABLES; k++) {
        char key[16];
        int kl = snprintf(key, sizeof key, "t%d-000", k), result;
        FUZZ_RC(version_get(v, key, (size_t)kl, LSN_MAX, &out, 0, &result), PL_OK);
    }
    pl_buf_free(&out);
    iter **its = malloc(sizeof(iter *) * (size_t)(total + NUM_LEVELS));
    int n = 0;
    FUZZ_CHECK(version_iters(v, its, &n) == PL_OK, "version_iters");
    iter *m = merge_iter_new(its, n);
    free(its);
    size_t steps = 0;
    for (iter_seek_first(m); iter_valid(m) && steps < 100000; iter_next(m))
        steps++;
    FUZZ_RC(iter_status(m), PL_OK);
    iter_destroy(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (!tables_dir[0])
        make_tables();
    unsigned flags = data[0];
    const char *in = (const char *)data + 1;
    size_t n = size - 1;
    char current[32] = "MANIFEST-000009\n";
    size_t clen = 16;
    if (flags & 2) {
        clen = flags >> 4 < n ? flags >> 4 : n;
        memcpy(current, in, clen);
        in += clen;
        n -= clen;
    }
    char *file = malloc(n ? n : 1);
    memcpy(file, in, n);
    if (flags & FUZZ_FIX_CRC)
        fuzz_fix_wal(file, n);

    const char *dir = fuzz_fresh_dir("manifest");
    char p[300], q[300];
    for (int k = 1; k <= NTABLES; k++) {
        snprintf(p, sizeof p, "%s/%06d.sst", tables_dir, k);
        snprintf(q, sizeof q, "%s/%06d.sst", dir, k);
        FUZZ_CHECK(link(p, q) == 0, "link %s", q);
    }
    snprintf(p, sizeof p, "%s/CURRENT", dir);
    fuzz_write_file(p, current, clen);
    snprintf(p, sizeof p, "%s/MANIFEST-000009", dir);
    fuzz_write_file(p, file, n);

    uint64_t log_number, last_lsn;
    int vrc = versions_verify(dir, &log_number, &last_lsn);
    FUZZ_RC(vrc, PL_OK, PL_CORRUPT, PL_IOERR);
    versions vs;
    int rc = versions_open(&vs, dir, NULL, 0);
    FUZZ_RC(rc, PL_OK, PL_CORRUPT, PL_IOERR);
    /* verify checks more (the tables' contents and key ranges), never less */
    FUZZ_CHECK(vrc != PL_OK || rc == PL_OK, "verify passes, open gives %s", pl_code_name(rc));
    FUZZ_CHECK(rc == PL_OK || vrc != PL_OK, "open gives %s, verify passes", pl_code_name(rc));
    if (rc == PL_OK) {
        static state s1, s2;
        inspect(&vs, &s1);
        FUZZ_CHECK(vrc != PL_OK || (log_number == s1.log_number && last_lsn == s1.last_lsn),
                   "verify and open read other numbers");
        if (vs.next_file < UINT64_MAX - 1) { /* else the file numbers are exhausted */
            FUZZ_RC(versions_start(&vs), PL_OK);
            versions_close(&vs);
            FUZZ_RC(versions_open(&vs, dir, NULL, 0), PL_OK);
            inspect(&vs, &s2);
            FUZZ_CHECK(s1.log_number == s2.log_number && s1.last_lsn == s2.last_lsn && s2.next_file >= s1.next_file,
                       "the rewritten manifest holds other numbers");
            for (int l = 0; l < NUM_LEVELS; l++)
                FUZZ_CHECK(s1.n[l] == s2.n[l] && !memcmp(s1.numbers[l], s2.numbers[l], sizeof(uint64_t) * s1.n[l]),
                           "the rewritten manifest holds other tables at L%d", l);
        }
        versions_close(&vs);
    }
    free(file);
    return 0;
}
