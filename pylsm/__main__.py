"""Command line: ``python -m pylsm <command> PATH ...`` (also installed as ``pylsm``).

Commands:
  stats PATH                    print the statistics of a database
  verify PATH                   check every checksum of a closed database
  repair PATH                   salvage a damaged database
  get PATH KEY                  print the value of KEY
  scan PATH [--prefix P] [--start S] [--stop E] [--reverse] [--limit N]
                                print keys and values in order
  destroy PATH                  delete a database directory (only the files pylsm made)

Keys and values are given and shown as Python bytes literals' contents (backslash escapes), so
binary data round-trips: ``pylsm get data/db 'user:\\x00'``.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional

import pylsm


def _arg_bytes(s: str) -> bytes:
    return s.encode("latin-1").decode("unicode_escape").encode("latin-1")


def _show(b: bytes) -> str:
    return repr(b)[2:-1]


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="pylsm", description="Inspect and maintain pylsm databases.")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("stats", "verify", "repair", "destroy"):
        sub.add_parser(name).add_argument("path")
    g = sub.add_parser("get")
    g.add_argument("path")
    g.add_argument("key")
    s = sub.add_parser("scan")
    s.add_argument("path")
    s.add_argument("--prefix")
    s.add_argument("--start")
    s.add_argument("--stop")
    s.add_argument("--reverse", action="store_true")
    s.add_argument("--limit", type=int, default=None)
    a = p.parse_args(argv)
    try:
        if a.cmd == "verify":
            pylsm.verify(a.path)
            print(f"{a.path}: every checksum is intact")
        elif a.cmd == "repair":
            pylsm.repair(a.path)
            print(f"{a.path}: repaired")
        elif a.cmd == "destroy":
            pylsm.destroy(a.path)
        elif a.cmd == "stats":
            with pylsm.open(a.path, create_if_missing=False) as db:
                print(json.dumps(db.stats(), indent=2))
        elif a.cmd == "get":
            with pylsm.open(a.path, create_if_missing=False) as db:
                v = db.get(_arg_bytes(a.key))
                if v is None:
                    print("(absent)", file=sys.stderr)
                    return 1
                print(_show(v))
        elif a.cmd == "scan":
            def opt(x: Optional[str]) -> Optional[bytes]:
                return None if x is None else _arg_bytes(x)

            with pylsm.open(a.path, create_if_missing=False) as db:
                it = db.items(opt(a.start), opt(a.stop), prefix=opt(a.prefix), reverse=a.reverse)
                for n, (k, v) in enumerate(it):
                    if a.limit is not None and n >= a.limit:
                        break
                    print(f"{_show(k)}\t{_show(v)}")
    except pylsm.Error as e:
        print(f"pylsm: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
