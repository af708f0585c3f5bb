"""A run file (``runs/<id>.json``) as typed records: ``Run`` > ``Record`` > one event class.

The run files hold most of a store's bytes and nearly all of its events, so they are
decoded straight into small classes, one per event type (a msgspec tagged union): the C
decoder then does the field extraction, and builds neither a dict per event nor the key
strings (measured on 1,000 sessions: 0.081 s instead of 0.149 s for plain JSON values).
Every event class has the same attribute names, one per ``run_events`` column it fills
(``text`` is whichever field holds the event's text, ``tool_call_id`` its ``id``...), so
the frames read an event without asking its type.

A run event may also be an envelope, the shape ``Session.run_events()`` gives from a3s-code
5.0 on (:mod:`a3s_nb._envelope`): it is read into the same record. The SDK never writes
envelopes into a store, so a file of them is rare and takes the lenient way.

That typed way is taken only when it cannot differ from reading the plain JSON: values
are not checked (a field holds whatever the file holds, as it would in a dict), and a
file with anything the classes do not describe (an event type or a field this version
does not know, a record that is not an object, a snapshot field of an unexpected type)
is read the lenient way instead: parsed into plain JSON values and turned into the same
shapes field by field (``Loose`` events). Downstream there is one code path.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Union

from ..errors import EventProtocolError
from ..store._envelope import is_envelope, record_of
from ..store._json import loads
from . import schema
from ._columns import _json

try:
    import msgspec
except ImportError:  # pragma: no cover - tested in a subprocess; msgspec is in a3s-nb[all]
    msgspec = None  # type: ignore[assignment]

# ============================================================================ event kinds

# What an event does besides filling ``text``: which columns, statistics and spans it feeds.
(
    K_NONE,
    K_TURN_START,
    K_TURN_END,
    K_TOOL_START,
    K_TOOL_DELTA,
    K_TOOL_END,
    K_AGENT_END,
    K_STEP_START,
    K_STEP_END,
    K_PLANNING_START,
    K_PLANNING_END,
) = range(11)

#: How ``run_events`` reads each event type: the field holding its text, its kind, and the
#: fields pulled out into columns (the rest go to ``data`` as JSON).
EVENT_SPECS: dict[str, tuple[str | None, int, tuple[str, ...]]] = {
    t: (text, kind, fields)
    for t, text, kind, fields in (
        ("text_delta", "text", K_NONE, ("text",)),
        ("tool_input_delta", "delta", K_NONE, ("delta",)),
        ("turn_start", None, K_TURN_START, ("turn",)),
        ("turn_end", None, K_TURN_END, ("turn", "usage")),
        ("tool_start", None, K_TOOL_START, ("id", "name")),
        ("tool_end", "output", K_TOOL_END, ("id", "name", "output", "exit_code")),
        ("tool_output_delta", "delta", K_TOOL_DELTA, ("id", "name", "delta")),
        ("reasoning_delta", "text", K_NONE, ("text",)),
        ("agent_start", "prompt", K_NONE, ("prompt",)),
        ("planning_start", "prompt", K_PLANNING_START, ("prompt",)),
        ("planning_end", None, K_PLANNING_END, ()),
        ("agent_end", "text", K_AGENT_END, ("text", "usage")),
        ("error", "message", K_NONE, ("message",)),
        ("step_start", "description", K_STEP_START, ("step_id", "step_number", "description")),
        ("step_end", None, K_STEP_END, ("step_id", "step_number", "status")),
    )
}
#: A type read by no spec: only ``type`` is pulled out.
OTHER_SPEC: tuple[str | None, int, tuple[str, ...]] = (None, K_NONE, ())

#: The other fields of each event type as a3s-code 3.1.0 writes them, in its order
#: (docs: the a3s-code format, ``AgentEvent``). They go to ``data``; a type or a field
#: not listed here is still read, the lenient way.
EXTRA_FIELDS: dict[str, tuple[str, ...]] = {
    "agent_start": (),
    "agent_mode_changed": ("mode", "agent", "description"),
    "turn_start": (),
    "text_delta": (),
    "reasoning_delta": (),
    "tool_start": (),
    "tool_input_delta": (),
    "tool_end": ("metadata", "error_kind"),
    "tool_output_delta": (),
    "turn_end": (),
    "agent_end": ("verification_summary", "meta"),
    "error": (),
    "confirmation_required": ("tool_id", "tool_name", "args", "timeout_ms"),
    "confirmation_received": ("tool_id", "approved", "reason"),
    "confirmation_timeout": ("tool_id", "action_taken"),
    "external_task_pending": (
        "task_id",
        "session_id",
        "lane",
        "command_type",
        "payload",
        "timeout_ms",
    ),
    "external_task_completed": ("task_id", "session_id", "success"),
    "permission_denied": ("tool_id", "tool_name", "args", "reason"),
    "context_resolving": ("providers",),
    "context_resolved": ("total_items", "total_tokens"),
    "command_dead_lettered": ("command_id", "command_type", "lane", "error", "attempts"),
    "command_retry": ("command_id", "command_type", "lane", "attempt", "delay_ms"),
    "queue_alert": ("level", "alert_type", "message"),
    "task_updated": ("session_id", "tasks"),
    "memory_stored": ("memory_id", "memory_type", "importance", "tags"),
    "memory_recalled": ("memory_id", "content", "relevance"),
    "memories_searched": ("query", "tags", "result_count"),
    "memory_cleared": ("tier", "count"),
    "subagent_start": ("task_id", "session_id", "parent_session_id", "agent", "description"),
    "subagent_progress": ("task_id", "session_id", "status", "metadata"),
    "subagent_end": ("task_id", "session_id", "agent", "output", "success"),
    "planning_start": (),
    "planning_end": ("plan", "estimated_steps"),
    "step_start": ("total_steps",),
    "step_end": ("total_steps",),
    "goal_extracted": ("goal",),
}
#: Events that repeat with the same payload in every run (their ``data`` is memoised).
MEMO_EVENTS = frozenset({"agent_mode_changed", "context_resolving", "context_resolved"})

#: The attribute a pulled field is read into: its ``run_events`` column.
_COLUMN_OF = {"id": "tool_call_id", "name": "tool_name"}
#: The event type codes: their position in the schema's enum.
TYPE_NAMES: tuple[str, ...] = schema.ENUMS["event_type"]
TYPE_CODES: dict[str, int] = {t: i for i, t in enumerate(TYPE_NAMES)}

_UNSET: Any = msgspec.UNSET if msgspec is not None else object()


class _Plain:
    """Without msgspec, the records are plain objects with the same attributes (read only
    the lenient way)."""

    def __init_subclass__(cls, **options: Any) -> None:
        super().__init_subclass__()

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)


_Struct: Any = msgspec.Struct if msgspec is not None else _Plain


def _attr(field: str, text_field: str | None) -> str:
    if field == text_field:
        return "text"
    return _COLUMN_OF.get(field, field)


# ============================================================================ events


class Event(_Struct, tag_field="type", forbid_unknown_fields=True, gc=False):
    """Base of the typed event classes; the class attributes are what a type lacks."""

    # the run_events columns an event fills (None: not this type's)
    text = turn = tool_call_id = tool_name = exit_code = usage = None
    step_id = step_number = status = None
    # fields other frames read (the JSON field names with an ``x_`` prefix), UNSET if absent
    x_metadata = x_meta = x_verification_summary = _UNSET
    etype: ClassVar[Any] = None  # the ``type``
    code: ClassVar[Any] = None  # its code in the event_type enum
    kind: ClassVar[int] = K_NONE
    #: ``(attribute, JSON name)`` of the fields that go to ``data``
    extras: ClassVar[tuple[tuple[str, str], ...]] = ()
    has_data: ClassVar[bool] = False

    def data(self) -> dict | None:
        """The event's fields not pulled into columns, by JSON name; None if none."""
        rest = {}
        for attr, name in self.extras:
            value = getattr(self, attr)
            if value is not _UNSET:
                rest[name] = value
        return rest or None


def _event_class(t: str) -> type[Event]:
    text_field, kind, pulled = EVENT_SPECS.get(t, OTHER_SPEC)
    fields: list[tuple[str, Any, Any]] = []
    for f in pulled:
        attr = _attr(f, text_field)
        fields.append((attr, Any, msgspec.field(name=f, default=None)))
    extras = tuple((f"x_{f}", f) for f in EXTRA_FIELDS[t] if f not in pulled)
    for attr, f in extras:
        fields.append((attr, Any, msgspec.field(name=f, default=_UNSET)))
    name = "".join(p.title() for p in t.split("_"))
    return msgspec.defstruct(
        name,
        fields,
        bases=(Event,),
        tag=t,
        module=__name__,
        namespace={
            "etype": t,
            "code": TYPE_CODES[t],
            "kind": kind,
            "extras": extras,
            "has_data": bool(extras),
        },
    )


EVENT_CLASSES: dict[str, type[Event]] = (
    {t: _event_class(t) for t in EXTRA_FIELDS if t in TYPE_CODES} if msgspec is not None else {}
)


class Loose:
    """An event read the lenient way, from plain JSON values: the same attributes as the
    typed classes, filled as ``run_events`` has always read a dict."""

    __slots__ = (
        "code",
        "etype",
        "exit_code",
        "has_data",
        "kind",
        "rest",
        "status",
        "step_id",
        "step_number",
        "text",
        "tool_call_id",
        "tool_name",
        "turn",
        "usage",
        "x_meta",
        "x_metadata",
        "x_verification_summary",
    )

    def __init__(self, e: dict):
        t = e.get("type")
        self.etype = t
        self.code = TYPE_CODES.get(t) if type(t) is str else None
        spec = EVENT_SPECS.get(t, OTHER_SPEC) if type(t) is str else OTHER_SPEC
        text_field, kind, pulled = spec
        self.kind = kind
        self.text = e.get(text_field) if text_field is not None else None
        self.turn = self.tool_call_id = self.tool_name = self.exit_code = self.usage = None
        self.step_id = self.step_number = self.status = None
        self.x_metadata = self.x_meta = self.x_verification_summary = _UNSET
        if kind:
            if kind in (K_TOOL_START, K_TOOL_DELTA, K_TOOL_END):
                self.tool_call_id = e.get("id")
                self.tool_name = e.get("name")
                if kind == K_TOOL_END:
                    self.exit_code = e.get("exit_code")
                    self.x_metadata = e.get("metadata", _UNSET)
            elif kind in (K_TURN_START, K_TURN_END):
                self.turn = e.get("turn")
                if kind == K_TURN_END:
                    self.usage = e.get("usage")
            elif kind == K_AGENT_END:
                self.usage = e.get("usage")
                self.x_meta = e.get("meta", _UNSET)
                self.x_verification_summary = e.get("verification_summary", _UNSET)
            elif kind in (K_STEP_START, K_STEP_END):
                self.step_id = e.get("step_id")
                self.step_number = e.get("step_number")
                if kind == K_STEP_END:
                    self.status = e.get("status")
        rest = None
        if any(k != "type" and k not in pulled for k in e):
            # the known fields in a3s-code's order (as the typed classes give them), then
            # the others in the file's order
            known = EXTRA_FIELDS.get(t, ()) if type(t) is str else ()
            rest = {k: e[k] for k in known if k in e and k not in pulled}
            for k, v in e.items():
                if k != "type" and k not in pulled and k not in rest:
                    rest[k] = v
        self.rest = rest or None
        self.has_data = self.rest is not None

    def data(self) -> dict | None:
        return self.rest


# ============================================================================ records


class Snapshot(_Struct, gc=False):
    """The snapshot fields the frames read (typed: a value of another type is read the
    lenient way, where it counts as absent)."""

    id: str | None = None
    status: str | None = None
    prompt: str | None = None
    result_text: str | None = None
    error: str | None = None
    created_at_ms: int | None = None
    updated_at_ms: int | None = None
    event_count: int | None = None


class Record(_Struct, gc=False):
    event: Union[tuple(EVENT_CLASSES.values()) or (Any,)]  # type: ignore[valid-type]  # noqa: UP007
    sequence: Any = None
    timestamp_ms: Any = None


class Run(_Struct, gc=False):
    snapshot: Snapshot = msgspec.field(default_factory=Snapshot) if msgspec is not None else None
    events: list[Record] = []


class Runs(list):
    """A run file's runs, and how to write their events' other fields as JSON text."""

    #: ``json.dumps(v, ensure_ascii=False, separators=(",", ":"))``, or as fast an equal
    encode: Callable[[Any], str] = staticmethod(_json)


def _exact_json(value: Any) -> str:
    """The text of ``_json(value)`` for JSON values without floats (msgspec writes some
    floats differently: ``1e16`` for ``1e+16``), in a third of the time."""
    try:
        return _msgspec_encode(value).decode()
    except (TypeError, ValueError, OverflowError, RecursionError):  # a lone surrogate, say
        return _json(value)


class _TypedDecoder(threading.local):
    """A decoder per thread, noting whether the file held a float anywhere."""

    def __init__(self) -> None:
        self.floats = False
        self.decode = msgspec.json.Decoder(list[Run], float_hook=self._float).decode

    def _float(self, text: str) -> float:
        self.floats = True
        return float(text)  # correctly rounded, as msgspec itself would


#: The typed decoder (None: every file is read the lenient way, as without msgspec).
_typed: _TypedDecoder | None = None
if msgspec is not None:
    _typed = _TypedDecoder()
    _msgspec_encode = msgspec.json.Encoder().encode


def decode(data: bytes) -> Runs:
    """A run file's runs; ValueError (or RecursionError) if it is not JSON."""
    if _typed is None:
        return runs_of(loads(data))
    try:
        _typed.floats = False
        runs = Runs(_typed.decode(data))
    except msgspec.ValidationError:  # valid JSON the classes do not describe
        return runs_of(loads(data))
    if not _typed.floats:
        runs.encode = _exact_json
    return runs


def runs_of(value: Any) -> Runs:
    """The runs of a run file's JSON value (anything: what is not a run counts as empty)."""
    if type(value) is Runs:
        return value
    return Runs(_loose_run(r) for r in (value if isinstance(value, list) else ()))


def _s(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _i(value: Any) -> int | None:
    return value if type(value) is int else None


def _loose_run(run: Any) -> Run:
    run = run if isinstance(run, dict) else {}
    snap = run.get("snapshot")
    snap = snap if isinstance(snap, dict) else {}
    events = run.get("events")
    return Run(
        snapshot=Snapshot(
            id=_s(snap.get("id")),
            status=_s(snap.get("status")),
            prompt=_s(snap.get("prompt")),
            result_text=_s(snap.get("result_text")),
            error=_s(snap.get("error")),
            created_at_ms=_i(snap.get("created_at_ms")),
            updated_at_ms=_i(snap.get("updated_at_ms")),
            event_count=_i(snap.get("event_count")),
        ),
        events=[_loose_record(rec) for rec in (events if isinstance(events, list) else ())],
    )


def _loose_record(rec: Any) -> Record:
    if type(rec) is not dict:
        rec = {}
    elif is_envelope(rec):  # as Session.run_events() gives it from a3s-code 5.0 on
        try:
            rec = record_of(rec)
        except EventProtocolError:  # another protocol: not read here (load() reports it)
            rec = {}
    e = rec.get("event")
    return Record(
        event=Loose(e if type(e) is dict else {}),
        sequence=rec.get("sequence"),
        timestamp_ms=rec.get("timestamp_ms"),
    )


def last_timestamp(records: Iterable[Record]) -> int | None:
    """The ``timestamp_ms`` of the last record that has one."""
    for rec in reversed(records):  # type: ignore[call-overload]
        ts = rec.timestamp_ms
        if type(ts) is int:
            return ts
    return None
