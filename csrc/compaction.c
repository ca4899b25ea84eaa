/* compaction.c -- leveled compaction; see compaction.h. */
#include "compaction.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "env.h"
#include "filename.h"
#include "ikey.h"
#include "memtable.h"
#include "merge.h"
#include "progress.h"
#include "sstable.h"
#include "status.h"

void compaction_env_init(compact_env *env, const char *dir, const pl_options *opt, uint64_t (*new_file)(void *ctx),
                         void *ctx)
{
    memset(env, 0, sizeof *env);
    env->dir = dir;
    env->block_bytes = opt->block_bytes;
    env->bloom_bits_per_key = opt->bloom_bits_per_key;
    env->point_index = opt->point_index;
    env->compression = opt->compression;
    uint64_t target = opt->memtable_bytes;
    env->target_file_bytes = target < (2u << 20) ? (2u << 20) : target > (64u << 20) ? (64u << 20) : target;
    env->level_base_bytes = 4 * env->target_file_bytes;
    env->new_file = new_file;
    env->ctx = ctx;
}

uint64_t compaction_level_target(const compact_env *env, int level)
{
    uint64_t t = env->level_base_bytes;
    for (int l = 1; l < level; l++)
        t *= LEVEL_MULTIPLIER;
    return t;
}

void compaction_free(compaction *c)
{
    for (int i = 0; i < 2; i++) {
        for (int j = 0; j < c->n[i]; j++)
            file_unref(c->inputs[i][j]);
        free(c->inputs[i]);
        c->inputs[i] = NULL;
        c->n[i] = 0;
        c->cap[i] = 0;
    }
    free(c->from);
    c->from = NULL;
}

/* Add f, a table of `level`, to c's upper inputs (which 0) or its output level's (which 1). */
static int add_input(compaction *c, int which, file_meta *f, int level)
{
    if (c->n[which] == c->cap[which]) {
        int cap = c->cap[which] ? 2 * c->cap[which] : 8;
        file_meta **in = realloc(c->inputs[which], sizeof(file_meta *) * (size_t)cap);
        if (!in)
            return PL_FAIL(PL_NOMEM, "out of memory");
        c->inputs[which] = in;
        if (which == 0) {
            int *from = realloc(c->from, sizeof(int) * (size_t)cap);
            if (!from)
                return PL_FAIL(PL_NOMEM, "out of memory");
            c->from = from;
        }
        c->cap[which] = cap;
    }
    file_ref(f);
    if (which == 0)
        c->from[c->n[0]] = level;
    c->inputs[which][c->n[which]++] = f;
    return PL_OK;
}

/* Does f hold user keys in [lo, hi]? (NULL bounds: unbounded) */
static int overlaps(const file_meta *f, const char *lo, size_t lolen, const char *hi, size_t hilen)
{
    if (hi && ukey_cmp(f->m.smallest, ikey_ulen(f->m.smallest_len), hi, hilen) > 0)
        return 0;
    if (lo && ukey_cmp(f->m.largest, ikey_ulen(f->m.largest_len), lo, lolen) < 0)
        return 0;
    return 1;
}

/* The user-key range of c's level inputs. */
static void input_range(const compaction *c, const char **lo, size_t *lolen, const char **hi, size_t *hilen)
{
    *lo = *hi = NULL;
    *lolen = *hilen = 0;
    for (int j = 0; j < c->n[0]; j++) {
        const file_meta *f = c->inputs[0][j];
        if (!*lo || ukey_cmp(f->m.smallest, ikey_ulen(f->m.smallest_len), *lo, *lolen) < 0) {
            *lo = f->m.smallest;
            *lolen = ikey_ulen(f->m.smallest_len);
        }
        if (!*hi || ukey_cmp(f->m.largest, ikey_ulen(f->m.largest_len), *hi, *hilen) > 0) {
            *hi = f->m.largest;
            *hilen = ikey_ulen(f->m.largest_len);
        }
    }
}

/* Add the files of the output level overlapping the upper inputs. */
static int add_next_level(version *v, compaction *c)
{
    int next = c->out_level;
    if (next >= NUM_LEVELS)
        return PL_OK;
    const char *lo, *hi;
    size_t lolen, hilen;
    input_range(c, &lo, &lolen, &hi, &hilen);
    for (int i = 0; i < v->n[next]; i++)
        if (overlaps(v->files[next][i], lo, lolen, hi, hilen)) {
            int rc = add_input(c, 1, v->files[next][i], next);
            if (rc)
                return rc;
        }
    return PL_OK;
}

/* Widen the bound *b (NULL: none yet) to f's key: its smallest when lower, else its largest. */
static void widen(const file_meta *f, int lower, const char **b, size_t *blen)
{
    const char *k = lower ? f->m.smallest : f->m.largest;
    size_t n = ikey_ulen(lower ? f->m.smallest_len : f->m.largest_len);
    int c = *b ? ukey_cmp(k, n, *b, *blen) : 0;
    if (!*b || (lower ? c < 0 : c > 0)) {
        *b = k;
        *blen = n;
    }
}

int compaction_pick_range(version *v, int level, const char *lo, size_t lolen, const char *hi,
                          size_t hilen, compaction *c)
{
    memset(c, 0, sizeof *c);
    c->level = level;
    c->out_level = level + 1;
    if (level + 1 >= NUM_LEVELS)
        return 0;
    for (int i = 0; i < v->n[level]; i++)
        if (overlaps(v->files[level][i], lo, lolen, hi, hilen) && add_input(c, 0, v->files[level][i], level)) {
            compaction_free(c);
            return 0;
        }
    if (level == 0 && c->n[0] > 0) {
        /* L0 tables overlap one another: take all of L0 once any table overlaps the range, so an
         * older version of a key never stays behind in L0 while a newer one moves down (simple and
         * safe; it may rewrite more than the range asked for). */
        compaction_free(c);
        c->level = 0;
        c->out_level = 1;
        for (int i = 0; i < v->n[0]; i++)
            if (add_input(c, 0, v->files[0][i], 0)) {
                compaction_free(c);
                return 0;
            }
    }
    if (!c->n[0] || add_next_level(v, c)) {
        compaction_free(c);
        return 0;
    }
    return 1;
}

int compaction_pick_deep(version *v, int out_level, const char *lo, size_t lolen, const char *hi, size_t hilen,
                         compaction *c)
{
    memset(c, 0, sizeof *c);
    c->level = 0;
    c->out_level = out_level;
    if (out_level < 1 || out_level >= NUM_LEVELS)
        return 0;
    /* The hull of [lo, hi] and of every table taken so far: a table of a deeper level that overlaps
     * it may hold an older version of a key taken above, so it moves down too (taking more is always
     * safe: what stays behind is then newer than what moved past it). */
    const char *hlo = lo, *hhi = hi;
    size_t hlolen = lolen, hhilen = hilen;
    for (int l = 0; l < out_level; l++) {
        int first = c->n[0], any = 0;
        for (int i = 0; i < v->n[l]; i++)
            any |= overlaps(v->files[l][i], hlo, hlolen, hhi, hhilen);
        for (int i = 0; any && i < v->n[l]; i++) {
            /* L0 tables overlap one another: all of them or none */
            if (l > 0 && !overlaps(v->files[l][i], hlo, hlolen, hhi, hhilen))
                continue;
            if (add_input(c, 0, v->files[l][i], l)) {
                compaction_free(c);
                return -1;
            }
        }
        for (int j = first; j < c->n[0]; j++) {
            if (hlo)
                widen(c->inputs[0][j], 1, &hlo, &hlolen);
            if (hhi)
                widen(c->inputs[0][j], 0, &hhi, &hhilen);
        }
    }
    if (!c->n[0]) {
        /* Nothing above the output level: its own tables in the range, rewritten in place, are no
         * one's business here. */
        compaction_free(c);
        return 0;
    }
    if (add_next_level(v, c)) {
        compaction_free(c);
        return -1;
    }
    return 1;
}

int compaction_pick(version *v, const compact_env *env, compaction *c)
{
    double best = 0;
    int level = -1;
    for (int l = 0; l < NUM_LEVELS - 1; l++) {
        double score = l == 0 ? (double)v->n[0] / L0_COMPACT_TRIGGER
                              : (double)version_level_bytes(v, l) / (double)compaction_level_target(env, l);
        if (score > best) {
            best = score;
            level = l;
        }
    }
    if (level < 0 || best < 1.0)
        return 0;
    if (level == 0)
        return compaction_pick_range(v, 0, NULL, 0, NULL, 0, c);
    /* One table of the level: the one whose key range overlaps the fewest bytes of the level below
     * per byte of its own, so the merge rewrites the least to move the most down (RocksDB's
     * "min overlapping ratio"; docs/decisions.md, item 15). */
    memset(c, 0, sizeof *c);
    c->level = level;
    c->out_level = level + 1;
    file_meta *pick = NULL;
    double pick_ratio = 0;
    for (int i = 0; i < v->n[level]; i++) {
        file_meta *f = v->files[level][i];
        const char *lo = f->m.smallest, *hi = f->m.largest;
        size_t lolen = ikey_ulen(f->m.smallest_len), hilen = ikey_ulen(f->m.largest_len);
        uint64_t below = 0;
        for (int j = 0; j < v->n[level + 1]; j++)
            if (overlaps(v->files[level + 1][j], lo, lolen, hi, hilen))
                below += v->files[level + 1][j]->m.file_size;
        double ratio = (double)below / (double)(f->m.file_size ? f->m.file_size : 1);
        if (!pick || ratio < pick_ratio) {
            pick = f;
            pick_ratio = ratio;
        }
    }
    if (add_input(c, 0, pick, level) || add_next_level(v, c)) {
        compaction_free(c);
        return 0;
    }
    return 1;
}

/* May a tombstone for ukey go, output going to `level`?  Only if no deeper level can hold the key. */
static int is_base_level(version *v, int level, const char *ukey, size_t ulen)
{
    if (!v)
        return 0;
    for (int l = level + 1; l < NUM_LEVELS; l++)
        for (int i = 0; i < v->n[l]; i++)
            if (overlaps(v->files[l][i], ukey, ulen, ukey, ulen))
                return 0;
    return 1;
}

int compaction_output_open(compaction_output *o, compact_env *env, int huge)
{
    o->number = env->new_file(env->ctx);
    o->path = db_file_name(env->dir, o->number, FILE_TABLE);
    if (!o->path)
        return PL_FAIL(PL_NOMEM, "out of memory");
    int rc = table_builder_new(o->path, env->block_bytes, env->bloom_bits_per_key, &o->tb);
    if (!rc) {
        table_builder_set_point_index(o->tb, env->point_index);
        table_builder_set_compression(o->tb, env->compression);
        if (huge && (rc = table_builder_set_huge_pieces(o->tb)))
            compaction_output_abandon(o);
    }
    return rc;
}

int compaction_output_finish(compaction_output *o, compact_env *env, int level, version_edit *e)
{
    table_meta m;
    memset(&m, 0, sizeof m);
    env_kill_point("sstable_write");
    int rc = table_builder_finish(o->tb, &m);
    o->tb = NULL;
    if (!rc)
        rc = env_sync_dir(env->dir);
    file_meta *f = NULL;
    if (!rc)
        rc = file_meta_open(env->dir, o->number, &m, env->cache, env->lean_tables, &f);
    if (!rc) {
        env->bytes_written += m.file_size;
        rc = edit_add_file(e, level, f);
        file_unref(f);
    } else {
        table_meta_free(&m);
        env_unlink(o->path);
    }
    free(o->path);
    o->path = NULL;
    return rc;
}

void compaction_output_abandon(compaction_output *o)
{
    if (o->tb)
        table_builder_abandon(o->tb);
    o->tb = NULL;
    free(o->path);
    o->path = NULL;
}

/* Whether no level below `level` holds a table: what is written there stays until it is overwritten. */
static int is_last_level(const version *v, int level)
{
    for (int l = level + 1; v && l < NUM_LEVELS; l++)
        if (v->n[l])
            return 0;
    return 1;
}

/* compaction_write over the entries whose user keys lie in [lo, hi) (NULL: unbounded). */
static int write_range(iter *input, version *v, int level, compact_env *env, version_edit *e, const char *lo,
                       size_t lolen, const char *hi, size_t hilen)
{
    if (!input)
        return PL_FAIL(PL_NOMEM, "out of memory");
    /* The last level holds most of the data and is read the longest: its tables are written in huge
     * pieces (docs/decisions.md, item 20); a flush's and the upper levels' are soon rewritten. */
    int huge = level > 0 && v && is_last_level(v, level);
    compaction_output o = {0};
    pl_buf cur = {0}; /* the current user key */
    int have_cur = 0;
    uint64_t last_lsn_for_key = 0; /* LSN of the previous (newer) entry of cur, or UINT64_MAX */
    int rc = PL_OK;
    if (lo) {
        char *seek = malloc(lolen + IKEY_TRAILER);
        if (!seek) {
            iter_destroy(input);
            return PL_FAIL(PL_NOMEM, "out of memory");
        }
        ikey_build(seek, lo, lolen, LSN_MAX, KIND_SEEK);
        iter_seek(input, seek, lolen + IKEY_TRAILER);
        free(seek);
    } else {
        iter_seek_first(input);
    }
    for (; !rc && iter_valid(input); iter_next(input)) {
        const char *k, *val;
        size_t kn, vn;
        iter_key(input, &k, &kn);
        iter_value(input, &val, &vn);
        if (kn < IKEY_TRAILER) {
            rc = PL_FAIL(PL_CORRUPT, "compaction input: internal key shorter than its trailer");
            break;
        }
        size_t ulen = ikey_ulen(kn);
        uint64_t lsn = ikey_lsn(k, kn);
        int new_key = !have_cur || ukey_cmp(k, ulen, cur.data, cur.len) != 0;
        if (new_key && hi && ukey_cmp(k, ulen, hi, hilen) >= 0)
            break; /* the next range's */
        if (new_key) {
            if ((rc = buf_set(&cur, k, ulen)))
                break;
            have_cur = 1;
            last_lsn_for_key = UINT64_MAX;
            /* A table may be cut only between user keys. */
            if (o.tb && table_builder_file_size(o.tb) >= env->target_file_bytes) {
                uint64_t before = env->bytes_written;
                if ((rc = compaction_output_finish(&o, env, level, e)))
                    break;
                if (env->report_progress)
                    progress_done(env->bytes_written - before); /* a manual compaction's bar, by tables */
            }
        }
        int drop = 0;
        if (last_lsn_for_key <= env->oldest_snapshot) {
            drop = 1; /* a newer version of this key is visible to every reader */
        } else if (ikey_kind(k, kn) == KIND_DELETE && lsn <= env->oldest_snapshot &&
                   is_base_level(v, level, k, ulen)) {
            drop = 1; /* nothing older below to hide, and every reader sees the delete */
        }
        last_lsn_for_key = lsn;
        if (drop) {
            env->entries_dropped++;
            continue;
        }
        if (!o.tb && (rc = compaction_output_open(&o, env, huge)))
            break;
        rc = table_builder_add(o.tb, k, kn, val, vn);
    }
    if (!rc)
        rc = iter_status(input);
    if (!rc && o.tb)
        rc = compaction_output_finish(&o, env, level, e);
    compaction_output_abandon(&o);
    pl_buf_free(&cur);
    iter_destroy(input);
    return rc;
}

int compaction_write(iter *input, version *v, int level, compact_env *env, version_edit *e)
{
    return write_range(input, v, level, env, e, NULL, 0, NULL, 0);
}

uint64_t subcompaction_min_bytes = SUBCOMPACTION_MIN_BYTES;

/* The merge of all of c's inputs. */
static iter *inputs_iter(compaction *c)
{
    /* L0 tables one iterator each; the tables a sorted level gives (in key order) one concatenation */
    int total = c->n[0] + 1;
    iter **its = calloc((size_t)total, sizeof(iter *));
    if (!its)
        return NULL;
    int k = 0, rc = PL_OK;
    for (int j = 0; j < c->n[0];) {
        int run = 1;
        if (c->from[j] > 0)
            while (j + run < c->n[0] && c->from[j + run] == c->from[j])
                run++;
        if (!(its[k++] = version_files_iter(&c->inputs[0][j], run)))
            rc = PL_FAIL(PL_NOMEM, "out of memory");
        j += run;
    }
    if (c->n[1] && !(its[k++] = version_files_iter(c->inputs[1], c->n[1])))
        rc = PL_FAIL(PL_NOMEM, "out of memory");
    iter *merged = NULL;
    if (rc) {
        while (k > 0)
            if (its[--k])
                iter_destroy(its[k]);
    } else {
        merged = merge_iter_new(its, k); /* (takes the inputs, even when it fails) */
    }
    free(its);
    return merged;
}

/* The upper half of a compaction split in two, on a thread of its own. */
typedef struct subcompaction {
    compaction *c;
    version *v;
    compact_env env;      /* a copy of the compaction's; its counters are this half's */
    version_edit e;       /* this half's outputs */
    const char *lo;       /* the split: this half's first user key */
    size_t lolen;
    int rc;
    pl_error_state err;   /* the failure's message, from this thread to the caller's */
} subcompaction;

static void *subcompaction_main(void *arg)
{
    subcompaction *s = arg;
    env_thread_name("pylsm-subcomp");
    iter *in = inputs_iter(s->c);
    s->rc = in ? write_range(in, s->v, s->c->out_level, &s->env, &s->e, s->lo, s->lolen, NULL, 0)
               : PL_FAIL(PL_NOMEM, "out of memory");
    if (s->rc)
        pl_error_save(&s->err);
    return NULL;
}

static int cmp_buf_keys(const void *a, const void *b)
{
    const pl_buf *x = a, *y = b;
    return ukey_cmp(x->data, x->len, y->data, y->len);
}

/* Where to split c in two, or NULL when c is too small to pay for a second thread or gives no key:
 * with two or more tables of the output level, the middle one's smallest key; else (level 0 into a
 * level that holds at most one of the inputs) the median of the inputs' own middle keys, read from
 * their indexes into *scratch: level-0 tables of random keys each span the whole range, so any of
 * them splits it near its middle, and tables of disjoint ranges split between them. */
static const char *split_key(const compaction *c, const compact_env *env, pl_buf *scratch, size_t *len)
{
    uint64_t bytes = 0;
    int n = 0;
    for (int w = 0; w < 2; w++)
        for (int j = 0; j < c->n[w]; j++, n++)
            bytes += c->inputs[w][j]->m.file_size;
    if (!env->subcompactions || bytes < subcompaction_min_bytes)
        return NULL;
    if (c->n[1] >= 2) {
        const file_meta *mid = c->inputs[1][c->n[1] / 2];
        *len = ikey_ulen(mid->m.smallest_len);
        return mid->m.smallest;
    }
    /* At most SPLIT_SAMPLES inputs, spread over the list (a manual compaction may have hundreds): each
     * costs a walk over half of its index. */
    enum { SPLIT_SAMPLES = 16 };
    pl_buf keys[SPLIT_SAMPLES] = {{0}};
    int got = 0, step = (n + SPLIT_SAMPLES - 1) / SPLIT_SAMPLES;
    for (int i = 0; i < n && got < SPLIT_SAMPLES; i += step) {
        const file_meta *f = i < c->n[0] ? c->inputs[0][i] : c->inputs[1][i - c->n[0]];
        if (table_middle_key(f->t, &keys[got]) == PL_OK)
            got++;
    }
    const char *split = NULL;
    if (got > 0) {
        qsort(keys, (size_t)got, sizeof *keys, cmp_buf_keys);
        const pl_buf *m = &keys[got / 2];
        if (buf_set(scratch, m->data, m->len) == PL_OK) {
            split = scratch->data;
            *len = scratch->len;
        }
    }
    for (int i = 0; i < SPLIT_SAMPLES; i++)
        pl_buf_free(&keys[i]);
    pl_clear_error(); /* a table whose index gave no key only means no split */
    return split;
}

int compaction_run(compaction *c, version *v, compact_env *env, version_edit *e)
{
    int rc = PL_OK;
    for (int w = 0; w < 2 && !rc; w++)
        for (int j = 0; j < c->n[w] && !rc; j++)
            rc = edit_delete_file(e, w ? c->out_level : c->from[j], c->inputs[w][j]->number);
    if (rc)
        return rc;
    size_t splitlen = 0;
    pl_buf scratch = {0};
    const char *split = split_key(c, env, &scratch, &splitlen);
    subcompaction *sub = split ? calloc(1, sizeof *sub) : NULL;
    pthread_t thread;
    if (sub) {
        /* Two halves by key range, each merged and written by a thread of its own: the load's writer
         * waits on compaction for much of its time, so the second core has room (docs/decisions.md,
         * item 21).  The halves' tables meet at the split and never overlap. */
        sub->c = c;
        sub->v = v;
        sub->env = *env;
        sub->env.report_progress = 0; /* the caller's thread reports its half; the finish the rest */
        sub->env.bytes_written = sub->env.entries_dropped = 0;
        sub->lo = split;
        sub->lolen = splitlen;
        edit_init(&sub->e);
        if (pthread_create(&thread, NULL, subcompaction_main, sub) != 0) {
            edit_free(&sub->e);
            free(sub);
            sub = NULL;
        } else {
            env->splits++;
        }
    }
    iter *in = inputs_iter(c);
    rc = in ? write_range(in, v, c->out_level, env, e, NULL, 0, sub ? split : NULL, splitlen)
            : PL_FAIL(PL_NOMEM, "out of memory");
    if (sub) {
        pthread_join(thread, NULL);
        if (!rc && sub->rc)
            rc = pl_error_restore(&sub->err, sub->rc);
        /* Its tables join the edit even on failure: the caller's cleanup of e takes them too. */
        for (int i = 0; i < sub->e.nadded; i++) {
            int arc = edit_add_file(e, sub->e.added[i].level, sub->e.added[i].f);
            if (!rc)
                rc = arc;
        }
        env->bytes_written += sub->env.bytes_written;
        env->entries_dropped += sub->env.entries_dropped;
        edit_free(&sub->e);
        free(sub);
    }
    pl_buf_free(&scratch);
    return rc;
}
