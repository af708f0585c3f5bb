"""An export that runs out of disk space (ENOSPC) at any of its writes removes its own
staging and temp files and leaves the dataset as it was; the next export completes."""

from __future__ import annotations

import builtins
import errno
import json
import os
import shutil
import time
from pathlib import Path

import pytest

import a3s_nb
from a3s_nb.exports import parquet as export_parquet
from a3s_nb.exports.parquet import export_dataset

from .test_export_dataset import copy_store, dataset_state


class _Full:
    """``open`` for export_parquet: the ``fail_at``-th file opened for writing gets half
    its bytes written, then ENOSPC (as a full disk does); every path opened is recorded."""

    def __init__(self, fail_at: int | None = None):
        self.fail_at = fail_at
        self.paths: list[str] = []

    def __call__(self, path, mode="r", *args, **kwargs):
        f = builtins.open(path, mode, *args, **kwargs)  # noqa: SIM115 - the caller closes it
        if "w" not in mode:
            return f
        self.paths.append(os.fspath(path))
        if len(self.paths) - 1 != self.fail_at:
            return f
        real_write = f.write

        def write(data):
            real_write(bytes(data)[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        f.write = write
        return f


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _resave(store: Path, sid: str) -> None:
    path = store / f"{sid}.json"
    doc = json.loads(path.read_text())
    doc["messages"] = doc["messages"][:-1]
    path.write_text(json.dumps(doc))
    past = time.time() - 30  # settled (not within the racy window), the others untouched
    os.utime(path, (past, past))


#: Which write fails, by what it writes (in the order an export writes them).
POINTS = ["first", "a-parquet-file", "last-parquet-file", "manifest", "plan"]


def _index(paths: list[str], point: str) -> int:
    names = [os.path.basename(p) for p in paths]
    parquet = [i for i, n in enumerate(names) if n.endswith(".parquet.tmp") or ".parquet." in n]
    if point == "first":
        return 0
    if point == "a-parquet-file":
        return parquet[len(parquet) // 2]
    if point == "last-parquet-file":
        return parquet[-1]
    want = {"manifest": "manifest.json", "plan": "plan.json"}[point]
    return next(i for i, n in enumerate(names) if n.startswith(f".{want}."))


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("first_export", [True, False], ids=["new-dataset", "incremental"])
def test_an_export_out_of_space_removes_its_staging(tmp_path, monkeypatch, point, first_export):
    store = copy_store(tmp_path / "store")
    dest = tmp_path / "dataset"
    if not first_export:
        export_dataset(store, dest)
        for sid in ("fix-oscar-2-000", "fix-india-2-004"):
            _resave(store, sid)
    # where an export without a fault writes, in a copy
    probe = _Full()
    copy = tmp_path / "copy"
    if dest.exists():
        shutil.copytree(dest, copy)
    monkeypatch.setattr(export_parquet, "open", probe, raising=False)
    export_dataset(store, copy)
    fail_at = _index(probe.paths, point)

    before = dataset_state(dest) if dest.exists() else {}
    full = _Full(fail_at)
    monkeypatch.setattr(export_parquet, "open", full, raising=False)
    with pytest.raises(a3s_nb.ExportError, match="No space left on device"):
        export_dataset(store, dest)
    assert len(full.paths) == fail_at + 1  # it stopped at the fault
    assert dataset_state(dest) == before  # not one byte of the dataset changed
    meta = dest / "_a3s_nb"
    left = [f for f in _files(meta) if f != "lock" and f != "manifest.json"]
    assert left == []  # no staging, no temp file
    assert not (meta / "staging").exists() or not list((meta / "staging").iterdir())

    monkeypatch.setattr(export_parquet, "open", builtins.open, raising=False)
    result = export_dataset(store, dest)  # space again: the export completes
    assert result["errors"] == []
    assert result["written"] == (8 if first_export else 2)
    assert _files(meta) == ["lock", "manifest.json"]
