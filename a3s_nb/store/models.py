"""Pydantic v2 models of everything a3s-code 3.x persists.

Field names, field order and enum spellings are exactly those a3s-code writes (its serde
structs, in declaration order), so that a session loaded and saved unchanged is written back
byte for byte. Every model keeps fields it does not know (``extra="allow"``): a field written
by a newer a3s-code survives a load/save round trip.

Serialisation follows serde's rules for each field:

* ``Option<T>`` without ``skip_serializing_if`` is written as ``null``  -> ``_write_null``
* ``skip_serializing_if = "Option::is_none"``                          -> ``_omit_none``
* ``skip_serializing_if = "Vec::is_empty"``                             -> ``_omit_empty``

A field that was absent from the file it was read from and is ``None`` is not written back,
so lenient defaults never invent keys. Open enums (statuses, event types) are plain strings:
a3s-code marks them ``#[non_exhaustive]`` and newer releases add values.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    Tag,
    ValidatorFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from ._envelope import is_envelope, record_of

JSON = Any


class A3sModel(BaseModel):
    """Base of every persisted type: keeps unknown fields, writes like serde."""

    # defer_build: a model's validator is built on its first use, not at import: a cached
    # frame call in a new kernel validates nothing (tests/test_first_call.py)
    model_config = ConfigDict(
        extra="allow", populate_by_name=True, validate_assignment=False, defer_build=True
    )

    _write_null: ClassVar[frozenset[str]] = frozenset()
    _omit_none: ClassVar[frozenset[str]] = frozenset()
    _omit_empty: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _serde(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        cls = type(self)
        names = _MAY_DROP.get(cls)
        if names is None:
            names = _MAY_DROP[cls] = _may_drop(cls)
        if not names:  # most event types: nothing of theirs is ever left out
            return data
        fields_set = self.model_fields_set
        for name in names:
            if name not in data:
                continue
            value = data[name]
            if value is None:
                if name in self._omit_none or (
                    name not in fields_set and name not in self._write_null
                ):
                    del data[name]
            elif name in self._omit_empty and value in ([], {}):
                del data[name]
        return data


def _may_drop(cls: type[A3sModel]) -> tuple[str, ...]:
    """The fields ``_serde`` may leave out: those serde skips when none or empty, and
    those that default to None (written only when the file had them)."""
    none_default = {
        name
        for name, info in cls.model_fields.items()
        if info.default is None and info.default_factory is None
    }
    names = cls._omit_none | cls._omit_empty | (none_default - cls._write_null)
    return tuple(n for n in cls.model_fields if n in names)


_MAY_DROP: dict[type, tuple[str, ...]] = {}


# --------------------------------------------------------------------------- usage, config


class TokenUsage(A3sModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None

    _write_null = frozenset({"cache_read_tokens", "cache_write_tokens"})


class ContextUsage(A3sModel):
    used_tokens: int = 0
    max_tokens: int = 200_000
    percent: float = 0.0
    turns: int = 0


class LlmConfigData(A3sModel):
    """The session's provider/model. ``api_key`` is accepted on read and never written."""

    provider: str
    model: str
    api_key: str | None = Field(default=None, exclude=True, repr=False)
    base_url: str | None = None

    _write_null = frozenset({"base_url"})


class LlmCostRecord(A3sModel):
    model: str
    provider: str
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: float | None = None
    timestamp: str
    session_id: str | None = None

    _write_null = frozenset({"cost_usd", "session_id"})


class AutoDelegationConfig(A3sModel):
    """Sub-agent delegation settings. a3s-code writes these keys in camelCase."""

    enabled: bool = False
    autoParallel: bool = True
    minConfidence: float = 0.72
    maxTasks: int = 4


class SessionConfig(A3sModel):
    name: str = ""
    workspace: str
    system_prompt: str | None = None
    max_context_length: int = 200_000
    auto_compact: bool = False
    auto_compact_threshold: float = 0.8
    storage_type: str = "file"  # memory | file | custom
    queue_config: JSON | None = None
    confirmation_policy: JSON | None = None
    permission_policy: JSON | None = None
    max_parallel_tasks: int | None = None
    auto_delegation: AutoDelegationConfig | None = None
    parent_id: str | None = None
    security_config: JSON | None = None
    planning_mode: str = "Auto"  # Auto | Disabled | Enabled
    goal_tracking: bool = False

    _write_null = frozenset({"system_prompt"})
    _omit_none = frozenset(
        {
            "queue_config",
            "confirmation_policy",
            "permission_policy",
            "max_parallel_tasks",
            "auto_delegation",
            "parent_id",
            "security_config",
        }
    )


class Task(A3sModel):
    """A planning task (``SessionData.tasks``, ``planning_end.plan.steps``)."""

    id: str
    content: str = Field(validation_alias=AliasChoices("content", "description"))
    status: str  # pending | in_progress | completed | failed | skipped | cancelled
    priority: str = "medium"
    tool: str | None = None
    dependencies: list[str] = Field(default_factory=list)
    success_criteria: str | None = None

    _omit_none = frozenset({"tool", "success_criteria"})
    _omit_empty = frozenset({"dependencies"})


# --------------------------------------------------------------------------- messages


class TextBlock(A3sModel):
    type: Literal["text"] = "text"
    text: str


class ImageSource(A3sModel):
    type: str = "base64"
    media_type: str
    data: str


class ImageBlock(A3sModel):
    type: Literal["image"] = "image"
    source: ImageSource


def _block_tag(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if kind in _BLOCK_TAGS else "other"


ToolResultContent = str | list[dict[str, Any]]


class ToolUseBlock(A3sModel):
    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: JSON = Field(default_factory=dict)


class ToolResultBlock(A3sModel):
    """A tool's answer. ``content`` is a plain string, or a list of text/image parts."""

    type: Literal["tool_result"] = "tool_result"
    tool_use_id: str
    content: ToolResultContent = ""
    is_error: bool | None = None

    _write_null = frozenset({"is_error"})

    @property
    def text(self) -> str:
        """The result as text: the string, or the text parts joined (``[image]`` etc.)."""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(
            str(p.get("text", "")) if p.get("type") == "text" else f"[{p.get('type', 'part')}]"
            for p in self.content
        )


class OtherBlock(A3sModel):
    """A content block of a kind this version does not know; kept as written."""

    type: str


_BLOCK_TAGS = {"text", "image", "tool_use", "tool_result"}

ContentBlock = Annotated[
    Annotated[TextBlock, Tag("text")]
    | Annotated[ImageBlock, Tag("image")]
    | Annotated[ToolUseBlock, Tag("tool_use")]
    | Annotated[ToolResultBlock, Tag("tool_result")]
    | Annotated[OtherBlock, Tag("other")],
    Discriminator(_block_tag),
]


class Message(A3sModel):
    role: str  # "user" | "assistant"; tool results travel as "user"
    content: list[ContentBlock]
    reasoning_content: str | None = None

    _omit_none = frozenset({"reasoning_content"})

    @property
    def text(self) -> str:
        """The message's text blocks joined by newlines."""
        return "\n".join(b.text for b in self.content if isinstance(b, TextBlock))


# --------------------------------------------------------------------------- session


class SessionData(A3sModel):
    """The session document, ``<store>/<id>.json``."""

    id: str
    config: SessionConfig
    state: str = "Active"  # Unknown | Active | Paused | Completed | Error
    messages: list[Message] = Field(default_factory=list)
    context_usage: ContextUsage = Field(default_factory=ContextUsage)
    total_usage: TokenUsage = Field(default_factory=TokenUsage)
    total_cost: float = 0.0
    model_name: str | None = None
    cost_records: list[LlmCostRecord] = Field(default_factory=list)
    tool_names: list[str] = Field(default_factory=list)
    thinking_enabled: bool = False
    thinking_budget: int | None = None
    created_at: int = 0  # unix seconds
    updated_at: int = 0  # unix seconds
    llm_config: LlmConfigData | None = None
    tasks: list[Task] = Field(default_factory=list, validation_alias=AliasChoices("tasks", "todos"))
    parent_id: str | None = None
    # identity labels, a3s-code 3.3+
    tenant_id: str | None = None
    principal: str | None = None
    agent_template_id: str | None = None
    correlation_id: str | None = None

    _write_null = frozenset({"thinking_budget"})
    _omit_none = frozenset(
        {
            "model_name",
            "llm_config",
            "parent_id",
            "tenant_id",
            "principal",
            "agent_template_id",
            "correlation_id",
        }
    )


# --------------------------------------------------------------------------- traces


class TraceEvent(A3sModel):
    """One tool (or program) execution, ``traces/<id>.json``."""

    schema_: str = Field(default="a3s.trace_event.v1", alias="schema")
    kind: str  # tool_execution | program_execution
    name: str
    success: bool
    exit_code: int  # 0/1 only; the real exit code lives in tool metadata
    duration_ms: int
    output_bytes: int
    metadata_keys: list[str] = Field(default_factory=list)
    artifact_uris: list[str] = Field(default_factory=list)
    details: JSON | None = None

    _omit_empty = frozenset({"metadata_keys", "artifact_uris"})
    _omit_none = frozenset({"details"})

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:  # always the on-disk key
        kwargs.setdefault("by_alias", True)
        return super().model_dump(**kwargs)


# --------------------------------------------------------------------------- run events


class AgentEvent(A3sModel):
    """Base of the typed run events; ``type`` is the serde tag."""

    type: str


class UnknownEvent(AgentEvent):
    """An event type this version does not know; kept exactly as written."""


class AgentStart(AgentEvent):
    type: Literal["agent_start"] = "agent_start"
    prompt: str


class AgentModeChanged(AgentEvent):
    type: Literal["agent_mode_changed"] = "agent_mode_changed"
    mode: str
    agent: str
    description: str


class TurnStart(AgentEvent):
    type: Literal["turn_start"] = "turn_start"
    turn: int


class TextDelta(AgentEvent):
    type: Literal["text_delta"] = "text_delta"
    text: str


class ReasoningDelta(AgentEvent):
    type: Literal["reasoning_delta"] = "reasoning_delta"
    text: str


class ToolStart(AgentEvent):
    type: Literal["tool_start"] = "tool_start"
    id: str
    name: str


class ToolInputDelta(AgentEvent):
    type: Literal["tool_input_delta"] = "tool_input_delta"
    delta: str


class ToolOutputDelta(AgentEvent):
    type: Literal["tool_output_delta"] = "tool_output_delta"
    id: str
    name: str
    delta: str


class ToolEnd(AgentEvent):
    type: Literal["tool_end"] = "tool_end"
    id: str
    name: str
    output: str
    exit_code: int
    metadata: JSON | None = None
    error_kind: JSON | None = None

    _omit_none = frozenset({"metadata", "error_kind"})


class TurnEnd(AgentEvent):
    type: Literal["turn_end"] = "turn_end"
    turn: int
    usage: TokenUsage


class VerificationSummary(A3sModel):
    status: str
    report_count: int = 0
    required_check_count: int = 0
    pending_required_check_count: int = 0
    failed_check_count: int = 0
    residual_risk_count: int = 0
    pending_subjects: list[str] = Field(default_factory=list)
    failed_subjects: list[str] = Field(default_factory=list)

    _omit_empty = frozenset({"pending_subjects", "failed_subjects"})


class LlmResponseMeta(A3sModel):
    provider: str | None = None
    request_model: str | None = None
    request_url: str | None = None
    response_id: str | None = None
    response_model: str | None = None
    response_object: str | None = None
    first_token_ms: int | None = None
    duration_ms: int | None = None


class AgentEnd(AgentEvent):
    type: Literal["agent_end"] = "agent_end"
    text: str
    usage: TokenUsage
    verification_summary: VerificationSummary | None = None
    meta: LlmResponseMeta | None = None

    _omit_none = frozenset({"meta"})


class ErrorEvent(AgentEvent):
    type: Literal["error"] = "error"
    message: str


class ContextResolving(AgentEvent):
    type: Literal["context_resolving"] = "context_resolving"
    providers: list[str]


class ContextResolved(AgentEvent):
    type: Literal["context_resolved"] = "context_resolved"
    total_items: int
    total_tokens: int


class TaskUpdated(AgentEvent):
    type: Literal["task_updated"] = "task_updated"
    session_id: str
    tasks: list[Task]


class PlanningStart(AgentEvent):
    type: Literal["planning_start"] = "planning_start"
    prompt: str


class ExecutionPlan(A3sModel):
    goal: str
    steps: list[Task] = Field(default_factory=list)
    complexity: str = "Simple"  # Simple | Medium | Complex | VeryComplex
    required_tools: list[str] = Field(default_factory=list)
    estimated_steps: int = 0


class PlanningEnd(AgentEvent):
    type: Literal["planning_end"] = "planning_end"
    plan: ExecutionPlan
    estimated_steps: int


class StepStart(AgentEvent):
    type: Literal["step_start"] = "step_start"
    step_id: str
    description: str
    step_number: int
    total_steps: int


class StepEnd(AgentEvent):
    type: Literal["step_end"] = "step_end"
    step_id: str
    status: str
    step_number: int
    total_steps: int


class SubagentStart(AgentEvent):
    type: Literal["subagent_start"] = "subagent_start"
    task_id: str
    session_id: str
    parent_session_id: str
    agent: str
    description: str


class SubagentEnd(AgentEvent):
    type: Literal["subagent_end"] = "subagent_end"
    task_id: str
    session_id: str
    agent: str
    output: str
    success: bool


class ContextCompacted(AgentEvent):
    type: Literal["context_compacted"] = "context_compacted"
    session_id: str
    before_messages: int
    after_messages: int
    percent_before: float


class PersistenceFailed(AgentEvent):
    type: Literal["persistence_failed"] = "persistence_failed"
    session_id: str
    operation: str
    error: str


_EVENT_TYPES: dict[str, type[AgentEvent]] = {
    cls.model_fields["type"].default: cls
    for cls in (
        AgentStart,
        AgentModeChanged,
        TurnStart,
        TextDelta,
        ReasoningDelta,
        ToolStart,
        ToolInputDelta,
        ToolOutputDelta,
        ToolEnd,
        TurnEnd,
        AgentEnd,
        ErrorEvent,
        ContextResolving,
        ContextResolved,
        TaskUpdated,
        PlanningStart,
        PlanningEnd,
        StepStart,
        StepEnd,
        SubagentStart,
        SubagentEnd,
        ContextCompacted,
        PersistenceFailed,
    )
}


def _event_tag(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if kind in _EVENT_TYPES else "unknown"


Event = Annotated[
    Annotated[UnknownEvent, Tag("unknown")]
    | Annotated[AgentStart, Tag("agent_start")]
    | Annotated[AgentModeChanged, Tag("agent_mode_changed")]
    | Annotated[TurnStart, Tag("turn_start")]
    | Annotated[TextDelta, Tag("text_delta")]
    | Annotated[ReasoningDelta, Tag("reasoning_delta")]
    | Annotated[ToolStart, Tag("tool_start")]
    | Annotated[ToolInputDelta, Tag("tool_input_delta")]
    | Annotated[ToolOutputDelta, Tag("tool_output_delta")]
    | Annotated[ToolEnd, Tag("tool_end")]
    | Annotated[TurnEnd, Tag("turn_end")]
    | Annotated[AgentEnd, Tag("agent_end")]
    | Annotated[ErrorEvent, Tag("error")]
    | Annotated[ContextResolving, Tag("context_resolving")]
    | Annotated[ContextResolved, Tag("context_resolved")]
    | Annotated[TaskUpdated, Tag("task_updated")]
    | Annotated[PlanningStart, Tag("planning_start")]
    | Annotated[PlanningEnd, Tag("planning_end")]
    | Annotated[StepStart, Tag("step_start")]
    | Annotated[StepEnd, Tag("step_end")]
    | Annotated[SubagentStart, Tag("subagent_start")]
    | Annotated[SubagentEnd, Tag("subagent_end")]
    | Annotated[ContextCompacted, Tag("context_compacted")]
    | Annotated[PersistenceFailed, Tag("persistence_failed")],
    Discriminator(_event_tag),
]


class RunEventRecord(A3sModel):
    """One run event: the record every a3s-code release persists.

    The envelope ``Session.run_events()`` returns from a3s-code 5.0 on (``{version: 1,
    type, payload, metadata: {run_id, session_id, sequence, timestamp_ms}}``, see
    :mod:`a3s_nb._envelope`) is read too, into the same fields; an envelope of another
    protocol version is refused. A record read from an envelope is written back as one,
    with the keys it had in their order: a load and a save never turn one shape into the
    other (the SDK writes records only, so a file of envelopes was not written by it, and
    is not a3s_nb's to rewrite).
    """

    sequence: int
    timestamp_ms: int
    event: Event

    _envelope: dict[str, Any] | None = PrivateAttr(default=None)

    @model_validator(mode="wrap")
    @classmethod
    def _either_shape(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        if not is_envelope(data):
            return handler(data)
        record = handler(record_of(data))  # EventProtocolError: a ValueError, reported
        payload = data.get("payload")
        record._envelope = {
            "keys": list(data),
            "version": data.get("version"),
            "payload_keys": list(payload) if type(payload) is dict else None,
            "metadata": data.get("metadata"),
            "others": {
                k: v for k, v in data.items() if k not in ("version", "type", "payload", "metadata")
            },
        }
        return record

    @model_serializer(mode="wrap")
    def _serde(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        shape = self._envelope
        return data if shape is None else _as_envelope(data, shape)


def _as_envelope(record: dict[str, Any], shape: dict[str, Any]) -> dict[str, Any]:
    """A record (as dumped) in the envelope shape it was read from."""
    event = record["event"]
    out: dict[str, Any] = {}
    for key in shape["keys"]:
        if key == "version":
            out[key] = shape["version"]
        elif key == "type":
            out[key] = event.get("type")
        elif key == "payload":
            if shape["payload_keys"] is None:  # not an object: kept whole
                out[key] = event.get("payload")
                continue
            fields = {k: v for k, v in event.items() if k != "type"}
            payload = {k: fields.pop(k) for k in shape["payload_keys"] if k in fields}
            payload.update(fields)
            out[key] = payload
        elif key == "metadata":
            meta = shape["metadata"]
            if type(meta) is dict:
                meta = {
                    k: record.get(k, v) if k in ("sequence", "timestamp_ms") else v
                    for k, v in meta.items()
                }
            out[key] = meta
        else:
            out[key] = shape["others"][key]
    return out


class RunSnapshot(A3sModel):
    id: str  # "run-<uuid4>"
    session_id: str
    status: str  # created | planning | executing | verifying | completed | failed | cancelled
    prompt: str
    created_at_ms: int
    updated_at_ms: int
    result_text: str | None = None
    error: str | None = None
    event_count: int = 0

    _omit_none = frozenset({"result_text", "error"})


class RunRecord(A3sModel):
    """One agent run, ``runs/<id>.json`` holds a list of them."""

    snapshot: RunSnapshot
    events: list[RunEventRecord] = Field(default_factory=list)


# --------------------------------------------------------------------------- verification


class VerificationCheck(A3sModel):
    id: str
    kind: str
    description: str
    status: str  # passed | failed | needs_review | skipped
    required: bool = False
    suggested_tools: list[str] = Field(default_factory=list)
    evidence_uris: list[str] = Field(default_factory=list)
    residual_risk: str | None = None

    _omit_empty = frozenset({"suggested_tools", "evidence_uris"})
    _omit_none = frozenset({"residual_risk"})


class VerificationReport(A3sModel):
    schema_: str = Field(default="a3s.verification_report.v1", alias="schema")
    subject: str
    status: str
    checks: list[VerificationCheck] = Field(default_factory=list)
    residual_risks: list[str] = Field(default_factory=list)

    _omit_empty = frozenset({"residual_risks"})

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        kwargs.setdefault("by_alias", True)
        return super().model_dump(**kwargs)


# --------------------------------------------------------------------------- artifacts


class ToolArtifact(A3sModel):
    """Full output of a tool whose result was truncated in the transcript."""

    artifact_id: str
    artifact_uri: str
    tool_name: str
    content: str
    original_bytes: int
    shown_bytes: int


class ArtifactManifest(A3sModel):
    """``artifacts/<id>/artifacts.json``."""

    artifacts: list[ToolArtifact] = Field(default_factory=list)


# --------------------------------------------------------------------------- 3.3 / 3.4 additions


class SubagentProgress(A3sModel):
    timestamp_ms: int
    status: str
    metadata: JSON = None

    _write_null = frozenset({"metadata"})


class SubagentTaskSnapshot(A3sModel):
    """A delegated task, ``subagent_tasks/<id>.json`` (a3s-code 3.3+)."""

    task_id: str
    parent_session_id: str
    child_session_id: str
    agent: str
    description: str
    status: str  # running | completed | failed | cancelled
    started_ms: int
    updated_ms: int
    finished_ms: int | None = None
    output: str | None = None
    success: bool | None = None
    progress: list[SubagentProgress] = Field(default_factory=list)

    _omit_none = frozenset({"finished_ms", "output", "success"})


class LoopCheckpoint(A3sModel):
    """State at a tool-round boundary of an unfinished run, keyed by run id (3.3+)."""

    schema_version: int = 0
    run_id: str
    session_id: str
    turn: int
    messages: list[Message]
    total_usage: TokenUsage
    tool_calls_count: int
    verification_reports: list[VerificationReport] = Field(default_factory=list)
    checkpoint_ms: int


class StepOutcome(A3sModel):
    task_id: str
    session_id: str
    agent: str
    output: str
    success: bool
    structured: JSON | None = None

    _omit_none = frozenset({"structured"})


class WorkflowStep(A3sModel):
    task_id: str
    outcome: StepOutcome


class WorkflowCheckpoint(A3sModel):
    """Journal of finished steps of a workflow, keyed by workflow id (3.4+)."""

    schema_version: int = 0
    workflow_id: str
    steps: list[WorkflowStep]
    checkpoint_ms: int


# --------------------------------------------------------------------------- bundle


class SessionBundle(BaseModel):
    """A session and all its per-session fragments, as one value.

    ``subagent_tasks`` is ``None`` for stores written by a3s-code before 3.3, which have no
    such file; a3s_nb then does not create one either.
    """

    # built on its first validation, not at import (``import a3s_nb`` stays light)
    model_config = ConfigDict(defer_build=True)

    session: SessionData
    runs: list[RunRecord] = Field(default_factory=list)
    traces: list[TraceEvent] = Field(default_factory=list)
    verification: list[VerificationReport] = Field(default_factory=list)
    artifacts: ArtifactManifest = Field(default_factory=ArtifactManifest)
    subagent_tasks: list[SubagentTaskSnapshot] | None = None

    @property
    def id(self) -> str:
        return self.session.id

    def __repr__(self) -> str:
        s = self.session
        return (
            f"SessionBundle(id={s.id!r}, messages={len(s.messages)}, runs={len(self.runs)}, "
            f"traces={len(self.traces)}, verification={len(self.verification)}, "
            f"artifacts={len(self.artifacts.artifacts)})"
        )
