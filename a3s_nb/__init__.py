"""a3s_nb: save, resume and analyse a3s-code agent sessions from Jupyter.

Importing the package has no side effects; ``%load_ext a3s_nb`` registers the magics.
"""

from . import schema as _schema
from .api import list_sessions, resume, save
from .autosaver import autosave
from .errors import (
    A3sNbError,
    AmbiguousSessionIdError,
    CaptureError,
    CorruptFileError,
    CorruptSessionWarning,
    ExportError,
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
    SaveConflictError,
    SaveError,
    SecretsFoundError,
    SessionExistsError,
    SessionNotFoundError,
    StoreError,
    StoreWriteError,
)
from .lineage import diff, diff_summary, fork, lineage_frame, lineage_of, replay
from .models import SessionBundle, SessionData
from .saved import SavedSession
from .store import FileStore, MemoryStore, Store, open_store

__version__ = "0.1.0"

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
    "ExportError",
    "InvalidBundleError",
    "InvalidSessionIdError",
    "LiveSessionError",
    "ModelNotConfiguredError",
    "NotASessionError",
    "NotAnAgentError",
    "NotSettledError",
    "ParallelBuildError",
    "ReadOnlySessionError",
    "SaveConflictError",
    "SaveError",
    "SecretsFoundError",
    "SessionExistsError",
    "SessionNotFoundError",
    "StoreError",
    "StoreWriteError",
    "diff",
    "diff_summary",
    "fork",
    "lineage_frame",
    "lineage_of",
    "autosave",
    "list_sessions",
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
    # the exports (a3s_nb.export_parquet, a3s_nb.export_otel), imported on first use
    "export_dataset",
    "to_otel",
    # the widgets (a3s_nb.widgets), imported on first use: `import a3s_nb` never imports
    # ipywidgets
    "DiffView",
    "RunTimeline",
    "SessionBrowser",
    "Transcript",
]

# schema is plain data (no pandas), so the frame names come from their one source
_FRAMES = frozenset({*_schema.FRAME_NAMES, "all_frames"})

_WIDGETS = frozenset({"DiffView", "RunTimeline", "SessionBrowser", "Transcript"})

_EXPORTS = {"export_dataset": "export_parquet", "to_otel": "export_otel"}


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
    raise AttributeError(f"module 'a3s_nb' has no attribute {name!r}")


def load_ipython_extension(ipython):  # pragma: no cover - exercised through IPython
    from .magics import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython):  # pragma: no cover
    from .magics import unload_ipython_extension as _unload

    _unload(ipython)
