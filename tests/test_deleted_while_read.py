"""A session deleted while frames are built or exported is left out and reported (a
CorruptSessionWarning and an ``errors`` entry), never an abort; and the ids a build listed
are read as exact ids, never as prefixes of other sessions."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest

import a3s_nb
from a3s_nb.frames import CorruptSessionWarning, _parallel, _sources, schema
from a3s_nb.store import FileStore, Store

VICTIM = "fix-oscar-2-000"  # a fixture session with runs, spans and messages


def delete_when(monkeypatch: pytest.MonkeyPatch, when: str, victim: str = VICTIM) -> list:
    """Delete ``victim`` (through the store, as another kernel would) the first time the
    build reaches ``when``: ``listed`` (just after the store was listed), ``checked`` (as
    the load check loads it) or ``read`` (as the pass reads its files). Returns a list that
    gets an entry when the deletion happened."""
    done: list = []
    real_list = FileStore.list

    def gone(store: Store) -> None:
        if not done and victim in real_list(store):
            done.append(victim)
            Store.delete(store, victim)

    if when == "listed":

        def listed(self):
            ids = real_list(self)
            if victim in ids:
                gone(self)
            return ids

        monkeypatch.setattr(FileStore, "list", listed)
    elif when == "checked":  # the load check reads a session's files through _read_texts
        real_read_texts = FileStore._read_texts

        def read_texts(self, session_id):
            if session_id == victim:
                gone(self)
            return real_read_texts(self, session_id)

        monkeypatch.setattr(FileStore, "_read_texts", read_texts)
    else:
        real_read = _sources._StoreSource._read_parts

        def read(self, session_id, parts):
            if session_id == victim:
                gone(self.store)
            return real_read(self, session_id, parts)

        monkeypatch.setattr(_sources._StoreSource, "_read_parts", read)
    return done


def assert_reported(errors: list[dict], said: list, victim: str = VICTIM) -> None:
    entries = [e for e in errors if e["session_id"] == victim]
    assert len(entries) == 1, errors
    assert "was deleted while" in entries[0]["problem"]
    assert entries[0]["path"].endswith(f"{victim}.json")
    # said once (all_frames may come on it in two reads: the same warning, at the same line)
    skipped = {(w.category, str(w.message)) for w in said if victim in str(w.message)}
    assert [category for category, _ in skipped] == [CorruptSessionWarning]
    assert "was deleted while" in skipped.pop()[1]


def call(fn, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = fn(*args, **kwargs)
    return got, caught


WHEN = ["listed", "checked", "read"]


@pytest.mark.parametrize("when", WHEN)
@pytest.mark.parametrize("name", ["all_frames", *schema.FRAME_NAMES])
def test_a_session_deleted_during_a_build_is_skipped_and_reported(
    fixture_dir, monkeypatch, name, when
):
    done = delete_when(monkeypatch, when)
    if name == "all_frames":
        frames, said = call(a3s_nb.all_frames, fixture_dir)
    else:
        df, said = call(getattr(a3s_nb, name), fixture_dir)
        frames = {name: df}
    assert done == [VICTIM]
    for frame, df in frames.items():
        assert VICTIM not in set(df["session_id"]), frame
        assert_reported(df.attrs["errors"], said)
    assert len(a3s_nb.sessions(fixture_dir)) == 7  # the others are all there


@pytest.mark.parametrize("when", WHEN)
@pytest.mark.parametrize("name", ["messages", "runs"])  # through the sessions index; the pass
def test_a_session_deleted_during_a_filtered_build_is_reported(
    fixture_dir, monkeypatch, name, when
):
    delete_when(monkeypatch, when)
    df, said = call(getattr(a3s_nb, name), fixture_dir, status=["failed", "completed"])
    assert len(df) and VICTIM not in set(df["session_id"])
    assert_reported(df.attrs["errors"], said)


def test_a_session_deleted_before_workers_read_it_is_reported(fixture_dir, monkeypatch):
    """The load check passed it; it is gone by the time a worker reads it."""
    monkeypatch.setattr(_parallel, "MIN_PER_WORKER", 1)
    build = _parallel.build

    def delete_then_build(*args, **kwargs):
        a3s_nb.FileStore(fixture_dir).delete(VICTIM)
        return build(*args, **kwargs)

    monkeypatch.setattr(_parallel, "build", delete_then_build)
    frames, said = call(a3s_nb.all_frames, fixture_dir, workers=2)
    for df in frames.values():
        assert VICTIM not in set(df["session_id"])
        assert_reported(df.attrs["errors"], said)


def test_a_parallel_build_reports_as_one_process_does(fixture_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(_parallel, "MIN_PER_WORKER", 1)
    other = tmp_path / "other"
    shutil.copytree(fixture_dir, other)
    got = {}
    for store, workers in ((fixture_dir, None), (other, 2)):
        with monkeypatch.context() as m:
            delete_when(m, "read")  # in this process: the sessions frame, from the index
            build = _parallel.build

            def delete_then_build(*args, _store=store, _build=build, **kwargs):
                if a3s_nb.FileStore(_store).exists(VICTIM):
                    a3s_nb.FileStore(_store).delete(VICTIM)
                return _build(*args, **kwargs)

            m.setattr(_parallel, "build", delete_then_build)
            frames, said = call(a3s_nb.all_frames, store, workers=workers)
        got[workers] = {
            name: [e["session_id"] for e in df.attrs["errors"]] for name, df in frames.items()
        }
        assert_reported(frames["runs"].attrs["errors"], said)
    assert got[None] == got[2]


@pytest.mark.parametrize("when", WHEN)
def test_export_dataset_reports_a_session_deleted_while_it_runs(
    fixture_dir, tmp_path, monkeypatch, when
):
    dest = tmp_path / "dataset"
    delete_when(monkeypatch, when)
    result = a3s_nb.export_dataset(fixture_dir, dest)
    assert [e["session_id"] for e in result["errors"]] == [VICTIM]
    assert "was deleted while" in result["errors"][0]["problem"]
    assert result["written"] == 7
    assert not list(dest.rglob(f"{VICTIM}.parquet"))
    monkeypatch.undo()
    again = a3s_nb.export_dataset(fixture_dir, dest)  # gone from the store: nothing to do
    assert again["errors"] == [] and again["written"] == 0


@pytest.mark.parametrize("when", WHEN)
def test_to_otel_reports_a_session_deleted_while_it_runs(fixture_dir, tmp_path, monkeypatch, when):
    delete_when(monkeypatch, when)
    result, said = call(a3s_nb.to_otel, fixture_dir, tmp_path / "spans.jsonl")
    assert [e["session_id"] for e in result["errors"]] == [VICTIM]
    assert_reported(result["errors"], said)
    assert result["traces"] == len(a3s_nb.runs(fixture_dir))


def _copy_as(store: Path, source: str, new_id: str) -> None:
    doc = json.loads((store / f"{source}.json").read_text())
    doc["id"] = new_id
    (store / f"{new_id}.json").write_text(json.dumps(doc))
    runs = json.loads((store / "runs" / f"{source}.json").read_text())
    for run in runs:
        run["snapshot"]["session_id"] = new_id
    (store / "runs" / f"{new_id}.json").write_text(json.dumps(runs))


def test_a_deleted_session_never_resolves_to_another_by_prefix(fixture_dir, tmp_path, monkeypatch):
    """``abc`` is deleted after the export listed it: its rows are not replaced by those of
    ``abcdef``, the one session whose id starts with ``abc``."""
    _copy_as(fixture_dir, VICTIM, "abcdef")
    dest = tmp_path / "dataset"
    a3s_nb.export_dataset(fixture_dir, dest)  # abcdef exported, unchanged from now on
    before = {p: p.read_bytes() for p in dest.rglob("*.parquet")}
    _copy_as(fixture_dir, VICTIM, "abc")
    delete_when(monkeypatch, "listed", victim="abc")
    result = a3s_nb.export_dataset(fixture_dir, dest)
    assert [e["session_id"] for e in result["errors"]] == ["abc"]
    assert result["written"] == 0
    assert {p: p.read_bytes() for p in dest.rglob("*.parquet")} == before
    manifest = json.loads((dest / "_a3s_nb" / "manifest.json").read_text())
    assert "abc" not in manifest["sessions"]


def test_frames_of_listed_ids_never_resolve_by_prefix(fixture_dir, monkeypatch):
    """The ids a build listed are read as they are: ``abc`` gone is reported, not read as
    ``abcdef``."""
    from a3s_nb.frames import _engine

    _copy_as(fixture_dir, VICTIM, "abcdef")
    _copy_as(fixture_dir, VICTIM, "abc")
    delete_when(monkeypatch, "listed", victim="abc")
    frames, said = call(
        _engine._collect,
        fixture_dir,
        ["sessions", "runs"],
        ids=["abc"],
        since=None,
        until=None,
        status=None,
        progress=False,
        exact_ids=True,
    )
    for df in frames.values():
        assert df.empty
        assert_reported(df.attrs["errors"], said, victim="abc")
