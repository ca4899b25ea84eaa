/*
 * memworld.h -- memtables as the C tests use them: constructors that check their PL_OK, and the
 * model worlds of the iterator tests (test_merge.c, test_dbiter.c, test_concat.c): a set of
 * memtables, each one child of a merged view, random user keys over a small alphabet, the model's
 * seek, and an iterator checked against a model entry.
 */
#ifndef PL_TEST_MEMWORLD_H
#define PL_TEST_MEMWORLD_H

#include <stddef.h>
#include <string.h>

#include "iter.h"
#include "memtable.h"
#include "merge.h"
#include "testutil.h"

/* memtable_new and memtable_iter with their code checked: the object, or NULL when they failed
 * (a merge of a NULL child then fails). */
static inline memtable *mw_memtable(void)
{
    memtable *m;
    CHECK_RC(memtable_new(&m), PL_OK);
    return m;
}
static inline iter *mw_iter(memtable *m)
{
    iter *it;
    CHECK_RC(memtable_iter(m, &it), PL_OK);
    return it;
}

/* ---- a model world's children: one memtable each ---- */

#define MW_MAX_CHILDREN 6

typedef struct {
    memtable *mt[MW_MAX_CHILDREN];
    int n;
} mw_children;

/* n (1 .. MW_MAX_CHILDREN) empty memtables. */
static inline void mw_children_init(mw_children *c, int n)
{
    c->n = n;
    for (int i = 0; i < n; i++)
        c->mt[i] = mw_memtable();
}

static inline void mw_children_free(mw_children *c)
{
    for (int i = 0; i < c->n; i++)
        memtable_unref(c->mt[i]);
}

/* The merging iterator over every child (NULL when out of memory). */
static inline iter *mw_children_merge(mw_children *c)
{
    iter *ch[MW_MAX_CHILDREN];
    for (int i = 0; i < c->n; i++)
        ch[i] = mw_iter(c->mt[i]);
    return merge_iter_new(ch, c->n);
}

/* ---- the model ---- */

/* Does it sit on the entry of internal key k and value v?  With k NULL: is it invalid with no
 * failure, as past the model's end?  1 when it does. */
static inline int mw_at(iter *it, const char *k, size_t kn, const char *v, size_t vn)
{
    if (!k)
        return !iter_valid(it) && iter_status(it) == PL_OK;
    if (!iter_valid(it))
        return 0;
    const char *ik, *iv;
    size_t ikn, ivn;
    iter_key(it, &ik, &ikn);
    iter_value(it, &iv, &ivn);
    return ikn == kn && memcmp(ik, k, kn) == 0 && ivn == vn && memcmp(iv, v, vn) == 0;
}

/* An iterator over nothing: no positioning call makes it valid, and none fails. */
static inline void mw_check_empty(iter *it)
{
    iter_seek_first(it);
    CHECK(!iter_valid(it));
    iter_seek_last(it);
    CHECK(!iter_valid(it));
    iter_seek(it, "k\0\0\0\0\0\0\0\0", 9);
    CHECK(!iter_valid(it));
    CHECK_RC(iter_status(it), PL_OK);
}

/* A random user key of 0 .. maxlen bytes from {0, 'a', 'b', 0xff} (empty keys, prefixes and the
 * extreme bytes all come up); out has room for maxlen bytes.  Returns its length. */
static inline size_t mw_rand_ukey(unsigned long long *s, char *out, int maxlen)
{
    static const char alpha[] = {'\0', 'a', 'b', '\xff'};
    size_t n = (size_t)(tu_rand(s) % (unsigned)(maxlen + 1));
    for (size_t i = 0; i < n; i++)
        out[i] = alpha[tu_rand(s) % 4];
    return n;
}

/* Compares one model element with a key: < 0, 0, > 0 as the element sorts before, with or after it. */
typedef int (*mw_cmp_fn)(const void *elem, const char *k, size_t kn);

/* The model's seek: the index of the first of the n sorted elements at base (size bytes apart) that
 * does not sort before k, or -1 when every one does. */
static inline int mw_model_seek(const void *base, int n, size_t size, mw_cmp_fn cmp, const char *k, size_t kn)
{
    for (int i = 0; i < n; i++)
        if (cmp((const char *)base + (size_t)i * size, k, kn) >= 0)
            return i;
    return -1;
}

#endif
