"""Token totals: the one way a3s_nb adds up a3s-code's usage counts.

a3s-code reports a run's usage in its ``agent_end`` event (and per model call in
``turn_end``). The three totals are sums, so nothing reported counts 0; the two cache counts
stay None (unknown) until some usage reports one. Only JSON integers count.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from .models import AgentEnd, RunRecord

#: The five counts of a usage dict, in the order every accumulator keeps them.
USAGE_KEYS = (
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
)


def add_usage(acc: list, usage: dict) -> None:
    """Add one usage dict into ``acc`` (five counts in ``USAGE_KEYS`` order, None: unknown)."""
    for k, key in enumerate(USAGE_KEYS):
        v = usage.get(key)
        if type(v) is int:
            acc[k] = v if acc[k] is None else acc[k] + v


def add_counts(acc: list, counts: list) -> None:
    """Add one accumulator (``USAGE_KEYS`` order) into another; None adds nothing."""
    for k, v in enumerate(counts):
        if v is not None:
            acc[k] = v if acc[k] is None else acc[k] + v


def total_usage(usages: Iterable[Any]) -> dict[str, Any] | None:
    """The sum of usage dicts as a usage dict; None when there is none."""
    acc: list = [0, 0, 0, None, None]
    seen = False
    for usage in usages:
        seen = True
        if type(usage) is dict:
            add_usage(acc, usage)
    return dict(zip(USAGE_KEYS, acc, strict=True)) if seen else None


def agent_end_usages(runs: Iterable[Any]) -> Iterator[Any]:
    """The ``agent_end`` usage of each run, from run files' JSON or ``RunRecord`` models."""
    for run in runs:
        if isinstance(run, RunRecord):
            for record in run.events:
                if isinstance(record.event, AgentEnd):
                    yield record.event.usage.model_dump()
            continue
        events = run.get("events") if type(run) is dict else None
        for record in events if type(events) is list else ():
            event = record.get("event") if type(record) is dict else None
            if type(event) is dict and event.get("type") == "agent_end":
                yield event.get("usage")


def runs_usage(runs: Iterable[Any]) -> dict[str, Any] | None:
    """The sum of the runs' ``agent_end`` usage (run JSON or models); None without any."""
    return total_usage(agent_end_usages(runs))


def runs_total_tokens(runs: Iterable[Any]) -> int:
    """The runs' total tokens (the sum of their ``agent_end`` ``total_tokens``)."""
    usage = runs_usage(runs)
    return usage["total_tokens"] if usage is not None else 0
