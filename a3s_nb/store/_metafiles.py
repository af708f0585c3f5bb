"""Every read and write of a3s_nb's own files under ``<store>/.a3s_nb/`` (lock, journal,
caches, frame segments, lineage records), following nothing out of the store.

The rule is the session files' own: ``.a3s_nb`` and each folder under it must be a real
directory (not a symbolic link, not a file), a file is opened with ``O_NOFOLLOW``, and a new
file gets a name no other writer uses, created with ``O_EXCL``, then renamed into place (a
rename replaces a link, it never writes through it). A writer that meets a link or a
non-directory gets a ``StoreError`` naming the path; a reader treats it as no file at all
(a cache read through a planted link could be poisoned).

The paths given are absolute paths inside some ``<store>/.a3s_nb`` (the last component of
that name is taken as the folder to check from).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import StoreError
from . import _fsio as fsio

META_DIR = ".a3s_nb"

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_counter = itertools.count()


def _chain(directory: Path) -> list[Path]:
    """``<store>/.a3s_nb`` and each folder under it down to ``directory``."""
    parts = directory.parts
    try:
        at = len(parts) - 1 - parts[::-1].index(META_DIR)
    except ValueError:
        raise ValueError(f"{directory} is not inside a {META_DIR} folder") from None
    return [Path(*parts[: i + 1]) for i in range(at, len(parts))]


def _problem(path: Path) -> str | None:
    """Why ``path`` is not a real directory (None: it is one); FileNotFoundError if absent."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return (
            f"{path} is a symbolic link (to {os.readlink(path)!r}): a3s_nb keeps its lock, "
            "journal and caches only in a real folder inside the store; remove the link "
            "(a3s_nb makes the folder again)"
        )
    if not stat.S_ISDIR(st.st_mode):
        return f"{path} is not a directory: move it out of the store (a3s_nb makes the folder)"
    return None


def ensure_dir(directory: Path) -> None:
    """Make ``directory`` and its parents up from ``.a3s_nb`` real directories (creating
    missing ones); ``StoreError`` naming a link or a file in the way."""
    for d in _chain(directory):
        try:
            problem = _problem(d)
        except FileNotFoundError:
            try:
                fsio.mkdir(d, 0o755)
            except FileExistsError:
                problem = _problem(d)
            else:
                continue
        if problem is not None:
            raise StoreError(problem)


def is_real_dir(directory: Path) -> bool:
    """Whether ``directory`` and its parents up from ``.a3s_nb`` exist as real directories
    (what a reader asks before trusting anything in them)."""
    try:
        return all(_problem(d) is None for d in _chain(directory))
    except OSError:
        return False


def open_read(path: Path) -> int | None:
    """An fd of the regular file ``path`` for reading, or None when it is missing, not a
    regular file, behind a link, or in a folder that is not a real one."""
    if not is_real_dir(path.parent):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _CLOEXEC | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return fd
    except OSError:
        pass
    os.close(fd)
    return None


def read_bytes(path: Path) -> bytes | None:
    """The bytes of ``path`` (see ``open_read``), or None."""
    fd = open_read(path)
    if fd is None:
        return None
    try:
        with open(fd, "rb", closefd=False) as f:
            return f.read()
    except OSError:
        return None
    finally:
        os.close(fd)


def lstat(path: Path) -> os.stat_result | None:
    """``os.lstat`` of a regular file in a real folder, else None."""
    if not is_real_dir(path.parent):
        return None
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def temp_name(path: Path) -> Path:
    """A name beside ``path`` no other writer uses (the leftover pattern the sweeps know:
    ``<name>.<nanos>.<pid>.<counter>.tmp``)."""
    return path.with_name(f"{path.name}.{time.time_ns()}.{os.getpid()}.{next(_counter)}.tmp")


def create(path: Path, mode: int = 0o644) -> int:
    """A new file ``path`` (it must not exist, and is never a link), open for writing."""
    ensure_dir(path.parent)
    return fsio.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, mode)


@contextlib.contextmanager
def new_file(path: Path) -> Iterator[int]:
    """The new file ``path`` (see ``create``) open for writing, closed after the block and
    removed again if the block raises."""
    fd = create(path)
    try:
        try:
            yield fd
        finally:
            fsio.close(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            unlink(path)
        raise


def write_new(path: Path, data: bytes, *, fsync: bool = False) -> None:
    """Write ``data`` to the new file ``path`` (removed again if the write fails)."""
    with new_file(path) as fd:
        fsio.write_all(fd, data)
        if fsync:
            fsio.fsync(fd)


def write_atomic(path: Path, data: bytes, *, fsync: bool = False, tmp: Path | None = None) -> None:
    """Replace ``path`` with ``data`` all or nothing: a new temp file, then a rename (which
    replaces whatever is at ``path``, a link included, without following it)."""
    tmp = tmp or temp_name(path)
    write_new(tmp, data, fsync=fsync)
    try:
        fsio.replace(tmp, path)
    except BaseException:
        unlink(tmp)
        raise


def open_lock(path: Path, *, create: bool) -> int:
    """The lock file ``path``, opened (and with ``create``, made) without following a link;
    ``FileNotFoundError`` when a reader finds none (or finds one it must not trust)."""
    if create:
        ensure_dir(path.parent)
        try:
            return fsio.open(path, os.O_RDWR | os.O_CREAT | _NOFOLLOW | _CLOEXEC, 0o644)
        except OSError as e:
            if e.errno == errno.ELOOP or os.path.islink(path):
                raise StoreError(
                    f"{path} is a symbolic link: a3s_nb does not lock (or write) through "
                    "it; remove it (a3s_nb makes the lock file again)"
                ) from None
            raise
    if not is_real_dir(path.parent):
        raise FileNotFoundError(path)
    return os.open(path, os.O_RDONLY | _NOFOLLOW | _CLOEXEC)


def unlink(path: Path) -> bool:
    """Remove ``path`` (a link itself, never its target); False when there was nothing, or
    its folder is not a real one."""
    if not is_real_dir(path.parent):
        return False
    try:
        fsio.unlink(path)
    except FileNotFoundError:
        return False
    return True


def scandir(directory: Path) -> Iterator[os.DirEntry[str]]:
    """The entries of a real folder under ``.a3s_nb`` (none for a link or a missing one)."""
    if not is_real_dir(directory):
        return iter(())
    try:
        return iter(list(os.scandir(directory)))
    except OSError:
        return iter(())


def read_arrow(path: Path) -> object:
    """The Arrow IPC file ``path`` as a table, memory-mapped (``OSError`` when it is missing,
    behind a link or not a regular file)."""
    import mmap

    import pyarrow as pa

    fd = open_read(path)
    if fd is None:
        raise FileNotFoundError(f"no usable file {path}")
    try:
        if os.fstat(fd).st_size == 0:
            raise pa.ArrowInvalid(f"{path} is empty")
        mapped = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    finally:
        os.close(fd)
    return pa.ipc.open_file(pa.BufferReader(pa.py_buffer(mapped))).read_all()


def write_arrow(path: Path, table: object) -> None:
    """Write ``table`` as the new Arrow IPC file ``path`` (as ``write_new`` writes: a new
    file, never through a link, removed again if the write fails), straight from Arrow's
    buffers to the file: no copy of the whole file in memory first."""
    import pyarrow as pa

    with new_file(path) as fd:
        sink = _FdSink(fd)
        with pa.ipc.new_file(pa.PythonFile(sink, mode="w"), table.schema) as writer:  # type: ignore[attr-defined]
            writer.write_table(table)
        sink.flush()


#: Writes to an ``_FdSink`` smaller than this are gathered into one system call.
_GATHER = 1 << 16


class _FdSink:
    """A file object over ``fd`` for ``pyarrow.PythonFile``: the Arrow IPC writer writes
    each column buffer once (written as it is, no copy) and its metadata and padding in
    pieces of a few bytes (gathered). It never closes ``fd``."""

    closed = False

    def __init__(self, fd: int):
        self.fd = fd
        self.pos = 0
        self.pending = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: object) -> int:
        view = memoryview(data)  # type: ignore[arg-type]
        n = view.nbytes
        if n < _GATHER:
            self.pending += view
            if len(self.pending) >= _GATHER:
                self.flush()
        else:
            self.flush()
            fsio.write_all(self.fd, view)
        self.pos += n
        return n

    def flush(self) -> None:
        if self.pending:
            data, self.pending = self.pending, bytearray()
            fsio.write_all(self.fd, data)

    def tell(self) -> int:
        return self.pos

    def close(self) -> None:
        pass
