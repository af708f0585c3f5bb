"""The public functions behind the magics: :func:`save`, :func:`resume`, :func:`list_sessions`.

Each magic is a thin face over one of these (``%a3s_save`` -> :func:`save`, ``%a3s_resume``
-> :func:`resume`, ``%a3s_sessions`` -> :func:`list_sessions`), so a script does exactly
what a notebook does. Nothing here imports IPython.

Where the store is: the ``store`` argument, else ``$A3S_NB_STORE``, else ``./a3s_sessions``
(the magics put ``%config A3sNb.store`` between the argument and the environment).
"""

from __future__ import annotations

import builtins
import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter, ValidationError

from . import secrets as _secrets
from ._warn import warn
from .config import default_store_path
from .errors import (
    A3sNbError,
    CaptureError,
    CorruptFileError,
    LiveSessionError,
    NotAnAgentError,
    SaveConflictError,
    SaveError,
    SdkOwnedSessionError,
    SecretsFoundError,
    StoreError,
    describe_validation_error,
)
from .saved import SavedSession
from .sdk import features as sdk_features
from .sdk.capture import (
    EMPTY_FINGERPRINT,
    NotASessionError,
    Previous,
    bundle_from_parts,
    capture_parts,
    fingerprint,
    is_session_like,
    tool_call_counts,
)
from .sdk.live import resume_session, wait_idle
from .store import _metafiles as meta
from .store import _v1layout as v1
from .store import serde
from .store.models import Message, SessionBundle, SessionData
from .store.store import (
    FileStore,
    Store,
    _fsync_dir,
    decode_text,
    open_store,
    validate_session_id,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "NotAnAgentError",
    "SaveError",
    "SaveResult",
    "SecretsFoundError",
    "list_sessions",
    "missing_from",
    "resume",
    "save",
    "saved_as",
    "unsaved_work",
]

StoreLike = str | os.PathLike[str] | Store | None


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _missing(store: StoreLike) -> bool:
    """True when ``store`` names a directory that does not exist yet."""
    if isinstance(store, Store):
        return False
    path = default_store_path() if store is None else store
    return str(path) != ":memory:" and not Path(path).expanduser().exists()


def _open(store: StoreLike, *, must_exist: bool = False) -> Store:
    """Open the store, turning every OS-level problem into a StoreError with the path."""
    if isinstance(store, Store):
        return store
    path = default_store_path() if store is None else store
    try:
        return open_store(path, create=not must_exist)
    except A3sNbError:
        raise
    except OSError as e:
        raise StoreError(f"cannot open store {path}: {e}") from e


# =============================================================================== save


@dataclass(frozen=True)
class SaveResult:
    """What :func:`save` wrote. ``str()`` is the one-line report ``%a3s_save`` prints."""

    session_id: str
    store: str
    messages: int
    runs: int
    tool_calls: int
    created: bool  # False when an earlier save of the same session was updated
    redacted: int = 0
    secrets_kept: int = 0
    tool_calls_failed: int = 0  # tool results that are errors
    tool_calls_refused: int = 0  # of those, calls a3s-code refused to run (no permission)
    live_id: str | None = None  # the live session's own id, when it is saved under another

    def __str__(self) -> str:
        verb = "saved" if self.created else "updated"
        line = (
            f"{verb} session {self.session_id} in {self.store}: "
            f"{_plural(self.messages, 'message')}, {_plural(self.runs, 'run')}, "
            f"{_plural(self.tool_calls, 'tool call')}"
        )
        failed, refused = self.tool_calls_failed, self.tool_calls_refused
        why = "no confirmation manager (set a PermissionPolicy)"
        if failed and refused == failed:
            line += f", {failed} failed: refused, {why}"
        elif failed and refused:
            line += f", {failed} failed, {refused} of them refused: {why}"
        elif failed:
            line += f", {failed} failed"
        if self.redacted:
            line += f"; {_plural(self.redacted, 'secret')} redacted"
        if self.secrets_kept:
            line += f"; {_plural(self.secrets_kept, 'secret')} written as is (allowed)"
        if self.live_id is not None:
            line += (
                f"; the live session {self.live_id} is saved as {self.session_id} "
                "(until another id is given)"
            )
        return line


def save(
    session: Any,
    id: str | None = None,
    *,
    store: StoreLike = None,
    model: str | None = None,
    redact: bool = False,
    allow_secrets: bool = False,
    env: dict[str, str] | None = None,
    wait: float = 10.0,
    force: bool = False,
) -> SaveResult:
    """Save a live a3s-code session (history, runs, traces, verification, artifacts).

    ``id`` saves it under another id than its own, and later saves of this live session
    (autosave's too) follow it: without ``id``, a session is saved under the id it was last
    saved under in this process, else its own, and the line printed says so. Saving again
    updates the same saved session, keeping its ``created_at``. ``model``
    (``"provider/model"``) is needed only when the session cannot tell its model. Before anything is written, what would be saved
    is scanned for secrets: found ones refuse the save (:class:`SecretsFoundError`, saying
    where each one is) unless ``redact=True`` (replace them) or
    ``allow_secrets=True`` (write them as they are). ``env`` is the environment whose
    secret-named variables are looked for (default: ``os.environ``).

    A save never loses work saved under the same id in between by someone else (another
    handle on the session, another kernel, the SDK's own save): when the store holds
    messages or runs this session lacks (see :func:`missing_from`), it is refused with
    :class:`SaveConflictError`, which says what would be lost. Save under a new ``id``, or
    pass ``force=True`` to overwrite on purpose. The check is made under the store's lock,
    at the moment of writing.

    >>> a3s_nb.save(session)                                     # doctest: +SKIP
    saved session 4f1c... in /home/me/project/a3s_sessions: 4 messages, 1 run, 1 tool call
    """
    if redact and allow_secrets:
        raise SaveError("choose one of redact (replace secrets) and allow-secrets (keep them)")
    if isinstance(session, SavedSession):
        raise NotASessionError(
            f"{session.continue_hint()}; it is already saved, and only a live session "
            "has anything new to save"
        )
    if not is_session_like(session):
        raise NotASessionError(
            f"a {type(session).__name__} is not a live a3s-code session: save a Session "
            "(from agent.session(...), a3s_nb.sdk.live.open_session(...) or "
            "%a3s_resume ID --agent AGENT)"
        )
    # A store that does not exist yet is created only once the save is sure to happen.
    st = None if _missing(store) else _open(store)
    if callable(getattr(session, "current_run", None)):
        wait_idle(session, wait)  # a streamed turn reaches history() in the background
    live_id = str(session.session_id)
    if id is None:
        id = saved_as(session)  # the id given last time sticks
    sid = validate_session_id(live_id if id is None else id)
    state = _state(session)  # before the capture: a change made during it counts as unsaved
    by_sdk = _saved_by_sdk(session, store if st is None else st, sid, redact=redact)
    if not by_sdk and st is not None:
        st._refuse_write(sid)  # before anything is read or captured
    encoder = serde.encoder_for((_store_key(store) if st is None else _store_key(st), sid))
    previous, unreadable = _previous(st, sid, encoder) if st is not None else (None, False)
    run_keys: list[bytes] = []
    parts = capture_parts(
        session, session_id=sid, model=model, previous=previous, run_keys=run_keys
    )
    encoded = _encode(encoder, parts, run_keys)
    redacted = kept = 0
    if redact:
        parts, findings = _scan(parts, encoded, env, redact=True)
        redacted = len(findings)
        if findings:  # redacted runs hold other events: keyed from what they hold
            encoded = _encode(encoder, parts)
    else:
        _, findings = _scan(parts, encoded, env, redact=False)
        if findings and not allow_secrets:
            raise SecretsFoundError(
                f"not saving session {sid}: {_plural(len(findings), 'secret')} in what would "
                f"be written (file: JSON path: kind):\n{_secrets.format_findings(findings)}\n"
                "Save with --redact (redact=True) to replace them, or with "
                "--allow-secrets (allow_secrets=True) to write them as they are.",
                findings,
            )
        kept = len(findings)
    if st is None:
        st = _open(store)
    check = not force  # an unreadable save is compared as far as it loads (_check)
    try:
        if force and unreadable:
            warn(f"replacing an unreadable earlier save of session {sid} in {st} (--force)")
        if by_sdk:
            stored_before = _sdk_save(st, sid, parts, session, check=check, secrets_kept=kept)
        else:
            stored_before = _write(st, sid, parts, encoded, session, check=check)
    except A3sNbError:
        raise
    except OSError as e:
        raise StoreError(f"cannot write session {sid} to store {st}: {e}") from e
    if not by_sdk:
        encoder.wrote(encoded["session"].data, encoded["session"].head)
    _remember(session, sid, state, "saved as")
    messages = parts["session"]["messages"]
    counts = tool_call_counts(messages)
    return SaveResult(
        session_id=sid,
        store=str(st),
        messages=len(messages),
        runs=len(parts["runs"]),
        tool_calls=counts.calls,
        tool_calls_failed=counts.failed,
        tool_calls_refused=counts.refused,
        created=previous is None and (unreadable or not stored_before),
        redacted=redacted,
        secrets_kept=kept,
        live_id=live_id if sid != live_id else None,
    )


# ----------------------------------------------------- sessions a3s-code 5.x+ saves itself


def _saved_by_sdk(session: Any, store: StoreLike, sid: str, *, redact: bool) -> bool:
    """Whether this save is the SDK's own ``session.save()``: a session of an SDK that
    writes its own snapshots (5.x+), opened or resumed by a3s_nb with a FileSessionStore
    on this store, saved under its own id as it is. Redacted, it needs a new id (the SDK
    would write the secrets into its snapshot under its own); under another id, or with
    no store, a3s_nb writes the flat layout (see ``Store._refuse_write``)."""
    known = sdk_features.store_of(session)
    if known is None or not known[1].saves_snapshots or known[0] != _store_key(store):
        return False
    if sid != str(session.session_id):
        return False
    if redact:
        raise SdkOwnedSessionError(
            f"not saving session {sid} redacted under its own id: a3s-code saves this "
            "session itself (its store is this one), and its next save would put back "
            f"what was redacted. Save the redacted copy under a new id (--redact --id "
            f"NEW, redact=True, id='NEW')"
        )
    return True


def _sdk_save(
    st: Store, sid: str, parts: dict[str, Any], session: Any, *, check: bool, secrets_kept: int
) -> bool:
    """Let a3s-code write its own snapshot of ``session`` (``session.save()``) once the
    conflict check passed, and record the save in a3s_nb's own files; True when a
    version was stored before."""
    assert isinstance(st, FileStore)  # a session a3s_nb opened on a directory
    mark = _mark(st, sid, session)
    snapshot = v1.session_path(st.path, sid)
    with st.lock():
        stored_before = _check(st, sid, parts, mark, check=check) or snapshot.is_file()
        try:
            session.save()
        except Exception as e:  # whatever the SDK raises
            raise LiveSessionError(f"a3s-code could not save session {sid}: {e}") from e
        if not snapshot.is_file():
            raise LiveSessionError(
                f"a3s-code's save() of session {sid} wrote no snapshot at {snapshot}: is its "
                f"FileSessionStore still {st}?"
            )
        _write_save_record(st, sid, parts, secrets_kept)
        data = st._read_data(sid, "session")  # what the store now reads for this id
        if data is not None:
            _wrote(mark, data)
    return stored_before


def save_record_path(st: FileStore, session_id: str) -> Path:
    """Where a3s_nb notes a save a3s-code wrote itself (keyed like the SDK's v1 names,
    so ids that share a flat file name stay apart)."""
    return st.meta_dir / "saves" / (v1.v1_name(session_id) + ".json")


def _write_save_record(st: FileStore, sid: str, parts: dict[str, Any], secrets_kept: int) -> None:
    path = save_record_path(st, sid)
    record = {
        "session_id": sid,
        "written_by": "a3s-code",  # session.save(): the SDK's own v1 snapshot
        "sdk_version": sdk_features.installed_version(),
        "saved_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "messages": len(parts["session"]["messages"]),
        "runs": len(parts["runs"]),
        "secrets_kept": secrets_kept,
    }
    text = json.dumps(record, indent=2, ensure_ascii=False)
    meta.write_atomic(path, text.encode("utf-8"), fsync=True)  # never through a link
    _fsync_dir(path.parent)


@dataclass(frozen=True)
class _Saved:
    id: str  # the id it is stored under
    fingerprint: tuple[Any, ...] | None  # its fingerprint then (None: it could not tell)
    how: str  # "saved as" or "resumed from"
    session: Callable[[], Any]  # the session it is about (a weak reference where it can be)


#: What the store holds of each live session of this process, by (id(session), its
#: session_id): the id it was last saved under or resumed from, and its fingerprint then.
#: :func:`save` writes it (``_remember``); later saves, autosave and ``%a3s_resume`` read
#: it (``_recall``).
_SAVED_AS: dict[tuple[int, str], _Saved] = {}


def _key(session: Any) -> tuple[int, str]:
    return builtins.id(session), str(session.session_id)


def _remember(session: Any, sid: str, state: tuple[Any, ...] | None, how: str) -> None:
    try:
        ref: Callable[[], Any] = weakref.ref(session)
    except TypeError:  # an object that takes no weak reference: held, so its id stays its own
        ref = lambda: session  # noqa: E731
    _SAVED_AS[_key(session)] = _Saved(sid, state, how, ref)


def _recall(session: Any) -> _Saved | None:
    """What is remembered of ``session``; never what a dead session whose memory address
    (``id``) it now has left behind."""
    key = _key(session)
    known = _SAVED_AS.get(key)
    if known is not None and known.session() is not session:
        del _SAVED_AS[key]
        return None
    return known


def _state(session: Any) -> tuple[Any, ...] | None:
    """The session's fingerprint; None when it cannot tell (its work then counts as unsaved)."""
    try:
        return fingerprint(session)
    except Exception:  # a closed or broken session
        return None


def saved_as(session: Any) -> str | None:
    """The id ``session`` was last saved under (or resumed from) in this process; None
    when it was neither."""
    known = _recall(session)
    return None if known is None else known.id


def unsaved_work(session: Any) -> str | None:
    """What a live session holds that the store may not: None when nothing.

    Nothing is unsaved when the session has not run, called a tool or recorded a check, or
    when its :func:`~a3s_nb.capture.fingerprint` is the one it had when it was last saved
    or resumed in this process. Otherwise a phrase saying why (never saved; changed
    since; a run in progress). A session that cannot be read holds nothing to save.
    """
    try:
        now = fingerprint(session)
        known = _recall(session)
    except Exception:  # closed or broken: there is nothing a save could read
        return None
    if now is None:
        return "a run in progress"
    if known is None:
        if now == EMPTY_FINGERPRINT:
            return None
        return f"never saved; {_plural(now[0], 'run')}"
    if now == known.fingerprint:
        return None
    then = f", {known.fingerprint[0]} then" if known.fingerprint is not None else ""
    return f"changed since it was last {known.how} {known.id} ({_plural(now[0], 'run')} now{then})"


def missing_from(stored: SessionBundle, live: SessionBundle) -> tuple[list[str], int]:
    """What ``stored`` holds that ``live`` lacks: run ids, and a number of messages.

    ``live`` *extends* ``stored`` (and may replace it) when nothing is missing (``([],
    0)``): the stored messages are, in order, the first messages of ``live``, and every
    stored run id is among ``live``'s runs. A run whose status moved on (running, then completed) is the
    same run; traces, verification reports and artifacts follow the runs. Redacted text
    (``[REDACTED:kind]``) in the store stands for whatever the live session has there.
    """
    live_runs = {r.snapshot.id for r in live.runs}
    runs = [r.snapshot.id for r in stored.runs if r.snapshot.id not in live_runs]
    old, new = stored.session.messages, live.session.messages
    same = 0
    for a, b in zip(old, new, strict=False):
        if not _same_message(a, b):
            break
        same += 1
    return runs, len(old) - same


def _same_message(stored: Any, live: Any) -> bool:
    if stored == live:
        return True
    return _same_json(
        stored.model_dump(mode="json", by_alias=True), live.model_dump(mode="json", by_alias=True)
    )


def _same_json(a: Any, b: Any) -> bool:
    """Whether stored message ``a`` is live message ``b`` (both as JSON), redacted text
    in ``a`` standing for whatever ``b`` has there."""
    if a == b:
        return True
    text = json.dumps(a, sort_keys=True)
    if "[REDACTED:" not in text:
        return False
    pattern = ".*?".join(map(re.escape, _REDACTED.split(text)))
    return re.fullmatch(pattern, json.dumps(b, sort_keys=True), re.DOTALL) is not None


_REDACTED = re.compile(r"\[REDACTED:[^\]\"]*\]")


def _refuse_if_it_loses_work(stored: SessionBundle, live: SessionBundle, sid: str) -> None:
    runs, messages = missing_from(stored, live)
    prompts = {r.snapshot.id: r.snapshot.prompt for r in stored.runs}
    _refuse(sid, runs, messages, prompts, len(stored.session.messages))


def _refuse(
    sid: str,
    runs: list[str],
    messages: int,
    prompts: dict[str, str | None],
    stored_messages: int,
    unreadable: CorruptFileError | None = None,
) -> None:
    """Raise SaveConflictError when the store holds ``runs`` or ``messages`` the live
    session lacks (``unreadable``: a stored file that could not be read besides)."""
    if not runs and not messages:
        return
    what = " and ".join(
        _plural(n, word) for n, word in ((messages, "message"), (len(runs), "run")) if n
    )
    shown = "; ".join(f"{rid}'s prompt {_short(prompts.get(rid))!r}" for rid in runs[:3])
    if len(runs) > 3:
        shown += f"; and {len(runs) - 3} more"
    if not shown:
        same = stored_messages - messages
        shown = f"its messages differ from message {same} on; compacted or edited?"
    also = f" One of its files cannot be read besides: {unreadable}." if unreadable else ""
    raise SaveConflictError(
        f"not saving session {sid}: the store has {what} this session lacks ({shown}). "
        "Something else saved it since this session was resumed or last saved (another "
        "handle on it, another kernel, or a3s-code itself), and writing would lose that."
        f"{also} Save under a new id (--id NEW, id='NEW'), or overwrite it on purpose "
        "(--force, force=True).",
        runs,
        messages,
    )


def _refuse_if_unreadable_loses_work(
    st: Store, sid: str, live: SessionBundle, error: CorruptFileError
) -> None:
    """The conflict check of a stored session that does not load (``error``): compare
    what does load of it, its messages and its run ids, as ``missing_from`` does.

    An unreadable file is never taken for "nothing stored": when neither the messages nor
    any run can be read, the save is refused as well, since it cannot be told safe. When
    what can be read is all in ``live``, the save replaces the unreadable save, with a
    warning."""
    messages = _readable_messages(st, sid)
    runs = _readable_runs(st, sid)
    if messages is None and not runs:
        raise SaveConflictError(
            f"not saving session {sid}: the store holds a save of it that cannot be read "
            f"({error}), so whether writing would lose work saved there cannot be told. "
            "Look at that file (or move it out of the store), or overwrite the save on "
            "purpose (--force, force=True), or save under a new id (--id NEW, id='NEW').",
            [],
            0,
        )
    live_runs = {r.snapshot.id for r in live.runs}
    missing_runs = [rid for rid in (runs or {}) if rid not in live_runs]
    missing_messages = 0
    if messages is not None:
        new = [m.model_dump(mode="json", by_alias=True) for m in live.session.messages]
        same = 0
        for a, b in zip(messages, new, strict=False):
            if not _same_json(a, b):
                break
            same += 1
        missing_messages = len(messages) - same
    _refuse(
        sid,
        missing_runs,
        missing_messages,
        runs or {},
        len(messages or []),
        unreadable=error,
    )
    warn(f"replacing an unreadable earlier save: {error}")


_MESSAGE = TypeAdapter(Message)


def _readable_messages(st: Store, sid: str) -> list[Any] | None:
    """The stored messages of ``sid`` as JSON (each as ``load`` would give it, where it
    validates), or None when the session document cannot be read or holds no list."""
    try:
        doc = st.read_raw(sid, "session")
    except CorruptFileError:
        return None
    found = doc.get("messages") if isinstance(doc, dict) else None
    if not isinstance(found, list):
        return None
    out = []
    for m in found:
        try:
            out.append(_MESSAGE.validate_python(m).model_dump(mode="json", by_alias=True))
        except ValidationError:
            out.append(m)  # compared as it is
    return out


def _readable_runs(st: Store, sid: str) -> dict[str, str | None] | None:
    """The stored run ids of ``sid`` with their prompts ({} for no run file), or None when
    the run file cannot be read, is not a list, or holds a run without an id."""
    try:
        found = st.read_raw(sid, "runs")
    except CorruptFileError:
        return None
    if found is None:
        return {}
    if not isinstance(found, list):
        return None
    out: dict[str, str | None] = {}
    for record in found:
        snap = record.get("snapshot") if isinstance(record, dict) else None
        rid = snap.get("id") if isinstance(snap, dict) else None
        if not isinstance(rid, str):
            return None
        prompt = snap.get("prompt")
        out[rid] = prompt if isinstance(prompt, str) else None
    return out


def _short(text: str | None, width: int = 60) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _previous(
    st: Store, sid: str, encoder: serde.PartEncoder | None = None
) -> tuple[Previous | None, bool]:
    """What is kept from the saved version of ``sid``, and whether it was unreadable.

    That is its session document without the messages (read, not loaded: only its other
    fields are validated), and its artifacts and sub-agent tasks as written; None when
    there is none, or it cannot be read (then with a warning: the new save replaces it).

    When the stored document is, byte for byte, the one ``encoder`` last wrote, the head
    it kept is parsed instead of the whole document (a changed file is read as usual).
    """
    try:
        if encoder is None:
            doc = st.read_raw(sid, "session")
        else:
            with st.lock(shared=True):
                data = st._read_data(sid, "session")
            head = encoder.head_written_as(data) if isinstance(data, bytes) else None
            if head is not None:
                doc = json.loads(head)
            elif data is not None:  # parsed as read_raw parses it
                text = decode_text(data, st.location(sid)) if isinstance(data, bytes) else data
                doc = st._parse_json(sid, "session", text)
            else:
                doc = None
        if doc is None:
            return None, False
        if not isinstance(doc, dict):
            raise CorruptFileError(st.location(sid), "is not a JSON object")
        try:
            head = SessionData.model_validate({**doc, "messages": []})
        except ValidationError as e:
            raise CorruptFileError(st.location(sid), describe_validation_error(e)) from None
        if head.id != sid:
            raise CorruptFileError(st.location(sid), f"holds session {head.id!r}, not {sid!r}")
        tasks = st.read_raw(sid, "subagent_tasks")
    except CorruptFileError:  # the conflict check compares what does load of it
        return None, True

    def artifacts() -> list[dict[str, Any]]:
        try:
            manifest = st.read_raw(sid, "artifacts")
        except CorruptFileError:
            return []
        found = manifest.get("artifacts") if isinstance(manifest, dict) else None
        return [a for a in found if isinstance(a, dict)] if isinstance(found, list) else []

    doc.pop("messages", None)
    return Previous(session=doc, artifacts=artifacts, subagent_tasks=tasks), False


#: The session document each live session last wrote, by (id(session), store, id): its
#: bytes for the last few, a digest of them for the others. While the stored document is
#: still that one, nothing was saved in between.
_WROTE: OrderedDict[tuple[int, str, str], bytes] = OrderedDict()
_WROTE_DIGESTS: dict[tuple[int, str, str], bytes] = {}
_WROTE_KEPT = 8
_WROTE_LOCK = threading.Lock()


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data).digest()


def _wrote(mark: tuple[int, str, str], data: bytes) -> None:
    """Remember that the live session of ``mark`` wrote the session document ``data``."""
    with _WROTE_LOCK:
        _WROTE_DIGESTS.pop(mark, None)
        _WROTE[mark] = data
        _WROTE.move_to_end(mark)
        while len(_WROTE) > _WROTE_KEPT:
            old, old_data = _WROTE.popitem(last=False)
            _WROTE_DIGESTS[old] = _digest(old_data)


def _wrote_this(mark: tuple[int, str, str], stored: str | bytes) -> bool:
    """Whether ``stored`` is the session document the live session of ``mark`` last wrote."""
    data = stored if isinstance(stored, bytes) else stored.encode("utf-8", "surrogatepass")
    with _WROTE_LOCK:
        kept, digest = _WROTE.get(mark), _WROTE_DIGESTS.get(mark)
    if kept is not None:
        return kept == data
    return digest is not None and digest == _digest(data)


def _write(
    st: Store,
    sid: str,
    parts: dict[str, Any],
    encoded: dict[str, serde.EncodedPart],
    session: Any,
    *,
    check: bool,
) -> bool:
    """Write the files under the store lock, first refusing (``check``) to lose work saved
    in between by something else; True when a version was stored before."""
    data = {part: e.data for part, e in encoded.items()}
    mark = _mark(st, sid, session)
    with st.lock():
        st._refuse_write(sid)  # again, under the lock: the SDK may have saved it meanwhile
        stored_before = _check(st, sid, parts, mark, check=check)
        st._save_texts(sid, data)
        _wrote(mark, data["session"])
    return stored_before


def _mark(st: Store, sid: str, session: Any) -> tuple[int, str, str]:
    return builtins.id(session), _store_key(st), sid


def _store_key(store: StoreLike) -> str:
    """The same for every handle on one store (a directory's path)."""
    if isinstance(store, FileStore):
        return str(store)
    if isinstance(store, Store):
        return f"{type(store).__name__}@{id(store)}"
    path = default_store_path() if store is None else store
    return str(path) if str(path) == ":memory:" else str(Path(path).expanduser().absolute())


def _check(
    st: Store, sid: str, parts: dict[str, Any], mark: tuple[int, str, str], *, check: bool
) -> bool:
    """Refuse (``check``) a save that would lose what the store holds and ``parts`` lack;
    True when a version is stored. Called with the store lock held.

    What is stored is loaded only when this live session did not write it: after a save
    of this session, the next one compares the stored session document with the one it
    wrote (or a digest of it).
    """
    try:
        stored_text = st._read_data(sid, "session")
    except CorruptFileError:
        stored_text = b""  # not what was written: checked below
    if check and stored_text is not None and not _wrote_this(mark, stored_text):
        try:
            stored = st._stored(sid)
        except CorruptFileError as e:  # unreadable is not "nothing stored"
            _refuse_if_unreadable_loses_work(st, sid, bundle_from_parts(parts), e)
            stored = None
        if stored is not None:
            _refuse_if_it_loses_work(stored, bundle_from_parts(parts), sid)
    return stored_text is not None


def _encode(
    encoder: serde.PartEncoder, parts: dict[str, Any], run_keys: list[bytes] | None = None
) -> dict[str, serde.EncodedPart]:
    try:
        return encoder.encode(parts, run_keys=run_keys)
    except serde.PartError as e:
        raise CaptureError(
            "the session does not have the a3s-code shape: " + e.describe()
        ) from None


def _scan(
    parts: dict[str, Any],
    encoded: dict[str, serde.EncodedPart],
    env: dict[str, str] | None,
    *,
    redact: bool,
) -> tuple[dict[str, Any], list[_secrets.SecretFinding]]:
    """Scan (or redact) what would be written: the parts (redacted) and the findings.

    Only the items (messages, runs, ...) that did not scan clean before with the same
    secret values are given to the scanner, with each part's other fields: an unchanged
    item would be found clean again. Paths in the findings are those of the whole parts.
    """
    setting = frozenset(_secrets.secret_env_values(env).items())
    view: dict[str, Any] = {}
    where: dict[str, list[int]] = {}  # the index in the part of each item given
    for part, value in parts.items():
        key = serde.item_key(part)
        items = value if key is None else value[key]
        where[part] = [
            i for i, e in enumerate(encoded[part].entries) if setting not in e.clean_under
        ]
        left = [items[i] for i in where[part]]
        view[part] = left if key is None else {**value, key: left}
    if redact:
        out, found = _secrets.redact(view, env=env)
    else:
        out, found = view, _secrets.scan(view, env=env)
    findings = [_relocated(f, where[f.part]) for f in found]
    if any(f is None for f in findings):  # a path not understood: scan all, as it is
        if redact:
            return _secrets.redact(parts, env=env)
        return parts, _secrets.scan(parts, env=env)
    if redact:
        merged: dict[str, Any] = {}
        for part, value in parts.items():
            key = serde.item_key(part)
            got = out[part] if key is None else out[part].get(key)
            if not isinstance(got, list) or len(got) != len(where[part]):
                return _secrets.redact(parts, env=env)
            items = list(value if key is None else value[key])
            for j, i in enumerate(where[part]):
                items[i] = got[j]
            merged[part] = items if key is None else {**out[part], key: items}
        out = merged
    # the items given that no finding falls in are clean (the others were already)
    dirty = {(f.part, serde.item_index(f.part, f.path)) for f in findings}  # type: ignore[union-attr]
    for part, e in encoded.items():
        for i in where[part]:
            if (part, i) not in dirty:
                e.entries[i].clean_under.add(setting)
    return out, findings  # type: ignore[return-value]


def _relocated(finding: _secrets.SecretFinding, where: list[int]) -> _secrets.SecretFinding | None:
    """``finding`` with the path it has in the whole part; None if the path is not known."""
    if serde.in_head(finding.part, finding.path):
        return finding
    path = serde.item_path(finding.part, finding.path, where)
    return None if path is None else dataclasses.replace(finding, path=path)


# ============================================================================= resume


def resume(
    id: str,
    agent: Any = None,
    *,
    store: StoreLike = None,
    **options: Any,
) -> Any:
    """A saved session again, from its id or a unique prefix of it.

    With an ``agent`` (an ``a3s_code.Agent`` whose config has the session's model), a live
    SDK session with the saved history, which continues where it left off; ``options`` go
    to :func:`a3s_nb.sdk.live.resume_session` (``model="provider/model"``, ``auto_save=True``,
    ...). Without one, a read-only :class:`SavedSession` (transcript, runs, traces).

    An ambiguous prefix raises :class:`~a3s_nb.errors.AmbiguousSessionIdError` listing the
    candidates; an unknown id :class:`~a3s_nb.errors.SessionNotFoundError` with the closest
    ids.

    >>> session = a3s_nb.resume("4f1c", agent=agent)            # doctest: +SKIP
    >>> session.send("Now run it")                              # doctest: +SKIP
    """
    st = _open(store, must_exist=True)
    full = st.resolve(str(id))
    bundle = st.load(full)  # a corrupt file is reported here, by path
    if agent is None:
        if options:
            raise TypeError(f"options {sorted(options)} need an agent")
        return SavedSession(bundle, st)
    if not callable(getattr(agent, "resume_session", None)) or isinstance(agent, type):
        raise NotAnAgentError(
            f"a {type(agent).__name__} is not an a3s-code Agent: pass one made with "
            "a3s_code.Agent.create(config)"
        )
    if not isinstance(st, FileStore):
        raise StoreError(
            f"a3s-code resumes sessions from a directory store only, not {st}; "
            "save the session into a directory first"
        )
    try:
        live = resume_session(agent, full, st.path, **options)
    except A3sNbError:
        raise
    except ImportError:
        raise
    except TypeError:  # an unknown option: the message names the known ones
        raise
    except Exception as e:  # anything else the SDK raises
        raise LiveSessionError(f"a3s-code could not resume session {full!r}: {e}") from e
    _remember(live, full, _state(live), "resumed from")  # nothing unsaved yet
    return live


# ============================================================================= list


#: The columns ``%a3s_sessions`` shows unless asked for all (``--all``) or others
#: (``--columns``); ``list_sessions`` returns every column unless given ``columns``.
SESSION_LIST_COLUMNS = (
    "session_id",
    "updated_at",
    "model",
    "n_messages",
    "n_runs",
    "n_tool_calls",
    "n_tool_errors",
    "cost_usd",
)

#: The filters of a session listing, as ``argparse`` options: ``%a3s_sessions`` and
#: ``a3s-nb list`` both take exactly these and pass them to :func:`list_sessions`.
LIST_FILTERS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("--limit", {"type": int, "help": "Show at most N sessions (the newest)."}),
    ("--model", {"help": "Only sessions whose model contains this text."}),
    ("--workspace", {"help": "Only sessions whose workspace contains this text."}),
    (
        "--since",
        {"help": "Only sessions saved or run at or after this date/time (UTC)."},
    ),
    (
        "--contains",
        {
            "help": "Only sessions whose id contains this text, or whose content does, "
            "ignoring case: prompts, answers, tool calls and outputs (see %%a3s_search)."
        },
    ),
)


def list_filters(args: Any) -> dict[str, Any]:
    """The :data:`LIST_FILTERS` values of parsed arguments, as ``list_sessions`` keywords."""
    return {flag[2:]: getattr(args, flag[2:]) for flag, _ in LIST_FILTERS}


def list_sessions(
    store: StoreLike = None,
    *,
    limit: int | None = None,
    model: str | None = None,
    workspace: str | None = None,
    since: str | dt.datetime | None = None,
    contains: str | None = None,
    columns: str | Sequence[str] | None = None,
) -> pd.DataFrame:
    """The saved sessions, newest first: id, model, workspace, times, counts.

    This is the ``sessions`` frame of :mod:`a3s_nb.frames` (columns in docs/frames.md),
    filtered: ``model`` and ``workspace`` are substrings; ``since`` keeps sessions active
    at or after a time (``"2025-11-01"``, a datetime; UTC when naive), with the frames' one
    meaning: a save (``updated_at``) or a run update (``last_run_at``) at or after it;
    ``contains`` is a substring of the id or, ignoring case, of the session's content
    (prompts, answers, tool calls and outputs: :func:`a3s_nb.search`); ``limit`` keeps
    the newest N. ``columns`` keeps only those columns (a list, or names separated by
    commas; :data:`SESSION_LIST_COLUMNS` is what ``%a3s_sessions`` shows); every column
    by default. A session with a corrupt file is
    left out with a warning that names the file.

    >>> a3s_nb.list_sessions(limit=5, model="gpt-4o")             # doctest: +SKIP
    """
    if limit is not None and limit < 0:
        raise SaveError(f"limit must be 0 or more, not {limit}")
    wanted = _list_columns(columns) if columns is not None else None
    from .frames import sessions as sessions_frame  # pandas: imported on first use
    from .frames._engine import to_utc

    since_ts = None if since is None else to_utc(since, "since")  # the frames' own error

    st = _open(store, must_exist=True)
    df = sessions_frame(st, since=since_ts)
    if model:
        df = df[df["model"].fillna("").str.contains(model, regex=False)]
    if workspace:
        df = df[df["workspace"].fillna("").str.contains(workspace, regex=False)]
    if contains:
        from .frames.search import matching_sessions  # pandas: imported on first use

        found = matching_sessions(contains, st)
        df = df[df["session_id"].str.contains(contains, regex=False) | df["session_id"].isin(found)]
    df = df.sort_values(
        ["updated_at", "session_id"], ascending=[False, True], na_position="last", kind="stable"
    )
    if limit is not None:
        df = df.head(limit)
    if wanted is not None:
        df = df[wanted]
    return df.reset_index(drop=True)


def _list_columns(columns: str | Sequence[str]) -> list[str]:
    """The columns asked for, checked against the ``sessions`` frame's."""
    from .frames.schema import columns as frame_columns  # pandas: imported on first use

    names = columns.split(",") if isinstance(columns, str) else list(columns)
    names = [n.strip() for n in names if isinstance(n, str) and n.strip()]
    known = [c.name for c in frame_columns("sessions")]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        what = f"no column {', '.join(map(repr, unknown))}" if unknown else "no columns given"
        raise SaveError(
            f"{what} in the session list; the columns are: {', '.join(known)} "
            "(docs/frames.md#sessions)"
        )
    return list(dict.fromkeys(names))
