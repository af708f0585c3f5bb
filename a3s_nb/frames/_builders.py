"""One builder per frame: the rows of each session appended column by column."""

from __future__ import annotations

import ctypes
import operator
import sys
from collections.abc import Callable
from typing import Any

import pandas as pd

from .._warn import warn
from ..errors import CorruptSessionWarning
from ..store._tokens import USAGE_KEYS as _USAGE_KEYS
from ..store._traceorigin import (
    AGENT,
    Call,
    Trace,
    attribute,
    output_size,
    program_steps,
    verify_checks,
)
from . import _columns, schema
from ._columns import (
    _array,
    _chunk,
    _Codes,
    _dense,
    _finish,
    _frame,
    _json,
    _Repeat,
    _too_big,
)
from ._runfile import K_TOOL_END, TYPE_NAMES, Record, Run
from ._runfile import MEMO_EVENTS as _MEMO_EVENTS
from ._walk import (
    _S_UPDATED,
    _SESSION_COLS,
    _d,
    _int,
    _l,
    _run_cost,
    _RunStats,
    _Span,
    _str,
)

# ============================================================================ builders


#: Rows a builder holds as Python objects before it moves them into Arrow arrays. This
#: bounds the memory of a large build: Python objects cost several times their Arrow size
#: and, kept long, pin the allocator's memory full of freed JSON.
CHUNK_ROWS = 32_768


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None on another C library or system."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # musl, or no C library to load
        return None


#: Handing back what a flushed chunk freed. The values of a chunk's rows (the parsed JSON
#: they came from, the Python lists) are freed in small pieces that glibc's allocator keeps
#: for later, so a build's resident set grew to the peak of every chunk at once and stayed
#: there: at 5,000 sessions, trimming after each flush took the peak of a cold build in a
#: new process from 666 to 597 MiB (1.58x to 1.41x the bytes read) for 0.1 s of CPU.
_TRIM = _malloc_trim()


class _Builder:
    """One frame's columns: filled session by session as Python lists (``cols``, ``n``
    rows), moved into Arrow chunks every ``CHUNK_ROWS`` rows, made a DataFrame once."""

    def __init__(self, frame: str):
        self.frame = frame
        self.columns = schema.columns(frame)
        self.chunks: dict[str, list] = {c.name: [] for c in self.columns}
        self.n = 0
        self.cols = self.fresh()
        #: Values kept out of the frame (ints beyond int64), as ``attrs["errors"]`` entries.
        self.notes: list[dict] = []
        #: The file a frame row comes from, for those entries: ``where(session_id)``.
        self.where: Callable[[str], str] = lambda session_id: session_id

    def fresh(self) -> dict[str, Any]:
        """Empty column containers: a list per column, unless a builder knows better."""
        return {c.name: [] for c in self.columns}

    def take_columns(self) -> dict[str, Any]:
        """The pending columns, each as a list, a sparse dict or a _Repeat."""
        return self.cols

    def maybe_flush(self) -> None:
        if self.n >= CHUNK_ROWS and _columns.pa is not None:
            self.flush()

    def _lost(self, col: str, session_ids: Any, n: int) -> Callable[[list], None]:
        """Note the ints of ``col`` that do not fit int64 (they become <NA>)."""

        def note(big: list[tuple[int, int]]) -> None:
            sids = _dense(session_ids, n)
            seen: set[tuple[str, str]] = set()
            for row, value in big:
                sid = sids[row]
                if (sid, col) in seen:
                    continue
                seen.add((sid, col))
                problem = (
                    f"{self.frame}.{col}: {value} does not fit a 64-bit integer; "
                    "the session is kept and the value shown as <NA>"
                )
                self.notes.append({"session_id": sid, "path": self.where(sid), "problem": problem})
                warn(f"session {sid!r}: {problem}", CorruptSessionWarning)

        return note

    def flush(self) -> None:
        cols, n = self.take_columns(), self.n
        sids = cols.get("session_id")
        for col in self.columns:
            lost = self._lost(col.name, sids, n) if col.kind in ("int", "timestamp") else None
            self.chunks[col.name].append(_chunk(col, cols.pop(col.name), n, lost))
        self.n = 0
        self.cols = self.fresh()
        if _TRIM is not None:
            _TRIM(0)

    def frame_df(self, errors: list[dict]) -> pd.DataFrame:
        if _columns.pa is None:
            cols, n = self.take_columns(), self.n
            sids = cols.get("session_id")
            data = {}
            for col in self.columns:
                values = cols.pop(col.name)
                if col.kind in ("int", "timestamp"):
                    big = _too_big(_dense(values, n))
                    if big:
                        self._lost(col.name, sids, n)(big)
                data[col.name] = _array(col, values, n)
        else:
            self.flush()
            data = {col.name: _finish(col, self.chunks.pop(col.name)) for col in self.columns}
        return _frame(self.frame, data, [*errors, *self.notes])


class _MessagesBuilder(_Builder):
    """Rows as tuples (``_MESSAGE_COLS`` order), turned into columns a block at a time."""

    def __init__(self) -> None:
        super().__init__("messages")

    def fresh(self) -> dict[str, Any]:
        return {"rows": [], "session_id": _Repeat()}

    def take_columns(self) -> dict[str, Any]:
        c = self.cols
        rows = c.pop("rows")
        columns = [list(col) for col in zip(*rows, strict=True)]
        for name, col in zip(_MESSAGE_COLS, columns or [[] for _ in _MESSAGE_COLS], strict=True):
            c[name] = col
        return c

    def add(self, session_id: str, session: dict) -> None:
        rows = self.cols["rows"]
        n = len(rows)
        tool_names: dict[str, str] = {}
        user_message = -1
        for m_index, m in enumerate(_l(session.get("messages"))):
            m = _d(m)
            role = _str(m.get("role"))
            blocks = _l(m.get("content"))
            if role == "user" and any(_d(b).get("type") == "text" for b in blocks):
                user_message += 1
            turn = user_message if user_message >= 0 else None
            start = len(rows)
            reasoning = m.get("reasoning_content")
            if isinstance(reasoning, str):
                rows.append(
                    (m_index, None, turn, role, "reasoning", reasoning, None, None, None, None)
                )
            for b_index, b in enumerate(blocks):
                b = _d(b)
                kind = _str(b.get("type"))
                if kind == "text":
                    text = _str(b.get("text"))
                    rows.append((m_index, b_index, turn, role, kind, text, None, None, None, None))
                elif kind == "tool_use":
                    uid, name = _str(b.get("id")), _str(b.get("name"))
                    if uid is not None and name is not None:
                        tool_names[uid] = name
                    inp = _json(b.get("input"))
                    rows.append((m_index, b_index, turn, role, kind, None, uid, name, inp, None))
                elif kind == "tool_result":
                    uid = _str(b.get("tool_use_id"))
                    err = b.get("is_error")
                    rows.append(
                        (
                            m_index,
                            b_index,
                            turn,
                            role,
                            kind,
                            _result_text(b.get("content")),
                            uid,
                            tool_names.get(uid) if uid is not None else None,
                            None,
                            err if type(err) is bool else None,
                        )
                    )
                else:  # image, or a kind a newer a3s-code writes
                    text = _str(b.get("text"))
                    rows.append((m_index, b_index, turn, role, kind, text, None, None, None, None))
            if len(rows) == start:  # keep every message visible, even one without blocks
                rows.append((m_index, None, turn, role, None, None, None, None, None, None))
        self.cols["session_id"].add(session_id, len(rows) - n)
        self.n += len(rows) - n


#: The columns of a ``messages`` row tuple (``session_id`` is held apart).
_MESSAGE_COLS = (
    "message_index",
    "block_index",
    "user_message",
    "role",
    "block_type",
    "text",
    "tool_use_id",
    "tool_name",
    "tool_input",
    "is_error",
)


def _result_text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [p["text"] for p in content if type(p) is dict and isinstance(p.get("text"), str)]
        return "\n".join(texts) if texts else None
    return None if content is None else _json(content)


class _TracesBuilder(_Builder):
    def __init__(self) -> None:
        super().__init__("traces")

    def add(
        self,
        session_id: str,
        traces: Any,
        runs: Any = (),
        reports: Any = None,
    ) -> None:
        """One row per trace event; ``runs`` are the session's runs, each as ``(run, its
        model, its tool_end events with their start)`` (``_walk._run_stats``), ``reports``
        its verification reports (for where each trace came from)."""
        c = self.cols
        items = [_d(t) for t in _l(traces)]
        owners, origins, call_of, calls = _trace_origins(items, runs, reports)
        for i, t in enumerate(items):
            run = owners[i]
            call = calls[call_of[i]] if call_of[i] is not None else None
            c["session_id"].append(session_id)
            c["run_id"].append(run[0] if run is not None else None)
            c["trace_index"].append(i)
            c["origin"].append(origins[i])
            c["kind"].append(_str(t.get("kind")))
            c["tool_name"].append(_str(t.get("name")))
            c["tool_call_id"].append(call[0] if call is not None else None)
            c["model"].append(_str(run[1]) if run is not None else None)
            c["started_at"].append(call[1] if call is not None and origins[i] == AGENT else None)
            c["success"].append(t.get("success"))
            c["exit_code"].append(t.get("exit_code"))
            c["duration_ms"].append(t.get("duration_ms"))
            c["output_bytes"].append(t.get("output_bytes"))
            for key in ("metadata_keys", "artifact_uris", "details"):
                v = t.get(key)
                c[key].append(None if v is None else _json(v))
            self.n += 1


def _trace_origins(
    items: list[dict], runs: Any, reports: Any
) -> tuple[list[Any], list[str], list[int | None], list[tuple[Any, Any]]]:
    """``_traceorigin.attribute`` of a session's traces: per trace its ``(run id, model)``
    or None, its origin and the index of its tool call in the returned ``(tool call id,
    start ms)`` list."""
    traces = [
        Trace(
            t.get("kind"),
            t.get("name"),
            t.get("exit_code"),
            t.get("success"),
            t.get("output_bytes"),
        )
        for t in items
    ]
    calls: list[Call] = []
    call_info: list[tuple[Any, Any]] = []
    ordered = sorted(runs, key=lambda rm: _int_or_zero(rm[0].snapshot.created_at_ms))
    for run, model, tool_ends in ordered:
        owner = (run.snapshot.id, model)
        for e, start in tool_ends:
            steps = program_steps(e.x_metadata) if e.tool_name == "program" else ()
            calls.append(Call(owner, e.tool_name, e.exit_code, output_size(e.text), steps))
            call_info.append((_str(e.tool_call_id), _int(start)))
    owners, origins, call_of = attribute(traces, calls, verify_checks(reports))
    return owners, origins, call_of, call_info


def _int_or_zero(value: Any) -> int:
    return value if type(value) is int else 0


class _VerificationBuilder(_Builder):
    def __init__(self, statuses: frozenset[str] | None):
        super().__init__("verification")
        self.statuses = statuses

    def add(self, session_id: str, reports: Any) -> None:
        c = self.cols
        for r_index, r in enumerate(_l(reports)):
            r = _d(r)
            checks = [_d(ch) for ch in _l(r.get("checks"))]
            risks = r.get("residual_risks")
            risks = None if risks is None else _json(risks)
            rows: list[tuple] = [(i, ch) for i, ch in enumerate(checks)] or [(None, {})]
            for c_index, ch in rows:
                status = _str(ch.get("status"))
                if self.statuses is not None and status not in self.statuses:
                    continue
                c["session_id"].append(session_id)
                c["report_index"].append(r_index)
                c["subject"].append(_str(r.get("subject")))
                c["report_status"].append(_str(r.get("status")))
                c["check_index"].append(c_index)
                c["check_id"].append(_str(ch.get("id")))
                c["kind"].append(_str(ch.get("kind")))
                c["description"].append(_str(ch.get("description")))
                c["status"].append(status)
                c["required"].append(ch.get("required"))
                for key in ("suggested_tools", "evidence_uris"):
                    v = ch.get(key)
                    c[key].append(None if v is None else _json(v))
                c["residual_risk"].append(_str(ch.get("residual_risk")))
                c["report_residual_risks"].append(risks)
                self.n += 1


class _RunsBuilder(_Builder):
    def __init__(self) -> None:
        super().__init__("runs")

    def add(self, session_id: str, index: int, run: Run, st: _RunStats, model: Any) -> None:
        c = self.cols
        snap = run.snapshot
        created, updated = st.created, st.updated
        c["session_id"].append(session_id)
        c["run_id"].append(snap.id)
        c["run_index"].append(index)
        c["status"].append(st.status)
        c["prompt"].append(snap.prompt)
        c["result_text"].append(snap.result_text)
        c["error"].append(snap.error)
        c["created_at"].append(created)
        c["updated_at"].append(updated)
        c["duration_ms"].append(
            updated - created if created is not None and updated is not None else None
        )
        c["event_count"].append(snap.event_count)
        c["n_events"].append(len(run.events))
        c["n_turns"].append(st.n_turns)
        c["n_steps"].append(st.n_steps)
        c["n_tool_calls"].append(st.n_tool_calls)
        c["n_tool_errors"].append(st.n_tool_errors)
        for key, v in zip(_USAGE_KEYS, st.usage, strict=True):
            c[key].append(v)
        run_model = st.model or model
        c["model"].append(run_model)
        provider = st.provider
        if provider is None and isinstance(run_model, str) and "/" in run_model:
            provider = run_model.split("/", 1)[0]
        c["provider"].append(provider)
        c["first_token_ms"].append(st.first_token_ms)
        c["llm_duration_ms"].append(st.llm_duration_ms)
        c["verification_status"].append(st.verification_status)
        c["cost_usd"].append(_run_cost(st, run_model, provider))
        self.n += 1


class _EventsBuilder(_Builder):
    """``run_events``: the largest frame. Each run's records are read column by column
    (one C-level ``map`` per column) while the run is fresh in memory: every event class
    has the same attribute names (``_runfile``), so there is no per-event branching."""

    def __init__(self) -> None:
        self.memo: dict[Any, str] = {}
        # known event types have fixed codes: their position in the schema's enum
        self.type_names: list[str] = list(TYPE_NAMES)
        self.type_codes: dict[Any, int] = {t: i for i, t in enumerate(self.type_names)}
        super().__init__("run_events")

    def fresh(self) -> dict[str, Any]:
        cols: dict[str, Any] = {name: [] for name in _EVENT_ATTRS}
        cols.update(
            sequence=[],
            timestamp=[],
            session_id=_Repeat(),
            run_id=_Repeat(),
            process_exit_code={},
            data={},
        )
        return cols

    def add(
        self,
        session_id: str,
        run_id: Any,
        records: list[Record],
        encode: Callable[[Any], str] = _json,
    ) -> None:
        """One row per event record of a run, read column by column while the run is
        fresh in memory; ``encode`` writes the fields left for ``data`` (``Runs.encode``)."""
        c = self.cols
        count = len(records)
        c["session_id"].add(session_id, count)
        c["run_id"].add(run_id, count)
        c["sequence"] += map(_SEQUENCE, records)
        c["timestamp"] += map(_TIMESTAMP, records)
        events = list(map(_EVENT, records))
        for name, get in _EVENT_GETTERS:
            c[name] += map(get, events)
        n = self.n
        # the rest of an event's fields as JSON; tool_end's metadata also holds the real
        # exit code of a command
        proc_code, data = c["process_exit_code"], c["data"]
        for k in [k for k, has in enumerate(map(_HAS_DATA, events)) if has]:
            e = events[k]
            rest = e.data()
            if rest is not None:
                t = e.etype
                data[n + k] = (
                    self._memo_json(t, rest, encode) if t in _MEMO_EVENTS else encode(rest)
                )
            if e.kind == K_TOOL_END and type(meta := e.x_metadata) is dict:
                proc_code[n + k] = meta.get("exit_code")
        self.n = n + count

    def take_columns(self) -> dict[str, Any]:
        c = self.cols
        codes = _Codes(self.type_names)
        codes.codes = c.pop("code")
        types = c.pop("etype")
        if None in codes.codes:  # types this version does not know (or no type at all)
            self._new_types(types, codes.codes)
        c["event_type"] = codes
        usages = [(i, u) for i, u in enumerate(c.pop("usage")) if type(u) is dict]
        for key in _USAGE_KEYS:
            c[key] = {i: u.get(key) for i, u in usages}
        return c

    def _new_types(self, types: list, codes: list) -> None:
        code_of, names = self.type_codes, self.type_names
        for i, t in enumerate(types):
            if codes[i] is None and type(t) is str:
                code = code_of.get(t)
                if code is None:
                    code = code_of[t] = len(names)
                    names.append(t)
                codes[i] = code

    def _memo_json(self, t: str, rest: dict, encode: Callable[[Any], str]) -> str:
        """JSON of an event that repeats in every run: encoded once, stored once.

        Only text, exact ints, nulls and lists of text are keys: ``1``, ``1.0`` and
        ``true`` are equal keys in Python but not the same JSON."""
        key: list = [t]
        for k, v in rest.items():
            tv = type(v)
            if tv is list:
                if not all(type(x) is str for x in v):
                    return encode(rest)
                v = tuple(v)
            elif tv is not str and tv is not int and v is not None:
                return encode(rest)
            key += (k, v)
        memo_key = tuple(key)
        text = self.memo.get(memo_key)
        if text is None:
            if len(self.memo) > 4096:
                self.memo.clear()
            text = self.memo[memo_key] = encode(rest)
        return text


#: What ``run_events`` takes from each event (the columns, then ``code``, ``etype`` and
#: ``usage`` that ``take_columns`` turns into columns).
_EVENT_ATTRS = (
    "code",
    "text",
    "turn",
    "tool_call_id",
    "tool_name",
    "exit_code",
    "step_id",
    "step_number",
    "status",
    "usage",
    "etype",
)
_EVENT_GETTERS = tuple((name, operator.attrgetter(name)) for name in _EVENT_ATTRS)
_SEQUENCE = operator.attrgetter("sequence")
_TIMESTAMP = operator.attrgetter("timestamp_ms")
_EVENT = operator.attrgetter("event")
_HAS_DATA = operator.attrgetter("has_data")


#: What a ``spans`` row takes from a ``_Span`` (``usage`` holds the five token counts).
_SPAN_ROW_COLS = (
    "span_id",
    "parent_span_id",
    "kind",
    "name",
    "start",
    "end",
    "status",
    "turn",
    "step_number",
    "tool_call_id",
    "tool_name",
    "exit_code",
    "usage",
    "sequence_start",
    "sequence_end",
)
_SPAN_ROW = operator.attrgetter(*_SPAN_ROW_COLS)


class _SpansBuilder(_Builder):
    """Spans arrive as whole ``_Span`` records, one run at a time."""

    def __init__(self) -> None:
        super().__init__("spans")

    def fresh(self) -> dict[str, Any]:
        return {"rows": [], "session_id": _Repeat(), "run_id": _Repeat()}

    def add(self, session_id: str, run_id: Any, spans: list[_Span]) -> None:
        c = self.cols
        c["rows"] += map(_SPAN_ROW, spans)  # while the spans are fresh in memory
        c["session_id"].add(session_id, len(spans))
        c["run_id"].add(run_id, len(spans))
        self.n += len(spans)

    def take_columns(self) -> dict[str, Any]:
        c = self.cols
        rows: list[tuple] = c.pop("rows")
        columns = [list(col) for col in zip(*rows, strict=True)]
        for name, col in zip(_SPAN_ROW_COLS, columns or [[] for _ in _SPAN_ROW_COLS], strict=True):
            c[name] = col
        usages = c.pop("usage")
        for k, name in enumerate(_USAGE_KEYS):
            c[name] = [None if u is None else u[k] for u in usages]
        c["duration_ms"] = [
            e - s if type(s) is int and type(e) is int else None
            for s, e in zip(c["start"], c["end"], strict=True)
        ]
        return c


class _SessionsBuilder(_Builder):
    """Whole rows (``_SESSION_COLS`` order), sorted newest first at the end."""

    def __init__(self) -> None:
        super().__init__("sessions")

    def fresh(self) -> dict[str, Any]:
        return {"rows": []}

    def add_row(self, row: list) -> None:
        self.cols["rows"].append(row)
        self.n += 1

    def maybe_flush(self) -> None:  # one row per session: never large, sorted as a whole
        pass

    def take_columns(self) -> dict[str, Any]:
        # newest first, as a listing wants; sessions never saved sort last
        rows = sorted(self.cols["rows"], key=lambda r: r[0] or "")
        rows.sort(key=lambda r: -(r[_S_UPDATED] or -(2**62)))
        columns = list(zip(*rows, strict=True)) if rows else [()] * len(_SESSION_COLS)
        return {name: list(v) for name, v in zip(_SESSION_COLS, columns, strict=True)}


_BUILDERS: dict[str, Callable[[], _Builder]] = {
    "sessions": _SessionsBuilder,
    "messages": _MessagesBuilder,
    "traces": _TracesBuilder,
    "runs": _RunsBuilder,
    "run_events": _EventsBuilder,
    "spans": _SpansBuilder,
}


def _empty_frame(name: str) -> pd.DataFrame:
    """A frame without rows, with its columns and dtypes."""
    builder = _VerificationBuilder(None) if name == "verification" else _BUILDERS[name]()
    return builder.frame_df([])
