/*
 * memworld.h -- memtables as the C tests use them: constructors that check their PL_OK.
 */
#ifndef PL_TEST_MEMWORLD_H
#define PL_TEST_MEMWORLD_H

#include "iter.h"
#include "memtable.h"
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

#endif
