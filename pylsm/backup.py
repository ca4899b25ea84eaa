"""Incremental backups of a pylsm database (pylsm.backup, pylsm.restore, pylsm.backups,
pylsm.delete_backup) and point-in-time restores (pylsm.restore_to).

A backup directory holds any number of backups of one or more databases; tables, which never change once
written, are stored once and shared by every backup that holds them:

    dir/LOCK                 held (flock) while a backup call works on dir: one at a time
    dir/shared/<table>.sst   one file per distinct table: NNNNNN_<size>_<crc32 of its last 64 KiB>.sst
    dir/private/<id>/        the backup's own files: MANIFEST-*, CURRENT and the WALs it copied
    dir/meta/<id>.json       the backup: when, the LSN, and every file with its size and CRC-32

A backup starts as a checkpoint (DB.checkpoint) into private/<id>, hard-linked to the database's tables
where the file system allows; its new tables are then copied into shared/ (a copy of its own, so that the
backup shares no inode with the database) and the ones already there are dropped. The meta file, written last (temp, fsync, rename, fsync), is the commit point: a backup
without one was cut short and is removed by the next call. restore copies a backup's files into a new
directory and checks every file's CRC-32 on the way, so a damaged backup is reported, never restored.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import time
import zlib
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

from . import _pylsm

PathLike = Union[str, "os.PathLike[str]"]

_TAIL = 64 * 1024     # the bytes of a table that name it in shared/ (index, filter, footer)
_CHUNK = 1 << 20
_META = re.compile(r"^(\d+)\.json$")
_ARCHIVE = "archive"


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _crc_file(path: str) -> int:
    crc = 0
    with open(path, "rb") as f:
        while True:
            b = f.read(_CHUNK)
            if not b:
                return crc
            crc = zlib.crc32(b, crc)


def _shared_name(path: str, number: str) -> str:
    """A table's name in shared/: its number, size and the CRC-32 of its last 64 KiB (the index, the
    filter and the footer, which differ between any two different tables)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        f.seek(max(0, size - _TAIL))
        tail = f.read()
    return f"{number}_{size}_{zlib.crc32(tail):08x}.sst"


class _Lock:
    """dir/LOCK, held while a call works on the backup directory."""

    def __init__(self, root: str) -> None:
        self.fd = os.open(os.path.join(root, "LOCK"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            raise _pylsm.LockError(f"another backup call is working on {root}") from None

    def __enter__(self) -> "_Lock":
        return self

    def __exit__(self, *exc: Any) -> None:
        os.close(self.fd)


def _read_metas(root: str) -> Dict[int, Dict[str, Any]]:
    metas: Dict[int, Dict[str, Any]] = {}
    mdir = os.path.join(root, "meta")
    if not os.path.isdir(mdir):
        return metas
    for name in os.listdir(mdir):
        m = _META.match(name)
        if not m:
            continue
        p = os.path.join(mdir, name)
        try:
            with open(p, "rb") as f:
                meta = json.loads(f.read())
        except (OSError, ValueError) as e:
            raise _pylsm.CorruptionError(f"backup meta {p} cannot be read: {e}") from None
        if not isinstance(meta, dict) or meta.get("id") != int(m.group(1)) or not isinstance(meta.get("files"), list):
            raise _pylsm.CorruptionError(f"backup meta {p} is not a backup's description")
        metas[meta["id"]] = meta
    return metas


def _collect_garbage(root: str, metas: Dict[int, Dict[str, Any]]) -> None:
    """Remove what a cut-short or deleted backup left: private dirs and shared tables no meta names."""
    pdir, sdir = os.path.join(root, "private"), os.path.join(root, "shared")
    for name in os.listdir(pdir):
        base = name[:-4] if name.endswith(".tmp") else name
        if not base.isdigit() or int(base) not in metas or name.endswith(".tmp"):
            shutil.rmtree(os.path.join(pdir, name), ignore_errors=True)
    used = {f["shared"] for m in metas.values() for f in m["files"] if "shared" in f}
    for name in os.listdir(sdir):
        if name not in used:  # (a .tmp of a copy cut short, too)
            os.unlink(os.path.join(sdir, name))


def _prepare(root: str) -> None:
    for sub in ("shared", "private", "meta"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)


def backup(db_or_path: Any, dir: PathLike) -> int:  # noqa: A002 (the API's name)
    """Back up a database into the backup directory ``dir`` (created if missing) and return the new
    backup's id (1, 2, ...).  ``db_or_path`` is an open DB (writers go on while it is copied) or the
    path of a closed database (opened for the copy; LockError if another process has it open).
    Tables already in ``dir`` from an earlier backup are not stored again."""
    from . import DB  # (the package imports this module)

    if isinstance(db_or_path, DB):
        return _backup_db(db_or_path, os.fspath(dir))
    with DB(os.fspath(db_or_path), create_if_missing=False) as db:
        return _backup_db(db, os.fspath(dir))


def _backup_db(db: Any, root: str) -> int:
    os.makedirs(root, exist_ok=True)
    with _Lock(root):
        _prepare(root)
        metas = _read_metas(root)
        _collect_garbage(root, metas)
        known = {f["shared"]: f for m in metas.values() for f in m["files"] if "shared" in f}
        bid = max(metas, default=0) + 1
        pdir = os.path.join(root, "private", str(bid))
        sdir = os.path.join(root, "shared")
        lsn = db.checkpoint(pdir)
        files: List[Dict[str, Any]] = []
        for name in sorted(os.listdir(pdir)):
            src = os.path.join(pdir, name)
            if name.endswith(".sst"):
                shared = _shared_name(src, name[:-4])
                dst = os.path.join(sdir, shared)
                if shared in known:
                    os.unlink(src)
                    files.append(dict(known[shared], name=name))
                    continue
                # A copy, not the checkpoint's hard link: the backup must not share the database's
                # inode (damage to one would be damage to both).
                size, crc = _copy(src, dst + ".tmp")
                os.rename(dst + ".tmp", dst)
                os.unlink(src)
                entry = {"name": name, "shared": shared, "size": size, "crc32": crc}
                known[shared] = entry
                files.append(entry)
            else:
                files.append({"name": name, "size": os.path.getsize(src), "crc32": _crc_file(src)})
        files += _backup_archive(os.path.join(db.path, _ARCHIVE), sdir, known)
        _fsync_dir(sdir)
        _fsync_dir(pdir)
        cp = _read_description(pdir)
        meta = {"id": bid, "created": time.time(), "time": cp.get("time", time.time()), "lsn": lsn,
                "source": cp.get("source", os.path.abspath(db.path)),
                "bytes": sum(f["size"] for f in files), "files": files}
        mdir = os.path.join(root, "meta")
        tmp = os.path.join(mdir, f"{bid}.json.tmp")
        with open(tmp, "wb") as f:
            f.write(json.dumps(meta, indent=1).encode())
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, os.path.join(mdir, f"{bid}.json"))
        _fsync_dir(mdir)
        return bid


def _backup_archive(arch: str, sdir: str, known: Dict[str, Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The WALs the database keeps for its changes feed (wal_retention_*): history for point-in-time
    restores, shared like tables (an archived WAL never changes).  One trimmed away meanwhile is
    skipped."""
    out: List[Dict[str, Any]] = []
    try:
        names = sorted(n for n in os.listdir(arch) if n.endswith(".wal"))
    except FileNotFoundError:
        return out
    for name in names:
        src = os.path.join(arch, name)
        try:
            shared = _shared_name(src, name[:-4])[:-4] + ".wal"
            if shared in known:
                out.append(dict(known[shared], name=_ARCHIVE + "/" + name))
                continue
            dst = os.path.join(sdir, shared)
            size, crc = _copy(src, dst + ".tmp")
        except FileNotFoundError:
            continue
        os.rename(dst + ".tmp", dst)
        entry = {"name": _ARCHIVE + "/" + name, "shared": shared, "size": size, "crc32": crc}
        known[shared] = entry
        out.append(entry)
    return out


def _read_description(cp_dir: str) -> Dict[str, Any]:
    """A checkpoint's CHECKPOINT file: lsn, time (seconds), source (the database it copies)."""
    out: Dict[str, Any] = {}
    try:
        with open(os.path.join(cp_dir, "CHECKPOINT"), "rb") as f:
            text = f.read().decode("utf-8", "surrogateescape")
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "lsn":
            out["lsn"] = int(value)
        elif key == "time_us":
            out["time"] = int(value) / 1e6
        elif key == "source":
            out["source"] = value
    return out


def backups(dir: PathLike) -> List[Dict[str, Any]]:  # noqa: A002
    """The backups in ``dir``, oldest first: dicts with id, created (Unix time), lsn, source (the
    database's path), bytes (of all its files) and files."""
    return [m for _, m in sorted(_read_metas(os.fspath(dir)).items())]


def delete_backup(dir: PathLike, backup_id: int) -> None:  # noqa: A002
    """Remove one backup; tables no other backup holds are removed with it."""
    root = os.fspath(dir)
    with _Lock(root):
        _prepare(root)
        metas = _read_metas(root)
        if backup_id not in metas:
            raise ValueError(f"no backup {backup_id!r} in {root} (there are {sorted(metas)})")
        os.unlink(os.path.join(root, "meta", f"{backup_id}.json"))
        _fsync_dir(os.path.join(root, "meta"))
        del metas[backup_id]
        _collect_garbage(root, metas)


def _copy(src: str, dst: str) -> Tuple[int, int]:
    """Copy src to the new file dst, fsynced; returns (size, CRC-32) of what was copied."""
    crc, n = 0, 0
    with open(src, "rb") as f, open(dst, "xb") as out:
        while True:
            b = f.read(_CHUNK)
            if not b:
                break
            crc = zlib.crc32(b, crc)
            n += len(b)
            out.write(b)
        out.flush()
        os.fsync(out.fileno())
    return n, crc


def _copy_checked(src: str, dst: str, size: int, crc: int) -> None:
    n, got = _copy(src, dst)
    if n != size or got != crc:
        raise _pylsm.CorruptionError(f"backup file {src} is damaged: {n} bytes with CRC-32 {got:08x}, "
                                     f"the backup recorded {size} bytes with {crc:08x}")


def restore(dir: PathLike, path: PathLike, backup_id: Optional[int] = None) -> None:  # noqa: A002
    """Restore backup ``backup_id`` (the newest when None) from ``dir`` as a new database at ``path``
    (FileExistsError if it exists).  Every file's CRC-32 is checked as it is copied: a damaged backup
    raises CorruptionError and leaves nothing at ``path``."""
    root, target = os.fspath(dir), os.fspath(path)
    metas = _read_metas(root)
    if not metas:
        raise ValueError(f"no backups in {root}")
    bid = max(metas) if backup_id is None else backup_id
    if bid not in metas:
        raise ValueError(f"no backup {backup_id!r} in {root} (there are {sorted(metas)})")
    if os.path.lexists(target):
        raise FileExistsError(errno.EEXIST, "restore: the target already exists", target)
    staging = target.rstrip("/") + ".tmp"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    try:
        for f in metas[bid]["files"]:
            if "shared" in f:
                src = os.path.join(root, "shared", f["shared"])
            else:
                src = os.path.join(root, "private", str(bid), f["name"])
            dst = os.path.join(staging, f["name"])
            if os.path.dirname(f["name"]):
                os.makedirs(os.path.dirname(dst), exist_ok=True)
            _copy_checked(src, dst, f["size"], f["crc32"])
        if os.path.isdir(os.path.join(staging, _ARCHIVE)):
            _fsync_dir(os.path.join(staging, _ARCHIVE))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _publish(staging, target)


def _publish(staging: str, target: str) -> None:
    """Make the finished staging directory durable and rename it to target (then its parent durable);
    on failure it is removed."""
    try:
        _fsync_dir(staging)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _fsync_dir(os.path.dirname(os.path.abspath(target)))


# ---- point-in-time restore ---------------------------------------------------------------------

_WAL_NAME = re.compile(r"^(\d{6,})\.wal$")
_SHARED_WAL = re.compile(r"^(\d{6,})_\d+_[0-9a-f]{8}\.wal$")


def _seconds(timestamp: Any) -> float:
    import datetime

    if isinstance(timestamp, datetime.datetime):
        return timestamp.timestamp()  # (a naive datetime is local time, as datetime.timestamp() says)
    if isinstance(timestamp, bool) or not isinstance(timestamp, (int, float)):
        raise TypeError(f"timestamp must be seconds since the epoch or a datetime, not {type(timestamp).__name__}")
    return float(timestamp)


def _wals_in(d: str, out: Dict[int, List[str]]) -> None:
    """WAL files of a database directory (and its archive/), by number."""
    for sub in (d, os.path.join(d, _ARCHIVE)):
        try:
            names = os.listdir(sub)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            m = _WAL_NAME.match(name)
            if m:
                out.setdefault(int(m.group(1)), []).append(os.path.join(sub, name))


def _link_or_copy_tree(src: str, dst: str) -> None:
    """A copy of a checkpoint's files (tables hard-linked where possible: they never change)."""
    os.makedirs(dst)
    for name in os.listdir(src):
        s, d = os.path.join(src, name), os.path.join(dst, name)
        if not os.path.isfile(s):
            continue
        if name.endswith(".sst"):
            try:
                os.link(s, d)
                continue
            except OSError:
                pass
        _copy(s, d)
    _fsync_dir(dst)


def restore_to(path: PathLike, checkpoint_or_backup: PathLike, timestamp: Any, *,
               wal_dirs: Iterable[PathLike] = ()) -> int:
    """Rebuild the database as it was at wall-clock ``timestamp`` (seconds since the epoch, or a
    datetime) as a new database at ``path``: from a checkpoint made before that time, or from the newest
    backup made before it in a backup directory, then every write batch after it, in order, up to the
    first one timestamped after ``timestamp``.  The batches come from the write-ahead logs kept with
    the backups, in the checkpoint, in the source database (its live logs and those kept by
    ``wal_retention_bytes`` / ``wal_retention_seconds``) and in ``wal_dirs``.  Needs the source opened
    with ``wal_timestamp=True``.  Returns the LSN of the state restored.  Nothing is left at ``path`` on
    failure (FileExistsError if it exists)."""
    target = _seconds(timestamp)
    target_us = int(round(target * 1e6))
    dest, src = os.fspath(path), os.fspath(checkpoint_or_backup)
    if os.path.lexists(dest):
        raise FileExistsError(errno.EEXIST, "restore_to: the target already exists", dest)
    staging = dest.rstrip("/") + ".pitr"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(staging + ".tmp", ignore_errors=True)
    wals: Dict[int, List[str]] = {}
    if os.path.isdir(os.path.join(src, "meta")):
        metas = _read_metas(src)
        older = [m for m in metas.values() if m.get("time", m["created"]) <= target]
        if not older:
            raise ValueError(f"restore_to: no backup in {src} was made before the target time "
                             f"({sorted(m.get('time', m['created']) for m in metas.values())[:1]} is the oldest)")
        base = max(older, key=lambda m: m["lsn"])
        restore(src, staging, base["id"])
        source = base.get("source")
        for m in metas.values():  # the logs every backup of the same database kept
            if m.get("source") != source:
                continue
            for f in m["files"]:
                mm = _WAL_NAME.match(os.path.basename(f["name"]))
                if not mm:
                    continue
                p = (os.path.join(src, "shared", f["shared"]) if "shared" in f
                     else os.path.join(src, "private", str(m["id"]), f["name"]))
                wals.setdefault(int(mm.group(1)), []).append(p)
    elif os.path.isfile(os.path.join(src, "CURRENT")):
        desc = _read_description(src)
        if "time" not in desc:
            raise ValueError(f"restore_to: {src} is not a checkpoint (it has no CHECKPOINT file)")
        if desc["time"] > target:
            raise ValueError(f"restore_to: the checkpoint {src} was made after the target time")
        _link_or_copy_tree(src, staging)
        source = desc.get("source")
        _wals_in(src, wals)
    else:
        raise ValueError(f"restore_to: {src} is neither a checkpoint nor a backup directory")
    if source:
        _wals_in(source, wals)
    for d in wal_dirs:
        _wals_in(os.fspath(d), wals)
    try:
        # Of each log, the longest copy (a live log copied early is a prefix of its later copies).
        paths = [max(ps, key=lambda p: os.path.getsize(p)) for _, ps in sorted(wals.items())]
        db = _pylsm.DB(staging, create_if_missing=False)
        try:
            lsn = int(db.stats()["lsn"])
            for first, ts, ops in _pylsm._wal_changes(paths, lsn):
                if ts is None:
                    raise ValueError("restore_to: the logs carry no timestamps "
                                     "(open the database with wal_timestamp=True)")
                if int(round(ts * 1e6)) > target_us:
                    break
                b = _pylsm.WriteBatch()
                for op, k, v in ops:
                    if v is not None:
                        b.put(k, v)
                    else:
                        b.delete(k)
                db.write(b)
                lsn = first + len(ops) - 1
            got = db.stats()["lsn"]
            if got != lsn:
                raise _pylsm.CorruptionError(f"restore_to: replay ended at LSN {got}, the logs at {lsn}")
            db.sync()
        finally:
            db.close()
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _publish(staging, dest)
    return lsn
