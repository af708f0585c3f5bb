"""Exports to the tools a team already runs, and to people: OpenTelemetry traces
(``otel.py``, ``a3s_nb.to_otel``), Parquet datasets (``parquet.py``,
``a3s_nb.export_dataset``) and one session as a self-contained HTML page to share
(``report.py``, ``a3s_nb.report``).

Each module imports its heavy dependencies (pyarrow, OpenTelemetry) when called; this
package imports neither.

May import from a3s_nb: ``lab``, ``api``, ``saved``, ``render``, ``frames``, ``sdk``,
``store`` and ``errors``, ``config``, ``_version``, ``_warn``, ``secrets``.
"""
