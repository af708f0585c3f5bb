"""capture: a live session (here a fake with the SDK's read methods) into a SessionBundle."""

from __future__ import annotations

import pytest

from a3s_nb import SavedSession
from a3s_nb.sdk.capture import (
    CaptureError,
    NotASessionError,
    bundle_to_parts,
    capture,
    count_tool_calls,
    is_session_like,
)
from a3s_nb.store.models import SessionBundle

from .fakes import FakeSession, fake_session

NOW = 1_900_000_000


@pytest.mark.parametrize(
    "sid", ["fix-oscar-2-000", "4287140e-de98-4f72-8e72-c616a812fc99", "chore-november-2-007"]
)
def test_capture_reads_everything_the_sdk_persists(fixture_store, sid):
    saved = fixture_store.load(sid)
    bundle = capture(FakeSession(saved), now=NOW)
    s, orig = bundle.session, saved.session
    assert s.id == sid
    assert s.messages == orig.messages
    assert s.tool_names == orig.tool_names
    assert s.config.workspace == orig.config.workspace
    assert bundle.runs == saved.runs
    assert bundle.traces == saved.traces
    assert bundle.verification == saved.verification
    assert bundle.artifacts == saved.artifacts
    assert s.model_name == orig.model_name  # learned from the runs' agent_end meta
    assert s.llm_config.model_dump() == orig.llm_config.model_dump()
    assert s.updated_at == NOW
    # a new save dates the session from its first run, not from the save
    assert s.created_at == min(r.snapshot.created_at_ms for r in saved.runs) // 1000


def test_new_session_gets_the_sdk_config_defaults(fixture_store):
    saved = fixture_store.load("fix-oscar-2-000")
    config = capture(FakeSession(saved), now=NOW).session.config
    expected = saved.session.config.model_dump(mode="json")
    expected["system_prompt"] = None  # not exposed by the API; resume takes the agent's
    assert config.model_dump(mode="json") == expected


def test_artifacts_are_those_the_transcript_refers_to(fixture_store):
    saved = fixture_store.load("4287140e-de98-4f72-8e72-c616a812fc99")
    [artifact] = saved.artifacts.artifacts
    fake = FakeSession(saved)
    fake._artifacts["a3s://tool-output/bash/ffffffffffffffff"] = {
        **artifact.model_dump(mode="json"),
        "artifact_uri": "a3s://tool-output/bash/ffffffffffffffff",
    }  # retained by the SDK but referred to by nothing: not saved
    bundle = capture(fake, now=NOW)
    assert [a.artifact_uri for a in bundle.artifacts.artifacts] == [artifact.artifact_uri]
    assert bundle.artifacts.artifacts[0].content == artifact.content


def test_artifact_the_sdk_no_longer_has_is_kept_from_the_saved_version(fixture_store):
    saved = fixture_store.load("4287140e-de98-4f72-8e72-c616a812fc99")
    fake = FakeSession(saved)
    fake._artifacts.clear()
    assert capture(fake, now=NOW).artifacts.artifacts == []
    bundle = capture(fake, now=NOW, previous=saved)
    assert bundle.artifacts == saved.artifacts


def test_saving_again_keeps_created_at_config_and_unknown_fields(fixture_store):
    saved = fixture_store.load("fix-oscar-2-000")
    saved.session.created_at = 1_234
    saved.session.__pydantic_extra__["from_a_newer_sdk"] = {"x": 1}
    fake = FakeSession(saved)
    fake.send("one more")
    bundle = capture(fake, now=NOW, previous=saved)
    assert bundle.session.created_at == 1_234
    assert bundle.session.updated_at == NOW
    assert bundle.session.config == saved.session.config  # system prompt included
    assert bundle.session.from_a_newer_sdk == {"x": 1}
    assert len(bundle.session.messages) == len(saved.session.messages) + 2
    assert len(bundle.runs) == len(saved.runs) + 1


def test_model_argument_wins_and_must_be_provider_slash_model(fixture_store):
    fake = fake_session(fixture_store.path, "fix-oscar-2-000")
    s = capture(fake, model="anthropic/claude-x", now=NOW).session
    assert s.model_name == "anthropic/claude-x"
    assert s.llm_config.model_dump(mode="json") == {
        "provider": "anthropic",
        "model": "claude-x",
        "base_url": None,
    }
    with pytest.raises(CaptureError, match="provider/model"):
        capture(fake, model="claude-x")


def test_no_model_anywhere_leaves_it_out(fixture_store):
    saved = fixture_store.load("fix-oscar-2-000")
    fake = FakeSession(saved)
    for run in fake._runs:
        for record in run["events"]:
            record["event"].pop("meta", None)
    s = capture(fake, now=NOW).session
    assert s.model_name is None and s.llm_config is None
    assert "model_name" not in bundle_to_parts(capture(fake, now=NOW))["session"]


def test_another_id_relabels_the_runs(fixture_store):
    fake = fake_session(fixture_store.path, "fix-oscar-2-000")
    bundle = capture(fake, session_id="copy-1", now=NOW)
    assert bundle.session.id == "copy-1"
    assert {r.snapshot.session_id for r in bundle.runs} == {"copy-1"}


def test_event_count_covers_the_events(fixture_store):
    fake = fake_session(fixture_store.path, "fix-oscar-2-000")
    fake._runs[0]["snapshot"]["event_count"] = 5  # a stale in-flight count
    fake._runs[1]["snapshot"]["event_count"] = 500  # 3.3+: cumulative, older events trimmed
    bundle = capture(fake, now=NOW)
    assert bundle.runs[0].snapshot.event_count == len(bundle.runs[0].events) > 5
    assert bundle.runs[1].snapshot.event_count == 500
    assert all(r.snapshot.event_count == len(r.events) for r in bundle.runs[2:])


def test_total_usage_is_the_sum_of_the_runs(fixture_store):
    saved = fixture_store.load("fix-oscar-2-000")
    usage = capture(FakeSession(saved), now=NOW).session.total_usage
    ends = [e.event for r in saved.runs for e in r.events if e.event.type == "agent_end"]
    assert usage.total_tokens == sum(e.usage.total_tokens for e in ends) > 0


def test_count_tool_calls(fixture_store):
    bundle = fixture_store.load("fix-oscar-2-000")
    assert count_tool_calls(bundle) == sum(
        1 for m in bundle.session.messages for b in m.content if b.type == "tool_use"
    )


def test_what_is_and_is_not_a_session(fixture_store):
    saved = fixture_store.load("fix-oscar-2-000")
    assert is_session_like(FakeSession(saved))
    assert not is_session_like(FakeSession)  # the class itself
    assert not is_session_like(SavedSession(saved))
    assert not is_session_like(saved)
    assert not is_session_like({"history": []})
    with pytest.raises(NotASessionError, match="int object is not an a3s-code session"):
        capture(42)


def test_a_session_that_fails_to_read_is_a_capture_error(fixture_store):
    fake = fake_session(fixture_store.path, "fix-oscar-2-000")

    def broken():
        raise RuntimeError("session closed")

    fake.trace_events = broken
    with pytest.raises(CaptureError, match="session closed"):
        capture(fake)


def test_a_wrong_shape_names_the_json_path(fixture_store):
    fake = fake_session(fixture_store.path, "fix-oscar-2-000")
    fake._messages[1]["content"][0].pop("id")  # a tool_use block without its id
    with pytest.raises(CaptureError, match=r"session\.messages\[1\]\.content\[0\]"):
        capture(fake)


def test_capture_round_trips_through_the_models(fixture_store):
    bundle = capture(fake_session(fixture_store.path, "explore-lima-2-001"), now=NOW)
    again = SessionBundle.model_validate(bundle_to_parts(bundle))
    assert bundle_to_parts(again) == bundle_to_parts(bundle)
