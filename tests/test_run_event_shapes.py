"""Run events in either shape: the records a3s-code persists, and the envelopes its
``Session.run_events()`` returns from 5.0 on, read into the same values everywhere.

The golden values are the SDK's own (tests/fixtures/a3s-format-vectors/, copied verbatim
from its Rust tests: core/tests/event_protocol_v1.rs@0473774). The rest converts the run
files the real 3.1.0 SDK wrote into the envelope shape, as the 5.x+ Python binding
projects them (sdk/python/src/session.rs@06c82e91, ``run_events``: each record through
``run_event_envelope_v1(record, run_id, session_id)``), and holds the frames, the models
and a capture to what the 3.1 shape of the same events gives.
"""

from __future__ import annotations

import copy
import json
import shutil
import warnings
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from a3s_nb import FileStore
from a3s_nb.errors import EventProtocolError, UnsupportedSdkError
from a3s_nb.frames import _runfile
from a3s_nb.sdk import capture
from a3s_nb.sdk import features as sdk_features
from a3s_nb.store import _envelope, serde
from a3s_nb.store.models import RunEventRecord, ToolEnd, ToolInputDelta, UnknownEvent

from .conftest import FIXTURE_STORE, FIXTURES, frames_from_files
from .fakes import FakeSession

VECTORS = FIXTURES / "a3s-format-vectors"
V01 = json.loads((VECTORS / "01_run_event_envelope.json").read_text())
V02 = json.loads((VECTORS / "02_event_protocol_misc.verbatim.json").read_text())
RUN_FRAMES = ["runs", "run_events", "spans", "traces"]


def _fields(rec: _runfile.Record) -> tuple:
    """Everything the frames read from one decoded record."""
    e = rec.event
    return (
        rec.sequence,
        rec.timestamp_ms,
        e.etype,
        e.code,
        e.kind,
        e.text,
        e.turn,
        e.tool_call_id,
        e.tool_name,
        e.exit_code,
        e.usage,
        e.step_id,
        e.step_number,
        e.status,
        e.x_metadata,
        e.x_meta,
        e.x_verification_summary,
        e.data(),
    )


def _decoded(records: list) -> list[tuple]:
    run = {"snapshot": {"id": "run-1", "status": "completed"}, "events": records}
    return [_fields(r) for r in _runfile.decode(json.dumps([run]).encode())[0].events]


def _sorted(value):
    """A JSON value with every object's keys sorted: what serde_json::Value gives without
    its preserve_order feature (the payloads of the SDK's envelopes)."""
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def _enveloped(runs: list, *, sort: bool = False) -> list:
    """Run records with every event as the 5.x+ ``run_events()`` gives it."""
    out = copy.deepcopy(runs)
    for run in out:
        snap = run["snapshot"]
        run["events"] = [
            _envelope.envelope_of(rec, snap["id"], snap["session_id"]) for rec in run["events"]
        ]
        if sort:
            for env in run["events"]:
                env["payload"] = _sorted(env["payload"])
    return out


# ============================================================================ golden vectors


def test_vector_01_the_envelope_and_the_record_are_one_event():
    envelope, record = V01["envelope_v1"], V01["file_record_derived"]
    assert _envelope.record_of(envelope) == record
    assert _envelope.envelope_of(record, "run-1", "session-1") == envelope
    a, b = RunEventRecord.model_validate(envelope), RunEventRecord.model_validate(record)
    assert (a.sequence, a.timestamp_ms, a.event) == (b.sequence, b.timestamp_ms, b.event)
    assert a.event.type == "text_delta" and a.event.text == "hello"
    assert _decoded([envelope]) == _decoded([record])
    assert _decoded([envelope])[0][:3] == (7, 1_700_000_000_000, "text_delta")


def test_vector_01_each_shape_is_written_back_as_it_was_read():
    for shape in (V01["envelope_v1"], V01["file_record_derived"]):
        assert RunEventRecord.model_validate(shape).model_dump(mode="json") == shape


def test_vector_02_pre_upgrade_tool_events_still_parse():
    case = V02["tool_protocol_additions_accept_pre_upgrade_events"]
    delta, end = case["must_parse_as_AgentEvent"]
    for i, (event, cls) in enumerate(((delta, ToolInputDelta), (end, ToolEnd))):
        record = {"sequence": i, "timestamp_ms": 1, "event": event}
        as_envelope = _envelope.envelope_of(record, "run-1", "s")
        for shape in (record, as_envelope):
            assert type(RunEventRecord.model_validate(shape).event) is cls
        assert _decoded([as_envelope]) == _decoded([record])
    assert _decoded([{"sequence": 1, "timestamp_ms": 1, "event": end}])[0][7:10] == (
        "tool-1",
        "read",
        0,
    )


def test_vector_02_the_canonical_event_name_and_payload():
    case = V02["envelope_v1_uses_the_canonical_agent_event_name_and_payload"]
    assert _envelope.envelope_of({"event": case["event"]}) == case["envelope"]  # no metadata
    assert _envelope.record_of(case["envelope"]) == {"event": case["event"]}
    with_meta = {**case["envelope"], "metadata": {"sequence": 0, "timestamp_ms": 5}}
    assert RunEventRecord.model_validate(with_meta).event.prompt == "hello"
    assert _decoded([case["envelope"]])[0][2:6] == (
        "agent_start",
        _runfile.TYPE_CODES["agent_start"],
        _runfile.K_NONE,
        "hello",
    )


def test_vector_02_an_unknown_future_event_keeps_its_name_payload_and_metadata():
    envelope = V02["projection_v1_preserves_unknown_future_events_without_relabeling"]["envelope"]
    record = _envelope.record_of(envelope)
    assert record == {"event": {"type": "future_event", "opaque": [1, 2, 3]}}
    (decoded,) = _decoded([envelope])
    assert decoded[2] == "future_event" and decoded[-1] == {"opaque": [1, 2, 3]}
    # as a model it needs a sequence and a time, as the SDK's RunEventRecord does
    live = copy.deepcopy(envelope)
    live["metadata"].update(sequence=3, timestamp_ms=9)
    model = RunEventRecord.model_validate(live)
    assert type(model.event) is UnknownEvent and model.event.type == "future_event"
    assert model.model_dump(mode="json") == live  # not relabelled, nothing dropped


def test_vector_02_another_protocol_version_is_refused_as_the_sdk_refuses_it():
    envelope = V02["envelope_v1_rejects_a_different_protocol_version"]["envelope"]
    expected = V02["envelope_v1_rejects_a_different_protocol_version"]["expect_error_contains"]
    with pytest.raises(EventProtocolError, match=expected):
        _envelope.record_of(envelope)
    with pytest.raises(ValidationError, match=expected):
        RunEventRecord.model_validate(envelope)
    with pytest.raises(EventProtocolError, match=expected):
        _envelope.record_of({**envelope, "version": True})  # JSON true is not 1
    # the frames read leniently: a record of another protocol holds no event they know
    assert _decoded([envelope])[0][2] is None


# ============================================================ the fixture store, enveloped


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[str, Path]:
    """The fixture store three ways: as 3.1.0 wrote it, and with every run file's events
    as 5.x+ envelopes (payload keys in record order, and sorted as serde_json gives them)."""
    root = tmp_path_factory.mktemp("shapes")
    out = {"records": root / "records"}
    shutil.copytree(FIXTURE_STORE, out["records"])
    for name, sort in (("envelopes", False), ("sorted", True)):
        out[name] = root / name
        shutil.copytree(FIXTURE_STORE, out[name])
        for path in (out[name] / "runs").glob("*.json"):
            runs = json.loads(path.read_bytes())
            path.write_text(serde.dumps(_enveloped(runs, sort=sort)))
    return out


def _frames(store: Path) -> dict[str, pd.DataFrame]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no session may be left out as unreadable
        return frames_from_files(store, RUN_FRAMES)


def test_the_fixture_store_has_events_of_every_kind_the_frames_read(stores):
    events = _frames(stores["records"])["run_events"]
    assert len(events) > 100
    for kind in ("tool_end", "turn_end", "agent_end", "step_start", "planning_end"):
        assert (events["event_type"] == kind).any(), kind


def test_enveloped_run_files_give_the_frames_of_the_recorded_shape(stores):
    expected, got = _frames(stores["records"]), _frames(stores["envelopes"])
    for name in RUN_FRAMES:
        pd.testing.assert_frame_equal(got[name], expected[name], obj=name)


def test_envelopes_with_sorted_payloads_fill_the_same_columns(stores):
    """The SDK's payloads may come with sorted keys: every column is the same, and the
    ``data`` column holds the same JSON objects."""
    expected, got = _frames(stores["records"]), _frames(stores["sorted"])
    for name in RUN_FRAMES:
        a, b = got[name], expected[name]
        if "data" in b:
            parse = lambda s: s.map(lambda t: json.loads(t) if isinstance(t, str) else None)  # noqa: E731
            assert parse(a["data"]).tolist() == parse(b["data"]).tolist()
            a, b = a.drop(columns="data"), b.drop(columns="data")
        pd.testing.assert_frame_equal(a, b, obj=name)


def test_the_typed_and_the_lenient_decoder_read_both_shapes_alike(stores):
    for path in sorted((stores["records"] / "runs").glob("*.json")):
        records = _runfile.decode(path.read_bytes())
        for name in ("envelopes", "sorted"):
            envelopes = _runfile.decode((stores[name] / "runs" / path.name).read_bytes())
            assert len(envelopes) == len(records)
            for a, b in zip(envelopes, records, strict=True):
                assert a.snapshot == b.snapshot
                got = [_fields(r) for r in a.events]
                want = [_fields(r) for r in b.events]
                if name == "sorted":  # same values; dict order is the SDK's
                    assert got == want
                else:
                    assert [json.dumps(g, default=str) for g in got] == [
                        json.dumps(w, default=str) for w in want
                    ]


def test_a_loaded_envelope_store_saves_back_byte_for_byte(stores, tmp_path):
    src = FileStore(stores["envelopes"], create=False)
    dst = FileStore(tmp_path / "copy")
    for sid in src.list():
        bundle = src.load(sid)
        assert all(r.events for r in bundle.runs)
        dst.save(bundle)
        assert dst.location(sid, "runs") != src.location(sid, "runs")
        assert (
            Path(dst.location(sid, "runs")).read_bytes()
            == Path(src.location(sid, "runs")).read_bytes()
        ), sid


def test_models_of_both_shapes_hold_the_same_runs(stores):
    a = FileStore(stores["records"], create=False)
    b = FileStore(stores["sorted"], create=False)
    for sid in a.list():
        ra, rb = a.load(sid).runs, b.load(sid).runs
        for x, y in zip(ra, rb, strict=True):
            assert x.snapshot == y.snapshot
            assert [(e.sequence, e.timestamp_ms, e.event) for e in x.events] == [
                (e.sequence, e.timestamp_ms, e.event) for e in y.events
            ]


# ============================================================================ capture


class EnvelopeSession(FakeSession):
    """A live session of a3s-code 5.x+ as far as run events go: ``run_events()`` returns
    envelopes with serde_json-sorted payloads (sdk/python/src/session.rs@06c82e91)."""

    def run_events(self, run_id: str) -> list[dict]:
        for run in _enveloped(self._runs, sort=True):
            if run["snapshot"]["id"] == run_id:
                return run["events"]
        return []


@pytest.mark.parametrize("sid", sorted(p.stem for p in (FIXTURE_STORE / "runs").glob("*.json")))
def test_a_capture_of_envelopes_writes_the_runs_file_the_sdk_writes(sid):
    """Captured from 5.x+ envelopes, the runs file holds the records the SDK persists:
    byte for byte what the 3.1 shape of the same events gives."""
    bundle = FileStore(FIXTURE_STORE, create=False).load(sid)
    texts = []
    for cls in (FakeSession, EnvelopeSession):
        parts = capture.capture_parts(cls(bundle), model="openai/fake-model", now=1.0)
        texts.append(serde.PartEncoder().encode(parts)["runs"].data)
        assert capture.bundle_from_parts(parts).runs == bundle.runs
    assert texts[0] == texts[1]
    assert texts[0] == (FIXTURE_STORE / "runs" / f"{sid}.json").read_bytes()


def test_capture_finds_tool_ends_and_token_usage_in_envelopes():
    bundle = FileStore(FIXTURE_STORE, create=False).load("fix-oscar-2-000")
    live = EnvelopeSession(bundle)
    parts = capture.capture_parts(live, model="openai/fake-model", now=1.0)
    used = parts["session"]["total_usage"]
    assert used["total_tokens"] > 0
    assert (
        used
        == capture.capture_parts(FakeSession(bundle), model="x/y", now=1.0)["session"][
            "total_usage"
        ]
    )


def test_live_frames_of_an_envelope_session_equal_those_of_the_recorded_shape():
    import a3s_nb

    bundle = FileStore(FIXTURE_STORE, create=False).load("fix-oscar-2-000")
    for name in ("runs", "run_events", "spans"):
        fn = getattr(a3s_nb, name)
        pd.testing.assert_frame_equal(
            fn(EnvelopeSession(bundle)), fn(FakeSession(bundle)), obj=name
        )


def test_a_live_envelope_of_another_protocol_fails_the_capture_naming_the_sdk():
    class Newer(FakeSession):
        def run_events(self, run_id):
            return [{"version": 2, "type": "text_delta", "payload": {"text": "x"}}]

    bundle = FileStore(FIXTURE_STORE, create=False).load("fix-oscar-2-000")
    with pytest.raises(UnsupportedSdkError) as info:
        capture.capture_parts(Newer(bundle), model="x/y")
    message = str(info.value)
    assert sdk_features.installed_version() in message
    assert "expected 1" in message and "5.x-9.x" in message and "3.1.0" in message
