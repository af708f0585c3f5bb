"""a3s-code 5.x+'s v1 store layout, read exactly as the SDK reads it, and never written.

The golden values come from ``tests/fixtures/a3s-format-vectors`` (copied from the SDK's own
Rust tests, or derived from its algorithms: see that README). The v1 store of most tests is
built from the store the real SDK 3.1.0 wrote, laid out as 5.x+ lays it out.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

import a3s_nb
from a3s_nb import cli
from a3s_nb.errors import CorruptFileError, EncryptedSessionError, SdkOwnedSessionError
from a3s_nb.store import _v1layout as v1
from a3s_nb.store import sdk_safe_id

from .conftest import FIXTURE_STORE, FIXTURES, calls_of, frames_from_files

pytestmark = pytest.mark.filterwarnings("ignore::a3s_nb.CorruptSessionWarning")

VECTORS = FIXTURES / "a3s-format-vectors"
IDS = sorted(p.stem for p in FIXTURE_STORE.glob("*.json"))
ENVELOPES, BARE, SHADOWED, FLAT = IDS[0:3], IDS[3:5], IDS[5:7], IDS[7:]
SEALED_ID = "sealed-1"


def vector(name: str) -> dict:
    return json.loads((VECTORS / name).read_text())


def write(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2) if not isinstance(value, bytes) else "")
    if isinstance(value, bytes):
        path.write_bytes(value)


def flat_parts(root: Path, sid: str) -> dict:
    def read(rel: str, default: object = None) -> object:
        path = root / rel
        return json.loads(path.read_text()) if path.exists() else default

    return {
        "session": read(f"{sid}.json"),
        "runs": read(f"runs/{sid}.json", []),
        "traces": read(f"traces/{sid}.json", []),
        "verification": read(f"verification/{sid}.json", []),
        "artifacts": read(f"artifacts/{sid}/artifacts.json", {"artifacts": []}),
    }


def envelope(parts: dict) -> dict:
    """A ``SessionSnapshotV1`` as a3s-code writes it (fields in declaration order)."""
    return {
        "schema_version": 1,
        "session": parts["session"],
        "artifacts": parts["artifacts"]["artifacts"],
        "retained_artifact_uris": [],
        "trace_events": parts["traces"],
        "run_records": parts["runs"],
        "verification_reports": parts["verification"],
        "subagent_tasks": [],
    }


def remove_flat(root: Path, sid: str) -> None:
    for rel in (
        f"{sid}.json",
        f"runs/{sid}.json",
        f"traces/{sid}.json",
        f"verification/{sid}.json",
    ):
        (root / rel).unlink(missing_ok=True)
    shutil.rmtree(root / "artifacts" / sid, ignore_errors=True)


def v1_path(root: Path, sid: str, part: str = "session") -> Path:
    name = v1.v1_name(sid)
    if part == "session":
        return root / "v1" / "sessions" / f"{name}.json"
    if part == "artifacts":
        return root / "v1" / "artifacts" / name / "artifacts.json"
    return root / "v1" / part / f"{name}.json"


def same_bundle(a: a3s_nb.SessionBundle, b: a3s_nb.SessionBundle) -> bool:
    """Equal, counting no sub-agent tasks as none (an envelope always has the list, a 3.1
    flat store never has the file)."""
    return a.model_copy(update={"subagent_tasks": a.subagent_tasks or None}) == b.model_copy(
        update={"subagent_tasks": b.subagent_tasks or None}
    )


def add_wal_and_lease(root: Path) -> None:
    derived = vector("05_derived.json")
    wal = root / "v1" / "wal"
    wal.mkdir(parents=True, exist_ok=True)
    (wal / "session-store.ndjson").write_text(derived["wal_pair_for_wal_rs_test_inputs"]["ndjson"])
    (wal / "session-store.lock").write_bytes(b"")
    lease = next(v for k, v in derived.items() if k.startswith("writer_lease_file_bytes"))
    (root / "v1" / "writer_lease.json").write_text(lease)


def sealed_bytes() -> bytes:
    derived = vector("05_derived.json")
    return bytes.fromhex(
        next(v for k, v in derived.items() if k.startswith("at_rest"))["sealed_hex"]
    )


def build_v1_store(root: Path, *, wal: bool = True, sealed: bool = True) -> Path:
    """The fixture sessions as an a3s-code 5.x+ store holds them: envelopes, bare v1
    session files with v1 fragments, envelopes shadowing a stale root copy, one session
    still flat; a WAL, a lease, a crashed write's temp file, a sealed session."""
    shutil.copytree(FIXTURE_STORE, root)
    for sid in ENVELOPES + SHADOWED:
        write(v1_path(root, sid), envelope(flat_parts(root, sid)))
    for sid in ENVELOPES:
        remove_flat(root, sid)
    for sid in SHADOWED:  # the root copy is what the session was before the SDK's migration
        stale = json.loads((root / f"{sid}.json").read_text())
        stale["messages"] = stale["messages"][:1]
        write(root / f"{sid}.json", stale)
        write(root / "runs" / f"{sid}.json", [])
    for sid in BARE:
        parts = flat_parts(root, sid)
        for part, value in parts.items():
            write(v1_path(root, sid, part), value)
        remove_flat(root, sid)
    if wal:
        add_wal_and_lease(root)
    if sealed:
        v1_path(root, SEALED_ID).write_bytes(sealed_bytes())
    # a write a3s-code left half done: never listed, never read
    (
        root / "v1" / "sessions" / f"{v1.v1_name(IDS[0])}.json.1700000000000000000.1.0.tmp"
    ).write_text("{")
    return root


def tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` with a hash of its bytes (and its mode and time)."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        data = p.read_bytes() if p.is_file() else b""
        out[str(p.relative_to(root))] = (
            f"{hashlib.sha256(data).hexdigest()}:{st.st_mode}:{st.st_mtime_ns}"
        )
    return out


@pytest.fixture
def flat_store(tmp_path: Path) -> a3s_nb.FileStore:
    dest = tmp_path / "flat"
    shutil.copytree(FIXTURE_STORE, dest)
    return a3s_nb.FileStore(dest)


@pytest.fixture
def v1_dir(tmp_path: Path) -> Path:
    return build_v1_store(tmp_path / "v1store")


@pytest.fixture
def v1_store(v1_dir: Path) -> a3s_nb.FileStore:
    return a3s_nb.FileStore(v1_dir)


# ============================================================================ names (05)


def test_v1_file_names_are_the_sdks():
    names = vector("05_derived.json")["file_names"]
    root = Path("/store")
    for sid, expected in names.items():
        assert str(v1.session_path(root, sid).relative_to(root)) == expected["v1_session"]
        assert f"{sdk_safe_id(sid)}.json" == expected["legacy_root"]
        assert v1.decode_v1_name(Path(expected["v1_session"]).name[:-5]) == sid


@pytest.mark.parametrize(
    "stem",
    [
        "id_YR",  # 'a' with non-zero trailing bits: the SDK's decoder refuses it
        "id_YQ==",  # padded
        "id_Y",  # a length no base64 has
        "id_Y+E",  # standard, not url-safe, alphabet
        "YQ",  # no id_ prefix
        "id__w",  # bytes that are not UTF-8
    ],
)
def test_names_the_sdk_cannot_decode_are_not_listed(v1_store, v1_dir, stem, capsys):
    before = v1_store.list()
    path = v1_dir / "v1" / "sessions" / f"{stem}.json"
    path.write_text("{}")
    assert v1.decode_v1_name(stem) is None
    assert v1_store.list() == before
    assert v1_store.v1_stray_files() == [path]
    cli.main(["--store", str(v1_dir), "check"])
    assert f"STRAY {path}" in capsys.readouterr().out


def test_tmp_files_in_v1_are_ignored(v1_store, v1_dir):
    tmps = list((v1_dir / "v1" / "sessions").glob("*.tmp"))
    assert tmps
    assert sorted(v1_store.list()) == sorted([*IDS, SEALED_ID])
    assert cli.main(["--store", str(v1_dir), "check"]) == 1  # the sealed one only
    assert all(p.exists() for p in tmps)


# ============================================================================ reading


def test_every_session_lists_once_and_the_v1_copy_wins(v1_store, flat_store):
    assert v1_store.list() == sorted([*IDS, SEALED_ID])
    for sid in IDS:
        assert v1_store.exists(sid)
        assert same_bundle(v1_store.load(sid), flat_store.load(sid))
    for sid in SHADOWED:  # not the stale root copy
        assert len(v1_store.load(sid).session.messages) > 1


def test_envelope_parts_map_onto_the_bundle(v1_store, v1_dir, flat_store):
    sid = ENVELOPES[0]
    doc = json.loads(v1_path(v1_dir, sid).read_text())
    doc["subagent_tasks"] = [
        vector("03_persisted_schema_fuzz.verbatim.json")[
            "backward_compat_minimal_subagent_task_loads"
        ]["json"]
        | {"parent_session_id": sid}
    ]
    write(v1_path(v1_dir, sid), doc)
    bundle = v1_store.load(sid)
    flat = flat_store.load(sid)
    assert bundle.runs == flat.runs and bundle.traces == flat.traces
    assert bundle.verification == flat.verification and bundle.artifacts == flat.artifacts
    (task,) = bundle.subagent_tasks
    assert task.status == "running" and task.finished_ms is None and task.output is None
    assert v1_store.read_raw(sid, "runs") == doc["run_records"]
    assert v1_store.location(sid, "session") == str(v1_path(v1_dir, sid))
    assert v1_store.location(sid, "runs") == str(v1_path(v1_dir, sid))  # all in one file


def test_an_envelope_without_a_part_has_it_empty(v1_store, v1_dir):
    sid = ENVELOPES[1]
    doc = json.loads(v1_path(v1_dir, sid).read_text())
    write(v1_path(v1_dir, sid), {"schema_version": 1, "session": doc["session"]})
    bundle = v1_store.load(sid)
    assert bundle.runs == [] and bundle.traces == [] and bundle.verification == []


def test_tool_result_text_that_looks_like_json_stays_text(v1_store, v1_dir):
    """03 ``untagged_tool_result_text_is_not_misparsed_as_blocks``."""
    text = vector("03_persisted_schema_fuzz.verbatim.json")[
        "untagged_tool_result_text_is_not_misparsed_as_blocks"
    ]["tool_result_content"]
    sid = ENVELOPES[0]
    doc = json.loads(v1_path(v1_dir, sid).read_text())
    blocks = [
        b for m in doc["session"]["messages"] for b in m["content"] if b["type"] == "tool_result"
    ]
    blocks[0]["content"] = text
    write(v1_path(v1_dir, sid), doc)
    loaded = [
        b for m in v1_store.load(sid).session.messages for b in m.content if b.type == "tool_result"
    ]
    assert loaded[0].content == text


def test_a_pre_v1_loop_checkpoint_loads_with_defaults(fixture_store, fixture_dir):
    """03 ``backward_compat_pre_v1_loop_checkpoint_loads_with_defaults``."""
    doc = vector("03_persisted_schema_fuzz.verbatim.json")[
        "backward_compat_pre_v1_loop_checkpoint_loads_with_defaults"
    ]["json"]
    write(fixture_dir / "loop_checkpoints" / "run-old.json", doc)
    cp = fixture_store.load_loop_checkpoint("run-old")
    assert cp.schema_version == 0 and cp.verification_reports == [] and cp.tool_calls_count == 3


def test_bare_v1_session_reads_its_v1_fragments(v1_store, v1_dir, flat_store):
    sid = BARE[0]
    assert "schema_version" not in json.loads(v1_path(v1_dir, sid).read_text())
    assert v1_store.load(sid) == flat_store.load(sid)  # (no subagent_tasks file either)
    assert v1_store.location(sid, "runs") == str(v1_path(v1_dir, sid, "runs"))


def test_a_root_fragment_counts_only_when_the_root_file_holds_the_id(v1_store, v1_dir):
    sid = BARE[1]
    runs = json.loads(v1_path(v1_dir, sid, "runs").read_text())
    v1_path(v1_dir, sid, "runs").unlink()
    write(v1_dir / "runs" / f"{sid}.json", runs)  # a root fragment of the same name
    write(v1_dir / f"{sid}.json", {"id": "someone-else"})
    assert v1_store.load(sid).runs == []
    session = json.loads(v1_path(v1_dir, sid).read_text())
    write(v1_dir / f"{sid}.json", session)  # now the root file proves it is this session
    assert len(v1_store.load(sid).runs) == len(runs) > 0


def test_a_v1_fragment_wins_over_the_root_one_of_a_root_session(v1_store, v1_dir):
    sid = FLAT[0]
    write(v1_path(v1_dir, sid, "runs"), [])
    assert v1_store.load(sid).runs == []
    assert v1_store.location(sid, "runs") == str(v1_path(v1_dir, sid, "runs"))


def test_a_root_envelope_is_read_as_an_envelope(flat_store, tmp_path):
    sid = FLAT[0]
    root = flat_store.path
    doc = envelope(flat_parts(root, sid))
    remove_flat(root, sid)
    write(root / f"{sid}.json", doc)
    assert sid in flat_store.list()
    bundle = flat_store.load(sid)
    assert len(bundle.runs) == len(doc["run_records"]) > 0
    assert len(a3s_nb.runs(flat_store).query("session_id == @sid")) == len(bundle.runs)
    events = sum(len(r["events"]) for r in doc["run_records"])
    assert (a3s_nb.run_events(flat_store).session_id == sid).sum() == events > 0
    assert flat_store.read_raw(sid, "runs") == doc["run_records"]


# ============================================================================ refused (04, 05)


@pytest.mark.parametrize(
    "case",
    [
        "test_file_store_corrupted_json_recovery",
        "test_file_store_load_empty_file",
        "test_file_store_load_partial_json",
    ],
)
@pytest.mark.parametrize("where", ["root", "v1"])
def test_negative_vectors_are_refused_as_the_sdk_refuses_them(v1_store, v1_dir, case, where):
    vec = vector("04_store_negative.verbatim.json")[case]
    sid = Path(vec["file"]).stem
    path = v1_dir / f"{sid}.json" if where == "root" else v1_path(v1_dir, sid)
    path.write_text(vec["bytes"])
    assert sid in v1_store.list()
    with pytest.raises(CorruptFileError) as e:
        v1_store.load(sid)
    assert e.value.path == str(path)
    assert v1_store.load(IDS[0])  # the others still load


def test_key_collision_vector(tmp_path):
    """04 ``legacy_session_collision_never_returns_another_sessions_payload``."""
    root = tmp_path / "s"
    shutil.copytree(FIXTURE_STORE, root)
    doc = json.loads((root / f"{FLAT[0]}.json").read_text()) | {"id": "tenant_session"}
    write(root / "tenant_session.json", doc)
    store = a3s_nb.FileStore(root)
    assert not store.exists("tenant/session")
    with pytest.raises(CorruptFileError):
        store.load("tenant/session")
    assert store.load("tenant_session").session.id == "tenant_session"


def test_one_complete_snapshot_generation(tmp_path):
    """04 ``file_store_commits_and_loads_one_complete_snapshot_generation``: a store that
    holds only ``v1/`` with one envelope."""
    root = tmp_path / "s"
    parts = flat_parts(FIXTURE_STORE, FLAT[0])
    parts["session"] = parts["session"] | {"id": "test-session-1"}
    for run in parts["runs"]:
        run["snapshot"]["session_id"] = "test-session-1"
    write(
        root / vector("05_derived.json")["file_names"]["test-session-1"]["v1_session"],
        envelope(parts),
    )
    store = a3s_nb.FileStore(root)
    assert os.listdir(root) == ["v1"]
    assert store.list() == ["test-session-1"]
    assert store.load("test-session-1").session.id == "test-session-1"


@pytest.mark.parametrize("version", [0, 2, "1", 1.0, None, "missing"])
def test_an_envelope_of_another_schema_version_is_refused(v1_store, v1_dir, version):
    sid = ENVELOPES[0]
    doc = json.loads(v1_path(v1_dir, sid).read_text())
    if version == "missing":
        del doc["schema_version"]  # a 'session' key alone still makes it an envelope
    else:
        doc["schema_version"] = version
    write(v1_path(v1_dir, sid), doc)
    assert sid in v1_store.list()
    with pytest.raises(CorruptFileError, match="schema_version") as e:
        v1_store.load(sid)
    assert e.value.path == str(v1_path(v1_dir, sid))
    df = a3s_nb.sessions(v1_store)
    assert sid not in set(df.session_id) and ENVELOPES[1] in set(df.session_id)
    assert sid in {err["session_id"] for err in df.attrs["errors"]}


def test_an_id_inside_that_differs_from_the_name_is_refused(v1_store, v1_dir):
    sid = BARE[0]
    doc = json.loads(v1_path(v1_dir, sid).read_text())
    write(v1_path(v1_dir, sid), doc | {"id": sid + "-other"})
    with pytest.raises(CorruptFileError, match="collision") as e:
        v1_store.load(sid)
    assert e.value.path == str(v1_path(v1_dir, sid))
    env = ENVELOPES[0]
    doc = json.loads(v1_path(v1_dir, env).read_text())
    doc["session"]["id"] = "tenant/session"
    write(v1_path(v1_dir, env), doc)
    with pytest.raises(CorruptFileError, match="collision"):
        v1_store.load(env)


def test_a_sealed_file_is_refused_naming_it(v1_store, v1_dir, capsys):
    data = sealed_bytes()
    assert v1.is_sealed(data) and len(data) == 44
    assert not v1.is_sealed(v1.SEALED_MAGIC + b"\x00" * 12)  # 17 bytes: not sealed
    with pytest.raises(EncryptedSessionError) as e:
        v1_store.load(SEALED_ID)
    assert isinstance(e.value, a3s_nb.A3sNbError) and a3s_nb.EncryptedSessionError
    assert e.value.path == str(v1_path(v1_dir, SEALED_ID)) and "sealed" in str(e.value)
    df = a3s_nb.sessions(v1_store)
    assert sorted(df.session_id) == IDS  # everything else still shows
    assert [err["session_id"] for err in df.attrs["errors"]] == [SEALED_ID]
    assert cli.main(["--store", str(v1_dir), "check"]) == 1
    out = capsys.readouterr().out
    assert f"BROKEN {SEALED_ID}" in out and str(v1_path(v1_dir, SEALED_ID)) in out


def test_a_sealed_root_file_is_refused_too(flat_store):
    (flat_store.path / f"{FLAT[0]}.json").write_bytes(sealed_bytes())
    with pytest.raises(EncryptedSessionError):
        flat_store.load(FLAT[0])


def test_files_over_the_size_limit_are_refused(v1_store, v1_dir, monkeypatch):
    sid = ENVELOPES[0]
    size = v1_path(v1_dir, sid).stat().st_size
    monkeypatch.setattr(v1, "MAX_DOCUMENT_BYTES", size - 1)
    with pytest.raises(CorruptFileError, match="limit") as e:
        v1_store.load(sid)
    assert e.value.path == str(v1_path(v1_dir, sid))
    monkeypatch.setattr(v1, "MAX_DOCUMENT_BYTES", size)
    assert v1_store.load(sid)
    assert v1.MAX_DOCUMENT_BYTES != 256 * 1024 * 1024  # (patched) the real limit:
    monkeypatch.undo()
    assert v1.MAX_DOCUMENT_BYTES == 256 * 1024 * 1024


# ============================================================================ frames


def _frames_equal(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for name in a:
        pd.testing.assert_frame_equal(
            a[name].reset_index(drop=True), b[name].reset_index(drop=True), obj=name
        )


def test_frames_of_a_v1_store_equal_the_flat_ones(v1_store, flat_store):
    flat = frames_from_files(flat_store)
    for _ in range(2):  # built, then from the caches
        cached = a3s_nb.all_frames(v1_store)
        _frames_equal(cached, flat)
        for df in cached.values():
            assert [e["session_id"] for e in df.attrs["errors"]] == [SEALED_ID]
    _frames_equal(frames_from_files(v1_store), flat)
    for name in ("sessions", "messages", "runs"):  # the index and load check paths
        _frames_equal(
            {name: getattr(a3s_nb, name)(v1_store, ids=IDS[:6])},
            {name: getattr(a3s_nb, name)(flat_store, ids=IDS[:6])},
        )
    assert len(a3s_nb.sessions(v1_store, status="completed")) == len(
        a3s_nb.sessions(flat_store, status="completed")
    )


def test_frames_built_by_workers_read_v1_sessions(v1_store, flat_store, monkeypatch):
    from a3s_nb.frames import _parallel

    monkeypatch.setattr(_parallel, "MIN_PER_WORKER", 1)
    builds = calls_of(monkeypatch, _parallel, "build")
    got = a3s_nb.all_frames(v1_store, workers=2)
    assert builds  # the sessions were read in worker processes
    _frames_equal(got, frames_from_files(flat_store))


@pytest.mark.usefixtures("no_racy_window")
def test_caches_follow_a_v1_copy_replacing_a_root_copy(flat_store):
    sid = FLAT[0]
    root = flat_store.path
    before = a3s_nb.all_frames(flat_store)
    assert (before["runs"].session_id == sid).sum() > 0
    parts = flat_parts(root, sid)
    parts["runs"] = []
    parts["session"]["messages"] = parts["session"]["messages"][:2]
    write(v1_path(root, sid), envelope(parts))  # what an SDK migration writes
    after = a3s_nb.all_frames(flat_store)
    _frames_equal(after, frames_from_files(flat_store))
    assert (after["runs"].session_id == sid).sum() == 0
    assert after["sessions"].set_index("session_id").loc[sid, "n_messages"] == 2
    # the SDK rewrites the snapshot in place (temp file + rename), with the runs back
    parts = flat_parts(root, sid)
    tmp = v1_path(root, sid).with_suffix(".json.1.2.3.tmp")
    tmp.write_text(json.dumps(envelope(parts), indent=2))
    os.replace(tmp, v1_path(root, sid))
    again = a3s_nb.all_frames(flat_store)
    _frames_equal(again, frames_from_files(flat_store))
    _frames_equal(again, before)
    # and a copy the load check must refuse
    doc = envelope(parts) | {"schema_version": 2}
    write(v1_path(root, sid), doc)
    refused = a3s_nb.all_frames(flat_store)
    assert sid not in set(refused["sessions"].session_id)
    assert [e["session_id"] for e in refused["sessions"].attrs["errors"]] == [sid]


@pytest.mark.usefixtures("no_racy_window")
def test_the_listing_cache_sees_a_new_v1_session(v1_store, v1_dir):
    assert len(a3s_nb.sessions(v1_store)) == len(IDS)
    parts = flat_parts(FIXTURE_STORE, FLAT[0])
    parts["session"] = parts["session"] | {"id": "new-in-v1"}
    for run in parts["runs"]:
        run["snapshot"]["session_id"] = "new-in-v1"
    write(v1_path(v1_dir, "new-in-v1"), envelope(parts))
    assert "new-in-v1" in set(a3s_nb.sessions(v1_store).session_id)


# ============================================================================ collisions


def _as(parts: dict, sid: str) -> dict:
    parts = json.loads(json.dumps(parts))
    parts["session"]["id"] = sid
    for run in parts["runs"]:
        run["snapshot"]["session_id"] = sid
    return parts


@pytest.fixture
def colliding(tmp_path: Path) -> a3s_nb.FileStore:
    """``tenant/session`` and ``tenant_session``: one flat file name, two v1 sessions."""
    root = tmp_path / "c"
    write(
        v1_path(root, "tenant/session"),
        envelope(_as(flat_parts(FIXTURE_STORE, IDS[0]), "tenant/session")),
    )
    write(
        v1_path(root, "tenant_session"),
        envelope(_as(flat_parts(FIXTURE_STORE, IDS[1]), "tenant_session")),
    )
    return a3s_nb.FileStore(root)


@pytest.mark.usefixtures("no_racy_window")
def test_ids_one_flat_name_merges_stay_two_sessions(colliding, tmp_path):
    assert colliding.list() == ["tenant/session", "tenant_session"]
    a, b = colliding.load("tenant/session"), colliding.load("tenant_session")
    assert a.session.id == "tenant/session" and b.session.id == "tenant_session"
    assert a.session.messages != b.session.messages
    for _ in range(2):  # built, then cached
        frames = a3s_nb.all_frames(colliding)
        _frames_equal(frames, frames_from_files(colliding))
        assert sorted(frames["sessions"].session_id) == ["tenant/session", "tenant_session"]
        runs = frames["runs"].groupby("session_id").size()
        assert runs["tenant/session"] == len(a.runs) and runs["tenant_session"] == len(b.runs)
    result = a3s_nb.export_dataset(colliding, str(tmp_path / "ds"))
    assert result["written"] == 2
    files = sorted(
        p.name for p in (tmp_path / "ds").rglob("*.parquet") if "frame=sessions" in str(p)
    )
    assert files == sorted({f"{v1.v1_name('tenant/session')}.parquet", "tenant_session.parquet"})


def test_lineage_of_a_flat_fork_is_not_another_sessions(colliding, tmp_path):
    root = colliding.path
    a3s_nb.fork("tenant_session", at=1, new_id="tenant_session-2", store=colliding)
    assert a3s_nb.lineage_of("tenant_session-2", colliding)["parent_id"] == "tenant_session"
    lineage = root / ".a3s_nb" / "lineage"
    (lineage / "tenant_session-2.json").rename(lineage / "tenant_session.json")
    rec = json.loads((lineage / "tenant_session.json").read_text())
    rec["session_id"] = "tenant_session"
    (lineage / "tenant_session.json").write_text(json.dumps(rec))
    assert a3s_nb.lineage_of("tenant/session", colliding) is None
    assert a3s_nb.lineage_of("tenant_session", colliding)["session_id"] == "tenant_session"
    colliding.delete("tenant/session")  # (no WAL): its delete leaves the other's record
    assert (lineage / "tenant_session.json").exists()


def test_file_keys_are_collision_free():
    ids = ["tenant/session", "tenant_session", "a..b", "a_b", "id_YQ", "a", ".x"]
    keys = [v1.file_key(i) for i in ids]
    assert len(set(keys)) == len(ids)
    assert v1.file_key("fix-oscar-2-000") == "fix-oscar-2-000"  # plain ids keep their name


# ============================================================================ writing


def test_nothing_under_v1_changes_through_any_a3s_nb_call(v1_store, v1_dir, tmp_path, capsys):
    before = tree(v1_dir / "v1")
    ids = v1_store.list()
    for sid in IDS:
        v1_store.load(sid)
        v1_store.exists(sid)
        v1_store.read_raw(sid, "runs")
    a3s_nb.all_frames(v1_store)
    a3s_nb.all_frames(v1_store)
    a3s_nb.list_sessions(v1_store)
    assert cli.main(["--store", str(v1_dir), "list"]) == 1  # the sealed one is reported
    assert cli.main(["--store", str(v1_dir), "check"]) == 1
    assert cli.main(["--store", str(v1_dir), "check", "--fix"]) == 1
    # the sealed session is skipped and reported: exit 1, like list and check
    assert cli.main(["--store", str(v1_dir), "export", "runs", str(tmp_path / "runs.csv")]) == 1
    a3s_nb.export_dataset(v1_store, str(tmp_path / "ds"))
    fork = a3s_nb.fork(ENVELOPES[0], at=1, new_id="fork-of-v1", store=v1_store)
    assert fork is not None and "fork-of-v1" in v1_store.list()
    a3s_nb.diff(ENVELOPES[0], "fork-of-v1", store=v1_store)
    a3s_nb.diff(ENVELOPES[0], BARE[0], store=v1_store)
    with pytest.raises(SdkOwnedSessionError, match="write-ahead log"):
        v1_store.delete(ENVELOPES[0])
    with pytest.raises(SdkOwnedSessionError, match="new id"):
        v1_store.save(v1_store.load(SHADOWED[0]))
    assert sorted(v1_store.list()) == sorted([*ids, "fork-of-v1"])
    assert tree(v1_dir / "v1") == before
    # the fork is a new flat session, which a3s-code reads through its legacy path
    assert (v1_dir / "fork-of-v1.json").exists()
    assert len(a3s_nb.FileStore(v1_dir).load("fork-of-v1").session.messages) > 0


def test_saving_an_id_with_a_v1_copy_is_refused(v1_store, v1_dir):
    sid = SHADOWED[1]
    root_before = (v1_dir / f"{sid}.json").read_bytes()
    bundle = v1_store.load(sid)
    with pytest.raises(SdkOwnedSessionError) as e:
        v1_store.save(bundle)
    msg = str(e.value)
    assert "v1" in msg and "new id" in msg and "session.save()" in msg
    assert (v1_dir / f"{sid}.json").read_bytes() == root_before
    assert isinstance(e.value, PermissionError)
    bundle.session.id = "saved-flat"  # under a new id it is saved, flat
    for run in bundle.runs:
        run.snapshot.session_id = "saved-flat"
    v1_store.save(bundle)
    assert (v1_dir / "saved-flat.json").exists()
    assert not v1.session_path(v1_dir, "saved-flat").exists()


def test_a_v1_fragment_alone_also_refuses_a_save(flat_store):
    sid = FLAT[0]
    bundle = flat_store.load(sid)
    write(v1_path(flat_store.path, sid, "traces"), [])
    with pytest.raises(SdkOwnedSessionError):
        flat_store.save(bundle)


def test_delete_without_a_wal_removes_what_the_sdks_delete_removes(tmp_path):
    root = build_v1_store(tmp_path / "s", wal=False)
    store = a3s_nb.FileStore(root)
    shadowed, bare = SHADOWED[0], BARE[0]
    store.delete(shadowed)
    assert not v1_path(root, shadowed).exists()
    assert not (root / f"{shadowed}.json").exists()  # the root copy held this id: gone
    assert not (root / "runs" / f"{shadowed}.json").exists()
    assert shadowed not in store.list()
    store.delete(bare)
    for part in ("session", "runs", "traces", "verification", "artifacts"):
        assert not v1_path(root, bare, part).exists()
    assert not v1_path(root, bare, "artifacts").parent.exists()
    assert bare not in store.list()
    # a root file of the same name that holds another id is not this session's: kept
    sid = ENVELOPES[0]
    other = json.loads((FIXTURE_STORE / f"{FLAT[0]}.json").read_text())
    write(root / f"{sid}.json", other)
    store.delete(sid)
    assert (root / f"{sid}.json").exists() and not v1_path(root, sid).exists()
    assert not (root / ".a3s_nb" / "journal").exists()
    # (the file left lists under its name, as any root file holding another id does)
    assert sorted(store.list()) == sorted({*IDS, SEALED_ID} - {shadowed, bare})


def test_delete_with_a_wal_is_refused_and_changes_nothing(v1_store, v1_dir):
    before = tree(v1_dir)
    for sid in (ENVELOPES[0], BARE[0], SHADOWED[0]):
        with pytest.raises(SdkOwnedSessionError, match="a3s-code") as e:
            v1_store.delete(sid)
        assert "nothing was changed" in str(e.value)
    after = tree(v1_dir)
    assert {k: v for k, v in after.items() if not k.startswith(".a3s_nb")} == {
        k: v for k, v in before.items() if not k.startswith(".a3s_nb")
    }
    assert v1_store.load(ENVELOPES[0])
    v1_store.delete(FLAT[0])  # a flat session with no v1 file is a3s_nb's to delete
    assert FLAT[0] not in v1_store.list()


def test_an_empty_wal_counts_as_none(tmp_path):
    root = build_v1_store(tmp_path / "s", wal=False)
    (root / "v1" / "wal").mkdir(parents=True)
    (root / "v1" / "wal" / "session-store.ndjson").write_bytes(b"")
    store = a3s_nb.FileStore(root)
    store.delete(ENVELOPES[0])
    assert ENVELOPES[0] not in store.list()


def test_check_passes_a_shadowed_root_copy_and_fix_keeps_it(tmp_path, capsys):
    root = build_v1_store(tmp_path / "s", sealed=False)
    assert cli.main(["--store", str(root), "check"]) == 0
    assert cli.main(["--store", str(root), "check", "--fix"]) == 0
    for sid in SHADOWED:
        assert (root / f"{sid}.json").exists() and (root / "runs" / f"{sid}.json").exists()
    out = capsys.readouterr().out
    assert f"{len(IDS)} of {len(IDS)} sessions load cleanly" in out


def test_v1_names_encode_like_the_sdk():
    for sid in ["", "a", "ü", "tenant/session", "x" * 100]:
        expected = "id_" + base64.urlsafe_b64encode(sid.encode()).decode().rstrip("=")
        assert v1.v1_name(sid) == expected
        assert v1.decode_v1_name(expected) == sid


def test_the_session_browser_shows_v1_sessions(v1_store, v1_dir):
    from a3s_nb.widgets import SessionBrowser

    before = tree(v1_dir / "v1")
    browser = SessionBrowser(v1_dir)
    assert f"sessions={len(IDS)}" in repr(browser)  # the sealed one is reported, not shown
    for sid in (ENVELOPES[0], BARE[0], SHADOWED[0]):
        browser.select(sid)
        assert browser.transcript.session_id == sid
        runs = v1_store.load(sid).runs
        assert browser.runs_html.value.count('class="a3s-run-row"') == len(runs) > 0
    assert tree(v1_dir / "v1") == before
