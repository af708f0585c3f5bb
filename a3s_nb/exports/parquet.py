"""Every frame as a Hive-partitioned Parquet dataset that DuckDB, Spark or Trino read.

Layout under ``dest`` (a local path or an fsspec URL such as ``s3://bucket/prefix``)::

    frame=runs/day=2026-11-28/<session>.parquet     one file per session, frame and day
    frame=spans/day=2026-11-28/<session>.parquet
    ...
    _a3s_nb/manifest.json                           what was exported, from which files

Read one frame at a time (frames have different columns), e.g. in DuckDB
``read_parquet('DEST/frame=runs/*/*.parquet', hive_partitioning = true)`` or in Spark
``spark.read.parquet('DEST/frame=runs')``. ``day`` is the day the session started (its
first run, else its creation), fixed at its first export, so a session's rows never move.

The columns are the frames' own (same names and types; ``a3s_nb.frames.schema``), and each file
carries the frame name and schema version in its Parquet metadata.

Incremental: the manifest keeps each session's file signature (mtime, size, inode and ctime
of its four files), and an export rewrites only the sessions whose files changed, and removes the rows
of sessions deleted from the store. A session's rows in a partition live in exactly one
file with a fixed name, so a re-saved session *replaces* its file: an engine sees the old
rows or the new ones, never both.

Crash safety: all new files, the new manifest included, are first written under
``_a3s_nb/staging/<export>/``, where no frame's glob looks. Only when every file is written
is a plan saved there, and the files are moved into place (a rename on a local disk, a
single PUT-like copy on S3: each file appears whole). Replaced files are overwritten by that
move, files of deleted sessions are removed after it, and the manifest is moved in last. An
export that fails while staging (a full disk, an error) removes its staging and leaves the
dataset exactly as it was; one killed while staging leaves the same for the next export to
discard; one killed while moving is finished by the next export from its plan.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import time
import uuid
import warnings
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from .. import frames as _frames
from ..errors import A3sNbError, CorruptFileError, ExportError
from ..frames import _engine, schema
from ..store._v1layout import file_key
from ..store.store import FileStore, Store, open_store, sdk_safe_id

__all__ = ["ExportResult", "export_dataset"]

MANIFEST_FORMAT = 1
META_DIR = "_a3s_nb"
#: Sessions read per pass over the store (bounds memory on a large store).
BATCH_SESSIONS = 500
#: A file changed this close to the export may change again within its mtime granularity,
#: keeping its size: for such a session the manifest also keeps a hash of the files'
#: content, which the next export compares (as git does for racily clean files).
RACY_SECONDS = 2.0

_INSTALL = 'pip install "a3s-nb[export]"'


class ExportResult(dict):
    """What an export did: counts of sessions written, unchanged, deleted and failed.

    A dict (``written``, ``unchanged``, ``deleted``, ``errors``, ``files``, ``dest``) with a
    readable repr.
    """

    def __repr__(self) -> str:
        return (
            f"<dataset export to {self['dest']}: {self['written']} sessions written, "
            f"{self['unchanged']} unchanged, {self['deleted']} deleted, "
            f"{len(self['errors'])} failed>"
        )


# ---------------------------------------------------------------------------- file system


def _filesystem(dest: str, storage_options: dict | None = None) -> tuple[Any, str]:
    try:
        import fsspec
    except ImportError:  # pragma: no cover - fsspec is a dependency of the export extra
        raise ExportError(f"exporting a dataset needs fsspec: {_INSTALL}") from None
    dest = os.fspath(dest)
    try:
        fs, root = fsspec.url_to_fs(dest, **(storage_options or {}))
    except ImportError as e:  # e.g. s3:// without s3fs
        raise ExportError(f"{dest}: {e} ({_INSTALL})") from None
    except ValueError as e:
        raise ExportError(f"{dest}: not a path or URL fsspec knows: {e}") from None
    return fs, root.rstrip("/")


def _is_local(fs: Any) -> bool:
    return "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))


@contextlib.contextmanager
def _io_errors(what: str, where: str) -> Iterator[None]:
    """Turn the file system's errors into one ExportError naming what failed and where."""
    try:
        yield
    except A3sNbError:
        raise
    except PermissionError as e:
        raise ExportError(f"cannot {what} {where}: permission denied ({e})") from e
    except FileNotFoundError as e:
        text = str(e)
        if "bucket" in text.lower():
            raise ExportError(f"cannot {what} {where}: the bucket does not exist ({e})") from e
        raise ExportError(f"cannot {what} {where}: not found ({e})") from e
    except OSError as e:
        raise ExportError(f"cannot {what} {where}: {e}") from e
    except Exception as e:  # botocore and aiohttp errors are not OSErrors
        name = type(e).__name__
        if "NoSuchBucket" in f"{name} {e}":
            raise ExportError(f"cannot {what} {where}: the bucket does not exist") from e
        if "Endpoint" in name or "Connect" in name or "Credentials" in name:
            raise ExportError(f"cannot {what} {where}: {name}: {e}") from e
        raise


def _write_bytes(fs: Any, path: str, data: bytes) -> None:
    """Write a whole file: a temp file and a rename locally, one PUT on object storage."""
    if _is_local(fs):
        directory = os.path.dirname(path)
        os.makedirs(directory, exist_ok=True)
        tmp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:  # a full disk: what was written of it goes too
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    else:
        fs.pipe_file(path, data)


def _move(fs: Any, src: str, dst: str) -> None:
    """Put a finished file in place, replacing the one there: atomic for every reader."""
    if _is_local(fs):
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        os.replace(src, dst)
    else:
        fs.copy(src, dst)  # an object store copy: the new object appears whole
        fs.rm_file(src)


def _read_json(fs: Any, path: str) -> Any | None:
    try:
        data = fs.cat_file(path)
    except FileNotFoundError:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return None


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, indent=1, sort_keys=True).encode()


# ---------------------------------------------------------------------------- sessions


def _signatures(store: Store, ids: list[str]) -> dict[str, Any]:
    """Per session, what changes when any of its files changes."""
    out: dict[str, Any] = {}
    if isinstance(store, FileStore):
        for sid in ids:
            sig = []
            for part in ("session", "runs", "traces", "verification"):
                try:
                    st = os.stat(store.location(sid, part))
                except OSError:
                    sig.append(None)
                else:
                    sig.append([st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns])
            out[sid] = sig
        return out
    for sid in ids:  # other stores: the content itself
        h = hashlib.sha256()
        for part in ("session", "runs", "traces", "verification"):
            try:
                h.update(json.dumps(store.read_raw(sid, part), sort_keys=True).encode())
            except CorruptFileError:
                h.update(b"corrupt")
        out[sid] = h.hexdigest()
    return out


def _content_hash(store: Store, sid: str) -> str:
    """A hash of the bytes of a session's four files."""
    h = hashlib.sha256()
    for part in ("session", "runs", "traces", "verification"):
        if isinstance(store, FileStore):
            try:
                with open(store.location(sid, part), "rb") as f:
                    h.update(f.read())
            except OSError:
                h.update(b"\0missing")
        else:
            try:
                h.update(json.dumps(store.read_raw(sid, part), sort_keys=True).encode())
            except CorruptFileError:
                h.update(b"\0corrupt")
        h.update(b"\0")
    return h.hexdigest()


def _unchanged(store: Store, sid: str, entry: Any, sig: Any) -> bool:
    if not entry or entry.get("signature") != sig:
        return False
    content = entry.get("content")
    return content is None or content == _content_hash(store, sid)


def _racy(sig: Any, started_ns: int) -> bool:
    if not isinstance(sig, list):
        return False
    limit = started_ns - int(RACY_SECONDS * 1e9)
    return any(s is not None and s[0] >= limit for s in sig)


def _day(row: Any) -> str:
    for col in ("first_run_at", "created_at", "updated_at"):
        value = row.get(col)
        if value is not None and not _isna(value):
            return value.strftime("%Y-%m-%d")
    return "unknown"


def _isna(value: Any) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


# ---------------------------------------------------------------------------- parquet


def _parquet_bytes(frame: str, df: Any) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[b"a3s_nb.frame"] = frame.encode()
    meta[b"a3s_nb.schema_version"] = str(schema.SCHEMA_VERSION).encode()
    table = table.replace_schema_metadata(meta)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


# ---------------------------------------------------------------------------- export


def export_dataset(
    source: Any = None,
    dest: str | os.PathLike[str] = "a3s_dataset",
    *,
    frames: Iterable[str] | None = None,
    full: bool = False,
    storage_options: dict | None = None,
    progress: bool | None = None,
) -> ExportResult:
    """Export every frame of a store to a Hive-partitioned Parquet dataset under ``dest``.

    ``source`` is a store path or ``Store`` (None: the default store). ``dest`` is a local
    directory or an fsspec URL (``s3://bucket/prefix``; S3 needs ``s3fs``). Only sessions
    changed since the last export to ``dest`` are written (``full=True`` rewrites all); a
    corrupt session is reported in the result's ``errors`` and the rest are exported.
    ``storage_options`` go to fsspec (e.g. ``{"endpoint_url": ...}`` for an S3-compatible
    server); ``frames`` limits the export to some frames.

    >>> a3s_nb.export_dataset("sessions", "s3://team-bucket/a3s")          # doctest: +SKIP
    >>> duckdb.sql("SELECT model, sum(cost_usd) FROM "
    ...            "read_parquet('a3s_dataset/frame=runs/*/*.parquet') GROUP BY 1")  # doctest: +SKIP
    """
    try:
        import pyarrow  # noqa: F401
    except ImportError:  # pragma: no cover - pyarrow is in the all extra
        raise ExportError(f"exporting a dataset needs pyarrow: {_INSTALL}") from None
    wanted = list(schema.FRAME_NAMES if frames is None else dict.fromkeys(frames))
    for name in wanted:
        if name not in schema.FRAMES:
            raise ValueError(f"unknown frame {name!r}; choose from {', '.join(schema.FRAMES)}")
    store = source if isinstance(source, Store) else open_store(source, create=False)
    dest_str = os.fspath(dest)
    fs, root = _filesystem(dest_str, storage_options)
    meta = f"{root}/{META_DIR}"
    started_ns = time.time_ns()

    with _io_errors("write the dataset at", dest_str), _exclusive(fs, meta):
        return _export(store, fs, root, dest_str, wanted, full, progress, started_ns)


@contextlib.contextmanager
def _exclusive(fs: Any, meta: str) -> Iterator[None]:
    """One export at a time into a local dataset (object stores have no locks: there, run
    one export per destination at a time)."""
    if not _is_local(fs):
        yield
        return
    import fcntl

    os.makedirs(meta, exist_ok=True)
    with open(os.path.join(meta, "lock"), "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _export(
    store: Store,
    fs: Any,
    root: str,
    dest_str: str,
    wanted: list[str],
    full: bool,
    progress: bool | None,
    started_ns: int,
) -> ExportResult:
    meta = f"{root}/{META_DIR}"
    _recover(fs, root)
    manifest = _read_json(fs, f"{meta}/manifest.json") or {}
    compatible = (
        manifest.get("format") == MANIFEST_FORMAT
        and manifest.get("schema_version") == schema.SCHEMA_VERSION
        and manifest.get("frames") == wanted
        and not full
    )
    done: dict[str, Any] = dict(manifest.get("sessions") or {}) if compatible else {}
    old_files = _all_files(manifest.get("sessions") or {})

    ids = store.list()
    sigs = _signatures(store, ids)
    changed = [sid for sid in ids if not _unchanged(store, sid, done.get(sid), sigs[sid])]
    # hashed before the files are read for the frames: a change after this is seen next time
    racy = {sid: _content_hash(store, sid) for sid in changed if _racy(sigs[sid], started_ns)}
    deleted = [sid for sid in done if sid not in sigs]
    result = ExportResult(
        dest=dest_str,
        written=0,
        unchanged=len(ids) - len(changed),
        deleted=len(deleted),
        errors=[],
        files=0,
    )
    if not changed and not deleted and compatible:
        return result

    export_id = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    staging = f"{meta}/staging/{export_id}"
    written: list[str] = []
    sessions = dict(done)
    with _discarded_on_failure(fs, staging):
        _write_bytes(fs, f"{staging}/started", b"")  # fails early: not writable, no bucket
        for start in range(0, len(changed), BATCH_SESSIONS):
            batch = changed[start : start + BATCH_SESSIONS]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", _frames.CorruptSessionWarning)
                # the ids listed above, read as they are: one deleted since is reported
                built = _engine._collect(
                    store,
                    list(dict.fromkeys(["sessions", *wanted])),
                    ids=batch,
                    since=None,
                    until=None,
                    status=None,
                    progress=progress,
                    exact_ids=True,
                )
            errors = built["sessions"].attrs.get("errors", [])
            result["errors"].extend(errors)
            bad = {e["session_id"] for e in errors}
            by_session = {
                name: dict(tuple(built[name].groupby("session_id", sort=False, observed=True)))
                for name in wanted
            }
            for _, row in built["sessions"].iterrows():
                sid = row["session_id"]
                key = _store_key(sid, batch)
                if key in bad:  # keeps its previous rows and entry; retried next time
                    continue
                day = (done.get(key) or {}).get("day") or _day(row)
                files = []
                for name in wanted:
                    part = by_session[name].get(sid)
                    if part is None or part.empty:
                        continue
                    rel = f"frame={name}/day={day}/{file_key(sid)}.parquet"
                    _write_bytes(fs, f"{staging}/{rel}", _parquet_bytes(name, part))
                    files.append(rel)
                written.extend(files)
                entry = {"session_id": sid, "day": day, "files": files, "signature": sigs.get(key)}
                if key in racy:
                    entry["content"] = racy[key]
                sessions[key] = entry
                result["written"] += 1
        for sid in deleted:
            sessions.pop(sid, None)
        plan = {
            "files": written,
            "removes": sorted(old_files - _all_files(sessions)),
            "manifest": {
                "format": MANIFEST_FORMAT,
                "schema_version": schema.SCHEMA_VERSION,
                "frames": wanted,
                "exported_at": datetime.now(UTC).isoformat(),
                "sessions": sessions,
            },
        }
        # the new manifest, moved in last by _apply: after the commit point nothing is written
        _write_bytes(fs, f"{staging}/manifest.json", _json_bytes(plan["manifest"]))
        # the commit point: until the plan exists, nothing outside staging has changed
        _write_bytes(fs, f"{staging}/plan.json", _json_bytes(plan))
    _apply(fs, root, staging, plan)
    result["files"] = len(written)
    return result


def _store_key(sid: str, batch: list[str]) -> str:
    """The store's id for a frame's session id (they differ only for odd file names)."""
    if sid in batch:
        return sid
    safe = sdk_safe_id(sid)
    return next((b for b in batch if sdk_safe_id(b) == safe), sid)


def _all_files(sessions: dict[str, Any]) -> set[str]:
    return {rel for entry in sessions.values() for rel in (entry or {}).get("files", [])}


@contextlib.contextmanager
def _discarded_on_failure(fs: Any, staging: str) -> Iterator[None]:
    """Remove this export's staging if it fails before its commit point (a full disk
    stays full otherwise): nothing outside it has changed, the dataset is as it was."""
    try:
        yield
    except BaseException:
        _discard(fs, staging)
        raise


def _discard(fs: Any, staging: str) -> None:
    with contextlib.suppress(OSError):
        fs.rm(staging, recursive=True)
    if _is_local(fs):  # the staging area itself, if nothing else is there
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(staging))


def _apply(fs: Any, root: str, staging: str, plan: dict) -> None:
    """Carry out a saved plan; safe to repeat after a crash part way through."""
    for rel in plan["files"]:
        if fs.exists(f"{staging}/{rel}"):  # not yet moved before a crash
            _move(fs, f"{staging}/{rel}", f"{root}/{rel}")
    for rel in plan["removes"]:
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(f"{root}/{rel}")
    manifest = f"{root}/{META_DIR}/manifest.json"
    if fs.exists(f"{staging}/manifest.json"):
        _move(fs, f"{staging}/manifest.json", manifest)
    else:  # moved before a crash, or a plan of an earlier version
        _write_bytes(fs, manifest, _json_bytes(plan["manifest"]))
    with contextlib.suppress(FileNotFoundError):
        fs.rm(staging, recursive=True)


def _recover(fs: Any, root: str) -> None:
    """Finish an export that died after its commit point; discard one that died before."""
    base = f"{root}/{META_DIR}/staging"
    try:
        entries = sorted(fs.ls(base, detail=False))
    except FileNotFoundError:
        return
    for staging in entries:
        plan = _read_json(fs, f"{staging}/plan.json")
        if isinstance(plan, dict) and {"files", "removes", "manifest"} <= set(plan):
            _apply(fs, root, staging, plan)
        else:  # died before its commit point: nothing outside staging was touched
            with contextlib.suppress(FileNotFoundError):
                fs.rm(staging, recursive=True)
