"""Exports to the tools a team already runs: OpenTelemetry traces (``otel.py``,
``a3s_nb.to_otel``) and Parquet datasets (``parquet.py``, ``a3s_nb.export_dataset``).

Each module imports its heavy dependencies (pyarrow, OpenTelemetry) when called; this
package imports neither.

May import from a3s_nb: ``frames``, ``sdk``, ``store`` and ``errors``, ``config``,
``_version``, ``_warn``, ``secrets``.
"""
