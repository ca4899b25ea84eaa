/* env.c -- POSIX file I/O with fault injection, kill points and power-loss tracking, and the test entry
 * points of testhooks.h over them; see env.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "env.h"

#include "status.h"
#include "testhooks.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- fault injection ---- */

static atomic_int fault_ops;       /* 0: off */
static atomic_long fault_countdown;
static atomic_int fault_err;
static atomic_int fault_persistent;
static atomic_int fault_fired;
static atomic_long fault_nth;

void env_fault_set(int ops, long nth, int err, int persistent)
{
    atomic_store(&fault_ops, 0);
    atomic_store(&fault_countdown, nth);
    atomic_store(&fault_nth, nth);
    atomic_store(&fault_err, err ? err : EIO);
    atomic_store(&fault_persistent, persistent);
    atomic_store(&fault_fired, 0);
    atomic_store(&fault_ops, ops);
}

void env_fault_clear(void) { atomic_store(&fault_ops, 0); }

long env_fault_calls(void) { return atomic_load(&fault_nth) - atomic_load(&fault_countdown); }

/* ---- the test entry points (testhooks.h) ---- */

int pl_test_fault(const char *op, long nth, int err, int persistent)
{
    static const struct {
        const char *name;
        int ops;
    } names[] = {{"open", ENV_OP_OPEN}, {"read", ENV_OP_READ}, {"write", ENV_OP_WRITE},
                 {"sync", ENV_OP_SYNC}, {"rename", ENV_OP_RENAME}, {"unlink", ENV_OP_UNLINK},
                 {"short_write", ENV_OP_WRITE | ENV_OP_SHORT},
                 {"all", ENV_OP_ALL}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(op, names[i].name) == 0) {
            env_fault_set(names[i].ops, nth, err, persistent);
            return PL_OK;
        }
    return PL_FAIL(PL_INVALID, "unknown I/O operation class '%s'", op);
}

void pl_test_fault_clear(void) { env_fault_clear(); }

long pl_test_fault_calls(void) { return env_fault_calls(); }

int pl_test_set(const char *name, uint64_t value)
{
    for (const test_knob *k = db_test_knobs; k->name; k++)
        if (strcmp(name, k->name) == 0 && value >= k->min) {
            *k->value = value;
            return PL_OK;
        }
    return PL_FAIL(PL_MISUSE, "_test_set: unknown name or bad value: %s", name);
}

/* Returns an errno to fail with, or 0. */
static int fault_check(int op)
{
    if (!(atomic_load_explicit(&fault_ops, memory_order_relaxed) & op))
        return 0;
    if (atomic_load(&fault_fired) && atomic_load(&fault_persistent))
        return atomic_load(&fault_err);
    if (atomic_fetch_sub(&fault_countdown, 1) == 1) {
        atomic_store(&fault_fired, 1);
        return atomic_load(&fault_err);
    }
    return 0;
}

#define FAULT(op, what, path)                                                    \
    do {                                                                         \
        int e_ = fault_check(op);                                                \
        if (e_)                                                                  \
            return PL_IOFAIL(e_, "%s %s (injected)", (what), (path) ? (path) : ""); \
    } while (0)

/* ---- kill points ---- */

static pthread_once_t kill_once = PTHREAD_ONCE_INIT;
static char kill_name[128];
static atomic_long kill_countdown;

static void kill_init(void)
{
    const char *s = getenv("PYLSM_KILL_POINT");
    if (!s || !*s)
        return;
    snprintf(kill_name, sizeof kill_name, "%s", s);
    long n = 1;
    char *colon = strchr(kill_name, ':');
    if (colon) {
        *colon = 0;
        n = strtol(colon + 1, NULL, 10);
        if (n < 1)
            n = 1;
    }
    atomic_store(&kill_countdown, n);
}

void env_kill_point(const char *name)
{
    pthread_once(&kill_once, kill_init);
    if (!kill_name[0] || strcmp(name, kill_name) != 0)
        return;
    if (atomic_fetch_sub(&kill_countdown, 1) == 1)
        _exit(KILL_EXIT_CODE);
}

/* ---- test hooks ---- */

static _Atomic(env_hook_fn) hook_fn;
static void *_Atomic hook_ctx;

void env_set_test_hook(env_hook_fn fn, void *ctx)
{
    atomic_store(&hook_ctx, ctx);
    atomic_store(&hook_fn, fn);
}

void env_test_hook(const char *name)
{
    env_hook_fn fn = atomic_load_explicit(&hook_fn, memory_order_acquire);
    if (fn)
        fn(atomic_load(&hook_ctx), name);
}

/* ---- power-loss tracking ---- */

struct tracked {
    char *path;
    uint64_t durable_len;
    int name_durable;
    int is_dir;
    struct tracked *next;
};
static pthread_mutex_t track_mu = PTHREAD_MUTEX_INITIALIZER;
static int track_on;
static struct tracked *track_list;

void env_track_sync(int on)
{
    pthread_mutex_lock(&track_mu);
    track_on = on;
    if (!on) {
        while (track_list) {
            struct tracked *t = track_list;
            track_list = t->next;
            free(t->path);
            free(t);
        }
    }
    pthread_mutex_unlock(&track_mu);
}

static struct tracked *track_find(const char *path, int create)
{
    for (struct tracked *t = track_list; t; t = t->next)
        if (strcmp(t->path, path) == 0)
            return t;
    if (!create)
        return NULL;
    struct tracked *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->path = strdup(path);
    if (!t->path) {
        free(t);
        return NULL;
    }
    t->next = track_list;
    track_list = t;
    return t;
}

static void track_created(const char *path, int is_dir)
{
    pthread_mutex_lock(&track_mu);
    if (track_on) {
        struct tracked *t = track_find(path, 1);
        if (t) {
            t->durable_len = 0;
            t->name_durable = 0;
            t->is_dir = is_dir;
        }
    }
    pthread_mutex_unlock(&track_mu);
}

static void track_synced(const char *path, uint64_t len)
{
    pthread_mutex_lock(&track_mu);
    if (track_on && path) {
        struct tracked *t = track_find(path, 0);
        if (t)
            t->durable_len = len;
    }
    pthread_mutex_unlock(&track_mu);
}

static void track_dir_synced(const char *dir)
{
    size_t n = strlen(dir);
    int cwd = strcmp(dir, ".") == 0; /* entries named without a directory */
    pthread_mutex_lock(&track_mu);
    if (track_on)
        for (struct tracked *t = track_list; t; t = t->next)
            if (cwd ? !strchr(t->path, '/')
                    : strncmp(t->path, dir, n) == 0 && t->path[n] == '/' && !strchr(t->path + n + 1, '/'))
                t->name_durable = 1;
    pthread_mutex_unlock(&track_mu);
}

int env_name_durable(const char *path)
{
    pthread_mutex_lock(&track_mu);
    struct tracked *t = track_on ? track_find(path, 0) : NULL;
    int r = t ? t->name_durable : 1;
    pthread_mutex_unlock(&track_mu);
    return r;
}

static void track_forget(const char *path)
{
    pthread_mutex_lock(&track_mu);
    for (struct tracked **pp = &track_list; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->path, path) == 0) {
            struct tracked *t = *pp;
            *pp = t->next;
            free(t->path);
            free(t);
            break;
        }
    }
    pthread_mutex_unlock(&track_mu);
}

static int remove_entry(const char *p, const struct stat *st, int flag, struct FTW *f) { return remove(p); }

int env_drop_unsynced(void)
{
    pthread_mutex_lock(&track_mu);
    for (struct tracked *t = track_list; t; t = t->next) {
        if (t->is_dir)
            continue;
        if (!t->name_durable)
            unlink(t->path);
        else if (truncate(t->path, (off_t)t->durable_len) != 0 && errno != ENOENT) {
            pthread_mutex_unlock(&track_mu);
            return PL_IOFAIL(errno, "truncate %s", t->path);
        }
    }
    /* A directory whose name never became durable is gone, with all it held. */
    for (struct tracked *t = track_list; t; t = t->next)
        if (t->is_dir && !t->name_durable)
            nftw(t->path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    pthread_mutex_unlock(&track_mu);
    env_track_sync(0);
    return PL_OK;
}

/* ---- file operations ---- */

int env_open(const char *path, int flags, int *fd)
{
    FAULT(ENV_OP_OPEN, "open", path);
    int created = 0;
    if (flags & O_CREAT) {
        struct stat st;
        created = stat(path, &st) != 0;
    }
    int f;
    do
        f = open(path, flags | O_CLOEXEC, 0644);
    while (f < 0 && errno == EINTR);
    if (f < 0)
        return PL_IOFAIL(errno, "open %s", path);
    if (created)
        track_created(path, 0);
    *fd = f;
    return PL_OK;
}

void env_close(int fd)
{
    if (fd >= 0)
        close(fd);
}

/* An injected write failure (PL_IOERR), or 0.  With ENV_OP_SHORT in the mask, half the bytes are
 * written first (at off, or at the file position when off < 0): a write cut short by ENOSPC. */
static int write_fault(int fd, const void *buf, size_t n, int64_t off, const char *path)
{
    int e = fault_check(ENV_OP_WRITE);
    if (!e)
        return 0;
    if ((atomic_load(&fault_ops) & ENV_OP_SHORT) && n > 1) {
        ssize_t w = off < 0 ? write(fd, buf, n / 2) : pwrite(fd, buf, n / 2, (off_t)off);
        (void)w;
    }
    return PL_IOFAIL(e, "write %s (injected)", path ? path : "");
}

int env_write(int fd, const void *buf, size_t n, const char *path)
{
    int rc = write_fault(fd, buf, n, -1, path);
    if (rc)
        return rc;
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return PL_IOFAIL(errno, "write %s", path);
        }
        p += w;
        n -= (size_t)w;
    }
    return PL_OK;
}

int env_pwrite(int fd, const void *buf, size_t n, uint64_t off, const char *path)
{
    int rc = write_fault(fd, buf, n, (int64_t)off, path);
    if (rc)
        return rc;
    const char *p = buf;
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return PL_IOFAIL(errno, "write %s", path);
        }
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return PL_OK;
}

/* Read up to n bytes at off into buf, stopping early only at the end of the file: *got says how many. */
static int pread_upto(int fd, void *buf, size_t n, uint64_t off, const char *path, size_t *got)
{
    FAULT(ENV_OP_READ, "read", path);
    char *p = buf;
    *got = 0;
    while (*got < n) {
        ssize_t r = pread(fd, p + *got, n - *got, (off_t)(off + *got));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return PL_IOFAIL(errno, "read %s", path);
        }
        if (r == 0)
            break;
        *got += (size_t)r;
    }
    return PL_OK;
}

int env_pread(int fd, void *buf, size_t n, uint64_t off, const char *path)
{
    size_t got;
    int rc = pread_upto(fd, buf, n, off, path, &got);
    if (!rc && got < n)
        rc = PL_FAIL(PL_CORRUPT, "%s: truncated: read past the end at offset %llu", path,
                     (unsigned long long)(off + got));
    return rc;
}

int env_sync(int fd, uint64_t len, const char *path)
{
    FAULT(ENV_OP_SYNC, "fdatasync", path);
    if (fdatasync(fd) != 0)
        return PL_IOFAIL(errno, "fdatasync %s", path);
    track_synced(path, len);
    return PL_OK;
}

void env_start_writeback(int fd, uint64_t off, uint64_t len)
{
    (void)sync_file_range(fd, (off_t)off, (off_t)len, SYNC_FILE_RANGE_WRITE);
}

int env_sync_dir(const char *dir)
{
    FAULT(ENV_OP_SYNC, "fsync directory", dir);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return PL_IOFAIL(errno, "open directory %s", dir);
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc != 0)
        return PL_IOFAIL(e, "fsync directory %s", dir);
    track_dir_synced(dir);
    return PL_OK;
}

int env_rename(const char *from, const char *to)
{
    FAULT(ENV_OP_RENAME, "rename", from);
    if (rename(from, to) != 0)
        return PL_IOFAIL(errno, "rename %s to %s", from, to);
    pthread_mutex_lock(&track_mu);
    if (track_on) {
        struct tracked *t = track_find(from, 0);
        struct tracked *old = track_find(to, 0);
        if (old && old != t) {
            free(old->path);
            old->path = strdup("");
        }
        if (t) {
            char *p = strdup(to);
            if (p) {
                free(t->path);
                t->path = p;
                t->name_durable = 0;
            }
        }
        /* A directory renamed: what is tracked inside it now lives under the new name. */
        size_t fl = strlen(from), tl = strlen(to);
        for (struct tracked *x = track_list; x; x = x->next) {
            if (strncmp(x->path, from, fl) != 0 || x->path[fl] != '/')
                continue;
            size_t rest = strlen(x->path + fl);
            char *p = malloc(tl + rest + 1);
            if (p) {
                memcpy(p, to, tl);
                memcpy(p + tl, x->path + fl, rest + 1);
                free(x->path);
                x->path = p;
            }
        }
    }
    pthread_mutex_unlock(&track_mu);
    return PL_OK;
}

int env_unlink(const char *path)
{
    FAULT(ENV_OP_UNLINK, "unlink", path);
    if (unlink(path) != 0 && errno != ENOENT)
        return PL_IOFAIL(errno, "unlink %s", path);
    track_forget(path);
    return PL_OK;
}

int env_truncate(int fd, uint64_t len, const char *path)
{
    FAULT(ENV_OP_WRITE, "truncate", path);
    if (ftruncate(fd, (off_t)len) != 0)
        return PL_IOFAIL(errno, "truncate %s", path);
    return PL_OK;
}

int env_allocate(int fd, uint64_t off, uint64_t len, const char *path)
{
    FAULT(ENV_OP_WRITE, "allocate", path);
    int e = posix_fallocate(fd, (off_t)off, (off_t)len);
    if (e != 0)
        return PL_IOFAIL(e, "allocate %s", path);
    return PL_OK;
}

int env_file_size(int fd, uint64_t *size, const char *path)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return PL_IOFAIL(errno, "stat %s", path);
    *size = (uint64_t)st.st_size;
    return PL_OK;
}

/* The directory holding path ("." for a bare name), written into buf. */
static void parent_of(const char *path, char *buf, size_t cap)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(buf, cap, ".");
    else if (slash == path)
        snprintf(buf, cap, "/");
    else
        snprintf(buf, cap, "%.*s", (int)(slash - path), path);
}

int env_link(const char *from, const char *to)
{
    FAULT(ENV_OP_OPEN, "link", to);
    if (link(from, to) != 0)
        return PL_IOFAIL(errno, "link %s to %s", from, to);
    pthread_mutex_lock(&track_mu);
    if (track_on) {
        /* The data is the source's (durable as far as the source is); the new name is not yet. */
        struct tracked *src = track_find(from, 0);
        struct stat st;
        uint64_t durable = src ? src->durable_len : stat(to, &st) == 0 ? (uint64_t)st.st_size : 0;
        struct tracked *t = track_find(to, 1);
        if (t) {
            t->durable_len = durable;
            t->name_durable = 0;
            t->is_dir = 0;
        }
    }
    pthread_mutex_unlock(&track_mu);
    return PL_OK;
}

int env_copy_fd(int src_fd, uint64_t len, const char *src_path, const char *to)
{
    int fd, rc = env_open(to, O_WRONLY | O_CREAT | O_EXCL, &fd);
    if (rc)
        return rc;
    uint64_t done = 0;
    int plain = 0; /* copy_file_range unsupported here: read and write */
    char *buf = NULL;
    while (!rc && done < len) {
        size_t want = len - done > (8u << 20) ? (8u << 20) : (size_t)(len - done);
        int e = fault_check(ENV_OP_WRITE);
        if (e) {
            rc = PL_IOFAIL(e, "copy %s to %s (injected)", src_path, to);
            break;
        }
        if (!plain) {
            loff_t in = (loff_t)done, out = (loff_t)done;
            ssize_t n = copy_file_range(src_fd, &in, fd, &out, want, 0);
            if (n > 0) {
                done += (uint64_t)n;
                continue;
            }
            if (n == 0) {
                rc = PL_FAIL(PL_CORRUPT, "copy %s: the file ends at %" PRIu64 " of %" PRIu64 " bytes", src_path,
                             done, len);
                break;
            }
            if (errno == EINTR)
                continue;
            if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP && errno != EPERM) {
                rc = PL_IOFAIL(errno, "copy %s to %s", src_path, to);
                break;
            }
            plain = 1;
        }
        if (!buf && !(buf = malloc(1u << 20))) {
            rc = PL_FAIL(PL_NOMEM, "out of memory");
            break;
        }
        size_t n = want > (1u << 20) ? (1u << 20) : want;
        rc = env_pread(src_fd, buf, n, done, src_path);
        if (!rc)
            rc = env_pwrite(fd, buf, n, done, to);
        done += n;
    }
    free(buf);
    if (!rc)
        rc = env_sync(fd, len, to);
    env_close(fd);
    if (rc)
        unlink(to);
    return rc;
}

int env_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int env_rmdir(const char *path)
{
    FAULT(ENV_OP_UNLINK, "rmdir", path);
    if (rmdir(path) != 0)
        return PL_IOFAIL(errno, "rmdir %s", path);
    return PL_OK;
}

int env_mkdir(const char *path)
{
    FAULT(ENV_OP_OPEN, "mkdir", path);
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    char *p = malloc(n + 1), *parent = malloc(n + 2);
    if (!p || !parent) {
        free(p);
        free(parent);
        return PL_FAIL(PL_NOMEM, "out of memory");
    }
    memcpy(p, path, n);
    p[n] = 0;
    /* Each missing component in turn, from the outermost: mkdir, then fsync of the directory that
     * holds it, so that the new name is durable before anything inside it is written. */
    int rc = PL_OK;
    for (size_t i = 1; i <= n && !rc; i++) {
        if (i < n && p[i] != '/')
            continue;
        char c = p[i];
        p[i] = 0;
        struct stat st;
        if (stat(p, &st) != 0) {
            if (mkdir(p, 0755) != 0 && errno != EEXIST) {
                rc = PL_IOFAIL(errno, "mkdir %s", p);
            } else {
                track_created(p, 1);
                parent_of(p, parent, n + 2);
                rc = env_sync_dir(parent);
            }
        } else if (!S_ISDIR(st.st_mode)) {
            rc = PL_IOFAIL(ENOTDIR, "mkdir %s", p);
        }
        p[i] = c;
    }
    free(p);
    free(parent);
    return rc;
}

int env_read_file(const char *path, char **data, size_t *len)
{
    int fd, rc = env_open(path, O_RDONLY, &fd);
    if (rc)
        return rc;
    uint64_t size;
    char *buf = NULL;
    rc = env_file_size(fd, &size, path);
    if (rc)
        goto out;
    buf = malloc(size + 1);
    if (!buf) {
        rc = PL_FAIL(PL_NOMEM, "out of memory reading %s", path);
        goto out;
    }
    /* A file that shrinks while it is read (a live writer cutting its WAL's preallocated tail,
     * seen by a read-only handle) holds what was read: end there. */
    size_t got;
    rc = pread_upto(fd, buf, (size_t)size, 0, path, &got);
    if (rc)
        goto out;
    size = got;
    buf[size] = 0;
    *data = buf;
    *len = size;
    buf = NULL;
out:
    free(buf);
    env_close(fd);
    return rc;
}

int env_write_file(const char *path, const void *data, size_t len)
{
    int fd, rc = env_open(path, O_WRONLY | O_CREAT | O_TRUNC, &fd);
    if (rc)
        return rc;
    rc = env_write(fd, data, len, path);
    if (!rc)
        rc = env_sync(fd, len, path);
    env_close(fd);
    return rc;
}

/* The locks this process holds, by file identity: a second handle in the same process is told so
 * (the common case is a notebook cell that opens the database run twice). */
struct held_lock {
    dev_t dev;
    ino_t ino;
    int fd;
    struct held_lock *next;
};
static struct held_lock *held_locks;
static pthread_mutex_t held_mu = PTHREAD_MUTEX_INITIALIZER;

static int held_here(const struct stat *st)
{
    pthread_mutex_lock(&held_mu);
    int found = 0;
    for (struct held_lock *h = held_locks; h && !found; h = h->next)
        found = h->dev == st->st_dev && h->ino == st->st_ino;
    pthread_mutex_unlock(&held_mu);
    return found;
}

int env_lock(const char *path, int *fd)
{
    int f, rc = env_open(path, O_RDWR | O_CREAT, &f);
    if (rc)
        return rc;
    struct stat st;
    if (fstat(f, &st) != 0) {
        int e = errno;
        close(f);
        return PL_IOFAIL(e, "stat %s", path);
    }
    if (flock(f, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(f);
        if (e == EWOULDBLOCK && held_here(&st))
            return PL_FAIL(PL_BUSY, "%s is locked by this process: another handle on this database is "
                           "still open here (often from running a notebook cell twice); close it with "
                           "db.close() or open it in a with block, or open this one with read_only=True",
                           path);
        if (e == EWOULDBLOCK)
            return PL_FAIL(PL_BUSY, "%s is locked: the database is open in another process "
                           "(open it with read_only=True to read beside it)", path);
        return PL_IOFAIL(e, "lock %s", path);
    }
    struct held_lock *h = malloc(sizeof *h);
    if (h) { /* without the entry only the message is less precise */
        h->dev = st.st_dev;
        h->ino = st.st_ino;
        h->fd = f;
        pthread_mutex_lock(&held_mu);
        h->next = held_locks;
        held_locks = h;
        pthread_mutex_unlock(&held_mu);
    }
    *fd = f;
    return PL_OK;
}

void env_unlock(int fd)
{
    pthread_mutex_lock(&held_mu);
    for (struct held_lock **pp = &held_locks; *pp; pp = &(*pp)->next) {
        if ((*pp)->fd == fd) {
            struct held_lock *h = *pp;
            *pp = h->next;
            free(h);
            break;
        }
    }
    pthread_mutex_unlock(&held_mu);
    close(fd);
}

int env_list_dir(const char *dir, int (*fn)(void *ctx, const char *name), void *ctx)
{
    DIR *d = opendir(dir);
    if (!d)
        return PL_IOFAIL(errno, "list %s", dir);
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        rc = fn(ctx, e->d_name);
        if (rc)
            break;
    }
    closedir(d);
    return rc;
}

int env_map(int fd, size_t len, char **addr, const char *path)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return PL_IOFAIL(errno, "mmap %s", path);
    *addr = p;
    return PL_OK;
}

void env_unmap(char *addr, size_t len)
{
    if (addr)
        munmap(addr, len);
}

/* ---- read-only mappings and the SIGBUS guard ---- */

static __thread env_guard *guard_top __attribute__((tls_model("initial-exec")));
static struct sigaction bus_prev;
static pthread_once_t bus_once = PTHREAD_ONCE_INIT;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
    env_guard *g = guard_top;
    if (g) {
        guard_top = g->prev;
        siglongjmp(g->jb, 1); /* SA_NODEFER: SIGBUS is not left blocked */
    }
    if (bus_prev.sa_flags & SA_SIGINFO) {
        if (bus_prev.sa_sigaction) {
            bus_prev.sa_sigaction(sig, si, uc);
            return;
        }
    } else if (bus_prev.sa_handler != SIG_DFL && bus_prev.sa_handler != SIG_IGN) {
        bus_prev.sa_handler(sig);
        return;
    }
    /* Not ours and nobody else's: the default action, when the faulting access runs again. */
    signal(SIGBUS, SIG_DFL);
}

static void bus_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, &bus_prev);
}

int env_map_readonly(int fd, size_t len, const char **addr, const char *path)
{
    FAULT(ENV_OP_OPEN, "mmap", path);
    pthread_once(&bus_once, bus_install);
    void *p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return PL_IOFAIL(errno, "mmap %s", path);
    *addr = p;
    return PL_OK;
}

void env_advise_random(const char *addr, size_t len, int random)
{
    if (addr && len)
        madvise((void *)addr, len, random ? MADV_RANDOM : MADV_NORMAL);
}

void env_advise_willneed(const char *addr, size_t len)
{
    uintptr_t a = (uintptr_t)addr, page = (uintptr_t)sysconf(_SC_PAGESIZE), lo = a & ~(page - 1);
    if (addr && len)
        madvise((void *)lo, len + (a - lo), MADV_WILLNEED);
}

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

int env_map_resident(const char *path, const char *addr, size_t len, unsigned char *vec)
{
    struct stat st;
    /* The kernel's rule (mm/mincore.c, can_do_mincore): the owner, a writer, or CAP_FOWNER sees the
     * truth; anyone else sees every page resident, which would read the whole file in. */
    if (stat(path, &st) != 0 ||
        (st.st_uid != geteuid() && geteuid() != 0 && faccessat(AT_FDCWD, path, W_OK, AT_EACCESS) != 0))
        return -1;
    return len && mincore((void *)addr, len, vec) != 0 ? -1 : 0;
}

int env_map_populate(const char *addr, size_t len)
{
    if (!len || madvise((void *)addr, len, MADV_POPULATE_READ) == 0)
        return 0;
    return errno == EINVAL ? 1 : -1;
}

size_t env_page_size(void)
{
    long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? (size_t)p : 4096;
}

void *env_alloc_pages(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void env_free_pages(void *p, size_t len)
{
    if (p)
        munmap(p, len);
}

void env_unmap_readonly(const char *addr, size_t len)
{
    if (addr)
        munmap((void *)addr, len);
}

int env_read_check(const char *path)
{
    FAULT(ENV_OP_READ, "read", path);
    return PL_OK;
}

void env_guard_enter(env_guard *g)
{
    g->prev = guard_top;
    guard_top = g;
}

void env_guard_leave(env_guard *g) { guard_top = g->prev; }

uint64_t env_physical_memory(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    return pages > 0 && size > 0 ? (uint64_t)pages * (uint64_t)size : 0;
}

void env_thread_name(const char *name) { prctl(PR_SET_NAME, name, 0, 0, 0); }

uint64_t env_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t env_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}
