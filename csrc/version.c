/* version.c -- versions, version edits and the version set; see version.h (the manifest: manifest.c). */
#include "version.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bloom.h"
#include "buf.h"
#include "concat.h"
#include "env.h"
#include "filename.h"
#include "ikey.h"
#include "manifest.h"
#include "progress.h"
#include "status.h"

uint64_t manifest_roll_bytes = UINT64_C(64) << 20;

/* ---- files and versions ---- */

void file_ref(file_meta *f) { atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed); }

void file_unref(file_meta *f)
{
    if (!f || atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) != 1)
        return;
    table_close(f->t);
    if (atomic_load(&f->obsolete)) {
        env_kill_point("file_delete");
        env_unlink(f->path); /* a failure leaves a stray file that the next open removes */
    }
    table_meta_free(&f->m);
    free(f->path);
    free(f);
}

int file_meta_open(const char *dir, uint64_t number, const table_meta *m, cache *c, int lean, file_meta **out)
{
    file_meta *f = calloc(1, sizeof *f);
    if (!f)
        return PL_FAIL(PL_NOMEM, "out of memory");
    f->number = number;
    f->m = *m;
    atomic_init(&f->refs, 1);
    f->path = db_file_name(dir, number, FILE_TABLE);
    int rc = !f->path ? PL_FAIL(PL_NOMEM, "out of memory")
             : lean   ? table_open_lean(f->path, m->file_size, c, &f->t)
                      : table_open(f->path, m->file_size, c, &f->t);
    if (rc) {
        free(f->path);
        free(f);
        return rc;
    }
    *out = f;
    return PL_OK;
}

void version_ref(version *v) { atomic_fetch_add_explicit(&v->refs, 1, memory_order_relaxed); }

void version_unref(version *v)
{
    if (!v || atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (int l = 0; l < NUM_LEVELS; l++) {
        for (int i = 0; i < v->n[l]; i++)
            file_unref(v->files[l][i]);
        free(v->files[l]);
    }
    free(v);
}

static version *version_new(void)
{
    version *v = calloc(1, sizeof *v);
    if (v)
        atomic_init(&v->refs, 1);
    return v;
}

uint64_t version_level_bytes(const version *v, int level)
{
    uint64_t b = 0;
    for (int i = 0; i < v->n[level]; i++)
        b += v->files[level][i]->m.file_size;
    return b;
}

/* Read-around pays while the data is small next to memory: a restart's first reads then warm all of it
 * in a few faults, and it would end up in the page cache anyway.  Past a sixteenth of physical memory
 * (1 GiB when that is unknown), a page fault reads only its page (docs/decisions.md, item 14). */
uint64_t read_around_bytes = 0; /* 0: a sixteenth of physical memory */

static uint64_t read_around_max(void)
{
    uint64_t mem = env_physical_memory();
    return read_around_bytes ? read_around_bytes : mem ? mem / 16 : (uint64_t)1 << 30;
}

/* Advise every table of v random reads when v's tables pass read_around_max(), and make the tables
 * opened from then on lean (their heap does not grow with the data: docs/decisions.md, item 16). */
static void version_advise(versions *vs, version *v)
{
    uint64_t total = 0;
    for (int l = 0; l < NUM_LEVELS; l++)
        total += version_level_bytes(v, l);
    int on = total > read_around_max();
    atomic_store_explicit(&vs->lean_tables, on, memory_order_relaxed);
    for (int l = 0; l < NUM_LEVELS; l++)
        for (int i = 0; i < v->n[l]; i++)
            table_set_random_reads(v->files[l][i]->t, on);
}

static int ukey_in_file(const file_meta *f, const char *ukey, size_t klen)
{
    return ukey_cmp(ukey, klen, f->m.smallest, ikey_ulen(f->m.smallest_len)) >= 0 &&
           ukey_cmp(ukey, klen, f->m.largest, ikey_ulen(f->m.largest_len)) <= 0;
}

/* The first file of a sorted level whose largest user key is >= ukey, or n. */
static int find_file(file_meta **files, int n, const char *ukey, size_t klen)
{
    int lo = 0, hi = n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        file_meta *f = files[mid];
        if (ukey_cmp(f->m.largest, ikey_ulen(f->m.largest_len), ukey, klen) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int version_get(version *v, const char *ukey, size_t klen, uint64_t snap, pl_buf *out, int flags,
                int *result)
{
    *result = LOOKUP_ABSENT;
    /* The last table the get can reach (the deepest level's, else the oldest L0 table's) reads its point
     * index without asking its filter: the key is likely there (docs/decisions.md, item 5d). */
    int last_level = -1, last = -1;
    for (int l = NUM_LEVELS - 1; l >= 1 && last < 0; l--) {
        int i = find_file(v->files[l], v->n[l], ukey, klen);
        if (i < v->n[l] && ukey_in_file(v->files[l][i], ukey, klen)) {
            last_level = l;
            last = i;
        }
    }
    for (int i = 0; i < v->n[0] && last < 0; i++)
        if (v->files[0][i]->m.min_lsn <= snap && ukey_in_file(v->files[0][i], ukey, klen)) {
            last_level = 0;
            last = i;
        }
    if (last < 0)
        return PL_OK;
    uint32_t hash = bloom_hash(ukey, klen);
    /* Two passes over the tables the key may be in (L0's, then one per level down to the last): the
     * first starts each one's first cache misses (table_prefetch_get: its filter line and point index
     * bucket), so that they overlap; the second asks them in order. */
    for (int pass = 0; pass < 2; pass++) {
        /* L0 newest first: a newer table's version of the key shadows an older one's. */
        for (int i = v->n[0] - 1; i >= 0; i--) {
            file_meta *f = v->files[0][i];
            if (f->m.min_lsn > snap || !ukey_in_file(f, ukey, klen))
                continue;
            int fl = flags | (last_level == 0 && last == i ? TABLE_GET_NO_FILTER : 0);
            if (!pass) {
                table_prefetch_get(f->t, hash, fl);
                continue;
            }
            int rc = table_get_hashed(f->t, ukey, klen, hash, snap, out, fl, result);
            if (rc || *result != LOOKUP_ABSENT)
                return rc;
        }
        for (int l = 1; l <= last_level; l++) {
            int i = l == last_level ? last : find_file(v->files[l], v->n[l], ukey, klen);
            if (i >= v->n[l] || !ukey_in_file(v->files[l][i], ukey, klen))
                continue;
            int fl = flags | (l == last_level ? TABLE_GET_NO_FILTER : 0);
            if (!pass) {
                table_prefetch_get(v->files[l][i]->t, hash, fl);
                continue;
            }
            int rc = table_get_hashed(v->files[l][i]->t, ukey, klen, hash, snap, out, fl, result);
            if (rc || *result != LOOKUP_ABSENT)
                return rc;
        }
    }
    return PL_OK;
}

int version_may_contain(const version *v, const char *ukey, size_t klen, uint64_t snap)
{
    for (int i = 0; i < v->n[0]; i++) {
        const file_meta *f = v->files[0][i];
        if (f->m.min_lsn <= snap && ukey_in_file(f, ukey, klen) && table_may_contain(f->t, ukey, klen))
            return 1;
    }
    for (int l = 1; l < NUM_LEVELS; l++) {
        int i = find_file(v->files[l], v->n[l], ukey, klen);
        if (i < v->n[l] && ukey_in_file(v->files[l][i], ukey, klen) && table_may_contain(v->files[l][i]->t, ukey, klen))
            return 1;
    }
    return 0;
}

uint64_t version_approximate_size(const version *v, const char *start, size_t slen, int has_start,
                                  const char *stop, size_t stlen, int has_stop)
{
    if (has_start && has_stop && ukey_cmp(start, slen, stop, stlen) >= 0)
        return 0;
    uint64_t total = 0;
    for (int l = 0; l < NUM_LEVELS; l++) {
        for (int i = 0; i < v->n[l]; i++) {
            const file_meta *f = v->files[l][i];
            if (!f->m.smallest)
                continue;
            const char *lo = f->m.smallest, *hi = f->m.largest;
            size_t lon = ikey_ulen(f->m.smallest_len), hin = ikey_ulen(f->m.largest_len);
            if (has_stop && ukey_cmp(stop, stlen, lo, lon) <= 0)
                continue; /* the table starts at or after stop */
            if (has_start && ukey_cmp(start, slen, hi, hin) > 0)
                continue; /* the table ends before start */
            uint64_t a = has_start && ukey_cmp(start, slen, lo, lon) > 0 ? table_approx_offset(f->t, start, slen) : 0;
            uint64_t b = has_stop && ukey_cmp(stop, stlen, hi, hin) <= 0 ? table_approx_offset(f->t, stop, stlen)
                                                                         : f->m.file_size;
            if (b > a)
                total += b - a;
        }
    }
    return total;
}

_Static_assert(VERSION_BATCH <= TABLE_BATCH_MAX, "table_get_batch stages a whole version batch");

static int unresolved(const table_lookup *r) { return r->result == LOOKUP_ABSENT && r->rc == PL_OK; }

void version_get_batch(version *v, uint64_t snap, table_lookup *const *reqs, size_t n)
{
    table_lookup *sub[VERSION_BATCH];
    int fi[VERSION_BATCH];
    if (n > VERSION_BATCH)
        n = VERSION_BATCH;
    for (int i = v->n[0] - 1; i >= 0; i--) { /* L0 newest first */
        file_meta *f = v->files[0][i];
        size_t m = 0;
        for (size_t j = 0; j < n; j++)
            if (unresolved(reqs[j]) && f->m.min_lsn <= snap && ukey_in_file(f, reqs[j]->ukey, reqs[j]->klen))
                sub[m++] = reqs[j];
        if (m)
            table_get_batch(f->t, snap, sub, m);
    }
    for (int l = 1; l < NUM_LEVELS; l++) {
        size_t m = 0;
        for (size_t j = 0; j < n; j++) {
            if (!unresolved(reqs[j]))
                continue;
            int i = find_file(v->files[l], v->n[l], reqs[j]->ukey, reqs[j]->klen);
            if (i < v->n[l] && ukey_in_file(v->files[l][i], reqs[j]->ukey, reqs[j]->klen)) {
                sub[m] = reqs[j];
                fi[m++] = i;
            }
        }
        /* one batch per table: group the keys by file (stable, so keys keep their order) */
        for (size_t a = 0; a < m;) {
            size_t b = a + 1;
            for (size_t k = a + 1; k < m; k++) {
                if (fi[k] != fi[a])
                    continue;
                table_lookup *x = sub[k];
                memmove(sub + b + 1, sub + b, (k - b) * sizeof *sub);
                memmove(fi + b + 1, fi + b, (k - b) * sizeof *fi);
                sub[b] = x;
                fi[b++] = fi[a];
            }
            table_get_batch(v->files[l][fi[a]]->t, snap, sub + a, b - a);
            a = b;
        }
    }
}

/* ---- iterators: a sorted level's tables as one concatenation ---- */

/* The parts of a level's concatenation: its tables, one reference each while the iterator lives. */
typedef struct {
    file_meta **files;
    int n;
} level_run;

static iter *run_open(void *ctx, int i) { return table_iter(((level_run *)ctx)->files[i]->t); }

static void run_largest(void *ctx, int i, const char **k, size_t *n)
{
    const file_meta *f = ((level_run *)ctx)->files[i];
    *k = f->m.largest;
    *n = f->m.largest_len;
}

static void run_release(void *ctx)
{
    level_run *r = ctx;
    for (int i = 0; i < r->n; i++)
        file_unref(r->files[i]);
    free(r->files);
    free(r);
}

static const struct concat_ops level_run_ops = {run_open, run_largest, run_release};

iter *version_files_iter(file_meta **files, int n)
{
    level_run *r = calloc(1, sizeof *r);
    if (!r || !(r->files = malloc(sizeof(file_meta *) * (size_t)(n ? n : 1)))) {
        free(r);
        return NULL;
    }
    r->n = n;
    for (int i = 0; i < n; i++) {
        r->files[i] = files[i];
        file_ref(files[i]);
    }
    return concat_iter_new(&level_run_ops, r, n);
}

int version_iters(version *v, iter **its, int *count)
{
    int k = 0;
    *count = 0;
    for (int i = v->n[0] - 1; i >= 0; i--) {
        iter *it = version_files_iter(&v->files[0][i], 1);
        if (!it)
            goto nomem;
        its[k++] = it;
    }
    for (int l = 1; l < NUM_LEVELS; l++) {
        if (!v->n[l])
            continue;
        iter *it = version_files_iter(v->files[l], v->n[l]);
        if (!it)
            goto nomem;
        its[k++] = it;
    }
    *count = k;
    return PL_OK;
nomem:
    while (k > 0)
        iter_destroy(its[--k]);
    return PL_FAIL(PL_NOMEM, "out of memory");
}

/* ---- edits ---- */

void edit_init(version_edit *e) { memset(e, 0, sizeof *e); }

void edit_free(version_edit *e)
{
    for (int i = 0; i < e->nadded; i++)
        file_unref(e->added[i].f);
    free(e->added);
    free(e->deleted);
    edit_init(e);
}

int edit_add_file(version_edit *e, int level, file_meta *f)
{
    int rc = array_reserve(&e->added, &e->cap_added, (size_t)e->nadded + 1, sizeof *e->added);
    if (rc)
        return rc;
    file_ref(f);
    e->added[e->nadded++] = (edit_file){level, f, f->number};
    return PL_OK;
}

int edit_delete_file(version_edit *e, int level, uint64_t number)
{
    int rc = array_reserve(&e->deleted, &e->cap_deleted, (size_t)e->ndeleted + 1, sizeof *e->deleted);
    if (rc)
        return rc;
    e->deleted[e->ndeleted++] = (edit_file){level, NULL, number};
    return PL_OK;
}

/* ---- building versions ---- */

static int cmp_file_smallest(const void *a, const void *b)
{
    const file_meta *x = *(file_meta *const *)a, *y = *(file_meta *const *)b;
    return ikey_cmp(x->m.smallest, x->m.smallest_len, y->m.smallest, y->m.smallest_len);
}

/* L0's order, oldest first: by newest LSN, then by file number.  Flushes come in LSN order, so this is
 * their file number order; an ingest's tables, numbered while they were written, carry an LSN newer
 * than the flush that ran when the ingest was committed (ingest.h), and go after it. */
static int cmp_file_age(const void *a, const void *b)
{
    const file_meta *x = *(file_meta *const *)a, *y = *(file_meta *const *)b;
    if (x->m.max_lsn != y->m.max_lsn)
        return x->m.max_lsn < y->m.max_lsn ? -1 : 1;
    return x->number < y->number ? -1 : x->number > y->number;
}

/* base + edit -> a new version (files referenced). */
static int build_version(const version *base, const version_edit *e, version **out)
{
    version *v = version_new();
    if (!v)
        return PL_FAIL(PL_NOMEM, "out of memory");
    for (int l = 0; l < NUM_LEVELS; l++) {
        int cap = (base ? base->n[l] : 0);
        for (int i = 0; i < e->nadded; i++)
            cap += e->added[i].level == l;
        v->files[l] = malloc(sizeof(file_meta *) * (size_t)(cap ? cap : 1));
        if (!v->files[l]) {
            version_unref(v);
            return PL_FAIL(PL_NOMEM, "out of memory");
        }
        for (int i = 0; base && i < base->n[l]; i++) {
            file_meta *f = base->files[l][i];
            int deleted = 0;
            for (int d = 0; d < e->ndeleted && !deleted; d++)
                deleted = e->deleted[d].level == l && e->deleted[d].number == f->number;
            if (!deleted) {
                file_ref(f);
                v->files[l][v->n[l]++] = f;
            }
        }
        int sorted_before = v->n[l];
        for (int i = 0; i < e->nadded; i++)
            if (e->added[i].level == l) {
                file_ref(e->added[i].f);
                v->files[l][v->n[l]++] = e->added[i].f;
            }
        /* L0 by age (newest LSN, then file number), others by key.  A flush appends a table newer than
         * every other: already in order, so adding it costs O(1) beyond the copy (the seed's item 4). */
        int (*cmp)(const void *, const void *) = l == 0 ? cmp_file_age : cmp_file_smallest;
        int in_order = 1;
        for (int i = sorted_before > 0 ? sorted_before : 1; i < v->n[l] && in_order; i++)
            in_order = cmp(&v->files[l][i - 1], &v->files[l][i]) < 0;
        if (!in_order)
            qsort(v->files[l], (size_t)v->n[l], sizeof(file_meta *), cmp);
    }
    *out = v;
    return PL_OK;
}

/* Files removed by e: mark them so the last reader deletes them. */
static void mark_obsolete(const version *base, const version_edit *e)
{
    for (int d = 0; d < e->ndeleted; d++) {
        int l = e->deleted[d].level;
        for (int i = 0; base && i < base->n[l]; i++)
            if (base->files[l][i]->number == e->deleted[d].number)
                atomic_store(&base->files[l][i]->obsolete, 1);
    }
}

/* ---- the manifest ---- */

/* Append e to the live manifest as the next edit. */
static int append_edit(versions *vs, const version_edit *e)
{
    if (vs->manifest_failed)
        return PL_FAIL(PL_READONLY, "an earlier manifest write failed; reopen the database");
    int rc = manifest_append(vs->dir, vs->manifest_number, vs->manifest_fd, &vs->manifest_bytes, ++vs->edit_seq,
                             e);
    if (rc && rc != PL_NOMEM)
        vs->manifest_failed = 1; /* the record may be on disk in part: append nothing after it */
    return rc;
}

/* The whole state as one edit: every table of v, and the bookkeeping.  PL_OK or PL_NOMEM. */
static int snapshot_edit(const versions *vs, const version *v, version_edit *e)
{
    e->has_log_number = e->has_next_file = e->has_last_lsn = 1;
    e->log_number = vs->log_number;
    e->next_file = vs->next_file;
    e->last_lsn = vs->last_lsn;
    int rc = PL_OK;
    for (int l = 0; v && l < NUM_LEVELS && !rc; l++)
        for (int i = 0; i < v->n[l] && !rc; i++)
            rc = edit_add_file(e, l, v->files[l][i]);
    return rc;
}

/* Start a new manifest holding the whole current state and make CURRENT name it; the old one goes. */
static int new_manifest(versions *vs)
{
    if (vs->manifest_failed)
        return PL_FAIL(PL_READONLY, "an earlier manifest write failed; reopen the database");
    uint64_t number = vs->next_file++;
    version_edit e;
    edit_init(&e);
    int fd = -1, renamed = 0;
    uint64_t bytes = 0;
    /* A state with a table left out would lose it: the old manifest is deleted below. */
    int rc = snapshot_edit(vs, vs->current, &e);
    if (!rc)
        rc = manifest_create(vs->dir, number, vs->edit_seq + 1, &e, &fd, &bytes, &renamed);
    edit_free(&e);
    if (rc && !renamed)
        return rc; /* the old manifest is intact, still the live one, and its next edit follows on */
    vs->edit_seq++;
    /* CURRENT names the new manifest.  After a failure its directory entry may not be durable: both
     * manifests stay (either may be the one named after a crash), and the new one is used. */
    if (vs->manifest_fd >= 0)
        env_close(vs->manifest_fd);
    if (!rc && vs->manifest_number) {
        char *old = db_file_name(vs->dir, vs->manifest_number, FILE_MANIFEST);
        if (old)
            env_unlink(old);
        free(old);
    }
    vs->manifest_fd = fd;
    vs->manifest_number = number;
    vs->manifest_bytes = bytes;
    return rc;
}

int versions_open(versions *vs, const char *dir, cache *c, int create)
{
    memset(vs, 0, sizeof *vs);
    vs->manifest_fd = -1;
    vs->cache = c;
    vs->dir = strdup(dir);
    if (!vs->dir)
        return PL_FAIL(PL_NOMEM, "out of memory");
    manifest_state s = {0};
    uint64_t old_manifest = 0;
    int rc = manifest_load(dir, &s, &old_manifest);
    version_edit e;
    edit_init(&e);
    if (rc == PL_NOTFOUND) {
        int data_files = 0;
        count_data_files(dir, &data_files);
        if (!create || data_files) {
            rc = PL_FAIL(PL_CORRUPT, "%s/CURRENT is missing but the database has data files; "
                         "pylsm.repair() can rebuild it", dir);
            goto out;
        }
        vs->next_file = 1;
        vs->log_number = 0;
        vs->last_lsn = 0;
        rc = PL_OK;
    } else if (rc) {
        goto out;
    } else {
        vs->next_file = s.next_file;
        vs->log_number = s.log_number;
        vs->last_lsn = s.last_lsn;
        vs->manifest_number = old_manifest;
        if (vs->next_file <= old_manifest)
            vs->next_file = old_manifest + 1;
        uint64_t total = 0;
        for (int i = 0; i < s.n; i++)
            total += s.files[i].m.file_size;
        int lean = total > read_around_max();
        atomic_store_explicit(&vs->lean_tables, lean, memory_order_relaxed);
        for (int i = 0; i < s.n; i++) {
            file_meta *f;
            rc = file_meta_open(dir, s.files[i].number, &s.files[i].m, c, lean, &f);
            if (rc)
                goto out;
            memset(&s.files[i].m, 0, sizeof s.files[i].m); /* now owned by f */
            rc = edit_add_file(&e, s.files[i].level, f);
            file_unref(f);
            if (rc)
                goto out;
            if (f->number >= vs->next_file)
                vs->next_file = f->number + 1;
        }
    }
    rc = build_version(NULL, &e, &vs->current);
    if (!rc) {
        vs->current->log_number = vs->log_number;
        vs->current->last_lsn = vs->last_lsn;
        version_advise(vs, vs->current);
    }
out:
    edit_free(&e);
    manifest_state_free(&s);
    if (rc)
        versions_close(vs);
    return rc;
}

int versions_probe(const char *dir, uint64_t *number, uint64_t *size)
{
    *number = 0;
    *size = 0;
    int rc = read_current(dir, number);
    if (rc == PL_IOERR && pl_errno() == ENOENT)
        return PL_OK; /* no manifest yet */
    if (rc)
        return rc;
    char *path = db_file_name(dir, *number, FILE_MANIFEST);
    if (!path)
        return PL_FAIL(PL_NOMEM, "out of memory");
    struct stat st;
    if (stat(path, &st) != 0)
        rc = PL_IOFAIL(errno, "stat %s", path);
    else
        *size = (uint64_t)st.st_size;
    free(path);
    return rc;
}

int versions_start(versions *vs) { return new_manifest(vs); }

void versions_close(versions *vs)
{
    version_unref(vs->current);
    vs->current = NULL;
    if (vs->manifest_fd >= 0)
        env_close(vs->manifest_fd);
    vs->manifest_fd = -1;
    free(vs->dir);
    vs->dir = NULL;
}

uint64_t versions_new_file(versions *vs) { return vs->next_file++; }

int versions_apply(versions *vs, version_edit *e, version **out)
{
    if (e->has_log_number && e->log_number < vs->log_number)
        e->log_number = vs->log_number;
    if (!e->has_log_number) {
        e->has_log_number = 1;
        e->log_number = vs->log_number;
    }
    if (!e->has_last_lsn || e->last_lsn < vs->last_lsn) {
        e->has_last_lsn = 1;
        e->last_lsn = vs->last_lsn;
    }
    if (!e->has_next_file) {
        e->has_next_file = 1;
        e->next_file = vs->next_file;
    }
    version *v;
    int rc = build_version(vs->current, e, &v);
    if (rc)
        return rc;
    rc = append_edit(vs, e);
    if (rc) {
        version_unref(v);
        return rc;
    }
    vs->log_number = v->log_number = e->log_number;
    vs->last_lsn = v->last_lsn = e->last_lsn;
    mark_obsolete(vs->current, e);
    *out = v;
    return PL_OK;
}

void versions_install(versions *vs, version *v)
{
    version *old = vs->current;
    vs->current = v;
    version_advise(vs, v);
    version_unref(old);
    if (vs->manifest_bytes > manifest_roll_bytes)
        new_manifest(vs); /* a failure keeps the old, still valid manifest */
}

/* What the manifest says of a table must be what it holds: reads skip tables by their key range (and
 * L0 tables by their smallest LSN), compactions pick tables by it, and an entry above the manifest's
 * last LSN would be invisible and shadow the writes that reuse its LSN.  So: the first and last keys
 * are the manifest's smallest and largest, every LSN lies in [min_lsn, max_lsn], and max_lsn is at
 * most last_lsn. */
static int check_table_meta(const char *path, const manifest_file *f, uint64_t last_lsn)
{
    table *t;
    int rc = table_open(path, f->m.file_size, NULL, &t);
    if (rc)
        return rc;
    iter *it = table_iter(t);
    const char *k = NULL, *why = NULL;
    size_t kn = 0;
    if (it)
        iter_seek_first(it);
    if (it && iter_valid(it)) {
        iter_key(it, &k, &kn);
        if (kn != f->m.smallest_len || memcmp(k, f->m.smallest, kn) != 0)
            why = "its first key is not the manifest's smallest";
    }
    for (; it && !why && iter_valid(it); iter_next(it)) {
        iter_key(it, &k, &kn);
        uint64_t lsn = ikey_lsn(k, kn);
        if (lsn < f->m.min_lsn || lsn > f->m.max_lsn)
            why = "an LSN outside the manifest's range for the table";
    }
    if (it && !why && !iter_status(it) && (!k || kn != f->m.largest_len || memcmp(k, f->m.largest, kn) != 0))
        why = "its last key is not the manifest's largest";
    if (!why && f->m.max_lsn > last_lsn)
        why = "LSNs above the manifest's last LSN";
    rc = !it ? PL_FAIL(PL_NOMEM, "out of memory") : iter_status(it);
    if (!rc && why)
        rc = PL_FAIL(PL_CORRUPT, "%s: the manifest does not describe the table: %s", path, why);
    iter_destroy(it);
    table_close(t);
    return rc;
}

int versions_verify(const char *dir, uint64_t *log_number, uint64_t *last_lsn)
{
    manifest_state s = {0};
    uint64_t number;
    int rc = manifest_load(dir, &s, &number);
    *log_number = s.log_number;
    *last_lsn = s.last_lsn;
    if (rc == PL_NOTFOUND)
        rc = PL_OK; /* nothing was ever flushed */
    for (int i = 0; !rc && i < s.n; i++)
        progress_expect(s.files[i].m.file_size);
    for (int i = 0; !rc && i < s.n; i++) {
        char *p = db_file_name(dir, s.files[i].number, FILE_TABLE);
        rc = p ? table_verify(p, s.files[i].m.file_size) : PL_FAIL(PL_NOMEM, "out of memory");
        if (!rc)
            rc = check_table_meta(p, &s.files[i], s.last_lsn);
        free(p);
        if (!rc)
            progress_done(s.files[i].m.file_size);
    }
    manifest_state_free(&s);
    return rc;
}
