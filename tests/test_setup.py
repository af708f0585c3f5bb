"""The README's two commands: ``make lab`` installs what a notebook user needs, ``make test``
adds the test tools on top; both from nothing. Binder installs what ``make lab`` does.

The Makefile is read through ``make -n`` (what make would run, nothing run) in a copy of
the repository's setup files without a ``.venv``, i.e. on a fresh machine.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]

#: What only the test suite uses: the engines and servers the exports are proven against,
#: the browser driver, the test runner and the linter.
TEST_TOOLS = {"pytest", "hypothesis", "nbval", "playwright", "ruff", "moto", "boto3", "pyspark"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower()


def _dry_run(tmp_path: Path, target: str) -> list[str]:
    if shutil.which("make") is None:
        pytest.fail("make is not installed: the README's two commands need it", pytrace=False)
    for name in ("Makefile", "pyproject.toml", "constraints.txt", "tests/backends"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, tmp_path / name)
    out = subprocess.run(
        ["make", "-n", target], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    return out.stdout.splitlines()


def _installed_extras(lines: list[str]) -> list[set[str]]:
    """The extras of a3s_nb each ``pip install`` line installs, in order."""
    found = []
    for line in lines:
        if " pip install " in line and "-e " in line:
            m = re.search(r"-e '?\.\[([^\]]*)\]", line)
            assert m, f"a3s_nb installed without extras? {line}"
            found.append(set(m.group(1).split(",")))
    return found


def test_lab_installs_no_test_tools(tmp_path):
    installs = _installed_extras(_dry_run(tmp_path, "lab"))
    assert installs, "make lab installs nothing"
    assert all("test" not in extras for extras in installs), installs
    assert installs == [{"all", "export"}]


def test_test_adds_the_test_tools_to_the_lab_install(tmp_path):
    lines = _dry_run(tmp_path, "test")
    installs = _installed_extras(lines)
    assert installs[0] == {"all", "export"}, "make test starts from make lab's install"
    assert "test" in installs[-1]
    assert any(re.search(r"-m pytest\b", line) for line in lines)


def test_the_test_tools_are_only_in_the_test_extra():
    for extra in ("all", "export"):
        assert not {_name(r) for r in EXTRAS[extra]} & TEST_TOOLS, extra
    assert {_name(r) for r in EXTRAS["test"]} >= TEST_TOOLS


def test_binder_installs_what_make_lab_installs(tmp_path):
    lines = (ROOT / "binder" / "requirements.txt").read_text().splitlines()
    editable = [line for line in lines if line.startswith("-e ")]
    assert _installed_extras([f" pip install {line}" for line in editable]) == [{"all", "export"}]
    assert "a3s-code==3.1.0" in lines
