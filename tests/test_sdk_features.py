"""What the installed a3s-code can do (a3s_nb.sdk.features), and saving by its features.

Against the real SDK 3.1.0 where it is installed (``sdk`` marker), and against stand-ins
for 5.x+ shaped from the SDK's source (tests/sdk5_fakes.py says which file each piece
copies): those releases cannot run here.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest

import a3s_nb
from a3s_nb import FileStore, api
from a3s_nb.errors import (
    SaveConflictError,
    SdkOwnedSessionError,
    SecretsFoundError,
    UnsupportedSdkError,
)
from a3s_nb.sdk import features as sdk_features
from a3s_nb.sdk import live
from a3s_nb.sdk.capture import capture
from a3s_nb.store._v1layout import session_path, v1_name

from . import sdk5_fakes
from .conftest import FIXTURE_STORE
from .fakes import FakeSession

ROOT = Path(__file__).resolve().parents[1]


def _tree(root: Path) -> dict[str, bytes]:
    if not root.exists():
        return {}
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def sdk5(monkeypatch):
    """The stand-in a3s-code 5.x+ module, installed as ``a3s_code``."""
    mod = sdk5_fakes.module()
    monkeypatch.setitem(sys.modules, "a3s_code", mod)
    return mod


@pytest.fixture
def agent5(sdk5):
    bundle = FileStore(FIXTURE_STORE, create=False).load("fix-oscar-2-000")
    return sdk5_fakes.Agent({"fix-oscar-2-000": bundle})


# ============================================================================ the features


def test_only_sdk_features_imports_the_sdk():
    """One module asks what the SDK can do; nothing else imports it."""
    offenders = []
    for path in sorted((ROOT / "a3s_nb").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            if any(n.split(".")[0] == "a3s_code" for n in names):
                offenders.append(path.relative_to(ROOT / "a3s_nb").as_posix())
    assert offenders == ["sdk/features.py"] * 2  # import_a3s_code, is_sdk_session


@pytest.mark.sdk
def test_the_real_3_1_0_needs_its_runtime_and_writes_the_flat_layout(sdk_agent):
    found = sdk_features.features(sdk_agent)
    assert found == sdk_features.Features(store_needs_runtime=True, saves_snapshots=False)


@pytest.mark.sdk
def test_the_real_3_1_0_opens_through_the_runtime_and_its_store_is_remembered(
    sdk_agent, ws, tmp_path
):
    store = tmp_path / "store"
    session = live.open_session(sdk_agent, ws, store_dir=store, session_id="s1")
    session.save()
    assert (store / "s1.json").is_file()  # the detour made the store work
    assert not (store / "v1").exists()
    assert sdk_features.store_of(session) == (str(store), sdk_features.features(sdk_agent))


def test_a_5x_sdk_stores_from_plain_python_and_saves_snapshots(agent5):
    found = sdk_features.features(agent5)
    assert found == sdk_features.Features(store_needs_runtime=False, saves_snapshots=True)
    assert agent5.opened and agent5.opened[0].save_calls  # the probe: a scratch save


def test_open_session_on_5x_calls_the_sdk_directly_not_from_a_command(agent5, ws, tmp_path):
    """The 3.1 detour (a slash-command handler) would nest runtimes: a panic on 5.x+."""
    store = tmp_path / "store"
    session = live.open_session(agent5, ws, store_dir=store, session_id="new-1")
    assert session.session_id == "new-1" and session.store == str(store)
    assert sdk_features.store_of(session) == (str(store), sdk_features.features(agent5))


def test_resume_on_5x_calls_the_sdk_directly(agent5, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    (store / "fix-oscar-2-000.json").write_bytes(
        (FIXTURE_STORE / "fix-oscar-2-000.json").read_bytes()
    )
    session = live.resume_session(agent5, "fix-oscar-2-000", store)
    assert session.session_id == "fix-oscar-2-000"
    assert sdk_features.store_of(session)[0] == str(store)


class _OddSession(sdk5_fakes.Session):
    def save(self):  # a layout a3s_nb does not know
        Path(self.store).mkdir(parents=True, exist_ok=True)
        (Path(self.store) / "sessions.db").write_bytes(b"\0")


class _OddAgent(sdk5_fakes.Agent):
    def session(self, workspace, opts=None):
        s = super().session(workspace, opts)
        s.__class__ = _OddSession
        return s


@pytest.mark.parametrize(
    ("overrides", "agent", "why"),
    [
        ({"__version__": "11.0.0"}, _OddAgent({}), "sessions.db"),
        ({"__version__": "11.0.0", "FileSessionStore": None}, sdk5_fakes.Agent({}), None),
    ],
    ids=["unknown-layout", "no-file-store"],
)
def test_an_unknown_sdk_fails_at_the_first_call_naming_it(
    monkeypatch, ws, tmp_path, overrides, agent, why
):
    mod = sdk5_fakes.module(**overrides)
    if overrides.get("FileSessionStore", 1) is None:
        del mod.FileSessionStore
    monkeypatch.setitem(sys.modules, "a3s_code", mod)
    store = tmp_path / "store"
    with pytest.raises(UnsupportedSdkError) as info:
        live.open_session(agent, ws, store_dir=store, session_id="x")
    message = str(info.value)
    assert "a3s-code 11.0.0" in message and "3.1.0" in message and "5.x-9.x" in message
    assert why is None or why in message
    assert _tree(store) == {}  # nothing written (open_session creates the directory only)


# ============================================================================ saving on 5.x+


@pytest.fixture
def opened(agent5, tmp_path, ws):
    """A 5.x+ session a3s_nb opened on a store, after one prompt (its store, its session)."""
    store = tmp_path / "store"
    session = live.open_session(agent5, ws, store_dir=store, session_id="live-1")
    session.send("Summarise the README")
    return store, session


def test_save_of_a_5x_session_lets_the_sdk_write_its_snapshot(opened):
    store, session = opened
    result = a3s_nb.save(session, store=store)
    assert result.session_id == "live-1" and result.created and result.messages == 2
    assert session.save_calls == [session_path(store, "live-1")]
    written = _tree(store)
    snapshot = f"v1/sessions/{v1_name('live-1')}.json"
    # a3s_nb wrote nothing under v1/ (only the SDK's save did) and no flat copy
    assert [k for k in written if k.startswith("v1/")] == [snapshot]
    assert json.loads(written[snapshot])["session"]["id"] == "live-1"
    assert not any(k.endswith(".json") and "/" not in k for k in written)
    record = json.loads(written[f".a3s_nb/saves/{v1_name('live-1')}.json"])
    assert record["written_by"] == "a3s-code" and record["sdk_version"] == sdk5_fakes.VERSION
    assert (record["messages"], record["runs"]) == (2, 1)


def test_the_sdk_saves_only_after_the_secret_scan(opened, monkeypatch):
    store, session = opened
    session.send("my key is sk-proj-" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0")
    with pytest.raises(SecretsFoundError):
        a3s_nb.save(session, store=store)
    assert session.save_calls == [] and _tree(store) == {}
    a3s_nb.save(session, store=store, allow_secrets=True)
    assert len(session.save_calls) == 1


def test_the_sdk_saves_only_after_the_conflict_check(opened):
    """The store holds work under this id that the live session lacks (here a root copy,
    as an SDK migration leaves one): the SDK is not asked to save over it."""
    store, session = opened
    other = FakeSession(FileStore(FIXTURE_STORE, create=False).load("fix-oscar-2-000"))
    FileStore(store).save(capture(other, session_id="live-1", model="openai/fake-model"))
    before = _tree(store)
    with pytest.raises(SaveConflictError):
        a3s_nb.save(session, store=store)
    assert session.save_calls == [] and _tree(store) == before


def test_a_redacted_save_needs_a_new_id_and_writes_the_flat_layout(opened):
    store, session = opened
    session.send("token sk-proj-" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0")
    with pytest.raises(SdkOwnedSessionError, match="new id"):
        a3s_nb.save(session, store=store, redact=True)
    result = a3s_nb.save(session, "live-1-redacted", store=store, redact=True)
    assert result.redacted and session.save_calls == []
    assert not any(b"A1b2C3d4E5f6" in data for data in _tree(store).values())
    assert (store / "live-1-redacted.json").is_file()
    assert not (store / "v1").exists()


def test_an_id_with_a_v1_copy_is_never_written_by_a3s_nb(opened):
    store, session = opened
    a3s_nb.save(session, store=store)  # the SDK's snapshot of live-1
    before = _tree(store / "v1")
    other = FakeSession(FileStore(FIXTURE_STORE, create=False).load("fix-oscar-2-000"))
    with pytest.raises(SdkOwnedSessionError) as info:
        a3s_nb.save(other, "live-1", store=store)
    message = str(info.value)
    assert v1_name("live-1") in message and "--id NEW" in message
    assert _tree(store / "v1") == before
    assert not (store / "live-1.json").exists()


def test_a_5x_session_without_a_known_store_is_saved_flat_under_an_id_without_a_v1_copy(
    sdk5, tmp_path
):
    store = tmp_path / "store"
    bundle = FileStore(FIXTURE_STORE, create=False).load("fix-oscar-2-000")
    session = sdk5_fakes.Session(bundle)  # opened by the user: a3s_nb knows of no store
    result = a3s_nb.save(session, store=store)
    assert result.created and session.save_calls == []
    assert (store / "fix-oscar-2-000.json").is_file() and not (store / "v1").exists()
    runs = json.loads((store / "runs" / "fix-oscar-2-000.json").read_bytes())
    assert runs == json.loads((FIXTURE_STORE / "runs" / "fix-oscar-2-000.json").read_bytes())


def test_a_copy_of_a_5x_session_under_a_new_id_is_written_flat(opened):
    store, session = opened
    result = a3s_nb.save(session, "copy-1", store=store)
    assert result.session_id == "copy-1" and session.save_calls == []
    assert (store / "copy-1.json").is_file() and not (store / "v1").exists()


def test_a_failing_sdk_save_is_reported_and_recorded_nowhere(opened, monkeypatch):
    store, session = opened

    def boom():
        raise RuntimeError("disk full")

    monkeypatch.setattr(session, "save", boom)
    with pytest.raises(a3s_nb.LiveSessionError, match="disk full"):
        a3s_nb.save(session, store=store)
    assert not (store / ".a3s_nb" / "saves").exists()


def test_api_exposes_where_the_save_record_is(opened):
    store, _ = opened
    assert api.save_record_path(FileStore(store), "t/s") != api.save_record_path(
        FileStore(store), "t_s"
    )


# ============================================================================ packaging


def test_the_all_extra_allows_the_supported_sdks_and_no_unknown_one():
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (sdk,) = [
        Requirement(r)
        for r in project["optional-dependencies"]["all"]
        if Requirement(r).name == "a3s-code"
    ]
    for version in ("3.1.0", "4.2.0", "5.0.0", "8.5.6", "9.1.2"):
        assert sdk.specifier.contains(version), version
    for version in ("3.0.0", "10.0.0"):
        assert not sdk.specifier.contains(version), version


def test_make_lab_ci_and_the_constraints_keep_the_tested_sdk():
    tested = f"a3s-code=={sdk_features.TESTED}"
    assert sdk_features.TESTED == "3.1.0"
    assert f"'{tested}'" in (ROOT / "Makefile").read_text()
    assert tested in (ROOT / "constraints.txt").read_text().splitlines()
