"""The pylsm command line: ``python -m pylsm COMMAND PATH ...`` (also installed as ``pylsm``).

Inspecting commands (stats, get, scan, dump, verify, changes) open the database read-only: they take no lock
and never write a byte, also while another process has the database open.  Keys and values are UTF-8
text by default; ``--hex`` or ``--base64`` give and show raw bytes.  Exit status: 0 success, 1 not
found (a key, for get), 2 a usage or database error.  Run ``pylsm COMMAND --help`` for each command.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import shutil
import sys
import tempfile
from typing import Any, BinaryIO, Dict, Iterator, List, Optional, Tuple

import pylsm

EXIT_OK, EXIT_NOT_FOUND, EXIT_ERROR = 0, 1, 2


class CliError(Exception):
    """A failure reported as ``pylsm: message`` with exit status 2."""


# ---- how keys and values are given and shown --------------------------------------------------


def _decode_arg(s: str, fmt: str) -> bytes:
    """A key or value from the command line: UTF-8 text (exactly the bytes given), hex or base64."""
    if fmt == "hex":
        try:
            return bytes.fromhex(s)
        except ValueError:
            raise CliError(f"not hexadecimal: {s!r}") from None
    if fmt == "base64":
        try:
            return base64.b64decode(s, validate=True)
        except binascii.Error:
            raise CliError(f"not base64: {s!r}") from None
    return os.fsencode(s)  # the argument's own bytes (UTF-8, or what the shell passed)


def _show(b: bytes, fmt: str) -> str:
    if fmt == "hex":
        return b.hex()
    if fmt == "base64":
        return base64.b64encode(b).decode("ascii")
    # Text for a terminal: bytes that are not UTF-8 and control characters (NUL, ESC, newline...)
    # shown as \xNN escapes.  --hex, --base64 and --json are exact.
    return b.decode("utf-8", "backslashreplace").translate(_CONTROLS)


_CONTROLS = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F]}


def _json_field(name: str, b: bytes, fmt: str) -> Dict[str, str]:
    """{name: text} when b is UTF-8 text (and no raw format was asked for), else name_hex / name_base64."""
    if fmt == "text":
        try:
            return {name: b.decode("utf-8")}
        except UnicodeDecodeError:
            fmt = "base64"
    return {f"{name}_{fmt}": _show(b, fmt)}


def _from_json_field(obj: Dict[str, Any], name: str, lineno: int) -> bytes:
    text = obj.get(name)
    if isinstance(text, str):
        return text.encode("utf-8", "surrogatepass")
    try:
        if isinstance(obj.get(f"{name}_base64"), str):
            return base64.b64decode(obj[f"{name}_base64"], validate=True)
        if isinstance(obj.get(f"{name}_hex"), str):
            return bytes.fromhex(obj[f"{name}_hex"])
    except (ValueError, binascii.Error) as e:
        raise CliError(f"line {lineno}: bad {name}: {e}") from None
    raise CliError(f"line {lineno}: no {name!r}, {name + '_base64'!r} or {name + '_hex'!r} string")


def _out(line: str) -> None:
    sys.stdout.buffer.write(line.encode("utf-8", "backslashreplace") + b"\n")


# ---- what is on disk --------------------------------------------------------------------------


def _files(path: str) -> List[Tuple[str, int]]:
    try:
        names = sorted(os.listdir(path))
    except FileNotFoundError:
        raise pylsm.NotFoundError(2, f"no database at {path}") from None
    out = []
    for n in names:
        try:
            out.append((n, os.stat(os.path.join(path, n)).st_size))
        except FileNotFoundError:  # removed by a live writer meanwhile
            pass
    return out


def _writer_pid(path: str) -> Optional[int]:
    """The pid holding the database's lock, from /proc/locks (Linux), without touching the lock."""
    try:
        ino = os.stat(os.path.join(path, "LOCK")).st_ino
        with open("/proc/locks") as f:
            for line in f:
                parts = line.split()
                # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"
                if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5].rsplit(":", 1)[-1] == str(ino):
                    return int(parts[4])
    except (OSError, ValueError):
        return None
    return None


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def _open_ro(path: str) -> "pylsm.DB[bytes, bytes, Any, Any]":
    return pylsm.open(path, read_only=True)


# ---- the commands -----------------------------------------------------------------------------


def cmd_stats(a: argparse.Namespace) -> int:
    files = _files(a.path)
    with _open_ro(a.path) as db:
        s = db.stats()
    by_kind: Dict[str, List[int]] = {}
    for name, size in files:
        kind = name.rsplit(".", 1)[-1] if "." in name else name.split("-")[0]
        by_kind.setdefault(kind, []).append(size)
    disk = sum(size for _, size in files)
    writer = _writer_pid(a.path)
    levels = []
    for lv in s["levels"]:
        target = (s["level1_target_bytes"] * s["level_multiplier"] ** (lv["level"] - 1)
                  if lv["level"] > 0 else None)
        levels.append(dict(lv, target_bytes=target))
    report = {
        "path": a.path,
        "keys_estimate": s["table_entries"] + s["memtable_entries"],
        "table_entries": s["table_entries"],
        "log_entries": s["memtable_entries"],
        "lsn": s["lsn"],
        "disk_bytes": disk,
        "files": {k: {"count": len(v), "bytes": sum(v)} for k, v in sorted(by_kind.items())},
        "sstables": s["sstables"],
        "levels": levels,
        "writer_pid": writer,
    }
    if a.json:
        _out(json.dumps(report, indent=2))
        return EXIT_OK
    _out(f"{a.path}: {report['keys_estimate']:,} keys (estimate: entries, counting overwritten and "
         f"deleted keys until compaction), last LSN {s['lsn']:,}")
    _out(f"  on disk        {_human(disk)} in {len(files)} files: " +
         ", ".join(f"{v['count']} {k} ({_human(v['bytes'])})" for k, v in report["files"].items()))
    _out(f"  tables         {s['sstables']} holding {s['table_entries']:,} entries; the logs hold "
         f"{s['memtable_entries']:,} more")
    for lv in levels:
        if lv["files"]:
            tgt = (f" of {_human(lv['target_bytes'])} target" if lv["target_bytes"]
                   else f" ({lv['files']}/{s['level0_compaction_trigger']} tables trigger a compaction)")
            _out(f"  L{lv['level']}             {lv['files']} tables, {_human(lv['bytes'])}{tgt}")
    _out(f"  writer         {'process ' + str(writer) + ' has it open' if writer else 'none (closed)'}")
    return EXIT_OK


def cmd_get(a: argparse.Namespace) -> int:
    key = _decode_arg(a.key, a.format)
    with _open_ro(a.path) as db:
        v = db.get(key)
    if v is None:
        print(f"pylsm: {a.key}: not found", file=sys.stderr)
        return EXIT_NOT_FOUND
    if a.json:
        _out(json.dumps({**_json_field("key", key, a.format), **_json_field("value", v, a.format)},
                        ensure_ascii=False))
    else:
        _out(_show(v, a.format))
    return EXIT_OK


def cmd_put(a: argparse.Namespace) -> int:
    key, value = _decode_arg(a.key, a.format), _decode_arg(a.value, a.format)
    with pylsm.open(a.path, create_if_missing=a.create) as db:
        db.put(key, value, sync=True)
    return EXIT_OK


def cmd_delete(a: argparse.Namespace) -> int:
    key = _decode_arg(a.key, a.format)
    with pylsm.open(a.path, create_if_missing=False) as db:
        if key not in db:
            print(f"pylsm: {a.key}: not found", file=sys.stderr)
            return EXIT_NOT_FOUND
        db.delete(key, sync=True)
    return EXIT_OK


def _range_args(a: argparse.Namespace) -> Dict[str, Any]:
    def opt(x: Optional[str]) -> Optional[bytes]:
        return None if x is None else _decode_arg(x, a.format)

    return dict(start=opt(a.start), stop=opt(a.stop), prefix=opt(a.prefix), reverse=a.reverse)


def _limited(it: Iterator[Tuple[bytes, bytes]], limit: Optional[int]) -> Iterator[Tuple[bytes, bytes]]:
    for n, kv in enumerate(it):
        if limit is not None and n >= limit:
            return
        yield kv


def cmd_scan(a: argparse.Namespace) -> int:
    with _open_ro(a.path) as db:
        for k, v in _limited(db.items(**_range_args(a)), a.limit):
            if a.json:
                rec = _json_field("key", k, a.format)
                if not a.keys_only:
                    rec.update(_json_field("value", v, a.format))
                _out(json.dumps(rec, ensure_ascii=False))
            elif a.keys_only:
                _out(_show(k, a.format))
            else:
                _out(f"{_show(k, a.format)}\t{_show(v, a.format)}")
    return EXIT_OK


def cmd_dump(a: argparse.Namespace) -> int:
    out: BinaryIO = sys.stdout.buffer if a.output in (None, "-") else open(a.output, "wb")
    n = 0
    try:
        with _open_ro(a.path) as db:
            for k, v in _limited(db.items(**_range_args(a)), a.limit):
                rec = {**_json_field("key", k, a.format), **_json_field("value", v, a.format)}
                out.write(json.dumps(rec, ensure_ascii=False).encode("utf-8") + b"\n")
                n += 1
    finally:
        if out is not sys.stdout.buffer:
            out.close()
    if a.output not in (None, "-"):
        print(f"{n:,} entries written to {a.output}", file=sys.stderr)
    return EXIT_OK


def cmd_load(a: argparse.Namespace) -> int:
    src = sys.stdin.buffer if a.input in (None, "-") else open(a.input, "rb")
    n = 0
    try:
        with pylsm.open(a.path, create_if_missing=a.create) as db:
            batch = db.batch()
            for lineno, line in enumerate(src, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise CliError(f"line {lineno}: not JSON: {e}") from None
                if not isinstance(obj, dict):
                    raise CliError(f"line {lineno}: expected an object with key and value")
                batch.put(_from_json_field(obj, "key", lineno), _from_json_field(obj, "value", lineno))
                n += 1
                if len(batch) >= 10_000:
                    db.write(batch)
                    batch.clear()
            db.write(batch, sync=True)
    finally:
        if src is not sys.stdin.buffer:
            src.close()
    print(f"{n:,} entries loaded into {a.path}", file=sys.stderr)
    return EXIT_OK


def cmd_verify(a: argparse.Namespace) -> int:
    writer = _writer_pid(a.path)
    pylsm.verify(a.path, progress=a.progress)
    note = (f" (process {writer} has it open for writing: checked the files as they are now; what it "
            "writes from here on is not)" if writer else "")
    _out(f"{a.path}: every checksum is intact{note}")
    return EXIT_OK


def _count_keys(path: str) -> Tuple[Optional[int], bool]:
    """The live keys and True, or (when a damaged block stops the count) the entries the tables'
    metadata and the logs hold and False, or (None, False) when the database does not open."""
    try:
        with _open_ro(path) as db:
            try:
                return len(db), True
            except pylsm.CorruptionError:
                s = db.stats()
                return s["table_entries"] + s["memtable_entries"], False
    except pylsm.Error:
        return None, False


def _repair_report(before: Tuple[Optional[int], bool], after: Tuple[Optional[int], bool],
                   r: Dict[str, int], dry: bool) -> None:
    verb = "would keep" if dry else "kept"
    (b, exact), (n, _) = before, after
    if b is not None and n is not None:
        lost = b - n
        keys = (f"{n:,} of {b:,} keys ({lost:,} dropped)" if exact else
                f"{n:,} keys of about {b:,} entries before (about {max(lost, 0):,} dropped; the entries "
                "count overwritten and deleted keys too)")
    else:
        keys = (f"{n:,} keys" if n is not None else "the keys") + " (the damaged database could not be counted before)"
    _out(f"{verb} {keys}")
    _out(f"  tables: {r['tables_kept']} intact kept, {r['tables_merged']} merged, {r['tables_damaged']} "
         f"damaged (set aside as .sst.bad, {r['entries_salvaged']:,} entries salvaged from "
         f"{r['blocks_salvaged']} blocks; {r['blocks_lost']} blocks and {_human(r['bytes_lost'])} lost), "
         f"{r['tables']} in the new manifest")
    _out(f"  logs: {r['wals_replayed']} replayed ({r['wal_records']:,} records), {r['wals_damaged']} damaged "
         f"(set aside as .wal.bad), {r['wal_records_skipped']:,} records skipped, "
         f"{_human(r['wal_dropped_bytes'])} of damaged records dropped")


def cmd_repair(a: argparse.Namespace) -> int:
    if not os.path.isdir(a.path):
        raise pylsm.NotFoundError(2, f"no database at {a.path}")
    before = _count_keys(a.path)
    if a.dry_run:
        tmp = tempfile.mkdtemp(prefix="pylsm-repair-")
        try:
            copy = os.path.join(tmp, "db")
            shutil.copytree(a.path, copy)
            r = pylsm.repair(copy, progress=a.progress)
            _repair_report(before, _count_keys(copy), r, True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        _out(f"(dry run: {a.path} was not changed; run without --dry-run to repair it)")
        return EXIT_OK
    r = pylsm.repair(a.path, progress=a.progress)
    _repair_report(before, _count_keys(a.path), r, False)
    return EXIT_OK


def cmd_destroy(a: argparse.Namespace) -> int:
    files = _files(a.path)
    size = sum(s for _, s in files)
    if not a.yes:
        if not sys.stdin.isatty():
            raise CliError(f"destroy deletes {a.path} ({len(files)} files, {_human(size)}); "
                           "pass --yes to do it without asking")
        answer = input(f"Delete the database {a.path} ({len(files)} files, {_human(size)})? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            _out("not deleted")
            return EXIT_OK
    pylsm.destroy(a.path)
    _out(f"{a.path}: deleted")
    return EXIT_OK


def cmd_changes(a: argparse.Namespace) -> int:
    """Every write batch after --since, read-only; --follow keeps tailing the live writer."""
    import time

    with _open_ro(a.path) as db:
        pos = a.since
        while True:
            for lsn, ts, ops in db.changes(pos):
                if a.json:
                    _out(json.dumps({"lsn": lsn, "timestamp": ts,
                                     "ops": [{"op": op, **_json_field("key", k, a.format),
                                              **(_json_field("value", v, a.format) if v is not None else {})}
                                             for op, k, v in ops]}, ensure_ascii=False))
                else:
                    when = "" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) + \
                        f".{int(ts * 1e6) % 1000000:06d}  "
                    for i, (op, k, v) in enumerate(ops):
                        tail = "" if v is None else "\t" + _show(v, a.format)
                        _out(f"{lsn + i}\t{when}{op}\t{_show(k, a.format)}{tail}")
                pos = lsn + len(ops) - 1
            if not a.follow:
                return EXIT_OK
            sys.stdout.flush()
            time.sleep(a.interval)
            db.refresh()


def cmd_backup(a: argparse.Namespace) -> int:
    bid = pylsm.backup(a.path, a.dir)
    info = [b for b in pylsm.backups(a.dir) if b["id"] == bid][0]
    _out(f"backup {bid} of {a.path} in {a.dir}: LSN {info['lsn']:,}, {_human(info['bytes'])}")
    return EXIT_OK


def cmd_backups(a: argparse.Namespace) -> int:
    import time

    infos = pylsm.backups(a.path)
    if a.json:
        _out(json.dumps([{k: v for k, v in b.items() if k != "files"} for b in infos]))
        return EXIT_OK
    if not infos:
        _out(f"no backups in {a.path}")
    for b in infos:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(b["created"]))
        _out(f"{b['id']}\t{when}\tLSN {b['lsn']:,}\t{_human(b['bytes'])}\t{b.get('source', '')}")
    return EXIT_OK


def cmd_restore(a: argparse.Namespace) -> int:
    pylsm.restore(a.path, a.target, a.id)
    _out(f"{a.target}: restored from {a.path} (backup {a.id if a.id is not None else 'newest'})")
    return EXIT_OK


# ---- the parser -------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pylsm", description="Inspect and maintain pylsm databases.",
        epilog="Exit status: 0 success, 1 not found, 2 usage or database error. Inspecting commands "
               "(stats, get, scan, dump, verify) open the database read-only and write nothing.")
    p.add_argument("--version", action="version", version=f"pylsm {pylsm.__version__}")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    def command(name: str, help: str, fn: Any, formats: bool = True, json_out: bool = False,
                ranges: bool = False, path_help: str = "the database directory") -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help, description=help)
        c.set_defaults(fn=fn)
        c.add_argument("path", metavar="PATH", help=path_help)
        if formats:
            f = c.add_mutually_exclusive_group()
            f.add_argument("--hex", dest="format", action="store_const", const="hex",
                           help="keys and values are hexadecimal (given and shown)")
            f.add_argument("--base64", dest="format", action="store_const", const="base64",
                           help="keys and values are base64 (given and shown)")
            c.set_defaults(format="text")
        if json_out:
            c.add_argument("--json", action="store_true", help="print JSON instead of text")
        if ranges:
            c.add_argument("--start", help="the first key (included)")
            c.add_argument("--stop", help="the key to stop before (excluded)")
            c.add_argument("--prefix", help="only keys that begin with this")
            c.add_argument("--reverse", action="store_true", help="descending order")
            c.add_argument("--limit", type=int, help="at most this many entries")
        return c

    command("stats", "what is on disk: keys, bytes, files, levels, and whether a writer has it open",
            cmd_stats, formats=False, json_out=True)
    g = command("get", "print the value of KEY (exit status 1 if absent)", cmd_get, json_out=True)
    g.add_argument("key", metavar="KEY", help="the key")
    pu = command("put", "set KEY to VALUE (durable when the command returns)", cmd_put)
    pu.add_argument("key", metavar="KEY", help="the key")
    pu.add_argument("value", metavar="VALUE", help="the value")
    pu.add_argument("--create", action="store_true", help="create the database if it does not exist")
    d = command("delete", "remove KEY (exit status 1 if absent)", cmd_delete)
    d.add_argument("key", metavar="KEY", help="the key")
    s = command("scan", "print keys and values in key order, tab-separated", cmd_scan, json_out=True,
                ranges=True)
    s.add_argument("--keys-only", action="store_true", help="print only the keys")
    du = command("dump", "write entries as JSON lines ({\"key\", \"value\"}; non-UTF-8 bytes as "
                 "key_base64/value_base64): exact for any bytes", cmd_dump, ranges=True)
    du.add_argument("-o", "--output", help="the file to write (default: standard output)")
    lo = command("load", "read JSON lines as dump writes them and put every entry", cmd_load, formats=False)
    lo.add_argument("input", nargs="?", metavar="FILE", help="the file to read (default: standard input)")
    lo.add_argument("--create", action="store_true", help="create the database if it does not exist")
    lo.set_defaults(format="text")
    v = command("verify", "check every checksum (read-only: safe beside a running writer)", cmd_verify,
                formats=False)
    v.add_argument("--progress", action="store_true", help="show a progress bar on standard error (tqdm)")
    r = command("repair", "salvage a damaged database and report what was kept and dropped", cmd_repair,
                formats=False)
    r.add_argument("--progress", action="store_true", help="show a progress bar on standard error (tqdm)")
    r.add_argument("--dry-run", action="store_true",
                   help="repair a copy and report, leaving the database as it is")
    x = command("destroy", "delete the database directory (only the files pylsm made)", cmd_destroy,
                formats=False)
    x.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    ch = command("changes", "print every write after an LSN, from the logs (read-only; the database "
                 "keeps them with wal_retention_bytes / wal_retention_seconds)", cmd_changes, json_out=True)
    ch.add_argument("--since", type=int, default=0, help="the LSN to start after (default 0: all kept)")
    ch.add_argument("--follow", action="store_true", help="keep printing new writes until interrupted")
    ch.add_argument("--interval", type=float, default=0.5, help="seconds between looks with --follow")
    b = command("backup", "add a backup of a closed database to a backup directory (incremental)",
                cmd_backup, formats=False)
    b.add_argument("dir", metavar="DIR", help="the backup directory (created if missing)")
    command("backups", "list the backups in a backup directory", cmd_backups, formats=False, json_out=True,
            path_help="the backup directory")
    rs = command("restore", "restore a backup as a new database", cmd_restore, formats=False,
                 path_help="the backup directory")
    rs.add_argument("target", metavar="TARGET", help="the new database directory (must not exist)")
    rs.add_argument("--id", type=int, help="the backup to restore (default: the newest)")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    a = _parser().parse_args(argv)
    try:
        code: int = a.fn(a)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # The reader went away (scan | head): end quietly, and keep the interpreter's own flush at
        # exit from failing again on the closed pipe.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except (pylsm.Error, CliError, OSError, ValueError, TypeError) as e:
        print(f"pylsm: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
