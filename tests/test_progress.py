"""progress=True on verify, repair and compact: the core reports bytes done and total between files,
from the calling thread; the Python layer draws a tqdm bar."""
from __future__ import annotations

import pytest

import pylsm
from pylsm import _pylsm


def many_tables(path):
    db = pylsm.open(path, memtable_bytes=1 << 20, background_compaction=False)
    for j in range(5):
        db.update((b"k%07d" % i, b"v" * 100) for i in range(j, 50_000, 5))
        db.flush()
    return db


def check(reports, at_least=2):
    assert len(reports) >= at_least, reports
    dones = [d for d, _ in reports]
    assert dones == sorted(dones) and all(d <= t for d, t in reports)
    assert reports[-1][0] == reports[-1][1] > 0


def test_verify_repair_compact_report_progress(tmp_path):
    path = str(tmp_path / "db")
    db = many_tables(path)
    reports = []
    _pylsm.DB.compact(db, progress=lambda d, t: reports.append((d, t)))
    check(reports, 1)  # one compaction of the five L0 tables into L1
    db.close()
    for fn in (_pylsm.verify, _pylsm.repair):
        reports = []
        fn(path, lambda d, t: reports.append((d, t)))
        check(reports)


def test_progress_true_draws_a_bar(tmp_path, capsys):
    pytest.importorskip("tqdm")
    path = str(tmp_path / "db")
    db = many_tables(path)
    db.compact(progress=True)
    db.close()
    pylsm.verify(path, progress=True)
    assert pylsm.repair(path, progress=True)["tables"] >= 1
    err = capsys.readouterr().err
    assert "compact" in err and "verify" in err and "repair" in err and "100%" in err
    with pylsm.open(path) as db:
        assert len(db) == 50_000


def test_a_failing_progress_callback_does_not_stop_the_work(tmp_path, monkeypatch):
    import sys

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(u.exc_value))
    path = str(tmp_path / "db")
    many_tables(path).close()

    def boom(done, total):
        raise RuntimeError("progress display broke")

    _pylsm.verify(path, boom)  # completes; the error is reported once, not raised
    assert len(seen) == 1 and "broke" in str(seen[0])
    with pytest.raises(TypeError):
        pylsm.verify(path, progress="yes")


def test_a_progress_callback_calling_into_its_database_is_refused_not_hung(tmp_path, monkeypatch):
    """The core may hold the database's locks while it reports (pylsm.h, pl_set_progress): a call into
    the same database from the callback, close() included, raises pylsm.Error instead of hanging, and
    the compaction completes."""
    import sys

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(u.exc_value))
    for name in ("close", "put", "compact", "get"):
        db = many_tables(str(tmp_path / name))
        call = {"close": db.close, "put": lambda: db.put(b"x", b"y"), "compact": db.compact,
                "get": lambda: db.get(b"k0000001")}[name]
        seen.clear()
        _pylsm.DB.compact(db, progress=lambda d, t: call())
        assert len(seen) == 1 and isinstance(seen[0], pylsm.Error), (name, seen)
        assert not db.closed and db[b"k0000001"] == b"v" * 100
        db.close()
