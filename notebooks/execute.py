"""Run the tutorial notebooks in a fresh kernel and save them with their outputs.

    python notebooks/execute.py                      # every notebooks/NN-*.ipynb
    python notebooks/execute.py 02-trace-analysis    # some of them (name, stem or path)

The committed outputs are what nbval checks (``make test``), so they must come from a real
run: each notebook runs top to bottom in a new kernel of *this* Python environment, in the
notebooks folder, like nbval runs it; a cell that raises stops everything and nothing is
written. Before a notebook is saved, its outputs are searched for paths of this machine (the
repository, the Python environment, the home folder): those would end up in the repository
and make the outputs depend on where they were made.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import ipykernel.kernelspec
import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CELL_TIMEOUT = 600  # seconds


class _ThisPython(KernelSpecManager):
    """Every kernel is an ipykernel of the running interpreter (as ``--nbval-current-env``),
    whatever kernelspec named ``python3`` the machine has installed."""

    def get_kernel_spec(self, kernel_name: str):  # type: ignore[override]
        return self.kernel_spec_class(
            resource_dir=ipykernel.kernelspec.RESOURCES, **ipykernel.kernelspec.get_kernel_dict()
        )


def _machine_paths() -> list[str]:
    paths = {str(REPO), sys.prefix, sys.base_prefix, os.path.expanduser("~")}
    return sorted((p for p in paths if p not in ("", "/")), key=len, reverse=True)


def _leaks(nb: nbformat.NotebookNode) -> list[str]:
    found = []
    needles = _machine_paths()
    for index, cell in enumerate(nb.cells):
        text = json.dumps(cell.get("outputs", []), ensure_ascii=False)
        found += [f"cell {index}: {p}" for p in needles if p in text]
    return found


def execute(path: Path) -> float:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        kernel_manager_class="jupyter_client.manager.KernelManager",
        resources={"metadata": {"path": str(path.parent)}},
        record_timing=False,  # no execution timestamps in the cells' metadata
        store_widget_state=False,  # the widgets carry static HTML snapshots instead
    )
    client.km = client.kernel_manager_class(
        kernel_name="python3", kernel_spec_manager=_ThisPython()
    )
    start = time.monotonic()
    client.execute()
    elapsed = time.monotonic() - start
    leaks = _leaks(nb)
    if leaks:
        raise SystemExit(
            f"{path.name}: outputs contain paths of this machine; not saved:\n  "
            + "\n  ".join(leaks)
        )
    nb.metadata.pop("widgets", None)
    nbformat.validate(nb)
    nbformat.write(nb, path)
    return elapsed


def _notebooks(names: list[str]) -> list[Path]:
    if not names:
        return sorted(HERE.glob("[0-9][0-9]-*.ipynb"))
    found = []
    for name in names:
        candidates = [Path(name), HERE / name, HERE / f"{name}.ipynb"]
        candidates += sorted(HERE.glob(f"{name}*.ipynb"))
        path = next((c for c in candidates if c.is_file() and c.suffix == ".ipynb"), None)
        if path is None:
            raise SystemExit(f"no notebook {name!r} in {HERE}")
        found.append(path.resolve())
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="notebook names, stems or paths")
    args = parser.parse_args(argv)
    for path in _notebooks(args.notebooks):
        print(f"{path.name}: running ...", flush=True)
        print(f"{path.name}: saved with outputs ({execute(path):.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
