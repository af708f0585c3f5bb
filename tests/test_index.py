"""The sessions index: cached rows, refreshed when the SDK rewrites files behind our back."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest

import a3s_nb
from a3s_nb.frames import CorruptSessionWarning, _engine, _walk, index

from .conftest import calls_of

OSCAR = "fix-oscar-2-000"


@pytest.fixture
def computed(monkeypatch) -> list[str]:
    """The sessions whose row was (re)computed from the files, call by call."""
    return calls_of(monkeypatch, _walk, "_summarize")


def index_file(store_dir: Path) -> Path:
    return store_dir / ".a3s_nb" / "index.json"


def touch_later(path: Path, seconds: float = 60) -> None:
    """Give a just-written file an mtime some minutes ago, so it is not 'racily clean'
    (changed too recently to trust), as a file the SDK wrote a while back would be."""
    mtime = time.time_ns() - 600 * 10**9 + int(seconds * 1e9)
    os.utime(path, ns=(mtime, mtime))


def test_index_is_built_then_reused(fixture_dir, computed):
    first = a3s_nb.sessions(fixture_dir)
    assert len(computed) == 8 and index_file(fixture_dir).exists()
    computed.clear()
    second = a3s_nb.sessions(fixture_dir)
    assert computed == []  # every row came from the index
    pd.testing.assert_frame_equal(first, second)
    data = json.loads(index_file(fixture_dir).read_text())
    assert data["format"] == index.INDEX_FORMAT and len(data["entries"]) == 8
    # the index rows are the rows a full build computes
    pd.testing.assert_frame_equal(second, a3s_nb.all_frames(fixture_dir)["sessions"])


def test_a_cold_all_frames_reads_each_session_once(fixture_dir, computed):
    """The index takes its rows from the pass that builds the other frames."""
    built = a3s_nb.all_frames(fixture_dir, progress=False)
    assert computed == []  # no session's files were read a second time for its row
    assert len(json.loads(index_file(fixture_dir).read_text())["entries"]) == 8
    # the rows are those the index computes on its own
    index_file(fixture_dir).unlink()
    pd.testing.assert_frame_equal(built["sessions"], a3s_nb.sessions(fixture_dir))
    assert len(computed) == 8


def test_index_notices_a_file_rewritten_behind_its_back(fixture_dir, computed):
    before = a3s_nb.sessions(fixture_dir).set_index("session_id")
    computed.clear()
    # what the SDK does on its next save: rewrite the run file in place (here a run that
    # failed), and the session file
    runs_path = fixture_dir / "runs" / f"{OSCAR}.json"
    records = json.loads(runs_path.read_text())
    records[-1]["snapshot"]["status"] = "failed"
    records[-1]["snapshot"]["error"] = "boom"
    runs_path.write_text(json.dumps(records, indent=2))
    touch_later(runs_path)
    after = a3s_nb.sessions(fixture_dir).set_index("session_id")
    assert computed == [OSCAR]
    assert before.loc[OSCAR, "n_runs_failed"] == 0 and after.loc[OSCAR, "n_runs_failed"] == 1
    assert set(a3s_nb.sessions(fixture_dir, status="failed").session_id) >= {OSCAR}


def test_index_notices_same_size_rewrite_by_mtime(fixture_dir, computed):
    a3s_nb.sessions(fixture_dir)
    computed.clear()
    path = fixture_dir / f"{OSCAR}.json"
    text = path.read_text()
    changed = text.replace('"state": "Active"', '"state": "Paused"')
    assert len(changed) == len(text)  # same size: only the mtime tells
    path.write_text(changed)
    touch_later(path)
    assert a3s_nb.sessions(fixture_dir, ids=OSCAR).state.tolist() == ["Paused"]
    assert computed == [OSCAR]


def test_racily_clean_rows_are_checked_again(fixture_dir, computed):
    a3s_nb.sessions(fixture_dir)
    path = fixture_dir / f"{OSCAR}.json"
    path.write_text(path.read_text())  # mtime: now
    computed.clear()
    a3s_nb.sessions(fixture_dir)
    assert computed == [OSCAR]
    data = json.loads(index_file(fixture_dir).read_text())
    assert OSCAR in data["entries"]
    assert data["untrusted"] == [OSCAR]  # too recent to trust: the next call looks again
    computed.clear()
    a3s_nb.sessions(fixture_dir)
    assert computed == [OSCAR]


def test_index_drops_deleted_and_adds_new_sessions(fixture_dir, fixture_store, computed):
    a3s_nb.sessions(fixture_dir)
    computed.clear()
    fixture_store.delete(OSCAR)
    bundle = fixture_store.load("chore-november-2-007")
    bundle.session.id = "chore-copy"
    for run in bundle.runs:
        run.snapshot.session_id = "chore-copy"
    fixture_store.save(bundle)
    df = a3s_nb.sessions(fixture_dir)
    assert OSCAR not in set(df.session_id) and "chore-copy" in set(df.session_id)
    assert computed == ["chore-copy"]
    entries = json.loads(index_file(fixture_dir).read_text())["entries"]
    assert OSCAR not in entries and "chore-copy" in entries
    # a session file removed by hand (the SDK leaves fragments behind) is gone too
    (fixture_dir / "chore-copy.json").unlink()
    assert "chore-copy" not in set(a3s_nb.sessions(fixture_dir).session_id)


def test_corrupt_session_is_remembered_and_recovers(fixture_dir, computed):
    bad = fixture_dir / "runs" / f"{OSCAR}.json"
    good = bad.read_text()
    bad.write_text("")
    touch_later(bad)
    with pytest.warns(CorruptSessionWarning, match="file is empty"):
        df = a3s_nb.sessions(fixture_dir)
    assert OSCAR not in set(df.session_id)
    assert df.attrs["errors"][0]["path"] == str(bad)
    computed.clear()
    with pytest.warns(CorruptSessionWarning, match=str(bad)):  # still reported, not re-read
        df = a3s_nb.sessions(fixture_dir)
    assert computed == [] and len(df) == 7 and len(df.attrs["errors"]) == 1
    bad.write_text(good)
    touch_later(bad, 120)
    df = a3s_nb.sessions(fixture_dir)
    assert OSCAR in set(df.session_id) and df.attrs["errors"] == []


def test_read_only_store_works_without_an_index(fixture_dir, computed):
    # the bookkeeping directory cannot be made: a file is in its way
    (fixture_dir / ".a3s_nb").write_text("not a directory")
    df = a3s_nb.sessions(fixture_dir)
    assert len(df) == 8 and not index_file(fixture_dir).exists()
    computed.clear()
    a3s_nb.sessions(fixture_dir)
    assert len(computed) == 8  # nothing cached, everything computed again


def test_unreadable_or_foreign_index_is_rebuilt(fixture_dir, computed):
    a3s_nb.sessions(fixture_dir)
    for text in ("{not json", json.dumps({"format": 99, "entries": {}}), "[]"):
        index_file(fixture_dir).write_text(text)
        computed.clear()
        assert len(a3s_nb.sessions(fixture_dir)) == 8
        assert len(computed) == 8
    computed.clear()
    a3s_nb.sessions(fixture_dir)
    assert computed == []


def test_index_is_rebuilt_when_the_schema_changes(fixture_dir, computed, monkeypatch):
    a3s_nb.sessions(fixture_dir)
    monkeypatch.setattr(_engine, "SUMMARY_VERSION", _engine.SUMMARY_VERSION + 1)
    computed.clear()
    a3s_nb.sessions(fixture_dir)
    assert len(computed) == 8


def test_ids_limit_the_work(fixture_dir, computed):
    df = a3s_nb.sessions(fixture_dir, ids=[OSCAR, "chore"])
    assert sorted(df.session_id) == ["chore-november-2-007", OSCAR]
    assert sorted(computed) == ["chore-november-2-007", OSCAR]
    computed.clear()
    assert len(a3s_nb.sessions(fixture_dir)) == 8
    assert len(computed) == 6  # the two already cached are not computed again


def test_session_filters_of_other_frames_use_the_index(fixture_dir, computed):
    a3s_nb.sessions(fixture_dir)
    computed.clear()
    messages = a3s_nb.messages(fixture_dir, status="failed")
    assert computed == [] and messages.session_id.nunique() == 3


def test_index_write_is_atomic(fixture_dir, monkeypatch):
    a3s_nb.sessions(fixture_dir)
    before = index_file(fixture_dir).read_text()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    (fixture_dir / f"{OSCAR}.json").write_text((fixture_dir / f"{OSCAR}.json").read_text())
    monkeypatch.setattr(index.os, "replace", boom)
    assert len(a3s_nb.sessions(fixture_dir)) == 8  # the failed write is not an error
    assert index_file(fixture_dir).read_text() == before
    assert [p.name for p in index_file(fixture_dir).parent.iterdir() if p.suffix == ".tmp"] == []


def test_memory_store_has_no_index(fixture_store, computed):
    mem = a3s_nb.MemoryStore()
    mem.save(fixture_store.load(OSCAR))
    assert a3s_nb.sessions(mem).session_id.tolist() == [OSCAR]
    assert computed == []  # computed directly, in one pass


def test_sessions_of_a_copied_store(fixture_dir, tmp_path, computed, no_racy_window):
    """A store copied elsewhere (with its index) has new files: it is summarized once
    again (its times were kept, but a copy's inodes and change times are its own), then
    served from its own index."""
    a3s_nb.sessions(fixture_dir)
    copy = tmp_path / "copy"
    shutil.copytree(fixture_dir, copy)  # copy2 keeps mtimes, not inodes
    computed.clear()
    assert len(a3s_nb.sessions(copy)) == 8
    assert len(computed) == 8
    computed.clear()
    assert len(a3s_nb.sessions(copy)) == 8
    assert computed == []


def test_a_remembered_sessions_frame_reads_only_the_start_of_the_index(fixture_dir, monkeypatch):
    """The index's generation leads the file: a new kernel's ``sessions()`` reads its
    first bytes, not all the JSON of an index of megabytes; an index with the generation
    further in (written by an earlier a3s_nb) is read whole, and the frame still served."""
    a3s_nb.sessions(fixture_dir, progress=False)
    again = a3s_nb.sessions(fixture_dir, progress=False)  # remembered from now on
    path = fixture_dir / ".a3s_nb" / index.INDEX_FILE
    assert path.read_bytes().startswith(b'{"generation":"')
    heads: list = []
    real_head = index.read_json_head
    monkeypatch.setattr(index, "read_json_head", lambda *a: heads.append(a) or real_head(*a))
    served: list = []
    real_load = index.RememberedFrame.load

    def load(self, inputs):
        table = real_load(self, inputs)
        served.append(table is not None)
        return table

    monkeypatch.setattr(index.RememberedFrame, "load", load)
    pd.testing.assert_frame_equal(a3s_nb.sessions(fixture_dir, progress=False), again)
    assert served == [True] and heads == []
    # the same index in place, its generation last (same size, inode and mtime)
    data = json.loads(path.read_bytes())
    generation = data.pop("generation")
    before = path.stat()
    text = json.dumps({**data, "generation": generation}, separators=(",", ":")).encode()
    text += b" " * (before.st_size - len(text))
    assert len(text) == before.st_size
    with open(path, "r+b") as f:
        f.write(text)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    pd.testing.assert_frame_equal(a3s_nb.sessions(fixture_dir, progress=False), again)
    assert served == [True, True] and len(heads) == 1
