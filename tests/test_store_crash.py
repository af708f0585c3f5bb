"""A save or delete killed (SIGKILL) at every single system call leaves one whole generation.

Every call through which the directory store changes the disk goes through
``a3s_nb.store._fsio`` (open, write, fsync, close, link, replace, unlink, mkdir, rmdir), which
calls the ``os`` function of that name; the test wraps those ``os`` functions. A driver
process counts the calls of one operation in a dry run, then for each call k forks a child
that performs the operation and SIGKILLs itself right before, or right after, call k. A
fresh process then opens each store as the next user would (a reader first, or a writer
first) and checks that the store holds exactly the files of the old generation or of the
new one, byte for byte, that ``load`` returns that generation, and that nothing the dead
process left behind survives the next write.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import a3s_nb
from a3s_nb.store.models import (
    ArtifactManifest,
    SessionBundle,
    SubagentTaskSnapshot,
    ToolArtifact,
    VerificationReport,
)
from tests.test_store_contract import make_bundle

ROOT = Path(__file__).parent.parent
#: The calls counted and killed at: every way a save or delete changes the disk.
CALLS = ("open", "write", "fsync", "close", "link", "replace", "rename", "unlink", "mkdir", "rmdir")


def gen_a() -> SessionBundle:
    return make_bundle("s", n=2)


def gen_b_all() -> SessionBundle:
    """Every file differs from generation A, and one file (subagent_tasks) is new."""
    b = make_bundle("s", n=5)
    b.traces = b.traces * 2
    b.verification = [VerificationReport(subject="s", status="passed")]
    b.artifacts = ArtifactManifest(
        artifacts=[
            ToolArtifact(
                artifact_id="a1",
                artifact_uri="a3s://a1",
                tool_name="bash",
                content="out" * 100,
                original_bytes=300,
                shown_bytes=10,
            )
        ]
    )
    b.subagent_tasks = [
        SubagentTaskSnapshot(
            task_id="t",
            parent_session_id="s",
            child_session_id="c",
            agent="general",
            description="d",
            status="completed",
            started_ms=1,
            updated_ms=2,
        )
    ]
    return b


def gen_b_some() -> SessionBundle:
    """The session document and the runs change; the other files are rewritten unchanged."""
    return make_bundle("s", n=4)


def gen_b_one() -> SessionBundle:
    """Only the session document changes."""
    b = gen_a()
    b.session.updated_at += 60
    return b


#: name -> (generation A saved first or None, the operation)
SCENARIOS = {
    "create": (None, ("save", gen_b_all)),
    "update-every-file": (gen_a, ("save", gen_b_all)),
    "update-two-files": (gen_a, ("save", gen_b_some)),
    "update-one-file": (gen_a, ("save", gen_b_one)),
    "delete": (gen_a, ("delete", "s")),
    # a reader finishing the journal of a save killed after 2 of its 6 renames, itself
    # killed at each of its calls: whoever comes next still ends at the new generation
    "recover": ("interrupted", ("load", "s")),
}


def _prepare(path: Path, first) -> None:
    if first == "interrupted":
        interrupt_after_renames(str(path), 2)
        assert (path / ".a3s_nb" / "journal").exists()
        return
    store = a3s_nb.open_store(path)
    store.save(make_bundle("bystander", n=3))
    if first is not None:
        store.save(first())


def _operate(path: Path, op) -> None:
    store = a3s_nb.open_store(path)
    if op[0] == "save":
        store.save(op[1]())
    elif op[0] == "load":
        store.load(op[1])
    else:
        store.delete(op[1])


def _fork_run(path: Path, op, kill_at: int | None, when: str, count_file: Path | None) -> int:
    """Run ``op`` in a forked child; return its wait status."""
    pid = os.fork()
    if pid == 0:  # the child: count the seam's calls, kill itself at call kill_at
        try:
            counter = [0]

            def wrap(name, real):
                def call(*args, **kwargs):
                    counter[0] += 1
                    if counter[0] == kill_at and when == "before":
                        os.kill(os.getpid(), signal.SIGKILL)
                    try:
                        return real(*args, **kwargs)
                    finally:  # after the call, whether it returned or raised
                        if counter[0] == kill_at and when == "after":
                            os.kill(os.getpid(), signal.SIGKILL)

                return call

            # the os functions themselves: the store's seam (a3s_nb.store._fsio) calls them, and
            # so does any code that bypasses it
            for name in CALLS:
                setattr(os, name, wrap(name, getattr(os, name)))
            _operate(path, op)
            if count_file is not None:
                count_file.write_text(str(counter[0]))
            os._exit(0)
        except BaseException:
            import traceback

            traceback.print_exc()
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    return status


def drive(work: str) -> None:
    """Make every kill point's store under ``work``; write the plan to work/plan.json."""
    work_dir = Path(work)
    plan = []
    for name, (first, op) in SCENARIOS.items():
        base = work_dir / name / "base"
        _prepare(base, first)
        ref_a = work_dir / name / "ref-a"
        shutil.copytree(base, ref_a)
        ref_b = work_dir / name / "ref-b"
        shutil.copytree(base, ref_b)
        count_file = work_dir / name / "count"
        status = _fork_run(ref_b, op, None, "never", count_file)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
        calls = int(count_file.read_text())
        for k in range(1, calls + 1):
            for when in ("before", "after"):
                d = work_dir / name / f"{k:03d}-{when}"
                shutil.copytree(base, d)
                status = _fork_run(d, op, k, when, None)
                assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (
                    name,
                    k,
                    when,
                    status,
                )
                plan.append({"scenario": name, "dir": str(d), "k": k, "when": when})
        plan.append({"scenario": name, "calls": calls})
    (work_dir / "plan.json").write_text(json.dumps(plan))


def _tree(root: Path) -> dict[str, bytes]:
    """Every file of the store except a3s_nb's own directory and the session 'other'."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if (p.is_file() or p.is_symlink())
        and ".a3s_nb" not in p.relative_to(root).parts
        and "other" not in str(p.relative_to(root))
    }


def verify(work: str) -> None:
    """In a fresh process: classify each killed store as generation a, b, or mixed."""
    work_dir = Path(work)
    plan = json.loads((work_dir / "plan.json").read_text())
    refs = {}
    for name in SCENARIOS:
        refs[name] = {
            g: (_tree(work_dir / name / f"ref-{g}"), _loaded(work_dir / name / f"ref-{g}"))
            for g in ("a", "b")
        }
    results = []
    for i, item in enumerate(plan):
        if "dir" not in item:
            continue
        d = Path(item["dir"])
        store = a3s_nb.open_store(d, create=False)
        writer_first = i % 2 == 1  # every other store is first opened by a writer
        if writer_first:
            store.save(make_bundle("other"))
        loaded = _loaded(d)  # a reader: load() (and list()) through the store
        tree = _tree(d)
        gens = [g for g, (t, b) in refs[item["scenario"]].items() if t == tree and b == loaded]
        # what load() returned, leftovers aside: a mix here is what a user would work on
        loads_as = [g for g, (_, b) in refs[item["scenario"]].items() if b == loaded]
        if not writer_first:
            store.save(make_bundle("other"))  # the next writer cleans what the dead one left
        leftovers = sorted(
            str(p.relative_to(d))
            for p in d.rglob("*")
            if p.name.endswith((".tmp", ".old")) or p.name.startswith("journal")
        )
        results.append(
            {
                **item,
                "generation": "".join(gens) or "mixed",
                "loads_as": "".join(loads_as) or "mixed",
                "leftovers": leftovers,
            }
        )
    (work_dir / "results.json").write_text(json.dumps(results))


def _loaded(path: Path):
    store = a3s_nb.open_store(path, create=False)
    ids = [i for i in store.list() if i != "other"]
    return {i: store.load(i).model_dump(mode="json") for i in ids}


def test_a_kill_at_every_system_call_leaves_one_whole_generation(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for step in ("drive", "verify"):  # the verifier is a fresh process
        subprocess.run(
            [
                sys.executable,
                "-c",
                f"from tests.test_store_crash import {step}; {step}({str(tmp_path)!r})",
            ],
            env=env,
            check=True,
            timeout=900,
        )
    plan = json.loads((tmp_path / "plan.json").read_text())
    results = json.loads((tmp_path / "results.json").read_text())
    calls = {p["scenario"]: p["calls"] for p in plan if "calls" in p}
    summary = {}
    for name in SCENARIOS:
        mine = [r for r in results if r["scenario"] == name]
        assert len(mine) == 2 * calls[name]  # every call, killed before and after
        summary[name] = {
            "calls": calls[name],
            "kill points": len(mine),
            "mixed": sum(r["generation"] == "mixed" for r in mine),
            "load() returned a mix": sum(r["loads_as"] == "mixed" for r in mine),
            "old": sum(r["generation"] == "a" for r in mine),
            "new": sum(r["generation"] == "b" for r in mine),
            "leftovers": sum(bool(r["leftovers"]) for r in mine),
        }
    print(json.dumps(summary, indent=1))
    mixed = [(r["scenario"], r["k"], r["when"]) for r in results if r["generation"] == "mixed"]
    assert mixed == []
    left = [(r["scenario"], r["k"], r["when"], r["leftovers"]) for r in results if r["leftovers"]]
    assert left == []
    for name, s in summary.items():
        assert s["calls"] >= 10, (name, s)
        if name == "recover":  # past its commit point a save only ever goes forward
            assert s["new"] == s["kill points"], s
            continue
        # a save that replaces several files journals them: killed early it is the old
        # generation, killed late the new one, and both outcomes really occur
        assert s["old"] > 0 and s["new"] > 0, (name, s)


# ---- a reader that cannot write reads through a dead writer's journal ----------------------


def interrupt_after_renames(path: str, renames: int) -> None:
    """Save generation A, then kill a save of B after ``renames`` of its files are renamed."""
    _prepare(Path(path), gen_a)
    pid = os.fork()
    if pid == 0:
        real, done = os.replace, [0]

        def replace(src, dst):
            real(src, dst)
            if ".a3s_nb" not in Path(dst).parts:
                done[0] += 1
                if done[0] == renames:
                    os.kill(os.getpid(), signal.SIGKILL)

        os.replace = replace
        _operate(Path(path), ("save", gen_b_all))
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status), status


def _interrupted(tmp_path: Path, renames: int = 2) -> Path:
    path = tmp_path / "s"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = f"from tests.test_store_crash import interrupt_after_renames as f; f({str(path)!r}, {renames})"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
    assert (path / ".a3s_nb" / "journal").exists()
    return path


def test_a_reader_that_cannot_write_reads_the_new_generation_through_the_journal(
    tmp_path, monkeypatch
):
    path = _interrupted(tmp_path)
    on_disk = json.loads((path / "traces" / "s.json").read_text())
    assert len(on_disk) == 2  # traces was renamed: the disk itself is a mix right now
    assert len(json.loads((path / "s.json").read_text())["messages"]) == 2

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    from a3s_nb.store import _fsio

    monkeypatch.setattr(_fsio, "replace", read_only)
    monkeypatch.setattr(_fsio, "unlink", read_only)
    store = a3s_nb.open_store(path, create=False)
    loaded = store.load("s")
    assert loaded.model_dump(mode="json") == SessionBundle.model_validate(
        gen_b_all().model_dump(mode="json")
    ).model_dump(mode="json")
    assert len(store.read_raw("s", "session")["messages"]) == 5
    assert store.list() == ["bystander", "s"]
    assert (path / ".a3s_nb" / "journal").exists()  # not finished: it could not be
    monkeypatch.undo()
    assert len(a3s_nb.open_store(path).load("s").runs) == 5  # now it is
    assert not (path / ".a3s_nb" / "journal").exists()
    assert store.recovered == [] and not list(path.rglob("*.tmp"))


def test_check_finishes_an_interrupted_save_and_says_so(tmp_path, capsys):
    from a3s_nb.cli import main

    path = _interrupted(tmp_path, renames=1)
    assert main(["--store", str(path), "check"]) == 0
    out = capsys.readouterr().out
    assert "RECOVERED finished an interrupted write of process" in out and "save s" in out
    assert "2 of 2 sessions load cleanly" in out
    assert not (path / ".a3s_nb" / "journal").exists()


# ---- leftovers: a dead process's are removed, a running one's never ------------------------


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.fixture
def live_pid():
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield p.pid
    p.kill()
    p.wait()


def _plant(path: Path, dead: int, live: int) -> tuple[list[Path], list[Path]]:
    """Leftovers as a3s-code 3.1 (root, checkpoints) and a3s_nb (fragments) leave them."""
    ns = 1_764_000_000_000_000_000
    places = {
        "sdk": lambda pid: path / f"s.json.{ns}.{pid}.tmp",
        "sdk34": lambda pid: path / "loop_checkpoints" / f"run.json.{ns}.{pid}.3.tmp",
        "ours": lambda pid: path / "runs" / f"s.json.{ns}.{pid}.0.tmp",
        "old": lambda pid: path / "artifacts" / "s" / f"artifacts.json.{ns}.{pid}.4.old",
        "index": lambda pid: path / ".a3s_nb" / f"index.json.{pid}.{ns}.tmp",
    }
    made: dict[int, list[Path]] = {dead: [], live: []}
    for make in places.values():
        for pid in (dead, live):
            p = make(pid)
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text("x" * 100)
            made[pid].append(p)
    return made[dead], made[live]


def test_the_next_writer_removes_what_dead_processes_left(tmp_path, live_pid):
    path = tmp_path / "s"
    a3s_nb.open_store(path).save(make_bundle("s"))
    dead, live = _plant(path, _dead_pid(), live_pid)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = (
        "import sys; from a3s_nb import open_store; from tests.test_store_contract import "
        "make_bundle; open_store(sys.argv[1]).save(make_bundle('t'))"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], env=env, check=True, timeout=120)
    # the root, checkpoints and bookkeeping are swept by a process's first write
    assert [p for p in dead if p.exists()] == [dead[2], dead[3]]  # fragments: check --fix
    assert all(p.exists() for p in live)


def test_a_long_running_writer_removes_leftovers_it_sees_in_a_listing(tmp_path, live_pid):
    store = a3s_nb.open_store(tmp_path / "s")
    store.save(make_bundle("s"))  # this process has swept already
    dead, live = _plant(store.path, _dead_pid(), live_pid)
    store.list()  # sees the dead a3s-code temp file in the root
    store.save(make_bundle("t"))
    assert not dead[0].exists() and live[0].exists()


def test_check_fix_removes_every_dead_leftover_and_no_live_one(tmp_path, capsys, live_pid):
    from a3s_nb.cli import main

    path = tmp_path / "s"
    a3s_nb.open_store(path).save(make_bundle("s"))
    dead, live = _plant(path, _dead_pid(), live_pid)
    assert main(["--store", str(path), "check"]) == 0  # leftovers do not stop a load
    out = capsys.readouterr().out
    assert f"{len(dead)} files ({100 * len(dead):,} bytes) left by interrupted saves" in out
    assert "a3s-nb check --fix" in out
    assert all(str(p) in out for p in dead) and not any(str(p) in out for p in live)
    assert all(p.exists() for p in dead)  # check alone removes nothing
    assert main(["--store", str(path), "check", "--fix"]) == 0
    assert f"removed {len(dead)} files left by interrupted saves" in capsys.readouterr().out
    assert not any(p.exists() for p in dead)
    assert all(p.exists() for p in live)
    assert main(["--store", str(path), "check"]) == 0
    assert "left by interrupted saves" not in capsys.readouterr().out
    assert len(a3s_nb.open_store(path).load("s").runs) == 1


@pytest.mark.parametrize(
    "journal",
    [
        {"state": "staging", "cleanup": ["s.json"]},
        {"state": "commit", "ops": [["s.json", "runs/s.json"]], "cleanup": []},
        {"state": "commit", "ops": [["../outside.json", None]]},
        {"state": "staging", "cleanup": "s.json.1.2.tmp"},
    ],
)
def test_a_tampered_journal_never_removes_a_session_file(tmp_path, journal):
    store = a3s_nb.open_store(tmp_path / "s")
    store.save(make_bundle("s", n=2))
    (tmp_path / "outside.json").write_text("{}")
    (store.meta_dir / "journal").write_text(json.dumps(journal))
    with pytest.raises(a3s_nb.CorruptFileError, match="journal"):
        store.load("s")
    assert (store.path / "s.json").exists() and (store.path / "runs" / "s.json").exists()
    assert (tmp_path / "outside.json").exists()
    (store.meta_dir / "journal").unlink()  # the way on, as the error names the file
    assert len(store.load("s").runs) == 2


def interrupt_create(path: str) -> None:
    """Kill a save that creates session 's' after its first file rename."""
    _prepare(Path(path), None)
    pid = os.fork()
    if pid == 0:
        real = os.replace

        def replace(src, dst):
            real(src, dst)
            if ".a3s_nb" not in Path(dst).parts:
                os.kill(os.getpid(), signal.SIGKILL)

        os.replace = replace
        _operate(Path(path), ("save", gen_b_all))
        os._exit(0)
    os.waitpid(pid, 0)


def test_a_reader_that_cannot_write_lists_a_session_the_journal_creates(tmp_path, monkeypatch):
    path = tmp_path / "s"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = f"from tests.test_store_crash import interrupt_create as f; f({str(path)!r})"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
    assert not (path / "s.json").exists() and (path / ".a3s_nb" / "journal").exists()

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    from a3s_nb.store import _fsio

    monkeypatch.setattr(_fsio, "replace", read_only)
    store = a3s_nb.open_store(path, create=False)
    assert store.list() == ["bystander", "s"]
    assert store.exists("s") and len(store.load("s").runs) == 5
    assert not (path / "s.json").exists()
