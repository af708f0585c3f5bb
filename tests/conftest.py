"""Shared fixtures. Every test gets its own copy of any store it touches."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import a3s_nb

FIXTURES = Path(__file__).parent / "fixtures"
FIXTURE_STORE = FIXTURES / "a3s-code-3.1.0"


@pytest.fixture(scope="session")
def manifest() -> dict:
    """What each fixture session was scripted to contain (written beside the store)."""
    return json.loads((FIXTURES / "a3s-code-3.1.0.manifest.json").read_text())


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
    monkeypatch.chdir(tmp_path)
