/*
 * testhooks.h -- test-only entry points of the engine, kept out of the public header (pylsm.h).
 *
 * Used by the binding's private _test_* functions (pylsm/_pylsm.c) and by the C tests that inject
 * faults; nothing else may call them.  Defined in env.c, over the process-wide hooks of env.h; the
 * engine constants that pl_test_set may change are listed where the database defines them
 * (db_test_knobs, db.c).
 *
 * Thread safety: process-wide state, set between operations by the test that owns the process.
 */
#ifndef PL_TESTHOOKS_H
#define PL_TESTHOOKS_H

#include <stdint.h>

/* Make the nth (1-based) I/O call of class op ("open", "read", "write", "sync", "rename", "unlink",
 * "short_write": a write that writes half its bytes first, "all") fail with errno err; persistent keeps
 * failing every later call too.  PL_OK, or PL_INVALID for an unknown class. */
int pl_test_fault(const char *op, long nth, int err, int persistent);
/* Turn fault injection off. */
void pl_test_fault_clear(void);
/* The I/O calls counted since pl_test_fault (a run with nth past them all counts them). */
long pl_test_fault_calls(void);
/* Set an engine constant by name ("manifest_roll_bytes", "ingest_lsn_gap" > 0, "read_around_bytes",
 * "table_dict_sample_bytes" > 0).  PL_OK, or PL_MISUSE
 * for an unknown name or a bad value. */
int pl_test_set(const char *name, uint64_t value);

/* A constant pl_test_set may change: name, where it lives, the least value it takes.  db_test_knobs
 * (db.c) lists them, ending with a NULL name. */
typedef struct test_knob {
    const char *name;
    uint64_t *value;
    uint64_t min;
} test_knob;
extern const test_knob db_test_knobs[];

#endif
