"""Building frames: which files to read, filters, the sessions index and the frame cache,
and the one pass over the files that feeds every builder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import gc
import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import pandas as pd

from .._warn import warn
from ..errors import CorruptFileError, CorruptSessionWarning, FilterError
from ..store._cachefile import digest
from ..store.store import FileStore
from . import _columns, _loadcheck, schema
from ._columns import _with_attrs
from ._framecache import FrameCache, to_frame
from ._loadcheck import LoadCheck, id_of_stem, stems_in, vanished
from ._sources import _PARTS, _RUN_FRAMES, _SESSION_FRAMES, _open_source, _resolve_ids, _StoreSource
from .cost import price_table
from .index import RememberedFrame, SessionIndex

if TYPE_CHECKING:
    from ._runfile import Run, Runs
    from ._walk import _RunStats

# The pass over the files (``_walk``, ``_builders`` and the typed run files of
# ``_runfile``, whose classes take a new kernel about 10 ms to make) is imported by the
# functions that build: a call served from the caches does not import it.

FRAME_NAMES = schema.FRAME_NAMES
log = logging.getLogger("a3s_nb.frames")

#: Bump when the way a ``sessions`` row is computed changes: the index is then rebuilt.
SUMMARY_VERSION = 2


# ============================================================================ filters


class _Filters:
    """The filters of one build. ``statuses`` (checked by :func:`_statuses`) are run
    statuses, kept in ``status`` for the runs and the sessions, except when only
    ``verification`` is wanted: then they are check statuses, in ``check_status``."""

    def __init__(
        self, since: Any, until: Any, statuses: frozenset[str] | None, wanted: Iterable[str]
    ):
        self.since = _to_ms(since, ceil=True, name="since")
        self.until = _to_ms(until, ceil=True, name="until")
        self.statuses = statuses
        checks = tuple(wanted) == ("verification",)
        self.status = None if checks else statuses
        self.check_status = statuses if checks else None

    @property
    def by_time(self) -> bool:
        return self.since is not None or self.until is not None

    @property
    def any(self) -> bool:
        return self.by_time or self.statuses is not None

    @property
    def by_session(self) -> bool:
        """Whether whole sessions may be dropped (a time window, a run status)."""
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
        from ._walk import _S_CREATED, _S_FIRST_RUN, _S_LAST_RUN, _S_UPDATED

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


def _statuses(status: Any, wanted: Iterable[str]) -> frozenset[str] | None:
    """``status`` (one or a list) as a set, each value one that every wanted frame's
    ``status`` filter takes (``schema.STATUS_FILTERS``); else FilterError naming them."""
    if status is None:
        return None
    try:
        values = frozenset({status} if isinstance(status, str) else status)
    except TypeError:
        raise FilterError(f"status={status!r} is not a status or a list of them") from None
    takers: dict[str, list[str]] = {}  # the kinds of status the wanted frames take
    for name in wanted:
        takers.setdefault(schema.STATUS_FILTERS[name], []).append(name)
    for value in sorted(values, key=repr):
        for kind, frames in takers.items():
            known = schema.ENUMS[kind]
            if value in known:
                continue
            label = "check" if kind == "verification_status" else "run"
            message = (
                f"status={value!r} is not a {label} status, and "
                f"{', '.join(f'{n}()' for n in frames)} "
                f"filter{'s' if len(frames) == 1 else ''} on {label} statuses: "
                f"{', '.join(known)}"
            )
            close = difflib.get_close_matches(str(value), known, n=1, cutoff=0.6)
            if close:
                message += f"; did you mean {close[0]!r}?"
            if len(takers) > 1:
                message += " (each frame's status filter takes its own values: ask for "
                message += "the frames of runs and verification in separate calls)"
            raise FilterError(message)
    return values


def to_utc(value: Any, name: str) -> pd.Timestamp:
    """``value`` (anything ``pandas.Timestamp`` takes; naive is UTC) as a UTC timestamp;
    FilterError, saying it is ``name``, when it is not a date or time."""
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as e:
        raise FilterError(f"{name}={value!r} is not a date or time: {e}") from None
    if ts is pd.NaT:
        raise FilterError(f"{name}={value!r} is not a date or time")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _to_ms(value: Any, *, ceil: bool, name: str) -> int | None:
    if value is None:
        return None
    ts = to_utc(value, name)
    delta = ts - pd.Timestamp(0, tz="UTC")
    one = pd.Timedelta(milliseconds=1)
    return -(-delta // one) if ceil else delta // one


# ============================================================================ engine


@dataclasses.dataclass(frozen=True)
class ShowAbove:
    """A ``progress`` that shows the bar when more than ``sessions`` sessions are read:
    what the frame functions pass for ``progress=None`` (``a3s_nb.frames.PROGRESS_THRESHOLD``)."""

    sessions: int


def _progress(
    items: Iterable, progress: bool | ShowAbove | None, desc: str, total: int | None = None
) -> Iterable:
    if total is None:
        total = len(items)  # type: ignore[arg-type]
    show = total > progress.sessions if isinstance(progress, ShowAbove) else bool(progress)
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


def _report_vanished(errors: list[dict], src: Any, session_id: str) -> None:
    """Report a session listed for this build but deleted before its files were read."""
    from ._walk import _where

    _report(errors, session_id, vanished(_where(src, session_id, "session")))


def _index_summaries(
    source: _StoreSource,
    ids: list[str] | None,
    progress: bool | None,
    errors: list[dict],
    skip: set[str] = frozenset(),  # type: ignore[assignment]
    scanned: dict[str, dict[str, list[int]]] | None = None,
    state: dict[str, Any] | None = None,
    computed: dict[str, tuple[list, list[str]]] | None = None,
) -> list[tuple[list, list[str]]]:
    """``sessions`` rows of the sessions ``ids`` (None: all) of a directory store, from its
    index (recomputing stale rows); a session of ``ids`` deleted meanwhile is reported.
    ``skip``: stems of sessions load() rejected (already reported). ``scanned``: the store's
    files as the load check scanned them (else scanned here); ``state`` receives the index
    file the rows all came from (``SessionIndex.sig``). ``computed``: rows by session id
    that a pass over the files made since that scan (see ``_cached_frames``), taken instead
    of reading those sessions' files again."""
    from . import _walk

    def compute(stem: str) -> tuple[list, list[str]] | None:
        sid = id_of_stem(stem)
        if computed:
            done = computed.pop(sid, None)
            if done is not None:
                return done
        return _walk._summarize(source, sid)

    index = SessionIndex(
        source.store,
        # the rows are computed by the frames' code, with costs from the price table: a
        # new one of either (the cache key holds both) recomputes them
        key=f"{_cache_key()}.{SUMMARY_VERSION}",
        columns=_walk._SESSION_COLS,
    )
    listed = None if ids is None else dict(zip(stems_in(source.store, ids), ids, strict=True))
    entries = index.refresh(
        compute,
        stems=None if listed is None else set(listed),
        progress=lambda items: _progress(items, progress, "sessions"),
        current=scanned,
    )
    if state is not None:
        state["sig"] = index.sig
    out = []
    for stem in sorted(entries.keys() | (listed or {}).keys()):
        if stem in skip:  # rejected by load(), already reported
            continue
        entry = entries.get(stem)
        if entry is None:  # listed, then deleted before its row was read
            assert listed is not None
            _report_vanished(errors, source, listed[stem])
            continue
        if entry.get("error") is not None:
            err = entry["error"]
            _report(errors, id_of_stem(stem), CorruptFileError(err["path"], err["problem"]))
            continue
        out.append((entry["row"], entry["statuses"]))
    return out


def _whole_sessions(
    src: Any,
    sel: _Selection,
    progress: bool | None,
    computed: dict[str, tuple[list, list[str]]] | None = None,
) -> pd.DataFrame:
    """The ``sessions`` frame of a whole directory store: remembered while the store's
    files, its listing and its index are as they were (``index.RememberedFrame``), else
    built from the index, like ``_index_rows`` + ``_sessions_from_index`` do."""
    remembered = inputs = None
    if _columns.pa is not None and sel.check is not None and sel.check.digest:
        assert sel.known is not None
        # the store's files (all of them, as scanned), the sessions listed and rejected
        inputs = digest([sel.check.digest, sel.known, sorted(sel.rejected)])
        remembered = RememberedFrame(src.store, f"{_cache_key()}.{SUMMARY_VERSION}")
        table = remembered.load(inputs)
        if table is not None:
            return _with_attrs("sessions", to_frame(table, "sessions"), sel.errors)
    reported = len(sel.errors)
    state: dict[str, Any] = {}
    summaries = _index_summaries(
        src,
        sel.known,
        progress,
        sel.errors,
        skip=set(stems_in(src.store, sorted(sel.rejected))),
        scanned=sel.check.scanned if sel.check is not None and sel.check.scanned else None,
        state=state,
        computed=computed,
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
    the price table (worked out once per process)."""
    import hashlib

    key = f"{schema.SCHEMA_VERSION}.{price_table()}.{_loadcheck.code_digest()}"
    return hashlib.sha1(key.encode()).hexdigest()


def _cached_frames(
    src: _StoreSource,
    wanted: list[str],
    check: LoadCheck,
    known: list[str],
    rejected: dict[str, CorruptFileError],
    errors: list[dict],
    progress: bool | None,
    workers: int = 1,
    parallel: Any = None,
) -> dict[str, pd.DataFrame]:
    """Unfiltered frames of a directory store through the columnar cache (_framecache)."""
    assert isinstance(src.store, FileStore)
    good = sorted(known)
    # the sessions rows of the sessions the pass reads, made in that same pass: the index
    # then need not read their files a second time
    summaries: dict[str, tuple[list, list[str]]] | None = {} if "sessions" in wanted else None

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
            exact_ids=True,
            parallel=parallel,
            rows_made=summaries,
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
                rows_made=summaries,
            )["sessions"]
        else:
            out[name] = _with_attrs(name, built[name], [*errors, *notes[name]])
    return out


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
    exact_ids: bool = False,
    parallel: Any = None,
    rows_made: dict[str, tuple[list, list[str]]] | None = None,
) -> dict[str, pd.DataFrame]:
    """The wanted frames of ``source``: what every frame function comes down to.

    ``cache=False`` builds from the files; ``prechecked`` is ``(check, known, rejected,
    errors)`` when the caller already ran the load check on this same store (see
    _cached_frames). ``exact_ids``: ``ids`` are ids the caller listed (an export's batch):
    each is read as it is, never as a prefix of another, and one no longer in the store
    is reported as deleted. ``workers`` > 1 splits the build among processes through
    ``parallel``, the ``_parallel`` module the frame functions pass (it runs this engine
    in each worker, so the engine does not import it). ``rows_made``: a build from the
    files (in this process) puts each session's ``sessions`` row there by session id, and
    the sessions index takes its rows from there (see _cached_frames).
    """
    wanted = _wanted_frames(frames)
    statuses = _statuses(status, wanted)
    if statuses is not None and "verification" in wanted and len(wanted) > 1:
        # a check status is not a run status: verification is built with its own filter
        ids = ids if ids is None or isinstance(ids, str) else list(ids)  # read twice
        kwargs = dict(ids=ids, since=since, until=until, status=statuses, progress=progress)
        kwargs.update(cache=cache, prechecked=prechecked, workers=workers, parallel=parallel)
        kwargs.update(exact_ids=exact_ids, rows_made=rows_made)
        rest = _collect_frames(source, [n for n in wanted if n != "verification"], **kwargs)
        built = {**rest, **_collect_frames(source, ["verification"], **kwargs)}
        return {name: built[name] for name in wanted}
    filters = _Filters(since, until, statuses, wanted)
    src = _open_source(source)
    sel = _select_sessions(src, ids, progress, prechecked, exact_ids, workers, parallel)
    if cache and _cache_serves(src, wanted, ids, filters):
        assert sel.check is not None and sel.known is not None
        return _cached_frames(
            src,
            wanted,
            sel.check,
            sel.known,
            sel.rejected,
            sel.errors,
            progress,
            workers or 1,
            parallel,
        )
    plan = _Plan.make(wanted, filters)
    if _index_serves(src, plan):
        if plan.only_sessions and ids is None and not filters.any:
            return {"sessions": _whole_sessions(src, sel, progress, rows_made)}
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
        assert parallel is not None, "workers > 1 needs parallel (the _parallel module)"
        if src.cached and parallel.usable(src.store, selected):
            return parallel.build(
                src.store,
                wanted,
                selected,
                workers=workers,
                errors=sel.errors,
                since=since,
                until=until,
                status=filters.statuses,
                progress=progress,
                rows_made=rows_made if not plan.session_filtered else None,
            )
    return _build_frames(src, selected, plan, sel.errors, progress, rows_made)


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
    src: Any,
    ids: Any,
    progress: bool | None,
    prechecked: tuple | None,
    exact: bool = False,
    workers: int | None = None,
    parallel: Any = None,
) -> _Selection:
    """Resolve ``ids`` (as they are when ``exact``) and leave out the sessions that
    Store.load() rejects (checked by ``workers`` processes through ``parallel`` when there
    are enough to check)."""
    errors: list[dict] = []
    if prechecked is not None:  # by the caller, for this same store: see _cached_frames
        check, known, rejected, reported = prechecked
        errors.extend(reported)
    else:
        check = LoadCheck(src.store, cached=src.cached) if src.store is not None else None
        known = check.ids() if check is not None else None
        rejected = {}
    selected = None
    gone: list[str] = []
    if ids is not None:
        known = known if known is not None else src.ids()
        if exact:
            listed = set(known)
            requested = dict.fromkeys([ids] if isinstance(ids, str) else ids)
            selected = [i for i in requested if i in listed]
            gone = [i for i in requested if i not in listed]
        else:
            selected = _resolve_ids(ids, known, src.label)
    if check is not None and prechecked is None:
        assert known is not None
        verdicts = None
        if workers is not None and workers > 1 and parallel is not None:

            def verdicts(stale: list[str]) -> dict[str, Any]:
                if not parallel.usable(src.store, stale):
                    return {}
                return parallel.check(src.store, stale, workers=workers)

        rejected = check.rejected(
            selected if selected is not None else known,
            progress=lambda items: _progress(items, progress, "checking sessions"),
            verdicts=verdicts,
        )
        check.save()
        for sid in sorted(rejected):
            _report(errors, sid, rejected[sid])
        if selected is not None:
            selected = [i for i in selected if i not in rejected]
        known = [i for i in known if i not in rejected]
    for sid in gone:  # listed by the caller, deleted since
        _report_vanished(errors, src, sid)
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
    #: each session's ``sessions`` row is made even if the frame is not wanted
    summarize: bool = False

    @classmethod
    def make(cls, wanted: Iterable[str], filters: _Filters) -> _Plan:
        wanted = tuple(wanted)
        return cls(
            wanted, filters, filters.by_session and bool(_SESSION_FRAMES.intersection(wanted))
        )

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
        return "sessions" in self.wanted or self.session_filtered or self.summarize

    @property
    def need_stats(self) -> bool:
        """Whether the runs' statistics are counted (by the summary, `runs`, `spans` or
        `traces`, which takes each run's model from them)."""
        return self.want_summary or bool({"runs", "spans", "traces"}.intersection(self.wanted))

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
        from ._builders import (
            _EventsBuilder,
            _MessagesBuilder,
            _RunsBuilder,
            _SessionsBuilder,
            _SpansBuilder,
            _TracesBuilder,
            _VerificationBuilder,
        )
        from ._walk import _file_of

        makers: dict[str, Any] = {
            "sessions": _SessionsBuilder,
            "messages": _MessagesBuilder,
            "traces": _TracesBuilder,
            "verification": lambda: _VerificationBuilder(self.filters.check_status),
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
    summaries = _index_summaries(
        src,
        sel.selected if sel.selected is not None else sel.known,
        progress,
        sel.errors,
        skip=set(stems_in(src.store, sorted(sel.rejected))),
        scanned=sel.check.scanned if sel.check is not None and sel.check.scanned else None,
    )
    chosen = set(sel.selected) if sel.selected is not None else None
    keep = {
        row[0]
        for row, statuses in summaries
        if (chosen is None or row[0] in chosen)
        and row[0] not in sel.rejected
        and (not filters.by_session or filters.session_ok(row, statuses))
    }
    return summaries, keep


def _sessions_from_index(
    src: Any, summaries: list[tuple[list, list[str]]], keep: set[str], errors: list[dict]
) -> pd.DataFrame:
    """The ``sessions`` frame of the kept rows, without reading a session file."""
    from ._builders import _SessionsBuilder
    from ._walk import _file_of

    builder = _SessionsBuilder()
    builder.where = _file_of(src, "sessions")
    for row, _ in summaries:
        if row[0] in keep:
            builder.add_row(row)
    return builder.frame_df(errors)


# ---------------------------------------------------------------------------- the pass


def _build_frames(
    src: Any,
    selected: list[str],
    plan: _Plan,
    errors: list[dict],
    progress: bool | None,
    rows_made: dict[str, tuple[list, list[str]]] | None = None,
) -> dict[str, pd.DataFrame]:
    """Read the files of the ``selected`` sessions once, feeding every builder of ``plan``;
    ``rows_made`` (unless None) gets each session's ``sessions`` row, by the id read."""
    if rows_made is not None and not plan.session_filtered:
        plan = dataclasses.replace(plan, summarize=True)
    else:
        rows_made = None
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
        if opened is None:  # listed, then deleted before its files were read
            _report_vanished(errors, src, key)
            continue
        sid, session, run_list = opened
        summary = _feed_session(src, plan, builders, sid, session, run_list, raw)
        if rows_made is not None and summary is not None:
            rows_made[key] = summary
    return {name: builders[name].frame_df(errors) for name in plan.wanted}


def _open_session(
    src: Any, key: str, raw: dict[str, Any] | CorruptFileError
) -> tuple[str, dict, Runs] | None:
    """``(session id, session object, runs)`` of one read; None when the session was
    deleted since it was listed; CorruptFileError when its session file is not an object."""
    from ._runfile import runs_of
    from ._walk import _str, _where

    if isinstance(raw, CorruptFileError):
        raise raw
    session = raw.get("session")
    if "session" in raw:
        if session is None:  # deleted since listed
            return None
        if not isinstance(session, dict):
            raise CorruptFileError(_where(src, key, "session"), "not a JSON object")
    elif all(v is None for v in raw.values()) and src.gone(key):
        return None  # no file read, and the session file is gone too
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
) -> tuple[list, list[str]] | None:
    """Add one session's rows to the builders (none when the session filters drop it);
    its ``sessions`` row and run statuses when the plan makes them."""
    from ._walk import _lineage_values, _session_model, _summary_row

    # each run's tool_end events, gathered by the walk that counts its statistics
    tool_ends: list[list] | None = [] if "traces" in builders else None
    stats = _feed_runs(plan, builders, sid, session, run_list, tool_ends)
    summary = None
    if plan.want_summary:
        row, statuses = _summary_row(
            sid,
            session,
            stats,
            raw.get("traces"),
            raw.get("verification"),
            _lineage_values(src, sid),
        )
        summary = (row, statuses)
        if plan.session_filtered and not plan.filters.session_ok(row, statuses):
            return summary
        if "sessions" in builders:
            builders["sessions"].add_row(row)
    if "messages" in builders:
        builders["messages"].add(sid, session)
    if "traces" in builders:
        model = _session_model(session)
        runs_with_models = [
            (run, st.model or model, ends)
            for run, st, ends in zip(run_list, stats, tool_ends, strict=True)
        ]
        builders["traces"].add(sid, raw.get("traces"), runs_with_models, raw.get("verification"))
    if "verification" in builders:
        builders["verification"].add(sid, raw.get("verification"))
    return summary


def _feed_runs(
    plan: _Plan,
    builders: dict[str, Any],
    sid: str,
    session: dict,
    run_list: Runs,
    tool_ends: list[list] | None = None,
) -> list[_RunStats]:
    """Add a session's runs to ``runs``, ``run_events`` and ``spans`` (runs the run filters
    keep), and return every run's statistics when the plan needs them (and, into
    ``tool_ends`` unless None, each run's ``tool_end`` events: see ``_run_stats``)."""
    from ._walk import _run_stats, _session_model

    want_runs = plan.want_runs
    if not (plan.want_summary or want_runs or "traces" in plan.wanted):
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
        if need_stats:  # the one walk over the events for statistics (spans, tool calls)
            ends: list | None = None
            if tool_ends is not None:
                ends = []
                tool_ends.append(ends)
            st = _run_stats(run, span_rows, run_id, ends)
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
