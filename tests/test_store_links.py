"""Nothing a3s_nb writes under ``<store>/.a3s_nb/`` is followed out of the store.

A link planted at any name a3s_nb writes there (the journal and its temp file, the lock,
the caches, the frame cache, lineage records), or in place of ``.a3s_nb`` itself or one
of its folders, leaves the link's target byte for byte as it was: the operation either
works without following it or refuses with a StoreError naming the path.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import a3s_nb
from a3s_nb.errors import StoreError
from tests.test_store_contract import make_bundle

FRAMES = ["messages", "runs", "sessions", "traces"]


def tree(root: Path) -> dict[str, object]:
    """Every entry under ``root``: a file's bytes, a link's target, 'dir'."""
    out: dict[str, object] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = ("link", os.readlink(p))
        elif p.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = p.read_bytes()
    return out


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside the store, with a file an attacker would aim a write at."""
    d = tmp_path / "outside"
    d.mkdir()
    (d / "victim").write_bytes(b"precious bytes\n")
    return d


def saved_store(tmp_path: Path) -> a3s_nb.FileStore:
    store = a3s_nb.open_store(tmp_path / "store")
    store.save(make_bundle("a", n=2))
    store.save(make_bundle("b", n=3))
    return store


def save(store: a3s_nb.FileStore) -> None:
    store.save(make_bundle("a", n=5))  # a multi-file save: journaled


def delete(store: a3s_nb.FileStore) -> None:
    store.delete("b")


def frames(store: a3s_nb.FileStore) -> None:
    a3s_nb.all_frames(store.path, FRAMES)
    a3s_nb.sessions(store.path)


def fork(store: a3s_nb.FileStore) -> None:
    a3s_nb.fork("b", 1, new_id="b-fork", store=store.path)


#: name under .a3s_nb -> the operation that writes it
FILE_WRITERS = {
    "journal": save,
    "journal.tmp": save,
    "lock": save,
    "loadcheck.json": frames,
    "index.json": frames,
    "index.frame.json": frames,
    "frames/runs.json": frames,
    "frames/messages.json": frames,
    "lineage/b-fork.json": fork,
}


@pytest.mark.parametrize("name", sorted(FILE_WRITERS))
def test_a_link_at_a_file_a3s_nb_writes_is_never_followed(tmp_path, outside, name):
    store = saved_store(tmp_path)
    frames(store)  # every folder and cache exists
    link = store.meta_dir / name
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.exists() or link.is_symlink():
        link.unlink()
    link.symlink_to(outside / "victim")
    before = tree(outside)
    try:
        FILE_WRITERS[name](store)
    except StoreError as e:  # refusing is fine, when it says why
        assert str(link) in str(e) and "symbolic link" in str(e)
    assert tree(outside) == before
    # and the store still works
    assert len(a3s_nb.open_store(store.path).load("a").session.messages) in (2, 5)


@pytest.mark.parametrize("op", [save, delete, fork])
def test_a_linked_a3s_nb_folder_refuses_writes_and_names_it(tmp_path, outside, op):
    store = saved_store(tmp_path)
    meta = store.meta_dir
    for p in sorted(meta.rglob("*"), reverse=True):
        p.rmdir() if p.is_dir() and not p.is_symlink() else p.unlink()
    meta.rmdir()
    meta.symlink_to(outside, target_is_directory=True)
    before, files = tree(outside), tree(store.path)
    with pytest.raises(StoreError, match=r"\.a3s_nb is a symbolic link"):
        op(store)
    assert tree(outside) == before
    assert tree(store.path) == files  # nothing written, nothing deleted


def test_a_cache_behind_a_linked_a3s_nb_folder_is_not_read(tmp_path, outside, no_racy_window):
    store = saved_store(tmp_path)
    frames(store)
    store.meta_dir.rename(outside / "cache")
    store.meta_dir.symlink_to(outside / "cache", target_is_directory=True)
    # a planted cache: every signature right, a row wrong
    index = outside / "cache" / "index.json"
    index.write_text(index.read_text().replace('"/w"', '"/poisoned"'))
    (outside / "cache" / "index.frame.json").unlink()
    before = tree(outside)
    assert set(a3s_nb.sessions(store.path)["workspace"]) == {"/w"}
    from tests.conftest import frames_from_files

    expected = frames_from_files(store.path, FRAMES)
    got = a3s_nb.all_frames(store.path, FRAMES)
    for name in FRAMES:
        assert got[name].equals(expected[name]), name
    assert tree(outside) == before  # nothing written there either
    assert a3s_nb.open_store(store.path).load("b").session.id == "b"  # reading works


@pytest.mark.parametrize("folder", ["frames", "lineage"])
def test_a_linked_folder_under_a3s_nb_is_never_written_through(tmp_path, outside, folder):
    store = saved_store(tmp_path)
    frames(store)
    d = store.meta_dir / folder
    if d.exists():
        for p in d.iterdir():
            p.unlink()
        d.rmdir()
    d.symlink_to(outside, target_is_directory=True)
    before = tree(outside)
    if folder == "frames":
        store.save(make_bundle("a", n=4))
        frames(store)  # works, uncached
    else:
        with pytest.raises(StoreError, match=r"lineage is a symbolic link"):
            fork(store)
        assert not store.exists("b-fork")
    assert tree(outside) == before
