"""The notebook faces: the ``%a3s_*`` magics (``magics.py``), the widgets
(``widgets.py``, public as ``a3s_nb.widgets``) and autosave after each cell
(``autosave.py``).

IPython and ipywidgets are imported here only (magics, widgets), never by the layers
below; ``autosave.py`` imports neither.

May import from a3s_nb: ``lab``, ``exports``, ``api``, ``saved``, ``render``, ``frames``,
``sdk``, ``store`` and ``errors``, ``config``, ``_version``, ``_warn``, ``secrets``.
"""
