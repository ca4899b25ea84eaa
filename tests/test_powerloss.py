"""Power loss, judged by an oracle outside the engine: tests/powerfs.py, a FUSE filesystem that keeps
apart what was fsynced (file data after fsync/fdatasync, directory entries after a directory fsync) and
can write, at any moment, what a power cut would leave.

A child process runs a seeded workload through the mount (puts, deletes, batches, ingests, flushes,
compactions, reopens; small memtables, so tables are flushed and compacted all the time, and a small
manifest limit, so the manifest rolls over and CURRENT is replaced) and reports each operation that
returned.  Meanwhile the test takes cuts, each with the acknowledgements it had received before it asked:
- "drop": only what was made durable survives; "tear": plus a random part of what was pending, torn by
  512-byte sectors (tests/powerfs.py);
then kills the child with SIGKILL and takes the last cuts.

Each cut is opened with the default options and must:
- open without error (a torn tail is not damage, so the default open never needs salvage);
- hold exactly the state after some prefix of the operations (batches and ingests whole);
- hold every operation the sync strategy promised durable when the cut was taken: every acknowledged
  one under "every_write"; all but fewer than n records under EveryNEntries(n) and Hybrid(n, ms); those
  acknowledged more than the interval (and a scheduling margin) before the cut under
  TimeBasedBackground; under every strategy, everything before a flush(), compact(), ingest() or close()
  that returned;
- pass pylsm.verify().

Unlike the engine's own model of power loss (csrc/env.c), this oracle sees the system calls themselves,
so `make mutate` uses it to catch a removed fdatasync or fsync inside env.c as well.
"""
from __future__ import annotations

import os
import random
import signal
import struct
import subprocess
import time

import pytest

import pylsm
from lsmtest import (AckReader, child_argv, child_env, closest_prefix, find_wal, parse_wal, powerloss_ops,
                     prefixes_matching, put_key, put_value)
from powerfs_util import PowerFSMount

pytestmark = pytest.mark.engine

NOPS = 200_000  # more than a test runs: the child is killed
STRATEGIES = {
    "every_write": ("every_write", None),
    "every_n_8": ("n:8", 8),
    "hybrid_8_20": ("h:8:20", 8),
    "time_20": ("t:20", None),
    "none": ("none", None),
}
TIME_MARGIN = 2.0  # seconds: the background sync thread may be late on a loaded 2-core machine


@pytest.fixture(scope="module")
def powerfs(tmp_path_factory):
    m = PowerFSMount(str(tmp_path_factory.mktemp("powerfs")))
    yield m
    m.close()


class Cut:
    def __init__(self, out: str, mode: str, acks: list, when: float) -> None:
        self.out, self.mode, self.acks, self.when = out, mode, acks, when


def acknowledged(lines: list) -> tuple:
    """(indices of data ops acknowledged, with the time each was read; highest D mark)."""
    acked, durable = [], 0
    for when, line in lines:
        kind, _, num = line.partition(" ")
        if kind == "A":
            acked.append((int(num), when))
        elif kind == "D":
            durable = max(durable, int(num))
    return acked, durable


class TimedReader(AckReader):
    """AckReader that stamps each line with the time it was read."""

    def run(self) -> None:
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace")
            if not line.endswith("\n"):
                break
            with self.cv:
                self.lines.append((time.monotonic(), line[:-1]))
                self.cv.notify_all()
        with self.cv:
            self.cv.notify_all()

    def snapshot(self) -> list:
        with self.cv:
            return list(self.lines)


def check_cut(cut: Cut, ops: list, sync_name: str) -> None:
    spec, n = STRATEGIES[sync_name]
    acked, durable = acknowledged(cut.acks)
    path = os.path.join(cut.out, "db")
    assert os.path.isdir(path), f"{cut.mode} cut at {cut.out}: the database directory itself was lost"
    assert_current_names_a_manifest(path)
    with pylsm.open(path) as db:
        state = dict(db.items())
    ks = prefixes_matching(ops, state)
    assert ks, (f"{cut.mode} cut {cut.out}: the state is no prefix of the history "
                f"({len(state)} keys; {len(acked)} ops acknowledged, the last {acked[-1][0] if acked else None}); "
                f"{closest_prefix(ops, state)}")
    k = max(ks)
    need = durable
    if spec == "every_write" and acked:
        need = max(need, acked[-1][0] + 1)
    lost = [i for i, _ in acked if i >= k]
    if n is not None:
        records = [i for i in lost if ops[i][0] != "ingest"]
        assert len(records) < n, (f"{cut.mode} cut {cut.out}: {len(records)} acknowledged records lost "
                                  f"under {spec} (the prefix ends at op {k})")
    if spec.startswith("t:"):
        interval = int(spec.split(":")[1]) / 1000
        old = [i for i, when in acked if when < cut.when - interval - TIME_MARGIN]
        if old:
            need = max(need, old[-1] + 1)
    assert k >= need, (f"{cut.mode} cut {cut.out}: only the first {k} ops survived, but {need} were "
                       f"durable under {spec} (ops {lost[:5]}... acknowledged and lost)")
    pylsm.verify(path)


@pytest.mark.parametrize("sync_name", list(STRATEGIES))
def test_power_cuts_keep_what_was_promised(powerfs, tmp_path, sync_name):
    seed = sorted(STRATEGIES).index(sync_name) + 1
    rnd = random.Random(seed)
    ops = powerloss_ops(seed, NOPS)
    db_dir = os.path.join(powerfs.mnt, sync_name)
    spec = STRATEGIES[sync_name][0]
    # The test's own directory is made durable by the test: the engine answers for what it creates.
    os.makedirs(db_dir)
    fd = os.open(powerfs.mnt, os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(fd)
    os.close(fd)
    proc = subprocess.Popen(child_argv("powerloss", os.path.join(db_dir, "db"), spec, seed, NOPS),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env())
    reader = TimedReader(proc)
    cuts = []
    try:
        assert reader.wait_for(lambda ls: any(l == "ready" for _, l in ls), 60), proc.stderr.read()
        end, hard_end = time.monotonic() + 4.0, time.monotonic() + 60.0
        # At least 4 s and 300 acknowledged operations (a loaded machine runs the child slowly).
        while (time.monotonic() < end or len(acknowledged(reader.snapshot())[0]) < 300) and \
                time.monotonic() < hard_end and proc.poll() is None:
            time.sleep(rnd.uniform(0.05, 0.4))
            acks = reader.snapshot()
            when = time.monotonic()
            mode = rnd.choice(["drop", "tear"])
            out = str(tmp_path / f"cut{len(cuts)}")
            powerfs.cut(out, mode, rnd.randrange(1 << 30))
            cuts.append(Cut(os.path.join(out, sync_name), mode, acks, when))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        reader.join(10)
    err = proc.stderr.read().decode(errors="replace")
    assert proc.returncode == -signal.SIGKILL, err
    acks = reader.snapshot()
    for mode in ("drop", "tear", "keep"):
        out = str(tmp_path / f"cut{len(cuts)}")
        powerfs.cut(out, mode, rnd.randrange(1 << 30))
        cuts.append(Cut(os.path.join(out, sync_name), mode, acks, time.monotonic()))
    acked, durable = acknowledged(acks)
    # The child got no further than the first data op after the last one it reported.
    j = max(acked[-1][0] + 1, durable)
    while j < len(ops) and ops[j][0] not in ("put", "del", "batch", "ingest"):
        j += 1
    del ops[j + 1:]
    assert len(acked) > 200 and durable > 0, (len(acked), durable, err)
    for cut in cuts:
        check_cut(cut, ops, sync_name)


def copy_in_durably_dir(d: str) -> None:
    """fsync d and its parent: a directory the test made is durable before the engine uses it."""
    for x in (d, os.path.dirname(d)):
        fd = os.open(x, os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(fd)
        os.close(fd)


def copy_in_durably(src: str, dst: str) -> None:
    """Copy a database directory into the mount and fsync every file and directory: the starting state
    of the next test is all durable."""
    os.makedirs(dst)
    for name in sorted(os.listdir(src)):
        with open(os.path.join(src, name), "rb") as f, open(os.path.join(dst, name), "wb") as g:
            g.write(f.read())
            g.flush()
            os.fsync(g.fileno())
    for d in (dst, os.path.dirname(dst), os.path.dirname(os.path.dirname(dst))):
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(fd)
        os.close(fd)


def test_power_cut_after_recovery_cut_a_torn_tail(powerfs, tmp_path, spawn):
    """Open cuts the torn tail of the last log and starts a new log.  A power cut after that, with
    records in the new log, must not bring the torn tail back in front of them."""
    src = str(tmp_path / "src")
    child = subprocess.Popen(child_argv("puts", src, "every_write", 100_000), stdout=subprocess.PIPE,
                             env=child_env())
    reader = AckReader(child)
    assert reader.wait_for(lambda ls: len(ls) > 300, 60)
    child.kill()
    child.wait()
    reader.join(10)
    acked = [int(a) for a in reader.acks()]
    # The tail: after the last whole record, the start of a record that never finished.
    wal = find_wal(src)
    with open(wal, "rb") as f:
        data = f.read()
    last = parse_wal(data)[-1]
    end = last["offset"] + last["size"]
    with open(wal, "r+b") as f:
        f.seek(end)
        f.write(struct.pack("<QII", last["lsn"] + 1, 0x12345678, 200) + random.Random(7).randbytes(60))
    dst = os.path.join(powerfs.mnt, "torn", "db")
    os.makedirs(os.path.dirname(dst))
    copy_in_durably(src, dst)
    with pylsm.open(dst, sync="every_write") as db:
        for i in range(20):
            db.put(b"after%02d" % i, b"v%d" % i)
        out = str(tmp_path / "cut")
        powerfs.cut(out, "drop")
    assert os.path.isdir(os.path.join(out, "torn", "db"))
    with pylsm.open(os.path.join(out, "torn", "db")) as db:
        for i in acked:
            assert db.get(put_key(i)) == put_value(i), i
        for i in range(20):
            assert db.get(b"after%02d" % i) == b"v%d" % i, i


def assert_current_names_a_manifest(path: str) -> None:
    """CURRENT, where there is one, names a manifest that is there and not empty: the rule that the
    new manifest and its directory entry are durable before CURRENT is pointed at it."""
    cur = os.path.join(path, "CURRENT")
    if not os.path.exists(cur):
        return
    with open(cur, "rb") as f:
        name = f.read().decode().strip()
    assert name.startswith("MANIFEST-"), (path, name)
    target = os.path.join(path, name)
    assert os.path.exists(target) and os.path.getsize(target) > 0, f"{path}: CURRENT names {name}, not there"


def damaged_db(path: str) -> None:
    """Two tables (one with a damaged block) and records in the log: what repair() is for."""
    with pylsm.open(path) as db:
        db.update((b"k%06d" % i, b"v" * 100) for i in range(20_000))
        db.flush()
        db.update((b"m%06d" % i, b"w" * 50) for i in range(2_000))
        db.flush()
        db.update((b"n%06d" % i, b"x" * 20) for i in range(500))
    sst = sorted(n for n in os.listdir(path) if n.endswith(".sst"))[0]
    with open(os.path.join(path, sst), "r+b") as f:
        f.seek(5000)
        b = f.read(1)
        f.seek(5000)
        f.write(bytes([b[0] ^ 0xFF]))


def test_power_cut_during_and_after_repair(powerfs, tmp_path):
    """repair() run again after a power cut at any of its syncs gives what the whole repair gives, and
    what a repair that returned did (the files it removed included) survives a power cut."""
    src = str(tmp_path / "src")
    damaged_db(src)
    dst = os.path.join(powerfs.mnt, "repair", "db")
    os.makedirs(os.path.dirname(dst))
    copy_in_durably(src, dst)
    powerfs.capture(str(tmp_path / "during"), files=True, seed=5)
    try:
        report = pylsm.repair(dst)
    finally:
        cuts = powerfs.stop_capture()
    assert report["tables_damaged"] == 1 and report["blocks_lost"] == 1, report
    with pylsm.open(dst, read_only=True) as db:
        repaired = dict(db.items())
    assert 19_000 < len(repaired) < 22_500
    live = sorted(os.listdir(dst))
    out = str(tmp_path / "after")
    powerfs.cut(out, "drop")
    assert sorted(os.listdir(os.path.join(out, "repair", "db"))) == live, "repair's deletions are not durable"
    with pylsm.open(os.path.join(out, "repair", "db")) as db:
        assert dict(db.items()) == repaired
    assert len(cuts) >= 6, cuts
    for cut in cuts:
        path = os.path.join(cut, "repair", "db")
        assert_current_names_a_manifest(path)
        pylsm.repair(path)
        with pylsm.open(path) as db:
            got = dict(db.items())
        assert got == repaired, (cut, len(got), len(repaired))


def test_power_cut_after_a_failed_repair(powerfs, tmp_path, faults):
    """A repair that fails (here the replacement of CURRENT) puts back what it moved and removes what
    it wrote, durably: after a power cut the directory is as the repair found it."""
    src = str(tmp_path / "src")
    damaged_db(src)
    dst = os.path.join(powerfs.mnt, "failed", "db")
    os.makedirs(os.path.dirname(dst))
    copy_in_durably(src, dst)
    before = sorted(os.listdir(dst))
    faults("rename", 2, 5)  # the damaged table moved aside, then CURRENT's rename fails
    with pytest.raises(pylsm.StorageError):
        pylsm.repair(dst)
    faults("rename", 1 << 40, 5)  # off
    assert sorted(os.listdir(dst)) == before
    out = str(tmp_path / "cut")
    powerfs.cut(out, "drop")
    assert sorted(os.listdir(os.path.join(out, "failed", "db"))) == before


@pytest.mark.parametrize("sync", ["every_write", "none"])
def test_power_cut_before_every_directory_sync(powerfs, tmp_path, sync):
    """A workload run here, with a power cut taken just before each directory fsync it makes (new logs,
    tables and manifests, CURRENT replaced, at opens, flushes, compactions, ingests and manifest
    rollovers), in three forms: durable state only, torn, and the worst directory order.  Each cut
    opens, names an existing manifest, and holds a prefix with every op the strategy made durable
    before the op in progress."""
    from pylsm import _pylsm
    from lsmtest import powerloss_do

    ops = powerloss_ops(9, 120)
    path = os.path.join(powerfs.mnt, "every-" + sync, "db")
    os.makedirs(os.path.dirname(path))
    copy_in_durably_dir(os.path.dirname(path))
    opts = dict(sync=sync, memtable_bytes=16 << 10)
    _pylsm._test_set("manifest_roll_bytes", 2048)
    spans = []  # (first cut, end cut, op index, ops durable before it)
    durable = 0
    powerfs.capture(str(tmp_path / "cuts"), seed=3)
    try:
        start = powerfs.captured()
        db = pylsm.open(path, **opts)
        spans.append((start, powerfs.captured(), -1, 0))
        for i, op in enumerate(ops):
            start = powerfs.captured()
            if op[0] == "reopen":
                db.close()
                db = pylsm.open(path, **opts)
            else:
                powerloss_do(db, op)
            spans.append((start, powerfs.captured(), i, durable))
            if sync == "every_write" or op[0] in ("reopen", "flush", "compact", "ingest"):
                durable = i + 1
        db.close()
    finally:
        _pylsm._test_set("manifest_roll_bytes", 64 << 20)
        cuts = powerfs.stop_capture()
    assert len(cuts) > 60, len(cuts)
    for first, end, i, need in spans:
        for cut in cuts[first:end]:
            where = os.path.join(cut, "every-" + sync, "db")
            if i < 0 and not os.path.isdir(where):
                continue  # a cut inside the first open, before it made the directory durable
            assert os.path.isdir(where), cut
            assert_current_names_a_manifest(where)
            with pylsm.open(where) as db:
                state = dict(db.items())
            ks = [k for k in prefixes_matching(ops[:i + 1], state) if k >= need]
            assert ks, f"{cut} (during op {i} {ops[i][0]}): {closest_prefix(ops[:i + 1], state)}; {need} durable"


def test_damage_in_a_closed_log_after_a_power_cut_is_reported(powerfs, tmp_path):
    """close() ends the log with a durable mark saying every record is durable.  After a power cut,
    damage in the last record is then corruption (reported), never taken for a torn tail (which
    would drop records that were made durable, in silence)."""
    path = os.path.join(powerfs.mnt, "closed", "db")
    os.makedirs(os.path.dirname(path))
    copy_in_durably_dir(os.path.dirname(path))
    db = pylsm.open(path, sync="none")
    for i in range(200):
        db.put(put_key(i), put_value(i))
    db.close()
    out = str(tmp_path / "cut")
    powerfs.cut(out, "drop")
    where = os.path.join(out, "closed", "db")
    with pylsm.open(where, read_only=True) as db:
        assert len(db) == 200
    wal = find_wal(where)
    with open(wal, "rb") as f:
        recs = parse_wal(f.read())
    last = [r for r in recs if r["mark"] is None][-1]
    with open(wal, "r+b") as f:
        f.seek(last["offset"] + last["size"] - 3)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x55]))
    with pytest.raises(pylsm.CorruptionError):
        pylsm.open(where).close()


def test_power_cut_before_a_new_logs_first_sync(powerfs, tmp_path):
    """Records written to a new log before its first fsync may reach the disk before its header does.
    The header is made durable when the log is created, so a cut that keeps such records (here: all
    that was written, none of it synced since the open) opens without error and loses nothing that was
    promised."""
    path = os.path.join(powerfs.mnt, "newlog", "db")
    os.makedirs(os.path.dirname(path))
    copy_in_durably_dir(os.path.dirname(path))
    db = pylsm.open(path, sync=pylsm.EveryNEntries(1000))
    for i in range(5):
        db.put(put_key(i), put_value(i))
    for mode, seed in [("keep", 0), ("tear", 1), ("tear", 2)]:
        out = str(tmp_path / f"cut-{mode}-{seed}")
        powerfs.cut(out, mode, seed)
        with pylsm.open(os.path.join(out, "newlog", "db")) as got:
            state = dict(got.items())
        assert all(state.get(put_key(i)) == put_value(i) for i in range(len(state))), state
        if mode == "keep":
            assert len(state) == 5
    db.close()
