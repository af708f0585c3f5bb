"""Every cache notices an edit in place that keeps the size and sets the mtime back.

rsync and some editors restore a file's modification time; ``(mtime, size)`` alone would
then take the edited file for the one a cache was built from. The inode and the change
time (``st_ctime``) cannot be set back, and every signature holds them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import a3s_nb
from tests.conftest import frames_from_files
from tests.test_store_contract import make_bundle

pytestmark = pytest.mark.usefixtures("no_racy_window")  # every cache entry trusted


def edit_in_place(path: Path, old: bytes, new: bytes) -> None:
    """Rewrite ``path`` in place (same inode, same size), its mtime set back."""
    assert len(old) == len(new)
    before = os.stat(path)
    data = path.read_bytes()
    assert old in data
    with open(path, "r+b") as f:  # no rename: the inode stays
        f.write(data.replace(old, new, 1))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_mtime_ns, after.st_size, after.st_ino) == (
        before.st_mtime_ns,
        before.st_size,
        before.st_ino,
    )


@pytest.fixture
def store(tmp_path: Path) -> a3s_nb.FileStore:
    st = a3s_nb.open_store(tmp_path / "s")
    for sid in ("a", "b"):
        st.save(make_bundle(sid, n=3))
    return st


def warm(store: a3s_nb.FileStore) -> None:
    a3s_nb.all_frames(store.path)  # the load check, the index, the frame cache
    a3s_nb.sessions(store.path)  # and the remembered sessions frame
    a3s_nb.sessions(store.path)


def test_a_run_status_edited_in_place_shows_in_every_frame(store):
    warm(store)
    edit_in_place(store.path / "runs" / "a.json", b'"completed"', b'"cancelled"')
    loaded = store.load("a")
    assert "cancelled" in {r.snapshot.status for r in loaded.runs}
    runs = a3s_nb.runs(store.path)
    assert set(runs[runs.session_id == "a"].status.astype(str)) == {
        r.snapshot.status for r in loaded.runs
    }
    got = a3s_nb.all_frames(store.path)
    expected = frames_from_files(store.path)
    for name, frame in expected.items():
        assert got[name].equals(frame), name
    row = a3s_nb.sessions(store.path).set_index("session_id").loc["a"]
    assert row.n_runs_cancelled == 1


def test_a_session_file_that_stops_loading_in_place_leaves_every_frame(store):
    warm(store)
    edit_in_place(store.path / "a.json", b"{", b"[")  # the first byte
    with pytest.raises(a3s_nb.CorruptFileError):
        store.load("a")
    with pytest.warns(a3s_nb.CorruptSessionWarning, match="'a'"):
        sessions = a3s_nb.sessions(store.path)
    assert list(sessions.session_id) == ["b"]
    assert [e["session_id"] for e in sessions.attrs["errors"]] == ["a"]
    with pytest.warns(a3s_nb.CorruptSessionWarning):
        frames = a3s_nb.all_frames(store.path)
    for name, frame in frames.items():
        assert "a" not in set(frame.session_id), name


def test_a_message_edited_in_place_shows_in_messages(store):
    warm(store)
    edit_in_place(store.path / "a.json", b'"m1"', b'"X1"')
    text = a3s_nb.messages(store.path).query("session_id == 'a'").text.tolist()
    assert "X1" in text and "m1" not in text
