"""pylsm: an embedded, crash-safe LSM-tree key-value store with a C core.

    import pylsm
    with pylsm.open("data/mydb") as db:
        db[b"user:1"] = b"alice"
        assert db[b"user:1"] == b"alice"

The contract is API.md; this module is the friendly layer over the C binding ``pylsm._pylsm``:
option parsing, the sync strategy objects, ranges, context managers and notebook display.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, Optional, Tuple, Union

from . import _pylsm
from ._pylsm import (  # noqa: F401  (re-exported)
    ClosedError,
    CorruptionError,
    Error,
    LockError,
    StorageError,
    MAX_KEY,
    MAX_VALUE,
)

__all__ = [
    "open", "DB", "WriteBatch", "Snapshot", "verify", "repair", "destroy",
    "NoSync", "EveryWrite", "EveryNEntries", "TimeBasedBackground", "Hybrid",
    "Error", "CorruptionError", "LockError", "ClosedError", "StorageError",
    "MAX_KEY", "MAX_VALUE",
]
__version__ = "0.1.0"

MiB = 1 << 20

# ---------------------------------------------------------------------------------------------
# Sync strategies (the seed's WalSyncStrategy)

_SYNC_NONE, _SYNC_EVERY_WRITE, _SYNC_EVERY_N, _SYNC_TIME_BASED, _SYNC_HYBRID = range(5)


_MAX_COUNT = (1 << 63) - 1
_MAX_INTERVAL_MS = 86_400_000  # one day


def _positive_int(name: str, value: Any, cls: str, hi: int = _MAX_COUNT) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{cls}: {name} must be an int, not {type(value).__name__}")
    if not 1 <= value <= hi:
        raise ValueError(f"{cls}: {name} must be between 1 and {hi}, got {value}")
    return value


@dataclass(frozen=True)
class NoSync:
    """The record is handed to the OS before put() returns: it survives kill -9, not power loss."""

    def _args(self) -> dict:
        return {"sync_mode": _SYNC_NONE}


@dataclass(frozen=True)
class EveryWrite:
    """fdatasync before every write returns; concurrent writers share one fsync (group commit)."""

    def _args(self) -> dict:
        return {"sync_mode": _SYNC_EVERY_WRITE}


@dataclass(frozen=True)
class EveryNEntries:
    """An fdatasync at least every ``count`` WAL records, done by the writer that reaches it."""

    count: int

    def __post_init__(self) -> None:
        _positive_int("count", self.count, "EveryNEntries")

    def _args(self) -> dict:
        return {"sync_mode": _SYNC_EVERY_N, "sync_count": self.count}


@dataclass(frozen=True)
class TimeBasedBackground:
    """A background thread fdatasyncs every ``interval_ms``; writers never wait on fsync."""

    interval_ms: int

    def __post_init__(self) -> None:
        _positive_int("interval_ms", self.interval_ms, "TimeBasedBackground", _MAX_INTERVAL_MS)

    def _args(self) -> dict:
        return {"sync_mode": _SYNC_TIME_BASED, "sync_interval_ms": self.interval_ms}


@dataclass(frozen=True)
class Hybrid:
    """An fdatasync when ``count`` records are pending or the oldest is ``max_delay_ms`` old."""

    count: int
    max_delay_ms: int

    def __post_init__(self) -> None:
        _positive_int("count", self.count, "Hybrid")
        _positive_int("max_delay_ms", self.max_delay_ms, "Hybrid", _MAX_INTERVAL_MS)

    def _args(self) -> dict:
        return {"sync_mode": _SYNC_HYBRID, "sync_count": self.count, "sync_interval_ms": self.max_delay_ms}


_SYNC_NAMES = {"none": NoSync(), "every_write": EveryWrite()}
_RECOVERY = {"tolerate_tail": 0, "absolute": 1, "salvage": 2}
SyncStrategy = Union[str, NoSync, EveryWrite, EveryNEntries, TimeBasedBackground, Hybrid]


def _sync_args(sync: Any) -> dict:
    if isinstance(sync, str):
        try:
            return _SYNC_NAMES[sync]._args()
        except KeyError:
            raise ValueError(f"sync: unknown strategy {sync!r}; use 'none', 'every_write' or a "
                             "strategy object such as pylsm.EveryNEntries(100)") from None
    if isinstance(sync, (NoSync, EveryWrite, EveryNEntries, TimeBasedBackground, Hybrid)):
        return sync._args()
    raise TypeError(f"sync: expected a strategy name or object, not {type(sync).__name__}")


def _size_option(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _bool_option(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, int)):
        raise TypeError(f"{name} must be a bool, not {type(value).__name__}")
    return bool(value)


def _bytes_or_none(name: str, value: Any) -> Optional[bytes]:
    if value is None:
        return None
    try:
        return bytes(memoryview(value))
    except TypeError:
        raise TypeError(f"{name} must be a bytes-like object or None, not {type(value).__name__}") from None


def _prefix_end(prefix: bytes) -> Optional[bytes]:
    """The smallest key greater than every key that starts with prefix (None: no such key)."""
    p = bytearray(prefix)
    while p and p[-1] == 0xFF:
        p.pop()
    if not p:
        return None
    p[-1] += 1
    return bytes(p)


def _range(start: Any, stop: Any, prefix: Any) -> Tuple[Optional[bytes], Optional[bytes]]:
    """[start, stop) intersected with the keys that begin with prefix."""
    lo = _bytes_or_none("start", start)
    hi = _bytes_or_none("stop", stop)
    pre = _bytes_or_none("prefix", prefix)
    if pre is not None and pre != b"":
        if lo is None or lo < pre:
            lo = pre
        end = _prefix_end(pre)
        if end is not None and (hi is None or hi > end):
            hi = end
    return lo, hi


class _Ranges:
    """items/keys/values/iter over a database or a snapshot."""

    __slots__ = ()

    def _raw_iter(self, start: Any, stop: Any, prefix: Any, reverse: bool, want: int) -> Iterator[Any]:
        lo, hi = _range(start, stop, prefix)
        return self._db_for_iter()._iter(lo, hi, bool(reverse), want, self._snapshot_for_iter())

    def items(self, start: Any = None, stop: Any = None, *, prefix: Any = None,
              reverse: bool = False) -> Iterator[Tuple[bytes, bytes]]:
        """(key, value) pairs with start <= key < stop (and key starting with prefix), ascending
        unless reverse; one consistent view as of this call."""
        return self._raw_iter(start, stop, prefix, reverse, 3)

    def keys(self, start: Any = None, stop: Any = None, *, prefix: Any = None,
             reverse: bool = False) -> Iterator[bytes]:
        """Keys of the same range as items()."""
        return self._raw_iter(start, stop, prefix, reverse, 1)

    def values(self, start: Any = None, stop: Any = None, *, prefix: Any = None,
               reverse: bool = False) -> Iterator[bytes]:
        """Values of the same range as items()."""
        return self._raw_iter(start, stop, prefix, reverse, 2)

    def __iter__(self) -> Iterator[bytes]:
        return self.keys()


# ---------------------------------------------------------------------------------------------
# The database


class WriteBatch(_pylsm.WriteBatch):
    """Operations applied atomically by ``DB.write()``; later operations on the same key win.

    ``with db.batch() as b:`` applies the batch on a clean exit and discards it if the block raises.
    """

    def __init__(self) -> None:
        super().__init__()
        self._db: Optional[DB] = None
        self._sync: Optional[bool] = None

    def __enter__(self) -> "WriteBatch":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None and self._db is not None:
                self._db.write(self, sync=self._sync)
        finally:
            self.clear()

    def __repr__(self) -> str:
        return f"<pylsm.WriteBatch of {len(self)} operations>"


class DB(_Ranges, _pylsm.DB):
    """An open pylsm database.  ``pylsm.open(path, **options)`` is the same as ``pylsm.DB(path, **options)``.

    Options (keyword-only): create_if_missing=True, error_if_exists=False, sync="none",
    memtable_bytes=64 MiB, block_bytes=4 KiB, bloom_bits_per_key=10, block_cache_bytes=32 MiB,
    wal_recovery="tolerate_tail", wal_timestamp=False, background_compaction=True.
    """

    def __init__(
        self,
        path: Union[str, os.PathLike],
        *,
        create_if_missing: bool = True,
        error_if_exists: bool = False,
        sync: SyncStrategy = "none",
        memtable_bytes: int = 64 * MiB,
        block_bytes: int = 4096,
        bloom_bits_per_key: int = 10,
        block_cache_bytes: int = 32 * MiB,
        wal_recovery: str = "tolerate_tail",
        wal_timestamp: bool = False,
        background_compaction: bool = True,
    ) -> None:
        path = os.fspath(path)
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not isinstance(path, str):
            raise TypeError(f"path must be str or os.PathLike, not {type(path).__name__}")
        if wal_recovery not in _RECOVERY:
            raise ValueError(f"wal_recovery must be one of {sorted(_RECOVERY)}, got {wal_recovery!r}")
        opts = dict(
            create_if_missing=_bool_option("create_if_missing", create_if_missing),
            error_if_exists=_bool_option("error_if_exists", error_if_exists),
            memtable_bytes=_size_option("memtable_bytes", memtable_bytes, 4096, 1 << 40),
            block_bytes=_size_option("block_bytes", block_bytes, 256, 64 * MiB),
            bloom_bits_per_key=_size_option("bloom_bits_per_key", bloom_bits_per_key, 0, 64),
            block_cache_bytes=_size_option("block_cache_bytes", block_cache_bytes, 0, 1 << 48),
            wal_recovery=_RECOVERY[wal_recovery],
            wal_timestamp=_bool_option("wal_timestamp", wal_timestamp),
            background_compaction=_bool_option("background_compaction", background_compaction),
        )
        opts.update(_sync_args(sync))
        self._path = path
        self._sync_strategy = sync
        super().__init__(path, **opts)

    # -- the dict protocol and friends ------------------------------------------------------------

    def _db_for_iter(self) -> "DB":
        return self

    def _snapshot_for_iter(self) -> Any:
        return None

    @property
    def path(self) -> str:
        """The database directory."""
        return self._path

    def update(self, mapping_or_pairs: Union[Mapping[Any, Any], Iterable[Tuple[Any, Any]]] = (), *,
               sync: Optional[bool] = None) -> None:
        """Write every pair as one atomic batch: all of them or, on any bad pair, none."""
        b = WriteBatch()
        src = mapping_or_pairs
        if not hasattr(src, "items") and hasattr(src, "keys"):
            # what dict.update accepts: an object with keys() and __getitem__
            src = [(k, src[k]) for k in src.keys()]
        try:
            b.put_many(src)
        except TypeError as e:
            raise TypeError(f"update(): {e}") from None
        self.write(b, sync=sync)

    def batch(self, *, sync: Optional[bool] = None) -> WriteBatch:
        """A WriteBatch bound to this database: ``with db.batch() as b: ...`` applies it atomically."""
        if self.closed:
            raise ClosedError("the database is closed")
        b = WriteBatch()
        b._db = self
        b._sync = sync
        return b

    def stats(self) -> dict:
        """Engine statistics (API.md): lsn, memtable_bytes, wal_bytes, sstables, levels, live_bytes,
        user_bytes_written, disk_bytes_written, write_amplification, flushes, compactions,
        wal_dropped_bytes, and more."""
        s = super().stats()
        s["write_amplification"] = s.pop("write_amplification_x1000") / 1000.0
        return s

    def snapshot(self) -> "Snapshot":
        """A read view of the database as it is now; release it with close() or a with block."""
        return Snapshot(self._snapshot())

    def __enter__(self) -> "DB":
        if self.closed:
            raise ClosedError("the database is closed")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def __repr__(self) -> str:
        if self.closed:
            return f"<pylsm.DB {self._path!r} closed>"
        s = self.stats()
        return (f"<pylsm.DB {self._path!r} lsn={s['lsn']} sstables={s['sstables']} "
                f"memtable={s['memtable_bytes']}B sync={self._sync_strategy!r}>")

    def _repr_html_(self) -> str:
        import html

        if self.closed:
            return f"<b>pylsm.DB</b> <code>{html.escape(self._path)}</code> (closed)"
        s = self.stats()
        rows = "".join(
            f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>"
            for k, v in s.items() if k != "levels"
        )
        levels = "".join(
            f"<tr><td>L{lv['level']}</td><td>{lv['files']}</td><td>{lv['bytes']}</td></tr>"
            for lv in s.get("levels", [])
        )
        return (f"<b>pylsm.DB</b> <code>{html.escape(self._path)}</code>"
                f"<table><tr><th>stat</th><th>value</th></tr>{rows}</table>"
                + (f"<table><tr><th>level</th><th>files</th><th>bytes</th></tr>{levels}</table>"
                   if levels else ""))


class Snapshot(_Ranges):
    """A consistent read view: get, [], in, get_many, items, keys and values see the database as it was."""

    __slots__ = ("_s", "__weakref__")

    def __init__(self, raw: Any) -> None:
        self._s = raw

    def _db_for_iter(self) -> "DB":
        return self._s._db

    def _snapshot_for_iter(self) -> Any:
        return self._s

    def get(self, key: Any, default: Any = None) -> Any:
        return self._s.get(key, default)

    def __getitem__(self, key: Any) -> bytes:
        return self._s[key]

    def __contains__(self, key: Any) -> bool:
        return key in self._s

    def get_many(self, keys: Iterable[Any]) -> list:
        return self._s.get_many(keys)

    def close(self) -> None:
        self._s.close()

    def __enter__(self) -> "Snapshot":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()


def open(path: Union[str, os.PathLike], **options: Any) -> DB:  # noqa: A001 (the API's name)
    """Open (by default create) the database at ``path``; see DB for the options."""
    return DB(path, **options)


def verify(path: Union[str, os.PathLike]) -> None:
    """Check every checksum of a closed database; raise CorruptionError naming the file and offset."""
    _pylsm.verify(os.fspath(path))


def repair(path: Union[str, os.PathLike]) -> None:
    """Salvage a damaged database into a consistent one, keeping every record whose checksum is intact."""
    _pylsm.repair(os.fspath(path))


def destroy(path: Union[str, os.PathLike]) -> None:
    """Delete a database directory (only the files pylsm made; the directory if then empty)."""
    _pylsm.destroy(os.fspath(path))
