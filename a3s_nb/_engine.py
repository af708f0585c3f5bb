"""Building frames: which files to read, filters, the sessions index and the frame cache,
and the one pass over the files that feeds every builder.
"""

from __future__ import annotations

import contextlib
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
from ._loadcheck import LoadCheck
from ._sources import (
    _PARTS,
    _RUN_FRAMES,
    _SESSION_FRAMES,
    CorruptSessionWarning,
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
    _d,
    _file_of,
    _l,
    _lineage_values,
    _run_stats,
    _RunStats,
    _session_model,
    _SpanWalker,
    _str,
    _summary_row,
    _where,
)
from ._warn import warn
from .cost import price_table
from .errors import CorruptFileError
from .store import PARTS, FileStore, sdk_safe_id

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
    signatures: dict[str, list] | None = None,
) -> list[tuple[list, list[str]]]:
    """``sessions`` rows of a directory store, from its index (recomputing stale rows)."""
    from .index import SessionIndex

    def compute(stem: str) -> tuple[list, list[str]] | None:
        return _walk._summarize(source, stem)

    index = SessionIndex(
        source.store,
        # costs are cached with the rows: a new price table recomputes them
        key=f"{schema.SCHEMA_VERSION}.{SUMMARY_VERSION}.{price_table()}",
        columns=_SESSION_COLS,
    )
    current = None
    if signatures is not None:  # the load check scanned the whole store already
        from .index import FRAGMENT_PARTS

        at = [PARTS.index(p) for p in ("session", *FRAGMENT_PARTS)]  # type: ignore[arg-type]
        current = {stem: [sig[k] for k in at] for stem, sig in signatures.items()}
    entries = index.refresh(
        compute,
        stems=stems,
        progress=lambda items: _progress(items, progress, "sessions"),
        current=current,
    )
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


def _cache_key() -> str:
    """What the cached frames depend on besides the files: the code that builds them and
    the price table."""
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
) -> dict[str, pd.DataFrame]:
    wanted = list(dict.fromkeys(frames))
    for name in wanted:
        if name not in schema.FRAMES:
            raise ValueError(f"unknown frame {name!r}; choose from {', '.join(FRAME_NAMES)}")
    src = _open_source(source)
    filters = _Filters(since, until, status)
    errors: list[dict] = []
    use_index = isinstance(src.store, FileStore)

    # Which sessions: the requested ids, narrowed by the session filters when a frame that
    # is filtered per session is wanted and an index makes the filter cheap.
    known: list[str] | None = None
    selected: list[str] | None = None
    check = None
    if prechecked is not None:  # by the caller, for this same store: see _cached_frames
        check, known, rejected, reported = prechecked
        errors.extend(reported)
    elif src.store is not None:
        check = LoadCheck(src.store)
        known = check.ids()
    if ids is not None:
        known = known if known is not None else src.ids()
        selected = _resolve_ids(ids, known, src.label)
    # Sessions that Store.load() rejects are left out and listed in attrs["errors"].
    if prechecked is None:
        rejected = {}
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
    if (
        cache
        and use_index
        and _columns.pa is not None
        and ids is None
        and not filters.any
        and set(wanted) - {"sessions"}
    ):
        assert check is not None and known is not None
        return _cached_frames(src, wanted, check, known, rejected, errors, progress)
    session_filtered = filters.any and bool(_SESSION_FRAMES.intersection(wanted))
    only_sessions = wanted == ["sessions"]
    if use_index and (only_sessions or (session_filtered and not _RUN_FRAMES.intersection(wanted))):
        stems = None
        if selected is not None or known is not None:
            stems = {sdk_safe_id(i) for i in (selected if selected is not None else known)}
        summaries = _index_summaries(
            src,
            stems,
            progress,
            errors,
            skip={sdk_safe_id(i) for i in rejected},
            signatures=check.signatures if check is not None and ids is None else None,
        )
        chosen = set(selected) if selected is not None else None
        keep = {
            row[0]
            for row, statuses in summaries
            if (chosen is None or row[0] in chosen)
            and row[0] not in rejected
            and (not filters.any or filters.session_ok(row, statuses))
        }
        if only_sessions:
            builder = _SessionsBuilder()
            builder.where = _file_of(src, "sessions")
            for row, _ in summaries:
                if row[0] in keep:
                    builder.add_row(row)
            return {"sessions": builder.frame_df(errors)}
        order = selected if selected is not None else sorted(keep)
        selected = [i for i in order if i in keep]
        session_filtered = False  # done
    if selected is None:
        selected = sorted(known if known is not None else src.ids())

    want_summary = "sessions" in wanted or session_filtered
    parts: set[str] = set()
    for name in wanted:
        parts |= _PARTS[name]
    if want_summary:
        parts |= _PARTS["sessions"]
    want_runs = bool(_RUN_FRAMES.intersection(wanted))
    builders: dict[str, Any] = {}
    if "sessions" in wanted:
        builders["sessions"] = _SessionsBuilder()
    if "messages" in wanted:
        builders["messages"] = _MessagesBuilder()
    if "traces" in wanted:
        builders["traces"] = _TracesBuilder()
    if "verification" in wanted:
        builders["verification"] = _VerificationBuilder(filters.status)
    if "runs" in wanted:
        builders["runs"] = _RunsBuilder()
    if "run_events" in wanted:
        builders["run_events"] = _EventsBuilder()
    if "spans" in wanted:
        builders["spans"] = _SpansBuilder()
    for name, builder in builders.items():
        builder.where = _file_of(src, name)
    runs_b, events_b, spans_b = (
        builders.get("runs"),
        builders.get("run_events"),
        builders.get("spans"),
    )
    ordered_parts = [p for p in ("session", "runs", "traces", "verification") if p in parts]
    need_stats = want_summary or runs_b is not None or spans_b is not None

    reads = src.read_all(selected, ordered_parts)
    flushing = list(builders.values())
    for key, raw in _progress(reads, progress, "sessions", total=len(selected)):
        for builder in flushing:
            builder.maybe_flush()
        try:
            if isinstance(raw, CorruptFileError):
                raise raw
            session = raw.get("session")
            if "session" in raw:
                if session is None:  # deleted since listed: nothing to report
                    continue
                if not isinstance(session, dict):
                    raise CorruptFileError(_where(src, key, "session"), "not a JSON object")
            session = session if isinstance(session, dict) else {}
            sid = _str(session.get("id")) or key
            run_list = [_d(r) for r in _l(raw.get("runs"))]
        except CorruptFileError as err:
            _report(errors, key, err)
            continue
        session_ok = True
        stats: list[_RunStats] = []
        if want_summary or want_runs:
            model = _session_model(session)
            for r_index, run in enumerate(run_list):
                snap = _d(run.get("snapshot"))
                run_id = _str(snap.get("id"))
                keep_run = want_runs and filters.run_ok(
                    snap.get("status"), snap.get("created_at_ms")
                )
                span_rows: list | None = [] if keep_run and spans_b is not None else None
                if keep_run and events_b is not None:
                    # one pass over the events fills run_events, the stats and the spans
                    st = _RunStats(snap) if need_stats else None
                    walker = None
                    if span_rows is not None:
                        walker = _SpanWalker(run_id or "", st, span_rows)
                    events_b.add(sid, run_id, _l(run.get("events")), st, walker)
                elif need_stats:
                    st = _run_stats(run, span_rows, run_id)
                if need_stats:
                    stats.append(st)
                if not keep_run:
                    continue
                if runs_b is not None:
                    runs_b.add(sid, r_index, run, st, model)
                if span_rows is not None:
                    spans_b.add(sid, run_id, span_rows)
        if want_summary:
            row, statuses = _summary_row(
                sid,
                session,
                stats,
                raw.get("traces"),
                raw.get("verification"),
                _lineage_values(src, sid),
            )
            if session_filtered:
                session_ok = filters.session_ok(row, statuses)
            if session_ok and "sessions" in builders:
                builders["sessions"].add_row(row)
        if not session_ok:
            continue
        if "messages" in builders:
            builders["messages"].add(sid, session)
        if "traces" in builders:
            builders["traces"].add(sid, raw.get("traces"))
        if "verification" in builders:
            builders["verification"].add(sid, raw.get("verification"))

    return {name: builders[name].frame_df(errors) for name in wanted}
