"""The notebook faces: the ``%a3s_*`` magics (``magics.py``) and autosave after each cell
(``autosave.py``). The third face, the widgets, is the public module ``a3s_nb.widgets``
(``a3s_nb/widgets.py``, kept under its import path), in this same layer.

IPython is imported by the magics only and ipywidgets by the widgets only, never by the
layers below; ``autosave.py`` imports neither.

May import from a3s_nb: ``widgets``, ``lab``, ``exports``, ``api``, ``saved``, ``render``,
``frames``, ``sdk``, ``store`` and ``errors``, ``config``, ``_version``, ``_warn``,
``secrets``.
"""
