/* fuzz_wal.c -- WAL replay (wal_replay, the code every open runs) on arbitrary bytes as a WAL file.
 *
 * Input: a flag byte (bit 0: fix the CRCs; bits 1-2: recovery mode; bit 3: the file is not the newest
 * WAL; bit 4: records below LSN 3 are skipped), then the file.  Each record's payload goes through
 * batch_iterate, as recovery does.  Asserted:
 *  - the result is PL_OK or PL_CORRUPT, never anything else, and the counters stay inside the file;
 *  - records come in strictly ascending LSN order, each at or after the end of the one before, and
 *    outside salvage exactly at it (a batch of n operations takes n LSNs);
 *  - the replay is a prefix: the file cut at valid_end replays cleanly (no error, no torn tail) to the
 *    very same records, which is what a second open after cutting a torn tail does;
 *  - in absolute mode nothing is ever dropped, and only a file of zeros (created, never written) may be
 *    torn. */
#include "batch.h"
#include "fuzz.h"

#define MAX_RECS 4096

typedef struct {
    uint64_t lsn[MAX_RECS];
    uint32_t crc[MAX_RECS];
    size_t n;
    uint64_t end;   /* LSN after the last record */
    int exact;      /* outside salvage: each record at exactly `end` */
    uint64_t skip_below;
} replayed;

static int count_op(void *ctx, uint32_t i, int kind, const char *k, size_t kl, const char *v, size_t vl)
{
    FUZZ_CHECK(kind == KIND_PUT || kind == KIND_DELETE, "kind %d", kind);
    return PL_OK;
}

static int apply(void *ctx, uint64_t lsn, const char *payload, size_t len)
{
    replayed *r = ctx;
    FUZZ_CHECK(len >= BATCH_HEADER, "payload of %zu bytes", len);
    uint32_t count = batch_rep_count(payload);
    FUZZ_CHECK(lsn >= r->skip_below, "lsn %llu applied below skip_below", (unsigned long long)lsn);
    if (r->n || r->end)
        FUZZ_CHECK(r->exact ? lsn == r->end : lsn >= r->end, "lsn %llu after end %llu",
                   (unsigned long long)lsn, (unsigned long long)r->end);
    if (r->n < MAX_RECS) {
        r->lsn[r->n] = lsn;
        r->crc[r->n] = crc_value(payload, len);
    }
    r->n++;
    r->end = lsn + count;
    return batch_iterate(payload, len, count_op, NULL) == PL_CORRUPT ? PL_CORRUPT : PL_OK;
}

static int all_zero(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned flags = data[0];
    int mode = (flags >> 1) & 3;
    if (mode > WAL_SALVAGE)
        mode = WAL_TOLERATE_TAIL;
    int is_last = !(flags & 8);
    uint64_t skip = (flags & 16) ? 3 : 0;
    size_t n = size - 1;
    char *file = malloc(n ? n : 1);
    memcpy(file, data + 1, n);
    if (flags & FUZZ_FIX_CRC)
        fuzz_fix_wal(file, n);
    const char *dir = fuzz_fresh_dir("wal");
    char path[300];
    snprintf(path, sizeof path, "%s/000001.wal", dir);
    fuzz_write_file(path, file, n);

    static replayed r1, r2;
    memset(&r1, 0, sizeof r1);
    r1.exact = mode != WAL_SALVAGE;
    r1.skip_below = skip;
    wal_replay_result res = {0};
    int rc = wal_replay(path, mode, is_last, skip, batch_record_lsns, apply, &r1, &res);
    FUZZ_RC(rc, PL_OK, PL_CORRUPT);
    if (rc == PL_OK) {
        FUZZ_CHECK(res.valid_end <= n, "valid_end %llu past %zu", (unsigned long long)res.valid_end, n);
        FUZZ_CHECK(res.dropped_bytes <= n, "dropped %llu of %zu", (unsigned long long)res.dropped_bytes, n);
        FUZZ_CHECK(r1.n <= res.records, "records %llu, applied %zu", (unsigned long long)res.records, r1.n);
        if (mode == WAL_ABSOLUTE) /* nothing dropped; "torn" only for a file of zeros, never written */
            FUZZ_CHECK(res.dropped_bytes == 0 && (!res.torn_tail || all_zero(file, n)),
                       "absolute mode dropped %llu bytes (torn %d)", (unsigned long long)res.dropped_bytes,
                       res.torn_tail);
        if (mode != WAL_SALVAGE && res.valid_end >= WAL_FILE_HEADER && res.valid_end <= n) {
            /* The prefix up to valid_end replays to the same records, cleanly. */
            fuzz_write_file(path, file, (size_t)res.valid_end);
            memset(&r2, 0, sizeof r2);
            r2.exact = 1;
            r2.skip_below = skip;
            wal_replay_result res2 = {0};
            int rc2 = wal_replay(path, mode, is_last, skip, batch_record_lsns, apply, &r2, &res2);
            FUZZ_CHECK(rc2 == PL_OK, "the prefix to valid_end %llu gives %s", (unsigned long long)res.valid_end,
                       pl_code_name(rc2));
            FUZZ_CHECK(!res2.torn_tail && res2.valid_end == res.valid_end,
                       "the prefix is torn (%d) or ends elsewhere (%llu, not %llu)", res2.torn_tail,
                       (unsigned long long)res2.valid_end, (unsigned long long)res.valid_end);
            FUZZ_CHECK(r2.n == r1.n && res2.next_lsn == res.next_lsn, "%zu records then %zu", r1.n, r2.n);
            for (size_t i = 0; i < r1.n && i < MAX_RECS; i++)
                FUZZ_CHECK(r1.lsn[i] == r2.lsn[i] && r1.crc[i] == r2.crc[i], "record %zu differs", i);
        }
    }
    free(file);
    return 0;
}
