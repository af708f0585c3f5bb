"""The directory store against the store the real a3s-code 3.1.0 SDK wrote."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import a3s_nb
from a3s_nb.store import store as store_mod
from a3s_nb.store.models import ArtifactManifest, SessionBundle, ToolArtifact, VerificationReport
from tests.conftest import SESSION_FILES
from tests.test_store_contract import make_bundle

FILES = tuple(SESSION_FILES.values())


def snapshot_tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".a3s_nb" not in p.parts
    }


def test_lists_every_fixture_session(fixture_store, manifest):
    assert fixture_store.list() == sorted(s["session_id"] for s in manifest["sessions"])


def test_counts_match_manifest_and_files(fixture_store, fixture_dir, manifest):
    for entry in manifest["sessions"]:
        sid = entry["session_id"]
        bundle = fixture_store.load(sid)
        assert len(bundle.session.messages) == entry["observed_messages"], sid
        assert len(bundle.runs) == entry["observed_runs"], sid
        failed = [r for r in bundle.runs if r.snapshot.status == "failed"]
        assert len(failed) == entry["observed_failed_runs"], sid
        assert bundle.session.model_name == entry["model"]
        assert bundle.session.config.workspace == entry["workspace"]
        # and every list equals the file it came from, item for item
        raw = {name: json.loads((fixture_dir / name.format(id=sid)).read_text())
               for name in FILES}  # fmt: skip
        assert len(bundle.traces) == len(raw["traces/{id}.json"])
        assert len(bundle.verification) == len(raw["verification/{id}.json"])
        assert len(bundle.artifacts.artifacts) == len(
            raw["artifacts/{id}/artifacts.json"]["artifacts"]
        )
        for run, raw_run in zip(bundle.runs, raw["runs/{id}.json"], strict=True):
            assert len(run.events) == len(raw_run["events"]) == run.snapshot.event_count


def test_fixture_has_the_scripted_features(fixture_store):
    """Guard that the fixture still exercises what the other tests rely on."""
    bundles = [fixture_store.load(i) for i in fixture_store.list()]
    assert any(b.artifacts.artifacts for b in bundles)
    assert any(b.verification for b in bundles)
    errors = [
        blk
        for b in bundles
        for m in b.session.messages
        for blk in m.content
        if getattr(blk, "is_error", False)
    ]
    assert errors


def test_resave_is_byte_identical(fixture_store, fixture_dir, tmp_path):
    out = a3s_nb.open_store(tmp_path / "out")
    for sid in fixture_store.list():
        out.save(fixture_store.load(sid))
    assert snapshot_tree(out.path) == snapshot_tree(fixture_dir)


def test_load_save_load_is_stable(fixture_store, tmp_path):
    out = a3s_nb.open_store(tmp_path / "out")
    for sid in fixture_store.list():
        first = fixture_store.load(sid)
        out.save(first)
        second = out.load(sid)
        assert second == first
        assert second.model_dump_json(by_alias=True) == first.model_dump_json(by_alias=True)


def test_save_leaves_no_temp_files(tmp_path):
    store = a3s_nb.open_store(tmp_path / "s")
    for n in range(1, 4):
        store.save(make_bundle(n=n))
    assert not [p for p in store.path.rglob("*.tmp")]
    names = sorted(str(p.relative_to(store.path)) for p in store.path.rglob("*.json"))
    assert names == sorted(f.format(id="s-1") for f in FILES)


def test_files_are_formatted_like_serde(tmp_path):
    store = a3s_nb.open_store(tmp_path / "s")
    store.save(make_bundle())
    text = (store.path / "s-1.json").read_text()
    assert text.startswith('{\n  "id": "s-1",\n  "config": {\n    "name": ""')
    assert not text.endswith("\n")
    assert (store.path / "verification" / "s-1.json").read_text() == "[]"
    assert (store.path / "artifacts" / "s-1" / "artifacts.json").read_text() == (
        '{\n  "artifacts": []\n}'
    )


@pytest.mark.parametrize(
    ("relpath", "content", "expected"),
    [
        ("{id}.json", "", "file is empty"),
        ("{id}.json", '{\n  "id": "fix-oscar-2-000",\n  "config": {', "not valid JSON"),
        ("runs/{id}.json", "", "file is empty"),
        ("traces/{id}.json", "[{]", "not valid JSON"),
        (
            "runs/{id}.json",
            '[{"snapshot": {"id": "r"}}]',
            "[0].snapshot.session_id: Field required",
        ),
        ("artifacts/{id}/artifacts.json", b"\xff\xfe", "not UTF-8"),
    ],
)
def test_corrupt_file_names_itself_and_others_still_load(fixture_store, relpath, content, expected):
    victim = "fix-oscar-2-000"
    path = fixture_store.path / relpath.format(id=victim)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(a3s_nb.CorruptFileError) as e:
        fixture_store.load(victim)
    assert e.value.path == str(path)
    assert expected in str(e.value)
    assert str(path) in str(e.value)
    assert victim in fixture_store.list()
    for sid in fixture_store.list():
        if sid != victim:
            fixture_store.load(sid)


def test_missing_fragments_load_as_empty(fixture_store):
    sid = "explore-lima-2-001"
    for rel in FILES[1:]:
        (fixture_store.path / rel.format(id=sid)).unlink()
    bundle = fixture_store.load(sid)
    assert bundle.runs == [] and bundle.traces == [] and bundle.verification == []
    assert bundle.artifacts.artifacts == []
    assert len(bundle.session.messages) == 15


def _every_file_changed(bundle: SessionBundle) -> SessionBundle:
    """The bundle with a change in each of its five files (unchanged files are not rewritten)."""
    bundle.session.messages = bundle.session.messages[:2]
    bundle.runs = bundle.runs[:1]
    bundle.traces = bundle.traces[:1]
    bundle.verification = [VerificationReport(subject="s", status="passed")]
    bundle.artifacts = ArtifactManifest(
        artifacts=[
            ToolArtifact(
                artifact_id="a",
                artifact_uri="a3s://a",
                tool_name="bash",
                content="x",
                original_bytes=1,
                shown_bytes=1,
            )
        ]
    )
    return bundle


def test_failed_save_damages_nothing(fixture_store, fixture_dir, monkeypatch):
    before = snapshot_tree(fixture_dir)
    bundle = _every_file_changed(fixture_store.load("fix-oscar-2-000"))
    real = store_mod._write_new
    calls = []

    def failing(tmp, data):
        calls.append(tmp)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(tmp, data)

    monkeypatch.setattr(store_mod, "_write_new", failing)
    with pytest.raises(OSError, match="No space left"):
        fixture_store.save(bundle)
    assert snapshot_tree(fixture_dir) == before
    assert not list(fixture_dir.rglob("*.tmp"))


def test_sdk_rewritten_ids_list_as_their_real_id(tmp_path):
    """a3s-code stores id 'tenant/s1' as tenant_s1.json; listing gives the real id back."""
    store = a3s_nb.open_store(tmp_path / "s")
    data = make_bundle("tenant_s1").session.model_dump(mode="json")
    data["id"] = "tenant/s1"
    (store.path / "tenant_s1.json").write_text(json.dumps(data, indent=2))
    assert store.list() == ["tenant/s1"]
    assert store.load("tenant/s1").session.id == "tenant/s1"
    with pytest.raises(a3s_nb.CorruptFileError, match="holds session 'tenant/s1'"):
        store.load("tenant_s1")


@pytest.mark.parametrize(
    ("name", "held"),
    [("K-1", "\u212a-1"), ("a;b", "a\u037eb"), ("q`", "q\u1fef"), ("caf\u00e9", "cafe\u0301")],
)
def test_an_id_filed_under_a_name_equal_up_to_normalisation_lists_as_itself(tmp_path, name, held):
    """The Kelvin sign, Greek varia and Greek question mark are one id with K, ` and ;
    (``_same_id``): a file named with those holds an id the name alone does not tell."""
    store = a3s_nb.open_store(tmp_path / "s")
    data = make_bundle("x").session.model_dump(mode="json")
    data["id"] = held
    (store.path / f"{name}.json").write_text(json.dumps(data))
    assert store.list() == [held]


def test_listing_reads_no_file_whose_name_is_its_only_id(fixture_store, monkeypatch):
    read = []
    real = store_mod._id_in_file
    monkeypatch.setattr(store_mod, "_id_in_file", lambda path: read.append(path) or real(path))
    assert fixture_store.list() == sorted(p.stem for p in fixture_store.path.glob("*.json"))
    assert read == []


def test_hand_written_api_key_is_dropped_on_save(tmp_path):
    store = a3s_nb.open_store(tmp_path / "s")
    data = make_bundle().session.model_dump(mode="json")
    data["llm_config"]["api_key"] = "sk-live-123456789"
    (store.path / "s-1.json").write_text(json.dumps(data))
    store.save(store.load("s-1"))
    assert "sk-live-123456789" not in (store.path / "s-1.json").read_text()


def test_reading_never_writes(fixture_dir):
    before = sorted(p for p in fixture_dir.rglob("*"))
    store = a3s_nb.open_store(fixture_dir)
    for sid in store.list():
        store.load(sid)
    assert sorted(p for p in fixture_dir.rglob("*")) == before


def test_store_path_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(a3s_nb.StoreError, match="not a directory"):
        a3s_nb.open_store(tmp_path / "f")


# --------------------------------------------------------------------------- two kernels

# Each process is a separate interpreter, as two kernels are. (Not multiprocessing: an
# IPython shell created by another test replaces __main__, which breaks its spawn start.)
_PRELUDE = """
import os, sys, time
from a3s_nb import open_store
from tests.test_store_contract import make_bundle
store = open_store(sys.argv[1])
start = os.path.join(sys.argv[1], "start")
done = os.path.join(sys.argv[1], "done")
open(os.path.join(sys.argv[1], f"ready-{os.getpid()}"), "w").close()
while not os.path.exists(start):  # all processes begin together, after their imports
    time.sleep(0.005)
"""

_WRITER = (
    _PRELUDE
    + """
i = int(sys.argv[2])
saves = 0
while not os.path.exists(done) and saves < 100_000:  # until the reader has done its loads
    i += 1
    saves += 1
    store.save(make_bundle("shared", n=1 + (i * 7) % 9))
print(saves)
"""
)

_READER = (
    _PRELUDE
    + """
bad = 0
sizes = set()
for _ in range(LOADS):  # a count, not a time budget: a slow disk only makes it slower
    b = store.load("shared")
    sizes.add(len(b.runs))
    bad += len(b.session.messages) != len(b.runs)
open(done, "w").close()
print(bad, len(sizes))
"""
)


def test_concurrent_kernels_never_see_mixed_generations(tmp_path):
    """Each saved generation has as many runs as messages; a reader must never see a mix."""
    path = str(tmp_path / "s")
    a3s_nb.open_store(path).save(make_bundle("shared", n=1))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    run = functools.partial(
        subprocess.Popen, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    procs = [run([sys.executable, "-c", _WRITER, path, str(seed)]) for seed in (1, 2)]
    reader = run([sys.executable, "-c", _READER.replace("LOADS", "300"), path])
    deadline = time.monotonic() + 120
    while len(list(Path(path).glob("ready-*"))) < 3:  # every process has imported
        assert time.monotonic() < deadline and all(p.poll() is None for p in [*procs, reader])
        time.sleep(0.01)
    Path(path, "start").touch()
    outs = []
    for p in [reader, *procs]:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        outs.append(out)
    bad, generations_seen = map(int, outs[0].split())
    assert all(int(out) > 0 for out in outs[1:]), outs  # both writers wrote while the reader read
    assert generations_seen > 1  # the reader really saw the session change under it
    assert bad == 0
    assert isinstance(a3s_nb.open_store(path).load("shared"), SessionBundle)


@pytest.mark.parametrize("fail_at", [1, 3, 5, 6])
def test_a_rename_failing_half_way_restores_the_previous_save(
    fixture_store, fixture_dir, monkeypatch, fail_at
):
    before = snapshot_tree(fixture_dir)
    bundle = _every_file_changed(fixture_store.load("fix-oscar-2-000"))
    bundle.subagent_tasks = []  # a file this session did not have before
    real = os.replace
    calls = []

    def failing(src, dst):
        if str(src).endswith(".tmp") and ".a3s_nb" not in Path(dst).parts:  # not the journal
            calls.append(dst)
            if len(calls) == fail_at:
                raise OSError(5, "Input/output error")
        return real(src, dst)

    monkeypatch.setattr(store_mod.fsio, "replace", failing)
    with pytest.raises(OSError, match="Input/output error"):
        fixture_store.save(bundle)
    monkeypatch.undo()
    assert snapshot_tree(fixture_dir) == before
    assert not [p for p in fixture_dir.rglob("*") if p.suffix in (".tmp", ".old")]
    assert len(fixture_store.load("fix-oscar-2-000").runs) == 5


def test_without_flock_saves_still_work(tmp_path, monkeypatch):
    """On Windows there is no fcntl: a store is then locked between threads only."""
    monkeypatch.setattr(store_mod, "fcntl", None)
    store = a3s_nb.open_store(tmp_path / "s")
    store.save(make_bundle(n=2))
    assert len(store.load("s-1").runs) == 2
    assert not (store.path / ".a3s_nb" / "lock").exists()


def test_guard_sees_what_another_handle_saved_in_between(tmp_path):
    first = a3s_nb.open_store(tmp_path / "s")
    second = a3s_nb.open_store(tmp_path / "s")
    first.save(make_bundle(n=1))
    second.save(make_bundle(n=2))
    seen = []
    first.save(make_bundle(n=3), guard=seen.append)
    assert len(seen[0].runs) == 2


_GUARDED_WRITER = """
import sys, time
from a3s_nb import open_store
from tests.test_store_contract import make_bundle
store = open_store(sys.argv[1])
def guard(stored):
    open(sys.argv[2], "w").close()  # the lock is held now
    time.sleep(1.0)
store.save(make_bundle(n=5), guard=guard)
"""


def test_guard_runs_under_the_exclusive_lock_across_processes(tmp_path):
    """Another kernel's save waits for the guarded save to finish, so the guard's view holds."""
    path = tmp_path / "s"
    a3s_nb.open_store(path).save(make_bundle(n=1))
    flag = tmp_path / "in-guard"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    child = subprocess.Popen(
        [sys.executable, "-c", _GUARDED_WRITER, str(path), str(flag)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not flag.exists():
            assert child.poll() is None, child.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        a3s_nb.open_store(path).save(make_bundle(n=2))  # waits for the child's save
    finally:
        assert child.wait(timeout=60) == 0, child.stderr.read()
    assert len(a3s_nb.open_store(path).load("s-1").runs) == 2


# --------------------------------------------------------------------------- any id

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sid=st.text(min_size=0, max_size=60))
def test_any_text_is_a_refused_id_or_a_session_that_lists_loads_and_deletes(sid):
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        store = a3s_nb.open_store(Path(d) / "s")
        try:
            store_mod.validate_session_id(sid)
        except a3s_nb.InvalidSessionIdError:
            with pytest.raises(a3s_nb.InvalidSessionIdError):
                store.save(make_bundle(sid))
            assert store.list() == []
            return
        store.save(make_bundle(sid, n=2))
        assert store.list() == [sid]
        assert store.exists(sid)
        assert store.resolve(sid) == sid
        assert store.load(sid).session.id == sid
        store.delete(sid)
        assert store.list() == [] and not store.exists(sid)


@settings(max_examples=100, deadline=None)
@given(
    key=st.one_of(
        st.text(max_size=300), st.binary(max_size=5), st.integers(), st.none(), st.floats()
    )
)
def test_a_lookup_with_anything_is_an_answer_or_an_a3s_nb_error(tmp_path_factory, key):
    store = _lookup_store(tmp_path_factory)
    for call in (store.load, store.exists, store.delete, store.resolve):
        try:
            call(key)
        except (a3s_nb.InvalidSessionIdError, a3s_nb.SessionNotFoundError):
            pass
        except a3s_nb.AmbiguousSessionIdError:
            assert call == store.resolve
    assert store.list() == ["s-1", "s-2"]


def _lookup_store(factory) -> a3s_nb.FileStore:
    path = factory.getbasetemp() / "lookups"
    if not path.exists():
        store = a3s_nb.open_store(path)
        store.save(make_bundle("s-1"))
        store.save(make_bundle("s-2"))
    return a3s_nb.open_store(path)


@pytest.mark.parametrize("hint", [0, 10, 99, 100, 5000])
def test_a_file_is_read_to_its_end_whatever_size_it_was_said_to_have(tmp_path, hint):
    # the size fstat gave may be stale: a file that grew since is still read whole
    path = tmp_path / "grown.json"
    data = bytes(range(256)) * 40 + b"end"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert store_mod.read_to_end(fd, hint) == data
    finally:
        os.close(fd)
    empty = tmp_path / "empty.json"
    empty.write_bytes(b"")
    fd = os.open(empty, os.O_RDONLY)
    try:
        assert store_mod.read_to_end(fd, hint) == b""
    finally:
        os.close(fd)
