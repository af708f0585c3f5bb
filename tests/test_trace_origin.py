"""``traces()`` says which run each tool execution belongs to and where it came from."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

import a3s_nb
from a3s_nb.store._traceorigin import Call, Trace, attribute

from .conftest import FIXTURE_STORE, edit_runs, frames_from_files


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("origin") / "store"
    shutil.copytree(FIXTURE_STORE, dest)
    return dest


@pytest.fixture(scope="module")
def frames(store: Path) -> dict[str, pd.DataFrame]:
    return a3s_nb.all_frames(store, frames=["traces", "spans", "runs"])


def _failures(df: pd.DataFrame, failed: pd.Series) -> dict[tuple[str, str], tuple[int, int]]:
    """``{(tool, model): (calls, failures)}``."""
    grouped = df.assign(failed=failed).groupby(["tool_name", "model"], observed=True)["failed"]
    table = grouped.agg(["size", "sum"])
    return {k: (int(row["size"]), int(row["sum"])) for k, row in table.iterrows()}


def test_agent_traces_give_the_failure_rate_per_tool_per_model_of_spans_and_runs(frames):
    """The first question, from traces alone, equals the answer of spans joined to runs."""
    traces, spans, runs = frames["traces"], frames["spans"], frames["runs"]
    agent = traces[traces["origin"] == "agent"]
    from_traces = _failures(agent, ~agent["success"].astype(bool))
    tools = spans[spans["kind"] == "tool"].merge(runs[["run_id", "model"]], on="run_id")
    from_spans = _failures(tools, tools["status"] == "error")
    assert from_traces == from_spans
    assert sum(f for _, f in from_traces.values()) > 0  # the fixture has failed tool calls
    # every trace is counted once more than the agent's: verify commands, a direct call
    assert len(traces) > len(agent)


def test_agent_traces_are_the_tool_spans_one_for_one(frames):
    traces, spans, runs = frames["traces"], frames["spans"], frames["runs"]
    agent = traces[traces["origin"] == "agent"]
    tools = spans[spans["kind"] == "tool"]
    key = ["session_id", "run_id", "tool_call_id", "tool_name"]
    got = agent[key].astype(str).sort_values(key).reset_index(drop=True)
    want = tools[key].astype(str).sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)
    both = agent.merge(tools, on=key, suffixes=("", "_span"))
    assert (both["started_at"] == both["start"]).all()
    assert (both["success"] == (both["status"] == "ok")).all()
    models = both.merge(runs[["run_id", "model"]], on="run_id", suffixes=("", "_run"))
    assert (models["model"] == models["model_run"]).all()


def test_origin_of_every_trace_in_the_fixture(frames, store, manifest):
    """verify: one trace per check of a verify_commands report; direct: one per direct
    tool call of the manifest; program: the script's own tools and its program record."""
    traces = frames["traces"]
    for entry in manifest["sessions"]:
        sid = entry["session_id"]
        rows = traces[traces["session_id"] == sid]
        extras = [x for phase in entry["phases"] for x in phase["extras"]]
        reports = json.loads((store / "verification" / f"{sid}.json").read_text())
        checks = sum(
            len(r["checks"])
            for r in reports
            if all("bash" in c.get("suggested_tools", []) for c in r["checks"])
        )
        origin = rows["origin"].astype(str)
        assert (origin == "verify").sum() == checks, sid
        assert bool(checks) == ("verify_commands" in extras), sid
        assert (origin == "direct").sum() == extras.count("direct_tool"), sid
        kinds = [t["kind"] for phase in entry["phases"] for t in phase["turns"]]
        programs = kinds.count("program")
        assert (rows["kind"] == "program_execution").sum() == programs, sid
        assert (origin == "program").sum() == 2 * programs, sid  # one ls, one record each
        outside = origin.isin(["verify", "direct"])
        assert rows.loc[outside, ["run_id", "model", "tool_call_id"]].isna().all().all(), sid
        assert rows.loc[~outside, ["run_id", "model"]].notna().all().all(), sid
        assert rows.loc[origin != "agent", "started_at"].isna().all(), sid
    assert str(traces["origin"].dtype) == "category"


def test_parallel_build_gives_the_same_origins(store):
    serial = a3s_nb.traces(store)
    parallel = a3s_nb.traces(store, workers=2)
    pd.testing.assert_frame_equal(serial, parallel)


def _t(name: str, out: int = 1, code: int = 0, kind: str = "tool_execution") -> Trace:
    return Trace(kind, name, code, code == 0, out)


def test_a_direct_call_of_the_same_tool_before_a_run_is_told_apart_by_its_output_size():
    traces = [_t("bash", out=5), _t("bash", out=9), _t("read")]
    calls = [Call("r1", "bash", 0, 9), Call("r1", "read", 0, 1)]
    owners, origins, call_of = attribute(traces, calls)
    assert origins == ["direct", "agent", "agent"]
    assert owners == [None, "r1", "r1"] and call_of == [None, 0, 1]


def test_verify_commands_take_the_bash_stretch_whose_outcomes_match_their_checks():
    # a direct bash that failed, then the two checks of a report (passed, failed)
    traces = [_t("bash", code=1), _t("bash"), _t("bash", code=1), _t("read")]
    _, origins, _ = attribute(traces, [Call("r1", "read", 0, 1)], [["passed", "failed"]])
    assert origins == ["direct", "verify", "verify", "agent"]


def test_a_program_claims_its_script_tools_and_its_record_only():
    traces = [_t("ls"), _t("ls"), _t("program"), _t("program", kind="program_execution")]
    calls = [Call("r1", "program", 0, 1, steps=(("ls", 0, 1),))]
    owners, origins, _ = attribute(traces, calls)
    assert origins == ["direct", "program", "agent", "program"]
    assert owners == [None, "r1", "r1", "r1"]


def test_a_tool_call_without_a_trace_claims_nothing():
    traces = [_t("read")]
    owners, origins, _ = attribute(traces, [Call("r1", "write", 0, 1), Call("r2", "read", 0, 1)])
    assert owners == ["r2"] and origins == ["agent"]


def test_the_cached_traces_follow_a_change_to_the_runs_file(fixture_dir, no_racy_window):
    """A trace's run comes from the runs file: the frame cache rebuilds the traces of a
    session whose runs file changed, even when its traces file did not."""
    sid = "fix-oscar-2-000"
    before = a3s_nb.traces(fixture_dir)  # fills the cache
    assert (fixture_dir / ".a3s_nb" / "frames" / "traces.json").exists()
    assert before.loc[before.session_id == sid, "origin"].tolist()[2] == "agent"

    def drop_bash_call(runs):  # the run of the failed bash call no longer records it
        for run in runs:
            run["events"] = [e for e in run["events"] if e["event"].get("name") != "bash"]

    edit_runs(fixture_dir, sid, drop_bash_call)
    after = a3s_nb.traces(fixture_dir)
    rows = after[after.session_id == sid]
    assert rows["origin"].tolist()[2] == "direct" and pd.isna(rows["run_id"].tolist()[2])
    pd.testing.assert_frame_equal(after, frames_from_files(fixture_dir, ["traces"])["traces"])


def test_the_cache_key_changes_with_the_schema_version(monkeypatch):
    from a3s_nb.frames import _engine, schema

    _engine._cache_key.cache_clear()
    key = _engine._cache_key()
    monkeypatch.setattr(schema, "SCHEMA_VERSION", schema.SCHEMA_VERSION + 1)
    _engine._cache_key.cache_clear()
    try:
        assert _engine._cache_key() != key
    finally:
        monkeypatch.undo()
        _engine._cache_key.cache_clear()


@pytest.mark.parametrize(
    "output", ["", "plain ascii\n", "caf\u00e9 \u2014 \U0001f600", "lone \ud800 surrogate", 7, None]
)
def test_a_tool_outputs_size_is_its_utf8_byte_length(output):
    """``output_bytes`` as a3s-code counts it: the UTF-8 bytes of the output (an ASCII
    output's length, taken without encoding it; a lone surrogate counted as three bytes)."""
    from a3s_nb.store._traceorigin import output_size

    expected = len(output.encode("utf-8", "surrogatepass")) if isinstance(output, str) else None
    assert output_size(output) == expected
    assert output_size("lone \ud800 surrogate") == 18


def test_the_cache_key_changes_with_the_code_of_every_builder(monkeypatch, tmp_path):
    """A module the cached values come from (the column conversion, the builders, the walk,
    trace origins, the search texts) edited under the same version number: the frames' key
    and the search index's format change, so both are made again by the new code."""
    from a3s_nb.frames import (
        _builders,
        _columns,
        _engine,
        _loadcheck,
        _runfile,
        _searchindex,
        _walk,
    )
    from a3s_nb.store import _traceorigin

    files = _loadcheck._code_files()
    modules = (_builders, _columns, _walk, _runfile, _engine, _searchindex, _traceorigin)
    assert {Path(m.__file__) for m in modules} <= set(files)

    def keys() -> tuple[str, str]:
        _engine._cache_key.cache_clear()
        _loadcheck.code_digest.cache_clear()
        return _engine._cache_key(), _searchindex._format()

    before = keys()
    edited = tmp_path / Path(_columns.__file__).name
    edited.write_bytes(Path(_columns.__file__).read_bytes() + b"\n# edited\n")
    monkeypatch.setattr(
        _loadcheck, "_code_files", lambda: [edited if f.name == edited.name else f for f in files]
    )
    try:
        after = keys()
        assert after[0] != before[0] and after[1] != before[1]
    finally:
        monkeypatch.undo()
        keys()


def test_the_sessions_index_is_rebuilt_by_new_code(fixture_dir, monkeypatch):
    """The sessions index keeps computed rows: another build of the code (the frames'
    cache key) recomputes them, as it rebuilds the cached frames."""
    from a3s_nb.frames import _engine, _walk

    a3s_nb.sessions(fixture_dir)
    calls = []
    real = _walk._summarize
    monkeypatch.setattr(_walk, "_summarize", lambda *a: calls.append(a) or real(*a))
    a3s_nb.sessions(fixture_dir)
    assert calls == []  # the same code: every row from the index
    monkeypatch.setattr(_engine, "_cache_key", lambda: "other code")
    a3s_nb.sessions(fixture_dir)
    assert len(calls) == len(a3s_nb.FileStore(fixture_dir).list())
