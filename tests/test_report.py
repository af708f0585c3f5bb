"""The one-file session report: a3s_nb.report, %a3s_report and ``a3s-nb report``."""

from __future__ import annotations

import errno
import html
import os
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from IPython.core.error import UsageError

import a3s_nb
from a3s_nb import cli
from a3s_nb.errors import ReportError, SessionNotFoundError
from a3s_nb.exports import report as session_report
from a3s_nb.store.models import TextBlock, ToolArtifact, ToolResultBlock, ToolUseBlock

OSCAR = "fix-oscar-2-000"
LIMA = "explore-lima-2-001"  # has verification checks
KEY = "sk-proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"  # an OpenAI key, by its format


class Markup(HTMLParser):
    """Every tag and attribute of a page, and its text."""

    def __init__(self, page: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def attrs(self, name: str) -> list[str]:
        return [a[name] or "" for _, a in self.tags if name in a]

    def count(self, tag: str, cls: str | None = None) -> int:
        return sum(
            t == tag and (cls is None or cls in (a.get("class") or "").split())
            for t, a in self.tags
        )


def _assert_inert(page: str) -> Markup:
    """No script, no event handler, nothing fetched: only in-page links."""
    m = Markup(page)
    tags = {t for t, _ in m.tags}
    assert not tags & {"script", "img", "iframe", "object", "embed", "link", "form", "base"}
    for tag, attrs in m.tags:
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name, value)
            assert name not in ("src", "srcset", "xlink:href", "action", "formaction"), (tag, name)
            if name == "href":
                assert (value or "").startswith("#"), (tag, value)
    assert "url(" not in page and "@import" not in page
    return m


def _sizes(store: Path, sid: str) -> int:
    files = a3s_nb.FileStore(store).session_files(sid).values()
    return sum(p.stat().st_size for p in files if p.is_file())


# --------------------------------------------------------------------------- content


def test_report_shows_transcript_by_prompt_runs_tools_models_lineage_verification(
    fixture_store,
):
    bundle = fixture_store.load(OSCAR)
    page = a3s_nb.report(OSCAR, store=fixture_store)
    assert isinstance(page, str) and page.startswith("<!DOCTYPE html>")
    m = _assert_inert(page)
    text = "".join(m.text)
    for r in bundle.runs:  # every prompt, in its own section
        assert r.snapshot.prompt in text
    n_prompts = len(a3s_nb.lab.lineage.prompts(bundle))
    assert m.count("section", "a3s-prompt") == n_prompts == len(bundle.runs)
    calls = [
        b for msg in bundle.session.messages for b in msg.content if isinstance(b, ToolUseBlock)
    ]
    assert m.count("details", "a3s-tool-call") == len(calls)  # folded
    spans = a3s_nb.spans(bundle)
    assert m.count("g", "a3s-span") == len(spans)  # the waterfall
    assert m.count("tr", "a3s-run-row") == len(bundle.runs)
    for key in ("transcript", "timeline", "tools", "models", "lineage", "verification"):
        assert f'id="{key}"' in page
    # the tool table: one row per call, failures and durations shown
    tools = page[page.index('id="tools"') : page.index('id="models"')]
    failed = sum(
        bool(b.is_error)
        for msg in bundle.session.messages
        for b in msg.content
        if isinstance(b, ToolResultBlock)
    )
    assert f"{len(calls)} tool calls" in tools and f"{failed} failed" in tools
    assert tools.count("<tr>") == len(calls) + 1
    tool_spans = spans[spans["kind"] == "tool"]
    assert a3s_nb.render.fmt_duration(tool_spans["duration_ms"].iloc[0]) in tools
    # tokens per model: the fixture's model has no price, and says so
    models = page[page.index('id="models"') : page.index('id="lineage"')]
    assert "openai/fake-model-large" in models and "unpriced" in models
    assert f"{int(a3s_nb.runs(bundle)['total_tokens'].sum()):,}" in models
    assert "$0" not in models


def test_report_shows_the_verification_checks(fixture_store):
    page = a3s_nb.report(LIMA, store=fixture_store)
    checks = a3s_nb.verification(fixture_store.load(LIMA))
    assert len(checks) == 3
    part = page[page.index('id="verification"') :]
    for rec in checks.itertuples():
        assert html.escape(rec.check_id) in part and html.escape(rec.description) in part
    assert "3 skipped" in part and "0 passed" not in part


def test_cost_is_unpriced_never_zero():
    nan = pd.array([None, None], dtype="Float64")
    assert session_report._cost_text(pd.Series(nan)) == "unpriced"
    mixed = pd.Series(pd.array([0.0125, None], dtype="Float64"))
    assert session_report._cost_text(mixed) == "$0.0125 (+1 run unpriced)"
    assert session_report._cost_text(pd.Series(pd.array([0.5], dtype="Float64"))) == "$0.5000"


def test_priced_runs_show_their_cost(fixture_store, monkeypatch):
    from a3s_nb.exports import report as report_module

    real = report_module.all_frames

    def priced(*args, **kwargs):
        out = real(*args, **kwargs)
        out["runs"]["cost_usd"] = pd.array([0.01] * len(out["runs"]), dtype="Float64")
        return out

    monkeypatch.setattr(report_module, "all_frames", priced)
    page = a3s_nb.report(OSCAR, store=fixture_store)
    models = page[page.index('id="models"') : page.index('id="lineage"')]
    assert "$0.0500" in models and "unpriced" not in models.split("</table>")[0]


def test_lineage_names_the_parent_and_the_forks(fixture_store):
    a3s_nb.fork(OSCAR, at=2, new_id="oscar-fork", store=fixture_store)
    parent = a3s_nb.report(OSCAR, store=fixture_store)
    lineage = parent[parent.index('id="lineage"') : parent.index('id="verification"')]
    assert "not forked or replayed" in lineage
    assert "oscar-fork" in lineage and ">fork<" in lineage
    child = a3s_nb.report("oscar-fork", store=fixture_store)
    lineage = child[child.index('id="lineage"') : child.index('id="verification"')]
    assert f"a fork of <code>{OSCAR}</code>, after prompt 2 of 5" in lineage
    assert "No fork or replay of this session" in lineage


# --------------------------------------------------------------------------- escaping


EVIL = '<script>alert(1)</script><img src=x onerror="alert(2)">'
EVIL_ID = "<img src=x onerror=alert(3)>"  # no '/': a valid session id


def _evil_bundle(bundle):
    data = bundle.model_copy(deep=True)
    data.session.id = EVIL_ID
    data.session.model_name = "evil/" + EVIL
    data.session.config.workspace = EVIL
    data.session.messages[0].content = [TextBlock(text="prompt " + EVIL)]
    for msg in data.session.messages:
        for block in msg.content:
            if isinstance(block, ToolUseBlock):
                block.input = {"command": EVIL, EVIL: EVIL}
                block.name = "tool" + EVIL
            if isinstance(block, ToolResultBlock):
                block.content = "output " + EVIL
                block.is_error = True
    for r in data.runs:
        r.snapshot.session_id = EVIL_ID
        r.snapshot.prompt = "prompt " + EVIL
        r.snapshot.error = EVIL
    data.artifacts.artifacts.append(
        ToolArtifact(
            artifact_uri="a3s://x/" + EVIL,
            tool_name=EVIL,
            content=EVIL,
            artifact_id="art-" + EVIL,
            original_bytes=len(EVIL),
            shown_bytes=len(EVIL),
        )
    )
    return data


def test_session_content_is_data_not_markup(fixture_store, tmp_path):
    store = a3s_nb.FileStore(tmp_path / "evil")
    store.save(_evil_bundle(fixture_store.load(OSCAR)))
    page = a3s_nb.report(EVIL_ID, store=store)
    m = _assert_inert(page)
    text = "".join(m.text)
    assert "prompt " + EVIL in text and "output " + EVIL in text and EVIL_ID in text
    assert "evil/" + EVIL in text
    assert html.escape(EVIL) in page


def test_the_page_forbids_scripts_and_fetches(fixture_store):
    page = a3s_nb.report(OSCAR, store=fixture_store)
    m = Markup(page)
    csp = [a["content"] for t, a in m.tags if a.get("http-equiv") == "Content-Security-Policy"]
    assert csp == [session_report.CSP]
    assert "default-src 'none'" in csp[0] and "script-src" not in csp[0]


# --------------------------------------------------------------------------- secrets


@pytest.fixture
def secret_store(fixture_store, tmp_path):
    """A session saved with its secrets (as a save with allow_secrets leaves it)."""
    data = fixture_store.load(OSCAR).model_copy(deep=True)
    data.session.messages[0].content = [TextBlock(text=f"use the key {KEY} please")]
    for msg in data.session.messages:
        for block in msg.content:
            if isinstance(block, ToolResultBlock):
                block.content = f"OPENAI_API_KEY={KEY}"
                break
    store = a3s_nb.FileStore(tmp_path / "secret")
    store.save(data)
    assert KEY in (store.path / f"{OSCAR}.json").read_text()
    return store


def test_secrets_on_disk_are_redacted_unless_allowed_again(secret_store, tmp_path):
    page = a3s_nb.report(OSCAR, store=secret_store)
    assert KEY not in page and "[REDACTED:openai-key]" in page
    assert "shown as [REDACTED:kind]" in page
    result = a3s_nb.report(OSCAR, tmp_path / "r.html", store=secret_store)
    assert result.redacted >= 2 and "secrets redacted" in str(result)
    assert KEY not in (tmp_path / "r.html").read_text()

    allowed = a3s_nb.report(OSCAR, store=secret_store, allow_secrets=True)
    assert KEY in allowed and "do not share it" in allowed


def test_magic_and_cli_redact_unless_allow_secrets(secret_store, ip, tmp_path, capsys):
    ip.run_line_magic("a3s_report", f"{OSCAR} -o m.html --store {secret_store.path}")
    assert KEY not in Path("m.html").read_text()
    ip.run_line_magic(
        "a3s_report", f"{OSCAR} -o m2.html --store {secret_store.path} --allow-secrets"
    )
    assert KEY in Path("m2.html").read_text()
    assert cli.main(["report", OSCAR, "-o", "c.html", "--store", str(secret_store.path)]) == 0
    assert KEY not in Path("c.html").read_text()
    argv = ["report", OSCAR, "-o", "c2.html", "--store", str(secret_store.path), "--allow-secrets"]
    assert cli.main(argv) == 0
    assert KEY in Path("c2.html").read_text()


# --------------------------------------------------------------------------- size


def test_report_is_at_most_twice_the_sessions_json(fixture_dir, tmp_path):
    store = a3s_nb.FileStore(fixture_dir)
    ids = store.list()
    assert len(ids) == 8
    for sid in ids:
        result = a3s_nb.report(sid, tmp_path / f"{sid}.html", store=store)
        assert result.bytes == (tmp_path / f"{sid}.html").stat().st_size
        assert result.bytes <= 2 * _sizes(fixture_dir, sid), (sid, result.bytes)


# --------------------------------------------------------------------------- writing


def test_writes_atomically_and_replaces_an_old_report(fixture_store, tmp_path):
    out = tmp_path / "out.html"
    out.write_text("old")
    result = a3s_nb.report(OSCAR, out, store=fixture_store)
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert str(result) == f"report of session {OSCAR} -> {out} ({result.bytes:,} bytes)"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("out")) == ["out.html"]


def test_a_failed_write_leaves_the_old_file_and_no_partial_one(
    fixture_store, tmp_path, monkeypatch
):
    from a3s_nb.store import _fsio

    out = tmp_path / "out" / "out.html"
    out.parent.mkdir()
    out.write_text("old")

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_fsio, "write", full)
    with pytest.raises(ReportError, match=r"cannot write the report to .*out\.html: No space"):
        a3s_nb.report(OSCAR, out, store=fixture_store)
    assert out.read_text() == "old"
    assert [p.name for p in out.parent.iterdir()] == ["out.html"]


def test_missing_id_says_did_you_mean(fixture_store, tmp_path):
    with pytest.raises(SessionNotFoundError, match="did you mean 'fix-oscar-2-000'"):
        a3s_nb.report("fix-oscr", tmp_path / "x.html", store=fixture_store)
    assert not (tmp_path / "x.html").exists()


def test_a_directory_is_not_an_output_file(fixture_store, tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(ReportError, match=r"d: it is a directory; .*fix-oscar-2-000\.html"):
        a3s_nb.report(OSCAR, tmp_path / "d", store=fixture_store)
    assert list((tmp_path / "d").iterdir()) == []


def test_an_output_with_nowhere_to_go_is_refused(fixture_store, tmp_path):
    with pytest.raises(ReportError, match=r"directory .*nope does not exist"):
        a3s_nb.report(OSCAR, tmp_path / "nope" / "x.html", store=fixture_store)
    assert not (tmp_path / "nope").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ReportError, match="file is not a directory"):
        a3s_nb.report(OSCAR, tmp_path / "file" / "x.html", store=fixture_store)


def test_an_unwritable_place_is_a_clear_error(fixture_store, tmp_path, monkeypatch):
    out = tmp_path / "ro" / "x.html"
    out.parent.mkdir()
    if os.geteuid() != 0:  # permissions bind: a real read-only directory
        out.parent.chmod(0o555)
    else:  # root writes anywhere: the OS says no as it would to anyone else
        from a3s_nb.store import _fsio

        def denied(*args, **kwargs):
            raise PermissionError(errno.EACCES, "Permission denied")

        monkeypatch.setattr(_fsio, "open", denied)
    try:
        with pytest.raises(ReportError, match=r"ro/x\.html: Permission denied \(choose a place"):
            a3s_nb.report(OSCAR, out, store=fixture_store)
    finally:
        out.parent.chmod(0o755)
    assert list(out.parent.iterdir()) == []


# --------------------------------------------------------------------------- faces


def test_magic_writes_id_html_by_default_and_prints_where(fixture_dir, ip, capsys):
    ip.run_line_magic("a3s_report", f"fix-osc --store {fixture_dir}")
    out = capsys.readouterr().out
    assert out.startswith(f"report of session {OSCAR} -> {OSCAR}.html (")
    assert Path(f"{OSCAR}.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("fix-oscr", "did you mean 'fix-oscar-2-000'"),
        (f"{OSCAR} -o .", "it is a directory"),
        (f"{OSCAR} -o nope/x.html", "does not exist"),
        ("", "arguments are required"),
    ],
)
def test_magic_raises_usage_errors(fixture_dir, ip, args, message):
    with pytest.raises(UsageError, match=message):
        ip.run_line_magic("a3s_report", f"{args} --store {fixture_dir}")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["fix-oscr"], "did you mean 'fix-oscar-2-000'"),
        ([OSCAR, "-o", "."], "it is a directory"),
        ([OSCAR, "-o", "nope/x.html"], "does not exist"),
    ],
)
def test_cli_exits_2_with_one_line(fixture_dir, capsys, args, message):
    assert cli.main(["report", *args, "--store", str(fixture_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("a3s-nb: ") and message in err and err.count("\n") == 1
    assert not Path(f"{OSCAR}.html").exists()


def test_cli_writes_the_report(fixture_dir, capsys):
    assert cli.main(["report", "fix-osc", "-o", "r.html", "--store", str(fixture_dir)]) == 0
    assert capsys.readouterr().out.startswith(f"report of session {OSCAR} -> r.html (")
    assert Path("r.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_report_is_lazy_and_not_shadowed_by_its_module():
    import subprocess
    import sys

    code = (
        "import sys, a3s_nb\n"
        "assert 'a3s_nb.exports.report' not in sys.modules and 'pandas' not in sys.modules\n"
        "import a3s_nb.exports.report, a3s_nb.notebook.magics\n"
        "assert a3s_nb.report is a3s_nb.exports.report.report\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_failed_run_shows_in_its_prompt_with_its_error(fixture_store):
    sid = "fix-india-2-004"
    bundle = fixture_store.load(sid)
    failed = [r for r in bundle.runs if r.snapshot.status == "failed"]
    assert len(failed) == 1
    n = next(p.number for p in a3s_nb.lab.lineage.prompts(bundle) if p.run is failed[0])
    page = a3s_nb.report(sid, store=fixture_store)
    start = page.index(f'id="prompt-{n}"')
    section = page[start : page.index("</section>", start)]
    assert html.escape(failed[0].snapshot.prompt) in section
    assert html.escape(failed[0].snapshot.error) in section
    assert "failed run (not in history)" in section
