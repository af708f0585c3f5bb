"""A columnar cache of the frames of a directory store, in ``<store>/.a3s_nb/frames/``.

Notebooks rebuild their frames over and over from a store that barely changed. So an
unfiltered call over a directory store (no ``ids``, ``since``, ``until`` or ``status``)
keeps what it built: one Arrow IPC file per frame and a manifest with, per session, the
``(mtime_ns, size, inode, ctime_ns)`` of the files its rows come from (keyed the way the sessions index keys
its rows). The next call rebuilds only the sessions whose files changed, appeared or
vanished, drops their old rows and writes the frames back; an unchanged store is read back
memory-mapped, without parsing a byte of JSON.

What is never trusted from the cache: which sessions ``Store.load()`` rejects (asked of
``_loadcheck`` on every call), a file changed within ``RACY_SECONDS`` of being read (its
session is rebuilt next time), and the cache itself: a manifest of another format, schema,
price table or a3s_nb, an Arrow file that does not open or does not match the manifest, is
thrown away and rebuilt. Writes are atomic and safe against concurrent writers: each
writer writes its own generation of files, then renames its manifest into place; readers
only ever open the files a complete manifest names, and a generation no manifest names is
removed once it is old enough to belong to no writer still at work.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import logging
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from ..store import _metafiles
from ..store._cachefile import encode as _encode
from ..store._cachefile import read_json, write_json
from ..store._json import loads
from ..store.store import FileStore, sdk_safe_id
from . import _columns, schema
from ._loadcheck import LoadCheck

log = logging.getLogger(__name__)

CACHE_DIR = "frames"
CACHE_FORMAT = 3
#: Sessions per segment file: a changed session rewrites the segment it is in. A segment
#: grown past twice this is split.
SEGMENT_SESSIONS = 256
#: The schema metadata key of a segment's file signatures (``{id: signature}``).
_SIGS_KEY = b"a3s_nb.sessions"
RACY_SECONDS = 2.0
#: A generation of files that no manifest names is removed after this many seconds.
ORPHAN_SECONDS = 600.0
#: The frames kept here; ``sessions`` has its own index (``a3s_nb.frames.index``).
CACHED = ("messages", "traces", "runs", "run_events", "spans", "verification")
#: The files a session's rows come from.
SOURCES = ("session", "runs", "traces", "verification")

Build = Callable[[list[str], list[str]], dict[str, pd.DataFrame]]


def _digest(sessions: list[str], sigs: list[Any]) -> str:
    """What a segment holds: its sessions and the signatures of their files (None for a
    session whose rows are not to be trusted next time)."""
    return hashlib.blake2b(_encode([sessions, sigs]), digest_size=16).hexdigest()


class _Segment:
    """One segment of a frame: the rows of the sessions ``first <= id < next first``."""

    __slots__ = ("digest", "file", "first", "rows", "sigs", "table")

    def __init__(self, file: str | None, first: str, rows: int, digest: str | None):
        self.file, self.first, self.rows, self.digest = file, first, rows, digest
        self.table: Any = None
        #: ``{id: signature}``, or the JSON of it as read from the file
        self.sigs: dict[str, Any] | bytes | None = None


class FrameCache:
    """The cached frames of one directory store: per frame, ``<frame>.json`` (the manifest:
    its segments, row count and errors entries) and ``<frame>.<generation>.arrow`` per
    segment (the rows of a range of session ids, with the signatures of their files in
    the schema metadata)."""

    def __init__(self, store: FileStore, key: str):
        import pyarrow as pa

        self.pa = pa
        self.store = store
        self.key = key
        self.dir = store.meta_dir / CACHE_DIR
        self.now = time.time_ns()

    # ---- reading -------------------------------------------------------------------

    def _manifest(self, frame: str) -> tuple[list[_Segment], list] | None:
        """The segments and notes of ``frame``, or None if missing or not to be trusted."""
        m = read_json(self.dir / f"{frame}.json", "frame cache")
        if (
            not isinstance(m, dict)
            or m.get("format") != CACHE_FORMAT
            or m.get("key") != self.key
            or not isinstance(m.get("segments"), list)
            or not m["segments"]
            or not isinstance(m.get("rows"), int)
            or not isinstance(m.get("notes"), list)
        ):
            return None
        segments = []
        for seg in m["segments"]:
            if not (
                isinstance(seg, dict)
                and isinstance(seg.get("file"), str)
                and isinstance(seg.get("first"), str)
                and isinstance(seg.get("rows"), int)
                and isinstance(seg.get("digest"), str)
                and "/" not in seg["file"]
                and seg["file"].startswith(f"{frame}.")
                and seg["file"].endswith(".arrow")
            ):
                return None
            segments.append(_Segment(seg["file"], seg["first"], seg["rows"], seg["digest"]))
        firsts = [seg.first for seg in segments[1:]]
        if firsts != sorted(set(firsts)) or sum(seg.rows for seg in segments) != m["rows"]:
            return None
        return segments, m["notes"]

    def _open(self, frame: str, seg: _Segment) -> bool:
        """Read the table and the file signatures of ``seg``; False if it cannot be used."""
        pa = self.pa
        path = self.dir / str(seg.file)
        try:
            table = _metafiles.read_arrow(path)  # never through a link
            meta = dict(table.schema.metadata or {})
            raw = meta.pop(_SIGS_KEY)
        except (OSError, KeyError, pa.ArrowInvalid) as e:
            log.info("frame cache %s not usable: %s", path, e)
            return False
        names = [c.name for c in schema.columns(frame)]
        if table.column_names != names or table.num_rows != seg.rows:
            return False
        seg.table, seg.sigs = table.replace_schema_metadata(meta), raw
        return True

    def _sigs(self, seg: _Segment) -> dict[str, Any]:
        """The file signatures a segment's rows were built from (read when needed)."""
        if isinstance(seg.sigs, bytes):
            try:
                sigs = loads(seg.sigs)
            except (ValueError, RecursionError):
                sigs = None
            seg.sigs = sigs if isinstance(sigs, dict) else {}
        return seg.sigs or {}

    # ---- the one entry point ---------------------------------------------------------

    def frames(
        self,
        wanted: list[str],
        check: LoadCheck,
        good: list[str],
        build: Build,
    ) -> tuple[dict[str, pd.DataFrame], dict[str, list[dict]]]:
        """The frames ``wanted`` (of CACHED) of the sessions ``good``, in that order.

        ``build(ids, frames)`` builds frames from the files for a few sessions. Returns the
        frames and, per frame, the ``errors`` entries of its rows (built now or before).
        """
        good = sorted(good)
        scanned = [check.scanned.get(part, {}) for part in SOURCES]
        stems = [check.stems.get(sid) or sdk_safe_id(sid) for sid in good]
        columns = [[files.get(stem) for stem in stems] for files in scanned]
        cur = list(map(list, zip(*columns, strict=True))) if good else []
        digests: dict[tuple[int, int], str] = {}

        def digest(lo: int, hi: int) -> str:
            if (lo, hi) not in digests:
                digests[lo, hi] = _digest(good[lo:hi], cur[lo:hi])
            return digests[lo, hi]

        # per frame: its segments, each with the range of ``good`` it holds now
        plans: dict[str, tuple[list[tuple[_Segment, int, int]], list]] = {}
        stale: dict[str, set[str]] = {}
        for frame in wanted:
            loaded = self._manifest(frame)
            if loaded is None:
                loaded = ([_Segment(None, "", 0, None)], [])
            segments, notes = loaded
            bounds = [0] + [bisect.bisect_left(good, seg.first) for seg in segments[1:]]
            plan = list(zip(segments, bounds, [*bounds[1:], len(good)], strict=True))
            plans[frame] = (plan, notes)
            stale[frame] = set()
            for seg, lo, hi in plan:
                if seg.file is None or not self._open(frame, seg):
                    seg.table, seg.sigs, seg.digest = None, {}, None  # missing or damaged
                elif seg.digest == digest(lo, hi):
                    continue  # unchanged
                sigs = self._sigs(seg)
                stale[frame].update(
                    sid
                    for sid, sig in zip(good[lo:hi], cur[lo:hi], strict=True)
                    if sigs.get(sid) != sig
                )
                seg.digest = None  # to be written again
        todo = sorted(set().union(*stale.values()))
        fresh = build(todo, wanted) if todo else {}
        out: dict[str, pd.DataFrame] = {}
        all_notes: dict[str, list[dict]] = {}
        for frame in wanted:
            plan, notes = plans[frame]
            segments = [seg for seg, _lo, _hi in plan]
            if any(seg.digest is None for seg in segments):
                segments, notes = self._update(frame, plan, notes, good, cur, fresh, todo)
            all_notes[frame] = notes
            built = fresh.get(frame)
            if (
                built is not None
                and len(stale[frame]) == len(good)
                and sum(seg.rows for seg in segments) == len(built)
            ):
                # every row was built now (a cold call): the segments are slices of these
                # rows, in order, which ``to_frame`` would turn back into this very frame
                out[frame] = built
                continue
            out[frame] = to_frame(_concat(self.pa, [seg.table for seg in segments], frame), frame)
        return out, all_notes

    def _trusted(self, sig: list) -> list | None:
        newest = max((s[0] for s in sig if s is not None), default=0)
        return sig if newest < self.now - RACY_SECONDS * 1e9 else None

    def _from_pandas(self, df: pd.DataFrame | None) -> Any:
        if df is None or not len(df):
            return None
        return self.pa.Table.from_pandas(df, preserve_index=False)

    # ---- writing ---------------------------------------------------------------------

    def _update(
        self,
        frame: str,
        plan: list[tuple[_Segment, int, int]],
        notes: list,
        good: list[str],
        cur: list[list],
        fresh: dict[str, pd.DataFrame],
        todo: list[str],
    ) -> tuple[list[_Segment], list]:
        """Rewrite the segments of ``frame`` to be written (their changed sessions are among
        ``todo``, built into ``fresh``), splitting those grown too large, then its manifest.
        Returns the new segments (with their tables) and errors entries."""
        new_rows = self._from_pandas(fresh.get(frame))
        new_names, new_at = _blocks(new_rows) if new_rows is not None else ([], None)
        todo_set = set(todo)
        segments: list[_Segment] = []
        written: list[str] = []
        replaced: set[str] = set()  # sessions whose rows and notes are new
        for seg, lo, hi in plan:
            if seg.digest is not None:  # unchanged
                segments.append(seg)
                continue
            ids = good[lo:hi]
            drop = {sid for sid in ids if sid in todo_set} | (self._sigs(seg).keys() - set(ids))
            replaced |= drop
            if not ids and len(plan) > 1:
                continue  # an empty segment: its range goes to its neighbour
            new = None
            if new_rows is not None and ids:
                a = bisect.bisect_left(new_names, ids[0])
                b = bisect.bisect_right(new_names, ids[-1])
                start, end = (int(i) for i in np.searchsorted(new_at, [a, b], side="left"))
                if end > start:
                    new = new_rows.slice(start, end - start)
            table = _merge(self.pa, seg.table, drop, new, frame)
            sigs = [self._trusted(sig) for sig in cur[lo:hi]]
            for first, part_ids, part_sigs, rows in _split(table, ids, sigs, seg.first):
                new_seg = self._write(frame, rows, first, part_ids, part_sigs)
                if new_seg.file is not None:
                    written.append(new_seg.file)
                segments.append(new_seg)
        if not segments:  # every segment emptied: one empty one
            empty = _merge(self.pa, None, set(), None, frame)
            segments.append(self._write(frame, empty, "", [], []))
            written += [seg.file for seg in segments if seg.file is not None]
        segments[0].first = ""
        fresh_notes = fresh[frame].attrs.get("errors", []) if frame in fresh else []
        notes = [e for e in notes if e.get("session_id") not in replaced]
        notes += [e for e in fresh_notes if e["session_id"] in replaced]
        notes.sort(key=lambda e: str(e.get("session_id")))  # the order a build gives
        if None not in (seg.file for seg in segments) and self._commit(frame, segments, notes):
            return segments, notes
        for name in written:  # a read-only store works, it just is not cached
            with contextlib.suppress(OSError):
                _metafiles.unlink(self.dir / name)
        return segments, notes

    def _commit(self, frame: str, segments: list[_Segment], notes: list) -> bool:
        """Write ``frame``'s manifest naming ``segments`` (all written) and ``notes``, then
        remove its files no manifest names; False when the manifest could not be written."""
        manifest = {
            "format": CACHE_FORMAT,
            "key": self.key,
            "rows": sum(seg.rows for seg in segments),
            "notes": notes,
            "segments": [
                {"file": seg.file, "first": seg.first, "rows": seg.rows, "digest": seg.digest}
                for seg in segments
            ],
        }
        tmp = self.dir / f"{frame}.json.{_generation()}.tmp"
        if not write_json(self.dir / f"{frame}.json", manifest, "frame cache", tmp=tmp):
            return False
        self._sweep(frame, {str(seg.file) for seg in segments})
        return True

    def _write(self, frame: str, table: Any, first: str, ids: list[str], sigs: list) -> _Segment:
        """One segment file (its ``file`` None when the store cannot be written)."""
        meta = dict(table.schema.metadata or {})
        meta[_SIGS_KEY] = _encode(dict(zip(ids, sigs, strict=True)))
        name = f"{frame}.{_generation()}.arrow"
        seg = _Segment(name, first, table.num_rows, _digest(ids, sigs))
        try:
            _metafiles.write_arrow(self.dir / name, table.replace_schema_metadata(meta))
            # No fsync: a file a crash tore does not open, or disagrees with its manifest,
            # and is rebuilt; the manifest's rename makes each write all or nothing.
        except OSError as e:  # a read-only store works, it just is not cached
            log.info("frame cache not saved (%s): %s", self.dir, e)
            seg.file = None
        seg.table = table
        return seg

    def _sweep(self, frame: str, keep: set[str]) -> None:
        """Remove this frame's files its manifest does not name: at once those of writers
        that started before this one, orphans of writers that died once old enough to
        belong to no live writer."""
        for entry in _metafiles.scandir(self.dir):
            name = entry.name
            if not name.startswith(frame + ".") or name in keep or name == f"{frame}.json":
                continue
            if name.startswith(frame + ".json.") and not name.endswith(".tmp"):
                continue
            try:
                age = time.time() - entry.stat().st_mtime
            except OSError:
                continue
            older = _is_previous(name, frame, self.now)
            if (name.endswith(".arrow") and older) or age > ORPHAN_SECONDS:
                with contextlib.suppress(OSError):
                    _metafiles.unlink(self.dir / name)


def _generation() -> str:
    """A name no other writer uses: the clock first, so that names sort by age."""
    return f"{time.time_ns()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _is_previous(name: str, frame: str, before: int) -> bool:
    """Whether ``name`` is of a generation named before the clock read ``before``."""
    try:
        gen = name[len(frame) + 1 :].split(".")[0]
        return int(gen.split("-")[0]) < before
    except (IndexError, ValueError):
        return False


def _split(
    table: Any, ids: list[str], sigs: list, first: str
) -> list[tuple[str, list[str], list, Any]]:
    """``(first, ids, sigs, rows)`` of the segments a segment of ``table`` becomes: itself,
    or pieces of ``SEGMENT_SESSIONS`` sessions when it holds more than twice that."""
    if len(ids) <= 2 * SEGMENT_SESSIONS:
        return [(first, ids, sigs, table)]
    names, rows = _blocks(table)
    out = []
    for k in range(0, len(ids), SEGMENT_SESSIONS):
        part = ids[k : k + SEGMENT_SESSIONS]
        a = bisect.bisect_left(names, part[0])
        b = bisect.bisect_right(names, part[-1])
        start, end = (int(i) for i in np.searchsorted(rows, [a, b], side="left"))
        rows_of = table.slice(start, end - start)
        out.append((first if k == 0 else part[0], part, sigs[k : k + SEGMENT_SESSIONS], rows_of))
    return out


def _concat(pa: Any, tables: list, frame: str) -> Any:
    """The segments' tables as one (with the schema metadata of the first)."""
    tables = [t for t in tables if t is not None]
    if not tables:
        return _merge(pa, None, set(), None, frame)
    if len(tables) == 1:
        return tables[0]
    meta = tables[0].schema.metadata
    return pa.concat_tables([t.replace_schema_metadata(meta) for t in tables])


def _blocks(table: Any) -> tuple[list[str], np.ndarray]:
    """The session ids of a table whose rows are grouped by session in id order, and each
    row's index into them (non-decreasing)."""
    encoded = table["session_id"].combine_chunks().dictionary_encode()
    return encoded.dictionary.to_pylist(), encoded.indices.to_numpy(zero_copy_only=False)


def _merge(pa: Any, kept: Any, drop: set[str], new: Any, frame: str) -> Any:
    """``kept`` without the rows of the sessions ``drop``, with the rows of ``new`` where
    their sessions go. Both tables have their rows grouped by session in id order, as every
    frame builds them; the result is made of slices, so unchanged rows are not copied."""
    if kept is None or kept.num_rows == 0:
        if new is not None:
            return new
        from ._builders import _empty_frame  # the build's module: not on a cached call's path

        return pa.Table.from_pandas(_empty_frame(frame), preserve_index=False)
    names, rows = _blocks(kept)
    if new is not None:
        new_names, new_rows = _blocks(new)
        new_at = {n: k for k, n in enumerate(new_names)}
    else:
        new_names, new_rows, new_at = [], np.zeros(0, dtype=np.int64), {}
    pieces, at = [], 0
    for name in sorted({*drop, *new_names}):
        j = bisect.bisect_left(names, name)
        lo = int(np.searchsorted(rows, j, side="left"))
        hi = lo
        if j < len(names) and names[j] == name and name in drop:
            hi = int(np.searchsorted(rows, j, side="right"))
        pieces.append(kept.slice(at, lo - at))
        if name in new_at:
            k = new_at[name]
            start = int(np.searchsorted(new_rows, k, side="left"))
            end = int(np.searchsorted(new_rows, k, side="right"))
            pieces.append(new.slice(start, end - start))
        at = hi
    pieces.append(kept.slice(at))
    merged = pa.concat_tables([p for p in pieces if p.num_rows] or [kept.slice(0, 0)])
    # many small record batches after many updates: made whole again now and then
    return merged.combine_chunks() if merged.column(0).num_chunks > 64 else merged


def to_frame(table: Any, frame: str) -> pd.DataFrame:
    """A cached table (``Table.from_pandas`` of ``frame``) as that frame again.

    Each column is made as ``_columns._finish`` makes the columns of a build from the
    files (the same dtypes, categories in the same order, text left in Arrow), without
    the round trip through pyarrow's pandas metadata and block manager. The integer and
    timestamp columns are copied once out of the memory-mapped segments, into one block
    of memory per frame, one row per column (``Table.to_pandas`` copied each of them
    twice, into arrays of their own): in a new kernel every fresh page of memory costs a
    page fault, and these copies were the largest cost of the first cached call."""
    columns = schema.columns(frame)
    wide = [col for col in columns if col.kind in ("int", "timestamp")]
    n = table.num_rows
    # from Arrow's memory pool: faster to fill than numpy's own blocks of megabytes here
    block = np.frombuffer(_columns.pa.allocate_buffer(8 * len(wide) * n), dtype=np.int64)
    block = block.reshape(len(wide), n)
    masks = np.zeros((len(wide), n), dtype=bool)
    data = {}
    for k, col in enumerate(wide):
        _copy_int64(table.column(col.name), block[k], masks[k])
        if col.kind == "int":
            data[col.name] = pd.arrays.IntegerArray(block[k], masks[k], copy=False)
        else:
            block[k][masks[k]] = _columns._NAT
            ms = block[k].view("datetime64[ms]")
            data[col.name] = pd.DatetimeIndex(ms, copy=False).tz_localize("UTC").array
    for col in columns:
        if col.name not in data:
            data[col.name] = _columns._finish(col, table.column(col.name).chunks)
    return pd.DataFrame({col.name: data[col.name] for col in columns}, copy=False)


def _copy_int64(column: Any, values: np.ndarray, missing: np.ndarray) -> None:
    """The chunks of an Arrow column of 64-bit values (integers, timestamps) into
    ``values``, their nulls into ``missing``."""
    at = 0
    for chunk in column.chunks:
        m = len(chunk)
        if not m:
            continue
        buffers = chunk.buffers()
        values[at : at + m] = np.frombuffer(
            buffers[1], dtype=np.int64, count=m, offset=chunk.offset * 8
        )
        if chunk.null_count:
            missing[at : at + m] = chunk.is_null().to_numpy(zero_copy_only=False)
        at += m
    if at != len(values):  # pragma: no cover - a table's columns are all of its length
        raise ValueError(f"column of {at} values in a table of {len(values)} rows")


def forget(store: FileStore, session_ids: list[str]) -> None:
    """Take the rows of deleted sessions out of every cached frame now, not at the next
    frames call: their text (secrets included) must not stay on disk. A segment holding
    one is written again without it; when that cannot be done, the frame's whole cache
    is removed (it is only ever a cache)."""
    directory = store.meta_dir / CACHE_DIR
    if not _metafiles.is_real_dir(directory):
        return
    gone = set(session_ids)
    for frame in CACHED:
        manifest = read_json(directory / f"{frame}.json", "frame cache")
        key = manifest.get("key") if isinstance(manifest, dict) else None
        try:
            _forget_in(FrameCache(store, key if isinstance(key, str) else ""), frame, gone)
        except Exception as e:  # whatever it was, the rows must go
            log.info("frame cache %s of %s removed: %r", frame, store, e)
            for entry in _metafiles.scandir(directory):
                if entry.name.startswith(f"{frame}."):
                    with contextlib.suppress(OSError):
                        _metafiles.unlink(directory / entry.name)


class _Unusable(Exception):
    """A frame's cache that cannot be rewritten without the deleted sessions."""


def _forget_in(cache: FrameCache, frame: str, gone: set[str]) -> None:
    loaded = cache._manifest(frame)
    if loaded is None:  # no manifest to trust: its files are removed below, if any
        if any(e.name.startswith(f"{frame}.") for e in _metafiles.scandir(cache.dir)):
            raise _Unusable(f"no usable manifest for {frame}")
        return
    segments, notes = loaded
    kept: list[_Segment] = []
    changed = False
    for seg in segments:
        if not cache._open(frame, seg):
            raise _Unusable(f"segment {seg.file} does not open")
        sigs = cache._sigs(seg)
        drop = gone.intersection(sigs)
        if not drop:
            kept.append(seg)
            continue
        ids = [sid for sid in sigs if sid not in drop]
        table = _compact(cache.pa, _merge(cache.pa, seg.table, drop, None, frame))
        new = cache._write(frame, table, seg.first, ids, [sigs[sid] for sid in ids])
        if new.file is None:
            raise _Unusable(f"segment of {frame} not written")
        kept.append(new)
        changed = True
    left = [e for e in notes if e.get("session_id") not in gone]
    if not changed and len(left) == len(notes):
        return
    if not cache._commit(frame, kept, left):
        raise _Unusable(f"manifest of {frame} not written")


def _compact(pa: Any, table: Any) -> Any:
    """``table`` in buffers of its own: a slice of a table is written to a file with the
    whole buffers it shares, the rows dropped included. (A category column's dictionary
    is kept as it is: every segment of a frame must have the same one, and it holds the
    known values of the column, not text of the sessions.)"""
    table = table.combine_chunks()
    return table.take(pa.array(np.arange(table.num_rows, dtype=np.int64)))
