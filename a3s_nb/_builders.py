"""One builder per frame: the rows of each session appended column by column."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import pandas as pd

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
from ._sources import CorruptSessionWarning
from ._tokens import USAGE_KEYS as _USAGE_KEYS
from ._walk import (
    _S_UPDATED,
    _SESSION_COLS,
    _d,
    _int,
    _l,
    _last_timestamp,
    _run_cost,
    _RunStats,
    _Span,
    _SpanWalker,
    _str,
)
from ._warn import warn

# ============================================================================ builders


#: Rows a builder holds as Python objects before it moves them into Arrow arrays. This
#: bounds the memory of a large build: Python objects cost several times their Arrow size
#: and, kept long, pin the allocator's memory full of freed JSON.
CHUNK_ROWS = 32_768


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
    def __init__(self) -> None:
        super().__init__("messages")

    def add(self, session_id: str, session: dict) -> None:
        c = self.cols
        sid, mi, bi, ut = c["session_id"], c["message_index"], c["block_index"], c["user_message"]
        role_c, btype, text, tuid = c["role"], c["block_type"], c["text"], c["tool_use_id"]
        tname, tinput, iserr = c["tool_name"], c["tool_input"], c["is_error"]
        tool_names: dict[str, str] = {}
        user_message = -1
        n = 0
        for m_index, m in enumerate(_l(session.get("messages"))):
            m = _d(m)
            role = _str(m.get("role"))
            blocks = _l(m.get("content"))
            if role == "user" and any(_d(b).get("type") == "text" for b in blocks):
                user_message += 1
            turn = user_message if user_message >= 0 else None
            rows: list[tuple] = []
            reasoning = m.get("reasoning_content")
            if isinstance(reasoning, str):
                rows.append((None, "reasoning", reasoning, None, None, None, None))
            for b_index, b in enumerate(blocks):
                b = _d(b)
                kind = _str(b.get("type"))
                if kind == "text":
                    rows.append((b_index, kind, _str(b.get("text")), None, None, None, None))
                elif kind == "tool_use":
                    uid, name = _str(b.get("id")), _str(b.get("name"))
                    if uid is not None and name is not None:
                        tool_names[uid] = name
                    inp = b.get("input")
                    rows.append((b_index, kind, None, uid, name, _json(inp), None))
                elif kind == "tool_result":
                    uid = _str(b.get("tool_use_id"))
                    err = b.get("is_error")
                    rows.append(
                        (
                            b_index,
                            kind,
                            _result_text(b.get("content")),
                            uid,
                            tool_names.get(uid) if uid is not None else None,
                            None,
                            err if type(err) is bool else None,
                        )
                    )
                else:  # image, or a kind a newer a3s-code writes
                    rows.append((b_index, kind, _str(b.get("text")), None, None, None, None))
            if not rows:  # keep every message visible, even one without blocks
                rows.append((None, None, None, None, None, None, None))
            for b_index, kind, txt, uid, name, inp, err in rows:
                sid.append(session_id)
                mi.append(m_index)
                bi.append(b_index)
                ut.append(turn)
                role_c.append(role)
                btype.append(kind)
                text.append(txt)
                tuid.append(uid)
                tname.append(name)
                tinput.append(inp)
                iserr.append(err)
            n += len(rows)
        self.n += n


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

    def add(self, session_id: str, traces: Any) -> None:
        c = self.cols
        for i, t in enumerate(_l(traces)):
            t = _d(t)
            c["session_id"].append(session_id)
            c["trace_index"].append(i)
            c["kind"].append(_str(t.get("kind")))
            c["tool_name"].append(_str(t.get("name")))
            c["success"].append(t.get("success"))
            c["exit_code"].append(t.get("exit_code"))
            c["duration_ms"].append(t.get("duration_ms"))
            c["output_bytes"].append(t.get("output_bytes"))
            for key in ("metadata_keys", "artifact_uris", "details"):
                v = t.get(key)
                c[key].append(None if v is None else _json(v))
            self.n += 1


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

    def add(self, session_id: str, index: int, run: dict, st: _RunStats, model: Any) -> None:
        c = self.cols
        snap = _d(run.get("snapshot"))
        created, updated = st.created, st.updated
        c["session_id"].append(session_id)
        c["run_id"].append(_str(snap.get("id")))
        c["run_index"].append(index)
        c["status"].append(st.status)
        c["prompt"].append(_str(snap.get("prompt")))
        c["result_text"].append(_str(snap.get("result_text")))
        c["error"].append(_str(snap.get("error")))
        c["created_at"].append(created)
        c["updated_at"].append(updated)
        c["duration_ms"].append(
            updated - created if created is not None and updated is not None else None
        )
        c["event_count"].append(_int(snap.get("event_count")))
        c["n_events"].append(len(_l(run.get("events"))))
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


# How ``run_events`` reads each event type: the field holding its text, what else it
# fills (a kind), and the fields pulled out (the rest go to ``data`` as JSON).
(
    _K_NONE,
    _K_TURN_START,
    _K_TURN_END,
    _K_TOOL_START,
    _K_TOOL_DELTA,
    _K_TOOL_END,
    _K_AGENT_END,
    _K_STEP_START,
    _K_STEP_END,
    _K_PLANNING,
) = range(10)
_EVENT_SPECS: dict[str, tuple[str | None, int, frozenset[str]]] = {
    t: (text, kind, frozenset(("type", *fields)))
    for t, text, kind, fields in (
        ("text_delta", "text", _K_NONE, ("text",)),
        ("tool_input_delta", "delta", _K_NONE, ("delta",)),
        ("turn_start", None, _K_TURN_START, ("turn",)),
        ("turn_end", None, _K_TURN_END, ("turn", "usage")),
        ("tool_start", None, _K_TOOL_START, ("id", "name")),
        ("tool_end", "output", _K_TOOL_END, ("id", "name", "output", "exit_code")),
        ("tool_output_delta", "delta", _K_TOOL_DELTA, ("id", "name", "delta")),
        ("reasoning_delta", "text", _K_NONE, ("text",)),
        ("agent_start", "prompt", _K_NONE, ("prompt",)),
        ("planning_start", "prompt", _K_PLANNING, ("prompt",)),
        ("planning_end", None, _K_PLANNING, ()),
        ("agent_end", "text", _K_AGENT_END, ("text", "usage")),
        ("error", "message", _K_NONE, ("message",)),
        ("step_start", "description", _K_STEP_START, ("step_id", "step_number", "description")),
        ("step_end", None, _K_STEP_END, ("step_id", "step_number", "status")),
    )
}
_OTHER_EVENT: tuple[str | None, int, frozenset[str]] = (None, _K_NONE, frozenset({"type"}))
#: The kinds of events that open or close a span.
_SPAN_KINDS = frozenset(
    {
        _K_TURN_START,
        _K_TURN_END,
        _K_TOOL_START,
        _K_TOOL_END,
        _K_STEP_START,
        _K_STEP_END,
        _K_PLANNING,
    }
)
#: Events that repeat with the same payload in every run.
_MEMO_EVENTS = frozenset({"agent_mode_changed", "context_resolving", "context_resolved"})


class _EventsBuilder(_Builder):
    """``run_events``: the largest frame, so sparse columns are dicts of row -> value."""

    _DENSE = ("sequence", "timestamp", "text")

    def __init__(self) -> None:
        self.memo: dict[Any, str] = {}
        # known event types have fixed codes: their position in the schema's enum
        self.type_names: list[str] = list(schema.ENUMS["event_type"])
        self.type_codes: dict[Any, int] = {t: i for i, t in enumerate(self.type_names)}
        self.specs = {
            t: (self.type_codes[t], *_EVENT_SPECS.get(t, _OTHER_EVENT)) for t in self.type_names
        }
        super().__init__("run_events")

    def fresh(self) -> dict[str, Any]:
        cols: dict[str, Any] = {}
        for col in self.columns:
            if col.name in ("session_id", "run_id"):
                cols[col.name] = _Repeat()
            elif col.name == "event_type":
                cols[col.name] = _Codes(self.type_names)
            elif col.name in self._DENSE:
                cols[col.name] = []
            else:
                cols[col.name] = {}
        return cols

    def add(
        self,
        session_id: str,
        run_id: Any,
        events: list,
        st: _RunStats | None = None,
        walker: _SpanWalker | None = None,
    ) -> None:
        """One row per event; also fills ``st`` and ``walker`` (the same pass).

        This loop runs once per event of the store, so it is written for speed: one
        dictionary lookup decides what an event fills, absent values cost nothing.
        """
        c = self.cols
        seq_a, ts_a, text_a = c["sequence"].append, c["timestamp"].append, c["text"].append
        codes = c["event_type"]
        code_a, code_of, names = codes.codes.append, self.type_codes, codes.names
        data, turn = c["data"], c["turn"]
        tool_id, tool_name = c["tool_call_id"], c["tool_name"]
        exit_code, proc_code = c["exit_code"], c["process_exit_code"]
        usage_cols = [(c[k], k) for k in _USAGE_KEYS]
        step_id, step_no, status = c["step_id"], c["step_number"], c["status"]
        specs, other, encode, memo_events = self.specs, _OTHER_EVENT, _json, _MEMO_EVENTS
        i = self.n
        for rec in events:
            if type(rec) is not dict:
                rec = {}
            e = rec.get("event")
            if type(e) is not dict:
                e = {}
            t = e.get("type")
            seq_a(rec.get("sequence"))
            ts_a(rec.get("timestamp_ms"))
            spec = specs.get(t)
            if spec is None:  # a type this version does not know (or no type at all)
                code = code_of.get(t)
                if code is None and type(t) is str:
                    code = code_of[t] = len(names)
                    names.append(t)
                spec = (code, *other)
            code, field, kind, pulled = spec
            code_a(code)
            text_a(e.get(field) if field is not None else None)
            if kind:
                if kind == _K_TOOL_DELTA:
                    tool_id[i] = e.get("id")
                    tool_name[i] = e.get("name")
                elif kind in (_K_TURN_START, _K_TURN_END):
                    turn[i] = e.get("turn")
                    if kind == _K_TURN_END:
                        usage = e.get("usage")
                        if type(usage) is dict:
                            for col, key in usage_cols:
                                col[i] = usage.get(key)
                        if st is not None:
                            st.turn_usages.append(usage)
                    elif st is not None:
                        st.n_turns += 1
                elif kind in (_K_TOOL_START, _K_TOOL_END):
                    tool_id[i] = e.get("id")
                    tool_name[i] = e.get("name")
                    if kind == _K_TOOL_END:
                        code = e.get("exit_code")
                        exit_code[i] = code
                        meta = e.get("metadata")
                        if type(meta) is dict:
                            proc_code[i] = meta.get("exit_code")
                        if st is not None:
                            st.n_tool_calls += 1
                            if code not in (0, None):
                                st.n_tool_errors += 1
                elif kind == _K_AGENT_END:
                    usage = e.get("usage")
                    if type(usage) is dict:
                        for col, key in usage_cols:
                            col[i] = usage.get(key)
                    if st is not None:
                        st.agent_end(e)
                elif kind in (_K_STEP_START, _K_STEP_END):
                    step_id[i] = e.get("step_id")
                    step_no[i] = e.get("step_number")
                    if kind == _K_STEP_END:
                        status[i] = e.get("status")
                    elif st is not None:
                        st.n_steps += 1
                if walker is not None and kind in _SPAN_KINDS:
                    walker.event(rec, e, t)
            if not e.keys() <= pulled:
                rest = {k: v for k, v in e.items() if k not in pulled}
                data[i] = self._memo_json(t, rest) if t in memo_events else encode(rest)
            i += 1
        count = i - self.n
        c["session_id"].add(session_id, count)
        c["run_id"].add(run_id, count)
        self.n = i
        if st is not None:
            st.close()
        if walker is not None:
            walker.finish(_last_timestamp(events))

    def _memo_json(self, t: str, rest: dict) -> str:
        """JSON of an event that repeats in every run: encoded once, stored once."""
        try:
            key = (t, *((k, tuple(v) if type(v) is list else v) for k, v in rest.items()))
            text = self.memo.get(key)
        except TypeError:  # something unhashable inside: encode it
            return _json(rest)
        if text is None:
            if len(self.memo) > 4096:
                self.memo.clear()
            text = self.memo[key] = _json(rest)
        return text


_SPAN_FIELDS = (
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
    *_USAGE_KEYS,
    "sequence_start",
    "sequence_end",
)


class _SpansBuilder(_Builder):
    """Spans arrive as whole ``_Span`` records, one run at a time."""

    def __init__(self) -> None:
        super().__init__("spans")

    def fresh(self) -> dict[str, Any]:
        return {"rows": [], "session_id": _Repeat(), "run_id": _Repeat()}

    def add(self, session_id: str, run_id: Any, spans: list[_Span]) -> None:
        c = self.cols
        c["rows"].extend(spans)
        c["session_id"].add(session_id, len(spans))
        c["run_id"].add(run_id, len(spans))
        self.n += len(spans)

    def take_columns(self) -> dict[str, Any]:
        c = self.cols
        rows: list[_Span] = c.pop("rows")
        for name in _SPAN_FIELDS:
            if name in _USAGE_KEYS:
                k = _USAGE_KEYS.index(name)
                c[name] = [None if r.usage is None else r.usage[k] for r in rows]
            else:
                c[name] = list(map(operator.attrgetter(name), rows))
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
