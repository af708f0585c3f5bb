"""The DataFrames: counts against the files and the manifest, schema, filters, inputs."""

from __future__ import annotations

import json
import re
import shutil
import warnings
from pathlib import Path

import pandas as pd
import pytest

import a3s_nb
from a3s_nb import frames
from a3s_nb.frames import CorruptSessionWarning, _builders, _columns, _runfile, _sources, schema

from .conftest import calls_of, edit_runs, frames_from_files

ROOT = Path(__file__).resolve().parents[1]
FRAMES = schema.FRAME_NAMES


# ----------------------------------------------------------------------------- helpers


def raw(store_dir: Path, part: str, sid: str):
    path = store_dir / f"{sid}.json" if part == "session" else store_dir / part / f"{sid}.json"
    return json.loads(path.read_text())


def session_ids(store_dir: Path) -> list[str]:
    return sorted(p.stem for p in store_dir.glob("*.json"))


class FakeLiveSession:
    """The read surface of ``a3s_code.Session``, fed from a saved session's files."""

    def __init__(self, store_dir: Path, sid: str):
        self._session = raw(store_dir, "session", sid)
        self._runs = raw(store_dir, "runs", sid)
        self._traces = raw(store_dir, "traces", sid)
        self._verification = raw(store_dir, "verification", sid)

    @property
    def session_id(self) -> str:
        return self._session["id"]

    @property
    def workspace(self) -> str:
        return self._session["config"]["workspace"]

    def history(self):
        return self._session["messages"]

    def runs(self):
        return [r["snapshot"] for r in self._runs]

    def run_events(self, run_id):
        return next((r["events"] for r in self._runs if r["snapshot"]["id"] == run_id), [])

    def trace_events(self):
        return self._traces

    def verification_reports(self):
        return self._verification


@pytest.fixture(scope="module")
def fixture_frames(tmp_path_factory) -> dict[str, pd.DataFrame]:
    """All frames of (a private copy of) the fixture store, built once for the module."""
    dest = tmp_path_factory.mktemp("frames") / "store"
    shutil.copytree(ROOT / "tests" / "fixtures" / "a3s-code-3.1.0", dest)
    return a3s_nb.all_frames(dest)


# ----------------------------------------------------------------------------- API


def test_frame_functions_are_exported():
    for name in (*FRAMES, "all_frames"):
        assert callable(getattr(a3s_nb, name)), name
        assert name in a3s_nb.__all__
    assert a3s_nb.runs is frames.runs
    assert "source" in a3s_nb.runs.__doc__ and "schema_version" in a3s_nb.runs.__doc__


# ----------------------------------------------------------------------------- counts


def test_runs_match_manifest_and_files(fixture_frames, fixture_dir, manifest):
    runs = fixture_frames["runs"]
    by_session = runs.groupby("session_id", observed=True)
    for s in manifest["sessions"]:
        sid = s["session_id"]
        rows = runs[runs.session_id == sid]
        assert len(rows) == s["observed_runs"], sid
        assert (rows.status == "failed").sum() == s["observed_failed_runs"], sid
        records = raw(fixture_dir, "runs", sid)
        assert rows.run_id.tolist() == [r["snapshot"]["id"] for r in records]
        assert rows.n_events.tolist() == [len(r["events"]) for r in records]
        assert rows.event_count.tolist() == [r["snapshot"]["event_count"] for r in records]
        assert rows.prompt.tolist() == [r["snapshot"]["prompt"] for r in records]
    assert by_session.ngroups == len(manifest["sessions"])


def test_run_tokens_and_tools_come_from_events(fixture_frames, fixture_dir):
    runs = fixture_frames["runs"].set_index("run_id")
    for sid in session_ids(fixture_dir):
        for record in raw(fixture_dir, "runs", sid):
            events = [e["event"] for e in record["events"]]
            row = runs.loc[record["snapshot"]["id"]]
            ends = [e for e in events if e["type"] == "agent_end"]
            if ends:
                expected = ends[-1]["usage"]["total_tokens"]
            else:  # a failed run: the sum of what its turns reported
                expected = sum(
                    e["usage"]["total_tokens"] for e in events if e["type"] == "turn_end"
                )
            assert row.total_tokens == expected
            tool_ends = [e for e in events if e["type"] == "tool_end"]
            assert row.n_tool_calls == len(tool_ends)
            assert row.n_tool_errors == sum(e["exit_code"] != 0 for e in tool_ends)
            assert row.n_turns == sum(e["type"] == "turn_start" for e in events)
            assert row.duration_ms == (
                record["snapshot"]["updated_at_ms"] - record["snapshot"]["created_at_ms"]
            )
            if record["snapshot"]["status"] == "failed":
                assert row.error == record["snapshot"]["error"]
                assert pd.isna(row.result_text)
            meta = ends[-1].get("meta") if ends else None
            if meta:
                assert row.first_token_ms == meta["first_token_ms"]
                assert row.model == f"{meta['provider']}/{meta['response_model']}"
    assert runs.total_tokens.sum() > 0  # the session files' total_usage is all zeros


def test_sessions_match_manifest_and_sum_runs(fixture_frames, manifest):
    sessions = fixture_frames["sessions"].set_index("session_id")
    runs = fixture_frames["runs"]
    sums = runs.groupby("session_id", observed=True)[
        ["total_tokens", "prompt_tokens", "n_tool_calls", "n_tool_errors"]
    ].sum()
    for s in manifest["sessions"]:
        row = sessions.loc[s["session_id"]]
        assert row.n_runs == s["observed_runs"]
        assert row.n_runs_failed == s["observed_failed_runs"]
        assert row.n_messages == s["observed_messages"]
        assert row.workspace == s["workspace"]
        assert row.model == s["model"]
        assert (
            row.n_runs_completed + row.n_runs_failed + row.n_runs_cancelled + row.n_runs_unfinished
            == row.n_runs
        )
        for col in sums.columns:
            assert row[col] == sums.loc[s["session_id"], col], col
    assert len(sessions) == len(manifest["sessions"])
    # newest first
    assert fixture_frames["sessions"].updated_at.is_monotonic_decreasing


def test_session_counts_match_files(fixture_frames, fixture_dir):
    sessions = fixture_frames["sessions"].set_index("session_id")
    for sid in session_ids(fixture_dir):
        doc = raw(fixture_dir, "session", sid)
        row = sessions.loc[sid]
        prompts = [
            m
            for m in doc["messages"]
            if m["role"] == "user" and any(b["type"] == "text" for b in m["content"])
        ]
        assert row.n_user_messages == len(prompts)
        assert row.n_trace_events == len(raw(fixture_dir, "traces", sid))
        reports = raw(fixture_dir, "verification", sid)
        assert row.n_verification_reports == len(reports)
        if not reports:
            assert pd.isna(row.verification_status)
        elif any(r["status"] == "failed" for r in reports):
            assert row.verification_status == "failed"
        assert row.created_at == pd.Timestamp(doc["created_at"], unit="s", tz="UTC")
        assert pd.isna(row.tenant_id)  # no identity labels in 3.1.0


def test_messages_one_row_per_block(fixture_frames, fixture_dir, manifest):
    messages = fixture_frames["messages"]
    for s in manifest["sessions"]:
        sid = s["session_id"]
        rows = messages[messages.session_id == sid]
        assert rows.message_index.nunique() == s["observed_messages"]
        doc = raw(fixture_dir, "session", sid)
        blocks = [
            (i, j, b) for i, m in enumerate(doc["messages"]) for j, b in enumerate(m["content"])
        ]
        assert len(rows) == len(blocks)
        assert rows.block_type.astype(str).tolist() == [b["type"] for _, _, b in blocks]
        for (i, j, b), row in zip(blocks, rows.itertuples(), strict=True):
            assert (row.message_index, row.block_index) == (i, j)
            if b["type"] == "text":
                assert row.text == b["text"]
            elif b["type"] == "tool_use":
                assert json.loads(row.tool_input) == b["input"]
                assert row.tool_name == b["name"]
            elif b["type"] == "tool_result":
                assert row.text == b["content"]
                assert row.is_error == b["is_error"]
    results = messages[messages.block_type == "tool_result"]
    assert results.tool_name.notna().all()  # each result names the tool of its call
    assert (results.role == "user").all()


def test_traces_verification_run_events_match_files(fixture_frames, fixture_dir):
    traces, checks = fixture_frames["traces"], fixture_frames["verification"]
    events = fixture_frames["run_events"]
    for sid in session_ids(fixture_dir):
        trace = raw(fixture_dir, "traces", sid)
        rows = traces[traces.session_id == sid]
        assert rows.tool_name.tolist() == [t["name"] for t in trace]
        assert rows.success.tolist() == [t["success"] for t in trace]
        reports = raw(fixture_dir, "verification", sid)
        assert (checks.session_id == sid).sum() == sum(max(1, len(r["checks"])) for r in reports)
        for record in raw(fixture_dir, "runs", sid):
            rows = events[events.run_id == record["snapshot"]["id"]]
            assert rows.sequence.tolist() == [e["sequence"] for e in record["events"]]
            assert rows.event_type.astype(str).tolist() == [
                e["event"]["type"] for e in record["events"]
            ]
            assert (rows.session_id == sid).all()


def test_run_events_pull_out_fields(fixture_frames):
    ev = fixture_frames["run_events"]
    tool_ends = ev[ev.event_type == "tool_end"]
    assert tool_ends.tool_call_id.notna().all() and tool_ends.exit_code.notna().all()
    # the real bash exit code lives in the tool metadata (fix-oscar: `exit 3`)
    bash_fail = tool_ends[(tool_ends.session_id == "fix-oscar-2-000") & (tool_ends.exit_code == 1)]
    assert 3 in bash_fail.process_exit_code.tolist()
    turn_ends = ev[ev.event_type == "turn_end"]
    assert turn_ends.total_tokens.notna().all() and turn_ends.turn.notna().all()
    deltas = ev[ev.event_type == "text_delta"]
    assert deltas.text.notna().all() and deltas.data.isna().all()
    # what is not pulled out is kept, as JSON
    planning = ev[ev.event_type == "planning_end"]
    assert len(planning) == 2
    assert all("plan" in json.loads(d) for d in planning.data)
    writes = tool_ends[tool_ends.tool_name == "write"]
    assert all("file_path" in json.loads(d)["metadata"] for d in writes.data)
    errors = ev[ev.event_type == "error"]
    assert len(errors) == 3 and errors.text.str.len().gt(0).all()


def test_spans_are_consistent(fixture_frames):
    spans, runs, ev = fixture_frames["spans"], fixture_frames["runs"], fixture_frames["run_events"]
    run_spans = spans[spans.kind == "run"]
    assert sorted(run_spans.span_id) == sorted(runs.run_id)
    assert spans.span_id.is_unique
    assert set(spans.parent_span_id.dropna()) <= set(spans.span_id)
    assert (spans.end >= spans.start).all()
    assert (spans.duration_ms == (spans.end - spans.start).dt.total_seconds() * 1000).all()
    assert (spans.kind == "tool").sum() == (ev.event_type == "tool_end").sum()
    assert (spans.kind == "turn").sum() == (ev.event_type == "turn_start").sum()
    assert (spans.kind == "step").sum() == (ev.event_type == "step_start").sum() == 4
    assert (spans.kind == "planning").sum() == 2
    # run spans carry the run's outcome and tokens
    merged = run_spans.merge(runs, on="run_id", suffixes=("", "_run"))
    assert (merged.total_tokens == merged.total_tokens_run).all()
    failed = merged[merged.status_run == "failed"]
    assert len(failed) == 3 and (failed.status == "error").all()
    assert (merged[merged.status_run == "completed"].status == "ok").all()
    # a tool span hangs under the turn it was called in
    tools = spans[spans.kind == "tool"].merge(
        spans[["span_id", "kind", "turn"]], left_on="parent_span_id", right_on="span_id"
    )
    assert (tools.kind_y == "turn").all() and (tools.turn_x == tools.turn_y).all()
    # a failed tool is an error span
    assert (spans[(spans.kind == "tool") & (spans.exit_code == 1)].status == "error").all()


# ----------------------------------------------------------------------------- schema


def test_frames_follow_the_schema(fixture_frames):
    for name in FRAMES:
        df = fixture_frames[name]
        cols = schema.columns(name)
        assert list(df.columns) == [c.name for c in cols], name
        for col in cols:
            assert str(df[col.name].dtype) == col.dtype, (name, col.name)
            if col.kind == "category":
                known = list(schema.ENUMS[col.enum])
                assert list(df[col.name].cat.categories[: len(known)]) == known
        assert df.attrs["schema_version"] == schema.SCHEMA_VERSION
        assert df.attrs["frame"] == name
        assert df.attrs["errors"] == []
        assert not any(str(t) == "object" for t in df.dtypes), name
        assert len(df) > 0, name
        assert all(re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", c) for c in df.columns), name


def _doc_tables(text: str) -> dict[str, list[tuple[str, str]]]:
    """Parse docs/frames.md: {frame: [(column, dtype as documented)]}."""
    tables: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in text.splitlines():
        m = re.fullmatch(r"## `(\w+)`", line)
        if m:
            current = m.group(1)
            tables[current] = []
            continue
        m = re.fullmatch(r"\| `(\w+)` \| ([^|]+) \| .* \|", line)
        if m and current in tables:
            tables[current].append((m.group(1), m.group(2).strip()))
    return tables


def test_schema_document_matches_frames(fixture_frames):
    """docs/frames.md is generated from a3s_nb.frames.schema and describes the real frames."""
    text = (ROOT / "docs" / "frames.md").read_text()
    assert text == schema.render_markdown(), (
        "regenerate: python -m a3s_nb.frames.schema > docs/frames.md"
    )
    tables = _doc_tables(text)
    assert sorted(tables) == sorted(FRAMES)
    for name, documented in tables.items():
        df = fixture_frames[name]
        assert [c for c, _ in documented] == list(df.columns), name
        for column, dtype in documented:
            actual = str(df[column].dtype)
            assert dtype.split(" (")[0] == actual, (name, column, dtype, actual)
            if dtype == "string (JSON)":
                for value in df[column].dropna():
                    json.loads(value)
    assert f"Schema version: **{schema.SCHEMA_VERSION}**" in text


def test_timestamps_are_utc(fixture_frames, fixture_dir):
    runs = fixture_frames["runs"]
    first = raw(fixture_dir, "runs", "fix-oscar-2-000")[0]["snapshot"]
    row = runs[runs.run_id == first["id"]].iloc[0]
    assert row.created_at == pd.Timestamp(first["created_at_ms"], unit="ms", tz="UTC")
    assert str(row.created_at.tz) == "UTC"


def test_parquet_round_trip(fixture_frames, tmp_path):
    import pyarrow  # noqa: F401 - a test dependency: fail loudly without it

    for name in FRAMES:
        df = fixture_frames[name]
        path = tmp_path / f"{name}.parquet"
        df.to_parquet(path)
        back = pd.read_parquet(path)
        assert [str(t) for t in back.dtypes] == [str(t) for t in df.dtypes], name
        for col in df.select_dtypes("category"):  # the categories' own dtype too
            assert back[col].dtype == df[col].dtype, (name, col)
        # pandas < 3 reads "string" back with its default storage (python): same dtype name
        back = back.astype(df.dtypes.to_dict())
        pd.testing.assert_frame_equal(back, df, check_categorical=True)
        assert back.attrs["schema_version"] == schema.SCHEMA_VERSION


def test_empty_store_has_typed_empty_frames(tmp_path):
    store = a3s_nb.FileStore(tmp_path / "empty")
    got = a3s_nb.all_frames(store)
    for name in FRAMES:
        df = got[name]
        assert len(df) == 0
        assert [str(t) for t in df.dtypes] == [c.dtype for c in schema.columns(name)], name


def test_unknown_values_are_kept_in_categories(fixture_dir):
    path = fixture_dir / "runs" / "fix-oscar-2-000.json"
    records = json.loads(path.read_text())
    records[0]["events"].append(
        {"sequence": 99, "timestamp_ms": 1795485265500, "event": {"type": "brand_new", "x": 1}}
    )
    records[0]["snapshot"]["status"] = "paused"
    path.write_text(json.dumps(records))
    ev = a3s_nb.run_events(fixture_dir, ids="fix-oscar-2-000")
    new = ev[ev.event_type == "brand_new"]
    assert len(new) == 1 and json.loads(new.data.iloc[0]) == {"x": 1}
    assert list(ev.event_type.cat.categories[: len(schema.ENUMS["event_type"])]) == list(
        schema.ENUMS["event_type"]
    )
    runs = a3s_nb.runs(fixture_dir, ids="fix-oscar-2-000")
    assert "paused" in set(runs.status)
    assert a3s_nb.sessions(fixture_dir, ids="fix-oscar-2-000").n_runs_unfinished.iloc[0] == 1


# ----------------------------------------------------------------------------- filters


def test_ids_filter(fixture_store):
    runs = a3s_nb.runs(fixture_store, ids=["fix-oscar-2-000", "4287"])  # id and prefix
    assert set(runs.session_id) == {"fix-oscar-2-000", "4287140e-de98-4f72-8e72-c616a812fc99"}
    assert len(a3s_nb.messages(fixture_store, ids="fix-oscar-2-000").session_id.unique()) == 1
    with pytest.raises(a3s_nb.SessionNotFoundError, match="did you mean"):
        a3s_nb.runs(fixture_store, ids="fix-oscar-2-00x")
    with pytest.raises(a3s_nb.AmbiguousSessionIdError):
        a3s_nb.runs(fixture_store, ids="fix-")
    sessions = a3s_nb.sessions(fixture_store, ids=["fix-oscar-2-000"])
    assert sessions.session_id.tolist() == ["fix-oscar-2-000"]


def test_ids_prefix_resolves_like_the_store(fixture_store):
    """ids= takes what Store.resolve takes: a prefix typed in another Unicode form too."""
    bundle = fixture_store.load("fix-oscar-2-000")
    bundle.session.id = "caf\u00e9-1"  # NFC, as a3s_nb saves ids
    other = fixture_store.load("explore-lima-2-001")
    nfd = "cafe\u0301"
    assert a3s_nb.sessions([bundle, other], ids=nfd).session_id.tolist() == ["caf\u00e9-1"]
    assert a3s_nb.runs([bundle, other], ids=[nfd + "-1", "explore"]).session_id.nunique() == 2


def test_status_filter(fixture_store, manifest):
    failed_total = sum(s["observed_failed_runs"] for s in manifest["sessions"])
    with_failures = {s["session_id"] for s in manifest["sessions"] if s["observed_failed_runs"]}
    runs = a3s_nb.runs(fixture_store, status="failed")
    assert len(runs) == failed_total and (runs.status == "failed").all()
    assert len(a3s_nb.runs(fixture_store, status=["failed", "completed"])) == 40
    assert set(a3s_nb.sessions(fixture_store, status="failed").session_id) == with_failures
    assert set(a3s_nb.messages(fixture_store, status="failed").session_id) == with_failures
    assert set(a3s_nb.traces(fixture_store, status="failed").session_id) == with_failures
    ev = a3s_nb.run_events(fixture_store, status="failed")
    assert set(ev.run_id) == set(runs.run_id)
    assert set(a3s_nb.spans(fixture_store, status="failed").run_id) == set(runs.run_id)
    checks = a3s_nb.verification(fixture_store, status="failed")
    assert len(checks) > 0 and (checks.status == "failed").all()


def test_time_filters(fixture_store):
    runs = a3s_nb.runs(fixture_store).sort_values("created_at")
    cut = runs.created_at.iloc[len(runs) // 2]
    early = a3s_nb.runs(fixture_store, until=cut)
    late = a3s_nb.runs(fixture_store, since=cut)
    assert len(early) + len(late) == len(runs)
    assert (early.created_at < cut).all() and (late.created_at >= cut).all()
    # a naive time means UTC; strings work too
    naive = cut.tz_convert("UTC").tz_localize(None)
    assert len(a3s_nb.runs(fixture_store, since=naive)) == len(late)
    assert len(a3s_nb.runs(fixture_store, since=str(cut))) == len(late)
    events = a3s_nb.run_events(fixture_store, since=cut)
    assert set(events.run_id) == set(late.run_id)
    # sessions: those active in the window
    sessions = a3s_nb.sessions(fixture_store)
    newest = sessions.iloc[0]
    recent = a3s_nb.sessions(fixture_store, since=newest.updated_at)
    assert newest.session_id in set(recent.session_id)
    assert len(a3s_nb.sessions(fixture_store, since="2100-01-01")) == 0
    assert len(a3s_nb.messages(fixture_store, until="2000-01-01")) == 0
    assert len(a3s_nb.sessions(fixture_store, until="2100-01-01")) == len(sessions)


# ----------------------------------------------------------------------------- inputs


def _same(a: pd.DataFrame, b: pd.DataFrame, drop=()) -> None:
    a = a.drop(columns=list(drop)).reset_index(drop=True)
    b = b.drop(columns=list(drop)).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize("sid", ["fix-oscar-2-000", "explore-lima-2-001"])
def test_live_session_gives_the_same_frames(fixture_store, fixture_dir, sid):
    live = FakeLiveSession(fixture_dir, sid)
    from_store = a3s_nb.all_frames(fixture_store, ids=sid)
    from_live = a3s_nb.all_frames(live)
    for name in ("messages", "run_events", "spans", "verification"):
        _same(from_live[name], from_store[name])
    # the live surface has no model name: runs (and their traces) fall back to the model
    # that answered
    _same(from_live["runs"], from_store["runs"], drop=["model", "provider"])
    _same(from_live["traces"], from_store["traces"], drop=["model"])
    # nor times or state of the session document
    _same(
        from_live["sessions"],
        from_store["sessions"],
        drop=["model", "state", "created_at", "updated_at"],
    )
    assert from_live["sessions"].session_id.tolist() == [sid]
    both = a3s_nb.runs([live, FakeLiveSession(fixture_dir, "chore-november-2-007")])
    assert len(both) == len(from_store["runs"]) + 3


def test_bundle_gives_the_same_frames(fixture_store):
    bundle = fixture_store.load("dc488148-a475-4c5d-b553-2ee4179ae7fc")
    from_store = a3s_nb.all_frames(fixture_store, ids=bundle.id)
    from_bundle = a3s_nb.all_frames(bundle)
    for name in FRAMES:
        _same(from_bundle[name], from_store[name])
    assert len(a3s_nb.runs(bundle, status="failed")) == 1


def test_memory_store_and_identity_labels(fixture_store):
    bundle = fixture_store.load("fix-oscar-2-000")
    bundle.session.tenant_id = "acme"
    bundle.session.principal = "alice"
    mem = a3s_nb.MemoryStore()
    mem.save(bundle)
    sessions = a3s_nb.sessions(mem)
    assert sessions.tenant_id.tolist() == ["acme"] and sessions.principal.tolist() == ["alice"]
    assert len(a3s_nb.runs(mem)) == 5


def test_bad_sources(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(a3s_nb.StoreError):
        a3s_nb.runs(missing)
    assert not missing.exists()  # reading never creates a store
    with pytest.raises(TypeError, match="source must be"):
        a3s_nb.runs(42)
    with pytest.raises(ValueError, match="unknown frame"):
        a3s_nb.all_frames(tmp_path, ["nope"])


def test_default_store_from_environment(fixture_dir, monkeypatch):
    monkeypatch.setenv("A3S_NB_STORE", str(fixture_dir))
    assert len(a3s_nb.runs()) == 40


def test_all_frames_equals_single_frames(fixture_frames, fixture_store):
    for name in FRAMES:
        pd.testing.assert_frame_equal(getattr(a3s_nb, name)(fixture_store), fixture_frames[name])


def test_without_pyarrow_the_frames_are_the_same(fixture_store, fixture_frames, monkeypatch):
    """pyarrow is optional: without it the same values come out, in python-backed strings."""
    monkeypatch.setattr(_columns, "pa", None)
    got = a3s_nb.all_frames(fixture_store)
    for name in FRAMES:
        df, expected = got[name], fixture_frames[name]
        assert [str(t) for t in df.dtypes] == [str(t) for t in expected.dtypes], name
        pd.testing.assert_frame_equal(df, expected, check_dtype=False)


def test_chunked_build_matches_one_chunk(fixture_store, fixture_frames, monkeypatch):
    monkeypatch.setattr(_builders, "CHUNK_ROWS", 7)  # flush after nearly every session
    got = a3s_nb.all_frames(fixture_store)
    for name in FRAMES:
        pd.testing.assert_frame_equal(got[name], fixture_frames[name])


@pytest.mark.skipif(_builders._TRIM is None, reason="glibc's malloc_trim")
def test_each_flushed_chunk_hands_what_it_freed_back_to_the_system(
    fixture_store, fixture_frames, monkeypatch
):
    """glibc keeps freed small pieces for later: without a trim the resident set of a
    build held the peak of every chunk (benchmarks/README.md has the figures)."""
    flushes, trims = [], []
    real_flush = _builders._Builder.flush

    def flush(self):
        flushes.append(self.frame)
        real_flush(self)

    monkeypatch.setattr(_builders._Builder, "flush", flush)
    monkeypatch.setattr(_builders, "_TRIM", lambda pad: trims.append(pad) or 1)
    monkeypatch.setattr(_builders, "CHUNK_ROWS", 7)
    got = a3s_nb.all_frames(fixture_store)
    assert len(flushes) > len(FRAMES)  # chunks flushed along the way, then each frame's last
    assert trims == [0] * len(flushes)
    for name in FRAMES:
        pd.testing.assert_frame_equal(got[name], fixture_frames[name])


# ----------------------------------------------------------------------------- robustness


def test_corrupt_file_is_reported_and_the_rest_load(fixture_dir, manifest):
    """A session with a corrupt file is left out of every frame and listed in each."""
    bad = fixture_dir / "runs" / "fix-india-2-004.json"
    bad.write_text('[{"snapshot": {"id": "run-1"')  # truncated by an interrupted write
    empty = fixture_dir / "traces" / "fix-oscar-2-000.json"
    empty.write_text("")  # a torn 0-byte file
    with pytest.warns(CorruptSessionWarning) as caught:
        runs = a3s_nb.runs(fixture_dir)
    warned = sorted(str(w.message) for w in caught)
    assert len(warned) == 2 and "fix-oscar-2-000" in warned[1]
    india = warned[0]
    assert "fix-india-2-004" in india
    assert str(bad) in india and "not valid JSON" in india
    per_session = {s["session_id"]: s["observed_runs"] for s in manifest["sessions"]}
    expected = sum(per_session.values()) - 6 - per_session["fix-oscar-2-000"]
    assert len(runs) == expected
    errors = runs.attrs["errors"]
    assert [e["session_id"] for e in errors] == ["fix-india-2-004", "fix-oscar-2-000"]
    assert errors[0]["path"] == str(bad) and errors[1]["path"] == str(empty)
    assert "file is empty" in errors[1]["problem"]
    for name in FRAMES:  # load() rejects both sessions: no frame shows them, each lists them
        with pytest.warns(CorruptSessionWarning):
            df = getattr(a3s_nb, name)(fixture_dir)
        assert not {"fix-india-2-004", "fix-oscar-2-000"} & set(df.session_id), name
        assert df.attrs["errors"] == errors, name
    with pytest.warns(CorruptSessionWarning):
        sessions = a3s_nb.sessions(fixture_dir)
    assert len(sessions) == 6 and len(sessions.attrs["errors"]) == 2


def test_corrupt_session_document(fixture_dir):
    (fixture_dir / "fix-oscar-2-000.json").write_text("[1, 2]")
    with pytest.warns(CorruptSessionWarning, match="should be an object") as caught:
        df = a3s_nb.messages(fixture_dir)
    assert df.session_id.nunique() == 7
    assert caught[0].filename == __file__  # the warning points at the caller's line


def test_schema_invalid_session_is_reported_by_every_frame(fixture_dir):
    """A file that parses but that load() rejects (a run without status) is in no frame."""
    sid = "fix-india-2-004"
    path = edit_runs(fixture_dir, sid, lambda runs: runs[0]["snapshot"].pop("status"))
    with pytest.raises(a3s_nb.CorruptFileError):
        a3s_nb.FileStore(fixture_dir).load(sid)
    for _ in range(2):  # the second time from the cache of load verdicts
        with pytest.warns(CorruptSessionWarning, match=sid):
            got = a3s_nb.all_frames(fixture_dir)
        for name, df in got.items():
            assert sid not in set(df.session_id), name
            (err,) = df.attrs["errors"]
            assert err["session_id"] == sid and err["path"] == str(path), name
            assert "status" in err["problem"], name
        assert got["sessions"].session_id.nunique() == 7
    for name in FRAMES:
        with pytest.warns(CorruptSessionWarning, match=sid):
            df = getattr(a3s_nb, name)(fixture_dir)
        assert sid not in set(df.session_id) and len(df.attrs["errors"]) == 1, name
    # repaired: back in the frames (the cache notices the changed file)
    edit_runs(fixture_dir, sid, lambda runs: runs[0]["snapshot"].update(status="completed"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sid in set(a3s_nb.runs(fixture_dir).session_id)
        assert sid in set(a3s_nb.sessions(fixture_dir).session_id)


def test_a_wrong_type_is_reported_too(fixture_dir):
    sid = "fix-oscar-2-000"
    edit_runs(fixture_dir, sid, lambda runs: runs[0]["snapshot"].update(created_at_ms="soon"))
    with pytest.warns(CorruptSessionWarning, match="created_at_ms"):
        df = a3s_nb.run_events(fixture_dir)
    assert sid not in set(df.session_id) and df.session_id.nunique() == 7


def test_memory_store_sessions_that_do_not_load_are_reported(fixture_store):
    store = a3s_nb.MemoryStore()
    for sid in fixture_store.list():
        store.save(fixture_store.load(sid))
    store._files["fix-india-2-004"]["runs"] = '[{"snapshot": {"id": "run-1"}, "events": []}]'
    with pytest.warns(CorruptSessionWarning, match="fix-india-2-004"):
        df = a3s_nb.runs(store)
    assert "fix-india-2-004" not in set(df.session_id)
    assert [e["session_id"] for e in df.attrs["errors"]] == ["fix-india-2-004"]


@pytest.mark.parametrize("big", [2**63, 2**64 + 5, -(2**63) - 1])
def test_int_beyond_int64_in_a_run_event_is_na_and_reported(fixture_dir, fixture_frames, big):
    """load() accepts any int; the frames keep the session, show <NA> and say so."""
    sid = "fix-india-2-004"

    def edit(runs):
        for rec in runs[0]["events"]:
            if rec["event"]["type"] == "turn_end":
                rec["event"]["usage"]["total_tokens"] = big
                return
        raise AssertionError("no turn_end")

    path = edit_runs(fixture_dir, sid, edit)
    a3s_nb.FileStore(fixture_dir).load(sid)  # a valid session
    with pytest.warns(CorruptSessionWarning, match="64-bit"):
        got = a3s_nb.all_frames(fixture_dir)
    events = got["run_events"]
    assert len(events) == len(fixture_frames["run_events"])
    mine = events[(events.session_id == sid) & (events.event_type == "turn_end")]
    assert mine.total_tokens.isna().iloc[0] and mine.total_tokens.notna().iloc[1:].all()
    (err,) = events.attrs["errors"]
    assert err["session_id"] == sid and err["path"] == str(path)
    assert str(big) in err["problem"] and "total_tokens" in err["problem"]
    assert got["messages"].attrs["errors"] == []  # only the frames that hold the value
    others = events[events.session_id != sid].reset_index(drop=True)
    expected = fixture_frames["run_events"]
    expected = expected[expected.session_id != sid].reset_index(drop=True)
    pd.testing.assert_frame_equal(others, expected)


def test_int_beyond_int64_without_pyarrow(fixture_dir, monkeypatch):
    edit_runs(fixture_dir, "fix-india-2-004", lambda r: r[0]["snapshot"].update(event_count=2**63))
    monkeypatch.setattr(_columns, "pa", None)
    with pytest.warns(CorruptSessionWarning, match="event_count"):
        runs = a3s_nb.runs(fixture_dir)
    assert runs[runs.session_id == "fix-india-2-004"].event_count.isna().iloc[0]


@pytest.mark.parametrize(
    "text",
    [
        '[{"snapshot": {"id": "r"}, "events": ' + "[" * 10_000 + "]" * 10_000 + "}]",
        '[{"snapshot": {"id": "r", "event_count": ' + "7" * 5000 + "}}]",
    ],
    ids=["nested-10000-deep", "int-of-5000-digits"],
)
def test_deep_json_and_huge_ints_are_reported_and_the_rest_load(fixture_dir, text):
    bad = fixture_dir / "runs" / "fix-india-2-004.json"
    bad.write_text(text)
    with pytest.warns(CorruptSessionWarning, match="fix-india-2-004"):
        got = a3s_nb.all_frames(fixture_dir)
    for name, df in got.items():
        assert [e["session_id"] for e in df.attrs["errors"]] == ["fix-india-2-004"], name
        assert "fix-india-2-004" not in set(df.session_id), name
    assert got["sessions"].session_id.nunique() == 7
    with pytest.warns(CorruptSessionWarning, match="fix-india-2-004"):
        assert a3s_nb.sessions(fixture_dir).session_id.nunique() == 7


def test_a_corrupt_load_cache_is_rebuilt_not_trusted(fixture_dir):
    from a3s_nb.frames import _loadcheck

    a3s_nb.runs(fixture_dir)  # writes the cache
    cache = fixture_dir / ".a3s_nb" / _loadcheck.CACHE_FILE
    assert cache.exists()
    # a cache that claims every session is fine, for files that are not
    data = json.loads(cache.read_text())
    bad = fixture_dir / "runs" / "fix-india-2-004.json"
    bad.write_text("[{}]")
    for entry in data["entries"].values():
        entry["sig"] = "forged"
    cache.write_text(json.dumps(data))
    with pytest.warns(CorruptSessionWarning, match="fix-india-2-004"):
        a3s_nb.runs(fixture_dir)
    for garbage in ("{", "[1]", '{"format": 1, "key": "x", "entries": {}}', "\x00"):
        cache.write_text(garbage)
        with pytest.warns(CorruptSessionWarning, match="fix-india-2-004"):
            a3s_nb.runs(fixture_dir)
        assert json.loads(cache.read_text())["entries"]  # rewritten whole


def test_garbage_collector_is_restored_on_every_exit(fixture_store, monkeypatch):
    import gc

    assert gc.isenabled()

    def interrupted(*args, **kwargs):
        assert not gc.isenabled()  # paused during the build
        raise KeyboardInterrupt

    monkeypatch.setattr(_builders._RunsBuilder, "add", interrupted)
    with pytest.raises(KeyboardInterrupt):
        a3s_nb.runs(fixture_store)
    assert gc.isenabled()
    gc.disable()
    try:
        with pytest.raises(KeyboardInterrupt):
            a3s_nb.runs(fixture_store)
        assert not gc.isenabled()  # a caller's own choice is kept too
    finally:
        gc.enable()


def test_progress_bar(fixture_store, monkeypatch):
    import tqdm.auto

    made = []

    class Bar(tqdm.auto.tqdm):
        def __init__(self, *args, **kwargs):
            made.append(kwargs)
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    a3s_nb.runs(fixture_store)
    assert made == []  # 8 sessions: below the threshold
    monkeypatch.setattr(frames, "PROGRESS_THRESHOLD", 5)
    shutil.rmtree(fixture_store.meta_dir / "frames")  # else served from the frame cache
    a3s_nb.runs(fixture_store)
    assert made and made[-1]["total"] == 8
    made.clear()
    a3s_nb.runs(fixture_store, progress=False)
    assert made == []


def test_every_specially_read_event_type_is_a_known_category():
    # run_events gives known types fixed codes and reads them by spec; a spec for a type
    # missing from the enum would never be used
    assert set(_runfile.EVENT_SPECS) <= set(schema.ENUMS["event_type"])
    assert _runfile.MEMO_EVENTS.issubset(schema.ENUMS["event_type"])
    assert set(_runfile.EVENT_SPECS) <= set(_runfile.EVENT_CLASSES)  # read the typed way


# ----------------------------------------------------------------------------- real SDK


@pytest.mark.sdk
def test_real_live_session_gives_the_frames_of_its_saved_files(sdk_agent, tmp_path):
    """A real ``a3s_code.Session`` (answered by the scripted LLM) and its saved files."""
    from a3s_nb import testing
    from a3s_nb.sdk import live

    ws, store = tmp_path / "ws", tmp_path / "store"
    ws.mkdir()
    session = live.open_session(sdk_agent, ws, store_dir=store, session_id="real")
    session.send(testing.WRITE_READ_PROMPT)
    session.send(testing.FAILING_BASH_PROMPT)
    with pytest.raises(RuntimeError):
        session.send(testing.LLM_ERROR_PROMPT)
    live.save_session(session, store)

    from_live, from_files = a3s_nb.all_frames(session), a3s_nb.all_frames(store)
    for name in ("messages", "traces", "run_events", "spans", "verification"):
        _same(from_live[name], from_files[name])
    _same(from_live["runs"], from_files["runs"], drop=["model", "provider"])
    runs = from_live["runs"]
    assert runs.status.tolist() == ["completed", "completed", "failed"]
    assert (runs.total_tokens.iloc[:2] > 0).all()
    assert runs.n_tool_calls.tolist() == [2, 1, 0] and runs.n_tool_errors.tolist() == [0, 1, 0]
    events = from_live["run_events"]
    bash = events[(events.event_type == "tool_end") & (events.tool_name == "bash")]
    assert bash.exit_code.tolist() == [1] and bash.process_exit_code.notna().all()
    assert from_live["sessions"].n_runs_failed.tolist() == [1]
    assert from_live["sessions"].workspace.tolist() == [str(ws)]


# ----------------------------------------------------------------------------- frame cache


def _reads(monkeypatch) -> list[str]:
    """The session ids whose files the frames parse from now on."""
    return calls_of(monkeypatch, _sources._StoreSource, "_read_file")


def _same_frames(got: dict, expected: dict) -> None:
    for name in FRAMES:
        pd.testing.assert_frame_equal(got[name], expected[name], obj=name)
        assert got[name].attrs == expected[name].attrs, name


def test_frame_cache_serves_an_unchanged_store_without_parsing(
    fixture_dir, no_racy_window, monkeypatch
):
    first = a3s_nb.all_frames(fixture_dir)
    assert (fixture_dir / ".a3s_nb" / "frames" / "run_events.json").exists()
    reads = _reads(monkeypatch)
    again = a3s_nb.all_frames(fixture_dir)
    assert reads == []  # nothing parsed
    _same_frames(again, first)
    _same_frames(again, frames_from_files(fixture_dir))
    reads.clear()
    for name in FRAMES:  # the single frame functions use it too
        pd.testing.assert_frame_equal(getattr(a3s_nb, name)(fixture_dir), first[name])
    assert reads == []


def test_frame_cache_rebuilds_only_the_changed_session(fixture_dir, no_racy_window, monkeypatch):
    a3s_nb.all_frames(fixture_dir)
    sid = "fix-india-2-004"
    edit_runs(fixture_dir, sid, lambda runs: runs[0]["snapshot"].update(prompt="changed"))
    reads = _reads(monkeypatch)
    got = a3s_nb.all_frames(fixture_dir)
    assert set(reads) == {sid}
    assert "changed" in set(got["runs"].prompt)
    _same_frames(got, frames_from_files(fixture_dir))
    # a session deleted, another one added
    store = a3s_nb.FileStore(fixture_dir)
    bundle = store.load("fix-oscar-2-000")
    store.delete("fix-oscar-2-000")
    bundle.session.id = "zz-new"
    for run in bundle.runs:
        run.snapshot.session_id = "zz-new"
    store.save(bundle)
    reads.clear()
    got = a3s_nb.all_frames(fixture_dir)
    assert set(reads) == {"zz-new"}
    assert "fix-oscar-2-000" not in set(got["runs"].session_id)
    _same_frames(got, frames_from_files(fixture_dir))


def test_frame_cache_never_serves_a_session_load_rejects(fixture_dir, no_racy_window):
    a3s_nb.all_frames(fixture_dir)
    sid = "fix-india-2-004"
    edit_runs(fixture_dir, sid, lambda runs: runs[0]["snapshot"].pop("status"))
    with pytest.warns(CorruptSessionWarning, match=sid):
        got = a3s_nb.all_frames(fixture_dir)
    for name, df in got.items():
        assert sid not in set(df.session_id), name
        assert [e["session_id"] for e in df.attrs["errors"]] == [sid], name


@pytest.mark.parametrize("damage", ["manifest", "arrow", "rows"])
def test_a_damaged_frame_cache_is_rebuilt(fixture_dir, no_racy_window, damage):
    expected = a3s_nb.all_frames(fixture_dir)
    cache = fixture_dir / ".a3s_nb" / "frames"
    if damage == "manifest":
        (cache / "runs.json").write_text('{"format": 1, "generation": ')
    elif damage == "arrow":
        for path in cache.glob("runs.*.arrow"):
            path.write_bytes(path.read_bytes()[:100])
    else:  # a manifest that disagrees with its file
        manifest = json.loads((cache / "run_events.json").read_text())
        manifest["rows"] += 1
        (cache / "run_events.json").write_text(json.dumps(manifest))
    _same_frames(a3s_nb.all_frames(fixture_dir), expected)
    assert len(list(cache.glob("*.arrow"))) == 6  # one generation each, the old one removed


def test_list_sessions_since_has_the_frames_meaning(fixture_dir):
    """One listing, one ``since``: a session is active after a cut if it was saved or one
    of its runs was updated after it (the SDK can record a run after the last save)."""
    sid = "fix-india-2-004"
    edit_runs(fixture_dir, sid, lambda runs: runs[-1]["snapshot"].update(updated_at_ms=5 * 10**12))
    listed = a3s_nb.list_sessions(fixture_dir, since="2099-01-01")
    assert list(listed.session_id) == [sid]
    framed = a3s_nb.sessions(fixture_dir, since="2099-01-01")
    assert list(framed.session_id) == [sid]
    for cut in a3s_nb.sessions(fixture_dir).updated_at.dropna():
        assert set(a3s_nb.list_sessions(fixture_dir, since=cut).session_id) == set(
            a3s_nb.sessions(fixture_dir, since=cut).session_id
        )
