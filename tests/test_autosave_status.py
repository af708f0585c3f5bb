"""``%a3s_autosave`` (and ``a3s_nb.autosave()``) name the sessions whose saves keep being
refused, and why, one line each, until a save of theirs works again."""

from __future__ import annotations

import a3s_nb

from .fakes import FakeSession
from .test_magics import (  # noqa: F401 - fixtures
    autosave_on,
    cell,
    face,
    fake,
    leaky,
    no_autosave,
    run,
    store,
)


def status(via) -> str:
    if via.kind == "function":
        return str(a3s_nb.autosave())
    return run(via.ip, "a3s_autosave")[1].rstrip("\n")


def test_the_status_names_the_sessions_refused_and_why(
    face,  # noqa: F811
    ip,
    leaky,  # noqa: F811
    store,  # noqa: F811
    fixture_store,
    no_autosave,  # noqa: F811
):
    ip.user_ns["ok"] = FakeSession(fixture_store.load("explore-lima-2-001"))
    ip.user_ns["same"] = leaky  # one session, two names
    autosave_on(face, store)
    _, _, err = cell(ip, "x = 1")
    assert "not saving session oscar-live: 3 secrets" in err  # said once, on stderr
    lines = status(face).split("\n")
    assert lines[0].startswith("autosave is on: ") and "1 save so far" in lines[0]
    assert lines[1:] == [
        "refused, tried again after each change (1 session):",
        "  s = same (oscar-live): not saving session oscar-live: 3 secrets in what would be "
        "written (file: JSON path: kind)",
    ]
    cell(ip, "s.send('still leaking')")  # refused again, silently: still listed
    assert status(face).split("\n")[1:] == lines[1:]
    if face.kind == "function":
        assert a3s_nb.autosave().refused == {"s = same (oscar-live)": lines[2].split(": ", 1)[1]}

    autosave_on(face, store, redact=True)  # a save that works clears it
    cell(ip, "s.send('and now')")
    assert "\n" not in status(face) and "refused" not in status(face)
