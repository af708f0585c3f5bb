"""Imported once by the fork server that starts the frames' worker processes
(``a3s_nb.frames._parallel``): everything a worker needs is loaded, and each frame built empty
once, before any worker is forked, so a worker starts in milliseconds instead of importing
pandas, pyarrow and a3s_nb and warming their caches anew."""

from __future__ import annotations

from . import _builders, _columns, _engine, _parallel, cost  # noqa: F401 - imported to be inherited

cost.default_pricer()  # the price table, loaded once for every worker
if _columns.pa is not None:
    import pyarrow.ipc  # noqa: F401

    for _name in _engine.FRAME_NAMES:
        _columns.pa.Table.from_pandas(_builders._empty_frame(_name), preserve_index=False)
