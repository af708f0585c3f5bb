"""pandas DataFrames over saved (or live) a3s-code sessions.

Seven frames, each documented column by column in ``docs/frames.md`` (generated from
``a3s_nb.schema``, the single source of truth)::

    sessions      one row per session            (served from a self-refreshing index)
    messages      one row per transcript content block
    traces        one row per tool execution trace event
    runs          one row per run record
    run_events    one row per run event
    spans         run / planning / step / turn / tool spans derived from run events
    verification  one row per verification check

Frames are built from the raw JSON (``Store.read_raw``), not through the pydantic models,
column by column: every frame is one list per column and a single DataFrame construction.
A live session or a ``SessionBundle`` is turned into the same raw shapes first, so every
source goes through the same code.

>>> import a3s_nb
>>> runs = a3s_nb.runs("sessions", status="failed")          # doctest: +SKIP
>>> a3s_nb.spans(session).query("kind == 'tool'")             # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import operator
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import pandas as pd

from . import schema
from ._json import loads as _loads
from ._loadcheck import LoadCheck, path_templates
from ._tokens import USAGE_KEYS as _USAGE_KEYS
from ._tokens import add_counts
from ._tokens import add_usage as _add_usage
from ._warn import warn
from .capture import bundle_to_parts, is_session_like
from .cost import default_pricer, price_table
from .errors import CorruptFileError
from .models import SessionBundle
from .store import PARTS, FileStore, MemoryStore, Store, resolve_id, sdk_safe_id

try:  # pyarrow is optional; with it, columns are built several times faster
    import pyarrow as pa
    import pyarrow.compute as pc
except ImportError:  # pragma: no cover - exercised by the fallback test via monkeypatch
    pa = pc = None

__all__ = [
    "FRAME_NAMES",
    "PROGRESS_THRESHOLD",
    "CorruptSessionWarning",
    "all_frames",
    "messages",
    "run_events",
    "runs",
    "sessions",
    "spans",
    "traces",
    "verification",
]

FRAME_NAMES = schema.FRAME_NAMES
log = logging.getLogger(__name__)

#: More sessions than this to read shows a progress bar (when ``progress`` is None).
PROGRESS_THRESHOLD = 200

#: Bump when the way a ``sessions`` row is computed changes: the index is then rebuilt.
SUMMARY_VERSION = 2


class CorruptSessionWarning(UserWarning):
    """A session was left out of a frame because one of its files is corrupt."""


# ============================================================================ sources

#: The files each frame reads.
_PARTS: dict[str, frozenset[str]] = {
    "sessions": frozenset({"session", "runs", "traces", "verification"}),
    "messages": frozenset({"session"}),
    "traces": frozenset({"traces"}),
    "runs": frozenset({"session", "runs"}),
    "run_events": frozenset({"runs"}),
    "spans": frozenset({"runs"}),
    "verification": frozenset({"verification"}),
}
_RUN_FRAMES = frozenset({"runs", "run_events", "spans"})
_SESSION_FRAMES = frozenset({"sessions", "messages", "traces", "verification"})


class _Source:
    """Where sessions come from: a store, or bundles / live sessions held in memory."""

    store: Store | None = None
    label = "<sessions>"

    def ids(self) -> list[str]:
        raise NotImplementedError

    def read(self, session_id: str, parts: Iterable[str]) -> dict[str, Any]:
        """The raw JSON of the given parts (None when absent); CorruptFileError if bad."""
        raise NotImplementedError

    def read_all(
        self, ids: list[str], parts: list[str]
    ) -> Iterator[tuple[str, dict[str, Any] | CorruptFileError]]:
        """``(id, parts)`` for each id, or ``(id, error)`` when one of its files is bad."""
        for key in ids:
            try:
                yield key, self.read(key, parts)
            except CorruptFileError as err:
                yield key, err


_LOCK_BATCH = 32


class _StoreSource(_Source):
    def __init__(self, store: Store):
        self.store = store
        self.label = str(store)
        # A directory store is read directly (plain open + json.loads: pathlib costs as
        # much as parsing a small file); anything unusual goes through Store.read_raw,
        # so errors are the store's own.
        self.root = str(store.path) if isinstance(store, FileStore) else None
        self.templates = path_templates(store) if isinstance(store, FileStore) else {}

    def ids(self) -> list[str]:
        return self.store.list()

    def _read_file(self, session_id: str, part: str) -> Any:
        path = self.templates[part].format(sdk_safe_id(session_id))
        try:
            with open(path, "rb") as f:
                data = f.read()
            if data:
                return _loads(data)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, RecursionError):  # unreadable, not UTF-8, not JSON
            pass
        return self._read_raw(session_id, part)

    def _read_raw(self, session_id: str, part: str) -> Any:
        try:
            return self.store.read_raw(session_id, part)  # type: ignore[arg-type]
        except CorruptFileError:
            raise
        except (RecursionError, ValueError) as e:  # too deep, a number too long
            raise CorruptFileError(
                self.store.location(session_id, part),  # type: ignore[arg-type]
                f"cannot be parsed: {type(e).__name__}: {e}",
            ) from None

    def _read_parts(self, session_id: str, parts: Iterable[str]) -> dict[str, Any]:
        if self.root is not None:
            return {part: self._read_file(session_id, part) for part in parts}
        return {part: self._read_raw(session_id, part) for part in parts}

    def read(self, session_id: str, parts: Iterable[str]) -> dict[str, Any]:
        with self.store.lock(shared=True):
            return self._read_parts(session_id, parts)

    def read_all(
        self, ids: list[str], parts: list[str]
    ) -> Iterator[tuple[str, dict[str, Any] | CorruptFileError]]:
        # The shared lock is taken per batch of sessions: an a3s_nb save in another kernel
        # is never seen half done, and a writer waits for one batch, not a whole frame.
        for start in range(0, len(ids), _LOCK_BATCH):
            batch: list[tuple[str, Any]] = []
            with self.store.lock(shared=True):
                for key in ids[start : start + _LOCK_BATCH]:
                    try:
                        batch.append((key, self._read_parts(key, parts)))
                    except CorruptFileError as err:
                        batch.append((key, err))
            yield from batch


class _ObjectSource(_Source):
    """SessionBundles and live sessions (``a3s_code.Session`` or look-alikes)."""

    def __init__(self, objects: Iterable[Any]):
        self.objects: dict[str, Any] = {}
        for obj in objects:
            self.objects[_object_id(obj)] = obj

    def ids(self) -> list[str]:
        return list(self.objects)

    def read(self, session_id: str, parts: Iterable[str]) -> dict[str, Any]:
        obj = self.objects[session_id]
        if isinstance(obj, SessionBundle):
            files = bundle_to_parts(obj)  # the files' JSON, as the store writes it
            return {part: files.get(part) for part in parts}
        return {part: _live_part(obj, part) for part in parts}


def _object_id(obj: Any) -> str:
    if isinstance(obj, SessionBundle):
        return obj.session.id
    sid = obj.session_id
    return str(sid() if callable(sid) else sid)


def _live_part(live: Any, part: str) -> Any:
    # a3s_code.Session returns plain dicts and lists shaped exactly like the files
    if part == "session":
        workspace = getattr(live, "workspace", None)
        if callable(workspace):
            workspace = workspace()
        return {
            "id": _object_id(live),
            "config": {"workspace": workspace},
            "messages": list(live.history() or []),
        }
    if part == "runs":
        return [
            {"snapshot": snap, "events": list(live.run_events(snap["id"]) or [])}
            for snap in (live.runs() or [])
        ]
    method = {"traces": "trace_events", "verification": "verification_reports"}[part]
    fn = getattr(live, method, None)
    return list(fn() or []) if fn is not None else []


def _open_source(source: Any) -> _Source:
    if source is None or isinstance(source, (str, os.PathLike)):
        if source is not None and str(source) == ":memory:":
            return _StoreSource(MemoryStore())
        if source is None:
            from .config import default_store_path

            source = default_store_path()
        # reading never creates a store directory: a typo must not leave one behind
        return _StoreSource(FileStore(source, create=False))
    if isinstance(source, Store):
        return _StoreSource(source)
    if isinstance(source, SessionBundle) or is_session_like(source):
        return _ObjectSource([source])
    if isinstance(source, (list, tuple)) and all(
        isinstance(s, SessionBundle) or is_session_like(s) for s in source
    ):
        return _ObjectSource(source)
    raise TypeError(
        "source must be a store path, a Store, a SessionBundle, a live session or a list "
        f"of bundles / live sessions, not {type(source).__name__}"
    )


def _resolve_ids(requested: str | Iterable[str] | None, known: list[str], label: str):
    """The requested session ids (exact ids or unique prefixes), in request order."""
    if requested is None:
        return None
    if isinstance(requested, str):
        requested = [requested]
    known_set = set(known)
    out: list[str] = []
    for rid in requested:
        match = rid if rid in known_set else resolve_id(rid, known, label)
        if match not in out:
            out.append(match)
    return out


# ============================================================================ filters


class _Filters:
    def __init__(self, since: Any, until: Any, status: Any):
        self.since = _to_ms(since, ceil=True)
        self.until = _to_ms(until, ceil=True)
        if status is None:
            self.status = None
        elif isinstance(status, str):
            self.status = frozenset({status})
        else:
            self.status = frozenset(status)

    @property
    def by_time(self) -> bool:
        return self.since is not None or self.until is not None

    @property
    def any(self) -> bool:
        return self.by_time or self.status is not None

    def run_ok(self, status: Any, created_ms: Any) -> bool:
        if self.status is not None and status not in self.status:
            return False
        if self.by_time:
            if not isinstance(created_ms, int):
                return False
            if self.since is not None and created_ms < self.since:
                return False
            if self.until is not None and created_ms >= self.until:
                return False
        return True

    def session_ok(self, row: list[Any], statuses: Iterable[str]) -> bool:
        if self.status is not None and not self.status.intersection(statuses):
            return False
        if self.by_time:
            starts = [v for v in (row[_S_CREATED], row[_S_FIRST_RUN]) if isinstance(v, int)]
            ends = [v for v in (row[_S_UPDATED], row[_S_LAST_RUN]) if isinstance(v, int)]
            if not starts or not ends:
                return False
            if self.since is not None and max(ends) < self.since:
                return False
            if self.until is not None and min(starts) >= self.until:
                return False
        return True


def _to_ms(value: Any, *, ceil: bool) -> int | None:
    if value is None:
        return None
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    delta = ts - pd.Timestamp(0, tz="UTC")
    one = pd.Timedelta(milliseconds=1)
    return -(-delta // one) if ceil else delta // one


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

    Filled either by ``_run_stats`` (a pass that skips all but a few event types) or, when
    ``run_events`` is built too, by ``_EventsBuilder.add`` in the same pass; tests hold
    the two to the same result.
    """

    __slots__ = (
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

    def __init__(self, snap: dict):
        self.status = _str(snap.get("status"))
        self.created = _int(snap.get("created_at_ms"))
        self.updated = _int(snap.get("updated_at_ms"))
        self.n_turns = self.n_steps = self.n_tool_calls = self.n_tool_errors = 0
        self.turn_usages: list = []
        self.end_usage: Any = None
        self.meta: Any = None
        self.verification_status: str | None = None

    def agent_end(self, e: dict) -> None:
        self.end_usage = e.get("usage")
        if type(e.get("meta")) is dict:
            self.meta = e["meta"]
        self.verification_status = _str(_d(e.get("verification_summary")).get("status"))

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
    """The run's cost (a3s_nb.cost): its turns priced one by one, at the run's time."""
    return default_pricer().run_cost(model, provider, st.turn_usages, st.end_usage, st.created)


#: The event types that open or close spans.
_SPAN_EVENTS = frozenset(
    {
        "turn_start",
        "turn_end",
        "tool_start",
        "tool_end",
        "step_start",
        "step_end",
        "planning_start",
        "planning_end",
    }
)
#: The event types ``_run_stats`` looks at; every other event is skipped at once.
_STATS_EVENTS = _SPAN_EVENTS | {"agent_end"}


def _last_timestamp(events: list) -> int | None:
    for rec in reversed(events):
        ts = rec.get("timestamp_ms") if type(rec) is dict else None
        if type(ts) is int:
            return ts
    return None


def _run_stats(run: dict, spans: list | None = None, run_id: str | None = None) -> _RunStats:
    """Walk a run's events once: counts, tokens, model; and its spans when asked."""
    events = _l(run.get("events"))
    st = _RunStats(_d(run.get("snapshot")))
    walker = _SpanWalker(run_id or "", st, spans) if spans is not None else None
    for rec in events:
        if type(rec) is not dict:
            continue
        e = rec.get("event")
        if type(e) is not dict:
            continue
        t = e.get("type")
        if t not in _STATS_EVENTS:
            continue
        if t == "turn_start":
            st.n_turns += 1
        elif t == "tool_end":
            st.n_tool_calls += 1
            if e.get("exit_code") not in (0, None):
                st.n_tool_errors += 1
        elif t == "turn_end":
            st.turn_usages.append(e.get("usage"))
        elif t == "step_start":
            st.n_steps += 1
        elif t == "agent_end":
            st.agent_end(e)
        if walker is not None and t in _SPAN_EVENTS:
            walker.event(rec, e, t)
    st.close()
    if walker is not None:
        walker.finish(_last_timestamp(events))
    return st


def _lineage_values(source: Any, session_id: str) -> dict[str, Any]:
    """The lineage columns of a session (a3s_nb.lineage), all None when it has none."""
    store = getattr(source, "store", None)
    rec = None
    if store is not None:
        from .lineage import lineage_of

        try:
            rec = lineage_of(session_id, store)
        except CorruptFileError:
            rec = None
    if not rec:
        return dict.fromkeys(_LINEAGE_COLS)
    created = pd.Timestamp(rec["created_at"]) if rec.get("created_at") else None
    return {
        "lineage_kind": _str(rec.get("kind")),
        "lineage_parent_id": _str(rec.get("parent_id")),
        "lineage_at_prompt": _int(rec.get("at_prompt")),
        "lineage_created_at": int(created.timestamp() * 1000) if created is not None else None,
        "lineage_model": _str(rec.get("model")),
    }


_LINEAGE_COLS = (
    "lineage_kind",
    "lineage_parent_id",
    "lineage_at_prompt",
    "lineage_created_at",
    "lineage_model",
)


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
        **(lineage or dict.fromkeys(_LINEAGE_COLS)),
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
    stats = [_run_stats(_d(r)) for r in _l(parts["runs"])]
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

    def event(self, rec: dict, e: dict, t: Any) -> None:
        ts = rec.get("timestamp_ms")
        seq = rec.get("sequence")
        if type(ts) is int and (self.last_ts is None or ts > self.last_ts):
            self.last_ts = ts
        if t == "tool_start":
            parent = self.turn if self.turn is not None else self._context()
            span = self._open("tool", _str(e.get("name")), parent, ts, seq)
            span.turn = parent.turn if parent is self.turn else None
            span.tool_call_id = _str(e.get("id"))
            span.tool_name = span.name
            self.open_tools[e.get("id")] = span
        elif t == "tool_end":
            span = self.open_tools.pop(e.get("id"), None)
            if span is None:  # an end without a start: a zero-length span
                parent = self.turn if self.turn is not None else self._context()
                span = self._open("tool", _str(e.get("name")), parent, ts, seq)
                span.tool_call_id, span.tool_name = _str(e.get("id")), _str(e.get("name"))
            code = _int(e.get("exit_code"))
            span.end, span.exit_code, span.sequence_end = ts, code, seq
            span.status = "ok" if code == 0 else ("error" if code is not None else "unset")
        elif t == "turn_start":
            if self.turn is not None:
                self._close(self.turn, "unset", ts)
            self.turn = self._open("turn", f"turn {e.get('turn')}", self._context(), ts, seq)
            self.turn.turn = _int(e.get("turn"))
        elif t == "turn_end":
            if self.turn is not None and self.turn.end is None:
                span = self.turn
                span.end, span.status, span.sequence_end = ts, "ok", seq
                usage: list = [None] * 5
                _add_usage(usage, _d(e.get("usage")))
                span.usage = usage
        elif t == "step_start":
            self._close_step("unset", ts)
            name = _str(e.get("description")) or f"step {e.get('step_number')}"
            self.step = self._open("step", name, self.run, ts, seq)
            self.step.step_number = _int(e.get("step_number"))
        elif t == "step_end":
            if self.step is not None:
                status = e.get("status")
                self.step.end, self.step.sequence_end = ts, seq
                self.step.status = {"completed": "ok", "failed": "error"}.get(status, "unset")
                self._close_inner("unset", ts)
                self.step = None
        elif t == "planning_start":
            self.planning = self._open("planning", "planning", self.run, ts, seq)
        elif t == "planning_end" and self.planning is not None:
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


# ============================================================================ columns


class _Repeat:
    """A column of a few values each repeated many times (e.g. run_id per event)."""

    __slots__ = ("counts", "values")

    def __init__(self) -> None:
        self.values: list[Any] = []
        self.counts: list[int] = []

    def add(self, value: Any, count: int) -> None:
        if count:
            self.values.append(value)
            self.counts.append(count)


def _dense(values: Any, n: int) -> list:
    if isinstance(values, _Codes):
        names = values.names
        return [None if c is None else names[c] for c in values.codes]
    if isinstance(values, _Repeat):
        out: list = []
        for value, count in zip(values.values, values.counts, strict=True):
            out += [value] * count
        return out
    if isinstance(values, dict):  # sparse: row index -> value
        out = [None] * n
        for i, v in values.items():
            out[i] = v
        return out
    return values


def _clean_strings(values: list) -> list:
    return [v if v is None or isinstance(v, str) else _json(v) for v in values]


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _clean_ints(values: list) -> list:
    """Ints that fit int64; anything else (a JSON float, text, 2**63 and beyond) is NA."""
    return [v if type(v) is int and _INT64_MIN <= v <= _INT64_MAX else None for v in values]


def _too_big(values: Any) -> list[tuple[int, int]]:
    """``(row, value)`` of the ints in a column that do not fit int64."""
    if isinstance(values, dict):
        items: Iterable = values.items()
    elif isinstance(values, list):
        items = enumerate(values)
    else:
        return []
    return [(i, v) for i, v in items if type(v) is int and not _INT64_MIN <= v <= _INT64_MAX]


def _clean_floats(values: list) -> list:
    return [float(v) if type(v) in (int, float) else None for v in values]


def _clean_bools(values: list) -> list:
    return [v if type(v) is bool else None for v in values]


def _clean_enum(values: list) -> list:
    return [v if isinstance(v, str) else None for v in values]


def _pool() -> Any:
    """The Arrow memory pool the frames allocate from: the C library's allocator.

    Measured on 5,000 sessions, pyarrow's default (mimalloc or jemalloc) spent twice the
    system time returning and re-faulting pages and peaked higher. Only the frames' own
    buffers use it; pyarrow's global default is left alone.
    """
    return pa.system_memory_pool()


def _arrow(
    values: Any,
    n: int,
    typ: Any,
    clean: Callable[[list], list],
    lost: Callable[[list[tuple[int, int]]], None] | None = None,
) -> Any:
    """A pyarrow array of ``n`` values from a dense list, a sparse dict or a _Repeat.

    Sparse and repeated columns are expanded by ``take`` in C, not element by element. A
    value of the wrong JSON type (a hand-edited file) becomes a null or, for text, JSON.
    """

    def convert(items: list) -> Any:
        try:
            return pa.array(items, type=typ, from_pandas=True, memory_pool=_pool())
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            if lost is not None and clean is _clean_ints:
                big = _too_big(values)
                if big:
                    lost(big)
            return pa.array(clean(items), type=typ, from_pandas=True, memory_pool=_pool())

    if isinstance(values, _Repeat):
        positions = np.repeat(np.arange(len(values.values), dtype=np.int64), values.counts)
        return pc.take(convert(values.values), positions, memory_pool=_pool())
    if isinstance(values, dict):
        positions = np.full(n, len(values), dtype=np.int64)
        if values:
            rows = np.fromiter(values.keys(), dtype=np.int64, count=len(values))
            positions[rows] = np.arange(len(values), dtype=np.int64)
        return pc.take(convert([*values.values(), None]), positions, memory_pool=_pool())
    return convert(values)


# How each kind of column is held between flushes (Arrow) and how it is cleaned.
_ARROW_KINDS: dict[str, tuple[Callable[[], Any], Callable[[list], list]]] = {
    "string": (lambda: pa.large_string(), _clean_strings),
    "json": (lambda: pa.large_string(), _clean_strings),
    "int": (lambda: pa.int64(), _clean_ints),
    "float": (lambda: pa.float64(), _clean_floats),
    "timestamp": (lambda: pa.int64(), _clean_ints),
    "bool": (lambda: pa.bool_(), _clean_bools),
    "category": (lambda: pa.string(), _clean_enum),
}


def _chunk(
    col: schema.Column,
    values: Any,
    n: int,
    lost: Callable[[list[tuple[int, int]]], None] | None = None,
) -> Any:
    """One column of a flushed block of rows, as a pyarrow array."""
    if isinstance(values, _Codes):
        return pa.DictionaryArray.from_arrays(
            pa.array(values.codes, type=pa.int32()), pa.array(values.names, type=pa.string())
        )
    typ, clean = _ARROW_KINDS[col.kind]
    if isinstance(values, dict) and col.kind in ("string", "json"):
        values = _dense(values, n)  # one copy of the text, where take() would make two
    return _arrow(values, n, typ(), clean, lost)


def _string_dtype() -> pd.StringDtype:
    return pd.StringDtype("pyarrow" if pa is not None else "python")


_NAT = np.iinfo(np.int64).min


def _categories(seen: Iterable[str], known: tuple[str, ...]) -> list[str]:
    return list(known) + sorted(set(seen).difference(known))


def _finish(col: schema.Column, chunks: list) -> Any:
    """The pandas array of a column from its Arrow chunks (no copy for text)."""
    kind = col.kind
    if kind == "category":
        return _finish_category(chunks, schema.ENUMS[col.enum])
    typ, _ = _ARROW_KINDS[kind]
    arr = pa.chunked_array(chunks, type=typ())
    if kind in ("string", "json"):
        try:
            return _string_dtype().__from_arrow__(arr)
        except ValueError:  # pandas < 2.2 takes only 32-bit offsets (pa.string)
            chunks = [pc.cast(c, pa.string(), memory_pool=_pool()) for c in arr.chunks]
            arr = pa.chunked_array(chunks, type=pa.string())
            return _string_dtype().__from_arrow__(arr)
    if kind == "int":
        return pd.Int64Dtype().__from_arrow__(arr)
    if kind == "float":
        return pd.Float64Dtype().__from_arrow__(arr)
    if kind == "bool":
        return pd.BooleanDtype().__from_arrow__(arr)
    if kind == "timestamp":
        ms = arr.fill_null(_NAT).to_numpy()
        return pd.DatetimeIndex(ms.view("datetime64[ms]")).tz_localize("UTC").array
    return _finish_category(chunks, schema.ENUMS[col.enum])


def _finish_category(chunks: list, known: tuple[str, ...]) -> pd.Categorical:
    """One Categorical from chunks of strings or of dictionary codes."""
    parts = []
    for chunk in chunks:
        if not pa.types.is_dictionary(chunk.type):
            chunk = pc.dictionary_encode(chunk, memory_pool=_pool())
        parts.append((chunk.dictionary.to_pylist(), chunk.indices))
    cats = _categories((v for names, _ in parts for v in names if v is not None), known)
    position = {c: i for i, c in enumerate(cats)}
    codes = []
    for names, indices in parts:
        lookup = np.array([position.get(v, -1) for v in names] + [-1], dtype=np.int64)
        codes.append(lookup[indices.fill_null(len(names)).to_numpy(zero_copy_only=False)])
    all_codes = np.concatenate(codes) if codes else np.zeros(0, dtype=np.int64)
    return pd.Categorical.from_codes(all_codes, categories=cats)


def _array(col: schema.Column, values: Any, n: int) -> Any:
    """The pandas array of a whole column held in Python (when pyarrow is missing)."""
    values = _dense(values, n)
    kind = col.kind
    if kind in ("string", "json"):
        try:
            return pd.array(values, dtype=_string_dtype())
        except (TypeError, ValueError):
            return pd.array(_clean_strings(values), dtype=_string_dtype())
    if kind == "int":
        if _too_big(values):
            values = _clean_ints(values)
        try:
            return pd.array(values, dtype="Int64")
        except (TypeError, ValueError, OverflowError):
            return pd.array(_clean_ints(values), dtype="Int64")
    if kind == "float":
        return pd.array(_clean_floats(values), dtype="Float64")
    if kind == "bool":
        try:
            return pd.array(values, dtype="boolean")
        except (TypeError, ValueError):
            return pd.array(_clean_bools(values), dtype="boolean")
    if kind == "timestamp":
        ms = np.array([_NAT if v is None else v for v in _clean_ints(values)], dtype=np.int64)
        return pd.DatetimeIndex(ms.view("datetime64[ms]")).tz_localize("UTC").array
    clean = _clean_enum(values)
    cats = _categories((v for v in clean if v is not None), schema.ENUMS[col.enum])
    return pd.Categorical(clean, categories=cats)


def _frame(frame: str, data: dict[str, Any], errors: list[dict]) -> pd.DataFrame:
    """The one DataFrame construction of a frame."""
    return _with_attrs(frame, pd.DataFrame(data, copy=False), errors)


def _with_attrs(frame: str, df: pd.DataFrame, errors: list[dict]) -> pd.DataFrame:
    """``df`` with the frame's ``attrs``: its name, the schema version, the errors."""
    df.attrs = {
        "frame": frame,
        "schema_version": schema.SCHEMA_VERSION,
        "errors": [dict(e) for e in errors],
    }
    if "cost_usd" in df.columns:
        df.attrs["price_table"] = price_table()
        unpriced = df["model"][df["cost_usd"].isna()]
        df.attrs["unpriced_models"] = sorted(
            {"<unknown>" if pd.isna(m) else str(m) for m in unpriced}
        )
    return df


def _json_encoder() -> Callable[[Any], str]:
    """Compact JSON text, like ``json.dumps(v, ensure_ascii=False, separators=(",", ":"))``.

    The C encoder is made once and reused: ``json.dumps`` rebuilds it on every call, which
    costs more than encoding the small objects the frames hold.
    """
    c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
    slow = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    if c_make_encoder is None:  # pragma: no cover - CPython always has it
        return slow

    def default(o: Any) -> Any:
        raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")

    quote = json.encoder.encode_basestring  # the C one, as json.dumps uses
    try:
        encode = c_make_encoder(None, default, quote, None, ":", ",", False, False, True)
    except TypeError:  # pragma: no cover - a future CPython changed the private signature
        return slow

    def fast(value: Any) -> str:
        if isinstance(value, str):
            return quote(value)
        try:
            return "".join(encode(value, 0))
        except (TypeError, ValueError, RecursionError):
            return slow(value)

    return fast


_json = _json_encoder()


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
        if self.n >= CHUNK_ROWS and pa is not None:
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
        if pa is None:
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


class _Codes:
    """A category column collected as integer codes (for the frame's largest enum)."""

    __slots__ = ("codes", "names")

    def __init__(self, names: list[str]):
        self.codes: list[int | None] = []
        self.names = names  # shared by every chunk of the column; only ever appended to


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


# ============================================================================ engine


def _progress(
    items: Iterable, progress: bool | None, desc: str, total: int | None = None
) -> Iterable:
    if total is None:
        total = len(items)  # type: ignore[arg-type]
    show = total > PROGRESS_THRESHOLD if progress is None else bool(progress)
    if not show:
        return items
    try:
        from tqdm.auto import tqdm
    except ImportError:  # the bar is a nicety; say once how to get it
        warn("progress bars need tqdm: pip install tqdm", RuntimeWarning)
        return items
    return tqdm(items, desc=desc, unit="session", total=total)


def _report(errors: list[dict], session_id: str, err: CorruptFileError) -> None:
    errors.append({"session_id": session_id, "path": err.path, "problem": err.problem})
    warn(f"skipped session {session_id!r}: {err}", CorruptSessionWarning)


def _index_summaries(
    source: _StoreSource,
    stems: set[str] | None,
    progress: bool | None,
    errors: list[dict],
    skip: set[str] = frozenset(),  # type: ignore[assignment]
    signatures: dict[str, list] | None = None,
) -> list[tuple[list, list[str]]]:
    """``sessions`` rows of a directory store, from its index (recomputing stale rows)."""
    from .index import SessionIndex

    def compute(stem: str) -> tuple[list, list[str]] | None:
        return _summarize(source, stem)

    index = SessionIndex(
        source.store,
        # costs are cached with the rows: a new price table recomputes them
        key=f"{schema.SCHEMA_VERSION}.{SUMMARY_VERSION}.{price_table()}",
        columns=_SESSION_COLS,
    )
    current = None
    if signatures is not None:  # the load check scanned the whole store already
        from .index import FRAGMENT_PARTS

        at = [PARTS.index(p) for p in ("session", *FRAGMENT_PARTS)]  # type: ignore[arg-type]
        current = {stem: [sig[k] for k in at] for stem, sig in signatures.items()}
    entries = index.refresh(
        compute,
        stems=stems,
        progress=lambda items: _progress(items, progress, "sessions"),
        current=current,
    )
    out = []
    for stem, entry in sorted(entries.items()):
        if stem in skip:  # rejected by load(), already reported
            continue
        if entry.get("error") is not None:
            err = entry["error"]
            _report(errors, stem, CorruptFileError(err["path"], err["problem"]))
            continue
        out.append((entry["row"], entry["statuses"]))
    return out


def _cache_key() -> str:
    """What the cached frames depend on besides the files: the code that builds them and
    the price table."""
    import hashlib

    from . import __version__, _loadcheck, cost

    h = hashlib.sha1(f"{__version__}.{schema.SCHEMA_VERSION}.{price_table()}".encode())
    h.update(_loadcheck._models_key().encode())
    for path in (__file__, schema.__file__, cost.__file__):
        with contextlib.suppress(OSError, TypeError), open(path or "", "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def _cached_frames(
    src: _StoreSource,
    wanted: list[str],
    check: LoadCheck,
    known: list[str],
    rejected: dict[str, CorruptFileError],
    errors: list[dict],
    progress: bool | None,
) -> dict[str, pd.DataFrame]:
    """Unfiltered frames of a directory store through the columnar cache (_framecache)."""
    from ._framecache import FrameCache

    assert isinstance(src.store, FileStore)
    good = sorted(known)

    def build(ids: list[str], names: list[str]) -> dict[str, pd.DataFrame]:
        return _collect_frames(
            src.store,
            names,
            ids=ids,
            since=None,
            until=None,
            status=None,
            progress=progress,
            cache=False,
            prechecked=(check, known, {}, []),
        )

    rest = [name for name in wanted if name != "sessions"]
    try:
        built, notes = FrameCache(src.store, _cache_key()).frames(rest, check, good, build)
    except (pa.ArrowException, OSError, ValueError, TypeError, KeyError) as e:
        # a cache that cannot be used is never trusted: build from the files
        log.info("frame cache of %s not used: %r", src.store, e)
        built = build(good, rest)
        notes = {name: built[name].attrs.get("errors", []) for name in rest}
    out: dict[str, pd.DataFrame] = {}
    for name in wanted:
        if name == "sessions":
            out[name] = _collect_frames(
                src.store,
                ["sessions"],
                ids=None,
                since=None,
                until=None,
                status=None,
                progress=progress,
                cache=False,
                prechecked=(check, known, rejected, errors),
            )["sessions"]
        else:
            out[name] = _with_attrs(name, built[name], [*errors, *notes[name]])
    return out


def _empty_frame(name: str) -> pd.DataFrame:
    """A frame without rows, with its columns and dtypes."""
    builder = _VerificationBuilder(None) if name == "verification" else _BUILDERS[name]()
    return builder.frame_df([])


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a frame is built.

    Parsing creates millions of short-lived dicts, and every collection would also walk
    the ever longer column lists; building creates no reference cycles, so there is
    nothing for the collector to find. Its previous state is restored.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _collect(
    source: Any,
    frames: Iterable[str],
    **kwargs: Any,
) -> dict[str, pd.DataFrame]:
    with _gc_paused():
        return _collect_frames(source, frames, **kwargs)


def _collect_frames(
    source: Any,
    frames: Iterable[str],
    *,
    ids: Any,
    since: Any,
    until: Any,
    status: Any,
    progress: bool | None,
    cache: bool = True,
    prechecked: tuple | None = None,
) -> dict[str, pd.DataFrame]:
    wanted = list(dict.fromkeys(frames))
    for name in wanted:
        if name not in schema.FRAMES:
            raise ValueError(f"unknown frame {name!r}; choose from {', '.join(FRAME_NAMES)}")
    src = _open_source(source)
    filters = _Filters(since, until, status)
    errors: list[dict] = []
    use_index = isinstance(src.store, FileStore)

    # Which sessions: the requested ids, narrowed by the session filters when a frame that
    # is filtered per session is wanted and an index makes the filter cheap.
    known: list[str] | None = None
    selected: list[str] | None = None
    check = None
    if prechecked is not None:  # by the caller, for this same store: see _cached_frames
        check, known, rejected, reported = prechecked
        errors.extend(reported)
    elif src.store is not None:
        check = LoadCheck(src.store)
        known = check.ids()
    if ids is not None:
        known = known if known is not None else src.ids()
        selected = _resolve_ids(ids, known, src.label)
    # Sessions that Store.load() rejects are left out and listed in attrs["errors"].
    if prechecked is None:
        rejected = {}
    if check is not None and prechecked is None:
        assert known is not None
        rejected = check.rejected(
            selected if selected is not None else known,
            progress=lambda items: _progress(items, progress, "checking sessions"),
        )
        check.save()
        for sid in sorted(rejected):
            _report(errors, sid, rejected[sid])
        if selected is not None:
            selected = [i for i in selected if i not in rejected]
        known = [i for i in known if i not in rejected]
    if (
        cache
        and use_index
        and pa is not None
        and ids is None
        and not filters.any
        and set(wanted) - {"sessions"}
    ):
        assert check is not None and known is not None
        return _cached_frames(src, wanted, check, known, rejected, errors, progress)
    session_filtered = filters.any and bool(_SESSION_FRAMES.intersection(wanted))
    only_sessions = wanted == ["sessions"]
    if use_index and (only_sessions or (session_filtered and not _RUN_FRAMES.intersection(wanted))):
        stems = None
        if selected is not None or known is not None:
            stems = {sdk_safe_id(i) for i in (selected if selected is not None else known)}
        summaries = _index_summaries(
            src,
            stems,
            progress,
            errors,
            skip={sdk_safe_id(i) for i in rejected},
            signatures=check.signatures if check is not None and ids is None else None,
        )
        chosen = set(selected) if selected is not None else None
        keep = {
            row[0]
            for row, statuses in summaries
            if (chosen is None or row[0] in chosen)
            and row[0] not in rejected
            and (not filters.any or filters.session_ok(row, statuses))
        }
        if only_sessions:
            builder = _SessionsBuilder()
            builder.where = _file_of(src, "sessions")
            for row, _ in summaries:
                if row[0] in keep:
                    builder.add_row(row)
            return {"sessions": builder.frame_df(errors)}
        order = selected if selected is not None else sorted(keep)
        selected = [i for i in order if i in keep]
        session_filtered = False  # done
    if selected is None:
        selected = sorted(known if known is not None else src.ids())

    want_summary = "sessions" in wanted or session_filtered
    parts: set[str] = set()
    for name in wanted:
        parts |= _PARTS[name]
    if want_summary:
        parts |= _PARTS["sessions"]
    want_runs = bool(_RUN_FRAMES.intersection(wanted))
    builders: dict[str, Any] = {}
    if "sessions" in wanted:
        builders["sessions"] = _SessionsBuilder()
    if "messages" in wanted:
        builders["messages"] = _MessagesBuilder()
    if "traces" in wanted:
        builders["traces"] = _TracesBuilder()
    if "verification" in wanted:
        builders["verification"] = _VerificationBuilder(filters.status)
    if "runs" in wanted:
        builders["runs"] = _RunsBuilder()
    if "run_events" in wanted:
        builders["run_events"] = _EventsBuilder()
    if "spans" in wanted:
        builders["spans"] = _SpansBuilder()
    for name, builder in builders.items():
        builder.where = _file_of(src, name)
    runs_b, events_b, spans_b = (
        builders.get("runs"),
        builders.get("run_events"),
        builders.get("spans"),
    )
    ordered_parts = [p for p in ("session", "runs", "traces", "verification") if p in parts]
    need_stats = want_summary or runs_b is not None or spans_b is not None

    reads = src.read_all(selected, ordered_parts)
    flushing = list(builders.values())
    for key, raw in _progress(reads, progress, "sessions", total=len(selected)):
        for builder in flushing:
            builder.maybe_flush()
        try:
            if isinstance(raw, CorruptFileError):
                raise raw
            session = raw.get("session")
            if "session" in raw:
                if session is None:  # deleted since listed: nothing to report
                    continue
                if not isinstance(session, dict):
                    raise CorruptFileError(_where(src, key, "session"), "not a JSON object")
            session = session if isinstance(session, dict) else {}
            sid = _str(session.get("id")) or key
            run_list = [_d(r) for r in _l(raw.get("runs"))]
        except CorruptFileError as err:
            _report(errors, key, err)
            continue
        session_ok = True
        stats: list[_RunStats] = []
        if want_summary or want_runs:
            model = _session_model(session)
            for r_index, run in enumerate(run_list):
                snap = _d(run.get("snapshot"))
                run_id = _str(snap.get("id"))
                keep_run = want_runs and filters.run_ok(
                    snap.get("status"), snap.get("created_at_ms")
                )
                span_rows: list | None = [] if keep_run and spans_b is not None else None
                if keep_run and events_b is not None:
                    # one pass over the events fills run_events, the stats and the spans
                    st = _RunStats(snap) if need_stats else None
                    walker = None
                    if span_rows is not None:
                        walker = _SpanWalker(run_id or "", st, span_rows)
                    events_b.add(sid, run_id, _l(run.get("events")), st, walker)
                elif need_stats:
                    st = _run_stats(run, span_rows, run_id)
                if need_stats:
                    stats.append(st)
                if not keep_run:
                    continue
                if runs_b is not None:
                    runs_b.add(sid, r_index, run, st, model)
                if span_rows is not None:
                    spans_b.add(sid, run_id, span_rows)
        if want_summary:
            row, statuses = _summary_row(
                sid,
                session,
                stats,
                raw.get("traces"),
                raw.get("verification"),
                _lineage_values(src, sid),
            )
            if session_filtered:
                session_ok = filters.session_ok(row, statuses)
            if session_ok and "sessions" in builders:
                builders["sessions"].add_row(row)
        if not session_ok:
            continue
        if "messages" in builders:
            builders["messages"].add(sid, session)
        if "traces" in builders:
            builders["traces"].add(sid, raw.get("traces"))
        if "verification" in builders:
            builders["verification"].add(sid, raw.get("verification"))

    return {name: builders[name].frame_df(errors) for name in wanted}


# ============================================================================ public API

#: What ``source`` may be, for every frame function.
Source = Any  # str | os.PathLike | Store | SessionBundle | live session | list of those | None
Ids = str | Iterable[str] | None
Statuses = str | Iterable[str] | None


def _one(
    name: str,
    source: Source,
    ids: Ids,
    since: Any,
    until: Any,
    status: Statuses,
    progress: bool | None,
) -> pd.DataFrame:
    return _collect(
        source, [name], ids=ids, since=since, until=until, status=status, progress=progress
    )[name]


def all_frames(
    source: Source = None,
    frames: Iterable[str] | None = None,
    *,
    ids: Ids = None,
    since: Any = None,
    until: Any = None,
    status: Statuses = None,
    progress: bool | None = None,
) -> dict[str, pd.DataFrame]:
    """Several frames (default: all seven) in one pass over the files.

    Each file is read and parsed once, so this is the way to get more than one frame of a
    large store. ``frames`` names the frames wanted; the other arguments mean for each
    frame what they mean for its own function (``status`` is a run status for ``runs``,
    ``run_events`` and ``spans``, a check status for ``verification``, and keeps sessions
    with such a run for the others).

    >>> f = a3s_nb.all_frames("sessions")                      # doctest: +SKIP
    >>> f["spans"].merge(f["runs"], on=["session_id", "run_id"])  # doctest: +SKIP
    """
    return _collect(
        source,
        FRAME_NAMES if frames is None else frames,
        ids=ids,
        since=since,
        until=until,
        status=status,
        progress=progress,
    )


_SOURCE_DOC = """
    ``source``: a store path, a ``Store``, a ``SessionBundle``, a live session (such as
    ``a3s_code.Session``), a list of bundles or live sessions, or None for the default store.
    ``ids``: session ids or unique prefixes. ``progress``: force the progress bar on or off
    (default: shown above ``PROGRESS_THRESHOLD`` sessions).

    Columns: docs/frames.md (``a3s_nb.schema``). ``df.attrs`` carries the frame name, the
    ``schema_version`` and ``errors``: the sessions
    left out because ``Store.load()`` rejects them or a file is unreadable (each also warned
    as ``CorruptSessionWarning``), and values that did not fit a column.
"""


def sessions(
    source: Source = None,
    *,
    ids: Ids = None,
    since: Any = None,
    until: Any = None,
    status: Statuses = None,
    progress: bool | None = None,
) -> pd.DataFrame:
    """One row per session, newest first: model, workspace, times, counts, tokens, cost.

    Served from an index in ``<store>/.a3s_nb/`` refreshed for files changed since the last
    call, so it stays cheap on a large store.

    ``status``: keep sessions that have at least one run with that run status (or one of
    them). ``since`` / ``until``: keep sessions whose activity, from ``min(created_at,
    first_run_at)`` to ``max(updated_at, last_run_at)``, overlaps ``[since, until)``.
    {source}
    >>> a3s_nb.sessions("sessions", status="failed")      # doctest: +SKIP
    """
    return _one("sessions", source, ids, since, until, status, progress)


def messages(
    source: Source = None,
    *,
    ids: Ids = None,
    since: Any = None,
    until: Any = None,
    status: Statuses = None,
    progress: bool | None = None,
) -> pd.DataFrame:
    """One row per content block of the saved transcripts (text, tool calls, tool results).

    Messages carry no run id or time, so the filters select whole sessions: ``status``
    keeps sessions with at least one run of that status; ``since`` / ``until`` keep
    sessions whose activity overlaps ``[since, until)`` (as for ``sessions``).
    {source}
    >>> a3s_nb.messages(session).query("block_type == 'tool_use'")      # doctest: +SKIP
    """
    return _one("messages", source, ids, since, until, status, progress)


def traces(
    source: Source = None,
    *,
    ids: Ids = None,
    since: Any = None,
    until: Any = None,
    status: Statuses = None,
    progress: bool | None = None,
) -> pd.DataFrame:
    """One row per trace event: every tool execution the SDK recorded.

    Trace events carry no run id or time, so the filters select whole sessions: ``status``
    keeps sessions with at least one run of that status; ``since`` / ``until`` keep
    sessions whose activity overlaps ``[since, until)``.
    {source}
    >>> a3s_nb.traces("sessions").groupby("tool_name").duration_ms.describe()  # doctest: +SKIP
    """
    return _one("traces", source, ids, since, until, status, progress)


def runs(
    source: Source = None,
    *,
    ids: Ids = None,
    since: Any = None,
    until: Any = None,
    status: Statuses = None,
    progress: bool | None = None,
) -> pd.DataFrame:
    """One row per run record: status, prompt, outcome, times, turns, tool calls, tokens.

    ``status``: keep runs with that run status (``completed``, ``failed``, ...; a list
    keeps any of them). ``since`` / ``until``: keep runs created in ``[since, until)``.
    {source}
    >>> a3s_nb.runs("sessions", since="2026-01-01", status="failed")   # doctest: +SKIP
    """
    return _one("runs", source, ids, since, until, status, progress)


def run_events(
    source: Source = None,
    *,
    ids: Ids = None,
    since: Any = None,
    until: Any = None,
    status: Statuses = None,
    progress: bool | None = None,
) -> pd.DataFrame:
    """One row per run event, with its type and common fields pulled out.

    Filters select whole runs, as for ``runs``: ``status`` is the run's status (not an
    event's), ``since`` / ``until`` bound the run's creation time.
    {source}
    >>> a3s_nb.run_events(session).event_type.value_counts()           # doctest: +SKIP
    """
    return _one("run_events", source, ids, since, until, status, progress)


def spans(
    source: Source = None,
    *,
    ids: Ids = None,
    since: Any = None,
    until: Any = None,
    status: Statuses = None,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Run, planning, step, turn and tool spans with start, end, duration, status and parent.

    Filters select whole runs, as for ``runs``: ``status`` is the run's status (a span's
    own ``status`` column is ``ok`` / ``error`` / ``unset``), ``since`` / ``until`` bound
    the run's creation time.
    {source}
    >>> a3s_nb.spans("sessions").query("kind == 'tool'")               # doctest: +SKIP
    """
    return _one("spans", source, ids, since, until, status, progress)


def verification(
    source: Source = None,
    *,
    ids: Ids = None,
    since: Any = None,
    until: Any = None,
    status: Statuses = None,
    progress: bool | None = None,
) -> pd.DataFrame:
    """One row per verification check, with its report's subject and status.

    ``status``: keep checks with that check status (``passed``, ``failed``,
    ``needs_review``, ``skipped``). ``since`` / ``until``: keep sessions whose activity
    overlaps ``[since, until)`` (reports carry no time of their own).
    {source}
    >>> a3s_nb.verification("sessions", status="failed")               # doctest: +SKIP
    """
    return _one("verification", source, ids, since, until, status, progress)


for _fn in (sessions, messages, traces, runs, run_events, spans, verification):
    _fn.__doc__ = (_fn.__doc__ or "").replace("{source}", _SOURCE_DOC.strip("\n") + "\n")
del _fn


_BUILDERS: dict[str, Callable[[], _Builder]] = {
    "sessions": _SessionsBuilder,
    "messages": _MessagesBuilder,
    "traces": _TracesBuilder,
    "runs": _RunsBuilder,
    "run_events": _EventsBuilder,
    "spans": _SpansBuilder,
}
