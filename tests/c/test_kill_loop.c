/* test_kill_loop.c -- kill -9 over and over on one database, against a model (issue 12, item 7).
 *
 * Each iteration forks a writer that opens the database (a sync strategy drawn per iteration), runs a
 * seeded sequence of operations -- puts, deletes, batches of up to 20 of either, flushes and full
 * compactions, over 2,000 keys, with a small memtable so that flushes and background compactions run
 * all the time -- and writes the index of each operation to a pipe after the call returned (an
 * acknowledgement).  The parent SIGKILLs it after a random number of acknowledgements, reopens the
 * database, scans it whole and compares it with its model: every acknowledged operation applied, and
 * the one in flight when the kill came either whole or not at all.  A kill -9 is not a power cut: the
 * WAL's bytes are in the page cache, so under every strategy an acknowledged write must survive.  The
 * database and the model carry over from one iteration to the next, so recovery runs on the state that
 * the previous recoveries, flushes and compactions left.
 *
 * KILL_LOOP_ITERS sets the count (make test: 40; make stress: 1,000), KILL_LOOP_SEED the first seed.
 * It prints the iterations, the acknowledged operations and the losses, which must be 0.
 */
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pylsm.h"
#include "testutil.h"

#define NKEYS 2000
#define MAX_OPS 400
#define MAX_BATCH 20

static char dir[64];


static unsigned long long rnd(unsigned long long *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* The model: each key's value, or NULL. */
static char *model[NKEYS];

typedef struct {
    int kind; /* 0 put, 1 delete */
    int key;
    char val[48];
} op;

enum { OP_WRITE, OP_BATCH, OP_FLUSH, OP_COMPACT };

typedef struct {
    int type;
    int n;
    op ops[MAX_BATCH];
} step;

/* Step j of iteration it, drawn from its seed alone (the writer and the parent draw the same). */
static void draw(unsigned long long iseed, int it, int j, step *s)
{
    unsigned long long r = iseed * 1000003ull + (unsigned long long)j * 7919ull + 1;
    for (int i = 0; i < 3; i++)
        rnd(&r);
    unsigned x = (unsigned)(rnd(&r) % 100);
    s->type = x < 70 ? OP_WRITE : x < 96 ? OP_BATCH : x < 99 ? OP_FLUSH : OP_COMPACT;
    s->n = s->type == OP_WRITE ? 1 : s->type == OP_BATCH ? 1 + (int)(rnd(&r) % MAX_BATCH) : 0;
    for (int i = 0; i < s->n; i++) {
        op *o = &s->ops[i];
        o->kind = rnd(&r) % 4 == 0;
        o->key = (int)(rnd(&r) % NKEYS);
        snprintf(o->val, sizeof o->val, "it%d-op%d-%d-%llx", it, j, i, rnd(&r) & 0xffffff);
    }
}

static void key_of(int k, char *buf) { snprintf(buf, 16, "key%05d", k); }

static void apply(char **m, const step *s)
{
    for (int i = 0; i < s->n; i++) {
        const op *o = &s->ops[i];
        free(m[o->key]);
        m[o->key] = o->kind ? NULL : strdup(o->val);
    }
}

static void options_for(unsigned long long iseed, pl_options *o)
{
    pl_options_init(o);
    o->memtable_bytes = 64 * 1024;
    unsigned long long r = iseed ^ 0x9e3779b97f4a7c15ull;
    rnd(&r);
    switch (rnd(&r) % 5) {
    case 0: o->sync_mode = PL_SYNC_NONE; break;
    case 1: o->sync_mode = PL_SYNC_EVERY_WRITE; break;
    case 2: o->sync_mode = PL_SYNC_EVERY_N; o->sync_count = 5; break;
    case 3: o->sync_mode = PL_SYNC_TIME_BASED; o->sync_interval_ms = 2; break;
    default: o->sync_mode = PL_SYNC_HYBRID; o->sync_count = 3; o->sync_interval_ms = 2; break;
    }
}

/* The writer: runs the steps, acknowledging each on fd after its call returned. */
static void writer(unsigned long long iseed, int it, int fd)
{
    pl_options o;
    options_for(iseed, &o);
    pl_db *db = NULL;
    if (pl_db_open(dir, &o, &db) != PL_OK) {
        fprintf(stderr, "writer: open: %s\n", pl_errmsg());
        _exit(3);
    }
    char k[16];
    for (int j = 0;; j++) {
        step s;
        draw(iseed, it, j, &s);
        int rc = PL_OK;
        if (s.type == OP_WRITE) {
            key_of(s.ops[0].key, k);
            rc = s.ops[0].kind ? pl_db_delete(db, k, strlen(k), 0)
                               : pl_db_put(db, k, strlen(k), s.ops[0].val, strlen(s.ops[0].val), 0);
        } else if (s.type == OP_BATCH) {
            pl_batch *b = pl_batch_new();
            for (int i = 0; i < s.n; i++) {
                key_of(s.ops[i].key, k);
                if (s.ops[i].kind)
                    pl_batch_delete(b, k, strlen(k));
                else
                    pl_batch_put(b, k, strlen(k), s.ops[i].val, strlen(s.ops[i].val));
            }
            rc = pl_db_write(db, b, 0);
            pl_batch_free(b);
        } else if (s.type == OP_FLUSH) {
            rc = pl_db_flush(db);
        } else {
            rc = pl_db_compact(db, NULL, 0, 0, NULL, 0, 0);
        }
        if (rc != PL_OK) {
            fprintf(stderr, "writer: step %d: %s\n", j, pl_errmsg());
            _exit(4);
        }
        int32_t ack = j;
        if (write(fd, &ack, sizeof ack) != (ssize_t)sizeof ack)
            _exit(5);
    }
}

/* The database's whole content equals model m. */
static int matches(pl_db *db, char **m, int *extra, int *missing, int *wrong)
{
    *extra = *missing = *wrong = 0;
    char seen[NKEYS] = {0};
    pl_iter *it = NULL;
    if (pl_iter_new(db, NULL, &it) != PL_OK)
        return 0;
    for (pl_iter_seek_first(it); pl_iter_valid(it); pl_iter_next(it)) {
        const char *k, *v;
        size_t kn, vn;
        pl_iter_key(it, &k, &kn);
        pl_iter_value(it, &v, &vn);
        int key = -1;
        if (kn == 8 && sscanf(k, "key%5d", &key) == 1 && key >= 0 && key < NKEYS) {
            seen[key] = 1;
            if (!m[key])
                (*extra)++;
            else if (strlen(m[key]) != vn || memcmp(m[key], v, vn) != 0)
                (*wrong)++;
        } else {
            (*extra)++;
        }
    }
    int st = pl_iter_status(it);
    pl_iter_free(it);
    for (int key = 0; key < NKEYS; key++)
        if (m[key] && !seen[key])
            (*missing)++;
    return st == PL_OK && !*extra && !*missing && !*wrong;
}

int main(void)
{
    const char *e = getenv("KILL_LOOP_ITERS");
    int iters = e ? atoi(e) : 40;
    e = getenv("KILL_LOOP_SEED");
    unsigned long long seed0 = e ? strtoull(e, NULL, 10) : 1;
    snprintf(dir, sizeof dir, "/tmp/pylsm-kill-loop-%d", (int)getpid());
    tu_rm_rf(dir);
    long acked_total = 0, in_flight_applied = 0, losses = 0;
    int done = 0;
    for (int it = 0; it < iters; it++) {
        unsigned long long iseed = seed0 * 1000003ull + (unsigned long long)it;
        unsigned long long r = iseed + 17;
        rnd(&r);
        int kill_after = (int)(rnd(&r) % MAX_OPS); /* acknowledgements before the kill */
        int p[2];
        if (pipe(p) != 0) {
            perror("pipe");
            return 2;
        }
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            close(p[0]);
            writer(iseed, it, p[1]);
            _exit(0);
        }
        close(p[1]);
        int acks = 0;
        int32_t a;
        while (acks < kill_after && read(p[0], &a, sizeof a) == (ssize_t)sizeof a)
            acks++;
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        while (read(p[0], &a, sizeof a) == (ssize_t)sizeof a) /* written before the kill */
            acks++;
        close(p[0]);
        if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
            fprintf(stderr, "iteration %d: the writer ended on its own (status %d) after %d steps\n", it,
                    status, acks);
            losses++;
            break;
        }
        acked_total += acks;
        /* The model after every acknowledged step, and after the one in flight too. */
        step s;
        for (int j = 0; j < acks; j++) {
            draw(iseed, it, j, &s);
            apply(model, &s);
        }
        char *with[NKEYS];
        for (int k = 0; k < NKEYS; k++)
            with[k] = model[k] ? strdup(model[k]) : NULL;
        draw(iseed, it, acks, &s);
        apply(with, &s);
        pl_options o;
        pl_options_init(&o);
        o.memtable_bytes = 64 * 1024;
        pl_db *db = NULL;
        int rc = pl_db_open(dir, &o, &db);
        int extra, missing, wrong, x2, m2, w2;
        if (rc != PL_OK) {
            fprintf(stderr, "iteration %d: reopen failed: %s\n", it, pl_errmsg());
            losses++;
        } else if (matches(db, model, &extra, &missing, &wrong)) {
            /* the step in flight did not land */
        } else if (matches(db, with, &x2, &m2, &w2)) {
            in_flight_applied++;
            for (int k = 0; k < NKEYS; k++) {
                free(model[k]);
                model[k] = with[k];
                with[k] = NULL;
            }
        } else {
            fprintf(stderr, "iteration %d (seed %llu, %d acknowledged steps): the database matches "
                            "neither the acknowledged state (%d extra, %d missing, %d wrong) nor it plus "
                            "the step in flight (%d extra, %d missing, %d wrong)\n",
                    it, iseed, acks, extra, missing, wrong, x2, m2, w2);
            losses++;
        }
        for (int k = 0; k < NKEYS; k++)
            free(with[k]);
        if (db)
            CHECK_RC(pl_db_close(db), PL_OK);
        done++;
        if (losses)
            break;
    }
    printf("kill loop: %d iterations, %ld acknowledged steps, %ld in-flight steps found applied, %ld "
           "losses\n", done, acked_total, in_flight_applied, losses);
    CHECK_EQ(losses, 0);
    CHECK_EQ(done, iters);
    for (int k = 0; k < NKEYS; k++)
        free(model[k]);
    tu_rm_rf(dir);
    return test_report();
}
