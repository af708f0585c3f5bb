"""Where the frames read from: a store (read directly when it is a directory), or
SessionBundles and live sessions turned into the same raw JSON shapes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

from ..config import default_store_path
from ..errors import CorruptFileError
from ..sdk.capture import bundle_to_parts, is_session_like
from ..sdk.features import run_events
from ..store import _v1layout as v1
from ..store._json import loads as _loads
from ..store._metafiles import scandir
from ..store.models import SessionBundle
from ..store.store import (
    LINEAGE_DIR,
    FileStore,
    MemoryStore,
    Store,
    read_to_end,
    resolve_id,
    sdk_safe_id,
)
from ._loadcheck import LOCK_BATCH

# ============================================================================ sources

#: The files each frame reads.
_PARTS: dict[str, frozenset[str]] = {
    "sessions": frozenset({"session", "runs", "traces", "verification"}),
    "messages": frozenset({"session"}),
    "traces": frozenset({"session", "runs", "traces", "verification"}),
    "runs": frozenset({"session", "runs"}),
    "run_events": frozenset({"runs"}),
    "spans": frozenset({"runs"}),
    "verification": frozenset({"verification"}),
}
_RUN_FRAMES = frozenset({"runs", "run_events", "spans"})
_SESSION_FRAMES = frozenset({"sessions", "messages", "traces", "verification"})


class _Source:
    """Where sessions come from: a store, or bundles / live sessions held in memory."""

    store: Store | None = None
    label = "<sessions>"
    #: Whether the files are read directly and a3s_nb's caches of them may be used (a
    #: directory store, unless a pending journal must be read through).
    cached = False

    def ids(self) -> list[str]:
        raise NotImplementedError

    def read(self, session_id: str, parts: Iterable[str]) -> dict[str, Any]:
        """The raw JSON of the given parts (None when absent); CorruptFileError if bad."""
        raise NotImplementedError

    def gone(self, session_id: str) -> bool:
        """Whether a session listed earlier has no session file any more."""
        return False

    def read_all(
        self, ids: list[str], parts: list[str]
    ) -> Iterator[tuple[str, dict[str, Any] | CorruptFileError]]:
        """``(id, parts)`` for each id, or ``(id, error)`` when one of its files is bad."""
        for key in ids:
            try:
                yield key, self.read(key, parts)
            except CorruptFileError as err:
                yield key, err


class _StoreSource(_Source):
    def __init__(self, store: Store):
        self.store = store
        self.label = str(store)
        # A directory store is read directly (plain open + json.loads: pathlib costs as
        # much as parsing a small file); anything unusual goes through Store.read_raw,
        # so errors are the store's own.
        direct = isinstance(store, FileStore) and not store.reads_through_journal()
        self.cached = direct
        self.root = str(store.path) if direct else None  # type: ignore[attr-defined]
        self.templates = store.path_templates() if isinstance(store, FileStore) else {}
        self._lineage: set[str] | None = None
        self._v1: set[str] | None = None  # the v1 stems of the store, listed once

    def _by_v1_rules(self, session_id: str) -> bool:
        """Whether a session has files in a3s-code's v1 layout (then the store reads it,
        by a3s-code's rules, instead of the flat fast path)."""
        if self._v1 is None:
            self._v1 = self.store.v1_stems()  # type: ignore[union-attr]
        return bool(self._v1) and v1.v1_name(session_id) in self._v1

    def ids(self) -> list[str]:
        return self.store.list()

    def has_lineage(self, session_id: str) -> bool:
        """False when a directory store holds no lineage record for the session (its
        lineage files are listed once, not looked for one by one)."""
        if self.root is None:
            return True
        if self._lineage is None:
            names = [e.name for e in scandir(self.store.meta_dir / LINEAGE_DIR)]
            self._lineage = {n[:-5] for n in names if n.endswith(".json")}
        return v1.file_key(session_id) in self._lineage or sdk_safe_id(session_id) in self._lineage

    def gone(self, session_id: str) -> bool:
        if self.root is not None:
            return not os.path.lexists(self.templates["session"].format(sdk_safe_id(session_id)))
        return not self.store.exists(session_id)

    def _read_file(self, session_id: str, part: str) -> Any:
        path = self.templates[part].format(sdk_safe_id(session_id))
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                data = read_to_end(fd, os.fstat(fd).st_size)
            finally:
                os.close(fd)
            if data:
                if part != "runs":
                    return _loads(data)
                # the run files, most of the bytes, are decoded into typed records (the
                # classes of which are made when the first is read)
                from ._runfile import decode

                return decode(data)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, RecursionError):  # unreadable, not UTF-8, not JSON
            pass
        return self._read_raw(session_id, part)

    def _read_raw(self, session_id: str, part: str) -> Any:
        try:
            return self.store.read_raw(session_id, part)  # type: ignore[arg-type]
        except CorruptFileError:
            raise
        except (RecursionError, ValueError) as e:  # too deep, a number too long
            raise CorruptFileError(
                self.store.location(session_id, part),  # type: ignore[arg-type]
                f"cannot be parsed: {type(e).__name__}: {e}",
            ) from None

    def _read_parts(self, session_id: str, parts: Iterable[str]) -> dict[str, Any]:
        if self.root is not None:
            if self._by_v1_rules(session_id):
                return self._read_by_rules(session_id, parts)
            out = {part: self._read_file(session_id, part) for part in parts}
            if self._root_envelope(session_id, out):
                return self._read_by_rules(session_id, parts)
            return out
        return {part: self._read_raw(session_id, part) for part in parts}

    def _root_envelope(self, session_id: str, read: dict[str, Any]) -> bool:
        """Whether a flat session file is a snapshot envelope, which holds every part:
        seen in the session read, else (only when a fragment file is missing) in the
        file's first bytes."""
        if "session" in read:
            return v1.is_envelope(read["session"])
        if all(value is not None for value in read.values()):
            return False
        return v1.starts_as_envelope(self.templates["session"].format(sdk_safe_id(session_id)))

    def _read_by_rules(self, session_id: str, parts: Iterable[str]) -> dict[str, Any]:
        try:
            return self.store.read_parts(session_id, parts)  # type: ignore[union-attr]
        except CorruptFileError:
            raise
        except (RecursionError, ValueError) as e:  # too deep, a number too long
            raise CorruptFileError(
                self.store.location(session_id),  # type: ignore[union-attr]
                f"cannot be parsed: {type(e).__name__}: {e}",
            ) from None

    def read(self, session_id: str, parts: Iterable[str]) -> dict[str, Any]:
        with self.store.lock(shared=True):
            return self._read_parts(session_id, parts)

    def read_all(
        self, ids: list[str], parts: list[str]
    ) -> Iterator[tuple[str, dict[str, Any] | CorruptFileError]]:
        # The shared lock is taken per batch of sessions: an a3s_nb save in another kernel
        # is never seen half done, and a writer waits for one batch, not a whole frame.
        for start in range(0, len(ids), LOCK_BATCH):
            batch: list[tuple[str, Any]] = []
            with self.store.lock(shared=True):
                for key in ids[start : start + LOCK_BATCH]:
                    try:
                        batch.append((key, self._read_parts(key, parts)))
                    except CorruptFileError as err:
                        batch.append((key, err))
            yield from batch


class _ObjectSource(_Source):
    """SessionBundles and live sessions (``a3s_code.Session`` or look-alikes)."""

    def __init__(self, objects: Iterable[Any]):
        self.objects: dict[str, Any] = {}
        for obj in objects:
            self.objects[_object_id(obj)] = obj

    def ids(self) -> list[str]:
        return list(self.objects)

    def read(self, session_id: str, parts: Iterable[str]) -> dict[str, Any]:
        obj = self.objects[session_id]
        if isinstance(obj, SessionBundle):
            files = bundle_to_parts(obj)  # the files' JSON, as the store writes it
            return {part: files.get(part) for part in parts}
        return {part: _live_part(obj, part) for part in parts}


def _object_id(obj: Any) -> str:
    if isinstance(obj, SessionBundle):
        return obj.session.id
    sid = obj.session_id
    return str(sid() if callable(sid) else sid)


def _live_part(live: Any, part: str) -> Any:
    # a3s_code.Session returns plain dicts and lists shaped like the files (run events
    # aside: envelopes from 5.0 on)
    if part == "session":
        workspace = getattr(live, "workspace", None)
        if callable(workspace):
            workspace = workspace()
        return {
            "id": _object_id(live),
            "config": {"workspace": workspace},
            "messages": list(live.history() or []),
        }
    if part == "runs":  # events as records, whichever shape the SDK gives them in
        return [
            {"snapshot": snap, "events": run_events(live, snap["id"])}
            for snap in (live.runs() or [])
        ]
    method = {"traces": "trace_events", "verification": "verification_reports"}[part]
    fn = getattr(live, method, None)
    return list(fn() or []) if fn is not None else []


def _open_source(source: Any) -> _Source:
    if source is None or isinstance(source, (str, os.PathLike)):
        if source is not None and str(source) == ":memory:":
            return _StoreSource(MemoryStore())
        if source is None:
            source = default_store_path()
        # reading never creates a store directory: a typo must not leave one behind
        return _StoreSource(FileStore(source, create=False))
    if isinstance(source, Store):
        return _StoreSource(source)
    if isinstance(source, SessionBundle) or is_session_like(source):
        return _ObjectSource([source])
    if isinstance(source, (list, tuple)) and all(
        isinstance(s, SessionBundle) or is_session_like(s) for s in source
    ):
        return _ObjectSource(source)
    raise TypeError(
        "source must be a store path, a Store, a SessionBundle, a live session or a list "
        f"of bundles / live sessions, not {type(source).__name__}"
    )


def _resolve_ids(requested: str | Iterable[str] | None, known: list[str], label: str):
    """The requested session ids (exact ids or unique prefixes), in request order."""
    if requested is None:
        return None
    if isinstance(requested, str):
        requested = [requested]
    known_set = set(known)
    # in order, each once, looked up in O(1): the frame cache asks for thousands at once
    out: dict[str, None] = {}
    for rid in requested:
        match = rid if rid in known_set else resolve_id(rid, known, label)
        out.setdefault(match)
    return list(out)
