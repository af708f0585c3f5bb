"""Session stores: a3s-code's ``FileSessionStore`` layout, read and written compatibly.

The 3.x flat layout, as the real SDK writes it::

    <dir>/<id>.json                      SessionData
    <dir>/runs/<id>.json                 [RunRecord]
    <dir>/traces/<id>.json               [TraceEvent]
    <dir>/verification/<id>.json         [VerificationReport]
    <dir>/artifacts/<id>/artifacts.json  {"artifacts": [ToolArtifact]}
    <dir>/subagent_tasks/<id>.json       [SubagentTaskSnapshot]     (3.3+, when present)
    <dir>/loop_checkpoints/<run>.json    LoopCheckpoint             (3.3+)
    <dir>/workflow_checkpoints/<wf>.json WorkflowCheckpoint         (3.4+)

Files are pretty JSON with a 2-space indent and no trailing newline, exactly like serde's
``to_string_pretty``, so an SDK-written session saved back unchanged is byte-identical.

Where a3s_nb is deliberately stricter than the SDK: a save or delete of a session is all or
nothing even if the process is killed or the power fails half way (a journal under
``<dir>/.a3s_nb/``, finished by the next process that takes the lock: see
:class:`FileStore`); saves and loads of one store take a file lock, so two kernels never
interleave a session's files; ids that the SDK would silently rewrite (and so collide), or
that hold invisible characters or are not NFC, are refused; a corrupt file, or anything
odd where a file should be, is a ``CorruptFileError`` naming it and leaves the other
sessions loadable; nothing is written through a symbolic link that leaves the store.
"""

from __future__ import annotations

import abc
import contextlib
import errno
import itertools
import json
import os
import re
import shutil
import stat
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

try:
    import fcntl
except ImportError:  # Windows: no flock; stores are then safe between threads only
    fcntl = None  # type: ignore[assignment]

from ..config import default_store_path
from ..errors import (
    A3sNbError,
    AmbiguousSessionIdError,
    CorruptFileError,
    InvalidBundleError,
    InvalidSessionIdError,
    SdkOwnedSessionError,
    SessionNotFoundError,
    StoreError,
    StoreWriteError,
    describe_validation_error,
)
from . import _fsio as fsio
from . import _metafiles as meta
from . import _v1layout as v1
from .models import (
    ArtifactManifest,
    LoopCheckpoint,
    RunRecord,
    SessionBundle,
    SessionData,
    SubagentTaskSnapshot,
    TraceEvent,
    VerificationReport,
    WorkflowCheckpoint,
)
from .serde import dumps, serde_float  # noqa: F401 (serde_float: re-exported)

Part = Literal["session", "runs", "traces", "verification", "artifacts", "subagent_tasks"]

#: The per-session files, in the order a3s_nb commits them (session document last, so a
#: reader that sees the session file sees its fragments too).
PARTS: tuple[Part, ...] = (
    "artifacts",
    "traces",
    "runs",
    "verification",
    "subagent_tasks",
    "session",
)

#: Where each per-session file lives, relative to the store: ``(directory, file name)``,
#: with ``{}`` standing for the session's file stem (``sdk_safe_id(session_id)``). The one
#: spelling of the layout: other modules ask ``FileStore.session_files`` or this table.
LAYOUT: dict[Part, tuple[str, str]] = {
    "artifacts": ("artifacts/{}", "artifacts.json"),
    "traces": ("traces", "{}.json"),
    "runs": ("runs", "{}.json"),
    "verification": ("verification", "{}.json"),
    "subagent_tasks": ("subagent_tasks", "{}.json"),
    "session": ("", "{}.json"),
}

#: A stem no session has, to learn a store's file names from (``path_templates``).
_PROBE = "a3s-nb-layout-probe"

# built on first use, as the models are (defer_build): a call that validates nothing, such
# as a cached frame call, never pays for the validators
_DEFER = ConfigDict(defer_build=True)
_ADAPTERS: dict[str, TypeAdapter[Any]] = {
    "session": TypeAdapter(SessionData),
    "runs": TypeAdapter(list[RunRecord], config=_DEFER),
    "traces": TypeAdapter(list[TraceEvent], config=_DEFER),
    "verification": TypeAdapter(list[VerificationReport], config=_DEFER),
    "artifacts": TypeAdapter(ArtifactManifest),
    "subagent_tasks": TypeAdapter(list[SubagentTaskSnapshot], config=_DEFER),
}

_MAX_ID_BYTES = 200
_ID_AT_START = re.compile(rb'\A\{\s*"id"\s*:\s*("(?:[^"\\]|\\.)*")')

M = TypeVar("M", bound=BaseModel)


class Parsed:
    """One part of a session read already parsed (out of a snapshot envelope, where the
    parts share one file): its value, the file, and where in it (for messages)."""

    __slots__ = ("field", "value", "where")

    def __init__(self, value: Any, where: str | os.PathLike[str], field: str):
        self.value = value
        self.where = str(where)
        self.field = field


def _to_jsonable(part: str, value: Any) -> Any:
    return _ADAPTERS[part].dump_python(value, mode="json", by_alias=True)


def validate_session_id(session_id: str) -> str:
    """Return ``session_id`` if a3s_nb may save a session under it, else raise.

    a3s-code silently rewrites ``/``, ``\\`` and ``..`` to ``_``, so ``a/b`` and ``a_b`` would
    share one file; a3s_nb refuses such ids instead of letting them collide. Invisible
    characters are refused too: every Unicode control (Cc, including U+0085) and format
    character (Cf: zero-width spaces and joiners, bidi overrides such as U+202E), and the
    line and paragraph separators U+2028/U+2029, which would make two different ids look
    the same, or an id look like another, in a listing.

    Ids must be in Unicode NFC form: ``"café"`` typed as ``e`` + U+0301 (NFD) is refused,
    with the NFC spelling to use. Both spellings show as one name, and macOS file systems
    treat them as one file name, so saving both would make two "different" sessions share
    (or silently overwrite) one file; refusing the rare NFD spelling, rather than quietly
    normalising it, keeps the id that is saved exactly the id the user gave. Looking a
    session up (``load``, ``exists``, ``delete``, ``resolve``) with an NFD spelling finds
    the NFC one.
    """
    if not isinstance(session_id, str) or not session_id:
        raise InvalidSessionIdError("a session id must be a non-empty string")
    problem = None
    invisible = next(
        (c for c in session_id if unicodedata.category(c) in _INVISIBLE_CATEGORIES), None
    )
    if "/" in session_id or "\\" in session_id:
        problem = "contains a path separator"
    elif ".." in session_id:
        problem = "contains '..'"
    elif invisible is not None:
        kind = "control" if unicodedata.category(invisible) == "Cc" else "invisible"
        name = unicodedata.name(invisible, "unnamed")
        problem = f"contains the {kind} character U+{ord(invisible):04X} ({name})"
    elif session_id.startswith("."):
        problem = "starts with '.' (it would be a hidden file)"
    elif session_id != session_id.strip():
        problem = "has leading or trailing white space"
    elif unicodedata.normalize("NFC", session_id) != session_id:
        nfc = unicodedata.normalize("NFC", session_id)
        raise InvalidSessionIdError(
            f"session id {session_id!r} is not in Unicode NFC form: save it as {nfc!r}, which "
            "looks the same (macOS would store both spellings as one file name)"
        )
    elif len(session_id.encode()) > _MAX_ID_BYTES:
        problem = f"is longer than {_MAX_ID_BYTES} bytes"
    if problem:
        raise InvalidSessionIdError(
            f"session id {session_id!r} {problem}; use letters, digits, '-', '_' and '.'"
        )
    return session_id


#: Unicode categories refused in ids: controls, format characters (zero-width, bidi),
#: surrogates (not text at all), line and paragraph separators.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_MAX_NAME_BYTES = 250  # a file name is at most 255 bytes, and a3s-code adds ".json"


def lookup_session_id(session_id: Any) -> str:
    """Return ``session_id`` if some store file could be named by it, else raise.

    Looser than :func:`validate_session_id`, since a3s-code writes ids that a3s_nb would
    not (``a/b``, filed as ``a_b.json``): only a non-string, an empty string, NUL, a lone
    surrogate and a name too long for a file are ``InvalidSessionIdError``.
    """
    if not isinstance(session_id, str):
        raise InvalidSessionIdError(
            f"a session id must be a string, not {type(session_id).__name__} ({session_id!r})"
        )
    if not session_id:
        raise InvalidSessionIdError("a session id must be a non-empty string")
    if "\x00" in session_id:
        raise InvalidSessionIdError(f"session id {session_id!r} contains NUL")
    try:
        # surrogateescape: a file name that is not UTF-8 lists as such an id, and loads
        name = sdk_safe_id(session_id).encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise InvalidSessionIdError(
            f"session id {session_id!r} contains a lone surrogate, which is not text"
        ) from None
    if len(name) > _MAX_NAME_BYTES:
        raise InvalidSessionIdError(
            f"session id {session_id[:40]!r}... is {len(name)} bytes long: no store file "
            f"can have a name that long (at most {_MAX_NAME_BYTES})"
        )
    return session_id


def parse_json(text: str | bytes, where: str | os.PathLike[str]) -> Any:
    """``json.loads(text)``, with every way a file can fail to parse a ``CorruptFileError``
    naming ``where``: empty, truncated, not UTF-8, nested too deep, an integer too long."""
    if not text.strip():
        raise CorruptFileError(where, "file is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise CorruptFileError(
            where,
            f"not valid JSON ({e.msg.removesuffix(' at')} at line {e.lineno} column "
            f"{e.colno}; truncated by an interrupted write?)",
        ) from None
    except UnicodeDecodeError as e:
        raise CorruptFileError(where, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    except RecursionError:
        raise CorruptFileError(
            where, "nested too deeply to read (arrays or objects thousands of levels deep)"
        ) from None
    except ValueError as e:  # int_max_str_digits
        raise CorruptFileError(
            where, f"holds an integer too long to read ({str(e).split(':')[0]})"
        ) from None


def sdk_safe_id(session_id: str) -> str:
    """The file stem a3s-code 3.x uses for ``session_id`` (its ``safe_session_id``)."""
    return session_id.replace("/", "_").replace("\\", "_").replace("..", "_")


def resolve_id(id_or_prefix: str, ids: list[str], where: str) -> str:
    """The one id of ``ids`` that is ``id_or_prefix`` or starts with it (as given or in NFC).

    Raises :class:`AmbiguousSessionIdError` for several, else :class:`SessionNotFoundError`
    naming ``where`` (with close matches). Used by ``Store.resolve`` and the frames' ``ids=``.
    """
    nfc = unicodedata.normalize("NFC", id_or_prefix)
    for candidate in (id_or_prefix, nfc):
        if candidate in ids:
            return candidate
    matches = sorted({i for i in ids for p in (id_or_prefix, nfc) if p and i.startswith(p)})
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise AmbiguousSessionIdError(id_or_prefix, matches)
    raise SessionNotFoundError(id_or_prefix, where, ids)


class Store(abc.ABC):
    """A place sessions are saved. Subclasses provide raw text I/O; parsing lives here.

    Every backend passes the contract suite in ``tests/test_store_contract.py``.
    """

    backend: ClassVar[str] = "abstract"

    # ---- raw I/O, provided by each backend -------------------------------------------------

    @abc.abstractmethod
    def _read(self, session_id: str, part: Part) -> str | None:
        """The text of one file, or None when it does not exist."""

    @abc.abstractmethod
    def _commit(self, session_id: str, texts: dict[Part, str]) -> None:
        """Replace the given files of one session, all or nothing as far as possible."""

    @abc.abstractmethod
    def _remove(self, session_id: str) -> bool:
        """Delete a session and its fragments; True if it existed."""

    @abc.abstractmethod
    def _ids(self) -> list[str]:
        """The ids of the stored sessions, unsorted."""

    @abc.abstractmethod
    def _read_checkpoint(self, kind: str, key: str) -> str | None: ...

    @abc.abstractmethod
    def _write_checkpoint(self, kind: str, key: str, text: str | None) -> None: ...

    @abc.abstractmethod
    def location(self, session_id: str, part: Part = "session") -> str:
        """Where one file of a session lives, for messages."""

    def lock(self, *, shared: bool = False) -> contextlib.AbstractContextManager[None]:
        """A lock held while a session's files are written (exclusive) or read (shared)."""
        return contextlib.nullcontext()

    def _exists(self, key: str) -> bool:
        """Whether a session file is listed under exactly ``key`` (lock held)."""
        return self._read(key, "session") is not None

    def _key(self, session_id: str) -> str:
        """The id to look ``session_id`` up under: itself, or its NFC spelling when only
        that is stored (a3s_nb saves NFC ids; a name typed or pasted on macOS may be NFD)."""
        nfc = unicodedata.normalize("NFC", session_id)
        if nfc != session_id and not self._exists(session_id) and self._exists(nfc):
            return nfc
        return session_id

    # ---- public API --------------------------------------------------------------------

    def list(self) -> list[str]:
        """The ids of all saved sessions, sorted.

        A directory store lists every ``<name>.json`` in its root: a file under the ``id``
        it holds (a3s-code files ``a/b`` as ``a_b.json``), anything else (a file holding
        another name's id or none, a directory, a broken link) under ``<name>``, so that
        ``load`` reports it as a ``CorruptFileError`` and ``delete`` can remove it.
        """
        with self.lock(shared=True):
            return sorted(self._ids())

    def exists(self, session_id: str) -> bool:
        """Whether ``load(session_id)`` finds a session file (it may still be corrupt)."""
        key = lookup_session_id(session_id)
        with self.lock(shared=True):
            return self._exists(self._key(key))

    def read_raw(self, session_id: str, part: Part) -> Any | None:
        """One file of a session as parsed JSON (no validation), or None when absent.

        This is the fast path used by the frames; ``load`` validates. A file that does not
        parse (truncated, not UTF-8, nested too deep, a number too long, a directory...)
        raises ``CorruptFileError`` naming it.
        """
        lookup_session_id(session_id)
        with self.lock(shared=True):
            text = self._read_session(session_id, (part,))[part]
        if text is None or isinstance(text, Parsed):
            return None if text is None else text.value
        return self._parse_json(session_id, part, text)

    def load(self, session_id: str) -> SessionBundle:
        """Load a session and its fragments. Missing fragments load as empty, as in a3s-code.

        Raises ``SessionNotFoundError`` (with close matches), ``CorruptFileError`` (naming
        the file) or, for an id no file can have, ``InvalidSessionIdError``.
        """
        key, texts = self._read_texts(session_id)
        if texts["session"] is None:
            raise SessionNotFoundError(session_id, str(self), self.list())
        values: dict[str, Any] = {}
        for part, text in texts.items():
            if text is None:
                continue
            values[part] = self._validate(key, part, text)
        session: SessionData = values["session"]
        if not _same_id(session.id, key):  # (a v1 file's id was checked as it was read)
            raise CorruptFileError(
                self.location(key),
                f"holds session {session.id!r}, not {key!r} "
                "(a3s-code maps '/', '\\' and '..' to '_', so these ids share a file)",
            )
        return SessionBundle(**values)

    def _read_texts(
        self, session_id: str, parts: Iterable[Part] = PARTS
    ) -> tuple[str, dict[Part, str | Parsed | None]]:
        """The key ``load`` files ``session_id`` under and what its files (of ``parts``)
        hold (see ``_read_session``), read under the shared lock."""
        key = lookup_session_id(session_id)
        with self.lock(shared=True):
            key = self._key(key)
            return key, self._read_session(key, parts)

    def _read_session(
        self, session_id: str, parts: Iterable[Part]
    ) -> dict[Part, str | Parsed | None]:
        """The given files of one session: text, or a value already parsed (a part read
        out of a snapshot envelope), or None when absent (lock held)."""
        return {part: self._read(session_id, part) for part in parts}

    def _refuse_write(self, session_id: str) -> None:  # noqa: B027 - nothing to refuse here
        """Raise if a3s_nb must not write this session (lock held); see FileStore."""

    def save(
        self,
        bundle: SessionBundle,
        *,
        guard: Callable[[SessionBundle | None], None] | None = None,
    ) -> None:
        """Write a bundle exactly as given, timestamps included.

        Everything is serialised before any file is touched, so an invalid bundle or a full
        disk leaves what was saved before intact.

        ``guard``, if given, is called under the store's exclusive lock, just before the
        files are written, with what is stored for this id at that moment (None when there
        is nothing); no other a3s_nb writer can change it until the save is over. If the
        guard raises, nothing is written and its exception propagates. A stored session that
        cannot be loaded is not passed to the guard: its ``CorruptFileError`` propagates and
        nothing is written (overwriting it is then a deliberate save without a guard).
        """
        session_id = validate_session_id(bundle.session.id)
        for run in bundle.runs:
            if run.snapshot.session_id != session_id:
                raise InvalidBundleError(
                    f"run {run.snapshot.id} belongs to session {run.snapshot.session_id!r}, "
                    f"not {session_id!r}"
                )
        texts: dict[Part, str] = {}
        for part in PARTS:
            value = bundle.session if part == "session" else getattr(bundle, part)
            if value is None:
                continue
            data = _to_jsonable(part, value)
            # Models are not re-validated on attribute assignment: check that what is about
            # to be written reads back, so the store never holds a file it cannot load.
            try:
                _ADAPTERS[part].validate_python(data)
            except ValidationError as e:
                raise InvalidBundleError(
                    f"session {session_id!r} not saved: its {part} would not load back: "
                    f"{describe_validation_error(e)}"
                ) from None
            texts[part] = dumps(data)
        self._save_texts(session_id, texts, guard=guard)

    def _save_texts(
        self,
        session_id: str,
        texts: Mapping[Part, str | bytes],
        *,
        guard: Callable[[SessionBundle | None], None] | None = None,
    ) -> None:
        """Write files already validated and serialised (by :mod:`a3s_nb.store.serde`), as text
        or as UTF-8 bytes."""
        if not self._commits_bytes:
            texts = {p: t.decode("utf-8") if isinstance(t, bytes) else t for p, t in texts.items()}
        with self._writing(f"save session {session_id}"), self.lock():
            self._refuse_write(session_id)
            if guard is not None:
                guard(self._stored(session_id))
            self._commit(session_id, texts)  # type: ignore[arg-type]

    @contextlib.contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        """Turn the file system refusing a write (``OSError``) into a StoreWriteError
        naming the store and what to do; a3s_nb's own errors pass as they are."""
        try:
            yield
        except A3sNbError:
            raise
        except OSError as e:
            raise StoreWriteError(_write_refused(self, what, e), e.errno) from e

    #: Whether ``_commit`` takes UTF-8 bytes as well as text (saves decoding a file to
    #: encode it again).
    _commits_bytes: ClassVar[bool] = False

    def _read_data(self, session_id: str, part: Part) -> str | bytes | None:
        """One file as read, text or (where cheaper) its bytes not decoded; None if absent."""
        return self._read(session_id, part)

    def _stored(self, session_id: str) -> SessionBundle | None:
        """What is stored for ``session_id``, or None. Called with the lock held."""
        if not self.exists(session_id):
            return None
        try:
            return self.load(session_id)  # the lock is re-entrant: this reuses the held one
        except SessionNotFoundError:  # removed by something that takes no lock (the SDK)
            return None

    def delete(self, session_id: str) -> None:
        """Delete a session and its per-session fragments (not its checkpoints).

        Only the files ``list()`` shows under this id: ``delete("a_b")`` never removes the
        file a3s-code wrote for ``a/b``.
        """
        key = lookup_session_id(session_id)
        with self._writing(f"delete session {session_id}"), self.lock():
            key = self._key(key)
            if not self._exists(key) or not self._remove(key):
                raise SessionNotFoundError(session_id, str(self), self._ids())
            remove_lineage(self, key)  # a fork's lineage record goes with it
            self._forget_cached(key)

    def _forget_cached(self, session_id: str) -> None:  # noqa: B027 - most stores have none
        """Take a deleted session out of a3s_nb's caches (a directory store has some)."""

    def resolve(self, id_or_prefix: str) -> str:
        """The full id of a saved session from its id or a unique prefix of it."""
        lookup_session_id(id_or_prefix)
        return resolve_id(id_or_prefix, self.list(), str(self))

    # ---- checkpoints (3.3+) --------------------------------------------------------------

    def load_loop_checkpoint(self, run_id: str) -> LoopCheckpoint | None:
        return self._load_checkpoint("loop_checkpoints", run_id, LoopCheckpoint)

    def save_loop_checkpoint(self, checkpoint: LoopCheckpoint) -> None:
        self._save_checkpoint("loop_checkpoints", checkpoint.run_id, checkpoint)

    def delete_loop_checkpoint(self, run_id: str) -> None:
        with self._writing(f"delete checkpoint {run_id}"), self.lock():
            self._write_checkpoint("loop_checkpoints", validate_session_id(run_id), None)

    def load_workflow_checkpoint(self, workflow_id: str) -> WorkflowCheckpoint | None:
        return self._load_checkpoint("workflow_checkpoints", workflow_id, WorkflowCheckpoint)

    def save_workflow_checkpoint(self, checkpoint: WorkflowCheckpoint) -> None:
        self._save_checkpoint("workflow_checkpoints", checkpoint.workflow_id, checkpoint)

    def delete_workflow_checkpoint(self, workflow_id: str) -> None:
        with self._writing(f"delete checkpoint {workflow_id}"), self.lock():
            self._write_checkpoint("workflow_checkpoints", validate_session_id(workflow_id), None)

    def _load_checkpoint(self, kind: str, key: str, model: type[M]) -> M | None:
        lookup_session_id(key)
        text = self._read_checkpoint(kind, key)
        if text is None:
            return None
        where = f"{self}/{kind}/{sdk_safe_id(key)}.json"
        try:
            value = model.model_validate_json(text)
        except ValidationError as e:
            if any(err["type"] == "json_invalid" for err in e.errors()):
                parse_json(text, where)  # raises with line and column
            raise CorruptFileError(where, describe_validation_error(e)) from None
        if getattr(value, "schema_version", 0) > 1:
            raise CorruptFileError(
                where, f"schema_version {value.schema_version} is newer than a3s_nb reads (1)"
            )
        return value

    def _save_checkpoint(self, kind: str, key: str, checkpoint: BaseModel) -> None:
        text = dumps(checkpoint)
        with self._writing(f"save checkpoint {key}"), self.lock():
            self._write_checkpoint(kind, validate_session_id(key), text)

    # ---- parsing -------------------------------------------------------------------------

    def _parse_json(self, session_id: str, part: Part, text: str) -> Any:
        return parse_json(text, self.location(session_id, part))

    def _validate(self, session_id: str, part: Part, text: str | Parsed) -> Any:
        if isinstance(text, Parsed):
            try:
                return _ADAPTERS[part].validate_python(text.value)
            except ValidationError as e:
                raise CorruptFileError(
                    text.where, f"{text.field}: {describe_validation_error(e)}"
                ) from None
        if not text.strip():
            raise CorruptFileError(self.location(session_id, part), "file is empty")
        try:
            return _ADAPTERS[part].validate_json(text)
        except ValidationError as e:
            if any(err["type"] == "json_invalid" for err in e.errors()):
                self._parse_json(session_id, part, text)  # raises with line and column
            raise CorruptFileError(
                self.location(session_id, part), describe_validation_error(e)
            ) from None


# ============================================================================ directory


_tmp_counter = itertools.count()
_thread_locks: dict[str, threading.RLock] = {}
_thread_locks_guard = threading.Lock()
_held_by_thread = threading.local()
_swept: set[str] = set()  # stores this process has swept for dead writers' leftovers

#: Fragment directories, checkpoint directories: every directory a save may write into.
_FRAGMENT_DIRS = ("runs", "traces", "verification", "subagent_tasks", "artifacts")
_CHECKPOINT_DIRS = ("loop_checkpoints", "workflow_checkpoints")

# A temp or backup file of an interrupted write, with the writer's pid in its name:
# a3s_nb and a3s-code >= 3.4: <name>.<nanos>.<pid>.<counter>.tmp|old; a3s-code 3.1:
# <name>.<nanos>.<pid>.tmp; the frames' index: <name>.<pid>.<nanos>.tmp.
_LEFTOVER = re.compile(r"\A.+?\.(\d+)\.(\d+)(?:\.(\d+))?\.(tmp|old)\Z")


class _Held:
    """A store lock this thread holds: its flock'd file (None without one), its mode, and
    the files to read instead while a dead writer's journal cannot be finished."""

    __slots__ = ("fd", "overlay", "shared")

    def __init__(self, fd: int | None, shared: bool):
        self.fd = fd
        self.shared = shared
        self.overlay: dict[str, str | None] | None = None


def _held_locks() -> dict[str, _Held]:
    held = getattr(_held_by_thread, "locks", None)
    if held is None:
        held = _held_by_thread.locks = {}
    return held


class FileStore(Store):
    """The a3s-code 3.x ``FileSessionStore`` directory layout.

    How a save survives a crash (``kill -9``, power loss) at any point::

        <dir>/.a3s_nb/lock       flock'd: exclusive while writing, shared while reading
        <dir>/.a3s_nb/journal    the write in flight, as JSON; absent when none is

    A save of several files (1) records its temp file names in the journal ("staging"),
    (2) writes and fsyncs every changed file to a temp file beside its target, (3) rewrites
    the journal as the list of renames to make ("commit", fsynced: the commit point),
    (4) renames the temp files over their targets, session document last, fsyncs their
    directories, and (5) removes the journal. Whoever next takes the lock, reader or writer,
    first finishes a journal left by a dead writer: a "staging" one is undone (its temp
    files removed, the old generation never touched), a "commit" one is redone (every temp
    file still there renamed into place), so every reader sees one whole generation, old or
    new. A reader without write access reads through the journal instead. A save that fails
    with an exception in step 4 rewrites the journal as the renames that put the previous
    files back (kept as hard links ``*.old``) and replays that. A delete journals the files
    it removes. Files whose bytes would not change are not rewritten; a save that changes
    one file renames it without a commit journal (a rename is atomic on its own).

    The kill test (``tests/test_store_crash.py``) proves this for SIGKILL at every system
    call. Against power loss the temp files and the journal are fsynced before the commit
    point and the directories after the renames; that the temp files' names are durable
    once the journal is relies on the file system committing metadata in order, as the
    journalling file systems (ext4, xfs, apfs) do.

    A dead process's other leftovers (a3s-code's ``<id>.json.<nanos>.<pid>.tmp``, and any
    ``*.tmp``/``*.old`` whose pid is not running) are removed by the first a3s_nb write of
    each process and by ``a3s-nb check --fix``; a running process's files are never touched.
    """

    backend = "file"
    _META_DIR = ".a3s_nb"  # a3s_nb's own files; a3s-code's list() skips directories

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True):
        self.path = Path(path).expanduser().absolute()
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(f"store path {self.path} exists and is not a directory")
        if not self.path.exists():
            if not create:
                raise StoreError(
                    f"no store at {self.path}: save a session there first (%a3s_save / "
                    "a3s_nb.save), or point at another store (--store PATH, store=..., "
                    "%config A3sNb.store, $A3S_NB_STORE)"
                )
            try:
                self.path.mkdir(parents=True)
            except OSError as e:
                raise StoreError(f"cannot create store directory {self.path}: {e}") from e
        self._real = os.path.realpath(self.path)
        #: What this handle did on taking the lock: interrupted writes it finished.
        self.recovered: list[str] = []
        self._dead_candidates: set[str] = set()

    def __repr__(self) -> str:
        return f"FileStore({str(self.path)!r})"

    def __str__(self) -> str:
        return str(self.path)

    # ---- paths ---------------------------------------------------------------------------

    def _file(self, session_id: str, part: Part) -> Path:
        stem = sdk_safe_id(session_id)
        directory, name = LAYOUT[part]
        return self.path / directory.format(stem) / name.format(stem)

    def path_templates(self) -> dict[Part, str]:
        """``part -> path`` with ``{}`` for the file stem, filled with ``str.format``: the
        names of ``session_files`` without pathlib, which costs as much as reading a small
        file (the frames and ``load`` name thousands)."""
        templates = self.__dict__.get("_path_templates")
        if templates is None:
            templates = self._path_templates = {
                part: str(path).replace("{", "{{").replace("}", "}}").replace(_PROBE, "{}")
                for part, path in self.session_files(_PROBE).items()
            }
        return templates

    def _file_name(self, session_id: str, part: Part) -> str:
        """``str(self._file(session_id, part))`` (see ``path_templates``)."""
        stem = sdk_safe_id(session_id)
        if stem in ("", "."):  # pathlib would fold ``x/./y`` and ``x//y``: let it
            return str(self._file(session_id, part))
        return self.path_templates()[part].format(stem)

    def location(self, session_id: str, part: Part = "session") -> str:
        """The file a part of a session is read from: in the v1 layout when a3s-code
        would read it there (the snapshot envelope holds every part), else the flat one."""
        return str(self._source_file(session_id, part))

    def session_files(self, session_id: str) -> dict[Part, Path]:
        """The path of every per-session file (whether it exists or not)."""
        return {part: self._file(session_id, part) for part in PARTS}

    @property
    def meta_dir(self) -> Path:
        """Directory for a3s_nb's own bookkeeping (lock, journal, index) inside the store."""
        return self.path / self._META_DIR

    @property
    def _journal(self) -> Path:
        return self.meta_dir / "journal"

    def _rel(self, path: Path | str) -> str:
        return os.path.relpath(path, self.path)

    def _abs(self, rel: str) -> Path:
        """A path named by a journal, refused if it points outside the store."""
        if not isinstance(rel, str) or os.path.isabs(rel) or ".." in Path(rel).parts:
            raise CorruptFileError(self._journal, f"names a path outside the store: {rel!r}")
        return self.path / rel

    def _writable_dir(self, directory: Path) -> None:
        """Make ``directory`` (inside the store) exist; refuse a link that leaves the store."""
        rel = Path(os.path.relpath(directory, self.path))
        here = self.path
        for name in rel.parts:
            if name in ("", "."):
                continue
            here = here / name
            try:
                st = os.lstat(here)
            except FileNotFoundError:
                with contextlib.suppress(FileExistsError):
                    fsio.mkdir(here, 0o755)
                continue
            if stat.S_ISLNK(st.st_mode):
                real = os.path.realpath(here)
                if os.path.commonpath([real, self._real]) != self._real:
                    raise StoreError(
                        f"{here} is a symbolic link to {real}, outside the store {self.path}: "
                        "a3s_nb does not write through it; make it a directory, or move "
                        "the store"
                    )
                if not os.path.isdir(here):
                    raise StoreError(f"{here} is a symbolic link to {real}, not a directory")
            elif not stat.S_ISDIR(st.st_mode):
                raise StoreError(f"{here} is not a directory: move it out of the store")

    # ---- locking -------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, *, shared: bool = False) -> Iterator[None]:
        """Hold the store's lock: exclusive for writing, shared for reading.

        Whoever takes it first finishes a write a dead process left half done (see the class
        docstring). Re-entrant within a thread: a read inside a write (a ``save`` guard
        calling ``load``) reuses the lock already held instead of waiting on itself, and a
        write inside a read upgrades the held lock for its duration.
        """
        # flock excludes other processes; the RLock excludes threads of this one (flock
        # locks belong to the open file, so two threads would each get their own).
        key = str(self.path)
        with _thread_locks_guard:
            tlock = _thread_locks.setdefault(key, threading.RLock())
        with tlock:
            held = _held_locks()
            outer = held.get(key)
            if outer is not None:
                if shared or not outer.shared:
                    yield  # already held, strongly enough
                    return
                with self._upgraded(outer):
                    yield
                return
            state = self._acquire(shared)
            held[key] = state
            try:
                self._settle(state)
                yield
            finally:
                del held[key]
                if state.fd is not None:
                    _release(state.fd)

    def _acquire(self, shared: bool) -> _Held:
        if fcntl is None:
            return _Held(None, shared)
        lock_file = self.meta_dir / "lock"
        try:
            # Readers never create files: a store nobody has saved into through a3s_nb
            # has no lock file and no a3s_nb writer to wait for. Nothing is followed
            # out of the store: a linked .a3s_nb is a StoreError for a writer.
            fd = meta.open_lock(lock_file, create=not shared)
        except StoreError:
            raise
        except OSError:
            if shared:  # no lock file yet, or a read-only store: read without it
                return _Held(None, shared)
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        return _Held(fd, shared)

    @contextlib.contextmanager
    def _upgraded(self, outer: _Held) -> Iterator[None]:
        """Exclusive for the duration, inside a shared lock this thread holds."""
        if fcntl is None:
            yield
            return
        if outer.fd is None:  # the read went without a lock file: take one now
            state = self._acquire(shared=False)
            outer.shared = False
            try:
                self._settle(state)
                yield
            finally:
                outer.shared = True
                _release(state.fd)  # type: ignore[arg-type]
            return
        fcntl.flock(outer.fd, fcntl.LOCK_EX)  # converting is not atomic; fine for a write
        outer.shared = False
        try:
            self._settle(outer)
            yield
        finally:
            outer.shared = True
            fcntl.flock(outer.fd, fcntl.LOCK_SH)

    def _journal_pending(self) -> bool:
        """Whether a journal is in ``.a3s_nb`` (never looked for through a link)."""
        return meta.is_real_dir(self.meta_dir) and os.path.lexists(self._journal)

    def reads_through_journal(self) -> bool:
        """Whether this reader reads through a pending journal: a dead writer's commit
        that this process cannot finish (a read-only store, another user's). Then every
        read must go through the store (``read_raw``, ``load``), which sees the new
        generation; the files on disk, and any cache of them, may be the old one."""
        if not self._journal_pending():
            return False
        with self.lock(shared=True):
            held = _held_locks().get(str(self.path))
            return held is not None and bool(held.overlay)

    def _settle(self, state: _Held) -> None:
        """On taking the lock: finish a dead writer's journal; a writer also sweeps."""
        while self._journal_pending():
            doc = self._read_journal()
            if fcntl is None and doc and _pid_alive(doc.get("pid"), own_is_alive=False):
                return  # no flock: a live writer's journal, not ours to finish
            if state.shared and state.fd is not None:
                # finish it under the exclusive lock; another process may get there first
                fcntl.flock(state.fd, fcntl.LOCK_EX)
                try:
                    if self._journal_pending():
                        self._recover_or_overlay(state)
                finally:
                    fcntl.flock(state.fd, fcntl.LOCK_SH)
                if state.overlay is not None:
                    return
                continue
            self._recover_or_overlay(state)
            if state.overlay is not None:
                return
        if not state.shared:
            key = str(self.path)
            if key not in _swept:
                _swept.add(key)
                self._sweep(self._sweep_dirs(full=False))
            elif self._dead_candidates:
                self._sweep([], names=self._dead_candidates)
            self._dead_candidates = set()

    def _recover_or_overlay(self, state: _Held) -> None:
        try:
            self._recover()
        except CorruptFileError as e:
            raise CorruptFileError(
                e.path,
                f"{e.problem}: a3s_nb did not write this journal, so it does not follow it; "
                "delete it by hand to use the store again",
            ) from None
        except OSError as e:
            if state.shared and e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                state.overlay = self._overlay()  # no write access: read through it
                return
            raise StoreError(
                f"cannot finish the interrupted write recorded in {self._journal}: {e}"
            ) from e

    # ---- the journal ---------------------------------------------------------------------

    def _read_journal(self) -> dict[str, Any] | None:
        """The pending journal, or None when absent or unreadable (then never committed)."""
        data = meta.read_bytes(self._journal)  # a link there is no journal of a3s_nb's
        try:
            doc = json.loads(data) if data is not None else None
        except (ValueError, RecursionError):
            return None
        return doc if isinstance(doc, dict) else None

    def _write_journal(self, doc: dict[str, Any], *, sync: bool) -> None:
        """Replace the journal atomically (write a temp, rename); ``sync`` makes it durable."""
        doc = {"pid": os.getpid(), **doc}
        data = json.dumps(doc, ensure_ascii=False).encode()
        meta.write_atomic(self._journal, data, fsync=sync)  # a new temp file, O_EXCL
        if sync:
            _fsync_dir(self.meta_dir)

    def _recover(self) -> None:
        """Finish the journal a dead writer left: undo "staging", redo "commit"."""
        doc = self._read_journal()
        if doc is not None and doc.get("state") == "commit":
            self._replay(doc)
            what = "finished"
        else:  # staging, or a journal cut short before its rename: nothing was replaced
            for path in self._cleanup_paths(doc or {}):
                _unlink(path)
            what = "undid"
        _unlink(self._journal)
        self.recovered.append(
            f"{what} an interrupted write of process {(doc or {}).get('pid', '?')}"
            + (f" ({', '.join(doc.get('what', []))})" if doc and doc.get("what") else "")
        )

    def _replay(self, doc: dict[str, Any]) -> None:
        """Make every operation of a commit journal; safe to repeat after a crash."""
        dirs: dict[str, None] = {}
        ops = doc.get("ops", [])
        if not isinstance(ops, list) or not all(
            isinstance(op, list)
            and len(op) == 2
            and isinstance(op[0], str)
            and op[0].endswith(".json")
            and (op[1] is None or (isinstance(op[1], str) and _LEFTOVER.match(op[1])))
            for op in ops
        ):
            raise CorruptFileError(self._journal, "'ops' is not a list of [file, temp file]")
        for target_rel, src_rel in ops:
            target = self._abs(target_rel)
            if src_rel is None:
                if _unlink(target):
                    dirs[str(target.parent)] = None
            else:
                src = self._abs(src_rel)
                if os.path.lexists(src):
                    fsio.replace(src, target)
                    dirs[str(target.parent)] = None
        for d in dirs:
            _fsync_dir(Path(d))
        # Every file is in place now: a failure from here on must not undo any of it (a
        # backup not removed is a leftover, swept once this process is gone).
        for path in self._cleanup_paths(doc):
            with contextlib.suppress(OSError):
                _unlink(path)
        for rel in doc.get("rmdirs", []):
            with contextlib.suppress(OSError):
                fsio.rmdir(self._abs(rel))

    def _cleanup_paths(self, doc: dict[str, Any]) -> list[Path]:
        """The temp and backup files a journal lists; only such names, never a session file."""
        names = doc.get("cleanup", [])
        if not isinstance(names, list):
            raise CorruptFileError(self._journal, "'cleanup' is not a list of paths")
        paths = [self._abs(rel) for rel in names]
        bad = [p for p in paths if not _LEFTOVER.match(p.name)]
        if bad:
            raise CorruptFileError(self._journal, f"lists {bad[0]} to remove, not a temp file")
        return paths

    def _overlay(self) -> dict[str, str | None]:
        """Where each file of a pending commit journal is, for a reader that cannot finish it."""
        doc = self._read_journal()
        if doc is None or doc.get("state") != "commit":
            return {}
        overlay: dict[str, str | None] = {}
        for target_rel, src_rel in doc.get("ops", []):
            target = str(self._abs(target_rel))
            if src_rel is None:
                overlay[target] = None
            elif os.path.lexists(self._abs(src_rel)):
                overlay[target] = str(self._abs(src_rel))
        return overlay

    def _transact(
        self,
        writes: list[tuple[Path, bytes]],
        removes: list[Path] = [],  # noqa: B006 - never mutated
        rmdirs: list[Path] = [],  # noqa: B006
        what: list[str] = [],  # noqa: B006
    ) -> None:
        """Replace and remove files as one step that a crash cannot split (lock held)."""
        if not writes and not removes:
            return
        suffix = f"{time.time_ns()}.{os.getpid()}"
        tmps = [t.with_name(f"{t.name}.{suffix}.{next(_tmp_counter)}.tmp") for t, _ in writes]
        atomic_alone = len(writes) == 1 and not removes
        olds: list[Path | None] = []
        if not atomic_alone:
            for target, _ in writes:
                olds.append(
                    target.with_name(f"{target.name}.{suffix}.{next(_tmp_counter)}.old")
                    if os.path.lexists(target)
                    else None
                )
        kept = [o for o in olds if o is not None]
        staged = [self._rel(p) for p in [*tmps, *kept]]
        if writes:  # what a kill before the commit point leaves, for the next one to remove
            self._write_journal({"state": "staging", "cleanup": staged, "what": what}, sync=False)
        try:
            for tmp, (_, data) in zip(tmps, writes, strict=True):
                _write_new(tmp, data)
            for (target, _), old in zip(writes, olds, strict=False):
                if old is not None:
                    fsio.link(target, old)
            if atomic_alone:
                fsio.replace(tmps[0], writes[0][0])
        except BaseException:
            for p in [*tmps, *kept]:
                _unlink(p)
            _unlink(self._journal)
            raise
        if atomic_alone:
            _fsync_dir(writes[0][0].parent)
            self._drop_journal()
            return
        ops = [[self._rel(t), self._rel(tmp)] for (t, _), tmp in zip(writes, tmps, strict=True)]
        ops += [[self._rel(t), None] for t in removes]
        commit = {
            "state": "commit",
            "ops": ops,
            "cleanup": [self._rel(p) for p in kept],
            "rmdirs": [self._rel(d) for d in rmdirs],
            "what": what,
        }
        try:
            self._write_journal(commit, sync=True)
        except BaseException:
            for p in [*tmps, *kept]:
                _unlink(p)
            _unlink(self._journal)
            raise
        try:
            self._replay(commit)
        except BaseException as exc:
            if removes and isinstance(exc, Exception):
                # a delete is only ever finished, never undone: once more (it failing
                # again, the journal stays, and the next lock taker finishes it)
                self._replay(commit)
                self._drop_journal()
                return
            # put the previous generation back, itself through the journal
            back = {
                "state": "commit",
                "ops": [
                    [self._rel(t), None if old is None else self._rel(old)]
                    for (t, _), old in zip(writes, olds, strict=True)
                ],
                "cleanup": staged,
                "what": what,
            }
            if not removes:  # a delete is only ever finished, never undone
                self._write_journal(back, sync=True)
                self._replay(back)
                _unlink(self._journal)
            raise
        self._drop_journal()

    def _drop_journal(self) -> None:
        """Remove the journal of a write that is complete. If that fails, the write stays
        done: the next lock taker replays the journal, which then has nothing left to do."""
        with contextlib.suppress(OSError):
            _unlink(self._journal)

    # ---- sweeping what dead processes left -------------------------------------------------

    def _sweep_dirs(self, *, full: bool) -> list[Path]:
        """Where leftovers can be: the root and checkpoints (a3s-code's temp files), the
        bookkeeping, and with ``full`` every fragment directory too."""
        dirs = [self.path, self.meta_dir, *(self.path / d for d in _CHECKPOINT_DIRS)]
        if full:
            dirs += [self.path / d for d in _FRAGMENT_DIRS]
            with contextlib.suppress(OSError):
                dirs += [
                    Path(e.path)
                    for e in os.scandir(self.path / "artifacts")
                    if e.is_dir(follow_symlinks=False)
                ]
        return dirs

    def leftovers(self) -> list[Path]:
        """Temp and backup files of interrupted writes whose process is no longer running."""
        found = []
        for d in self._sweep_dirs(full=True):
            if d.is_symlink():
                continue  # never follow a link out of the store
            try:
                entries = list(os.scandir(d))
            except OSError:
                continue
            for entry in entries:
                if entry.is_file(follow_symlinks=False) and _dead_leftover(entry.name):
                    found.append(Path(entry.path))
        old_tmp = self.meta_dir / "journal.tmp"  # the fixed temp name of earlier versions
        pending = os.path.lexists(self._journal)
        if meta.is_real_dir(self.meta_dir) and os.path.lexists(old_tmp) and not pending:
            found.append(old_tmp)
        return sorted(found)

    def remove_leftovers(self) -> list[Path]:
        """Finish any interrupted write and remove dead processes' leftovers; what went."""
        seen = self.leftovers()  # taking the lock may already sweep some of them
        with self.lock():
            seen += self.leftovers()
            for p in seen:
                _unlink(p)
        return sorted({p for p in seen if not os.path.lexists(p)})

    def _sweep(self, dirs: list[Path], names: Iterable[str] = ()) -> None:
        for name in names:
            if _dead_leftover(name):
                with contextlib.suppress(OSError):
                    _unlink(self.path / name)
        for d in dirs:
            if d.is_symlink():
                continue
            try:
                entries = list(os.scandir(d))
            except OSError:
                continue
            for entry in entries:
                if _dead_leftover(entry.name) and entry.is_file(follow_symlinks=False):
                    with contextlib.suppress(OSError):
                        _unlink(Path(entry.path))

    # ---- reading -------------------------------------------------------------------------

    def _overlaid(self, path: Path | str) -> Path | str | None:
        """Where to read ``path`` from: itself, or what a pending journal this reader cannot
        finish puts there (None: the journal removes it)."""
        held = _held_locks().get(str(self.path))
        if held is not None and held.overlay and str(path) in held.overlay:
            src = held.overlay[str(path)]
            return None if src is None else Path(src)
        return path

    def _read_file(self, path: Path) -> str | None:
        real = self._overlaid(path)
        return None if real is None else _read_text(real)

    def _read(self, session_id: str, part: Part) -> str | None:
        if self._v1_rules(session_id):
            value = self._read_session(session_id, (part,))[part]
            return json.dumps(value.value) if isinstance(value, Parsed) else value
        return self._read_file(self._file(session_id, part))

    def _read_data(self, session_id: str, part: Part) -> bytes | None:
        if self._v1_rules(session_id):
            text = self._read(session_id, part)
            return None if text is None else text.encode("utf-8")
        real = self._overlaid(self._file(session_id, part))
        return None if real is None else _read_bytes(real)

    # ---- the v1 layout of a3s-code 5.x+ (the rules are in _v1layout) ------------------------

    def _v1_file(self, session_id: str) -> Path | None:
        """The session's file in ``v1/sessions``, when there is one (it wins over a root copy)."""
        path = v1.session_path(self.path, session_id)
        real = self._overlaid(path)
        return path if real is not None and os.path.lexists(real) else None

    def _v1_rules(self, session_id: str) -> bool:
        """Whether reading the session needs a3s-code's v1 rules: it has a file under
        ``v1/`` (its session file or a fragment, which wins over a root one)."""
        if not os.path.isdir(self.path / v1.V1_DIR):
            return False
        return any(os.path.lexists(p) for p in v1.session_dir_paths(self.path, session_id))

    def v1_stems(self) -> set[str]:
        """The v1 stems (``id_<b64>``) that have any per-session file under ``v1/``; empty
        for a store without one. The frames read such sessions by the v1 rules."""
        return v1.names_with_files(self.path)

    def _document(self, path: Path) -> Any | None:
        """A store document parsed, None when absent; refused as a3s-code refuses it
        (sealed, over the size limit) and CorruptFileError when it does not parse."""
        text = self._text(path)
        return None if text is None else parse_json(text, path)

    def _source_file(self, session_id: str, part: Part) -> Path:
        """The file ``part`` of a session is read from, as a3s-code 5.x+ chooses it."""
        session_file = self._v1_file(session_id)
        if session_file is None:
            session_file = self._file(session_id, "session")
            if part == "session" or not self._v1_rules(session_id):
                return self._file(session_id, part)
        if part == "session" or v1.starts_as_envelope(session_file):
            return session_file  # (a snapshot envelope holds every part)
        current = v1.fragment_path(self.path, session_id, part)
        probe = current.parent if part == "artifacts" else current
        if os.path.lexists(probe):
            return current
        return self._file(session_id, part)

    def _read_session(
        self, session_id: str, parts: Iterable[Part]
    ) -> dict[Part, str | Parsed | None]:
        parts = tuple(parts)
        if not self._v1_rules(session_id):
            # a root copy may itself be a snapshot envelope: then it holds every part (told
            # from the document when it is read anyway, else from its first bytes)
            path = self._file_name(session_id, "session")
            session = self._text(path) if "session" in parts else None
            if "session" in parts:
                envelope = (
                    session is not None
                    and v1.may_be_envelope(session)
                    and v1.is_envelope(parse_json(session, path))
                )
            else:
                real = self._overlaid(path)
                envelope = real is not None and v1.starts_as_envelope(real)
            if not envelope:
                return {
                    p: session if p == "session" else self._text(self._file_name(session_id, p))
                    for p in parts
                }
        return self.read_parts(session_id, parts, parsed=True)  # type: ignore[return-value]

    def _text(self, path: Path | str) -> str | None:
        """A store file's text, None when absent; refused as a3s-code refuses it (sealed,
        over the size limit)."""
        real = self._overlaid(path)
        data = None if real is None else _read_bytes(real)
        if data is None:
            return None
        v1.check_document(data, path)
        return decode_text(data, path)

    def read_parts(
        self, session_id: str, parts: Iterable[str], *, parsed: bool = False
    ) -> dict[str, Any]:
        """The given parts of a session as parsed JSON (None when absent), read by
        a3s-code 5.x+'s rules (lock held by the caller).

        The v1 session file wins over a root copy. A snapshot envelope (in either place)
        holds every part. A bare session's fragment is its v1 fragment file when there is
        one, else the root one, which counts for a v1 session only when the root session
        file holds that id. A v1 file holding another id, an envelope of another
        ``schema_version``, a sealed file or one over the size limit: ``CorruptFileError``
        (``EncryptedSessionError`` for a sealed one) naming the file. ``parsed`` wraps
        each value in :class:`Parsed` (for ``load``).
        """
        parts = tuple(parts)
        v1_file = self._v1_file(session_id)
        path = v1_file if v1_file is not None else self._file(session_id, "session")
        doc = self._document(path)
        if doc is None:
            return dict.fromkeys(parts)

        def wrap(value: Any, where: Path, field: str) -> Any:
            return Parsed(value, where, field) if parsed and value is not None else value

        if v1.is_envelope(doc):
            values = v1.envelope_parts(doc, path)
            inner = values["session"].get("id") if isinstance(values["session"], dict) else None
            if v1_file is not None and inner != session_id:
                raise self._collision(path, inner, session_id)
            return {
                p: wrap(values[p], path, v1.ENVELOPE_FIELDS[p])  # type: ignore[index]
                for p in parts
            }
        if v1_file is not None:
            inner = doc.get("id") if isinstance(doc, dict) else None
            if inner != session_id:
                raise self._collision(path, inner, session_id)
        out: dict[str, Any] = {}
        for part in parts:
            if part == "session":
                out[part] = wrap(doc, path, "session")
                continue
            source = self._source_file(session_id, part)  # type: ignore[arg-type]
            # a root fragment counts for a v1 session only when the root file holds its id
            if (
                v1_file is not None
                and not source.is_relative_to(self.path / v1.V1_DIR)
                and _id_in_file(self._file(session_id, "session")) != session_id
            ):
                out[part] = None
                continue
            value = self._document(source)
            if value is None and part == "artifacts" and source.parent.is_dir():
                value = {"artifacts": []}  # a3s-code: a directory without a manifest
            out[part] = wrap(value, source, part)
        return out

    def _collision(self, path: Path, inner: Any, session_id: str) -> CorruptFileError:
        return CorruptFileError(
            path,
            f"holds session {inner!r}, not {session_id!r}: a v1 file is named after the id "
            "it holds (a3s-code refuses it too: 'session file key collision')",
        )

    def _owner(self, path: Path) -> str | None:
        """The id a session file is listed under, or None when there is no such file.

        That is the ``id`` in the file when a3s-code would have filed that id here, else the
        file's name: a file holding another session's id, or no readable id, is listed under
        its own name, so ``load`` of it reports the file, and ``delete`` removes this file.
        """
        held = _held_locks().get(str(self.path))
        real = path
        if held is not None and held.overlay and str(path) in held.overlay:
            src = held.overlay[str(path)]
            if src is None:
                return None
            real = Path(src)
        if not os.path.lexists(real):
            return None
        stem = path.name[:-5]
        if _only_id_of(stem):  # nothing else is filed here: no need to read the file
            return stem
        inner = _id_in_file(real)
        if inner is not None and _same_id(sdk_safe_id(inner), stem):
            return inner
        return stem

    def _ids(self) -> list[str]:
        ids = []
        try:
            entries = list(os.scandir(self.path))
        except OSError as e:
            raise StoreError(f"cannot list store {self.path}: {e.strerror}") from e
        held = _held_locks().get(str(self.path))
        overlay = held.overlay if held is not None and held.overlay else {}
        for entry in entries:
            name = entry.name
            if not name.endswith(".json"):
                if _LEFTOVER.match(name):
                    self._dead_candidates.add(name)
                continue
            stem = name[:-5]
            if name == ".json" or sdk_safe_id(stem) != stem:
                continue  # a name a3s-code cannot have written: see stray_files()
            if _only_id_of(stem) and entry.path not in overlay:  # ``_owner``'s answer
                ids.append(stem)
                continue
            owner = self._owner(Path(entry.path))
            if owner is not None:
                ids.append(owner)
        if overlay:  # sessions a pending journal creates
            names = {e.name for e in entries}
            for target, src in overlay.items():
                path = Path(target)
                if src is not None and path.parent == self.path and path.name not in names:
                    owner = self._owner(path)
                    if owner is not None:
                        ids.append(owner)
        # a3s-code 5.x+: the union with the ids the v1 file names decode to
        ids.extend(i for i in v1.list_sessions(self.path) if self._v1_file(i) is not None)
        return list(dict.fromkeys(ids))

    def stray_files(self) -> list[Path]:
        """``*.json`` files in the store root that cannot be any session's file (their name
        has ``\\`` or ``..``, which a3s-code never writes); ``a3s-nb check`` reports them."""
        with contextlib.suppress(OSError):
            return sorted(
                Path(e.path)
                for e in os.scandir(self.path)
                if e.name.endswith(".json")
                and (e.name == ".json" or sdk_safe_id(e.name[:-5]) != e.name[:-5])
            )
        return []

    def v1_stray_files(self) -> list[Path]:
        """Files in ``v1/sessions`` that a3s-code does not list (their name is not
        ``id_`` + the base64url of an id); ``a3s-nb check`` reports them."""
        return v1.stray_names(self.path)

    def _exists(self, key: str) -> bool:
        if self._v1_file(key) is not None:
            return True
        owner = self._owner(self._file(key, "session"))
        return owner is not None and _same_id(owner, key)

    def _refuse_write(self, session_id: str) -> None:
        if not self._v1_rules(session_id):
            return
        where = self._v1_file(session_id) or v1.session_path(self.path, session_id).parent
        raise SdkOwnedSessionError(
            f"session {session_id!r} was not saved: a3s-code keeps it in its v1 layout "
            f"({where}) and reads that copy first, so a flat copy would be hidden, and "
            "a3s_nb never writes into v1/ (that takes a3s-code's write-ahead log and writer "
            "lease). Save it under a new id instead (--id NEW, id='NEW'), or let a3s-code "
            "save it: open or resume the session with a3s_nb on this store "
            "(a3s_nb.live.open_session, %a3s_resume ID --agent AGENT), and %a3s_save then "
            "calls session.save()"
        )

    # ---- writing -------------------------------------------------------------------------

    _commits_bytes = True

    def _commit(self, session_id: str, texts: Mapping[Part, str | bytes]) -> None:
        targets = [(self._file(session_id, part), texts[part]) for part in PARTS if part in texts]
        for target, _ in targets:  # refuse before anything is written
            self._writable_dir(target.parent)
            _replaceable(target)
        writes = []
        for target, text in targets:  # session document last
            data = text if isinstance(text, bytes) else text.encode("utf-8")
            if not _same_bytes(target, data):
                writes.append((target, data))
        self._transact(writes, what=[f"save {session_id}"])

    def _remove(self, session_id: str) -> bool:
        if self._v1_rules(session_id):
            return self._remove_v1(session_id)
        files = self.session_files(session_id)
        if not os.path.lexists(files["session"]):
            return False
        for path in files.values():
            if path.parent != self.path:
                self._check_no_escape(path.parent)
            _replaceable(path)
        removes = [p for p in (files[part] for part in reversed(PARTS)) if os.path.lexists(p)]
        for lineage in _own_lineage_files(self, session_id):  # gone in the same step
            removes.insert(0, lineage)
        self._transact(
            [], removes, rmdirs=[files["artifacts"].parent], what=[f"delete {session_id}"]
        )
        return True

    def _remove_v1(self, session_id: str) -> bool:
        """Delete what a3s-code's own delete removes: the v1 session file, its v1
        fragments and artifacts, and the root copy when that file holds this id. Refused,
        changing nothing, when the store keeps a write-ahead log (then only a3s-code may)."""
        if v1.has_wal(self.path):
            raise SdkOwnedSessionError(
                f"session {session_id!r} was not deleted: it is in a3s-code's v1 layout and "
                f"this store keeps a write-ahead log ({self.path.joinpath(*v1.WAL_FILE)}), "
                "which must record every change to it. Delete it through a3s-code "
                "(FileSessionStore.delete); nothing was changed"
            )
        *files, artifacts = v1.session_dir_paths(self.path, session_id)
        removes = [p for p in files if os.path.lexists(p)]
        rmdirs = [artifacts]
        with contextlib.suppress(OSError):
            removes += sorted(
                Path(e.path)
                for e in os.scandir(artifacts)
                if e.name.endswith(".json") and not e.is_dir(follow_symlinks=False)
            )
        root = self.session_files(session_id)
        if _id_in_file(root["session"]) == session_id:  # the root copy proves it is this one
            removes += [p for p in (root[part] for part in reversed(PARTS)) if os.path.lexists(p)]
            rmdirs.append(root["artifacts"].parent)
        for path in removes:
            self._check_no_escape(path.parent)
            _replaceable(path)
        self._transact([], removes, rmdirs=rmdirs, what=[f"delete {session_id}"])
        return True

    def _forget_cached(self, session_id: str) -> None:
        """Take a deleted session's rows out of the caches under ``.a3s_nb`` now: its
        text (secrets included) must not outlive the delete on disk. The layers that keep
        caches register how (``CACHE_FORGETTERS``); in a process where none did, the caches
        go whole (they are only caches)."""
        if not meta.is_real_dir(self.meta_dir):
            return
        if CACHE_FORGETTERS:
            for forget in CACHE_FORGETTERS:
                forget(self, session_id)
            return
        for name in CACHE_NAMES:
            path = self.meta_dir / name
            if meta.is_real_dir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                meta.unlink(path)

    def _check_no_escape(self, directory: Path) -> None:
        here = self.path
        for name in Path(os.path.relpath(directory, self.path)).parts:
            here = here / name
            if here.is_symlink():
                real = os.path.realpath(here)
                if os.path.commonpath([real, self._real]) != self._real:
                    raise StoreError(
                        f"{here} is a symbolic link to {real}, outside the store "
                        f"{self.path}: a3s_nb does not delete through it"
                    )

    def _read_checkpoint(self, kind: str, key: str) -> str | None:
        return _read_text(self.path / kind / f"{sdk_safe_id(key)}.json")

    def _write_checkpoint(self, kind: str, key: str, text: str | None) -> None:
        target = self.path / kind / f"{sdk_safe_id(key)}.json"
        if text is None:
            if os.path.lexists(target):
                self._check_no_escape(target.parent)
                _replaceable(target)
                self._transact([], [target], what=[f"delete {kind}/{key}"])
            return
        self._writable_dir(target.parent)
        _replaceable(target)
        self._transact([(target, text.encode("utf-8"))], what=[f"save {kind}/{key}"])


def _release(fd: int) -> None:
    """Let go of a lock file: its flock first, then the fd. A close that fails has still
    closed the fd (POSIX), and the write under the lock is done: not an error of it."""
    with contextlib.suppress(OSError):
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
    with contextlib.suppress(OSError):
        fsio.close(fd)


#: The non-ASCII characters whose NFC form is ASCII (singletons: Kelvin sign, Greek
#: varia, Greek question mark), as their ASCII forms.
_NFC_TARGETS = frozenset("K`;")


def _only_id_of(stem: str) -> bool:
    """Whether ``stem`` is the file stem of no id but itself: no id another than ``stem``
    has ``sdk_safe_id(id)`` equal to it, even up to Unicode normalisation (``_same_id``).
    True for an ASCII stem without ``_`` (what ``/``, ``\\`` and ``..`` map to) and
    without the three ASCII characters other characters normalise to."""
    return stem.isascii() and "_" not in stem and _NFC_TARGETS.isdisjoint(stem)


def _same_id(a: str, b: str) -> bool:
    """One id, spelled the same or differing only in Unicode normalisation (macOS file
    systems store names decomposed)."""
    return a == b or unicodedata.normalize("NFC", a) == unicodedata.normalize("NFC", b)


def _replaceable(path: Path) -> None:
    """Refuse to replace or remove a directory that sits where a file should be."""
    with contextlib.suppress(OSError):
        if stat.S_ISDIR(os.lstat(path).st_mode):
            raise CorruptFileError(
                path, "is a directory, not a file: move it out of the store to save here"
            )


def _pid_alive(pid: Any, *, own_is_alive: bool = True) -> bool:
    """Whether process ``pid`` runs; True when that cannot be told (so nothing is removed)."""
    if not isinstance(pid, int) or pid <= 0 or os.name == "nt":
        return True
    if pid == os.getpid():
        return own_is_alive
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it runs, as another user
        return True
    return True


def _dead_leftover(name: str) -> bool:
    """Whether ``name`` is a temp/backup file of a write whose process no longer runs."""
    m = _LEFTOVER.match(name)
    if m is None:
        return False
    a, b, c = m.group(1), m.group(2), m.group(3)
    # the pid is the short number beside the 19-digit nanosecond clock
    pid = b if c is not None else (a if len(a) < len(b) else b)
    return not _pid_alive(int(pid), own_is_alive=True)


def _read_text(path: Path) -> str | None:
    """The text of one store file, None when absent; CorruptFileError for anything odd."""
    data = _read_bytes(path)
    return None if data is None else decode_text(data, path)


def decode_text(data: bytes, where: str | os.PathLike[str]) -> str:
    """A store file's bytes as text; CorruptFileError naming ``where`` if not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorruptFileError(where, f"not UTF-8 text ({e.reason} at byte {e.start})") from None


def _read_bytes(path: Path) -> bytes | None:
    """The bytes of one store file, None when absent; CorruptFileError for anything odd
    (a directory, a link that leads nowhere, a file that cannot be read)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | os.O_CLOEXEC)
    except FileNotFoundError:
        if os.path.islink(path):
            raise CorruptFileError(
                path, f"is a symbolic link to {os.readlink(path)!r}, which does not exist"
            ) from None
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise CorruptFileError(path, "is a symbolic link that loops") from None
        raise CorruptFileError(path, f"cannot be read: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise CorruptFileError(path, "is a directory, not a file")
        if not stat.S_ISREG(st.st_mode):
            raise CorruptFileError(path, "is not a regular file")
        data = read_to_end(fd, st.st_size)
    except OSError as e:
        raise CorruptFileError(path, f"cannot be read: {e.strerror}") from None
    finally:
        os.close(fd)
    return data


def read_to_end(fd: int, size: int) -> bytes:
    """The bytes of the open file ``fd`` from where it is to its end, ``size`` (its size as
    ``fstat`` gave it) at a time: no buffered file object, whose making costs as much as
    reading a small file, and a file that grew meanwhile is still read whole."""
    chunks = []
    while chunk := os.read(fd, size + 1):
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _id_in_file(path: Path | str) -> str | None:
    """The ``id`` of a session file: read from its first bytes, where a3s-code writes it.

    a3s-code lists file stems, which are lossy for ids it rewrote; the id in the file is the
    truth, and reading 4 KiB of each file costs far less than parsing it. Only a file that
    does not start that way is parsed whole.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        head = os.read(fd, 4096)
        m = _ID_AT_START.match(head)
        if m is None:
            rest = [head]
            while chunk := os.read(fd, 1 << 20):
                rest.append(chunk)
            value = parse_json(b"".join(rest), path)
            if v1.is_envelope(value):  # a snapshot envelope: the id of its session
                value = value.get("session")
            value = value.get("id") if isinstance(value, dict) else None
        else:
            value = json.loads(m.group(1))
    except (OSError, ValueError, CorruptFileError):
        return None
    finally:
        os.close(fd)
    return value if isinstance(value, str) else None


def _same_bytes(target: Path, data: bytes) -> bool:
    """Whether ``target`` is a regular file holding exactly ``data`` (so need not be written)."""
    try:
        st = os.lstat(target)
        if not stat.S_ISREG(st.st_mode) or st.st_size != len(data):
            return False
        with open(target, "rb") as f:
            return f.read() == data
    except OSError:
        return False


def _write_new(tmp: Path, data: bytes) -> None:
    """Write ``data`` to a new, fsynced file ``tmp``."""
    fd = fsio.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        fsio.write_all(fd, data)
        fsio.fsync(fd)
    finally:
        fsio.close(fd)


def _unlink(path: Path) -> bool:
    try:
        fsio.unlink(path)
    except FileNotFoundError:
        return False
    return True


def _fsync_dir(path: Path) -> None:
    try:
        fd = fsio.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        fsio.fsync(fd)
    except OSError:
        pass
    finally:
        fsio.close(fd)


# ============================================================================ memory


class MemoryStore(Store):
    """A store in memory, for tests and scratch work. Holds serialised text, like a file."""

    backend = "memory"

    def __init__(self) -> None:
        self._files: dict[str, dict[Part, str]] = {}
        self._checkpoints: dict[tuple[str, str], str] = {}
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._files)} sessions)"

    def __str__(self) -> str:
        return "<memory>"

    def location(self, session_id: str, part: Part = "session") -> str:
        return f"<memory>/{part}/{session_id}"

    @contextlib.contextmanager
    def lock(self, *, shared: bool = False) -> Iterator[None]:
        with self._lock:
            yield

    def _read(self, session_id: str, part: Part) -> str | None:
        return self._files.get(session_id, {}).get(part)

    def _ids(self) -> list[str]:
        return [i for i, f in self._files.items() if "session" in f]

    def _exists(self, key: str) -> bool:
        return "session" in self._files.get(key, {})

    def _commit(self, session_id: str, texts: dict[Part, str]) -> None:
        self._files.setdefault(session_id, {}).update(texts)

    def _remove(self, session_id: str) -> bool:
        return "session" in self._files.pop(session_id, {})

    def _read_checkpoint(self, kind: str, key: str) -> str | None:
        return self._checkpoints.get((kind, key))

    def _write_checkpoint(self, kind: str, key: str, text: str | None) -> None:
        if text is None:
            self._checkpoints.pop((kind, key), None)
        else:
            self._checkpoints[(kind, key)] = text


# ============================================================================ opening


def open_store(path: str | os.PathLike[str] | Store | None = None, *, create: bool = True) -> Store:
    """Open a store: a directory path, ``":memory:"``, or a Store (returned as it is).

    A missing directory is created, unless ``create=False``: then it is a ``StoreError``
    that says how to find the store.

    >>> store = open_store("sessions")          # doctest: +SKIP
    >>> store.list()                            # doctest: +SKIP
    ['4f1c...', 'fix-oscar-2-000']
    """
    if isinstance(path, Store):
        return path
    if path is None:
        path = default_store_path()
    if str(path) == ":memory:":
        return MemoryStore()
    return FileStore(path, create=create)


# ============================================================================ caches

#: Functions taking a deleted session (store, id) out of the caches kept under ``.a3s_nb``:
#: the frames register theirs when imported (the store knows no frame).
CACHE_FORGETTERS: list[Callable[[FileStore, str], None]] = []
#: Those caches, under ``.a3s_nb``, removed whole by a delete in a process where no
#: forgetter is registered: the frame cache, the sessions index, the load check, the
#: search index.
CACHE_NAMES = ("frames", "index.json", "loadcheck.json", "search.sqlite")


# ============================================================================ lineage records

#: The ``schema`` of a lineage record.
LINEAGE_SCHEMA = "a3s_nb.lineage.v1"
#: Lineage records are kept in ``<store>/.a3s_nb/lineage/<id>.json``, never in the session
#: file (a3s-code drops the fields it does not know when it saves a session); a
#: ``MemoryStore`` keeps them in memory. Made by fork and replay (``a3s_nb.lab``), read by
#: the frames, removed with their session (``Store.delete``).
LINEAGE_DIR = "lineage"
#: The columns a lineage record gives a session (``sessions()``, ``lineage_frame()``).
LINEAGE_COLUMNS = (
    "lineage_kind",
    "lineage_parent_id",
    "lineage_at_prompt",
    "lineage_created_at",
    "lineage_model",
    "lineage_edits",
)


def _lineage_file(store: Store, session_id: str) -> Path | None:
    """Where a session's lineage record is: named by its collision-free file key (ids such
    as 'a/b' and 'a_b', one flat file name, are two sessions in a3s-code's v1 layout)."""
    if isinstance(store, FileStore):
        return store.meta_dir / LINEAGE_DIR / f"{v1.file_key(session_id)}.json"
    return None


def _legacy_lineage_file(store: Store, session_id: str) -> Path | None:
    """Where records written before the file key were (the flat stem), when that differs."""
    if isinstance(store, FileStore) and v1.file_key(session_id) != sdk_safe_id(session_id):
        return store.meta_dir / LINEAGE_DIR / f"{sdk_safe_id(session_id)}.json"
    return None


def _memory_lineage(store: Store) -> dict[str, dict[str, Any]]:
    return store.__dict__.setdefault("_a3s_nb_lineage", {})


def write_lineage(store: Store, record: dict[str, Any]) -> None:
    """Write the lineage record of ``record["session_id"]`` (atomically, on disk)."""
    path = _lineage_file(store, record["session_id"])
    if path is None:
        _memory_lineage(store)[record["session_id"]] = dict(record)
        return
    text = json.dumps(record, indent=2, ensure_ascii=False)
    meta.write_atomic(path, text.encode("utf-8"), fsync=True)  # never through a link
    _fsync_dir(path.parent)


def remove_lineage(store: Store, session_id: str) -> None:
    """Remove the lineage record of a session, if it has one (never another session's)."""
    path = _lineage_file(store, session_id)
    if path is None:
        _memory_lineage(store).pop(session_id, None)
        return
    for candidate in (path, _legacy_lineage_file(store, session_id)):
        if candidate is not None and _read_record(candidate, session_id) is not None:
            meta.unlink(candidate)


def _own_lineage_files(store: FileStore, session_id: str) -> list[Path]:
    """The lineage record files of ``session_id`` there are (never another session's)."""
    out = []
    for path in (_lineage_file(store, session_id), _legacy_lineage_file(store, session_id)):
        if path is None or not meta.is_real_dir(path.parent) or not os.path.lexists(path):
            continue
        try:
            mine = _read_record(path, session_id) is not None
        except CorruptFileError:  # unreadable: this session's only if named for it alone
            mine = path == _lineage_file(store, session_id)
        if mine:
            out.append(path)
    return out


def _read_record(path: Path, session_id: str) -> dict[str, Any] | None:
    """The record at ``path`` when it is ``session_id``'s (``CorruptFileError`` when it
    cannot be read)."""
    raw = meta.read_bytes(path)  # never through a link
    if raw is None:
        if os.path.lexists(path) and meta.is_real_dir(path.parent):
            raise CorruptFileError(path, "not a lineage record (not a regular file)")
        return None
    try:
        data = json.loads(raw.decode("utf-8"))
    except ValueError as e:
        raise CorruptFileError(path, f"not a lineage record ({e})") from None
    return data if isinstance(data, dict) and data.get("session_id") == session_id else None


def read_lineage(store: Store, session_id: str) -> dict[str, Any] | None:
    """The lineage record of a session in ``store``, None when it has none
    (``CorruptFileError`` for a record that cannot be read)."""
    path = _lineage_file(store, session_id)
    if path is None:
        rec = _memory_lineage(store).get(session_id)
        return dict(rec) if rec else None
    legacy = _legacy_lineage_file(store, session_id)
    found = _read_record(path, session_id)
    if found is None and legacy is not None:
        found = _read_record(legacy, session_id)
    return found


_WHAT_TO_DO = {
    errno.ENOSPC: "the disk is full: free some space, then try again",
    errno.EDQUOT: "the disk quota is used up: free some space, then try again",
    errno.EROFS: "the store is on a read-only file system: save to a store you can write "
    "(--store PATH, store=..., $A3S_NB_STORE)",
    errno.EACCES: "no permission to write there: give yourself write access to the store, "
    "or save to another one (--store PATH, store=...)",
    errno.EPERM: "the system does not permit this write: give yourself write access to the "
    "store, or save to another one (--store PATH, store=...)",
}


def _write_refused(store: Store, what: str, error: OSError) -> str:
    """What a StoreWriteError says: what failed, where, why, and what to do."""
    where = f" ({error.filename})" if error.filename else ""
    todo = _WHAT_TO_DO.get(error.errno or 0, "fix that, then try again")
    return (
        f"cannot {what} in store {store}: {error.strerror or error}{where}; {todo}. Nothing "
        "saved before was damaged (a write cut short is finished or undone the next time "
        "a3s_nb opens the store)."
    )
