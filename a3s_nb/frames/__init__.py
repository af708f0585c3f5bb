"""pandas DataFrames over saved (or live) a3s-code sessions.

Seven frames, each documented column by column in ``docs/frames.md`` (generated from
``a3s_nb.frames.schema``, the single source of truth)::

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

The package: the public frame functions (here), the columns of every frame
(``schema.py``), the one pass over the files (``_engine.py``, ``_sources.py``,
``_walk.py``, ``_runfile.py``, ``_builders.py``, ``_columns.py``), the costs
(``cost.py``), the load check, index and frame cache kept in ``<store>/.a3s_nb/``
(``_loadcheck.py``, ``index.py``, ``_framecache.py``) and the build split among worker
processes (``_parallel.py``, ``_parallel_preload.py``). Importing it imports pandas.

May import from a3s_nb: ``sdk``, ``store`` and ``errors``, ``config``, ``_version``,
``_warn``, ``secrets``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from ..errors import CorruptSessionWarning
from ..store._v1layout import v1_name
from ..store.store import CACHE_FORGETTERS, FileStore, sdk_safe_id
from . import _columns, _framecache, _loadcheck, index
from ._engine import FRAME_NAMES, ShowAbove, _collect
from .schema import ENUMS

#: More sessions than this to read shows a progress bar (when ``progress`` is None).
PROGRESS_THRESHOLD = 200

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

# ============================================================================ public API

#: What ``source`` may be, for every frame function.
Source = Any  # str | os.PathLike | Store | SessionBundle | live session | list of those | None
Ids = str | Iterable[str] | None
Statuses = str | Iterable[str] | None


def _shown(progress: bool | None) -> bool | ShowAbove:
    """``progress`` as the engine takes it: None is a bar above ``PROGRESS_THRESHOLD``
    sessions, read at each call (so setting ``a3s_nb.frames.PROGRESS_THRESHOLD`` works)."""
    return ShowAbove(PROGRESS_THRESHOLD) if progress is None else progress


def _workers(workers: Any) -> tuple[int, Any]:
    """``workers`` checked, and the ``_parallel`` module when it is more than one: a call
    in this process does not import it (multiprocessing and all: about 20 ms of a new
    kernel's first call)."""
    if workers is None or (type(workers) is int and workers == 1):
        return 1, None
    from . import _parallel

    n = _parallel.check_workers(workers)
    return n, (_parallel if n > 1 else None)


def _one(
    name: str,
    source: Source,
    ids: Ids,
    since: Any,
    until: Any,
    status: Statuses,
    progress: bool | None,
    workers: int | None,
) -> pd.DataFrame:
    n, parallel = _workers(workers)
    return _collect(
        source,
        [name],
        ids=ids,
        since=since,
        until=until,
        status=status,
        progress=_shown(progress),
        workers=n,
        parallel=parallel,
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
    workers: int | None = None,
) -> dict[str, pd.DataFrame]:
    """Several frames (default: all seven) in one pass over the files.

    Each file is read and parsed once, so this is the way to get more than one frame of a
    large store. ``frames`` names the frames wanted; the other arguments mean for each
    frame what they mean for its own function (``status`` is a run status for ``runs``,
    ``run_events`` and ``spans``, a check status for ``verification``, and keeps sessions
    with such a run for the others). Each value of ``status`` must be one that every
    frame asked for takes (``FilterError`` otherwise): ask for ``verification`` on its own
    to filter it by a check status such as ``passed``.

    ``workers``: build in that many worker processes (None or 1: in this process), each
    reading a contiguous share of the sessions (and, on a store seen for the first time,
    checking which of them ``load()`` accepts); the frames are the same, row for row,
    ``attrs`` included. Worth it on a directory store of thousands of sessions with idle
    cores (the first such call in a kernel also starts a fork server); other sources
    are built in this process, and so is a build of fewer than 40 sessions (such as the
    frame cache refreshing a few changed ones). ``ParallelBuildError`` if a worker fails.

    >>> f = a3s_nb.all_frames("sessions")                      # doctest: +SKIP
    >>> f = a3s_nb.all_frames("sessions", workers=2)           # doctest: +SKIP
    >>> f["spans"].merge(f["runs"], on=["session_id", "run_id"])  # doctest: +SKIP
    """
    n, parallel = _workers(workers)
    return _collect(
        source,
        FRAME_NAMES if frames is None else frames,
        ids=ids,
        since=since,
        until=until,
        status=status,
        progress=_shown(progress),
        workers=n,
        parallel=parallel,
    )


_SOURCE_DOC = """
    ``source``: a store path, a ``Store``, a ``SessionBundle``, a live session (such as
    ``a3s_code.Session``), a list of bundles or live sessions, or None for the default store.
    ``ids``: session ids or unique prefixes. ``progress``: force the progress bar on or off
    (default: shown above ``PROGRESS_THRESHOLD`` sessions). ``workers``: build in that
    many worker processes (None or 1: in this one), as for ``all_frames``.

    A ``status`` the frame does not take, or a ``since`` / ``until`` that is not a date or
    time, raises ``FilterError`` (a ``ValueError``) naming the valid values.

    Columns: docs/frames.md (``a3s_nb.frames.schema``). ``df.attrs`` carries the frame name, the
    ``schema_version`` and ``errors``: the sessions
    left out because ``Store.load()`` rejects them, a file is unreadable or they were
    deleted while being read (each also warned as ``CorruptSessionWarning``), and values
    that did not fit a column.
"""


def sessions(
    source: Source = None,
    *,
    ids: Ids = None,
    since: Any = None,
    until: Any = None,
    status: Statuses = None,
    progress: bool | None = None,
    workers: int | None = None,
) -> pd.DataFrame:
    """One row per session, newest first: model, workspace, times, counts, tokens, cost.

    Served from an index in ``<store>/.a3s_nb/`` refreshed for files changed since the last
    call, so it stays cheap on a large store (``workers`` changes nothing here).

    ``status``: keep sessions that have at least one run with that run status (or one of
    them): {run_statuses}. ``since`` / ``until``: keep sessions whose activity, from ``min(created_at,
    first_run_at)`` to ``max(updated_at, last_run_at)``, overlaps ``[since, until)``.
    {source}
    >>> a3s_nb.sessions("sessions", status="failed")      # doctest: +SKIP
    """
    return _one("sessions", source, ids, since, until, status, progress, workers)


def messages(
    source: Source = None,
    *,
    ids: Ids = None,
    since: Any = None,
    until: Any = None,
    status: Statuses = None,
    progress: bool | None = None,
    workers: int | None = None,
) -> pd.DataFrame:
    """One row per content block of the saved transcripts (text, tool calls, tool results).

    Messages carry no run id or time, so the filters select whole sessions: ``status``
    keeps sessions with at least one run of that status ({run_statuses}); ``since`` / ``until`` keep
    sessions whose activity overlaps ``[since, until)`` (as for ``sessions``).
    {source}
    >>> a3s_nb.messages(session).query("block_type == 'tool_use'")      # doctest: +SKIP
    """
    return _one("messages", source, ids, since, until, status, progress, workers)


def traces(
    source: Source = None,
    *,
    ids: Ids = None,
    since: Any = None,
    until: Any = None,
    status: Statuses = None,
    progress: bool | None = None,
    workers: int | None = None,
) -> pd.DataFrame:
    """One row per trace event: every tool execution the SDK recorded.

    Trace events carry no run id or time, so the filters select whole sessions: ``status``
    keeps sessions with at least one run of that status ({run_statuses}); ``since`` / ``until`` keep
    sessions whose activity overlaps ``[since, until)``.
    {source}
    >>> a3s_nb.traces("sessions").groupby("tool_name").duration_ms.describe()  # doctest: +SKIP
    """
    return _one("traces", source, ids, since, until, status, progress, workers)


def runs(
    source: Source = None,
    *,
    ids: Ids = None,
    since: Any = None,
    until: Any = None,
    status: Statuses = None,
    progress: bool | None = None,
    workers: int | None = None,
) -> pd.DataFrame:
    """One row per run record: status, prompt, outcome, times, turns, tool calls, tokens.

    ``status``: keep runs with that run status ({run_statuses}; a list keeps any of
    them). ``since`` / ``until``: keep runs created in ``[since, until)``.
    {source}
    >>> a3s_nb.runs("sessions", since="2026-01-01", status="failed")   # doctest: +SKIP
    """
    return _one("runs", source, ids, since, until, status, progress, workers)


def run_events(
    source: Source = None,
    *,
    ids: Ids = None,
    since: Any = None,
    until: Any = None,
    status: Statuses = None,
    progress: bool | None = None,
    workers: int | None = None,
) -> pd.DataFrame:
    """One row per run event, with its type and common fields pulled out.

    Filters select whole runs, as for ``runs``: ``status`` is the run's status (not an
    event's: {run_statuses}), ``since`` / ``until`` bound the run's creation time.
    {source}
    >>> a3s_nb.run_events(session).event_type.value_counts()           # doctest: +SKIP
    """
    return _one("run_events", source, ids, since, until, status, progress, workers)


def spans(
    source: Source = None,
    *,
    ids: Ids = None,
    since: Any = None,
    until: Any = None,
    status: Statuses = None,
    progress: bool | None = None,
    workers: int | None = None,
) -> pd.DataFrame:
    """Run, planning, step, turn and tool spans with start, end, duration, status and parent.

    Filters select whole runs, as for ``runs``: ``status`` is the run's status
    ({run_statuses}; a span's own ``status`` column is ``ok`` / ``error`` / ``unset``), ``since`` / ``until`` bound
    the run's creation time.
    {source}
    >>> a3s_nb.spans("sessions").query("kind == 'tool'")               # doctest: +SKIP
    """
    return _one("spans", source, ids, since, until, status, progress, workers)


def verification(
    source: Source = None,
    *,
    ids: Ids = None,
    since: Any = None,
    until: Any = None,
    status: Statuses = None,
    progress: bool | None = None,
    workers: int | None = None,
) -> pd.DataFrame:
    """One row per verification check, with its report's subject and status.

    ``status``: keep checks with that check status ({check_statuses}), whatever their
    session's runs did; a run status is refused. ``since`` / ``until``: keep sessions whose activity
    overlaps ``[since, until)`` (reports carry no time of their own).
    {source}
    >>> a3s_nb.verification("sessions", status="failed")               # doctest: +SKIP
    """
    return _one("verification", source, ids, since, until, status, progress, workers)


def _values(enum: str) -> str:
    return ", ".join(f"``{v}``" for v in ENUMS[enum])


for _fn in (sessions, messages, traces, runs, run_events, spans, verification):
    _fn.__doc__ = (
        (_fn.__doc__ or "")
        .replace("{source}", _SOURCE_DOC.strip("\n") + "\n")
        .replace("{run_statuses}", _values("run_status"))
        .replace("{check_statuses}", _values("verification_status"))
    )
del _fn


def _forget_deleted(store: FileStore, session_id: str) -> None:
    """A deleted session's rows leave every cache the frames keep under ``.a3s_nb`` at once
    (``Store.delete`` calls this through ``CACHE_FORGETTERS``)."""
    from . import _searchindex  # sqlite3: imported when a session is deleted, not before

    stems = [sdk_safe_id(session_id), _loadcheck.V1_STEM + v1_name(session_id)]
    index.forget(store, stems)
    _searchindex.forget(store, stems)
    if _columns.pa is not None and (store.meta_dir / _framecache.CACHE_DIR).is_dir():
        _framecache.forget(store, [session_id])


CACHE_FORGETTERS.append(_forget_deleted)
