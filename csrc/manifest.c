/* manifest.c -- the manifest's records, reading and writing; see manifest.h and docs/format.md. */
#include "manifest.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "coding.h"
#include "env.h"
#include "filename.h"
#include "ikey.h"
#include "status.h"
#include "wal.h"

/* Edit field tags (docs/format.md, "Manifest"). */
enum { TAG_LOG_NUMBER = 1, TAG_NEXT_FILE = 2, TAG_LAST_LSN = 3, TAG_ADD = 4, TAG_DELETE = 5 };

/* ---- records: an edit encoded ---- */

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

/* The record of e with LSN seq, after a file header when with_header, into rec. */
static int encode_record(const version_edit *e, uint64_t seq, int with_header, pl_buf *rec)
{
    size_t at = with_header ? WAL_FILE_HEADER : 0;
    pl_buf payload = {0};
    int rc = edit_encode(e, &payload);
    if (!rc)
        rc = buf_reserve(rec, at + WAL_REC_HEADER + payload.len);
    if (!rc) {
        if (with_header)
            wal_encode_file_header(rec->data, 0);
        rec->len = at + wal_encode(rec->data + at, 0, seq, 0, payload.data, payload.len);
    }
    pl_buf_free(&payload);
    return rc;
}

/* ---- reading ---- */

/* The key (len:varint bytes[len], an internal key) at *p, before end, copied to a malloc'd *key; *p
 * moves past it.  PL_OK; PL_CORRUPT when malformed (not recorded: the caller names the edit);
 * PL_NOMEM. */
static int get_key(const char **p, const char *end, char **key, size_t *len)
{
    uint64_t n;
    const char *q = get_varint64(*p, end, &n);
    if (!q || n < IKEY_TRAILER || n > (uint64_t)(end - q))
        return PL_CORRUPT;
    *key = malloc(n);
    if (!*key)
        return PL_FAIL(PL_NOMEM, "out of memory reading a manifest");
    memcpy(*key, q, n);
    *len = n;
    *p = q + n;
    return PL_OK;
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

/* A manifest being read: the state so far, and the file (for messages). */
typedef struct {
    manifest_state *s;
    const char *path;
} loader;

/* Apply one record's edit to the state (a wal_apply_fn). */
static int apply_manifest_record(void *ctx, uint64_t seq, const char *payload, size_t len)
{
    loader *ld = ctx;
    manifest_state *s = ld->s;
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
            int krc = get_key(&p, end, &f->m.smallest, &f->m.smallest_len);
            if (!krc)
                krc = get_key(&p, end, &f->m.largest, &f->m.largest_len);
            if (krc) {
                table_meta_free(&f->m);
                if (krc == PL_NOMEM)
                    return krc; /* not the manifest's fault */
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
    return PL_FAIL(PL_CORRUPT, "%s: malformed version edit %" PRIu64, ld->path, seq);
}

int manifest_load(const char *dir, manifest_state *s, uint64_t *number)
{
    int rc = read_current(dir, number);
    if (rc == PL_IOERR && pl_errno() == ENOENT)
        return PL_NOTFOUND; /* only a missing CURRENT means "no manifest" */
    if (rc)
        return rc;
    char *path = db_file_name(dir, *number, FILE_MANIFEST);
    if (!path)
        return PL_FAIL(PL_NOMEM, "out of memory");
    loader ld = {s, path};
    wal_replay_result res = {0};
    /* The manifest's tail may be an edit torn by a crash before it was acknowledged (fsynced).  Its
     * records take one LSN each (the lsns function NULL). */
    rc = wal_replay(path, WAL_TOLERATE_TAIL, 1, 0, NULL, apply_manifest_record, &ld, &res);
    if (!rc && (!s->has_next_file || !s->has_log_number || !s->has_last_lsn))
        rc = PL_FAIL(PL_CORRUPT, "%s: incomplete manifest at offset %" PRIu64, path, res.valid_end);
    free(path);
    return rc;
}

void manifest_state_free(manifest_state *s)
{
    for (int i = 0; i < s->n; i++)
        table_meta_free(&s->files[i].m);
    free(s->files);
}

/* ---- writing ---- */

int manifest_create(const char *dir, uint64_t number, uint64_t seq, const version_edit *e, int *fd_out,
                    uint64_t *bytes, int *renamed)
{
    if (fd_out)
        *fd_out = -1;
    if (renamed)
        *renamed = 0;
    if (!e->has_log_number || !e->has_next_file || !e->has_last_lsn || e->next_file <= number)
        return PL_FAIL(PL_INVALID, "a whole-state edit needs log number, next file and last LSN");
    char *path = db_file_name(dir, number, FILE_MANIFEST);
    pl_buf rec = {0};
    int fd = -1, created = 0, named = 0;
    int rc = path ? encode_record(e, seq, 1, &rec) : PL_FAIL(PL_NOMEM, "out of memory");
    if (!rc)
        rc = env_open(path, O_WRONLY | O_CREAT | O_TRUNC, &fd);
    created = !rc;
    if (!rc)
        rc = env_write(fd, rec.data, rec.len, path);
    if (!rc) {
        env_kill_point("manifest_append");
        rc = env_sync(fd, rec.len, path);
    }
    if (fd >= 0 && (rc || !fd_out)) {
        env_close(fd);
        fd = -1;
    }
    /* The new manifest's name is durable before CURRENT may name it. */
    if (!rc)
        rc = env_sync_dir(dir);
    if (!rc)
        rc = set_current(dir, number, &named);
    if (rc && !named) {
        if (fd >= 0)
            env_close(fd);
        fd = -1;
        if (created)
            env_unlink(path);
    }
    if (fd >= 0) {
        *fd_out = fd;
        if (bytes)
            *bytes = rec.len;
    }
    if (renamed)
        *renamed = named;
    pl_buf_free(&rec);
    free(path);
    return rc;
}

int manifest_append(const char *dir, uint64_t number, int fd, uint64_t *bytes, uint64_t seq,
                    const version_edit *e)
{
    char *path = db_file_name(dir, number, FILE_MANIFEST);
    pl_buf rec = {0};
    int rc = path ? encode_record(e, seq, 0, &rec) : PL_FAIL(PL_NOMEM, "out of memory");
    if (!rc)
        rc = env_write(fd, rec.data, rec.len, path);
    if (!rc) {
        env_kill_point("manifest_append");
        rc = env_sync(fd, *bytes + rec.len, path);
    }
    if (!rc)
        *bytes += rec.len;
    pl_buf_free(&rec);
    free(path);
    return rc;
}
