"""The tutorial notebooks as committed, and the nbval wiring that runs them.

nbval itself runs every notebook in the default pytest run (see ``[tool.pytest.ini_options]``
in pyproject.toml); these tests check what nbval takes for granted: that the saved outputs
come from one clean top-to-bottom run, that they say nothing about the machine that made
them, that the sanitizers blank only what varies, and that a changed output does fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]-*.ipynb"))
SANITIZE = REPO / "notebooks" / "sanitize.cfg"


def sanitize(text: str) -> str:
    """What nbval does with ``--nbval-sanitize-with notebooks/sanitize.cfg``."""
    pairs = re.findall(r"^regex: (.*)$\n^replace: (.*)$", SANITIZE.read_text(), flags=re.M)
    for regex, replace in pairs:
        text = re.sub(regex, replace, text)
    return text


def outputs_text(nb: nbformat.NotebookNode) -> str:
    return json.dumps([cell.get("outputs", []) for cell in nb.cells], ensure_ascii=False)


def test_the_five_tutorials_are_there():
    assert [p.name for p in NOTEBOOKS] == [
        "01-quickstart.ipynb",
        "02-trace-analysis.ipynb",
        "03-browse-and-resume.ipynb",
        "04-beyond-one-notebook.ipynb",
        "05-fork-diff-replay.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_saved_outputs_come_from_one_clean_run(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), (
        f"{path.name}: not executed top to bottom in one kernel: run `make notebooks`"
    )
    for cell in code:
        tags = cell.metadata.get("tags", [])
        errors = [o for o in cell.outputs if o.output_type == "error"]
        stderr = [o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stderr"]
        if "raises-exception" in tags:
            assert errors or any("Error" in t for t in stderr), f"{path.name}: {cell.source}"
        else:
            assert not errors, f"{path.name}: a cell failed:\n{cell.source}"
            assert not stderr, f"{path.name}: stderr output (warnings?) in:\n{cell.source}"
    assert nb.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_outputs_say_nothing_about_the_machine(path):
    text = outputs_text(nbformat.read(path, as_version=4))
    for where in {str(REPO), sys.prefix, sys.base_prefix, os.path.expanduser("~")} - {"/", ""}:
        assert where not in text, f"{path.name} outputs contain {where}: run `make notebooks`"


def test_sanitizers_blank_what_varies_and_keep_what_teaches():
    line = (
        "saved session quickstart in /tmp/a3s_nb_tutorial_n_4ulz7a/sessions: "
        "14 messages, 3 runs, 4 tool calls"
    )
    assert sanitize(line) == (
        "saved session quickstart in <TUTORIAL_DIR>/sessions: 14 messages, 3 runs, 4 tool calls"
    )
    mac = "/private/var/folders/x1/abc_d/T/a3s_nb_tutorial_q9_z/project/notes.txt"
    assert sanitize(mac) == "<TUTORIAL_DIR>/project/notes.txt"
    assert sanitize('base_url = "http://127.0.0.1:39243"') == 'base_url = "http://127.0.0.1:<PORT>"'
    assert sanitize("run-a8e93c53-104d-409d-88ec-5b6663c98c14") == "run-<UUID>"
    assert sanitize("2026-11-24 02:59:10.129+00:00 | 2026-11-24 03:07") == "<TIME> | <TIME>"
    assert sanitize("took 935 ms, then 1.5s") == "took <DURATION>, then <DURATION>"
    kept = "notes.txt has 1 line. 12 tests passed; 2 steps, 30 times, exit code 3"
    assert sanitize(kept) == kept
    # content-addressed artifact ids are the same on every run, and stay checked
    assert sanitize("a3s://tool-output/bash/821c5af2e60b1ef2") == (
        "a3s://tool-output/bash/821c5af2e60b1ef2"
    )


def test_the_default_pytest_run_collects_every_notebook():
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for path in NOTEBOOKS:
        assert f"notebooks/{path.name}::Cell 0" in proc.stdout, f"nbval does not run {path.name}"


@pytest.mark.slow
def test_nbval_fails_when_a_checked_output_changes(tmp_path):
    """The check is real: one count changed in the saved quickstart makes nbval fail."""
    nb_dir = tmp_path / "notebooks"
    nb_dir.mkdir()
    shutil.copy(SANITIZE, nb_dir / "sanitize.cfg")
    original = (REPO / "notebooks" / "01-quickstart.ipynb").read_text()
    assert original.count("14 messages") >= 1
    (nb_dir / "01-quickstart.ipynb").write_text(original.replace("14 messages", "13 messages"))
    env = {k: v for k, v in os.environ.items() if k != "A3S_NB_STORE"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            "-c",
            os.devnull,
            "--nbval",
            "--nbval-current-env",
            "--nbval-sanitize-with",
            str(nb_dir / "sanitize.cfg"),
            str(nb_dir),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "13 messages" in out and "14 messages" in out, out
    assert re.search(r"\b\d+ failed, \d+ passed\b", out), out
