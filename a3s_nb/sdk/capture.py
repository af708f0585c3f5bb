"""Turn a live a3s-code session into a :class:`SessionBundle`, through its public API only.

A "live session" is a real ``a3s_code.Session`` or any object with the same read methods:
``session_id``, ``history()``, ``runs()``, ``run_events(run_id)`` and ``trace_events()``;
``workspace``, ``tool_names()``, ``verification_reports()`` and ``get_artifact(uri)`` are
used when present. Nothing is written here: the bundle is validated through the models so
that the store only ever receives something a3s-code can read back.

Run events are taken as the records the SDK persists, whichever shape its ``run_events()``
gives them in (envelopes from a3s-code 5.0 on, see :mod:`a3s_nb.sdk_features`): the files
written are what the SDK itself writes and reads back.

What the public API does not expose is filled in as a3s-code 3.1.0 writes it, or kept from
the version already saved under the same id:

* ``created_at`` is kept from the saved version (a3s-code resets it on every save); a new
  save takes the start of the first run, else now. ``updated_at`` is now.
* ``config`` is kept from the saved version, else a3s-code's defaults with
  ``system_prompt: null``. The SDK's resume takes the system prompt from the agent, not from
  the file, so nothing is lost by not knowing it.
* ``model_name``/``llm_config`` come from the ``model=`` argument, else from the session
  itself (a hidden slash command receives the model in its context), else from the last run's
  ``agent_end.meta``, else from the saved version. The SDK needs them to resume a session
  that used a model other than the agent's default.
* ``total_usage`` is the sum of the runs' ``agent_end`` usage (a3s-code 3.1.0 writes zeros).
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pydantic_core
from pydantic import ValidationError

from ..errors import A3sNbError, CaptureError, NotASessionError, describe_validation_error
from ..store._tokens import total_usage
from ..store.models import SessionBundle, ToolResultBlock
from ..store.serde import content_key
from .features import run_events, session_model

__all__ = [
    "CaptureError",
    "NotASessionError",
    "Previous",
    "bundle_from_parts",
    "bundle_to_parts",
    "capture",
    "capture_parts",
    "count_tool_calls",
    "fingerprint",
    "is_session_like",
    "tool_call_counts",
]

#: The read methods an object must have to be captured.
READ_METHODS = ("history", "runs", "run_events", "trace_events")

_ARTIFACT_URI = re.compile(r"a3s://[A-Za-z0-9][A-Za-z0-9_\-./:]*[A-Za-z0-9]")


# --------------------------------------------------------------------------- detection


def is_session_like(obj: Any) -> bool:
    """True for a live ``a3s_code.Session`` or an object with the same read methods."""
    if isinstance(obj, type):  # the Session class itself has all these as descriptors
        return False
    try:
        return hasattr(obj, "session_id") and all(
            callable(getattr(obj, name, None)) for name in READ_METHODS
        )
    except Exception:  # a broken __getattr__ is not a session
        return False


def fingerprint(session: Any) -> tuple[Any, ...] | None:
    """A cheap value that changes whenever something ``a3s_nb.save`` writes changes.

    The number of runs and the last one's id, status and update time (a ``send`` or
    ``stream``), and the numbers of trace events (a tool called directly, as in
    ``session.bash(...)``) and of verification reports (``record_verification_reports``).
    None while a run is in progress (its turn is not in the history yet).
    """
    current = getattr(session, "current_run", None)
    if callable(current) and current() is not None:
        return None
    runs = session.runs()
    last = runs[-1] if runs else {}
    reports = getattr(session, "verification_reports", None)
    return (
        len(runs),
        last.get("id"),
        last.get("status"),
        last.get("updated_at_ms"),
        len(session.trace_events()),
        len(reports()) if callable(reports) else 0,
    )


#: The fingerprint of a session that has not run, called a tool or recorded a check.
EMPTY_FINGERPRINT = (0, None, None, None, 0, 0)


def _attr(obj: Any, name: str, default: Any = None) -> Any:
    """A property or zero-argument method of the SDK (both spellings exist across versions)."""
    value = getattr(obj, name, default)
    return value() if callable(value) else value


# --------------------------------------------------------------------------- capture


def capture(
    session: Any,
    *,
    session_id: str | None = None,
    model: str | None = None,
    previous: SessionBundle | None = None,
    now: float | None = None,
) -> SessionBundle:
    """Read a live session into a validated :class:`SessionBundle`.

    ``session_id`` saves it under another id (run records are relabelled to match);
    ``previous`` is the version already saved under that id, whose ``created_at``, config
    and unexposed fields are kept; ``model`` is ``"provider/model"`` when the session cannot
    tell.

    >>> bundle = capture(session)                       # doctest: +SKIP
    >>> bundle                                          # doctest: +SKIP
    SessionBundle(id='4f1c...', messages=4, runs=1, traces=1, verification=0, artifacts=0)
    """
    saved = None
    if previous is not None:
        prev_parts = bundle_to_parts(previous)
        saved = Previous(
            session=prev_parts["session"],
            artifacts=lambda: prev_parts["artifacts"]["artifacts"],
            subagent_tasks=prev_parts.get("subagent_tasks"),
        )
    parts = capture_parts(session, session_id=session_id, model=model, previous=saved, now=now)
    return bundle_from_parts(parts)


@dataclass
class Previous:
    """What :func:`capture_parts` keeps from the version already saved (file values).

    ``session`` is the session document (its messages are not needed); ``artifacts`` is
    called only when the live session no longer holds an artifact its transcript names.
    """

    session: dict[str, Any]
    artifacts: Callable[[], list[dict[str, Any]]] = list
    subagent_tasks: list[Any] | None = None


def capture_parts(
    session: Any,
    *,
    session_id: str | None = None,
    model: str | None = None,
    previous: Previous | None = None,
    now: float | None = None,
    run_keys: list[bytes] | None = None,
) -> dict[str, Any]:
    """Read a live session into the JSON value of each file the store writes, by part.

    As :func:`capture`, without building models: the values are what the SDK returns (a
    :class:`~a3s_nb.store.serde.PartEncoder` validates them before they are written).

    ``run_keys``, if given, is filled with the content key (:func:`a3s_nb.store.serde.content_key`)
    of each run's events, in order: computed once, when the events are read from the SDK
    (those of a finished run are kept, and so is their key), for
    :meth:`~a3s_nb.store.serde.PartEncoder.encode`.
    """
    if not is_session_like(session):
        raise NotASessionError(
            f"{type(session).__name__} object is not an a3s-code session "
            f"(it needs {', '.join(m + '()' for m in READ_METHODS)} and session_id)"
        )
    now = time.time() if now is None else now
    live_id = str(_attr(session, "session_id"))
    sid = session_id or live_id
    try:
        history = list(session.history())
        snapshots = [dict(s) for s in session.runs()]
        read = _read_runs(session, snapshots)
        traces = list(session.trace_events())
        verification = (
            list(session.verification_reports())
            if callable(getattr(session, "verification_reports", None))
            else []
        )
        tool_names = (
            list(session.tool_names()) if callable(getattr(session, "tool_names", None)) else []
        )
        workspace = _attr(session, "workspace")
    except A3sNbError:
        raise
    except Exception as e:  # the SDK raises RuntimeError/ValueError and friends
        raise CaptureError(f"could not read session {live_id!r}: {e}") from e

    runs = [{"snapshot": r.snapshot, "events": list(r.events)} for r in read]
    if run_keys is not None:
        run_keys[:] = [r.events_key for r in read]
    for run in runs:
        run["snapshot"]["session_id"] = sid
        # a3s-code 3.3+ counts events cumulatively (older ones may have been trimmed), so
        # the count may exceed the events kept, never fall short of them
        run["snapshot"]["event_count"] = max(
            int(run["snapshot"].get("event_count") or 0), len(run["events"])
        )

    prev = previous.session if previous is not None else None
    data: dict[str, Any] = dict(prev) if prev is not None else _new_session_data()
    config = data["config"] = dict(data.get("config") or {})
    if workspace:
        config["workspace"] = str(workspace)
    elif not config.get("workspace"):
        raise CaptureError(f"session {live_id!r} does not say its workspace")

    model_name = model or session_model(session) or _model_from_runs(runs)
    if model_name:
        provider, sep, model_id = model_name.partition("/")
        if not sep or not provider or not model_id:
            raise CaptureError(f"model {model_name!r} is not 'provider/model'")
        data["model_name"] = model_name
        data["llm_config"] = {"provider": provider, "model": model_id, "base_url": None}

    first_run_s = min((int(s["created_at_ms"]) // 1000 for s in snapshots), default=None)
    created = prev.get("created_at") if prev is not None else None
    data.update(
        id=sid,
        messages=history,
        tool_names=tool_names or data.get("tool_names", []),
        created_at=created or min(first_run_s or int(now), int(now)),
        updated_at=int(now),
        total_usage=total_usage(u for r in read for u in r.usages) or data.get("total_usage") or {},
    )

    tool_ends = [e for r in read for e in r.tool_ends]
    artifacts = _artifacts(session, _uris(history, tool_ends, traces), previous)
    parts: dict[str, Any] = {
        "session": data,
        "runs": runs,
        "traces": traces,
        "verification": verification,
        "artifacts": {"artifacts": artifacts},
    }
    if previous is not None and previous.subagent_tasks is not None:
        parts["subagent_tasks"] = previous.subagent_tasks
    return parts


@dataclass
class _Run:
    """One run as read from the SDK, with what capture needs from its events."""

    snapshot: dict[str, Any]
    events: list[Any]
    tool_ends: list[dict[str, Any]]
    usages: list[dict[str, Any]]  # of its agent_end events
    events_key: bytes  # content_key(events), taken as they were read


# Runs that are over do not change: the last few live sessions' are kept, so a save after
# one more prompt reads only the new run's events from the SDK. The session objects are
# referenced (the SDK's cannot be weakly referenced), so their ids are never reused.
_FINISHED = frozenset({"completed", "failed", "cancelled"})
_EVENTS_KEPT: OrderedDict[int, tuple[Any, dict[str, _Run]]] = OrderedDict()
_EVENTS_LOCK = threading.Lock()
_MAX_SESSIONS_KEPT = 4


def _read_runs(session: Any, snapshots: list[dict[str, Any]]) -> list[_Run]:
    """Each run's snapshot and events, read from the SDK unless the run was over."""
    with _EVENTS_LOCK:
        entry = _EVENTS_KEPT.pop(id(session), None)
        if entry is None or entry[0] is not session:
            entry = (session, {})
        _EVENTS_KEPT[id(session)] = entry
        while len(_EVENTS_KEPT) > _MAX_SESSIONS_KEPT:
            _EVENTS_KEPT.popitem(last=False)
    kept = entry[1]
    out: list[_Run] = []
    finished: dict[str, _Run] = {}
    for snapshot in snapshots:
        run_id = snapshot["id"]
        known = kept.get(run_id)
        if known is None or known.snapshot != snapshot:
            events = run_events(session, run_id)  # records, whichever shape the SDK gives
            known = _Run(dict(snapshot), events, *_digest(events), content_key(events))
        if snapshot.get("status") in _FINISHED:
            finished[run_id] = known
        out.append(_Run(snapshot, known.events, known.tool_ends, known.usages, known.events_key))
    with _EVENTS_LOCK:
        kept.clear()
        kept.update(finished)
    return out


def _digest(events: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    tool_ends, usages = [], []
    for record in events:
        event = record.get("event") or {}
        kind = event.get("type")
        if kind == "tool_end":
            tool_ends.append(event)
        elif kind == "agent_end" and isinstance(event.get("usage"), dict):
            usages.append(event["usage"])
    return tool_ends, usages


def _new_session_data() -> dict[str, Any]:
    """A session document with a3s-code 3.1.0's defaults (see the fixture store)."""
    return {
        "id": "",
        "config": {
            "name": "",
            "workspace": "",
            "system_prompt": None,
            "max_context_length": 200_000,
            "auto_compact": False,
            "auto_compact_threshold": 0.8,
            "storage_type": "file",
            "max_parallel_tasks": 8,
            "auto_delegation": {
                "enabled": False,
                "autoParallel": True,
                "minConfidence": 0.72,
                "maxTasks": 4,
            },
            "planning_mode": "Auto",
            "goal_tracking": False,
        },
        "state": "Active",
        "messages": [],
        "context_usage": {"used_tokens": 0, "max_tokens": 200_000, "percent": 0.0, "turns": 0},
        "total_usage": {},
        "total_cost": 0.0,
        "cost_records": [],
        "tool_names": [],
        "thinking_enabled": False,
        "thinking_budget": None,
        "created_at": 0,
        "updated_at": 0,
        "tasks": [],
    }


def _model_from_runs(runs: list[dict[str, Any]]) -> str | None:
    for run in reversed(runs):
        for record in reversed(run["events"]):
            event = record.get("event") or {}
            meta = event.get("meta") if event.get("type") == "agent_end" else None
            if meta and meta.get("provider") and meta.get("request_model"):
                return f"{meta['provider']}/{meta['request_model']}"
    return None


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def artifact_uris(history: list[Any], runs: list[dict[str, Any]], traces: list[Any]) -> list[str]:
    """The ``a3s://`` URIs the transcript, the tool_end events and the traces refer to."""
    tool_ends = [e for run in runs for e in _digest(run["events"])[0]]
    return _uris(history, tool_ends, traces)


def _uris(history: list[Any], tool_ends: list[Any], traces: list[Any]) -> list[str]:
    seen: dict[str, None] = {}
    for source in (history, tool_ends, traces):
        if not _may_hold_uri(source):
            continue  # the common case, found at C speed
        for text in _strings(source):
            if "a3s://" in text:
                for m in _ARTIFACT_URI.finditer(text):
                    seen.setdefault(m.group(0))
    return list(seen)


def _may_hold_uri(value: Any) -> bool:
    try:
        return b"a3s://" in content_key(value)  # strings are in it as UTF-8
    except pydantic_core.PydanticSerializationError:  # not JSON: look at every string
        return True


def _artifacts(session: Any, uris: list[str], previous: Previous | None) -> list[dict[str, Any]]:
    saved: dict[str, Any] | None = None
    get = getattr(session, "get_artifact", None)
    out: list[dict[str, Any]] = []
    for uri in uris:
        artifact = None
        if callable(get):
            try:
                artifact = get(uri)
            except Exception as e:
                raise CaptureError(f"could not read artifact {uri}: {e}") from e
        if artifact is None and previous is not None:
            if saved is None:  # read only when needed
                saved = {a.get("artifact_uri"): a for a in previous.artifacts()}
            artifact = saved.get(uri)
        if artifact is not None:  # a3s://tasks/... URIs are not retained by the SDK
            out.append(dict(artifact))
    return out


# --------------------------------------------------------------------------- parts


def bundle_to_parts(bundle: SessionBundle) -> dict[str, Any]:
    """The JSON value of each file the store will write, keyed by part."""
    parts: dict[str, Any] = {"session": bundle.session.model_dump(mode="json", by_alias=True)}
    parts["runs"] = [r.model_dump(mode="json", by_alias=True) for r in bundle.runs]
    parts["traces"] = [t.model_dump(mode="json", by_alias=True) for t in bundle.traces]
    parts["verification"] = [v.model_dump(mode="json", by_alias=True) for v in bundle.verification]
    parts["artifacts"] = bundle.artifacts.model_dump(mode="json", by_alias=True)
    if bundle.subagent_tasks is not None:
        parts["subagent_tasks"] = [
            t.model_dump(mode="json", by_alias=True) for t in bundle.subagent_tasks
        ]
    return parts


def bundle_from_parts(parts: dict[str, Any]) -> SessionBundle:
    """Validate file values into a bundle; a shape error names the part and the JSON path."""
    try:
        return SessionBundle.model_validate(parts)
    except ValidationError as e:
        raise CaptureError(
            "the session does not have the a3s-code shape: " + describe_validation_error(e)
        ) from None


def count_tool_calls(bundle: SessionBundle) -> int:
    """Tool calls the model made, as the transcript shows them (``tool_use`` blocks)."""
    return sum(
        1
        for m in bundle.session.messages
        for b in m.content
        if getattr(b, "type", "") == "tool_use"
    )


#: What a3s-code puts in the result of a tool call it did not run because nothing could
#: confirm it (no ``PermissionPolicy`` allowing it, and no confirmation manager).
REFUSED_MARK = "requires confirmation but no HITL confirmation manager"


@dataclass(frozen=True)
class ToolCallCounts:
    """Tool calls of a session: made, failed (an error result) and, of those, refused."""

    calls: int = 0
    failed: int = 0
    refused: int = 0


def tool_call_counts(source: SessionBundle | list[dict[str, Any]]) -> ToolCallCounts:
    """How many tool calls the model made, how many failed, and how many were refused.

    ``source`` is a bundle, or the messages as the session file holds them. A refused call
    never ran: a3s-code answered it with an error because the session has no permission
    policy that allows it and nobody to ask (see ``REFUSED_MARK``).
    """
    if not isinstance(source, SessionBundle):
        calls = failed = refused = 0
        for message in source:
            for block in message.get("content") or ():
                kind = block.get("type") if isinstance(block, dict) else None
                if kind == "tool_use":
                    calls += 1
                elif kind == "tool_result" and block.get("is_error"):
                    failed += 1
                    refused += REFUSED_MARK in ToolResultBlock.model_validate(block).text
        return ToolCallCounts(calls, failed, refused)
    calls = failed = refused = 0
    for message in source.session.messages:
        for block in message.content:
            kind = getattr(block, "type", "")
            if kind == "tool_use":
                calls += 1
            elif kind == "tool_result" and block.is_error:
                failed += 1
                refused += REFUSED_MARK in block.text
    return ToolCallCounts(calls, failed, refused)
