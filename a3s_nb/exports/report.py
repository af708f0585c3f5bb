"""One saved session as one self-contained HTML page, to share with someone who has no kernel.

:func:`report` writes (or returns) a page that opens from disk in any browser and needs
nothing else: no script, no style sheet, font or image from anywhere (the CSS is inline,
folding is ``<details>``, the timeline an inline SVG), and a Content-Security-Policy that
forbids any fetch and any script, should something ever get past the escaping. It shows,
for a reader who has never heard of a3s_nb:

* a summary: model, workspace, times, prompts, runs, tool calls, tokens, cost;
* the transcript, prompt by prompt, tool calls folded with their arguments and output;
* the runs and their span waterfall (the same HTML the widgets show, from ``render``);
* every tool call with its duration and whether it failed;
* tokens and cost per model (a model without a price says so; it is never 0);
* the lineage: the session this one was forked or replayed from, and its own forks;
* the verification checks.

Session content is data: every value goes through :func:`a3s_nb.render.esc`. The page passes
the secret scanner as a save does (:mod:`a3s_nb.secrets`): secrets in the stored files (a
session saved with ``allow_secrets``) are shown as ``[REDACTED:<kind>]`` unless
``allow_secrets=True`` is given again.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import render
from .. import secrets as _secrets
from .._version import __version__
from ..api import _open
from ..errors import ReportError
from ..frames import all_frames
from ..frames.cost import price_table
from ..lab.lineage import Prompt, lineage_frame, lineage_of, prompts
from ..render import esc, fmt_duration
from ..store import _fsio as fsio
from ..store.models import SessionBundle
from ..store.store import (
    _ADAPTERS,
    Store,
    _fsync_dir,
    _to_jsonable,
    _unlink,
    sdk_safe_id,
)

if TYPE_CHECKING:
    import pandas as pd

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)

__all__ = ["MAX_CHARS", "ReportResult", "default_name", "report", "report_file"]

#: Each tool input, tool output and artifact is shown up to this many characters.
MAX_CHARS = 100_000

#: No fetch of any kind and no script; inline styles and the inline SVG only.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'"

_CSS = """
body{margin:0;background:#fff;color:#1f2328;
font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif}
main{max-width:1040px;margin:0 auto;padding:16px 24px 56px}
h1{font-size:22px;margin:10px 0 4px;overflow-wrap:anywhere}
h2{font-size:18px;margin:32px 0 8px;padding-bottom:4px;border-bottom:1px solid #d1d9e0}
h3{font-size:15px;margin:0 0 2px}
code{font-family:ui-monospace,'DejaVu Sans Mono',monospace;font-size:.95em}
p{margin:6px 0}
.lead{color:#59636e;max-width:72em}
.muted{color:#59636e}
.err{color:#c62828}
nav ol{margin:4px 0;padding-left:22px}
nav li{margin:1px 0}
.facts{border-collapse:collapse;margin:8px 0}
.facts th{text-align:left;color:#59636e;font-weight:normal;padding:1px 16px 1px 0;
vertical-align:top;white-space:nowrap}
.facts td{padding:1px 0;overflow-wrap:anywhere}
.tbl{border-collapse:collapse;font-size:13px;margin:6px 0}
.tbl th{text-align:left;color:#59636e;font-weight:600;padding:4px 8px;
border-bottom:1px solid #d1d9e0;white-space:nowrap}
.tbl td{padding:3px 8px;border-bottom:1px solid #d1d9e0;vertical-align:top}
.tbl td.n,.tbl th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.tbl td.t{font-family:ui-monospace,'DejaVu Sans Mono',monospace;font-size:12px;
overflow-wrap:anywhere;max-width:32em}
.a3s-prompt{border:1px solid #d1d9e0;border-radius:6px;padding:8px 10px;margin:12px 0}
.a3s-prompt-meta{font-size:12px;color:#59636e;margin-bottom:4px}
.scroll{overflow-x:auto}
footer{margin-top:40px;font-size:12px;color:#59636e}
"""

_FAILED = render.STATUS_COLORS["failed"]
_OK = render.STATUS_COLORS["ok"]


@dataclass(frozen=True)
class ReportResult:
    """What :func:`report` wrote. ``str()`` is the line ``%a3s_report`` and the CLI print."""

    session_id: str
    path: Path
    bytes: int
    redacted: int  # secrets replaced by [REDACTED:kind]
    secrets_kept: int  # secrets shown as stored (allow_secrets=True)

    def __str__(self) -> str:
        line = f"report of session {self.session_id} -> {self.path} ({self.bytes:,} bytes)"
        if self.redacted:
            line += f"; {_plural(self.redacted, 'secret')} redacted"
        if self.secrets_kept:
            line += f"; {_plural(self.secrets_kept, 'secret')} shown as saved (allowed)"
        return line


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def report(
    id: str,
    path: str | os.PathLike[str] | None = None,
    *,
    store: Any = None,
    allow_secrets: bool = False,
) -> str | ReportResult:
    """A saved session as one self-contained HTML page.

    ``id`` is a session id or a unique prefix of it, in ``store`` (default:
    ``$A3S_NB_STORE``, else ``./a3s_sessions``). Without ``path``, the page is returned as
    a string; with one, it is written there (atomically: a file that was there stays whole
    until the new one replaces it, and a failed write leaves nothing) and a
    :class:`ReportResult` says what was written.

    Secrets found in the session (one saved with ``allow_secrets``) are redacted unless
    ``allow_secrets=True``. A missing id raises :class:`~a3s_nb.errors.SessionNotFoundError`
    naming the closest ids; a ``path`` that is a directory, or where no file can be
    written, :class:`~a3s_nb.errors.ReportError`.

    >>> a3s_nb.report("fix-oscar-2-000", "oscar.html")                # doctest: +SKIP
    report of session fix-oscar-2-000 -> oscar.html (61,204 bytes)
    """
    st = _store(store)
    sid = st.resolve(str(id))
    target = None if path is None else _check_target(Path(os.fspath(path)), sid)
    bundle = st.load(sid)
    html, redacted, kept = _page(bundle, st, allow_secrets=allow_secrets)
    if target is None:
        return html
    data = html.encode("utf-8")
    _write(target, data)
    return ReportResult(sid, target, len(data), redacted, kept)


def report_file(
    id: str,
    path: str | os.PathLike[str] | None = None,
    *,
    store: Any = None,
    allow_secrets: bool = False,
) -> ReportResult:
    """:func:`report` written to ``path``, by default ``<id>.html`` in the working
    directory (what ``%a3s_report`` and ``a3s-nb report`` do)."""
    if path is None:
        st = _store(store)
        sid = st.resolve(str(id))
        return report_file(sid, default_name(sid), store=st, allow_secrets=allow_secrets)
    result = report(id, path, store=store, allow_secrets=allow_secrets)
    assert isinstance(result, ReportResult)
    return result


def default_name(session_id: str) -> str:
    """``<id>.html``, with the characters a file name cannot hold replaced as a3s-code does."""

    return sdk_safe_id(session_id) + ".html"


# =============================================================================== output


def _check_target(path: Path, session_id: str) -> Path:
    """Refuse, before any work, an output that is a directory or has no directory to go in."""
    if path.is_dir():
        raise ReportError(
            f"cannot write the report to {path}: it is a directory; give a file name, "
            f"e.g. {path / default_name(session_id)}"
        )
    parent = path.parent
    if not parent.exists():
        raise ReportError(
            f"cannot write the report to {path}: directory {parent} does not exist; "
            "create it first or choose another path"
        )
    if not parent.is_dir():
        raise ReportError(f"cannot write the report to {path}: {parent} is not a directory")
    return path


def _write(path: Path, data: bytes) -> None:
    """Write ``data`` to a new temp file beside ``path`` (never through a link), then move
    it into place: an old report stays whole until the new one is complete."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    made = False
    try:
        fd = fsio.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644)
        made = True
        try:
            fsio.write_all(fd, data)
            fsio.fsync(fd)
        finally:
            fsio.close(fd)
        fsio.replace(tmp, path)
        made = False
    except OSError as e:
        why = e.strerror or str(e)
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            why += " (choose a place you can write to)"
        raise ReportError(f"cannot write the report to {path}: {why}") from e
    finally:
        if made:
            _unlink(tmp)
    _fsync_dir(path.parent)


# =============================================================================== build


def _store(store: Any) -> Store:

    return _open(store, must_exist=True)


def _redacted(bundle: SessionBundle, *, allow_secrets: bool) -> tuple[SessionBundle, int, int]:
    """(the bundle as the page may show it, secrets redacted, secrets kept)."""

    parts = {
        part: _to_jsonable(part, bundle.session if part == "session" else getattr(bundle, part))
        for part in _ADAPTERS
        if (bundle.session if part == "session" else getattr(bundle, part)) is not None
    }
    if allow_secrets:
        return bundle, 0, len(_secrets.scan(parts))
    clean, findings = _secrets.redact(parts)
    if not findings:
        return bundle, 0, 0
    values = {part: _ADAPTERS[part].validate_python(value) for part, value in clean.items()}
    return SessionBundle(**values), len(findings), 0


def _page(bundle: SessionBundle, st: Store | None, *, allow_secrets: bool) -> tuple[str, int, int]:

    bundle, redacted, kept = _redacted(bundle, allow_secrets=allow_secrets)
    frames = all_frames(bundle, ["runs", "spans", "verification"], progress=False)
    runs, spans, checks = frames["runs"], frames["spans"], frames["verification"]
    ps = prompts(bundle)
    run_rows = {r["run_id"]: r for r in runs.to_dict("records")}
    sid = bundle.session.id
    calls = _tool_calls(ps, spans)

    sections = [
        ("transcript", "Transcript", _transcript(bundle, ps, run_rows)),
        ("timeline", "Runs and timeline", _timeline(ps, runs, spans, sid)),
        ("tools", "Tool calls", _tools_table(calls)),
        ("models", "Tokens and cost per model", _models_table(runs)),
        ("lineage", "Lineage", _lineage(sid, st)),
        ("verification", "Verification", _verification(checks, runs)),
    ]
    nav = "".join(f'<li><a href="#{key}">{esc(title)}</a></li>' for key, title, _ in sections)
    body = "".join(
        f'<section id="{key}"><h2>{esc(title)}</h2>{html}</section>'
        for key, title, html in sections
    )
    page = (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>Agent session {esc(sid)}</title><style>{_CSS}</style></head>"
        f'<body><main class="a3s-report" data-session-id="{esc(sid)}">'
        f"{_summary(bundle, ps, runs, calls, redacted, kept)}"
        f"<nav><ol>{nav}</ol></nav>{body}{_footer()}</main></body></html>\n"
    )
    return page, redacted, kept


# =============================================================================== parts


def _present(value: Any) -> bool:
    return render._present(value)


def _summary(
    bundle: SessionBundle,
    ps: list[Prompt],
    runs: pd.DataFrame,
    calls: list[dict[str, Any]],
    redacted: int,
    kept: int,
) -> str:
    s = bundle.session
    model = s.model_name or (
        f"{s.llm_config.provider}/{s.llm_config.model}" if s.llm_config else ""
    )
    failed_runs = int((runs["status"] == "failed").sum()) if len(runs) else 0
    failed_calls = sum(c["ok"] is False for c in calls)
    tokens = int(runs["total_tokens"].sum()) if len(runs) else 0
    facts = [
        ("model", model or "unknown"),
        ("workspace", s.config.workspace),
        ("started", render._fmt_time(s.created_at) + " UTC" if s.created_at else ""),
        ("last saved", render._fmt_time(s.updated_at) + " UTC" if s.updated_at else ""),
        ("prompts", f"{len(ps):,}"),
        ("runs", f"{len(runs):,}" + (f" ({failed_runs} failed)" if failed_runs else "")),
        (
            "tool calls",
            f"{len(calls):,}" + (f" ({failed_calls} failed)" if failed_calls else ""),
        ),
        ("tokens", f"{tokens:,}"),
        ("cost", _cost_text(runs["cost_usd"]) if len(runs) else ""),
    ]
    rows = "".join(
        f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts if v not in ("", None)
    )
    note = ""
    if redacted:
        note = (
            f'<p class="err">{_plural(redacted, "secret")} (API keys, tokens, passwords) found '
            "in this session are shown as [REDACTED:kind].</p>"
        )
    elif kept:
        note = (
            f'<p class="err">This page shows {_plural(kept, "secret")} (API keys, tokens, '
            "passwords) as they were saved: do not share it.</p>"
        )
    return (
        f"<header><h1>Agent session <code>{esc(s.id)}</code></h1>"
        '<p class="lead">A record of one session with a3s-code, an AI coding agent: the '
        "prompts a person gave it, what it answered, and the tools it ran on their files "
        "(commands, reads, writes), with how long each took and what failed. Tool calls are "
        "folded: click one to see its arguments, and its result to see the output.</p>"
        f'<table class="facts">{rows}</table>{note}</header>'
    )


def _footer() -> str:

    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"<footer>Made by a3s_nb {esc(__version__)} on {esc(now)}. Times are UTC. This file "
        "is self-contained: it loads nothing from anywhere.</footer>"
    )


def _prompt_meta(p: Prompt, run: dict[str, Any] | None) -> str:
    if p.run is None or run is None:
        return '<span class="muted">no run recorded for this prompt</span>'
    status = str(run["status"])
    bits = [render._badge(status, render.status_color(status))]
    if _present(run.get("created_at")):
        bits.append(esc(render._fmt_time(run["created_at"])))
    if _present(run.get("duration_ms")):
        bits.append(esc(fmt_duration(run["duration_ms"])))
    n_tools = len(p.tools)
    failed = sum(t.ok is False for t in p.tools)
    bits.append(
        esc(_plural(n_tools, "tool call"))
        + (f' <span class="err">({failed} failed)</span>' if failed else "")
    )
    if _present(run.get("total_tokens")):
        bits.append(esc(f"{int(run['total_tokens']):,} tokens"))
    if _present(run.get("model")):
        bits.append(f"<code>{esc(run['model'])}</code>")
    return " &middot; ".join(bits)


def _transcript(
    bundle: SessionBundle, ps: list[Prompt], run_rows: dict[str, dict[str, Any]]
) -> str:
    history = bundle.session.messages
    anchors = render.artifact_anchors(bundle)
    out = []
    for p in ps:
        start, end = p.messages
        run = run_rows.get(p.run.snapshot.id) if p.run is not None else None
        boxes = render.messages_html(
            history[start:end], history, max_chars=MAX_CHARS, artifacts=anchors
        )
        if p.run is not None and p.run.snapshot.status == "failed":
            boxes.append(render.failed_run_html(p.run))
        elif not boxes:
            boxes.append(render._text(p.text))
        out.append(
            f'<section class="a3s-prompt" id="prompt-{p.number}">'
            f"<h3>Prompt {p.number}</h3>"
            f'<div class="a3s-prompt-meta">{_prompt_meta(p, run)}</div>'
            f'<div style="font-family:{render.FONT};line-height:1.4">{"".join(boxes)}</div>'
            "</section>"
        )
    if not ps:
        out.append('<p class="muted">This session has no messages.</p>')
    out.append(render.artifacts_html(bundle, max_chars=MAX_CHARS))
    return "".join(out)


def _timeline(ps: list[Prompt], runs: pd.DataFrame, spans: pd.DataFrame, sid: str) -> str:
    labels = {p.run.snapshot.id: f"prompt {p.number}: {p.text}" for p in ps if p.run is not None}
    return (
        '<p class="muted">One row per run (a prompt sent to the agent), then its model turns '
        "and tool calls on a shared time axis; a dashed line marks idle time cut out. Hover "
        "a bar for its details.</p>"
        f"{render.runs_table_html(runs)}"
        f'<div class="scroll">{render.timeline_html(spans, labels=labels, title=sid)}</div>'
    )


def _tool_calls(ps: list[Prompt], spans: pd.DataFrame) -> list[dict[str, Any]]:
    """Every tool call, prompt by prompt, with its duration from the spans."""
    tools = spans[spans["kind"] == "tool"] if len(spans) else spans
    durations = {
        str(r["tool_call_id"]): r["duration_ms"]
        for r in tools.to_dict("records")
        if _present(r.get("tool_call_id"))
    }
    out = []
    for p in ps:
        for t in p.tools:
            try:
                args = json.loads(t.args) if t.args else None
            except ValueError:
                args = t.args
            out.append(
                {
                    "prompt": p.number,
                    "tool": t.name,
                    "args": render._input_preview(args, 70),
                    "duration_ms": durations.get(str(t.id)) if t.id else None,
                    "ok": t.ok,
                    "result": t.result,
                }
            )
    return out


def _table(head: list[tuple[str, bool]], rows: list[list[str]]) -> str:
    """A table of already escaped cells; ``head`` is (label, numeric) per column."""
    ths = "".join(f'<th class="n">{esc(h)}</th>' if n else f"<th>{esc(h)}</th>" for h, n in head)
    trs = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{c}</td>' if n else f"<td>{c}</td>"
            for (_, n), c in zip(head, cells, strict=True)
        )
        + "</tr>"
        for cells in rows
    )
    return f'<div class="scroll"><table class="tbl"><thead><tr>{ths}</tr></thead><tbody>{trs}</tbody></table></div>'


def _tools_table(calls: list[dict[str, Any]]) -> str:
    if not calls:
        return '<p class="muted">The agent called no tools in this session.</p>'
    failed = sum(c["ok"] is False for c in calls)
    total = sum(float(c["duration_ms"]) for c in calls if _present(c["duration_ms"]))
    rows = []
    for i, c in enumerate(calls, 1):
        if c["ok"] is None:
            status = render._badge("no result", render.status_color(None))
        else:
            status = render._badge("ok", _OK) if c["ok"] else render._badge("failed", _FAILED)
        first = c["result"].strip().splitlines()[0] if c["result"].strip() else ""
        result = (
            f'<span class="err">{esc(render._shorten(first, 100))}</span>'
            if c["ok"] is False
            else f'<span class="muted">{esc(render._shorten(first, 100))}</span>'
        )
        rows.append(
            [
                esc(i),
                f'<a href="#prompt-{c["prompt"]}">{c["prompt"]}</a>',
                f"<code>{esc(c['tool'])}</code>",
                f'<span class="t">{esc(c["args"])}</span>',
                esc(fmt_duration(c["duration_ms"])),
                status,
                result,
            ]
        )
    head = [
        ("#", True),
        ("prompt", True),
        ("tool", False),
        ("arguments", False),
        ("duration", True),
        ("status", False),
        ("output (first line)", False),
    ]
    return (
        f"<p>{_plural(len(calls), 'tool call')}, "
        + (f'<span class="err">{failed} failed</span>' if failed else "none failed")
        + f", {esc(fmt_duration(total) or '0 ms')} in tools in all.</p>"
        + _table(head, rows)
    )


def _cost_text(cost: pd.Series) -> str:
    """'$0.0123', 'unpriced', or '$0.0123 (+2 runs unpriced)': never 0 for no price."""
    missing = int(cost.isna().sum())
    if missing == len(cost):
        return "unpriced"
    text = f"${float(cost.sum()):,.4f}"
    return text + (f" (+{_plural(missing, 'run')} unpriced)" if missing else "")


def _models_table(runs: pd.DataFrame) -> str:
    if not len(runs):
        return '<p class="muted">No runs, so no tokens were used.</p>'

    rows = []
    for model, group in runs.groupby(runs["model"].fillna("unknown"), sort=True):
        cost = _cost_text(group["cost_usd"])
        shown = f'<span class="muted">{esc(cost)}</span>' if cost == "unpriced" else esc(cost)
        rows.append(
            [
                f"<code>{esc(model)}</code>",
                esc(f"{len(group):,}"),
                *(
                    esc(f"{int(group[c].sum()):,}")
                    for c in ("prompt_tokens", "completion_tokens", "total_tokens")
                ),
                shown,
            ]
        )
    head = [
        ("model", False),
        ("runs", True),
        ("input tokens", True),
        ("output tokens", True),
        ("total tokens", True),
        ("cost (USD)", True),
    ]
    table = price_table()
    where = (
        f"Prices from {esc(table)} at each run's date"
        if table
        else "No price table is installed (pip install genai-prices)"
    )
    return (
        _table(head, rows) + f'<p class="muted">{where}; "unpriced" means the table has no '
        "price for that model, not that it was free.</p>"
    )


def _lineage(sid: str, st: Store | None) -> str:
    if st is None:
        return '<p class="muted">No store was given, so the lineage is not known.</p>'

    rec = lineage_of(sid, st)
    if rec is None:
        parent = "<p>This session was not forked or replayed from another one.</p>"
    else:
        kind = "fork" if rec.get("kind") == "fork" else "replay"
        at = rec.get("at_prompt")
        where = (
            f", after prompt {esc(at)} of {esc(rec.get('of_prompts'))}" if at is not None else ""
        )
        model = f", on model <code>{esc(rec['model'])}</code>" if rec.get("model") else ""
        when = f", on {esc(rec['created_at'])}" if rec.get("created_at") else ""
        edits = rec.get("edits")
        edited = (
            f"; {_plural(len(edits), 'tool result')} edited"
            if isinstance(edits, list) and edits
            else ""
        )
        parent = (
            f"<p>This session is a {kind} of <code>{esc(rec.get('parent_id'))}</code>"
            f"{where}{model}{when}{edited}.</p>"
        )
    df = lineage_frame(st)
    children = df[df["lineage_parent_id"] == sid]
    if not len(children):
        return parent + '<p class="muted">No fork or replay of this session is in the store.</p>'
    rows = [
        [
            f"<code>{esc(r['session_id'])}</code>",
            esc(r["lineage_kind"]),
            esc("" if not _present(r["lineage_at_prompt"]) else int(r["lineage_at_prompt"])),
            esc(render._fmt_time(r["lineage_created_at"])),
            f"<code>{esc(r['lineage_model'])}</code>" if _present(r["lineage_model"]) else "",
        ]
        for r in children.to_dict("records")
    ]
    head = [
        ("session", False),
        ("kind", False),
        ("after prompt", True),
        ("created (UTC)", False),
        ("model", False),
    ]
    return parent + f"<p>Made from this session ({len(rows)}):</p>" + _table(head, rows)


def _verification(checks: pd.DataFrame, runs: pd.DataFrame) -> str:
    statuses = runs["verification_status"].dropna() if len(runs) else runs
    tally = ", ".join(
        f"{n} {s}" for s, n in statuses.astype(str).value_counts().sort_index().items() if n
    )
    runs_line = f"<p>Verification status of the runs: {esc(tally)}.</p>" if tally else ""
    if not len(checks):
        return runs_line + '<p class="muted">No verification checks were recorded.</p>'
    rows = []
    for r in checks.to_dict("records"):
        status = str(r["status"]) if _present(r["status"]) else ""
        rows.append(
            [
                esc(r["subject"]) if _present(r["subject"]) else "",
                f"<code>{esc(r['check_id'])}</code>" if _present(r["check_id"]) else "",
                esc(r["kind"]) if _present(r["kind"]) else "",
                esc(r["description"]) if _present(r["description"]) else "",
                render._badge(status, render.status_color(status)) if status else "",
                esc("yes" if r["required"] is True else "no" if r["required"] is False else ""),
                esc(r["residual_risk"]) if _present(r["residual_risk"]) else "",
            ]
        )
    head = [
        ("subject", False),
        ("check", False),
        ("kind", False),
        ("description", False),
        ("status", False),
        ("required", False),
        ("residual risk", False),
    ]
    return runs_line + _table(head, rows)
