"""Shared constants and data for the benchmark suite (workloads and targets: benchmarks/README.md).

Keys are 16 bytes, ``b"%016d" % i``; values are 100 random bytes from a deterministic seed, so every
backend (and the child processes of the recovery and memory workloads) writes exactly the same data.
Nothing here is timed.
"""
import os
import random
import time

SEED = 20240601
KEY_BYTES = 16
VALUE_BYTES = 100
BATCH = 1000                  # fillbatch: pairs per batch
VALUE_POOL = 1 << 18          # distinct random values; value of key i is pool[i % VALUE_POOL]

# One memory budget for every backend that has the knob (memtable / write buffer, block cache).
MEMTABLE_BYTES = 64 << 20     # pylsm's default; RocksDB's default; LevelDB raised from its 4 MiB
CACHE_BYTES = 32 << 20        # block cache (LevelDB lru_cache_size, RocksDB Cache, SQLite cache_size)
SMALL_CACHE_BYTES = 4 << 20   # readrandom_threads2: much smaller than the data, so reads go to the OS
BLOOM_BITS = 10               # pylsm's default; given to LevelDB and RocksDB too (both default to none)
RECOVERY_MEMTABLE_BYTES = 512 << 20   # recovery: large enough that 64 MiB of puts never flush
RECOVERY_FULL_BYTES = 64 << 20        # recovery: value bytes written at N >= 1,000,000

# Sync levels, named after pylsm's strategies.
SYNC_NONE = "none"                # handed to the OS: survives kill -9, not power loss
SYNC_EVERY_WRITE = "every_write"  # fsynced before the put returns


def key(i):
    return b"%016d" % i


def make_keys(n, step=1, offset=0):
    """``[key(offset + step*i) for i in range(n)]``."""
    return [b"%016d" % (offset + step * i) for i in range(n)]


def value_pool(seed=SEED, count=VALUE_POOL):
    rnd = random.Random(seed)
    blob = rnd.randbytes(count * VALUE_BYTES)
    return [blob[i * VALUE_BYTES:(i + 1) * VALUE_BYTES] for i in range(count)]


def make_values(n, pool, shift=0):
    """Value of key i: ``pool[(i + shift) % len(pool)]`` (shift != 0 gives different values, for overwrite)."""
    p = len(pool)
    return [pool[(i + shift) % p] for i in range(n)]


def permutation(n, seed=SEED + 1):
    perm = list(range(n))
    random.Random(seed).shuffle(perm)
    return perm


def recovery_value_bytes(n):
    """Value bytes the recovery child writes: 64 MiB at N >= 1M, scaled down with N for smoke runs."""
    return max(VALUE_BYTES * 100, int(RECOVERY_FULL_BYTES * min(1.0, n / 1_000_000)))


def dir_bytes(path, allocated=True):
    """Bytes of every file under ``path``: allocated on disk (st_blocks*512) or apparent (st_size).

    Allocated bytes are the honest "disk bytes": LMDB's data file is a sparse file as large as its map.
    """
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.stat(os.path.join(root, name))
            except FileNotFoundError:
                continue
            total += st.st_blocks * 512 if allocated else st.st_size
    return total


def data_extent(path, chunk=1 << 20):
    """Size of a file without its trailing zero bytes: the written part of a preallocated log."""
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        while end > 0:
            start = max(0, end - chunk)
            f.seek(start)
            tail = f.read(end - start).rstrip(b"\0")
            if tail:
                return start + len(tail)
            end = start
    return 0


def read_proc_status(field):
    """A ``/proc/self/status`` field in bytes (e.g. VmRSS, VmHWM), or None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def reset_peak_rss():
    """Reset VmHWM to the current RSS (Linux: write 5 to /proc/self/clear_refs). Returns True if it worked."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def sync_n(n):
    """Puts of the fillsync workload: 2,000 at full size (an fsync each), fewer at a tiny --bench-n."""
    return min(2000, max(100, n // 10))


def seek_n(n):
    """Seeks of the seekrandom workload (each reads 100 entries): N/50, at least 100."""
    return max(100, n // 50)


HOT_KEYS = 100_000  # readhot: at most this many keys (about 13 MB: far below every memtable)


class ThreadGang:
    """Threads started now, held at a barrier; ``go()`` releases them together and joins them.

    Create it in a (untimed) setup and call ``go()`` in the timed body, so thread start-up is not timed.
    The first exception raised in a worker is re-raised by ``go()``.
    """

    def __init__(self, workers):
        import threading
        self.barrier = threading.Barrier(len(workers) + 1)
        self.errors = []
        self.threads = [threading.Thread(target=self._run, args=(fn,), daemon=True) for fn in workers]
        for t in self.threads:
            t.start()

    def _run(self, fn):
        try:
            self.barrier.wait()
            fn()
        except BaseException as e:  # noqa: BLE001 -- handed to go()
            self.errors.append(e)

    def go(self):
        self.barrier.wait()
        for t in self.threads:
            t.join()
        if self.errors:
            raise self.errors[0]


# ------------------------------------------------------------------------------------------ cold reads
COLD_GETS = 20_000   # readrandom_cold: gets timed after the eviction (N/50 when that is smaller)


def cold_n(n):
    """Gets of the cold workloads: 20,000, or N/50 when that is smaller (a tiny --bench-n)."""
    return min(COLD_GETS, n // 50)


def db_files(path):
    """Every regular file under ``path`` (a database directory)."""
    out = []
    for root, _dirs, files in os.walk(path):
        for name in files:
            p = os.path.join(root, name)
            if os.path.isfile(p) and not os.path.islink(p):
                out.append(p)
    return out


def evict(path):
    """Drop every file of the database at ``path`` from the OS page cache: fsync it (a dirty page cannot
    be dropped), then ``posix_fadvise(POSIX_FADV_DONTNEED)`` on the whole file. The store must be closed:
    a page that is still mapped stays. Returns the files' total size in bytes."""
    total = 0
    for p in db_files(path):
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            total += os.fstat(fd).st_size
        finally:
            os.close(fd)
    return total


def load_cache(path, settle=30.0):
    """Evict every file of the database at ``path`` from the OS page cache, then read each once, so the
    cache holds all of it in the state a sequential read leaves (what ``cat`` of each file does after a
    restart), whatever the load before left in it. Between the two it waits ``settle`` seconds: on a VM
    whose balloon reports free memory to the host, the host takes back what a load of tens of GB and
    the eviction freed for a while after, and the TLB flushes that come with it slow whatever runs
    then (a 20M-key database read 361k gets/s at once, 825k after 30 s). The store must be closed.
    Returns the bytes read."""
    evict(path)
    time.sleep(settle)
    total, buf = 0, bytearray(128 << 10)   # read as cat reads: the kernel's read-ahead grows its folios
    for p in db_files(path):
        with open(p, "rb", buffering=0) as f:
            while True:
                n = f.readinto(buf)
                if not n:
                    break
                total += n
    return total


def wait_quiet(max_secs=30.0, busy=0.15):
    """Wait until the machine's CPUs are idle (their busy share over one second, /proc/stat, under
    ``busy``) or ``max_secs`` have passed: after a load writes tens of GB, the kernel's own work (memory
    compaction, writeback, a VM's free page reporting) goes on for a while and shares the cores with
    whatever is timed next. Returns the seconds waited (0 off Linux)."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]   # total, idle + iowait
    try:
        sample()
    except OSError:
        return 0.0
    t0 = time.perf_counter()
    while True:
        a = sample()
        time.sleep(1.0)
        b = sample()
        total, idle = b[0] - a[0], b[1] - a[1]
        if total <= 0 or 1 - idle / total < busy or time.perf_counter() - t0 >= max_secs:
            return time.perf_counter() - t0


def storage_read_bytes():
    """Bytes this process (all its threads) has caused to be read from storage: ``read_bytes`` of
    /proc/self/io (page-cache hits and mapped pages already resident do not count), or None off Linux."""
    try:
        with open("/proc/self/io") as f:
            for line in f:
                if line.startswith("read_bytes:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


_LOW_BIT = bytes(i & 1 for i in range(256))   # mincore: bit 0 of each byte says "resident"


def resident_fraction(path):
    """Fraction of the allocated bytes of the files at ``path`` that sit in the OS page cache (mincore on a
    fresh read-only mapping, which faults nothing in), or None where mincore cannot be called. A file's
    allocated size is the denominator, so a sparse file (LMDB's map) counts only its written blocks."""
    import ctypes
    import mmap
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                              ctypes.c_long]
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    except (OSError, AttributeError):
        return None
    page = mmap.PAGESIZE
    resident = allocated = 0
    for p in db_files(path):
        fd = os.open(p, os.O_RDONLY)
        try:
            st = os.fstat(fd)
            allocated += st.st_blocks * 512
            if st.st_size == 0:
                continue
            addr = libc.mmap(None, st.st_size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
            if addr in (None, ctypes.c_void_p(-1).value):
                return None
            try:
                pages = (st.st_size + page - 1) // page
                vec = (ctypes.c_ubyte * pages)()
                if libc.mincore(addr, st.st_size, vec) != 0:
                    return None
                resident += bytes(vec).translate(_LOW_BIT).count(1) * page
            finally:
                libc.munmap(addr, st.st_size)
        finally:
            os.close(fd)
    return min(1.0, resident / allocated) if allocated else 0.0
