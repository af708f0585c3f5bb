"""The widgets in a real JupyterLab, driven by headless Chromium through Playwright.

The test starts ``jupyter lab`` on 127.0.0.1 (random port, token, private config, data,
runtime and settings directories, a temporary root), writes a notebook that shows the three
widgets on a copy of the SDK-written fixture store, runs all its cells through the Run menu,
and checks the page's DOM: the browser lists the store's sessions, clicking one shows its
transcript, and the timeline drew one bar per span of ``a3s_nb.spans()``. Screenshots go to
``test-artifacts/`` (git-ignored); the README's pictures are copied from there by hand.

Chromium is Debian's (``apt-get install chromium``, what ``make browser`` does); Playwright
never downloads a browser here. Missing either fails the test when ``CI`` is set and skips
it loudly otherwise.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import a3s_nb
from a3s_nb import frames

from .conftest import FIXTURE_STORE

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path(os.environ.get("A3S_NB_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
SESSION = "fix-oscar-2-000"
PLANNED = "explore-lima-2-001"  # has a planning run: run > planning / steps > turns > tools
FIRST_PROMPT = "Create docs/echo_0_1.md with a short heading and then show me its contents."
CALC_REPLAY = "calc-replay-1"  # the calculator story replayed on the careful model
STARTUP_TIMEOUT = 60  # seconds for the server to answer /api/status
UI_TIMEOUT_MS = 45_000  # per wait in the page (a cold kernel start included)


def _missing(what: str, fix: str) -> None:
    message = f"{what} is missing, so the browser test cannot run; install it with: {fix}"
    if os.environ.get("CI"):
        pytest.fail(message + " (the browser test must run in CI)", pytrace=False)
    pytest.skip(message + "; the browser test did NOT run")


@pytest.fixture(scope="module")
def playwright_api():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Python playwright", "pip install -e '.[test]'")
    if not CHROMIUM.exists():
        _missing(f"Chromium ({CHROMIUM})", "make browser  (apt-get install -y chromium)")
    with sync_playwright() as p:
        yield p


# --------------------------------------------------------------------------- the notebook


def _cell(source: str) -> dict:
    return {
        "cell_type": "code",
        "execution_count": None,
        "metadata": {},
        "outputs": [],
        "source": source.strip().splitlines(keepends=True),
    }


def demo_notebook(run_id: str) -> dict:
    """The notebook the test opens: the three widgets on ./store (``run_id``: a run of
    PLANNED)."""
    cells = [
        _cell(
            """
%load_ext a3s_nb
from a3s_nb.widgets import RunTimeline, SessionBrowser, Transcript
STORE = "store"
"""
        ),
        _cell("browser = SessionBrowser(STORE)\nbrowser"),
        _cell(f'Transcript("{SESSION}", store=STORE)'),
        _cell(f'RunTimeline("{PLANNED}", store=STORE, run_id="{run_id}")'),
        _cell(
            f'from a3s_nb.widgets import DiffView\nDiffView("calc", "{CALC_REPLAY}", store="calc")'
        ),
    ]
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def _calculator_store(store: Path, ws: Path) -> None:
    """The calculator story (a3s_nb.testing) by the real SDK: on the quick model, then
    replayed on the careful one, for the diff widget."""
    from a3s_nb import testing
    from a3s_nb.lab import lineage
    from a3s_nb.sdk import live

    from .conftest import require_sdk

    a3s_code = require_sdk()
    ws.mkdir()
    with testing.ScriptedLLM(testing.calculator_script(), models=("quick", "careful")) as llm:
        agent = a3s_code.Agent.create(llm.acl_config("quick"))
        session = live.open_session(agent, ws, store_dir=store, session_id="calc")
        for prompt in testing.CALC_PROMPTS:
            session.send(prompt)
        lineage.record_checks(session, [testing.CALC_CHECK])
        a3s_nb.save(session, store=store)
        session.close()
        result = a3s_nb.replay(
            "calc", agent, model="openai/careful", store=store, verify=[testing.CALC_CHECK]
        )
        result.session.close()
    assert result.session_id == CALC_REPLAY
    assert len(lineage.prompts(CALC_REPLAY, store=store)) == 3


# --------------------------------------------------------------------------- the server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(url: str, token: str, method: str, path: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(
        url + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


def _wait_for_status(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    raise RuntimeError(
        f"jupyter lab did not answer {url} in {STARTUP_TIMEOUT} s:\n{log.read_text()}"
    )


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, playwright_api) -> Iterator[dict]:
    """A private JupyterLab on 127.0.0.1 serving a root with the notebook and a store."""
    base = tmp_path_factory.mktemp("lab")
    root = base / "root"
    root.mkdir()
    shutil.copytree(FIXTURE_STORE, root / "store")
    planned = frames.spans(root / "store", ids=PLANNED, progress=False)
    _calculator_store(root / "calc", base / "calc_ws")
    run_id = planned.loc[planned["kind"] == "planning", "run_id"].iloc[0]
    (root / "widgets_demo.ipynb").write_text(json.dumps(demo_notebook(run_id), indent=1))

    settings = base / "settings"
    # no "fetch Jupyter news?" toast over the page
    (settings / "@jupyterlab" / "apputils-extension").mkdir(parents=True)
    (
        settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    ).write_text(json.dumps({"fetchNews": "false"}))
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(base / "config"),
        "JUPYTER_DATA_DIR": str(base / "data"),
        "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"),
        "IPYTHONDIR": str(base / "ipython"),
        "A3S_NB_STORE": str(root / "store"),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("JUPYTER_PATH", None)
    port = _free_port()
    token = secrets.token_hex(16)
    log = base / "lab.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyter",
                "lab",
                "--no-browser",
                "--ip=127.0.0.1",
                f"--port={port}",
                "--port-retries=0",
                f"--IdentityProvider.token={token}",
                f"--ServerApp.root_dir={root}",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                "--LabApp.news_url=",
                "--LabApp.extension_manager=readonly",
                *(["--allow-root"] if os.geteuid() == 0 else []),  # CI containers run as root
            ],
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_for_status(f"{url}/api/status?token={token}", proc, log)
        # Start the notebook's kernel now (JupyterLab then attaches to it without asking).
        _api(
            url,
            token,
            "POST",
            "/api/sessions",
            {
                "path": "widgets_demo.ipynb",
                "type": "notebook",
                "name": "widgets_demo.ipynb",
                "kernel": {"name": "python3"},
            },
        )
        yield {"url": url, "token": token, "root": root, "run_id": run_id, "log": log}
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


# --------------------------------------------------------------------------- the test


def test_widgets_in_jupyterlab(lab: dict, playwright_api) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=UI_TIMEOUT_MS)
    ARTIFACTS.mkdir(exist_ok=True)
    spans = frames.spans(lab["root"] / "store", ids=SESSION, progress=False)
    planned = frames.spans(lab["root"] / "store", ids=PLANNED, progress=False)
    run_spans = int((planned["run_id"] == lab["run_id"]).sum())
    n_sessions = len(a3s_nb.open_store(lab["root"] / "store").list())
    assert n_sessions == 8 and run_spans > 3

    browser = playwright_api.chromium.launch(
        executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=30_000
    )
    errors: list[str] = []
    try:
        # tall enough that each widget fits on screen for its screenshot
        page = browser.new_page(viewport={"width": 1500, "height": 2200})
        page.set_default_timeout(UI_TIMEOUT_MS)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{lab['url']}/lab/tree/widgets_demo.ipynb?token={lab['token']}")

        # the notebook is open and attached to its (already started) kernel, and idle
        page.locator(".jp-Notebook .jp-Cell").first.wait_for()
        select_kernel = page.locator(".jp-Dialog button", has_text="Select")
        with contextlib.suppress(Exception):  # only if Lab asks anyway
            select_kernel.click(timeout=3000)
        expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(1)
        # Run > Run All Cells
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()

        # --- the browser lists every session of the store
        widget = page.locator(".a3s-browser").first
        rows = widget.locator(".a3s-row")
        expect(rows).to_have_count(n_sessions)
        expect(widget.locator(".a3s-page-label")).to_contain_text(f"1\u2013{n_sessions} of")

        # --- selecting one (a click on its row) shows its transcript
        widget.locator(".a3s-row button", has_text=SESSION).click()
        expect(widget.locator(".a3s-row.a3s-selected")).to_have_count(1)
        transcript = widget.locator(".a3s-transcript")
        expect(transcript).to_contain_text(FIRST_PROMPT)
        expect(transcript.locator(".a3s-tool-result.a3s-error").first).to_be_attached()
        widget.scroll_into_view_if_needed()
        widget.screenshot(path=str(ARTIFACTS / "session_browser.png"))

        # the "Runs & timeline" tab draws the whole session's spans
        widget.locator(".lm-TabBar-tabLabel", has_text="Runs & timeline").click()
        session_svg = widget.locator(".a3s-timeline-widget svg.a3s-timeline-svg")
        expect(session_svg.locator("g.a3s-span")).to_have_count(min(len(spans), 400))
        expect(widget.locator(".a3s-run-row")).to_have_count(
            int(spans.loc[spans["kind"] == "run", "run_id"].nunique())
        )
        widget.screenshot(path=str(ARTIFACTS / "session_browser_timeline.png"))

        # --- the standalone transcript
        standalone = page.locator(".a3s-transcript-widget").last
        expect(standalone.locator(".a3s-msg.a3s-user").first).to_contain_text(FIRST_PROMPT)
        standalone.locator("details.a3s-tool-call summary").first.click()  # unfold an input
        failed = standalone.locator("details.a3s-tool-result.a3s-error").first
        failed.locator("summary").click()  # and a failed result
        expect(failed.locator("pre")).to_contain_text("error: check failed")
        standalone.scroll_into_view_if_needed()
        standalone.screenshot(path=str(ARTIFACTS / "transcript.png"))

        # --- the run timeline drew one bar per span of that run
        timeline = page.locator(".a3s-timeline-widget").last
        bars = timeline.locator("svg.a3s-timeline-svg g.a3s-span")
        expect(bars).to_have_count(run_spans)
        expect(timeline.locator("svg g.a3s-span[data-kind='run'] rect")).to_have_count(1)
        expect(timeline.locator("svg g.a3s-span[data-kind='step']")).to_have_count(
            int((planned[planned["run_id"] == lab["run_id"]]["kind"] == "step").sum())
        )
        timeline.scroll_into_view_if_needed()
        timeline.screenshot(path=str(ARTIFACTS / "run_timeline.png"))

        # --- the diff: the two shared prompts folded away, the third side by side
        diff = page.locator(".a3s-diff-widget").last
        expect(diff.locator(".a3s-diff-shared.a3s-collapsed")).to_contain_text("2 shared prompts")
        prompts = diff.locator(".a3s-diff-row.a3s-diff-prompt")
        expect(prompts).to_have_count(1)
        expect(prompts.first).to_have_attribute("data-change", "changed")
        third = diff.locator(".a3s-diff-row.a3s-diff-tool")
        expect(third).to_have_count(3)
        expect(diff.locator(".a3s-diff-tool[data-change='only_b']")).to_have_count(1)
        expect(diff.locator(".a3s-diff-tool[data-change='changed'] .a3s-diff-a")).to_contain_text(
            ["write", "bash"]
        )
        diff.scroll_into_view_if_needed()
        diff.screenshot(path=str(ARTIFACTS / "diff.png"))
        # a click on "Show 2 shared prompts" unfolds them, another folds them again
        button = diff.locator("button.a3s-diff-shared-button")
        expect(button).to_have_text("Show 2 shared prompts")
        button.click()
        expect(prompts).to_have_count(3)
        expect(button).to_have_text("Hide 2 shared prompts")
        # "Changes only" hides the rows that are the same
        diff.locator("button.a3s-diff-changes-toggle").click()
        expect(diff.locator(".a3s-diff-row[data-change='same']")).to_have_count(0)
        expect(prompts).to_have_count(1)
        diff.screenshot(path=str(ARTIFACTS / "diff_changes_only.png"))
    except Exception:
        with contextlib.suppress(Exception):
            page.screenshot(path=str(ARTIFACTS / "failure.png"), full_page=True)
        raise
    finally:
        browser.close()
    assert not errors, f"errors in the page: {errors}"
