"""The conflict check of a save when a file of the stored session does not load.

Two handles resumed from one saved session; the first saves a new prompt; then one stored
file becomes unreadable. The second handle's save must still be refused: what does load
(the messages, the run ids) is compared, and an unreadable file is never "nothing stored".
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import a3s_nb
from a3s_nb.errors import SaveConflictError

from .fakes import FakeSession

SID = "oscar-live"
FILES = {
    "session": f"{SID}.json",
    "runs": f"runs/{SID}.json",
    "traces": f"traces/{SID}.json",
    "verification": f"verification/{SID}.json",
    "artifacts": f"artifacts/{SID}/artifacts.json",
}


def _truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _wrong_type(path: Path) -> None:
    path.write_text("42")


def _record_without_a_field(path: Path) -> None:
    """Valid JSON, of the a3s-code shape but for one record."""
    doc = json.loads(path.read_text())
    if path.parent.name == "runs":
        doc[0]["snapshot"].pop("status")  # one run record without status
    elif path.parent.name in ("traces", "verification"):
        doc.append({"unexpected": 1})
    elif path.name == "artifacts.json":
        doc["artifacts"] = [{"artifact_id": 1}]
    else:  # the session document
        doc.pop("created_at")
    path.write_text(json.dumps(doc))


def _directory(path: Path) -> None:
    path.unlink()
    path.mkdir()
    (path / "x").write_text("x")


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _dangling_link(path: Path) -> None:
    path.unlink()
    path.symlink_to(path.parent / "nowhere.json")


BREAK = {
    "truncated": _truncated,
    "wrong-type": _wrong_type,
    "record-without-a-field": _record_without_a_field,
    "directory": _directory,
    "fifo": _fifo,
    "dangling-link": _dangling_link,
}


def _snapshot(store: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    for p in sorted(store.rglob("*")):
        if ".a3s_nb" in p.parts:
            continue
        if p.is_symlink():
            out[str(p)] = ("link", os.readlink(p))
        elif p.is_file() and not p.is_fifo():
            out[str(p)] = p.read_bytes()
        else:
            out[str(p)] = "dir" if p.is_dir() else "other"
    return out


def _two_handles(fixture_store, store: Path) -> tuple[FakeSession, FakeSession]:
    """Two live handles on one saved session (every file of which exists); the first
    has saved a new prompt since."""
    bundle = fixture_store.load("fix-oscar-2-000")
    saved = FakeSession(bundle, session_id=SID)
    a3s_nb.save(saved, store=store)
    stored = a3s_nb.open_store(store).load(SID)
    first, second = FakeSession(stored), FakeSession(stored)
    first.send("the first handle's prompt")
    a3s_nb.save(first, store=store)
    second.send("the second handle's prompt")
    for name in FILES.values():
        assert (store / name).is_file(), name
    return first, second


@pytest.mark.parametrize("how", sorted(BREAK))
@pytest.mark.parametrize("part", sorted(FILES))
def test_a_save_is_refused_when_a_stored_file_does_not_load(fixture_store, tmp_path, part, how):
    store = tmp_path / "store"
    _first, second = _two_handles(fixture_store, store)
    BREAK[how](store / FILES[part])
    before = _snapshot(store)
    with pytest.raises(SaveConflictError) as info:
        a3s_nb.save(second, store=store)
    message = str(info.value)
    assert "this session lacks" in message and "--force" in message and "--id NEW" in message
    # the first handle's prompt is what would be lost, named by what loads of it
    assert info.value.missing_runs or info.value.missing_messages
    assert _snapshot(store) == before  # nothing written


def test_force_still_overwrites_an_unreadable_save(fixture_store, tmp_path):
    store = tmp_path / "store"
    _first, second = _two_handles(fixture_store, store)
    _truncated(store / FILES["traces"])
    a3s_nb.save(second, store=store, force=True)  # on purpose: no check
    loaded = a3s_nb.open_store(store).load(SID)
    assert loaded.runs[-1].snapshot.prompt == "the second handle's prompt"


def test_a_save_that_extends_what_loads_replaces_the_unreadable_file(fixture_store, tmp_path):
    store = tmp_path / "store"
    first, _second = _two_handles(fixture_store, store)
    (store / FILES["traces"]).write_text("[{")
    first.send("one more")
    with pytest.warns(UserWarning, match=r"replacing an unreadable earlier save: .*traces"):
        a3s_nb.save(FakeSession(first_bundle(first), session_id=SID), store=store)
    assert a3s_nb.open_store(store).load(SID).runs[-1].snapshot.prompt == "one more"


def first_bundle(session: FakeSession):
    from a3s_nb.sdk.capture import bundle_from_parts, capture_parts

    return bundle_from_parts(capture_parts(session, session_id=SID))


def test_nothing_comparable_is_refused_not_taken_for_nothing_stored(fixture_store, tmp_path):
    store = tmp_path / "store"
    _first, second = _two_handles(fixture_store, store)
    _truncated(store / FILES["session"])
    _truncated(store / FILES["runs"])
    before = _snapshot(store)
    with pytest.raises(SaveConflictError, match=r"cannot be read.*--force"):
        a3s_nb.save(second, store=store)
    assert _snapshot(store) == before
