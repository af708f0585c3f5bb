"""Walking a session's run records once: run statistics, the ``sessions`` summary row,
and the spans derived from run events.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from ..errors import CorruptFileError
from ..store._tokens import USAGE_KEYS as _USAGE_KEYS
from ..store._tokens import add_counts
from ..store._tokens import add_usage as _add_usage
from ..store.store import LINEAGE_COLUMNS, read_lineage
from . import schema
from ._runfile import (
    K_AGENT_END,
    K_PLANNING_END,
    K_PLANNING_START,
    K_STEP_END,
    K_STEP_START,
    K_TOOL_END,
    K_TOOL_START,
    K_TURN_END,
    K_TURN_START,
    Run,
    Snapshot,
    last_timestamp,
    runs_of,
)
from ._sources import _RUN_FRAMES, _Source
from .cost import default_pricer

# ============================================================================ summaries

_SESSION_COLS = [c.name for c in schema.columns("sessions")]
_S = {name: i for i, name in enumerate(_SESSION_COLS)}
_S_CREATED, _S_UPDATED = _S["created_at"], _S["updated_at"]
_S_FIRST_RUN, _S_LAST_RUN = _S["first_run_at"], _S["last_run_at"]

_TERMINAL = {"completed", "failed", "cancelled"}
_VERIFICATION_RANK = {"failed": 0, "needs_review": 1, "passed": 2, "skipped": 3}
_IDENTITY = ("tenant_id", "principal", "agent_template_id", "correlation_id")


def _d(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _l(value: Any) -> list:
    return value if isinstance(value, list) else []


def _int(value: Any) -> int | None:
    return value if type(value) is int else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _session_model(session: dict) -> str | None:
    model = _str(session.get("model_name"))
    if model:
        return model
    llm = _d(session.get("llm_config"))
    if isinstance(llm.get("provider"), str) and isinstance(llm.get("model"), str):
        return f"{llm['provider']}/{llm['model']}"
    return None


class _RunStats:
    """What one walk over a run's events learns; feeds ``runs`` and ``sessions`` rows.

    Filled only by ``_run_stats``, for every frame that needs it.
    """

    __slots__ = (
        "cost",
        "created",
        "end_usage",
        "first_token_ms",
        "llm_duration_ms",
        "meta",
        "model",
        "n_steps",
        "n_tool_calls",
        "n_tool_errors",
        "n_turns",
        "provider",
        "status",
        "turn_usages",
        "updated",
        "usage",
        "verification_status",
    )

    def __init__(self, snap: Snapshot):
        self.status = snap.status
        self.created = snap.created_at_ms
        self.updated = snap.updated_at_ms
        self.n_turns = self.n_steps = self.n_tool_calls = self.n_tool_errors = 0
        self.turn_usages: list = []
        self.end_usage: Any = None
        self.meta: Any = None
        self.verification_status: str | None = None
        self.cost: tuple | None = None  # (model, provider, dollars), once asked

    def agent_end(self, e: Any) -> None:
        self.end_usage = e.usage
        if type(e.x_meta) is dict:
            self.meta = e.x_meta
        self.verification_status = _str(_d(e.x_verification_summary).get("status"))

    def close(self) -> None:
        """Totals from the counters: tokens, model, timings."""
        usage: list = [None] * 5
        if type(self.end_usage) is dict:
            _add_usage(usage, self.end_usage)
        else:
            for u in self.turn_usages:
                if type(u) is dict:
                    _add_usage(usage, u)
        for k in range(3):  # the three totals are sums: nothing reported is 0, not unknown
            if usage[k] is None:
                usage[k] = 0
        self.usage = usage
        meta = self.meta or {}
        self.provider = _str(meta.get("provider"))
        answered = _str(meta.get("response_model")) or _str(meta.get("request_model"))
        if answered:
            self.model = f"{self.provider}/{answered}" if self.provider else answered
        else:
            self.model = None
        self.first_token_ms = _int(meta.get("first_token_ms"))
        self.llm_duration_ms = _int(meta.get("duration_ms"))


def _run_cost(st: _RunStats, model: Any, provider: str | None) -> float | None:
    """The run's cost (a3s_nb.frames.cost): its turns priced one by one, at the run's time.

    Worked out once per run (``runs`` and ``sessions`` both ask)."""
    if st.cost is None or st.cost[0] != model or st.cost[1] != provider:
        dollars = default_pricer().run_cost(
            model, provider, st.turn_usages, st.end_usage, st.created
        )
        st.cost = (model, provider, dollars)
    return st.cost[2]


#: The kinds of events that open or close spans.
_SPAN_KINDS = frozenset(
    {
        K_TURN_START,
        K_TURN_END,
        K_TOOL_START,
        K_TOOL_END,
        K_STEP_START,
        K_STEP_END,
        K_PLANNING_START,
        K_PLANNING_END,
    }
)


def _run_stats(
    run: Run,
    spans: list | None = None,
    run_id: str | None = None,
    tool_ends: list | None = None,
) -> _RunStats:
    """The one walk over a run's events: counts, tokens, model; and its spans when asked.
    ``tool_ends`` (unless None) gets ``(event, start ms)`` of each ``tool_end`` event, the
    start being the timestamp of the last ``tool_start`` of its id before it (the tool
    calls the ``traces`` frame attributes its rows to)."""
    events = run.events
    st = _RunStats(run.snapshot)
    walker = _SpanWalker(run_id or "", st, spans) if spans is not None else None
    turn_usages = st.turn_usages
    started: dict[Any, Any] | None = {} if tool_ends is not None else None
    for rec in events:
        e = rec.event
        kind = e.kind
        if not kind:
            continue
        if kind == K_TURN_START:
            st.n_turns += 1
        elif kind == K_TOOL_END:
            st.n_tool_calls += 1
            if e.exit_code not in (0, None):
                st.n_tool_errors += 1
            if started is not None:
                tool_ends.append((e, started.get(e.tool_call_id)))  # type: ignore[union-attr]
        elif kind == K_TOOL_START:
            if started is not None:
                started[e.tool_call_id] = rec.timestamp_ms
        elif kind == K_TURN_END:
            turn_usages.append(e.usage)
        elif kind == K_STEP_START:
            st.n_steps += 1
        elif kind == K_AGENT_END:
            st.agent_end(e)
            continue
        if walker is not None and kind in _SPAN_KINDS:
            walker.event(rec, e, kind)
    st.close()
    if walker is not None:
        walker.finish(last_timestamp(events))
    return st


def _lineage_values(source: Any, session_id: str) -> dict[str, Any]:
    """The lineage columns of a session (its lineage record), all None when it has none."""
    store = getattr(source, "store", None)
    rec = None
    has = getattr(source, "has_lineage", None)
    if store is not None and (has is None or has(session_id)):
        try:
            rec = read_lineage(store, session_id)
        except CorruptFileError:
            rec = None
    if not rec:
        return dict.fromkeys(LINEAGE_COLUMNS)
    created = pd.Timestamp(rec["created_at"]) if rec.get("created_at") else None
    return {
        "lineage_kind": _str(rec.get("kind")),
        "lineage_parent_id": _str(rec.get("parent_id")),
        "lineage_at_prompt": _int(rec.get("at_prompt")),
        "lineage_created_at": int(created.timestamp() * 1000) if created is not None else None,
        "lineage_model": _str(rec.get("model")),
        "lineage_edits": _edits(rec),
    }


def _edits(rec: dict[str, Any]) -> int:
    """How many tool results a fork edited (a record without ``edits``: none)."""
    edits = rec.get("edits")
    return len(edits) if isinstance(edits, list) else 0


def _summary_row(
    session_id: str,
    session: dict,
    stats: list[_RunStats],
    traces: Any,
    reports: Any,
    lineage: dict[str, Any] | None = None,
) -> tuple[list[Any], list[str]]:
    """One ``sessions`` row (raw Python values, times in ms) and the run statuses seen."""
    messages = _l(session.get("messages"))
    user_messages = 0
    for m in messages:
        if type(m) is dict and m.get("role") == "user":
            for b in _l(m.get("content")):
                if type(b) is dict and b.get("type") == "text":
                    user_messages += 1
                    break
    config = _d(session.get("config"))
    created = _int(session.get("created_at"))
    updated = _int(session.get("updated_at"))
    counts = {"completed": 0, "failed": 0, "cancelled": 0}
    unfinished = 0
    usage: list = [0, 0, 0, None, None]
    tools = tool_errors = 0
    first = last = None
    latest_model = None
    latest_created = None
    session_model = _session_model(session)
    cost: float | None = 0.0
    for st in stats:
        run_model = st.model or session_model
        provider = st.provider
        if provider is None and isinstance(run_model, str) and "/" in run_model:
            provider = run_model.split("/", 1)[0]
        run_cost = _run_cost(st, run_model, provider)
        cost = None if cost is None or run_cost is None else cost + run_cost
        if st.status in counts:
            counts[st.status] += 1
        else:
            unfinished += 1
        tools += st.n_tool_calls
        tool_errors += st.n_tool_errors
        add_counts(usage, st.usage)
        if st.created is not None and (first is None or st.created < first):
            first = st.created
        end = st.updated if st.updated is not None else st.created
        if end is not None and (last is None or end > last):
            last = end
        if st.model and (latest_created is None or (st.created or 0) >= latest_created):
            latest_model, latest_created = st.model, st.created or 0
    vstatus = None
    report_list = _l(reports)
    for r in report_list:
        s = _d(r).get("status")
        if isinstance(s, str) and (
            vstatus is None or _VERIFICATION_RANK.get(s, 9) < _VERIFICATION_RANK.get(vstatus, 9)
        ):
            vstatus = s
    values = {
        "session_id": session_id,
        "parent_id": _str(session.get("parent_id")),
        "model": session_model or latest_model,
        "workspace": _str(config.get("workspace")),
        "state": _str(session.get("state")),
        "created_at": created * 1000 if created is not None else None,
        "updated_at": updated * 1000 if updated is not None else None,
        "first_run_at": first,
        "last_run_at": last,
        "n_messages": len(messages),
        "n_user_messages": user_messages,
        "n_runs": len(stats),
        "n_runs_completed": counts["completed"],
        "n_runs_failed": counts["failed"],
        "n_runs_cancelled": counts["cancelled"],
        "n_runs_unfinished": unfinished,
        "n_tool_calls": tools,
        "n_tool_errors": tool_errors,
        "n_trace_events": len(_l(traces)),
        **dict(zip(_USAGE_KEYS, usage, strict=True)),
        "n_verification_reports": len(report_list),
        "verification_status": vstatus,
        **{k: _str(session.get(k)) for k in _IDENTITY},
        "cost_usd": cost,
        **(lineage or dict.fromkeys(LINEAGE_COLUMNS)),
    }
    statuses = sorted({st.status for st in stats if st.status is not None})
    return [values[c] for c in _SESSION_COLS], statuses


def _summarize(source: _Source, session_id: str) -> tuple[list[Any], list[str]] | None:
    """A ``sessions`` row from the files; None if the session was deleted meanwhile."""
    parts = source.read(session_id, ("session", "runs", "traces", "verification"))
    session = parts["session"]
    if session is None:
        return None
    if not isinstance(session, dict):
        raise CorruptFileError(_where(source, session_id, "session"), "not a JSON object")
    sid = _str(session.get("id")) or session_id
    stats = [_run_stats(r) for r in runs_of(parts["runs"])]
    return _summary_row(
        sid,
        session,
        stats,
        parts["traces"],
        parts["verification"],
        _lineage_values(source, sid),
    )


def _file_of(source: _Source, frame: str) -> Callable[[str], str]:
    """``session_id -> path`` of the file a frame's rows come from (for error entries)."""
    part = {"traces": "traces", "verification": "verification"}.get(
        frame, "runs" if frame in _RUN_FRAMES else "session"
    )
    return lambda session_id: _where(source, session_id, part)


def _where(source: _Source, session_id: str, part: str) -> str:
    store = source.store
    return store.location(session_id, part) if store is not None else f"{session_id}/{part}"


# ============================================================================ spans


class _Span:
    """One span row, by name (the ``spans`` columns; ``usage`` holds the five token counts)."""

    __slots__ = (
        "end",
        "exit_code",
        "kind",
        "name",
        "parent_span_id",
        "sequence_end",
        "sequence_start",
        "span_id",
        "start",
        "status",
        "step_number",
        "tool_call_id",
        "tool_name",
        "turn",
        "usage",
    )

    def __init__(
        self, span_id: str, parent_span_id: Any, kind: str, name: Any, start: Any, seq: Any
    ):
        self.span_id, self.parent_span_id, self.kind, self.name = (
            span_id,
            parent_span_id,
            kind,
            name,
        )
        self.start, self.sequence_start = start, seq
        self.end = self.status = self.turn = self.step_number = None
        self.tool_call_id = self.tool_name = self.exit_code = self.sequence_end = None
        self.usage: list | None = None


class _SpanWalker:
    """Turns one run's events into spans: run > planning | step > turn > tool."""

    __slots__ = ("ids", "last_ts", "open_tools", "out", "planning", "run", "st", "step", "turn")

    def __init__(self, run_id: str, st: _RunStats, out: list[_Span]):
        self.st = st
        self.out = out
        self.ids: set[str] = {run_id}
        self.run = _Span(run_id, None, "run", "run", None, None)
        out.append(self.run)
        self.planning = self.step = self.turn = None
        self.open_tools: dict[Any, _Span] = {}
        self.last_ts = None

    def _open(self, kind: str, name: Any, parent: _Span, ts: Any, seq: Any) -> _Span:
        base = f"{self.run.span_id}:{seq}"
        span_id, k = base, 1
        while span_id in self.ids:
            span_id, k = f"{base}.{k}", k + 1
        self.ids.add(span_id)
        span = _Span(span_id, parent.span_id, kind, name, ts, seq)
        if self.step is not None and kind != "step":
            span.step_number = self.step.step_number
        self.out.append(span)
        return span

    def _context(self) -> _Span:
        return self.step if self.step is not None else self.run

    def event(self, rec: Any, e: Any, kind: int) -> None:
        """One event of a span kind (``rec`` its record, ``e`` the event)."""
        ts = rec.timestamp_ms
        seq = rec.sequence
        if type(ts) is int and (self.last_ts is None or ts > self.last_ts):
            self.last_ts = ts
        if kind == K_TOOL_START:
            parent = self.turn if self.turn is not None else self._context()
            span = self._open("tool", _str(e.tool_name), parent, ts, seq)
            span.turn = parent.turn if parent is self.turn else None
            span.tool_call_id = _str(e.tool_call_id)
            span.tool_name = span.name
            self.open_tools[e.tool_call_id] = span
        elif kind == K_TOOL_END:
            span = self.open_tools.pop(e.tool_call_id, None)
            if span is None:  # an end without a start: a zero-length span
                parent = self.turn if self.turn is not None else self._context()
                span = self._open("tool", _str(e.tool_name), parent, ts, seq)
                span.tool_call_id, span.tool_name = _str(e.tool_call_id), _str(e.tool_name)
            code = _int(e.exit_code)
            span.end, span.exit_code, span.sequence_end = ts, code, seq
            span.status = "ok" if code == 0 else ("error" if code is not None else "unset")
        elif kind == K_TURN_START:
            if self.turn is not None:
                self._close(self.turn, "unset", ts)
            self.turn = self._open("turn", f"turn {e.turn}", self._context(), ts, seq)
            self.turn.turn = _int(e.turn)
        elif kind == K_TURN_END:
            if self.turn is not None and self.turn.end is None:
                span = self.turn
                span.end, span.status, span.sequence_end = ts, "ok", seq
                usage: list = [None] * 5
                _add_usage(usage, _d(e.usage))
                span.usage = usage
        elif kind == K_STEP_START:
            self._close_step("unset", ts)
            name = _str(e.text) or f"step {e.step_number}"
            self.step = self._open("step", name, self.run, ts, seq)
            self.step.step_number = _int(e.step_number)
        elif kind == K_STEP_END:
            if self.step is not None:
                status = e.status
                self.step.end, self.step.sequence_end = ts, seq
                self.step.status = {"completed": "ok", "failed": "error"}.get(status, "unset")
                self._close_inner("unset", ts)
                self.step = None
        elif kind == K_PLANNING_START:
            self.planning = self._open("planning", "planning", self.run, ts, seq)
        elif kind == K_PLANNING_END and self.planning is not None:
            self.planning.end, self.planning.status, self.planning.sequence_end = ts, "ok", seq
            self.planning = None

    def _close(self, span: _Span, status: str, ts: Any) -> None:
        """End a span its own closing event never ended, at ``ts``."""
        if span.end is None:
            if type(ts) is not int or (type(span.start) is int and ts < span.start):
                ts = span.start
            span.end = ts
            span.status = status

    def _close_inner(self, status: str, ts: Any) -> None:
        if self.turn is not None:
            self._close(self.turn, status, ts)
            self.turn = None

    def _close_step(self, status: str, ts: Any) -> None:
        self._close_inner(status, ts)
        if self.step is not None:
            self._close(self.step, status, ts)
            self.step = None

    def finish(self, last_ts: int | None) -> None:
        """Close what the events left open, at the run's last event, and fill the run."""
        if self.last_ts is not None and (last_ts is None or self.last_ts > last_ts):
            last_ts = self.last_ts
        self.last_ts = last_ts
        st = self.st
        left_open = "error" if st.status in ("failed", "cancelled") else "unset"
        for span in self.open_tools.values():
            self._close(span, left_open, last_ts)
        self._close_step(left_open, last_ts)
        if self.planning is not None:
            self._close(self.planning, left_open, last_ts)
        run = self.run
        run.start = st.created if st.created is not None else self._first_start()
        ends = [v for v in (st.updated, self.last_ts) if v is not None]
        run.end = max(ends) if ends else run.start
        run.status = {"completed": "ok", "failed": "error", "cancelled": "error"}.get(
            st.status, "unset"
        )
        run.usage = st.usage

    def _first_start(self) -> Any:
        starts = [s.start for s in self.out[1:] if type(s.start) is int]
        return min(starts) if starts else self.last_ts
