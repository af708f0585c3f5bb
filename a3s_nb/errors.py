"""Every exception a3s_nb raises on purpose, and the warning its frames issue. Each refines
the built-in a caller would naturally catch; all are exported from :mod:`a3s_nb`."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError


class A3sNbError(Exception):
    """Base class of every error a3s_nb raises on purpose."""


class InvalidSessionIdError(A3sNbError, ValueError):
    """A session id that cannot be stored safely as a file name."""


class SessionNotFoundError(A3sNbError, KeyError):
    """No session with that id (or id prefix) in the store."""

    def __init__(self, session_id: str, store: str, known: Iterable[str] = ()):
        self.session_id = session_id
        self.store = store
        self.suggestions = difflib.get_close_matches(session_id, list(known), n=3, cutoff=0.5)
        msg = f"no session {session_id!r} in store {store}"
        if self.suggestions:
            msg += "; did you mean " + " or ".join(repr(s) for s in self.suggestions) + "?"
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would quote the whole message
        return self.args[0]


class AmbiguousSessionIdError(A3sNbError, KeyError):
    """An id prefix that matches more than one saved session."""

    def __init__(self, prefix: str, candidates: list[str]):
        self.prefix = prefix
        self.candidates = candidates
        shown = ", ".join(candidates[:10]) + (" ..." if len(candidates) > 10 else "")
        super().__init__(
            f"{prefix!r} matches {len(candidates)} sessions: {shown}; give more of the id"
        )

    def __str__(self) -> str:
        return self.args[0]


class CorruptFileError(A3sNbError, ValueError):
    """A store file that is empty, truncated, not JSON, or not the a3s-code shape."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class EncryptedSessionError(CorruptFileError):
    """A store file that a3s-code sealed at rest (AES-GCM, it begins ``A3SE\\x01``).

    a3s_nb holds no at-rest key: only the SDK that sealed it, opened with that key, can
    read it. The other sessions of the store still list and load.
    """

    def __init__(self, path: str | Path, problem: str | None = None):
        super().__init__(
            path,
            problem
            or "is sealed at rest by a3s-code (encrypted, it begins 'A3SE\\x01'): a3s_nb "
            "cannot read it; open it through a3s-code with the store's encryption key",
        )


class SdkOwnedSessionError(A3sNbError, PermissionError):
    """A change a3s_nb refuses because the session (or the store) is a3s-code's to write:
    a session with a copy in the SDK's ``v1/`` layout, or a delete in a store that keeps a
    write-ahead log. Nothing was written."""


class InvalidBundleError(A3sNbError, ValueError):
    """A session bundle that would not load back, and so is not written."""


class StoreError(A3sNbError, OSError):
    """The store directory itself cannot be used (missing, not a directory, unwritable)."""


class FilterError(A3sNbError, ValueError):
    """A frame filter given a value it does not take: a status that is not one of the
    frame's statuses, a ``since`` / ``until`` that is not a date or time."""


class StoreWriteError(StoreError):
    """A save or delete the file system refused (a full disk, a read-only file system, no
    permission). What was saved before is not damaged. ``errno`` is the system's."""

    def __init__(self, message: str, errno: int | None = None):
        super().__init__(message)
        self.errno = errno


# ---- saving and capturing a live session


class SaveError(A3sNbError, ValueError):
    """A save that was refused before anything was written."""


class SecretsFoundError(SaveError):
    """What would be saved contains secrets, and neither redact nor allow_secrets was given."""

    def __init__(self, message: str, findings: list[Any]):
        super().__init__(message)
        self.findings = findings


class SaveConflictError(SaveError):
    """The store holds work under this id that the session being saved lacks.

    Someone saved in between (another handle on the same session, another kernel, the SDK
    itself), so writing would lose their messages and runs. ``missing_runs`` holds the ids
    of the stored runs the live session lacks; ``missing_messages`` how many stored
    messages it does not have.
    """

    def __init__(self, message: str, missing_runs: list[str], missing_messages: int):
        super().__init__(message)
        self.missing_runs = missing_runs
        self.missing_messages = missing_messages


class NotASessionError(A3sNbError, TypeError):
    """An object that is not a live a3s-code session (it lacks the read methods)."""


class CaptureError(A3sNbError, ValueError):
    """A live session whose state could not be read, or does not have the a3s-code shape."""


class NotAnAgentError(A3sNbError, TypeError):
    """``agent`` is not an ``a3s_code.Agent`` (it cannot resume sessions)."""


class ReadOnlySessionError(A3sNbError, TypeError):
    """A saved session was asked to do what only a live one can (send, stream, ...)."""


# ---- lineage: fork, diff, replay


class ForkError(A3sNbError, ValueError):
    """A fork, diff or replay refused before anything was written (a bad prompt number,
    a workspace that cannot be copied, ...)."""


class EditError(ForkError):
    """A fork's ``edits`` name a tool call that cannot be edited (unknown, after the cut,
    or not in the transcript) or are not ``{call id: new output}``; nothing was written.
    The message names the calls that can be edited."""


# ---- the live SDK


class LiveSessionError(A3sNbError, RuntimeError):
    """a3s-code refused to open, resume or save a live session."""


class UnsupportedSdkError(LiveSessionError):
    """The installed a3s-code behaves in a way a3s_nb does not know (its message names the
    installed version and the ones supported); nothing was written."""


class EventProtocolError(A3sNbError, ValueError):
    """A run event envelope of a protocol version other than 1 (a3s-code 5.x-9.x speak 1)."""


class ModelNotConfiguredError(LiveSessionError, LookupError):
    """The saved session's model is not in the agent's config."""


class SessionExistsError(A3sNbError, FileExistsError):
    """A new session was given the id of one already in the store."""


class NotSettledError(A3sNbError, TimeoutError):
    """A live session kept running, or kept writing, past the timeout."""


class ParallelBuildError(A3sNbError, RuntimeError):
    """A worker process building frames (``workers=``) failed; no frame is returned."""


class SearchQueryError(A3sNbError, ValueError):
    """A search that cannot run: an empty query, a regular expression that does not
    compile, or an unknown kind of match in ``where``."""


class ExportError(A3sNbError, OSError):
    """An export could not write to, or reach, its destination (a directory, bucket or endpoint)."""


class ReportError(A3sNbError, OSError):
    """A session report could not be written where asked (a directory, a missing or
    unwritable place); nothing was written."""


def describe_validation_error(error: ValidationError, limit: int = 3) -> str:
    """'messages[3].content[0].id: Field required' for the first few problems."""
    items = []
    for err in error.errors()[:limit]:
        path = ""
        for loc in err["loc"]:
            path += f"[{loc}]" if isinstance(loc, int) else (f".{loc}" if path else str(loc))
        items.append(f"{path or '<root>'}: {err['msg']}")
    more = error.error_count() - limit
    return "; ".join(items) + (f" (and {more} more)" if more > 0 else "")


class CorruptSessionWarning(UserWarning):
    """A session was left out of a frame because one of its files is corrupt, or it was
    deleted while the frame was built (it is also listed in the frame's ``attrs["errors"]``)."""
