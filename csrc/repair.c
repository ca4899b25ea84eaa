/* repair.c -- rebuild a damaged database from what is intact, and the other whole-database tools (verify,
 * destroy); see repair.h. */
#include "repair.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "batch.h"
#include "block.h"
#include "progress.h"
#include "buf.h"
#include "compaction.h"
#include "coding.h"
#include "compress.h"
#include "crc.h"
#include "env.h"
#include "filename.h"
#include "ikey.h"
#include "manifest.h"
#include "memtable.h"
#include "merge.h"
#include "sstable.h"
#include "status.h"
#include "version.h"
#include "wal.h"

#define REPAIR_TARGET_FILE_BYTES (64u << 20) /* merged runs are cut into tables of about this size */

typedef unsigned long long ull;

/* ---- small vectors ---- */

typedef struct {
    uint64_t *v;
    size_t n, cap;
} u64vec;

static int u64_push(u64vec *a, uint64_t x)
{
    int rc = array_reserve(&a->v, &a->cap, a->n + 1, sizeof *a->v);
    if (rc)
        return rc;
    a->v[a->n++] = x;
    return PL_OK;
}

/* A sorted run of L0 tables: key-disjoint, in key order (one table unless it came from a merge). */
typedef struct {
    file_meta **f;
    int n;
    uint64_t min_lsn, max_lsn;
} item;

typedef struct {
    char *from, *to;
} move;

typedef struct {
    const char *dir;
    uint64_t first_fresh; /* numbers from here on were handed out by this repair */
    uint64_t next;        /* the next fresh number */
    u64vec ssts, wals;
    int have_db_files;
    int have_wal;
    uint64_t max_wal;
    uint64_t max_number;
    item *items;
    size_t nitems, capitems;
    u64vec dropped;       /* original tables whose entries are all elsewhere: deleted at the end */
    u64vec clean_wals;    /* replayed WALs: deleted at the end */
    u64vec bad_tables;    /* renamed NNNNNN.sst.bad before the manifest is written */
    u64vec bad_wals;      /* renamed NNNNNN.wal.bad likewise */
    u64vec created;       /* tables this repair wrote (by current number): removed on failure */
    move *moves;          /* renames made, undone on failure */
    size_t nmoves, capmoves;
    repair_report rep;
} repairer;

static uint64_t fresh_number(void *ctx)
{
    repairer *r = ctx;
    return r->next++;
}

static void item_free(item *it)
{
    for (int i = 0; i < it->n; i++)
        file_unref(it->f[i]);
    free(it->f);
    it->f = NULL;
    it->n = 0;
}

static int push_item(repairer *r, item *it)
{
    int rc = array_reserve(&r->items, &r->capitems, r->nitems + 1, sizeof *r->items);
    if (rc)
        return rc;
    r->items[r->nitems++] = *it;
    return PL_OK;
}

/* Rename from -> to and remember it so a failed repair can undo it. */
static int move_file(repairer *r, const char *from, const char *to)
{
    int rc0 = array_reserve(&r->moves, &r->capmoves, r->nmoves + 1, sizeof *r->moves);
    if (rc0)
        return rc0;
    char *f = strdup(from), *t = strdup(to);
    int rc = f && t ? env_rename(from, to) : PL_FAIL(PL_NOMEM, "out of memory");
    if (rc) {
        free(f);
        free(t);
        return rc;
    }
    r->moves[r->nmoves++] = (move){f, t};
    return PL_OK;
}

static void remove_created(repairer *r, uint64_t number)
{
    for (size_t i = 0; i < r->created.n; i++)
        if (r->created.v[i] == number) {
            r->created.v[i] = r->created.v[--r->created.n];
            return;
        }
}

static int is_created(const repairer *r, uint64_t number) { return number >= r->first_fresh; }

/* ---- the directory ---- */

static int scan_entry(void *ctx, const char *name)
{
    repairer *r = ctx;
    uint64_t n;
    enum file_type type;
    int rc = PL_OK;
    if (parse_file_name(name, &n, &type)) {
        if (type == FILE_TABLE)
            rc = u64_push(&r->ssts, n);
        else if (type == FILE_WAL)
            rc = u64_push(&r->wals, n);
        if (type == FILE_TABLE || type == FILE_WAL || type == FILE_LOCK || type == FILE_CURRENT ||
            type == FILE_MANIFEST)
            r->have_db_files = 1;
    }
    if (leading_file_number(name, &n) && n > r->max_number)
        r->max_number = n;
    return rc;
}

/* ---- tables ---- */

/* The meta of an intact table, by reading all of it. */
static int scan_meta(const char *path, uint64_t size, table_meta *m)
{
    memset(m, 0, sizeof *m);
    m->file_size = size;
    table *t;
    int rc = table_open(path, size, NULL, &t);
    if (rc)
        return rc;
    iter *it = table_iter(t);
    if (!it) {
        table_close(t);
        return PL_FAIL(PL_NOMEM, "out of memory");
    }
    const char *k;
    size_t kn;
    for (iter_seek_first(it); iter_valid(it); iter_next(it)) {
        iter_key(it, &k, &kn);
        uint64_t lsn = ikey_lsn(k, kn);
        if (!m->entries) {
            if (!(m->smallest = malloc(kn))) {
                rc = PL_FAIL(PL_NOMEM, "out of memory");
                goto out;
            }
            memcpy(m->smallest, k, kn);
            m->smallest_len = kn;
            m->min_lsn = m->max_lsn = lsn;
        }
        if (lsn < m->min_lsn)
            m->min_lsn = lsn;
        if (lsn > m->max_lsn)
            m->max_lsn = lsn;
        m->entries++;
        m->deletes += ikey_kind(k, kn) == KIND_DELETE;
    }
    if ((rc = iter_status(it)))
        goto out;
    if (m->entries) {
        iter_seek_last(it);
        if (!iter_valid(it)) {
            rc = iter_status(it) ? iter_status(it) : PL_FAIL(PL_CORRUPT, "%s: no last entry", path);
            goto out;
        }
        iter_key(it, &k, &kn);
        if (!(m->largest = malloc(kn))) {
            rc = PL_FAIL(PL_NOMEM, "out of memory");
            goto out;
        }
        memcpy(m->largest, k, kn);
        m->largest_len = kn;
    }
out:
    iter_destroy(it);
    table_close(t);
    if (rc)
        table_meta_free(m);
    return rc;
}

/* The data blocks salvaged from a damaged table, in file order, their keys ascending across them. */
typedef struct {
    char **blocks;
    size_t *lens;
    size_t n, cap;
    pl_buf last; /* the last key of the last block taken */
    uint64_t entries;
    const compress_dict *dict; /* the table's dictionary (format 4), if it was found intact */
    int needed_dict;           /* a block with an intact trailer needed a dictionary it did not have */
} salvage_set;

/* (The dictionary is not the set's: it stays.) */
static void salvage_free(salvage_set *s)
{
    const compress_dict *dict = s->dict;
    for (size_t i = 0; i < s->n; i++)
        free(s->blocks[i]);
    free(s->blocks);
    free(s->lens);
    pl_buf_free(&s->last);
    memset(s, 0, sizeof *s);
    s->dict = dict;
}

/* Take the block [data, data + len) if it is a well-formed, non-empty data block of known kinds whose
 * keys ascend from the last block taken.  PL_OK with *taken 1 (taken) or 0 (rejected); PL_NOMEM. */
static int take_block(salvage_set *s, const char *data, size_t len, int *taken)
{
    block_cursor c;
    pl_buf prev = {0};
    int ok = 1, rc = PL_OK;
    uint64_t n = 0;
    if (block_cursor_init(&c, data, len) != PL_OK) {
        ok = 0; /* a malformed restart array */
        goto out;
    }
    if (s->last.len && (rc = buf_set(&prev, s->last.data, s->last.len)))
        goto out;
    for (block_cursor_seek_first(&c); block_cursor_valid(&c); block_cursor_next(&c), n++) {
        const char *k = block_cursor_key(&c);
        size_t kn = block_cursor_klen(&c);
        int kind = ikey_kind(k, kn);
        if ((kind != KIND_PUT && kind != KIND_DELETE) || ikey_lsn(k, kn) == 0 ||
            (prev.len && ikey_cmp(prev.data, prev.len, k, kn) >= 0)) {
            ok = 0;
            goto out;
        }
        if ((rc = buf_set(&prev, k, kn)))
            goto out;
    }
    if (block_cursor_status(&c) == PL_NOMEM)
        rc = PL_NOMEM;
    if (rc || block_cursor_status(&c) || n == 0) {
        ok = 0;
        goto out;
    }
    if (s->n == s->cap) {
        size_t bcap = s->cap, lcap = s->cap;
        rc = array_reserve(&s->blocks, &bcap, s->n + 1, sizeof *s->blocks);
        if (!rc)
            rc = array_reserve(&s->lens, &lcap, s->n + 1, sizeof *s->lens);
        if (rc)
            goto out;
        s->cap = bcap < lcap ? bcap : lcap;
    }
    char *copy = malloc(len);
    if (!copy) {
        rc = PL_FAIL(PL_NOMEM, "out of memory");
        goto out;
    }
    memcpy(copy, data, len);
    s->blocks[s->n] = copy;
    s->lens[s->n++] = len;
    pl_buf t = s->last;
    s->last = prev;
    prev = t;
    s->entries += n;
out:
    block_cursor_free(&c);
    pl_buf_free(&prev);
    *taken = !rc && ok;
    return rc;
}

/* Is the block of n bytes at blk followed by an intact trailer (blk has n + 5 bytes) of a known type
 * (raw, or a codec's)? */
static int trailer_ok(const char *blk, size_t n) { return table_trailer_matches(blk + n, crc_value(blk, n), 2); }

/* take_block of a stored data block whose trailer is intact: a compressed one is decompressed first
 * (one that does not decompress is not taken). */
static int take_stored(salvage_set *s, const char *blk, size_t n, int *taken)
{
    int type = (unsigned char)blk[n];
    if (type == TABLE_BLOCK_RAW)
        return take_block(s, blk, n, taken);
    if (type == COMPRESS_ZSTD_DICT && !s->dict)
        s->needed_dict = 1;
    char *raw;
    size_t len;
    int rc = decompress_block(type, s->dict, blk, n, &raw, &len);
    if (rc) {
        *taken = 0;
        return rc == PL_NOMEM ? PL_NOMEM : PL_OK;
    }
    rc = take_block(s, raw, len, taken);
    free(raw);
    return rc;
}

/* Is the dictionary block of dsize bytes at doff (dict, u32 length: the handle was made from that
 * length) followed by an intact raw trailer? */
static int dict_block_at(const char *d, uint64_t doff, uint64_t dsize)
{
    return table_trailer_matches(d + doff + dsize, crc_value(d + doff, (size_t)dsize), 0);
}

/* The salvage's dictionary from the intact block at (doff, dsize) into *dict and s.  PL_OK (also when
 * zstd refuses it: the blocks that need it are lost, as if it were damaged) or PL_NOMEM. */
static int load_dict(salvage_set *s, const char *d, uint64_t doff, uint64_t dsize, compress_dict **dict)
{
    int rc = compress_dict_new(d + doff, (size_t)dsize - 4, 0, dict);
    if (rc == PL_OK)
        s->dict = *dict;
    return rc == PL_NOMEM ? rc : PL_OK;
}

/* A format-4 table whose footer is damaged: its dictionary block, found in [from, size) from the end of
 * the file as it describes itself (a raw trailer after a length that fits, and a CRC over both that
 * matches).  Only looked for when a block needed it, so only in such tables. */
static int find_dict_block(const char *d, uint64_t from, size_t size, uint64_t *doff, uint64_t *dsize)
{
    for (size_t e = size >= TABLE_BLOCK_TRAILER ? size - TABLE_BLOCK_TRAILER : 0; e >= 4 && e > from; e--) {
        if (d[e] != TABLE_BLOCK_RAW)
            continue;
        uint64_t off, n;
        if (table_dict_handle(get_u32(d + e - 4), e + TABLE_BLOCK_TRAILER, &off, &n) == PL_OK && off >= from &&
            dict_block_at(d, off, n)) {
            *doff = off;
            *dsize = n;
            return 1;
        }
    }
    return 0;
}

/* Through the index: every block it names whose trailer is intact.  PL_OK, PL_CORRUPT (the index
 * itself is unusable: nothing was taken), PL_NOMEM. */
static int salvage_by_index(const char *d, uint64_t data_end, uint64_t index_off, uint64_t index_size,
                            salvage_set *s, repair_report *rep)
{
    if (!trailer_ok(d + index_off, (size_t)index_size))
        return PL_CORRUPT;
    block_cursor ic;
    int rc = block_cursor_init(&ic, d + index_off, (size_t)index_size);
    uint64_t lost = 0, taken = 0;
    for (block_cursor_seek_first(&ic); !rc && block_cursor_valid(&ic); block_cursor_next(&ic)) {
        uint64_t off, bsize;
        if (table_decode_handle(block_cursor_value(&ic), block_cursor_vlen(&ic), &off, &bsize) ||
            !table_data_handle_fits(off, bsize, data_end) || !trailer_ok(d + off, (size_t)bsize)) {
            lost++;
            continue;
        }
        int t;
        if ((rc = take_stored(s, d + off, (size_t)bsize, &t)))
            break;
        if (t)
            taken++;
        else
            lost++;
    }
    if (!rc)
        rc = block_cursor_status(&ic);
    block_cursor_free(&ic);
    if (rc == PL_OK) {
        rep->blocks_salvaged += taken;
        rep->blocks_lost += lost;
    }
    return rc;
}

/* Without an index: data blocks lie back to back from offset 0, each followed by its trailer, so a
 * block ends at the first offset whose 5 bytes are a trailer matching the CRC of the bytes since the
 * block's start (and the block parses and continues the key order).  Stops at the first block that
 * cannot be found; *stop is where. */
static int salvage_by_scan(const char *d, uint64_t from, uint64_t limit, salvage_set *s, uint64_t *stop,
                           repair_report *rep)
{
    uint64_t start = from;
    while (start < limit && limit - start >= 8 + TABLE_BLOCK_TRAILER) {
        uint32_t c = crc_value(d + start, 8);
        uint64_t e = start + 8;
        int found = 0;
        for (; e + TABLE_BLOCK_TRAILER <= limit; e++) {
            if (table_trailer_matches(d + e, c, 2)) {
                int rc = take_stored(s, d + start, (size_t)(e - start), &found);
                if (rc)
                    return rc;
                if (found)
                    break;
            }
            c = crc_extend(c, d + e, 1);
        }
        if (!found)
            break;
        rep->blocks_salvaged++;
        start = e + TABLE_BLOCK_TRAILER;
    }
    *stop = start;
    return PL_OK;
}

/* Every readable data block of the damaged table at path. */
static int salvage_blocks(const char *path, salvage_set *s, repair_report *rep)
{
    char *d = NULL;
    size_t size = 0;
    int rc = env_read_file(path, &d, &size);
    if (rc)
        return rc;
    uint64_t limit = size;
    table_footer ft;
    /* (a damaged footer's message is not the repair's to report: the data area is scanned) */
    int footer_ok = size >= TABLE_FOOTER_SIZE &&
                    table_footer_decode(d + size - TABLE_FOOTER_SIZE, size, path, &ft) == PL_OK;
    compress_dict *dict = NULL;
    uint64_t doff = 0, dsize = 0;
    int has_dict = 0;
    if (footer_ok) {
        limit = ft.filter_off;
        /* A format-4 table's dictionary block ends the data area. */
        has_dict = ft.version >= TABLE_VERSION_DICT && table_dict_locate(d, ft.filter_off, &doff, &dsize) == PL_OK &&
                   dict_block_at(d, doff, dsize); /* damaged: the blocks compressed with it are lost */
    }
    if (has_dict) {
        limit = doff;
        if ((rc = load_dict(s, d, doff, dsize, &dict)))
            goto out;
    }
    if (footer_ok) {
        rc = salvage_by_index(d, limit, ft.index_off, ft.index_size, s, rep);
        if (rc != PL_CORRUPT)
            goto out;
        salvage_free(s); /* the index is unusable: scan the data area */
    }
    uint64_t stop = 0;
    rc = salvage_by_scan(d, 0, limit, s, &stop, rep);
    if (!rc && !footer_ok && s->needed_dict && find_dict_block(d, stop, size, &doff, &dsize)) {
        /* the footer is damaged, and the scan stopped at a block compressed with the dictionary: find
         * the dictionary after it, and go on to it */
        has_dict = 1;
        limit = doff;
        if (!(rc = load_dict(s, d, doff, dsize, &dict)) && dict)
            rc = salvage_by_scan(d, stop, limit, s, &stop, rep);
    }
    if (!rc && stop < limit) {
        rep->bytes_lost += limit - stop;
        if (footer_ok || has_dict) /* (limit is then where the data ends) */
            rep->blocks_lost++; /* at least one; the scan cannot tell how many */
    }
out:
    s->dict = NULL;
    compress_dict_free(dict);
    free(d);
    return rc;
}

/* A forward iterator over a salvage set's entries (for compaction_write). */
typedef struct {
    iter base;
    salvage_set *s;
    size_t bi;
    block_cursor c;
} salvage_iter;

static void sv_settle(salvage_iter *v)
{
    while (!block_cursor_valid(&v->c) && !block_cursor_status(&v->c) && v->bi + 1 < v->s->n) {
        v->bi++;
        if (block_cursor_reset(&v->c, v->s->blocks[v->bi], v->s->lens[v->bi]) == PL_OK)
            block_cursor_seek_first(&v->c);
    }
}
static void sv_seek_first(iter *it)
{
    salvage_iter *v = (salvage_iter *)it;
    if (!v->s->n)
        return;
    v->bi = 0;
    if (block_cursor_reset(&v->c, v->s->blocks[0], v->s->lens[0]) == PL_OK)
        block_cursor_seek_first(&v->c);
    sv_settle(v);
}
static void sv_seek(iter *it, const char *k, size_t n) { sv_seek_first(it); } /* unused */
static void sv_seek_last(iter *it) { block_cursor_invalidate(&((salvage_iter *)it)->c); } /* unused */
static void sv_next(iter *it)
{
    salvage_iter *v = (salvage_iter *)it;
    block_cursor_next(&v->c);
    sv_settle(v);
}
static void sv_prev(iter *it) { block_cursor_invalidate(&((salvage_iter *)it)->c); } /* unused */
static int sv_valid(const iter *it) { return block_cursor_valid(&((const salvage_iter *)it)->c); }
static void sv_key(const iter *it, const char **k, size_t *n)
{
    const salvage_iter *v = (const salvage_iter *)it;
    *k = block_cursor_key(&v->c);
    *n = block_cursor_klen(&v->c);
}
static void sv_value(const iter *it, const char **val, size_t *n)
{
    const salvage_iter *v = (const salvage_iter *)it;
    *val = block_cursor_value(&v->c);
    *n = block_cursor_vlen(&v->c);
}
static int sv_status(const iter *it) { return block_cursor_status(&((const salvage_iter *)it)->c); }
static void sv_destroy(iter *it)
{
    block_cursor_free(&((salvage_iter *)it)->c);
    free(it);
}
static const struct iter_ops salvage_iter_ops = {sv_seek, sv_seek_first, sv_seek_last, sv_next, sv_prev,
                                                 sv_valid, sv_key, sv_value, sv_status, sv_destroy};

static iter *salvage_iter_new(salvage_set *s)
{
    salvage_iter *v = calloc(1, sizeof *v);
    if (!v)
        return NULL;
    v->base.ops = &salvage_iter_ops;
    v->s = s;
    block_cursor_init_empty(&v->c);
    return &v->base;
}

/* Write `input` (taken over) as L0 tables and make them one item. */
static int write_item(repairer *r, iter *input, uint64_t target, int *wrote)
{
    pl_options opt; /* the default table format (repair.h) */
    pl_options_init(&opt);
    compact_env env;
    compaction_env_init(&env, r->dir, &opt, fresh_number, r); /* every version and tombstone kept */
    env.target_file_bytes = target;
    version_edit e;
    edit_init(&e);
    int rc = compaction_write(input, NULL, 0, &env, &e);
    item it = {0};
    if (!rc && e.nadded) {
        it.f = malloc(sizeof(file_meta *) * (size_t)e.nadded);
        if (!it.f)
            rc = PL_FAIL(PL_NOMEM, "out of memory");
    }
    for (int i = 0; !rc && i < e.nadded; i++)
        rc = u64_push(&r->created, e.added[i].f->number);
    if (rc) {
        for (int i = 0; i < e.nadded; i++) {
            env_unlink(e.added[i].f->path);
            remove_created(r, e.added[i].f->number);
        }
        free(it.f);
        edit_free(&e);
        return rc;
    }
    for (int i = 0; i < e.nadded; i++) {
        file_meta *f = e.added[i].f;
        file_ref(f);
        if (!it.n || f->m.min_lsn < it.min_lsn)
            it.min_lsn = f->m.min_lsn;
        if (f->m.max_lsn > it.max_lsn)
            it.max_lsn = f->m.max_lsn;
        it.f[it.n++] = f;
    }
    edit_free(&e);
    *wrote = it.n > 0;
    if (it.n && (rc = push_item(r, &it)))
        item_free(&it);
    return rc;
}

static int add_table(repairer *r, uint64_t number)
{
    char *path = db_file_name(r->dir, number, FILE_TABLE);
    if (!path)
        return PL_FAIL(PL_NOMEM, "out of memory");
    int fd, rc = env_open(path, O_RDONLY, &fd);
    uint64_t size = 0;
    if (!rc) {
        rc = env_file_size(fd, &size, path);
        env_close(fd);
    }
    table_meta m;
    memset(&m, 0, sizeof m);
    if (!rc && (rc = table_verify(path, size)) == PL_OK)
        rc = scan_meta(path, size, &m);
    if (rc == PL_OK) {
        if (!m.entries) {
            r->rep.tables_dropped++;
            rc = u64_push(&r->dropped, number);
            goto out;
        }
        file_meta *f;
        item it = {0};
        if ((rc = file_meta_open(r->dir, number, &m, NULL, 0, &f)))
            goto out;
        memset(&m, 0, sizeof m); /* now f's */
        it.min_lsn = f->m.min_lsn;
        it.max_lsn = f->m.max_lsn;
        if (!(it.f = malloc(sizeof *it.f))) {
            file_unref(f);
            rc = PL_FAIL(PL_NOMEM, "out of memory");
            goto out;
        }
        it.f[it.n++] = f;
        if ((rc = push_item(r, &it)))
            item_free(&it);
        else
            r->rep.tables_kept++;
        goto out;
    }
    if (rc != PL_CORRUPT)
        goto out;
    /* Damaged: copy what is readable into a new table; the file goes aside as NNNNNN.sst.bad. */
    r->rep.tables_damaged++;
    if ((rc = u64_push(&r->bad_tables, number)))
        goto out;
    salvage_set s;
    memset(&s, 0, sizeof s);
    rc = salvage_blocks(path, &s, &r->rep);
    if (!rc && s.n) {
        int wrote;
        r->rep.entries_salvaged += s.entries;
        rc = write_item(r, salvage_iter_new(&s), UINT64_MAX, &wrote);
    }
    salvage_free(&s);
out:
    table_meta_free(&m);
    free(path);
    return rc;
}

/* ---- WALs ---- */

typedef struct {
    memtable *m;
    uint64_t next;    /* the least LSN the next record may carry: LSNs only grow */
    uint64_t base;
    uint64_t applied, skipped;
} wal_ctx;

static int check_op(void *ctx, uint32_t i, int kind, const char *k, size_t kl, const char *v, size_t vl)
{
    return batch_check_sizes(kl, vl) ? PL_CORRUPT : PL_OK;
}

static int add_op(void *ctx, uint32_t i, int kind, const char *k, size_t kl, const char *v, size_t vl)
{
    wal_ctx *w = ctx;
    return memtable_add(w->m, w->base + i, kind, k, kl, v, vl);
}

static int wal_apply(void *ctx, uint64_t lsn, const char *payload, size_t len)
{
    wal_ctx *w = ctx;
    uint32_t count = batch_rep_count(payload);
    if (lsn < w->next || count == 0 || lsn - 1 > LSN_MAX - count ||
        batch_iterate(payload, len, check_op, NULL) != PL_OK) {
        w->skipped++; /* stale (a recycled or copied-back region) or a malformed batch */
        return PL_OK;
    }
    w->base = lsn;
    int rc = batch_iterate(payload, len, add_op, w);
    if (rc)
        return rc;
    w->next = lsn + count;
    w->applied++;
    return PL_OK;
}

static int add_wal(repairer *r, uint64_t number)
{
    char *path = db_file_name(r->dir, number, FILE_WAL), *tmp = NULL;
    char *d = NULL;
    size_t size = 0;
    wal_ctx w = {0};
    int damaged = 0;
    wal_replay_result res = {0};
    int rc = path ? env_read_file(path, &d, &size) : PL_FAIL(PL_NOMEM, "out of memory");
    if (rc)
        goto out;
    if (wal_header_ok(d, size, NULL)) {
        if ((rc = memtable_new(&w.m)))
            goto out;
        rc = wal_replay(path, WAL_SALVAGE, 1, 0, batch_record_lsns, wal_apply, &w, &res);
        /* Bytes dropped after the last intact record are a torn tail (a crash), not damage. */
        damaged = w.skipped || (res.dropped_bytes && !(w.applied && res.dropped_bytes == size - res.valid_end));
        r->rep.wal_dropped_bytes += res.dropped_bytes;
    } else if (size > WAL_FILE_HEADER && !wal_all_zero(d + WAL_FILE_HEADER, size - WAL_FILE_HEADER)) {
        /* A damaged header with records after it: replay a copy under a rebuilt header, trying
         * both record layouts (with and without timestamps; the record CRCs tell which). */
        damaged = 1;
        for (int ts = 0; !rc && ts < 2; ts++) {
            if (w.m)
                memtable_unref(w.m);
            memset(&w, 0, sizeof w);
            if ((rc = memtable_new(&w.m)))
                break;
            free(tmp);
            if (!(tmp = db_file_name(r->dir, r->next++, FILE_TEMP))) {
                rc = PL_FAIL(PL_NOMEM, "out of memory");
                break;
            }
            wal_encode_file_header(d, ts ? WAL_FLAG_TIMESTAMP : 0);
            rc = env_write_file(tmp, d, size);
            memset(&res, 0, sizeof res);
            if (!rc)
                rc = wal_replay(tmp, WAL_SALVAGE, 1, 0, batch_record_lsns, wal_apply, &w, &res);
            env_unlink(tmp);
            if (!rc && w.applied)
                break;
        }
        r->rep.wal_dropped_bytes += res.dropped_bytes + WAL_FILE_HEADER;
    }
    if (rc)
        goto out;
    r->rep.wals_replayed++;
    r->rep.wal_records += w.applied;
    r->rep.wal_records_skipped += w.skipped;
    if (!r->have_wal || number > r->max_wal)
        r->max_wal = number;
    r->have_wal = 1;
    if (w.m && memtable_count(w.m) > 0) {
        int wrote;
        iter *it;
        if ((rc = memtable_iter(w.m, &it)) || (rc = write_item(r, it, UINT64_MAX, &wrote)))
            goto out;
    }
    if (damaged) {
        r->rep.wals_damaged++;
        rc = u64_push(&r->bad_wals, number);
    } else {
        rc = u64_push(&r->clean_wals, number);
    }
out:
    if (w.m)
        memtable_unref(w.m);
    free(tmp);
    free(d);
    free(path);
    return rc;
}

/* ---- making L0 consistent ---- */

static const char *item_lo(const item *it, size_t *n)
{
    *n = ikey_ulen(it->f[0]->m.smallest_len);
    return it->f[0]->m.smallest;
}

static const char *item_hi(const item *it, size_t *n)
{
    *n = ikey_ulen(it->f[it->n - 1]->m.largest_len);
    return it->f[it->n - 1]->m.largest;
}

/* Must a and b become one run?  When they share user keys and their LSN ranges overlap, no order of
 * the two in L0 makes every key's newest version come first (and equal internal keys may be in both). */
static int conflict(const item *a, const item *b)
{
    if (a->max_lsn < b->min_lsn || b->max_lsn < a->min_lsn)
        return 0;
    size_t alen, blen;
    const char *alo = item_lo(a, &alen), *bhi = item_hi(b, &blen);
    if (ukey_cmp(bhi, blen, alo, alen) < 0)
        return 0;
    const char *ahi = item_hi(a, &alen), *blo = item_lo(b, &blen);
    return ukey_cmp(ahi, alen, blo, blen) >= 0;
}

static size_t uf_find(size_t *parent, size_t x)
{
    while (parent[x] != x)
        x = parent[x] = parent[parent[x]];
    return x;
}

/* Merge the items whose root is `root` into one new item; the old ones are released. */
static int merge_group(repairer *r, const size_t *parent, size_t root, item *out_items, size_t *nout)
{
    int total = 0;
    for (size_t i = 0; i < r->nitems; i++)
        if (parent[i] == root)
            total += r->items[i].n;
    iter **its = calloc((size_t)total, sizeof *its);
    if (!its)
        return PL_FAIL(PL_NOMEM, "out of memory");
    int k = 0;
    for (size_t i = 0; i < r->nitems; i++)
        if (parent[i] == root)
            for (int j = 0; j < r->items[i].n; j++)
                its[k++] = table_iter(r->items[i].f[j]->t);
    iter *in = merge_iter_new_flags(its, k, MERGE_DEDUP); /* equal internal keys may be in several */
    free(its);
    if (!in)
        return PL_FAIL(PL_NOMEM, "out of memory");
    int wrote = 0;
    int rc = write_item(r, in, REPAIR_TARGET_FILE_BYTES, &wrote);
    if (rc)
        return rc;
    if (wrote) /* write_item appended the new item at the end of r->items */
        out_items[(*nout)++] = r->items[--r->nitems];
    for (size_t i = 0; i < r->nitems; i++) {
        if (parent[i] != root)
            continue;
        item *it = &r->items[i];
        for (int j = 0; j < it->n; j++) {
            file_meta *f = it->f[j];
            if (is_created(r, f->number)) { /* an earlier output of this repair: not needed now */
                env_unlink(f->path);
                remove_created(r, f->number);
            } else {
                r->rep.tables_merged++;
                r->rep.tables_kept--;
                if ((rc = u64_push(&r->dropped, f->number)))
                    return rc;
            }
        }
        item_free(it);
    }
    return PL_OK;
}

static int resolve_conflicts(repairer *r)
{
    for (;;) {
        size_t n = r->nitems;
        if (n < 2)
            return PL_OK;
        size_t *parent = malloc(n * sizeof *parent);
        item *next = malloc(n * sizeof *next);
        if (!parent || !next) {
            free(parent);
            free(next);
            return PL_FAIL(PL_NOMEM, "out of memory");
        }
        for (size_t i = 0; i < n; i++)
            parent[i] = i;
        int any = 0;
        for (size_t i = 0; i < n; i++)
            for (size_t j = i + 1; j < n; j++)
                if (conflict(&r->items[i], &r->items[j])) {
                    size_t a = uf_find(parent, i), b = uf_find(parent, j);
                    if (a != b)
                        parent[a < b ? b : a] = a < b ? a : b;
                    any = 1;
                }
        if (!any) {
            free(parent);
            free(next);
            return PL_OK;
        }
        for (size_t i = 0; i < n; i++)
            parent[i] = uf_find(parent, i);
        size_t nnext = 0;
        int rc = PL_OK;
        size_t *members = calloc(n, sizeof *members);
        if (!members)
            rc = PL_FAIL(PL_NOMEM, "out of memory");
        for (size_t i = 0; !rc && i < n; i++)
            members[parent[i]]++;
        for (size_t i = 0; i < n && !rc; i++)
            if (members[i] >= 2)
                rc = merge_group(r, parent, i, next, &nnext);
        free(members);
        /* Keep the items that were not merged (merged ones were emptied by merge_group). */
        for (size_t i = 0; i < n; i++) {
            if (r->items[i].n && !rc)
                next[nnext++] = r->items[i];
            else if (r->items[i].n)
                item_free(&r->items[i]);
        }
        free(parent);
        if (rc) {
            for (size_t i = 0; i < nnext; i++)
                item_free(&next[i]);
            free(next);
            r->nitems = 0;
            return rc;
        }
        memcpy(r->items, next, nnext * sizeof *next);
        r->nitems = nnext;
        free(next);
    }
}

static int cmp_item(const void *a, const void *b)
{
    const item *x = a, *y = b;
    if (x->min_lsn != y->min_lsn)
        return x->min_lsn < y->min_lsn ? -1 : 1;
    if (x->max_lsn != y->max_lsn)
        return x->max_lsn < y->max_lsn ? -1 : 1;
    return x->f[0]->number < y->f[0]->number ? -1 : x->f[0]->number > y->f[0]->number;
}

/* Rename the table of *fp to a fresh number and reopen it there. */
static int renumber(repairer *r, file_meta **fp)
{
    file_meta *f = *fp, *nf;
    uint64_t number = r->next++;
    char *to = db_file_name(r->dir, number, FILE_TABLE);
    table_meta m;
    int rc = to ? table_meta_copy(&m, &f->m) : PL_FAIL(PL_NOMEM, "out of memory");
    if (rc) {
        free(to);
        return rc;
    }
    if (is_created(r, f->number)) {
        rc = env_rename(f->path, to);
        if (!rc) {
            remove_created(r, f->number);
            rc = u64_push(&r->created, number);
            if (rc)
                env_unlink(to);
        }
    } else {
        rc = move_file(r, f->path, to);
    }
    if (!rc) {
        rc = file_meta_open(r->dir, number, &m, NULL, 0, &nf);
        if (!rc) {
            memset(&m, 0, sizeof m);
            *fp = nf;
            file_unref(f);
            r->rep.tables_renamed++;
        }
    }
    table_meta_free(&m);
    free(to);
    return rc;
}

/* Order the runs by LSN and make the file numbers follow that order. */
static int order_items(repairer *r)
{
    if (r->nitems)
        qsort(r->items, r->nitems, sizeof *r->items, cmp_item);
    uint64_t last = 0;
    for (size_t i = 0; i < r->nitems; i++)
        for (int j = 0; j < r->items[i].n; j++) {
            if (r->items[i].f[j]->number <= last) {
                int rc = renumber(r, &r->items[i].f[j]);
                if (rc)
                    return rc;
            }
            last = r->items[i].f[j]->number;
        }
    return PL_OK;
}

/* ---- the whole repair ---- */

/* Rename the table or WAL `number` to NNNNNN.sst.bad or NNNNNN.wal.bad. */
static int move_aside(repairer *r, uint64_t number, enum file_type type)
{
    enum file_type bad = type == FILE_TABLE ? FILE_TABLE_BAD : FILE_WAL_BAD;
    char *from = db_file_name(r->dir, number, type), *to = db_file_name(r->dir, number, bad);
    struct stat st;
    int rc = from && to ? PL_OK : PL_FAIL(PL_NOMEM, "out of memory");
    if (!rc && stat(to, &st) == 0) { /* never overwrite an earlier repair's leftovers */
        free(to);
        to = db_file_name(r->dir, r->next++, bad);
        if (!to)
            rc = PL_FAIL(PL_NOMEM, "out of memory");
    }
    if (!rc)
        rc = move_file(r, from, to);
    free(from);
    free(to);
    return rc;
}

static void unlink_numbered(const char *dir, uint64_t number, enum file_type type)
{
    char *p = db_file_name(dir, number, type);
    if (p)
        env_unlink(p);
    free(p);
}

/* Write the new manifest and CURRENT.  *installed: CURRENT names it (even if rc reports that a
 * directory fsync after the rename failed). */
static int write_state(repairer *r, int *installed)
{
    version_edit e;
    edit_init(&e);
    uint64_t last_lsn = 0;
    int rc = PL_OK;
    for (size_t i = 0; !rc && i < r->nitems; i++) {
        for (int j = 0; !rc && j < r->items[i].n; j++)
            rc = edit_add_file(&e, 0, r->items[i].f[j]);
        if (r->items[i].max_lsn > last_lsn)
            last_lsn = r->items[i].max_lsn;
        r->rep.tables += (uint64_t)r->items[i].n;
    }
    uint64_t number = r->next++;
    e.has_log_number = e.has_next_file = e.has_last_lsn = 1;
    e.log_number = r->have_wal ? r->max_wal + 1 : 0;
    e.next_file = r->next;
    e.last_lsn = last_lsn;
    r->rep.last_lsn = last_lsn;
    if (!rc)
        rc = manifest_create(r->dir, number, 1, &e, NULL, NULL, NULL);
    *installed = !rc || current_names(r->dir, number);
    if (rc && !*installed)
        unlink_numbered(r->dir, number, FILE_MANIFEST);
    edit_free(&e);
    return rc;
}

/* Undo a failed repair: release the tables, rename back what was moved, remove what was written.
 * The thread's error (message and errno) is left as the failure set it. */
static void undo(repairer *r)
{
    pl_error_state saved;
    pl_error_save(&saved);
    for (size_t i = r->nitems; i-- > 0;)
        item_free(&r->items[i]);
    r->nitems = 0;
    for (size_t i = r->nmoves; i-- > 0;)
        env_rename(r->moves[i].to, r->moves[i].from);
    for (size_t i = 0; i < r->created.n; i++)
        unlink_numbered(r->dir, r->created.v[i], FILE_TABLE);
    env_sync_dir(r->dir);
    pl_error_restore(&saved, PL_OK);
}

static void repairer_free(repairer *r)
{
    for (size_t i = 0; i < r->nitems; i++)
        item_free(&r->items[i]);
    free(r->items);
    for (size_t i = 0; i < r->nmoves; i++) {
        free(r->moves[i].from);
        free(r->moves[i].to);
    }
    free(r->moves);
    free(r->ssts.v);
    free(r->wals.v);
    free(r->dropped.v);
    free(r->clean_wals.v);
    free(r->bad_tables.v);
    free(r->bad_wals.v);
    free(r->created.v);
}

/* The size of the file `number` of `type` in dir (0 if it cannot be stat'ed): what progress counts. */
static uint64_t file_bytes(const char *dir, uint64_t number, enum file_type type)
{
    char *p = db_file_name(dir, number, type);
    struct stat st;
    uint64_t n = p && stat(p, &st) == 0 ? (uint64_t)st.st_size : 0;
    free(p);
    return n;
}

int repair_run_report(const char *path, repair_report *rep)
{
    if (!path || !*path || !env_is_dir(path))
        return PL_FAIL(PL_NOTFOUND, "no database at %s", path ? path : "(null)");
    repairer r;
    memset(&r, 0, sizeof r);
    r.dir = path;
    int rc = env_list_dir(path, scan_entry, &r);
    if (!rc && !r.have_db_files)
        rc = PL_FAIL(PL_NOTFOUND, "no database at %s", path);
    if (rc) {
        repairer_free(&r);
        return rc;
    }
    int lock_fd = -1;
    char *lock = db_file_name(path, 0, FILE_LOCK);
    rc = lock ? env_lock(lock, &lock_fd) : PL_FAIL(PL_NOMEM, "out of memory");
    free(lock);
    if (rc) {
        repairer_free(&r);
        return rc;
    }
    /* List again under the lock: the database may have changed before we held it. */
    r.ssts.n = r.wals.n = 0;
    r.max_number = 0;
    if ((rc = env_list_dir(path, scan_entry, &r)))
        goto out;
    if (r.max_number >= LSN_MAX) {
        rc = PL_FAIL(PL_CORRUPT, "%s: file number %llu is too large", path, (ull)r.max_number);
        goto out;
    }
    r.first_fresh = r.next = r.max_number + 1;
    if (r.ssts.n)
        qsort(r.ssts.v, r.ssts.n, sizeof *r.ssts.v, array_cmp_u64);
    if (r.wals.n)
        qsort(r.wals.v, r.wals.n, sizeof *r.wals.v, array_cmp_u64);

    /* Tables, then logs, each stat'ed once: their sizes are what progress counts. */
    size_t nfiles = r.ssts.n + r.wals.n;
    uint64_t *sizes = nfiles ? calloc(nfiles, sizeof *sizes) : NULL;
    for (size_t i = 0; sizes && i < nfiles; i++)
        progress_expect(sizes[i] = i < r.ssts.n ? file_bytes(path, r.ssts.v[i], FILE_TABLE)
                                                : file_bytes(path, r.wals.v[i - r.ssts.n], FILE_WAL));
    for (size_t i = 0; !rc && i < nfiles; i++) {
        rc = i < r.ssts.n ? add_table(&r, r.ssts.v[i]) : add_wal(&r, r.wals.v[i - r.ssts.n]);
        if (!rc && sizes)
            progress_done(sizes[i]);
    }
    free(sizes);
    if (!rc)
        rc = resolve_conflicts(&r);
    if (!rc)
        rc = order_items(&r);
    for (size_t i = 0; !rc && i < r.bad_tables.n; i++)
        rc = move_aside(&r, r.bad_tables.v[i], FILE_TABLE);
    for (size_t i = 0; !rc && i < r.bad_wals.n; i++)
        rc = move_aside(&r, r.bad_wals.v[i], FILE_WAL);
    int installed = 0;
    if (!rc)
        rc = write_state(&r, &installed);
    if (rc) {
        /* Once CURRENT names the new manifest the new state stands (a directory fsync after the
         * rename failed): nothing is undone, and nothing deleted, which the next open or repair
         * does. */
        if (!installed)
            undo(&r);
        goto out;
    }
    /* The new state is durable: what it replaced can go. */
    for (size_t i = 0; i < r.clean_wals.n; i++)
        unlink_numbered(path, r.clean_wals.v[i], FILE_WAL);
    for (size_t i = 0; i < r.dropped.n; i++)
        unlink_numbered(path, r.dropped.v[i], FILE_TABLE);
    env_sync_dir(path);
    pl_clear_error();
out:
    if (rep)
        *rep = r.rep;
    repairer_free(&r);
    env_unlock(lock_fd);
    return rc;
}

int repair_run(const char *path) { return repair_run_report(path, NULL); }

/* ---- the whole-database tools of pylsm.h: repair, verify, destroy ---- */

int pl_repair(const char *path) { return repair_run(path); }

int pl_repair_report(const char *path, pl_stat_fn fn, void *ctx)
{
    repair_report r;
    memset(&r, 0, sizeof r);
    int rc = repair_run_report(path, &r);
    const struct { const char *name; uint64_t v; } figures[] = {
        {"tables_kept", r.tables_kept},         {"tables_renamed", r.tables_renamed},
        {"tables_merged", r.tables_merged},     {"tables_damaged", r.tables_damaged},
        {"tables_dropped", r.tables_dropped},   {"blocks_salvaged", r.blocks_salvaged},
        {"blocks_lost", r.blocks_lost},         {"bytes_lost", r.bytes_lost},
        {"entries_salvaged", r.entries_salvaged}, {"wals_replayed", r.wals_replayed},
        {"wals_damaged", r.wals_damaged},       {"wal_records", r.wal_records},
        {"wal_records_skipped", r.wal_records_skipped}, {"wal_dropped_bytes", r.wal_dropped_bytes},
        {"tables", r.tables},                   {"last_lsn", r.last_lsn},
    };
    if (fn)
        for (size_t i = 0; i < sizeof figures / sizeof figures[0]; i++)
            fn(ctx, figures[i].name, figures[i].v);
    return rc;
}

static int verify_record(void *ctx, uint64_t lsn, const char *payload, size_t len) { return PL_OK; }

int pl_verify(const char *path)
{
    if (!env_is_dir(path))
        return PL_FAIL(PL_NOTFOUND, "no database at %s", path);
    file_list l = {0};
    uint64_t log_number = 0, last_lsn = 0;
    int rc = versions_verify(path, &log_number, &last_lsn);
    if (!rc)
        rc = list_wals(path, &l);
    file_list_sort(&l);
    /* The live WALs, as recovery reads them: LSNs follow on from the manifest's last LSN. */
    wal_replay_result res = {0};
    res.next_lsn = last_lsn + 1;
    uint64_t *sizes = l.n ? calloc(l.n, sizeof *sizes) : NULL;
    for (size_t i = 0; !rc && sizes && i < l.n; i++) {
        char *p = db_file_name(path, l.numbers[i], FILE_WAL);
        struct stat st;
        if (p && l.numbers[i] >= log_number && stat(p, &st) == 0)
            progress_expect(sizes[i] = (uint64_t)st.st_size);
        free(p);
    }
    for (size_t i = 0; !rc && i < l.n; i++) {
        if (l.numbers[i] < log_number)
            continue;
        char *p = db_file_name(path, l.numbers[i], FILE_WAL);
        rc = p ? wal_replay(p, PL_RECOVER_TOLERATE_TAIL, i + 1 == l.n, 0, batch_record_lsns, verify_record, NULL,
                            &res)
               : PL_FAIL(PL_NOMEM, "out of memory");
        free(p);
        if (!rc && sizes)
            progress_done(sizes[i]);
    }
    free(sizes);
    file_list_free(&l);
    return rc;
}

/* Remove dir/name if the name is the database's (the archive directory is emptied and removed by
 * itself). */
static int destroy_entry(void *ctx, const char *name)
{
    uint64_t n;
    enum file_type type;
    if (!parse_file_name(name, &n, &type) || type == FILE_ARCHIVE)
        return PL_OK;
    char *p = db_path_join(ctx, name);
    if (!p)
        return PL_FAIL(PL_NOMEM, "out of memory");
    int rc = env_unlink(p);
    free(p);
    return rc;
}

int pl_destroy(const char *path)
{
    if (!env_is_dir(path))
        return PL_OK;
    char *lock = db_file_name(path, 0, FILE_LOCK);
    int fd = -1, rc = lock ? env_lock(lock, &fd) : PL_FAIL(PL_NOMEM, "out of memory");
    free(lock);
    if (rc)
        return rc;
    char *arch = db_file_name(path, 0, FILE_ARCHIVE);
    if (!arch)
        rc = PL_FAIL(PL_NOMEM, "out of memory");
    else if (env_is_dir(arch)) { /* the WALs kept for the changes feed */
        rc = env_list_dir(arch, destroy_entry, arch);
        if (!rc && rmdir(arch) != 0 && errno != ENOTEMPTY && errno != EEXIST)
            rc = PL_IOFAIL(errno, "remove directory %s", arch);
    }
    free(arch);
    if (!rc)
        rc = env_list_dir(path, destroy_entry, (void *)path);
    env_unlock(fd);
    if (!rc && rmdir(path) != 0 && errno != ENOTEMPTY && errno != EEXIST)
        rc = PL_IOFAIL(errno, "remove directory %s", path);
    return rc;
}
