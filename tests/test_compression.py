"""Block compression (compression="zstd" | "lz4" | None): the same answers as uncompressed tables, less
space on compressible data, nothing lost on incompressible data, tables of different codecs side by side,
damage reported, repair reading compressed tables."""
from __future__ import annotations

import json
import os
import random

import pytest

import pylsm
from lsmtest import crc32c

pytestmark = pytest.mark.engine  # the engine's codecs: make test runs these once, test-pythons skips them

WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma "
         "tau upsilon phi chi psi omega").split()


def records(n, seed=1):
    r = random.Random(seed)
    return {b"user:%07d" % i: json.dumps({"id": i, "name": " ".join(r.choice(WORDS) for _ in range(3)),
                                          "tags": [r.choice(WORDS) for _ in range(4)],
                                          "score": r.randrange(1000)}).encode()
            for i in range(n)}


def table_bytes(path):
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path) if f.endswith(".sst"))


def settle(db):
    db.flush()
    db.compact()


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_compressed_tables_answer_as_raw_ones_in_less_space(tmp_path, codec):
    data = records(30000)
    sizes = {}
    for c in (None, codec):
        path = tmp_path / str(c)
        with pylsm.open(path, compression=c, memtable_bytes=1 << 20) as db:
            db.update(data)
            for i in range(0, 30000, 10):  # overwrites and deletes across tables
                db[b"user:%07d" % i] = b"new"
            for i in range(5, 30000, 10):
                del db[b"user:%07d" % i]
            settle(db)
        sizes[c] = table_bytes(path)
        with pylsm.open(path, compression=c) as db:
            want = dict(data)
            for i in range(0, 30000, 10):
                want[b"user:%07d" % i] = b"new"
            for i in range(5, 30000, 10):
                del want[b"user:%07d" % i]
            assert dict(db.items()) == want
            assert list(db.keys(reverse=True)) == sorted(want, reverse=True)
            keys = random.Random(2).sample(sorted(data), 2000)
            assert db.get_many(keys) == [want.get(k) for k in keys]
            assert all(db.get(k) == want.get(k) for k in keys)
            assert list(db.items(start=b"user:0001000", stop=b"user:0001100")) == \
                [(k, want[k]) for k in sorted(want) if b"user:0001000" <= k < b"user:0001100"]
        pylsm.verify(path)
    assert sizes[codec] < 0.7 * sizes[None], sizes


def test_incompressible_values_cost_nothing(tmp_path):
    data = {os.urandom(16): os.urandom(100) for _ in range(20000)}
    sizes = {}
    for c in (None, "zstd"):
        with pylsm.open(tmp_path / str(c), compression=c) as db:
            db.update(data)
            settle(db)
        sizes[c] = table_bytes(tmp_path / str(c))
        with pylsm.open(tmp_path / str(c)) as db:
            assert dict(db.items()) == data
    assert sizes["zstd"] <= sizes[None] * 1.01  # blocks that do not compress are stored raw


def test_codecs_mix_across_opens_and_compaction(tmp_path):
    path = tmp_path / "db"
    data = records(9000)
    items = sorted(data.items())
    for i, c in enumerate((None, "lz4", "zstd")):
        with pylsm.open(path, compression=c) as db:
            db.update(dict(items[i * 3000:(i + 1) * 3000]))
            db.flush()  # a table of each codec
    with pylsm.open(path) as db:
        assert dict(db.items()) == data
        db.compact()  # rewritten without compression (this open's setting)
        assert dict(db.items()) == data
    with pylsm.open(path, compression="lz4") as db:
        db.compact()
        assert dict(db.items()) == data
    pylsm.verify(path)


def test_bad_compression_option(tmp_path):
    with pytest.raises(ValueError):
        pylsm.open(tmp_path / "a", compression="snappy")
    with pytest.raises(TypeError):
        pylsm.open(tmp_path / "b", compression=1)
    assert not os.path.exists(tmp_path / "a") and not os.path.exists(tmp_path / "b")


def test_damage_in_a_compressed_table_is_reported_and_repair_salvages_the_rest(tmp_path):
    path = tmp_path / "db"
    data = records(20000)
    with pylsm.open(path, compression="zstd") as db:
        db.update(data)
        settle(db)
    (sst,) = [f for f in os.listdir(path) if f.endswith(".sst")]
    flip(path / sst, os.path.getsize(path / sst) // 4, 0x10)  # a byte in the middle of the data blocks
    with pytest.raises(pylsm.CorruptionError):
        pylsm.verify(path)
    with pylsm.open(path) as db:
        with pytest.raises(pylsm.CorruptionError):
            dict(db.items())
    report = pylsm.repair(path)
    assert report["blocks_lost"] >= 1 and report["blocks_salvaged"] > 10
    with pylsm.open(path) as db:
        got = dict(db.items())
    assert 0.9 * len(data) < len(got) < len(data)
    assert all(data[k] == v for k, v in got.items())  # what is left is right
    pylsm.verify(path)


def flip(path, at, mask):
    """XOR the byte at offset `at` of the file with mask."""
    with open(path, "r+b") as f:
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ mask]))


def dict_len(sst, filter_off):
    """The length field that ends a format-4 table's dictionary block (before its 5-byte trailer)."""
    with open(sst, "rb") as f:
        f.seek(filter_off - 5 - 4)
        return int.from_bytes(f.read(4), "little")


def footer(path):
    """(format version, filter offset) of a table file, from its 48-byte footer."""
    with open(path, "rb") as f:
        f.seek(-48, os.SEEK_END)
        ft = f.read(48)
    return int.from_bytes(ft[32:36], "little"), int.from_bytes(ft[0:8], "little")


def dict_table(tmp_path, n=40000):
    path = tmp_path / "db"
    data = records(n)
    with pylsm.open(path, compression="zstd") as db:
        db.update(data)
        settle(db)
    (sst,) = [path / f for f in os.listdir(path) if f.endswith(".sst")]
    return path, sst, data


def test_zstd_tables_train_a_dictionary_and_small_ones_do_without(tmp_path):
    """A zstd table past its samples (512 KiB of blocks) trains a dictionary, stores it (format 4) and
    compresses the rest of its blocks with it; a smaller table stays format 3.  Both read back whole."""
    path, sst, data = dict_table(tmp_path)
    version, filter_off = footer(sst)
    assert version == 4
    assert 1000 < dict_len(sst, filter_off) <= 16 << 10
    with pylsm.open(path, compression="zstd") as db:
        assert dict(db.items()) == data
        keys = random.Random(3).sample(sorted(data), 3000)
        assert db.get_many(keys) == [data[k] for k in keys]
    pylsm.verify(path)
    small = tmp_path / "small"
    few = records(500)
    with pylsm.open(small, compression="zstd") as db:
        db.update(few)
        settle(db)
    (s,) = [small / f for f in os.listdir(small) if f.endswith(".sst")]
    assert footer(s)[0] == 3
    with pylsm.open(small) as db:
        assert dict(db.items()) == few


def test_repair_salvages_the_blocks_compressed_with_the_dictionary(tmp_path):
    """Damage late in the data (blocks compressed with the dictionary): repair reads the dictionary
    block and keeps every other block; without it, every block after the samples would be lost."""
    path, sst, data = dict_table(tmp_path)
    _, filter_off = footer(sst)
    flip(sst, filter_off * 3 // 4, 0x08)
    with pytest.raises(pylsm.CorruptionError):
        pylsm.verify(path)
    report = pylsm.repair(path)
    assert report["blocks_lost"] == 1, report
    with pylsm.open(path) as db:
        got = dict(db.items())
    assert 0.99 * len(data) < len(got) < len(data)
    assert all(data[k] == v for k, v in got.items())
    pylsm.verify(path)


def test_a_damaged_dictionary_is_reported_and_repair_keeps_what_does_not_need_it(tmp_path):
    path, sst, data = dict_table(tmp_path)
    _, filter_off = footer(sst)
    flip(sst, filter_off - 5 - 4 - dict_len(sst, filter_off) // 2, 0x40)  # a byte inside the dictionary block
    with pytest.raises(pylsm.CorruptionError):
        pylsm.verify(path)
    with pytest.raises(pylsm.CorruptionError, match="checksum"):
        with pylsm.open(path) as db:
            dict(db.items())
    report = pylsm.repair(path)
    assert report["blocks_salvaged"] > 10 and report["blocks_lost"] > 10, report
    with pylsm.open(path) as db:
        got = dict(db.items())
    assert 0 < len(got) < len(data) // 2  # the samples' blocks, compressed on their own
    assert all(data[k] == v for k, v in got.items())
    pylsm.verify(path)


def masked_crc(block_and_type):
    c = crc32c(block_and_type)
    return ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def test_repair_finds_the_dictionary_when_the_footer_is_damaged(tmp_path):
    """With the footer gone, repair scans the data blocks; at the first one compressed with the
    dictionary it looks for the dictionary block (it describes itself) and goes on with it: nothing
    is lost.  And with the footer intact but the index damaged, the scan uses the footer's dictionary."""
    for what in ("footer", "index"):
        path, sst, data = dict_table(tmp_path / what)
        size = os.path.getsize(sst)
        with open(sst, "rb") as f:
            f.seek(size - 48 + 16)
            index_off = int.from_bytes(f.read(8), "little")
        at = size - 10 if what == "footer" else index_off + 10
        flip(sst, at, 0x01)
        report = pylsm.repair(path)
        assert report["blocks_lost"] == 0 and report["bytes_lost"] == 0, (what, report)
        with pylsm.open(path) as db:
            assert dict(db.items()) == data, what
        pylsm.verify(path)


def test_a_dictionary_zstd_refuses_is_corruption_and_repair_goes_on(tmp_path):
    """A dictionary block whose checksum holds but whose zstd header is garbage (a forged or colliding
    block): the table's open reports CorruptionError naming the file (not out of memory), and repair
    keeps the blocks that do not need the dictionary."""
    path, sst, data = dict_table(tmp_path)
    _, filter_off = footer(sst)
    n = dict_len(sst, filter_off)
    start = filter_off - 5 - 4 - n
    with open(sst, "r+b") as f:
        f.seek(start)
        blk = bytearray(f.read(n + 4))
        assert blk[:4] == bytes.fromhex("37a430ec")  # zstd's dictionary magic: entropy tables follow
        blk[8:72] = b"\xff" * 64
        f.seek(start)
        f.write(bytes(blk))
        f.write(b"\x00" + masked_crc(bytes(blk) + b"\x00").to_bytes(4, "little"))
    with pytest.raises(pylsm.CorruptionError, match="zstd refuses"):
        pylsm.verify(path)
    report = pylsm.repair(path)
    assert report["blocks_salvaged"] > 10 and report["blocks_lost"] > 10, report
    with pylsm.open(path) as db:
        got = dict(db.items())
    assert 0 < len(got) < len(data) // 2 and all(data[k] == v for k, v in got.items())
