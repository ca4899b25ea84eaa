"""Shared helpers of the pylsm test suite (imported by the tests and conftest.py, and run as a script by
child processes: ``python tests/lsmtest.py <command> ...``).

Contents:
  * what the other helper modules (helpers_tables.py, helpers_lifetime.py) and the tests share: child_env
    (a child's environment), say (a child's report line), wal_names, key_of (the numbered test keys);
  * an independent model of the on-disk WAL format (docs/format.md, "WAL" and "Batch"): CRC32C, varints,
    batch payloads, record sizes and bytes, so tests count records from the layout instead of trusting the
    engine;
  * child process entry points (``puts``, ``batches``, ``threads``, ``hold``, ``open``, ``reopen``,
    ``open_limited``, ``verify``, ``fill_window``, ``put_big_then_die``, ``ingest``, ``checkpoints``); the
    writers report every acknowledged write on stdout, one line per write, written with a single
    os.write() *after* the call returned;
  * the WAL "sweep" worker: reopen a database once per mutated copy of its WAL (every cut, every bit flip)
    and report what each reopen saw; the parent test spreads the variants over a few worker processes.
"""
from __future__ import annotations

import os
import pickle
import random
import shutil
import struct
import subprocess
import sys
import threading
import time
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))

# ---------------------------------------------------------------------------------------------
# The WAL format, modelled independently of the engine.

WAL_MAGIC = b"PLSMWAL1"
WAL_FILE_HEADER = 16
WAL_REC_HEADER = 16  # u64 lsn | u32 crc | u32 len
KIND_DELETE, KIND_PUT = 0, 1


def _crc32c_table() -> List[int]:
    poly = 0x82F63B78
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes, crc: int = 0) -> int:
    """The standard CRC32C (Castagnoli); crc32c(b + c) == crc32c(c, crc32c(b))."""
    c = crc ^ 0xFFFFFFFF
    t = _CRC_TABLE
    for b in data:
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode_batch(ops: Sequence[tuple]) -> bytes:
    """ops: ("put", key, value) or ("delete", key).  The WAL payload of one write."""
    out = bytearray(struct.pack("<I", len(ops)))
    for op in ops:
        if op[0] == "put":
            out.append(KIND_PUT)
            out += varint(len(op[1])) + bytes(op[1]) + varint(len(op[2])) + bytes(op[2])
        else:
            out.append(KIND_DELETE)
            out += varint(len(op[1])) + bytes(op[1])
    return bytes(out)


WAL_FLAG_TIMESTAMP, WAL_FLAG_MARKS = 1, 2
WAL_MARK_LEN = 12  # a sync mark's payload: u32 count = 0, u64 durable end offset


def file_header(timestamps: bool = False, marks: bool = True) -> bytes:
    h = WAL_MAGIC + struct.pack("<I", (WAL_FLAG_TIMESTAMP if timestamps else 0) | (WAL_FLAG_MARKS if marks else 0))
    return h + struct.pack("<I", crc32c(h))


def encode_mark(lsn: int, durable_end: int, timestamp: Optional[int] = None) -> bytes:
    """A sync mark: a record of count 0 declaring the first durable_end bytes of the file durable."""
    return encode_record(lsn, struct.pack("<IQ", 0, durable_end), timestamp)


def rec_header_size(timestamps: bool = False) -> int:
    return WAL_REC_HEADER + (8 if timestamps else 0)


def record_size(payload_len: int, timestamps: bool = False) -> int:
    return rec_header_size(timestamps) + payload_len


def encode_record(lsn: int, payload: bytes, timestamp: Optional[int] = None) -> bytes:
    """One WAL record; the CRC covers every record byte except itself."""
    head = struct.pack("<Q", lsn)
    rest = struct.pack("<I", len(payload)) + (struct.pack("<Q", timestamp) if timestamp is not None else b"") + payload
    return head + struct.pack("<I", crc32c(rest, crc32c(head))) + rest


def encode_wal(writes: Sequence[Sequence[tuple]], first_lsn: int = 1, closed: bool = True) -> Tuple[bytes, List[int]]:
    """A whole WAL file for these writes (each a list of ops); returns (bytes, record start offsets).
    closed: as a clean close leaves it, ending in a sync mark that declares every record durable."""
    out = bytearray(file_header())
    offsets = []
    lsn = first_lsn
    for ops in writes:
        offsets.append(len(out))
        out += encode_record(lsn, encode_batch(ops))
        lsn += len(ops)
    if closed and writes:
        out += encode_mark(lsn, len(out))
    return bytes(out), offsets


def parse_wal(data: bytes) -> List[dict]:
    """Parse a well-formed WAL (for tests that look at the engine's output); stops at a zero header."""
    assert data[:8] == WAL_MAGIC, data[:16]
    flags = struct.unpack_from("<I", data, 8)[0]
    ts = bool(flags & 1)
    hdr = rec_header_size(ts)
    off = WAL_FILE_HEADER
    recs = []
    while off + hdr <= len(data):
        lsn, crc, ln = struct.unpack_from("<QII", data, off)
        if lsn == 0 and crc == 0 and ln == 0:
            break
        rec = {"offset": off, "lsn": lsn, "crc": crc, "len": ln, "size": hdr + ln,
               "timestamp": struct.unpack_from("<Q", data, off + 16)[0] if ts else None,
               "payload": data[off + hdr: off + hdr + ln]}
        rec["crc_ok"] = crc == crc32c(data[off + 12: off + hdr + ln], crc32c(data[off: off + 8]))
        count = struct.unpack_from("<I", rec["payload"])[0] if ln >= 4 else None
        rec["mark"] = struct.unpack_from("<Q", rec["payload"], 4)[0] if count == 0 and ln == WAL_MARK_LEN else None
        recs.append(rec)
        off += hdr + ln
    return recs


def apply_ops(state: dict, ops: Iterable[tuple]) -> None:
    for op in ops:
        if op[0] == "put":
            state[bytes(op[1])] = bytes(op[2])
        else:
            state.pop(bytes(op[1]), None)


def find_wal(path: str) -> str:
    """The WAL holding the records: the largest non-empty NNNNNN.wal of a database directory."""
    wals = [f for f in os.listdir(path) if f.endswith(".wal") and f[:-4].isdigit()]
    wals = [f for f in wals if os.path.getsize(os.path.join(path, f)) > 0]
    assert wals, f"no non-empty WAL in {path}: {os.listdir(path)}"
    return os.path.join(path, max(wals, key=lambda f: (os.path.getsize(os.path.join(path, f)), f)))


def wal_names(path: str) -> List[str]:
    """The NNNNNN.wal files of a database directory, oldest first."""
    return sorted(f for f in os.listdir(path) if f.endswith(".wal") and f[:-4].isdigit())


def key_of(i: int, width: int = 7) -> bytes:
    """The test key numbered i: b"k" and i in `width` digits, so keys sort as their numbers."""
    return b"k%0*d" % (width, i)


# ---------------------------------------------------------------------------------------------
# Child processes.

def pylsm_pythonpath() -> str:
    import pylsm

    return os.path.dirname(os.path.dirname(os.path.abspath(pylsm.__file__)))


def child_env(extra: Optional[Dict[str, str]] = None, root: Optional[str] = None) -> Dict[str, str]:
    """The environment of a child: it imports the very pylsm build the tests import (or the one in the
    directory root), finds the test helpers, writes unbuffered and runs no kill point of the parent's."""
    env = dict(os.environ)
    env.pop("PYLSM_KILL_POINT", None)
    parts = [root or pylsm_pythonpath(), TESTS_DIR]
    if env.get("PYTHONPATH"):
        parts.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(parts)
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env


def child_argv(command: str, *args) -> List[str]:
    return [sys.executable, os.path.join(TESTS_DIR, "lsmtest.py"), command, *map(str, args)]


class AckReader(threading.Thread):
    """Reads a child's stdout line by line (so the child never blocks on a full pipe)."""

    def __init__(self, proc: subprocess.Popen):
        super().__init__(daemon=True)
        self.proc = proc
        self.lines: List[str] = []
        self.cv = threading.Condition()
        self.start()

    def run(self) -> None:
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace")
            if not line.endswith("\n"):
                break  # a torn last line cannot happen (one write per line), but never count one
            with self.cv:
                self.lines.append(line[:-1])
                self.cv.notify_all()
        with self.cv:
            self.cv.notify_all()

    def wait_for(self, pred, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cv:
            while not pred(self.lines):
                left = deadline - time.monotonic()
                if left <= 0 or (not self.is_alive() and not pred(self.lines)):
                    return pred(self.lines)
                self.cv.wait(min(left, 0.1))
            return True

    def acks(self) -> List[str]:
        with self.cv:
            return [l for l in self.lines if l not in ("ready", "done")]


def parse_sync(spec: str):
    import pylsm

    parts = spec.split(":")
    if parts[0] in ("none", "every_write"):
        return parts[0]
    if parts[0] == "n":
        return pylsm.EveryNEntries(int(parts[1]))
    if parts[0] == "t":
        return pylsm.TimeBasedBackground(int(parts[1]))
    if parts[0] == "h":
        return pylsm.Hybrid(int(parts[1]), int(parts[2]))
    raise ValueError(spec)


def put_key(i: int) -> bytes:
    return b"key%08d" % i


def put_value(i: int) -> bytes:
    return (b"val%d." % i) * (1 + i % 7)


def say(line: str) -> None:
    """One line to stdout in one os.write (a child's report to its parent: never half a line)."""
    os.write(1, (line + "\n").encode())


def child_puts(path: str, sync: str, n: str, options: str = "") -> None:
    """put key i for i in range(n), acknowledging each after put() returned."""
    import pylsm

    opts = eval(options) if options else {}  # a literal dict from the test
    db = pylsm.open(path, sync=parse_sync(sync), **opts)
    say("ready")
    for i in range(int(n)):
        db.put(put_key(i), put_value(i))
        say(str(i))
    db.close()
    say("done")


def batch_value(b: int, j: int) -> bytes:
    return b"%d:%d" % (b, j)


def child_batches(path: str, sync: str, nops: str, nbatches: str = "1000000") -> None:
    """Batch b writes keys b000000.. b{nops-1} = "b:j" and a marker; acknowledged after write() returned."""
    import pylsm

    nops_i = int(nops)
    db = pylsm.open(path, sync=parse_sync(sync))
    say("ready")
    for b in range(int(nbatches)):
        wb = pylsm.WriteBatch()
        for j in range(nops_i):
            wb.put(b"b%06d" % j, batch_value(b, j))
        wb.put(b"marker%06d" % b, b"done")
        db.write(wb)
        say(str(b))
    db.close()
    say("done")


def thread_key(t: int, i: int) -> bytes:
    return b"t%d-%08d" % (t, i)


def child_threads(path: str, sync: str, nthreads: str, per_thread: str) -> None:
    """nthreads threads each put their own keys in order; each acknowledged as "t i"."""
    import pylsm

    db = pylsm.open(path, sync=parse_sync(sync))
    lock = threading.Lock()

    def work(t: int) -> None:
        for i in range(int(per_thread)):
            db.put(thread_key(t, i), b"v%d" % i)
            with lock:
                say("%d %d" % (t, i))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(int(nthreads))]
    say("ready")
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    db.close()
    say("done")


def child_hold(path: str) -> None:
    """Open the database, say ready, and wait to be killed."""
    import pylsm

    db = pylsm.open(path)
    db[b"held"] = b"1"
    say("ready")
    time.sleep(120)
    db.close()


def child_open(path: str) -> None:
    """Try to open; print the exception class name or "opened"."""
    import pylsm

    try:
        db = pylsm.open(path)
    except pylsm.Error as e:
        say(type(e).__name__)
        return
    say("opened")
    db.close()


def child_open_limited(path: str, limit: str) -> None:
    """Open with the address space capped at `limit` bytes; print "ok <lsn>" or the pylsm error class.
    A MemoryError (or any other exception) ends the child with a traceback and a non-zero status."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (int(limit), int(limit)))
    import pylsm

    try:
        db = pylsm.open(path, memtable_bytes=4096)
    except pylsm.Error as e:
        say(type(e).__name__)
        return
    say("ok %d" % db.stats()["lsn"])
    db.close()


def child_reopen(path: str) -> None:
    """Open (recover), report the LSN, close."""
    import pylsm

    say("ready")
    db = pylsm.open(path)
    say("opened %d" % db.stats()["lsn"])
    db.close()
    say("done")


def child_verify(path: str) -> None:
    """pylsm.verify(path); print "ok" or the pylsm error class."""
    import pylsm

    try:
        pylsm.verify(path)
    except pylsm.Error as e:
        say(type(e).__name__)
        return
    say("ok")


def newest_wal(path: str) -> str:
    return os.path.join(path, wal_names(path)[-1])


def child_fill_window(path: str, room_left: str) -> None:
    """Fill the space the engine preallocated for the current WAL (it extends the file ahead of the
    writer in zero-filled chunks) until exactly `room_left` bytes are left, then kill -9 this process,
    so the WAL ends with a zero tail of `room_left` bytes.  Prints: puts, lsn, wal file, its size."""
    import signal

    import pylsm

    left = int(room_left)
    db = pylsm.open(path)
    wal = newest_wal(path)
    alloc = os.path.getsize(wal)
    target = alloc - WAL_FILE_HEADER - left
    big_v = 60000
    big = record_size(len(encode_batch([("put", b"big%05d" % 0, b"v" * big_v)])))
    written = 0
    i = 0
    while target - written > 2 * big:
        db.put(b"big%05d" % i, bytes([i % 251]) * big_v)
        written += big
        i += 1
    # the last one or two records land exactly on the target
    rest = target - written
    first = rest // 2
    for size in (first, rest - first):
        for vlen in range(size, -1, -1):
            if record_size(len(encode_batch([("put", b"last%04d" % i, b"w" * vlen)]))) == size:
                db.put(b"last%04d" % i, b"w" * vlen)
                written += size
                i += 1
                break
        else:
            raise SystemExit("cannot hit the size %d" % size)
    assert written == target
    st = db.stats()
    say("%d %d %s %d" % (i, st["lsn"], os.path.basename(wal), alloc))
    os.kill(os.getpid(), signal.SIGKILL)


def child_put_big_then_die(path: str, pattern_hex: str, size: str) -> None:
    """One put of `size` bytes of a repeated pattern (numeric data) as the first record, then kill -9."""
    import signal

    import pylsm

    db = pylsm.open(path)
    pattern = bytes.fromhex(pattern_hex)
    db.put(b"big", pattern * (int(size) // len(pattern)))
    say(os.path.basename(newest_wal(path)))
    os.kill(os.getpid(), signal.SIGKILL)


# ---------------------------------------------------------------------------------------------
# The WAL sweep: one reopen per mutated WAL.

def _mutate(data: bytes, variant: tuple) -> bytes:
    kind = variant[0]
    if kind == "cut":
        return data[: variant[1]]
    if kind == "flip":
        b = bytearray(data)
        b[variant[1]] ^= 1 << variant[2]
        return bytes(b)
    if kind == "data":
        return variant[1]
    raise ValueError(variant)


def sweep(job: dict) -> List[tuple]:
    """job: files (name -> bytes, the database directory), wal (the name of the WAL to mutate), variants,
    keys, options, expected (lsn -> tuple of values), workdir.  For each variant: the reopen's outcome,
    ("ok", lsn, matches expected[lsn], values if not, wal_dropped_bytes) or ("exc", class name, message)."""
    import pylsm

    work = job["workdir"]
    out = []
    expected = job["expected"]
    for variant in job["variants"]:
        if os.path.exists(work):
            shutil.rmtree(work)
        os.mkdir(work)
        for name, content in job["files"].items():
            if name == job["wal"]:
                content = _mutate(content, variant)
            with open(os.path.join(work, name), "wb") as f:
                f.write(content)
        try:
            db = pylsm.open(work, **job["options"])
        except Exception as e:  # noqa: BLE001 -- the parent judges the class
            out.append(("exc", type(e).__name__, str(e)))
            continue
        try:
            st = db.stats()
            values = tuple(db.get_many(job["keys"]))
            good = expected.get(st["lsn"]) == values
            out.append(("ok", st["lsn"], good, None if good else values, st["wal_dropped_bytes"]))
        finally:
            db.close()
    shutil.rmtree(work, ignore_errors=True)
    return out


def run_sweep(job: dict, workers: int = 2) -> List[tuple]:
    """Run sweep() over job["variants"] in `workers` child processes; results in variant order."""
    variants = job["variants"]
    workers = max(1, min(workers, len(variants)))
    procs = []
    for w in range(workers):
        sub = dict(job)
        sub["variants"] = variants[w::workers]
        sub["workdir"] = job["workdir"] + ".%d" % w
        p = subprocess.Popen(child_argv("sweep"), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=child_env())
        procs.append((p, pickle.dumps(sub)))
    results: List[Optional[tuple]] = [None] * len(variants)
    outs = []
    # feed and drain each child in its own thread (big pickles both ways)
    def drive(p, data, slot):
        o, e = p.communicate(data, timeout=300)
        slot.append((o, e))

    threads = []
    for p, data in procs:
        slot: list = []
        th = threading.Thread(target=drive, args=(p, data, slot))
        th.start()
        threads.append(th)
        outs.append(slot)
    for th in threads:
        th.join()
    for w, ((p, _), slot) in enumerate(zip(procs, outs)):
        o, e = slot[0]
        if p.returncode != 0:
            raise AssertionError(f"sweep worker {w} died with {p.returncode}: {e.decode(errors='replace')[-3000:]}")
        for k, r in enumerate(pickle.loads(o)):
            results[w + k * workers] = r
    return results  # type: ignore[return-value]


def ingest_key(i: int) -> bytes:
    return b"key%08d" % i


def ingest_value(i: int) -> bytes:
    return b"new%d." % i + b"x" * (i % 50)


def child_ingest(path: str, n: str, every: str = "20000", memtable_bytes: str = str(1 << 20)) -> None:
    """ingest() keys 0..n-1 (ingest_key / ingest_value) from a generator that reports "p <i>" every
    `every` pairs; "done <count>" once ingest() returned.  Tables are cut at 2 MiB (the target of a
    1 MiB memtable)."""
    import pylsm

    step = int(every)
    db = pylsm.open(path, memtable_bytes=int(memtable_bytes))
    say("ready")

    def pairs():
        for i in range(int(n)):
            if i % step == 0:
                say(f"p {i}")
            yield ingest_key(i), ingest_value(i)

    count = db.ingest(pairs())
    say(f"done {count}")
    db.close()


# ---------------------------------------------------------------------------------------------
# The power-loss workload (tests/test_powerloss.py): a seeded sequence of puts, deletes, batches and
# ingests, with flushes, compactions and reopens between them, that the child runs and the parent
# replays as a model.

POWERLOSS_KEYS = 300


def powerloss_value(i: int, size: int) -> bytes:
    head = b"op%d:" % i
    return head + b"x" * max(0, size - len(head))


def powerloss_ops(seed: int, n: int) -> List[tuple]:
    """n operations: data ones ("put", k, v), ("del", k), ("batch", [(k, v or None)...]),
    ("ingest", [(k, v)...] ascending) and control ones ("flush",), ("compact",), ("reopen",)."""
    rnd = random.Random(seed)
    ops: List[tuple] = []

    def key() -> bytes:
        return b"pk%04d" % rnd.randrange(POWERLOSS_KEYS)

    def size() -> int:
        return rnd.choice([1, 30, 100, 100, 400, 2000, 9000])

    for i in range(n):
        r = rnd.random()
        if r < 0.60:
            ops.append(("put", key(), powerloss_value(i, size())))
        elif r < 0.72:
            ops.append(("del", key()))
        elif r < 0.88:
            ops.append(("batch", [(key(), powerloss_value(i, size()) if rnd.random() < 0.8 else None)
                                  for _ in range(rnd.randint(2, 12))]))
        elif r < 0.91:
            keys = sorted({key() for _ in range(rnd.randint(1, 40))})
            ops.append(("ingest", [(k, powerloss_value(i, size())) for k in keys]))
        elif r < 0.95:
            ops.append(("flush",))
        elif r < 0.98:
            ops.append(("compact",))
        else:
            ops.append(("reopen",))
    return ops


def powerloss_apply(state: dict, op: tuple) -> List[bytes]:
    """Apply a data op to the model; returns the keys it touched (none for a control op)."""
    kind = op[0]
    if kind == "put":
        state[op[1]] = op[2]
        return [op[1]]
    if kind == "del":
        state.pop(op[1], None)
        return [op[1]]
    if kind in ("batch", "ingest"):
        for k, v in op[1]:
            if v is None:
                state.pop(k, None)
            else:
                state[k] = v
        return [k for k, _ in op[1]]
    return []


def prefix_diffs(ops: list, state: dict):
    """For k = 0, 1, ..: (k, the keys where ops[:k] and state differ, the model after ops[:k])."""
    model: dict = {}
    bad = set(state)
    yield 0, bad, model
    for i, op in enumerate(ops):
        for k in powerloss_apply(model, op):
            if model.get(k) == state.get(k):
                bad.discard(k)
            else:
                bad.add(k)
        yield i + 1, bad, model


def prefixes_matching(ops: list, state: dict) -> list:
    """Every k such that applying ops[:k] gives exactly state."""
    return [k for k, bad, _ in prefix_diffs(ops, state) if not bad]


def closest_prefix(ops: list, state: dict) -> str:
    """For a failure message: the prefix that differs from state in the fewest keys, and how."""
    best = (len(state) + 1, 0, {})
    for k, bad, model in prefix_diffs(ops, state):
        if len(bad) <= best[0]:
            diff = {key: (model.get(key, b"-")[:12], state.get(key, b"-")[:12]) for key in sorted(bad)[:6]}
            best = (len(bad), k, diff)
    return f"closest prefix: {best[1]} ops, {best[0]} keys differ (model, found): {best[2]}"


def powerloss_do(db, op: tuple) -> None:
    """Run one op of powerloss_ops on db (all but "reopen")."""
    import pylsm

    kind = op[0]
    if kind == "put":
        db.put(op[1], op[2])
    elif kind == "del":
        db.delete(op[1])
    elif kind == "batch":
        wb = pylsm.WriteBatch()
        for k, v in op[1]:
            if v is None:
                wb.delete(k)
            else:
                wb.put(k, v)
        db.write(wb)
    elif kind == "ingest":
        db.ingest(op[1])
    elif kind == "flush":
        db.flush()
    elif kind == "compact":
        db.compact()
    else:
        raise ValueError(op)


def child_powerloss(path: str, sync: str, seed: str, n: str, manifest_roll: str = "4096") -> None:
    """Run powerloss_ops(seed, n).  Says "A i" once data op i returned, and "D i" once every op before
    i is durable whatever the sync strategy (flush, compact, ingest, close returned)."""
    import pylsm

    pylsm._pylsm._test_set("manifest_roll_bytes", int(manifest_roll))
    opts = dict(sync=parse_sync(sync), memtable_bytes=64 << 10)
    db = pylsm.open(path, **opts)
    say("ready")
    for i, op in enumerate(powerloss_ops(int(seed), int(n))):
        kind = op[0]
        if kind == "reopen":
            db.close()
            say("D %d" % i)
            db = pylsm.open(path, **opts)
            continue
        powerloss_do(db, op)
        if kind in ("flush", "compact"):
            say("D %d" % i)
            continue
        if kind == "ingest":
            say("D %d" % (i + 1))
        say("A %d" % i)
    db.close()
    say("D %s" % n)
    say("done")


def child_checkpoints(path: str, out_dir: str) -> None:
    """A writer thread puts put_key(0), put_key(1), ... while the main thread makes checkpoints
    out_dir/cp0, cp1, ... one after another, saying "C <n> <lsn>" after each returned; runs until
    killed."""
    import pylsm

    db = pylsm.open(path, memtable_bytes=64 * 1024)

    def writer() -> None:
        i = 0
        while True:
            db.put(put_key(i), put_value(i))
            i += 1

    threading.Thread(target=writer, daemon=True).start()
    n = 0
    while True:
        lsn = db.checkpoint(os.path.join(out_dir, "cp%d" % n))
        say("C %d %d" % (n, lsn))
        n += 1


def main(argv: List[str]) -> None:
    cmd, args = argv[0], argv[1:]
    if cmd == "sweep":
        job = pickle.loads(sys.stdin.buffer.read())
        res = sweep(job)
        sys.stdout.buffer.write(pickle.dumps(res))
        return
    fn = {"puts": child_puts, "batches": child_batches, "threads": child_threads, "hold": child_hold,
          "open": child_open, "open_limited": child_open_limited, "reopen": child_reopen,
          "put_big_then_die": child_put_big_then_die, "verify": child_verify,
          "fill_window": child_fill_window, "ingest": child_ingest,
          "powerloss": child_powerloss, "checkpoints": child_checkpoints}[cmd]
    fn(*args)


if __name__ == "__main__":
    main(sys.argv[1:])


def dir_snapshot(path: str) -> Dict[str, Tuple[int, int, str]]:
    """Every file's name, size, mtime and SHA-256: a directory byte for byte, to show that a command
    changed nothing.  A file removed while it is listed (a live writer's old log) is left out: callers
    that wait for a directory to settle compare two snapshots."""
    import hashlib

    out = {}
    for name in sorted(os.listdir(path)):
        p = os.path.join(path, name)
        try:
            st = os.stat(p)
            with open(p, "rb") as f:
                out[name] = (st.st_size, st.st_mtime_ns, hashlib.sha256(f.read()).hexdigest())
        except FileNotFoundError:
            continue
    return out
