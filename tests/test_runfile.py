"""Run files read the typed way (msgspec classes per event type) give exactly the frames
of reading them the lenient way (plain JSON values), whatever the files hold."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest

from a3s_nb.frames import _runfile, schema

from .conftest import frames_from_files

ROOT = Path(__file__).resolve().parents[1]
FRAMES = schema.FRAME_NAMES


def _build(store_dir: Path) -> dict[str, pd.DataFrame]:
    """All frames from the files (no frame cache)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return frames_from_files(store_dir)


def _lenient(store_dir: Path, monkeypatch) -> dict[str, pd.DataFrame]:
    with monkeypatch.context() as m:
        m.setattr(_runfile, "_typed", None)
        return _build(store_dir)


def _assert_same(got: dict, expected: dict) -> None:
    for name in FRAMES:
        pd.testing.assert_frame_equal(got[name], expected[name], obj=name)
        assert got[name].attrs == expected[name].attrs, name


def _first(store_dir: Path, sid: str, etype: str, edit) -> None:
    """Edit the first event of type ``etype`` of a session's run file (in place)."""
    path = store_dir / "runs" / f"{sid}.json"
    runs = json.loads(path.read_text())
    for run in runs:
        for i, rec in enumerate(run["events"]):
            if rec["event"]["type"] == etype:
                edit(run["events"], i, rec)
                path.write_text(json.dumps(runs, indent=2))
                return
    raise AssertionError(f"no {etype} in {sid}")


def _insert(event: dict):
    def edit(events, i, rec):
        events.insert(i, {"sequence": rec["sequence"], "timestamp_ms": 5, "event": event})

    return edit


def test_the_fixture_store_is_read_the_typed_way(fixture_dir):
    for path in sorted((fixture_dir / "runs").glob("*.json")):
        runs = _runfile.decode(path.read_bytes())
        assert all(type(r.event) is not _runfile.Loose for run in runs for r in run.events)


def test_typed_and_lenient_reading_give_the_same_frames(fixture_dir, monkeypatch):
    expected = _lenient(fixture_dir, monkeypatch)
    _assert_same(_build(fixture_dir), expected)


# what a newer a3s-code or a hand-edited file may hold: each makes its file go the
# lenient way, or is read the typed way to the same result
EDITS = {
    "a field no class knows": ("tool_end", lambda L, i, r: r["event"].update(foo=[1, "é"])),
    "a field named like a class attribute": (
        "text_delta",
        lambda L, i, r: r["event"].update(code=5, kind="x", extras=1, has_data=False),
    ),
    "an event type no class knows": ("turn_start", _insert({"type": "brand_new", "x": 1})),
    "a known type read by no spec": (
        "turn_start",
        _insert({"type": "subagent_progress", "task_id": "t", "status": "running"}),
    ),
    "a text of another type": ("text_delta", lambda L, i, r: r["event"].update(text=12)),
    "a turn as text": ("turn_start", lambda L, i, r: r["event"].update(turn="3")),
    "an exit code as text": (
        "tool_end",
        lambda L, i, r: r["event"].setdefault("metadata", {}).update(exit_code="3"),
    ),
    "null metadata": ("tool_end", lambda L, i, r: r["event"].update(metadata=None)),
    "a float": ("tool_end", lambda L, i, r: r["event"].update(metadata={"ratio": 1e16})),
    "a lone surrogate": (
        "tool_end",
        lambda L, i, r: r["event"].update(metadata={"s": "\ud800"}),
    ),
    "an extra record field": ("tool_end", lambda L, i, r: r.update(extra=1)),
    "fields in another order": (
        "agent_end",
        lambda L, i, r: r.update(event=dict(reversed(list(r["event"].items())))),
    ),
    "a repeated tool end": ("tool_end", lambda L, i, r: L.insert(i + 1, copy.deepcopy(r))),
    "an unhashable memoised payload": (
        "context_resolving",
        lambda L, i, r: r["event"].update(providers=[{"name": "x"}]),
    ),
    "a big int": ("turn_start", lambda L, i, r: r["event"].update(turn=2**64)),
}


#: The edits Store.load() rejects: the session is reported, in no frame, both ways.
REJECTED = {"a text of another type", "an unhashable memoised payload", "a lone surrogate"}


@pytest.mark.parametrize("edit", EDITS, ids=list(EDITS))
def test_unusual_run_files_give_the_same_frames_both_ways(fixture_dir, monkeypatch, edit):
    etype, fn = EDITS[edit]
    _first(fixture_dir, "fix-india-2-004", etype, fn)
    got = _build(fixture_dir)
    _assert_same(got, _lenient(fixture_dir, monkeypatch))
    loaded = "fix-india-2-004" in set(got["run_events"].session_id)
    assert loaded == (edit not in REJECTED), "load() " + ("accepts" if loaded else "rejects")


def test_fields_no_class_knows_are_kept_in_data(fixture_dir):
    sid = "fix-india-2-004"
    _first(fixture_dir, sid, "text_delta", lambda L, i, r: r["event"].update(code=5))
    _first(fixture_dir, sid, "turn_start", _insert({"type": "brand_new", "x": [1, "é"]}))
    _first(fixture_dir, sid, "tool_end", lambda L, i, r: r["event"].update(metadata={"f": 1e16}))
    events = _build(fixture_dir)["run_events"]
    mine = events[events.session_id == sid]
    deltas = mine[mine.event_type == "text_delta"]
    assert deltas.data.iloc[0] == '{"code":5}' and deltas.data.iloc[1:].isna().all()
    new = mine[mine.event_type == "brand_new"]
    assert new.data.tolist() == ['{"x":[1,"é"]}']
    assert "brand_new" in events.event_type.cat.categories
    # the float written as Python writes it (msgspec would write 1e16)
    assert '{"metadata":{"f":1e+16}}' in set(mine.data)


def test_repeated_events_equal_in_python_but_not_in_json_keep_their_own_text(fixture_dir):
    """``1``, ``1.0`` and ``true`` are one dict key in Python, three JSON texts (and
    load() accepts each for an int)."""
    sid = "fix-india-2-004"
    path = fixture_dir / "runs" / f"{sid}.json"
    runs = json.loads(path.read_text())
    values = [1, True, 1.0, "1", 1, True]
    for run, value in zip(runs, values, strict=False):
        for rec in run["events"]:
            if rec["event"]["type"] == "context_resolved":
                rec["event"].update(total_items=value, total_tokens=7)
    path.write_text(json.dumps(runs, indent=2))
    events = _build(fixture_dir)["run_events"]
    mine = events[(events.session_id == sid) & (events.event_type == "context_resolved")]
    got = [json.loads(d)["total_items"] for d in mine.data]
    assert len(got) == min(len(runs), len(values)) >= 4
    assert [(type(v), v) for v in got] == [(type(v), v) for v in values[: len(got)]]


@pytest.mark.parametrize(
    "value",
    [{"s": "\ud800"}, {"big": 2**70, "neg": -(2**65)}, ["é", "\u2028", '\x00\x1f"\\'], None],
)
def test_exact_json_is_the_json_text_of_the_frames(value):
    from a3s_nb.frames._columns import _json

    assert _runfile._exact_json(value) == _json(value)


def test_run_statistics_do_not_depend_on_the_frames_built_with_them(fixture_dir):
    """One walk computes a run's statistics, whichever frames are asked for."""
    both = _build(fixture_dir)

    def alone(name: str) -> pd.DataFrame:
        return frames_from_files(fixture_dir, [name])[name]

    for name in ("runs", "spans", "sessions"):
        pd.testing.assert_frame_equal(alone(name), both[name], obj=name)


def test_frames_without_msgspec_are_the_same(fixture_dir, tmp_path):
    """msgspec is optional (a3s-nb[all]): without it every file is read the lenient way."""
    script = f"""
import sys, warnings
sys.modules["msgspec"] = None
import pandas as pd
import a3s_nb
from a3s_nb.frames import _runfile
assert _runfile._typed is None and not _runfile.EVENT_CLASSES
for name, df in a3s_nb.all_frames({str(fixture_dir)!r}, progress=False).items():
    df.to_parquet({str(tmp_path)!r} + f"/{{name}}.parquet")
"""
    env_path = str(ROOT)
    subprocess.run(
        [sys.executable, "-c", script],
        check=True,
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
    )
    expected = _build(fixture_dir)
    for name in FRAMES:
        got = pd.read_parquet(tmp_path / f"{name}.parquet")
        pd.testing.assert_frame_equal(
            got, expected[name].astype(got.dtypes.to_dict()), obj=name, check_categorical=False
        )
