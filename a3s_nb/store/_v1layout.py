"""The versioned ("v1") layout a3s-code 5.x and later write, and how its files are read.

Since 5.x a3s-code saves every session as one file named after its id::

    <store>/v1/sessions/id_<b64>.json                  a snapshot envelope, or a bare SessionData
    <store>/v1/runs|traces|verification|subagent_tasks/id_<b64>.json   fragments of a bare one
    <store>/v1/artifacts/id_<b64>/artifacts.json       its artifacts manifest
    <store>/v1/wal/session-store.ndjson                the write-ahead log (8.3+)
    <store>/v1/writer_lease.json                       the writer lease (8.3+)

``<b64>`` is the id's UTF-8 bytes in base64url without padding, so ids that the 3.x flat
names would merge (``tenant/session`` and ``tenant_session``) stay apart. The root (flat)
files are then only a read-only source the SDK migrates from.

This module holds the rules a3s-code's ``FileSessionStore`` reads by, and nothing else: the
file names, which file is an envelope, which is sealed, the size limit, what lists.
:class:`a3s_nb.store.FileStore` applies them. a3s_nb never writes under ``v1/`` (only a
delete on a store without a write-ahead log removes files there, as the SDK's own delete
would).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import re
import stat
from pathlib import Path
from typing import Any

from ..errors import CorruptFileError, EncryptedSessionError

V1_DIR = "v1"

#: a3s-code refuses to read (or write) any store document larger than this.
MAX_DOCUMENT_BYTES = 256 * 1024 * 1024

#: A document sealed at rest (AES-256-GCM): this prefix, a 12-byte nonce, ciphertext, tag.
SEALED_MAGIC = b"A3SE\x01"

#: The fragment files of a bare v1 session: ``part -> v1/<dir>``.
FRAGMENT_DIRS = {
    "runs": "runs",
    "traces": "traces",
    "verification": "verification",
    "subagent_tasks": "subagent_tasks",
}

#: The v1 directories that hold one entry per session (the artifacts one a directory each).
SESSION_DIRS = ("sessions", *FRAGMENT_DIRS.values(), "artifacts")

#: Where each part of a session is inside a snapshot envelope (``SessionSnapshotV1``).
ENVELOPE_FIELDS = {
    "session": "session",
    "runs": "run_records",
    "traces": "trace_events",
    "verification": "verification_reports",
    "subagent_tasks": "subagent_tasks",
    "artifacts": "artifacts",
}

SNAPSHOT_SCHEMA_VERSION = 1

#: The write-ahead log, relative to the store.
WAL_FILE = ("v1", "wal", "session-store.ndjson")

_B64URL = re.compile(r"\A[A-Za-z0-9_-]*\Z")


def v1_name(session_id: str) -> str:
    """``id_<base64url(id), no padding>``: the v1 file stem of a session id."""
    encoded = base64.urlsafe_b64encode(session_id.encode("utf-8")).rstrip(b"=")
    return "id_" + encoded.decode("ascii")


def file_key(session_id: str) -> str:
    """A file name stem for a session that no other id shares: the id itself when it is
    a plain file name a3s-code keeps as it is, else its v1 name (``a/b`` and ``a_b`` share
    the flat name ``a_b``; an id that itself starts with ``id_`` is encoded too, so no
    plain id can spell another's v1 name)."""
    plain = (
        session_id
        and not session_id.startswith(("id_", "."))
        and "/" not in session_id
        and "\\" not in session_id
        and ".." not in session_id
        and "\x00" not in session_id
    )
    return session_id if plain else v1_name(session_id)


def decode_v1_name(stem: str) -> str | None:
    """The session id a v1 file stem names, or None when it names none (a3s-code skips
    such files): not ``id_`` + canonical unpadded base64url of UTF-8 text."""
    if not stem.startswith("id_"):
        return None
    encoded = stem[3:]
    if not _B64URL.match(encoded) or len(encoded) % 4 == 1:
        return None
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        session_id = raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    # non-zero trailing bits decode, but a3s-code's decoder refuses them
    return session_id if v1_name(session_id) == stem else None


def session_path(root: Path, session_id: str) -> Path:
    """``<root>/v1/sessions/id_<b64>.json``."""
    return root / V1_DIR / "sessions" / f"{v1_name(session_id)}.json"


def fragment_path(root: Path, session_id: str, part: str) -> Path:
    """Where a bare v1 session's fragment ``part`` lives (``artifacts`` included)."""
    name = v1_name(session_id)
    if part == "artifacts":
        return root / V1_DIR / "artifacts" / name / "artifacts.json"
    return root / V1_DIR / FRAGMENT_DIRS[part] / f"{name}.json"


def session_dir_paths(root: Path, session_id: str) -> list[Path]:
    """Every per-session path a3s-code's delete removes under ``v1/`` (the session file,
    the fragment files, the artifacts directory)."""
    name = v1_name(session_id)
    return [
        session_path(root, session_id),
        *(root / V1_DIR / d / f"{name}.json" for d in FRAGMENT_DIRS.values()),
        root / V1_DIR / "artifacts" / name,
    ]


def listed_names(directory: Path | str) -> list[str]:
    """The stems of the ``*.json`` entries of a v1 directory (``*.tmp`` and anything else
    is not listed, as a3s-code lists); [] when it does not exist."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return [n[:-5] for n in names if n.endswith(".json") and len(n) > 5]


def list_sessions(root: Path) -> dict[str, str]:
    """``id -> v1 stem`` of every session file in ``<root>/v1/sessions`` whose name decodes.

    The empty id (``id_.json``) is left out: no a3s_nb call can name it.
    """
    out: dict[str, str] = {}
    for stem in listed_names(root / V1_DIR / "sessions"):
        session_id = decode_v1_name(stem)
        if session_id:
            out[session_id] = stem
    return out


def stray_names(root: Path) -> list[Path]:
    """Files in ``v1/sessions`` that a3s-code does not list: their names do not decode."""
    directory = root / V1_DIR / "sessions"
    return sorted(
        directory / f"{stem}.json" for stem in listed_names(directory) if not decode_v1_name(stem)
    )


def names_with_files(root: Path) -> set[str]:
    """The v1 stems that have any per-session file (a session file, a fragment or an
    artifacts directory): one listing per v1 directory, none when there is no ``v1/``."""
    base = root / V1_DIR
    if not os.path.isdir(base):
        return set()
    names = set(listed_names(base / "sessions"))
    for d in FRAGMENT_DIRS.values():
        names.update(listed_names(base / d))
    with contextlib.suppress(OSError):
        names.update(n for n in os.listdir(base / "artifacts") if n.startswith("id_"))
    return names


def has_wal(root: Path) -> bool:
    """Whether the store keeps a write-ahead log with anything in it (a3s-code 8.3+).

    Then only a3s-code may change what is under ``v1/``: a file removed without its WAL
    entry makes the SDK's recovery see a snapshot it cannot account for.
    """
    try:
        return os.stat(root.joinpath(*WAL_FILE)).st_size > 0
    except FileNotFoundError:
        return False
    except OSError:
        return True  # cannot tell: count it as there


def is_sealed(data: bytes) -> bool:
    """Whether a document is sealed at rest (a3s-code's test: longer than 17 bytes and
    starting with ``A3SE`` and version byte 1)."""
    return len(data) > 17 and data[:5] == SEALED_MAGIC


def check_document(data: bytes, where: str | os.PathLike[str]) -> None:
    """Refuse a document a3s-code would refuse before parsing it: too large, or sealed
    (a3s_nb holds no at-rest key)."""
    if len(data) > MAX_DOCUMENT_BYTES:
        raise CorruptFileError(
            where,
            f"is {len(data):,} bytes, over the {MAX_DOCUMENT_BYTES:,}-byte limit of a "
            "store document: a3s-code refuses to read it, and so does a3s_nb",
        )
    if is_sealed(data):
        raise EncryptedSessionError(where)


def check_size(size: int, where: str | os.PathLike[str]) -> None:
    """Refuse a file by its size alone, before reading it (a3s-code checks the length
    first)."""
    if size > MAX_DOCUMENT_BYTES:
        raise CorruptFileError(
            where,
            f"is {size:,} bytes, over the {MAX_DOCUMENT_BYTES:,}-byte limit of a store "
            "document: a3s-code refuses to read it, and so does a3s_nb",
        )


def is_envelope(doc: Any) -> bool:
    """Whether a session document is a snapshot envelope: a3s-code's test is a top-level
    ``schema_version`` or ``session`` key (it never reads such a file as a bare one)."""
    return isinstance(doc, dict) and ("schema_version" in doc or "session" in doc)


def may_be_envelope(data: bytes | str) -> bool:
    """False when a document's text cannot be an envelope (neither key name occurs in it):
    a bare session is then parsed once, by whoever validates it."""
    if isinstance(data, str):
        return '"schema_version"' in data or '"session"' in data
    return b'"schema_version"' in data or b'"session"' in data


_ENVELOPE_HEAD = re.compile(rb'\A\s*\{\s*"(?:schema_version|session)"\s*:')


def starts_as_envelope(path: Path | str) -> bool:
    """Whether a file begins as a snapshot envelope does (a3s-code writes
    ``schema_version`` first): a look at its first bytes, for naming where a part is."""
    try:  # never blocks on a FIFO, never reads a directory or a device
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        return _ENVELOPE_HEAD.match(os.read(fd, 256)) is not None
    except OSError:
        return False
    finally:
        os.close(fd)


def envelope_parts(doc: dict[str, Any], where: str | os.PathLike[str]) -> dict[str, Any]:
    """The parts of a snapshot envelope as a3s_nb names them (``session``, ``runs``,
    ``traces``, ``verification``, ``subagent_tasks``, ``artifacts`` as a manifest).

    A missing part is empty, as a3s-code's defaults make it. Raises ``CorruptFileError``
    naming ``where`` for an envelope a3s-code refuses: another ``schema_version``, or
    none, or no ``session``.
    """
    version = doc.get("schema_version")
    if type(version) is not int or version != SNAPSHOT_SCHEMA_VERSION:
        shown = (
            "no schema_version" if "schema_version" not in doc else f"schema_version {version!r}"
        )
        raise CorruptFileError(
            where,
            f"is a session snapshot with {shown}; a3s-code writes and reads only "
            f"schema_version {SNAPSHOT_SCHEMA_VERSION}, and so does a3s_nb (a newer a3s-code "
            "may have written it: see docs/sdk-versions.md)",
        )
    if "session" not in doc:
        raise CorruptFileError(where, "is a session snapshot without its 'session'")
    out: dict[str, Any] = {}
    for part, field in ENVELOPE_FIELDS.items():
        value = doc.get(field, [] if part != "session" else None)
        if part == "artifacts":
            value = {"artifacts": value}
        out[part] = value
    return out
