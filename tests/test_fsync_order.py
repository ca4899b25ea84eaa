"""The order of fsyncs, audited from the system calls themselves (strace), against the durability rules
of docs/durability.md:

1. A new database directory is made durable (its parent fsynced) before CURRENT is first put in place.
2. A new table is fdatasynced, and its directory fsynced after its creation, before the manifest record
   that names it is written.
3. A new manifest is fdatasynced, and its directory fsynced after its creation, before CURRENT is
   pointed at it.
4. CURRENT is replaced by write temp -> fdatasync(temp) -> rename -> fsync(directory), and that
   directory fsync comes before any file of the directory is deleted.
5. A new log's header is fdatasynced before a record is written to it (seen where records are written
   with pwrite), and its directory fsynced after its creation before a record in it is made durable
   (the log's second fdatasync).

The workload runs in a child under strace: a new database, puts with memtable switches and flushes, a
manual flush and compaction, manifest rollovers, an ingest, a reopen, a repair; under sync="none" and
sync="every_write".  Each rule is also checked to have been exercised.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from lsmtest import child_env

pytestmark = pytest.mark.engine

WORKLOAD = r"""
import sys
import pylsm
from pylsm import _pylsm
path, sync = sys.argv[1], sys.argv[2]
_pylsm._test_set("manifest_roll_bytes", 2048)
db = pylsm.open(path, sync=sync, memtable_bytes=64 << 10)
for i in range(1500):
    db.put(b"k%06d" % i, b"v" * 100)
db.flush()
db.compact()
db.ingest([(b"z%06d" % i, b"w") for i in range(100)])
for i in range(300):
    db.delete(b"k%06d" % i)
db.close()
db = pylsm.open(path, sync=sync)
db.put(b"after", b"reopen")
db.close()
pylsm.repair(path)
"""

LINE = re.compile(r"^(\d+)\s+(?:<\.\.\. (\w+) resumed>(.*)|(\w+)\((.*))$")
RESULT = re.compile(r"=\s+(-?\d+|\?)(?:\s+\w+.*)?$")
STR = re.compile(r'"((?:[^"\\]|\\.)*)"')


def trace(tmp_path, sync):
    assert shutil.which("strace"), "strace is missing: make deps installs it"
    base = str(tmp_path / "parent")
    os.makedirs(base)
    db = os.path.join(base, "db")
    out = str(tmp_path / "trace.txt")
    script = str(tmp_path / "workload.py")
    with open(script, "w") as f:
        f.write(WORKLOAD)
    calls = "openat,open,mkdir,rename,renameat,renameat2,unlink,unlinkat,fsync,fdatasync,write,pwrite64,close"
    r = subprocess.run(["strace", "-f", "-qq", "-s", "256", "-e", "trace=" + calls, "-o", out,
                        sys.executable, script, db, sync], env=child_env(), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return db, parse(out)


def parse(path):
    """Events in the order they took effect: (call, args text, result).  A call split by another
    thread's ("<unfinished ...>" / "<... resumed>") counts when it returned."""
    events, pending = [], {}
    with open(path) as f:
        for raw in f:
            m = LINE.match(raw.rstrip("\n"))
            if not m:
                continue
            tid = m.group(1)
            if m.group(2):  # resumed
                call = m.group(2)
                args = pending.pop((tid, call), "") + m.group(3)
            else:
                call, args = m.group(4), m.group(5)
                if args.endswith("<unfinished ...>"):
                    pending[(tid, call)] = args[: -len("<unfinished ...>")]
                    continue
            rm = RESULT.search(args)
            ret = int(rm.group(1)) if rm and rm.group(1) != "?" else None
            events.append((call, args, ret))
    return events


class Audit:
    def __init__(self, db, events):
        self.db = db
        self.parent = os.path.dirname(db)
        self.events = events
        self.violations = []
        self.exercised = {k: 0 for k in range(1, 6)}

    def fail(self, rule, what):
        self.violations.append(f"rule {rule}: {what}")

    def run(self):
        fds = {}  # fd -> path
        created = {}  # path -> {"dir_synced": bool, "synced": count, "kind"}
        mkdir_db = False
        parent_synced = False
        current_unsynced = False  # CURRENT renamed, directory not fsynced since
        tmp_synced = False
        for call, args, ret in self.events:
            strs = STR.findall(args)
            if call in ("openat", "open") and ret is not None and ret >= 0:
                p = strs[0] if strs else ""
                fds[ret] = p
                if "O_CREAT" in args and os.path.dirname(p) == self.db:
                    name = os.path.basename(p)
                    kind = ("sst" if name.endswith(".sst") else "wal" if name.endswith(".wal") else
                            "manifest" if name.startswith("MANIFEST-") else
                            "tmp" if name == "CURRENT.tmp" else None)
                    if kind:
                        created[p] = {"dir_synced": False, "synced": 0, "kind": kind}
                    if kind == "tmp":
                        tmp_synced = False
            elif call == "close" and ret == 0:
                m = re.match(r"(\d+)", args)
                if m:
                    fds.pop(int(m.group(1)), None)
            elif call == "mkdir" and strs and strs[0] == self.db and ret == 0:
                mkdir_db = True
            elif call in ("fsync", "fdatasync") and ret == 0:
                fd = int(re.match(r"(\d+)", args).group(1))
                p = fds.get(fd, "")
                if p == self.db:
                    for c in created.values():
                        c["dir_synced"] = True
                    current_unsynced = False
                elif p == self.parent:
                    parent_synced = True
                elif p in created:
                    created[p]["synced"] += 1
                    if created[p]["kind"] == "tmp":
                        tmp_synced = True
                    if created[p]["kind"] == "wal" and created[p]["synced"] == 2:
                        self.exercised[5] += 1
                        if not created[p]["dir_synced"]:
                            self.fail(5, f"{p}: a record made durable before its directory entry")
            elif call in ("write", "pwrite64") and ret is not None and ret > 0:
                fd = int(re.match(r"(\d+)", args).group(1))
                p = fds.get(fd, "")
                if p in created:
                    created[p]["written"] = True
                    if created[p]["kind"] == "wal" and not created[p]["synced"]:
                        self.fail(5, f"{p}: a record written before the log's header was made durable")
                if os.path.basename(p).startswith("MANIFEST-") and os.path.dirname(p) == self.db:
                    # a manifest record: every table written and closed so far must be durable
                    for q, c in created.items():
                        if c["kind"] == "sst" and c.get("written") and not c.get("checked") and \
                                q not in fds.values():
                            c["checked"] = True
                            self.exercised[2] += 1
                            if not c["synced"]:
                                self.fail(2, f"{q} named by a manifest record before its fdatasync")
                            if not c["dir_synced"]:
                                self.fail(2, f"{q} named by a manifest record before its directory fsync")
            elif call == "rename" and ret == 0 and len(strs) == 2 and strs[1] == os.path.join(self.db, "CURRENT"):
                self.exercised[4] += 1
                if not tmp_synced:
                    self.fail(4, "CURRENT.tmp renamed before its fdatasync")
                if mkdir_db:
                    self.exercised[1] += 1
                    if not parent_synced:
                        self.fail(1, "CURRENT put in a new database whose directory is not yet durable")
                    mkdir_db = False
                # rule 3: the newest manifest is durable, entry included
                mans = [q for q, c in created.items() if c["kind"] == "manifest" and not c.get("named")]
                for q in mans:
                    c = created[q]
                    c["named"] = True
                    self.exercised[3] += 1
                    if not c["synced"]:
                        self.fail(3, f"CURRENT pointed at {q} before its fdatasync")
                    if not c["dir_synced"]:
                        self.fail(3, f"CURRENT pointed at {q} before its directory fsync")
                created.pop(strs[0], None)
                current_unsynced = True
            elif call == "unlink" and ret == 0 and strs and os.path.dirname(strs[0]) == self.db:
                if current_unsynced:
                    self.fail(4, f"{strs[0]} deleted before the directory fsync after CURRENT's rename")
        return self


@pytest.mark.parametrize("sync", ["none", "every_write"])
def test_fsync_order_follows_the_rules(tmp_path, sync):
    db, events = trace(tmp_path, sync)
    assert len(events) > 200, len(events)
    audit = Audit(db, events).run()
    assert not audit.violations, "\n".join(audit.violations[:20])
    for rule, n in audit.exercised.items():
        assert n > 0, f"rule {rule} was never exercised: {audit.exercised}"


WRITEBACK = r"""
import os, sys
import pylsm
db = pylsm.open(sys.argv[1], memtable_bytes=16 << 20)
v = os.urandom(100)
for i in range(80_000):  # about 10 MiB of table
    db.put(b"k%08d" % i, v)
db.flush()
db.compact()  # rewrites the table into the last level
db.close()
"""
PIECE = 2 << 20  # TABLE_WRITE_BUFFER


def test_a_table_is_written_in_aligned_pieces_and_written_back_as_it_is_built(tmp_path):
    """A table of the last level is written in pieces of 2 MiB, each at a multiple of 2 MiB (the page
    cache then holds it in 2 MiB folios, which readers map as huge pages); a flushed table in pieces of
    64 KiB.  A table's writeback is started every 1 MiB or more as it is written (sync_file_range with
    SYNC_FILE_RANGE_WRITE, over ranges that follow on), so its closing fdatasync waits for little; the
    fdatasync still comes last and is what makes it durable."""
    db = str(tmp_path / "db")
    out, script = str(tmp_path / "trace.txt"), str(tmp_path / "w.py")
    with open(script, "w") as f:
        f.write(WRITEBACK)
    r = subprocess.run(["strace", "-f", "-qq", "-s", "0", "-e",
                        "trace=openat,write,pwrite64,sync_file_range,fdatasync,close", "-o", out,
                        sys.executable, script, db], env=child_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    fds, ranges, synced, writes = {}, {}, {}, {}
    for call, args, ret in parse(out):
        if call == "openat" and ret is not None and ret >= 0:
            fds[ret] = STR.findall(args)[0]
            continue
        fd = re.match(r"(\d+)", args)
        p = fds.get(int(fd.group(1)), "") if fd else ""
        if not p.endswith(".sst"):
            continue
        if call == "close":
            fds = {k: v for k, v in fds.items() if v != p}
        elif call in ("write", "pwrite64") and ret is not None:
            assert call == "write", f"a table written out of order: {args}"
            writes.setdefault(p, []).append(ret)
        elif call in ("sync_file_range", "fdatasync") and ret == 0:
            if call == "fdatasync":
                synced[p] = True
                continue
            assert not synced.get(p), f"writeback of {p} started after its fdatasync"
            assert "SYNC_FILE_RANGE_WRITE" in args and "WAIT" not in args, args
            off, n = (int(x) for x in re.findall(r"\b\d+\b", args)[1:3])
            ranges.setdefault(p, []).append((off, n))
    assert len(writes) == 2 and ranges, "expected a flushed and a compacted table, with their writeback started"
    (flushed, fw), (compacted, cw) = sorted(writes.items())
    assert len(cw) >= 5 and all(n == PIECE for n in cw[:-1]) and 0 < cw[-1] <= PIECE, cw
    assert len(fw) >= 100 and all(n == 64 << 10 for n in fw[:-1]), fw[:10]
    for p, rs in ranges.items():
        assert synced.get(p), f"{p} was never fdatasynced"
        assert rs[0][0] == 0 and all(a + n == b for (a, n), (b, _) in zip(rs, rs[1:])), rs
        assert all(n >= 1 << 20 for _, n in rs), rs
        assert len(rs) >= 4, rs
