/* dbiter.c -- the database iterator, and pl_iter, the public handle that runs it over a pinned view of
 * the database; see dbiter.h.  Follows LevelDB's DBIter (db/db_iter.cc). */
#include "dbiter.h"

#include "buf.h"

#include <stdlib.h>
#include <string.h>

#include "coding.h"
#include "db.h"
#include "env.h"
#include "ikey.h"
#include "memtable.h"
#include "merge.h"
#include "pylsm.h"
#include "status.h"
#include "version.h"

enum { FORWARD, REVERSE };

/*
 * Position invariants while valid:
 *   FORWARD: `in` is at the newest visible version (a put) of the current user key; key/value come
 *            from `in`.
 *   REVERSE: `in` is at the last entry before every entry of the current user key (or invalid when
 *            there is none); the current key/value are copies in `saved_key` / `saved_val`.
 */
typedef struct {
    iter base;
    iter *in;
    uint64_t snap;
    int dir;
    int valid;
    int rc;          /* our own sticky error (PL_CORRUPT, PL_NOMEM), PL_OK otherwise */
    pl_buf saved_key; /* REVERSE: current user key; FORWARD: the key being skipped */
    pl_buf saved_val; /* REVERSE: current value */
    pl_buf seek_key;  /* scratch for internal seek keys */
    pl_buf lo, hi;
    int has_lo, has_hi;
    /* REVERSE: find_prev_user_entry stopped at the entry of `in` decoded here (an older user key than
     * the current one), and `in` has not moved since: the next step back starts from it without
     * decoding it again.  Cleared by every other move. */
    int pend;
    const char *fkey; /* FORWARD, valid: the current user key (in `in`'s key, good while `in` stays) */
    size_t fklen;
    const char *pend_uk;
    size_t pend_ul;
    uint64_t pend_lsn;
    int pend_kind;
} db_iter;

/* Copy n bytes into b (data is never left NULL, even for n == 0). */
static inline int keep(db_iter *d, pl_buf *b, const char *p, size_t n, size_t extra)
{
    size_t need = n + extra ? n + extra : 1;
    if (need > b->cap && buf_reserve(b, need)) {
        d->rc = PL_NOMEM;
        d->valid = 0;
        return 0;
    }
    buf_copy(b->data, p, n);
    b->len = n;
    return 1;
}

static void clear_saved(db_iter *d)
{
    d->saved_key.len = 0;
    d->saved_val.len = 0;
}

/* Decode the internal iterator's current key; on a malformed key record PL_CORRUPT and return 0. */
static int parse(db_iter *d, const char **uk, size_t *ul, uint64_t *lsn, int *kind)
{
    const char *k;
    size_t n;
    iter_key(d->in, &k, &n);
    if (n < IKEY_TRAILER) {
        d->rc = PL_FAIL(PL_CORRUPT, "internal key of %zu bytes in the database iterator", n);
        d->valid = 0;
        return 0;
    }
    uint64_t t = ikey_trailer(k, n);
    *kind = (int)(t & 0xff);
    if (*kind != KIND_PUT && *kind != KIND_DELETE) {
        d->rc = PL_FAIL(PL_CORRUPT, "internal key of unknown kind %d in the database iterator", *kind);
        d->valid = 0;
        return 0;
    }
    *uk = k;
    *ul = n - IKEY_TRAILER;
    *lsn = t >> 8;
    return 1;
}

static inline int below_lo(const db_iter *d, const char *uk, size_t ul)
{
    return d->has_lo && ukey_cmp(uk, ul, d->lo.data, d->lo.len) < 0;
}

static inline int at_or_above_hi(const db_iter *d, const char *uk, size_t ul)
{
    return d->has_hi && ukey_cmp(uk, ul, d->hi.data, d->hi.len) >= 0;
}

/* FORWARD: from the current entry of `in` on, stop at the first visible put whose user key is not
 * hidden (by a newer delete, or by being <= saved_key when skipping). */
static void find_next_user_entry(db_iter *d, int skipping)
{
    const char *uk;
    size_t ul;
    uint64_t lsn;
    int kind;
    while (iter_valid(d->in)) {
        if (!parse(d, &uk, &ul, &lsn, &kind))
            return;
        if (at_or_above_hi(d, uk, ul))
            break;
        if (lsn <= d->snap) {
            if (kind == KIND_DELETE) {
                /* Hide every older version of this key. */
                if (!keep(d, &d->saved_key, uk, ul, 0))
                    return;
                skipping = 1;
            } else if (!skipping || ukey_cmp(uk, ul, d->saved_key.data, d->saved_key.len) > 0) {
                d->valid = 1;
                d->fkey = uk;
                d->fklen = ul;
                d->saved_key.len = 0;
                return;
            }
        }
        iter_next(d->in);
    }
    d->valid = 0;
    d->saved_key.len = 0;
}

/* REVERSE: from the current entry of `in` backward, find the previous user key whose newest visible
 * version is a put; leave `in` just before that key's entries and copy key and value. */
static void find_prev_user_entry(db_iter *d)
{
    const char *uk;
    size_t ul;
    uint64_t lsn;
    int kind;
    int found = KIND_DELETE; /* kind of the newest visible version of the candidate in saved_key */
    int pend = d->pend;
    d->pend = 0;
    while (pend || iter_valid(d->in)) {
        if (pend) { /* decoded by the step before, `in` unmoved since */
            uk = d->pend_uk;
            ul = d->pend_ul;
            lsn = d->pend_lsn;
            kind = d->pend_kind;
            pend = 0;
        } else if (!parse(d, &uk, &ul, &lsn, &kind)) {
            return;
        }
        if (below_lo(d, uk, ul))
            break;
        if (lsn <= d->snap) {
            if (found != KIND_DELETE && ukey_cmp(uk, ul, d->saved_key.data, d->saved_key.len) < 0) {
                /* an older key: the candidate is final; the next step back starts here */
                d->pend = 1;
                d->pend_uk = uk;
                d->pend_ul = ul;
                d->pend_lsn = lsn;
                d->pend_kind = kind;
                break;
            }
            found = kind;
            if (kind == KIND_DELETE) {
                clear_saved(d);
            } else {
                const char *v;
                size_t vn;
                iter_value(d->in, &v, &vn);
                if (!keep(d, &d->saved_key, uk, ul, 0) || !keep(d, &d->saved_val, v, vn, 0))
                    return;
            }
        }
        iter_prev(d->in);
    }
    /* An error below would hide newer versions of the candidate: don't show it. */
    if (found == KIND_DELETE || (!d->pend && !iter_valid(d->in) && iter_status(d->in) != PL_OK)) {
        d->pend = 0;
        d->valid = 0;
        clear_saved(d);
        d->dir = FORWARD;
    } else {
        d->valid = 1;
    }
}

/* Seek `in` to the first entry of user key k (the newest version visible at snap or newer). */
static int seek_internal(db_iter *d, const char *k, size_t n, uint64_t lsn)
{
    if (!keep(d, &d->seek_key, k, n, IKEY_TRAILER))
        return 0;
    put_u64(d->seek_key.data + n, ikey_pack(lsn, KIND_SEEK));
    iter_seek(d->in, d->seek_key.data, n + IKEY_TRAILER);
    return 1;
}

static void di_seek(iter *it, const char *k, size_t n)
{
    db_iter *d = (db_iter *)it;
    d->valid = 0;
    d->pend = 0;
    if (d->rc)
        return;
    if (d->has_lo && ukey_cmp(k, n, d->lo.data, d->lo.len) < 0) {
        k = d->lo.data;
        n = d->lo.len;
    }
    if (at_or_above_hi(d, k, n))
        return;
    /* k may point at our own key (saved_key): copy it before anything else changes. */
    if (!seek_internal(d, k, n, d->snap))
        return;
    d->dir = FORWARD;
    clear_saved(d);
    find_next_user_entry(d, 0);
}

static void di_seek_first(iter *it)
{
    db_iter *d = (db_iter *)it;
    d->pend = 0;
    if (d->has_lo) {
        di_seek(it, d->lo.data, d->lo.len);
        return;
    }
    d->valid = 0;
    if (d->rc)
        return;
    d->dir = FORWARD;
    clear_saved(d);
    iter_seek_first(d->in);
    find_next_user_entry(d, 0);
}

static void di_seek_last(iter *it)
{
    db_iter *d = (db_iter *)it;
    d->valid = 0;
    d->pend = 0;
    if (d->rc)
        return;
    d->dir = REVERSE;
    clear_saved(d);
    if (d->has_hi) {
        /* The first entry with user key >= hi, then one back. */
        if (!seek_internal(d, d->hi.data, d->hi.len, LSN_MAX))
            return;
        if (iter_valid(d->in))
            iter_prev(d->in);
        else if (iter_status(d->in) == PL_OK)
            iter_seek_last(d->in);
        else
            return;
    } else {
        iter_seek_last(d->in);
    }
    find_prev_user_entry(d);
}

static void di_next(iter *it)
{
    db_iter *d = (db_iter *)it;
    d->pend = 0;
    if (d->dir == REVERSE) {
        /* `in` is before the current key's entries; step onto the first of them.  saved_key holds the
         * current key, so the skip below moves past all its versions. */
        d->dir = FORWARD;
        if (iter_valid(d->in)) {
            iter_next(d->in);
        } else {
            if (iter_status(d->in) != PL_OK) {
                d->valid = 0;
                return;
            }
            iter_seek_first(d->in);
        }
    } else {
        if (!keep(d, &d->saved_key, d->fkey, d->fklen, 0))
            return;
        iter_next(d->in);
    }
    d->saved_val.len = 0;
    find_next_user_entry(d, 1);
}

static void di_prev(iter *it)
{
    db_iter *d = (db_iter *)it;
    if (d->dir == FORWARD) {
        /* `in` is at the current key's entry; move before all its entries. */
        d->pend = 0;
        if (!keep(d, &d->saved_key, d->fkey, d->fklen, 0))
            return;
        for (;;) {
            iter_prev(d->in);
            if (!iter_valid(d->in)) {
                d->valid = 0;
                clear_saved(d);
                return;
            }
            const char *uk;
            size_t ul;
            uint64_t lsn;
            int kind;
            if (!parse(d, &uk, &ul, &lsn, &kind))
                return;
            if (ukey_cmp(uk, ul, d->saved_key.data, d->saved_key.len) < 0)
                break;
        }
        d->dir = REVERSE;
    }
    find_prev_user_entry(d);
}

static int di_valid(const iter *it)
{
    const db_iter *d = (const db_iter *)it;
    return d->valid && d->rc == PL_OK;
}

static void di_key(const iter *it, const char **k, size_t *n)
{
    const db_iter *d = (const db_iter *)it;
    if (d->dir == FORWARD) {
        *k = d->fkey;
        *n = d->fklen;
    } else {
        *k = d->saved_key.data;
        *n = d->saved_key.len;
    }
}

static void di_value(const iter *it, const char **v, size_t *n)
{
    const db_iter *d = (const db_iter *)it;
    if (d->dir == FORWARD) {
        iter_value(d->in, v, n);
    } else {
        *v = d->saved_val.data;
        *n = d->saved_val.len;
    }
}

static int di_status(const iter *it)
{
    const db_iter *d = (const db_iter *)it;
    return d->rc != PL_OK ? d->rc : iter_status(d->in);
}

static void di_destroy(iter *it)
{
    db_iter *d = (db_iter *)it;
    iter_destroy(d->in);
    free(d->saved_key.data);
    free(d->saved_val.data);
    free(d->seek_key.data);
    free(d->lo.data);
    free(d->hi.data);
    free(d);
}

static const struct iter_ops db_iter_ops = {di_seek, di_seek_first, di_seek_last, di_next, di_prev,
                                            di_valid, di_key, di_value, di_status, di_destroy};

iter *db_iter_new(iter *internal, uint64_t snap_lsn)
{
    if (!internal) {
        PL_FAIL(PL_NOMEM, "out of memory creating a database iterator");
        return NULL;
    }
    db_iter *d = calloc(1, sizeof *d);
    if (!d) {
        iter_destroy(internal);
        PL_FAIL(PL_NOMEM, "out of memory creating a database iterator");
        return NULL;
    }
    d->base.ops = &db_iter_ops;
    d->in = internal;
    d->snap = snap_lsn;
    d->dir = FORWARD;
    return &d->base;
}

void db_iter_set_bounds(iter *it, const char *lo, size_t lolen, int has_lo, const char *hi, size_t hilen,
                        int has_hi)
{
    db_iter *d = (db_iter *)it;
    d->has_lo = d->has_hi = 0;
    if (has_lo) {
        if (!keep(d, &d->lo, lo, lolen, 0))
            return;
        d->has_lo = 1;
    }
    if (has_hi) {
        if (!keep(d, &d->hi, hi, hilen, 0))
            return;
        d->has_hi = 1;
    }
}

/* ---- pl_iter: this iterator over a pinned view of the database (pylsm.h) ---- */

struct pl_iter {
    pl_db *db;
    pl_snapshot *snap; /* registered, so compaction keeps every version this iterator can see */
    iter *it;          /* a db_iter over memtables and tables */
    size_t chunk;      /* entries the next pl_iter_read_chunk copies; 0: the first chunk */
};

/* A scan's chunks (pl_iter_read_chunk): ITER_CHUNK_FIRST entries, doubling to ITER_CHUNK_MAX, each
 * cut at ITER_CHUNK_BYTES; a buffer grown past ITER_CHUNK_KEEP by a large entry is given back (by
 * pl_iter_copy too). */
#define ITER_CHUNK_FIRST 16
#define ITER_CHUNK_MAX 1024
#define ITER_CHUNK_BYTES (1u << 20)
#define ITER_CHUNK_KEEP (4u << 20)

int pl_iter_new(pl_db *db, const pl_snapshot *snap, pl_iter **out)
{
    int rc = pl_db_check(db);
    if (rc)
        return rc;
    pl_iter *pi = calloc(1, sizeof *pi);
    if (!pi)
        return PL_FAIL(PL_NOMEM, "out of memory");
    /* Registered (an older snapshot's view at its LSN), so compaction keeps what it can see. */
    rc = db_snapshot_new(db, snap, &pi->snap);
    if (rc) {
        free(pi);
        return rc;
    }
    /* Take references under the database's lock; build the memtable iterators (which sort the newest
     * entries) after it, so that readers and writers waiting for the lock are not held up by the sort. */
    db_view view;
    db_view_take(db, pi->snap, &view);
    memtable *mem = view.mem, *imm = view.imm;
    version *v = view.v;
    env_test_hook("iter_refs_taken");
    int cap = 2 + v->n[0] + NUM_LEVELS, n = 0;
    iter **its = malloc(sizeof(iter *) * (size_t)cap);
    if (its) {
        /* An empty memtable adds nothing: an entry the snapshot sees was added before the snapshot's LSN
         * was published, so its count shows it.  Without it a settled database's iterator is its one
         * level's, with no merging iterator above (merge_iter_new of one child returns the child). */
        int mrc = PL_OK;
        if (memtable_count(mem) > 0)
            mrc = memtable_iter(mem, &its[n++]);
        if (!mrc && imm && memtable_count(imm) > 0)
            mrc = memtable_iter(imm, &its[n++]);
        int k = 0;
        if (!mrc)
            mrc = version_iters(v, its + n, &k);
        if (mrc) {
            while (n > 0)
                if (its[--n])
                    iter_destroy(its[n]);
            free(its);
            its = NULL;
        } else {
            n += k;
        }
    }
    db_view_release(&view);
    if (its) {
        pi->it = db_iter_new(merge_iter_new(its, n), view.lsn);
        free(its);
    }
    if (!pi->it) {
        pl_snapshot_release(pi->snap);
        free(pi);
        return PL_FAIL(PL_NOMEM, "out of memory for an iterator");
    }
    pi->db = db;
    db_ref(db);
    *out = pi;
    return PL_OK;
}

void pl_iter_free(pl_iter *pi)
{
    if (!pi)
        return;
    if (db_forked(pi->db))
        return; /* in a forked child: its tables and cache locks may be held by parent threads */
    iter_destroy(pi->it);
    pl_snapshot_release(pi->snap);
    db_unref(pi->db);
    free(pi);
}

void pl_iter_set_bounds(pl_iter *pi, const void *lo, size_t lolen, int has_lo, const void *hi, size_t hilen,
                        int has_hi)
{
    db_iter_set_bounds(pi->it, lo, lolen, has_lo, hi, hilen, has_hi);
}

int pl_iter_seek(pl_iter *pi, const void *key, size_t klen)
{
    pi->chunk = 0;
    iter_seek(pi->it, key, klen);
    return iter_status(pi->it);
}
int pl_iter_seek_first(pl_iter *pi)
{
    pi->chunk = 0;
    iter_seek_first(pi->it);
    return iter_status(pi->it);
}
int pl_iter_seek_last(pl_iter *pi)
{
    pi->chunk = 0;
    iter_seek_last(pi->it);
    return iter_status(pi->it);
}
int pl_iter_next(pl_iter *pi)
{
    if (iter_valid(pi->it))
        iter_next(pi->it);
    return iter_status(pi->it);
}
int pl_iter_prev(pl_iter *pi)
{
    if (iter_valid(pi->it))
        iter_prev(pi->it);
    return iter_status(pi->it);
}
int pl_iter_valid(const pl_iter *pi) { return iter_valid(pi->it); }
void pl_iter_key(const pl_iter *pi, const char **k, size_t *klen) { iter_key(pi->it, k, klen); }
void pl_iter_value(const pl_iter *pi, const char **v, size_t *vlen) { iter_value(pi->it, v, vlen); }
int pl_iter_status(const pl_iter *pi) { return iter_status(pi->it); }

/* Append the entry under it to out as pl_iter_read writes one (of its parts, those in want).  Inlined
 * into pl_iter_read's loop, as it was written there (a call per entry scanned cost 20 instructions). */
static inline __attribute__((always_inline)) int append_entry(const iter *it, int want, pl_buf *out)
{
    const char *k = NULL, *v = NULL;
    size_t kn = 0, vn = 0;
    if (want & PL_WANT_KEYS)
        iter_key(it, &k, &kn);
    if (want & PL_WANT_VALUES)
        iter_value(it, &v, &vn);
    size_t need = out->len + 16 + kn + vn;
    int rc = buf_reserve(out, need);
    if (rc)
        return rc;
    char *p = out->data + out->len;
    put_u64(p, kn);
    put_u64(p + 8, vn);
    buf_copy(p + 16, k, kn);
    buf_copy(p + 16 + kn, v, vn);
    out->len = need;
    return PL_OK;
}

int pl_iter_read(pl_iter *pi, int reverse, int want, size_t max_entries, size_t max_bytes, pl_buf *out,
                 size_t *n)
{
    *n = 0;
    out->len = 0;
    while (*n < max_entries && out->len < max_bytes && iter_valid(pi->it)) {
        int rc = append_entry(pi->it, want, out);
        if (rc)
            return rc;
        (*n)++;
        if (reverse)
            iter_prev(pi->it);
        else
            iter_next(pi->it);
    }
    return iter_status(pi->it);
}

int pl_iter_copy(const pl_iter *pi, pl_buf *out)
{
    if (out->cap > ITER_CHUNK_KEEP)
        pl_buf_free(out);
    out->len = 0;
    return append_entry(pi->it, PL_WANT_ITEMS, out);
}

int pl_iter_read_chunk(pl_iter *pi, int reverse, int want, pl_buf *out, size_t *n)
{
    if (out->cap > ITER_CHUNK_KEEP)
        pl_buf_free(out);
    size_t chunk = pi->chunk ? pi->chunk : ITER_CHUNK_FIRST;
    pi->chunk = chunk < ITER_CHUNK_MAX ? 2 * chunk : ITER_CHUNK_MAX;
    return pl_iter_read(pi, reverse, want, chunk, ITER_CHUNK_BYTES, out, n);
}
