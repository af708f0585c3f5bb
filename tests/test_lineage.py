"""Fork, diff and replay (a3s_nb.lab) on the SDK-written fixture store and in memory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import a3s_nb
from a3s_nb.errors import A3sNbError, SessionExistsError, SessionNotFoundError
from a3s_nb.lab import lineage

from .conftest import frames_from_files, on_disk

OSCAR = "fix-oscar-2-000"  # 5 prompts: write+read, failing bash, missing read, task, chat
PLANNED = "88efb826-562a-4324-ba5a-ca7fa4276dc8"  # prompt 1 is a planning run (3 user texts)
FAILED_FIRST = "60246e33-b01d-47b4-a995-4a89a87f13f3"  # prompt 1 failed: nothing in messages
ARTIFACT = "4287140e-de98-4f72-8e72-c616a812fc99"  # prompt 5's bash output is an artifact
VERIFIED = "chore-november-2-007"  # verify_commands after prompt 2, then prompt 3


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# ------------------------------------------------------------------------------ prompts


def test_prompts_follow_the_runs(fixture_store):
    ps = lineage.prompts(OSCAR, store=fixture_store)
    bundle = fixture_store.load(OSCAR)
    assert [p.text for p in ps] == [r.snapshot.prompt for r in bundle.runs]
    assert [p.messages for p in ps] == [(0, 6), (6, 10), (10, 14), (14, 18), (18, 20)]
    assert [[t.name for t in p.tools] for p in ps] == [
        ["write", "read"],
        ["bash"],
        ["read"],
        ["task"],
        [],
    ]
    assert [t.ok for t in ps[1].tools] == [False]  # the failing check script


def test_a_planning_run_is_one_prompt_of_three_user_messages(fixture_store):
    ps = lineage.prompts(PLANNED, store=fixture_store)
    assert len(ps) == 5
    texts = [m.text for m in fixture_store.load(PLANNED).session.messages[: ps[0].messages[1]]]
    assert [t.split(":")[0] for t in texts if t.startswith(("Goal", "Execute"))] == [
        "Goal",
        "Execute step 1",
        "Execute step 2",
    ]
    assert ps[1].text.startswith("Create docs/november_6_2.md")


def test_a_failed_run_is_a_prompt_without_messages(fixture_store):
    ps = lineage.prompts(FAILED_FIRST, store=fixture_store)
    assert ps[0].status == "failed" and ps[0].messages == (0, 0)
    assert ps[1].messages[0] == 0 and ps[1].status == "completed"
    assert "circuit breaker" in ps[0].answer or ps[0].answer  # the run's error


# ------------------------------------------------------------------------------ fork


def test_fork_keeps_the_first_prompts_and_records_lineage(fixture_dir, fixture_store):
    before = tree(fixture_dir)
    fork = a3s_nb.fork(OSCAR, at=2, store=fixture_store)
    assert isinstance(fork, a3s_nb.SavedSession)
    assert fork.id == f"{OSCAR}-fork-1"
    src = fixture_store.load(OSCAR)
    got = on_disk(fixture_dir, fork.id)
    assert got["session"]["messages"] == [
        m.model_dump(mode="json", by_alias=True) for m in src.session.messages[:10]
    ]
    assert [r["snapshot"]["prompt"] for r in got["runs"]] == [
        r.snapshot.prompt for r in src.runs[:2]
    ]
    assert {r["snapshot"]["session_id"] for r in got["runs"]} == {fork.id}
    assert [t["name"] for t in got["traces"]] == ["write", "read", "bash"]
    assert got["session"]["id"] == fork.id and "parent_id" not in got["session"]
    # the source is untouched; the fork added its files and its lineage record
    after = tree(fixture_dir)
    assert {k: v for k, v in after.items() if k in before} == before
    new = sorted(set(after) - set(before))
    assert f".a3s_nb/lineage/{fork.id}.json" in new
    rec = a3s_nb.lineage_of(fork.id, fixture_store)
    assert rec["kind"] == "fork" and rec["parent_id"] == OSCAR
    assert rec["at_prompt"] == 2 and rec["of_prompts"] == 5
    assert rec["created_at"].endswith("+00:00")
    assert a3s_nb.lineage_of(OSCAR, fixture_store) is None


def test_fork_total_usage_is_the_sum_of_the_kept_runs(fixture_store):
    src = fixture_store.load(OSCAR)
    kept = [e.event.usage for r in src.runs[:2] for e in r.events if e.event.type == "agent_end"]
    usage = lineage.cut(src, 2, new_id="cut-1").session.total_usage
    assert usage.total_tokens == sum(u.total_tokens for u in kept) > 0
    assert usage.prompt_tokens == sum(u.prompt_tokens for u in kept) > 0
    assert usage.completion_tokens == sum(u.completion_tokens for u in kept) > 0


def test_fork_default_keeps_every_prompt_and_ids_count_up(fixture_store):
    a = a3s_nb.fork(OSCAR, store=fixture_store)
    b = a3s_nb.fork(OSCAR, store=fixture_store)
    assert (a.id, b.id) == (f"{OSCAR}-fork-1", f"{OSCAR}-fork-2")
    src = fixture_store.load(OSCAR)
    assert a.bundle.session.messages == src.session.messages
    assert len(a.bundle.traces) == len(src.traces)
    assert a3s_nb.lineage_of(a.id, fixture_store)["at_prompt"] == 5


def test_fork_of_a_fork_and_into_another_store(fixture_store, tmp_path):
    other = a3s_nb.FileStore(tmp_path / "other")
    f1 = a3s_nb.fork(OSCAR, at=3, store=other, source_store=fixture_store, new_id="b1")
    f2 = a3s_nb.fork("b1", at=1, store=other, new_id="b2")
    assert a3s_nb.lineage_of("b1", other)["parent_store"] == str(fixture_store)
    assert a3s_nb.lineage_of("b2", other)["parent_id"] == "b1"
    assert a3s_nb.lineage_of("b2", other)["parent_store"] is None
    assert len(lineage.prompts(f2)) == 1 and len(lineage.prompts(f1)) == 3


def test_fork_cuts_artifacts_with_their_prompt(fixture_store):
    src = fixture_store.load(ARTIFACT)
    assert len(src.artifacts.artifacts) == 1
    assert a3s_nb.fork(ARTIFACT, at=4, store=fixture_store).bundle.artifacts.artifacts == []
    kept = a3s_nb.fork(ARTIFACT, at=5, store=fixture_store).bundle.artifacts.artifacts
    assert kept == src.artifacts.artifacts


def test_fork_keeps_verification_made_before_the_cut(fixture_store):
    # the report came from verify_commands after prompt 2: its two bash checks are the
    # traces between prompt 2's bash call and prompt 3's read
    at2 = a3s_nb.fork(VERIFIED, at=2, store=fixture_store).bundle
    assert [v.subject for v in at2.verification] == ["lint"]
    assert [t.name for t in at2.traces] == [
        "parallel_task",
        "write",
        "edit",
        "bash",
        "bash",
        "bash",
    ]
    at1 = a3s_nb.fork(VERIFIED, at=1, store=fixture_store).bundle
    assert at1.verification == [] and [t.name for t in at1.traces] == ["parallel_task"]


def test_fork_after_a_failed_prompt(fixture_store):
    f = a3s_nb.fork(FAILED_FIRST, at=1, store=fixture_store).bundle
    assert f.session.messages == [] and [r.snapshot.status for r in f.runs] == ["failed"]
    assert f.traces == []


@pytest.mark.parametrize("at", [0, -1, 6, 99, 2.0, True, "2"])
def test_bad_at_is_refused_and_nothing_is_written(fixture_dir, fixture_store, at):
    before = tree(fixture_dir)
    with pytest.raises(lineage.ForkError, match="prompt"):
        a3s_nb.fork(OSCAR, at=at, store=fixture_store)
    assert tree(fixture_dir) == before


def test_existing_new_id_and_missing_source_are_refused(fixture_dir, fixture_store):
    before = tree(fixture_dir)
    with pytest.raises(SessionExistsError, match="already exists"):
        a3s_nb.fork(OSCAR, at=1, new_id=VERIFIED, store=fixture_store)
    with pytest.raises(SessionNotFoundError, match="did you mean"):
        a3s_nb.fork("fix-oscar-2-00x", at=1, store=fixture_store)
    with pytest.raises(A3sNbError, match="path separator"):
        a3s_nb.fork(OSCAR, at=1, new_id="a/b", store=fixture_store)
    assert tree(fixture_dir) == before


def test_fork_into_a_copy_of_the_workspace(fixture_store, tmp_path):
    src_ws = tmp_path / "src_ws"
    (src_ws / "docs").mkdir(parents=True)
    (src_ws / "docs" / "a.md").write_text("# A\n")
    bundle = fixture_store.load(OSCAR)
    bundle.session.config.workspace = str(src_ws)
    copy = tmp_path / "branch"
    f = a3s_nb.fork(bundle, at=2, store=fixture_store, workspace=copy, new_id="ws-fork")
    assert f.workspace == str(copy)
    assert (copy / "docs" / "a.md").read_text() == "# A\n"
    assert a3s_nb.lineage_of("ws-fork", fixture_store)["workspace"] == str(copy)
    (copy / "x").write_text("x")
    with pytest.raises(lineage.ForkError, match="not empty"):
        a3s_nb.fork(bundle, at=2, store=fixture_store, workspace=copy, new_id="ws-fork-2")
    assert not fixture_store.exists("ws-fork-2")


def test_fork_in_memory():
    store = a3s_nb.MemoryStore()
    fixture = a3s_nb.FileStore(Path(__file__).parent / "fixtures" / "a3s-code-3.1.0", create=False)
    f = a3s_nb.fork(fixture.load(OSCAR), at=1, store=store, new_id="m1")
    assert store.list() == ["m1"] and len(f.bundle.session.messages) == 6
    assert a3s_nb.lineage_of("m1", store)["parent_id"] == OSCAR
    assert a3s_nb.lineage_frame(store)["lineage_parent_id"].tolist() == [OSCAR]


def test_lineage_frame(fixture_store):
    a3s_nb.fork(OSCAR, at=2, store=fixture_store, new_id="f1")
    df = a3s_nb.lineage_frame(fixture_store)
    assert df.columns.tolist() == lineage.LINEAGE_COLUMNS
    row = df.iloc[0]
    assert (row.session_id, row.lineage_kind, row.lineage_parent_id, row.lineage_at_prompt) == (
        "f1",
        "fork",
        OSCAR,
        2,
    )
    assert str(df["lineage_created_at"].dtype) == "datetime64[ms, UTC]"
    assert str(df["lineage_at_prompt"].dtype) == "Int64"


def test_a_failed_save_leaves_no_lineage(fixture_store, monkeypatch):
    def boom(bundle, guard=None):
        guard(None)  # the lineage is written under the lock, then the files fail
        raise OSError("disk full")

    monkeypatch.setattr(fixture_store, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        a3s_nb.fork(OSCAR, at=1, store=fixture_store, new_id="nope")
    assert a3s_nb.lineage_of("nope", fixture_store) is None
    assert not (fixture_store.meta_dir / "lineage" / "nope.json").exists()


def test_lineage_file_is_json_written_atomically(fixture_store):
    a3s_nb.fork(OSCAR, at=1, store=fixture_store, new_id="j1")
    folder = fixture_store.meta_dir / "lineage"
    assert sorted(p.name for p in folder.iterdir()) == ["j1.json"]  # no temp files left
    assert json.loads((folder / "j1.json").read_text())["schema"] == "a3s_nb.lineage.v1"


# ------------------------------------------------------------------------------ magics


def test_fork_magic_binds_the_fork(ip, fixture_dir, capsys):
    ip.run_line_magic("a3s_fork", f"{OSCAR} --at 2 --store {fixture_dir}")
    out = capsys.readouterr().out
    fork = ip.user_ns["fork"]
    assert isinstance(fork, a3s_nb.SavedSession) and fork.id == f"{OSCAR}-fork-1"
    assert out.strip() == (
        f"fork: session {OSCAR}-fork-1, forked from {OSCAR} after prompt 2 of 5 (read-only; "
        f"to continue it: %a3s_resume {OSCAR}-fork-1 --agent AGENT)"
    )
    # a variable holding a session is a source too; --as names the result
    ip.run_line_magic("a3s_fork", f"fork --at 1 --as again --id again --store {fixture_dir}")
    assert a3s_nb.lineage_of("again", fixture_dir)["parent_id"] == f"{OSCAR}-fork-1"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (f"{OSCAR} --at 0", "fork after prompt 1 to 5, not 0"),
        (f"{OSCAR} --at -2", "not -2"),
        (f"{OSCAR} --at 6", "has 5 prompts"),
        (f"{OSCAR} --at 1 --id {VERIFIED}", "already exists"),
        ("nope --at 1", "no session 'nope'"),
        (f"{OSCAR} --as 1x", "not a variable name"),
        (f"{OSCAR} --agent missing", "no variable 'missing'"),
    ],
)
def test_fork_magic_bad_input_is_a_usage_error_and_writes_nothing(ip, fixture_dir, line, message):
    from IPython.core.error import UsageError

    before = tree(fixture_dir)
    with pytest.raises(UsageError, match=message) as info:
        ip.run_line_magic("a3s_fork", f"{line} --store {fixture_dir}")
    assert type(info.value) is UsageError
    assert tree(fixture_dir) == before
    assert "fork" not in ip.user_ns


def test_sessions_frame_has_the_lineage_columns(fixture_store):
    a3s_nb.fork(OSCAR, at=2, store=fixture_store, new_id="f1")
    df = a3s_nb.sessions(fixture_store).set_index("session_id")
    assert df.loc["f1", "lineage_kind"] == "fork"
    assert df.loc["f1", "lineage_parent_id"] == OSCAR
    assert df.loc["f1", "lineage_at_prompt"] == 2
    assert str(df["lineage_created_at"].dtype) == "datetime64[ms, UTC]"
    assert df.loc[OSCAR, ["lineage_kind", "lineage_parent_id", "lineage_at_prompt"]].isna().all()
    # the same through the full pass (no index) and all_frames
    full = a3s_nb.all_frames(fixture_store, ["sessions", "runs"])["sessions"]
    assert full.set_index("session_id").loc["f1", "lineage_at_prompt"] == 2


@pytest.mark.parametrize("kind", ["file", "memory"])
def test_deleting_a_fork_deletes_its_lineage(fixture_store, kind):
    store = fixture_store if kind == "file" else a3s_nb.MemoryStore()
    a3s_nb.fork(fixture_store.load(OSCAR), at=1, store=store, new_id="gone")
    assert a3s_nb.lineage_of("gone", store) is not None
    store.delete("gone")
    assert a3s_nb.lineage_of("gone", store) is None
    # a later session under the same id is not taken for the old fork
    store.save(a3s_nb.SessionBundle(session=_renamed(fixture_store)))
    assert a3s_nb.lineage_of("gone", store) is None


def _renamed(store):
    data = store.load(OSCAR).session.model_copy(deep=True)
    data.id = "gone"
    return data


# ------------------------------------------------------------------------------ diff


def _with_inserted_call(bundle: a3s_nb.SessionBundle) -> a3s_nb.SessionBundle:
    """``bundle`` under another id, with one more tool call at the start of prompt 1."""
    from a3s_nb.store.models import Message

    b = bundle.model_copy(deep=True)
    b.session.id = "inserted"
    extra = [
        Message.model_validate(
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "x1", "name": "ls", "input": {"path": "."}}],
            }
        ),
        Message.model_validate(
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "x1",
                        "content": "docs\n",
                        "is_error": False,
                    }
                ],
            }
        ),
    ]
    b.session.messages[1:1] = extra
    return b


def test_an_inserted_tool_call_is_one_added_row(fixture_store):
    a = fixture_store.load(OSCAR)
    df = a3s_nb.diff(a, _with_inserted_call(a))
    assert df.columns.tolist() == lineage.DIFF_COLUMNS
    first = df[df["prompt_a"].eq(1) | df["prompt_b"].eq(1)]
    assert first[["kind", "change", "tool_a", "tool_b"]].astype(object).where(
        first[["kind", "change", "tool_a", "tool_b"]].notna(), None
    ).values.tolist() == [
        ["prompt", "changed", None, None],
        ["tool", "only_b", None, "ls"],
        ["tool", "same", "write", "write"],
        ["tool", "same", "read", "read"],
    ]
    rest = df[df["prompt_a"] > 1]
    assert set(rest["change"]) == {"same"}


def test_diff_of_a_fork_and_its_parent(fixture_store):
    a3s_nb.fork(OSCAR, at=2, store=fixture_store, new_id="f2")
    df = a3s_nb.diff(OSCAR, "f2", store=fixture_store)
    prompts = df[df["kind"] == "prompt"]
    assert prompts["change"].tolist() == ["same", "same", "only_a", "only_a", "only_a"]
    assert df.attrs["a"] == OSCAR and df.attrs["b"] == "f2"
    assert str(df["change"].dtype) == "category" and str(df["prompt_a"].dtype) == "Int64"
    s = a3s_nb.diff_summary(df)
    assert s.columns.tolist() == [OSCAR, "f2", "difference"]
    assert s.loc["prompts"].tolist() == [5, 2, -3]
    assert s.loc["tool_calls"].tolist() == [5, 3, -2]
    assert s.loc["tool_errors"].tolist() == [2, 1, -1]
    assert s.loc["final_status"].tolist() == ["completed", "completed", None]
    # the same through the other face, and across two stores
    assert a3s_nb.diff_summary(OSCAR, "f2", store=fixture_store).equals(s)


def test_diff_across_two_stores_and_of_unrelated_sessions(fixture_store, tmp_path):
    other = a3s_nb.FileStore(tmp_path / "other")
    a3s_nb.fork(OSCAR, store=other, source_store=fixture_store, new_id="copy")
    df = a3s_nb.diff(OSCAR, "copy", store=fixture_store, store_b=other)
    assert set(df["change"]) == {"same"}
    unrelated = a3s_nb.diff(OSCAR, VERIFIED, store=fixture_store)
    assert set(unrelated[unrelated["kind"] == "prompt"]["change"]) <= {"changed", "only_a"}
    summary = {r["metric"]: r for r in unrelated.attrs["summary"]}
    assert summary["verification"]["b"] == "failed" and summary["verification"]["a"] is None


def test_diff_widget(fixture_store):
    from a3s_nb.widgets import DiffView

    a3s_nb.fork(OSCAR, at=2, store=fixture_store, new_id="f2")
    view = DiffView(OSCAR, "f2", store=fixture_store)
    assert repr(view) == (
        f"DiffView(a='{OSCAR}', b='f2', prompts: same=2, changed=0, only_a=3, only_b=0; "
        "shared=2, tool calls that differ=2)"
    )
    html = view.html.value
    assert "2 shared prompts (the same in both), hidden" in html
    assert html.count('class="a3s-diff-row a3s-diff-prompt"') == 3  # the shared two hidden
    assert view.shared_button.description == "Show 2 shared prompts"
    view.shared_button.click()  # the click and its method twin
    assert view.show_shared and view.shared_button.description == "Hide 2 shared prompts"
    assert view.html.value.count('class="a3s-diff-row a3s-diff-prompt"') == 5
    view.toggle_shared()
    assert not view.show_shared
    view.changes_toggle.value = True  # "Changes only": the same rows go, shared ones too
    assert view.changes_only
    assert 'data-change="same"' not in view.html.value and "shared" not in view.html.value
    view.show_shared = True
    assert 'data-change="same"' not in view.html.value
    view.show_shared = False
    view.changes_only = False
    assert not view.changes_toggle.value
    # the snapshot for saved outputs folds the shared prompts into a <details>
    bundle = view._repr_mimebundle_()
    assert bundle["text/plain"] == repr(view)
    assert '<details class="a3s-diff-shared">' in bundle["text/html"]
    assert "only in A" in bundle["text/html"]


def test_diff_html_escapes_everything(fixture_store):
    from a3s_nb import render

    a = fixture_store.load(OSCAR)
    b = a.model_copy(deep=True)
    b.session.id = "<script>x</script>"
    b.runs[0].snapshot.prompt = "<img src=x onerror=alert(1)>"
    html = render.diff_html(a3s_nb.diff(a, b))
    assert "<script>" not in html and "<img" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_diff_magic(ip, fixture_dir):
    from IPython.core.error import UsageError

    from a3s_nb.widgets import DiffView

    a3s_nb.fork(OSCAR, at=2, store=fixture_dir, new_id="f2")
    view = ip.run_line_magic("a3s_diff", f"{OSCAR} f2 --store {fixture_dir}")
    assert isinstance(view, DiffView) and view.shared == 2
    df = ip.run_line_magic("a3s_diff", f"{OSCAR} f2 --store {fixture_dir} --frame")
    assert df.equals(a3s_nb.diff(OSCAR, "f2", store=fixture_dir))
    ip.push({"saved": a3s_nb.resume("f2", store=fixture_dir)})  # a variable works too
    assert ip.run_line_magic("a3s_diff", f"{OSCAR} saved --store {fixture_dir}").shared == 2
    with pytest.raises(UsageError, match="no session 'nope'"):
        ip.run_line_magic("a3s_diff", f"{OSCAR} nope --store {fixture_dir}")


def test_replay_cli_help_as_a_module():
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "a3s_nb.cli", "replay", "--help"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 0, done.stderr
    assert "exit 1 when something got worse" in " ".join(done.stdout.split())


def test_a_build_reads_only_the_lineage_records_there_are(fixture_store, monkeypatch):
    """The lineage directory is listed once; sessions without a record cost no lookup."""
    from a3s_nb.frames import _walk

    a3s_nb.fork(OSCAR, at=2, store=fixture_store, new_id="f1")
    asked = []
    real = _walk.read_lineage

    def spy(store, session_id):
        asked.append(session_id)
        return real(store, session_id)

    monkeypatch.setattr(_walk, "read_lineage", spy)
    got = frames_from_files(fixture_store, ["sessions", "runs"])["sessions"]
    got = got.set_index("session_id")
    assert asked == ["f1"]
    assert got.loc["f1", "lineage_kind"] == "fork" and got.loc["f1", "lineage_at_prompt"] == 2
    assert got.loc[OSCAR, ["lineage_kind", "lineage_parent_id"]].isna().all()
