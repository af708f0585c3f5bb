"""The one way a3s_nb issues a warning: attributed to the user's code, not to a3s_nb's.

``warnings.warn(stacklevel=N)`` needs N counted by hand at each call, and a count that is
right for one caller is wrong for another (a frame function called directly, from
``all_frames``, from ``list_sessions`` or from a magic). :func:`warn` counts at run time:
the warning points at the line that called into a3s_nb, skipping a3s_nb's own frames and
the IPython machinery between a magic line and the cell that holds it.
"""

from __future__ import annotations

import sys
import warnings

__all__ = ["user_stacklevel", "warn"]

_PACKAGE = __name__.split(".")[0]

#: Modules between a user's line and a3s_nb that are not the user's code either.
_PLUMBING = ("IPython.", "traitlets.", "decorator", "contextlib", "functools")


def _module(frame) -> str:
    return frame.f_globals.get("__name__", "") or ""


def _ours(name: str) -> bool:
    return name == _PACKAGE or name.startswith(_PACKAGE + ".")


def user_stacklevel(skip: int = 0) -> int:
    """The ``stacklevel`` that points ``warnings.warn`` at the user's code.

    For a ``warnings.warn`` called by the caller of this function; ``skip`` frames further
    up when it is called from there instead. The answer is the caller of
    the outermost a3s_nb frame on the stack, past any IPython plumbing (so a warning from
    a magic points at the cell's line); if nothing is above that, the outermost a3s_nb
    frame's caller.
    """
    frames = []
    frame = sys._getframe(1)
    while frame is not None:
        frames.append(_module(frame))
        frame = frame.f_back
    outermost = max((i for i, name in enumerate(frames) if _ours(name)), default=0)
    target = outermost + 1
    while target < len(frames) and frames[target].startswith(_PLUMBING):
        target += 1
    if target >= len(frames):
        target = min(outermost + 1, len(frames) - 1)
    # stacklevel 1 is the frame that calls warnings.warn
    return target + 1 - skip


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn(message, category)``, pointing at the user's line (see module doc)."""
    warnings.warn(message, category, stacklevel=user_stacklevel())
