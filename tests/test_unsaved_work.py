"""A live session's unsaved work is never dropped, and the id it was saved under sticks.

``%a3s_resume`` binds a name: it refuses to rebind one that holds a live session with work
that is not in the store (never saved, or changed since it was last saved or resumed).
``%a3s_save session --id NAME`` makes NAME the id later saves (and autosave) update.
Driven with the real a3s-code SDK against the scripted server, through both faces.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from IPython.core.error import UsageError

import a3s_nb
from a3s_nb import testing

from .conftest import on_disk
from .test_magics import Face, cell, no_autosave, run, sdk_session, store_files  # noqa: F401

pytestmark = pytest.mark.sdk


@pytest.fixture(params=["function", "magic"])
def face(request, ip) -> Face:
    return Face(request.param, ip)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "saved"


@pytest.fixture
def mywork(a3s_code, sdk_agent, ws, store) -> str:
    """A session saved as ``mywork`` (and closed), to resume."""
    first = sdk_session(a3s_code, sdk_agent, ws)
    first.send(testing.CHAT_PROMPT)
    a3s_nb.save(first, "mywork", store=store)
    first.close()
    return "mywork"


def resume_line(store: Path, agent: bool, name: str | None = None) -> str:
    line = f"mywork --store {store}"
    line += " --agent agent" * agent
    return line + (f" --as {name}" if name else "")


# ============================================================================ item: resume


@pytest.mark.parametrize("agent", [False, True], ids=["read-only", "live"])
def test_resume_refuses_to_drop_a_live_session_with_unsaved_work(
    ip, a3s_code, sdk_agent, ws, store, mywork, agent
):
    session = sdk_session(a3s_code, sdk_agent, ws)
    session.send(testing.WRITE_READ_PROMPT)  # a run that was never saved
    ip.user_ns.update(session=session, agent=sdk_agent)
    before = store_files(store)
    with pytest.raises(UsageError) as info:
        run(ip, "a3s_resume", resume_line(store, agent))
    assert info.type is UsageError
    message = str(info.value)
    assert f"session holds live session {session.session_id}" in message
    assert "never saved" in message and "1 run" in message
    assert "--as NAME" in message and "%a3s_save session" in message
    assert ip.user_ns["session"] is session  # still bound, still live
    assert store_files(store) == before
    assert session.send(testing.CHAT_PROMPT).text  # and it still works

    # another name is fine, and leaves the live one where it is
    run(ip, "a3s_resume", resume_line(store, agent, name="old"))
    assert ip.user_ns["session"] is session and ip.user_ns["old"] is not session

    # saved, it may be replaced ...
    run(ip, "a3s_save", f"session --store {store}")
    run(ip, "a3s_resume", resume_line(store, agent))
    assert ip.user_ns["session"] is not session
    session.close()
    for name in ("session", "old"):
        if agent:
            ip.user_ns[name].close()


def test_a_session_changed_since_its_save_is_kept(ip, a3s_code, sdk_agent, ws, store, mywork):
    session = sdk_session(a3s_code, sdk_agent, ws)
    session.send(testing.CHAT_PROMPT)
    ip.user_ns.update(session=session, agent=sdk_agent)
    a3s_nb.save(session, store=store)
    session.send("Say hello once more")  # a run after the save
    with pytest.raises(
        UsageError, match=r"changed since it was last saved as .* \(2 runs now, 1 then\)"
    ):
        run(ip, "a3s_resume", resume_line(store, agent=True))
    assert ip.user_ns["session"] is session
    session.close()


def test_sessions_with_nothing_unsaved_may_be_replaced(ip, a3s_code, sdk_agent, ws, store, mywork):
    ip.user_ns["agent"] = sdk_agent
    empty = sdk_session(a3s_code, sdk_agent, ws)  # nothing run: nothing to lose
    ip.user_ns["session"] = empty
    run(ip, "a3s_resume", resume_line(store, agent=True))
    resumed = ip.user_ns["session"]
    assert resumed is not empty and resumed.session_id == "mywork"
    # a live session just resumed holds what the store holds: resuming again replaces it
    run(ip, "a3s_resume", resume_line(store, agent=False))
    assert isinstance(ip.user_ns["session"], a3s_nb.SavedSession)
    # but once it has run, it holds work the store lacks
    resumed.send(testing.CHAT_PROMPT)
    ip.user_ns["session"] = resumed
    with pytest.raises(
        UsageError, match=r"changed since it was last resumed from mywork \(2 runs now, 1 then\)"
    ):
        run(ip, "a3s_resume", resume_line(store, agent=False))
    assert ip.user_ns["session"] is resumed
    empty.close()
    resumed.close()


# ============================================================================ item: --id sticks


def test_the_id_a_session_was_saved_under_sticks(face, ip, a3s_code, sdk_agent, ws, store):
    session = sdk_session(a3s_code, sdk_agent, ws)
    session.send(testing.CHAT_PROMPT)
    ip.user_ns["session"] = session
    own = session.session_id
    line = face.save("session", id="mywork", store=store)
    assert line.startswith(f"saved session mywork in {store}: 2 messages, 1 run")
    assert line.endswith(f"; the live session {own} is saved as mywork (until another id is given)")
    session.send(testing.WRITE_READ_PROMPT)
    line = face.save("session", store=store)
    assert line.startswith(f"updated session mywork in {store}: 8 messages, 2 runs, 2 tool calls")
    assert f"live session {own} is saved as mywork" in line
    assert sorted(p.name for p in store.glob("*.json")) == ["mywork.json"]  # no second session
    assert on_disk(store, "mywork")["session"]["messages"] == session.history()
    # another id given moves it on; its own id given, it is saved under its own again
    assert face.save("session", id="other", store=store).startswith("saved session other in")
    assert face.save("session", store=store).startswith("updated session other in")
    line = face.save("session", id=own, store=store)
    assert line == f"saved session {own} in {store}: 8 messages, 2 runs, 2 tool calls"
    assert face.save("session", store=store).startswith(f"updated session {own} in")
    session.close()


def test_autosave_and_save_follow_one_memory(ip, a3s_code, sdk_agent, ws, store, no_autosave):  # noqa: F811
    session = sdk_session(a3s_code, sdk_agent, ws)
    session.send(testing.CHAT_PROMPT)
    ip.user_ns.update(session=session, testing=testing)
    run(ip, "a3s_autosave", f"on --store {store}")
    run(ip, "a3s_save", f"session --id mywork --store {store}")
    cell(ip, "session.send('Say hello once more')")  # autosave updates mywork
    assert len(on_disk(store, "mywork")["runs"]) == 2
    _, out = run(ip, "a3s_save", f"session --store {store}")
    assert out.startswith(f"updated session mywork in {store}: 4 messages, 2 runs")
    assert sorted(p.name for p in store.glob("*.json")) == ["mywork.json"]
    session.close()


def test_what_a_dead_session_left_is_not_taken_for_a_new_one_at_its_address(tmp_path):
    """The memory of where a session was saved is keyed by its address (``id``): a new
    session with the same id at the address of a dead one must not inherit its saved-as id
    (an autosave then wrote under another session's name, seen once in CI)."""
    from a3s_nb import api

    from .conftest import FIXTURE_STORE
    from .fakes import fake_session

    old, new = (
        fake_session(FIXTURE_STORE, "fix-oscar-2-000"),
        fake_session(FIXTURE_STORE, "fix-oscar-2-000"),
    )
    a3s_nb.save(old, id="fix-1", store=tmp_path / "store")
    assert api.saved_as(old) == "fix-1"
    api._SAVED_AS[api._key(new)] = api._SAVED_AS.pop(api._key(old))  # old died; new at its address
    assert api.saved_as(new) is None
    assert api._key(new) not in api._SAVED_AS
