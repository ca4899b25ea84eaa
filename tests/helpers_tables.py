"""Helpers of the table, compaction, iterator and lifetime tests (test_tables.py, test_compaction.py,
test_iter.py, test_lifetime.py).  Imported by those tests, and run as a script by their child processes:
``python tests/helpers_tables.py <command> <json>``.

Contents:
  * an independent reader of the SSTable layout (docs/format.md, "SSTable"): footer, block entries, index
    handles, so corruption tests aim at a data block, the index, the filter or the footer by offset;
  * a deterministic workload ("op j" of a spec) with a dict model of the state after the first m ops;
    every write is one atomic batch that also sets SEQ_KEY to j, so the state after a crash names its
    own history length and can be compared with the model exactly;
  * the child writer (``writer``) that performs the workload, acknowledging op j on stdout (one
    os.write per line, after write() returned), optionally reopening the database every N ops or
    running db.compact() in a loop on a second thread;
  * ChildWriter: start such a child, collect its acknowledgements, kill it, clean up;
  * small utilities: directory listings, open fd counts, value formats for concurrent readers.
"""
from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional, Tuple

from lsmtest import child_env, key_of, say

SEQ_KEY = b"~seq"

# ---------------------------------------------------------------------------------------------
# The SSTable layout (docs/format.md, "SSTable"), modelled independently of the engine.

FOOTER_SIZE = 48
TRAILER_SIZE = 5
TABLE_MAGIC = 0x504C534D54424C31


def get_varint(data: bytes, pos: int) -> Tuple[int, int]:
    """Decode an unsigned LEB128 varint at pos; returns (value, next position)."""
    shift = 0
    result = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def parse_footer(data: bytes) -> Dict[str, int]:
    """The footer of a whole table file's bytes."""
    assert len(data) >= FOOTER_SIZE, len(data)
    foot = len(data) - FOOTER_SIZE
    filt_off, filt_size, idx_off, idx_size, version, crc, magic = struct.unpack_from("<QQQQIIQ", data, foot)
    assert magic == TABLE_MAGIC, hex(magic)
    assert version in (1, 2), version
    return {"footer_offset": foot, "filter_offset": filt_off, "filter_size": filt_size,
            "index_offset": idx_off, "index_size": idx_size, "version": version}


M32 = 0xFFFFFFFF


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & M32


def _fmix32(x: int) -> int:
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & M32
    x ^= x >> 13
    x = (x * 0xC2B2AE35) & M32
    return x ^ (x >> 16)


def bloom_hash(key: bytes) -> int:
    """The filter hash, from the format document."""
    c1, c2 = 0xCC9E2D51, 0x1B873593
    h = 0xBC9F1D34 ^ (len(key) & M32)
    whole = len(key) // 4 * 4
    for i in range(0, whole, 4):
        w = int.from_bytes(key[i:i + 4], "little")
        w = (_rotl((w * c1) & M32, 15) * c2) & M32
        h = (_rotl(h ^ w, 13) * 5 + 0xE6546B64) & M32
    if len(key) > whole:
        t = int.from_bytes(key[whole:], "little")
        h ^= (_rotl((t * c1) & M32, 15) * c2) & M32
    return _fmix32(h)


def block_parts(block: bytes) -> Dict[str, object]:
    """A block's restart offsets, its hash slots ((fingerprint, region) pairs, or None) and the end of its
    entries, from the format document."""
    (last,) = struct.unpack_from("<I", block, len(block) - 4)
    tail = len(block) - 4
    slots = None
    if last & 0x80000000:
        last &= 0x7FFFFFFF
        (m,) = struct.unpack_from("<H", block, tail - 2)
        tail -= 2 + 2 * m
        slots = [(block[tail + 2 * i], block[tail + 2 * i + 1]) for i in range(m)]
    end = tail - 4 * last
    restarts = list(struct.unpack_from("<%dI" % last, block, end))
    return {"restarts": restarts, "slots": slots, "end": end}


def hash_lookup_region(slots: List[Tuple[int, int]], ukey: bytes) -> List[int]:
    """The regions a point lookup of ukey visits through the hash index, in order ([] when the walk
    ends at a free slot at once)."""
    h = bloom_hash(ukey)
    x = (h * 0x9E3779B1) & M32
    i = ((x ^ (x >> 15)) * len(slots)) >> 32
    fp = ((h * 0x85EBCA6B) & M32) >> 24
    out = []
    for _ in range(len(slots)):
        f, region = slots[i]
        if region == 255:
            break
        if f == fp:
            out.append(region)
        i = (i + 1) % len(slots)
    return out


def parse_block(block: bytes) -> List[Tuple[bytes, bytes]]:
    """The (key, value) entries of a data or index block (without its trailer)."""
    end = block_parts(block)["end"]
    pos = 0
    prev = b""
    out = []
    while pos < end:
        shared, pos = get_varint(block, pos)
        non_shared, pos = get_varint(block, pos)
        vlen, pos = get_varint(block, pos)
        key = prev[:shared] + block[pos:pos + non_shared]
        pos += non_shared
        value = block[pos:pos + vlen]
        pos += vlen
        out.append((key, value))
        prev = key
    return out


def table_layout(data: bytes) -> Dict[str, object]:
    """Footer fields plus the data blocks: a list of dicts with offset, size and the user keys they hold."""
    f = parse_footer(data)
    index = data[f["index_offset"]: f["index_offset"] + f["index_size"]]
    blocks = []
    for _key, handle in parse_block(index):
        off, p = get_varint(handle, 0)
        size, p = get_varint(handle, p)
        assert p == len(handle)
        entries = parse_block(data[off: off + size])
        blocks.append({"offset": off, "size": size, "user_keys": [k[:-8] for k, _ in entries]})
    layout = dict(f)
    layout["data_blocks"] = blocks
    return layout


# ---------------------------------------------------------------------------------------------
# Directory helpers.

def sst_files(path: str) -> List[str]:
    return sorted(n for n in os.listdir(path) if n.endswith(".sst") and n[:-4].isdigit())


def dir_bytes(path: str, suffix: Optional[str] = None) -> int:
    """Apparent size of the files of a directory (a file deleted meanwhile, e.g. by a background
    compaction, counts as gone)."""
    total = 0
    for n in os.listdir(path):
        if suffix is None or n.endswith(suffix):
            try:
                total += os.stat(os.path.join(path, n)).st_size
            except FileNotFoundError:
                pass
    return total


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def level_files(stats: dict, level: int) -> int:
    for lv in stats["levels"]:
        if lv["level"] == level:
            return lv["files"]
    raise AssertionError(f"no level {level} in {stats['levels']}")


# ---------------------------------------------------------------------------------------------
# Values that say what they are: readers check a value is exactly the one some round wrote.

def round_value(r: int, i: int, size: int = 100) -> bytes:
    head = b"r%d.k%d." % (r, i)
    return (head * (size // len(head) + 1))[:size] if size >= len(head) else head


def parse_round_value(v: bytes, i: int, size: int = 100) -> int:
    """The round r for which v == round_value(r, i, size); raises AssertionError for anything else."""
    assert v.startswith(b"r"), v[:40]
    r = int(v[1: v.index(b".")])
    assert v == round_value(r, i, size), (i, r, v[:60])
    return r


# ---------------------------------------------------------------------------------------------
# The deterministic workload and its model.

def op_for(j: int, spec: dict) -> tuple:
    """Op j: round j // keys writes key j % keys; every delete_every-th op deletes the key instead."""
    k = spec["keys"]
    i = j % k
    d = spec.get("delete_every", 0)
    if d and j % d == d - 1:
        return ("del", key_of(i))
    return ("put", key_of(i), round_value(j // k, i, spec.get("vsize", 100)))


class Model:
    """The state after the first m ops of a spec (advance only; fast for long histories)."""

    def __init__(self, spec: dict):
        self.spec = spec
        self.m = 0
        self.state: Dict[bytes, bytes] = {}

    def advance(self, m: int) -> Dict[bytes, bytes]:
        assert m >= self.m, (m, self.m)
        st = self.state
        for j in range(self.m, m):
            op = op_for(j, self.spec)
            if op[0] == "put":
                st[op[1]] = op[2]
            else:
                st.pop(op[1], None)
        self.m = m
        return st

    def expected(self, m: int) -> Dict[bytes, bytes]:
        st = dict(self.advance(m))
        if m > 0:
            st[SEQ_KEY] = b"%d" % (m - 1)
        return st


def history_length(state: Dict[bytes, bytes]) -> int:
    """m, the number of ops applied, from a database state of this workload."""
    s = state.get(SEQ_KEY)
    return 0 if s is None else int(s) + 1


def db_state(db) -> Dict[bytes, bytes]:
    return dict(db.items())


def describe_diff(got: Dict[bytes, bytes], want: Dict[bytes, bytes], limit: int = 5) -> str:
    missing = [k for k in want if k not in got][:limit]
    extra = [k for k in got if k not in want][:limit]
    wrong = [(k, got[k][:40], want[k][:40]) for k in want if k in got and got[k] != want[k]][:limit]
    return f"missing {missing} extra {extra} wrong {wrong} (sizes {len(got)} vs {len(want)})"


# ---------------------------------------------------------------------------------------------
# The child writer.

def _open(spec: dict):
    import pylsm

    for name, value in spec.get("test_knobs", {}).items():  # engine constants (pl_test_set)
        pylsm._pylsm._test_set(name, value)
    return pylsm.open(spec["path"], sync=spec.get("sync", "none"),
                      memtable_bytes=spec.get("memtable_bytes", 64 * 1024),
                      block_bytes=spec.get("block_bytes", 4096),
                      background_compaction=spec.get("background_compaction", True))


def child_writer(spec: dict) -> None:
    import pylsm

    db = _open(spec)
    start = history_length({SEQ_KEY: db.get(SEQ_KEY)} if db.get(SEQ_KEY) is not None else {})
    assert start == spec.get("start", start), (start, spec.get("start"))
    stop = threading.Event()
    compactor = None
    compactions = [0]
    if spec.get("compact_loop"):
        pause = spec.get("compact_pause", 0.01)

        def compact_loop():
            while not stop.is_set():
                try:
                    db.compact()
                    compactions[0] += 1
                except pylsm.ClosedError:
                    return
                time.sleep(pause)

        compactor = threading.Thread(target=compact_loop, daemon=True)
        compactor.start()
    say("ready %d" % start)
    reopen = spec.get("reopen_every", 0)
    for j in range(start, start + spec["total"]):
        op = op_for(j, spec)
        b = pylsm.WriteBatch()
        if op[0] == "put":
            b.put(op[1], op[2])
        else:
            b.delete(op[1])
        b.put(SEQ_KEY, b"%d" % j)
        db.write(b)
        say(str(j))
        if reopen and (j + 1) % reopen == 0:
            db.close()
            db = _open(spec)
    stop.set()
    if compactor:
        compactor.join()
    db.close()
    say("done %d" % compactions[0])


def child_flush_then_hold(spec: dict) -> None:
    """Put spec["n"] keys (sync="none", a memtable far larger than they are), flush() if spec["flush"],
    say "flushed", then wait to be killed."""
    import pylsm

    db = pylsm.open(spec["path"], sync="none", memtable_bytes=64 << 20)
    for i in range(spec["n"]):
        db.put(key_of(i), round_value(0, i))
    if spec["flush"]:
        db.flush()
    say("flushed %d" % db.stats()["flushes"])
    time.sleep(120)


def child_main(argv: List[str]) -> None:
    cmd, arg = argv[0], argv[1]
    spec = json.loads(arg)
    {"writer": child_writer, "flush_then_hold": child_flush_then_hold}[cmd](spec)


class ChildWriter:
    """A child running child_writer(spec); collects "ready", every acknowledged op j, and "done".

    Use as a context manager: the child is killed (by its own pid) on exit if still running."""

    def __init__(self, spec: dict, env: Optional[Dict[str, str]] = None, command: str = "writer"):
        self.spec = spec
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), command, json.dumps(spec)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env(env))
        self.last_ack: Optional[int] = None
        self.ready = threading.Event()
        self.finished = False
        self.start_m: Optional[int] = None
        self.acks = 0
        self.messages: List[str] = []
        self._stderr = b""
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()
        self._e = threading.Thread(target=self._read_err, daemon=True)
        self._e.start()

    def _read(self) -> None:
        pending = b""
        while True:
            chunk = os.read(self.proc.stdout.fileno(), 1 << 16)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.startswith(b"ready"):
                    self.start_m = int(line.split()[1])
                    self.ready.set()
                elif line.startswith(b"done"):
                    self.finished = True
                elif not line.isdigit():
                    self.messages.append(line.decode())
                    self.ready.set()
                else:
                    j = int(line)
                    assert self.last_ack is None or j == self.last_ack + 1, (self.last_ack, j)
                    self.last_ack = j
                    self.acks += 1
        self.ready.set()

    def _read_err(self) -> None:
        self._stderr = self.proc.stderr.read()

    def wait_ready(self, timeout: float = 60) -> bool:
        self.ready.wait(timeout)
        return self.start_m is not None or bool(self.messages)

    def wait_acks(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.acks < n and self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def wait(self, timeout: float = 120) -> int:
        rc = self.proc.wait(timeout=timeout)
        self._t.join(timeout)
        self._e.join(timeout)
        return rc

    @property
    def stderr(self) -> str:
        return self._stderr.decode(errors="replace")[-3000:]

    def acked_length(self) -> int:
        """How many ops are acknowledged in total (the history before this child included)."""
        if self.last_ack is None:
            return self.start_m or 0
        return self.last_ack + 1

    def __enter__(self) -> "ChildWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.kill()
        try:
            self.proc.wait(timeout=30)
        finally:
            for s in (self.proc.stdout, self.proc.stderr):
                if s:
                    s.close()


def check_recovered(path: str, model: Model, acked: int, in_flight: int = 1, open_kwargs=None) -> int:
    """Reopen twice: the state is the model after m ops, acked <= m <= acked + in_flight, the same both
    times, and the directory holds exactly the tables the version names.  Returns m."""
    import pylsm

    kw = dict(background_compaction=False, memtable_bytes=64 * 1024)
    kw.update(open_kwargs or {})
    states = []
    for attempt in range(2):
        with pylsm.open(path, **kw) as db:
            state = db_state(db)
            m = history_length(state)
            assert acked <= m <= acked + in_flight, \
                f"reopen {attempt}: history length {m}, acknowledged {acked} (+{in_flight} in flight)"
            want = model.expected(m)
            assert state == want, f"reopen {attempt}: state is not the model after {m} ops: " \
                                  f"{describe_diff(state, want)}"
            # spot-check point reads too (they take another path than the scan)
            for k in list(want)[:: max(1, len(want) // 200)]:
                assert db.get(k) == want[k], k
            st = db.stats()
            on_disk = sst_files(path)
            assert len(on_disk) == st["sstables"], \
                f"reopen {attempt}: {len(on_disk)} .sst files on disk {on_disk} but the version names " \
                f"{st['sstables']} ({st['levels']})"
            states.append(m)
    assert states[0] == states[1]
    return states[0]


if __name__ == "__main__":
    child_main(sys.argv[1:])
