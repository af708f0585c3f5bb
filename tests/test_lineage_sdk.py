"""Fork, diff and replay against the REAL a3s-code SDK, answered by the scripted LLM server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import a3s_nb
from a3s_nb import lineage, live, testing

from .conftest import on_disk

pytestmark = pytest.mark.sdk


def blocks(history: list[dict], kind: str) -> list[dict]:
    return [b for m in history for b in m["content"] if b["type"] == kind]


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    return path


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def source(sdk_agent, ws, store) -> str:
    """A saved SDK session of three prompts: write+read, failing bash, chat."""
    session = live.open_session(sdk_agent, ws, store_dir=store, session_id="src")
    session.send(testing.WRITE_READ_PROMPT)
    session.send(testing.FAILING_BASH_PROMPT)
    session.send(testing.CHAT_PROMPT)
    a3s_nb.save(session, store=store)
    session.close()
    return "src"


def test_fork_with_agent_is_live_and_lineage_survives_sdk_resume_and_save(
    sdk_agent, source, store, ws
):
    src_files = {p: p.read_bytes() for p in Path(store).rglob("*.json") if "src" in p.name}
    fork = a3s_nb.fork(source, at=2, store=store, agent=sdk_agent, new_id="branch")
    assert fork.session_id == "branch"
    kept = on_disk(store, "src")["session"]["messages"]
    end = lineage.prompts("src", store=store)[1].messages[1]
    assert fork.history() == kept[:end]  # the first two prompts, not the chat
    # carry on differently: a real tool call, in the same workspace
    fork.send(testing.READ_MISSING_PROMPT)
    assert blocks(fork.history(), "tool_result")[-1]["is_error"]
    fork.save()  # the SDK's own save rewrites every file of the fork
    doc = on_disk(store, "branch")["session"]
    assert doc["messages"] == fork.history()
    assert "lineage" not in json.dumps(doc)
    fork.close()
    # a new resume by the SDK itself, one more prompt, another SDK save
    again = live.resume_session(sdk_agent, "branch", store)
    again.send(testing.CHAT_PROMPT)
    again.save()
    again.close()
    assert len(lineage.prompts("branch", store=store)) == 4
    rec = a3s_nb.lineage_of("branch", store)
    assert (rec["kind"], rec["parent_id"], rec["at_prompt"], rec["of_prompts"]) == (
        "fork",
        "src",
        2,
        3,
    )
    # and the source was never touched
    assert {p: p.read_bytes() for p in src_files} == src_files


def test_rewind_keeps_the_name_and_the_original(sdk_agent, source, store):
    session = a3s_nb.resume(source, sdk_agent, store=store)
    before = len(session.history())
    session = a3s_nb.fork(session, at=1, store=store, agent=sdk_agent)  # rewind
    assert session.session_id == "src-fork-1" and len(session.history()) < before
    session.send(testing.CHAT_PROMPT)
    a3s_nb.save(session, store=store)
    assert [p.text for p in lineage.prompts("src-fork-1", store=store)] == [
        testing.WRITE_READ_PROMPT,
        testing.CHAT_PROMPT,
    ]
    assert len(lineage.prompts("src", store=store)) == 3  # the original stays as it was


def test_fork_magic_with_agent_rewinds_a_live_session(ip, sdk_agent, source, store, capsys):
    ip.push({"agent": sdk_agent})
    ip.run_line_magic("a3s_fork", f"src --at 2 --as session --agent agent --store {store}")
    session = ip.user_ns["session"]
    assert "live; session.send(...) continues it" in capsys.readouterr().out
    result = session.send(testing.WRITE_READ_PROMPT)  # real tools run in the fork
    assert result.tool_calls_count == 2
    ip.run_line_magic("a3s_save", f"session --store {store}")
    assert len(lineage.prompts("src-fork-1", store=store)) == 3
    assert a3s_nb.lineage_of("src-fork-1", store)["at_prompt"] == 2
