"""Where each trace event came from: which run's tool call, a verification command, or a
direct call on the session.

a3s-code 3.x writes a trace event (``traces/<id>.json``) for every tool execution, with
neither a run id nor a time. What ties them to runs is order: traces are written in
execution order, and every run's ``tool_end`` events name its tool calls in that order.
So, with the runs in the order they were made:

* each ``tool_end`` claims the first unclaimed ``tool_execution`` trace after the previous
  claim with the same tool name, exit code and output size (``output_bytes`` is the byte
  length of the ``tool_end`` output); when none has that size, the first with the same
  name and exit code. Its origin is ``agent``.
* a ``program`` call also claims the traces its script left: the tools the script called
  (``tool_end.metadata.program.tool_calls``), traced just before the program's own trace,
  and the ``program_execution`` trace just after it. Their origin is ``program``.
* a verification report made by ``verify_commands`` (every check suggests ``bash``) left
  one ``bash`` trace per check, one after the other, each succeeding when its check
  passed: the first such unclaimed stretch after the previous report's is its own. Their
  origin is ``verify``.
* every other trace was a ``session.tool()`` call outside any run (or a tool of a script
  run that way): origin ``direct``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

AGENT, PROGRAM, VERIFY, DIRECT = "agent", "program", "verify", "direct"

# (Trace and Call are named tuples: the frames make one per trace and per tool call of
# every session, and a frozen dataclass costs four times as much to make.)


class Trace(NamedTuple):
    """What the matching reads of one trace event."""

    kind: Any
    name: Any
    exit_code: Any
    success: Any
    output_bytes: Any


class Call(NamedTuple):
    """One ``tool_end`` of a run: ``owner`` is the caller's handle for its run."""

    owner: Any
    name: Any
    exit_code: Any
    output_bytes: int | None
    #: ``program`` calls: (name, exit code, output bytes) of each tool its script called
    steps: tuple[tuple[Any, Any, Any], ...] = ()


def output_size(output: Any) -> int | None:
    """What a trace's ``output_bytes`` is for a ``tool_end`` output."""
    if not isinstance(output, str):
        return None
    return len(output) if output.isascii() else len(output.encode("utf-8", "surrogatepass"))


def program_steps(metadata: Any) -> tuple[tuple[Any, Any, Any], ...]:
    """The tools a ``program`` call's script called, from its ``tool_end`` metadata."""
    program = metadata.get("program") if isinstance(metadata, dict) else None
    calls = program.get("tool_calls") if isinstance(program, dict) else None
    if not isinstance(calls, list):
        return ()
    return tuple(
        (c.get("tool_name"), c.get("exit_code"), c.get("output_bytes"))
        for c in calls
        if isinstance(c, dict)
    )


def verify_checks(reports: Any) -> list[list[Any]]:
    """The check statuses of each report ``verify_commands`` made, in order."""
    out = []
    for r in reports if isinstance(reports, list) else ():
        checks = r.get("checks") if isinstance(r, dict) else None
        if not isinstance(checks, list) or not checks:
            continue
        if all(
            isinstance(c, dict)
            and isinstance(c.get("suggested_tools"), list)
            and "bash" in c["suggested_tools"]
            for c in checks
        ):
            out.append([c.get("status") for c in checks])
    return out


def attribute(
    traces: Sequence[Trace], calls: Sequence[Call], verify: Sequence[Sequence[Any]] = ()
) -> tuple[list[Any], list[str], list[int | None]]:
    """For each trace: the ``owner`` of its run (None outside runs), its origin, and the
    index in ``calls`` of the tool call it is (``agent``) or belongs to (``program``)."""
    n = len(traces)
    owners: list[Any] = [None] * n
    origins: list[str | None] = [None] * n
    call_of: list[int | None] = [None] * n
    at = 0
    for ci, call in enumerate(calls):
        j = _find(traces, origins, at, call)
        if j is None:
            continue
        owners[j], origins[j], call_of[j] = call.owner, AGENT, ci
        if call.name == "program":
            k = j - 1
            for name, _, _ in reversed(call.steps):
                if k < at or origins[k] is not None or traces[k].name != name:
                    break
                owners[k], origins[k], call_of[k] = call.owner, PROGRAM, ci
                k -= 1
            nxt = j + 1
            if nxt < n and origins[nxt] is None and traces[nxt].kind == "program_execution":
                owners[nxt], origins[nxt], call_of[nxt] = call.owner, PROGRAM, ci
                j = nxt
        at = j + 1
    at = 0
    for statuses in verify:
        k = _verify_stretch(traces, origins, at, statuses)
        if k is None:
            continue
        for i in range(k, k + len(statuses)):
            origins[i] = VERIFY
        at = k + len(statuses)
    return owners, [o or DIRECT for o in origins], call_of


def _find(traces: Sequence[Trace], origins: list, start: int, call: Call) -> int | None:
    loose = None
    for j in range(start, len(traces)):
        t = traces[j]
        if (
            origins[j] is None
            and t.kind == "tool_execution"
            and t.name == call.name
            and t.exit_code == call.exit_code
        ):
            if call.output_bytes is None or t.output_bytes == call.output_bytes:
                return j
            if loose is None:
                loose = j
    return loose


def _verify_stretch(
    traces: Sequence[Trace], origins: list, start: int, statuses: Sequence[Any]
) -> int | None:
    """Where the traces of one ``verify_commands`` report start (None if nowhere)."""
    m = len(statuses)
    fallback = None
    for k in range(start, len(traces) - m + 1):
        window = range(k, k + m)
        if not all(
            origins[i] is None and traces[i].name == "bash" and traces[i].kind == "tool_execution"
            for i in window
        ):
            continue
        if all(_agrees(traces[i].success, s) for i, s in zip(window, statuses, strict=True)):
            return k
        if fallback is None:
            fallback = k
    return fallback


def _agrees(success: Any, status: Any) -> bool:
    if status == "passed":
        return success is True
    if status == "failed":
        return success is False
    return True
