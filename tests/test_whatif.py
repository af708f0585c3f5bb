"""What-if forks: a fork whose history holds edited tool results (``fork(..., edits=)``)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

import a3s_nb
from a3s_nb import testing
from a3s_nb.errors import EditError, ForkError
from a3s_nb.lab import lineage
from a3s_nb.sdk import live

from .conftest import blocks, on_disk

OSCAR = "fix-oscar-2-000"  # 5 prompts: write+read, failing bash, missing read, task, chat
BASH = "call_807eea852e50319b4d7df49d"  # prompt 2: the failing check script
READ = "call_07e3bd317fd25b256e8a4b4c"  # prompt 1: read docs/echo_0_1.md back
MISSING = "call_dfb530e34f11931de30d8160"  # prompt 3: read a missing file
ARTIFACT = "4287140e-de98-4f72-8e72-c616a812fc99"  # prompt 5's bash output is an artifact
BIG_BASH = "call_7e83cb55649ab0722d496696"
NEW = "all 12 checks passed\n"


def hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


def tool_results(doc: dict) -> dict[str, dict]:
    return {b["tool_use_id"]: b for b in blocks(doc["session"]["messages"], "tool_result")}


def tool_ends(doc: dict) -> dict[str, dict]:
    return {
        e["event"]["id"]: e["event"]
        for run in doc["runs"]
        for e in run["events"]
        if e["event"]["type"] == "tool_end"
    }


# ------------------------------------------------------------------------------ the fork


def test_an_edited_fork_holds_the_new_output_and_the_parent_is_untouched(fixture_dir):
    before = hashes(fixture_dir)
    fork = a3s_nb.fork(OSCAR, at=2, store=fixture_dir, edits={BASH: NEW}, new_id="what-if")
    after = hashes(fixture_dir)
    assert {k: v for k, v in after.items() if k in before} == before  # byte-identical
    assert {k for k in set(after) - set(before) if "what-if" in k} == {
        "what-if.json",
        "runs/what-if.json",
        "traces/what-if.json",
        "verification/what-if.json",
        "artifacts/what-if/artifacts.json",
        ".a3s_nb/lineage/what-if.json",
    }
    src, got = on_disk(fixture_dir, OSCAR), on_disk(fixture_dir, "what-if")
    # what the model reads when the fork continues: the tool_result, its error flag kept
    old, new = tool_results(src)[BASH], tool_results(got)[BASH]
    assert new == {**old, "content": NEW} and new["is_error"] is True
    # the run's record of the call says the same; its exit code is kept
    assert tool_ends(got)[BASH] == {**tool_ends(src)[BASH], "output": NEW}
    # and the call's trace (matched by name, exit code and size) has the new size
    bash = [t for t in got["traces"] if t["name"] == "bash"]
    assert [t["output_bytes"] for t in bash] == [len(NEW.encode())]
    assert got["traces"][:2] == src["traces"][:2]
    # everything else is the plain fork's
    plain = lineage.cut(a3s_nb.FileStore(fixture_dir).load(OSCAR), 2)
    assert [
        m for m in got["session"]["messages"] if m["content"][0].get("tool_use_id") != BASH
    ] == [
        m.model_dump(mode="json", by_alias=True)
        for m in plain.session.messages
        if getattr(m.content[0], "tool_use_id", None) != BASH
    ]
    assert lineage.prompts(fork)[1].tools[0].result == NEW


def test_the_lineage_records_each_edit(fixture_store):
    old = lineage.prompts(OSCAR, store=fixture_store)[0].tools[1].result
    a3s_nb.fork(OSCAR, at=2, store=fixture_store, edits={BASH: NEW, READ: ""}, new_id="e2")
    rec = a3s_nb.lineage_of("e2", fixture_store)
    assert sorted(rec["edits"], key=lambda e: e["prompt"]) == [
        {
            "call_id": READ,
            "tool": "read",
            "prompt": 1,
            "old_sha256": hashlib.sha256(old.encode()).hexdigest(),
            "new_length": 0,
        },
        {
            "call_id": BASH,
            "tool": "bash",
            "prompt": 2,
            "old_sha256": hashlib.sha256(b"running check 0_2\nerror: check failed\n").hexdigest(),
            "new_length": len(NEW),
        },
    ]
    a3s_nb.fork(OSCAR, at=2, store=fixture_store, new_id="plain")
    assert a3s_nb.lineage_of("plain", fixture_store)["edits"] == []


def test_the_lineage_columns_say_a_fork_is_edited(fixture_store):
    a3s_nb.fork(OSCAR, at=2, store=fixture_store, edits={BASH: NEW, READ: "x"}, new_id="e2")
    a3s_nb.fork(OSCAR, at=2, store=fixture_store, new_id="plain")
    df = a3s_nb.sessions(fixture_store).set_index("session_id")
    assert str(df["lineage_edits"].dtype) == "Int64"
    assert df.loc["e2", "lineage_edits"] == 2
    assert df.loc["plain", "lineage_edits"] == 0
    assert df["lineage_edits"].isna().sum() == len(df) - 2  # not made by a3s_nb
    frame = a3s_nb.lineage_frame(fixture_store).set_index("session_id")
    assert frame["lineage_edits"].to_dict() == {"e2": 2, "plain": 0}
    assert str(frame["lineage_edits"].dtype) == "Int64"


def test_diff_shows_the_edited_call_as_changed_output(fixture_store):
    a3s_nb.fork(OSCAR, at=2, store=fixture_store, edits={BASH: NEW}, new_id="what-if")
    d = a3s_nb.diff(OSCAR, "what-if", store=fixture_store)
    changed = d[d["change"] == "changed"]
    assert changed[["kind", "tool_a", "what_changed"]].astype(object).where(
        changed.notna(), None
    ).values.tolist() == [["prompt", None, "tools"], ["tool", "bash", "output"]]
    row = changed.iloc[1]
    assert (row.text_a, row.text_b) == ("running check 0_2\nerror: check failed\n", NEW)
    assert (row.status_a, row.status_b) == ("error", "error")
    assert d.loc[d["change"] == "same", "what_changed"].isna().all()
    assert set(d.loc[d["prompt_a"] > 2, "change"]) == {"only_a"}


def test_an_edit_drops_the_artifact_only_the_old_output_named(fixture_store):
    src = fixture_store.load(ARTIFACT)
    uri = src.artifacts.artifacts[0].artifact_uri
    assert uri.startswith("a3s://tool-output/bash/")
    f = a3s_nb.fork(ARTIFACT, at=5, store=fixture_store, edits={BIG_BASH: "3 lines"}).bundle
    assert f.artifacts.artifacts == []
    ends = [e.event for r in f.runs for e in r.events if e.event.type == "tool_end"]
    assert [e.metadata for e in ends if e.id == BIG_BASH] == [{"exit_code": 0}]
    bash = [t for t in f.traces if t.name == "bash"]
    assert [(t.output_bytes, t.artifact_uris) for t in bash] == [(7, [])]
    # a new text that still names the artifact keeps it
    kept = a3s_nb.fork(ARTIFACT, at=5, store=fixture_store, edits={BIG_BASH: f"see {uri}"})
    assert [a.artifact_uri for a in kept.bundle.artifacts.artifacts] == [uri]
    assert [t.artifact_uris for t in kept.bundle.traces if t.name == "bash"] == [[uri]]


def test_cut_applies_edits_too(fixture_store):
    bundle = lineage.cut(fixture_store.load(OSCAR), 2, edits={BASH: NEW})
    assert lineage._prompts(bundle)[1].tools[0].result == NEW
    with pytest.raises(EditError, match="after the cut"):
        lineage.cut(fixture_store.load(OSCAR), 2, edits={MISSING: NEW})


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("source", "at", "edits", "message"),
    [
        (OSCAR, 2, {"call_nope": "x"}, "no tool call 'call_nope' in session fix-oscar-2-000"),
        (OSCAR, 2, {MISSING: "x"}, f"'{MISSING}' \\(read\\) is in prompt 3, after the cut"),
        (OSCAR, 2, {}, "edits is empty"),
        (OSCAR, 2, {BASH: 3}, f"'{BASH}': int"),
        (OSCAR, 2, {BASH: None}, f"'{BASH}': NoneType"),
        (OSCAR, 2, {7: "x"}, "7: str"),
        (OSCAR, 2, [(BASH, "x")], "not a list"),
        (OSCAR, 2, BASH, "not a str"),
    ],
)
def test_bad_edits_are_refused_and_nothing_is_written(fixture_dir, source, at, edits, message):
    before = hashes(fixture_dir)
    with pytest.raises(EditError, match=message) as info:
        a3s_nb.fork(source, at=at, store=fixture_dir, edits=edits)
    assert isinstance(info.value, ForkError) and isinstance(info.value, ValueError)
    assert hashes(fixture_dir) == before


def test_the_error_names_the_calls_that_can_be_edited(fixture_store):
    with pytest.raises(EditError) as info:
        a3s_nb.fork(OSCAR, at=2, store=fixture_store, edits={"call_nope": "x", MISSING: "y"})
    text = str(info.value)
    assert "no tool call 'call_nope'" in text and "after the cut at prompt 2" in text
    assert text.endswith(
        "The calls that can be edited (in the kept prompts 1 to 2): "
        "call_b7b67b5a362e495826b6e6e0 (write, prompt 1), "
        f"{READ} (read, prompt 1), {BASH} (bash, prompt 2)"
    )


def test_calls_the_model_never_read_cannot_be_edited(fixture_store):
    # prompt 3's run failed: it left nothing in the transcript, only its tool_end event
    failed = fixture_store.load(OSCAR)
    failed.runs[2].snapshot.status = "failed"
    del failed.session.messages[10:14]
    assert [t.id for t in lineage.prompts(failed)[2].tools] == [MISSING]
    # prompt 2's call has no result in the transcript (a run cut short)
    unanswered = fixture_store.load(OSCAR)
    del unanswered.session.messages[8]
    store = a3s_nb.MemoryStore()
    with pytest.raises(EditError, match="prompt 3\\) is not in the transcript: its run failed"):
        a3s_nb.fork(failed, at=3, store=store, edits={MISSING: "y"})
    with pytest.raises(EditError, match="prompt 2\\) is not in the transcript: it has no result"):
        a3s_nb.fork(unanswered, at=2, store=store, edits={BASH: "y"})
    assert store.list() == [] and a3s_nb.lineage_frame(store).empty


# ------------------------------------------------------------------------------ the magic


def test_fork_magic_edit(ip, fixture_dir, capsys):
    ip.run_line_magic(
        "a3s_fork",
        f"{OSCAR} --at 2 --edit '{BASH}=all 12 checks passed' --edit {READ}= --store {fixture_dir}",
    )
    out = capsys.readouterr().out
    assert "after prompt 2 of 5, 2 tool results edited (read-only" in out
    fork = ip.user_ns["fork"]
    tools = lineage.prompts(fork)
    assert (tools[1].tools[0].result, tools[0].tools[1].result) == ("all 12 checks passed", "")
    rec = a3s_nb.lineage_of(fork.id, fixture_dir)
    assert {e["call_id"]: e["new_length"] for e in rec["edits"]} == {BASH: 20, READ: 0}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (f"{BASH}", "is not CALL_ID=TEXT"),
        ("=text", "is not CALL_ID=TEXT"),
        (f"{BASH}=a --edit {BASH}=b", "gives tool call .* twice"),
        ("call_nope=x", "no tool call 'call_nope'.* can be edited .*: call_b7b6"),
        (f"{MISSING}=x", "after the cut at prompt 2"),
    ],
)
def test_fork_magic_bad_edit_is_a_usage_error_and_writes_nothing(ip, fixture_dir, edit, message):
    from IPython.core.error import UsageError

    before = hashes(fixture_dir)
    with pytest.raises(UsageError, match=message) as info:
        ip.run_line_magic("a3s_fork", f"{OSCAR} --at 2 --edit {edit} --store {fixture_dir}")
    assert type(info.value) is UsageError
    assert hashes(fixture_dir) == before
    assert "fork" not in ip.user_ns


# ---------------------------------------------------------------------------- the command


def test_show_prompts_lists_the_numbers_and_call_ids_fork_takes(fixture_dir, capsys):
    from a3s_nb.cli import main

    assert main(["show", OSCAR, "--prompts", "--store", str(fixture_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[4].split() == ["2", "[completed]", "Run", "the", "check", "script", "for",
                                "ticket", "foxtrot-0_2."]  # fmt: skip
    assert lines[5].split() == [BASH, "bash", "error"]
    assert [ln.split()[0] for ln in lines[1:] if ln.split()[0].isdigit()] == list("12345")


def test_fork_command_edit_writes_a_what_if_fork_and_prints_the_changed_call(
    fixture_dir, tmp_path, capsys
):
    from a3s_nb.cli import main

    before = hashes(fixture_dir)
    text = tmp_path / "out.txt"
    text.write_text("line one\nline two\n")
    argv = ["fork", OSCAR, "--at", "2", "--id", "wi", "--store", str(fixture_dir)]
    assert main([*argv, "--edit", f"{BASH}={NEW}", "--edit-file", f"{READ}={text}"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"session wi, forked from {OSCAR} after prompt 2 of 5, 2 tool results edited"
    assert [ln.split() for ln in out if "(output)" in ln] == [
        ["changed", "tool", "read", "/", "read", "[ok", "/", "ok]", "(output)"],
        ["changed", "tool", "bash", "/", "bash", "[error", "/", "error]", "(output)"],
    ]
    results = tool_results(on_disk(fixture_dir, "wi"))
    assert (results[BASH]["content"], results[READ]["content"]) == (NEW, text.read_text())
    assert {k: v for k, v in hashes(fixture_dir).items() if k in before} == before
    edits = a3s_nb.lineage_of("wi", store=fixture_dir)["edits"]
    assert sorted(e["call_id"] for e in edits) == sorted([READ, BASH])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--edit", BASH], "is not CALL_ID=TEXT"),
        (["--edit", f"{BASH}=a", "--edit", f"{BASH}=b"], "gives tool call .* twice"),
        (["--edit", "call_nope=x"], "no tool call 'call_nope'.* can be edited .*: call_b7b6"),
        (["--edit", f"{MISSING}=x"], "after the cut at prompt 2"),
        (["--edit-file", f"{BASH}=no-such-file.txt"], "cannot read no-such-file.txt"),
        (["--edit-file", BASH], "is not CALL_ID=FILE"),
        (["--send", "go on"], "fork --send needs an agent: give --config FILE"),
        (["--send", "go on", "--config", "missing.acl"], "agent config missing.acl is not a file"),
        (["--at", "9"], "prompt"),
    ],
)
def test_fork_command_bad_input_exits_2_and_writes_nothing(fixture_dir, capsys, args, message):
    from a3s_nb.cli import main

    before = hashes(fixture_dir)
    assert main(["fork", OSCAR, "--at", "2", "--store", str(fixture_dir), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("a3s-nb: ") and re.search(message, err), err
    assert hashes(fixture_dir) == before


# ------------------------------------------------------------------ the real SDK continues

QUESTION = "What did the check report?"


def whatif_script() -> list:
    """The standard scenarios, and a question whose answer depends on a tool's output."""
    return [
        *testing.standard_script(),
        testing.Rule(match=QUESTION, seen="all 12 checks passed", replies=("It passed.",)),
        testing.Rule(match=QUESTION, replies=("It failed: something broke.",)),
    ]


@pytest.fixture
def llm():
    with testing.ScriptedLLM(whatif_script()) as server:
        yield server


@pytest.fixture
def agent(a3s_code, llm):
    return a3s_code.Agent.create(llm.acl_config())


@pytest.fixture
def source(agent, ws, tmp_path) -> tuple[Path, str]:
    """A saved SDK session: a failing bash call, then a chat; (store, bash call id)."""
    store = tmp_path / "store"
    session = live.open_session(agent, ws, store_dir=store, session_id="src")
    session.send(testing.FAILING_BASH_PROMPT)
    session.send(testing.CHAT_PROMPT)
    a3s_nb.save(session, store=store)
    session.close()
    call = lineage.prompts("src", store=store)[0].tools[0]
    assert (call.name, call.ok) == ("bash", False)
    return store, call.id


@pytest.mark.sdk
def test_a_live_what_if_fork_continues_from_the_edited_output(agent, llm, source):
    store, call = source
    before = hashes(store)
    fork = a3s_nb.fork("src", at=1, store=store, agent=agent, edits={call: NEW}, new_id="wi")
    llm.clear_requests()
    assert fork.send(QUESTION).text == "It passed."  # the model read the edited output
    tool_messages = [
        m["content"]
        for r in llm.requests
        if r.kind == "chat"
        for m in r.body["messages"]
        if m.get("role") == "tool"
    ]
    assert NEW in tool_messages and not any("something broke" in t for t in tool_messages)
    fork.save()  # the SDK's own save keeps the edit
    assert tool_results(on_disk(store, "wi"))[call]["content"] == NEW
    fork.close()
    # the parent still holds the real output, byte for byte, and answers from it
    assert {k: v for k, v in hashes(store).items() if k in before} == before
    parent = a3s_nb.fork("src", at=1, store=store, agent=agent, new_id="as-was")
    assert parent.send(QUESTION).text == "It failed: something broke."
    parent.close()
    d = a3s_nb.diff("src", "wi", store=store)
    rows = d[["kind", "change", "tool_a", "what_changed"]].astype(object).where(d.notna(), None)
    assert rows.values.tolist() == [
        ["prompt", "changed", None, "tools"],
        ["tool", "changed", "bash", "output"],
        ["prompt", "changed", None, "prompt, answer"],  # the chat, cut; the question instead
    ]
    assert a3s_nb.sessions(store).set_index("session_id").loc["wi", "lineage_edits"] == 1


@pytest.mark.sdk
def test_fork_magic_edit_with_agent_is_live(ip, agent, source, capsys):
    store, call = source
    ip.push({"agent": agent})
    ip.run_line_magic(
        "a3s_fork",
        f"src --at 1 --as what_if --agent agent --edit '{call}={NEW.strip()}' --store {store}",
    )
    assert "1 tool result edited (live; what_if.send(...) continues it)" in capsys.readouterr().out
    session = ip.user_ns["what_if"]
    assert session.send(QUESTION).text == "It passed."
    session.close()


@pytest.mark.sdk
@pytest.mark.parametrize(
    ("edit", "answer", "check"),
    [(True, "the tests pass", "passed"), (False, "I see nothing to fix", "failed")],
)
def test_the_calculator_what_if(a3s_code, tmp_path, edit, answer, check):
    """The tutorial's story: prompt 3's test run said only ``AssertionError: 2 3``. Had it
    said what broke, would the model have fixed ``add``?"""
    store = tmp_path / "store"
    (tmp_path / "calc").mkdir()
    with testing.ScriptedLLM(testing.calculator_script(), models=("quick", "careful")) as llm:
        agent = a3s_code.Agent.create(llm.acl_config("quick"))
        session = live.open_session(agent, tmp_path / "calc", store_dir=store, session_id="calc")
        for prompt in testing.CALC_PROMPTS:
            session.send(prompt)
        a3s_nb.save(session, store=store)
        session.close()
        run_tests = lineage.prompts("calc", store=store)[2].tools[-1]
        assert (run_tests.name, run_tests.ok) == ("bash", False)
        assert "expected 5" not in run_tests.result
        edits = {run_tests.id: testing.CALC_WHATIF_OUTPUT} if edit else None
        fork = a3s_nb.fork(
            "calc", at=3, store=store, agent=agent, workspace=tmp_path / "ws", edits=edits
        )
        assert answer in fork.send(testing.CALC_WHATIF_PROMPT).text
        assert lineage.record_checks(fork, [testing.CALC_CHECK])["status"] == check
        fork.close()


@pytest.mark.sdk
def test_fork_command_send_continues_from_the_edited_output_and_saves(
    llm, source, tmp_path, capsys
):
    from a3s_nb.cli import main

    store, call = source
    config = tmp_path / "agent.acl"
    config.write_text(llm.acl_config())
    argv = ["fork", "src", "--at", "1", "--id", "wi", "--store", str(store)]
    argv += ["--edit", f"{call}={NEW}", "--send", QUESTION, "--config", str(config)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "[prompt 2] It passed." in out  # the model read the edited output
    doc = on_disk(store, "wi")
    assert tool_results(doc)[call]["content"] == NEW
    assert [b["text"] for b in blocks(doc["session"]["messages"], "text")][-2:] == [
        QUESTION,
        "It passed.",
    ]
