/* version.c -- versions, version edits and the manifest; see version.h and docs/format.md. */
#include "version.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "batch.h"
#include "coding.h"
#include "concat.h"
#include "env.h"
#include "filename.h"
#include "ikey.h"
#include "buf.h"
#include "memtable.h"
#include "progress.h"
#include "status.h"
#include "wal.h"

uint64_t manifest_roll_bytes = UINT64_C(64) << 20;

/* Edit field tags (docs/format.md, "Manifest"). */
enum { TAG_LOG_NUMBER = 1, TAG_NEXT_FILE = 2, TAG_LAST_LSN = 3, TAG_ADD = 4, TAG_DELETE = 5 };

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

int file_meta_open(const char *dir, uint64_t number, const table_meta *m, cache *c, file_meta **out)
{
    file_meta *f = calloc(1, sizeof *f);
    if (!f)
        return PL_FAIL(PL_NOMEM, "out of memory");
    f->number = number;
    f->m = *m;
    atomic_init(&f->refs, 1);
    f->path = db_file_name(dir, number, FILE_TABLE);
    int rc = f->path ? table_open(f->path, m->file_size, c, &f->t) : PL_FAIL(PL_NOMEM, "out of memory");
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
    /* L0 newest first: a newer table's version of the key shadows an older one's. */
    for (int i = v->n[0] - 1; i >= 0; i--) {
        file_meta *f = v->files[0][i];
        if (f->m.min_lsn > snap || !ukey_in_file(f, ukey, klen))
            continue;
        int rc = table_get(f->t, ukey, klen, snap, out,
                           flags | (last_level == 0 && last == i ? TABLE_GET_NO_FILTER : 0), result);
        if (rc || *result != LOOKUP_ABSENT)
            return rc;
    }
    for (int l = 1; l <= last_level; l++) {
        int i = l == last_level ? last : find_file(v->files[l], v->n[l], ukey, klen);
        if (i >= v->n[l] || !ukey_in_file(v->files[l][i], ukey, klen))
            continue;
        int rc = table_get(v->files[l][i]->t, ukey, klen, snap, out,
                           flags | (l == last_level ? TABLE_GET_NO_FILTER : 0), result);
        if (rc || *result != LOOKUP_ABSENT)
            return rc;
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

/* The n tables at files (sorted, not overlapping) as one iterator; NULL when out of memory. */
static iter *level_iter_new(file_meta **files, int n)
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
        iter *it = level_iter_new(&v->files[0][i], 1);
        if (!it)
            goto nomem;
        its[k++] = it;
    }
    for (int l = 1; l < NUM_LEVELS; l++) {
        if (!v->n[l])
            continue;
        iter *it = level_iter_new(v->files[l], v->n[l]);
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

/* Encode e as a manifest record payload: u32 1 then tagged fields.  The WAL framing reads no count;
 * the u32 1 stays for earlier versions, which read it as the LSNs the record takes (docs/format.md). */
static int edit_encode(const version_edit *e, pl_buf *out)
{
    size_t cap = 64;
    for (int i = 0; i < e->nadded; i++)
        cap += 80 + e->added[i].f->m.smallest_len + e->added[i].f->m.largest_len;
    cap += (size_t)e->ndeleted * 24;
    int rc = buf_reserve(out, cap);
    if (rc)
        return rc;
    char *p = out->data;
    put_u32(p, 1);
    p += 4;
    if (e->has_log_number) {
        *p++ = TAG_LOG_NUMBER;
        p = put_varint64(p, e->log_number);
    }
    if (e->has_next_file) {
        *p++ = TAG_NEXT_FILE;
        p = put_varint64(p, e->next_file);
    }
    if (e->has_last_lsn) {
        *p++ = TAG_LAST_LSN;
        p = put_varint64(p, e->last_lsn);
    }
    for (int i = 0; i < e->ndeleted; i++) {
        *p++ = TAG_DELETE;
        p = put_varint64(p, (uint64_t)e->deleted[i].level);
        p = put_varint64(p, e->deleted[i].number);
    }
    for (int i = 0; i < e->nadded; i++) {
        const file_meta *f = e->added[i].f;
        *p++ = TAG_ADD;
        p = put_varint64(p, (uint64_t)e->added[i].level);
        p = put_varint64(p, f->number);
        p = put_varint64(p, f->m.file_size);
        p = put_varint64(p, f->m.entries);
        p = put_varint64(p, f->m.deletes);
        p = put_varint64(p, f->m.min_lsn);
        p = put_varint64(p, f->m.max_lsn);
        p = put_varint64(p, f->m.smallest_len);
        memcpy(p, f->m.smallest, f->m.smallest_len);
        p += f->m.smallest_len;
        p = put_varint64(p, f->m.largest_len);
        memcpy(p, f->m.largest, f->m.largest_len);
        p += f->m.largest_len;
    }
    out->len = (size_t)(p - out->data);
    return PL_OK;
}

/* A table named by a manifest, before it is opened. */
typedef struct {
    int level;
    uint64_t number;
    table_meta m;
} manifest_file;

typedef struct {
    const char *path;
    manifest_file *files;
    int n;
    size_t cap;
    int has_log_number, has_next_file, has_last_lsn;
    uint64_t log_number, next_file, last_lsn;
} manifest_state;

static const char *get_key(const char *p, const char *end, char **key, size_t *len)
{
    uint64_t n;
    p = get_varint64(p, end, &n);
    if (!p || n < IKEY_TRAILER || n > (uint64_t)(end - p))
        return NULL;
    *key = malloc(n);
    if (!*key)
        return NULL;
    memcpy(*key, p, n);
    *len = n;
    return p + n;
}

static void state_remove(manifest_state *s, int level, uint64_t number)
{
    for (int i = 0; i < s->n; i++)
        if (s->files[i].number == number && s->files[i].level == level) {
            table_meta_free(&s->files[i].m);
            s->files[i] = s->files[--s->n];
            return;
        }
}

static int apply_manifest_record(void *ctx, uint64_t seq, const char *payload, size_t len)
{
    manifest_state *s = ctx;
    const char *p = payload + 4, *end = payload + len; /* past the u32 1 (len >= WAL_PAYLOAD_MIN) */
    while (p < end) {
        int tag = (unsigned char)*p++;
        uint64_t a, b;
        switch (tag) {
        case TAG_LOG_NUMBER:
            if (!(p = get_varint64(p, end, &s->log_number)))
                goto bad;
            s->has_log_number = 1;
            break;
        case TAG_NEXT_FILE:
            if (!(p = get_varint64(p, end, &s->next_file)))
                goto bad;
            s->has_next_file = 1;
            break;
        case TAG_LAST_LSN:
            if (!(p = get_varint64(p, end, &s->last_lsn)))
                goto bad;
            s->has_last_lsn = 1;
            break;
        case TAG_DELETE:
            if (!(p = get_varint64(p, end, &a)) || !(p = get_varint64(p, end, &b)) || a >= NUM_LEVELS)
                goto bad;
            state_remove(s, (int)a, b);
            break;
        case TAG_ADD: {
            int rc = array_reserve(&s->files, &s->cap, (size_t)s->n + 1, sizeof *s->files);
            if (rc)
                return rc;
            manifest_file *f = &s->files[s->n];
            memset(f, 0, sizeof *f);
            if (!(p = get_varint64(p, end, &a)) || a >= NUM_LEVELS)
                goto bad;
            f->level = (int)a;
            if (!(p = get_varint64(p, end, &f->number)) || !(p = get_varint64(p, end, &f->m.file_size)) ||
                !(p = get_varint64(p, end, &f->m.entries)) || !(p = get_varint64(p, end, &f->m.deletes)) ||
                !(p = get_varint64(p, end, &f->m.min_lsn)) || !(p = get_varint64(p, end, &f->m.max_lsn)))
                goto bad;
            if (!(p = get_key(p, end, &f->m.smallest, &f->m.smallest_len)))
                goto bad;
            if (!(p = get_key(p, end, &f->m.largest, &f->m.largest_len))) {
                table_meta_free(&f->m);
                goto bad;
            }
            s->n++;
            break;
        }
        default:
            goto bad;
        }
    }
    return PL_OK;
bad:
    return PL_FAIL(PL_CORRUPT, "%s: malformed version edit %" PRIu64, s->path, seq);
}

/* Read CURRENT and the manifest it names into s.  PL_NOTFOUND when there is no CURRENT. */
static int load_manifest(const char *dir, manifest_state *s, uint64_t *manifest_number)
{
    char *cur = db_file_name(dir, 0, FILE_CURRENT);
    if (!cur)
        return PL_FAIL(PL_NOMEM, "out of memory");
    int fd, rc = env_open(cur, O_RDONLY, &fd);
    free(cur);
    if (rc)
        return pl_errno() == ENOENT ? PL_NOTFOUND : rc; /* only a missing CURRENT means "no manifest" */
    env_close(fd);
    rc = read_current(dir, manifest_number);
    if (rc)
        return rc;
    char *path = db_file_name(dir, *manifest_number, FILE_MANIFEST);
    if (!path)
        return PL_FAIL(PL_NOMEM, "out of memory");
    s->path = path;
    wal_replay_result res = {0};
    /* The manifest's tail may be an edit torn by a crash before it was acknowledged (fsynced). */
    rc = wal_replay(path, WAL_TOLERATE_TAIL, 1, 0, NULL, apply_manifest_record, s, &res);
    if (!rc && (!s->has_next_file || !s->has_log_number || !s->has_last_lsn))
        rc = PL_FAIL(PL_CORRUPT, "%s: incomplete manifest at offset %" PRIu64, path, res.valid_end);
    free(path);
    s->path = NULL;
    return rc;
}

static void state_free(manifest_state *s)
{
    for (int i = 0; i < s->n; i++)
        table_meta_free(&s->files[i].m);
    free(s->files);
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

static int manifest_append(versions *vs, const version_edit *e)
{
    if (vs->manifest_failed)
        return PL_FAIL(PL_READONLY, "an earlier manifest write failed; reopen the database");
    pl_buf payload = {0}, rec = {0};
    int rc = edit_encode(e, &payload);
    if (!rc)
        rc = buf_reserve(&rec, WAL_REC_HEADER + payload.len);
    if (!rc) {
        rec.len = wal_encode(rec.data, 0, ++vs->edit_seq, 0, payload.data, payload.len);
        char *path = db_file_name(vs->dir, vs->manifest_number, FILE_MANIFEST);
        rc = path ? env_write(vs->manifest_fd, rec.data, rec.len, path) : PL_FAIL(PL_NOMEM, "out of memory");
        if (!rc) {
            env_kill_point("manifest_append");
            rc = env_sync(vs->manifest_fd, vs->manifest_bytes + rec.len, path);
        }
        if (!rc)
            vs->manifest_bytes += rec.len;
        else
            vs->manifest_failed = 1; /* the record may be on disk in part: append nothing after it */
        free(path);
    }
    pl_buf_free(&payload);
    pl_buf_free(&rec);
    return rc;
}

static void snapshot_edit(const versions *vs, const version *v, version_edit *e)
{
    e->has_log_number = e->has_next_file = e->has_last_lsn = 1;
    e->log_number = vs->log_number;
    e->next_file = vs->next_file;
    e->last_lsn = vs->last_lsn;
    for (int l = 0; v && l < NUM_LEVELS; l++)
        for (int i = 0; i < v->n[l]; i++)
            edit_add_file(e, l, v->files[l][i]);
}

/* For repair (a closed database): MANIFEST-number holding e alone, fsynced with its directory, then
 * CURRENT pointed at it.  On failure before CURRENT is replaced the new manifest is removed. */
int versions_write_manifest(const char *dir, uint64_t number, const version_edit *e)
{
    if (!e->has_log_number || !e->has_next_file || !e->has_last_lsn || e->next_file <= number)
        return PL_FAIL(PL_INVALID, "a whole-state edit needs log number, next file and last LSN");
    char *path = db_file_name(dir, number, FILE_MANIFEST);
    pl_buf payload = {0}, rec = {0};
    int fd = -1, rc = path ? edit_encode(e, &payload) : PL_FAIL(PL_NOMEM, "out of memory");
    if (!rc)
        rc = buf_reserve(&rec, WAL_FILE_HEADER + WAL_REC_HEADER + payload.len);
    if (!rc) {
        wal_encode_file_header(rec.data, 0);
        rec.len = WAL_FILE_HEADER + wal_encode(rec.data + WAL_FILE_HEADER, 0, 1, 0, payload.data, payload.len);
        rc = env_open(path, O_WRONLY | O_CREAT | O_TRUNC, &fd);
    }
    if (!rc)
        rc = env_write(fd, rec.data, rec.len, path);
    if (!rc)
        rc = env_sync(fd, rec.len, path);
    if (fd >= 0)
        env_close(fd);
    if (!rc)
        rc = env_sync_dir(dir);
    if (rc && fd >= 0)
        env_unlink(path);
    int renamed;
    if (!rc)
        rc = set_current(dir, number, &renamed);
    pl_buf_free(&payload);
    pl_buf_free(&rec);
    free(path);
    return rc;
}

/* Start a new manifest holding the whole current state and make CURRENT name it. */
static int new_manifest(versions *vs)
{
    if (vs->manifest_failed)
        return PL_FAIL(PL_READONLY, "an earlier manifest write failed; reopen the database");
    uint64_t number = vs->next_file++;
    char *path = db_file_name(vs->dir, number, FILE_MANIFEST);
    if (!path)
        return PL_FAIL(PL_NOMEM, "out of memory");
    int fd, rc = env_open(path, O_WRONLY | O_CREAT | O_TRUNC, &fd);
    if (rc) {
        free(path);
        return rc;
    }
    char hdr[WAL_FILE_HEADER];
    wal_encode_file_header(hdr, 0);
    rc = env_write(fd, hdr, sizeof hdr, path);
    int old_fd = vs->manifest_fd;
    uint64_t old_number = vs->manifest_number, old_bytes = vs->manifest_bytes;
    vs->manifest_fd = fd;
    vs->manifest_number = number;
    vs->manifest_bytes = sizeof hdr;
    version_edit e;
    edit_init(&e);
    if (!rc) {
        snapshot_edit(vs, vs->current, &e);
        rc = manifest_append(vs, &e);
    }
    edit_free(&e);
    /* The new manifest's name is durable before CURRENT may name it. */
    if (!rc)
        rc = env_sync_dir(vs->dir);
    int renamed = 0;
    if (!rc)
        rc = set_current(vs->dir, number, &renamed);
    if (rc && renamed) {
        /* CURRENT names the new manifest but its directory entry may not be durable: keep both
         * manifests (either may be the one named after a crash) and go on with the new one. */
        if (old_fd >= 0)
            env_close(old_fd);
    } else if (rc) {
        env_close(fd);
        env_unlink(path);
        vs->manifest_fd = old_fd;
        vs->manifest_number = old_number;
        vs->manifest_bytes = old_bytes;
        vs->manifest_failed = 0; /* the old manifest is intact */
    } else {
        if (old_fd >= 0)
            env_close(old_fd);
        if (old_number) {
            char *old = db_file_name(vs->dir, old_number, FILE_MANIFEST);
            if (old)
                env_unlink(old);
            free(old);
        }
    }
    free(path);
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
    int rc = load_manifest(dir, &s, &old_manifest);
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
        for (int i = 0; i < s.n; i++) {
            file_meta *f;
            rc = file_meta_open(dir, s.files[i].number, &s.files[i].m, c, &f);
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
    }
out:
    edit_free(&e);
    state_free(&s);
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
    rc = manifest_append(vs, e);
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
    int rc = load_manifest(dir, &s, &number);
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
    state_free(&s);
    return rc;
}
