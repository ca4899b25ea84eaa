/* gen_corpus.c -- writes the seed corpora of the fuzzers (tests/fuzz/corpus/<name>/) with the core's
 * own writers, so that fuzzing starts from valid structure: `make fuzz-corpus` (the output is
 * committed; rerun it when a format changes).  Each seed is a few hundred bytes to a few KB.
 * Usage: gen_corpus OUTDIR */
#include "batch.h"
#include "buf.h"
#include "env.h"
#include "fuzz.h"
#include "manifest.h"
#include "version.h"

static const char *outdir;

/* Write OUTDIR/name/seed with a leading flag byte (flag < 0: none). */
static void seed(const char *name, const char *file, int flag, const void *data, size_t len)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", outdir, name);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/%s/%s", outdir, name, file);
    char *buf = malloc(len + 1);
    size_t n = 0;
    if (flag >= 0)
        buf[n++] = (char)flag;
    memcpy(buf + n, data, len);
    fuzz_write_file(p, buf, n + len);
    free(buf);
}

static void read_whole(const char *path, char **data, size_t *len)
{
    FUZZ_CHECK(env_read_file(path, data, len) == PL_OK, "read %s", path);
}

static pl_batch *sample_batch(int i)
{
    pl_batch *b = pl_batch_new();
    char k[32], v[64];
    for (int j = 0; j < 1 + i % 4; j++) {
        int kl = snprintf(k, sizeof k, "key-%d-%d", i, j);
        int vl = snprintf(v, sizeof v, "value %d of batch %d", j, i);
        if ((i + j) % 3 == 2)
            pl_batch_delete(b, k, (size_t)kl);
        else
            pl_batch_put(b, k, (size_t)kl, v, (size_t)vl);
    }
    return b;
}

static void batches(void)
{
    for (int i = 0; i < 4; i++) {
        pl_batch *b = sample_batch(i + 1);
        char f[32];
        snprintf(f, sizeof f, "seed-%d", i);
        seed("batch", f, -1, b->rep.data, b->rep.len);
        pl_batch_free(b);
    }
    pl_batch *b = pl_batch_new();
    pl_batch_put(b, "", 0, "", 0); /* empty key and value */
    seed("batch", "seed-empty", -1, b->rep.data, b->rep.len);
    pl_batch_free(b);
}

/* A WAL of a few batches with syncs between them (so with sync marks), closed or not. */
static void wals(const char *dir)
{
    for (int variant = 0; variant < 3; variant++) {
        char path[300];
        snprintf(path, sizeof path, "%s/%06d.wal", dir, 10 + variant);
        wal *w;
        FUZZ_CHECK(wal_create(path, variant == 1, 1 << 20, &w) == PL_OK, "wal_create");
        uint64_t lsn = 1;
        for (int i = 0; i < 6; i++) {
            pl_batch *b = sample_batch(i);
            wal_rec r = {lsn, pl_batch_count(b), b->rep.data, b->rep.len};
            FUZZ_CHECK(wal_append(w, &r, 1) == PL_OK, "wal_append");
            lsn += pl_batch_count(b);
            pl_batch_free(b);
            if (i % 2)
                FUZZ_CHECK(wal_sync(w) == PL_OK, "wal_sync");
        }
        FUZZ_CHECK(wal_close(w, variant != 2) == PL_OK, "wal_close");
        char *data;
        size_t len;
        read_whole(path, &data, &len);
        static const int flags[] = {FUZZ_FIX_CRC, FUZZ_FIX_CRC, FUZZ_FIX_CRC | 4 /* salvage */};
        char f[32];
        snprintf(f, sizeof f, "seed-%d", variant);
        seed("wal", f, flags[variant], data, len);
        if (variant == 0)
            seed("wal", "seed-absolute-older", 2 | 8, data, len);
        free(data);
    }
}

static void blocks(void)
{
    static const int intervals[] = {16, 1, 3, 4, 1}; /* the last two with a hash index (data blocks) */
    for (int v = 0; v < 5; v++) {
        block_builder b;
        block_builder_init(&b, intervals[v]);
        if (v >= 3)
            block_builder_set_hash(&b);
        for (int i = 0; i < 24; i++) {
            char k[200];
            int kl = snprintf(k, sizeof k, "block-key-%04d", i * 7);
            if (v == 2 && i == 5) { /* a key longer than the cursor's inline buffer */
                memset(k + kl, 'x', 150);
                kl += 150;
            }
            put_u64(k + kl, ikey_pack((uint64_t)(1000 - i), i % 5 ? KIND_PUT : KIND_DELETE));
            FUZZ_CHECK(block_builder_add(&b, k, (size_t)kl + 8, "val", (size_t)(i % 4)) == PL_OK, "block add");
        }
        const char *data;
        size_t len;
        block_builder_finish(&b, &data, &len);
        /* K op bytes: seek near key 3, next, next, prev, seek to bytes "block-", last, prev, first */
        static const uint8_t ops[] = {0x00, 3, 0x01, 0x01, 0x02, 0x00, 0xc6, 'b', 'l', 'o', 'c', 'k', '-',
                                      0x07, 0x02, 0x03, 0x04, 0x20, 0x01};
        char *buf = malloc(1 + sizeof ops + len);
        buf[0] = (char)sizeof ops;
        memcpy(buf + 1, ops, sizeof ops);
        memcpy(buf + 1 + sizeof ops, data, len);
        char f[32];
        snprintf(f, sizeof f, v >= 3 ? "seed-%d-hash" : "seed-%d", v);
        seed("block", f, -1, buf, 1 + sizeof ops + len);
        free(buf);
        block_builder_free(&b);
    }
}

static void tables(const char *dir)
{
    static const int ks[] = {1, 2, 9, 10}; /* 9, 10: lz4 and zstd blocks */
    for (size_t j = 0; j < sizeof ks / sizeof *ks; j++) {
        int k = ks[j];
        table_meta m;
        FUZZ_CHECK(fuzz_make_table(dir, k, &m) == PL_OK, "table");
        char path[300], *data;
        size_t len;
        snprintf(path, sizeof path, "%s/%06d.sst", dir, k);
        read_whole(path, &data, &len);
        char f[32];
        snprintf(f, sizeof f, "seed-%d", k);
        seed("table", f, FUZZ_FIX_CRC, data, len);
        table_meta_free(&m);
        free(data);
    }
}

/* A zstd table with a dictionary (format 4): the samples lowered to 12 KiB so that the seed stays
 * small; JSON-like values from a few words, so that the samples make a dictionary. */
static void dict_table(const char *dir)
{
    static const char *words[] = {"alpha", "bravo", "lisbon", "oslo", "true", "false", "score", "tags"};
    char path[300], *data;
    size_t len;
    snprintf(path, sizeof path, "%s/dict.sst", dir);
    table_dict_sample_bytes = 12 << 10;
    table_builder *tb;
    FUZZ_CHECK(table_builder_new(path, 1024, 10, &tb) == PL_OK, "builder");
    table_builder_set_compression(tb, COMPRESS_ZSTD);
    int rc = PL_OK;
    uint32_t r = 7;
    for (int i = 0; i < 400 && !rc; i++) {
        char key[32], val[160];
        int kl = snprintf(key, sizeof key, "user:%05d", i), vl = 0;
        put_u64(key + kl, ikey_pack((uint64_t)(1000 + i), KIND_PUT));
        vl += snprintf(val + vl, sizeof val - (size_t)vl, "{\"id\":%d", i);
        for (int w = 0; w < 6; w++) {
            r = r * 1103515245u + 12345u;
            vl += snprintf(val + vl, sizeof val - (size_t)vl, ",\"%s\":\"%s\"", words[(r >> 8) % 8], words[(r >> 16) % 8]);
        }
        vl += snprintf(val + vl, sizeof val - (size_t)vl, "}");
        rc = table_builder_add(tb, key, (size_t)kl + 8, val, (size_t)vl);
    }
    table_meta m;
    FUZZ_CHECK(!rc && table_builder_finish(tb, &m) == PL_OK, "dict table");
    table_dict_sample_bytes = TABLE_DICT_SAMPLE_BYTES;
    read_whole(path, &data, &len);
    FUZZ_CHECK(get_u32(data + len - TABLE_FOOTER_SIZE + 32) == TABLE_VERSION_DICT, "no dictionary was trained");
    seed("table", "seed-dict", FUZZ_FIX_CRC, data, len);
    table_meta_free(&m);
    free(data);
}

/* MANIFEST-000009 naming the harness's tables 1..8 at several levels. */
static void manifests(const char *dir)
{
    static const int level[9] = {0, 0, 0, 1, 2, 1, 3, 0, 6};
    version_edit e;
    edit_init(&e);
    for (int k = 1; k <= 8; k++) {
        table_meta m;
        FUZZ_CHECK(fuzz_make_table(dir, k, &m) == PL_OK, "table");
        file_meta *f;
        FUZZ_CHECK(file_meta_open(dir, (uint64_t)k, &m, NULL, 0, &f) == PL_OK, "file_meta_open");
        edit_add_file(&e, level[k], f);
        file_unref(f);
    }
    e.has_log_number = e.has_next_file = e.has_last_lsn = 1;
    e.log_number = 12;
    e.next_file = 13;
    e.last_lsn = 900;
    FUZZ_CHECK(manifest_create(dir, 9, 1, &e, NULL, NULL, NULL) == PL_OK, "manifest_create");
    edit_free(&e);
    char path[300], *data;
    size_t len;
    snprintf(path, sizeof path, "%s/MANIFEST-000009", dir);
    read_whole(path, &data, &len);
    seed("manifest", "seed-0", FUZZ_FIX_CRC, data, len);
    /* with its own CURRENT ("MANIFEST-9\n", 11 bytes) in front */
    char *both = malloc(11 + len);
    memcpy(both, "MANIFEST-9\n", 11);
    memcpy(both + 11, data, len);
    seed("manifest", "seed-current", FUZZ_FIX_CRC | 2 | (11 << 4), both, 11 + len);
    free(both);
    free(data);
}

/* Pack every file of a database directory but LOCK in fuzz_db's input format. */
typedef struct {
    const char *dir;
    pl_buf out;
} packer;

static int pack(void *ctx, const char *name)
{
    packer *pk = ctx;
    if (!strcmp(name, "LOCK"))
        return PL_OK;
    char path[600], *data;
    size_t len;
    snprintf(path, sizeof path, "%s/%s", pk->dir, name);
    read_whole(path, &data, &len);
    FUZZ_CHECK(len < 65536, "%s is too large for a seed", name);
    size_t nl = strlen(name);
    buf_reserve(&pk->out, pk->out.len + 3 + nl + len);
    char *p = pk->out.data + pk->out.len;
    *p++ = (char)nl;
    memcpy(p, name, nl);
    p += nl;
    *p++ = (char)(len & 0xff);
    *p++ = (char)(len >> 8);
    memcpy(p, data, len);
    pk->out.len += 3 + nl + len;
    free(data);
    return PL_OK;
}

static void databases(const char *base)
{
    for (int v = 0; v < 2; v++) {
        char dir[300];
        snprintf(dir, sizeof dir, "%s/db%d", base, v);
        pl_options o;
        pl_options_init(&o);
        o.background_compaction = 0;
        pl_db *db;
        FUZZ_CHECK(pl_db_open(dir, &o, &db) == PL_OK, "open");
        char k[32], val[32];
        for (int i = 0; i < 40; i++) {
            int kl = snprintf(k, sizeof k, "k%03d", (i * 7) % 40), vl = snprintf(val, sizeof val, "v%d", i);
            if (i % 9 == 8)
                pl_db_delete(db, k, (size_t)kl, 0);
            else
                pl_db_put(db, k, (size_t)kl, val, (size_t)vl, 0);
            if (i == 15 || (v == 1 && i == 30))
                pl_db_flush(db);
        }
        if (v == 1)
            pl_db_compact(db, NULL, 0, 0, NULL, 0, 0);
        pl_batch *b = sample_batch(3);
        pl_db_write(db, b, PL_WRITE_SYNC);
        pl_batch_free(b);
        FUZZ_CHECK(pl_db_close(db) == PL_OK, "close");
        packer pk = {dir, {0}};
        FUZZ_CHECK(env_list_dir(dir, pack, &pk) == PL_OK, "list");
        static const int flags[2][2] = {{FUZZ_FIX_CRC, FUZZ_FIX_CRC | 8 | 16}, {FUZZ_FIX_CRC | 4, FUZZ_FIX_CRC | 8}};
        for (int j = 0; j < 2; j++) {
            char f[32];
            snprintf(f, sizeof f, "seed-%d-%d", v, j);
            seed("db", f, flags[v][j], pk.out.data, pk.out.len);
        }
        pl_buf_free(&pk.out);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
        return 2;
    }
    outdir = argv[1];
    mkdir(outdir, 0755);
    batches();
    wals(fuzz_fresh_dir("wal"));
    blocks();
    tables(fuzz_fresh_dir("table"));
    dict_table(fuzz_fresh_dir("table"));
    manifests(fuzz_fresh_dir("manifest"));
    databases(fuzz_dir());
    printf("seed corpora written to %s\n", outdir);
    return 0;
}
