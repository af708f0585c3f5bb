"""The ``a3s-nb`` commands report a corrupt session in their own words on stderr, once,
without Python's raw warning text (a ``CorruptSessionWarning`` with its source line)."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from a3s_nb.cli import main

BAD = "fix-india-2-004"

COMMANDS = {
    "list": ["list"],
    "export-frame": ["export", "runs", "{tmp}/runs.csv"],
    "export-otel": ["export", "otel", "{tmp}/spans.jsonl"],
    "export-dataset": ["export", "dataset", "{tmp}/dataset"],
}


@pytest.fixture
def broken(fixture_dir: Path) -> Path:
    (fixture_dir / "runs" / f"{BAD}.json").write_text("{ not json")
    return fixture_dir


def _argv(store: Path, tmp: Path, name: str) -> list[str]:
    return ["--store", str(store), *(a.format(tmp=tmp) for a in COMMANDS[name])]


def _assert_own_words(err: str) -> None:
    lines = [line for line in err.splitlines() if BAD in line]
    assert len(lines) == 1, err  # once
    assert "Warning" not in err and "sys.exit" not in err and "cli.py" not in err, err
    assert f"{BAD}.json" in lines[0] and "not valid JSON" in lines[0]


@pytest.mark.parametrize("name", list(COMMANDS))
def test_main_reports_a_corrupt_session_without_a_warning(broken, tmp_path, capsys, name):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(_argv(broken, tmp_path, name))
    assert code == 1  # some session is broken
    assert [str(w.message) for w in caught] == []
    _assert_own_words(capsys.readouterr().err)


def _console_script() -> Path:
    script = Path(sys.executable).with_name("a3s-nb")
    assert script.is_file(), f"the a3s-nb console script is not installed beside {sys.executable}"
    return script


@pytest.mark.parametrize("how", ["module", "console-script"])
@pytest.mark.parametrize("name", ["export-frame", "export-otel"])
def test_the_command_line_prints_no_raw_warning(broken, tmp_path, how, name):
    run = [sys.executable, "-m", "a3s_nb.cli"] if how == "module" else [str(_console_script())]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    proc = subprocess.run(
        [*run, *_argv(broken, tmp_path, name)], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 1, proc.stderr
    _assert_own_words(proc.stderr)
