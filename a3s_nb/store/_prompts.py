"""What a *prompt* is: one user prompt and everything the agent did for it (its run), the
unit fork, diff, search and the report number from 1. a3s-code links no message to its
run, so the prompts are told apart here, from the messages and the run records alone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .models import Message, RunRecord, SessionBundle, TextBlock, ToolResultBlock, ToolUseBlock

__all__ = ["Prompt", "ToolCallItem", "prompts_of"]

_NO_MESSAGES = frozenset({"failed", "cancelled"})


# =============================================================================== prompts


def _args_json(value: Any) -> str:
    """Arguments as canonical JSON (sorted keys), the way calls are compared."""
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


@dataclass
class ToolCallItem:
    """One tool call of a prompt: what was called with what, and what came back."""

    name: str
    args: str  # canonical JSON of the input; "" when unknown (a failed run's calls)
    ok: bool | None
    result: str
    id: str | None = None

    @property
    def status(self) -> str:
        return {True: "ok", False: "error", None: "unknown"}[self.ok]


@dataclass
class Prompt:
    """One prompt of a session: the user's prompt and everything the agent did for it."""

    number: int  # from 1
    text: str
    run: RunRecord | None
    messages: tuple[int, int]  # [start, end) in session.messages
    tools: list[ToolCallItem] = field(default_factory=list)
    answer: str = ""

    @property
    def status(self) -> str | None:
        return self.run.snapshot.status if self.run is not None else None


def _starts_prompt(message: Message) -> bool:
    return message.role == "user" and any(isinstance(b, TextBlock) for b in message.content)


def _message_groups(messages: Sequence[Message]) -> list[tuple[int, int]]:
    starts = [i for i, m in enumerate(messages) if _starts_prompt(m)]
    if messages and (not starts or starts[0] != 0):
        starts.insert(0, 0)  # leading messages without a prompt go with the first one
    return [(s, e) for s, e in zip(starts, [*starts[1:], len(messages)], strict=True)]


def _groups_of_run(run: RunRecord) -> int:
    """How many prompt messages a run left in the transcript."""
    if run.snapshot.status in _NO_MESSAGES:
        return 0
    types = [r.event.type for r in run.events]
    if "planning_start" in types or "planning_end" in types:
        return 1 + types.count("step_start")
    return 1


def _ordered_runs(bundle: SessionBundle) -> list[RunRecord]:
    return sorted(bundle.runs, key=lambda r: r.snapshot.created_at_ms)  # stable


def _prompts(bundle: SessionBundle, *, content: bool = True) -> list[Prompt]:
    """The prompts of a session; ``content=False`` leaves their ``tools`` and ``answer``
    empty (numbering and spans alone: what search indexes by)."""
    messages = bundle.session.messages
    groups = _message_groups(messages)
    out: list[Prompt] = []
    gi = 0
    for run in _ordered_runs(bundle):
        n = _groups_of_run(run)
        taken = groups[gi : gi + n]
        gi += len(taken)
        at = _next_start(groups, gi)
        span = (taken[0][0], taken[-1][1]) if taken else (at, at)
        out.append(Prompt(len(out) + 1, run.snapshot.prompt, run, span))
    for start, end in groups[gi:]:
        text = messages[start].text if _starts_prompt(messages[start]) else ""
        out.append(Prompt(len(out) + 1, text, None, (start, end)))
    for p in out if content else ():
        p.tools, p.answer = _prompt_content(messages[p.messages[0] : p.messages[1]], p.run)
    return out


def _next_start(groups: list[tuple[int, int]], gi: int) -> int:
    """Where a prompt that left no messages sits in the transcript."""
    if gi < len(groups):
        return groups[gi][0]
    return groups[-1][1] if groups else 0


def _prompt_content(messages: Sequence[Message], run: RunRecord | None) -> tuple[list, str]:
    """(tool calls, final answer) of one prompt: from its messages, else its run events."""
    results: dict[str, ToolResultBlock] = {}
    for m in messages:
        for b in m.content:
            if isinstance(b, ToolResultBlock):
                results[b.tool_use_id] = b
    tools: list[ToolCallItem] = []
    answer = ""
    for m in messages:
        for b in m.content:
            if isinstance(b, ToolUseBlock):
                r = results.get(b.id)
                ok = None if r is None else not bool(r.is_error)
                tools.append(
                    ToolCallItem(b.name, _args_json(b.input), ok, r.text if r else "", b.id)
                )
        if m.role == "assistant" and m.text.strip():
            answer = m.text.strip()
    if not messages and run is not None:  # a failed run: only its events tell
        for record in run.events:
            e = record.event
            if e.type == "tool_end":
                tools.append(ToolCallItem(e.name, "", e.exit_code == 0, e.output, e.id))
        answer = run.snapshot.error or run.snapshot.result_text or ""
    elif run is not None and not answer:
        answer = run.snapshot.result_text or ""
    return tools, answer


# =============================================================================== owners


def prompts_of(bundle: SessionBundle) -> list[Prompt]:
    """The prompts of a loaded session, in order, numbered from 1."""
    return _prompts(bundle)
