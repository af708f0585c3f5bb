"""A quick proof that ``Store.load()`` accepts a session, for the frames' load check.

The load check (``_loadcheck``) must reach exactly ``load()``'s verdict on every session,
and validating every file with the pydantic models costs about six times parsing it. Most
sessions are valid, so this module tries to *prove* validity with a stricter, typed msgspec
decode of the same texts ``load()`` reads, into classes that mirror ``models``:

* every field ``load()`` checks is checked with a narrower type (an ``int`` must be a JSON
  integer, where pydantic also takes ``1.0`` or ``"1"``; a ``bool`` must be ``true`` or
  ``false``; a float out of range, a NaN, an integer beyond 64 bits are refused);
* a key the models do not name is refused (pydantic keeps it, whatever it holds, but its
  parser refuses nesting deeper than about 200 levels, which msgspec would skip past);
* values the models take as any JSON (``JSON``) are decoded into a JSON type nested at
  most ``JSON_DEPTH`` levels, far below pydantic's limit (a deeper value: cannot tell);
* both spellings of an aliased field (``schema`` and ``schema_``, ``tasks`` and ``todos``,
  ``content`` and ``description``) are checked;
* an event or content block of a type the models do not know (pydantic keeps it as an
  unknown one) is refused, as is a duplicate key whose values do not all pass.

So whatever this decode accepts, the models accept: ``accepts`` answers True only then,
and False means "cannot tell", never "invalid": the caller then runs ``load()`` itself.
tests/test_fastcheck.py holds the two to the same verdict on every fixture file, every bad
file and fuzz case of the tests, and on randomly mutated fixture files.
"""

from typing import Any, Union

from ..store.store import _same_id

try:
    import msgspec
except ImportError:  # pragma: no cover - msgspec is in a3s-nb[all]; load() decides alone
    msgspec = None  # type: ignore[assignment]

#: Nesting allowed inside a ``JSON`` field (pydantic's parser allows about 200 levels for
#: the whole document, of which the classes below use at most 8). Each level doubles the
#: size of the decoder's type tree.
JSON_DEPTH = 6


def accepts(store: Any, session_id: str) -> bool:
    """True only if ``store.load(session_id)`` would succeed; False when it may not."""
    decoders = _built()[1]
    if decoders is None:
        return False
    try:
        key, texts = store._read_texts(session_id)
        if texts.get("session") is None:
            return False
        session = None
        for part, text in texts.items():
            if text is None:
                continue
            if not isinstance(text, str | bytes):  # a part of a v1 envelope, parsed already
                return False
            decode = decoders.get(part)
            if decode is None:  # a part this module does not describe
                return False
            value = decode(text)
            if part == "session":
                session = value
        if session is None:
            return False
        return _same_id(session.id, key)
    except Exception:  # anything unexpected: load() decides
        return False


# ============================================================================ the classes


def _json_type(depth: int) -> Any:
    """Any JSON value nested at most ``depth`` levels (integers within 64 bits)."""
    t: Any = Union[None, bool, int, float, str]  # noqa: UP007 (runtime type objects)
    for _ in range(depth):
        t = Union[None, bool, int, float, str, list[t], dict[str, t]]  # noqa: UP007
    return t


def _classes() -> tuple[dict[str, Any], dict[str, Any]] | None:
    if msgspec is None:
        return None
    J = _json_type(JSON_DEPTH)
    field = msgspec.field

    # gc=False: a decoded value is a tree, dropped as soon as it is checked; tracking
    # its millions of instances for the cycle collector only costs time
    class S(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, gc=False):
        pass

    class TokenUsage(S, kw_only=True):
        prompt_tokens: int = 0
        completion_tokens: int = 0
        total_tokens: int = 0
        cache_read_tokens: int | None = None
        cache_write_tokens: int | None = None

    class ContextUsage(S, kw_only=True):
        used_tokens: int = 0
        max_tokens: int = 0
        percent: float = 0.0
        turns: int = 0

    class LlmConfigData(S, kw_only=True):
        provider: str
        model: str
        api_key: str | None = None
        base_url: str | None = None

    class LlmCostRecord(S, kw_only=True):
        model: str
        provider: str
        prompt_tokens: int
        completion_tokens: int
        total_tokens: int
        cost_usd: float | None = None
        timestamp: str
        session_id: str | None = None

    class AutoDelegationConfig(S, kw_only=True):
        enabled: bool = False
        autoParallel: bool = True
        minConfidence: float = 0.0
        maxTasks: int = 0

    class SessionConfig(S, kw_only=True):
        name: str = ""
        workspace: str
        system_prompt: str | None = None
        max_context_length: int = 0
        auto_compact: bool = False
        auto_compact_threshold: float = 0.0
        storage_type: str = ""
        queue_config: J = None
        confirmation_policy: J = None
        permission_policy: J = None
        max_parallel_tasks: int | None = None
        auto_delegation: AutoDelegationConfig | None = None
        parent_id: str | None = None
        security_config: J = None
        planning_mode: str = ""
        goal_tracking: bool = False

    class Task(S, kw_only=True):
        id: str
        content: str
        description: str = ""  # the models' other name for ``content``
        status: str
        priority: str = ""
        tool: str | None = None
        dependencies: list[str] = field(default_factory=list)
        success_criteria: str | None = None

    class Block(S, tag_field="type", kw_only=True):
        pass

    class TextBlock(Block, tag="text", kw_only=True):
        text: str

    class ImageSource(S, kw_only=True):
        type: str = ""
        media_type: str
        data: str

    class ImageBlock(Block, tag="image", kw_only=True):
        source: ImageSource

    class ToolUseBlock(Block, tag="tool_use", kw_only=True):
        id: str
        name: str
        input: J = None

    class ToolResultBlock(Block, tag="tool_result", kw_only=True):
        tool_use_id: str
        content: Union[str, list[dict[str, J]]] = ""  # noqa: UP007
        is_error: bool | None = None

    class Message(S, kw_only=True):
        role: str
        content: list[Union[TextBlock, ImageBlock, ToolUseBlock, ToolResultBlock]]  # noqa: UP007
        reasoning_content: str | None = None

    class SessionData(S, kw_only=True):
        id: str
        config: SessionConfig
        state: str = ""
        messages: list[Message] = field(default_factory=list)
        context_usage: ContextUsage = field(default_factory=ContextUsage)
        total_usage: TokenUsage = field(default_factory=TokenUsage)
        total_cost: float = 0.0
        model_name: str | None = None
        cost_records: list[LlmCostRecord] = field(default_factory=list)
        tool_names: list[str] = field(default_factory=list)
        thinking_enabled: bool = False
        thinking_budget: int | None = None
        created_at: int = 0
        updated_at: int = 0
        llm_config: LlmConfigData | None = None
        tasks: list[Task] = field(default_factory=list)
        todos: list[Task] = field(default_factory=list)
        parent_id: str | None = None
        tenant_id: str | None = None
        principal: str | None = None
        agent_template_id: str | None = None
        correlation_id: str | None = None

    class TraceEvent(S, kw_only=True):
        schema: str = ""
        schema_: str = ""
        kind: str
        name: str
        success: bool
        exit_code: int
        duration_ms: int
        output_bytes: int
        metadata_keys: list[str] = field(default_factory=list)
        artifact_uris: list[str] = field(default_factory=list)
        details: J = None

    class Ev(S, tag_field="type", kw_only=True):
        pass

    class AgentStart(Ev, tag="agent_start", kw_only=True):
        prompt: str

    class AgentModeChanged(Ev, tag="agent_mode_changed", kw_only=True):
        mode: str
        agent: str
        description: str

    class TurnStart(Ev, tag="turn_start", kw_only=True):
        turn: int

    class TextDelta(Ev, tag="text_delta", kw_only=True):
        text: str

    class ReasoningDelta(Ev, tag="reasoning_delta", kw_only=True):
        text: str

    class ToolStart(Ev, tag="tool_start", kw_only=True):
        id: str
        name: str

    class ToolInputDelta(Ev, tag="tool_input_delta", kw_only=True):
        delta: str

    class ToolOutputDelta(Ev, tag="tool_output_delta", kw_only=True):
        id: str
        name: str
        delta: str

    class ToolEnd(Ev, tag="tool_end", kw_only=True):
        id: str
        name: str
        output: str
        exit_code: int
        metadata: J = None
        error_kind: J = None

    class TurnEnd(Ev, tag="turn_end", kw_only=True):
        turn: int
        usage: TokenUsage

    class VerificationSummary(S, kw_only=True):
        status: str
        report_count: int = 0
        required_check_count: int = 0
        pending_required_check_count: int = 0
        failed_check_count: int = 0
        residual_risk_count: int = 0
        pending_subjects: list[str] = field(default_factory=list)
        failed_subjects: list[str] = field(default_factory=list)

    class LlmResponseMeta(S, kw_only=True):
        provider: str | None = None
        request_model: str | None = None
        request_url: str | None = None
        response_id: str | None = None
        response_model: str | None = None
        response_object: str | None = None
        first_token_ms: int | None = None
        duration_ms: int | None = None

    class AgentEnd(Ev, tag="agent_end", kw_only=True):
        text: str
        usage: TokenUsage
        verification_summary: VerificationSummary | None = None
        meta: LlmResponseMeta | None = None

    class ErrorEvent(Ev, tag="error", kw_only=True):
        message: str

    class ContextResolving(Ev, tag="context_resolving", kw_only=True):
        providers: list[str]

    class ContextResolved(Ev, tag="context_resolved", kw_only=True):
        total_items: int
        total_tokens: int

    class TaskUpdated(Ev, tag="task_updated", kw_only=True):
        session_id: str
        tasks: list[Task]

    class PlanningStart(Ev, tag="planning_start", kw_only=True):
        prompt: str

    class ExecutionPlan(S, kw_only=True):
        goal: str
        steps: list[Task] = field(default_factory=list)
        complexity: str = ""
        required_tools: list[str] = field(default_factory=list)
        estimated_steps: int = 0

    class PlanningEnd(Ev, tag="planning_end", kw_only=True):
        plan: ExecutionPlan
        estimated_steps: int

    class StepStart(Ev, tag="step_start", kw_only=True):
        step_id: str
        description: str
        step_number: int
        total_steps: int

    class StepEnd(Ev, tag="step_end", kw_only=True):
        step_id: str
        status: str
        step_number: int
        total_steps: int

    class SubagentStart(Ev, tag="subagent_start", kw_only=True):
        task_id: str
        session_id: str
        parent_session_id: str
        agent: str
        description: str

    class SubagentEnd(Ev, tag="subagent_end", kw_only=True):
        task_id: str
        session_id: str
        agent: str
        output: str
        success: bool

    class ContextCompacted(Ev, tag="context_compacted", kw_only=True):
        session_id: str
        before_messages: int
        after_messages: int
        percent_before: float

    class PersistenceFailed(Ev, tag="persistence_failed", kw_only=True):
        session_id: str
        operation: str
        error: str

    events = (
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
    Event = Union[events]  # noqa: UP007

    class RunEventRecord(S, kw_only=True):
        sequence: int
        timestamp_ms: int
        event: Event  # type: ignore[valid-type]

    class RunSnapshot(S, kw_only=True):
        id: str
        session_id: str
        status: str
        prompt: str
        created_at_ms: int
        updated_at_ms: int
        result_text: str | None = None
        error: str | None = None
        event_count: int = 0

    class RunRecord(S, kw_only=True):
        snapshot: RunSnapshot
        events: list[RunEventRecord] = field(default_factory=list)

    class VerificationCheck(S, kw_only=True):
        id: str
        kind: str
        description: str
        status: str
        required: bool = False
        suggested_tools: list[str] = field(default_factory=list)
        evidence_uris: list[str] = field(default_factory=list)
        residual_risk: str | None = None

    class VerificationReport(S, kw_only=True):
        schema: str = ""
        schema_: str = ""
        subject: str
        status: str
        checks: list[VerificationCheck] = field(default_factory=list)
        residual_risks: list[str] = field(default_factory=list)

    class ToolArtifact(S, kw_only=True):
        artifact_id: str
        artifact_uri: str
        tool_name: str
        content: str
        original_bytes: int
        shown_bytes: int

    class ArtifactManifest(S, kw_only=True):
        artifacts: list[ToolArtifact] = field(default_factory=list)

    class SubagentProgress(S, kw_only=True):
        timestamp_ms: int
        status: str
        metadata: J = None

    class SubagentTaskSnapshot(S, kw_only=True):
        task_id: str
        parent_session_id: str
        child_session_id: str
        agent: str
        description: str
        status: str
        started_ms: int
        updated_ms: int
        finished_ms: int | None = None
        output: str | None = None
        success: bool | None = None
        progress: list[SubagentProgress] = field(default_factory=list)

    classes = {name: value for name, value in locals().items() if isinstance(value, type)}
    roots = {
        "session": SessionData,
        "runs": list[RunRecord],
        "traces": list[TraceEvent],
        "verification": list[VerificationReport],
        "artifacts": ArtifactManifest,
        "subagent_tasks": list[SubagentTaskSnapshot],
    }
    return classes, {part: msgspec.json.Decoder(t).decode for part, t in roots.items()}


_BUILT: tuple[Any, Any] | None = None


def _built() -> tuple[Any, Any]:
    """The mirror classes and the decoders, built on first use: a call that finds every
    verdict in the load check's cache (a cached frame call in a new kernel) never pays for
    them (about 40 ms)."""
    global _BUILT
    if _BUILT is None:
        _BUILT = _classes() or (None, None)
    return _BUILT


def __getattr__(name: str) -> Any:
    #: ``CLASSES``: the mirror classes by name; ``_DECODERS``: a decoder per session part
    #: (both None without msgspec).
    if name == "CLASSES":
        return _built()[0]
    if name == "_DECODERS":
        return _built()[1]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
