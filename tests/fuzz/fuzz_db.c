/* fuzz_db.c -- a whole database directory from arbitrary bytes: pl_verify, pl_db_open (read-only and
 * for writing), reading everything, close, reopen, and pl_repair.
 *
 * Input: a flag byte (bit 0: fix the CRCs of every WAL, manifest and table; bits 1-2: wal_recovery;
 * bit 3: repair too; bit 4: open read-only first), then up to 8 files, each
 *     u8 name length, name (bytes outside [A-Za-z0-9._-] become '_'), u16 length (LE), contents.
 * The seeds are real databases (tests/fuzz/gen_corpus.c).  Asserted:
 *  - every call gives one of the codes its contract lists (verify: PL_OK, PL_CORRUPT, PL_IOERR; open:
 *    those and PL_NOTFOUND); no crash, no leak, no read out of bounds;
 *  - a read-only open, and an open that fails, leave the directory as they found it (every file's
 *    name, size and contents; a failed open may leave the LOCK file);
 *  - an open database of a verified directory is at an LSN no lower than any entry of its tables;
 *  - an open database reads: a walk forward yields strictly ascending keys and one backward the same
 *    reversed, each key's get the walk's value, when pl_verify accepted the directory (reads may
 *    report PL_CORRUPT otherwise, never anything else);
 *  - what a successful open read, it reads again after close and reopen: the same keys and values;
 *    and (verified) new puts and deletes, before and after a flush, read back as written;
 *  - after a successful pl_repair the directory verifies, opens and reads without an error. */
#include "buf.h"
#include "filename.h"
#include "fuzz.h"
#include "version.h"

#define MAX_FILES 8

/* ---- the directory's contents ---- */

typedef struct {
    char name[256];
    uint64_t size;
    uint32_t crc;
} file_sum;

typedef struct {
    file_sum f[64];
    int n;
} dir_sum;

static void summarise(const char *dir, dir_sum *s, int skip_lock)
{
    s->n = 0;
    DIR *d = opendir(dir);
    FUZZ_CHECK(d != NULL, "opendir %s", dir);
    struct dirent *e;
    while ((e = readdir(d)) && s->n < 64) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || (skip_lock && !strcmp(e->d_name, "LOCK")))
            continue;
        file_sum *f = &s->f[s->n++];
        snprintf(f->name, sizeof f->name, "%s", e->d_name);
        char p[600], buf[4096];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        f->size = 0;
        f->crc = 0;
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        ssize_t r;
        while (fd >= 0 && (r = read(fd, buf, sizeof buf)) > 0) {
            f->crc = crc_extend(f->crc, buf, (size_t)r);
            f->size += (uint64_t)r;
        }
        if (fd >= 0)
            close(fd);
    }
    closedir(d);
}

static const file_sum *find(const dir_sum *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->f[i].name, name))
            return &s->f[i];
    return NULL;
}

static void same_dir(const dir_sum *a, const dir_sum *b, const char *what)
{
    FUZZ_CHECK(a->n == b->n, "%s: %d files before, %d after", what, a->n, b->n);
    for (int i = 0; i < a->n; i++) {
        const file_sum *g = find(b, a->f[i].name);
        FUZZ_CHECK(g && g->size == a->f[i].size && g->crc == a->f[i].crc, "%s: %s changed", what, a->f[i].name);
    }
}

/* ---- what the database holds ---- */

typedef struct {
    pl_buf keys, vals; /* the entries' bytes, back to back */
    size_t *ko, *vo;   /* entry i: keys [ko[i], ko[i + 1]), values [vo[i], vo[i + 1]) */
    size_t n, cap;
    int status;
} contents;

static void add_entry(contents *c, const char *k, size_t kl, const char *v, size_t vl)
{
    if (c->n + 2 > c->cap) {
        c->cap = c->cap ? 2 * c->cap : 64;
        c->ko = realloc(c->ko, c->cap * sizeof *c->ko);
        c->vo = realloc(c->vo, c->cap * sizeof *c->vo);
    }
    FUZZ_CHECK(buf_reserve(&c->keys, c->keys.len + kl + 1) == PL_OK &&
               buf_reserve(&c->vals, c->vals.len + vl + 1) == PL_OK, "out of memory");
    if (kl)
        memcpy(c->keys.data + c->keys.len, k, kl);
    if (vl)
        memcpy(c->vals.data + c->vals.len, v, vl);
    c->ko[c->n] = c->keys.len;
    c->vo[c->n] = c->vals.len;
    c->keys.len += kl;
    c->vals.len += vl;
    c->n++;
    c->ko[c->n] = c->keys.len;
    c->vo[c->n] = c->vals.len;
}

static const char *key_of(const contents *c, size_t i, size_t *n)
{
    *n = c->ko[i + 1] - c->ko[i];
    return c->keys.data + c->ko[i];
}

static const char *val_of(const contents *c, size_t i, size_t *n)
{
    *n = c->vo[i + 1] - c->vo[i];
    return c->vals.data + c->vo[i];
}

/* Walk db forward and back, check the order and the gets, and record what it holds in c. */
static void read_all(pl_db *db, contents *c, int verified)
{
    memset(c, 0, sizeof *c);
    pl_iter *it;
    int rc = pl_iter_new(db, NULL, &it);
    FUZZ_RC(rc, PL_OK, PL_CORRUPT, PL_IOERR);
    if (rc) {
        c->status = rc;
        return;
    }
    const char *k, *v;
    size_t kl, vl;
    for (pl_iter_seek_first(it); pl_iter_valid(it) && c->n < 100000; pl_iter_next(it)) {
        pl_iter_key(it, &k, &kl);
        pl_iter_value(it, &v, &vl);
        if (verified && c->n) {
            size_t pl;
            const char *pk = key_of(c, c->n - 1, &pl);
            FUZZ_CHECK(ukey_cmp(pk, pl, k, kl) < 0, "keys do not ascend at entry %zu", c->n);
        }
        add_entry(c, k, kl, v, vl);
    }
    c->status = pl_iter_status(it);
    FUZZ_RC(c->status, PL_OK, PL_CORRUPT, PL_IOERR);
    FUZZ_CHECK(!verified || c->status == PL_OK, "a verified database fails to read: %s", pl_code_name(c->status));
    if (c->status == PL_OK) {
        size_t i = c->n;
        for (pl_iter_seek_last(it); pl_iter_valid(it) && i > 0; pl_iter_prev(it), i--) {
            size_t n;
            const char *ek = key_of(c, i - 1, &n);
            pl_iter_key(it, &k, &kl);
            if (verified)
                FUZZ_CHECK(kl == n && !memcmp(k, ek, n), "backward walk differs at entry %zu", i - 1);
        }
        FUZZ_RC(pl_iter_status(it), PL_OK, PL_CORRUPT, PL_IOERR);
        if (verified)
            FUZZ_CHECK(pl_iter_status(it) == PL_OK && i == 0 && !pl_iter_valid(it),
                       "backward walk: %zu entries short, status %s", i, pl_code_name(pl_iter_status(it)));
    }
    pl_iter_free(it);
    /* gets agree with the walk */
    pl_buf out = {0};
    for (size_t i = 0; i < c->n; i += 1 + c->n / 64) {
        size_t kn, vn;
        const char *ek = key_of(c, i, &kn), *ev = val_of(c, i, &vn);
        rc = pl_db_get(db, NULL, ek, kn, &out, 0);
        FUZZ_RC(rc, PL_OK, PL_NOTFOUND, PL_CORRUPT, PL_IOERR);
        if (verified)
            FUZZ_CHECK(rc == PL_OK && out.len == vn && (!vn || !memcmp(out.data, ev, vn)),
                       "get of entry %zu disagrees with the walk (%s)", i, pl_code_name(rc));
    }
    pl_buf_free(&out);
}

static void contents_free(contents *c)
{
    pl_buf_free(&c->keys);
    pl_buf_free(&c->vals);
    free(c->ko);
    free(c->vo);
}

static int same_contents(const contents *a, const contents *b)
{
    return a->n == b->n && a->keys.len == b->keys.len && a->vals.len == b->vals.len &&
           (!a->n || (!memcmp(a->ko, b->ko, (a->n + 1) * sizeof *a->ko) &&
                      !memcmp(a->vo, b->vo, (a->n + 1) * sizeof *a->vo))) &&
           (!a->keys.len || !memcmp(a->keys.data, b->keys.data, a->keys.len)) &&
           (!a->vals.len || !memcmp(a->vals.data, b->vals.data, a->vals.len));
}

/* New writes win over what the directory held: overwrite its first key, write a key past all of them,
 * delete it again; each is read back at once, and the overwrite survives a flush. */
static void write_and_read(pl_db *db, const contents *c)
{
    static const char fresh[] = "\xff\xff fuzz: a key past the others";
    size_t kn = 1;
    const char *k = "a"; /* an empty database: any other key */
    if (c->n)
        k = key_of(c, 0, &kn);
    pl_buf out = {0};
    for (int round = 0; round < 2; round++) {
        FUZZ_RC(pl_db_put(db, k, kn, "new value", 9, 0), PL_OK);
        FUZZ_RC(pl_db_put(db, fresh, sizeof fresh - 1, "fresh", 5, 0), PL_OK);
        int rc = pl_db_get(db, NULL, k, kn, &out, 0);
        FUZZ_CHECK(rc == PL_OK && out.len == 9 && !memcmp(out.data, "new value", 9),
                   "an acknowledged put reads back as %s", pl_code_name(rc));
        FUZZ_RC(pl_db_delete(db, fresh, sizeof fresh - 1, 0), PL_OK);
        FUZZ_CHECK(pl_db_get(db, NULL, fresh, sizeof fresh - 1, &out, 0) == PL_NOTFOUND, "a deleted key reads back");
        if (round == 0)
            FUZZ_RC(pl_db_flush(db), PL_OK);
    }
    int rc = pl_db_get(db, NULL, k, kn, &out, 0);
    FUZZ_CHECK(rc == PL_OK && out.len == 9 && !memcmp(out.data, "new value", 9), "after a flush: %s",
               pl_code_name(rc));
    pl_buf_free(&out);
}

/* The highest LSN of any entry of the tables the manifest names (0 if it cannot be read). */
static uint64_t tables_max_lsn(const char *dir)
{
    versions vs;
    uint64_t max = 0;
    if (versions_open(&vs, dir, NULL, 0) != PL_OK)
        return 0;
    for (int l = 0; l < NUM_LEVELS; l++)
        for (int i = 0; i < vs.current->n[l]; i++) {
            iter *it = table_iter(vs.current->files[l][i]->t);
            const char *k;
            size_t kn;
            for (iter_seek_first(it); iter_valid(it); iter_next(it)) {
                iter_key(it, &k, &kn);
                if (ikey_lsn(k, kn) > max)
                    max = ikey_lsn(k, kn);
            }
            iter_destroy(it);
        }
    versions_close(&vs);
    return max;
}

/* ---- the harness ---- */

static void write_files(const char *dir, const uint8_t *p, const uint8_t *end, int fix)
{
    for (int i = 0; i < MAX_FILES && p < end; i++) {
        size_t nl = *p++;
        if (nl > (size_t)(end - p))
            return;
        char name[256];
        for (size_t j = 0; j < nl; j++) {
            char ch = (char)p[j];
            int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                     ch == '.' || ch == '-' || ch == '_';
            name[j] = ok ? ch : '_';
        }
        name[nl] = 0;
        p += nl;
        if (end - p < 2)
            return;
        size_t len = (size_t)p[0] | (size_t)p[1] << 8;
        p += 2;
        if (len > (size_t)(end - p))
            len = (size_t)(end - p);
        if (nl == 0 || !strcmp(name, ".") || !strcmp(name, "..")) {
            p += len;
            continue;
        }
        char *data = malloc(len ? len : 1);
        memcpy(data, p, len);
        p += len;
        uint64_t num;
        enum file_type type;
        int ours = parse_file_name(name, &num, &type);
        if (fix && ours && (type == FILE_WAL || type == FILE_MANIFEST))
            fuzz_fix_wal(data, len);
        else if (fix && ours && type == FILE_TABLE)
            fuzz_fix_table(data, len);
        char path[600];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        fuzz_write_file(path, data, len);
        free(data);
    }
}

static void options(pl_options *o, unsigned flags)
{
    pl_options_init(o);
    o->create_if_missing = 1;
    o->memtable_bytes = 64 << 10;
    o->block_cache_bytes = 256 << 10;
    o->wal_recovery = (flags >> 1) & 3;
    if (o->wal_recovery > PL_RECOVER_SALVAGE)
        o->wal_recovery = PL_RECOVER_TOLERATE_TAIL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned flags = data[0];
    const char *dir = fuzz_fresh_dir("db");
    write_files(dir, data + 1, data + size, flags & FUZZ_FIX_CRC);
    static dir_sum before, after;
    pl_options o;
    options(&o, flags);

    int vrc = pl_verify(dir);
    FUZZ_RC(vrc, PL_OK, PL_CORRUPT, PL_IOERR);
    int verified = vrc == PL_OK;
    pl_db *db = NULL;
    int rc;
    contents c1, c2;

    if (flags & 16) {
        summarise(dir, &before, 0);
        o.read_only = 1;
        rc = pl_db_open(dir, &o, &db);
        FUZZ_RC(rc, PL_OK, PL_CORRUPT, PL_IOERR, PL_NOTFOUND);
        if (rc == PL_OK) {
            read_all(db, &c1, verified);
            contents_free(&c1);
            FUZZ_RC(pl_db_close(db), PL_OK);
        }
        summarise(dir, &after, 0);
        same_dir(&before, &after, "read-only open");
        o.read_only = 0;
    }

    summarise(dir, &before, 1);
    rc = pl_db_open(dir, &o, &db);
    FUZZ_RC(rc, PL_OK, PL_CORRUPT, PL_IOERR, PL_NOTFOUND);
    if (rc != PL_OK) {
        summarise(dir, &after, 1);
        same_dir(&before, &after, "failed open");
    } else {
        if (verified) { /* no entry of a live table above the database's LSN (invisible, shadowing) */
            uint64_t max = tables_max_lsn(dir);
            pl_snapshot *snap;
            FUZZ_RC(pl_snapshot_new(db, &snap), PL_OK);
            FUZZ_CHECK(pl_snapshot_lsn(snap) >= max, "a table holds LSN %llu, the database is at %llu",
                       (unsigned long long)max, (unsigned long long)pl_snapshot_lsn(snap));
            pl_snapshot_release(snap);
        }
        read_all(db, &c1, verified);
        FUZZ_RC(pl_db_close(db), PL_OK);
        rc = pl_db_open(dir, &o, &db);
        FUZZ_RC(rc, PL_OK, PL_CORRUPT, PL_IOERR);
        FUZZ_CHECK(rc == PL_OK || c1.status != PL_OK, "the reopen fails (%s) where the open read cleanly",
                   pl_code_name(rc));
        if (rc == PL_OK) {
            read_all(db, &c2, verified);
            if (c1.status == PL_OK)
                FUZZ_CHECK(c2.status == PL_OK && same_contents(&c1, &c2),
                           "reopened: %zu entries (status %s), before %zu", c2.n, pl_code_name(c2.status), c1.n);
            if (verified)
                write_and_read(db, &c2);
            contents_free(&c2);
            FUZZ_RC(pl_db_close(db), PL_OK);
        }
        contents_free(&c1);
    }

    if (flags & 8) {
        rc = pl_repair(dir);
        FUZZ_RC(rc, PL_OK, PL_CORRUPT, PL_IOERR, PL_NOTFOUND);
        if (rc == PL_OK) {
            rc = pl_verify(dir);
            FUZZ_CHECK(rc == PL_OK, "a repaired database does not verify: %s", pl_code_name(rc));
            rc = pl_db_open(dir, &o, &db);
            FUZZ_CHECK(rc == PL_OK, "a repaired database does not open: %s", pl_code_name(rc));
            read_all(db, &c1, 1);
            contents_free(&c1);
            FUZZ_RC(pl_db_close(db), PL_OK);
        }
    }
    return 0;
}
