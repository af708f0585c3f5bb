"""The column contract of every a3s_nb DataFrame: names, dtypes and meanings.

Each column also says where its value comes from (``Column.source``: a path into the
stored JSON or ``computed: <how>``; the grammar is under "sources" below).

This module is the one source of truth. ``docs/frames.md`` is generated from it
(``python -m a3s_nb.frames.schema > docs/frames.md``) and a test checks that the document, this
module and the real frames agree, so a renamed or retyped column cannot slip through.

Bump ``SCHEMA_VERSION`` whenever a column is removed, renamed, retyped or changes meaning;
adding a column at the end of a frame is compatible and does not need a bump.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

SCHEMA_VERSION = 5

#: How each kind of column is stored, as ``str(series.dtype)`` shows it.
DTYPES: dict[str, str] = {
    "string": "string",
    "json": "string",
    "int": "Int64",
    "float": "Float64",
    "bool": "boolean",
    "timestamp": "datetime64[ms, UTC]",
    "category": "category",
}

#: Known values of each enum, in category order. Values a newer a3s-code writes are kept and
#: appended (sorted) after these, so a category column never loses data.
ENUMS: dict[str, tuple[str, ...]] = {
    "session_state": ("Unknown", "Active", "Paused", "Completed", "Error"),
    "role": ("user", "assistant", "system"),
    "block_type": ("text", "image", "tool_use", "tool_result", "reasoning"),
    "trace_kind": ("tool_execution", "program_execution"),
    "trace_origin": ("agent", "program", "verify", "direct"),
    "lineage_kind": ("fork", "replay"),
    "run_status": (
        "created",
        "planning",
        "executing",
        "verifying",
        "completed",
        "failed",
        "cancelled",
    ),
    "event_type": (
        "agent_mode_changed",
        "agent_start",
        "context_resolving",
        "context_resolved",
        "planning_start",
        "planning_end",
        "task_updated",
        "step_start",
        "step_end",
        "turn_start",
        "text_delta",
        "reasoning_delta",
        "tool_start",
        "tool_input_delta",
        "tool_output_delta",
        "tool_end",
        "turn_end",
        "agent_end",
        "error",
        "confirmation_required",
        "confirmation_received",
        "confirmation_timeout",
        "permission_denied",
        "external_task_pending",
        "external_task_completed",
        "command_dead_lettered",
        "command_retry",
        "queue_alert",
        "memory_stored",
        "memory_recalled",
        "memories_searched",
        "memory_cleared",
        "subagent_start",
        "subagent_progress",
        "subagent_end",
        "goal_extracted",
        "goal_progress",
        "goal_achieved",
        "context_compacted",
        "persistence_failed",
        "budget_threshold_hit",
        "passivation_requested",
        "peer_invocation",
    ),
    "task_status": ("pending", "in_progress", "completed", "failed", "skipped", "cancelled"),
    "verification_status": ("passed", "failed", "needs_review", "skipped"),
    "check_kind": ("test", "lint", "format", "type_check"),
    "span_kind": ("run", "planning", "step", "turn", "tool"),
    "span_status": ("ok", "error", "unset"),
}


# ---------------------------------------------------------------------------- sources
#
# Every column says where its value comes from (like inspect_ai's
# ``EvalColumn("run_id", path="eval.run_id")``): a path into the JSON the store holds, or
# ``computed: <how>`` for a value a3s_nb derives.
#
# A path is a session file, with ``<id>`` for the session id, then steps into its JSON:
# ``.key`` (a field), ``.{a,b}`` (whichever of these fields the object has), ``[]`` (every
# element of a list) and ``[key=value]`` (the elements whose field, dotted for a nested
# one, has that value). Several paths joined by `` or `` mean the value comes from one of
# them. ``count(path)``, ``min(path)`` and ``max(path)`` aggregate a path over the row: a
# ``sessions`` row is a whole session, a ``runs`` row its run (``runs/<id>.json[]`` is
# that run). Times convert to UTC timestamps: integers in milliseconds for a field named
# ``*_ms``, in seconds otherwise; strings as ISO 8601. A test resolves every path in the
# fixture store and checks it holds the column's values.

#: The files a source path starts with, and the store part each one is.
SOURCE_FILES: dict[str, str] = {
    "<id>.json": "session",
    "runs/<id>.json": "runs",
    "traces/<id>.json": "traces",
    "verification/<id>.json": "verification",
    ".a3s_nb/lineage/<id>.json": "lineage",
}
COMPUTED = "computed: "
AGGREGATES = ("count", "min", "max")

_FILE_RE = "|".join(re.escape(f) for f in sorted(SOURCE_FILES, key=len, reverse=True))
_STEP_RE = r"\.[a-z_]+|\.\{[a-z_]+(?:,[a-z_]+)+\}|\[\]|\[[a-z_.]+=[A-Za-z0-9_-]+\]"
_PATH_RE = re.compile(rf"(?P<file>{_FILE_RE})(?P<steps>(?:{_STEP_RE})*)")


@dataclass(frozen=True)
class SourcePath:
    """One parsed path of a column's source."""

    file: str  # a key of SOURCE_FILES
    steps: tuple[tuple[str, Any], ...]  # ("key", names) | ("each", None) | ("where", (k, v))
    aggregate: str | None = None  # one of AGGREGATES, or None

    @property
    def part(self) -> str:
        return SOURCE_FILES[self.file]

    @property
    def last_key(self) -> str | None:
        """The field the path ends in (for the unit of a time), if it ends in one."""
        kind, arg = self.steps[-1] if self.steps else ("each", None)
        return arg[0] if kind == "key" and len(arg) == 1 else None

    def resolve(self, doc: Any) -> list[Any]:
        """The values at this path in ``doc`` (the parsed file); absent fields give none."""
        nodes = [doc]
        for kind, arg in self.steps:
            out: list[Any] = []
            for node in nodes:
                if kind == "key":
                    if isinstance(node, dict):
                        out += [node[k] for k in arg if k in node]
                elif isinstance(node, list):
                    if kind == "each":
                        out += node
                    else:
                        out += [v for v in node if _field(v, arg[0]) == arg[1]]
            nodes = out
        return nodes


def _field(obj: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj


def parse_path(text: str) -> SourcePath:
    """A path of the source grammar above; ValueError when ``text`` is not one."""
    aggregate = None
    m = re.fullmatch(rf"({'|'.join(AGGREGATES)})\((.*)\)", text)
    if m:
        aggregate, text = m.group(1), m.group(2)
    m = _PATH_RE.fullmatch(text)
    if not m:
        raise ValueError(f"not a source path: {text!r}")
    steps: list[tuple[str, Any]] = []
    for step in re.findall(_STEP_RE, m.group("steps")):
        if step == "[]":
            steps.append(("each", None))
        elif step.startswith("["):
            key, value = step[1:-1].split("=")
            steps.append(("where", (key, value)))
        else:
            steps.append(("key", tuple(step[1:].strip("{}").split(","))))
    return SourcePath(m.group("file"), tuple(steps), aggregate)


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # a key of DTYPES
    doc: str
    enum: str | None = None  # a key of ENUMS, for category columns
    #: Where the value comes from: paths into the stored JSON, or ``computed: <how>``.
    source: str = ""

    @property
    def dtype(self) -> str:
        return DTYPES[self.kind]

    @property
    def label(self) -> str:
        """The dtype as the documentation shows it."""
        if self.kind == "json":
            return "string (JSON)"
        if self.kind == "category":
            return f"category ({self.enum})"
        return self.dtype

    @property
    def computed(self) -> bool:
        """Whether a3s_nb derives the value (rather than reading it at a path)."""
        return self.source.startswith(COMPUTED)

    @property
    def paths(self) -> tuple[SourcePath, ...]:
        """The parsed paths of the source; none for a computed column."""
        if self.computed:
            return ()
        return tuple(parse_path(p) for p in self.source.split(" or "))

    @property
    def source_label(self) -> str:
        """The source as the documentation shows it."""
        if self.computed:
            return self.source
        return " or ".join(f"`{p}`" for p in self.source.split(" or "))


def _c(name: str, kind: str, doc: str, enum: str | None = None, *, source: str) -> Column:
    if kind not in DTYPES:
        raise ValueError(f"unknown column kind {kind!r}")
    if (kind == "category") != (enum is not None):
        raise ValueError(f"{name}: category columns, and only they, name an enum")
    column = Column(name, kind, doc, enum, source)
    if not source or source == COMPUTED or "|" in source:
        raise ValueError(f"{name}: a source is a path or 'computed: <how>' (and no '|')")
    paths = column.paths  # a malformed path fails here, when the schema is defined
    if len(paths) > 1 and any(p.aggregate for p in paths):
        raise ValueError(f"{name}: an aggregate source has one path")
    return column


_S = "<id>.json"  # the session document
_R = "runs/<id>.json[]"  # each run record
_E = f"{_R}.events[]"  # each event of each run
_T = "traces/<id>.json[]"
_V = "verification/<id>.json[]"
_L = ".a3s_nb/lineage/<id>.json"
# Frames that do not read the session document take the id from its file name, which
# Store.load() requires to be this id.
_SID = f"{_S}.id"
_RUN_ID = f"{_R}.snapshot.id"


def _ev(event_type: str) -> str:
    """Each event of that type, of each run."""
    return f"{_R}.events[event.type={event_type}]"


_TOKENS = (
    ("prompt_tokens", "Prompt (input) tokens."),
    ("completion_tokens", "Completion (output) tokens."),
    ("total_tokens", "Total tokens."),
    (
        "cache_read_tokens",
        "Tokens read from the provider's prompt cache; <NA> when never reported.",
    ),
    ("cache_write_tokens", "Tokens written to the prompt cache; <NA> when never reported."),
)

_COST_DOC = (
    "Cost in US dollars from the `genai-prices` table at the run's time: each model call "
    "priced on its own, cached input at the provider's cache prices (see `a3s_nb.frames.cost`). "
    '<NA> when the model has no price (listed in `df.attrs["unpriced_models"]`), never 0.'
)

FRAMES: dict[str, tuple[str, tuple[Column, ...]]] = {
    "sessions": (
        "One row per saved session. Cheap: served from an index a3s_nb keeps in "
        "`<store>/.a3s_nb/index.json` and refreshes for files that changed.",
        (
            _c(
                "session_id",
                "string",
                "Session id (the `id` inside the session file).",
                source=_SID,
            ),
            _c(
                "parent_id",
                "string",
                "Parent session id, when the SDK recorded one.",
                source=f"{_S}.parent_id",
            ),
            _c(
                "model",
                "string",
                "`provider/model`: the session's `model_name`, else its `llm_config`, "
                "else the model that answered its latest run.",
                source=f"computed: `{_S}.model_name`, else `{_S}.llm_config.provider`/`model`, "
                "else the latest run's `runs.model`",
            ),
            _c(
                "workspace",
                "string",
                "`config.workspace`, the directory the agent worked in.",
                source=f"{_S}.config.workspace",
            ),
            _c(
                "state",
                "category",
                "`state` as written (3.x always writes `Active`).",
                "session_state",
                source=f"{_S}.state",
            ),
            _c(
                "created_at",
                "timestamp",
                "`created_at` of the session file. a3s-code 3.x resets it on every save; "
                "`first_run_at` is the better start time.",
                source=f"{_S}.created_at",
            ),
            _c(
                "updated_at",
                "timestamp",
                "`updated_at` of the session file: its last save.",
                source=f"{_S}.updated_at",
            ),
            _c(
                "first_run_at",
                "timestamp",
                "Creation time of the session's earliest run.",
                source=f"min({_R}.snapshot.created_at_ms)",
            ),
            _c(
                "last_run_at",
                "timestamp",
                "Last update time of the session's latest run.",
                source=f"computed: the latest `{_R}.snapshot.updated_at_ms` (a run without it: its `created_at_ms`)",
            ),
            _c(
                "n_messages", "int", "Messages in the transcript.", source=f"count({_S}.messages[])"
            ),
            _c(
                "n_user_messages",
                "int",
                "User messages that carry text, not tool results: one per prompt, but a "
                "planning run stores its goal and each step as separate user messages (the "
                "prompts themselves are counted by `a3s_nb.lab.prompts`).",
                source=f"computed: count of `{_S}.messages[role=user]` with a `content[type=text]` block",
            ),
            _c("n_runs", "int", "Run records.", source=f"count({_R})"),
            _c(
                "n_runs_completed",
                "int",
                "Runs with status `completed`.",
                source="count(runs/<id>.json[snapshot.status=completed])",
            ),
            _c(
                "n_runs_failed",
                "int",
                "Runs with status `failed` (they leave nothing in the transcript).",
                source="count(runs/<id>.json[snapshot.status=failed])",
            ),
            _c(
                "n_runs_cancelled",
                "int",
                "Runs with status `cancelled`.",
                source="count(runs/<id>.json[snapshot.status=cancelled])",
            ),
            _c(
                "n_runs_unfinished",
                "int",
                "Runs left in a non-terminal status (`created`, `planning`, `executing`, "
                "`verifying`), e.g. by an auto-save racing the next run.",
                source="computed: `n_runs` minus the completed, failed and cancelled ones",
            ),
            _c(
                "n_tool_calls",
                "int",
                "Tool executions in runs (`tool_end` events), failed runs included.",
                source=f"count({_ev('tool_end')})",
            ),
            _c(
                "n_tool_errors",
                "int",
                "Of those, the ones that failed (`tool_end.exit_code` != 0).",
                source=f"computed: count of `{_ev('tool_end')}.event.exit_code` not 0 or null",
            ),
            _c(
                "n_trace_events",
                "int",
                "Trace events: every tool execution, including direct `session.tool()` calls "
                "and `verify_commands` runs that belong to no run.",
                source=f"count({_T})",
            ),
            *(
                _c(
                    n,
                    "int",
                    d
                    + " Sum over runs (see `runs`); the session file's `total_usage` is always zero in 3.x.",
                    source=f"computed: sum of the runs' `{n}`",
                )
                for n, d in _TOKENS
            ),
            _c("n_verification_reports", "int", "Verification reports.", source=f"count({_V})"),
            _c(
                "verification_status",
                "category",
                "Worst report status: `failed` > `needs_review` > `passed` > `skipped`; "
                "<NA> without reports.",
                "verification_status",
                source=f"computed: the worst `{_V}.status`",
            ),
            _c(
                "tenant_id",
                "string",
                "Identity label (a3s-code 3.3+), when present.",
                source=f"{_S}.tenant_id",
            ),
            _c(
                "principal",
                "string",
                "Identity label (a3s-code 3.3+), when present.",
                source=f"{_S}.principal",
            ),
            _c(
                "agent_template_id",
                "string",
                "Identity label (a3s-code 3.3+), when present.",
                source=f"{_S}.agent_template_id",
            ),
            _c(
                "correlation_id",
                "string",
                "Identity label (a3s-code 3.3+), when present.",
                source=f"{_S}.correlation_id",
            ),
            _c(
                "cost_usd",
                "float",
                "Sum of the runs' `cost_usd`; <NA> when any run's model has no price.",
                source="computed: sum of the runs' `cost_usd`",
            ),
            # lineage (a3s_nb.fork / a3s_nb.replay), from <store>/.a3s_nb/lineage/<id>.json
            _c(
                "lineage_kind",
                "string",  # not a category: mostly missing, shown <NA> as a string is
                "`fork` or `replay` when a3s_nb made this session from another; <NA> otherwise.",
                source=f"{_L}.kind",
            ),
            _c(
                "lineage_parent_id",
                "string",
                "The session it was forked or replayed from.",
                source=f"{_L}.parent_id",
            ),
            _c(
                "lineage_at_prompt",
                "int",
                "The parent's prompt it was cut after (a prompt: one user prompt and its run); "
                "a replay's is the parent's last.",
                source=f"{_L}.at_prompt",
            ),
            _c(
                "lineage_created_at",
                "timestamp",
                "When the fork or replay was made.",
                source=f"{_L}.created_at",
            ),
            _c(
                "lineage_model",
                "string",
                "`provider/model` it was made on (replays).",
                source=f"{_L}.model",
            ),
            _c(
                "lineage_edits",
                "int",
                "How many tool results a what-if fork edited (`fork(..., edits=)`); 0 for "
                "other forks and replays.",
                source="computed: the number of `edits` in the lineage record",
            ),
        ),
    ),
    "messages": (
        "One row per content block of the saved transcript, in conversation order. A failed "
        "run leaves nothing here (see `runs`). Messages carry no run id or time in 3.x.",
        (
            _c("session_id", "string", "Session id.", source=_SID),
            _c(
                "message_index",
                "int",
                "Position of the message in the transcript, from 0.",
                source=f"computed: position in `{_S}.messages[]`",
            ),
            _c(
                "block_index",
                "int",
                "Position of the block in its message, from 0; <NA> for a `reasoning` row and "
                "for the single row of a message without blocks.",
                source=f"computed: position in `{_S}.messages[].content[]`",
            ),
            _c(
                "user_message",
                "int",
                "Index (from 0) of the user text message this block answers or is (one per "
                "prompt; planning steps count too); <NA> before the first one.",
                source=f"computed: count of `{_S}.messages[role=user]` with a `content[type=text]` block so far, minus 1",
            ),
            _c(
                "role",
                "category",
                "`user` or `assistant`; tool results travel as `user`.",
                "role",
                source=f"{_S}.messages[].role",
            ),
            _c(
                "block_type",
                "category",
                "`text`, `tool_use`, `tool_result`, `image`; `reasoning` for the message's "
                "`reasoning_content`; <NA> for a message without blocks.",
                "block_type",
                source=f"computed: `{_S}.messages[].content[].type`; `reasoning` for `{_S}.messages[].reasoning_content`",
            ),
            _c(
                "text",
                "string",
                "Text of a `text` or `reasoning` block; the content of a `tool_result` (its "
                "text parts joined by newlines when it is a list).",
                source=f"computed: `{_S}.messages[].content[].text`, `{_S}.messages[].reasoning_content`, or `{_S}.messages[].content[type=tool_result].content` (list parts joined)",
            ),
            _c(
                "tool_use_id",
                "string",
                "`tool_use.id`, or `tool_result.tool_use_id`.",
                source=f"{_S}.messages[].content[].{{id,tool_use_id}}",
            ),
            _c(
                "tool_name",
                "string",
                "Tool called (`tool_use.name`; for a result, the name of its call).",
                source=f"{_S}.messages[].content[type=tool_use].name",
            ),
            _c(
                "tool_input",
                "json",
                "`tool_use.input` as JSON text.",
                source=f"{_S}.messages[].content[type=tool_use].input",
            ),
            _c(
                "is_error",
                "bool",
                "`tool_result.is_error`.",
                source=f"{_S}.messages[].content[type=tool_result].is_error",
            ),
        ),
    ),
    "traces": (
        "One row per trace event (tool or program execution), in recorded order: every "
        "tool execution, including verification commands and direct `session.tool()` calls "
        "(`origin`). Trace events carry no run id or time in 3.x; a3s_nb gives each one to "
        "the run whose tool call it matches (see `origin`), so `origin == 'agent'` rows are "
        "exactly the `tool` spans of the runs.",
        (
            _c("session_id", "string", "Session id.", source=_SID),
            _c(
                "run_id",
                "string",
                "The run the execution belongs to (origin `agent` or `program`); <NA> for "
                "verification commands and direct calls.",
                source=f"computed: `{_RUN_ID}` of the run whose tool call the trace is "
                "matched to (see `origin`)",
            ),
            _c(
                "trace_index",
                "int",
                "Position in the session's trace file, from 0.",
                source=f"computed: position in `{_T}`",
            ),
            _c(
                "origin",
                "category",
                "Where the call came from: `agent` (a tool call the model made in a run: one "
                "per `tool` span), `program` (a tool a `program` script of the agent called, "
                "and the script's `program_execution` record), `verify` (a command of "
                "`verify_commands`) or `direct` (a `session.tool()` call outside any run).",
                "trace_origin",
                source="computed: traces are written in execution order and each run's "
                f"`{_R}.events[event.type=tool_end]` name its calls in order. With the runs in "
                "creation order, each `tool_end` claims the first unclaimed `tool_execution` "
                "trace after the previous claim with its `name` and `exit_code` and an "
                "`output_bytes` equal to the byte length of its `output` (else the first with "
                "that name and exit code): `agent`. A `program` call also claims the traces "
                "just before it of the tools its script called "
                "(`tool_end.metadata.program.tool_calls`) and the `program_execution` trace "
                f"just after it: `program`. A report of `{_V}` whose every check suggests "
                "`bash` (made by `verify_commands`) claims the first stretch of as many "
                "unclaimed consecutive `bash` traces as it has checks, succeeding where its "
                "checks passed (else the first such stretch), after the previous report's: "
                "`verify`. Every other trace: `direct`",
            ),
            _c(
                "kind",
                "category",
                "`tool_execution` or `program_execution`.",
                "trace_kind",
                source=f"{_T}.kind",
            ),
            _c("tool_name", "string", "Tool (or program) name.", source=f"{_T}.name"),
            _c(
                "tool_call_id",
                "string",
                "The id of the run's tool call it matched (for `program` rows, the program "
                "call's): joins `spans.tool_call_id` and `messages.tool_use_id`.",
                source=f"computed: `id` of the `{_R}.events[event.type=tool_end]` the trace "
                "is matched to (see `origin`)",
            ),
            _c(
                "model",
                "string",
                "`provider/model` of the run it belongs to (`runs.model`); <NA> outside runs.",
                source="computed: `runs.model` of the row's `run_id`",
            ),
            _c(
                "started_at",
                "timestamp",
                "When the agent's tool call started (origin `agent`); <NA> for the others, "
                "whose start a3s-code does not record.",
                source=f"computed: `timestamp_ms` of the `{_R}.events[event.type=tool_start]` "
                "with the matched tool call's `id`",
            ),
            _c("success", "bool", "Whether the execution succeeded.", source=f"{_T}.success"),
            _c(
                "exit_code",
                "int",
                "0 or 1 only; a shell's real code is in `run_events.process_exit_code`.",
                source=f"{_T}.exit_code",
            ),
            _c("duration_ms", "int", "Execution time in milliseconds.", source=f"{_T}.duration_ms"),
            _c("output_bytes", "int", "Size of the tool output.", source=f"{_T}.output_bytes"),
            _c(
                "metadata_keys",
                "json",
                "Keys of the tool metadata (JSON list; values are not stored).",
                source=f"{_T}.metadata_keys",
            ),
            _c(
                "artifact_uris",
                "json",
                "Artifact URIs referenced by the metadata (JSON list).",
                source=f"{_T}.artifact_uris",
            ),
            _c(
                "details",
                "json",
                "`details` (program executions), as JSON.",
                source=f"{_T}.details",
            ),
        ),
    ),
    "runs": (
        "One row per run record (one `send`/`stream`), with its outcome and totals.",
        (
            _c("session_id", "string", "Session id.", source=_SID),
            _c("run_id", "string", "Run id (`run-<uuid>`).", source=_RUN_ID),
            _c(
                "run_index",
                "int",
                "Position in the session's run file, from 0.",
                source=f"computed: position in `{_R}`",
            ),
            _c(
                "status",
                "category",
                "Run status as written.",
                "run_status",
                source=f"{_R}.snapshot.status",
            ),
            _c(
                "prompt",
                "string",
                "The user's prompt, as given (planning rewrites the transcript, not this).",
                source=f"{_R}.snapshot.prompt",
            ),
            _c(
                "result_text",
                "string",
                "Final answer of a completed run.",
                source=f"{_R}.snapshot.result_text",
            ),
            _c("error", "string", "Error of a failed run.", source=f"{_R}.snapshot.error"),
            _c(
                "created_at",
                "timestamp",
                "Run creation time.",
                source=f"{_R}.snapshot.created_at_ms",
            ),
            _c(
                "updated_at",
                "timestamp",
                "Last update of the run record.",
                source=f"{_R}.snapshot.updated_at_ms",
            ),
            _c(
                "duration_ms",
                "int",
                "`updated_at - created_at` in milliseconds.",
                source=f"computed: `{_R}.snapshot.updated_at_ms` - `created_at_ms`",
            ),
            _c(
                "event_count",
                "int",
                "`event_count` of the snapshot: events ever recorded (can exceed `n_events` "
                "after trimming).",
                source=f"{_R}.snapshot.event_count",
            ),
            _c("n_events", "int", "Events stored in the record.", source=f"count({_E})"),
            _c(
                "n_turns",
                "int",
                "LLM turns (`turn_start` events; planning steps restart at turn 1).",
                source=f"count({_ev('turn_start')})",
            ),
            _c(
                "n_steps",
                "int",
                "Plan steps started (`step_start`), 0 for unplanned runs.",
                source=f"count({_ev('step_start')})",
            ),
            _c(
                "n_tool_calls",
                "int",
                "Tool executions (`tool_end` events).",
                source=f"count({_ev('tool_end')})",
            ),
            _c(
                "n_tool_errors",
                "int",
                "Failed tool executions (`tool_end.exit_code` != 0).",
                source=f"computed: count of `{_ev('tool_end')}.event.exit_code` not 0 or null",
            ),
            *(
                _c(
                    n,
                    "int",
                    d + " From `agent_end.usage`, else the sum of `turn_end.usage`.",
                    source=f"computed: `{_ev('agent_end')}.event.usage.{n}`, else its sum over the `turn_end` events",
                )
                for n, d in _TOKENS
            ),
            _c(
                "model",
                "string",
                "`provider/model` that answered (`agent_end.meta`), else the session's model.",
                source=f"computed: `{_ev('agent_end')}.event.meta.provider`/`response_model` (else "
                "`request_model`), else the session's `model`",
            ),
            _c(
                "provider",
                "string",
                "Provider that answered, when known.",
                source=f"computed: `{_ev('agent_end')}.event.meta.provider`, else `model` up to its `/`",
            ),
            _c(
                "first_token_ms",
                "int",
                "`agent_end.meta.first_token_ms`: time to first token.",
                source=f"{_ev('agent_end')}.event.meta.first_token_ms",
            ),
            _c(
                "llm_duration_ms",
                "int",
                "`agent_end.meta.duration_ms`: duration of the last LLM call.",
                source=f"{_ev('agent_end')}.event.meta.duration_ms",
            ),
            _c(
                "verification_status",
                "category",
                "`agent_end.verification_summary.status`.",
                "verification_status",
                source=f"{_ev('agent_end')}.event.verification_summary.status",
            ),
            _c(
                "cost_usd",
                "float",
                _COST_DOC,
                source="computed: the run's usage and `model` priced by `a3s_nb.frames.cost`",
            ),
        ),
    ),
    "run_events": (
        "One row per run event, in sequence order, with the common fields pulled out; the "
        "rest of the event is in `data`.",
        (
            _c("session_id", "string", "Session id.", source=_SID),
            _c("run_id", "string", "Run id.", source=_RUN_ID),
            _c("sequence", "int", "Event sequence number within the run.", source=f"{_E}.sequence"),
            _c(
                "timestamp",
                "timestamp",
                "When the event was recorded.",
                source=f"{_E}.timestamp_ms",
            ),
            _c(
                "event_type",
                "category",
                "The event's `type`.",
                "event_type",
                source=f"{_E}.event.type",
            ),
            _c("turn", "int", "`turn` of `turn_start` / `turn_end`.", source=f"{_E}.event.turn"),
            _c(
                "tool_call_id",
                "string",
                "`id` of `tool_start` / `tool_output_delta` / `tool_end`.",
                source=f"{_E}.event.id",
            ),
            _c("tool_name", "string", "`name` of those events.", source=f"{_E}.event.name"),
            _c(
                "text",
                "string",
                "The event's text: `text_delta`/`reasoning_delta` text, `tool_input_delta` and "
                "`tool_output_delta` delta, `tool_end` output, `agent_end` text, `error` "
                "message, `agent_start`/`planning_start` prompt, `step_start` description.",
                source=f"{_E}.event.{{text,delta,output,message,prompt,description}}",
            ),
            _c(
                "exit_code",
                "int",
                "`tool_end.exit_code`: 0 success, 1 failure.",
                source=f"{_ev('tool_end')}.event.exit_code",
            ),
            _c(
                "process_exit_code",
                "int",
                "`tool_end.metadata.exit_code`: the real exit code of a shell command.",
                source=f"{_ev('tool_end')}.event.metadata.exit_code",
            ),
            *(
                _c(
                    n,
                    "int",
                    d + " `usage` of `turn_end` / `agent_end`.",
                    source=f"{_E}.event.usage.{n}",
                )
                for n, d in _TOKENS
            ),
            _c(
                "step_id",
                "string",
                "`step_id` of `step_start` / `step_end`.",
                source=f"{_E}.event.step_id",
            ),
            _c(
                "step_number",
                "int",
                "`step_number` of `step_start` / `step_end`.",
                source=f"{_E}.event.step_number",
            ),
            _c(
                "status",
                "category",
                "`step_end.status`.",
                "task_status",
                source=f"{_ev('step_end')}.event.status",
            ),
            _c(
                "data",
                "json",
                "The event's other fields as a JSON object (e.g. `tool_end.metadata`, "
                "`agent_end.meta`, `planning_end.plan`); <NA> when nothing is left.",
                source=f"computed: the fields of `{_E}.event` not pulled out into columns",
            ),
        ),
    ),
    "spans": (
        "Timed spans derived from run events, ready for a timeline or an OpenTelemetry "
        "export (trace = run, span = `span_id`). A tool span starts when the model began "
        "the call (`tool_start`) and ends at `tool_end`, which comes after the model's "
        "`turn_end`, so tool spans can outlast their turn. Spans still open when a run's "
        "events stop end at its last event.",
        (
            _c("session_id", "string", "Session id.", source=_SID),
            _c("run_id", "string", "Run id (the trace).", source=_RUN_ID),
            _c(
                "span_id",
                "string",
                "Unique id: the run id for a run span, else `<run_id>:<sequence of the opening event>`.",
                source=f"computed: `{_R}.snapshot.id`, `:` and the opening event's `sequence`",
            ),
            _c(
                "parent_span_id",
                "string",
                "Enclosing span (tool -> turn -> step -> run); <NA> for runs.",
                source="computed: the enclosing span's `span_id`",
            ),
            _c(
                "kind",
                "category",
                "`run`, `planning`, `step`, `turn` or `tool`.",
                "span_kind",
                source="computed: from the opening event's `type`",
            ),
            _c(
                "name",
                "string",
                "`run`, `planning`, the step description, `turn <n>`, or the tool name.",
                source="computed: `run`, `planning`, the `step_start` event's `description`, `turn <turn>`, "
                "or the `tool_start` event's `name`",
            ),
            _c(
                "start",
                "timestamp",
                "Start (a run starts at its creation time).",
                source=f"{_E}.timestamp_ms or {_R}.snapshot.created_at_ms",
            ),
            _c(
                "end",
                "timestamp",
                "End (a run ends at its last update or event).",
                source=f"{_E}.timestamp_ms or {_R}.snapshot.updated_at_ms",
            ),
            _c(
                "duration_ms",
                "int",
                "`end - start` in milliseconds.",
                source="computed: `end` - `start`",
            ),
            _c(
                "status",
                "category",
                "`ok`; `error` for a failed tool, step or run and for spans a failed run left "
                "open; `unset` when the outcome is unknown.",
                "span_status",
                source="computed: from the closing event (`exit_code`, `status`) or the run's `status`",
            ),
            _c(
                "turn",
                "int",
                "Turn number (turn spans, and tool spans within a turn).",
                source=f"{_ev('turn_start')}.event.turn",
            ),
            _c(
                "step_number",
                "int",
                "Plan step number (step spans and spans inside a step).",
                source=f"{_ev('step_start')}.event.step_number",
            ),
            _c("tool_call_id", "string", "Tool call id (tool spans).", source=f"{_E}.event.id"),
            _c("tool_name", "string", "Tool name (tool spans).", source=f"{_E}.event.name"),
            _c(
                "exit_code",
                "int",
                "`tool_end.exit_code` (tool spans).",
                source=f"{_ev('tool_end')}.event.exit_code",
            ),
            *(
                _c(
                    n,
                    "int",
                    d + " Turn spans: that turn; run spans: the run.",
                    source=f"computed: turn spans: `{_ev('turn_end')}.event.usage.{n}`; run spans: the run's (see `runs`)",
                )
                for n, d in _TOKENS
            ),
            _c("sequence_start", "int", "Sequence of the opening event.", source=f"{_E}.sequence"),
            _c("sequence_end", "int", "Sequence of the closing event.", source=f"{_E}.sequence"),
        ),
    ),
    "verification": (
        "One row per verification check, with its report's subject and status. A report "
        "without checks still has one row (check columns <NA>).",
        (
            _c("session_id", "string", "Session id.", source=_SID),
            _c(
                "report_index",
                "int",
                "Position of the report in the session's file, from 0.",
                source=f"computed: position in `{_V}`",
            ),
            _c(
                "subject",
                "string",
                "What the report verifies (e.g. `build`).",
                source=f"{_V}.subject",
            ),
            _c(
                "report_status",
                "category",
                "The report's status.",
                "verification_status",
                source=f"{_V}.status",
            ),
            _c(
                "check_index",
                "int",
                "Position of the check in its report, from 0.",
                source=f"computed: position in `{_V}.checks[]`",
            ),
            _c("check_id", "string", "Check id.", source=f"{_V}.checks[].id"),
            _c(
                "kind",
                "category",
                "Check kind (`test`, `lint`, ...).",
                "check_kind",
                source=f"{_V}.checks[].kind",
            ),
            _c("description", "string", "Check description.", source=f"{_V}.checks[].description"),
            _c(
                "status",
                "category",
                "The check's status.",
                "verification_status",
                source=f"{_V}.checks[].status",
            ),
            _c(
                "required",
                "bool",
                "Whether the check is required.",
                source=f"{_V}.checks[].required",
            ),
            _c(
                "suggested_tools",
                "json",
                "Suggested tools (JSON list).",
                source=f"{_V}.checks[].suggested_tools",
            ),
            _c(
                "evidence_uris",
                "json",
                "Evidence URIs (JSON list).",
                source=f"{_V}.checks[].evidence_uris",
            ),
            _c(
                "residual_risk",
                "string",
                "The check's residual risk.",
                source=f"{_V}.checks[].residual_risk",
            ),
            _c(
                "report_residual_risks",
                "json",
                "The report's residual risks (JSON list).",
                source=f"{_V}.residual_risks",
            ),
        ),
    ),
}

FRAME_NAMES: tuple[str, ...] = tuple(FRAMES)

#: The enum each frame's ``status`` filter takes its values from: the frame's own statuses.
#: Run statuses for the frames of runs (the run's) and of sessions (a run of the session's),
#: check statuses for ``verification`` (the check's).
STATUS_FILTERS: dict[str, str] = {
    "sessions": "run_status",
    "messages": "run_status",
    "traces": "run_status",
    "runs": "run_status",
    "run_events": "run_status",
    "spans": "run_status",
    "verification": "verification_status",
}
assert set(STATUS_FILTERS) == set(FRAMES)


def columns(frame: str) -> tuple[Column, ...]:
    """The columns of ``frame``, in order."""
    return FRAMES[frame][1]


_FILTERS = """\
## Common arguments

Every frame function has the signature
`frame(source=None, *, ids=None, since=None, until=None, status=None, progress=None,
workers=None)`.

- `source`: a store path, a `Store`, a `SessionBundle`, a live session (an object with
  `history()`, `runs()`, `run_events(id)`, `trace_events()`, `verification_reports()` and
  `session_id`, such as `a3s_code.Session`), a list of bundles or live sessions, or `None`
  for the default store (`$A3S_NB_STORE`, else `./a3s_sessions`).
- `ids`: a session id or a list of them; unique prefixes are accepted.
- `since` / `until`: anything `pandas.Timestamp` accepts (naive means UTC); `since` is
  inclusive, `until` exclusive. `runs`, `run_events` and `spans` keep whole runs created in
  the window; the other frames keep sessions whose activity (from `min(created_at,
  first_run_at)` to `max(updated_at, last_run_at)`) overlaps it. Anything else (such as
  `"yesterday"`) raises `FilterError`.
- `status`: a status or a list of them, from the frame's own statuses. `runs`, `run_events`
  and `spans` keep runs with that run status, and `sessions`, `messages` and `traces` keep
  sessions that have at least one run with that status; the run statuses are
  {run_status}. `verification` keeps checks with that check status,
  whatever the runs did; the check statuses are {verification_status}.
  A value the frame does not take (`"complete"`, or `"passed"` for `runs`) raises
  `FilterError`, which names the valid ones; `all_frames` takes the values that every
  frame asked for takes.
- `progress`: `None` shows a `tqdm.auto` bar above 200 sessions, `True`/`False` force it.
- `workers`: build in that many worker processes (`None` or 1: in the calling one), each
  reading a contiguous share of the sessions of a directory store; the frames are the same
  row for row, `attrs` included (other sources, and builds of fewer than 40 sessions, are
  built in the calling process; `sessions` is served from its index either way). On a
  store seen for the first time the workers also share the check of which sessions
  `load()` accepts. It pays from a few thousand sessions with a core to spare (the first
  call in a kernel also starts a fork server, about 2 s; see docs/analysis.md). A worker
  that fails raises `ParallelBuildError`. A build killed outright (SIGKILL, out of memory)
  leaves its temporary folders (`/dev/shm/a3s_nb-frames-<pid>-*`, `$TMPDIR/a3s_nb-pool-<pid>-*`);
  the next parallel build and `a3s-nb check --fix` remove those whose process is gone.

`all_frames(source, frames=None, ...)` builds several frames in one pass over the files,
which is what to use for more than one frame of a large store.

## Frame metadata

`df.attrs` holds `frame` (the frame name), `schema_version` (see above) and `errors`: one
`{"session_id", "path", "problem"}` entry per session left out, each also reported with a
`CorruptSessionWarning`. A session is left out of every frame, and listed in each, when
`Store.load()` would reject it: a file that is empty, torn, not JSON, too deeply nested, or
parseable but not the shape a3s-code writes (a run without `status`, a wrong type, an `id`
that differs from the file name, a broken artifacts manifest), even when the frame does not
read that file. The verdict is `load()`'s own, cached per file `(mtime_ns, size)` in
`<store>/.a3s_nb/loadcheck.json`, so it costs a validation only for files that changed.
A session whose files pass a stricter typed decode (msgspec, when installed: JSON integers
only where the models take an integer, no key the models do not name, `JSON` values nested
at most 6 levels, known event types only) is one `load()` accepts, and is not validated
with the models; any other session is loaded, for `load()`'s verdict and message. An
integer that does not fit a 64-bit column (`2**63` and beyond, which `load()` accepts) is
shown as `<NA>`; its session is kept and gets an `errors` entry in the frames holding it.
A value of another JSON type than its column's is `<NA>` (text columns hold it as JSON),
whatever the values around it: an integer column takes a float only when it is whole
(`3.0` is 3, as `load()` reads it), never truncated (a hand-written `exit_code` of `2.9`
in a tool's metadata, which `load()` accepts as it is, is `<NA>`, not 2).
A session deleted (by another kernel or the SDK) after a build listed it and before it read
its files is left out the same way, with the problem "was deleted while it was being read";
`export_dataset` and `to_otel` list such sessions in their result's `errors` and carry on.

Caches: a frame of a whole directory store (no `ids`, `since`, `until` or `status`) is kept
in `<store>/.a3s_nb/frames/` (Arrow IPC, one file per segment of 256 sessions in id order)
with the `(mtime_ns, size)` of each session's files; the next call rebuilds only the
sessions whose files changed, appeared or vanished, and rewrites only their segments.
`sessions()` of a whole store is kept as Arrow too, next to the index it was built from. Which sessions `load()` rejects is asked again on every call, never cached with
the rows; a cache that does not open or disagrees with its manifest is rebuilt, and so
is one made by another build of a3s_nb (another version, an edited module of
`a3s_nb.frames` or `a3s_nb.store`) or with another price table. Delete the
directory at any time: it is only a cache. `runs` and
`sessions` also hold `price_table` (the `genai-prices` version the costs come from, None
when it is not installed) and `unpriced_models`: the models whose rows have no cost. The
attrs survive a Parquet round trip.

## Column sources

The `source` of each column says where its value comes from: a path into the JSON files
of the store, or `computed:` and how a3s_nb derives it. A path starts with a session's
file (`<id>` is the session id): `<id>.json` (the session document), `runs/<id>.json`,
`traces/<id>.json`, `verification/<id>.json` or `.a3s_nb/lineage/<id>.json` (a3s_nb's
fork and replay records). Its steps: `.key` a field, `.{a,b}` whichever of these fields
is present, `[]` every element of a list, `[key=value]` the elements whose field (dotted
when nested) has that value. `A or B`: the value comes from one of the paths.
`count(...)`, `min(...)` and `max(...)` aggregate over the row: a `sessions` row is the
whole session, a `runs` row its own run. Times become UTC timestamps: integers in
milliseconds for a field named `*_ms`, in seconds otherwise; strings as ISO 8601. The
test suite resolves every path in a store written by a3s-code and checks that it holds
the column's values, so the sources cannot drift from the data.

Conventions: names are snake_case; times are tz-aware UTC (`datetime64[ms, UTC]`); counts
and codes are nullable `Int64`; amounts (`cost_usd`) are nullable `Float64`; flags are
nullable `boolean`; enums are `category` (known
values first, unknown ones kept); text is the pandas `string` dtype; nested JSON is a
JSON string. No cell holds a Python object, so every frame round-trips through Parquet.
"""


def _values(enum: str) -> str:
    return ", ".join(f"`{v}`" for v in ENUMS[enum])


def render_markdown() -> str:
    """The text of ``docs/frames.md``."""
    out = [
        "# a3s_nb DataFrames: schema",
        "",
        "<!-- Generated by `python -m a3s_nb.frames.schema > docs/frames.md`; edit a3s_nb/frames/schema.py. -->",
        "",
        f'Schema version: **{SCHEMA_VERSION}** (in `df.attrs["schema_version"]`).',
        "",
        _FILTERS.replace("{run_status}", _values("run_status")).replace(
            "{verification_status}", _values("verification_status")
        ),
    ]
    for name, (doc, cols) in FRAMES.items():
        out += [
            f"## `{name}`",
            "",
            doc,
            "",
            "| column | dtype | meaning | source |",
            "|---|---|---|---|",
        ]
        for col in cols:
            out.append(f"| `{col.name}` | {col.label} | {col.doc} | {col.source_label} |")
        out.append("")
    out += ["## Enum values", "", "| enum | known values |", "|---|---|"]
    for enum, values in ENUMS.items():
        out.append(f"| `{enum}` | {', '.join(f'`{v}`' for v in values)} |")
    out.append("")
    return "\n".join(out)


if __name__ == "__main__":  # pragma: no cover
    print(render_markdown(), end="")
