"""The lab: new sessions made from saved ones, and sessions compared.

Owns fork (cut a session after prompt N), diff (two sessions prompt by prompt), replay
(send a session's prompts again, on another model) and the lineage frame, all in
``lineage.py``; the lineage records themselves are store data (``a3s_nb.store``).

May import from a3s_nb: ``api``, ``saved``, ``render``, ``frames``, ``sdk``, ``store``
and ``errors``, ``config``, ``_version``, ``_warn``, ``secrets``.
"""

from .lineage import (
    DIFF_COLUMNS,
    Prompt,
    ReplayResult,
    cut,
    diff,
    diff_summary,
    fork,
    lineage_frame,
    lineage_of,
    prompts,
    record_checks,
    replay,
)

__all__ = [
    "DIFF_COLUMNS",
    "Prompt",
    "ReplayResult",
    "cut",
    "diff",
    "diff_summary",
    "fork",
    "lineage_frame",
    "lineage_of",
    "prompts",
    "record_checks",
    "replay",
]
