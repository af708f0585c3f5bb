"""The persistence core: where sessions live on disk and what they are in memory.

Owns the stores (``FileStore`` for a3s-code's directory layout, ``MemoryStore``), their
lock, crash journal and session ids (``store.py``), the pydantic models of a session
(``models.py``), the canonical JSON they are written as (``serde.py``), the system calls a
save makes (``_fsio.py``), fast JSON (``_json.py``), the cache files kept in
``<store>/.a3s_nb/`` (``_cachefile.py``), token sums over runs (``_tokens.py``), and the
lineage records of forks and replays (kept beside the sessions, deleted with them).

May import from a3s_nb: ``errors``, ``config``, ``_version``, ``_warn``, ``secrets``.
Nothing here imports pandas, IPython or the SDK.
"""

from .store import (
    LAYOUT,
    PARTS,
    FileStore,
    MemoryStore,
    Store,
    decode_text,
    dumps,
    lookup_session_id,
    open_store,
    parse_json,
    resolve_id,
    sdk_safe_id,
    serde_float,
    validate_session_id,
)

__all__ = [
    "LAYOUT",
    "PARTS",
    "FileStore",
    "MemoryStore",
    "Store",
    "decode_text",
    "dumps",
    "lookup_session_id",
    "open_store",
    "parse_json",
    "resolve_id",
    "sdk_safe_id",
    "serde_float",
    "validate_session_id",
]
