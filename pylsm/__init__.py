"""pylsm: an embedded, crash-safe LSM-tree key-value store with a C core.

    import pylsm
    with pylsm.open("data/mydb") as db:
        db[b"user:1"] = b"alice"
        assert db[b"user:1"] == b"alice"

The API is described in docs/api.md; this module is the friendly layer over the C binding ``pylsm._pylsm``:
option parsing, the sync strategy objects, ranges, context managers and notebook display.
"""
from __future__ import annotations

import errno
import os
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from types import GenericAlias
from typing import Any, Iterable, Iterator as Iterator_, Optional, Tuple, Union

from . import codecs as _codecs
from .backup import backup, backups, delete_backup, restore, restore_to  # noqa: F401  (re-exported)

from . import _pylsm
from ._pylsm import (  # noqa: F401  (re-exported)
    ClosedError,
    CorruptionError,
    Error,
    LockError,
    NotFoundError,
    PairError,
    ReadOnlyError,
    StorageError,
    MAX_KEY,
    MAX_VALUE,
)
from ._pylsm import (  # the C iterator's cursor operations (Iter_cursor), and what a scan reads of an entry
    OP_NEXT as _OP_NEXT, OP_PREV as _OP_PREV, OP_PEEK_NEXT as _OP_PEEK_NEXT, OP_PEEK_PREV as _OP_PEEK_PREV,
    OP_SEEK as _OP_SEEK, OP_TO_FIRST as _OP_TO_FIRST, OP_TO_LAST as _OP_TO_LAST, OP_TO_END as _OP_TO_END,
    WANT_KEYS as _KEYS, WANT_VALUES as _VALUES, WANT_ITEMS as _ITEMS,
)
from ._pylsm import (  # the engine's option values, defaults ({option: default}) and ranges ({option: (lo, hi)})
    SYNC_NONE as _SYNC_NONE, SYNC_EVERY_WRITE as _SYNC_EVERY_WRITE, SYNC_EVERY_N as _SYNC_EVERY_N,
    SYNC_TIME_BASED as _SYNC_TIME_BASED, SYNC_HYBRID as _SYNC_HYBRID,
    RECOVER_TOLERATE_TAIL as _RECOVER_TOLERATE_TAIL, RECOVER_ABSOLUTE as _RECOVER_ABSOLUTE,
    RECOVER_SALVAGE as _RECOVER_SALVAGE,
    COMPRESS_NONE as _COMPRESS_NONE, COMPRESS_ZSTD as _COMPRESS_ZSTD, COMPRESS_LZ4 as _COMPRESS_LZ4,
    OPTION_DEFAULTS as _DEFAULTS, OPTION_RANGES as _RANGES,
)

__all__ = [
    "open", "DB", "WriteBatch", "Snapshot", "verify", "repair", "destroy",
    "backup", "restore", "backups", "delete_backup", "restore_to",
    "NoSync", "EveryWrite", "EveryNEntries", "TimeBasedBackground", "Hybrid",
    "Iterator", "codecs",
    "Error", "CorruptionError", "LockError", "ClosedError", "StorageError", "NotFoundError", "ReadOnlyError",
    "PairError",
    "MAX_KEY", "MAX_VALUE",
]
__version__ = "0.1.0"

# ---------------------------------------------------------------------------------------------
# Options: their defaults and ranges are the engine's (_DEFAULTS, _RANGES)


def _int_option(label: str, value: Any, option: str) -> int:
    """value, checked to be an int in the engine's range of option; label names it in the errors."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{label} must be an int, not {type(value).__name__}")
    lo, hi = _RANGES[option]
    if not lo <= value <= hi:
        raise ValueError(f"{label} must be between {lo} and {hi}, got {value}")
    return value


def _bool_option(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, int)):
        raise TypeError(f"{name} must be a bool, not {type(value).__name__}")
    return bool(value)


def _name_of(names: dict, code: int) -> Any:
    """The name under which names (name -> the engine's code) holds code."""
    return next(name for name, c in names.items() if c == code)


# ---------------------------------------------------------------------------------------------
# Sync strategies (the seed's WalSyncStrategy)


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
        _int_option("EveryNEntries: count", self.count, "sync_count")

    def _args(self) -> dict:
        return {"sync_mode": _SYNC_EVERY_N, "sync_count": self.count}


@dataclass(frozen=True)
class TimeBasedBackground:
    """A background thread fdatasyncs every ``interval_ms``; writers never wait on fsync."""

    interval_ms: int

    def __post_init__(self) -> None:
        _int_option("TimeBasedBackground: interval_ms", self.interval_ms, "sync_interval_ms")

    def _args(self) -> dict:
        return {"sync_mode": _SYNC_TIME_BASED, "sync_interval_ms": self.interval_ms}


@dataclass(frozen=True)
class Hybrid:
    """An fdatasync when ``count`` records are pending or the oldest is ``max_delay_ms`` old."""

    count: int
    max_delay_ms: int

    def __post_init__(self) -> None:
        _int_option("Hybrid: count", self.count, "sync_count")
        _int_option("Hybrid: max_delay_ms", self.max_delay_ms, "sync_interval_ms")

    def _args(self) -> dict:
        return {"sync_mode": _SYNC_HYBRID, "sync_count": self.count, "sync_interval_ms": self.max_delay_ms}


_SYNC_NAMES = {"none": NoSync(), "every_write": EveryWrite()}
_DEFAULT_SYNC = _name_of({n: s._args()["sync_mode"] for n, s in _SYNC_NAMES.items()}, _DEFAULTS["sync_mode"])
_RECOVERY = {"tolerate_tail": _RECOVER_TOLERATE_TAIL, "absolute": _RECOVER_ABSOLUTE, "salvage": _RECOVER_SALVAGE}
_COMPRESSION = {None: _COMPRESS_NONE, "zstd": _COMPRESS_ZSTD, "lz4": _COMPRESS_LZ4}
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


def _range(start: Any, stop: Any, prefix: Any, include_start: bool = True,
           include_stop: bool = False) -> Tuple[Optional[bytes], Optional[bytes]]:
    """The raw bounds [lo, hi) of start..stop (each end included or not) intersected with the keys
    that begin with prefix.  The key just after k is k + b"\\0", so an excluded start and an
    included stop both become half-open bounds."""
    lo = _bytes_or_none("start", start)
    hi = _bytes_or_none("stop", stop)
    pre = _bytes_or_none("prefix", prefix)
    if lo is not None and not include_start:
        lo += b"\0"
    if hi is not None and include_stop:
        hi += b"\0"
    if pre is not None and pre != b"":
        if lo is None or lo < pre:
            lo = pre
        end = _prefix_end(pre)
        if end is not None and (hi is None or hi > end):
            hi = end
    return lo, hi


_MISSING: Any = object()


class Iterator:
    """A cursor over one consistent view, returned by ``db.iterator()`` (plyvel's model).

    The cursor sits between two entries, in key order.  ``next()`` returns the entry after it and
    moves past it; ``prev()`` returns the entry before it and moves back (so ``next()`` then
    ``prev()`` return the same entry); ``peek()`` returns what ``next()`` would, without moving, or
    None at the end.  With ``reverse=True``, ``next()`` and ``prev()`` swap roles: iteration runs
    from the last key down.  ``seek(key)`` puts the cursor just before the first entry >= key;
    ``seek_to_first()`` / ``seek_to_last()`` just before the first / the last entry;
    ``seek_to_start()`` / ``seek_to_stop()`` before the first / after the last.  Iterating yields
    ``(key, value)`` pairs as ``next()`` does; ``with db.iterator() as it:`` closes it at the end.
    """

    __slots__ = ("_it", "_reverse", "_lo", "_hi", "_kenc", "_kdec", "_vdec", "__weakref__")

    def __init__(self, raw: Any, reverse: bool, lo: Optional[bytes], hi: Optional[bytes],
                 kenc: Any = None, kdec: Any = None, vdec: Any = None) -> None:
        self._it = raw
        self._reverse = reverse
        self._lo = lo
        self._hi = hi
        self._kenc = kenc
        self._kdec = kdec
        self._vdec = vdec
        if reverse:
            raw._cursor(_OP_TO_END)

    def _out(self, e: Any) -> Any:
        if e is None or (self._kdec is None and self._vdec is None):
            return e
        k, v = e
        return (k if self._kdec is None else self._kdec(k), v if self._vdec is None else self._vdec(v))

    def __iter__(self) -> "Iterator":
        return self

    def __next__(self) -> Any:
        e = self._it._cursor(_OP_PREV if self._reverse else _OP_NEXT)
        if e is None:
            raise StopIteration
        return self._out(e)

    def next(self) -> Any:
        """The entry after the cursor (before it, when reverse), moving past it; StopIteration at the end."""
        return self.__next__()

    def prev(self) -> Any:
        """The entry before the cursor (after it, when reverse), moving back; StopIteration at the start."""
        e = self._it._cursor(_OP_NEXT if self._reverse else _OP_PREV)
        if e is None:
            raise StopIteration
        return self._out(e)

    def peek(self) -> Any:
        """What next() would return, without moving; None at the end."""
        return self._out(self._it._cursor(_OP_PEEK_PREV if self._reverse else _OP_PEEK_NEXT))

    def seek(self, key: Any) -> None:
        """Put the cursor just before the first entry >= key (within the iterator's range)."""
        k = bytes(memoryview(key)) if self._kenc is None else self._kenc(key)
        if self._lo is not None and k < self._lo:
            k = self._lo
        if self._hi is not None and k > self._hi:
            k = self._hi
        self._it._cursor(_OP_SEEK, k)

    def seek_to_first(self) -> None:
        """Put the cursor just before the first entry."""
        self._it._cursor(_OP_TO_FIRST)

    def seek_to_last(self) -> None:
        """Put the cursor just before the last entry."""
        self._it._cursor(_OP_TO_LAST)

    def seek_to_start(self) -> None:
        """Put the cursor before the first entry (plyvel's name; the same as seek_to_first)."""
        self._it._cursor(_OP_TO_FIRST)

    def seek_to_stop(self) -> None:
        """Put the cursor after the last entry."""
        self._it._cursor(_OP_TO_END)

    def close(self) -> None:
        """Release the iterator now (also done by garbage collection)."""
        self._it.close()

    def __enter__(self) -> "Iterator":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        rng = f"[{self._lo!r}, {self._hi!r})" if self._lo is not None or self._hi is not None else "all keys"
        return f"<pylsm.Iterator over {rng}{', reverse' if self._reverse else ''}>"


class _Ranges:
    """items/keys/values/iterator over a database or a snapshot; codec hooks are None for raw bytes."""

    __slots__ = ()
    _kenc: Any = None
    _kdec: Any = None
    _venc: Any = None
    _vdec: Any = None

    def _k(self, key: Any) -> Any:
        return key if self._kenc is None else self._kenc(key)

    def _end(self, key: Any) -> Any:
        """An end of a range through the key codec; None is an open end."""
        return None if key is None else self._k(key)

    def _v(self, value: Any) -> Any:
        return value if self._venc is None else self._venc(value)

    def _out(self, raw: Any) -> Any:
        return raw if self._vdec is None else self._vdec(raw)

    def _outs(self, raws: list) -> list:
        dec = self._vdec
        return raws if dec is None else [None if v is None else dec(v) for v in raws]

    def _k_or_absent(self, key: Any) -> Any:
        """The encoded key, or _MISSING when the codec cannot encode it (so it is not stored)."""
        try:
            return self._k(key)
        except (TypeError, ValueError):
            return _MISSING

    def _bounds(self, start: Any, stop: Any, prefix: Any, include_start: bool,
                include_stop: bool) -> Tuple[Optional[bytes], Optional[bytes]]:
        return _range(self._end(start), self._end(stop), self._end(prefix), include_start, include_stop)

    def _raw_iter(self, start: Any, stop: Any, prefix: Any, reverse: bool, want: int,
                  include_start: bool, include_stop: bool) -> Any:
        lo, hi = self._bounds(start, stop, prefix, include_start, include_stop)
        return self._db_for_iter()._iter(lo, hi, bool(reverse), want, self._snapshot_for_iter())

    def items(self, start: Any = None, stop: Any = None, *, prefix: Any = None, reverse: bool = False,
              include_start: bool = True, include_stop: bool = False) -> Any:
        """(key, value) pairs with start <= key < stop (and key starting with prefix), ascending
        unless reverse; include_start=False / include_stop=True change the ends; one consistent
        view as of this call."""
        it = self._raw_iter(start, stop, prefix, reverse, _ITEMS, include_start, include_stop)
        kdec, vdec = self._kdec, self._vdec
        if kdec is None and vdec is None:
            return it
        if kdec is None:
            return ((k, vdec(v)) for k, v in it)
        if vdec is None:
            return ((kdec(k), v) for k, v in it)
        return ((kdec(k), vdec(v)) for k, v in it)

    def keys(self, start: Any = None, stop: Any = None, *, prefix: Any = None, reverse: bool = False,
             include_start: bool = True, include_stop: bool = False) -> Any:
        """Keys of the same range as items()."""
        it = self._raw_iter(start, stop, prefix, reverse, _KEYS, include_start, include_stop)
        return it if self._kdec is None else map(self._kdec, it)

    def values(self, start: Any = None, stop: Any = None, *, prefix: Any = None, reverse: bool = False,
               include_start: bool = True, include_stop: bool = False) -> Any:
        """Values of the same range as items()."""
        it = self._raw_iter(start, stop, prefix, reverse, _VALUES, include_start, include_stop)
        return it if self._vdec is None else map(self._vdec, it)

    def iterator(self, start: Any = None, stop: Any = None, *, prefix: Any = None, reverse: bool = False,
                 include_start: bool = True, include_stop: bool = False) -> Iterator:
        """A cursor (pylsm.Iterator) over the same range as items(): seek, prev, next, peek."""
        lo, hi = self._bounds(start, stop, prefix, include_start, include_stop)
        raw = self._db_for_iter()._iter(lo, hi, False, _ITEMS, self._snapshot_for_iter())
        return Iterator(raw, bool(reverse), lo, hi, self._kenc, self._kdec, self._vdec)

    def __iter__(self) -> Any:
        return self.keys()

    def __reversed__(self) -> Any:
        return self.keys(reverse=True)

    def __bool__(self) -> bool:
        for _ in self._raw_iter(None, None, None, False, _KEYS, True, False):
            return True
        return False

    def __len__(self) -> int:
        n = 0
        for _ in self._raw_iter(None, None, None, False, _KEYS, True, False):
            n += 1
        return n


# ---------------------------------------------------------------------------------------------
# How a database looks in a notebook

def _sync_name(sync: Any) -> str:
    return sync if isinstance(sync, str) else repr(sync)


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _human_count(n: float) -> str:
    for unit in ("", "k", "M", "G"):
        if abs(n) < 1000 or unit == "G":
            return f"{n:.0f}{unit}" if unit == "" else f"{n:.1f}{unit}"
        n /= 1000
    return f"{n:.1f}G"


def _disk_bytes(path: str) -> int:
    total = 0
    try:
        with os.scandir(path) as it:
            for e in it:
                try:
                    total += e.stat().st_size
                except OSError:
                    pass
    except OSError:
        pass
    return total


def _card_html(db: "DB") -> str:
    """The notebook view of a database: a compact card of what matters and the LSM tree."""
    import html

    esc = html.escape
    head = (f'<div style="font-family:system-ui,-apple-system,Segoe UI,sans-serif;font-size:13px;'
            f'border:1px solid #d0d7de;border-radius:8px;padding:10px 14px;max-width:560px;'
            f'background:#fff;color:#1f2328">'
            f'<div style="font-size:14px;margin-bottom:6px"><b>pylsm.DB</b> '
            f'<code style="background:#f6f8fa;padding:1px 5px;border-radius:4px">{esc(db.path)}</code>')
    if db.closed:
        return head + ' <span style="color:#9a6700">closed</span></div></div>'
    s = db.stats()
    badge = ("read-only" if db.read_only else f"sync={_sync_name(db._sync_strategy)}")
    head += f' <span style="color:#57606a">{esc(badge)}</span></div>'
    keys = s["table_entries"] + s["memtable_entries"]
    disk = _disk_bytes(db.path)
    amp = s["write_amplification"]
    figures = [("keys", f"≈{_human_count(keys)}"), ("on disk", _human_bytes(disk)),
               ("memtable", f"{_human_bytes(s['memtable_bytes'])} / {_human_bytes(db._memtable_bytes)}"),
               ("write amp", f"{amp:.2f}x" if s["user_bytes_written"] else "–"),
               ("LSN", f"{s['lsn']:,}")]
    cells = "".join(
        f'<div style="margin-right:18px"><div style="color:#57606a;font-size:11px">{esc(k)}</div>'
        f'<div style="font-size:16px;font-weight:600">{esc(v)}</div></div>' for k, v in figures)
    body = f'<div style="display:flex;flex-wrap:wrap;margin:4px 0 8px">{cells}</div>'
    bars = []
    for lv in s["levels"]:
        if not lv["files"]:
            continue
        if lv["level"] == 0:
            frac = lv["files"] / s["level0_compaction_trigger"]
            label = (f'{lv["files"]} of {s["level0_compaction_trigger"]} tables · '
                     f'{_human_bytes(lv["bytes"])}')
        else:
            target = s["level1_target_bytes"] * s["level_multiplier"] ** (lv["level"] - 1)
            frac = lv["bytes"] / target
            label = (f'{_human_bytes(lv["bytes"])} of {_human_bytes(target)} · {lv["files"]} '
                     f'{"file" if lv["files"] == 1 else "files"}')
        width = max(2, min(100, round(frac * 100)))
        color = "#1a7f37" if frac < 0.8 else "#bf8700" if frac <= 1.0 else "#cf222e"
        bars.append(
            f'<div style="display:flex;align-items:center;margin:2px 0">'
            f'<div style="width:26px;color:#57606a">L{lv["level"]}</div>'
            f'<div style="flex:1;background:#eaeef2;border-radius:3px;height:12px;margin-right:8px">'
            f'<div style="width:{width}%;background:{color};height:12px;border-radius:3px"></div></div>'
            f'<div style="width:200px;font-size:12px;white-space:nowrap">{esc(label)}</div></div>')
    tree = ("".join(bars) if bars else
            '<div style="color:#57606a">no tables yet: everything is in the memtable and its log</div>')
    body += f'<div style="color:#57606a;font-size:11px;margin-bottom:2px">LSM tree (size against each level\'s target)</div>{tree}'
    opts = (f'memtable {_human_bytes(db._memtable_bytes)} · block cache {_human_bytes(db._cache_bytes)} · '
            f'{s["flushes"]} flushes · {s["compactions"]} compactions')
    kc, vc = db._codecs
    if kc is not None or vc is not None:
        opts += f' · key_codec={getattr(kc, "name", type(kc).__name__) if kc else None} value_codec={getattr(vc, "name", type(vc).__name__) if vc else None}'
    body += f'<div style="color:#57606a;font-size:11px;margin-top:8px">{esc(opts)}</div>'
    rows = "".join(f'<tr><td style="padding:0 12px 0 0">{esc(k)}</td><td style="text-align:right">'
                   f'{v:,}</td></tr>' if isinstance(v, int) else
                   f'<tr><td style="padding:0 12px 0 0">{esc(k)}</td><td style="text-align:right">'
                   f'{esc(str(v))}</td></tr>' for k, v in s.items() if k != "levels")
    body += (f'<details style="margin-top:6px;font-size:11px;color:#57606a"><summary>all statistics'
             f'</summary><table style="font-size:11px">{rows}</table></details>')
    return head + body + "</div>"


# ---------------------------------------------------------------------------------------------
# The database


def _pairs(mapping_or_pairs: Any) -> Any:
    """The (key, value) pairs of what dict.update takes: a mapping (its items(), or keys() and []) or an
    iterable of pairs (as it is)."""
    if hasattr(mapping_or_pairs, "items"):
        return mapping_or_pairs.items()
    if hasattr(mapping_or_pairs, "keys"):
        return [(k, mapping_or_pairs[k]) for k in mapping_or_pairs.keys()]
    return mapping_or_pairs


def _unpack_pairs(pairs: Any, who: str) -> Any:
    """(key, value) of each pair, with the binding's errors for an item that is not a pair."""
    for pair in pairs:
        try:
            k, v = pair
        except TypeError:
            raise TypeError(f"expected (key, value) pairs, got {type(pair).__name__}") from None
        except ValueError:
            raise _pylsm.PairError(f"{who}(): a (key, value) pair has 2 items, not {len(pair)}") from None
        yield k, v


class WriteBatch(_pylsm.WriteBatch):
    """Operations applied atomically by ``DB.write()``; later operations on the same key win.

    ``with db.batch() as b:`` applies the batch on a clean exit and discards it if the block raises.
    A batch from ``db.batch()`` speaks the database's codecs; one made as ``pylsm.WriteBatch()``
    takes raw bytes.
    """

    def __init__(self) -> None:
        super().__init__()
        self._db: Optional[DB] = None
        self._sync: Optional[bool] = None
        self._kenc: Any = None
        self._venc: Any = None

    def put(self, key: Any, value: Any) -> None:
        """Set key to value when the batch is applied."""
        if self._kenc is not None:
            key = self._kenc(key)
        if self._venc is not None:
            value = self._venc(value)
        super().put(key, value)

    def delete(self, key: Any) -> None:
        """Remove key when the batch is applied (no error if it is absent)."""
        super().delete(key if self._kenc is None else self._kenc(key))

    def put_many(self, mapping_or_pairs: Any) -> None:
        """put() every pair of a mapping or an iterable of (key, value) pairs."""
        pairs = _pairs(mapping_or_pairs)
        if self._kenc is None and self._venc is None:
            return super().put_many(pairs)
        for k, v in _unpack_pairs(pairs, "put_many"):
            self.put(k, v)

    def __enter__(self) -> "WriteBatch":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None and self._db is not None:
                self._db.write(self, sync=self._sync)
        finally:
            self.clear()

    def __repr__(self) -> str:
        return f"<pylsm.WriteBatch of {len(self)} operations>"


_OPTION_NAMES = frozenset((
    "create_if_missing", "error_if_exists", "sync", "memtable_bytes", "block_bytes",
    "bloom_bits_per_key", "block_cache_bytes", "wal_recovery", "wal_timestamp",
    "background_compaction", "read_only", "key_codec", "value_codec", "point_index",
    "wal_retention_bytes", "wal_retention_seconds", "compression",
))


class DB(_Ranges, _pylsm.DB, MutableMapping):
    """An open pylsm database.  ``pylsm.open(path, **options)`` is the same as ``pylsm.DB(path, **options)``.

    A ``collections.abc.MutableMapping``: ``db[k] = v``, ``db[k]``, ``del db[k]``, ``k in db``,
    ``len(db)``, ``pop``, ``popitem``, ``setdefault``, ``update``, ``clear`` and ``==`` against any
    mapping; ``keys()``, ``values()`` and ``items()`` are iterators over one view, with range arguments.

    Options (keyword-only; the defaults, in the signature, and the ranges are the engine's):
    create_if_missing, error_if_exists, sync, memtable_bytes, block_bytes, bloom_bits_per_key,
    block_cache_bytes, wal_recovery, wal_timestamp (None: on when WALs are retained),
    background_compaction, read_only, key_codec, value_codec, point_index, wal_retention_bytes,
    wal_retention_seconds, compression (see docs/api.md).
    """

    __hash__ = None  # type: ignore[assignment]  # == compares contents, as for dict

    def __new__(cls, path: Any = None, **options: Any) -> "DB":
        if cls is DB and (options.get("key_codec") is not None or options.get("value_codec") is not None):
            cls = _CodedDB
        return super().__new__(cls)

    def __init__(
        self,
        path: Union[str, os.PathLike],
        *,
        create_if_missing: bool = _DEFAULTS["create_if_missing"],
        error_if_exists: bool = _DEFAULTS["error_if_exists"],
        sync: SyncStrategy = _DEFAULT_SYNC,
        memtable_bytes: int = _DEFAULTS["memtable_bytes"],
        block_bytes: int = _DEFAULTS["block_bytes"],
        bloom_bits_per_key: int = _DEFAULTS["bloom_bits_per_key"],
        block_cache_bytes: int = _DEFAULTS["block_cache_bytes"],
        wal_recovery: str = _name_of(_RECOVERY, _DEFAULTS["wal_recovery"]),
        wal_timestamp: Optional[bool] = None,
        background_compaction: bool = _DEFAULTS["background_compaction"],
        read_only: bool = _DEFAULTS["read_only"],
        key_codec: Any = None,
        value_codec: Any = None,
        point_index: bool = _DEFAULTS["point_index"],
        wal_retention_bytes: int = _DEFAULTS["wal_retention_bytes"],
        wal_retention_seconds: int = _DEFAULTS["wal_retention_seconds"],
        compression: Optional[str] = _name_of(_COMPRESSION, _DEFAULTS["compression"]),
    ) -> None:
        path = os.fspath(path)
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not isinstance(path, str):
            raise TypeError(f"path must be str or os.PathLike, not {type(path).__name__}")
        if compression not in _COMPRESSION:
            raise (TypeError if not isinstance(compression, str) else ValueError)(
                f"compression must be one of None, 'zstd', 'lz4', got {compression!r}")
        if wal_recovery not in _RECOVERY:
            raise ValueError(f"wal_recovery must be one of {sorted(_RECOVERY)}, got {wal_recovery!r}")
        kc = _codecs.lookup(key_codec, "key_codec")
        vc = _codecs.lookup(value_codec, "value_codec")
        if (kc is not None or vc is not None) and not isinstance(self, _CodedDB):
            raise TypeError("a DB subclass with codecs must derive from the class pylsm.open() returns")
        opts = dict(
            create_if_missing=_bool_option("create_if_missing", create_if_missing),
            error_if_exists=_bool_option("error_if_exists", error_if_exists),
            memtable_bytes=_int_option("memtable_bytes", memtable_bytes, "memtable_bytes"),
            block_bytes=_int_option("block_bytes", block_bytes, "block_bytes"),
            bloom_bits_per_key=_int_option("bloom_bits_per_key", bloom_bits_per_key, "bloom_bits_per_key"),
            block_cache_bytes=_int_option("block_cache_bytes", block_cache_bytes, "block_cache_bytes"),
            wal_recovery=_RECOVERY[wal_recovery],
            # None: on when logs are kept as history (docs/decisions.md, item 1b)
            wal_timestamp=(bool(wal_retention_bytes or wal_retention_seconds) if wal_timestamp is None
                           else _bool_option("wal_timestamp", wal_timestamp)),
            background_compaction=_bool_option("background_compaction", background_compaction),
            read_only=_bool_option("read_only", read_only),
            point_index=_bool_option("point_index", point_index),
            compression=_COMPRESSION[compression],
            wal_retention_bytes=_int_option("wal_retention_bytes", wal_retention_bytes, "wal_retention_bytes"),
            wal_retention_seconds=_int_option("wal_retention_seconds", wal_retention_seconds, "wal_retention_seconds"),
        )
        opts.update(_sync_args(sync))
        self._path = path
        self._sync_strategy = sync
        self._read_only = opts["read_only"]
        self._memtable_bytes = opts["memtable_bytes"]
        self._cache_bytes = opts["block_cache_bytes"]
        if kc is not None:
            self._kenc, self._kdec = kc.encode, kc.decode
        if vc is not None:
            self._venc, self._vdec = vc.encode, vc.decode
        self._codecs = (kc, vc)
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

    @property
    def read_only(self) -> bool:
        """True when opened with read_only=True: reads only, beside a writer; refresh() catches up."""
        return self._read_only

    __len__ = _pylsm.DB.__len__

    def update(self, mapping_or_pairs: Any = (), *, sync: Optional[bool] = None, **kwargs: Any) -> None:
        """Write every pair as one atomic batch: all of them or, on any bad pair, none.  Takes what
        dict.update takes: a mapping, an object with keys() and __getitem__, or (key, value) pairs."""
        b = self._new_batch()
        b.put_many(mapping_or_pairs)
        if kwargs:
            b.put_many(kwargs)
        self.write(b, sync=sync)

    def _new_batch(self) -> WriteBatch:
        b = WriteBatch()
        b._kenc, b._venc = self._kenc, self._venc
        return b

    def batch(self, *, sync: Optional[bool] = None) -> WriteBatch:
        """A WriteBatch bound to this database: ``with db.batch() as b: ...`` applies it atomically."""
        self._check_open()
        b = self._new_batch()
        b._db = self
        b._sync = sync
        return b

    def pop(self, key: Any, default: Any = _MISSING) -> Any:
        """Remove key and return its value; default (or KeyError) if it is absent."""
        v = self.get(key, _MISSING)
        if v is _MISSING:
            if default is _MISSING:
                raise KeyError(key)
            return default
        self.delete(key)
        return v

    def popitem(self) -> Tuple[Any, Any]:
        """Remove and return the (key, value) pair with the smallest key; KeyError when empty."""
        for k, v in self.items():
            self.delete(k)
            return k, v
        raise KeyError("popitem(): the database is empty")

    def setdefault(self, key: Any, default: Any = None) -> Any:
        """The value of key; if absent, store default (it must be storable) and return it."""
        v = self.get(key, _MISSING)
        if v is _MISSING:
            self[key] = default
            return default
        return v

    def clear(self, *, sync: Optional[bool] = None) -> None:
        """Delete every key (in batches of 10,000; not atomic as a whole)."""
        with self.snapshot() as snap:
            b = WriteBatch()
            for k in snap._raw_keys():
                b.delete(k)
                if len(b) >= 10_000:
                    self.write(b, sync=sync)
                    b.clear()
            self.write(b, sync=sync)

    def ingest(self, pairs: Any, *, progress: bool = False) -> int:
        """Bulk load: write (key, value) pairs given in strictly ascending key order straight into
        tables (no WAL, no memtable) and make them visible all at once, as the newest version of each
        key; returns how many.  A crash leaves the database as before or with all of them.  A key not
        greater than the one before raises ValueError naming its position, and nothing is written.
        Takes an iterable of pairs or a mapping (its items()).  progress=True shows a tqdm bar when
        tqdm is installed (docs/api.md, "Bulk ingest")."""
        pairs = _pairs(pairs)
        total = len(pairs) if hasattr(pairs, "__len__") else None
        with _Progress(progress, "ingest", unit="pairs", total=total) as p:
            return _pylsm.DB.ingest(self, self._encode_pairs(pairs), progress=p.count_callback)

    def _encode_pairs(self, pairs: Any) -> Any:
        return pairs

    def compact(self, start: Any = None, stop: Any = None, *, progress: bool = False) -> None:
        """Compact the tables holding keys in [start, stop) (all when both are None) down to the
        deepest level; returns when done.  progress=True shows a tqdm bar."""
        with _Progress(progress, "compact") as p:
            _pylsm.DB.compact(self, self._end(start), self._end(stop), progress=p.callback)

    def checkpoint(self, path: Union[str, os.PathLike]) -> int:
        """A consistent copy of the database at ``path``, a new directory (FileExistsError if it exists),
        openable with pylsm.open: it holds exactly the writes acknowledged before the call, and is
        durable when this returns.  Tables are hard-linked (copied across file systems) and the live
        WALs copied, so it takes milliseconds; writers wait only while the state is pinned.  Returns
        the LSN of the state copied (``stats()["lsn"]`` then)."""
        p = os.fspath(path)
        if os.path.lexists(p):
            raise FileExistsError(errno.EEXIST, "checkpoint: the target already exists (a checkpoint makes a new directory)", p)
        return _pylsm.DB.checkpoint(self, p)

    def changes(self, since_lsn: int = 0) -> Iterator_[Tuple[int, Optional[float], list]]:
        """Every write batch after LSN ``since_lsn``, oldest first, as ``(lsn, timestamp, ops)``: lsn is
        the batch's first LSN (its operation i has LSN lsn + i, so the next call resumes from
        ``lsn + len(ops) - 1``), timestamp the wall-clock time of the write in seconds (None unless
        ``wal_timestamp=True``), ops a list of ``("put", key, value)`` and ``("delete", key, None)``.
        Read from the write-ahead logs: the live ones and those kept by ``wal_retention_bytes`` /
        ``wal_retention_seconds``.  A writer's feed ends at what was acknowledged when it was made; a
        read_only handle's at what the logs hold.  LSNs that no kept log holds (retention let them go,
        or an ingest, which bypasses the logs) raise pylsm.Error."""
        if isinstance(since_lsn, bool) or not isinstance(since_lsn, int):
            raise TypeError(f"since_lsn must be an int, not {type(since_lsn).__name__}")
        if since_lsn < 0:
            raise ValueError("since_lsn must be >= 0")
        raw = self._changes(since_lsn)
        if self._kdec is None and self._vdec is None:
            return raw
        return self._decoded_changes(raw)

    def _decoded_changes(self, raw: Any) -> Iterator_[Tuple[int, Optional[float], list]]:
        kdec, vdec = self._kdec, self._vdec
        for lsn, ts, ops in raw:
            yield lsn, ts, [(op, k if kdec is None else kdec(k), v if v is None or vdec is None else vdec(v))
                            for op, k, v in ops]

    def delete_range(self, start: Any, stop: Any, *, sync: Optional[bool] = None) -> int:
        """Delete every key in [start, stop) (None: an open end) as one atomic write: exactly the keys
        present when it runs go, all of them or (after a crash, a failure) none; writes made after it
        are kept.  Writers wait while it lists the keys; its cost grows with the keys in the range (a
        range holding more deletes than a memtable raises ValueError: delete it in parts).  Returns how
        many keys it deleted.  sync as for put."""
        return _pylsm.DB.delete_range(self, self._end(start), self._end(stop), sync=sync)

    def key_may_exist(self, key: Any) -> bool:
        """False if key is certainly absent; True if it may be present.  Answers from memory only (the
        memtable, the tables' key ranges and bloom filters): no data block is read, so a True is wrong
        about as often as the filters' false positives (about 1% at 10 bits per key)."""
        k = self._k_or_absent(key)
        return k is not _MISSING and _pylsm.DB.key_may_exist(self, k)

    def approximate_size(self, start: Any = None, stop: Any = None) -> int:
        """Bytes on disk of the tables holding keys in [start, stop) (None: open end), estimated from
        the tables' indexes without reading data: exact for whole tables, to a data block for the tables
        the range cuts.  Writes still in the memtable are not counted until flushed."""
        return _pylsm.DB.approximate_size(self, self._end(start), self._end(stop))

    def stats(self) -> dict:
        """Engine statistics (docs/api.md): lsn, memtable_bytes, wal_bytes, sstables, levels, live_bytes,
        user_bytes_written, disk_bytes_written, write_amplification, flushes, compactions,
        wal_dropped_bytes, and more."""
        s = super().stats()
        s["write_amplification"] = s.pop("write_amplification_x1000") / 1000.0
        return s

    def snapshot(self) -> "Snapshot":
        """A read view of the database as it is now; release it with close() or a with block."""
        return Snapshot(self)

    def __enter__(self) -> "DB":
        self._check_open()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        if self.closed:
            return f"<pylsm.DB {self._path!r} closed>"
        s = self.stats()
        extra = " read_only" if self._read_only else f" sync={self._sync_strategy!r}"
        kc, vc = self._codecs
        if kc is not None or vc is not None:
            extra += f" key_codec={getattr(kc, 'name', kc)!r} value_codec={getattr(vc, 'name', vc)!r}"
        return (f"<pylsm.DB {self._path!r} lsn={s['lsn']} sstables={s['sstables']} "
                f"memtable={s['memtable_bytes']}B{extra}>")

    def _repr_html_(self) -> str:
        """A compact card for notebooks: keys, disk bytes, write amplification, options, LSM tree."""
        return _card_html(self)

    __class_getitem__ = classmethod(GenericAlias)


class _CodedDB(DB):
    """A DB whose keys and/or values go through codecs (pylsm.open(..., key_codec=, value_codec=))."""

    def put(self, key: Any, value: Any, *, sync: Optional[bool] = None) -> None:
        """Insert or overwrite key."""
        _pylsm.DB.put(self, self._k(key), self._v(value), sync=sync)

    def __setitem__(self, key: Any, value: Any) -> None:
        _pylsm.DB.__setitem__(self, self._k(key), self._v(value))

    def get(self, key: Any, default: Any = None) -> Any:
        """The value of key, or default."""
        v = _pylsm.DB.get(self, self._k(key), _MISSING)
        return default if v is _MISSING else self._out(v)

    def __getitem__(self, key: Any) -> Any:
        v = _pylsm.DB.get(self, self._k(key), _MISSING)
        if v is _MISSING:
            raise KeyError(key)
        return self._out(v)

    def __delitem__(self, key: Any) -> None:
        try:
            _pylsm.DB.__delitem__(self, self._k(key))
        except KeyError:
            raise KeyError(key) from None

    def __contains__(self, key: Any) -> bool:
        k = self._k_or_absent(key)
        return k is not _MISSING and _pylsm.DB.__contains__(self, k)

    def delete(self, key: Any, *, sync: Optional[bool] = None) -> None:
        """Remove key; no error if absent."""
        _pylsm.DB.delete(self, self._k(key), sync=sync)

    def get_many(self, keys: Iterable[Any]) -> list:
        """Values (or None) for keys, from one consistent view."""
        return self._outs(_pylsm.DB.get_many(self, [self._k(k) for k in keys]))

    def _encode_pairs(self, pairs: Any) -> Any:
        # ingest(): the order that counts is that of the encoded keys.
        return ((self._k(k), self._v(v)) for k, v in _unpack_pairs(pairs, "ingest"))


class Snapshot(_Ranges, _pylsm.Snapshot, Mapping):
    """A consistent read view: get, [], in, get_many, items, keys, values, iterator and len see the
    database as it was; a collections.abc.Mapping.  Release it with close() or a with block."""

    __slots__ = ("_lsn", "_kenc", "_kdec", "_venc", "_vdec", "__weakref__")
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, db: "DB") -> None:
        self._lsn = self.lsn
        self._kenc = getattr(db, "_kenc", None)
        self._kdec = getattr(db, "_kdec", None)
        self._venc = getattr(db, "_venc", None)
        self._vdec = getattr(db, "_vdec", None)

    def _db_for_iter(self) -> "DB":
        return self._db

    def _snapshot_for_iter(self) -> Any:
        return self

    def _raw_keys(self) -> Any:
        return self._db._iter(None, None, False, _KEYS, self)

    def get(self, key: Any, default: Any = None) -> Any:
        """The value of key in this view, or default."""
        v = _pylsm.Snapshot.get(self, self._k(key), _MISSING)
        return default if v is _MISSING else self._out(v)

    def __getitem__(self, key: Any) -> Any:
        v = _pylsm.Snapshot.get(self, self._k(key), _MISSING)
        if v is _MISSING:
            raise KeyError(key)
        return self._out(v)

    def __contains__(self, key: Any) -> bool:
        k = self._k_or_absent(key)
        return k is not _MISSING and _pylsm.Snapshot.__contains__(self, k)

    def get_many(self, keys: Iterable[Any]) -> list:
        """Values (or None) for keys in this view."""
        if self._kenc is not None:
            keys = [self._kenc(k) for k in keys]
        return self._outs(_pylsm.Snapshot.get_many(self, keys))

    def __enter__(self) -> "Snapshot":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        path = getattr(self._db, "path", None)
        where = f" of {path!r}" if path is not None else ""
        state = "closed" if self.closed else "open"
        return f"<pylsm.Snapshot{where} at LSN {self._lsn} ({state})>"

    __class_getitem__ = classmethod(GenericAlias)


def open(path: Union[str, os.PathLike], **options: Any) -> DB:  # noqa: A001 (the API's name)
    """Open (by default create) the database at ``path``; see DB for the options."""
    return DB(path, **options)


class _Progress:
    """progress=True: a tqdm bar (tqdm is an optional dependency) over the bytes of files a long call
    goes through; the core reports between files."""

    def __init__(self, progress: Any, desc: str, unit: str = "B", total: Optional[int] = 0) -> None:
        self.bar = None
        if not _bool_option("progress", progress):
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:  # tqdm is optional: no bar, and the call runs as without progress
            return
        if unit == "B":
            self.bar = tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024)
        else:
            self.bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=True)

    @property
    def callback(self) -> Any:
        return None if self.bar is None else self._update

    @property
    def count_callback(self) -> Any:
        """For calls that report a count done so far (ingest)."""
        return None if self.bar is None else self._advance

    def _advance(self, done: int) -> None:
        self.bar.update(done - self.bar.n)

    def _update(self, done: int, total: int) -> None:
        self.bar.total = total
        self.bar.n = done
        self.bar.refresh()

    def __enter__(self) -> "_Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.close()


def verify(path: Union[str, os.PathLike], *, progress: bool = False) -> None:
    """Check every checksum of a database (tables, manifest, logs); raise CorruptionError naming the
    file and offset.  Reads only: safe beside a running writer.  progress=True shows a tqdm bar."""
    with _Progress(progress, "verify") as p:
        _pylsm.verify(os.fspath(path), p.callback)


def repair(path: Union[str, os.PathLike], *, progress: bool = False) -> dict:
    """Salvage a damaged database into a consistent one, keeping every record whose checksum is
    intact.  Returns what it kept and dropped: tables_kept, tables_damaged (left as .sst.bad),
    blocks_salvaged, blocks_lost, bytes_lost, entries_salvaged, wals_replayed, wals_damaged,
    wal_records, wal_records_skipped, wal_dropped_bytes, tables (in the new manifest), last_lsn.
    progress=True shows a tqdm bar."""
    with _Progress(progress, "repair") as p:
        return _pylsm.repair(os.fspath(path), p.callback)


def destroy(path: Union[str, os.PathLike]) -> None:
    """Delete a database directory (only the files pylsm made; the directory if then empty)."""
    _pylsm.destroy(os.fspath(path))
