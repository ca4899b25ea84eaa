/* ingest.c -- bulk ingest; see ingest.h. */
#include "ingest.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "buf.h"
#include "compaction.h"
#include "db.h"
#include "ikey.h"
#include "status.h"

struct pl_ingest {
    pl_db *db;           /* referenced: the memory outlives a close */
    uint64_t lsn;        /* of every entry; reserved by db_ingest_begin */
    compact_env env;     /* where and how tables are written; bytes_written */
    compaction_output out;
    version_edit e;      /* the finished tables (level 0 until placed) */
    pl_buf first, last;  /* user keys: the first added, the last of the tables cut so far */
    pl_buf ikey;         /* scratch: the internal key being added */
    uint64_t count, user_bytes;
    int rc;              /* sticky: the first failure */
};

int pl_ingest_new(pl_db *db, pl_ingest **out)
{
    uint64_t lsn;
    int rc = db_ingest_begin(db, &lsn);
    if (rc)
        return rc;
    pl_ingest *g = calloc(1, sizeof *g);
    if (!g) {
        db_ingest_end(db, lsn);
        return PL_FAIL(PL_NOMEM, "out of memory");
    }
    g->db = db;
    g->lsn = lsn;
    db_ref(db);
    db_table_env(db, &g->env);
    edit_init(&g->e);
    *out = g;
    return PL_OK;
}

/* Record the first failure (its message stays the thread's) and return it. */
static int fail(pl_ingest *g, int rc)
{
    if (!g->rc)
        g->rc = rc;
    return rc;
}

/* The pair at g->count has a key not greater than `prev` (a user key): the error naming it. */
static int order_error(pl_ingest *g, const void *key, size_t klen, const char *prev, size_t plen)
{
    return fail(g, PL_FAIL(PL_INVALID,
                           "ingest: the key at position %" PRIu64 " is %s the key before it; keys must be "
                           "in strictly ascending (bytewise) order",
                           g->count, ukey_cmp(key, klen, prev, plen) ? "less than" : "equal to"));
}

/* Keep the last key added (the range's end, and what the next table's first key must exceed). */
static int save_last(pl_ingest *g)
{
    const char *k;
    size_t n;
    table_builder_last_key(g->out.tb, &k, &n);
    return n ? buf_set(&g->last, k, ikey_ulen(n)) : PL_OK;
}

int pl_ingest_add(pl_ingest *g, const void *key, size_t klen, const void *val, size_t vlen)
{
    if (g->rc)
        return PL_FAIL(g->rc, "ingest: an earlier pair failed; abort the ingest");
    int rc = pl_db_check(g->db); /* a closed database's directory is no longer ours to write in */
    if (rc)
        return fail(g, rc);
    rc = batch_check_sizes(klen, vlen);
    if (rc) {
        char msg[200];
        snprintf(msg, sizeof msg, "%s", pl_errmsg());
        return fail(g, PL_FAIL(rc, "ingest: pair %" PRIu64 ": %s", g->count, msg));
    }
    if (!g->out.tb) {
        /* Within a table the builder checks the order; across tables, this. */
        if (g->count > 0 && ukey_cmp(key, klen, g->last.data, g->last.len) <= 0)
            return order_error(g, key, klen, g->last.data, g->last.len);
        if ((rc = compaction_output_open(&g->out, &g->env, 0)))
            return fail(g, rc);
    }
    if ((rc = buf_reserve(&g->ikey, klen + IKEY_TRAILER)))
        return fail(g, rc);
    ikey_build(g->ikey.data, key, klen, g->lsn, KIND_PUT);
    rc = table_builder_add(g->out.tb, g->ikey.data, klen + IKEY_TRAILER, val, vlen);
    if (rc == PL_INVALID) { /* not sticky: the key is not greater than the one before */
        const char *prev;
        size_t plen;
        table_builder_last_key(g->out.tb, &prev, &plen);
        if (plen && ukey_cmp(key, klen, prev, ikey_ulen(plen)) <= 0)
            return order_error(g, key, klen, prev, ikey_ulen(plen));
    }
    if (!rc && g->count == 0)
        rc = buf_set(&g->first, key, klen);
    if (rc)
        return fail(g, rc);
    g->count++;
    g->user_bytes += klen + vlen;
    /* Every key is distinct, so a cut here never splits one key's versions. */
    if (table_builder_file_size(g->out.tb) >= g->env.target_file_bytes &&
        ((rc = save_last(g)) || (rc = compaction_output_finish(&g->out, &g->env, 0, &g->e))))
        return fail(g, rc);
    return PL_OK;
}

int ingest_pick_level(const version *v, const char *lo, size_t lolen, const char *hi, size_t hilen)
{
    int target = 0;
    for (int l = 0; l < NUM_LEVELS; l++) {
        for (int i = 0; i < v->n[l]; i++) {
            const file_meta *f = v->files[l][i];
            if (ukey_cmp(f->m.smallest, ikey_ulen(f->m.smallest_len), hi, hilen) <= 0 &&
                ukey_cmp(f->m.largest, ikey_ulen(f->m.largest_len), lo, lolen) >= 0)
                return target;
        }
        target = l;
    }
    return target;
}

static int place(void *ctx, const version *v, version_edit *e)
{
    pl_ingest *g = ctx;
    int level = ingest_pick_level(v, g->first.data, g->first.len, g->last.data, g->last.len);
    for (int i = 0; i < e->nadded; i++)
        e->added[i].level = level;
    return PL_OK;
}

/* Free g; its tables go with it unless `keep` (a manifest record naming them may be durable). */
static void ingest_free(pl_ingest *g, int keep)
{
    compaction_output_abandon(&g->out);
    for (int i = 0; !keep && i < g->e.nadded; i++)
        atomic_store(&g->e.added[i].f->obsolete, 1); /* removed at their last reference, just below */
    edit_free(&g->e);
    db_ingest_end(g->db, g->lsn);
    db_unref(g->db);
    pl_buf_free(&g->first);
    pl_buf_free(&g->last);
    pl_buf_free(&g->ikey);
    free(g);
}

void pl_ingest_abort(pl_ingest *g)
{
    if (g)
        ingest_free(g, 0);
}

int pl_ingest_finish(pl_ingest *g, uint64_t *count)
{
    int rc = g->rc, applied = 0;
    if (!rc && g->out.tb && !(rc = save_last(g)))
        rc = compaction_output_finish(&g->out, &g->env, 0, &g->e);
    if (!rc && g->count > 0)
        rc = db_ingest_commit(g->db, &g->e, g->lsn, place, g, g->count, g->user_bytes, g->env.bytes_written,
                              &applied);
    if (!rc)
        *count = g->count;
    ingest_free(g, rc == PL_OK || applied);
    return rc;
}
