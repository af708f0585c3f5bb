"""A cache of one summary row per session, kept in ``<store>/.a3s_nb/index.json``.

``sessions()`` must stay cheap on a store of thousands of sessions, but a row needs the run
files (tokens, run statuses and tool calls live only in run events). The index keeps each
row together with the ``(mtime_ns, size)`` of the files it was computed from. Every call
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

import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ._cachefile import read_json, write_json
from .errors import CorruptFileError
from .store import LAYOUT, FileStore

log = logging.getLogger(__name__)

INDEX_FORMAT = 1
INDEX_FILE = "index.json"
RACY_SECONDS = 2.0

#: The parts a row depends on, besides the session file itself.
FRAGMENT_PARTS = ("runs", "traces", "verification")

Signature = list  # [[mtime_ns, size] | None] * (1 + len(FRAGMENT_PARTS))
Compute = Callable[[str], "tuple[list[Any], list[str]] | None"]


def _scan_dir(path: Path, pattern: str) -> dict[str, list[int]]:
    """``stem -> [mtime_ns, size]`` of the files directly in ``path`` whose name is
    ``pattern`` (a store ``LAYOUT`` file name) with ``{}`` filled by a non-empty stem."""
    prefix, suffix = pattern.split("{}")
    fixed = len(prefix) + len(suffix)
    out: dict[str, list[int]] = {}
    try:
        it = os.scandir(path)
    except (FileNotFoundError, NotADirectoryError):
        return out
    with it:
        for entry in it:
            name = entry.name
            if len(name) <= fixed or not name.startswith(prefix) or not name.endswith(suffix):
                continue
            try:
                if not entry.is_file():
                    continue
                st = entry.stat()
            except OSError:  # vanished while we looked
                continue
            out[name[len(prefix) : len(name) - len(suffix)]] = [st.st_mtime_ns, st.st_size]
    return out


class SessionIndex:
    """The summary rows of one directory store, refreshed on demand."""

    def __init__(self, store: FileStore, *, key: str, columns: list[str]):
        self.store = store
        self.key = key
        self.columns = list(columns)
        self.path = store.meta_dir / INDEX_FILE

    # ---- persistence ----------------------------------------------------------------------

    def _load(self) -> dict[str, dict]:
        data = read_json(self.path, "session index")
        if (
            not isinstance(data, dict)
            or data.get("format") != INDEX_FORMAT
            or data.get("key") != self.key
            or data.get("columns") != self.columns
            or not isinstance(data.get("entries"), dict)
        ):
            return {}
        return data["entries"]

    def _save(self, entries: dict[str, dict]) -> None:
        data = {
            "format": INDEX_FORMAT,
            "key": self.key,
            "columns": self.columns,
            "entries": entries,
        }
        write_json(self.path, data, "session index")

    # ---- refresh -------------------------------------------------------------------------

    def scan(self) -> dict[str, Signature]:
        """The current signature of every session's files, by file stem."""
        root = self.store.path
        sessions, *fragments = (
            _scan_dir(root / LAYOUT[part][0], LAYOUT[part][1])
            for part in ("session", *FRAGMENT_PARTS)
        )
        return {
            stem: [sig, *(frag.get(stem) for frag in fragments)] for stem, sig in sessions.items()
        }

    def refresh(
        self,
        compute: Compute,
        *,
        stems: Iterable[str] | None = None,
        progress: Callable[[list], Iterable] | None = None,
        current: dict[str, Signature] | None = None,
    ) -> dict[str, dict]:
        """Up-to-date entries (``{"row", "statuses"}`` or ``{"error"}``) by file stem.

        ``compute(stem)`` builds a row from the files (raising ``CorruptFileError``), or
        returns None if the session vanished meanwhile. ``stems`` limits the work to those
        sessions; the others keep their cached entries untouched. ``current`` is the
        signature of every session of the store when the caller has scanned it already
        (else ``scan()``).
        """
        scanned_at = time.time_ns()
        if current is None:
            current = self.scan()
        entries = self._load()
        changed = False
        for stem in [s for s in entries if s not in current]:  # deleted sessions
            del entries[stem]
            changed = True
        wanted = set(current) if stems is None else set(stems).intersection(current)
        stale = sorted(
            stem
            for stem in wanted
            if stem not in entries or entries[stem].get("sig") != current[stem]
        )
        for stem in progress(stale) if progress is not None and stale else stale:
            sig = current[stem]
            try:
                result = compute(stem)
            except CorruptFileError as e:
                entry: dict[str, Any] = {"error": {"path": e.path, "problem": e.problem}}
            else:
                if result is None:
                    entries.pop(stem, None)
                    changed = True
                    continue
                row, statuses = result
                entry = {"row": row, "statuses": statuses}
            newest = max((s[0] for s in sig if s is not None), default=0)
            # racily clean: changed too recently to trust the signature next time
            entry["sig"] = sig if newest < scanned_at - RACY_SECONDS * 1e9 else None
            entries[stem] = entry
            changed = True
        if changed:
            self._save(entries)
        return {stem: entries[stem] for stem in wanted if stem in entries}
