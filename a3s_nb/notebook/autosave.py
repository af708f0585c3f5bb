"""Save the live sessions of a notebook after every cell that changed them.

``%a3s_autosave on`` (or :func:`autosave`) hooks IPython's ``post_run_cell`` event. After
each cell, every live a3s-code session bound to a name in the user's namespace is looked
at; one that changed since it was last looked at is saved with :func:`a3s_nb.save`: the
same capture, the same secret scan, the same refusal to overwrite work saved in between.
So a kernel that dies loses at most the cell it died in.

Whether a session changed is told from a fingerprint that costs a few reads (see
:func:`fingerprint`): the number of runs and the id, status and update time of the last
one (every change to the history is made by a run: ``send``, ``stream``), and the numbers
of trace events and verification reports (a tool or a check run directly). A session with
a run still going (a ``stream`` not yet read to the end) is left for a later cell. A
session is first saved in the cell after autosave first sees it, unless it is empty.

A save that is refused (secrets found, a conflict with another handle's save, a store
that cannot be written) is reported once, as a line on stderr, and never fails the
user's cell; the same refusal for the same session is not repeated every cell, and a
later successful save clears it. Until then the status (``%a3s_autosave``, ``str()``
of :func:`autosave`, :attr:`Autosave.refused`) names each such session and why. Sessions are saved under the id they were last saved
under in this kernel (``%a3s_save s --id fix-1`` then autosave keeps updating
``fix-1``), else their own.

Nothing here imports IPython: the shell is passed in (the magic and :func:`autosave`
find it with ``IPython.get_ipython()``).
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from .. import api
from ..config import default_store_path
from ..errors import A3sNbError
from ..sdk.capture import EMPTY_FINGERPRINT, fingerprint, is_session_like

__all__ = ["Autosave", "autosave", "fingerprint"]

# IPython's own names, which hold history and helpers, not the user's sessions
_SKIP_NAMES = frozenset({"In", "Out", "exit", "quit", "get_ipython"})


@dataclass
class _Tracked:
    session_id: str
    fingerprint: tuple[Any, ...] | None = None
    saves: int = 0
    refused: str | None = None  # the last refusal reported, not repeated
    why: str | None = None  # the last refusal's first line, while saves keep being refused


class Autosave:
    """The ``post_run_cell`` callback, and what it has done so far.

    ``namespace`` returns the user's variables; the other arguments are those of
    :func:`a3s_nb.save`. Call :meth:`after_cell` after each cell (``autosave`` registers
    it with IPython).
    """

    def __init__(
        self,
        namespace: Callable[[], dict[str, Any]],
        *,
        store: api.StoreLike = None,
        redact: bool = False,
        allow_secrets: bool = False,
        env: dict[str, str] | None = None,
        hidden: Callable[[], Any] | None = None,
        out: TextIO | None = None,
    ):
        if redact and allow_secrets:
            raise api.SaveError(
                "choose one of redact (replace secrets) and allow-secrets (keep them)"
            )
        self._namespace = namespace
        self._hidden = hidden or dict
        self.store = store
        self.redact = redact
        self.allow_secrets = allow_secrets
        self.env = env
        self._out = out
        self._tracked: dict[tuple[int, str], _Tracked] = {}
        self.last: api.SaveResult | None = None
        self.last_at: dt.datetime | None = None

    # ---- the callback --------------------------------------------------------------------

    def after_cell(self, *_: Any) -> None:
        """Save every live session of the namespace that changed. Never raises."""
        try:
            self._after_cell()
        except Exception as e:  # never the user's cell's fault; say it once
            self._report(("<autosave>", ""), f"autosave failed: {e}")

    def _sessions(self) -> dict[int, Any]:
        hidden = self._hidden()
        found: dict[int, Any] = {}
        for name, value in self._namespace().items():
            if name[:1] == "_" or name in _SKIP_NAMES or name in hidden:
                continue
            if id(value) not in found and is_session_like(value):
                found[id(value)] = value
        return found

    def _after_cell(self) -> None:
        for key_id, session in self._sessions().items():
            try:
                live_id = str(session.session_id)
                fp = fingerprint(session)
            except Exception:  # a closed session, a broken object: nothing to save
                continue
            key = (key_id, live_id)
            tracked = self._tracked.get(key)
            if tracked is None:  # first sight: saved unless there is nothing in it yet
                tracked = self._tracked[key] = _Tracked(live_id, EMPTY_FINGERPRINT)
            if fp is None or fp == tracked.fingerprint:
                continue
            tracked.fingerprint = fp  # a refused save is not retried until it changes again
            self._save(session, key, tracked)

    def _save(self, session: Any, key: tuple[int, str], tracked: _Tracked) -> None:
        try:
            result = api.save(  # under the id it was last saved under (api.saved_as)
                session,
                store=self.store,
                redact=self.redact,
                allow_secrets=self.allow_secrets,
                env=self.env,
                wait=0.5,
            )
        except Exception as e:
            reason = str(e) if isinstance(e, A3sNbError) else f"{type(e).__name__}: {e}"
            kind = type(e).__name__
            tracked.why = reason.strip().split("\n", 1)[0].rstrip(":")
            if tracked.refused != kind:
                tracked.refused = kind
                self._write(
                    f"a3s_nb autosave: {reason}\n(said once: autosave tries again after "
                    f"each change of {tracked.session_id}, silently until a save works)"
                )
            return
        if tracked.refused is not None:
            self._write(f"a3s_nb autosave: {result}")  # working again: say so
        tracked.refused = tracked.why = None
        tracked.saves += 1
        tracked.session_id = result.session_id
        self.last, self.last_at = result, dt.datetime.now().astimezone()

    def _report(self, key: tuple[Any, str], message: str) -> None:
        tracked = self._tracked.setdefault(key, _Tracked("<autosave>"))
        if tracked.refused != message:
            tracked.refused = message
            self._write(f"a3s_nb {message}")

    def _write(self, line: str) -> None:
        print(line, file=self._out or sys.stderr)

    # ---- state ---------------------------------------------------------------------------

    @property
    def saves(self) -> int:
        """How many saves autosave has made."""
        return sum(t.saves for t in self._tracked.values())

    @property
    def refused(self) -> dict[str, str]:
        """The sessions whose last save was refused, and why (the reason's first line), by
        the names they are bound to (else their id). Tried again after each change."""
        names: dict[int, list[str]] = {}
        try:
            hidden = self._hidden()
            for name, value in self._namespace().items():
                if name[:1] != "_" and name not in _SKIP_NAMES and name not in hidden:
                    names.setdefault(id(value), []).append(name)
        except Exception:  # a namespace that cannot be read: ids only
            pass
        out = {}
        for (key_id, _), t in self._tracked.items():
            if t.why is not None:
                bound = " = ".join(sorted(names.get(key_id, [])))
                out[f"{bound} ({t.session_id})" if bound else t.session_id] = t.why
        return out

    def __str__(self) -> str:
        where = self.store
        if where is None:
            where = f"{default_store_path().expanduser().absolute()} (the default store)"
        line = f"autosave is on: after each cell, live sessions that changed are saved in {where}"
        options = [
            o for o, on in (("redact", self.redact), ("allow-secrets", self.allow_secrets)) if on
        ]
        if options:
            line += f" ({', '.join(options)})"
        if self.last is None:
            line += "; nothing saved yet"
        else:
            when = self.last_at.strftime("%H:%M:%S") if self.last_at else "?"
            line += f"; {api._plural(self.saves, 'save')} so far, the last at {when}: {self.last}"
        refused = self.refused
        if refused:
            line += f"\nrefused, tried again after each change ({api._plural(len(refused), 'session')}):"
            line += "".join(f"\n  {who}: {why}" for who, why in sorted(refused.items()))
        return line

    def __repr__(self) -> str:
        return f"<{self}>"


# ---------------------------------------------------------------------------------- on/off

_ACTIVE: dict[int, Autosave] = {}


def _shell(shell: Any) -> Any:
    if shell is not None:
        return shell
    ipython = sys.modules.get("IPython")  # not imported: there is no shell to hook
    found = ipython.get_ipython() if ipython is not None else None
    if found is None:
        raise A3sNbError(
            "autosave saves after each cell of an IPython kernel or shell, and there is "
            "none here: in a script, call a3s_nb.save(session) when you want it saved"
        )
    return found


def autosave(
    on: bool | None = None,
    *,
    store: api.StoreLike = None,
    redact: bool = False,
    allow_secrets: bool = False,
    env: dict[str, str] | None = None,
    shell: Any = None,
) -> Autosave | None:
    """Turn saving after every cell on (``True``) or off (``False``); ``None``: the state.

    Returns the active :class:`Autosave` (its ``str()`` says what it does and did), or
    None when autosave is off. Turning it on again replaces the settings. ``store``,
    ``redact``, ``allow_secrets`` and ``env`` are those of :func:`a3s_nb.save`; ``shell``
    is the IPython shell (default: the running one).

    >>> a3s_nb.autosave(True, store="sessions")                 # doctest: +SKIP
    """
    ip = _shell(shell)
    current = _ACTIVE.get(id(ip))
    if on is None:
        return current
    if current is not None:
        ip.events.unregister("post_run_cell", current.after_cell)
        del _ACTIVE[id(ip)]
    if not on:
        return None
    saver = Autosave(
        lambda: ip.user_ns,
        store=store,
        redact=redact,
        allow_secrets=allow_secrets,
        env=env,
        hidden=lambda: getattr(ip, "user_ns_hidden", {}),
    )
    if current is not None and current.store == store:  # no save again of what did not change
        saver._tracked = current._tracked
        saver.last, saver.last_at = current.last, current.last_at
    ip.events.register("post_run_cell", saver.after_cell)
    _ACTIVE[id(ip)] = saver
    return saver
