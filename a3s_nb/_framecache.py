"""A columnar cache of the frames of a directory store, in ``<store>/.a3s_nb/frames/``.

Notebooks rebuild their frames over and over from a store that barely changed. So an
unfiltered call over a directory store (no ``ids``, ``since``, ``until`` or ``status``)
keeps what it built: one Arrow IPC file per frame and a manifest with, per session, the
``(mtime_ns, size)`` of the files its rows come from (keyed the way the sessions index keys
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
import logging
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from . import schema
from ._cachefile import read_json, write_json
from ._loadcheck import LoadCheck
from .store import FileStore, sdk_safe_id

log = logging.getLogger(__name__)

CACHE_DIR = "frames"
CACHE_FORMAT = 1
RACY_SECONDS = 2.0
#: A generation of files that no manifest names is removed after this many seconds.
ORPHAN_SECONDS = 600.0
#: The frames kept here; ``sessions`` has its own index (``a3s_nb.index``).
CACHED = ("messages", "traces", "runs", "run_events", "spans", "verification")
#: The files a session's rows come from.
SOURCES = ("session", "runs", "traces", "verification")

Build = Callable[[list[str], list[str]], dict[str, pd.DataFrame]]


def _types_mapper(pa: Any) -> Callable[[Any], Any]:
    strings = pd.StringDtype("pyarrow")
    mapping = {
        pa.int64(): pd.Int64Dtype(),
        pa.bool_(): pd.BooleanDtype(),
        pa.float64(): pd.Float64Dtype(),
        pa.string(): strings,
        pa.large_string(): strings,
    }
    return mapping.get


class FrameCache:
    """The cached frames of one directory store: per frame, ``<frame>.json`` (the manifest:
    generation, row count, per-session file signatures and errors entries) and
    ``<frame>.<generation>.arrow`` (the rows)."""

    def __init__(self, store: FileStore, key: str):
        import pyarrow as pa

        self.pa = pa
        self.store = store
        self.key = key
        self.dir = store.meta_dir / CACHE_DIR
        self.now = time.time_ns()

    # ---- reading -------------------------------------------------------------------

    def _load(self, frame: str) -> tuple[dict[str, Any], Any] | None:
        """The manifest and table of ``frame``, or None if missing or not to be trusted."""
        pa = self.pa
        manifest = read_json(self.dir / f"{frame}.json", "frame cache")
        if (
            not isinstance(manifest, dict)
            or manifest.get("format") != CACHE_FORMAT
            or manifest.get("key") != self.key
            or not isinstance(manifest.get("generation"), str)
            or not isinstance(manifest.get("sessions"), dict)
            or not isinstance(manifest.get("rows"), int)
            or not isinstance(manifest.get("notes"), list)
        ):
            return None
        path = self.dir / f"{frame}.{manifest['generation']}.arrow"
        try:
            with pa.memory_map(str(path)) as source:
                table = pa.ipc.open_file(source).read_all()
        except (OSError, pa.ArrowInvalid) as e:
            log.info("frame cache %s not usable: %s", path, e)
            return None
        names = [c.name for c in schema.columns(frame)]
        if table.column_names != names or table.num_rows != manifest["rows"]:
            return None
        return manifest, table

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
        pa = self.pa
        scanned = [check.scanned[part] for part in SOURCES]
        sigs = {sid: [files.get(sdk_safe_id(sid)) for files in scanned] for sid in good}
        state: dict[str, tuple[dict[str, Any], Any]] = {}
        stale: dict[str, list[str]] = {}
        for frame in wanted:
            loaded = self._load(frame)
            if loaded is None:
                loaded = ({"sessions": {}, "notes": []}, None)
            manifest, table = loaded
            cached = manifest["sessions"]
            state[frame] = loaded
            stale[frame] = [
                sid for sid in good if cached.get(sid) is None or cached[sid] != sigs[sid]
            ]
        todo = sorted({sid for frame in wanted for sid in stale[frame]})
        fresh = build(todo, wanted) if todo else {}
        out: dict[str, pd.DataFrame] = {}
        notes: dict[str, list[dict]] = {}
        mapper = _types_mapper(pa)
        for frame in wanted:
            manifest, table = state[frame]
            cached = manifest["sessions"]
            changed = set(stale[frame])
            gone = {sid for sid in cached if sid not in sigs}
            frame_notes = list(manifest["notes"])
            if changed or gone or table is None:
                drop = changed | gone
                new = fresh.get(frame)
                if new is not None and changed != set(todo):  # rows of this frame's stale only
                    new = new[new["session_id"].isin(changed)]
                table = _merge(pa, table, drop, self._from_pandas(new), frame)
                frame_notes = [e for e in frame_notes if e.get("session_id") not in drop]
                if new is not None:
                    frame_notes += [
                        e
                        for e in fresh[frame].attrs.get("errors", [])
                        if e["session_id"] in changed
                    ]
                for sid in gone:
                    cached.pop(sid, None)
                for sid in changed:
                    cached[sid] = self._trusted(sigs[sid])
                self._save(frame, table, cached, frame_notes)
            notes[frame] = frame_notes
            out[frame] = _fix_categories(table.to_pandas(types_mapper=mapper), frame)
        return out, notes

    def _trusted(self, sig: list) -> list | None:
        newest = max((s[0] for s in sig if s is not None), default=0)
        return sig if newest < self.now - RACY_SECONDS * 1e9 else None

    def _from_pandas(self, df: pd.DataFrame | None) -> Any:
        if df is None or not len(df):
            return None
        return self.pa.Table.from_pandas(df, preserve_index=False)

    # ---- writing ---------------------------------------------------------------------

    def _save(self, frame: str, table: Any, sessions: dict[str, Any], notes: list) -> None:
        pa = self.pa
        generation = f"{time.time_ns()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        path = self.dir / f"{frame}.{generation}.arrow"
        tmp = self.dir / f"{frame}.json.{generation}.tmp"
        manifest = {
            "format": CACHE_FORMAT,
            "key": self.key,
            "generation": generation,
            "rows": table.num_rows,
            "sessions": sessions,
            "notes": notes,
        }
        written = False
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            with (
                pa.OSFile(str(path), "wb") as sink,
                pa.ipc.new_file(sink, table.schema) as writer,
            ):
                writer.write_table(table)
            # No fsync: a cache file a crash tore does not open, or disagrees with its
            # manifest, and is rebuilt; the rename makes each write all or nothing.
            written = write_json(self.dir / f"{frame}.json", manifest, "frame cache", tmp=tmp)
        except OSError as e:  # a read-only store works, it just is not cached
            log.info("frame cache not saved (%s): %s", self.dir, e)
        if not written:
            with contextlib.suppress(OSError):
                path.unlink()
            return
        self._sweep(frame, generation)

    def _sweep(self, frame: str, keep: str) -> None:
        """Remove this frame's generations no manifest names: the previous one at once,
        orphans of writers that died once old enough to belong to no live writer."""
        try:
            entries = list(os.scandir(self.dir))
        except OSError:
            return
        for entry in entries:
            name = entry.name
            if not name.startswith(frame + ".") or keep in name or name == f"{frame}.json":
                continue
            if name.startswith(frame + ".json.") and not name.endswith(".tmp"):
                continue
            try:
                age = time.time() - entry.stat().st_mtime
            except OSError:
                continue
            older = _is_previous(name, frame, keep)
            if (name.endswith(".arrow") and older) or age > ORPHAN_SECONDS:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def _is_previous(name: str, frame: str, keep: str) -> bool:
    """Whether ``name`` is of a generation written before ``keep`` (generations start with
    the writer's clock)."""
    try:
        gen = name[len(frame) + 1 :].split(".")[0]
        return int(gen.split("-")[0]) < int(keep.split("-")[0])
    except (IndexError, ValueError):
        return False


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
        from ._engine import _empty_frame

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


def _fix_categories(df: pd.DataFrame, frame: str) -> pd.DataFrame:
    """Categories in the order a fresh build gives: known values first, then new ones sorted."""
    from ._columns import _categories

    for col in schema.columns(frame):
        if col.kind != "category":
            continue
        cat = df[col.name]
        if not isinstance(cat.dtype, pd.CategoricalDtype):
            cat = cat.astype("category")
        wanted = _categories(cat.cat.categories, schema.ENUMS[col.enum])
        if list(cat.cat.categories) != wanted:
            cat = cat.cat.set_categories(wanted)
        df[col.name] = cat
    return df
