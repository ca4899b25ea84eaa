/* test_cache.c -- the sharded LRU block cache: hits, eviction under pressure, pinned handles,
 * replacement, capacity 0, and many threads at once (leaks are caught by ASan/LSan). */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "testutil.h"

static char *val(uint64_t id, uint64_t off, size_t *len)
{
    char *v = malloc(32);
    *len = (size_t)snprintf(v, 32, "%llu:%llu", (unsigned long long)id, (unsigned long long)off);
    return v;
}

static int holds(cache_handle *h, uint64_t id, uint64_t off)
{
    char want[32];
    size_t wl = (size_t)snprintf(want, sizeof want, "%llu:%llu", (unsigned long long)id,
                                 (unsigned long long)off);
    size_t len;
    const char *v = cache_value(h, &len);
    return len == wl && memcmp(v, want, len) == 0;
}

static void test_basic(void)
{
    cache *c = cache_new(1 << 20);
    CHECK(c != NULL);
    uint64_t a = cache_new_id(c), b = cache_new_id(c);
    CHECK(a != b && a != 0 && b != 0);
    CHECK(cache_lookup(c, a, 0) == NULL);
    size_t len;
    char *v = val(a, 0, &len);
    cache_handle *h = cache_insert(c, a, 0, v, len, 100);
    CHECK(h && holds(h, a, 0));
    cache_release(h);
    CHECK_EQ(cache_usage(c), 100);
    h = cache_lookup(c, a, 0);
    CHECK(h && holds(h, a, 0));
    CHECK(cache_lookup(c, b, 0) == NULL); /* other table, same offset */
    CHECK(cache_lookup(c, a, 1) == NULL);
    cache_handle *h2 = cache_lookup(c, a, 0); /* two holders */
    CHECK(h2 == h);
    cache_release(h2);
    cache_release(h);

    /* replacing a key: the old value lives while held */
    h = cache_lookup(c, a, 0);
    v = malloc(8);
    memcpy(v, "newvalue", 8);
    h2 = cache_insert(c, a, 0, v, 8, 50);
    CHECK(holds(h, a, 0));
    size_t l2;
    CHECK(memcmp(cache_value(h2, &l2), "newvalue", 8) == 0 && l2 == 8);
    CHECK_EQ(cache_usage(c), 50);
    cache_release(h);
    cache_release(h2);
    h = cache_lookup(c, a, 0);
    CHECK(h && memcmp(cache_value(h, NULL), "newvalue", 8) == 0);
    cache_release(h);
    cache_release(NULL);
    cache_free(c);
    cache_free(NULL);
}

static void test_pressure(void)
{
    /* 16 shards x 1000 bytes; 2000 entries of 100 bytes do not fit */
    cache *c = cache_new(16 * 1000);
    uint64_t id = cache_new_id(c);
    cache_handle *pinned = NULL;
    for (uint64_t off = 0; off < 2000; off++) {
        size_t len;
        char *v = val(id, off, &len);
        cache_handle *h = cache_insert(c, id, off, v, len, 100);
        if (off == 0)
            pinned = h; /* held all along: must survive */
        else
            cache_release(h);
    }
    size_t usage = cache_usage(c);
    printf("capacity %zu, usage after 2000 inserts of 100: %zu\n", cache_capacity(c), usage);
    CHECK(usage <= 16 * 1000 + 100); /* the pinned entry may exceed its shard by one */
    CHECK(usage >= 16 * 1000 / 2);
    CHECK(holds(pinned, id, 0));
    cache_handle *h = cache_lookup(c, id, 0);
    CHECK(h == pinned);
    cache_release(h);
    cache_release(pinned);

    int hits = 0, bad = 0;
    for (uint64_t off = 0; off < 2000; off++) {
        h = cache_lookup(c, id, off);
        if (h) {
            hits++;
            bad += !holds(h, id, off);
            cache_release(h);
        }
    }
    printf("hits after pressure: %d of 2000\n", hits);
    CHECK(hits >= 80 && hits <= 161);
    CHECK_EQ(bad, 0);
    /* the newest entries survive, the oldest are gone */
    int newest = 0, oldest = 0;
    for (uint64_t off = 1900; off < 2000; off++)
        if ((h = cache_lookup(c, id, off))) {
            newest++;
            cache_release(h);
        }
    for (uint64_t off = 1; off < 100; off++)
        if ((h = cache_lookup(c, id, off))) {
            oldest++;
            cache_release(h);
        }
    CHECK(newest > 50);
    CHECK_EQ(oldest, 0);

    /* LRU, not FIFO: keep touching one early key while inserting more */
    size_t len;
    char *v = val(id, 5000, &len);
    cache_release(cache_insert(c, id, 5000, v, len, 100));
    for (uint64_t off = 6000; off < 9000; off++) {
        v = val(id, off, &len);
        cache_release(cache_insert(c, id, off, v, len, 100));
        h = cache_lookup(c, id, 5000);
        CHECK(h != NULL);
        cache_release(h);
    }
    /* an entry larger than its shard is usable while held and gone after */
    v = val(id, 77777, &len);
    h = cache_insert(c, id, 77777, v, len, 1 << 20);
    CHECK(h && holds(h, id, 77777));
    cache_release(h);
    CHECK(cache_lookup(c, id, 77777) == NULL);
    CHECK(cache_usage(c) <= 16 * 1000);
    cache_free(c);
}

static void test_disabled(void)
{
    cache *c = cache_new(0);
    CHECK(c != NULL);
    CHECK(cache_new_id(c) != cache_new_id(c));
    size_t len;
    char *v = val(1, 2, &len);
    cache_handle *h = cache_insert(c, 1, 2, v, len, 10);
    CHECK(h && holds(h, 1, 2));
    CHECK(cache_lookup(c, 1, 2) == NULL);
    CHECK_EQ(cache_usage(c), 0);
    cache_release(h); /* frees the value: LSan would report it otherwise */
    CHECK(cache_lookup(c, 1, 2) == NULL);
    cache_free(c);
}

static cache *shared;

static void *worker(void *arg)
{
    unsigned long long rs = (unsigned long long)(uintptr_t)arg * 7919 + 1;
    long bad = 0;
    for (int i = 0; i < 200000; i++) {
        uint64_t id = 1 + tu_rand(&rs) % 4, off = tu_rand(&rs) % 3000;
        cache_handle *h = cache_lookup(shared, id, off);
        if (!h) {
            size_t len;
            char *v = val(id, off, &len);
            h = cache_insert(shared, id, off, v, len, 64);
        }
        bad += !holds(h, id, off);
        cache_release(h);
    }
    return (void *)bad;
}

static void test_threads(void)
{
    shared = cache_new(16 * 64 * 50); /* 800 of the 12000 keys fit */
    pthread_t th[8];
    for (uintptr_t i = 0; i < 8; i++)
        pthread_create(&th[i], NULL, worker, (void *)i);
    long bad = 0;
    for (int i = 0; i < 8; i++) {
        void *r;
        pthread_join(th[i], &r);
        bad += (long)r;
    }
    CHECK_EQ(bad, 0);
    CHECK(cache_usage(shared) <= 16 * 64 * 50);
    cache_free(shared);
}

int main(void)
{
    test_basic();
    test_pressure();
    test_disabled();
    test_threads();
    return test_report();
}
