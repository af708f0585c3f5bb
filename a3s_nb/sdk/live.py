"""Drive the real a3s-code SDK with session persistence that actually works.

In the a3s-code 3.x Python binding, ``SessionOptions.session_store = FileSessionStore(dir)``
is silently ignored when ``agent.session()`` or ``agent.resume_session()`` is called from
plain Python: the store needs the SDK's async runtime, which only exists inside the SDK's
own calls, so nothing is ever written and ``resume_session`` refuses to work. The SDK does
run slash-command handlers inside that runtime, so there :func:`open_session` and
:func:`resume_session` make their call from a throw-away slash command. From 5.0 on the
store works from plain Python and that detour would nest two runtimes, so the call is made
directly: :mod:`a3s_nb.sdk_features` finds out which applies.

The other helpers make a live session safe to read and to leave:

- :func:`wait_idle`: after a ``stream()`` iterator ends, a3s-code still appends the turn to
  the history and auto-saves it in the background (a ``send()`` issued at once can drop
  the streamed turn; a process that exits at once loses the save); wait until it is done.
- :func:`stream`: ``session.stream()`` that waits for that when it ends.
- :func:`wait_for_autosave`: wait until the store really holds the last successful run.
- :func:`save_session`: ``session.save()`` that proves something reached the disk.

Example (with the scripted server of :mod:`a3s_nb.testing`)::

    from a3s_nb import testing
    from a3s_nb.sdk import live

    llm = testing.ScriptedLLM(testing.standard_script()).start()
    agent = llm.agent()
    session = live.open_session(agent, "work", store_dir="sessions", session_id="demo")
    session.send(testing.WRITE_READ_PROMPT)
    live.save_session(session, "sessions")
    # ... a new kernel, the next day ...
    session = live.resume_session(agent, "demo", "sessions")

Nothing here imports Jupyter; ``a3s_code`` is imported when first needed.
"""

from __future__ import annotations

import glob
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..config import default_store_path
from ..errors import (
    CorruptFileError,
    LiveSessionError,
    ModelNotConfiguredError,
    NotSettledError,
    SessionExistsError,
    SessionNotFoundError,
)
from ..store.store import FileStore, validate_session_id
from .features import (
    PIP_INSTALL,
    call_for_store,
    features,
    import_a3s_code,
    in_sdk_runtime,
    remember_store,
)

__all__ = [
    "PIP_INSTALL",
    "LiveSessionError",
    "ModelNotConfiguredError",
    "NotSettledError",
    "SessionExistsError",
    "import_a3s_code",
    "in_sdk_runtime",
    "open_session",
    "resume_session",
    "save_session",
    "stream",
    "wait_for_autosave",
    "wait_idle",
]


def _options(
    a3s: Any,
    options: Any,
    store: FileStore,
    *,
    session_id: str | None,
    auto_save: bool,
    allow_tools: bool,
    fields: dict[str, Any],
) -> Any:
    opts = options if options is not None else a3s.SessionOptions()
    for key, value in fields.items():
        if key.startswith("_") or not hasattr(opts, key):
            known = sorted(k for k in dir(opts) if not k.startswith("_"))
            raise TypeError(f"unknown SessionOptions field {key!r}; known: {', '.join(known)}")
        setattr(opts, key, value)
    opts.session_store = a3s.FileSessionStore(str(store.path))
    if session_id is not None:
        opts.session_id = session_id
    if auto_save:
        opts.auto_save = True
    if allow_tools and opts.permission_policy is None:
        # Without a policy every tool call ends in "requires confirmation but no HITL
        # confirmation manager is configured".
        opts.permission_policy = a3s.PermissionPolicy(default_decision="allow")
    return opts


def _store_dir(store_dir: str | os.PathLike[str] | None, options: Any) -> str | os.PathLike[str]:
    if store_dir is not None:
        return store_dir
    given = getattr(options, "session_store", None) if options is not None else None
    return getattr(given, "dir", None) or default_store_path()


def open_session(
    agent: Any,
    workspace: str | os.PathLike[str],
    *,
    store_dir: str | os.PathLike[str] | None = None,
    session_id: str | None = None,
    options: Any = None,
    auto_save: bool = False,
    allow_tools: bool = True,
    **option_fields: Any,
) -> Any:
    """A new ``a3s_code.Session`` on ``workspace`` whose ``FileSessionStore`` really works.

    ``store_dir`` defaults to the session store of ``options``, else the a3s_nb default
    store (``$A3S_NB_STORE`` or ``./a3s_sessions``). ``session_id`` defaults to a UUID the
    SDK picks; an id already in the store raises :class:`SessionExistsError` (use
    :func:`resume_session`). ``auto_save=True`` saves after every successful run (in the
    background: see :func:`wait_for_autosave`); otherwise call ``save()`` or
    :func:`save_session`. ``allow_tools=True`` lets tools run without confirmation, unless
    ``options`` carries its own ``permission_policy``. Other keyword arguments set
    ``SessionOptions`` fields (``model="openai/gpt-4o"``, ``max_tool_rounds=5``, ...).
    ``options`` itself is modified (the SDK's options cannot be copied).

    >>> session = open_session(agent, ".", store_dir="sessions", session_id="fix-1")  # doctest: +SKIP
    >>> session.send("Add a test for parse_date")  # doctest: +SKIP
    >>> session.save()  # sessions/fix-1.json and its fragments are on disk  # doctest: +SKIP
    """
    a3s = import_a3s_code()
    found = features(agent)  # an SDK a3s_nb cannot drive fails here, before anything else
    ws = Path(workspace).expanduser().absolute()
    if not ws.is_dir():
        raise FileNotFoundError(
            f"workspace {ws} is not a directory: create it first (every tool runs inside it)"
        )
    store = FileStore(_store_dir(store_dir, options))
    if session_id is not None:
        validate_session_id(session_id)
        if store.exists(session_id):
            raise SessionExistsError(
                f"session {session_id!r} already exists in store {store}: continue it with "
                f"resume_session(agent, {session_id!r}, {str(store)!r}), or choose another id"
            )
    opts = _options(
        a3s,
        options,
        store,
        session_id=session_id,
        auto_save=auto_save,
        allow_tools=allow_tools,
        fields=option_fields,
    )
    try:
        session = call_for_store(agent, lambda: agent.session(str(ws), opts))
    except LiveSessionError:
        raise
    except RuntimeError as e:
        raise LiveSessionError(f"a3s-code could not open a session on {ws}: {e}") from e
    remember_store(session, store.path, found)
    return session


def resume_session(
    agent: Any,
    session_id: str,
    store_dir: str | os.PathLike[str] | None = None,
    *,
    options: Any = None,
    auto_save: bool = False,
    allow_tools: bool = True,
    **option_fields: Any,
) -> Any:
    """The saved session ``session_id`` (or a unique prefix of it), live again.

    This is the SDK's own ``Agent.resume_session`` run so that the resumed session keeps
    saving to ``store_dir``. The session continues on its saved workspace. The other
    arguments are as for :func:`open_session`; ``model="provider/model"`` resumes on
    another model than the saved one.

    Raises :class:`~a3s_nb.errors.SessionNotFoundError` (with close matches),
    :class:`ModelNotConfiguredError` when the saved model is not in the agent's config,
    :class:`~a3s_nb.errors.CorruptFileError` naming the file a3s-code could not parse, and
    :class:`LiveSessionError` for anything else the SDK refuses.
    """
    a3s = import_a3s_code()
    found = features(agent)  # an SDK a3s_nb cannot drive fails here, before anything else
    store = FileStore(_store_dir(store_dir, options), create=False)
    session_id = store.resolve(session_id)
    opts = _options(
        a3s,
        options,
        store,
        session_id=None,
        auto_save=auto_save,
        allow_tools=allow_tools,
        fields=option_fields,
    )
    try:
        session = call_for_store(agent, lambda: agent.resume_session(session_id, opts))
    except LiveSessionError:
        raise
    except RuntimeError as e:
        raise _resume_error(str(e), session_id, store) from e
    remember_store(session, store.path, found)
    return session


_MODEL_MISSING = re.compile(r"provider '([^']*)' or model '([^']*)' not found")
_PARSE_FAILED = re.compile(r"Failed to parse ([^:]*?)(?: from|:) (/\S+)")


def _resume_error(message: str, session_id: str, store: FileStore) -> Exception:
    if "Session not found" in message:
        return SessionNotFoundError(session_id, str(store), store.list())
    m = _MODEL_MISSING.search(message)
    if m:
        provider, model = m.groups()
        return ModelNotConfiguredError(
            f"model '{provider}/{model}' of the saved session {session_id!r} is not in the "
            f'agent\'s config: add a block `models "{model}" {{ name = "{model}" '
            f'tool_call = true }}` inside `providers "{provider}" {{ ... }}`, or resume on a '
            f'configured model with resume_session(..., model="provider/model")'
        )
    m = _PARSE_FAILED.search(message)
    if m:
        what, path = m.groups()
        return CorruptFileError(path, f"a3s-code cannot parse its {what} ({message})")
    return LiveSessionError(
        f"a3s-code could not resume session {session_id!r} from {store}: {message}"
    )


# ========================================================================== settling


def _poll(done: Callable[[], bool], timeout: float) -> bool:
    """Call ``done`` until it is true (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    pause = 0.0002
    while not done():
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, 0.02)
    return True


def wait_idle(session: Any, timeout: float = 10.0) -> None:
    """Wait until ``session`` has no run in progress and its history is up to date.

    After a ``stream()`` iterator ends, a3s-code appends the turn to the history and runs
    the auto-save in the background; ``session.current_run()`` stays set until both are
    done. Raises :class:`NotSettledError`.
    """
    if not _poll(lambda: session.current_run() is None, timeout):
        run = session.current_run() or {}
        raise NotSettledError(
            f"session {session.session_id} still has run {run.get('id')} "
            f"({run.get('status')}) after {timeout} s"
        )


def stream(session: Any, prompt: Any, *, timeout: float = 10.0, **kwargs: Any) -> Iterator[Any]:
    """``session.stream(prompt, ...)``, then :func:`wait_idle` once the events are exhausted.

    So a ``send()`` right after the loop never loses the streamed turn. If the loop is left
    early, nothing is waited for.
    """
    yield from session.stream(prompt, **kwargs)
    wait_idle(session, timeout)


def _session_paths(store: FileStore, session_id: str) -> dict[str, Path]:
    files = store.session_files(session_id)
    # a3s-code 3.1 writes these five on every save (no subagent_tasks)
    return {p: files[p] for p in ("session", "artifacts", "traces", "runs", "verification")}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


def wait_for_autosave(
    session: Any, store_dir: str | os.PathLike[str] | None = None, timeout: float = 10.0
) -> None:
    """Wait until the auto-save of ``session``'s last successful run is on disk.

    For a session opened with ``auto_save=True``: returns once the session is idle
    (:func:`wait_idle`) and the store holds its current history and its last completed run,
    with every file parsing, so the process may exit or close the session without losing
    or tearing files. Returns at once when no run has completed yet (a failed run is never
    auto-saved). Raises :class:`NotSettledError`, most likely because the session does not
    auto-save into ``store_dir``.
    """
    wait_idle(session, timeout)
    completed = [r["id"] for r in session.runs() if r.get("status") == "completed"]
    if not completed:
        return
    last_run, messages = completed[-1], session.history()
    store = FileStore(store_dir if store_dir is not None else default_store_path(), create=False)
    paths = _session_paths(store, session.session_id)
    session_file = paths["session"]
    previous: list[Any] = [None]

    def saved() -> bool:
        if any(session_file.parent.glob(f"{glob.escape(session_file.name)}.*.{os.getpid()}.tmp")):
            return False  # this process is replacing the session file
        signature = [_signature(p) for p in paths.values()]
        docs = {part: _read_json(path) for part, path in paths.items()}
        if any(doc is None for doc in docs.values()):
            return False  # missing, or truncated while being rewritten
        if docs["session"].get("messages") != messages:
            return False
        runs = {r.get("snapshot", {}).get("id"): r.get("snapshot", {}) for r in docs["runs"]}
        if runs.get(last_run, {}).get("status") != "completed":
            return False
        # and nothing changed since the last look: the save is over, not half way
        stable = signature == previous[0]
        previous[0] = signature
        return stable

    if not _poll(saved, timeout):
        raise NotSettledError(
            f"the store {store} does not hold run {last_run} of session "
            f"{session.session_id} after {timeout} s: was it opened with auto_save=True "
            "and this store_dir?"
        )


def save_session(
    session: Any, store_dir: str | os.PathLike[str] | None = None, timeout: float = 10.0
) -> Path:
    """``session.save()``, checked: returns the session file, or raises if nothing was written.

    Waits for a streamed turn to settle first (:func:`wait_idle`). A session whose store is
    inactive (created with plain ``agent.session()`` on a3s-code 3.x) raises
    :class:`LiveSessionError` instead of silently losing the history.
    """
    wait_idle(session, timeout)
    store = FileStore(store_dir if store_dir is not None else default_store_path())
    path = _session_paths(store, session.session_id)["session"]
    before = _signature(path)
    session.save()
    doc = _read_json(path)
    if before == _signature(path) or doc is None or doc.get("messages") != session.history():
        raise LiveSessionError(
            f"session {session.session_id}: save() wrote nothing to {path}. Its "
            "FileSessionStore is inactive or points elsewhere (a3s-code 3.x ignores a store "
            "given to agent.session() from plain Python): open it with "
            "a3s_nb.sdk.live.open_session or resume_session"
        )
    return path


def _signature(path: Path) -> tuple[int, int, int] | None:
    # a3s-code replaces the session file by rename, so a save always changes its inode
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns
