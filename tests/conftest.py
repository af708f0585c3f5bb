"""Shared fixtures. Every test gets its own copy of any store it touches."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

import a3s_nb

FIXTURES = Path(__file__).parent / "fixtures"
FIXTURE_STORE = FIXTURES / "a3s-code-3.1.0"

#: The files a3s-code 3.1.0 writes for one session, as the SDK lays them out. Written out
#: here (not taken from a3s_nb.store) so the tests hold the store to the SDK's layout.
SESSION_FILES = {
    "session": "{id}.json",
    "runs": "runs/{id}.json",
    "traces": "traces/{id}.json",
    "verification": "verification/{id}.json",
    "artifacts": "artifacts/{id}/artifacts.json",
}


def frames_from_files(store: object, names: list[str] | None = None) -> dict:
    """Frames built from the files, bypassing the frame cache (what a cached answer must
    equal). All frames unless ``names``."""
    from a3s_nb.frames import _engine, schema

    return _engine._collect(
        store,
        list(schema.FRAME_NAMES) if names is None else names,
        ids=None,
        since=None,
        until=None,
        status=None,
        progress=False,
        cache=False,
    )


def edit_runs(store: Path, sid: str, edit) -> Path:
    """Rewrite a session's run file through ``edit(runs)`` (a hand edit or another
    writer); the file's path."""
    path = store / "runs" / f"{sid}.json"
    runs = json.loads(path.read_text())
    edit(runs)
    path.write_text(json.dumps(runs, indent=2))
    return path


def calls_of(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> list:
    """The first argument after ``self``/``source``/``store`` of each call to
    ``owner.name`` from now on (a session id or file stem), in order."""
    seen: list = []
    real = getattr(owner, name)

    def spy(first, second, *args, **kwargs):
        seen.append(second)
        return real(first, second, *args, **kwargs)

    monkeypatch.setattr(owner, name, spy)
    return seen


@pytest.fixture
def no_racy_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files the test just wrote count as settled (the racy window is for real clocks)."""
    from a3s_nb.frames import _framecache, _loadcheck, _searchindex, index

    for mod in (_framecache, _loadcheck, _searchindex, index):
        monkeypatch.setattr(mod, "RACY_SECONDS", -1.0)


def blocks(history: list[dict], kind: str) -> list[dict]:
    """The content blocks of one type in a history, in order."""
    return [b for m in history for b in m["content"] if b["type"] == kind]


def on_disk(store: Path, sid: str) -> dict:
    """Every file of a saved session, parsed, read straight from disk."""
    return {
        k: json.loads((Path(store) / v.format(id=sid)).read_text())
        for k, v in SESSION_FILES.items()
    }


@pytest.fixture
def lock_takings(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Each taking of a ``FileStore``'s lock from now on (True: shared), in order; the load
    check reads 3 sessions per taking of the shared lock."""
    from a3s_nb.frames import _loadcheck

    taken: list[bool] = []
    real = a3s_nb.FileStore._acquire
    monkeypatch.setattr(
        a3s_nb.FileStore,
        "_acquire",
        lambda self, shared: taken.append(shared) or real(self, shared),
    )
    monkeypatch.setattr(_loadcheck, "LOCK_BATCH", 3)
    return taken


@pytest.fixture(scope="session")
def manifest() -> dict:
    """What each fixture session was scripted to contain (written beside the store)."""
    return json.loads((FIXTURES / "a3s-code-3.1.0.manifest.json").read_text())


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="session", autouse=True)
def _fixture_store_untouched():
    """The shipped fixture store is read-only data: no test may write into it."""
    before = _tree(FIXTURE_STORE)
    yield
    after = _tree(FIXTURE_STORE)
    changed = sorted(set(before) ^ set(after) | {k for k in before if before[k] != after.get(k)})
    assert not changed, f"tests wrote into {FIXTURE_STORE}: {changed[:5]}"


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    """An empty workspace directory for a live session."""
    path = tmp_path / "ws"
    path.mkdir()
    return path


@pytest.fixture
def fixture_dir(tmp_path: Path) -> Path:
    """A private copy of the store written by the real a3s-code 3.1.0 SDK."""
    dest = tmp_path / "store"
    shutil.copytree(FIXTURE_STORE, dest)
    return dest


@pytest.fixture
def fixture_store(fixture_dir: Path) -> a3s_nb.FileStore:
    return a3s_nb.FileStore(fixture_dir)


@pytest.fixture(autouse=True)
def _isolate_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's store or writes into the working directory."""
    monkeypatch.delenv("A3S_NB_STORE", raising=False)
    monkeypatch.delenv("A3S_NB_WATCH", raising=False)
    monkeypatch.chdir(tmp_path)


# ---- the real a3s-code SDK, driven by the scripted LLM server ------------------------------

SDK_MISSING = 'a3s-code is not installed: pip install "a3s-code==3.1.0"'


def require_sdk():
    """Import a3s_code. Missing: a test failure when ``CI`` is set, a loud skip otherwise."""
    try:
        import a3s_code
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail(f"{SDK_MISSING} (the SDK tests must run in CI)", pytrace=False)
        pytest.skip(f"{SDK_MISSING}; the SDK tests did NOT run")
    return a3s_code


@pytest.fixture
def a3s_code():
    """The real a3s-code SDK module (see :func:`require_sdk`). Mark such tests ``sdk``."""
    return require_sdk()


@pytest.fixture
def scripted_llm():
    """A running :class:`a3s_nb.testing.ScriptedLLM` with every ready-made scenario."""
    from a3s_nb.testing import ScriptedLLM, standard_script

    with ScriptedLLM(standard_script()) as llm:
        yield llm


@pytest.fixture
def sdk_agent(a3s_code, scripted_llm):
    """A real ``a3s_code.Agent`` whose model is ``scripted_llm``."""
    return a3s_code.Agent.create(scripted_llm.acl_config())


# ---- a real IPython shell ------------------------------------------------------------------


@pytest.fixture(scope="module")
def shell():
    """A real ``InteractiveShell`` (borrowed, not cleared, if another module made one)."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    existed = InteractiveShell.initialized()
    ip = InteractiveShell.instance(config=config)
    yield ip
    if not existed:
        InteractiveShell.clear_instance()


@pytest.fixture
def ip(shell):
    """The shell with a fresh namespace and a3s_nb loaded; unloaded again afterwards."""
    shell.reset(new_session=False)
    shell.config.pop("A3sNb", None)  # %config writes into the shell's shared config
    shell.run_line_magic("load_ext", "a3s_nb")
    yield shell
    shell.run_line_magic("unload_ext", "a3s_nb")
    shell.config.pop("A3sNb", None)
    shell.reset(new_session=False)
