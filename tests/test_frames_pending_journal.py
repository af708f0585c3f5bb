"""Frames read what ``load()`` reads when a dead writer's journal cannot be finished.

A save was killed after its commit point; this reader cannot write the store (a read-only
mount, another user's store), so the journal stays and ``load()`` reads through it. Every
frame must give that same new generation: not the files on disk (a mix right now), and
not a cache built from the old generation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import a3s_nb
from a3s_nb.store import _fsio
from tests.test_store_crash import ROOT, _prepare, gen_a

FRAMES = ["sessions", "messages", "runs", "run_events", "spans", "traces", "verification"]


def frames_of_loaded(path: Path) -> dict:
    """The frames of what ``load()`` returns for every session of the store."""
    store = a3s_nb.open_store(path, create=False)
    mem = a3s_nb.MemoryStore()
    for sid in store.list():
        mem.save(store.load(sid))
    return a3s_nb.all_frames(mem, FRAMES)


@pytest.mark.parametrize("warm", [True, False], ids=["caches-of-the-old-generation", "cold"])
def test_every_frame_reads_through_a_journal_it_cannot_finish(tmp_path, monkeypatch, warm):
    path = tmp_path / "s"
    _prepare(path, gen_a)
    if warm:  # every cache holds the old generation
        a3s_nb.all_frames(path, FRAMES)
        a3s_nb.sessions(path)
    code = f"from tests.test_store_crash import interrupt_after_renames as f; f({str(path)!r}, 2)"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
    assert (path / ".a3s_nb" / "journal").exists()
    assert len(json.loads((path / "runs" / "s.json").read_text())) == 2  # old on disk

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    for name in ("replace", "unlink", "open", "mkdir"):
        monkeypatch.setattr(_fsio, name, read_only)
    store = a3s_nb.open_store(path, create=False)
    assert len(store.load("s").runs) == 5  # load() reads the new generation

    expected = frames_of_loaded(path)
    got = a3s_nb.all_frames(path, FRAMES)
    for name in FRAMES:
        assert got[name].equals(expected[name]), name
    runs = a3s_nb.runs(path)
    assert (runs.session_id == "s").sum() == 5
    assert a3s_nb.messages(path).query("session_id == 's'").message_index.nunique() == 5
    assert a3s_nb.sessions(path).set_index("session_id").loc["s"].n_runs == 5
    assert (path / ".a3s_nb" / "journal").exists()  # still not finished: it cannot be
    assert store.reads_through_journal()
    monkeypatch.undo()
    assert not a3s_nb.open_store(path).reads_through_journal()  # a writer finishes it
    after = a3s_nb.all_frames(path, FRAMES)
    for name in FRAMES:
        assert after[name].equals(expected[name]), name
