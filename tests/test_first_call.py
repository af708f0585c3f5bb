"""What a new kernel's first frame call imports: only what its path needs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from a3s_nb.frames import cost


def _run(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.strip()


def test_the_price_table_key_does_not_import_genai_prices():
    genai_prices = pytest.importorskip("genai_prices")
    assert cost.price_table() == f"genai-prices {genai_prices.__version__}"
    out = _run(
        "import sys; from a3s_nb.frames import cost; "
        "print(cost.price_table(), 'genai_prices' in sys.modules)"
    )
    assert out == f"genai-prices {genai_prices.__version__} False"


def test_the_price_table_key_does_not_import_importlib_metadata():
    """The version comes from the name of the ``.dist-info`` folder: the same version
    ``importlib.metadata`` gives, without its import (about 30 ms in a new kernel)."""
    pytest.importorskip("genai_prices")
    from importlib import metadata

    out = _run(
        "import sys; from a3s_nb.frames import cost; "
        "print(cost.price_table(), 'importlib.metadata' in sys.modules)"
    )
    assert out == f"genai-prices {metadata.version('genai-prices')} False"


def test_the_price_table_key_falls_back_to_the_metadata(monkeypatch):
    pytest.importorskip("genai_prices")
    from importlib import metadata

    monkeypatch.setattr(cost, "_dist_info_version", lambda dist: None)
    monkeypatch.delitem(sys.modules, "genai_prices", raising=False)
    assert cost.price_table() == f"genai-prices {metadata.version('genai-prices')}"


def test_a_cached_store_is_read_in_a_new_process_without_genai_prices(fixture_dir):
    pytest.importorskip("genai_prices")
    pytest.importorskip("pyarrow")
    import a3s_nb

    first = a3s_nb.all_frames(fixture_dir, progress=False)
    assert (fixture_dir / ".a3s_nb" / "frames").is_dir()
    out = _run(
        "import sys, a3s_nb\n"
        f"f = a3s_nb.all_frames({str(fixture_dir)!r}, progress=False)\n"
        "print(sum(map(len, f.values())), 'genai_prices' in sys.modules)"
    )
    assert out == f"{sum(map(len, first.values()))} False"


_BUILT = (
    "from pydantic import BaseModel\n"
    "from a3s_nb.store import models, serde, store\n"
    "built = sorted(n for n, c in vars(models).items() if isinstance(c, type)\n"
    "    and issubclass(c, BaseModel) and c.__pydantic_complete__)\n"
    "built += sorted(k for k, a in store._ADAPTERS.items() if a.pydantic_complete)\n"
    "built += sorted(k for k, a in serde._LAYOUTS.items() if a.item.pydantic_complete)\n"
)


def test_import_a3s_nb_builds_no_validator():
    out = _run(f"import a3s_nb\n{_BUILT}print(built)")
    assert out == "[]"


def test_a_cached_frame_call_in_a_new_process_validates_nothing(fixture_dir):
    """A cached store's frames in a new kernel need no model, no load-check decoder."""
    pytest.importorskip("pyarrow")
    import a3s_nb

    first = a3s_nb.all_frames(fixture_dir, progress=False)
    a3s_nb.sessions(fixture_dir, progress=False)
    out = _run(
        "import a3s_nb\n"
        f"f = a3s_nb.all_frames({str(fixture_dir)!r}, progress=False)\n"
        f"s = a3s_nb.sessions({str(fixture_dir)!r}, progress=False)\n"
        f"{_BUILT}"
        "from a3s_nb.frames import _fastcheck\n"
        "print(sum(map(len, f.values())), len(s), built, _fastcheck._BUILT is None)"
    )
    assert out == f"{sum(map(len, first.values()))} {len(first['sessions'])} [] True"
    # and the models still validate on first use, in that same kind of process
    sid = a3s_nb.FileStore(fixture_dir).list()[0]
    out = _run(
        f"import a3s_nb\nb = a3s_nb.FileStore({str(fixture_dir)!r}).load({sid!r})\n"
        "print(b.id, len(b.session.messages) > 0, b.model_dump()['session']['id'] == b.id)"
    )
    assert out == f"{sid} True True"


_NOT_ON_A_CACHED_CALL = (
    "a3s_nb.frames._parallel",  # multiprocessing and the fork server's setup
    "a3s_nb.frames._searchindex",  # sqlite3
    "sqlite3",
    "a3s_nb.frames._runfile",  # the pass over the files: its typed classes, its builders
    "a3s_nb.frames._builders",
    "a3s_nb.frames._walk",
)


def test_a_cached_frame_call_imports_neither_the_build_nor_search(fixture_dir):
    """A call in this process served from the caches imports neither the parallel build,
    nor the search index, nor the pass over the files: a new kernel does not pay for them."""
    pytest.importorskip("pyarrow")
    import a3s_nb

    first = a3s_nb.all_frames(fixture_dir, progress=False)
    later = f"import sys\nprint(*(m in sys.modules for m in {_NOT_ON_A_CACHED_CALL!r}))"
    out = _run(
        "import a3s_nb\n"
        f"f = a3s_nb.all_frames({str(fixture_dir)!r}, progress=False, workers=1)\n"
        f"s = a3s_nb.sessions({str(fixture_dir)!r}, progress=False)\n"
        "print(sum(map(len, f.values())), len(s))\n" + later
    )
    rows = f"{sum(map(len, first.values()))} {len(first['sessions'])}"
    assert out == rows + "\n" + " ".join(["False"] * len(_NOT_ON_A_CACHED_CALL))
    # asked for, the parallel build is there; a bad ``workers`` is refused, naming it
    out = _run(
        "import a3s_nb\n"
        "try:\n"
        f"    a3s_nb.all_frames({str(fixture_dir)!r}, progress=False, workers=0)\n"
        "except ValueError as e:\n"
        "    print('0' in str(e))\n" + later
    )
    assert out.split("\n")[0] == "True" and out.split("\n")[1].startswith("True False")


def test_the_price_table_key_notices_an_upgrade(tmp_path, monkeypatch):
    """The ``.dist-info`` folder found is remembered only while it is there."""
    site = tmp_path / "site"
    (site / "genai_prices-1.0.0.dist-info").mkdir(parents=True)
    monkeypatch.setattr(sys, "path", [str(site)])
    monkeypatch.delitem(sys.modules, "genai_prices", raising=False)
    assert cost.price_table() == "genai-prices 1.0.0"
    assert cost.price_table() == "genai-prices 1.0.0"
    (site / "genai_prices-1.0.0.dist-info").rename(site / "genai_prices-1.1.0.dist-info")
    assert cost.price_table() == "genai-prices 1.1.0"


def test_import_a3s_nb_compiles_none_of_the_secret_scanners_patterns():
    """The scanner's ~130 regular expressions are compiled by the first scan, not by every
    ``import a3s_nb`` (about 40 ms a kernel that never saves would pay)."""
    count = (
        "import a3s_nb\n"
        "from a3s_nb import secrets\n"
        "lazy = [v for v in vars(secrets).values() if isinstance(v, secrets._Lazy)]\n"
        "lazy += [c.regex for a in secrets._ANCHORS for c in a.checks]\n"
        "lazy += [r.pattern for r in secrets._RULES]\n"
        "print(len(lazy), sum('search' in vars(p) for p in lazy), end=' ')\n"
    )
    before = _run(count).split()
    assert int(before[0]) > 100 and before[1] == "0"
    after = _run(
        count + "secrets.scan({'text': 'key sk-proj-' + 'Ab3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF'})\n"
        "print(sum('search' in vars(p) for p in lazy))"
    ).split()
    assert after[1] == "0" and int(after[2]) > 0
