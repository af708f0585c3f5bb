"""What a parallel build killed with SIGKILL leaves in the temp folders (its workers' files,
the worker pool's own folder) is removed by the next parallel build and by
``a3s-nb check --fix``, and never what belongs to a process still running."""

from __future__ import annotations

import multiprocessing.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import a3s_nb
from a3s_nb.cli import main
from a3s_nb.frames import _parallel

SHM = Path("/dev/shm")

#: A build in another process that stops once its workers are started, until killed.
_BUILD = textwrap.dedent(
    """
    import sys, time
    import a3s_nb
    from a3s_nb.frames import _parallel

    _parallel.MIN_PER_WORKER = 1

    def stuck(*args, **kwargs):
        print("building", flush=True)
        time.sleep(600)

    _parallel._gather = stuck
    a3s_nb.all_frames(sys.argv[1], workers=2)
    """
)

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX only")


def _temp_roots(tmp: Path) -> list[Path]:
    return [root for root in (SHM, tmp) if root.is_dir()]


def _left_by(pid: int, tmp: Path) -> list[Path]:
    """The folders a3s_nb left in the temp folders for process ``pid``."""
    return sorted(p for root in _temp_roots(tmp) for p in root.iterdir() if f"-{pid}-" in p.name)


@pytest.fixture
def tmp(monkeypatch) -> Iterator[Path]:
    """A private system temp folder, for this process and the ones it starts (short: the
    fork server's socket is made in it)."""
    path = Path(tempfile.mkdtemp(prefix="a3s-t-", dir="/tmp"))
    multiprocessing.util.get_temp_dir()  # this process's own stays where it is
    monkeypatch.setenv("TMPDIR", str(path))
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def kill_a_build(store: Path, tmp: Path) -> list[Path]:
    """SIGKILL a ``workers=2`` build mid-build; what it left behind."""
    a3s_nb.sessions(store)  # load() verdicts cached: the build goes straight to the frames
    proc = subprocess.Popen(
        [sys.executable, "-c", _BUILD, str(store)],
        stdout=subprocess.PIPE,
        env={**os.environ, "TMPDIR": str(tmp)},
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"building\n"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    left = _left_by(proc.pid, tmp)
    names = sorted(p.name.split("-")[1] for p in left)
    assert names == ["frames", "pool"], left  # the workers' files; the pool's folder
    assert any(p.parent == tmp for p in left)  # the pool's, in the temp folder asked for
    return left


def test_the_next_parallel_build_removes_what_a_killed_one_left(fixture_dir, tmp, monkeypatch):
    left = kill_a_build(fixture_dir, tmp)
    monkeypatch.setattr(_parallel, "MIN_PER_WORKER", 1)
    a3s_nb.all_frames(fixture_dir, workers=2)
    assert [p for p in left if os.path.lexists(p)] == []


def test_check_fix_removes_what_a_killed_build_left(fixture_dir, tmp, capsys):
    left = kill_a_build(fixture_dir, tmp)
    assert main(["--store", str(fixture_dir), "check"]) == 0
    out = capsys.readouterr().out
    assert "2 folders left by frame builds of processes no longer running" in out
    assert all(str(p) in out for p in left)
    assert all(p.exists() for p in left)  # only said, without --fix
    assert main(["--store", str(fixture_dir), "check", "--fix"]) == 0
    out = capsys.readouterr().out
    assert "removed 2 folders left by frame builds" in out
    assert [p for p in left if os.path.lexists(p)] == []


def test_a_live_process_keeps_its_folders(fixture_dir, tmp, monkeypatch, capsys):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        mine = [
            tmp / f"a3s_nb-pool-{live.pid}-abc",
            tmp / f"a3s_nb-frames-{live.pid}-abc",
            tmp / f"a3s_nb-frames-{os.getpid()}-abc",
        ]
        for p in mine:
            p.mkdir()
            (p / "0").mkdir()
        monkeypatch.setattr(_parallel, "MIN_PER_WORKER", 1)
        a3s_nb.all_frames(fixture_dir, workers=2)
        assert main(["--store", str(fixture_dir), "check", "--fix"]) == 0
        assert all((p / "0").is_dir() for p in mine)
        assert "folders left by frame builds" not in capsys.readouterr().out
    finally:
        live.kill()
        live.wait()
    assert main(["--store", str(fixture_dir), "check", "--fix"]) == 0
    assert [p.exists() for p in mine] == [False, False, True]  # the live test process's
