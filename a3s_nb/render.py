"""Static HTML for sessions, transcripts and run timelines: pure functions, no Jupyter.

The widgets in ``a3s_nb.widgets`` show these fragments live, and put them in the ``text/html``
of their outputs, so a notebook saved with outputs still shows something on GitHub and in
nbconvert. Everything taken from a session is escaped: transcripts hold arbitrary tool
output, and the HTML widget puts its value into the page unsanitised.

Styling is inline (``style=`` attributes and SVG presentation attributes) because sanitisers
and static renderers drop ``<style>`` blocks; colours use JupyterLab's CSS variables with
light fallbacks, so the fragments follow the Lab theme and still read well elsewhere.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from .store._tokens import runs_total_tokens
from .store.models import (
    ImageBlock,
    Message,
    OtherBlock,
    RunRecord,
    SessionBundle,
    TextBlock,
    ToolArtifact,
    ToolResultBlock,
    ToolUseBlock,
)

__all__ = [
    "SPAN_COLORS",
    "STATUS_COLORS",
    "artifact_anchors",
    "artifacts_html",
    "esc",
    "failed_run_html",
    "fmt_duration",
    "messages_html",
    "runs_table_html",
    "sessions_table_html",
    "status_color",
    "timeline_html",
    "transcript_html",
]

FONT = "var(--jp-ui-font-family, system-ui, -apple-system, 'Segoe UI', sans-serif)"
MONO = "var(--jp-code-font-family, ui-monospace, 'DejaVu Sans Mono', monospace)"
FG = "var(--jp-ui-font-color1, #1f2328)"
FG_MUTED = "var(--jp-ui-font-color2, #59636e)"
BORDER = "var(--jp-border-color2, #d1d9e0)"
BG_SOFT = "var(--jp-layout-color2, #f6f8fa)"

#: Colour of a status in tables and timelines: green done, red failed, amber in flight.
STATUS_COLORS: dict[str, str] = {
    "completed": "#2e7d32",
    "ok": "#2e7d32",
    "success": "#2e7d32",
    "passed": "#2e7d32",
    "failed": "#c62828",
    "error": "#c62828",
    "cancelled": "#8d6e63",
    "created": "#f9a825",
    "planning": "#f9a825",
    "executing": "#f9a825",
    "verifying": "#f9a825",
    "running": "#f9a825",
    "open": "#f9a825",
}
_UNKNOWN_COLOR = "#78909c"

_ARTIFACT_URI = re.compile(r"a3s://[A-Za-z0-9_\-./:]+[A-Za-z0-9_/]")


def esc(value: Any) -> str:
    """``value`` as text safe inside HTML elements and quoted attributes."""
    return html.escape("" if value is None else str(value), quote=True)


def status_color(status: Any) -> str:
    """The colour of a run, span or verification status (grey when unknown)."""
    if not _present(status):
        return _UNKNOWN_COLOR
    return STATUS_COLORS.get(str(status).lower(), _UNKNOWN_COLOR)


def _present(value: Any) -> bool:
    if value is None:
        return False
    try:
        return not bool(pd.isna(value))
    except (TypeError, ValueError):  # lists, dicts
        return True


def _anchor(*parts: str) -> str:
    """A stable, HTML-id-safe anchor for a session-scoped thing (an artifact)."""
    return "a3s-" + hashlib.sha1("\x00".join(parts).encode()).hexdigest()[:12]


def _badge(text: str, color: str) -> str:
    return (
        f'<span style="display:inline-block;padding:0 6px;border-radius:8px;font-size:11px;'
        f'line-height:16px;color:#fff;background:{color}">{esc(text)}</span>'
    )


def _fmt_time(value: Any) -> str:
    """UTC 'YYYY-MM-DD HH:MM:SS' for a Timestamp, datetime or unix seconds."""
    if not _present(value):
        return ""
    if isinstance(value, int | float):
        value = datetime.fromtimestamp(value, UTC)
    ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC")
    return ts.strftime("%Y-%m-%d %H:%M:%S")


def fmt_duration(ms: float | None) -> str:
    """'850 ms', '2.4 s', '3 min 05 s', '2 h 10 min' - short and deterministic."""
    if ms is None or not _present(ms):
        return ""
    ms = float(ms)
    if ms < 1000:
        return f"{ms:.0f} ms"
    s = ms / 1000
    if s < 60:
        return f"{s:.1f} s" if s < 10 else f"{s:.0f} s"
    m, s = divmod(round(s), 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h} h {m:02d} min"
    return f"{h // 24} d {h % 24} h"


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


# =========================================================================== sessions table

#: Columns of the sessions frame shown in the browser table, with their headings.
SESSION_COLUMNS: dict[str, str] = {
    "session_id": "session",
    "updated_at": "updated (UTC)",
    "model": "model",
    "last_run_status": "last run",
    "n_messages": "msgs",
    "n_runs": "runs",
    "n_tool_calls": "tools",
    "n_tool_errors": "errors",
    "first_prompt": "first prompt",
}

_NUMERIC_ALIGN = "text-align:right;font-variant-numeric:tabular-nums"


def session_cells(row: pd.Series | dict[str, Any], columns: Sequence[str]) -> list[str]:
    """The escaped HTML of each cell of one sessions-frame row, in ``columns`` order."""
    cells = []
    for col in columns:
        value = row.get(col)
        if not _present(value):
            cells.append("")
        elif col.endswith("_at") or isinstance(value, pd.Timestamp | datetime):
            cells.append(esc(_fmt_time(value)))
        elif col in ("status", "state", "last_run_status", "verification_status"):
            cells.append(
                f'<span style="color:{status_color(value)};font-weight:600">{esc(value)}</span>'
            )
        elif col in ("first_prompt", "last_prompt", "workspace", "prompt", "result_text", "error"):
            full = str(value)
            cells.append(f'<span title="{esc(full)}">{esc(_shorten(full, 60))}</span>')
        elif isinstance(value, float):
            cells.append(esc(f"{value:,.4g}"))
        elif isinstance(value, int) or (hasattr(value, "dtype") and value.dtype.kind in "iu"):
            cells.append(esc(f"{int(value):,}"))
        else:
            cells.append(esc(value))
    return cells


def _is_numeric(df: pd.DataFrame, col: str) -> bool:
    return col in df.columns and pd.api.types.is_numeric_dtype(df[col].dtype)


_TH_STYLE = (
    f"padding:4px 8px;border-bottom:1px solid {BORDER};text-align:left;"
    f"color:{FG_MUTED};font-weight:600;white-space:nowrap"
)


def _head(df: pd.DataFrame, columns: Sequence[str], labels: dict[str, str]) -> str:
    """The ``<th>`` cells of a frame table; numeric columns right-aligned."""
    return "".join(
        f'<th style="{_TH_STYLE}{";" + _NUMERIC_ALIGN if _is_numeric(df, c) else ""}">'
        f"{esc(labels.get(c, c))}</th>"
        for c in columns
    )


def _cells(df: pd.DataFrame, columns: Sequence[str], cells: Sequence[str]) -> str:
    """The ``<td>`` cells of one row (already escaped HTML)."""
    return "".join(
        f'<td style="padding:3px 8px;border-bottom:1px solid {BORDER};white-space:nowrap;'
        f'{_NUMERIC_ALIGN if _is_numeric(df, c) else ""}">{cell}</td>'
        for c, cell in zip(columns, cells, strict=True)
    )


def sessions_table_html(
    df: pd.DataFrame,
    *,
    columns: Sequence[str] | None = None,
    selected: str | None = None,
    max_rows: int = 50,
    caption: str | None = None,
) -> str:
    """An HTML table of a sessions frame (``a3s_nb.sessions()``), at most ``max_rows`` rows.

    ``selected`` (a session id) is highlighted. Columns default to those of
    ``SESSION_COLUMNS`` that the frame has.
    """
    if columns is None:
        columns = [c for c in SESSION_COLUMNS if c in df.columns]
    head = _head(df, columns, SESSION_COLUMNS)
    rows = []
    for _, row in df.head(max_rows).iterrows():
        sid = row.get("session_id")
        is_sel = selected is not None and sid == selected
        bg = f"background:{BG_SOFT};" if is_sel else ""
        tds = _cells(df, columns, session_cells(row, columns))
        rows.append(
            f'<tr class="a3s-session-row" data-session-id="{esc(sid)}" style="{bg}">{tds}</tr>'
        )
    more = len(df) - min(len(df), max_rows)
    foot = (
        f'<div style="color:{FG_MUTED};font-size:12px;padding:4px 8px">'
        f"\u2026 and {more:,} more sessions</div>"
        if more > 0
        else ""
    )
    cap = (
        f'<caption style="text-align:left;color:{FG_MUTED};padding:4px 8px">{esc(caption)}'
        "</caption>"
        if caption
        else ""
    )
    return (
        f'<div class="a3s-sessions" style="font-family:{FONT};font-size:13px;color:{FG}">'
        f'<table style="border-collapse:collapse">{cap}<thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>{foot}</div>"
    )


RUN_COLUMNS: dict[str, str] = {
    "run_index": "#",
    "status": "status",
    "created_at": "started (UTC)",
    "duration_ms": "duration",
    "n_turns": "turns",
    "n_tool_calls": "tools",
    "n_tool_errors": "errors",
    "total_tokens": "tokens",
    "prompt": "prompt",
}


def runs_table_html(df: pd.DataFrame, *, max_rows: int = 200) -> str:
    """An HTML table of a runs frame (``a3s_nb.runs()``): one row per run, failures marked."""
    if df is None or len(df) == 0:
        return f'<div style="font-family:{FONT};color:{FG_MUTED};padding:4px 8px">(no runs)</div>'
    columns = [c for c in RUN_COLUMNS if c in df.columns]
    head = _head(df, columns, RUN_COLUMNS)
    rows = []
    for rec in df.head(max_rows).to_dict("records"):
        cells = session_cells(rec, columns)
        if "duration_ms" in columns:
            cells[columns.index("duration_ms")] = esc(fmt_duration(rec.get("duration_ms")))
        if "run_index" in columns and _present(rec.get("run_index")):
            cells[columns.index("run_index")] = esc(int(rec["run_index"]) + 1)
        error = rec.get("error")
        title = f' title="{esc(error)}"' if _present(error) else ""
        tds = _cells(df, columns, cells)
        rows.append(
            f'<tr class="a3s-run-row" data-run-id="{esc(rec.get("run_id"))}"{title}>{tds}</tr>'
        )
    return (
        f'<div class="a3s-runs" style="font-family:{FONT};font-size:13px;color:{FG}">'
        f'<table style="border-collapse:collapse"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


# =========================================================================== transcript


def _input_preview(tool_input: Any, limit: int = 80) -> str:
    if isinstance(tool_input, dict) and tool_input:
        key = next(
            (
                k
                for k in ("command", "file_path", "path", "pattern", "query", "url", "prompt")
                if k in tool_input
            ),
            next(iter(tool_input)),
        )
        value = tool_input[key]
        value = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        return _shorten(f"{key}={value}", limit)
    if tool_input in ({}, None, ""):
        return ""
    return _shorten(json.dumps(tool_input, ensure_ascii=False), limit)


def _linkify(escaped: str, artifacts: dict[str, str]) -> str:
    """Turn ``a3s://`` URIs of known artifacts in already escaped text into anchors."""

    def sub(m: re.Match[str]) -> str:
        uri = m.group(0)
        anchor = artifacts.get(uri)
        if anchor is None:
            return uri
        return f'<a href="#{anchor}" style="color:#1565c0">{uri}</a>'

    return _ARTIFACT_URI.sub(sub, escaped)


def _pre(text: str, limit: int, artifacts: dict[str, str], extra_style: str = "") -> str:
    shown = text if len(text) <= limit else text[:limit]
    cut = (
        f'<div style="color:{FG_MUTED};font-size:11px">\u2026 {len(text) - limit:,} more '
        "characters not shown</div>"
        if len(text) > limit
        else ""
    )
    return (
        f'<pre style="margin:4px 0;padding:6px 8px;background:{BG_SOFT};border-radius:4px;'
        f"font-family:{MONO};font-size:12px;white-space:pre-wrap;word-break:break-word;"
        f'max-height:24em;overflow:auto;{extra_style}">'
        f"{_linkify(esc(shown), artifacts)}</pre>{cut}"
    )


def _message_box(role: str, color: str, body: str) -> str:
    return (
        f'<div class="a3s-msg a3s-{esc(role)}" style="margin:6px 0;padding:4px 10px;'
        f'border-left:3px solid {color}">'
        f'<div style="font-size:11px;font-weight:600;color:{color};text-transform:uppercase;'
        f'letter-spacing:.04em">{esc(role)}</div>{body}</div>'
    )


def _text(text: str) -> str:
    return f'<div class="a3s-text" style="white-space:pre-wrap;margin:2px 0">{esc(text)}</div>'


def _tool_call(
    block: ToolUseBlock, result: ToolResultBlock | None, limit: int, artifacts: dict[str, str]
) -> str:
    args = json.dumps(block.input, indent=2, ensure_ascii=False, sort_keys=True)
    call = (
        f'<details class="a3s-tool-call" data-tool="{esc(block.name)}" style="margin:2px 0">'
        f'<summary style="cursor:pointer"><span style="font-family:{MONO};font-weight:600">'
        f"{esc(block.name)}</span> "
        f'<span style="color:{FG_MUTED};font-family:{MONO};font-size:12px">'
        f"{esc(_input_preview(block.input))}</span></summary>"
        f"{_pre(args, limit, artifacts)}</details>"
    )
    if result is None:
        return call + f'<div style="color:{FG_MUTED};font-size:12px">no result recorded</div>'
    return call + _tool_result(result, limit, artifacts)


def _tool_result(block: ToolResultBlock, limit: int, artifacts: dict[str, str]) -> str:
    text = block.text
    error = bool(block.is_error)
    first = _shorten(text.strip().splitlines()[0] if text.strip() else "(empty)", 90)
    mark = _badge("error", STATUS_COLORS["error"]) if error else _badge("ok", "#2e7d32")
    linked = [uri for uri in artifacts if uri in text]
    links = "".join(
        f' <a href="#{artifacts[u]}" style="color:#1565c0;font-size:12px">artifact</a>'
        for u in linked
    )
    return (
        f'<details class="a3s-tool-result{" a3s-error" if error else ""}" '
        f'style="margin:2px 0 6px 12px">'
        f'<summary style="cursor:pointer">{mark} <span style="color:{FG_MUTED};'
        f'font-family:{MONO};font-size:12px">{esc(first)}</span>{links}</summary>'
        f"{_pre(text, limit, artifacts, 'border-left:3px solid #c62828;' if error else '')}"
        "</details>"
    )


def _header(bundle: SessionBundle) -> str:
    s = bundle.session
    model = s.model_name or (
        f"{s.llm_config.provider}/{s.llm_config.model}" if s.llm_config else ""
    )
    # a3s-code 3.x writes zeros in total_usage; the runs' agent_end usage is the truth
    tokens = s.total_usage.total_tokens or runs_total_tokens(bundle.runs)
    failed = sum(r.snapshot.status == "failed" for r in bundle.runs)
    facts = [
        ("model", model),
        ("state", s.state),
        ("messages", f"{len(s.messages):,}"),
        ("runs", f"{len(bundle.runs):,}" + (f" ({failed} failed)" if failed else "")),
        ("tokens", f"{tokens:,}"),
        ("created", _fmt_time(s.created_at) if s.created_at else ""),
        ("updated", _fmt_time(s.updated_at) if s.updated_at else ""),
    ]
    if s.total_cost:
        facts.append(("cost", f"${s.total_cost:.4f}"))
    facts_html = " &middot; ".join(
        f'<span style="color:{FG_MUTED}">{esc(k)}</span> {esc(v)}' for k, v in facts if v
    )
    return (
        f'<div style="padding:4px 10px 6px;border-bottom:1px solid {BORDER}">'
        f'<div style="font-weight:600;font-family:{MONO}">{esc(s.id)}</div>'
        f'<div style="font-size:12px">{facts_html}</div>'
        f'<div style="font-size:12px;color:{FG_MUTED}">{esc(s.config.workspace)}</div></div>'
    )


def _artifact_section(items: list[tuple[ToolArtifact, str]], limit: int) -> str:
    if not items:
        return ""
    parts = []
    for art, anchor in items:
        parts.append(
            f'<details id="{anchor}" class="a3s-artifact" style="margin:2px 0">'
            f'<summary style="cursor:pointer"><span style="font-family:{MONO}">'
            f"{esc(art.artifact_uri)}</span> "
            f'<span style="color:{FG_MUTED};font-size:12px">{esc(art.tool_name)}, '
            f"{art.original_bytes:,} bytes</span></summary>"
            f"{_pre(art.content, limit, {})}</details>"
        )
    return _message_box("artifacts", "#546e7a", "".join(parts))


def artifact_anchors(bundle: SessionBundle) -> dict[str, str]:
    """The anchor (HTML id) of each stored artifact of a session, by its ``a3s://`` URI."""
    sid = bundle.session.id
    return {a.artifact_uri: _anchor(sid, a.artifact_uri) for a in bundle.artifacts.artifacts}


def messages_html(
    messages: Sequence[Message],
    history: Sequence[Message] | None = None,
    *,
    max_chars: int = 4000,
    artifacts: dict[str, str] | None = None,
) -> list[str]:
    """One message box per message of ``messages``, a slice of the transcript ``history``
    (default: ``messages`` itself): text, reasoning, tool calls folded with their results
    (looked up in the whole ``history``). A message of results already shown gives none."""
    history = messages if history is None else history
    artifacts = artifacts or {}
    results: dict[str, ToolResultBlock] = {}
    for msg in history:
        for block in msg.content:
            if isinstance(block, ToolResultBlock):
                results.setdefault(block.tool_use_id, block)
    called = {b.id for m in history for b in m.content if isinstance(b, ToolUseBlock)}

    out: list[str] = []
    for msg in messages:
        body: list[str] = []
        if msg.reasoning_content:
            body.append(
                '<details class="a3s-reasoning"><summary style="cursor:pointer;'
                f'color:{FG_MUTED};font-size:12px">reasoning</summary>'
                f"{_pre(msg.reasoning_content, max_chars, artifacts)}</details>"
            )
        for block in msg.content:
            if isinstance(block, TextBlock):
                if block.text:
                    body.append(_text(block.text))
            elif isinstance(block, ToolUseBlock):
                body.append(_tool_call(block, results.get(block.id), max_chars, artifacts))
            elif isinstance(block, ToolResultBlock):
                if block.tool_use_id not in called:  # shown with its call otherwise
                    body.append(_tool_result(block, max_chars, artifacts))
            elif isinstance(block, ImageBlock):
                body.append(
                    f'<div style="color:{FG_MUTED};font-size:12px">[image '
                    f"{esc(block.source.media_type)}]</div>"
                )
            elif isinstance(block, OtherBlock):
                body.append(
                    f'<div style="color:{FG_MUTED};font-size:12px">[{esc(block.type)} block]</div>'
                )
        if not body:
            continue  # a user message made only of tool results already shown
        is_user = msg.role == "user" and any(isinstance(b, TextBlock) for b in msg.content)
        if msg.role == "assistant":
            out.append(_message_box("assistant", "#7b1fa2", "".join(body)))
        elif is_user:
            out.append(_message_box("user", "#1565c0", "".join(body)))
        else:
            out.append(_message_box(msg.role, "#546e7a", "".join(body)))
    return out


def failed_run_html(run: RunRecord) -> str:
    """A failed run, which a3s-code leaves out of the message history: prompt and error."""
    snap = run.snapshot
    body = _text(snap.prompt) + (
        f'<div style="color:#c62828;white-space:pre-wrap">{esc(snap.error)}</div>'
        if snap.error
        else ""
    )
    return _message_box(
        "failed run (not in history)",
        STATUS_COLORS["failed"],
        f'<div style="font-size:11px;color:{FG_MUTED};font-family:{MONO}">'
        f"{esc(snap.id)} &middot; {_fmt_time(snap.created_at_ms / 1000)}</div>" + body,
    )


def artifacts_html(bundle: SessionBundle, *, max_chars: int = 4000) -> str:
    """The stored artifacts of a session, each folded, under the anchors the transcript
    links to (:func:`artifact_anchors`); "" when there are none."""
    anchors = artifact_anchors(bundle)
    return _artifact_section(
        [(a, anchors[a.artifact_uri]) for a in bundle.artifacts.artifacts], max_chars
    )


def transcript_html(
    bundle: SessionBundle,
    *,
    max_chars: int = 4000,
    header: bool = True,
    failed_runs: bool = True,
) -> str:
    """A session as a conversation: user and assistant text, tool calls with their inputs
    folded, results (errors marked), links to stored artifacts, and the failed runs that
    a3s-code leaves out of the message history.

    ``max_chars`` caps each tool input, result and artifact as shown (the data is not cut).

    >>> from a3s_nb import open_store                       # doctest: +SKIP
    >>> html = transcript_html(open_store("sessions").load("fix-oscar-2-000"))  # doctest: +SKIP
    """
    sid = bundle.session.id
    messages: list[Message] = bundle.session.messages
    out = messages_html(messages, max_chars=max_chars, artifacts=artifact_anchors(bundle))
    if failed_runs:
        out.extend(failed_run_html(r) for r in bundle.runs if r.snapshot.status == "failed")
    if not messages and not out:
        out.append(f'<div style="color:{FG_MUTED};padding:6px 10px">(no messages)</div>')
    out.append(artifacts_html(bundle, max_chars=max_chars))
    return (
        f'<div class="a3s-transcript" data-session-id="{esc(sid)}" '
        f'style="font-family:{FONT};font-size:13px;color:{FG};line-height:1.4">'
        f"{_header(bundle) if header else ''}{''.join(out)}</div>"
    )


# =========================================================================== timeline

_KIND_HEIGHT = {"run": 14, "planning": 11, "step": 12, "turn": 11, "tool": 11}
_KIND_OPACITY = {"run": 0.3, "planning": 0.5, "step": 0.4, "turn": 0.55, "tool": 0.95}
#: Span statuses of ``a3s_nb.spans()`` and their colours (run statuses work too).
SPAN_COLORS = {"ok": "#2e7d32", "error": "#c62828", "unset": _UNKNOWN_COLOR}


def _nice_step(span: float, target: int = 6) -> float:
    raw = span / max(target, 1)
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag  # pragma: no cover


def _ms(value: Any) -> float:
    return pd.Timestamp(value).value / 1e6  # ns -> ms


def _fmt_ms_time(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def timeline_html(
    spans: pd.DataFrame,
    *,
    labels: dict[str, str] | None = None,
    title: str | None = None,
    width: int = 900,
    label_width: int = 260,
    row_height: int = 18,
    max_rows: int = 400,
    idle_gap_ms: float = 1000.0,
) -> str:
    """A waterfall of spans (``a3s_nb.spans()``) as an inline SVG.

    One bar (an SVG ``g.a3s-span``) per span on a shared time axis, children under their
    parent (run > turn > tool), coloured by status, the duration as a label and the details
    in a hover tooltip. ``labels`` maps span ids to row labels (e.g. run id -> prompt).
    Idle time between runs longer than ``idle_gap_ms`` is cut out of the axis and marked
    with a dashed line, so a session resumed a day later still shows its work rather than
    mostly empty space. At most ``max_rows`` spans are drawn.

    >>> from a3s_nb import spans                                      # doctest: +SKIP
    >>> html = timeline_html(spans("sessions", ids="fix-oscar-2-000"))  # doctest: +SKIP
    """
    if spans is None or len(spans) == 0:
        return (
            f'<div class="a3s-timeline" style="font-family:{FONT};color:{FG_MUTED};'
            'font-size:13px;padding:6px">(no spans)</div>'
        )
    rows = _ordered_spans(spans, labels or {})[:max_rows]
    hidden = len(spans) - len(rows)

    # The axis shows busy time: top-level spans (runs) merged, gaps longer than idle_gap_ms
    # cut out. Children that stick out of their run still get a place on it.
    intervals = sorted((r["start_ms"], r["end_ms"]) for r in rows)
    segments: list[list[float]] = []
    for s, e in intervals:
        if segments and s <= segments[-1][1] + idle_gap_ms:
            segments[-1][1] = max(segments[-1][1], e)
        else:
            segments.append([s, e])
    break_px = 24
    busy_ms = sum(e - s for s, e in segments) or 1.0
    plot_w = width - label_width - 70
    scale = (plot_w - break_px * (len(segments) - 1)) / busy_ms
    offsets: list[tuple[float, float, float]] = []
    x = 0.0
    for s, e in segments:
        offsets.append((s, e, x))
        x += (e - s) * scale + break_px

    def xpos(t: float) -> float:
        for s, e, off in offsets:
            if t <= e:
                return label_width + off + max(0.0, t - s) * scale
        s, e, off = offsets[-1]
        return label_width + off + (e - s) * scale

    top = 30
    height = top + row_height * len(rows) + 8
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="a3s-timeline-svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" '
        'font-size="11" role="img">'
    ]
    if title:
        parts.append(f"<title>{esc(title)}</title>")

    # legend: the statuses present
    statuses = list(dict.fromkeys(r["status"] or "unset" for r in rows))
    lx = 6.0
    for st in statuses:
        parts.append(
            f'<rect x="{lx:.0f}" y="{top - 17}" width="10" height="10" rx="2" '
            f'fill="{_span_color(st)}"/><text x="{lx + 14:.0f}" y="{top - 8}" '
            f'fill="#78909c">{esc(st)}</text>'
        )
        lx += 22 + 7 * len(st)

    # axis: ticks in busy time since the first span
    step = _nice_step(busy_ms)
    elapsed = 0.0
    for i, (s, e, off) in enumerate(offsets):
        t = math.ceil(elapsed / step) * step
        while t <= elapsed + (e - s) + 1e-9:
            xt = label_width + off + (t - elapsed) * scale
            parts.append(
                f'<line x1="{xt:.1f}" x2="{xt:.1f}" y1="{top - 4}" y2="{height - 6}" '
                'stroke="#90a4ae" stroke-opacity="0.35" stroke-width="1"/>'
                f'<text x="{xt:.1f}" y="{top - 8}" text-anchor="middle" fill="#78909c">'
                f"{esc(fmt_duration(t) if t else '0')}</text>"
            )
            t += step
        elapsed += e - s
        if i + 1 < len(offsets):
            gap = offsets[i + 1][0] - e
            xb = label_width + off + (e - s) * scale + break_px / 2
            parts.append(
                f'<g class="a3s-break"><title>idle {esc(fmt_duration(gap))}</title>'
                f'<line x1="{xb:.1f}" x2="{xb:.1f}" y1="{top - 4}" y2="{height - 6}" '
                'stroke="#78909c" stroke-dasharray="3,3"/></g>'
            )

    for i, r in enumerate(rows):
        y = top + i * row_height
        h = _KIND_HEIGHT.get(r["kind"], 11)
        x0 = xpos(r["start_ms"])
        x1 = max(xpos(r["end_ms"]), x0 + 2)
        color = _span_color(r["status"])
        tip = (
            f"{r['label']}\n{r['kind']} \u00b7 {r['status'] or 'unset'} \u00b7 "
            f"{fmt_duration(r['duration_ms'])}\nstart {_fmt_ms_time(r['start_ms'])} UTC"
        )
        weight = ' font-weight="bold"' if r["depth"] == 0 else ""
        parts.append(
            f'<g class="a3s-span" data-kind="{esc(r["kind"])}" data-status="{esc(r["status"])}"'
            f' data-span-id="{esc(r["span_id"])}"><title>{esc(tip)}</title>'
            f'<text x="{6 + 12 * r["depth"]}" y="{y + row_height / 2 + 4:.1f}" '
            f'fill="#546e7a"{weight}>{esc(_shorten(r["label"], 38 - 2 * r["depth"]))}</text>'
            f'<rect x="{x0:.1f}" y="{y + (row_height - h) / 2:.1f}" width="{x1 - x0:.1f}" '
            f'height="{h}" rx="2" fill="{color}" '
            f'fill-opacity="{_KIND_OPACITY.get(r["kind"], 0.9)}" stroke="{color}"/>'
            f'<text x="{x1 + 4:.1f}" y="{y + row_height / 2 + 4:.1f}" fill="#78909c">'
            f"{esc(fmt_duration(r['duration_ms']))}</text></g>"
        )
    parts.append("</svg>")
    note = (
        f'<div style="color:{FG_MUTED};font-size:12px">\u2026 {hidden:,} more spans not drawn</div>'
        if hidden > 0
        else ""
    )
    head = (
        f'<div style="font-size:12px;color:{FG_MUTED};padding:2px 0">{esc(title)}</div>'
        if title
        else ""
    )
    return (
        f'<div class="a3s-timeline" style="font-family:{FONT};overflow-x:auto">'
        f"{head}{''.join(parts)}{note}</div>"
    )


def _span_color(status: str) -> str:
    return SPAN_COLORS.get(status) or status_color(status)


def _ordered_spans(spans: pd.DataFrame, labels: dict[str, str]) -> list[dict[str, Any]]:
    """Spans as plain dicts in waterfall order: each parent followed by its children."""
    missing = {"span_id", "kind", "name", "start", "end"} - set(spans.columns)
    if missing:
        raise ValueError(f"not a spans frame (a3s_nb.spans()): missing columns {sorted(missing)}")
    rows: list[dict[str, Any]] = []
    for i, rec in enumerate(spans.to_dict("records")):
        start = _ms(rec["start"])
        end = _ms(rec["end"]) if _present(rec["end"]) else start
        dur = rec.get("duration_ms")
        if not _present(dur):
            dur = end - start
        kind = str(rec["kind"])
        sid = str(rec["span_id"])
        name = str(rec["name"]) if _present(rec["name"]) else kind
        status = rec.get("status")
        rows.append(
            {
                "span_id": sid,
                "parent": str(rec["parent_span_id"])
                if _present(rec.get("parent_span_id"))
                else None,
                "kind": kind,
                "label": labels.get(sid) or name,
                "start_ms": start,
                "end_ms": max(end, start),
                "duration_ms": float(dur),
                "status": str(status) if _present(status) else "",
                "order": i,
            }
        )
    by_id = {r["span_id"] for r in rows}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for r in rows:
        children.setdefault(r["parent"] if r["parent"] in by_id else None, []).append(r)
    ordered: list[dict[str, Any]] = []

    def walk(parent: str | None, depth: int) -> None:
        for r in sorted(children.get(parent, []), key=lambda r: (r["start_ms"], r["order"])):
            r["depth"] = depth
            ordered.append(r)
            walk(r["span_id"], depth + 1)

    walk(None, 0)
    return ordered


# =========================================================================== diff

#: Colour and label of each ``change`` of a diff row.
CHANGE_STYLES: dict[str, tuple[str, str, str]] = {  # change -> (colour, background, label)
    "same": ("#59636e", "transparent", "same"),
    "changed": ("#9a6700", "rgba(212,167,44,.12)", "changed"),
    "only_a": ("#c62828", "rgba(198,40,40,.08)", "only in A"),
    "only_b": ("#2e7d32", "rgba(46,125,50,.08)", "only in B"),
}


def shared_prefix(df: pd.DataFrame) -> int:
    """How many leading prompts of a :func:`a3s_nb.diff` frame are the same in both."""
    n = 0
    for rec in df[df["kind"] == "prompt"].itertuples():
        if rec.change != "same":
            break
        n += 1
    return n


def _side(rec: Any, side: str) -> str:
    """One side of a diff row: a prompt with its status and answer, or a tool call."""

    def get(col: str) -> Any:
        value = getattr(rec, f"{col}_{side}")
        return None if not _present(value) else value

    number = get("prompt")
    if rec.kind == "prompt":
        if number is None:
            return f'<div style="color:{FG_MUTED};font-style:italic">(no such prompt)</div>'
        status = get("status")
        badge = _badge(str(status), status_color(status)) if status else ""
        answer = get("text") or ""
        return (
            f'<div style="font-weight:600">prompt {int(number)} {badge}</div>'
            f'<div class="a3s-diff-prompt-text" style="white-space:pre-wrap;margin:2px 0">'
            f"{esc(get('prompt_text') or '')}</div>"
            f'<div style="color:{FG_MUTED};font-size:12px;white-space:pre-wrap">'
            f"{esc(_shorten(answer, 300))}</div>"
        )
    if get("tool") is None:
        return ""
    status = get("status")
    mark = _badge(str(status), "#c62828" if status == "error" else "#2e7d32")
    result = get("text") or ""
    first = _shorten(result.strip().splitlines()[0] if result.strip() else "(empty)", 80)
    return (
        f'<div><span style="font-family:{MONO};font-weight:600">{esc(get("tool"))}</span> '
        f'<span style="color:{FG_MUTED};font-family:{MONO};font-size:12px">'
        f"{esc(_shorten(get('args') or '', 80))}</span></div>"
        f'<div style="font-size:12px">{mark} <span style="font-family:{MONO};'
        f'color:{FG_MUTED}">{esc(first)}</span></div>'
    )


def _diff_row(rec: Any) -> str:
    color, background, label = CHANGE_STYLES.get(str(rec.change), CHANGE_STYLES["same"])
    kind = str(rec.kind)
    pad = "4px 8px" if kind == "prompt" else "2px 8px 2px 24px"  # tool calls indented
    label_pad = "4px 8px" if kind == "prompt" else "2px 8px 2px 16px"
    top = f"border-top:1px solid {BORDER};" if kind == "prompt" else ""
    cell = f"padding:{pad};min-width:0;overflow-wrap:anywhere"
    return (
        f'<div class="a3s-diff-row a3s-diff-{kind}" data-change="{esc(rec.change)}" '
        f'style="display:grid;grid-template-columns:88px 1fr 1fr;{top}background:{background}">'
        f'<div style="padding:{label_pad};font-size:11px;color:{color};font-weight:600;'
        'white-space:nowrap">'
        f"{esc(label) if kind == 'prompt' or rec.change != 'same' else ''}</div>"
        f'<div class="a3s-diff-a" style="{cell};border-right:1px solid {BORDER}">'
        f"{_side(rec, 'a')}</div>"
        f'<div class="a3s-diff-b" style="{cell}">{_side(rec, "b")}</div></div>'
    )


def _summary_table(summary: Sequence[dict[str, Any]], a: str, b: str) -> str:
    head = (
        f'<tr><th style="text-align:left;padding:2px 8px"></th>'
        f'<th style="text-align:left;padding:2px 8px">A: {esc(a)}</th>'
        f'<th style="text-align:left;padding:2px 8px">B: {esc(b)}</th>'
        f'<th style="text-align:left;padding:2px 8px">difference</th></tr>'
    )
    body = ""
    for row in summary:
        if row["metric"] == "session_id":
            continue
        label = "duration" if row["metric"] == "duration_ms" else row["metric"]
        diff, a_value, b_value = row["difference"], row["a"], row["b"]
        shown = "" if diff is None else (f"{diff:+d}" if isinstance(diff, int) else str(diff))
        if row["metric"] == "duration_ms":  # as a duration, like everywhere else
            a_value, b_value = fmt_duration(a_value), fmt_duration(b_value)
            diff = diff or 0
            shown = f"{'+' if diff >= 0 else '-'}{fmt_duration(abs(diff))}"
        weight = "font-weight:600;" if diff is not None else ""
        body += (
            f'<tr><td style="padding:1px 8px;color:{FG_MUTED}">{esc(label)}</td>'
            f'<td style="padding:1px 8px">{esc("" if a_value is None else a_value)}</td>'
            f'<td style="padding:1px 8px">{esc("" if b_value is None else b_value)}</td>'
            f'<td style="padding:1px 8px;{weight}">{esc(shown)}</td></tr>'
        )
    return (
        f'<table class="a3s-diff-summary" style="border-collapse:collapse;font-size:12px;'
        f'margin:4px 0 8px 0">{head}{body}</table>'
    )


def diff_html(
    df: pd.DataFrame,
    *,
    show_shared: bool = False,
    changes_only: bool = False,
    static: bool = True,
) -> str:
    """Two sessions side by side from a :func:`a3s_nb.diff` frame: A left, B right.

    The prompts both sessions share at the start (a fork and its parent) are collapsed
    unless ``show_shared``; ``changes_only`` leaves out every row that is the same.
    ``static`` renders the collapsed prefix as a ``<details>`` a reader can open (for
    saved outputs); the live widget has its own button instead.
    """
    a, b = df.attrs.get("a", "A"), df.attrs.get("b", "B")
    shared = shared_prefix(df)
    rows = list(df.itertuples(index=False))
    prompt_no = 0
    head_rows: list[str] = []
    rest_rows: list[str] = []
    for rec in rows:
        if rec.kind == "prompt":
            prompt_no += 1
        in_prefix = prompt_no <= shared
        if changes_only and rec.change == "same":
            continue
        (head_rows if in_prefix else rest_rows).append(_diff_row(rec))
    counts = df[df["kind"] == "prompt"]["change"].value_counts()
    tally = ", ".join(
        f"{int(counts.get(c, 0))} {CHANGE_STYLES[c][2]}" for c in CHANGE_STYLES if counts.get(c, 0)
    )
    title = (
        f'<div style="font-weight:600;margin-bottom:2px">A: {esc(a)} \u2194 B: {esc(b)}</div>'
        f'<div style="color:{FG_MUTED};font-size:12px">prompts: {esc(tally or "none")}</div>'
    )
    label = f"{shared} shared prompt{'s' if shared != 1 else ''} (the same in both)"
    if not shared or changes_only:
        prefix = ""
    elif show_shared:
        prefix = f'<div class="a3s-diff-shared a3s-open">{"".join(head_rows)}</div>'
    elif static:
        prefix = (
            f'<details class="a3s-diff-shared"><summary style="cursor:pointer;padding:4px 8px;'
            f'color:{FG_MUTED}">{esc(label)}</summary>{"".join(head_rows)}</details>'
        )
    else:
        prefix = (
            f'<div class="a3s-diff-shared a3s-collapsed" style="padding:4px 8px;'
            f'color:{FG_MUTED};border-top:1px solid {BORDER}">\u25b8 {esc(label)}, hidden</div>'
        )
    columns = (
        f'<div style="display:grid;grid-template-columns:88px 1fr 1fr;font-size:12px;'
        f'font-weight:600;color:{FG_MUTED}"><div style="padding:2px 8px"></div>'
        f'<div style="padding:2px 8px">A: {esc(a)}</div>'
        f'<div style="padding:2px 8px">B: {esc(b)}</div></div>'
    )
    return (
        f'<div class="a3s-diff" style="font-family:{FONT};font-size:13px;line-height:1.45;color:{FG};'
        f'border:1px solid {BORDER};border-radius:6px;padding:8px">'
        f"{title}{_summary_table(df.attrs.get('summary', []), a, b)}{columns}"
        f"{prefix}{''.join(rest_rows)}</div>"
    )
