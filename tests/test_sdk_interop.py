"""a3s_nb and the real a3s-code 3.1.0 SDK read each other's sessions.

The SDK talks to a3s_nb's scripted LLM server; nothing here is a mock of the SDK.
"""

from __future__ import annotations

import pytest

import a3s_nb
from a3s_nb import testing
from a3s_nb.sdk import live
from a3s_nb.store.models import (
    LlmConfigData,
    Message,
    SessionBundle,
    SessionConfig,
    SessionData,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
)
from tests.conftest import FIXTURE_STORE

pytestmark = pytest.mark.sdk

FIXTURE_MODELS = ("fake-model", "fake-model-large")


def dump(models) -> list:
    return [m.model_dump(mode="json", by_alias=True) for m in models]


@pytest.fixture
def llm():
    with testing.ScriptedLLM(testing.standard_script(), models=FIXTURE_MODELS) as server:
        yield server


@pytest.fixture
def agent(a3s_code, llm):
    return a3s_code.Agent.create(llm.acl_config())


@pytest.fixture
def workspace(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


def test_sessions_the_sdk_writes_load_with_the_sdks_own_counts(agent, workspace, tmp_path):
    store_dir = tmp_path / "store"
    session = live.open_session(agent, workspace, store_dir=store_dir, session_id="interop-1")
    session.send(testing.WRITE_READ_PROMPT)
    session.send(testing.FAILING_BASH_PROMPT)
    session.send(testing.READ_MISSING_PROMPT)
    with pytest.raises(Exception, match=r"circuit breaker|scripted failure|400"):
        session.send(testing.LLM_ERROR_PROMPT)
    session.send(testing.LARGE_OUTPUT_PROMPT)
    events = list(live.stream(session, testing.CHAT_PROMPT))
    assert events
    session.verify_commands(
        "build",
        [{"id": "true", "kind": "test", "description": "always passes", "command": "true"}],
    )
    session.record_verification_reports(
        [
            {
                "schema": "a3s.verification_report.v1",
                "subject": "external CI",
                "status": "failed",
                "checks": [
                    {
                        "id": "ci",
                        "kind": "test",
                        "description": "CI pipeline",
                        "status": "failed",
                        "required": True,
                    }
                ],
            }
        ]
    )
    live.save_session(session, store_dir)

    store = a3s_nb.open_store(store_dir)
    assert store.list() == ["interop-1"]
    bundle = store.load("interop-1")

    history = session.history()
    assert len(bundle.session.messages) == len(history)
    assert dump(bundle.session.messages) == history
    sdk_runs = session.runs()
    assert len(bundle.runs) == len(sdk_runs) == 6
    assert [r.snapshot.model_dump(mode="json") for r in bundle.runs] == sdk_runs
    for run in bundle.runs:
        sdk_events = session.run_events(run.snapshot.id)
        assert len(run.events) == len(sdk_events)
        assert dump(run.events) == sdk_events
    assert dump(bundle.traces) == session.trace_events()
    assert len(bundle.traces) == len(session.trace_events())
    assert dump(bundle.verification) == session.verification_reports()
    assert len(bundle.verification) == 2

    # the scenario really produced what this test claims to cover
    statuses = [r.snapshot.status for r in bundle.runs]
    assert statuses.count("failed") == 1 and statuses.count("completed") == 5
    errors = [
        b
        for m in bundle.session.messages
        for b in m.content
        if isinstance(b, ToolResultBlock) and b.is_error
    ]
    assert len(errors) == 2
    assert len(bundle.artifacts.artifacts) == 1
    artifact = bundle.artifacts.artifacts[0]
    assert session.get_artifact(artifact.artifact_uri) == artifact.model_dump(mode="json")
    assert artifact.content.rstrip("\n") == "x" * 150_000  # the SDK appends a newline
    assert artifact.original_bytes == len(artifact.content.encode())


@pytest.mark.parametrize("session_id", sorted(p.stem for p in FIXTURE_STORE.glob("*.json")))
def test_sdk_resumes_fixture_sessions_that_a3s_nb_resaved(
    session_id, fixture_store, agent, workspace, tmp_path
):
    bundle = fixture_store.load(session_id)
    # the recorded workspace is another machine's; the SDK resumes on the saved workspace
    bundle.session.config.workspace = str(workspace)
    store_dir = tmp_path / "resaved"
    a3s_nb.open_store(store_dir).save(bundle)

    session = live.resume_session(agent, session_id, store_dir)
    assert session.session_id == session_id
    saved = dump(bundle.session.messages)
    assert session.history() == saved
    assert session.runs() == [r.snapshot.model_dump(mode="json") for r in bundle.runs]
    assert session.trace_events() == dump(bundle.traces)
    assert session.verification_reports() == dump(bundle.verification)

    session.send(testing.CHAT_PROMPT)
    history = session.history()
    assert history[: len(saved)] == saved
    assert [m["role"] for m in history[len(saved) :]] == ["user", "assistant"]
    assert history[-2]["content"][0]["text"] == testing.CHAT_PROMPT

    live.save_session(session, store_dir)
    again = a3s_nb.open_store(store_dir).load(session_id)
    assert len(again.session.messages) == len(saved) + 2
    assert len(again.runs) == len(bundle.runs) + 1


def test_sdk_resumes_a_session_a3s_nb_built_from_scratch(agent, workspace, tmp_path):
    messages = [
        Message(role="user", content=[TextBlock(text="List the files")]),
        Message(
            role="assistant",
            content=[
                TextBlock(text="Looking."),
                ToolUseBlock(id="call_1", name="ls", input={"path": "."}),
            ],
        ),
        Message(
            role="user",
            content=[ToolResultBlock(tool_use_id="call_1", content="a.txt\n", is_error=False)],
        ),
        Message(role="assistant", content=[TextBlock(text="One file: a.txt.")]),
    ]
    session_data = SessionData(
        id="built-by-a3s-nb",
        config=SessionConfig(workspace=str(workspace)),
        messages=messages,
        model_name="openai/fake-model",
        llm_config=LlmConfigData(provider="openai", model="fake-model"),
        tool_names=["bash", "ls", "read"],
        created_at=1_790_000_000,
        updated_at=1_790_000_000,
    )
    store_dir = tmp_path / "store"
    a3s_nb.open_store(store_dir).save(SessionBundle(session=session_data))

    session = live.resume_session(agent, "built-by", store_dir)  # a prefix is enough
    assert session.history() == dump(messages)
    session.send(testing.WRITE_READ_PROMPT)
    assert (workspace / "notes.txt").read_text() == "hello from a3s_nb\n"
    assert len(session.history()) == len(messages) + 6
