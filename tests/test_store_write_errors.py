"""A save or delete the file system refuses (ENOSPC, EROFS, EACCES) at any one of its
system calls raises a StoreWriteError (an A3sNbError and an OSError, errno kept) naming
the store and what to do, and leaves every session loading exactly as before (or, when
the call that failed came after the write was complete, as the write left it).
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import pytest

import a3s_nb
from a3s_nb.errors import A3sNbError, StoreError
from a3s_nb.store import _fsio
from tests.test_store_crash import gen_a, gen_b_all, gen_b_some

ERRNOS = [errno.ENOSPC, errno.EROFS, errno.EACCES]

OPERATIONS = {
    "update-every-file": lambda store: store.save(gen_b_all()),
    "update-two-files": lambda store: store.save(gen_b_some()),
    "create": lambda store: store.save(_renamed(gen_b_all(), "t")),
    "delete": lambda store: store.delete("s"),
}


def _renamed(bundle, sid):
    bundle.session.id = sid
    for run in bundle.runs:
        run.snapshot.session_id = sid
    return bundle


def dump(store: a3s_nb.FileStore) -> dict[str, object]:
    out: dict[str, object] = {}
    for sid in ("s", "t", "bystander"):
        try:
            out[sid] = store.load(sid).model_dump(mode="json")
        except a3s_nb.SessionNotFoundError:
            out[sid] = None
    return out


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("template") / "store"
    store = a3s_nb.open_store(path)
    store.save(_renamed(gen_a(), "bystander"))
    store.save(gen_a())
    return path


def _count_calls(monkeypatch, fail_at: int | None, code: int) -> list[int]:
    """Wrap every system call of ``_fsio``; the ``fail_at``-th fails once with ``code``."""
    count = [0]
    for name in _fsio.NAMES:
        real = getattr(_fsio, name)

        def call(*args, _real=real, _name=name, **kwargs):
            count[0] += 1
            if count[0] == fail_at:
                if _name == "close":  # a close that fails still closes (POSIX, Linux)
                    _real(*args, **kwargs)
                raise OSError(code, f"injected {errno.errorcode[code]} at {_name}", str(args[0]))
            return _real(*args, **kwargs)

        monkeypatch.setattr(_fsio, name, call)
    return count


@pytest.mark.parametrize("op", sorted(OPERATIONS))
def test_a_refused_write_at_any_call_raises_a_store_write_error_and_damages_nothing(
    template, tmp_path, monkeypatch, op
):
    dry = tmp_path / "dry"
    shutil.copytree(template, dry)
    before = dump(a3s_nb.open_store(dry))
    with monkeypatch.context() as m:
        count = _count_calls(m, None, 0)
        OPERATIONS[op](a3s_nb.open_store(dry))
    after = dump(a3s_nb.open_store(dry))
    calls = count[0]
    assert calls > 3
    raised = 0
    for k in range(1, calls + 1):
        for code in ERRNOS:
            path = tmp_path / f"{k}-{code}"
            shutil.copytree(template, path)
            with monkeypatch.context() as m:
                _count_calls(m, k, code)
                store = a3s_nb.open_store(path)
                try:
                    OPERATIONS[op](store)
                except OSError as e:  # StoreWriteError is one
                    failed = e
                else:
                    failed = None
            if failed is not None:
                raised += 1
                assert isinstance(failed, A3sNbError) and isinstance(failed, StoreError), (
                    k,
                    code,
                    repr(failed),
                )
                assert type(failed).__name__ == "StoreWriteError"
                assert failed.errno == code
                message = str(failed)
                assert str(path) in message and "Nothing saved before was damaged" in message
                todo = {
                    errno.ENOSPC: "free some space",
                    errno.EROFS: "read-only file system",
                    errno.EACCES: "write access",
                }[code]
                assert todo in message
            got = dump(a3s_nb.open_store(path))
            assert got == (before if failed is not None else after), (k, code)
            shutil.rmtree(path)
    assert raised  # most calls do fail the operation
