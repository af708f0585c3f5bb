"""Which sessions ``Store.load()`` rejects, remembered per file signature.

The frames read the raw JSON (fast), not the validated models; a file that parses but does
not have the shape a3s-code writes (a run without ``status``, a wrong type, an ``id`` that
differs from the file name, a broken artifacts manifest) would slip into them unnoticed.
So every frame first asks this module which of its sessions ``load()`` would refuse, and
leaves those out, listing them in ``df.attrs["errors"]``.

The answer is exact because it *is* ``Store.load``: there is no second description of the
models to drift from them. Validation costs several times a plain parse, so for a directory
store the verdict is kept in ``<store>/.a3s_nb/loadcheck.json`` together with the
``(mtime_ns, size, inode, ctime_ns)`` of every file of the session (the way the sessions index keys its
rows) and ``load`` runs again only for sessions whose files changed, appeared or vanished.
Like the index, a verdict on files changed within ``RACY_SECONDS`` of the check is not
trusted on the next call, the cache is written atomically (temp file + rename, so
concurrent writers cannot tear it; the last one wins, and a lost entry is only recomputed),
and a cache that is unreadable, foreign or of another version of the models is rebuilt,
never trusted.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import CorruptFileError, SessionNotFoundError
from ..store import _v1layout as v1
from ..store import models
from ..store import store as stores
from ..store._cachefile import digest, read_json, read_json_head, source_digest, write_json
from ..store._watch import Slot, Watches, scan_dirs, signature
from ..store.store import _PROBE, PARTS, FileStore, Store, sdk_safe_id
from . import _fastcheck

log = logging.getLogger(__name__)

CACHE_FILE = "loadcheck.json"
CACHE_FORMAT = 3
RACY_SECONDS = 2.0


@functools.cache
def _models_key() -> str:
    """Changes whenever the models (what ``load`` accepts) may have changed."""
    return source_digest(
        __version__, [mod.__file__ or mod.__name__ for mod in (models, stores, v1, _fastcheck)]
    )


@functools.cache
def code_digest() -> str:
    """A digest of this build of a3s_nb's reading code: its version and every module of
    ``a3s_nb.frames`` (the builders, their column conversion, the walk over run events,
    the search index's texts...) and of ``a3s_nb.store`` (trace origins, token sums, the
    layouts read; the models among them, so it changes with ``_models_key``). The caches of
    values computed from the files (frames, sessions index, search index) are keyed by it:
    an edited checkout under the same version number computes them again."""
    return source_digest(__version__, _code_files())


def _code_files() -> list[Path]:
    frames = Path(__file__).parent
    return sorted(p for d in (frames, frames.parent / "store") for p in d.glob("*.py"))


def _stat(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return signature(st)


#: The store scans of this process: a store scanned again is watched (``_watch``).
_WATCHES = Watches()


#: The stem of a session read by a3s-code's v1 rules: ``v1/id_<b64>`` (a flat stem never
#: holds a ``/``), so ids the flat names merge (``a/b``, ``a_b``) keep apart in every cache.
V1_STEM = "v1/"


def stems_in(store: Store, ids: list[str]) -> list[str]:
    """The stem each session's files are found (and cached) under: ``sdk_safe_id(id)``,
    or ``v1/<v1 name>`` for a session with any file in a3s-code's v1 layout."""
    stems = stems_of(ids)
    names = store.v1_stems() if isinstance(store, FileStore) else set()
    if not names:  # a store without v1/: nothing more to look up
        return stems
    out = []
    for sid, stem in zip(ids, stems, strict=True):
        name = v1.v1_name(sid)
        out.append(V1_STEM + name if name in names else stem)
    return out


def id_of_stem(stem: str) -> str:
    """The session id to read a stem's session by (a flat stem reads as itself)."""
    if stem.startswith(V1_STEM):
        return v1.decode_v1_name(stem[len(V1_STEM) :]) or stem
    return stem


def _slots(store: FileStore, parts: tuple[str, ...]) -> list[tuple[str, Slot]]:
    """``(key, slot)`` of each directory ``scan`` lists: a part's own, then (a store with
    ``v1/``) each part's v1 directory, keyed ``v1/<part>``."""
    files = store.session_files(_PROBE)
    out = []
    for part in parts:
        directory, name = os.path.split(str(files[part]))  # type: ignore[index]
        leaf = ""
        if _PROBE not in name:  # ``<dir>/<stem>/<leaf>``: a directory per session
            directory, name, leaf = *os.path.split(directory), name
        if _PROBE not in name or _PROBE in directory:  # pragma: no cover - not a3s-code's
            raise ValueError(f"unsupported store layout: {files[part]}")  # type: ignore[index]
        head, _, tail = name.partition(_PROBE)
        out.append((part, Slot(directory, head, tail, leaf)))
    base = os.path.join(str(store.path), v1.V1_DIR)
    if os.path.isdir(base):
        for part in parts:
            if part == "session":
                slot = Slot(os.path.join(base, "sessions"), "", ".json")
            elif part == "artifacts":
                slot = Slot(os.path.join(base, "artifacts"), "", "", "artifacts.json")
            else:
                slot = Slot(os.path.join(base, v1.FRAGMENT_DIRS[part]), "", ".json")
            out.append((V1_STEM + part, slot))
    return out


def _add_v1(found: dict[str, dict[str, list[int]]], out: dict[str, dict[str, list[int]]]) -> None:
    """Add the sessions with files under ``v1/`` (``found``: ``part -> v1 name ->
    signature``) to a ``scan`` result, under ``v1/<name>``: per part, the signature of the
    file a3s-code reads it from (the v1 one, else the root one). A snapshot envelope holds
    every part, so its signature changes with any of them."""
    names = {n for files in found.values() for n in files if n.startswith("id_")}
    flat_stem = {n: sdk_safe_id(v1.decode_v1_name(n) or "") for n in names}
    for part, files in found.items():
        flat = out.get(part, {})
        for name in names:
            sig = files.get(name) or flat.get(flat_stem[name])
            if sig is not None:
                out[part][V1_STEM + name] = sig


def scan(store: FileStore, parts: Iterable[str] = PARTS) -> dict[str, dict[str, list[int]]]:
    """The signature of every file of the given parts in the store, as ``part -> stem ->
    signature`` (a file that does not exist has no entry): one listing per part
    directory, one ``stat`` per file, or, for a store this process scanned before, what
    changed since by the kernel's watch (``_watch``). Sessions in a3s-code's v1 layout are
    under ``v1/<name>`` (see ``stems_in``)."""
    parts = tuple(parts)
    keyed = _slots(store, parts)
    found = _WATCHES.scan(str(store.path), tuple(slot for _, slot in keyed), scan_dirs)
    raw = dict(zip((key for key, _ in keyed), found, strict=True))
    out = {part: raw[part] for part in parts}
    if len(raw) > len(parts):
        _add_v1({part: raw[V1_STEM + part] for part in parts}, out)
    return out


#: The ``errors`` entry's problem for a session listed for a build (or an export) but
#: deleted before it was read: it is left out, as a corrupt one is, and said so.
VANISHED = "was deleted while it was being read; left out"


def vanished(path: str | os.PathLike[str]) -> CorruptFileError:
    """How a session deleted between its listing and its reading is reported."""
    return CorruptFileError(path, VANISHED)


def _check(store: Store, session_id: str) -> dict[str, str] | None:
    """None if ``store.load(session_id)`` succeeds, else the problem as ``{path, problem}``
    (``VANISHED`` when the session was deleted since it was listed).

    A session the stricter typed decode of ``_fastcheck`` accepts is one ``load`` accepts
    (proved there, tested against ``load`` in tests/test_fastcheck.py); any other is
    loaded, for its exact verdict and message."""
    if _fastcheck.accepts(store, session_id):
        return None
    try:
        store.load(session_id)
    except CorruptFileError as e:
        return {"path": e.path, "problem": e.problem}
    except SessionNotFoundError:
        return {"path": store.location(session_id), "problem": VANISHED}
    except (RecursionError, MemoryError) as e:  # pragma: no cover - the store reports these
        return {"path": store.location(session_id), "problem": f"cannot be loaded: {e!r}"}
    except Exception as e:  # load() must name the file; whatever it raised, say so
        return {
            "path": store.location(session_id),
            "problem": f"cannot be loaded: {type(e).__name__}: {e}",
        }
    return None


#: Sessions checked under one taking of the store's shared lock (as the frames read them).
LOCK_BATCH = 32


def _locked_batches(store: Store, items: Iterable[str]) -> Iterator[str]:
    """``items``, each batch of ``LOCK_BATCH`` yielded under the store's shared lock: the
    ``load`` of each then reuses the lock held instead of taking it (a writer waits for
    one batch at most)."""
    it = iter(items)
    while batch := list(itertools.islice(it, LOCK_BATCH)):
        with store.lock(shared=True):
            yield from batch


def stems_of(ids: list[str]) -> list[str]:
    """``[sdk_safe_id(i) for i in ids]`` in one call (thousands of ids on every call):
    ``sdk_safe_id`` replaces substrings, none of which spans the NUL that joins them."""
    stems = sdk_safe_id("\x00".join(ids)).split("\x00")
    if len(stems) != len(ids):  # no ids, or an id with a NUL (no file can have it)
        return [sdk_safe_id(i) for i in ids]
    return stems


def changed_stems(
    before: dict[str, dict[str, list[int]]], now: dict[str, dict[str, list[int]]]
) -> set[str]:
    """The stems any of whose files differ between two ``scan`` results (of these parts)."""
    out: set[str] = set()
    for part, files in now.items():
        old = before.get(part)
        if old == files:  # the common case, compared at C speed
            continue
        if not isinstance(old, dict):
            old = {}
        out.update(s for s in files.keys() ^ old.keys())
        out.update(s for s, sig in files.items() if s in old and old[s] != sig)
    return out


def record(
    files: dict[str, dict[str, list[int]]],
    scanned: dict[str, dict[str, list[int]]],
    parts: Iterable[str],
    stem: str,
) -> None:
    """Put the signatures ``scan`` found for ``stem``'s files into ``files`` (a cache's
    record of the files a result was computed from); a file gone is dropped."""
    for part in parts:
        sig = scanned[part].get(stem)
        if sig is None:
            files.get(part, {}).pop(stem, None)
        else:
            files.setdefault(part, {})[stem] = sig


def newest(scanned: dict[str, dict[str, list[int]]], stem: str) -> int:
    """The newest modification time of the files of ``stem`` in a ``scan`` result."""
    return max((files[stem][0] for files in scanned.values() if stem in files), default=0)


class LoadCheck:
    """The load verdicts of one store (cached on disk for a directory store).

    For a directory store it also remembers ``store.list()`` while the store directory's
    modification time is unchanged (a session file created, renamed or removed changes
    it), so a warm call lists nothing.

    The cache keeps, per part, the signatures of the files each verdict was reached on
    (``files``: the shape of a ``scan``), so that a call on an unchanged store compares a
    few dicts, and a changed store rechecks exactly the sessions whose files differ.
    """

    def __init__(self, store: Store, *, cached: bool = True):
        self.store = store
        cached = cached and isinstance(store, FileStore)
        self.path = store.meta_dir / CACHE_FILE if cached else None  # type: ignore[attr-defined]
        self._data: dict[str, Any] | None = None
        self._head_data: dict[str, Any] | None = None
        self._dirty = False
        self._now = time.time_ns()
        #: The files seen by the last ``rejected`` call: ``part -> stem -> signature``.
        self.scanned: dict[str, dict[str, list[int]]] = {}
        #: The file stem of each session id of the last ``rejected`` call.
        self.stems: dict[str, str] = {}
        #: A digest of ``scanned``.
        self.digest: str | None = None

    def _cache(self) -> dict[str, Any]:
        if self._data is None:
            self._data = self._load()
        return self._data

    def _load(self) -> dict[str, Any]:
        empty: dict[str, Any] = {
            "listing": None,
            "files": {},
            "untrusted": [],
            "entries": {},
            "clean": None,
            "rejected": {},
        }
        if self.path is None:
            return empty
        data = read_json(self.path, "load-check cache")
        if (
            not isinstance(data, dict)
            or data.get("format") != CACHE_FORMAT
            or data.get("key") != _models_key()
            or not isinstance(data.get("entries"), dict)
            or not isinstance(data.get("files"), dict)
            or not isinstance(data.get("untrusted"), list)
        ):
            return empty
        entries, files = data["entries"], data["files"]
        ok = all(
            isinstance(v, dict)
            and isinstance(v.get("id"), str)
            and (v.get("error") is None or isinstance(v.get("error"), dict))
            for v in entries.values()
        ) and all(
            part in PARTS
            and isinstance(sigs, dict)
            and all(isinstance(sig, list) for sig in sigs.values())
            for part, sigs in files.items()
        )
        listing = data.get("listing")
        if not (
            isinstance(listing, dict)
            and isinstance(listing.get("sig"), list)
            and isinstance(listing.get("ids"), list)
            and all(isinstance(i, str) for i in listing["ids"])
        ):
            listing = None
        if not ok:
            return empty
        return {
            "listing": listing,
            "files": files,
            "untrusted": [s for s in data["untrusted"] if isinstance(s, str)],
            "entries": entries,
            "clean": data.get("clean") if isinstance(data.get("clean"), str) else None,
            "rejected": data.get("rejected") if isinstance(data.get("rejected"), dict) else {},
        }

    def _head(self) -> dict[str, Any] | None:
        """The small part of the cache a warm call needs (see ``rejected``), or None."""
        if self._head_data is None and self.path is not None and self._data is None:
            head = read_json_head(self.path, "load-check cache")
            ok = (
                isinstance(head, dict)
                and head.get("format") == CACHE_FORMAT
                and head.get("key") == _models_key()
            )
            self._head_data = head if ok else {}
        return self._head_data or None

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
        # the root lists the flat sessions, v1/sessions the others (a3s-code 5.x+)
        sigs = [_stat(str(self.store.path)), _stat(str(self.store.path / v1.V1_DIR / "sessions"))]
        sig = sigs if sigs[0] is not None else None
        head = self._head()
        listing = head.get("listing") if head is not None else None
        if (
            sig is not None
            and isinstance(listing, dict)
            and listing.get("sig") == sig
            and isinstance(listing.get("ids"), list)
            and all(isinstance(i, str) for i in listing["ids"])
        ):
            return list(listing["ids"])
        cache = self._cache()
        listing = cache["listing"]
        if sig is not None and listing is not None and listing["sig"] == sig:
            return list(listing["ids"])
        ids = self.store.list()
        trusted = self._trusted(sigs) if sig is not None else None
        cache["listing"] = {"sig": sig, "ids": ids} if trusted is not None else None
        self._dirty = True
        return ids

    def rejected(
        self,
        ids: list[str],
        progress: Callable[[list], Iterable] | None = None,
        verdicts: Callable[[list[str]], dict[str, Any]] | None = None,
    ) -> dict[str, CorruptFileError]:
        """The sessions among ``ids`` that ``load()`` rejects, with its error.

        ``verdicts(ids)``, when given, reaches ``_check``'s verdicts on the sessions to
        check in one go (``_parallel.check``: in worker processes); any it leaves out is
        checked here."""
        if self.path is None:
            out = {}
            for sid in ids:
                err = _check(self.store, sid)
                if err is not None:
                    out[sid] = CorruptFileError(err["path"], err["problem"])
            return out
        assert isinstance(self.store, FileStore)
        stem_of = dict(zip(ids, stems_in(self.store, ids), strict=True))
        self.stems = stem_of
        current = self.scanned = scan(self.store)
        self.digest = digest(current)
        clean = digest([self.digest, ids])
        head = self._head()
        if head is not None and head.get("clean") == clean:
            # every verdict trusted, on exactly these files, for exactly these sessions
            found = head.get("rejected")
            if isinstance(found, dict) and all(
                isinstance(e, dict) and sid in stem_of for sid, e in found.items()
            ):
                return {
                    sid: CorruptFileError(str(e.get("path")), str(e.get("problem")))
                    for sid, e in found.items()
                }
        cache = self._cache()
        entries, files = cache["entries"], cache["files"]
        recheck = changed_stems(files, current)
        recheck.update(cache["untrusted"])
        stale = [
            sid
            for sid, stem in stem_of.items()
            if stem in recheck or stem not in entries or entries[stem]["id"] != sid
        ]
        gone_now: dict[str, dict] = {}  # deleted between the scan and load(): not cached
        if stale:
            untrusted = set(cache["untrusted"])
            limit = self._now - RACY_SECONDS * 1e9
            ready = (
                verdicts([sid for sid in stale if stem_of[sid] in current["session"]])
                if verdicts is not None
                else {}
            )
            checking = progress(stale) if progress is not None else stale
            for sid in _locked_batches(self.store, checking):
                stem = stem_of[sid]
                record(files, current, PARTS, stem)  # what the verdict is reached on
                if stem not in current["session"]:  # deleted since listed
                    entries.pop(stem, None)
                    untrusted.discard(stem)
                    continue
                error = ready[sid] if sid in ready else _check(self.store, sid)
                if error is not None and error["problem"] == VANISHED:
                    entries.pop(stem, None)
                    untrusted.discard(stem)
                    gone_now[sid] = error
                    continue
                entries[stem] = {"id": sid, "error": error}
                if newest(current, stem) >= limit:  # racily clean: look again next time
                    untrusted.add(stem)
                else:
                    untrusted.discard(stem)
            cache["untrusted"] = sorted(untrusted)
            self._dirty = True
        gone = [stem for stem in entries if stem not in current["session"]]
        for stem in gone:  # sessions deleted: their verdicts and signatures go too
            del entries[stem]
            for sigs in files.values():
                sigs.pop(stem, None)
            self._dirty = True
        # so does the distrust of a session without a verdict now (deleted, here or by
        # ``index.forget``): kept, it would keep every later call off the head
        trusting = [stem for stem in cache["untrusted"] if stem in entries]
        if len(trusting) != len(cache["untrusted"]):
            cache["untrusted"] = trusting
            self._dirty = True
        out: dict[str, CorruptFileError] = {}
        found: dict[str, dict] = {}
        for sid, stem in stem_of.items():
            err = gone_now.get(sid) or entries.get(stem, {}).get("error")
            if err is not None:
                found[sid] = err
                out[sid] = CorruptFileError(str(err.get("path")), str(err.get("problem")))
        listing = cache["listing"]
        whole = listing is not None and listing["ids"] == ids
        # what a next call on the same files and sessions may answer from the head alone
        clean_now = clean if whole and not cache["untrusted"] and not gone_now else None
        if cache.get("clean") != clean_now:
            cache["clean"], cache["rejected"] = clean_now, found if clean_now else {}
            self._dirty = True
        return out
