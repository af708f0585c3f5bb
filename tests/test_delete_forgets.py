"""A delete takes the session out of every file under ``.a3s_nb/`` at once.

The frame cache, the sessions index, the remembered sessions frame and the load check
held the deleted session's text (secrets included) until the next frames call.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import a3s_nb
from tests.conftest import frames_from_files
from tests.test_store_contract import make_bundle

CANARY = b"canary-7f3e9a-do-not-keep"


def holders(root: Path) -> list[str]:
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink() and CANARY in p.read_bytes()
    )


@pytest.fixture
def store(tmp_path: Path) -> a3s_nb.FileStore:
    st = a3s_nb.open_store(tmp_path / "s")
    for sid in ("a", "b", "c"):
        st.save(make_bundle(sid, n=4))
    secret = make_bundle("b", n=4)
    secret.session.messages[0].content[0].text = CANARY.decode()
    secret.runs[0].snapshot.prompt = CANARY.decode()
    st.save(secret)
    return st


def warm(store: a3s_nb.FileStore) -> None:
    a3s_nb.all_frames(store.path)
    a3s_nb.sessions(store.path)
    a3s_nb.sessions(store.path)  # remembered
    a3s_nb.sessions(store.path, since="2000-01-01")  # through the index


@pytest.mark.usefixtures("no_racy_window")
def test_a_deleted_sessions_text_leaves_every_cache(store):
    warm(store)
    assert holders(store.meta_dir)  # the caches hold it now
    store.delete("b")
    assert holders(store.path) == []
    # and the caches still serve the other sessions, rightly
    expected = frames_from_files(store.path)
    got = a3s_nb.all_frames(store.path)
    for name, frame in expected.items():
        assert got[name].equals(frame), name
    assert sorted(a3s_nb.sessions(store.path).session_id) == ["a", "c"]


def test_a_cache_that_cannot_be_rewritten_is_removed(store, monkeypatch):
    warm(store)
    from a3s_nb.frames import _framecache

    monkeypatch.setattr(_framecache.FrameCache, "_write", lambda self, *a: 1 / 0)
    store.delete("b")
    assert holders(store.path) == []
    monkeypatch.undo()
    assert sorted(a3s_nb.runs(store.path).session_id.unique()) == ["a", "c"]
