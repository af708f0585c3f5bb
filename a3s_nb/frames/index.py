"""A cache of one summary row per session, kept in ``<store>/.a3s_nb/index.json``.

``sessions()`` must stay cheap on a store of thousands of sessions, but a row needs the run
files (tokens, run statuses and tool calls live only in run events). The index keeps each
row together with the ``(mtime_ns, size, inode, ctime_ns)`` of the files it was
computed from (an edit in place with the modification time set back still changes the
change time). Every call
lists the store (one ``scandir`` per directory, which also gives the file sizes and times)
and recomputes only the rows whose files changed, appeared or vanished. That is how it
notices the a3s-code SDK writing behind a3s_nb's back: the SDK knows nothing of the index.

Like git's index, a row whose files changed within the last ``RACY_SECONDS`` before they
were examined is not trusted on the next call: a rewrite within the file system's time
granularity that keeps the size would otherwise go unnoticed.

The index is a cache, never the truth: it is written atomically (temp file + rename), a
corrupt or foreign one is silently rebuilt, and a read-only store simply gets no index.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..errors import CorruptFileError
from ..store import _metafiles
from ..store._cachefile import read_json, read_json_head, read_json_signed, write_json
from ..store.store import FileStore
from . import schema
from ._loadcheck import changed_stems, newest, record, scan

log = logging.getLogger(__name__)

INDEX_FORMAT = 3
INDEX_FILE = "index.json"
RACY_SECONDS = 2.0

#: The parts a row depends on, besides the session file itself.
FRAGMENT_PARTS = ("runs", "traces", "verification")
#: Every part a row depends on.
PARTS = ("session", *FRAGMENT_PARTS)

Compute = Callable[[str], "tuple[list[Any], list[str]] | None"]


class SessionIndex:
    """The summary rows of one directory store, refreshed on demand."""

    def __init__(self, store: FileStore, *, key: str, columns: list[str]):
        self.store = store
        self.key = key
        self.columns = list(columns)
        self.path = store.meta_dir / INDEX_FILE
        self._read_sig: list[int] | None = None
        #: After ``refresh``: the ``[mtime_ns, size, inode, generation]`` of the index file
        #: when every row it returned came from that file as it is, all trusted; else None.
        self.sig: list | None = None

    # ---- persistence ----------------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        empty: dict[str, Any] = {"files": {}, "untrusted": [], "entries": {}}
        data, self._read_sig = read_json_signed(self.path, "session index")
        if (
            not isinstance(data, dict)
            or data.get("format") != INDEX_FORMAT
            or data.get("key") != self.key
            or data.get("columns") != self.columns
            or not isinstance(data.get("entries"), dict)
            or not isinstance(data.get("files"), dict)
            or not isinstance(data.get("untrusted"), list)
            or not all(isinstance(stem, str) for stem in data["untrusted"])
            or not all(
                part in PARTS and isinstance(sigs, dict) for part, sigs in data["files"].items()
            )
        ):
            return empty
        return data

    def _save(self, data: dict[str, Any]) -> list | None:
        """Write the index; the signature of the file written (see ``sig``), or None."""
        # no two writes alike (RememberedFrame); first, so that it is read without the rest
        value = {"generation": uuid.uuid4().hex}
        value.update(format=INDEX_FORMAT, key=self.key, columns=self.columns)
        value.update((k, data[k]) for k in ("files", "untrusted", "entries"))
        if not write_json(self.path, value, "session index"):
            return None
        st = _metafiles.lstat(self.path)  # another writer's since: the generation differs
        if st is None:
            return None
        return [st.st_mtime_ns, st.st_size, st.st_ino, value["generation"]]

    # ---- refresh -------------------------------------------------------------------------

    def scan(self) -> dict[str, dict[str, list[int]]]:
        """The signature of the files of every session, as ``part -> stem -> [mtime_ns,
        size, inode, ctime_ns]`` (see ``_loadcheck.scan``)."""
        return scan(self.store, PARTS)

    def refresh(
        self,
        compute: Compute,
        *,
        stems: Iterable[str] | None = None,
        progress: Callable[[list], Iterable] | None = None,
        current: dict[str, dict[str, list[int]]] | None = None,
    ) -> dict[str, dict]:
        """Up-to-date entries (``{"row", "statuses"}`` or ``{"error"}``) by file stem.

        ``compute(stem)`` builds a row from the files (raising ``CorruptFileError``), or
        returns None if the session vanished meanwhile. ``stems`` limits the work to those
        sessions; the others keep their cached entries untouched. ``current`` is the
        ``scan()`` of the store when the caller has scanned it already (it may hold more
        parts than the index depends on).
        """
        scanned_at = time.time_ns()
        if current is None:
            current = self.scan()
        current = {part: current[part] for part in PARTS}
        present = current["session"]
        data = self._load()
        entries: dict[str, dict] = data["entries"]
        files: dict[str, dict[str, list[int]]] = data["files"]
        changed = False
        for stem in [s for s in entries if s not in present]:  # deleted sessions
            del entries[stem]
            for sigs in files.values():
                sigs.pop(stem, None)
            changed = True
        recheck = changed_stems(files, current)
        recheck.update(data["untrusted"])
        wanted = present.keys() if stems is None else set(stems).intersection(present)
        stale = sorted(stem for stem in wanted if stem in recheck or stem not in entries)
        untrusted = set(data["untrusted"])
        limit = scanned_at - RACY_SECONDS * 1e9
        for stem in progress(stale) if progress is not None and stale else stale:
            record(files, current, PARTS, stem)  # the files the row is computed from
            changed = True
            try:
                result = compute(stem)
            except CorruptFileError as e:
                entry: dict[str, Any] = {"error": {"path": e.path, "problem": e.problem}}
            else:
                if result is None:
                    entries.pop(stem, None)
                    untrusted.discard(stem)
                    continue
                row, statuses = result
                entry = {"row": row, "statuses": statuses}
            entries[stem] = entry
            # racily clean: changed too recently to trust the signature next time
            if newest(current, stem) >= limit:
                untrusted.add(stem)
            else:
                untrusted.discard(stem)
        if changed:
            data["untrusted"] = sorted(untrusted & entries.keys())
            written = self._save(data)
            if not data["untrusted"]:
                self.sig = written
        elif not untrusted and self._read_sig is not None and data.get("generation"):
            # the rows served are exactly those of the index file read
            self.sig = [*self._read_sig, data["generation"]]
        return {stem: entries[stem] for stem in wanted if stem in entries}


# ---- the frame of a whole store -----------------------------------------------------------

FRAME_RECORD = "index.frame.json"
FRAME_FORMAT = 1


class RememberedFrame:
    """The ``sessions`` frame of a whole directory store, as last built from the index.

    ``sessions()`` on an unchanged store would refresh the index (decoding every row)
    only to build the same frame again. So the frame is kept as Arrow
    (``index.frame.<generation>.arrow``) with a record (``index.frame.json``) of what it
    was built from: the index file exactly as read (mtime, size, inode and the
    generation each write of it gets), and a digest of the store's files, the sessions
    listed and those load() rejects. It is served only while all of these are unchanged;
    the index is written again whenever a row changes, and a row not trusted yet is never
    remembered.
    """

    def __init__(self, store: FileStore, key: str):
        self.store = store
        self.key = key
        self.path = store.meta_dir / FRAME_RECORD

    def load(self, inputs: str) -> Any | None:
        """The remembered Arrow table for these ``inputs`` (a digest), or None."""
        import pyarrow as pa

        rec = read_json(self.path, "sessions frame record")
        if (
            not isinstance(rec, dict)
            or rec.get("format") != FRAME_FORMAT
            or rec.get("key") != self.key
            or rec.get("inputs") != inputs
        ):
            return None
        # the index file as it was read then: same file, same write
        index = self.store.meta_dir / INDEX_FILE
        fd = _metafiles.open_read(index)
        if fd is None:
            return None
        try:
            st = os.fstat(fd)
            generation = _generation(os.pread(fd, 64, 0))
        except OSError:
            return None
        finally:
            os.close(fd)
        if generation is None:  # not written by ``_save``: read the whole head
            head = read_json_head(index, "session index") or {}
            generation = head.get("generation")
        if (
            rec.get("index") != [st.st_mtime_ns, st.st_size, st.st_ino, generation]
            or not isinstance(rec.get("file"), str)
            or not rec["file"].startswith("index.frame.")
            or "/" in rec["file"]
        ):
            return None
        try:
            table = _metafiles.read_arrow(self.store.meta_dir / rec["file"])
        except (OSError, pa.ArrowInvalid) as e:
            log.info("sessions frame %s not usable: %s", rec["file"], e)
            return None
        names = [c.name for c in schema.columns("sessions")]
        if table.column_names != names or table.num_rows != rec.get("rows"):
            return None
        return table

    def save(self, inputs: str, index_sig: list[int], table: Any) -> None:
        """Remember ``table``, built from the index file ``index_sig`` and ``inputs``."""
        name = f"index.frame.{time.time_ns()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.arrow"
        path = self.store.meta_dir / name
        try:
            _metafiles.write_arrow(path, table)
        except OSError as e:  # a read-only store works, it just is not cached
            log.info("sessions frame not saved (%s): %s", path, e)
            return
        record = {
            "format": FRAME_FORMAT,
            "key": self.key,
            "inputs": inputs,
            "index": index_sig,
            "file": name,
            "rows": table.num_rows,
        }
        if not write_json(self.path, record, "sessions frame record"):
            with contextlib.suppress(OSError):
                _metafiles.unlink(path)
            return
        for entry in _metafiles.scandir(self.store.meta_dir):  # the frames remembered before
            old = entry.name.startswith("index.frame.") and entry.name.endswith(".arrow")
            if old and entry.name != name:
                with contextlib.suppress(OSError):
                    _metafiles.unlink(Path(entry.path))


_GENERATION = re.compile(rb'\{"generation":"([0-9a-f]{32})",')


def _generation(start: bytes) -> str | None:
    """The generation of an index file from its first bytes, when it leads the file (as
    ``SessionIndex._save`` writes it): the index of thousands of sessions is megabytes of
    JSON, and a remembered frame needs only this of it."""
    m = _GENERATION.match(start)
    return m.group(1).decode() if m else None


def forget(store: FileStore, stems: list[str]) -> None:
    """Take deleted sessions out of the index and the load check now, and drop the
    remembered sessions frame: their rows must not stay on disk."""
    from ._loadcheck import CACHE_FILE

    meta = store.meta_dir
    if not _metafiles.is_real_dir(meta):
        return
    gone = set(stems)
    for name, what in ((INDEX_FILE, "session index"), (CACHE_FILE, "load-check cache")):
        data = read_json(meta / name, what)
        if not isinstance(data, dict):
            continue
        entries, files = data.get("entries"), data.get("files")
        if not isinstance(entries, dict) or not gone.intersection(entries):
            continue
        for stem in gone:
            entries.pop(stem, None)
            for sigs in files.values() if isinstance(files, dict) else ():
                if isinstance(sigs, dict):
                    sigs.pop(stem, None)
        if name == INDEX_FILE:  # no two writes alike (RememberedFrame), the generation first
            data.pop("generation", None)
            data = {"generation": uuid.uuid4().hex, **data}
        else:  # the listing and the answer for the whole store name it too
            data["listing"], data["clean"], data["rejected"] = None, None, {}
        if not write_json(meta / name, data, what):
            with contextlib.suppress(OSError):
                _metafiles.unlink(meta / name)
    for entry in _metafiles.scandir(meta):  # the remembered sessions frame
        if entry.name.startswith("index.frame."):
            with contextlib.suppress(OSError):
                _metafiles.unlink(meta / entry.name)
