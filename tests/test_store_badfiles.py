"""Bad files and odd entries in a directory store: each ends in an a3s_nb error naming the
file, and every other session still lists, loads and passes ``a3s-nb check``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import a3s_nb
from a3s_nb.cli import main
from a3s_nb.store.models import SessionBundle
from tests.conftest import SESSION_FILES
from tests.test_store_contract import make_bundle

VICTIM = "fix-oscar-2-000"
DEEP = "[" * 10_000 + "]" * 10_000
HUGE = "1" * 5_000


def _session_text(fixture_dir: Path, sid: str = VICTIM) -> str:
    return (fixture_dir / f"{sid}.json").read_text()


def _bad_session_deep(d: Path) -> Path:
    text = _session_text(d)
    p = d / f"{VICTIM}.json"
    p.write_text(text[:-1] + f',\n  "deep": {DEEP}\n}}')
    return p


def _bad_session_huge_int(d: Path) -> Path:
    p = d / f"{VICTIM}.json"
    p.write_text(_session_text(d)[:-1] + f',\n  "huge": {HUGE}\n}}')
    return p


def _bad_runs_deep(d: Path) -> Path:
    p = d / "runs" / f"{VICTIM}.json"
    p.write_text(DEEP)
    return p


def _bad_run_event_huge_int(d: Path) -> Path:
    p = d / "runs" / f"{VICTIM}.json"
    runs = json.loads(p.read_text())
    runs[0]["events"][0]["event"]["huge"] = "HUGE"
    p.write_text(json.dumps(runs, indent=2).replace('"HUGE"', HUGE))
    return p


def _bad_traces_dir(d: Path) -> Path:
    p = d / "traces" / f"{VICTIM}.json"
    p.unlink()
    p.mkdir()
    return p


def _bad_artifacts_dangling(d: Path) -> Path:
    p = d / "artifacts" / VICTIM / "artifacts.json"
    p.unlink()
    p.symlink_to(d / "nowhere.json")
    return p


def _bad_session_self_link(d: Path) -> Path:
    p = d / f"{VICTIM}.json"
    p.unlink()
    p.symlink_to(p.name)
    return p


def _bad_session_fifo(d: Path) -> Path:
    p = d / f"{VICTIM}.json"
    p.unlink()
    os.mkfifo(p)  # reading it would block forever
    return p


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (_bad_session_deep, "nested too deeply"),
        (_bad_session_huge_int, "integer too long"),
        (_bad_runs_deep, "nested too deeply"),
        (_bad_run_event_huge_int, "integer too long"),
        (_bad_traces_dir, "is a directory"),
        (_bad_artifacts_dangling, "does not exist"),
        (_bad_session_self_link, "symbolic link that loops"),
        (_bad_session_fifo, "not a regular file"),
    ],
)
def test_a_bad_file_is_a_corrupt_file_error_naming_it(fixture_dir, capsys, make, problem):
    path = make(fixture_dir)
    store = a3s_nb.open_store(fixture_dir)
    assert VICTIM in store.list()
    with pytest.raises(a3s_nb.CorruptFileError) as e:
        store.load(VICTIM)
    assert e.value.path == str(path) and problem in str(e.value)
    part = next(k for k, v in SESSION_FILES.items() if path == fixture_dir / v.format(id=VICTIM))
    with pytest.raises(a3s_nb.CorruptFileError, match=problem):
        store.read_raw(VICTIM, part)
    others = [s for s in store.list() if s != VICTIM]
    assert len(others) == 7
    for sid in others:
        assert isinstance(store.load(sid), SessionBundle)
    assert main(["--store", str(fixture_dir), "check"]) == 1
    out = capsys.readouterr().out
    assert f"BROKEN {VICTIM}: {path}: " in out and problem in out
    assert "7 of 8 sessions load cleanly" in out


@pytest.mark.parametrize(
    ("name", "make", "problem"),
    [
        ("adir", lambda p: p.mkdir(), "is a directory"),
        ("dangling", lambda p: p.symlink_to(p.parent / "gone.json"), "does not exist"),
        ("loop", lambda p: p.symlink_to(p.name), "symbolic link that loops"),
    ],
)
def test_an_odd_entry_named_like_a_session_is_listed_and_reported(
    fixture_dir, capsys, name, make, problem
):
    """Not invisible (a3s-code's own list() shows it), and list() still works for the rest."""
    path = fixture_dir / f"{name}.json"
    make(path)
    store = a3s_nb.open_store(fixture_dir)
    ids = store.list()
    assert name in ids and len(ids) == 9
    assert store.exists(name)
    with pytest.raises(a3s_nb.CorruptFileError, match=problem) as e:
        store.load(name)
    assert e.value.path == str(path)
    assert main(["--store", str(fixture_dir), "check"]) == 1
    out = capsys.readouterr().out
    assert f"BROKEN {name}: {path}" in out and "8 of 9 sessions load cleanly" in out
    if name != "adir":
        store.delete(name)  # a broken link can be deleted like any session
        assert not os.path.lexists(path)
    else:
        with pytest.raises(a3s_nb.CorruptFileError, match="is a directory"):
            store.delete(name)  # a directory is the user's to move, never removed
        assert path.is_dir()
    assert main(["--store", str(fixture_dir), "check"]) == (1 if name == "adir" else 0)


def test_check_exits_0_only_when_every_session_loads(fixture_dir, capsys):
    assert main(["--store", str(fixture_dir), "check"]) == 0
    _bad_session_huge_int(fixture_dir)  # today: check stopped at it with exit 2
    (fixture_dir / "deep.json").write_text('{"id": "deep", "x": ' + DEEP + "}")
    assert main(["--store", str(fixture_dir), "check"]) == 1
    out = capsys.readouterr().out
    assert "BROKEN deep:" in out and f"BROKEN {VICTIM}:" in out
    assert "7 of 9 sessions load cleanly" in out


# ---- ids that do not match their file ----------------------------------------------------


def test_a_file_holding_another_id_lists_under_its_own_name(fixture_dir, capsys):
    """Two files claim one id: the misfiled copy lists, loads and deletes as its file name."""
    (fixture_dir / "copy.json").write_text(_session_text(fixture_dir))
    store = a3s_nb.open_store(fixture_dir)
    ids = store.list()
    assert ids.count(VICTIM) == 1 and "copy" in ids and len(ids) == 9
    assert len(store.load(VICTIM).runs) == 5
    with pytest.raises(a3s_nb.CorruptFileError, match=f"holds session '{VICTIM}', not 'copy'"):
        store.load("copy")
    assert store.resolve("cop") == "copy"
    assert main(["--store", str(fixture_dir), "check"]) == 1
    assert "BROKEN copy:" in capsys.readouterr().out
    store.delete("copy")  # removes that file, not the session it names
    assert not (fixture_dir / "copy.json").exists()
    assert len(store.load(VICTIM).runs) == 5
    assert (fixture_dir / "runs" / f"{VICTIM}.json").exists()
    assert main(["--store", str(fixture_dir), "check"]) == 0


def test_a_file_whose_id_names_another_file(tmp_path):
    """x.json holding id 'y': list() shows 'x' (loadable: an error naming x.json), never 'y'."""
    store = a3s_nb.open_store(tmp_path / "s")
    store.save(make_bundle("y", n=2))
    (store.path / "x.json").write_text((store.path / "y.json").read_text())
    (store.path / "y.json").unlink()
    assert store.list() == ["x"]
    with pytest.raises(a3s_nb.SessionNotFoundError):
        store.load("y")
    with pytest.raises(a3s_nb.SessionNotFoundError):
        store.delete("y")  # today: removed y's fragments though list() showed 'y'
    assert (store.path / "runs" / "y.json").exists()
    with pytest.raises(a3s_nb.CorruptFileError, match="holds session 'y', not 'x'"):
        store.load("x")


def test_deleting_the_sdk_spelling_of_a_rewritten_id_removes_nothing(tmp_path):
    store = a3s_nb.open_store(tmp_path / "s")
    data = make_bundle("tenant_s1").session.model_dump(mode="json")
    data["id"] = "tenant/s1"
    (store.path / "tenant_s1.json").write_text(json.dumps(data, indent=2))
    assert store.list() == ["tenant/s1"]
    assert not store.exists("tenant_s1") and store.exists("tenant/s1")
    with pytest.raises(a3s_nb.SessionNotFoundError, match="did you mean 'tenant/s1'"):
        store.delete("tenant_s1")
    assert (store.path / "tenant_s1.json").exists()
    store.delete("tenant/s1")
    assert store.list() == []


def test_a_name_a3s_code_cannot_write_is_reported_as_stray(tmp_path, capsys):
    store = a3s_nb.open_store(tmp_path / "s")
    store.save(make_bundle())
    (store.path / "a..b.json").write_text("{}")
    assert store.list() == ["s-1"]
    assert main(["--store", str(store.path), "check"]) == 1
    assert f"STRAY {store.path / 'a..b.json'}" in capsys.readouterr().out


# ---- links that leave the store -----------------------------------------------------------


def _outside_link(store_path: Path, rel: str, outside: Path) -> None:
    outside.mkdir(parents=True)
    link = store_path / rel
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside, target_is_directory=True)


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".a3s_nb" not in p.parts
    }


@pytest.mark.parametrize("rel", ["runs", "artifacts", "artifacts/s-1", "traces"])
@pytest.mark.parametrize("existing", [False, True])
def test_save_refuses_to_write_through_a_link_out_of_the_store(tmp_path, rel, existing):
    store = a3s_nb.open_store(tmp_path / "s")
    if existing:
        store.save(make_bundle(n=1))
        target = store.path / rel
        if target.exists():
            for p in sorted(target.rglob("*"), reverse=True):
                p.unlink() if p.is_file() else p.rmdir()
            target.rmdir()
    outside = tmp_path / "elsewhere"
    _outside_link(store.path, rel, outside)
    before = _tree(store.path)
    with pytest.raises(a3s_nb.StoreError, match="outside the store") as e:
        store.save(make_bundle(n=3))
    assert str(store.path / rel) in str(e.value)
    assert list(outside.rglob("*")) == []  # nothing written out there
    assert _tree(store.path) == before  # and nothing in here either
    if existing:
        with pytest.raises(a3s_nb.StoreError, match="outside the store"):
            store.delete("s-1")
        assert store.exists("s-1")


def test_a_link_that_stays_in_the_store_is_written_through(tmp_path):
    store = a3s_nb.open_store(tmp_path / "s")
    (store.path / "runs-real").mkdir()
    (store.path / "runs").symlink_to("runs-real", target_is_directory=True)
    store.save(make_bundle(n=2))
    assert (store.path / "runs-real" / "s-1.json").exists()
    assert len(store.load("s-1").runs) == 2


def test_checkpoints_refuse_a_link_out_of_the_store(tmp_path):
    from a3s_nb.store.models import LoopCheckpoint, Message, TextBlock, TokenUsage

    store = a3s_nb.open_store(tmp_path / "s")
    _outside_link(store.path, "loop_checkpoints", tmp_path / "elsewhere")
    cp = LoopCheckpoint(
        schema_version=1,
        run_id="run-7",
        session_id="s-1",
        turn=2,
        messages=[Message(role="user", content=[TextBlock(text="hi")])],
        total_usage=TokenUsage(prompt_tokens=3, completion_tokens=4, total_tokens=7),
        tool_calls_count=1,
        checkpoint_ms=1,
    )
    with pytest.raises(a3s_nb.StoreError, match="outside the store"):
        store.save_loop_checkpoint(cp)
    assert list((tmp_path / "elsewhere").iterdir()) == []
