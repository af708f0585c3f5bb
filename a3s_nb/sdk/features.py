"""What the installed a3s-code can do: the one place a3s_nb asks.

a3s_nb drives the SDK by what it does, never by its version string (which is only ever
reported). What differs between the releases a3s_nb supports:

* **The shape of ``run_events()`` items.** 3.x returns the records it persists
  (``{sequence, timestamp_ms, event}``); 5.0 on returns envelopes (``{version: 1, type,
  payload, metadata}``). Recognised item by item: :func:`run_events` gives records either
  way (:mod:`a3s_nb._envelope`), and refuses another protocol version.
* **Whether ``agent.session()`` must run inside the SDK's runtime** for its
  ``FileSessionStore`` to work. In 3.x it must (called from plain Python the store is
  silently dropped: OBSERVED-3.1.0.md §0), so a3s_nb makes the call from a slash-command
  handler (:func:`in_sdk_runtime`). From 5.0 ``agent.session()`` runs ``block_on``
  itself, and the same detour would nest two runtimes: there it is called directly.
* **Whether ``session.save()`` writes the SDK's own snapshot** (5.0 on: one
  ``v1/sessions/id_<base64url>.json`` per session), which a3s_nb lets the SDK write and
  never writes itself; 3.x writes the flat layout, which a3s_nb also writes.

The last two are found out once per process by :func:`features`: a scratch session is
opened with a ``FileSessionStore`` in a temporary directory, from plain Python, and saved;
what it wrote tells (nothing: 3.x; a ``v1`` snapshot: 5.x+). No model is called, nothing
outside the temporary directory is touched, and it takes a few milliseconds.

An SDK that behaves in none of these ways fails at the first call with
:class:`~a3s_nb.errors.UnsupportedSdkError`, naming the installed version and what is
supported, before anything is written.
"""

from __future__ import annotations

import tempfile
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .._warn import warn
from ..errors import EventProtocolError, UnsupportedSdkError
from ..store._envelope import is_envelope, record_of
from ..store._v1layout import v1_name
from ..store.models import RunEventRecord

__all__ = [
    "PIP_INSTALL",
    "SUPPORTED",
    "TESTED",
    "Features",
    "features",
    "import_a3s_code",
    "in_sdk_runtime",
    "installed_version",
    "is_sdk_session",
    "remember_store",
    "run_events",
    "session_model",
    "store_of",
]

#: The release a3s_nb is tested against, with the real SDK (``make lab`` and CI install it).
TESTED = "3.1.0"
PIP_INSTALL = f'pip install "a3s-code=={TESTED}"'
#: What a3s_nb supports, as its errors say it.
SUPPORTED = (
    f"a3s-code {TESTED} (tested with the real SDK) and the 5.x-9.x session store and run "
    "event shapes (read from the SDK's source and test vectors)"
)

T = TypeVar("T")


def import_a3s_code() -> Any:
    """The ``a3s_code`` module, or an ImportError that says how to install it."""
    try:
        import a3s_code
    except ImportError as e:
        raise ImportError(PIP_INSTALL) from e
    return a3s_code


def installed_version() -> str:
    """The installed a3s-code's version, for messages only: the module's ``__version__``
    (3.1.0 has none), else the distribution's, else "unknown"."""
    import sys
    from importlib import metadata

    module = sys.modules.get("a3s_code")
    if module is None:
        try:
            module = import_a3s_code()
        except ImportError:
            module = None
    version = getattr(module, "__version__", None)
    if version:
        return str(version)
    try:
        return metadata.version("a3s-code")
    except metadata.PackageNotFoundError:
        return "unknown"


def _unsupported(why: str) -> UnsupportedSdkError:
    return UnsupportedSdkError(
        f"a3s-code {installed_version()} is not an SDK a3s_nb can drive: {why}. "
        f"Supported: {SUPPORTED}. Nothing was written; install a supported release "
        f"({PIP_INSTALL})"
    )


# ========================================================================= the features


@dataclass(frozen=True)
class Features:
    """What the installed SDK does (see the module docstring)."""

    #: ``agent.session()`` must be called inside the SDK's runtime for its store to work
    store_needs_runtime: bool
    #: ``session.save()`` writes the SDK's own v1 snapshot (a3s_nb never writes that id)
    saves_snapshots: bool


_PROBE_ID = "a3s-nb-probe"
_FEATURES: dict[tuple[int, type], tuple[Any, Features]] = {}
_FEATURES_LOCK = threading.Lock()


def features(agent: Any) -> Features:
    """What the installed SDK does, found out once per process with ``agent`` (see the
    module docstring); :class:`UnsupportedSdkError` for an SDK that does neither."""
    a3s = import_a3s_code()
    key = (id(a3s), type(agent))
    with _FEATURES_LOCK:
        known = _FEATURES.get(key)
        if known is not None and known[0] is a3s:
            return known[1]
        found = _probe(a3s, agent)
        _FEATURES[key] = (a3s, found)
        return found


def _probe(a3s: Any, agent: Any) -> Features:
    missing = [
        f"a3s_code.{n}" for n in ("SessionOptions", "FileSessionStore") if not hasattr(a3s, n)
    ]
    missing += [
        f"Agent.{m}()"
        for m in ("session", "resume_session")
        if not callable(getattr(agent, m, None))
    ]
    if missing:
        raise _unsupported(f"it has no {', '.join(missing)}")
    with tempfile.TemporaryDirectory(prefix="a3s_nb_probe_") as scratch:
        store, ws = Path(scratch, "store"), Path(scratch, "ws")
        ws.mkdir()
        try:
            opts = a3s.SessionOptions()
            opts.session_store = a3s.FileSessionStore(str(store))
            opts.session_id = _PROBE_ID
            session = agent.session(str(ws), opts)
            try:
                session.save()
            finally:
                close = getattr(session, "close", None)
                if callable(close):
                    close()
        except Exception as e:  # whatever the SDK raises: not one a3s_nb knows
            raise _unsupported(f"a scratch session with a FileSessionStore failed: {e}") from e
        written = (
            sorted(p.relative_to(store).as_posix() for p in store.rglob("*") if p.is_file())
            if store.is_dir()
            else []
        )
    if not written:  # 3.x: the store needs the SDK's runtime (OBSERVED-3.1.0.md §0)
        return Features(store_needs_runtime=True, saves_snapshots=False)
    if f"v1/sessions/{v1_name(_PROBE_ID)}.json" in written:  # 5.x+
        return Features(store_needs_runtime=False, saves_snapshots=True)
    if f"{_PROBE_ID}.json" in written:  # the flat layout, with the store working directly
        return Features(store_needs_runtime=False, saves_snapshots=False)
    shown = ", ".join(written[:5])
    raise _unsupported(f"its save() wrote {shown}, neither the flat nor the v1 layout")


# ========================================================================= the runtime


def in_sdk_runtime(agent: Any, fn: Callable[[], T]) -> T:
    """Call ``fn()`` inside a3s-code's async runtime and return what it returns.

    A scratch session registers a slash command whose handler calls ``fn``, runs it with
    ``send("/...")`` (no model call is made) and is closed. Exceptions raised by ``fn``
    propagate. If the SDK ever stops running the handler, ``fn`` is called directly.
    Only for an SDK whose :func:`features` say ``store_needs_runtime`` (3.x): from 5.0 on,
    calling ``agent.session()`` in there would start a runtime inside a runtime.
    """
    box: dict[str, Any] = {}

    def handler(args: str, ctx: dict) -> str:
        try:
            box["value"] = fn()
        except BaseException as e:  # the SDK would flatten it to "Command error: ..." text
            box["error"] = e
        return "ok"

    name = f"a3s_nb_boot_{uuid.uuid4().hex[:12]}"
    with tempfile.TemporaryDirectory(prefix="a3s_nb_boot_") as scratch:
        boot = agent.session(scratch)
        try:
            boot.register_command(name, "a3s_nb: run a call inside the SDK runtime", handler)
            boot.send(f"/{name}")
        finally:
            boot.close()
    if "error" in box:
        raise box.pop("error")
    if "value" not in box:
        warn(
            "a3s-code did not run the slash-command handler; calling it directly "
            "(on a3s-code 3.x its FileSessionStore may then be inactive)",
            RuntimeWarning,
        )
        return fn()
    return box["value"]


def call_for_store(agent: Any, fn: Callable[[], T]) -> T:
    """``fn()`` (an ``agent.session`` or ``agent.resume_session`` call with a
    ``FileSessionStore``), made where this SDK's store works: inside its runtime on 3.x,
    directly from 5.0 on."""
    if features(agent).store_needs_runtime:
        return in_sdk_runtime(agent, fn)
    return fn()


# ========================================================================= sessions


#: The sessions a3s_nb opened or resumed with a FileSessionStore: id(session) -> (the
#: session, the store's directory, the SDK's features). The session is referenced so its
#: id is never reused while it is listed; the oldest are forgotten.
_STORES: OrderedDict[int, tuple[Any, str, Features]] = OrderedDict()
_STORES_LOCK = threading.Lock()
_STORES_KEPT = 64


def remember_store(session: Any, store_dir: str | Path, found: Features) -> None:
    """Note that ``session`` was opened with a ``FileSessionStore`` on ``store_dir``."""
    with _STORES_LOCK:
        _STORES[id(session)] = (session, str(Path(store_dir).expanduser().absolute()), found)
        _STORES.move_to_end(id(session))
        while len(_STORES) > _STORES_KEPT:
            _STORES.popitem(last=False)


def store_of(session: Any) -> tuple[str, Features] | None:
    """The store directory ``session`` saves into by itself and the SDK's features, when
    a3s_nb opened or resumed it (None: a store a3s_nb does not know of, or none)."""
    with _STORES_LOCK:
        entry = _STORES.get(id(session))
    if entry is None or entry[0] is not session:
        return None
    return entry[1], entry[2]


def run_events(session: Any, run_id: str) -> list[Any]:
    """A run's events as the records the SDK persists, whichever shape its
    ``run_events()`` gives them in; :class:`UnsupportedSdkError` for another protocol.

    An envelope's payload is a ``serde_json::Value`` (its keys may come sorted): the
    fields of an event a3s_nb knows are put back in the order the SDK persists them
    (its struct's), so the frames of a live session equal those of its saved files.
    """
    items = session.run_events(run_id) or []
    try:
        return [_persisted(record_of(item)) if is_envelope(item) else item for item in items]
    except EventProtocolError as e:
        raise _unsupported(str(e)) from None


def _persisted(record: Any) -> Any:
    """A record made from an envelope, its event's fields in the SDK's persisted order
    (as it is, when the models do not take it)."""
    from pydantic import ValidationError

    try:
        return RunEventRecord.model_validate(record).model_dump(mode="json", by_alias=True)
    except ValidationError:
        return record


def is_sdk_session(obj: Any) -> bool:
    """Whether ``obj`` is a real ``a3s_code.Session`` (False without the SDK)."""
    try:
        import a3s_code
    except ImportError:
        return False
    cls = getattr(a3s_code, "Session", None)
    return isinstance(cls, type) and isinstance(obj, cls)


_MODEL_COMMAND = "__a3s_nb_model"


def session_model(session: Any) -> str | None:
    """Ask a real SDK session for its model: slash-command handlers get it in ``ctx``.

    The command neither adds to the history nor records a run (checked against 3.1.0).
    None when it cannot tell, or the session is running a prompt.
    """
    if not is_sdk_session(session):
        return None
    box: dict[str, Any] = {}

    def handler(args: str, ctx: dict[str, Any]) -> str:
        box["model"] = ctx.get("model")
        return "ok"

    try:
        if session.current_run() is not None:  # never interleave with a running prompt
            return None
        session.register_command(_MODEL_COMMAND, "a3s_nb: report the model", handler)
        session.send("/" + _MODEL_COMMAND)
    except Exception:
        return None
    value = box.get("model")
    return value if isinstance(value, str) and "/" in value else None
