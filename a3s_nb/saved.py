"""A saved session, read-only: transcript, runs and traces, without an agent.

:func:`a3s_nb.resume` returns a :class:`SavedSession` when no agent is given. It renders as
a transcript in a notebook, offers the DataFrames of the frames module, and says plainly
that continuing the conversation needs an agent.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from typing import TYPE_CHECKING, Any

from .errors import ReadOnlySessionError
from .sdk.capture import count_tool_calls
from .store.models import (
    Message,
    SessionBundle,
    SessionConfig,
    SessionData,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ReadOnlySessionError", "SavedSession", "transcript_html", "transcript_text"]

#: How much of a tool's output the transcript shows.
TOOL_OUTPUT_CHARS = 400
#: How many of the latest messages the transcript shows (0: all).
TRANSCRIPT_MESSAGES = 60


# --------------------------------------------------------------------------- transcript


def _messages(obj: Any) -> list[Message]:
    """The messages of a bundle, a saved session, a live session or a list of messages."""
    if isinstance(obj, SavedSession):
        obj = obj.bundle
    if isinstance(obj, SessionBundle):
        return list(obj.session.messages)
    if callable(getattr(obj, "history", None)):
        obj = obj.history()
    return [m if isinstance(m, Message) else Message.model_validate(m) for m in obj]


def _clip(text: str, limit: int) -> str:
    text = text.rstrip("\n")
    if limit and len(text) > limit:
        return text[:limit] + f"… ({len(text) - limit} more chars)"
    return text


def _entries(messages: list[Message], limit: int) -> tuple[int, list[tuple[str, str]]]:
    """(skipped, [(label, text)]) for the last ``limit`` messages."""
    names: dict[str, str] = {}
    for m in messages:
        for b in m.content:
            if isinstance(b, ToolUseBlock):
                names[b.id] = b.name
    skipped = max(0, len(messages) - limit) if limit else 0
    out: list[tuple[str, str]] = []
    for m in messages[skipped:]:
        for b in m.content:
            if isinstance(b, TextBlock):
                if b.text.strip():
                    out.append((m.role, b.text.strip()))
            elif isinstance(b, ToolUseBlock):
                args = json.dumps(b.input, ensure_ascii=False, sort_keys=True)
                out.append((f"{m.role} → {b.name}", _clip(args, TOOL_OUTPUT_CHARS)))
            elif isinstance(b, ToolResultBlock):
                mark = "error" if b.is_error else "ok"
                label = f"tool {names.get(b.tool_use_id, '?')} {mark}"
                out.append((label, _clip(b.text, TOOL_OUTPUT_CHARS)))
            else:
                out.append((m.role, f"[{getattr(b, 'type', '?')}]"))
    return skipped, out


def transcript_text(obj: Any, *, limit: int = TRANSCRIPT_MESSAGES) -> str:
    """The conversation as plain text, one block per message part.

    ``obj`` is a :class:`SessionBundle`, a :class:`SavedSession`, a live session or a list
    of messages; ``limit`` keeps the latest messages (0: all).
    """
    messages = _messages(obj)
    if not messages:
        return "(no messages yet)"
    skipped, entries = _entries(messages, limit)
    lines = [f"… {skipped} earlier messages not shown"] if skipped else []
    for label, text in entries:
        first, *rest = text.splitlines() or [""]
        lines.append(f"[{label}] {first}")
        lines.extend(f"    {line}" for line in rest)
    return "\n".join(lines)


def transcript_html(obj: Any) -> str:
    """The conversation as self-contained, escaped HTML (see :func:`a3s_nb.render.transcript_html`).

    ``obj`` is as for :func:`transcript_text`.
    """
    from .render import transcript_html as render_html  # pandas: imported on first use

    return render_html(_as_bundle(obj))


def _as_bundle(obj: Any) -> SessionBundle:
    if isinstance(obj, SavedSession):
        return obj.bundle
    if isinstance(obj, SessionBundle):
        return obj
    session = SessionData(
        id=str(getattr(obj, "session_id", None) or "live"),
        config=SessionConfig(workspace=str(getattr(obj, "workspace", None) or "")),
        messages=_messages(obj),
    )
    return SessionBundle(session=session)


# --------------------------------------------------------------------------- saved session


def _utc(seconds: int) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(seconds, dt.UTC) if seconds else None


class SavedSession:
    """A saved session, read-only.

    >>> saved = a3s_nb.resume("4f1c")           # doctest: +SKIP
    >>> print(saved.transcript)                 # doctest: +SKIP
    >>> saved.runs                              # doctest: +SKIP  (a DataFrame)

    To continue the conversation, resume it with an agent:
    ``%a3s_resume ID --agent agent`` or ``a3s_nb.resume(ID, agent=agent)``.
    """

    def __init__(self, bundle: SessionBundle, store: Any = None):
        self.bundle = bundle
        self.store = store

    # ---- facts -------------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self.bundle.session.id

    session_id = id

    @property
    def model(self) -> str | None:
        return self.bundle.session.model_name

    @property
    def workspace(self) -> str:
        return self.bundle.session.config.workspace

    @property
    def created_at(self) -> dt.datetime | None:
        return _utc(self.bundle.session.created_at)

    @property
    def updated_at(self) -> dt.datetime | None:
        return _utc(self.bundle.session.updated_at)

    @property
    def transcript(self) -> str:
        """The whole conversation as plain text."""
        return transcript_text(self.bundle, limit=0)

    # ---- frames ------------------------------------------------------------------------

    def _frame(self, name: str) -> pd.DataFrame:
        from . import frames  # pandas: imported on first use

        return getattr(frames, name)(self.bundle)

    @property
    def messages(self) -> pd.DataFrame:
        """One row per message."""
        return self._frame("messages")

    @property
    def runs(self) -> pd.DataFrame:
        """One row per run record."""
        return self._frame("runs")

    @property
    def traces(self) -> pd.DataFrame:
        """One row per tool execution."""
        return self._frame("traces")

    # ---- what it cannot do -------------------------------------------------------------

    def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        raise ReadOnlySessionError(self.continue_hint())

    send = stream = tool = save = _read_only

    def continue_hint(self) -> str:
        return (
            f"session {self.id} is a read-only saved session; to continue it, resume it with "
            f"an agent: %a3s_resume {self.id} --agent AGENT "
            f"(or a3s_nb.resume({self.id!r}, agent=agent))"
        )

    # ---- display -----------------------------------------------------------------------

    def summary(self) -> str:
        s, b = self.bundle.session, self.bundle
        tool_calls = count_tool_calls(b)
        return (
            f"SavedSession({s.id!r}, model={s.model_name!r}, messages={len(s.messages)}, "
            f"runs={len(b.runs)}, tool_calls={tool_calls}, read-only)"
        )

    def __repr__(self) -> str:
        return self.summary()

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        if cycle:
            p.text("SavedSession(...)")
            return
        p.text(self.summary() + "\n" + transcript_text(self.bundle))

    def _repr_html_(self) -> str:
        return f"<div><code>{html.escape(self.summary())}</code></div>" + transcript_html(self)
