"""Binder works: an environment built from ``binder/`` alone runs every tutorial notebook.

When a repository has a ``binder/`` folder, repo2docker (what mybinder.org runs) reads only
the configuration files in it. For the files this repository has, it does this:

- ``runtime.txt`` ``python-3.11``: a fresh Python 3.11 environment, which becomes the
  notebook kernel's;
- ``requirements.txt``: ``pip install --no-cache-dir -r binder/requirements.txt`` in that
  environment, run from the repository root after the whole repository is copied in (the
  file refers to the repository itself, so it cannot be installed earlier);
- ``postBuild`` (if there is one): ``./binder/postBuild``, from the repository root.

This test does the same without Docker: it copies the repository (the files git knows,
nothing ignored such as ``.venv``) to a temporary folder, makes a new virtual environment
with the Python 3.11 that ``runtime.txt`` names, runs exactly those commands in it, then adds
the test tools (pytest and nbval only, checked to bring nothing the notebooks could use) and
runs the notebooks under nbval, as ``make test`` does. The single liberty taken: pip's
download cache is used (no ``--no-cache-dir``), which changes how long the install takes,
not what it installs.

It cannot be skipped in CI: without Python 3.11 it fails there; elsewhere it skips loudly.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
BINDER = REPO / "binder"

#: The repo2docker files this test knows how to reproduce. Any other file in binder/ would
#: change what Binder builds (apt.txt, environment.yml, start, ...) and must be mirrored here.
MIRRORED = {"runtime.txt", "requirements.txt", "postBuild"}

#: What the test adds on top of what Binder installs, and everything that may come with it.
HARNESS = ["pytest", "nbval"]
HARNESS_CLOSURE = {"pytest", "nbval", "iniconfig", "pluggy", "coverage"}

PIP_TIMEOUT = 900  # seconds; a cold pip cache downloads JupyterLab, pandas, pyarrow, ...
NBVAL_TIMEOUT = 900


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (the Binder test must run in CI)", pytrace=False)
    pytest.skip(f"{reason}; the Binder test did NOT run")


def _runtime_python() -> str:
    """The interpreter ``binder/runtime.txt`` asks for."""
    runtime = (BINDER / "runtime.txt").read_text().strip()
    m = re.fullmatch(r"python-(\d+)\.(\d+)", runtime)
    assert m, f"binder/runtime.txt should read python-X.Y, not {runtime!r}"
    version = tuple(map(int, m.groups()))
    if sys.version_info[:2] == version:
        return sys.executable
    found = shutil.which(f"python{version[0]}.{version[1]}")
    if found is None:
        _unavailable(f"binder/runtime.txt asks for Python {'.'.join(map(str, version))}, not found")
    return found


def _copy_repository(dest: Path) -> Path:
    """What Binder clones: the files git tracks (and new, not ignored ones), nothing else."""
    try:
        listing = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
    except FileNotFoundError:
        _unavailable("git is not installed: cannot tell which files Binder would get")
    if listing.returncode != 0:
        _unavailable(f"cannot list the repository's files with git: {listing.stderr.strip()}")
    for name in filter(None, listing.stdout.split("\0")):
        src = REPO / name
        if src.is_file():  # deleted but not yet committed files are listed too
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    return dest


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str], timeout: float) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}:\n{output[-6000:]}"
    return output


def _freeze(python: Path, cwd: Path, env: dict[str, str]) -> dict[str, str]:
    out = _run([str(python), "-m", "pip", "list", "--format=freeze"], cwd=cwd, env=env, timeout=120)
    pairs = (line.split("==", 1) for line in out.splitlines() if "==" in line)
    return {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in pairs}


def test_binder_folder_holds_only_what_this_test_mirrors():
    files = {p.name for p in BINDER.iterdir()}
    assert files <= MIRRORED, f"binder/ has files this test does not reproduce: {files - MIRRORED}"
    assert {"runtime.txt", "requirements.txt"} <= files


def test_notebooks_run_in_an_environment_built_from_binder_alone(tmp_path):
    python = _runtime_python()
    repo = _copy_repository(tmp_path / "repo")
    venv = tmp_path / "venv"
    bin_dir = venv / "bin"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "A3S_NB_STORE"}
    }
    env.update(VIRTUAL_ENV=str(venv), PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}")
    timings = {}

    # --- what repo2docker does with binder/ ---------------------------------------------
    start = time.monotonic()
    _run([python, "-m", "venv", str(venv)], cwd=repo, env=env, timeout=300)
    pip = [str(bin_dir / "python"), "-m", "pip"]
    if (repo / "binder" / "requirements.txt").exists():
        _run(
            [*pip, "install", "-r", "binder/requirements.txt"],
            cwd=repo,
            env=env,
            timeout=PIP_TIMEOUT,
        )
    post_build = repo / "binder" / "postBuild"
    if post_build.exists():
        post_build.chmod(0o755)
        _run(["./binder/postBuild"], cwd=repo, env=env, timeout=PIP_TIMEOUT)
    timings["build"] = time.monotonic() - start

    _run([*pip, "check"], cwd=repo, env=env, timeout=120)
    where = _run(
        [str(bin_dir / "python"), "-c", "import a3s_nb, a3s_code; print(a3s_nb.__file__)"],
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert Path(where.strip().splitlines()[-1]).is_relative_to(repo), (
        f"a3s_nb is not installed from the repository Binder builds: {where}"
    )

    # --- the test tools, and proof that they bring nothing else --------------------------
    before = _freeze(bin_dir / "python", repo, env)
    _run([*pip, "install", *HARNESS], cwd=repo, env=env, timeout=PIP_TIMEOUT)
    after = _freeze(bin_dir / "python", repo, env)
    added = set(after) - set(before)
    changed = {n: (before[n], after[n]) for n in before if after.get(n) != before[n]}
    assert added <= HARNESS_CLOSURE and not changed, (
        f"installing {HARNESS} changed the Binder environment: added {sorted(added)}, "
        f"changed {changed}; the notebooks might rely on something Binder does not install"
    )

    # --- the notebooks, under nbval ------------------------------------------------------
    start = time.monotonic()
    out = _run(
        [
            str(bin_dir / "python"),
            "-m",
            "pytest",
            "--nbval",
            "notebooks/",
            "--nbval-sanitize-with",
            "notebooks/sanitize.cfg",
            "-p",
            "no:cacheprovider",
        ],
        cwd=repo,
        env=env,
        timeout=NBVAL_TIMEOUT,
    )
    timings["nbval"] = time.monotonic() - start
    notebooks = sorted(p.name for p in (repo / "notebooks").glob("[0-9][0-9]-*.ipynb"))
    assert notebooks, "no tutorial notebooks found"
    for name in notebooks:
        assert f"notebooks/{name}" in out, f"nbval did not run {name}:\n{out[-3000:]}"
    summary = out.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary) and not re.search(r"failed|error", summary), out
    print(f"binder build {timings['build']:.0f} s, nbval {timings['nbval']:.0f} s: {summary}")
