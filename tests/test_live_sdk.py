"""a3s_nb.sdk.live against the REAL a3s-code SDK, answered by the scripted LLM server."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest

from a3s_nb import testing
from a3s_nb.errors import CorruptFileError, SessionNotFoundError, StoreError
from a3s_nb.sdk import live

from .conftest import blocks, on_disk


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


# --------------------------------------------------------------- without the SDK at all


def test_missing_sdk_gives_the_pip_line(monkeypatch, ws):
    monkeypatch.setitem(sys.modules, "a3s_code", None)  # makes `import a3s_code` fail
    with pytest.raises(ImportError) as info:
        live.open_session(object(), ws)
    assert str(info.value) == 'pip install "a3s-code==3.1.0"'


@pytest.mark.parametrize("ci", ["true", ""])
def test_missing_sdk_fails_in_ci_and_skips_elsewhere(monkeypatch, request, ci):
    monkeypatch.setitem(sys.modules, "a3s_code", None)
    monkeypatch.setenv("CI", ci)
    expected = pytest.fail.Exception if ci else pytest.skip.Exception
    with pytest.raises(expected, match=re.escape('pip install "a3s-code==3.1.0"')):
        request.getfixturevalue("a3s_code")


# ------------------------------------------------------------------------- the SDK bug


def _sdk_version() -> str | None:
    try:
        return metadata.version("a3s-code")
    except metadata.PackageNotFoundError:
        return None  # the a3s_code fixture fails (CI) or skips


@pytest.mark.sdk
@pytest.mark.skipif(
    _sdk_version() not in (None, "3.1.0"), reason="documents the a3s-code 3.1.0 bug"
)
def test_plain_sdk_call_does_not_persist_on_3_1_0(a3s_code, sdk_agent, ws, store):
    """Why live.py exists: the store given to agent.session() is silently ignored."""
    opts = a3s_code.SessionOptions()
    opts.session_store = a3s_code.FileSessionStore(str(store))
    opts.session_id = "plain"
    session = sdk_agent.session(str(ws), opts)
    session.send(testing.CHAT_PROMPT)
    assert session.save() is None
    assert not (store / "plain.json").exists()
    with pytest.raises(live.LiveSessionError, match="save\\(\\) wrote nothing"):
        live.save_session(session, store)


# ------------------------------------------------------------------------ open_session


@pytest.mark.sdk
def test_open_session_persists_a_tool_round(sdk_agent, ws, store):
    session = live.open_session(sdk_agent, ws, store_dir=store, session_id="s1")
    assert session.session_id == "s1"
    result = session.send(testing.WRITE_READ_PROMPT)
    assert result.tool_calls_count == 2
    assert (ws / "notes.txt").read_text() == "hello from a3s_nb\n"  # tools were allowed
    assert not (store / "s1.json").exists()  # no auto-save: nothing before save()
    session.save()
    files = on_disk(store, "s1")
    history = session.history()
    assert files["session"]["messages"] == history
    assert [m["role"] for m in history] == [
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    uses, results = blocks(history, "tool_use"), blocks(history, "tool_result")
    assert [u["name"] for u in uses] == ["write", "read"]
    assert [r["tool_use_id"] for r in results] == [u["id"] for u in uses]
    assert [r["is_error"] for r in results] == [False, False]
    assert "hello from a3s_nb" in results[1]["content"]
    assert [r["snapshot"]["status"] for r in files["runs"]] == ["completed"]
    assert [t["name"] for t in files["traces"]] == ["write", "read"]


@pytest.mark.sdk
def test_tools_not_allowed_end_in_errors(sdk_agent, ws, store):
    session = live.open_session(sdk_agent, ws, store_dir=store, allow_tools=False)
    session.send(testing.WRITE_READ_PROMPT)
    results = blocks(session.history(), "tool_result")
    assert results and all(r["is_error"] for r in results)
    assert "requires confirmation" in results[0]["content"]
    assert not (ws / "notes.txt").exists()


@pytest.mark.sdk
def test_failing_bash_and_missing_file_are_errors(sdk_agent, ws, store):
    session = live.open_session(sdk_agent, ws, store_dir=store)
    session.send(testing.FAILING_BASH_PROMPT)
    session.send(testing.READ_MISSING_PROMPT)
    bash, read = blocks(session.history(), "tool_result")
    assert bash["is_error"] and "something broke" in bash["content"]
    assert read["is_error"] and "no-such-file.txt" in read["content"]


@pytest.mark.sdk
def test_llm_error_fails_the_run_and_leaves_history_alone(sdk_agent, ws, store):
    session = live.open_session(sdk_agent, ws, store_dir=store)
    session.send(testing.CHAT_PROMPT)
    before = session.history()
    with pytest.raises(RuntimeError, match="400"):
        session.send(testing.LLM_ERROR_PROMPT)
    assert session.history() == before
    failed = session.runs()[-1]
    assert failed["status"] == "failed"
    assert failed["prompt"] == testing.LLM_ERROR_PROMPT
    assert "scripted failure" in failed["error"]


@pytest.mark.sdk
def test_large_output_becomes_an_artifact(sdk_agent, ws, store):
    session = live.open_session(sdk_agent, ws, store_dir=store, session_id="big")
    session.send(testing.LARGE_OUTPUT_PROMPT)
    (result,) = blocks(session.history(), "tool_result")
    assert "a3s://tool-output/bash/" in result["content"]
    session.save()
    (artifact,) = on_disk(store, "big")["artifacts"]["artifacts"]
    assert artifact["original_bytes"] > 100 * 1024
    assert artifact["artifact_uri"] in result["content"]
    assert session.get_artifact(artifact["artifact_uri"])["content"] == artifact["content"]


@pytest.mark.sdk
def test_planning_run(sdk_agent, ws, store):
    session = live.open_session(sdk_agent, ws, store_dir=store)
    session.send(testing.PLANNING_PROMPT)
    history = session.history()
    assert history[0]["content"][0]["text"].startswith(f"Goal: {testing.PLANNING_PROMPT}")
    assert (ws / "report.md").exists()
    events = session.run_events(session.runs()[-1]["id"])
    assert {"planning_start", "planning_end", "step_start"} <= {e["event"]["type"] for e in events}


@pytest.mark.sdk
def test_option_fields_and_options_object(a3s_code, sdk_agent, ws, store):
    opts = a3s_code.SessionOptions()
    opts.permission_policy = a3s_code.PermissionPolicy(default_decision="deny")
    session = live.open_session(sdk_agent, ws, store_dir=store, options=opts, max_tool_rounds=5)
    assert opts.max_tool_rounds == 5
    assert opts.permission_policy.default_decision == "deny"  # an explicit policy wins
    session.send(testing.FAILING_BASH_PROMPT)
    assert blocks(session.history(), "tool_result")[0]["is_error"]
    with pytest.raises(TypeError, match="unknown SessionOptions field 'max_rounds'"):
        live.open_session(sdk_agent, ws, store_dir=store, max_rounds=5)


@pytest.mark.sdk
def test_open_session_refuses_a_taken_id_and_a_missing_workspace(sdk_agent, ws, store, tmp_path):
    session = live.open_session(sdk_agent, ws, store_dir=store, session_id="taken")
    session.send(testing.CHAT_PROMPT)
    session.save()
    with pytest.raises(live.SessionExistsError, match="resume_session"):
        live.open_session(sdk_agent, ws, store_dir=store, session_id="taken")
    assert len(on_disk(store, "taken")["session"]["messages"]) == 2  # untouched
    with pytest.raises(FileNotFoundError, match="create it first"):
        live.open_session(sdk_agent, tmp_path / "nowhere", store_dir=store)


@pytest.mark.sdk
def test_default_store_is_the_a3s_nb_one(sdk_agent, ws, tmp_path, monkeypatch):
    monkeypatch.setenv("A3S_NB_STORE", str(tmp_path / "env-store"))
    session = live.open_session(sdk_agent, ws, session_id="env")
    session.send(testing.CHAT_PROMPT)
    assert live.save_session(session) == tmp_path / "env-store" / "env.json"


@pytest.mark.sdk
def test_in_sdk_runtime_propagates_exceptions_and_calls_no_model(sdk_agent, scripted_llm):
    def boom():
        raise KeyError("inside")

    with pytest.raises(KeyError, match="inside"):
        live.in_sdk_runtime(sdk_agent, boom)
    assert live.in_sdk_runtime(sdk_agent, lambda: 42) == 42
    assert scripted_llm.requests == []  # the slash command never reaches the model


# ---------------------------------------------------------------------- resume_session


@pytest.mark.sdk
def test_resume_restores_history_and_keeps_persisting(a3s_code, scripted_llm, ws, store):
    agent = a3s_code.Agent.create(scripted_llm.acl_config())
    session = live.open_session(agent, ws, store_dir=store, session_id="r1")
    session.send(testing.WRITE_READ_PROMPT)
    session.save()
    saved = session.history()
    session.close()

    # a different Agent object, as in a new kernel
    agent2 = a3s_code.Agent.create(scripted_llm.acl_config())
    resumed = live.resume_session(agent2, "r1", store)
    assert resumed.session_id == "r1"
    assert resumed.history() == saved
    resumed.send(testing.FAILING_BASH_PROMPT)
    history = resumed.history()
    assert history[: len(saved)] == saved
    assert history[len(saved)]["content"][0]["text"] == testing.FAILING_BASH_PROMPT
    assert len(history) == len(saved) + 4
    live.save_session(resumed, store)  # the resumed session persists too
    assert on_disk(store, "r1")["session"]["messages"] == history
    assert [r["snapshot"]["status"] for r in on_disk(store, "r1")["runs"]] == ["completed"] * 2
    # and resumes again, by a unique prefix of its id
    assert live.resume_session(agent2, "r", store).history() == history


@pytest.mark.sdk
def test_resume_errors_say_what_to_do(sdk_agent, ws, store, tmp_path):
    session = live.open_session(sdk_agent, ws, store_dir=store, session_id="known-session")
    session.send(testing.CHAT_PROMPT)
    session.save()

    with pytest.raises(SessionNotFoundError, match="did you mean 'known-session'"):
        live.resume_session(sdk_agent, "known-sesion", store)
    with pytest.raises(StoreError, match="no store"):
        live.resume_session(sdk_agent, "known-session", tmp_path / "no-store")
    assert not (tmp_path / "no-store").exists()

    # the saved model is not configured: say which block to add, or resume on another model
    doc = on_disk(store, "known-session")["session"]
    doc["id"] = "other-model"
    doc["llm_config"]["model"] = "gpt-other"
    (store / "other-model.json").write_text(json.dumps(doc))
    with pytest.raises(live.ModelNotConfiguredError) as info:
        live.resume_session(sdk_agent, "other-model", store)
    message = str(info.value)
    assert "model 'openai/gpt-other'" in message
    assert 'models "gpt-other"' in message and 'providers "openai"' in message
    assert isinstance(info.value, LookupError)
    resumed = live.resume_session(sdk_agent, "other-model", store, model="openai/fake-model")
    assert resumed.send(testing.CHAT_PROMPT).text.startswith("Hello!")

    # a torn fragment names its file
    traces = store / "traces" / "known-session.json"
    traces.write_text("")
    with pytest.raises(CorruptFileError) as info:
        live.resume_session(sdk_agent, "known-session", store)
    assert info.value.path == str(traces)


# --------------------------------------------------------------------------- settling


@pytest.mark.sdk
def test_stream_settles_history_before_the_next_send(sdk_agent, ws, store):
    session = live.open_session(sdk_agent, ws, store_dir=store)
    for turn in range(20):  # unsettled, about 1 in 30 streamed turns is lost
        events = [e.event_type for e in live.stream(session, f"stream turn {turn}")]
        assert events[-1] == "end"
        assert session.current_run() is None  # busy for about 1 in 4 turns without the wait
        session.send(testing.CHAT_PROMPT)
        assert len(session.history()) == 4 * (turn + 1)


@pytest.mark.sdk
def test_wait_for_autosave(sdk_agent, ws, store):
    session = live.open_session(sdk_agent, ws, store_dir=store, session_id="auto", auto_save=True)
    live.wait_for_autosave(session, store)  # nothing completed yet: returns at once
    # after stream() the auto-save runs in the background: no file exists yet when the
    # iterator ends (after send() it was always complete in our runs)
    for _ in session.stream(testing.WRITE_READ_PROMPT):
        pass
    live.wait_for_autosave(session, store)
    files = on_disk(store, "auto")
    assert files["session"]["messages"] == session.history()
    assert files["runs"][0]["snapshot"]["status"] == "completed"
    with pytest.raises(RuntimeError):
        session.send(testing.LLM_ERROR_PROMPT)  # failed runs are not auto-saved...
    live.wait_for_autosave(session, store)  # ...so there is nothing more to wait for


@pytest.mark.sdk
def test_wait_for_autosave_times_out_without_auto_save(sdk_agent, ws, store):
    session = live.open_session(sdk_agent, ws, store_dir=store, session_id="manual")
    session.send(testing.CHAT_PROMPT)
    with pytest.raises(live.NotSettledError, match="auto_save=True"):
        live.wait_for_autosave(session, store, timeout=0.2)


@pytest.mark.sdk
def test_exit_right_after_wait_for_autosave_leaves_a_resumable_store(
    sdk_agent, scripted_llm, ws, store
):
    """Exiting right after an auto-saved stream() leaves no files (or a stray .tmp) in
    nearly every run; after the wait the store is complete."""
    script = textwrap.dedent(
        f"""
        import os, sys
        import a3s_code
        from a3s_nb.sdk import live
        agent = a3s_code.Agent.create(sys.argv[1])
        session = live.open_session(agent, {str(ws)!r}, store_dir={str(store)!r},
                                    session_id="child", auto_save=True)
        for _ in session.stream({testing.LARGE_OUTPUT_PROMPT!r}):
            pass
        live.wait_for_autosave(session, {str(store)!r})
        os._exit(0)
        """
    )
    subprocess.run(
        [sys.executable, "-c", script, scripted_llm.acl_config()], check=True, timeout=60
    )
    assert not list(store.glob("*.tmp"))
    files = on_disk(store, "child")  # every file parses
    assert len(files["artifacts"]["artifacts"]) == 1
    resumed = live.resume_session(sdk_agent, "child", store)
    assert resumed.history() == files["session"]["messages"]
    assert len(resumed.history()) == 4
