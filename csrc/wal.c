/* wal.c -- the write-ahead log; see wal.h and docs/format.md ("WAL"). */
#include "wal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "coding.h"
#include "crc.h"
#include "env.h"
#include "status.h"

#define GROW_CHUNK ((uint64_t)1 << 20)

struct wal {
    char *path;
    int fd;
    unsigned flags;
    char *map;
    size_t map_bytes;
    uint64_t alloc_end; /* bytes of the file allocated so far */
    int by_pwrite;      /* records are written with pwrite, not through the mapping (wal_set_pwrite) */
    pl_buf out;         /* with by_pwrite: the records of one append, encoded */
    uint64_t marked;    /* the durable end the last sync mark recorded (appender only) */
    uint64_t next_lsn;  /* the LSN after the last record appended (appender only) */
    _Atomic uint64_t written;
    _Atomic uint64_t synced;
};

static size_t rec_header(unsigned flags) { return WAL_REC_HEADER + ((flags & WAL_FLAG_TIMESTAMP) ? 8 : 0); }

/* Is this (at least WAL_PAYLOAD_MIN bytes) a sync mark's payload?  Those alone begin with four zero
 * bytes. */
static int is_mark(const char *payload) { return get_u32(payload) == 0; }

size_t wal_record_size(const wal *w, size_t payload_len) { return rec_header(w->flags) + payload_len; }
size_t wal_append_overhead(const wal *w)
{
    return (w->flags & WAL_FLAG_MARKS) ? wal_record_size(w, WAL_MARK_LEN) : 0;
}
/* Room is kept for the mark that a closing sync appends. */
size_t wal_room(const wal *w)
{
    return w->map_bytes - wal_append_overhead(w) - (size_t)atomic_load(&w->written);
}
uint64_t wal_written(const wal *w) { return atomic_load(&w->written); }
uint64_t wal_synced(const wal *w) { return atomic_load(&w->synced); }
const char *wal_path(const wal *w) { return w->path; }

/* Make sure the file is allocated up to `end`. */
static int grow(wal *w, uint64_t end)
{
    if (end <= w->alloc_end)
        return PL_OK;
    uint64_t target = w->alloc_end;
    while (target < end)
        target += GROW_CHUNK;
    if (target > w->map_bytes)
        target = w->map_bytes;
    int rc = env_allocate(w->fd, w->alloc_end, target - w->alloc_end, w->path);
    if (rc)
        return rc;
    w->alloc_end = target;
    return PL_OK;
}

void wal_set_pwrite(wal *w) { w->by_pwrite = 1; }

int wal_create(const char *path, int timestamps, size_t map_bytes, wal **out)
{
    int rc;
    wal *w = calloc(1, sizeof *w);
    if (!w || !(w->path = strdup(path))) {
        free(w);
        return PL_FAIL(PL_NOMEM, "out of memory");
    }
    w->fd = -1;
    w->flags = WAL_FLAG_MARKS | (timestamps ? WAL_FLAG_TIMESTAMP : 0);
    w->map_bytes = map_bytes < (1u << 20) ? (1u << 20) : map_bytes;
    atomic_init(&w->written, WAL_FILE_HEADER);
    atomic_init(&w->synced, 0);
    rc = env_open(path, O_RDWR | O_CREAT | O_EXCL, &w->fd);
    if (rc)
        goto fail;
    rc = grow(w, WAL_FILE_HEADER);
    if (rc)
        goto fail;
    rc = env_map(w->fd, w->map_bytes, &w->map, path);
    if (rc)
        goto fail;
    wal_encode_file_header(w->map, w->flags);
    /* The header is durable before any record is appended: a damaged header with an intact record
     * after it is then corruption, and one with none a file torn as it was created. */
    rc = env_sync(w->fd, WAL_FILE_HEADER, path);
    if (rc)
        goto fail;
    atomic_store(&w->synced, WAL_FILE_HEADER);
    w->marked = WAL_FILE_HEADER;
    *out = w;
    return PL_OK;
fail:
    if (w->map)
        env_unmap(w->map, w->map_bytes);
    if (w->fd >= 0) {
        env_close(w->fd);
        env_unlink(path);
    }
    free(w->path);
    free(w);
    return rc;
}

size_t wal_encode(char *dst, int timestamps, uint64_t lsn, uint64_t ts, const char *payload, size_t len)
{
    size_t hdr = rec_header(timestamps ? WAL_FLAG_TIMESTAMP : 0);
    /* One buffer: the record is built in place with its CRC field left for last, and the CRC runs over
     * the two ranges around it (the seed's item 2). */
    put_u64(dst, lsn);
    put_u32(dst + 12, (uint32_t)len);
    if (hdr > WAL_REC_HEADER)
        put_u64(dst + WAL_REC_HEADER, ts);
    if (len)
        memcpy(dst + hdr, payload, len);
    put_u32(dst + 8, crc_extend(crc_value(dst, 8), dst + 12, hdr - 12 + len));
    return hdr + len;
}

void wal_encode_file_header(char *dst, unsigned flags)
{
    memcpy(dst, WAL_MAGIC, 8);
    put_u32(dst + 8, flags);
    put_u32(dst + 12, crc_value(dst, 12));
}

int wal_header_ok(const char *d, size_t size, unsigned *flags)
{
    if (size < WAL_FILE_HEADER || memcmp(d, WAL_MAGIC, 8) != 0 || crc_value(d, 12) != get_u32(d + 12) ||
        (get_u32(d + 8) & ~(WAL_FLAG_TIMESTAMP | WAL_FLAG_MARKS)) != 0)
        return 0;
    if (flags)
        *flags = get_u32(d + 8);
    return 1;
}

/* Write a sync mark at off declaring `durable` bytes durable; returns its size. */
static size_t encode_mark(wal *w, char *dst, uint64_t lsn, uint64_t ts, uint64_t durable)
{
    char m[WAL_MARK_LEN];
    put_u32(m, 0);
    put_u64(m + 4, durable);
    w->marked = durable;
    return wal_encode(dst, (w->flags & WAL_FLAG_TIMESTAMP) != 0, lsn, ts, m, WAL_MARK_LEN);
}

/* An append of at least this many bytes is written with pwrite even when the WAL is written through
 * its mapping: it would fault in a page of the mapping per 4 KiB (a batch of 1,000 pairs: 30 faults,
 * each dearer than the one system call).  Smaller appends share a page fault among many records. */
#define WAL_PWRITE_MIN 4096

/* Where the bytes [off, end) of the file are encoded: the mapping itself, or (by_pwrite) a buffer
 * that write_out then writes at off.  NULL when out of memory. */
static char *out_buffer(wal *w, int by_pwrite, uint64_t off, uint64_t end)
{
    if (!by_pwrite)
        return w->map + off;
    if (buf_reserve(&w->out, (size_t)(end - off)))
        return NULL;
    return w->out.data;
}

static int write_out(wal *w, int by_pwrite, uint64_t off, uint64_t end)
{
    return by_pwrite && end > off ? env_pwrite(w->fd, w->out.data, (size_t)(end - off), off, w->path) : PL_OK;
}

int wal_append(wal *w, const wal_rec *recs, int n)
{
    uint64_t off = atomic_load_explicit(&w->written, memory_order_relaxed), start = off;
    size_t hdr = rec_header(w->flags);
    uint64_t end = off;
    for (int i = 0; i < n; i++)
        end += hdr + recs[i].len;
    /* The first append after a sync records how far the file is durable (read once: a sync running
     * meanwhile is recorded by the next append). */
    uint64_t synced = atomic_load(&w->synced);
    int mark = (w->flags & WAL_FLAG_MARKS) && n > 0 && synced > w->marked;
    if (mark)
        end += wal_append_overhead(w);
    int rc = grow(w, end);
    if (rc)
        return rc;
    int by_pwrite = w->by_pwrite || end - start >= WAL_PWRITE_MIN;
    char *dst = out_buffer(w, by_pwrite, start, end);
    if (!dst)
        return PL_FAIL(PL_NOMEM, "out of memory (a WAL append of %llu bytes)", (unsigned long long)(end - start));
    uint64_t ts = (w->flags & WAL_FLAG_TIMESTAMP) ? env_wall_us() : 0;
    int timestamps = (w->flags & WAL_FLAG_TIMESTAMP) != 0;
    if (mark)
        off += encode_mark(w, dst + (off - start), recs[0].lsn, ts, synced);
    for (int i = 0; i < n; i++) {
        env_kill_point("wal_append"); /* dies with this record not yet written (or half written) */
        off += wal_encode(dst + (off - start), timestamps, recs[i].lsn, ts, recs[i].payload, recs[i].len);
    }
    if ((rc = write_out(w, by_pwrite, start, off)))
        return rc;
    if (n > 0)
        w->next_lsn = recs[n - 1].lsn + recs[n - 1].lsns;
    atomic_store_explicit(&w->written, off, memory_order_release);
    return PL_OK;
}

static int sync_written(wal *w, int kill_point)
{
    uint64_t upto = atomic_load(&w->written);
    if (atomic_load(&w->synced) >= upto)
        return PL_OK;
    if (kill_point)
        env_kill_point("wal_sync");
    int rc = env_sync(w->fd, upto, w->path);
    if (rc)
        return rc;
    uint64_t cur = atomic_load(&w->synced);
    while (cur < upto && !atomic_compare_exchange_weak(&w->synced, &cur, upto))
        ;
    return PL_OK;
}

int wal_sync(wal *w) { return sync_written(w, 1); }

int wal_close(wal *w, int sync)
{
    if (!w)
        return PL_OK;
    int rc = PL_OK;
    uint64_t written = atomic_load(&w->written);
    if (sync && (w->flags & WAL_FLAG_MARKS) && written > WAL_FILE_HEADER) {
        /* Make the records durable, then say so in a last mark (made durable below): damage
         * anywhere in a closed WAL is then corruption, never a torn tail. */
        rc = sync_written(w, 0);
        if (!rc && w->marked < written)
            rc = grow(w, written + wal_append_overhead(w));
        if (!rc && w->marked < written) {
            uint64_t ts = (w->flags & WAL_FLAG_TIMESTAMP) ? env_wall_us() : 0;
            char *dst = out_buffer(w, w->by_pwrite, written, written + wal_append_overhead(w));
            if (!dst)
                rc = PL_FAIL(PL_NOMEM, "out of memory (a WAL's last mark)");
            else {
                uint64_t end = written + encode_mark(w, dst, w->next_lsn, ts, written);
                if (!(rc = write_out(w, w->by_pwrite, written, end)))
                    atomic_store(&w->written, written = end);
            }
        }
    }
    env_unmap(w->map, w->map_bytes);
    if (!rc && w->alloc_end > written)
        rc = env_truncate(w->fd, written, w->path);
    if (!rc && sync && (atomic_load(&w->synced) < written || w->alloc_end > written))
        rc = env_sync(w->fd, written, w->path);
    env_close(w->fd);
    pl_buf_free(&w->out);
    free(w->path);
    free(w);
    return rc;
}

/* ---- replay ---- */

typedef struct {
    const char *buf;
    uint64_t size;
    size_t hdr;
} logview;

/* Does the CRC of the record at p (a header of hdr bytes, a payload of len) match? */
static int record_crc_ok(const char *p, size_t hdr, uint32_t len)
{
    return crc_extend(crc_value(p, 8), p + 12, hdr - 12 + len) == get_u32(p + 8);
}

/* Is the record at off whole and intact, with an LSN in [lo, hi]?  Stores its length and whether it
 * is a sync mark (whose durable end must lie at or before the mark itself). */
static int record_ok(const logview *v, uint64_t off, uint64_t lo, uint64_t hi, uint32_t *len, int *mark)
{
    if (v->size - off < v->hdr)
        return 0;
    const char *p = v->buf + off;
    uint64_t lsn = get_u64(p);
    uint32_t l = get_u32(p + 12);
    if (lsn == 0 || lsn < lo || lsn > hi || l < WAL_PAYLOAD_MIN || l > v->size - off - v->hdr)
        return 0;
    if (!record_crc_ok(p, v->hdr, l))
        return 0;
    *len = l;
    *mark = is_mark(p + v->hdr);
    if (*mark)
        return l == WAL_MARK_LEN && get_u64(p + v->hdr + 4) <= off;
    return 1;
}

int wal_all_zero(const char *p, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

/* The offset of the next intact record after off (LSN at least lo), or v->size; its length and
 * whether it is a mark. */
static uint64_t next_good_rec(const logview *v, uint64_t off, uint64_t lo, uint32_t *len, int *mark)
{
    for (uint64_t o = off + 1; o + v->hdr <= v->size; o++)
        /* A plausible LSN first (cheap), then the CRC: random bytes almost never get that far, so
         * the scan stays linear in practice. */
        if (record_ok(v, o, lo ? lo : 1, lo ? lo + (UINT64_C(1) << 40) : (UINT64_C(1) << 48), len, mark))
            return o;
    return v->size;
}

static uint64_t next_good(const logview *v, uint64_t off, uint64_t lo)
{
    uint32_t len;
    int mark;
    return next_good_rec(v, off, lo, &len, &mark);
}

/* The highest durable end that an intact sync mark after off declares (0: none). */
static uint64_t later_durable_end(const logview *v, uint64_t off, uint64_t lo)
{
    uint64_t best = 0;
    uint32_t len;
    int mark;
    for (uint64_t o = next_good_rec(v, off, lo, &len, &mark); o < v->size;) {
        if (mark && get_u64(v->buf + o + v->hdr + 4) > best)
            best = get_u64(v->buf + o + v->hdr + 4);
        o = next_good_rec(v, o + v->hdr + len - 1, lo, &len, &mark);
    }
    return best;
}

/* Does any intact record follow the file header, under either record layout? */
static int any_intact_record(const char *data, uint64_t size)
{
    for (int ts = 0; ts < 2; ts++) {
        logview v = {data, size, rec_header(ts ? WAL_FLAG_TIMESTAMP : 0)};
        if (next_good(&v, WAL_FILE_HEADER - 1, 0) < size)
            return 1;
    }
    return 0;
}

int wal_replay(const char *path, int mode, int is_last, uint64_t skip_below, wal_lsns_fn lsns,
               wal_apply_fn fn, void *ctx, wal_replay_result *res)
{
    char *data = NULL;
    size_t size = 0;
    int rc = env_read_file(path, &data, &size);
    if (rc)
        return rc;
    res->valid_end = 0;
    res->dropped_bytes = 0;
    res->records = 0;
    res->durable_end = 0;
    res->torn_tail = 0;
    logview v = {data, size, WAL_REC_HEADER};

    /* The file header: durable before any record was appended, so a damaged one with nothing intact
     * after it is a WAL that a crash tore as it was created. */
    unsigned flags = 0;
    if (!wal_header_ok(data, size, &flags)) {
        if (wal_all_zero(data, size)) {
            if (!is_last && mode != WAL_SALVAGE && size > 0) {
                rc = PL_FAIL(PL_CORRUPT, "%s: WAL header missing at offset 0", path);
                goto out;
            }
            res->torn_tail = size > 0;
            goto out;
        }
        int intact = size > WAL_FILE_HEADER && any_intact_record(data, size);
        if (!intact && (mode == WAL_SALVAGE || (mode == WAL_TOLERATE_TAIL && is_last))) {
            res->torn_tail = 1;
            res->dropped_bytes = size;
            goto out;
        }
        rc = PL_FAIL(PL_CORRUPT, "%s: %s WAL header at offset 0%s", path,
                     wal_all_zero(data, size < WAL_FILE_HEADER ? size : WAL_FILE_HEADER) ? "torn" : "bad",
                     intact ? " with intact records after it" : "");
        goto out;
    }
    v.hdr = rec_header(flags);
    int marks = (flags & WAL_FLAG_MARKS) != 0;

    uint64_t off = WAL_FILE_HEADER;
    while (off < size) {
        const char *p = data + off;
        uint32_t len = 0;
        int mark = 0;
        uint64_t expect = res->next_lsn;
        if (p[0] == 0 && wal_all_zero(p, size - off))
            break; /* the zero-filled tail: the clean end of the log */
        if (record_ok(&v, off, expect ? expect : 1, expect ? expect : ((UINT64_C(1) << 56) - 1), &len, &mark)) {
            uint64_t lsn = get_u64(p);
            if (mark) { /* a sync mark: it carries the next record's LSN */
                uint64_t end = get_u64(p + v.hdr + 4);
                if (end > res->durable_end)
                    res->durable_end = end;
                res->next_lsn = lsn;
            } else {
                if (lsn >= skip_below) {
                    rc = fn(ctx, lsn, p + v.hdr, len);
                    if (rc)
                        goto out;
                }
                res->records++;
                res->next_lsn = lsn + (lsns ? lsns(p + v.hdr, len) : 1);
            }
            off += v.hdr + len;
            res->valid_end = off;
            continue;
        }
        /* A damaged record (or one whose LSN does not follow on). */
        uint64_t next = next_good(&v, off, expect);
        if (mode == WAL_SALVAGE) {
            res->dropped_bytes += next - off;
            if (next < size)
                res->next_lsn = 0; /* take the next intact record's LSN as it is */
            off = next;
            continue;
        }
        if (mode == WAL_TOLERATE_TAIL && is_last) {
            /* With sync marks: torn unless an intact later mark declares this offset durable.
             * Without: torn only if nothing intact follows. */
            uint64_t durable = marks ? later_durable_end(&v, off, expect) : 0;
            if (marks ? durable <= off : next >= size) {
                res->torn_tail = 1;
                res->dropped_bytes += size - off;
                break;
            }
            if (marks) {
                rc = PL_FAIL(PL_CORRUPT,
                             "%s: damaged WAL record at offset %llu, which a later sync mark declares durable "
                             "(to offset %llu)",
                             path, (unsigned long long)off, (unsigned long long)durable);
                goto out;
            }
        }
        rc = PL_FAIL(PL_CORRUPT, "%s: damaged WAL record at offset %llu%s", path, (unsigned long long)off,
                     next < size ? " with intact records after it" : "");
        goto out;
    }
    if (!res->valid_end)
        res->valid_end = WAL_FILE_HEADER;
out:
    free(data);
    return rc;
}

/* ---- reading a WAL record by record ---- */

int wal_cursor_open(const char *path, wal_cursor *c)
{
    memset(c, 0, sizeof *c);
    c->fd = -1;
    int rc = env_open(path, O_RDONLY, &c->fd);
    if (rc) {
        c->fd = -1;
        return pl_errno() == ENOENT ? PL_NOTFOUND : rc;
    }
    c->path = strdup(path);
    rc = c->path ? env_file_size(c->fd, &c->size, path) : PL_FAIL(PL_NOMEM, "out of memory");
    char h[WAL_FILE_HEADER];
    if (!rc && c->size >= WAL_FILE_HEADER)
        rc = env_pread(c->fd, h, sizeof h, 0, path);
    if (rc) {
        wal_cursor_close(c);
        return rc;
    }
    c->off = WAL_FILE_HEADER;
    if (c->size < WAL_FILE_HEADER || wal_all_zero(h, sizeof h)) {
        c->off = UINT64_MAX; /* created (or torn as it was) with nothing in it */
        return PL_OK;
    }
    if (!wal_header_ok(h, sizeof h, &c->flags)) {
        rc = PL_FAIL(PL_CORRUPT, "%s: bad WAL header at offset 0", path);
        wal_cursor_close(c);
        return rc;
    }
    c->hdr = rec_header(c->flags);
    return PL_OK;
}

/* A read of the cursor's file that ran short means the writer cut the file (to its records, as it
 * closed it) after its size was looked at: at most twice, the caller looks again. */
static int cursor_read(wal_cursor *c, char *buf, size_t n, uint64_t off, int *recut)
{
    int rc = env_pread(c->fd, buf, n, off, c->path);
    if (rc == PL_CORRUPT && (*recut)++ < 2) {
        pl_clear_error();
        return -1;
    }
    return rc;
}

int wal_cursor_next(wal_cursor *c, uint64_t *lsn, uint64_t *ts, int *has_ts, const char **payload,
                    size_t *len)
{
    int rc, recut = 0;
    for (;;) {
        if (c->off == UINT64_MAX)
            return PL_NOTFOUND;
        /* The size now: the writer appends, and cuts the file to its records when it closes it. */
        if ((rc = env_file_size(c->fd, &c->size, c->path)))
            return rc;
        char h[WAL_REC_HEADER + 8];
        if (c->size < c->off + c->hdr) {
            uint64_t n = c->size > c->off ? c->size - c->off : 0;
            rc = n ? cursor_read(c, h, (size_t)n, c->off, &recut) : PL_OK;
            if (rc < 0)
                continue;
            if (n && !rc)
                c->damaged = !wal_all_zero(h, n);
            return rc ? rc : PL_NOTFOUND;
        }
        if ((rc = cursor_read(c, h, c->hdr, c->off, &recut)) < 0)
            continue;
        if (rc)
            return rc;
        uint32_t l = get_u32(h + 12);
        if (wal_all_zero(h, c->hdr))
            return PL_NOTFOUND; /* the zero tail */
        if (l < WAL_PAYLOAD_MIN || l > c->size - c->off - c->hdr) {
            c->damaged = 1; /* (or a record still being written) */
            return PL_NOTFOUND;
        }
        if (c->hdr + l > c->cap) {
            char *b = realloc(c->buf, c->hdr + l);
            if (!b)
                return PL_FAIL(PL_NOMEM, "out of memory");
            c->buf = b;
            c->cap = c->hdr + l;
        }
        memcpy(c->buf, h, c->hdr); /* the header is read; the payload follows it */
        if ((rc = cursor_read(c, c->buf + c->hdr, l, c->off + c->hdr, &recut)) < 0)
            continue;
        if (rc)
            return rc;
        const char *p = c->buf;
        if (!record_crc_ok(p, c->hdr, l)) {
            c->damaged = 1;
            return PL_NOTFOUND;
        }
        c->off += c->hdr + l;
        if (is_mark(p + c->hdr))
            continue;
        *lsn = get_u64(p);
        *has_ts = (c->flags & WAL_FLAG_TIMESTAMP) != 0;
        *ts = *has_ts ? get_u64(p + WAL_REC_HEADER) : 0;
        *payload = p + c->hdr;
        *len = (size_t)l;
        return PL_OK;
    }
}

void wal_cursor_close(wal_cursor *c)
{
    env_close(c->fd);
    free(c->path);
    free(c->buf);
    memset(c, 0, sizeof *c);
    c->fd = -1;
}
