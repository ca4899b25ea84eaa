/* bench_disk.c -- the disk's raw rate of `write + fdatasync` for one small record.
 *
 * This is the physical limit that pylsm's fillsync benchmark is measured against: a WAL that makes every
 * put durable cannot go faster than one write() plus one fdatasync() per record on the same file system.
 *
 *   gcc -O2 -o bench_disk benchmarks/c/bench_disk.c
 *   ./bench_disk [DIR] [SECONDS] [RECORD_BYTES]       (defaults: ".", 2.0, 128)
 *
 * Two figures, each over about SECONDS of wall time (at most 1,000,000 records):
 *   append    -- write() appends to a new file, then fdatasync(): the file grows, so every sync also
 *                commits the new size (what an append-only WAL does). This is the reference figure.
 *   prealloc  -- the file is first filled with zeros and fsynced, then records are written in place
 *                (pwrite at increasing offsets) + fdatasync(): no size change, the best case for a WAL
 *                that preallocates its segments.
 * Output: one human line per mode, then one machine-readable line:
 *   RESULT record_bytes=128 append=<records/s> prealloc=<records/s>
 * The scratch file is DIR/bench_disk.<pid>.tmp and is removed before exit.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_RECORDS 1000000L

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *path)
{
    fprintf(stderr, "bench_disk: %s %s: %s\n", what, path, strerror(errno));
    unlink(path);
    exit(1);
}

/* Runs one mode; returns records per second. */
static double run(const char *path, int prealloc, double seconds, size_t rec)
{
    char *buf = malloc(rec);
    if (!buf) {
        fprintf(stderr, "bench_disk: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < rec; i++)
        buf[i] = (char)(i * 131 + 7);

    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        die("open", path);
    /* The file's creation is made durable first, so the loop measures records only. */
    if (fsync(fd) != 0)
        die("fsync", path);

    long limit = MAX_RECORDS;
    if (prealloc) {
        /* Enough zeros for the expected count: estimate from a short append-free probe. */
        size_t chunk = 1 << 20;
        char *zeros = calloc(1, chunk);
        if (!zeros)
            die("calloc", path);
        long want = (long)(seconds * 20000.0); /* 20k syncs/s is above any disk we expect */
        if (want > MAX_RECORDS)
            want = MAX_RECORDS;
        size_t total = (size_t)want * rec;
        for (size_t off = 0; off < total; off += chunk) {
            size_t n = total - off < chunk ? total - off : chunk;
            if (pwrite(fd, zeros, n, (off_t)off) != (ssize_t)n)
                die("pwrite zeros", path);
        }
        if (fsync(fd) != 0)
            die("fsync", path);
        free(zeros);
        limit = want;
    }

    long n = 0;
    double t0 = now(), t = t0;
    off_t off = 0;
    while (n < limit && t - t0 < seconds) {
        ssize_t w = prealloc ? pwrite(fd, buf, rec, off) : write(fd, buf, rec);
        if (w != (ssize_t)rec)
            die("write", path);
        if (fdatasync(fd) != 0)
            die("fdatasync", path);
        off += (off_t)rec;
        n++;
        if ((n & 7) == 0 || n < 8)
            t = now();
    }
    t = now();
    close(fd);
    unlink(path);
    free(buf);
    return (double)n / (t - t0);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : ".";
    double seconds = argc > 2 ? atof(argv[2]) : 2.0;
    size_t rec = argc > 3 ? (size_t)atol(argv[3]) : 128;
    if (seconds <= 0 || rec == 0) {
        fprintf(stderr, "usage: %s [DIR] [SECONDS>0] [RECORD_BYTES>0]\n", argv[0]);
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/bench_disk.%ld.tmp", dir, (long)getpid());

    double append = run(path, 0, seconds, rec);
    printf("append   write+fdatasync %zu B: %.0f records/s\n", rec, append);
    double pre = run(path, 1, seconds, rec);
    printf("prealloc write+fdatasync %zu B: %.0f records/s\n", rec, pre);
    printf("RESULT record_bytes=%zu append=%.1f prealloc=%.1f\n", rec, append, pre);
    return 0;
}
