"""Incremental backups of a pylsm database: pylsm.backup, pylsm.restore, pylsm.backups, pylsm.delete_backup.

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
from typing import Any, Dict, List, Optional, Union

from . import _pylsm

PathLike = Union[str, "os.PathLike[str]"]

_TAIL = 64 * 1024     # the bytes of a table that name it in shared/ (index, filter, footer)
_CHUNK = 1 << 20
_META = re.compile(r"^(\d+)\.json$")


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


def _read_metas(root: str) -> Dict[int, dict]:
    metas: Dict[int, dict] = {}
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


def _collect_garbage(root: str, metas: Dict[int, dict]) -> None:
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
        files: List[dict] = []
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
        _fsync_dir(sdir)
        _fsync_dir(pdir)
        meta = {"id": bid, "created": time.time(), "lsn": lsn, "source": db.path,
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


def backups(dir: PathLike) -> List[dict]:  # noqa: A002
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


def _copy(src: str, dst: str) -> tuple:
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
            _copy_checked(src, os.path.join(staging, f["name"]), f["size"], f["crc32"])
        _fsync_dir(staging)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _fsync_dir(os.path.dirname(os.path.abspath(target)))
