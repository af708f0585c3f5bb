"""Building frames: which files to read, filters, the sessions index and the frame cache,
and the one pass over the files that feeds every builder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import logging
from collections.abc import Iterable, Iterator
from typing import Any

import pandas as pd

from . import _columns, _walk, schema
from ._builders import (
    _BUILDERS,
    _EventsBuilder,
    _MessagesBuilder,
    _RunsBuilder,
    _SessionsBuilder,
    _SpansBuilder,
    _TracesBuilder,
    _VerificationBuilder,
)
from ._columns import _with_attrs
from ._loadcheck import LoadCheck, stems_of
from ._runfile import Run, Runs, runs_of
from ._sources import (
    _PARTS,
    _RUN_FRAMES,
    _SESSION_FRAMES,
    _open_source,
    _resolve_ids,
    _StoreSource,
)
from ._walk import (
    _S_CREATED,
    _S_FIRST_RUN,
    _S_LAST_RUN,
    _S_UPDATED,
    _SESSION_COLS,
    _file_of,
    _lineage_values,
    _run_stats,
    _RunStats,
    _session_model,
    _str,
    _summary_row,
    _where,
)
from ._warn import warn
from .cost import price_table
from .errors import CorruptFileError, CorruptSessionWarning
from .store import FileStore, sdk_safe_id

FRAME_NAMES = schema.FRAME_NAMES
log = logging.getLogger("a3s_nb.frames")

#: Bump when the way a ``sessions`` row is computed changes: the index is then rebuilt.
SUMMARY_VERSION = 2


# ============================================================================ filters


class _Filters:
    def __init__(self, since: Any, until: Any, status: Any):
        self.since = _to_ms(since, ceil=True)
        self.until = _to_ms(until, ceil=True)
        if status is None:
            self.status = None
        elif isinstance(status, str):
            self.status = frozenset({status})
        else:
            self.status = frozenset(status)

    @property
    def by_time(self) -> bool:
        return self.since is not None or self.until is not None

    @property
    def any(self) -> bool:
        return self.by_time or self.status is not None

    def run_ok(self, status: Any, created_ms: Any) -> bool:
        if self.status is not None and status not in self.status:
            return False
        if self.by_time:
            if not isinstance(created_ms, int):
                return False
            if self.since is not None and created_ms < self.since:
                return False
            if self.until is not None and created_ms >= self.until:
                return False
        return True

    def session_ok(self, row: list[Any], statuses: Iterable[str]) -> bool:
        if self.status is not None and not self.status.intersection(statuses):
            return False
        if self.by_time:
            starts = [v for v in (row[_S_CREATED], row[_S_FIRST_RUN]) if isinstance(v, int)]
            ends = [v for v in (row[_S_UPDATED], row[_S_LAST_RUN]) if isinstance(v, int)]
            if not starts or not ends:
                return False
            if self.since is not None and max(ends) < self.since:
                return False
            if self.until is not None and min(starts) >= self.until:
                return False
        return True


def _to_ms(value: Any, *, ceil: bool) -> int | None:
    if value is None:
        return None
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    delta = ts - pd.Timestamp(0, tz="UTC")
    one = pd.Timedelta(milliseconds=1)
    return -(-delta // one) if ceil else delta // one


# ============================================================================ engine


def _progress(
    items: Iterable, progress: bool | None, desc: str, total: int | None = None
) -> Iterable:
    if total is None:
        total = len(items)  # type: ignore[arg-type]
    if progress is None:
        from . import frames  # the public setting, read when it is needed

        show = total > frames.PROGRESS_THRESHOLD
    else:
        show = bool(progress)
    if not show:
        return items
    try:
        from tqdm.auto import tqdm
    except ImportError:  # the bar is a nicety; say once how to get it
        warn("progress bars need tqdm: pip install tqdm", RuntimeWarning)
        return items
    return tqdm(items, desc=desc, unit="session", total=total)


def _report(errors: list[dict], session_id: str, err: CorruptFileError) -> None:
    errors.append({"session_id": session_id, "path": err.path, "problem": err.problem})
    warn(f"skipped session {session_id!r}: {err}", CorruptSessionWarning)


def _index_summaries(
    source: _StoreSource,
    stems: set[str] | None,
    progress: bool | None,
    errors: list[dict],
    skip: set[str] = frozenset(),  # type: ignore[assignment]
    scanned: dict[str, dict[str, list[int]]] | None = None,
    state: dict[str, Any] | None = None,
) -> list[tuple[list, list[str]]]:
    """``sessions`` rows of a directory store, from its index (recomputing stale rows).
    ``scanned``: the store's files as the load check scanned them (else scanned here);
    ``state`` receives the index file the rows all came from (``SessionIndex.sig``)."""
    from .index import SessionIndex

    def compute(stem: str) -> tuple[list, list[str]] | None:
        return _walk._summarize(source, stem)

    index = SessionIndex(
        source.store,
        # costs are cached with the rows: a new price table recomputes them
        key=f"{schema.SCHEMA_VERSION}.{SUMMARY_VERSION}.{price_table()}",
        columns=_SESSION_COLS,
    )
    entries = index.refresh(
        compute,
        stems=stems,
        progress=lambda items: _progress(items, progress, "sessions"),
        current=scanned,
    )
    if state is not None:
        state["sig"] = index.sig
    out = []
    for stem, entry in sorted(entries.items()):
        if stem in skip:  # rejected by load(), already reported
            continue
        if entry.get("error") is not None:
            err = entry["error"]
            _report(errors, stem, CorruptFileError(err["path"], err["problem"]))
            continue
        out.append((entry["row"], entry["statuses"]))
    return out


def _whole_sessions(src: Any, sel: _Selection, progress: bool | None) -> pd.DataFrame:
    """The ``sessions`` frame of a whole directory store: remembered while the store's
    files, its listing and its index are as they were (``index.RememberedFrame``), else
    built from the index, like ``_index_rows`` + ``_sessions_from_index`` do."""
    from ._cachefile import digest
    from .index import RememberedFrame

    remembered = inputs = None
    if _columns.pa is not None and sel.check is not None and sel.check.digest:
        assert sel.known is not None
        # the store's files (all of them, as scanned), the sessions listed and rejected
        inputs = digest([sel.check.digest, sel.known, sorted(sel.rejected)])
        remembered = RememberedFrame(src.store, f"{_cache_key()}.{SUMMARY_VERSION}")
        table = remembered.load(inputs)
        if table is not None:
            from ._framecache import _fix_categories, _types_mapper

            df = table.to_pandas(types_mapper=_types_mapper(_columns.pa))
            return _with_attrs("sessions", _fix_categories(df, "sessions"), sel.errors)
    reported = len(sel.errors)
    state: dict[str, Any] = {}
    summaries = _index_summaries(
        src,
        None if sel.known is None else set(stems_of(sel.known)),
        progress,
        sel.errors,
        skip={sdk_safe_id(i) for i in sel.rejected},
        scanned=sel.check.scanned if sel.check is not None and sel.check.scanned else None,
        state=state,
    )
    keep = {row[0] for row, _statuses in summaries if row[0] not in sel.rejected}
    frame = _sessions_from_index(src, summaries, keep, sel.errors)
    clean = len(sel.errors) == reported == len(frame.attrs["errors"])  # nothing new to say
    if remembered is not None and inputs is not None and state.get("sig") and clean:
        table = _columns.pa.Table.from_pandas(frame, preserve_index=False)
        remembered.save(inputs, state["sig"], table)
    return frame


@functools.cache
def _cache_key() -> str:
    """What the cached frames depend on besides the files: the code that builds them and
    the price table (worked out once per process, as the load check's models key is)."""
    import hashlib

    from . import __version__, _loadcheck, cost

    h = hashlib.sha1(f"{__version__}.{schema.SCHEMA_VERSION}.{price_table()}".encode())
    h.update(_loadcheck._models_key().encode())
    for path in (__file__, schema.__file__, cost.__file__):
        with contextlib.suppress(OSError, TypeError), open(path or "", "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def _cached_frames(
    src: _StoreSource,
    wanted: list[str],
    check: LoadCheck,
    known: list[str],
    rejected: dict[str, CorruptFileError],
    errors: list[dict],
    progress: bool | None,
    workers: int = 1,
) -> dict[str, pd.DataFrame]:
    """Unfiltered frames of a directory store through the columnar cache (_framecache)."""
    from ._framecache import FrameCache

    assert isinstance(src.store, FileStore)
    good = sorted(known)

    def build(ids: list[str], names: list[str]) -> dict[str, pd.DataFrame]:
        return _collect_frames(
            src.store,
            names,
            ids=ids,
            since=None,
            until=None,
            status=None,
            progress=progress,
            cache=False,
            prechecked=(check, known, {}, []),
            workers=workers,
        )

    rest = [name for name in wanted if name != "sessions"]
    try:
        built, notes = FrameCache(src.store, _cache_key()).frames(rest, check, good, build)
    except (_columns.pa.ArrowException, OSError, ValueError, TypeError, KeyError) as e:
        # a cache that cannot be used is never trusted: build from the files
        log.info("frame cache of %s not used: %r", src.store, e)
        built = build(good, rest)
        notes = {name: built[name].attrs.get("errors", []) for name in rest}
    out: dict[str, pd.DataFrame] = {}
    for name in wanted:
        if name == "sessions":
            out[name] = _collect_frames(
                src.store,
                ["sessions"],
                ids=None,
                since=None,
                until=None,
                status=None,
                progress=progress,
                cache=False,
                prechecked=(check, known, rejected, errors),
            )["sessions"]
        else:
            out[name] = _with_attrs(name, built[name], [*errors, *notes[name]])
    return out


def _empty_frame(name: str) -> pd.DataFrame:
    """A frame without rows, with its columns and dtypes."""
    builder = _VerificationBuilder(None) if name == "verification" else _BUILDERS[name]()
    return builder.frame_df([])


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a frame is built.

    Parsing creates millions of short-lived dicts, and every collection would also walk
    the ever longer column lists; building creates no reference cycles, so there is
    nothing for the collector to find. Its previous state is restored.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _collect(
    source: Any,
    frames: Iterable[str],
    **kwargs: Any,
) -> dict[str, pd.DataFrame]:
    with _gc_paused():
        return _collect_frames(source, frames, **kwargs)


def _collect_frames(
    source: Any,
    frames: Iterable[str],
    *,
    ids: Any,
    since: Any,
    until: Any,
    status: Any,
    progress: bool | None,
    cache: bool = True,
    prechecked: tuple | None = None,
    workers: int | None = None,
) -> dict[str, pd.DataFrame]:
    """The wanted frames of ``source``: what every frame function comes down to.

    ``cache=False`` builds from the files; ``prechecked`` is ``(check, known, rejected,
    errors)`` when the caller already ran the load check on this same store (see
    _cached_frames).
    """
    wanted = _wanted_frames(frames)
    src = _open_source(source)
    filters = _Filters(since, until, status)
    sel = _select_sessions(src, ids, progress, prechecked)
    if cache and _cache_serves(src, wanted, ids, filters):
        assert sel.check is not None and sel.known is not None
        return _cached_frames(
            src, wanted, sel.check, sel.known, sel.rejected, sel.errors, progress, workers or 1
        )
    plan = _Plan.make(wanted, filters)
    if _index_serves(src, plan):
        if plan.only_sessions and ids is None and not filters.any:
            return {"sessions": _whole_sessions(src, sel, progress)}
        summaries, keep = _index_rows(src, sel, ids, filters, progress)
        if plan.only_sessions:
            return {"sessions": _sessions_from_index(src, summaries, keep, sel.errors)}
        # the index applied the session filters: the pass reads only the sessions kept
        order = sel.selected if sel.selected is not None else sorted(keep)
        selected = [i for i in order if i in keep]
        plan = dataclasses.replace(plan, session_filtered=False)
    elif sel.selected is not None:
        selected = sel.selected
    else:
        selected = sorted(sel.known if sel.known is not None else src.ids())
    if workers is not None and workers > 1:  # the same build, split among processes
        from . import _parallel

        if src.cached and _parallel.usable(src.store, selected):
            return _parallel.build(
                src.store,
                wanted,
                selected,
                workers=workers,
                errors=sel.errors,
                since=since,
                until=until,
                status=filters.status,
                progress=progress,
            )
    return _build_frames(src, selected, plan, sel.errors, progress)


def _wanted_frames(frames: Iterable[str]) -> list[str]:
    """The frame names asked for, once each, in order; ValueError for an unknown one."""
    wanted = list(dict.fromkeys(frames))
    for name in wanted:
        if name not in schema.FRAMES:
            raise ValueError(f"unknown frame {name!r}; choose from {', '.join(FRAME_NAMES)}")
    return wanted


# ---------------------------------------------------------------------------- which sessions


@dataclasses.dataclass
class _Selection:
    """The sessions a build may read, after the load check."""

    check: LoadCheck | None  # None for sources that are not a store
    known: list[str] | None  # the store's sessions load() accepts; None: not listed
    selected: list[str] | None  # the requested ones (``ids``); None: all
    rejected: dict[str, CorruptFileError]  # left out of every frame ...
    errors: list[dict]  # ... and listed in attrs["errors"]


def _select_sessions(
    src: Any, ids: Any, progress: bool | None, prechecked: tuple | None
) -> _Selection:
    """Resolve ``ids`` and leave out the sessions that Store.load() rejects."""
    errors: list[dict] = []
    if prechecked is not None:  # by the caller, for this same store: see _cached_frames
        check, known, rejected, reported = prechecked
        errors.extend(reported)
    else:
        check = LoadCheck(src.store, cached=src.cached) if src.store is not None else None
        known = check.ids() if check is not None else None
        rejected = {}
    selected = None
    if ids is not None:
        known = known if known is not None else src.ids()
        selected = _resolve_ids(ids, known, src.label)
    if check is not None and prechecked is None:
        assert known is not None
        rejected = check.rejected(
            selected if selected is not None else known,
            progress=lambda items: _progress(items, progress, "checking sessions"),
        )
        check.save()
        for sid in sorted(rejected):
            _report(errors, sid, rejected[sid])
        if selected is not None:
            selected = [i for i in selected if i not in rejected]
        known = [i for i in known if i not in rejected]
    return _Selection(check, known, selected, rejected, errors)


def _cache_serves(src: Any, wanted: list[str], ids: Any, filters: _Filters) -> bool:
    """Whether the frame cache can serve: whole frames of a directory store."""
    return (
        isinstance(src.store, FileStore)
        and src.cached
        and _columns.pa is not None
        and ids is None
        and not filters.any
        and bool(set(wanted) - {"sessions"})
    )


# ---------------------------------------------------------------------------- the plan


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What the pass over the files does for the wanted frames."""

    wanted: tuple[str, ...]
    filters: _Filters
    #: sessions are kept or dropped by the session filters during the pass
    session_filtered: bool

    @classmethod
    def make(cls, wanted: Iterable[str], filters: _Filters) -> _Plan:
        wanted = tuple(wanted)
        return cls(wanted, filters, filters.any and bool(_SESSION_FRAMES.intersection(wanted)))

    @property
    def only_sessions(self) -> bool:
        return self.wanted == ("sessions",)

    @property
    def want_runs(self) -> bool:
        """Whether a frame with a row per run, event or span is wanted."""
        return bool(_RUN_FRAMES.intersection(self.wanted))

    @property
    def want_summary(self) -> bool:
        """Whether each session's ``sessions`` row is computed (for the frame or the filter)."""
        return "sessions" in self.wanted or self.session_filtered

    @property
    def need_stats(self) -> bool:
        """Whether the runs' statistics are counted (by the summary, `runs` or `spans`)."""
        return self.want_summary or "runs" in self.wanted or "spans" in self.wanted

    def parts(self) -> list[str]:
        """The files each session's pass reads, in a fixed order."""
        parts: set[str] = set()
        for name in self.wanted:
            parts |= _PARTS[name]
        if self.want_summary:
            parts |= _PARTS["sessions"]
        return [p for p in ("session", "runs", "traces", "verification") if p in parts]

    def builders(self, src: Any) -> dict[str, Any]:
        """A fresh builder for each wanted frame, naming the files its rows come from."""
        makers: dict[str, Any] = {
            "sessions": _SessionsBuilder,
            "messages": _MessagesBuilder,
            "traces": _TracesBuilder,
            "verification": lambda: _VerificationBuilder(self.filters.status),
            "runs": _RunsBuilder,
            "run_events": _EventsBuilder,
            "spans": _SpansBuilder,
        }
        builders = {name: make() for name, make in makers.items() if name in self.wanted}
        for name, builder in builders.items():
            builder.where = _file_of(src, name)
        return builders


# ---------------------------------------------------------------------------- the index path


def _index_serves(src: Any, plan: _Plan) -> bool:
    """Whether the sessions index answers which sessions to read (or is the whole answer)."""
    return (
        isinstance(src.store, FileStore)
        and src.cached
        and (plan.only_sessions or (plan.session_filtered and not plan.want_runs))
    )


def _index_rows(
    src: Any, sel: _Selection, ids: Any, filters: _Filters, progress: bool | None
) -> tuple[list[tuple[list, list[str]]], set[str]]:
    """The indexed ``sessions`` rows of the selected sessions, and the ids of those that
    load() accepts and the session filters keep."""
    base = sel.selected if sel.selected is not None else sel.known
    stems = None if base is None else set(stems_of(base))
    summaries = _index_summaries(
        src,
        stems,
        progress,
        sel.errors,
        skip={sdk_safe_id(i) for i in sel.rejected},
        scanned=sel.check.scanned if sel.check is not None and sel.check.scanned else None,
    )
    chosen = set(sel.selected) if sel.selected is not None else None
    keep = {
        row[0]
        for row, statuses in summaries
        if (chosen is None or row[0] in chosen)
        and row[0] not in sel.rejected
        and (not filters.any or filters.session_ok(row, statuses))
    }
    return summaries, keep


def _sessions_from_index(
    src: Any, summaries: list[tuple[list, list[str]]], keep: set[str], errors: list[dict]
) -> pd.DataFrame:
    """The ``sessions`` frame of the kept rows, without reading a session file."""
    builder = _SessionsBuilder()
    builder.where = _file_of(src, "sessions")
    for row, _ in summaries:
        if row[0] in keep:
            builder.add_row(row)
    return builder.frame_df(errors)


# ---------------------------------------------------------------------------- the pass


def _build_frames(
    src: Any, selected: list[str], plan: _Plan, errors: list[dict], progress: bool | None
) -> dict[str, pd.DataFrame]:
    """Read the files of the ``selected`` sessions once, feeding every builder of ``plan``."""
    builders = plan.builders(src)
    flushing = list(builders.values())
    reads = src.read_all(selected, plan.parts())
    for key, raw in _progress(reads, progress, "sessions", total=len(selected)):
        for builder in flushing:
            builder.maybe_flush()
        try:
            opened = _open_session(src, key, raw)
        except CorruptFileError as err:
            _report(errors, key, err)
            continue
        if opened is not None:
            sid, session, run_list = opened
            _feed_session(src, plan, builders, sid, session, run_list, raw)
    return {name: builders[name].frame_df(errors) for name in plan.wanted}


def _open_session(
    src: Any, key: str, raw: dict[str, Any] | CorruptFileError
) -> tuple[str, dict, Runs] | None:
    """``(session id, session object, runs)`` of one read; None when the session was
    deleted since it was listed; CorruptFileError when its session file is not an object."""
    if isinstance(raw, CorruptFileError):
        raise raw
    session = raw.get("session")
    if "session" in raw:
        if session is None:  # deleted since listed: nothing to report
            return None
        if not isinstance(session, dict):
            raise CorruptFileError(_where(src, key, "session"), "not a JSON object")
    session = session if isinstance(session, dict) else {}
    sid = _str(session.get("id")) or key
    return sid, session, runs_of(raw.get("runs"))


def _feed_session(
    src: Any,
    plan: _Plan,
    builders: dict[str, Any],
    sid: str,
    session: dict,
    run_list: Runs,
    raw: dict[str, Any],
) -> None:
    """Add one session's rows to the builders (none when the session filters drop it)."""
    stats = _feed_runs(plan, builders, sid, session, run_list)
    if plan.want_summary:
        row, statuses = _summary_row(
            sid,
            session,
            stats,
            raw.get("traces"),
            raw.get("verification"),
            _lineage_values(src, sid),
        )
        if plan.session_filtered and not plan.filters.session_ok(row, statuses):
            return
        if "sessions" in builders:
            builders["sessions"].add_row(row)
    if "messages" in builders:
        builders["messages"].add(sid, session)
    if "traces" in builders:
        builders["traces"].add(sid, raw.get("traces"))
    if "verification" in builders:
        builders["verification"].add(sid, raw.get("verification"))


def _feed_runs(
    plan: _Plan, builders: dict[str, Any], sid: str, session: dict, run_list: Runs
) -> list[_RunStats]:
    """Add a session's runs to ``runs``, ``run_events`` and ``spans`` (runs the run filters
    keep), and return every run's statistics when the plan needs them."""
    want_runs = plan.want_runs
    if not (plan.want_summary or want_runs):
        return []
    need_stats = plan.need_stats
    filters = plan.filters
    runs_b, events_b, spans_b = (
        builders.get("runs"),
        builders.get("run_events"),
        builders.get("spans"),
    )
    model = _session_model(session)
    stats: list[_RunStats] = []
    run: Run
    for r_index, run in enumerate(run_list):
        snap = run.snapshot
        run_id = snap.id
        keep_run = want_runs and filters.run_ok(snap.status, snap.created_at_ms)
        span_rows: list | None = [] if keep_run and spans_b is not None else None
        st: Any = None
        if need_stats:  # the one walk over the events for statistics (and spans)
            st = _run_stats(run, span_rows, run_id)
        if keep_run and events_b is not None:
            events_b.add(sid, run_id, run.events, run_list.encode)
        if need_stats:
            stats.append(st)
        if not keep_run:
            continue
        if runs_b is not None:
            runs_b.add(sid, r_index, run, st, model)
        if span_rows is not None:
            spans_b.add(sid, run_id, span_rows)
    return stats
