/*
 * checkpoint.c -- a consistent, openable copy of a live database (checkpoint.h).
 */
#include "checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "db.h"
#include "env.h"
#include "filename.h"
#include "manifest.h"
#include "status.h"
#include "version.h"

/* Names a checkpoint writes into its directory; a stale staging directory holding anything else is
 * not ours to delete. */
static int checkpoint_name(const char *name)
{
    uint64_t n;
    enum file_type type;
    if (!parse_file_name(name, &n, &type))
        return 0;
    switch (type) {
    case FILE_TABLE: case FILE_WAL: case FILE_MANIFEST: case FILE_CURRENT: case FILE_CURRENT_TMP:
    case FILE_CHECKPOINT: case FILE_LOCK:
        return 1;
    default:
        return 0;
    }
}

typedef struct {
    const char *dir;
    int foreign; /* a name a checkpoint does not write */
    int rc;
} clean_ctx;

static int check_entry(void *ctx, const char *name)
{
    clean_ctx *c = ctx;
    if (!checkpoint_name(name))
        c->foreign = 1;
    return PL_OK;
}

static int remove_entry(void *ctx, const char *name)
{
    clean_ctx *c = ctx;
    char *p = db_path_join(c->dir, name);
    int rc = p ? env_unlink(p) : PL_FAIL(PL_NOMEM, "out of memory");
    free(p);
    if (rc && !c->rc)
        c->rc = rc;
    return PL_OK;
}

/* Remove the staging directory a crashed or failed checkpoint left, if it holds only our names. */
static int remove_staging(const char *dir)
{
    struct stat st;
    if (lstat(dir, &st) != 0)
        return errno == ENOENT ? PL_OK : PL_IOFAIL(errno, "stat %s", dir);
    if (!S_ISDIR(st.st_mode))
        return PL_FAIL(PL_EXISTS, "%s exists and is not a checkpoint's staging directory", dir);
    clean_ctx c = {dir, 0, PL_OK};
    int rc = env_list_dir(dir, check_entry, &c);
    if (!rc && c.foreign)
        return PL_FAIL(PL_EXISTS, "%s holds files a checkpoint did not write: remove it first", dir);
    if (!rc)
        rc = env_list_dir(dir, remove_entry, &c);
    if (!rc)
        rc = c.rc;
    if (!rc)
        rc = env_rmdir(dir);
    return rc;
}

/* Link (or copy) every table of the captured version into dir. */
static int copy_tables(const db_state *cap, const char *dir, checkpoint_info *info)
{
    int rc = PL_OK;
    for (int l = 0; l < NUM_LEVELS && !rc; l++) {
        for (int i = 0; i < cap->v->n[l] && !rc; i++) {
            const file_meta *f = cap->v->files[l][i];
            char *to = db_file_name(dir, f->number, FILE_TABLE);
            if (!to)
                return PL_FAIL(PL_NOMEM, "out of memory");
            rc = env_link(f->path, to);
            if (!rc) {
                info->linked++;
            } else if (pl_errno() == EXDEV || pl_errno() == EPERM || pl_errno() == EMLINK ||
                       pl_errno() == EOPNOTSUPP || pl_errno() == ENOSYS) {
                int fd;
                rc = env_open(f->path, O_RDONLY, &fd);
                if (!rc) {
                    rc = env_copy_fd(fd, f->m.file_size, f->path, to);
                    env_close(fd);
                }
            }
            free(to);
            info->tables++;
        }
    }
    return rc;
}

static int copy_wals(const db_state *cap, const char *dir, checkpoint_info *info)
{
    for (size_t i = 0; i < cap->nwals; i++) {
        const db_state_wal *w = &cap->wals[i];
        char *to = db_file_name(dir, w->number, FILE_WAL);
        if (!to)
            return PL_FAIL(PL_NOMEM, "out of memory");
        int rc = env_copy_fd(w->fd, w->len, "a WAL", to);
        free(to);
        if (rc)
            return rc;
        info->wal_bytes += w->len;
    }
    return PL_OK;
}

/* CHECKPOINT: what state this is and where from (for point-in-time restores, which replay the
 * source's kept WALs after it):  "lsn N\ntime_us N\nsource PATH\n".  Fsynced (its name with the
 * manifest's directory sync). */
static int write_description(pl_db *db, const db_state *cap, uint64_t time_us, const char *dir)
{
    char *src = realpath(db_dir(db), NULL);
    const char *from = src ? src : db_dir(db);
    size_t cap_len = strlen(from) + 80;
    char *body = malloc(cap_len), *p = db_file_name(dir, 0, FILE_CHECKPOINT);
    int rc = PL_FAIL(PL_NOMEM, "out of memory");
    if (body && p) {
        int n = snprintf(body, cap_len, "lsn %" PRIu64 "\ntime_us %" PRIu64 "\nsource %s\n", cap->lsn, time_us, from);
        rc = env_write_file(p, body, (size_t)n);
    }
    free(src);
    free(body);
    free(p);
    /* LOCK: what marks a directory as a database (open with create_if_missing=False looks for it). */
    char *lock = db_file_name(dir, 0, FILE_LOCK);
    if (!rc)
        rc = lock ? env_write_file(lock, "", 0) : PL_FAIL(PL_NOMEM, "out of memory");
    free(lock);
    return rc;
}

/* MANIFEST (one edit: the captured version) and CURRENT, durable with the directory. */
static int write_manifest(const db_state *cap, const char *dir)
{
    version_edit e;
    edit_init(&e);
    e.has_log_number = e.has_next_file = e.has_last_lsn = 1;
    e.log_number = cap->log_number;
    e.last_lsn = cap->last_lsn;
    uint64_t number = cap->next_file; /* above every file the capture names */
    e.next_file = number + 1;
    int rc = PL_OK;
    for (int l = 0; l < NUM_LEVELS && !rc; l++)
        for (int i = 0; i < cap->v->n[l] && !rc; i++)
            rc = edit_add_file(&e, l, cap->v->files[l][i]);
    if (!rc)
        rc = manifest_create(dir, number, 1, &e, NULL, NULL, NULL);
    edit_free(&e);
    return rc;
}

static char *parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

int checkpoint_create(pl_db *db, const char *path_in, checkpoint_info *info)
{
    memset(info, 0, sizeof *info);
    size_t n = strlen(path_in);
    while (n > 1 && path_in[n - 1] == '/')
        n--;
    if (n == 0)
        return PL_FAIL(PL_INVALID, "checkpoint: the path is empty");
    char *path = strndup(path_in, n), *tmp = malloc(n + 5), *parent = path ? parent_dir(path) : NULL;
    if (!path || !tmp || !parent) {
        free(path);
        free(tmp);
        free(parent);
        return PL_FAIL(PL_NOMEM, "out of memory");
    }
    snprintf(tmp, n + 5, "%s.tmp", path);
    struct stat st;
    db_state cap = {0};
    int rc = PL_OK, staged = 0;
    if (lstat(path, &st) == 0)
        rc = PL_FAIL(PL_EXISTS, "checkpoint: %s already exists (a checkpoint makes a new directory)", path);
    else if (errno != ENOENT)
        rc = PL_IOFAIL(errno, "stat %s", path);
    if (!rc)
        rc = remove_staging(tmp);
    if (!rc) {
        staged = 1; /* (also when mkdir made it but the fsync of its parent failed) */
        rc = env_mkdir(tmp);
    }
    if (!rc)
        rc = db_capture(db, &cap);
    uint64_t when = env_wall_us(); /* every write in the copy was acknowledged before this */
    if (!rc) {
        info->lsn = cap.lsn;
        env_test_hook("checkpoint_captured");
        rc = copy_tables(&cap, tmp, info);
    }
    if (!rc)
        rc = write_description(db, &cap, when, tmp);
    if (!rc)
        rc = copy_wals(&cap, tmp, info);
    if (!rc)
        rc = write_manifest(&cap, tmp); /* fsyncs tmp: every name above is durable with it */
    db_capture_release(&cap);
    if (!rc) {
        env_kill_point("checkpoint_rename");
        env_test_hook("checkpoint_rename");
        rc = env_rename(tmp, path);
    }
    const char *made = tmp; /* what a failure leaves to remove */
    if (!rc) {
        made = path;
        rc = env_sync_dir(parent); /* (failing, the new name may not survive a power cut) */
    }
    if (rc && staged) {
        /* Keep the first error's message: the clean-up may fail too (the next checkpoint to this
         * path removes a staging directory left behind). */
        pl_error_state first;
        pl_error_save(&first);
        remove_staging(made);
        pl_error_restore(&first, rc);
    }
    free(path);
    free(tmp);
    free(parent);
    return rc;
}

int pl_db_checkpoint(pl_db *db, const char *path, uint64_t *lsn)
{
    checkpoint_info info;
    int rc = checkpoint_create(db, path, &info);
    if (!rc && lsn)
        *lsn = info.lsn;
    return rc;
}
