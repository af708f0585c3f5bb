"""Fork, diff and replay sessions: make new sessions from saved ones, and compare sessions.

The unit everything here counts in is the **prompt**: one user prompt and everything the
agent did for it, i.e. its run (the frames call one model call inside a run a *turn*; a
prompt holds one or more turns). Prompts are numbered from 1 in the order the runs were
made.

How a saved session is cut into prompts (a3s-code 3.1 records no link between the
transcript, the runs and the traces, so it is rebuilt from what the files do show):

* **Messages.** A new prompt starts at each user message that carries text (tool results
  travel as user messages too, one per result, and do not start a prompt). A run that
  failed or was cancelled left nothing in the transcript; a planning run left its goal and
  then one ``Execute step N`` message per step (as many as its ``step_start`` events). The
  runs, in order, take the prompt messages in order; any prompt messages left over (a
  history given to the SDK, a runs file that is missing) become prompts without a run.
* **Traces** carry neither a run id nor a time, but they are written in execution order,
  and every run's ``tool_end`` events name its tools in that order. Traces are matched to
  the runs' tool calls by tool name, exit code and output size, in order, as the
  ``traces`` frame matches them (``_traceorigin``); a ``program`` call also claims the
  tools its script ran. A trace that matches no tool call (a direct ``session.tool()``
  call, a ``verify_commands`` check) was recorded after the matched call before it and
  before the one after it; it is given to the *latest* prompt it may belong to (the
  prompt before the next matched call's, or the last prompt when none follows), so a fork
  never carries a trace made after its cut (it may leave out one made just before it,
  when tool-less prompts follow).
* **Verification reports** carry no time either. A report made by ``verify_commands``
  left one ``bash`` trace per check: it belongs where those traces belong. A report
  recorded from outside (``record_verification_reports``) left no trace: it stays with the
  report before it, or with the last prompt when it is the first.
* **Artifacts** come along when a kept message, run event or trace refers to them.

Lineage (which session a fork or replay came from, after which prompt, when) is kept by
a3s_nb in ``<store>/.a3s_nb/lineage/<id>.json``, never in the session file: a3s-code
drops fields it does not know when it saves a session, and its ``parent_id`` means the
parent of a sub-agent session.

The workspace: a3s-code keeps no snapshots of the files its tools change, so a fork's
history is cut at prompt N but the workspace is as the source left it, later prompts'
changes included. ``workspace=`` continues the fork in a copy of that directory, so two
branches do not write into one folder.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import hashlib
import json
import os
import shutil
import stat
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import api
from ..errors import EditError, ForkError, NotAnAgentError, SessionExistsError, StoreError
from ..saved import SavedSession
from ..sdk.capture import artifact_uris, capture, is_session_like
from ..sdk.features import session_model
from ..sdk.live import open_session, wait_idle
from ..store._prompts import (
    Prompt,
    _ordered_runs,
    _prompts,
)
from ..store._tokens import runs_total_tokens, runs_usage
from ..store._traceorigin import AGENT, Call, Trace, attribute, output_size, program_steps
from ..store._v1layout import file_key
from ..store.models import Message, RunRecord, SessionBundle, ToolResultBlock
from ..store.store import LINEAGE_COLUMNS as store_lineage_columns
from ..store.store import (
    LINEAGE_SCHEMA,
    FileStore,
    Store,
    read_lineage,
    remove_lineage,
    validate_session_id,
    write_lineage,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DIFF_COLUMNS",
    "EditError",
    "ForkError",
    "Prompt",
    "ReplayResult",
    "cut",
    "diff",
    "diff_summary",
    "fork",
    "lineage_frame",
    "lineage_of",
    "prompts",
    "record_checks",
    "replay",
]


def prompts(source: Any, *, store: Any = None) -> list[Prompt]:
    """The prompts of a session, in order (see the module docstring for how).

    ``source`` is a session id (looked up in ``store``), a ``SessionBundle``, a saved
    session from :func:`a3s_nb.resume`, or a live session.
    """
    bundle = _load(source, store)[0]
    return _prompts(bundle)


# =============================================================================== owners


def _match_traces(
    bundle: SessionBundle, ps: list[Prompt]
) -> tuple[list[int | None], set[int], list[str | None]]:
    """(prompt number of each trace that a run's ``tool_end`` claims, else None; the
    indices of the traces of ``program`` calls; the tool call id of each trace that is a
    call's own, else None), as ``_traceorigin`` matches them."""
    traces = [Trace(t.kind, t.name, t.exit_code, t.success, t.output_bytes) for t in bundle.traces]
    ends = [
        (p.number, e)
        for p in ps
        if p.run is not None
        for e in (record.event for record in p.run.events)
        if e.type == "tool_end"
    ]
    calls = [
        Call(
            number,
            e.name,
            e.exit_code,
            output_size(e.output),
            program_steps(e.metadata) if e.name == "program" else (),
        )
        for number, e in ends
    ]
    owners, origins, call_of = attribute(traces, calls)
    program_at = {
        j
        for j, (t, origin) in enumerate(zip(traces, origins, strict=True))
        if origin == AGENT and t.name == "program"
    }
    call_ids = [
        ends[ci][1].id if origin == AGENT and ci is not None else None
        for origin, ci in zip(origins, call_of, strict=True)
    ]
    return owners, program_at, call_ids


def _trace_owners(matched: list[int | None], program_at: set[int], n_prompts: int) -> list[int]:
    """The prompt number each trace belongs to (see the module docstring)."""
    out: list[int] = []
    last = 1
    for j, owner in enumerate(matched):
        if owner is None:
            nxt = next((k for k in range(j + 1, len(matched)) if matched[k] is not None), None)
            if nxt is None:  # after every matched call: the latest prompt it may follow
                owner = max(n_prompts, 1)
            elif nxt in program_at:  # a program script's own tools are traced before it
                owner = matched[nxt]
            else:  # between two prompts' calls: the latest prompt it may follow
                owner = max(last, matched[nxt] - 1, 1)
        else:
            last = owner
        out.append(owner)
    return out


def _report_owners(
    bundle: SessionBundle, matched: list[int | None], owners: list[int], n_prompts: int
) -> list[int]:
    """The prompt number each verification report belongs to."""
    unmatched_bash = [
        owners[j] for j, t in enumerate(bundle.traces) if t.name == "bash" and matched[j] is None
    ]
    out: list[int] = []
    bi = 0
    for report in bundle.verification:
        commands = [c for c in report.checks if "bash" in c.suggested_tools]
        if commands and len(commands) == len(report.checks) and bi < len(unmatched_bash):
            owner = unmatched_bash[bi]
            bi += len(commands)
        else:
            owner = out[-1] if out else max(n_prompts, 1)
        out.append(owner)
    return out


# =============================================================================== cut


def cut(
    bundle: SessionBundle,
    at: int,
    *,
    new_id: str | None = None,
    now: float | None = None,
    edits: Mapping[str, str] | None = None,
):
    """A copy of ``bundle`` holding its first ``at`` prompts only (a new bundle).

    Messages, runs, traces, verification reports, artifacts and sub-agent tasks of the
    later prompts are left out; ``new_id`` relabels the copy. ``created_at`` and
    ``updated_at`` become ``now``; ``total_usage`` is summed over the kept runs.
    ``edits`` (``{tool call id: new output}``) replaces the output of kept tool calls
    (see :func:`fork`).
    """
    ps = _prompts(bundle)
    _check_at(at, len(ps), bundle.session.id)
    if edits is not None:
        _edit_records(bundle, at, edits)
    now = time.time() if now is None else now
    kept = ps[:at]
    end = kept[-1].messages[1] if kept else 0
    keep_runs = {id(p.run) for p in kept if p.run is not None}
    runs = [r for r in _ordered_runs(bundle) if id(r) in keep_runs]
    matched, program_at, trace_calls = _match_traces(bundle, ps)
    t_owners = _trace_owners(matched, program_at, len(ps))
    kept_traces = [
        (t.model_copy(deep=True), c)
        for t, c, o in zip(bundle.traces, trace_calls, t_owners, strict=True)
        if o <= at
    ]
    traces = [t for t, _ in kept_traces]
    r_owners = _report_owners(bundle, matched, t_owners, len(ps))
    reports = [v for v, o in zip(bundle.verification, r_owners, strict=True) if o <= at]

    sid = new_id or bundle.session.id
    data = bundle.session.model_copy(deep=True)
    data.id = sid
    data.messages = [m.model_copy(deep=True) for m in bundle.session.messages[:end]]
    data.created_at = data.updated_at = int(now)
    runs = [r.model_copy(deep=True) for r in runs]
    for r in runs:
        r.snapshot.session_id = sid
    if edits:
        _apply_edits(data.messages, runs, kept_traces, edits)
    raw_runs = [r.model_dump(mode="json", by_alias=True) for r in runs]
    usage = runs_usage(raw_runs)
    if usage is not None:
        data.total_usage = type(data.total_usage).model_validate(usage)
    raw_traces = [t.model_dump(mode="json", by_alias=True) for t in traces]
    raw_history = [m.model_dump(mode="json", by_alias=True) for m in data.messages]
    uris = set(artifact_uris(raw_history, raw_runs, raw_traces))
    artifacts = bundle.artifacts.model_copy(deep=True)
    artifacts.artifacts = [a for a in artifacts.artifacts if a.artifact_uri in uris]
    tasks = None
    if bundle.subagent_tasks is not None:
        dropped = [p.run.snapshot.created_at_ms for p in ps[at:] if p.run is not None]
        limit = min(dropped) if dropped else None
        tasks = [
            t.model_copy(deep=True)
            for t in bundle.subagent_tasks
            if limit is None or t.started_ms < limit
        ]
        for t in tasks:
            t.parent_session_id = sid
    return SessionBundle(
        session=data,
        runs=runs,
        traces=traces,
        verification=[v.model_copy(deep=True) for v in reports],
        artifacts=artifacts,
        subagent_tasks=tasks,
    )


def _check_at(at: Any, n: int, sid: str) -> None:
    if isinstance(at, bool) or not isinstance(at, int):
        raise ForkError(f"the prompt to fork after is a whole number from 1 to {n}, not {at!r}")
    if n == 0:
        raise ForkError(f"session {sid} has no prompts to fork after")
    if at < 1 or at > n:
        raise ForkError(
            f"session {sid} has {n} prompt{'s' if n != 1 else ''}: fork after prompt 1 to {n}, "
            f"not {at}"
        )


# =============================================================================== edits


def _apply_edits(
    messages: list[Message],
    runs: list[RunRecord],
    traces: list[tuple[Any, str | None]],
    edits: Mapping[str, str],
) -> None:
    """Give each edited call its new output wherever the (copied) history holds it: its
    ``tool_result`` (what the model reads), its run's ``tool_end`` event, and its own
    trace's ``output_bytes``. An artifact the old output was truncated into stays named
    (``tool_end.metadata.artifact``, the trace's ``artifact_uris``) only when the new
    text names it."""
    for m in messages:
        for b in m.content:
            if isinstance(b, ToolResultBlock) and b.tool_use_id in edits:
                b.content = edits[b.tool_use_id]
    for r in runs:
        for record in r.events:
            e = record.event
            if e.type == "tool_end" and e.id in edits:
                e.output = edits[e.id]
                art = e.metadata.get("artifact") if isinstance(e.metadata, dict) else None
                if isinstance(art, dict) and str(art.get("artifact_uri")) not in e.output:
                    e.metadata = {k: v for k, v in e.metadata.items() if k != "artifact"}
    for t, call_id in traces:
        if call_id in edits:
            new = edits[call_id]
            t.output_bytes = output_size(new)
            t.artifact_uris = [u for u in t.artifact_uris if u in new]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


#: How many editable calls an error message lists.
_LISTED = 12


def _edit_records(bundle: SessionBundle, at: int, edits: Any) -> list[dict[str, Any]]:
    """Check ``edits`` (``{tool call id: new output}``) against the first ``at`` prompts
    of ``bundle``; one lineage entry per edit: ``call_id``, ``tool``, ``prompt``,
    ``old_sha256`` (of the output the model saw, UTF-8) and ``new_length`` (characters).

    Raises :class:`EditError` naming every bad call and the calls that can be edited:
    those whose result is in the transcript of the kept prompts."""
    sid = bundle.session.id
    if not isinstance(edits, Mapping):
        raise EditError(
            f"edits is a mapping {{tool call id: new output}}, not a {type(edits).__name__}"
        )
    if not edits:
        raise EditError(
            "edits is empty: give {tool call id: new output}, or leave edits out for a plain fork"
        )
    bad = [
        f"{k!r}: {type(v).__name__}"
        for k, v in edits.items()
        if not isinstance(k, str) or not isinstance(v, str)
    ]
    if bad:
        raise EditError(
            "edits maps a tool call id (str) to the new output (str); not " + ", ".join(bad)
        )
    ps = _prompts(bundle)
    editable = {
        t.id: (p, t)
        for p in ps[:at]
        if p.messages[1] > p.messages[0]
        for t in p.tools
        if t.id is not None and t.ok is not None
    }
    every = {t.id: (p, t) for p in ps for t in p.tools if t.id is not None}
    problems = []
    for call_id in edits:
        if call_id in editable:
            continue
        p, t = every.get(call_id, (None, None))
        if p is None:
            problems.append(f"no tool call {call_id!r} in session {sid}")
        elif p.number > at:
            problems.append(
                f"tool call {call_id!r} ({t.name}) is in prompt {p.number}, after the cut at "
                f"prompt {at}"
            )
        else:
            why = (
                "it has no result there"
                if p.messages[1] > p.messages[0]
                else "its run failed and left nothing the model reads"
            )
            problems.append(
                f"tool call {call_id!r} ({t.name}, prompt {p.number}) is not in the "
                f"transcript: {why}"
            )
    if problems:
        listed = [f"{cid} ({t.name}, prompt {p.number})" for cid, (p, t) in editable.items()]
        more = len(listed) - _LISTED
        which = (
            f"the calls that can be edited (in the kept prompts 1 to {at}): "
            + ", ".join(listed[:_LISTED])
            + (f" and {more} more (see a3s_nb.lab.prompts)" if more > 0 else "")
            if listed
            else f"the kept prompts 1 to {at} hold no tool call that can be edited"
        )
        raise EditError("; ".join(problems) + f". {which[0].upper()}{which[1:]}")
    return [
        {
            "call_id": call_id,
            "tool": editable[call_id][1].name,
            "prompt": editable[call_id][0].number,
            "old_sha256": _digest(editable[call_id][1].result),
            "new_length": len(new),
        }
        for call_id, new in edits.items()
    ]


# =============================================================================== lineage


def lineage_of(session_id: str, store: Any = None) -> dict[str, Any] | None:
    """The lineage record of a saved session (None when it is not a fork or replay).

    ``{"session_id", "kind" ("fork"|"replay"), "parent_id", "parent_store", "at_prompt",
    "of_prompts", "created_at" (ISO 8601, UTC), "model", "tools"}``; a fork's also has
    ``"edits"``: one ``{"call_id", "tool", "prompt", "old_sha256", "new_length"}`` per
    tool result it edited (see :func:`fork`).
    """
    return read_lineage(_open(store), session_id)


def lineage_frame(store: Any = None) -> pd.DataFrame:
    """One row per fork or replay in the store whose session still exists.

    Columns: ``session_id``, ``lineage_kind``, ``lineage_parent_id``,
    ``lineage_at_prompt``, ``lineage_created_at``, ``lineage_model``, ``lineage_edits``
    (how many tool results a what-if fork edited).
    """
    import pandas as pd

    st = _open(store)
    ids = set(st.list())
    rows = []
    for sid in sorted(ids):
        rec = lineage_of(sid, st)
        if rec is not None:
            rows.append(_lineage_row(rec))
    return _lineage_frame(pd.DataFrame(rows, columns=LINEAGE_COLUMNS))


#: ``lineage_frame()``'s columns: the session, then what ``sessions()`` gains from its record.
LINEAGE_COLUMNS = ["session_id", *store_lineage_columns]


def _lineage_row(rec: dict[str, Any]) -> dict[str, Any]:
    return {
        "session_id": rec["session_id"],
        "lineage_kind": rec.get("kind"),
        "lineage_parent_id": rec.get("parent_id"),
        "lineage_at_prompt": rec.get("at_prompt"),
        "lineage_created_at": rec.get("created_at"),
        "lineage_model": rec.get("model"),
        "lineage_edits": len(rec.get("edits") or ()),
    }


def _lineage_frame(df: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    df = df.copy()
    for col in ("session_id", "lineage_kind", "lineage_parent_id", "lineage_model"):
        df[col] = df[col].astype("string")
    df["lineage_kind"] = df["lineage_kind"].astype(pd.CategoricalDtype(["fork", "replay"]))
    for col in ("lineage_at_prompt", "lineage_edits"):
        df[col] = pd.array(df[col].tolist(), dtype="Int64")
    df["lineage_created_at"] = pd.to_datetime(df["lineage_created_at"], utc=True).astype(
        "datetime64[ms, UTC]"
    )
    return df.reset_index(drop=True)


def _now_iso(now: float) -> str:
    return dt.datetime.fromtimestamp(now, dt.UTC).isoformat(timespec="seconds")


# =============================================================================== sources


def _open(store: Any) -> Store:
    if isinstance(store, Store):
        return store
    return api._open(store, must_exist=True)


def _load(source: Any, store: Any = None) -> tuple[SessionBundle, Store | None, bool]:
    """(bundle, the store it came from or None, is_live) for any session-ish source."""
    if isinstance(source, SessionBundle):
        return source, None, False
    if isinstance(source, SavedSession):
        return source.bundle, source.store if isinstance(source.store, Store) else None, False
    if isinstance(source, str):
        st = _open(store)
        return st.load(st.resolve(source)), st, False
    if is_session_like(source):
        if callable(getattr(source, "current_run", None)):
            wait_idle(source)
        return capture(source), None, True
    raise ForkError(
        f"cannot read a session from a {type(source).__name__}: give a session id, a saved "
        "session (a3s_nb.resume), a SessionBundle or a live a3s-code session"
    )


def _free_id(st: Store, base: str, suffix: str) -> str:
    stem = base[: 200 - len(suffix) - 8]
    k = 1
    while st.exists(f"{stem}-{suffix}-{k}"):
        k += 1
    return f"{stem}-{suffix}-{k}"


def _copy_workspace(source_ws: str, target: str | os.PathLike[str]) -> Path:
    src = Path(source_ws)
    dest = Path(target).expanduser().absolute()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ForkError(f"workspace {dest} exists and is not empty: give a new directory")
    if not src.is_dir():
        raise ForkError(
            f"the source's workspace {src} is not a directory on this machine, so there is "
            "nothing to copy"
        )
    if dest == src or src in dest.parents:
        raise ForkError(f"workspace {dest} is inside the source's workspace {src}")
    shutil.copytree(src, dest, symlinks=True, dirs_exist_ok=True)
    return dest


#: Where a replay's workspace goes by default: ``<store>/.a3s_nb/workspaces/<id>/``, beside
#: the session (a system temp folder does not survive a reboot, and resuming needs it).
_WORKSPACES_DIR = "workspaces"


def _store_workspace(st: FileStore, session_id: str) -> Path:
    """A new, empty folder for ``session_id``'s workspace inside the store's bookkeeping
    folder: made with a plain ``mkdir`` (never an existing folder or a link), and checked
    to be a real folder inside the store."""
    base = st.meta_dir / _WORKSPACES_DIR
    st._writable_dir(base)  # refuses a link out of the store on the way
    ws = base / file_key(session_id)
    try:
        os.mkdir(ws, 0o755)
    except FileExistsError:
        raise ForkError(
            f"workspace {ws} already exists (an earlier replay under this id?): give another "
            "new_id= or workspace=, or remove it"
        ) from None
    except OSError as e:
        raise ForkError(f"cannot make the replay's workspace {ws}: {e}") from e
    st_ws = os.lstat(ws)
    real, store_real = os.path.realpath(ws), os.path.realpath(st.path)
    if not stat.S_ISDIR(st_ws.st_mode) or os.path.commonpath([real, store_real]) != store_real:
        raise StoreError(f"{ws} is not a folder inside the store {st.path}: not used")
    return ws


def _discard_workspace(ws: Path, made: bool) -> None:
    """Remove what a failed replay put in its workspace: the folder itself when the replay
    made it, else its contents (the folder was empty before)."""
    if os.path.islink(ws) or not ws.is_dir():
        return
    if made:
        shutil.rmtree(ws, ignore_errors=True)
        return
    for entry in list(os.scandir(ws)):
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)


# =============================================================================== fork


def fork(
    source: Any,
    at: int | None = None,
    *,
    new_id: str | None = None,
    store: Any = None,
    agent: Any = None,
    workspace: str | os.PathLike[str] | None = None,
    source_store: Any = None,
    edits: Mapping[str, str] | None = None,
    **options: Any,
) -> Any:
    """A new saved session holding the first ``at`` prompts of ``source`` (default: all).

    ``source`` is a session id or unique prefix (in ``source_store``, default ``store``),
    a saved session from :func:`a3s_nb.resume`, a ``SessionBundle`` or a live session. The
    fork is saved in ``store`` under ``new_id`` (default ``<source>-fork-<k>``) with the
    runs, traces, verification reports and artifacts of the kept prompts, and its lineage
    (parent, prompt it was cut after, when) is recorded beside it. The source is not
    touched.

    With ``agent``, the fork is returned live (``fork.send(...)`` continues it, with real
    tool calls; ``options`` go to :func:`a3s_nb.resume`); without, read-only. ``workspace``
    copies the source's workspace directory there and the fork works in the copy:
    a3s-code keeps no snapshots of files, so without it the fork shares the source's
    folder, as the later prompts left it.

    ``edits`` (``{tool call id: new output}``) makes a *what-if* fork: the fork's
    history holds the new text as those calls' output, where the model reads it (the
    ``tool_result`` in the messages) and where the records show it (the run's
    ``tool_end`` event, the trace's ``output_bytes``); exit codes, error flags and
    durations stay as they were, and an artifact only the old output named is left out.
    Only calls whose result is in the transcript of the kept prompts can be edited
    (:class:`EditError` names the others, and the ones that can). The lineage records
    each edit: call id, tool, prompt, the old output's SHA-256 and the new text's length.

    "Rewind" is a fork kept under the same variable name::

        session = a3s_nb.fork(session, at=2, agent=agent)    # doctest: +SKIP
    """
    st = _open_for_write(store)
    src_store = _open(source_store) if source_store is not None else None
    bundle, came_from, _live = _load(source, src_store or st)
    ps = _prompts(bundle)
    at = len(ps) if at is None else at
    _check_at(at, len(ps), bundle.session.id)
    edited = _edit_records(bundle, at, edits) if edits is not None else []
    if new_id is not None:
        validate_session_id(new_id)
        if st.exists(new_id):
            raise SessionExistsError(
                f"session {new_id!r} already exists in store {st}: choose another --id"
            )
    sid = new_id or _free_id(st, bundle.session.id, "fork")
    if agent is not None and not isinstance(st, FileStore):
        raise ForkError(f"a3s-code resumes sessions from a directory store only, not {st}")
    if agent is not None and (
        not callable(getattr(agent, "resume_session", None)) or isinstance(agent, type)
    ):
        raise NotAnAgentError(
            f"a {type(agent).__name__} is not an a3s-code Agent: pass one made with "
            "a3s_code.Agent.create(config)"
        )
    now = time.time()
    forked = cut(bundle, at, new_id=sid, now=now, edits=edits)
    ws_copy = None
    if workspace is not None:
        ws_copy = _copy_workspace(bundle.session.config.workspace, workspace)
        forked.session.config.workspace = str(ws_copy)
    parent_store = came_from if came_from is not None else src_store
    record = {
        "schema": LINEAGE_SCHEMA,
        "session_id": sid,
        "kind": "fork",
        "parent_id": bundle.session.id,
        "parent_store": None
        if parent_store in (None, st) or _same(parent_store, st)
        else str(parent_store),
        "at_prompt": at,
        "of_prompts": len(ps),
        "created_at": _now_iso(now),
        "model": forked.session.model_name,
        "tools": None,
        "workspace": str(ws_copy) if ws_copy else None,
        "edits": edited,
    }
    _save_with_lineage(st, forked, record)
    if agent is None:
        return api.resume(sid, store=st)
    return api.resume(sid, agent, store=st, **options)


def parse_edits(words: Sequence[str]) -> dict[str, str] | None:
    """``CALL_ID=TEXT`` words (``--edit`` of the fork magic and command) as ``{call id:
    text}``; None when there are none. :class:`EditError` says what is wrong with a word."""
    out: dict[str, str] = {}
    for word in words:
        call_id, sep, text = word.partition("=")
        if not sep or not call_id.strip():
            raise EditError(
                f"--edit {word!r} is not CALL_ID=TEXT: give the tool call id, '=', and the "
                "output it should have returned (quote it when it has spaces)"
            )
        if call_id in out:
            raise EditError(f"--edit gives tool call {call_id!r} twice: give each call once")
        out[call_id] = text
    return out or None


def fork_summary(record: Mapping[str, Any]) -> str:
    """``forked from P after prompt A of B[, N tool results edited]``: a fork's lineage
    record in the words the fork magic and command print."""
    n = len(record.get("edits") or ())
    edited = f", {n} tool result{'s' if n != 1 else ''} edited" if n else ""
    return (
        f"forked from {record.get('parent_id')} after prompt {record.get('at_prompt')} of "
        f"{record.get('of_prompts')}{edited}"
    )


def _same(a: Store, b: Store) -> bool:
    return isinstance(a, FileStore) and isinstance(b, FileStore) and a.path == b.path


def _open_for_write(store: Any) -> Store:
    if isinstance(store, Store):
        return store
    return api._open(store)


def _save_with_lineage(st: Store, bundle: SessionBundle, record: dict[str, Any]) -> None:
    sid = record["session_id"]

    def guard(stored: SessionBundle | None) -> None:
        # under the store's write lock: the id is still free, and the lineage goes first,
        # so a session file never exists without its lineage record
        if stored is not None:
            raise SessionExistsError(
                f"session {sid!r} already exists in store {st}: choose another id"
            )
        write_lineage(st, record)

    try:
        st.save(bundle, guard=guard)
    except SessionExistsError:
        raise
    except BaseException:
        remove_lineage(st, sid)
        raise


# =============================================================================== diff

#: Columns of the :func:`diff` frame, in order.
DIFF_COLUMNS = [
    "prompt_a",
    "prompt_b",
    "kind",
    "change",
    "prompt_text_a",
    "prompt_text_b",
    "tool_a",
    "tool_b",
    "args_a",
    "args_b",
    "status_a",
    "status_b",
    "text_a",
    "text_b",
    "what_changed",
]

CHANGES = ("same", "changed", "only_a", "only_b")


def _pairs(a_keys: list, b_keys: list) -> list[tuple[int | None, int | None, str]]:
    """Align two sequences on content: (index in a, index in b, opcode) per aligned item."""
    sm = difflib.SequenceMatcher(a=a_keys, b=b_keys, autojunk=False)
    out: list[tuple[int | None, int | None, str]] = []
    for op, i1, i2, j1, j2 in sm.get_opcodes():
        if op == "equal":
            out += [(i1 + k, j1 + k, "equal") for k in range(i2 - i1)]
        else:
            n = max(i2 - i1, j2 - j1)
            for k in range(n):
                i = i1 + k if i1 + k < i2 else None
                j = j1 + k if j1 + k < j2 else None
                out.append((i, j, "replace" if i is not None and j is not None else op))
    return out


def _tool_rows(pa: Prompt | None, pb: Prompt | None) -> list[dict[str, Any]]:
    ta = pa.tools if pa else []
    tb = pb.tools if pb else []
    rows = []
    for i, j, _op in _pairs([(t.name, t.args) for t in ta], [(t.name, t.args) for t in tb]):
        a = ta[i] if i is not None else None
        b = tb[j] if j is not None else None
        what = None
        if a is None:
            change = "only_b"
        elif b is None:
            change = "only_a"
        else:
            what = _what_changed(
                {"tool": a.name, "args": a.args, "status": a.status, "output": a.result},
                {"tool": b.name, "args": b.args, "status": b.status, "output": b.result},
            )
            change = "changed" if what else "same"
        rows.append(
            {
                "prompt_a": pa.number if pa and a else None,
                "prompt_b": pb.number if pb and b else None,
                "kind": "tool",
                "change": change,
                "prompt_text_a": None,
                "prompt_text_b": None,
                "tool_a": a.name if a else None,
                "tool_b": b.name if b else None,
                "args_a": a.args if a else None,
                "args_b": b.args if b else None,
                "status_a": a.status if a else None,
                "status_b": b.status if b else None,
                "text_a": a.result if a else None,
                "text_b": b.result if b else None,
                "what_changed": what,
            }
        )
    return rows


def _what_changed(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    """The names of the fields that differ, comma-separated (None when none do)."""
    return ", ".join(k for k in a if a[k] != b[k]) or None


def _diff_rows(ps_a: list[Prompt], ps_b: list[Prompt]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for i, j, _op in _pairs([p.text for p in ps_a], [p.text for p in ps_b]):
        pa = ps_a[i] if i is not None else None
        pb = ps_b[j] if j is not None else None
        tools = _tool_rows(pa, pb)
        what = None
        if pa is None:
            change = "only_b"
        elif pb is None:
            change = "only_a"
        else:
            what = _what_changed(
                {"prompt": pa.text, "status": pa.status, "answer": pa.answer, "tools": 0},
                {
                    "prompt": pb.text,
                    "status": pb.status,
                    "answer": pb.answer,
                    "tools": int(any(t["change"] != "same" for t in tools)),
                },
            )
            change = "changed" if what else "same"
        rows.append(
            {
                "prompt_a": pa.number if pa else None,
                "prompt_b": pb.number if pb else None,
                "kind": "prompt",
                "change": change,
                "prompt_text_a": pa.text if pa else None,
                "prompt_text_b": pb.text if pb else None,
                "tool_a": None,
                "tool_b": None,
                "args_a": None,
                "args_b": None,
                "status_a": pa.status if pa else None,
                "status_b": pb.status if pb else None,
                "text_a": pa.answer if pa else None,
                "text_b": pb.answer if pb else None,
                "what_changed": what,
            }
        )
        rows += tools
    return rows


def _summary(bundle: SessionBundle, ps: list[Prompt]) -> dict[str, Any]:
    runs = _ordered_runs(bundle)
    tools = [t for p in ps for t in p.tools]
    tokens = runs_total_tokens(runs)
    duration = sum(max(0, r.snapshot.updated_at_ms - r.snapshot.created_at_ms) for r in runs)
    verdict = None
    if bundle.verification:
        verdict = "passed" if all(v.status == "passed" for v in bundle.verification) else "failed"
    required = [c for v in bundle.verification for c in v.checks if c.required]
    return {
        "session_id": bundle.session.id,
        "model": bundle.session.model_name,
        "prompts": len(ps),
        "runs": len(runs),
        "runs_completed": sum(r.snapshot.status == "completed" for r in runs),
        "runs_failed": sum(r.snapshot.status == "failed" for r in runs),
        "tool_calls": len(tools),
        "tool_errors": sum(t.ok is False for t in tools),
        "tokens": tokens,
        "duration_ms": duration,
        "final_status": runs[-1].snapshot.status if runs else None,
        "verification": verdict,
        "required_checks_passed": sum(c.status == "passed" for c in required),
        "required_checks_failed": sum(c.status == "failed" for c in required),
    }


def _difference(a: Any, b: Any) -> Any:
    if a == b:
        return None
    if isinstance(a, int) and isinstance(b, int) and not isinstance(a, bool):
        return b - a
    return f"{a} \u2192 {b}"


#: How a session's workspace path is written in a diff's texts and arguments.
WORKSPACE = "<workspace>"


def _without_workspace(ps: list[Prompt], workspaces: Sequence[str | None]) -> list[Prompt]:
    """The prompts with the workspace paths written as ``<workspace>``, so that two
    sessions working in different folders compare equal where they did the same."""
    folders = sorted({w.rstrip("/") for w in workspaces if w and len(w.rstrip("/")) > 1}, key=len)
    # longest first; each as text, and as escaped inside JSON arguments
    variants = [v for w in reversed(folders) for v in (w, json.dumps(w)[1:-1])]
    if not variants:
        return ps

    def clean(text: str) -> str:
        for v in variants:
            text = text.replace(v, WORKSPACE)
        return text

    for p in ps:
        p.answer = clean(p.answer)
        for t in p.tools:
            t.args, t.result = clean(t.args), clean(t.result)
    return ps


def diff(a: Any, b: Any, *, store: Any = None, store_b: Any = None) -> pd.DataFrame:
    """Two sessions side by side, aligned prompt by prompt and tool call by tool call.

    ``a`` and ``b`` are session ids (``a`` in ``store``, ``b`` in ``store_b``, default
    ``store``), saved sessions, ``SessionBundle`` objects or live sessions. Prompts are
    aligned on their text and, inside two aligned prompts, tool calls on their name and
    arguments (difflib), so an inserted call is one ``only_b`` row, not a shift of every
    later row. One row per aligned prompt (``kind == "prompt"``), followed by its tool
    calls (``kind == "tool"``); ``change`` is ``same``, ``changed``, ``only_a`` or
    ``only_b``, and ``what_changed`` names what differs in a ``changed`` row: ``tool``,
    ``args``, ``status``, ``output`` for a tool call (an edited tool result of a what-if
    fork is ``output``), ``prompt``, ``status``, ``answer``, ``tools`` for a prompt. The two sessions' workspace paths are written ``<workspace>`` in the texts
    and arguments, so sessions in different folders (a replay, a fork with its own copy)
    compare equal where they did the same thing.

    ``df.attrs["summary"]`` compares the two sessions (prompts, runs, tool calls, tool
    errors, tokens, duration, final status, verification, and the difference); the same
    as a frame: :func:`diff_summary`.

    >>> a3s_nb.diff("fix-1", "fix-1-fork-1").query("change != 'same'")   # doctest: +SKIP
    """
    import pandas as pd

    ba = _load(a, store)[0]
    bb = _load(b, store_b if store_b is not None else store)[0]
    # both folders on both sides: a fork's early prompts ran in its parent's folder
    folders = [ba.session.config.workspace, bb.session.config.workspace]
    ps_a = _without_workspace(_prompts(ba), folders)
    ps_b = _without_workspace(_prompts(bb), folders)
    rows = _diff_rows(ps_a, ps_b)
    df = pd.DataFrame(rows, columns=DIFF_COLUMNS)
    for col in ("prompt_a", "prompt_b"):
        df[col] = pd.array(df[col].tolist(), dtype="Int64")
    for col in DIFF_COLUMNS:
        if col not in ("prompt_a", "prompt_b"):
            df[col] = df[col].astype("string")
    df["kind"] = df["kind"].astype(pd.CategoricalDtype(["prompt", "tool"]))
    df["change"] = df["change"].astype(pd.CategoricalDtype(list(CHANGES)))
    sa, sb = _summary(ba, ps_a), _summary(bb, ps_b)
    df.attrs["a"] = ba.session.id
    df.attrs["b"] = bb.session.id
    df.attrs["summary"] = [
        {"metric": k, "a": sa[k], "b": sb[k], "difference": _difference(sa[k], sb[k])} for k in sa
    ]
    return df


def diff_summary(df_or_a: Any, b: Any = None, **kwargs: Any) -> pd.DataFrame:
    """The per-session summary of a diff as a frame: one row per metric, columns ``a``,
    ``b`` and ``difference``. Give a :func:`diff` frame, or the two sessions."""
    import pandas as pd

    df = df_or_a if b is None else diff(df_or_a, b, **kwargs)
    out = pd.DataFrame(df.attrs["summary"]).set_index("metric")
    out.columns = (
        [df.attrs["a"], df.attrs["b"], "difference"]
        if df.attrs["a"] != df.attrs["b"]
        else ["a", "b", "difference"]
    )
    return out


# =============================================================================== replay


@dataclass
class ReplayResult:
    """What :func:`replay` made: the new session, its comparison with the source, and the
    regressions that ``a3s-nb replay`` turns into its exit code."""

    session_id: str
    source_id: str
    model: str | None
    workspace: str
    session: Any  # the live replay session
    diff: pd.DataFrame
    regressions: list[str]
    tools: str = "ran again"
    #: each check given (``verify``): id, command, status, required, exit_code
    checks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.regressions

    def __str__(self) -> str:
        s = self.diff.attrs["summary"]
        get = {r["metric"]: r for r in s}
        line = (
            f"replayed {self.source_id} on {self.model or 'the agent default model'} as "
            f"{self.session_id}: {get['prompts']['b']} prompts, "
            f"{get['runs_completed']['b']} of {get['runs']['b']} runs completed "
            f"(source: {get['runs_completed']['a']} of {get['runs']['a']}); tool calls "
            f"{get['tool_calls']['a']} -> {get['tool_calls']['b']}, tool errors "
            f"{get['tool_errors']['a']} -> {get['tool_errors']['b']}; tools ran again"
        )
        if self.checks:
            line += "\nCHECKS:"
            for c in self.checks:
                line += f"\n  {c['status']:6}  {c['id']}: {c['command']}"
                notes = [f"exit code {c['exit_code']}"] if c["status"] != "passed" else []
                notes += [] if c["required"] else ["not required"]
                line += f" ({'; '.join(notes)})" if notes else ""
        if self.regressions:
            line += "\nREGRESSIONS:\n" + "\n".join(f"  {r}" for r in self.regressions)
        return line

    def __repr__(self) -> str:
        return (
            f"ReplayResult({self.source_id!r} -> {self.session_id!r}, model={self.model!r}, "
            f"regressions={len(self.regressions)})"
        )


def regressions(source: SessionBundle, replayed: SessionBundle) -> list[str]:
    """What got worse from ``source`` to ``replayed``: a prompt whose run completed and now
    does not, and a required verification check that passed and now does not."""
    out = []
    ps_a, ps_b = _prompts(source), _prompts(replayed)
    for pa, pb in zip(ps_a, ps_b, strict=False):
        if pa.status == "completed" and pb.status != "completed":
            out.append(
                f"prompt {pa.number} ({_short(pa.text)}): run completed in the source, "
                f"{pb.status or 'no run'} in the replay"
            )
    for pa in ps_a[len(ps_b) :]:
        if pa.status == "completed":
            out.append(f"prompt {pa.number} ({_short(pa.text)}): not replayed")
    passed = {
        (v.subject, c.id)
        for v in source.verification
        for c in v.checks
        if c.required and c.status == "passed"
    }
    now = {(v.subject, c.id): c.status for v in replayed.verification for c in v.checks}
    for key in sorted(passed):
        if now.get(key) != "passed":
            out.append(
                f"required check {key[1]!r} of {key[0]!r}: passed in the source, "
                f"{now.get(key, 'not run')} in the replay"
            )
    return out


def _short(text: str, limit: int = 50) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def replay(
    source: Any,
    agent: Any,
    *,
    model: str | None = None,
    new_id: str | None = None,
    workspace: str | os.PathLike[str] | None = None,
    store: Any = None,
    source_store: Any = None,
    verify: Sequence[dict[str, Any]] | None = None,
    verify_subject: str = "checks",
) -> ReplayResult:
    """Send the user prompts of ``source``, in order, to a fresh session on ``model``.

    The replay works in a copy of the source's workspace (``workspace``: where to put the
    copy; default ``<store>/.a3s_nb/workspaces/<new id>/``, kept with the session so that
    it can be resumed later; a replay that fails removes it), so the source's files are not
    touched; the copy is the folder as it is now (a3s-code keeps no snapshots). Tool calls
    really run again: a3s-code 3.1 cannot serve tool results from a recording (its
    ``pre_tool_use`` hooks can block or let a call through, not answer it). The replay is
    saved in ``store`` with lineage "replay of <source> on <model>" and compared with the
    source (:func:`diff`). ``verify`` runs checks at the end, as :func:`record_checks` does:
    a3s-code does not save the commands behind a verification report, so a replay cannot
    re-run the source's checks by itself; give the same ids and ``verify_subject`` as the
    source's report to compare with it. A required check given here that fails is a
    regression, whether or not the source recorded it; ``result.checks`` (and ``str()``)
    has every check's command and result.

    A prompt whose run fails does not stop the replay; it shows in
    ``result.regressions`` when it completed in the source.

    >>> r = a3s_nb.replay("fix-1", agent, model="openai/gpt-4o")   # doctest: +SKIP
    >>> r.diff.query("change != 'same'")                          # doctest: +SKIP
    """
    st = _open_for_write(store)
    if not isinstance(st, FileStore):
        raise ForkError(f"a3s-code runs sessions in a directory store only, not {st}")
    src_store = _open(source_store) if source_store is not None else st
    bundle, _came_from, _live = _load(source, src_store)
    ps = _prompts(bundle)
    if not ps:
        raise ForkError(f"session {bundle.session.id} has no prompts to replay")
    if model is not None:
        provider, sep, mid = model.partition("/")
        if not sep or not provider or not mid:
            raise ForkError(f"model {model!r} is not 'provider/model'")
    if new_id is not None:
        validate_session_id(new_id)
        if st.exists(new_id):
            raise SessionExistsError(
                f"session {new_id!r} already exists in store {st}: choose another id"
            )
    sid = new_id or _free_id(st, bundle.session.id, "replay")
    src_ws = bundle.session.config.workspace
    if workspace is None:
        ws = _store_workspace(st, sid)
        made = True
    else:
        ws = Path(workspace).expanduser().absolute()
        if ws.exists() and (not ws.is_dir() or any(ws.iterdir())):
            raise ForkError(f"workspace {ws} exists and is not empty: give a new directory")
        made = not os.path.lexists(ws)
    session = None
    try:
        if Path(src_ws).is_dir():
            ws = _copy_workspace(src_ws, ws)
        else:  # the source ran on another machine: start from an empty folder
            if ws.exists() and any(ws.iterdir()):
                raise ForkError(f"workspace {ws} exists and is not empty: give a new directory")
            ws.mkdir(parents=True, exist_ok=True)
        fields = {"model": model} if model else {}
        session = open_session(agent, ws, store_dir=st.path, session_id=sid, **fields)
        for p in ps:
            # a failed run raises; it is recorded in the session's runs: go on
            with contextlib.suppress(Exception):
                session.send(p.text)
        checked = _record_checks(session, verify, subject=verify_subject)[1] if verify else []
        now = time.time()
        result_model = model or _session_model(bundle, session)
        record = {
            "schema": LINEAGE_SCHEMA,
            "session_id": sid,
            "kind": "replay",
            "parent_id": bundle.session.id,
            "parent_store": None if _same(src_store, st) or src_store is st else str(src_store),
            "at_prompt": len(ps),
            "of_prompts": len(ps),
            "created_at": _now_iso(now),
            "model": result_model,
            "tools": "ran again",
            "workspace": str(ws),
        }
        write_lineage(st, record)
        try:
            api.save(session, store=st, model=result_model)
        except BaseException:
            remove_lineage(st, sid)
            raise
    except BaseException:  # nothing saved: the workspace goes too
        if session is not None:
            with contextlib.suppress(Exception):
                session.close()
        _discard_workspace(ws, made)
        raise
    replayed = st.load(sid)
    df = diff(bundle, replayed)
    return ReplayResult(
        session_id=sid,
        source_id=bundle.session.id,
        model=result_model,
        workspace=str(ws),
        session=session,
        diff=df,
        regressions=_failed_checks(regressions(bundle, replayed), bundle, checked, verify_subject),
        checks=checked,
    )


def _failed_checks(
    found: list[str], source: SessionBundle, checked: list[dict[str, Any]], subject: str
) -> list[str]:
    """``found`` (see :func:`regressions`) and every required check given that failed,
    once: one the source passed is already there."""
    out = list(found)
    recorded = {c.id for v in source.verification if v.subject == subject for c in v.checks}
    for c in checked:
        head = f"required check {c['id']!r} of {subject!r}:"
        if not c["required"] or c["status"] == "passed" or any(r.startswith(head) for r in out):
            continue
        why = "" if c["id"] in recorded else "; the source recorded no such check"
        out.append(
            f"{head} `{c['command']}` failed in the replay (exit code {c['exit_code']}{why})"
        )
    return out


def record_checks(
    session: Any, checks: Sequence[dict[str, Any]], *, subject: str = "checks"
) -> dict[str, Any]:
    """Run shell checks in a live session's workspace and record them as a verification
    report; returns the report.

    Each check is ``{"id", "command"}`` with optional ``"description"``, ``"kind"``
    (default ``"command"``) and ``"required"`` (default True). The commands run through
    the session's ``bash`` tool (so they are traced like ``verify_commands`` checks); a
    check passes when its command exits 0. Unlike ``verify_commands``, the checks can be
    *required*, which is what :func:`replay` and ``a3s-nb replay`` compare.

    >>> a3s_nb.lab.record_checks(session, [{"id": "tests", "command": "pytest -q"}])  # doctest: +SKIP
    """
    return _record_checks(session, checks, subject=subject)[0]


def _record_checks(
    session: Any, checks: Sequence[dict[str, Any]], *, subject: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """:func:`record_checks`: the report, and each check's id, command, status, required
    and exit code."""
    out = []
    results = []
    for check in checks:
        if not check.get("id") or not check.get("command"):
            raise ForkError(f"a check is {{'id': ..., 'command': ...}}, not {dict(check)!r}")
        result = session.tool("bash", {"command": str(check["command"])})
        meta = getattr(result, "metadata", None) or {}
        code = meta.get("exit_code", result.exit_code) if isinstance(meta, dict) else 1
        item = {
            "id": str(check["id"]),
            "kind": str(check.get("kind") or "command"),
            "description": str(check.get("description") or check["command"]),
            "status": "passed" if code == 0 else "failed",
            "required": bool(check.get("required", True)),
            "suggested_tools": ["bash"],
        }
        if code != 0:
            item["residual_risk"] = f"`{check['command']}` exited with code {code}"
        out.append(item)
        results.append(
            {
                "id": item["id"],
                "command": str(check["command"]),
                "status": item["status"],
                "required": item["required"],
                "exit_code": code,
            }
        )
    report = {
        "schema": "a3s.verification_report.v1",
        "subject": subject,
        "status": "passed" if all(c["status"] == "passed" for c in out) else "failed",
        "checks": out,
    }
    session.record_verification_reports([report])
    return report, results


def _session_model(bundle: SessionBundle, session: Any) -> str | None:
    return session_model(session) or bundle.session.model_name
