"""The frames built by worker processes (``workers=``) are the frames built in one."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import shutil
import warnings
from pathlib import Path

import pandas as pd
import pytest

import a3s_nb
from a3s_nb.frames import CorruptSessionWarning, _parallel, schema

from .conftest import edit_runs

FRAMES = schema.FRAME_NAMES


@pytest.fixture(autouse=True)
def _split_small_stores(monkeypatch):
    """The fixture store's eight sessions are split among workers too."""
    monkeypatch.setattr(_parallel, "MIN_PER_WORKER", 1)


def _drop_cache(store: Path) -> None:
    shutil.rmtree(store / ".a3s_nb" / "frames", ignore_errors=True)


def _call(store: Path, name: str, workers: int | None, **kwargs):
    """A frame function (or all_frames), built from the files, with its warnings."""
    _drop_cache(store)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if name == "all_frames":
            got = a3s_nb.all_frames(store, workers=workers, **kwargs)
        else:
            got = {name: getattr(a3s_nb, name)(store, workers=workers, **kwargs)}
    said = [(w.category, str(w.message), w.filename) for w in caught]
    return got, said


def assert_same(store: Path, name: str, **kwargs) -> dict[str, pd.DataFrame]:
    """The frames and warnings of ``workers=2`` and ``workers=3`` are those of one process."""
    serial, said = _call(store, name, None, **kwargs)
    for workers in (2, 3):
        parallel, said_parallel = _call(store, name, workers, **kwargs)
        assert list(parallel) == list(serial)
        for frame, df in serial.items():
            pd.testing.assert_frame_equal(parallel[frame], df, check_exact=True)
            assert parallel[frame].attrs == df.attrs, frame
        assert said_parallel == said
    return serial


def test_parallel_frames_equal_serial_frames(fixture_dir):
    frames = assert_same(fixture_dir, "all_frames")
    assert all(len(df) for df in frames.values())  # every frame has rows to compare
    for name in FRAMES:
        assert_same(fixture_dir, name)


def test_a_parallel_cold_build_reads_each_session_once(fixture_dir, monkeypatch):
    """The workers make the sessions rows in their pass; the index takes them from there."""
    from a3s_nb.frames import _walk

    from .conftest import calls_of

    summarized = calls_of(monkeypatch, _walk, "_summarize")
    got = a3s_nb.all_frames(fixture_dir, workers=2, progress=False)
    assert summarized == []  # this process read no session's files for its row
    (fixture_dir / ".a3s_nb" / "index.json").unlink()
    pd.testing.assert_frame_equal(got["sessions"], a3s_nb.sessions(fixture_dir))
    assert len(summarized) == 8


@pytest.mark.parametrize(
    "kwargs",
    [
        {"status": "failed"},
        # a list, of the one status every frame takes (verification takes check statuses)
        {"status": ["failed"], "since": "2020-01-01"},
        {"ids": ["fix-oscar-2-000", "4287", "explore-lima-2-001"]},
    ],
    ids=["status", "status-and-since", "ids"],
)
def test_parallel_filtered_frames_equal_serial_frames(fixture_dir, kwargs):
    frames = assert_same(fixture_dir, "all_frames", **kwargs)
    assert len(frames["runs"])
    assert_same(fixture_dir, "messages", **kwargs)  # filtered through the sessions index


def test_a_worker_checks_a_batch_of_sessions_under_one_taking_of_the_lock(
    fixture_dir, lock_takings
):
    ids = a3s_nb.FileStore(fixture_dir).list()
    lock_takings.clear()  # the listing's own taking
    verdicts = _parallel._check_chunk(None, path=str(fixture_dir), ids=ids)
    assert verdicts == dict.fromkeys(ids)
    assert lock_takings == [True] * -(-len(ids) // 3)


def test_a_cold_load_check_is_split_among_the_workers(fixture_dir, monkeypatch):
    """With no verdicts cached, workers=2 checks the sessions in the workers: the same
    verdicts, rows, errors and warnings as one process, and the same cached verdicts."""
    from a3s_nb.frames import _loadcheck

    from .conftest import calls_of

    (fixture_dir / "traces" / "fix-oscar-2-000.json").write_text('[{"kind": ')
    edit_runs(fixture_dir, "fix-india-2-004", lambda r: r[0]["snapshot"].pop("status"))
    cold = {}
    for workers in (None, 2):
        shutil.rmtree(fixture_dir / ".a3s_nb", ignore_errors=True)
        checked = calls_of(monkeypatch, _loadcheck, "_check")
        cold[workers] = _call(fixture_dir, "all_frames", workers)
        verdicts = json.loads((fixture_dir / ".a3s_nb" / "loadcheck.json").read_text())
        cold[workers] += (verdicts["entries"],)
        assert len(checked) == (8 if workers is None else 0), workers  # in this process
        monkeypatch.undo()
        monkeypatch.setattr(_parallel, "MIN_PER_WORKER", 1)
    (serial, said, entries), (parallel, said_parallel, entries_parallel) = cold.values()
    for frame, df in serial.items():
        pd.testing.assert_frame_equal(parallel[frame], df, check_exact=True)
        assert parallel[frame].attrs == df.attrs, frame
    assert {e["session_id"] for e in serial["runs"].attrs["errors"]} == {
        "fix-india-2-004",
        "fix-oscar-2-000",
    }
    assert said_parallel == said
    assert entries_parallel == entries


def test_status_as_an_iterator_reaches_every_worker(fixture_dir):
    serial = a3s_nb.runs(fixture_dir, status=iter(["failed"]))
    parallel = a3s_nb.runs(fixture_dir, status=iter(["failed"]), workers=2)
    assert len(serial) and set(serial.status) == {"failed"}
    pd.testing.assert_frame_equal(parallel, serial)


def test_parallel_reports_bad_sessions_once_like_serial(fixture_dir):
    """A corrupt file and a session load() rejects (found by the load check), a value
    beyond int64 (found by a worker) and a file that went bad after its check, keeping its
    size and modification time (found by the load check again: its change time moved):
    the same rows, the same attrs["errors"], the same warnings at the same line."""
    corrupt = fixture_dir / "traces" / "fix-oscar-2-000.json"
    corrupt.write_text('[{"kind": ')  # truncated
    edit_runs(fixture_dir, "fix-india-2-004", lambda r: r[0]["snapshot"].pop("status"))

    def big(runs):
        runs[0]["snapshot"]["event_count"] = 2**63

    edit_runs(fixture_dir, "chore-november-2-007", big)
    with pytest.warns(CorruptSessionWarning):
        a3s_nb.runs(fixture_dir, progress=False)  # the load check remembers its verdicts
    # then a file goes bad with the same size and modification time (not its ctime)
    late = fixture_dir / "verification" / "explore-lima-2-001.json"
    stat = late.stat()
    late.write_bytes(b"{" * stat.st_size)
    os.utime(late, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    frames = assert_same(fixture_dir, "all_frames")
    errors = frames["runs"].attrs["errors"]
    by_session = {e["session_id"]: e for e in errors}  # each listed once
    assert len(errors) == len(by_session) == 4
    assert set(by_session) == {
        "fix-india-2-004",
        "fix-oscar-2-000",
        "explore-lima-2-001",
        "chore-november-2-007",
    }
    assert by_session["explore-lima-2-001"]["path"] == str(late)
    assert "64-bit" in by_session["chore-november-2-007"]["problem"]
    got, said = _call(fixture_dir, "verification", 2)
    assert all(c is CorruptSessionWarning and f == __file__ for c, _, f in said)
    # each said once, though found by different processes
    assert (
        [re.search(r"session '([^']+)'", s)[1] for _, s, _ in said]
        == [e["session_id"] for e in got["verification"].attrs["errors"]]
        == ["explore-lima-2-001", "fix-india-2-004", "fix-oscar-2-000"]
    )
    for name in FRAMES:
        assert_same(fixture_dir, name)


def test_parallel_build_fills_the_frame_cache_as_serial_does(fixture_dir):
    def without_names(value):
        """A manifest without the names of the files a writer chose (unique per write)."""
        if isinstance(value, dict):
            return {
                k: without_names(v) for k, v in value.items() if k not in ("file", "generation")
            }
        if isinstance(value, list):
            return [without_names(v) for v in value]
        return value

    def manifests() -> dict[str, dict]:
        cache = fixture_dir / ".a3s_nb" / "frames"
        return {
            name: without_names(json.loads((cache / f"{name}.json").read_text()))
            for name in FRAMES[1:]
        }

    serial, _ = _call(fixture_dir, "all_frames", None)
    cached_by_serial = manifests()
    _call(fixture_dir, "all_frames", 2)
    assert manifests() == cached_by_serial
    warm = a3s_nb.all_frames(fixture_dir)  # from the cache the parallel build wrote
    for name, df in serial.items():
        pd.testing.assert_frame_equal(warm[name], df)
        assert warm[name].attrs == df.attrs


class _ShellNamespace:
    """What IPython puts in sys.modules["__main__"]: no __spec__, no __file__."""


@pytest.mark.parametrize("main", [_ShellNamespace(), "<stdin>"], ids=["ipython", "stdin"])
def test_workers_start_under_any_main_module(fixture_dir, monkeypatch, main):
    """A kernel's or a piped script's __main__ is neither needed nor re-run by a worker."""
    import sys
    import types

    if isinstance(main, str):
        module = types.ModuleType("__main__")
        module.__file__ = main  # a script read from stdin: no such file
        main = module
    monkeypatch.setitem(sys.modules, "__main__", main)
    serial = a3s_nb.runs(fixture_dir, status="failed")
    pd.testing.assert_frame_equal(a3s_nb.runs(fixture_dir, status="failed", workers=2), serial)
    assert sys.modules["__main__"] is main


def test_the_fork_server_preload_list_is_left_as_it_was(fixture_dir):
    """workers= preloads a3s_nb into the fork server it starts, and changes nothing
    process-wide: the list the kernel set is back as soon as the workers are started."""
    import subprocess
    import sys

    script = f"""
import multiprocessing, sys
from multiprocessing import forkserver
import a3s_nb
from a3s_nb.frames import _parallel
_parallel.MIN_PER_WORKER = 1
multiprocessing.set_forkserver_preload(["json"])
a3s_nb.runs({str(fixture_dir)!r}, workers=2)
assert forkserver._forkserver._preload_modules == ["json"], forkserver._forkserver._preload_modules
loaded = multiprocessing.get_context("forkserver").Pool(1).apply(
    eval, ("'a3s_nb.frames._engine' in __import__('sys').modules",)
)
assert loaded, "the fork server did not preload a3s_nb"
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_other_sources_are_built_in_this_process(fixture_store):
    bundles = [fixture_store.load(sid) for sid in fixture_store.list()]
    for source in (bundles, bundles[0]):
        serial = a3s_nb.all_frames(source)
        parallel = a3s_nb.all_frames(source, workers=2)
        for name, df in serial.items():
            pd.testing.assert_frame_equal(parallel[name], df)


@pytest.mark.parametrize("bad", [0, -2, 1.5, "2", True, [2]])
def test_bad_workers_values_are_refused(fixture_dir, bad):
    for fn in (a3s_nb.all_frames, *(getattr(a3s_nb, name) for name in FRAMES)):
        with pytest.raises(ValueError, match="workers must be a whole number"):
            fn(fixture_dir, workers=bad)
    assert not (fixture_dir / ".a3s_nb").exists()  # refused before reading anything


def test_one_worker_is_one_process(fixture_dir, monkeypatch):
    def no_pool(*args, **kwargs):
        raise AssertionError("no worker process for workers=1")

    monkeypatch.setattr(_parallel, "build", no_pool)
    serial = a3s_nb.runs(fixture_dir)
    pd.testing.assert_frame_equal(a3s_nb.runs(fixture_dir, workers=1), serial)


def test_a_few_sessions_are_built_in_this_process(fixture_dir, monkeypatch):
    """Eight sessions are not worth a worker each: not split until there are 2 x 5."""
    monkeypatch.setattr(_parallel, "MIN_PER_WORKER", 5)
    monkeypatch.setattr(_parallel, "build", lambda *a, **k: pytest.fail("split"))
    serial = a3s_nb.runs(fixture_dir, status="failed")
    pd.testing.assert_frame_equal(a3s_nb.runs(fixture_dir, status="failed", workers=2), serial)
    monkeypatch.setattr(_parallel, "MIN_PER_WORKER", 4)
    with pytest.raises(pytest.fail.Exception, match="split"):
        a3s_nb.runs(fixture_dir, status="failed", workers=2)


def test_chunks_are_contiguous_and_in_order():
    ids = [f"s{i:02d}" for i in range(11)]
    parts = _parallel.chunks(ids, 3)
    assert parts == [ids[0:4], ids[4:8], ids[8:11]]
    assert _parallel.chunks(ids[:2], 5) == [["s00"], ["s01"]]
    assert _parallel.chunks(ids, 1) == [ids]


# ----------------------------------------------------------------------------- failures


@pytest.fixture
def watched(monkeypatch):
    """The worker processes and scratch directory of each build, to check they are gone."""
    seen: dict[str, list] = {"procs": [], "dirs": []}
    stop, scratch = _parallel._stop, _parallel._scratch_dir

    def recording_stop(running):
        seen["procs"] += [proc for proc, _ in running]
        stop(running)

    def recording_scratch():
        path = scratch()
        seen["dirs"].append(path)
        return path

    monkeypatch.setattr(_parallel, "_stop", recording_stop)
    monkeypatch.setattr(_parallel, "_scratch_dir", recording_scratch)
    yield seen
    assert seen["procs"] and seen["dirs"]
    for path in seen["dirs"]:
        assert not os.path.exists(path), "scratch directory left behind"
    for proc in seen["procs"]:
        assert proc._closed, "worker not stopped"  # terminated, joined and closed
    assert not [p for p in multiprocessing.active_children() if p.name.startswith("a3s_nb")]


def _dying_worker(conn, task):
    os._exit(3)


def _stuck_worker(conn, task):
    import time

    time.sleep(60)


def test_a_worker_that_dies_is_a_clear_error(fixture_dir, monkeypatch, watched):
    monkeypatch.setattr(_parallel, "_work", _dying_worker)
    with pytest.raises(a3s_nb.ParallelBuildError, match=r"died \(exit code 3\)"):
        a3s_nb.all_frames(fixture_dir, workers=2)


def test_a_worker_that_fails_is_a_clear_error(fixture_dir, monkeypatch, watched):
    """The worker's own exception and traceback are in the error."""

    def vanish_then_build(*args, **kwargs):
        shutil.rmtree(fixture_dir)  # the store is gone by the time a worker opens it
        return build(*args, **kwargs)

    build = _parallel.build
    monkeypatch.setattr(_parallel, "build", vanish_then_build)
    with pytest.raises(a3s_nb.ParallelBuildError, match="StoreError: no store at") as info:
        a3s_nb.runs(fixture_dir, workers=2, status="failed")
    assert "Traceback" in str(info.value) and "no frame was returned" in str(info.value)


def test_interrupted_build_stops_its_workers(fixture_dir, monkeypatch, watched):
    import gc

    a3s_nb.all_frames(fixture_dir)  # the verdicts cached: the build is what is interrupted
    shutil.rmtree(fixture_dir / ".a3s_nb" / "frames")
    monkeypatch.setattr(_parallel, "_work", _stuck_worker)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(_parallel, "wait", interrupted)
    with pytest.raises(KeyboardInterrupt):
        a3s_nb.all_frames(fixture_dir, workers=2)
    assert gc.isenabled()
