"""a3s_nb's own cache files under ``<store>/.a3s_nb/`` (sessions index, load checks, frame
cache manifests): read as plain JSON, written atomically, never trusted blindly.

A cache is only ever an optimisation: a missing, torn or unreadable one reads as None and
is rebuilt, and a store that cannot be written (read-only, full) still works uncached.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from . import _metafiles
from ._json import loads

log = logging.getLogger("a3s_nb")


def _encoder() -> Callable[[Any], bytes]:
    try:
        import msgspec
    except ImportError:  # pragma: no cover - msgspec comes with a3s-nb[all]

        def encode(value: Any) -> bytes:
            return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()

        return encode
    return msgspec.json.Encoder().encode


#: Compact JSON as UTF-8 bytes (msgspec when installed: several times ``json.dumps``).
encode = _encoder()


def digest(value: Any) -> str:
    """A digest of JSON-able ``value``: what a cache was computed from, in 32 hex digits."""
    return hashlib.blake2b(encode(value), digest_size=16).hexdigest()


def source_digest(version: str, paths: Iterable[str | os.PathLike[str]]) -> str:
    """A digest of ``version`` and the bytes of the files ``paths`` (a file that cannot be
    read counts by its name): what a cache is keyed by to be made again by other code."""
    h = hashlib.sha1(version.encode())
    for path in paths:
        h.update(os.fsencode(os.path.basename(path)))
        try:
            with open(path, "rb") as f:
                h.update(f.read())
        except OSError:
            h.update(b"unreadable")
    return h.hexdigest()


def _head_decoder() -> Callable[[bytes], dict[str, Any]] | None:
    try:
        import msgspec
    except ImportError:  # pragma: no cover - msgspec comes with a3s-nb[all]
        return None

    class Head(msgspec.Struct):
        format: Any = None
        key: Any = None
        listing: Any = None
        clean: Any = None
        rejected: Any = None
        generation: Any = None

    decode = msgspec.json.Decoder(Head).decode

    def head(data: bytes) -> dict[str, Any]:
        h = decode(data)
        return {f: getattr(h, f) for f in Head.__struct_fields__}

    return head


_HEAD = _head_decoder()


def read_json_head(path: Path, what: str) -> dict[str, Any] | None:
    """The fields ``format``, ``key``, ``listing``, ``clean``, ``rejected`` and
    ``generation`` of the JSON object in ``path``, without building the rest (msgspec
    skips it at C speed); None when missing or unreadable."""
    if _HEAD is None:  # pragma: no cover - msgspec comes with a3s-nb[all]
        data = read_json(path, what)
        return data if isinstance(data, dict) else None
    data = _metafiles.read_bytes(path)  # a missing file, or one behind a link: no cache
    if data is None:
        return None
    try:
        return _HEAD(data)
    except (ValueError, RecursionError) as e:  # msgspec's errors are ValueErrors
        log.info("ignoring unreadable %s %s: %s", what, path, e)
        return None


def read_json(path: Path, what: str) -> Any | None:
    """The parsed content of the cache file ``path``, or None when it is missing or
    unreadable (``what`` names the cache in the log line)."""
    return read_json_signed(path, what)[0]


def read_json_signed(path: Path, what: str) -> tuple[Any | None, list[int] | None]:
    """``read_json``, and the ``[mtime_ns, size, inode]`` of the very file it read (None
    when it read nothing): what another cache may record to depend on this content."""
    fd = _metafiles.open_read(path)  # a missing file, or one behind a link: no cache
    if fd is None:
        return None, None
    try:
        with open(fd, "rb", closefd=False) as f:
            st = os.fstat(fd)
            return loads(f.read()), [st.st_mtime_ns, st.st_size, st.st_ino]
    except (OSError, ValueError, RecursionError) as e:
        log.info("ignoring unreadable %s %s: %s", what, path, e)
        return None, None
    finally:
        os.close(fd)


def write_json(
    path: Path, value: Any, what: str, *, tmp: Path | None = None, fsync: bool = False
) -> bool:
    """Write ``value`` to ``path`` all or nothing (a new temp file, then rename; nothing
    followed out of the store, see ``_metafiles``); False, with a log line, when the store
    cannot be written. ``fsync`` makes it durable too."""
    try:
        _metafiles.write_atomic(path, encode(value), fsync=fsync, tmp=tmp)
    except OSError as e:  # a read-only store works, it just is not cached
        log.info("%s not saved (%s): %s", what, path, e)
        return False
    return True
