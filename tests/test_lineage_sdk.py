"""Fork, diff and replay against the REAL a3s-code SDK, answered by the scripted LLM server."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

import a3s_nb
from a3s_nb import api, testing
from a3s_nb.lab import lineage
from a3s_nb.sdk import live

from .conftest import blocks, on_disk

pytestmark = pytest.mark.sdk


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


# ------------------------------------------------------------------- replay, two models


@pytest.fixture
def calc_llm():
    with testing.ScriptedLLM(testing.calculator_script(), models=("quick", "careful")) as llm:
        yield llm


@pytest.fixture
def calc_agent(a3s_code, calc_llm):
    return a3s_code.Agent.create(calc_llm.acl_config("quick"))


@pytest.fixture
def calc(calc_agent, tmp_path, store) -> str:
    """The calculator story on the quick model: prompt 3 breaks the tests; checked after."""
    ws = tmp_path / "calc"
    ws.mkdir()
    session = live.open_session(calc_agent, ws, store_dir=store, session_id="calc")
    for prompt in testing.CALC_PROMPTS:
        session.send(prompt)
    lineage.record_checks(session, [testing.CALC_CHECK])
    a3s_nb.save(session, store=store)
    session.close()
    return "calc"


def test_the_two_models_differ_at_the_third_prompt(calc, store):
    ps = lineage.prompts(calc, store=store)
    assert [p.status for p in ps] == ["completed"] * 3
    assert [t.ok for t in ps[1].tools] == [True, True]  # the test passes after prompt 2
    assert [(t.name, t.ok) for t in ps[2].tools] == [("write", True), ("bash", False)]
    report = a3s_nb.open_store(store).load(calc).verification
    assert [(c.id, c.status, c.required) for r in report for c in r.checks] == [
        ("tests", "failed", True)
    ]


def test_replay_on_the_careful_model_and_diff(calc, calc_agent, calc_llm, store, tmp_path):
    src_ws = Path(a3s_nb.open_store(store).load(calc).session.config.workspace)
    before = {p.name: p.read_bytes() for p in src_ws.iterdir()}
    calc_llm.clear_requests()
    result = a3s_nb.replay(
        calc, calc_agent, model="openai/careful", store=store, verify=[testing.CALC_CHECK]
    )
    assert result.session_id == "calc-replay-1" and result.model == "openai/careful"
    assert {r.body["model"] for r in calc_llm.requests if r.kind == "chat"} == {"careful"}
    # the source's files were not touched: the replay worked in a copy
    assert {p.name: p.read_bytes() for p in src_ws.iterdir()} == before
    assert Path(result.workspace) != src_ws and (Path(result.workspace) / "calc.py").exists()
    assert result.ok and result.regressions == []
    df = result.diff
    prompts = df[df["kind"] == "prompt"]
    assert prompts["change"].tolist() == ["same", "same", "changed"]
    third = df[(df["kind"] == "tool") & (df["prompt_a"].eq(3) | df["prompt_b"].eq(3))]
    assert third[["tool_a", "tool_b", "change"]].astype(object).where(
        third.notna(), None
    ).values.tolist() == [
        ["write", "write", "changed"],  # other code
        [None, "write", "only_b"],  # the careful model also extends the test: one added row
        ["bash", "bash", "changed"],  # the same command, error -> ok
    ]
    assert third["status_a"].tolist()[2] == "error" and third["status_b"].tolist()[2] == "ok"
    rec = a3s_nb.lineage_of("calc-replay-1", store)
    assert (rec["kind"], rec["parent_id"], rec["model"], rec["tools"]) == (
        "replay",
        "calc",
        "openai/careful",
        "ran again",
    )
    sessions = a3s_nb.sessions(store).set_index("session_id")
    assert sessions.loc["calc-replay-1", "lineage_model"] == "openai/careful"
    summary = a3s_nb.diff_summary(df)
    assert summary.loc["tool_errors"].tolist() == [1, 0, -1]
    result.session.close()


def test_replay_regressions_fail_the_cli(calc, calc_agent, calc_llm, store, tmp_path, capsys):
    good = a3s_nb.replay(
        calc, calc_agent, model="openai/careful", store=store, verify=[testing.CALC_CHECK]
    )
    good.session.close()
    config = tmp_path / "agent.acl"
    config.write_text(calc_llm.acl_config("quick"))
    from a3s_nb import cli

    check = f"--check=tests={testing.CALC_CHECK['command']}"
    # the careful session replayed on the quick model: the required check now fails
    code = cli.main(["replay", good.session_id, "--model", "openai/quick", "--store", str(store),
                     "--config", str(config), check])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 1, out
    assert "required check 'tests' of 'checks': passed in the source, failed in the replay" in out
    # and on the careful model again: nothing got worse
    code = cli.main(["replay", good.session_id, "--model", "openai/careful", "--store",
                     str(store), "--config", str(config), check])  # fmt: skip
    assert code == 0, capsys.readouterr().out
    assert a3s_nb.lineage_of(f"{good.session_id}-replay-1", store)["model"] == "openai/quick"


def test_replay_cli_errors_exit_2(store, tmp_path, capsys, calc):
    from a3s_nb import cli

    assert cli.main(["replay", "calc", "--store", str(store)]) == 2
    assert "needs an agent" in capsys.readouterr().err
    config = tmp_path / "agent.acl"
    config.write_text("x")
    assert cli.main(["replay", "calc", "--store", str(store), "--config", str(config),
                     "--check", "nocommand"]) == 2  # fmt: skip
    assert "is not ID=COMMAND" in capsys.readouterr().err


def test_replay_magic(ip, calc, calc_agent, store, capsys):
    from a3s_nb.widgets import DiffView

    ip.push({"agent": calc_agent})
    view = ip.run_line_magic(
        "a3s_replay", f"calc --agent agent --model openai/careful --store {store}"
    )
    out = capsys.readouterr().out
    assert out.startswith("replay: replayed calc on openai/careful as calc-replay-1: 3 prompts")
    assert "tools ran again" in out
    assert isinstance(view, DiffView) and view.shared == 2
    result = ip.user_ns["replay"]
    assert result.ok and result.session.session_id == "calc-replay-1"
    result.session.close()


def test_a_fork_in_a_copied_workspace_is_the_same_up_to_the_cut(calc, calc_agent, store, tmp_path):
    fork = a3s_nb.fork(calc, at=2, store=store, agent=calc_agent, workspace=tmp_path / "branch")
    assert fork.workspace == str(tmp_path / "branch")
    fork.send(testing.CALC_FORK_PROMPT)
    a3s_nb.save(fork, store=store)
    fork.close()
    assert "The sum of a and b" in (tmp_path / "branch" / "calc.py").read_text()
    df = a3s_nb.diff(calc, "calc-fork-1", store=store)
    assert df[df["kind"] == "prompt"]["change"].tolist() == ["same", "same", "changed"]


def test_replay_cli_finds_the_store_in_the_environment(
    calc, calc_llm, store, tmp_path, monkeypatch, capsys
):
    from a3s_nb import cli

    config = tmp_path / "agent.acl"
    config.write_text(calc_llm.acl_config("quick"))
    monkeypatch.setenv("A3S_NB_STORE", str(store))
    assert cli.main(["replay", "calc", "--config", str(config)]) == 0
    assert "replayed calc on openai/quick as calc-replay-1" in capsys.readouterr().out


def test_diff_of_live_sessions(calc, calc_agent, store, ip):
    live_src = a3s_nb.resume(calc, calc_agent, store=store)  # live, not the saved file
    result = a3s_nb.replay(calc, calc_agent, model="openai/careful", store=store)
    df = a3s_nb.diff(live_src, result.session)
    assert df.attrs["a"] == "calc" and df.attrs["b"] == "calc-replay-1"
    assert df[df["kind"] == "prompt"]["change"].tolist() == ["same", "same", "changed"]
    # the magic takes variables holding live sessions too
    ip.push({"src": live_src, "rep": result.session})
    assert ip.run_line_magic("a3s_diff", f"src rep --store {store}").shared == 2
    live_src.close()
    result.session.close()


# ------------------------------------------------------------------- a replay's workspace


@pytest.fixture
def system_tmp(tmp_path, monkeypatch) -> Path:
    """The system temp folder, private to the test (and wiped by a "reboot")."""
    path = tmp_path / "systmp"
    path.mkdir()
    monkeypatch.setenv("TMPDIR", str(path))
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    return path


def _full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_replay_works_in_the_store_and_resumes_after_a_reboot(
    calc, calc_agent, store, system_tmp
):
    result = a3s_nb.replay(calc, calc_agent, model="openai/careful", store=store)
    result.session.close()
    ws = Path(store) / ".a3s_nb" / "workspaces" / "calc-replay-1"
    assert Path(result.workspace) == ws
    assert (ws / "calc.py").is_file()
    assert a3s_nb.lineage_of("calc-replay-1", store)["workspace"] == str(ws)
    shutil.rmtree(system_tmp)  # a reboot empties the system temp folder
    system_tmp.mkdir()
    saved = a3s_nb.open_store(store).load("calc-replay-1")
    assert saved.session.config.workspace == str(ws)
    again = live.resume_session(calc_agent, "calc-replay-1", store)  # by the SDK itself
    try:
        assert Path(again.workspace() if callable(again.workspace) else again.workspace) == ws
    finally:
        again.close()
    assert (ws / "calc.py").is_file()


def test_a_failed_replay_leaves_no_workspace(calc, calc_agent, store, system_tmp, monkeypatch):
    monkeypatch.setattr(api, "save", _full_disk)
    with pytest.raises(OSError, match="No space left"):
        a3s_nb.replay(calc, calc_agent, model="openai/careful", store=store)
    assert list(system_tmp.iterdir()) == []  # no a3s_nb_replay_* folder
    workspaces = Path(store) / ".a3s_nb" / "workspaces"
    assert not workspaces.exists() or list(workspaces.iterdir()) == []
    assert not a3s_nb.open_store(store).exists("calc-replay-1")
    assert a3s_nb.lineage_of("calc-replay-1", store) is None
    monkeypatch.undo()
    result = a3s_nb.replay(calc, calc_agent, model="openai/careful", store=store)
    result.session.close()  # the same id again, now that the disk has room
    assert result.session_id == "calc-replay-1" and (workspaces / "calc-replay-1").is_dir()


def test_a_failed_replay_removes_the_workspace_it_was_given(
    calc, calc_agent, store, tmp_path, monkeypatch
):
    monkeypatch.setattr(api, "save", _full_disk)
    made, empty = tmp_path / "new-ws", tmp_path / "empty-ws"
    empty.mkdir()
    for ws in (made, empty):
        with pytest.raises(OSError, match="No space left"):
            a3s_nb.replay(calc, calc_agent, store=store, workspace=ws)
    assert not made.exists()  # made by the replay: gone
    assert empty.is_dir() and list(empty.iterdir()) == []  # given empty: left empty


def test_a_workspace_is_never_made_through_a_link(calc, calc_agent, store, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    base = Path(store) / ".a3s_nb" / "workspaces"
    base.mkdir(parents=True)
    (base / "calc-replay-1").symlink_to(outside)
    with pytest.raises(a3s_nb.A3sNbError, match="calc-replay-1"):
        a3s_nb.replay(calc, calc_agent, store=store)
    assert list(outside.iterdir()) == []
    (base / "calc-replay-1").unlink()
    base.rmdir()
    base.symlink_to(outside)  # the folder of workspaces itself
    with pytest.raises(a3s_nb.A3sNbError, match="outside the store"):
        a3s_nb.replay(calc, calc_agent, store=store)
    assert list(outside.iterdir()) == []
    assert not a3s_nb.open_store(store).exists("calc-replay-1")
