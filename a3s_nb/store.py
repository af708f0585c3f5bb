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

Where a3s_nb is deliberately stricter than the SDK: every file is written atomically (temp
file, fsync, rename, directory fsync) and all of a session's files are staged before any is
replaced, so a failed save damages nothing; saves and loads of one store take a file lock,
so two kernels never interleave a session's files; ids that the SDK would silently rewrite
(and so collide) are refused; a corrupt file is reported by path and leaves the other
sessions loadable.
"""

from __future__ import annotations

import abc
import contextlib
import itertools
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

try:
    import fcntl
except ImportError:  # Windows: no flock; stores are then safe between threads only
    fcntl = None  # type: ignore[assignment]

from .errors import (
    AmbiguousSessionIdError,
    CorruptFileError,
    InvalidBundleError,
    InvalidSessionIdError,
    SessionNotFoundError,
    StoreError,
    describe_validation_error,
)
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

_ADAPTERS: dict[str, TypeAdapter[Any]] = {
    "session": TypeAdapter(SessionData),
    "runs": TypeAdapter(list[RunRecord]),
    "traces": TypeAdapter(list[TraceEvent]),
    "verification": TypeAdapter(list[VerificationReport]),
    "artifacts": TypeAdapter(ArtifactManifest),
    "subagent_tasks": TypeAdapter(list[SubagentTaskSnapshot]),
}

_MAX_ID_BYTES = 200
_ID_AT_START = re.compile(rb'\A\{\s*"id"\s*:\s*("(?:[^"\\]|\\.)*")')

M = TypeVar("M", bound=BaseModel)


def dumps(value: Any) -> str:
    """Serialise like serde_json's ``to_string_pretty``: 2-space indent, raw UTF-8.

    Floats are spelled as serde_json spells them (see :func:`serde_float`), so a file the
    SDK wrote and a3s_nb saves back unchanged stays byte-identical.
    """
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json", by_alias=True)
    text = json.dumps(value, indent=2, ensure_ascii=False)
    # Python and serde disagree only on floats that Python writes with an exponent; such
    # a float shows as digit, 'e', sign. Rare, so the exact fix runs only when one may be.
    if _EXPONENT.search(text) and _FLOAT_MARK not in text:
        text = json.dumps(_mark_floats(value), indent=2, ensure_ascii=False)
        text = _MARKED.sub(lambda m: m.group(1), text)
    return text


_EXPONENT = re.compile(r"\de[+-]\d")
_FLOAT_MARK = "\ue000float:"
_MARKED = re.compile('"' + _FLOAT_MARK + '([^"\ue000]*)\ue000"')


def _mark_floats(value: Any) -> Any:
    """``value`` with every float Python would spell differently as a marked string."""
    if isinstance(value, float):
        text = repr(value)
        return f"{_FLOAT_MARK}{serde_float(value)}\ue000" if "e" in text else value
    if isinstance(value, dict):
        return {k: _mark_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mark_floats(v) for v in value]
    return value


def serde_float(value: float) -> str:
    """A finite float as serde_json (ryu) writes it: ``1e-7``, ``0.00001``, ``1.5e16``.

    Both pick the same shortest round-trip digits; they differ in layout: ryu writes plain
    decimals for decimal exponents from -5 up to 16, and exponents without ``+`` or leading
    zeros. Checked against serde_json on 5,946 values (``tests/data``).
    """
    text = repr(value)
    if "e" not in text and "inf" not in text and "nan" not in text:
        return text
    sign = "-" if text.startswith("-") else ""
    mantissa, _, exp = text.lstrip("-").partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    k = int(exp or 0) - len(frac)  # value = int(digits) * 10**k
    stripped = digits.rstrip("0")
    k += len(digits) - len(stripped)
    digits = stripped
    n = len(digits)
    kk = n + k  # value = 0.<digits> * 10**kk
    if k >= 0 and kk <= 16:
        body = digits + "0" * k + ".0"
    elif 0 < kk <= 16:
        body = digits[:kk] + "." + digits[kk:]
    elif -5 < kk <= 0:
        body = "0." + "0" * -kk + digits
    elif n == 1:
        body = f"{digits}e{kk - 1}"
    else:
        body = f"{digits[0]}.{digits[1:]}e{kk - 1}"
    return sign + body


def _to_jsonable(part: str, value: Any) -> Any:
    return _ADAPTERS[part].dump_python(value, mode="json", by_alias=True)


def validate_session_id(session_id: str) -> str:
    """Return ``session_id`` if it can be a file name as it is, else raise.

    a3s-code silently rewrites ``/``, ``\\`` and ``..`` to ``_``, so ``a/b`` and ``a_b`` would
    share one file; a3s_nb refuses such ids instead of letting them collide.
    """
    if not isinstance(session_id, str) or not session_id:
        raise InvalidSessionIdError("a session id must be a non-empty string")
    problem = None
    if "/" in session_id or "\\" in session_id:
        problem = "contains a path separator"
    elif ".." in session_id:
        problem = "contains '..'"
    elif any(ord(c) < 32 or ord(c) == 127 for c in session_id):
        problem = "contains a control character"
    elif session_id.startswith("."):
        problem = "starts with '.' (it would be a hidden file)"
    elif session_id != session_id.strip():
        problem = "has leading or trailing white space"
    elif len(session_id.encode()) > _MAX_ID_BYTES:
        problem = f"is longer than {_MAX_ID_BYTES} bytes"
    if problem:
        raise InvalidSessionIdError(
            f"session id {session_id!r} {problem}; use letters, digits, '-', '_' and '.'"
        )
    return session_id


def sdk_safe_id(session_id: str) -> str:
    """The file stem a3s-code 3.x uses for ``session_id`` (its ``safe_session_id``)."""
    return session_id.replace("/", "_").replace("\\", "_").replace("..", "_")


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

    # ---- public API --------------------------------------------------------------------

    def list(self) -> list[str]:
        """The ids of all saved sessions, sorted."""
        return sorted(self._ids())

    def exists(self, session_id: str) -> bool:
        return self._read(session_id, "session") is not None

    def read_raw(self, session_id: str, part: Part) -> Any | None:
        """One file of a session as parsed JSON (no validation), or None when absent.

        This is the fast path used by the frames; ``load`` validates.
        """
        text = self._read(session_id, part)
        if text is None:
            return None
        return self._parse_json(session_id, part, text)

    def load(self, session_id: str) -> SessionBundle:
        """Load a session and its fragments. Missing fragments load as empty, as in a3s-code.

        Raises ``SessionNotFoundError`` (with close matches) or ``CorruptFileError``.
        """
        with self.lock(shared=True):
            texts = {part: self._read(session_id, part) for part in PARTS}
        if texts["session"] is None:
            raise SessionNotFoundError(session_id, str(self), self._ids())
        values: dict[str, Any] = {}
        for part, text in texts.items():
            if text is None:
                continue
            values[part] = self._validate(session_id, part, text)
        session: SessionData = values["session"]
        if session.id != session_id:
            raise CorruptFileError(
                self.location(session_id),
                f"holds session {session.id!r}, not {session_id!r} "
                "(a3s-code maps '/', '\\' and '..' to '_', so these ids share a file)",
            )
        return SessionBundle(**values)

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
        with self.lock():
            if guard is not None:
                guard(self._stored(session_id))
            self._commit(session_id, texts)

    def _stored(self, session_id: str) -> SessionBundle | None:
        """What is stored for ``session_id``, or None. Called with the lock held."""
        if not self.exists(session_id):
            return None
        try:
            return self.load(session_id)  # the lock is re-entrant: this reuses the held one
        except SessionNotFoundError:  # removed by something that takes no lock (the SDK)
            return None

    def delete(self, session_id: str) -> None:
        """Delete a session and its per-session fragments (not its checkpoints)."""
        with self.lock():
            if not self._remove(session_id):
                raise SessionNotFoundError(session_id, str(self), self._ids())
            from .lineage import _remove_lineage  # a fork's lineage record goes with it

            _remove_lineage(self, session_id)

    def resolve(self, id_or_prefix: str) -> str:
        """The full id of a saved session from its id or a unique prefix of it."""
        ids = self._ids()
        if id_or_prefix in ids:
            return id_or_prefix
        matches = sorted(i for i in ids if i.startswith(id_or_prefix)) if id_or_prefix else []
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise AmbiguousSessionIdError(id_or_prefix, matches)
        raise SessionNotFoundError(id_or_prefix, str(self), ids)

    # ---- checkpoints (3.3+) --------------------------------------------------------------

    def load_loop_checkpoint(self, run_id: str) -> LoopCheckpoint | None:
        return self._load_checkpoint("loop_checkpoints", run_id, LoopCheckpoint)

    def save_loop_checkpoint(self, checkpoint: LoopCheckpoint) -> None:
        self._save_checkpoint("loop_checkpoints", checkpoint.run_id, checkpoint)

    def delete_loop_checkpoint(self, run_id: str) -> None:
        with self.lock():
            self._write_checkpoint("loop_checkpoints", validate_session_id(run_id), None)

    def load_workflow_checkpoint(self, workflow_id: str) -> WorkflowCheckpoint | None:
        return self._load_checkpoint("workflow_checkpoints", workflow_id, WorkflowCheckpoint)

    def save_workflow_checkpoint(self, checkpoint: WorkflowCheckpoint) -> None:
        self._save_checkpoint("workflow_checkpoints", checkpoint.workflow_id, checkpoint)

    def delete_workflow_checkpoint(self, workflow_id: str) -> None:
        with self.lock():
            self._write_checkpoint("workflow_checkpoints", validate_session_id(workflow_id), None)

    def _load_checkpoint(self, kind: str, key: str, model: type[M]) -> M | None:
        text = self._read_checkpoint(kind, key)
        if text is None:
            return None
        where = f"{self}/{kind}/{sdk_safe_id(key)}.json"
        try:
            value = model.model_validate_json(text)
        except ValidationError as e:
            raise CorruptFileError(where, describe_validation_error(e)) from None
        if getattr(value, "schema_version", 0) > 1:
            raise CorruptFileError(
                where, f"schema_version {value.schema_version} is newer than a3s_nb reads (1)"
            )
        return value

    def _save_checkpoint(self, kind: str, key: str, checkpoint: BaseModel) -> None:
        text = dumps(checkpoint)
        with self.lock():
            self._write_checkpoint(kind, validate_session_id(key), text)

    # ---- parsing -------------------------------------------------------------------------

    def _parse_json(self, session_id: str, part: Part, text: str) -> Any:
        if not text.strip():
            raise CorruptFileError(self.location(session_id, part), "file is empty")
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise CorruptFileError(
                self.location(session_id, part),
                f"not valid JSON ({e.msg.removesuffix(' at')} at line {e.lineno} column "
                f"{e.colno}; "
                "truncated by an interrupted write?)",
            ) from None

    def _validate(self, session_id: str, part: Part, text: str) -> Any:
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


class _Held:
    """A store lock this thread holds: its flock'd file (None without one) and mode."""

    __slots__ = ("fd", "shared")

    def __init__(self, fd: int | None, shared: bool):
        self.fd = fd
        self.shared = shared


def _held_locks() -> dict[str, _Held]:
    held = getattr(_held_by_thread, "locks", None)
    if held is None:
        held = _held_by_thread.locks = {}
    return held


class FileStore(Store):
    """The a3s-code 3.x ``FileSessionStore`` directory layout."""

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

    def __repr__(self) -> str:
        return f"FileStore({str(self.path)!r})"

    def __str__(self) -> str:
        return str(self.path)

    # ---- paths ---------------------------------------------------------------------------

    def _file(self, session_id: str, part: Part) -> Path:
        stem = sdk_safe_id(session_id)
        if part == "session":
            return self.path / f"{stem}.json"
        if part == "artifacts":
            return self.path / "artifacts" / stem / "artifacts.json"
        return self.path / part / f"{stem}.json"

    def location(self, session_id: str, part: Part = "session") -> str:
        return str(self._file(session_id, part))

    def exists(self, session_id: str) -> bool:
        return self._file(session_id, "session").is_file()  # no need to read it

    def session_files(self, session_id: str) -> dict[Part, Path]:
        """The path of every per-session file (whether it exists or not)."""
        return {part: self._file(session_id, part) for part in PARTS}

    @property
    def meta_dir(self) -> Path:
        """Directory for a3s_nb's own bookkeeping (lock, index) inside the store."""
        return self.path / self._META_DIR

    # ---- locking -------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, *, shared: bool = False) -> Iterator[None]:
        """Hold the store's lock: exclusive for writing, shared for reading.

        Re-entrant within a thread: a read inside a write (a ``save`` guard calling
        ``load``) reuses the lock already held instead of waiting on itself, and a write
        inside a read upgrades the held lock for its duration.
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
                yield
            finally:
                del held[key]
                if state.fd is not None:
                    os.close(state.fd)  # releases the flock

    def _acquire(self, shared: bool) -> _Held:
        if fcntl is None:
            return _Held(None, shared)
        lock_file = self.meta_dir / "lock"
        try:
            if shared:
                # Readers never create files: a store nobody has saved into through
                # a3s_nb has no lock file and no a3s_nb writer to wait for.
                fd = os.open(lock_file, os.O_RDONLY)
            else:
                self.meta_dir.mkdir(exist_ok=True)
                fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
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
                yield
            finally:
                outer.shared = True
                os.close(state.fd)  # type: ignore[arg-type]
            return
        fcntl.flock(outer.fd, fcntl.LOCK_EX)  # converting is not atomic; fine for a write
        outer.shared = False
        try:
            yield
        finally:
            outer.shared = True
            fcntl.flock(outer.fd, fcntl.LOCK_SH)

    # ---- raw I/O -------------------------------------------------------------------------

    def _read(self, session_id: str, part: Part) -> str | None:
        path = self._file(session_id, part)
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except UnicodeDecodeError as e:
            raise CorruptFileError(path, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
        except OSError as e:
            raise CorruptFileError(path, f"cannot be read: {e.strerror}") from None

    def _ids(self) -> list[str]:
        ids = []
        try:
            entries = list(os.scandir(self.path))
        except OSError as e:
            raise StoreError(f"cannot list store {self.path}: {e.strerror}") from e
        for entry in entries:
            name = entry.name
            if not name.endswith(".json") or name == ".json" or not entry.is_file():
                continue
            ids.append(_id_in_file(entry.path) or name[:-5])
        return ids

    def _commit(self, session_id: str, texts: dict[Part, str]) -> None:
        # 1. stage every file; 2. keep a hard link to each file about to be replaced;
        # 3. rename the staged files into place, session document last. If anything fails,
        # the links put the previous generation back, so a failed save changes nothing.
        staged: list[tuple[Path, Path]] = []
        kept: dict[Path, Path | None] = {}  # target -> link to its previous content
        try:
            for part in PARTS:
                if part in texts:
                    target = self._file(session_id, part)
                    staged.append((_write_temp(target, texts[part]), target))
            for tmp, target in staged:
                kept[target] = None
                if target.exists():
                    kept[target] = tmp.with_suffix(".old")
                    os.link(target, kept[target])
            for tmp, target in staged:
                os.replace(tmp, target)
        except BaseException:
            for target, old in kept.items():
                with contextlib.suppress(OSError):
                    if old is not None:
                        # a no-op when target was not replaced yet (both name one inode)
                        os.replace(old, target)
                        old.unlink(missing_ok=True)
                    elif not any(t == target and tmp.exists() for tmp, t in staged):
                        target.unlink()  # created by this save
            for tmp, _ in staged:
                tmp.unlink(missing_ok=True)
            raise
        for old in kept.values():
            if old is not None:
                old.unlink(missing_ok=True)
        for d in {target.parent for _, target in staged}:
            _fsync_dir(d)

    def _remove(self, session_id: str) -> bool:
        files = self.session_files(session_id)
        existed = files["session"].exists()
        # the session document goes first: a crash half way leaves orphans, never a
        # session with missing history
        for part in reversed(PARTS):
            files[part].unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            files["artifacts"].parent.rmdir()
        return existed

    def _read_checkpoint(self, kind: str, key: str) -> str | None:
        try:
            return (self.path / kind / f"{sdk_safe_id(key)}.json").read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def _write_checkpoint(self, kind: str, key: str, text: str | None) -> None:
        target = self.path / kind / f"{sdk_safe_id(key)}.json"
        if text is None:
            target.unlink(missing_ok=True)
            return
        os.replace(_write_temp(target, text), target)
        _fsync_dir(target.parent)


def _id_in_file(path: str) -> str | None:
    """The ``id`` a3s-code writes first in a session file, read from its first bytes.

    a3s-code lists file stems, which are lossy for ids it rewrote; the id in the file is the
    truth, and reading 4 KiB of each file costs far less than parsing it.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return None
    m = _ID_AT_START.match(head)
    if not m:
        return None
    try:
        value = json.loads(m.group(1))
    except ValueError:
        return None
    return value if isinstance(value, str) else None


def _write_temp(target: Path, text: str) -> Path:
    """Write ``text`` to a fsynced temp file beside ``target`` and return its path."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{time.time_ns()}.{os.getpid()}.{next(_tmp_counter)}.tmp")
    data = text.encode("utf-8")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    return tmp


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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
        from .config import default_store_path

        path = default_store_path()
    if str(path) == ":memory:":
        return MemoryStore()
    return FileStore(path, create=create)
