"""Which sessions ``Store.load()`` rejects, remembered per file signature.

The frames read the raw JSON (fast), not the validated models; a file that parses but does
not have the shape a3s-code writes (a run without ``status``, a wrong type, an ``id`` that
differs from the file name, a broken artifacts manifest) would slip into them unnoticed.
So every frame first asks this module which of its sessions ``load()`` would refuse, and
leaves those out, listing them in ``df.attrs["errors"]``.

The answer is exact because it *is* ``Store.load``: there is no second description of the
models to drift from them. Validation costs several times a plain parse, so for a directory
store the verdict is kept in ``<store>/.a3s_nb/loadcheck.json`` together with the
``(mtime_ns, size)`` of every file of the session (the way the sessions index keys its
rows) and ``load`` runs again only for sessions whose files changed, appeared or vanished.
Like the index, a verdict on files changed within ``RACY_SECONDS`` of the check is not
trusted on the next call, the cache is written atomically (temp file + rename, so
concurrent writers cannot tear it; the last one wins, and a lost entry is only recomputed),
and a cache that is unreadable, foreign or of another version of the models is rebuilt,
never trusted.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ._cachefile import read_json, write_json
from .errors import CorruptFileError, SessionNotFoundError
from .store import PARTS, FileStore, Store, sdk_safe_id

log = logging.getLogger(__name__)

CACHE_FILE = "loadcheck.json"
CACHE_FORMAT = 1
RACY_SECONDS = 2.0

_MODELS_KEY: str | None = None


def _models_key() -> str:
    """Changes whenever the models (what ``load`` accepts) may have changed."""
    global _MODELS_KEY
    if _MODELS_KEY is None:
        from . import __version__, models, store

        h = hashlib.sha1(__version__.encode())
        for mod in (models, store):
            try:
                h.update(Path(mod.__file__ or "").read_bytes())
            except OSError:
                h.update(mod.__name__.encode())
        _MODELS_KEY = h.hexdigest()
    return _MODELS_KEY


def _stat(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_size]


def _scan_dir(path: Path) -> dict[str, list[int]]:
    """``name -> [mtime_ns, size]`` of the entries directly in ``path`` (links followed)."""
    out: dict[str, list[int]] = {}
    try:
        it = os.scandir(path)
    except OSError:
        return out
    with it:
        for entry in it:
            try:
                st = entry.stat()
            except OSError:  # vanished, or a dangling link: load() decides what that means
                out[entry.name] = [-1, -1]
                continue
            out[entry.name] = [st.st_mtime_ns, st.st_size]
    return out


_PROBE = "a3s-nb-layout-probe"


def path_templates(store: FileStore) -> dict[str, str]:
    """``part -> path`` with ``{}`` for the file stem, in the store's own layout.

    Asked of the store once (``FileStore.session_files``), then filled with plain string
    formatting: pathlib costs as much as parsing a small file.
    """
    return {
        part: str(path).replace("{", "{{").replace("}", "}}").replace(_PROBE, "{}")
        for part, path in store.session_files(_PROBE).items()
    }


def _signatures(store: FileStore, stems: Iterable[str]) -> dict[str, list]:
    """The signature of every file ``load`` reads, by session file stem (``PARTS`` order).

    A directory listing per part directory, and a stat per session for a part kept in a
    directory of its own (artifacts).
    """
    stems = list(stems)
    if not stems:
        return {}
    templates = path_templates(store)
    listed: list[tuple[dict[str, list[int]] | None, str]] = []
    for part in PARTS:
        directory, name = os.path.split(templates[part])
        if "{}" in directory:  # one directory per session
            listed.append((None, templates[part]))
        else:
            listed.append((_scan_dir(Path(directory)), name))
    out: dict[str, list] = {}
    for stem in stems:
        sig: list = []
        for scanned, pattern in listed:
            if scanned is None:
                sig.append(_stat(pattern.format(stem)))
            else:
                sig.append(scanned.get(pattern.format(stem)))
        out[stem] = sig
    return out


def _check(store: Store, session_id: str) -> dict[str, str] | None:
    """None if ``store.load(session_id)`` succeeds, else the problem as ``{path, problem}``."""
    try:
        store.load(session_id)
    except CorruptFileError as e:
        return {"path": e.path, "problem": e.problem}
    except SessionNotFoundError as e:
        return {"path": store.location(session_id), "problem": f"cannot be loaded: {e}"}
    except (RecursionError, MemoryError) as e:  # pragma: no cover - the store reports these
        return {"path": store.location(session_id), "problem": f"cannot be loaded: {e!r}"}
    except Exception as e:  # load() must name the file; whatever it raised, say so
        return {
            "path": store.location(session_id),
            "problem": f"cannot be loaded: {type(e).__name__}: {e}",
        }
    return None


class LoadCheck:
    """The load verdicts of one store (cached on disk for a directory store).

    For a directory store it also remembers ``store.list()`` while the store directory's
    modification time is unchanged (a session file created, renamed or removed changes
    it), so a warm call lists nothing.
    """

    def __init__(self, store: Store):
        self.store = store
        self.path = store.meta_dir / CACHE_FILE if isinstance(store, FileStore) else None
        self._data: dict[str, Any] | None = None
        self._dirty = False
        self._now = time.time_ns()
        #: The file signatures seen by the last ``rejected`` call, by stem (``PARTS`` order).
        self.signatures: dict[str, list] = {}

    def _cache(self) -> dict[str, Any]:
        if self._data is None:
            self._data = self._load()
        return self._data

    def _load(self) -> dict[str, Any]:
        empty: dict[str, Any] = {"listing": None, "entries": {}}
        if self.path is None:
            return empty
        data = read_json(self.path, "load-check cache")
        if (
            not isinstance(data, dict)
            or data.get("format") != CACHE_FORMAT
            or data.get("key") != _models_key()
            or not isinstance(data.get("entries"), dict)
        ):
            return empty
        entries = data["entries"]
        ok = all(
            isinstance(v, dict)
            and isinstance(v.get("sig"), list | None)
            and (v.get("error") is None or isinstance(v.get("error"), dict))
            for v in entries.values()
        )
        listing = data.get("listing")
        if not (
            isinstance(listing, dict)
            and isinstance(listing.get("sig"), list)
            and isinstance(listing.get("ids"), list)
            and all(isinstance(i, str) for i in listing["ids"])
        ):
            listing = None
        return {"listing": listing, "entries": entries} if ok else empty

    def save(self) -> None:
        """Write the cache if anything changed (atomically: temp file, fsync, rename)."""
        if self.path is None or not self._dirty:
            return
        data = self._cache()
        value = {"format": CACHE_FORMAT, "key": _models_key(), **data}
        write_json(self.path, value, "load-check cache", fsync=True)
        self._dirty = False

    def _trusted(self, sig: list) -> list | None:
        """``sig``, or None when a file in it changed too recently to trust it next time."""
        newest = max((s[0] for s in sig if s is not None), default=0)
        return sig if newest < self._now - RACY_SECONDS * 1e9 else None

    def ids(self) -> list[str]:
        """``store.list()``, from the cache while the store directory is unchanged."""
        if self.path is None:
            return self.store.list()
        assert isinstance(self.store, FileStore)
        sig = _stat(str(self.store.path))
        cache = self._cache()
        listing = cache["listing"]
        if sig is not None and listing is not None and listing["sig"] == sig:
            return list(listing["ids"])
        ids = self.store.list()
        trusted = self._trusted([sig]) if sig is not None else None
        cache["listing"] = {"sig": sig, "ids": ids} if trusted is not None else None
        self._dirty = True
        return ids

    def rejected(
        self,
        ids: list[str],
        progress: Callable[[list], Iterable] | None = None,
    ) -> dict[str, CorruptFileError]:
        """The sessions among ``ids`` that ``load()`` rejects, with its error."""
        if self.path is None:
            out = {}
            for sid in ids:
                err = _check(self.store, sid)
                if err is not None:
                    out[sid] = CorruptFileError(err["path"], err["problem"])
            return out
        assert isinstance(self.store, FileStore)
        stem_of = {sid: sdk_safe_id(sid) for sid in ids}
        current = self.signatures = _signatures(self.store, stem_of.values())
        entries = self._cache()["entries"]
        stale = [
            sid
            for sid, stem in stem_of.items()
            if stem not in entries
            or entries[stem].get("sig") is None
            or entries[stem].get("sig") != current[stem]
            or entries[stem].get("id") != sid
        ]
        if stale:
            for sid in progress(stale) if progress is not None else stale:
                stem = stem_of[sid]
                sig = current[stem]
                if sig[PARTS.index("session")] is None:  # deleted since listed
                    entries.pop(stem, None)
                    continue
                entries[stem] = {
                    "id": sid,
                    "sig": self._trusted(sig),
                    "error": _check(self.store, sid),
                }
            self._dirty = True
        out: dict[str, CorruptFileError] = {}
        for sid, stem in stem_of.items():
            err = entries.get(stem, {}).get("error")
            if err is not None:
                out[sid] = CorruptFileError(str(err.get("path")), str(err.get("problem")))
        return out
