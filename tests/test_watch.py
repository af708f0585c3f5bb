"""A store scanned again in one process is watched: every change kind still seen.

``_loadcheck.scan`` gives the signature of every file of every session. A process that
scans a store a second time sets up an inotify watch (``store/_watch.py``) and from then
on stats only what the kernel reports touched. Each test below makes one kind of change
after the watch is set up and checks the watched answer against a full listing made
afterwards, and whether the watch was kept (the change was followed) or dropped (the
watch could not follow it, so the scan was a full one).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import a3s_nb
from a3s_nb.frames import _loadcheck
from a3s_nb.store import _watch

from .test_store_v1 import build_v1_store, v1_path, write

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")

RUN = "fix-india-2-004"  # a session of the fixture store with every part
OTHER = "explore-lima-2-001"


def full_scan(root: Path) -> dict:
    """What ``scan`` answers with no watch: every directory listed, every file stat'ed."""
    store = a3s_nb.FileStore(root)
    keyed = _loadcheck._slots(store, _loadcheck.PARTS)
    raw = {key: _watch.scan_dirs(slot) for key, slot in keyed}
    out = {part: raw[part] for part in _loadcheck.PARTS}
    if len(raw) > len(out):
        _loadcheck._add_v1({p: raw[_loadcheck.V1_STEM + p] for p in _loadcheck.PARTS}, out)
    return out


def watched(root: Path) -> _watch.LiveScan | None:
    return _loadcheck._WATCHES._live.get(str(root))


@pytest.fixture
def fresh_watches(monkeypatch: pytest.MonkeyPatch) -> _watch.Watches:
    """This test's own set of watches (closed after it)."""
    watches = _watch.Watches()
    monkeypatch.setattr(_loadcheck, "_WATCHES", watches)
    yield watches
    for root, live in list(watches._live.items()):
        watches._drop(root, live)


def start_watching(root: Path) -> dict:
    """Scan ``root`` twice (the second sets the watch up) and return the answer."""
    store = a3s_nb.FileStore(root)
    first = _loadcheck.scan(store)
    assert watched(root) is None  # a store scanned once is not watched
    second = _loadcheck.scan(store)
    assert watched(root) is not None, "the second scan sets a watch up"
    assert first == second == full_scan(root)
    return second


def rewrite_in_place(path: Path, text: str | None = None, *, keep_time: bool = False) -> None:
    """As a3s-code 3.x writes a fragment: truncate and write, same inode."""
    st = path.stat()
    data = path.read_bytes() if text is None else text.encode()
    with open(path, "r+b") as f:
        f.truncate(0)
        f.write(data)
    if keep_time:  # rsync, some editors: the modification time set back
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def replace_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".123.1.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _runs(root: Path, sid: str = RUN) -> Path:
    return root / "runs" / f"{sid}.json"


def _new_session(root: Path) -> None:
    for part in ("", "runs", "traces", "verification"):
        src = root / part / f"{OTHER}.json"
        shutil.copy(src, src.with_name("brand-new.json"))
    shutil.copytree(root / "artifacts" / OTHER, root / "artifacts" / "brand-new")


def _delete_session(root: Path) -> None:
    for part in ("", "runs", "traces", "verification"):
        (root / part / f"{RUN}.json").unlink()
    shutil.rmtree(root / "artifacts" / RUN)


def _artifacts_rewritten(root: Path) -> None:
    rewrite_in_place(root / "artifacts" / RUN / "artifacts.json", keep_time=True)


def _artifacts_dir_remade(root: Path) -> None:
    leaf = root / "artifacts" / RUN / "artifacts.json"
    text = leaf.read_text()
    shutil.rmtree(leaf.parent)
    leaf.parent.mkdir()
    leaf.write_text(text)


def _artifacts_dir_swapped(root: Path) -> None:
    src = root / "artifacts" / RUN
    new = root / "artifacts" / "incoming"
    shutil.copytree(src, new)
    (new / "artifacts.json").write_text("[]")
    shutil.rmtree(src)
    new.rename(src)


def _artifacts_file_then_dir(root: Path) -> None:
    new = root / "artifacts" / "late"
    new.mkdir()
    (new / "artifacts.json").write_text("[]")


def _part_dir_made(root: Path) -> None:
    (root / "subagent_tasks").mkdir()
    (root / "subagent_tasks" / f"{RUN}.json").write_text("[]")


def _part_dir_replaced(root: Path) -> None:
    (root / "runs").rename(root / "runs.old")
    shutil.copytree(root / "runs.old", root / "runs")
    rewrite_in_place(_runs(root), "[]")


def _store_path_swapped(root: Path) -> None:
    twin = root.with_name("twin")
    shutil.copytree(root, twin)
    rewrite_in_place(_runs(twin), "[]")
    root.rename(root.with_name("was"))
    twin.rename(root)


def _symlinked_target_rewritten(root: Path) -> None:
    # set up before the watch (see LINKED): the target lives outside the store
    rewrite_in_place(root.parent / "outside" / "runs.json", "[]", keep_time=True)


def _hard_link_rewritten(root: Path) -> None:
    rewrite_in_place(root.parent / "outside" / "hard.json", "[]", keep_time=True)


def _linked_leaf_dir_rewritten(root: Path) -> None:
    rewrite_in_place(root.parent / "outside" / "arts" / "artifacts.json", "[]", keep_time=True)


def _dangling_link(root: Path) -> None:
    os.symlink(root / "nowhere.json", root / "runs" / "dangling.json")


def _directory_named_like_a_file(root: Path) -> None:
    (root / "runs" / "odd.json").mkdir()


def _chmod(root: Path) -> None:
    os.chmod(_runs(root), 0o600)


def _mtime_set_back(root: Path) -> None:
    os.utime(root / f"{RUN}.json", ns=(0, 0))


def _v1_made(root: Path) -> None:
    write(v1_path(root, RUN), json.loads((root / f"{RUN}.json").read_text()))
    write(v1_path(root, RUN, "runs"), json.loads(_runs(root).read_text()))


def _temp_file(root: Path) -> None:
    (root / f"{RUN}.json.1700000000000000000.1.0.tmp").write_text("{")


#: name -> (change, whether the watch follows it (kept) or is dropped for a full scan)
CHANGES: dict[str, tuple[Callable[[Path], None], bool]] = {
    "session rewritten in place, time kept": (
        lambda r: rewrite_in_place(r / f"{RUN}.json", keep_time=True),
        True,
    ),
    "runs rewritten in place, shorter": (lambda r: rewrite_in_place(_runs(r), "[]"), True),
    "traces appended to": (
        lambda r: open(r / "traces" / f"{RUN}.json", "a").write(" "),  # noqa: SIM115
        True,
    ),
    "session replaced by rename": (
        lambda r: replace_atomically(r / f"{RUN}.json", (r / f"{OTHER}.json").read_text()),
        True,
    ),
    "a session deleted": (_delete_session, True),
    "a session added": (_new_session, True),
    "artifacts rewritten in place, time kept": (_artifacts_rewritten, True),
    "artifacts directory removed and made again": (_artifacts_dir_remade, True),
    "artifacts directory replaced by rename": (_artifacts_dir_swapped, True),
    "artifacts directory made, then its file": (_artifacts_file_then_dir, True),
    "mode changed": (_chmod, True),
    "modification time set back": (_mtime_set_back, True),
    "a crashed write's temp file": (_temp_file, True),
    "a dangling link": (_dangling_link, True),
    "a directory named like a session file": (_directory_named_like_a_file, True),
    "a symlinked file's target rewritten": (_symlinked_target_rewritten, True),
    "a file with another name rewritten through it": (_hard_link_rewritten, True),
    "a symlinked artifacts directory's file rewritten": (_linked_leaf_dir_rewritten, True),
    "a part directory made": (_part_dir_made, False),
    "a part directory replaced": (_part_dir_replaced, False),
    "the store's path now another directory": (_store_path_swapped, False),
}

#: Changes that need links made before the watch is set up.
LINKED = {
    "a symlinked file's target rewritten",
    "a file with another name rewritten through it",
    "a symlinked artifacts directory's file rewritten",
}


def _link_outside(root: Path) -> None:
    outside = root.parent / "outside"
    outside.mkdir()
    shutil.move(_runs(root), outside / "runs.json")
    os.symlink(outside / "runs.json", _runs(root))
    os.link(_runs(root, OTHER), outside / "hard.json")
    shutil.move(root / "artifacts" / RUN, outside / "arts")
    os.symlink(outside / "arts", root / "artifacts" / RUN)


@pytest.mark.parametrize("name", list(CHANGES))
def test_a_watched_scan_answers_as_a_full_one_after_each_kind_of_change(
    name, fixture_dir, fresh_watches
):
    change, kept = CHANGES[name]
    (fixture_dir.parent / "outside").mkdir(exist_ok=True)
    if name in LINKED:
        shutil.rmtree(fixture_dir.parent / "outside")
        _link_outside(fixture_dir)
    before = start_watching(fixture_dir)
    change(fixture_dir)
    after = _loadcheck.scan(a3s_nb.FileStore(fixture_dir))
    assert after == full_scan(fixture_dir)
    if name not in {"a crashed write's temp file"}:
        assert after != before, "the change is one a scan can see"
    assert (watched(fixture_dir) is not None) is kept
    # and the next call, with no change, still answers the same
    assert _loadcheck.scan(a3s_nb.FileStore(fixture_dir)) == full_scan(fixture_dir)


def test_the_v1_layout_appearing_and_changing_is_followed(fixture_dir, fresh_watches):
    start_watching(fixture_dir)
    _v1_made(fixture_dir)  # v1/ made: the listed directories differ, a new watch
    store = a3s_nb.FileStore(fixture_dir)
    assert _loadcheck.scan(store) == full_scan(fixture_dir)
    assert _loadcheck.scan(store) == full_scan(fixture_dir)
    assert watched(fixture_dir) is not None
    rewrite_in_place(v1_path(fixture_dir, RUN), keep_time=True)
    rewrite_in_place(v1_path(fixture_dir, RUN, "runs"), "[]")
    after = _loadcheck.scan(store)
    assert after == full_scan(fixture_dir)
    assert watched(fixture_dir) is not None


def test_a_v1_store_is_watched_like_a_flat_one(tmp_path, fresh_watches):
    root = build_v1_store(tmp_path / "v1store", sealed=False)
    before = start_watching(root)
    name = next(p for p in (root / "v1" / "sessions").iterdir() if p.suffix == ".json")
    rewrite_in_place(name, keep_time=True)
    after = _loadcheck.scan(a3s_nb.FileStore(root))
    assert after == full_scan(root) != before
    assert watched(root) is not None


def count_stats(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths ``os.stat`` and ``os.lstat`` are called on from now on."""
    stats: list[str] = []
    for name in ("stat", "lstat"):
        real = getattr(os, name)

        def counted(path, *a, _real=real, **k):
            stats.append(str(path))
            return _real(path, *a, **k)

        monkeypatch.setattr(os, name, counted)
    return stats


def test_an_unchanged_watched_store_is_answered_without_a_stat_per_file(
    fixture_dir, fresh_watches, monkeypatch
):
    start_watching(fixture_dir)
    store = a3s_nb.FileStore(fixture_dir)
    expected = full_scan(fixture_dir)
    assert sum(map(len, expected.values())) >= 40
    stats = count_stats(monkeypatch)
    assert _loadcheck.scan(store) == expected
    assert len(stats) <= 2, stats  # the root (still the store?) and v1/ (there now?)


def test_an_overflowing_event_queue_drops_the_watch_and_misses_nothing(fixture_dir, fresh_watches):
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    start_watching(fixture_dir)
    rewrite_in_place(_runs(fixture_dir), "[]")
    spare = fixture_dir / "runs"
    for i in range(limit // 2 + 10):  # two events a name: more than the queue holds
        p = spare / f"t{i}.tmp"
        p.write_bytes(b"")
        p.unlink()
    live = watched(fixture_dir)
    assert _loadcheck.scan(a3s_nb.FileStore(fixture_dir)) == full_scan(fixture_dir)
    assert watched(fixture_dir) is not live  # dropped (and set up again)
    assert _loadcheck.scan(a3s_nb.FileStore(fixture_dir))["runs"][RUN][1] == 2


def test_a_store_on_a_file_system_that_cannot_be_watched_is_scanned_in_full(
    fixture_dir, fresh_watches, monkeypatch
):
    dev = os.stat(fixture_dir).st_dev
    monkeypatch.setattr(_watch, "file_system_types", lambda: {dev: "nfs4"})
    store = a3s_nb.FileStore(fixture_dir)
    for _ in range(3):
        assert _loadcheck.scan(store) == full_scan(fixture_dir)
    assert watched(fixture_dir) is None
    assert fresh_watches._seen[str(fixture_dir)] is False  # not tried again each call


def test_the_environment_can_turn_the_watch_off(fixture_dir, fresh_watches, monkeypatch):
    monkeypatch.setenv("A3S_NB_WATCH", "0")
    store = a3s_nb.FileStore(fixture_dir)
    for _ in range(3):
        assert _loadcheck.scan(store) == full_scan(fixture_dir)
    assert watched(fixture_dir) is None


def test_turning_the_watch_off_later_stats_every_file_again(
    fixture_dir, fresh_watches, monkeypatch
):
    start_watching(fixture_dir)
    store = a3s_nb.FileStore(fixture_dir)
    files = sum(map(len, full_scan(fixture_dir).values()))
    monkeypatch.setenv("A3S_NB_WATCH", "off")
    expected = full_scan(fixture_dir)
    stats = count_stats(monkeypatch)
    assert _loadcheck.scan(store) == expected
    assert len(stats) >= files


def test_a_forked_child_does_not_read_its_parents_watch(fixture_dir, fresh_watches):
    start_watching(fixture_dir)
    rewrite_in_place(_runs(fixture_dir), "[]")
    pid = os.fork()
    if pid == 0:  # the child scans (in full: the watches are its parent's) and leaves
        code = 0 if _loadcheck.scan(a3s_nb.FileStore(fixture_dir)) == full_scan(fixture_dir) else 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # the parent still has the event: the child did not take it
    after = _loadcheck.scan(a3s_nb.FileStore(fixture_dir))
    assert after["runs"][RUN][1] == 2
    assert after == full_scan(fixture_dir)
    assert watched(fixture_dir) is not None


def test_frames_of_a_watched_store_follow_an_in_place_rewrite(
    fixture_dir, fresh_watches, no_racy_window
):
    a3s_nb.all_frames(fixture_dir, progress=False)
    before = a3s_nb.runs(fixture_dir, progress=False)  # the second call: watched
    assert watched(fixture_dir) is not None
    rewrite_in_place(_runs(fixture_dir), "[]", keep_time=True)
    after = a3s_nb.runs(fixture_dir, progress=False)
    assert RUN in set(before["session_id"])
    assert RUN not in set(after["session_id"])
