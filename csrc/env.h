/*
 * env.h -- every file operation of the engine, in one place, with hooks for tests.
 *
 * All functions return PL_OK or PL_IOERR (with errno and the path in pl_errmsg()).  Short reads and
 * writes and EINTR are handled here.  Files are opened O_CLOEXEC.
 *
 * Test hooks (process-wide, off unless set):
 *  - Fault injection: env_fault_set(ops, nth, err, persistent) makes the nth call (1-based, counted from
 *    the call) of any operation in the `ops` mask fail with errno `err`; `persistent` keeps failing every
 *    later call too.  The op classes are ENV_OP_*.
 *  - Kill points: with PYLSM_KILL_POINT=name[:n] in the environment, env_kill_point("name") ends the
 *    process with _exit(KILL_EXIT_CODE) at its nth hit (default 1), simulating kill -9 at that point.
 *  - Hooks: env_test_hook("name") runs a test's function at that point (see below).
 *  - Power loss: when tracking is on (env_track_sync(1)), env_sync records the length each file had
 *    when it was last made durable, and env_sync_dir the files whose names are durable;
 *    env_drop_unsynced() then truncates every tracked file to its durable length and removes files
 *    and directories (env_mkdir's) whose directory entry was never synced.
 * The binding and the C tests reach the fault hooks through testhooks.h (pl_test_*, defined in env.c).
 *
 * Thread safety: all functions may be called from any thread.
 */
#ifndef PL_ENV_H
#define PL_ENV_H

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define ENV_OP_OPEN   0x01
#define ENV_OP_READ   0x02
#define ENV_OP_WRITE  0x04 /* write, pwrite, fallocate, ftruncate */
#define ENV_OP_SYNC   0x08 /* fsync, fdatasync, directory sync */
#define ENV_OP_RENAME 0x10
#define ENV_OP_UNLINK 0x20
#define ENV_OP_ALL    0x3f
#define ENV_OP_SHORT  0x40 /* with ENV_OP_WRITE: a failing write writes half its bytes first */

#define KILL_EXIT_CODE 137

int env_open(const char *path, int flags, int *fd);   /* flags as open(2); mode 0644 */
void env_close(int fd);
int env_write(int fd, const void *buf, size_t n, const char *path);
int env_pwrite(int fd, const void *buf, size_t n, uint64_t off, const char *path);
/* Read exactly n bytes at off; a short file gives PL_CORRUPT ("truncated"). */
int env_pread(int fd, void *buf, size_t n, uint64_t off, const char *path);
/* Make the first `len` bytes of the file durable (fdatasync); `len` only feeds power-loss tracking. */
int env_sync(int fd, uint64_t len, const char *path);
int env_sync_dir(const char *dir);
/* Start writing back [off, off + len) of a file being written (sync_file_range, SYNC_FILE_RANGE_WRITE),
 * so that its final env_sync finds most of it on disk: advisory, promises nothing (env_sync does),
 * and a failure (a file system without it) is ignored. */
void env_start_writeback(int fd, uint64_t off, uint64_t len);
int env_rename(const char *from, const char *to);
/* A second name for an existing file (link(2)): no data is copied; the new name is durable after an
 * env_sync_dir of its directory.  Fails (errno EXDEV, EPERM, ...) where hard links are not possible:
 * callers copy then. */
int env_link(const char *from, const char *to);
/* Create `to` (which must not exist) holding the first `len` bytes of the open file src_fd, and make
 * it durable (not its directory).  copy_file_range where the kernel can, else read and write. */
int env_copy_fd(int src_fd, uint64_t len, const char *src_path, const char *to);
/* Is path a directory (links followed)?  1 or 0, 0 also when it cannot be stat'ed.  A plain stat: no
 * fault is injected into it, and it counts for no class. */
int env_is_dir(const char *path);
/* Remove an empty directory. */
int env_rmdir(const char *path);
int env_unlink(const char *path);
int env_truncate(int fd, uint64_t len, const char *path);
int env_allocate(int fd, uint64_t off, uint64_t len, const char *path); /* reserve space, ENOSPC now */
int env_file_size(int fd, uint64_t *size, const char *path);
/* Create path and every missing directory above it (mkdir -p); each new name is made durable (fsync of
 * the directory holding it) before the next is created.  An existing directory is not an error. */
int env_mkdir(const char *path);
/* Read a whole (small) file into a malloc'd buffer. */
int env_read_file(const char *path, char **data, size_t *len);
/* Create `path` with `data`, fsync it (not its directory). */
int env_write_file(const char *path, const void *data, size_t len);
/* Take an exclusive flock() on path (created if missing); PL_BUSY if held elsewhere, saying whether
 * by this process.  env_unlock() releases it and closes fd. */
int env_lock(const char *path, int *fd);
void env_unlock(int fd);
/* Call fn(ctx, name) for each entry of dir except . and ..; stops at the first non-zero return. */
int env_list_dir(const char *dir, int (*fn)(void *ctx, const char *name), void *ctx);
/* Map the first len bytes of fd shared and writable (the WAL's append window), and unmap. */
int env_map(int fd, size_t len, char **addr, const char *path);
void env_unmap(char *addr, size_t len);

/* Map a whole file read-only (tables, read in place).  Reading a mapped page that the disk cannot
 * deliver (an I/O error, or a file cut shorter behind our back) raises SIGBUS: every read of such a
 * mapping runs under a guard, which turns that SIGBUS into an error return instead of a crash:
 *
 *     env_guard g;
 *     if (sigsetjmp(g.jb, 0) == 0) {
 *         env_guard_enter(&g);
 *         ... read the mapping (no locks taken, no memory allocated that the fault path must free) ...
 *         env_guard_leave(&g);
 *     } else {
 *         ... the read faulted: g is already left; report an error ...
 *     }
 *
 * The process-wide SIGBUS handler is installed by the first env_map_readonly; a SIGBUS outside any
 * guard goes to the handler that was there before (or the default action). */
int env_map_readonly(int fd, size_t len, const char **addr, const char *path);
void env_unmap_readonly(const char *addr, size_t len);
/* Read-around of a read-only mapping: random (a fault reads the page it needs) or the kernel's default
 * (a fault reads a window around the page, up to the device's read-ahead: 8 MiB on some disks); and
 * a request to read [addr, addr + len) in ahead, asynchronously.  Hints: errors are ignored. */
void env_advise_random(const char *addr, size_t len, int random);
void env_advise_willneed(const char *addr, size_t len);
/* Which pages of [addr, addr + len) (addr page-aligned), a mapping of the file at path, the page cache
 * holds: vec[i] & 1 for page i (mincore).  0; -1 when the kernel refuses, or would not tell: for a
 * file the process neither owns nor may write, Linux reports every page resident (since 5.0). */
int env_map_resident(const char *path, const char *addr, size_t len, unsigned char *vec);
/* Map [addr, addr + len) (addr page-aligned) into the page tables, reading in what is not in memory
 * (madvise(MADV_POPULATE_READ)), so that later reads take no page fault.  0; 1 where the kernel lacks
 * the advice (Linux < 5.14: the caller stops asking); -1 on another failure (an I/O error: the read
 * will report it).  Never raises SIGBUS. */
int env_map_populate(const char *addr, size_t len);
size_t env_page_size(void);
/* len bytes of zeroed memory straight from the OS (mmap), given back whole by env_free_pages: for big
 * buffers that come and go, which malloc would keep in its arenas.  NULL when out of memory. */
void *env_alloc_pages(size_t len);
void env_free_pages(void *p, size_t len);
typedef struct env_guard {
    sigjmp_buf jb;
    struct env_guard *prev;
} env_guard;
void env_guard_enter(env_guard *g);
/* The fault-injection point of a read that makes no system call (a mapped table): PL_OK, or the
 * injected PL_IOERR of an ENV_OP_READ fault. */
int env_read_check(const char *path);
void env_guard_leave(env_guard *g);
/* Bytes of physical memory (0 when unknown). */
uint64_t env_physical_memory(void);
/* Name the calling thread (up to 15 characters: `top -H`, `ps -L`, gdb and perf show it).  A hint. */
void env_thread_name(const char *name);
/* Monotonic clock in nanoseconds, and wall clock in microseconds. */
uint64_t env_now_ns(void);
uint64_t env_wall_us(void);

void env_kill_point(const char *name);
/* Test hooks: env_test_hook(name) calls the function set with env_set_test_hook (tests only; off
 * otherwise, a load and a branch), so a test can run code at a named point of a concurrent path. */
typedef void (*env_hook_fn)(void *ctx, const char *name);
void env_set_test_hook(env_hook_fn fn, void *ctx);
void env_test_hook(const char *name);

void env_fault_set(int ops, long nth, int err, int persistent);
void env_fault_clear(void);
/* How many calls of the classes set were counted since env_fault_set (tests size their sweeps by it). */
long env_fault_calls(void);
void env_track_sync(int on);
int env_drop_unsynced(void);
/* Tracking on: is path's directory entry durable (1 for a file created before tracking began)? */
int env_name_durable(const char *path);

#endif
