/*
 * changes.c -- the changes feed (changes.h).
 */
#include "changes.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "batch.h"
#include "buf.h"
#include "env.h"
#include "filename.h"
#include "ikey.h"
#include "status.h"
#include "wal.h"

/* ---- the archive ---- */

int changes_archive_wal(const char *dir, uint64_t number)
{
    char *arch = db_file_name(dir, 0, FILE_ARCHIVE);
    char *from = db_file_name(dir, number, FILE_WAL);
    char *to = arch ? db_file_name(arch, number, FILE_WAL) : NULL;
    int rc = from && to ? env_mkdir(arch) : PL_FAIL(PL_NOMEM, "out of memory");
    if (!rc) {
        struct stat st;
        if (stat(from, &st) == 0) {
            rc = env_rename(from, to);
            if (!rc)
                rc = env_sync_dir(arch);
        }
    }
    free(arch);
    free(from);
    free(to);
    return rc;
}

int changes_trim(const char *dir, uint64_t max_bytes, uint64_t max_seconds)
{
    char *arch = db_file_name(dir, 0, FILE_ARCHIVE);
    if (!arch)
        return PL_FAIL(PL_NOMEM, "out of memory");
    struct stat st;
    file_list l = {0};
    int rc = stat(arch, &st) == 0 ? list_wals(arch, &l) : PL_OK;
    file_list_sort(&l);
    uint64_t total = 0, *sizes = calloc(l.n + 1, sizeof *sizes);
    time_t *mtimes = calloc(l.n + 1, sizeof *mtimes);
    if (!rc && (!sizes || !mtimes))
        rc = PL_FAIL(PL_NOMEM, "out of memory");
    for (size_t i = 0; !rc && i < l.n; i++) {
        char *p = db_file_name(arch, l.numbers[i], FILE_WAL);
        if (p && stat(p, &st) == 0) {
            sizes[i] = (uint64_t)st.st_size;
            mtimes[i] = st.st_mtime;
            total += sizes[i];
        }
        free(p);
    }
    time_t now = time(NULL);
    for (size_t i = 0; !rc && i < l.n; i++) {
        int too_big = max_bytes && total > max_bytes;
        int too_old = max_seconds && now - mtimes[i] > (time_t)max_seconds;
        if (!too_big && !too_old)
            break; /* the rest are newer and fit */
        char *p = db_file_name(arch, l.numbers[i], FILE_WAL);
        rc = p ? env_unlink(p) : PL_FAIL(PL_NOMEM, "out of memory");
        free(p);
        total -= sizes[i];
    }
    free(sizes);
    free(mtimes);
    file_list_free(&l);
    free(arch);
    return rc;
}

/* ---- reading ---- */

struct pl_changes {
    char **paths;      /* the WAL files in order (each tried as given, then in the archive) */
    char **alt;        /* the archive path of each, or NULL */
    size_t n, i;
    uint64_t next;     /* records ending below this LSN were yielded or are before the start */
    uint64_t bound;    /* yield records whose first LSN is <= bound */
    uint64_t known;    /* LSNs up to this exist: not finding them is a gap */
    int have_cursor;
    wal_cursor cur;
};

void pl_changes_free(pl_changes *c)
{
    if (!c)
        return;
    if (c->have_cursor)
        wal_cursor_close(&c->cur);
    for (size_t i = 0; i < c->n; i++) {
        free(c->paths[i]);
        free(c->alt ? c->alt[i] : NULL);
    }
    free(c->paths);
    free(c->alt);
    free(c);
}

static pl_changes *changes_alloc(size_t n, uint64_t since, uint64_t bound, uint64_t known)
{
    pl_changes *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->paths = calloc(n + 1, sizeof *c->paths);
    c->alt = calloc(n + 1, sizeof *c->alt);
    if (!c->paths || !c->alt) {
        pl_changes_free(c);
        return NULL;
    }
    c->n = n;
    c->next = since + 1;
    c->bound = bound;
    c->known = known;
    return c;
}

int changes_open_dir(const char *dir, uint64_t since, uint64_t bound, uint64_t known, pl_changes **out)
{
    *out = NULL;
    file_list l = {0};
    struct stat st;
    char *arch = db_file_name(dir, 0, FILE_ARCHIVE);
    /* The main directory first, then the archive: a WAL moved between the two listings is seen
     * twice (and deduplicated), never missed. */
    int rc = arch ? list_wals(dir, &l) : PL_FAIL(PL_NOMEM, "out of memory");
    if (!rc && stat(arch, &st) == 0)
        rc = list_wals(arch, &l);
    file_list_sort(&l);
    pl_changes *c = rc ? NULL : changes_alloc(l.n, since, bound, known);
    if (!rc && !c)
        rc = PL_FAIL(PL_NOMEM, "out of memory");
    for (size_t i = 0; !rc && i < l.n; i++) {
        c->paths[i] = db_file_name(dir, l.numbers[i], FILE_WAL);
        c->alt[i] = db_file_name(arch, l.numbers[i], FILE_WAL);
        if (!c->paths[i] || !c->alt[i])
            rc = PL_FAIL(PL_NOMEM, "out of memory");
    }
    file_list_free(&l);
    free(arch);
    if (rc) {
        pl_changes_free(c);
        return rc;
    }
    *out = c;
    return PL_OK;
}

int pl_changes_open_files(const char *const *paths, size_t n, uint64_t since, pl_changes **out)
{
    *out = NULL;
    pl_changes *c = changes_alloc(n, since, UINT64_MAX, 0);
    if (!c)
        return PL_FAIL(PL_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        if (!(c->paths[i] = strdup(paths[i]))) {
            pl_changes_free(c);
            return PL_FAIL(PL_NOMEM, "out of memory");
        }
    *out = c;
    return PL_OK;
}

/* Open file i: its path, else its archive path.  PL_NOTFOUND when it is in neither (trimmed). */
static int open_file(pl_changes *c)
{
    int rc = wal_cursor_open(c->paths[c->i], &c->cur);
    if (rc == PL_NOTFOUND && c->alt[c->i])
        rc = wal_cursor_open(c->alt[c->i], &c->cur);
    c->have_cursor = rc == PL_OK;
    return rc;
}

/* LSNs from c->next up to to_lsn - 1 are in no WAL the reader has. */
static int gap(const pl_changes *c, uint64_t to_lsn)
{
    return PL_FAIL(PL_MISUSE,
                   "changes: LSNs %" PRIu64 " to %" PRIu64 " are in no kept WAL (WALs no longer kept, or an "
                   "ingest, whose pairs go straight into tables); keep more with wal_retention_bytes / "
                   "wal_retention_seconds, or start again from a checkpoint",
                   c->next, to_lsn - 1);
}

int pl_changes_next(pl_changes *c, uint64_t *lsn, uint32_t *count, uint64_t *ts, int *has_ts,
                    const char **payload, size_t *len)
{
    for (;;) {
        if (!c->have_cursor) {
            if (c->i >= c->n)
                return c->next <= c->known ? gap(c, c->known + 1) : PL_NOTFOUND;
            int rc = open_file(c);
            if (rc == PL_NOTFOUND) { /* trimmed meanwhile: the next file's records show the gap */
                c->i++;
                continue;
            }
            if (rc)
                return rc;
        }
        uint64_t l;
        int rc = wal_cursor_next(&c->cur, &l, ts, has_ts, payload, len);
        if (rc == PL_NOTFOUND) {
            int damaged = c->cur.damaged;
            uint64_t off = c->cur.off;
            wal_cursor_close(&c->cur);
            c->have_cursor = 0;
            if (damaged && c->i + 1 < c->n)
                return PL_FAIL(PL_CORRUPT, "%s: damaged WAL record at offset %" PRIu64, c->paths[c->i], off);
            c->i++;
            continue;
        }
        if (rc)
            return rc;
        uint32_t k = batch_rep_count(*payload); /* the record's LSNs: l .. l + k - 1 */
        if (l + k - 1 < c->next)
            continue; /* before the start, or yielded */
        if (l > c->bound)
            return PL_NOTFOUND;
        if (l > c->next)
            return gap(c, l);
        c->next = l + k;
        *lsn = l;
        *count = k;
        return PL_OK;
    }
}

typedef struct {
    pl_op_fn fn;
    void *ctx;
} decode_ctx;

static int decode_op(void *ctx, uint32_t i, int kind, const char *key, size_t klen, const char *val, size_t vlen)
{
    decode_ctx *d = ctx;
    return d->fn(d->ctx, kind == KIND_PUT, key, klen, val, vlen);
}

int pl_batch_decode(const char *payload, size_t len, pl_op_fn fn, void *ctx)
{
    decode_ctx d = {fn, ctx};
    return batch_iterate(payload, len, decode_op, &d);
}
