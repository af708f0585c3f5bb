"""a3s_nb: save, resume and analyse a3s-code agent sessions from Jupyter.

Importing the package has no side effects; ``%load_ext a3s_nb`` registers the magics.
"""

from ._version import __version__ as __version__
from .api import list_sessions, resume, save
from .errors import (
    A3sNbError,
    AmbiguousSessionIdError,
    CaptureError,
    CorruptFileError,
    CorruptSessionWarning,
    EditError,
    EncryptedSessionError,
    EventProtocolError,
    ExportError,
    FilterError,
    ForkError,
    InvalidBundleError,
    InvalidSessionIdError,
    LiveSessionError,
    ModelNotConfiguredError,
    NotAnAgentError,
    NotASessionError,
    NotSettledError,
    ParallelBuildError,
    ReadOnlySessionError,
    ReportError,
    SaveConflictError,
    SaveError,
    SdkOwnedSessionError,
    SearchQueryError,
    SecretsFoundError,
    SessionExistsError,
    SessionNotFoundError,
    StoreError,
    StoreWriteError,
    UnsupportedSdkError,
)
from .lab.lineage import diff, diff_summary, fork, lineage_frame, lineage_of, replay
from .notebook.autosave import autosave
from .saved import SavedSession
from .sdk.live import open_session
from .store.models import SessionBundle, SessionData
from .store.store import FileStore, MemoryStore, Store, open_store

__all__ = [  # noqa: RUF022 - grouped: core, then the lazily imported frames and widgets
    "FileStore",
    "ForkError",
    "MemoryStore",
    "SavedSession",
    "SessionBundle",
    "SessionData",
    "Store",
    # every error a3s_nb raises on purpose (a3s_nb.errors)
    "A3sNbError",
    "AmbiguousSessionIdError",
    "CaptureError",
    "CorruptFileError",
    "CorruptSessionWarning",
    "EditError",
    "EncryptedSessionError",
    "EventProtocolError",
    "ExportError",
    "FilterError",
    "InvalidBundleError",
    "InvalidSessionIdError",
    "LiveSessionError",
    "ModelNotConfiguredError",
    "NotASessionError",
    "NotAnAgentError",
    "NotSettledError",
    "ParallelBuildError",
    "ReadOnlySessionError",
    "ReportError",
    "SaveConflictError",
    "SaveError",
    "SdkOwnedSessionError",
    "SearchQueryError",
    "SecretsFoundError",
    "SessionExistsError",
    "SessionNotFoundError",
    "StoreError",
    "StoreWriteError",
    "UnsupportedSdkError",
    "diff",
    "diff_summary",
    "fork",
    "lineage_frame",
    "lineage_of",
    "autosave",
    "list_sessions",
    "open_session",
    "open_store",
    "replay",
    "resume",
    "save",
    # the frames (a3s_nb.frames), imported on first use so `import a3s_nb` stays light
    "all_frames",
    "messages",
    "run_events",
    "runs",
    "sessions",
    "spans",
    "traces",
    "verification",
    # cost per model without an unknown price summing to 0 (a3s_nb.frames.cost_report)
    "cost_summary",
    # the exports (a3s_nb.exports.parquet, a3s_nb.exports.otel), imported on first use
    "export_dataset",
    "to_otel",
    # one session as a self-contained HTML page (a3s_nb.exports.report), imported on first use
    "report",
    # search (a3s_nb.frames.search), imported on first use
    "search",
    # the widgets (a3s_nb.widgets), imported on first use: `import a3s_nb` never imports
    # ipywidgets
    "DiffView",
    "RunTimeline",
    "SessionBrowser",
    "Transcript",
]

# named here, not taken from a3s_nb.frames.schema: importing the frames package imports
# pandas (tests/test_layout.py checks these are schema.FRAME_NAMES and all_frames)
_FRAMES = frozenset(
    {"sessions", "messages", "traces", "runs", "run_events", "spans", "verification", "all_frames"}
)

_WIDGETS = frozenset({"DiffView", "RunTimeline", "SessionBrowser", "Transcript"})

_EXPORTS = {
    "export_dataset": "exports.parquet",
    "to_otel": "exports.otel",
    "cost_summary": "frames.cost_report",
    "report": "exports.report",
    "search": "frames.search",
}


#: Modules that sat directly in a3s_nb before it was cut into layers, which notebooks name
#: as ``from a3s_nb import live`` (a3s_nb.live.open_session, a3s_nb.lineage.record_checks).
_MODULES = {"live": "sdk.live", "lineage": "lab.lineage"}


def __getattr__(name):
    if name in _FRAMES:
        from . import frames

        return getattr(frames, name)
    if name in _WIDGETS:
        from . import widgets

        return getattr(widgets, name)
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    if name in _MODULES:  # `from a3s_nb import live` in notebooks written before the layers
        import importlib

        return importlib.import_module(f".{_MODULES[name]}", __name__)
    raise AttributeError(f"module 'a3s_nb' has no attribute {name!r}")


def load_ipython_extension(ipython):  # pragma: no cover - exercised through IPython
    from .notebook.magics import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython):  # pragma: no cover
    from .notebook.magics import unload_ipython_extension as _unload

    _unload(ipython)
