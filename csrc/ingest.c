/* ingest.c -- bulk ingest; see ingest.h. */
#include "ingest.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "bloom.h"
#include "buf.h"
#include "coding.h"
#include "compaction.h"
#include "db.h"
#include "env.h"
#include "ikey.h"
#include "status.h"

/* Pairs travel from the caller to the builder in chunks of about this many bytes, each pair as
 * [u32 internal key length][u32 value length][u32 bloom_hash of the key][internal key][value]. */
#define PAIR_HEAD 12
#define CHUNK_BYTES (1u << 18)
#define NCHUNKS 4 /* one the caller fills, the rest queued for (or being built by) the builder */

typedef struct chunk {
    char *data;
    size_t len, cap;
} chunk;

struct pl_ingest {
    pl_db *db;           /* referenced: the memory outlives a close */
    uint64_t lsn;        /* of every entry; reserved by db_ingest_begin */
    /* The caller's: */
    pl_buf first;        /* the first user key added */
    size_t prev_off;     /* the last pair's user key, in the chunk being filled (a chunk is handed */
    size_t prev_len;     /* over by the add that then puts its pair in the next one) */
    uint64_t count, user_bytes;
    int rc;              /* sticky: the first failure */
    /* The builder's (the caller's thread when no builder thread runs; after the join, the caller's): */
    compact_env env;     /* where and how tables are written; bytes_written */
    compaction_output out;
    version_edit e;      /* the finished tables (level 0 until placed) */
    pl_buf last;         /* user key: the last of the tables cut so far */
    /* The chunks: the caller fills chunks[fill]; chunks[head .. head + nready) wait for the builder,
     * which holds chunks[head] while it builds it. */
    chunk chunks[NCHUNKS];
    int head, nready;    /* the builder's and the caller's, under mu */
    int fill;            /* the caller's own: (head + nready) % NCHUNKS as it last saw them */
    int threaded, stop;  /* a builder thread runs; stop: it ends once the queue is empty */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t work, room;
    atomic_int brc;      /* the builder's failure, its message in berr */
    pl_error_state berr;
    struct finisher *fin; /* the table being finished on a thread of its own (the builder's) */
    pthread_t fin_thread;
};

/* A table cut at the target size, finished (written out, synced, opened, added to its own edit) on a
 * thread of its own while the builder goes on with the next: about 25 ms per 64 MiB table that the
 * builder no longer waits for (docs/decisions.md, item 9b). */
typedef struct finisher {
    pl_db *db;
    compaction_output out;
    compact_env env;     /* a copy: its bytes_written is this table's */
    version_edit e;
    int rc;
    pl_error_state err;
} finisher;

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
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->work, NULL);
    pthread_cond_init(&g->room, NULL);
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

/* ---- the builder: chunks into tables ---- */

/* Keep the last key added (the range's end). */
static int save_last(pl_ingest *g)
{
    const char *k;
    size_t n;
    table_builder_last_key(g->out.tb, &k, &n);
    return n ? buf_set(&g->last, k, ikey_ulen(n)) : PL_OK;
}

/* Entered by cut_table on its behalf (so that a close waits for the table from the hand-over on). */
static void *finisher_main(void *arg)
{
    finisher *f = arg;
    env_thread_name("pylsm-ingest");
    f->rc = compaction_output_finish(&f->out, &f->env, 0, &f->e);
    if (f->rc)
        pl_error_save(&f->err);
    pl_db_leave(f->db);
    return NULL;
}

/* Wait for the table being finished, if any, and take its result: its table into g->e (also when the
 * ingest has failed: the abort removes it with the others), its bytes, its failure (its message made
 * the calling thread's when `report`: not when an earlier failure is the one reported). */
static int finisher_join(pl_ingest *g, int report)
{
    finisher *f = g->fin;
    if (!f)
        return PL_OK;
    pthread_join(g->fin_thread, NULL);
    g->fin = NULL;
    int rc = f->rc ? (report ? pl_error_restore(&f->err, f->rc) : f->rc) : PL_OK;
    for (int i = 0; i < f->e.nadded; i++) {
        int arc = edit_add_file(&g->e, 0, f->e.added[i].f);
        if (arc) /* not in g->e: removed at its last reference, just below */
            atomic_store(&f->e.added[i].f->obsolete, 1);
        if (!rc)
            rc = arc;
    }
    g->env.bytes_written += f->env.bytes_written;
    edit_free(&f->e);
    free(f);
    return rc;
}

/* The open table reached the target size: finish it on a thread of its own once the one before is
 * done (here, when no thread can be had). */
static int cut_table(pl_ingest *g)
{
    int rc = finisher_join(g, 1);
    if (rc || (rc = pl_db_enter(g->db))) /* left by the finisher */
        return rc;
    finisher *f = calloc(1, sizeof *f);
    if (f) {
        f->db = g->db;
        f->out = g->out;
        f->env = g->env;
        f->env.bytes_written = 0;
        edit_init(&f->e);
        if (pthread_create(&g->fin_thread, NULL, finisher_main, f) == 0) {
            g->fin = f;
            memset(&g->out, 0, sizeof g->out);
            return PL_OK;
        }
        edit_free(&f->e);
        free(f);
    }
    pl_db_leave(g->db);
    return compaction_output_finish(&g->out, &g->env, 0, &g->e);
}

/* Add the pairs of c to the tables, cutting them at the target size.  Entered (pl_db_enter) for the
 * chunk's time: a close waits for it, and a closed database's directory (which another process may
 * open) is no longer written in. */
static int build_chunk(pl_ingest *g, const chunk *c)
{
    int rc = pl_db_enter(g->db);
    if (rc)
        return rc;
    env_test_hook("ingest_chunk");
    for (size_t at = 0; at < c->len && !rc;) {
        uint32_t iklen = get_u32(c->data + at), vlen = get_u32(c->data + at + 4);
        uint32_t hash = get_u32(c->data + at + 8);
        const char *ikey = c->data + at + PAIR_HEAD;
        at += PAIR_HEAD + (size_t)iklen + vlen;
        if (!g->out.tb && (rc = compaction_output_open(&g->out, &g->env, 0)))
            break;
        rc = table_builder_add_hashed(g->out.tb, ikey, iklen, ikey + iklen, vlen, &hash);
        /* Every key is distinct, so a cut here never splits one key's versions. */
        if (!rc && table_builder_file_size(g->out.tb) >= g->env.target_file_bytes && !(rc = save_last(g)))
            rc = cut_table(g);
    }
    pl_db_leave(g->db);
    return rc;
}

/* A chunk built: emptied, and given back when a pair bigger than CHUNK_BYTES grew it. */
static void release_chunk(chunk *c)
{
    c->len = 0;
    if (c->cap > CHUNK_BYTES)
        big_array_free(&c->data, &c->cap, 1);
}

static void *builder_main(void *arg)
{
    pl_ingest *g = arg;
    env_thread_name("pylsm-ingest");
    pthread_mutex_lock(&g->mu);
    for (;;) {
        while (!g->nready && !g->stop)
            pthread_cond_wait(&g->work, &g->mu);
        if (!g->nready)
            break;
        chunk *c = &g->chunks[g->head];
        pthread_mutex_unlock(&g->mu);
        if (!atomic_load(&g->brc)) { /* after a failure, chunks are let go unread */
            int rc = build_chunk(g, c);
            if (rc) {
                pl_error_save(&g->berr);
                atomic_store(&g->brc, rc);
            }
        }
        release_chunk(c);
        pthread_mutex_lock(&g->mu);
        g->head = (g->head + 1) % NCHUNKS;
        g->nready--;
        pthread_cond_signal(&g->room);
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

/* The builder's failure, made the calling thread's. */
static int builder_failed(pl_ingest *g)
{
    int rc = atomic_load(&g->brc);
    return rc ? fail(g, pl_error_restore(&g->berr, rc)) : PL_OK;
}

/* Let the builder thread go, after the chunks queued (stop: unread) and join it. */
static void builder_join(pl_ingest *g, int discard)
{
    if (!g->threaded)
        return;
    pthread_mutex_lock(&g->mu);
    g->stop = 1;
    if (discard && !atomic_load(&g->brc))
        atomic_store(&g->brc, PL_CLOSED); /* (never reported: the ingest is being aborted) */
    pthread_cond_signal(&g->work);
    pthread_mutex_unlock(&g->mu);
    pthread_join(g->thread, NULL);
    g->threaded = 0;
}

/* The chunk being filled. */
static chunk *filling(pl_ingest *g) { return &g->chunks[g->fill]; }

/* Hand the chunk being filled to the builder -- its own thread, started at the first hand-off that is
 * not the last (an ingest of one chunk starts none), or this one when no thread runs -- and wait until
 * another is free to fill. */
static int hand_over(pl_ingest *g, int last)
{
    chunk *c = filling(g);
    if (!g->threaded && !g->stop && !last) {
        if (pthread_create(&g->thread, NULL, builder_main, g) == 0)
            g->threaded = 1;
        else
            g->stop = 1; /* built here from now on */
    }
    if (!g->threaded) {
        int rc = build_chunk(g, c);
        release_chunk(c);
        return rc ? fail(g, rc) : PL_OK;
    }
    pthread_mutex_lock(&g->mu);
    g->nready++;
    g->fill = (g->fill + 1) % NCHUNKS;
    pthread_cond_signal(&g->work);
    while (g->nready == NCHUNKS)
        pthread_cond_wait(&g->room, &g->mu);
    pthread_mutex_unlock(&g->mu);
    return builder_failed(g);
}

/* ---- the caller ---- */

/* The pair at g->count has a key not greater than `prev` (a user key): the error naming it. */
static int order_error(pl_ingest *g, const void *key, size_t klen, const char *prev, size_t plen)
{
    return fail(g, PL_FAIL(PL_INVALID,
                           "ingest: the key at position %" PRIu64 " is %s the key before it; keys must be "
                           "in strictly ascending (bytewise) order",
                           g->count, ukey_cmp(key, klen, prev, plen) ? "less than" : "equal to"));
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
    chunk *c = filling(g);
    if (g->count > 0) {
        const char *prev = c->data + g->prev_off;
        if (ukey_cmp(key, klen, prev, g->prev_len) <= 0)
            return order_error(g, key, klen, prev, g->prev_len);
    } else if ((rc = buf_set(&g->first, key, klen))) {
        return fail(g, rc);
    }
    size_t need = PAIR_HEAD + klen + IKEY_TRAILER + vlen;
    if (c->len && c->len + need > CHUNK_BYTES) { /* full: a chunk holds CHUNK_BYTES, or one bigger pair */
        if ((rc = hand_over(g, 0)))
            return rc;
        c = filling(g);
    }
    if (c->len + need > c->cap && /* a chunk's first pair, or a pair bigger than a chunk */
        (rc = big_array_reserve(&c->data, &c->cap, c->len + need > CHUNK_BYTES ? c->len + need : CHUNK_BYTES, 1)))
        return fail(g, rc);
    char *p = c->data + c->len;
    put_u32(p, (uint32_t)(klen + IKEY_TRAILER));
    put_u32(p + 4, (uint32_t)vlen);
    put_u32(p + 8, bloom_hash(key, klen)); /* work the caller's thread has time for */
    ikey_build(p + PAIR_HEAD, key, klen, g->lsn, KIND_PUT);
    if (vlen)
        memcpy(p + PAIR_HEAD + klen + IKEY_TRAILER, val, vlen);
    g->prev_off = c->len + PAIR_HEAD;
    g->prev_len = klen;
    c->len += need;
    g->count++;
    g->user_bytes += klen + vlen;
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

/* Free g (the builder joined); its tables go with it unless `keep` (a manifest record naming them may
 * be durable). */
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
    for (int i = 0; i < NCHUNKS; i++)
        big_array_free(&g->chunks[i].data, &g->chunks[i].cap, 1);
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->work);
    pthread_cond_destroy(&g->room);
    free(g);
}

void pl_ingest_abort(pl_ingest *g)
{
    if (g) {
        builder_join(g, 1);
        finisher_join(g, 0); /* its table joins the others, to be removed */
        ingest_free(g, 0);
    }
}

int pl_ingest_finish(pl_ingest *g, uint64_t *count)
{
    int rc = g->rc, applied = 0;
    if (!rc && filling(g)->len)
        rc = hand_over(g, 1);
    builder_join(g, rc != PL_OK);
    if (!rc)
        rc = builder_failed(g);
    int frc = finisher_join(g, !rc); /* (an earlier failure keeps its message) */
    if (!rc && frc)
        rc = fail(g, frc);
    if (!rc)
        rc = pl_db_check(g->db);
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
