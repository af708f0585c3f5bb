"""%a3s_save, %a3s_resume, %a3s_sessions and their function twins, in a real IPython shell.

Every flow runs through both faces (``face`` is "function" or "magic") with the same
assertions; every misuse must be the plain ``UsageError`` in the magic face (IPython hides
the traceback only for that exact class) and an ``A3sNbError`` in the function face. The
end-to-end tests at the bottom drive the REAL a3s-code SDK against the scripted server.
"""

from __future__ import annotations

import contextlib
import functools
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

import a3s_nb
from a3s_nb import A3sNbError, SavedSession, testing
from a3s_nb.notebook import magics
from a3s_nb.saved import ReadOnlySessionError

from .conftest import on_disk
from .fakes import FakeSession


def store_files(store: Path) -> dict[str, bytes]:
    """Every file under a store (a3s_nb's lock file aside), with its bytes."""
    if not store.exists():
        return {}
    return {
        str(p.relative_to(store)): p.read_bytes()
        for p in sorted(store.rglob("*"))
        if p.is_file() and ".a3s_nb" not in p.parts
    }


# ============================================================================ the shell


def run(ip, magic: str, line: str = "") -> tuple[Any, str]:
    """Run a line magic; return its value and what it printed and displayed (as text)."""
    with capture_output(display=True) as cap:
        value = ip.run_line_magic(magic, line)
    shown = "".join(o.data.get("text/plain", "") + "\n" for o in cap.outputs)
    return value, cap.stdout + shown


def _opt(flag: str, value: Any) -> str:
    return f" {flag} {shlex.quote(str(value))}" if value is not None else ""


class Face:
    """One way to call the feature: the public functions, or the magics."""

    def __init__(self, kind: str, ip: InteractiveShell):
        self.kind, self.ip = kind, ip

    def __repr__(self) -> str:
        return self.kind

    def save(
        self, var: str, *, id=None, store=None, redact=False, allow_secrets=False, force=False
    ) -> str:
        if self.kind == "function":
            result = a3s_nb.save(
                self.ip.user_ns[var],
                id,
                store=store,
                redact=redact,
                allow_secrets=allow_secrets,
                force=force,
            )
            return str(result)
        line = var + _opt("--id", id) + _opt("--store", store)
        line += " --redact" * redact + " --allow-secrets" * allow_secrets + " --force" * force
        value, out = run(self.ip, "a3s_save", line)
        assert value is None
        return out.strip()

    def resume(self, id: str, *, agent=None, name="session", store=None) -> tuple[Any, str]:
        if self.kind == "function":
            agent_obj = self.ip.user_ns[agent] if agent else None
            obj = a3s_nb.resume(id, agent_obj, store=store)
            self.ip.user_ns[name] = obj
            return obj, ""
        line = shlex.quote(id) + _opt("--agent", agent) + _opt("--as", name)
        line += _opt("--store", store)
        _, out = run(self.ip, "a3s_resume", line)
        return self.ip.user_ns[name], out

    def sessions(self, *, store=None, limit=None, model=None) -> pd.DataFrame | None:
        if self.kind == "function":
            return a3s_nb.list_sessions(store, limit=limit, model=model)
        line = _opt("--store", store) + _opt("--limit", limit) + _opt("--model", model)
        value, _ = run(self.ip, "a3s_sessions", line)
        return value

    @contextlib.contextmanager
    def raises(self, match: str):
        """The face's error: an A3sNbError, or exactly UsageError for a magic."""
        expected = A3sNbError if self.kind == "function" else UsageError
        with pytest.raises(expected, match=match) as info:
            yield info
        if self.kind == "magic":
            assert info.type is UsageError


@pytest.fixture(params=["function", "magic"])
def face(request, ip) -> Face:
    return Face(request.param, ip)


@pytest.fixture
def fake(fixture_store, ip) -> FakeSession:
    """A live-looking session holding fixture session fix-oscar-2-000, bound to ``s``."""
    session = FakeSession(fixture_store.load("fix-oscar-2-000"), session_id="oscar-live")
    ip.user_ns["s"] = session
    return session


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "saved"


# ============================================================================ loading


def test_import_has_no_side_effects_and_load_ext_registers_the_magics():
    code = (
        "import sys, a3s_nb\n"
        "assert not [m for m in sys.modules if m.startswith(('IPython', 'ipywidgets'))], 1\n"
        "assert 'a3s_nb.notebook.magics' not in sys.modules\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "ip = InteractiveShell.instance()\n"
        "assert 'a3s_save' not in ip.magics_manager.magics['line']\n"
        "ip.run_line_magic('load_ext', 'a3s_nb')\n"
        "assert {'a3s_save', 'a3s_resume', 'a3s_sessions'} <= set(ip.magics_manager.magics['line'])\n"
        "ip.run_line_magic('unload_ext', 'a3s_nb')\n"
        "assert 'a3s_save' not in ip.magics_manager.magics['line']\n"
        "assert not [c for c in ip.configurables if type(c).__name__ == 'A3sNb']\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_help_is_the_docstring(ip):
    doc = ip.find_line_magic("a3s_save").__doc__
    assert "--redact" in doc and "a3s_nb.save(" in doc
    assert "--agent" in ip.find_line_magic("a3s_resume").__doc__


# ============================================================================ main flow


def test_save_then_resume_read_only(face, fake, store):
    line = face.save("s", store=store)
    assert line == (
        f"saved session oscar-live in {store}: 20 messages, 5 runs, 5 tool calls, 2 failed"
    )
    files = on_disk(store, "oscar-live")
    assert len(files["session"]["messages"]) == 20 and len(files["runs"]) == 5
    assert files["session"]["model_name"] == "openai/fake-model-large"

    saved, out = face.resume("oscar", store=store)  # a unique prefix is enough
    assert isinstance(saved, SavedSession) and saved.id == "oscar-live"
    assert [m.model_dump(mode="json") for m in saved.bundle.session.messages] == fake.history()
    if face.kind == "magic":
        assert out.startswith(
            "session: read-only saved session oscar-live (20 messages, 5 runs). "
            "To continue it: %a3s_resume oscar-live --agent AGENT\n"
        )
        assert "[user] Create docs/echo_0_1.md" in out  # the transcript, inline
    with pytest.raises(ReadOnlySessionError, match="--agent"):
        saved.send("more")


def test_saving_again_updates_the_same_session_and_keeps_created_at(face, fake, store):
    face.save("s", store=store)
    before = on_disk(store, "oscar-live")
    fake.send("and one more thing")
    line = face.save("s", store=store)
    assert line == (
        f"updated session oscar-live in {store}: 22 messages, 6 runs, 5 tool calls, 2 failed"
    )
    after = on_disk(store, "oscar-live")
    assert after["session"]["messages"][:20] == before["session"]["messages"]
    assert len(after["session"]["messages"]) == 22
    assert after["runs"][:5] == before["runs"] and len(after["runs"]) == 6
    assert after["session"]["created_at"] == before["session"]["created_at"]
    assert after["session"]["updated_at"] >= before["session"]["updated_at"]


def test_save_under_another_id(face, fake, store):
    assert face.save("s", id="copy-1", store=store).startswith("saved session copy-1 in")
    assert {r["snapshot"]["session_id"] for r in on_disk(store, "copy-1")["runs"]} == {"copy-1"}


def test_sessions_lists_newest_first(face, fixture_dir):
    df = face.sessions(store=fixture_dir)
    # the magic shows a few columns (--all for every one), the function every column
    listed = ["session_id", "model", "updated_at", "n_messages", "n_runs", "cost_usd"]
    assert set(listed) <= set(df.columns)
    assert ("workspace" in df.columns) == (face.kind == "function")
    assert df.columns[0] == "session_id"
    assert len(df) == 8
    assert df["updated_at"].is_monotonic_decreasing
    assert str(df["updated_at"].dtype).startswith("datetime64") and df["updated_at"].dt.tz
    oscar = df.set_index("session_id").loc["fix-oscar-2-000"]
    assert (oscar["n_messages"], oscar["n_runs"], oscar["n_tool_calls"]) == (20, 5, 5)
    assert oscar["model"] == "openai/fake-model-large"
    newest = face.sessions(store=fixture_dir, limit=3)
    assert list(newest["session_id"]) == list(df["session_id"][:3])
    large = face.sessions(store=fixture_dir, model="large")
    assert set(large["model"]) == {"openai/fake-model-large"} and 0 < len(large) < 8


def test_sessions_filters(fixture_dir):
    df = a3s_nb.list_sessions(fixture_dir)
    cut = df["updated_at"].iloc[2]
    expected = list(df["session_id"][df["updated_at"] >= cut])
    assert 3 <= len(expected) < 8
    assert list(a3s_nb.list_sessions(fixture_dir, since=cut)["session_id"]) == expected
    assert a3s_nb.list_sessions(fixture_dir, since="2100-01-01").empty
    assert set(a3s_nb.list_sessions(fixture_dir, contains="fix-")["session_id"]) == {
        "fix-india-2-004",
        "fix-oscar-2-000",
    }
    assert a3s_nb.list_sessions(fixture_dir, workspace="/nowhere/").empty


def test_sessions_of_an_empty_store(ip, tmp_path):
    (tmp_path / "empty").mkdir()
    value, out = run(ip, "a3s_sessions", f"--store {tmp_path / 'empty'}")
    assert value is None and out.startswith("no saved sessions match in")
    assert a3s_nb.list_sessions(tmp_path / "empty").empty


def test_saved_session_view(fixture_dir):
    saved = a3s_nb.resume("fix-oscar", store=fixture_dir)
    assert repr(saved) == (
        "SavedSession('fix-oscar-2-000', model='openai/fake-model-large', messages=20, "
        "runs=5, tool_calls=5, read-only)"
    )
    assert saved.transcript.startswith("[user] Create docs/echo_0_1.md")
    assert "[tool bash error]" in saved.transcript
    assert len(saved.runs) == 5 and len(saved.traces) == 6
    assert len(saved.messages) >= 20  # one row per message (or per content block)
    assert set(saved.messages["session_id"]) == {"fix-oscar-2-000"}
    assert "fix-oscar-2-000" in saved._repr_html_()
    assert saved.created_at.tzinfo is not None


def test_resume_shows_the_transcript_as_text_and_html(ip, fixture_dir):
    with capture_output() as cap:
        ip.run_line_magic("a3s_resume", f"fix-oscar --as old --store {fixture_dir}")
    assert cap.stdout.startswith("old: read-only saved session fix-oscar-2-000")
    [shown] = cap.outputs
    assert shown.data["text/plain"].startswith("[user] Create docs/echo_0_1.md")
    if "text/html" in ip.display_formatter.active_types:  # not in a terminal shell
        assert 'class="a3s-transcript"' in shown.data["text/html"]
    html = magics._Transcript(a3s_nb.open_store(fixture_dir).load("fix-oscar-2-000"))
    assert 'class="a3s-transcript"' in html._repr_html_()
    ip.run_line_magic("config", "A3sNb.show_transcript = False")
    with capture_output() as cap:
        ip.run_line_magic("a3s_resume", f"fix-oscar --as old --store {fixture_dir}")
    assert cap.outputs == []


def test_an_unreadable_earlier_save_is_replaced_with_a_warning(face, fake, store):
    face.save("s", store=store)
    (store / "oscar-live.json").write_bytes(b"\xff\xfe not json")
    with pytest.warns(UserWarning, match=r"replacing an unreadable earlier save: .*oscar-live"):
        line = face.save("s", store=store)
    assert line.startswith("saved session oscar-live")
    assert a3s_nb.open_store(store).load("oscar-live").session.id == "oscar-live"


# ============================================================================ the store


def test_where_the_store_is(ip, fake, tmp_path, monkeypatch):
    # default: ./a3s_sessions in the working directory
    run(ip, "a3s_save", "s")
    assert (tmp_path / "a3s_sessions" / "oscar-live.json").exists()
    # then $A3S_NB_STORE
    monkeypatch.setenv("A3S_NB_STORE", str(tmp_path / "env"))
    run(ip, "a3s_save", "s")
    assert (tmp_path / "env" / "oscar-live.json").exists()
    # then %config A3sNb.store
    ip.run_line_magic("config", f"A3sNb.store = {str(tmp_path / 'cfg')!r}")
    _, out = run(ip, "a3s_save", "s")
    assert str(tmp_path / "cfg") in out and (tmp_path / "cfg" / "oscar-live.json").exists()
    # then the argument
    run(ip, "a3s_save", f"s --store {tmp_path / 'arg'}")
    assert (tmp_path / "arg" / "oscar-live.json").exists()
    # and the read side follows the same order
    assert list(run(ip, "a3s_sessions", "")[0]["session_id"]) == ["oscar-live"]
    assert run(ip, "a3s_resume", "oscar")[1].startswith("session: read-only")


def test_function_face_follows_env_then_default(fake, tmp_path, monkeypatch):
    a3s_nb.save(fake)
    assert (tmp_path / "a3s_sessions" / "oscar-live.json").exists()
    monkeypatch.setenv("A3S_NB_STORE", str(tmp_path / "env"))
    assert str(tmp_path / "env") in str(a3s_nb.save(fake))


# ============================================================================ the namespace


def test_save_finds_the_one_session_in_the_namespace(ip, fake, store):
    ip.user_ns["same_one"] = fake  # two names, one session
    ip.user_ns["_"] = fake  # output history does not count
    _, out = run(ip, "a3s_save", f"--store {store}")
    assert out.startswith("saved session oscar-live")


def test_save_with_no_session_in_the_namespace_says_what_it_saw(ip, store):
    ip.user_ns.update(x=1, agent=object())
    with pytest.raises(UsageError, match=r"no live a3s-code session .*variables seen: agent, x"):
        run(ip, "a3s_save", f"--store {store}")
    assert not store.exists()


def test_save_with_several_sessions_asks_which(ip, fixture_store, store):
    ip.user_ns["a"] = FakeSession(fixture_store.load("fix-oscar-2-000"))
    ip.user_ns["b"] = FakeSession(fixture_store.load("explore-lima-2-001"))
    ip.user_ns["c"] = ip.user_ns["b"]
    with pytest.raises(UsageError, match=r"2 live a3s-code sessions .*: a, b = c; .*%a3s_save a"):
        run(ip, "a3s_save", f"--store {store}")
    assert not store.exists()


def test_save_an_attribute(ip, fake, store):
    class Holder:
        pass

    holder = Holder()
    holder.session = fake
    ip.user_ns["h"] = holder
    assert run(ip, "a3s_save", f"h.session --store {store}")[1].startswith("saved session")


# ============================================================================ bad input


@pytest.mark.parametrize(
    ("magic", "line", "match"),
    [
        ("a3s_save", "nope", "no variable 'nope' in the namespace"),
        ("a3s_save", "x", "x is a int, not a live a3s-code session"),
        ("a3s_save", "x.y", "x has no attribute 'y'"),
        ("a3s_save", "1x", "'1x' is not a variable name"),
        ("a3s_save", "s --bogus", "unrecognized arguments: --bogus"),
        ("a3s_save", "s --id", "expected one argument"),
        ("a3s_save", "s --id a/b", "contains a path separator"),
        ("a3s_save", "s --redact --allow-secrets", "choose one of redact"),
        ("a3s_resume", "", "the following arguments are required: id"),
        ("a3s_resume", "oscar --as 1x", "--as '1x' is not a variable name"),
        ("a3s_resume", "oscar --model openai/x", "--model needs --agent"),
        ("a3s_resume", "oscar --agent nope", "no variable 'nope'"),
        ("a3s_resume", "oscar --agent x", "a int is not an a3s-code Agent"),
        ("a3s_sessions", "--limit many", "invalid int value: 'many'"),
        ("a3s_sessions", "--limit -1", "limit must be 0 or more"),
        ("a3s_sessions", "--since yesterdayish", "is not a date or time"),
        ("a3s_save", "s --id ''", "--id '' is empty"),
        ("a3s_save", 's --id ""', "--id '' is empty"),
        ("a3s_save", "s --store ''", "--store '' is empty"),
        ("a3s_save", "s --id 'fix-1", "cannot read the arguments .*No closing quotation"),
        ("a3s_resume", "'' --as old", "ID '' is empty"),
        ("a3s_sessions", "--model ''", "--model '' is empty"),
    ],
)
def test_misuse_is_a_plain_usage_error(ip, fake, store, monkeypatch, magic, line, match):
    monkeypatch.setenv("A3S_NB_STORE", str(store))
    a3s_nb.save(fake)  # so that resume and sessions have something to find
    before = store_files(store)
    ip.user_ns["x"] = 3
    with pytest.raises(UsageError, match=match) as info:
        run(ip, magic, line)
    assert info.type is UsageError
    assert store_files(store) == before  # nothing half-written


def test_magic_arguments_are_read_as_a_shell_would(ip, fake, tmp_path):
    """Quotes group and are removed; they never end up in an id or a path."""
    store = tmp_path / "my store"
    _, out = run(ip, "a3s_save", "s --id 'fix-1' --store \"my store\"")
    assert out.startswith(f"saved session fix-1 in {store}:")
    assert (store / "fix-1.json").exists()
    assert not [p.name for p in tmp_path.rglob("*") if set(p.name) & set("'\"")]
    run(ip, "a3s_save", r"s --id fix\ 2 --store 'my store'")
    assert (store / "fix 2.json").exists()
    _, out = run(ip, "a3s_save", "s --id fix#3 --store 'my store'   # a comment, as in a shell")
    assert out.startswith("saved session fix#3 in")
    df, _ = run(ip, "a3s_sessions", "--store 'my store' --contains 'fix-1'")
    assert list(df["session_id"]) == ["fix-1"]
    _, out = run(ip, "a3s_resume", "'fix 2' --as \"old\" --store 'my store'")
    assert out.startswith("old: read-only saved session fix 2 ")


def test_an_empty_id_is_refused_not_ignored(fake, store):
    with pytest.raises(a3s_nb.InvalidSessionIdError, match="non-empty"):
        a3s_nb.save(fake, "", store=store)
    assert not store.exists()


def test_not_a_session(face, ip, store):
    ip.user_ns["s"] = {"messages": []}
    with face.raises("dict.* not a live a3s-code session"):
        face.save("s", store=store)
    assert not store.exists()


def test_saving_a_read_only_session_says_how_to_continue_it(face, fixture_dir, store):
    face.resume("fix-oscar", name="old", store=fixture_dir)
    with face.raises(r"read-only saved session; to continue it, .*--agent AGENT"):
        face.save("old", store=store)
    assert not store.exists()


def test_unknown_id_suggests_the_closest(face, fixture_dir):
    with face.raises(r"no session 'fix-oscar-2-001' in store .*did you mean 'fix-oscar-2-000'"):
        face.resume("fix-oscar-2-001", store=fixture_dir)


def test_ambiguous_prefix_lists_the_candidates(face, fixture_dir):
    with face.raises(r"'fix-' matches 2 sessions: fix-india-2-004, fix-oscar-2-000; give more"):
        face.resume("fix-", store=fixture_dir)


def test_store_that_is_a_file(face, fake, tmp_path):
    bad = tmp_path / "not-a-dir"
    bad.write_text("x")
    with face.raises("exists and is not a directory"):
        face.save("s", store=bad)
    with face.raises("exists and is not a directory"):
        face.resume("oscar", store=bad)
    with face.raises("exists and is not a directory"):
        face.sessions(store=bad)
    assert bad.read_text() == "x"


def test_missing_store_on_the_read_side(face, tmp_path):
    with face.raises(r"no store at .*nowhere: save a session there first"):
        face.resume("oscar", store=tmp_path / "nowhere")
    with face.raises("no store at"):
        face.sessions(store=tmp_path / "nowhere")
    assert not (tmp_path / "nowhere").exists()


def test_corrupt_session_file(face, fixture_dir):
    (fixture_dir / "runs" / "fix-oscar-2-000.json").write_text('[{"snapshot": ')
    with face.raises(r"runs/fix-oscar-2-000.json: not valid JSON"):
        face.resume("fix-oscar", store=fixture_dir)
    # the others still list, and the listing names the broken file
    with pytest.warns(UserWarning, match=r"skipped session 'fix-oscar-2-000': .*runs/fix-osc"):
        listed = set(a3s_nb.list_sessions(fixture_dir)["session_id"])
    assert "fix-india-2-004" in listed and "fix-oscar-2-000" not in listed


def test_agent_that_is_not_an_agent(face, ip, fixture_dir):
    ip.user_ns["agent"] = "gpt-4o"
    with face.raises("a str is not an a3s-code Agent"):
        face.resume("fix-oscar", agent="agent", store=fixture_dir)
    assert "session" not in ip.user_ns


def test_failed_capture_leaves_the_previous_save_intact(face, fake, store):
    face.save("s", store=store)
    before = store_files(store)
    fake.send("a turn that will not be saved")

    def broken() -> list:
        raise RuntimeError("connection to the session lost")

    fake.trace_events = broken
    with face.raises("could not read session 'oscar-live': connection to the session lost"):
        face.save("s", store=store)
    assert store_files(store) == before
    assert not list(store.rglob("*.tmp"))


# ============================================================================ two handles


@pytest.fixture
def twins(ip, fake, store) -> tuple[FakeSession, FakeSession]:
    """Two live handles, ``s`` and ``twin``, on one saved session: as two resumes make."""
    a3s_nb.save(fake, store=store)
    twin = FakeSession(a3s_nb.open_store(store).load("oscar-live"))
    ip.user_ns["twin"] = twin
    return fake, twin


def test_a_save_that_would_lose_another_handles_run_is_refused(face, twins, store):
    first, twin = twins
    first.send("Make the first change")
    twin.send("Make another change")
    assert face.save("s", store=store).startswith("updated session oscar-live")
    saved = store_files(store)
    [lost] = [r["snapshot"]["id"] for r in on_disk(store, "oscar-live")["runs"][5:]]
    with face.raises("not saving session oscar-live: the store has 2 messages and 1 run") as e:
        face.save("twin", store=store)
    message = str(e.value)
    assert f"({lost}'s prompt 'Make the first change')" in message
    assert "another handle" in message
    assert "--id NEW" in message and "--force" in message and "force=True" in message
    if face.kind == "function":
        assert isinstance(e.value, a3s_nb.SaveConflictError)
        assert (e.value.missing_runs, e.value.missing_messages) == ([lost], 2)
    assert store_files(store) == saved  # nothing written

    # the ways on: a new id, or overwriting on purpose
    assert face.save("twin", id="oscar-twin", store=store).startswith("saved session oscar-t")
    # the new id sticks: overwriting the old one takes its id again
    assert face.save("twin", store=store).startswith("updated session oscar-twin")
    line = face.save("twin", id="oscar-live", store=store, force=True)
    assert line.startswith("updated session oscar-live")
    prompts = [r["snapshot"]["prompt"] for r in on_disk(store, "oscar-live")["runs"][5:]]
    assert prompts == ["Make another change"]


def test_a_handle_that_is_behind_the_store_is_refused(face, twins, store):
    first, _twin = twins
    first.send("Keep going")
    face.save("s", store=store)
    with face.raises(r"the store has 2 messages and 1 run this session lacks"):
        face.save("twin", store=store)  # twin has nothing new, but saving it loses a run


def test_messages_that_differ_without_a_missing_run_are_a_conflict(face, twins, store):
    _first, twin = twins
    twin._messages[3]["content"][0]["text"] = "rewritten"
    with face.raises(r"the store has 17 messages this session lacks \(its messages differ "):
        face.save("twin", store=store)
    assert face.save("s", store=store).startswith("updated")


def test_saves_that_extend_the_store_go_through(face, twins, store):
    first, twin = twins
    assert face.save("twin", store=store).startswith("updated")  # the same: nothing lost
    # a run that the store holds as running and the session has since completed
    doc = on_disk(store, "oscar-live")
    run_file = store / "runs" / "oscar-live.json"
    runs = doc["runs"]
    runs[-1]["snapshot"]["status"] = "running"
    run_file.write_text(json.dumps(runs))
    first.send("one more")
    assert face.save("s", store=store).startswith("updated session oscar-live")
    assert on_disk(store, "oscar-live")["runs"][4]["snapshot"]["status"] == "completed"
    # both handles save in turn, each after the other's save is in its history
    twin.send("and more")  # twin lacks first's "one more" run: a conflict
    with face.raises("1 run this session lacks"):
        face.save("twin", store=store)


def test_a_redacted_save_is_extended_by_the_session_it_came_from(face, leaky, store):
    face.save("s", store=store, redact=True)
    leaky.send("a later prompt")
    assert face.save("s", store=store, redact=True).startswith("updated")
    # the store holds [REDACTED:...] where the live session has the key: not lost work
    assert face.save("s", store=store, allow_secrets=True).startswith("updated")


def test_saving_over_another_session_s_id_is_refused(face, fake, fixture_dir):
    with face.raises(r"not saving session fix-india-2-004: the store has \d+ messages and "):
        face.save("s", id="fix-india-2-004", store=fixture_dir)


# ============================================================================ secrets

OPENAI = "sk-" + "proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"


@pytest.fixture
def leaky(fake) -> FakeSession:
    """The fake session after a prompt with an API key and a tool that printed a token."""
    fake.send(f"use this key: {OPENAI}", "Understood.")
    fake._runs[-1]["events"][0]["event"]["prompt"] += " (again)"
    return fake


def test_secrets_refuse_the_save_and_say_where(face, leaky, store, monkeypatch):
    monkeypatch.setenv("DEPLOY_TOKEN", "tok-0123456789abcdef")
    leaky._messages[-1]["content"][0]["text"] = "the deploy token is tok-0123456789abcdef"
    with face.raises("not saving session oscar-live: 4 secrets") as info:
        face.save("s", store=store)
    message = str(info.value)
    assert "session: messages[20].content[0].text: openai-key (sk-p…, 40 chars)" in message
    assert "session: messages[21].content[0].text: env:DEPLOY_TOKEN (value of $DEPLOY_TOKEN" in (
        message
    )
    assert "runs: [5].snapshot.prompt: openai-key" in message
    assert "runs: [5].events[0].event.prompt: openai-key" in message
    assert "--redact" in message and "--allow-secrets" in message
    assert OPENAI not in message and "0123456789abcdef" not in message
    assert not store.exists()  # nothing written


def test_secrets_redacted(face, leaky, store):
    line = face.save("s", store=store, redact=True)
    assert line.endswith("; 3 secrets redacted")
    text = json.dumps(on_disk(store, "oscar-live"))
    assert OPENAI not in text
    assert "use this key: [REDACTED:openai-key]" in text


def test_secrets_allowed(face, leaky, store):
    line = face.save("s", store=store, allow_secrets=True)
    assert line.endswith("; 3 secrets written as is (allowed)")
    assert OPENAI in json.dumps(on_disk(store, "oscar-live"))


def test_a_secret_already_saved_is_still_found(face, leaky, store):
    face.save("s", store=store, allow_secrets=True)
    with face.raises("3 secrets"):
        face.save("s", store=store)


# ============================================================================ the real SDK


def sdk_session(a3s_code, agent, ws: Path, **options):
    """A session as a user makes one: plain ``agent.session``, tools allowed."""
    opts = a3s_code.SessionOptions()
    opts.permission_policy = a3s_code.PermissionPolicy(default_decision="allow")
    for key, value in options.items():
        setattr(opts, key, value)
    return agent.session(str(ws), opts)


@pytest.mark.sdk
def test_end_to_end_with_the_real_sdk(face, ip, a3s_code, sdk_agent, scripted_llm, ws, store):
    session = sdk_session(a3s_code, sdk_agent, ws)
    result = session.send(testing.WRITE_READ_PROMPT)
    assert result.tool_calls_count == 2
    sid = session.session_id
    ip.user_ns.update(agent=sdk_agent, session=session)

    line = face.save("session", store=store)
    assert line == f"saved session {sid} in {store}: 6 messages, 1 run, 2 tool calls"
    first = on_disk(store, sid)
    assert first["session"]["messages"] == session.history()
    assert first["session"]["model_name"] == "openai/fake-model"
    assert first["session"]["llm_config"] == {
        "provider": "openai",
        "model": "fake-model",
        "base_url": None,
    }
    assert [t["name"] for t in first["traces"]] == ["write", "read"]
    assert first["runs"][0]["snapshot"]["status"] == "completed"

    # drop the variable: the session is gone from this kernel
    del ip.user_ns["session"]
    session.close()
    del session

    resumed, out = face.resume(sid[:8], agent="agent", store=store)
    assert isinstance(resumed, a3s_code.Session) and resumed.session_id == sid
    assert ip.user_ns["session"] is resumed
    assert resumed.history() == first["session"]["messages"]
    if face.kind == "magic":
        assert out.startswith(f"session: live session {sid} resumed (6 messages, 1 run)")
        assert f"[user] {testing.WRITE_READ_PROMPT}" in out

    scripted_llm.clear_requests()
    assert resumed.send(testing.CHAT_PROMPT).text.startswith("Hello!")
    # the model saw the earlier turn: the session continued, it did not start over
    [chat] = [r for r in scripted_llm.requests if r.kind == "chat"]
    assert testing.WRITE_READ_PROMPT in json.dumps(chat.body)

    line = face.save("session", store=store)
    assert line == f"updated session {sid} in {store}: 8 messages, 2 runs, 2 tool calls"
    second = on_disk(store, sid)
    # the files grew by exactly that turn
    assert second["session"]["messages"][:6] == first["session"]["messages"]
    assert [m["role"] for m in second["session"]["messages"][6:]] == ["user", "assistant"]
    assert second["session"]["messages"][6]["content"][0]["text"] == testing.CHAT_PROMPT
    assert second["runs"][:1] == first["runs"]
    assert [r["snapshot"]["prompt"] for r in second["runs"][1:]] == [testing.CHAT_PROMPT]
    assert second["traces"] == first["traces"]  # the chat turn ran no tool
    assert second["session"]["created_at"] == first["session"]["created_at"]
    assert second["session"]["updated_at"] >= first["session"]["updated_at"]
    resumed.close()


@pytest.mark.sdk
def test_model_learned_from_a_session_that_has_not_run_yet(a3s_code, scripted_llm, ws, store):
    llm = testing.ScriptedLLM(testing.standard_script(), models=("fake-model", "other-model"))
    with llm:
        agent = a3s_code.Agent.create(llm.acl_config())
        session = sdk_session(a3s_code, agent, ws, model="openai/other-model")
        a3s_nb.save(session, store=store)
        doc = on_disk(store, session.session_id)["session"]
        assert doc["model_name"] == "openai/other-model"
        assert doc["messages"] == [] and on_disk(store, session.session_id)["runs"] == []
        # asking did not change the session
        assert session.history() == [] and session.runs() == []
        session.close()


@pytest.mark.sdk
def test_resume_on_an_agent_without_the_saved_model(face, ip, a3s_code, ws, store):
    two = testing.ScriptedLLM(testing.standard_script(), models=("fake-model", "other-model"))
    one = testing.ScriptedLLM(testing.standard_script())
    with two, one:
        session = sdk_session(
            a3s_code, a3s_code.Agent.create(two.acl_config()), ws, model="openai/other-model"
        )
        session.send(testing.CHAT_PROMPT)
        ip.user_ns["s"] = session
        face.save("s", store=store)
        ip.user_ns["small_agent"] = a3s_code.Agent.create(one.acl_config())
        with face.raises(r"model 'openai/other-model' of the saved session .* is not in the"):
            face.resume(session.session_id, agent="small_agent", name="again", store=store)
        assert "again" not in ip.user_ns
        session.close()


@pytest.mark.sdk
def test_secret_printed_by_a_real_tool(face, ip, a3s_code, scripted_llm, ws, store, monkeypatch):
    monkeypatch.setenv("A3S_NB_DEMO_PASSWORD", "correct-horse-battery")
    scripted_llm.add(
        testing.Rule(
            match="Show the password",
            replies=(
                testing.Reply(
                    tool_calls=(
                        {"name": "bash", "arguments": {"command": "echo $A3S_NB_DEMO_PASSWORD"}},
                    )
                ),
                testing.Reply(text="Printed it."),
            ),
        )
    )
    session = sdk_session(a3s_code, a3s_code.Agent.create(scripted_llm.acl_config()), ws)
    session.send("Show the password")
    ip.user_ns["s"] = session
    with face.raises(r"env:A3S_NB_DEMO_PASSWORD") as info:
        face.save("s", store=store)
    assert "session: messages[2].content[0].content: env:A3S_NB_DEMO_PASSWORD" in str(info.value)
    assert "correct-horse" not in str(info.value)
    assert not store.exists()
    line = face.save("s", store=store, redact=True)
    assert "secrets redacted" in line
    files = json.dumps(on_disk(store, session.session_id))
    assert "correct-horse-battery" not in files and "[REDACTED:env]" in files
    # and the SDK still resumes what was redacted
    again = a3s_nb.resume(session.session_id, scripted_llm.agent(), store=store)
    assert "[REDACTED:env]" in json.dumps(again.history())
    session.close()
    again.close()


@pytest.mark.sdk
@pytest.mark.parametrize("confirm", [False, True])
def test_resumed_sessions_run_tools_unless_told_to_confirm(
    ip, a3s_code, sdk_agent, ws, store, confirm
):
    session = sdk_session(a3s_code, sdk_agent, ws)
    session.send(testing.CHAT_PROMPT)
    a3s_nb.save(session, store=store)
    session.close()
    ip.user_ns["agent"] = sdk_agent
    flag = " --confirm-tools" if confirm else ""
    run(ip, "a3s_resume", f"{session.session_id} --agent agent --as again --store {store}{flag}")
    again = ip.user_ns["again"]
    again.send(testing.WRITE_READ_PROMPT)
    results = [b for m in again.history() for b in m["content"] if b["type"] == "tool_result"]
    assert len(results) == 2
    assert all(r["is_error"] for r in results) is confirm
    assert (ws / "notes.txt").exists() is not confirm
    if confirm:
        assert "requires confirmation" in results[0]["content"]
    again.close()


@pytest.mark.sdk
def test_save_says_when_tool_calls_were_refused(face, ip, a3s_code, sdk_agent, ws, store):
    """agent.session(".") with no PermissionPolicy: the SDK refuses every tool call."""
    session = sdk_agent.session(str(ws))
    session.send(testing.WRITE_READ_PROMPT)
    ip.user_ns["session"] = session
    line = face.save("session", store=store)
    assert line.endswith(
        ": 6 messages, 1 run, 2 tool calls, 2 failed: refused, no confirmation manager "
        "(set a PermissionPolicy)"
    )
    assert not (ws / "notes.txt").exists()  # they did not run
    session.close()


def test_save_line_tells_failed_from_refused_tool_calls():
    line = functools.partial(a3s_nb.api.SaveResult, "s", "st", 4, 1, 5, True)
    assert str(line()).endswith("5 tool calls")
    assert str(line(tool_calls_failed=2)).endswith("5 tool calls, 2 failed")
    assert str(line(tool_calls_failed=3, tool_calls_refused=1)).endswith(
        "5 tool calls, 3 failed, 1 of them refused: no confirmation manager (set a PermissionPolicy)"
    )


@pytest.mark.sdk
def test_two_handles_on_one_session_with_the_real_sdk(face, ip, a3s_code, sdk_agent, ws, store):
    first = sdk_session(a3s_code, sdk_agent, ws)
    first.send(testing.CHAT_PROMPT)
    sid = first.session_id
    a3s_nb.save(first, store=store)
    first.close()
    ip.user_ns["agent"] = sdk_agent
    session, _ = face.resume(sid, agent="agent", store=store)
    twin, _ = face.resume(sid, agent="agent", name="twin", store=store)
    assert session is not twin
    session.send(testing.WRITE_READ_PROMPT)
    twin.send("Say hello once more")
    assert face.save("session", store=store).startswith(f"updated session {sid}")
    [run] = [r for r in session.runs() if r["prompt"] == testing.WRITE_READ_PROMPT]
    with face.raises(r"the store has 6 messages and 1 run this session lacks") as e:
        face.save("twin", store=store)
    assert f"({run['id']}'s prompt {testing.WRITE_READ_PROMPT!r})" in str(e.value)
    assert on_disk(store, sid)["session"]["messages"] == session.history()
    assert face.save("twin", store=store, force=True).startswith(f"updated session {sid}")
    assert on_disk(store, sid)["session"]["messages"] == twin.history()
    session.close()
    twin.close()


@pytest.mark.sdk
def test_the_sdk_s_own_save_in_between(ip, a3s_code, sdk_agent, ws, store):
    """An SDK auto-save is a prefix of the session that made it, and lost work to another."""
    first = sdk_session(a3s_code, sdk_agent, ws)
    first.send(testing.CHAT_PROMPT)
    sid = first.session_id
    a3s_nb.save(first, store=store)
    first.close()
    auto = a3s_nb.resume(sid, sdk_agent, store=store, auto_save=True)
    other = a3s_nb.resume(sid, sdk_agent, store=store)
    auto.send(testing.WRITE_READ_PROMPT)
    a3s_nb.sdk.live.wait_for_autosave(auto, store)  # the SDK wrote the store itself
    assert on_disk(store, sid)["session"]["messages"] == auto.history()
    auto.send("Say hello again")  # the SDK saves this one too, in the background
    a3s_nb.sdk.live.wait_for_autosave(auto, store)
    assert str(a3s_nb.save(auto, store=store)).startswith(f"updated session {sid}")
    other.send("Say hello to the other handle")
    with pytest.raises(a3s_nb.SaveConflictError, match="8 messages and 2 runs"):
        a3s_nb.save(other, store=store)
    auto.close()
    other.close()


def test_confirm_tools_needs_an_agent(ip, fixture_dir):
    with pytest.raises(UsageError, match="--confirm-tools needs --agent"):
        ip.run_line_magic("a3s_resume", f"fix-oscar --confirm-tools --store {fixture_dir}")


# ============================================================================ autosave


def cell(ip, code: str) -> tuple[Any, str, str]:
    """Run a cell as a notebook would (post_run_cell fires); its result, stdout, stderr."""
    with capture_output() as cap:
        result = ip.run_cell(code)
    return result, cap.stdout, cap.stderr


def autosave_on(face: Face, store: Path, **options: Any) -> str:
    if face.kind == "function":
        return str(a3s_nb.autosave(True, store=store, **options))
    flags = "".join(f" --{k.replace('_', '-')}" for k, v in options.items() if v)
    return run(face.ip, "a3s_autosave", f"on --store {shlex.quote(str(store))}{flags}")[1]


def autosave_off(face: Face) -> None:
    if face.kind == "function":
        assert a3s_nb.autosave(False) is None
    else:
        assert run(face.ip, "a3s_autosave", "off")[1].strip() == "autosave is off"


@pytest.fixture
def no_autosave(ip):
    yield
    a3s_nb.autosave(False, shell=ip)


def test_autosave_saves_after_a_cell_that_changed_a_session(face, ip, fake, store, no_autosave):
    assert "autosave is on" in autosave_on(face, store)
    assert not store.exists()  # turning it on saves nothing by itself
    result, _, err = cell(ip, "x = 1")
    assert result.success and err == ""
    assert on_disk(store, "oscar-live")["session"]["messages"] == fake.history()  # first sight
    session_file = store / "oscar-live.json"
    before = session_file.stat().st_mtime_ns, session_file.stat().st_ino
    cell(ip, "y = 2")  # nothing changed: nothing written
    assert (session_file.stat().st_mtime_ns, session_file.stat().st_ino) == before
    cell(ip, "s.send('a change in a cell')")
    assert on_disk(store, "oscar-live")["runs"][-1]["snapshot"]["prompt"] == "a change in a cell"
    if face.kind == "magic":
        _, out = run(ip, "a3s_autosave")
        assert out.startswith(
            f"autosave is on: after each cell, live sessions that changed are saved in {store}; 2 saves so far, the last at "
        )
        assert out.rstrip().endswith("22 messages, 6 runs, 5 tool calls, 2 failed")
    else:
        assert a3s_nb.autosave().saves == 2
    autosave_off(face)
    cell(ip, "s.send('not saved: autosave is off')")
    assert len(on_disk(store, "oscar-live")["runs"]) == 6
    assert "autosave is off" in run(ip, "a3s_autosave")[1]


def test_autosave_keeps_the_id_the_session_was_saved_under(ip, fake, store, no_autosave):
    run(ip, "a3s_save", f"s --id fix-1 --store {store}")
    run(ip, "a3s_autosave", f"on --store {store}")
    cell(ip, "s.send('more')")
    assert sorted(p.name for p in store.glob("*.json")) == ["fix-1.json"]
    assert on_disk(store, "fix-1")["runs"][-1]["snapshot"]["prompt"] == "more"


def test_a_refused_autosave_is_said_once_and_never_fails_the_cell(
    face, ip, leaky, store, no_autosave
):
    autosave_on(face, store)
    result, _, err = cell(ip, "x = 1")
    assert result.success
    assert err.startswith("a3s_nb autosave: not saving session oscar-live: 3 secrets")
    assert "said once" in err and not store.exists()
    result, _, err = cell(ip, "s.send('again')")  # changed, refused again: not repeated
    assert result.success and err == ""
    assert cell(ip, "x = 2")[2] == ""
    autosave_on(face, store, redact=True)
    _, _, err = cell(ip, "s.send('and now')")  # working again: said once too
    assert err.startswith("a3s_nb autosave: saved session oscar-live in ")
    assert err.rstrip().endswith("; 3 secrets redacted")
    assert "[REDACTED:openai-key]" in json.dumps(on_disk(store, "oscar-live"))
    assert cell(ip, "s.send('once more')")[2] == ""


def test_autosave_does_not_overwrite_another_handles_work(face, ip, twins, store, no_autosave):
    autosave_on(face, store)
    cell(ip, "x = 0")
    _, _, err = cell(ip, "s.send('first handle')")
    assert err == ""
    _, _, err = cell(ip, "twin.send('second handle')")
    assert err.startswith(
        "a3s_nb autosave: not saving session oscar-live: the store has 2 messages and 1 run"
    )
    assert err.count("not saving") == 1
    assert cell(ip, "twin.send('more on the second')")[2] == ""  # said once
    prompts = [r["snapshot"]["prompt"] for r in on_disk(store, "oscar-live")["runs"][5:]]
    assert prompts == ["first handle"]


def test_autosave_is_off_after_unload(ip, fake, store):
    run(ip, "a3s_autosave", f"on --store {store}")
    ip.run_line_magic("unload_ext", "a3s_nb")
    try:
        assert a3s_nb.autosave(shell=ip) is None
        cell(ip, "s.send('after unload')")
        assert not store.exists()
    finally:
        ip.run_line_magic("load_ext", "a3s_nb")


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("maybe", "takes on or off, not 'maybe'"),
        ("--redact", "go with %a3s_autosave on"),
        ("off --store x", "go with %a3s_autosave on"),
        ("on --redact --allow-secrets", "choose one of redact"),
    ],
)
def test_autosave_misuse(ip, line, match, no_autosave):
    with pytest.raises(UsageError, match=match) as info:
        run(ip, "a3s_autosave", line)
    assert info.type is UsageError
    assert a3s_nb.autosave(shell=ip) is None


def test_autosave_needs_an_ipython_shell():
    code = (
        "import a3s_nb\n"
        "try:\n    a3s_nb.autosave(True)\n"
        "except a3s_nb.A3sNbError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert "in a script, call a3s_nb.save(session)" in out.stdout


@pytest.mark.sdk
def test_autosave_with_the_real_sdk(ip, a3s_code, sdk_agent, ws, store, no_autosave):
    session = sdk_session(a3s_code, sdk_agent, ws)
    ip.user_ns.update(session=session, testing=testing)
    run(ip, "a3s_autosave", f"on --store {store}")
    cell(ip, "x = 1")
    assert not store.exists()  # a session that has not run yet is not saved
    result, _, err = cell(ip, "session.send(testing.WRITE_READ_PROMPT)")
    assert result.success and err == ""
    doc = on_disk(store, session.session_id)
    assert doc["session"]["messages"] == session.history()
    assert [t["name"] for t in doc["traces"]] == ["write", "read"]
    cell(ip, "session.send(testing.CHAT_PROMPT)")
    assert on_disk(store, session.session_id)["session"]["messages"] == session.history()
    session.close()


# ============================================================================ the README


def readme_notebook_example() -> tuple[str, str]:
    """The README's notebook example: (first day, next day in a new kernel) as cell code."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("## In a notebook", 1)[1].split("\n## ", 1)[0]
    first, nextday = (block.split("```", 1)[0] for block in section.split("```python\n")[1:3])
    return first, nextday


@pytest.mark.sdk
def test_the_readme_notebook_example_runs_as_written(ip, a3s_code, tmp_path, no_autosave):
    """Cell by cell, in a fresh directory, no API key; the shown outputs are the real ones."""
    first, nextday = readme_notebook_example()
    servers = []
    try:
        result, out, err = cell(ip, first)
        servers.append(ip.user_ns["llm"])
        assert result.success, err
        session = ip.user_ns["session"]
        sid = session.session_id
        workspace, store = tmp_path / "project", tmp_path / "a3s_sessions"
        assert (workspace / "notes.txt").read_text() == "hello from a3s_nb\n"  # tools ran
        assert not store.is_relative_to(workspace)
        [comment] = [line for line in first.splitlines() if line.startswith("%a3s_save")]
        shown = comment.split("# ", 1)[1]
        expected = shown.replace(" in a3s_sessions:", f" in {store}:")
        assert expected in out.splitlines()
        assert on_disk(store, sid)["session"]["messages"] == session.history()

        # the next day: a new kernel (no variables, no autosave)
        session.close()
        ip.run_line_magic("unload_ext", "a3s_nb")
        ip.reset(new_session=False)
        result, out, err = cell(ip, nextday)
        servers.append(ip.user_ns["llm"])
        assert result.success, err
        assert out.startswith(f"session: live session {sid} resumed (6 messages, 1 run)")
        again = ip.user_ns["session"]
        assert again.session_id == sid and len(again.history()) == 8
        assert set(ip.user_ns["a3s_nb"].runs()["session_id"]) == {sid}
        _, out = run(ip, "a3s_save", "session")  # autosave is per kernel: not on in this one
        assert out.startswith(f"updated session {sid} in {store}: 8 messages,")
        again.close()
    finally:
        for llm in servers:
            llm.stop()


# ============================================================================ warnings


def test_warnings_point_at_the_users_line(face, fixture_dir, fake, store):
    (fixture_dir / "runs" / "fix-oscar-2-000.json").write_text('[{"snapshot": ')
    with pytest.warns(UserWarning, match="skipped session 'fix-oscar-2-000'") as record:
        face.sessions(store=fixture_dir)
    assert {w.filename for w in record} == {__file__}
    with pytest.warns(UserWarning, match="skipped session") as record:
        a3s_nb.all_frames(fixture_dir, ["sessions", "runs"])
        a3s_nb.traces(fixture_dir)
    assert {w.filename for w in record} == {__file__}
    face.save("s", store=store)
    (store / "oscar-live.json").write_text("{")
    with pytest.warns(UserWarning, match="replacing an unreadable earlier save") as record:
        face.save("s", store=store)
    assert [w.filename for w in record] == [__file__]


def test_a_warning_from_a_magic_points_at_the_cell(ip, fixture_dir):
    import warnings

    (fixture_dir / "runs" / "fix-oscar-2-000.json").write_text('[{"snapshot": ')
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        result, _, _ = cell(ip, f"x = 1\n%a3s_sessions --store {shlex.quote(str(fixture_dir))}")
    assert result.success
    [w] = [w for w in record if "skipped session" in str(w.message)]
    assert w.lineno == 2 and "a3s_nb" not in w.filename and "IPython" not in w.filename


@pytest.mark.sdk
def test_autosave_sees_changes_made_without_a_run(ip, a3s_code, sdk_agent, ws, store, no_autosave):
    session = sdk_session(a3s_code, sdk_agent, ws)
    session.send(testing.CHAT_PROMPT)
    ip.user_ns["session"] = session
    run(ip, "a3s_autosave", f"on --store {store}")
    cell(ip, "x = 1")
    sid = session.session_id
    cell(ip, "_ = session.bash('echo direct')")  # a tool call of its own: a trace, no run
    assert len(on_disk(store, sid)["traces"]) == 1
    report = {"schema": "a3s.verification_report.v1", "subject": "x", "status": "passed"}
    cell(ip, f"session.record_verification_reports([{{**{report!r}, 'checks': []}}])")
    assert [r["subject"] for r in on_disk(store, sid)["verification"]] == ["x"]
    session.close()


def test_what_extends_a_stored_session(fixture_store):
    """missing_from: stored messages a prefix, stored run ids all present; redactions match."""
    from a3s_nb.api import missing_from

    stored = fixture_store.load("fix-oscar-2-000")
    live = stored.model_copy(deep=True)
    assert missing_from(stored, live) == ([], 0)
    first = stored.runs[0].snapshot.id
    live.runs = live.runs[1:]
    assert missing_from(stored, live) == ([first], 0)
    live = stored.model_copy(deep=True)
    live.session.messages = live.session.messages[:-3]
    assert missing_from(stored, live) == ([], 3)
    # a redacted stored text stands for the secret the live session still has there ...
    live = stored.model_copy(deep=True)
    stored.session.messages[0].content[0].text = "use [REDACTED:openai-key] here"
    live.session.messages[0].content[0].text = f"use {OPENAI} here"
    assert missing_from(stored, live) == ([], 0)
    # ... and nothing else
    live.session.messages[0].content[0].text = f"use {OPENAI} there"
    assert missing_from(stored, live) == ([], len(stored.session.messages))
