/*
 * _pylsm.c -- the CPython binding of the pylsm engine (csrc/pylsm.h).
 *
 * Thin by design: argument conversion, GIL release, PL_* code -> exception (in set_error only), and
 * object lifetime.  The friendly API (options, sync strategy objects, ranges, context managers) lives
 * in pylsm/__init__.py.
 *
 * GIL policy (call_core, the one place that releases it around a call on a database): writes and
 * reads are first tried with the GIL held and the PL_WRITE_NO_WAIT / PL_READ_NO_IO flags; when the core
 * answers PL_WOULDBLOCK (another writer, an fsync, a file switch, table I/O) the call is repeated with
 * the GIL released.  So cheap in-memory work pays no GIL hand-off, and nothing that waits holds the
 * GIL.  docs/decisions.md has the measurements.
 *
 * Lifetime: a call that releases the GIL first enters the database (pl_db_enter).  close() sets the
 * object's handle to NULL under the GIL (so every later call raises ClosedError, from check_open),
 * then pl_db_close() waits for the entered calls to leave, and the handle is let go (pl_db_release):
 * the object never holds a pointer to a closed handle.
 *
 * Python code can run wherever the binding converts an argument or allocates (a generator, __bool__,
 * __index__, __buffer__, a finalizer run by the GC), and it may close the database, a snapshot or
 * an iterator, or change a batch.  So every call into the core re-checks, under the GIL and with no
 * Python code in between, that what it uses is still open (check_open, check_view, check_iter); no
 * call on a database made with the GIL held runs Python code (stats are collected in C first); a
 * snapshot, batch or changes reader in use by a call that releases the GIL (or decodes into Python
 * objects) is marked busy, and closing a busy snapshot defers its release to the last user.  A
 * progress callback may not call into the database it reports on (the core may hold its locks):
 * check_open refuses.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "pylsm.h"
#include "testhooks.h"
#include "coding.h" /* get_u64: the lengths in pl_iter_read's entries */

/* ---- what CPython 3.9 and 3.10 lack (the API used is 3.11's) ---- */
#if PY_VERSION_HEX < 0x030A0000
#define Py_TPFLAGS_DISALLOW_INSTANTIATION 0 /* 3.9: instances made from Python hold nothing: closed */
static inline PyObject *pl_newref(PyObject *o)
{
    Py_INCREF(o);
    return o;
}
#define Py_NewRef(o) pl_newref((PyObject *)(o)) /* (o) evaluated once, as 3.10's */
static int PyModule_AddObjectRef(PyObject *m, const char *name, PyObject *value)
{
    Py_XINCREF(value);
    int r = PyModule_AddObject(m, name, value);
    if (r < 0)
        Py_XDECREF(value);
    return r;
}
#endif
#if PY_VERSION_HEX < 0x030B0000
/* The module of the first type in tp's MRO made from this module's specs (borrowed). */
static PyObject *PyType_GetModuleByDef(PyTypeObject *tp, struct PyModuleDef *def)
{
    PyObject *mro = tp->tp_mro;
    for (Py_ssize_t i = 0; mro && i < PyTuple_GET_SIZE(mro); i++) {
        PyTypeObject *base = (PyTypeObject *)PyTuple_GET_ITEM(mro, i);
        if (!PyType_HasFeature(base, Py_TPFLAGS_HEAPTYPE))
            continue;
        PyObject *m = PyType_GetModule(base);
        if (m && PyModule_GetDef(m) == def)
            return m;
        PyErr_Clear();
    }
    PyErr_Format(PyExc_TypeError, "PyType_GetModuleByDef: no superclass of '%s' has the given module",
                 tp->tp_name);
    return NULL;
}
#endif

typedef struct {
    PyObject *Error, *CorruptionError, *LockError, *ClosedError, *StorageError, *NotFoundError,
        *ReadOnlyError, *PairError;
    PyTypeObject *DBType, *BatchType, *SnapshotType, *IterType, *ChangesType;
} module_state;

static struct PyModuleDef pylsm_module;

static module_state *state_of_type(PyTypeObject *tp)
{
    PyObject *m = PyType_GetModuleByDef(tp, &pylsm_module);
    return m ? (module_state *)PyModule_GetState(m) : NULL;
}

/* The one place where codes become exceptions (as _pysqlite_seterror): the exception of rc, with the
 * calling thread's pl_errmsg().  Returns NULL. */
static PyObject *set_error(module_state *st, int rc)
{
    const char *msg = pl_errmsg();
    if (!msg[0])
        msg = pl_code_name(rc);
    switch (rc) {
    case PL_CORRUPT:
        PyErr_SetString(st->CorruptionError, msg);
        break;
    case PL_IOERR:
    case PL_READONLY:
    case PL_NOTFOUND: { /* PL_NOTFOUND here: a database that is not there */
        PyObject *cls = rc == PL_NOTFOUND ? st->NotFoundError : st->StorageError;
        int e = rc == PL_NOTFOUND ? ENOENT : pl_errno() ? pl_errno() : EIO; /* PL_READONLY: the errno of the failure behind it */
        PyObject *exc = PyObject_CallFunction(cls, "is", e, msg);
        if (exc) {
            PyErr_SetObject(cls, exc);
            Py_DECREF(exc);
        }
        break;
    }
    case PL_RDONLY_OPEN:
        PyErr_SetString(st->ReadOnlyError, msg);
        break;
    case PL_NOMEM:
        PyErr_NoMemory();
        break;
    case PL_INVALID:
        PyErr_SetString(PyExc_ValueError, msg);
        break;
    case PL_BUSY:
        PyErr_SetString(st->LockError, msg);
        break;
    case PL_CLOSED:
        PyErr_SetString(st->ClosedError, msg);
        break;
    default:
        PyErr_SetString(st->Error, msg);
        break;
    }
    return NULL;
}

/* ---- bytes-like arguments ---- */

typedef struct {
    const char *ptr;
    Py_ssize_t len;
    Py_buffer view;
    int has_view;
} bytes_arg;

static int get_bytes(PyObject *o, bytes_arg *b, const char *what)
{
    b->has_view = 0;
    if (PyBytes_CheckExact(o)) {
        b->ptr = PyBytes_AS_STRING(o);
        b->len = PyBytes_GET_SIZE(o);
        return 0;
    }
    if (PyObject_GetBuffer(o, &b->view, PyBUF_C_CONTIGUOUS) != 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s must be a bytes-like object (C-contiguous buffer), not %.100s",
                     what, Py_TYPE(o)->tp_name);
        return -1;
    }
    b->has_view = 1;
    b->ptr = b->view.buf;
    b->len = b->view.len;
    return 0;
}

static void release_bytes(bytes_arg *b)
{
    if (b->has_view)
        PyBuffer_Release(&b->view);
    b->has_view = 0;
}

/* Keys and values are copied out of Python buffers before the GIL is dropped only when the buffer
 * could change under us; bytes are immutable, other buffers stay exported (and so unresizable) for
 * the whole call. */

static int sync_flag(PyObject *sync)
{
    if (sync == NULL || sync == Py_None)
        return 0;
    int t = PyObject_IsTrue(sync);
    return t < 0 ? -1 : (t ? PL_WRITE_SYNC : 0);
}

/* ---- DB ---- */

typedef struct {
    PyObject_HEAD
    pl_db *db;           /* NULL until DB.__init__ opens it, and again from close() on */
    int initialized;     /* DB.__init__ opened it once (it is not opened twice) */
    unsigned long callback_thread; /* the thread running a progress callback of a call on it, or 0 */
    module_state *state; /* this module's, set by DB_new */
    PyObject *weakreflist;
    PyObject *dict;
} DBObject;

/* -1 with pylsm.Error if this thread is in a progress callback of a call on the database: the core
 * may hold its locks (pylsm.h, pl_set_progress), so calling into it, close() included, would hang. */
static int check_not_in_callback(DBObject *self)
{
    if (!self->callback_thread || self->callback_thread != PyThread_get_thread_ident())
        return 0;
    PyErr_SetString(self->state->Error, "a progress callback cannot call into the database it reports on");
    return -1;
}

/* check_open's answer when the database is closed or in a progress callback. */
static int check_open_slow(DBObject *self)
{
    if (self->db)
        return check_not_in_callback(self);
    PyErr_SetString(self->state->ClosedError,
                    self->initialized ? "the database is closed" : "the database is not open");
    return -1;
}

/* 0 if the database is open (and this thread not in its progress callback), else -1 with ClosedError
 * set.  Runs no Python code, so a call checks again after anything that may run some (a conversion,
 * an allocation), right before the core call.  Inline: a scan checks once per entry. */
static inline int check_open(DBObject *self)
{
    return self->db && !self->callback_thread ? 0 : check_open_slow(self);
}

/* ---- snapshots and batches (defined further down; busy while a call uses them) ---- */

typedef struct {
    PyObject_HEAD
    DBObject *db;  /* the database it reads, set by Snapshot_new */
    pl_snapshot *snap;
    int busy;      /* calls using snap (GIL-protected); close defers the release to the last one */
    int closed;
} SnapshotObject;

static void snapshot_enter(SnapshotObject *so)
{
    if (so)
        so->busy++;
}

static void snapshot_leave(SnapshotObject *so)
{
    if (so && --so->busy == 0 && so->closed && so->snap) {
        pl_snapshot_release(so->snap);
        so->snap = NULL;
    }
}

typedef struct {
    PyObject_HEAD
    pl_batch *b;
    int busy;      /* being written by DB.write with the GIL released */
    module_state *state;
    PyObject *dict;
} BatchObject;

static PyObject *DB_new(PyTypeObject *tp, PyObject *args, PyObject *kw)
{
    module_state *st = state_of_type(tp);
    DBObject *self = st ? (DBObject *)tp->tp_alloc(tp, 0) : NULL;
    if (self)
        self->state = st;
    return (PyObject *)self;
}

static int DB_init(DBObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"path", "create_if_missing", "error_if_exists", "sync_mode", "sync_count",
                             "sync_interval_ms", "memtable_bytes", "block_bytes", "bloom_bits_per_key",
                             "block_cache_bytes", "wal_recovery", "wal_timestamp",
                             "background_compaction", "read_only", "point_index", "wal_retention_bytes",
                             "wal_retention_seconds", "compression", NULL};
    pl_options o;
    pl_options_init(&o);
    PyObject *path_obj;
    unsigned long long sync_count = o.sync_count, interval = o.sync_interval_ms,
                       retention_bytes = o.wal_retention_bytes, retention_seconds = o.wal_retention_seconds;
    /* (a negative size converts to one above the core's range, which pl_db_open refuses) */
    Py_ssize_t memtable = (Py_ssize_t)o.memtable_bytes, block = (Py_ssize_t)o.block_bytes,
               cache = (Py_ssize_t)o.block_cache_bytes;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&|$ppiKKnninippppKKi:DB", kwlist, PyUnicode_FSConverter,
                                     &path_obj, &o.create_if_missing, &o.error_if_exists, &o.sync_mode,
                                     &sync_count, &interval, &memtable, &block, &o.bloom_bits_per_key,
                                     &cache, &o.wal_recovery, &o.wal_timestamp,
                                     &o.background_compaction, &o.read_only, &o.point_index,
                                     &retention_bytes, &retention_seconds, &o.compression))
        return -1;
    if (self->initialized) {
        Py_DECREF(path_obj);
        PyErr_SetString(PyExc_RuntimeError, "DB.__init__ called twice");
        return -1;
    }
    o.sync_count = sync_count;
    o.sync_interval_ms = interval;
    o.wal_retention_bytes = retention_bytes;
    o.wal_retention_seconds = retention_seconds;
    o.memtable_bytes = (size_t)memtable;
    o.block_bytes = (size_t)block;
    o.block_cache_bytes = (size_t)cache;
    const char *path = PyBytes_AS_STRING(path_obj);
    pl_db *db = NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = pl_db_open(path, &o, &db);
    Py_END_ALLOW_THREADS
    Py_DECREF(path_obj);
    if (rc) {
        set_error(self->state, rc);
        return -1;
    }
    pl_db_retain(db); /* released by close(), after the calls in flight have left (see close_db) */
    self->db = db;
    self->initialized = 1;
    return 0;
}

/* Close the handle: self->db is NULL from here on, so every later call raises ClosedError;
 * pl_db_close waits (without the GIL) for the calls inside the core to leave.  Each calls pl_db_leave
 * holding the GIL, so once this thread has it back none touches the handle: its memory may go. */
static int close_db(DBObject *self)
{
    pl_db *db = self->db;
    self->db = NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = pl_db_close(db);
    Py_END_ALLOW_THREADS
    pl_db_release(db);
    return rc;
}

static PyObject *DB_close(DBObject *self, PyObject *unused)
{
    if (!self->db)
        Py_RETURN_NONE;
    if (check_not_in_callback(self) < 0)
        return NULL;
    int rc = close_db(self);
    if (rc)
        return set_error(self->state, rc);
    Py_RETURN_NONE;
}

static void DB_dealloc(DBObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (self->weakreflist)
        PyObject_ClearWeakRefs((PyObject *)self);
    if (self->db)
        close_db(self);
    Py_CLEAR(self->dict);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static int DB_traverse(DBObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->dict);
    return 0;
}

static int DB_clear(DBObject *self)
{
    Py_CLEAR(self->dict);
    return 0;
}

/* ---- calls into the core ---- */

/* A call into the core: fn(db, ctx, flag) does the work, with flag added to its flags. */
typedef int (*core_fn)(pl_db *db, void *ctx, int flag);

/* Run fn where the core says it should run.  With try_flag (PL_WRITE_NO_WAIT, PL_READ_NO_IO) it is
 * first called holding the GIL, and the core answers PL_WOULDBLOCK rather than wait for another
 * writer, an fsync, a file switch or table I/O; then (and at once when try_flag is 0) it is called
 * again with flag 0 and the GIL released, between pl_db_enter and pl_db_leave, so that close() waits
 * for it.  Cheap in-memory work pays no GIL hand-off, and nothing that waits holds the GIL.
 * REQUIRES: db open (check_open, with no Python code run since); what fn uses stays valid and
 * unchanged while the GIL is released (buffers exported, snapshots and batches busy).  pl_db_leave is
 * called holding the GIL: close_db relies on it. */
static int call_core(pl_db *db, core_fn fn, void *ctx, int try_flag)
{
    int rc;
    if (try_flag && (rc = fn(db, ctx, try_flag)) != PL_WOULDBLOCK)
        return rc;
    if ((rc = pl_db_enter(db)) != PL_OK)
        return rc;
    Py_BEGIN_ALLOW_THREADS
    rc = fn(db, ctx, 0);
    Py_END_ALLOW_THREADS
    pl_db_leave(db);
    return rc;
}

/* A put, a delete or a batch (pl_db_put, pl_db_delete, pl_db_write). */
typedef struct {
    const bytes_arg *k, *v;
    const pl_batch *b;
    int flags; /* PL_WRITE_SYNC or 0 */
} write_args;

static int core_put(pl_db *db, void *ctx, int flag)
{
    const write_args *a = ctx;
    return pl_db_put(db, a->k->ptr, (size_t)a->k->len, a->v->ptr, (size_t)a->v->len, a->flags | flag);
}

static int core_delete(pl_db *db, void *ctx, int flag)
{
    const write_args *a = ctx;
    return pl_db_delete(db, a->k->ptr, (size_t)a->k->len, a->flags | flag);
}

static int core_write(pl_db *db, void *ctx, int flag)
{
    const write_args *a = ctx;
    return pl_db_write(db, a->b, a->flags | flag);
}

static PyObject *put_impl(DBObject *self, PyObject *key, PyObject *val, int flags)
{
    if (check_open(self) < 0)
        return NULL;
    bytes_arg k, v;
    if (get_bytes(key, &k, "key") < 0)
        return NULL;
    if (get_bytes(val, &v, "value") < 0) {
        release_bytes(&k);
        return NULL;
    }
    if (check_open(self) < 0) { /* a buffer export may have run Python code */
        release_bytes(&k);
        release_bytes(&v);
        return NULL;
    }
    write_args a = {&k, &v, NULL, flags};
    int rc = call_core(self->db, core_put, &a, PL_WRITE_NO_WAIT);
    release_bytes(&k);
    release_bytes(&v);
    if (rc)
        return set_error(self->state, rc);
    Py_RETURN_NONE;
}

static PyObject *DB_put(DBObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *sync = NULL;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "put() takes exactly 2 positional arguments (%zd given)", nargs);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i);
        if (PyUnicode_Check(name) && PyUnicode_CompareWithASCIIString(name, "sync") == 0) {
            sync = args[nargs + i];
        } else {
            PyErr_Format(PyExc_TypeError, "put() got an unexpected keyword argument '%S'", name);
            return NULL;
        }
    }
    int flags = sync_flag(sync);
    if (flags < 0)
        return NULL;
    return put_impl(self, args[0], args[1], flags);
}

static int get_one(DBObject *self, SnapshotObject *so, PyObject *key, PyObject **out);

/* A per-thread buffer for values on their way to a bytes object, freed when its thread ends (a
 * thread-local variable would leak one per short-lived thread). */
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *p)
{
    pl_buf_free(p);
    free(p);
}

static void scratch_init(void) { (void)pthread_key_create(&scratch_key, scratch_free); }

static pl_buf *scratch_buf(void)
{
    pthread_once(&scratch_once, scratch_init);
    pl_buf *b = pthread_getspecific(scratch_key);
    if (!b && (b = calloc(1, sizeof *b)) != NULL && pthread_setspecific(scratch_key, b) != 0) {
        free(b);
        b = NULL;
    }
    return b;
}

/* A buffer grown past 1 MiB by a large value is given back. */
static void scratch_trim(pl_buf *b)
{
    if (b && b->cap > (1u << 20))
        pl_buf_free(b);
}

static PyObject *delete_impl(DBObject *self, PyObject *key, int flags, int must_exist)
{
    if (check_open(self) < 0)
        return NULL;
    bytes_arg k;
    if (get_bytes(key, &k, "key") < 0)
        return NULL;
    if (must_exist) {
        PyObject *v = NULL;
        int r = get_one(self, NULL, key, &v);
        Py_XDECREF(v);
        if (r <= 0) {
            if (r == 0)
                PyErr_SetObject(PyExc_KeyError, key);
            release_bytes(&k);
            return NULL;
        }
    }
    if (check_open(self) < 0) {
        release_bytes(&k);
        return NULL;
    }
    write_args a = {&k, NULL, NULL, flags};
    int rc = call_core(self->db, core_delete, &a, PL_WRITE_NO_WAIT);
    release_bytes(&k);
    if (rc)
        return set_error(self->state, rc);
    Py_RETURN_NONE;
}

static PyObject *DB_delete(DBObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"key", "sync", NULL};
    PyObject *key, *sync = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|$O:delete", kwlist, &key, &sync))
        return NULL;
    int flags = sync_flag(sync);
    if (flags < 0)
        return NULL;
    return delete_impl(self, key, flags, 0);
}

static PyObject *DB_write(DBObject *self, PyObject *args, PyObject *kw);
static PyObject *DB_changes_raw(DBObject *self, PyObject *arg);

/* 0 if snapshot so (NULL: none) and the database are open, else -1 with ClosedError set (for the
 * snapshot first).  Runs no Python code. */
static int check_view(DBObject *self, SnapshotObject *so)
{
    if (so && (so->closed || !so->snap)) {
        PyErr_SetString(self->state->ClosedError, "the snapshot is closed");
        return -1;
    }
    return check_open(self);
}

/* A read of one key (pl_db_get) into out. */
typedef struct {
    const pl_snapshot *snap;
    const bytes_arg *k;
    pl_buf *out;
} get_args;

static int core_get(pl_db *db, void *ctx, int flag)
{
    const get_args *a = ctx;
    return pl_db_get(db, a->snap, a->k->ptr, (size_t)a->k->len, a->out, flag);
}

/* Look up one key: in snapshot object so, else in the latest state.  Returns 1 found (*out set), 0
 * absent, -1 error set.  REQUIRES: so, if any, is busy (snapshot_enter). */
static int get_one(DBObject *self, SnapshotObject *so, PyObject *key, PyObject **out)
{
    bytes_arg k;
    if (get_bytes(key, &k, "key") < 0)
        return -1;
    /* After the conversion (which may run Python code), right before the core call. */
    pl_buf *buf = scratch_buf();
    if (check_view(self, so) < 0 || (!buf && !PyErr_NoMemory())) {
        release_bytes(&k);
        return -1;
    }
    get_args a = {so ? so->snap : NULL, &k, buf};
    int rc = call_core(self->db, core_get, &a, PL_READ_NO_IO);
    release_bytes(&k);
    if (rc == PL_NOTFOUND)
        return 0;
    if (rc) {
        set_error(self->state, rc);
        return -1;
    }
    *out = PyBytes_FromStringAndSize(buf->data, (Py_ssize_t)buf->len);
    scratch_trim(buf);
    return *out ? 1 : -1;
}

static PyObject *get_impl(DBObject *self, SnapshotObject *so, PyObject *key, PyObject *dflt, int raise)
{
    PyObject *v = NULL;
    snapshot_enter(so);
    int r = get_one(self, so, key, &v);
    snapshot_leave(so);
    if (r < 0)
        return NULL;
    if (r == 0) {
        if (raise) {
            PyErr_SetObject(PyExc_KeyError, key);
            return NULL;
        }
        return Py_NewRef(dflt);
    }
    return v;
}

static PyObject *DB_get(DBObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (check_open(self) < 0)
        return NULL;
    PyObject *dflt = nargs == 2 ? args[1] : Py_None;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t i = 0; i < nkw; i++) { /* get(key, default=...) as dict.get takes it */
        PyObject *name = PyTuple_GET_ITEM(kwnames, i);
        if (nargs != 1 || !PyUnicode_Check(name) || PyUnicode_CompareWithASCIIString(name, "default") != 0) {
            PyErr_Format(PyExc_TypeError, nargs == 1 ? "get() got an unexpected keyword argument '%S'"
                                                     : "get() got multiple values for argument 'default'",
                         name);
            return NULL;
        }
        dflt = args[nargs + i];
    }
    if (nargs < 1 || nargs > 2) {
        PyErr_Format(PyExc_TypeError, "get() takes 1 or 2 arguments (%zd given)", nargs);
        return NULL;
    }
    return get_impl(self, NULL, args[0], dflt, 0);
}

static PyObject *DB_subscript(DBObject *self, PyObject *key)
{
    if (check_open(self) < 0)
        return NULL;
    return get_impl(self, NULL, key, NULL, 1);
}

static int DB_ass_subscript(DBObject *self, PyObject *key, PyObject *val)
{
    PyObject *r = val ? put_impl(self, key, val, 0) : delete_impl(self, key, 0, 1);
    if (!r)
        return -1;
    Py_DECREF(r);
    return 0;
}

static int DB_contains(DBObject *self, PyObject *key)
{
    if (check_open(self) < 0)
        return -1;
    PyObject *v = NULL;
    int r = get_one(self, NULL, key, &v);
    Py_XDECREF(v);
    return r;
}

/* pl_db_get_many: n keys (keys[i], klens[i]) into vals and lens. */
typedef struct {
    const pl_snapshot *snap;
    size_t n;
    const char *const *keys;
    const size_t *klens;
    pl_buf *vals;
    int64_t *lens;
} get_many_args;

static int core_get_many(pl_db *db, void *ctx, int flag)
{
    const get_many_args *a = ctx;
    return pl_db_get_many(db, a->snap, a->n, a->keys, a->klens, a->vals, a->lens);
}

/* Values (or None) for keys, all from one view (snapshot so's, or the latest state), read by the core in
 * one call with the GIL released: it overlaps the memory reads of several keys (pl_db_get_many). */
static PyObject *get_many_impl(DBObject *self, SnapshotObject *so, PyObject *keys)
{
    /* A tuple of our own: another thread may change a list the caller passed while the GIL is
     * released, and each key must stay alive (and its buffer exported) until the core is done. */
    PyObject *seq = PySequence_Tuple(keys);
    if (!seq) {
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            PyErr_SetString(PyExc_TypeError, "get_many() takes an iterable of keys");
        }
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(seq), got = 0;
    PyObject *res = NULL;
    bytes_arg *ka = PyMem_Calloc((size_t)n + 1, sizeof *ka);
    const char **kp = PyMem_Calloc((size_t)n + 1, sizeof *kp);
    size_t *kl = PyMem_Calloc((size_t)n + 1, sizeof *kl);
    int64_t *lens = PyMem_Calloc((size_t)n + 1, sizeof *lens);
    if (!ka || !kp || !kl || !lens) {
        PyErr_NoMemory();
        goto out;
    }
    for (; got < n; got++) { /* may run Python code (a buffer's exporter) */
        if (get_bytes(PyTuple_GET_ITEM(seq, got), &ka[got], "key") < 0)
            goto out;
        kp[got] = ka[got].ptr;
        kl[got] = (size_t)ka[got].len;
    }
    /* After the conversions, right before the core call. */
    pl_buf *vals = scratch_buf();
    if (check_view(self, so) < 0 || (!vals && !PyErr_NoMemory()))
        goto out;
    snapshot_enter(so);
    get_many_args a = {so ? so->snap : NULL, (size_t)n, kp, kl, vals, lens};
    int rc = call_core(self->db, core_get_many, &a, 0);
    snapshot_leave(so);
    if (rc) {
        set_error(self->state, rc);
        goto out;
    }
    res = PyList_New(n);
    size_t off = 0;
    for (Py_ssize_t i = 0; res && i < n; i++) {
        PyObject *v = lens[i] < 0 ? Py_NewRef(Py_None)
                                  : PyBytes_FromStringAndSize(vals->data + off, (Py_ssize_t)lens[i]);
        if (!v) {
            Py_CLEAR(res);
            break;
        }
        off += lens[i] < 0 ? 0 : (size_t)lens[i];
        PyList_SET_ITEM(res, i, v);
    }
    scratch_trim(vals);
out:
    for (Py_ssize_t i = 0; i < got; i++)
        release_bytes(&ka[i]);
    PyMem_Free(ka);
    PyMem_Free(kp);
    PyMem_Free(kl);
    PyMem_Free(lens);
    Py_DECREF(seq);
    return res;
}

static PyObject *DB_get_many(DBObject *self, PyObject *keys)
{
    if (check_open(self) < 0)
        return NULL;
    return get_many_impl(self, NULL, keys);
}

/* A call of the form pl_db_sync(db). */
typedef struct {
    int (*op)(pl_db *);
} db_op;

static int core_db_op(pl_db *db, void *ctx, int flag) { return ((const db_op *)ctx)->op(db); }

/* sync(), flush(), refresh(): op(db) with the GIL released. */
static PyObject *run_db_op(DBObject *self, int (*op)(pl_db *))
{
    if (check_open(self) < 0)
        return NULL;
    db_op a = {op};
    int rc = call_core(self->db, core_db_op, &a, 0);
    if (rc)
        return set_error(self->state, rc);
    Py_RETURN_NONE;
}

static PyObject *DB_sync(DBObject *self, PyObject *unused) { return run_db_op(self, pl_db_sync); }
static PyObject *DB_flush(DBObject *self, PyObject *unused) { return run_db_op(self, pl_db_flush); }
static PyObject *DB_refresh(DBObject *self, PyObject *unused) { return run_db_op(self, pl_db_refresh); }

typedef struct {
    const char *path;
    uint64_t lsn;
} checkpoint_args;

static int core_checkpoint(pl_db *db, void *ctx, int flag)
{
    checkpoint_args *a = ctx;
    return pl_db_checkpoint(db, a->path, &a->lsn);
}

static PyObject *DB_checkpoint(DBObject *self, PyObject *arg)
{
    if (check_open(self) < 0)
        return NULL;
    PyObject *p = NULL;
    if (!PyUnicode_FSConverter(arg, &p))
        return NULL;
    if (check_open(self) < 0) { /* the conversion may have run Python code (__fspath__) */
        Py_DECREF(p);
        return NULL;
    }
    checkpoint_args a = {PyBytes_AS_STRING(p), 0};
    int rc = call_core(self->db, core_checkpoint, &a, 0);
    Py_DECREF(p);
    if (rc)
        return set_error(self->state, rc);
    return PyLong_FromUnsignedLongLong((unsigned long long)a.lsn);
}

/* A long call's progress, reported to a Python callable (pylsm's tqdm updater) from the calling
 * thread, which holds no GIL while the core works: the callback takes it for its call, marking the
 * database (if any) as in a callback of this thread (check_not_in_callback).  An exception in the
 * callback is reported as unraisable and stops further reports. */
typedef struct {
    PyObject *cb;
    DBObject *db; /* the database the call works on, or NULL */
    int failed;
} progress_ctx;

static void progress_cb(void *ctx, uint64_t done, uint64_t total)
{
    progress_ctx *p = ctx;
    if (p->failed)
        return;
    PyGILState_STATE g = PyGILState_Ensure();
    unsigned long outer = p->db ? p->db->callback_thread : 0;
    if (p->db)
        p->db->callback_thread = PyThread_get_thread_ident();
    PyObject *r = PyObject_CallFunction(p->cb, "KK", (unsigned long long)done, (unsigned long long)total);
    if (p->db)
        p->db->callback_thread = outer;
    if (!r) {
        PyErr_WriteUnraisable(p->cb);
        p->failed = 1;
    }
    Py_XDECREF(r);
    PyGILState_Release(g);
}

/* A call on a key range [s, e) (an end absent where has_* is 0): compact, delete_range. */
typedef struct {
    const bytes_arg *s, *e;
    int has_s, has_e;
    int flags;        /* delete_range: PL_WRITE_SYNC or 0 */
    uint64_t deleted; /* delete_range: how many keys it deleted */
} range_call;

static int core_compact(pl_db *db, void *ctx, int flag)
{
    const range_call *a = ctx;
    return pl_db_compact(db, a->s->ptr, (size_t)a->s->len, a->has_s, a->e->ptr, (size_t)a->e->len, a->has_e);
}

static int core_delete_range(pl_db *db, void *ctx, int flag)
{
    range_call *a = ctx;
    return pl_db_delete_range(db, a->s->ptr, (size_t)a->s->len, a->has_s, a->e->ptr, (size_t)a->e->len, a->has_e,
                              a->flags, &a->deleted);
}

/* The ends of a key range (None: open), as buffers, and the database still open after their
 * conversion (which may run Python code).  0, or -1 with an exception set and nothing held. */
static int range_args(DBObject *self, PyObject *start, PyObject *stop, bytes_arg *s, bytes_arg *e)
{
    if (start != Py_None && get_bytes(start, s, "start") < 0)
        return -1;
    if (stop != Py_None && get_bytes(stop, e, "stop") < 0) {
        release_bytes(s);
        return -1;
    }
    if (check_open(self) < 0) {
        release_bytes(s);
        release_bytes(e);
        return -1;
    }
    return 0;
}

static PyObject *DB_compact(DBObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"start", "stop", "progress", NULL};
    PyObject *start = Py_None, *stop = Py_None, *cb = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|OO$O:compact", kwlist, &start, &stop, &cb))
        return NULL;
    progress_ctx pc = {cb, self, 0};
    if (check_open(self) < 0)
        return NULL;
    bytes_arg s = {0}, e = {0};
    if (range_args(self, start, stop, &s, &e) < 0)
        return NULL;
    if (cb != Py_None) /* the core reports from this thread, which keeps the setting through the call */
        pl_set_progress(progress_cb, &pc);
    range_call a = {&s, &e, start != Py_None, stop != Py_None, 0, 0};
    int rc = call_core(self->db, core_compact, &a, 0);
    pl_set_progress(NULL, NULL);
    release_bytes(&s);
    release_bytes(&e);
    if (rc)
        return set_error(self->state, rc);
    Py_RETURN_NONE;
}

static PyObject *DB_key_may_exist(DBObject *self, PyObject *key)
{
    if (check_open(self) < 0)
        return NULL;
    bytes_arg k;
    if (get_bytes(key, &k, "key") < 0)
        return NULL;
    int maybe = 1, rc = check_open(self) < 0 ? -1 : pl_db_key_may_exist(self->db, NULL, k.ptr, (size_t)k.len, &maybe);
    release_bytes(&k);
    if (rc < 0)
        return NULL;
    if (rc)
        return set_error(self->state, rc);
    return PyBool_FromLong(maybe);
}

static PyObject *DB_delete_range(DBObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"start", "stop", "sync", NULL};
    PyObject *start = Py_None, *stop = Py_None, *sync = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|$O:delete_range", kwlist, &start, &stop, &sync))
        return NULL;
    int flags = sync_flag(sync);
    if (flags < 0)
        return NULL;
    if (check_open(self) < 0)
        return NULL;
    bytes_arg s = {0}, e = {0};
    if (range_args(self, start, stop, &s, &e) < 0)
        return NULL;
    range_call a = {&s, &e, start != Py_None, stop != Py_None, flags, 0};
    int rc = call_core(self->db, core_delete_range, &a, 0);
    release_bytes(&s);
    release_bytes(&e);
    if (rc)
        return set_error(self->state, rc);
    return PyLong_FromUnsignedLongLong((unsigned long long)a.deleted);
}

static PyObject *DB_approximate_size(DBObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"start", "stop", NULL};
    PyObject *start = Py_None, *stop = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|OO:approximate_size", kwlist, &start, &stop))
        return NULL;
    if (check_open(self) < 0)
        return NULL;
    bytes_arg s = {0}, e = {0};
    if (range_args(self, start, stop, &s, &e) < 0)
        return NULL;
    uint64_t bytes = 0;
    int rc = pl_db_approximate_size(self->db, s.ptr, (size_t)s.len, start != Py_None, e.ptr, (size_t)e.len,
                                    stop != Py_None, &bytes);
    release_bytes(&s);
    release_bytes(&e);
    if (rc)
        return set_error(self->state, rc);
    return PyLong_FromUnsignedLongLong((unsigned long long)bytes);
}

/* Figures the core reports (pl_db_stats, pl_repair_report), collected with no Python code running
 * inside the core's call (a finalizer run by an allocation could close the database under it), then
 * made a dict. */
#define FIGURES_MAX 64
#define LEVELS_MAX 16
typedef struct {
    const char *name[FIGURES_MAX];
    uint64_t value[FIGURES_MAX];
    int n;
    struct {
        int level;
        uint64_t files, bytes, written;
    } level[LEVELS_MAX];
    int nlevels;
} figures;

static void figure_cb(void *ctx, const char *name, uint64_t value)
{
    figures *f = ctx;
    if (f->n < FIGURES_MAX) {
        f->name[f->n] = name;
        f->value[f->n++] = value;
    }
}

static void level_cb(void *ctx, int level, uint64_t files, uint64_t bytes, uint64_t written)
{
    figures *f = ctx;
    if (f->nlevels < LEVELS_MAX) {
        f->level[f->nlevels].level = level;
        f->level[f->nlevels].files = files;
        f->level[f->nlevels].written = written;
        f->level[f->nlevels++].bytes = bytes;
    }
}

/* {name: value}, and with levels "levels": [{"level", "files", "bytes", "bytes_written"}, ...]; NULL with
 * an exception. */
static PyObject *figures_dict(const figures *f, int levels)
{
    PyObject *d = PyDict_New();
    for (int i = 0; d && i < f->n; i++) {
        PyObject *v = PyLong_FromUnsignedLongLong(f->value[i]);
        if (!v || PyDict_SetItemString(d, f->name[i], v) < 0)
            Py_CLEAR(d);
        Py_XDECREF(v);
    }
    PyObject *l = d && levels ? PyList_New(f->nlevels) : NULL;
    for (int i = 0; l && i < f->nlevels; i++) {
        PyObject *e = Py_BuildValue("{s:i,s:K,s:K,s:K}", "level", f->level[i].level, "files",
                                    (unsigned long long)f->level[i].files, "bytes",
                                    (unsigned long long)f->level[i].bytes, "bytes_written",
                                    (unsigned long long)f->level[i].written);
        if (!e)
            Py_CLEAR(l);
        else
            PyList_SET_ITEM(l, i, e);
    }
    if (d && levels && (!l || PyDict_SetItemString(d, "levels", l) < 0))
        Py_CLEAR(d);
    Py_XDECREF(l);
    return d;
}

static PyObject *DB_stats(DBObject *self, PyObject *unused)
{
    if (check_open(self) < 0)
        return NULL;
    figures f = {.n = 0};
    int rc = pl_db_stats(self->db, figure_cb, level_cb, &f);
    if (rc)
        return set_error(self->state, rc);
    return figures_dict(&f, 1);
}

static PyObject *DB_closed_get(DBObject *self, void *unused) { return PyBool_FromLong(!self->db); }

/* _check_open(): None, or ClosedError (for pylsm/__init__.py's own checks: with, batch()). */
static PyObject *DB_check_open(DBObject *self, PyObject *unused)
{
    if (check_open(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* ---- WriteBatch ---- */

/* 0, or -1 with an error when a DB.write of this batch is running in another thread. */
static int batch_busy_error(BatchObject *self)
{
    if (!self->busy)
        return 0;
    PyErr_SetString(self->state->Error, "the batch is being written by DB.write() in another thread");
    return -1;
}

static int Batch_init(BatchObject *self, PyObject *args, PyObject *kw)
{
    if (PyTuple_GET_SIZE(args) || (kw && PyDict_GET_SIZE(kw))) {
        PyErr_SetString(PyExc_TypeError, "WriteBatch() takes no arguments");
        return -1;
    }
    if (!self->b && !(self->b = pl_batch_new())) {
        PyErr_NoMemory();
        return -1;
    }
    if (batch_busy_error(self) < 0)
        return -1;
    pl_batch_clear(self->b);
    return 0;
}

static PyObject *Batch_new(PyTypeObject *tp, PyObject *args, PyObject *kw)
{
    module_state *st = state_of_type(tp);
    BatchObject *self = st ? (BatchObject *)tp->tp_alloc(tp, 0) : NULL;
    if (!self)
        return NULL;
    self->state = st;
    if (!(self->b = pl_batch_new())) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    return (PyObject *)self;
}

static void Batch_dealloc(BatchObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    pl_batch_free(self->b);
    Py_CLEAR(self->dict);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static int Batch_traverse(BatchObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->dict);
    return 0;
}

static int Batch_clear_gc(BatchObject *self)
{
    Py_CLEAR(self->dict);
    return 0;
}

static PyObject *Batch_put(BatchObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "put() takes exactly 2 arguments (%zd given)", nargs);
        return NULL;
    }
    bytes_arg k, v;
    if (get_bytes(args[0], &k, "key") < 0)
        return NULL;
    if (get_bytes(args[1], &v, "value") < 0) {
        release_bytes(&k);
        return NULL;
    }
    int rc = batch_busy_error(self) < 0 ? -1 : pl_batch_put(self->b, k.ptr, (size_t)k.len, v.ptr, (size_t)v.len);
    release_bytes(&k);
    release_bytes(&v);
    if (rc > 0)
        return set_error(self->state, rc);
    if (rc)
        return NULL;
    Py_RETURN_NONE;
}

/* The key and value of a (key, value) pair, borrowed from *hold (a new reference: the pair, or the
 * sequence made of it); 0, or -1 with PairError (2 items expected) or TypeError (not a sequence). */
static int unpack_pair(module_state *st, PyObject *pair, const char *who, const char *takes, PyObject **hold,
                       PyObject **k, PyObject **v)
{
    if (PyTuple_CheckExact(pair) && PyTuple_GET_SIZE(pair) == 2) {
        *hold = Py_NewRef(pair);
        *k = PyTuple_GET_ITEM(pair, 0);
        *v = PyTuple_GET_ITEM(pair, 1);
        return 0;
    }
    char msg[160];
    snprintf(msg, sizeof msg, "%s() takes %s", who, takes);
    PyObject *seq = PySequence_Fast(pair, msg);
    if (!seq)
        return -1;
    if (PySequence_Fast_GET_SIZE(seq) != 2) {
        /* dict.update raises ValueError here, pylsm always raised TypeError: both */
        PyErr_Format(st->PairError, "%s(): a (key, value) pair has 2 items, not %zd", who,
                     PySequence_Fast_GET_SIZE(seq));
        Py_DECREF(seq);
        return -1;
    }
    *hold = seq;
    *k = PySequence_Fast_GET_ITEM(seq, 0);
    *v = PySequence_Fast_GET_ITEM(seq, 1);
    return 0;
}

/* Add one (key, value) pair; 0 or -1 with an exception. */
static int batch_put_pair(BatchObject *self, PyObject *k, PyObject *v)
{
    bytes_arg ka, va;
    if (get_bytes(k, &ka, "key") < 0)
        return -1;
    if (get_bytes(v, &va, "value") < 0) {
        release_bytes(&ka);
        return -1;
    }
    int rc = batch_busy_error(self) < 0 ? -1 : pl_batch_put(self->b, ka.ptr, (size_t)ka.len, va.ptr, (size_t)va.len);
    release_bytes(&ka);
    release_bytes(&va);
    if (rc > 0)
        set_error(self->state, rc);
    return rc ? -1 : 0;
}

/* Add one item of put_many's argument, a (key, value) pair of any kind; consumes the reference to pair.
 * 0 or -1 with an exception. */
static int put_one_pair(BatchObject *self, PyObject *pair)
{
    PyObject *hold, *k, *v;
    int r = unpack_pair(self->state, pair, "put_many", "a mapping or an iterable of (key, value) pairs", &hold, &k,
                        &v);
    Py_DECREF(pair);
    if (r == 0) {
        r = batch_put_pair(self, k, v);
        Py_DECREF(hold);
    }
    return r;
}

/* Add the n pairs of a run (put_many) in one core call.  0, or -1 with an exception. */
#define PUT_CHUNK 64
static int put_run(BatchObject *self, size_t n, const char **ks, size_t *kl, const char **vs, size_t *vl)
{
    if (n == 0)
        return 0;
    if (batch_busy_error(self) < 0)
        return -1;
    int rc = pl_batch_put_many(self->b, n, ks, kl, vs, vl);
    if (rc == PL_INVALID) { /* add the pairs before the bad one, as one call per pair would */
        for (size_t i = 0; i < n && !(rc = pl_batch_put(self->b, ks[i], kl[i], vs[i], vl[i])); i++)
            ;
    }
    if (rc)
        set_error(self->state, rc);
    return rc ? -1 : 0;
}

/* put_many(pairs): a put for every (key, value) pair of an iterable, in order (pylsm/__init__.py turns a
 * mapping into its pairs).  A list, a tuple or a dict's items run no Python code as they are walked and
 * keep the keys and values they yield alive: from them, runs of (bytes, bytes) tuples go to the core
 * PUT_CHUNK pairs per call, their pointers borrowed.  Any other pair (its conversion may run code), and
 * every pair of another iterable, goes in (after the run before it) before the next is taken. */
static PyObject *Batch_put_many(BatchObject *self, PyObject *pairs)
{
    int seq = PyList_CheckExact(pairs) || PyTuple_CheckExact(pairs);
    size_t run_max = seq || Py_IS_TYPE(pairs, &PyDictItems_Type) ? PUT_CHUNK : 1;
    PyObject *it = seq ? Py_NewRef(pairs) : PyObject_GetIter(pairs);
    if (!it)
        return NULL;
    const char *ks[PUT_CHUNK], *vs[PUT_CHUNK];
    size_t kl[PUT_CHUNK], vl[PUT_CHUNK], n = 0;
    int r = 0;
    for (Py_ssize_t i = 0; r == 0; i++) { /* (a list's size is read again: a conversion may change it) */
        PyObject *pair = !seq ? PyIter_Next(it) : i < Py_SIZE(it) ? Py_NewRef(PySequence_Fast_GET_ITEM(it, i)) : NULL;
        if (!pair)
            break;
        PyObject *k, *v;
        if (PyTuple_CheckExact(pair) && PyTuple_GET_SIZE(pair) == 2 &&
            PyBytes_CheckExact(k = PyTuple_GET_ITEM(pair, 0)) && PyBytes_CheckExact(v = PyTuple_GET_ITEM(pair, 1))) {
            ks[n] = PyBytes_AS_STRING(k), kl[n] = (size_t)PyBytes_GET_SIZE(k);
            vs[n] = PyBytes_AS_STRING(v), vl[n] = (size_t)PyBytes_GET_SIZE(v);
            if (++n == run_max) {
                r = put_run(self, n, ks, kl, vs, vl);
                n = 0;
            }
            Py_DECREF(pair); /* (after its run went in, when the iterable may hold it no longer) */
            continue;
        }
        r = put_run(self, n, ks, kl, vs, vl); /* the run before it goes in first */
        n = 0;
        if (r == 0)
            r = put_one_pair(self, pair); /* consumes pair */
        else
            Py_DECREF(pair);
    }
    if (r == 0) /* the last run (an error of a dict's iteration comes after a pair's conversion changed the
                 * dict, which put the run before it in first) */
        r = put_run(self, n, ks, kl, vs, vl);
    Py_DECREF(it);
    if (r < 0 || PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *Batch_delete(BatchObject *self, PyObject *key)
{
    bytes_arg k;
    if (get_bytes(key, &k, "key") < 0)
        return NULL;
    int rc = batch_busy_error(self) < 0 ? -1 : pl_batch_delete(self->b, k.ptr, (size_t)k.len);
    release_bytes(&k);
    if (rc > 0)
        return set_error(self->state, rc);
    if (rc)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *Batch_clear(BatchObject *self, PyObject *unused)
{
    if (batch_busy_error(self) < 0)
        return NULL;
    pl_batch_clear(self->b);
    Py_RETURN_NONE;
}

static Py_ssize_t Batch_len(BatchObject *self) { return (Py_ssize_t)pl_batch_count(self->b); }

static PyObject *DB_write(DBObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"batch", "sync", NULL};
    PyObject *batch, *sync = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|$O:write", kwlist, &batch, &sync))
        return NULL;
    if (check_open(self) < 0)
        return NULL;
    module_state *st = self->state;
    if (!PyObject_TypeCheck(batch, st->BatchType)) {
        PyErr_Format(PyExc_TypeError, "write() takes a WriteBatch, not %.100s", Py_TYPE(batch)->tp_name);
        return NULL;
    }
    int flags = sync_flag(sync); /* may run Python code (__bool__): check again after it */
    if (flags < 0 || check_open(self) < 0)
        return NULL;
    /* The batch object stays referenced by our caller's frame for the whole call; busy keeps other
     * threads from changing it while the write runs without the GIL. */
    BatchObject *bo = (BatchObject *)batch;
    bo->busy++;
    write_args a = {NULL, NULL, bo->b, flags};
    int rc = call_core(self->db, core_write, &a, PL_WRITE_NO_WAIT);
    bo->busy--;
    if (rc)
        return set_error(self->state, rc);
    Py_RETURN_NONE;
}

/* ---- bulk ingest ---- */

/* Pairs go to the core in chunks, with the GIL released for each (a chunk of small pairs costs the
 * core ~100 us, a GIL hand-off ~1 us); the iterable runs with the GIL held, between chunks, and may do
 * anything -- close the database included: each chunk re-checks that it is open. */
#define INGEST_CHUNK 1024
#define INGEST_CHUNK_BYTES (1u << 20)

typedef struct {
    PyObject *key, *val; /* referenced; the pair itself is let go at once (zip() then reuses it) */
    bytes_arg k, v;
} ingest_item;

static void ingest_release(ingest_item *items, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        release_bytes(&items[i].k);
        release_bytes(&items[i].v);
        Py_DECREF(items[i].key);
        Py_DECREF(items[i].val);
    }
}

/* The ingest g: add the n items (core_ingest_add), or finish it (core_ingest_finish, which sets g to
 * NULL as pl_ingest_finish frees it). */
typedef struct {
    pl_ingest *g;
    const ingest_item *items;
    Py_ssize_t n;
    uint64_t count; /* finish: how many pairs it made visible */
} ingest_args;

static int core_ingest_add(pl_db *db, void *ctx, int flag)
{
    const ingest_args *a = ctx;
    int rc = PL_OK;
    for (Py_ssize_t i = 0; i < a->n && !rc; i++)
        rc = pl_ingest_add(a->g, a->items[i].k.ptr, (size_t)a->items[i].k.len, a->items[i].v.ptr,
                           (size_t)a->items[i].v.len);
    return rc;
}

static int core_ingest_finish(pl_db *db, void *ctx, int flag)
{
    ingest_args *a = ctx;
    pl_ingest *g = a->g;
    a->g = NULL;
    return pl_ingest_finish(g, &a->count);
}

/* 0, or -1 with an exception. */
static int ingest_chunk(DBObject *self, pl_ingest *g, ingest_item *items, Py_ssize_t n)
{
    if (check_open(self) < 0)
        return -1;
    ingest_args a = {g, items, n, 0};
    int rc = call_core(self->db, core_ingest_add, &a, 0);
    if (rc) {
        set_error(self->state, rc);
        return -1;
    }
    return 0;
}

/* Take the next pair into *x; 1 when taken, 0 at the end, -1 with an exception. */
static int ingest_next(DBObject *self, PyObject *it, ingest_item *x)
{
    PyObject *pair = PyIter_Next(it), *hold;
    if (!pair)
        return PyErr_Occurred() ? -1 : 0;
    int r = unpack_pair(self->state, pair, "ingest", "an iterable of (key, value) pairs", &hold, &x->key,
                        &x->val);
    Py_DECREF(pair);
    if (r < 0)
        return -1;
    Py_INCREF(x->key);
    Py_INCREF(x->val);
    Py_DECREF(hold);
    if (get_bytes(x->key, &x->k, "key") == 0) {
        if (get_bytes(x->val, &x->v, "value") == 0)
            return 1;
        release_bytes(&x->k);
    }
    Py_DECREF(x->key);
    Py_DECREF(x->val);
    return -1;
}

static void ingest_report(PyObject *cb, uint64_t done, int *failed)
{
    if (cb == Py_None || *failed)
        return;
    PyObject *r = PyObject_CallFunction(cb, "K", (unsigned long long)done);
    if (!r) { /* as for the other progress reports: the work goes on */
        PyErr_WriteUnraisable(cb);
        *failed = 1;
    }
    Py_XDECREF(r);
}

static PyObject *DB_ingest(DBObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"pairs", "progress", NULL};
    PyObject *pairs, *cb = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|$O:ingest", kwlist, &pairs, &cb))
        return NULL;
    if (check_open(self) < 0)
        return NULL;
    if (cb != Py_None && !PyCallable_Check(cb)) {
        PyErr_SetString(PyExc_TypeError, "ingest(): progress must be callable or None");
        return NULL;
    }
    PyObject *it = PyObject_GetIter(pairs);
    if (!it)
        return NULL;
    ingest_item *items = malloc(sizeof *items * INGEST_CHUNK);
    pl_ingest *g = NULL;
    int rc = PL_OK, failed = 0, cb_failed = 0;
    if (!items)
        PyErr_NoMemory();
    else if (check_open(self) == 0 && (rc = pl_ingest_new(self->db, &g)))
        set_error(self->state, rc);
    failed = !g;
    Py_ssize_t n = 0;
    size_t bytes = 0;
    uint64_t done = 0;
    while (!failed) {
        int r = ingest_next(self, it, &items[n]);
        if (r < 0)
            failed = 1;
        if (r > 0) {
            bytes += (size_t)(items[n].k.len + items[n].v.len);
            n++;
        }
        if (n && (r <= 0 || n == INGEST_CHUNK || bytes >= INGEST_CHUNK_BYTES)) {
            if (!failed && ingest_chunk(self, g, items, n) < 0)
                failed = 1;
            ingest_release(items, n);
            if (!failed) {
                done += (uint64_t)n;
                ingest_report(cb, done, &cb_failed);
            }
            n = 0;
            bytes = 0;
        }
        if (r == 0)
            break;
    }
    free(items);
    Py_DECREF(it);
    if (!failed && check_open(self) < 0)
        failed = 1;
    ingest_args a = {g, NULL, 0, 0};
    if (!failed) {
        rc = call_core(self->db, core_ingest_finish, &a, 0);
        if (!a.g) /* finished (or failed doing so): g is freed */
            return rc ? set_error(self->state, rc) : PyLong_FromUnsignedLongLong(a.count);
        set_error(self->state, rc); /* the database is closing */
    }
    if (a.g) {
        Py_BEGIN_ALLOW_THREADS
        pl_ingest_abort(a.g); /* removes its tables: file I/O */
        Py_END_ALLOW_THREADS
    }
    return NULL;
}

/* ---- Snapshot ---- */

/* Snapshot(db): a read view of the database as it is now (pylsm.Snapshot, a subclass, is what
 * DB.snapshot() makes). */
static PyObject *Snapshot_new(PyTypeObject *tp, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"db", NULL};
    module_state *st = state_of_type(tp);
    DBObject *db;
    if (!st || !PyArg_ParseTupleAndKeywords(args, kw, "O!:Snapshot", kwlist, st->DBType, &db) ||
        check_open(db) < 0)
        return NULL;
    SnapshotObject *s = (SnapshotObject *)tp->tp_alloc(tp, 0);
    if (!s)
        return NULL;
    s->db = (DBObject *)Py_NewRef(db);
    if (check_open(db) < 0) { /* the allocation may have run a finalizer */
        Py_DECREF(s);
        return NULL;
    }
    int rc = pl_snapshot_new(db->db, &s->snap);
    if (rc) {
        Py_DECREF(s);
        return set_error(db->state, rc);
    }
    return (PyObject *)s;
}


static PyObject *Snapshot_get(SnapshotObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (check_view(self->db, self) < 0)
        return NULL;
    if (nargs < 1 || nargs > 2) {
        PyErr_Format(PyExc_TypeError, "get() takes 1 or 2 arguments (%zd given)", nargs);
        return NULL;
    }
    return get_impl(self->db, self, args[0], nargs == 2 ? args[1] : Py_None, 0);
}

static PyObject *Snapshot_subscript(SnapshotObject *self, PyObject *key)
{
    if (check_view(self->db, self) < 0)
        return NULL;
    return get_impl(self->db, self, key, NULL, 1);
}

static int Snapshot_contains(SnapshotObject *self, PyObject *key)
{
    if (check_view(self->db, self) < 0)
        return -1;
    PyObject *v = NULL;
    snapshot_enter(self);
    int r = get_one(self->db, self, key, &v);
    snapshot_leave(self);
    Py_XDECREF(v);
    return r;
}

static PyObject *Snapshot_get_many(SnapshotObject *self, PyObject *keys)
{
    if (check_view(self->db, self) < 0)
        return NULL;
    return get_many_impl(self->db, self, keys);
}

static PyObject *Snapshot_close(SnapshotObject *self, PyObject *unused)
{
    self->closed = 1;
    if (self->snap && !self->busy) { /* else the last call using it releases it */
        pl_snapshot_release(self->snap);
        self->snap = NULL;
    }
    Py_RETURN_NONE;
}

static void Snapshot_dealloc(SnapshotObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (self->snap)
        pl_snapshot_release(self->snap);
    Py_CLEAR(self->db);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static int Snapshot_traverse(SnapshotObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->db);
    return 0;
}


/* ---- Iterator ---- */

typedef struct {
    PyObject_HEAD
    DBObject *db;
    pl_iter *it;
    int reverse;
    int want;          /* enum pl_want: keys, values or both (items) */
    int positioned;
    int exhausted;
    int busy;          /* a thread is reading a chunk with the GIL released */
    int closed;
    pl_buf cbuf;       /* the current chunk: n entries as pl_iter_read_chunk wrote them */
    size_t n, pos;     /* entries in it, and the next one to hand out (pos == n: none left) */
    size_t off;        /* the offset of entry pos in cbuf */
    pl_buf buf;        /* the cursor's entry (Iter_cursor), as pl_iter_copy wrote it */
    int cstate;        /* the cursor (Iter_cursor): CUR_BEFORE, CUR_AT or CUR_AFTER */
} IterObject;

/* The cursor model of DB.iterator(): the cursor sits between entries.  CUR_AT: pl_iter is on the
 * entry just after the cursor; CUR_BEFORE: before the first entry; CUR_AFTER: after the last. */
enum { CUR_BEFORE = 0, CUR_AT = 1, CUR_AFTER = 2 };
enum { OP_NEXT, OP_PREV, OP_PEEK_NEXT, OP_PEEK_PREV, OP_SEEK, OP_TO_FIRST, OP_TO_LAST, OP_TO_END };

static void iter_release(IterObject *self)
{
    if (self->it) {
        pl_iter_free(self->it);
        self->it = NULL;
    }
    self->n = self->pos = self->off = 0;
    pl_buf_free(&self->cbuf);
    pl_buf_free(&self->buf);
}

/* pl_iter_new: an iterator over snap (NULL: the latest state) into *it. */
typedef struct {
    const pl_snapshot *snap;
    pl_iter *it;
} iter_new_args;

static int core_iter_new(pl_db *db, void *ctx, int flag)
{
    iter_new_args *a = ctx;
    return pl_iter_new(db, a->snap, &a->it);
}

static PyObject *DB_iter_raw(DBObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"start", "stop", "reverse", "want", "snapshot", NULL};
    PyObject *start = Py_None, *stop = Py_None, *snap_obj = Py_None;
    int reverse = 0, want = PL_WANT_ITEMS;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|OOpiO:_iter", kwlist, &start, &stop, &reverse, &want, &snap_obj))
        return NULL;
    if (check_open(self) < 0)
        return NULL;
    module_state *st = self->state;
    SnapshotObject *so = NULL;
    if (snap_obj != Py_None) {
        if (!PyObject_TypeCheck(snap_obj, st->SnapshotType)) {
            PyErr_SetString(PyExc_TypeError, "snapshot must be a Snapshot");
            return NULL;
        }
        so = (SnapshotObject *)snap_obj;
        if (so->db != self) {
            PyErr_SetString(PyExc_ValueError, "snapshot must be one of this database");
            return NULL;
        }
    }
    bytes_arg lo = {0}, hi = {0};
    if (start != Py_None && get_bytes(start, &lo, "start") < 0)
        return NULL;
    if (stop != Py_None && get_bytes(stop, &hi, "stop") < 0) {
        release_bytes(&lo);
        return NULL;
    }
    IterObject *it = (IterObject *)st->IterType->tp_alloc(st->IterType, 0);
    int rc = PL_OK;
    /* The conversions and the allocation may have run Python code: check again, then keep the
     * snapshot busy while the GIL is released (another thread may close it meanwhile). */
    if (it && check_view(self, so) < 0) {
        Py_DECREF(it);
        it = NULL;
    }
    if (it) { /* may sort the memtable's newest entries: without the GIL */
        snapshot_enter(so);
        iter_new_args a = {so ? so->snap : NULL, NULL};
        rc = call_core(self->db, core_iter_new, &a, 0);
        it->it = a.it;
        snapshot_leave(so);
    }
    if (it && !rc) {
        pl_iter_set_bounds(it->it, lo.ptr, (size_t)lo.len, start != Py_None, hi.ptr, (size_t)hi.len,
                           stop != Py_None);
        it->db = (DBObject *)Py_NewRef(self);
        it->reverse = reverse;
        it->want = want & PL_WANT_ITEMS;
    }
    release_bytes(&lo);
    release_bytes(&hi);
    if (!it)
        return NULL;
    if (rc) {
        Py_DECREF(it);
        return set_error(self->state, rc);
    }
    return (PyObject *)it;
}

/* -1 with ClosedError for a closed iterator. */
static int iter_closed_error(IterObject *self)
{
    module_state *st = state_of_type(Py_TYPE(self));
    if (st)
        PyErr_SetString(st->ClosedError, "the iterator is closed");
    return -1;
}

/* 0 if the iterator can be used now, else -1 with ClosedError (it or its database is closed) or Error
 * (a call on it runs in another thread).  Runs no Python code. */
static int check_iter(IterObject *self)
{
    if (self->closed || !self->it)
        return iter_closed_error(self);
    if (check_open(self->db) < 0)
        return -1;
    if (self->busy) {
        PyErr_SetString(self->db->state->Error, "the iterator is in use by another thread");
        return -1;
    }
    return 0;
}

/* The next chunk of a scan into buf (from the first entry, or the last when reverse, unless
 * positioned); more: entries remain. */
typedef struct {
    pl_iter *it;
    int positioned, reverse, want;
    pl_buf *buf;
    size_t n;
    int more;
} refill_args;

static int core_refill(pl_db *db, void *ctx, int flag)
{
    refill_args *a = ctx;
    int rc = PL_OK;
    if (!a->positioned)
        rc = a->reverse ? pl_iter_seek_last(a->it) : pl_iter_seek_first(a->it);
    a->positioned = 1;
    if (!rc)
        rc = pl_iter_read_chunk(a->it, a->reverse, a->want, a->buf, &a->n);
    a->more = !rc && pl_iter_valid(a->it); /* a chunk cut short by the byte limit is not the end */
    return rc;
}

static int iter_refill(IterObject *self)
{
    if (check_iter(self) < 0)
        return -1;
    self->busy = 1;
    self->n = self->pos = self->off = 0; /* (another thread's next() now finds the iterator busy) */
    refill_args a = {self->it, self->positioned, self->reverse, self->want, &self->cbuf, 0, 0};
    int rc = call_core(self->db->db, core_refill, &a, 0);
    self->busy = 0;
    self->positioned = a.positioned;
    if (self->closed) { /* closed by another thread meanwhile */
        iter_release(self);
        return iter_closed_error(self);
    }
    if (rc) {
        set_error(self->db->state, rc);
        return -1;
    }
    if (!a.more)
        self->exhausted = 1;
    self->n = a.n;
    return 0;
}

/* The Python object of entry pos of the chunk (NULL with an exception when out of memory: the entry is
 * then not consumed).  The objects are built as they are handed out, not for the whole chunk at once:
 * each is freed while still in the CPU's caches when its consumer drops it, and a short scan (a seek
 * and a few entries) builds no object for the rest of its chunk. */
static PyObject *iter_item(IterObject *self)
{
    const char *p = self->cbuf.data + self->off;
    uint64_t kn = get_u64(p), vn = get_u64(p + 8);
    const char *k = p + 16, *v = p + 16 + kn;
    PyObject *item;
    if (self->want == PL_WANT_KEYS) {
        item = PyBytes_FromStringAndSize(k, (Py_ssize_t)kn);
    } else if (self->want == PL_WANT_VALUES) {
        item = PyBytes_FromStringAndSize(v, (Py_ssize_t)vn);
    } else {
        PyObject *ko = PyBytes_FromStringAndSize(k, (Py_ssize_t)kn);
        PyObject *vo = ko ? PyBytes_FromStringAndSize(v, (Py_ssize_t)vn) : NULL;
        item = vo ? PyTuple_New(2) : NULL;
        if (!item) {
            Py_XDECREF(ko);
            Py_XDECREF(vo);
            return NULL;
        }
        PyTuple_SET_ITEM(item, 0, ko);
        PyTuple_SET_ITEM(item, 1, vo);
    }
    if (item) {
        self->off = (size_t)(v + vn - self->cbuf.data);
        self->pos++;
    }
    return item;
}

static PyObject *Iter_next(IterObject *self)
{
    for (;;) {
        if (self->pos < self->n) {
            if (check_open(self->db) < 0)
                return NULL;
            int rc = pl_db_check(self->db->db); /* e.g. in a forked child */
            if (rc)
                return set_error(self->db->state, rc);
            return iter_item(self);
        }
        if (self->exhausted && !self->closed)
            return NULL; /* StopIteration */
        if (iter_refill(self) < 0)
            return NULL;
    }
}

/* One cursor step (op, with key for OP_SEEK) from state, which it updates; got: an entry was copied
 * into buf. */
typedef struct {
    pl_iter *it;
    int op;
    const bytes_arg *key;
    int state;
    pl_buf *buf;
    int got;
} cursor_args;

static int core_cursor_step(pl_db *db, void *ctx, int flag)
{
    cursor_args *a = ctx;
    pl_iter *it = a->it;
    int op = a->op, *state = &a->state, *got = &a->got;
    pl_buf *buf = a->buf;
    int rc = PL_OK;
    *got = 0;
#define AT_OR(s) (pl_iter_valid(it) ? CUR_AT : (s))
    switch (op) {
    case OP_NEXT:
    case OP_PEEK_NEXT:
        if (*state == CUR_BEFORE) {
            rc = pl_iter_seek_first(it);
            *state = AT_OR(CUR_AFTER);
        }
        if (rc || *state != CUR_AT)
            break;
        rc = pl_iter_copy(it, buf);
        *got = !rc;
        if (!rc && op == OP_NEXT) {
            rc = pl_iter_next(it);
            *state = AT_OR(CUR_AFTER);
        }
        break;
    case OP_PREV:
    case OP_PEEK_PREV:
        if (*state == CUR_BEFORE)
            break;
        rc = *state == CUR_AFTER ? pl_iter_seek_last(it) : pl_iter_prev(it);
        if (rc)
            break;
        if (!pl_iter_valid(it)) {
            if (op == OP_PREV)
                *state = CUR_BEFORE;
            else if (*state == CUR_AT)
                rc = pl_iter_seek_first(it); /* back to where the cursor was */
            break;
        }
        rc = pl_iter_copy(it, buf);
        *got = !rc;
        if (rc)
            break;
        if (op == OP_PREV)
            *state = CUR_AT;
        else if (*state == CUR_AT)
            rc = pl_iter_next(it);
        break;
    case OP_SEEK:
        rc = pl_iter_seek(it, a->key->ptr, (size_t)a->key->len);
        *state = AT_OR(CUR_AFTER);
        break;
    case OP_TO_FIRST:
        *state = CUR_BEFORE;
        break;
    case OP_TO_LAST:
        rc = pl_iter_seek_last(it);
        *state = AT_OR(CUR_AFTER);
        break;
    case OP_TO_END:
        *state = CUR_AFTER;
        break;
    }
#undef AT_OR
    if (!rc)
        rc = pl_iter_status(it);
    return rc;
}

static PyObject *Iter_cursor(IterObject *self, PyObject *args)
{
    int op;
    PyObject *key = Py_None;
    if (!PyArg_ParseTuple(args, "i|O:_cursor", &op, &key))
        return NULL;
    if (op < OP_NEXT || op > OP_TO_END) {
        PyErr_SetString(PyExc_ValueError, "bad cursor op");
        return NULL;
    }
    bytes_arg k = {0};
    if (op == OP_SEEK && get_bytes(key, &k, "key") < 0)
        return NULL;
    /* The conversion may have run Python code (a buffer's exporter): check the state after it. */
    if (check_iter(self) < 0) {
        release_bytes(&k);
        return NULL;
    }
    self->busy = 1;
    cursor_args a = {self->it, op, &k, self->cstate, &self->buf, 0};
    int rc = call_core(self->db->db, core_cursor_step, &a, 0);
    self->busy = 0;
    self->cstate = a.state;
    release_bytes(&k);
    if (self->closed) { /* closed by another thread meanwhile */
        iter_release(self);
        iter_closed_error(self);
        return NULL;
    }
    if (rc)
        return set_error(self->db->state, rc);
    if (!a.got)
        Py_RETURN_NONE;
    const char *p = self->buf.data;
    uint64_t kn = get_u64(p), vn = get_u64(p + 8);
    PyObject *ko = PyBytes_FromStringAndSize(p + 16, (Py_ssize_t)kn);
    PyObject *vo = ko ? PyBytes_FromStringAndSize(p + 16 + kn, (Py_ssize_t)vn) : NULL;
    PyObject *item = vo ? PyTuple_Pack(2, ko, vo) : NULL;
    Py_XDECREF(ko);
    Py_XDECREF(vo);
    return item;
}

static PyObject *Iter_close(IterObject *self, PyObject *unused)
{
    self->closed = 1;
    self->n = self->pos = self->off = 0;
    if (!self->busy)
        iter_release(self);
    Py_RETURN_NONE;
}

static PyObject *Iter_self(PyObject *self) { return Py_NewRef(self); }

static void Iter_dealloc(IterObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    iter_release(self); /* never busy here: a thread reading holds a reference */
    Py_CLEAR(self->db);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static int Iter_traverse(IterObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->db);
    return 0;
}

static int Iter_clear(IterObject *self)
{
    return 0;
}

/* Count the live keys (into *ctx, a Py_ssize_t). */
static int core_count(pl_db *db, void *ctx, int flag)
{
    Py_ssize_t *n = ctx;
    pl_iter *it = NULL;
    int rc = pl_iter_new(db, NULL, &it);
    if (!rc)
        rc = pl_iter_seek_first(it);
    while (!rc && pl_iter_valid(it)) {
        (*n)++;
        rc = pl_iter_next(it);
    }
    pl_iter_free(it);
    return rc;
}

static Py_ssize_t DB_len(DBObject *self)
{
    if (check_open(self) < 0)
        return -1;
    Py_ssize_t n = 0;
    int rc = call_core(self->db, core_count, &n, 0);
    if (rc) {
        set_error(self->state, rc);
        return -1;
    }
    return n;
}

/* ---- module functions ---- */

/* A call on a database directory, with the GIL released and an optional progress callable:
 * fn(path), or (fn NULL) pl_repair_report, whose figures come back as a dict. */
static PyObject *path_job(PyObject *m, PyObject *args, const char *format, int (*fn)(const char *))
{
    PyObject *p, *cb = Py_None;
    if (!PyArg_ParseTuple(args, format, PyUnicode_FSConverter, &p, &cb))
        return NULL;
    figures f = {.n = 0};
    progress_ctx pc = {cb, NULL, 0};
    int rc;
    const char *path = PyBytes_AS_STRING(p);
    Py_BEGIN_ALLOW_THREADS
    if (cb != Py_None)
        pl_set_progress(progress_cb, &pc);
    rc = fn ? fn(path) : pl_repair_report(path, figure_cb, &f);
    pl_set_progress(NULL, NULL);
    Py_END_ALLOW_THREADS
    Py_DECREF(p);
    if (rc) {
        module_state *st = PyModule_GetState(m);
        return set_error(st, rc);
    }
    if (fn)
        Py_RETURN_NONE;
    return figures_dict(&f, 0);
}

/* verify(path, progress=None); repair(path, progress=None) -> dict of what it kept and dropped;
 * destroy(path) */
static PyObject *mod_verify(PyObject *m, PyObject *args) { return path_job(m, args, "O&|O:verify", pl_verify); }
static PyObject *mod_repair(PyObject *m, PyObject *args) { return path_job(m, args, "O&|O:repair", NULL); }
static PyObject *mod_destroy(PyObject *m, PyObject *args) { return path_job(m, args, "O&:destroy", pl_destroy); }

static PyObject *mod_test_fault(PyObject *m, PyObject *args)
{
    const char *op;
    long nth;
    int err = EIO, persistent = 0;
    if (!PyArg_ParseTuple(args, "sl|ip:_test_fault", &op, &nth, &err, &persistent))
        return NULL;
    int rc = pl_test_fault(op, nth, err, persistent);
    if (rc) {
        module_state *st = PyModule_GetState(m);
        return set_error(st, rc);
    }
    Py_RETURN_NONE;
}

static PyObject *mod_test_fault_calls(PyObject *m, PyObject *unused)
{
    return PyLong_FromLong(pl_test_fault_calls());
}

static PyObject *mod_test_set(PyObject *m, PyObject *args)
{
    const char *name;
    unsigned long long value;
    if (!PyArg_ParseTuple(args, "sK:_test_set", &name, &value))
        return NULL;
    int rc = pl_test_set(name, (uint64_t)value);
    if (rc) {
        module_state *st = PyModule_GetState(m);
        return set_error(st, rc);
    }
    Py_RETURN_NONE;
}

static PyObject *mod_test_fault_clear(PyObject *m, PyObject *unused)
{
    pl_test_fault_clear();
    Py_RETURN_NONE;
}

/* ---- type specs ---- */

static PyMethodDef DB_methods[] = {
    {"put", (PyCFunction)(void (*)(void))DB_put, METH_FASTCALL | METH_KEYWORDS,
     "put(key, value, *, sync=None)\n--\n\nInsert or overwrite key."},
    {"get", (PyCFunction)(void (*)(void))DB_get, METH_FASTCALL | METH_KEYWORDS,
     "get(key, default=None)\n--\n\nThe value of key, or default."},
    {"delete", (PyCFunction)(void (*)(void))DB_delete, METH_VARARGS | METH_KEYWORDS,
     "delete(key, *, sync=None)\n--\n\nRemove key; no error if absent."},
    {"write", (PyCFunction)(void (*)(void))DB_write, METH_VARARGS | METH_KEYWORDS,
     "write(batch, *, sync=None)\n--\n\nApply a WriteBatch atomically."},
    {"get_many", (PyCFunction)DB_get_many, METH_O,
     "get_many(keys)\n--\n\nValues (or None) for keys, from one consistent view."},
    {"sync", (PyCFunction)DB_sync, METH_NOARGS, "sync()\n--\n\nMake everything written so far durable."},
    {"delete_range", (PyCFunction)(void (*)(void))DB_delete_range, METH_VARARGS | METH_KEYWORDS,
     "delete_range(start, stop, *, sync=None)\n--\n\nDelete every key in [start, stop) (None: an open end) "
     "as one atomic write; returns how many keys it deleted."},
    {"key_may_exist", (PyCFunction)DB_key_may_exist, METH_O,
     "key_may_exist(key)\n--\n\nFalse if key is certainly absent; True if it may be present (from the "
     "memtable, the tables' key ranges and bloom filters, without reading data blocks)."},
    {"approximate_size", (PyCFunction)(void (*)(void))DB_approximate_size, METH_VARARGS | METH_KEYWORDS,
     "approximate_size(start=None, stop=None)\n--\n\nBytes of the tables holding keys in [start, stop), "
     "from their indexes (writes still in the memtable not counted)."},
    {"checkpoint", (PyCFunction)DB_checkpoint, METH_O,
     "checkpoint(path)\n--\n\nA consistent, openable copy of the database at the new directory path; "
     "returns the LSN of the state copied."},
    {"flush", (PyCFunction)DB_flush, METH_NOARGS, "flush()\n--\n\nWrite the memtable to a table now."},
    {"compact", (PyCFunction)(void (*)(void))DB_compact, METH_VARARGS | METH_KEYWORDS,
     "compact(start=None, stop=None)\n--\n\nCompact that key range."},
    {"ingest", (PyCFunction)(void (*)(void))DB_ingest, METH_VARARGS | METH_KEYWORDS,
     "ingest(pairs, *, progress=None)\n--\n\nWrite (key, value) pairs in strictly ascending key order "
     "straight into tables, made visible at once; returns how many.  progress: called with the count "
     "done after each chunk."},
    {"stats", (PyCFunction)DB_stats, METH_NOARGS, "stats()\n--\n\nA dict of engine statistics."},
    {"refresh", (PyCFunction)DB_refresh, METH_NOARGS,
     "refresh()\n--\n\nA read-only handle: catch up with what the writer has written since."},
    {"close", (PyCFunction)DB_close, METH_NOARGS, "close()\n--\n\nClose the database (idempotent)."},
    {"_changes", (PyCFunction)DB_changes_raw, METH_O, NULL},
    {"_check_open", (PyCFunction)DB_check_open, METH_NOARGS, NULL},
    {"_iter", (PyCFunction)(void (*)(void))DB_iter_raw, METH_VARARGS | METH_KEYWORDS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef DB_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(DBObject, weakreflist), READONLY, NULL},
    {"__dictoffset__", T_PYSSIZET, offsetof(DBObject, dict), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef DB_getset[] = {
    {"closed", (getter)DB_closed_get, NULL, "True once close() was called.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot DB_slots[] = {
    {Py_tp_new, DB_new},
    {Py_tp_init, DB_init},
    {Py_tp_dealloc, DB_dealloc},
    {Py_tp_traverse, DB_traverse},
    {Py_tp_clear, DB_clear},
    {Py_tp_methods, DB_methods},
    {Py_tp_members, DB_members},
    {Py_tp_getset, DB_getset},
    {Py_mp_subscript, DB_subscript},
    {Py_mp_ass_subscript, DB_ass_subscript},
    {Py_sq_contains, DB_contains},
    {Py_mp_length, DB_len},
    {Py_tp_doc, "The engine handle; use pylsm.open() or pylsm.DB()."},
    {0, NULL},
};

static PyType_Spec DB_spec = {"pylsm._pylsm.DB", sizeof(DBObject), 0,
                              Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC, DB_slots};

static PyMethodDef Batch_methods[] = {
    {"put", (PyCFunction)(void (*)(void))Batch_put, METH_FASTCALL, "put(key, value)\n--\n\nAdd a put."},
    {"delete", (PyCFunction)Batch_delete, METH_O, "delete(key)\n--\n\nAdd a delete."},
    {"put_many", (PyCFunction)Batch_put_many, METH_O,
     "put_many(pairs)\n--\n\nAdd a put for every (key, value) pair of an iterable."},
    {"clear", (PyCFunction)Batch_clear, METH_NOARGS, "clear()\n--\n\nDrop every operation."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Batch_members[] = {
    {"__dictoffset__", T_PYSSIZET, offsetof(BatchObject, dict), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot Batch_slots[] = {
    {Py_tp_new, Batch_new},
    {Py_tp_init, Batch_init},
    {Py_tp_dealloc, Batch_dealloc},
    {Py_tp_traverse, Batch_traverse},
    {Py_tp_clear, Batch_clear_gc},
    {Py_tp_methods, Batch_methods},
    {Py_tp_members, Batch_members},
    {Py_sq_length, Batch_len},
    {Py_tp_doc, "Operations applied atomically by DB.write()."},
    {0, NULL},
};

static PyType_Spec Batch_spec = {"pylsm._pylsm.WriteBatch", sizeof(BatchObject), 0,
                                 Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC, Batch_slots};

static PyMethodDef Snapshot_methods[] = {
    {"get", (PyCFunction)(void (*)(void))Snapshot_get, METH_FASTCALL,
     "get(key, default=None)\n--\n\nThe value of key in this view, or default."},
    {"get_many", (PyCFunction)Snapshot_get_many, METH_O,
     "get_many(keys)\n--\n\nValues (or None) for keys in this view."},
    {"close", (PyCFunction)Snapshot_close, METH_NOARGS,
     "close()\n--\n\nRelease the snapshot (idempotent); later calls raise ClosedError."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Snapshot_members[] = {
    {"_db", T_OBJECT, offsetof(SnapshotObject, db), READONLY, "The database it reads."},
    {NULL, 0, 0, 0, NULL},
};

static PyObject *Snapshot_closed_get(SnapshotObject *self, void *unused)
{
    return PyBool_FromLong(self->closed || !self->snap || !self->db->db);
}

static PyObject *Snapshot_lsn_get(SnapshotObject *self, void *unused)
{
    if (!self->snap)
        Py_RETURN_NONE;
    return PyLong_FromUnsignedLongLong(pl_snapshot_lsn(self->snap));
}

static PyGetSetDef Snapshot_getset[] = {
    {"closed", (getter)Snapshot_closed_get, NULL, "True once the snapshot or its database is closed", NULL},
    {"lsn", (getter)Snapshot_lsn_get, NULL, "The LSN the snapshot reads at (None once released)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot Snapshot_slots[] = {
    {Py_tp_new, Snapshot_new},
    {Py_tp_getset, Snapshot_getset},
    {Py_tp_dealloc, Snapshot_dealloc},
    {Py_tp_traverse, Snapshot_traverse},
    {Py_tp_methods, Snapshot_methods},
    {Py_tp_members, Snapshot_members},
    {Py_mp_subscript, Snapshot_subscript},
    {Py_sq_contains, Snapshot_contains},
    {Py_tp_doc, "Snapshot(db): a consistent read view of db as it is now; use DB.snapshot()."},
    {0, NULL},
};

static PyType_Spec Snapshot_spec = {"pylsm._pylsm.Snapshot", sizeof(SnapshotObject), 0,
                                    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC, Snapshot_slots};

static PyMethodDef Iter_methods[] = {
    {"close", (PyCFunction)Iter_close, METH_NOARGS, "close()\n--\n\nRelease the iterator now."},
    {"_cursor", (PyCFunction)Iter_cursor, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot Iter_slots[] = {
    {Py_tp_dealloc, Iter_dealloc},
    {Py_tp_traverse, Iter_traverse},
    {Py_tp_clear, Iter_clear},
    {Py_tp_iter, Iter_self},
    {Py_tp_iternext, Iter_next},
    {Py_tp_methods, Iter_methods},
    {Py_tp_doc, "An iterator over one consistent view of the database."},
    {0, NULL},
};

static PyType_Spec Iter_spec = {"pylsm._pylsm.Iterator", sizeof(IterObject), 0,
                                Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION,
                                Iter_slots};

/* ---- the changes feed ---- */

typedef struct {
    PyObject_HEAD
    PyObject *db;  /* the DB whose WALs it reads (None: WAL files given by path) */
    pl_changes *c; /* NULL once exhausted or closed */
    int busy;      /* a thread is in next() with the GIL released */
    module_state *state;
} ChangesObject;

static PyObject *new_changes(module_state *st, PyObject *db, pl_changes *c)
{
    ChangesObject *ch = (ChangesObject *)st->ChangesType->tp_alloc(st->ChangesType, 0);
    if (!ch) {
        pl_changes_free(c);
        return NULL;
    }
    ch->db = Py_NewRef(db);
    ch->c = c;
    ch->state = st;
    return (PyObject *)ch;
}

/* pl_changes_new: a reader of the batches after LSN since, into c. */
typedef struct {
    uint64_t since;
    pl_changes *c;
} changes_new_args;

static int core_changes_new(pl_db *db, void *ctx, int flag)
{
    changes_new_args *a = ctx;
    return pl_changes_new(db, a->since, &a->c);
}

static PyObject *DB_changes_raw(DBObject *self, PyObject *arg)
{
    if (check_open(self) < 0)
        return NULL;
    unsigned long long since = PyLong_AsUnsignedLongLong(arg);
    if (since == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    if (check_open(self) < 0) /* the conversion may have run Python code (__index__) */
        return NULL;
    changes_new_args a = {(uint64_t)since, NULL};
    int rc = call_core(self->db, core_changes_new, &a, 0);
    if (rc)
        return set_error(self->state, rc);
    return new_changes(self->state, (PyObject *)self, a.c);
}

static PyObject *mod_wal_changes(PyObject *m, PyObject *args)
{
    PyObject *paths;
    unsigned long long since;
    if (!PyArg_ParseTuple(args, "OK:_wal_changes", &paths, &since))
        return NULL;
    module_state *st = PyModule_GetState(m);
    PyObject *seq = PySequence_Fast(paths, "paths must be a sequence of paths");
    if (!seq)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **conv = PyMem_Calloc((size_t)n + 1, sizeof *conv);
    const char **ps = PyMem_Calloc((size_t)n + 1, sizeof *ps);
    int ok = conv && ps;
    if (!ok)
        PyErr_NoMemory();
    for (Py_ssize_t i = 0; ok && i < n; i++) {
        ok = PyUnicode_FSConverter(PySequence_Fast_GET_ITEM(seq, i), &conv[i]);
        if (ok)
            ps[i] = PyBytes_AS_STRING(conv[i]);
    }
    pl_changes *c = NULL;
    int rc = ok ? pl_changes_open_files(ps, (size_t)n, (uint64_t)since, &c) : PL_OK;
    for (Py_ssize_t i = 0; conv && i < n; i++)
        Py_XDECREF(conv[i]);
    PyMem_Free(conv);
    PyMem_Free(ps);
    Py_DECREF(seq);
    if (!ok)
        return NULL;
    if (rc)
        return set_error(st, rc);
    return new_changes(st, Py_None, c);
}

static int append_op(void *ctx, int is_put, const char *key, size_t klen, const char *val, size_t vlen)
{
    PyObject *k = PyBytes_FromStringAndSize(key, (Py_ssize_t)klen);
    PyObject *v = k && is_put ? PyBytes_FromStringAndSize(val, (Py_ssize_t)vlen) : Py_NewRef(Py_None);
    PyObject *t = k && v ? Py_BuildValue("(sOO)", is_put ? "put" : "delete", k, v) : NULL;
    int r = t ? PyList_Append((PyObject *)ctx, t) : -1;
    Py_XDECREF(k);
    Py_XDECREF(v);
    Py_XDECREF(t);
    return r < 0 ? PL_NOMEM : PL_OK;
}

static PyObject *Changes_next(ChangesObject *self)
{
    if (!self->c)
        return NULL; /* StopIteration */
    if (self->busy) {
        PyErr_SetString(self->state->Error, "the changes iterator is in use by another thread");
        return NULL;
    }
    self->busy = 1;
    pl_changes *c = self->c;
    uint64_t lsn = 0, ts = 0;
    uint32_t count = 0;
    int has_ts = 0, rc;
    const char *p = NULL;
    size_t len = 0;
    Py_BEGIN_ALLOW_THREADS
    rc = pl_changes_next(c, &lsn, &count, &ts, &has_ts, &p, &len);
    Py_END_ALLOW_THREADS
    if (rc == PL_NOTFOUND) {
        self->busy = 0;
        pl_changes_free(self->c);
        self->c = NULL;
        return NULL;
    }
    /* Busy until the payload (the reader's) is decoded: the allocations may run a finalizer that
     * closes the reader. */
    PyObject *ops = rc ? NULL : PyList_New(0);
    if (ops && (rc = pl_batch_decode(p, len, append_op, ops)) != PL_OK)
        Py_CLEAR(ops);
    self->busy = 0;
    if (!ops)
        return PyErr_Occurred() ? NULL : set_error(self->state, rc);
    PyObject *when = has_ts ? PyFloat_FromDouble((double)ts / 1e6) : Py_NewRef(Py_None);
    if (!when) {
        Py_DECREF(ops);
        return NULL;
    }
    return Py_BuildValue("(KNN)", (unsigned long long)lsn, when, ops);
}

static PyObject *Changes_close(ChangesObject *self, PyObject *unused)
{
    if (self->busy) {
        PyErr_SetString(self->state->Error, "the changes iterator is in use by another thread");
        return NULL;
    }
    pl_changes_free(self->c);
    self->c = NULL;
    Py_RETURN_NONE;
}

static PyObject *Changes_self(PyObject *self) { return Py_NewRef(self); }

static void Changes_dealloc(ChangesObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    pl_changes_free(self->c);
    Py_CLEAR(self->db);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static int Changes_traverse(ChangesObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->db);
    return 0;
}

static int Changes_clear(ChangesObject *self)
{
    Py_CLEAR(self->db);
    return 0;
}

static PyMethodDef Changes_methods[] = {
    {"close", (PyCFunction)Changes_close, METH_NOARGS, "close()\n--\n\nRelease the reader now."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot Changes_slots[] = {
    {Py_tp_dealloc, Changes_dealloc},
    {Py_tp_traverse, Changes_traverse},
    {Py_tp_clear, Changes_clear},
    {Py_tp_iter, Changes_self},
    {Py_tp_iternext, Changes_next},
    {Py_tp_methods, Changes_methods},
    {Py_tp_doc, "The write batches after an LSN, from the WALs: (lsn, timestamp or None, [(op, key, value)])."},
    {0, NULL},
};

static PyType_Spec Changes_spec = {"pylsm._pylsm.Changes", sizeof(ChangesObject), 0,
                                   Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION,
                                   Changes_slots};

static PyMethodDef module_methods[] = {
    {"verify", mod_verify, METH_VARARGS, "verify(path, progress=None)\n--\n\nCheck every checksum of a database."},
    {"repair", mod_repair, METH_VARARGS, "repair(path, progress=None)\n--\n\nSalvage a damaged database."},
    {"destroy", mod_destroy, METH_VARARGS, "destroy(path)\n--\n\nDelete a database directory."},
    {"_wal_changes", mod_wal_changes, METH_VARARGS, NULL},
    {"_test_fault", mod_test_fault, METH_VARARGS, NULL},
    {"_test_fault_clear", mod_test_fault_clear, METH_NOARGS, NULL},
    {"_test_set", mod_test_set, METH_VARARGS, NULL},
    {"_test_fault_calls", mod_test_fault_calls, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static int add_exception(PyObject *m, PyObject **slot, const char *name, PyObject *bases, const char *doc)
{
    char full[64];
    snprintf(full, sizeof full, "pylsm.%s", name);
    *slot = PyErr_NewExceptionWithDoc(full, doc, bases, NULL);
    if (!*slot)
        return -1;
    return PyModule_AddObjectRef(m, name, *slot);
}

static int add_type(PyObject *m, PyTypeObject **slot, PyType_Spec *spec)
{
    *slot = (PyTypeObject *)PyType_FromModuleAndSpec(m, spec, NULL);
    if (!*slot)
        return -1;
    return PyModule_AddType(m, *slot);
}

/* The core's option defaults (pl_options_init) and ranges (pl_option_ranges), for pylsm/__init__.py:
 * OPTION_DEFAULTS {keyword: default} and OPTION_RANGES {keyword: (min, max)}. */
static int add_options(PyObject *m)
{
    pl_options o;
    pl_options_init(&o);
#define B(x) ((x) ? Py_True : Py_False)
    PyObject *d = Py_BuildValue(
        "{s:O,s:O,s:i,s:K,s:K,s:K,s:K,s:i,s:K,s:i,s:O,s:O,s:O,s:O,s:K,s:K,s:i}", "create_if_missing",
        B(o.create_if_missing), "error_if_exists", B(o.error_if_exists), "sync_mode", o.sync_mode, "sync_count",
        (unsigned long long)o.sync_count, "sync_interval_ms", (unsigned long long)o.sync_interval_ms,
        "memtable_bytes", (unsigned long long)o.memtable_bytes, "block_bytes", (unsigned long long)o.block_bytes,
        "bloom_bits_per_key", o.bloom_bits_per_key, "block_cache_bytes", (unsigned long long)o.block_cache_bytes,
        "wal_recovery", o.wal_recovery, "wal_timestamp", B(o.wal_timestamp), "background_compaction",
        B(o.background_compaction), "read_only", B(o.read_only), "point_index", B(o.point_index),
        "wal_retention_bytes", (unsigned long long)o.wal_retention_bytes, "wal_retention_seconds",
        (unsigned long long)o.wal_retention_seconds, "compression", o.compression);
#undef B
    PyObject *r = PyDict_New();
    int rc = d && r && PyModule_AddObjectRef(m, "OPTION_DEFAULTS", d) == 0 &&
                     PyModule_AddObjectRef(m, "OPTION_RANGES", r) == 0 ? 0 : -1;
    for (const pl_option_range *i = pl_option_ranges(); !rc && i->name; i++) {
        PyObject *t = Py_BuildValue("(KK)", (unsigned long long)i->min, (unsigned long long)i->max);
        rc = t && PyDict_SetItemString(r, i->name, t) == 0 ? 0 : -1;
        Py_XDECREF(t);
    }
    Py_XDECREF(d);
    Py_XDECREF(r);
    return rc;
}

static int module_exec(PyObject *m)
{
    module_state *st = PyModule_GetState(m);
    PyObject *b;
    if (add_exception(m, &st->Error, "Error", PyExc_Exception,
                      "The base of every error pylsm raises (besides TypeError and ValueError for bad "
                      "arguments).") < 0)
        return -1;
    if (add_exception(m, &st->CorruptionError, "CorruptionError", st->Error,
                      "A checksum or format check failed: the message names the file and the offset. "
                      "Damaged data is reported, never returned; pylsm.repair() salvages what is intact.") < 0)
        return -1;
    if (add_exception(m, &st->LockError, "LockError", st->Error,
                      "The database is open for writing elsewhere: in another process, or in another DB "
                      "object of this process (close that one first, or open with read_only=True).") < 0)
        return -1;
    if (add_exception(m, &st->ReadOnlyError, "ReadOnlyError", st->Error,
                      "A write to a database opened with read_only=True.") < 0)
        return -1;
    struct { PyObject **slot; const char *name; PyObject *base; const char *doc; } two[] = {
        {&st->ClosedError, "ClosedError", PyExc_ValueError,
         "The database (or the iterator or snapshot) was closed; also a ValueError, as for a closed file."},
        {&st->StorageError, "StorageError", PyExc_OSError,
         "A system call failed (errno says which: ENOSPC, EIO, ...); also an OSError.  After a failed "
         "write or fsync the database refuses writes until it is reopened; reads go on."},
        {&st->NotFoundError, "NotFoundError", PyExc_FileNotFoundError,
         "No database at the path (create_if_missing=False, or read_only=True); also a FileNotFoundError."},
    };
    if (!(b = PyTuple_Pack(2, PyExc_TypeError, PyExc_ValueError)))
        return -1;
    st->PairError = PyErr_NewExceptionWithDoc(
        "pylsm.PairError", "A (key, value) pair of the wrong length: a TypeError and, as dict.update "
        "raises, a ValueError.", b, NULL);
    Py_DECREF(b);
    if (!st->PairError || PyModule_AddObjectRef(m, "PairError", st->PairError) < 0)
        return -1;
    for (size_t i = 0; i < sizeof two / sizeof two[0]; i++) {
        if (!(b = PyTuple_Pack(2, st->Error, two[i].base)))
            return -1;
        int r = add_exception(m, two[i].slot, two[i].name, b, two[i].doc);
        Py_DECREF(b);
        if (r < 0)
            return -1;
    }
    if (add_type(m, &st->DBType, &DB_spec) < 0 || add_type(m, &st->BatchType, &Batch_spec) < 0 ||
        add_type(m, &st->SnapshotType, &Snapshot_spec) < 0 || add_type(m, &st->IterType, &Iter_spec) < 0 ||
        add_type(m, &st->ChangesType, &Changes_spec) < 0)
        return -1;
    /* The numbers pylsm/__init__.py passes back: stated here once, from the core's. */
    static const struct {
        const char *name;
        long value;
    } constants[] = {
        {"MAX_KEY", PL_MAX_KEY}, {"MAX_VALUE", PL_MAX_VALUE},
        /* DB._iter(want=) */
        {"WANT_KEYS", PL_WANT_KEYS}, {"WANT_VALUES", PL_WANT_VALUES}, {"WANT_ITEMS", PL_WANT_ITEMS},
        /* Iterator._cursor(op) */
        {"OP_NEXT", OP_NEXT}, {"OP_PREV", OP_PREV}, {"OP_PEEK_NEXT", OP_PEEK_NEXT},
        {"OP_PEEK_PREV", OP_PEEK_PREV}, {"OP_SEEK", OP_SEEK}, {"OP_TO_FIRST", OP_TO_FIRST},
        {"OP_TO_LAST", OP_TO_LAST}, {"OP_TO_END", OP_TO_END},
        /* DB(sync_mode=, wal_recovery=, compression=) */
        {"SYNC_NONE", PL_SYNC_NONE}, {"SYNC_EVERY_WRITE", PL_SYNC_EVERY_WRITE}, {"SYNC_EVERY_N", PL_SYNC_EVERY_N},
        {"SYNC_TIME_BASED", PL_SYNC_TIME_BASED}, {"SYNC_HYBRID", PL_SYNC_HYBRID},
        {"RECOVER_TOLERATE_TAIL", PL_RECOVER_TOLERATE_TAIL}, {"RECOVER_ABSOLUTE", PL_RECOVER_ABSOLUTE},
        {"RECOVER_SALVAGE", PL_RECOVER_SALVAGE},
        {"COMPRESS_NONE", PL_COMPRESS_NONE}, {"COMPRESS_ZSTD", PL_COMPRESS_ZSTD}, {"COMPRESS_LZ4", PL_COMPRESS_LZ4},
    };
    for (size_t i = 0; i < sizeof constants / sizeof constants[0]; i++)
        if (PyModule_AddIntConstant(m, constants[i].name, constants[i].value) < 0)
            return -1;
    return add_options(m);
}

static int module_traverse(PyObject *m, visitproc visit, void *arg)
{
    module_state *st = PyModule_GetState(m);
    Py_VISIT(st->Error);
    Py_VISIT(st->CorruptionError);
    Py_VISIT(st->LockError);
    Py_VISIT(st->ClosedError);
    Py_VISIT(st->StorageError);
    Py_VISIT(st->NotFoundError);
    Py_VISIT(st->ReadOnlyError);
    Py_VISIT(st->PairError);
    Py_VISIT(st->DBType);
    Py_VISIT(st->BatchType);
    Py_VISIT(st->SnapshotType);
    Py_VISIT(st->IterType);
    Py_VISIT(st->ChangesType);
    return 0;
}

static int module_clear(PyObject *m)
{
    module_state *st = PyModule_GetState(m);
    Py_CLEAR(st->Error);
    Py_CLEAR(st->CorruptionError);
    Py_CLEAR(st->LockError);
    Py_CLEAR(st->ClosedError);
    Py_CLEAR(st->StorageError);
    Py_CLEAR(st->NotFoundError);
    Py_CLEAR(st->ReadOnlyError);
    Py_CLEAR(st->PairError);
    Py_CLEAR(st->DBType);
    Py_CLEAR(st->BatchType);
    Py_CLEAR(st->SnapshotType);
    Py_CLEAR(st->IterType);
    Py_CLEAR(st->ChangesType);
    return 0;
}

static void module_free(void *m) { module_clear((PyObject *)m); }

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
    {0, NULL},
};

static struct PyModuleDef pylsm_module = {
    PyModuleDef_HEAD_INIT, "pylsm._pylsm", "The C core of pylsm.", sizeof(module_state), module_methods,
    module_slots, module_traverse, module_clear, module_free,
};

PyMODINIT_FUNC PyInit__pylsm(void) { return PyModuleDef_Init(&pylsm_module); }
