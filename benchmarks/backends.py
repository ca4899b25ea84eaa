"""One small adapter per backend, each configured fairly for the workload.

Every adapter is opened with ``Adapter(path, sync=..., memtable_bytes=..., cache_bytes=...)`` and offers:

  put(k, v), get(k) -> bytes | None, delete(k)   bound at open time to the backend's own fastest call, so
                                                  the timed loops pay no adapter overhead where the backend
                                                  has a direct call (pylsm, plyvel, rocksdict, dict)
  write_batch(pairs)                              one atomic batch, the backend's own batch API
  bulk_load(pairs)                                pairs in key order loaded by the backend's fastest bulk
                                                  path (ingest workload): pylsm ``ingest()``, RocksDB
                                                  ``SstFileWriter`` + ``ingest_external_file``, LMDB
                                                  appending ``putmulti`` in one transaction; the others
                                                  their batch write, in batches of C.BATCH (fillbatch)
  scan(start=None, reverse=False, limit=None)     iterator of (key, value) in key order
  get_many(keys) -> list                          the backend's own batch read (a loop of gets without one)
  begin_reads()                                   before a read-only pass (untimed); LMDB, SQLite and LSM
                                                  hold one read transaction for the pass, as their users do
  flush(), compact(), close(), reopen()
  thread_view()                                   a handle for another thread (own read txn / connection)
  skip_reason(workload) (classmethod)             why this backend cannot run a workload fairly, or None
  replays_log                                     False for engines whose reopen after a kill replays no
                                                  log (LMDB, SQLite in WAL mode): no recovery ratio

Fairness, common to all: same keys and values, same sync level per workload (``"none"``: the write is handed
to the OS before the call returns, so it survives kill -9 but not power loss; ``"every_write"``: fsynced
before the call returns), same memtable/write-buffer size (64 MiB) and block cache (32 MiB, 4 MiB for
readrandom_threads2) where the backend has that knob, bloom filters of 10 bits/key where it has them, and no
compression (the values are random bytes, so compression would only cost the peers CPU) -- except in the
compressible workloads (JSON-like values), where each engine that has block compression uses it: pylsm and
RocksDB zstd, LevelDB snappy (its only codec); the engines without one are skipped there.
"""
import abc
import functools
import itertools
import os
import sqlite3
import threading
from bisect import bisect_left

import bench_common as C

__all__ = ["BACKENDS", "PEERS", "get_backend_class"]


def _sum_sizes(path, want):
    """Written bytes of the files of ``path`` that ``want``: trailing zeros (preallocation) not counted."""
    return sum(C.data_extent(os.path.join(path, f)) for f in os.listdir(path) if want(f))


class Backend(abc.ABC):
    """Base class; see the module docstring for the contract."""

    name = "?"
    module = None        # what must import for this backend to run
    persistent = True
    replays_log = True   # its reopen after kill -9 replays a log into a memtable (recovery has a ratio)

    compressor = None    # the block compression of the compressible workloads (None: it has none)

    def __init__(self, path, *, sync=C.SYNC_NONE, memtable_bytes=C.MEMTABLE_BYTES,
                 cache_bytes=C.CACHE_BYTES, compress=False):
        if sync not in (C.SYNC_NONE, C.SYNC_EVERY_WRITE):
            raise ValueError(sync)
        self.path = str(path)
        self.sync = sync
        self.memtable_bytes = memtable_bytes
        self.cache_bytes = cache_bytes
        self.compress = compress    # the compressible workloads: its compressor on
        self.is_open = False
        self.open()

    @classmethod
    def skip_reason(cls, workload):
        if workload.startswith("compressible") and cls.compressor is None:
            return f"{cls.name} has no block compression"
        return None

    @abc.abstractmethod
    def open(self):
        """Open (or create) the store at self.path with this adapter's configuration."""

    @abc.abstractmethod
    def close(self):
        """Close the store; safe to call twice."""

    def reopen(self):
        self.close()
        self.open()

    def begin_reads(self):
        pass

    def flush(self):
        """Write the memtable to an SSTable where the backend has one (untimed, before a close)."""

    def compact(self):
        """Compact everything where the backend can (space workload)."""

    def bulk_load(self, pairs):
        """Load pairs given in ascending key order (ingest workload); by default fillbatch's batches."""
        write = self.write_batch
        it = iter(pairs)
        while True:
            chunk = list(itertools.islice(it, C.BATCH))
            if not chunk:
                return
            write(chunk)

    def get_many(self, keys):
        """Values (None when absent) of a list of keys (get_many workload): the backend's own batch read
        where it has one and it is the faster way to a list in key order; a map of its get otherwise."""
        return list(map(self.get, keys))

    def thread_view(self, write=False):
        """A handle another thread uses for get (``write=False``) or put (``write=True``)."""
        return self

    def close_view(self, view):
        if view is not self:
            view.close()

    @classmethod
    def wal_bytes(cls, path):
        """Bytes of write-ahead log at ``path`` without a preallocated zero tail (recovery workload;
        measured before the reopen)."""
        return 0

    def __repr__(self):
        return f"<{self.name} {self.path} sync={self.sync}>"


# --------------------------------------------------------------------------------------------- pylsm
class PylsmBackend(Backend):
    """pylsm: ``pylsm.open(path, sync=..., memtable_bytes=64 MiB, block_cache_bytes=32 MiB (4 MiB for
    readrandom_threads2), bloom_bits_per_key=10)`` (``compression="zstd"`` in the compressible workloads);
    sync ``"none"`` or ``"every_write"`` (group commit).
    put/get/delete are the C methods themselves; batches are ``db.update(pairs)``; scans ``db.items()``;
    ``flush()``/``compact()`` are pylsm's own."""

    name = "pylsm"
    module = "pylsm"
    compressor = "zstd"

    def open(self):
        import pylsm
        self.db = db = pylsm.open(self.path, sync=self.sync, memtable_bytes=self.memtable_bytes,
                                  block_cache_bytes=self.cache_bytes, bloom_bits_per_key=C.BLOOM_BITS,
                                  compression=self.compressor if self.compress else None)
        self.put, self.get, self.delete = db.put, db.get, db.delete
        self.write_batch = db.update
        self.bulk_load = db.ingest
        self.get_many = db.get_many
        self.is_open = True

    def scan(self, start=None, reverse=False, limit=None):
        it = self.db.items(start=start, reverse=reverse)
        return it if limit is None else itertools.islice(it, limit)

    def flush(self):
        self.db.flush()

    def compact(self):
        self.db.compact()

    def close(self):
        if self.is_open:
            self.db.close()
            self.db = None
            self.is_open = False

    @classmethod
    def wal_bytes(cls, path):
        return _sum_sizes(path, lambda f: f.endswith(".wal"))


# --------------------------------------------------------------------------------------------- plyvel
class PlyvelBackend(Backend):
    """LevelDB via plyvel: ``plyvel.DB(path, write_buffer_size=64 MiB, lru_cache_size=32 MiB (4 MiB for
    readrandom_threads2), bloom_filter_bits=10, compression=None (snappy in the compressible workloads),
    block_size=4096)``.
    Sync ``"none"``: ``db.put(k, v)`` (sync=False: LevelDB writes the log record to the OS on every put);
    ``"every_write"``: ``db.put(k, v, sync=True)`` (LevelDB group-commits concurrent writers).
    Batches: ``db.write_batch(sync=...)``. LevelDB has no flush call: its reopen turns the log into a
    level-0 table, which the read workloads' close + reopen does. ``compact()`` is ``compact_range`` from
    the first key to the last (it flushes the memtable first)."""

    name = "plyvel"
    module = "plyvel"
    compressor = "snappy"  # LevelDB's only codec

    def open(self):
        import plyvel
        self.db = db = plyvel.DB(self.path, create_if_missing=True,
                                 write_buffer_size=self.memtable_bytes, lru_cache_size=self.cache_bytes,
                                 bloom_filter_bits=C.BLOOM_BITS, compression=self.compressor if self.compress else None,
                                 block_size=4096)
        self._sync = self.sync == C.SYNC_EVERY_WRITE
        self.put = functools.partial(db.put, sync=True) if self._sync else db.put
        self.delete = functools.partial(db.delete, sync=True) if self._sync else db.delete
        self.get = db.get
        self.is_open = True

    def write_batch(self, pairs):
        with self.db.write_batch(sync=self._sync) as wb:
            put = wb.put
            for k, v in pairs:
                put(k, v)

    def scan(self, start=None, reverse=False, limit=None):
        it = self.db.iterator(start=start, reverse=reverse)
        return it if limit is None else itertools.islice(it, limit)

    def compact(self):
        """compact_range over [first key, last key]. Not ``compact_range()``: without arguments plyvel
        passes two empty slices, which LevelDB takes as the range ["", ""], so it only flushed the memtable
        (a "settled" 1M-key database kept two overlapping level-0 tables of 30 MB beside level 2)."""
        first = next(self.db.iterator(include_value=False), None)
        if first is not None:
            last = next(self.db.iterator(reverse=True, include_value=False))
            self.db.compact_range(start=first, stop=last)

    def close(self):
        if self.is_open:
            self.db.close()
            self.db = None
            self.is_open = False

    @classmethod
    def wal_bytes(cls, path):
        return _sum_sizes(path, lambda f: f.endswith(".log"))


# ------------------------------------------------------------------------------------------ rocksdict
class RocksdictBackend(Backend):
    """RocksDB via rocksdict: ``Rdict(path, Options(raw_mode=True))`` (raw bytes, no pickling) with
    ``set_write_buffer_size(64 MiB)``, compression none (zstd in the compressible workloads), a block-based
    table with ``Cache(32 MiB)`` (4 MiB for
    readrandom_threads2), ``set_bloom_filter(10, False)`` and 4 KiB blocks; other options RocksDB's defaults
    (2 background jobs). ``WriteOptions.sync`` is False for ``"none"`` (the WAL record is written to the OS
    on every write: manual_wal_flush is off) and True for ``"every_write"`` (RocksDB group-commits concurrent
    writers). Batches: ``WriteBatch(raw_mode=True)`` + ``db.write``. ``flush()``/``compact_range()``."""

    name = "rocksdict"
    module = "rocksdict"
    compressor = "zstd"

    def open(self):
        import rocksdict as r
        opts = r.Options(raw_mode=True)
        opts.create_if_missing(True)
        opts.set_write_buffer_size(self.memtable_bytes)
        opts.set_compression_type(r.DBCompressionType.zstd() if self.compress else r.DBCompressionType.none())
        table = r.BlockBasedOptions()
        self._cache = r.Cache(self.cache_bytes)
        table.set_block_cache(self._cache)
        table.set_bloom_filter(C.BLOOM_BITS, False)
        table.set_block_size(4096)
        opts.set_block_based_table_factory(table)
        self.db = db = r.Rdict(self.path, opts)
        wo = r.WriteOptions()
        wo.sync = self.sync == C.SYNC_EVERY_WRITE
        db.set_write_options(wo)
        self._WriteBatch = r.WriteBatch
        self.put, self.get, self.delete = db.put, db.get, db.delete
        self.is_open = True

    def get_many(self, keys):
        return self.db.get(keys)  # rocksdict's batch read: get(list) -> list (multi_get)

    def write_batch(self, pairs):
        wb = self._WriteBatch(raw_mode=True)
        put = wb.put
        for k, v in pairs:
            put(k, v)
        self.db.write(wb)

    def bulk_load(self, pairs):
        """RocksDB's bulk load: SstFileWriter tables cut at the write buffer size, then one
        ingest_external_file (moving the files in)."""
        import rocksdict as r
        opts = r.Options(raw_mode=True)
        opts.set_compression_type(r.DBCompressionType.none())
        table = r.BlockBasedOptions()
        table.set_bloom_filter(C.BLOOM_BITS, False)
        table.set_block_size(4096)
        opts.set_block_based_table_factory(table)
        paths, w = [], None
        for i, (k, v) in enumerate(pairs):
            if w is None:
                paths.append(f"{self.path}.ingest-{len(paths):06d}.sst")
                w = r.SstFileWriter(opts)
                w.open(paths[-1])
            w[k] = v
            if i % 1024 == 1023 and w.file_size() >= self.memtable_bytes:
                w.finish()
                w = None
        if w is not None:
            w.finish()
        if paths:
            io = r.IngestExternalFileOptions()
            io.set_move_files(True)
            self.db.ingest_external_file(paths, io)

    def scan(self, start=None, reverse=False, limit=None):
        it = self.db.items(backwards=reverse, from_key=start)
        return it if limit is None else itertools.islice(it, limit)

    def flush(self):
        self.db.flush()

    def compact(self):
        self.db.compact_range(None, None)

    def close(self):
        if self.is_open:
            self.db.close()
            self.db = self.put = self.get = self.delete = None
            self.is_open = False

    @classmethod
    def wal_bytes(cls, path):
        return _sum_sizes(path, lambda f: f.endswith(".log"))


# ----------------------------------------------------------------------------------------------- lmdb
class LmdbBackend(Backend):
    """LMDB via py-lmdb: ``lmdb.open(path, map_size=64 GiB)`` (virtual; never the limit).
    Sync ``"none"``: ``sync=False, metasync=False, writemap=True`` (a commit lands in the shared map, i.e. in
    the OS page cache: survives kill -9, not power loss); ``"every_write"``: LMDB's durable defaults
    ``sync=True, metasync=True, writemap=False`` (every commit fsyncs). A put is one write transaction (the
    same promise as one pylsm put); a batch is one write transaction with ``cursor.putmulti``. Reads run in
    one read transaction per pass (``begin_reads``), as LMDB is meant to be used, ended by the next write.
    LMDB has no memtable and no in-place compaction (``copy(compact=True)`` makes a new file), so
    ``flush()``/``compact()`` do nothing. It has no block cache: it reads through the OS page cache.
    get_many is a map of ``txn.get``, which is faster than its batch read ``getmulti``."""

    name = "lmdb"
    module = "lmdb"
    replays_log = False  # a B-tree with copy-on-write commits: the reopen after a kill reads the meta page
    MAP_SIZE = 64 << 30

    def open(self):
        import lmdb
        durable = self.sync == C.SYNC_EVERY_WRITE
        self.env = env = lmdb.open(self.path, map_size=self.MAP_SIZE, sync=durable, metasync=durable,
                                   writemap=not durable, max_readers=256, max_spare_txns=16)
        self._rtxn = None
        self._write_lock = threading.Lock()
        begin = env.begin

        def put(k, v):
            if self._rtxn is not None:
                self._end_reads()
            with begin(write=True) as txn:
                txn.put(k, v)

        def delete(k):
            if self._rtxn is not None:
                self._end_reads()
            with begin(write=True) as txn:
                txn.delete(k)

        self.put, self.delete = put, delete
        self.get = self._lazy_get
        self.is_open = True

    def _lazy_get(self, k):
        self.begin_reads()
        return self.get(k)

    def begin_reads(self):
        if self._rtxn is None:
            self._rtxn = self.env.begin(buffers=False)
            self.get = self._rtxn.get

    def get_many(self, keys):
        """A map of ``txn.get`` in the pass's read transaction. lmdb's batch read, ``Cursor.getmulti``
        (pairs of the keys found, to be mapped back to the keys), is slower: 1,000-key batches on a settled
        200,000-key database read 590k keys/s with getmulti alone, 436k/s mapped back, 684k/s by txn.get."""
        self.begin_reads()
        return list(map(self._rtxn.get, keys))

    def _end_reads(self):
        if self._rtxn is not None:
            self._rtxn.abort()
            self._rtxn = None
            self.get = self._lazy_get

    def write_batch(self, pairs):
        self._end_reads()
        with self.env.begin(write=True) as txn:
            txn.cursor().putmulti(pairs)

    def bulk_load(self, pairs):
        """LMDB's bulk load of sorted keys: one transaction of appending puts (MDB_APPEND)."""
        self._end_reads()
        with self.env.begin(write=True) as txn:
            txn.cursor().putmulti(pairs, append=True)

    def scan(self, start=None, reverse=False, limit=None):
        txn = self._rtxn if self._rtxn is not None else self.env.begin()
        cur = txn.cursor()
        if reverse:
            if start is None:
                cur.last()
            elif not cur.set_range(start):
                cur.last()
            elif cur.key() != start:
                cur.prev()
            it = cur.iterprev()
        else:
            if start is None:
                cur.first()
            else:
                cur.set_range(start)
            it = cur.iternext()
        return it if limit is None else itertools.islice(it, limit)

    def thread_view(self, write=False):
        return _LmdbView(self.env, self._write_lock)

    def close(self):
        if self.is_open:
            self._end_reads()
            self.env.close()
            self.env = None
            self.is_open = False


class _LmdbView:
    """Another thread's LMDB handle: its own read transaction; each put its own write transaction, taken
    under a Python lock (LMDB admits one writer at a time anyway; the lock lets a waiting thread release
    the GIL instead of blocking inside mdb_txn_begin while holding it)."""

    def __init__(self, env, write_lock):
        self.env = env
        self.txn = None
        self.write_lock = write_lock

    def begin_reads(self):
        if self.txn is None:
            self.txn = self.env.begin()
            self.get = self.txn.get

    def get(self, k):
        self.begin_reads()
        return self.txn.get(k)

    def put(self, k, v):
        with self.write_lock:
            with self.env.begin(write=True) as txn:
                txn.put(k, v)

    def close(self):
        if self.txn is not None:
            self.txn.abort()
            self.txn = None


# ------------------------------------------------------------------------------- sqlite3 and lsm-db
class _ConnView:
    """Another thread's handle on a store reached through connections (SQLite, SQLite's LSM). A reader gets
    its own connection (same configuration) and its own read transaction, so reads run in parallel where
    the binding lets them. Writers share the owner's connection under a lock: both engines have one writer
    at a time, and separate writer connections would wait in a sleeping busy handler (SQLite) or fail with
    LSM_BUSY (LSM)."""

    def __init__(self, owner, write):
        self.owner = owner
        self.owned = not write
        self.conn = owner._connect() if self.owned else owner.conn
        self.get = owner._make_get(self.conn)
        put, lock = owner._make_put(self.conn), owner._write_lock

        def locked_put(k, v):
            with lock:
                put(k, v)

        self.put = locked_put
        self.reads = None

    def begin_reads(self):
        if self.owned and self.reads is None:
            self.reads = self.owner._begin(self.conn)

    def close(self):
        if self.owned:
            if self.reads is not None:
                self.owner._end(self.conn, self.reads)
                self.reads = None
            self.conn.close()


class _ConnBackend(Backend):
    """What SQLite and LSM share: a connection per thread (``_ConnView``), one read transaction per pass
    held in ``self._reads`` (``_begin`` / ``_end``), ended by the next write (SQLite) or batch (LSM)."""

    conn = None

    @abc.abstractmethod
    def _connect(self):
        """A new connection to the store."""

    @abc.abstractmethod
    def _make_get(self, conn):
        """get(key) -> value or None, on conn."""

    @abc.abstractmethod
    def _make_put(self, conn):
        """put(key, value), on conn."""

    @abc.abstractmethod
    def _begin(self, conn):
        """Start a read pass on conn; returns what _end needs."""

    @abc.abstractmethod
    def _end(self, conn, reads):
        """End the read pass that _begin started."""

    def open(self):
        self.conn = self._connect()
        self._reads = None
        self._write_lock = threading.Lock()
        self.get = self._make_get(self.conn)
        self.is_open = True

    def begin_reads(self):
        if self._reads is None:
            self._reads = self._begin(self.conn)

    def _end_reads(self):
        if self._reads is not None:
            self._end(self.conn, self._reads)
            self._reads = None

    def thread_view(self, write=False):
        return _ConnView(self, write)

    def close(self):
        if self.is_open:
            self._end_reads()
            self.conn.close()
            self.conn = None
            self.is_open = False


# -------------------------------------------------------------------------------------------- sqlite3
class SqliteBackend(_ConnBackend):
    """SQLite via the stdlib sqlite3: one file, ``journal_mode=WAL``, one table
    ``kv(k blob primary key, v blob) without rowid``, ``cache_size`` = the block cache (32 MiB; 4 MiB for
    readrandom_threads2), autocommit connections (``isolation_level=None``) with ``busy_timeout`` 60 s.
    Sync ``"none"``: ``synchronous=OFF`` (each commit is written to the WAL file, not fsynced: survives kill -9,
    not power loss); ``"every_write"``: ``synchronous=FULL`` (in WAL mode NORMAL does not fsync commits, so
    FULL is the level that matches). A put is one ``INSERT OR REPLACE`` in its own transaction; a batch is
    ``executemany`` inside BEGIN/COMMIT; a scan is ``SELECT k, v ... ORDER BY k [DESC] [LIMIT n]``. Reads run in
    one read transaction per pass (``begin_reads``). ``compact()`` is checkpoint + VACUUM + checkpoint(TRUNCATE).
    Each thread gets its own connection."""

    name = "sqlite3"
    module = "sqlite3"
    replays_log = False  # the WAL is read in place (its index rebuilt), not replayed into a memtable
    FILE = "kv.sqlite"
    INSERT = "INSERT OR REPLACE INTO kv(k, v) VALUES (?, ?)"
    SELECT = "SELECT v FROM kv WHERE k = ?"

    def _connect(self):
        os.makedirs(self.path, exist_ok=True)
        conn = sqlite3.connect(os.path.join(self.path, self.FILE), isolation_level=None,
                               check_same_thread=False, timeout=60.0, cached_statements=16)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=" + ("FULL" if self.sync == C.SYNC_EVERY_WRITE else "OFF"))
        conn.execute("PRAGMA cache_size=%d" % -(self.cache_bytes // 1024))
        conn.execute("CREATE TABLE IF NOT EXISTS kv(k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID")
        return conn

    def _make_get(self, conn):
        ex, SELECT = conn.execute, self.SELECT

        def get(k):
            row = ex(SELECT, (k,)).fetchone()
            return None if row is None else row[0]
        return get

    def _make_put(self, conn):
        ex, INSERT = conn.execute, self.INSERT
        return lambda k, v: ex(INSERT, (k, v))

    def _begin(self, conn):
        conn.execute("BEGIN")
        return True

    def _end(self, conn, reads):
        if conn.in_transaction:
            conn.execute("COMMIT")

    def open(self):
        super().open()
        ex, insert = self.conn.execute, self._make_put(self.conn)

        def put(k, v):
            if self._reads is not None:
                self._end_reads()
            insert(k, v)

        def delete(k):
            if self._reads is not None:
                self._end_reads()
            ex("DELETE FROM kv WHERE k = ?", (k,))

        self.put, self.delete = put, delete

    def write_batch(self, pairs):
        self._end_reads()
        conn = self.conn
        conn.execute("BEGIN")
        conn.executemany(self.INSERT, pairs)
        conn.execute("COMMIT")

    def scan(self, start=None, reverse=False, limit=None):
        order = "DESC" if reverse else "ASC"
        where, args = "", []
        if start is not None:
            where = "WHERE k <= ?" if reverse else "WHERE k >= ?"
            args.append(start)
        lim = ""
        if limit is not None:
            lim = "LIMIT ?"
            args.append(limit)
        return self.conn.execute(f"SELECT k, v FROM kv {where} ORDER BY k {order} {lim}", args)

    def compact(self):
        self._end_reads()
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.conn.execute("VACUUM")
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    @classmethod
    def wal_bytes(cls, path):
        return _sum_sizes(path, lambda f: f == cls.FILE + "-wal")


# --------------------------------------------------------------------------------------------- lsm-db
class LsmdbBackend(_ConnBackend):
    """SQLite's LSM engine (LSM1, from SQLite4) via lsm-db (``import lsm``): one file ``kv.lsm``,
    ``lsm.LSM(path, autoflush=64 MiB, page_size=4096, mmap=1, multiple_processes=False, write_safety=...)``.
    Sync ``"none"``: ``SAFETY_OFF`` (every commit writes its log record to the OS, nothing is ever synced:
    survives kill -9, not power loss, as SQLite ``synchronous=OFF``); ``"every_write"``: ``SAFETY_FULL`` (the
    log is synced at every commit). ``multiple_processes=False``: one process, as pylsm, LevelDB and RocksDB
    (LSM skips its file locks per transaction). It has no block cache: with ``mmap`` the whole file is mapped
    and read through the OS page cache, as LMDB. A put is ``db.insert`` (its own transaction); a batch is
    ``begin()``, an ``insert`` per pair, ``commit()``; a get is ``db.fetch`` (its KeyError turned into None);
    get_many is its batch read ``fetch_bulk`` (one cursor for the batch, a dict of the keys found). Reads run in one read transaction
    per pass (``begin_reads`` keeps a cursor open, as LMDB and SQLite hold a read transaction), ended by the
    next batch. ``flush()`` is ``lsm_flush``; ``compact()`` is ``lsm_work(nmerge=1)`` until it writes nothing
    (every segment merged into one, checkpointed). Each reading thread gets its own connection; the binding
    never releases the GIL, so two readers take turns: measured as is."""

    name = "lsmdb"
    module = "lsm"
    FILE = "kv.lsm"

    def _connect(self):
        import lsm
        os.makedirs(self.path, exist_ok=True)
        safety = lsm.SAFETY_FULL if self.sync == C.SYNC_EVERY_WRITE else lsm.SAFETY_OFF
        return lsm.LSM(os.path.join(self.path, self.FILE), autoflush=self.memtable_bytes >> 10,
                       page_size=4096, mmap=1, multiple_processes=False, write_safety=safety)

    def _make_get(self, conn):
        fetch = conn.fetch

        def get(k):
            try:
                return fetch(k)
            except KeyError:
                return None
        return get

    def _make_put(self, conn):
        return conn.insert

    def _begin(self, conn):
        return conn.cursor()    # an open cursor holds the connection's read transaction

    def _end(self, conn, reads):
        reads.close()

    def open(self):
        super().open()
        self.put, self.delete = self.conn.insert, self.conn.delete

    def get_many(self, keys):
        """``fetch_bulk`` (a dict of the keys found) mapped back to the keys: faster than a loop of gets
        (453k keys/s against 403k in 1,000-key batches on a settled 200,000-key database)."""
        return list(map(self.conn.fetch_bulk(keys).get, keys))

    def write_batch(self, pairs):
        self._end_reads()
        conn = self.conn
        insert = conn.insert
        conn.begin()
        for k, v in pairs:
            insert(k, v)
        conn.commit()

    def scan(self, start=None, reverse=False, limit=None):
        import lsm
        cur = self.conn.cursor(reverse)
        if start is None:
            (cur.last if reverse else cur.first)()
        else:
            try:
                cur.seek(start, lsm.SEEK_LE if reverse else lsm.SEEK_GE)
            except KeyError:
                cur.close()
                return iter(())
        return cur if limit is None else itertools.islice(cur, limit)

    def flush(self):
        self._end_reads()
        self.conn.flush()

    def compact(self):
        self._end_reads()
        self.conn.flush()
        while self.conn.work(1, 1 << 20) > 0:
            pass

    @classmethod
    def wal_bytes(cls, path):
        return _sum_sizes(path, lambda f: f == cls.FILE + "-log")


# ----------------------------------------------------------------------------------------------- dict
_DICT_STORES = {}
_DICT_LOCK = threading.Lock()


class DictBackend(Backend):
    """The in-memory ceiling: a Python ``dict`` (put = ``d.__setitem__``, get = ``d.get``, batch =
    ``d.update``). "Close + reopen" keeps the dict (it stands for a store that is already in memory). Ordered
    reads use a sorted key list built in ``begin_reads`` (untimed) plus ``bisect``. No durability and no
    disk: the sync, recovery, space and memory workloads are skipped."""

    name = "dict"
    module = None
    persistent = False
    replays_log = False

    @classmethod
    def skip_reason(cls, workload):
        if workload.startswith("compressible"):
            return super().skip_reason(workload)
        if workload in ("fillsync", "fillsync_threads8"):
            return "dict has no durability: there is no fair sync level"
        if workload == "recovery":
            return "dict keeps nothing across a process kill"
        if workload in ("space", "memory"):
            return "dict has no disk footprint / on-disk format to compare"
        if workload.startswith("readrandom_cold"):
            return "dict has no files to evict from the page cache"
        return None

    def open(self):
        with _DICT_LOCK:
            self.d = d = _DICT_STORES.setdefault(self.path, {})
        self._sorted = None
        self.put, self.get, self.write_batch = d.__setitem__, d.get, d.update
        self.bulk_load = d.update
        self.delete = lambda k: d.pop(k, None)
        self.is_open = True

    def begin_reads(self):
        self._sorted = sorted(self.d)

    def scan(self, start=None, reverse=False, limit=None):
        keys = self._sorted if self._sorted is not None else sorted(self.d)
        n = len(keys)
        if reverse:
            hi = n if start is None else bisect_left(keys, start)
            if start is not None and hi < n and keys[hi] == start:
                hi += 1
            lo = 0 if limit is None else max(0, hi - limit)
            ks = keys[lo:hi][::-1] if limit is not None else reversed(keys[:hi])
        else:
            lo = 0 if start is None else bisect_left(keys, start)
            ks = keys[lo:lo + limit] if limit is not None else (keys if lo == 0 else keys[lo:])
        ks = list(ks) if not isinstance(ks, list) else ks
        return zip(ks, map(self.d.__getitem__, ks))

    def close(self):
        self.is_open = False

    @classmethod
    def destroy(cls, path):
        with _DICT_LOCK:
            _DICT_STORES.pop(str(path), None)


BACKENDS = {
    "pylsm": PylsmBackend,
    "plyvel": PlyvelBackend,
    "rocksdict": RocksdictBackend,
    "lmdb": LmdbBackend,
    "sqlite3": SqliteBackend,
    "lsmdb": LsmdbBackend,
    "dict": DictBackend,
}
PEERS = [n for n in BACKENDS if n not in ("pylsm", "dict")]


def get_backend_class(name):
    return BACKENDS[name]
