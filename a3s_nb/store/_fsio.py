"""The system calls through which a directory store changes the disk.

Every call that creates, writes, syncs, renames or removes a file during a save or a delete
goes through here, and each looks its ``os`` function up at call time, so a test can count
the calls and stop the process at any one of them (``tests/test_store_crash.py``).
"""

from __future__ import annotations

import os
from typing import Any

NAMES = ("open", "write", "fsync", "close", "link", "replace", "unlink", "mkdir", "rmdir")


def open(path: Any, flags: int, mode: int = 0o777) -> int:
    return os.open(path, flags, mode)


def write(fd: int, data: Any) -> int:
    return os.write(fd, data)


def fsync(fd: int) -> None:
    os.fsync(fd)


def close(fd: int) -> None:
    os.close(fd)


def link(src: Any, dst: Any) -> None:
    os.link(src, dst)


def replace(src: Any, dst: Any) -> None:
    os.replace(src, dst)


def unlink(path: Any) -> None:
    os.unlink(path)


def mkdir(path: Any, mode: int = 0o777) -> None:
    os.mkdir(path, mode)


def rmdir(path: Any) -> None:
    os.rmdir(path)


def write_all(fd: int, data: Any) -> None:
    """Write all of ``data`` (a short write is continued, through ``write`` above)."""
    view = memoryview(data)
    while view:
        view = view[write(fd, view) :]
