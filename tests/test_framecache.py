"""The warm paths: the store scan, the load verdicts, the sessions index and the segmented
frame cache must never miss a change to a file the frames read, and a change must cost
about the sessions it touches."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

import a3s_nb
from a3s_nb.frames import (
    CorruptSessionWarning,
    _framecache,
    _loadcheck,
    _sources,
    _walk,
    index,
    schema,
)
from a3s_nb.store import _watch

from .conftest import calls_of, edit_runs, frames_from_files

FRAMES = schema.FRAME_NAMES
INDIA = "fix-india-2-004"
IDS = [  # the fixture's sessions, sorted
    "4287140e-de98-4f72-8e72-c616a812fc99",
    "60246e33-b01d-47b4-a995-4a89a87f13f3",
    "88efb826-562a-4324-ba5a-ca7fa4276dc8",
    "chore-november-2-007",
    "dc488148-a475-4c5d-b553-2ee4179ae7fc",
    "explore-lima-2-001",
    INDIA,
    "fix-oscar-2-000",
]


@pytest.fixture
def segments_of_two(monkeypatch):
    """Segments of two sessions, so that the 8 sessions of the fixture make four."""
    monkeypatch.setattr(_framecache, "SEGMENT_SESSIONS", 2)


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """The session ids whose files the frames parse, call after call."""
    return calls_of(monkeypatch, _sources._StoreSource, "_read_file")


@pytest.fixture
def summarized(monkeypatch) -> list[str]:
    """The sessions whose ``sessions`` row the index computes from the files."""
    return calls_of(monkeypatch, _walk, "_summarize")


@pytest.fixture
def checked(monkeypatch) -> list[str]:
    """The sessions the load check validates with ``Store.load``."""
    return calls_of(monkeypatch, _loadcheck, "_check")


def same(got: dict[str, pd.DataFrame], expected: dict[str, pd.DataFrame]) -> None:
    for name in FRAMES:
        pd.testing.assert_frame_equal(got[name], expected[name], obj=name)
        assert got[name].attrs == expected[name].attrs, name


def segment_files(store_dir: Path, frame: str) -> list[str]:
    manifest = json.loads((store_dir / ".a3s_nb" / "frames" / f"{frame}.json").read_text())
    return [seg["file"] for seg in manifest["segments"]]


def rewrite(path: Path, old: str, new: str) -> None:
    """Rewrite ``path`` in place, same size, with an mtime long past (no racy window)."""
    text = path.read_text()
    assert old in text and len(old) == len(new)
    before = path.stat()
    with open(path, "r+", encoding="utf-8") as f:  # in place: same inode, same directory
        f.write(text.replace(old, new, 1))
    mtime = time.time_ns() - 300 * 10**9
    os.utime(path, ns=(mtime, mtime))
    after = path.stat()
    assert after.st_size == before.st_size and after.st_ino == before.st_ino


# ----------------------------------------------------------------------------- segments


def test_segments_one_changed_session_rewrites_one_segment(
    fixture_dir, no_racy_window, segments_of_two, reads
):
    first = a3s_nb.all_frames(fixture_dir)
    same(first, frames_from_files(fixture_dir))
    before = {frame: segment_files(fixture_dir, frame) for frame in _framecache.CACHED}
    assert all(len(files) == 4 for files in before.values())
    reads.clear()
    again = a3s_nb.all_frames(fixture_dir)
    assert reads == []
    same(again, first)

    edit_runs(fixture_dir, INDIA, lambda runs: runs[0]["snapshot"].update(prompt="changed"))
    reads.clear()
    got = a3s_nb.all_frames(fixture_dir)
    assert set(reads) == {INDIA}
    assert "changed" in set(got["runs"].prompt)
    same(got, frames_from_files(fixture_dir))
    for frame in _framecache.CACHED:
        after = segment_files(fixture_dir, frame)
        # INDIA is in the last segment: only that one was written again
        assert after[:3] == before[frame][:3] and after[3] != before[frame][3], frame
    files = {p.name for p in (fixture_dir / ".a3s_nb" / "frames").glob("*.arrow")}
    assert files == {f for frame in _framecache.CACHED for f in segment_files(fixture_dir, frame)}


def test_a_cold_call_returns_the_frames_it_built(
    fixture_dir, no_racy_window, segments_of_two, monkeypatch
):
    """A call that builds every row (no cache yet) returns the frames it built, without
    turning the segments it wrote back into frames; the next call, served from those
    segments, gives the very same frames."""
    back: list[str] = []
    real = _framecache.to_frame
    monkeypatch.setattr(_framecache, "to_frame", lambda t, f: back.append(f) or real(t, f))
    cold = a3s_nb.all_frames(fixture_dir, progress=False)
    assert back == []
    same(cold, frames_from_files(fixture_dir))
    assert len(segment_files(fixture_dir, "run_events")) == 4
    warm = a3s_nb.all_frames(fixture_dir, progress=False)
    assert sorted(back) == sorted(_framecache.CACHED)
    same(warm, cold)


def test_segments_follow_sessions_added_and_deleted(
    fixture_dir, no_racy_window, segments_of_two, reads
):
    a3s_nb.all_frames(fixture_dir)
    store = a3s_nb.FileStore(fixture_dir)
    bundles = {sid: store.load(sid) for sid in ("chore-november-2-007", "fix-oscar-2-000")}
    # both sessions of the second segment go; new ones come before, between and after all
    for sid in ("60246e33-b01d-47b4-a995-4a89a87f13f3", "88efb826-562a-4324-ba5a-ca7fa4276dc8"):
        store.delete(sid)
    store.delete("chore-november-2-007")
    new_ids = ["000-first", "d-between", "zzz-last"]
    for new_id, bundle in zip(
        new_ids, [*bundles.values(), bundles["fix-oscar-2-000"]], strict=True
    ):
        copy = bundle.model_copy(deep=True)
        copy.session.id = new_id
        for run in copy.runs:
            run.snapshot.session_id = new_id
        store.save(copy)
    reads.clear()
    got = a3s_nb.all_frames(fixture_dir)
    assert set(reads) == set(new_ids)
    assert set(got["sessions"].session_id) == set(store.list())
    same(got, frames_from_files(fixture_dir))
    reads.clear()
    same(a3s_nb.all_frames(fixture_dir), got)
    assert reads == []
    # every session gone
    for sid in store.list():
        store.delete(sid)
    got = a3s_nb.all_frames(fixture_dir)
    assert all(len(df) == 0 for df in got.values())
    same(got, frames_from_files(fixture_dir))


def test_a_segment_grown_too_large_is_split(fixture_dir, no_racy_window, monkeypatch, reads):
    monkeypatch.setattr(_framecache, "SEGMENT_SESSIONS", 4)
    a3s_nb.all_frames(fixture_dir)
    assert len(segment_files(fixture_dir, "runs")) == 1  # 8 sessions: not past twice 4
    monkeypatch.setattr(_framecache, "SEGMENT_SESSIONS", 3)
    edit_runs(fixture_dir, INDIA, lambda runs: runs[0]["snapshot"].update(prompt="changed"))
    reads.clear()
    got = a3s_nb.all_frames(fixture_dir)
    assert set(reads) == {INDIA}
    assert len(segment_files(fixture_dir, "runs")) == 3
    same(got, frames_from_files(fixture_dir))
    edit_runs(fixture_dir, IDS[0], lambda runs: runs[0]["snapshot"].update(prompt="first"))
    reads.clear()
    got = a3s_nb.all_frames(fixture_dir)
    assert set(reads) == {IDS[0]}
    same(got, frames_from_files(fixture_dir))


def test_a_damaged_segment_is_rebuilt_alone(fixture_dir, no_racy_window, segments_of_two, reads):
    expected = a3s_nb.all_frames(fixture_dir)
    cache = fixture_dir / ".a3s_nb" / "frames"
    second = segment_files(fixture_dir, "run_events")[1]
    (cache / second).write_bytes((cache / second).read_bytes()[:200])
    reads.clear()
    same(a3s_nb.all_frames(fixture_dir), expected)
    assert sorted(set(reads)) == IDS[2:4]  # the sessions of that segment only
    assert second not in segment_files(fixture_dir, "run_events")


def test_a_forged_segment_digest_is_caught_by_the_file_signatures(
    fixture_dir, no_racy_window, segments_of_two
):
    """A digest that matches nothing only makes the signatures be compared one by one."""
    a3s_nb.all_frames(fixture_dir)
    path = fixture_dir / ".a3s_nb" / "frames" / "runs.json"
    manifest = json.loads(path.read_text())
    for seg in manifest["segments"]:
        seg["digest"] = "0" * 32
    path.write_text(json.dumps(manifest))
    edit_runs(fixture_dir, INDIA, lambda runs: runs[0]["snapshot"].update(prompt="changed"))
    same(a3s_nb.all_frames(fixture_dir), frames_from_files(fixture_dir))


# ----------------------------------------------------------------------------- trust


@pytest.mark.parametrize(
    ("part", "old", "new"),
    [
        ("session", '"state": "Active"', '"state": "Paused"'),
        ("runs", '"status": "completed"', '"status": "cancelled"'),
        ("traces", '"duration_ms": 3', '"duration_ms": 4'),
        ("verification", '"status": "failed"', '"status": "passed"'),
    ],
)
def test_an_in_place_same_size_rewrite_of_any_part_is_noticed(
    fixture_dir, segments_of_two, summarized, part, old, new
):
    a3s_nb.all_frames(fixture_dir)
    a3s_nb.sessions(fixture_dir)
    path = {
        "session": fixture_dir / f"{INDIA}.json",
        "runs": fixture_dir / "runs" / f"{INDIA}.json",
        "traces": fixture_dir / "traces" / f"{INDIA}.json",
        "verification": fixture_dir / "verification" / f"{INDIA}.json",
    }[part]
    if part == "runs" and old not in path.read_text():
        old, new = '"status": "failed"', '"status": "paused"'
    rewrite(path, old, new)
    summarized.clear()
    expected = frames_from_files(fixture_dir)
    same(a3s_nb.all_frames(fixture_dir), expected)
    pd.testing.assert_frame_equal(a3s_nb.sessions(fixture_dir), expected["sessions"])
    # its sessions row was made again in the pass that read its files for the other frames
    assert summarized == []


def test_an_in_place_rewrite_of_the_artifacts_manifest_is_checked_again(fixture_dir, checked):
    a3s_nb.all_frames(fixture_dir)
    checked.clear()
    a3s_nb.all_frames(fixture_dir)
    assert checked == []  # the verdicts come from the cache
    path = fixture_dir / "artifacts" / INDIA / "artifacts.json"
    rewrite(path, '"artifacts": []', '"artifacts": {}')
    with pytest.raises(a3s_nb.CorruptFileError):
        a3s_nb.FileStore(fixture_dir).load(INDIA)
    with pytest.warns(CorruptSessionWarning, match=INDIA):
        got = a3s_nb.all_frames(fixture_dir)
    assert checked == [INDIA]
    for name, df in got.items():
        assert INDIA not in set(df.session_id), name
    with pytest.warns(CorruptSessionWarning, match=INDIA):
        assert INDIA not in set(a3s_nb.sessions(fixture_dir).session_id)


def test_a_fragment_removed_then_added_back_is_noticed(fixture_dir, no_racy_window, reads):
    first = a3s_nb.all_frames(fixture_dir)
    path = fixture_dir / "traces" / f"{INDIA}.json"
    text = path.read_text()
    path.unlink()
    reads.clear()
    got = a3s_nb.all_frames(fixture_dir)
    assert set(reads) == {INDIA} and INDIA not in set(got["traces"].session_id)
    same(got, frames_from_files(fixture_dir))
    path.write_text(text)
    same(a3s_nb.all_frames(fixture_dir), first)


def test_a_file_that_goes_bad_and_good_again(fixture_dir, no_racy_window):
    first = a3s_nb.all_frames(fixture_dir)
    path = fixture_dir / "runs" / f"{INDIA}.json"
    good = path.read_text()
    path.write_text(good[:-40])  # torn
    with pytest.warns(CorruptSessionWarning, match=INDIA):
        got = a3s_nb.all_frames(fixture_dir)
    for name, df in got.items():
        assert INDIA not in set(df.session_id), name
        assert [e["session_id"] for e in df.attrs["errors"]] == [INDIA], name
    path.write_text(good)
    same(a3s_nb.all_frames(fixture_dir), first)


def test_a_dangling_link_in_place_of_a_session_file_is_reported(fixture_dir, no_racy_window):
    a3s_nb.all_frames(fixture_dir)
    target = fixture_dir / "runs" / f"{INDIA}.json"
    target.rename(fixture_dir / "elsewhere.txt")
    target.symlink_to(fixture_dir / "nowhere.json")
    with pytest.warns(CorruptSessionWarning, match=INDIA):
        got = a3s_nb.all_frames(fixture_dir)
    assert INDIA not in set(got["runs"].session_id)
    scanned = _loadcheck.scan(a3s_nb.FileStore(fixture_dir))
    assert scanned["runs"][INDIA] == _watch.UNREADABLE


def test_racily_clean_files_are_looked_at_again(fixture_dir, reads, checked, summarized):
    """A file changed within the timestamp granularity of the check is not trusted: a
    same-size rewrite in that window would keep its signature."""
    a3s_nb.all_frames(fixture_dir)
    a3s_nb.sessions(fixture_dir)
    past = time.time_ns() - 300 * 10**9
    os.utime(fixture_dir, ns=(past, past))  # the listing is no_racy_window: only the file is not
    path = fixture_dir / "runs" / f"{INDIA}.json"
    path.write_text(path.read_text())  # mtime: now
    for _ in range(2):  # as long as the file is that recent
        for call in (a3s_nb.all_frames, a3s_nb.sessions):
            reads.clear()
            checked.clear()
            summarized.clear()
            call(fixture_dir)
            assert set(reads) == {INDIA} and checked == [INDIA], call
            if call is a3s_nb.sessions:
                assert summarized == [INDIA]
    loadcheck = json.loads((fixture_dir / ".a3s_nb" / "loadcheck.json").read_text())
    assert loadcheck["untrusted"] == [INDIA]
    for frame in _framecache.CACHED:  # the frame cache does not trust those rows either
        (name,) = segment_files(fixture_dir, frame)
        with pa.memory_map(str(fixture_dir / ".a3s_nb" / "frames" / name)) as source:
            meta = pa.ipc.open_file(source).schema.metadata
        sigs = json.loads(meta[b"a3s_nb.sessions"])
        assert sigs[INDIA] is None and sigs[IDS[0]] is not None, frame


def test_an_unchanged_store_is_looked_at_once_per_file(fixture_dir, no_racy_window, monkeypatch):
    """A warm call lists each directory once and stats each file once: the load check, the
    index and the frame cache share one scan."""
    a3s_nb.all_frames(fixture_dir)
    a3s_nb.sessions(fixture_dir)
    scans: list[int] = []
    real = _loadcheck.scan

    def counting(store, parts=_loadcheck.PARTS):
        scans.append(1)
        return real(store, parts)

    monkeypatch.setattr(_loadcheck, "scan", counting)
    monkeypatch.setattr(index, "scan", counting)
    a3s_nb.all_frames(fixture_dir)
    assert len(scans) == 1
    scans.clear()
    a3s_nb.sessions(fixture_dir)
    assert len(scans) == 1


def test_stems_of_many_ids_is_sdk_safe_id_of_each():
    from a3s_nb.store import sdk_safe_id

    ids = ["a/b", "a\\b", "..", "...", "a..b.", ".a", "b.", "é/ü", "plain", "", "x" * 300]
    assert _loadcheck.stems_of(ids) == [sdk_safe_id(i) for i in ids]
    assert _loadcheck.stems_of([]) == []
    assert _loadcheck.stems_of(["a\x00/b"]) == ["a\x00_b"]


def test_sessions_of_an_unchanged_store_is_remembered(
    fixture_dir, no_racy_window, monkeypatch, summarized
):
    first = a3s_nb.sessions(fixture_dir)  # builds the index
    second = a3s_nb.sessions(fixture_dir)  # reads it, and remembers the frame
    assert (fixture_dir / ".a3s_nb" / index.FRAME_RECORD).exists()
    refreshed: list[int] = []
    real = index.SessionIndex.refresh

    def spy(self, *args, **kwargs):
        refreshed.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(index.SessionIndex, "refresh", spy)
    third = a3s_nb.sessions(fixture_dir)
    assert refreshed == []  # served without reading the index
    expected = frames_from_files(fixture_dir)["sessions"]
    for df in (first, second, third):
        pd.testing.assert_frame_equal(df, expected)
        assert df.attrs == expected.attrs
    # a session deleted: the index again, and the frame follows
    a3s_nb.FileStore(fixture_dir).delete(INDIA)
    summarized.clear()
    got = a3s_nb.sessions(fixture_dir)
    assert refreshed == [1] and INDIA not in set(got.session_id) and len(got) == 7
    pd.testing.assert_frame_equal(got, frames_from_files(fixture_dir)["sessions"])


def test_a_remembered_sessions_frame_is_not_served_for_another_index(
    fixture_dir, no_racy_window, summarized
):
    """The frame is tied to the index file it was built from, not only to its name."""
    a3s_nb.sessions(fixture_dir)
    a3s_nb.sessions(fixture_dir)
    assert (fixture_dir / ".a3s_nb" / index.FRAME_RECORD).exists()
    path = fixture_dir / ".a3s_nb" / "index.json"
    data = json.loads(path.read_text())
    data["entries"][INDIA]["row"][_walk._SESSION_COLS.index("workspace")] = "forged"
    text = json.dumps(data)
    path.write_text(text)  # another index, as another kernel may write
    summarized.clear()
    got = a3s_nb.sessions(fixture_dir).set_index("session_id")
    assert got.loc[INDIA, "workspace"] == "forged"  # the index is the truth of this cache
    assert summarized == []


def test_load_verdicts_of_an_unchanged_store_come_from_the_cache_head(
    fixture_dir, no_racy_window, monkeypatch, checked
):
    """On an unchanged store the load check reads only the small part of its cache: the
    digest of the files it judged, and the sessions it rejected."""
    edit_runs(fixture_dir, INDIA, lambda runs: runs[0]["snapshot"].pop("status"))
    for _ in range(2):  # the first call judges, the second writes the digest
        with pytest.warns(CorruptSessionWarning, match=INDIA):
            first = a3s_nb.runs(fixture_dir)
    loaded: list[int] = []
    real = _loadcheck.LoadCheck._load

    def spy(self):
        loaded.append(1)
        return real(self)

    monkeypatch.setattr(_loadcheck.LoadCheck, "_load", spy)
    checked.clear()
    with pytest.warns(CorruptSessionWarning, match=INDIA):
        again = a3s_nb.runs(fixture_dir)
    assert loaded == [] and checked == []
    pd.testing.assert_frame_equal(again, first)
    assert again.attrs == first.attrs
    # any file of any session changed: judged again from the whole cache
    rewrite(
        fixture_dir / "artifacts" / IDS[1] / "artifacts.json", '"artifacts": []', '"artifacts": {}'
    )
    with pytest.warns(CorruptSessionWarning) as caught:
        a3s_nb.runs(fixture_dir)
    assert loaded == [1] and checked == [IDS[1]]
    assert {str(w.message).split("'")[1] for w in caught} == {INDIA, IDS[1]}


def test_a_session_deleted_before_its_verdict_was_trusted_leaves_the_head_usable(
    fixture_dir, monkeypatch
):
    """A session saved and deleted within the racy window is forgotten with its verdict:
    it does not keep every later call on the whole cache."""
    for part in ("", "runs/", "traces/", "verification/"):
        path = fixture_dir / f"{part}{IDS[1]}.json"
        if path.exists():
            (fixture_dir / f"{part}brand-new.json").write_text(
                path.read_text().replace(IDS[1], "brand-new")
            )
    a3s_nb.runs(fixture_dir)  # its verdict: not trusted yet (its files are new)
    a3s_nb.FileStore(fixture_dir).delete("brand-new")
    monkeypatch.setattr(_loadcheck, "RACY_SECONDS", -1.0)  # everything settled since
    for _ in range(2):  # the first call judges, the second writes the digest
        first = a3s_nb.runs(fixture_dir)
    loaded: list[int] = []
    real = _loadcheck.LoadCheck._load
    monkeypatch.setattr(_loadcheck.LoadCheck, "_load", lambda self: loaded.append(1) or real(self))
    again = a3s_nb.runs(fixture_dir)
    assert loaded == []
    pd.testing.assert_frame_equal(again, first)


def test_a_remembered_sessions_frame_needs_the_very_write_of_the_index(fixture_dir, summarized):
    """Another write of the index that keeps its size, inode and time (as one in the same
    clock tick could) is told apart by the generation each write gets."""
    a3s_nb.sessions(fixture_dir)
    a3s_nb.sessions(fixture_dir)
    assert (fixture_dir / ".a3s_nb" / index.FRAME_RECORD).exists()
    path = fixture_dir / ".a3s_nb" / "index.json"
    before = path.stat()
    text = path.read_text()
    data = json.loads(text)
    column = _walk._SESSION_COLS.index("workspace")
    workspace = data["entries"][INDIA]["row"][column]
    forged = "x" * len(workspace)
    old_generation = data["generation"]
    text = text.replace(json.dumps(workspace)[1:-1], forged, 1)
    text = text.replace(old_generation, "f" * len(old_generation), 1)
    with open(path, "r+", encoding="utf-8") as f:  # in place: the same inode and size
        f.write(text)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_mtime_ns, after.st_size, after.st_ino) == (
        before.st_mtime_ns,
        before.st_size,
        before.st_ino,
    )
    summarized.clear()
    got = a3s_nb.sessions(fixture_dir).set_index("session_id")
    assert got.loc[INDIA, "workspace"] == forged and summarized == []


def test_a_cached_table_is_turned_back_into_the_very_frame(fixture_dir):
    """``to_frame`` (the cached path's own conversion) gives each frame exactly as built
    from the files: dtypes, nulls (integers, timestamps, categories), category order,
    from chunks of any length and offset; each column writable on its own."""
    built = frames_from_files(fixture_dir)
    ints = nats = 0
    for name in FRAMES:
        df = built[name]
        table = pa.Table.from_pandas(df, preserve_index=False)
        n = table.num_rows
        pieces = [table.slice(0, 0), table.slice(0, n // 3), table.slice(n // 3)]
        chunked = pa.concat_tables(pieces)  # chunks of offset 0 and n // 3, one empty
        for t in (table, chunked, table.slice(0, 0)):
            got = _framecache.to_frame(t, name)
            want = df.iloc[: t.num_rows].reset_index(drop=True)
            pd.testing.assert_frame_equal(got, want, check_exact=True, obj=name)
            assert list(got.dtypes.astype(str)) == [c.dtype for c in schema.columns(name)]
        for col in schema.columns(name):
            nulls = int(df[col.name].isna().sum())
            ints += nulls if col.kind == "int" else 0
            nats += nulls if col.kind == "timestamp" else 0
        got = _framecache.to_frame(table, name)
        wide = [c.name for c in schema.columns(name) if c.kind == "int"]
        if n and len(wide) > 1:  # one block of memory behind them, each column its own
            got.loc[0, wide[0]] = -7
            assert got.loc[0, wide[0]] == -7
            pd.testing.assert_series_equal(got[wide[1]], df[wide[1]], obj=wide[1])
    assert ints and nats  # the fixture has missing integers and times to convert


# ----------------------------------------------------------------------------- writing


def _arrow_table() -> pa.Table:
    text = pa.array([f"{i:05d}" + "x" * 995 for i in range(1000)], pa.large_string())
    return pa.table({"text": text, "n": pa.array(range(1000), pa.int64())})


def test_a_segment_file_is_written_from_the_tables_buffers(tmp_path, monkeypatch):
    """A segment goes to its file buffer by buffer: its text data (1 MB) in a write of its
    own, the few bytes of metadata and padding gathered, never a copy of the whole file
    made in memory first; the file is byte for byte the one pyarrow writes."""
    from a3s_nb.store import _fsio, _metafiles

    table = _arrow_table()
    sizes: list[int] = []
    real = _fsio.write

    def write(fd, data):
        sizes.append(memoryview(data).nbytes)
        return real(fd, data)

    monkeypatch.setattr(_fsio, "write", write)
    path = tmp_path / ".a3s_nb" / "frames" / "t.arrow"
    _metafiles.write_arrow(path, table)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    assert path.read_bytes() == sink.getvalue().to_pybytes()
    assert max(sizes) == table["text"].chunk(0).buffers()[2].size == 1_000_000
    assert sum(sizes) == path.stat().st_size and len(sizes) <= 4
    assert _metafiles.read_arrow(path).equals(table)


def test_a_segment_file_whose_write_fails_is_removed(tmp_path, monkeypatch):
    from a3s_nb.store import _fsio, _metafiles

    real, calls = _fsio.write, []

    def write(fd, data):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(_fsio, "write", write)
    path = tmp_path / ".a3s_nb" / "frames" / "t.arrow"
    with pytest.raises(OSError, match="No space"):
        _metafiles.write_arrow(path, _arrow_table())
    assert len(calls) == 2 and list(path.parent.iterdir()) == []
